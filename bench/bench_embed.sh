#!/usr/bin/env bash
# mmp-embed's CNN engine vs PyTorch (same machine, same run, same thread count).
# Forward-only img/s, batch 64, ResNet-18/ResNet-50 (random weights) and
# MobileNetV2 (the real weights) at 96 and 224 px, 1 and 2 threads; GFLOP/s
# (2 x multiply-adds of the convolutions) as a fraction of mmp_sgemm
# 1024^3 measured here with as many independent single-threaded sgemms as
# threads; max RSS of the batch-64 run. Then the acceptance bottleneck end to
# end: mmp-decode --size 96 CIFAR-10 | mmp-embed (MobileNetV2) vs Pillow +
# PyTorch on the same images.
# usage: bench/bench_embed.sh [--quick]     (env: BUILD, MMP_SHARED)
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=/usr/bin/python3
S=${MMP_SHARED:-../shared}
W=$S/models/mobilenet_v2-imagenet.safetensors
quick=0; [ "${1:-}" = "--quick" ] && quick=1
[ -f "$W" ] || { echo "bench_embed: no $W (set MMP_SHARED)"; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cc -std=c11 -D_GNU_SOURCE -O3 -march=x86-64-v3 -Ilib bench/bench_nn.c \
   "$BUILD/libmmp.a" -o "$tmp/bench_nn" $(make -s ldlibs)
$PY bench/make_weights.py "$tmp"

echo "## mmp-embed CNN engine vs PyTorch $($PY -c 'import torch; print(torch.__version__)')"
echo
echo "Machine: $(lscpu | grep 'Model name' | sed 's/Model name: *//'), $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A sg
for t in 1 2; do sg[$t]=$("$tmp/bench_nn" sgemm $t); done
echo "mmp_sgemm 1024^3: ${sg[1]} GFLOP/s (1 thread), ${sg[2]} GFLOP/s (2 threads)"
echo
echo "Kernels (MMP_ISA=${MMP_ISA:-unset}):"
echo
"$tmp/bench_nn" paths | sed 's/^/    /'
echo

configs=()
for arch in resnet18 resnet50 mobilenet_v2; do
  for size in 96 224; do
    for t in 1 2; do
      nb=2; [ $size = 224 ] && nb=1
      [ $quick = 1 ] && nb=1
      configs+=("$arch:$size:$t:$nb")
    done
  done
done
echo "| model | px | threads | mmpipe img/s | PyTorch img/s | speed-up | mmpipe effective GFLOP/s | sgemm GFLOP/s (same moment) | effective / sgemm | max RSS mmpipe / PyTorch (MB) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for c in "${configs[@]}"; do
  IFS=: read -r arch size t nb <<< "$c"
  f=$tmp/$arch.safetensors; [ $arch = mobilenet_v2 ] && f=$W
  # back to back, each in its own process (max RSS per configuration)
  # the machine may be shared: sgemm peak measured right before each row
  p=$("$tmp/bench_nn" sgemm $t)
  read -r ips gf ws rss cpu <<< "$("$tmp/bench_nn" model "$f" $size $t $nb 64 2)"
  read -r _ _ _ tips trss <<< "$($PY bench/bench_embed_torch.py "$W" "$c")"
  awk -v a=$arch -v s=$size -v t=$t -v i=$ips -v ti=$tips -v g=$gf -v p=$p -v r=$rss -v tr=$trss \
    'BEGIN { printf "| %s | %d | %d | %.1f | %.1f | %.2fx | %.0f | %.0f | %.0f%% | %.0f / %.0f |\n", a, s, t, i, ti, i/ti, g, p, 100*g/p, r, tr }'
done
echo
echo "PyTorch: eval, no_grad, torch.set_num_threads(threads), batch 64 after a warm-up batch of 8, best of 2;"
echo "mmpipe: mmp_nn_run (lib/nn) on normalized NHWC input after a warm-up batch, best of 2 timings of 1 batch"
echo "at 224 px, 2 batches at 96 px. sgemm: best of 3. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
echo "effective GFLOP/s = 2 x multiply-adds of all convolutions computed directly / whole forward time. Winograd"
echo "(ResNet 3x3 convs) does fewer multiplications and the MobileNetV2 path uses its own GEMM, so the ratio to"
echo "mmp_sgemm (lib/nn/gemm.h) can exceed 100%. Max RSS: whole process, batch 64 (input, weights, workspaces)."

# end to end on CIFAR-10 (the acceptance pipeline's bottleneck)
C=$S/datasets/cifar10/test.tar
echo
if command -v "$BUILD/mmp-decode" >/dev/null && [ -x "$BUILD/mmp-embed" ] && [ -f "$C" ]; then
  t0=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$tmp/rss" "$BUILD/mmp-decode" --size 96 "$C" \
    | /usr/bin/time -f "%M" -o "$tmp/rss2" "$BUILD/mmp-embed" --model "$W" --threads 2 > "$tmp/emb.mmp"
  t1=$(date +%s.%N)
  n=$("$BUILD/mmp-cat" --count "$tmp/emb.mmp" 2>/dev/null || echo 10000)
  pn=1000; [ $quick = 1 ] && pn=256
  pips=$($PY bench/bench_embed_cifar_torch.py "$C" "$W" 2 $pn)
  awk -v n=$n -v a=$t0 -v b=$t1 -v p=$pips -v r=$(cat "$tmp/rss2") 'BEGIN {
    ips = n / (b - a);
    print "| CIFAR-10 test.tar, MobileNetV2 @96 px, 2 threads | img/s |";
    print "| --- | --- |";
    printf "| mmp-decode --size 96 \\| mmp-embed (%d images, end to end) | %.1f (mmp-embed max RSS %.0f MB) |\n", n, ips, r/1024;
    printf "| Pillow decode+resize + PyTorch (first %d images) | %.1f |\n", '$pn', p;
    printf "| speed-up | %.2fx; 60,000 images would take %.0f s (PyTorch reference: 815 s) |\n", ips/p, 60000/ips }'
else
  echo "(CIFAR-10 end to end skipped: needs $BUILD/mmp-decode, $BUILD/mmp-embed and $C)"
fi
