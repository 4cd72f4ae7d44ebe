#!/usr/bin/env bash
# Installs what mmpipe needs to build, test and run on Debian (12 or later):
# compiler, libjpeg-turbo, libpng, zstd, msgpack-c, jansson, and Python's
# numpy/msgpack/zstandard/Pillow for the reference reader and the tests, man-db
# and groff to check the generated man pages.
# Packages already installed are left alone; without root it uses sudo.
#   scripts/setup.sh            build + test dependencies
#   scripts/setup.sh --bench    also PyTorch/torchvision/sklearn (the peers in bench/ and fixtures),
#                               OpenBLAS and oneDNN (the GEMM peers of bench/bench_gemm.sh)
#                               and TensorBoard (pip --user; tests/py/test_tensorboard.py, the fixture)
set -euo pipefail
pkgs=(build-essential clang pkg-config ca-certificates
      libturbojpeg0-dev libjpeg-turbo-progs libpng-dev libzstd-dev zstd libmsgpack-dev
      zlib1g-dev libjansson-dev libarchive-dev
      libacl1-dev liblz4-dev  # named by libarchive.pc's Libs.private: pkg-config --static (test_install)
      man-db groff-base
      python3 python3-pip python3-numpy python3-msgpack python3-zstandard python3-pil chromium socat iproute2 bc)
[ "${1:-}" = --bench ] && pkgs+=(python3-torch python3-torchvision python3-sklearn hyperfine libopenblas-dev libdnnl-dev)
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
if [ "${1:-}" = --bench ] && ! python3 -c 'import tensorboard' 2>/dev/null; then
  echo "setup: pip install --user tensorboard" >&2
  python3 -m pip install --user -q tensorboard || python3 -m pip install --user -q --break-system-packages tensorboard
fi
echo "setup: dependencies present" >&2
