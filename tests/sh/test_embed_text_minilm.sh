#!/usr/bin/env bash
# mmp-embed-text with the real all-MiniLM-L6-v2 (scripts/fetch-minilm.sh; $MMP_MODELS or
# $MMP_ROOT/models): the sentences of tests/fixtures/text/minilm_sentences.txt vs the
# embeddings recorded with sentence-transformers (minilm_ref.safetensors). Skips without it.
set -u
M=${MMP_MODELS:-$MMP_ROOT/models}/all-MiniLM-L6-v2
[ -f "$M/model.safetensors" ] || { echo "no $M (run scripts/fetch-minilm.sh)"; exit 77; }
command -v mmp-embed-text >/dev/null || { echo "mmp-embed-text not built"; exit 77; }
[ -n "${MMP_PYTHON:-}" ] || { echo "no python with numpy/msgpack/zstandard"; exit 77; }
export PYTHONPATH="$MMP_ROOT/formats/python"
S="$MMP_ROOT/tests/fixtures/text/minilm_sentences.txt"
mmp-embed-text --model "$M" --lines "$S" > a.mmp || exit 1
mmp-embed-text --model "$M" --lines --threads 2 --batch 2 "$S" > b.mmp || exit 1
mmp-embed-text --model "$M" --lines --threads 1 --batch 2 "$S" > c.mmp || exit 1
"$MMP_PYTHON" - <<'PY'
import json, os, struct, numpy as np, mmp_stream
with open(os.environ["MMP_ROOT"] + "/tests/fixtures/text/minilm_ref.safetensors", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); d = f.read()
v = h["embedding"]; ref = np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]], "<f4").reshape(v["shape"])
H, R = mmp_stream.load("a.mmp")
E = np.stack([r["tensors"]["text_embedding"] for r in R])
err = np.abs(E - ref).max()
print("reference:", h["__metadata__"]["source"], "max abs diff", err)
assert err < 1e-4 and H["meta"]["text.arch"] == "bert-L6-H384-A12" and H["meta"]["text.normalize"] == "true"
assert H["meta"]["text.weights_sha256"] == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
B = [r["tensors"]["text_embedding"].tobytes() for r in mmp_stream.load("b.mmp")[1]]
C = [r["tensors"]["text_embedding"].tobytes() for r in mmp_stream.load("c.mmp")[1]]
assert B == C, "thread count changed the output"
PY
