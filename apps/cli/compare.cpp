// `minidl compare`: a normalisation study in one command. Every mode × batch size × seed of the grid trains
// from its seed's initial weights (the same in every mode), in parallel, one run per core; each run records per
// epoch its training loss and accuracy and its test accuracy with moving statistics and with batch statistics
// at each evaluation batch size, and at the end how far its moving statistics are from the population's and,
// with --recalibrate, the same after PreciseBN. Under mpirun each run is data-parallel over the processes, and
// --bn-sync global,local sets synchronised and per-process batch statistics side by side. The grid, running it and
// the reports are the library's (minidl/study.h); this file builds each run from the flags.
#include <nlohmann/json.hpp>
#include <omp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "cli.h"
#include "minidl/atomic_file.h"
#include "minidl/distributed.h"
#include "minidl/internal/text.h"
#include "minidl/statistics.h"
#include "settings.h"
#include "minidl/study.h"

namespace minidl::cli {
namespace {
template <class T>
std::vector<T> list_flag(const cxxopts::ParseResult& f, const char* flag, const std::function<T(const std::string&)>& parse) {
  std::vector<T> out;
  std::stringstream list(f[flag].as<std::string>());
  for (std::string item; std::getline(list, item, ',');) {
    if (item.empty()) fail("--", flag, ": an empty item in '", f[flag].as<std::string>(), "' (items are separated by single commas)");
    out.push_back(parse(item));
  }
  if (out.empty()) fail("--", flag, " is empty");
  return out;
}

int64_t whole(const char* flag, const std::string& item, int64_t min) {
  const std::optional<int64_t> v = internal::parse_integer(item);
  if (!v || *v < min) fail("--", flag, ": expected whole numbers >= ", min, " separated by commas, got '", item, "'");
  return *v;
}

// Steps in an epoch of a run with these settings.
int64_t batches_per_epoch(const RunConfig& c, const Dataset& train) {
  return std::max<int64_t>(1, c.drop_last ? train.size() / c.batch_size : (train.size() + c.batch_size - 1) / c.batch_size);
}

// compare's study: the grid, and the settings every run shares.
struct Compare {
  StudyGrid grid;
  StudyExecution execution;
  RunConfig base;  ///< model, lr, epochs, data: what every run shares
  bool fixed_threads = false;  ///< --threads given: every run's steps on threads_per_job; else its Trainer times the counts
};

// A run's settings: the study's, with its arm, batch size and seed; --steps fixes the steps whatever the batch.
RunConfig cell_config(const Compare& s, const Dataset& train, const StudyArm& arm, int64_t batch, uint64_t seed) {
  RunConfig c = s.base;
  c.model.norm = arm.mode;
  c.sync_batch_norm = arm.sync_batch_norm;
  c.model.seed = seed;
  c.batch_size = batch;
  if (s.grid.steps >= 0) {
    const int64_t per_epoch = batches_per_epoch(c, train);
    c.epochs = static_cast<int>(std::max<int64_t>(1, (s.grid.steps + per_epoch - 1) / per_epoch));
    c.max_steps = s.grid.steps;
  }
  return c;
}

// Test accuracy (or R²) with batch statistics at each size (evaluate's batch_statistics: frozen layers too normalise each
// test batch with its own statistics, and Dropout stays off).
std::vector<double> batch_statistics_accuracy(Sequential& model, const Dataset& test, const std::vector<int64_t>& sizes) {
  std::vector<double> out;
  for (int64_t b : sizes) out.push_back(evaluate(model, test, b, true).score());
  return out;
}

StudyRun run_cell(const Compare& s, const DatasetSplits& data, const StudyCell& cell, std::atomic<int64_t>& steps_done) {
  const auto start = std::chrono::steady_clock::now();
  StudyRun result{cell.arm, cell.batch_size, cell.seed, {}};
  Run run(cell_config(s, data.train, cell.arm, cell.batch_size, cell.seed), data);
  Sequential& model = *run.model;
  auto record = std::make_shared<LambdaCallback>();
  record->step_end = [&](Trainer&, const StepResult&) { steps_done.fetch_add(1, std::memory_order_relaxed); };
  record->epoch_end = [&](Trainer& trainer, const EpochLogs& e) {
    EpochMetrics m;
    m.epoch = e.epoch, m.steps = trainer.steps_done(), m.seconds = e.seconds;
    m.train_loss = e.loss, m.train_accuracy = e.regression ? NAN : e.accuracy;  // (no training R²)
    // Inference as deployed, unless the model normalises every batch by itself (manual mode: batch@N says it).
    if (for_each_module<MomentsNormalization>(model, [](MomentsNormalization&) {}) == 0)
      m.test_accuracy = e.regression ? e.val_r2 : e.val_accuracy;
    m.batch_stats_accuracy = batch_statistics_accuracy(model, data.test, s.grid.eval_batch_sizes);
    result.epochs.push_back(m);
  };
  run.trainer->add_callback(record);
  if (s.fixed_threads) run.trainer->options().threads = s.execution.threads_per_job;
  run.trainer->fit();
  EpochMetrics& last = result.epochs.back();
  if (has_moving_statistics(model)) {
    const StatisticsGap gap = moving_statistics_gap(model, population_statistics(model, data.train));
    last.mean_gap = gap.mean, last.variance_gap = gap.variance;
    if (s.grid.recalibrate >= 0) {
      recalibrate_batch_norm(model, data.train, s.grid.recalibrate, cell.seed);
      last.recalibrated_accuracy = evaluate(model, data.test, run.config.eval_batch_size, false).score();
      const StatisticsGap after = moving_statistics_gap(model, population_statistics(model, data.train));
      last.recalibrated_mean_gap = after.mean, last.recalibrated_variance_gap = after.variance;
    }
  }
  spdlog::info("{} batch {} seed {}: test {} {:.4f} ({:.1f} s)", s.grid.label(cell.arm), cell.batch_size, cell.seed,
               data.train.is_regression() ? "R²" : "accuracy",
               last.deployed_accuracy(), std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return result;
}

// Everything that can be checked before the first step: each mode and batch size builds and trains (a ghost
// batch that does not divide, too few groups), and each evaluation can run.
void check_grid(const Compare& s, const DatasetSplits& data) {
  for (int64_t batch : s.grid.batch_sizes)
    if (batch > data.train.size())
      fail("--batch-sizes: ", batch, " is larger than the training set (", data.train.size(),
           " samples): every step would see the same batch — choose batch sizes up to ", data.train.size());
  for (const StudyArm& arm : s.grid.arms())
    for (int64_t batch : s.grid.batch_sizes) {
      const std::string where = "mode " + s.grid.label(arm) + " at batch size " + std::to_string(batch);
      try {
        const RunConfig config = cell_config(s, data.train, arm, batch, s.grid.seeds.front());
        check_freeze_epochs(config);
        Run run(config, data);
        for (int64_t b : s.grid.eval_batch_sizes) check_evaluation(*run.model, data.test, b, true, "--eval-batch-sizes:");
      } catch (const Error& e) {
        fail("compare, ", where, ": ", e.what());
      }
    }
}

// Steps in all, for the progress line.
int64_t total_steps(const Compare& s, const Dataset& train) {
  int64_t total = 0;
  for (const StudyCell& c : study_cells(s.grid)) {
    const RunConfig config = cell_config(s, train, c.arm, c.batch_size, c.seed);
    total += s.grid.steps >= 0 ? s.grid.steps : batches_per_epoch(config, train) * config.epochs;
  }
  return total;
}

// What every run shares, for compare.json: the settings the flags gave, each kind's options as its runs used them.
std::string recipe_json(const Compare& s) {
  const RunConfig& b = s.base;
  nlohmann::ordered_json recipe = {
      {"model", b.model.description}, {"epochs", b.epochs}, {"learning_rate", b.learning_rate},
      {"lr_schedule", b.cosine_decay ? "cosine" : "constant"}, {"optimizer", "Adam (Keras defaults)"},
      {"epsilon", b.model.epsilon}, {"norm_options", nlohmann::ordered_json::object()},
      {"data", b.data.to_metadata()}, {"shuffle", b.shuffle}, {"drop_last", b.drop_last}};
  for (const std::string& m : s.grid.modes) {
    ModelConfig c = b.model;
    c.norm = m;
    recipe["norm_options"][m] = nlohmann::ordered_json::object();
    for (const NormOption& o : norm_kind(m).options) {
      const double v = c.norm_option(o.key);
      recipe["norm_options"][m][o.key] = std::isnan(v) ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(v);
    }
  }
  return recipe.dump();
}

// The footnote's sentence on data parallelism (empty in one process).
std::string parallel_note(const StudyGrid& s) {
  if (s.processes == 1) return "";
  return " Every run data-parallel on " + std::to_string(s.processes) + " processes, " +
         (s.bn_syncs.size() > 1 ? "/global: batch statistics over the global batch, /local: over each process's slice."
          : s.bn_syncs[0]       ? "batch statistics over the global batch."
                                : "batch statistics over each process's slice.");
}
}  // namespace

int compare_command(int argc, char** argv) {
  cxxopts::Options options("minidl compare",
                           "A normalisation study: every mode × batch size × seed trained from the same initial weights");
  options.add_options()("modes", "comma-separated modes", cxxopts::value<std::string>()->default_value("running,batchwise,manual,none"))(
      "batch-sizes", "comma-separated training batch sizes", cxxopts::value<std::string>())(
      "batch-size", "one training batch size (the same as --batch-sizes N)", cxxopts::value<int64_t>())(
      "seeds", "comma-separated seeds (default: --seed)", cxxopts::value<std::string>())(
      "steps", "train every run for exactly this many steps, whatever its batch size (overrides --epochs)",
      cxxopts::value<int64_t>())(
      "eval-batch-sizes", "test batch sizes for the accuracy with batch statistics",
      cxxopts::value<std::string>()->default_value("32,1000"))(
      "recalibrate", "after training, also re-estimate the moving statistics from this many training samples "
                     "(PreciseBN; 0: all) and report inference accuracy and gaps again",
      cxxopts::value<int64_t>())("jobs", "runs trained at once (default: one per core)", cxxopts::value<int>())(
      "bn-sync", "under mpirun: each mode's batch statistics over the global batch (global), each process's slice "
                 "(local), or both side by side (global,local)",
      cxxopts::value<std::string>()->default_value("global"))(
      "out", "write compare.csv, compare.json, accuracy_vs_batch_size.svg and curves.svg into this directory",
      cxxopts::value<std::string>());
  add_settings(options, {"epochs", "lr", "lr-schedule", "drop-last", "no-shuffle"});
  add_model_flags(options);
  add_common_flags(options);
  const auto f = parse_flags(options, argc, argv,
                             "minidl compare --batch-sizes 8,32,256 --seeds 1,2,3 --steps 2000 --recalibrate 4096 --out results");
  if (f.count("norm")) fail("compare trains every mode in --modes: give --modes instead of --norm");
  // Under mpirun the processes train each run together, one run after another; rank 0 alone logs and writes.
  Communicator& world = Communicator::world();
  const bool leader = world.rank() == 0;
  if (!leader) spdlog::set_level(spdlog::level::err);
  if (world.size() > 1 && f.count("jobs") && f["jobs"].as<int>() != 1)
    fail("--jobs ", f["jobs"].as<int>(), ": under mpirun the ", world.size(), " processes train each run together, "
         "one run at a time; leave --jobs out");
  if (f.count("batch-size") && f.count("batch-sizes")) fail("--batch-size and --batch-sizes exclude each other");
  if (f.count("seed") && f.count("seeds")) fail("--seed and --seeds exclude each other");
  Compare s;
  StudyGrid& g = s.grid;
  g.modes = list_flag<std::string>(f, "modes", [](const std::string& t) { return norm_kind(t).name; });
  g.batch_sizes = f.count("batch-sizes") ? list_flag<int64_t>(f, "batch-sizes", [](const std::string& t) { return whole("batch-sizes", t, 1); })
                                         : std::vector<int64_t>{setting<int64_t>(f, "batch-size")};
  g.seeds = f.count("seeds") ? list_flag<uint64_t>(f, "seeds", [](const std::string& t) { return static_cast<uint64_t>(whole("seeds", t, 0)); })
                             : std::vector<uint64_t>{setting<uint64_t>(f, "seed")};
  g.processes = world.size();
  g.bn_syncs = list_flag<bool>(f, "bn-sync", [](const std::string& t) {
    if (t != "global" && t != "local") fail("--bn-sync: expected global, local or global,local, got '", t, "'");
    return t == "global";
  });
  if (g.bn_syncs.size() > 2 || (g.bn_syncs.size() == 2 && g.bn_syncs[0] == g.bn_syncs[1]))
    fail("--bn-sync: each of global and local at most once, got '", f["bn-sync"].as<std::string>(), "'");
  if (g.processes == 1 && std::find(g.bn_syncs.begin(), g.bn_syncs.end(), false) != g.bn_syncs.end())
    fail("--bn-sync local: one process normalises over the whole batch, so local and global are the same; start "
         "compare under mpirun -np N to compare them");
  g.eval_batch_sizes = list_flag<int64_t>(f, "eval-batch-sizes", [](const std::string& t) { return whole("eval-batch-sizes", t, 1); });
  g.steps = f.count("steps") ? f["steps"].as<int64_t>() : -1;
  if (f.count("steps") && g.steps < 1) fail("--steps must be >= 1, got ", g.steps);
  g.recalibrate = f.count("recalibrate") ? f["recalibrate"].as<int64_t>() : -1;
  if (f.count("recalibrate") && g.recalibrate < 0) fail("--recalibrate must be >= 0 (0: all the training data), got ", g.recalibrate);
  const int given_threads = setting<int>(f, "threads");
  const int cores = omp_get_num_procs(), threads = given_threads > 0 ? given_threads : cores;
  const int64_t runs = static_cast<int64_t>(study_cells(g).size());
  StudyExecution& x = s.execution;
  s.fixed_threads = given_threads > 0;
  x.jobs = static_cast<int>(std::min<int64_t>(f.count("jobs") ? f["jobs"].as<int>() : cores, runs));
  if (f.count("jobs") && f["jobs"].as<int>() < 1) fail("--jobs must be >= 1, got ", f["jobs"].as<int>());
  x.threads_per_job = std::max(1, threads / x.jobs);
  if (g.processes > 1)  // one run at a time, with the threads mpirun gives each process (-x OMP_NUM_THREADS)
    x.jobs = 1, x.threads_per_job = given_threads > 0 ? given_threads : omp_get_max_threads(), x.serial = true;

  std::string dir;
  if (f.count("out") && leader) {  // before any training: a study must not be lost to an unwritable directory
    dir = f["out"].as<std::string>();
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) fail("--out '", dir, "': cannot create the directory: ", ec.message());
    for (const std::string& file : study_files()) check_writable(dir + "/" + file, "--out");
  }
  const DatasetSplits data = load_logged(data_spec_from_flags(f));
  g.score = data.train.is_regression() ? "r2" : "accuracy";
  s.base = run_config_from_flags(f, data.train);
  s.base.world = &world;
  s.base.eval_batch_size = g.eval_batch_sizes.front();
  warn_if_unscaled(s.base.model, data.train);
  check_grid(s, data);
  x.total_steps = total_steps(s, data.train);
  if (g.processes > 1)
    spdlog::info("compare: {} runs ({} modes × {} batch statistics × {} batch sizes × {} seeds), each data-parallel "
                 "on {} processes",
                 runs, g.modes.size(), g.bn_syncs.size(), g.batch_sizes.size(), g.seeds.size(), g.processes);
  else
    spdlog::info("compare: {} runs ({} modes × {} batch sizes × {} seeds), {} at a time with {} thread(s) each", runs,
                 g.modes.size(), g.batch_sizes.size(), g.seeds.size(), x.jobs, x.threads_per_job);
  const std::vector<StudyRun> results =
      run_study(g, x, [&](const StudyCell& cell, std::atomic<int64_t>& steps) { return run_cell(s, data, cell, steps); });
  if (!leader) return 0;
  std::printf("%s", study_table(g, results).c_str());
  const char* scored = g.score == "r2" ? "R²" : "accuracy";
  std::printf("\n%s; %s; mean ± sd over seeds %s of the last epoch. moving: test %s in inference mode (moving "
              "statistics; n/a in manual mode, which has none). batch@N: each test batch of N normalised with its own "
              "statistics. train-test: training %s minus test %s as deployed%s. Gaps: relative L2 distance "
              "between the moving statistics and those of the whole training set.%s%s\n",
              s.base.model.description.c_str(),
              g.steps >= 0 ? (std::to_string(g.steps) + " steps per run").c_str()
                           : (std::to_string(s.base.epochs) + " epochs per run").c_str(),
              f.count("seeds") ? f["seeds"].as<std::string>().c_str() : std::to_string(g.seeds.front()).c_str(), scored,
              scored, scored, g.score == "r2" ? " (n/a: regression has no training R²)" : "",
              g.recalibrate >= 0 ? " re-estimated: after PreciseBN from the training samples --recalibrate names." : "",
              parallel_note(g).c_str());
  if (!dir.empty()) {
    write_study(dir, g, results, x, recipe_json(s));
    spdlog::info("wrote {}/{}", dir, internal::join(study_files(), ", "));
  }
  return 0;
}

}  // namespace minidl::cli
