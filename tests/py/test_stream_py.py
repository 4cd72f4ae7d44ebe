"""Reference Python reader (formats/python/mmp_stream.py) against the C library:
C -> Python and Python -> C round trips, truncation and corruption detection,
concatenation, plain msgpack after zstd -d."""
import io
import json
import os
import shutil
import subprocess
import sys
import zlib

import msgpack
import numpy as np
import zstandard

ROOT = os.environ.get("MMP_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(ROOT, "formats", "python"))
import mmp_stream  # noqa: E402

GEN = os.path.join(BUILD, "tests", "test_stream")
CAT = os.path.join(BUILD, "mmp-cat")
for exe in (GEN, CAT):
    if not os.access(exe, os.X_OK):
        print("SKIP: %s not built" % exe)
        sys.exit(77)

failures = 0


def check(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", msg)


def c_json(path, *args):
    out = subprocess.run([CAT, "--full", *args, path], check=True, capture_output=True).stdout
    return [json.loads(l) for l in out.decode().splitlines()]


def as_float(v):
    return np.array(v, dtype=np.float64)


# ---- C -> Python ------------------------------------------------------
subprocess.run([GEN, "gen", "c.mmp", "50", "0", "3", "4"], check=True)
header, recs = mmp_stream.load("c.mmp")
lines = c_json("c.mmp")
check(len(recs) == 50 and len(lines) == 51, "record count %d" % len(recs))
check(header["classes"] == ["cat", "dog", "ship"], "classes %r" % header["classes"])
check(header["schema"]["image"] == {"dtype": "u8", "shape": [-1, -1, 3]}, "schema image")
check(header["meta"]["note"] == "ünïcode \"quoted\"\n", "meta note")
check(lines[0]["schema"] == header["schema"] and lines[0]["meta"] == header["meta"], "header json")
with mmp_stream.Reader("c.mmp") as r:
    n = sum(1 for _ in r)
    check(n == 50 and r.skipped == 4, "skipped %d" % r.skipped)
np_dtypes = {"u8": np.uint8, "i32": np.int32, "i64": np.int64, "f16": np.float16,
             "f32": np.float32, "bf16": np.float32}
for rec, line in zip(recs, lines[1:]):
    check(rec["id"] == line["id"] and rec["text"] == line["text"], "id/text %r" % rec["id"])
    check(rec["label"] == (-1 if line["label"] is None else line["label"]), "label")
    for name, t in line["tensors"].items():
        a = rec["tensors"][name]
        check(list(a.shape) == t["shape"], "%s shape %s vs %s" % (name, a.shape, t["shape"]))
        check(a.dtype == np_dtypes[t["dtype"]], "%s dtype %s" % (name, a.dtype))
        want = np.array(t["data"])
        if t["dtype"] in ("u8", "i32", "i64"):
            check(np.array_equal(a.astype(np.int64), want.astype(np.int64)), "%s values" % name)
        else:
            # C prints %.9g of the float32 value: exact after rounding to float32
            check(np.array_equal(a.astype(np.float32), want.astype(np.float32)), "%s values" % name)
        if a.size:
            check(abs(float(a.astype(np.float64).mean()) - t["mean"]) <= 1e-6 * (1 + abs(t["mean"])),
                  "%s mean" % name)

# ---- plain msgpack after zstd -d ----------------------------------------
raw = open("c.mmp", "rb").read()
plain = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
objs = list(msgpack.Unpacker(io.BytesIO(plain), raw=False))
check(len(objs) == 52 and objs[0]["mmpipe"] == 1 and objs[-1]["end"] is True, "plain msgpack")
check(objs[-1]["count"] == 50 and objs[-1]["skipped"] == 4, "trailer")
crc = 0
for o in objs[1:-1]:
    crc = zlib.crc32(msgpack.packb(o, use_bin_type=True), crc)
check(crc == objs[-1]["checksum"], "checksum = crc32 of the records' msgpack bytes")
if shutil.which("zstd"):
    p = subprocess.run(["zstd", "-dc", "c.mmp"], capture_output=True, check=True).stdout
    check(p == plain, "zstd CLI output differs")

# ---- Python -> C --------------------------------------------------------
rng = np.random.default_rng(5)
schema = {"emb": {"dtype": "f32", "shape": [7]}, "img": {"dtype": "u8", "shape": [-1, 2]},
          "h": {"dtype": "f16", "shape": [3]}, "b": {"dtype": "bf16", "shape": [2]},
          "tok": {"dtype": "i64", "shape": [-1]}}
pyrecs = []
with mmp_stream.Writer("py.mmp", schema, classes=["a", "b"], meta={"program": "test"}) as w:
    for i in range(20):
        t = {"emb": rng.standard_normal(7).astype(np.float32),
             "img": rng.integers(0, 256, (i % 4, 2)).astype(np.uint8),
             "h": rng.standard_normal(3).astype(np.float16),
             "b": np.array([1.5, -2.25 * i], dtype=np.float32),
             "tok": np.arange(i, dtype=np.int64) - 2 ** 40}
        w.write(t, id="p%d" % i, label=i % 2 if i % 3 else -1, text="t%d" % i if i % 2 else None)
        pyrecs.append(t)
    w.skipped = 3
lines = c_json("py.mmp")
check(len(lines) == 21, "C read %d lines of the Python stream" % len(lines))
for i, (t, line) in enumerate(zip(pyrecs, lines[1:])):
    check(line["id"] == "p%d" % i, "id")
    check(line["label"] == (i % 2 if i % 3 else None), "label")
    check(line["text"] == ("t%d" % i if i % 2 else None), "text")
    for name, a in t.items():
        got = np.array(line["tensors"][name]["data"])
        check(list(got.shape) == list(a.shape) or a.size == 0, "%s shape" % name)
        if a.size:
            check(np.array_equal(got.astype(a.dtype), a), "%s values (record %d)" % (name, i))
out = subprocess.run([CAT, "--count", "py.mmp", "c.mmp"], capture_output=True)
check(out.returncode == 1 and b"schema mismatch" in out.stderr, "merge of different schemas must fail")
# C re-encodes the Python stream; the Python reader reads that back
subprocess.run([CAT, "-o", "re.mmp", "--level", "1", "py.mmp", "py.mmp"], check=True)
h2, r2 = mmp_stream.load("re.mmp")
check(len(r2) == 40, "re-encoded count")
with mmp_stream.Reader("re.mmp") as r:
    check(sum(1 for _ in r) == 40 and r.skipped == 6, "skipped after merge %d" % r.skipped)
check(np.array_equal(r2[25]["tensors"]["emb"], pyrecs[5]["emb"]), "re-encoded values")
check("mmp-cat" in h2["meta"].get("history", "") or "program" in h2["meta"], "stamped meta")

# ---- truncation at every byte offset, flipped bytes --------------------
subprocess.run([GEN, "gen", "small.mmp", "2", "0", "3"], check=True)
small = open("small.mmp", "rb").read()
undetected = []
for k in range(len(small)):
    try:
        mmp_stream.load(small[:k])
        undetected.append(k)
    except mmp_stream.StreamError as e:
        check(str(e).startswith("memory: "), "message format: %s" % e)
check(not undetected, "truncations not detected at %s" % undetected[:10])
for msg, data in [("empty input", b""), ("bad zstd magic", b"hello world, not zstd"),
                  ("not an mmp stream", zstandard.ZstdCompressor().compress(msgpack.packb([1, 2])))]:
    try:
        mmp_stream.load(data)
        check(False, "no error for " + msg)
    except mmp_stream.StreamError as e:
        check(msg in str(e), "%r not in %s" % (msg, e))
wrong = 0
for k in range(len(small)):
    b = bytearray(small)
    b[k] ^= 0x40
    try:
        _, rr = mmp_stream.load(bytes(b))
        _, ok = mmp_stream.load(small)
        same = len(rr) == len(ok) and all(
            x["id"] == y["id"] and all(np.array_equal(x["tensors"][n], y["tensors"][n]) for n in x["tensors"])
            for x, y in zip(rr, ok))
        wrong += not same
    except mmp_stream.StreamError:
        pass
check(wrong == 0, "%d flips gave different records" % wrong)

# ---- concatenation ------------------------------------------------------
subprocess.run([GEN, "gen", "c2.mmp", "5", "50", "1", "1"], check=True)
cat = open("c.mmp", "rb").read() + open("c2.mmp", "rb").read()
with mmp_stream.Reader(cat) as r:
    n = sum(1 for _ in r)
    check(n == 55 and r.skipped == 5, "concatenated count %d" % n)
try:
    mmp_stream.load(cat + open("py.mmp", "rb").read())
    check(False, "schema mismatch not detected")
except mmp_stream.StreamError as e:
    check("schema mismatch" in str(e) and "record 55" in str(e), str(e))

# ---- string lists both ways (formats/stream.md "strings") ------------------
strs = [{"captions": ["a red circle", "un cercle \u00e9", ""], "image_id": ["img7"]}, None, {"answers": []}]
with mmp_stream.Writer("strs.mmp", {"x": {"dtype": "f32", "shape": [1]}}) as w:
    for i, st in enumerate(strs):
        w.write({"x": np.array([i], dtype=np.float32)}, id="r%d" % i, strings=st)
lines = c_json("strs.mmp")
for st, line in zip(strs, lines[1:]):
    check(line.get("strings") == st, "C reads strings %r, wrote %r" % (line.get("strings"), st))
subprocess.run([CAT, "strs.mmp", "-o", "strs2.mmp"], check=True)
_, back = mmp_stream.load("strs2.mmp")
check([r.get("strings") for r in back] == strs, "C -> Python strings %r" % [r.get("strings") for r in back])

if failures:
    print("%d failures" % failures)
    sys.exit(1)
print("ok")
