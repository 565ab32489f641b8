// NumPy-style broadcasting of two shapes, and a loop over the output that visits matching input offsets.
#pragma once

#include <array>
#include <cstdint>

#include "minidl/shape.h"

namespace minidl::internal {

/// The output shape of a broadcast and each operand's strides aligned to it (0 along broadcast axes).
struct Broadcast {
  Shape out;
  std::array<int64_t, kMaxRank> stride_a{};
  std::array<int64_t, kMaxRank> stride_b{};
};

/// Throws minidl::Error "op: shapes do not broadcast: [2,3] x [4]" when they don't.
Broadcast broadcast(const char* op, const Shape& a, const Shape& b);

/// Calls f(out_offset, a_offset, b_offset) for every output element in row-major order. The loop is a
/// template so the body inlines: no per-element indirect call.
template <class F>
void for_each_broadcast(const Broadcast& bc, F&& f) {
  const int rank = bc.out.rank();
  const int64_t total = bc.out.numel();
  if (total == 0) return;
  if (rank == 0) {
    f(0, 0, 0);
    return;
  }
  const int64_t inner = bc.out[rank - 1];
  const int64_t sa = bc.stride_a[rank - 1], sb = bc.stride_b[rank - 1];
  std::array<int64_t, kMaxRank> index{};
  int64_t a = 0, b = 0;
  for (int64_t o = 0; o < total; o += inner) {
    for (int64_t i = 0; i < inner; ++i) f(o + i, a + i * sa, b + i * sb);
    // Advance the outer index like an odometer.
    for (int axis = rank - 2; axis >= 0; --axis) {
      a += bc.stride_a[axis];
      b += bc.stride_b[axis];
      if (++index[axis] < bc.out[axis]) break;
      a -= bc.stride_a[axis] * bc.out[axis];
      b -= bc.stride_b[axis] * bc.out[axis];
      index[axis] = 0;
    }
  }
}

/// Row-major strides of a shape.
std::array<int64_t, kMaxRank> strides_of(const Shape& s);

}  // namespace minidl::internal
