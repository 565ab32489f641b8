// Writing files atomically: write a temporary file beside the target, flush it to disk, rename it over.
#pragma once

#include <functional>
#include <string>

namespace minidl {

/// Calls write(temporary_path), then fsyncs and renames the temporary file to `path`. If write throws or any
/// step fails, the temporary file is removed, the previous `path` is left intact, and minidl::Error names it.
void write_file_atomically(const std::string& path, const std::function<void(const std::string&)>& write);

/// Replaces `path` with `text`, atomically.
void write_text_atomically(const std::string& path, const std::string& text);

}  // namespace minidl
