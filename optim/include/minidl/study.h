// A normalisation study: the grid (normalisation kinds × span of the batch statistics × batch sizes × seeds), what
// one run of it measures, running the grid on several threads, and the reports made from the results — the
// mean ± sd table, the long-format CSV, the JSON with every setting and the SVG figures. `minidl compare` is this
// with runs built from its flags; docs/normalization.md shows its results.
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace minidl {

/// One arm of a study: a normalisation kind and, with several processes, whether its batch statistics span the
/// global batch (Keras's synchronized=True) or each process's slice (PyTorch DDP's default).
struct StudyArm {
  std::string mode;  ///< a normalisation kind's name (minidl/normalization.h)
  bool sync_batch_norm = true;
};

/// The grid of a study and what each run evaluates.
struct StudyGrid {
  std::vector<std::string> modes;        ///< normalisation kinds
  std::vector<bool> bn_syncs = {true};   ///< global (true) and/or local (false; only with several processes)
  int processes = 1;                     ///< data-parallel processes per run (mpirun -np)
  std::vector<int64_t> batch_sizes, eval_batch_sizes;
  std::vector<uint64_t> seeds;
  int64_t steps = -1;        ///< equal steps for every batch size (-1: the epochs decide)
  int64_t recalibrate = -1;  ///< PreciseBN samples after training (0: all; -1: not asked)
  /// What the runs' "accuracy" measures hold, as reports name it: "accuracy" (classes), or "r2" (regression: the
  /// test set's R², which is also higher for better, and 1 at best).
  std::string score = "accuracy";

  /// modes × bn_syncs, in that order.
  std::vector<StudyArm> arms() const;
  /// How tables and figures name an arm: the mode, followed by "/global" or "/local" when the grid has both.
  std::string label(const StudyArm& arm) const;
};

/// One run of the grid.
struct StudyCell {
  StudyArm arm;
  int64_t batch_size = 0;
  uint64_t seed = 0;
};
/// Every cell, arms outermost, then batch sizes, then seeds: the order of the results and of the CSV.
std::vector<StudyCell> study_cells(const StudyGrid& grid);

/// What one epoch of one run measured. NaN where it does not apply (a mode without moving statistics, an
/// evaluation not asked for) or is measured only after the last epoch (the gaps, recalibration).
struct EpochMetrics {
  int epoch = 0;
  int64_t steps = 0;  ///< optimizer steps done by the end of the epoch
  double seconds = 0, train_loss = NAN, train_accuracy = NAN;
  /// The accuracy measures hold StudyGrid::score: accuracy, or R² for regression (which has no training R²).
  double test_accuracy = NAN;                 ///< inference mode, moving statistics (NaN in manual mode)
  std::vector<double> batch_stats_accuracy;   ///< per eval batch size: each test batch normalised by itself
  double recalibrated_accuracy = NAN;         ///< after PreciseBN
  double mean_gap = NAN, variance_gap = NAN;  ///< moving vs population statistics, relative L2
  double recalibrated_mean_gap = NAN, recalibrated_variance_gap = NAN;
  /// Test accuracy as the mode is used for inference: the moving statistics, or batch statistics in manual mode
  /// (at the first eval batch size).
  double deployed_accuracy() const { return std::isnan(test_accuracy) ? batch_stats_accuracy.at(0) : test_accuracy; }
};

struct StudyRun {
  StudyArm arm;
  int64_t batch_size = 0;
  uint64_t seed = 0;
  std::vector<EpochMetrics> epochs;
};

/// Mean and sample standard deviation (n − 1; 0 for one value) over the values that are numbers; NaN for none.
struct MeanSd {
  double mean = NAN, sd = NAN;
  int n = 0;
};
MeanSd mean_sd(const std::vector<double>& values);

/// How a study runs its cells: `jobs` at once on threads of their own (each with `threads_per_job` OpenMP threads)
/// drawing a progress line on a terminal, or one after another on the calling thread (`serial`: under mpirun,
/// where MPI belongs to the main thread). `total_steps` sizes the progress line.
struct StudyExecution {
  int jobs = 1, threads_per_job = 1;
  bool serial = false;
  int64_t total_steps = 0;
};
/// Runs every cell with `run` (which adds the steps it takes to `steps_done` as it goes) and returns the results
/// in study_cells order, whatever order they finished in. The first exception any run throws is rethrown after
/// the running ones stop; no further cell starts.
std::vector<StudyRun> run_study(const StudyGrid& grid, const StudyExecution& execution,
                                const std::function<StudyRun(const StudyCell&, std::atomic<int64_t>& steps_done)>& run);

/// The summary table (mean ± sd over seeds of the last epoch, per arm and batch size).
std::string study_table(const StudyGrid& grid, const std::vector<StudyRun>& results);
/// One row per arm × batch size × seed × epoch, every metric a number, empty where it does not apply.
std::string study_csv(const StudyGrid& grid, const std::vector<StudyRun>& results);
/// minidl's version, the CPU, `execution`'s jobs, the settings (the grid's merged into `recipe_json`, a JSON object
/// of what every run shares), the summary and every run's epochs.
std::string study_json(const StudyGrid& grid, const std::vector<StudyRun>& results, const StudyExecution& execution,
                       const std::string& recipe_json);
/// Accuracy against batch size, one panel per way of evaluating; and test accuracy per step, one panel per batch
/// size. SVG.
std::string study_batch_size_figure(const StudyGrid& grid, const std::vector<StudyRun>& results);
std::string study_curves_figure(const StudyGrid& grid, const std::vector<StudyRun>& results);
/// Writes compare.csv, compare.json, accuracy_vs_batch_size.svg and curves.svg into `dir`, each atomically.
void write_study(const std::string& dir, const StudyGrid& grid, const std::vector<StudyRun>& results,
                 const StudyExecution& execution, const std::string& recipe_json);
/// The files write_study writes.
std::vector<std::string> study_files();

}  // namespace minidl
