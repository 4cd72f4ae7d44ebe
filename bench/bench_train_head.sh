#!/usr/bin/env bash
# bench/bench_train_head.sh [TRAIN.mmp [TEST.mmp]]: linear-probe training time (and test
# accuracy when TEST.mmp is given), mmp-train-step vs
# PyTorch (/usr/bin/python3) on the same features and the same recipe:
# standardized features, nn.Linear(D, C), AdamW(lr 1e-3, wd 1e-2), CE, batch 256,
# EPOCHS epochs (30), shuffled every epoch. Both single-threaded (torch.set_num_threads(1),
# mmp_sgemm, single-threaded); BENCH_TORCH_THREADS=N adds a PyTorch row with N threads (slow on a
# busy machine, hence opt-in).
# Without an argument: N x D synthetic features (N=50000 D=1280 C=10; env overrides;
# --quick: N=10000).
# Prints a markdown table; training time excludes reading the stream (both sides).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
PY=${MMP_PYTHON:-/usr/bin/python3}
# --quick (as bench/run.sh passes it): 10000 synthetic records unless N is set
[ "${1:-}" = --quick ] && { shift; N=${N:-10000}; }
EPOCHS=${EPOCHS:-30} N=${N:-50000} D=${D:-1280} C=${C:-10}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PYTHONPATH="$ROOT/formats/python${PYTHONPATH:+:$PYTHONPATH}"

test_in=${2:-}
if [ $# -ge 1 ]; then
  in=$1
else
  in=$tmp/train.mmp
  "$PY" - "$in" "$N" "$D" "$C" <<'EOF'
import sys, numpy as np, mmp_stream
path, n, d, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
mu = rng.normal(0, 0.08, (c, d)).astype(np.float32)
with mmp_stream.Writer(path, {"embedding": {"dtype": "f32", "shape": [d]}},
                       classes=[f"class{i}" for i in range(c)], meta={"provenance": "synthetic"}, level=1) as w:
    for i in range(n):
        y = int(rng.integers(c))
        x = np.maximum(mu[y] + rng.normal(0.3, 1.0, d).astype(np.float32), 0)  # ReLU-like features
        w.write({"embedding": x}, id=str(i), label=y)
EOF
fi

# mmpipe
t0=$(date +%s.%N)
"$BUILD/mmp-train-step" --epochs "$EPOCHS" --lr 1e-3 --weight-decay 1e-2 --batch-size 256 --seed 0 \
    --out "$tmp/head.safetensors" "$in" 2> "$tmp/mmp.err"
t1=$(date +%s.%N)
mmp_train=$(sed -n 's/.*; \([0-9.]*\) s training.*/\1/p' "$tmp/mmp.err")
mmp_cpu=$(sed -n 's/.* s training (\([0-9.]*\) s CPU).*/\1/p' "$tmp/mmp.err")
mmp_total=$(echo "$t1 - $t0" | bc)
mmp_loss=$(tail -n 1 "$tmp/mmp.err" | sed -n 's/.*train loss \([0-9.e-]*\).*/\1/p')  # the summary line, after the epoch lines
mmp_acc=-
if [ -n "$test_in" ]; then
  "$BUILD/mmp-eval" --model "$tmp/head.safetensors" "$test_in" -o /dev/null --json "$tmp/eval.json" 2>/dev/null
  mmp_acc=$("$PY" -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["accuracy"])' "$tmp/eval.json")
fi

torch_run() { # threads
  "$PY" - "$in" "$EPOCHS" "$1" "$test_in" <<'EOF'
import sys, time, numpy as np, torch, mmp_stream
path, epochs, threads, test = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
t0 = time.time()
xs, ys = [], []
with mmp_stream.Reader(path) as r:
    for rec in r:
        xs.append(rec["tensors"]["embedding"].astype(np.float32))
        ys.append(rec["label"])
x = torch.from_numpy(np.stack(xs)); y = torch.tensor(ys)
t_load = time.time() - t0
t0 = time.time(); c0 = time.process_time()
mean, std = x.mean(0), x.std(0, unbiased=False)
std[std < 1e-12] = 1
x = (x - mean) / std
torch.manual_seed(0)
model = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
crit = torch.nn.CrossEntropyLoss()
n = x.shape[0]
for e in range(epochs):
    perm = torch.randperm(n)
    tot = 0.0
    for s in range(0, n, 256):
        idx = perm[s:s + 256]
        opt.zero_grad()
        loss = crit(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        tot += loss.item() * len(idx)
t_train = time.time() - t0; c_train = time.process_time() - c0
acc = "-"
if test:
    xt, yt = [], []
    with mmp_stream.Reader(test) as r:
        for rec in r:
            xt.append(rec["tensors"]["embedding"].astype(np.float32)); yt.append(rec["label"])
    with torch.no_grad():
        pred = model((torch.from_numpy(np.stack(xt)) - mean) / std).argmax(1)
    acc = "%.4f" % (pred == torch.tensor(yt)).float().mean().item()
print(f"{t_train:.3f} {c_train:.3f} {t_load:.3f} {tot / n:.4g} {acc}")
EOF
}
read -r pt1_train pt1_cpu pt1_load pt1_loss pt1_acc < <(torch_run 1)
TT=${BENCH_TORCH_THREADS:-0}
[ "$TT" -gt 0 ] && read -r ptn_train ptn_cpu ptn_load ptn_loss ptn_acc < <(torch_run "$TT")

echo "## bench_train_head: linear probe, $(basename "$in"), $EPOCHS epochs, batch 256, AdamW"
echo
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load average $(cut -d' ' -f1 /proc/loadavg) at the end"
echo
echo "| trainer | threads | training s (wall) | CPU s | last-epoch train loss | test accuracy | speed-up vs PyTorch 1 thread: wall | CPU |"
echo "|---|---|---|---|---|---|---|---|"
printf "| mmp-train-step | 1 | %.2f | %.2f | %s | %s | %.2fx | %.2fx |\n" "$mmp_train" "$mmp_cpu" "$mmp_loss" "$mmp_acc" \
  "$(echo "$pt1_train / $mmp_train" | bc -l)" "$(echo "$pt1_cpu / $mmp_cpu" | bc -l)"
printf "| PyTorch %s | 1 | %.2f | %.2f | %s | %s | 1.00x | 1.00x |\n" "$("$PY" -c 'import torch; print(torch.__version__)')" "$pt1_train" "$pt1_cpu" "$pt1_loss" "$pt1_acc"
[ "$TT" -gt 0 ] && printf "| PyTorch | %s | %.2f | %.2f | %s | %s | %.2fx | %.2fx |\n" "$TT" "$ptn_train" "$ptn_cpu" "$ptn_loss" "$ptn_acc" \
  "$(echo "$pt1_train / $ptn_train" | bc -l)" "$(echo "$pt1_cpu / $ptn_cpu" | bc -l)"
echo
awk -v p="$pt1_train" -v m="$mmp_train" 'BEGIN { r = p / m
  if (r >= 1.5) g = sprintf("met (%.2fx)", r); else g = sprintf("missed by %.2fx (%.2fx; mmp needs +%.1f%%)", 1.5 - r, r, 100 * (1.5 / r - 1))
  printf "goal >= 1.5x PyTorch (1 thread, wall): %s\n", g }'
printf "reading the stream: mmp-train-step %.2f s (whole run %.2f s wall), Python mmp_stream %.2f s\n" \
  "$(sed -n 's/.* \([0-9.]*\) s loading.*/\1/p' "$tmp/mmp.err")" "$mmp_total" "$pt1_load"
