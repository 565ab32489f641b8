// Tests of the study: the library's grid, statistics, runner and reports called directly, then `minidl compare` —
// modes × batch sizes × seeds, equal steps, the long-format CSV, the JSON with every setting, the summary table
// and figures, the same results on one job or two, and the errors.
#include <nlohmann/json.hpp>

#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "cli_helpers.h"
#include "minidl/study.h"

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

namespace {
// A grid of two modes × two batch sizes × two seeds, each run two epochs, with made-up metrics: accuracy
// 0.8 + 0.01·seed (+ 0.05 at batch 32), manual without moving statistics.
StudyGrid small_grid() {
  StudyGrid g;
  g.modes = {"running", "manual"};
  g.batch_sizes = {8, 32};
  g.eval_batch_sizes = {16};
  g.seeds = {1, 2};
  return g;
}

StudyRun made_up(const StudyCell& c) {
  StudyRun r{c.arm, c.batch_size, c.seed, {}};
  for (int e = 1; e <= 2; ++e) {
    EpochMetrics m;
    m.epoch = e, m.steps = 10 * e, m.seconds = 0.5, m.train_loss = 1.0 / e, m.train_accuracy = 0.9;
    const double accuracy = 0.8 + 0.01 * static_cast<double>(c.seed) + (c.batch_size == 32 ? 0.05 : 0.0);
    if (c.arm.mode == "running") m.test_accuracy = accuracy, m.mean_gap = 0.1, m.variance_gap = 0.2;
    m.batch_stats_accuracy = {accuracy - 0.02};
    r.epochs.push_back(m);
  }
  return r;
}
}  // namespace

TEST_CASE("study statistics: mean and sample sd over the numbers, NaN when there are none", "[study]") {
  const MeanSd m = mean_sd({1.0, 2.0, 3.0, NAN});
  CHECK(m.n == 3);
  CHECK(m.mean == 2.0);
  CHECK(m.sd == 1.0);
  CHECK(mean_sd({0.5}).sd == 0.0);
  CHECK(std::isnan(mean_sd({NAN}).mean));
  CHECK(mean_sd({}).n == 0);
}

TEST_CASE("study grid: cells in arm, batch, seed order, which run_study keeps on two jobs, and its rethrow",
          "[study]") {
  StudyGrid g = small_grid();
  g.bn_syncs = {true, false};
  const std::vector<StudyCell> cells = study_cells(g);
  REQUIRE(cells.size() == 16);
  CHECK(cells[0].arm.mode == "running");
  CHECK(cells[0].arm.sync_batch_norm);
  CHECK(cells[4].arm.mode == "running");
  CHECK(!cells[4].arm.sync_batch_norm);
  CHECK((cells[5].batch_size == 8 && cells[5].seed == 2));
  CHECK(cells[8].arm.mode == "manual");
  CHECK(g.label(cells[4].arm) == "running/local");
  CHECK(small_grid().label(cells[4].arm) == "running");
  for (const int jobs : {1, 2}) {
    // Later cells finish first: the results still come back in cell order.
    const std::vector<StudyRun> results = run_study(g, {.jobs = jobs}, [&](const StudyCell& c, std::atomic<int64_t>& steps) {
      std::this_thread::sleep_for(std::chrono::milliseconds(c.seed == 1 ? 20 : 1));
      steps += 10;
      return made_up(c);
    });
    REQUIRE(results.size() == cells.size());
    for (size_t i = 0; i < cells.size(); ++i) {
      CHECK(results[i].arm.mode == cells[i].arm.mode);
      CHECK(results[i].arm.sync_batch_norm == cells[i].arm.sync_batch_norm);
      CHECK(results[i].batch_size == cells[i].batch_size);
      CHECK(results[i].seed == cells[i].seed);
    }
  }
  std::atomic<int> started{0};
  CHECK_THROWS_WITH(run_study(g, {.serial = true},
                              [&](const StudyCell& c, std::atomic<int64_t>&) -> StudyRun {
                                ++started;
                                if (c.seed == 2) throw std::runtime_error("run failed");
                                return made_up(c);
                              }),
                    "run failed");
  CHECK(started == 2);  // no cell starts after the failure
}

TEST_CASE("study reports: the table, the CSV, the JSON and the figures from the runs", "[study]") {
  const StudyGrid g = small_grid();
  std::vector<StudyRun> results;
  for (const StudyCell& c : study_cells(g)) results.push_back(made_up(c));
  // The table: mean ± sd over the two seeds of the last epoch; n/a where a mode has no moving statistics.
  const std::string table = study_table(g, results);
  CHECK_THAT(table, Catch::Contains("moving") && Catch::Contains("batch@16") && Catch::Contains("train-test"));
  CHECK_THAT(table, Catch::Contains("running  8      0.8150±0.0071  0.7950±0.0071"));
  CHECK_THAT(table, Catch::Contains("manual   32     n/a            0.8450±0.0071"));
  CHECK_THAT(table, Catch::Contains("10.0±0.0%"));  // the mean gap, in percent
  // The CSV: a row per run and epoch, empty where a metric does not apply.
  std::stringstream csv(study_csv(g, results));
  std::string header, first;
  std::getline(csv, header);
  std::getline(csv, first);
  CHECK(header == "mode,bn_sync,batch_size,seed,epoch,steps,seconds,train_loss,train_accuracy,test_accuracy,"
                  "test_accuracy_batch_stats_16,train_test_gap,moving_mean_gap,moving_variance_gap");
  CHECK(first == "running,global,8,1,1,10,0.5,1,0.9,0.81,0.79,0.09,0.1,0.2");
  int rows = 1;
  for (std::string line; std::getline(csv, line);) ++rows;
  CHECK(rows == 16);
  // The JSON: the recipe with the grid's settings merged in, the summary with numbers and nulls, every run.
  const auto json = nlohmann::json::parse(study_json(g, results, {.jobs = 2, .threads_per_job = 1}, R"({"model": "m"})"));
  CHECK(json["settings"]["model"] == "m");
  CHECK(json["settings"]["batch_sizes"] == nlohmann::json({8, 32}));
  CHECK(json["settings"]["recalibrate"].is_null());
  CHECK(json["jobs"] == 2);
  CHECK(json["summary"][0]["test_accuracy"]["mean"].get<double>() == Approx(0.815));
  CHECK(json["summary"][0]["test_accuracy"]["n"] == 2);
  CHECK(json["summary"][2]["test_accuracy"]["mean"].is_null());  // manual
  CHECK(json["runs"].size() == 8);
  CHECK_THROWS_WITH(study_json(g, results, {}, "[1]"), Catch::Contains("must be a JSON object"));
  // The figures: one panel per way of evaluating, one per batch size; a line per mode.
  const std::string by_batch = study_batch_size_figure(g, results), curves = study_curves_figure(g, results);
  CHECK_THAT(by_batch, Catch::StartsWith("<svg") && Catch::Contains("inference: moving statistics") &&
                           Catch::Contains("batch statistics, test batches of 16") && Catch::Contains(">manual<"));
  CHECK_THAT(curves, Catch::Contains("batch size 8") && Catch::Contains("batch size 32") && Catch::Contains("training steps"));
}

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
    const Run r = minidl_cli(std::string("train --epochs 2 --overwrite ") + args + " --save " + dir.file("m") + " " + data_flag(), dir);
    INFO(args << "\n" << r.err);
    CHECK(r.status == 0);
    CHECK_THAT(r.out + r.err, Catch::Contains("epoch 2/2") && Catch::Contains("(step 40)"));
    // The checkpoint evaluates, from the file alone, to the last epoch's test accuracy.
    const Run e = minidl_cli("evaluate --model " + dir.file("m") + " --json", dir);
    CHECK(e.status == 0);
    const std::string logged = r.out.substr(r.out.rfind("test_accuracy ") + 14, 6);
    CHECK(nlohmann::json::parse(e.out)["accuracy"].get<double>() == Approx(std::stod(logged)).margin(1e-4));
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
