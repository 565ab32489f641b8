// DataSpec: the data a run uses, as flags name it and checkpoints record it, and loading it.
#include <algorithm>
#include <filesystem>
#include <set>

#include "minidl/data.h"
#include "minidl/error.h"
#include "minidl/internal/text.h"

namespace minidl {
namespace {
std::string absolute(const std::string& path) {
  if (path.empty()) return path;
  std::error_code error;
  const std::filesystem::path p = std::filesystem::weakly_canonical(std::filesystem::absolute(path), error);
  return error ? path : p.string();
}
}  // namespace

bool DataSpec::is_csv() const {
  std::error_code error;
  if (std::filesystem::is_directory(train, error)) return false;
  if (std::filesystem::is_regular_file(train, error)) return true;
  const std::string ext = std::filesystem::path(train).extension().string();
  return ext == ".csv" || ext == ".CSV";
}

CsvOptions DataSpec::csv() const {
  CsvOptions o;
  o.labels = internal::split(label, ',');
  o.header = header;
  if (!ignore.empty()) o.ignore = internal::split(ignore, ',');
  o.targets = targets;
  return o;
}

Metadata DataSpec::to_metadata() const {
  Metadata m{{"data.train", absolute(train)}, {"data.label", label}, {"data.validation_split", exact_text(validation_split)}};
  if (!test.empty()) m["data.test"] = absolute(test);
  if (!header) m["data.header"] = "0";
  if (!ignore.empty()) m["data.ignore"] = ignore;
  if (targets != CsvTargets::automatic) m["data.targets"] = to_string(targets);
  return m;
}

DataSpec DataSpec::from_metadata(const MetadataReader& m) {
  DataSpec spec;
  spec.train = m.text("data.train");
  if (m.has("data.test")) spec.test = m.text("data.test");
  if (m.has("data.label")) spec.label = m.text("data.label");
  if (m.has("data.validation_split")) spec.validation_split = m.number("data.validation_split", 0.0, 0.99);
  if (m.has("data.header")) spec.header = m.boolean("data.header");
  if (m.has("data.ignore")) spec.ignore = m.text("data.ignore");
  if (m.has("data.targets")) {
    try {
      spec.targets = parse_csv_targets(m.text("data.targets"));
    } catch (const Error& e) {
      m.fail_at("data.targets", e.what());
    }
  }
  return spec;
}

namespace {
// The classes one part holds and the other does not, written "3, 7 and 9" (or by name).
std::vector<std::string> classes_missing(const Dataset& from, const Dataset& in) {
  const std::set<int32_t> present(in.labels.begin(), in.labels.end());
  std::set<int32_t> missing;
  for (int32_t l : from.labels)
    if (!present.count(l)) missing.insert(l);
  std::vector<std::string> names;
  for (int32_t l : missing)
    names.push_back(l < static_cast<int32_t>(from.class_names.size()) ? "'" + from.class_names[l] + "'" : std::to_string(l));
  return names;
}

// Warns when the training and test classes disagree: a class the model never trains on, or one never tested.
void warn_about_classes(const DataSpec& spec, const Dataset& train, const Dataset& test) {
  if (train.is_regression()) return;
  const std::string test_name = spec.validation_split > 0.0 ? "the held-out " + exact_text(spec.validation_split) + " of '" + spec.train + "'"
                                : spec.test.empty()            ? "the test data"
                                                               : "'" + spec.test + "'";
  if (const auto untrained = classes_missing(test, train); !untrained.empty())
    warn("class", untrained.size() == 1 ? " " : "es ", internal::join(untrained, ", ", 10), " of ", test_name,
         untrained.size() == 1 ? " occurs" : " occur", " nowhere in the training data: the model never learns ",
         untrained.size() == 1 ? "it" : "them", " and scores every such sample wrong",
         spec.validation_split > 0.0 ? " (the split takes the file's last rows, as Keras's validation_split: a file "
                                       "sorted by class holds out whole classes — shuffle its rows, or give a test set)"
                                     : "");
  else if (const auto untested = classes_missing(train, test); !untested.empty() && spec.validation_split > 0.0)
    warn("class", untested.size() == 1 ? " " : "es ", internal::join(untested, ", ", 10), " of the training data ",
         untested.size() == 1 ? "is" : "are", " absent from ", test_name,
         ": the test accuracy says nothing about ", untested.size() == 1 ? "it" : "them",
         " (the split takes the file's last rows, as Keras's validation_split)");
}
}  // namespace

DatasetSplits load_data(const DataSpec& spec) {
  if (!(spec.validation_split >= 0.0 && spec.validation_split < 1.0))
    fail("the validation split must be in [0, 1), got ", spec.validation_split);
  DatasetSplits s;
  if (spec.is_csv()) {
    if (!spec.test.empty() && spec.validation_split > 0.0)
      fail("'", spec.train, "': give a test file or a validation split, not both");
    s.train = load_csv(spec.train, spec.csv());
    if (!spec.test.empty()) {
      s.test = load_csv(spec.test, spec.csv(), &s.train);
      s.train.num_classes = s.test.num_classes;  // whole-number test labels may add classes
      warn_about_classes(spec, s.train, s.test);
      return s;
    }
    if (spec.validation_split <= 0.0)
      fail("'", spec.train, "': a CSV training file needs test data: --test FILE, or --validation-split F to hold out ",
           "its last fraction");
  } else if (is_image_folder(spec.train)) {
    if (!spec.test.empty())
      fail("--test names a CSV test file; the image folder '", spec.train, "' has its test images in ", spec.train,
           "/test/<class>/ (or use a validation split)");
    std::error_code error;  // checked before a single image is read
    const bool test_folder = std::filesystem::is_directory(std::filesystem::path(spec.train) / "test", error);
    if (test_folder && spec.validation_split > 0.0)
      fail("'", spec.train, "' has a test folder: give it or a validation split, not both");
    if (!test_folder && spec.validation_split <= 0.0)
      fail("'", spec.train, "' has no test/<class>/ folder: add one beside train/, or hold out a fraction with "
           "--validation-split F (the images are interleaved class by class, so every class keeps its share)");
    s = load_image_folder(spec.train);
    if (spec.validation_split <= 0.0) {
      warn_about_classes(spec, s.train, s.test);
      return s;
    }
  } else {
    if (!spec.test.empty())
      fail("--test names a CSV test file; the IDX directory '", spec.train, "' has its own t10k files (or use a validation split)");
    s = load_mnist_dir(spec.train);
    if (spec.validation_split <= 0.0) {
      warn_about_classes(spec, s.train, s.test);
      return s;
    }
  }
  auto [train, validation] = split_validation(s.train, spec.validation_split);
  if (train.size() == 0 || validation.size() == 0)
    fail("'", spec.train, "': a validation split of ", spec.validation_split, " of ", s.train.size(),
         " samples leaves an empty part");
  warn_about_classes(spec, train, validation);
  return {std::move(train), std::move(validation)};
}

}  // namespace minidl
