// The study (minidl/study.h): its grid, running it on several threads with a progress line, and its reports —
// the mean ± sd table, compare.csv (long format), compare.json and the SVG figures.
#include "minidl/study.h"

#include <nlohmann/json.hpp>
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "minidl/atomic_file.h"
#include "minidl/error.h"
#include "minidl/version.h"
#include "plot.h"

namespace minidl {
namespace {
using Metric = std::function<double(const EpochMetrics&)>;

struct Column {
  std::string name;    // CSV and JSON
  std::string header;  // table
  Metric value;
};

// How figures name the score: "accuracy" or "R²".
std::string score_words(const StudyGrid& s) { return s.score == "r2" ? "R²" : s.score; }

// The final metrics, in table order; the eval batch sizes add one column each.
std::vector<Column> final_columns(const StudyGrid& s) {
  const std::string test = "test_" + s.score;
  std::vector<Column> c = {{test, "moving", [](const EpochMetrics& m) { return m.test_accuracy; }}};
  if (s.recalibrate >= 0)
    c.push_back({test + "_recalibrated", "re-estimated", [](const EpochMetrics& m) { return m.recalibrated_accuracy; }});
  for (size_t i = 0; i < s.eval_batch_sizes.size(); ++i)
    c.push_back({test + "_batch_stats_" + std::to_string(s.eval_batch_sizes[i]),
                 "batch@" + std::to_string(s.eval_batch_sizes[i]),
                 [i](const EpochMetrics& m) { return m.batch_stats_accuracy[i]; }});
  c.push_back({"train_test_gap", "train-test",
               [](const EpochMetrics& m) { return m.train_accuracy - m.deployed_accuracy(); }});
  c.push_back({"moving_mean_gap", "mean gap", [](const EpochMetrics& m) { return m.mean_gap; }});
  c.push_back({"moving_variance_gap", "var gap", [](const EpochMetrics& m) { return m.variance_gap; }});
  if (s.recalibrate >= 0) {
    c.push_back({"recalibrated_mean_gap", "re. mean gap", [](const EpochMetrics& m) { return m.recalibrated_mean_gap; }});
    c.push_back({"recalibrated_variance_gap", "re. var gap", [](const EpochMetrics& m) { return m.recalibrated_variance_gap; }});
  }
  return c;
}

// The runs of one arm and batch size (one per seed).
std::vector<const StudyRun*> cell(const std::vector<StudyRun>& results, const StudyArm& arm, int64_t batch) {
  std::vector<const StudyRun*> out;
  for (const StudyRun& r : results)
    if (r.arm.mode == arm.mode && r.arm.sync_batch_norm == arm.sync_batch_norm && r.batch_size == batch)
      out.push_back(&r);
  return out;
}

const char* span(const StudyArm& arm) { return arm.sync_batch_norm ? "global" : "local"; }

MeanSd final_stat(const std::vector<const StudyRun*>& runs, const Metric& metric) {
  std::vector<double> v;
  for (const StudyRun* r : runs) v.push_back(metric(r->epochs.back()));
  return mean_sd(v);
}

std::string text(const MeanSd& m, bool percent) {
  if (std::isnan(m.mean)) return "n/a";
  char buf[48];
  const double k = percent ? 100.0 : 1.0;
  if (m.n > 1)
    std::snprintf(buf, sizeof buf, percent ? "%.1f±%.1f%%" : "%.4f±%.4f", k * m.mean, k * m.sd);
  else
    std::snprintf(buf, sizeof buf, percent ? "%.1f%%" : "%.4f", k * m.mean);
  return buf;
}

nlohmann::ordered_json number(double v) { return std::isnan(v) ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(v); }

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

std::string format_number(double v) {
  if (std::isnan(v)) return "";  // not applicable, or not measured at this epoch
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace

std::string study_csv(const StudyGrid& s, const std::vector<StudyRun>& results) {
  std::vector<std::pair<std::string, Metric>> metrics = {
      {"steps", [](const EpochMetrics& m) { return static_cast<double>(m.steps); }},
      {"seconds", [](const EpochMetrics& m) { return m.seconds; }},
      {"train_loss", [](const EpochMetrics& m) { return m.train_loss; }},
      {"train_" + s.score, [](const EpochMetrics& m) { return m.train_accuracy; }}};
  for (const Column& c : final_columns(s)) metrics.emplace_back(c.name, c.value);
  std::string out = "mode,bn_sync,batch_size,seed,epoch";
  for (const auto& [name, f] : metrics) out += "," + name;
  out += '\n';
  for (const StudyRun& r : results)
    for (const EpochMetrics& e : r.epochs) {
      out += r.arm.mode + "," + span(r.arm) + "," + std::to_string(r.batch_size) + "," +
             std::to_string(r.seed) + "," + std::to_string(e.epoch);
      for (const auto& [name, f] : metrics) out += "," + format_number(f(e));
      out += '\n';
    }
  return out;
}

std::string study_json(const StudyGrid& s, const std::vector<StudyRun>& results, const StudyExecution& execution,
                       const std::string& recipe_json) {
  nlohmann::ordered_json settings = nlohmann::ordered_json::parse(recipe_json);
  if (!settings.is_object()) fail("study_json: the recipe must be a JSON object, got ", recipe_json);
  settings["modes"] = s.modes;
  settings["batch_sizes"] = s.batch_sizes;
  settings["seeds"] = s.seeds;
  settings["steps"] = s.steps < 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(s.steps);
  settings["eval_batch_sizes"] = s.eval_batch_sizes;
  settings["recalibrate"] = s.recalibrate < 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(s.recalibrate);
  settings["processes"] = s.processes;
  settings["bn_sync"] = nlohmann::json::array();
  for (bool sync : s.bn_syncs) settings["bn_sync"].push_back(sync ? "global" : "local");
  nlohmann::ordered_json out = {{"minidl_version", version()},
                                {"cpu", cpu_name()},
                                {"jobs", execution.jobs},
                                {"threads_per_job", execution.threads_per_job},
                                {"settings", settings},
                                {"summary", nlohmann::json::array()},
                                {"runs", nlohmann::json::array()}};
  for (const StudyArm& arm : s.arms())
    for (int64_t batch : s.batch_sizes) {
      nlohmann::ordered_json row = {{"mode", arm.mode}, {"bn_sync", span(arm)}, {"batch_size", batch}};
      for (const Column& c : final_columns(s)) {
        const MeanSd m = final_stat(cell(results, arm, batch), c.value);
        row[c.name] = {{"mean", number(m.mean)}, {"sd", number(m.sd)}, {"n", m.n}};
      }
      out["summary"].push_back(row);
    }
  for (const StudyRun& r : results) {
    nlohmann::ordered_json run = {{"mode", r.arm.mode}, {"bn_sync", span(r.arm)},
                                  {"batch_size", r.batch_size}, {"seed", r.seed}, {"epochs", nlohmann::json::array()}};
    for (const EpochMetrics& e : r.epochs) {
      nlohmann::ordered_json ep = {{"epoch", e.epoch}, {"steps", e.steps}, {"seconds", e.seconds},
                                   {"train_loss", number(e.train_loss)}, {"train_" + s.score, number(e.train_accuracy)}};
      for (const Column& c : final_columns(s)) ep[c.name] = number(c.value(e));
      run["epochs"].push_back(ep);
    }
    out["runs"].push_back(run);
  }
  return out.dump(2) + "\n";
}

// Accuracy against batch size: one panel per way of evaluating, one line per mode, mean ± sd over seeds.
std::string study_batch_size_figure(const StudyGrid& s, const std::vector<StudyRun>& results) {
  std::vector<Panel> panels;
  std::vector<Column> shown;
  for (const Column& c : final_columns(s))
    if (c.name.rfind("test_" + s.score, 0) == 0) shown.push_back(c);
  for (const Column& c : shown) {
    Panel p{c.name == "test_" + s.score          ? "inference: moving statistics"
            : c.name.find("recal") != std::string::npos ? "inference: re-estimated statistics (PreciseBN)"
                                                        : "batch statistics, test batches of " + c.header.substr(6),
            "training batch size", "test " + score_words(s), true, {}};
    for (const StudyArm& arm : s.arms()) {
      Line line{s.label(arm), {}, {}, {}};
      for (int64_t batch : s.batch_sizes) {
        const MeanSd m = final_stat(cell(results, arm, batch), c.value);
        line.x.push_back(static_cast<double>(batch)), line.y.push_back(m.mean), line.err.push_back(m.sd);
      }
      p.lines.push_back(line);
    }
    panels.push_back(p);
  }
  return svg_figure(panels);
}

// Test accuracy as each mode is deployed, per epoch: one panel per batch size, mean ± sd over seeds.
std::string study_curves_figure(const StudyGrid& s, const std::vector<StudyRun>& results) {
  std::vector<Panel> panels;
  for (int64_t batch : s.batch_sizes) {
    Panel p{"batch size " + std::to_string(batch), "training steps", "test " + score_words(s) + " (as deployed)", false, {}};
    for (const StudyArm& arm : s.arms()) {
      const auto runs = cell(results, arm, batch);
      Line line{s.label(arm), {}, {}, {}};
      for (size_t e = 0; !runs.empty() && e < runs.front()->epochs.size(); ++e) {
        std::vector<double> v;
        for (const StudyRun* r : runs) v.push_back(r->epochs[e].deployed_accuracy());
        const MeanSd m = mean_sd(v);
        line.x.push_back(static_cast<double>(runs.front()->epochs[e].steps)), line.y.push_back(m.mean), line.err.push_back(m.sd);
      }
      p.lines.push_back(line);
    }
    panels.push_back(p);
  }
  return svg_figure(panels);
}

std::vector<StudyArm> StudyGrid::arms() const {
  std::vector<StudyArm> out;
  for (const std::string& mode : modes)
    for (bool sync : bn_syncs) out.push_back({mode, sync});
  return out;
}

std::string StudyGrid::label(const StudyArm& arm) const {
  return bn_syncs.size() > 1 ? arm.mode + "/" + span(arm) : arm.mode;
}

std::vector<std::string> study_files() { return {"compare.csv", "compare.json", "accuracy_vs_batch_size.svg", "curves.svg"}; }

std::string study_table(const StudyGrid& s, const std::vector<StudyRun>& results) {
  const std::vector<Column> columns = final_columns(s);
  std::vector<std::vector<std::string>> rows = {{"mode", "batch"}};
  for (const Column& c : columns) rows[0].push_back(c.header);
  for (const StudyArm& arm : s.arms())
    for (int64_t batch : s.batch_sizes) {
      std::vector<std::string> row = {s.label(arm), std::to_string(batch)};
      for (const Column& c : columns)
        row.push_back(text(final_stat(cell(results, arm, batch), c.value), c.name.find("gap") != std::string::npos));
      rows.push_back(row);
    }
  // Widths in characters: '±' is two bytes of UTF-8.
  const auto chars = [](const std::string& t) {
    size_t n = 0;
    for (unsigned char ch : t) n += (ch & 0xC0) != 0x80;
    return n;
  };
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows)
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], chars(row[i]));
  std::ostringstream out;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i)
      out << (i ? "  " : "") << row[i] << std::string(width[i] - chars(row[i]), ' ');
    out << '\n';
  }
  return out.str();
}

void write_study(const std::string& dir, const StudyGrid& s, const std::vector<StudyRun>& results,
                 const StudyExecution& execution, const std::string& recipe_json) {
  write_text_atomically(dir + "/compare.csv", study_csv(s, results));
  write_text_atomically(dir + "/compare.json", study_json(s, results, execution, recipe_json));
  write_text_atomically(dir + "/accuracy_vs_batch_size.svg", study_batch_size_figure(s, results));
  write_text_atomically(dir + "/curves.svg", study_curves_figure(s, results));
}

MeanSd mean_sd(const std::vector<double>& values) {
  MeanSd r;
  double sum = 0, squares = 0;
  for (double v : values)
    if (!std::isnan(v)) sum += v, ++r.n;
  if (r.n == 0) return r;
  r.mean = sum / r.n;
  for (double v : values)
    if (!std::isnan(v)) squares += (v - r.mean) * (v - r.mean);
  r.sd = r.n > 1 ? std::sqrt(squares / (r.n - 1)) : 0.0;
  return r;
}

std::vector<StudyCell> study_cells(const StudyGrid& grid) {
  std::vector<StudyCell> cells;
  for (const StudyArm& arm : grid.arms())
    for (int64_t batch : grid.batch_sizes)
      for (uint64_t seed : grid.seeds) cells.push_back({arm, batch, seed});
  return cells;
}

namespace {
std::string duration(double seconds) {
  char buf[32];
  const int s = static_cast<int>(seconds + 0.5);
  if (s >= 60)
    std::snprintf(buf, sizeof buf, "%dm%02ds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%ds", s);
  return buf;
}
}  // namespace

std::vector<StudyRun> run_study(const StudyGrid& grid, const StudyExecution& execution,
                                const std::function<StudyRun(const StudyCell&, std::atomic<int64_t>& steps_done)>& run) {
  const std::vector<StudyCell> cells = study_cells(grid);
  std::vector<StudyRun> results(cells.size());
  std::atomic<size_t> next{0}, finished{0};
  std::atomic<int64_t> steps_done{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  const auto worker = [&] {
    if (!execution.serial) omp_set_num_threads(execution.threads_per_job);
    for (size_t i; !failed && (i = next++) < cells.size();) {
      try {
        results[i] = run(cells[i], steps_done);
      } catch (...) {
        const std::lock_guard lock(error_mutex);
        if (!error) error = std::current_exception();
        failed = true;
      }
      ++finished;
    }
  };
  if (execution.serial) {
    worker();
    if (error) std::rethrow_exception(error);
    return results;
  }
  std::vector<std::thread> threads;
  for (int j = 0; j < std::max(execution.jobs, 1); ++j) threads.emplace_back(worker);
  const bool tty = ::isatty(STDERR_FILENO);
  const auto start = std::chrono::steady_clock::now();
  while (finished < cells.size() && !failed) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    if (!tty) continue;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double done = static_cast<double>(steps_done) / static_cast<double>(std::max<int64_t>(execution.total_steps, 1));
    std::fprintf(stderr, "\r\033[Kcompare: %zu/%zu runs, %3.0f%% of %lld steps, %s elapsed, ETA %s", finished.load(),
                 cells.size(), 100 * done, static_cast<long long>(execution.total_steps), duration(elapsed).c_str(),
                 done > 0.01 ? duration(elapsed * (1 - done) / done).c_str() : "...");
  }
  for (auto& t : threads) t.join();
  if (tty) std::fprintf(stderr, "\r\033[K");
  if (error) std::rethrow_exception(error);
  return results;
}

}  // namespace minidl
