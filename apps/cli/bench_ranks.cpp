// `minidl bench --ranks N`: the epoch time of one process against N under mpirun (one thread each), the two runs
// taking turns, so that a host whose speed drifts weighs on both alike (docs/distributed.md has the recipe by hand).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "cli.h"
#include "minidl/distributed.h"

namespace minidl::cli {
namespace {
// `mpirun` from PATH, or empty.
std::string find_mpirun() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');)
    if (!dir.empty() && access((dir + "/mpirun").c_str(), X_OK) == 0) return dir + "/mpirun";
  return "";
}

// Runs a training command and returns the median "seconds" of its epochs after the first (which pays for
// start-up: page faults, the allocator, the caches). Fails with the command and the end of its output.
double median_epoch_seconds(const std::string& command) {
  std::FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) fail("bench --ranks: could not start: ", command);
  std::string output;
  std::vector<double> seconds;
  char line[4096];
  while (std::fgets(line, sizeof line, pipe)) {
    output += line;
    if (line[0] != '{') continue;
    const nlohmann::json epoch = nlohmann::json::parse(line, nullptr, false);
    if (epoch.is_object() && epoch.contains("epoch") && epoch.contains("seconds") && epoch["seconds"].is_number())
      seconds.push_back(epoch["seconds"].get<double>());
  }
  const int status = pclose(pipe);
  if (status != 0 || seconds.size() < 2) {
    const std::string tail = output.size() > 2000 ? output.substr(output.size() - 2000) : output;
    fail("bench --ranks: this run ", status != 0 ? "failed" : "printed fewer than 2 epochs", ":\n  ", command, "\n", tail);
  }
  seconds.erase(seconds.begin());
  return median(seconds);
}
}  // namespace

int bench_ranks_command(const cxxopts::ParseResult& f) {
  for (const char* other : {"thread-counts", "steps", "quick", "phases", "match"})
    if (f.count(other))
      fail("--", other, " times the thread table; --ranks times whole epochs of `minidl train` instead (use --epochs, "
           "--repeats and --batch-sizes with it)");
  const int ranks = f["ranks"].as<int>();
  const int64_t epochs = f["epochs"].as<int64_t>(), repeats = f["repeats"].as<int64_t>();
  if (ranks < 2) fail("--ranks: compares one process with N >= 2 under mpirun, got ", ranks);
  if (epochs < 2) fail("--epochs: at least 2 (the first epoch is not counted), got ", epochs);
  if (repeats < 1) fail("--repeats must be >= 1, got ", repeats);
  std::vector<int64_t> batch_sizes;
  std::stringstream list(f["batch-sizes"].as<std::string>());
  for (std::string item; std::getline(list, item, ',');) {
    const int64_t b = std::atoll(item.c_str());
    if (b < 1) fail("--batch-sizes: '", item, "' is not a batch size >= 1");
    if (b % ranks != 0)
      fail("--batch-sizes: the global batch ", b, " does not split evenly over ", ranks, " processes: choose a multiple of ",
           ranks);
    batch_sizes.push_back(b);
  }
  if (batch_sizes.empty()) fail("--batch-sizes: no batch size given (example: --batch-sizes 256,1024)");
  if (!Communicator::available())
    fail("--ranks: this minidl was built without MPI; install libopenmpi-dev and rebuild (CMake finds it)");
  if (Communicator::world().size() > 1) fail("--ranks: run `minidl bench --ranks` itself without mpirun; it starts mpirun");
  const std::string mpirun = find_mpirun();
  if (mpirun.empty()) fail("--ranks: mpirun is not on PATH; install openmpi-bin");
  if (geteuid() == 0 && !(std::getenv("OMPI_ALLOW_RUN_AS_ROOT") && std::getenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM")))
    fail("--ranks: as root, mpirun runs only with OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 in the "
         "environment: set both, or run as another user");

  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::string train = quoted(self) + " train --epochs " + std::to_string(epochs) + " --json --data " +
                      quoted(f["data"].as<std::string>()) + " --norm " + quoted(f["norm"].as<std::string>());
  if (f.count("model")) train += " --model " + quoted(f["model"].as<std::string>());
  const bool oversubscribe = static_cast<unsigned>(ranks) > std::max(1u, std::thread::hardware_concurrency());
  const std::string launcher = quoted(mpirun) + " -np " + std::to_string(ranks) + (oversubscribe ? " --oversubscribe" : "") +
                               " -x OMP_NUM_THREADS=1 ";

  std::printf("%12s %7s %20s %20s %9s\n", "global batch", "repeat", "1 process s/epoch",
              (std::to_string(ranks) + " processes s/epoch").c_str(), "speed-up");
  std::fflush(stdout);
  for (const int64_t batch : batch_sizes) {
    const std::string args = " --batch-size " + std::to_string(batch);
    std::vector<double> one, many, ratios;
    for (int64_t r = 0; r < repeats; ++r) {
      one.push_back(median_epoch_seconds("OMP_NUM_THREADS=1 " + train + " --threads 1" + args));
      many.push_back(median_epoch_seconds(launcher + train + args));
      ratios.push_back(one.back() / many.back());
      std::printf("%12lld %7lld %20.4f %20.4f %8.2fx\n", static_cast<long long>(batch), static_cast<long long>(r + 1),
                  one.back(), many.back(), ratios.back());
      std::fflush(stdout);
    }
    const double one_median = median(one), many_median = median(many);
    std::printf("%12lld %7s %20.4f %20.4f %8.2fx  (run by run %.2f-%.2fx)\n", static_cast<long long>(batch), "median",
                one_median, many_median, one_median / many_median, *std::min_element(ratios.begin(), ratios.end()),
                *std::max_element(ratios.begin(), ratios.end()));
    std::fflush(stdout);
  }
  std::printf("\ns/epoch: the median `seconds` of `minidl train --json` over epochs 2-%lld (the training loop only), "
              "one OpenMP thread per process, the runs taking turns. speed-up: 1 process's s/epoch over %d processes'; "
              "the median row's is the ratio of the medians.\n",
              static_cast<long long>(epochs), ranks);
  return 0;
}

}  // namespace minidl::cli
