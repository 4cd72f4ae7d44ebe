#!/usr/bin/env bash
# mmp-generate end to end on the tiny random GPT-2 of tests/fixtures/generate/gpt2
# (tests/fixtures/gen_generate.py): greedy and beam-search texts equal to those
# transformers' generate() decodes; logprob/score fields; id, label and other
# fields passed through; the same output for any --batch and -j; sampling
# deterministic per (seed, record id); bad input -> one line naming the record.
set -u
command -v mmp-generate >/dev/null || { echo "mmp-generate not built"; exit 77; }
[ -n "${MMP_PYTHON:-}" ] || { echo "no python with numpy/msgpack/zstandard"; exit 77; }
export PYTHONPATH="$MMP_ROOT/formats/python"
M="$MMP_ROOT/tests/fixtures/generate/gpt2"
fail() { echo "FAIL: $*"; exit 1; }

"$MMP_PYTHON" - <<'PY' || fail "making the input"
import os, numpy as np, mmp_stream
M = os.environ["MMP_ROOT"] + "/tests/fixtures/generate/gpt2"
prompts = [l.rstrip("\n").split("\t")[0] for l in open(M + "/prompts.txt")]
with mmp_stream.Writer("in.mmp", {"feat": {"dtype": "f32", "shape": [2]}}, classes=["a", "b"]) as w:
    for i, t in enumerate(prompts):
        w.write({"feat": np.array([i, -i], dtype=np.float32)}, id="r%d" % i, label=i % 2, text=t)
# sampling input: 20 records, ids s0..s19, every prompt several times; s3 == s17 in id and text
with mmp_stream.Writer("many.mmp", {}) as w:
    for i in range(20):
        w.write({}, id="s%d" % (3 if i == 17 else i), text=prompts[i % len(prompts)] if i != 17 else prompts[3])
with mmp_stream.Writer("notext.mmp", {}) as w:
    w.write({}, id="ok0", text="a red")
    w.write({}, id="bad1")
with mmp_stream.Writer("long.mmp", {}) as w:
    w.write({}, id="ok0", text="a red")
    w.write({}, id="long1", text="a red circle above a blue square " * 8)
PY

mmp-generate --model "$M" --max-new-tokens 12 --ids in.mmp > greedy.mmp || fail "greedy"
mmp-generate --model "$M" --max-new-tokens 12 --ids --num-beams 4 --length-penalty 0.6 --no-repeat-ngram-size 2 \
  --batch 4 -j 2 -o beam.mmp in.mmp || fail "beam"
"$MMP_PYTHON" - <<'PY' || fail "texts vs transformers"
import json, os, numpy as np, mmp_stream
M = os.environ["MMP_ROOT"] + "/tests/fixtures/generate/gpt2"
want = {}
for l in open(M + "/texts.txt"):
    k, t = l.rstrip("\n").split("\t")
    want.setdefault(k, []).append(json.loads(t))
for fn, key in (("greedy.mmp", "0 1 1.0 0"), ("beam.mmp", "1 4 0.6 2")):
    h, recs = mmp_stream.load(fn)
    assert h["schema"]["logprob"] == {"dtype": "f32", "shape": []}, h["schema"]
    assert h["schema"]["feat"]["shape"] == [2] and h["classes"] == ["a", "b"]
    got = [r["text"] for r in recs]
    assert got == want[key], (fn, got, want[key])
    # the token ids as generate()'s (gpt2/cases.txt: MODE NB LP NGRAM MAXNEW BATCHED ROW NE ids.. SCORE)
    cases = [l.split() for l in open(M + "/cases.txt")][1:]
    ref = {int(c[6]): [int(x) for x in c[8:8 + int(c[7])]] for c in cases if c[:6] == (key.split() + ["12", "0"])}
    assert len(ref) == len(recs) and h["schema"]["ids"] == {"dtype": "i32", "shape": [-1]}
    for i, r in enumerate(recs):
        assert [int(x) for x in r["tensors"]["ids"]] == ref[i], (fn, i, r["tensors"]["ids"], ref[i])
    for i, r in enumerate(recs):
        assert r["id"] == "r%d" % i and r["label"] == i % 2 and list(r["tensors"]["feat"]) == [i, -i]
        lp, sc = float(r["tensors"]["logprob"]), float(r["tensors"]["score"])
        assert lp < 0 and np.isfinite(lp), lp
        if fn == "greedy.mmp":
            assert sc == lp
        else:
            assert sc > lp, (sc, lp)  # divided by a length > 1
    print(fn, "token ids and texts as transformers' generate()")
PY

# any batch, any thread count: the same bytes
mmp-generate --model "$M" --max-new-tokens 10 --num-beams 3 --batch 1 -j 1 in.mmp > b1.mmp || fail "beam batch 1"
mmp-generate --model "$M" --max-new-tokens 10 --num-beams 3 --batch 16 -j 2 in.mmp > b16.mmp || fail "beam batch 16"
mmp-generate --model "$M" --max-new-tokens 10 --do-sample --seed 3 --top-k 20 --top-p 0.9 --temperature 0.8 --batch 1 -j 1 many.mmp > s1.mmp || fail "sample 1"
mmp-generate --model "$M" --max-new-tokens 10 --do-sample --seed 3 --top-k 20 --top-p 0.9 --temperature 0.8 --batch 16 -j 2 many.mmp > s16.mmp || fail "sample 16"
mmp-generate --model "$M" --max-new-tokens 10 --do-sample --seed 4 --top-k 20 --top-p 0.9 --temperature 0.8 many.mmp > s4.mmp || fail "sample seed 4"
mmp-generate --model "$M" --max-new-tokens 10 --do-sample --seed 3 --top-k 0 many.mmp > sk0.mmp || fail "sample top-k 0"
"$MMP_PYTHON" - <<'PY' || fail "determinism"
import mmp_stream
def rows(fn):
    return [(r["id"], r["text"], r["tensors"]["logprob"].tobytes()) for r in mmp_stream.load(fn)[1]]
assert rows("b1.mmp") == rows("b16.mmp")
s1, s16, s4, k0 = rows("s1.mmp"), rows("s16.mmp"), rows("s4.mmp"), rows("sk0.mmp")
assert s1 == s16, "sampling depends on the batch or threads"
assert s1[3][1:] == s1[17][1:], "the same record id and prompt gave different samples"
assert sum(a != b for a, b in zip(s1, s4)) >= 15, "seed 4 gives the same samples as seed 3"
assert sum(a != b for a, b in zip(s1, k0)) >= 10
# records with the same prompt but other ids sample differently
assert len({s1[i][1] for i in (0, 6, 12, 18)}) >= 3, [s1[i][1] for i in (0, 6, 12, 18)]
print("deterministic: batch 1 == 16, -j 1 == 2; per-id streams")
PY

# bad input: one line naming the record / the file
one() { # expected substring, command...
  local want=$1; shift
  if "$@" > out.mmp 2> err.txt; then fail "'$*' exited 0"; fi
  [ "$(wc -l < err.txt)" -eq 1 ] || fail "'$*': not one line: $(cat err.txt)"
  grep -qF -- "$want" err.txt || fail "'$*': got '$(cat err.txt)', want '$want'"
}
one "record bad1 (#1) has no text" mmp-generate --model "$M" notext.mmp
one "record long1: a prompt of" mmp-generate --model "$M" --max-new-tokens 20 long.mmp
one "exceeds the decoder's 64 positions" mmp-generate --model "$M" --max-new-tokens 20 long.mmp
one "(beam sampling) is not supported" mmp-generate --model "$M" --do-sample --num-beams 2 in.mmp
one "--model is required" mmp-generate in.mmp
one "value for --top-p out of range" mmp-generate --model "$M" --top-p 0 in.mmp
mkdir -p tok && cp "$M/merges.txt" tok/ && "$MMP_PYTHON" -c "
import json, sys; v = json.load(open(sys.argv[1] + '/vocab.json')); v['zzzz'] = len(v); json.dump(v, open('tok/vocab.json', 'w'))" "$M"
one "has 321 tokens but the decoder" mmp-generate --model "$M" --tokenizer tok in.mmp
one "nodir" mmp-generate --model nodir in.mmp

# a captioner checkpoint (mmp-train-step --head caption, a scratch decoder): the
# records' image feature -> prefix -> caption; any batch / -j the same bytes
MN="$MMP_ROOT/tests/fixtures/nn/mnv2_w025.safetensors"
if command -v mmp-train-step >/dev/null && command -v mmp-synth >/dev/null && [ -f "$MN" ]; then
  mmp-synth --mode captions --out syn --train 12 --dev 4 --test 4 --seed 2 >/dev/null 2>&1 || fail "mmp-synth"
  mmp-decode --manifest syn/train.jsonl --size 32 -o img.mmp 2>/dev/null && mmp-embed --model "$MN" img.mmp -o feat.mmp 2>/dev/null ||
    fail "decode/embed"
  mmp-train-step --head caption --prefix-length 3 --decoder-layers 1 --decoder-width 32 --decoder-heads 2 \
    --decoder-context 40 --batch-size 16 --seed 4 --epochs 3 --out cap.safetensors feat.mmp 2>/dev/null || fail "training a captioner"
  mmp-generate --model cap.safetensors --max-new-tokens 8 feat.mmp > c1.mmp || fail "captioner greedy"
  mmp-generate --model cap.safetensors --max-new-tokens 8 --num-beams 3 --batch 1 -j 1 feat.mmp > c3a.mmp || fail "captioner beam"
  mmp-generate --model cap.safetensors --max-new-tokens 8 --num-beams 3 --batch 7 -j 2 feat.mmp > c3b.mmp || fail "captioner beam batch 7"
  mmp-generate --model cap.safetensors --max-new-tokens 8 --do-sample --seed 1 --batch 5 feat.mmp > cs.mmp || fail "captioner sampling"
  "$MMP_PYTHON" - <<'PY' || fail "captioner outputs"
import json, mmp_stream
h, a = mmp_stream.load("c3a.mmp"); _, b = mmp_stream.load("c3b.mmp"); _, g = mmp_stream.load("c1.mmp"); _, s = mmp_stream.load("cs.mmp")
_, x = mmp_stream.load("feat.mmp")
assert h["meta"]["generate.feature"] == "embedding" and len(a) == len(x) == len(g) == len(s) > 0
rows = lambda rs: [(r["id"], r["text"], r["tensors"]["logprob"].tobytes(), r["tensors"]["score"].tobytes()) for r in rs]
assert rows(a) == rows(b), "captioner: batch / threads change the output"
vocab = set(json.load(open("cap.tokenizer.json"))["model"]["vocab"])
for r in a + g + s:
    assert all(w in vocab for w in r["text"].split()), r["text"]
    assert r["tensors"]["logprob"] <= 0
assert [r["id"] for r in a] == [r["id"] for r in x]
print("captioner: %d captions, e.g. %r" % (len(a), a[0]["text"]))
PY
  one 'has no tensor "embedding" (the captioner'"'"'s feature)' mmp-generate --model cap.safetensors in.mmp
fi
echo ok
