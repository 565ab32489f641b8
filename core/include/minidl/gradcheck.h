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
  /// Largest accepted relative error |analytic − numeric| / max(|analytic|, |numeric|, floor).
  double tolerance = 1e-2;
  /// Keeps near-zero gradients from turning rounding noise into a large relative error.
  double floor = 1e-2;
  uint64_t seed = 1234;  ///< For the random projection of a non-scalar output.
};

struct GradcheckResult {
  std::vector<double> max_relative_error;  ///< One per checked input.
  /// Elements not compared because a perturbation moved some relu/clip/maximum input across its kink, where
  /// a finite difference means nothing. One per input.
  std::vector<int64_t> skipped;
  double worst = 0.0;
  bool ok = false;
};

/// Checks d f(inputs) / d inputs by extrapolated central differences. Non-scalar outputs are projected on a fixed random
/// vector, so every output element counts. The inputs must be leaf tensors with requires_grad set; their
/// accumulated gradients are cleared. f must be deterministic for given input values.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});

namespace detail {
/// While gradcheck watches, ops with kinks (relu, clip, maximum) fold which branch each element took into
/// a hash, so gradcheck can tell when a perturbation crossed a kink. Off (null) otherwise: one branch per op.
struct KinkWatch {
  uint64_t hash = 1469598103934665603ULL;
  void add(uint64_t branch) { hash = (hash ^ branch) * 1099511628211ULL; }
};
KinkWatch*& kink_watch();
}  // namespace detail

}  // namespace minidl
