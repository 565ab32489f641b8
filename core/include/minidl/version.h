// The version of minidl, as CMake's project() sets it, for files minidl writes and results it reports.
#pragma once

namespace minidl {

/// "0.2.0".
const char* version();

}  // namespace minidl
