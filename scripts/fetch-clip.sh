#!/usr/bin/env bash
# Fetches a CLIP model from the Hugging Face hub (default openai/clip-vit-base-patch32):
# model.safetensors, config.json, vocab.json, merges.txt, preprocessor_config.json,
# tokenizer_config.json, special_tokens_map.json into models/<model name>/
# (gitignored; e.g. models/clip-vit-base-patch32).
# The file list, sizes and checksums come from the hub's API
# (/api/models/NAME/revision/REV?blobs=true: sha256 of LFS files, git blob ids of
# the others); the files are downloaded from that commit (resolve/SHA/FILE) with
# curl into DEST.part/, resumed where an earlier run stopped, checked, and
# DEST.part is renamed to DEST only when every file is complete and verified.
# Without network (or with a hub that cannot be reached) it prints one line and
# exits 2; a missing model or file, a bad checksum: one line, exit 1.
# Usage: scripts/fetch-clip.sh [NAME [DEST]]
# Env: MMP_HF_ENDPOINT (default $HF_ENDPOINT, else https://huggingface.co),
#      MMP_HF_REVISION (default main), HF_TOKEN (sent when set, for gated models),
#      MMP_FETCH_TIMEOUT (connect timeout, seconds, default 15),
#      PYTHON (default /usr/bin/python3, else python3: reads the API's JSON, hashes).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=${1:-openai/clip-vit-base-patch32}
dest=${2:-$root/models/${name##*/}}
endpoint=${MMP_HF_ENDPOINT:-${HF_ENDPOINT:-https://huggingface.co}}
endpoint=${endpoint%/}
rev=${MMP_HF_REVISION:-main}
py=${PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=python3
files=(model.safetensors config.json vocab.json merges.txt preprocessor_config.json tokenizer_config.json
       special_tokens_map.json)
me=fetch-clip
die() { echo "$me: $*" >&2; exit "${rc:-1}"; }
case $name in */*) ;; *) die "model name '$name' is not OWNER/NAME (e.g. openai/clip-vit-base-patch32)" ;; esac
command -v curl > /dev/null || die "curl is not installed"
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/config.json" ] && [ -f "$dest/preprocessor_config.json" ]; then
  echo "already there: $dest"; exit 0
fi
curl_opts=(--silent --show-error --location --connect-timeout "${MMP_FETCH_TIMEOUT:-15}")
[ -n "${HF_TOKEN:-}" ] && curl_opts+=(--header "Authorization: Bearer $HF_TOKEN")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# --- the file list and checksums
api="$endpoint/api/models/$name/revision/$rev?blobs=true"
code=$(curl "${curl_opts[@]}" --output "$tmp/api.json" --write-out '%{http_code}' "$api" 2> "$tmp/err") || {
  c=$?
  rc=2 die "cannot reach $endpoint (curl $c: $(sed -n '$s/^curl: ([0-9]*) //p' "$tmp/err")): no network? nothing fetched"
}
case $code in
  200) ;;
  401|403) die "$name at $endpoint: HTTP $code (gated or private: set HF_TOKEN)" ;;
  404) die "$name (revision $rev) not found at $endpoint (HTTP 404)" ;;
  *) die "$api: HTTP $code" ;;
esac
# one line per wanted file: NAME SIZE sha256 HEX | blob HEX; first line: the commit
"$py" - "$tmp/api.json" "${files[@]}" > "$tmp/list" 2> "$tmp/err" <<'EOF' || die "$name: $(tail -n 1 "$tmp/err")"
import json, sys
try:
    info = json.load(open(sys.argv[1]))
except ValueError as e:
    sys.exit(f"the hub's answer is not JSON ({e})")
sib = {s.get("rfilename"): s for s in info.get("siblings") or []}
print(info.get("sha") or "")
for f in sys.argv[2:]:
    s = sib.get(f)
    if s is None:
        sys.exit(f"the model has no {f}")
    lfs = s.get("lfs") or {}
    if lfs.get("sha256"):
        print(f, lfs.get("size", s.get("size", -1)), "sha256", lfs["sha256"])
    elif s.get("blobId"):
        print(f, s.get("size", -1), "blob", s["blobId"])
    else:
        print(f, s.get("size", -1), "none", "-")
EOF
commit=$(head -n 1 "$tmp/list")
ref=${commit:-$rev}

# --- download (resumed) and verify
part="$dest.part"
mkdir -p "$part"
hash_of() { # kind file -> hex
  "$py" -c '
import hashlib, os, sys
kind, path = sys.argv[1], sys.argv[2]
h = hashlib.sha256() if kind == "sha256" else hashlib.sha1(b"blob %d\0" % os.path.getsize(path))
with open(path, "rb") as f:
    for b in iter(lambda: f.read(1 << 20), b""):
        h.update(b)
print(h.hexdigest())' "$1" "$2"
}
while read -r f size kind sum; do
  out="$part/$f"
  have=$(stat -c %s "$out" 2> /dev/null || echo 0)
  if [ "$size" -lt 0 ] || [ "$have" -lt "$size" ]; then
    [ "$have" -gt 0 ] && echo "$me: resuming $f at $have of $size bytes" >&2
    url="$endpoint/$name/resolve/$ref/$f"
    curl "${curl_opts[@]}" --fail --retry 3 --continue-at - --output "$out" "$url" 2> "$tmp/err" || {
      c=$?
      case $c in 5|6|7|28|35|52|56) rc=2 ;; *) rc=1 ;; esac
      die "$f: $(sed -n '$s/^curl: ([0-9]*) //p' "$tmp/err") (curl $c; $out kept, run again to resume)"
    }
  fi
  have=$(stat -c %s "$out")
  if [ "$size" -ge 0 ] && [ "$have" != "$size" ]; then
    rm -f "$out"; die "$f: $have bytes, the hub says $size (removed; run again)"
  fi
  if [ "$kind" != none ]; then
    got=$(hash_of "$kind" "$out")
    [ "$got" = "$sum" ] || { rm -f "$out"; die "$f: $kind $got, the hub says $sum (removed; run again)"; }
  fi
done < <(tail -n +2 "$tmp/list")
rm -rf "$dest"; mv "$part" "$dest"
[ -n "$commit" ] && echo "$name@$commit" > "$dest/REVISION"
# the weights sha256 (as mmp records weights)
sha256sum "$dest/model.safetensors"
echo "fetched $name into $dest"
