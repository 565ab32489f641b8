// MNIST-style data: the IDX file format (raw or gzip), datasets by directory, a synthetic generator, and a
// batch loader with Keras's fit semantics (seeded shuffle every epoch, partial last batch kept).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "minidl/random.h"
#include "minidl/tensor.h"

namespace minidl {

/// An unsigned-byte IDX array: its dimensions and its values in row-major order.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> values;
};

/// Reads an IDX file of unsigned bytes with `expected_rank` dimensions, gzip-compressed or raw. Checks the
/// magic number, the rank, that no dimension is zero, and that the payload is exactly as long as the header
/// says; throws minidl::Error naming the file, what was expected and what was found.
IdxArray read_idx(const std::string& path, int expected_rank);
/// Writes an IDX file of unsigned bytes, gzip-compressed when `gzip`, atomically.
void write_idx(const std::string& path, const IdxArray& array, bool gzip);

/// Images kept as uint8 (47 MB for 60,000 28×28 images) and integer labels.
struct Dataset {
  std::vector<uint8_t> images;  // [size, features] row-major
  std::vector<int32_t> labels;  // [size]
  int64_t height = 28, width = 28;
  int32_t num_classes = 10;
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  int64_t features() const { return height * width; }
  /// One sample's shape: [height, width, 1] (grayscale images, channels last).
  Shape sample_shape() const { return {height, width, 1}; }
  /// Rows [begin, end) as a new dataset.
  Dataset slice(int64_t begin, int64_t end) const;
  /// All images as floats in [0, 1], [size, features], and the labels.
  Tensor to_tensor() const;
};

struct DatasetSplits {
  Dataset train, test;
};

/// The Fashion-MNIST directory of Debian's dataset-fashion-mnist package.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
/// $MINIDL_DATA if set, else kFashionMnistDir.
std::string default_data_dir();
/// Loads train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-... from `dir` (Fashion-MNIST and
/// MNIST alike, any image size). The class count is num_classes, or with 0 the largest training label + 1
/// (the test labels must not go beyond it). A missing file gives an error with the fix (install the package
/// or pass --data DIR).
DatasetSplits load_mnist_dir(const std::string& dir, int32_t num_classes = 0);
/// Writes a dataset split as the two standard files (prefix "train" or "t10k") into `dir`.
void save_mnist_split(const std::string& dir, const std::string& prefix, const Dataset& data, bool gzip);

/// A learnable, seeded MNIST-like set: each class is a noisy, randomly shifted copy of its own random
/// stroke pattern, 28×28 uint8. For tests and a run without any install.
DatasetSplits make_synthetic(int64_t train_size, int64_t test_size, uint64_t seed = 1);

/// Keras's validation_split: the LAST `fraction` of the rows (before any shuffling) becomes validation.
std::pair<Dataset, Dataset> split_validation(const Dataset& data, double fraction);

struct LoaderOptions {
  int64_t batch_size = 32;
  bool shuffle = true;     ///< A fresh seeded permutation every epoch; false keeps file order.
  bool drop_last = false;  ///< Keras keeps the partial last batch.
  uint64_t seed = 1;
  /// A partial last batch with fewer samples than this is skipped (2 for a model with batch normalisation,
  /// which cannot train on one sample); 1 keeps every partial batch.
  int64_t min_batch_size = 1;
};

/// One batch: images as floats in [0, 1] [B, features], integer labels, and optionally one-hot targets.
struct Batch {
  Tensor x;
  std::vector<int32_t> labels;
  Tensor one_hot;  ///< [B, classes]; filled when the loader is asked for it.
};

/// Where a loader stands, for checkpoints: resuming from it draws exactly the same batches.
struct LoaderState {
  int64_t epoch = 0;                       ///< Epochs started so far.
  int64_t next_batch = 0;                  ///< Index of the next batch in the current epoch.
  std::array<uint64_t, 4> epoch_rng{};     ///< Generator state when the current epoch's permutation was drawn.
  std::array<uint64_t, 4> rng{};           ///< Generator state now.
};

/// Draws batches from a dataset it does not own (the dataset must outlive it).
class DataLoader {
 public:
  DataLoader(const Dataset& data, LoaderOptions options, bool one_hot = false);
  int64_t batches_per_epoch() const;
  /// Samples in the last batch of an epoch (batch_size when the data divides evenly or drop_last is set).
  int64_t last_batch_size() const;
  /// Starts the next epoch: draws its permutation (or keeps file order).
  void start_epoch();
  /// Fills `batch` with the next batch of the current epoch; false at the end of the epoch. Reuses the
  /// batch's buffers when nothing else holds them, so a training loop allocates nothing here.
  bool next(Batch& batch);
  LoaderState state() const;
  /// Restores a position saved by state(); checks it against this loader's data and batches first (a
  /// checkpoint's numbers are never trusted) and throws naming what is out of range.
  void set_state(const LoaderState& state);
  const LoaderOptions& options() const { return options_; }
  const Dataset& dataset() const { return data_; }
  bool one_hot() const { return one_hot_; }

 private:
  void prefetch_next_batch() const;

  const Dataset& data_;
  LoaderOptions options_;
  bool one_hot_;
  Generator gen_;
  std::vector<int32_t> order_;
  LoaderState state_;
};

}  // namespace minidl
