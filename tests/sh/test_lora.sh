#!/usr/bin/env bash
# LoRA adapters (PEFT's format) from the command line, on the tiny fixtures of
# tests/fixtures/gen_lora.py: mmp-embed / mmp-embed-text --adapter (run
# unmerged, the adapter's SHA-256 in the provenance) against the merged
# backbone of mmp-export --merge-lora (within 1e-5 of the largest value) and
# against the base alone (they must differ); ViT, CLIP's image and text towers, BERT;
# the refusals (one line, non-zero exit): a target that matches nothing, an
# adapter for another model, another base than the one recorded (both
# checksums named), --merge-lora without --model or without an adapter.
set -u
command -v mmp-export >/dev/null || { echo "mmp-export not built"; exit 77; }
py=${MMP_PYTHON:-}
[ -n "$py" ] && "$py" -c 'import numpy' 2>/dev/null || { echo "no python3 with numpy"; exit 77; }
F="$MMP_ROOT/tests/fixtures"
source "$MMP_ROOT/tests/sh/checks.sh" # refuse
fail() { echo "FAIL: $*"; exit 1; }
# close A B FIELD: the FIELD tensors of two streams within 1e-5 of the largest |value| (prints the error);
# far A B FIELD: they differ by more than 1e-2
cmpf() {
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
sha() { sha256sum "$1" | cut -c1-64; }

# ---- ViT (HF ViTModel): image embeddings
mkdir -p vit merged_vit
ln -sf "$F/tx_models/vit_hf/model.safetensors" vit/model.safetensors
ln -sf "$F/tx_models/vit_hf/config.json" vit/config.json
cp "$F/tx_models/vit_hf/config.json" merged_vit/
mmp-synth -n 6 --seed 3 -o data.tar 2>/dev/null
mmp-decode --size 40 --interp bicubic data.tar 2>/dev/null > img.mmp || fail "decode"
mmp-embed --model vit --adapter "$F/lora/vit" img.mmp > lora.mmp 2>/dev/null || fail "embed --adapter"
mmp-embed --model vit img.mmp > base.mmp 2>/dev/null || fail "embed base"
mmp-export --merge-lora "$F/lora/vit" --model vit -o merged_vit/model.safetensors || fail "merge"
mmp-embed --model merged_vit img.mmp > merged.mmp 2>/dev/null || fail "embed merged"
cmpf lora.mmp merged.mmp embedding close || fail "vit: base + adapter vs merged"
cmpf lora.mmp base.mmp embedding far || fail "vit: the adapter changes nothing"
ad=$(sha "$F/lora/vit/adapter_model.safetensors")
mmp-cat --header lora.mmp > h.json
grep -q "sha256=$(sha "$F/tx_models/vit_hf/model.safetensors"):[^\"]*:lora=$ad:r=4:alpha=8:modules=12" h.json || { cat h.json; fail "provenance"; }
grep -q '"lora.sha256": *"'"$ad"'"' h.json || { cat h.json; fail "lora.sha256"; }
mmp-cat --header base.mmp | grep -q "lora=" && fail "base provenance names an adapter"

# ---- BERT (sentence-transformers layout): text embeddings
mkdir -p merged_bert
for f in config.json vocab.txt sentence_bert_config.json; do cp "$F/text/tiny_bert/$f" merged_bert/; done
mmp-export --merge-lora "$F/lora/bert" --model "$F/text/tiny_bert" -o merged_bert/model.safetensors || fail "merge bert"
printf 'hello world\nthe cat sat on the mat\na b c\n' > lines.txt
mmp-embed-text --model "$F/text/tiny_bert" --adapter "$F/lora/bert" --lines lines.txt > tl.mmp || fail "embed-text --adapter"
mmp-embed-text --model merged_bert --lines lines.txt > tm.mmp || fail "embed-text merged"
mmp-embed-text --model "$F/text/tiny_bert" --lines lines.txt > tb.mmp || fail "embed-text base"
cmpf tl.mmp tm.mmp text_embedding close || fail "bert: base + adapter vs merged"
cmpf tl.mmp tb.mmp text_embedding far || fail "bert: the adapter changes nothing"
mmp-cat --header tl.mmp | grep -q "text_provenance.*lora=$(sha "$F/lora/bert/adapter_model.safetensors")" || fail "text provenance"

# ---- CLIP (HF CLIPModel): the image tower
mkdir -p clip merged_clip
for f in model.safetensors config.json preprocessor_config.json; do ln -sf "$F/tx_models/clip_hf/$f" clip/$f; done
for f in config.json preprocessor_config.json; do cp "$F/tx_models/clip_hf/$f" merged_clip/; done
mmp-export --merge-lora "$F/lora/clip" --model clip -o merged_clip/model.safetensors || fail "merge clip"
mmp-embed --model clip --adapter "$F/lora/clip" img.mmp > cl.mmp 2>/dev/null || fail "clip embed --adapter"
mmp-embed --model merged_clip img.mmp > cm.mmp 2>/dev/null || fail "clip embed merged"
cmpf cl.mmp cm.mmp embedding close || fail "clip image: base + adapter vs merged"

# ---- CLIP's text tower (CLIPTextModelWithProjection, CLIP's vocabulary) in mmp-embed-text
GZ="$F/clip_tok/bpe_simple_vocab_16e6.txt.gz"
mkdir -p ct merged_ct
for f in model.safetensors config.json; do ln -sf "$F/tx_models/clip_text_hf/$f" ct/$f; done
cp "$F/tx_models/clip_text_hf/config.json" merged_ct/
mmp-export --merge-lora "$F/lora/clip_text" --model ct -o merged_ct/model.safetensors || fail "merge clip_text"
mmp-embed-text --model ct --tokenizer "$GZ" --adapter "$F/lora/clip_text" --lines lines.txt > ctl.mmp || fail "clip text --adapter"
mmp-embed-text --model merged_ct --tokenizer "$GZ" --lines lines.txt > ctm.mmp || fail "clip text merged"
mmp-embed-text --model ct --tokenizer "$GZ" --lines lines.txt > ctb.mmp || fail "clip text base"
cmpf ctl.mmp ctm.mmp text_embedding close || fail "clip text: base + adapter vs merged"
cmpf ctl.mmp ctb.mmp text_embedding far || fail "clip text: the adapter changes nothing"

# ---- refusals
mkdir -p nomatch
cp "$F/lora/vit/adapter_model.safetensors" nomatch/
sed 's/"intermediate.dense"/"nosuch_proj"/; s/"query",//; s/"key",//; s/"value",//; s/"output.dense",//' \
    "$F/lora/vit/adapter_config.json" > nomatch/adapter_config.json
refuse 'target_modules ["nosuch_proj"] matches no module' mmp-embed --model vit --adapter nomatch img.mmp
refuse "is missing (target_modules selects encoder.layer.0.attention.self.query)" mmp-embed-text --model "$F/text/tiny_bert" --adapter "$F/lora/vit" --lines lines.txt
mmp-export --stamp-lora "$F/lora/vit" --model vit -o stamped || fail "stamp"
mkdir -p other && ln -sf "$F/tx_models/vit_hf_cls/model.safetensors" other/model.safetensors &&
    ln -sf "$F/tx_models/vit_hf_cls/config.json" other/config.json
refuse "$(sha "$F/tx_models/vit_hf_cls/model.safetensors")" mmp-embed --model other --adapter stamped img.mmp
grep -q "$(sha "$F/tx_models/vit_hf/model.safetensors")" err.txt || fail "the recorded checksum is not named"
mmp-embed --model vit --adapter stamped img.mmp > st.mmp 2>/dev/null || fail "the stamped adapter on its base"
refuse "needs --model" mmp-export --merge-lora "$F/lora/vit" -o x.safetensors
refuse "not an adapter folder" mmp-export --merge-lora nosuch --model vit -o x.safetensors
echo ok
