// Tests of the minidl command line on a synthetic MNIST-format directory: every command, train → save →
// evaluate, exact resume, --init, corrupt checkpoints, bad flags.
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <sstream>
#include <filesystem>
#include <sys/wait.h>

#include "cli_helpers.h"
#include "minidl/checkpoint.h"
#include "minidl/data.h"
#include "minidl/models.h"
#include "minidl/callbacks.h"
#include "minidl/functional.h"
#include "minidl/layers.h"
#include "minidl/losses.h"
#include "minidl/train.h"

using namespace minidl;
using minidl::test::TempDir;
using minidl::test::read_bytes;
using minidl::test::write_bytes;

using minidl::test::data_dir;
using minidl::test::data_flag;
using minidl::test::minidl_cli;
using minidl::test::Run;

TEST_CASE("train --json prints one object per epoch — evaluate reproduces the accuracy", "[cli]") {
  TempDir dir;
  const std::string ckpt = dir.file("model.safetensors");
  const Run train = minidl_cli("train --norm running --epochs 2 --json --save " + ckpt + " --log " + dir.file("log") +
                                   " " + data_flag(),
                               dir);
  INFO(train.err);
  REQUIRE(train.status == 0);
  std::vector<nlohmann::json> epochs;
  std::istringstream lines(train.out);
  for (std::string line; std::getline(lines, line);) epochs.push_back(nlohmann::json::parse(line));
  REQUIRE(epochs.size() == 2);
  for (const char* key : {"epoch", "loss", "accuracy", "test_loss", "test_accuracy", "seconds"})
    CHECK(epochs[1].contains(key));
  CHECK(epochs[1]["epoch"] == 2);
  CHECK(epochs[1]["steps"] == 20);
  CHECK(read_bytes(dir.file("log")) == train.out);

  const Run eval = minidl_cli("evaluate --json --model " + ckpt + " " + data_flag(), dir);
  REQUIRE(eval.status == 0);
  const auto result = nlohmann::json::parse(eval.out);
  CHECK(result["accuracy"].get<double>() == epochs[1]["test_accuracy"].get<double>());
  CHECK(result["loss"].get<double>() == Approx(epochs[1]["test_loss"].get<double>()).epsilon(1e-12));

  // In-process: the same checkpoint in the library gives the same accuracy.
  const Checkpoint c = load_safetensors(ckpt);
  CHECK(c.metadata.at("model.norm") == "running");
  CHECK(c.tensors.at("batch_normalization/moving_variance").shape() == Shape{64});
  CHECK(c.tensors.count("optimizer/m/dense/kernel") == 1);
  Generator gen(1);
  const auto model = test::document_model("running", gen);
  std::map<std::string, Tensor> weights;
  for (const auto& [name, t] : c.tensors)
    if (name.rfind("optimizer/", 0) != 0) weights[name] = t;
  model->load_state(weights);
  const Evaluation in_process = evaluate(*model, load_mnist_dir(data_dir().path()).test);
  CHECK(in_process.accuracy == result["accuracy"].get<double>());
}

TEST_CASE("10 steps, then resume to 20, equals 20 straight steps bit for bit", "[cli]") {
  TempDir dir;
  for (const std::string mode : {"running", "manual", "rms"}) {
    const std::string common = "train --overwrite --norm " + mode + " --epochs 3 " + data_flag();  // a file per mode in turn
    REQUIRE(minidl_cli(common + " --steps 20 --save " + dir.file("straight"), dir).status == 0);
    REQUIRE(minidl_cli(common + " --steps 10 --save " + dir.file("half"), dir).status == 0);
    const Run resumed = minidl_cli("train --overwrite --resume " + dir.file("half") + " --steps 20 --save " + dir.file("resumed") +
                                       " " + data_flag(),
                                   dir);
    INFO(resumed.err);
    REQUIRE(resumed.status == 0);
    CHECK(read_bytes(dir.file("resumed")) == read_bytes(dir.file("straight")));
    CHECK(load_safetensors(dir.file("resumed")).metadata.at("trainer.step") == "20");
  }
  // Resuming across an epoch boundary (20 steps per epoch here) continues the same permutation sequence.
  const std::string common = "train --overwrite --norm batchwise --epochs 3 " + data_flag();
  REQUIRE(minidl_cli(common + " --steps 45 --save " + dir.file("straight"), dir).status == 0);
  REQUIRE(minidl_cli(common + " --steps 15 --save " + dir.file("half"), dir).status == 0);
  REQUIRE(minidl_cli("train --overwrite --resume " + dir.file("half") + " --steps 45 --save " + dir.file("resumed") + " " +
                         data_flag(),
                     dir)
              .status == 0);
  CHECK(read_bytes(dir.file("resumed")) == read_bytes(dir.file("straight")));
  // A cosine schedule spans the epochs, so a resumed run continues it: the same bits as the straight run, although
  // the checkpoint's optimizer holds the decayed rate by then.
  const std::string cosine = "train --lr-schedule cosine --lr 0.002 --epochs 2 " + data_flag();
  REQUIRE(minidl_cli(cosine + " --save " + dir.file("cos-straight"), dir).status == 0);
  REQUIRE(minidl_cli(cosine + " --steps 25 --save " + dir.file("cos-half"), dir).status == 0);
  CHECK(std::stof(load_safetensors(dir.file("cos-half")).metadata.at("train.initial_learning_rate")) == 0.002f);
  const Run cos_resumed = minidl_cli(cosine + " --resume " + dir.file("cos-half") + " --save " + dir.file("cos-half"), dir);
  INFO(cos_resumed.err);
  REQUIRE(cos_resumed.status == 0);
  CHECK(read_bytes(dir.file("cos-half")) == read_bytes(dir.file("cos-straight")));
  CHECK(std::stod(load_safetensors(dir.file("cos-straight")).metadata.at("optimizer.learning_rate")) < 1e-5);
  const Run constant = minidl_cli("train --resume " + dir.file("cos-half") + " --lr-schedule constant " + data_flag(), dir);
  CHECK(constant.status == 1);
  CHECK_THAT(constant.err, Catch::Contains("--lr-schedule constant differs from the checkpoint"));
  CHECK_THAT(minidl_cli("train --lr-schedule linear " + data_flag(), dir).err,
             Catch::Contains("--lr-schedule must be constant or cosine, got 'linear'"));
  const Run contradiction = minidl_cli("train --resume " + dir.file("half") + " --norm none " + data_flag(), dir);
  CHECK(contradiction.status == 1);
  CHECK_THAT(contradiction.err, Catch::Contains("--norm none differs from the checkpoint") &&
                                    Catch::Contains("trained with batchwise"));
}

TEST_CASE("train --init starts from a weights-only file another tool could write", "[cli]") {
  TempDir dir;
  Generator gen(5);
  const auto model = test::document_model("manual", gen);
  save_safetensors(dir.file("weights"), model->state());  // just the Keras-named weights, no metadata
  const Run ok = minidl_cli("train --norm manual --epochs 1 --steps 3 --json --init " + dir.file("weights") + " " +
                                data_flag(),
                            dir);
  INFO(ok.err);
  CHECK(ok.status == 0);
  const Run wrong_mode = minidl_cli("train --norm running --epochs 1 --init " + dir.file("weights") + " " + data_flag(), dir);
  CHECK(wrong_mode.status == 1);
  CHECK_THAT(wrong_mode.err, Catch::Contains("'batch_normalization/moving_mean' [64] is missing from the state"));
  const Run wrong_shape = minidl_cli("train --norm manual --hidden 32 --init " + dir.file("weights") + " " + data_flag(), dir);
  CHECK(wrong_shape.status == 1);
  CHECK_THAT(wrong_shape.err, Catch::Contains("'dense/kernel' has shape [784,64] in the state but [784,32] in the model"));
}

TEST_CASE("corrupt or mismatched checkpoints give a clear error and overwrite nothing", "[cli]") {
  TempDir dir;
  const std::string good = dir.file("good"), bad = dir.file("bad"), out = dir.file("out");
  REQUIRE(minidl_cli("train --epochs 1 --steps 2 --save " + good + " " + data_flag(), dir).status == 0);
  write_bytes(out, "precious");
  const std::string bytes = read_bytes(good);
  const auto expect_error = [&](const std::string& content, const std::string& message) {
    write_bytes(bad, content);
    // Even with --overwrite, a checkpoint that cannot resume replaces nothing.
    for (const std::string& command : {"evaluate --model " + bad, "train --resume " + bad + " --overwrite --save " + out}) {
      const Run r = minidl_cli(command + " " + data_flag(), dir);
      INFO(command << ": " << r.err);
      CHECK(r.status == 1);
      CHECK_THAT(r.err, Catch::Contains(message));
      CHECK(read_bytes(out) == "precious");
    }
  };
  expect_error(bytes.substr(0, bytes.size() / 2), "truncated file?");
  expect_error(bytes.substr(0, 12), "runs past the end of the file");
  std::string flipped = bytes;
  flipped.replace(flipped.find("F32"), 3, "I32");
  expect_error(flipped, "has dtype \"I32\", expected \"F32\"");
  std::string renamed = bytes;
  renamed.replace(renamed.find("dense_1/bias"), 12, "dense_9/bias");
  expect_error(renamed, "the state has 'dense_9/bias', which the model does not");
  std::string no_mode = bytes;
  no_mode.replace(no_mode.find("\"model.norm\""), 12, "\"model.nurm\"");
  expect_error(no_mode, "metadata lacks 'model.norm'");
}

TEST_CASE("bad flags, modes and commands name the valid choices and exit non-zero", "[cli]") {
  TempDir dir;
  const Run flag = minidl_cli("train --epoch 3", dir);
  CHECK(flag.status == 1);
  // A short message with the likely flag, not the whole help.
  CHECK(flag.err == "error: unknown flag --epoch: did you mean --epochs? (minidl train --help lists the flags)\n");
  const Run mode = minidl_cli("train --norm fast " + data_flag(), dir);
  CHECK(mode.status == 1);
  CHECK_THAT(mode.err, Catch::Contains("unknown normalisation mode 'fast': choose one of running, batchwise, manual, none"));
  const Run command = minidl_cli("fly", dir);
  CHECK(command.status == 1);
  CHECK_THAT(command.err,
             Catch::Contains("unknown command 'fly': choose one of train, evaluate, predict, export, recalibrate, "
                             "summary, compare, gradcheck, bench"));
  CHECK_THAT(minidl_cli("trian", dir).err, Catch::Contains("unknown command 'trian': did you mean train?"));
  const Run value = minidl_cli("train --batch-size 0 " + data_flag(), dir);
  CHECK(value.status == 1);
  CHECK_THAT(value.err, Catch::Contains("--batch-size must be >= 1, got 0"));
  const Run data = minidl_cli("train --data " + dir.file("nowhere"), dir);
  CHECK(data.status == 1);
  CHECK_THAT(data.err, Catch::Contains("apt-get install dataset-fashion-mnist"));
  const Run help = minidl_cli("compare --help", dir);
  CHECK(help.status == 0);
  CHECK_THAT(help.out, Catch::Contains("Example:") && Catch::Contains("--modes"));
  CHECK(minidl_cli("evaluate " + data_flag(), dir).err.find("--model FILE is required") != std::string::npos);
}

TEST_CASE("gradcheck passes on the whole model in every mode", "[cli]") {
  TempDir dir;
  for (const char* mode : {"running", "manual", "none"}) {
    const Run r = minidl_cli(std::string("gradcheck --hidden 16 --batch-size 8 --norm ") + mode + " " + data_flag(), dir);
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK_THAT(r.out, Catch::Contains("dense/kernel") && Catch::EndsWith("ok\n"));
  }
}

TEST_CASE("the same seed gives bit-identical weights with --threads 1 and 2", "[cli]") {
  // Batch 512 and hidden 1400 take every parallel path: the threaded GEMM (the 1400 -> 10 weight gradient's depth
  // cut by samples included), the batch-norm kernels, the loader, and Adam (over a million parameters).
  TempDir dir;
  for (const std::string mode : {"running", "manual"}) {
    const std::string common = "train --overwrite --norm " + mode + " --epochs 2 --batch-size 512 --hidden 1400 " + data_flag();
    REQUIRE(minidl_cli(common + " --threads 1 --save " + dir.file("one"), dir).status == 0);
    REQUIRE(minidl_cli(common + " --threads 2 --save " + dir.file("two"), dir).status == 0);
    CHECK(read_bytes(dir.file("one")) == read_bytes(dir.file("two")));
  }
}

TEST_CASE("bench prints one row per configuration and thread count beside the GEMM peaks, minidl's and OpenBLAS's, and the speed-up", "[cli]") {
  TempDir dir;
  const Run r = minidl_cli("bench --quick --steps 3 --thread-counts 1,2 " + data_flag(), dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  std::istringstream lines(r.out);
  std::vector<std::string> rows;
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("document model, batch 32", 0) == 0) rows.push_back(line);
  REQUIRE(rows.size() == 2);
  for (const std::string& row : rows) {
    std::istringstream cells(row.substr(std::string("document model, batch 32").size()));
    int threads;
    double steps_per_second, seconds_per_epoch, gflops, peak;
    std::string blas, ratio;
    cells >> threads >> steps_per_second >> seconds_per_epoch >> gflops >> peak >> blas >> ratio;
    CHECK(steps_per_second > 0);
    // OpenBLAS's product where it is installed, else nan; the ratio is of the better of the two products.
    const double reference = blas == "nan" ? peak : std::max(peak, std::stod(blas));
    REQUIRE(ratio.back() == '%');
    CHECK(std::stod(ratio) == Approx(100 * gflops / reference).margin(1.0));
    // The data's 640 samples / 32, printed with 3 decimals.
    CHECK(seconds_per_epoch == Approx(20 / steps_per_second).epsilon(0.02).margin(0.0005));
    CHECK((gflops > 0 && peak > 0));  // measured numbers, printed (how fast is bench's business, not a test's)
    // The last cell: the 1-thread step time over this row's, measured in turns in one process.
    const std::string speedup = row.substr(row.find_last_of(' ') + 1);
    REQUIRE(speedup.back() == 'x');
    if (threads == 1) CHECK(speedup == "1.00x");
    else CHECK(std::stod(speedup) > 0.0);
  }
  CHECK_THAT(r.out, Catch::Contains("GEMM peak") && Catch::Contains("OpenBLAS") && Catch::Contains("peak RSS") &&
                       Catch::Contains("speed-up") && Catch::Contains("Reference product: ") &&
                       Catch::Contains("minidl's product kernel: "));
  const Run none = minidl_cli("bench --thread-counts '' " + data_flag(), dir);
  CHECK(none.status == 1);
  CHECK_THAT(none.err, Catch::Contains("--thread-counts") && Catch::Contains("no thread count"));
  CHECK(minidl_cli("bench --match nothing-like-this " + data_flag(), dir).status == 1);
  // --kernel forces minidl's micro-kernel (every CPU runs the portable one) and names it below the table.
  const Run portable = minidl_cli("bench --quick --steps 2 --thread-counts 1 --kernel portable " + data_flag(), dir);
  CHECK(portable.status == 0);
  CHECK_THAT(portable.out, Catch::Contains("minidl's product kernel: portable 4x8"));
  const Run unknown = minidl_cli("bench --quick --kernel sse9 " + data_flag(), dir);
  CHECK(unknown.status == 1);
  CHECK_THAT(unknown.err, Catch::Contains("--kernel: 'sse9' is not a kernel; use avx512, avx2 or portable"));
}

TEST_CASE("train --model: any stack of layers — its checkpoint evaluates and resumes with no other flag", "[cli]") {
  TempDir dir;
  const std::string model = "dense:64,relu,bn,dense:32,relu,dropout:0.1,bn,dense:10,softmax";
  const std::string common = "train --model " + model + " --epochs 2 --batch-size 16 --no-shuffle --seed 3 --save " +
                             dir.file("ckpt") + " " + data_flag();
  REQUIRE(minidl_cli(common + " --steps 50", dir).status == 0);
  REQUIRE(minidl_cli("train --model " + model + " --epochs 2 --batch-size 16 --no-shuffle --seed 3 --save " +
                         dir.file("straight") + " --steps 70 " + data_flag(),
                     dir)
              .status == 0);
  // The same command line with --resume continues exactly: byte-identical to the straight run.
  const Run resumed = minidl_cli(common + " --steps 70 --resume " + dir.file("ckpt"), dir);
  INFO(resumed.err);
  REQUIRE(resumed.status == 0);
  CHECK(read_bytes(dir.file("ckpt")) == read_bytes(dir.file("straight")));
  // Resuming with nothing but the file: the model, settings and data come from it.
  REQUIRE(minidl_cli("train --resume " + dir.file("ckpt") + " --save " + dir.file("more"), dir).status == 0);
  CHECK(load_safetensors(dir.file("more")).metadata.at("trainer.step") == "80");  // 2 epochs of 40 steps
  const Run eval = minidl_cli("evaluate --json --model " + dir.file("more"), dir);
  INFO(eval.err);
  REQUIRE(eval.status == 0);
  CHECK(nlohmann::json::parse(eval.out)["accuracy"].get<double>() > 0.5);
  const Checkpoint c = load_safetensors(dir.file("more"));
  CHECK(c.metadata.at("model.description") == model);
  CHECK(c.metadata.at("data.train") == std::filesystem::canonical(data_dir().path()).string());
  // A different value of a flag the checkpoint fixes is refused, naming both values.
  const Run different = minidl_cli(common + " --batch-size 32 --resume " + dir.file("ckpt"), dir);
  CHECK(different.status == 1);
  CHECK_THAT(different.err, Catch::Contains("--batch-size 32 differs from the checkpoint") &&
                                Catch::Contains("trained with 16"));
  const Run other_model = minidl_cli("train --hidden 32 --resume " + dir.file("ckpt") + " " + data_flag(), dir);
  CHECK_THAT(other_model.err, Catch::Contains("--hidden dense:32,relu,bn,dense:10,softmax differs from the checkpoint"));
}

TEST_CASE("a run of 0 steps with --save writes the file — so does resuming a finished run", "[cli]") {
  TempDir dir;
  const Run zero = minidl_cli("train --steps 0 --save " + dir.file("zero") + " " + data_flag(), dir);
  INFO(zero.err);
  REQUIRE(zero.status == 0);
  CHECK_THAT(zero.err, Catch::Contains("saved " + dir.file("zero") + " (step 0)"));
  CHECK(load_safetensors(dir.file("zero")).metadata.at("trainer.step") == "0");
  REQUIRE(minidl_cli("train --epochs 1 --save " + dir.file("done") + " " + data_flag(), dir).status == 0);
  const Run again = minidl_cli("train --resume " + dir.file("done") + " --save " + dir.file("copy"), dir);
  REQUIRE(again.status == 0);
  CHECK(load_safetensors(dir.file("copy")).metadata.at("trainer.step") == "20");
}

TEST_CASE("a training set that leaves 1 sample in the last batch trains (the sample skipped, with a warning)", "[cli]") {
  TempDir dir;
  const DatasetSplits s = make_synthetic(2001, 100, 8);
  save_mnist_split(dir.path(), "train", s.train, true);
  save_mnist_split(dir.path(), "t10k", s.test, true);
  const Run r = minidl_cli("train --epochs 1 --batch-size 40 --json --data " + dir.path(), dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.err, Catch::Contains("would hold 1 sample (2001 samples, batch 40)"));
  CHECK(nlohmann::json::parse(r.out)["steps"] == 50);
  const Run drop = minidl_cli("train --epochs 1 --batch-size 64 --drop-last --json --data " + dir.path(), dir);
  CHECK(nlohmann::json::parse(drop.out)["steps"] == 31);
}

TEST_CASE("the class count and input size come from the data", "[cli]") {
  TempDir dir;
  DatasetSplits s = make_synthetic(400, 100, 8);
  for (Dataset* d : {&s.train, &s.test})
    for (int32_t& label : d->labels) label %= 2;
  save_mnist_split(dir.path(), "train", s.train, true);
  save_mnist_split(dir.path(), "t10k", s.test, true);
  const Run r = minidl_cli("train --epochs 1 --save " + dir.file("two") + " --data " + dir.path(), dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const LoadedModel two = load_model(dir.file("two"));
  CHECK(two.config.classes == 2);
  CHECK(two.model->output_shape({1, 784}) == Shape{1, 2});
  const Run wrong = minidl_cli("train --model dense:8,relu,dense:10,softmax --data " + dir.path(), dir);
  CHECK(wrong.status == 1);
  CHECK_THAT(wrong.err, Catch::Contains("ends with output [10] per sample but the data has 2 classes: end it with "
                                        "dense:2,softmax"));
}

TEST_CASE("summary prints Keras's table — flags and descriptions are checked with clear errors", "[cli]") {
  TempDir dir;
  const Run summary = minidl_cli("summary " + data_flag(), dir);
  INFO(summary.err);
  REQUIRE(summary.status == 0);
  CHECK_THAT(summary.out, Catch::Contains("Total params: 51,146") && Catch::Contains("dense_1 (Dense)"));
  REQUIRE(minidl_cli("train --steps 1 --hidden 8 --save " + dir.file("c") + " " + data_flag(), dir).status == 0);
  CHECK_THAT(minidl_cli("summary --model " + dir.file("c"), dir).out, Catch::Contains("Total params: 6,402"));
  // A description longer than a file name may be is a description, not a file system error.
  std::string deep = "dense:8";
  for (int i = 0; i < 200; ++i) deep += ",relu";
  const Run long_description = minidl_cli("summary --model " + deep + ",dense:10,softmax " + data_flag(), dir);
  INFO(long_description.err);
  CHECK(long_description.status == 0);
  CHECK_THAT(long_description.out, Catch::Contains("re_lu_199 (ReLU)"));
  const Run not_a_file = minidl_cli("summary " + deep, dir);
  CHECK_THAT(not_a_file.err, Catch::Contains("'dense:8,relu,relu,relu,relu,relu,relu,re... (1007 bytes)' is not a checkpoint file"));
  const Run list = minidl_cli("train --hidden 256,128 " + data_flag(), dir);
  CHECK(list.status == 1);
  CHECK_THAT(list.err, Catch::Contains("--hidden 256,128: not a valid value") && Catch::Contains("give --model"));
  const Run bad = minidl_cli("train --model dense:64,relu,bm,dense:10,softmax " + data_flag(), dir);
  CHECK(bad.status == 1);
  CHECK_THAT(bad.err, Catch::Contains("layer 3 'bm'") && Catch::Contains("choose one of dense, relu, softmax"));
  const Run grad = minidl_cli("gradcheck --model dense:12,relu,dropout:0.3,bn,dense:10,softmax --batch-size 6 " + data_flag(), dir);
  INFO(grad.out << grad.err);
  CHECK(grad.status == 0);
}

TEST_CASE("a 2-class CSV problem trains, evaluates and predicts with the right sizes and class names", "[cli]") {
  TempDir dir;
  // Two noisy clusters in 3 dimensions, labelled by name.
  Generator gen(4);
  const auto table = [&](int rows) {
    std::string csv = "x,y,z,kind\n";
    for (int i = 0; i < rows; ++i) {
      const bool yes = gen.uniform() < 0.5f;
      const float centre = yes ? 1.0f : -1.0f;
      for (int k = 0; k < 3; ++k) csv += std::to_string(centre + gen.normal(0.0f, 0.7f)) + ",";
      csv += yes ? "yes\n" : "no\n";
    }
    return csv;
  };
  write_bytes(dir.file("train.csv"), table(600));
  write_bytes(dir.file("test.csv"), table(100));
  const Run train = minidl_cli("train --data " + dir.file("train.csv") + " --test " + dir.file("test.csv") +
                                   " --label kind --model dense:16,relu,bn,dense:2,softmax --epochs 3 --json --save " +
                                   dir.file("m"),
                               dir);
  INFO(train.err);
  REQUIRE(train.status == 0);
  const LoadedModel loaded = load_model(dir.file("m"));
  CHECK(loaded.config.input_shape == Shape{3});
  CHECK(loaded.config.classes == 2);
  CHECK(loaded.config.class_names == std::vector<std::string>{"no", "yes"});
  const Run eval = minidl_cli("evaluate --json --model " + dir.file("m"), dir);  // the data from the checkpoint
  REQUIRE(eval.status == 0);
  CHECK(nlohmann::json::parse(eval.out)["accuracy"].get<double>() > 0.9);
  write_bytes(dir.file("new.csv"), "x,y,z\n1,1,1\n-1,-1,-1\n");
  const Run predict = minidl_cli("predict --json --model " + dir.file("m") + " --data " + dir.file("new.csv"), dir);
  INFO(predict.err);
  REQUIRE(predict.status == 0);
  std::istringstream lines(predict.out);
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(lines, line);) rows.push_back(nlohmann::json::parse(line));
  REQUIRE(rows.size() == 2);
  CHECK(rows[0]["name"] == "yes");
  CHECK(rows[1]["name"] == "no");
  CHECK(rows[0]["probabilities"].size() == 2);
  const Run missing = minidl_cli("train --data " + dir.file("train.csv") + " --label kind", dir);
  CHECK(missing.status == 1);
  CHECK_THAT(missing.err, Catch::Contains("a CSV training file needs test data"));
}

TEST_CASE("16x16 images in 4 classes train, evaluate and predict — a PNG is classified as its IDX copy", "[cli]") {
  TempDir dir;
  DatasetSplits s = make_synthetic(400, 60, 6);
  for (Dataset* d : {&s.train, &s.test}) {
    Dataset small;
    small.sample = {16, 16, 1};
    for (int64_t i = 0; i < d->size(); ++i) {
      for (int64_t y = 0; y < 16; ++y)
        for (int64_t x = 0; x < 16; ++x) small.images.push_back(d->images[i * 784 + (y + 6) * 28 + x + 6]);
      small.labels.push_back(d->labels[i] % 4);
    }
    *d = small;
  }
  save_mnist_split(dir.path(), "train", s.train, true);
  save_mnist_split(dir.path(), "t10k", s.test, true);
  const Run train = minidl_cli("train --epochs 2 --save " + dir.file("m") + " --data " + dir.path(), dir);
  INFO(train.err);
  REQUIRE(train.status == 0);
  const LoadedModel loaded = load_model(dir.file("m"));
  CHECK(loaded.config.input_shape == Shape{16, 16, 1});
  CHECK(loaded.model->output_shape({1, 256}) == Shape{1, 4});
  REQUIRE(minidl_cli("evaluate --model " + dir.file("m"), dir).status == 0);
  const Run first = minidl_cli("predict --json --first 5 --model " + dir.file("m"), dir);
  INFO(first.err);
  REQUIRE(first.status == 0);
  std::istringstream lines(first.out);
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(lines, line);) rows.push_back(nlohmann::json::parse(line));
  REQUIRE(rows.size() == 5);
  for (size_t i = 0; i < rows.size(); ++i) {
    CHECK(rows[i]["index"] == i);
    CHECK(rows[i]["probabilities"].size() == 4);
  }
  // Test image 3 as a PNG file: the same class and the same probabilities as from the IDX file.
  write_png(dir.file("three.png"), {16, 16, std::vector<uint8_t>(s.test.images.begin() + 3 * 256, s.test.images.begin() + 4 * 256)});
  const Run png = minidl_cli("predict --json --model " + dir.file("m") + " " + dir.file("three.png"), dir);
  INFO(png.err);
  REQUIRE(png.status == 0);
  const auto image = nlohmann::json::parse(png.out);
  CHECK(image["class"] == rows[3]["class"]);
  // One image is a batch of one: its product may round differently from a batch of five's, within 1e-6.
  for (size_t c = 0; c < 4; ++c)
    CHECK(image["probabilities"][c].get<double>() == Approx(rows[3]["probabilities"][c].get<double>()).margin(1e-6));
  CHECK(image["file"] == dir.file("three.png"));
  write_png(dir.file("big.png"), {20, 20, std::vector<uint8_t>(400, 0)});
  const Run big = minidl_cli("predict --model " + dir.file("m") + " " + dir.file("big.png"), dir);
  CHECK(big.status == 1);
  CHECK_THAT(big.err, Catch::Contains("is 20x20 pixels; the model takes 16x16 images"));
}

TEST_CASE("evaluate and predict never silently use data the model was not trained on", "[cli]") {
  TempDir dir;
  const std::string v1 = std::string(MINIDL_TEST_DATA) + "/minidl-0.1-running-hidden4.safetensors";
  const Run old = minidl_cli("evaluate --model " + v1, dir);
  CHECK(old.status == 1);
  CHECK_THAT(old.err, Catch::Contains("does not record the data it was trained on (written by minidl 0.1): pass --data"));
  CHECK(minidl_cli("evaluate --model " + v1 + " " + data_flag(), dir).status == 0);
  REQUIRE(minidl_cli("train --norm manual --steps 10 --save " + dir.file("manual") + " " + data_flag(), dir).status == 0);
  const Run manual = minidl_cli("predict --first 4 --batch-size 2 --model " + dir.file("manual"), dir);
  CHECK(manual.status == 0);
  CHECK_THAT(manual.err, Catch::Contains("a prediction depends on the other samples in its batch (batch size 2"));
  const Run export_manual = minidl_cli("export --model " + dir.file("manual") + " --out " + dir.file("m.onnx"), dir);
  CHECK(export_manual.status == 1);
  CHECK_THAT(export_manual.err, Catch::Contains("no moving statistics, so no inference form to export"));
}

TEST_CASE("build_model with the frozen kind and the library's Trainer freeze as `train --norm frozen` does, bit for bit",
          "[cli][normalization]") {
  TempDir dir;
  const Run cli = minidl_cli("train --norm frozen --epochs 3 --save " + dir.file("cli") + " " + data_flag(), dir);
  INFO(cli.err);
  REQUIRE(cli.status == 0);
  // The same run in C++: no callback added, the kind's layers freeze themselves in the last epoch.
  const DatasetSplits data = load_mnist_dir(data_dir().path());
  ModelConfig c;
  c.norm = "frozen";
  c.input_shape = data.train.sample;
  const auto model = build_model(c);
  Adam adam(model->named_parameters(true));
  DataLoader loader(data.train, training_loader_options(*model, data.train, {.batch_size = 32, .seed = c.seed}), true);
  Trainer trainer(*model, adam, loader, {.epochs = 3, .validation = &data.test});
  auto& bn = dynamic_cast<BatchNormalization&>(*model->children()[2]);
  REQUIRE(bn.options().freeze_epochs == 1);  // the kind's default
  std::vector<std::vector<float>> means;
  auto record = std::make_shared<LambdaCallback>();
  record->epoch_end = [&](Trainer&, const EpochLogs&) { means.push_back(bn.moving_mean().to_vector()); };
  trainer.add_callback(record);
  trainer.fit();
  REQUIRE(means.size() == 3);
  CHECK(means[1] != means[0]);  // epoch 2 trains with batch statistics and moves them
  CHECK(means[2] == means[1]);  // epoch 3 is frozen
  const Checkpoint saved = load_safetensors(dir.file("cli"));
  for (const auto& [name, t] : model->state()) {
    INFO(name);
    CHECK(saved.tensors.at(name).to_vector() == t.to_vector());
  }
}

TEST_CASE("evaluate --batch-statistics leaves Dropout off: a forward pass with batch statistics and no dropout",
          "[cli][normalization]") {
  TempDir dir;
  const Run trained = minidl_cli("train --model dense:64,relu,bn,dropout:0.9,dense:10,softmax --epochs 1 --save " +
                                     dir.file("m") + " " + data_flag(),
                                 dir);
  INFO(trained.err);
  REQUIRE(trained.status == 0);
  const Run eval = minidl_cli("evaluate --model " + dir.file("m") + " --batch-size 100 --batch-statistics --json", dir);
  INFO(eval.err);
  REQUIRE(eval.status == 0);
  const double accuracy = nlohmann::json::parse(eval.out)["accuracy"].get<double>();
  // By hand: dense, relu, each batch of 100 normalised with its own statistics, no dropout, dense, softmax.
  LoadedModel loaded = load_model(dir.file("m"));
  const auto& layers = loaded.model->children();
  auto& bn = dynamic_cast<BatchNormalization&>(*layers[2]);
  const std::vector<float> moving = bn.moving_mean().to_vector();
  const Dataset test = load_mnist_dir(data_dir().path()).test;
  const NoGradGuard no_grad;
  loaded.model->eval();
  int64_t correct = 0;
  for (int64_t begin = 0; begin < test.size(); begin += 100) {
    const Dataset part = test.slice(begin, begin + 100);
    Tensor h = layers[1]->forward(layers[0]->forward(part.to_tensor()));
    Tensor mean, variance;
    h = batch_norm_train(h, bn.gamma(), bn.beta(), bn.options().epsilon, mean, variance);
    const Tensor p = layers[5]->forward(layers[4]->forward(h));  // layers[3] is the dropout, left out
    correct += count_correct(part.labels, p);
  }
  CHECK(accuracy == static_cast<double>(correct) / static_cast<double>(test.size()));
  // And in the library: the same, the moving statistics and the dropout generator untouched.
  const auto generators = loaded.model->named_generators();
  const auto before = generators.at(0).second->state();
  CHECK(evaluate(*loaded.model, test, 100, true).accuracy == accuracy);
  CHECK(generators.at(0).second->state() == before);
  CHECK(bn.moving_mean().to_vector() == moving);
  CHECK(!loaded.model->uses_batch_statistics());
}

TEST_CASE("a resumed run keeps the --log lines of the epochs before its checkpoint", "[cli]") {
  TempDir dir;
  const std::string common = " --steps -1 --log " + dir.file("log.jsonl") + " --save " + dir.file("c.safetensors") + " " + data_flag();
  REQUIRE(minidl_cli("train --epochs 2" + common, dir).status == 0);
  const Run resumed = minidl_cli("train --epochs 4 --resume " + dir.file("c.safetensors") + common, dir);
  INFO(resumed.err);
  REQUIRE(resumed.status == 0);
  std::istringstream lines(read_bytes(dir.file("log.jsonl")));
  std::vector<int> epochs;
  for (std::string line; std::getline(lines, line);) epochs.push_back(nlohmann::json::parse(line)["epoch"].get<int>());
  CHECK(epochs == std::vector<int>{1, 2, 3, 4});
  // A file that is not a minidl log is refused, not overwritten.
  write_bytes(dir.file("notes.txt"), "my notes\n");
  const Run refused = minidl_cli("train --epochs 5 --resume " + dir.file("c.safetensors") + " --log " + dir.file("notes.txt") +
                                     " " + data_flag(), dir);
  CHECK(refused.status == 1);
  CHECK_THAT(refused.err, Catch::Contains("line 1 is not an epoch of a minidl log"));
  CHECK(read_bytes(dir.file("notes.txt")) == "my notes\n");
}

TEST_CASE("an output that is an input or another output is refused before anything is read", "[cli]") {
  TempDir dir;
  // A CSV named without an extension (the .csv one is refused by --save's extension check already).
  write_bytes(dir.file("train"), "x,label\n1,0\n2,1\n3,0\n4,1\n");
  write_bytes(dir.file("test.csv"), "x,label\n1,0\n2,1\n");
  const std::string csv = "--data " + dir.file("train") + " --test " + dir.file("test.csv");
  const std::string before = read_bytes(dir.file("train"));
  const Run onto_data = minidl_cli("train " + csv + " --save " + dir.file("train"), dir);
  CHECK(onto_data.status == 1);
  CHECK_THAT(onto_data.err, Catch::Contains("--save '" + dir.file("train") + "' is the file --data reads"));
  CHECK_THAT(minidl_cli("train " + csv + " --save " + dir.file("train.csv"), dir).err,
             Catch::Contains("minidl writes a safetensors checkpoint there, not .csv"));
  const Run log_onto_test = minidl_cli("train " + csv + " --log " + dir.file("test.csv"), dir);
  CHECK_THAT(log_onto_test.err, Catch::Contains("--log '" + dir.file("test.csv") + "' is the file --test reads"));
  // Another spelling of the same file, or a link to it, is the same file.
  CHECK(minidl_cli("train " + csv + " --save " + dir.path() + "/./train", dir).status == 1);
  std::filesystem::create_symlink(dir.file("train"), dir.file("link"));
  CHECK_THAT(minidl_cli("train " + csv + " --save " + dir.file("link"), dir).err, Catch::Contains("is the file --data reads"));
  const Run both = minidl_cli("train " + csv + " --save " + dir.file("x") + " --log " + dir.file("x"), dir);
  CHECK_THAT(both.err, Catch::Contains("--save and --log name the same file"));
  CHECK(read_bytes(dir.file("train")) == before);
  // IDX files are inputs too; export and recalibrate check theirs.
  const Run idx = minidl_cli("train --log " + minidl::test::data_dir().file("train-labels-idx1-ubyte.gz") + " " + data_flag(), dir);
  CHECK_THAT(idx.err, Catch::Contains("is the file --data reads"));
  const std::string model = dir.file("m.safetensors");
  REQUIRE(minidl_cli("train --epochs 1 --steps 2 --save " + model + " " + data_flag(), dir).status == 0);
  std::filesystem::create_symlink(model, dir.file("m.onnx"));
  CHECK_THAT(minidl_cli("export --model " + model + " --out " + dir.file("m.onnx"), dir).err,
             Catch::Contains("--out '" + dir.file("m.onnx") + "' is the file --model reads"));
  const Run recal = minidl_cli("recalibrate --model " + model + " --out " + model + " --samples 64", dir);
  CHECK(recal.status == 0);  // onto itself: documented
  // Resuming saves back onto the checkpoint it resumes.
  CHECK(minidl_cli("train --epochs 2 --steps 4 --resume " + model + " --save " + model + " " + data_flag(), dir).status == 0);
}

TEST_CASE("evaluate and predict stop with exit 3 at a non-finite output instead of printing NaN", "[cli]") {
  TempDir dir;
  const std::string model = dir.file("m.safetensors");
  REQUIRE(minidl_cli("train --epochs 1 --steps 2 --save " + model + " " + data_flag(), dir).status == 0);
  Checkpoint c = load_safetensors(model);
  c.tensors.at("dense/kernel").fill_(3e38f);  // finite weights whose products overflow
  save_safetensors(model, NamedTensors(c.tensors.begin(), c.tensors.end()), c.metadata);
  const Run e = minidl_cli("evaluate --model " + model, dir);
  CHECK(e.status == 3);
  CHECK_THAT(e.err, Catch::Contains("the model's output for sample 0 is") &&
                        Catch::Contains("the first non-finite value: the output of layer 'dense' (Dense)"));
  CHECK(e.out.empty());
  const Run p = minidl_cli("predict --json --first 3 --model " + model, dir);
  CHECK(p.status == 3);
  CHECK(p.out.empty());
}
