// Tests of the data layer: IDX round trips (raw and gzip), every bad-input case, datasets by directory,
// the loader's determinism, coverage, partial batches and resumable state; the real Fashion-MNIST if installed.
#include <filesystem>
#include <set>
#include <sys/stat.h>

#include <zlib.h>

#include "helpers.h"
#include "minidl/data.h"

using namespace minidl;
using minidl::test::TempDir;
using minidl::test::read_bytes;
using minidl::test::write_bytes;

namespace {
IdxArray small_images() {
  IdxArray a{{3, 2, 2}, {}};
  for (int i = 0; i < 12; ++i) a.values.push_back(static_cast<uint8_t>(i * 20));
  return a;
}
// Big-endian magic number and dimensions: an IDX header, possibly a wrong one.
std::string header(uint32_t magic, std::vector<uint32_t> dims) {
  std::string s;
  dims.insert(dims.begin(), magic);
  for (uint32_t v : dims)
    for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((v >> shift) & 0xff);
  return s;
}
// Big-endian 32 bits.
std::string be32(uint32_t v) { return std::string{char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; }
// One PNG chunk: length, type, body, CRC.
std::string png_chunk(const std::string& type, const std::string& body) {
  const std::string typed = type + body;
  return be32(static_cast<uint32_t>(body.size())) + typed +
         be32(static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(typed.data()), static_cast<uInt>(typed.size()))));
}
// A PNG written byte by byte, so a test controls what libpng's writer would choose: bit depth, colour type
// (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA), the chunks before IDAT (gAMA, PLTE, ...) and the rows, each
// with its filter byte, compressed here unless `compress_rows` is false.
std::string png_file(uint32_t width, uint32_t height, int depth, int type, const std::string& rows,
                     const std::string& chunks_before_data, bool compress_rows = true) {
  std::string data = rows;
  if (compress_rows) {
    uLongf size = compressBound(static_cast<uLong>(rows.size()));
    data.resize(size);
    REQUIRE(compress(reinterpret_cast<Bytef*>(data.data()), &size, reinterpret_cast<const Bytef*>(rows.data()),
                     static_cast<uLong>(rows.size())) == Z_OK);
    data.resize(size);
  }
  const std::string header = be32(width) + be32(height) + std::string{char(depth), char(type), 0, 0, 0};
  return std::string("\x89PNG\r\n\x1a\n") + png_chunk("IHDR", header) + chunks_before_data + png_chunk("IDAT", data) +
         png_chunk("IEND", "");
}
}  // namespace

TEST_CASE("IDX files round-trip raw and gzip-compressed", "[data]") {
  TempDir dir;
  const IdxArray images = small_images();
  for (bool gzip : {false, true}) {
    const std::string path = dir.file(gzip ? "a.gz" : "a");
    write_idx(path, images, gzip);
    const IdxArray back = read_idx(path, 3);
    CHECK(back.dims == images.dims);
    CHECK(back.values == images.values);
  }
  CHECK(read_bytes(dir.file("a")).size() == 16 + 12);
  CHECK(read_bytes(dir.file("a.gz")).substr(0, 2) == "\x1f\x8b");
}

TEST_CASE("bad IDX input is refused, naming the file, the expectation and the finding", "[data]") {
  TempDir dir;
  const std::string path = dir.file("bad");
  const std::string payload(12, '\x07');

  write_bytes(path, header(0x00000801, {12}) + payload);
  CHECK_THROWS_WITH(read_idx(path, 3), "'" + path + "': bad magic number: expected 0x00000803 (unsigned bytes, 3 "
                                                    "dimensions), found 0x00000801");
  write_bytes(path, "P5 this is not an IDX file at all\n");
  CHECK_THROWS_WITH(read_idx(path, 3), Catch::Contains("bad magic number") && Catch::Contains("not an IDX file"));
  write_bytes(path, header(0x00000803, {3, 2, 2}) + payload.substr(0, 5));
  CHECK_THROWS_WITH(read_idx(path, 3),
                    "'" + path + "': payload is shorter than the header says: expected 12 bytes, found 5");
  write_bytes(path, header(0x00000803, {3, 2, 2}) + payload + "xx");
  CHECK_THROWS_WITH(read_idx(path, 3),
                    "'" + path + "': payload is longer than the header says: expected 12 bytes, found more");
  write_bytes(path, header(0x00000803, {3, 0, 2}));
  CHECK_THROWS_WITH(read_idx(path, 3), "'" + path + "': dimension 1 is zero");
  write_bytes(path, header(0x00000803, {3}));
  CHECK_THROWS_WITH(read_idx(path, 3), "'" + path + "': header ends before dimension 1 of 3");
  write_bytes(path, header(0x00000803, {60000, 60000, 60000}));
  CHECK_THROWS_WITH(read_idx(path, 3), Catch::Contains("a corrupt header"));
  write_bytes(path, "");
  CHECK_THROWS_WITH(read_idx(path, 3), Catch::Contains("too short for an IDX header"));
  CHECK_THROWS_WITH(read_idx(dir.file("missing"), 1), "cannot open '" + dir.file("missing") +
                                                          "': No such file or directory");
  CHECK_THROWS_WITH(read_idx(dir.path(), 1), Catch::Contains("is a directory"));

  // A gzip stream cut short: keep the first half of a real compressed file.
  const std::string gz = dir.file("cut.gz");
  IdxArray big{{50, 28, 28}, std::vector<uint8_t>(50 * 784)};
  Generator gen(1);
  for (auto& v : big.values) v = static_cast<uint8_t>(gen.below(256));
  write_idx(gz, big, true);
  const std::string whole = read_bytes(gz);
  write_bytes(gz, whole.substr(0, whole.size() / 2));
  CHECK_THROWS_WITH(read_idx(gz, 3), Catch::Contains("'" + gz + "'") && Catch::Contains("truncated gzip stream"));
}

TEST_CASE("datasets load by directory — mismatches and missing files are explained", "[data]") {
  TempDir dir;
  const DatasetSplits synthetic = make_synthetic(40, 10, 3);
  save_mnist_split(dir.path(), "train", synthetic.train, true);
  save_mnist_split(dir.path(), "t10k", synthetic.test, false);  // raw and gz may mix
  const DatasetSplits loaded = load_mnist_dir(dir.path());
  CHECK(loaded.train.images == synthetic.train.images);
  CHECK(loaded.train.labels == synthetic.train.labels);
  CHECK(loaded.test.labels == synthetic.test.labels);
  CHECK(loaded.train.sample == Shape{28, 28, 1});

  CHECK_THROWS_WITH(load_mnist_dir(dir.path(), 5), Catch::Contains("is out of range: expected < 5 classes"));
  save_mnist_split(dir.path(), "t10k", synthetic.train.slice(0, 7), false);
  write_idx(dir.file("t10k-labels-idx1-ubyte"), {{6}, std::vector<uint8_t>(6, 1)}, false);
  CHECK_THROWS_WITH(load_mnist_dir(dir.path()), Catch::Contains("holds 7 images but") &&
                                                    Catch::Contains("holds 6 labels; they must match"));
  TempDir empty;
  CHECK_THROWS_WITH(load_mnist_dir(empty.path()),
                    Catch::Contains("cannot find '" + empty.file("train-images-idx3-ubyte.gz") + "'") &&
                        Catch::Contains("apt-get install dataset-fashion-mnist") && Catch::Contains("--data"));
}

TEST_CASE("the loader is deterministic per seed and covers each sample once per epoch", "[data]") {
  const Dataset data = make_synthetic(70, 1, 5).train;
  const auto epoch_batches = [&](uint64_t seed, int epochs) {
    DataLoader loader(data, {.batch_size = 32, .seed = seed});
    std::vector<std::vector<int32_t>> labels;
    std::vector<float> firsts;
    for (int e = 0; e < epochs; ++e) {
      loader.start_epoch();
      Batch b;
      while (loader.next(b)) {
        labels.push_back(b.labels);
        firsts.push_back(b.x.data()[100]);
      }
    }
    return std::make_pair(labels, firsts);
  };
  const auto a = epoch_batches(7, 2), b = epoch_batches(7, 2), c = epoch_batches(8, 2);
  CHECK(a == b);
  CHECK(a != c);
  REQUIRE(a.first.size() == 6);  // ceil(70/32) = 3 per epoch: the partial last batch is kept
  CHECK(a.first[2].size() == 6);
  CHECK(a.first[0] != a.first[3]);  // a fresh permutation every epoch

  // Coverage: with file order the batches are exactly the rows in order; shuffled, a permutation of them.
  DataLoader loader(data, {.batch_size = 32, .shuffle = true, .seed = 1});
  loader.start_epoch();
  Batch batch;
  std::multiset<std::vector<float>> seen, all;
  while (loader.next(batch))
    for (int64_t r = 0; r < batch.x.size(0); ++r)
      seen.insert(std::vector<float>(batch.x.data() + r * 784, batch.x.data() + (r + 1) * 784));
  const Tensor everything = data.to_tensor();
  for (int64_t r = 0; r < 70; ++r) all.insert(std::vector<float>(everything.data() + r * 784, everything.data() + (r + 1) * 784));
  CHECK(seen == all);

  DataLoader ordered(data, {.batch_size = 32, .shuffle = false}, true);
  ordered.start_epoch();
  REQUIRE(ordered.next(batch));
  CHECK(std::vector<int32_t>(data.labels.begin(), data.labels.begin() + 32) == batch.labels);
  CHECK(batch.x.data()[5] == data.images[5] / 255.0f);
  CHECK(batch.one_hot.at({3, batch.labels[3]}) == 1.0f);
  CHECK(batch.one_hot.numel() == 32 * 10);

  DataLoader dropping(data, {.batch_size = 32, .drop_last = true});
  CHECK(dropping.batches_per_epoch() == 2);
  CHECK_THROWS_WITH(DataLoader(data, {.batch_size = 0}), "DataLoader: batch size must be > 0, got 0");
}

TEST_CASE("the loader reuses a batch's buffers unless something still holds them", "[data]") {
  const Dataset data = make_synthetic(64, 1, 5).train;
  DataLoader loader(data, {.batch_size = 32});
  loader.start_epoch();
  Batch batch;
  loader.next(batch);
  const float* first = batch.x.data();
  loader.next(batch);
  CHECK(batch.x.data() == first);  // reused: nothing else held it
  loader.start_epoch();
  const Tensor held = batch.x;  // e.g. a graph still reading the previous batch
  loader.next(batch);
  CHECK(batch.x.data() != held.data());
}

TEST_CASE("loader state resumes exactly mid-epoch", "[data]") {
  const Dataset data = make_synthetic(100, 1, 5).train;
  DataLoader a(data, {.batch_size = 16, .seed = 3});
  a.start_epoch();
  Batch batch;
  a.next(batch);
  a.next(batch);
  const LoaderState saved = a.state();
  std::vector<std::vector<int32_t>> rest_a, rest_b;
  while (a.next(batch)) rest_a.push_back(batch.labels);
  a.start_epoch();
  while (a.next(batch)) rest_a.push_back(batch.labels);

  DataLoader b(data, {.batch_size = 16, .seed = 99});
  b.set_state(saved);
  while (b.next(batch)) rest_b.push_back(batch.labels);
  b.start_epoch();
  while (b.next(batch)) rest_b.push_back(batch.labels);
  CHECK(rest_a == rest_b);
}

TEST_CASE("validation split takes the last fraction before shuffling", "[data]") {
  const Dataset data = make_synthetic(10, 1, 5).train;
  const auto [train, validation] = split_validation(data, 0.2);
  CHECK(train.size() == 8);
  CHECK(validation.size() == 2);
  CHECK(validation.labels == std::vector<int32_t>(data.labels.end() - 2, data.labels.end()));
  CHECK(std::equal(validation.images.begin(), validation.images.end(), data.images.end() - 2 * 784));
  CHECK_THROWS_WITH(split_validation(data, 1.0), "validation split must be in [0, 1), got 1");
}

TEST_CASE("the real Fashion-MNIST has 60000/10000 images of 28x28", "[data]") {
  if (!test::require_or_skip(std::string(kFashionMnistDir) + "/train-labels-idx1-ubyte.gz",
                             "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"))
    return;
  const DatasetSplits fashion = load_mnist_dir(kFashionMnistDir);
  CHECK(fashion.train.size() == 60000);
  CHECK(fashion.test.size() == 10000);
  CHECK(fashion.train.sample == Shape{28, 28, 1});
  CHECK(fashion.train.images.size() == 60000u * 784u);
  std::vector<int> counts(10);
  for (int32_t l : fashion.train.labels) ++counts[l];
  CHECK(counts == std::vector<int>(10, 6000));  // Fashion-MNIST is balanced
}

TEST_CASE("CSV data: numeric features, whole-number or text labels, quoting, and a test file mapped to the classes",
          "[data]") {
  TempDir dir;
  write_bytes(dir.file("train.csv"), "\xEF\xBB\xBFx1, \"x,2\" ,species\r\n1.5,2,setosa\n\n-3,4e1,\"virginica\"\n0,0,setosa\n");
  const Dataset train = load_csv(dir.file("train.csv"), "species");
  CHECK(train.size() == 3);
  CHECK(train.sample == Shape{2});
  CHECK(train.values == std::vector<float>{1.5f, 2, -3, 40, 0, 0});
  CHECK(train.class_names == std::vector<std::string>{"setosa", "virginica"});
  CHECK(train.labels == std::vector<int32_t>{0, 1, 0});
  CHECK(train.num_classes == 2);
  CHECK_FALSE(train.is_images());
  write_bytes(dir.file("test.csv"), "species,x1,\"x,2\"\nvirginica,1,1\n");
  CHECK(load_csv(dir.file("test.csv"), "species", &train).labels == std::vector<int32_t>{1});
  write_bytes(dir.file("odd.csv"), "species,x1,\"x,2\"\nversicolor,1,1\n");
  CHECK_THROWS_WITH(load_csv(dir.file("odd.csv"), "species", &train),
                    Catch::Contains("label 'versicolor' of row 1 is not a class of the training data"));
  // A test file's features are found by name: another name is an error naming it, another order is read right.
  write_bytes(dir.file("renamed.csv"), "species,x1,x2\nsetosa,1,1\n");
  CHECK_THROWS_WITH(load_csv(dir.file("renamed.csv"), "species", &train),
                    Catch::Contains("has no column 'x,2', a feature of the training data (its columns: species, x1, x2)"));
  write_bytes(dir.file("reordered.csv"), "\"x,2\",species,x1\n7,setosa,5\n");
  CHECK(load_csv(dir.file("reordered.csv"), "species", &train).values == std::vector<float>{5, 7});
  write_bytes(dir.file("numbers.csv"), "a,label\n1,0\n2,3\n");
  const Dataset numbers = load_csv(dir.file("numbers.csv"), "label");
  CHECK(numbers.num_classes == 4);
  CHECK(numbers.class_names.empty());
  // New samples, with or without the label column.
  CHECK(load_csv_features(dir.file("test.csv"), "species", 2).to_vector() == std::vector<float>{1, 1});
  write_bytes(dir.file("new.csv"), "x1,x2\n5,6\n7,8\n");
  CHECK(load_csv_features(dir.file("new.csv"), "species", 2).shape() == Shape{2, 2});
}

TEST_CASE("malformed CSV rows are refused naming the file, line and column", "[data]") {
  TempDir dir;
  const auto error = [&](const std::string& text, const std::string& label = "label") {
    write_bytes(dir.file("d.csv"), text);
    try {
      load_csv(dir.file("d.csv"), label);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string f = "'" + dir.file("d.csv") + "'";
  const std::string hint = " (a feature column holds numbers; leave a text column out with --ignore b)";
  CHECK(error("a,b,label\n1,2,0\n3,x,1\n") == f + " line 3, column 2 ('b'): 'x' is not a finite number" + hint);
  CHECK(error("a,b,label\n1,,0\n") == f + " line 2, column 2 ('b'): empty, expected a number" + hint);
  CHECK(error("a,b,label\n1,2\n") == f + " line 2: 2 fields, expected 3 as the header has");
  CHECK(error("a,b,label\n1,nan,0\n") == f + " line 2, column 2 ('b'): 'nan' is not a finite number" + hint);
  CHECK(error("a,b,label\n\"1,2,0\n") == f + " line 2: a quoted field is not closed");
  CHECK(error("a,b,class\n1,2,0\n") == f + ": no column is named 'label' (the columns: a, b, class) — name the label "
                                           "column with --label (a name, or a 0-based index)");
  CHECK(error("a,b,label\n") == f + " has a header but no rows");
  CHECK(error("") == f + " is empty: expected a header line naming the columns");
  CHECK(error("label\n1\n") == f + ": no feature column besides the label 'label'");
  CHECK(error("a,label\n1,\n") == f + " line 2, column 2 ('label'): the label is empty");
}

TEST_CASE("a DataSpec names IDX directories or CSV files, with a test file or a validation split", "[data]") {
  TempDir dir;
  std::string csv = "f,label\n";
  for (int i = 0; i < 10; ++i) csv += std::to_string(i) + "," + std::to_string(i % 2) + "\n";
  write_bytes(dir.file("t.csv"), csv);
  DataSpec spec{.train = dir.file("t.csv"), .validation_split = 0.3};
  CHECK(spec.is_csv());
  const DatasetSplits s = load_data(spec);
  CHECK(s.train.size() == 7);
  CHECK(s.test.size() == 3);
  CHECK(s.test.values == std::vector<float>{7, 8, 9});
  spec.validation_split = 0.0;
  CHECK_THROWS_WITH(load_data(spec), Catch::Contains("a CSV training file needs test data: --test FILE, or "
                                                     "--validation-split F"));
  const DataSpec back = DataSpec::from_metadata(MetadataReader(DataSpec{.train = dir.file("t.csv"), .test = dir.file("t.csv")}.to_metadata(), "x"));
  CHECK(back.test == std::filesystem::canonical(dir.file("t.csv")).string());
  // Images of any size and any number of classes: 16x16, 3 classes.
  DatasetSplits small = make_synthetic(30, 9, 2);
  for (Dataset* d : {&small.train, &small.test}) {
    Dataset resized;
    resized.sample = {16, 16, 1};
    for (int64_t i = 0; i < d->size(); ++i) {
      for (int64_t y = 0; y < 16; ++y)
        for (int64_t x = 0; x < 16; ++x) resized.images.push_back(d->images[i * 784 + (y + 6) * 28 + x + 6]);
      resized.labels.push_back(d->labels[i] % 3);
    }
    *d = resized;
  }
  save_mnist_split(dir.path(), "train", small.train, true);
  save_mnist_split(dir.path(), "t10k", small.test, false);
  const DatasetSplits loaded = load_data({.train = dir.path()});
  CHECK(loaded.train.sample == Shape{16, 16, 1});
  CHECK(loaded.train.num_classes == 3);
  CHECK(loaded.test.num_classes == 3);
  CHECK_FALSE(DataSpec{.train = dir.path()}.is_csv());
}

TEST_CASE("image files: grayscale PNG and PGM read back their pixels — others are refused", "[data]") {
  TempDir dir;
  const Image image{2, 3, {0, 10, 20, 100, 200, 255}};
  write_png(dir.file("a.png"), image);
  const Image png = read_image(dir.file("a.png"));
  CHECK(png.height == 2);
  CHECK(png.width == 3);
  CHECK(png.pixels == image.pixels);
  write_bytes(dir.file("b.pgm"), std::string("P5\n# a comment\n3 2\n255\n") + std::string(image.pixels.begin(), image.pixels.end()));
  CHECK(read_image(dir.file("b.pgm")).pixels == image.pixels);
  write_bytes(dir.file("c.pgm"), "P2 3 2 15\n0 1 2\n3 14 15\n");
  CHECK(read_image(dir.file("c.pgm")).pixels == std::vector<uint8_t>{0, 17, 34, 51, 238, 255});
  write_bytes(dir.file("d.pgm"), std::string("P5 2 1 65535\n") + std::string("\xff\xff\x80\x00", 4));
  CHECK(read_image(dir.file("d.pgm")).pixels == std::vector<uint8_t>{255, 128});
  write_bytes(dir.file("short.pgm"), "P5 30 20 255\nabc");
  CHECK_THROWS_WITH(read_image(dir.file("short.pgm")), Catch::Contains("holds fewer pixels than its 30x20 header says"));
  write_bytes(dir.file("huge.pgm"), "P5 100000 100000 255\n");
  CHECK_THROWS_WITH(read_image(dir.file("huge.pgm")), Catch::Contains("bad PGM size 100000x100000"));
  write_bytes(dir.file("x.txt"), "hello");
  CHECK_THROWS_WITH(read_image(dir.file("x.txt")), Catch::Contains("is neither a PNG nor a grayscale PGM"));
  std::string broken = read_bytes(dir.file("a.png"));
  write_bytes(dir.file("broken.png"), broken.substr(0, broken.size() / 2));
  CHECK_THROWS_WITH(read_image(dir.file("broken.png")), Catch::Contains("broken.png"));
  // Grayscale read as RGB repeats each pixel into three channels.
  const Image rgb = read_image(dir.file("a.png"), 3);
  CHECK(rgb.channels == 3);
  CHECK(rgb.pixels == std::vector<uint8_t>{0, 0, 0, 10, 10, 10, 20, 20, 20, 100, 100, 100, 200, 200, 200, 255, 255, 255});
  CHECK(read_image(dir.file("c.pgm"), 0).channels == 1);
  CHECK_THROWS_WITH(read_image(dir.path()), Catch::Contains("is a directory, not an image file"));
}

TEST_CASE("a tiny image file that claims a huge image is refused before its pixels are allocated", "[data]") {
  TempDir dir;
  // A 19-byte text PGM header of 16384x16384: a text pixel takes at least two bytes, so it cannot be there.
  write_bytes(dir.file("p2.pgm"), "P2\n16384 16384\n255\n");
  CHECK_THROWS_WITH(read_image(dir.file("p2.pgm")), Catch::Contains("holds fewer pixels than its 16384x16384 header says"));
  // A PNG whose header says 16384x16384 and whose compressed pixels are 10 bytes: more than zlib's 1032:1 allows.
  write_bytes(dir.file("huge.png"), png_file(16384, 16384, 8, 0, std::string(10, '\0'), "", false));
  CHECK_THROWS_WITH(read_image(dir.file("huge.png")), Catch::Contains("its header claims 16384x16384 pixels, more than"));
  // Dimensions whose product passes 2^63 (found by fuzz_image): still a plain refusal.
  write_bytes(dir.file("vast.png"), png_file(0xdadadada, 0xdadadada, 8, 0, "", ""));
  CHECK_THROWS_WITH(read_image(dir.file("vast.png")), Catch::Contains("its header claims 3671775962x3671775962 pixels"));
}

TEST_CASE("PNG pixels are read as stored: 16 bits scaled linearly, gamma chunks ignored, grey palettes grey",
          "[data]") {
  TempDir dir;
  // 16-bit grey 0, 128·257 and 65535 with a gAMA chunk of 1.0: libpng's simplified API read the middle one as 186.
  const std::string gamma_one = png_chunk("gAMA", be32(100000));
  write_bytes(dir.file("g16.png"), png_file(3, 1, 16, 0, std::string("\0\0\0\x80\x80\xff\xff", 7), gamma_one));
  CHECK(read_image(dir.file("g16.png")).pixels == std::vector<uint8_t>{0, 128, 255});
  // The same picture in 8 bits, with a gamma of 1/2.2 and an sRGB chunk: the stored values.
  const std::string srgb = png_chunk("gAMA", be32(45455)) + png_chunk("sRGB", std::string(1, '\0'));
  write_bytes(dir.file("g8.png"), png_file(3, 1, 8, 0, std::string("\0\0\x80\xff", 4), srgb));
  CHECK(read_image(dir.file("g8.png")).pixels == std::vector<uint8_t>{0, 128, 255});
  // 2-bit grey expands to 0, 85, 170, 255.
  write_bytes(dir.file("g2.png"), png_file(4, 1, 2, 0, std::string("\0\x1b", 2), ""));
  CHECK(read_image(dir.file("g2.png")).pixels == std::vector<uint8_t>{0, 85, 170, 255});
  // A palette of greys is a grayscale image; a palette with a colour in it is a colour image.
  const std::string greys = png_chunk("PLTE", std::string("\0\0\0\x80\x80\x80\xff\xff\xff", 9));
  write_bytes(dir.file("p.png"), png_file(3, 1, 8, 3, std::string("\0\2\1\0", 4), greys));
  const Image palette = read_image(dir.file("p.png"), 0);
  CHECK(palette.channels == 1);
  CHECK(palette.pixels == std::vector<uint8_t>{255, 128, 0});
  CHECK(read_image(dir.file("p.png"), 3).pixels == std::vector<uint8_t>{255, 255, 255, 128, 128, 128, 0, 0, 0});
  const std::string colours = png_chunk("PLTE", std::string("\0\0\0\xff\0\0", 6));
  write_bytes(dir.file("c.png"), png_file(2, 1, 8, 3, std::string("\0\0\1", 3), colours));
  CHECK_THROWS_WITH(read_image(dir.file("c.png")), Catch::Contains("is a colour image"));
  CHECK(read_image(dir.file("c.png"), 0).pixels == std::vector<uint8_t>{0, 0, 0, 255, 0, 0});
  // Alpha composited onto black in the stored values: 16-bit RGBA (65535, 32896, 0) at alpha 32896 is
  // (128, 64, 0); grey+alpha 200 at alpha 0 is black.
  write_bytes(dir.file("rgba.png"), png_file(1, 1, 16, 6, std::string("\0\xff\xff\x80\x80\0\0\x80\x80", 9), ""));
  CHECK(read_image(dir.file("rgba.png"), 0).pixels == std::vector<uint8_t>{128, 64, 0});
  write_bytes(dir.file("ga.png"), png_file(2, 1, 8, 4, std::string("\0\xc8\0\xc8\xff", 5), ""));
  CHECK(read_image(dir.file("ga.png")).pixels == std::vector<uint8_t>{0, 200});
  // Interlaced (Adam7): the passes are put back in place. A 2x2 image is passes 1, 6 and 7.
  const std::string passes = std::string("\0\x10\x20\x30", 4) + std::string("\0\x40\x50\x60", 4) +
                             std::string("\0\x70\x80\x90\xa0\xb0\xc0", 7);
  std::string interlaced = png_file(2, 2, 8, 2, passes, "");
  interlaced[28] = 1;  // IHDR's interlace byte
  interlaced.replace(29, 4, be32(static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(interlaced.data() + 12), 17))));
  write_bytes(dir.file("adam7.png"), interlaced);
  CHECK(read_image(dir.file("adam7.png"), 0).pixels ==
        std::vector<uint8_t>{0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0});
  // A broken row stream is an error naming the file and what libpng found.
  write_bytes(dir.file("bad.png"), png_file(3, 1, 8, 0, "not zlib", "", false));
  CHECK_THROWS_WITH(read_image(dir.file("bad.png")), Catch::Contains("bad.png': a broken PNG ("));
}

TEST_CASE("CSV targets: float labels are regression targets, several label columns too, whole numbers classes",
          "[data]") {
  TempDir dir;
  write_bytes(dir.file("r.csv"), "x,y,target\n1,2,151.0\n3,4,75.5\n5,6,0\n");
  const Dataset r = load_csv(dir.file("r.csv"), "target");
  CHECK(r.is_regression());
  CHECK(r.outputs == 1);
  CHECK(r.size() == 3);
  CHECK(r.targets == std::vector<float>{151, 75.5f, 0});
  CHECK(r.labels.empty());
  CHECK(r.num_classes == 0);
  CHECK(r.target_names == std::vector<std::string>{"target"});
  CHECK(r.feature_names == std::vector<std::string>{"x", "y"});
  // Two label columns: two targets per sample, in the order given, by name or index.
  CsvOptions two;
  two.labels = {"target", "0"};
  const Dataset t = load_csv(dir.file("r.csv"), two);
  CHECK(t.outputs == 2);
  CHECK(t.targets == std::vector<float>{151, 1, 75.5f, 3, 0, 5});
  CHECK(t.values == std::vector<float>{2, 4, 6});
  CHECK(t.slice(1, 3).targets == std::vector<float>{75.5f, 3, 0, 5});
  // Whole numbers are classes unless asked otherwise; asked, they are values.
  write_bytes(dir.file("c.csv"), "x,label\n1,0\n2,3\n");
  CHECK_FALSE(load_csv(dir.file("c.csv"), "label").is_regression());
  CsvOptions values;
  values.targets = CsvTargets::values;
  CHECK(load_csv(dir.file("c.csv"), values).targets == std::vector<float>{0, 3});
  // A test file is read as its training data: regression with regression.
  write_bytes(dir.file("r_test.csv"), "target,y,x\n2.5,20,10\n");
  const Dataset rt = load_csv(dir.file("r_test.csv"), "target", &r);
  CHECK(rt.targets == std::vector<float>{2.5f});
  CHECK(rt.values == std::vector<float>{10, 20});
  write_bytes(dir.file("bad.csv"), "x,y,target\n1,2,abc\n");
  CHECK_THROWS_WITH(load_csv(dir.file("bad.csv"), "target", &r),
                    Catch::Contains("row 1, label column 'target': 'abc' is not a finite number (regression targets are numbers)"));
  // The loader batches the targets.
  DataLoader loader(t, {.batch_size = 2, .shuffle = false});
  loader.start_epoch();
  Batch batch;
  REQUIRE(loader.next(batch));
  CHECK(batch.targets.shape() == Shape{2, 2});
  CHECK(batch.targets.to_vector() == std::vector<float>{151, 1, 75.5f, 3});
  CHECK(batch.labels.empty());
}

TEST_CASE("CSV as people have it: no header, label by index, ignored columns, too many classes refused", "[data]") {
  TempDir dir;
  write_bytes(dir.file("iris.csv"), "5.1,3.5,x,setosa\n6.2,2.9,y,virginica\n");
  CsvOptions o;
  o.header = false;
  o.labels = {"3"};
  o.ignore = {"2"};
  const Dataset d = load_csv(dir.file("iris.csv"), o);
  CHECK(d.values == std::vector<float>{5.1f, 3.5f, 6.2f, 2.9f});
  CHECK(d.class_names == std::vector<std::string>{"setosa", "virginica"});
  CHECK(d.feature_names == std::vector<std::string>{"0", "1"});
  // With a header, an index picks a column when no column has that name.
  write_bytes(dir.file("h.csv"), "a,b,kind\n1,2,0\n3,4,1\n");
  CsvOptions by_index;
  by_index.labels = {"2"};
  CHECK(load_csv(dir.file("h.csv"), by_index).labels == std::vector<int32_t>{0, 1});
  CsvOptions ignored;
  ignored.labels = {"kind"};
  ignored.ignore = {"a"};
  CHECK(load_csv(dir.file("h.csv"), ignored).values == std::vector<float>{2, 4});
  ignored.ignore = {"zz"};
  CHECK_THROWS_WITH(load_csv(dir.file("h.csv"), ignored),
                    Catch::Contains("no column is named 'zz' (the columns: a, b, kind) — name the ignored column with --ignore"));
  // More than 100 distinct whole numbers: a quantity, not classes, unless asked.
  std::string many = "x,label\n";
  for (int i = 0; i < 150; ++i) many += std::to_string(i) + "," + std::to_string(i * 2) + "\n";
  write_bytes(dir.file("many.csv"), many);
  CHECK_THROWS_WITH(load_csv(dir.file("many.csv"), "label"),
                    Catch::Contains("holds 150 distinct whole numbers — too many to be classes"));
  CsvOptions classes;
  classes.targets = CsvTargets::classes;
  CHECK(load_csv(dir.file("many.csv"), classes).num_classes == 299);
  // A label that would size the output layer past 65536 classes is refused before anything is allocated.
  write_bytes(dir.file("huge.csv"), "x,label\n1,4000000\n");
  CHECK_THROWS_WITH(load_csv(dir.file("huge.csv"), "label"), Catch::Contains("would make 4000001 classes, more than the 65536"));
  // New samples are matched to the model's features by name, with or without the label column.
  write_bytes(dir.file("new.csv"), "b,a\n20,10\n");
  CsvOptions label;
  label.labels = {"kind"};
  CHECK(load_csv_features(dir.file("new.csv"), label, {"a", "b"}, 2).to_vector() == std::vector<float>{10, 20});
  CHECK_THROWS_WITH(load_csv_features(dir.file("new.csv"), label, {"a", "c"}, 2),
                    Catch::Contains("has no column 'c', a feature of the training data"));
}

TEST_CASE("CSV input is checked byte by byte, and messages quote only a short excerpt of it", "[data]") {
  TempDir dir;
  const auto error = [&](const std::string& text) {
    write_bytes(dir.file("d.csv"), text);
    try {
      load_csv(dir.file("d.csv"), "label");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(error(std::string("a,label\n2\0garbage,1\n", 20)), Catch::Contains("'2\\x00garbage' is not a finite number"));
  CHECK_THAT(error("a,label,label\n1,2,3\n"),
             Catch::Contains("the header names column 2 and column 3 alike ('label'): each column needs its own name"));
  // A subnormal number is a finite number.
  write_bytes(dir.file("s.csv"), "a,label\n1e-40,1\n");
  CHECK(load_csv(dir.file("s.csv"), "label").values[0] > 0.0f);
  // A 100 kB field, and a file whose lines end in CR alone, are quoted in a few dozen characters.
  const std::string wide = error("a,label\n1,0\n" + std::string(100000, 'z') + ",1\n");
  CHECK_THAT(wide, Catch::Contains("(100000 bytes)"));
  CHECK(wide.size() < 400);
  const std::string cr = error("a,label\r" + std::string(5000, '1') + ",1\r");
  CHECK_THAT(cr, Catch::Contains("a carriage return inside the line"));
  CHECK(cr.size() < 400);
}

TEST_CASE("a split or test file whose classes the training data lacks is named in a warning", "[data]") {
  TempDir dir;
  std::string sorted = "x,label\n";
  for (int i = 0; i < 10; ++i) sorted += std::to_string(i) + "," + (i < 8 ? "a" : "b") + "\n";
  write_bytes(dir.file("sorted.csv"), sorted);
  std::vector<std::string> warnings;
  const WarningHandler previous = set_warning_handler([&](const std::string& w) { warnings.push_back(w); });
  DataSpec spec;
  spec.train = dir.file("sorted.csv");
  spec.validation_split = 0.2;
  const DatasetSplits s = load_data(spec);
  set_warning_handler(previous);
  CHECK(s.test.size() == 2);
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Catch::Contains("class 'b' of the held-out 0.2 of"));
  CHECK_THAT(warnings[0], Catch::Contains("occurs nowhere in the training data"));
  CHECK_THAT(warnings[0], Catch::Contains("a file sorted by class holds out whole classes"));
}

TEST_CASE("CSV text feature columns are one-hot encoded with the training data's categories", "[data]") {
  TempDir dir;
  write_bytes(dir.file("t.csv"), "size,color,label\n1.5,red,0\n2,blue,1\n3,red,1\n4,green,0\n");
  const Dataset t = load_csv(dir.file("t.csv"), "label");
  CHECK(t.sample == Shape{4});  // size, then blue / green / red
  CHECK(t.categories == Categories{{"color", {"blue", "green", "red"}}});
  CHECK(t.feature_names == std::vector<std::string>{"size", "color"});
  CHECK(t.values == std::vector<float>{1.5f, 0, 0, 1, 2, 1, 0, 0, 3, 0, 0, 1, 4, 0, 1, 0});
  // A test file: the same categories in the same places, whatever its column order; another value is named.
  write_bytes(dir.file("test.csv"), "color,label,size\ngreen,1,7\n");
  CHECK(load_csv(dir.file("test.csv"), "label", &t).values == std::vector<float>{7, 0, 1, 0});
  write_bytes(dir.file("new.csv"), "size,color\n1,purple\n");
  CHECK_THROWS_WITH(load_csv_features(dir.file("new.csv"), CsvOptions{}, t.feature_names, 4, t.categories),
                    Catch::Contains("line 2, column 2 ('color'): 'purple' is not one of the 3 categories the model was "
                                    "trained on (blue, green, red)"));
  CHECK(load_csv_features(dir.file("test.csv"), CsvOptions{}, t.feature_names, 4, t.categories).to_vector() ==
        std::vector<float>{7, 0, 1, 0});
  // A number column that turns to text later is an error, not a category; so is a text column of 1001 values.
  write_bytes(dir.file("mixed.csv"), "a,label\n1,0\nx,1\n");
  CHECK_THROWS_WITH(load_csv(dir.file("mixed.csv"), "label"), Catch::Contains("'x' is not a finite number"));
  std::string ids = "id,x,label\n";
  for (int i = 0; i < 1001; ++i) ids += "n" + std::to_string(i) + ",1," + std::to_string(i % 2) + "\n";
  write_bytes(dir.file("ids.csv"), ids);
  CHECK_THROWS_WITH(load_csv(dir.file("ids.csv"), "label"),
                    Catch::Contains("the text column 'id' holds 1001 distinct values") && Catch::Contains("--ignore id"));
}

TEST_CASE("a FIFO given as an input is refused at once instead of blocking", "[data]") {
  TempDir dir;
  const std::string fifo = dir.file("pipe.csv");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH(load_csv(fifo, "label"), Catch::Contains("pipe.csv' is a FIFO (named pipe), not a CSV file"));
  CHECK_THROWS_WITH(read_image(fifo), Catch::Contains("is a FIFO (named pipe), not an image file"));
  CHECK_THROWS_WITH(read_idx(fifo, 1), Catch::Contains("is a FIFO (named pipe), not an IDX file"));
  CHECK_THROWS_WITH(load_csv_features(fifo, "label", 2), Catch::Contains("is a FIFO"));
}
