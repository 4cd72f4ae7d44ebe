#!/usr/bin/env bash
# CLIP zero-shot and retrieval with a CLIP checkpoint as mmp-eval's model, on the
# tiny open_clip model with CLIP's real vocabulary (tests/fixtures/tx_models/
# clip_text_oc: both towers, 16 px images, patch 8):
#   mmp-decode | mmp-embed --layer proj, mmp-embed-text --lines --template x2,
#   mmp-eval --model CLIP --prompts: logits = exp(logit_scale) * cosine(image,
#   ensemble prompt), recomputed here with numpy from the streams and the weights;
#   retrieval recall@K over captioned images; the provenance refusals (another
#   layer, the pooled text output, another model's embeddings: one line, non-zero
#   exit; --allow-mixed warns); pipelines/zero-shot end to end.
set -u
command -v mmp-eval >/dev/null || { echo "mmp-eval not built"; exit 77; }
py=${MMP_PYTHON:-}
[ -n "$py" ] && "$py" -c 'import numpy' 2>/dev/null || { echo "no python3 with numpy"; exit 77; }
F="$MMP_ROOT/tests/fixtures"
source "$MMP_ROOT/tests/sh/checks.sh" # refuse
fail() { echo "FAIL: $*"; exit 1; }

mkdir -p oc
for f in open_clip_model.safetensors open_clip_config.json; do ln -sf "$F/tx_models/clip_text_oc/$f" oc/$f; done
ln -sf "$F/clip_tok/bpe_simple_vocab_16e6.txt.gz" oc/bpe_simple_vocab_16e6.txt.gz
mmp-synth --classes > classes.txt
mmp-synth -n 24 --seed 5 -o data.tar 2>/dev/null
mmp-decode --size 16 --interp bicubic --classes-from classes.txt data.tar 2>/dev/null > img.mmp || fail "decode"
mmp-embed --model oc img.mmp > emb.mmp 2>emb.err || { cat emb.err; fail "embed (default layer)"; }
grep -q . emb.err && { cat emb.err; fail "embed warned"; }
mmp-embed-text --model oc --lines --template 'a photo of a {}.' --template 'a {} thing' classes.txt > prompts.mmp || fail "prompts"
mmp-eval --model oc --prompts prompts.mmp --json zs.json emb.mmp > zs.mmp 2>zs.err || { cat zs.err; fail "zero-shot"; }
grep -q "zero-shot accuracy" zs.err || { cat zs.err; fail "no accuracy line"; }
# the same with the folder's weights file named directly
mmp-eval --model oc/open_clip_model.safetensors --prompts prompts.mmp emb.mmp 2>/dev/null > zs_file.mmp
cmp -s <(mmp-cat --full zs_file.mmp | sed 1d) <(mmp-cat --full zs.mmp | sed 1d) || fail "file vs folder: records differ"

mmp-cat --npz emb.npz emb.mmp && mmp-cat --npz prompts.npz prompts.mmp && mmp-cat --npz zs.npz zs.mmp || fail "npz"
"$py" - "$F/tx_models/clip_text_oc/open_clip_model.safetensors" <<'PY' || fail "logits differ from the CLIP formula"
import json, struct, sys
import numpy as np
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    e = h["logit_scale"]
    f.seek(8 + n + e["data_offsets"][0])
    ls = np.frombuffer(f.read(e["data_offsets"][1] - e["data_offsets"][0]), {"F32": "<f4", "F16": "<f2"}[e["dtype"]])
scale = float(np.exp(ls.astype(np.float64)[0]))
E = np.load("emb.npz"); P = np.load("prompts.npz"); Z = np.load("zs.npz")
img = E["embedding"].astype(np.float64); img /= np.linalg.norm(img, axis=1, keepdims=True)
pr = P["text_embedding"].astype(np.float64); pr /= np.linalg.norm(pr, axis=1, keepdims=True)
C = len(P["classes"]); assert pr.shape[0] == 2 * C, pr.shape
cls = np.stack([pr[P["labels"] == c].sum(0) for c in range(C)]); cls /= np.linalg.norm(cls, axis=1, keepdims=True)
want = scale * img @ cls.T
got = Z["logits"].astype(np.float64)
err = np.abs(got - want).max() / np.abs(want).max()
assert err < 1e-5, err
assert (Z["pred"].reshape(-1) == want.argmax(1)).all()
assert list(Z["labels"]) == list(E["labels"])
print("logits vs the CLIP formula: max rel err %.2e (scale %.4f)" % (err, scale))
PY

# retrieval: the captions through the text tower, recall@K both ways
mmp-embed-text --model oc emb.mmp > pairs.mmp || fail "captions"
mmp-eval --model oc --json ret.json pairs.mmp > proj.mmp 2>ret.err || { cat ret.err; fail "retrieval"; }
grep -q '"image_to_text"' ret.json && grep -q "text->image R@1" ret.err || { cat ret.json ret.err; fail "no recall"; }

# provenance: another layer, the pooled text output, another model
mmp-embed --model oc --layer pool img.mmp > pool.mmp 2>/dev/null || fail "embed pool"
refuse "another layer than the projected image embedding" mmp-eval --model oc --prompts prompts.mmp pool.mmp
mmp-embed-text --model oc --pooled --lines classes.txt > pooled.mmp || fail "pooled prompts"
refuse "pooled output" mmp-eval --model oc --prompts pooled.mmp emb.mmp
mkdir -p oc2
"$py" - "$F/tx_models/clip_text_oc/open_clip_model.safetensors" oc2/open_clip_model.safetensors <<'PY' || fail "oc2"
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
e = json.loads(b[8:8 + n])["logit_scale"]
b[8 + n + e["data_offsets"][0]] ^= 1  # another model: the same shapes, another logit scale
open(sys.argv[2], "wb").write(b)
PY
ln -sf "$PWD/oc/open_clip_config.json" oc2/; ln -sf "$PWD/oc/bpe_simple_vocab_16e6.txt.gz" oc2/
refuse "were not embedded with" mmp-eval --model oc2 --prompts prompts.mmp emb.mmp
mmp-eval --allow-mixed --model oc2 --prompts prompts.mmp emb.mmp > /dev/null 2>mixed.err || fail "--allow-mixed"
grep -q "(--allow-mixed)" mixed.err || { cat mixed.err; fail "--allow-mixed warning"; }

# the recipe
"$MMP_ROOT/pipelines/zero-shot" --help | grep -q "zero-shot" || fail "zero-shot --help"
"$MMP_ROOT/pipelines/zero-shot" --out zsp --size 16 --template 'a photo of a {}.' --template 'a {} thing' data.tar oc classes.txt > zsp.txt 2> zsp.err \
    || { cat zsp.err; fail "pipelines/zero-shot"; }
grep -q "weighted avg" zsp.txt && grep -q "image_to_text" zsp.txt || { cat zsp.txt; fail "pipelines/zero-shot output"; }
"$MMP_ROOT/pipelines/zero-shot" nope.tar oc classes.txt > /dev/null 2> miss.err && fail "missing input accepted"
[ "$(wc -l < miss.err)" -eq 1 ] && grep -q nope.tar miss.err || { cat miss.err; fail "missing input message"; }
echo "ok"
