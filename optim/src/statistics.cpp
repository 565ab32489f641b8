// Population statistics of BatchNormalization inputs: the model's prefix up to each layer, run in inference
// mode over the data in batches, with per-channel sums in double.
#include "minidl/statistics.h"

#include "minidl/autograd.h"
#include "minidl/layers.h"
#include "minidl/ops.h"
#include "minidl/train.h"

namespace minidl {
namespace {
// Calls f(h) with the input of children()[layer] for each batch of data's first `samples` rows.
template <class F>
void for_each_input(Sequential& model, size_t layer, const Dataset& data, int64_t samples, int64_t batch_size, F f) {
  for (int64_t begin = 0; begin < samples; begin += batch_size) {
    const int64_t end = std::min(begin + batch_size, samples);
    Tensor h = data.slice(begin, end).to_tensor();
    if (model.input_shape().rank() > 0) {
      Shape shape{end - begin};
      for (int64_t d : model.input_shape()) shape.push_back(d);
      h = reshape(h, shape);
    }
    for (size_t i = 0; i < layer; ++i) h = model.children()[i]->forward(h);
    f(h);
  }
}
}  // namespace

std::vector<LayerStatistics> population_statistics(Sequential& model, const Dataset& data, int64_t samples,
                                                   int64_t batch_size) {
  if (batch_size < 1) fail("population_statistics: batch size must be >= 1, got ", batch_size);
  samples = samples <= 0 ? data.size() : std::min(samples, data.size());
  const ModeGuard inference(model, false);
  const NoGradGuard no_grad;
  std::vector<LayerStatistics> out;
  for (size_t layer = 0; layer < model.children().size(); ++layer) {
    auto* bn = dynamic_cast<BatchNormalization*>(model.children()[layer].get());
    if (!bn) continue;
    LayerStatistics s{bn->name(), {}, {}};
    const size_t c = static_cast<size_t>(bn->moving_mean().numel());
    s.mean.assign(c, 0.0);
    s.variance.assign(c, 0.0);
    double count = 0.0;
    // Two passes: the mean, then the biased variance around it.
    for_each_input(model, layer, data, samples, batch_size, [&](const Tensor& h) {
      const float* p = h.data();
      const int64_t rows = h.numel() / static_cast<int64_t>(c);
      for (int64_t r = 0; r < rows; ++r)
        for (size_t k = 0; k < c; ++k) s.mean[k] += p[r * static_cast<int64_t>(c) + k];
      count += static_cast<double>(rows);
    });
    for (double& m : s.mean) m /= count;
    for_each_input(model, layer, data, samples, batch_size, [&](const Tensor& h) {
      const float* p = h.data();
      const int64_t rows = h.numel() / static_cast<int64_t>(c);
      for (int64_t r = 0; r < rows; ++r)
        for (size_t k = 0; k < c; ++k) {
          const double d = p[r * static_cast<int64_t>(c) + k] - s.mean[k];
          s.variance[k] += d * d;
        }
    });
    for (double& v : s.variance) v /= count;
    out.push_back(std::move(s));
  }
  return out;
}

StatisticsGap moving_statistics_gap(Sequential& model, const std::vector<LayerStatistics>& population) {
  double dm = 0, nm = 0, dv = 0, nv = 0;
  size_t next = 0;
  for (const auto& child : model.children()) {
    auto* bn = dynamic_cast<BatchNormalization*>(child.get());
    if (!bn) continue;
    if (next >= population.size() || population[next].layer != bn->name())
      fail("moving_statistics_gap: the statistics do not list the model's layer '", bn->name(), "'");
    const LayerStatistics& s = population[next++];
    for (size_t k = 0; k < s.mean.size(); ++k) {
      dm += std::pow(bn->moving_mean().data()[k] - s.mean[k], 2);
      nm += s.mean[k] * s.mean[k];
      dv += std::pow(bn->moving_variance().data()[k] - s.variance[k], 2);
      nv += s.variance[k] * s.variance[k];
    }
  }
  if (next == 0) return {};
  return {std::sqrt(dm / std::max(nm, 1e-30)), std::sqrt(dv / std::max(nv, 1e-30))};
}

}  // namespace minidl
