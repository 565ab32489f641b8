// The ONNX writer: a protobuf encoder for the few ONNX messages minidl writes (field numbers from onnx.proto),
// and export_onnx over a Sequential.
#include "minidl/onnx.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>

#include "minidl/atomic_file.h"
#include "minidl/module.h"
#include "minidl/version.h"

namespace minidl {
namespace {
static_assert(std::endian::native == std::endian::little, "ONNX raw_data is little-endian");

// One protobuf message being written: fields appended in order, as the wire format allows.
class Message {
 public:
  Message& integer(int field, int64_t v) {
    tag(field, 0);
    varint(static_cast<uint64_t>(v));
    return *this;
  }
  Message& real(int field, float v) {
    tag(field, 5);
    char b[4];
    std::memcpy(b, &v, 4);
    bytes_.append(b, 4);
    return *this;
  }
  Message& bytes(int field, const std::string& s) {
    tag(field, 2);
    varint(s.size());
    bytes_ += s;
    return *this;
  }
  Message& message(int field, const Message& m) { return bytes(field, m.bytes_); }
  const std::string& str() const { return bytes_; }

 private:
  void tag(int field, int wire) { varint(static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire)); }
  void varint(uint64_t v) {
    for (; v >= 0x80; v >>= 7) bytes_ += static_cast<char>((v & 0x7f) | 0x80);
    bytes_ += static_cast<char>(v);
  }
  std::string bytes_;
};

// ValueInfoProto { name = 1; type = 2 } with TypeProto { tensor_type = 1 { elem_type = 1; shape = 2 } } and
// TensorShapeProto { dim = 1 { dim_value = 1 | dim_param = 2 } }.
Message value_info(const std::string& name, const std::vector<int64_t>& dims) {
  Message shape;
  for (int64_t d : dims) shape.message(1, d < 0 ? Message().bytes(2, "N") : Message().integer(1, d));
  return Message().bytes(1, name).message(2, Message().message(1, Message().integer(1, 1).message(2, shape)));
}
}  // namespace

std::string OnnxGraph::unique(const std::string& hint) {
  std::string name = hint;
  for (int k = 1; std::find(names_.begin(), names_.end(), name) != names_.end(); ++k) name = hint + "_" + std::to_string(k);
  names_.push_back(name);
  return name;
}

void OnnxGraph::add_input(const std::string& name, const std::vector<int64_t>& dims) {
  inputs_.push_back({unique(name), dims});
}

void OnnxGraph::add_output(const std::string& name, const std::vector<int64_t>& dims) { outputs_.push_back({name, dims}); }

std::string OnnxGraph::constant(const std::string& hint, const Tensor& t) {
  Constant c{unique(hint), std::vector<int64_t>(t.shape().begin(), t.shape().end()), 1,
             std::string(reinterpret_cast<const char*>(t.data()), static_cast<size_t>(t.numel()) * sizeof(float))};
  constants_.push_back(std::move(c));
  return constants_.back().name;
}

std::string OnnxGraph::constant_int64(const std::string& hint, const std::vector<int64_t>& values) {
  Constant c{unique(hint), {static_cast<int64_t>(values.size())}, 7,
             std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(int64_t))};
  constants_.push_back(std::move(c));
  return constants_.back().name;
}

std::string OnnxGraph::node(const std::string& op_type, const std::vector<std::string>& inputs, const std::string& hint,
                            std::vector<OnnxAttribute> attributes) {
  const std::string output = unique(hint);
  nodes_.push_back({op_type, output, inputs, {output}, std::move(attributes)});
  return output;
}

std::string OnnxGraph::serialize(const std::string& producer_version) const {
  // GraphProto: node = 1, name = 2, initializer = 5, input = 11, output = 12.
  Message graph;
  for (const Node& n : nodes_) {
    // NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5.
    Message node;
    for (const std::string& i : n.inputs) node.bytes(1, i);
    for (const std::string& o : n.outputs) node.bytes(2, o);
    node.bytes(3, n.name).bytes(4, n.op_type);
    for (const OnnxAttribute& a : n.attributes) {
      // AttributeProto: name = 1, f = 2, i = 3, s = 4, ints = 8, type = 20 (FLOAT 1, INT 2, STRING 3, INTS 7).
      Message attribute;
      attribute.bytes(1, a.name);
      switch (a.kind) {
        case OnnxAttribute::Kind::real: attribute.real(2, a.f).integer(20, 1); break;
        case OnnxAttribute::Kind::integer: attribute.integer(3, a.i).integer(20, 2); break;
        case OnnxAttribute::Kind::text: attribute.bytes(4, a.s).integer(20, 3); break;
        case OnnxAttribute::Kind::integers:
          for (int64_t v : a.ints) attribute.integer(8, v);
          attribute.integer(20, 7);
          break;
      }
      node.message(5, attribute);
    }
    graph.message(1, node);
  }
  graph.bytes(2, "minidl");
  for (const Constant& c : constants_) {
    // TensorProto: dims = 1, data_type = 2, name = 8, raw_data = 9.
    Message tensor;
    for (int64_t d : c.dims) tensor.integer(1, d);
    tensor.integer(2, c.data_type).bytes(8, c.name).bytes(9, c.raw);
    graph.message(5, tensor);
  }
  for (const Value& v : inputs_) graph.message(11, value_info(v.name, v.dims));
  for (const Value& v : outputs_) graph.message(12, value_info(v.name, v.dims));
  // ModelProto: ir_version = 1, producer_name = 2, producer_version = 3, graph = 7, opset_import = 8
  // (OperatorSetIdProto: domain = 1, version = 2; the default domain is the empty string).
  return Message()
      .integer(1, 8)
      .bytes(2, "minidl")
      .bytes(3, producer_version)
      .message(7, graph)
      .message(8, Message().bytes(1, "").integer(2, 13))
      .str();
}

void export_onnx(const Sequential& model, const std::string& path, const std::string& output) {
  if (model.input_shape().rank() == 0)
    fail("export_onnx: the model declares no input shape (Sequential::set_input_shape, or build it from a description)");
  OnnxGraph graph;
  std::vector<int64_t> dims{-1};
  Shape shape{1};
  for (int64_t d : model.input_shape()) dims.push_back(d), shape.push_back(d);
  graph.add_input("input", dims);
  std::string value = "input";
  for (const auto& layer : model.children()) {
    value = layer->export_onnx(graph, value, shape);
    shape = layer->output_shape(shape);
  }
  graph.node("Identity", {value}, output);
  dims.assign(shape.begin(), shape.end());
  dims[0] = -1;
  graph.add_output(output, dims);
  const std::string bytes = graph.serialize(version());
  write_file_atomically(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) fail("cannot write '", tmp, "' (disk full?)");
  });
}

}  // namespace minidl
