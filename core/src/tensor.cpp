// Tensor: storage, factories, element access, copies and printing.
#include "minidl/tensor.h"

#include "minidl/internal/parallel.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <mutex>
#include <unordered_map>
#include <vector>
#include <ostream>
#include <sstream>

namespace minidl {
namespace detail {

namespace {
constexpr size_t kAlignment = 64;  // a cache line; enough for AVX-512 loads

size_t rounded_bytes(int64_t n) {
  return std::max<size_t>(kAlignment, (static_cast<size_t>(n) * sizeof(float) + kAlignment - 1) / kAlignment * kAlignment);
}

// A training step allocates the same sizes every step (activations, gradients, im2col scratch). Freed buffers
// wait here, by exact size, for the next step instead of going back to malloc, which for large sizes means mmap,
// munmap and a page fault for every 4 KiB touched, every step (a third of a ResNet step's time on a virtual
// machine, measured with perf). The cache never makes the process hold more than it already needed: the buffers in
// use plus those waiting stay within the most that was ever in use at once, or within kMinCached when that is
// more; to keep to it, a new size or one just freed makes waiting buffers of other sizes go back first. Sanitizer builds turn it
// off (MINIDL_NO_BUFFER_CACHE) so that AddressSanitizer sees every free and catches use after free.
class BufferCache {
 public:
  static constexpr size_t kMinCached = size_t{256} << 20;
  void* allocate(size_t bytes) {
#ifndef MINIDL_NO_BUFFER_CACHE
    {
      const std::lock_guard lock(mutex_);
      in_use_ += bytes;
      most_in_use_ = std::max(most_in_use_, in_use_);
      if (auto it = waiting_.find(bytes); it != waiting_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= bytes;
        return p;
      }
      trim(room());
    }
#endif
    void* p = std::aligned_alloc(kAlignment, bytes);
#ifndef MINIDL_NO_BUFFER_CACHE
    if (!p) {
      const std::lock_guard lock(mutex_);
      in_use_ -= bytes;
    }
#endif
    return p;
  }
  void release(void* p, size_t bytes) {
#ifndef MINIDL_NO_BUFFER_CACHE
    {
      const std::lock_guard lock(mutex_);
      in_use_ -= bytes;
      // The size just freed is the likeliest to be asked for next: it waits, older sizes go back if need be.
      if (bytes <= room()) {
        trim(room() - bytes);
        waiting_[bytes].push_back(p);
        cached_ += bytes;
        return;
      }
    }
#endif
    (void)bytes;
    std::free(p);
  }

 private:
  // How many bytes may wait beside those in use.
  size_t room() const { return std::max(kMinCached, most_in_use_ - in_use_); }
  // Frees waiting buffers until at most `limit` bytes wait.
  void trim(size_t limit) {
    for (auto it = waiting_.begin(); cached_ > limit && it != waiting_.end(); ++it)
      while (cached_ > limit && !it->second.empty()) {
        std::free(it->second.back());
        it->second.pop_back();
        cached_ -= it->first;
      }
  }
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> waiting_;
  size_t cached_ = 0, in_use_ = 0, most_in_use_ = 0;
};

BufferCache& buffer_cache() {
  static BufferCache* cache = new BufferCache;  // never destroyed: tensors may outlive static destruction
  return *cache;
}
}  // namespace

Storage::Storage(int64_t n) : size(n) {
  AllocationLimit::charge(n);
  data = static_cast<float*>(buffer_cache().allocate(rounded_bytes(n)));
  if (!data) fail("Tensor: out of memory allocating ", n, " floats");
}

Storage::~Storage() { buffer_cache().release(data, rounded_bytes(size)); }

}  // namespace detail

namespace {
thread_local AllocationLimit* t_allocation_limit = nullptr;
}  // namespace

AllocationLimit::AllocationLimit(int64_t max_floats, std::string message)
    : left_(max_floats), message_(std::move(message)), outer_(t_allocation_limit) {
  t_allocation_limit = this;
}

AllocationLimit::~AllocationLimit() { t_allocation_limit = outer_; }

void AllocationLimit::charge(int64_t n) {
  AllocationLimit* limit = t_allocation_limit;
  if (!limit) return;
  if (n > limit->left_) throw Error(limit->message_);
  limit->left_ -= n;
}

detail::TensorImpl& Tensor::impl() const {
  if (!impl_) fail("Tensor: use of an undefined tensor");
  return *impl_;
}

Tensor Tensor::empty(const Shape& shape) {
  auto impl = std::make_shared<detail::TensorImpl>();
  impl->shape = shape;
  impl->storage = std::make_shared<detail::Storage>(shape.numel());
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape) { return full(shape, 0.0f); }
Tensor Tensor::ones(const Shape& shape) { return full(shape, 1.0f); }

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t = empty(shape);
  t.fill_(value);
  return t;
}

Tensor Tensor::scalar(float value) { return full(Shape{}, value); }

Tensor Tensor::from(const Shape& shape, std::span<const float> values) {
  if (static_cast<int64_t>(values.size()) != shape.numel())
    fail("Tensor::from: shape ", shape.str(), " holds ", shape.numel(), " values, got ", values.size());
  Tensor t = empty(shape);
  std::copy(values.begin(), values.end(), t.data());
  return t;
}

Tensor Tensor::from(const Shape& shape, std::initializer_list<float> values) {
  return from(shape, std::span<const float>(values.begin(), values.size()));
}

Tensor Tensor::uniform(const Shape& shape, float lo, float hi, Generator& gen) {
  Tensor t = empty(shape);
  for (float& v : t.values()) v = gen.uniform(lo, hi);
  return t;
}

Tensor Tensor::normal(const Shape& shape, float mean, float stddev, Generator& gen) {
  Tensor t = empty(shape);
  for (float& v : t.values()) v = gen.normal(mean, stddev);
  return t;
}

float Tensor::item() const {
  if (numel() != 1) fail("Tensor::item: needs a tensor of one element, got shape ", shape().str());
  return data()[0];
}

namespace {
int64_t flat_index(const Shape& shape, std::initializer_list<int64_t> index) {
  if (static_cast<int>(index.size()) != shape.rank())
    fail("Tensor::at: ", index.size(), " indices for a tensor of shape ", shape.str());
  int64_t flat = 0;
  int axis = 0;
  for (int64_t i : index) {
    if (i < 0 || i >= shape[axis]) fail("Tensor::at: index ", i, " out of range for axis ", axis, " of ", shape.str());
    flat = flat * shape[axis++] + i;
  }
  return flat;
}
}  // namespace

float& Tensor::at(std::initializer_list<int64_t> index) { return data()[flat_index(shape(), index)]; }
float Tensor::at(std::initializer_list<int64_t> index) const { return data()[flat_index(shape(), index)]; }

Tensor Tensor::clone() const {
  Tensor t = empty(shape());
  std::copy_n(data(), numel(), t.data());
  return t;
}

void Tensor::copy_(const Tensor& src) {
  if (!(src.shape() == shape())) fail("Tensor::copy_: shapes differ: ", shape().str(), " <- ", src.shape().str());
  std::copy_n(src.data(), numel(), data());
}

void Tensor::fill_(float value) {
  float* p = data();
  internal::parallel_for(numel(), 1, [&](int64_t begin, int64_t end) { std::fill(p + begin, p + end, value); });
}

Tensor& Tensor::set_requires_grad(bool on) {
  if (impl().is_result && !on)
    fail("Tensor::set_requires_grad: cannot clear requires_grad on an op result; use detach()");
  impl().requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }

void Tensor::zero_grad() { impl().grad.reset(); }

Tensor Tensor::detach() const {
  auto impl = std::make_shared<detail::TensorImpl>();
  impl->shape = shape();
  impl->storage = this->impl().storage;
  return Tensor(std::move(impl));
}

namespace {
// Prints axis `axis` of the block starting at `offset`, eliding the middle of long axes.
void print_block(std::ostream& out, const Tensor& t, int axis, int64_t offset, int64_t stride, bool summarise) {
  const Shape& s = t.shape();
  const int64_t n = s[axis];
  const int64_t inner = stride / std::max<int64_t>(n, 1);
  out << '[';
  for (int64_t i = 0; i < n; ++i) {
    if (summarise && n > 6 && i == 3) {
      out << "..., ";
      i = n - 3;
    }
    if (axis + 1 == s.rank())
      out << t.data()[offset + i];
    else
      print_block(out, t, axis + 1, offset + i * inner, inner, summarise);
    if (i + 1 < n) out << (axis + 1 == s.rank() ? ", " : ",\n" + std::string(axis + 1, ' '));
  }
  out << ']';
}
}  // namespace

std::string Tensor::str() const {
  std::ostringstream out;
  out << *this;
  return out.str();
}

std::ostream& operator<<(std::ostream& out, const Tensor& t) {
  if (!t.defined()) return out << "Tensor(undefined)";
  out << "Tensor" << t.shape().str() << (t.requires_grad() ? " requires_grad" : "") << '\n';
  std::ostringstream body;
  body << std::setprecision(6);
  if (t.dim() == 0)
    body << t.data()[0];
  else
    print_block(body, t, 0, 0, t.numel(), t.numel() > 1000);
  return out << body.str();
}

}  // namespace minidl
