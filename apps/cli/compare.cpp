// `minidl compare`: the same initial weights trained under every normalisation mode, one table side by side:
// what each mode scores at inference, with batch statistics, and how far its moving statistics are from the
// statistics of the whole training set. --out adds CSV, JSON and an SVG of the learning curves.
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "cli.h"
#include "minidl/atomic_file.h"
#include "minidl/autograd.h"
#include "plot.h"

namespace minidl::cli {
namespace {
struct ModeResult {
  NormMode mode;
  std::vector<EpochLogs> history;
  std::vector<double> test_accuracy;  // per epoch, inference mode
  Evaluation inference, batch_1000, batch_32;
  double mean_gap = NAN, variance_gap = NAN;  // relative L2 distance of the moving statistics, or NaN
  double seconds_per_epoch = 0.0;             // median
};

// ‖moving − whole-set‖ / ‖whole-set‖ for mean and variance of the normalised layer's input over `train`.
std::pair<double, double> moving_statistics_gap(Sequential& model, const Dataset& train) {
  auto* bn = dynamic_cast<BatchNormalization*>(model.children()[1].get());
  if (!bn) return {NAN, NAN};
  Module& first = *model.children()[0];
  const ModeGuard inference(model, false);
  const NoGradGuard no_grad;
  const int64_t c = bn->moving_mean().numel();
  std::vector<double> mean(c, 0.0), var(c, 0.0);
  for (int pass = 0; pass < 2; ++pass)  // two passes: the mean, then the biased variance around it
    for (int64_t begin = 0; begin < train.size(); begin += 2000) {
      const Tensor h = first.forward(train.slice(begin, std::min(begin + 2000, train.size())).to_tensor());
      for (int64_t r = 0; r < h.size(0); ++r)
        for (int64_t k = 0; k < c; ++k) {
          const double v = h.data()[r * c + k];
          if (pass == 0) mean[k] += v / static_cast<double>(train.size());
          else var[k] += (v - mean[k]) * (v - mean[k]) / static_cast<double>(train.size());
        }
    }
  double dm = 0, nm = 0, dv = 0, nv = 0;
  for (int64_t k = 0; k < c; ++k) {
    dm += std::pow(bn->moving_mean().data()[k] - mean[k], 2);
    nm += mean[k] * mean[k];
    dv += std::pow(bn->moving_variance().data()[k] - var[k], 2);
    nv += var[k] * var[k];
  }
  return {std::sqrt(dm / std::max(nm, 1e-30)), std::sqrt(dv / std::max(nv, 1e-30))};
}

ModeResult run_mode(NormMode mode, const TrainConfig& base, const DatasetSplits& data) {
  TrainConfig config = base;
  config.mode = mode;
  TrainingSession session(config, data.train);  // same seed: the same initial Dense weights in every mode
  ModeResult result{mode, {}, {}, {}, {}, {}};
  while (!session.finished()) {
    Progress progress(to_string(mode) + " epoch " + std::to_string(session.epoch() + 1) + "/" +
                      std::to_string(config.epochs));
    result.history.push_back(session.run_epoch([&](int64_t d, int64_t t, double l, double a) { progress.update(d, t, l, a); }));
    progress.finish();
    result.test_accuracy.push_back(evaluate(session.model(), data.test, 32).accuracy);
    const EpochLogs& e = result.history.back();
    spdlog::info("{} epoch {}: loss {:.4f} accuracy {:.4f} test_accuracy {:.4f} ({:.2f} s)", to_string(mode), e.epoch,
                 e.loss, e.accuracy, result.test_accuracy.back(), e.seconds);
  }
  Sequential& model = session.model();
  result.inference = evaluate(model, data.test, 32);
  result.batch_1000 = evaluate(model, data.test, 1000, true);
  result.batch_32 = evaluate(model, data.test, 32, true);
  std::tie(result.mean_gap, result.variance_gap) = moving_statistics_gap(model, data.train);
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

const std::vector<std::string> kColumns = {"mode", "train_loss", "train_accuracy", "test_accuracy_inference",
                                           "test_accuracy_batch_stats_1000", "test_accuracy_batch_stats_32",
                                           "moving_mean_gap", "moving_variance_gap", "seconds_per_epoch"};

std::vector<std::string> row(const ModeResult& r) {
  // Manual mode has no inference statistics: its "inference" is batch statistics at 32, shown as such.
  const bool manual = r.mode == NormMode::manual;
  return {to_string(r.mode), fixed(r.history.back().loss), fixed(r.history.back().accuracy),
          manual ? "n/a" : fixed(r.inference.accuracy), fixed(r.batch_1000.accuracy), fixed(r.batch_32.accuracy),
          percent(r.mean_gap), percent(r.variance_gap), fixed(r.seconds_per_epoch, 2)};
}

std::string table(const std::vector<ModeResult>& results) {
  const std::vector<std::string> header = {"mode", "train loss", "train acc", "test acc", "test acc", "test acc",
                                           "moving mean", "moving var", "s/epoch"};
  const std::vector<std::string> header2 = {"", "", "", "inference", "batch stats", "batch stats", "gap", "gap", ""};
  const std::vector<std::string> header3 = {"", "", "", "", "@1000", "@32", "", "", ""};
  std::ostringstream out;
  const auto line = [&](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size(); ++i) out << (i ? "  " : "") << cells[i] << std::string(12 - std::min<size_t>(12, cells[i].size()), ' ');
    out << '\n';
  };
  line(header);
  line(header2);
  line(header3);
  for (const auto& r : results) line(row(r));
  return out.str();
}

void write_outputs(const std::string& dir, const std::vector<ModeResult>& results, const TrainConfig& config) {
  std::filesystem::create_directories(dir);
  std::string csv;
  for (size_t i = 0; i < kColumns.size(); ++i) csv += (i ? "," : "") + kColumns[i];
  csv += '\n';
  nlohmann::ordered_json json = {{"epochs", config.epochs}, {"batch_size", config.batch_size},
                                 {"hidden", config.hidden}, {"seed", config.seed}, {"modes", nlohmann::json::array()}};
  std::vector<Series> loss, accuracy;
  for (const auto& r : results) {
    const auto cells = row(r);
    for (size_t i = 0; i < cells.size(); ++i) csv += (i ? "," : "") + cells[i];
    csv += '\n';
    nlohmann::ordered_json mode;
    for (size_t i = 0; i < cells.size(); ++i) mode[kColumns[i]] = cells[i];
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
      "hidden", "hidden units", cxxopts::value<int64_t>()->default_value("64"))(
      "lr", "Adam learning rate", cxxopts::value<float>()->default_value("0.001"))(
      "modes", "comma-separated modes to compare", cxxopts::value<std::string>()->default_value("running,batchwise,manual,none"))(
      "out", "write compare.csv, compare.json and curves.svg into this directory", cxxopts::value<std::string>());
  add_common_flags(options);
  const auto f = parse_flags(options, argc, argv, "minidl compare --epochs 5 --out results");
  apply_threads(f);
  TrainConfig config;
  config.epochs = f["epochs"].as<int>();
  config.batch_size = f["batch-size"].as<int64_t>();
  config.hidden = f["hidden"].as<int64_t>();
  config.learning_rate = f["lr"].as<float>();
  config.seed = f["seed"].as<uint64_t>();
  if (config.epochs < 1) fail("--epochs must be >= 1, got ", config.epochs);
  if (config.batch_size < 2) fail("--batch-size must be >= 2 (batch normalisation needs two samples), got ", config.batch_size);
  std::vector<NormMode> modes;
  std::stringstream list(f["modes"].as<std::string>());
  for (std::string item; std::getline(list, item, ',');) modes.push_back(parse_norm_mode(item));

  const DatasetSplits data = load_data(f["data"].as<std::string>());
  std::vector<ModeResult> results;
  for (NormMode mode : modes) results.push_back(run_mode(mode, config, data));
  std::printf("%s", table(results).c_str());
  std::printf("\n%d epochs, batch %lld, seed %llu. Test accuracy: inference mode (moving statistics) and with each test "
              "batch normalised by its own statistics. Moving gap: relative L2 distance between the moving statistics "
              "and the statistics of the whole training set.\n",
              config.epochs, static_cast<long long>(config.batch_size), static_cast<unsigned long long>(config.seed));
  if (f.count("out")) write_outputs(f["out"].as<std::string>(), results, config);
  return 0;
}

}  // namespace minidl::cli
