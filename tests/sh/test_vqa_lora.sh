#!/usr/bin/env bash
# mmp-train-step --head vqa|vqa-pooled --text-unfreeze lora|all (the text tower
# trains with the fusion model) on a small mmp-synth --mode vqa set, the tiny
# BERT fixture as the tower: the checkpoint holds the adapters under text_tower.*
# with their optimizer state; -j 1 and -j 2 give the same bits, --resume the bits
# of one uninterrupted run (LoRA dropout on); mmp-eval runs the tower with the
# adapters (its accuracy falls when the metadata says the tower was frozen) and
# refuses a checkpoint that lacks one in one line; mmp-export --peft writes the
# adapter folder mmp-embed-text --adapter takes; --text-unfreeze all; refusals.
set -u
for p in mmp-synth mmp-decode mmp-embed mmp-train-step mmp-eval mmp-export mmp-embed-text mmp-cat; do
  command -v $p >/dev/null || { echo "no $p on PATH"; exit 77; }
done
fail() { echo "FAIL: $*"; exit 1; }
MNV2="$MMP_ROOT/tests/fixtures/nn/mnv2_w025.safetensors"
BERT="$MMP_ROOT/tests/fixtures/text/tiny_bert"
mmp-synth --mode vqa --out s --train 40 --dev 8 --test 8 --answers 10 --no-progress || fail "synth"
for split in train dev; do
  mmp-decode --manifest s/$split.jsonl --no-progress 2>/dev/null |
    mmp-embed --model "$MNV2" --layer features.13:tokens --no-progress -o s/$split.mmp 2>/dev/null || fail "embed $split"
done
T="--backbone $BERT --fuse-dim 16 --heads 2 --fuse-layers 2 --hidden 24 --batch-size 16 --lr 1e-2 --no-progress"
L="--text-unfreeze lora --lora-rank 4 --lora-dropout 0.1"
mmp-train-step --head vqa $T $L --epochs 30 -j 1 -o l.safetensors s/train.mmp 2> l.err || { cat l.err; fail "train lora"; }
head -c 20000 l.safetensors | tr -d '\0' > l.hdr
for n in text_tower.base_model.model.encoder.layer.0.attention.self.query.lora_A.weight \
         text_tower.base_model.model.encoder.layer.1.attention.self.value.lora_B.weight \
         optim.text_tower.base_model.model.encoder.layer.1.attention.self.value.lora_B.weight.exp_avg_sq \
         q_proj.weight '"text_unfreeze":"lora"' '"lora_rank":"4"' '"lora_dropout":"0.10000000000000001"'; do
  grep -q -- "$n" l.hdr || fail "checkpoint lacks $n"
done
grep -q 'lora_A.*key\.lora_A\|attention\.self\.key\.lora' l.hdr && fail "default targets are query,value"
# -j: the same bits
mmp-train-step --head vqa $T $L --epochs 30 -j 2 -o l2.safetensors s/train.mmp 2>/dev/null || fail "train lora -j 2"
cmp -s l.safetensors l2.safetensors || fail "-j 1 and -j 2 differ"
# --stop-after-epochs then --resume: the same bits as one run
mmp-train-step --head vqa $T $L --epochs 3 -o r.safetensors --stop-after-epochs 1 s/train.mmp 2>/dev/null || fail "stop after 1"
mmp-train-step --resume r.safetensors -o r.safetensors s/train.mmp 2>/dev/null || fail "resume"
mmp-train-step --head vqa $T $L --epochs 3 -o r3.safetensors s/train.mmp 2>/dev/null || fail "3 epochs"
cmp -s r.safetensors r3.safetensors || fail "resumed run differs from the uninterrupted one"
# mmp-eval runs the tower with the adapters: the checkpoint's own accuracy on its training
# questions, lower when the metadata says the tower was frozen (the adapters then unused)
mmp-eval --model l.safetensors s/train.mmp -o /dev/null --json a.json 2> e.err || { cat e.err; fail "eval"; }
LC_ALL=C sed 's/"text_unfreeze":"lora"/"text_unfreeze":"head"/' l.safetensors > h.safetensors
mmp-eval --model h.safetensors s/train.mmp -o /dev/null --json h.json 2>/dev/null || fail "eval frozen"
acc() { sed 's/.*"vqa_accuracy":\([0-9.e-]*\).*/\1/' "$1"; }
awk -v a="$(acc a.json)" -v h="$(acc h.json)" 'BEGIN { exit !(a > h + 0.05) }' ||
  fail "the adapters do not change mmp-eval's accuracy ($(acc a.json) vs $(acc h.json) without them)"
# a checkpoint without one of its adapters: one line naming it
LC_ALL=C sed 's/layer\.1\.attention\.self\.value\.lora_B/layer.1.attention.self.value.lora_X/' l.safetensors > x.safetensors
mmp-eval --model x.safetensors s/train.mmp -o /dev/null 2> x.err && fail "a missing adapter accepted"
[ "$(wc -l < x.err)" = 1 ] && grep -q "value.lora_B" x.err || { cat x.err; fail "missing adapter: $(cat x.err)"; }
# mmp-export --peft: the adapter folder over the text tower
mmp-export --peft -o ad l.safetensors 2> ex.err || { cat ex.err; fail "export --peft"; }
grep -q '"r": 4' ad/adapter_config.json && grep -q '"query"' ad/adapter_config.json || fail "adapter_config.json: $(cat ad/adapter_config.json)"
mmp-export --peft -o ad2 r.safetensors 2>/dev/null || fail "export --peft r"
printf 'what color is the square?\n' > q.txt
mmp-embed-text --model "$BERT" --lines q.txt -o e0.mmp --no-progress 2>/dev/null || fail "embed-text"
mmp-embed-text --model "$BERT" --adapter ad --lines q.txt -o e1.mmp --no-progress 2> e1.err || { cat e1.err; fail "embed-text --adapter"; }
[ "$(mmp-cat e0.mmp | sed -n 2p)" != "$(mmp-cat e1.mmp | sed -n 2p)" ] || fail "the exported adapters change nothing"
mmp-train-step --head vqa $T --epochs 1 -o f.safetensors s/train.mmp 2>/dev/null || fail "frozen"
mmp-export --peft -o ad3 f.safetensors 2> f.err && fail "export --peft of a frozen tower"
[ "$(wc -l < f.err)" = 1 ] && grep -q "not trained with --text-unfreeze lora" f.err || fail "frozen export: $(cat f.err)"
# --text-unfreeze all (the pooled baseline): every tower weight in the checkpoint; -j; mmp-eval
mmp-train-step --head vqa-pooled $T --text-unfreeze all --epochs 2 -j 1 -o al.safetensors s/train.mmp 2>/dev/null || fail "all"
mmp-train-step --head vqa-pooled $T --text-unfreeze all --epochs 2 -j 2 -o al2.safetensors s/train.mmp 2>/dev/null || fail "all -j 2"
cmp -s al.safetensors al2.safetensors || fail "all: -j 1 and -j 2 differ"
head -c 20000 al.safetensors | tr -d '\0' | grep -q 'text_tower.embeddings.word_embeddings.weight' || fail "all: no tower weights"
mmp-eval --model al.safetensors s/dev.mmp -o /dev/null 2>/dev/null || fail "eval all"
# refusals, one line each
mmp-train-step --init l.safetensors --text-unfreeze head -o y.safetensors s/train.mmp 2> y.err && fail "--init lora -> head accepted"
[ "$(wc -l < y.err)" = 1 ] && grep -q "text_unfreeze" y.err || fail "lora -> head: $(cat y.err)"
mmp-train-step --head vqa $T --text-unfreeze lora --lora-targets nope -o y.safetensors s/train.mmp 2> y.err && fail "bad target accepted"
[ "$(wc -l < y.err)" = 1 ] && grep -q "nope" y.err || fail "bad target: $(cat y.err)"
mmp-train-step --head vqa $T --text-unfreeze some -o y.safetensors s/train.mmp 2> y.err && fail "--text-unfreeze some accepted"
[ "$(wc -l < y.err)" = 1 ] || fail "--text-unfreeze some: $(cat y.err)"
echo ok
