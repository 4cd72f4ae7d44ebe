#!/usr/bin/env bash
# mmp-decode / mmp-augment from the shell: same records for any -j (compared
# through mmp-cat, the header aside), identical bytes for identical commands,
# exit codes and one-line messages on bad input.
set -u
command -v mmp-decode >/dev/null || { echo "no mmp-decode on PATH"; exit 77; }
command -v mmp-cat >/dev/null || { echo "no mmp-cat on PATH"; exit 77; }
fx="$MMP_ROOT/tests/fixtures/image"
[ -f "$fx/base420.jpg" ] || { echo "no fixtures"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
mkdir -p ds/a ds/b
cp "$fx/base420.jpg" ds/a/1.jpg; cp "$fx/prog.jpg" ds/a/2.jpg; cp "$fx/rgb.png" ds/b/3.png
cp "$fx/gray.jpg" ds/b/4.jpg; cp "$fx/cmyk.jpg" ds/b/5.jpg; : > ds/b/empty.jpg
mmp-decode ds --size 16 -j 1 -o j1.mmp 2>/dev/null || fail "decode -j 1"
mmp-decode ds --size 16 -j 2 -o j2.mmp 2>/dev/null || fail "decode -j 2"
diff <(mmp-cat j1.mmp | tail -n +2) <(mmp-cat j2.mmp | tail -n +2) >/dev/null || fail "-j 1 and -j 2 records differ"
[ "$(mmp-cat j1.mmp | tail -n +2 | wc -l)" = 5 ] || fail "expected 5 records"
mmp-decode ds --size 16 -j 2 > k1.mmp 2>/dev/null; mmp-decode ds --size 16 -j 2 > k2.mmp 2>/dev/null
cmp -s k1.mmp k2.mmp || fail "same command, different bytes"
# augment: same bytes for the same command whatever -j
mmp-augment j1.mmp --rrc 12 --hflip 0.5 --jitter 0.3,0.3,0.3,0.05 --normalize imagenet --seed 7 -j 1 -o a1.mmp || fail "augment"
mmp-augment j1.mmp --rrc 12 --hflip 0.5 --jitter 0.3,0.3,0.3,0.05 --normalize imagenet --seed 7 -j 3 -o a3.mmp || fail "augment -j 3"
diff <(mmp-cat a1.mmp | tail -n +2) <(mmp-cat a3.mmp | tail -n +2) >/dev/null || fail "augment -j differs"
# messages: one line naming the file; usage errors exit non-zero
err=$(mmp-decode ds -o x.mmp 2>&1 >/dev/null)
echo "$err" | grep -q "^mmp-decode: warning: ds/b/empty.jpg: empty file (0 bytes) (skipped)$" || fail "warning line: $err"
mmp-decode ds --strict -o x.mmp 2>/dev/null && fail "--strict accepted a bad image"
mmp-decode ds --shard 2/2 2>/dev/null && fail "--shard 2/2 accepted"
mmp-decode ds --size 0 2>/dev/null && fail "--size 0 accepted"
mmp-augment --normalize imagenet --hflip 0.5 j1.mmp -o /dev/null 2>/dev/null && fail "op after --normalize accepted"
mmp-decode --version | grep -q mmpipe || fail "--version"
mmp-augment --help | grep -q -- "--rrc" || fail "--help"
echo ok
