// The population statistics of the inputs of a model's BatchNormalization layers, how far the layers' moving
// statistics are from them, re-estimating the moving statistics from data (PreciseBN), and adapting Keras's
// Normalization layers to the training data.
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

/// True when the model has a BatchNormalization layer, whose moving statistics inference uses (manual mode's
/// MomentsNormalization keeps none).
bool has_moving_statistics(const Sequential& model);

struct Recalibration {
  int layers = 0;         ///< BatchNormalization layers whose moving statistics were replaced
  int64_t samples = 0;    ///< training samples they were computed from
  /// How far each layer's new moving statistics are from its old ones: ‖new − old‖ / ‖new‖ over every channel of
  /// every layer (moving_statistics_gap's measure, taken before the replacement).
  StatisticsGap change;
};

/// PreciseBN (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", §3): replaces every BatchNormalization
/// layer's moving mean and variance with the population statistics of its input over `samples` rows of `data`
/// drawn without replacement by a Generator(seed) permutation (all rows when samples <= 0 or more than the
/// data holds). Layer by layer, in order: each layer's statistics are computed with the layers before it
/// already recalibrated, exactly (two passes in double), with the model in inference mode; weights are not
/// touched. Throws when the model has no BatchNormalization layer (manual mode normalises every batch with its
/// own statistics and keeps none).
Recalibration recalibrate_batch_norm(Sequential& model, const Dataset& data, int64_t samples, uint64_t seed = 1,
                                     int64_t batch_size = 1000);

/// Keras's Normalization.adapt for every FeatureNormalization layer of the model, in order: each layer's mean
/// and variance (population, in double) over its input from every row of `data`, the layers before it run in
/// inference mode. Returns the number of layers adapted (0: the model has none).
int adapt_normalization(Sequential& model, const Dataset& data, int64_t batch_size = 1000);

}  // namespace minidl
