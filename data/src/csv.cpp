// CSV data sets: label columns by name or index, columns to ignore, features found by name (numbers, or text
// one-hot), labels as classes or as float targets (the text is read by csv_text.h). Errors name the file, line and
// column, with short excerpts.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>

#include "csv_text.h"
#include "minidl/data.h"
#include "minidl/error.h"
#include "minidl/internal/text.h"

namespace minidl {
namespace {
using csv_text::meant_as_number;
using csv_text::parse_float;
using csv_text::read_csv;
using csv_text::whole_number;
using internal::excerpt;

std::string columns_of(const std::vector<std::string>& header) {
  std::vector<std::string> shown;
  for (const std::string& h : header) shown.push_back(excerpt(h, 24));
  return internal::join(shown, ", ", 12);
}

// The column a --label or --ignore item names: a column of that name, else a 0-based index.
size_t column_of(const std::string& path, const std::vector<std::string>& header, const std::string& item, const char* what) {
  const auto at = std::find(header.begin(), header.end(), item);
  if (at != header.end()) return static_cast<size_t>(at - header.begin());
  if (const auto index = internal::parse_integer(item); index && *index >= 0 && *index < static_cast<int64_t>(header.size()))
    return static_cast<size_t>(*index);
  fail("'", path, "': no column is named '", excerpt(item), "' (the columns: ", columns_of(header), ") — name the ", what,
       " column with --", std::string(what) == "label" ? "label" : "ignore", " (a name, or a 0-based index)");
}

// Which columns a table's header gives to what: the label columns, the features in order (for a test file: in
// the training data's order, found by name), the rest ignored.
struct Columns {
  std::vector<size_t> labels, features;
  std::vector<std::string> label_names, feature_names;
};

Columns columns_for(const std::string& path, const std::vector<std::string>& header, const CsvOptions& options,
                    const std::vector<std::string>* train_features, bool labels_required) {
  Columns c;
  std::vector<bool> taken(header.size(), false);
  for (const std::string& item : options.ignore) taken[column_of(path, header, item, "ignored")] = true;
  for (const std::string& item : options.labels) {
    if (!labels_required && std::find(header.begin(), header.end(), item) == header.end()) continue;
    const size_t column = column_of(path, header, item, "label");
    if (std::find(c.labels.begin(), c.labels.end(), column) != c.labels.end())
      fail("'", path, "': the label column '", excerpt(header[column]), "' is named twice");
    if (taken[column]) fail("'", path, "': column '", excerpt(header[column]), "' is both a label and ignored");
    taken[column] = true;
    c.labels.push_back(column);
    c.label_names.push_back(header[column]);
  }
  if (train_features && !train_features->empty()) {
    for (const std::string& name : *train_features) {
      const auto at = std::find(header.begin(), header.end(), name);
      if (at == header.end())
        fail("'", path, "' has no column '", excerpt(name), "', a feature of the training data (its columns: ",
             columns_of(header), ")");
      c.features.push_back(static_cast<size_t>(at - header.begin()));
      taken[c.features.back()] = true;
    }
    for (size_t col = 0; col < header.size(); ++col)
      if (!taken[col])
        fail("'", path, "': column '", excerpt(header[col]), "' is not a feature the model was trained on (its ",
             train_features->size(), ": ", columns_of(*train_features), ") — leave it out with --ignore ",
             excerpt(header[col]));
  } else {
    for (size_t col = 0; col < header.size(); ++col)
      if (!taken[col]) c.features.push_back(col);
  }
  for (size_t col : c.features) c.feature_names.push_back(header[col]);
  if (c.features.empty())
    fail("'", path, "': no feature column besides the label '", internal::join(c.label_names, "', '"), "'",
         options.ignore.empty() ? "" : " and the ignored columns");
  return c;
}

// A text column with more categories than this is refused: an identifier or free text, not a category.
constexpr size_t kMaxCategories = 1000;

// Turns rows of feature fields into numbers, in the columns' order: a number column as it is, a text column one-hot
// over its categories. Without known categories (a training file) a column is text when its first row holds
// text, and its categories are the distinct values in sorted order; with them (a test or new file) a column is
// text when it has categories, and a value outside them is an error.
class FeatureEncoder {
 public:
  FeatureEncoder(const std::string& path, const std::vector<std::string>& header, const std::vector<size_t>& columns,
                 const Categories* known)
      : path_(path), header_(header), columns_(columns), known_(known) {
    if (known_) {
      for (size_t c : columns_) is_text_.push_back(known_->count(header_[c]) > 0);
      texts_.resize(columns_.size());
    }
  }

  /// The features per row once the columns' kinds are known (with known categories: from the header on).
  int64_t width() const {
    int64_t w = 0;
    for (size_t k = 0; k < columns_.size(); ++k) w += is_text_[k] ? static_cast<int64_t>(categories(k).size()) : 1;
    return w;
  }

  void add(const std::vector<std::string>& fields, int64_t line) {
    if (is_text_.empty()) {  // the first row of a training file decides which columns hold text
      for (size_t c : columns_)
        is_text_.push_back(!fields[c].empty() && std::isnan(parse_float(fields[c])) && !meant_as_number(fields[c]));
      texts_.resize(columns_.size());
    }
    for (size_t k = 0; k < columns_.size(); ++k) {
      const size_t c = columns_[k];
      const std::string& text = fields[c];
      if (is_text_[k]) {
        if (text.empty())
          fail(where(line, c), "empty, expected one of the column's categories (a text column: one-hot encoded)");
        texts_[k].push_back(text);
        continue;
      }
      const float v = parse_float(text);
      if (std::isnan(v))
        fail(where(line, c), text.empty() ? std::string("empty, expected a number") : "'" + excerpt(text) + "' is not a finite number",
             " (a feature column holds numbers; leave a text column out with --ignore ", excerpt(header_[c], 24), ")");
      numbers_.push_back(v);
    }
    lines_.push_back(line);
  }

  /// The encoded rows, row-major; the text columns' categories into `out` (when not known beforehand).
  std::vector<float> finish(Categories* out) {
    if (!known_) {
      for (size_t k = 0; k < columns_.size(); ++k) {
        if (!is_text_[k]) continue;
        std::vector<std::string> values = texts_[k];
        std::sort(values.begin(), values.end());
        values.erase(std::unique(values.begin(), values.end()), values.end());
        if (values.size() > kMaxCategories)
          fail("'", path_, "': the text column '", excerpt(header_[columns_[k]], 24), "' holds ", values.size(),
               " distinct values — more than the ", kMaxCategories, " categories a one-hot column may have (an identifier "
               "or free text?): leave it out with --ignore ", excerpt(header_[columns_[k]], 24));
        found_[header_[columns_[k]]] = std::move(values);
      }
      if (out) *out = found_;
    }
    const size_t rows = lines_.size(), numeric = static_cast<size_t>(std::count(is_text_.begin(), is_text_.end(), false));
    std::vector<float> encoded;
    encoded.reserve(rows * static_cast<size_t>(width()));
    for (size_t r = 0; r < rows; ++r)
      for (size_t k = 0, n = 0; k < columns_.size(); ++k) {
        if (!is_text_[k]) {
          encoded.push_back(numbers_[r * numeric + n++]);
          continue;
        }
        const std::vector<std::string>& values = categories(k);
        const std::string& text = texts_[k][r];
        const auto at = std::lower_bound(values.begin(), values.end(), text);
        if (at == values.end() || *at != text)
          fail(where(lines_[r], columns_[k]), "'", excerpt(text), "' is not one of the ", values.size(),
               " categories the model was trained on (", internal::join(values, ", ", 10), ")");
        for (auto v = values.begin(); v != values.end(); ++v) encoded.push_back(v == at ? 1.0f : 0.0f);
      }
    return encoded;
  }

 private:
  const std::vector<std::string>& categories(size_t k) const {
    const std::string& name = header_[columns_[k]];
    return known_ ? known_->at(name) : found_.at(name);
  }
  std::string where(int64_t line, size_t c) const {
    return "'" + path_ + "' line " + std::to_string(line) + ", column " + std::to_string(c + 1) + " ('" +
           excerpt(header_[c], 24) + "'): ";
  }

  const std::string& path_;
  const std::vector<std::string>& header_;
  const std::vector<size_t>& columns_;
  const Categories* known_;
  std::vector<bool> is_text_;
  std::vector<float> numbers_;                   // the number columns, row-major
  std::vector<std::vector<std::string>> texts_;  // per column: the text values, one per row
  std::vector<int64_t> lines_;
  Categories found_;
};

// Whether labels are classes: the training data's choice for a test file, else the options', else automatic.
bool labels_are_classes(const std::string& path, const CsvOptions& options, const Dataset* train,
                        const std::vector<std::string>& label_names, const std::vector<std::string>& labels) {
  if (train) return !train->is_regression();
  if (options.targets != CsvTargets::automatic || label_names.size() > 1) {
    if (label_names.size() > 1 && options.targets == CsvTargets::classes)
      fail("'", path, "': ", label_names.size(), " label columns (", internal::join(label_names),
           ") as classes: a classifier takes one label column (several are regression targets)");
    return options.targets != CsvTargets::values && label_names.size() == 1;
  }
  const bool whole = std::all_of(labels.begin(), labels.end(), whole_number);
  const bool numbers = std::all_of(labels.begin(), labels.end(), [](const std::string& t) { return !std::isnan(parse_float(t)); });
  if (numbers && !whole) return false;  // 0.5, 153.2: quantities
  if (!whole) return true;              // text: class names
  std::vector<std::string> distinct = labels;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  if (static_cast<int64_t>(distinct.size()) > kMaxAutomaticClasses)
    fail("'", path, "': the label column '", excerpt(label_names[0]), "' holds ", distinct.size(),
         " distinct whole numbers — too many to be classes (at most ", kMaxAutomaticClasses, " are taken as classes "
         "unasked). To predict the number itself (regression), give --loss mse (or --targets values); to train "
         "that many classes, --targets classes");
  return true;
}
}  // namespace

std::string to_string(CsvTargets targets) {
  switch (targets) {
    case CsvTargets::automatic: return "auto";
    case CsvTargets::classes: return "classes";
    case CsvTargets::values: return "values";
  }
  return "auto";
}

CsvTargets parse_csv_targets(const std::string& text) {
  for (const CsvTargets t : {CsvTargets::automatic, CsvTargets::classes, CsvTargets::values})
    if (to_string(t) == text) return t;
  fail("what the label columns hold must be auto, classes or values, got '", excerpt(text), "'");
}

Dataset load_csv(const std::string& path, const std::string& label, const Dataset* train) {
  CsvOptions options;
  options.labels = {label};
  return load_csv(path, options, train);
}

Dataset load_csv(const std::string& path, const CsvOptions& options, const Dataset* train) {
  if (options.labels.empty()) fail("'", path, "': no label column given");
  Dataset data;
  std::vector<std::string> header, labels;  // labels: row-major, one per label column
  Columns columns;
  std::optional<FeatureEncoder> encoder;
  read_csv(
      path, options.header,
      [&](const std::vector<std::string>& h) {
        header = h;
        columns = columns_for(path, header, options, train ? &train->feature_names : nullptr, true);
        encoder.emplace(path, header, columns.features, train ? &train->categories : nullptr);
        if (train && train->features() != encoder->width())
          fail("'", path, "' has ", encoder->width(), " features but the training data has ", train->features());
        if (train && train->is_regression() && train->outputs != static_cast<int64_t>(columns.labels.size()))
          fail("'", path, "' has ", columns.labels.size(), " label columns but the training data has ", train->outputs);
        data.feature_names = columns.feature_names;
      },
      [&](const std::vector<std::string>& fields, int64_t line) {
        encoder->add(fields, line);
        for (size_t k = 0; k < columns.labels.size(); ++k) {
          const size_t c = columns.labels[k];
          if (fields[c].empty())
            fail("'", path, "' line ", line, ", column ", c + 1, " ('", excerpt(header[c], 24), "'): the label is empty");
          labels.push_back(fields[c]);
        }
      });
  if (labels.empty()) fail("'", path, "' has ", options.header ? "a header but " : "", "no rows");
  data.values = encoder->finish(train ? nullptr : &data.categories);
  if (train) data.categories = train->categories;
  data.sample = {encoder->width()};
  const size_t width = columns.labels.size();

  if (!labels_are_classes(path, options, train, columns.label_names, labels)) {  // float targets
    data.outputs = static_cast<int64_t>(width);
    data.target_names = columns.label_names;
    data.num_classes = 0;
    data.targets.reserve(labels.size());
    for (size_t i = 0; i < labels.size(); ++i) {
      const float v = parse_float(labels[i]);
      if (std::isnan(v))
        fail("'", path, "': row ", i / width + 1, ", label column '", excerpt(columns.label_names[i % width], 24), "': '",
             excerpt(labels[i]), "' is not a finite number (regression targets are numbers)");
      data.targets.push_back(v);
    }
    return data;
  }

  data.target_names = columns.label_names;
  // Class indices: whole numbers as they are, text by its place among the training data's (or these) names.
  const bool numeric = train ? train->class_names.empty() : std::all_of(labels.begin(), labels.end(), whole_number);
  if (!numeric) {
    data.class_names = train ? train->class_names : labels;
    std::sort(data.class_names.begin(), data.class_names.end());
    data.class_names.erase(std::unique(data.class_names.begin(), data.class_names.end()), data.class_names.end());
    if (static_cast<int64_t>(data.class_names.size()) > kMaxClasses)
      fail("'", path, "': ", data.class_names.size(), " distinct labels, more than the ", kMaxClasses,
           " classes minidl trains — is the label column right (--label)?");
  }
  std::map<std::string, int32_t> index;
  for (size_t i = 0; i < data.class_names.size(); ++i) index[data.class_names[i]] = static_cast<int32_t>(i);
  int32_t largest = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    int64_t c = -1;
    if (numeric && whole_number(labels[i])) c = std::strtol(labels[i].c_str(), nullptr, 10);
    if (!numeric && index.count(labels[i])) c = index.at(labels[i]);
    if (c < 0)
      fail("'", path, "': label '", excerpt(labels[i]), "' of row ", i + 1, " is not a class of the training data",
           numeric ? " (whole numbers)" : "");
    if (c >= kMaxClasses)
      fail("'", path, "': label ", c, " of row ", i + 1, " would make ", c + 1, " classes, more than the ", kMaxClasses,
           " minidl trains (whole-number labels are class indices 0, 1, ...) — for a quantity, give --loss mse");
    data.labels.push_back(static_cast<int32_t>(c));
    largest = std::max(largest, static_cast<int32_t>(c));
  }
  data.num_classes = numeric ? std::max(largest + 1, train ? train->num_classes : 0)
                             : static_cast<int32_t>(data.class_names.size());
  return data;
}

Tensor load_csv_features(const std::string& path, const CsvOptions& options, const std::vector<std::string>& feature_names,
                         int64_t features, const Categories& categories) {
  std::vector<std::string> header;
  Columns columns;
  std::optional<FeatureEncoder> encoder;
  read_csv(
      path, options.header,
      [&](const std::vector<std::string>& h) {
        header = h;
        columns = columns_for(path, header, options, &feature_names, false);
        encoder.emplace(path, header, columns.features, &categories);
        if (encoder->width() != features)
          fail("'", path, "' has ", encoder->width(), " features (the columns ", columns_of(columns.feature_names),
               ") but the model takes ", features);
      },
      [&](const std::vector<std::string>& fields, int64_t line) { encoder->add(fields, line); });
  const std::vector<float> values = encoder->finish(nullptr);
  const int64_t rows = static_cast<int64_t>(values.size()) / features;
  if (rows == 0) fail("'", path, "' has ", options.header ? "a header but " : "", "no rows");
  return Tensor::from({rows, features}, values);
}

Tensor load_csv_features(const std::string& path, const std::string& label, int64_t features) {
  CsvOptions options;
  options.labels = {label};
  return load_csv_features(path, options, {}, features, {});
}

}  // namespace minidl
