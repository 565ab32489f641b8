// Reading CSV text (internal to data/): a line's fields with RFC 4180 quoting, streaming a file's header and
// rows with their line numbers, and what a field holds as a number.
#pragma once

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "minidl/atomic_file.h"
#include "minidl/error.h"
#include "minidl/internal/text.h"

namespace minidl::csv_text {
using internal::excerpt;
using internal::trim;

// The fields of one line, RFC 4180 style: a field in double quotes may hold commas, and "" stands for one quote.
// Returns false (with *error set) on a quote left open or text after a closing quote.
inline bool split_fields(const std::string& line, std::vector<std::string>& fields, std::string* error) {
  fields.clear();
  std::string field;
  size_t i = 0;
  while (true) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    field.clear();
    if (i < line.size() && line[i] == '"') {
      for (++i;; ++i) {
        if (i >= line.size()) return *error = "a quoted field is not closed", false;
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') field += line[++i];
          else break;
        } else {
          field += line[i];
        }
      }
      ++i;
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
      if (i < line.size() && line[i] != ',') return *error = "text after a closing quote", false;
    } else {
      const size_t end = line.find(',', i);
      field = trim(line.substr(i, end == std::string::npos ? std::string::npos : end - i));
      i = end == std::string::npos ? line.size() : end;
    }
    fields.push_back(field);
    if (i >= line.size()) return true;
    ++i;  // the comma
  }
}

inline bool whole_number(const std::string& s) {
  return !s.empty() && s.size() <= 9 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The whole field as a finite float (a subnormal or one that rounds to zero included), or NaN.
inline float parse_float(const std::string& text) {
  if (text.empty()) return NAN;
  char* end = nullptr;
  const float v = std::strtof(text.c_str(), &end);
  // The whole field: a NUL byte inside it ends c_str() early, and "2\0x" is not the number 2.
  if (end != text.c_str() + text.size() || !std::isfinite(v)) return NAN;
  return v;
}

// Streams a CSV file: on_header(columns), then on_row(fields, line number) for every non-blank line, each
// row checked to have as many fields as the header. Without a header the columns are named "0", "1", ... and
// the first line is a row. Errors name the file and line.
template <class Header, class Row>
void read_csv(const std::string& path, bool has_header, Header on_header, Row on_row) {
  check_input_file(path, "a CSV file");
  std::ifstream in(path);
  if (!in) fail("cannot open '", path, "': ", std::strerror(errno));
  std::string line, error;
  std::vector<std::string> header, fields;
  int64_t line_number = 0;
  const auto where = [&] { return "'" + path + "' line " + std::to_string(line_number); };
  while (std::getline(in, line)) {
    ++line_number;
    if (line_number == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // a UTF-8 byte order mark
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (trim(line).empty()) continue;
    if (line.find('\r') != std::string::npos)
      fail(where(), ": a carriage return inside the line (", line.size(), " bytes): lines must end with \\n or \\r\\n, "
           "not \\r alone");
    if (!split_fields(line, header.empty() ? header : fields, &error)) fail(where(), ": ", error);
    if (fields.empty()) {
      if (!has_header) {
        fields = header;
        for (size_t c = 0; c < header.size(); ++c) header[c] = std::to_string(c);
      } else {
        for (size_t a = 0; a < header.size(); ++a)
          for (size_t b = a + 1; b < header.size(); ++b)
            if (header[a] == header[b])
              fail(where(), ": the header names column ", a + 1, " and column ", b + 1, " alike ('", excerpt(header[a]),
                   "'): each column needs its own name");
        on_header(header);
        continue;
      }
      on_header(header);
    }
    if (fields.size() != header.size())
      fail(where(), ": ", fields.size(), " fields, expected ", header.size(), " as the ",
           has_header ? "header has" : "first line has");
    on_row(fields, line_number);
    fields.clear();
  }
  if (header.empty())
    fail("'", path, "' is empty: expected ", has_header ? "a header line naming the columns" : "lines of samples");
}

// Whether a field that is not a number was meant as one (a sign, a digit or a decimal point first; nan, inf),
// or holds a control byte: an error in a number column, never the first category of a text column.
inline bool meant_as_number(const std::string& text) {
  size_t i = text[0] == '+' || text[0] == '-' ? 1 : 0;
  if (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) return true;
  std::string word = text.substr(i);
  std::transform(word.begin(), word.end(), word.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (word == "nan" || word == "inf" || word == "infinity") return true;
  return std::any_of(text.begin(), text.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
}

}  // namespace minidl::csv_text
