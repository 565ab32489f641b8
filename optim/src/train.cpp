// train_step, fit, evaluate and predict: the loops of Keras's compile/fit, written with the public API.
#include "minidl/train.h"

#include <chrono>
#include <cstring>

#include "minidl/autograd.h"
#include "minidl/losses.h"

namespace minidl {

StepResult train_step(Module& model, Optimizer& optimizer, const Batch& batch) {
  model.train();
  const Tensor prediction = model.forward(batch.x);
  const Tensor loss = categorical_crossentropy(batch.one_hot, prediction);
  optimizer.zero_grad();
  loss.backward();
  optimizer.step();
  return {loss.item(), count_correct(batch.labels, prediction), batch.x.size(0)};
}

std::vector<EpochLogs> fit(Module& model, Optimizer& optimizer, const Dataset& data, const FitOptions& options) {
  if (options.epochs < 0) fail("fit: epochs must be >= 0, got ", options.epochs);
  // Copy rows out only when a validation split asks for it.
  std::pair<Dataset, Dataset> split;
  if (options.validation_split > 0.0) split = split_validation(data, options.validation_split);
  const Dataset& train = options.validation_split > 0.0 ? split.first : data;
  const Dataset& validation = split.second;
  DataLoader loader(train, {.batch_size = options.batch_size, .shuffle = options.shuffle, .seed = options.seed}, true);
  std::vector<EpochLogs> history;
  Batch batch;
  for (int epoch = 1; epoch <= options.epochs; ++epoch) {
    EpochLogs logs;
    logs.epoch = epoch;
    double loss_sum = 0.0;
    int64_t correct = 0, samples = 0;
    const auto start = std::chrono::steady_clock::now();
    loader.start_epoch();
    while (loader.next(batch)) {
      const StepResult step = train_step(model, optimizer, batch);
      loss_sum += step.loss * static_cast<double>(step.samples);
      correct += step.correct;
      samples += step.samples;
      ++logs.steps;
    }
    logs.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    logs.loss = loss_sum / static_cast<double>(samples);
    logs.accuracy = static_cast<double>(correct) / static_cast<double>(samples);
    if (validation.size() > 0) {
      const Evaluation v = evaluate(model, validation, options.batch_size);
      logs.val_loss = v.loss;
      logs.val_accuracy = v.accuracy;
    }
    history.push_back(logs);
    if (options.on_epoch_end) options.on_epoch_end(logs);
  }
  return history;
}

Evaluation evaluate(Module& model, const Dataset& data, int64_t batch_size, bool batch_statistics) {
  const ModeGuard mode(model, batch_statistics);
  const NoGradGuard no_grad;
  // Training-mode forwards update moving statistics as a side effect: keep a copy to put back.
  std::vector<std::pair<Tensor, Tensor>> saved;
  if (batch_statistics)
    for (const Tensor& b : model.buffers()) saved.emplace_back(b, b.clone());
  struct Restore {
    std::vector<std::pair<Tensor, Tensor>>& saved;
    ~Restore() {
      for (auto& [live, copy] : saved) live.copy_(copy);
    }
  } restore{saved};
  DataLoader loader(data, {.batch_size = batch_size, .shuffle = false}, true);
  loader.start_epoch();
  Batch batch;
  double loss_sum = 0.0;
  int64_t correct = 0;
  while (loader.next(batch)) {
    const Tensor prediction = model.forward(batch.x);
    loss_sum += categorical_crossentropy(batch.one_hot, prediction).item() * static_cast<double>(batch.x.size(0));
    correct += count_correct(batch.labels, prediction);
  }
  return {loss_sum / static_cast<double>(data.size()), static_cast<double>(correct) / static_cast<double>(data.size())};
}

Tensor predict(Module& model, const Tensor& x, int64_t batch_size) {
  if (x.dim() != 2) fail("predict: expects inputs [N, features], got ", x.shape().str());
  if (batch_size <= 0) fail("predict: batch size must be > 0, got ", batch_size);
  const ModeGuard inference(model, false);
  const NoGradGuard no_grad;
  const int64_t n = x.size(0), features = x.size(1);
  Tensor out;
  for (int64_t begin = 0; begin < n; begin += batch_size) {
    const int64_t rows = std::min(batch_size, n - begin);
    const Tensor part = Tensor::from({rows, features}, {x.data() + begin * features, static_cast<size_t>(rows * features)});
    const Tensor y = model.forward(part);
    if (!out.defined()) out = Tensor::empty({n, y.size(1)});
    std::memcpy(out.data() + begin * y.size(1), y.data(), sizeof(float) * static_cast<size_t>(y.numel()));
  }
  return out.defined() ? out : Tensor::empty({0, 0});
}

}  // namespace minidl
