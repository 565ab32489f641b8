// Datasets: the standard MNIST-style directory, slices and validation splits, a synthetic learnable set.
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "minidl/data.h"
#include "minidl/error.h"

namespace minidl {
namespace {
bool exists(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0;
}

// dir/name.gz if present, else dir/name if present, else an error with the fix.
std::string find_file(const std::string& dir, const std::string& name) {
  const std::string raw = dir + "/" + name, gz = raw + ".gz";
  if (exists(gz)) return gz;
  if (exists(raw)) return raw;
  fail("cannot find '", gz, "' (or '", raw, "') — install Fashion-MNIST with `apt-get install dataset-fashion-mnist`, ",
       "or point --data (or MINIDL_DATA) at a directory holding the four MNIST-format files, or at a folder of class ",
       "folders of images (DIR/train/<class>/*.png), or at a CSV file");
}

// One split; labels checked against num_classes when it is > 0, else counted from them (max label + 1).
Dataset load_split(const std::string& dir, const std::string& prefix, int32_t num_classes) {
  const std::string images_path = find_file(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_file(dir, prefix + "-labels-idx1-ubyte");
  IdxArray images = read_idx(images_path, 3);
  const IdxArray labels = read_idx(labels_path, 1);
  if (images.dims[0] != labels.dims[0])
    fail("'", images_path, "' holds ", images.dims[0], " images but '", labels_path, "' holds ", labels.dims[0],
         " labels; they must match");
  Dataset data;
  data.sample = {images.dims[1], images.dims[2], 1};
  data.images = std::move(images.values);
  data.labels.resize(labels.values.size());
  int32_t largest = 0;
  for (size_t i = 0; i < labels.values.size(); ++i) {
    if (num_classes > 0 && labels.values[i] >= num_classes)
      fail("'", labels_path, "': label ", int(labels.values[i]), " at index ", i, " is out of range: expected < ",
           num_classes, " classes");
    data.labels[i] = labels.values[i];
    largest = std::max(largest, data.labels[i]);
  }
  data.num_classes = num_classes > 0 ? num_classes : largest + 1;
  return data;
}
}  // namespace

std::string default_data_dir() {
  const char* env = std::getenv("MINIDL_DATA");
  return env && *env ? env : kFashionMnistDir;
}

DatasetSplits load_mnist_dir(const std::string& dir, int32_t num_classes) {
  DatasetSplits s{load_split(dir, "train", num_classes), load_split(dir, "t10k", num_classes)};
  if (!(s.test.sample == s.train.sample))
    fail("'", dir, "': the test images are ", s.test.sample.str(), " but the training images are ",
         s.train.sample.str(), "; they must match");
  // The class count covers both sets: a class only the test set has still gets an output (that never trains).
  s.train.num_classes = s.test.num_classes = std::max(s.train.num_classes, s.test.num_classes);
  return s;
}

void save_mnist_split(const std::string& dir, const std::string& prefix, const Dataset& data, bool gzip) {
  if (!data.is_images() || data.sample.rank() != 3 || data.sample[2] != 1)
    fail("save_mnist_split: MNIST files hold grayscale images [height, width, 1], not samples of shape ", data.sample.str());
  const std::string ext = gzip ? ".gz" : "";
  write_idx(dir + "/" + prefix + "-images-idx3-ubyte" + ext, {{data.size(), data.sample[0], data.sample[1]}, data.images},
            gzip);
  IdxArray labels{{data.size()}, {}};
  for (int32_t l : data.labels) labels.values.push_back(static_cast<uint8_t>(l));
  write_idx(dir + "/" + prefix + "-labels-idx1-ubyte" + ext, labels, gzip);
}

Dataset Dataset::slice(int64_t begin, int64_t end) const {
  if (begin < 0 || end > size() || begin > end)
    fail("Dataset::slice: [", begin, ", ", end, ") is out of range for ", size(), " samples");
  Dataset out;
  out.sample = sample;
  out.num_classes = num_classes;
  out.class_names = class_names;
  if (is_images()) out.images.assign(images.begin() + begin * features(), images.begin() + end * features());
  else out.values.assign(values.begin() + begin * features(), values.begin() + end * features());
  if (is_regression()) out.targets.assign(targets.begin() + begin * outputs, targets.begin() + end * outputs);
  else out.labels.assign(labels.begin() + begin, labels.begin() + end);
  out.outputs = outputs;
  out.target_names = target_names;
  out.feature_names = feature_names;
  out.categories = categories;
  return out;
}

Tensor Dataset::to_tensor() const {
  Tensor x = Tensor::empty({size(), features()});
  float* dst = x.data();
  if (!is_images()) std::copy(values.begin(), values.end(), dst);
  for (size_t i = 0; i < images.size(); ++i) dst[i] = images[i] * (1.0f / 255.0f);
  return x;
}

std::pair<Dataset, Dataset> split_validation(const Dataset& data, double fraction) {
  if (!(fraction >= 0.0 && fraction < 1.0)) fail("validation split must be in [0, 1), got ", fraction);
  // Keras: the last `fraction` of the data, taken before shuffling; the split point rounds down.
  const int64_t train = static_cast<int64_t>(std::floor(static_cast<double>(data.size()) * (1.0 - fraction)));
  return {data.slice(0, train), data.slice(train, data.size())};
}

DatasetSplits make_synthetic(int64_t train_size, int64_t test_size, uint64_t seed) {
  constexpr int kSide = 28, kClasses = 10;
  Generator gen(seed);
  // Each class: a pattern of a few random strokes (line segments) on the 28×28 grid.
  std::vector<std::vector<float>> patterns(kClasses, std::vector<float>(kSide * kSide, 0.0f));
  for (auto& pattern : patterns)
    for (int stroke = 0; stroke < 4; ++stroke) {
      const float x0 = gen.uniform(5, 23), y0 = gen.uniform(5, 23), x1 = gen.uniform(5, 23), y1 = gen.uniform(5, 23);
      for (int t = 0; t <= 40; ++t) {
        const int x = static_cast<int>(std::lround(x0 + (x1 - x0) * t / 40.0f));
        const int y = static_cast<int>(std::lround(y0 + (y1 - y0) * t / 40.0f));
        pattern[y * kSide + x] = 1.0f;
      }
    }
  const auto make = [&](int64_t n) {
    Dataset data;
    data.images.resize(static_cast<size_t>(n * kSide * kSide));
    data.labels.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const int32_t label = static_cast<int32_t>(gen.below(kClasses));
      const int dx = static_cast<int>(gen.below(5)) - 2, dy = static_cast<int>(gen.below(5)) - 2;
      data.labels[i] = label;
      uint8_t* image = data.images.data() + i * kSide * kSide;
      for (int y = 0; y < kSide; ++y)
        for (int x = 0; x < kSide; ++x) {
          const int sx = x - dx, sy = y - dy;
          const float ink = (sx >= 0 && sx < kSide && sy >= 0 && sy < kSide) ? patterns[label][sy * kSide + sx] : 0.0f;
          const float v = 200.0f * ink * gen.uniform(0.5f, 1.0f) + gen.normal(0.0f, 25.0f);
          image[y * kSide + x] = static_cast<uint8_t>(std::clamp(v, 0.0f, 255.0f));
        }
    }
    return data;
  };
  DatasetSplits splits;
  splits.train = make(train_size);
  splits.test = make(test_size);
  return splits;
}

}  // namespace minidl
