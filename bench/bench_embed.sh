#!/usr/bin/env bash
# mmp-embed's CNN engine vs ONNX Runtime and PyTorch (same machine, same run, same
# thread count). Forward-only img/s, batch 64, ResNet-18/ResNet-50 (random weights from
# bench/make_weights.py) and MobileNetV2 (the real weights) at 96 and 224 px, 1 and 2
# threads; ratios mmp/ORT (goal >= 1.2x, "missed by" where not) and mmp/PyTorch;
# GFLOP/s (2 x multiply-adds of the convolutions) as a fraction of mmp_sgemm 1024^3
# measured here with as many independent single-threaded sgemms as threads; max RSS of
# the batch-64 run. Then the acceptance bottleneck end to end: mmp-decode --size 96
# CIFAR-10 | mmp-embed (MobileNetV2) vs Pillow + PyTorch on the same images.
#
# Header: CPU model, the ISA flags the kernels care about (/proc/cpuinfo and
# bench_nn cpu = lib/cpu.h's mmp_cpu_isa()/mmp_cpu_features()), the kernel set
# OpenBLAS picked for the PyTorch peer (mmpipe itself no longer uses OpenBLAS)
# and whether OPENBLAS_CORETYPE is set (Debian 12's OpenBLAS 0.3.21
# does not know Sapphire Rapids and falls back to Prescott = SSE3 kernels;
# OPENBLAS_CORETYPE=SkylakeX selects its AVX-512 ones), and the kernel path chosen
# per op (bench_nn paths = mmp_nn_cpu_paths()).
#
# Peers (each column says "(not installed)" when its module is missing; the ResNet rows
# need torch + torchvision for the weights, the ONNX files need them for the export):
#   PyTorch + torchvision: Debian's, `apt-get install python3-torch python3-torchvision`
#     (1.13.1 / 0.14.1; scripts/setup.sh --bench). Eval, no_grad, set_num_threads, batch
#     64 after a warm-up batch of 8, best of 2 (bench/bench_embed_torch.py).
#   ONNX Runtime: PyPI, `/usr/bin/python3 -m pip install --user --break-system-packages
#     onnxruntime` (root: /root/.local, which /usr/bin/python3 finds by itself; any
#     other folder: put it on PYTHONPATH). The same torchvision models with the same
#     weights exported with torch.onnx.export (opset 13, batch 64 fixed, NCHW float) into
#     the temp folder; intra_op_num_threads = threads, inter_op_num_threads = 1,
#     ORT_ENABLE_ALL, after a warm-up batch, best of 2 (bench/bench_embed_ort.py).
# usage: bench/bench_embed.sh [--quick]     (env: BUILD, MMP_SHARED, MMP_PYTHON; ARCHS
#        "resnet18 resnet50 mobilenet_v2", SIZES "96 224", THREADS "1 2" pick rows, e.g.
#        OPENBLAS_CORETYPE=SkylakeX ARCHS=resnet18 SIZES=96 THREADS=1 bench/bench_embed.sh;
#        OPENBLAS_CORETYPE and MMP_ISA are passed through to every process)
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${MMP_PYTHON:-/usr/bin/python3}
S=${MMP_SHARED:-../shared}
W=$S/models/mobilenet_v2-imagenet.safetensors
quick=0; [ "${1:-}" = "--quick" ] && quick=1
[ -f "$W" ] || { echo "bench_embed: no $W (set MMP_SHARED)"; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cc -std=c11 -D_GNU_SOURCE -O3 -march=x86-64-v3 -Ilib bench/bench_nn.c \
   "$BUILD/libmmp.a" -o "$tmp/bench_nn" $(make -s ldlibs)
torch_v=$("$PY" -c 'import torch, torchvision; print(torch.__version__, "/ torchvision", torchvision.__version__)' 2>/dev/null) || torch_v=
ort_v=$("$PY" -c 'import onnxruntime; print(onnxruntime.__version__)' 2>/dev/null) || ort_v=
want=${ARCHS:-resnet18 resnet50 mobilenet_v2}
archs=
if [ -n "$torch_v" ] && "$PY" bench/make_weights.py "$tmp"; then archs=$want
else for a in $want; do [ $a = mobilenet_v2 ] && archs=$a; done; fi

echo "## mmp-embed CNN engine vs ONNX Runtime ${ort_v:-(not installed)} and PyTorch ${torch_v:-(not installed)}"
echo
echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "CPU flags: $(for f in avx2 fma avx512f avx512bw avx512vl avx512dq avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_bf16 amx_int8; do
  grep -qw "$f" /proc/cpuinfo && printf '%s ' "$f"; done)"
"$tmp/bench_nn" cpu > "$tmp/cpu"
echo "mmpipe: ISA level $(sed -n 's/^isa //p' "$tmp/cpu") (lib/cpu.h; MMP_ISA=${MMP_ISA:-unset}), CPU features seen: $(sed -n 's/^features //p' "$tmp/cpu")"
# the PyTorch peer's BLAS (mmpipe does not use it): the kernel set OpenBLAS picks here
obl="(no libopenblas-dev)"
if pkg-config --exists openblas 2>/dev/null; then
  printf '#include <stdio.h>\nchar *openblas_get_corename(void);\nchar *openblas_get_config(void);\nint main(void) { printf("%%s (%%s)\\n", openblas_get_corename(), openblas_get_config()); return 0; }\n' > "$tmp/obl.c"
  cc "$tmp/obl.c" -o "$tmp/obl" $(pkg-config --libs openblas) 2>/dev/null && obl=$("$tmp/obl")
fi
echo "OpenBLAS (PyTorch's BLAS; mmpipe has its own GEMM): $obl; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
declare -A sg
for t in 1 2; do sg[$t]=$("$tmp/bench_nn" sgemm $t); done
echo "mmp_sgemm 1024^3: ${sg[1]} GFLOP/s (1 thread), ${sg[2]} GFLOP/s (2 threads)"
echo
echo "Kernels (MMP_ISA=${MMP_ISA:-unset}):"
echo
"$tmp/bench_nn" paths | sed 's/^/    /'
[ "$archs" != "$want" ] && echo "(ResNet rows skipped: bench/make_weights.py needs torch + torchvision)"
echo

configs=()
exports=()
for arch in $archs; do
  for size in ${SIZES:-96 224}; do
    exports+=("$arch:$size")
    for t in ${THREADS:-1 2}; do
      nb=2; [ $size = 224 ] && nb=1
      [ $quick = 1 ] && nb=1
      configs+=("$arch:$size:$t:$nb")
    done
  done
done
ort_note="(not installed)"
if [ -n "$ort_v" ]; then
  if [ -z "$torch_v" ]; then ort_note="(no torch to export the models)"
  elif "$PY" bench/bench_embed_ort.py export "$W" "$tmp" "$tmp" "${exports[@]}" > "$tmp/export.log" 2>&1; then ort_note=
  else ort_note="(export failed)"; sed 's/^/  export: /' "$tmp/export.log" | tail -3
  fi
fi
# "-" or a note where a peer did not run; fmt prints numbers with a format and notes as they are
AWK_FMT='function num(v) { return v ~ /^[0-9.]+$/ }
function f(fmt, v) { return num(v) ? sprintf(fmt, v) : v }
function ratio(a, b) { return num(a) && num(b) && b > 0 ? sprintf("%.2fx", a / b) : "-" }
function goal(a, b, g,    r) { if (!(num(a) && num(b) && b > 0)) return "-"; r = a / b;
  return r >= g ? "met" : sprintf("missed by %.2fx (mmp needs +%.1f%%)", g - r, 100 * (g * b / a - 1)) }'
echo "| model | px | threads | mmpipe img/s | ORT img/s | mmp / ORT | goal >= 1.2x ORT | PyTorch img/s | mmp / PyTorch | mmpipe effective GFLOP/s | sgemm GFLOP/s (same moment) | effective / sgemm | max RSS mmpipe / ORT / PyTorch (MB) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for c in "${configs[@]}"; do
  IFS=: read -r arch size t nb <<< "$c"
  f=$tmp/$arch.safetensors; [ $arch = mobilenet_v2 ] && f=$W
  # back to back, each in its own process (max RSS per configuration)
  # the machine may be shared: sgemm peak measured right before each row
  p=$("$tmp/bench_nn" sgemm $t)
  read -r ips gf ws rss cpu <<< "$("$tmp/bench_nn" model "$f" $size $t $nb 64 2)"
  oips=${ort_note:-"(failed)"} orss=-
  if [ -z "$ort_note" ]; then read -r oips orss _ <<< "$("$PY" bench/bench_embed_ort.py run "$tmp/$arch-$size.onnx" $size $t $nb 2>/dev/null || echo "(failed) -")"; fi
  tips="(not installed)" trss=-
  if [ -n "$torch_v" ]; then read -r _ _ _ tips trss <<< "$("$PY" bench/bench_embed_torch.py "$W" "$c" 2>/dev/null || echo "- - - (failed) -")"; fi
  awk -v a=$arch -v s=$size -v t=$t -v i="$ips" -v oi="$oips" -v ti="$tips" -v g="$gf" -v p="$p" -v r="$rss" -v or="$orss" -v tr="$trss" \
    "$AWK_FMT"'BEGIN { printf "| %s | %d | %d | %.1f | %s | %s | %s | %s | %s | %.0f | %.0f | %.0f%% | %.0f / %s / %s |\n", a, s, t, i,
      f("%.1f", oi), ratio(i, oi), goal(i, oi, 1.2), f("%.1f", ti), ratio(i, ti), g, p, 100 * g / p, r, f("%.0f", or), f("%.0f", tr) }'
done
echo
echo "ONNX Runtime: torch.onnx.export (opset 13) of the same torchvision model and weights, batch 64, intra_op_num_threads"
echo "= threads, inter_op_num_threads 1, ORT_ENABLE_ALL, after a warm-up batch, best of 2 (its RSS excludes torch)."
echo "PyTorch: eval, no_grad, torch.set_num_threads(threads), batch 64 after a warm-up batch of 8, best of 2;"
echo "mmpipe: mmp_nn_run (lib/nn) on normalized NHWC input after a warm-up batch, best of 2 timings of 1 batch"
echo "at 224 px, 2 batches at 96 px (the peers time the same number of batches). sgemm: best of 3. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
echo "The peers run the whole classifier (+ the final linear layer, < 0.1% of the work), mmpipe stops at the pooled features."
echo "effective GFLOP/s = 2 x multiply-adds of all convolutions computed directly / whole forward time. Winograd"
echo "(ResNet 3x3 convs) does fewer multiplications and the MobileNetV2 path uses its own GEMM, so the ratio to"
echo "mmp_sgemm (lib/nn/gemm.h) can exceed 100%. Max RSS: whole process, batch 64 (input, weights, workspaces)."
[ $quick = 1 ] && echo "(--quick: 1 batch per timing everywhere.)"

# end to end on CIFAR-10 (the acceptance pipeline's bottleneck)
C=$S/datasets/cifar10/test.tar
echo
if [ -z "$torch_v" ]; then
  echo "(CIFAR-10 end to end skipped: the Pillow + PyTorch peer is not installed)"
elif [ -n "${ARCHS:-}${SIZES:-}${THREADS:-}" ]; then
  echo "(CIFAR-10 end to end skipped: ARCHS/SIZES/THREADS pick rows)"
elif command -v "$BUILD/mmp-decode" >/dev/null && [ -x "$BUILD/mmp-embed" ] && [ -f "$C" ]; then
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
