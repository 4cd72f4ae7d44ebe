#!/usr/bin/env bash
# mmp-embed-text end to end on the tiny random BERT (tests/fixtures/text/tiny_bert):
# embeddings vs the PyTorch reference (tiny_ref.safetensors), pass-through of the
# other fields, --drop-image, --lines/--template, thread-count determinism, f16,
# bad input (invalid UTF-8, missing text, bad model) with clear messages.
set -u
command -v mmp-embed-text >/dev/null || { echo "mmp-embed-text not built"; exit 77; }
[ -n "${MMP_PYTHON:-}" ] || { echo "no python with numpy/msgpack/zstandard"; exit 77; }
[ -f "$MMP_ROOT/formats/python/mmp_stream.py" ] || { echo "no formats/python/mmp_stream.py"; exit 77; }
export PYTHONPATH="$MMP_ROOT/formats/python:$MMP_ROOT/tests/sh"
M="$MMP_ROOT/tests/fixtures/text/tiny_bert"
fail() { echo "FAIL: $*"; exit 1; }

# input stream: the fixture sentences as record texts, with an 'image' field and labels
"$MMP_PYTHON" - <<'PY' || fail "making the input"
import os, numpy as np, mmp_stream
root = os.environ["MMP_ROOT"]
texts = [bytes.fromhex(l.strip()).decode() for l in open(root + "/tests/fixtures/text/sentences.txt") if l.strip() or True][:7]
with mmp_stream.Writer("in.mmp", {"image": {"dtype": "u8", "shape": [2]}}, classes=["a", "b"], meta={"provenance": "img"}) as w:
    for i, t in enumerate(texts):
        w.write({"image": np.array([i, 2 * i], dtype=np.uint8)}, id="r%d" % i, label=i % 2, text=t)
PY

mmp-embed-text --model "$M" --no-normalize in.mmp > mean.mmp || fail "embed (mean)"
mmp-embed-text --model "$M" --normalize --batch 3 in.mmp -o norm.mmp || fail "embed (normalized)"
mmp-embed-text --model "$M" --normalize --batch 2 --threads 1 --drop-image < in.mmp > t1.mmp || fail "threads 1"
mmp-embed-text --model "$M" --normalize --batch 2 --threads 2 --drop-image < in.mmp > t2.mmp || fail "threads 2"
mmp-embed-text --model "$M" --normalize --dtype f16 in.mmp > f16.mmp || fail "f16"
"$MMP_PYTHON" - <<'PY' || fail "outputs"
import json, os, struct, numpy as np, mmp_stream
root = os.environ["MMP_ROOT"]
def st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); d = f.read()
    return {k: np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]], dtype={"F32": "<f4", "I32": "<i4"}[v["dtype"]]).reshape(v["shape"])
            for k, v in h.items() if k != "__metadata__"}
ref = st(root + "/tests/fixtures/text/tiny_ref.safetensors")
for fn, key in (("mean.mmp", "mean"), ("norm.mmp", "normalized")):
    h, recs = mmp_stream.load(fn)
    assert h["schema"]["text_embedding"] == {"dtype": "f32", "shape": [32]}, h["schema"]
    assert "image" in h["schema"] and h["classes"] == ["a", "b"]
    m = h["meta"]
    assert m["text.arch"] == "bert-L2-H32-A4" and m["text.pooling"] == "mean" and m["provenance"] == "img", m
    assert m["text.normalize"] == ("true" if key == "normalized" else "false")
    assert m["text_provenance"].startswith("bert-L2-H32-A4:pooling=mean:normalize=") and len(m["text.weights_sha256"]) == 64
    assert m["text.max_length"] == "16"
    E = np.stack([r["tensors"]["text_embedding"] for r in recs])
    err = np.abs(E - ref[key]).max()
    assert err < 1e-4, (fn, err)
    assert [r["id"] for r in recs] == ["r%d" % i for i in range(7)] and [r["label"] for r in recs] == [i % 2 for i in range(7)]
    assert all(r["tensors"]["image"][1] == 2 * i for i, r in enumerate(recs))
    print(fn, "max abs diff vs PyTorch", err)
h1, r1 = mmp_stream.load("t1.mmp"); h2, r2 = mmp_stream.load("t2.mmp")
assert "image" not in h1["schema"] and "image" not in r1[0]["tensors"]
assert all(a["tensors"]["text_embedding"].tobytes() == b["tensors"]["text_embedding"].tobytes() for a, b in zip(r1, r2)) and len(r1) == 7
hf, rf = mmp_stream.load("f16.mmp")
assert hf["schema"]["text_embedding"]["dtype"] == "f16"
E16 = np.stack([r["tensors"]["text_embedding"].astype(np.float32) for r in rf])
assert np.abs(E16 - ref["normalized"]).max() < 2e-3
PY

# --lines with a template: id = line, label = line number, classes = the lines
printf 'hello world\nthe quick brown fox\n' | mmp-embed-text --model "$M" --lines --template "{}" > lines.mmp || fail "--lines"
printf 'world\nquick brown fox\n' | mmp-embed-text --model "$M" --lines --template "hello {}" > tpl.mmp || fail "--template"
"$MMP_PYTHON" - <<'PY' || fail "--lines outputs"
import numpy as np, mmp_stream
h, r = mmp_stream.load("lines.mmp"); h2, r2 = mmp_stream.load("tpl.mmp")
assert h["classes"] == ["hello world", "the quick brown fox"] and [x["label"] for x in r] == [0, 1]
assert [x["id"] for x in r2] == ["world", "quick brown fox"] and r2[0]["text"] == "hello world"
assert h2["meta"]["text.template"] == "hello {}"
# "hello world" both ways gives the same vector
assert r[0]["tensors"]["text_embedding"].tobytes() == r2[0]["tensors"]["text_embedding"].tobytes()
PY

# bad input: invalid UTF-8 in record 2, a record without text
"$MMP_PYTHON" - <<'PY' || fail "making bad inputs"
import msgpack, zlib, zstandard, numpy as np, mmp_stream
with mmp_stream.Writer("notext.mmp", {}) as w:
    w.write({}, id="a", text="fine"); w.write({}, id="b"); w.write({}, id="c", text="also fine")
# a record whose text is invalid UTF-8 (written by hand: the writer only takes str)
co = zstandard.ZstdCompressor(write_checksum=True).compressobj(); out = [co.compress(msgpack.packb({"mmpipe": 1, "schema": {}, "classes": [], "meta": {}}))]
crc = 0
for i, t in enumerate([b"good text", b"bad \xff text"]):
    b = msgpack.packb({"id": "x%d" % i, "text": t, "tensors": {}}, use_bin_type=False)
    crc = zlib.crc32(b, crc); out.append(co.compress(b))
out.append(co.compress(msgpack.packb({"end": True, "count": 2, "checksum": crc, "skipped": 0}))); out.append(co.flush())
open("badutf8.mmp", "wb").write(b"".join(out))
PY
if mmp-embed-text --model "$M" notext.mmp > /dev/null 2> err.txt; then fail "missing text accepted"; fi
grep -q "record 2 (id b): no text" err.txt || fail "missing-text message: $(cat err.txt)"
mmp-embed-text --model "$M" --missing-text skip notext.mmp > skip.mmp || fail "--missing-text skip"
"$MMP_PYTHON" -c "
import mmp_stream
r = mmp_stream.Reader('skip.mmp'); recs = list(r)
assert [x['id'] for x in recs] == ['a', 'c'] and r.skipped == 1, (len(recs), r.skipped)" || fail "skip count"
if [ "$("$MMP_PYTHON" -c 'import mmp_stream; list(mmp_stream.Reader("badutf8.mmp")); print("readable")' 2>/dev/null)" = readable ]; then
  if mmp-embed-text --model "$M" badutf8.mmp > /dev/null 2> err.txt; then fail "invalid UTF-8 accepted"; fi
  grep -q "UTF-8" err.txt || fail "utf8 message: $(cat err.txt)"
  mmp-embed-text --model "$M" --utf8 replace badutf8.mmp > /dev/null || fail "--utf8 replace"
else
  # the stream reader itself rejects non-UTF-8 text: then that is the clear error
  if mmp-embed-text --model "$M" badutf8.mmp > /dev/null 2> err.txt; then fail "invalid UTF-8 accepted"; fi
  [ -s err.txt ] || fail "no message for invalid UTF-8"
fi
echo "err: $(head -n 1 err.txt)"
# --lines with invalid UTF-8: error naming the line, or replaced (ids/classes stay valid UTF-8)
if printf 'ok line\nbad \377 line\n' | mmp-embed-text --model "$M" --lines > /dev/null 2> err.txt; then fail "invalid UTF-8 line accepted"; fi
grep -q "stdin: line 2: invalid UTF-8 at byte 4" err.txt || fail "line utf8 message: $(cat err.txt)"
printf 'ok line\nbad \377 line\n' | mmp-embed-text --model "$M" --lines --utf8 replace > rl.mmp || fail "--lines --utf8 replace"
"$MMP_PYTHON" -c "
import mmp_stream
h, r = mmp_stream.load('rl.mmp')
assert h['classes'] == ['ok line', 'bad \ufffd line'] and r[1]['id'] == 'bad \ufffd line', h['classes']" || fail "replaced line"
if mmp-embed-text --model /nonexistent in.mmp > /dev/null 2> err.txt; then fail "bad model accepted"; fi
grep -q "mmp-embed-text: /nonexistent" err.txt || fail "bad model message: $(cat err.txt)"
if mmp-embed-text --model "$M" --template x in.mmp > /dev/null 2>&1; then fail "--template without --lines accepted"; fi
mmp-embed-text --help | grep -q -- "--lines" || fail "--help"
echo ok
