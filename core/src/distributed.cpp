// The Communicator over MPI (when built with MINIDL_MPI and started by mpirun), or a world of one.
#include "minidl/distributed.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <type_traits>
#include <vector>

#include "minidl/autograd.h"
#include "minidl/error.h"
#include "minidl/internal/text.h"
#include "minidl/ops.h"

#ifdef MINIDL_MPI
#include <mpi.h>
#endif

namespace minidl {
namespace {
// mpirun (OpenMPI's, or a PMI launcher) tells its processes so in the environment; a process started any other
// way stays a world of one and never initialises MPI.
bool started_by_mpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK");
}

#ifdef MINIDL_MPI
// reduction_buffer's memory when every process runs on one machine: one window the processes share, of two sets
// of `size` slots of `stride` floats — slot r of a set holds rank r's values. Sums alternate between the sets, so
// a process that has summed one set may fill the other while the rest still read the first: one barrier a sum.
struct SharedSlots {
  bool decided = false, shared = false;  // whether every process shares memory (decided on first use)
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Win window = MPI_WIN_NULL;
  float* base = nullptr;
  int64_t stride = 0;
  int set = 0;  // the set the next sum fills
  float* slot(int s, int rank, int size) const { return base + (static_cast<int64_t>(s) * size + rank) * stride; }

  void release() {
    if (window == MPI_WIN_NULL) return;
    MPI_Win_unlock_all(window);
    MPI_Win_free(&window);
    base = nullptr, stride = 0, set = 0;
  }
  // Every process's writes to the window are seen by every other after this (MPI's unified memory model).
  void fence() const {
    MPI_Win_sync(window);
    MPI_Barrier(node);
    MPI_Win_sync(window);
  }
} g_slots;

void finalize() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  g_slots.release();
  MPI_Finalize();
}

#endif
}  // namespace

bool Communicator::available() {
#ifdef MINIDL_MPI
  return true;
#else
  return false;
#endif
}

Communicator::Communicator() {
#ifdef MINIDL_MPI
  if (started_by_mpirun()) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      std::atexit(finalize);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
#else
  if (started_by_mpirun() && std::getenv("OMPI_COMM_WORLD_SIZE") && internal::parse_integer(std::getenv("OMPI_COMM_WORLD_SIZE")).value_or(0) > 1) {
    std::fprintf(stderr, "error: started by mpirun with %s processes, but this minidl was built without MPI: each "
                         "process would train alone. Install libopenmpi-dev and rebuild (CMake finds it), or run one "
                         "process.\n", std::getenv("OMPI_COMM_WORLD_SIZE"));
    std::exit(1);
  }
#endif
}

Communicator& Communicator::world() {
  static Communicator world;
  return world;
}

void Communicator::sum(double* values, int64_t n) { sum_any(values, n); }
void Communicator::sum(float* values, int64_t n) { sum_any(values, n); }

template <class T>
void Communicator::sum_any(T* values, int64_t n) {
#ifdef MINIDL_MPI
  // One MPI_Allreduce. Every algorithm OpenMPI chooses from computes each element's sum once (ring, reduce-scatter
  // and all-gather, reduce and broadcast) or on every rank from the same operands in a mirrored order (recursive
  // doubling: a+b on one rank, b+a on the other, equal bits since IEEE addition commutes), so every rank gets the
  // same bits. agree() checks that the replicas really are identical, once an epoch (AllReduceGradients).
  // A Reduce + Broadcast pair would guarantee it by construction, at 1.5–2× the time (docs/distributed.md).
  if (size_ < 2) return;
  const MPI_Datatype type = std::is_same_v<T, double> ? MPI_DOUBLE : MPI_FLOAT;
  constexpr int64_t kChunk = int64_t{1} << 28;  // MPI's counts are ints
  for (int64_t begin = 0; begin < n; begin += kChunk)
    MPI_Allreduce(MPI_IN_PLACE, values + begin, static_cast<int>(std::min(kChunk, n - begin)), type, MPI_SUM,
                  MPI_COMM_WORLD);
#else
  (void)values, (void)n;
#endif
}

float* Communicator::reduction_buffer(int64_t n) {
#ifdef MINIDL_MPI
  // Every rank must ask for the same size: rank 0 sizes the shared window, and a rank asking for more would
  // write past it. One small all-reduce a step, far below the sum it prepares.
  if (size_ > 1 && !agree(static_cast<uint64_t>(n)))
    fail("rank ", rank_, " asks to sum ", n, " floats, and another rank a different number: the processes hold different "
         "models (every process of one job must run the same command)");
  if (size_ > 1 && !g_slots.decided) {
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &g_slots.node);
    int node_size = 0;
    MPI_Comm_size(g_slots.node, &node_size);
    g_slots.decided = true;
    g_slots.shared = node_size == size_;
  }
  if (size_ > 1 && g_slots.shared) {
    if (n > g_slots.stride) {  // every rank asks for the same n, so every rank reallocates together
      g_slots.release();
      const int64_t stride = (n + 15) / 16 * 16;  // slots on separate cache lines
      const MPI_Aint bytes = rank_ == 0 ? static_cast<MPI_Aint>(2 * size_ * stride * sizeof(float)) : 0;
      void* mine = nullptr;
      MPI_Win_allocate_shared(bytes, sizeof(float), MPI_INFO_NULL, g_slots.node, &mine, &g_slots.window);
      MPI_Aint size = 0;
      int unit = 0;
      MPI_Win_shared_query(g_slots.window, 0, &size, &unit, &g_slots.base);
      MPI_Win_lock_all(MPI_MODE_NOCHECK, g_slots.window);
      g_slots.stride = stride;
    }
    return g_slots.slot(g_slots.set, rank_, size_);
  }
#endif
  private_buffer_.resize(static_cast<size_t>(n));
  return private_buffer_.data();
}

void Communicator::sum_reduction_buffer(std::span<const std::span<float>> out, float scale) {
  int64_t n = 0;
  for (const std::span<float> part : out) n += static_cast<int64_t>(part.size());
#ifdef MINIDL_MPI
  if (size_ > 1 && g_slots.shared) {
    if (n > g_slots.stride) fail("Communicator::sum_reduction_buffer(", n, "): reduction_buffer holds ", g_slots.stride);
    g_slots.fence();  // every process has written its slot
    // Every process sums all the slots in rank order, straight into `out`: the same operands in the same order
    // give the same bits everywhere. (Summing a share each and reading the others' shares took a second barrier
    // and a copy, which cost more than the pass they saved.) No process writes this set again before every
    // process has passed the next sum's barrier, by which time each has finished reading it.
    const int set = g_slots.set;
    g_slots.set ^= 1;
    int64_t offset = 0;
    for (const std::span<float> part : out) {
      // In blocks that stay in L1 across the slots.
      constexpr int64_t kBlock = 2048;
      for (int64_t b = 0; b < static_cast<int64_t>(part.size()); b += kBlock) {
        const int64_t len = std::min<int64_t>(kBlock, static_cast<int64_t>(part.size()) - b);
        float* __restrict o = part.data() + b;
        std::copy_n(g_slots.slot(set, 0, size_) + offset + b, len, o);
        for (int r = 1; r < size_; ++r) {
          const float* __restrict slot = g_slots.slot(set, r, size_) + offset + b;
          for (int64_t i = 0; i < len; ++i) o[i] += slot[i];
        }
        for (int64_t i = 0; i < len; ++i) o[i] *= scale;
      }
      offset += static_cast<int64_t>(part.size());
    }
    return;
  }
#endif
  if (n > static_cast<int64_t>(private_buffer_.size()))
    fail("Communicator::sum_reduction_buffer(", n, "): reduction_buffer holds ", private_buffer_.size());
  sum(private_buffer_.data(), n);
  const float* sums = private_buffer_.data();
  for (const std::span<float> part : out) {
    std::transform(sums, sums + part.size(), part.data(), [scale](float v) { return v * scale; });
    sums += part.size();
  }
}

bool Communicator::agree(uint64_t value) {
#ifdef MINIDL_MPI
  if (size_ < 2) return true;
  // The largest value and the largest complement: both are this rank's own only when no rank holds a larger
  // value or a smaller one.
  uint64_t both[2] = {value, ~value};
  MPI_Allreduce(MPI_IN_PLACE, both, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  return both[0] == value && both[1] == ~value;
#else
  (void)value;
  return true;
#endif
}

std::vector<std::string> Communicator::all_gather(const std::string& text) {
#ifdef MINIDL_MPI
  if (size_ > 1) {
    std::vector<int> lengths(static_cast<size_t>(size_)), offsets(static_cast<size_t>(size_));
    int mine = static_cast<int>(text.size());
    MPI_Allgather(&mine, 1, MPI_INT, lengths.data(), 1, MPI_INT, MPI_COMM_WORLD);
    int64_t total = 0;
    for (int r = 0; r < size_; ++r) offsets[r] = static_cast<int>(total), total += lengths[r];
    std::string all(static_cast<size_t>(total), '\0');
    MPI_Allgatherv(text.data(), mine, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, MPI_COMM_WORLD);
    std::vector<std::string> out;
    for (int r = 0; r < size_; ++r) out.push_back(all.substr(static_cast<size_t>(offsets[r]), static_cast<size_t>(lengths[r])));
    return out;
  }
#endif
  return {text};
}

void Communicator::await_abort() {
#ifdef MINIDL_MPI
  if (size_ > 1) MPI_Barrier(MPI_COMM_WORLD);  // the reporting rank never arrives: its MPI_Abort ends this process
#endif
  std::exit(1);
}

void Communicator::abort(const std::string& message, int code) {
  std::fprintf(stderr, "error: rank %d of %d: %s\n", rank_, size_, message.c_str());
  std::fflush(stderr);
#ifdef MINIDL_MPI
  if (size_ > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

std::string first_difference_across_ranks(Communicator& world, const std::map<std::string, std::string>& values,
                                          const std::function<std::string(const std::string&)>& describe) {
  // key NUL value NUL ..., in key order.
  std::string packed;
  for (const auto& [key, value] : values) packed += key + '\0' + value + '\0';
  const std::vector<std::string> all = world.all_gather(packed);
  const auto unpack = [](const std::string& text) {
    std::map<std::string, std::string> out;
    for (size_t at = 0; at < text.size();) {
      const size_t key_end = text.find('\0', at), value_end = text.find('\0', key_end + 1);
      out[text.substr(at, key_end - at)] = text.substr(key_end + 1, value_end - key_end - 1);
      at = value_end + 1;
    }
    return out;
  };
  const std::map<std::string, std::string> first = unpack(all[0]);
  for (size_t r = 1; r < all.size(); ++r) {
    if (all[r] == all[0]) continue;
    const std::map<std::string, std::string> other = unpack(all[r]);
    std::set<std::string> keys;
    for (const auto& [k, v] : first) keys.insert(k);
    for (const auto& [k, v] : other) keys.insert(k);
    for (const std::string& key : keys) {
      const auto a = first.find(key), b = other.find(key);
      const std::string mine = a == first.end() ? "nothing" : a->second, theirs = b == other.end() ? "nothing" : b->second;
      if (mine != theirs)
        return "rank " + std::to_string(r) + " has " + describe(key) + " = " + internal::excerpt(theirs) +
               " where rank 0 has " + internal::excerpt(mine);
    }
  }
  return "";
}

uint64_t content_hash(std::span<const uint8_t> bytes, uint64_t hash) {
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, bytes.data() + i, 8);
    hash = (hash ^ word) * 1099511628211ull;
  }
  for (; i < bytes.size(); ++i) hash = (hash ^ bytes[i]) * 1099511628211ull;
  return hash;
}

Tensor all_reduce_sum(const Tensor& x, Communicator& world) {
  Tensor out = x.clone();
  world.sum(out.data(), out.numel());
  return record(out, "all_reduce_sum", {x}, [&world](BackwardContext& ctx) {
    // Every process's output is the same sum, and each process's loss depends on it: the gradient of the sum of
    // the losses with respect to this process's x is the sum of the output gradients over the processes.
    Tensor g = ctx.grad_output().clone();
    world.sum(g.data(), g.numel());
    float* dx = ctx.grad(0);
    for (int64_t i = 0; i < g.numel(); ++i) dx[i] += g.data()[i];
  });
}

}  // namespace minidl
