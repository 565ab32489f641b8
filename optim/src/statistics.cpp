// Population statistics of BatchNormalization inputs (the model's prefix up to each layer, run in inference
// mode over the data in batches, with per-channel sums in double), PreciseBN, which installs them, and the
// adaptation of Normalization layers.
#include "minidl/statistics.h"

#include <cmath>

#include "minidl/autograd.h"
#include "minidl/layers.h"
#include "minidl/ops.h"
#include "minidl/train.h"

namespace minidl {
namespace {
// Thrown by the observer once it has seen a layer's input: the rest of the forward pass is not needed.
struct InputSeen {};

// Calls f(h) with the input of `layer` (a module anywhere in the model, in a block too) for each batch of data's
// first `samples` rows; the model runs only as far as that layer.
template <class F>
void for_each_input(Sequential& model, Module& layer, const Dataset& data, int64_t samples, int64_t batch_size, F f) {
  layer.set_input_observer([&](const Tensor& h) {
    f(h);
    throw InputSeen{};
  });
  try {
    for (int64_t begin = 0; begin < samples; begin += batch_size) {
      const int64_t end = std::min(begin + batch_size, samples);
      try {
        model.forward(data.slice(begin, end).to_tensor());
      } catch (const InputSeen&) {
        continue;
      }
      fail("internal error: the model's forward pass never reached layer '", layer.name(), "'");
    }
  } catch (...) {
    layer.set_input_observer({});
    throw;
  }
  layer.set_input_observer({});
}

// Every module of type M in the model, in the order a forward pass reaches them (depth first: a block's layers,
// then its shortcut's).
template <class M>
std::vector<M*> modules_of(Sequential& model) {
  std::vector<M*> out;
  for_each_module<M>(model, [&](M& m) { out.push_back(&m); });
  return out;
}

// ‖moving − population‖ / ‖population‖, for the means and the variances, summed channel by channel.
struct GapSum {
  double dm = 0, nm = 0, dv = 0, nv = 0;
  void add(float moving_mean, float moving_variance, double mean, double variance) {
    dm += std::pow(moving_mean - mean, 2);
    nm += mean * mean;
    dv += std::pow(moving_variance - variance, 2);
    nv += variance * variance;
  }
  StatisticsGap gap() const { return {std::sqrt(dm / std::max(nm, 1e-30)), std::sqrt(dv / std::max(nv, 1e-30))}; }
};

// The statistics of the input of `bn`, a layer of the model.
LayerStatistics input_statistics(Sequential& model, BatchNormalization& bn, const Dataset& data, int64_t samples,
                                 int64_t batch_size) {
  const ModeGuard inference(model, false);
  const NoGradGuard no_grad;
  LayerStatistics s{bn.name(), {}, {}};
  const size_t c = static_cast<size_t>(bn.moving_mean().numel());
  s.mean.assign(c, 0.0);
  s.variance.assign(c, 0.0);
  double count = 0.0;
  // Two passes: the mean, then the biased variance around it (Keras keeps the biased variance).
  for_each_input(model, bn, data, samples, batch_size, [&](const Tensor& h) {
    const float* p = h.data();
    const int64_t rows = h.numel() / static_cast<int64_t>(c);
    for (int64_t r = 0; r < rows; ++r)
      for (size_t k = 0; k < c; ++k) s.mean[k] += p[r * static_cast<int64_t>(c) + k];
    count += static_cast<double>(rows);
  });
  for (double& m : s.mean) m /= count;
  for_each_input(model, bn, data, samples, batch_size, [&](const Tensor& h) {
    const float* p = h.data();
    const int64_t rows = h.numel() / static_cast<int64_t>(c);
    for (int64_t r = 0; r < rows; ++r)
      for (size_t k = 0; k < c; ++k) {
        const double d = p[r * static_cast<int64_t>(c) + k] - s.mean[k];
        s.variance[k] += d * d;
      }
  });
  for (double& v : s.variance) v /= count;
  return s;
}


// `n` rows of `data` drawn without replacement, in the order a Generator(seed) permutation lists them.
Dataset sample_rows(const Dataset& data, int64_t n, uint64_t seed) {
  Generator gen(seed);
  const std::vector<int32_t> order = gen.permutation(static_cast<int32_t>(data.size()));
  Dataset out = data.slice(0, 0);
  const size_t f = static_cast<size_t>(data.features());
  for (int64_t i = 0; i < n; ++i) {
    const size_t row = static_cast<size_t>(order[static_cast<size_t>(i)]);
    if (data.is_images())
      out.images.insert(out.images.end(), data.images.begin() + row * f, data.images.begin() + (row + 1) * f);
    else
      out.values.insert(out.values.end(), data.values.begin() + row * f, data.values.begin() + (row + 1) * f);
    if (data.is_regression())
      out.targets.insert(out.targets.end(), data.targets.begin() + static_cast<int64_t>(row) * data.outputs,
                         data.targets.begin() + static_cast<int64_t>(row + 1) * data.outputs);
    else
      out.labels.push_back(data.labels[row]);
  }
  return out;
}
}  // namespace

bool has_moving_statistics(const Sequential& model) {
  return !modules_of<BatchNormalization>(const_cast<Sequential&>(model)).empty();
}

std::vector<LayerStatistics> population_statistics(Sequential& model, const Dataset& data, int64_t samples,
                                                   int64_t batch_size) {
  if (batch_size < 1) fail("population_statistics: batch size must be >= 1, got ", batch_size);
  samples = samples <= 0 ? data.size() : std::min(samples, data.size());
  std::vector<LayerStatistics> out;
  for (BatchNormalization* bn : modules_of<BatchNormalization>(model))
    out.push_back(input_statistics(model, *bn, data, samples, batch_size));
  return out;
}

Recalibration recalibrate_batch_norm(Sequential& model, const Dataset& data, int64_t samples, uint64_t seed,
                                     int64_t batch_size) {
  if (batch_size < 1) fail("recalibrate_batch_norm: batch size must be >= 1, got ", batch_size);
  const std::vector<BatchNormalization*> layers = modules_of<BatchNormalization>(model);
  if (layers.empty())
    fail("recalibrate_batch_norm: the model has no BatchNormalization layer with moving statistics to re-estimate "
         "(manual mode normalises every batch with its own statistics and keeps none)");
  if (data.size() == 0) fail("recalibrate_batch_norm: the data set is empty");
  samples = samples <= 0 ? data.size() : std::min(samples, data.size());
  const Dataset subset = sample_rows(data, samples, seed);
  Recalibration r{static_cast<int>(layers.size()), samples, {}};
  std::vector<LayerStatistics> computed;
  std::vector<std::pair<std::vector<float>, std::vector<float>>> old;
  for (BatchNormalization* layer : layers) {
    LayerStatistics s = input_statistics(model, *layer, subset, samples, batch_size);
    BatchNormalization& bn = *layer;
    old.emplace_back(bn.moving_mean().to_vector(), bn.moving_variance().to_vector());
    for (size_t k = 0; k < s.mean.size(); ++k) {
      bn.moving_mean().data()[k] = static_cast<float>(s.mean[k]);
      bn.moving_variance().data()[k] = static_cast<float>(s.variance[k]);
      // Renorm derives its moving variance from moving_stddev: keep the two in step.
      if (bn.moving_stddev().defined())
        bn.moving_stddev().data()[k] = std::sqrt(static_cast<float>(s.variance[k]) + bn.options().epsilon);
    }
    computed.push_back(std::move(s));
  }
  // The change, measured as moving_statistics_gap measures: old moving statistics against the new ones.
  GapSum change;
  for (size_t i = 0; i < computed.size(); ++i)
    for (size_t k = 0; k < computed[i].mean.size(); ++k)
      change.add(old[i].first[k], old[i].second[k], computed[i].mean[k], computed[i].variance[k]);
  r.change = change.gap();
  return r;
}

StatisticsGap moving_statistics_gap(Sequential& model, const std::vector<LayerStatistics>& population) {
  GapSum sum;
  size_t next = 0;
  for (BatchNormalization* bn : modules_of<BatchNormalization>(model)) {
    if (next >= population.size() || population[next].layer != bn->name())
      fail("moving_statistics_gap: the statistics do not list the model's layer '", bn->name(), "'");
    const LayerStatistics& s = population[next++];
    for (size_t k = 0; k < s.mean.size(); ++k)
      sum.add(bn->moving_mean().data()[k], bn->moving_variance().data()[k], s.mean[k], s.variance[k]);
  }
  if (next == 0) return {};
  return sum.gap();
}

int adapt_normalization(Sequential& model, const Dataset& data, int64_t batch_size) {
  if (batch_size < 1) fail("adapt_normalization: batch size must be >= 1, got ", batch_size);
  if (data.size() == 0) fail("adapt_normalization: the data is empty");
  const NoGradGuard no_grad;
  const ModeGuard inference(model, false);
  int adapted = 0;
  for (FeatureNormalization* layer : modules_of<FeatureNormalization>(model)) {
    FeatureNormalization::Accumulator statistics;
    for_each_input(model, *layer, data, data.size(), batch_size, [&](const Tensor& h) { statistics.add(h); });
    layer->adapt(statistics);
    ++adapted;
  }
  return adapted;
}

}  // namespace minidl
