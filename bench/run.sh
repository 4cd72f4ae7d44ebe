#!/usr/bin/env bash
# Runs every benchmark (bench/bench_*.sh) and prints their markdown tables.
# Each compares mmpipe with its peer in the same run. Not a test.
set -u
cd "$(dirname "$0")/.."
export PATH="$PWD/build:$PATH" MMP_ROOT=$PWD
echo "# mmpipe benchmarks — $(date -u +%F), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
for b in bench/bench_*.sh; do
  [ -f "$b" ] || continue
  echo; echo "## $(basename "$b" .sh)"
  bash "$b" "$@" || echo "(bench $b failed with status $?)"
done
