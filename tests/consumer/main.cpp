// A user's program against the installed package: one training step must lower the loss.
#include <cstdio>

#include "minidl/core.h"

int main() {
  using namespace minidl;
  Generator gen(1);
  const Tensor x = Tensor::uniform({8, 3}, -1, 1, gen), y = Tensor::uniform({8, 1}, -1, 1, gen);
  Tensor w = Tensor::zeros({3, 1}).set_requires_grad();

  const float before = mean(square(matmul(x, w) - y)).item();
  mean(square(matmul(x, w) - y)).backward();                      // forward + backward
  for (int64_t i = 0; i < w.numel(); ++i) w.data()[i] -= 0.5f * w.grad().data()[i];  // SGD step
  const float after = mean(square(matmul(x, w) - y)).item();

  std::printf("loss %.6f -> %.6f\n", before, after);
  return after < before ? 0 : 1;
}
