#!/usr/bin/env bash
# Installs what is missing, builds minidl and runs it: by default the main job, `minidl compare` on
# Fashion-MNIST over three seeds, writing its table, CSV, JSON and figures into results/. Usage: ./run.sh [command [flags]]
set -euo pipefail
cd "$(dirname "$0")"
.ci/deps
cmake -S . -B build >build.configure.log 2>&1 || { cat build.configure.log; exit 1; }
cmake --build build -j"$(nproc)" --target minidl_cli >build.log 2>&1 || { cat build.log; exit 1; }
if [ $# -eq 0 ]; then
  set -- compare --seeds 1,2,3 --epochs 5 --recalibrate 4096 --out results
fi
exec build/apps/minidl "$@"
