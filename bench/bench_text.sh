#!/usr/bin/env bash
# Text embedding throughput: mmp-embed-text vs ONNX Runtime and the PyTorch reference on
# the same sentences, machine and thread count, with all-MiniLM-L6-v2
# (scripts/fetch-minilm.sh), batch 32; ratios mmp/ORT (goal >= 1.2x, "missed by" where
# not) and mmp/PyTorch. Header: CPU model, ISA flags, mmpipe's ISA level, the OpenBLAS
# kernel set and OPENBLAS_CORETYPE (see bench/bench_embed.sh).
# Peers (bench/bench_text_peer.py; a missing one prints "(not installed)" in its column):
#   PyTorch: sentence-transformers' SentenceTransformer.encode when importable, else the
#     HF-BertModel-equivalent PyTorch code of tests/fixtures/gen_text.py with a BERT
#     tokenizer. torch/torchvision/sklearn from Debian (scripts/setup.sh --bench);
#     sentence-transformers 2.2.2 + transformers 4.30.2 as in docs/text.md, in
#     $HOME/.local/share/mmpipe-peers/{st,hf} by default:
#       /usr/bin/python3 -m pip install --target ~/.local/share/mmpipe-peers/hf transformers==4.30.2 tokenizers==0.13.3
#       rm -rf ~/.local/share/mmpipe-peers/hf/numpy*      # keep Debian's numpy (torch 1.13 needs 1.x)
#       /usr/bin/python3 -m pip install --target ~/.local/share/mmpipe-peers/st --no-deps sentence-transformers==2.2.2 nltk huggingface_hub==0.16.4
#   ONNX Runtime (`/usr/bin/python3 -m pip install --user --break-system-packages
#     onnxruntime`): the same weights exported with torch.onnx.export (transformers'
#     BertModel, else gen_text's code; + mean pooling + L2 norm; opset 14, dynamic batch and
#     length) into the temp folder, intra_op_num_threads = threads, inter_op_num_threads 1,
#     ORT_ENABLE_ALL; its tokenization (tokenizers, from the hf folder) is timed too.
# Timing: every side best of 2 passes over all sentences in input order; mmp-embed-text's
# time is the whole process (start, hashing and loading the model), the peers' exclude
# loading and a warm-up batch.
# Usage: bench/bench_text.sh [N_SENTENCES] (default 512). Env: MMP_MODELS, THREADS ("1 2"),
# MMP_PYTHON, MMP_ST_PATH / MMP_HF_PATH (folders put on the peers' sys.path).
set -u
cd "$(dirname "$0")/.."
root=$PWD
n=${1:-512}
[ "$n" = --quick ] && n=256
model=${MMP_MODELS:-$root/models}/all-MiniLM-L6-v2
py=${MMP_PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=python3
peers=${MMP_PEERS:-$HOME/.local/share/mmpipe-peers}
export MMP_ST_PATH="${MMP_ST_PATH-$peers/st}" MMP_HF_PATH="${MMP_HF_PATH-$peers/hf}"
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
echo "all-MiniLM-L6-v2, $n sentences (mean $(awk '{w+=NF} END {printf "%.1f", w/NR}' "$tmp/s.txt") words), batch 32"
echo
echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "CPU flags: $(for f in avx2 fma avx512f avx512bw avx512vl avx512dq avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_bf16 amx_int8; do
  grep -qw "$f" /proc/cpuinfo && printf '%s ' "$f"; done)"
if [ -f build/libmmp.a ] && cc -std=c11 -D_GNU_SOURCE -O2 -march=x86-64-v3 -Ilib bench/bench_nn.c \
     build/libmmp.a -o "$tmp/bench_nn" $(make -s ldlibs) 2>/dev/null && "$tmp/bench_nn" cpu > "$tmp/cpu"; then
  echo "mmpipe: ISA level $(sed -n 's/^isa //p' "$tmp/cpu") (lib/cpu.h; MMP_ISA=${MMP_ISA:-unset}), GEMM mmp_sgemm (no OpenBLAS); OPENBLAS_CORETYPE (the peers' BLAS)=${OPENBLAS_CORETYPE:-unset}"
  # the kernel path chosen per op (lib/nn's mmp_nn_cpu_paths(); the text encoder's matmuls are mmp_sgemm at that level)
  "$tmp/bench_nn" paths | sed 's/^/    /'
else
  echo "mmpipe: (bench_nn could not be built: ISA level not shown); OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
fi
ort="(not installed)"
if "$py" -c 'import onnxruntime' 2>/dev/null; then
  if "$py" bench/bench_text_peer.py export "$model" "$tmp/minilm.onnx" > "$tmp/export.log" 2>&1; then ort=
  elif grep -q 'not installed' "$tmp/export.log"; then ort="(no torch to export the model)"
  else ort="(export failed)"; tail -n 3 "$tmp/export.log" | sed 's/^/  export: /'
  fi
fi
echo
# a peer's cell: its rate, or the note of why it did not run
peer_run() { # mode args... -> "NAME RATE" or "- NOTE"
  local out
  if out=$("$py" bench/bench_text_peer.py "$@" 2> "$tmp/peer.err"); then echo "$out"
  elif grep -q 'not installed' "$tmp/peer.err"; then echo "- (not installed)"
  else echo "- (failed: $(tail -n 1 "$tmp/peer.err" | cut -c1-60))"; fi
}
AWK_FMT='function num(v) { return v ~ /^[0-9.]+$/ }
function f(fmt, v) { return num(v) ? sprintf(fmt, v) : v }
function ratio(a, b) { return num(a) && num(b) && b > 0 ? sprintf("%.2fx", a / b) : "-" }
function goal(a, b, g,    r) { if (!(num(a) && num(b) && b > 0)) return "-"; r = a / b;
  return r >= g ? "met" : sprintf("missed by %.2fx (mmp needs +%.1f%%)", g - r, 100 * (g * b / a - 1)) }'
# mmp-embed-text's fixed cost (process start, hashing and loading the model): the best of
# 3 runs on one sentence; the peers are timed after loading, so the goal column compares
# them with mmp's rate without that cost (the whole-process rate is shown too)
head -n 1 "$tmp/s.txt" > "$tmp/one.txt"
start=1000
for rep in 1 2 3; do
  t0=$(date +%s.%N)
  mmp-embed-text --model "$model" --lines --threads 1 "$tmp/one.txt" > /dev/null || { echo "mmp-embed-text failed"; exit 1; }
  t1=$(date +%s.%N)
  start=$(echo "d = $t1 - $t0; if (d < $start) d else $start" | bc -l)
done
echo "| threads | mmp-embed-text sent/s (whole process) | mmp sent/s without start-up | ORT sent/s | mmp / ORT | goal >= 1.2x ORT | PyTorch sent/s | mmp / PyTorch |"
echo "|---|---|---|---|---|---|---|---|"
names=()
for t in ${THREADS:-1 2}; do
  mmp=0 mmpx=0
  for rep in 1 2; do  # best of 2 whole runs
    t0=$(date +%s.%N)
    mmp-embed-text --model "$model" --lines --batch 32 --threads "$t" "$tmp/s.txt" > "$tmp/o.mmp" || { echo "mmp-embed-text failed"; exit 1; }
    t1=$(date +%s.%N)
    mmp=$(echo "r = $n / ($t1 - $t0); if (r > $mmp) r else $mmp" | bc -l)
    mmpx=$(echo "r = $n / ($t1 - $t0 - $start); if (r > $mmpx) r else $mmpx" | bc -l)
  done
  if [ -z "$ort" ]; then read -r oname orate <<< "$(peer_run ort "$model" "$tmp/minilm.onnx" "$tmp/s.txt" "$t")"
  else oname=- orate=$ort; fi
  read -r pname prate <<< "$(peer_run torch "$model" "$tmp/s.txt" "$t")"
  names+=("$oname" "$pname")
  awk -v t="$t" -v w="$mmp" -v m="$mmpx" -v o="$orate" -v p="$prate" "$AWK_FMT"'BEGIN {
    printf "| %s | %.0f | %.0f | %s | %s | %s | %s | %s |\n", t, w, m, f("%.0f", o), ratio(m, o), goal(m, o, 1.2), f("%.0f", p), ratio(m, p) }'
done
echo
echo "Peers: $(printf '%s\n' "${names[@]}" | grep -v '^-$' | sort -u | tr '\n' ' ')(load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))."
echo "mmp-embed-text's whole-process time includes process start, hashing and loading the model (fixed cost, best of 3"
echo "one-sentence runs: $(printf '%.3f' "$start") s), subtracted in the next column; the peers exclude loading and a warm-up batch."
echo "The ratios use the rate without start-up."
echo "Every side: best of 2 passes over all sentences, batches of 32 in input order."
