// The seeded random generator behind initialisers, shuffling and tests: same seed, same numbers, on any
// machine and any thread count (its own bit-exact transforms, not the standard library's distributions).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace minidl {

/// xoshiro256** seeded through splitmix64. Not thread-safe: draw from one thread.
class Generator {
 public:
  static constexpr uint64_t kDefaultSeed = 42;
  explicit Generator(uint64_t seed = kDefaultSeed) { this->seed(seed); }

  void seed(uint64_t seed);
  uint64_t next_u64();
  /// Uniform float in [lo, hi), 24 random bits.
  float uniform(float lo = 0.0f, float hi = 1.0f);
  /// Normal by Box-Muller in double precision.
  float normal(float mean = 0.0f, float stddev = 1.0f);
  /// Unbiased integer in [0, n).
  uint64_t below(uint64_t n);
  /// Fisher-Yates shuffle in place.
  void shuffle(std::span<int32_t> values);
  /// A random permutation of 0..n-1.
  std::vector<int32_t> permutation(int32_t n);

  /// The whole state, for checkpoints: four xoshiro words.
  std::array<uint64_t, 4> state() const { return s_; }
  void set_state(const std::array<uint64_t, 4>& s) { s_ = s; }

 private:
  std::array<uint64_t, 4> s_{};
};

/// The process-wide generator used when no generator is passed.
Generator& default_generator();
/// Reseeds the process-wide generator.
void manual_seed(uint64_t seed);

}  // namespace minidl
