// What the commands share: flag parsing with clear errors, the common flags, --threads, the benchmarks' median
// and shell quoting.
#include <omp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include <spdlog/spdlog.h>

#include <cmath>

#include "cli.h"
#include "minidl/internal/text.h"
#include "settings.h"

namespace minidl::cli {

void add_common_flags(cxxopts::Options& options) {
  add_settings(options, {"data", "test", "label", "no-header", "ignore", "validation-split", "threads", "seed"});
  options.add_options("common")(
      "h,help", "show this help");
}

namespace {
// cxxopts names a value it cannot read but not its flag ("Argument '256,128' failed to parse"): find the flag
// that value followed on the command line.
std::string flag_with_value(int argc, char** argv, const std::string& message) {
  const size_t open = message.find("\u2018"), close = message.find("\u2019");
  if (open == std::string::npos || close == std::string::npos || close < open) return {};
  const std::string value = message.substr(open + 3, close - open - 3);
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) == 0 && eq != std::string::npos && arg.substr(eq + 1) == value) return arg.substr(0, eq) + " " + value;
    if (arg.rfind("-", 0) == 0 && i + 1 < argc && value == argv[i + 1]) return arg + " " + value;
  }
  return {};
}
}  // namespace

namespace {
// The edit distance between two words (insertions, deletions, substitutions), for "did you mean".
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}
}  // namespace

std::string closest_word(const std::string& word, const std::vector<std::string>& choices) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, word.size() / 3) + 1;  // a typo, not another word
  for (const std::string& c : choices)
    if (const size_t d = edit_distance(word, c); d < best_distance) best = c, best_distance = d;
  return best;
}

namespace {
// The message for a flag the command does not have: its name, the closest flag it has, and where the list is.
std::string unknown_flag(const cxxopts::Options& options, const std::string& flag, const std::string& command) {
  std::vector<std::string> names;
  for (const std::string& group : options.groups())
    for (const cxxopts::HelpOptionDetails& o : options.group_help(group).options)
      for (const std::string& name : o.l) names.push_back(name);
  const std::string close = closest_word(flag, names);
  return "unknown flag --" + flag + (close.empty() ? "" : ": did you mean --" + close + "?") + " (" + command +
         " --help lists the flags)";
}
}  // namespace

cxxopts::ParseResult parse_flags(cxxopts::Options& options, int argc, char** argv, const std::string& example) {
  try {
    auto result = options.parse(argc, argv);
    if (result.count("help")) {
      std::printf("%s\nExample:\n  %s\n", options.help().c_str(), example.c_str());
      std::exit(0);
    }
    if (!result.unmatched().empty())
      fail("unexpected argument '", internal::excerpt(result.unmatched()[0]), "' (", options.program(), " --help lists what it takes)");
    return result;
  } catch (const cxxopts::exceptions::incorrect_argument_type& e) {
    const std::string flag = flag_with_value(argc, argv, e.what());
    fail(flag.empty() ? std::string(e.what()) : flag + ": not a valid value for this flag", " (see --help)",
         flag.rfind("--hidden ", 0) == 0 ? "; --hidden takes one width: for more layers give --model, e.g. "
                                           "dense:256,relu,bn,dense:128,relu,bn,dense:10,softmax"
                                         : "");
  } catch (const cxxopts::exceptions::no_such_option& e) {
    // "Option ‘x’ does not exist": the name between the quotes.
    const std::string message = e.what();
    const size_t open = message.find("\u2018"), close = message.find("\u2019");
    const std::string flag = open == std::string::npos || close == std::string::npos ? message : message.substr(open + 3, close - open - 3);
    fail(unknown_flag(options, flag, options.program()));
  } catch (const cxxopts::exceptions::exception& e) {
    fail(e.what(), "\n", options.help());
  } catch (const Error& e) {
    fail(e.what(), "\n", options.help());
  }
}

std::vector<NamedPath> data_files(const DataSpec& spec, const std::string& flag) {
  std::vector<NamedPath> files;
  if (spec.is_csv()) {
    files.push_back({flag, spec.train});
  } else if (!is_image_folder(spec.train)) {
    for (const char* name : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"})
      for (const char* ext : {"", ".gz"}) files.push_back({flag, spec.train + "/" + name + ext});
  }
  if (!spec.test.empty()) files.push_back({"--test", spec.test});
  return files;
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  const bool a_exists = ::stat(a.c_str(), &sa) == 0, b_exists = ::stat(b.c_str(), &sb) == 0;
  if (a_exists && b_exists) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  if (a_exists != b_exists) return false;
  std::error_code error;
  const auto resolved = [&](const std::string& p) { return std::filesystem::weakly_canonical(std::filesystem::absolute(p), error); };
  return resolved(a) == resolved(b);
}

void check_outputs(const std::vector<NamedPath>& outputs, const std::vector<NamedPath>& inputs,
                   const std::vector<std::pair<std::string, std::string>>& allowed) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    const NamedPath& out = outputs[i];
    for (const NamedPath& in : inputs)
      if (same_file(out.path, in.path) &&
          std::find(allowed.begin(), allowed.end(), std::pair{out.flag, in.flag}) == allowed.end())
        fail(out.flag, " '", out.path, "' is the file ", in.flag, " reads ('", in.path, "'): writing it would destroy the ",
             in.flag == "--data" || in.flag == "--test" ? "data" : "input", " — write ", out.flag, " to another file");
    for (size_t j = i + 1; j < outputs.size(); ++j)
      if (same_file(out.path, outputs[j].path))
        fail(out.flag, " and ", outputs[j].flag, " name the same file '", out.path, "': one would overwrite the other — "
             "give each its own file");
  }
}

bool outputs_finite(Module& model, const Tensor& x, const Tensor& y) {
  const int64_t width = y.size(1);
  for (int64_t i = 0; i < y.numel(); ++i) {
    if (std::isfinite(y.data()[i])) continue;
    const int64_t sample = i / width, features = x.numel() / x.size(0);
    const Tensor one = Tensor::from({1, features}, {x.data() + sample * features, static_cast<size_t>(features)});
    const std::string where = find_non_finite(model, one);
    spdlog::error("the model's output for sample {} is {}: {}; no result is reported", sample, y.data()[i],
                  where.empty() ? "every layer's output is finite until the last, which overflowed"
                                : "the first non-finite value: " + where);
    return false;
  }
  return true;
}

void check_extension(const std::string& path, const std::string& what, const std::string& extension) {
  const std::string ext = std::filesystem::path(path).extension().string();
  if (ext.empty() || ext == extension) return;
  fail(what, " '", path, "': minidl writes ", extension == ".safetensors" ? "a safetensors checkpoint" : extension + " files",
       " there, not ", ext, ext == ".onnx" ? " — train with --save MODEL.safetensors, then `minidl export --model "
                                             "MODEL.safetensors --out " + path + "`"
                                           : " — name the file " + std::filesystem::path(path).replace_extension(extension).string());
}

void refuse_non_finite(const Checkpoint& checkpoint, const std::string& path) {
  NamedTensors tensors(checkpoint.tensors.begin(), checkpoint.tensors.end());
  const std::string found = first_non_finite(tensors);
  if (!found.empty())
    fail("checkpoint '", path, "': tensor ", found, ": the run that wrote it diverged — use an earlier checkpoint, "
         "or train again with a smaller --lr");
}

void apply_threads(const cxxopts::ParseResult& flags) {
  const int threads = setting<int>(flags, "threads");
  if (threads > 0) omp_set_num_threads(threads);
}

std::string quoted(const std::string& word) {
  std::string out = "'";
  for (const char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace minidl::cli
