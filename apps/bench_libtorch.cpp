// Side program for `minidl bench` (built only when Debian's libtorch-dev is installed): a model description,
// read with minidl's own parser, built with the PyTorch C++ API — each bn as its normalisation kind's torch form
// says (minidl/normalization.h), "n/a" when torch has none — and configured as Keras (BatchNorm momentum
// 1 − Keras's, epsilon 1e-3; Adam epsilon 1e-7), trained on batches gathered from a uint8 set and scaled as
// minidl's loader does. Images are NCHW here, libtorch's native layout.
// Usage: minidl_bench_libtorch DESCRIPTION NORM BATCH THREADS STEPS HEIGHT WIDTH CLASSES  → prints steps per second.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "minidl/models.h"
#include "minidl/normalization.h"

namespace {
// The document's Example 3 as a torch module: batch statistics over every axis but the channels.
struct ManualNorm : torch::nn::Module {
  explicit ManualNorm(int64_t c) {
    gamma = register_parameter("gamma", torch::ones({c}));
    beta = register_parameter("beta", torch::zeros({c}));
  }
  torch::Tensor forward(torch::Tensor x) {
    const std::vector<int64_t> axes = x.dim() == 2 ? std::vector<int64_t>{0} : std::vector<int64_t>{0, 2, 3};
    std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
    shape[1] = x.size(1);
    const auto mean = x.mean(axes, true), variance = (x - mean.detach()).square().mean(axes, true);
    const auto inv = torch::rsqrt(variance + 1e-3) * gamma.view(shape);
    return x * inv + (beta.view(shape) - mean * inv);
  }
  torch::Tensor gamma, beta;
};

// "3" or "3x5" → {3, 5}.
std::array<int64_t, 2> pair_of(const std::string& text) {
  const size_t x = text.find('x');
  return x == std::string::npos ? std::array<int64_t, 2>{std::stoll(text), std::stoll(text)}
                                : std::array<int64_t, 2>{std::stoll(text.substr(0, x)), std::stoll(text.substr(x + 1))};
}

std::string option(const minidl::LayerSpec& spec, const std::string& key, const std::string& fallback) {
  for (const auto& [k, v] : spec.options)
    if (k == key) return v;
  return fallback;
}

// Keras's LayerNormalization over the channels of every position: on NCHW, torch's LayerNorm over a moved axis.
struct ChannelLayerNorm : torch::nn::Module {
  explicit ChannelLayerNorm(int64_t c) : norm(register_module("norm", torch::nn::LayerNorm(
                                                                         torch::nn::LayerNormOptions({c}).eps(1e-3)))) {}
  torch::Tensor forward(torch::Tensor x) {
    return x.dim() == 2 ? norm->forward(x) : norm->forward(x.permute({0, 2, 3, 1})).permute({0, 3, 1, 2});
  }
  torch::nn::LayerNorm norm;
};

// No torch counterpart for a layer of the model: the bench prints n/a rather than time something else.
struct NoCounterpart : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A normalisation layer in torch from its form ("batch_norm:0.01", "layer_norm", "group_norm:32", "moments",
// "identity"; normalization.h), on `shape` ([C] or [C, H, W]).
void push_norm(torch::nn::Sequential& net, const std::string& form, const std::vector<int64_t>& shape) {
  const size_t colon = form.find(':');
  const std::string kind = form.substr(0, colon), value = colon == std::string::npos ? "" : form.substr(colon + 1);
  const int64_t c = shape[0];
  if (kind == "identity") return;
  if (kind == "moments") return void(net->push_back(ManualNorm(c)));
  if (kind == "layer_norm") return void(net->push_back(ChannelLayerNorm(c)));
  if (kind == "group_norm")
    return void(net->push_back(torch::nn::GroupNorm(torch::nn::GroupNormOptions(std::stoll(value), c).eps(1e-3))));
  if (kind == "batch_norm") {
    const double momentum = std::stod(value);
    if (shape.size() == 1) return void(net->push_back(torch::nn::BatchNorm1d(torch::nn::BatchNorm1dOptions(c).eps(1e-3).momentum(momentum))));
    return void(net->push_back(torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(c).eps(1e-3).momentum(momentum))));
  }
  throw NoCounterpart(form.empty() ? "no torch counterpart" : "unknown torch form '" + form + "'");
}

// A residual block: body(x) + shortcut(x), the shortcut empty for the identity (minidl/residual.h).
struct ResidualBlock : torch::nn::Module {
  ResidualBlock() : body(register_module("body", torch::nn::Sequential())), shortcut(register_module("shortcut", torch::nn::Sequential())) {}
  torch::Tensor forward(torch::Tensor x) { return body->forward(x) + (shortcut->size() == 0 ? x : shortcut->forward(x)); }
  torch::nn::Sequential body, shortcut;
};

// One bn of the description as the norm kind's torch form says, on `shape`.
void push_bn(torch::nn::Sequential& net, const minidl::LayerSpec& spec, const minidl::ModelConfig& config,
             minidl::Generator& gen, const std::vector<int64_t>& shape) {
  const minidl::NormKind& kind = minidl::norm_kind(config.norm);
  if (!kind.torch) throw NoCounterpart("--norm " + kind.name);
  const minidl::Shape sample = shape.size() == 1 ? minidl::Shape{shape[0]} : minidl::Shape{shape[1], shape[2], shape[0]};
  const minidl::LayerArgs args(spec, sample, config, gen);
  push_norm(net, kind.torch(minidl::NormArgs{args, shape[0], config.epsilon}), shape);
}

// Builds `layers` into `net`, each bn as the norm kind's torch form says, residual blocks as minidl builds them
// (models.cpp: a projection — 1x1 convolution with the block's stride, or dense — then the block's first bn, when
// the shape changes); `shape` is one sample's shape, [C, H, W] or [F], updated as it goes.
void build(torch::nn::Sequential& net, const std::vector<minidl::LayerSpec>& layers, const minidl::ModelConfig& config,
           minidl::Generator& gen, std::vector<int64_t>& shape) {
  for (const minidl::LayerSpec& spec : layers) {
    const std::string& k = spec.kind;
    if (k == "residual") {
      const auto block = std::make_shared<ResidualBlock>();
      const std::vector<int64_t> in = shape;
      build(block->body, spec.layers, config, gen, shape);
      if (shape != in) {
        const auto norm = std::find_if(spec.layers.begin(), spec.layers.end(), [](const auto& l) { return l.kind == "bn"; });
        const bool normalised = norm != spec.layers.end() && config.norm != "none";
        if (in.size() == 3 && shape.size() == 3) {
          const int64_t stride = (in[1] + shape[1] - 1) / shape[1];
          block->shortcut->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in[0], shape[0], 1).stride(stride).bias(!normalised)));
        } else if (in.size() == 1 && shape.size() == 1) {
          block->shortcut->push_back(torch::nn::Linear(in[0], shape[0]));
        } else {
          throw NoCounterpart("a block from " + std::to_string(in.size()) + " to " + std::to_string(shape.size()) + " axes");
        }
        if (normalised) push_bn(block->shortcut, *norm, config, gen, shape);
      }
      net->push_back(block);
    } else if (k == "dense") {
      int64_t in = 1;
      for (int64_t d : shape) in *= d;
      const int64_t units = std::stoll(spec.values[0]);
      net->push_back(torch::nn::Linear(in, units));
      shape = {units};
    } else if (k == "relu") {
      net->push_back(torch::nn::ReLU());
    } else if (k == "dropout") {
      net->push_back(torch::nn::Dropout(std::stod(spec.values[0])));
    } else if (k == "softmax") {
      // the loss applies log_softmax to the logits, as Keras's fit does for a softmax output
    } else if (k == "bn") {
      push_bn(net, spec, config, gen, shape);
    } else if (k == "layernorm") {
      push_norm(net, "layer_norm", shape);
    } else if (k == "groupnorm") {
      push_norm(net, "group_norm:" + (spec.values.empty() ? std::string("32") : spec.values[0]), shape);
    } else if (k == "conv") {
      const size_t x = spec.values[0].find('x');
      const int64_t filters = std::stoll(spec.values[0].substr(0, x));
      const auto kernel = pair_of(spec.values[0].substr(x + 1)), strides = pair_of(option(spec, "strides", "1"));
      const bool same = option(spec, "padding", "valid") == "same";
      // "same" with a stride of 2 on an even size: Keras pads 0 before and 1 after, torch 1 on each side — the
      // same output size and cost, the windows one pixel apart.
      const std::array<int64_t, 2> pad = {same ? kernel[0] / 2 : 0, same ? kernel[1] / 2 : 0};
      net->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(shape[0], filters, {kernel[0], kernel[1]})
                                           .stride({strides[0], strides[1]}).padding({pad[0], pad[1]})
                                           .bias(option(spec, "bias", "1") == "1")));
      shape = {filters, (shape[1] + 2 * pad[0] - kernel[0]) / strides[0] + 1, (shape[2] + 2 * pad[1] - kernel[1]) / strides[1] + 1};
    } else if (k == "maxpool" || k == "avgpool") {
      const auto pool = pair_of(spec.values[0]), strides = pair_of(option(spec, "strides", spec.values[0]));
      if (k == "maxpool") net->push_back(torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions({pool[0], pool[1]}).stride({strides[0], strides[1]})));
      else net->push_back(torch::nn::AvgPool2d(torch::nn::AvgPool2dOptions({pool[0], pool[1]}).stride({strides[0], strides[1]})));
      shape = {shape[0], (shape[1] - pool[0]) / strides[0] + 1, (shape[2] - pool[1]) / strides[1] + 1};
    } else if (k == "gap") {
      net->push_back(torch::nn::AdaptiveAvgPool2d(torch::nn::AdaptiveAvgPool2dOptions(1)));
      net->push_back(torch::nn::Flatten());
      shape = {shape[0]};
    } else if (k == "flatten") {
      net->push_back(torch::nn::Flatten());
      int64_t n = 1;
      for (int64_t d : shape) n *= d;
      shape = {n};
    } else {
      throw NoCounterpart("layer kind '" + k + "'");
    }
  }
}

void build(torch::nn::Sequential& net, const std::string& description, const std::string& norm, std::vector<int64_t> shape) {
  minidl::ModelConfig config;
  config.description = description;
  config.norm = minidl::norm_kind(norm).name;
  minidl::Generator gen(1);
  build(net, minidl::parse_model_description(description), config, gen, shape);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 9) {
    std::fprintf(stderr, "usage: %s DESCRIPTION NORM BATCH THREADS STEPS HEIGHT WIDTH CLASSES\n", argv[0]);
    return 2;
  }
  const std::string description = argv[1], norm = argv[2];
  const int64_t batch = std::stoll(argv[3]), steps = std::stoll(argv[5]), height = std::stoll(argv[6]),
                width = std::stoll(argv[7]), classes = std::stoll(argv[8]);
  torch::set_num_threads(std::stoi(argv[4]));
  torch::manual_seed(1);
  const bool images = minidl::parse_model_description(description).front().kind != "dense";
  torch::nn::Sequential net;
  try {
    build(net, description, norm, images ? std::vector<int64_t>{1, height, width} : std::vector<int64_t>{height * width});
  } catch (const NoCounterpart&) {
    std::printf("n/a\n");  // minidl bench's libtorch column: nothing to compare with
    return 0;
  }
  constexpr int64_t kSamples = 60000;
  const torch::Tensor data = torch::randint(0, 256, {kSamples, height * width}, torch::kUInt8);
  const torch::Tensor labels = torch::randint(0, classes, {kSamples}, torch::kLong);
  torch::optim::Adam adam(net->parameters(), torch::optim::AdamOptions(1e-3).eps(1e-7));
  int64_t cursor = 0;
  torch::Tensor order = torch::randperm(kSamples, torch::kLong);
  const auto step = [&] {
    if (cursor + batch > kSamples) cursor = 0, order = torch::randperm(kSamples, torch::kLong);
    const auto index = order.slice(0, cursor, cursor + batch);
    cursor += batch;
    auto x = data.index_select(0, index).to(torch::kFloat).div_(255.0);
    if (images) x = x.view({batch, 1, height, width});
    const auto loss = torch::nll_loss(torch::log_softmax(net->forward(x), 1), labels.index_select(0, index));
    adam.zero_grad();
    loss.backward();
    adam.step();
  };
  for (int i = 0; i < 20; ++i) step();
  std::vector<double> rates;
  for (int repeat = 0; repeat < 5; ++repeat) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < steps; ++i) step();
    rates.push_back(static_cast<double>(steps) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(rates.begin(), rates.end());
  std::printf("%.3f\n", rates[rates.size() / 2]);
}
