// `minidl bench`: training-step speed and memory of models (the document's in several configurations, or
// --model), each configuration in its own child process that runs its thread counts in turns, beside the GEMM
// throughput measured in that process between the step repeats, and beside libtorch when Debian's libtorch-dev was
// installed at build time.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <omp.h>
#include <sstream>

#include "bench_gemm.h"
#include "cli.h"
#include "minidl/internal/kernels.h"
#include "minidl/internal/text.h"
#include "minidl/autograd.h"
#include "minidl/denormal.h"
#include "minidl/losses.h"
#include "minidl/ops.h"

namespace minidl::cli {
namespace {
struct BenchConfig {
  std::string name;
  ModelConfig model;
  int64_t batch;
};

struct Measurement {
  double step_seconds = 0.0;  // median per step of the training loop: batch gathering and train_step
  double gflops = 0.0;        // the step's matrix products per second of train_step alone (median)
  double peak_gflops = 0.0;  // median of minidl's 1024^3 products timed between the step repeats
  double blas_gflops = NAN;  // the same of OpenBLAS's, when it is installed
  char blas[160] = "";       // which OpenBLAS and kernel, or why there is none (a fixed size: sent through a pipe)
  double peak_rss_mb = 0.0;  // of the training steps, read before any peak product ran
  double speedup = 1.0;      // the first thread count's step time over this one's, repeat by repeat (median)
  // With --phases: median seconds per step of each phase, in the order of kPhases.
  std::array<double, 5> phases{};
};

constexpr std::array<const char*, 5> kPhases = {"loader", "forward", "loss", "backward", "optimizer"};

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;
}

// Runs f in a forked child; the child sends back the `count` Measurements f returns.
template <class F>
std::vector<Measurement> in_child(size_t count, F f) {
  int fds[2];
  if (pipe(fds) != 0) fail("bench: pipe failed");
  const pid_t pid = fork();
  if (pid < 0) fail("bench: fork failed");
  const auto bytes = static_cast<ssize_t>(count * sizeof(Measurement));
  if (pid == 0) {
    close(fds[0]);
    std::vector<Measurement> m;
    try {
      m = f();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench child: %s\n", e.what());
      _exit(1);
    }
    const bool ok = m.size() == count && write(fds[1], m.data(), static_cast<size_t>(bytes)) == bytes;
    _exit(ok ? 0 : 1);
  }
  close(fds[1]);
  std::vector<Measurement> m(count);
  ssize_t got_bytes = 0;  // a pipe may hand over a long write in pieces
  while (got_bytes < bytes) {
    const ssize_t r = read(fds[0], reinterpret_cast<char*>(m.data()) + got_bytes, static_cast<size_t>(bytes - got_bytes));
    if (r <= 0) break;
    got_bytes += r;
  }
  const bool got = got_bytes == bytes;
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!got || !WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("bench: a measurement failed");
  return m;
}

// The steps of train_step, each phase timed apart (a clock read costs ~20 ns against a step of >= 100 us).
class PhasedStep {
 public:
  PhasedStep(Sequential& model, Optimizer& optimizer) : model_(model), optimizer_(optimizer) {}
  void operator()(DataLoader& loader, Batch& batch) {
    double t = now();
    const auto lap = [&](int phase) {
      const double t1 = now();
      seconds_[phase] += t1 - t;
      t = t1;
    };
    if (!loader.next(batch)) {
      loader.start_epoch();
      loader.next(batch);
    }
    lap(0);
    model_.train();
    const Tensor prediction = model_.forward(batch.x);
    lap(1);
    const Tensor loss = categorical_crossentropy(batch.one_hot, prediction);
    (void)count_correct(batch.labels, prediction);
    lap(2);
    optimizer_.zero_grad();
    loss.backward();
    lap(3);
    optimizer_.step();
    lap(4);
  }
  std::array<double, 5> take() { return std::exchange(seconds_, {}); }

 private:
  Sequential& model_;
  Optimizer& optimizer_;
  std::array<double, 5> seconds_{};
};

// One model trained by each thread count in turn: every repeat runs N steps with each count, one after the other,
// so the counts share the same minutes of a noisy host and their ratio (`speedup`, taken repeat by repeat) stays
// meaningful when the host's speed drifts. Thread counts give the same bits (tests), so the model trains on as one.
std::vector<Measurement> train_steps(const BenchConfig& c, const Dataset& data, int64_t steps, bool phased,
                                     const std::vector<int>& thread_counts) {
  const FlushDenormalGuard flush;  // as the Trainer does
  const auto model_ptr = build_model(c.model);
  Sequential& model = *model_ptr;
  Adam adam(model.parameters());
  DataLoader loader(data, {.batch_size = c.batch, .drop_last = true}, true);
  Batch batch;
  PhasedStep phased_step(model, adam);
  double in_train_step = 0.0;  // seconds inside train_step: forward, backward and Adam
  const auto step = [&] {
    if (phased) return phased_step(loader, batch);
    if (!loader.next(batch)) {
      loader.start_epoch();
      loader.next(batch);
    }
    const double t0 = now();
    train_step(model, adam, batch);
    in_train_step += now() - t0;
  };
  loader.start_epoch();
  // Peak and steps take turns, so a noisy neighbour weighs on both alike; memory is read after each count's first
  // repeat, when the step has allocated all it ever will with that many threads and before the peak's matrices
  // exist (so a later count's figure includes what the earlier ones allocated).
  const size_t counts = thread_counts.size();
  std::vector<std::vector<double>> per_step(counts), per_train_step(counts), peak_rates(counts), blas_rates(counts);
  std::vector<std::array<std::vector<double>, 5>> per_phase(counts);
  std::vector<Measurement> m(counts);
  std::optional<MinidlGemm> peak;
  std::unique_ptr<OpenBlasGemm> blas;
  for (int repeat = 0; repeat < 5; ++repeat) {
    for (size_t i = 0; i < counts; ++i) {
      omp_set_num_threads(thread_counts[i]);
      // Warm-up: the caches of this count's cores, the allocator and, the first time, page faults.
      for (int w = 0; w < (repeat == 0 ? 20 : 10); ++w) step();
      phased_step.take();
      in_train_step = 0.0;
      const double t0 = now();
      for (int64_t s = 0; s < steps; ++s) step();
      per_step[i].push_back((now() - t0) / static_cast<double>(steps));
      const auto phases = phased_step.take();
      for (size_t p = 0; p < phases.size(); ++p) per_phase[i][p].push_back(phases[p] / static_cast<double>(steps));
      if (phased) in_train_step = phases[1] + phases[2] + phases[3] + phases[4];
      per_train_step[i].push_back(in_train_step / static_cast<double>(steps));
      if (repeat == 0) m[i].peak_rss_mb = peak_rss_mb();
    }
    if (repeat == 0) {
      peak.emplace();
      peak->warm_up();
      std::string why;
      blas = OpenBlasGemm::open(why);
      if (blas) blas->warm_up(thread_counts[0]);
      for (Measurement& each : m) std::snprintf(each.blas, sizeof each.blas, "%s", blas ? blas->description().c_str() : why.c_str());
    }
    for (size_t i = 0; i < counts; ++i) {
      omp_set_num_threads(thread_counts[i]);
      peak->sample(3, peak_rates[i]);
      if (blas) blas->sample(3, thread_counts[i], blas_rates[i]);
    }
  }
  const double flops = model.training_product_flops({c.batch, data.features()});
  for (size_t i = 0; i < counts; ++i) {
    m[i].step_seconds = median(per_step[i]);
    m[i].gflops = flops / median(per_train_step[i]) / 1e9;
    m[i].peak_gflops = median(peak_rates[i]);
    if (blas) m[i].blas_gflops = median(blas_rates[i]);
    std::vector<double> ratios;
    for (size_t r = 0; r < per_step[i].size(); ++r) ratios.push_back(per_step[0][r] / per_step[i][r]);
    m[i].speedup = median(ratios);
    for (size_t p = 0; p < kPhases.size(); ++p) m[i].phases[p] = median(per_phase[i][p]);
  }
  return m;
}

// The libtorch side program, if it was built (only when libtorch-dev is installed): its steps/s, or NaN.
// libtorch's seconds per epoch of `epoch_steps` steps of the configuration, as text: "failed", or "n/a" when torch
// has no counterpart of one of its layers.
std::string libtorch_epoch(const std::string& program, const BenchConfig& c, int threads, int64_t steps, double epoch_steps) {
  // OpenBLAS (libtorch's BLAS on Debian) starts its own threads unless told: pin it to the same count.
  const std::string pin = "OPENBLAS_NUM_THREADS=" + std::to_string(threads) + " OMP_NUM_THREADS=" + std::to_string(threads);
  const Shape& in = c.model.input_shape;
  const std::string command = pin + " " + quoted(program) + " " + quoted(c.model.description) + " " +
                              quoted(c.model.norm) + " " + std::to_string(c.batch) + " " + std::to_string(threads) +
                              " " + std::to_string(steps) + " " + std::to_string(in[0]) + " " +
                              std::to_string(in.rank() > 1 ? in[1] : 1) + " " + std::to_string(c.model.classes);
  std::FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return "failed";
  char word[64] = "";
  const bool read = std::fscanf(pipe, "%63s", word) == 1;
  pclose(pipe);
  // The side program says n/a for a model torch has no counterpart for (ghost batches, renorm, RMSNorm).
  if (read && std::string(word) == "n/a") return "n/a";
  const double rate = read ? internal::parse_number(word) : NAN;
  if (!(rate > 0)) return "failed";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", epoch_steps / rate);
  return buf;
}

// ResNet-20 for 28x28 images as docs/models.md lays it out: a 16-filter stem, 3 stages of 3 basic blocks with
// 16, 32 and 64 filters (the first block of the second and third halving the size, its shortcut a projection),
// global average pooling and the classifier.
std::string resnet20_description(int64_t classes) {
  const auto conv = [](int filters, bool halve) {
    return "conv:" + std::to_string(filters) + "x3" + (halve ? ":strides=2" : "") + ":padding=same,bn";
  };
  const auto block = [&](int filters, bool halve) {
    return "residual(" + conv(filters, halve) + ",relu," + conv(filters, false) + "),relu";
  };
  std::string d = "conv:16x3:padding=same,bn,relu,3*(" + block(16, false) + ")";
  for (int filters : {32, 64}) d += "," + block(filters, true) + ",2*(" + block(filters, false) + ")";
  return d + ",gap,dense:" + std::to_string(classes) + ",softmax";
}

// --kernel: minidl's micro-kernel for every product of the run (the forked children inherit it), and OpenBLAS
// told to pick its kernel of the same width (the children and the libtorch program inherit the environment), so
// that an AVX-512 machine measures what an AVX2 one gets.
void force_kernel(const std::string& kernel) {
  if (kernel != "avx512" && kernel != "avx2" && kernel != "portable")
    fail("--kernel: '", kernel, "' is not a kernel; use avx512, avx2 or portable");
  if (!internal::use_gemm_kernel(kernel))
    fail("--kernel ", kernel, ": this CPU cannot run it (its best is ", internal::gemm_kernel_name(), ")");
  if (kernel == "avx512") setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
  if (kernel == "avx2") setenv("OPENBLAS_CORETYPE", "Haswell", 1);
}
}  // namespace

int bench_command(int argc, char** argv) {
  cxxopts::Options options("minidl bench", "Speed and memory of training steps, per configuration and thread count");
  options.add_options()("thread-counts", "comma-separated OpenMP thread counts", cxxopts::value<std::string>()->default_value("1,2"))(
      "steps", "timed steps per repeat (5 repeats, median)", cxxopts::value<int64_t>()->default_value("200"))(
      "quick", "only batch 32")(
      "phases", "also time each phase of the step (loader, forward, loss, backward, optimizer)")(
      "model", "measure this model (at batch 32 and 256) instead of the document's configurations",
      cxxopts::value<std::string>())("norm", "what each bn becomes, with --model", cxxopts::value<std::string>()->default_value("running"))(
      "match", "only configurations whose name contains this text", cxxopts::value<std::string>()->default_value(""))(
      "kernel", "force minidl's product kernel (avx512, avx2, portable) and OpenBLAS's to match (OPENBLAS_CORETYPE)",
      cxxopts::value<std::string>())(
      "data", "a directory of MNIST-format files", cxxopts::value<std::string>()->default_value(default_data_dir()))(
      "ranks", "instead: time epochs of one process against N under mpirun, in turns", cxxopts::value<int>())(
      "batch-sizes", "with --ranks: global batch sizes", cxxopts::value<std::string>()->default_value("256,1024"))(
      "epochs", "with --ranks: epochs per run (the first is not counted)", cxxopts::value<int64_t>()->default_value("6"))(
      "repeats", "with --ranks: runs of each", cxxopts::value<int64_t>()->default_value("5"))(
      "h,help", "show this help");
  const auto f = parse_flags(options, argc, argv, "minidl bench --thread-counts 1,2");
  if (f.count("ranks")) return bench_ranks_command(f);
  for (const char* ranks_only : {"batch-sizes", "epochs", "repeats"})
    if (f.count(ranks_only)) fail("--", ranks_only, " applies only with --ranks N");
  std::vector<int> thread_counts;
  std::stringstream list(f["thread-counts"].as<std::string>());
  for (std::string item; std::getline(list, item, ',');) {
    const int64_t t = internal::parse_integer(item).value_or(0);
    if (t < 1 || t > 4096) fail("--thread-counts: '", item, "' is not a thread count in [1, 4096]");
    thread_counts.push_back(static_cast<int>(t));
  }
  if (thread_counts.empty()) fail("--thread-counts: no thread count given (example: --thread-counts 1,2)");
  const int64_t steps = f["steps"].as<int64_t>();
  if (steps < 1) fail("--steps must be >= 1, got ", steps);
  if (f.count("kernel")) force_kernel(f["kernel"].as<std::string>());

  DataSpec spec;
  spec.train = f["data"].as<std::string>();
  const DatasetSplits data = load_logged(spec);
  const auto config = [&](std::string name, int64_t batch, const std::string& norm, const std::string& description) {
    ModelConfig m;
    m.description = description;
    m.norm = norm;
    m.input_shape = data.train.sample;
    m.classes = data.train.num_classes;
    return BenchConfig{std::move(name), m, batch};
  };
  const std::string document = document_model_description(64, data.train.num_classes);
  const std::string cnn = "conv:32x3,bn,relu,maxpool:2,conv:64x3,bn,relu,maxpool:2,flatten,dense:" +
                          std::to_string(data.train.num_classes) + ",softmax";
  const bool quick = f["quick"].as<bool>();
  const bool phased = f["phases"].as<bool>();
  std::vector<BenchConfig> configs;
  if (f.count("model")) {
    const std::string model = f["model"].as<std::string>();
    const std::string norm = norm_kind(f["norm"].as<std::string>()).name;
    for (int64_t batch : quick ? std::vector<int64_t>{32} : std::vector<int64_t>{32, 256})
      configs.push_back(config(model + ", batch " + std::to_string(batch), batch, norm, model));
  } else {
    configs.push_back(config("document model, batch 32", 32, "running", document));
    if (!quick) {
      configs.push_back(config("document model, batch 256", 256, "running", document));
      configs.push_back(config("batch 1024, hidden 1024", 1024, "running",
                               document_model_description(1024, data.train.num_classes)));
      for (const char* m : {"batchwise", "manual", "none"})
        configs.push_back(config(std::string("batch 32, mode ") + m, 32, m, document));
      configs.push_back(config("BN CNN, batch 32", 32, "running", cnn));
      configs.push_back(config("BN CNN, batch 128", 128, "running", cnn));
      configs.push_back(config("ResNet-20, batch 128", 128, "running", resnet20_description(data.train.num_classes)));
    }
  }
  const std::string match = f["match"].as<std::string>();
  std::erase_if(configs, [&](const BenchConfig& c) { return c.name.find(match) == std::string::npos; });
  if (configs.empty()) fail("--match '", match, "' selects no configuration");
  // The side program sits beside this executable when it was built.
  const std::string libtorch =
      (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "minidl_bench_libtorch").string();
  const bool have_libtorch = std::filesystem::exists(libtorch);

  const size_t width = std::max_element(configs.begin(), configs.end(), [](const auto& a, const auto& b) {
                         return a.name.size() < b.name.size();
                       })->name.size();
  std::printf("%-*s %7s %9s %9s %8s %10s %9s %6s %9s %12s %9s\n", static_cast<int>(width), "configuration", "threads",
              "steps/s", "s/epoch", "GFLOP/s", "GEMM peak", "OpenBLAS", "ratio", "peak RSS", "libtorch s/ep", "speed-up");
  std::string reference;  // the OpenBLAS the children found (only they open it)
  for (const BenchConfig& c : configs) {
    // Steps scaled so that a repeat does about as much work as 200 steps of the document's model at batch 32.
    const int64_t n = std::max<int64_t>(steps / 10 + 1, static_cast<int64_t>(static_cast<double>(steps) * 3e7 /
                      std::max(1.0, build_model(c.model)->training_product_flops({c.batch, data.train.features()}))));
    const std::vector<Measurement> ms = in_child(
        thread_counts.size(), [&] { return train_steps(c, data.train, std::min(n, steps), phased, thread_counts); });
    reference = ms.front().blas;
    const double epoch_steps = std::ceil(static_cast<double>(data.train.size()) / static_cast<double>(c.batch));
    for (size_t i = 0; i < thread_counts.size(); ++i) {
      const int threads = thread_counts[i];
      const Measurement& m = ms[i];
      std::string torch = "not installed";
      if (have_libtorch) {
        torch = libtorch_epoch(libtorch, c, threads, std::min(n, steps), epoch_steps);
      }
      // The share of the better of the two products: minidl's own peak flatters it where OpenBLAS is faster.
      const double better_peak = std::isnan(m.blas_gflops) ? m.peak_gflops : std::max(m.peak_gflops, m.blas_gflops);
      std::printf("%-*s %7d %9.0f %9.3f %8.1f %10.1f %9.1f %5.0f%% %7.0f MB %12s %8.2fx\n", static_cast<int>(width),
                  c.name.c_str(), threads, 1.0 / m.step_seconds, m.step_seconds * epoch_steps, m.gflops, m.peak_gflops,
                  m.blas_gflops, 100.0 * m.gflops / better_peak, m.peak_rss_mb, torch.c_str(), m.speedup);
      if (phased) {
        std::printf("    us per step:");
        for (size_t p = 0; p < kPhases.size(); ++p) std::printf(" %s %.1f", kPhases[p], m.phases[p] * 1e6);
        std::printf("\n");
      }
      std::fflush(stdout);
    }
  }
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  std::printf("\nminidl's product kernel: %s. Reference product: %s%s%s.\n", internal::gemm_kernel_name(),
              reference.c_str(), coretype ? ", OPENBLAS_CORETYPE=" : "", coretype ? coretype : "");
  std::printf("\nsteps/s and s/epoch (%lld samples): the training loop, batch gathering included. GFLOP/s: the "
              "step's matrix products (forward and backward) per second of train_step (forward, backward, Adam); "
              "GEMM peak and OpenBLAS: 1024^3 products through minidl's matmul and OpenBLAS's sgemm (nan when it is "
              "not installed), the median of 15 of each timed between the step repeats in the same process and threads; "
              "ratio: GFLOP/s over the better of the two. "
              "speed-up: the first thread count's time per step over this one's, in repeats that take turns in one "
              "process (the median of 5 ratios). libtorch: the same model in PyTorch, n/a where it has no "
              "counterpart of a layer (ghost batches, renorm, frozen statistics, RMSNorm).\n",
              static_cast<long long>(data.train.size()));
  return 0;
}

}  // namespace minidl::cli
