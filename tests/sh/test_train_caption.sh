#!/usr/bin/env bash
# mmp-train-step --head caption (docs/caption.md) end to end on mmp-synth's
# caption scenes (5 captions per image) embedded by the tiny MobileNetV2 fixture:
# - a decoder from scratch: its WordLevel vocabulary (OUT-stem.tokenizer.json)
#   and initial weights (OUT-stem.decoder, a GPT2LMHeadModel folder) beside the
#   checkpoint; every (image, caption) pair is an example; the loss falls;
# - the checkpoint: clip_project.* (MLP / TransformerMapper), gpt.* when the
#   decoder trains, PEFT-named adapters for --unfreeze lora, nothing of the
#   decoder for --unfreeze head; the captioner metadata;
# - -j 1 and -j 3 give the same bits; --stop-after-epochs 1 + --resume the same
#   bits as one run;
# - bad input: no captions, a tokenizer that does not match the decoder,
#   --unfreeze last:2, a feature of another size at --resume: one line each.
set -u
command -v mmp-train-step >/dev/null || { echo "mmp-train-step not built"; exit 77; }
MN="$MMP_ROOT/tests/fixtures/nn/mnv2_w025.safetensors"
[ -f "$MN" ] || { echo "no tests/fixtures/nn networks"; exit 77; }
source "$MMP_ROOT/tests/sh/checks.sh"

mmp-synth --mode captions --out syn --train 24 --dev 8 --test 8 --seed 2 >/dev/null 2>&1 || { echo "FAIL: mmp-synth"; exit 1; }
for s in train dev; do
  mmp-decode --manifest syn/$s.jsonl --size 32 -o $s.img.mmp 2>/dev/null && mmp-embed --model "$MN" $s.img.mmp -o $s.mmp 2>/dev/null ||
    { echo "FAIL: decode/embed $s"; exit 1; }
done

tensors() { python3 - "$1" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
print(" ".join(sorted(k for k in h if not k.startswith("optim."))))
PY
}
meta() { python3 - "$1" "$2" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]
print(json.loads(b[8:8 + n])["__metadata__"].get(sys.argv[2], ""))
PY
}
# the tensors of two checkpoints bit for bit (metadata aside)
same() { python3 - "$1" "$2" <<'PY'
import json, struct, sys
def ts(f):
    b = open(f, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items()}
sys.exit(0 if ts(sys.argv[1]) == ts(sys.argv[2]) else 1)
PY
}

S="--head caption --prefix-length 3 --decoder-layers 1 --decoder-width 32 --decoder-heads 2 --decoder-context 40 --batch-size 16 --seed 4"
mkdir -p a b c d e
if mmp-train-step $S --epochs 2 --log a/log.jsonl --out a/cap.safetensors train.mmp 2> err.txt; then
  [ -f a/cap.tokenizer.json ] && [ -f a/cap.decoder/config.json ] && [ -f a/cap.decoder/model.safetensors ] || fail "scratch: no tokenizer / decoder folder beside the checkpoint"
  grep -q '"type": "WordLevel"' a/cap.tokenizer.json && grep -q '"<eos>": 2' a/cap.tokenizer.json || fail "scratch: tokenizer.json is not WordLevel with <eos> 2"
  t=$(tensors a/cap.safetensors)
  case "$t" in *clip_project.model.0.weight*gpt.transformer.h.0.attn.c_attn.weight*) ok "scratch, all: clip_project.* and gpt.* tensors";; *) fail "scratch, all: tensors $t";; esac
  [ "$(meta a/cap.safetensors head)" = caption ] && [ "$(meta a/cap.safetensors mapper)" = mlp ] && [ "$(meta a/cap.safetensors prefix_length)" = 3 ] &&
    [ "$(meta a/cap.safetensors feature_dim)" = 1280 ] || [ "$(meta a/cap.safetensors feature_dim)" -gt 0 ] || fail "metadata"
  [ "$(meta a/cap.safetensors decoder)" = "$(cd a && pwd -P)/cap.decoder" ] || fail "decoder metadata: $(meta a/cap.safetensors decoder)"
  # 120 pairs of 16: 8 steps an epoch
  [ "$(meta a/cap.safetensors step)" = 16 ] || fail "steps: $(meta a/cap.safetensors step) (120 pairs, batches of 16, 2 epochs: 16)"
  l1=$(sed -n 's/.*"epoch":1,.*"train_loss":\([^,]*\).*/\1/p' a/log.jsonl) l2=$(sed -n 's/.*"epoch":2,.*"train_loss":\([^,]*\).*/\1/p' a/log.jsonl)
  python3 -c "import sys; sys.exit(not float('$l2') < float('$l1'))" && ok "the loss falls: $l1 -> $l2" || fail "loss $l1 -> $l2"
else fail "scratch run: $(cat err.txt)"; fi
# -j and resume: the same bits (the scratch decoder and vocabulary of run a)
R="--head caption --decoder $PWD/a/cap.decoder --tokenizer $PWD/a/cap.tokenizer.json --prefix-length 3 --mapper transformer --mapper-layers 1 --batch-size 16 --seed 4"
mmp-train-step $R --epochs 2 -j 1 --out b/j1.safetensors train.mmp 2>/dev/null || fail "transformer mapper -j 1"
mmp-train-step $R --epochs 2 -j 3 --out b/j3.safetensors train.mmp 2>/dev/null || fail "transformer mapper -j 3"
same b/j1.safetensors b/j3.safetensors && ok "-j 1 and -j 3: the same bits" || fail "-j 1 and -j 3 differ"
mmp-train-step $R --epochs 2 --stop-after-epochs 1 --out b/r.safetensors train.mmp 2>/dev/null &&
  mmp-train-step --resume b/r.safetensors --out b/r.safetensors train.mmp 2>/dev/null || fail "stop + resume"
same b/r.safetensors b/j1.safetensors && ok "--stop-after-epochs 1 + --resume: the same bits as one run" || fail "resume differs"
case "$(tensors b/j1.safetensors)" in *clip_project.prefix_const*clip_project.transformer.layers.0.attn.to_keys_values.weight*) ok "transformer mapper tensors";;
  *) fail "transformer mapper tensors: $(tensors b/j1.safetensors)";; esac
# --unfreeze head / lora, label smoothing, a dev set
mmp-train-step $R --unfreeze head --epochs 1 --dev dev.mmp --out c/h.safetensors train.mmp 2>/dev/null || fail "--unfreeze head"
case "$(tensors c/h.safetensors)" in *gpt.*) fail "--unfreeze head: decoder tensors in the checkpoint";; *clip_project*) ok "--unfreeze head: the mapping network only";; esac
mmp-train-step $R --unfreeze lora --lora-rank 2 --label-smoothing 0.1 --epochs 1 --dev dev.mmp --out c/l.safetensors train.mmp 2>/dev/null || fail "--unfreeze lora"
case "$(tensors c/l.safetensors)" in *gpt.base_model.model.transformer.h.0.attn.c_attn.lora_A.weight*) ok "--unfreeze lora: PEFT-named adapters";;
  *) fail "--unfreeze lora: $(tensors c/l.safetensors)";; esac
[ -f c/l.last.safetensors ] || fail "--dev: no .last checkpoint"
# a GPT-2 folder with its byte-level BPE (the tiny random decoder of tests/fixtures/generate): LoRA, then captions
G="$MMP_ROOT/tests/fixtures/generate/gpt2"
if [ -f "$G/vocab.json" ]; then
  mkdir -p g
  if mmp-train-step --head caption --decoder "$G" --prefix-length 4 --unfreeze lora --lora-rank 2 --epochs 1 --batch-size 16 --out g/l.safetensors train.mmp 2> err.txt &&
     mmp-generate --model g/l.safetensors --max-new-tokens 8 dev.mmp -o g/gen.mmp 2>> err.txt && [ "$(mmp-cat --count g/gen.mmp)" = 8 ]; then
    [ -z "$(meta g/l.safetensors tokenizer)" ] && [ "$(meta g/l.safetensors decoder)" = "$(cd "$G" && pwd -P)" ] && ok "GPT-2 folder + BPE: LoRA, generate" ||
      fail "GPT-2 folder metadata: $(meta g/l.safetensors decoder) / $(meta g/l.safetensors tokenizer)"
  else fail "GPT-2 folder: $(cat err.txt)"; fi
fi
# bad input
python3 -c "
import json
with open('syn/nocap.jsonl', 'w') as f:
    for line in list(open('syn/dev.jsonl'))[:3]:
        r = json.loads(line); r.pop('captions'); f.write(json.dumps(r) + '\\n')"
mmp-decode --manifest syn/nocap.jsonl --size 32 -o nocap.img.mmp 2>/dev/null && mmp-embed --model "$MN" nocap.img.mmp -o nocap.mmp 2>/dev/null || fail "nocap.mmp"
bad "no captions" "no (record, caption) pair" mmp-train-step $R --epochs 1 --out bad.safetensors nocap.mmp
python3 -c "
import json; t = json.load(open('a/cap.tokenizer.json')); t['model']['vocab']['zzz'] = len(t['model']['vocab'])
json.dump(t, open('big.tokenizer.json', 'w'))"
bad "tokenizer vs decoder" "must match" mmp-train-step --head caption --decoder a/cap.decoder --tokenizer big.tokenizer.json --epochs 1 --out bad.safetensors train.mmp
bad "--unfreeze last:2" "head, lora or all" mmp-train-step $R --unfreeze last:2 --epochs 1 --out bad.safetensors train.mmp
[ "$fails" -eq 0 ] || exit 1
