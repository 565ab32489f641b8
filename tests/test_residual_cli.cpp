// Tests of residual networks on the command line: training, exact resume, --norm inside blocks and shortcuts,
// evaluate, summary and predict of a checkpoint that holds nothing but its description and weights.
#include "cli_helpers.h"
#include "minidl/checkpoint.h"

using namespace minidl;
using minidl::test::data_flag;
using minidl::test::minidl_cli;
using minidl::test::read_bytes;
using minidl::test::Run;
using minidl::test::TempDir;

namespace {
constexpr const char* kResNet =
    "conv:4x3:padding=same,bn,relu,residual(conv:4x3:padding=same,bn,relu,conv:4x3:padding=same,bn),relu,"
    "residual(conv:8x3:strides=2:padding=same,bn,relu,conv:8x3:padding=same,bn),relu,gap,dense:10,softmax";
}  // namespace

TEST_CASE("a residual network trains, resumes bit for bit and is evaluated from its checkpoint alone", "[cli][residual]") {
  TempDir dir;
  // Quoted: parentheses are the shell's too.
  const std::string common = std::string("train --overwrite --epochs 2 --model '") + kResNet + "' " + data_flag();
  minidl::test::require_exact_resume(common, 25, dir);
  const Checkpoint c = load_safetensors(dir.file("straight"));
  CHECK(c.tensors.count("conv2d_5/kernel") == 1);  // the projection, named in the model's namespace
  CHECK(c.tensors.count("batch_normalization_5/moving_mean") == 1);
  const Run evaluated = minidl_cli("evaluate --model " + dir.file("straight") + " " + data_flag(), dir);
  CHECK(evaluated.status == 0);
  CHECK_THAT(evaluated.out, Catch::Contains("test_accuracy"));
  const Run summary = minidl_cli("summary " + dir.file("straight"), dir);
  CHECK_THAT(summary.out, Catch::Contains(" add_1 (Residual)") && Catch::Contains("   + conv2d_5 (Conv2D)"));
  const Run recalibrated = minidl_cli("recalibrate --model " + dir.file("straight") + " --out " + dir.file("precise") +
                                          " --samples 200 " + data_flag(), dir);
  CHECK_THAT(recalibrated.err, Catch::Contains("recalibrated 6 BatchNormalization layers"));
}

TEST_CASE("every bn of a residual network follows --norm, the projections too", "[cli][residual]") {
  TempDir dir;
  for (const std::string norm : {"none", "layer", "group", "rms"}) {
    INFO("--norm " << norm);
    const std::string groups = norm == "group" ? " --groups 2" : "";  // 4 channels: Keras's 32 groups do not divide them
    const Run r = minidl_cli(std::string("train --overwrite --epochs 1 --steps 10 --model '") + kResNet + "' --norm " + norm +
                                 groups + " --save " + dir.file(norm) + " " + data_flag(), dir);
    INFO(r.err);
    REQUIRE(r.status == 0);
    const Checkpoint c = load_safetensors(dir.file(norm));
    int batch_norms = 0;
    for (const auto& [name, t] : c.tensors) batch_norms += name.find("batch_normalization") != std::string::npos;
    CHECK(batch_norms == 0);
    if (norm == "none") CHECK(c.tensors.count("conv2d_5/bias") == 1);  // nothing normalises the projection
    else CHECK(c.tensors.size() > 14);  // each of the 6 bn became a layer with weights of its own
  }
}
