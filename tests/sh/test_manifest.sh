#!/usr/bin/env bash
# mmp-decode --manifest (formats/manifest.md): the JSONL and CSV manifests of
# the same mmp-synth VQA data give the same records (ids, question as text,
# strings image_id / qtype / answers, pixels equal to mmp-decode of the image
# files through the plain path manifest), each image decoded once per run of
# rows (the count on stderr; interleaved rows decode again); --size applies;
# captions rows; VQA v2 answer objects and integer ids; bad rows (a question
# with no image, bad JSON, CSV quoting, an empty caption or answer, wrong
# types) give one line naming file and line; an unreadable image is a counted
# skip (fatal with --strict); mmp-embed reuses the embedding of the previous
# record of the same image, bit for bit.
set -u
for p in mmp-synth mmp-decode mmp-cat mmp-embed; do command -v $p >/dev/null || { echo "no $p on PATH"; exit 77; }; done
command -v python3 >/dev/null || { echo "no python3"; exit 77; }
R=${MMP_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
fail() { echo "FAIL: $*"; exit 1; }
recs() { mmp-cat --full "$1" | tail -n +2; } # the records as JSON lines (no header: its args differ)

mmp-synth --mode vqa --out v --train 8 --dev 2 --test 0 --questions 5 --answers 10 || fail "synth"
mmp-decode --manifest v/train.jsonl -j 3 -o j.mmp 2> j.err || fail "decode jsonl: $(cat j.err)"
grep -qx "mmp-decode: 40 records written from 8 decoded images" j.err || fail "jsonl count: $(cat j.err)"
[ "$(mmp-cat --header j.mmp | python3 -c 'import json,sys; print(json.load(sys.stdin)["meta"]["image.source"])')" = manifest-jsonl ] || fail "image.source"
# the same rows as CSV: answers joined by '|', columns in another order, an extra column
python3 - <<'PY' || fail "writing the CSV"
import csv, json
rows = [json.loads(l) for l in open("v/train.jsonl")]
with open("v/train.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["question", "answers", "notes", "image", "question_type", "image_id"])
    for r in rows:
        w.writerow([r["question"], "|".join(r["answers"]), "x, \"y\"", r["image"], r["question_type"], r["image_id"]])
# the plain path manifest of the existing reader: one row per image
seen = []
for r in rows:
    if r["image"] not in seen: seen.append(r["image"])
open("v/plain.csv", "w").write("path\n" + "".join(p + "\n" for p in seen))
PY
mmp-decode --manifest v/train.csv -o c.mmp 2> c.err || fail "decode csv: $(cat c.err)"
grep -q "40 records written from 8 decoded images" c.err || fail "csv count: $(cat c.err)"
cmp -s <(recs j.mmp) <(recs c.mmp) || fail "CSV and JSONL records differ"
mmp-decode v/plain.csv -o p.mmp 2>/dev/null || fail "plain decode"
python3 - <<'PY' || fail "records against the manifest and the plain decode"
import json, subprocess
def recs(f): return [json.loads(l) for l in subprocess.run(["mmp-cat", "--full", f], capture_output=True, text=True, check=True).stdout.splitlines()[1:]]
rows = [json.loads(l) for l in open("v/train.jsonl")]
got, plain = recs("j.mmp"), recs("p.mmp")
pix = {p["id"].split("/", 1)[1]: p["tensors"]["image"]["data"] for p in plain}
assert len(got) == len(rows) == 40
for r, g in zip(rows, got):
    assert g["id"] == r["question_id"] and g["text"] == r["question"], (g["id"], r)
    assert g["strings"] == {"image_id": [r["image_id"]], "qtype": [r["question_type"]], "answers": r["answers"]}, g["strings"]
    assert g["tensors"]["image"]["data"] == pix[r["image"]], r["image"]
    assert g["label"] is None
print("ok")
PY
# --size applies as to files; -j does not change the bytes
mmp-decode --manifest v/train.jsonl --size 24 -o s.mmp 2>/dev/null || fail "--size"
mmp-decode --manifest v/train.jsonl --size 24 -j 1 -o s1.mmp 2>/dev/null || fail "--size -j1"
cmp -s <(recs s.mmp) <(recs s1.mmp) || fail "-j changes the output"
mmp-decode v/plain.csv --size 24 -o ps.mmp 2>/dev/null || fail "plain --size"
[ "$(recs s.mmp | head -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["tensors"]["image"]["shape"])')" = "[24, 24, 3]" ] || fail "size 24"
cmp -s <(recs s.mmp | sed -n 1p | python3 -c 'import json,sys; print(json.load(sys.stdin)["tensors"]["image"]["data"])') \
       <(recs ps.mmp | sed -n 1p | python3 -c 'import json,sys; print(json.load(sys.stdin)["tensors"]["image"]["data"])') || fail "--size pixels"
# interleaved rows: each run decodes (documented: runs of consecutive rows)
python3 -c "
rows = open('v/train.jsonl').read().splitlines()
open('v/inter.jsonl', 'w').write('\n'.join(rows[q::5][i] for q in range(5) for i in range(8)) + '\n')"  # q0 of each image, then q1 ...
mmp-decode --manifest v/inter.jsonl -o i.mmp 2> i.err || fail "interleaved"
grep -q "40 records written from 40 decoded images" i.err || fail "interleaved count: $(cat i.err)"
# --shard: whole runs
mmp-decode --manifest v/train.jsonl --shard 1/2 -o sh.mmp 2> sh.err || fail "shard"
grep -q "20 records written from 4 decoded images" sh.err || fail "shard count: $(cat sh.err)"
[ "$(recs sh.mmp | python3 -c 'import json,sys; print(sorted({json.loads(l)["strings"]["image_id"][0] for l in sys.stdin}))')" = "['img000001', 'img000003', 'img000005', 'img000007']" ] || fail "shard runs"

# captions rows; VQA v2 answer objects; integer ids; ids without question_id
mmp-synth --mode captions --out cap --train 3 --dev 0 --test 0 || fail "synth captions"
cp v/images/img000000.png cap/images/x.png
cat >> cap/train.jsonl <<'J'
{"image": "images/x.png", "image_id": 42, "question": "what color?", "answers": [{"answer": "red", "answer_confidence": "yes", "answer_id": 1}, {"answer": "2"}], "qtype": "color"}
{"image": "images/x.png", "image_id": 42, "question": "how many?", "answer": 2}
{"image": "images/x.png", "image_id": 42, "question": "third?", "question_id": "qq7"}

{"image": "images/x.png", "caption": "one caption"}
J
mmp-decode --manifest cap/train.jsonl -o cap.mmp 2> cap.err || fail "captions: $(cat cap.err)"
grep -q "7 records written from 4 decoded images" cap.err || fail "captions count: $(cat cap.err)"
python3 - <<'PY' || fail "captions records"
import json, subprocess
got = [json.loads(l) for l in subprocess.run(["mmp-cat", "cap.mmp"], capture_output=True, text=True, check=True).stdout.splitlines()[1:]]
rows = [json.loads(l) for l in open("cap/train.jsonl") if l.strip()]
for r, g in zip(rows[:3], got):
    assert g["id"] == r["image_id"] and g["text"] is None and g["strings"] == {"image_id": [r["image_id"]], "captions": r["captions"]}, g
assert got[3]["id"] == "42/q0" and got[3]["text"] == "what color?" and got[3]["strings"] == {"image_id": ["42"], "qtype": ["color"], "answers": ["red", "2"]}, got[3]
assert got[4]["id"] == "42/q1" and got[4]["strings"] == {"image_id": ["42"], "answers": ["2"]}, got[4]
assert got[5]["id"] == "qq7" and got[5]["strings"] == {"image_id": ["42"]}, got[5]
assert got[6]["id"] == "images/x.png" and got[6]["strings"] == {"image_id": ["images/x.png"], "captions": ["one caption"]}, got[6]
print("ok")
PY

# bad input: one line naming the file and line, non-zero exit
bad() { # name, expected text, manifest body (file ext from name)
  printf '%s' "$3" > "v/$1"
  out=$(mmp-decode --manifest "v/$1" -o /dev/null 2>&1) && fail "$1: accepted"
  [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "$1: not one line: $out"
  case "$out" in *"$2"*) ;; *) fail "$1: '$out' lacks '$2'" ;; esac
}
bad noimg.jsonl "v/noimg.jsonl: line 2: a question with no image" '{"image": "images/img000000.png", "question": "a?"}
{"question": "what color?", "answer": "red"}
'
bad noimg.csv "v/noimg.csv: line 3: a question with no image" 'image,question,answers
images/img000000.png,a?,x|y
,b?,z
'
bad json.jsonl "v/json.jsonl: line 2, column" '{"image": "images/img000000.png"}
{"image": "images/img000000.png", "question": }
'
bad arr.jsonl "v/arr.jsonl: line 1: want a JSON object" '["images/img000000.png"]
'
bad type.jsonl "v/type.jsonl: line 1: \"answers\" is a string, expected a list of strings" '{"image": "images/img000000.png", "question": "q?", "answers": "red"}
'
bad item.jsonl "v/item.jsonl: line 1: \"captions\" item 2 is an integer" '{"image": "images/img000000.png", "captions": ["a", 3]}
'
bad emptycap.jsonl "v/emptycap.jsonl: line 1: empty caption (caption 2 of \"captions\")" '{"image": "images/img000000.png", "captions": ["a red circle", ""]}
'
bad emptycap.csv "v/emptycap.csv: line 2: empty caption (caption 2 of \"captions\")" 'image,captions
images/img000000.png,a red circle||two
'
bad emptyans.csv "v/emptyans.csv: line 2: empty answer" 'image,question,answers
images/img000000.png,q?,red|
'
bad emptyq.jsonl "v/emptyq.jsonl: line 1: empty question" '{"image": "images/img000000.png", "question": ""}
'
bad noq.jsonl "v/noq.jsonl: line 1: answers or a question type without a question" '{"image": "images/img000000.png", "answer": "red"}
'
bad quote.csv "v/quote.csv: line 2: unterminated quoted field" 'image,question
images/img000000.png,"what
'
bad nocol.csv "v/nocol.csv: line 1: CSV header has no image column" 'file,question
a.png,q?
'
bad empty.jsonl "v/empty.jsonl: no rows" '
'
bad dup.jsonl "v/dup.jsonl: line 1: \"image\" given twice" '{"image": "a.png", "path": "b.png"}
'
out=$(mmp-decode --manifest v/train.jsonl v/plain.csv 2>&1) && fail "manifest + input"; echo "$out" | grep -q "no INPUT" || fail "msg: $out"
out=$(mmp-decode --manifest v/nope.jsonl 2>&1) && fail "missing manifest"; echo "$out" | grep -q "v/nope.jsonl: No such file" || fail "msg: $out"

# an unreadable image: its rows are a counted skip (one warning per image), --strict fatal
python3 -c "
rows = open('v/train.jsonl').read().splitlines()
rows[5:10] = [r.replace('img000001.png', 'gone.png') for r in rows[5:10]]
open('v/gone.jsonl', 'w').write('\n'.join(rows) + '\n')"
printf 'not a png' > v/images/bad.png
sed -i '11,15s/img000002.png/bad.png/' v/gone.jsonl
mmp-decode --manifest v/gone.jsonl -o g.mmp 2> g.err || fail "skip: $(cat g.err)"
[ "$(grep -c 'skipped, 5 records' g.err)" = 2 ] || fail "skip warnings: $(cat g.err)"
grep -q "v/images/gone.png: cannot open: No such file or directory (line 6; skipped, 5 records)" g.err || fail "skip msg: $(cat g.err)"
grep -q "30 records written from 6 decoded images, 10 records skipped" g.err || fail "skip count: $(cat g.err)"
[ "$(mmp-cat --count g.mmp)" = 30 ] || fail "skip records"
out=$(mmp-decode --manifest v/gone.jsonl --strict -o /dev/null 2>&1) && fail "--strict accepted"
echo "$out" | grep -q "gone.png: cannot open: No such file or directory (line 6; --strict)" || fail "strict msg: $out"

# mmp-embed: the questions of one image run the model once, output bit for bit the same
M=$R/tests/fixtures/nn/resnet18_w8.safetensors
[ -f "$M" ] || { echo "no $M"; exit 77; }
mmp-decode --manifest v/train.jsonl --size 32 -o e.mmp 2>/dev/null || fail "decode 32"
mmp-embed --model "$M" --batch 3 -j 2 e.mmp -o er.mmp 2> er.err || fail "embed: $(cat er.err)"
grep -qx "mmp-embed: 32 records reused the previous record's embedding (same image_id and pixels)" er.err || fail "reuse count: $(cat er.err)"
mmp-embed --model "$M" --batch 3 -j 2 --no-reuse e.mmp -o en.mmp 2> en.err || fail "embed --no-reuse"
[ -s en.err ] && fail "--no-reuse reports: $(cat en.err)"
cmp -s <(recs er.mmp) <(recs en.mmp) || fail "reused embeddings differ"
# the same pixels under another image_id, or another image under the same id: computed
mmp-decode --manifest v/inter.jsonl --size 32 -o ei.mmp 2>/dev/null || fail "decode inter"
mmp-embed --model "$M" ei.mmp -o eir.mmp 2> eir.err || fail "embed inter"
[ -s eir.err ] && fail "interleaved rows reused: $(cat eir.err)"
echo ok
