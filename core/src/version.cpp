// minidl::version(): the project version CMake passes in.
#include "minidl/version.h"

namespace minidl {

const char* version() { return MINIDL_VERSION; }

}  // namespace minidl
