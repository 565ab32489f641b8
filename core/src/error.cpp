// The warning channel: a replaceable handler, stderr by default.
#include "minidl/error.h"

#include <cstdio>
#include <mutex>

namespace minidl {
namespace {
std::mutex g_warning_mutex;
WarningHandler& handler() {
  static WarningHandler h;
  return h;
}
}  // namespace

WarningHandler set_warning_handler(WarningHandler h) {
  const std::lock_guard lock(g_warning_mutex);
  WarningHandler previous = std::move(handler());
  handler() = std::move(h);
  return previous;
}

void warn_message(const std::string& message) {
  const std::lock_guard lock(g_warning_mutex);
  if (handler())
    handler()(message);
  else
    std::fprintf(stderr, "minidl warning: %s\n", message.c_str());
}

}  // namespace minidl
