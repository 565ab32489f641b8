// Tests of `minidl compare` as a study: the grid of modes × batch sizes × seeds, equal steps, the long-format CSV,
// the JSON with every setting, the summary table and figures, the same results on one job or two, and the errors.
#include <nlohmann/json.hpp>

#include <map>
#include <sstream>

#include "cli_helpers.h"

using namespace minidl;
using minidl::test::data_flag;
using minidl::test::minidl_cli;
using minidl::test::read_bytes;
using minidl::test::Run;
using minidl::test::TempDir;

namespace {
using Row = std::map<std::string, std::string>;

// compare.csv as rows keyed by column name.
std::vector<Row> read_csv(const std::string& path, std::vector<std::string>* header = nullptr) {
  std::stringstream in(read_bytes(path));
  std::string line;
  std::getline(in, line);
  std::vector<std::string> names;
  std::stringstream h(line);
  for (std::string n; std::getline(h, n, ',');) names.push_back(n);
  if (header) *header = names;
  std::vector<Row> rows;
  while (std::getline(in, line)) {
    Row row;
    std::stringstream cells(line + ",");
    std::string cell;
    for (const std::string& n : names) std::getline(cells, cell, ','), row[n] = cell;
    rows.push_back(row);
  }
  return rows;
}

const Row& find(const std::vector<Row>& rows, const std::string& mode, int batch, int seed, int epoch) {
  for (const Row& r : rows)
    if (r.at("mode") == mode && r.at("batch_size") == std::to_string(batch) && r.at("seed") == std::to_string(seed) &&
        r.at("epoch") == std::to_string(epoch))
      return r;
  FAIL("no row for " << mode << " batch " << batch << " seed " << seed << " epoch " << epoch);
  throw;
}
}  // namespace

TEST_CASE("compare runs the grid: long-format CSV, numeric JSON with every setting, table and figures", "[cli][study]") {
  TempDir dir;
  const Run r = minidl_cli("compare --modes running,batchwise,manual,ghost --batch-sizes 8,32 --seeds 1,2 --epochs 2 "
                           "--recalibrate 0 --out " + dir.file("out") + " " + data_flag(),
                           dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  std::vector<std::string> header;
  const std::vector<Row> rows = read_csv(dir.file("out/compare.csv"), &header);
  CHECK(header == std::vector<std::string>{"mode", "bn_sync", "batch_size", "seed", "epoch", "steps", "seconds",
                                           "train_loss", "train_accuracy", "test_accuracy", "test_accuracy_recalibrated",
                                           "test_accuracy_batch_stats_32", "test_accuracy_batch_stats_1000",
                                           "train_test_gap", "moving_mean_gap", "moving_variance_gap",
                                           "recalibrated_mean_gap", "recalibrated_variance_gap"});
  REQUIRE(rows.size() == 4 * 2 * 2 * 2);  // one row per mode × batch size × seed × epoch
  for (const Row& row : rows)
    for (const auto& [name, value] : row) {
      if (name == "mode" || name == "bn_sync" || value.empty()) continue;
      INFO(name << " = '" << value << "'");
      size_t used = 0;
      std::stod(value, &used);
      CHECK(used == value.size());  // every metric is a number (or empty: not applicable, or not at this epoch)
    }
  // Manual mode has no moving statistics; gaps and recalibration come after the last epoch only.
  CHECK(find(rows, "manual", 8, 1, 2).at("test_accuracy").empty());
  CHECK_FALSE(find(rows, "manual", 8, 1, 2).at("test_accuracy_batch_stats_32").empty());
  CHECK(find(rows, "running", 8, 1, 1).at("moving_mean_gap").empty());
  CHECK_FALSE(find(rows, "running", 8, 1, 2).at("moving_mean_gap").empty());
  CHECK(find(rows, "running", 32, 2, 2).at("steps") == "40");  // 640 samples: 20 batches of 32 per epoch
  for (int batch : {8, 32})
    for (int seed : {1, 2}) {
      // Same seed, same initial weights and batches: running and batchwise differ only in their moving statistics,
      // and recalibration replaces those by the same population statistics.
      CHECK(find(rows, "running", batch, seed, 2).at("train_loss") == find(rows, "batchwise", batch, seed, 2).at("train_loss"));
      CHECK(find(rows, "running", batch, seed, 2).at("test_accuracy_recalibrated") ==
            find(rows, "batchwise", batch, seed, 2).at("test_accuracy_recalibrated"));
      CHECK(std::stod(find(rows, "running", batch, seed, 2).at("recalibrated_mean_gap")) < 1e-6);  // from all samples
    }
  // Ghost batches of 8 (the default) in a batch of 8 are plain batch normalisation: the same run as running's.
  CHECK(find(rows, "ghost", 8, 1, 2).at("train_loss") == find(rows, "running", 8, 1, 2).at("train_loss"));
  CHECK(find(rows, "ghost", 8, 1, 2).at("test_accuracy") == find(rows, "running", 8, 1, 2).at("test_accuracy"));
  CHECK(find(rows, "ghost", 32, 1, 2).at("train_loss") != find(rows, "running", 32, 1, 2).at("train_loss"));
  // Seeds differ.
  CHECK(find(rows, "running", 32, 1, 2).at("train_loss") != find(rows, "running", 32, 2, 2).at("train_loss"));

  const auto json = nlohmann::json::parse(read_bytes(dir.file("out/compare.json")));
  CHECK(json["minidl_version"].is_string());
  CHECK_FALSE(json["cpu"].get<std::string>().empty());
  const auto& settings = json["settings"];
  CHECK(settings["batch_sizes"] == nlohmann::json({8, 32}));
  CHECK(settings["seeds"] == nlohmann::json({1, 2}));
  CHECK(settings["modes"] == nlohmann::json({"running", "batchwise", "manual", "ghost"}));
  CHECK(settings["learning_rate"].get<double>() == Approx(0.001));
  CHECK(settings["recalibrate"] == 0);
  CHECK(settings["eval_batch_sizes"] == nlohmann::json({32, 1000}));
  CHECK(settings["data"]["data.train"].is_string());
  REQUIRE(json["summary"].size() == 8);
  const auto& first = json["summary"][0];
  CHECK(first["mode"] == "running");
  CHECK(first["test_accuracy"]["mean"].is_number());
  CHECK(first["test_accuracy"]["n"] == 2);
  CHECK(json["summary"][4]["test_accuracy"]["mean"].is_null());  // manual, batch 8
  REQUIRE(json["runs"].size() == 16);
  CHECK(json["runs"][0]["epochs"][1]["train_loss"].is_number());

  CHECK_THAT(r.out, Catch::Contains("±") && Catch::Contains("re-estimated") && Catch::Contains("batch@1000"));
  const std::string figure = read_bytes(dir.file("out/accuracy_vs_batch_size.svg"));
  CHECK(figure.rfind("<svg", 0) == 0);
  for (const char* text : {"training batch size", "test accuracy", ">running<", ">batchwise<", ">manual<", ">ghost<",
                           "inference: moving statistics", "stroke-dasharray=\"6 3\""})
    CHECK_THAT(figure, Catch::Contains(text));
  const std::string curves = read_bytes(dir.file("out/curves.svg"));
  CHECK_THAT(curves, Catch::Contains("batch size 8") && Catch::Contains("batch size 32") && Catch::Contains("training steps"));
}

TEST_CASE("compare --steps trains every batch size for the same steps, and one job or two give the same numbers", "[cli][study]") {
  TempDir dir;
  const std::string args = "compare --modes running,layer --batch-sizes 8,64 --steps 30 " + data_flag();
  const Run one = minidl_cli(args + " --jobs 1 --out " + dir.file("one"), dir);
  const Run two = minidl_cli(args + " --jobs 2 --out " + dir.file("two"), dir);
  INFO(one.err << two.err);
  REQUIRE(one.status == 0);
  REQUIRE(two.status == 0);
  const std::vector<Row> a = read_csv(dir.file("one/compare.csv")), b = read_csv(dir.file("two/compare.csv"));
  CHECK(find(a, "running", 8, 1, 1).at("steps") == "30");   // 80 batches per epoch: one partial epoch
  CHECK(find(a, "running", 64, 1, 3).at("steps") == "30");  // 10 per epoch: three epochs
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i)
    for (const auto& [name, value] : a[i])
      if (name != "seconds") CHECK(b[i].at(name) == value);
}

TEST_CASE("compare refuses a bad grid before training, naming the flag and the fix", "[cli][study]") {
  TempDir dir;
  const auto error_of = [&](const std::string& args) {
    const Run r = minidl_cli("compare " + args + " " + data_flag(), dir);
    CHECK(r.status == 1);
    CHECK(r.err.find("test accuracy") == std::string::npos);  // nothing trained
    return r.err;
  };
  CHECK_THAT(error_of("--modes running,instance"), Catch::Contains("unknown normalisation mode 'instance'"));
  CHECK_THAT(error_of("--batch-sizes 8,1000"), Catch::Contains("1000 is larger than the training set (640 samples)"));
  CHECK_THAT(error_of("--batch-sizes 8,,32"), Catch::Contains("--batch-sizes: an empty item"));
  CHECK_THAT(error_of("--batch-sizes 8,big"), Catch::Contains("--batch-sizes: expected whole numbers >= 1") &&
                                                  Catch::Contains("'big'"));
  CHECK_THAT(error_of("--modes ghost --batch-sizes 12"),
             Catch::Contains("mode ghost at batch size 12") && Catch::Contains("ghost batches of 8"));
  // Batch statistics in evaluation take each whole batch, ghost batches or not, and need two samples.
  CHECK_THAT(error_of("--modes ghost --batch-sizes 16 --eval-batch-sizes 1"), Catch::Contains("--eval-batch-sizes"));
  CHECK_THAT(error_of("--modes group --groups 5"), Catch::Contains("5 groups do not divide the 64 channels"));
  CHECK_THAT(error_of("--modes renorm --renorm-clipping rmax=0.5"), Catch::Contains("rmax must be >= 1"));
  CHECK_THAT(error_of("--modes running --renorm-clipping rmax=2"), Catch::Contains("applies to --norm renorm"));
  CHECK_THAT(error_of("--steps 0"), Catch::Contains("--steps must be >= 1"));
  CHECK_THAT(error_of("--modes frozen --batch-sizes 8,64 --steps 50"),
             Catch::Contains("mode frozen at batch size 8") && Catch::Contains("leaves no epoch of 1"));
  CHECK_THAT(error_of("--seed 2 --seeds 1,2"), Catch::Contains("--seed and --seeds exclude each other"));
  CHECK_THAT(error_of("--bn-sync global,local"), Catch::Contains("--bn-sync local") && Catch::Contains("mpirun -np N"));
  CHECK_THAT(error_of("--bn-sync everywhere"), Catch::Contains("--bn-sync: expected global, local or global,local"));
  CHECK_THAT(error_of("--bn-sync global,global"), Catch::Contains("each of global and local at most once"));
}

TEST_CASE("train takes every norm mode, and a variant's settings travel with its checkpoint", "[cli][study]") {
  TempDir dir;
  for (const char* args : {"--norm ghost --virtual-batch-size 16", "--norm renorm --renorm-clipping rmax=3,rmin=0.5,dmax=2",
                           "--norm layer", "--norm group --groups 8", "--norm frozen --freeze-epochs 1", "--norm rms",
                           "--model dense:64,relu,rmsnorm,dense:10,softmax"}) {
    const Run r = minidl_cli(std::string("train --epochs 2 ") + args + " --save " + dir.file("m") + " " + data_flag(), dir);
    INFO(args << "\n" << r.err);
    CHECK(r.status == 0);
    CHECK_THAT(r.out + r.err, Catch::Contains("epoch 2/2") && Catch::Contains("(step 40)"));
  }
  // The last checkpoint is frozen mode's; ghost's settings are refused when they differ on resume.
  const Run ghost = minidl_cli("train --epochs 1 --norm ghost --virtual-batch-size 16 --save " + dir.file("g") + " " + data_flag(), dir);
  REQUIRE(ghost.status == 0);
  const Run resumed = minidl_cli("train --epochs 2 --resume " + dir.file("g") + " --virtual-batch-size 8 " + data_flag(), dir);
  CHECK(resumed.status == 1);
  CHECK_THAT(resumed.err, Catch::Contains("--virtual-batch-size 8 differs from the checkpoint") && Catch::Contains("16"));
  const Run summary = minidl_cli("summary --model " + dir.file("g"), dir);
  CHECK_THAT(summary.out, Catch::Contains("virtual_batch_size=16"));
  // The kinds --help and summary list come from the registry.
  CHECK_THAT(minidl_cli("train --help", dir).out, Catch::Contains("frozen, rms") && Catch::Contains("[ghost]"));
  CHECK_THAT(minidl_cli("summary --norm rms " + data_flag(), dir).out,
             Catch::Contains("(norm rms,") && Catch::Contains("rms_normalization (RMSNormalization)"));
  const auto error_of = [&](const std::string& args) {
    const Run r = minidl_cli("train " + args + " " + data_flag(), dir);
    CHECK(r.status == 1);
    return r.err;
  };
  CHECK_THAT(error_of("--groups 4"), Catch::Contains("--groups applies to --norm group, not running"));
  CHECK_THAT(error_of("--norm frozen --epochs 2 --freeze-epochs 2"),
             Catch::Contains("--freeze-epochs 2 leaves no epoch of 2") && Catch::Contains("--epochs 3 or more"));
  CHECK_THAT(error_of("--norm frozen --epochs 1"), Catch::Contains("--freeze-epochs 1 leaves no epoch of 1"));
  CHECK_THAT(error_of("--norm ghost --batch-size 12"), Catch::Contains("ghost batches of 8") && Catch::Contains("batch size 12"));
  CHECK_THAT(error_of("--norm renorm --renorm-clipping rmax=2,bogus=1"), Catch::Contains("expected rmax=R"));
}
