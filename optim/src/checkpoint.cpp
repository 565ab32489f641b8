// safetensors reading and writing with nlohmann-json for the header.
#include "minidl/checkpoint.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <vector>

#include "minidl/atomic_file.h"

namespace minidl {
namespace {
static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");
constexpr uint64_t kMaxHeader = 100u << 20;  // the safetensors limit: 100 MB of header

std::string json_text(const nlohmann::json& shape) { return shape.dump(); }
}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata) {
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__" || header.contains(name)) fail("save_safetensors '", path, "': duplicate or reserved name '", name, "'");
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * sizeof(float);
    header[name] = {{"dtype", "F32"}, {"shape", std::vector<int64_t>(t.shape().begin(), t.shape().end())},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // pad so the data starts 8-byte aligned
  write_file_atomically(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail("cannot create '", tmp, "': ", std::strerror(errno));
    const uint64_t length = text.size();
    out.write(reinterpret_cast<const char*>(&length), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& [name, t] : tensors)
      out.write(reinterpret_cast<const char*>(t.data()), static_cast<std::streamsize>(t.numel() * sizeof(float)));
    out.flush();
    if (!out) fail("cannot write '", tmp, "' (disk full?)");
  });
}

Checkpoint load_safetensors(const std::string& path) {
  check_input_file(path, "a checkpoint (safetensors) file");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail("cannot open checkpoint '", path, "': ", std::strerror(errno));
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  const auto bad = [&](const auto&... what) -> Error {
    return Error(detail::concat("checkpoint '", path, "': ", what...));
  };
  if (file_size < 8) throw bad("too short for a safetensors file (", file_size, " bytes, need at least 8)");
  uint64_t header_size = 0;
  in.read(reinterpret_cast<char*>(&header_size), 8);
  if (header_size > file_size - 8 || header_size > kMaxHeader)
    throw bad("header length ", header_size, " runs past the end of the file (", file_size,
              " bytes) — truncated or not a safetensors file");
  std::string text(header_size, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_size));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw bad("the header is not valid JSON (", e.what(), ")");
  }
  if (!header.is_object()) throw bad("the header is not a JSON object");

  // Every entry is checked against the file, and the ranges against each other, before any tensor is allocated.
  Checkpoint checkpoint;
  const uint64_t data_size = file_size - 8 - header_size;
  struct Entry {
    std::string name;
    Shape dims;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throw bad("__metadata__ is not an object of strings");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) throw bad("__metadata__ value '", key, "' is not a string");
        checkpoint.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets"))
      throw bad("tensor '", name, "' lacks dtype, shape or data_offsets");
    if (entry["dtype"] != "F32") throw bad("tensor '", name, "' has dtype ", entry["dtype"].dump(), ", expected \"F32\"");
    const auto& shape = entry["shape"];
    const auto& offsets = entry["data_offsets"];
    if (!shape.is_array() || shape.size() > static_cast<size_t>(kMaxRank))
      throw bad("tensor '", name, "' has shape ", json_text(shape), ", expected a list of at most ", kMaxRank, " sizes");
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
      throw bad("tensor '", name, "' has data_offsets ", offsets.dump(), ", expected [begin, end]");
    Entry e{name, {}, offsets[0].get<uint64_t>(), offsets[1].get<uint64_t>()};
    // The size in checked arithmetic (a product that wraps around would pass every later check): the product of
    // the non-zero sizes, in bytes; it must then equal the entry's range, which lies inside the file's data.
    uint64_t bytes = sizeof(float);
    bool empty = false;
    for (const auto& d : shape) {
      if (!d.is_number_unsigned()) throw bad("tensor '", name, "' has shape ", json_text(shape), " with a bad size");
      const uint64_t size = d.get<uint64_t>();
      if (size == 0) {
        empty = true;
      } else if (__builtin_mul_overflow(bytes, size, &bytes) || bytes > (uint64_t{1} << 62)) {
        throw bad("tensor '", name, "' has shape ", json_text(shape), ", larger than the file's data (", data_size,
                  " bytes)");
      }
      e.dims.push_back(static_cast<int64_t>(size));
    }
    if (empty) bytes = 0;
    if (e.begin > e.end || e.end > data_size)
      throw bad("tensor '", name, "' has data_offsets [", e.begin, ",", e.end, "] outside the ", data_size,
                " bytes of data — truncated file?");
    if (e.end - e.begin != bytes)
      throw bad("tensor '", name, "' has shape ", json_text(shape), " (", bytes, " bytes) but ", e.end - e.begin,
                " bytes of data");
    entries.push_back(std::move(e));
  }
  // The ranges must tile the data exactly: no overlap, no gap, nothing after the last tensor.
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const Entry& e : entries) ranges.emplace_back(e.begin, e.end);
  std::sort(ranges.begin(), ranges.end());
  uint64_t expected = 0;
  for (const auto& [begin, end] : ranges) {
    if (begin != expected) throw bad("tensor data overlaps or leaves a gap at byte ", std::min(begin, expected));
    expected = end;
  }
  if (expected != data_size) throw bad("the file has ", data_size - expected, " bytes after the last tensor");
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.dims);
    in.seekg(static_cast<std::streamoff>(8 + header_size + e.begin));
    in.read(reinterpret_cast<char*>(t.data()), static_cast<std::streamsize>(e.end - e.begin));
    if (!in) throw bad("cannot read the data of tensor '", e.name, "'");
    checkpoint.tensors.emplace(e.name, std::move(t));
  }
  return checkpoint;
}

}  // namespace minidl
