// A user's program against the installed package: a few training steps must lower the loss.
#include <cstdio>

#include "minidl/nn.h"
#include "minidl/optim.h"

int main() {
  using namespace minidl;
  Generator gen(1);
  const Tensor x = Tensor::uniform({16, 4}, -1, 1, gen);
  const Tensor y = one_hot(std::vector<int32_t>{0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0}, 3);
  Sequential model;
  model.add(std::make_shared<Dense>(4, 8, Activation::relu, gen));
  model.add(std::make_shared<BatchNormalization>(8));
  model.add(std::make_shared<Dense>(8, 3, Activation::softmax, gen));
  Adam adam(model.parameters(), {.learning_rate = 0.05f});

  const float before = categorical_crossentropy(y, model(x)).item();
  for (int step = 0; step < 20; ++step) {
    adam.zero_grad();
    categorical_crossentropy(y, model(x)).backward();  // forward, loss, backward
    adam.step();                                       // update
  }
  const float after = categorical_crossentropy(y, model(x)).item();
  std::printf("loss %.6f -> %.6f\n", before, after);
  return after < before ? 0 : 1;
}
