// Data-parallel processes: the world of ranks that train one model together (MPI_COMM_WORLD when minidl is
// built with MPI and started by mpirun) and the collective operations training needs. Without MPI, or outside
// mpirun, the world is this one process and every collective is the identity. docs/distributed.md.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace minidl {

class Communicator {
 public:
  /// The processes started together. Initialises MPI on first use when the process was started by mpirun
  /// (and finalises it at exit); otherwise a world of one.
  static Communicator& world();
  /// Whether this build can run on several processes (configured with MPI).
  static bool available();

  int rank() const { return rank_; }
  int size() const { return size_; }

  /// Sums `n` values over every rank, in place (MPI_Allreduce). Every rank gets the same bits, so replicas never
  /// drift apart by rounding (distributed.cpp says why; agree() lets a caller check it).
  void sum(double* values, int64_t n);
  void sum(float* values, int64_t n);
  /// The fused sum for large buffers of floats, without copies: fill the `n` floats reduction_buffer(n) returns
  /// on every rank, then sum_reduction_buffer(out, scale) writes scale × their sums into `out` — consecutive spans
  /// that hold the n results in order (a model's gradients, each in its own tensor). When every process runs on
  /// one machine the buffers are memory they all share, and each process adds them up in rank order straight into
  /// `out`: the sums cost one barrier and one pass over the buffers, and are the same bits everywhere by
  /// construction. Across machines it is an MPI_Allreduce of a private buffer. Both calls are collectives (every
  /// rank, the same n).
  float* reduction_buffer(int64_t n);
  void sum_reduction_buffer(std::span<const std::span<float>> out, float scale = 1.0f);
  /// Whether every rank passed the same value (a collective: every rank must call it).
  bool agree(uint64_t value);
  /// Every rank's `text`, in rank order (a collective). A world of one: {text}.
  std::vector<std::string> all_gather(const std::string& text);
  /// For every rank but the one that reports a failure (and then calls abort()): waits to be ended by that abort,
  /// so that the job prints one message instead of one per process. A world of one exits with status 1.
  [[noreturn]] void await_abort();
  /// Ends every rank's process: prints "rank R: message" and calls MPI_Abort with `code` (a world of one exits).
  [[noreturn]] void abort(const std::string& message, int code = 1);

  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

 private:
  Communicator();
  template <class T>
  void sum_any(T* values, int64_t n);
  int rank_ = 0, size_ = 1;
  std::vector<float> private_buffer_;  // reduction_buffer's when memory is not shared
};

/// The handshake before processes train together: each passes what must be the same on every process (the
/// settings, the data's shape, size and a hash of its contents, the step it starts from) as key → value. Returns ""
/// when every process passed the same; else, alike on every process, a sentence naming the first process that
/// differs from process 0 and the first key that does, as `describe(key)` spells it: "rank 1 has
/// trainer.epochs (--epochs) = 4 where rank 0 has 2". A collective: every rank calls it once, at the same point.
std::string first_difference_across_ranks(Communicator& world, const std::map<std::string, std::string>& values,
                                          const std::function<std::string(const std::string&)>& describe);

/// A 64-bit hash (FNV-1a over 8-byte words) of `bytes`, continuing from `hash`: what the handshake compares for
/// data too large to send.
uint64_t content_hash(std::span<const uint8_t> bytes, uint64_t hash = 14695981039346656037ull);

}  // namespace minidl
