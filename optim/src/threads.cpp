// ThreadTuner (minidl/threads.h): timing the Trainer's steps at each thread count, in turns, and keeping the fastest.
#include "minidl/threads.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "minidl/error.h"
#include "minidl/internal/text.h"

namespace minidl {
namespace {

double median_of(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

std::string duration_text(double seconds) {
  return seconds < 1e-3 ? detail::concat(static_cast<int64_t>(std::lround(seconds * 1e6)), " µs")
                        : detail::concat(std::round(seconds * 1e4) / 10.0, " ms");
}

std::string threads_text(int n) { return detail::concat(n, n == 1 ? " thread" : " threads"); }

}  // namespace

std::string ThreadChoice::str() const {
  std::string timings;
  for (const auto& [n, seconds] : timed)
    timings += (timings.empty() ? "" : ", ") + threads_text(n) + " " + (std::isfinite(seconds) ? duration_text(seconds) : "not timed");
  return threads_text(threads) + " (steps timed: " + timings + "; " + reason + ")";
}

ThreadTuner::ThreadTuner(ThreadTunerOptions options) : options_(std::move(options)) {
  std::vector<int>& c = options_.candidates;
  if (c.empty()) {
    const int most = std::max(1, omp_get_max_threads());
    for (int n = 1; n < most; n *= 2) c.push_back(n);
    c.push_back(most);
  }
  for (const int n : c)
    if (n < 1) fail("ThreadTuner: a candidate thread count must be >= 1, got ", n);
  std::sort(c.begin(), c.end());
  c.erase(std::unique(c.begin(), c.end()), c.end());
  if (options_.block_steps < 1) fail("ThreadTuner: block_steps must be >= 1, got ", options_.block_steps);
  if (options_.blocks < 1) fail("ThreadTuner: blocks must be >= 1, got ", options_.blocks);
  if (!(options_.block_seconds >= 0.0)) fail("ThreadTuner: block_seconds must be >= 0, got ", options_.block_seconds);
  if (!(options_.warmup_seconds >= 0.0)) fail("ThreadTuner: warmup_seconds must be >= 0, got ", options_.warmup_seconds);
  if (!(options_.retime_seconds >= 0.0 && options_.first_retime_seconds >= 0.0))
    fail("ThreadTuner: retime_seconds and first_retime_seconds must be >= 0, got ", options_.retime_seconds, " and ",
         options_.first_retime_seconds);
  if (options_.window < 1) fail("ThreadTuner: window must be >= 1, got ", options_.window);
  if (!(options_.cutoff > 1.0)) fail("ThreadTuner: cutoff must be > 1, got ", options_.cutoff);
  if (!(options_.drift > 0.0)) fail("ThreadTuner: drift must be > 0, got ", options_.drift);
  if (!(options_.margin >= 0.0 && options_.margin < 1.0)) fail("ThreadTuner: margin must be in [0, 1), got ", options_.margin);
  // The first trial starts at the most threads, OpenMP's own default.
  current_ = c.back();
  if (fixed()) {
    trialing_ = false;
    choice_ = {current_, 0, "the only candidate", {}};
  } else {
    start_trial("first trial");
  }
}

size_t ThreadTuner::slot(int threads) const {
  return static_cast<size_t>(std::find(options_.candidates.begin(), options_.candidates.end(), threads) -
                             options_.candidates.begin());
}

void ThreadTuner::start_trial(std::string reason) {
  trialing_ = true;
  trial_reason_ = std::move(reason);
  active_ = options_.candidates;
  // The counts the steps have not been running warm up again: their cores may have idled since.
  for (auto& [n, warmed] : warmup_)
    if (n != current_) warmed = 0.0;
  trial_blocks_.assign(options_.candidates.size(), {});
  block_count_ = 0, block_samples_ = 0, block_seconds_ = 0.0;
}

bool ThreadTuner::record(double seconds, int64_t samples) {
  ++steps_;
  if (fixed() || !(seconds >= 0.0) || samples < 1) return false;
  last_samples_ = samples;
  auto warm = std::find_if(warmup_.begin(), warmup_.end(), [&](const auto& w) { return w.first == current_; });
  if (warm == warmup_.end()) {  // this count's first step: it allocated what it keeps
    warmup_.emplace_back(current_, seconds);
    return false;
  }
  if (warm->second < options_.warmup_seconds) {
    warm->second += seconds;
    return false;
  }
  // A block's mean over at least block_seconds: a step now and then takes several times the others (the other
  // core's CPU taken by the host for milliseconds, a page fault), and that cost is real if it recurs, so it is
  // averaged in, over blocks long enough to hold it; the median of the blocks then drops a block that met a rare one.
  block_seconds_ += seconds;
  block_samples_ += samples;
  if (++block_count_ < options_.block_steps || block_seconds_ < options_.block_seconds) return false;
  const double per_sample = block_seconds_ / static_cast<double>(block_samples_);
  const double block_seconds = block_seconds_;
  block_count_ = 0, block_samples_ = 0, block_seconds_ = 0.0;

  if (!trialing_) {
    window_.push_back(per_sample);
    if (static_cast<int>(window_.size()) > options_.window) window_.erase(window_.begin());
    since_trial_ += block_seconds;
    const double ratio = static_cast<int>(window_.size()) == options_.window ? median_of(window_) / reference_ : 1.0;
    if (ratio > 1.0 + options_.drift || ratio < 1.0 / (1.0 + options_.drift))
      start_trial(detail::concat("step times drifted ", std::round(ratio * 100.0) / 100.0, "x"));
    else if (since_trial_ >= retime_after_) {
      retime_after_ = std::min(2.0 * retime_after_, options_.retime_seconds);
      start_trial("periodic re-timing");
    }
    return false;
  }

  trial_blocks_[slot(current_)].push_back(per_sample);
  // A count far slower than the best so far leaves the trial: its later blocks would only cost time.
  double best = INFINITY;
  for (const int n : active_)
    if (!trial_blocks_[slot(n)].empty()) best = std::min(best, median_of(trial_blocks_[slot(n)]));
  std::erase_if(active_, [&](int n) {
    return !trial_blocks_[slot(n)].empty() && median_of(trial_blocks_[slot(n)]) > options_.cutoff * best;
  });
  const bool done = std::all_of(active_.begin(), active_.end(), [&](int n) {
    return static_cast<int>(trial_blocks_[slot(n)].size()) >= options_.blocks;
  });
  if (!done) {
    next_turn();
    return false;
  }
  const int before = choice_.threads;
  finish_trial();
  return choice_.threads != before;
}

void ThreadTuner::next_turn() {
  // The next active count after the current one, in ascending order, that still needs blocks.
  const auto needs = [&](int n) { return static_cast<int>(trial_blocks_[slot(n)].size()) < options_.blocks; };
  std::vector<int> order;
  for (const int n : active_)
    if (n > current_) order.push_back(n);
  for (const int n : active_)
    if (n <= current_) order.push_back(n);
  for (const int n : order)
    if (needs(n)) {
      current_ = n;
      return;
    }
}

void ThreadTuner::finish_trial() {
  ThreadChoice c;
  c.step = steps_;
  c.reason = trial_reason_;
  int best = 0;
  double best_seconds = INFINITY;
  for (size_t i = 0; i < options_.candidates.size(); ++i) {
    const int n = options_.candidates[i];
    const double m = trial_blocks_[i].empty() ? INFINITY : median_of(trial_blocks_[i]);
    c.timed.emplace_back(n, m * static_cast<double>(last_samples_));
    // Only counts that stayed to the end; ascending, a larger count must beat a smaller one by the margin.
    if (std::find(active_.begin(), active_.end(), n) == active_.end()) continue;
    if (best == 0 || m < best_seconds * (1.0 - options_.margin)) best = n, best_seconds = m;
  }
  c.threads = best;
  choice_ = c;
  current_ = best;
  reference_ = best_seconds;
  trialing_ = false;
  window_.clear();
  since_trial_ = 0.0;
  if (retime_after_ == 0.0) retime_after_ = std::min(options_.first_retime_seconds, options_.retime_seconds);
}

}  // namespace minidl
