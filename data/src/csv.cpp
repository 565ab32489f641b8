// CSV data sets: a header, a label column chosen by name, numeric features; errors name file, line, column.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <cstdint>
#include <map>

#include "minidl/data.h"
#include "minidl/internal/text.h"
#include "minidl/error.h"

namespace minidl {
namespace {
using internal::trim;

// The fields of one line, RFC 4180 style: a field in double quotes may hold commas, and "" stands for one quote.
// Returns false (with *error set) on a quote left open or text after a closing quote.
bool split_fields(const std::string& line, std::vector<std::string>& fields, std::string* error) {
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

bool whole_number(const std::string& s) {
  return !s.empty() && s.size() <= 9 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}


// Streams a CSV file: on_header(columns), then on_row(fields, line number) for every non-blank line, each
// row checked to have as many fields as the header. Errors name the file and line.
template <class Header, class Row>
void read_csv(const std::string& path, Header on_header, Row on_row) {
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
    if (!split_fields(line, header.empty() ? header : fields, &error)) fail(where(), ": ", error);
    if (fields.empty()) {
      on_header(header);
      continue;
    }
    if (fields.size() != header.size())
      fail(where(), ": ", fields.size(), " fields, expected ", header.size(), " as the header has");
    on_row(fields, line_number);
    fields.clear();
  }
  if (header.empty()) fail("'", path, "' is empty: expected a header line naming the columns");
}

// Appends a row's features (every field but `skip`) to `out`.
void parse_features(const std::string& path, const std::vector<std::string>& header, const std::vector<std::string>& fields,
                    size_t skip, int64_t line, std::vector<float>& out) {
  for (size_t c = 0; c < fields.size(); ++c) {
    if (c == skip) continue;
    const std::string& text = fields[c];
    char* end = nullptr;
    errno = 0;
    const float v = std::strtof(text.c_str(), &end);
    if (text.empty() || *end != '\0' || !std::isfinite(v) || errno == ERANGE)
      fail("'", path, "' line ", line, ", column ", c + 1, " ('", header[c], "'): ",
           text.empty() ? std::string("empty, expected a number") : "'" + text + "' is not a finite number");
    out.push_back(v);
  }
}

std::string columns_of(const std::vector<std::string>& header) {
  std::string columns;
  for (const std::string& h : header) columns += (columns.empty() ? "" : ", ") + h;
  return columns;
}
}  // namespace

Dataset load_csv(const std::string& path, const std::string& label, const Dataset* train) {
  Dataset data;
  std::vector<std::string> header, labels;
  size_t label_column = 0;
  read_csv(
      path,
      [&](const std::vector<std::string>& h) {
        header = h;
        const auto at = std::find(header.begin(), header.end(), label);
        if (at == header.end())
          fail("'", path, "': no column is named '", label, "' (the columns: ", columns_of(header),
               ") — name the label column with --label");
        label_column = static_cast<size_t>(at - header.begin());
        const int64_t features = static_cast<int64_t>(header.size()) - 1;
        if (features < 1) fail("'", path, "': no feature column besides the label '", label, "'");
        if (train && train->features() != features)
          fail("'", path, "' has ", features, " feature columns but the training data has ", train->features());
        data.sample = {features};
      },
      [&](const std::vector<std::string>& fields, int64_t line) {
        parse_features(path, header, fields, label_column, line, data.values);
        if (fields[label_column].empty())
          fail("'", path, "' line ", line, ", column ", label_column + 1, " ('", label, "'): the label is empty");
        labels.push_back(fields[label_column]);
      });
  if (labels.empty()) fail("'", path, "' has a header but no rows");

  // Class indices: whole numbers as they are, text by its place among the training data's (or these) names.
  const bool numeric = train ? train->class_names.empty() : std::all_of(labels.begin(), labels.end(), whole_number);
  if (!numeric) {
    data.class_names = train ? train->class_names : labels;
    std::sort(data.class_names.begin(), data.class_names.end());
    data.class_names.erase(std::unique(data.class_names.begin(), data.class_names.end()), data.class_names.end());
  }
  std::map<std::string, int32_t> index;
  for (size_t i = 0; i < data.class_names.size(); ++i) index[data.class_names[i]] = static_cast<int32_t>(i);
  int32_t largest = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    int32_t c = -1;
    if (numeric && whole_number(labels[i])) c = static_cast<int32_t>(std::strtol(labels[i].c_str(), nullptr, 10));
    if (!numeric && index.count(labels[i])) c = index.at(labels[i]);
    if (c < 0)
      fail("'", path, "': label '", labels[i], "' of row ", i + 1, " is not a class of the training data",
           numeric ? " (whole numbers)" : "");
    data.labels.push_back(c);
    largest = std::max(largest, c);
  }
  data.num_classes = numeric ? std::max(largest + 1, train ? train->num_classes : 0)
                             : static_cast<int32_t>(data.class_names.size());
  return data;
}

Tensor load_csv_features(const std::string& path, const std::string& label, int64_t features) {
  std::vector<std::string> header;
  std::vector<float> values;
  size_t skip = SIZE_MAX;
  read_csv(
      path,
      [&](const std::vector<std::string>& h) {
        header = h;
        const auto at = std::find(header.begin(), header.end(), label);
        if (at != header.end()) skip = static_cast<size_t>(at - header.begin());
        const int64_t found = static_cast<int64_t>(header.size()) - (skip == SIZE_MAX ? 0 : 1);
        if (found != features)
          fail("'", path, "' has ", found, " feature columns (", columns_of(header), ") but the model takes ", features);
      },
      [&](const std::vector<std::string>& fields, int64_t line) { parse_features(path, header, fields, skip, line, values); });
  const int64_t rows = static_cast<int64_t>(values.size()) / features;
  if (rows == 0) fail("'", path, "' has a header but no rows");
  return Tensor::from({rows, features}, values);
}

}  // namespace minidl
