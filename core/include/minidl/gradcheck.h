// Finite-difference gradient checking, shared by the tests and `minidl gradcheck`.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "minidl/tensor.h"

namespace minidl {

struct GradcheckOptions {
  /// Largest central-difference step; the checker extrapolates from steps eps and eps/2 (Richardson), so
  /// truncation error is O(eps⁴) and eps can stay large enough to keep float32 rounding noise small.
  double eps = 1e-2;
  /// Largest accepted relative error |analytic − numeric| / max(|analytic|, |numeric|, floor, 1e-3 · g), where g
  /// is the input's largest analytic gradient: the float32 objective's rounding noise grows with the output, so
  /// an element whose derivative is near zero is judged against the scale of its input's gradient.
  double tolerance = 1e-2;
  /// Keeps near-zero gradients from turning rounding noise into a large relative error.
  double floor = 1e-2;
  uint64_t seed = 1234;  ///< For the random projection of a non-scalar output and the sampled elements.
  /// At most this many elements of each input are checked, chosen at random (0: all). Large inputs — the
  /// shapes that take the threaded paths — are checked on a sample: each element costs four evaluations.
  int64_t max_elements = 0;
};

struct GradcheckResult {
  std::vector<double> max_relative_error;  ///< One per checked input.
  /// Elements compared, per input.
  std::vector<int64_t> checked;
  double worst = 0.0;
  /// Every input within tolerance, and at least one element of each compared.
  bool ok = false;
};

/// Checks d f(inputs) / d inputs by extrapolated central differences. Non-scalar outputs are projected on a fixed random
/// vector, so every output element counts. Ops with kinks (relu, clip, maximum, max_pool2d) replay, in every
/// perturbed evaluation, the branches they took at the unperturbed point: the differences are those of the
/// linear piece autodiff differentiates, however many kinks a deep model has near that point. The inputs must
/// be leaf tensors with requires_grad set; their accumulated gradients are cleared. f must be deterministic for
/// given input values.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});

namespace detail {
/// While gradcheck watches, each op with kinks (relu, clip, maximum, max_pool2d) asks branches() for the branch
/// every output element takes: the first, unperturbed evaluation records them, every later one replays them
/// in the same op order. Off (null) otherwise.
class KinkWatch {
 public:
  /// Recording: stores branch(i) for i in [0, n) and returns them; replaying: returns the next recorded set.
  template <class Branch>
  const std::vector<uint32_t>& branches(int64_t n, Branch branch) {
    if (!replaying_) {
      std::vector<uint32_t>& b = tape_.emplace_back(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) b[static_cast<size_t>(i)] = branch(i);
      return b;
    }
    return next(n);
  }
  bool replaying() const { return replaying_; }
  /// Switches from recording to replaying, from the first recorded op again.
  void replay() {
    replaying_ = true;
    next_ = 0;
  }

 private:
  const std::vector<uint32_t>& next(int64_t n);
  std::vector<std::vector<uint32_t>> tape_;
  size_t next_ = 0;
  bool replaying_ = false;
};
KinkWatch*& kink_watch();
}  // namespace detail

}  // namespace minidl
