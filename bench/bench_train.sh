#!/usr/bin/env bash
# bench/bench_train.sh: full fine-tuning speed, mmp-train-step vs PyTorch 1.13 (issue 14's
# "Training speed" goal: >= 1.5x PyTorch), one run, same machine, same threads:
#  - MobileNetV2 @96 and ResNet-18 @96, batch 64, images/s, BatchNorm frozen (--freeze-bn;
#    torch: BN modules in eval mode) and in train mode (batch statistics; torch
#    model.train()): mmp-train-step --head mnv2-tail|resnet-tail --from input on u8 image
#    records (mmp-synth + mmp-decode --size 96) vs torchvision's model on one fixed random
#    NCHW batch (bench/bench_train_peer.py); random weights (torch.manual_seed(0), the same
#    file both sides), classifier resized to the 6 classes, AdamW(lr 1e-3, wd 1e-2).
#  - all-MiniLM-L6-v2 (models/all-MiniLM-L6-v2), batch 32 x 64 tokens, tokens/s: full
#    fine-tuning (every parameter) and LoRA (r 8, alpha 8, query+value; peft 0.4): BertModel
#    + mean pooling + linear vs mmp-train-step --head transformer --unfreeze all|lora on text
#    records of exactly 64 word pieces. A row whose mmp side mmp-train-step does not know
#    (no --head transformer / --unfreeze lora in its --help) is printed as skipped.
# Timing: steady state, data loading excluded on both sides: WARMUP steps (2), then STEPS
# timed steps (6); mmp: from the per-step times of --log (the stream is decoded into memory
# before the first step); PyTorch: perf_counter around the timed steps. Wall time; each
# side in its own process, one after the other. Not a test (never run by make test).
# usage: bench/bench_train.sh [--quick] (env: THREADS (default: all cores), WARMUP, STEPS,
#        BUILD, MMP_PYTHON, MMP_PEERS, MINILM (default models/all-MiniLM-L6-v2), ROWS
#        ("mnv2 resnet18 minilm"))
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD:-build}
py=${MMP_PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=python3
peers=${MMP_PEERS:-$HOME/.local/share/mmpipe-peers}
export PYTHONPATH="$ROOT/formats/python:$peers/hf:$peers/peft${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # local model folders only (peft would look up the hub)
[ "${1:-}" = --quick ] && { WARMUP=${WARMUP:-1}; STEPS=${STEPS:-3}; }
warm=${WARMUP:-2} steps=${STEPS:-6} threads=${THREADS:-$(nproc)}
minilm=${MINILM:-models/all-MiniLM-L6-v2} rows=${ROWS:-mnv2 resnet18 minilm}
"$py" -c 'import torch, torchvision' 2>/dev/null || { echo "(bench_train: $py cannot import torch/torchvision)"; exit 0; }
for b in mmp-synth mmp-decode mmp-train-step; do
  [ -x "$BUILD/$b" ] || { echo "(bench_train: $BUILD/$b not built: make)"; exit 0; }
done
[ -f "$BUILD/libmmp.a" ] || { echo "(bench_train: $BUILD/libmmp.a not built: make)"; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cc -std=c11 -D_GNU_SOURCE -O2 -march=x86-64-v3 -Ilib bench/bench_nn.c "$BUILD/libmmp.a" -o "$tmp/bench_nn" $(make -s ldlibs) ||
  { echo "bench_train: cannot build bench/bench_nn.c"; exit 1; }
"$tmp/bench_nn" cpu > "$tmp/cpu"
echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "CPU flags: $(for f in avx2 fma avx512f avx512bw avx512vl avx512dq avx512_vnni avx512_bf16 amx_tile; do
  grep -qw "$f" /proc/cpuinfo && printf '%s ' "$f"; done)"
echo "mmpipe: ISA level $(sed -n 's/^isa //p' "$tmp/cpu") (lib/cpu.h; MMP_ISA=${MMP_ISA:-unset}); training: lib/train (convolutions as mmp_sgemm at that level, depthwise/BN/pool loops), batch cut into 4 fixed slices on $threads threads"
echo "PyTorch: $("$py" -c 'import re, torch
s = torch.__config__.show()
cap = re.search(r"CPU capability usage: (\S+)", s); blas = re.search(r"BLAS_INFO=([^,]+)", s)
print("%s, CPU capability %s, BLAS %s, mkldnn %s, OpenMP" % (torch.__version__, cap.group(1) if cap else "?", blas.group(1) if blas else "?",
      "on" if torch.backends.mkldnn.is_available() else "off"))' 2>/dev/null), $threads threads (torch.set_num_threads)"
echo "Steady state: $warm warm-up steps, then $steps timed steps; data loading excluded on both sides; wall time"
echo
AWK_FMT='function ratio(a, b) { return b > 0 ? sprintf("%.2fx", a / b) : "-" }
function goal(a, b, g,    r) { if (!(b > 0)) return "-"; r = a / b;
  return r >= g ? "met" : sprintf("missed (mmp needs +%.0f%%)", 100 * (g * b / a - 1)) }'
# mmp_steady LOG: mean wall seconds of steps warm+1 .. warm+steps from the step entries of --log
mmp_steady() {
  awk -v w="$warm" -v s="$steps" -F'[:,}]' '/"step":/ && !/train_loss/ {
      for (i = 1; i < NF; i++) { if ($i ~ /"step"/) st = $(i + 1); if ($i ~ /"time"/) tm = $(i + 1) }
      t[st + 0] = tm }
    END { if (!((w + s) in t) || !(w in t)) exit 1; printf "%.6f\n", (t[w + s] - t[w]) / s }' "$1"
}
row() { # NAME UNIT ITEMS_PER_STEP MMP_S TORCH_S
  echo "$4 $5" | awk -v name="$1" -v unit="$2" -v n="$3" -v t="$threads" "$AWK_FMT"'{
    m = $1 > 0 ? n / $1 : 0; p = $2 > 0 ? n / $2 : 0
    printf "| %s | %s | %s | %.1f | %.1f | %s | %s |\n", name, t, unit, m, p, ratio(m, p), goal(m, p, 1.5) }'
}
skip_row() { echo "| $1 | $threads | $2 | - | $3 | - | $4 |"; }
echo "| model | threads | unit | mmp /s | PyTorch /s | mmp / PyTorch | goal >= 1.5x |"
echo "|---|---|---|---|---|---|---|"
n_img=$((64 * (warm + steps)))
case " $rows " in *" mnv2 "*|*" resnet18 "*)
  "$py" bench/bench_train_peer.py make "$tmp" || { echo "bench_train: making the weights failed"; exit 1; }
  "$BUILD/mmp-synth" -n "$n_img" --no-progress | "$BUILD/mmp-decode" --size 96 -j "$threads" - > "$tmp/img.mmp" ||
    { echo "bench_train: making the images failed"; exit 1; } ;;
esac
for arch in mnv2 resnet18; do
  case " $rows " in *" $arch "*) ;; *) continue ;; esac
  if [ $arch = mnv2 ]; then head=mnv2-tail tarch=mobilenet_v2 name="MobileNetV2 @96"; else head=resnet-tail tarch=resnet18 name="ResNet-18 @96"; fi
  for bn in frozen train; do
    fb=; [ $bn = frozen ] && fb=--freeze-bn
    "$BUILD/mmp-train-step" --head $head --backbone "$tmp/$tarch.safetensors" --from input $fb --batch-size 64 --epochs 1 \
      --lr 1e-3 --weight-decay 1e-2 -j "$threads" --no-progress --log "$tmp/log.jsonl" --out "$tmp/ck.safetensors" \
      "$tmp/img.mmp" 2> "$tmp/err" || { echo "bench_train: mmp-train-step ($arch, BN $bn) failed: $(tail -n 1 "$tmp/err")"; exit 1; }
    m=$(mmp_steady "$tmp/log.jsonl") || { echo "bench_train: no step times in the log"; exit 1; }
    p=$("$py" bench/bench_train_peer.py cnn $tarch "$tmp/$tarch.safetensors" $bn "$threads" 64 96 6 "$warm" "$steps" 2> "$tmp/err") ||
      { echo "bench_train: PyTorch ($arch) failed: $(tail -n 1 "$tmp/err")"; exit 1; }
    row "$name, BN $bn, batch 64" "images" 64 "$m" "${p%% *}"
  done
done
case " $rows " in *" minilm "*)
  if [ ! -f "$minilm/model.safetensors" ]; then
    echo "| all-MiniLM-L6-v2 | $threads | tokens | - | - | - | skipped: no $minilm (MINILM=DIR) |"
  elif ! "$py" -c 'import transformers' 2>/dev/null; then
    echo "| all-MiniLM-L6-v2 | $threads | tokens | - | - | - | skipped: $py cannot import transformers (MMP_PEERS) |"
  else
    help=$("$BUILD/mmp-train-step" --help 2>&1)
    n_txt=$((32 * (warm + steps)))
    "$py" bench/bench_train_peer.py text "$tmp/txt.mmp" "$minilm/vocab.txt" "$n_txt" 64 || { echo "bench_train: making the texts failed"; exit 1; }
    for mode in full lora; do
      if [ $mode = full ]; then name="all-MiniLM-L6-v2 full, batch 32 x 64 tokens"; unf=all; else name="all-MiniLM-L6-v2 LoRA r8 q,v, batch 32 x 64 tokens"; unf=lora; fi
      if [ $mode = lora ] && ! "$py" -c 'import peft' 2>/dev/null; then
        skip_row "$name" tokens - "skipped: $py cannot import peft (MMP_PEERS)"; continue
      fi
      p=$("$py" bench/bench_train_peer.py bert "$minilm" $mode "$threads" 32 64 "$warm" "$steps" 2> "$tmp/err") ||
        { echo "bench_train: PyTorch (MiniLM $mode) failed: $(tail -n 1 "$tmp/err")"; exit 1; }
      p=${p%% *}; echo "$p" > "$tmp/pt_$mode"
      if ! grep -Eq -- '--head [a-z|-]*transformer' <<< "$help"; then
        skip_row "$name" tokens "$(awk -v p="$p" 'BEGIN { printf "%.1f", 2048 / p }')" "skipped: mmp-train-step has no --head transformer yet"; continue
      fi
      if [ $mode = lora ] && ! grep -Eq -- '--unfreeze [a-z:|N-]*lora' <<< "$help"; then
        skip_row "$name" tokens "$(awk -v p="$p" 'BEGIN { printf "%.1f", 2048 / p }')" "skipped: mmp-train-step has no --unfreeze lora yet"; continue
      fi
      lora=; [ $mode = lora ] && lora="--lora-rank 8 --lora-alpha 8"
      "$BUILD/mmp-train-step" --head transformer --backbone "$minilm" --unfreeze $unf $lora --batch-size 32 --epochs 1 \
        --lr 1e-4 --weight-decay 1e-2 -j "$threads" --no-progress --log "$tmp/log.jsonl" --out "$tmp/tx.safetensors" \
        "$tmp/txt.mmp" 2> "$tmp/err" || {  # e.g. "--unfreeze lora: ... not built yet": that row is skipped
        skip_row "$name" tokens "$(awk -v p="$p" 'BEGIN { printf "%.1f", 2048 / p }')" "skipped: $(tail -n 1 "$tmp/err")"; continue; }
      m=$(mmp_steady "$tmp/log.jsonl") || { echo "bench_train: no step times in the log"; exit 1; }
      echo "$m" > "$tmp/mmp_$mode"
      row "$name" tokens 2048 "$m" "$p"
    done
    if [ -f "$tmp/pt_lora" ] && [ -f "$tmp/pt_full" ]; then
      echo
      echo "LoRA step vs full step: PyTorch $(awk -v f="$(cat "$tmp/pt_full")" -v l="$(cat "$tmp/pt_lora")" 'BEGIN { printf "%.2fx cheaper", f / l }')$(
        [ -f "$tmp/mmp_lora" ] && [ -f "$tmp/mmp_full" ] && awk -v f="$(cat "$tmp/mmp_full")" -v l="$(cat "$tmp/mmp_lora")" 'BEGIN { printf ", mmp %.2fx cheaper", f / l }')"
    fi
  fi ;;
esac
echo
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
