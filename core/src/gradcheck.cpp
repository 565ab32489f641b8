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

const std::vector<uint32_t>& KinkWatch::next(int64_t n) {
  if (next_ >= tape_.size() || static_cast<int64_t>(tape_[next_].size()) != n)
    fail("gradcheck: the function took a different path than at the unperturbed point (op ", next_,
         "): it must be deterministic for given input values");
  return tape_[next_++];
}
}  // namespace detail

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

  // The projected objective, with every kink replaying the branch it took at the unperturbed point.
  detail::KinkWatch watch;
  struct Unwatch {
    ~Unwatch() { detail::kink_watch() = nullptr; }
  } unwatch;
  const auto objective = [&] {
    const NoGradGuard no_grad;
    detail::kink_watch() = &watch;
    const Tensor y = f(inputs);
    detail::kink_watch() = nullptr;
    double total = 0.0;
    for (int64_t i = 0; i < y.numel(); ++i) total += static_cast<double>(y.data()[i]) * weights.data()[i];
    return total;
  };
  objective();  // records the branches; every later evaluation replays them from the first op

  GradcheckResult result;
  for (Tensor x : inputs) {
    const Tensor analytic = x.grad();
    double worst = 0.0;
    // Every element, or a sample of distinct ones drawn without replacement (a partial Fisher-Yates).
    std::vector<int64_t> elements(static_cast<size_t>(x.numel()));
    for (int64_t i = 0; i < x.numel(); ++i) elements[static_cast<size_t>(i)] = i;
    if (options.max_elements > 0 && x.numel() > options.max_elements) {
      for (int64_t k = 0; k < options.max_elements; ++k)
        std::swap(elements[static_cast<size_t>(k)],
                  elements[static_cast<size_t>(k) + gen.below(static_cast<uint64_t>(x.numel() - k))]);
      elements.resize(static_cast<size_t>(options.max_elements));
    }
    double largest = 0.0;
    if (analytic.defined())
      for (float g : analytic.values()) largest = std::max(largest, static_cast<double>(std::abs(g)));
    const double floor = std::max(options.floor, 1e-3 * largest);
    for (const int64_t i : elements) {
      float& v = x.data()[i];
      const float original = v;
      // Central difference with the step actually taken in float32.
      const auto central = [&](double h) {
        const float plus = original + static_cast<float>(h), minus = original - static_cast<float>(h);
        v = plus;
        watch.replay();
        const double f_plus = objective();
        v = minus;
        watch.replay();
        const double f_minus = objective();
        v = original;
        return (f_plus - f_minus) / (static_cast<double>(plus) - minus);
      };
      // Richardson extrapolation: D(h) = f' + c·h² + O(h⁴), so (4·D(h/2) − D(h)) / 3 = f' + O(h⁴).
      const double numeric = (4.0 * central(options.eps / 2) - central(options.eps)) / 3.0;
      const double a = analytic.defined() ? analytic.data()[i] : 0.0;
      const double scale = std::max({std::abs(a), std::abs(numeric), floor});
      const double error = std::abs(a - numeric) / scale;
      worst = std::isfinite(error) ? std::max(worst, error) : INFINITY;  // a NaN must fail, not vanish
    }
    x.zero_grad();
    result.max_relative_error.push_back(worst);
    result.checked.push_back(static_cast<int64_t>(elements.size()));
    result.worst = std::max(result.worst, worst);
  }
  result.ok = result.worst <= options.tolerance;
  return result;
}

}  // namespace minidl
