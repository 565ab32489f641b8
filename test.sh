#!/usr/bin/env bash
# Installs what is missing, builds minidl and runs the whole test suite with CTest.
# Usage: ./test.sh              Release build in build/
#        ./test.sh --sanitize   AddressSanitizer + UndefinedBehaviorSanitizer build in build-asan/
set -euo pipefail
cd "$(dirname "$0")"
.ci/deps
build=build
options=()
if [ "${1:-}" = "--sanitize" ]; then
  build=build-asan
  options=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DMINIDL_SANITIZE=ON)
fi
cmake -S . -B "$build" "${options[@]}" >"$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" -j"$(nproc)" --output-on-failure
