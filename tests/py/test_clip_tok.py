"""CLIP's BPE tokenizer (lib/text/bpe.c) against the live references:
  1. tests/fixtures/gen_clip_tok.py --check: the committed corpus (which
     test_text_bpe checks line by line) is what open_clip 2.24 + ftfy and
     CLIPTokenizerFast answer today;
  2. fresh seeded random strings (another seed than the corpus), caption-like
     lines, dense mixes of the characters the cleaning reacts to, and mojibake made from them (UTF-8 read as each single-byte encoding
     ftfy knows) through the C tokenizer (test_text_bpe --tokenize) and
     open_clip: the cleaned text, encode() and tokenize() must be identical.
Skips (77) when open_clip / ftfy / regex are not importable: they are looked
for on sys.path and in $MMP_PEERS/{oc,hf} (default ~/.local/share/mmpipe-peers,
scripts/setup.sh --bench installs them there)."""
import os
import random
import subprocess
import sys

ROOT = os.environ.get("MMP_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
peers = os.environ.get("MMP_PEERS", os.path.expanduser("~/.local/share/mmpipe-peers"))
extra = [os.path.join(peers, "oc"), os.path.join(peers, "hf")]
sys.path[:0] = extra
try:
    import ftfy
    from open_clip import tokenizer as oct
except Exception as e:  # noqa: BLE001
    print("SKIP: open_clip/ftfy not importable (%s)" % e)
    sys.exit(77)

DRIVER = os.path.join(BUILD, "tests", "test_text_bpe")
if not os.access(DRIVER, os.X_OK):
    print("SKIP: %s not built" % DRIVER)
    sys.exit(77)
GZ = os.path.join(ROOT, "tests", "fixtures", "clip_tok", "bpe_simple_vocab_16e6.txt.gz")
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import gen_clip_tok  # noqa: E402

failures = 0

# 1. the committed corpus against the live references
env = dict(os.environ, PYTHONPATH=os.pathsep.join(extra + [os.environ.get("PYTHONPATH", "")]))
r = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "fixtures", "gen_clip_tok.py"), "--check"],
                   env=env, capture_output=True, text=True)
print(r.stdout.strip(), r.stderr.strip()[-2000:])
if r.returncode != 0:
    failures += 1

# 2. fresh strings through C and open_clip
texts = gen_clip_tok.random_cases(300, seed=20240601)
rng = random.Random(7)
words = "a photo of the cat dog on red blue car in with and is A THE Dog's it's café naïve 3 42 & &amp; !".split()
texts += [" ".join(rng.choice(words) for _ in range(rng.randint(1, 40))) for _ in range(200)]
import ftfy.bad_codecs  # noqa: E402,F401
encs = ["latin-1", "sloppy-windows-1252", "sloppy-windows-1251", "sloppy-windows-1250", "sloppy-windows-1253",
        "sloppy-windows-1254", "iso-8859-2", "macroman", "cp437"]
for t in gen_clip_tok.random_cases(150, seed=99) + texts[300:400]:
    try:
        texts.append(t.encode("utf-8").decode(rng.choice(encs)))
    except UnicodeDecodeError:
        pass
# dense mixes of the characters the cleaning cares about (mojibake triggers, lost
# bytes, entities, escapes, casing, width, ligatures, combining marks)
alphabet = [0xc3, 0xc2, 0xe2, 0x20ac, 0x2122, 0xa0, 0x20, 0x61, 0x1a, 0xfffd, 0x80, 0x9d, 0x3a3, 0x345, 0x130,
            0x17f, 0x26, 0x3b, 0x23, 0x27, 0x2019, 0xff21, 0xfb01, 0x1b, 0x5b, 0x6d, 0x31, 0x301, 0x0a, 0x0d,
            0x3c, 0x6c, 0x74, 0xd0, 0xce, 0xed, 0xa9, 0xb0, 0x153, 0x2500]
for _ in range(300):
    texts.append("".join(chr(rng.choice(alphabet)) for _ in range(rng.randint(0, 60))))
inp = "".join(t.encode("utf-8").hex() + "\n" for t in texts)
out = subprocess.run([DRIVER, "--tokenize", GZ], input=inp, capture_output=True, text=True, check=True).stdout
rows = out.split("\n")[:-1]
assert len(rows) == len(texts), (len(rows), len(texts))
st = oct.SimpleTokenizer(GZ)


def refs(t):
    return oct._clean_lower(t).encode("utf-8").hex(), st.encode(t), st(t)[0].tolist()


def ids(v):
    return ",".join(map(str, v)) if v else "-"


same = moji = 0
for t, row in zip(texts, rows):
    clean, enc, tok = row.split("\t")
    c, e, k = refs(t)
    moji += ftfy.fix_text(t) != ftfy.fix_text(t, fix_encoding=False)
    if (clean, enc, tok) == (c, ids(e), ids(k)):
        same += 1
        continue
    failures += 1
    if failures < 10:
        print("FAIL: %r\n  open_clip clean %s\n  C         clean %s\n  open_clip ids %s\n  C         ids %s"
              % (t, c, clean, ids(e), enc))
print("fresh strings: %d (%d changed by ftfy's mojibake repair), identical to open_clip: %d"
      % (len(texts), moji, same))
sys.exit(1 if failures else 0)
