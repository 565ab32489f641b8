// `minidl bench`: training-step speed and memory of the document's model in several configurations, each in
// its own child process (so each peak RSS is its own), beside the GEMM throughput measured in that process
// between the step repeats, and beside libtorch when Debian's libtorch-dev was installed at build time.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <omp.h>
#include <sstream>

#include "cli.h"
#include "minidl/autograd.h"
#include "minidl/ops.h"

namespace minidl::cli {
namespace {
struct BenchConfig {
  std::string name;
  NormMode mode;
  int64_t batch, hidden;
};

struct Measurement {
  double step_seconds = 0.0;  // median per step of the training loop: batch gathering and train_step
  double gflops = 0.0;        // the step's matrix products per second of train_step alone (median)
  double peak_gflops = 0.0;  // median of the 1024^3 products timed between the step repeats
  double peak_rss_mb = 0.0;  // of the training steps, read before any peak product ran
};

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;
}

// Matrix-product FLOPs of one training step: forward x·W1 and h·W2, backward dW1 = xᵀ·g, dW2 = hᵀ·g,
// dh = g·W2ᵀ (the input needs no gradient).
double step_flops(int64_t batch, int64_t hidden) {
  const double b = batch, h = hidden;
  return 2 * b * 784 * h + 2 * b * h * 10 + 2 * 784 * b * h + 2 * h * b * 10 + 2 * b * 10 * h;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Runs f in a forked child with `threads` OpenMP threads; the child sends back a Measurement.
template <class F>
Measurement in_child(int threads, F f) {
  int fds[2];
  if (pipe(fds) != 0) fail("bench: pipe failed");
  const pid_t pid = fork();
  if (pid < 0) fail("bench: fork failed");
  if (pid == 0) {
    close(fds[0]);
    omp_set_num_threads(threads);
    Measurement m{};
    try {
      m = f();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench child: %s\n", e.what());
      _exit(1);
    }
    const bool ok = write(fds[1], &m, sizeof m) == static_cast<ssize_t>(sizeof m);
    _exit(ok ? 0 : 1);
  }
  close(fds[1]);
  Measurement m{};
  const bool got = read(fds[0], &m, sizeof m) == static_cast<ssize_t>(sizeof m);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!got || !WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("bench: a measurement failed");
  return m;
}

// The GEMM peak: 1024^3 products through the same matmul the layers use, with the same threads.
class GemmPeak {
 public:
  GemmPeak() : a_(Tensor::uniform({1024, 1024}, -1, 1)), b_(Tensor::uniform({1024, 1024}, -1, 1)) {}
  void warm_up() {
    const NoGradGuard no_grad;
    matmul(a_, b_);
  }
  // Times `count` products, keeping each one's rate.
  void sample(int count) {
    const NoGradGuard no_grad;
    for (int i = 0; i < count; ++i) {
      const double t0 = now();
      matmul(a_, b_);
      rates_.push_back(2.0 * 1024 * 1024 * 1024 / (now() - t0) / 1e9);
    }
  }
  double median_gflops() const { return median(rates_); }

 private:
  Tensor a_, b_;
  std::vector<double> rates_;
};

Measurement train_steps(const BenchConfig& c, const Dataset& data, int64_t steps) {
  TrainConfig config;
  config.mode = c.mode;
  config.hidden = c.hidden;
  clear_session();
  Generator gen(config.seed);
  const auto model_ptr = make_document_model(c.mode, config.model_options(), gen);
  Sequential& model = *model_ptr;
  Adam adam(model.parameters());
  DataLoader loader(data, {.batch_size = c.batch, .drop_last = true}, true);
  Batch batch;
  double in_train_step = 0.0;  // seconds inside train_step: forward, backward and Adam
  const auto step = [&] {
    if (!loader.next(batch)) {
      loader.start_epoch();
      loader.next(batch);
    }
    const double t0 = now();
    train_step(model, adam, batch);
    in_train_step += now() - t0;
  };
  loader.start_epoch();
  for (int i = 0; i < 20; ++i) step();  // warm-up: caches, allocator, page faults
  // Peak and steps take turns, so a noisy neighbour weighs on both alike; memory is read after the first
  // repeat, when the step has allocated all it ever will and before the peak's matrices exist.
  std::vector<double> per_step, per_train_step;
  double rss = 0.0;
  std::optional<GemmPeak> peak;
  for (int repeat = 0; repeat < 5; ++repeat) {
    in_train_step = 0.0;
    const double t0 = now();
    for (int64_t i = 0; i < steps; ++i) step();
    per_step.push_back((now() - t0) / static_cast<double>(steps));
    per_train_step.push_back(in_train_step / static_cast<double>(steps));
    if (repeat == 0) {
      rss = peak_rss_mb();
      peak.emplace();
      peak->warm_up();
    }
    peak->sample(3);
  }
  return {median(per_step), step_flops(c.batch, c.hidden) / median(per_train_step) / 1e9, peak->median_gflops(), rss};
}

// The libtorch side program, if it was built (only when libtorch-dev is installed): its steps/s, or NaN.
double libtorch_steps_per_second(const std::string& program, const BenchConfig& c, int threads, int64_t steps) {
  // OpenBLAS (libtorch's BLAS on Debian) starts its own threads unless told: pin it to the same count.
  const std::string pin = "OPENBLAS_NUM_THREADS=" + std::to_string(threads) + " OMP_NUM_THREADS=" + std::to_string(threads);
  const std::string command = pin + " " + program + " " + to_string(c.mode) + " " + std::to_string(c.batch) + " " +
                              std::to_string(c.hidden) + " " + std::to_string(threads) + " " + std::to_string(steps);
  std::FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return NAN;
  double rate = NAN;
  if (std::fscanf(pipe, "%lf", &rate) != 1) rate = NAN;
  pclose(pipe);
  return rate;
}
}  // namespace

int bench_command(int argc, char** argv) {
  cxxopts::Options options("minidl bench", "Speed and memory of training steps, per configuration and thread count");
  options.add_options()("thread-counts", "comma-separated OpenMP thread counts", cxxopts::value<std::string>()->default_value("1,2"))(
      "steps", "timed steps per repeat (5 repeats, median)", cxxopts::value<int64_t>()->default_value("200"))(
      "quick", "only the document's model at batch 32")(
      "match", "only configurations whose name contains this text", cxxopts::value<std::string>()->default_value(""))(
      "data", "directory with the MNIST-format files", cxxopts::value<std::string>()->default_value(default_data_dir()))(
      "h,help", "show this help");
  const auto f = parse_flags(options, argc, argv, "minidl bench --thread-counts 1,2");
  std::vector<int> thread_counts;
  std::stringstream list(f["thread-counts"].as<std::string>());
  for (std::string item; std::getline(list, item, ',');) {
    const int t = std::atoi(item.c_str());
    if (t < 1) fail("--thread-counts: '", item, "' is not a thread count >= 1");
    thread_counts.push_back(t);
  }
  const int64_t steps = f["steps"].as<int64_t>();
  if (steps < 1) fail("--steps must be >= 1, got ", steps);

  std::vector<BenchConfig> configs = {{"document model, batch 32", NormMode::running, 32, 64}};
  if (!f["quick"].as<bool>()) {
    configs.push_back({"document model, batch 256", NormMode::running, 256, 64});
    configs.push_back({"batch 1024, hidden 1024", NormMode::running, 1024, 1024});
    for (NormMode m : {NormMode::batchwise, NormMode::manual, NormMode::none})
      configs.push_back({"batch 32, mode " + to_string(m), m, 32, 64});
  }
  const std::string match = f["match"].as<std::string>();
  std::erase_if(configs, [&](const BenchConfig& c) { return c.name.find(match) == std::string::npos; });
  if (configs.empty()) fail("--match '", match, "' selects no configuration");
  const DatasetSplits data = load_data(f["data"].as<std::string>());
  // The side program sits beside this executable when it was built.
  const std::string libtorch =
      (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "minidl_bench_libtorch").string();
  const bool have_libtorch = std::filesystem::exists(libtorch);

  std::printf("%-28s %7s %9s %9s %8s %10s %6s %9s %12s\n", "configuration", "threads", "steps/s", "s/epoch",
              "GFLOP/s", "GEMM peak", "ratio", "peak RSS", "libtorch s/ep");
  for (int threads : thread_counts) {
    for (const BenchConfig& c : configs) {
      const Measurement m = in_child(threads, [&] { return train_steps(c, data.train, c.batch >= 1024 ? steps / 10 + 1 : steps); });
      const double epoch_steps = std::ceil(60000.0 / static_cast<double>(c.batch));
      std::string torch = "not installed";
      if (have_libtorch) {
        const double rate = libtorch_steps_per_second(libtorch, c, threads, c.batch >= 1024 ? steps / 10 + 1 : steps);
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.3f", epoch_steps / rate);
        torch = std::isnan(rate) ? "failed" : buf;
      }
      std::printf("%-28s %7d %9.0f %9.3f %8.1f %10.1f %5.0f%% %7.0f MB %12s\n", c.name.c_str(), threads,
                  1.0 / m.step_seconds, m.step_seconds * epoch_steps, m.gflops, m.peak_gflops,
                  100.0 * m.gflops / m.peak_gflops, m.peak_rss_mb, torch.c_str());
      std::fflush(stdout);
    }
  }
  std::printf("\nsteps/s and s/epoch (60,000 samples): the training loop, batch gathering included. GFLOP/s: the "
              "step's matrix products (forward and backward) per second of train_step (forward, backward, Adam); "
              "ratio: of the GEMM peak (1024^3 products, the median of 15 timed between the step repeats in the same process and threads).\n");
  return 0;
}

}  // namespace minidl::cli
