#!/usr/bin/env bash
# Adapters trained in the library (tx/lora_train.h; build/tests/test_tx_lora_train DIR
# saves the fixtures' adapters as PEFT folders) on the command line, on the tiny models
# of tests/fixtures/tx_train: mmp-embed --adapter (HF ViT, timm's fused qkv, open_clip's
# MLP) against the merged backbone of mmp-export --merge-lora (within 1e-5 of the
# largest value) and against the base alone (they must differ); the provenance names
# the adapter's SHA-256.
set -u
command -v mmp-export >/dev/null || { echo "mmp-export not built"; exit 77; }
py=${MMP_PYTHON:-}
[ -n "$py" ] && "$py" -c 'import numpy' 2>/dev/null || { echo "no python3 with numpy"; exit 77; }
T="${MMP_BUILD:-build}/tests/test_tx_lora_train"
[ -x "$T" ] || { echo "$T not built"; exit 77; }
F="$MMP_ROOT/tests/fixtures"
fail() { echo "FAIL: $*"; exit 1; }
cmpf() { # A B FIELD close|far
    mmp-cat --npz a.npz "$1" && mmp-cat --npz b.npz "$2" || fail "npz"
    "$py" - "$3" "$4" <<'PY'
import sys
import numpy as np
a = np.load("a.npz")[sys.argv[1]].astype(np.float64); b = np.load("b.npz")[sys.argv[1]].astype(np.float64)
assert a.shape == b.shape, (a.shape, b.shape)
err = np.abs(a - b).max() / np.abs(b).max()
print("  %s: max rel difference %.3g" % (sys.argv[1], err))
sys.exit(0 if (err <= 1e-5 if sys.argv[2] == "close" else err > 1e-2) else 1)
PY
}
"$T" ad > train.log || { tail -n 20 train.log; fail "test_tx_lora_train"; }
mmp-synth -n 5 --seed 4 -o data.tar 2>/dev/null
mmp-decode --size 12 --interp bicubic data.tar 2>/dev/null > img.mmp || fail "decode"
for c in vit:vit_hf:model.safetensors timm:timm:model.safetensors clip_oc:clip_oc:open_clip_model.safetensors; do
    IFS=: read -r name base file <<< "$c"
    echo "$name ($base)"
    mkdir -p "base_$name" "merged_$name"
    ln -sf "$F/tx_train/$base/$file" "base_$name/$file"
    for j in "$F/tx_train/$base/"*.json; do ln -sf "$j" "base_$name/"; cp "$j" "merged_$name/"; done
    mmp-embed --model "base_$name" --adapter "ad/$name" img.mmp > lora.mmp 2>/dev/null || fail "$name: embed --adapter"
    mmp-embed --model "base_$name" img.mmp > base.mmp 2>/dev/null || fail "$name: embed base"
    mmp-export --merge-lora "ad/$name" --model "base_$name" -o "merged_$name/$file" || fail "$name: merge"
    mmp-embed --model "merged_$name" img.mmp > merged.mmp 2>/dev/null || fail "$name: embed merged"
    cmpf lora.mmp merged.mmp embedding close || fail "$name: base + adapter vs merged"
    cmpf lora.mmp base.mmp embedding far || fail "$name: the adapter changes nothing"
    sha=$(sha256sum "ad/$name/adapter_model.safetensors" | cut -c1-64)
    mmp-cat --header lora.mmp | grep -q "lora=$sha" || fail "$name: the provenance does not name the adapter"
done
echo ok
