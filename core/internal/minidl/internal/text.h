// String and number helpers the libraries and the command line share (never installed): trimming, splitting,
// joining, and whole-text number parsing that reports failure instead of stopping at the first bad character.
#pragma once

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace minidl::internal {

inline bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

/// `s` without leading and trailing blanks (spaces, tabs, line breaks).
inline std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

/// The parts of `s` between each `sep` ("a,,b" → "a", "", "b").
inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t begin = 0;
  for (size_t end; (end = s.find(sep, begin)) != std::string::npos; begin = end + 1) parts.push_back(s.substr(begin, end - begin));
  parts.push_back(s.substr(begin));
  return parts;
}

/// The first `most` items joined by `sep`, then "... (N in all)" when there are more.
inline std::string join(const std::vector<std::string>& items, const std::string& sep = ", ", size_t most = SIZE_MAX) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < most; ++i) out += (i ? sep : "") + items[i];
  if (items.size() > most) out += sep + "... (" + std::to_string(items.size()) + " in all)";
  return out;
}

/// `text` as an error message may quote it: control bytes written \xNN, and at most `most` characters, then
/// "... (N bytes)" — a message never repeats a whole field or file of bad input.
inline std::string excerpt(const std::string& text, size_t most = 40) {
  std::string out;
  const char* hex = "0123456789abcdef";
  size_t i = 0;
  for (; i < text.size() && out.size() < most; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) out += std::string("\\x") + hex[c >> 4] + hex[c & 15];
    else out += static_cast<char>(c);
  }
  if (i < text.size()) out += "... (" + std::to_string(text.size()) + " bytes)";
  return out;
}

/// The whole of `text` as a whole number, or nothing (empty, blanks or other characters around it, out of range).
inline std::optional<int64_t> parse_integer(const std::string& text) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (*end != '\0' || errno == ERANGE) return std::nullopt;
  return v;
}

/// The whole of `text` as a number, or NaN (empty, blanks or other characters around it).
inline double parse_number(const std::string& text) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return NAN;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  return *end == '\0' ? v : NAN;
}

}  // namespace minidl::internal
