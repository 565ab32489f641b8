// The 1024^3 single-precision products `minidl bench` times between its step repeats: minidl's own matmul (the
// "GEMM peak"), and OpenBLAS's sgemm, loaded at run time when the library is installed, as the machine's reference.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "minidl/tensor.h"

namespace minidl::cli {

/// 1024^3 products through the same matmul the layers use, with the OpenMP threads of the moment.
class MinidlGemm {
 public:
  MinidlGemm();
  void warm_up();
  /// Times `count` products, adding each one's GFLOP/s to `rates`.
  void sample(int count, std::vector<double>& rates);

 private:
  Tensor a_, b_;
};

/// OpenBLAS's cblas_sgemm on 1024^3, from libopenblas.so.0 (Debian's libopenblas0-openmp or -pthread), opened with
/// dlopen so that minidl neither links nor needs it.
class OpenBlasGemm {
 public:
  /// Null when no OpenBLAS can be opened (`why` then says what was tried).
  static std::unique_ptr<OpenBlasGemm> open(std::string& why);
  ~OpenBlasGemm();
  OpenBlasGemm(const OpenBlasGemm&) = delete;
  OpenBlasGemm& operator=(const OpenBlasGemm&) = delete;
  /// "OpenBLAS 0.3.21 ... (core SkylakeX)": its own configuration and the kernel it chose for this CPU.
  const std::string& description() const { return description_; }
  void warm_up(int threads);
  /// Times `count` products on `threads` threads, adding each one's GFLOP/s to `rates`.
  void sample(int count, int threads, std::vector<double>& rates);

 private:
  using Sgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
  using SetThreads = void (*)(int);
  OpenBlasGemm() = default;
  void* library_ = nullptr;
  Sgemm sgemm_ = nullptr;
  SetThreads set_threads_ = nullptr;
  std::string description_;
  std::vector<float> a_, b_, c_;
};

}  // namespace minidl::cli
