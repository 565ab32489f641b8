// `minidl compare`: the same initial weights trained under every normalisation mode, one table side by side:
// what each mode scores at inference, with batch statistics, and how far its moving statistics are from the
// statistics of the whole training set; with --recalibrate N, the same after PreciseBN. --out adds CSV, JSON and
// an SVG of the learning curves.
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "cli.h"
#include "minidl/atomic_file.h"
#include "minidl/statistics.h"
#include "plot.h"

namespace minidl::cli {
namespace {
struct ModeResult {
  NormMode mode;
  std::vector<EpochLogs> history;
  std::vector<double> test_accuracy;  // per epoch, inference mode
  Evaluation inference, batch_1000, batch_32;
  double mean_gap = NAN, variance_gap = NAN;  // relative L2 distance of the moving statistics, or NaN
  // After recalibrate_batch_norm (--recalibrate): inference accuracy and the gaps; NaN without moving statistics.
  double recalibrated_accuracy = NAN, recalibrated_mean_gap = NAN, recalibrated_variance_gap = NAN;
  double seconds_per_epoch = 0.0;             // median
};

// The evaluations every mode ends with: inference at batch 32, batch statistics at 1000 and at 32.
constexpr std::array<std::pair<int64_t, bool>, 3> kEvaluations = {{{32, false}, {1000, true}, {32, true}}};

// Builds a mode's run and checks, before any mode trains, that its final evaluations can run.
std::unique_ptr<Run> prepare_mode(NormMode mode, RunConfig config, const DatasetSplits& data) {
  config.model.norm = mode;
  auto run = std::make_unique<Run>(config, data);  // same seed: the same initial weights in every mode
  for (const auto& [batch, statistics] : kEvaluations)
    check_evaluation(*run->model, data.test, batch, statistics,
                     "compare's evaluation of mode " + to_string(mode) + " at batch size");
  return run;
}

// Trains one mode and evaluates it; recalibrate >= 0 adds PreciseBN from that many training samples (0: all).
ModeResult run_mode(NormMode mode, Run& run, const DatasetSplits& data, int64_t recalibrate) {
  ModeResult result{mode, {}, {}, {}, {}, {}};
  run.trainer->add_callback(std::make_shared<ProgressBar>(to_string(mode)));
  auto log = std::make_shared<LambdaCallback>();
  log->epoch_end = [&](Trainer&, const EpochLogs& e) {
    result.test_accuracy.push_back(e.val_accuracy);
    spdlog::info("{} epoch {}: loss {:.4f} accuracy {:.4f} test_accuracy {:.4f} ({:.2f} s)", to_string(mode), e.epoch,
                 e.loss, e.accuracy, e.val_accuracy, e.seconds);
  };
  run.trainer->add_callback(log);
  result.history = run.trainer->fit();
  Sequential& model = *run.model;
  result.inference = evaluate(model, data.test, kEvaluations[0].first, kEvaluations[0].second);
  result.batch_1000 = evaluate(model, data.test, kEvaluations[1].first, kEvaluations[1].second);
  result.batch_32 = evaluate(model, data.test, kEvaluations[2].first, kEvaluations[2].second);
  const StatisticsGap gap = moving_statistics_gap(model, population_statistics(model, data.train));
  result.mean_gap = gap.mean;
  result.variance_gap = gap.variance;
  if (recalibrate >= 0 && has_moving_statistics(model)) {
    recalibrate_batch_norm(model, data.train, recalibrate, run.config.model.seed);
    result.recalibrated_accuracy = evaluate(model, data.test, kEvaluations[0].first, false).accuracy;
    const StatisticsGap after = moving_statistics_gap(model, population_statistics(model, data.train));
    result.recalibrated_mean_gap = after.mean;
    result.recalibrated_variance_gap = after.variance;
  }
  std::vector<double> seconds;
  for (const auto& e : result.history) seconds.push_back(e.seconds);
  std::sort(seconds.begin(), seconds.end());
  result.seconds_per_epoch = seconds.empty() ? 0.0 : seconds[seconds.size() / 2];
  return result;
}

std::string percent(double v) {
  if (std::isnan(v)) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", 100.0 * v);
  return buf;
}

std::string fixed(double v, int digits = 4) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// The columns of the table and the CSV; --recalibrate adds the last three.
std::vector<std::string> columns(bool recalibrated) {
  std::vector<std::string> c = {"mode", "train_loss", "train_accuracy", "test_accuracy_inference",
                                "test_accuracy_batch_stats_1000", "test_accuracy_batch_stats_32",
                                "moving_mean_gap", "moving_variance_gap", "seconds_per_epoch"};
  if (recalibrated)
    c.insert(c.end(), {"test_accuracy_recalibrated", "recalibrated_mean_gap", "recalibrated_variance_gap"});
  return c;
}

std::vector<std::string> row(const ModeResult& r, bool recalibrated) {
  // Manual mode has no inference statistics: its "inference" is batch statistics at 32, shown as such.
  const bool manual = r.mode == NormMode::manual;
  std::vector<std::string> cells = {to_string(r.mode), fixed(r.history.back().loss), fixed(r.history.back().accuracy),
                                    manual ? "n/a" : fixed(r.inference.accuracy), fixed(r.batch_1000.accuracy),
                                    fixed(r.batch_32.accuracy), percent(r.mean_gap), percent(r.variance_gap),
                                    fixed(r.seconds_per_epoch, 2)};
  if (recalibrated)
    cells.insert(cells.end(), {std::isnan(r.recalibrated_accuracy) ? "n/a" : fixed(r.recalibrated_accuracy),
                               percent(r.recalibrated_mean_gap), percent(r.recalibrated_variance_gap)});
  return cells;
}

std::string table(const std::vector<ModeResult>& results, bool recalibrated) {
  std::vector<std::string> header = {"mode", "train loss", "train acc", "test acc", "test acc", "test acc",
                                     "moving mean", "moving var", "s/epoch"};
  std::vector<std::string> header2 = {"", "", "", "inference", "batch stats", "batch stats", "gap", "gap", ""};
  std::vector<std::string> header3 = {"", "", "", "", "@1000", "@32", "", "", ""};
  if (recalibrated) {
    header.insert(header.end(), {"test acc", "recal. mean", "recal. var"});
    header2.insert(header2.end(), {"recalibrated", "gap", "gap"});
    header3.insert(header3.end(), {"", "", ""});
  }
  std::ostringstream out;
  const auto line = [&](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size(); ++i) out << (i ? "  " : "") << cells[i] << std::string(12 - std::min<size_t>(12, cells[i].size()), ' ');
    out << '\n';
  };
  line(header);
  line(header2);
  line(header3);
  for (const auto& r : results) line(row(r, recalibrated));
  return out.str();
}

void write_outputs(const std::string& dir, const std::vector<ModeResult>& results, const RunConfig& config,
                   bool recalibrated) {
  std::filesystem::create_directories(dir);
  const std::vector<std::string> names = columns(recalibrated);
  std::string csv;
  for (size_t i = 0; i < names.size(); ++i) csv += (i ? "," : "") + names[i];
  csv += '\n';
  nlohmann::ordered_json json = {{"epochs", config.epochs},
                                 {"batch_size", config.batch_size},
                                 {"model", config.model.description},
                                 {"seed", config.model.seed},
                                 {"modes", nlohmann::json::array()}};
  std::vector<Series> loss, accuracy;
  for (const auto& r : results) {
    const auto cells = row(r, recalibrated);
    for (size_t i = 0; i < cells.size(); ++i) csv += (i ? "," : "") + cells[i];
    csv += '\n';
    nlohmann::ordered_json mode;
    for (size_t i = 0; i < cells.size(); ++i) mode[names[i]] = cells[i];
    Series l{to_string(r.mode), {}}, a{to_string(r.mode), r.test_accuracy};
    for (size_t i = 0; i < r.history.size(); ++i) {
      const EpochLogs& e = r.history[i];
      l.values.push_back(e.loss);
      mode["curve"].push_back({{"epoch", e.epoch}, {"loss", e.loss}, {"accuracy", e.accuracy},
                               {"test_accuracy", r.test_accuracy[i]}, {"seconds", e.seconds}});
    }
    json["modes"].push_back(mode);
    loss.push_back(l);
    accuracy.push_back(a);
  }
  write_text_atomically(dir + "/compare.csv", csv);
  write_text_atomically(dir + "/compare.json", json.dump(2) + "\n");
  write_text_atomically(dir + "/curves.svg", svg_plot({{"training loss", loss}, {"test accuracy (inference)", accuracy}}));
  spdlog::info("wrote {}/compare.csv, compare.json, curves.svg", dir);
}
}  // namespace

int compare_command(int argc, char** argv) {
  cxxopts::Options options("minidl compare", "Train every normalisation mode from the same initial weights");
  options.add_options()("epochs", "epochs per mode", cxxopts::value<int>()->default_value("5"))(
      "batch-size", "training batch size", cxxopts::value<int64_t>()->default_value("32"))(
      "lr", "Adam learning rate", cxxopts::value<float>()->default_value("0.001"))(
      "modes", "comma-separated modes to compare", cxxopts::value<std::string>()->default_value("running,batchwise,manual,none"))(
      "out", "write compare.csv, compare.json and curves.svg into this directory", cxxopts::value<std::string>())(
      "recalibrate", "after training, also re-estimate each mode's moving statistics from this many training "
                     "samples (PreciseBN; 0: all) and report inference accuracy and gaps again",
      cxxopts::value<int64_t>());
  add_model_flags(options);
  add_common_flags(options);
  const auto f = parse_flags(options, argc, argv, "minidl compare --epochs 5 --out results");
  apply_threads(f);
  std::vector<NormMode> modes;
  std::stringstream list(f["modes"].as<std::string>());
  for (std::string item; std::getline(list, item, ',');) modes.push_back(parse_norm_mode(item));
  if (f.count("norm")) fail("compare trains every mode in --modes: give --modes instead of --norm");
  const int64_t recalibrate = f.count("recalibrate") ? f["recalibrate"].as<int64_t>() : -1;
  if (f.count("recalibrate") && recalibrate < 0)
    fail("--recalibrate must be >= 0 (0: all the training data), got ", recalibrate);

  if (f.count("out")) {  // before any training: a run must not be lost to an unwritable directory
    const std::string dir = f["out"].as<std::string>();
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) fail("--out '", dir, "': cannot create the directory: ", ec.message());
    for (const char* file : {"compare.csv", "compare.json", "curves.svg"}) check_writable(dir + "/" + file, "--out");
  }

  const DatasetSplits data = load_logged(data_spec_from_flags(f));
  const RunConfig config = run_config_from_flags(f, data.train);
  std::vector<std::unique_ptr<Run>> runs;
  for (NormMode mode : modes) runs.push_back(prepare_mode(mode, config, data));
  std::vector<ModeResult> results;
  for (size_t i = 0; i < modes.size(); ++i) {
    results.push_back(run_mode(modes[i], *runs[i], data, recalibrate));
    runs[i].reset();
  }
  std::printf("%s", table(results, recalibrate >= 0).c_str());
  std::printf("\n%s, %d epochs, batch %lld, seed %llu. Test accuracy: inference mode (moving statistics) and with each "
              "test batch normalised by its own statistics. Moving gap: relative L2 distance between the moving "
              "statistics and the statistics of the whole training set.\n",
              config.model.description.c_str(), config.epochs, static_cast<long long>(config.batch_size),
              static_cast<unsigned long long>(config.model.seed));
  if (recalibrate >= 0)
    std::printf("Recalibrated: the moving statistics re-estimated from %s training samples after training "
                "(PreciseBN), then inference evaluated again.\n",
                recalibrate == 0 ? "all" : std::to_string(recalibrate).c_str());
  if (f.count("out")) write_outputs(f["out"].as<std::string>(), results, config, recalibrate >= 0);
  return 0;
}

}  // namespace minidl::cli
