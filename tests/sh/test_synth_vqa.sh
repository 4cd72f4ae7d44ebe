#!/usr/bin/env bash
# mmp-synth --mode captions / vqa: the same seed gives the same bytes (images,
# manifests, scenes), another seed other data; every question's answer and
# every caption's facts agree with scenes.jsonl (what the picture shows), as
# a separate reading of the question text finds them; each object's centre
# pixel in the written PNG has the object's colour; 10 annotators agree with
# the true answer most of the time but not always; the tar mode refuses the
# folder options and vice versa.
set -u
command -v mmp-synth >/dev/null || { echo "no mmp-synth on PATH"; exit 77; }
command -v python3 >/dev/null || { echo "no python3"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
mmp-synth --mode vqa --out a --train 60 --dev 10 --test 10 --answers 10 || fail "vqa"
mmp-synth --mode vqa --out b --train 60 --dev 10 --test 10 --answers 10 || fail "vqa again"
diff -r a b >/dev/null || fail "same seed, different bytes"
mmp-synth --mode vqa --out c --seed 1 --train 60 --dev 10 --test 10 --answers 10 || fail "vqa seed 1"
cmp -s a/train.jsonl c/train.jsonl && fail "seed 1 gives the same questions as seed 0"
cmp -s a/images/img000000.png c/images/img000000.png && fail "seed 1 gives the same image as seed 0"
mmp-synth --mode captions --out cap --train 40 --dev 0 --test 5 --format jpg || fail "captions"
[ -f cap/train.jsonl ] && [ -f cap/test.jsonl ] && [ ! -e cap/dev.jsonl ] || fail "captions splits"
[ "$(ls cap/images | grep -c '\.jpg$')" = 45 ] || fail "captions: 45 jpg images"
# the scenes of both modes are the same pictures (same seed, same index)
cmp -s <(cut -d'"' -f1-6 a/scenes.jsonl | head -70) <(mmp-synth --mode captions --out d --train 60 --dev 10 --test 10 && cut -d'"' -f1-6 d/scenes.jsonl | head -70) || fail "captions and vqa scenes differ"
cmp -s a/images/img000005.png d/images/img000005.png || fail "captions and vqa images differ"

python3 - <<'PY' || fail "answers/captions against the scenes"
import json, re, struct, zlib, collections
POS = ["top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"]
PHRASE = ["in the top left corner", "at the top", "in the top right corner", "on the left", "in the center",
          "on the right", "in the bottom left corner", "at the bottom", "in the bottom right corner"]
RGB = {"red": (210, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 210), "yellow": (230, 210, 40),
       "purple": (140, 50, 170), "orange": (240, 140, 30)}
def rc(o):
    c = POS.index(o["position"]); return c // 3, c % 3
def rel(a, b, r):
    (ar, ac), (br, bc) = rc(a), rc(b)
    if a is b: return False
    return {"to the left of": ac < bc, "to the right of": ac > bc, "above": ar < br, "below": ar > br,
            "next to": abs(ar - br) <= 1 and abs(ac - bc) <= 1,
            "bigger than": a["size"] == "large" and b["size"] == "small",
            "smaller than": a["size"] == "small" and b["size"] == "large"}[r]
RELS = "to the left of|to the right of|above|below|next to|bigger than|smaller than"
def png_pixels(path):
    d = open(path, "rb").read()
    assert d[:8] == b"\x89PNG\r\n\x1a\n"
    i, idat = 8, b""
    while i < len(d):
        n, t = struct.unpack(">I4s", d[i:i + 8]); body = d[i + 8:i + 8 + n]; i += 12 + n
        if t == b"IHDR": w, h, bd, ct = struct.unpack(">IIBB", body[:10]); assert bd == 8 and ct == 2
        if t == b"IDAT": idat += body
    raw, stride, rows, prev = zlib.decompress(idat), w * 3, [], bytearray(w * 3)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - 3] if x >= 3 else 0; b = prev[x]; c = prev[x - 3] if x >= 3 else 0
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + b) & 255
            elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line); prev = line
    return w, h, rows

def answer(q, objs):
    def find(colour=None, shape=None):
        m = [o for o in objs if (colour is None or o["color"] == colour) and (shape is None or o["shape"] == shape)]
        return m
    if m := re.fullmatch(rf"what (shape|color) is (?:the object )?({RELS}) the (\w+) (\w+)\?", q):
        b = find(m[3], m[4]); assert len(b) == 1, q
        a = [o for o in objs if rel(o, b[0], m[2])]; assert len(a) == 1, q
        return a[0]["shape" if m[1] == "shape" else "color"]
    if m := re.fullmatch(r"what color is the (\w+)\?", q):
        s = find(shape=m[1]); assert len(s) == 1, q; return s[0]["color"]
    if m := re.fullmatch(r"what color is the (\w+) (.+)\?", q):
        s = [o for o in find(shape=m[1]) if PHRASE[POS.index(o["position"])] == m[2]]; assert len(s) == 1, q; return s[0]["color"]
    if m := re.fullmatch(r"what (?:shape is|is the shape of) the (\w+) object\?", q):
        s = find(colour=m[1]); assert len(s) == 1, q; return s[0]["shape"]
    if q == "how many objects are there?": return str(len(objs))
    if m := re.fullmatch(r"how many (small|large) objects are there\?", q): return str(sum(o["size"] == m[1] for o in objs))
    if m := re.fullmatch(r"how many (\w+)s are there\?", q): return str(len(find(shape=m[1])))
    if m := re.fullmatch(r"is there an? (\w+) (\w+)\?", q): return "yes" if find(m[1], m[2]) else "no"
    if m := re.fullmatch(rf"is there an? (\w+) (\w+) ({RELS}) the (\w+) (\w+)\?", q):
        a, b = find(m[1], m[2]), find(m[4], m[5]); assert len(a) == 1 and len(b) == 1, q
        return "yes" if rel(a[0], b[0], m[3]) else "no"
    if m := re.fullmatch(r"where is the (\w+) (\w+)\?", q):
        a = find(m[1], m[2]); assert len(a) == 1, q; return a[0]["position"]
    raise AssertionError("unparsed question: " + q)

scenes = {}
for line in open("a/scenes.jsonl"):
    s = json.loads(line); scenes[s["image_id"]] = s
assert len(scenes) == 80
types, per_image, yes, agree, total = collections.Counter(), collections.Counter(), collections.Counter(), 0, 0
for split, n in (("train", 60), ("dev", 10), ("test", 10)):
    rows = [json.loads(l) for l in open(f"a/{split}.jsonl")]
    assert len(rows) == 6 * n, (split, len(rows))
    for r in rows:
        s = scenes[r["image_id"]]; assert s["split"] == split
        assert r["image"] == f"images/{r['image_id']}.png" and r["question_id"].startswith(r["image_id"] + "/q")
        want = answer(r["question"], s["objects"])
        assert r["answer"] == want, (r, want)
        assert len(r["answers"]) == 10
        c = collections.Counter(r["answers"]).most_common(1)[0]
        total += 10; agree += r["answers"].count(r["answer"])
        types[r["question_type"]] += 1; per_image[r["image_id"]] += 1
        if r["question_type"] == "yesno": yes[r["answer"]] += 1
for t in ("color", "shape", "count", "yesno", "position", "relation"): assert types[t] >= 40, types
assert yes["yes"] > 25 and yes["no"] > 25, yes
assert 0.75 < agree / total < 0.95, agree / total
assert set(per_image.values()) == {6}
# captions: every caption names every object; relations stated hold
for line in open("d/scenes.jsonl"):
    s = json.loads(line); objs = s["objects"]
    assert len(s["captions"]) == 5 and len(set(s["captions"])) == 5, s
    for cap in s["captions"]:
        for o in objs: assert f"{o['color']} {o['shape']}" in cap, (cap, objs)
        for m in re.finditer(rf"(\w+) (\w+) (?:is )?({RELS}) (?:an? |the )(?:(?:small|large) )?(\w+) (\w+)", cap):
            a, b = [o for o in objs if o["color"] == m[1] and o["shape"] == m[2]], [o for o in objs if o["color"] == m[4] and o["shape"] == m[5]]
            assert len(a) == 1 and len(b) == 1 and rel(a[0], b[0], m[3]), (cap, objs)
        for m in re.finditer(r"(small|large) (\w+) (\w+)", cap):
            assert [o for o in objs if o["color"] == m[2] and o["shape"] == m[3]][0]["size"] == m[1], cap
    for o in objs:
        assert 1 <= len(objs) <= 3
# pixels: the centre of each object has its colour (noise +-10)
for line in list(open("a/scenes.jsonl"))[:30]:
    s = json.loads(line); w, h, rows = png_pixels(f"a/images/{s['image_id']}.png"); assert (w, h) == (96, 96)
    for o in s["objects"]:
        x, y = int(o["x"]), int(o["y"]); px = rows[y][3 * x:3 * x + 3]
        assert all(abs(px[c] - RGB[o["color"]][c]) <= 11 for c in range(3)), (s["image_id"], o, list(px))
    bgx, bgy = [(cx, cy) for cy in (2, 48, 93) for cx in (2, 48, 93) if all(abs(cx - o["x"]) > 16 or abs(cy - o["y"]) > 16 for o in s["objects"])][0]
    px = rows[bgy][3 * bgx:3 * bgx + 3]; assert max(px) - min(px) < 25, list(px)  # gray
print("ok")
PY
# one answer by default
mmp-synth --mode vqa --out one --train 3 --dev 0 --test 0 --questions 2 || fail "one answer"
python3 -c "
import json
rows = [json.loads(l) for l in open('one/train.jsonl')]
assert len(rows) == 6 and all(r['answers'] == [r['answer']] for r in rows), rows" || fail "default: one answer"
# options of the other mode are refused with one line
out=$(mmp-synth --mode vqa --train 3 2>&1) && fail "vqa without --out"; echo "$out" | grep -q "needs --out DIR" || fail "msg: $out"
out=$(mmp-synth --out x 2>&1) && fail "tar mode with --out"; echo "$out" | grep -q "need --mode" || fail "msg: $out"
out=$(mmp-synth --mode vqa --out x -n 5 2>&1) && fail "vqa with --count"; [ "$(echo "$out" | wc -l)" = 1 ] || fail "msg: $out"
out=$(mmp-synth --mode captions --out x --answers 10 2>&1) && fail "captions with --answers"; echo "$out" | grep -q "for --mode vqa" || fail "msg: $out"
out=$(mmp-synth --mode vqa --out /proc/nope 2>&1) && fail "unwritable"; echo "$out" | grep -q "/proc/nope" || fail "msg: $out"
echo "ok"
