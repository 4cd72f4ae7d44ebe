#!/usr/bin/env bash
# Generation speed: tokens/s of mmp-generate vs transformers 4.30's generate() on
# the same random GPT-2 small (bench/bench_generate_peer.py make: GPT2Config(),
# 12 layers, 768 wide, vocab 50257, torch.manual_seed(0); a synthetic byte-level BPE
# of 50257 tokens, since no pretrained GPT-2 is reachable), the same prompts, the
# same thread count (-j / torch.set_num_threads), both with a KV cache
# (use_cache=True): batch 1 and 16, greedy and beam search with 4 beams, exactly
# NEW new tokens per record (min = max new tokens, so neither side stops early).
# tokens/s = records x NEW / seconds of generation (mmp: mmp-generate --stats, the
# time after the model is loaded, prompts' prefill included; HF: generate() alone,
# prefill included, after a one-token warm-up, best of REPS (default 1) calls).
# Goal (issue 15): mmp >= 2x HF in every row.
# Usage: bench/bench_generate.sh [NEW] (default 8). Env: THREADS (default: nproc),
# REPS (HF timed calls, default 1), MMP_PYTHON, MMP_PEERS (transformers 4.30.2 in $MMP_PEERS/hf).
set -u
cd "$(dirname "$0")/.."
root=$PWD
new=${1:-8}
t=${THREADS:-$(nproc)}
py=${MMP_PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=python3
peers=${MMP_PEERS:-$HOME/.local/share/mmpipe-peers}
export PYTHONPATH="$root/formats/python:$peers/hf${PYTHONPATH:+:$PYTHONPATH}"
for m in torch transformers safetensors msgpack; do
  "$py" -c "import $m" 2>/dev/null || { echo "(bench_generate: $py cannot import $m)"; exit 0; }
done
[ -x build/mmp-generate ] || { echo "(bench_generate: build/mmp-generate not built: make)"; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$py" bench/bench_generate_peer.py make "$tmp/gpt2" > "$tmp/make.log" 2>&1 ||
  { tail -n 5 "$tmp/make.log"; echo "bench_generate: making the model failed"; exit 1; }
"$py" - "$tmp" <<'PY' || { echo "bench_generate: making the input failed"; exit 1; }
import sys, mmp_stream
d = sys.argv[1]
prompts = [l.rstrip("\n") for l in open(d + "/gpt2/prompts.txt")]
for b in (1, 16):
    with mmp_stream.Writer("%s/in%d.mmp" % (d, b), {}) as w:
        for i in range(b):
            w.write({}, id="p%d" % i, text=prompts[i])
PY
echo "GPT-2 small (random weights, seed 0), $new new tokens per record, $t threads"
echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "CPU flags: $(for f in avx2 fma avx512f avx512bw avx512vl avx512dq avx512_vnni avx512_bf16; do
  grep -qw "$f" /proc/cpuinfo && printf '%s ' "$f"; done)"
isa=
cc -std=c11 -D_GNU_SOURCE -O2 -Ilib -x c - -x none build/libmmp.a -o "$tmp/isa" $(make -s ldlibs) 2>/dev/null <<'C' && isa=$("$tmp/isa")
#include <stdio.h>
#include "cpu.h"
int main(void) { printf("%s", mmp_isa_name(mmp_cpu_isa())); return 0; }
C
echo "mmpipe: ISA level ${isa:-?} (lib/cpu.h; MMP_ISA=${MMP_ISA:-unset}), f32, mmp_sgemm (no BLAS); KV cache (lib/tx/gpt2.h)"
echo "Peer: $("$py" -c 'import torch, transformers; import re; b = re.search(r"BLAS_INFO=([^,]*)", torch.__config__.show()); print("torch %s (BLAS %s), transformers %s" % (torch.__version__, b.group(1) if b else "?", transformers.__version__))' 2>/dev/null)"
echo
echo "| batch | search | mmp tokens/s | HF tokens/s | mmp / HF | goal >= 2x | first record's ids = HF's (info) |"
echo "|---|---|---|---|---|---|---|"
for b in 1 16; do
  for beams in 1 4; do
    s=greedy; [ $beams -gt 1 ] && s="beam $beams"
    build/mmp-generate --model "$tmp/gpt2" --num-beams $beams --max-new-tokens $new --min-new-tokens $new \
      --batch $b -j $t --stats --ids "$tmp/in$b.mmp" -o "$tmp/out.mmp" 2> "$tmp/mmp.err" ||
      { tail -n 2 "$tmp/mmp.err"; echo "bench_generate: mmp-generate failed"; exit 1; }
    m=$(sed -n 's/.*: \([0-9.]*\) tokens\/s$/\1/p' "$tmp/mmp.err")
    "$py" bench/bench_generate_peer.py run "$tmp/gpt2" $t $b $beams $new > "$tmp/hf.out" 2> "$tmp/hf.err" ||
      { tail -n 3 "$tmp/hf.err"; echo "bench_generate: HF generate failed"; exit 1; }
    h=$(awk '$1 == "tokens" { print $4 }' "$tmp/hf.out")
    # the first record's ids, mmp's and HF's (information: HF pads a batch on the left,
    # and a random GPT-2's logits are nearly flat, so float rounding can pick another token)
    same=$("$py" - "$tmp" <<'PY'
import sys, mmp_stream
d = sys.argv[1]
ids = [int(x) for x in open(d + "/hf.out").read().split("ids ")[1].split()]
r = mmp_stream.load(d + "/out.mmp")[1][0]
print("yes" if [int(x) for x in r["tensors"]["ids"]] == ids else "no")
PY
)
    awk -v b=$b -v s="$s" -v m="$m" -v h="$h" -v same="$same" 'BEGIN {
      r = h > 0 ? m / h : 0
      printf "| %d | %s | %.2f | %.2f | %.2fx | %s | %s |\n", b, s, m, h, r, (r >= 2 ? "met" : "missed"), same }'
  done
done
echo
echo "(load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
