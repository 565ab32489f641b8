// Tests of data-parallel training under mpirun (docs/distributed.md): N processes on a global batch train the
// weights one process trains, within rounding, in every mode; --bn-sync local differs; the same run twice is
// identical; a checkpoint from 2 processes resumes on 1; bad splits are refused; a killed or failing process ends
// the job with a message naming it. Skipped when this build has no MPI or mpirun is missing.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <span>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli_helpers.h"
#include "minidl/checkpoint.h"
#include "minidl/data.h"
#include "minidl/distributed.h"
#include "minidl/layers.h"

using namespace minidl;
using minidl::test::data_flag;
using minidl::test::minidl_cli;
using minidl::test::Run;
using minidl::test::TempDir;

namespace {
// mpirun as root needs these; more processes than cores need --oversubscribe. The sanitizer build's leak checker
// would report OpenMPI's own allocations at exit, so it is off in the launched processes.
std::string mpirun(int ranks) {
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np " + std::to_string(ranks) +
         " --oversubscribe -x OMP_NUM_THREADS=1 -x ASAN_OPTIONS=detect_leaks=0 ";
}

bool can_run() {
  if (!Communicator::available()) return test::require_or_skip("/nonexistent", "this build has no MPI (libopenmpi-dev)");
  return test::require_or_skip("/usr/bin/mpirun", "mpirun is not installed (openmpi-bin)");
}

Run shell(const std::string& command, const TempDir& dir) {
  const std::string out = dir.file("stdout"), err = dir.file("stderr");
  const int raw = std::system((command + " >" + out + " 2>" + err + " </dev/null").c_str());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, test::read_bytes(out), test::read_bytes(err)};
}

Run train(int ranks, const std::string& args, const TempDir& dir) {
  const std::string launcher = ranks > 0 ? mpirun(ranks) : "OMP_NUM_THREADS=1 ";
  return shell(launcher + MINIDL_CLI + " train " + args + " " + data_flag(), dir);
}

// The largest difference between two checkpoints' tensors, naming the tensor; every tensor must be in both.
std::pair<double, std::string> largest_difference(const std::string& a, const std::string& b, const std::string& skip = "") {
  const Checkpoint x = load_safetensors(a), y = load_safetensors(b);
  REQUIRE(x.tensors.size() == y.tensors.size());
  std::pair<double, std::string> worst{0.0, ""};
  for (const auto& [name, t] : x.tensors) {
    REQUIRE(y.tensors.count(name));
    if (!skip.empty() && name.find(skip) != std::string::npos) continue;
    const Tensor& u = y.tensors.at(name);
    REQUIRE(u.numel() == t.numel());
    for (int64_t i = 0; i < t.numel(); ++i)
      if (std::abs(double(t.data()[i]) - u.data()[i]) > worst.first) worst = {std::abs(double(t.data()[i]) - u.data()[i]), name};
  }
  return worst;
}
}  // namespace

// Run inside each process of the next test (hidden: ctest does not list it).
TEST_CASE("collectives inside mpirun", "[.mpi-child]") {
  Communicator& world = Communicator::world();
  REQUIRE(world.size() > 1);
  // Values whose sum rounds differently in different orders: every process must still get the same bits.
  std::vector<float> v(100000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::ldexp(1.0f + 0.1f * float(world.rank() + 1), int(i % 40) - 20) / 3.0f;
  world.sum(v.data(), static_cast<int64_t>(v.size()));
  uint64_t hash = 0;
  for (float x : v) hash = hash * 1099511628211ull + std::bit_cast<uint32_t>(x);
  CHECK(world.agree(hash));
  // The shared reduction buffer: each element summed over the processes in rank order, the same bits everywhere.
  // Several rounds back to back, with values that change each round: a process that runs ahead fills its next
  // buffer while the others still sum the last one, which must not change what they read.
  const int64_t n = 1000003;
  const auto value = [](int rank, int round, int64_t i) {
    return std::ldexp(1.0f + 0.1f * float(rank + 1) + 0.01f * float(round), int(i % 40) - 20) / 3.0f;
  };
  for (int round = 0; round < 4; ++round) {
    INFO("round " << round);
    float* mine = world.reduction_buffer(n);
    for (int64_t i = 0; i < n; ++i) mine[i] = value(world.rank(), round, i);
    // Into two spans, as a model's gradients arrive in several tensors, scaled as an average is.
    std::vector<float> sums(static_cast<size_t>(n));
    const std::span<float> parts[] = {{sums.data(), 12345}, {sums.data() + 12345, static_cast<size_t>(n - 12345)}};
    world.sum_reduction_buffer(parts, 0.5f);
    bool in_rank_order = true;
    hash = 0;
    for (int64_t i = 0; i < n; ++i) {
      float expected = 0.0f;
      for (int r = 0; r < world.size(); ++r) expected += value(r, round, i);
      expected *= 0.5f;
      const auto got = sums[static_cast<size_t>(i)];
      in_rank_order = in_rank_order && std::bit_cast<uint32_t>(expected) == std::bit_cast<uint32_t>(got);
      hash = hash * 1099511628211ull + std::bit_cast<uint32_t>(got);
    }
    CHECK(in_rank_order);
    CHECK(world.agree(hash));
  }
  CHECK(world.agree(42));
  CHECK_FALSE(world.agree(world.rank() == 1 ? 1 : 2));
  CHECK_FALSE(world.agree(static_cast<uint64_t>(world.rank())));
  // A rank asking for a larger shared buffer than rank 0 sized would write past it: refused on every rank.
  CHECK_THROWS_WITH(world.reduction_buffer(n + world.rank()), Catch::Contains("a different number"));
  // The handshake: every rank learns the first difference from rank 0, spelled alike.
  const auto key = [](const std::string& k) { return "--" + k; };
  CHECK(first_difference_across_ranks(world, {{"epochs", "2"}, {"seed", "1"}}, key).empty());
  const std::map<std::string, std::string> differs{{"epochs", world.rank() == world.size() - 1 ? "4" : "2"}, {"seed", "1"}};
  CHECK(first_difference_across_ranks(world, differs, key) ==
        "rank " + std::to_string(world.size() - 1) + " has --epochs = 4 where rank 0 has 2");
  CHECK(world.all_gather(std::string(world.rank(), 'x')).back() == std::string(world.size() - 1, 'x'));
}

TEST_CASE("sums give every process the same bits, and agree() tells equal values from unequal ones", "[mpi]") {
  if (!can_run()) return;
  TempDir dir;
  for (int ranks : {2, 3}) {
    const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
    const Run r = shell(mpirun(ranks) + self + " --use-colour no \"[mpi-child]\"", dir);
    INFO(ranks << " processes: " << r.out << r.err);
    CHECK(r.status == 0);
    // Every assertion of the child ran, in every process: 2 per round of the reduction buffer, 9 more.
    CHECK_THAT(r.out, Catch::Contains("All tests passed (17 assertions in 1 test case)"));
  }
}

TEST_CASE("2 processes on a global batch train what 1 process trains, in all three modes", "[mpi]") {
  if (!can_run()) return;
  TempDir dir;
  const std::string common = "--steps 20 --no-shuffle --batch-size 32 --epochs 1";
  for (const char* mode : {"running", "batchwise", "manual"}) {
    INFO(mode);
    const std::string norm = std::string(" --norm ") + mode, one = dir.file(std::string("one-") + mode),
                      two = dir.file(std::string("two-") + mode);
    const Run a = train(0, common + norm + " --save " + one, dir);
    const Run b = train(2, common + norm + " --save " + two, dir);
    INFO(a.err << b.err);
    REQUIRE(a.status == 0);
    REQUIRE(b.status == 0);
    CHECK_THAT(b.err, Catch::Contains("data parallel: 2 processes, 16 samples each per step (global batch 32)"));
    // Every tensor within 1e-5 — except, in manual mode, the first layer's bias, which feeds the normalisation:
    // its true gradient is exactly 0 (normalising subtracts it out), so its updates are Adam's reading of
    // rounding noise, and summing the statistics in two halves rounds differently from one pass.
    const std::string skip = std::string(mode) == "manual" ? "dense/bias" : "";
    const auto [diff, name] = largest_difference(one, two, skip);
    INFO("largest difference " << diff << " in " << name);
    CHECK(diff <= 1e-5);
    if (!skip.empty()) {
      const Checkpoint x = load_safetensors(one), y = load_safetensors(two);
      for (int64_t i = 0; i < x.tensors.at("dense/bias").numel(); ++i)
        CHECK(std::abs(x.tensors.at("dense/bias").data()[i] - y.tensors.at("dense/bias").data()[i]) <= 1e-4);
    }
    // Only rank 0 logs.
    CHECK(std::count(b.out.begin(), b.out.end(), '\n') == std::count(a.out.begin(), a.out.end(), '\n'));
  }
  // Each process's own statistics (PyTorch DDP's default) train something else.
  const Run local = train(2, common + " --bn-sync local --save " + dir.file("local"), dir);
  REQUIRE(local.status == 0);
  CHECK(largest_difference(dir.file("one-running"), dir.file("local")).first > 1e-3);
  // The same 2-process run twice gives the same bits.
  REQUIRE(train(2, common + " --save " + dir.file("again"), dir).status == 0);
  CHECK(largest_difference(dir.file("two-running"), dir.file("again")).first == 0.0);
  // Dropout drops what one process drops (each process keeps its slice of the global batch's mask).
  const std::string dropout = common + " --model dense:64,relu,dropout:0.3,bn,dense:10,softmax --save ";
  REQUIRE(train(0, dropout + dir.file("one-dropout"), dir).status == 0);
  REQUIRE(train(2, dropout + dir.file("two-dropout"), dir).status == 0);
  CHECK(largest_difference(dir.file("one-dropout"), dir.file("two-dropout")).first <= 1e-5);
}

TEST_CASE("Dropout on a slice of the global batch keeps that slice of the global mask", "[distributed]") {
  Dropout whole(0.4f, 7);
  const Tensor first = whole.forward(Tensor::ones({6, 5})), second = whole.forward(Tensor::ones({6, 5}));
  for (int shards : {2, 3})
    for (int shard = 0; shard < shards; ++shard) {
      Dropout part(0.4f, 7);
      part.set_shard(shard, shards);
      const int64_t rows = 6 / shards;
      for (const Tensor& global : {first, second}) {  // the second step draws on from where the global one would
        const Tensor mine = part.forward(Tensor::ones({rows, 5}));
        INFO("shard " << shard << " of " << shards);
        for (int64_t i = 0; i < mine.numel(); ++i) CHECK(mine.data()[i] == global.data()[shard * rows * 5 + i]);
      }
    }
  CHECK_THROWS_WITH(whole.set_shard(2, 2), Catch::Contains("shard 2 of 2 is out of range"));
  // Uneven slices, as a loader of 3 shards gives a batch of 7: rows 0-1, 2-3 and 4-6.
  Dropout seven(0.4f, 7);
  const Tensor global = seven.forward(Tensor::ones({7, 5}));
  for (const auto& [begin, rows] : {std::pair<int64_t, int64_t>{0, 2}, {2, 2}, {4, 3}}) {
    Dropout part(0.4f, 7);
    part.set_slice(begin, 7);
    const Tensor mine = part.forward(Tensor::ones({rows, 5}));
    INFO("rows from " << begin);
    for (int64_t i = 0; i < mine.numel(); ++i) CHECK(mine.data()[i] == global.data()[begin * 5 + i]);
  }
  CHECK_THROWS_WITH(seven.set_slice(7, 7), Catch::Contains("a slice from row 7 of a global batch of 7 is out of range"));
}

TEST_CASE("a loader of N shards splits any batch into slices of floor(b/N) or ceil(b/N) rows, in order", "[distributed]") {
  const DatasetSplits s = make_synthetic(70, 10, 5);
  std::vector<std::vector<int32_t>> whole;  // each batch's labels, one loader alone
  DataLoader alone(s.train, {.batch_size = 32, .seed = 3});
  alone.start_epoch();
  for (Batch b; alone.next(b);) whole.push_back(b.labels);
  REQUIRE(whole.size() == 3);  // 32, 32 and 6
  std::vector<std::vector<int32_t>> joined(whole.size());
  std::vector<std::vector<int64_t>> rows(whole.size());
  for (int shard = 0; shard < 3; ++shard) {
    DataLoader part(s.train, {.batch_size = 32, .seed = 3, .shard = shard, .shards = 3});
    part.start_epoch();
    Batch b;
    for (size_t k = 0; part.next(b); ++k) {
      CHECK(b.global_rows == static_cast<int64_t>(whole[k].size()));
      CHECK(b.slice_begin == static_cast<int64_t>(joined[k].size()));
      joined[k].insert(joined[k].end(), b.labels.begin(), b.labels.end());
      rows[k].push_back(static_cast<int64_t>(b.labels.size()));
    }
  }
  CHECK(joined == whole);
  CHECK(rows[0] == std::vector<int64_t>{10, 11, 11});
  CHECK(rows[2] == std::vector<int64_t>{2, 2, 2});
  // A last batch smaller than the shard count is skipped; a batch smaller than it is refused.
  const DatasetSplits small = make_synthetic(34, 10, 5);
  CHECK(DataLoader(small.train, {.batch_size = 32, .shards = 3}).batches_per_epoch() == 1);
  CHECK_THROWS_WITH(DataLoader(small.train, {.batch_size = 2, .shards = 3}),
                    Catch::Contains("the batch size 2 cannot give each of 3 processes a sample"));
}

TEST_CASE("2 processes train an augmented residual CNN as 1 does, its blocks' and shortcut's BN synchronised", "[mpi]") {
  if (!can_run()) return;
  TempDir dir;
  // A projection block (its shortcut a strided 1×1 convolution and a copy of the block's first bn) after a plain
  // layer: BatchNormalizations before, inside and beside the block, each normalising over the global batch. The
  // convolutions have no bias, as in ResNets: a bias before a bn has a true gradient of exactly 0, and Adam's
  // steps on its rounding noise would differ (the three-mode test above).
  const std::string common =
      "--steps 12 --batch-size 32 --epochs 1 --augment --augment-pad 2 --model 'conv:4x3:padding=same:bias=0,bn,relu,"
      "residual(conv:8x3:strides=2:padding=same:bias=0,bn,relu,conv:8x3:padding=same:bias=0,bn),relu,gap,dense:10,softmax'";
  const Run one = train(0, common + " --save " + dir.file("one"), dir);
  const Run two = train(2, common + " --save " + dir.file("two"), dir);
  INFO(one.err << two.err);
  REQUIRE(one.status == 0);
  REQUIRE(two.status == 0);
  const Checkpoint c = load_safetensors(dir.file("two"));
  for (const char* bn : {"batch_normalization", "batch_normalization_1", "batch_normalization_2", "batch_normalization_3"})
    CHECK(c.tensors.count(std::string(bn) + "/moving_mean") == 1);
  const auto [diff, name] = largest_difference(dir.file("one"), dir.file("two"));
  INFO("largest difference " << diff << " in " << name);
  CHECK(diff <= 1e-5);
  // Each process normalising its own 16 samples trains another network.
  REQUIRE(train(2, common + " --bn-sync local --save " + dir.file("local"), dir).status == 0);
  CHECK(largest_difference(dir.file("one"), dir.file("local")).first > 1e-3);
}

TEST_CASE("3 processes take any global batch, in all three modes, and a checkpoint resumes on any count", "[mpi]") {
  if (!can_run()) return;
  TempDir dir;
  // 32 over 3: slices of 10, 11 and 11, each slice's loss weighted by its share of the batch.
  const std::string common = "--steps 20 --no-shuffle --batch-size 32 --epochs 1";
  for (const std::string mode : {"running", "batchwise", "manual"}) {
    INFO(mode);
    const std::string one = dir.file("one-" + mode), three = dir.file("three-" + mode);
    REQUIRE(train(0, common + " --norm " + mode + " --save " + one, dir).status == 0);
    const Run r = train(3, common + " --norm " + mode + " --save " + three, dir);
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK_THAT(r.err, Catch::Contains("data parallel: 3 processes, 10 or 11 samples each per step (global batch 32)"));
    CHECK(r.err.find("error") == std::string::npos);
    const std::string skip = mode == "manual" ? "dense/bias" : "";  // why: the 2-process test above
    const auto [diff, name] = largest_difference(one, three, skip);
    INFO("largest difference " << diff << " in " << name);
    CHECK(diff <= 1e-5);
  }
  // Dropout keeps each uneven slice's part of the global mask; 640 samples in batches of 48 end in a batch of 16
  // (5, 5 and 6), over two epochs.
  const std::string dropout = "--model dense:64,relu,dropout:0.3,bn,dense:10,softmax --batch-size 48 --epochs 2 "
                              "--eval-batch-size 64";
  REQUIRE(train(0, dropout + " --save " + dir.file("one"), dir).status == 0);
  const Run three = train(3, dropout + " --json --save " + dir.file("three"), dir);
  INFO(three.err);
  REQUIRE(three.status == 0);
  CHECK(largest_difference(dir.file("one"), dir.file("three")).first <= 1e-5);
  // The test set is split across the processes (its 200 samples in batches of 64, 64, 64 and 8: one, one and two
  // batches) and their losses and outputs exchanged: the epoch's test metrics are one process's evaluation of the
  // same weights, to the last digit.
  const std::string last_epoch = three.out.substr(three.out.rfind("{\"epoch\""));
  const nlohmann::json epoch = nlohmann::json::parse(last_epoch.substr(0, last_epoch.find('\n')));
  const Run alone = shell("OMP_NUM_THREADS=1 " + std::string(MINIDL_CLI) + " evaluate --json --model " + dir.file("three"), dir);
  INFO(alone.err);
  REQUIRE(alone.status == 0);
  const nlohmann::json evaluated = nlohmann::json::parse(alone.out);
  CHECK(epoch["test_accuracy"].get<double>() == evaluated["accuracy"].get<double>());
  CHECK(epoch["test_loss"].get<double>() == evaluated["loss"].get<double>());
  // A batch-256 checkpoint of one process resumes on 3 (256 = 85 + 85 + 86).
  const std::string big = "--batch-size 256 --epochs 2";
  REQUIRE(train(0, big + " --save " + dir.file("big-straight"), dir).status == 0);
  REQUIRE(train(0, big + " --steps 2 --save " + dir.file("big-half"), dir).status == 0);
  const Run resumed = train(3, "--resume " + dir.file("big-half"), dir);
  INFO(resumed.err);
  REQUIRE(resumed.status == 0);
  CHECK(largest_difference(dir.file("big-straight"), dir.file("big-half"), "dense/bias").first <= 1e-5);
  // Fewer samples than processes cannot be split.
  const Run tiny = train(3, "--steps 5 --batch-size 2", dir);
  CHECK(tiny.status != 0);
  CHECK_THAT(tiny.err, Catch::Contains("the batch size 2 cannot give each of 3 processes a sample"));

  // 2 processes for 10 steps, then 1 process to 20: as 1 process for 20 steps, within rounding.
  const std::string resume = "--batch-size 32 --epochs 2";
  REQUIRE(train(0, resume + " --steps 20 --save " + dir.file("straight"), dir).status == 0);
  REQUIRE(train(2, resume + " --steps 10 --save " + dir.file("half"), dir).status == 0);
  const Run rest = train(0, "--resume " + dir.file("half") + " --steps 20 --save " + dir.file("half"), dir);
  INFO(rest.err);
  REQUIRE(rest.status == 0);
  CHECK(largest_difference(dir.file("straight"), dir.file("half"), "dense/bias").first <= 1e-5);
}

TEST_CASE("compare under mpirun: global and local batch statistics side by side", "[mpi]") {
  if (!can_run()) return;
  TempDir dir;
  const std::string grid = " compare --modes running,manual --batch-sizes 16,32 --steps 8 --recalibrate 0 " + data_flag();
  const Run one = shell("OMP_NUM_THREADS=1 " MINIDL_CLI + grid + " --out " + dir.file("one"), dir);
  const Run two = shell(mpirun(2) + MINIDL_CLI + grid + " --bn-sync global,local --out " + dir.file("two"), dir);
  INFO(one.err << two.err);
  REQUIRE(one.status == 0);
  REQUIRE(two.status == 0);
  CHECK_THAT(two.out, Catch::Contains("running/global") && Catch::Contains("manual/local") &&
                          Catch::Contains("data-parallel on 2 processes"));
  CHECK(std::count(two.err.begin(), two.err.end(), '\n') >= 8);  // rank 0's line per run, not one per process
  // Rows keyed by mode, bn_sync, batch size: global equals the one-process study within rounding; local does not.
  const auto rows = [](const std::string& path) {
    std::map<std::string, std::vector<std::string>> out;
    std::istringstream in(test::read_bytes(path));
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
      std::vector<std::string> cells;
      std::istringstream fields(line);
      for (std::string cell; std::getline(fields, cell, ',');) cells.push_back(cell);
      out[cells[0] + "/" + cells[1] + "/" + cells[2]] = cells;  // the last epoch's row wins
    }
    return out;
  };
  const auto a = rows(dir.file("one/compare.csv")), b = rows(dir.file("two/compare.csv"));
  REQUIRE(a.size() == 4);
  REQUIRE(b.size() == 8);
  const size_t loss = 7;  // mode, bn_sync, batch_size, seed, epoch, steps, seconds, train_loss
  for (const std::string mode : {"running", "manual"})
    for (const std::string batch : {"16", "32"}) {
      const std::string global = mode + "/global/" + batch, local = mode + "/local/" + batch;
      INFO(global);
      REQUIRE(b.count(global));
      REQUIRE(b.count(local));
      CHECK(std::abs(std::stod(b.at(global)[loss]) - std::stod(a.at(global)[loss])) < 1e-4);
      CHECK(std::abs(std::stod(b.at(local)[loss]) - std::stod(a.at(global)[loss])) > 1e-4);
    }
  // Under mpirun the processes share each run: more runs at once is refused.
  const Run jobs = shell(mpirun(2) + MINIDL_CLI + grid + " --jobs 2", dir);
  CHECK(jobs.status != 0);
  CHECK_THAT(jobs.err, Catch::Contains("--jobs 2: under mpirun the 2 processes train each run together"));
}

TEST_CASE("bench --ranks: one process against two under mpirun, taking turns", "[mpi]") {
  if (!can_run()) return;
  TempDir dir;
  // bench starts mpirun itself; as root, mpirun needs the two variables in its environment.
  const std::string env = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ASAN_OPTIONS=detect_leaks=0 ";
  const std::string bench = env + MINIDL_CLI + " bench " + data_flag();
  const Run r = shell(bench + " --ranks 2 --batch-sizes 32 --epochs 2 --repeats 1", dir);
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  // "32 1 <one> <two> <ratio>x", then "32 median ..." with the same numbers (one repeat).
  std::istringstream lines(r.out);
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream cells(line);
    std::vector<std::string> row;
    for (std::string cell; cells >> cell;) row.push_back(cell);
    if (row.size() >= 5 && row[0] == "32") rows.push_back(row);
  }
  REQUIRE(rows.size() == 2);
  CHECK(rows[0][1] == "1");
  CHECK(rows[1][1] == "median");
  for (const auto& row : rows) {
    const double one = std::stod(row[2]), two = std::stod(row[3]), ratio = std::stod(row[4]);
    CHECK(one > 0);
    CHECK(two > 0);
    // The times are printed with 4 decimals and the ratio (of the unrounded times) with 2: on the synthetic set an
    // epoch takes milliseconds, so the times' rounding weighs more than the ratio's.
    const double rounding = one / two * (0.00005 / one + 0.00005 / two) + 0.005;
    CHECK(std::abs(ratio - one / two) <= rounding + 1e-9);
  }
  CHECK_THAT(r.out, Catch::Contains("1 process s/epoch") && Catch::Contains("2 processes s/epoch"));
  // What cannot work is refused before anything runs, naming the flag.
  const auto error_of = [&](const std::string& args) {
    const Run e = shell(bench + " " + args, dir);
    CHECK(e.status == 1);
    return e.err;
  };
  CHECK_THAT(error_of("--ranks 1"), Catch::Contains("--ranks") && Catch::Contains("N >= 2"));
  CHECK_THAT(error_of("--ranks 2 --batch-sizes 33"), Catch::Contains("does not split evenly over 2 processes"));
  CHECK_THAT(error_of("--ranks 2 --epochs 1"), Catch::Contains("--epochs: at least 2"));
  CHECK_THAT(error_of("--ranks 2 --phases"), Catch::Contains("--phases times the thread table"));
  CHECK_THAT(error_of("--repeats 3"), Catch::Contains("--repeats applies only with --ranks"));
  // A run that fails is named with its command and its own error.
  const Run missing = shell(env + MINIDL_CLI + " bench --ranks 2 --batch-sizes 32 --epochs 2 --repeats 1 --data " +
                                dir.file("nowhere"), dir);
  CHECK(missing.status == 1);
  CHECK_THAT(missing.err, Catch::Contains("this run failed") && Catch::Contains("train --epochs 2") &&
                              Catch::Contains("nowhere"));
  if (geteuid() == 0) {  // without the variables, mpirun would refuse to start: bench says so first
    const Run root = shell("env -u OMPI_ALLOW_RUN_AS_ROOT " MINIDL_CLI " bench --ranks 2 " + data_flag(), dir);
    CHECK(root.status == 1);
    CHECK_THAT(root.err, Catch::Contains("OMPI_ALLOW_RUN_AS_ROOT=1"));
  }
}

TEST_CASE("a process that fails or is killed ends the job, naming it, and leaves the last checkpoint whole", "[mpi]") {
  if (!can_run()) return;
  TempDir dir;
  // Rank 1's data is missing (mpirun's MPMD form gives each process its own command line).
  const std::string cli = MINIDL_CLI;
  const Run missing = shell(mpirun(1) + cli + " train --steps 5 " + data_flag() + " : -np 1 -x OMP_NUM_THREADS=1 " + cli +
                                " train --steps 5 --data " + dir.file("nowhere"),
                            dir);
  CHECK(missing.status != 0);
  CHECK_THAT(missing.err, Catch::Contains("rank 1 of 2") && Catch::Contains(dir.file("nowhere")));

  // kill -9 on rank 1 mid-run: the job ends, non-zero, within 30 s; the checkpoint of the last epoch loads.
  const std::string save = dir.file("killed.safetensors");
  const std::string command = mpirun(2) + cli + " train --epochs 400 --batch-size 32 --save " + save + " " + data_flag() +
                              " >" + dir.file("kout") + " 2>" + dir.file("kerr");
  const pid_t launcher = fork();
  if (launcher == 0) {
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait for the first checkpoint, then find rank 1 by its environment and kill it.
  const auto start = std::chrono::steady_clock::now();
  while (!std::filesystem::exists(save) && std::chrono::steady_clock::now() - start < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  REQUIRE(std::filesystem::exists(save));
  pid_t victim = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::ifstream environ(entry.path() / "environ", std::ios::binary), cmdline(entry.path() / "cmdline", std::ios::binary);
    const std::string env{std::istreambuf_iterator<char>(environ), {}}, cmd{std::istreambuf_iterator<char>(cmdline), {}};
    if (cmd.find(save) != std::string::npos && cmd.find("mpirun") == std::string::npos &&
        env.find(std::string("OMPI_COMM_WORLD_RANK=1") + '\0') != std::string::npos)
      victim = static_cast<pid_t>(std::stol(entry.path().filename().string()));
  }
  REQUIRE(victim > 0);
  const auto killed_at = std::chrono::steady_clock::now();
  ::kill(victim, SIGKILL);
  // The job must end by itself: the test stops waiting for it (and kills it) only after 40 s, so that a hang
  // fails the test instead of hanging it.
  int status = 0;
  bool ended = false;
  while (!(ended = waitpid(launcher, &status, WNOHANG) != 0) && std::chrono::steady_clock::now() - killed_at < std::chrono::seconds(40))
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (!ended) ::kill(launcher, SIGKILL), waitpid(launcher, &status, 0);
  INFO(test::read_bytes(dir.file("kerr")));
  CHECK(ended);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) != 0));
  CHECK_THAT(test::read_bytes(dir.file("kerr")), Catch::Contains("rank 1"));
  CHECK(load_safetensors(save).tensors.size() > 0);
  for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
    CHECK(entry.path().filename().string().find(".tmp") == std::string::npos);  // no partial checkpoint
}

TEST_CASE("processes started differently are refused before the first step, naming the rank and the setting", "[mpi]") {
  if (!can_run()) return;
  TempDir dir;
  // Other data of the same size and shape: the contents differ.
  const DatasetSplits other = make_synthetic(640, 200, 99);
  save_mnist_split(dir.path(), "train", other.train, true);
  save_mnist_split(dir.path(), "t10k", other.test, true);
  const std::string cli = MINIDL_CLI, common = " train --epochs 1 --steps 5 ";
  const std::vector<std::pair<std::string, std::string>> cases{
      {"--epochs 2 " + data_flag(), "rank 1 has trainer.epochs (--epochs) = 2 where rank 0 has 1"},
      {"--hidden 128 " + data_flag(), "rank 1 has model.description (--model) = dense:128,relu,bn,dense:10,softmax"},
      {"--no-shuffle " + data_flag(), "rank 1 has loader.shuffle (--no-shuffle) = 0 where rank 0 has 1"},
      {"--steps 7 " + data_flag(), "rank 1 has --steps = 7 where rank 0 has 5"},
      {"--data " + dir.path(), "rank 1 has the test data's contents = hash"}};
  for (const auto& [second, message] : cases) {
    const Run r = shell(mpirun(1) + cli + common + data_flag() + " : -np 1 -x OMP_NUM_THREADS=1 " + cli + common + second, dir);
    INFO(second << "\n" << r.err);
    CHECK(r.status != 0);
    CHECK_THAT(r.err, Catch::Contains("the 2 processes were started differently: " + message));
    CHECK(r.out.find("epoch 1/") == std::string::npos);
    // Said once, by rank 0.
    CHECK(r.err.find("started differently") == r.err.rfind("started differently"));
  }
}
