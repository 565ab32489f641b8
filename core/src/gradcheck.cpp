// Finite-difference gradient checking: extrapolated central differences against the autodiff gradient.
#include "minidl/gradcheck.h"

#include <algorithm>
#include <cmath>

#include "minidl/autograd.h"

namespace minidl {

namespace detail {
KinkWatch*& kink_watch() {
  thread_local KinkWatch* watch = nullptr;
  return watch;
}
}  // namespace detail

namespace {
// Runs f with the kink watch on; returns the branch hash.
template <class F>
uint64_t watching(F&& f) {
  detail::KinkWatch watch;
  detail::kink_watch() = &watch;
  struct Off {
    ~Off() { detail::kink_watch() = nullptr; }
  } off;
  f();
  return watch.hash;
}
}  // namespace

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor x = inputs[k];
    if (!x.is_leaf() || !x.requires_grad())
      fail("gradcheck: input ", k, " must be a leaf tensor with requires_grad set");
    x.zero_grad();
  }
  const Tensor out = f(inputs);
  // Project the output on fixed random weights, so one scalar depends on every output element.
  Generator gen(options.seed);
  const Tensor weights = out.numel() == 1 ? Tensor::ones(out.shape()) : Tensor::uniform(out.shape(), 0.5f, 1.5f, gen);
  out.backward(weights);

  // The projected objective and the branch hash of the forward pass that computed it.
  uint64_t branches = 0;
  const auto objective = [&] {
    const NoGradGuard no_grad;
    double total = 0.0;
    branches = watching([&] {
      const Tensor y = f(inputs);
      for (int64_t i = 0; i < y.numel(); ++i) total += static_cast<double>(y.data()[i]) * weights.data()[i];
    });
    return total;
  };
  objective();
  const uint64_t unperturbed = branches;

  GradcheckResult result;
  for (Tensor x : inputs) {
    const Tensor analytic = x.grad();
    double worst = 0.0;
    int64_t skipped = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      float& v = x.data()[i];
      const float original = v;
      bool crossed = false;
      // Central difference with the step actually taken in float32.
      const auto central = [&](double h) {
        const float plus = original + static_cast<float>(h), minus = original - static_cast<float>(h);
        v = plus;
        const double f_plus = objective();
        crossed = crossed || branches != unperturbed;
        v = minus;
        const double f_minus = objective();
        crossed = crossed || branches != unperturbed;
        v = original;
        return (f_plus - f_minus) / (static_cast<double>(plus) - minus);
      };
      // Richardson extrapolation: D(h) = f' + c·h² + O(h⁴), so (4·D(h/2) − D(h)) / 3 = f' + O(h⁴).
      const double numeric = (4.0 * central(options.eps / 2) - central(options.eps)) / 3.0;
      if (crossed) {
        ++skipped;
        continue;
      }
      const double a = analytic.defined() ? analytic.data()[i] : 0.0;
      const double scale = std::max({std::abs(a), std::abs(numeric), options.floor});
      const double error = std::abs(a - numeric) / scale;
      worst = std::isfinite(error) ? std::max(worst, error) : INFINITY;  // a NaN must fail, not vanish
    }
    x.zero_grad();
    result.max_relative_error.push_back(worst);
    result.skipped.push_back(skipped);
    result.worst = std::max(result.worst, worst);
  }
  result.ok = result.worst <= options.tolerance;
  return result;
}

}  // namespace minidl
