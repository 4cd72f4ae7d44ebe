#!/usr/bin/env bash
# The build's baseline is x86-64-v3 (AVX2, FMA). On an older CPU every program
# must stop before main with one line and exit status 2 (lib/core.c), never
# die of SIGILL; on an AVX2 CPU it runs. Checked under qemu's user-mode
# emulator with a Westmere (SSE4.2, no AVX) and a Haswell (AVX2, FMA) CPU;
# skips without qemu-x86_64 (Debian qemu-user).
set -u
B=${MMP_BUILD:?}
command -v qemu-x86_64 >/dev/null || { echo "no qemu-x86_64 (apt-get install qemu-user)"; exit 77; }
# sanitizer builds reserve terabytes of shadow memory, which qemu-user cannot map
case "${MMP_EXTRA_CFLAGS:-}" in *sanitize*) echo "sanitizer build: not run under qemu"; exit 77 ;; esac
fail=0
for p in "$B"/mmp-*; do
  [ -x "$p" ] || continue
  qemu-x86_64 -cpu Westmere "$p" --help >out.txt 2>err.txt; st=$?
  if [ $st -ne 2 ]; then echo "FAIL: $(basename "$p") on Westmere: exit status $st (want 2)"; fail=1; fi
  if [ "$(grep -c '^mmpipe: ' err.txt)" != 1 ] || ! grep -q 'no AVX2/FMA' err.txt || [ -s out.txt ]; then
    echo "FAIL: $(basename "$p") on Westmere: not one line on stderr:"; cat err.txt; fail=1
  fi
done
# the same programs on a CPU with AVX2 (qemu >= 7.2 emulates it): --help works
if qemu-x86_64 -cpu Haswell "$B/mmp-cat" --help >out.txt 2>/dev/null; then
  grep -q '^usage: mmp-cat' out.txt || { echo "FAIL: mmp-cat --help on Haswell printed no usage"; fail=1; }
else
  echo "note: this qemu does not run AVX2 code (qemu < 7.2?); the Haswell half is not checked"
fi
[ $fail = 0 ] && echo ok
exit $fail
