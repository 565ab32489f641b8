// Tests of the command line's settings table (apps/cli/settings.cpp): defaults written once, ranges checked with
// the flag named, and a name the table lacks failing loudly instead of falling back to a default.
#include <cxxopts.hpp>

#include "helpers.h"
#include "minidl/optim.h"
#include "minidl/train.h"
#include "settings.h"

using namespace minidl;
using namespace minidl::cli;

namespace {
cxxopts::ParseResult parse(cxxopts::Options& options, std::vector<std::string> args) {
  args.insert(args.begin(), "minidl");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return options.parse(static_cast<int>(argv.size()), argv.data());
}
}  // namespace

TEST_CASE("settings: the table's defaults are the library's, flags override them, ranges name the flag", "[settings]") {
  cxxopts::Options options("test");
  add_settings(options, {"epochs", "batch-size", "lr", "lr-schedule", "no-shuffle", "seed"});
  const auto defaults = parse(options, {});
  CHECK(setting<int>(defaults, "epochs") == 5);
  CHECK(setting<int64_t>(defaults, "batch-size") == LoaderOptions{}.batch_size);
  CHECK(setting<float>(defaults, "lr") == AdamOptions{}.learning_rate);
  CHECK(setting<std::string>(defaults, "lr-schedule") == "constant");
  CHECK(!setting<bool>(defaults, "no-shuffle"));
  // A setting this command does not define is the table's default where the code says it may be.
  CHECK(setting_or_default<int64_t>(defaults, "eval-batch-size") == TrainerOptions{}.validation_batch_size);
  const auto given = parse(options, {"--epochs", "3", "--lr", "0.01", "--no-shuffle", "--lr-schedule", "cosine"});
  CHECK(setting<int>(given, "epochs") == 3);
  CHECK(setting<float>(given, "lr") == 0.01f);
  CHECK(setting<bool>(given, "no-shuffle"));
  CHECK(setting<std::string>(given, "lr-schedule") == "cosine");
  CHECK_THROWS_WITH(setting<int>(parse(options, {"--epochs", "0"}), "epochs"),
                    "--epochs must be a whole number in [1, 1073741824], got 0");
  CHECK_THROWS_WITH(setting<float>(parse(options, {"--lr=-1"}), "lr"), "--lr must be a finite number >= 0, got -1");
  CHECK_THROWS_WITH(setting<int64_t>(parse(options, {"--batch-size", "0"}), "batch-size"), "--batch-size must be >= 1, got 0");
  CHECK_THROWS_WITH(setting<std::string>(parse(options, {"--lr-schedule", "step"}), "lr-schedule"),
                    "--lr-schedule must be constant or cosine, got 'step'");
}

TEST_CASE("settings: asking for a name the table lacks, or with the wrong type, is a loud programming error",
          "[settings]") {
  cxxopts::Options options("test");
  add_settings(options, {"epochs"});
  const auto f = parse(options, {"--epochs", "2"});
  CHECK_THROWS_WITH(setting<int>(f, "epoch"), Catch::Contains("internal error") && Catch::Contains("--epoch,"));
  CHECK_THROWS_WITH(setting<bool>(f, "epochs"), Catch::Contains("internal error"));
  // A setting the command does not define fails loudly when read as if it did.
  CHECK_THROWS_WITH(setting<int64_t>(f, "batch-size"), Catch::Contains("internal error") && Catch::Contains("does not define"));
  CHECK_THROWS_WITH(optional_setting<int64_t>(f, "hidden"), Catch::Contains("does not define"));
  cxxopts::Options model("model");
  add_settings(model, {"hidden"});
  const auto m = parse(model, {});
  CHECK_THROWS_WITH(setting<int>(m, "hidden"), Catch::Contains("has no default"));
  CHECK(!optional_setting<int64_t>(m, "hidden"));
  CHECK_THROWS_WITH(add_settings(options, {"batchsize"}), Catch::Contains("internal error"));
  // Every setting the resume check compares names the checkpoint keys it decides.
  for (const Setting& s : settings())
    if (!s.resumable) CHECK(!s.keys.empty());
}
