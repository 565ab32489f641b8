// The document's Example 2: BatchNormalization(momentum=0.0) in a custom training loop. Momentum 0 does not
// switch the moving statistics off: after training they hold the LAST batch's statistics, and inference uses them.
#include <chrono>

#include "example_common.h"
#include "minidl/nn.h"
#include "minidl/train.h"

using namespace minidl;

int main(int argc, char** argv) {
  return examples::run([&] {
    const auto args = examples::parse_args(argc, argv, "example_batchwise",
                                           "Example 2: BatchNormalization(momentum=0) in a custom training loop", false);
    const DatasetSplits data = load_mnist_dir(args.data_dir);
    Generator gen(args.seed);

    Sequential model;
    model.add(std::make_shared<Dense>(784, 64, Activation::relu, gen));
    model.add(std::make_shared<BatchNormalization>(64, BatchNormalizationOptions{.momentum = 0.0f}));
    model.add(std::make_shared<Dense>(64, 10, Activation::softmax, gen));
    Adam optimizer(model.parameters());

    DataLoader loader(data.train, {.batch_size = 32, .seed = args.seed}, /*one_hot=*/true);
    Batch batch;
    for (int epoch = 1; epoch <= args.epochs; ++epoch) {
      const auto start = std::chrono::steady_clock::now();
      double loss_sum = 0;
      int64_t correct = 0;
      loader.start_epoch();
      while (loader.next(batch)) {
        // train_step(x, y): with tf.GradientTape() as tape: ...; optimizer.apply_gradients(...)
        model.train();
        const Tensor predictions = model(batch.x);
        const Tensor loss = categorical_crossentropy(batch.one_hot, predictions);
        optimizer.zero_grad();
        loss.backward();
        optimizer.step();
        loss_sum += loss.item() * batch.x.size(0);
        correct += count_correct(batch.labels, predictions);
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double n = static_cast<double>(data.train.size());
      examples::print_epoch(epoch, args.epochs, loss_sum / n, correct / n, evaluate(model, data.test).accuracy, seconds);
    }
    std::printf("test_accuracy %.4f\n", evaluate(model, data.test).accuracy);
  });
}
