// minidl::Error, the one exception type minidl throws at its API boundary, and helpers to build messages.
#pragma once

#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>

namespace minidl {

/// Thrown for every error a user can cause: bad shapes, bad files, bad flags, bad hyperparameters.
/// The message names the op, layer, file or flag; what was expected; what was found; and the fix if known.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
}  // namespace detail

/// Throws minidl::Error with the arguments streamed one after another.
template <class... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(detail::concat(args...));
}

/// Where warnings go: something the user should hear about that is not an error (a partial load that skipped
/// tensors, a batch dropped because it was too small). The default handler prints "minidl warning: ..." to
/// stderr; applications route warnings into their own log with set_warning_handler.
using WarningHandler = std::function<void(const std::string&)>;
/// Replaces the warning handler (an empty function restores the default); returns the previous one.
WarningHandler set_warning_handler(WarningHandler handler);
/// Sends a warning to the current handler.
void warn_message(const std::string& message);

/// Sends the arguments, streamed one after another, as one warning.
template <class... Args>
void warn(const Args&... args) {
  warn_message(detail::concat(args...));
}

}  // namespace minidl

/// Internal invariant check: cheap, always on, reports file:line. User errors use minidl::fail instead.
#define MINIDL_ASSERT(cond)                                                                           \
  do {                                                                                                \
    if (!(cond)) ::minidl::fail(__FILE__, ":", __LINE__, ": internal error: assertion failed: " #cond); \
  } while (0)
