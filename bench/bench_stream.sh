#!/usr/bin/env bash
# Stream throughput: MB/s of tensor payload written and read through a pipe
# by libmmp at zstd levels 1 and 3, side by side with `cat` and the zstd CLI
# (-T1, same level) on the same raw payload bytes, measured in the same run.
# Usage: bench/bench_stream.sh [MB of payload per case, default 256]
# Needs `make` (build/libmmp.a) and the zstd CLI. Best of 3 wall times per cell.
set -u
cd "$(dirname "$0")/.."
MB=${1:-${BENCH_STREAM_MB:-256}}
[ -f build/libmmp.a ] || { echo "bench_stream: run make first"; exit 1; }
command -v zstd >/dev/null || { echo "bench_stream: zstd CLI not found"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
DEPLIBS=$(pkg-config --libs libzstd 2>/dev/null || echo -lzstd)
cc -std=c11 -D_GNU_SOURCE -O3 -march=x86-64-v3 -Ilib -o "$tmp/sb" bench/stream_bench.c build/libmmp.a \
   $DEPLIBS -lz -lm -pthread || { echo "bench_stream: cannot build bench/stream_bench.c"; exit 1; }
SB=$tmp/sb

now() { date +%s.%N; }
# best-of-3 wall seconds of a shell pipeline
best() {
  local b=
  for _ in 1 2 3; do
    local t0 t1; t0=$(now); bash -c "$1" || return 1; t1=$(now)
    b=$(awk -v a="$t0" -v c="$t1" -v b="$b" 'BEGIN{d=c-a; if(b==""||d<b)b=d; printf "%.4f", b}')
  done
  echo "$b"
}
mbs() { awk -v n="$1" -v t="$2" 'BEGIN{printf "%.0f", n/1048576/t}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }

echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; zstd $(zstd -V | grep -o 'v[0-9.]*'); ${MB} MiB of payload per case, best of 3"
echo "Write = producer | cat > /dev/null; read = cat FILE | consumer. MB/s = MiB of tensor payload per second."
echo
echo "| records | level | size % | mmp write MB/s | zstd -T1 MB/s | ratio | mmp read MB/s | zstd -d MB/s | ratio | cat MB/s |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for kind in cifar imagenet emb32 emb16; do
  case $kind in
    cifar) label="u8 32x32x3" ;; imagenet) label="u8 224x224x3" ;;
    emb32) label="f32 1280" ;; emb16) label="f16 1280" ;;
  esac
  "$SB" raw $kind "$MB" > "$tmp/raw.bin"
  payload=$(stat -c %s "$tmp/raw.bin")
  tcat=$(best "cat '$tmp/raw.bin' | cat > /dev/null")
  for level in 1 3; do
    "$SB" gen $kind "$MB" $level > "$tmp/x.mmp"
    got=$("$SB" read < "$tmp/x.mmp" | cut -d' ' -f1)
    [ "$got" = "$payload" ] || { echo "bench_stream: payload mismatch ($got vs $payload)"; exit 1; }
    size=$(stat -c %s "$tmp/x.mmp")
    tw=$(best "'$SB' gen $kind $MB $level | cat > /dev/null")
    tr=$(best "cat '$tmp/x.mmp' | '$SB' read > /dev/null")
    zstd -q -T1 -$level -c < "$tmp/raw.bin" > "$tmp/raw.zst"
    tzc=$(best "zstd -q -T1 -$level -c < '$tmp/raw.bin' | cat > /dev/null")
    tzd=$(best "cat '$tmp/raw.zst' | zstd -q -d -c | cat > /dev/null")
    w=$(mbs "$payload" "$tw"); zc=$(mbs "$payload" "$tzc")
    r=$(mbs "$payload" "$tr"); zd=$(mbs "$payload" "$tzd")
    echo "| $label | $level | $(awk -v a="$size" -v b="$payload" 'BEGIN{printf "%.1f", 100*a/b}') | $w | $zc | $(ratio "$w" "$zc") | $r | $zd | $(ratio "$r" "$zd") | $(mbs "$payload" "$tcat") |"
    rm -f "$tmp/x.mmp" "$tmp/raw.zst"
  done
  rm -f "$tmp/raw.bin"
done
echo
echo "size % = mmp stream size / raw payload (zstd CLI on the raw payload is comparable). ratio = mmp / zstd CLI."
