#!/usr/bin/env bash
# Runs each libFuzzer target briefly from its committed seed corpus
# (tests/fuzz/corpus/NAME/, read-only: new inputs go to a scratch dir).
# Needs `make fuzz` first (build-fuzz/fuzz/). Not part of `make test`; CI runs it.
# Usage: tests/sh/fuzz_smoke.sh [SECONDS per target, default 30]
set -u
cd "$(dirname "$0")/../.."
secs=${1:-${FUZZ_SECONDS:-30}}
dir=build-fuzz/fuzz
ls "$dir"/fuzz_* >/dev/null 2>&1 || { echo "fuzz_smoke: no fuzzers in $dir (run make fuzz)"; exit 1; }
status=0
for f in "$dir"/fuzz_*; do
  [ -x "$f" ] || continue
  name=$(basename "$f"); short=${name#fuzz_}
  seeds=tests/fuzz/corpus/$short
  work=$(mktemp -d); art=$(mktemp -d)
  # -rss_limit_mb: a decompressed object is bounded by the input (<= 4 KiB -> ~128 MiB of zstd RLE)
  # a fixed -seed: the same mutations every run, so a red CI is reproducible (FUZZ_SEED=0: random)
  if "$f" -seed="${FUZZ_SEED:-1}" -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
       -artifact_prefix="$art/" -print_final_stats=1 "$work" ${seeds:+$([ -d "$seeds" ] && echo "$seeds")} \
       >"$work.log" 2>&1; then
    echo "fuzz_smoke: $name ok ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$work.log" | grep -o '[0-9]*$') runs in ${secs}s)"
  else
    status=1
    echo "fuzz_smoke: $name FAILED; last lines:"; tail -n 30 "$work.log"
    for a in "$art"/*; do [ -f "$a" ] && { echo "crash input ($a), base64:"; base64 -w0 "$a" | head -c 4000; echo; }; done
  fi
  rm -rf "$work" "$work.log" "$art"
done
exit $status
