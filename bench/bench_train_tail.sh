#!/usr/bin/env bash
# CNN-tail training: mmp-train-step --head resnet-tail / mnv2-tail vs PyTorch on the same
# cached activations, the same recipe, machine and thread count; speed-up = PyTorch
# training time / mmp-train-step's (goal >= 1.5x, "missed by" where not).
# Workloads (96 px images from mmp-synth, activations cached once with mmp-embed --layer):
#   ResNet-18 (the random weights of bench/make_weights.py, full width) from layer3
#     ([256,6,6]): layer4 + pool + fc trained;
#   MobileNetV2 (the real ImageNet weights of $MMP_SHARED/models) from features.13
#     ([96,6,6]): features.14..18 + pool + dropout 0.2 + classifier trained, and from
#     features.16 ([160,3,3], the README's recipe): features.17, 18 + classifier.
# Recipe (both sides): AdamW lr 1e-3, weight decay 1e-2, cross-entropy, batch 64, EPOCHS
# epochs shuffled every epoch, BatchNorm in eval mode with the backbone's statistics
# (mnv2: dropout active). mmpipe: its own "s training" figure (stream loading excluded);
# PyTorch 1.13 (Debian, scripts/setup.sh --bench): torch.set_num_threads(threads), the
# torchvision module's tail on the activations as [N,C,h,w] tensors, timed from the
# first step to the last (loading excluded). Both print the last epoch's mean training
# loss: they start from different classifier initialisations, so only its magnitude
# should agree.
# Without torch + torchvision: the PyTorch column says "(not installed)" and the ResNet
# rows are skipped (their weights come from torchvision).
# usage: bench/bench_train_tail.sh [--quick]   (env: BUILD, MMP_SHARED, MMP_PYTHON,
#        N records (512; --quick 256), EPOCHS (2), THREADS ("1 2"))
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-$ROOT/build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
PY=${MMP_PYTHON:-/usr/bin/python3}
S=${MMP_SHARED:-$ROOT/../shared}
MN=$S/models/mobilenet_v2-imagenet.safetensors
N=${N:-512}; [ "${1:-}" = --quick ] && N=${N_QUICK:-256}
EPOCHS=${EPOCHS:-2}
for b in mmp-synth mmp-decode mmp-embed mmp-train-step; do
  [ -x "$BUILD/$b" ] || { echo "(bench_train_tail: $BUILD/$b not built)"; exit 0; }
done
[ -f "$MN" ] || { echo "(bench_train_tail: no $MN: set MMP_SHARED)"; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export PYTHONPATH="$ROOT/formats/python${PYTHONPATH:+:$PYTHONPATH}"
torch_v=$("$PY" -c 'import torch, torchvision; print(torch.__version__)' 2>/dev/null) || torch_v=
work=()
if [ -n "$torch_v" ] && "$PY" bench/make_weights.py "$tmp" 2>/dev/null; then work+=("resnet-tail:$tmp/resnet18.safetensors:layer3:ResNet-18:256 6 6"); fi
work+=("mnv2-tail:$MN:features.13:MobileNetV2:96 6 6" "mnv2-tail:$MN:features.16:MobileNetV2:160 3 3")  # [C h w] at 96 px

"$BUILD/mmp-synth" -n "$N" --seed 0 > "$tmp/s.tar" 2>/dev/null
"$BUILD/mmp-decode" --size 96 "$tmp/s.tar" > "$tmp/img.mmp" 2>/dev/null

echo "## bench_train_tail: CNN tails on cached activations, $N records (mmp-synth, 96 px), $EPOCHS epochs, batch 64, AdamW"
echo
echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ); load average at start: $(cut -d' ' -f1-3 /proc/loadavg); OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; PyTorch ${torch_v:-(not installed)}"
echo
echo "| model | from (activation) | threads | mmp-train-step s | PyTorch s | speed-up (PyTorch / mmp) | goal >= 1.5x | last-epoch loss mmp / PyTorch |"
echo "|---|---|---|---|---|---|---|---|"
for w in "${work[@]}"; do
  IFS=: read -r head model from name shape <<< "$w"
  "$BUILD/mmp-embed" --model "$model" --layer "$from:flat" "$tmp/img.mmp" > "$tmp/act.mmp" 2>/dev/null \
    || { echo "| $name | $from | - | (mmp-embed failed) | | | | |"; continue; }
  for t in ${THREADS:-1 2}; do
    "$BUILD/mmp-train-step" --head "$head" --backbone "$model" --epochs "$EPOCHS" --batch-size 64 --seed 0 -j "$t" \
      --out "$tmp/h.safetensors" "$tmp/act.mmp" 2> "$tmp/mmp.err" || { echo "| $name | $from | $t | (failed: $(tail -n 1 "$tmp/mmp.err")) | | | | |"; continue; }
    m_s=$(sed -n 's/.*; \([0-9.]*\) s training.*/\1/p' "$tmp/mmp.err")
    m_loss=$(sed -n 's/.*train loss \([0-9.e+-]*\).*/\1/p' "$tmp/mmp.err" | tail -n 1)  # the last epoch's line
    p="(not installed)|-"
    if [ -n "$torch_v" ]; then
      p=$("$PY" - "$tmp/act.mmp" "$model" "$head" "$from" "$t" "$EPOCHS" $shape <<'PY' 2> "$tmp/py.err" || echo "(failed)|-"
import sys, time
import numpy as np, torch, torchvision, mmp_stream
sys.path.insert(0, "tests/fixtures")
from st_io import st_read
path, model, head, frm, threads, epochs = sys.argv[1:7]
C, h, w = map(int, sys.argv[7:10])
threads, epochs = int(threads), int(epochs)
torch.set_num_threads(threads)
xs, ys = [], []
with mmp_stream.Reader(path) as r:
    for rec in r:
        xs.append(rec["tensors"]["embedding"].astype(np.float32))
        ys.append(rec["label"])
x = torch.from_numpy(np.stack(xs)).reshape(-1, C, h, w)  # torch.flatten(x, 1) order
y = torch.tensor(ys)
ncls = int(y.max()) + 1
sd = {k: torch.from_numpy(v.astype(np.float32)) for k, v in st_read(model).items()}
torch.manual_seed(0)
if head == "resnet-tail":
    m = torchvision.models.resnet18()
    m.load_state_dict(sd, strict=False)
    m.fc = torch.nn.Linear(m.fc.in_features, ncls)
    tail = torch.nn.Sequential(m.layer4, m.avgpool, torch.nn.Flatten(1), m.fc)  # from layer3
else:
    m = torchvision.models.mobilenet_v2()
    m.load_state_dict(sd, strict=False)
    k = int(frm.split(".")[1])
    tail = torch.nn.Sequential(*m.features[k + 1:], torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(1),
                               torch.nn.Dropout(0.2), torch.nn.Linear(1280, ncls))
tail.train()
for mod in tail.modules():  # BatchNorm in eval mode: the backbone's running statistics
    if isinstance(mod, torch.nn.BatchNorm2d):
        mod.eval()
opt = torch.optim.AdamW(tail.parameters(), lr=1e-3, weight_decay=1e-2)
crit = torch.nn.CrossEntropyLoss()
n = x.shape[0]
t0 = time.perf_counter()
for e in range(epochs):
    perm = torch.randperm(n)
    tot = 0.0
    for s in range(0, n, 64):
        idx = perm[s:s + 64]
        opt.zero_grad()
        loss = crit(tail(x[idx]), y[idx])
        loss.backward()
        opt.step()
        tot += loss.item() * len(idx)
print("%.3f|%.4g" % (time.perf_counter() - t0, tot / n))
PY
)
    fi
    IFS="|" read -r p_s p_loss <<< "$p"
    awk -v n="$name" -v f="$from" -v t="$t" -v m="$m_s" -v p="$p_s" -v ml="$m_loss" -v pl="$p_loss" '
      function num(v) { return v ~ /^[0-9.]+$/ }
      BEGIN { ok = num(m) && num(p) && m > 0; r = ok ? p / m : 0
        g = !ok ? "-" : r >= 1.5 ? "met" : sprintf("missed by %.2fx (mmp needs +%.1f%%)", 1.5 - r, 100 * (1.5 / r - 1))
        printf "| %s | %s [%s] | %s | %.2f | %s | %s | %s | %s / %s |\n", n, f, "'"${shape// /,}"'", t, m,
          num(p) ? sprintf("%.2f", p) : p, ok ? sprintf("%.2fx", r) : "-", g, ml, pl }'
  done
done
echo
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg). mmp-train-step: -j threads (4 fixed batch slices, bit-identical"
echo "for any -j); PyTorch: torch.set_num_threads(threads). Both exclude reading the stream."
