#!/usr/bin/env bash
# One training step of LoRA (r=8 on the attention's query and value, tx/lora_train.h)
# vs full fine-tuning (tx/train.h) with the library (bench/bench_lora_train.c):
# a small ViT (HF ViT-S/16 @224, random weights made by transformers 4.30.2's
# ViTModel(ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
# intermediate_size=1536)), batch N_IMG) and all-MiniLM-L6-v2 (models/, batch 32 x 64
# tokens). A step: forward keeping the activations, backward, AdamW. LoRA trains the
# adapters only: the frozen linears' dW GEMMs are skipped and no gradient or optimizer
# state exists for the base weights.
# Usage: bench/bench_lora_train.sh [N_IMG] (default 8). Env: THREADS (2), REPS (3),
# MMP_PYTHON, MMP_PEERS (transformers 4.30.2 in $MMP_PEERS/hf), MINILM (models/all-MiniLM-L6-v2).
set -u
cd "$(dirname "$0")/.."
nimg=${1:-8} threads=${THREADS:-2} reps=${REPS:-3}
py=${MMP_PYTHON:-/usr/bin/python3}
peers=${MMP_PEERS:-$HOME/.local/share/mmpipe-peers}
minilm=${MINILM:-models/all-MiniLM-L6-v2}
[ -f build/libmmp.a ] || { echo "(bench_lora_train: build/libmmp.a not built: make)"; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cc -std=c11 -D_GNU_SOURCE -O2 -march=x86-64-v3 -Ilib bench/bench_lora_train.c build/libmmp.a -o "$tmp/bench" $(make -s ldlibs) ||
  { echo "bench_lora_train: cannot build the driver"; exit 1; }
echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
if PYTHONPATH="$peers/hf" "$py" - "$tmp/vit" <<'PY' 2>/dev/null
import os, sys
import torch
from transformers import ViTConfig, ViTModel
sys.path.insert(0, "tests/fixtures")
from st_io import st_write
torch.manual_seed(0)
cfg = ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536)
m = ViTModel(cfg, add_pooling_layer=False)
os.makedirs(sys.argv[1])
cfg.save_pretrained(sys.argv[1])
st_write(os.path.join(sys.argv[1], "model.safetensors"), {k: v for k, v in m.state_dict().items() if "position_ids" not in k})
PY
then "$tmp/bench" vit "$tmp/vit" "$nimg" 224 "$threads" "$reps"
else echo "(ViT-S/16: $py cannot make the model: torch and transformers needed)"
fi
echo
if [ -f "$minilm/model.safetensors" ]; then "$tmp/bench" bert "$minilm" 32 64 "$threads" "$reps"
else echo "(all-MiniLM-L6-v2: no $minilm/model.safetensors)"
fi
