// The minidl command line: one function per command, and what they share (flags, output, progress).
#pragma once

#include <cxxopts.hpp>

#include <string>
#include <vector>

#include "session.h"

namespace minidl::cli {

int train_command(int argc, char** argv);
int evaluate_command(int argc, char** argv);
int compare_command(int argc, char** argv);
int gradcheck_command(int argc, char** argv);
int bench_command(int argc, char** argv);

/// Parses a command's flags; on --help prints the help with an example and exits 0; rejects stray arguments
/// with the list of valid flags.
cxxopts::ParseResult parse_flags(cxxopts::Options& options, int argc, char** argv, const std::string& example);

/// Adds the flags every command understands: --data, --threads, --seed, --help.
void add_common_flags(cxxopts::Options& options);
/// Applies --threads (OpenMP threads; 0 keeps the default).
void apply_threads(const cxxopts::ParseResult& flags);

/// A one-line progress bar on stderr when it is a terminal; nothing otherwise.
class Progress {
 public:
  explicit Progress(std::string label);
  ~Progress();
  void update(int64_t done, int64_t total, double loss, double accuracy);
  void finish();
  bool active() const { return active_; }

 private:
  std::string label_;
  bool active_;
  double start_, last_draw_ = -1.0;
};

}  // namespace minidl::cli
