#!/usr/bin/env bash
# mmp-generate --model CAPTIONER (docs/caption.md): a captioner trained from
# scratch on mmp-synth caption scenes (MobileNetV2 fixture features) captions
# every record of a stream from its feature: text in the captioner's
# vocabulary, logprob and score tensors, the references kept; greedy and beam
# search; the same output for -j 1 / 3 and --batch 1 / 16; the LoRA captioner
# (merged at load); mmp-report scores it; mmp-export writes the decoder as a
# GPT-2 folder that trains a new mapping network; bad input: a record without
# the feature, a feature of another size, --tokenizer with a captioner.
set -u
command -v mmp-generate >/dev/null || { echo "mmp-generate not built"; exit 77; }
MN="$MMP_ROOT/tests/fixtures/nn/mnv2_w025.safetensors"
[ -f "$MN" ] || { echo "no tests/fixtures/nn networks"; exit 77; }
source "$MMP_ROOT/tests/sh/checks.sh"

mmp-synth --mode captions --out syn --train 24 --dev 4 --test 6 --seed 5 >/dev/null 2>&1 || { echo "FAIL: mmp-synth"; exit 1; }
for s in train test; do
  mmp-decode --manifest syn/$s.jsonl --size 32 -o $s.img.mmp 2>/dev/null && mmp-embed --model "$MN" $s.img.mmp -o $s.mmp 2>/dev/null ||
    { echo "FAIL: decode/embed $s"; exit 1; }
done
S="--head caption --prefix-length 3 --decoder-layers 1 --decoder-width 32 --decoder-heads 2 --decoder-context 40 --batch-size 16 --seed 1 --lr 3e-3"
mmp-train-step $S --epochs 3 --out cap.safetensors train.mmp 2>/dev/null || { echo "FAIL: train"; exit 1; }

mmp-generate --model cap.safetensors --max-new-tokens 12 test.mmp -o g1.mmp 2> err.txt || fail "greedy: $(cat err.txt)"
mmp-generate --model cap.safetensors --max-new-tokens 12 --batch 1 -j 3 test.mmp -o g2.mmp 2>/dev/null || fail "greedy --batch 1 -j 3"
cmp -s <(mmp-cat g1.mmp | tail -n +2) <(mmp-cat g2.mmp | tail -n +2) && ok "greedy: the same records for --batch 16 -j 1 and --batch 1 -j 3" || fail "batch/threads change the output"
python3 - cap.tokenizer.json <<'PY' > chk.txt
import json, subprocess, sys
vocab = json.load(open(sys.argv[1]))["model"]["vocab"]
lines = subprocess.run(["mmp-cat", "g1.mmp"], capture_output=True, text=True).stdout.splitlines()[1:]
bad = []
for l in lines:
    r = json.loads(l)
    t = r.get("text")
    if not t or any(w not in vocab for w in t.split()) or "logprob" not in r["tensors"] or len(r["strings"]["captions"]) != 5:
        bad.append(l[:200])
print(len(lines), len(bad), bad[:1])
PY
read -r n nbad _ < chk.txt
[ "$n" = 6 ] && [ "$nbad" = 0 ] && ok "6 captions in the vocabulary, logprob, the 5 references kept" || fail "greedy output: $(cat chk.txt)"
mmp-generate --model cap.safetensors --max-new-tokens 12 --num-beams 3 test.mmp -o b3.mmp 2>/dev/null && [ "$(mmp-cat --count b3.mmp)" = 6 ] &&
  ok "beam search" || fail "beam search"
mmp-report --json - < b3.mmp > rep.json 2>/dev/null && grep -q '"CIDEr"' rep.json && ok "mmp-report: caption metrics" || fail "mmp-report: $(head -c 300 rep.json)"
# LoRA on the exported decoder: merged at load
mmp-export -o lm cap.safetensors 2>/dev/null && [ -f lm/config.json ] && [ -f lm/tokenizer.json ] || fail "mmp-export of the decoder"
mmp-train-step --head caption --decoder lm --prefix-length 3 --unfreeze lora --lora-rank 2 --epochs 1 --batch-size 16 --out lora.safetensors train.mmp 2>/dev/null ||
  fail "train lora on the exported decoder"
mmp-generate --model lora.safetensors --max-new-tokens 12 test.mmp -o gl.mmp 2>/dev/null && [ "$(mmp-cat --count gl.mmp)" = 6 ] && ok "the LoRA captioner generates" ||
  fail "lora generate"
# bad input
mmp-generate --model cap.safetensors train.img.mmp -o x.mmp 2> err.txt && fail "a record without the feature: accepted" ||
  { [ "$(wc -l < err.txt)" = 1 ] && grep -q 'no tensor "embedding"' err.txt && ok "no feature: $(cat err.txt)" || fail "no feature: $(cat err.txt)"; }
mmp-train-step $S --epochs 1 --feature image --out capimg.safetensors train.img.mmp 2> err.txt && fail "u8 images as the feature: accepted" ||
  { [ "$(wc -l < err.txt)" = 1 ] && grep -q "expected a float" err.txt && ok "u8 images as the feature: $(cat err.txt)" || fail "image feature: $(cat err.txt)"; }
mmp-generate --model cap.safetensors --tokenizer lm test.mmp -o x.mmp 2> err.txt && fail "--tokenizer with a captioner: accepted" ||
  { [ "$(wc -l < err.txt)" = 1 ] && ok "--tokenizer with a captioner: $(cat err.txt)" || fail "--tokenizer: $(cat err.txt)"; }
mmp-eval --model cap.safetensors test.mmp -o x.mmp 2> err.txt && fail "mmp-eval of a captioner: accepted" ||
  { [ "$(wc -l < err.txt)" = 1 ] && grep -q "mmp-generate" err.txt && ok "mmp-eval of a captioner: $(cat err.txt)" || fail "mmp-eval: $(cat err.txt)"; }
[ "$fails" -eq 0 ] || exit 1
