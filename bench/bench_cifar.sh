#!/usr/bin/env bash
# CIFAR-10 linear probe, mmpipe vs PyTorch in the same run (not a test).
#   bench/bench_cifar.sh [--shard-train N] [--shard-test N] [--threads T] [--no-torch]
# Recipe (both sides): decode, Resize(96)+CenterCrop(96), MobileNetV2 pooled
# features (ImageNet weights from ../shared), standardized, linear head, AdamW
# lr 1e-3 wd 1e-2, batch 256, 30 epochs, all training images (every Nth with
# --shard-train N), test accuracy. Prints a markdown table with the wall time
# of every stage and the ratio.
set -u
cd "$(dirname "$0")/.."
root=$PWD; export PATH="$root/build:$PATH"
shard_train=1; shard_test=1; threads=2; torch=1
while [ $# -gt 0 ]; do
  case "$1" in
    --shard-train) shard_train=$2; shift 2 ;; --shard-test) shard_test=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;; --no-torch) torch=0; shift ;;
    *) echo "bench_cifar: unknown option $1" >&2; exit 2 ;;
  esac
done
shared=${MMP_SHARED:-$root/../shared}
model=$shared/models/mobilenet_v2-imagenet.safetensors
train=$shared/datasets/cifar10/train.tar; test=$shared/datasets/cifar10/test.tar
[ -f "$model" ] && [ -f "$train" ] || { echo "bench_cifar: needs ../shared (CIFAR-10 tars and MobileNetV2)"; exit 0; }
py=${MMP_PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ms() { date +%s%N; }
sec() { awk "BEGIN{printf \"%.1f\", ($2 - $1) / 1e9}"; }
t0=$(ms)
mmp-decode --size 96 -j "$threads" --shard 0/"$shard_train" "$train" | mmp-embed --model "$model" --threads "$threads" > "$tmp/train.mmp"
t1=$(ms)
mmp-decode --size 96 -j "$threads" --shard 0/"$shard_test" "$test" | mmp-embed --model "$model" --threads "$threads" > "$tmp/test.mmp"
t2=$(ms)
mmp-train-step --epochs 30 --lr 1e-3 --weight-decay 1e-2 --batch-size 256 --seed 0 --out "$tmp/head.safetensors" "$tmp/train.mmp" 2>/dev/null
t3=$(ms)
acc=$(mmp-eval --model "$tmp/head.safetensors" "$tmp/test.mmp" 2>/dev/null | mmp-report --json - | "$py" -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["accuracy"])')
ntr=$(mmp-cat --count "$tmp/train.mmp"); nte=$(mmp-cat --count "$tmp/test.mmp")
m_tr=$(sec $t0 $t1); m_te=$(sec $t1 $t2); m_fit=$(sec $t2 $t3)
if [ $torch = 1 ] && "$py" -c 'import torch, torchvision' 2>/dev/null; then
  j=$("$py" bench/cifar_torch.py "$train" "$test" "$model" --threads "$threads" --shard-train "$shard_train" --shard-test "$shard_test")
  get() { echo "$j" | "$py" -c "import json,sys; print('%.${2:-1}f' % json.load(sys.stdin)['$1'])"; }
  p_tr=$(get embed_train_s); p_te=$(get embed_test_s); p_fit=$(get train_s); p_acc=$(get accuracy 4)
else p_tr=-; p_te=-; p_fit=-; p_acc=-; fi
ratio() { [ "$2" = - ] && echo - || awk "BEGIN{printf \"%.1fx\", $2 / $1}"; }
echo "CIFAR-10 linear probe, MobileNetV2 @96 px, $ntr train / $nte test images, $threads threads"
echo
echo "| stage | mmpipe (s) | PyTorch (s) | speed-up |"
echo "| --- | --- | --- | --- |"
echo "| decode + embed train | $m_tr | $p_tr | $(ratio $m_tr $p_tr) |"
echo "| decode + embed test | $m_te | $p_te | $(ratio $m_te $p_te) |"
echo "| train head (30 epochs) | $m_fit | $p_fit | $(ratio $m_fit $p_fit) |"
echo "| **test accuracy** | **$acc** | **$p_acc** | |"
