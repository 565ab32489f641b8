// Tests of what a hostile but realistic user finds: crafted files that claim more than they hold, saving onto
// devices, links and read-only places, NaN that must not hide, signals and kill -9 during training, and
// settings that must fail before the first step rather than after an epoch.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <thread>

#include <zlib.h>

#include "cli_helpers.h"
#include "minidl/atomic_file.h"
#include "minidl/checkpoint.h"
#include "minidl/data.h"
#include "minidl/models.h"
#include "minidl/ops.h"
#include "minidl/train.h"

using namespace minidl;
using minidl::test::data_flag;
using minidl::test::minidl_cli;
using minidl::test::read_bytes;
using minidl::test::Run;
using minidl::test::TempDir;
using minidl::test::write_bytes;

namespace {
double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

std::string u64le(uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }

std::string safetensors_bytes(const std::string& header, const std::string& data) {
  return u64le(header.size()) + header + data;
}

// Starts `minidl <args>` as a child process (its own pid, not a shell's), output to files in dir.
pid_t spawn_cli(const std::string& args, const TempDir& dir) {
  const std::string command = "exec " + std::string(MINIDL_CLI) + " " + args + " >" + dir.file("stdout") + " 2>" +
                              dir.file("stderr") + " </dev/null";
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

int64_t saved_step(const std::string& path) { return std::stoll(load_safetensors(path).metadata.at("trainer.step")); }

bool any_temporary_beside(const std::string& path) {
  const std::filesystem::path p(path);
  for (const auto& entry : std::filesystem::directory_iterator(p.parent_path()))
    if (entry.path().filename().string().rfind(p.filename().string() + ".tmp.", 0) == 0) return true;
  return false;
}
}  // namespace

TEST_CASE("a safetensors file that claims more than it holds is refused before any tensor is allocated", "[hardening]") {
  TempDir dir;
  // 1000 entries of 1 MiB each, all pointing at the same block of a ~1 MiB file: refused on the header alone.
  std::string header = "{";
  for (int i = 0; i < 1000; ++i)
    header += (i ? "," : "") + std::string("\"t") + std::to_string(i) + R"(":{"dtype":"F32","shape":[262144],"data_offsets":[0,1048576]})";
  header += "}";
  write_bytes(dir.file("overlap"), safetensors_bytes(header, std::string(1 << 20, '\0')));
  const double before = peak_rss_mb();
  CHECK_THROWS_WITH(load_safetensors(dir.file("overlap")), Catch::Contains("tensor data overlaps"));
  CHECK(peak_rss_mb() - before < 100.0);  // the 1 GiB the entries claim was never allocated
  // A shape whose element count wraps around 2^64 to 0 is refused; so is one whose bytes overflow.
  for (const char* shape : {"[4,4611686018427387904]", "[4611686018427387904,4]", "[2,2,4611686018427387904]"}) {
    INFO(shape);
    write_bytes(dir.file("wrap"),
                safetensors_bytes(std::string(R"({"w":{"dtype":"F32","shape":)") + shape + R"(,"data_offsets":[0,0]}})", ""));
    CHECK_THROWS_WITH(load_safetensors(dir.file("wrap")), Catch::Contains("larger than the file's data"));
  }
  // An empty tensor is fine, whatever its other sizes.
  write_bytes(dir.file("empty"), safetensors_bytes(R"({"w":{"dtype":"F32","shape":[0,7],"data_offsets":[0,0]}})", ""));
  CHECK(load_safetensors(dir.file("empty")).tensors.at("w").shape() == Shape{0, 7});
}

TEST_CASE("an IDX header that claims more than the file holds is refused before the memory is taken", "[hardening]") {
  TempDir dir;
  // 116 bytes claiming 65536 x 256 x 256 (4 GiB) bytes of payload, raw and gzipped (33 bytes).
  const std::string crafted = std::string("\x00\x00\x08\x03", 4) + std::string("\x00\x01\x00\x00", 4) +
                              std::string("\x00\x00\x01\x00", 4) + std::string("\x00\x00\x01\x00", 4) +
                              std::string(100, '\x07');
  write_bytes(dir.file("raw"), crafted);
  gzFile gz = gzopen(dir.file("crafted.gz").c_str(), "wb9");
  REQUIRE(gz != nullptr);
  REQUIRE(gzwrite(gz, crafted.data(), static_cast<unsigned>(crafted.size())) == static_cast<int>(crafted.size()));
  REQUIRE(gzclose(gz) == Z_OK);
  const double before = peak_rss_mb();
  CHECK_THROWS_WITH(read_idx(dir.file("raw"), 3),
                    Catch::Contains("payload is shorter than the header says: expected 4294967296 bytes, found 100"));
  CHECK_THROWS_WITH(read_idx(dir.file("crafted.gz"), 3),
                    Catch::Contains("payload is shorter than the header says: expected 4294967296 bytes, found 100"));
  CHECK(peak_rss_mb() - before < 100.0);  // at most the first 16 MiB piece, never the 4 GiB claimed
  // Dimensions whose product overflows a 64-bit integer: refused, not wrapped around.
  write_bytes(dir.file("overflow"), std::string("\x00\x00\x08\x03", 4) + std::string("\xc0\x00\x00\x00", 4) +
                                        std::string("\xff\xff\xff\xf8", 4) + std::string("\x80\x00\x00\x00", 4));
  CHECK_THROWS_WITH(read_idx(dir.file("overflow"), 3), Catch::Contains("header claims more than 4294967296 bytes of payload"));
}

TEST_CASE("a checkpoint whose model description is larger than its weights is refused before it is built", "[hardening][cli]") {
  TempDir dir;
  ModelConfig small;
  small.description = "dense:4,relu,dense:10,softmax";
  save_model(dir.file("small"), *build_model(small), small);
  // The same weights, with a description that would need 784 x 2^24 floats (52 GB) to build.
  Checkpoint crafted = load_safetensors(dir.file("small"));
  crafted.metadata["model.description"] = "dense:16777216,relu,dense:10,softmax";
  save_safetensors(dir.file("crafted"), NamedTensors(crafted.tensors.begin(), crafted.tensors.end()), crafted.metadata);
  const double before = peak_rss_mb();
  CHECK_THROWS_WITH(load_model(dir.file("crafted")),
                    Catch::Contains("checkpoint '" + dir.file("crafted") + "'") &&
                        Catch::Contains("needs more weights than the 3190 floats the file holds"));
  // A minidl 0.1 checkpoint claiming a hidden width of 2^24: the same.
  Checkpoint old;
  old.tensors = crafted.tensors;
  old.metadata = {{"format", "minidl-checkpoint-1"}, {"mode", "running"}, {"hidden", "16777216"}, {"momentum", "0.99"},
                  {"epsilon", "0.001"}, {"seed", "1"}, {"learning_rate", "0.001"}};
  save_safetensors(dir.file("old"), NamedTensors(old.tensors.begin(), old.tensors.end()), old.metadata);
  CHECK_THROWS_WITH(load_model(dir.file("old")), Catch::Contains("needs more weights than"));
  CHECK(peak_rss_mb() - before < 100.0);
  CHECK(load_model(dir.file("small")).model->state().size() == 4);  // an honest checkpoint still loads
  // `train --resume` refuses such a training checkpoint too, before loading any data.
  REQUIRE(minidl_cli("train --model dense:4,relu,dense:10,softmax --steps 1 --save " + dir.file("run") + " " + data_flag(), dir)
              .status == 0);
  Checkpoint run = load_safetensors(dir.file("run"));
  run.metadata["model.description"] = "dense:16777216,relu,dense:10,softmax";
  save_safetensors(dir.file("run"), NamedTensors(run.tensors.begin(), run.tensors.end()), run.metadata);
  const Run resumed = minidl_cli("train --resume " + dir.file("run"), dir);
  CHECK(resumed.status != 0);
  CHECK_THAT(resumed.err, Catch::Contains("needs more weights than"));
}

TEST_CASE("saving writes through links, keeps permissions, refuses devices and cleans up after killed runs", "[hardening]") {
  TempDir dir;
  const auto save = [](const std::string& path, const std::string& text) { write_text_atomically(path, text); };
  // A device is never replaced by a regular file (as root, /dev/full used to be).
  CHECK_THROWS_WITH(save("/dev/full", "x"), Catch::Contains("'/dev/full' is a character device: refusing to replace it"));
  struct stat info {};
  REQUIRE(::stat("/dev/full", &info) == 0);
  CHECK(S_ISCHR(info.st_mode));
  CHECK_THROWS_WITH(save(dir.path(), "x"), Catch::Contains("is a directory"));
  // A symbolic link: the file it points to is replaced, the link stays a link.
  save(dir.file("real"), "old");
  std::filesystem::create_symlink("real", dir.file("link"));
  save(dir.file("link"), "new");
  CHECK(std::filesystem::is_symlink(dir.file("link")));
  CHECK(read_bytes(dir.file("real")) == "new");
  // The permission bits of the file replaced are kept.
  REQUIRE(::chmod(dir.file("real").c_str(), 0600) == 0);
  save(dir.file("real"), "newer");
  REQUIRE(::stat(dir.file("real").c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0600);
  // minidl's temporaries that no process holds are removed by the next save; one a live process holds (in any
  // PID namespace: the lock is the kernel's) is kept, and so is every file minidl did not name, whatever number
  // it ends in.
  const std::string stale = dir.file("real.tmp.minidl.00000000deadbeef");
  const std::string live = dir.file("real.tmp.minidl.0123456789abcdef");
  const std::string users = dir.file("real.tmp.20241201"), old_style = dir.file("real.tmp.1");
  for (const std::string& file : {stale, live, users, old_style}) write_bytes(file, "partial");
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t holder = fork();
  if (holder == 0) {  // holds the lock on `live` until killed
    const int fd = ::open(live.c_str(), O_RDONLY);
    if (fd < 0 || ::flock(fd, LOCK_EX) != 0) _exit(1);
    (void)!::write(ready[1], "x", 1);
    ::pause();
    _exit(0);
  }
  char byte;
  REQUIRE(::read(ready[0], &byte, 1) == 1);
  save(dir.file("real"), "again");
  CHECK_FALSE(std::filesystem::exists(stale));
  CHECK(std::filesystem::exists(live));
  CHECK(std::filesystem::exists(users));
  CHECK(std::filesystem::exists(old_style));
  ::kill(holder, SIGKILL);
  waitpid(holder, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  save(dir.file("real"), "once more");  // its holder gone, the temporary is stale
  CHECK_FALSE(std::filesystem::exists(live));
  CHECK(read_bytes(dir.file("real")) == "once more");
  // What can be checked before a run starts.
  CHECK_NOTHROW(check_writable(dir.file("fresh"), "--save"));
  CHECK_FALSE(std::filesystem::exists(dir.file("fresh")));
  CHECK_THROWS_WITH(check_writable(dir.file("missing/model.safetensors"), "--save"),
                    Catch::Contains("--save '" + dir.file("missing/model.safetensors") + "': the directory '" +
                                    dir.file("missing") + "' does not exist"));
  CHECK_THROWS_WITH(check_writable("/dev/null", "--log"), Catch::Contains("--log '/dev/null' is a character device"));
  // A name the temporary beside it cannot have: said before the run, not "cannot create files in" after an epoch.
  CHECK_THROWS_WITH(check_writable(dir.file(std::string(250, 'm')), "--save"),
                    Catch::Contains("the file name is 250 bytes long") && Catch::Contains("use a name of at most 227 bytes"));
  // A file made read-only is not replaced (as root too), before the run and when saving.
  write_bytes(dir.file("kept"), "read-only");
  REQUIRE(::chmod(dir.file("kept").c_str(), 0444) == 0);
  CHECK_THROWS_WITH(check_writable(dir.file("kept"), "--save"), Catch::Contains("--save '" + dir.file("kept") + "' is read-only (mode 0444)"));
  CHECK_THROWS_WITH(save(dir.file("kept"), "x"), Catch::Contains("is read-only (mode 0444)"));
  CHECK(read_bytes(dir.file("kept")) == "read-only");
}

TEST_CASE("NaN cannot hide: relu propagates it, training stops at the first non-finite loss and names it", "[hardening]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Tensor r = relu(Tensor::from({4}, {nan, -1.0f, 2.0f, -std::numeric_limits<float>::infinity()}));
  CHECK(std::isnan(r.data()[0]));
  CHECK(r.data()[1] == 0.0f);
  CHECK(r.data()[3] == 0.0f);

  // A Trainer stops before applying the step whose loss is not finite, and says where the NaN comes from.
  const DatasetSplits data = make_synthetic(128, 32, 5);
  ModelConfig config;
  config.input_shape = data.train.sample;
  const auto model = build_model(config);
  model->state()[0].second.data()[3] = nan;  // dense/kernel
  Adam adam(model->parameters());
  DataLoader loader(data.train, {.batch_size = 32}, true);
  Trainer trainer(*model, adam, loader, {.epochs = 1});
  try {
    trainer.fit();
    FAIL("a NaN loss was trained on");
  } catch (const NonFiniteLoss& e) {
    CHECK(e.step() == 1);
    CHECK_THAT(e.what(), Catch::Contains("step 1 (epoch 1): the loss is") &&
                             Catch::Contains("the model's weight 'dense/kernel' holds nan (element 3 of 50176)"));
  }
  CHECK(trainer.steps_done() == 0);
  CHECK(first_non_finite(model->state()) == "'dense/kernel' holds nan (element 3 of 50176)");
  // keep_going trains on regardless.
  trainer.options().on_non_finite = OnNonFinite::keep_going;
  CHECK(std::isnan(trainer.fit().back().loss));
}

TEST_CASE("the command line stops at a diverging step with status 3 and keeps the last checkpoint", "[hardening][cli]") {
  TempDir dir;
  REQUIRE(minidl_cli("train --epochs 1 --save " + dir.file("m") + " " + data_flag(), dir).status == 0);
  const std::string good = read_bytes(dir.file("m"));
  const Run diverged = minidl_cli("train --lr 1e38 --epochs 2 --overwrite --save " + dir.file("m") + " " + data_flag(), dir);
  CHECK(diverged.status == 3);
  CHECK_THAT(diverged.err, Catch::Contains("step 2 (epoch 1): the loss is") &&
                               Catch::Contains("the output of layer 'dense' (Dense), whose input is finite") &&
                               Catch::Contains("nothing was saved to " + dir.file("m")) &&
                               Catch::Contains("try a smaller --lr (this run: 1e+38)"));
  CHECK(read_bytes(dir.file("m")) == good);  // the previous run's checkpoint is untouched
  const Run regardless = minidl_cli("train --lr 1e38 --epochs 1 --keep-going-on-nan " + data_flag(), dir);
  CHECK(regardless.status == 0);
  CHECK_THAT(regardless.out, Catch::Contains("loss nan") || Catch::Contains("loss -nan"));
  // A checkpoint holding a NaN weight is refused by every command that would use it, naming the tensor.
  Checkpoint c = load_safetensors(dir.file("m"));
  c.tensors.at("dense_1/bias").data()[2] = std::numeric_limits<float>::infinity();
  save_safetensors(dir.file("bad"), NamedTensors(c.tensors.begin(), c.tensors.end()), c.metadata);
  for (const std::string& command : std::vector<std::string>{"evaluate " + data_flag(), "predict --first 1 " + data_flag(),
                                                             "export --out " + dir.file("x.onnx"), "train " + data_flag()}) {
    const std::string flag = command[0] == 't' ? " --resume " : " --model ";
    const Run refused = minidl_cli(command + flag + dir.file("bad"), dir);
    INFO(command << ": " << refused.err);
    CHECK(refused.status == 1);
    CHECK_THAT(refused.err, Catch::Contains("tensor 'dense_1/bias' holds inf (element 2 of 10)"));
  }
}

TEST_CASE("settings that cannot work fail before the first step, naming the flag", "[hardening][cli]") {
  TempDir dir;
  const auto before_training = [](const Run& r) { return r.status == 1 && r.out.find("epoch") == std::string::npos; };
  const Run eval = minidl_cli("train --norm manual --eval-batch-size 199 " + data_flag(), dir);  // 200 test samples
  CHECK(before_training(eval));
  CHECK_THAT(eval.err, Catch::Contains("the validation batch size 199 gives a last batch of 1 sample"));
  const Run save = minidl_cli("train --save " + dir.file("no/such/dir/m") + " " + data_flag(), dir);
  CHECK(before_training(save));
  CHECK_THAT(save.err, Catch::Contains("--save '" + dir.file("no/such/dir/m") + "': the directory"));
  CHECK(save.err.find("loading data") == std::string::npos);  // not even the data was read
  const Run log = minidl_cli("train --log /dev/null " + data_flag(), dir);
  CHECK(before_training(log));
  CHECK_THAT(log.err, Catch::Contains("--log '/dev/null' is a character device"));
  write_bytes(dir.file("file"), "x");
  const Run out = minidl_cli("compare --epochs 1 --out " + dir.file("file") + "/results " + data_flag(), dir);
  CHECK(out.status == 1);
  CHECK(out.err.find("epoch") == std::string::npos);
  CHECK_THAT(out.err, Catch::Contains("--out '" + dir.file("file") + "/results'"));
  const Run manual = minidl_cli("compare --epochs 1 --modes running,manual --validation-split 0.0015 " + data_flag(), dir);
  CHECK(manual.status == 1);  // 1 validation sample: manual mode cannot evaluate it, said before any mode trains
  CHECK(manual.err.find("running epoch") == std::string::npos);
  // A thread count OpenMP cannot start (100000 overflowed libgomp's stack): refused before the data is read.
  const Run threads = minidl_cli("train --threads 100000 " + data_flag(), dir);
  CHECK(before_training(threads));
  CHECK_THAT(threads.err, Catch::Contains("--threads must be a whole number in [0, 4096], got 100000"));
  for (const std::string flag : {"--lr nan", "--batch-size abc", "--epochs 1e20"}) {
    const Run parse = minidl_cli("train " + flag + " " + data_flag(), dir);
    INFO(flag);
    CHECK(parse.status == 1);
    CHECK_THAT(parse.err, Catch::Contains(flag));
  }
}

TEST_CASE("SIGINT finishes the step, saves a checkpoint that resumes exactly, and exits 130", "[hardening][cli]") {
  TempDir dir;
  const std::string common = "train --epochs 100000 " + data_flag();
  const pid_t pid = spawn_cli(common + " --save " + dir.file("interrupted"), dir);
  // Wait for the first epoch's checkpoint, then interrupt.
  for (int i = 0; i < 600 && !std::filesystem::exists(dir.file("interrupted")); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  REQUIRE(::kill(pid, SIGINT) == 0);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  CHECK_THAT(read_bytes(dir.file("stderr")), Catch::Contains("to continue exactly: minidl train --resume " + dir.file("interrupted")));
  const int64_t step = saved_step(dir.file("interrupted"));
  REQUIRE(step > 20);
  // Resuming to step + 7 equals 7 + step straight steps, byte for byte.
  const std::string target = " --steps " + std::to_string(step + 7);
  REQUIRE(minidl_cli(common + target + " --save " + dir.file("straight"), dir).status == 0);
  const Run resumed = minidl_cli(common + target + " --resume " + dir.file("interrupted") + " --save " + dir.file("resumed"), dir);
  INFO(resumed.err);
  REQUIRE(resumed.status == 0);
  CHECK(read_bytes(dir.file("resumed")) == read_bytes(dir.file("straight")));
}

TEST_CASE("kill -9 at random moments leaves a loadable checkpoint, and no temporary after the next run", "[hardening][cli]") {
  TempDir dir;
  const std::string path = dir.file("m");
  Generator gen(18);
  for (int round = 0; round < 20; ++round) {
    const pid_t pid = spawn_cli("train --epochs 100000 --save " + path + " " + data_flag(), dir);
    const int ms = 150 + static_cast<int>(gen.uniform(0.0f, 400.0f));
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    REQUIRE(::kill(pid, SIGKILL) == 0);
    REQUIRE(waitpid(pid, nullptr, 0) == pid);
    if (!std::filesystem::exists(path)) continue;  // killed before its first epoch ended
    INFO("round " << round << " after " << ms << " ms");
    CHECK_NOTHROW(saved_step(path));
  }
  REQUIRE(std::filesystem::exists(path));
  REQUIRE(minidl_cli("train --steps 1 --overwrite --save " + path + " " + data_flag(), dir).status == 0);
  CHECK(saved_step(path) == 1);
  CHECK_FALSE(any_temporary_beside(path));
}

TEST_CASE("a checkpoint is not lost to a repeated command, a forgotten --save, a second run or a stream", "[hardening][cli]") {
  TempDir dir;
  const std::string c = dir.file("c.safetensors");
  const std::string command = "train --epochs 1 --steps 2 --save " + c + " " + data_flag();
  REQUIRE(minidl_cli(command, dir).status == 0);
  const std::string first = read_bytes(c);
  // The same command again (say, after Ctrl-C, without --resume) would start from step 0 over step 2.
  const Run again = minidl_cli(command, dir);
  CHECK(again.status == 1);
  CHECK_THAT(again.err, Catch::Contains("--save '" + c + "' already holds a checkpoint at step 2 of dense:64") &&
                            Catch::Contains("--resume '" + c + "'") && Catch::Contains("--overwrite"));
  CHECK(again.out.find("epoch") == std::string::npos);
  CHECK(read_bytes(c) == first);
  write_bytes(dir.file("notes.safetensors"), "my notes");
  CHECK_THAT(minidl_cli("train --steps 1 --save " + dir.file("notes.safetensors") + " " + data_flag(), dir).err,
             Catch::Contains("already holds a file that is not a minidl checkpoint"));
  CHECK(read_bytes(dir.file("notes.safetensors")) == "my notes");
  // --resume without --save saves back to the checkpoint it resumed.
  REQUIRE(minidl_cli("train --resume " + c + " --steps 4", dir).status == 0);
  CHECK(saved_step(c) == 4);
  // --overwrite replaces it.
  REQUIRE(minidl_cli("train --epochs 1 --steps 3 --overwrite --save " + c + " " + data_flag(), dir).status == 0);
  CHECK(saved_step(c) == 3);
  // A second process saving the same file, by another name, is refused at start while the first runs.
  std::filesystem::create_symlink(c, dir.file("link.safetensors"));
  const pid_t first_run = spawn_cli("train --epochs 100000 --overwrite --save " + c + " " + data_flag(), dir);
  for (int wait = 0; wait < 200 && !std::filesystem::exists(c + ".minidl-lock"); ++wait)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const Run second = minidl_cli("train --epochs 1 --overwrite --save " + dir.file("link.safetensors") + " " + data_flag(), dir);
  ::kill(first_run, SIGKILL);
  waitpid(first_run, nullptr, 0);
  CHECK(second.status == 1);
  CHECK_THAT(second.err, Catch::Contains("is being written by another minidl process (pid " + std::to_string(first_run)));
  // Killed, the first run's lock is free: the next run takes it, and removes it when it ends.
  REQUIRE(minidl_cli("train --epochs 1 --steps 1 --overwrite --save " + c + " " + data_flag(), dir).status == 0);
  CHECK_FALSE(std::filesystem::exists(c + ".minidl-lock"));
  // /dev/stdout redirected to a file (`>> out.txt`) would have that file replaced by the checkpoint.
  write_bytes(dir.file("out.txt"), "kept\n");
  const std::string stream = "exec " + std::string(MINIDL_CLI) + " train --steps 1 --overwrite --save /dev/stdout " +
                             data_flag() + " >>" + dir.file("out.txt") + " 2>" + dir.file("stderr");
  CHECK(WEXITSTATUS(std::system(stream.c_str())) == 1);
  CHECK(read_bytes(dir.file("out.txt")) == "kept\n");
  CHECK_THAT(read_bytes(dir.file("stderr")), Catch::Contains("--save '/dev/stdout' names a stream or device"));
}
