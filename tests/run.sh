#!/usr/bin/env bash
# Runs the whole suite: C unit tests (build/tests/test_*), shell tests
# (tests/sh/test_*.sh) and Python tests (tests/py/test_*.py).
# Exit status of each test: 0 = pass, 77 = skipped (prints why), else fail.
# Ends with the line "N passed, N failed, N skipped"; exit 1 if any failed.
# Usage: tests/run.sh [PATTERN]   (only tests whose name contains PATTERN)
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
export MMP_BUILD="$BUILD" MMP_ROOT="$ROOT"
export PATH="$BUILD:$PATH"
export MMP_SHARED="${MMP_SHARED:-$ROOT/../shared}"
# Python with numpy/msgpack/zstandard (Debian's python3 when present).
if [ -z "${MMP_PYTHON:-}" ]; then
  for p in /usr/bin/python3 python3; do
    if "$p" -c 'import numpy, msgpack, zstandard' 2>/dev/null; then MMP_PYTHON=$p; break; fi
  done
fi
export MMP_PYTHON="${MMP_PYTHON:-}"
pat=${1:-}
pass=0; fail=0; skip=0; failed=()
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
run_one() { # name, command...
  local name=$1; shift
  [ -n "$pat" ] && [[ "$name" != *"$pat"* ]] && return
  local t0=$SECONDS
  export MMP_TMP="$tmp/$name"; mkdir -p "$MMP_TMP"
  ( cd "$MMP_TMP" && "$@" ) >"$tmp/$name.log" 2>&1 </dev/null
  local rc=$? dt=$((SECONDS - t0))
  if [ $rc -eq 0 ]; then pass=$((pass+1)); echo "PASS $name (${dt}s)"
  elif [ $rc -eq 77 ]; then skip=$((skip+1)); echo "SKIP $name: $(tail -n 1 "$tmp/$name.log")"
  else fail=$((fail+1)); failed+=("$name"); echo "FAIL $name (exit $rc)"; sed 's/^/    /' "$tmp/$name.log" | tail -n 40; fi
}
for t in "$BUILD"/tests/test_*; do [ -x "$t" ] && run_one "$(basename "$t")" "$t"; done
for t in tests/sh/test_*.sh; do [ -f "$t" ] && run_one "$(basename "$t" .sh)" bash "$ROOT/$t"; done
for t in tests/py/test_*.py; do
  [ -f "$t" ] || continue
  if [ -n "$MMP_PYTHON" ]; then run_one "$(basename "$t" .py)" "$MMP_PYTHON" "$ROOT/$t"
  else n=$(basename "$t" .py); [ -n "$pat" ] && [[ "$n" != *"$pat"* ]] && continue; skip=$((skip+1)); echo "SKIP $n: no python3 with numpy, msgpack, zstandard"; fi
done
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
