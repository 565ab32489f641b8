// Shape: the dimensions of a tensor, stored inline (no allocation) for ranks up to kMaxRank.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>

namespace minidl {

inline constexpr int kMaxRank = 6;

/// Dimensions of a row-major tensor, outermost first. Printed as "[32,784]".
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(std::span<const int64_t> dims);

  int rank() const { return rank_; }
  int64_t operator[](int axis) const { return dims_[axis]; }
  int64_t& operator[](int axis) { return dims_[axis]; }
  /// Dimension by axis, negative axes counting from the end; throws on an axis out of range.
  int64_t dim(int axis) const;
  int64_t numel() const;
  const int64_t* begin() const { return dims_.data(); }
  const int64_t* end() const { return dims_.data() + rank_; }
  void push_back(int64_t d);

  bool operator==(const Shape& other) const;
  std::string str() const;

 private:
  std::array<int64_t, kMaxRank> dims_{};
  int rank_ = 0;
};

}  // namespace minidl
