// Choosing the OpenMP thread count while training: the Trainer times its steps at each candidate count and keeps
// the fastest. minidl's results are bit-identical for any thread count, so the choice changes the speed alone.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace minidl {

struct ThreadTunerOptions {
  /// The counts to time, each >= 1; empty: 1, 2, 4, … and omp_get_max_threads() itself (at most it).
  std::vector<int> candidates{};
  /// In each trial a count's first steps are not timed until they have lasted this long (the count the steps
  /// were running on excepted), and its first step ever is never timed: that step allocates the count's scratch,
  /// and a core that has idled (on a virtual machine, its host may have lent it out) answers slowly at first.
  double warmup_seconds = 0.2;
  int64_t block_steps = 4;      ///< steps timed together as one block, at least
  double block_seconds = 0.025;  ///< and at least this long (a step of a small model takes well under 1 ms)
  int blocks = 3;               ///< blocks timed per count in a trial, the counts taking turns block by block
  /// A count whose blocks so far are this many times slower than the best count's leaves the trial early (on a
  /// busy machine a thread that waits for a taken core can make a step ten times slower: one block says so).
  double cutoff = 1.5;
  /// Re-time when the median of the last `window` blocks at the chosen count departs from the trial's by more
  /// than this fraction, either way (another program started or ended).
  double drift = 0.3;
  int window = 8;
  /// Re-time anyway after at most this many seconds of steps since the last trial: one thread's steps do not
  /// speed up when the other cores free up, so only a new trial sees that more threads would now pay.
  double retime_seconds = 30.0;
  /// The first re-timing comes after this many seconds, each next after twice as many, up to retime_seconds: a
  /// short run gets a second look soon after its first trial.
  double first_retime_seconds = 1.0;
  /// A larger count is chosen only when it is faster than a smaller one by more than this fraction.
  double margin = 0.03;
};

/// One decision: the count chosen and what the trial measured.
struct ThreadChoice {
  int threads = 0;      ///< 0 until the first trial has ended
  int64_t step = 0;     ///< steps recorded when it was made
  std::string reason;   ///< "first trial", "step times drifted", "periodic re-timing"
  /// Each count timed in the trial, with its median seconds per step (blocks of steps, normalised to the
  /// samples of the trial's last step).
  std::vector<std::pair<int, double>> timed;
  /// "2 threads (steps timed: 1 thread 512 µs, 2 threads 351 µs; first trial)".
  std::string str() const;
};

/// The timing logic alone, fed by the Trainer (Trainer::run_epoch): before a step, run it with next() threads;
/// after it, record() how long it took. A count's first step ever is not timed (it allocates its scratch).
class ThreadTuner {
 public:
  explicit ThreadTuner(ThreadTunerOptions options = {});

  /// The thread count the next step runs with.
  int next() const { return current_; }
  /// Records that the step run with next() threads took `seconds` for `samples` samples. True when a decision
  /// was made that the caller should report: the first, and each that changes the count.
  bool record(double seconds, int64_t samples);
  /// The latest decision (threads 0 while the first trial runs).
  const ThreadChoice& choice() const { return choice_; }
  /// Only one count to choose from: nothing is timed.
  bool fixed() const { return options_.candidates.size() == 1; }
  const ThreadTunerOptions& options() const { return options_; }

 private:
  size_t slot(int threads) const;  // the index of a candidate count
  void start_trial(std::string reason);
  void finish_trial();
  void next_turn();

  ThreadTunerOptions options_;
  int current_ = 1;
  std::vector<std::pair<int, double>> warmup_;       // per count that has run: the seconds of its untimed first steps
  double retime_after_ = 0.0;                        // the next periodic re-timing, in seconds since the trial
  bool trialing_ = true;
  std::string trial_reason_ = "first trial";
  std::vector<int> active_;                          // counts still in the trial
  std::vector<std::vector<double>> trial_blocks_;    // per candidate: seconds per sample of each block
  std::vector<double> window_;                       // settled: the last blocks at the chosen count
  double reference_ = 0.0;                           // the chosen count's median in its trial
  double since_trial_ = 0.0;                         // seconds of steps since the trial ended
  int64_t block_count_ = 0, block_samples_ = 0, steps_ = 0, last_samples_ = 1;
  double block_seconds_ = 0.0;
  ThreadChoice choice_;
};

}  // namespace minidl
