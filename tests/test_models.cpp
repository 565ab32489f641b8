// Tests of model descriptions: the grammar and its errors, the registry, building models with per-model
// names and declared input shapes, the class and softmax checks, ModelConfig's metadata.
#include "helpers.h"
#include "minidl/nn.h"

using namespace minidl;

namespace {
ModelConfig config(const std::string& description, const std::string& norm = "running") {
  ModelConfig c;
  c.description = description;
  c.norm = norm;
  return c;
}

std::vector<std::string> names(const Module& m) {
  std::vector<std::string> out;
  for (const auto& [name, t] : m.state()) out.push_back(name);
  return out;
}
}  // namespace

TEST_CASE("the grammar reads kinds, values and key=value options", "[models]") {
  const auto layers = parse_model_description(" dense:256 , relu,bn:momentum=0.9:epsilon=1e-5,dropout:0.2,dense:10,softmax");
  REQUIRE(layers.size() == 6);
  CHECK(layers[0].kind == "dense");
  CHECK(layers[0].values == std::vector<std::string>{"256"});
  CHECK(layers[0].position == 1);
  CHECK(layers[2].kind == "bn");
  CHECK(layers[2].options == std::vector<std::pair<std::string, std::string>>{{"momentum", "0.9"}, {"epsilon", "1e-5"}});
  CHECK(layers[3].values == std::vector<std::string>{"0.2"});
  CHECK(canonical_description("dense:64, re_lu,batch_normalization,dense:10,softmax") == kDocumentModel);
}

TEST_CASE("a bad description names the token, its position and the valid choices", "[models]") {
  const auto error = [](const std::string& d) {
    try {
      parse_model_description(d);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error("dense:256,relu,bm,dense:10") ==
        "model description 'dense:256,relu,bm,dense:10': layer 3 'bm' (character 16): unknown layer kind 'bm': "
        "choose one of dense, relu, softmax, sigmoid, tanh, gelu, silu, leaky_relu, dropout, bn, layernorm, groupnorm, "
        "rmsnorm, normalize, conv, maxpool, avgpool, gap, flatten, or residual(LAYERS)");
  CHECK_THAT(error("dense,relu"), Catch::Contains("layer 1 'dense'") && Catch::Contains("dense takes 1 value(s), got 0 "
                                                                                        "(usage: dense:UNITS)"));
  CHECK_THAT(error("dense:8,,softmax"), Catch::Contains("layer 2") && Catch::Contains("empty layer"));
  CHECK_THAT(error("bn:momentom=0.9"), Catch::Contains("unknown option 'momentom' for bn") &&
                                           Catch::Contains("its options: momentum, epsilon"));
  CHECK_THAT(error("bn:momentum=0.9:momentum=0.8"), Catch::Contains("option 'momentum' given twice"));
  CHECK_THAT(error("bn:momentum="), Catch::Contains("needs key=value"));
  CHECK_THAT(error("  "), Catch::Contains("model description is empty"));
  CHECK_THAT(error("relu:3"), Catch::Contains("relu takes 0 value(s), got 1"));
}

TEST_CASE("the document's model from its description: Keras names, 51,146 parameters, the old initial weights",
          "[models]") {
  const auto model = build_model(config(kDocumentModel));
  CHECK(names(*model) == std::vector<std::string>{"dense/kernel", "dense/bias", "batch_normalization/gamma",
                                                  "batch_normalization/beta", "dense_1/kernel", "dense_1/bias",
                                                  "batch_normalization/moving_mean", "batch_normalization/moving_variance"});
  CHECK(model->input_shape() == Shape{784});  // a dense model takes the images flattened
  const std::string summary = model->summary();
  CHECK_THAT(summary, Catch::Contains("Total params: 51,146") && Catch::Contains("Trainable params: 51,018") &&
                          Catch::Contains("Non-trainable params: 128"));
  // The same weights as the hand-built model drawing from a generator with the same seed.
  Generator gen(1);
  Sequential by_hand;
  by_hand.add(std::make_shared<Dense>(784, 64, Activation::relu, gen));
  by_hand.add(std::make_shared<BatchNormalization>(64));
  by_hand.add(std::make_shared<Dense>(64, 10, Activation::softmax, gen));
  const NamedTensors a = model->state(), b = by_hand.state();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i].second.to_vector() == b[i].second.to_vector());
}

TEST_CASE("building the same model twice gives the same names, and one's state loads into the other", "[models]") {
  const ModelConfig c = config("dense:32,relu,bn,dense:16,relu,bn,dense:10,softmax");
  const auto first = build_model(c);
  const auto second = build_model(c);
  CHECK(names(*first) == names(*second));
  CHECK(names(*first)[8] == "dense_2/kernel");
  first->forward(Tensor::uniform({8, 784}, 0, 1));  // moves the moving statistics
  std::map<std::string, Tensor> state;
  for (const auto& [name, t] : first->state()) state[name] = t.clone();
  const LoadResult r = second->load_state(state);
  CHECK(r.complete());
  first->eval();
  second->eval();
  const Tensor x = Tensor::uniform({4, 784}, 0, 1);
  test::require_values(second->forward(x), {4, 10}, first->forward(x).to_vector(), 0.0f);
}

TEST_CASE("the norm mode decides what each bn becomes — bn options override the model's", "[models]") {
  const std::string d = "dense:8,relu,bn,dense:8,relu,bn:momentum=0.5,dense:10,softmax";
  const auto running = build_model(config(d));
  CHECK(dynamic_cast<BatchNormalization&>(*running->children()[2]).options().momentum == 0.99f);
  CHECK(dynamic_cast<BatchNormalization&>(*running->children()[5]).options().momentum == 0.5f);
  const auto batchwise = build_model(config(d, "batchwise"));
  CHECK(dynamic_cast<BatchNormalization&>(*batchwise->children()[2]).options().momentum == 0.0f);
  const auto manual = build_model(config(d, "manual"));
  CHECK(manual->children()[2]->type_name() == "MomentsNormalization");
  CHECK(manual->children()[2]->name() == "batch_normalization");
  CHECK(manual->children()[5]->name() == "batch_normalization_1");
  const auto none = build_model(config(d, "none"));
  CHECK(none->children().size() == 6);  // 8 layers, the two bn left out
  CHECK(none->summary().find("Normalization") == std::string::npos);
}

TEST_CASE("the model must end with the data's classes through a softmax — dense needs a flat input", "[models]") {
  ModelConfig c = config("dense:16,relu,dense:10,softmax");
  c.classes = 2;
  CHECK_THROWS_WITH(build_model(c), "model 'dense:16,relu,dense:10,softmax' ends with output [10] per sample but the "
                                    "data has 2 classes: end it with dense:2,softmax");
  c.description = "dense:16,relu,dense:2";
  CHECK_THROWS_WITH(build_model(c), Catch::Contains("must end with softmax"));
  c.description = "dense:16,relu,dense:2,softmax";
  CHECK(build_model(c)->output_shape({5, 784}) == Shape{5, 2});
  c.description = "dense:0,softmax";
  CHECK_THROWS_WITH(build_model(c), Catch::Contains("layer 1 'dense:0'") && Catch::Contains("units must be a whole number"));
  c.description = "dropout:1,dense:2,softmax";
  CHECK_THROWS_WITH(build_model(c), Catch::Contains("rate must be a number in [0, 1), got '1'"));
}

TEST_CASE("a model declares its input shape and views inputs of the same size in it", "[models]") {
  const auto model = build_model(config("dense:4,relu,dense:10,softmax"));
  CHECK(model->forward(Tensor::uniform({3, 28, 28, 1}, 0, 1)).shape() == Shape{3, 10});
  CHECK_THROWS_WITH(model->forward(Tensor::zeros({3, 100})),
                    "model 'sequential': expects inputs of shape [batch,784] (784 values per sample), got [3,100]");
  CHECK(build_model(config("dense:4,relu,bn,dense:10,softmax"))->min_training_batch({1, 784}) == 2);
  CHECK(build_model(config("dense:4,relu,dense:10,softmax", "none"))->min_training_batch({1, 784}) == 1);
}

TEST_CASE("a new layer kind is one registration", "[models]") {
  register_layer_kind({"test_scaled", {}, "test_scaled:SCALE", 1, 1, {}, false,
                       [](const LayerArgs& a) -> std::shared_ptr<Module> {
                         struct Scale : Module {
                           explicit Scale(float s) : s(s) {}
                           Tensor forward(const Tensor& x) override { return x * s; }
                           std::string type_name() const override { return "Scale"; }
                           float s;
                         };
                         return std::make_shared<Scale>(static_cast<float>(a.number(0, "scale", -10, 10)));
                       }});
  const auto model = build_model(config("dense:4,test_scaled:2,dense:10,softmax"));
  CHECK(model->children()[1]->name() == "scale");
  CHECK_THROWS_WITH(register_layer_kind({"dense", {}, "", 0, 0, {}, false,
                                         [](const LayerArgs&) { return std::shared_ptr<Module>(); }}),
                    "register_layer_kind: 'dense' is already a layer kind");
}

TEST_CASE("a model configuration round-trips through checkpoint metadata, with values checked", "[models]") {
  ModelConfig c = config("dense:8,relu,bn,dense:3,softmax", "batchwise");
  c.input_shape = {4, 4, 1};
  c.classes = 3;
  c.norm_options["momentum"] = 0.25;
  c.epsilon = 1e-5f;
  c.seed = 77;
  const Metadata m = c.to_metadata();
  const ModelConfig back = ModelConfig::from_metadata(MetadataReader(m, "test"));
  CHECK(back.description == c.description);
  CHECK(back.norm == "batchwise");
  CHECK(back.input_shape == Shape{4, 4, 1});
  CHECK(back.classes == 3);
  CHECK(back.norm_option("momentum") == 0.25);
  CHECK(back.epsilon == 1e-5f);
  CHECK(back.seed == 77);
  Metadata bad = m;
  bad["model.classes"] = "-3";
  CHECK_THROWS_WITH(ModelConfig::from_metadata(MetadataReader(bad, "checkpoint 'x'")),
                    "checkpoint 'x': metadata 'model.classes' is -3, expected a whole number in [0, 16777216]");
  bad = m;
  bad["model.input_shape"] = "4,0,1";
  CHECK_THROWS_WITH(ModelConfig::from_metadata(MetadataReader(bad, "checkpoint 'x'")),
                    Catch::Contains("metadata 'model.input_shape' is '4,0,1', expected sizes >= 1"));
  bad = m;
  bad["model.momentum"] = "nan";
  CHECK_THROWS_WITH(ModelConfig::from_metadata(MetadataReader(bad, "checkpoint 'x'")),
                    Catch::Contains("'model.momentum' is 'nan', expected a finite number"));
}

TEST_CASE("every registered layer kind and normalisation kind is documented", "[models]") {
  const auto read = [](const std::string& path) { return test::read_bytes(std::string(MINIDL_SOURCE_DIR) + "/" + path); };
  const std::string models = read("docs/models.md"), normalization = read("docs/normalization.md");
  for (const LayerKind& k : layer_kinds()) {
    if (k.name.starts_with("test_")) continue;  // registered by a test in this process (above)
    INFO("layer kind " << k.name);
    CHECK(models.find("| `" + k.name + "` |") != std::string::npos);
  }
  for (const NormKind& k : norm_kinds()) {
    INFO("normalisation kind " << k.name);
    CHECK(models.find("| `" + k.name + "`") != std::string::npos);
    CHECK(normalization.find("| `" + k.name + "`") != std::string::npos);
    for (const NormOption& o : k.options) CHECK(normalization.find("--" + o.flag) != std::string::npos);
  }
}

TEST_CASE("a model's configuration keeps its outputs, column names and text columns' categories", "[models]") {
  ModelConfig c;
  c.description = "dense:2";
  c.input_shape = {4};
  c.classes = 0;
  c.outputs = 2;
  c.output_names = {"y1", "y2"};
  c.feature_names = {"size", "color"};
  c.categories = {{"color", {"blue", "green", "red"}}};
  const Metadata m = c.to_metadata();
  const ModelConfig back = ModelConfig::from_metadata(MetadataReader(m, "test"));
  CHECK(back.outputs == 2);
  CHECK(back.output_names == c.output_names);
  CHECK(back.feature_names == c.feature_names);
  CHECK(back.categories == c.categories);
  Metadata wrong = m;
  wrong["model.feature_names"] = "size";  // 1 input, not 4
  CHECK_THROWS_WITH(ModelConfig::from_metadata(MetadataReader(wrong, "test")),
                    Catch::Contains("its columns make 1 inputs, but the model takes 4"));
}

TEST_CASE("automatic names skip the names taken, and a model of 20,000 layers builds in linear time", "[models]") {
  // Names are found by resuming the search where the last one ended (it used to scan every earlier layer, so
  // 10,000 relu layers took a minute). CTest's timeout stands for the bound; the names are asserted.
  std::string description = "dense:8";
  for (int i = 0; i < 20000; ++i) description += ",relu";
  const auto model = build_model(config(description + ",dense:10,softmax"));
  REQUIRE(model->children().size() == 20003);
  CHECK(model->children()[1]->name() == "re_lu");
  CHECK(model->children()[20000]->name() == "re_lu_19999");
  CHECK(model->children()[20001]->name() == "dense_1");
  // A name given by hand is skipped by the automatic ones.
  Sequential hand;
  hand.add("re_lu_1", std::make_shared<ReLU>());
  hand.add(std::make_shared<ReLU>());
  hand.add(std::make_shared<ReLU>());
  hand.add(std::make_shared<ReLU>());
  CHECK(hand.children()[1]->name() == "re_lu");
  CHECK(hand.children()[2]->name() == "re_lu_2");
  CHECK(hand.children()[3]->name() == "re_lu_3");
  CHECK_THROWS_WITH(hand.add("re_lu_2", std::make_shared<ReLU>()), Catch::Contains("a submodule is already named 're_lu_2'"));
}
