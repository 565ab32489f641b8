// Helpers of the tests that run the minidl command line: running it, and a synthetic MNIST-format directory.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <string>

#include "helpers.h"
#include "minidl/data.h"

namespace minidl::test {

struct Run {
  int status;
  std::string out, err;
};

// Runs `minidl <args>` with stdout and stderr captured; `environment` goes before it (e.g. "env -u OMP_NUM_THREADS").
inline Run minidl_cli(const std::string& args, const TempDir& dir, const std::string& environment = "") {
  const std::string out = dir.file("stdout"), err = dir.file("stderr");
  const std::string command = environment + " " + std::string(MINIDL_CLI) + " " + args + " >" + out + " 2>" + err + " </dev/null";
  const int raw = std::system(command.c_str());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, read_bytes(out), read_bytes(err)};
}

// A synthetic MNIST-format directory (640 training, 200 test samples), written once per test process.
inline const TempDir& data_dir() {
  static TempDir dir;
  static const bool written = [] {
    const DatasetSplits s = make_synthetic(640, 200, 21);
    save_mnist_split(dir.path(), "train", s.train, true);
    save_mnist_split(dir.path(), "t10k", s.test, true);
    return true;
  }();
  (void)written;
  return dir;
}

inline std::string data_flag() { return "--data " + data_dir().path(); }

// `train` with `flags` (ending in its data) run straight to dir/straight, and stopped after `steps` steps then
// resumed to dir/resumed: REQUIREs that the two files hold the same bytes.
inline void require_exact_resume(const std::string& flags, int64_t steps, const TempDir& dir) {
  REQUIRE(minidl_cli(flags + " --save " + dir.file("straight"), dir).status == 0);
  REQUIRE(minidl_cli(flags + " --steps " + std::to_string(steps) + " --save " + dir.file("half"), dir).status == 0);
  const Run resumed = minidl_cli("train --overwrite --resume " + dir.file("half") + " --save " + dir.file("resumed") + " " +
                                     data_flag(), dir);
  INFO(resumed.err);
  REQUIRE(resumed.status == 0);
  REQUIRE(read_bytes(dir.file("resumed")) == read_bytes(dir.file("straight")));
}

// scikit-learn's bundled data sets written as CSV files and PNG folders (tests/data/sklearn_csv.py), once per
// test process; the test is skipped (never passed) when scikit-learn is missing.
inline const TempDir& sklearn_dir() {
  static TempDir dir;
  static const bool written = [] {
    // Debian's python3-sklearn belongs to Debian's python3, which another python3 earlier in PATH may hide.
    const std::string python = std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
    const std::string command = python + " " + MINIDL_TEST_DATA + "/sklearn_csv.py " + dir.path() + " >/dev/null 2>&1";
    return std::system(command.c_str()) == 0;
  }();
  require_or_skip(written ? dir.file("diabetes_train.csv") : dir.file("missing"),
                  "scikit-learn is not installed (apt-get install python3-sklearn): its data sets are the test data");
  return dir;
}

}  // namespace minidl::test
