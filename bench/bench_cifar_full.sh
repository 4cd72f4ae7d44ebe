#!/usr/bin/env bash
# bench/bench_cifar_full.sh: CIFAR-10 full fine-tuning of the shared MobileNetV2 at 96 px,
# mmpipe and then PyTorch (bench/cifar_full_torch.py) with the same recipe, in one run.
#
# Split (the tail recipes' of docs/train.md): the first 500 images of each class of
# ../shared/datasets/cifar10/train.tar (train/<class>/0000..0499.jpg, kept in a tar with the
# same member names), mmp-decode --size 96, mmp-split --ratio 0.9 --seed 0 (hashed id: 90%
# fit, 10% dev), the full 10,000-image test.tar. Recipe: every layer trained, BatchNorm
# frozen (--freeze-bn: the shared model is BN-folded, docs/train.md), classifier replaced
# (dropout 0.2), augmentation fresh every epoch: RandomCrop(96, padding=PAD, reflect) +
# RandomHorizontalFlip(0.5) (mmp-augment --pad-crop/--hflip, seeded by epoch; the documented
# shell loop over epochs, one mmp-train-step --init per epoch), OPT (AdamW lr LR wd WD, or
# SGD momentum 0.9), cosine per step to 0 over all epochs (--total-steps), batch 64, EPOCHS
# epochs; the last epoch's model is tested (dev accuracy logged every epoch, not used to
# pick). PyTorch: the same split (FIT/DEV ids), Pillow + torchvision transforms, the same
# model, optimizer, schedule, batch and epochs, same thread count.
#
# usage: bench/bench_cifar_full.sh [--epochs N] [--lr LR] [--weight-decay WD] [--optimizer adamw|sgd]
#          [--pad P] [--threads T] [--no-torch] [--no-mmp] [--out DIR]   (--quick: not run)
# Defaults: 10 epochs, AdamW lr 3e-4, wd 1e-2, pad 12, threads = cores. Prints a markdown table.
# (env: BUILD, MMP_SHARED, MMP_PYTHON) Takes a while: ~45,000 image-steps per side.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
SHARED=${MMP_SHARED:-$ROOT/../shared}; [ -d "$SHARED" ] || SHARED=/work/shared
PY=${MMP_PYTHON:-/usr/bin/python3}
epochs=10 lr=3e-4 wd=1e-2 optim=adamw pad=12 threads=$(nproc) torch=1 mmp=1 out= bs=64 size=96 seed=0
while [ $# -gt 0 ]; do
  case "$1" in
    --epochs) epochs=$2; shift 2 ;; --lr) lr=$2; shift 2 ;; --weight-decay) wd=$2; shift 2 ;;
    --optimizer) optim=$2; shift 2 ;; --pad) pad=$2; shift 2 ;; --threads) threads=$2; shift 2 ;;
    --no-torch) torch=0; shift ;; --no-mmp) mmp=0; shift ;; --out) out=$2; shift 2 ;;
    --quick) echo "(bench_cifar_full: not run under --quick: two full training runs)"; exit 0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_cifar_full: unknown option $1" >&2; exit 2 ;;
  esac
done
model=$SHARED/models/mobilenet_v2-imagenet.safetensors
train=$SHARED/datasets/cifar10/train.tar test=$SHARED/datasets/cifar10/test.tar
[ -f "$model" ] && [ -f "$train" ] && [ -f "$test" ] || { echo "(bench_cifar_full: needs the shared CIFAR-10 tars and MobileNetV2: set MMP_SHARED)"; exit 0; }
for b in mmp-decode mmp-split mmp-augment mmp-train-step mmp-eval; do
  [ -x "$BUILD/$b" ] || { echo "(bench_cifar_full: $BUILD/$b not built)"; exit 0; }
done
if [ -z "$out" ]; then out=$(mktemp -d); trap 'rm -rf "$out"' EXIT; else mkdir -p "$out"; fi
export PYTHONPATH="$ROOT/formats/python${PYTHONPATH:+:$PYTHONPATH}"
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: *//'), $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "recipe: full fine-tuning, BN frozen, $optim lr $lr wd $wd, cosine, batch $bs, $epochs epochs, pad-crop $size pad $pad reflect + hflip, dropout 0.2, $threads threads, seed $seed"

# the split: train/<class>/0000..0499.jpg in a tar with the same member names
t0=$(now)
mkdir -p "$out/sub"
tar -xf "$train" -C "$out/sub" --wildcards 'train/*/0[0-4][0-9][0-9].jpg'
tar -cf "$out/train500.tar" -C "$out/sub" train && rm -rf "$out/sub"
"$BUILD/mmp-decode" --size $size -j "$threads" "$out/train500.tar" > "$out/train500.mmp"
"$BUILD/mmp-split" --ratio 0.9 --seed $seed "$out/train500.mmp" -o "$out/fit.mmp" --rest "$out/dev.mmp"
"$BUILD/mmp-decode" --size $size -j "$threads" "$test" > "$out/test.mmp"
t1=$(now)
nfit=$("$BUILD/mmp-cat" --count "$out/fit.mmp" 2>&1 | grep -o '[0-9]*' | head -n 1)
steps=$(( epochs * ((nfit + bs - 1) / bs) ))
echo "split: $nfit fit, $("$BUILD/mmp-cat" --count "$out/dev.mmp" 2>&1 | grep -o '[0-9]*' | head -n 1) dev, test.tar; decode $(secs "$t0" "$t1") s"

mmp_acc=- mmp_train=- mmp_dev=-
if [ $mmp = 1 ]; then
  opt_args="--optimizer $optim --lr $lr --weight-decay $wd"; [ "$optim" = sgd ] && opt_args+=" --momentum 0.9"
  t0=$(now)
  for e in $(seq "$epochs"); do
    init=; [ "$e" -gt 1 ] && init="--init $out/mmp.last.safetensors"
    te=$(now)
    "$BUILD/mmp-augment" --seed $seed --epoch "$e" --pad-crop "$size,pad=$pad,mode=reflect" --hflip 0.5 -j "$threads" \
        --no-progress "$out/fit.mmp" |
      "$BUILD/mmp-train-step" --head mnv2-tail --backbone "$model" --from input --freeze-bn $init \
        $opt_args --schedule cosine --total-steps "$steps" --batch-size $bs --dropout 0.2 --seed $seed \
        --epochs 1 -j "$threads" --dev "$out/dev.mmp" --out "$out/mmp.safetensors" --last "$out/mmp.last.safetensors" \
        --log "$out/mmp.log.jsonl" --no-progress 2> "$out/mmp.err" || { cat "$out/mmp.err" >&2; exit 1; }
    echo "mmp epoch $e: $(grep -v '^$' "$out/mmp.err" | tail -n 1) ($(secs "$te" "$(now)") s with augmentation)" >&2
  done
  t1=$(now)
  mmp_train=$(secs "$t0" "$t1")
  "$BUILD/mmp-eval" --model "$out/mmp.last.safetensors" "$out/test.mmp" -o /dev/null --json "$out/mmp.eval.json" 2> /dev/null
  mmp_test=$(secs "$t1" "$(now)")
  mmp_acc=$("$PY" -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["accuracy"])' "$out/mmp.eval.json")
  mmp_dev=$(grep -o 'dev acc[a-z]* [0-9.]*' "$out/mmp.err" | tail -n 1 | grep -o '[0-9.]*$' || echo -)
fi

pt_acc=- pt_train=- pt_dev=- pt_test=-
if [ $torch = 1 ]; then
  if "$PY" -c 'import torch, torchvision' 2> /dev/null; then
    "$PY" "$ROOT/bench/cifar_full_torch.py" "$out/fit.mmp" "$out/dev.mmp" "$out/train500.tar" "$test" "$model" \
      --size $size --pad $pad --epochs "$epochs" --lr "$lr" --weight-decay "$wd" --optimizer "$optim" \
      --batch-size $bs --threads "$threads" --seed $seed > "$out/torch.json" 2> >(sed -u 's/^/torch: /' >&2)
    read -r pt_acc pt_train pt_dev pt_test < <("$PY" -c 'import json,sys; j=json.load(open(sys.argv[1]))
print("%.4f %s %.4f %s" % (j["accuracy"], j["train_s"], j["dev_accuracy"], j["test_s"]))' "$out/torch.json")
  else
    echo "(bench_cifar_full: $PY cannot import torch/torchvision: PyTorch row skipped)"
  fi
fi

echo
echo "| trainer | test accuracy | last-epoch dev accuracy | training s ($epochs epochs, wall) | test eval s |"
echo "|---|---|---|---|---|"
[ $mmp = 1 ] && echo "| mmpipe (mmp-augment + mmp-train-step --from input --freeze-bn, per-epoch loop) | $mmp_acc | $mmp_dev | $mmp_train (augmentation included) | $mmp_test |"
[ $torch = 1 ] && echo "| PyTorch $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null) (torchvision transforms) | $pt_acc | $pt_dev | $pt_train (augmentation included) | $pt_test |"
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ $mmp = 1 ] && [ $torch = 1 ] && [ "$pt_acc" != - ]; then
  awk -v m="$mmp_acc" -v p="$pt_acc" 'BEGIN {
    printf "goal: mmp > 0.771 (best tail recipe): %s; within 1 point of PyTorch: %s (%+.1f points)\n",
      (m > 0.771 ? "met" : "missed"), ((m - p) >= -0.01 ? "met" : "missed"), 100 * (m - p) }'
fi
