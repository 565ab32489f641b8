// The seeded generator: xoshiro256** with splitmix64 seeding; uniform, normal, integers, shuffles.
#include "minidl/random.h"

#include <cmath>
#include <numeric>

#include "minidl/error.h"

namespace minidl {
namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

void Generator::seed(uint64_t seed) {
  for (auto& word : s_) word = splitmix64(seed);
}

uint64_t Generator::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

float Generator::uniform(float lo, float hi) {
  const float unit = static_cast<float>(next_u64() >> 40) * 0x1.0p-24f;  // [0, 1), exact
  return lo + (hi - lo) * unit;
}

float Generator::normal(float mean, float stddev) {
  // Box-Muller; u1 in (0, 1] so the log is finite.
  const double u1 = (static_cast<double>(next_u64() >> 11) + 1.0) * 0x1.0p-53;
  const double u2 = static_cast<double>(next_u64() >> 11) * 0x1.0p-53;
  const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  return mean + stddev * static_cast<float>(z);
}

uint64_t Generator::below(uint64_t n) {
  if (n == 0) fail("Generator::below: n must be > 0");
  // Lemire's rejection: unbiased, usually one draw.
  const uint64_t threshold = (0 - n) % n;
  for (;;) {
    const uint64_t r = next_u64();
    if (r >= threshold) return r % n;
  }
}

void Generator::shuffle(std::span<int32_t> values) {
  for (size_t i = values.size(); i > 1; --i) std::swap(values[i - 1], values[below(i)]);
}

std::vector<int32_t> Generator::permutation(int32_t n) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  shuffle(p);
  return p;
}

Generator& default_generator() {
  static Generator gen;
  return gen;
}

void manual_seed(uint64_t seed) { default_generator().seed(seed); }

}  // namespace minidl
