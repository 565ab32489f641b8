// Shape: construction, printing and axis lookup.
#include "minidl/shape.h"

#include "minidl/error.h"

namespace minidl {

Shape::Shape(std::initializer_list<int64_t> dims) : Shape(std::span<const int64_t>(dims.begin(), dims.size())) {}

Shape::Shape(std::span<const int64_t> dims) {
  if (dims.size() > static_cast<size_t>(kMaxRank)) fail("Shape: rank ", dims.size(), " exceeds the maximum ", kMaxRank);
  for (int64_t d : dims) push_back(d);
}

void Shape::push_back(int64_t d) {
  if (rank_ == kMaxRank) fail("Shape: rank exceeds the maximum ", kMaxRank);
  if (d < 0) fail("Shape: dimensions must be >= 0, got ", d);
  dims_[rank_++] = d;
}

int64_t Shape::dim(int axis) const {
  const int a = axis < 0 ? axis + rank_ : axis;
  if (a < 0 || a >= rank_) fail("axis ", axis, " is out of range for shape ", str());
  return dims_[a];
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[i];
  return n;
}

bool Shape::operator==(const Shape& other) const {
  if (rank_ != other.rank_) return false;
  for (int i = 0; i < rank_; ++i)
    if (dims_[i] != other.dims_[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < rank_; ++i) {
    if (i) s += ',';
    s += std::to_string(dims_[i]);
  }
  return s + "]";
}

}  // namespace minidl
