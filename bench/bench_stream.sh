#!/usr/bin/env bash
# Stream throughput: MB/s of tensor payload written and read through a pipe
# by libmmp at zstd levels 1 and 3, side by side with `cat` and the zstd CLI
# (-T1, same level) on the same raw payload bytes, measured in the same run.
# Usage: bench/bench_stream.sh [MB of payload per case, default 128]
# Needs `make` (build/libmmp.a) and the zstd CLI. Best of 3 runs per cell.
set -u
cd "$(dirname "$0")/.."
MB=${1:-${BENCH_STREAM_MB:-128}}
[ -f build/libmmp.a ] || { echo "bench_stream: run make first"; exit 1; }
command -v zstd >/dev/null || { echo "bench_stream: zstd CLI not found"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
DEPLIBS=$(pkg-config --libs libzstd 2>/dev/null || echo -lzstd)
cc -std=c11 -D_GNU_SOURCE -O3 -march=x86-64-v3 -Ilib -o "$tmp/sb" bench/stream_bench.c build/libmmp.a \
   $DEPLIBS -lz -lm -pthread || { echo "bench_stream: cannot build bench/stream_bench.c"; exit 1; }
SB=$tmp/sb

# measure PIPELINE: the pipeline must contain one command written as
# "( time CMD ) 2>\"$T\"": its wall seconds and CPU seconds (user+sys) are
# taken; best (lowest) of 3 runs of each.
T=$tmp/time.txt
measure() {
  local bw= bc=
  for _ in 1 2 3; do
    TIMEFORMAT='%R %U %S' bash -c "$1" || return 1
    read -r w u s < "$T"
    local c; c=$(awk -v u="$u" -v s="$s" 'BEGIN{printf "%.4f", u+s}')
    bw=$(awk -v a="$w" -v b="$bw" 'BEGIN{if(b==""||a<b)b=a; printf "%.4f", b}')
    bc=$(awk -v a="$c" -v b="$bc" 'BEGIN{if(b==""||a<b)b=a; printf "%.4f", b}')
  done
  echo "$bw $bc"
}
mbs() { awk -v n="$1" -v t="$2" 'BEGIN{if (t <= 0) t = 0.0001; printf "%.0f", n/1048576/t}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
export T

echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load average $(cut -d' ' -f1 /proc/loadavg) at start; zstd $(zstd -V | grep -o 'v[0-9.]*'); ${MB} MiB of tensor payload per case; best of 3."
echo "write: PRODUCER | cat > /dev/null; read: cat FILE | CONSUMER. MB/s = MiB of tensor payload per second of"
echo "wall-clock time, and per CPU-second (user+sys) of the producer/consumer alone (robust on a shared machine)."
echo "mmp = libmmp writer/reader (bench/stream_bench.c); zstd = zstd CLI -T1 at the same level on the raw payload; cat = cat of the raw payload."
echo
echo "| records | level | size % mmp / zstd | mmp write | zstd | ratio | mmp read | zstd -d | ratio | cat | mmp write /CPU-s | zstd /CPU-s | mmp read /CPU-s | zstd -d /CPU-s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for kind in cifar imagenet emb32 emb16; do
  case $kind in
    cifar) label="u8 32x32x3" ;; imagenet) label="u8 224x224x3" ;;
    emb32) label="f32 1280" ;; emb16) label="f16 1280" ;;
  esac
  unset SB_POOL; "$SB" pool $kind > "$tmp/pool.bin"; export SB_POOL=$tmp/pool.bin
  "$SB" raw $kind "$MB" > "$tmp/raw.bin"
  payload=$(stat -c %s "$tmp/raw.bin")
  read -r tcat _ <<< "$(measure "( time cat '$tmp/raw.bin' ) 2>\"\$T\" | cat > /dev/null")"
  for level in 1 3; do
    "$SB" gen $kind "$MB" $level > "$tmp/x.mmp" 2>/dev/null
    got=$("$SB" read < "$tmp/x.mmp" | cut -d' ' -f1)
    [ "$got" = "$payload" ] || { echo "bench_stream: payload mismatch ($got vs $payload)"; exit 1; }
    size=$(stat -c %s "$tmp/x.mmp")
    zstd -q -T1 -$level -c < "$tmp/raw.bin" > "$tmp/raw.zst"
    read -r tw cw <<< "$(measure "( time '$SB' gen $kind $MB $level 2>/dev/null ) 2>\"\$T\" | cat > /dev/null")"
    read -r tr cr <<< "$(measure "cat '$tmp/x.mmp' | ( time '$SB' read > /dev/null ) 2>\"\$T\"")"
    read -r tzc czc <<< "$(measure "( time zstd -q -T1 -$level -c < '$tmp/raw.bin' ) 2>\"\$T\" | cat > /dev/null")"
    read -r tzd czd <<< "$(measure "cat '$tmp/raw.zst' | ( time zstd -q -d -c > /dev/null ) 2>\"\$T\"")"
    w=$(mbs "$payload" "$tw"); zc=$(mbs "$payload" "$tzc"); r=$(mbs "$payload" "$tr"); zd=$(mbs "$payload" "$tzd")
    zsize=$(stat -c %s "$tmp/raw.zst")
    echo "| $label | $level | $(awk -v a="$size" -v z="$zsize" -v b="$payload" 'BEGIN{printf "%.1f / %.1f", 100*a/b, 100*z/b}') | $w | $zc | $(ratio "$w" "$zc") | $r | $zd | $(ratio "$r" "$zd") | $(mbs "$payload" "$tcat") | $(mbs "$payload" "$cw") | $(mbs "$payload" "$czc") | $(mbs "$payload" "$cr") | $(mbs "$payload" "$czd") |"
    rm -f "$tmp/x.mmp" "$tmp/raw.zst"
  done
  rm -f "$tmp/raw.bin"
done
echo
echo "size % = stream bytes / raw payload bytes (mmp stream incl. msgpack framing and flushes; zstd CLI on the raw payload). ratio = mmp / zstd CLI (wall-clock). Goal: >= 1 GB/s at level 1 on embeddings."
