#!/usr/bin/env bash
# Installs what is missing, builds minidl and runs it. Usage: ./run.sh [command [flags]]
set -euo pipefail
cd "$(dirname "$0")"
.ci/deps
cmake -S . -B build >build.configure.log 2>&1 || { cat build.configure.log; exit 1; }
cmake --build build -j"$(nproc)" --target minidl_demo >build.log 2>&1 || { cat build.log; exit 1; }
exec build/apps/minidl_demo "$@"
