#!/usr/bin/env bash
# bench/bench_vqa.sh: issue 15's VQA goal in one run: on mmp-synth's VQA data the
# cross-attention model (mmp-train-step --head vqa) against the pooled-image +
# pooled-question MLP baseline (--head vqa-pooled) trained on the same features
# with the same options, VQA accuracy on the test split per question type.
#  - data: mmp-synth --mode vqa (TRAIN/DEV/TEST images, 6 questions each: color,
#    shape, count, yesno, position, relation; --answers A annotators)
#  - image tokens: mmp-decode --manifest | mmp-embed --model MobileNetV2 (ImageNet,
#    ../shared/models) --layer LAYER (features.13:tokens: a 6x6 grid of 96 channels
#    on the 96x96 pictures); each image decoded and embedded once
#  - question tokens: all-MiniLM-L6-v2's last hidden states (frozen; --text-unfreeze lora:
#    PEFT LoRA adapters on query/value, r 8, trained with both heads)
#  - both heads: AdamW lr 1e-3 (cosine schedule), wd 1e-2, batch 64, EPOCHS epochs,
#    --dev (best epoch kept), seed 0; vqa: --fuse-dim 128 --heads 4 --img-layers IL (1)
#    --fuse-layers 2, grid positions
# usage: bench/bench_vqa.sh [--train N (3000)] [--dev N (200)] [--test N (300)] [--epochs N (16)]
#        [--answers A (1)] [--img-layers IL (1)] [--layer L] [--threads T] [--out DIR] [--quick (200/50/50 images, 2 epochs)]
#        [--text-unfreeze head|lora|all (head)]
# (env: BUILD, MINILM (default models/all-MiniLM-L6-v2), MNV2 (default ../shared/models/mobilenet_v2-imagenet.safetensors))
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD:-build}
minilm=${MINILM:-models/all-MiniLM-L6-v2}
mnv2=${MNV2:-${MMP_SHARED:-../shared}/models/mobilenet_v2-imagenet.safetensors}
ntrain=3000 ndev=200 ntest=300 epochs=16 answers=1 layer=features.13:tokens threads=$(nproc) out= tu=head img_layers=1
while [ $# -gt 0 ]; do
  case "$1" in
    --train) ntrain=$2; shift 2 ;; --dev) ndev=$2; shift 2 ;; --test) ntest=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;; --answers) answers=$2; shift 2 ;; --layer) layer=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;; --img-layers) img_layers=$2; shift 2 ;; --out) out=$2; shift 2 ;; --text-unfreeze) tu=$2; shift 2 ;;
    --quick) ntrain=200 ndev=50 ntest=50 epochs=2; shift ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_vqa: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -f "$minilm/model.safetensors" ] || { echo "(bench_vqa: no $minilm: set MINILM)"; exit 0; }
[ -f "$mnv2" ] || { echo "(bench_vqa: no $mnv2: set MNV2)"; exit 0; }
for b in mmp-synth mmp-decode mmp-embed mmp-train-step mmp-eval; do
  [ -x "$BUILD/$b" ] || { echo "(bench_vqa: $BUILD/$b not built)"; exit 0; }
done
[ -n "$out" ] || out=$(mktemp -d)
mkdir -p "$out"
B=$BUILD
t0=$(date +%s)
$B/mmp-synth --mode vqa --out "$out/data" --train $ntrain --dev $ndev --test $ntest --answers $answers --no-progress || exit 1
for s in train dev test; do
  $B/mmp-decode --manifest "$out/data/$s.jsonl" --no-progress 2>/dev/null |
    $B/mmp-embed --model "$mnv2" --layer $layer --threads $threads --no-progress -o "$out/$s.mmp" 2>/dev/null || exit 1
done
t1=$(date +%s)
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "data: mmp-synth --mode vqa --train $ntrain --dev $ndev --test $ntest --answers $answers (6 questions an image); image tokens $layer; $((t1 - t0)) s to make and embed"
echo "text tower: --text-unfreeze $tu"
common="--backbone $minilm --text-unfreeze $tu --epochs $epochs --batch-size 64 --lr 1e-3 --schedule cosine --seed 0 --threads $threads --no-progress --dev $out/dev.mmp"
for h in vqa vqa-pooled; do
  extra=""; [ $h = vqa ] && extra="--fuse-dim 128 --heads 4 --img-layers $img_layers --fuse-layers 2"
  ts=$(date +%s)
  $B/mmp-train-step --head $h $common $extra --log "$out/$h.log.jsonl" -o "$out/$h.safetensors" "$out/train.mmp" 2> "$out/$h.train.txt" || { cat "$out/$h.train.txt"; exit 1; }
  te=$(date +%s)
  $B/mmp-eval --model "$out/$h.safetensors" --json "$out/$h.json" "$out/test.mmp" > "$out/$h.pred.mmp" 2> "$out/$h.eval.txt" || { cat "$out/$h.eval.txt"; exit 1; }
  echo "--head $h: trained in $((te - ts)) s: $(tail -n 1 "$out/$h.train.txt" | sed 's/.*; dev/dev/')"
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
a = json.load(open(out + "/vqa.json")); b = json.load(open(out + "/vqa-pooled.json"))
print("VQA accuracy on the test split (%d questions)" % a["scored"])
print("%-12s %8s %12s %8s %6s" % ("question", "vqa", "vqa-pooled", "diff", "n"))
for t in ["color", "shape", "count", "yesno", "position", "relation"]:
    if t in a["per_qtype"]:
        x, y = a["per_qtype"][t]["accuracy"], b["per_qtype"][t]["accuracy"]
        print("%-12s %8.4f %12.4f %+8.4f %6d" % (t, x, y, x - y, a["per_qtype"][t]["n"]))
print("%-12s %8.4f %12.4f %+8.4f %6d" % ("all", a["vqa_accuracy"], b["vqa_accuracy"], a["vqa_accuracy"] - b["vqa_accuracy"], a["scored"]))
PY
echo "(files in $out)"
