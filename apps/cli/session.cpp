// The training session: model + Adam + loader + counters, and its checkpoint format.
#include "session.h"

#include <chrono>
#include <cstdio>
#include <set>

#include <spdlog/spdlog.h>

#include "minidl/losses.h"

namespace minidl::cli {
namespace {
constexpr const char* kFormat = "minidl-checkpoint-1";
constexpr const char* kOptimizerPrefix = "optimizer/";

// Shortest text that reads back as the same float.
std::string exact(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
  return buf;
}

std::string words(const std::array<uint64_t, 4>& s) {
  char buf[80];
  std::snprintf(buf, sizeof buf, "%016llx %016llx %016llx %016llx", static_cast<unsigned long long>(s[0]),
                static_cast<unsigned long long>(s[1]), static_cast<unsigned long long>(s[2]),
                static_cast<unsigned long long>(s[3]));
  return buf;
}

std::array<uint64_t, 4> parse_words(const std::string& text, const std::string& path) {
  std::array<uint64_t, 4> s{};
  unsigned long long w[4];
  if (std::sscanf(text.c_str(), "%llx %llx %llx %llx", &w[0], &w[1], &w[2], &w[3]) != 4)
    fail("checkpoint '", path, "': bad generator state '", text, "'");
  for (int i = 0; i < 4; ++i) s[i] = w[i];
  return s;
}

const std::string& require(const std::map<std::string, std::string>& m, const std::string& key, const std::string& path) {
  const auto it = m.find(key);
  if (it == m.end()) fail("checkpoint '", path, "': metadata lacks '", key, "' — not written by `minidl train`?");
  return it->second;
}

template <class T>
T number(const std::map<std::string, std::string>& m, const std::string& key, const std::string& path) {
  const std::string& text = require(m, key, path);
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used != text.size()) throw std::invalid_argument(text);
    return static_cast<T>(v);
  } catch (const std::exception&) {
    fail("checkpoint '", path, "': metadata '", key, "' is '", text, "', expected a number");
  }
}

// The model's tensors from a checkpoint: every one present with its shape; optimizer slots ignored.
std::map<std::string, Tensor> model_tensors(const Module& model, const Checkpoint& checkpoint, const std::string& path,
                                            NormMode mode) {
  std::map<std::string, Tensor> out;
  std::set<std::string> wanted;
  for (const auto& [name, t] : model.state()) wanted.insert(name);
  for (const auto& [name, t] : checkpoint.tensors) {
    if (name.rfind(kOptimizerPrefix, 0) == 0) continue;
    if (!wanted.count(name))
      fail("checkpoint '", path, "' has tensor '", name, "', which the model (mode ", to_string(mode), ") does not");
    out[name] = t;
  }
  for (const auto& [name, t] : model.state())
    if (!out.count(name))
      fail("checkpoint '", path, "' lacks tensor '", name, "' ", t.shape().str(), " (mode ", to_string(mode), ")");
  return out;
}

void load_into(Module& model, const Checkpoint& checkpoint, const std::string& path, NormMode mode) {
  try {
    model.load_state(model_tensors(model, checkpoint, path, mode));
  } catch (const Error& e) {
    fail("checkpoint '", path, "': ", e.what());
  }
}
}  // namespace

std::map<std::string, std::string> TrainConfig::to_metadata() const {
  return {{"format", kFormat},
          {"mode", to_string(mode)},
          {"architecture", "784-dense" + std::to_string(hidden) + "relu-" +
                               (mode == NormMode::none ? std::string() : "norm-") + "dense10softmax"},
          {"hidden", std::to_string(hidden)},
          {"epochs", std::to_string(epochs)},
          {"batch_size", std::to_string(batch_size)},
          {"learning_rate", exact(learning_rate)},
          {"momentum", exact(model_options().batch_norm.momentum)},
          {"epsilon", exact(epsilon)},
          {"seed", std::to_string(seed)},
          {"shuffle", shuffle ? "1" : "0"},
          {"eval_batch_size", std::to_string(eval_batch_size)}};
}

TrainConfig TrainConfig::from_metadata(const std::map<std::string, std::string>& m, const std::string& path) {
  if (require(m, "format", path) != kFormat)
    fail("checkpoint '", path, "': format '", m.at("format"), "', expected '", kFormat, "'");
  TrainConfig c;
  c.mode = parse_norm_mode(require(m, "mode", path));
  c.hidden = number<int64_t>(m, "hidden", path);
  c.epochs = number<int>(m, "epochs", path);
  c.batch_size = number<int64_t>(m, "batch_size", path);
  c.learning_rate = number<float>(m, "learning_rate", path);
  c.momentum = number<float>(m, "momentum", path);
  c.epsilon = number<float>(m, "epsilon", path);
  c.seed = number<uint64_t>(m, "seed", path);
  c.shuffle = number<int>(m, "shuffle", path) != 0;
  c.eval_batch_size = number<int64_t>(m, "eval_batch_size", path);
  return c;
}

DocumentModelOptions TrainConfig::model_options() const {
  DocumentModelOptions options;
  options.hidden = hidden;
  options.batch_norm.epsilon = epsilon;
  options.batch_norm.momentum = momentum.value_or(mode == NormMode::batchwise ? 0.0f : 0.99f);
  options.momentum_set = true;
  return options;
}

TrainingSession::TrainingSession(const TrainConfig& config, const Dataset& train)
    : config_(config),
      loader_(train, {.batch_size = config.batch_size, .shuffle = config.shuffle, .seed = config.seed}, true) {
  if (config.epochs < 0) fail("--epochs must be >= 0, got ", config.epochs);
  if (config.hidden < 1) fail("--hidden must be >= 1, got ", config.hidden);
  if (train.features() != 784) fail("the data has ", train.features(), " features per image, expected 28x28 = 784");
  clear_session();  // Keras's names in every session: dense, batch_normalization, dense_1
  Generator gen(config.seed);
  model_ = make_document_model(config.mode, config.model_options(), gen);
  optimizer_ = std::make_unique<Adam>(model_->parameters(), AdamOptions{.learning_rate = config.learning_rate});
}

void TrainingSession::init_weights(const Checkpoint& checkpoint, const std::string& path) {
  load_into(*model_, checkpoint, path, config_.mode);
}

void TrainingSession::resume(const Checkpoint& checkpoint, const std::string& path) {
  load_into(*model_, checkpoint, path, config_.mode);
  std::map<std::string, Tensor> slots;
  for (const auto& [name, t] : checkpoint.tensors)
    if (name.rfind(kOptimizerPrefix, 0) == 0) slots[name.substr(std::string(kOptimizerPrefix).size())] = t;
  try {
    optimizer_->load_state(slots);
  } catch (const Error& e) {
    fail("checkpoint '", path, "': ", e.what(), " — was it saved by `minidl train --save`?");
  }
  const auto& m = checkpoint.metadata;
  optimizer_->set_iterations(number<int64_t>(m, "step", path));
  LoaderState state;
  state.epoch = number<int64_t>(m, "loader_epoch", path);
  state.next_batch = number<int64_t>(m, "loader_next_batch", path);
  state.epoch_rng = parse_words(require(m, "loader_epoch_rng", path), path);
  state.rng = parse_words(require(m, "loader_rng", path), path);
  loader_.set_state(state);
}

bool TrainingSession::finished() const {
  const LoaderState s = loader_.state();
  const bool epoch_open = s.epoch > 0 && s.next_batch < loader_.batches_per_epoch();
  if (config_.max_steps >= 0 && step() >= config_.max_steps) return true;
  return s.epoch >= config_.epochs && !epoch_open;
}

EpochLogs TrainingSession::run_epoch(const ProgressFn& progress) {
  const LoaderState s = loader_.state();
  if (s.epoch == 0 || s.next_batch >= loader_.batches_per_epoch()) loader_.start_epoch();
  EpochLogs logs;
  logs.epoch = static_cast<int>(loader_.state().epoch);
  double loss_sum = 0.0;
  int64_t correct = 0, samples = 0;
  const auto start = std::chrono::steady_clock::now();
  while ((config_.max_steps < 0 || step() < config_.max_steps) && loader_.next(batch_)) {
    const StepResult r = train_step(*model_, *optimizer_, batch_);
    loss_sum += r.loss * static_cast<double>(r.samples);
    correct += r.correct;
    samples += r.samples;
    ++logs.steps;
    if (progress)
      progress(loader_.state().next_batch, loader_.batches_per_epoch(), loss_sum / samples,
               static_cast<double>(correct) / samples);
  }
  logs.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  logs.loss = samples ? loss_sum / samples : 0.0;
  logs.accuracy = samples ? static_cast<double>(correct) / samples : 0.0;
  return logs;
}

void TrainingSession::save(const std::string& path) const {
  NamedTensors tensors = model_->state();
  for (const auto& [name, t] : optimizer_->state()) tensors.emplace_back(kOptimizerPrefix + name, t);
  auto metadata = config_.to_metadata();
  const LoaderState s = loader_.state();
  metadata["step"] = std::to_string(step());
  metadata["loader_epoch"] = std::to_string(s.epoch);
  metadata["loader_next_batch"] = std::to_string(s.next_batch);
  metadata["loader_epoch_rng"] = words(s.epoch_rng);
  metadata["loader_rng"] = words(s.rng);
  save_safetensors(path, tensors, metadata);
}

std::shared_ptr<Sequential> load_model(const std::string& path, TrainConfig* config_out) {
  const Checkpoint checkpoint = load_safetensors(path);
  const TrainConfig config = TrainConfig::from_metadata(checkpoint.metadata, path);
  clear_session();
  Generator gen(config.seed);
  auto model = make_document_model(config.mode, config.model_options(), gen);
  load_into(*model, checkpoint, path, config.mode);
  if (config_out) *config_out = config;
  return model;
}

DatasetSplits load_data(const std::string& dir) {
  spdlog::info("loading data from {}", dir);
  return load_mnist_dir(dir);
}

}  // namespace minidl::cli
