#!/usr/bin/env bash
# mmp-decode --size 224 | mmp-embed --layer logits on the three sample photos
# with the real MobileNetV2 weights: top-1 must be the classes in
# MMP_SHARED/models/README.md (parrot 88, hot_dog 934, cat_720p 285).
# Skipped without the shared data, mmp-decode or Python.
set -eu
S=${MMP_SHARED:-../shared}
W=$S/models/mobilenet_v2-imagenet.safetensors
[ -f "$W" ] || { echo "no shared data ($W)"; exit 77; }
command -v mmp-embed >/dev/null && command -v mmp-decode >/dev/null || { echo "mmp-decode or mmp-embed not built"; exit 77; }
[ -n "${MMP_PYTHON:-}" ] || { echo "no python"; exit 77; }
tar -cf samples.tar -C "$S/models/samples" parrot.jpg hot_dog.jpg cat_720p.jpg
mmp-decode --size 224 samples.tar | mmp-embed --model "$W" --layer logits --threads 2 > logits.mmp
mmp-cat --full logits.mmp > logits.jsonl
"$MMP_PYTHON" - logits.jsonl <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
hdr, recs = lines[0], lines[1:]
assert hdr["meta"]["embed.layer"] == "logits", hdr["meta"]
assert hdr["schema"]["embedding"]["shape"] == [1000], hdr["schema"]
want = {"parrot": 88, "hot_dog": 934, "cat_720p": 285}
seen = set()
for r in recs:
    v = r["tensors"]["embedding"]["data"]
    assert len(v) == 1000
    top = max(range(len(v)), key=lambda k: v[k])
    key = [k for k in want if k in r["id"]]
    assert len(key) == 1, r["id"]
    print(r["id"], "top-1", top, "want", want[key[0]])
    assert top == want[key[0]], (r["id"], top)
    seen.add(key[0])
assert seen == set(want), seen
PY
