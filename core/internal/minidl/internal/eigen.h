// Eigen views over tensor storage, for kernels inside minidl's libraries (never in the public API).
#pragma once

#include <Eigen/Core>

#include "minidl/tensor.h"

namespace minidl::internal {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<RowMatrix>;
using ConstMatrixMap = Eigen::Map<const RowMatrix>;
using ArrayMap = Eigen::Map<Eigen::ArrayXf>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf>;

inline MatrixMap matrix(float* data, int64_t rows, int64_t cols) { return MatrixMap(data, rows, cols); }
inline ConstMatrixMap matrix(const float* data, int64_t rows, int64_t cols) { return ConstMatrixMap(data, rows, cols); }
/// A 2-D tensor as a row-major matrix.
inline MatrixMap matrix(Tensor& t) { return MatrixMap(t.data(), t.size(0), t.size(1)); }
inline ConstMatrixMap matrix(const Tensor& t) { return ConstMatrixMap(t.data(), t.size(0), t.size(1)); }
inline ArrayMap array(float* data, int64_t n) { return ArrayMap(data, n); }
inline ConstArrayMap array(const float* data, int64_t n) { return ConstArrayMap(data, n); }

}  // namespace minidl::internal
