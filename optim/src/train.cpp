// The step, fit (a Trainer with Keras's defaults), evaluate and predict, written with the public API.
#include "minidl/train.h"

#include <cstring>

#include "minidl/autograd.h"
#include "minidl/denormal.h"
#include "minidl/distributed.h"
#include "minidl/layers.h"
#include "minidl/losses.h"

namespace minidl {

ForwardResult categorical_forward(Module& model, const Batch& batch) {
  if (!batch.one_hot.defined())
    fail("categorical cross-entropy needs one-hot targets: a DataLoader with one_hot = true, on class labels");
  const Tensor prediction = model.forward(batch.x);
  return {categorical_crossentropy(batch.one_hot, prediction), prediction};
}

Tensor batch_targets(Loss loss, const Batch& batch) {
  if (loss == Loss::categorical_crossentropy) {
    if (!batch.one_hot.defined()) fail("categorical cross-entropy needs one-hot targets: a DataLoader with one_hot = true");
    return batch.one_hot;
  }
  if (loss == Loss::binary_crossentropy) {
    Tensor y = Tensor::empty({static_cast<int64_t>(batch.labels.size()), 1});
    for (size_t i = 0; i < batch.labels.size(); ++i) y.data()[i] = static_cast<float>(batch.labels[i]);
    return y;
  }
  if (!batch.targets.defined()) fail(to_string(loss), " needs float targets (regression data), but the batch has class labels");
  return batch.targets;
}

ForwardFn loss_forward(Loss loss, float label_smoothing) {
  check_label_smoothing(loss, label_smoothing);
  if (loss == Loss::categorical_crossentropy && label_smoothing == 0.0f) return categorical_forward;
  return [loss, label_smoothing](Module& model, const Batch& batch) -> ForwardResult {
    const Tensor prediction = model.forward(batch.x);
    return {compute_loss(loss, smooth_labels(loss, batch_targets(loss, batch), label_smoothing), prediction), prediction};
  };
}

void check_loss(Loss loss, const Module& model, const Dataset& data, const std::string& what) {
  const auto* sequential = dynamic_cast<const Sequential*>(&model);
  const Shape out = sequential ? sequential->output_shape({1, data.features()}) : Shape{};
  const int64_t width = out.rank() == 2 ? out[1] : -1;  // -1: unknown
  if (is_regression(loss)) {
    if (!data.is_regression())
      fail(what, ": the loss ", to_string(loss), " is for regression (float targets), but the data has class labels — "
           "use categorical_crossentropy (a softmax output) or binary_crossentropy (one sigmoid output)");
    if (width >= 0 && width != data.outputs)
      fail(what, ": the model gives ", width, " output", width == 1 ? "" : "s", " per sample but the data has ",
           data.outputs, " target", data.outputs == 1 ? "" : "s", " — end the model with dense:", data.outputs);
    return;
  }
  if (data.is_regression())
    fail(what, ": the loss ", to_string(loss), " is for class labels, but the data has float targets — use mse, mae "
         "or huber, and a model that ends without softmax or sigmoid");
  if (loss == Loss::binary_crossentropy) {
    if (data.num_classes > 2)
      fail(what, ": binary cross-entropy takes labels 0 and 1, but the data has ", data.num_classes,
           " classes — use categorical_crossentropy with dense:", data.num_classes, ",softmax");
    if (width >= 0 && width != 1)
      fail(what, ": binary cross-entropy scores one probability per sample, but the model gives ", width,
           " — end it with dense:1,sigmoid");
  }
}

StepResult train_step(Module& model, Optimizer& optimizer, const Batch& batch) {
  model.train();
  const bool regression = batch.targets.defined();
  const ForwardResult f = loss_forward(default_loss(model, regression))(model, batch);
  optimizer.zero_grad();
  f.loss.backward();
  optimizer.step();
  StepResult r{f.loss.item(), 0, batch.x.size(0)};
  if (regression) r.abs_error = absolute_error_sum(batch.targets, f.prediction);
  else r.correct = count_correct(batch.labels, f.prediction);
  return r;
}

LoaderOptions training_loader_options(const Module& model, const Dataset& data, LoaderOptions options) {
  options.min_batch_size = std::max(options.min_batch_size, model.min_training_batch({1, data.features()}));
  const int64_t rest = data.size() % options.batch_size;
  if (!options.drop_last && rest > 0 && rest < options.min_batch_size && data.size() > options.batch_size)
    warn("the last batch of each epoch would hold ", rest, " sample", rest == 1 ? "" : "s", " (", data.size(),
         " samples, batch ", options.batch_size, "), too few for the model's batch normalisation to train on: it is "
         "skipped (drop_last drops every partial batch)");
  return options;
}

std::vector<EpochLogs> fit(Module& model, Optimizer& optimizer, const Dataset& data, const FitOptions& options) {
  if (options.epochs < 0) fail("fit: epochs must be >= 0, got ", options.epochs);
  // Copy rows out only when a validation split asks for it.
  std::pair<Dataset, Dataset> split;
  if (options.validation_split > 0.0) split = split_validation(data, options.validation_split);
  const Dataset& train = options.validation_split > 0.0 ? split.first : data;
  DataLoader loader(train,
                    training_loader_options(model, train,
                                            {.batch_size = options.batch_size, .shuffle = options.shuffle, .seed = options.seed}),
                    true);
  TrainerOptions trainer_options{.epochs = options.epochs, .validation_batch_size = options.batch_size};
  if (options.validation_split > 0.0) trainer_options.validation = &split.second;
  Trainer trainer(model, optimizer, loader, trainer_options);
  for (const auto& callback : options.callbacks) trainer.add_callback(callback);
  if (options.on_epoch_end) {
    struct EpochEnd : Callback {
      explicit EpochEnd(std::function<void(const EpochLogs&)> f) : f(std::move(f)) {}
      void on_epoch_end(Trainer&, const EpochLogs& logs) override { f(logs); }
      std::function<void(const EpochLogs&)> f;
    };
    trainer.add_callback(std::make_shared<EpochEnd>(options.on_epoch_end));
  }
  return trainer.fit();
}

void check_evaluation(const Module& model, const Dataset& data, int64_t batch_size, bool batch_statistics,
                      const std::string& what) {
  if (batch_size < 1) fail(what, " must be >= 1, got ", batch_size);
  if (data.size() == 0) return;
  const Shape one{1, data.features()};
  const int64_t needed = batch_statistics ? model.min_batch_statistics_batch(one) : model.min_inference_batch(one);
  const int64_t rest = data.size() % batch_size;
  const int64_t smallest = std::min(batch_size, rest == 0 ? batch_size : rest);
  if (smallest >= needed) return;
  fail(what, " ", batch_size, " gives ", smallest == batch_size ? "batches" : "a last batch", " of ", smallest,
       " sample", smallest == 1 ? "" : "s", " (", data.size(), " sample", data.size() == 1 ? "" : "s",
       " to evaluate), but the model normalises each evaluated batch with that batch's own statistics",
       batch_statistics ? "" : " (manual mode has no moving statistics)", " and needs at least ", needed,
       " — choose a batch size, or a number of samples, that leaves no batch that small");
}

Evaluation evaluate(Module& model, const Dataset& data, int64_t batch_size, bool batch_statistics, std::optional<Loss> loss,
                    Communicator* world, float label_smoothing) {
  check_evaluation(model, data, batch_size, batch_statistics, "evaluate: batch size");
  const Loss l = loss.value_or(default_loss(model, data.is_regression()));
  check_loss(l, model, data, "evaluate");
  check_label_smoothing(l, label_smoothing);
  const FlushDenormalGuard flush;
  // Inference mode throughout (Dropout off); with batch_statistics the normalisation layers alone normalise each
  // batch by itself, and nothing is updated.
  const ModeGuard inference(model, false);
  const BatchStatisticsGuard statistics(model, batch_statistics);
  const NoGradGuard no_grad;
  DataLoader loader(data, {.batch_size = batch_size, .shuffle = false}, true);
  // Several processes: each forwards batches [⌊r·K/N⌋, ⌊(r+1)·K/N⌋) of the K, every batch normalised by itself
  // (no synchronised statistics: the processes hold different batches), takes their losses there (where the
  // output still knows its logits) and sends the losses and outputs to all; then every process scores all the
  // batches as one process would, in the same order, to the same bits.
  const auto batch_loss = [&](const Batch& b, const Tensor& prediction) {
    return compute_loss(l, smooth_labels(l, batch_targets(l, b), label_smoothing), prediction).item() *
           static_cast<double>(b.x.size(0));
  };
  const int ranks = world ? world->size() : 1;
  std::vector<std::pair<double, Tensor>> shared;  // batch k's loss sum and outputs, from whichever process ran it
  if (ranks > 1) {
    const UnsynchronizedScope alone(model);
    const int64_t batches = loader.batches_per_epoch(), first = world->rank() * batches / ranks,
                  last = (world->rank() + 1) * batches / ranks;
    loader.start_epoch();
    Batch batch;
    std::string mine;  // per batch: its loss sum (a double), then its outputs
    for (int64_t k = 0; loader.next(batch); ++k) {
      if (k < first || k >= last) continue;
      const Tensor y = model.forward(batch.x);
      const double sum = batch_loss(batch, y);
      mine.append(reinterpret_cast<const char*>(&sum), sizeof sum);
      mine.append(reinterpret_cast<const char*>(y.data()), static_cast<size_t>(y.numel()) * sizeof(float));
    }
    std::string all;
    for (const std::string& part : world->all_gather(mine)) all += part;
    const int64_t floats = (static_cast<int64_t>(all.size()) - batches * static_cast<int64_t>(sizeof(double))) /
                           static_cast<int64_t>(sizeof(float));
    const int64_t width = floats / data.size();
    if (width < 1 || width * data.size() * static_cast<int64_t>(sizeof(float)) + batches * static_cast<int64_t>(sizeof(double)) !=
                         static_cast<int64_t>(all.size()))
      fail("evaluate: the processes returned ", all.size(), " bytes for ", batches, " batches of ", data.size(), " samples");
    const char* at = all.data();
    for (int64_t k = 0, row = 0; k < batches; ++k) {
      const int64_t rows = std::min(batch_size, data.size() - row);
      double sum;
      std::memcpy(&sum, at, sizeof sum);
      at += sizeof sum;
      std::vector<float> outputs(static_cast<size_t>(rows * width));
      std::memcpy(outputs.data(), at, outputs.size() * sizeof(float));
      at += outputs.size() * sizeof(float);
      shared.emplace_back(sum, Tensor::from({rows, width}, outputs));
      row += rows;
    }
  }
  loader.start_epoch();
  Batch batch;
  double loss_sum = 0.0;
  int64_t correct = 0;
  RegressionMetrics regression;
  std::vector<float> scores;  // one sigmoid output: every sample's, for the AUC
  for (size_t k = 0; loader.next(batch); ++k) {
    const Tensor prediction = ranks > 1 ? shared[k].second : model.forward(batch.x);
    loss_sum += ranks > 1 ? shared[k].first : batch_loss(batch, prediction);
    if (data.is_regression()) {
      regression.add(batch.targets, prediction);
      continue;
    }
    correct += count_correct(batch.labels, prediction);
    if (prediction.size(1) == 1) scores.insert(scores.end(), prediction.data(), prediction.data() + prediction.numel());
  }
  Evaluation e;
  const double n = static_cast<double>(data.size());
  e.loss = loss_sum / n;
  if (data.is_regression()) {
    e.regression = true;
    e.mae = regression.mae(), e.rmse = regression.rmse(), e.r2 = regression.r2();
    e.accuracy = NAN;
    return e;
  }
  e.accuracy = static_cast<double>(correct) / n;
  if (!scores.empty()) e.auc = roc_auc(data.labels, scores);
  return e;
}

Tensor predict(Module& model, const Tensor& x, int64_t batch_size) {
  if (x.dim() < 2) fail("predict: expects inputs [N, ...], got ", x.shape().str());
  if (batch_size <= 0) fail("predict: batch size must be > 0, got ", batch_size);
  const FlushDenormalGuard flush;
  const ModeGuard inference(model, false);
  const NoGradGuard no_grad;
  const int64_t n = x.size(0), per_sample = n ? x.numel() / n : 0;
  Tensor out;
  for (int64_t begin = 0; begin < n; begin += batch_size) {
    const int64_t rows = std::min(batch_size, n - begin);
    Shape part_shape = x.shape();
    part_shape[0] = rows;
    const Tensor part =
        Tensor::from(part_shape, {x.data() + begin * per_sample, static_cast<size_t>(rows * per_sample)});
    const Tensor y = model.forward(part);
    if (!out.defined()) out = Tensor::empty({n, y.size(1)});
    std::memcpy(out.data() + begin * y.size(1), y.data(), sizeof(float) * static_cast<size_t>(y.numel()));
  }
  return out.defined() ? out : Tensor::empty({0, 0});
}

}  // namespace minidl
