// The minidl command line: one function per command, and what they share (flag parsing, common flags).
#pragma once

#include <cxxopts.hpp>

#include <string>

#include "run.h"

namespace minidl::cli {

int train_command(int argc, char** argv);
int evaluate_command(int argc, char** argv);
int compare_command(int argc, char** argv);
int gradcheck_command(int argc, char** argv);
int bench_command(int argc, char** argv);
int summary_command(int argc, char** argv);
int predict_command(int argc, char** argv);
int export_command(int argc, char** argv);

/// Parses a command's flags; on --help prints the help with an example and exits 0; rejects stray arguments
/// with the list of valid flags.
cxxopts::ParseResult parse_flags(cxxopts::Options& options, int argc, char** argv, const std::string& example);

/// Adds the flags every command understands: --data, --threads, --seed, --help.
void add_common_flags(cxxopts::Options& options);
/// Refuses a checkpoint holding NaN or infinite values, naming the tensor (a diverged run's weights would give
/// NaN or, worse, plausible-looking numbers).
void refuse_non_finite(const Checkpoint& checkpoint, const std::string& path);
/// Applies --threads (OpenMP threads; 0 keeps the default).
void apply_threads(const cxxopts::ParseResult& flags);

}  // namespace minidl::cli
