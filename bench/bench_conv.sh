#!/usr/bin/env bash
# bench/bench_conv.sh [REPS]: every convolution of ResNet-50 and ResNet-18, one
# by one, through mmpipe's CPU kernels and through oneDNN's convolution
# primitive (Debian libdnnl-dev, scripts/setup.sh --bench), in one run, one
# thread each, at 224 px (G = 2 images a call, the engine's micro-batch) and
# 96 px (G = 8); thread CPU time, best of REPS (default 5) interleaved calls.
# Prints the CPU, the level chosen and the load average. libmmp links no oneDNN:
# this is the measurement behind kernels/README.md's choice.
# (env: BUILD)
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -f /usr/include/oneapi/dnnl/dnnl.h ] || { echo "bench_conv: oneDNN not installed (scripts/setup.sh --bench)" >&2; exit 1; }
make -s -j2 "$BUILD/libmmp.a" BUILD="$BUILD"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cc -std=c11 -D_GNU_SOURCE -O2 -march=x86-64-v3 -Ilib bench/bench_conv.c "$BUILD/libmmp.a" -o "$tmp/bench_conv" \
   $(make -s ldlibs) -ldnnl
cores=$(nproc)
export OMP_NUM_THREADS=1
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: *//'), $cores cores; $(date -u +%Y-%m-%dT%H:%MZ); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for cfg in "resnet50 224 2" "resnet50 96 8" "resnet18 224 2" "resnet18 96 8"; do
  echo "== $cfg"
  "$tmp/bench_conv" $cfg "${1:-5}"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
