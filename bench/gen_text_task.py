#!/usr/bin/env python3
"""The "who is the seller" text task (bench/bench_text_task.sh): a relation that frozen
mean-pooled sentence embeddings + a linear head do not capture.

Each sentence names two people out of NAMES, an object and a sale, in one of TEMPLATES;
the label is the seller (8 classes, the names in order). Every sentence holds the seller
and the buyer, so the bag of words says which two names are in play but not which is
which: the answer depends on word order and on the verb (sold ... to / bought ... from /
was sold ... by / paid ... for ...). The seller is first in half of the templates and
second in the others, so "the first name" is right about half the time.

  gen_text_task.py OUTDIR [--train N] [--dev N] [--test N] [--seed S]
writes OUTDIR/train.mmp, dev.mmp, test.mmp (mmp text records: record text, label = the
seller's index, id = "<split>-<i>"; class names = NAMES; no tensors) and
OUTDIR/{train,dev,test}.jsonl (the same records, {"id","text","label"}).
Deterministic (random.Random(seed), splits drawn one after the other; a sentence
in two splits is redrawn, so the splits share no sentence).
"""
import argparse, json, os, random, sys

NAMES = ["alice", "bob", "carol", "david", "emma", "frank", "grace", "henry"]
OBJECTS = ["bike", "car", "house", "lamp", "piano", "book", "chair", "boat", "watch", "camera",
           "guitar", "table", "horse", "phone", "painting", "tractor", "violin", "tent", "clock", "radio"]
# (template, the seller is the first name?): {a} first name, {b} second name, {o} the object
TEMPLATES = [
    ("{a} sold a {o} to {b}.", True),
    ("{a} bought a {o} from {b}.", False),
    ("{a} was sold a {o} by {b}.", False),
    ("a {o} was sold by {a} to {b}.", True),
    ("{a} paid {b} for a {o}.", False),
    ("{a} was paid by {b} for a {o}.", True),
    ("a {o} was bought by {a} from {b}.", False),
    ("{a} sold {b} a {o} yesterday.", True),
]


def draw(rng):
    a, b = rng.sample(NAMES, 2)
    o = rng.choice(OBJECTS)
    t, seller_first = rng.choice(TEMPLATES)
    return t.format(a=a, b=b, o=o), NAMES.index(a if seller_first else b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--dev", type=int, default=500)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    total = 8 * 7 * len(OBJECTS) * len(TEMPLATES)
    if a.train + a.dev + a.test > total:
        sys.exit(f"gen_text_task: at most {total} distinct sentences")
    rng = random.Random(a.seed)
    seen = set()
    splits = {}
    for split, n in (("train", a.train), ("dev", a.dev), ("test", a.test)):
        recs = []
        while len(recs) < n:
            text, label = draw(rng)
            if text in seen:
                continue
            seen.add(text)
            recs.append({"id": f"{split}-{len(recs)}", "text": text, "label": label})
        splits[split] = recs
    os.makedirs(a.out, exist_ok=True)
    for split, recs in splits.items():
        with open(os.path.join(a.out, split + ".jsonl"), "w") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
    try:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats", "python"))
        import mmp_stream
    except ImportError as e:
        sys.exit(f"gen_text_task: the .mmp files need formats/python's reader/writer ({e}); the .jsonl files are written")
    for split, recs in splits.items():
        with mmp_stream.Writer(os.path.join(a.out, split + ".mmp"), {}, classes=NAMES,
                               meta={"provenance": f"bench/gen_text_task.py seed {a.seed}"}) as w:
            for r in recs:
                w.write({}, id=r["id"], label=r["label"], text=r["text"])


if __name__ == "__main__":
    main()
