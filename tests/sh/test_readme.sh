#!/usr/bin/env bash
# Runs every ```sh block of README.md, in order, in one scratch folder, so the
# README cannot drift from the programs. Blocks preceded by a line
# "<!-- not run: REASON -->" are skipped (the two set-up commands, which CI
# runs itself, and the hour-long CIFAR-10 recipe, which bench/ runs).
# The files the examples name are made here: train.tar / test.tar (ImageFolder
# tars of mmp-synth pictures), captions.tar + classes.txt (WebDataset with
# captions), mnv2.safetensors (the shared MobileNetV2, else a random one),
# minilm/ (all-MiniLM-L6-v2 from models/, else a random BERT), models/clip-vit-base-patch32
# (from models/, else the tiny CLIP fixture). `ssh HOST CMD`
# runs CMD here and `curl URL` prints captions.tar: the examples that show
# remote use run through the same pipes.
set -u
R=$MMP_ROOT
py=${MMP_PYTHON:-}
[ -n "$py" ] && "$py" -c 'import numpy, msgpack, zstandard' 2>/dev/null || { echo "no python3 with numpy/msgpack/zstandard"; exit 77; }
ln -s "$R/pipelines" pipelines; ln -s "$R/formats" formats; ln -s "$R/scripts" scripts
# data
mmp-synth --classes > classes.txt
mmp-synth -n 120 --seed 5 --prefix cap- -o captions.tar
for s in train test; do
  n=120; [ $s = test ] && n=60
  mkdir -p x/$s; mmp-synth -n $n --seed 5 --first $([ $s = test ] && echo 9000 || echo 0) -o x/$s.tar
  tar xf x/$s.tar -C x/$s
  for f in x/$s/*.jpg; do k=${f%.jpg}; c=$(sed -n "$(( $(cat "$k.cls") + 1 ))p" classes.txt); mkdir -p "x/img/$s/$c"; mv "$f" "x/img/$s/$c/"; done
  tar cf $s.tar -C x/img $s
done
shared=${MMP_SHARED:-$R/../shared}
if [ -f "$shared/models/mobilenet_v2-imagenet.safetensors" ]; then ln -s "$shared/models/mobilenet_v2-imagenet.safetensors" mnv2.safetensors
else "$py" "$R/pipelines/lib/random_init.py" mobilenet_v2 mnv2.safetensors; fi
if [ -f "$R/models/all-MiniLM-L6-v2/model.safetensors" ]; then ln -s "$R/models/all-MiniLM-L6-v2" minilm
else "$py" "$R/pipelines/lib/random_init.py" bert minilm --vocab-from captions.tar; fi
# models/clip-vit-base-patch32: the fetched CLIP when there is one, else the tiny CLIP of the tests
mkdir -p models
if [ -f "$R/models/clip-vit-base-patch32/model.safetensors" ]; then ln -s "$R/models/clip-vit-base-patch32" models/
else ln -s "$R/tests/fixtures/tx_models/clip_hf" models/clip-vit-base-patch32; fi
# the opening example trains with --dev dev.mmp: held-out pictures embedded the same way
mmp-synth -n 60 --seed 5 --first 20000 -o x/dev.tar && mkdir -p x/dev && tar xf x/dev.tar -C x/dev
for f in x/dev/*.jpg; do k=${f%.jpg}; c=$(sed -n "$(( $(cat "$k.cls") + 1 ))p" classes.txt); mkdir -p "x/img/dev/$c"; mv "$f" "x/img/dev/$c/"; done
tar cf dev.tar -C x/img dev
mmp-decode dev.tar | mmp-embed --model mnv2.safetensors > dev.mmp
cat > stubs.sh <<'EOS'
ssh() { while [[ "$1" == -* ]]; do shift; done; shift; bash -c "$*"; }
curl() { cat "$OLDPWD_README/captions.tar"; }
export -f ssh curl
EOS
export OLDPWD_README=$PWD
# `python3` in the examples = the Python with numpy/msgpack/zstandard (Debian's, after scripts/setup.sh)
mkdir -p shim; ln -s "$(command -v "$py")" shim/python3; export PATH="$PWD/shim:$PATH"
# extract the blocks
"$py" - "$R/README.md" <<'EOP'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
blocks = re.findall(r'(<!-- not run: [^>]*-->\s*)?```sh\n(.*?)```', text, re.S)
n = 0
for skip, body in blocks:
    if skip: continue
    n += 1
    open("block%02d.sh" % n, "w").write(body)
print("%d blocks to run, %d skipped" % (n, sum(1 for s, _ in blocks if s)))
EOP
fail=0
for b in block*.sh; do
  t0=$(date +%s)
  if bash -c "set -eo pipefail; source ./stubs.sh; source ./$b" > "$b.out" 2>&1; then echo "ok: $b ($(head -n1 "$b" | cut -c1-70)) $(( $(date +%s) - t0 )) s"
  else echo "FAIL: $b"; sed 's/^/    /' "$b"; echo "  output:"; tail -n 15 "$b.out" | sed 's/^/    /'; fail=1; fi
done
exit $fail
