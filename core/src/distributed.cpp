// The Communicator over MPI (when built with MINIDL_MPI and started by mpirun), or a world of one.
#include "minidl/distributed.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <vector>

#include "minidl/autograd.h"
#include "minidl/error.h"
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
void finalize() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
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
  if (started_by_mpirun() && std::getenv("OMPI_COMM_WORLD_SIZE") && std::atoi(std::getenv("OMPI_COMM_WORLD_SIZE")) > 1) {
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

void Communicator::abort(const std::string& message, int code) {
  std::fprintf(stderr, "error: rank %d of %d: %s\n", rank_, size_, message.c_str());
  std::fflush(stderr);
#ifdef MINIDL_MPI
  if (size_ > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
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
