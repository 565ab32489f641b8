// The batch loader: a seeded permutation per epoch, one pass over the rows a batch needs (cropped and flipped when
// augmenting), resumable state.
#include <algorithm>
#include <numeric>

#include "minidl/data.h"
#include "minidl/error.h"
#include "minidl/internal/parallel.h"

namespace minidl {
namespace {
// Rows whose loads the gather keeps in flight ahead of the one it converts. Measured on the document model against
// prefetching the whole next batch at the end of the previous call (which the step evicts again before use),
// alternating both in one process, 200 rounds: batch 256 4% faster a step, batch 32 the same.
constexpr int64_t kRowsAhead = 8;

// Reuses t if it has the shape and nothing else holds it (no live graph still reads it); else allocates.
void reuse_or_allocate(Tensor& t, const Shape& shape) {
  if (t.defined() && t.shape() == shape && t.impl_ptr().use_count() == 1 && t.impl().storage.use_count() == 1)
    return;
  t = Tensor::empty(shape);
}
// splitmix64's finaliser: a bijection of 64-bit words whose every output bit depends on every input bit.
uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A number in [0, n) from 32 random bits (Lemire's multiply-shift; its bias, below n / 2³², is far below what
// training could notice).
int64_t below(uint64_t bits32, int64_t n) { return static_cast<int64_t>((bits32 * static_cast<uint64_t>(n)) >> 32); }

// Set apart from the shuffle's stream, which the same seed also starts.
constexpr uint64_t kAugmentStream = 0x61756760656e7473ull;
}  // namespace

AugmentDraw augment_draw(const Augmentation& a, uint64_t seed, int64_t epoch, int64_t position) {
  const uint64_t h = mix(mix(mix(seed ^ kAugmentStream) + static_cast<uint64_t>(epoch)) + static_cast<uint64_t>(position));
  const int64_t offsets = 2 * a.pad + 1;
  return {.dy = below(h & 0xFFFFFFFFu, offsets), .dx = below(h >> 32, offsets), .flip = a.flip && (mix(h) & 1u) != 0};
}

void augment_image(const uint8_t* __restrict src, float* __restrict dst, const Shape& sample, int64_t pad,
                   const AugmentDraw& draw) {
  const int64_t h = sample[0], w = sample[1], c = sample[2];
  for (int64_t y = 0; y < h; ++y) {
    float* out = dst + y * w * c;
    const int64_t sy = y + draw.dy - pad;
    if (sy < 0 || sy >= h) {
      std::fill_n(out, w * c, 0.0f);
      continue;
    }
    const uint8_t* row = src + sy * w * c;
    for (int64_t x = 0; x < w; ++x) {
      const int64_t sx = (draw.flip ? w - 1 - x : x) + draw.dx - pad;
      if (sx < 0 || sx >= w)
        std::fill_n(out + x * c, c, 0.0f);
      else
        for (int64_t k = 0; k < c; ++k) out[x * c + k] = static_cast<float>(row[sx * c + k]) * (1.0f / 255.0f);
    }
  }
}

DataLoader::DataLoader(const Dataset& data, LoaderOptions options, bool one_hot)
    : data_(data), options_(options), one_hot_(one_hot), gen_(options.seed) {
  if (options.batch_size <= 0) fail("DataLoader: batch size must be > 0, got ", options.batch_size);
  if (options.min_batch_size < 1) fail("DataLoader: min_batch_size must be >= 1, got ", options.min_batch_size);
  if (data.size() == 0) fail("DataLoader: the dataset is empty");
  if (options.shards < 1 || options.shard < 0 || options.shard >= options.shards)
    fail("DataLoader: shard ", options.shard, " of ", options.shards, " is out of range");
  if (options.batch_size < options.shards)
    fail("the batch size ", options.batch_size, " cannot give each of ", options.shards, " processes a sample: use a "
         "global batch of at least ", options.shards);
  if (options.augment.pad < 0) fail("DataLoader: the augmentation's padding must be >= 0, got ", options.augment.pad);
  if (options.augment.any()) {
    const Shape& sample = data.sample;
    if (!data.is_images() || sample.rank() != 3)
      fail("DataLoader: augmentation crops and flips images (samples of height × width × channels pixels), but this "
           "data set holds ", data.is_images() ? "samples of shape " + shape_text(sample) : "table rows of numbers",
           " — leave augmentation off for it");
    const int64_t side = std::min(sample[0], sample[1]);
    if (options.augment.pad >= side)
      fail("DataLoader: the augmentation's padding must be in [0, ", side - 1, "] for ", sample[0], "×", sample[1],
           " images (a shift as large as the image leaves it blank), got ", options.augment.pad);
  }
  state_.rng = gen_.state();
}

int64_t DataLoader::batches_per_epoch() const {
  const int64_t n = data_.size(), b = options_.batch_size, rest = n % b;
  // A partial batch too small for every process to get a sample is skipped, as one below min_batch_size is.
  const bool keep_partial = !options_.drop_last && rest >= std::max<int64_t>(options_.min_batch_size, options_.shards);
  return n / b + (rest > 0 && keep_partial ? 1 : 0);
}

int64_t DataLoader::last_batch_size() const {
  const int64_t rest = data_.size() - (batches_per_epoch() - 1) * options_.batch_size;
  return std::min(rest, options_.batch_size);
}

void DataLoader::start_epoch() {
  state_.epoch_rng = gen_.state();
  order_.resize(static_cast<size_t>(data_.size()));
  std::iota(order_.begin(), order_.end(), 0);
  if (options_.shuffle) gen_.shuffle(order_);
  state_.rng = gen_.state();
  ++state_.epoch;
  state_.next_batch = 0;
}

bool DataLoader::next(Batch& batch) {
  if (order_.empty()) fail("DataLoader::next: call start_epoch() first");
  if (state_.next_batch >= batches_per_epoch()) return false;
  int64_t begin, rows;
  shard_of_batch(state_.next_batch, &begin, &rows);
  const int64_t features = data_.features();
  reuse_or_allocate(batch.x, {rows, features});
  const bool regression = data_.is_regression();
  batch.labels.resize(regression ? 0 : static_cast<size_t>(rows));
  if (regression) reuse_or_allocate(batch.targets, {rows, data_.outputs});
  else batch.targets = Tensor();
  if (one_hot_ && !regression) {
    reuse_or_allocate(batch.one_hot, {rows, data_.num_classes});
    batch.one_hot.fill_(0.0f);
  }
  // One pass over the rows this batch needs: uint8 → float in [0, 1], or the values as they are. (__restrict:
  // a uint8_t pointer may alias anything, which would otherwise keep the conversion from vectorising.)
  const bool images = data_.is_images(), augment = options_.augment.any();
  const int64_t row_bytes = features * (images ? 1 : static_cast<int64_t>(sizeof(float)));
  const char* rows_base = images ? reinterpret_cast<const char*>(data_.images.data())
                                 : reinterpret_cast<const char*>(data_.values.data());
  internal::parallel_for(rows, features, [&](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r) {
      // Shuffled rows lie anywhere in the data set, so reading them misses the cache: asking for the row
      // kRowsAhead further on now keeps that many rows' loads in flight together.
      if (r + kRowsAhead < last) {
        const char* ahead = rows_base + static_cast<int64_t>(order_[begin + r + kRowsAhead]) * row_bytes;
        for (int64_t j = 0; j < row_bytes; j += 64) __builtin_prefetch(ahead + j);
      }
      const int32_t row = order_[begin + r];
      float* __restrict dst = batch.x.data() + r * features;
      if (images && augment) {
        const AugmentDraw draw = augment_draw(options_.augment, options_.seed, state_.epoch, begin + r);
        augment_image(data_.images.data() + static_cast<int64_t>(row) * features, dst, data_.sample,
                      options_.augment.pad, draw);
      } else if (images) {
        const uint8_t* __restrict src = data_.images.data() + static_cast<int64_t>(row) * features;
        for (int64_t j = 0; j < features; ++j) dst[j] = static_cast<float>(src[j]) * (1.0f / 255.0f);
      } else {
        std::copy_n(data_.values.data() + static_cast<int64_t>(row) * features, features, dst);
      }
      if (regression) {
        std::copy_n(data_.targets.data() + static_cast<int64_t>(row) * data_.outputs, data_.outputs,
                    batch.targets.data() + r * data_.outputs);
        continue;
      }
      batch.labels[r] = data_.labels[row];
      if (one_hot_) batch.one_hot.data()[r * data_.num_classes + batch.labels[r]] = 1.0f;
    }
  });
  batch.slice_begin = begin - state_.next_batch * options_.batch_size;
  batch.global_rows = std::min(options_.batch_size, data_.size() - state_.next_batch * options_.batch_size);
  ++state_.next_batch;
  return true;
}

void DataLoader::shard_of_batch(int64_t index, int64_t* begin, int64_t* rows) const {
  // Process r of N takes rows [⌊r·b/N⌋, ⌊(r+1)·b/N⌋) of the b-row global batch: ⌊b/N⌋ or ⌈b/N⌉ of them.
  const int64_t global_begin = index * options_.batch_size;
  const int64_t b = std::min(options_.batch_size, data_.size() - global_begin), n = options_.shards;
  const int64_t first = options_.shard * b / n, last = (options_.shard + 1) * b / n;
  *rows = last - first;
  *begin = global_begin + first;
}

LoaderState DataLoader::state() const { return state_; }

void DataLoader::set_state(const LoaderState& state) {
  if (state.epoch < 0 || state.epoch > (int64_t{1} << 40))
    fail("DataLoader::set_state: epoch ", state.epoch, " is out of range");
  const int64_t batches = batches_per_epoch();
  if (state.next_batch < 0 || state.next_batch > batches || (state.epoch == 0 && state.next_batch != 0))
    fail("DataLoader::set_state: next batch ", state.next_batch, " is out of range for epoch ", state.epoch, " of ",
         batches, " batches");
  state_ = state;
  if (state.epoch == 0) {
    gen_.set_state(state.rng);
    order_.clear();
    return;
  }
  // Redraw the current epoch's permutation from the generator state it was drawn with.
  gen_.set_state(state.epoch_rng);
  const int64_t epoch = state.epoch, next = state.next_batch;
  state_.epoch = epoch - 1;
  start_epoch();
  state_.next_batch = next;
}

}  // namespace minidl
