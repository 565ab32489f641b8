// The document's Example 1: BatchNormalization() with moving statistics (momentum 0.99), trained with fit.
// Inference (evaluate) normalises with the moving statistics.
#include "example_common.h"
#include "minidl/nn.h"
#include "minidl/train.h"

using namespace minidl;

int main(int argc, char** argv) {
  return examples::run([&] {
    const auto args = examples::parse_args(argc, argv, "example_running_stats",
                                           "Example 1: BatchNormalization() with moving statistics, trained with fit",
                                           false);
    const DatasetSplits data = load_mnist_dir(args.data_dir);  // images scaled to [0, 1] as batches are drawn
    Generator gen(args.seed);

    // model = Sequential([Dense(64, activation='relu'), BatchNormalization(), Dense(10, activation='softmax')])
    Sequential model;
    model.set_input_shape({data.train.features()});
    model.add(std::make_shared<Dense>(data.train.features(), 64, Activation::relu, gen));
    model.add(std::make_shared<BatchNormalization>(64));
    model.add(std::make_shared<Dense>(64, data.train.num_classes, Activation::softmax, gen));
    std::printf("%s", model.summary().c_str());

    // model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy']); model.fit(...)
    Adam optimizer(model.parameters());
    fit(model, optimizer, data.train, {.epochs = args.epochs, .seed = args.seed, .on_epoch_end = [&](const EpochLogs& e) {
          const double test_accuracy = evaluate(model, data.test).accuracy;
          examples::print_epoch(e.epoch, args.epochs, e.loss, e.accuracy, test_accuracy, e.seconds);
        }});

    // model.evaluate(x_test, y_test): inference mode, moving statistics
    std::printf("test_accuracy %.4f\n", evaluate(model, data.test).accuracy);
  });
}
