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
N500=$([ $QUICK = 1 ] && echo 100 || echo 300)
NHD=$([ $QUICK = 1 ] && echo 20 || echo 60)
TJN=$([ $QUICK = 1 ] && echo 4 || echo 8)
if [ ! -f "$SH/datasets/cifar10/test.tar" ]; then echo "bench_decode: no shared data ($SH), skipped"; exit 0; fi
if ! "$PY" -c 'import torchvision, PIL' 2>/dev/null; then echo "bench_decode: $PY lacks torchvision/PIL, skipped"; exit 0; fi
command -v tjbench >/dev/null || { echo "bench_decode: no tjbench (apt install libjpeg-turbo-progs), skipped"; exit 0; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
PIN="taskset -c 0"; command -v taskset >/dev/null || PIN=""

mkdir -p "$T/cifar"; tar xf "$SH/datasets/cifar10/test.tar" -C "$T/cifar"
"$PY" bench/bench_decode_gen.py "$SH/models/samples" "$T/m500" 500 375 "$N500"
"$PY" bench/bench_decode_gen.py "$SH/models/samples" "$T/hd" 1920 1080 "$NHD"
count() { find "$1" -type f -name '*.jpg' | wc -l; }

now() { date +%s.%N; }
# rate N CMD...: runs CMD (best of 2), prints N / seconds
rate() {
  local n=$1; shift; local best=""
  for _ in 1 2; do
    local t0 t1; t0=$(now); "$@" >/dev/null 2>&1; t1=$(now)
    best=$(awk -v a="$t0" -v b="$t1" -v c="${best:-1e99}" 'BEGIN{d=b-a; print (d<c)?d:c}')
  done
  awk -v n="$n" -v d="$best" 'BEGIN{printf "%.0f", n/d}'
}
# tjbench over the first K files of DIR: images/s = K / sum(1/fps_i)
tj() {
  local dir=$1 scale=${2:-}; local files; files=$(find "$dir" -type f -name '*.jpg' | sort | head -n "$TJN")
  local inv=0 k=0
  for f in $files; do
    local fps; fps=$($PIN tjbench "$f" -rgb -nowrite -benchtime 0.3 -warmup 0.1 $scale 2>/dev/null | awk '/Decompress.*Frame rate/ {print $(NF-1)}' | head -n1)
    inv=$(awk -v a="$inv" -v f="$fps" 'BEGIN{print a + 1/f}'); k=$((k+1))
  done
  awk -v k="$k" -v s="$inv" 'BEGIN{printf "%.0f", k/s}'
}
pil() { "$PY" bench/bench_decode_pil.py "$@"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "-" }'; }

NC=$(count "$T/cifar/test"); N5=$(count "$T/m500"); NH=$(count "$T/hd")
rows=()
row() { rows+=("| $1 | $2 | $3 | $4 | $5 | $6 |"); }

# ---- single core: decode at native size
for set in "CIFAR-10 test 32x32:$T/cifar/test:$NC" "500x375 photos:$T/m500:$N5" "1920x1080 photos:$T/hd:$NH"; do
  IFS=: read -r name dir n <<<"$set"
  m=$(rate "$n" $PIN "$B/mmp-decode" -j 1 --level 1 "$dir" -o /dev/null)
  t=$(tj "$dir")
  p=$(rate "$n" $PIN "$PY" bench/bench_decode_pil.py "$dir" 1)
  row "$name, native size, 1 core" "$m" "$t" "$(ratio "$m" "$t")" "$p" "$(ratio "$m" "$p")"
done
# CIFAR from the tar itself (no extraction)
m=$(rate "$NC" $PIN "$B/mmp-decode" -j 1 --level 1 "$SH/datasets/cifar10/test.tar" -o /dev/null)
row "CIFAR-10 test.tar read directly, 1 core" "$m" "-" "-" "-" "-"

# ---- single core: decode + Resize(224)+CenterCrop(224)
for set in "500x375:$T/m500:$N5" "1920x1080:$T/hd:$NH"; do
  IFS=: read -r name dir n <<<"$set"
  m=$(rate "$n" $PIN "$B/mmp-decode" -j 1 --level 1 --size 224 "$dir" -o /dev/null)
  md=$(rate "$n" $PIN "$B/mmp-decode" -j 1 --level 1 --size 224 --dct-scale "$dir" -o /dev/null)
  t=$(tj "$dir")
  p=$(rate "$n" $PIN "$PY" bench/bench_decode_pil.py "$dir" 1 224)
  row "$name --size 224 (Pillow-exact), 1 core" "$m" "$t (decode only)" "$(ratio "$m" "$t")" "$p" "$(ratio "$m" "$p")"
  row "$name --size 224 --dct-scale, 1 core" "$md" "-" "-" "$p" "$(ratio "$md" "$p")"
done

# ---- all cores
J=$(nproc)
m=$(rate "$NC" "$B/mmp-decode" -j "$J" --level 1 "$T/cifar/test" -o /dev/null)
p=$(rate "$NC" "$PY" bench/bench_decode_pil.py "$T/cifar/test" "$J")
row "CIFAR-10 native, $J threads / $J workers" "$m" "-" "-" "$p" "$(ratio "$m" "$p")"
m=$(rate "$NH" "$B/mmp-decode" -j "$J" --level 1 --size 224 "$T/hd" -o /dev/null)
p=$(rate "$NH" "$PY" bench/bench_decode_pil.py "$T/hd" "$J" 224)
row "1920x1080 --size 224, $J threads / $J workers" "$m" "-" "-" "$p" "$(ratio "$m" "$p")"

# ---- augment (RandomResizedCrop 224, flip, jitter, normalize)
OPS="--rrc 224 --hflip 0.5 --jitter 0.4,0.4,0.4,0.1 --normalize imagenet"
"$B/mmp-decode" -j "$J" --level 1 "$T/m500" -o "$T/m500.mmp" 2>/dev/null
m=$(rate "$N5" $PIN "$B/mmp-augment" -j 1 --level 1 $OPS "$T/m500.mmp" -o /dev/null)
row "augment only (rrc224+flip+jitter+normalize) of decoded 500x375, 1 core" "$m" "-" "-" "-" "-"
m=$(rate "$N5" $PIN bash -c "'$B/mmp-decode' -j 1 --level 1 '$T/m500' 2>/dev/null | '$B/mmp-augment' -j 1 --level 1 $OPS -o /dev/null")
p=$(rate "$N5" $PIN "$PY" bench/bench_decode_pil.py "$T/m500" 1 224 augment)
row "decode+augment 500x375 (same ops), 1 core" "$m" "-" "-" "$p" "$(ratio "$m" "$p")"

echo "## bench_decode: images/s (higher is better)"
echo
echo "machine: $(lscpu | grep 'Model name' | sed 's/Model name:[ ]*//'), $(nproc) cores"
echo "files: CIFAR-10 test ($NC JPEGs), $N5 x 500x375 and $NH x 1920x1080 JPEGs (q90, 4:2:0, from the shared sample photos)"
echo "mmp-decode writes a zstd-1 stream to /dev/null; tjbench = decompression only (RGB, in memory, mean over $TJN files);"
echo "PIL = torchvision ImageFolder + DataLoader(batch 64; num_workers 0 on 1 core), PILToTensor."
echo
echo "| workload | mmp | tjbench | mmp/tjbench | Pillow+torchvision | mmp/Pillow |"
echo "|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
