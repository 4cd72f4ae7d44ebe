#!/usr/bin/env bash
# mmp-fuse (the program) end to end: join by id (files and named pipes, shuffled order), every
# mode vs numpy, --fields on one stream, learned checkpoints (--init), missing /
# duplicate / window overflow / dimension mismatch policies and messages.
set -u
command -v mmp-fuse >/dev/null || { echo "mmp-fuse not built"; exit 77; }
[ -n "${MMP_PYTHON:-}" ] || { echo "no python with numpy/msgpack/zstandard"; exit 77; }
[ -f "$MMP_ROOT/formats/python/mmp_stream.py" ] || { echo "no formats/python/mmp_stream.py"; exit 77; }
export PYTHONPATH="$MMP_ROOT/formats/python"
fail() { echo "FAIL: $*"; exit 1; }

"$MMP_PYTHON" - <<'PY' || fail "making inputs"
import numpy as np, mmp_stream
rng = np.random.default_rng(0)
A = rng.standard_normal((10, 6)).astype(np.float32); B = rng.standard_normal((10, 4)).astype(np.float32)
np.save("A.npy", A); np.save("B.npy", B)
def write(fn, schema, rows, meta, order, classes=("x", "y")):
    with mmp_stream.Writer(fn, schema, classes=classes, meta=meta) as w:
        for i in order:
            w.write({k: v for k, v in rows(i).items()}, id="id%02d" % i, label=i % 2, text="caption %d" % i)
write("A.mmp", {"embedding": {"dtype": "f32", "shape": [6]}}, lambda i: {"embedding": A[i]}, {"provenance": "IMG"}, range(10))
tmeta = {"text.field": "text_embedding", "text_provenance": "TXT", "provenance": "IMG-upstream"}
write("B.mmp", {"text_embedding": {"dtype": "f32", "shape": [4]}}, lambda i: {"text_embedding": B[i]}, tmeta, [1, 0, 2, 4, 3, 5, 6, 8, 7, 9])
write("Bmiss.mmp", {"text_embedding": {"dtype": "f32", "shape": [4]}}, lambda i: {"text_embedding": B[i]}, tmeta, [0, 1, 2, 3, 5, 6, 7, 8, 9])
write("Bdup.mmp", {"text_embedding": {"dtype": "f32", "shape": [4]}}, lambda i: {"text_embedding": B[i]}, tmeta, [0, 1, 2, 2, 3])
write("Brev.mmp", {"text_embedding": {"dtype": "f32", "shape": [4]}}, lambda i: {"text_embedding": B[i]}, tmeta, range(9, -1, -1))
write("B6.mmp", {"text_embedding": {"dtype": "f32", "shape": [6]}}, lambda i: {"text_embedding": np.concatenate([B[i], B[i][:2]])}, tmeta, range(10))
write("AB.mmp", {"embedding": {"dtype": "f32", "shape": [6]}, "text_embedding": {"dtype": "f16", "shape": [4]}},
      lambda i: {"embedding": A[i], "text_embedding": B[i].astype(np.float16)}, {"provenance": "IMG", "text.field": "text_embedding", "text_provenance": "TXT"}, range(10))
PY

mmp-fuse A.mmp B.mmp > concat.mmp || fail "concat"
mmp-fuse --l2 A.mmp B.mmp > concat_l2.mmp || fail "concat --l2"
mmp-fuse --mode weighted --weights 0.7,0.3 --l2 --project 5 --proj-init orthogonal A.mmp B6.mmp > w.mmp || fail "weighted"
mmp-fuse --mode sum --project 8 --proj-seed 3 A.mmp B.mmp > sum.mmp || fail "sum --project"
mmp-fuse --mode sum --project 8 --proj-seed 3 A.mmp B.mmp > sum2.mmp || fail "sum --project again"
mmp-fuse --fields embedding,text_embedding AB.mmp > single.mmp || fail "--fields"
mmp-fuse --init gated.safetensors --mode gated --dims 6,4,8 --seed 1 || fail "--init gated"
mmp-fuse --init attn.safetensors --mode attention --dims 6,4,8 --heads 2 --seed 1 || fail "--init attention"
mmp-fuse --mode gated --checkpoint gated.safetensors A.mmp B.mmp > gated.mmp || fail "gated"
mmp-fuse --mode attention --checkpoint attn.safetensors --dtype f16 A.mmp B.mmp > attn.mmp || fail "attention"
rm -f pa pb; mkfifo pa pb
cat B.mmp > pb & cat A.mmp > pa &
mmp-fuse pb pa --a-field text_embedding --b-field embedding > pipes.mmp || fail "named pipes"
wait

"$MMP_PYTHON" - <<'PY' || fail "outputs"
import json, struct, numpy as np, mmp_stream
A = np.load("A.npy"); B = np.load("B.npy")
def st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); d = f.read()
    return {k: np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]], "<f4").reshape(v["shape"]) for k, v in h.items() if k != "__metadata__"}
def load(fn):
    h, r = mmp_stream.load(fn)
    ids = [x["id"] for x in r]
    return h, r, ids, np.stack([x["tensors"]["embedding"].astype(np.float32) for x in r])
l2 = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
h, r, ids, E = load("concat.mmp")
order = [int(i[2:]) for i in ids]
assert sorted(order) == list(range(10)) and len(set(order)) == 10
assert h["schema"] == {"embedding": {"dtype": "f32", "shape": [10]}} and h["classes"] == ["x", "y"]
assert np.array_equal(E, np.concatenate([A[order], B[order]], 1))
assert [x["label"] for x in r] == [o % 2 for o in order] and r[0]["text"] == "caption %d" % order[0]
m = h["meta"]
assert m["provenance"] == "fuse(concat:l2=0;a=IMG;b=TXT)" and m["fuse.a_provenance"] == "IMG" and m["fuse.b_provenance"] == "TXT", m["provenance"]
assert m["fuse.b.provenance"] == "IMG-upstream"
h, r, ids, E = load("concat_l2.mmp"); o = [int(i[2:]) for i in ids]
assert np.abs(E - np.concatenate([l2(A[o]), l2(B[o])], 1)).max() < 1e-6
h, r, ids, E = load("w.mmp")
assert E.shape == (10, 5)
_, _, _, S1 = load("sum.mmp"); _, _, _, S2 = load("sum2.mmp")
assert S1.shape == (10, 8) and np.array_equal(S1, S2)
h, r, ids, E = load("single.mmp")
assert ids == ["id%02d" % i for i in range(10)] and np.abs(E - np.concatenate([A, B.astype(np.float16).astype(np.float32)], 1)).max() == 0
# gated: numpy reimplementation from the checkpoint
P = st("gated.safetensors")
h, r, ids, E = load("gated.mmp"); o = [int(i[2:]) for i in ids]
a, b = A[o], B[o]
pa = a @ P["proj_a.weight"].T + P["proj_a.bias"]; pb = b @ P["proj_b.weight"].T + P["proj_b.bias"]
g = 1 / (1 + np.exp(-(np.concatenate([a, b], 1) @ P["gate.weight"].T + P["gate.bias"])))
assert np.abs(E - (g * pa + (1 - g) * pb)).max() < 1e-5
assert len(h["meta"]["fuse.checkpoint_sha256"]) == 64
# attention: numpy MultiheadAttention over the 2 tokens
P = st("attn.safetensors")
h, r, ids, E = load("attn.mmp"); o = [int(i[2:]) for i in ids]
assert h["schema"]["embedding"]["dtype"] == "f16"
a, b = A[o], B[o]; d, nh = 8, 2; dh = d // nh
X = np.stack([a @ P["proj_a.weight"].T + P["proj_a.bias"], b @ P["proj_b.weight"].T + P["proj_b.bias"]], 1)  # N,2,d
QKV = X @ P["attn.in_proj_weight"].T + P["attn.in_proj_bias"]
Q, K, V = QKV[..., :d], QKV[..., d:2 * d], QKV[..., 2 * d:]
O = np.zeros_like(Q)
for hh in range(nh):
    s = slice(hh * dh, (hh + 1) * dh)
    S = Q[..., s] @ np.swapaxes(K[..., s], 1, 2) / np.sqrt(dh)
    Pm = np.exp(S - S.max(-1, keepdims=True)); Pm /= Pm.sum(-1, keepdims=True)
    O[..., s] = Pm @ V[..., s]
Y = (O @ P["attn.out_proj.weight"].T + P["attn.out_proj.bias"]).mean(1)
assert np.abs(E - Y).max() < 2e-3, np.abs(E - Y).max()
h, r, ids, E = load("pipes.mmp"); o = [int(i[2:]) for i in ids]
assert np.array_equal(E, np.concatenate([B[o], A[o]], 1))
PY

# policies
if mmp-fuse A.mmp Bmiss.mmp > /dev/null 2> err.txt; then fail "missing record accepted"; fi
grep -q 'A.mmp: record 5: id "id04" is not in Bmiss.mmp' err.txt || fail "missing message: $(cat err.txt)"
mmp-fuse --missing skip A.mmp Bmiss.mmp > skip.mmp 2> /dev/null || fail "--missing skip"
"$MMP_PYTHON" -c "
import mmp_stream
r = mmp_stream.Reader('skip.mmp'); recs = list(r)
assert len(recs) == 9 and r.skipped == 1 and 'id04' not in [x['id'] for x in recs]" || fail "skip count"
if mmp-fuse A.mmp Bdup.mmp > /dev/null 2> err.txt; then fail "duplicate accepted"; fi
grep -q 'Bdup.mmp: record 4: duplicate id "id02"' err.txt || fail "duplicate message: $(cat err.txt)"
if mmp-fuse --window 3 A.mmp Brev.mmp > /dev/null 2> err.txt; then fail "window overflow accepted"; fi
grep -q "window overflow" err.txt || fail "window message: $(cat err.txt)"
mmp-fuse --window 10 A.mmp Brev.mmp > /dev/null || fail "reversed order with a big window"
if mmp-fuse --mode sum A.mmp B.mmp > /dev/null 2> err.txt; then fail "sum of 6 and 4 accepted"; fi
grep -q "dimension mismatch" err.txt || fail "dimension message: $(cat err.txt)"
if mmp-fuse --mode gated --checkpoint gated.safetensors A.mmp B6.mmp > /dev/null 2> err.txt; then fail "checkpoint size mismatch accepted"; fi
grep -q "dimension mismatch" err.txt || fail "checkpoint dims message: $(cat err.txt)"
if mmp-fuse --mode gated A.mmp B.mmp > /dev/null 2> err.txt; then fail "gated without checkpoint accepted"; fi
grep -q "needs --checkpoint" err.txt || fail "$(cat err.txt)"
if mmp-fuse --mode attention --checkpoint gated.safetensors A.mmp B.mmp > /dev/null 2> err.txt; then fail "wrong checkpoint kind accepted"; fi
if mmp-fuse --a-field nope A.mmp B.mmp > /dev/null 2> err.txt; then fail "unknown field accepted"; fi
grep -q "no field 'nope'" err.txt || fail "$(cat err.txt)"
head -c 100 A.mmp > trunc.mmp
if mmp-fuse trunc.mmp B.mmp > /dev/null 2> err.txt; then fail "truncated input accepted"; fi
[ -s err.txt ] || fail "no message for a truncated input"
echo ok
