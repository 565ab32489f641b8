// Residual: a block whose output is its layers' output plus a shortcut of its input (He et al. 2016), the
// module the grammar's residual(...) builds and hand-built models use.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "minidl/module.h"

namespace minidl {

/// y = body(x) + shortcut(x): the body's layers applied in order, the shortcut's likewise — none for the identity
/// (He et al.'s option A without padding: the shapes must match), or a projection such as a 1×1 convolution with
/// the block's stride and a normalisation (option B). Both must give the same shape. Like a Keras functional
/// model, the block's layers are named in its parent's namespace ("conv2d_3/kernel", no prefix of the block's),
/// and the block itself after them: "add", "add_1", ... (Keras's Add layer closes each block). Blocks nest.
class Residual : public Module {
 public:
  explicit Residual(std::vector<std::shared_ptr<Module>> body, std::vector<std::shared_ptr<Module>> shortcut = {});

  Tensor forward(const Tensor& x) override;
  /// The body's output shape; throws naming the block when the shortcut gives another.
  Shape output_shape(const Shape& input) const override;
  std::string type_name() const override { return "Residual"; }
  std::string default_name() const override { return "add"; }
  bool names_flat() const override { return true; }
  std::string summary_note() const override;
  int64_t min_training_batch(const Shape& input) const override;
  int64_t min_inference_batch(const Shape& input) const override;
  int64_t min_batch_statistics_batch(const Shape& input) const override;
  int64_t training_batch_multiple() const override;
  double product_flops(const Shape& input) const override;
  /// The body's nodes, the shortcut's, and an ONNX Add node.
  std::string export_onnx(OnnxGraph& graph, const std::string& input, const Shape& input_shape) const override;

  std::span<const std::shared_ptr<Module>> body() const;
  /// Empty: the identity.
  std::span<const std::shared_ptr<Module>> shortcut() const;

 private:
  /// The largest of a per-layer batch requirement over both paths, each layer asked with the shape reaching it.
  int64_t largest(const Shape& input, int64_t (Module::*needed_by)(const Shape&) const) const;
  size_t body_size_;
};

}  // namespace minidl
