// Tests of the training-recipe flags of `minidl train`: --optimizer adam|adamw|sgd with --weight-decay,
// --sgd-momentum and --nesterov, --warmup-epochs, --label-smoothing, --clip-norm and --early-stopping — what each
// run records, exact resume, and the refusals of bad values.
#include <algorithm>

#include "cli_helpers.h"
#include "minidl/checkpoint.h"

using namespace minidl;
using minidl::test::data_flag;
using minidl::test::minidl_cli;
using minidl::test::read_bytes;
using minidl::test::Run;
using minidl::test::TempDir;

TEST_CASE("train --optimizer sgd with Nesterov momentum and weight decay resumes bit for bit", "[cli][recipes]") {
  TempDir dir;
  const std::string common = "train --overwrite --epochs 3 --optimizer sgd --sgd-momentum 0.9 --nesterov --weight-decay 0.01 " +
                             data_flag();
  REQUIRE(minidl_cli(common + " --steps 30 --save " + dir.file("straight"), dir).status == 0);
  REQUIRE(minidl_cli(common + " --steps 12 --save " + dir.file("half"), dir).status == 0);
  // Resumed without the optimizer flags: the checkpoint's optimizer, its velocity and its settings.
  const Run resumed = minidl_cli("train --overwrite --resume " + dir.file("half") + " --steps 30 --save " + dir.file("resumed") +
                                     " " + data_flag(), dir);
  INFO(resumed.err);
  REQUIRE(resumed.status == 0);
  CHECK(read_bytes(dir.file("resumed")) == read_bytes(dir.file("straight")));
  const Checkpoint c = load_safetensors(dir.file("straight"));
  CHECK(c.metadata.at("optimizer.name") == "sgd");
  CHECK(c.metadata.at("optimizer.momentum") == "0.9");
  CHECK(c.metadata.at("optimizer.nesterov") == "1");
  CHECK(c.metadata.at("optimizer.weight_decay") == "0.01");
  CHECK(c.metadata.at("train.initial_learning_rate") == "0.01");  // Keras's SGD default, --lr unsaid
  CHECK(c.tensors.count("optimizer/velocity/dense/kernel") == 1);

  const Run other = minidl_cli("train --resume " + dir.file("half") + " --optimizer adam " + data_flag(), dir);
  CHECK(other.status == 1);
  CHECK_THAT(other.err, Catch::Contains("--optimizer adam differs from the checkpoint") && Catch::Contains("trained with sgd"));
  const Run decay = minidl_cli("train --resume " + dir.file("half") + " --weight-decay 0.02 " + data_flag(), dir);
  CHECK(decay.status == 1);
  CHECK_THAT(decay.err, Catch::Contains("--weight-decay 0.02 differs from the checkpoint"));
}

TEST_CASE("train --optimizer adamw decays by Keras's 0.004 unless told — and differs from adam by exactly that", "[cli][recipes]") {
  TempDir dir;
  const std::string common = "train --overwrite --epochs 1 --steps 10 " + data_flag();
  REQUIRE(minidl_cli(common + " --optimizer adamw --save " + dir.file("adamw"), dir).status == 0);
  REQUIRE(minidl_cli(common + " --optimizer adam --weight-decay 0.004 --save " + dir.file("adam-wd"), dir).status == 0);
  REQUIRE(minidl_cli(common + " --save " + dir.file("adam"), dir).status == 0);
  const Checkpoint adamw = load_safetensors(dir.file("adamw")), adam_wd = load_safetensors(dir.file("adam-wd")),
                   adam = load_safetensors(dir.file("adam"));
  CHECK(adamw.metadata.at("optimizer.name") == "adamw");
  CHECK(adamw.metadata.at("optimizer.weight_decay") == "0.004");
  CHECK(adam.metadata.count("optimizer.weight_decay") == 0);
  // AdamW is Adam with decay: the same weights as adam --weight-decay 0.004, and not the same as plain adam.
  CHECK(adamw.tensors.at("dense/kernel").values()[0] == adam_wd.tensors.at("dense/kernel").values()[0]);
  CHECK(read_bytes(dir.file("adamw")) != read_bytes(dir.file("adam")));
}

TEST_CASE("bad optimizer flags are refused by name before training", "[cli][recipes]") {
  TempDir dir;
  const auto refused = [&](const std::string& flags, const std::string& words) {
    const Run r = minidl_cli("train --epochs 1 --steps 1 " + flags + " " + data_flag(), dir);
    INFO(flags << ": " << r.err);
    CHECK(r.status == 1);
    CHECK_THAT(r.err, Catch::Contains(words));
    CHECK_THAT(r.err, !Catch::Contains("epoch 1/1"));
  };
  refused("--optimizer rmsprop", "--optimizer must be adam, adamw or sgd, got 'rmsprop'");
  refused("--sgd-momentum 0.9", "--sgd-momentum applies to --optimizer sgd, not adam");
  refused("--optimizer adamw --nesterov", "--nesterov applies to --optimizer sgd, not adamw");
  refused("--optimizer sgd --nesterov", "--nesterov needs momentum: give --sgd-momentum above 0");
  refused("--optimizer sgd --sgd-momentum 1.5", "--sgd-momentum must be a number in [0, 1], got 1.5");
  refused("--weight-decay -0.1", "--weight-decay must be a number in [0, 1000000], got -0.1");
}

TEST_CASE("train --warmup-epochs, --label-smoothing and --clip-norm are recorded and resume bit for bit", "[cli][recipes]") {
  TempDir dir;
  const std::string common = "train --overwrite --epochs 3 --lr-schedule cosine --warmup-epochs 0.5 --label-smoothing 0.1 "
                             "--clip-norm 0.5 " + data_flag();
  minidl::test::require_exact_resume(common, 25, dir);  // stopped after the warm-up's 10 steps, in the cosine
  const Checkpoint c = load_safetensors(dir.file("straight"));
  CHECK(c.metadata.at("train.warmup_epochs") == "0.5");
  CHECK(c.metadata.at("train.label_smoothing") == "0.1");
  CHECK(c.metadata.at("optimizer.global_clipnorm") == "0.5");
  // Each changes the result (640 samples, batch 32: the warm-up is 10 steps of the 60).
  for (const std::string without : {"--warmup-epochs 0.5", "--label-smoothing 0.1", "--clip-norm 0.5"}) {
    std::string flags = common;
    flags.erase(flags.find(without), without.size());
    REQUIRE(minidl_cli(flags + " --save " + dir.file("other"), dir).status == 0);
    INFO("without " << without);
    CHECK(read_bytes(dir.file("other")) != read_bytes(dir.file("straight")));
  }
  const Run changed = minidl_cli("train --resume " + dir.file("half") + " --clip-norm 1 " + data_flag(), dir);
  CHECK(changed.status == 1);
  CHECK_THAT(changed.err, Catch::Contains("--clip-norm 1 differs from the checkpoint"));
}

TEST_CASE("train --early-stopping stops on the test loss, and its checkpoint stays stopped unless given more patience",
          "[cli][recipes]") {
  TempDir dir;
  // A learning rate this high makes the test loss stop improving within a few epochs.
  const std::string common = "train --overwrite --epochs 40 --lr 0.05 --early-stopping 2 --log " + dir.file("log") + " " + data_flag();
  const Run stopped = minidl_cli(common + " --save " + dir.file("c"), dir);
  INFO(stopped.err);
  REQUIRE(stopped.status == 0);
  CHECK_THAT(stopped.err, Catch::Contains("stopped early after epoch") && Catch::Contains("(--early-stopping 2)"));
  const std::string log = read_bytes(dir.file("log"));
  const auto epochs = static_cast<int>(std::count(log.begin(), log.end(), '\n'));
  CHECK(epochs < 40);
  CHECK_THAT(stopped.err, Catch::Contains("after epoch " + std::to_string(epochs) + ":"));
  const Checkpoint c = load_safetensors(dir.file("c"));
  CHECK(c.metadata.at("train.early_stopping_patience") == "2");
  CHECK(c.metadata.at("early_stopping.wait") == "2");
  // The same command resumed trains nothing more; more patience trains on.
  const Run again = minidl_cli("train --resume " + dir.file("c") + " --early-stopping 2 " + data_flag(), dir);
  CHECK(again.status == 0);
  CHECK_THAT(again.err, Catch::Contains("the run had stopped early after epoch " + std::to_string(epochs)));
  CHECK(load_safetensors(dir.file("c")).metadata.at("trainer.step") == c.metadata.at("trainer.step"));
  const Run patient = minidl_cli("train --resume " + dir.file("c") + " --early-stopping 3 --json " + data_flag(), dir);
  CHECK(patient.status == 0);
  CHECK_THAT(patient.out, Catch::Contains("\"epoch\":" + std::to_string(epochs + 1) + ","));
}

TEST_CASE("bad recipe flags are refused by name before training", "[cli][recipes]") {
  TempDir dir;
  const auto refused = [&](const std::string& flags, const std::string& words) {
    const Run r = minidl_cli("train --epochs 2 --steps 1 " + flags + " " + data_flag(), dir);
    INFO(flags << ": " << r.err);
    CHECK(r.status == 1);
    CHECK_THAT(r.err, Catch::Contains(words));
    CHECK_THAT(r.err, !Catch::Contains("epoch 1/"));
  };
  refused("--label-smoothing 1.5", "--label-smoothing must be a number in [0, 1], got 1.5");
  refused("--label-smoothing -0.1", "--label-smoothing must be a number in [0, 1], got -0.1");
  refused("--model dense:1 --loss mse --label-smoothing 0.1", "--label-smoothing applies to class labels");
  refused("--clip-norm 0", "--clip-norm must be > 0 (the largest global norm the gradients keep; leave the flag out");
  refused("--clip-norm -2", "--clip-norm must be > 0");
  refused("--early-stopping 0", "--early-stopping must be a whole number in [1, 1073741824], got 0");
  refused("--warmup-epochs 2", "--warmup-epochs 2 is 40 steps, and the run has 40 (--epochs 2)");
  refused("--warmup-epochs 0.01", "--warmup-epochs 0.01 is less than half a step (20 steps an epoch)");
  refused("--warmup-epochs -1", "--warmup-epochs must be a number in [0, 1000000], got -1");
}
