// OpenMP's wait policy for the minidl command. libgomp's threads spin for a while after each parallel region,
// waiting for the next; while another program holds a core, a worker spinning there only delays the thread
// that waits for it (a step ran 2–30× slower than on one thread). libgomp reads OMP_WAIT_POLICY once, as it
// loads, so when another program keeps one of this process's CPUs busy at start, minidl runs itself again with
// OMP_WAIT_POLICY=passive. An idle machine keeps libgomp's default, whose spinning pays there; load that comes
// later is the Trainer's to meet (it moves to the fastest thread count, and an unused worker stops spinning).
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "cli.h"

namespace minidl::cli {
namespace {

constexpr const char* kNoteVariable = "MINIDL_WAIT_POLICY_NOTE";

struct CpuTimes {
  long long busy = 0, total = 0;
};

// /proc/stat's per-CPU lines: cpuN user nice system idle iowait irq softirq steal ... (idle and iowait are idle).
std::map<int, CpuTimes> read_cpu_times() {
  std::map<int, CpuTimes> out;
  std::ifstream in("/proc/stat");
  std::string line;
  while (std::getline(in, line) && line.rfind("cpu", 0) == 0) {
    int cpu = -1;
    long long v[8] = {};
    if (std::sscanf(line.c_str(), "cpu%d %lld %lld %lld %lld %lld %lld %lld %lld", &cpu, &v[0], &v[1], &v[2], &v[3],
                    &v[4], &v[5], &v[6], &v[7]) < 5)
      continue;  // the "cpu " total line, or a line of another form
    CpuTimes t;
    for (const long long x : v) t.total += x;
    t.busy = t.total - v[3] - v[4];
    out[cpu] = t;
  }
  return out;
}

// Whether the process will run parallel regions: a computing command, not pinned to one thread.
bool computes_on_threads(int argc, char** argv) {
  if (argc < 2) return false;
  const std::string command = argv[1];
  if (command != "train" && command != "evaluate" && command != "predict" && command != "recalibrate" &&
      command != "compare" && command != "gradcheck" && command != "bench")
    return false;
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads=1") || (!std::strcmp(argv[i], "--threads") && i + 1 < argc && !std::strcmp(argv[i + 1], "1")))
      return false;
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) return false;
  }
  const char* threads = std::getenv("OMP_NUM_THREADS");
  return !(threads && !std::strcmp(threads, "1"));
}

}  // namespace

void choose_wait_policy(int argc, char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT") || !computes_on_threads(argc, argv)) return;
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof mask, &mask) != 0 || CPU_COUNT(&mask) < 2) return;
  // 50 ms: five of the kernel's 10 ms ticks on each CPU. This process sleeps meanwhile, so what runs is others'.
  const std::map<int, CpuTimes> before = read_cpu_times();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const std::map<int, CpuTimes> after = read_cpu_times();
  for (const auto& [cpu, end] : after) {
    const auto start = before.find(cpu);
    if (cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &mask) || start == before.end()) continue;
    const long long total = end.total - start->second.total, busy = end.busy - start->second.busy;
    if (total <= 0 || 2 * busy < total) continue;
    const std::string note = "OpenMP threads wait passively (OMP_WAIT_POLICY=passive): CPU " + std::to_string(cpu) + " was " +
                             std::to_string(100 * busy / total) + "% busy at start; set OMP_WAIT_POLICY to choose";
    setenv("OMP_WAIT_POLICY", "passive", 1);
    setenv(kNoteVariable, note.c_str(), 1);
    execv("/proc/self/exe", argv);
    // No /proc, or exec refused: run on with libgomp's default.
    unsetenv("OMP_WAIT_POLICY");
    unsetenv(kNoteVariable);
    return;
  }
}

std::string wait_policy_note() {
  const char* note = std::getenv(kNoteVariable);
  return note ? note : "";
}

}  // namespace minidl::cli
