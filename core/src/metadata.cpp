// MetadataReader: full-string parses with range checks; the matching writers.
#include "minidl/metadata.h"
#include "minidl/internal/text.h"

#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "minidl/error.h"

namespace minidl {

void MetadataReader::fail_at(const std::string& key, const std::string& message) const {
  fail(source_, ": metadata '", key, "' ", message);
}

const std::string& MetadataReader::text(const std::string& key) const {
  const auto it = metadata_.find(key);
  if (it == metadata_.end()) fail(source_, ": metadata lacks '", key, "'");
  return it->second;
}

int64_t MetadataReader::integer(const std::string& key, int64_t min, int64_t max) const {
  const std::string& s = text(key);
  const std::optional<int64_t> parsed = internal::parse_integer(s);
  if (!parsed) fail_at(key, "is '" + s + "', expected a whole number");
  const int64_t v = *parsed;
  if (v < min || v > max)
    fail_at(key, "is " + s + ", expected a whole number in [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  return v;
}

double MetadataReader::number(const std::string& key, double min, double max) const {
  const std::string& s = text(key);
  const double v = internal::parse_number(s);
  if (!std::isfinite(v)) fail_at(key, "is '" + s + "', expected a finite number");
  if (v < min || v > max) fail_at(key, "is " + s + ", expected a number in [" + exact_text(min) + ", " + exact_text(max) + "]");
  return v;
}

bool MetadataReader::boolean(const std::string& key) const {
  const std::string& s = text(key);
  if (s != "0" && s != "1") fail_at(key, "is '" + s + "', expected 0 or 1");
  return s == "1";
}

std::array<uint64_t, 4> MetadataReader::words(const std::string& key) const {
  const std::string& s = text(key);
  std::array<uint64_t, 4> w{};
  int used = 0;
  if (std::sscanf(s.c_str(), "%16" SCNx64 " %16" SCNx64 " %16" SCNx64 " %16" SCNx64 "%n", &w[0], &w[1], &w[2], &w[3],
                  &used) != 4 ||
      used != static_cast<int>(s.size()))
    fail_at(key, "is '" + s + "', expected four hexadecimal words (a generator state)");
  return w;
}

Shape MetadataReader::shape(const std::string& key) const {
  const std::string& s = text(key);
  Shape shape;
  size_t begin = 0;
  while (true) {
    const size_t end = s.find(',', begin);
    const std::string part = s.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    const int64_t d = internal::parse_integer(part).value_or(0);
    if (d < 1 || d > (int64_t{1} << 31) || shape.rank() == kMaxRank - 1)
      fail_at(key, "is '" + s + "', expected sizes >= 1 separated by commas (at most " + std::to_string(kMaxRank - 1) + ")");
    shape.push_back(d);
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  return shape;
}

std::string exact_text(double value) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", value);
  return buf;
}

std::string exact_text(float value) {
  char buf[40];
  for (int digits = 6; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, static_cast<double>(value));
    if (std::strtof(buf, nullptr) == value) break;
  }
  return buf;
}

std::string words_text(const std::array<uint64_t, 4>& w) {
  char buf[80];
  std::snprintf(buf, sizeof buf, "%016" PRIx64 " %016" PRIx64 " %016" PRIx64 " %016" PRIx64, w[0], w[1], w[2], w[3]);
  return buf;
}

std::string shape_text(const Shape& shape) {
  std::string s;
  for (int i = 0; i < shape.rank(); ++i) {
    if (i) s += ',';
    s += std::to_string(shape[i]);
  }
  return s;
}

}  // namespace minidl
