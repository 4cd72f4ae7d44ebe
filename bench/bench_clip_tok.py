#!/usr/bin/env python3
"""Tokens per second of CLIP's tokenizer: mmpipe (lib/text/bpe.c, through
build/tests/test_text_bpe --bench), open_clip 2.24's SimpleTokenizer.encode
(with ftfy) and Hugging Face's CLIPTokenizerFast (transformers 4.30.2,
tokenizers 0.13.3), on two sets of texts:
  corpus    the lines of tests/fixtures/clip_tok/corpus.txt (tricky and random Unicode)
  captions  3000 seeded caption-like English lines
Every tokenizer is timed after loading; open_clip twice (its BPE cache cold,
then warm: the same texts again), HF fast one call per text and one batch call.
Run from the repository root after `make`:
  PYTHONPATH=~/.local/share/mmpipe-peers/oc:~/.local/share/mmpipe-peers/hf /usr/bin/python3 bench/bench_clip_tok.py
"""
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
GZ = os.path.join(ROOT, "tests", "fixtures", "clip_tok", "bpe_simple_vocab_16e6.txt.gz")
DRIVER = os.path.join(os.environ.get("MMP_BUILD", os.path.join(ROOT, "build")), "tests", "test_text_bpe")


def corpus():
    with open(os.path.join(ROOT, "tests", "fixtures", "clip_tok", "corpus.txt"), encoding="utf-8") as f:
        return [bytes.fromhex(l.split("\t")[0]).decode("utf-8") for l in f if l.strip()]


def captions(n=3000):
    rng = random.Random(3)
    adj = "red small large old young happy wooden bright dark smiling sleepy fluffy".split()
    noun = "cat dog man woman child car bus tree house bird horse boat street table pizza".split()
    verb = "sitting standing running lying jumping parked walking eating".split()
    place = "on the grass|in a park|next to a building|on a beach|in the kitchen|at night|under a tree".split("|")
    out = []
    for _ in range(n):
        out.append("A %s %s %s %s, and a %s %s." % (rng.choice(adj), rng.choice(noun), rng.choice(verb),
                                                   rng.choice(place), rng.choice(adj), rng.choice(noun)))
    return out


def bench_c(texts, reps):
    inp = "".join(t.encode("utf-8").hex() + "\n" for t in texts)
    out = subprocess.run([DRIVER, "--bench", GZ, str(reps)], input=inp, capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[3]) / float(out[5])


def main():
    from open_clip import tokenizer as oct
    from transformers import CLIPTokenizerFast
    import gen_clip_tok
    tmp = tempfile.mkdtemp()
    gen_clip_tok.write_hf_files(GZ, tmp)
    hf = CLIPTokenizerFast(os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt"))
    print("tokens/s (tokens = SimpleTokenizer.encode's ids; one core)")
    for name, texts in (("corpus", corpus()), ("captions", captions())):
        st = oct.SimpleTokenizer(GZ)
        t0 = time.perf_counter()
        ntok = sum(len(st.encode(t)) for t in texts)
        cold = ntok / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        sum(len(st.encode(t)) for t in texts)
        warm = ntok / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for t in texts:
            hf(t)
        hf1 = ntok / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        hf(texts)
        hfb = ntok / (time.perf_counter() - t0)
        reps = max(1, 200000 // max(ntok, 1))
        c = bench_c(texts, reps)
        print("%-9s %5d texts %6d tokens | mmpipe %10.0f | open_clip cold %9.0f warm %9.0f | "
              "HF fast per text %9.0f batch %9.0f" % (name, len(texts), ntok, c, cold, warm, hf1, hfb))


if __name__ == "__main__":
    main()
