#!/usr/bin/env bash
# mmp-train-step --head clip --unfreeze lora on the tiny open_clip model with a
# real vocabulary (tests/fixtures/tx_models/clip_text_oc):
# - adapters on both towers (or only the unlocked one with --lock) and
#   logit_scale train; the base tensors of OUT are the backbone's bits, the
#   adapters are in OUT under PEFT's module names;
# - --resume after --stop-after-epochs, -j 1 / -j 3 and --recompute bit-identical
#   (with --lora-dropout);
# - mmp-export --peft writes one PEFT folder over the CLIP model, which
#   mmp-embed and mmp-embed-text --adapter take (other embeddings than the
#   base's; --lock image: the image embeddings are the base's);
# - bad inputs: --unfreeze other than all/lora, a LoRA checkpoint continued
#   without --unfreeze lora, a target that matches nothing.
set -u
command -v mmp-train-step >/dev/null || { echo "mmp-train-step not built"; exit 77; }
[ -n "${MMP_PYTHON:-}" ] || { echo "no python3 with numpy, msgpack, zstandard"; exit 77; }
source "$MMP_ROOT/tests/sh/checks.sh"
F="$MMP_ROOT/tests/fixtures"
mkdir -p oc
for f in open_clip_model.safetensors open_clip_config.json; do ln -sf "$F/tx_models/clip_text_oc/$f" oc/$f; done
ln -sf "$F/clip_tok/bpe_simple_vocab_16e6.txt.gz" oc/bpe_simple_vocab_16e6.txt.gz
mmp-synth -n 24 --seed 5 -o data.tar 2>/dev/null
mmp-decode --size 16 --interp bicubic data.tar 2>/dev/null > img.mmp || fail "decode"

cat > adapters.py <<'PY'
import json, struct, sys
import numpy as np
def load(p):  # values as float64 (the checkpoint is f32, the backbone may be f16)
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    dt = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    return {k: np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], dt[v["dtype"]]).astype(np.float64)
            for k, v in h.items()}
a, b = load(sys.argv[1]), load(sys.argv[2])
ad = [k for k in a if ".lora_" in k]
vis = [k for k in ad if k.startswith("visual.")]
changed = [k for k in b if k not in a or not np.array_equal(a[k], b[k])]
print("%d adapter tensors (%d image tower), changed base tensors: %s" % (len(ad), len(vis), changed))
want_vis = {"both": len(vis) and len(vis) < len(ad), "text": not vis and ad}[sys.argv[3]]
sys.exit(0 if want_vis and changed == ["logit_scale"] and set(a) - set(b) == set(ad) else 1)
PY
cat > differ.py <<'PY'
import os, sys
sys.path.insert(0, os.path.join(os.environ["MMP_ROOT"], "formats", "python"))
from mmpipe import stream
a = [r["tensors"][sys.argv[3]].tobytes() for r in stream.load(sys.argv[1])[1]]
b = [r["tensors"][sys.argv[3]].tobytes() for r in stream.load(sys.argv[2])[1]]
sys.exit(0 if (a != b) == (sys.argv[4] == "differ") and a else 1)
PY

T="--head clip --loss contrastive --backbone oc --batch-size 8 --lr 1e-2 --unfreeze lora --lora-rank 4 --lora-targets c_fc,c_proj --lora-dropout 0.1"
mkdir -p l l3 lr lit lrc
if mmp-train-step $T --epochs 2 -j 1 --out l/model.safetensors img.mmp 2> err.txt; then ok "train: $(tail -1 err.txt)"; else fail "train: $(cat err.txt)"; fi
"$MMP_PYTHON" adapters.py l/model.safetensors oc/open_clip_model.safetensors both > out.txt && ok "$(cat out.txt)" || fail "checkpoint: $(cat out.txt)"
mmp-train-step $T --epochs 2 -j 3 --out l3/model.safetensors img.mmp 2>/dev/null || fail "-j 3"
cmp -s l/model.safetensors l3/model.safetensors && cmp -s l/model.optim.safetensors l3/model.optim.safetensors \
  && ok "-j 1 and -j 3 bit-identical" || fail "-j 1 and -j 3 differ"
mmp-train-step $T --epochs 2 -j 1 --recompute --out lrc/model.safetensors img.mmp 2>/dev/null || fail "--recompute"
cmp -s l/model.safetensors lrc/model.safetensors && cmp -s l/model.optim.safetensors lrc/model.optim.safetensors \
  && ok "--recompute bit-identical (the dropout masks recomputed alike)" || fail "--recompute differs"
mmp-train-step $T --epochs 2 --stop-after-epochs 1 --out lr/model.safetensors img.mmp 2>/dev/null || fail "first half"
mmp-train-step --resume lr/model.safetensors --out lr/model.safetensors img.mmp 2> err.txt || fail "--resume: $(cat err.txt)"
cmp -s l/model.safetensors lr/model.safetensors && cmp -s l/model.optim.safetensors lr/model.optim.safetensors \
  && ok "--resume bit-identical (weights and optimizer state)" || fail "--resume differs"
# the PEFT folder over the CLIP model
rm -rf ad && mmp-export --peft -o ad l/model.safetensors 2> err.txt && ok "mmp-export --peft" || fail "mmp-export --peft: $(cat err.txt)"
mmp-embed --model oc img.mmp > e0.mmp 2>/dev/null; mmp-embed-text --model oc img.mmp > t0.mmp 2>/dev/null
if mmp-embed --model oc --adapter ad img.mmp > e1.mmp 2> err.txt && mmp-embed-text --model oc --adapter ad img.mmp > t1.mmp 2>> err.txt; then
  "$MMP_PYTHON" differ.py e0.mmp e1.mmp embedding differ && "$MMP_PYTHON" differ.py t0.mmp t1.mmp text_embedding differ \
    && ok "mmp-embed / mmp-embed-text --adapter: other embeddings than the base's" || fail "--adapter: the base's embeddings"
else fail "--adapter: $(cat err.txt)"; fi
# --lock image: adapters on the text tower only
mmp-train-step $T --lock image --epochs 1 --out lit/model.safetensors img.mmp 2> err.txt || fail "--lock image: $(cat err.txt)"
"$MMP_PYTHON" adapters.py lit/model.safetensors oc/open_clip_model.safetensors text > out.txt && ok "--lock image: $(cat out.txt)" \
  || fail "--lock image: $(cat out.txt)"
rm -rf adl && mmp-export --peft -o adl lit/model.safetensors 2>/dev/null || fail "--peft of the locked run"
mmp-embed --model oc --adapter adl img.mmp > e2.mmp 2>/dev/null && mmp-embed-text --model oc --adapter adl img.mmp > t2.mmp 2>/dev/null \
  || fail "--adapter of the locked run"
"$MMP_PYTHON" differ.py e0.mmp e2.mmp embedding same && "$MMP_PYTHON" differ.py t0.mmp t2.mmp text_embedding differ \
  && ok "--lock image: the image embeddings are the base's, the text ones not" || fail "--lock image: embeddings"
bad "--unfreeze last:1" "--head clip: --unfreeze last:1: all or lora" mmp-train-step --head clip --backbone oc --unfreeze last:1 --out bad.safetensors img.mmp
bad "a target that matches nothing" 'LoRA target "nosuch" matches no module' mmp-train-step $T --lora-targets nosuch --out bad.safetensors img.mmp
bad "a LoRA checkpoint without --unfreeze lora" "holds LoRA adapters" mmp-train-step --init l/model.safetensors --unfreeze all --out bad.safetensors img.mmp
[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all ok"
