// The Catch2 entry point for the test suite. `--skip-exit N` (CTest passes 77): a test that cannot run on this
// machine (test::require_or_skip) ends the process with N, which CTest reports as skipped rather than passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::string(argv[i]) == "--skip-exit" && i + 1 < argc) {
      setenv("MINIDL_SKIP_EXIT", argv[++i], 1);
      continue;
    }
    args.push_back(argv[i]);
  }
  return Catch::Session().run(static_cast<int>(args.size()), args.data());
}
