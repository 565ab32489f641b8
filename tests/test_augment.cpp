// Tests of training-time augmentation: the crop-after-padding and flip formula, the draws (every offset, half the
// images flipped, a function of seed, epoch and position), the loader's batches for any thread count and process
// slice and after a resume, and `minidl train --augment`: exact resume and the refusals of bad values.
#include <algorithm>
#include <array>
#include <cmath>

#include "cli_helpers.h"
#include "minidl/checkpoint.h"

using namespace minidl;
using minidl::test::data_flag;
using minidl::test::minidl_cli;
using minidl::test::read_bytes;
using minidl::test::Run;
using minidl::test::TempDir;
using minidl::test::with_threads;
using minidl::test::write_bytes;

namespace {
std::vector<float> scaled(std::vector<int> pixels) {
  std::vector<float> out;
  for (int p : pixels) out.push_back(static_cast<float>(p) * (1.0f / 255.0f));
  return out;
}

// Every batch of one epoch (the loader's first, or the one after its current), concatenated.
std::vector<float> epoch_pixels(DataLoader& loader) {
  loader.start_epoch();
  std::vector<float> out;
  Batch b;
  while (loader.next(b)) out.insert(out.end(), b.x.data(), b.x.data() + b.x.numel());
  return out;
}

}  // namespace

TEST_CASE("augment_image pads with zeros, crops at the drawn offset and mirrors, as the formula says", "[augment]") {
  // A 3×4 image: dst(y, x) = src(y + dy − pad, x' + dx − pad) / 255, x' = W − 1 − x when flipped.
  const std::vector<uint8_t> src{10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120};
  std::vector<float> dst(12, -1.0f);
  augment_image(src.data(), dst.data(), {3, 4, 1}, 1, {.dy = 0, .dx = 2, .flip = false});
  CHECK(dst == scaled({0, 0, 0, 0, 20, 30, 40, 0, 60, 70, 80, 0}));
  augment_image(src.data(), dst.data(), {3, 4, 1}, 1, {.dy = 2, .dx = 0, .flip = true});
  CHECK(dst == scaled({70, 60, 50, 0, 110, 100, 90, 0, 0, 0, 0, 0}));
  // The centre crop (dy = dx = pad) without a flip is the image itself, with one its mirror.
  augment_image(src.data(), dst.data(), {3, 4, 1}, 1, {.dy = 1, .dx = 1, .flip = false});
  CHECK(dst == scaled({10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120}));
  augment_image(src.data(), dst.data(), {3, 4, 1}, 1, {.dy = 1, .dx = 1, .flip = true});
  CHECK(dst == scaled({40, 30, 20, 10, 80, 70, 60, 50, 120, 110, 100, 90}));

  // Channels last move together: a 2×2 RGB image flipped and shifted down by one.
  const std::vector<uint8_t> rgb{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  std::vector<float> out(12);
  augment_image(rgb.data(), out.data(), {2, 2, 3}, 1, {.dy = 0, .dx = 1, .flip = true});
  CHECK(out == scaled({0, 0, 0, 0, 0, 0, 4, 5, 6, 1, 2, 3}));
}

TEST_CASE("augment_draw gives every offset alike and flips half the images, from seed, epoch and position alone", "[augment]") {
  const Augmentation a{.pad = 2, .flip = true};
  std::array<int, 5> dy{}, dx{};
  int flips = 0, moved_by_epoch = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const AugmentDraw d = augment_draw(a, 7, 1, i);
    REQUIRE(d.dy >= 0);
    REQUIRE(d.dy <= 4);
    REQUIRE(d.dx >= 0);
    REQUIRE(d.dx <= 4);
    ++dy[static_cast<size_t>(d.dy)], ++dx[static_cast<size_t>(d.dx)], flips += d.flip;
    const AugmentDraw again = augment_draw(a, 7, 1, i);
    REQUIRE((again.dy == d.dy && again.dx == d.dx && again.flip == d.flip));
    const AugmentDraw next = augment_draw(a, 7, 2, i);
    moved_by_epoch += next.dy != d.dy || next.dx != d.dx || next.flip != d.flip;
  }
  // Each offset 1/5 of the time, each flip 1/2: within 5 standard deviations of a binomial count.
  const double sd5 = 5.0 * std::sqrt(n * 0.2 * 0.8);
  for (int k = 0; k < 5; ++k) {
    CHECK(std::abs(dy[static_cast<size_t>(k)] - n / 5) < sd5);
    CHECK(std::abs(dx[static_cast<size_t>(k)] - n / 5) < sd5);
  }
  CHECK(std::abs(flips - n / 2) < 5.0 * std::sqrt(n * 0.25));
  // Another epoch redraws (the same draw by chance: 1/50 of the time).
  CHECK(moved_by_epoch > n * 9 / 10);
  // Another seed too; no flip unless asked; no shift without padding.
  int differ = 0;
  for (int i = 0; i < 100; ++i) {
    const AugmentDraw s7 = augment_draw(a, 7, 1, i), s8 = augment_draw(a, 8, 1, i);
    differ += s7.dy != s8.dy || s7.dx != s8.dx || s7.flip != s8.flip;
  }
  CHECK(differ > 80);
  for (int i = 0; i < 100; ++i) {
    CHECK_FALSE(augment_draw({.pad = 2, .flip = false}, 7, 1, i).flip);
    const AugmentDraw still = augment_draw({.pad = 0, .flip = true}, 7, 1, i);
    CHECK((still.dy == 0 && still.dx == 0));
  }
}

TEST_CASE("the loader's augmented batches are the formula's images of the shuffled samples, for any threads, slices and resumes", "[augment]") {
  const DatasetSplits s = make_synthetic(150, 10, 3);
  const LoaderOptions plain{.batch_size = 32, .shuffle = true, .seed = 5};
  LoaderOptions options = plain;
  options.augment = {.pad = 3, .flip = true};

  // The same permutation as without augmentation: each row is augment_image of the plain row at its position.
  DataLoader unaugmented(s.train, plain), augmented(s.train, options);
  epoch_pixels(unaugmented);  // epoch 2 of each, to see the epoch enter the draws
  epoch_pixels(augmented);
  const std::vector<float> original = epoch_pixels(unaugmented), pixels = epoch_pixels(augmented);
  REQUIRE(pixels.size() == original.size());
  const int64_t features = s.train.features();
  int64_t changed = 0;
  for (int64_t position = 0; position < s.train.size(); ++position) {
    std::vector<uint8_t> source(static_cast<size_t>(features));
    for (int64_t j = 0; j < features; ++j)
      source[static_cast<size_t>(j)] = static_cast<uint8_t>(std::lround(original[static_cast<size_t>(position * features + j)] * 255.0f));
    std::vector<float> expected(static_cast<size_t>(features));
    augment_image(source.data(), expected.data(), s.train.sample, 3, augment_draw(options.augment, 5, 2, position));
    const std::vector<float> row(pixels.begin() + position * features, pixels.begin() + (position + 1) * features);
    INFO("position " << position);
    REQUIRE(row == expected);
    changed += row != std::vector<float>(original.begin() + position * features, original.begin() + (position + 1) * features);
  }
  CHECK(changed > s.train.size() * 3 / 4);

  // One thread or two: the same bytes.
  const auto epochs_with = [&](int threads) {
    return with_threads(threads, [&] {
      DataLoader l(s.train, options);
      std::vector<float> both = epoch_pixels(l), second = epoch_pixels(l);
      both.insert(both.end(), second.begin(), second.end());
      return both;
    });
  };
  CHECK(epochs_with(1) == epochs_with(2));

  // Two processes' slices of each batch, put side by side, are the one-process batch.
  LoaderOptions first = options, second = options;
  first.shards = second.shards = 2, second.shard = 1;
  DataLoader whole(s.train, options), half0(s.train, first), half1(s.train, second);
  for (DataLoader* l : {&whole, &half0, &half1}) l->start_epoch();
  Batch b, b0, b1;
  while (whole.next(b)) {
    REQUIRE(half0.next(b0));
    REQUIRE(half1.next(b1));
    std::vector<float> joined(b0.x.data(), b0.x.data() + b0.x.numel());
    joined.insert(joined.end(), b1.x.data(), b1.x.data() + b1.x.numel());
    REQUIRE(joined == std::vector<float>(b.x.data(), b.x.data() + b.x.numel()));
  }

  // Resumed in the middle of an epoch from its state: the same batches as straight on.
  DataLoader straight(s.train, options), resumed(s.train, options);
  straight.start_epoch();
  straight.next(b);
  straight.next(b);
  resumed.set_state(straight.state());
  Batch r;
  while (straight.next(b)) {
    REQUIRE(resumed.next(r));
    REQUIRE(std::vector<float>(r.x.data(), r.x.data() + r.x.numel()) == std::vector<float>(b.x.data(), b.x.data() + b.x.numel()));
  }
}

TEST_CASE("the loader refuses augmentation of table rows and a padding as large as the image", "[augment]") {
  Dataset table;
  table.values = {1, 2, 3, 4, 5, 6};
  table.labels = {0, 1};
  table.sample = Shape{3};
  table.num_classes = 2;
  LoaderOptions o{.batch_size = 2};
  o.augment = {.pad = 1, .flip = true};
  CHECK_THROWS_WITH(DataLoader(table, o), Catch::Contains("augmentation crops and flips images") &&
                                              Catch::Contains("table rows of numbers"));
  const DatasetSplits s = make_synthetic(10, 2, 1);
  o.augment = {.pad = 28, .flip = false};
  CHECK_THROWS_WITH(DataLoader(s.train, o), Catch::Contains("padding must be in [0, 27] for 28×28 images") &&
                                                Catch::Contains("got 28"));
  o.augment.pad = -1;
  CHECK_THROWS_WITH(DataLoader(s.train, o), Catch::Contains("got -1"));
}

TEST_CASE("train --augment records its crops and flips and resumes bit for bit", "[cli][augment]") {
  TempDir dir;
  // 640 samples, 20 steps an epoch: stopped at 25, inside the second epoch's draws.
  const std::string flags = "train --overwrite --epochs 2 --augment --augment-pad 2 --model conv:4x3,bn,relu,flatten,dense:10,softmax " +
                            data_flag();
  minidl::test::require_exact_resume(flags, 25, dir);
  const Checkpoint c = load_safetensors(dir.file("straight"));
  CHECK(c.metadata.at("loader.augment_pad") == "2");
  CHECK(c.metadata.at("loader.augment_flip") == "1");
  // The augmentation changes what is learnt; without it, nothing about it is recorded.
  REQUIRE(minidl_cli("train --overwrite --epochs 2 --model conv:4x3,bn,relu,flatten,dense:10,softmax --save " +
                         dir.file("plain") + " " + data_flag(), dir).status == 0);
  CHECK(read_bytes(dir.file("plain")) != read_bytes(dir.file("straight")));
  CHECK(load_safetensors(dir.file("plain")).metadata.count("loader.augment_pad") == 0);

  // A resumed run keeps the checkpoint's augmentation: another is refused, naming the flag.
  const Run other = minidl_cli("train --resume " + dir.file("half") + " --augment --augment-pad 3 " + data_flag(), dir);
  CHECK(other.status == 1);
  CHECK_THAT(other.err, Catch::Contains("--augment-pad 3 differs from the checkpoint"));
  const Run defaults = minidl_cli("train --resume " + dir.file("half") + " --augment " + data_flag(), dir);
  CHECK(defaults.status == 1);
  CHECK_THAT(defaults.err, Catch::Contains("--augment with these flags differs from the checkpoint") &&
                               Catch::Contains("trained with loader.augment_pad 2"));
  const Run added = minidl_cli("train --resume " + dir.file("plain") + " --epochs 3 --augment " + data_flag(), dir);
  CHECK(added.status == 1);
  CHECK_THAT(added.err, Catch::Contains("--augment differs from the checkpoint") && Catch::Contains("trained without it"));
}

TEST_CASE("train refuses bad augmentation flags by name before training", "[cli][augment]") {
  TempDir dir;
  const auto refused = [&](const std::string& args, const std::string& message) {
    const Run r = minidl_cli("train --epochs 1 " + args, dir);
    INFO(args << "\n" << r.err);
    CHECK(r.status == 1);
    CHECK_THAT(r.err, Catch::Contains(message));
    CHECK_THAT(r.out, !Catch::Contains("epoch 1/1"));
  };
  refused("--augment-pad 2 " + data_flag(), "--augment-pad and --augment-flip say how --augment crops");
  refused("--augment --augment-pad 28 " + data_flag(), "--augment-pad 28 shifts");
  refused("--augment --augment-pad 28 " + data_flag(), "give less than 28");
  refused("--augment --augment-pad -1 " + data_flag(), "--augment-pad must be a whole number in [0, 1048576], got -1");
  refused("--augment --augment-flip sideways " + data_flag(), "--augment-flip must be horizontal or none, got 'sideways'");
  refused("--augment --augment-pad 0 --augment-flip none " + data_flag(), "changes no image");
  write_bytes(dir.file("table.csv"), "a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n");
  refused("--augment --data " + dir.file("table.csv") + " --validation-split 0.5 --model dense:2,softmax",
          "--augment crops and flips images, but '" + dir.file("table.csv") + "' holds table rows of numbers");
}
