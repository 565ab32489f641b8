// `minidl train`: flags (or the checkpoint being resumed) → run → the library's Trainer, with a progress bar,
// a line per epoch (test loss and accuracy), a JSON log and checkpoints as callbacks.
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>

#include "cli.h"
#include "minidl/atomic_file.h"
#include "minidl/distributed.h"
#include "settings.h"

namespace minidl::cli {
namespace {
// One epoch as --json and --log write it: the loss, then accuracy (and the test AUC of a sigmoid output) for
// classes, or mae, and the test set's mae, rmse and r2, for float targets.
nlohmann::ordered_json epoch_record(const EpochLogs& e, int64_t step, Loss loss) {
  nlohmann::ordered_json r = {{"epoch", e.epoch}, {"steps", e.steps}, {"step", step}, {"loss", e.loss}};
  if (e.regression) {
    r["mae"] = e.mae;
    r["test_loss"] = e.val_loss;
    r["test_mae"] = e.val_mae;
    r["test_rmse"] = e.val_rmse;
    r["test_r2"] = e.val_r2;
  } else {
    r["accuracy"] = e.accuracy;
    r["test_loss"] = e.val_loss;
    r["test_accuracy"] = e.val_accuracy;
    if (loss == Loss::binary_crossentropy) r["test_auc"] = e.val_auc;
  }
  r["seconds"] = e.seconds;
  return r;
}

// What a resumed run's --log keeps of the file it continues: the lines of the epochs that ended by the step the
// checkpoint holds (a line the interrupted run wrote later is dropped, since that epoch is trained again).
// A file that is not such a log is refused rather than overwritten.
std::string resumed_log(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return {};
  std::string kept, line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      record = nullptr;
    }
    if (!record.is_object() || !record.contains("step") || !record["step"].is_number_integer())
      fail("--log '", path, "' line ", number, " is not an epoch of a minidl log, so the resumed run would lose it: ",
           "give --log another file");
    if (record["step"].get<int64_t>() <= step) kept += line + "\n";
  }
  return kept;
}

// `--save FILE` onto a file that exists and is not the checkpoint this run resumes: refused, since a run that
// starts from step 0 (say, the interrupted command repeated without --resume) would replace what the file holds.
void refuse_existing_checkpoint(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return;
  std::string holds = "a file that is not a minidl checkpoint";
  try {
    const Metadata metadata = load_safetensors(path).metadata;
    const auto step = metadata.find("trainer.step");
    const auto model = metadata.find("model.description");
    holds = "a checkpoint";
    if (step != metadata.end()) holds += " at step " + step->second;
    if (model != metadata.end()) holds += " of " + model->second;
  } catch (const Error&) {
  }
  fail("--save '", path, "' already holds ", holds, ": continue that run with --resume ", quoted(path),
       ", save this one elsewhere, or replace the file with --overwrite");
}

// Under mpirun, before the first step: every process must train the same model on the same data from the same
// step, or the sums mix different things (a silent mixture) or the collectives stop matching (a hang). Compared:
// every setting a checkpoint records, the ones it does not (--steps, --bn-sync, ...), the data's shape, size and
// contents (hashed), the initial weights (hashed) and the step. Rank 0 names the first difference and ends the job.
void agree_with_every_rank(Communicator& world, const RunConfig& config, const DatasetSplits& data, Trainer& trainer,
                           const cxxopts::ParseResult& f) {
  Metadata values = config.to_metadata();
  values.erase("data.train");  // the same files may sit at different paths on different machines: their contents
  values.erase("data.test");   // are compared instead
  values["steps"] = std::to_string(config.max_steps);
  values["bn-sync"] = config.sync_batch_norm ? "global" : "local";
  values["keep-going-on-nan"] = f["keep-going-on-nan"].as<bool>() ? "1" : "0";
  values["recalibrate"] = f.count("recalibrate") ? std::to_string(f["recalibrate"].as<int64_t>()) : "none";
  values["trainer.step"] = std::to_string(trainer.steps_done());
  const auto bytes = [](const auto& v) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(v[0]));
  };
  for (const auto& [name, set] : {std::pair{"training", &data.train}, std::pair{"test", &data.test}}) {
    values[std::string("the ") + name + " data's size"] = std::to_string(set->size()) + " samples of " + set->sample.str();
    uint64_t hash = content_hash(bytes(set->images));
    for (const auto part : {bytes(set->values), bytes(set->labels), bytes(set->targets)}) hash = content_hash(part, hash);
    values[std::string("the ") + name + " data's contents"] = "hash " + std::to_string(hash);
  }
  uint64_t weights = content_hash({});
  for (const auto& [name, t] : trainer.model().state())
    weights = content_hash({reinterpret_cast<const uint8_t*>(t.data()), static_cast<size_t>(t.numel()) * sizeof(float)}, weights);
  values["the initial weights"] = "hash " + std::to_string(weights);
  std::map<std::string, std::string> flags;  // checkpoint key -> the flag that decides it
  for (const Setting& s : settings())
    for (const std::string& key : s.keys) flags.emplace(key, "--" + s.name);  // the first that decides it
  const std::string difference = first_difference_across_ranks(world, values, [&](const std::string& key) {
    if (flags.count(key)) return key + " (" + flags.at(key) + ")";
    if (key == "trainer.step") return std::string("the step resumed from");
    return key.find(' ') != std::string::npos ? key : "--" + key;
  });
  if (difference.empty()) return;
  if (world.rank() != 0) world.await_abort();
  world.abort("the " + std::to_string(world.size()) + " processes were started differently: " + difference +
              ". Every process of one job runs the same command on the same data (mpirun -np N minidl train ...)");
}
}  // namespace

int train_command(int argc, char** argv) {
  cxxopts::Options options("minidl train", "Train a model on MNIST-format data");
  add_training_flags(options);
  options.add_options()(
      "save", "write the checkpoint (safetensors) here after every epoch and at the end (default with --resume: the "
              "checkpoint resumed)", cxxopts::value<std::string>())(
      "init", "start from the weights in this safetensors file", cxxopts::value<std::string>())(
      "resume", "continue exactly from a checkpoint written by --save (the same command line may be repeated)",
      cxxopts::value<std::string>())(
      "overwrite", "let --save replace an existing file that is not the checkpoint being resumed")(
      "log", "write one JSON object per epoch to this file (a resumed run keeps the lines of the epochs before its "
             "checkpoint)", cxxopts::value<std::string>())(
      "json", "print one JSON object per epoch on stdout")(
      "keep-going-on-nan", "go on training when a step's loss is NaN or infinite (by default training stops there, "
                           "keeps the last checkpoint and exits with status 3)")(
      "recalibrate", "after training, re-estimate the BatchNormalization moving statistics from this many training "
                     "samples (PreciseBN, as `minidl recalibrate`) before the final save",
      cxxopts::value<int64_t>())(
      "bn-sync", "under mpirun: batch statistics over the global batch (global, Keras's synchronized=True) or each "
                 "process's slice (local, PyTorch DDP's default)",
      cxxopts::value<std::string>()->default_value("global"));
  add_model_flags(options);
  add_common_flags(options);
  const auto f = parse_flags(options, argc, argv,
                             "minidl train --model dense:256,relu,bn,dense:128,relu,bn,dense:10,softmax --epochs 3 "
                             "--save model.safetensors");
  apply_threads(f);
  if (f.count("recalibrate") && f["recalibrate"].as<int64_t>() < 0)
    fail("--recalibrate must be >= 0 (0: all the training data), got ", f["recalibrate"].as<int64_t>());
  if (f.count("init") && f.count("resume")) fail("--init and --resume exclude each other: resume already has weights");
  // Output paths are checked before any data is read or any step is run: a run must not be lost to a typo, and
  // a checkpoint must not be lost to a run that forgot --resume. A resumed run saves back to its checkpoint.
  const std::string save_path = f.count("save")     ? f["save"].as<std::string>()
                                : f.count("resume") ? f["resume"].as<std::string>()
                                                    : "";
  if (!save_path.empty()) {
    check_extension(save_path, "--save", ".safetensors");
    check_writable(save_path, "--save");
  }
  if (f.count("log")) check_writable(f["log"].as<std::string>(), "--log");

  std::optional<Checkpoint> checkpoint;
  const std::string checkpoint_path = f.count("resume") ? f["resume"].as<std::string>()
                                      : f.count("init")  ? f["init"].as<std::string>()
                                                         : "";
  if (!checkpoint_path.empty()) {
    checkpoint = load_safetensors(checkpoint_path);
    refuse_non_finite(*checkpoint, checkpoint_path);
  }
  std::optional<RunConfig> resumed;
  if (f.count("resume")) {
    resumed = resumed_run_config(f, *checkpoint, checkpoint_path);
    build_model_for(resumed->model, *checkpoint, checkpoint_path);  // refuses a model larger than the file
  }
  // Under mpirun every process trains the same model on its slice of each global batch (docs/distributed.md);
  // rank 0 alone logs and writes.
  Communicator& world = Communicator::world();
  const bool leader = world.rank() == 0;
  const std::string bn_sync = f["bn-sync"].as<std::string>();
  if (bn_sync != "global" && bn_sync != "local") fail("--bn-sync must be global or local, got '", bn_sync, "'");
  if (!leader) spdlog::set_level(spdlog::level::err);
  // No output may be an input or another output (before any data is read).
  const DataSpec data_spec = resumed ? resumed->data : data_spec_from_flags(f);
  std::vector<NamedPath> outputs, inputs = data_files(data_spec);
  if (!save_path.empty()) outputs.push_back({"--save", save_path});
  if (f.count("log")) outputs.push_back({"--log", f["log"].as<std::string>()});
  for (const char* flag : {"init", "resume"})
    if (f.count(flag)) inputs.push_back({std::string("--") + flag, f[flag].as<std::string>()});
  check_outputs(outputs, inputs, {{"--save", "--resume"}});
  if (!save_path.empty() && !f["overwrite"].as<bool>() &&
      !(f.count("resume") && same_file(save_path, f["resume"].as<std::string>())))
    refuse_existing_checkpoint(save_path);
  // Only rank 0 writes; while it runs, no other process may write the same checkpoint or log.
  std::vector<std::unique_ptr<WriterLock>> locks;
  if (leader) {
    if (!save_path.empty()) locks.push_back(std::make_unique<WriterLock>(save_path, "--save"));
    if (f.count("log")) locks.push_back(std::make_unique<WriterLock>(f["log"].as<std::string>(), "--log"));
  }
  const DatasetSplits data = load_logged(data_spec);
  RunConfig config = resumed ? *resumed : run_config_from_flags(f, data.train);
  config.world = &world;
  config.sync_batch_norm = bn_sync == "global";
  if (world.size() > 1)
    spdlog::info("data parallel: {} processes, {} samples each per step (global batch {}), batch statistics {}",
                 world.size(),
                 config.batch_size % world.size() ? fmt::format("{} or {}", config.batch_size / world.size(),
                                                                config.batch_size / world.size() + 1)
                                                  : std::to_string(config.batch_size / world.size()),
                 config.batch_size,
                 config.sync_batch_norm ? "over the global batch" : "per process");
  if (!resumed) warn_if_unscaled(config.model, data.train);
  Run run(config, data);
  if (f.count("recalibrate") && !has_moving_statistics(*run.model))
    fail("--recalibrate: the model '", config.model.description, "' in norm mode ", config.model.norm,
         " keeps no moving statistics to re-estimate (only BatchNormalization in running or batchwise mode does)");
  if (resumed) run.trainer->resume(*checkpoint, checkpoint_path);
  if (f.count("init")) {
    try {
      run.model->load_state(checkpoint->tensors);
    } catch (const Error& e) {
      fail("checkpoint '", checkpoint_path, "': ", e.what());
    }
  }

  Trainer& trainer = *run.trainer;
  trainer.options().threads = setting<int>(f, "threads");  // 0: the Trainer times the counts and keeps the fastest
  if (leader) trainer.add_callback(std::make_shared<ProgressBar>());
  auto epoch_line = std::make_shared<LambdaCallback>();
  // A resumed run continues its log: the epochs before the checkpoint stay, in order.
  std::string log_text = resumed && f.count("log") ? resumed_log(f["log"].as<std::string>(), trainer.steps_done()) : "";
  epoch_line->epoch_end = [&](Trainer& t, const EpochLogs& e) {
    if (!leader) return;
    const nlohmann::ordered_json record = epoch_record(e, t.steps_done(), config.loss);
    if (f["json"].as<bool>()) {
      std::printf("%s\n", record.dump().c_str());
    } else {
      std::string metrics;  // every metric of the record, as the JSON names them
      for (const auto& [key, value] : record.items())
        if (key != "epoch" && key != "steps" && key != "step" && key != "seconds")
          metrics += fmt::format("  {} {:.4f}", key, value.is_null() ? NAN : value.get<double>());
      std::printf("epoch %d/%d%s  (%.2f s, %lld steps)\n", e.epoch, config.epochs, metrics.c_str(), e.seconds,
                  static_cast<long long>(e.steps));
    }
    std::fflush(stdout);
    if (f.count("log")) write_text_atomically(f["log"].as<std::string>(), log_text += record.dump() + "\n");
  };
  epoch_line->threads_chosen = [&, first = true](Trainer&, const ThreadChoice& c) mutable {
    if (leader) spdlog::info("{}{}", first ? "" : fmt::format("from step {}: ", c.step), c.str());
    first = false;
  };
  trainer.add_callback(epoch_line);
  std::shared_ptr<ModelCheckpoint> saver;
  if (!save_path.empty() && leader)
    trainer.add_callback(saver = std::make_shared<ModelCheckpoint>(save_path, config.to_metadata()));

  // Under mpirun a signal is mpirun's to handle: it ends every process (a stop at different steps would leave
  // the others waiting in a collective).
  const auto interrupt = std::make_shared<StopOnSignal>();
  if (world.size() == 1) trainer.add_callback(interrupt);
  if (f["keep-going-on-nan"].as<bool>()) trainer.options().on_non_finite = OnNonFinite::keep_going;

  const Augmentation& augment = config.augment;
  spdlog::info("training {} (norm {}) for {} epochs{}{}", config.model.description, config.model.norm, config.epochs,
               config.max_steps >= 0 ? ", at most " + std::to_string(config.max_steps) + " steps" : "",
               !augment.any() ? ""
                   : ", augmenting: " + (augment.pad > 0 ? "random crops after padding by " + std::to_string(augment.pad) : "") +
                         (augment.pad > 0 && augment.flip ? " and " : "") + (augment.flip ? "horizontal flips" : ""));
  if (world.size() > 1) agree_with_every_rank(world, config, data, trainer, f);
  std::vector<EpochLogs> logs;
  try {
    logs = trainer.fit();
  } catch (const NonFiniteLoss& e) {
    if (world.size() > 1) world.abort(e.what(), 3);  // the other processes would wait for this one forever
    spdlog::error("{}", e.what());
    if (saver && saver->saved_step() >= 0)
      spdlog::error("{} still holds step {}, the last checkpoint written before the loss stopped being finite",
                    saver->path(), saver->saved_step());
    else if (saver)
      spdlog::error("nothing was saved to {}: no epoch ended before the loss stopped being finite", saver->path());
    spdlog::error("try a smaller --lr (this run: {:g}), or --keep-going-on-nan to train on regardless",
                  config.learning_rate);
    return 3;
  }
  synchronize_batch_norm(*run.model, nullptr);  // what follows runs alike on every process, with no collective
  if (interrupt->signal() == 0 && f.count("recalibrate")) {
    const RecalibrationReport r =
        recalibrate_and_report(*run.model, data, f["recalibrate"].as<int64_t>(), config.model.seed, config.eval_batch_size);
    if (saver) {
      Metadata m = config.to_metadata();
      m["model.recalibrated_samples"] = std::to_string(r.recalibration.samples);
      trainer.save(saver->path(), m);
    }
  } else if (interrupt->signal() == 0 && !logs.empty()) {
    warn_if_moving_statistics_lag(*run.model, data.test, config.eval_batch_size,
                                  logs.back().regression ? logs.back().val_r2 : logs.back().val_accuracy,
                                  saver ? saver->path() : "");
  }
  if (const EarlyStopping* stop = run.early_stopping.get(); stop && stop->stopped_epoch())
    spdlog::info("{} after epoch {}: the test loss has not improved on {:.6g} for {} epoch{} (--early-stopping {}{})",
                 logs.empty() ? "the run had stopped early" : "stopped early", stop->stopped_epoch(), stop->best(),
                 config.early_stopping, config.early_stopping == 1 ? "" : "s", config.early_stopping,
                 logs.empty() ? "; resume with a larger one to train on" : "");
  if (saver) spdlog::info("saved {} (step {})", saver->path(), saver->saved_step());
  if (interrupt->signal() != 0) {
    if (saver)
      spdlog::info("interrupted at step {}; to continue exactly: minidl train --resume {} (with the epochs or steps "
                   "you want in all)", trainer.steps_done(), saver->path());
    else
      spdlog::warn("interrupted at step {}; nothing was saved (no --save)", trainer.steps_done());
    return 128 + interrupt->signal();
  }
  return 0;
}

}  // namespace minidl::cli
