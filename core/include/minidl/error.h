// minidl::Error, the one exception type minidl throws at its API boundary, and helpers to build messages.
#pragma once

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

}  // namespace minidl

/// Internal invariant check: cheap, always on, reports file:line. User errors use minidl::fail instead.
#define MINIDL_ASSERT(cond)                                                                           \
  do {                                                                                                \
    if (!(cond)) ::minidl::fail(__FILE__, ":", __LINE__, ": internal error: assertion failed: " #cond); \
  } while (0)
