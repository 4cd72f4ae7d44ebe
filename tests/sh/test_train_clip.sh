#!/usr/bin/env bash
# mmp-train-step --head clip end to end on the tiny open_clip model with CLIP's
# real vocabulary (tests/fixtures/tx_models/clip_text_oc): mmp-synth images +
# captions decoded to u8 16x16 records, a few epochs of both towers; the
# training loss falls; the checkpoint folder (weights + the copied config and
# tokenizer) is accepted by mmp-embed, mmp-embed-text and mmp-eval (retrieval,
# zero-shot); --stop-after-epochs + --resume is bit-identical to one run (the
# weights and the .optim file); -j 1, -j 3 and --recompute are bit-identical; the
# memory line is within 0.8..1.5 of the peak RSS growth; normalized f32
# records of the same pixels give the same checkpoint; --lock image
# leaves the image embeddings unchanged; --dev reports the loss and the
# image->text top-1 per epoch and --patience stops early; bad inputs (no text,
# no image, images of two sizes, a backbone that is not CLIP, a batch of one,
# a data set of one, a side file of another model beside --out): one line,
# non-zero exit. The values against PyTorch: tests/test_clip_ft.c and
# tests/py/test_clip_ft_torch.py.
set -u
command -v mmp-train-step >/dev/null || { echo "mmp-train-step not built"; exit 77; }
F="$MMP_ROOT/tests/fixtures"
source "$MMP_ROOT/tests/sh/checks.sh" # refuse
fail() { echo "FAIL: $*"; exit 1; }

mkdir -p oc
for f in open_clip_model.safetensors open_clip_config.json; do ln -sf "$F/tx_models/clip_text_oc/$f" oc/$f; done
ln -sf "$F/clip_tok/bpe_simple_vocab_16e6.txt.gz" oc/bpe_simple_vocab_16e6.txt.gz
mmp-synth -n 40 --seed 5 -o data.tar 2>/dev/null
mmp-synth -n 16 --seed 9 -o dev.tar 2>/dev/null
mmp-decode --size 16 --interp bicubic data.tar 2>/dev/null > img.mmp || fail "decode"
mmp-decode --size 16 --interp bicubic dev.tar 2>/dev/null > dev.mmp || fail "decode dev"

T="--head clip --loss contrastive --backbone oc --batch-size 8 --lr 2e-3 --weight-decay 0.1"
mkdir -p ft ft2 ft3 lit ftd nine
mmp-train-step $T --epochs 4 --log log.jsonl --out ft/model.safetensors img.mmp 2>train.err || { cat train.err; fail "train"; }
grep -q "epochs 1..4, 20 steps" train.err || { cat train.err; fail "steps"; }
[ -f ft/model.optim.safetensors ] && [ -f ft/open_clip_config.json ] && [ -f ft/bpe_simple_vocab_16e6.txt.gz ] || fail "checkpoint files"
first=$(grep '"train_loss"' log.jsonl | head -1 | sed 's/.*"train_loss":\([^,]*\).*/\1/')
last=$(grep '"train_loss"' log.jsonl | tail -1 | sed 's/.*"train_loss":\([^,]*\).*/\1/')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.1) }' || fail "the loss did not fall: $first -> $last"
echo "train loss $first -> $last"

# the checkpoint is a CLIP model for the other tools
mmp-embed --model ft img.mmp > emb.mmp 2>/dev/null || fail "mmp-embed --model ft"
mmp-embed-text --model ft/model.safetensors emb.mmp > pairs.mmp || fail "mmp-embed-text --model ft/model.safetensors"
mmp-eval --model ft --json ret.json pairs.mmp > /dev/null 2>ret.err || { cat ret.err; fail "mmp-eval retrieval"; }
mmp-eval --model ft/model.safetensors pairs.mmp > /dev/null 2>&1 || fail "mmp-eval --model FILE"
grep -q "image->text R@1" ret.err || fail "no recall"
mmp-synth --classes > classes.txt
mmp-embed-text --model ft --lines --template 'a photo of a {}.' classes.txt > prompts.mmp || fail "prompts"
mmp-eval --model ft --prompts prompts.mmp emb.mmp > /dev/null 2>zs.err || { cat zs.err; fail "zero-shot"; }
# trained: other embeddings than the backbone's
mmp-embed --model oc img.mmp > emb0.mmp 2>/dev/null
mmp-cat --full emb.mmp | tail -n +2 | sed 's/"provenance":"[^"]*"//' > a.txt
mmp-cat --full emb0.mmp | tail -n +2 | sed 's/"provenance":"[^"]*"//' > b.txt
cmp -s a.txt b.txt && fail "the fine-tuned image embeddings equal the backbone's"

# interrupted + resumed = one run, bit for bit; threads
mmp-train-step $T --epochs 4 --stop-after-epochs 2 --out ft2/model.safetensors img.mmp 2>/dev/null || fail "first half"
mmp-train-step --resume ft2/model.safetensors --out ft2/model.safetensors img.mmp 2>/dev/null || fail "resume"
cmp ft/model.safetensors ft2/model.safetensors || fail "resume: other weights"
cmp ft/model.optim.safetensors ft2/model.optim.safetensors || fail "resume: other optimizer state"
# --init: one more epoch from a checkpoint, its step and optimizer state (the per-epoch loop)
mkdir -p ft4
mmp-train-step --init ft/model.safetensors --tensorboard tb --out ft4/model.safetensors img.mmp 2>init.err || { cat init.err; fail "--init"; }
grep -q "epochs 5..5, 25 steps" init.err || { cat init.err; fail "--init: epochs/steps"; }
ls tb/events.out.tfevents.* >/dev/null 2>&1 || fail "no TensorBoard events"
cmp -s ft/model.safetensors ft4/model.safetensors && fail "--init did not train"
mmp-train-step $T --epochs 1 -j 1 --out ft3/j1.safetensors img.mmp 2>/dev/null || fail "-j 1"
mmp-train-step $T --epochs 1 -j 3 --out ft3/j3.safetensors img.mmp 2>/dev/null || fail "-j 3"
cmp ft3/j1.safetensors ft3/j3.safetensors || fail "-j 1 and -j 3 differ"
mmp-train-step $T --epochs 1 -j 1 --recompute --out ft3/rc.safetensors img.mmp 2>/dev/null || fail "--recompute"
cmp ft3/j1.safetensors ft3/rc.safetensors || fail "--recompute: other weights"
cmp ft3/j1.optim.safetensors ft3/rc.optim.safetensors || fail "--recompute: other optimizer state"

# normalized f32 [3,H,W] records of the same pixels: the same checkpoint; another normalization: refused
mmp-augment --normalize 0.48145466,0.4578275,0.40821073/0.26862954,0.26130258,0.27577711 img.mmp > norm.mmp 2>/dev/null || fail "augment"
mkdir -p f32
mmp-train-step $T --epochs 1 -j 1 --out f32/model.safetensors norm.mmp 2>/dev/null || fail "f32 records"
cmp ft3/j1.safetensors f32/model.safetensors || fail "f32 records: another checkpoint than u8"
mmp-augment --normalize 0.5,0.5,0.5/0.5,0.5,0.5 img.mmp > norm2.mmp 2>/dev/null
refuse "norm2.mmp: images normalized with mean 0.5,0.5,0.5" mmp-train-step $T --out bad.safetensors norm2.mmp

# LiT: the image tower does not change
mmp-train-step $T --epochs 2 --lock image --out lit/model.safetensors img.mmp 2>lit.err || { cat lit.err; fail "--lock image"; }
grep -q "image tower locked" lit.err || fail "no lock line"
mmp-embed --model lit img.mmp > emb_lit.mmp 2>/dev/null || fail "embed lit"
mmp-cat --full emb_lit.mmp | tail -n +2 | sed 's/"provenance":"[^"]*"//' > c.txt
cmp -s b.txt c.txt || fail "--lock image changed the image embeddings"
refuse "the checkpoint has lock=image; cannot change it to none" mmp-train-step --init lit/model.safetensors --lock none --out lit/x.safetensors img.mmp

# dev evaluation and early stopping
mmp-train-step $T --epochs 30 --patience 1 --lr 5e-2 --dev dev.mmp --log dev.jsonl --out ftd/model.safetensors img.mmp 2>dev.err ||
    { cat dev.err; fail "--dev"; }
grep -q '"dev_metric"' dev.jsonl && grep -q '"dev_loss"' dev.jsonl || fail "no dev entries"
grep -q "early stop after epoch" dev.err || { cat dev.err; fail "no early stop"; }
[ -f ftd/model.last.safetensors ] && [ -f ftd/model.last.optim.safetensors ] || fail "--last files"

# bad input: one line, non-zero exit
mmp-embed --model oc img.mmp > noimg.mmp 2>/dev/null # the image dropped
refuse "noimg.mmp: record 0: no tensor \"image\"" mmp-train-step $T --out bad.safetensors noimg.mmp
mkdir -p x && tar xf data.tar -C x 2>/dev/null
printf 'path,label\nx/item000000.jpg,0\nx/item000001.jpg,1\n' > nt.csv
mmp-decode --size 16 nt.csv > notext.mmp 2>/dev/null || fail "decode without text"
refuse "notext.mmp: record 0: no text" mmp-train-step $T --out bad.safetensors notext.mmp
I="$F/image/clip"
printf 'path,label,text\n%s,0,a cat\n%s,1,a dog\n' "$I/224x227.jpg" "$I/500x375.jpg" > mixed.csv
mmp-decode mixed.csv > mixed.mmp 2>/dev/null || fail "decode mixed"
refuse "record 1: \"image\" is u8 [375,500,3], record 0's u8 [227,224,3]" mmp-train-step $T --out bad.safetensors mixed.mmp
refuse "a vit-hf model; --head clip needs a CLIP model" mmp-train-step $T --backbone "$F/tx_models/vit_hf" --out bad.safetensors img.mmp
refuse "--batch-size 1 has no in-batch negatives" mmp-train-step $T --batch-size 1 --out bad.safetensors img.mmp
mmp-cat --head 1 -o one.mmp img.mmp
refuse "one.mmp: 1 record; the contrastive loss needs at least 2" mmp-train-step $T --out bad.safetensors one.mmp
refuse "--head clip needs --loss contrastive" mmp-train-step $T --loss ce --out bad.safetensors img.mmp
refuse "--lock is for --head clip" mmp-train-step --lock image --out bad.safetensors emb.mmp
mkdir -p other && echo '{}' > other/open_clip_config.json
refuse "other/open_clip_config.json: differs from the backbone's" mmp-train-step $T --out other/model.safetensors img.mmp
# the .optim file of another save, or none: one line (train/checkpoint.c's optim_id check)
mkdir -p mix && cp ft/model.safetensors mix/model.safetensors && cp ft4/model.optim.safetensors mix/model.optim.safetensors
cp ft/*.json ft/*.gz mix/ 2>/dev/null
refuse "both files must come from the same save" mmp-train-step --init mix/model.safetensors --out bad.safetensors img.mmp
rm mix/model.optim.safetensors
refuse "its optimizer state mix/model.optim.safetensors is missing" mmp-train-step --init mix/model.safetensors --out bad.safetensors img.mmp
# a last batch of one is skipped, and said so
mmp-cat --head 9 -o nine.mmp img.mmp
mmp-train-step $T --out nine/model.safetensors nine.mmp 2>nine.err || { cat nine.err; fail "nine"; }
grep -q "holds one record (no in-batch negatives): it is skipped" nine.err || { cat nine.err; fail "no note on the batch of one"; }
# the memory line against the peak RSS: one batch of 1024 pairs, the growth of the
# peak over an --epochs 0 run within 0.8..1.5 of saved + buffers + gradients +
# optimizer state (texts count at the full context: an upper bound)
rss=1
case "${MMP_EXTRA_CFLAGS:-}" in *sanitize*) rss=0; echo "sanitizer build: no peak RSS check (shadow memory)" ;; esac
if [ $rss = 1 ] && [ -n "${MMP_PYTHON:-}" ]; then
  mmp-synth -n 1024 --seed 5 -o big.tar 2>/dev/null && mmp-decode --size 16 --interp bicubic big.tar 2>/dev/null > big.mmp || fail "big"
  mkdir -p bb
  peak() { "$MMP_PYTHON" -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[2:], stderr=open(sys.argv[1], "w"))
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if r.returncode == 0 else -1)' "$@"; }
  for r in "" --recompute; do
    a=$(peak m0.txt mmp-train-step $T --batch-size 1024 --epochs 0 -j 2 $r --out bb/model.safetensors big.mmp)
    b=$(peak m1.txt mmp-train-step $T --batch-size 1024 --epochs 1 -j 2 $r --out bb/model.safetensors big.mmp)
    tot=$(sed -n 's/.*: \([0-9.]*\) MiB saved activations + \([0-9.]*\) MiB backward buffers; [0-9.]* MiB parameters + \([0-9.]*\) MiB gradients + \([0-9.]*\) MiB optimizer state/\1 \2 \3 \4/p' m1.txt |
          awk '{print $1 + $2 + $3 + $4}')
    [ "$a" -gt 0 ] && [ "$b" -gt 0 ] && [ -n "$tot" ] && awk -v a="$a" -v b="$b" -v t="$tot" 'BEGIN{g = (b - a) / 1024; exit !(t >= 0.8 * g && t <= 1.5 * g)}' \
      || fail "memory line${r:+ $r}: '$tot' MiB, peak RSS $a -> $b KiB: $(cat m1.txt)"
    echo "memory line${r:+ $r}: $tot MiB, peak RSS growth $(( (b - a) / 1024 )) MiB"
  done
fi
echo "ok"
