// libFuzzer target: what reads a checkpoint's metadata — load_model (the model's configuration, minidl 0.1's
// upgrade, the weights) and Trainer::resume (the training state: step, data position, generators, optimizer
// slots) — then one training step from the resumed position. Anything but minidl::Error is a finding.
#include <algorithm>

#include "fuzz_input.h"
#include "minidl/checkpoint.h"
#include "minidl/data.h"
#include "minidl/optim.h"
#include "minidl/train.h"

namespace {
// A setting the metadata states, when it is a small whole number, else `fallback`: the harness's data and
// loader follow the checkpoint, so that inputs reach past the first consistency check into the resume itself.
int64_t stated(const minidl::Metadata& m, const char* key, int64_t fallback, int64_t max) {
  const auto it = m.find(key);
  if (it == m.end()) return fallback;
  char* end = nullptr;
  const long long v = std::strtoll(it->second.c_str(), &end, 10);
  return (*end == '\0' && v >= 0 && v <= max) ? v : fallback;
}

minidl::Dataset data_for(const minidl::ModelConfig& config, int64_t size) {
  minidl::Dataset d;
  d.sample = config.input_shape;
  d.num_classes = static_cast<int32_t>(std::max<int64_t>(config.classes, 1));
  d.images.resize(static_cast<size_t>(size * d.features()));
  for (size_t i = 0; i < d.images.size(); ++i) d.images[i] = static_cast<uint8_t>(i * 37);
  for (int64_t i = 0; i < size; ++i) d.labels.push_back(static_cast<int32_t>(i % d.num_classes));
  return d;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  const std::string path = minidl::fuzz::scratch_path(".safetensors");
  minidl::fuzz::write_input(path, bytes, size);
  try {
    const minidl::LoadedModel loaded = minidl::load_model(path);
    const minidl::Metadata& m = loaded.checkpoint.metadata;
    if (loaded.config.input_shape.numel() > 4096) return 0;  // keep each input fast: the data is built per input
    const minidl::Dataset data = data_for(loaded.config, stated(m, "loader.size", 64, 256));
    minidl::DataLoader loader(data, {.batch_size = stated(m, "loader.batch_size", 8, 64),
                                     .shuffle = stated(m, "loader.shuffle", 1, 1) == 1,
                                     .drop_last = stated(m, "loader.drop_last", 0, 1) == 1,
                                     .seed = static_cast<uint64_t>(stated(m, "loader.seed", 1, INT64_MAX)),
                                     .min_batch_size = stated(m, "loader.min_batch_size", 1, 64)},
                              true);
    minidl::Adam adam(loaded.model->named_parameters(true));
    minidl::Trainer trainer(*loaded.model, adam, loader, {.epochs = 1 << 20});
    trainer.resume(loaded.checkpoint, path);
    if (trainer.finished()) return 0;
    minidl::Batch batch;
    if (!loader.next(batch)) {
      loader.start_epoch();
      if (!loader.next(batch)) return 0;
    }
    trainer.step(batch);
  } catch (const minidl::Error&) {
  }
  return 0;
}
