// A zero-install demo: a two-layer MLP, written with core ops only, learns synthetic 4-class blobs.
#include <cstdio>
#include <vector>

#include "minidl/core.h"

using namespace minidl;

int main() {
  constexpr int64_t kSamples = 512, kFeatures = 16, kHidden = 32, kClasses = 4;
  Generator gen(42);
  // Each class is a Gaussian blob around its own random centre.
  const Tensor centres = Tensor::normal({kClasses, kFeatures}, 0.0f, 1.0f, gen);
  Tensor x = Tensor::empty({kSamples, kFeatures});
  std::vector<int32_t> labels(kSamples);
  for (int64_t i = 0; i < kSamples; ++i) {
    labels[i] = static_cast<int32_t>(gen.below(kClasses));
    for (int64_t j = 0; j < kFeatures; ++j) x.at({i, j}) = centres.at({labels[i], j}) + gen.normal(0.0f, 0.7f);
  }

  Tensor w1 = Tensor::uniform({kFeatures, kHidden}, -0.3f, 0.3f, gen).set_requires_grad();
  Tensor b1 = Tensor::zeros({kHidden}).set_requires_grad();
  Tensor w2 = Tensor::uniform({kHidden, kClasses}, -0.3f, 0.3f, gen).set_requires_grad();
  Tensor b2 = Tensor::zeros({kClasses}).set_requires_grad();
  for (int step = 0; step <= 200; ++step) {
    const Tensor logits = matmul(relu(matmul(x, w1) + b1), w2) + b2;
    const Tensor loss = -mean(gather(log_softmax(logits), labels));
    loss.backward();
    const NoGradGuard no_grad;
    for (Tensor* p : {&w1, &b1, &w2, &b2}) {
      for (int64_t i = 0; i < p->numel(); ++i) p->data()[i] -= 0.5f * p->grad().data()[i];
      p->zero_grad();
    }
    if (step % 50 == 0) {
      int64_t correct = 0;
      for (int64_t i = 0; i < kSamples; ++i) {
        int32_t best = 0;
        for (int32_t c = 1; c < kClasses; ++c)
          if (logits.at({i, c}) > logits.at({i, best})) best = c;
        correct += best == labels[i];
      }
      std::printf("step %3d  loss %.4f  accuracy %.3f\n", step, loss.item(), double(correct) / kSamples);
    }
  }
}
