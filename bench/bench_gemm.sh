#!/usr/bin/env bash
# bench/bench_gemm.sh [-q|--quick]: single-threaded SGEMM GFLOP/s (best of 3 rounds
# x 3 runs, thread CPU time, so time the thread spent descheduled on a shared
# machine does not count) of mmp_sgemm at each instruction-set level (lib/nn/gemm.h), with B
# pre-packed (conv2d's weights), OpenBLAS with its default kernels and with
# OPENBLAS_CORETYPE=SkylakeX, and oneDNN dnnl_sgemm: the OpenBLAS and oneDNN
# columns only when those libraries are installed (scripts/setup.sh --bench);
# libmmp itself links neither. Prints the CPU, the features and the level
# chosen, the load average before and after, then a markdown table.
# (env: BUILD)
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
q=; case "${1:-}" in -q|--quick) q=-q ;; esac
make -s -j2 "$BUILD/libmmp.a" BUILD="$BUILD"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
defs=() libs=()
if pkg-config --exists openblas 2>/dev/null; then defs+=(-DHAVE_OPENBLAS $(pkg-config --cflags openblas)); libs+=($(pkg-config --libs openblas)); fi
if [ -f /usr/include/oneapi/dnnl/dnnl.h ]; then defs+=(-DHAVE_DNNL); libs+=(-ldnnl); fi
cc -std=c11 -D_GNU_SOURCE -O2 -march=x86-64-v3 -Ilib "${defs[@]}" bench/bench_gemm.c "$BUILD/libmmp.a" \
   -o "$tmp/bench_gemm" $(make -s ldlibs) "${libs[@]}"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: *//'), $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$tmp/bench_gemm" $q > "$tmp/a.tsv"
grep '^#' "$tmp/a.tsv"
have_ob=0; grep -q '^# OpenBLAS' "$tmp/a.tsv" && have_ob=1
if [ $have_ob = 1 ]; then
  OPENBLAS_CORETYPE=SkylakeX "$tmp/bench_gemm" $q -c openblas > "$tmp/b.tsv"
  grep '^# OpenBLAS' "$tmp/b.tsv" | sed 's/^# OpenBLAS/# OpenBLAS with OPENBLAS_CORETYPE=SkylakeX/'
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
# one markdown table: the first run's columns, then the SkylakeX column after "openblas"
awk -F'\t' -v ob=$have_ob -v bf="$tmp/b.tsv" '
  BEGIN { if (ob) while ((getline l < bf) > 0) if (l !~ /^#/) { split(l, f, "\t"); sk[++nb] = f[6] } }
  /^#/ { next }
  { n++; line = "| " $1 $2 " | " $3 " | " $4 " | " $5
    for (i = 6; i < NF; i++) { v = $i; if (n == 1 && v == "openblas") v = "openblas (default)"
      if (n == 1 && v == "packed") v = "mmp packed B"
      if (n == 1 && (v == "avx512" || v == "avx2")) v = "mmp " v
      line = line " | " v; if (ob && $i != "" && i == oc) line = line " | " (n == 1 ? "openblas SkylakeX" : sk[n]) }
    if (n == 1) for (i = 6; i < NF; i++) if ($i == "openblas") { oc = i; line = "| op | M | N | K"; for (j = 6; j < NF; j++) {
      v = $j; if (v == "openblas") v = "openblas (default)"; if (v == "packed") v = "mmp packed B"; if (v == "avx512" || v == "avx2") v = "mmp " v
      line = line " | " v; if (j == oc) line = line " | openblas SkylakeX" } }
    if (n == 1 && !oc) { line = "| op | M | N | K"; for (j = 6; j < NF; j++) { v = $j; if (v == "packed") v = "mmp packed B"; if (v == "avx512" || v == "avx2") v = "mmp " v; line = line " | " v } }
    print line " | " $NF " |"
    if (n == 1) { sep = "| --- | --- | --- | ---"; for (j = 6; j <= NF; j++) sep = sep " | ---"; if (oc) sep = sep " | ---"; print sep " |" } }
' "$tmp/a.tsv"
echo
echo "GFLOP/s = 2MNK / thread CPU time, 1 thread, best of 3 rounds over all shapes x 3 runs (1 round with -q);"
echo "op = transposition of A and B (row-major, cblas meaning); mmp packed B: B packed beforehand (conv2d's weights)."
