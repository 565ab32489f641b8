// libFuzzer target: the safetensors reader (load_safetensors). Anything but minidl::Error — a crash, an
// exception of another type, memory beyond -rss_limit_mb — is a finding.
#include "fuzz_input.h"
#include "minidl/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = minidl::fuzz::scratch_path(".safetensors");
  minidl::fuzz::write_input(path, data, size);
  try {
    const minidl::Checkpoint c = minidl::load_safetensors(path);
    // Every tensor returned holds the elements its shape claims.
    for (const auto& [name, t] : c.tensors)
      if (t.values().size() != static_cast<size_t>(t.shape().numel())) __builtin_trap();
  } catch (const minidl::Error&) {
  }
  return 0;
}
