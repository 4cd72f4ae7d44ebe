#!/usr/bin/env bash
# Text embedding throughput: mmp-embed-text vs the PyTorch reference on the same
# sentences, machine and thread count, with all-MiniLM-L6-v2 (scripts/fetch-minilm.sh).
# The peer is sentence-transformers' SentenceTransformer.encode when importable
# (MMP_ST_PATH: folders to put on sys.path, e.g. a `pip install --target` dir), else the
# HF-BertModel-equivalent PyTorch code of tests/fixtures/gen_text.py with HF's
# BertTokenizer (MMP_HF_PATH), else no peer.
# Usage: bench/bench_text.sh [N_SENTENCES] (default 512). Env: MMP_MODELS, THREADS ("1 2").
set -u
cd "$(dirname "$0")/.."
root=$PWD
n=${1:-512}
model=${MMP_MODELS:-$root/models}/all-MiniLM-L6-v2
py=${MMP_PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=python3
export PATH="$root/build:$PATH"
if [ ! -f "$model/model.safetensors" ]; then echo "(no $model: run scripts/fetch-minilm.sh)"; exit 0; fi
command -v mmp-embed-text >/dev/null || { echo "(mmp-embed-text not built)"; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$py" - "$n" > "$tmp/s.txt" <<'PY'
import random, sys
rng = random.Random(0)
adj = "red small big shiny old young happy wooden striped blurry dark bright".split()
noun = "cat dog airplane truck ship frog horse deer bird automobile bicycle person".split()
place = "street field sky river kitchen forest beach city garden road".split()
for i in range(int(sys.argv[1])):
    k = rng.randrange(3)
    if k == 0: print("a photo of a %s %s." % (rng.choice(adj), rng.choice(noun)))
    elif k == 1: print("A %s %s standing next to a %s %s in the %s, seen from far away." % (rng.choice(adj), rng.choice(noun), rng.choice(adj), rng.choice(noun), rng.choice(place)))
    else: print("There is a %s in the %s and a %s %s near the %s; the picture is %s." % (rng.choice(noun), rng.choice(place), rng.choice(adj), rng.choice(noun), rng.choice(place), rng.choice(adj)))
PY
echo "all-MiniLM-L6-v2, $n sentences (mean $(awk '{w+=NF} END {printf "%.1f", w/NR}' "$tmp/s.txt") words), batch 32; $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
echo
echo "| threads | mmp-embed-text sent/s | peer | peer sent/s | ratio (mmp/peer) |"
echo "|---|---|---|---|---|"
for t in ${THREADS:-1 2}; do
  t0=$(date +%s.%N)
  mmp-embed-text --model "$model" --lines --batch 32 --threads "$t" "$tmp/s.txt" > "$tmp/o.mmp" || { echo "mmp-embed-text failed"; exit 1; }
  t1=$(date +%s.%N)
  mmp=$(echo "$n / ($t1 - $t0)" | bc -l)
  peer=$(MMP_ST_PATH="${MMP_ST_PATH:-}" MMP_HF_PATH="${MMP_HF_PATH:-}" "$py" - "$model" "$tmp/s.txt" "$t" "$root" <<'PY' 2>/dev/null
import os, sys, time
model, path, t, root = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
for d in (os.environ.get("MMP_ST_PATH", "") + ":" + os.environ.get("MMP_HF_PATH", "")).split(":"):
    if d: sys.path.append(d)
import torch
torch.set_num_threads(t)
sents = [l.rstrip("\n") for l in open(path)]
try:
    from sentence_transformers import SentenceTransformer
    import sentence_transformers
    m = SentenceTransformer(model, device="cpu")
    m.encode(sents[:32], batch_size=32)
    t0 = time.time(); m.encode(sents, batch_size=32); dt = time.time() - t0
    print("sentence-transformers %s" % sentence_transformers.__version__, len(sents) / dt)
except ImportError:
    sys.path.insert(0, os.path.join(root, "tests", "fixtures"))
    import gen_text, json
    from transformers import BertTokenizer
    tok = BertTokenizer(os.path.join(model, "vocab.txt"))
    w = {k: v for k, v in gen_text.st_read(os.path.join(model, "model.safetensors")).items()}
    cfg = json.load(open(os.path.join(model, "config.json")))
    t0 = time.time()
    with torch.no_grad():
        for i in range(0, len(sents), 32):
            enc = tok(sents[i:i + 32], padding=True, truncation=True, max_length=256, return_tensors="pt")
            gen_text.l2norm(gen_text.mean_pool(gen_text.bert_forward(w, cfg, enc["input_ids"], enc["attention_mask"]), enc["attention_mask"]))
    dt = time.time() - t0
    print("torch-reference", len(sents) / dt)
PY
)
  if [ -n "$peer" ]; then
    pname=${peer% *}; prate=${peer##* }
    printf "| %s | %.0f | %s | %.0f | %.2f |\n" "$t" "$mmp" "$pname" "$prate" "$(echo "$mmp / $prate" | bc -l)"
  else
    printf "| %s | %.0f | (none: no sentence-transformers or transformers) | - | - |\n" "$t" "$mmp"
  fi
done
echo
echo "mmp-embed-text time includes process start and model load; the peer's excludes model load and a warm-up batch."
