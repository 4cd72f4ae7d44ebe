#!/usr/bin/env bash
# The mnv2-tail head (partly unfrozen MobileNetV2) of mmp-train-step end to end, with
# the small random-weights MobileNetV2 of tests/fixtures/nn (width 0.25) on mmp-synth images:
# - mmp-embed --layer features.15:flat | mmp-train-step --head mnv2-tail --backbone M
#   (input block and size from the stream header), --dev, mmp-eval, mmp-report;
# - an interrupted --resume run ends bit-identical to an uninterrupted one, and so do
#   runs with 1 and 4 threads;
# - the checkpoint holds torchvision's names; loaded into torchvision's
#   mobilenet_v2(width_mult=0.25) (strict=False over the backbone) it gives mmp-eval's
#   logits on the cached activations (when torch is there);
# - bad inputs (pooled features, no --backbone, wrong --from / --in-hw, a stream of another
#   layer at eval time): one "mmp-x: ..." line on stderr, non-zero exit, no checkpoint.
set -u
command -v mmp-train-step >/dev/null || { echo "mmp-train-step not built"; exit 77; }
M="$MMP_ROOT/tests/fixtures/nn/mnv2_w025.safetensors"
[ -f "$M" ] || { echo "no $M"; exit 77; }
source "$MMP_ROOT/tests/sh/checks.sh"

mmp-synth -n 150 --seed 3 > s.tar || { echo "FAIL: mmp-synth"; exit 1; }
mmp-decode --size 64 s.tar 2>/dev/null | mmp-embed --model "$M" --layer features.15:flat > all.mmp 2>/dev/null || { echo "FAIL: embed"; exit 1; }
mmp-decode --size 64 s.tar 2>/dev/null | mmp-embed --model "$M" --layer features.13:flat > all13.mmp 2>/dev/null || { echo "FAIL: embed"; exit 1; }
mmp-decode --size 64 s.tar 2>/dev/null | mmp-embed --model "$M" > pool.mmp 2>/dev/null || { echo "FAIL: embed"; exit 1; }
mmp-split --ratio 0.8 --seed 0 all.mmp -o fit.mmp --rest dev.mmp 2>/dev/null || { echo "FAIL: split"; exit 1; }
mmp-split --ratio 0.8 --seed 0 all13.mmp -o fit13.mmp --rest dev13.mmp 2>/dev/null || { echo "FAIL: split"; exit 1; }

T="--head mnv2-tail --backbone $M --batch-size 16 --lr 3e-3 --seed 1"
if mmp-train-step $T --epochs 4 --dev dev.mmp --out h.safetensors --log log.jsonl fit.mmp 2> err.txt; then
  ok "train (features.15 -> blocks 16..18): $(tail -1 err.txt)"
else
  fail "train: $(cat err.txt)"
fi
if mmp-eval --model h.safetensors dev.mmp > pred.mmp 2> err.txt && mmp-report pred.mmp > rep.txt 2>&1; then
  ok "eval + report: $(tail -1 err.txt)"
  grep -q accuracy rep.txt || fail "no accuracy in the report"
else
  fail "eval/report: $(cat err.txt rep.txt)"
fi
grep -q '"dev_metric"' log.jsonl || fail "no dev metric in the log"

# the stride-2 block features.14 too (from features.13: 4x4 at 64 px -> 2x2)
if mmp-train-step $T --epochs 2 --out h13.safetensors fit13.mmp 2> err.txt && mmp-eval --model h13.safetensors dev13.mmp > /dev/null 2>&1; then
  ok "from features.13: $(tail -1 err.txt)"
else
  fail "from features.13: $(cat err.txt)"
fi

# --resume: the same bits as an uninterrupted run (dropout, shuffling, AdamW state)
mmp-train-step $T --epochs 3 --out full.safetensors fit.mmp 2>/dev/null
mmp-train-step $T --epochs 3 --stop-after-epochs 1 --out part.safetensors fit.mmp 2>/dev/null
mmp-train-step --resume part.safetensors --out part.safetensors fit.mmp 2>/dev/null
if cmp -s full.safetensors part.safetensors; then ok "--resume is bit-identical"; else fail "--resume differs from an uninterrupted run"; fi
# the thread count does not change a bit
mmp-train-step $T --epochs 2 -j 1 --out j1.safetensors fit13.mmp 2>/dev/null
mmp-train-step $T --epochs 2 --threads 4 --out j4.safetensors fit13.mmp 2>/dev/null
if [ -s j1.safetensors ] && cmp -s j1.safetensors j4.safetensors; then ok "-j 1 and --threads 4: bit-identical checkpoints"; else fail "-j 1 and --threads 4 differ"; fi
# --init continues (the per-epoch loop)
mmp-train-step --init part.safetensors --out more.safetensors fit.mmp 2>/dev/null || fail "--init"

# PyTorch: torchvision's mobilenet_v2 with the backbone's tensors, then the checkpoint's
if [ -n "${MMP_PYTHON:-}" ] && "$MMP_PYTHON" -c 'import torch, torchvision' 2>/dev/null; then
  PYTHONPATH="$MMP_ROOT/formats/python" PYTHONDONTWRITEBYTECODE=1 "$MMP_PYTHON" - "$M" h.safetensors dev.mmp pred.mmp <<'PY' > py.txt 2>&1
import json, struct, sys
import numpy as np, torch, torchvision, mmp_stream
def st_load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", {})
    out = {}
    for k, v in h.items():
        a, e = v["data_offsets"]
        raw = b[8 + n + a: 8 + n + e]
        if v["dtype"] == "BF16":
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, {"F32": "<f4", "F16": "<f2", "I64": "<i8"}[v["dtype"]])
        out[k] = torch.from_numpy(arr.reshape(v["shape"]).copy())
    return out, meta
bb, _ = st_load(sys.argv[1])
ck, meta = st_load(sys.argv[2])
C = int(meta["num_classes"])
m = torchvision.models.mobilenet_v2(width_mult=0.25, num_classes=C)
m.load_state_dict({k: v for k, v in bb.items() if not k.startswith("classifier")}, strict=False)
res = m.load_state_dict(ck, strict=False)
assert not [k for k in res.unexpected_keys if not k.startswith("optim.")], res.unexpected_keys
m.eval()
K = int(meta["from"].split(".")[1])
h, w = map(int, meta["in_hw"].split("x"))
_, recs = mmp_stream.load(sys.argv[3])
x = torch.from_numpy(np.stack([r["tensors"]["embedding"] for r in recs]))
x = x.reshape(len(recs), -1, h, w)
with torch.no_grad():
    y = m.features[K + 1:](x)
    y = torch.nn.functional.adaptive_avg_pool2d(y, (1, 1)).flatten(1)
    logits = m.classifier(y).numpy()
_, pr = mmp_stream.load(sys.argv[4])
ref = np.stack([r["tensors"]["logits"] for r in pr])
d = float(np.abs(logits - ref).max() / np.abs(ref).max())
print("torchvision vs mmp-eval logits: max rel err %.3g" % d)
sys.exit(0 if d < 1e-5 else 1)
PY
  if [ $? -eq 0 ]; then ok "$(tail -1 py.txt)"; else fail "PyTorch interop: $(cat py.txt)"; fi
else
  echo "(no torch: PyTorch interop check skipped)"
fi

# the recipe pipelines/finetune-tail (twice: the second run reuses the cached activations)
P="$MMP_ROOT/pipelines/finetune-tail"
mmp-synth --classes > classes.txt
mmp-synth -n 60 --seed 4 --first 5000 --prefix te- -o test.tar
"$P" --help > help.txt 2>&1 && grep -q "finetune-tail" help.txt && ok "finetune-tail --help" || fail "finetune-tail --help"
if "$P" nope.tar test.tar "$M" > err.txt 2>&1; then fail "finetune-tail accepted a missing input"
else grep -q "nope.tar" err.txt && [ "$(wc -l < err.txt)" -eq 1 ] && ok "finetune-tail: missing input -> one line" || fail "finetune-tail missing-input message: $(cat err.txt)"; fi
if "$P" --out ft --from features.15 --size 64 --epochs 2 --classes-from classes.txt s.tar test.tar "$M" > ft.txt 2> ft.err; then
  grep -q "weighted avg" ft.txt && [ -f ft/report.html ] && [ -f ft/head.safetensors ] && [ -s ft/train.features.15.mmp ] && ok "finetune-tail" || fail "finetune-tail output"
  "$P" --out ft --from features.15 --size 64 --epochs 2 --classes-from classes.txt s.tar test.tar "$M" > ft2.txt 2> ft2.err
  grep -q "using cached" ft2.err && cmp -s <(sed '/^wall time/,$d' ft.txt) <(sed '/^wall time/,$d' ft2.txt) && ok "finetune-tail cache reused, same report" || fail "finetune-tail cache"
else cat ft.err; fail "finetune-tail failed"; fi

# bad inputs
bad "pooled features" "features.K:flat" mmp-train-step $T --out bad.safetensors pool.mmp
bad "no --backbone" "needs --backbone" mmp-train-step --head mnv2-tail --out bad.safetensors fit.mmp
bad "--from disagrees" "features.15 activations" mmp-train-step $T --from features.14 --out bad.safetensors fit.mmp
bad "--in-hw wrong" "values" mmp-train-step $T --in-hw 3x3 --out bad.safetensors fit.mmp
bad "--standardize" "standardize" mmp-train-step $T --standardize --out bad.safetensors fit.mmp
bad "no backbone file" "nonexistent" mmp-train-step --head mnv2-tail --backbone nonexistent.safetensors --out bad.safetensors fit.mmp
bad "eval on another layer" "provenance" mmp-eval --model h.safetensors dev13.mmp
bad "resume with another --from" "cannot change" mmp-train-step --resume part.safetensors --from features.13 --out bad.safetensors fit.mmp

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all ok"
