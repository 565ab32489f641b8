// The minidl command line: one function per command, and what they share (flag parsing, common flags).
#pragma once

#include <cxxopts.hpp>

#include <string>
#include <vector>

#include "minidl/statistics.h"
#include "run.h"

namespace minidl::cli {

int train_command(int argc, char** argv);
int evaluate_command(int argc, char** argv);
int compare_command(int argc, char** argv);
int gradcheck_command(int argc, char** argv);
int bench_command(int argc, char** argv);
/// `minidl bench --ranks N`, with bench's parsed flags: 1 process against N under mpirun (bench_ranks.cpp).
int bench_ranks_command(const cxxopts::ParseResult& flags);
int summary_command(int argc, char** argv);
int predict_command(int argc, char** argv);
int export_command(int argc, char** argv);
int recalibrate_command(int argc, char** argv);

/// Test accuracy (R² for float targets) with the moving statistics before and after recalibrate_batch_norm, which
/// happens in between.
struct RecalibrationReport {
  double before = 0, after = 0;
  Recalibration recalibration;
};
/// Recalibrates `model` from `samples` rows of data.train (seeded) and logs one line with what changed.
RecalibrationReport recalibrate_and_report(Sequential& model, const DatasetSplits& data, int64_t samples, uint64_t seed,
                                           int64_t eval_batch_size);
/// After training: when normalising each test batch with its own statistics scores more than a point above the
/// moving statistics (`moving_accuracy`: accuracy, or R² for float targets), warns that the moving averages lag the weights and suggests recalibrate.
/// Models without moving statistics, and batches too small for batch statistics, are left alone. `saved` names
/// the checkpoint in the suggested command (empty: none was saved).
void warn_if_moving_statistics_lag(Sequential& model, const Dataset& test, int64_t batch_size, double moving_accuracy,
                                   const std::string& saved);

/// Parses a command's flags; on --help prints the help with an example and exits 0; rejects stray arguments
/// with the list of valid flags.
cxxopts::ParseResult parse_flags(cxxopts::Options& options, int argc, char** argv, const std::string& example);

/// The choice closest to `word` by edit distance, when it is close enough to be a typo of it; else empty.
std::string closest_word(const std::string& word, const std::vector<std::string>& choices);
/// Refuses an output path whose extension says another format than the one written there (`what` names the
/// flag): "--save m.onnx" writes safetensors, so it names `minidl export`. A path without an extension passes.
void check_extension(const std::string& path, const std::string& what, const std::string& extension);

/// A file a command reads or writes, and the flag that names it ("--save").
/// Whether two paths name one file: by device and inode when both exist, else by their resolved spelling.
bool same_file(const std::string& a, const std::string& b);
struct NamedPath {
  std::string flag, path;
};
/// The files a data spec reads: the CSV files, or an IDX directory's four files (an image folder's are its own:
/// none is listed).
std::vector<NamedPath> data_files(const DataSpec& spec, const std::string& flag = "--data");
/// Refuses, before any work, an output that is one of the inputs or another output — the same file by inode
/// (through links and other spellings) or, for files not there yet, by resolved path: `train --data t.csv --save
/// t.csv` would turn the data into a checkpoint. `allowed` pairs an output with the one input it may replace
/// (--resume F --save F; recalibrate --model F --out F).
void check_outputs(const std::vector<NamedPath>& outputs, const std::vector<NamedPath>& inputs,
                   const std::vector<std::pair<std::string, std::string>>& allowed = {});

/// Whether a model's outputs `y` [N, K] are all finite; if not, logs an error naming the first sample whose output
/// is not (counting from 0 in `x`, the inputs that gave them), and where in the model it first appears
/// (find_non_finite), and returns false: evaluate and predict then exit with 3, as train does, instead of
/// printing NaN as a result.
bool outputs_finite(Module& model, const Tensor& x, const Tensor& y);

/// Before anything else in main: when another program keeps one of this process's CPUs busy and neither
/// OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set, runs the command again with OMP_WAIT_POLICY=passive (wait_policy.cpp).
void choose_wait_policy(int argc, char** argv);
/// What choose_wait_policy did, for the log; empty when it left libgomp's default.
std::string wait_policy_note();

/// Adds the flags every command understands: --data, --threads, --seed, --help.
void add_common_flags(cxxopts::Options& options);
/// Refuses a checkpoint holding NaN or infinite values, naming the tensor (a diverged run's weights would give
/// NaN or, worse, plausible-looking numbers).
void refuse_non_finite(const Checkpoint& checkpoint, const std::string& path);
/// Applies --threads (OpenMP threads; 0 keeps the default: every core, which train's Trainer then times against
/// fewer).
void apply_threads(const cxxopts::ParseResult& flags);
/// `word` as one word for /bin/sh, whatever it holds (the benchmarks build command lines).
std::string quoted(const std::string& word);
/// The median of `values` (the upper middle one for an even count), as the benchmarks report their repeats.
double median(std::vector<double> values);

}  // namespace minidl::cli
