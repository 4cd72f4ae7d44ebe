#!/usr/bin/env bash
# mmp-train-step --from input: the whole network (stem included) of the small
# random-weights MobileNetV2 and ResNet-18 of tests/fixtures/nn trained from
# mmp-synth images at 32 px:
# - from u8 [H,W,3] records (normalized with the backbone's __metadata__
#   input_mean/input_std): the training loss goes down over 2 epochs, mmp-eval
#   applies the checkpoint to image records and mmp-report reads its output;
# - the checkpoint records from=input, freeze_bn, input_mean/input_std and holds
#   the moved BN running statistics (train-mode BN, the default) or the backbone's
#   (--freeze-bn); the two modes give different checkpoints;
# - 1 and 4 threads: bit-identical checkpoints; normalized f32 [3,H,W] records of
#   mmp-augment --normalize with the backbone's mean/std give the same checkpoint
#   as the u8 records; --init continues (the per-epoch loop);
# - bad inputs (images of two sizes, float images of another normalization,
#   --no-freeze-bn on cached activations, eval images of another size): one line.
set -u
command -v mmp-train-step >/dev/null || { echo "mmp-train-step not built"; exit 77; }
MN="$MMP_ROOT/tests/fixtures/nn/mnv2_w025.safetensors"
RN="$MMP_ROOT/tests/fixtures/nn/resnet18_w8.safetensors"
[ -f "$MN" ] && [ -f "$RN" ] || { echo "no tests/fixtures/nn networks"; exit 77; }
source "$MMP_ROOT/tests/sh/checks.sh"

mmp-synth -n 40 --seed 3 > s.tar || { echo "FAIL: mmp-synth"; exit 1; }
mmp-decode --size 32 s.tar > img.mmp 2>/dev/null || { echo "FAIL: decode"; exit 1; }
meta() { python3 - "$1" "$2" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
print(h["__metadata__"].get(sys.argv[2], "") if sys.argv[2] != "-" else " ".join(sorted(k for k in h if k != "__metadata__")))
PY
}
losses() { grep '"epoch"' "$1" | grep -o '"train_loss":[0-9.e+-]*' | cut -d: -f2 | tr '\n' ' '; }

T="--from input --batch-size 10 --lr 1e-3 --dropout 0 --seed 1 --epochs 2"
# the MobileNetV2 states its normalization in __metadata__, the ResNet has torchvision's defaults
for net in mnv2:mnv2-tail:0.5,0.400000006,0.300000012:$MN resnet:resnet-tail:0.485000014,0.456,0.405999988:$RN; do
  IFS=: read -r n head mean B <<< "$net"
  if mmp-train-step --head $head --backbone "$B" $T --log $n.log --out $n.safetensors img.mmp 2> err.txt; then
    ok "$n from the image: $(tail -1 err.txt)"
  else
    fail "$n: train: $(cat err.txt)"; continue
  fi
  read -r l1 l2 <<< "$(losses $n.log)"
  if python3 -c "import sys; sys.exit(not (float('$l2') < float('$l1')))" 2>/dev/null; then ok "$n: train loss $l1 -> $l2"
  else fail "$n: the train loss did not go down: $l1 -> $l2"; fi
  [ "$(meta $n.safetensors from)" = input ] || fail "$n: from = $(meta $n.safetensors from)"
  [ "$(meta $n.safetensors freeze_bn)" = 0 ] || fail "$n: freeze_bn = $(meta $n.safetensors freeze_bn)"
  [ "$(meta $n.safetensors input_mean)" = "$mean" ] || fail "$n: input_mean = $(meta $n.safetensors input_mean)"
  [ "$(meta $n.safetensors in_hw)" = 32x32 ] || fail "$n: in_hw = $(meta $n.safetensors in_hw)"
  if mmp-eval --model $n.safetensors img.mmp > pred.$n.mmp 2> err.txt && mmp-report pred.$n.mmp > rep.txt 2>&1 && grep -q accuracy rep.txt; then
    ok "$n: eval on image records + report: $(tail -1 err.txt)"
  else
    fail "$n: eval/report: $(cat err.txt rep.txt)"
  fi
  # frozen BN: other weights, the backbone's running statistics
  mmp-train-step --head $head --backbone "$B" $T --freeze-bn --out $n.frozen.safetensors img.mmp 2>/dev/null || fail "$n: --freeze-bn"
  [ "$(meta $n.frozen.safetensors freeze_bn)" = 1 ] || fail "$n: --freeze-bn not recorded"
  cmp -s $n.safetensors $n.frozen.safetensors && fail "$n: --freeze-bn and train-mode BN give the same checkpoint"
  rm1=$(python3 - $n.safetensors $n.frozen.safetensors "$B" <<'PY'
import json, struct, sys
def t(f, k):
    b = open(f, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    s, e = h[k]["data_offsets"]; fmt = {"F32": "f", "F16": "e"}[h[k]["dtype"]]
    raw = b[8 + n + s:8 + n + e]
    return struct.unpack("<%d%s" % (len(raw) // struct.calcsize(fmt), fmt), raw)
k = "features.0.1.running_mean" if "mnv2" in sys.argv[1] else "bn1.running_mean"
a, f, bb = (t(x, k) for x in sys.argv[1:4])
print("moved" if a != bb else "same", "frozen" if f == bb else "changed")
PY
)
  [ "$rm1" = "moved frozen" ] && ok "$n: running statistics: train mode moves them, --freeze-bn keeps the backbone's" \
    || fail "$n: running statistics: $rm1"
  # threads
  mmp-train-step --head $head --backbone "$B" $T -j 1 --out $n.j1.safetensors img.mmp 2>/dev/null
  mmp-train-step --head $head --backbone "$B" $T --threads 4 --out $n.j4.safetensors img.mmp 2>/dev/null
  if [ -s $n.j1.safetensors ] && cmp -s $n.j1.safetensors $n.j4.safetensors && cmp -s $n.j1.safetensors $n.safetensors; then
    ok "$n: -j 1 and --threads 4: bit-identical"
  else fail "$n: -j 1 and --threads 4 differ"; fi
  # mmp-export: the whole state dict (the checkpoint's tensors minus optim.*, plus num_batches_tracked)
  if mmp-export -o $n.pt.safetensors $n.safetensors 2> err.txt; then
    python3 - $n.pt.safetensors $n.safetensors <<'PY' && ok "$n: mmp-export: the whole state dict" || fail "$n: mmp-export keys"
import json, struct, sys
def keys(f):
    b = open(f, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__")
    return set(h)
pt, ck = keys(sys.argv[1]), keys(sys.argv[2])
nbt = {k for k in pt if k.endswith(".num_batches_tracked")}
want = {k for k in ck if not k.startswith("optim.")} | {k.replace("running_mean", "num_batches_tracked") for k in ck if k.endswith("running_mean")}
sys.exit(not (pt == want and len(nbt) > 0))
PY
  else fail "$n: mmp-export: $(cat err.txt)"; fi
  # --init: one more epoch
  mmp-train-step --init $n.safetensors --out $n.more.safetensors img.mmp 2>/dev/null && [ "$(meta $n.more.safetensors epoch)" = 3 ] \
    || fail "$n: --init"
done

# normalized f32 [3,H,W] (mmp-augment --normalize with the backbone's mean/std): the same checkpoint
mmp-augment --normalize 0.5,0.4,0.3/0.25,0.2,0.3 img.mmp > norm.mmp 2>/dev/null || fail "augment --normalize"
if mmp-train-step --head mnv2-tail --backbone "$MN" $T --out f.safetensors norm.mmp 2> err.txt; then
  python3 - f.safetensors mnv2.safetensors <<'PY' && ok "f32 [3,H,W] records: the same weights as u8 records" || fail "f32 records give other weights"
import json, struct, sys
def ts(f):
    b = open(f, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__")
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items()}
sys.exit(ts(sys.argv[1]) != ts(sys.argv[2]))
PY
else
  fail "f32 records: $(cat err.txt)"
fi
mmp-eval --model mnv2.safetensors norm.mmp > /dev/null 2>&1 || fail "eval on f32 records"

# bad inputs
mkdir -p mixed/a mixed/b
cp "$MMP_ROOT"/tests/fixtures/image/clip/224x227.jpg mixed/a/
cp "$MMP_ROOT"/tests/fixtures/image/clip/500x375.jpg mixed/b/
mmp-decode mixed > mixed.mmp 2>/dev/null || fail "decode mixed"
bad "images of two sizes" "record 1: \"image\" is" mmp-train-step --head mnv2-tail --backbone "$MN" --from input --out bad.safetensors mixed.mmp
mmp-augment --normalize imagenet img.mmp > inorm.mmp 2>/dev/null || fail "augment --normalize imagenet"
bad "float images of another normalization" "normalized with mean" \
  mmp-train-step --head mnv2-tail --backbone "$MN" --from input --out bad.safetensors inorm.mmp
if mmp-train-step --head mnv2-tail --backbone "$MN" $T --allow-mixed --out mixed.safetensors inorm.mmp 2> err.txt; then
  grep -q "warning" err.txt && ok "--allow-mixed: a warning" || fail "--allow-mixed: no warning"
else fail "--allow-mixed: $(cat err.txt)"; fi
bad "eval: float images of another normalization" "normalized with mean" mmp-eval --model mnv2.safetensors inorm.mmp
mmp-decode --size 40 s.tar > img40.mmp 2>/dev/null
bad "eval: images of another size" "not 32x32" mmp-eval --model resnet.safetensors img40.mmp
mmp-decode --size 64 s.tar 2>/dev/null | mmp-embed --model "$MN" --layer features.15:flat > f15.mmp 2>/dev/null
bad "--no-freeze-bn on cached activations" "needs --from input" \
  mmp-train-step --head mnv2-tail --backbone "$MN" --no-freeze-bn --out bad.safetensors f15.mmp
mmp-train-step --head mnv2-tail --backbone "$MN" --epochs 1 --out f15.safetensors f15.mmp 2>/dev/null || fail "train on features.15"
bad "mmp-export of a tail on cached activations" "cannot be exported" mmp-export -o bad.safetensors f15.safetensors
bad "--from input on feature vectors" "no tensor \"image\"" mmp-train-step --head mnv2-tail --backbone "$MN" --from input --out bad.safetensors f15.mmp
[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all ok"
