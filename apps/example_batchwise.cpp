// The document's Example 2: BatchNormalization(momentum=0.0) with a custom training step. Momentum 0 does not
// switch the moving statistics off: after training they hold the LAST batch's statistics, and inference uses them.
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
    model.add(std::make_shared<Dense>(data.train.features(), 64, Activation::relu, gen));
    model.add(std::make_shared<BatchNormalization>(64, BatchNormalizationOptions{.momentum = 0.0f}));
    model.add(std::make_shared<Dense>(64, data.train.num_classes, Activation::softmax, gen));
    Adam optimizer(model.parameters());

    // def train_step(x, y): with tf.GradientTape() as tape: predictions = model(x, training=True);
    //                        loss = loss_fn(y, predictions)
    // The Trainer takes the gradient and applies it (tape.gradient, optimizer.apply_gradients), for every batch.
    const auto train_step = [](Module& m, const Batch& batch) -> ForwardResult {
      const Tensor predictions = m(batch.x);
      return {categorical_crossentropy(batch.one_hot, predictions), predictions};
    };
    DataLoader loader(data.train, {.batch_size = 32, .seed = args.seed}, /*one_hot=*/true);
    Trainer trainer(model, optimizer, loader, {.epochs = args.epochs, .validation = &data.test, .forward = train_step});
    trainer.add_callback(examples::epoch_printer());
    trainer.fit();
    std::printf("test_accuracy %.4f\n", evaluate(model, data.test).accuracy);
  });
}
