// The document's Example 3: tf.nn.moments over the batch axis, then tf.nn.batch_normalization with learned beta
// and gamma, differentiated by autodiff. There are no moving statistics: evaluation normalises each evaluated
// batch with its own statistics, so the evaluation batch size matters (--eval-batch-size).
#include "example_common.h"
#include "minidl/nn.h"
#include "minidl/train.h"

using namespace minidl;

// class Model(tf.keras.Model) with dense1, beta, gamma, dense2.
class ManualModel : public Module {
 public:
  ManualModel(int64_t features, int64_t classes, Generator& gen) {
    dense_ = register_module(std::make_shared<Dense>(features, 64, Activation::relu, gen));
    gamma_ = register_parameter("gamma", Tensor::ones({64}));
    beta_ = register_parameter("beta", Tensor::zeros({64}));
    dense_1_ = register_module(std::make_shared<Dense>(64, classes, Activation::softmax, gen));
  }
  std::string type_name() const override { return "Model"; }

  Tensor forward(const Tensor& x) override {
    Tensor h = dense_->forward(x);
    const auto [mean, variance] = moments(h, {0});                         // tf.nn.moments(x, axes=[0])
    h = batch_normalization(h, mean, variance, beta_, gamma_, 1e-3f);      // tf.nn.batch_normalization(...)
    return dense_1_->forward(h);
  }

 private:
  std::shared_ptr<Dense> dense_, dense_1_;
  Tensor gamma_, beta_;
};

int main(int argc, char** argv) {
  return examples::run([&] {
    const auto args = examples::parse_args(argc, argv, "example_manual_moments",
                                           "Example 3: moments + batch_normalization with learned beta and gamma", true);
    const DatasetSplits data = load_mnist_dir(args.data_dir);
    Generator gen(args.seed);
    ManualModel model(data.train.features(), data.train.num_classes, gen);
    Adam optimizer(model.parameters());
    std::printf("evaluation batch size %lld (each evaluated batch is normalised with its own statistics)\n",
                static_cast<long long>(args.eval_batch_size));

    // The standard step (forward, categorical cross-entropy, gradient, Adam) over the custom model's batches.
    DataLoader loader(data.train, {.batch_size = 32, .seed = args.seed}, /*one_hot=*/true);
    Trainer trainer(model, optimizer, loader,
                    {.epochs = args.epochs, .validation = &data.test, .validation_batch_size = args.eval_batch_size});
    trainer.add_callback(examples::epoch_printer());
    trainer.fit();
    std::printf("test_accuracy %.4f\n", evaluate(model, data.test, args.eval_batch_size).accuracy);
  });
}
