#!/usr/bin/env bash
# The generic parts of mmp-train-step's loop:
# - --grad-accum K: K micro-batches of B give the weights of one batch of K*B
#   (max relative difference <= 1e-6; linear head with SGD+momentum, AdamW and
#   balanced class weights; the whole MobileNetV2 / ResNet --from input with
#   --freeze-bn), the same step count; micro-batches of B alone differ;
# - --skip-nonfinite: a huge --lr makes the loss NaN/Inf: by default one line
#   "FILE: step N (epoch E): loss is nan" and the last checkpoint unchanged; with
#   the flag the steps are skipped, counted on stderr, in the log and in the
#   checkpoint (skipped_steps); train-mode BN's running statistics stay finite;
# - --aug-*: the in-loop augmentation of u8 images gives bit-identical weights
#   to training on mmp-augment --seed S --epoch E's normalized output of the
#   same ops (epochs 1 and 2), -j 1 and -j 4 agree, the model's input is the
#   crop size, dev images are not augmented, bad values are one line;
# - the memory line of whole-backbone heads;
# - the optimizer state apart: OUT holds the weights (+ num_batches_tracked),
#   OUT.optim.safetensors the optim.* tensors; --init of OUT alone, or with
#   another save's .optim file: one line; heads on features keep optim.* inside.
set -u
command -v mmp-train-step >/dev/null || { echo "mmp-train-step not built"; exit 77; }
MN="$MMP_ROOT/tests/fixtures/nn/mnv2_w025.safetensors"
RN="$MMP_ROOT/tests/fixtures/nn/resnet18_w8.safetensors"
[ -f "$MN" ] && [ -f "$RN" ] || { echo "no tests/fixtures/nn networks"; exit 77; }
source "$MMP_ROOT/tests/sh/checks.sh"

mmp-synth -n 70 --seed 3 > s.tar 2>/dev/null || { echo "FAIL: mmp-synth"; exit 1; }
mmp-decode --size 32 s.tar > img.mmp 2>/dev/null || { echo "FAIL: decode"; exit 1; }
mmp-embed --model "$MN" img.mmp > f.mmp 2>/dev/null || { echo "FAIL: embed"; exit 1; }
mmp-synth -n 40 --seed 4 > s40.tar 2>/dev/null && mmp-decode --size 32 s40.tar > img40.mmp 2>/dev/null || { echo "FAIL: decode 40"; exit 1; }

# worst relative difference of the tensors of two checkpoints (max |a-b| / max |b| per tensor)
cmpst() { python3 - "$1" "$2" <<'PY'
import json, struct, sys
def ts(f):
    b = open(f, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    out = {}
    for k, v in h.items():
        raw = b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
        out[k] = struct.unpack("<%df" % (len(raw) // 4), raw) if v["dtype"] == "F32" else raw
    return out
a, b = ts(sys.argv[1]), ts(sys.argv[2])
if set(a) != set(b):
    print("inf keys"); sys.exit(0)
worst = 0.0
for k in a:
    if isinstance(a[k], bytes):
        worst = worst if a[k] == b[k] else float("inf"); continue
    m = max(max(abs(x) for x in b[k]), 1e-30)
    worst = max(worst, max(abs(x - y) for x, y in zip(a[k], b[k])) / m)
print("%.3g" % worst)
PY
}
le() { python3 -c "import sys; sys.exit(not float('$1') <= float('$2'))"; }
meta() { python3 - "$1" "$2" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
print(h["__metadata__"].get(sys.argv[2], "") if sys.argv[2] != "-" else " ".join(sorted(k for k in h if k != "__metadata__")))
PY
}

# ---- --grad-accum
C="--epochs 3 --seed 5"
for opt in "--optimizer sgd --momentum 0.9 --lr 0.05" "--optimizer adamw" "--class-weights balanced --optimizer sgd --lr 0.1"; do
  mmp-train-step $C $opt --batch-size 32 --out A.safetensors f.mmp 2>/dev/null || { fail "accum: $opt: batch 32"; continue; }
  mmp-train-step $C $opt --batch-size 8 --grad-accum 4 --out B.safetensors f.mmp 2>/dev/null || { fail "accum: $opt: 8 x 4"; continue; }
  mmp-train-step $C $opt --batch-size 8 --out C.safetensors f.mmp 2>/dev/null || { fail "accum: $opt: batch 8"; continue; }
  d=$(cmpst B.safetensors A.safetensors) dc=$(cmpst C.safetensors A.safetensors)
  if le "$d" 1e-6 && ! le "$dc" 1e-3 && [ "$(meta B.safetensors step)" = 9 ] && [ "$(meta A.safetensors step)" = 9 ]; then
    ok "linear $opt: 8 x 4 micro-batches vs one batch of 32: max rel diff $d (batches of 8: $dc); 9 steps"
  else fail "linear $opt: 8 x 4 vs 32: $d (batches of 8: $dc), steps $(meta B.safetensors step) $(meta A.safetensors step)"; fi
done
[ "$(meta B.safetensors grad_accum)" = 4 ] || fail "grad_accum not recorded"
[ -z "$(meta A.safetensors grad_accum)" ] || fail "grad_accum 1 recorded (checkpoints without the option must not change)"
# one optimizer step on 20 images (the random-weight fixtures amplify float rounding over
# several steps: ReLU6 thresholds), 5 x 4 micro-batches vs one batch of 20
mmp-synth -n 20 --seed 4 > s20.tar 2>/dev/null && mmp-decode --size 32 s20.tar > img20.mmp 2>/dev/null || fail "decode 20"
for net in mnv2-tail:$MN resnet-tail:$RN; do
  IFS=: read -r head B <<< "$net"
  C="--head $head --backbone $B --from input --freeze-bn --dropout 0 --epochs 1 --seed 5 --optimizer sgd --lr 0.1"
  mmp-train-step $C --batch-size 20 --out A.safetensors img20.mmp 2>/dev/null &&
    mmp-train-step $C --batch-size 5 --grad-accum 4 --out B.safetensors img20.mmp 2>/dev/null &&
    mmp-train-step $C --batch-size 5 --out C.safetensors img20.mmp 2>/dev/null || { fail "$head: accum runs"; continue; }
  d=$(cmpst B.safetensors A.safetensors) dc=$(cmpst C.safetensors A.safetensors)
  if le "$d" 1e-6 && ! le "$dc" 1e-3 && [ "$(meta B.safetensors step)" = 1 ]; then
    ok "$head --from input --freeze-bn: 5 x 4 vs 20: max rel diff $d (batches of 5: $dc)"
  else fail "$head: 5 x 4 vs 20: $d (batches of 5: $dc), steps $(meta B.safetensors step)"; fi
done

# ---- non-finite loss
mmp-train-step --epochs 1 --batch-size 16 --out G.safetensors f.mmp 2>/dev/null || fail "train G"
cp G.safetensors G0.safetensors
rm -f bad.safetensors
bad "a NaN loss stops the run" "f.mmp: step [0-9]* (epoch 2): loss is nan" \
  mmp-train-step --init G.safetensors --lr 1e30 --optimizer sgd --epochs 2 --out G.safetensors f.mmp
cmp -s G.safetensors G0.safetensors && ok "the last good checkpoint stays as it was" || fail "the checkpoint changed after a NaN stop"
if mmp-train-step --init G.safetensors --lr 1e30 --optimizer sgd --epochs 2 --skip-nonfinite --log l.jsonl --out H.safetensors f.mmp 2> err.txt; then
  n=$(meta H.safetensors skipped_steps) s=$(meta H.safetensors step)
  logn=$(grep '"epoch":3' l.jsonl | grep -o '"skipped_steps":[0-9]*' | cut -d: -f2)
  # 2 epochs of 5 steps from step 5: the first update blows the weights up, later steps are all skipped
  if [ -n "$n" ] && [ "$n" -gt 0 ] && [ $((n + s)) = 15 ] && [ "$logn" = "$n" ] && grep -q "; $n steps skipped (non-finite)" err.txt; then
    ok "--skip-nonfinite: $n of 10 steps skipped (stderr, log, checkpoint); step $s"
  else fail "--skip-nonfinite: skipped $n, step $s, log $logn: $(tail -1 err.txt)"; fi
  mmp-eval --model G0.safetensors f.mmp > pred.mmp 2>/dev/null && mmp-report pred.mmp --log l.jsonl --json rep.json > /dev/null 2>&1 \
    || fail "mmp-report --log reads the log with skipped_steps"
else fail "--skip-nonfinite: $(cat err.txt)"; fi
[ -z "$(meta G0.safetensors skipped_steps)" ] || fail "skipped_steps recorded without --skip-nonfinite"
# train-mode BatchNorm: a skipped step leaves the running statistics as they were (finite)
if mmp-train-step --head mnv2-tail --backbone "$MN" --from input --batch-size 10 --epochs 2 --lr 1e30 --optimizer sgd \
     --skip-nonfinite --out N.safetensors img40.mmp 2> err.txt; then
  r=$(python3 - N.safetensors <<'PY'
import json, math, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); m = h.pop("__metadata__")
bad = [k for k, v in h.items() if "running" in k and not all(math.isfinite(x) for x in struct.unpack(
    "<%df" % ((v["data_offsets"][1] - v["data_offsets"][0]) // 4), b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]))]
print(m.get("skipped_steps", "0"), len(bad))
PY
)
  read -r ns nb <<< "$r"
  [ "$ns" -gt 0 ] && [ "$nb" = 0 ] && ok "train-mode BN: $ns steps skipped, the running statistics finite" \
    || fail "train-mode BN with skipped steps: $ns skipped, $nb non-finite running statistics"
else fail "--skip-nonfinite --from input: $(cat err.txt)"; fi

# ---- augmentation in the loop = mmp-augment --seed S --epoch E of the same ops
T="--head mnv2-tail --backbone $MN --from input --batch-size 10 --dropout 0 --seed 7"
A="--aug-rrc 28,0.5,1 --aug-hflip 0.5 --aug-jitter 0.2,0.2,0.2,0.05"
OPS="--rrc 28,scale=0.5:1 --hflip 0.5 --jitter 0.2,0.2,0.2,0.05 --normalize 0.5,0.4,0.3/0.25,0.2,0.3" # the backbone's mean/std
if mmp-train-step $T $A --epochs 2 --out L.safetensors img40.mmp 2> err.txt; then
  grep -q "^mmp-train-step: memory for a batch of 10 of 3x28x28 images: [0-9.]* MiB saved activations + [0-9.]* MiB backward buffers; [0-9.]* MiB parameters" err.txt \
    && ok "memory line: $(head -1 err.txt)" || fail "no memory line: $(cat err.txt)"
  [ "$(meta L.safetensors in_hw)" = 28x28 ] || fail "--aug-rrc 28: in_hw $(meta L.safetensors in_hw)"
  [ "$(meta L.safetensors aug_rrc)" = "28,0.5,1" ] || fail "aug_rrc not recorded"
  mmp-augment --seed 7 --epoch 0 $OPS img40.mmp > a0.mmp 2>/dev/null && mmp-augment --seed 7 --epoch 1 $OPS img40.mmp > a1.mmp 2>/dev/null || fail "mmp-augment"
  mmp-train-step $T --epochs 1 --out P.safetensors a0.mmp 2>/dev/null && mmp-train-step --init P.safetensors --out P2.safetensors a1.mmp 2>/dev/null || fail "train on a0/a1"
  mmp-train-step $T $A --epochs 1 --out L1.safetensors img40.mmp 2>/dev/null || fail "train 1 epoch"
  d1=$(cmpst L1.safetensors P.safetensors) d2=$(cmpst L.safetensors P2.safetensors)
  [ "$d1" = 0 ] && [ "$d2" = 0 ] && ok "epochs 1 and 2: the weights of training on mmp-augment --seed 7 --epoch 0 / 1 output, bit for bit" \
    || fail "in-loop vs mmp-augment: epoch 1 $d1, epoch 2 $d2"
  # a fixed augmentation for both epochs (epoch 0's pixels twice) gives other weights: the epochs differ
  mmp-train-step --init P.safetensors --out P0.safetensors a0.mmp 2>/dev/null
  [ "$(cmpst P0.safetensors P2.safetensors)" != 0 ] && ok "epoch 2's augmentation is not epoch 1's" || fail "epochs 1 and 2 augment alike"
  mmp-train-step $T $A --epochs 2 -j 1 --out j1.safetensors img40.mmp 2>/dev/null
  mmp-train-step $T $A --epochs 2 --threads 4 --out j4.safetensors img40.mmp 2>/dev/null
  cmp -s j1.safetensors j4.safetensors && cmp -s j1.safetensors L.safetensors && ok "-j 1, --threads 4: bit-identical" || fail "-j 1 / 4 differ with --aug"
  # the CIFAR recipe: RandomCrop(32, padding=4) + flip keeps 32x32; the dev set (not augmented) is 32x32
  mmp-train-step $T --aug-crop 32 --aug-pad 4 --aug-hflip 0.5 --dev img.mmp --epochs 1 --out cf.safetensors img40.mmp 2> err.txt \
    && [ "$(meta cf.safetensors in_hw)" = 32x32 ] && ok "--aug-crop 32 --aug-pad 4 --aug-hflip 0.5 with --dev" || fail "crop+pad: $(cat err.txt)"
else
  fail "train with --aug: $(cat err.txt)"
fi
bad "--aug on float images" "needs u8" mmp-train-step $T $A --out bad.safetensors a0.mmp
bad "--aug-crop larger than the padded image" "needs at least" mmp-train-step $T --aug-crop 48 --aug-pad 4 --out bad.safetensors img40.mmp
bad "--aug-pad without --aug-crop" "needs --aug-crop" mmp-train-step $T --aug-pad 4 --out bad.safetensors img40.mmp
bad "--aug-rrc bad value" "aug-rrc" mmp-train-step $T --aug-rrc 28,0.5 --out bad.safetensors img40.mmp
bad "--aug-jitter bad value" "aug-jitter" mmp-train-step $T --aug-jitter x --out bad.safetensors img40.mmp
bad "--aug on feature records" "no tensor \"image\"" mmp-train-step --head mnv2-tail --backbone "$MN" --from input --aug-hflip 0.5 --out bad.safetensors f.mmp
bad "dev images of another size than the crop" "the model was trained on 28x28" mmp-train-step $T $A --dev img.mmp --out bad.safetensors img40.mmp

# ---- the optimizer state apart (whole-backbone checkpoints)
if [ -f L.safetensors ] && [ -f L.optim.safetensors ]; then
  keys=$(meta L.safetensors -) okeys=$(meta L.optim.safetensors -)
  if ! grep -q "optim\." <<< "$keys" && grep -q "num_batches_tracked" <<< "$keys" && grep -q "^optim\." <<< "$(tr ' ' '\n' <<< "$okeys")" \
     && ! grep -qv "^optim\." <<< "$(tr ' ' '\n' <<< "$okeys")" && [ "$(meta L.safetensors optim_id)" = "$(meta L.optim.safetensors optim_id)" ]; then
    ok "OUT: weights + num_batches_tracked; OUT.optim.safetensors: the optim.* tensors (the same optim_id)"
  else fail "optimizer state apart: OUT keys $keys / optim keys $okeys"; fi
  cp L.safetensors L2.safetensors
  bad "--init without the .optim file" "L2.optim.safetensors is missing" mmp-train-step --init L2.safetensors --out bad.safetensors img40.mmp
  cp L1.optim.safetensors L2.optim.safetensors
  bad "--resume with another save's .optim file" "not the optimizer state of L2.safetensors" mmp-train-step --resume L2.safetensors --epochs 3 --out bad.safetensors img40.mmp
  # --resume of the pair continues the run: 1 + 1 epochs = 2 epochs in one run
  cp L1.optim.safetensors L1b.optim.safetensors; cp L1.safetensors L1b.safetensors
  mmp-train-step --resume L1b.safetensors --epochs 2 --out R.safetensors img40.mmp 2>/dev/null && [ "$(cmpst R.safetensors L.safetensors)" = 0 ] \
    && cmp -s R.optim.safetensors L.optim.safetensors && ok "--resume reads OUT and OUT.optim: the weights and state of the uninterrupted run" \
    || fail "--resume of a whole-backbone checkpoint differs from the uninterrupted run"
else
  fail "no L.safetensors / L.optim.safetensors"
fi
mmp-train-step --epochs 1 --out h.safetensors f.mmp 2>/dev/null || fail "train h"
[ ! -e h.optim.safetensors ] && grep -q "optim\.weight\.exp_avg" <<< "$(meta h.safetensors -)" \
  && ok "heads on features: optim.* inside, no .optim file" || fail "heads on features: the optimizer state moved"
[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all ok"
