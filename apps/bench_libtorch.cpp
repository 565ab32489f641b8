// Side program for `minidl bench` (built only when Debian's libtorch-dev is installed): the document's model
// and training step with the PyTorch C++ API, configured as Keras (BatchNorm momentum 1 − 0.99, epsilon 1e-3;
// Adam epsilon 1e-7), batches gathered from a uint8 set and scaled as minidl's loader does.
// Usage: minidl_bench_libtorch MODE BATCH HIDDEN THREADS STEPS   → prints steps per second.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace {
struct Model : torch::nn::Module {
  Model(const std::string& mode, int64_t hidden) : mode(mode) {
    dense = register_module("dense", torch::nn::Linear(784, hidden));
    if (mode == "running" || mode == "batchwise")
      bn = register_module("bn", torch::nn::BatchNorm1d(torch::nn::BatchNorm1dOptions(hidden).eps(1e-3).momentum(
                                     mode == "running" ? 0.01 : 1.0)));
    if (mode == "manual") {
      gamma = register_parameter("gamma", torch::ones({hidden}));
      beta = register_parameter("beta", torch::zeros({hidden}));
    }
    dense_1 = register_module("dense_1", torch::nn::Linear(hidden, 10));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(dense->forward(x));
    if (bn) x = bn->forward(x);
    if (mode == "manual") {
      const auto mean = x.mean(0), variance = (x - mean.detach()).square().mean(0);
      const auto inv = torch::rsqrt(variance + 1e-3) * gamma;
      x = x * inv + (beta - mean * inv);
    }
    return dense_1->forward(x);  // logits; the loss applies log_softmax, as Keras's fit does for a softmax output
  }
  std::string mode;
  torch::nn::Linear dense{nullptr}, dense_1{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
  torch::Tensor gamma, beta;
};
}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s MODE BATCH HIDDEN THREADS STEPS\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  const int64_t batch = std::stoll(argv[2]), hidden = std::stoll(argv[3]), steps = std::stoll(argv[5]);
  torch::set_num_threads(std::stoi(argv[4]));
  torch::manual_seed(1);
  const torch::Tensor images = torch::randint(0, 256, {60000, 784}, torch::kUInt8);
  const torch::Tensor labels = torch::randint(0, 10, {60000}, torch::kLong);
  Model model(mode, hidden);
  torch::optim::Adam adam(model.parameters(), torch::optim::AdamOptions(1e-3).eps(1e-7));
  int64_t cursor = 0;
  torch::Tensor order = torch::randperm(60000, torch::kLong);
  const auto step = [&] {
    if (cursor + batch > 60000) cursor = 0, order = torch::randperm(60000, torch::kLong);
    const auto index = order.slice(0, cursor, cursor + batch);
    cursor += batch;
    const auto x = images.index_select(0, index).to(torch::kFloat).div_(255.0);
    const auto loss = torch::nll_loss(torch::log_softmax(model.forward(x), 1), labels.index_select(0, index));
    adam.zero_grad();
    loss.backward();
    adam.step();
  };
  for (int i = 0; i < 20; ++i) step();
  std::vector<double> rates;
  for (int repeat = 0; repeat < 5; ++repeat) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < steps; ++i) step();
    rates.push_back(steps / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(rates.begin(), rates.end());
  std::printf("%.3f\n", rates[rates.size() / 2]);
}
