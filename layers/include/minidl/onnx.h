// ONNX export: the graph each layer adds its inference form to (Module::export_onnx), written as an ONNX
// ModelProto (opset 13) by a small protobuf encoder of our own (docs/onnx.md says why and what is written).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "minidl/tensor.h"

namespace minidl {

class Sequential;

/// One node attribute: a whole number, a float, a list of whole numbers, or text.
struct OnnxAttribute {
  enum class Kind { integer, real, integers, text };
  std::string name;
  Kind kind = Kind::integer;
  int64_t i = 0;
  float f = 0.0f;
  std::vector<int64_t> ints;
  std::string s;

  static OnnxAttribute integer(std::string name, int64_t v) { return {std::move(name), Kind::integer, v, 0.0f, {}, {}}; }
  static OnnxAttribute real(std::string name, float v) { return {std::move(name), Kind::real, 0, v, {}, {}}; }
  static OnnxAttribute integers(std::string name, std::vector<int64_t> v) {
    return {std::move(name), Kind::integers, 0, 0.0f, std::move(v), {}};
  }
};

/// An ONNX graph under construction: float inputs and outputs, constants (initializers) and nodes.
class OnnxGraph {
 public:
  /// A float32 graph input; a dimension of -1 is the symbolic batch size "N".
  void add_input(const std::string& name, const std::vector<int64_t>& dims);
  void add_output(const std::string& name, const std::vector<int64_t>& dims);
  /// A constant holding t's values and shape; returns its (unique) name, made from `hint`.
  std::string constant(const std::string& hint, const Tensor& t);
  /// A 64-bit integer constant of rank 1 (shapes for Reshape).
  std::string constant_int64(const std::string& hint, const std::vector<int64_t>& values);
  /// A node of `op_type` on `inputs`; returns the name of its output, made from `hint`.
  std::string node(const std::string& op_type, const std::vector<std::string>& inputs, const std::string& hint,
                   std::vector<OnnxAttribute> attributes = {});
  /// The ModelProto's bytes: IR version 8, the default domain at opset 13.
  std::string serialize(const std::string& producer_version) const;

 private:
  std::string unique(const std::string& hint);
  struct Value {
    std::string name;
    std::vector<int64_t> dims;
  };
  struct Node {
    std::string op_type, name;
    std::vector<std::string> inputs, outputs;
    std::vector<OnnxAttribute> attributes;
  };
  struct Constant {
    std::string name;
    std::vector<int64_t> dims;
    int32_t data_type;  // 1: float, 7: int64
    std::string raw;    // little-endian values
  };
  std::vector<Value> inputs_, outputs_;
  std::vector<Constant> constants_;
  std::vector<Node> nodes_;
  std::vector<std::string> names_;
};

/// Writes a model as an ONNX file, atomically: input "input", float32 [N, ...model.input_shape()] scaled as
/// minidl's loader scales it (pixels / 255); output `output` ("probabilities" [N, classes], or a regression
/// model's "values" [N, outputs]); every layer in its inference
/// form (BatchNormalization with its moving statistics, Dropout left out). Throws naming a layer that has no
/// inference form.
void export_onnx(const Sequential& model, const std::string& path, const std::string& output = "probabilities");

}  // namespace minidl
