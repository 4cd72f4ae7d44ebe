#!/usr/bin/env bash
# mmp-report on generated captions and VQA predictions, end to end through the
# command line: streams written with the Python reader/writer (string lists
# "captions", "prediction", "answers", "qtype"); the JSON numbers equal
# pycocoevalcap's (tests/fixtures/capmetrics/scores_coco.json, raw captions in
# the stream) and the vqaEval.py reimplementation's (tests/fixtures/vqaeval);
# the HTML page embeds the image named by a record's id; bad input: one line.
set -u
command -v mmp-report >/dev/null || { echo "mmp-report not built"; exit 77; }
py=${MMP_PYTHON:-}
[ -n "$py" ] && "$py" -c 'import numpy, PIL' 2>/dev/null || { echo "no python3 with numpy and Pillow"; exit 77; }
F="$MMP_ROOT/tests/fixtures"
source "$MMP_ROOT/tests/sh/checks.sh" # refuse
fail() { echo "FAIL: $*"; exit 1; }
export PYTHONPATH="$MMP_ROOT/formats/python"

"$py" - "$F" <<'PY' || fail "writing the streams"
import json, sys
import numpy as np
from PIL import Image
from mmpipe.stream import Writer
F = sys.argv[1]
Image.fromarray((np.arange(16 * 12 * 3) % 251).astype(np.uint8).reshape(16, 12, 3)).save("img0.png")
d = json.load(open(F + "/capmetrics/scores_coco.json"))
with Writer("cap.mmp", {}) as w:
    for i, im in enumerate(d["images"]):
        w.write({}, id="img%d.png" % i, text=im["cand_raw"], strings={"captions": im["refs_raw"]})
with Writer("nocap.mmp", {}) as w:
    w.write({}, id="x", strings={"captions": ["a dog"]})
q = json.load(open(F + "/vqaeval/vqaeval.json"))
with Writer("vqa.mmp", {}, meta={"vqa.answers": json.dumps(["yes", "no", "2"])}) as w:
    for i, x in enumerate(q["questions"]):
        w.write({}, id="q%d" % i, text="question?",
                strings={"prediction": [x["prediction"]], "answers": x["answers"], "qtype": [x["qtype"]]})
PY

mmp-report --json cap.json --html cap.html --examples 3 cap.mmp > cap.txt || fail "mmp-report captions"
grep -q "^  CIDEr-D " cap.txt || { cat cap.txt; fail "no CIDEr-D line"; }
"$py" - "$F" <<'PY' || fail "caption numbers"
import json, sys
want = json.load(open(sys.argv[1] + "/capmetrics/scores_coco.json"))
got = json.load(open("cap.json"))["captions"]
pairs = [(got["Bleu_%d" % (k + 1)], want["bleu"][k]) for k in range(4)]
pairs += [(got["ROUGE_L"], want["rouge"]), (got["CIDEr"], want["cider"])]
for g, w in pairs:
    assert abs(g - w) <= 1e-12 * abs(w), (g, w)
assert got["n"] == len(want["images"]) and len(got["examples"]) == 3, got
PY
grep -q 'src="data:image/png;base64,iVBORw0KGgo' cap.html || fail "the id's image is not in the page"
[ "$(grep -c '<div class="ex">' cap.html)" -eq 3 ] || fail "not 3 examples"

mmp-report --json - vqa.mmp > vqa.json || fail "mmp-report VQA"
"$py" - "$F" <<'PY' || fail "VQA numbers"
import json, sys
want = json.load(open(sys.argv[1] + "/vqaeval/vqaeval.json"))
got = json.load(open("vqa.json"))["vqa"]
assert got["accuracy"] == want["overall"] and got["vqa_accuracy"] == want["overall"], got
for t, a in want["per_qtype"].items():
    assert got["per_question_type"][t]["accuracy"] == a, t
voc = {"yes", "no", "2"}
qs = want["questions"]
assert got["answer_vocabulary"]["predictions_outside"] == sum(q["prediction"] not in voc for q in qs)
assert got["answer_vocabulary"]["questions_unseen"] == sum(not (set(q["answers"]) & voc) for q in qs)
PY
mmp-report vqa.mmp | grep -q "^VQA accuracy (official evaluation) " || fail "VQA text"
"$py" -c '
from mmpipe.stream import Writer
with Writer("badvocab.mmp", {}, meta={"vqa.answers": "[1, 2]"}) as w:
    w.write({}, strings={"prediction": ["yes"], "answers": ["yes", "no"]})
' || fail "writing badvocab.mmp"
refuse 'badvocab.mmp: header metadata "vqa.answers"' mmp-report badvocab.mmp

refuse 'nocap.mmp: record 0: reference "captions" but no generated "text"' mmp-report nocap.mmp
echo ok
