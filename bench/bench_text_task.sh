#!/usr/bin/env bash
# bench/bench_text_task.sh: all-MiniLM-L6-v2 on the "who is the seller" task
# (bench/gen_text_task.py: 2,000 train / 500 dev / 1,000 test sentences, 8 classes, the
# label depends on word order and the verb), issue 14's text accuracy goal: full and
# LoRA fine-tuning beat the frozen encoder + linear head.
#  - frozen (mmpipe): mmp-embed-text (mean pooling, L2-normalized as the model's
#    modules.json says) -> mmp-train-step (linear head, standardized, AdamW lr 1e-3, wd
#    1e-2, batch 32, 30 epochs, early stopping on dev, patience 5) -> mmp-eval -> mmp-report
#  - full / LoRA (mmpipe): mmp-train-step --head transformer --backbone MODEL
#    --unfreeze all|lora on the text records, EPOCHS epochs, batch 32, AdamW lr 1e-4 (full)
#    / 1e-3 (LoRA r 8, alpha 8, q,v), wd 1e-2; skipped with a message while mmp-train-step
#    has no --head transformer (or --unfreeze lora)
#  - full / LoRA (PyTorch, bench/text_task_torch.py): the same recipe with transformers
#    4.30 BertModel + peft 0.4, run by this script
# usage: bench/bench_text_task.sh [--quick (1 epoch)] [--epochs N (6)] [--threads T (all cores)] [--no-torch] [--out DIR]
# (env: BUILD, MMP_PYTHON, MMP_PEERS, MINILM (default models/all-MiniLM-L6-v2))
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD:-build}
py=${MMP_PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=python3
peers=${MMP_PEERS:-$HOME/.local/share/mmpipe-peers}
export PYTHONPATH="$ROOT/formats/python:$peers/hf:$peers/peft${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # local model folders only (peft would look up the hub)
minilm=${MINILM:-models/all-MiniLM-L6-v2}
epochs=6 threads=$(nproc) torch=1 out=
while [ $# -gt 0 ]; do
  case "$1" in
    --epochs) epochs=$2; shift 2 ;; --threads) threads=$2; shift 2 ;; --no-torch) torch=0; shift ;;
    --out) out=$2; shift 2 ;; --quick) epochs=1; shift ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_text_task: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -f "$minilm/model.safetensors" ] || { echo "(bench_text_task: no $minilm: set MINILM)"; exit 0; }
for b in mmp-embed-text mmp-train-step mmp-eval mmp-report; do
  [ -x "$BUILD/$b" ] || { echo "(bench_text_task: $BUILD/$b not built)"; exit 0; }
done
"$py" -c 'import numpy, zstandard' 2>/dev/null || { echo "(bench_text_task: $py cannot import numpy/zstandard for formats/python)"; exit 0; }
if [ -z "$out" ]; then out=$(mktemp -d); trap 'rm -rf "$out"' EXIT; else mkdir -p "$out"; fi
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
acc_of() { "$py" -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["accuracy"])' "$1"; }

echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ); load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $threads threads"
"$py" bench/gen_text_task.py "$out" || { echo "bench_text_task: gen_text_task.py failed"; exit 1; }
echo "task: who is the seller (bench/gen_text_task.py, seed 0): 2000 train / 500 dev / 1000 test, 8 classes; e.g. \"$(head -n 1 "$out/train.jsonl" | sed 's/.*"text": "\([^"]*\)".*/\1/')\""
echo
echo "| model | trainable | test accuracy | training s | notes |"
echo "|---|---|---|---|---|"

# frozen encoder + linear head (mmpipe)
t0=$(now)
for s in train dev test; do
  "$BUILD/mmp-embed-text" --model "$minilm" -j "$threads" --no-progress "$out/$s.mmp" > "$out/$s.emb.mmp" ||
    { echo "bench_text_task: mmp-embed-text $s failed"; exit 1; }
done
t1=$(now)
"$BUILD/mmp-train-step" --feature text_embedding --epochs 30 --lr 1e-3 --weight-decay 1e-2 --batch-size 32 --patience 5 \
  --dev "$out/dev.emb.mmp" --out "$out/frozen.safetensors" --no-progress "$out/train.emb.mmp" 2> "$out/frozen.err" ||
  { cat "$out/frozen.err"; echo "bench_text_task: mmp-train-step (frozen) failed"; exit 1; }
t2=$(now)
"$BUILD/mmp-eval" --model "$out/frozen.safetensors" "$out/test.emb.mmp" -o "$out/frozen.pred.mmp" --json "$out/frozen.json" 2>/dev/null ||
  { echo "bench_text_task: mmp-eval (frozen) failed"; exit 1; }
"$BUILD/mmp-report" "$out/frozen.pred.mmp" > "$out/frozen.report.txt" 2>&1 || true
echo "| mmpipe: frozen MiniLM (mean pooled) + linear | linear 384x8 | $(acc_of "$out/frozen.json") | $(secs "$t1" "$t2") (embedding 3,500 texts: $(secs "$t0" "$t1")) | $(grep -o 'best [0-9.]* at epoch [0-9]*' "$out/frozen.err" | tail -n 1) |"

# full / LoRA (mmpipe), when mmp-train-step has them
help=$("$BUILD/mmp-train-step" --help 2>&1)
for mode in full lora; do
  if [ $mode = full ]; then unf=all lr=1e-4 name="mmpipe: full fine-tuning"; else unf=lora lr=1e-3 name="mmpipe: LoRA r8 q,v"; fi
  if ! grep -Eq -- '--head [a-z|-]*transformer' <<< "$help"; then
    echo "| $name | - | - | - | skipped: mmp-train-step has no --head transformer yet |"; continue
  fi
  if [ $mode = lora ] && ! grep -Eq -- '--unfreeze [a-z:|N-]*lora' <<< "$help"; then
    echo "| $name | - | - | - | skipped: mmp-train-step has no --unfreeze lora yet |"; continue
  fi
  lora=; [ $mode = lora ] && lora="--lora-rank 8 --lora-alpha 8"
  t0=$(now)
  "$BUILD/mmp-train-step" --head transformer --backbone "$minilm" --unfreeze $unf $lora --epochs "$epochs" --lr $lr \
    --weight-decay 1e-2 --batch-size 32 -j "$threads" --dev "$out/dev.mmp" --out "$out/$mode.safetensors" \
    --last "$out/$mode.last.safetensors" --no-progress "$out/train.mmp" 2> "$out/$mode.err" ||
    { echo "| $name | - | - | - | failed: $(tail -n 1 "$out/$mode.err") |"; continue; }
  t1=$(now)
  if "$BUILD/mmp-eval" --model "$out/$mode.last.safetensors" "$out/test.mmp" -o /dev/null --json "$out/$mode.json" 2> "$out/$mode.eval.err"; then
    echo "| $name | $unf | $(acc_of "$out/$mode.json") | $(secs "$t0" "$t1") | last epoch of $epochs |"
  else
    echo "| $name | $unf | - | $(secs "$t0" "$t1") | mmp-eval failed: $(tail -n 1 "$out/$mode.eval.err") |"
  fi
done

# PyTorch references
if [ $torch = 1 ]; then
  if "$py" -c 'import torch, transformers, peft' 2>/dev/null; then
    for mode in full lora; do
      "$py" bench/text_task_torch.py "$minilm" "$out" $mode --epochs "$epochs" --threads "$threads" > "$out/torch_$mode.json" 2> "$out/torch_$mode.err" ||
        { echo "| PyTorch $mode | - | - | - | failed: $(tail -n 1 "$out/torch_$mode.err") |"; continue; }
      "$py" -c 'import json,sys; j=json.load(open(sys.argv[1]))
name = "PyTorch: full fine-tuning" if j["mode"] == "full" else "PyTorch: LoRA r8 q,v (peft)"
print("| %s | %d params | %.4f | %.1f | AdamW lr %g, last epoch of %d (dev %s) |" % (name, j["trainable"], j["accuracy"], j["train_s"],
      j["lr"], len(j["epochs"]), ", ".join(str(e["dev_accuracy"]) for e in j["epochs"])))' "$out/torch_$mode.json"
    done
  else
    echo "| PyTorch full / LoRA | - | - | - | skipped: $py cannot import torch, transformers, peft (MMP_PEERS) |"
  fi
fi
echo
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
