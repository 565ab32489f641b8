// DataSpec: the data a run uses, as flags name it and checkpoints record it, and loading it.
#include <filesystem>

#include "minidl/data.h"
#include "minidl/error.h"

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

Metadata DataSpec::to_metadata() const {
  Metadata m{{"data.train", absolute(train)}, {"data.label", label}, {"data.validation_split", exact_text(validation_split)}};
  if (!test.empty()) m["data.test"] = absolute(test);
  return m;
}

DataSpec DataSpec::from_metadata(const MetadataReader& m) {
  DataSpec spec;
  spec.train = m.text("data.train");
  if (m.has("data.test")) spec.test = m.text("data.test");
  if (m.has("data.label")) spec.label = m.text("data.label");
  if (m.has("data.validation_split")) spec.validation_split = m.number("data.validation_split", 0.0, 0.99);
  return spec;
}

DatasetSplits load_data(const DataSpec& spec) {
  if (!(spec.validation_split >= 0.0 && spec.validation_split < 1.0))
    fail("the validation split must be in [0, 1), got ", spec.validation_split);
  DatasetSplits s;
  if (spec.is_csv()) {
    s.train = load_csv(spec.train, spec.label);
    if (!spec.test.empty() && spec.validation_split > 0.0)
      fail("'", spec.train, "': give a test file or a validation split, not both");
    if (!spec.test.empty()) {
      s.test = load_csv(spec.test, spec.label, &s.train);
      s.train.num_classes = s.test.num_classes;  // whole-number test labels may add classes
      return s;
    }
    if (spec.validation_split <= 0.0)
      fail("'", spec.train, "': a CSV training file needs test data: --test FILE, or --validation-split F to hold out ",
           "its last fraction");
  } else {
    if (!spec.test.empty())
      fail("--test names a CSV test file; the IDX directory '", spec.train, "' has its own t10k files (or use a validation split)");
    s = load_mnist_dir(spec.train);
    if (spec.validation_split <= 0.0) return s;
  }
  auto [train, validation] = split_validation(s.train, spec.validation_split);
  if (train.size() == 0 || validation.size() == 0)
    fail("'", spec.train, "': a validation split of ", spec.validation_split, " of ", s.train.size(),
         " samples leaves an empty part");
  return {std::move(train), std::move(validation)};
}

}  // namespace minidl
