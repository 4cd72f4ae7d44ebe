#!/usr/bin/env bash
# CLI conventions of mmp-train-step, mmp-eval, mmp-report: --help (exit 0, usage on
# stdout), --version, unknown options and missing required options fail with one
# "prog: ..." line on stderr; bad values are named.
set -u
fail=0
check() { # description, expected rc (0 or "nz"), command...
  local what=$1 want=$2; shift 2
  "$@" >out.txt 2>err.txt
  local rc=$?
  if [ "$want" = 0 ] && [ $rc -ne 0 ]; then echo "FAIL: $what: exit $rc"; cat err.txt; fail=1; fi
  if [ "$want" = nz ] && [ $rc -eq 0 ]; then echo "FAIL: $what: exit 0"; fail=1; fi
}
oneline() { # prog: stderr is exactly one line starting with "prog: "
  if [ "$(wc -l < err.txt)" -ne 1 ] || ! grep -q "^$1: " err.txt; then echo "FAIL: $1: stderr not one '$1: ...' line:"; cat err.txt; fail=1; fi
}
for p in mmp-train-step mmp-eval mmp-report; do
  check "$p --help" 0 "$p" --help
  grep -q "^usage: $p" out.txt || { echo "FAIL: $p --help has no usage line"; fail=1; }
  check "$p --version" 0 "$p" --version
  grep -q "mmpipe" out.txt || { echo "FAIL: $p --version"; fail=1; }
  check "$p --bogus" nz "$p" --bogus
  oneline "$p"
done
check "train-step without --out" nz mmp-train-step /dev/null; oneline mmp-train-step
grep -q -- "--out" err.txt || { echo "FAIL: missing --out not named"; fail=1; }
check "eval without --model" nz mmp-eval /dev/null; oneline mmp-eval
check "train-step bad --lr" nz mmp-train-step --lr abc --out x.safetensors /dev/null; oneline mmp-train-step
grep -q "lr" err.txt || { echo "FAIL: bad --lr not named"; fail=1; }
check "train-step missing input" nz mmp-train-step --out x.safetensors no-such-file.mmp; oneline mmp-train-step
grep -q "no-such-file.mmp" err.txt || { echo "FAIL: missing file not named"; fail=1; }
touch plain.txt
check "train-step bad --tensorboard" nz mmp-train-step --tensorboard plain.txt/runs --out x.safetensors /dev/null; oneline mmp-train-step
grep -q "plain.txt/runs: cannot create the directory: Not a directory" err.txt || { echo "FAIL: bad --tensorboard: $(cat err.txt)"; fail=1; }
[ ! -e x.safetensors ] || { echo "FAIL: a checkpoint was written"; fail=1; }
check "report on garbage" nz sh -c 'echo garbage | mmp-report'; oneline mmp-report
for k in 0 1,x '1;2' 1,2,3,4; do
  check "report bad --k $k" nz mmp-report --k "$k" /dev/null; oneline mmp-report
  grep -q "bad value for --k: '$k'" err.txt || { echo "FAIL: mmp-report --k $k: $(cat err.txt)"; fail=1; }
done
check "eval --k past 8 cut-offs" nz mmp-eval --k 1,2,3,4,5,6,7,8,9 --model x.safetensors /dev/null; oneline mmp-eval
grep -q "up to 8 positive integers" err.txt || { echo "FAIL: mmp-eval --k: $(cat err.txt)"; fail=1; }
check "eval missing model file" nz mmp-eval --model nope.safetensors /dev/null; oneline mmp-eval
# mmp-export: --help/--version/unknown options, then bad input: one line naming the file, no output
check "mmp-export --help" 0 mmp-export --help
grep -q "^usage: mmp-export" out.txt || { echo "FAIL: mmp-export --help has no usage line"; fail=1; }
check "mmp-export --bogus" nz mmp-export --bogus; oneline mmp-export
check "export without -o" nz mmp-export "$MMP_ROOT/tests/fixtures/train/losses.safetensors"; oneline mmp-export
grep -q -- "--output" err.txt || { echo "FAIL: mmp-export: missing --output not named"; fail=1; }
check "export missing file" nz mmp-export -o e.safetensors nope.safetensors; oneline mmp-export
grep -q "nope.safetensors" err.txt || { echo "FAIL: mmp-export: missing file not named"; fail=1; }
cp "$MMP_ROOT/tests/fixtures/train/losses.safetensors" plain.safetensors
check "export of a non-checkpoint" nz mmp-export -o e.safetensors plain.safetensors; oneline mmp-export
grep -q "plain.safetensors: not an mmp-train-step checkpoint" err.txt || { echo "FAIL: mmp-export: $(cat err.txt)"; fail=1; }
head -c 100 plain.safetensors > cut.safetensors
check "export of a truncated file" nz mmp-export -o e.safetensors cut.safetensors; oneline mmp-export
grep -q "cut.safetensors" err.txt || { echo "FAIL: mmp-export: truncated file not named: $(cat err.txt)"; fail=1; }
[ ! -e e.safetensors ] || { echo "FAIL: mmp-export wrote an output on bad input"; fail=1; }
exit $fail
