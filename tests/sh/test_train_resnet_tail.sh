#!/usr/bin/env bash
# The resnet-tail head (partly unfrozen torchvision ResNet) of mmp-train-step end to end,
# with the small random-weights ResNet-18 of tests/fixtures/nn (base width 8) on mmp-synth
# images:
# - mmp-embed --layer layer3:flat | mmp-train-step --head resnet-tail --backbone M
#   (input layer and size from the stream header), --dev, mmp-eval, mmp-report;
# - from layer2 (layer3 + layer4 trained) and from the block layer3.0;
# - an interrupted --resume run ends bit-identical to an uninterrupted one, and so do
#   runs with 1 and 4 threads;
# - the checkpoint holds torchvision's names; loaded into the same torchvision ResNet
#   (strict=False over the backbone) it gives mmp-eval's logits on the cached
#   activations (when torch is there);
# - bad inputs: one "mmp-x: ..." line on stderr, non-zero exit, no checkpoint.
set -u
command -v mmp-train-step >/dev/null || { echo "mmp-train-step not built"; exit 77; }
M="$MMP_ROOT/tests/fixtures/nn/resnet18_w8.safetensors"
MN="$MMP_ROOT/tests/fixtures/nn/mnv2_w025.safetensors"
[ -f "$M" ] || { echo "no $M"; exit 77; }
source "$MMP_ROOT/tests/sh/checks.sh"

mmp-synth -n 150 --seed 3 > s.tar || { echo "FAIL: mmp-synth"; exit 1; }
for L in layer3 layer2 layer3.0; do
  mmp-decode --size 64 s.tar 2>/dev/null | mmp-embed --model "$M" --layer $L:flat > all.$L.mmp 2>/dev/null || { echo "FAIL: embed $L"; exit 1; }
  mmp-split --ratio 0.8 --seed 0 all.$L.mmp -o fit.$L.mmp --rest dev.$L.mmp 2>/dev/null || { echo "FAIL: split"; exit 1; }
done
mmp-decode --size 64 s.tar 2>/dev/null | mmp-embed --model "$M" > pool.mmp 2>/dev/null || { echo "FAIL: embed"; exit 1; }

T="--head resnet-tail --backbone $M --batch-size 16 --lr 3e-3 --seed 1"
if mmp-train-step $T --epochs 4 --dev dev.layer3.mmp --out h.safetensors --log log.jsonl fit.layer3.mmp 2> err.txt; then
  ok "train (layer3 -> layer4 + fc): $(tail -1 err.txt)"
else
  fail "train: $(cat err.txt)"
fi
if mmp-eval --model h.safetensors dev.layer3.mmp > pred.layer3.mmp 2> err.txt && mmp-report pred.layer3.mmp > rep.txt 2>&1; then
  ok "eval + report: $(tail -1 err.txt)"
  grep -q accuracy rep.txt || fail "no accuracy in the report"
else
  fail "eval/report: $(cat err.txt rep.txt)"
fi
grep -q '"dev_metric"' log.jsonl || fail "no dev metric in the log"
for L in layer2 layer3.0; do
  if mmp-train-step $T --epochs 2 --out h.$L.safetensors fit.$L.mmp 2> err.txt && mmp-eval --model h.$L.safetensors dev.$L.mmp > pred.$L.mmp 2> /dev/null; then
    ok "from $L: $(tail -1 err.txt)"
  else
    fail "from $L: $(cat err.txt)"
  fi
done

# --resume: the same bits as an uninterrupted run (shuffling, AdamW state)
mmp-train-step $T --epochs 3 --out full.safetensors fit.layer3.mmp 2>/dev/null
mmp-train-step $T --epochs 3 --stop-after-epochs 1 --out part.safetensors fit.layer3.mmp 2>/dev/null
mmp-train-step --resume part.safetensors --out part.safetensors fit.layer3.mmp 2>/dev/null
if [ -s full.safetensors ] && cmp -s full.safetensors part.safetensors; then ok "--resume is bit-identical"; else fail "--resume differs from an uninterrupted run"; fi
mmp-train-step $T --epochs 2 --stop-after-epochs 1 --out part0.safetensors fit.layer3.0.mmp 2>/dev/null
mmp-train-step $T --epochs 2 --out full0.safetensors fit.layer3.0.mmp 2>/dev/null
mmp-train-step --resume part0.safetensors --out part0.safetensors fit.layer3.0.mmp 2>/dev/null
if [ -s full0.safetensors ] && cmp -s full0.safetensors part0.safetensors; then ok "--resume from layer3.0 is bit-identical"; else fail "--resume (layer3.0) differs"; fi
# the thread count does not change a bit
mmp-train-step $T --epochs 2 -j 1 --out j1.safetensors fit.layer2.mmp 2>/dev/null
mmp-train-step $T --epochs 2 --threads 4 --out j4.safetensors fit.layer2.mmp 2>/dev/null
if [ -s j1.safetensors ] && cmp -s j1.safetensors j4.safetensors; then ok "-j 1 and --threads 4: bit-identical checkpoints"; else fail "-j 1 and --threads 4 differ"; fi

# PyTorch: torchvision's ResNet (BasicBlock [2,2,2,2], base width 8) with the backbone's tensors, then the checkpoint's
if [ -n "${MMP_PYTHON:-}" ] && "$MMP_PYTHON" -c 'import torch, torchvision' 2>/dev/null; then
  for L in layer3 layer2 layer3.0; do
    H=h.$L.safetensors; [ $L = layer3 ] && H=h.safetensors
    PYTHONPATH="$MMP_ROOT/formats/python:$MMP_ROOT/tests/fixtures" PYTHONDONTWRITEBYTECODE=1 "$MMP_PYTHON" - "$M" $H dev.$L.mmp pred.$L.mmp <<'PY' > py.txt 2>&1
import sys
import numpy as np, torch, mmp_stream
from torchvision.models.resnet import BasicBlock
from gen_nn import NarrowResNet
from st_io import st_read
bb = {k: torch.from_numpy(v.astype(np.float32)) for k, v in st_read(sys.argv[1]).items()}
ck = {k: torch.from_numpy(v.astype(np.float32)) for k, v in st_read(sys.argv[2]).items() if not k.startswith("optim.")}
C = ck["fc.weight"].shape[0]
m = NarrowResNet(BasicBlock, [2, 2, 2, 2], 8, C)
m.load_state_dict({k: v for k, v in bb.items() if not k.startswith("fc.")}, strict=False)
res = m.load_state_dict(ck, strict=False)
assert not res.unexpected_keys, res.unexpected_keys
m.eval()
hdr, recs = mmp_stream.load(sys.argv[3])
x = torch.from_numpy(np.stack([r["tensors"]["embedding"] for r in recs]))
frm = sys.argv[2]
layer = [l for l in ("layer3.0", "layer2", "layer3") if ".%s." % l in frm or (l == "layer3" and frm == "h.safetensors")][0]
chans = {"layer2": 16, "layer3": 32, "layer3.0": 32}[layer]
s = int(round((x.shape[1] / chans) ** 0.5))
x = x.reshape(len(recs), chans, s, s)
with torch.no_grad():
    if layer == "layer2":
        x = m.layer3(x)
    elif layer == "layer3.0":
        x = m.layer3[1](x)
    x = m.layer4(x)
    logits = m.fc(torch.flatten(m.avgpool(x), 1)).numpy()
_, pr = mmp_stream.load(sys.argv[4])
ref = np.stack([r["tensors"]["logits"] for r in pr])
d = float(np.abs(logits - ref).max() / np.abs(ref).max())
print("%s: torchvision vs mmp-eval logits: max rel err %.3g" % (layer, d))
sys.exit(0 if d < 1e-5 else 1)
PY
    if [ $? -eq 0 ]; then ok "$(tail -1 py.txt)"; else fail "PyTorch interop ($L): $(cat py.txt)"; fi
  done
else
  echo "(no torch: PyTorch interop check skipped)"
fi

# the recipe pipelines/finetune-tail with a ResNet (--from layer3 -> --head resnet-tail)
mmp-synth --classes > classes.txt
mmp-synth -n 60 --seed 4 --first 5000 --prefix te- -o test.tar
if "$MMP_ROOT/pipelines/finetune-tail" --out ft --from layer3 --size 64 --epochs 2 --classes-from classes.txt s.tar test.tar "$M" > ft.txt 2> ft.err; then
  grep -q "weighted avg" ft.txt && [ -s ft/head.safetensors ] && [ -s ft/train.layer3.mmp ] && grep -q '"head":"resnet-tail"' ft/head.safetensors \
    && ok "finetune-tail --from layer3" || fail "finetune-tail (ResNet) output"
else cat ft.err; fail "finetune-tail --from layer3 failed"; fi

# bad inputs
bad "pooled features" "layer3:flat" mmp-train-step $T --out bad.safetensors pool.mmp
bad "no --backbone" "needs --backbone" mmp-train-step --head resnet-tail --out bad.safetensors fit.layer3.mmp
bad "--from disagrees" "layer3:flat activations" mmp-train-step $T --from layer2 --out bad.safetensors fit.layer3.mmp
bad "--in-hw wrong" "values" mmp-train-step $T --in-hw 3x3 --out bad.safetensors fit.layer3.mmp
bad "--standardize" "standardize" mmp-train-step $T --standardize --out bad.safetensors fit.layer3.mmp
bad "MobileNetV2 backbone" "not a torchvision ResNet" mmp-train-step --head resnet-tail --backbone "$MN" --out bad.safetensors fit.layer3.mmp
bad "bad --from" "from" mmp-train-step $T --from layer7 --out bad.safetensors fit.layer3.mmp
bad "eval on another layer" "provenance" mmp-eval --model h.safetensors dev.layer2.mmp
bad "resume with another --from" "cannot change" mmp-train-step --resume part.safetensors --from layer2 --out bad.safetensors fit.layer3.mmp

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all ok"
