// Tests of safetensors checkpoints: round trip, the byte layout other readers expect, every corrupt case,
// and that a failed write leaves the previous file intact.
#include <cstring>

#include <sys/stat.h>

#include "cli_helpers.h"
#include "minidl/checkpoint.h"
#include "minidl/train.h"

using namespace minidl;
using minidl::test::TempDir;
using minidl::test::read_bytes;
using minidl::test::write_bytes;

namespace {
std::string with_header(const std::string& json, const std::string& data) {
  const uint64_t n = json.size();
  return std::string(reinterpret_cast<const char*>(&n), 8) + json + data;
}
}  // namespace

TEST_CASE("safetensors round-trips tensors and metadata", "[cli]") {
  TempDir dir;
  const Tensor a = Tensor::from({2, 3}, {1, 2, 3, 4, 5, 6}), b = Tensor::from({1}, {-7.5f});
  save_safetensors(dir.file("c"), {{"dense/kernel", a}, {"dense/bias", b}}, {{"mode", "running"}});
  const Checkpoint c = load_safetensors(dir.file("c"));
  CHECK(c.metadata == std::map<std::string, std::string>{{"mode", "running"}});
  REQUIRE(c.tensors.size() == 2);
  CHECK(c.tensors.at("dense/kernel").shape() == Shape{2, 3});
  CHECK(c.tensors.at("dense/kernel").to_vector() == a.to_vector());
  CHECK(c.tensors.at("dense/bias").to_vector() == b.to_vector());
  // The layout any reader expects: u64 LE header length, JSON, then the data 8-byte aligned.
  const std::string bytes = read_bytes(dir.file("c"));
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);
  CHECK(bytes.size() == 8 + n + 7 * 4);
  CHECK(bytes.substr(8, 1) == "{");
  CHECK(bytes.find("\"dtype\":\"F32\"") != std::string::npos);
  float first;
  std::memcpy(&first, bytes.data() + 8 + n, 4);
  CHECK(first == 1.0f);
}

TEST_CASE("corrupt checkpoints are refused with the reason", "[cli]") {
  TempDir dir;
  const std::string p = dir.file("bad");
  const std::string four(4, '\0');
  const auto error = [&](const std::string& bytes) {
    write_bytes(p, bytes);
    try {
      load_safetensors(p);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string good = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  CHECK(error(with_header(good, four)) == "no error");
  CHECK_THAT(error("abc"), Catch::Contains("too short for a safetensors file"));
  CHECK_THAT(error(with_header(good, four).substr(0, 20)), Catch::Contains("runs past the end of the file"));
  CHECK_THAT(error(with_header("{\"w\": [1,", four)), Catch::Contains("the header is not valid JSON"));
  CHECK_THAT(error(with_header(R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", four)),
             Catch::Contains("tensor 'w' has dtype \"F16\", expected \"F32\""));
  CHECK_THAT(error(with_header(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", four)),
             Catch::Contains("tensor 'w' has shape [2] (8 bytes) but 4 bytes of data"));
  CHECK_THAT(error(with_header(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", four)),
             Catch::Contains("outside the 4 bytes of data — truncated file?"));
  CHECK_THAT(error(with_header(good, four + "xx")), Catch::Contains("2 bytes after the last tensor"));
  CHECK_THAT(error(with_header(R"({"w":{"dtype":"F32","shape":[1]}})", four)),
             Catch::Contains("lacks dtype, shape or data_offsets"));
  CHECK_THAT(error(with_header(R"({"__metadata__":{"a":1}})", "")), Catch::Contains("'a' is not a string"));
  CHECK_THAT(error(with_header(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                               R"("v":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                               four)),
             Catch::Contains("overlaps or leaves a gap"));
  CHECK_THAT(error(with_header(R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}})", four)),
             Catch::Contains("larger than the file's data"));
  CHECK_THROWS_WITH(load_safetensors(dir.file("missing")), Catch::Contains("cannot open checkpoint"));
}

TEST_CASE("a failed write leaves the previous checkpoint intact and no temporary behind", "[cli]") {
  TempDir dir;
  const std::string p = dir.file("c");
  save_safetensors(p, {{"w", Tensor::ones({2})}});
  const std::string before = read_bytes(p);
  CHECK_THROWS(write_file_atomically(p, [](const std::string& tmp) {
    write_bytes(tmp, "partial");
    fail("simulated crash mid-write");
  }));
  CHECK(read_bytes(p) == before);
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) files += entry.is_regular_file();
  CHECK(files == 1);
  CHECK_THROWS_WITH(save_safetensors(dir.file("no/such/dir/c"), {{"w", Tensor::ones({2})}}), Catch::Contains("cannot create"));
}

namespace {
const std::string kVersion1 = std::string(MINIDL_TEST_DATA) + "/minidl-0.1-running-hidden4.safetensors";
}  // namespace

TEST_CASE("a checkpoint of minidl 0.1 loads and evaluates to the numbers 0.1 gave", "[checkpoint]") {
  const LoadedModel loaded = load_model(kVersion1);
  CHECK(loaded.config.description == "dense:4,relu,bn,dense:10,softmax");
  CHECK(loaded.config.norm == "running");
  CHECK(loaded.checkpoint.metadata.at("format") == kCheckpointFormat);
  CHECK(loaded.checkpoint.tensors.count("optimizer/m/dense_1/kernel") == 1);  // slots renamed after the parameters
  const DatasetSplits data = make_synthetic(640, 200, 21);
  const Evaluation e = evaluate(*loaded.model, data.test);
  CHECK(e.loss == 2.223271942138672);
  CHECK(e.accuracy == 0.275);
}

TEST_CASE("a checkpoint of minidl 0.1 resumes as 0.1 resumed it", "[checkpoint]") {
  const DatasetSplits data = make_synthetic(640, 200, 21);
  LoadedModel loaded = load_model(kVersion1);
  Adam adam(loaded.model->named_parameters(true));
  DataLoader loader(data.train, {.batch_size = 32, .seed = 1}, true);
  Trainer trainer(*loaded.model, adam, loader, {.epochs = 2, .max_steps = 30});
  trainer.resume(load_safetensors(kVersion1), kVersion1);
  CHECK(trainer.steps_done() == 25);
  trainer.fit();
  const Evaluation e = evaluate(*loaded.model, data.test);
  CHECK(e.loss == 2.210808458328247);
  CHECK(e.accuracy == 0.285);
}

TEST_CASE("save_model / load_model rebuild the model from the file alone", "[checkpoint]") {
  TempDir dir;
  ModelConfig c;
  c.description = "dense:16,relu,dropout:0.1,bn,dense:3,softmax";
  c.input_shape = {8, 8, 1};
  c.classes = 3;
  c.norm = "batchwise";
  const auto model = build_model(c);
  model->forward(Tensor::uniform({5, 64}, 0, 1));
  save_model(dir.file("m"), *model, c, {{"data.dir", "/somewhere"}});
  const LoadedModel loaded = load_model(dir.file("m"));
  CHECK(loaded.config.description == c.description);
  CHECK(loaded.config.input_shape == Shape{8, 8, 1});
  CHECK(loaded.checkpoint.metadata.at("data.dir") == "/somewhere");
  model->eval();
  loaded.model->eval();
  const Tensor x = Tensor::uniform({2, 64}, 0, 1);
  CHECK(loaded.model->forward(x).to_vector() == model->forward(x).to_vector());
  save_safetensors(dir.file("plain"), model->state());
  CHECK_THROWS_WITH(load_model(dir.file("plain")), Catch::Contains("metadata lacks 'format': not a minidl checkpoint"));
}

namespace {
const std::string kRenorm02 = std::string(MINIDL_TEST_DATA) + "/minidl-0.2-renorm-hidden4.safetensors";
const std::string kFrozen02 = std::string(MINIDL_TEST_DATA) + "/minidl-0.2-frozen-hidden4.safetensors";

// Resumes a checkpoint on the set the fixtures were trained on, as `minidl train --resume` would, to its end.
std::shared_ptr<Sequential> resumed(const std::string& path, int epochs, int64_t max_steps) {
  const DatasetSplits data = make_synthetic(640, 200, 21);
  LoadedModel loaded = load_model(path);
  Adam adam(loaded.model->named_parameters(true));
  DataLoader loader(data.train, training_loader_options(*loaded.model, data.train, {.batch_size = 32, .seed = 1}), true);
  Trainer trainer(*loaded.model, adam, loader, {.epochs = epochs, .max_steps = max_steps});
  trainer.resume(load_safetensors(path), path);
  trainer.fit();
  return loaded.model;
}
}  // namespace

TEST_CASE("checkpoints written before the normalisation registry load, evaluate and resume as they did",
          "[checkpoint][normalization]") {
  const DatasetSplits data = make_synthetic(640, 200, 21);
  // Renorm: no moving_stddev in the file, so it is derived; inference reads the moving statistics the file holds.
  const LoadedModel renorm = load_model(kRenorm02);
  CHECK(renorm.config.norm == "renorm");
  CHECK(renorm.config.norm_option("momentum") == 0.9f);
  CHECK(renorm.config.norm_option("rmax") == 3.0);
  auto& bn = dynamic_cast<BatchNormalization&>(*renorm.model->children()[2]);
  for (int64_t k = 0; k < 4; ++k)
    CHECK(bn.moving_stddev().data()[k] == Approx(std::sqrt(bn.moving_variance().data()[k] + 1e-3f)).epsilon(1e-6));
  const Evaluation e = evaluate(*renorm.model, data.test);
  CHECK(e.loss == 2.098600664138794);
  CHECK(e.accuracy == 0.31);
  // Resumed to step 30: the weights and the other statistics as f98a1e2 wrote them; the variance from moving_stddev.
  const auto model = resumed(kRenorm02, 2, 30);
  const Checkpoint then = load_safetensors(std::string(MINIDL_TEST_DATA) + "/minidl-0.2-renorm-hidden4-step30.safetensors");
  for (const auto& [name, t] : model->state()) {
    INFO(name);
    if (name == "batch_normalization/moving_stddev") continue;
    if (name == "batch_normalization/moving_variance") {
      auto& now = dynamic_cast<BatchNormalization&>(*model->children()[2]);
      for (int64_t k = 0; k < 4; ++k)
        CHECK(t.data()[k] == std::max(now.moving_stddev().data()[k] * now.moving_stddev().data()[k] - 1e-3f, 0.0f));
      continue;
    }
    CHECK(then.tensors.at(name).to_vector() == t.to_vector());
  }
  // Frozen: train.freeze_epochs becomes the kind's option, and the run ends as f98a1e2's did, bit for bit.
  CHECK(load_model(kFrozen02).config.norm_option("freeze_epochs") == 1);
  const auto frozen = resumed(kFrozen02, 3, -1);
  const Checkpoint end = load_safetensors(std::string(MINIDL_TEST_DATA) + "/minidl-0.2-frozen-hidden4-step60.safetensors");
  for (const auto& [name, t] : frozen->state()) {
    INFO(name);
    CHECK(end.tensors.at(name).to_vector() == t.to_vector());
  }
}

TEST_CASE("a FIFO given as a checkpoint is refused at once instead of blocking", "[cli]") {
  TempDir dir;
  const std::string fifo = dir.file("model.safetensors");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH(load_safetensors(fifo), Catch::Contains("is a FIFO (named pipe), not a checkpoint (safetensors) file"));
  const minidl::test::Run r = minidl::test::minidl_cli("evaluate --model " + fifo, dir);
  CHECK(r.status == 1);
  CHECK_THAT(r.err, Catch::Contains("is a FIFO"));
}
