#!/usr/bin/env bash
# Where the time goes (docs/compute.md): per-op timers for the two missed goals,
# one thread, lib/ untouched (ld --wrap shims bench/prof_wrap.c, bench/prof_sgemm.c).
#   1. bench_nn + prof_wrap.c: ResNet-50 @224 (and @96) and ResNet-18 @224, batch 64:
#      seconds, GFLOP/s and GEMM share per conv shape and per kind (Winograd F4/F2,
#      1x1 direct, im2col), pools.
#   2. mmp-train-step + prof_sgemm.c: the ResNet-18 tail of bench/bench_train_tail.sh
#      (layer3 activations [256,6,6], 512 records, 2 epochs, batch 64): seconds and
#      GFLOP/s per mmp_sgemm shape (forward NT, weight-gradient TN, data-gradient NN).
# With `perf` (Debian linux-perf) installed, each run is also sampled (-e cpu-clock,
# DWARF call graphs) and the flat profile (self time per symbol) printed.
# usage: bench/prof.sh   (env: BUILD, MMP_PYTHON; needs torch + torchvision for the weights)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
PY=${MMP_PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$PY" bench/make_weights.py "$tmp" || { echo "(prof: bench/make_weights.py needs torch + torchvision)"; exit 0; }
cc -std=c11 -D_GNU_SOURCE -O3 -g -march=x86-64-v3 -Ilib bench/bench_nn.c bench/prof_wrap.c "$BUILD/libmmp.a" \
   -o "$tmp/bench_nn_prof" $(make -s ldlibs) -Wl,--wrap=mmp_nn_ops_cpu,--wrap=mmp_sgemm_packed,--wrap=mmp_nn_cpu_gemm_seg_avx512
make -s "$BUILD/obj/bin/train-step.o"
cc -std=c11 -D_GNU_SOURCE -O3 -g -march=x86-64-v3 -Ilib "$BUILD/obj/bin/train-step.o" bench/prof_sgemm.c "$BUILD/libmmp.a" \
   -o "$tmp/train_prof" $(make -s ldlibs) -Wl,--wrap=mmp_sgemm
echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
flat() {  # flat profile of "$@" when perf runs here
  if command -v perf > /dev/null && perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -o "$tmp/p.data" "$@" > /dev/null 2>&1; then
    perf report -i "$tmp/p.data" --no-children --sort symbol --stdio -g none --percent-limit 0.5 2> /dev/null | grep -v '^#' | grep -v '^$'
  fi
}
for m in "resnet50 224" "resnet50 96" "resnet18 224"; do
  set -- $m
  echo "### $1 @$2, 1 thread, batch 64 (bench_nn model: img/s GFLOP/s workspace_MB maxrss_MB img/cpu-s)"
  "$tmp/bench_nn_prof" model "$tmp/$1.safetensors" "$2" 1 1 64 1 2>&1
  flat "$tmp/bench_nn_prof" model "$tmp/$1.safetensors" "$2" 1 1 64 1
done
"$BUILD/mmp-synth" -n 512 --seed 0 > "$tmp/s.tar" 2>/dev/null
"$BUILD/mmp-decode" --size 96 "$tmp/s.tar" > "$tmp/img.mmp" 2>/dev/null
"$BUILD/mmp-embed" --model "$tmp/resnet18.safetensors" --layer layer3:flat "$tmp/img.mmp" > "$tmp/act.mmp" 2>/dev/null
echo "### ResNet-18 tail from layer3, 1 thread"
args=(--head resnet-tail --backbone "$tmp/resnet18.safetensors" --epochs 2 --batch-size 64 --seed 0 -j 1 --out "$tmp/h.safetensors" "$tmp/act.mmp")
"$tmp/train_prof" "${args[@]}" 2>&1
flat "$BUILD/mmp-train-step" "${args[@]}"
