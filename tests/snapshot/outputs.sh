#!/usr/bin/env bash
# Writes a deterministic set of outputs of every mmp-* program, and the
# printed results of every C test, into OUTDIR: the "before and after"
# evidence for a refactoring (scripts/compare-outputs.sh runs it on two
# revisions and compares the files byte for byte).
#
#   tests/snapshot/outputs.sh BUILD_DIR OUTDIR
#
# Models: the pretrained MobileNetV2 in ../shared and all-MiniLM-L6-v2 in
# models/ when present, else seeded random networks of the same shapes
# (pipelines/lib/random_init.py, numpy only). Every command is seeded; the
# headers' history records argv, so both revisions must run in the same
# OUTDIR path (compare-outputs.sh does that).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "$1" && pwd); out=$2
mkdir -p "$out"; out=$(cd "$out" && pwd); cd "$out"
export PATH="$build:$PATH"
py=${MMP_PYTHON:-python3}
shared=${MMP_SHARED:-$root/../shared}
run() { # name, command... : stdout to NAME, stderr to NAME.err, exit status to NAME.rc
  local n=$1; shift
  set +e; "$@" > "$n" 2> "$n.err"; echo $? > "$n.rc"; set -e
}

# --- data ---------------------------------------------------------------------
mmp-synth -n 48 --seed 3 --prefix tr- -o train.tar
mmp-synth -n 24 --seed 3 --first 100000 --prefix te- -o test.tar
mmp-synth --classes > classes.txt
img=$shared/models/mobilenet_v2-imagenet.safetensors
[ -f "$img" ] || { "$py" "$root/pipelines/lib/random_init.py" mobilenet_v2 mnv2.safetensors --seed 5; img=$PWD/mnv2.safetensors; }
txt=$root/models/all-MiniLM-L6-v2
if [ ! -f "$txt/model.safetensors" ]; then
  tar -xOf train.tar --wildcards '*.txt' > captions.txt
  "$py" "$root/pipelines/lib/random_init.py" bert bert --vocab-from captions.txt --seed 5 >/dev/null; txt=$PWD/bert
fi

# --- decode / augment / shuffle / split / cat --------------------------------
run dec-native.mmp mmp-decode --classes-from classes.txt -j 2 train.tar
run dec-64.mmp mmp-decode --classes-from classes.txt --size 64 train.tar
run dec-test.mmp mmp-decode --classes-from classes.txt --size 64 test.tar
run dec-resize.mmp mmp-decode --resize 40x40 --level 5 train.tar
run aug.mmp mmp-augment --rrc 48,scale=0.35:1 --hflip 0.5 --jitter 0.4,0.4,0.4,0.1 --views 2 --seed 1 dec-64.mmp
run aug-f32.mmp mmp-augment --rrc 32 --hflip 0.5 --erase 0.5 --normalize imagenet --seed 2 -j 2 dec-64.mmp
run shuf.mmp mmp-shuffle --buffer 10 --seed 2 dec-64.mmp
run fit-img.mmp mmp-split --ratio 0.7 --seed 0 dec-64.mmp --rest dev-img.mmp
run cat.jsonl mmp-cat dec-64.mmp
run cat-head.jsonl mmp-cat --head 2 --full aug-f32.mmp
run cat-header.json mmp-cat --header aug.mmp
run cat-count.txt mmp-cat --count fit-img.mmp dev-img.mmp

# --- embed / embed-text / fuse -------------------------------------------------
run emb.mmp mmp-embed --model "$img" dec-64.mmp
run emb-test.mmp mmp-embed --model "$img" dec-test.mmp
run emb-f16.mmp mmp-embed --model "$img" --layer features.16:flat dec-64.mmp
run emb-f16-test.mmp mmp-embed --model "$img" --layer features.16:flat dec-test.mmp
run pairs.mmp mmp-embed-text --model "$txt" emb.mmp
run pairs-test.mmp mmp-embed-text --model "$txt" emb-test.mmp
run prompts.mmp mmp-embed-text --model "$txt" --lines --template "a photo of a {}" classes.txt
run fuse-concat.mmp mmp-fuse --fields embedding,text_embedding --l2 pairs.mmp
run fuse-concat-test.mmp mmp-fuse --fields embedding,text_embedding --l2 pairs-test.mmp
run fuse-weighted.mmp mmp-fuse --fields embedding,text_embedding --mode weighted --weights 0.3,0.7 --project 64 --proj-seed 4 pairs.mmp
run fit.mmp mmp-split --ratio 0.75 --seed 1 fuse-concat.mmp --rest dev.mmp

# --- train / eval / report ------------------------------------------------------
run lin.log mmp-train-step --epochs 4 --dev dev.mmp --patience 2 --out lin.safetensors --seed 1 fit.mmp
run mlp.log mmp-train-step --hidden 32 --dropout 0.2 --optimizer sgd --lr 0.05 --momentum 0.9 --nesterov \
  --schedule cosine --warmup 2 --epochs 3 --label-smoothing 0.1 --seed 2 --out mlp.safetensors fit.mmp
run gated.log mmp-train-step --head gated --pair-field text_embedding --fuse-dim 16 --epochs 3 --seed 3 --out gated.safetensors pairs.mmp
run attn.log mmp-train-step --head attention --pair-field text_embedding --fuse-dim 16 --epochs 2 --seed 3 --out attn.safetensors pairs.mmp
run pair.log mmp-train-step --head pair --pair-field text_embedding --loss contrastive --proj-dim 16 --epochs 2 --seed 4 --out pair.safetensors pairs.mmp
run tail.log mmp-train-step --head mnv2-tail --backbone "$img" --epochs 1 --batch-size 16 --seed 5 -j 2 --out tail.safetensors emb-f16.mmp
run pred-lin.mmp mmp-eval --model lin.safetensors fuse-concat-test.mmp
run pred-mlp.mmp mmp-eval --model mlp.safetensors fuse-concat-test.mmp
run pred-gated.mmp mmp-eval --model gated.safetensors pairs-test.mmp
run pred-tail.mmp mmp-eval --model tail.safetensors emb-f16-test.mmp
run gated-fused.mmp mmp-fuse --mode gated --checkpoint gated.safetensors --fields embedding,text_embedding pairs-test.mmp
run report.txt mmp-report pred-lin.mmp
run report.json mmp-report --json - pred-mlp.mmp
run report-tail.txt mmp-report pred-tail.mmp
run retrieval.mmp mmp-eval --model pair.safetensors --json retrieval.json --k 1,5 pairs-test.mmp
run zeroshot.mmp mmp-eval --model pair.safetensors --prompts prompts.mmp pairs-test.mmp

# --- bad input: the one-line messages -------------------------------------------
head -c 3000 emb.mmp > trunc.mmp
run bad-trunc.txt mmp-cat --count trunc.mmp
run bad-train.txt mmp-train-step --out never.safetensors trunc.mmp
run bad-opt.txt mmp-decode --no-such-option train.tar
run bad-val.txt mmp-shuffle --buffer x dec-64.mmp

# --- C tests: what they print (measured errors, counts) -------------------------
mkdir -p ctests
for t in "$build"/tests/test_*; do
  n=$(basename "$t"); mkdir -p "ctests/$n.d"
  ( cd "ctests/$n.d" && MMP_TMP=$PWD MMP_ROOT=$root MMP_BUILD=$build MMP_SHARED=$shared "$t" ) > "ctests/$n" 2>&1 </dev/null || echo "exit $?" >> "ctests/$n"
  rm -rf "ctests/$n.d"
done
