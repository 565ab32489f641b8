// Tests of the thread-count choice: ThreadTuner's timing logic on made-up step times, a Trainer that switches
// thread counts while it trains giving the bytes of a one-thread run, and the command line's thread choice and
// OpenMP wait policy.
#include <omp.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

#include "cli_helpers.h"
#include "helpers.h"
#include "minidl/models.h"
#include "minidl/nn.h"
#include "minidl/callbacks.h"
#include "minidl/train.h"

using namespace minidl;
using test::TempDir, test::read_bytes;

namespace {
// Feeds the tuner steps of `samples` samples taking seconds_per_sample(threads) each; returns the steps run at
// each count and how many decisions it reported.
struct Fed {
  std::map<int, int> steps;
  int reported = 0;
};
Fed feed(ThreadTuner& tuner, int steps, const std::function<double(int)>& seconds_per_sample, int64_t samples = 32) {
  Fed fed;
  for (int i = 0; i < steps; ++i) {
    const int n = tuner.next();
    ++fed.steps[n];
    fed.reported += tuner.record(seconds_per_sample(n) * static_cast<double>(samples), samples);
  }
  return fed;
}
}  // namespace

TEST_CASE("ThreadTuner times each count in turns, then keeps the fastest and reports it once", "[threads]") {
  ThreadTuner tuner({.candidates = {2, 1}, .warmup_seconds = 0, .block_steps = 4, .block_seconds = 0, .blocks = 3});
  CHECK(tuner.next() == 2);  // OpenMP's own default first
  CHECK(tuner.choice().threads == 0);
  // Each count: an untimed first step, then 3 blocks of 4; 26 steps decide.
  const Fed trial = feed(tuner, 26, [](int n) { return n == 1 ? 8e-6 : 6e-6; });
  CHECK(trial.reported == 1);
  CHECK(trial.steps == std::map<int, int>{{1, 13}, {2, 13}});
  CHECK(tuner.choice().threads == 2);
  CHECK(tuner.next() == 2);
  REQUIRE(tuner.choice().timed.size() == 2);
  CHECK(tuner.choice().timed[0].first == 1);
  CHECK(tuner.choice().timed[0].second == Approx(8e-6 * 32));
  CHECK(tuner.choice().timed[1].first == 2);
  CHECK(tuner.choice().timed[1].second == Approx(6e-6 * 32));
  CHECK(tuner.choice().str() == "2 threads (steps timed: 1 thread 256 µs, 2 threads 192 µs; first trial)");
  // Steady times: no new trial, nothing reported.
  const Fed steady = feed(tuner, 400, [](int n) { return n == 1 ? 8e-6 : 6e-6; });
  CHECK(steady.steps == std::map<int, int>{{2, 400}});
  CHECK(steady.reported == 0);
}

TEST_CASE("a block lasts block_seconds at least, so a rare slow step is averaged over many", "[threads]") {
  // Steps of 320 µs on one thread, 256 on two: a block of 10 ms holds 32 of the one (31 make 9.92 ms), 40 of the other.
  ThreadTuner tuner({.candidates = {1, 2}, .warmup_seconds = 0, .block_steps = 4, .block_seconds = 0.01, .blocks = 3});
  const Fed fed = feed(tuner, 218, [](int n) { return n == 1 ? 1e-5 : 8e-6; });
  CHECK(fed.steps == std::map<int, int>{{1, 97}, {2, 121}});
  CHECK(fed.reported == 1);
  CHECK(tuner.choice().threads == 2);
}

TEST_CASE("a count's first steps are not timed until warmup_seconds have passed", "[threads]") {
  // 320 µs steps: 0.002 s of warm-up is 7 steps (6 make 1.92 ms), the first included.
  ThreadTuner tuner({.candidates = {1, 2}, .warmup_seconds = 0.002, .block_steps = 4, .block_seconds = 0, .blocks = 3});
  const Fed fed = feed(tuner, 2 * (7 + 12), [](int) { return 1e-5; });
  CHECK(fed.steps == std::map<int, int>{{1, 19}, {2, 19}});
  CHECK(fed.reported == 1);
  CHECK(tuner.choice().threads == 1);  // equal times: the margin keeps the smaller count
}

TEST_CASE("a re-trial warms up again the counts the steps were not running on", "[threads]") {
  ThreadTuner tuner({.candidates = {1, 2}, .warmup_seconds = 0.002, .block_steps = 4, .block_seconds = 0, .blocks = 3,
                     .retime_seconds = 0.01, .first_retime_seconds = 0.01});
  feed(tuner, 38, [](int) { return 1e-5; });
  REQUIRE(tuner.choice().threads == 1);
  // 0.01 s at one thread: 32 steps, whole blocks of 4 — then the re-trial: 12 more at one thread, and at two 7
  // untimed (0.002 s: 6 make 1.92 ms) and 12.
  const Fed fed = feed(tuner, 32 + 12 + 7 + 12, [](int) { return 1e-5; });
  CHECK(fed.steps == std::map<int, int>{{1, 44}, {2, 19}});
  CHECK(tuner.choice().reason == "periodic re-timing");
}

TEST_CASE("a count far slower than the best leaves the trial after one block", "[threads]") {
  // Another program holds the second core: two threads wait for it, ten times slower.
  ThreadTuner tuner({.candidates = {1, 2}, .warmup_seconds = 0, .block_steps = 4, .block_seconds = 0, .blocks = 3});
  const Fed fed = feed(tuner, 30, [](int n) { return n == 1 ? 1e-5 : 1e-4; });
  CHECK(tuner.choice().threads == 1);
  CHECK(fed.steps.at(2) == 5);  // its first step and one block
  CHECK(fed.reported == 1);
}

TEST_CASE("a larger count must beat a smaller one by the margin", "[threads]") {
  ThreadTuner tuner({.candidates = {1, 2}, .warmup_seconds = 0, .block_seconds = 0, .margin = 0.03});
  feed(tuner, 40, [](int n) { return n == 1 ? 1e-5 : 0.99e-5; });
  CHECK(tuner.choice().threads == 1);
  ThreadTuner faster({.candidates = {1, 2}, .warmup_seconds = 0, .block_seconds = 0, .margin = 0.03});
  feed(faster, 40, [](int n) { return n == 1 ? 1e-5 : 0.9e-5; });
  CHECK(faster.choice().threads == 2);
}

TEST_CASE("drifting step times start a new trial, which moves to the count now fastest", "[threads]") {
  ThreadTuner tuner({.candidates = {1, 2}, .warmup_seconds = 0, .block_seconds = 0, .drift = 0.3, .window = 8, .retime_seconds = 1e9, .first_retime_seconds = 1e9});
  bool busy = false;
  const auto times = [&](int n) { return n == 1 ? 1e-5 : busy ? 4e-5 : 6e-6; };
  feed(tuner, 40, times);
  REQUIRE(tuner.choice().threads == 2);
  busy = true;  // another program takes the second core
  const Fed fed = feed(tuner, 200, times);
  CHECK(fed.reported == 1);
  CHECK(tuner.choice().threads == 1);
  CHECK_THAT(tuner.choice().reason, Catch::StartsWith("step times drifted"));
  CHECK(tuner.choice().step > 40);
}

TEST_CASE("after retime_seconds one thread's steady steps are timed against more threads again", "[threads]") {
  // One thread's steps do not slow down or speed up when the other core frees: only a new trial sees it.
  ThreadTuner tuner({.candidates = {1, 2}, .warmup_seconds = 0, .block_seconds = 0, .retime_seconds = 0.5, .first_retime_seconds = 0.5});
  bool busy = true;
  const auto times = [&](int n) { return n == 1 ? 1e-5 : busy ? 4e-5 : 6e-6; };
  feed(tuner, 40, times);
  REQUIRE(tuner.choice().threads == 1);
  busy = false;
  feed(tuner, 100, times);  // 100 steps of 320 µs: 0.032 s, not yet due
  CHECK(tuner.choice().threads == 1);
  feed(tuner, 2000, times);  // 0.64 s: a trial ran
  CHECK(tuner.choice().threads == 2);
  CHECK(tuner.choice().reason == "periodic re-timing");
}

TEST_CASE("ThreadTuner: one candidate times nothing, and bad options are refused by name", "[threads]") {
  ThreadTuner one({.candidates = {3}});
  CHECK(one.fixed());
  CHECK(one.next() == 3);
  CHECK(one.choice().threads == 3);
  CHECK(feed(one, 50, [](int) { return 1e-5; }).reported == 0);
  // The default candidates: 1, 2, 4, … and the maximum.
  const int previous = omp_get_max_threads();
  omp_set_num_threads(6);
  CHECK(ThreadTuner().options().candidates == std::vector<int>{1, 2, 4, 6});
  omp_set_num_threads(previous);
  CHECK_THROWS_WITH(ThreadTuner({.candidates = {0, 2}}), Catch::Contains("candidate thread count must be >= 1, got 0"));
  CHECK_THROWS_WITH(ThreadTuner({.block_steps = 0}), Catch::Contains("block_steps must be >= 1"));
  CHECK_THROWS_WITH(ThreadTuner({.cutoff = 1.0}), Catch::Contains("cutoff must be > 1"));
  CHECK_THROWS_WITH(ThreadTuner({.block_seconds = -1}), Catch::Contains("block_seconds must be >= 0"));
  CHECK_THROWS_WITH(ThreadTuner({.warmup_seconds = NAN}), Catch::Contains("warmup_seconds must be >= 0"));
  CHECK_THROWS_WITH(ThreadTuner({.drift = 0.0}), Catch::Contains("drift must be > 0"));
}

TEST_CASE("a Trainer that switches thread counts while it trains gives a one-thread run's bytes", "[threads]") {
  // Batch 256 through dense:512 runs the threaded products, the batch-norm kernels, the loader's gather and
  // Adam's split on two threads. The tuner re-times after every block of one step: the count changes all along.
  const DatasetSplits data = make_synthetic(1024, 256, 5);
  const auto run = [&](int threads, std::map<int, int>* seen) {
    ModelConfig c;
    c.description = "dense:512,relu,bn,dropout:0.2,dense:10,softmax";
    c.seed = 3;
    const auto model = build_model(c);
    Adam adam(model->named_parameters(true));
    DataLoader loader(data.train, {.batch_size = 256, .seed = 4}, true);
    Trainer trainer(*model, adam, loader,
                    {.epochs = 3, .validation = &data.test, .threads = threads,
                     .thread_tuning = {.candidates = {1, 2}, .warmup_seconds = 0, .block_steps = 1, .block_seconds = 0, .blocks = 1, .retime_seconds = 0.0}});
    auto record = std::make_shared<LambdaCallback>();
    record->step_end = [&](Trainer&, const StepResult&) { if (seen) ++(*seen)[omp_get_max_threads()]; };
    trainer.add_callback(record);
    const int before = omp_get_max_threads();
    trainer.fit();
    CHECK(omp_get_max_threads() == before);  // the caller's count is restored
    std::vector<std::vector<float>> state;
    for (const auto& [name, t] : model->state()) state.push_back(t.to_vector());
    return state;
  };
  std::map<int, int> switching, fixed;
  const auto one = run(1, &fixed);
  CHECK(fixed == std::map<int, int>{{1, 12}});  // threads 1: every step on one
  const auto adaptive = run(0, &switching);
  CHECK(switching.at(1) >= 3);
  CHECK(switching.at(2) >= 3);
  CHECK(one == adaptive);
}

TEST_CASE("the Trainer reports its thread choice to the callbacks, and refuses a bad count", "[threads]") {
  const DatasetSplits data = make_synthetic(512, 64, 6);
  ModelConfig c;
  c.seed = 1;
  const auto model = build_model(c);
  Adam adam(model->named_parameters(true));
  DataLoader loader(data.train, {.batch_size = 16, .seed = 2}, true);
  Trainer trainer(*model, adam, loader, {.epochs = 1, .thread_tuning = {.candidates = {1, 2}, .warmup_seconds = 0, .block_seconds = 0}});
  std::vector<ThreadChoice> reported;
  auto record = std::make_shared<LambdaCallback>();
  record->threads_chosen = [&](Trainer&, const ThreadChoice& choice) { reported.push_back(choice); };
  trainer.add_callback(record);
  CHECK(trainer.threads() == 0);
  trainer.fit();
  REQUIRE(!reported.empty());
  CHECK(reported.front().reason == "first trial");
  CHECK((reported.front().threads == 1 || reported.front().threads == 2));
  CHECK(trainer.threads() == reported.back().threads);
  CHECK_THROWS_WITH(Trainer(*model, adam, loader, {.threads = -1}), Catch::Contains("threads must be 0"));
}

namespace {
size_t occurrences(const std::string& text, const std::string& word) {
  size_t n = 0;
  for (size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) ++n;
  return n;
}

// A busy loop pinned to one CPU of this process's, for as long as it lives.
class BusyLoop {
 public:
  explicit BusyLoop(int cpu) : pid_(fork()) {
    if (pid_ == 0) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      sched_setaffinity(0, sizeof one, &one);
      for (;;) asm volatile("" ::: "memory");  // spins; the empty asm keeps the compiler from dropping the loop
    }
  }
  ~BusyLoop() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  BusyLoop(const BusyLoop&) = delete;
  BusyLoop& operator=(const BusyLoop&) = delete;

 private:
  pid_t pid_;
};
}  // namespace

TEST_CASE("minidl train times the thread counts by default, logs the choice once, and saves a one-thread run's bytes", "[cli]") {
  // CTest gives every test OMP_NUM_THREADS=1; without it the default is every core, and the Trainer times 1 and 2.
  using test::minidl_cli, test::data_flag;
  TempDir dir;
  // 1,600 steps: the first trial needs 0.55 s of them at least (0.2 s of warm-up and 3 blocks of 25 ms a count).
  const std::string common = "train --overwrite --epochs 40 --batch-size 16 --hidden 512 " + data_flag();
  const test::Run adaptive = minidl_cli(common + " --save " + dir.file("adaptive"), dir, "env -u OMP_NUM_THREADS OMP_NUM_THREADS=2");
  INFO(adaptive.err);
  REQUIRE(adaptive.status == 0);
  CHECK(occurrences(adaptive.err, "first trial") == 1);
  CHECK_THAT(adaptive.err, Catch::Contains("(steps timed: 1 thread ") && Catch::Contains(", 2 threads "));
  const test::Run one = minidl_cli(common + " --threads 1 --save " + dir.file("one"), dir);
  REQUIRE(one.status == 0);
  CHECK(read_bytes(dir.file("one")) == read_bytes(dir.file("adaptive")));
  // --threads N fixes the count: nothing is timed.
  const test::Run two = minidl_cli(common + " --threads 2", dir, "env -u OMP_NUM_THREADS");
  REQUIRE(two.status == 0);
  CHECK_THAT(two.err, !Catch::Contains("steps timed"));
}

TEST_CASE("minidl waits passively when another program keeps a CPU busy, unless told otherwise", "[cli]") {
  using test::minidl_cli, test::data_flag;
  cpu_set_t mask;
  CPU_ZERO(&mask);
  sched_getaffinity(0, sizeof mask, &mask);
  if (!test::skip_unless(CPU_COUNT(&mask) >= 2, "one CPU: OpenMP starts no second thread, so minidl keeps its wait policy")) return;
  int cpu = 0;
  while (!CPU_ISSET(cpu, &mask)) ++cpu;
  TempDir dir;
  const std::string train = "train --overwrite --steps 2 " + data_flag();
  const std::string note = "OpenMP threads wait passively (OMP_WAIT_POLICY=passive): CPU ";
  const BusyLoop busy(cpu);
  const test::Run passive = minidl_cli(train, dir, "env -u OMP_NUM_THREADS");
  INFO(passive.err);
  REQUIRE(passive.status == 0);
  CHECK(occurrences(passive.err, note) == 1);  // logged once, by the command run again
  CHECK_THAT(passive.err, Catch::Contains("% busy at start"));
  // The user's own policy, one thread, or a command that computes nothing: left alone.
  CHECK_THAT(minidl_cli(train, dir, "env -u OMP_NUM_THREADS OMP_WAIT_POLICY=active").err, !Catch::Contains(note));
  CHECK_THAT(minidl_cli(train + " --threads 1", dir, "env -u OMP_NUM_THREADS").err, !Catch::Contains(note));
  CHECK_THAT(minidl_cli(train, dir).err, !Catch::Contains(note));  // OMP_NUM_THREADS=1
}
