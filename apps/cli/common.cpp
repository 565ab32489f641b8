// What the commands share: flag parsing with clear errors, the common flags, --threads, the benchmarks' median
// and shell quoting.
#include <omp.h>

#include <algorithm>
#include <cstdio>

#include "cli.h"
#include "settings.h"

namespace minidl::cli {

void add_common_flags(cxxopts::Options& options) {
  add_settings(options, {"data", "test", "label", "validation-split", "threads", "seed"});
  options.add_options("common")(
      "h,help", "show this help");
}

namespace {
// cxxopts names a value it cannot read but not its flag ("Argument '256,128' failed to parse"): find the flag
// that value followed on the command line.
std::string flag_with_value(int argc, char** argv, const std::string& message) {
  const size_t open = message.find("\u2018"), close = message.find("\u2019");
  if (open == std::string::npos || close == std::string::npos || close < open) return {};
  const std::string value = message.substr(open + 3, close - open - 3);
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) == 0 && eq != std::string::npos && arg.substr(eq + 1) == value) return arg.substr(0, eq) + " " + value;
    if (arg.rfind("-", 0) == 0 && i + 1 < argc && value == argv[i + 1]) return arg + " " + value;
  }
  return {};
}
}  // namespace

cxxopts::ParseResult parse_flags(cxxopts::Options& options, int argc, char** argv, const std::string& example) {
  try {
    auto result = options.parse(argc, argv);
    if (result.count("help")) {
      std::printf("%s\nExample:\n  %s\n", options.help().c_str(), example.c_str());
      std::exit(0);
    }
    if (!result.unmatched().empty()) fail("unexpected argument '", result.unmatched()[0], "'");
    return result;
  } catch (const cxxopts::exceptions::incorrect_argument_type& e) {
    const std::string flag = flag_with_value(argc, argv, e.what());
    fail(flag.empty() ? std::string(e.what()) : flag + ": not a valid value for this flag", " (see --help)",
         flag.rfind("--hidden ", 0) == 0 ? "; --hidden takes one width: for more layers give --model, e.g. "
                                           "dense:256,relu,bn,dense:128,relu,bn,dense:10,softmax"
                                         : "");
  } catch (const cxxopts::exceptions::exception& e) {
    fail(e.what(), "\n", options.help());
  } catch (const Error& e) {
    fail(e.what(), "\n", options.help());
  }
}

void refuse_non_finite(const Checkpoint& checkpoint, const std::string& path) {
  NamedTensors tensors(checkpoint.tensors.begin(), checkpoint.tensors.end());
  const std::string found = first_non_finite(tensors);
  if (!found.empty())
    fail("checkpoint '", path, "': tensor ", found, ": the run that wrote it diverged — use an earlier checkpoint, "
         "or train again with a smaller --lr");
}

void apply_threads(const cxxopts::ParseResult& flags) {
  const int threads = setting<int>(flags, "threads");
  if (threads > 0) omp_set_num_threads(threads);
}

std::string quoted(const std::string& word) {
  std::string out = "'";
  for (const char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace minidl::cli
