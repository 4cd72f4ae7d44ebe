#!/usr/bin/env bash
# Installs what mmpipe needs to build, test and run on Debian (12 or later):
# compiler, libjpeg-turbo, libpng, zstd, msgpack-c, jansson, and Python's
# numpy/msgpack/zstandard/Pillow for the reference reader and the tests, man-db
# and groff to check the generated man pages.
# Packages already installed are left alone; without root it uses sudo.
#   scripts/setup.sh            build + test dependencies
#   scripts/setup.sh --bench    also PyTorch/torchvision/sklearn (the peers in bench/ and fixtures)
#                               from Debian, ONNX Runtime from PyPI into the user site
#                               (/usr/bin/python3 finds it by itself) and the text peers
#                               (sentence-transformers 2.2.2, transformers 4.30.2) into
#                               ~/.local/share/mmpipe-peers/{st,hf} (bench/bench_text.sh),
#                               open_clip 2.24 + timm 0.9.16 + ftfy 6.1.3 into .../mmpipe-peers/oc
#                               (the ViT/CLIP tests, CLIP's tokenizer reference, fixture generators),
#                               peft 0.4.0 + accelerate 0.21.0 into .../mmpipe-peers/peft (the LoRA tests)
#                               OpenBLAS and oneDNN (the GEMM peers of bench/bench_gemm.sh)
#                               and TensorBoard (pip --user; tests/py/test_tensorboard.py, the fixture)
#                               and pycocoevalcap 1.2 (pip --user; with Java for its PTBTokenizer:
#                               tests/fixtures/gen_capmetrics.py, the caption metrics' fixtures)
set -euo pipefail
pkgs=(build-essential clang pkg-config ca-certificates curl
      libturbojpeg0-dev libjpeg-turbo-progs libpng-dev libzstd-dev zstd libmsgpack-dev
      zlib1g-dev libjansson-dev libarchive-dev
      libacl1-dev liblz4-dev  # named by libarchive.pc's Libs.private: pkg-config --static (test_install)
      man-db groff-base
      qemu-user  # tests/sh/test_cpu_baseline.sh: programs on a CPU without AVX2
      python3 python3-pip python3-numpy python3-msgpack python3-zstandard python3-pil chromium socat iproute2 bc)
[ "${1:-}" = --bench ] && pkgs+=(default-jre-headless python3-torch python3-torchvision python3-sklearn python3-psutil python3-yaml python3-packaging hyperfine libopenblas-dev libdnnl-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "${1:-}" = --bench ]; then
  pip=(/usr/bin/python3 -m pip install -q --disable-pip-version-check)
  /usr/bin/python3 -c 'import onnxruntime' 2>/dev/null || "${pip[@]}" --user --break-system-packages onnxruntime
  peers=${MMP_PEERS:-$HOME/.local/share/mmpipe-peers}
  if [ ! -d "$peers/hf/transformers" ]; then
    "${pip[@]}" --target "$peers/hf" transformers==4.30.2 tokenizers==0.13.3
    rm -rf "$peers"/hf/numpy*  # keep Debian's numpy 1.x (torch 1.13 is built against it)
  fi
  # open_clip 2.24 + timm 0.9.16 (tests/py: ViT/CLIP models, CLIP preprocessing; the fixture generators)
  [ -d "$peers/oc/open_clip" ] ||
    "${pip[@]}" --target "$peers/oc" --no-deps open_clip_torch==2.24.0 timm==0.9.16 ftfy==6.1.3 wcwidth
  # peft 0.4.0 with accelerate 0.21 (checked with torch 1.13 + transformers 4.30.2; their imports
  # psutil, yaml, packaging come from Debian):
  # tests/fixtures/gen_lora.py, tests/py/test_lora_peft.py
  [ -d "$peers/peft/peft" ] ||
    "${pip[@]}" --target "$peers/peft" --no-deps peft==0.4.0 accelerate==0.21.0
  [ -d "$peers/st/sentence_transformers" ] ||
    "${pip[@]}" --target "$peers/st" --no-deps sentence-transformers==2.2.2 nltk huggingface_hub==0.16.4
  if ! python3 -c 'import tensorboard' 2>/dev/null; then
    echo "setup: pip install --user tensorboard" >&2
    python3 -m pip install --user -q tensorboard || python3 -m pip install --user -q --break-system-packages tensorboard
  fi
  # pycocoevalcap 1.2 (tests/fixtures/gen_capmetrics.py; its PTBTokenizer runs on Java)
  /usr/bin/python3 -c 'import pycocoevalcap' 2>/dev/null ||
    "${pip[@]}" --user --break-system-packages pycocoevalcap==1.2
fi
echo "setup: dependencies present" >&2
