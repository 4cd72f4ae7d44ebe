#!/usr/bin/env bash
# Fusion heads (--head gated|attention) of mmp-train-step end to end, on a synthetic
# two-input set whose label needs both inputs (label = (a0 > 0) xor (b0 > 0)):
# - gated and attention heads reach a high dev accuracy, a linear head on a alone cannot;
# - mmp-train-step --dev, mmp-eval (logits/probs/pred; --fused);
# - an interrupted --resume run ends bit-identical to an uninterrupted one;
# - the checkpoint loads into PyTorch's FusionClassifier (when torch is there);
# - mmp-fuse --checkpoint HEAD (one stream --fields, and two streams joined by id)
#   reproduces exactly the fused vectors of the head (mmp-eval --fused);
# - bad inputs (missing pair field, dimension mismatch, provenance mismatch, bad
#   options): one "mmp-x: ..." line on stderr, non-zero exit, no checkpoint.
set -u
command -v mmp-train-step >/dev/null || { echo "mmp-train-step not built"; exit 77; }
[ -n "${MMP_PYTHON:-}" ] || { echo "no python with numpy/msgpack/zstandard"; exit 77; }
[ -f "$MMP_ROOT/formats/python/mmp_stream.py" ] || { echo "no formats/python/mmp_stream.py"; exit 77; }
export PYTHONPATH="$MMP_ROOT/formats/python" PYTHONDONTWRITEBYTECODE=1
source "$MMP_ROOT/tests/sh/checks.sh"

"$MMP_PYTHON" - <<'PY' || { echo "FAIL: making inputs"; exit 1; }
import numpy as np, mmp_stream
def write(fn, n, seed, da=8, db=6, prov="IMG", tprov="TXT", fields=("embedding", "text_embedding"), ids=None):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, da)).astype(np.float32)
    B = rng.standard_normal((n, db)).astype(np.float32)
    y = ((A[:, 0] > 0) ^ (B[:, 0] > 0)).astype(int)
    meta = {"provenance": prov, "text_provenance": tprov, "text.field": "text_embedding"}
    sch, dims = {}, {"embedding": da, "text_embedding": db}
    for f in fields:
        sch[f] = {"dtype": "f32", "shape": [dims[f]]}
    with mmp_stream.Writer(fn, sch, classes=("same", "differ"), meta=meta) as w:
        for i in (ids if ids is not None else range(n)):
            rec = {}
            if "embedding" in fields: rec["embedding"] = A[i]
            if "text_embedding" in fields: rec["text_embedding"] = B[i]
            w.write(rec, id="r%05d" % i, label=int(y[i]))
write("train.mmp", 2000, 1)
write("dev.mmp", 400, 2)
write("dev_a.mmp", 400, 2, fields=("embedding",))                       # image side only
write("dev_b.mmp", 400, 2, fields=("text_embedding",))                  # text side
write("dev_brev.mmp", 400, 2, fields=("text_embedding",), ids=range(399, -1, -1))  # reversed
write("nopair.mmp", 50, 3, fields=("embedding",))
write("dev_db5.mmp", 100, 4, db=5)
write("dev_tprov.mmp", 100, 5, tprov="OTHER-TEXT-ENCODER")
write("dev_prov.mmp", 100, 6, prov="OTHER-IMAGE-MODEL")
PY

acc() { "$MMP_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["accuracy"])' "$1"; }
ge() { "$MMP_PYTHON" -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)' "$1" "$2"; }

# ---- learning: both fusion heads vs a linear head on a alone ----
common="--epochs 25 --batch-size 64 --lr 3e-3 --seed 1 --fuse-dim 32"
mmp-train-step --head linear $common --dev dev.mmp --out lin.safetensors train.mmp 2>lin.err || fail "linear head"
mmp-eval --model lin.safetensors --json lin.json dev.mmp > lin_pred.mmp 2>/dev/null || fail "eval linear"
for h in gated attention; do
  mmp-train-step --head $h --heads 4 $common --dev dev.mmp --out $h.safetensors --log $h.log train.mmp 2>$h.err || { cat $h.err; fail "train $h"; continue; }
  grep -q "$h head" $h.err || fail "$h: summary line does not name the head: $(cat $h.err)"
  grep -q '"dev_metric"' $h.log || fail "$h: --dev did not evaluate"
  mmp-eval --model $h.safetensors --fused --json $h.json dev.mmp > ${h}_pred.mmp 2>/dev/null || fail "eval $h"
  a=$(acc $h.json); l=$(acc lin.json)
  echo "dev accuracy: $h $a, linear on a alone $l"
  ge "$a" 0.90 && ok "$h head learns a xor b ($a)" || fail "$h head dev accuracy $a < 0.90"
  ge 0.65 "$l" || fail "linear head on a alone reaches $l (the label should need both inputs)"
  # eval writes logits/probs/pred (+ fused) and agrees with the best dev metric of training
  "$MMP_PYTHON" - "$h" <<'PY' || fail "$h: eval output"
import sys, json, numpy as np, mmp_stream
h = sys.argv[1]
rs = list(mmp_stream.Reader(h + "_pred.mmp"))
assert len(rs) == 400
for r in rs[:5]:
    t = r["tensors"]
    assert t["logits"].shape == (2,) and t["probs"].shape == (2,) and t["pred"].shape == (1,) and t["fused"].shape == (32,), t.keys()
    assert abs(float(t["probs"].sum()) - 1) < 1e-5 and int(t["pred"][0]) == int(np.argmax(t["logits"]))
best = max(json.loads(l)["dev_metric"] for l in open(h + ".log") if "dev_metric" in l)
acc = json.load(open(h + ".json"))["accuracy"]
assert abs(best - acc) < 1e-9, (best, acc)
PY
done

# ---- mmp-fuse --checkpoint HEAD: the same fused vectors, bit for bit ----
for h in gated attention; do
  mmp-fuse --mode $h --checkpoint $h.safetensors --fields embedding,text_embedding dev.mmp > ${h}_fused1.mmp 2>f.err || { cat f.err; fail "mmp-fuse --checkpoint $h (--fields)"; continue; }
  mmp-fuse --mode $h --checkpoint $h.safetensors dev_a.mmp dev_b.mmp > ${h}_fused2.mmp 2>f.err || { cat f.err; fail "mmp-fuse --checkpoint $h (two streams)"; continue; }
  mmp-fuse --mode $h --checkpoint $h.safetensors dev_a.mmp dev_brev.mmp > ${h}_fused3.mmp 2>f.err || { cat f.err; fail "mmp-fuse --checkpoint $h (two streams, reordered)"; continue; }
  "$MMP_PYTHON" - "$h" <<'PY' && ok "$h: mmp-fuse --checkpoint reproduces the head's fused vectors exactly" || fail "$h: mmp-fuse vs head"
import sys, numpy as np, mmp_stream
h = sys.argv[1]
ev = {r["id"]: r["tensors"]["fused"] for r in mmp_stream.Reader(h + "_pred.mmp")}
# same record order (the same blocks of 64 rows): the same bits; joined in another
# order the rows meet other rows in sgemm's blocks: equal to float rounding
for fn, exact in ((h + "_fused1.mmp", 1), (h + "_fused2.mmp", 1), (h + "_fused3.mmp", 0)):
    fz = {r["id"]: r["tensors"]["embedding"] for r in mmp_stream.Reader(fn)}
    assert sorted(fz) == sorted(ev), fn
    d = max(float(np.abs(fz[k] - ev[k]).max() / (1 + np.abs(ev[k]).max())) for k in ev)
    same = all(np.array_equal(fz[k], ev[k]) for k in ev)
    print(fn, "max |diff|/(1+max|h|)", d, "bit-identical", same)
    assert same if exact else d < 1e-5
PY
done
mmp-fuse --mode attention --checkpoint gated.safetensors --fields embedding,text_embedding dev.mmp > /dev/null 2>f.err && fail "mmp-fuse took a gated head as attention"
# mmp-fuse refuses inputs of another provenance than the trained head's (both sides), unless --allow-mixed
for d in dev_prov dev_tprov; do
  if mmp-fuse --mode gated --checkpoint gated.safetensors --fields embedding,text_embedding $d.mmp > /dev/null 2>f.err; then fail "mmp-fuse accepted $d"
  else grep -q "provenance mismatch" f.err && [ "$(wc -l < f.err)" -eq 1 ] && ok "mmp-fuse refuses $d (one line)" || { cat f.err; fail "mmp-fuse $d message"; }; fi
  mmp-fuse --allow-mixed --mode gated --checkpoint gated.safetensors --fields embedding,text_embedding $d.mmp > /dev/null 2>f.err && grep -q warning f.err || fail "mmp-fuse --allow-mixed $d"
done

# ---- PyTorch: the checkpoint loads into FusionClassifier (strict) and gives eval's logits ----
if "$MMP_PYTHON" -c 'import torch' 2>/dev/null; then
  "$MMP_PYTHON" - "$MMP_ROOT/tests/fixtures" <<'PY' && ok "PyTorch FusionClassifier.load_state_dict(strict) reproduces mmp-eval's logits" || fail "PyTorch interop"
import sys, json, struct, numpy as np, torch, mmp_stream
sys.path.insert(0, sys.argv[1])
from gen_train_fuse import AttentionClassifier, GatedClassifier
def load(fn):
    b = open(fn, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); meta = h.pop("__metadata__")
    sd = {k: torch.from_numpy(np.frombuffer(b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]], np.float32).reshape(v["shape"]).copy())
          for k, v in h.items() if not k.startswith("optim.")}
    return sd, meta
recs = list(mmp_stream.Reader("dev.mmp"))
a = torch.from_numpy(np.stack([r["tensors"]["embedding"] for r in recs]))
b = torch.from_numpy(np.stack([r["tensors"]["text_embedding"] for r in recs]))
for h in ("gated", "attention"):
    sd, meta = load(h + ".safetensors")
    m = GatedClassifier(8, 6, 32, 2) if h == "gated" else AttentionClassifier(8, 6, 32, int(meta["fuse.heads"]), 2)
    m.load_state_dict(sd, strict=True)
    m.eval()
    with torch.no_grad():
        z = m(a, b).numpy()
    ev = np.stack([r["tensors"]["logits"] for r in mmp_stream.Reader(h + "_pred.mmp")])
    d = float(np.abs(z - ev).max())
    print(h, "max |torch - mmp-eval| logits", d)
    assert d < 1e-4 * (1 + float(np.abs(z).max()))
PY
else
  echo "(no torch: PyTorch interop check skipped)"
fi

# ---- resume: interrupted == uninterrupted, bit for bit ----
rs="--head attention --heads 2 --fuse-dim 16 --epochs 4 --batch-size 100 --seed 3 --lr 2e-3 --schedule cosine --warmup 5 --clip-grad-norm 1"
mmp-train-step $rs --out full.safetensors train.mmp 2>/dev/null || fail "uninterrupted run"
mmp-train-step $rs --stop-after-epochs 1 --out part.safetensors train.mmp 2>/dev/null || fail "interrupted run"
mmp-train-step --resume part.safetensors --out part.safetensors train.mmp 2>/dev/null || fail "resume 2"
mmp-train-step --resume part.safetensors --epochs 4 --out part.safetensors train.mmp 2>/dev/null || fail "resume 3"
"$MMP_PYTHON" - <<'PY' && ok "interrupted + --resume == uninterrupted (weights, optimizer state, step)" || fail "resumed run differs"
import json, struct, numpy as np
def load(fn):
    b = open(fn, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); meta = h.pop("__metadata__")
    return {k: b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]] for k, v in h.items()}, meta
a, ma = load("full.safetensors"); b, mb = load("part.safetensors")
assert sorted(a) == sorted(b), (sorted(a), sorted(b))
assert any(k.startswith("optim.attn.") for k in a) and "classifier.weight" in a
bad = [k for k in a if a[k] != b[k]]
assert not bad, bad
for k in ("step", "epoch", "fuse.mode", "fuse.heads", "head", "heads", "fuse_dim"):
    assert ma[k] == mb[k], (k, ma[k], mb[k])
print("tensors", len(a), "step", ma["step"], "epoch", ma["epoch"])
PY

# ---- bad inputs: one line, non-zero exit, no checkpoint ----
expect_err() { # name, pattern, command...
  local name=$1 pat=$2; shift 2
  rm -f bad.safetensors bad.last.safetensors
  if "$@" > out.bin 2> err.txt; then fail "$name: exit 0"; return; fi
  if [ "$(wc -l < err.txt)" -ne 1 ] || ! grep -q "^mmp-[a-z-]*: " err.txt || ! grep -q -- "$pat" err.txt; then
    fail "$name: stderr is not one 'mmp-x: ...$pat...' line:"; cat err.txt; return
  fi
  if [ -e bad.safetensors ] || [ -e bad.last.safetensors ]; then fail "$name: left a checkpoint"; return; fi
  ok "$name: $(cat err.txt)"
}
expect_err "missing pair field" 'record 0: no tensor "text_embedding"' mmp-train-step --head gated --out bad.safetensors nopair.mmp
expect_err "missing --pair-field NAME" 'no tensor "txt"' mmp-train-step --head gated --pair-field txt --out bad.safetensors train.mmp
expect_err "dimension mismatch (dev)" '"text_embedding" has 5 values, the model expects 6' mmp-train-step --head gated --fuse-dim 8 --dev dev_db5.mmp --out bad.safetensors train.mmp
expect_err "text provenance mismatch (dev)" 'OTHER-TEXT-ENCODER' mmp-train-step --head attention --fuse-dim 8 --dev dev_tprov.mmp --out bad.safetensors train.mmp
expect_err "image provenance mismatch (dev)" 'OTHER-IMAGE-MODEL' mmp-train-step --head gated --fuse-dim 8 --dev dev_prov.mmp --out bad.safetensors train.mmp
expect_err "text provenance mismatch (resume)" 'OTHER-TEXT-ENCODER' mmp-train-step --resume gated.safetensors --epochs 30 --out bad.safetensors dev_tprov.mmp
expect_err "heads do not divide fuse-dim" 'not divisible' mmp-train-step --head attention --fuse-dim 30 --heads 4 --out bad.safetensors train.mmp
expect_err "--standardize" 'standardize' mmp-train-step --head gated --standardize --out bad.safetensors train.mmp
expect_err "pair loss on a fusion head" 'needs the pair head' mmp-train-step --head gated --loss contrastive --out bad.safetensors train.mmp
expect_err "resume with another --fuse-dim" 'fuse_dim' mmp-train-step --resume gated.safetensors --fuse-dim 64 --out bad.safetensors train.mmp
expect_err "eval: missing pair field" 'no tensor "text_embedding"' mmp-eval --model gated.safetensors nopair.mmp
expect_err "eval: dimension mismatch" 'the model expects 6' mmp-eval --model gated.safetensors dev_db5.mmp
expect_err "eval: text provenance mismatch" 'OTHER-TEXT-ENCODER' mmp-eval --model attention.safetensors dev_tprov.mmp
expect_err "eval --fused on a linear head" 'needs a fusion head' mmp-eval --model lin.safetensors --fused dev.mmp
expect_err "mmp-fuse: dimension mismatch" 'dimension mismatch' mmp-fuse --mode gated --checkpoint gated.safetensors --fields embedding,text_embedding dev_db5.mmp

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all ok"
