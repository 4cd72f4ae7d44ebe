#!/usr/bin/env bash
# Transformer-engine throughput: ViT-B/16 @224 image embeddings and CLIP ViT-B/32
# text embeddings, mmpipe (lib/tx through bench/bench_tx.c: mmp_tx_image_embed_mt /
# mmp_tx_text_embed_mt) vs ONNX Runtime and PyTorch on the same random weights, inputs,
# machine and thread count; ratios mmp/ORT (goal >= 1.2x, "missed by" where not) and
# mmp/PyTorch, the peak RSS of each side (own process each), mmp's outputs checked
# against PyTorch's (a broken bench stops here). Header as bench/bench_text.sh.
# Models (bench/bench_tx_peer.py make): transformers 4.30.2's ViTModel(ViTConfig())
# (ViT-B/16, 224 px, no pooler; mmp's embedding = last_hidden_state[:, 0]) and
# CLIPModel(CLIPConfig()) (the openai/clip-vit-base-patch32 config; text embedding =
# get_text_features), torch.manual_seed(0) init, saved as safetensors for mmpipe (which
# maps them: no copy) and exported with torch.onnx.export (opset 14, dynamic batch).
# Inputs: N_IMG random normalized images [3,224,224] as one batch; N_TXT token
# sequences of 7-31 tokens (start, random ids, end: the lengths of short to
# descriptive captions) as one batch (padded + attention mask for the peers).
# ORT: intra_op_num_threads = threads, inter_op 1, ORT_ENABLE_ALL; PyTorch:
# torch.set_num_threads(threads), no_grad. Timing: every side best of REPS passes after
# a warm-up pass, in its own process; wall time (rates) and process CPU time.
# PyTorch's ViT (Debian's torch 1.13, ~5x slower than ORT here) is timed on the first
# N_TORCH_IMG images (default 16) and its rate computed on those; mmp's outputs are
# checked against them (the first rows).
# Usage: bench/bench_tx.sh [N_IMG [N_TXT]] (default 64 32). Env: THREADS ("1 2"), REPS (2), N_TORCH_IMG (16),
# MMP_PYTHON, MMP_PEERS (transformers 4.30.2 in $MMP_PEERS/hf, see bench/bench_text.sh).
set -u
cd "$(dirname "$0")/.."
root=$PWD
nimg=${1:-64} ntxt=${2:-32} reps=${REPS:-2}
py=${MMP_PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=python3
peers=${MMP_PEERS:-$HOME/.local/share/mmpipe-peers}
export PYTHONPATH="$peers/oc:$peers/hf${PYTHONPATH:+:$PYTHONPATH}"
for m in torch transformers onnxruntime; do
  "$py" -c "import $m" 2>/dev/null || { echo "(bench_tx: $py cannot import $m)"; exit 0; }
done
[ -f build/libmmp.a ] || { echo "(bench_tx: build/libmmp.a not built: make)"; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cc -std=c11 -D_GNU_SOURCE -O2 -march=x86-64-v3 -Ilib bench/bench_tx.c build/libmmp.a -o "$tmp/bench_tx" $(make -s ldlibs) &&
  cc -std=c11 -D_GNU_SOURCE -O2 -march=x86-64-v3 -Ilib bench/bench_nn.c build/libmmp.a -o "$tmp/bench_nn" $(make -s ldlibs) ||
  { echo "bench_tx: cannot build the driver"; exit 1; }
"$py" bench/bench_tx_peer.py make "$tmp" "$nimg" "$ntxt" > "$tmp/make.log" 2>&1 ||
  { tail -n 5 "$tmp/make.log"; echo "bench_tx: making the models failed"; exit 1; }
echo "ViT-B/16 @224: $nimg images, one batch; CLIP ViT-B/32 text tower: $ntxt texts of $(awk '{}' /dev/null; "$py" -c "import numpy as np,sys; l=np.fromfile(sys.argv[1],dtype=np.int32); print('%d-%d tokens (mean %.1f)' % (l.min(), l.max(), l.mean()))" "$tmp/lens.i32"), one batch; random weights (seed 0)"
echo
echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "CPU flags: $(for f in avx2 fma avx512f avx512bw avx512vl avx512dq avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_bf16 amx_int8; do
  grep -qw "$f" /proc/cpuinfo && printf '%s ' "$f"; done)"
"$tmp/bench_nn" cpu > "$tmp/cpu"
echo "mmpipe: ISA level $(sed -n 's/^isa //p' "$tmp/cpu") (lib/cpu.h; MMP_ISA=${MMP_ISA:-unset}), every matmul mmp_sgemm at that level (no BLAS), f32"
echo "Peers: $("$py" -c 'import torch, transformers, onnxruntime as o; print("torch %s, transformers %s, onnxruntime %s" % (torch.__version__, transformers.__version__, o.__version__))' 2>/dev/null); OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
echo
AWK_FMT='function ratio(a, b) { return b > 0 ? sprintf("%.2fx", a / b) : "-" }
function goal(a, b, g,    r) { if (!(b > 0)) return "-"; r = a / b;
  return r >= g ? "met" : sprintf("missed by %.0f%% (mmp needs +%.0f%%)", 100 * (1 - r / g), 100 * (g * b / a - 1)) }'
side() { # NAME CMD... -> "best_s cpu_s rss_MB" or exits
  local name=$1; shift
  "$@" 2> "$tmp/err" || { echo "bench_tx: $name failed: $(tail -n 1 "$tmp/err")" >&2; exit 1; }
}
echo "| model | threads | mmp /s | ORT /s | PyTorch /s | mmp / ORT | goal >= 1.2x ORT | mmp / PyTorch | CPU s per item mmp / ORT / PyTorch | peak RSS MB mmp / ORT / PyTorch |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for model in vit clip; do
  if [ $model = vit ]; then n=$nimg; else n=$ntxt; fi
  for t in ${THREADS:-1 2}; do
    if [ $model = vit ]; then
      m=$(side mmp "$tmp/bench_tx" image "$tmp/vit" "$tmp/imgs.f32" "$n" 224 "$t" "$reps" "$tmp/mmp_vit.f32") || exit 1
    else
      m=$(side mmp "$tmp/bench_tx" text "$tmp/clip" "$tmp/ids.i32" "$tmp/lens.i32" "$n" "$t" "$reps" "$tmp/mmp_clip.f32") || exit 1
    fi
    o=$(side ORT "$py" bench/bench_tx_peer.py time ort $model "$tmp" "$t" "$reps") || exit 1
    np=$n; [ $model = vit ] && np=${N_TORCH_IMG:-16}  # PyTorch's ViT is slow here: a prefix of the images
    p=$(side PyTorch "$py" bench/bench_tx_peer.py time torch $model "$tmp" "$t" "$reps" "$np") || exit 1
    for s in torch ort; do  # mmp's outputs against each peer's: a broken bench stops here
      d=$("$py" bench/bench_tx_peer.py check "$tmp" "$tmp/mmp_$model.f32" "$tmp/${s}_$model.f32") || { echo "bench_tx: $model outputs differ in size from $s's"; exit 1; }
      awk -v d="$d" 'BEGIN { exit !(d < 1e-3) }' || { echo "bench_tx: $model: mmp vs $s: max |diff| / max |ref| = $d (>= 1e-3)"; exit 1; }
      eval "d_$s=\$d"
    done
    echo "$m $o $p" | awk -v mod=$model -v t="$t" -v n="$n" -v np="$np" "$AWK_FMT"'{
      name = mod == "vit" ? "ViT-B/16 img" : "CLIP B/32 text"
      m = n / $1; o = n / $4; p = np / $7
      printf "| %s | %s | %.2f | %.2f | %.2f | %s | %s | %s | %.3f / %.3f / %.3f | %.0f / %.0f / %.0f |\n", name, t, m, o, p,
        ratio(m, o), goal(m, o, 1.2), ratio(m, p), $2 / n, $5 / n, $8 / np, $3, $6, $9 }'
    echo "$model $t $d_torch $d_ort" >> "$tmp/diffs"
  done
done
echo
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
echo "Outputs, max |mmp - peer| / max |peer| (threads: PyTorch, ORT): $(awk '{printf "%s%s %s: %s, %s", (NR > 1 ? "; " : ""), $1, $2, $3, $4}' "$tmp/diffs")."
echo "Rates from wall time (best of $reps passes after a warm-up, each side in its own process, one after another); CPU s per"
echo "item = that pass's process CPU time / items (all threads; PyTorch and ORT include Python's)."
echo "Peak RSS: the process's ru_maxrss (mmp: mapped weights once touched + activations; peers: Python + libraries + model)."
