// The products `minidl bench` measures beside the training steps: minidl's matmul and, as the machine's
// reference, OpenBLAS's sgemm opened at run time (bench_gemm.h).
#include "bench_gemm.h"

#include <dlfcn.h>

#include <chrono>

#include "minidl/autograd.h"
#include "minidl/ops.h"

namespace minidl::cli {
namespace {
constexpr int kGemmSide = 1024;
constexpr double kGemmFlops = 2.0 * kGemmSide * kGemmSide * kGemmSide;

double gemm_clock() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

MinidlGemm::MinidlGemm() : a_(Tensor::uniform({kGemmSide, kGemmSide}, -1, 1)), b_(Tensor::uniform({kGemmSide, kGemmSide}, -1, 1)) {}

void MinidlGemm::warm_up() {
  const NoGradGuard no_grad;
  matmul(a_, b_);
}

void MinidlGemm::sample(int count, std::vector<double>& rates) {
  const NoGradGuard no_grad;
  for (int i = 0; i < count; ++i) {
    const double t0 = gemm_clock();
    matmul(a_, b_);
    rates.push_back(kGemmFlops / (gemm_clock() - t0) / 1e9);
  }
}

std::unique_ptr<OpenBlasGemm> OpenBlasGemm::open(std::string& why) {
  void* library = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
  if (!library) {
    why = "OpenBLAS not found (libopenblas.so.0: " + std::string(dlerror()) + "; apt-get install libopenblas0-openmp)";
    return nullptr;
  }
  std::unique_ptr<OpenBlasGemm> blas(new OpenBlasGemm);
  blas->library_ = library;
  blas->sgemm_ = reinterpret_cast<Sgemm>(dlsym(library, "cblas_sgemm"));
  blas->set_threads_ = reinterpret_cast<SetThreads>(dlsym(library, "openblas_set_num_threads"));
  if (!blas->sgemm_ || !blas->set_threads_) {
    why = "libopenblas.so.0 lacks cblas_sgemm or openblas_set_num_threads";
    return nullptr;
  }
  using Text = char* (*)();
  const auto config = reinterpret_cast<Text>(dlsym(library, "openblas_get_config"));
  const auto core = reinterpret_cast<Text>(dlsym(library, "openblas_get_corename"));
  blas->description_ = config ? config() : "OpenBLAS";
  if (core) blas->description_ += std::string(" (core ") + core() + ")";
  const size_t n = size_t{kGemmSide} * kGemmSide;
  blas->a_.resize(n);
  blas->b_.resize(n);
  blas->c_.resize(n);
  // Values in [-1, 1] as minidl's product gets; the time does not depend on them (no denormals arise).
  for (size_t i = 0; i < n; ++i) {
    blas->a_[i] = static_cast<float>(static_cast<int>(i * 7919 % 2001) - 1000) / 1000.0f;
    blas->b_[i] = static_cast<float>(static_cast<int>(i * 104729 % 2001) - 1000) / 1000.0f;
  }
  return blas;
}

OpenBlasGemm::~OpenBlasGemm() {
  if (library_) dlclose(library_);
}

void OpenBlasGemm::warm_up(int threads) {
  std::vector<double> ignored;
  sample(1, threads, ignored);
}

void OpenBlasGemm::sample(int count, int threads, std::vector<double>& rates) {
  constexpr int kRowMajor = 101, kNoTrans = 111;  // CBLAS_ORDER and CBLAS_TRANSPOSE values
  set_threads_(threads);
  for (int i = 0; i < count; ++i) {
    const double t0 = gemm_clock();
    sgemm_(kRowMajor, kNoTrans, kNoTrans, kGemmSide, kGemmSide, kGemmSide, 1.0f, a_.data(), kGemmSide, b_.data(),
           kGemmSide, 0.0f, c_.data(), kGemmSide);
    rates.push_back(kGemmFlops / (gemm_clock() - t0) / 1e9);
  }
}

}  // namespace minidl::cli
