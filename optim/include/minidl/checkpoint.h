// Checkpoints as safetensors files: an 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, then raw little-endian float32 data. Readable by any safetensors reader.
#pragma once

#include <map>
#include <string>

#include "minidl/module.h"
#include "minidl/tensor.h"

namespace minidl {

struct Checkpoint {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;  ///< safetensors "__metadata__": strings only
};

/// Writes tensors (float32) and metadata atomically: a crash mid-write leaves any previous file intact.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Reads and validates a safetensors file: header length within the file, valid JSON, F32 dtype, shapes that
/// match their byte ranges, ranges inside the data and together covering it. Throws minidl::Error naming the
/// file and what is wrong.
Checkpoint load_safetensors(const std::string& path);

}  // namespace minidl
