#!/usr/bin/env bash
# mmp-train-step --head transformer --unfreeze lora on the tiny models of
# tests/fixtures/tx_train (HF ViT, timm, HF CLIP's and open_clip's image
# towers, the tiny BERT on text records):
# - the checkpoint holds the base (the backbone's bits), the adapters under
#   PEFT's module names (<module>.lora_A.weight / .lora_B.weight) and the
#   classifier; the adapters and the classifier moved, nothing else;
# - --resume after --stop-after-epochs 1 and -j 1 / -j 3 bit-identical, with
#   --lora-dropout (the masks are a function of the step);
# - mmp-eval runs the checkpoint (base + adapters unmerged); mmp-export merges
#   them into a plain state dict whose weights differ from the base exactly
#   where an adapter was; mmp-export --peft writes a PEFT folder that
#   mmp-embed / mmp-embed-text --adapter take over the base (the same
#   embeddings as mmp-embed --model of the merged state dict, within
#   rounding) and refuse over another base (checksum);
# - bad inputs: a target pattern that matches nothing, --lora-rank 0, a LoRA
#   checkpoint continued without --unfreeze lora.
set -u
command -v mmp-train-step >/dev/null || { echo "mmp-train-step not built"; exit 77; }
FX="$MMP_ROOT/tests/fixtures/tx_train"
[ -f "$FX/vit_hf/model.safetensors" ] && [ -f "$FX/bert/vocab.txt" ] || { echo "no tests/fixtures/tx_train"; exit 77; }
[ -n "${MMP_PYTHON:-}" ] || { echo "no python3 with numpy, msgpack, zstandard"; exit 77; }
source "$MMP_ROOT/tests/sh/checks.sh"

"$MMP_PYTHON" - <<'PY' || { echo "FAIL: streams"; exit 1; }
import os, sys
sys.path.insert(0, os.path.join(os.environ["MMP_ROOT"], "formats", "python"))
import numpy as np
from mmpipe import stream
rng = np.random.default_rng(1)
w = stream.Writer("img.mmp", {"image": {"dtype": "u8", "shape": [12, 12, 3]}}, classes=["a", "b", "c"])
for i in range(20):
    w.write({"image": rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)}, id="r%d" % i, label=i % 3)
w.close()
words = "the movie was good bad great awful plot actors fine dull long short music".split()
w = stream.Writer("txt.mmp", {}, classes=["a", "b", "c"])
for i in range(20):
    w.write({}, id="t%d" % i, label=i % 3, text=" ".join(rng.choice(words, rng.integers(1, 9))))
w.close()
PY

# compare.py CKPT BASE: the adapters and the classifier moved, the base tensors are the backbone's bits
cat > compare.py <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items()}
mode = sys.argv[1]
a, b = load(sys.argv[2]), load(sys.argv[3])
cls = ("classifier.", "head.")
if mode == "ckpt":
    ad = [k for k in a if ".lora_A." in k or ".lora_B." in k]
    bad = [k for k in b if not k.startswith(cls) and a.get(k) != b[k]]
    zero_b = [k for k in ad if ".lora_B." in k and not any(a[k])]
    ok = ad and not bad and not zero_b and {k for k in set(a) - set(b) if not k.startswith(cls)} == set(ad)
    print("%d adapter tensors, base changed: %s, B still zero: %s" % (len(ad), bad[:2], zero_b[:2]))
    sys.exit(0 if ok else 1)
# merged: the adapted weights differ from the base, the others are its bits, no adapter left
ck = load(sys.argv[4])
mods = {k.rsplit(".lora_", 1)[0] for k in ck if ".lora_A." in k}
keys = [k for k in b if not k.startswith(cls)]
diff = {k for k in keys if a.get(k) != b[k]}
want = {m + ".weight" for m in mods}
lora_left = [k for k in a if ".lora_" in k]
print("merged: %d weights differ (%d adapted)" % (len(diff), len(want)))
sys.exit(0 if diff == want and not lora_left and set(keys) <= set(a) else 1)
PY
# strip.py MERGED BASE OUT: MERGED's tensors that BASE has (the classifier replaced by BASE's own head, if any)
cat > strip.py <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: (v, b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items()}
m, base = load(sys.argv[1]), load(sys.argv[2])
hdr, data = {}, b""
for k, (v, raw) in base.items():
    v2, raw2 = m[k] if k in m and m[k][0]["shape"] == v["shape"] else (v, raw)
    hdr[k] = {"dtype": v2["dtype"], "shape": v2["shape"], "data_offsets": [len(data), len(data) + len(raw2)]}
    data += raw2
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[3], "wb").write(struct.pack("<Q", len(h)) + h + data)
PY
# close.py A B FIELD: the same records, embeddings within 1e-4 (relative to the largest)
cat > close.py <<'PY'
import os, sys
sys.path.insert(0, os.path.join(os.environ["MMP_ROOT"], "formats", "python"))
import numpy as np
from mmpipe import stream
a = np.stack([r["tensors"][sys.argv[3]] for r in stream.load(sys.argv[1])[1]]).astype(np.float64)
b = np.stack([r["tensors"][sys.argv[3]] for r in stream.load(sys.argv[2])[1]]).astype(np.float64)
e = np.abs(a - b).max() / np.abs(b).max()
print("relative difference %.2g" % e)
sys.exit(0 if e < 1e-4 else 1)
PY

T="--head transformer --batch-size 6 --lr 1e-2 --seed 2 --epochs 2 --unfreeze lora --lora-rank 4 --lora-alpha 8 --lora-dropout 0.1"
for m in vit_hf:img:mmp-embed:embedding:query,value timm:img:mmp-embed:embedding:qkv clip_hf:img:mmp-embed:embedding:q_proj,v_proj \
         clip_oc:img:mmp-embed:embedding:c_fc bert:txt:mmp-embed-text:text_embedding:query,value; do
  IFS=: read -r name data tool field tg <<< "$m"
  X="--lora-targets $tg"
  base="$FX/$name/model.safetensors"; [ -f "$base" ] || base="$FX/$name/open_clip_model.safetensors"
  if mmp-train-step $T $X --backbone "$FX/$name" -j 1 --out $name.safetensors $data.mmp 2> err.txt; then ok "$name: $(tail -1 err.txt)"
  else fail "$name: train: $(cat err.txt)"; continue; fi
  [ -f $name.optim.safetensors ] || fail "$name: no optimizer state beside the checkpoint"
  "$MMP_PYTHON" compare.py ckpt $name.safetensors "$base" > out.txt && ok "$name: $(cat out.txt)" || fail "$name: checkpoint: $(cat out.txt)"
  mmp-train-step $T $X --backbone "$FX/$name" -j 3 --out $name.j3.safetensors $data.mmp 2>/dev/null || fail "$name: -j 3"
  cmp -s $name.safetensors $name.j3.safetensors && ok "$name: -j 1 and -j 3 bit-identical" || fail "$name: -j 1 and -j 3 differ"
  mmp-train-step $T $X --backbone "$FX/$name" --stop-after-epochs 1 --out $name.r.safetensors $data.mmp 2>/dev/null || fail "$name: first half"
  mmp-train-step --resume $name.r.safetensors --out $name.r.safetensors $data.mmp 2> err.txt || fail "$name: --resume: $(cat err.txt)"
  if cmp -s $name.safetensors $name.r.safetensors && cmp -s $name.optim.safetensors $name.r.optim.safetensors; then
    ok "$name: --resume bit-identical (weights and optimizer state)"
  else fail "$name: --resume differs from the uninterrupted run"; fi
  mmp-eval --model $name.safetensors $data.mmp > pred.mmp 2> err.txt && ok "$name: eval: $(tail -1 err.txt)" || fail "$name: eval: $(cat err.txt)"
  # merged state dict
  if mmp-export -o $name.merged.safetensors $name.safetensors 2> err.txt; then
    "$MMP_PYTHON" compare.py merged $name.merged.safetensors "$base" $name.safetensors > out.txt && ok "$name: $(cat out.txt)" \
      || fail "$name: merged export: $(cat out.txt)"
  else fail "$name: mmp-export: $(cat err.txt)"; fi
  # PEFT folder over the base = the merged model
  rm -rf ad_$name
  if mmp-export --peft -o ad_$name $name.safetensors 2> err.txt && [ -f ad_$name/adapter_config.json ]; then
    # the merged state dict as the backbone's folder, less the classifier (the base's own head, if any, stays)
    rm -rf m_$name && cp -r "$FX/$name" m_$name && "$MMP_PYTHON" strip.py $name.merged.safetensors "$base" m_$name/$(basename "$base")
    if $tool --model "$FX/$name" --adapter ad_$name $data.mmp > ea.mmp 2> err.txt &&
       $tool --model m_$name $data.mmp > em.mmp 2>> err.txt; then
      "$MMP_PYTHON" close.py ea.mmp em.mmp $field > out.txt && ok "$name: $tool --adapter = the merged model ($(cat out.txt))" \
        || fail "$name: $tool --adapter differs from the merged model: $(cat out.txt)"
    else fail "$name: $tool --adapter: $(cat err.txt)"; fi
  else fail "$name: mmp-export --peft: $(cat err.txt)"; fi
done

# an adapter over another base: its checksum is checked
if mmp-embed --model "$FX/vit_hf_pooler" --adapter ad_vit_hf img.mmp > /dev/null 2> err.txt; then fail "adapter over another base: accepted"
else grep -qi "sha\|checksum\|another" err.txt && ok "adapter over another base: $(cat err.txt)" || fail "adapter over another base: $(cat err.txt)"; fi

# bad inputs: one line, non-zero, no checkpoint
B="--head transformer --batch-size 6 --epochs 1"
bad "a target that matches nothing" 'LoRA target "nosuch" matches no module' mmp-train-step $B --out bad.safetensors --backbone "$FX/vit_hf" --unfreeze lora --lora-targets query,nosuch img.mmp
bad "a target mmpipe does not adapt" "which mmpipe does not adapt" mmp-train-step $B --out bad.safetensors --backbone "$FX/bert" --unfreeze lora --lora-targets LayerNorm txt.mmp
bad "--lora-rank 0" "lora-rank 0: expected 1..4096" mmp-train-step $B --out bad.safetensors --backbone "$FX/vit_hf" --unfreeze lora --lora-rank 0 img.mmp
bad "open_clip without targets" "no default LoRA targets" mmp-train-step $B --out bad.safetensors --backbone "$FX/clip_oc" --unfreeze lora img.mmp
bad "a LoRA checkpoint continued without lora" "holds LoRA adapters" mmp-train-step $B --out bad.safetensors --init vit_hf.safetensors --unfreeze all img.mmp
mmp-train-step $B --backbone "$FX/bert" --unfreeze head --out head.safetensors txt.mmp 2>/dev/null || fail "--unfreeze head"
bad "--peft of a checkpoint without adapters" "no adapters to write" mmp-export --peft -o bad.d head.safetensors
[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all ok"
