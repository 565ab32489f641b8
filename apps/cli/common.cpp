// What the commands share: flag parsing with clear errors, --threads, the terminal progress bar.
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "cli.h"

namespace minidl::cli {
namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

void add_common_flags(cxxopts::Options& options) {
  options.add_options("common")("data", "directory with the MNIST-format files (or set MINIDL_DATA)",
                                cxxopts::value<std::string>()->default_value(default_data_dir()))(
      "threads", "OpenMP threads (0: the default)", cxxopts::value<int>()->default_value("0"))(
      "seed", "seed for initial weights and shuffling", cxxopts::value<uint64_t>()->default_value("1"))(
      "h,help", "show this help");
}

cxxopts::ParseResult parse_flags(cxxopts::Options& options, int argc, char** argv, const std::string& example) {
  try {
    auto result = options.parse(argc, argv);
    if (result.count("help")) {
      std::printf("%s\nExample:\n  %s\n", options.help().c_str(), example.c_str());
      std::exit(0);
    }
    if (!result.unmatched().empty()) fail("unexpected argument '", result.unmatched()[0], "'");
    return result;
  } catch (const cxxopts::exceptions::exception& e) {
    fail(e.what(), "\n", options.help());
  } catch (const Error& e) {
    fail(e.what(), "\n", options.help());
  }
}

void apply_threads(const cxxopts::ParseResult& flags) {
  const int threads = flags["threads"].as<int>();
  if (threads < 0) fail("--threads must be >= 0, got ", threads);
  if (threads > 0) omp_set_num_threads(threads);
}

Progress::Progress(std::string label) : label_(std::move(label)), active_(::isatty(STDERR_FILENO)), start_(now()) {}

Progress::~Progress() { finish(); }

void Progress::update(int64_t done, int64_t total, double loss, double accuracy) {
  if (!active_) return;
  const double t = now();
  if (done < total && t - last_draw_ < 0.1) return;  // redraw at most ten times a second
  last_draw_ = t;
  constexpr int kWidth = 24;
  const int filled = total ? static_cast<int>(kWidth * done / total) : kWidth;
  const double rate = done / std::max(t - start_, 1e-9);
  std::fprintf(stderr, "\r%s [%-*s] %lld/%lld  loss %.4f  accuracy %.4f  %.0f steps/s  ETA %.0f s ", label_.c_str(),
               kWidth, std::string(filled, '=').c_str(), static_cast<long long>(done), static_cast<long long>(total),
               loss, accuracy, rate, rate > 0 ? (total - done) / rate : 0.0);
  std::fflush(stderr);
}

void Progress::finish() {
  if (active_ && last_draw_ >= 0) std::fprintf(stderr, "\r\033[K");
  last_draw_ = -1.0;
}

}  // namespace minidl::cli
