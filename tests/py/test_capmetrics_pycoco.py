"""mmp-report's caption metrics vs pycocoevalcap 1.2 computed live (skips
without pycocoevalcap; the committed fixtures in tests/fixtures/capmetrics
cover CI): random caption sets of lower-case words (the tokenizer leaves them
as they are, so both sides score the same tokens), 1..5 references per image,
empty and repeated candidates, corpus and per-image numbers within 1e-12
relative; with Java present also PTBTokenizer vs mmp-report on captions
with punctuation (the corpus numbers of raw captions)."""
import json
import os
import random
import shutil
import subprocess
import sys

try:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
except ImportError:
    print("pycocoevalcap not installed (pip install --user pycocoevalcap==1.2)")
    sys.exit(77)

ROOT = os.environ.get("MMP_ROOT", ".")
sys.path.insert(0, os.path.join(ROOT, "formats", "python"))
from mmpipe.stream import Writer  # noqa: E402

BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
REPORT = os.path.join(BUILD, "mmp-report")
fails = 0


def close(a, b):
    return abs(a - b) <= 1e-12 * max(abs(b), 1e-300)


def check(name, cands, refs, raw=None):
    """mmp-report on a stream of (raw) captions vs pycocoevalcap on the tokenized ones"""
    global fails
    raw_c, raw_r = raw if raw else (cands, refs)
    path = name + ".mmp"
    with Writer(path, {}) as w:
        for i in range(len(cands)):
            w.write({}, id="img%d" % i, text=raw_c[i], strings={"captions": raw_r[i]})
    got = json.loads(subprocess.run([REPORT, "--json", "-", path], capture_output=True, text=True,
                                    check=True).stdout)["captions"]
    gts = {i: refs[i] for i in range(len(cands))}
    res = {i: [cands[i]] for i in range(len(cands))}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    want = {"Bleu_%d" % (k + 1): bleu[k] for k in range(4)}
    want.update({"ROUGE_L": float(rouge), "CIDEr": float(cider)})
    for k, v in want.items():
        if not close(got[k], v):
            print("%s: %s %.17g, pycocoevalcap %.17g" % (name, k, got[k], v))
            fails += 1
    print("%s: %d images, CIDEr %.6f BLEU-4 %.6f" % (name, len(cands), want["CIDEr"], want["Bleu_4"]))


rng = random.Random(7)
words = "a the dog cat man woman on in red blue with of is and two sitting standing near table".split()
for case in range(5):
    n = [1, 3, 20, 60, 300][case]
    voc = words[: rng.randint(4, len(words))]
    sent = lambda lo, hi: " ".join(rng.choice(voc) for _ in range(rng.randint(lo, hi)))  # noqa: E731
    refs = [[sent(1, 14) for _ in range(rng.randint(1, 5))] for _ in range(n)]
    cands = [sent(0, 16) if i % 9 else (refs[i][0] if i % 2 else "") for i in range(n)]
    check("rand%d" % case, cands, refs)

if shutil.which("java"):
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    fx = json.load(open(os.path.join(ROOT, "tests", "fixtures", "capmetrics", "tokenize.json")))
    caps = [c for c, _ in fx if c]
    imgs = [(caps[i], [caps[(i + k) % len(caps)] for k in range(1, 1 + i % 4 + 1)]) for i in range(len(caps))]
    flat = [c for c, _ in imgs] + [r for _, rs in imgs for r in rs]
    tok = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(flat)})
    tok = [tok[i][0] for i in range(len(flat))]
    cands, refs, k = tok[:len(imgs)], [], len(imgs)
    for _, rs in imgs:
        refs.append(tok[k:k + len(rs)])
        k += len(rs)
    check("ptb", cands, refs, raw=([c for c, _ in imgs], [rs for _, rs in imgs]))
else:
    print("no java: PTBTokenizer case not run")

if fails:
    sys.exit(1)
print("ok")
