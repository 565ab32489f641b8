// Tensor: float32, contiguous, row-major, N-d, with shared storage and the autodiff hooks (grad, backward).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "minidl/error.h"
#include "minidl/random.h"
#include "minidl/shape.h"

namespace minidl {

namespace detail {
struct Node;

/// A float buffer aligned for SIMD. Several tensors may share one (reshape, detach).
struct Storage {
  explicit Storage(int64_t n);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  float* data = nullptr;
  int64_t size = 0;
};

struct TensorImpl {
  Shape shape;
  std::shared_ptr<Storage> storage;
  bool requires_grad = false;
  /// True for a tensor made by an op while recording; stays true after backward frees its node, so that a
  /// second backward through it is refused instead of silently treating it as a leaf.
  bool is_result = false;
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient; for op results, only during backward
  std::shared_ptr<Node> grad_fn;     // the op that made this tensor; released by backward
  /// Set by softmax(): the logits this tensor is the softmax of. Cross-entropy on probabilities uses them to
  /// take the stable from-logits path, as Keras's fit does (docs/keras.md §5). Points backwards only: no cycle.
  std::shared_ptr<TensorImpl> softmax_logits;
  /// Set by sigmoid(): the logits this tensor is the sigmoid of, for binary cross-entropy's from-logits path.
  std::shared_ptr<TensorImpl> sigmoid_logits;
};
}  // namespace detail

/// While one is alive, the tensors its thread allocates may hold at most `max_floats` floats in all; the
/// allocation that would pass that throws minidl::Error(message) before any memory is taken. It guards building
/// a model that a file describes: the file's weights bound what the model may need, so a crafted description
/// cannot make minidl allocate gigabytes. Limits nest; the innermost applies.
class AllocationLimit {
 public:
  AllocationLimit(int64_t max_floats, std::string message);
  ~AllocationLimit();
  AllocationLimit(const AllocationLimit&) = delete;
  AllocationLimit& operator=(const AllocationLimit&) = delete;
  /// Counts n floats against the innermost limit of this thread, if any; throws when they do not fit.
  static void charge(int64_t n);

 private:
  int64_t left_;
  std::string message_;
  AllocationLimit* outer_;
};

/// A handle to a float32 tensor. Copies of a handle share the tensor (like torch::Tensor); clone() copies.
class Tensor {
 public:
  Tensor() = default;  ///< An undefined tensor; defined() is false.

  // Factories.
  static Tensor empty(const Shape& shape);  ///< Uninitialised values.
  static Tensor zeros(const Shape& shape);
  static Tensor ones(const Shape& shape);
  static Tensor full(const Shape& shape, float value);
  static Tensor scalar(float value);  ///< Rank 0.
  static Tensor from(const Shape& shape, std::span<const float> values);
  static Tensor from(const Shape& shape, std::initializer_list<float> values);
  static Tensor uniform(const Shape& shape, float lo, float hi, Generator& gen = default_generator());
  static Tensor normal(const Shape& shape, float mean, float stddev, Generator& gen = default_generator());

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int dim() const { return impl().shape.rank(); }
  /// Size of one axis; negative axes count from the end.
  int64_t size(int axis) const { return impl().shape.dim(axis); }
  int64_t numel() const { return impl().shape.numel(); }

  float* data() { return impl().storage->data; }
  const float* data() const { return impl().storage->data; }
  /// A view of the elements. Not on a temporary: the span would outlive the storage it points into.
  std::span<float> values() & { return {data(), static_cast<size_t>(numel())}; }
  std::span<const float> values() const& { return {data(), static_cast<size_t>(numel())}; }
  std::span<const float> values() && = delete;
  std::vector<float> to_vector() const { return {data(), data() + numel()}; }
  /// The value of a one-element tensor.
  float item() const;
  /// Element access by index, bounds-checked: t.at({i, j}).
  float& at(std::initializer_list<int64_t> index);
  float at(std::initializer_list<int64_t> index) const;

  /// A deep copy, detached from the graph.
  Tensor clone() const;
  /// Overwrites this tensor's values with another's of the same shape (no graph).
  void copy_(const Tensor& src);
  void fill_(float value);

  // Autodiff.
  bool requires_grad() const { return impl().requires_grad; }
  /// Marks a leaf tensor as a parameter whose gradient backward() accumulates.
  Tensor& set_requires_grad(bool on = true);
  /// The accumulated gradient (undefined until a backward reaches this leaf).
  Tensor grad() const;
  /// Clears the accumulated gradient.
  void zero_grad();
  /// Reverse-mode differentiation from a one-element tensor (seed 1) or with an explicit upstream gradient
  /// of this tensor's shape. Leaf gradients accumulate; the graph behind this tensor is freed.
  void backward() const;
  void backward(const Tensor& upstream) const;
  /// The same values, sharing storage, cut from the graph.
  Tensor detach() const;
  bool is_leaf() const { return !impl().is_result; }

  std::string str() const;  ///< Shape and values, summarised when large.

  // For ops and the autodiff engine.
  explicit Tensor(std::shared_ptr<detail::TensorImpl> impl) : impl_(std::move(impl)) {}
  detail::TensorImpl& impl() const;
  const std::shared_ptr<detail::TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  std::shared_ptr<detail::TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& out, const Tensor& t);

}  // namespace minidl
