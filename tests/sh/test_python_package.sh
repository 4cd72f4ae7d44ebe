#!/usr/bin/env bash
# formats/python as an installed package: pip install (no network: --no-deps,
# --no-build-isolation, Debian's numpy/msgpack/zstandard and setuptools) into a
# target folder, then mmpipe.load / records / Writer on a stream made by
# mmp-synth | mmp-decode, checked against mmp-cat --full; the old module
# mmp_stream stays importable from formats/python; StreamDataset where torch
# imports.
set -u
B=${MMP_BUILD:?}
[ -x "$B/mmp-cat" ] && [ -x "$B/mmp-decode" ] && [ -x "$B/mmp-synth" ] || { echo "programs not built"; exit 77; }
PY=${MMP_PYTHON:-}
[ -n "$PY" ] || { echo "no python3 with numpy/msgpack/zstandard"; exit 77; }
"$PY" -m pip --version >/dev/null 2>&1 || { echo "no pip for $PY (scripts/setup.sh installs python3-pip)"; exit 77; }
"$PY" -c 'import setuptools' 2>/dev/null || { echo "no setuptools for $PY"; exit 77; }
fail=0
bad() { echo "FAIL: $*"; fail=1; }
# install from a copy: the build leaves build/ and *.egg-info beside the sources
cp -r "$MMP_ROOT/formats/python" src
"$PY" -m pip install -q --no-deps --no-build-isolation --no-index --target site ./src >pip.log 2>&1 \
  || { cat pip.log; bad "pip install failed"; exit 1; }
[ -f site/mmpipe/__init__.py ] && ls -d site/mmpipe-*.dist-info >/dev/null || bad "package not installed"

mmp-synth -n 30 --seed 2 | mmp-decode --size 24 - > img.mmp || exit 1
mmp-cat --full img.mmp > img.json || exit 1
PYTHONPATH=$PWD/site "$PY" - <<'EOP' || bad "mmpipe on the installed package"
import json, os, numpy as np, mmpipe
assert os.path.dirname(mmpipe.__file__) == os.path.join(os.getcwd(), "site", "mmpipe"), mmpipe.__file__
lines = [json.loads(l) for l in open("img.json")]
header, recs = lines[0], lines[1:]
d = mmpipe.load("img.mmp")
assert len(d) == 30
x = d.features["image"]
assert x.dtype == np.uint8 and x.shape == (30, 24, 24, 3), x.shape
assert np.array_equal(x, np.array([r["tensors"]["image"]["data"] for r in recs], dtype=np.uint8))
assert d.labels.dtype == np.int64 and d.labels.tolist() == [r["label"] for r in recs]
assert d.ids.tolist() == [r["id"] for r in recs]
assert d.texts == [r["text"] for r in recs]
assert d.classes == header["classes"]
# records(): one at a time, the same values
for r, j in zip(mmpipe.records("img.mmp"), recs):
    assert r["id"] == j["id"] and np.array_equal(r["tensors"]["image"], np.array(j["tensors"]["image"]["data"]))
# Writer -> load round trip, with a bf16 field and a varying shape
with mmpipe.Writer("w.mmp", {"e": {"dtype": "bf16", "shape": [2]}, "v": {"dtype": "i32", "shape": [-1]}},
                   classes=["a", "b"]) as w:
    w.write({"e": np.array([1.5, -2.0], np.float32), "v": np.arange(3, dtype=np.int32)}, id="x", label=1)
    w.write({"e": np.array([0.25, 4.0], np.float32), "v": np.arange(5, dtype=np.int32)}, id="y")
d2 = mmpipe.load("w.mmp")
assert d2.features["e"].dtype == np.float32 and d2.features["e"].tolist() == [[1.5, -2.0], [0.25, 4.0]]
assert isinstance(d2.features["v"], list) and [len(v) for v in d2.features["v"]] == [3, 5]
assert d2.labels.tolist() == [1, -1] and d2.ids.tolist() == ["x", "y"] and d2.classes == ["a", "b"]
try:
    mmpipe.load(open("img.mmp", "rb").read()[:1000])
    raise AssertionError("a truncated stream was accepted")
except mmpipe.StreamError as e:
    assert "truncated" in str(e), e
print("ok")
EOP
# the compatibility module beside the package sources
PYTHONPATH=$MMP_ROOT/formats/python "$PY" -c '
import mmp_stream
h, recs = mmp_stream.load("img.mmp")
assert len(recs) == 30 and h["schema"]["image"]["shape"] == [24, 24, 3]' || bad "import mmp_stream"
PYTHONPATH=$MMP_ROOT/formats/python "$PY" "$MMP_ROOT/formats/python/mmp_stream.py" img.mmp | grep -q '"records": 30' \
  || bad "python3 mmp_stream.py FILE"
if PYTHONPATH=$PWD/site "$PY" -c 'import torch' 2>/dev/null; then
  PYTHONPATH=$PWD/site "$PY" - <<'EOP' || bad "StreamDataset"
import numpy as np, torch, mmpipe
ds = mmpipe.StreamDataset("img.mmp", "image")
assert isinstance(ds, torch.utils.data.IterableDataset)
xs, ys = zip(*ds)
d = mmpipe.load("img.mmp")
assert np.array_equal(torch.stack(xs).numpy(), d.features["image"]) and [int(y) for y in ys] == d.labels.tolist()
n = sum(len(y) for _, y in torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2))
assert n == 30, n
EOP
else
  echo "(torch not installed: StreamDataset is not tested)"
  PYTHONPATH=$PWD/site "$PY" -c '
import mmpipe
try:
    mmpipe.StreamDataset
    raise SystemExit("StreamDataset without torch")
except ImportError:
    pass' || bad "mmpipe.StreamDataset without torch should raise ImportError"
fi
exit $fail
