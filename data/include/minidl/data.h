// Data: datasets of images (IDX files, MNIST-style, any size) or tables (CSV), where a data set comes from
// (DataSpec, which checkpoints record), image files (PNG, PGM), a synthetic generator, and a batch loader
// with Keras's fit semantics (seeded shuffle every epoch, partial last batch kept).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "minidl/metadata.h"
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

/// Samples and what to predict for them: integer class labels (classification), or float targets
/// (regression). Images are kept as uint8 pixels (47 MB for 60,000 28×28 images) and scaled to [0, 1] as they
/// are batched; tables are kept as floats and used as they are.
struct Dataset {
  std::vector<uint8_t> images;  ///< [size, features] row-major pixels (image data), or empty
  std::vector<float> values;    ///< [size, features] row-major numbers (tabular data), or empty
  std::vector<int32_t> labels;  ///< [size], in [0, num_classes); empty for regression
  Shape sample{28, 28, 1};      ///< one sample: [height, width, channels] (channels last), or [features]
  int32_t num_classes = 10;     ///< 0 for regression
  /// The classes' names when the data names them (a CSV's text labels, in class order); else empty.
  std::vector<std::string> class_names;
  /// Regression: `outputs` float targets per sample, [size, outputs] row-major. 0 outputs: classification.
  std::vector<float> targets;
  int64_t outputs = 0;
  /// The label or target columns' names, when the data names them (a CSV's); else empty.
  std::vector<std::string> target_names;
  /// The feature columns' names, when the data names them (a CSV header), in order; else empty.
  std::vector<std::string> feature_names;
  /// The text feature columns, one-hot encoded: column name → its categories in sorted order, one feature
  /// each (in the column's place among the features). Empty: every feature column holds numbers.
  std::map<std::string, std::vector<std::string>> categories;

  bool is_regression() const { return outputs > 0; }
  int64_t size() const {
    return is_regression() ? static_cast<int64_t>(targets.size()) / outputs : static_cast<int64_t>(labels.size());
  }
  int64_t features() const { return sample.numel(); }
  bool is_images() const { return values.empty(); }
  /// Rows [begin, end) as a new dataset.
  Dataset slice(int64_t begin, int64_t end) const;
  /// All samples as floats (pixels / 255, or the values), [size, features].
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
/// MNIST alike, any image size). The class count is num_classes, or with 0 the largest label of either set + 1. A missing file gives an error with the fix (install the package
/// or pass --data DIR).
DatasetSplits load_mnist_dir(const std::string& dir, int32_t num_classes = 0);
/// Writes a dataset split as the two standard files (prefix "train" or "t10k") into `dir`.
void save_mnist_split(const std::string& dir, const std::string& prefix, const Dataset& data, bool gzip);

/// What a CSV table's label columns hold.
enum class CsvTargets {
  automatic,  ///< classes for text or whole-number labels (at most kMaxAutomaticClasses of them), else values
  classes,    ///< class labels: whole numbers >= 0 are class indices, any other text a class name
  values,     ///< float targets (regression), one per label column
};
/// More distinct whole-number labels than this are refused in automatic mode: they look like a quantity (say
/// so with CsvTargets::values, or force classes).
inline constexpr int64_t kMaxAutomaticClasses = 100;
/// The most classes a CSV's labels may make (a class count sizes the model's last layer).
inline constexpr int64_t kMaxClasses = 1 << 16;
std::string to_string(CsvTargets targets);
/// "auto", "classes" or "values"; throws naming the choices otherwise.
CsvTargets parse_csv_targets(const std::string& text);

/// How to read a CSV table.
struct CsvOptions {
  /// The label column(s), each by name or, when no column has that name, by 0-based index. Several columns are
  /// regression targets.
  std::vector<std::string> labels{"label"};
  bool header = true;                ///< false: every line is a sample and the columns are named "0", "1", ...
  std::vector<std::string> ignore{};  ///< columns left out, by name or index
  CsvTargets targets = CsvTargets::automatic;
};

/// A CSV's text feature columns and their categories (Dataset::categories).
using Categories = std::map<std::string, std::vector<std::string>>;

/// Reads a CSV table (RFC 4180 quoting): a header naming the columns (unless options.header is false), one
/// sample per line, the label column(s) as options say, the columns to ignore left out, every other column a
/// feature (named in feature_names): numbers as they are, or — a column whose first row holds text — one-hot
/// over its distinct values (categories; at most 1000). Class labels that are all whole numbers >= 0 are class indices
/// (classes: the largest + 1); otherwise each distinct text is a class, in sorted order, named in class_names.
/// Value labels are float targets. With `train` (reading a test file), its feature columns are found by name
/// (in any order; a missing or extra column is an error naming it), text labels must be among its classes,
/// whole-number labels may add classes (num_classes covers both), text columns are encoded with its categories
/// (another value is an error naming it), and the targets are read as the training data's. Errors name the file, the line and the column, and quote at most a short excerpt of bad input.
Dataset load_csv(const std::string& path, const CsvOptions& options, const Dataset* train = nullptr);
/// The same with one label column named `label`.
Dataset load_csv(const std::string& path, const std::string& label, const Dataset* train = nullptr);
/// The features of a CSV file of new samples, [rows, features]: the columns named `feature_names`, found by
/// name (label and ignored columns may be present or absent), text columns one-hot over `categories`; with no
/// names (an older checkpoint), every column but the label and ignored ones, which must make `features`.
Tensor load_csv_features(const std::string& path, const CsvOptions& options, const std::vector<std::string>& feature_names,
                         int64_t features, const Categories& categories = {});
/// The same for a file with a header and one label column named `label` (which may be absent), columns by count.
Tensor load_csv_features(const std::string& path, const std::string& label, int64_t features);

/// Where a data set comes from, as flags give it and checkpoints record it, so that evaluate and predict need
/// nothing but the checkpoint.
struct DataSpec {
  std::string train{};            ///< a directory of MNIST-format IDX files or of image class folders, or a CSV file
  std::string test{};             ///< a CSV test file; empty: the IDX directory's t10k files, or the split
  std::string label = "label";    ///< the CSV label column(s), by name or index, separated by commas
  double validation_split = 0.0;  ///< > 0: the last fraction of `train` is the test set (Keras)
  bool header = true;             ///< the CSV files start with a header line
  std::string ignore{};           ///< CSV columns left out, by name or index, separated by commas
  CsvTargets targets = CsvTargets::automatic;  ///< what the CSV label columns hold

  /// True when `train` names a file (CSV) rather than a directory.
  bool is_csv() const;
  /// The CSV reading options this spec gives.
  CsvOptions csv() const;
  /// data.train (absolute), data.test, data.label, data.validation_split; data.header, data.ignore and
  /// data.targets when they are not the defaults.
  Metadata to_metadata() const;
  static DataSpec from_metadata(const MetadataReader& metadata);
};

/// Loads the training and test sets a spec names: a CSV file (it needs a test file or a validation split), an
/// image folder (is_image_folder: its test folder or a validation split), or an MNIST-format IDX directory.
DatasetSplits load_data(const DataSpec& spec);

/// An image file, PNG (through libpng) or binary/ASCII PGM: its pixels row by row, channels last, as uint8.
struct Image {
  int64_t height = 0, width = 0;
  std::vector<uint8_t> pixels;  ///< [height, width, channels]
  int64_t channels = 1;         ///< 1 (grayscale) or 3 (RGB)
};
/// Reads a PNG or PGM file (by its first bytes) with `channels` channels: 1 (grayscale: a colour image is
/// refused), 3 (RGB: a grayscale image is repeated into the three), or 0 as stored (1 for grayscale, 3 for
/// colour). An alpha channel is composited onto black. Throws naming the file for anything else or a file that
/// is not what it claims.
Image read_image(const std::string& path, int channels = 1);
/// Writes a grayscale PNG, atomically.
void write_png(const std::string& path, const Image& image);

/// True when `dir` holds images in class folders (Keras's image_dataset_from_directory layout): DIR/train/<class>/
/// (with DIR/test/<class>/), or DIR/<class>/ directly.
bool is_image_folder(const std::string& dir);
/// Loads class folders of PNG or PGM images. With DIR/train and DIR/test, those are the two sets (the test
/// folders must be classes of the training ones); otherwise DIR's class folders are the training set and the
/// test set is empty. Classes are the folder names in sorted order (class_names); within a set the samples are
/// interleaved class by class (file names sorted within each class), so that a validation split holds out a
/// share of every class. Grayscale unless the first image is in colour (then RGB, 3 channels); every image must
/// have the first one's size — an error names the file that does not. Other files are left out.
DatasetSplits load_image_folder(const std::string& dir);

/// A learnable, seeded MNIST-like set: each class is a noisy, randomly shifted copy of its own random
/// stroke pattern, 28×28 uint8. For tests and a run without any install.
DatasetSplits make_synthetic(int64_t train_size, int64_t test_size, uint64_t seed = 1);

/// Keras's validation_split: the LAST `fraction` of the rows (before any shuffling) becomes validation.
std::pair<Dataset, Dataset> split_validation(const Dataset& data, double fraction);

/// Keras's batch size for fit, evaluate and predict.
inline constexpr int64_t kDefaultBatchSize = 32;

/// Training-time image augmentation, the ResNet recipe (He et al. 2016, §4.2): each sample is zero-padded by
/// `pad` pixels on every side and cropped back to its size at a random offset (Keras's ZeroPadding2D then
/// RandomCrop), then mirrored left to right with probability 1/2 when `flip` (Keras's RandomFlip("horizontal")).
/// The draws are a function of the loader's seed, the epoch and the sample's place in the epoch's order, not a
/// generator's stream: any thread count and any process count (each process's slice of a batch) give the same
/// images, and a checkpoint's position (seed, epoch, batch) resumes them exactly.
struct Augmentation {
  int64_t pad = 0;    ///< 0: no crop
  bool flip = false;
  bool any() const { return pad > 0 || flip; }
};

/// One sample's augmentation: the crop's offset within the padded image (each in [0, 2·pad]) and the flip.
struct AugmentDraw {
  int64_t dy = 0, dx = 0;
  bool flip = false;
};
/// The draw for the sample at `position` (0-based, within the epoch's order) of epoch `epoch` (1-based).
AugmentDraw augment_draw(const Augmentation& augmentation, uint64_t seed, int64_t epoch, int64_t position);
/// Writes the augmented image `src` ([H, W, C] pixels, `sample` = {H, W, C}) to `dst` as floats in [0, 1]:
/// dst(y, x, c) = src(y + dy − pad, x' + dx − pad, c) / 255 with x' = W − 1 − x when flipped, else x; 0 where that
/// falls outside the image.
void augment_image(const uint8_t* src, float* dst, const Shape& sample, int64_t pad, const AugmentDraw& draw);

struct LoaderOptions {
  int64_t batch_size = kDefaultBatchSize;
  bool shuffle = true;     ///< A fresh seeded permutation every epoch; false keeps file order.
  bool drop_last = false;  ///< Keras keeps the partial last batch.
  uint64_t seed = 1;
  /// A partial last batch with fewer samples than this is skipped (2 for a model with batch normalisation,
  /// which cannot train on one sample); 1 keeps every partial batch.
  int64_t min_batch_size = 1;
  /// Data parallelism: `shards` processes share each batch (the global batch, batch_size samples), and this
  /// loader yields only slice `shard` of it — rows [⌊shard·b/shards⌋, ⌊(shard+1)·b/shards⌋) of the b-row batch
  /// every process draws alike from the same seed: ⌊b/shards⌋ or ⌈b/shards⌉ rows. batch_size must be at least
  /// shards; a partial last batch of fewer than `shards` samples is skipped.
  int shard = 0, shards = 1;
  /// Crops and flips for image data (training only: a loader for evaluation leaves it off).
  Augmentation augment{};
};

/// One batch: images as floats in [0, 1] [B, features], integer labels, and optionally one-hot targets; or,
/// for regression data, float targets.
struct Batch {
  Tensor x;
  std::vector<int32_t> labels;  ///< empty for regression data
  Tensor one_hot;  ///< [B, classes]; filled when the loader is asked for it (classification data).
  Tensor targets;  ///< [B, outputs]: regression data's targets; undefined for classification data.
  /// Data parallelism: this slice's first row within the global batch, and the global batch's rows (a loader of
  /// one shard: 0 and B). The Trainer weights the slice's loss by its share, so uneven slices sum to the
  /// global batch's mean.
  int64_t slice_begin = 0, global_rows = 0;
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
  /// This process's slice of batch `index` of the epoch: `*rows` rows from position `*begin` of the order.
  void shard_of_batch(int64_t index, int64_t* begin, int64_t* rows) const;

  const Dataset& data_;
  LoaderOptions options_;
  bool one_hot_;
  Generator gen_;
  std::vector<int32_t> order_;
  LoaderState state_;
};

}  // namespace minidl
