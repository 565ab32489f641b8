// compare's study: the grid it runs (modes × span of the batch statistics × batch sizes × seeds), what one run
// measures, and the reports made from the results — the mean ± sd table, the long-format CSV, the JSON with every
// setting, the SVG figures.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "minidl/models.h"
#include "run.h"

namespace minidl::cli {

/// One arm of the study: a normalisation mode and, under mpirun, whether its batch statistics span the global
/// batch (--bn-sync global, Keras's synchronized=True) or each process's slice (local, PyTorch DDP's default).
struct Arm {
  std::string mode;  ///< a normalisation kind's name
  bool sync_batch_norm = true;
};

struct StudySettings {
  std::vector<std::string> modes;  ///< normalisation kinds
  std::vector<bool> bn_syncs = {true};  ///< --bn-sync: global (true) and/or local (false; only under mpirun)
  int processes = 1;                    ///< data-parallel processes per run (mpirun -np)
  std::vector<int64_t> batch_sizes, eval_batch_sizes;
  std::vector<uint64_t> seeds;
  int64_t steps = -1;        ///< equal steps for every batch size (-1: --epochs decides)
  int64_t recalibrate = -1;  ///< PreciseBN samples after training (0: all; -1: not asked)
  int jobs = 1, threads_per_job = 1;
  RunConfig base;            ///< model, lr, momentum, epochs, data: what every run shares

  /// modes × bn_syncs, in that order.
  std::vector<Arm> arms() const;
  /// How tables and figures name an arm: the mode, followed by "/global" or "/local" when the grid has both.
  std::string label(const Arm& arm) const;
};

/// What one epoch of one run measured. NaN where it does not apply (a mode without moving statistics, an
/// evaluation not asked for) or is measured only after the last epoch (the gaps, recalibration).
struct EpochMetrics {
  int epoch = 0;
  int64_t steps = 0;  ///< optimizer steps done by the end of the epoch
  double seconds = 0, train_loss = NAN, train_accuracy = NAN;
  double test_accuracy = NAN;                 ///< inference mode, moving statistics (NaN in manual mode)
  std::vector<double> batch_stats_accuracy;   ///< per eval batch size: each test batch normalised by itself
  double recalibrated_accuracy = NAN;         ///< after PreciseBN
  double mean_gap = NAN, variance_gap = NAN;  ///< moving vs population statistics, relative L2
  double recalibrated_mean_gap = NAN, recalibrated_variance_gap = NAN;
  /// Test accuracy as the mode is used for inference: the moving statistics, or batch statistics in manual mode
  /// (at the first eval batch size).
  double deployed_accuracy() const { return std::isnan(test_accuracy) ? batch_stats_accuracy.at(0) : test_accuracy; }
};

struct RunResult {
  Arm arm;
  int64_t batch_size;
  uint64_t seed;
  std::vector<EpochMetrics> epochs;
};

/// The summary table (mean ± sd over seeds of the last epoch, per mode and batch size).
std::string study_table(const StudySettings& settings, const std::vector<RunResult>& results);
/// Writes study.csv (one row per mode × batch size × seed × epoch), study.json (settings, version, CPU, runs,
/// summary), accuracy_vs_batch_size.svg and curves.svg into `dir`.
void write_study(const std::string& dir, const StudySettings& settings, const std::vector<RunResult>& results);
/// The files write_study writes.
std::vector<std::string> study_files();

}  // namespace minidl::cli
