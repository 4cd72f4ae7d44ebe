"""The scratch vocabulary of mmp-train-step --head caption (text/wordlevel.h)
in Hugging Face tokenizers: OUT-stem.tokenizer.json, built from mmp-synth's
caption scenes, loads with tokenizers.Tokenizer.from_file; its order is the
documented one (<pad> <bos> <eos> <unk>, then the words of the lower-cased
captions split by \\w+|[^\\w\\s]+ with count >= --min-count, most frequent
first, ties in byte order); tokenizers' encode of each caption gives the ids
mmpipe's rule gives, and decode joins the words with spaces.
Skips (77) without tokenizers (looked for in $MMP_PEERS/hf too)."""
import collections
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.environ.get("MMP_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
peers = os.environ.get("MMP_PEERS", os.path.expanduser("~/.local/share/mmpipe-peers"))
sys.path[:0] = [os.path.join(peers, "hf")]
try:
    from tokenizers import Tokenizer
except Exception as e:  # noqa: BLE001
    print("SKIP: tokenizers not importable (%s)" % e)
    sys.exit(77)
MN = os.path.join(ROOT, "tests", "fixtures", "nn", "mnv2_w025.safetensors")
for b in ("mmp-synth", "mmp-decode", "mmp-embed", "mmp-train-step"):
    if not os.access(os.path.join(BUILD, b), os.X_OK):
        print("SKIP: %s not built" % b)
        sys.exit(77)


def run(*a):
    subprocess.run([os.path.join(BUILD, a[0])] + [str(x) for x in a[1:]], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


failures = 0
with tempfile.TemporaryDirectory() as d:
    run("mmp-synth", "--mode", "captions", "--out", d + "/syn", "--train", 60, "--dev", 1, "--test", 1, "--seed", 7)
    run("mmp-decode", "--manifest", d + "/syn/train.jsonl", "--size", 32, "-o", d + "/img.mmp")
    run("mmp-embed", "--model", MN, d + "/img.mmp", "-o", d + "/f.mmp")
    run("mmp-train-step", "--head", "caption", "--decoder-layers", 1, "--decoder-width", 16, "--decoder-heads", 2,
        "--min-count", 12, "--epochs", 0, "--out", d + "/cap.safetensors", d + "/f.mmp")
    caps = [c for line in open(d + "/syn/train.jsonl") for c in json.loads(line)["captions"]]
    cnt = collections.Counter(w for c in caps for w in re.findall(r"\w+|[^\w\s]+", c.lower()))
    words = sorted((w for w in cnt if cnt[w] >= 12), key=lambda w: (-cnt[w], w.encode()))
    want = ["<pad>", "<bos>", "<eos>", "<unk>"] + words
    tok = Tokenizer.from_file(d + "/cap.tokenizer.json")
    got = [tok.id_to_token(i) for i in range(tok.get_vocab_size())]
    if got != want:
        failures += 1
        print("FAIL: vocabulary order: %s ... vs %s ..." % (got[:12], want[:12]))
    ids_of = {w: i for i, w in enumerate(want)}
    nunk = 0
    for c in caps:
        mine = [ids_of.get(w, 3) for w in re.findall(r"\w+|[^\w\s]+", c.lower())]
        theirs = tok.encode(c).ids
        nunk += mine.count(3)
        if mine != theirs:
            failures += 1
            print("FAIL: %r: %s vs tokenizers %s" % (c, mine, theirs))
            break
        if tok.decode(theirs) != " ".join(want[i] for i in theirs if i > 3):
            failures += 1
            print("FAIL: decode %r: %r" % (c, tok.decode(theirs)))
            break
    print("%d captions, %d words in the vocabulary, %d unknown tokens" % (len(caps), len(words), nunk))
    if nunk == 0:
        failures += 1
        print("FAIL: no unknown word: --min-count untested")
sys.exit(1 if failures else 0)
