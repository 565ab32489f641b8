// libFuzzer target: the CSV reader. The first byte chooses the options (header or not, the label column by name,
// by index or two of them, what the labels hold, a column ignored); the rest is the file. What loads is read
// again as its own test file and as new samples, with the categories it found. Anything but minidl::Error, or
// memory beyond -rss_limit_mb, is a finding, and so is a data set that is not what it claims.
#include "fuzz_input.h"
#include "minidl/data.h"

namespace {
// A data set must hold what its shapes say.
void check(const minidl::Dataset& d) {
  const size_t rows = static_cast<size_t>(d.size()), features = static_cast<size_t>(d.features());
  if (d.values.size() != rows * features) __builtin_trap();
  if (d.is_regression()) {
    if (d.targets.size() != rows * static_cast<size_t>(d.outputs) || !d.labels.empty()) __builtin_trap();
    return;
  }
  for (int32_t l : d.labels)
    if (l < 0 || l >= d.num_classes) __builtin_trap();
  if (!d.class_names.empty() && static_cast<size_t>(d.num_classes) != d.class_names.size()) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t choice = data[0];
  minidl::CsvOptions options;
  options.header = (choice & 1) == 0;
  options.labels = (choice & 6) == 0 ? std::vector<std::string>{"label"}
                   : (choice & 6) == 2 ? std::vector<std::string>{"0"}
                   : (choice & 6) == 4 ? std::vector<std::string>{"label", "1"}
                                       : std::vector<std::string>{"2"};
  options.targets = (choice & 24) == 8 ? minidl::CsvTargets::classes
                    : (choice & 24) == 16 ? minidl::CsvTargets::values
                                          : minidl::CsvTargets::automatic;
  if (choice & 32) options.ignore = {"1"};
  const std::string path = minidl::fuzz::scratch_path(".csv");
  minidl::fuzz::write_input(path, data + 1, size - 1);
  try {
    const minidl::Dataset train = minidl::load_csv(path, options);
    check(train);
    const minidl::Dataset test = minidl::load_csv(path, options, &train);
    check(test);
    if (test.size() != train.size() || test.values != train.values) __builtin_trap();  // the same file reads the same
    const minidl::Tensor x = minidl::load_csv_features(path, options, train.feature_names, train.features(), train.categories);
    if (x.size(0) != train.size() || x.size(1) != train.features()) __builtin_trap();
  } catch (const minidl::Error&) {
  }
  return 0;
}
