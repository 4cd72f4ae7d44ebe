#!/usr/bin/env bash
# Stream throughput: MB/s of tensor payload written and read through a pipe
# by libmmp at zstd levels 1 and 3, side by side with `cat` and the zstd CLI
# (-T1, same level) on the same raw payload bytes, measured in the same run.
# Usage: bench/bench_stream.sh [MB of payload per case, default 128]
#        bench/bench_stream.sh --compare BASE_BUILD [MB]
# --compare: libmmp of another build (BASE_BUILD/libmmp.a, e.g. built from an
# older revision: git worktree add /tmp/b REV && make -C /tmp/b build/libmmp.a,
# then --compare /tmp/b/build) against build/, in the same run, case by case
# back to back: write and read MB/s of each and new/base ratios; the streams
# the two write must be byte-identical. Runs alternate base, new, base, ...;
# the median of BENCH_STREAM_REPS (default 7) runs each (the best of a few
# runs is too often a rare lucky one when comparing two builds). The bench
# program is built with the headers of BASE_BUILD/../lib when there are
# (else lib/).
# Needs `make` (build/libmmp.a) and the zstd CLI. Best of 3 runs per cell
# (--compare: median of 7).
set -u
cd "$(dirname "$0")/.."
BASE=
if [ "${1:-}" = --compare ]; then
  BASE=${2:?"usage: bench_stream.sh --compare BASE_BUILD [MB]"}; shift 2
  [ -f "$BASE/libmmp.a" ] || { echo "bench_stream: no $BASE/libmmp.a"; exit 1; }
fi
MB=${1:-${BENCH_STREAM_MB:-128}}
[ -f build/libmmp.a ] || { echo "bench_stream: run make first"; exit 1; }
command -v zstd >/dev/null || { echo "bench_stream: zstd CLI not found"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
DEPLIBS=$(pkg-config --libs libzstd msgpack 2>/dev/null || echo -lzstd -lmsgpackc)
build_sb() { # OUT LIBDIR INCDIR
  cc -std=c11 -D_GNU_SOURCE -O3 -march=x86-64-v3 -I"$3" -o "$1" bench/stream_bench.c "$2/libmmp.a" \
     $DEPLIBS -lz -lm -pthread || { echo "bench_stream: cannot build bench/stream_bench.c with $2"; exit 1; }
}
build_sb "$tmp/sb" build lib
SB=$tmp/sb

# measure PIPELINE...: each pipeline must contain one command written as
# "( time CMD ) 2>\"$T\"": its wall seconds and CPU seconds (user+sys) are
# taken. The pipelines run in turn (A, B, A, B, ...: drift on a shared
# machine hits all alike), $REPS times; prints the $STAT (best = lowest, or
# median) wall and CPU seconds of each: "wallA cpuA wallB cpuB ...".
T=$tmp/time.txt
REPS=3 STAT=best
pick() { tr ' ' '\n' | grep . | sort -g | awk -v st="$STAT" '{v[NR]=$1} END{print st == "median" ? v[int((NR+1)/2)] : v[1]}'; }
measure() {
  local -a ws=() cs=()
  local i
  for _ in $(seq "$REPS"); do
    for ((i = 1; i <= $#; i++)); do
      TIMEFORMAT='%R %U %S' bash -c "${!i}" || return 1
      read -r w u s < "$T"
      ws[i]="${ws[i]:-} $w"
      cs[i]="${cs[i]:-} $(awk -v u="$u" -v s="$s" 'BEGIN{printf "%.4f", u+s}')"
    done
  done
  for ((i = 1; i <= $#; i++)); do printf '%s %s ' "$(pick <<< "${ws[i]}")" "$(pick <<< "${cs[i]}")"; done; echo
}
# the records of each KIND: their label; the record pool saved once (SB_POOL)
label_of() {
  case $1 in
    cifar) echo "u8 32x32x3" ;; imagenet) echo "u8 224x224x3" ;;
    emb32) echo "f32 1280" ;; emb16) echo "f16 1280" ;;
  esac
}
machine() { echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load average $(cut -d' ' -f1 /proc/loadavg) at start; $1"; }
save_pool() { unset SB_POOL; "$SB" pool "$1" > "$tmp/pool.bin"; export SB_POOL=$tmp/pool.bin; }
mbs() { awk -v n="$1" -v t="$2" 'BEGIN{if (t <= 0) t = 0.0001; printf "%.0f", n/1048576/t}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
export T

if [ -n "$BASE" ]; then
  inc=lib; [ -f "$BASE/../lib/mmp.h" ] && inc=$BASE/../lib
  build_sb "$tmp/sb-base" "$BASE" "$inc"
  REPS=${BENCH_STREAM_REPS:-7} STAT=median
  machine "${MB} MiB of tensor payload per case; base and new alternating, median of $REPS runs each."
  printf '%s\n' "base = $BASE/libmmp.a, new = build/libmmp.a. MB/s of tensor payload per second of wall-clock time and per" \
    "CPU-second (user+sys) of the writer/reader alone; write: PRODUCER | cat > /dev/null, read: cat FILE | CONSUMER." \
    "new/base > 1: new is faster. same bytes: both wrote the identical stream." ""
  echo "| records | level | same bytes | write base | write new | new/base | read base | read new | new/base | write /CPU-s base | new | new/base | read /CPU-s base | new | new/base |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for kind in cifar imagenet emb32 emb16; do
    label=$(label_of $kind); save_pool $kind
    "$SB" raw $kind "$MB" > "$tmp/raw.bin"; payload=$(stat -c %s "$tmp/raw.bin"); rm -f "$tmp/raw.bin"
    for level in 1 3; do
      "$tmp/sb-base" gen $kind "$MB" $level > "$tmp/b.mmp" 2>/dev/null
      "$SB" gen $kind "$MB" $level > "$tmp/n.mmp" 2>/dev/null
      same=no; cmp -s "$tmp/b.mmp" "$tmp/n.mmp" && same=yes
      for side in base new; do
        prog=$SB; [ $side = base ] && prog=$tmp/sb-base
        got=$("$prog" read < "$tmp/n.mmp" | cut -d' ' -f1)
        [ "$got" = "$payload" ] || { echo "bench_stream: $side: payload mismatch ($got vs $payload)"; exit 1; }
      done
      read -r twb cwb twn cwn <<< "$(measure \
        "( time '$tmp/sb-base' gen $kind $MB $level 2>/dev/null ) 2>\"\$T\" | cat > /dev/null" \
        "( time '$SB' gen $kind $MB $level 2>/dev/null ) 2>\"\$T\" | cat > /dev/null")"
      read -r trb crb trn crn <<< "$(measure \
        "cat '$tmp/n.mmp' | ( time '$tmp/sb-base' read > /dev/null ) 2>\"\$T\"" \
        "cat '$tmp/n.mmp' | ( time '$SB' read > /dev/null ) 2>\"\$T\"")"
      row="| $label | $level | $same"
      for pair in "$twb $twn" "$trb $trn" "$cwb $cwn" "$crb $crn"; do
        read -r b n <<< "$pair"
        row="$row | $(mbs "$payload" "$b") | $(mbs "$payload" "$n") | $(ratio "$b" "$n")"
      done
      echo "$row |"
      rm -f "$tmp/b.mmp" "$tmp/n.mmp"
    done
  done
  echo
  echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  exit 0
fi

machine "zstd $(zstd -V | grep -o 'v[0-9.]*'); ${MB} MiB of tensor payload per case; best of 3."
echo "write: PRODUCER | cat > /dev/null; read: cat FILE | CONSUMER. MB/s = MiB of tensor payload per second of"
echo "wall-clock time, and per CPU-second (user+sys) of the producer/consumer alone (robust on a shared machine)."
echo "mmp = libmmp writer/reader (bench/stream_bench.c); zstd = zstd CLI -T1 at the same level on the raw payload; cat = cat of the raw payload."
echo
echo "| records | level | size % mmp / zstd | mmp write | zstd | ratio | mmp read | zstd -d | ratio | cat | mmp write /CPU-s | zstd /CPU-s | mmp read /CPU-s | zstd -d /CPU-s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for kind in cifar imagenet emb32 emb16; do
  label=$(label_of $kind); save_pool $kind
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
