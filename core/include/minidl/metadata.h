// Checked reading of string metadata (a checkpoint's "__metadata__"): every value is parsed in full and
// range-checked before use, and an error names the file, the key, what was expected and what was found.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>

#include "minidl/shape.h"

namespace minidl {

using Metadata = std::map<std::string, std::string>;

class MetadataReader {
 public:
  /// `source` names where the metadata came from in errors, e.g. "checkpoint 'model.safetensors'".
  MetadataReader(const Metadata& metadata, std::string source) : metadata_(metadata), source_(std::move(source)) {}

  bool has(const std::string& key) const { return metadata_.count(key) > 0; }
  /// The value; throws when the key is absent.
  const std::string& text(const std::string& key) const;
  /// A whole number in [min, max].
  int64_t integer(const std::string& key, int64_t min, int64_t max) const;
  /// A finite number in [min, max], read back exactly as it was written by exact_text.
  double number(const std::string& key, double min, double max) const;
  /// "1" or "0".
  bool boolean(const std::string& key) const;
  /// Four 64-bit words in hex (a generator state).
  std::array<uint64_t, 4> words(const std::string& key) const;
  /// Positive sizes separated by commas, "28,28,1".
  Shape shape(const std::string& key) const;
  const Metadata& metadata() const { return metadata_; }
  const std::string& source() const { return source_; }
  /// Throws minidl::Error "<source>: metadata '<key>' <message>".
  [[noreturn]] void fail_at(const std::string& key, const std::string& message) const;

 private:
  const Metadata& metadata_;
  std::string source_;
};

/// Decimal text that reads back as the same float ("%.9g"; of a double, to float precision).
std::string exact_text(double value);
/// The shortest text that reads back as the same float ("0.01", not "0.00999999978"): a float setting as a person
/// writes it.
std::string exact_text(float value);
/// A generator state as four hex words.
std::string words_text(const std::array<uint64_t, 4>& words);
/// "28,28,1".
std::string shape_text(const Shape& shape);

}  // namespace minidl
