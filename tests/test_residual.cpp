// Tests of residual blocks: the Residual module against its composed form, gradcheck through a projection
// shortcut, Keras's flat layer names (conv2d_5, add_1) for built and hand-built models alike, and the grammar's
// residual(...) and N*... forms with their errors.
#include <filesystem>

#include "helpers.h"
#include "minidl/nn.h"
#include "minidl/checkpoint.h"
#include "minidl/statistics.h"

using namespace minidl;
using minidl::test::require_grad_ok;

namespace {
// A stem, an identity block and a projection block (stride 2, 8 → 16 filters), as a ResNet stage boundary.
constexpr const char* kSmallResNet =
    "conv:8x3:padding=same,bn,relu,"
    "residual(conv:8x3:padding=same,bn,relu,conv:8x3:padding=same,bn),relu,"
    "residual(conv:16x3:strides=2:padding=same,bn,relu,conv:16x3:padding=same,bn),relu,gap,dense:10,softmax";

std::shared_ptr<Sequential> built(const std::string& description, const std::string& norm = "running",
                                  Shape input = {8, 8, 3}) {
  ModelConfig c;
  c.description = description;
  c.norm = norm;
  c.input_shape = input;
  c.classes = 0;
  return build_model(c);
}

std::vector<std::string> names_of(const NamedTensors& tensors) {
  std::vector<std::string> names;
  for (const auto& [name, t] : tensors) names.push_back(name);
  return names;
}
}  // namespace

TEST_CASE("Residual computes body(x) + x, and body(x) + shortcut(x), as the layers composed by hand", "[residual]") {
  Generator gen(3);
  auto dense = std::make_shared<Dense>(5, 5, Activation::none, gen);
  auto relu = std::make_shared<ReLU>();
  Residual identity({dense, relu});
  const Tensor x = Tensor::uniform({4, 5}, -1.0f, 1.0f);
  const Tensor expected = relu->forward(dense->forward(x)) + x;
  CHECK(identity.forward(x).to_vector() == expected.to_vector());

  auto wide = std::make_shared<Dense>(5, 7, Activation::none, gen);
  auto projection = std::make_shared<Dense>(5, 7, Activation::none, gen);
  Residual projected({wide}, {projection});
  CHECK(projected.forward(x).to_vector() == (wide->forward(x) + projection->forward(x)).to_vector());
  CHECK(projected.output_shape({4, 5}) == Shape{4, 7});

  Residual mismatched({std::make_shared<Dense>(5, 7, Activation::none, gen)});
  CHECK_THROWS_WITH(mismatched.output_shape({4, 5}),
                    Catch::Contains("its layers give [4,7] but its identity shortcut passes the input, [4,5]"));
  CHECK_THROWS_WITH(Residual({}), Catch::Contains("needs at least one layer"));
}

TEST_CASE("gradcheck passes through a residual block with a projection shortcut", "[residual][gradcheck]") {
  Generator gen(5);
  auto conv = std::make_shared<Conv2D>(2, 3, std::array<int64_t, 2>{3, 3}, Conv2DOptions{{2, 2}, Padding::same, false}, gen);
  auto bn = std::make_shared<BatchNormalization>(3);
  auto projection = std::make_shared<Conv2D>(2, 3, std::array<int64_t, 2>{1, 1}, Conv2DOptions{{2, 2}, Padding::valid, false}, gen);
  auto shortcut_bn = std::make_shared<BatchNormalization>(3);
  Residual block({conv, bn, std::make_shared<ReLU>()}, {projection, shortcut_bn});
  block.train();
  Tensor x = Tensor::uniform({3, 5, 5, 2}, -1.0f, 1.0f);
  x.set_requires_grad(true);
  Tensor kernel = conv->named_parameters()[0].second, projection_kernel = projection->named_parameters()[0].second;
  // The step of the normalisation tests: batch statistics make the float32 objective noisy at 1e-2.
  require_grad_ok([&](const std::vector<Tensor>&) { return block.forward(x); }, {x, kernel, projection_kernel},
                  {.eps = 5e-2});
}

TEST_CASE("a built ResNet names every layer as Keras's functional model: conv2d_5, batch_normalization_5, add_1", "[residual]") {
  const auto model = built(kSmallResNet);
  const std::vector<std::string> names = names_of(model->named_parameters());
  const std::vector<std::string> expected = {
      "conv2d/kernel", "conv2d/bias", "batch_normalization/gamma", "batch_normalization/beta",
      "conv2d_1/kernel", "conv2d_1/bias", "batch_normalization_1/gamma", "batch_normalization_1/beta",
      "conv2d_2/kernel", "conv2d_2/bias", "batch_normalization_2/gamma", "batch_normalization_2/beta",
      "conv2d_3/kernel", "conv2d_3/bias", "batch_normalization_3/gamma", "batch_normalization_3/beta",
      "conv2d_4/kernel", "conv2d_4/bias", "batch_normalization_4/gamma", "batch_normalization_4/beta",
      // The projection: a 1x1 convolution without bias (its normalisation follows), then that normalisation.
      "conv2d_5/kernel", "batch_normalization_5/gamma", "batch_normalization_5/beta", "dense/kernel", "dense/bias"};
  CHECK(names == expected);
  const auto& blocks = model->children();
  CHECK(blocks[3]->name() == "add");
  CHECK(blocks[5]->name() == "add_1");
  CHECK(blocks[4]->name() == "re_lu_2");
  CHECK(model->named_parameters()[20].second.shape() == Shape{1, 1, 8, 16});
  CHECK(model->output_shape({2, 8, 8, 3}) == Shape{2, 10});
  const auto& block = dynamic_cast<const Residual&>(*blocks[5]);
  CHECK(block.body().size() == 5);
  CHECK(block.shortcut().size() == 2);
  CHECK(dynamic_cast<const Residual&>(*blocks[3]).shortcut().empty());
  // Without normalisation the projection keeps its bias, and nothing normalises.
  const std::vector<std::string> plain = names_of(built(kSmallResNet, "none")->named_parameters());
  CHECK(std::count(plain.begin(), plain.end(), "conv2d_5/bias") == 1);
  CHECK(std::none_of(plain.begin(), plain.end(), [](const std::string& n) { return n.find("normalization") != std::string::npos; }));
}

TEST_CASE("a hand-built residual model gets the built one's names, so its state loads into it", "[residual]") {
  Generator gen(1);
  auto model = std::make_shared<Sequential>();
  model->set_input_shape({6});
  model->add(std::make_shared<Dense>(6, 4, Activation::none, gen));
  auto inner = std::make_shared<Residual>(std::vector<std::shared_ptr<Module>>{
      std::make_shared<Dense>(4, 4, Activation::none, gen), std::make_shared<ReLU>()});
  model->add(std::make_shared<Residual>(
      std::vector<std::shared_ptr<Module>>{inner, std::make_shared<Dense>(4, 3, Activation::none, gen)},
      std::vector<std::shared_ptr<Module>>{std::make_shared<Dense>(4, 3, Activation::none, gen)}));
  const auto description = built("dense:4,residual(residual(dense:4,relu),dense:3)", "running", {6});
  CHECK(names_of(model->state()) == names_of(description->state()));
  CHECK(names_of(model->state()) ==
        std::vector<std::string>{"dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias", "dense_2/kernel",
                                 "dense_2/bias", "dense_3/kernel", "dense_3/bias"});
  CHECK(model->children()[1]->name() == "add_1");  // the inner block closes first: add
  CHECK(inner->name() == "add");
  std::map<std::string, Tensor> state;
  for (const auto& [name, t] : model->state()) state[name] = t;
  description->load_state(state);
  const Tensor x = Tensor::uniform({3, 6}, -1.0f, 1.0f);
  CHECK(description->forward(x).to_vector() == model->forward(x).to_vector());
}

TEST_CASE("the grammar: residual(LAYERS), N*LAYER and their errors", "[residual][models]") {
  CHECK(canonical_description("2 * residual( dense:4 , relu ),3*relu") ==
        "residual(dense:4,relu),residual(dense:4,relu),relu,relu,relu");
  CHECK(canonical_description("residual(residual(dense:4),dense:4)") == "residual(residual(dense:4),dense:4)");
  CHECK(canonical_description("dense:4,2*(residual(dense:4),relu),(gelu)") ==
        "dense:4,residual(dense:4),relu,residual(dense:4),relu,gelu");
  const std::vector<LayerSpec> layers = parse_model_description("dense:4,2*residual(dense:4,relu)");
  REQUIRE(layers.size() == 3);
  CHECK(layers[1].kind == "residual");
  CHECK(layers[1].layers.size() == 2);
  CHECK(layers[2].layers[0].kind == "dense");
  const auto refused = [](const std::string& description, const std::string& words) {
    INFO(description);
    CHECK_THROWS_WITH(parse_model_description(description), Catch::Contains(words));
  };
  refused("residual(dense:4", "'(' without its ')'");
  refused("dense:4)", "')' without its '('");
  refused("residual", "residual takes its layers in parentheses");
  refused("residual()", "residual() needs its layers");
  refused("block(dense:4)", "parentheses hold a block's layers, residual(LAYERS), or a group to repeat");
  refused("2*()", "() needs its layers");
  refused("10000*(10000*relu)", "expands to more than 100000 layers");
  refused("0*dense:4", "N a whole number in [1, 10000], got '0*'");
  refused("x*dense:4", "got 'x*'");
  refused("3*", "nothing to repeat after '*'");
  refused("10000*residual(10000*relu)", "expands to more than 100000 layers");
  refused("residual(dens:4)", "unknown layer kind 'dens'");
  std::string deep = "relu";
  for (int i = 0; i < 40; ++i) deep = "residual(" + deep + ")";
  refused(deep, "blocks and groups nest at most 32 deep");
  // Building: a shortcut projects images to images or vectors to vectors, never across.
  CHECK_THROWS_WITH(built("residual(conv:4x3,flatten)"), Catch::Contains("flatten or pool outside the block"));
  CHECK_THROWS_WITH(built("residual(bn)", "none", {6}), Catch::Contains("the block has no layer left"));
}

TEST_CASE("summary lists each block, its layers indented and its shortcut", "[residual]") {
  const std::string s = built(kSmallResNet)->summary();
  INFO(s);
  CHECK_THAT(s, Catch::Contains(" add (Residual)"));
  CHECK_THAT(s, Catch::Contains("   conv2d_1 (Conv2D)"));
  CHECK_THAT(s, Catch::Contains("  + identity shortcut"));
  CHECK_THAT(s, Catch::Contains("   + conv2d_5 (Conv2D)"));
  CHECK_THAT(s, Catch::Contains("(None, 4, 4, 16)"));
  // The document's model: 2·(784·64 + 64·10) forward; a step adds both gradients of the second product and the
  // weight gradient of the first (the data needs none): 2·2·784·64 + 3·2·64·10.
  ModelConfig c;
  CHECK_THAT(build_model(c)->summary(), Catch::Contains("FLOPs per sample: 101,632 forward, 204,544 a training step"));
}

TEST_CASE("PreciseBN re-estimates every BatchNormalization, in blocks and shortcuts too, layer by layer", "[residual]") {
  const DatasetSplits data = make_synthetic(120, 40, 8);
  ModelConfig c;
  c.description = "conv:4x3:padding=same,bn,relu,residual(conv:8x3:strides=2:padding=same,bn,relu),gap,dense:10,softmax";
  const auto model = build_model(c);
  const Recalibration r = recalibrate_batch_norm(*model, data.train, 0, 1, 50);
  CHECK(r.layers == 3);  // the stem's, the block's and the projection's
  const std::vector<LayerStatistics> population = population_statistics(*model, data.train, 0, 50);
  REQUIRE(population.size() == 3);
  CHECK(population[1].layer == "batch_normalization_1");
  CHECK(population[2].layer == "batch_normalization_2");
  const StatisticsGap gap = moving_statistics_gap(*model, population);
  CHECK(gap.mean < 1e-6);
  CHECK(gap.variance < 1e-6);
  CHECK(has_moving_statistics(*model));
}

TEST_CASE("a hand-built ResNet that declares its description is saved and reloaded by file alone", "[residual]") {
  test::TempDir dir;
  Generator gen(4);
  const auto conv = [&](int64_t in, int64_t filters, int64_t stride) {
    return std::make_shared<Conv2D>(in, filters, std::array<int64_t, 2>{3, 3}, Conv2DOptions{{stride, stride}, Padding::same}, gen);
  };
  // The stem, a projection block, pooling and the head: a Dense with a softmax activation, or a Dense and a
  // Softmax layer (what the grammar's dense:10,softmax builds).
  const auto hand_built = [&](bool softmax_layer) {
    auto model = std::make_shared<Sequential>();
    model->set_input_shape({28, 28, 1});
    model->add(conv(1, 4, 1));
    model->add(std::make_shared<BatchNormalization>(4));
    model->add(std::make_shared<ReLU>());
    model->add(std::make_shared<Residual>(
        std::vector<std::shared_ptr<Module>>{conv(4, 8, 2), std::make_shared<BatchNormalization>(8)},
        std::vector<std::shared_ptr<Module>>{
            std::make_shared<Conv2D>(4, 8, std::array<int64_t, 2>{1, 1}, Conv2DOptions{{2, 2}, Padding::valid, false}, gen),
            std::make_shared<BatchNormalization>(8)}));
    model->add(std::make_shared<GlobalAveragePooling2D>());
    model->add(std::make_shared<Dense>(8, 10, softmax_layer ? Activation::none : Activation::softmax, gen));
    if (softmax_layer) model->add(std::make_shared<Softmax>());
    return model;
  };
  auto model = hand_built(false);
  ModelConfig c;
  c.description = "conv:4x3:padding=same,bn,relu,residual(conv:8x3:strides=2:padding=same,bn),gap,dense:10";
  CHECK_THROWS_WITH(save_model(dir.file("wrong"), *model, c), Catch::Contains("the configuration does not build"));
  // The grammar's softmax is a layer of its own, where this model has a Dense with a softmax activation.
  c.description = "conv:4x3:padding=same,bn,relu,residual(conv:8x3:strides=2:padding=same,bn),gap,dense:10,softmax";
  CHECK_THROWS_WITH(save_model(dir.file("wrong"), *model, c),
                    Catch::Contains("does not describe the model: at layer 11 the model has no more layers and the "
                                    "description builds softmax (Softmax)"));
  CHECK_FALSE(std::filesystem::exists(dir.file("wrong")));
  model = hand_built(true);
  save_model(dir.file("resnet"), *model, c);
  const LoadedModel loaded = load_model(dir.file("resnet"));
  model->eval();
  loaded.model->eval();
  const Tensor x = Tensor::uniform({2, 28, 28, 1}, 0.0f, 1.0f);
  CHECK(loaded.model->forward(x).to_vector() == model->forward(x).to_vector());
}

TEST_CASE("docs/models.md's ResNet-20 builds as documented: 274,442 parameters, 62.0 MFLOP a sample", "[residual][models]") {
  const std::string doc = test::read_bytes(std::string(MINIDL_SOURCE_DIR) + "/docs/models.md");
  const size_t begin = doc.find("    conv:16x3:padding=same,bn,relu,\n", doc.find("### ResNet-20"));
  REQUIRE(begin != std::string::npos);
  const size_t end = doc.find("gap,dense:10,softmax", begin);
  REQUIRE(end != std::string::npos);
  std::string description;
  for (const char c : doc.substr(begin, end + std::string("gap,dense:10,softmax").size() - begin))
    if (c != ' ' && c != '\n') description += c;
  ModelConfig c;
  c.description = description;
  const auto model = build_model(c);
  int convolutions = 0;
  for_each_module<Conv2D>(*model, [&](Conv2D&) { ++convolutions; });
  CHECK(convolutions == 21);  // 19 and the two projections
  const std::string s = model->summary();
  CHECK_THAT(s, Catch::Contains("Total params: 274,442") && Catch::Contains("Trainable params: 272,874"));
  CHECK_THAT(s, Catch::Contains("FLOPs per sample: 62,043,904 forward, 185,905,920 a training step"));
  CHECK(model->output_shape({2, 28, 28, 1}) == Shape{2, 10});
}
