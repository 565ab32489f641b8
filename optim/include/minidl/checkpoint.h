// Checkpoints as safetensors files (an 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, then raw little-endian float32 data), and model files: a checkpoint that
// describes its model in its metadata, so that loading it needs nothing but the file.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "minidl/metadata.h"
#include "minidl/models.h"
#include "minidl/module.h"
#include "minidl/tensor.h"

namespace minidl {

struct Checkpoint {
  std::map<std::string, Tensor> tensors;
  Metadata metadata;  ///< safetensors "__metadata__": strings only
};

/// The format of the checkpoints this version writes (metadata "format").
inline constexpr const char* kCheckpointFormat = "minidl-checkpoint-2";

/// Writes tensors (float32) and metadata atomically: a crash mid-write leaves any previous file intact.
void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata = {});

/// Reads and validates a safetensors file: header length within the file, valid JSON, F32 dtype, shapes that
/// match their byte ranges, ranges inside the data and together covering it. Throws minidl::Error naming the
/// file and what is wrong.
Checkpoint load_safetensors(const std::string& path);

/// Rewrites a checkpoint of minidl 0.1 (format "minidl-checkpoint-1": the document's model, its settings under
/// flat keys, optimizer slots by position) into the current format in memory; current ones are left as they are.
void upgrade_checkpoint(Checkpoint& checkpoint, const std::string& path);

/// Writes a model's state with its configuration, so that load_model can rebuild it — a hand-built model too,
/// when `config` describes it: the model its description builds must have the same layers (names and types, in
/// order, blocks included) and tensors (names and shapes), else it throws naming the first difference.
void save_model(const std::string& path, const Module& model, const ModelConfig& config, const Metadata& extra = {});

/// Builds the model `config` describes for loading `checkpoint`'s weights into it: a model that would need more
/// floats than the file's tensors hold is refused, naming the file, before it allocates them — a crafted
/// description cannot make minidl take gigabytes. Errors name `path`.
std::shared_ptr<Sequential> build_model_for(const ModelConfig& config, const Checkpoint& checkpoint, const std::string& path);

struct LoadedModel {
  std::shared_ptr<Sequential> model;
  ModelConfig config;
  Checkpoint checkpoint;  ///< everything the file holds, upgraded to the current format
};

/// Rebuilds the model a checkpoint describes (a training checkpoint or save_model's; minidl 0.1's too) and
/// loads its weights; optimizer state in the file is ignored. Throws naming the file and what is wrong.
LoadedModel load_model(const std::string& path);

}  // namespace minidl
