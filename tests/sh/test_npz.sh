#!/usr/bin/env bash
# mmp-cat --npz: numpy.load reads the file; every array equals the stream
# (mmp-cat --full JSON and the Python reference reader), for every dtype
# (bf16 as float32), stored and --deflate; labels, ids, classes; fields whose
# shape varies, a field named "labels" and a truncated stream are refused
# with one line and leave no file (an existing one is kept); sklearn fits the
# arrays when it is installed.
set -u
B=${MMP_BUILD:?}
GEN="$B/tests/test_stream"
[ -x "$GEN" ] && [ -x "$B/mmp-cat" ] || { echo "mmp-cat or test_stream not built"; exit 77; }
PY=${MMP_PYTHON:-}
[ -n "$PY" ] || { echo "no python3 with numpy/msgpack/zstandard"; exit 77; }
export PYTHONPATH="$MMP_ROOT/formats/python"
fail=0
bad() { echo "FAIL: $*"; fail=1; }
expect_error() { # DESCRIPTION PATTERN cmd...
  local what=$1 pat=$2; shift 2
  "$@" >/dev/null 2>err.txt; local st=$?
  if [ $st -eq 0 ] || [ $st -ge 128 ]; then bad "$what: exit status $st"; fi
  [ "$(wc -l < err.txt)" -eq 1 ] || { bad "$what: not one stderr line:"; cat err.txt; }
  grep -q -- "$pat" err.txt || { bad "$what: stderr does not match '$pat':"; cat err.txt; }
}

# every dtype: test_stream's stream without its native-size image field
"$GEN" gen all.mmp 40 0 3 0 || exit 1
"$PY" - <<'EOP' || exit 1
import mmp_stream
h, recs = mmp_stream.load("all.mmp")
schema = {k: v for k, v in h["schema"].items() if k != "image"}
with mmp_stream.Writer("fixed.mmp", schema, classes=h["classes"], meta=h["meta"]) as w:
    for i, r in enumerate(recs):
        w.write({k: r["tensors"][k] for k in schema}, id=None if i == 3 else r["id"],
                label=-1 if i % 7 == 5 else r["label"], text=r["text"])
EOP
mmp-cat --npz fixed.npz fixed.mmp || bad "mmp-cat --npz failed"
mmp-cat --npz fixedz.npz --deflate fixed.mmp || bad "mmp-cat --npz --deflate failed"
mmp-cat --full fixed.mmp > fixed.json || bad "mmp-cat --full failed"
"$PY" - <<'EOP' || bad "arrays differ from the stream"
import json, numpy as np, mmp_stream
lines = [json.loads(l) for l in open("fixed.json")]
header, recs = lines[0], lines[1:]
_, ref = mmp_stream.load("fixed.mmp")
n = len(recs)
assert n == 40, n
want_dtype = {"u8": "uint8", "i32": "int32", "i64": "int64", "f16": "float16", "f32": "float32", "bf16": "float32"}
for path in ("fixed.npz", "fixedz.npz"):
    z = np.load(path)   # allow_pickle=False: plain arrays only
    assert sorted(z.files) == sorted(list(header["schema"]) + ["labels", "ids", "classes"]), z.files
    for name, f in header["schema"].items():
        a = z[name]
        assert str(a.dtype) == want_dtype[f["dtype"]], (name, a.dtype)
        assert list(a.shape) == [n] + f["shape"], (name, a.shape)
        # the JSON of mmp-cat --full: integers exact, floats to its printed precision
        js = np.array([r["tensors"][name]["data"] for r in recs], dtype=np.float64)
        if f["dtype"] in ("u8", "i32", "i64"):
            assert np.array_equal(a.astype(np.float64), js), name
        else:
            assert np.allclose(a.astype(np.float64), js, rtol=1e-6, atol=0, equal_nan=True), name
        # the reference reader: bit for bit
        refa = np.stack([r["tensors"][name] for r in ref])
        assert refa.dtype == a.dtype and np.array_equal(refa, a, equal_nan=True), name
    assert z["labels"].dtype == np.int64
    assert z["labels"].tolist() == [r["label"] if r["label"] is not None else -1 for r in recs]
    assert -1 in z["labels"].tolist()
    assert z["ids"].dtype.kind == "U" and z["ids"].tolist() == [r["id"] or "" for r in recs]
    assert z["ids"][3] == ""
    assert z["classes"].dtype.kind == "U" and z["classes"].tolist() == header["classes"]
print("ok")
EOP
[ "$(stat -c %s fixedz.npz)" -lt "$(stat -c %s fixed.npz)" ] || bad "--deflate is not smaller"

# images from mmp-decode --size: a [N, 32, 32, 3] u8 array; sklearn when installed
mmp-synth -n 60 --seed 4 -o s.tar && mmp-decode --size 32 s.tar > img.mmp || exit 1
mmp-cat --npz img.npz img.mmp || bad "mmp-cat --npz (images) failed"
mmp-cat --npz head.npz --head 7 img.mmp || bad "--npz --head failed"
"$PY" - <<'EOP' || bad "image arrays"
import numpy as np, mmp_stream
z = np.load("img.npz")
_, ref = mmp_stream.load("img.mmp")
assert z["image"].shape == (60, 32, 32, 3) and z["image"].dtype == np.uint8
assert np.array_equal(z["image"], np.stack([r["tensors"]["image"] for r in ref]))
assert z["labels"].tolist() == [r["label"] for r in ref]
assert np.load("head.npz")["image"].shape[0] == 7
EOP
if "$PY" -c 'import sklearn' 2>/dev/null; then
  "$PY" - <<'EOP' || bad "sklearn on the npz"
import numpy as np
from sklearn.linear_model import LogisticRegression
z = np.load("img.npz")
X = z["image"].reshape(len(z["image"]), -1).astype(np.float32) / 255
clf = LogisticRegression(max_iter=200).fit(X, z["labels"])
assert clf.predict(X).shape == z["labels"].shape
EOP
else
  echo "(sklearn not installed: the sklearn fit is skipped)"
fi

# refused: varying shapes (native-size images), a reserved name, a truncated stream
"$GEN" gen var.mmp 10 0 3 0 || exit 1
echo old > keep.npz
expect_error "varying shape" "var.mmp: record [0-9]*: field 'image' has shape .* one shape per field" \
  mmp-cat --npz keep.npz var.mmp
[ "$(cat keep.npz)" = old ] || bad "a failed --npz replaced the existing file"
"$PY" - <<'EOP' || exit 1
import numpy as np, mmp_stream
with mmp_stream.Writer("reserved.mmp", {"labels": {"dtype": "i64", "shape": [1]}}) as w:
    w.write({"labels": np.zeros(1, np.int64)})
EOP
expect_error "reserved name" "field 'labels'" mmp-cat --npz r.npz reserved.mmp
head -c 2000 img.mmp > trunc.mmp
expect_error "truncated" "trunc.mmp: .*truncated" mmp-cat --npz t.npz trunc.mmp
expect_error "npz with -o" "--npz cannot be combined" mmp-cat --npz t.npz -o x.mmp img.mmp
[ ! -e r.npz ] && [ ! -e t.npz ] || bad "a failed --npz left a file"
ls | grep -q '\.tmp\.' && bad "temporary file left: $(ls | grep '\.tmp\.')"
exit $fail
