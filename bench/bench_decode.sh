#!/usr/bin/env bash
# Decode / augment throughput: mmp-decode vs tjbench (libjpeg-turbo's own
# decompression benchmark, the limit) vs torchvision ImageFolder + DataLoader
# (Pillow), measured in the same run on the same files. Prints a markdown table.
# Single-core rows are pinned with taskset to CPU 0 (every process of the row).
# usage: bench/bench_decode.sh [--quick]     (BUILD, MMP_SHARED, MMP_PYTHON honoured)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=${BUILD:-build}; case "$B" in /*) ;; *) B="$ROOT/$B" ;; esac
SH=${MMP_SHARED:-$ROOT/../shared}
PY=${MMP_PYTHON:-/usr/bin/python3}
QUICK=0; [ "${1:-}" = "--quick" ] && QUICK=1
N500=$([ $QUICK = 1 ] && echo 100 || echo 200)
NHD=$([ $QUICK = 1 ] && echo 20 || echo 40)
TJN=$([ $QUICK = 1 ] && echo 4 || echo 6)
if [ ! -f "$SH/datasets/cifar10/test.tar" ]; then echo "bench_decode: no shared data ($SH), skipped"; exit 0; fi
if ! "$PY" -c 'import torchvision, PIL' 2>/dev/null; then echo "bench_decode: $PY lacks torchvision/PIL, skipped"; exit 0; fi
command -v tjbench >/dev/null || { echo "bench_decode: no tjbench (apt install libjpeg-turbo-progs), skipped"; exit 0; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
PIN="taskset -c 0"; command -v taskset >/dev/null || PIN=""

mkdir -p "$T/cifar"; tar xf "$SH/datasets/cifar10/test.tar" -C "$T/cifar"
"$PY" bench/bench_decode_gen.py "$SH/models/samples" "$T/m500" 500 375 "$N500"
"$PY" bench/bench_decode_gen.py "$SH/models/samples" "$T/hd" 1920 1080 "$NHD"
count() { find "$1" -type f -name '*.jpg' | wc -l; }

# Single-core rows are measured in CPU time (images per CPU-second = per core),
# which stays meaningful on a shared, loaded machine; multi-thread rows in wall time.
# rate N CMD...: N / (user+sys seconds of CMD and its children), best of 2
rate() {
  local n=$1; shift; local best=0
  for _ in 1 2; do
    /usr/bin/time -o "$T/time" -f "%U %S" "$@" >/dev/null 2>&1 || true
    local t; t=$(tail -n1 "$T/time")
    best=$(awk -v n="$n" -v t="$t" -v b="$best" 'BEGIN{split(t,a," "); c=a[1]+a[2]; r=(c>0)?n/c:0; print (r>b)?r:b}')
  done
  printf "%.0f" "$best"
}
# wall-clock variant for the multi-thread rows
wrate() {
  local n=$1; shift; local best=0
  for _ in 1 2; do
    /usr/bin/time -o "$T/time" -f "%e" "$@" >/dev/null 2>&1 || true
    local t; t=$(tail -n1 "$T/time")
    best=$(awk -v n="$n" -v t="$t" -v b="$best" 'BEGIN{r=(t>0)?n/t:0; print (r>b)?r:b}')
  done
  printf "%.0f" "$best"
}
# tjbench over the first K files of DIR: its fps scaled by its CPU share
# (fps * elapsed / cpu), then images/s = K / sum(1/fps_i)
tj() {
  local dir=$1; local files; files=$(find "$dir" -type f -name '*.jpg' | sort | head -n "$TJN")
  local inv=0 k=0
  for f in $files; do
    local out fps t; out=$(/usr/bin/time -o "$T/time" -f "%e %U %S" $PIN tjbench "$f" -rgb -nowrite -benchtime 0.4 -warmup 0.1 2>/dev/null)
    fps=$(awk '/Decompress.*Frame rate/ {print $(NF-1); exit}' <<<"$out")
    t=$(tail -n1 "$T/time")
    fps=$(awk -v f="$fps" -v t="$t" 'BEGIN{split(t,a," "); c=a[2]+a[3]; print (c>0)? f*a[1]/c : f}')
    inv=$(awk -v a="$inv" -v f="$fps" 'BEGIN{print a + 1/f}'); k=$((k+1))
  done
  awk -v k="$k" -v s="$inv" 'BEGIN{printf "%.0f", k/s}'
}
pil() { "$PY" bench/bench_decode_pil.py "$@"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "-" }'; }

NC=$(count "$T/cifar/test"); N5=$(count "$T/m500"); NH=$(count "$T/hd")
# in-memory library decode (the same measurement as tjbench)
cc -std=c11 -D_GNU_SOURCE -O3 -march=x86-64-v3 -I"$ROOT/lib" -o "$T/bdl" bench/bench_decode_lib.c "$B/libmmp.a" \
   $(make -s -C "$ROOT" ldlibs)
# best of 3 of a command that prints images/s itself
best3() { local b=0 v; for _ in 1 2; do v=$("$@" 2>/dev/null | tail -n1 | awk '{print $NF}'); b=$(awk -v a="$b" -v c="${v:-0}" 'BEGIN{print (c>a)?c:a}'); done; printf "%.0f" "$b"; }
# wall-clock images/s of the Python loader (first field)
best3w() { local b=0 v; for _ in 1 2; do v=$("$@" 2>/dev/null | tail -n1 | awk '{print $1}'); b=$(awk -v a="$b" -v c="${v:-0}" 'BEGIN{print (c>a)?c:a}'); done; printf "%.0f" "$b"; }
lib() { local size=$1 dir=$2; $PIN "$T/bdl" "$size" $(find "$dir" -type f -name '*.jpg' | sort | head -n 200); }
rows=()
row() { rows+=("| $1 | $2 | $3 | $4 | $5 | $6 | $7 |"); }

# ---- single core: decode at native size
for set in "CIFAR-10 test 32x32:$T/cifar/test:$NC" "500x375 photos:$T/m500:$N5" "1920x1080 photos:$T/hd:$NH"; do
  IFS=: read -r name dir n <<<"$set"
  t=$(tj "$dir"); l=$(best3 lib 0 "$dir")
  m=$(rate "$n" $PIN "$B/mmp-decode" -j 1 --level 1 "$dir" -o /dev/null)
  p=$(best3 $PIN "$PY" bench/bench_decode_pil.py "$dir" 1)
  row "$name, native size, 1 core" "$m" "$l" "$t" "$(ratio "$l" "$t")" "$p" "$(ratio "$m" "$p")"
done
m=$(rate "$NC" $PIN "$B/mmp-decode" -j 1 --level 1 "$SH/datasets/cifar10/test.tar" -o /dev/null)
row "CIFAR-10 test.tar read directly (no extraction), 1 core" "$m" "-" "-" "-" "-" "-"

# ---- single core: decode + Resize(224)+CenterCrop(224)
for set in "500x375:$T/m500:$N5" "1920x1080:$T/hd:$NH"; do
  IFS=: read -r name dir n <<<"$set"
  t=$(tj "$dir"); l=$(best3 lib 224 "$dir")
  m=$(rate "$n" $PIN "$B/mmp-decode" -j 1 --level 1 --size 224 "$dir" -o /dev/null)
  md=$(rate "$n" $PIN "$B/mmp-decode" -j 1 --level 1 --size 224 --dct-scale "$dir" -o /dev/null)
  p=$(best3 $PIN "$PY" bench/bench_decode_pil.py "$dir" 1 224)
  row "$name --size 224 (Pillow-exact), 1 core" "$m" "$l" "$t (no resize)" "$(ratio "$l" "$t")" "$p" "$(ratio "$m" "$p")"
  row "$name --size 224 --dct-scale, 1 core" "$md" "-" "-" "-" "$p" "$(ratio "$md" "$p")"
done

# ---- all cores
J=$(nproc)
m=$(wrate "$NC" "$B/mmp-decode" -j "$J" --level 1 "$T/cifar/test" -o /dev/null)
p=$(best3w "$PY" bench/bench_decode_pil.py "$T/cifar/test" "$J")
row "CIFAR-10 native, -j $J / $J DataLoader workers" "$m" "-" "-" "-" "$p" "$(ratio "$m" "$p")"
m=$(wrate "$N5" "$B/mmp-decode" -j "$J" --level 1 --size 224 "$T/m500" -o /dev/null)
p=$(best3w "$PY" bench/bench_decode_pil.py "$T/m500" "$J" 224)
row "500x375 --size 224, -j $J / $J DataLoader workers" "$m" "-" "-" "-" "$p" "$(ratio "$m" "$p")"

# ---- augment (RandomResizedCrop 224, flip, jitter, normalize)
OPS="--rrc 224 --hflip 0.5 --jitter 0.4,0.4,0.4,0.1 --normalize imagenet"
"$B/mmp-decode" -j "$J" --level 1 "$T/m500" -o "$T/m500.mmp" 2>/dev/null
m=$(rate "$N5" $PIN "$B/mmp-augment" -j 1 --level 1 $OPS "$T/m500.mmp" -o /dev/null)
row "augment only (rrc224+flip+jitter+normalize, f32 out) of decoded 500x375, 1 core" "$m" "-" "-" "-" "-" "-"
m=$(rate "$N5" $PIN bash -c "'$B/mmp-decode' -j 1 --level 1 '$T/m500' 2>/dev/null | '$B/mmp-augment' -j 1 --level 1 $OPS -o /dev/null")
p=$(best3 $PIN "$PY" bench/bench_decode_pil.py "$T/m500" 1 224 augment)
row "decode+augment 500x375 (same ops), 1 core" "$m" "-" "-" "-" "$p" "$(ratio "$m" "$p")"
# mmpipe's own recipe: augment keeps u8 pixels and mmp-embed normalizes as it
# loads them (the stream carries 1 byte a value instead of 4)
OPSU8="--rrc 224 --hflip 0.5 --jitter 0.4,0.4,0.4,0.1"
m=$(rate "$N5" $PIN bash -c "'$B/mmp-decode' -j 1 --level 1 '$T/m500' 2>/dev/null | '$B/mmp-augment' -j 1 --level 1 $OPSU8 -o /dev/null")
row "decode+augment 500x375, u8 out (normalized in mmp-embed), 1 core" "$m" "-" "-" "-" "$p" "$(ratio "$m" "$p")"

echo "## bench_decode: images/s (higher is better)"
echo
echo "machine: $(lscpu | grep 'Model name' | sed 's/Model name:[ ]*//'), $(nproc) cores"
echo "files: CIFAR-10 test ($NC JPEGs), $N5 x 500x375 and $NH x 1920x1080 JPEGs (q90, 4:2:0, from the shared sample photos)"
echo "1-core rows: images per CPU-second (user+sys; pinned to CPU 0), so a loaded machine does not skew them; multi-thread"
echo "rows: wall clock. mmp-decode = the program, files -> zstd-1 stream on /dev/null (best of 2); lib = the same decode"
echo "(+resize) in memory, one thread (bench_decode_lib.c, best of 2); tjbench = libjpeg-turbo decompression only, RGB,"
echo "in memory (fps scaled by its CPU share, harmonic mean over $TJN files); Pillow = torchvision ImageFolder +"
echo "DataLoader(batch 64, num_workers 0 on 1 core), PILToTensor (time.process_time inside Python, best of 2)."
echo
echo "| workload | mmp-decode | lib | tjbench | lib/tjbench | Pillow+torchvision | mmp-decode/Pillow |"
echo "|---|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
