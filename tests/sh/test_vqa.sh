#!/usr/bin/env bash
# VQA end to end on a small mmp-synth --mode vqa set: mmp-decode --manifest |
# mmp-embed --layer features.13:tokens (the tiny random MobileNetV2 fixture) ->
# mmp-train-step --head vqa / vqa-pooled with the tiny BERT fixture as the text
# tower: the answer vocabulary line, soft-score BCE with 10 answers and CE
# with one, the checkpoint's PyTorch names, bit-identical reruns, --init; mmp-eval
# writes "prediction" keeping "answers"/"qtype", reports the VQA accuracy per
# question type and the answers outside the vocabulary; bad input: records
# without image tokens or with an empty question are counted skips, a pooled
# embedding is refused in one line; the recipe pipelines/vqa.
set -u
for p in mmp-synth mmp-decode mmp-embed mmp-train-step mmp-eval mmp-cat; do
  command -v $p >/dev/null || { echo "no $p on PATH"; exit 77; }
done
fail() { echo "FAIL: $*"; exit 1; }
MNV2="$MMP_ROOT/tests/fixtures/nn/mnv2_w025.safetensors"
BERT="$MMP_ROOT/tests/fixtures/text/tiny_bert"
mmp-synth --mode vqa --out s10 --train 40 --dev 8 --test 8 --answers 10 --no-progress || fail "synth"
mmp-synth --mode vqa --out s1 --train 40 --dev 8 --test 8 --no-progress || fail "synth 1"
# s1's test answers as annotators write them ("Yes", "No.", "two"): the official
# normalization makes them the vocabulary's "yes", "no", "2" (eval/vqaeval.h)
sed -i -e 's/"answers": \["yes"\]/"answers": ["Yes"]/; s/"answers": \["no"\]/"answers": ["No."]/' \
  -e 's/"answers": \["0"\]/"answers": ["zero"]/; s/"answers": \["1"\]/"answers": ["one"]/; s/"answers": \["2"\]/"answers": ["two"]/' s1/test.jsonl
grep -q '"answers": \["No."\]' s1/test.jsonl || fail "no answer to normalize in s1/test.jsonl"
for d in s10 s1; do
  for split in train test; do
    mmp-decode --manifest $d/$split.jsonl --no-progress 2>/dev/null |
      mmp-embed --model "$MNV2" --layer features.13:tokens --no-progress -o $d/$split.mmp 2>/dev/null || fail "embed $d $split"
  done
done
T="--backbone $BERT --fuse-dim 16 --heads 2 --fuse-layers 2 --hidden 24 --epochs 2 --batch-size 16 --no-progress"
mmp-train-step --head vqa $T -o a.safetensors s10/train.mmp 2> a.err || { cat a.err; fail "train vqa"; }
grep -q "answer vocabulary: .* answers (--answers 3000) cover 2400 of 2400 annotations; 0 answers left out" a.err || { cat a.err; fail "vocabulary line"; }
grep -q "soft-score BCE" a.err || fail "10 answers: BCE"
# the checkpoint: the reference module's names (tests/fixtures/gen_vqa.py)
head -c 20000 a.safetensors | tr -d '\0' > a.hdr
for n in img_proj.weight img_pos img_norm.weight q_proj.weight layers.0.ln1.weight layers.1.attn.in_proj_weight \
         layers.1.attn.out_proj.bias layers.1.mlp.2.weight norm.bias classifier.0.weight classifier.2.bias \
         optim.classifier.2.bias.exp_avg '"format":"mmpipe-vqa"' '"vqa.loss":"bce"' '"head":"vqa"' '"fuse_layers":"2"'; do
  grep -q -- "$n" a.hdr || fail "checkpoint lacks $n"
done
# --img-layers: image self-attention layers (nn.TransformerEncoderLayer names); architecture options cannot change
mmp-train-step --head vqa $T --img-layers 1 --epochs 1 -o il.safetensors s10/train.mmp 2> il.err || { cat il.err; fail "--img-layers 1"; }
head -c 20000 il.safetensors | tr -d '\0' > il.hdr
for n in img_layers.0.self_attn.in_proj_weight img_layers.0.self_attn.out_proj.bias img_layers.0.linear1.weight \
         img_layers.0.linear2.bias img_layers.0.norm1.weight img_layers.0.norm2.bias '"img_layers":"1"'; do
  grep -q -- "$n" il.hdr || fail "--img-layers checkpoint lacks $n"
done
grep -q 'img_layers\.' a.hdr && fail "img_layers tensors without --img-layers"
mmp-train-step --init il.safetensors --img-layers 2 --epochs 2 -o il2.safetensors s10/train.mmp 2> il2.err && fail "--img-layers changed"
grep -q -- "img_layers 2: the checkpoint il.safetensors has 1" il2.err || { cat il2.err; fail "--img-layers change message"; }
mmp-eval --model il.safetensors s10/test.mmp -o /dev/null 2> ile.err || { cat ile.err; fail "eval --img-layers"; }
# bit-identical rerun
mmp-train-step --head vqa $T -o a2.safetensors s10/train.mmp 2>/dev/null || fail "rerun"
cmp -s a.safetensors a2.safetensors || fail "two runs differ"
# --stop-after-epochs then --resume: the same bits as one uninterrupted run
mmp-train-step --head vqa $T --epochs 3 -o r.safetensors --stop-after-epochs 1 s10/train.mmp 2>/dev/null || fail "stop after 1"
mmp-train-step --resume r.safetensors -o r.safetensors s10/train.mmp 2>/dev/null || fail "resume"
mmp-train-step --head vqa $T --epochs 3 -o r3.safetensors s10/train.mmp 2>/dev/null || fail "3 epochs"
cmp -s r.safetensors r3.safetensors || fail "resumed run differs from the uninterrupted one"
# one answer per question: CE; the pooled baseline
mmp-train-step --head vqa-pooled $T -o p.safetensors s1/train.mmp 2> p.err || { cat p.err; fail "train vqa-pooled"; }
grep -q "cross-entropy (one answer)" p.err || fail "1 answer: CE"
head -c 4000 p.safetensors | tr -d '\0' | grep -q '"head":"vqa-pooled"' || fail "pooled head key"
head -c 4000 p.safetensors | tr -d '\0' | grep -q 'img_proj' && fail "the pooled baseline has no projections"
# --init: one more epoch from the checkpoint
mmp-train-step --init a.safetensors --epochs 1 -o b.safetensors s10/train.mmp 2> b.err || { cat b.err; fail "--init"; }
grep -q "epochs 3..3" b.err || { cat b.err; fail "--init epochs"; }
# mmp-eval: predictions and the VQA accuracy
mmp-eval --model a.safetensors s10/test.mmp -o pred.mmp --json acc.json 2> e.err || { cat e.err; fail "eval"; }
grep -q "VQA accuracy" e.err || fail "eval accuracy line"
for q in color shape count yesno position relation; do grep -q "^mmp-eval:   $q " e.err || fail "no $q line"; done
mmp-cat pred.mmp | head -n 1 | grep -q '"vqa.answers":"\[' || fail "no vqa.answers in the prediction stream's header"
mmp-cat pred.mmp | sed -n 2p > rec.json
grep -q '"prediction":\["' rec.json && grep -q '"answers":\[' rec.json && grep -q '"qtype":\[' rec.json || fail "prediction record: $(cat rec.json)"
grep -q '"embedding"' rec.json && fail "the image tokens are kept"
grep -q '"per_qtype":{' acc.json && grep -q '"scored":48' acc.json || fail "json: $(cat acc.json)"
# mmp-report scores the prediction stream as mmp-eval did (the official VQA accuracy, 100x)
acc=$(sed 's/.*"vqa_accuracy":\([0-9.e-]*\).*/\1/' acc.json)
mmp-report pred.mmp > rep.txt 2>&1 || { cat rep.txt; fail "mmp-report"; }
grep -q "VQA accuracy (official evaluation) $(awk -v a="$acc" 'BEGIN { printf "%.2f", 100 * a }') " rep.txt ||
  { cat rep.txt; fail "mmp-report's VQA accuracy is not mmp-eval's ($acc)"; }
# one answer per question: the exact match of the normalized strings, as mmp-report's
mmp-eval --model p.safetensors s1/test.mmp -o pred1.mmp --json acc1.json 2> e1.err || { cat e1.err; fail "eval s1"; }
acc=$(sed 's/.*"vqa_accuracy":\([0-9.e-]*\).*/\1/' acc1.json)
mmp-report pred1.mmp > rep1.txt 2>&1 || { cat rep1.txt; fail "mmp-report s1"; }
grep -q "exact-match accuracy $(awk -v a="$acc" 'BEGIN { printf "%.2f", 100 * a }') " rep1.txt ||
  { cat rep1.txt; fail "mmp-report's exact-match accuracy is not mmp-eval's ($acc)"; }
# answers outside the vocabulary at evaluation: counted as wrong and reported
mmp-train-step --head vqa $T --answers 3 -o k3.safetensors s10/train.mmp 2> k3.err || fail "--answers 3"
grep -q "answer vocabulary: 3 answers (--answers 3)" k3.err && grep -q "answers left out" k3.err || fail "k3 vocabulary"
mmp-eval --model k3.safetensors s10/test.mmp -o /dev/null 2> k3e.err || fail "eval k3"
grep -q "annotated answers outside the vocabulary" k3e.err && grep -q "with no annotated answer in the vocabulary: counted as wrong" k3e.err ||
  { cat k3e.err; fail "out-of-vocabulary report"; }
# bad input: a pooled embedding is refused in one line
mmp-decode --manifest s1/test.jsonl --no-progress 2>/dev/null | mmp-embed --model "$MNV2" --no-progress -o pooled.mmp 2>/dev/null
mmp-train-step --head vqa $T -o x.safetensors pooled.mmp 2> x.err && fail "pooled embeddings accepted"
[ "$(wc -l < x.err)" = 1 ] && grep -q 'is not a token sequence' x.err || { cat x.err; fail "pooled refusal"; }
mmp-train-step --head vqa $T --loss bce -o x.safetensors s1/train.mmp 2> x.err && fail "--loss bce accepted"
[ "$(wc -l < x.err)" = 1 ] || fail "--loss refusal: $(cat x.err)"
# records with no image tokens or an empty question: counted skips
if [ -n "${MMP_PYTHON:-}" ]; then
  PYTHONPATH="$MMP_ROOT/formats/python" "$MMP_PYTHON" - <<'PY' || fail "python: bad records"
import numpy as np
from mmpipe import stream
H, R = stream.load("s1/test.mmp")
with stream.Writer("bad.mmp", H["schema"], meta=H["meta"]) as w:
    for i, r in enumerate(R):
        t = dict(r["tensors"])
        text = r["text"]
        if i == 0:
            text = ""
        if i == 1:
            t["embedding"] = np.zeros((0, t["embedding"].shape[1]), np.float32)
        w.write(t, id=r["id"], text=text, strings=r.get("strings"))
PY
  mmp-train-step --head vqa $T -o bad.safetensors bad.mmp 2> bad.err || { cat bad.err; fail "train with bad records"; }
  grep -q "1 skipped: no image tokens; 1 skipped: empty question" bad.err || { cat bad.err; fail "skips not reported"; }
  mmp-eval --model p.safetensors bad.mmp -o bp.mmp 2> be.err || { cat be.err; fail "eval with bad records"; }
  grep -q "1 skipped: no image tokens; 1 skipped: empty question" be.err || { cat be.err; fail "eval skips not reported"; }
fi
# the recipe pipelines/vqa: --help, a missing input in one line, a run with the baseline
"$MMP_ROOT/pipelines/vqa" --help | grep -q "pipelines/vqa" || fail "pipelines/vqa --help"
"$MMP_ROOT/pipelines/vqa" nope.jsonl s1/test.jsonl "$MNV2" "$BERT" > pe.txt 2>&1 && fail "pipelines/vqa accepted a missing input"
[ "$(wc -l < pe.txt)" = 1 ] && grep -q nope.jsonl pe.txt || fail "pipelines/vqa missing input: $(cat pe.txt)"
"$MMP_ROOT/pipelines/vqa" --out pv --epochs 1 --fuse-dim 16 --heads 2 --baseline s1/train.jsonl s1/test.jsonl "$MNV2" "$BERT" > pv.txt 2> pv.err ||
  { cat pv.err; fail "pipelines/vqa"; }
grep -q -- "--head vqa on TEST" pv.txt && grep -q -- "--head vqa-pooled on TEST" pv.txt && grep -q "VQA accuracy" pv.txt || fail "pipelines/vqa output"
echo ok
