// The population statistics of the inputs of a model's BatchNormalization layers, and how far the layers'
// moving statistics are from them.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "minidl/data.h"
#include "minidl/module.h"

namespace minidl {

/// The mean and biased variance, per channel, of one BatchNormalization layer's input.
struct LayerStatistics {
  std::string layer;
  std::vector<double> mean, variance;
};

/// For each BatchNormalization layer of the model, in order, the statistics of its input over the first
/// `samples` rows of `data` (all when 0), computed exactly (two passes in double, not an average of batches)
/// with the model in inference mode: the layers before it use their moving statistics as they are.
std::vector<LayerStatistics> population_statistics(Sequential& model, const Dataset& data, int64_t samples = 0,
                                                   int64_t batch_size = 1000);

struct StatisticsGap {
  double mean = NAN, variance = NAN;  ///< NaN when the model has no BatchNormalization layer
};

/// The relative L2 distance ‖moving − population‖ / ‖population‖ over every channel of every layer, for the
/// means and for the variances.
StatisticsGap moving_statistics_gap(Sequential& model, const std::vector<LayerStatistics>& population);

}  // namespace minidl
