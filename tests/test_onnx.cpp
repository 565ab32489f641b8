// Tests of the ONNX export's encoding: the exported bytes decoded here as protobuf and checked against what
// ONNX defines (ir_version, opset, the graph's nodes, shapes and constants). ONNX Runtime itself runs the
// exports in tests/onnx/check.js.
#include <cstring>
#include <map>

#include "helpers.h"
#include "minidl/checkpoint.h"
#include "minidl/onnx.h"

using namespace minidl;

namespace {
// A decoded protobuf message: each field's values, varints as numbers and length-delimited fields as bytes.
struct Fields {
  std::multimap<int, uint64_t> numbers;
  std::multimap<int, std::string> bytes;
  std::string text(int field) const { return bytes.count(field) ? bytes.find(field)->second : ""; }
  std::vector<std::string> all(int field) const {
    std::vector<std::string> out;
    for (auto [it, end] = bytes.equal_range(field); it != end; ++it) out.push_back(it->second);
    return out;
  }
};

Fields decode(const std::string& m) {
  Fields f;
  size_t i = 0;
  const auto varint = [&] {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      REQUIRE(i < m.size());
      const auto b = static_cast<uint8_t>(m[i++]);
      v |= uint64_t{b & 0x7fu} << shift;
      if (!(b & 0x80)) return v;
    }
  };
  while (i < m.size()) {
    const uint64_t key = varint();
    const int field = static_cast<int>(key >> 3), wire = static_cast<int>(key & 7);
    if (wire == 0) f.numbers.emplace(field, varint());
    else if (wire == 5) {
      uint32_t v;
      std::memcpy(&v, m.data() + i, 4);
      i += 4;
      f.numbers.emplace(field, v);
    } else {
      REQUIRE(wire == 2);
      const uint64_t n = varint();
      REQUIRE(i + n <= m.size());
      f.bytes.emplace(field, m.substr(i, n));
      i += n;
    }
  }
  return f;
}

// The dims of a ValueInfoProto: numbers, with -1 for a symbolic dimension.
std::vector<int64_t> dims_of(const std::string& value_info) {
  const Fields shape = decode(decode(decode(decode(value_info).text(2)).text(1)).text(2));
  std::vector<int64_t> dims;
  for (const std::string& d : shape.all(1)) {
    const Fields dim = decode(d);
    dims.push_back(dim.numbers.count(1) ? static_cast<int64_t>(dim.numbers.find(1)->second) : -1);
  }
  return dims;
}
}  // namespace

TEST_CASE("an exported model is a valid ONNX ModelProto: opset 13, the inference graph, the weights", "[onnx]") {
  test::TempDir dir;
  ModelConfig c;
  c.description = "dense:8,relu,dropout:0.5,bn,dense:3,softmax";
  c.classes = 3;
  const auto model = build_model(c);
  model->forward(Tensor::uniform({4, 784}, 0, 1));  // moving statistics off their initial values
  export_onnx(*model, dir.file("m.onnx"));
  const Fields m = decode(test::read_bytes(dir.file("m.onnx")));
  CHECK(m.numbers.find(1)->second == 8);  // ir_version
  CHECK(m.text(2) == "minidl");
  CHECK(m.text(3) == version());
  const Fields opset = decode(m.text(8));
  CHECK(opset.text(1).empty());  // the default domain
  CHECK(opset.numbers.find(2)->second == 13);
  const Fields graph = decode(m.text(7));
  std::vector<std::string> ops;
  for (const std::string& n : graph.all(1)) ops.push_back(decode(n).text(4));
  CHECK(ops == std::vector<std::string>{"Gemm", "Relu", "BatchNormalization", "Gemm", "Softmax", "Identity"});  // no Dropout
  REQUIRE(graph.all(11).size() == 1);
  CHECK(decode(graph.all(11)[0]).text(1) == "input");
  CHECK(dims_of(graph.all(11)[0]) == std::vector<int64_t>{-1, 784});
  CHECK(decode(graph.all(12)[0]).text(1) == "probabilities");
  CHECK(dims_of(graph.all(12)[0]) == std::vector<int64_t>{-1, 3});
  // Every constant holds its tensor's bytes: the kernel as Keras stores it, the moving statistics.
  std::map<std::string, std::string> constants;
  for (const std::string& t : graph.all(5)) constants[decode(t).text(8)] = decode(t).text(9);
  const auto bytes = [](const Tensor& t) { return std::string(reinterpret_cast<const char*>(t.data()), t.numel() * 4); };
  for (const auto& [name, t] : model->state()) {
    INFO(name);
    REQUIRE(constants.count(name));
    CHECK(constants[name] == bytes(t));
  }
}

TEST_CASE("a model without inference statistics is not exported", "[onnx]") {
  test::TempDir dir;
  ModelConfig c;
  c.norm = "manual";
  CHECK_THROWS_WITH(export_onnx(*build_model(c), dir.file("m.onnx")),
                    Catch::Contains("(manual mode): it has no moving statistics, so no inference form to export"));
  CHECK_FALSE(std::filesystem::exists(dir.file("m.onnx")));
}
