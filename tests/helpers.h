// Shared test helpers: seeded parameter tensors, a gradient-check assertion, value comparison.
#pragma once

#include <catch2/catch.hpp>
#include <omp.h>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <unistd.h>
#include <vector>

#include "minidl/core.h"
#include "minidl/models.h"

namespace minidl::test {

/// A leaf tensor with values uniform in [lo, hi), requiring grad, from a generator seeded with `seed`.
inline Tensor param(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Generator gen(seed);
  Tensor t = Tensor::uniform(shape, lo, hi, gen);
  t.set_requires_grad(true);
  return t;
}

/// Like param, but every value at least `margin` away from every kink in `kinks` (relu, clip, maximum).
inline Tensor param_away_from(const Shape& shape, uint64_t seed, std::vector<float> kinks, float margin = 0.05f) {
  Tensor t = param(shape, seed);
  for (float& v : t.values())
    for (float k : kinks)
      if (std::abs(v - k) < margin) v = k + (v < k ? -margin : margin);
  return t;
}

/// Runs f with `threads` OpenMP threads, then restores the previous setting; returns what f returns.
template <class F>
auto with_threads(int threads, F f) {
  const int previous = omp_get_max_threads();
  omp_set_num_threads(threads);
  auto result = f();
  omp_set_num_threads(previous);
  return result;
}

/// REQUIREs that every input's autodiff gradient matches central differences.
inline void require_grad_ok(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                            const std::vector<Tensor>& inputs, GradcheckOptions options = {}) {
  const GradcheckResult r = gradcheck(f, inputs, options);
  std::string errors;
  for (size_t i = 0; i < r.max_relative_error.size(); ++i)
    errors += " input " + std::to_string(i) + ": " + std::to_string(r.max_relative_error[i]);
  INFO("relative errors:" << errors << "; tolerance " << options.tolerance);
  REQUIRE(r.max_relative_error.size() == inputs.size());
  REQUIRE(r.ok);
}

/// REQUIREs that t holds `expected` (shape and values) within an absolute tolerance.
inline void require_values(const Tensor& t, const Shape& shape, const std::vector<float>& expected,
                           float tolerance = 1e-6f) {
  REQUIRE(t.shape() == shape);
  REQUIRE(t.numel() == static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) {
    INFO("element " << i);
    REQUIRE(t.data()[i] == Approx(expected[i]).margin(tolerance));
  }
}

/// The document's model, Dense(64, relu) → `norm` → Dense(10, softmax) on 784 inputs, its weights from `gen`.
inline std::shared_ptr<Sequential> document_model(const std::string& norm, Generator& gen) {
  ModelConfig config;
  config.description = document_model_description(64, 10);
  config.norm = norm;
  config.input_shape = {784};
  return build_model(config, gen);
}

/// A fresh directory under the system temp dir, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("minidl_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string path() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

/// For a test that needs what the machine may lack (installed data, a second CPU): true when it can run. Otherwise
/// the test cannot run: under CTest (MINIDL_SKIP_EXIT set, with SKIP_RETURN_CODE) the process exits with that code so
/// CTest reports it skipped, never passed; run by hand, it warns and returns false.
inline bool skip_unless(bool can_run, const std::string& why) {
  if (can_run) return true;
  std::printf("SKIPPED: %s\n", why.c_str());
  std::fflush(stdout);
  if (const char* code = std::getenv("MINIDL_SKIP_EXIT")) std::_Exit(std::atoi(code));
  WARN("SKIPPED: " << why);
  return false;
}
inline bool require_or_skip(const std::string& path, const std::string& why) { return skip_unless(std::filesystem::exists(path), why); }

/// Writes raw bytes to a file (for corrupt-input tests).
inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace minidl::test
