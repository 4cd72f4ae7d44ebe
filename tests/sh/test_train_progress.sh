#!/usr/bin/env bash
# What mmp-train-step (and the other programs) write on stderr:
# - stderr a file: one plain "mmp-train-step: epoch E/N: train loss ..., dev ..." line per
#   epoch and the summary line, with or without --progress; no \r, no escape codes;
#   --no-progress: the summary only;
# - stderr a terminal (script(1), skipped without it): the live line (\r, erase to end of
#   line) "epoch E/N: S/T steps (P%), R steps/s, ETA m:ss", and the epoch lines;
# - mmp-eval / mmp-cat --progress into a file: plain lines only (the last count at the end);
# - the JSON log's "time" (unix seconds) on every line, in order, near now; two runs of the
#   same inputs and seed write the same log but for "seconds" and "time".
set -u
command -v mmp-train-step >/dev/null || { echo "mmp-train-step not built"; exit 77; }
M="$MMP_ROOT/tests/fixtures/nn/mnv2_w025.safetensors"
[ -f "$M" ] || { echo "no $M"; exit 77; }
source "$MMP_ROOT/tests/sh/checks.sh"

mmp-synth -n 60 --seed 3 > s.tar 2>/dev/null || { echo "FAIL: mmp-synth"; exit 1; }
mmp-decode --size 32 s.tar 2>/dev/null | mmp-embed --model "$M" > all.mmp 2>/dev/null || { echo "FAIL: embed"; exit 1; }
mmp-split --ratio 0.7 --seed 0 all.mmp -o fit.mmp --rest dev.mmp 2>/dev/null || { echo "FAIL: split"; exit 1; }
plain() { # FILE: no CR, no ESC
  if LC_ALL=C grep -q $'[\r\033]' "$1"; then fail "$1: \\r or an escape code: $(cat -A "$1" | head -3)"; fi
}
t_before=$(date +%s)
for flag in "" --progress; do
  mmp-train-step $flag --epochs 5 --batch-size 8 --dev dev.mmp --log log.jsonl --out h.safetensors fit.mmp 2> err.txt ||
    { fail "train $flag: $(cat err.txt)"; continue; }
  plain err.txt
  n=$(grep -c '^mmp-train-step: epoch [1-5]/5: train loss [0-9.]*, dev loss [0-9.]*, dev accuracy [0-9.]*\( (best)\)\?$' err.txt)
  [ "$n" = 5 ] || fail "train $flag: $n epoch lines, want 5: $(cat err.txt)"
  [ "$(wc -l < err.txt)" = 6 ] || fail "train $flag: $(wc -l < err.txt) lines, want 5 epochs + the summary"
  for e in 1 2 3 4 5; do sed -n "${e}p" err.txt | grep -q "^mmp-train-step: epoch $e/5: " || fail "train $flag: line $e: $(sed -n "${e}p" err.txt)"; done
  tail -n 1 err.txt | grep -q '^mmp-train-step: [0-9]* records x ' || fail "train $flag: no summary line last"
done
ok "stderr a file: one plain line per epoch"
mmp-train-step --no-progress --epochs 3 --out h.safetensors fit.mmp 2> err.txt || fail "train --no-progress"
[ "$(wc -l < err.txt)" = 1 ] && ! grep -q 'epoch [0-9]*/' err.txt || fail "--no-progress: $(cat err.txt)"

# the JSON log's wall-clock time: every line, increasing, within this run
t_after=$(date +%s)
awk -v a="$t_before" -v b="$t_after" '
  { if (!match($0, /,"time":[0-9]+\.[0-9]+}$/)) { print "no time at the end of line " NR ": " $0; bad = 1; next }
    t = substr($0, RSTART + 8, RLENGTH - 9) + 0
    if (t < a - 1 || t > b + 1) { print "line " NR ": time " t " not within " a ".." b; bad = 1 }
    if (t < prev) { print "line " NR ": time goes back"; bad = 1 }
    prev = t }
  END { exit bad }' log.jsonl || fail "log times"
grep -q '^{"step":1,"epoch":1,"loss":[^,]*,"lr":[^,]*,"time":' log.jsonl || fail "step line fields: $(head -1 log.jsonl)"
grep -q '^{"epoch":1,"step":[0-9]*,"train_loss":[^,]*,"lr":[^,]*,"dev_loss":[^,]*,"dev_metric":[^,]*,"seconds":[0-9.]*,"time":' log.jsonl ||
  fail "epoch line fields: $(grep train_loss log.jsonl | head -1)"
# two runs of the same inputs and seed: the logs differ only in "seconds" and "time"
for r in a b; do
  mmp-train-step --epochs 3 --batch-size 8 --dev dev.mmp --log det-$r.jsonl --out det-$r.safetensors fit.mmp 2> /dev/null || fail "train $r"
  sed -E 's/,"seconds":[0-9.]+//; s/,"time":[0-9.]+//' det-$r.jsonl > det-$r.masked
done
cmp -s det-a.masked det-b.masked || fail "logs of two identical runs differ beyond seconds/time: $(diff det-a.masked det-b.masked | head -3)"
cmp -s det-a.jsonl det-b.jsonl && fail "two runs wrote the same times"
grep -q time det-a.masked && fail "masking left a time field"
[ "$(wc -l < det-a.masked)" -gt 3 ] || fail "short log"

# other programs with --progress into a file: plain lines, the last count at the end
mmp-eval --progress --model h.safetensors dev.mmp -o pred.mmp 2> err.txt || fail "eval: $(cat err.txt)"
plain err.txt
nd=$(mmp-cat --count dev.mmp 2>/dev/null)
grep -q "^mmp-eval: $nd records, [0-9.]* records/s$" err.txt || fail "eval --progress: $(cat err.txt)"
mmp-cat --progress --count all.mmp > /dev/null 2> err.txt || fail "cat"
plain err.txt
mmp-eval --model h.safetensors dev.mmp -o pred.mmp 2> err.txt || fail "eval"
grep -q 'records/s' err.txt && fail "eval without --progress, stderr a file: $(cat err.txt)"
ok "other programs: plain lines"

# stderr a terminal
if command -v script > /dev/null && script -qec true /dev/null < /dev/null > /dev/null 2>&1; then
  script -qec "mmp-train-step --epochs 3 --batch-size 4 --dev dev.mmp --out t.safetensors fit.mmp" /dev/null < /dev/null > tty.txt 2>&1 ||
    fail "train on a terminal: $(cat tty.txt)"
  LC_ALL=C grep -q $'\r' tty.txt || fail "terminal: no \\r"
  LC_ALL=C grep -q $'\033\\[K' tty.txt || fail "terminal: no erase to end of line"
  grep -aq 'mmp-train-step: epoch 1/3: [0-9]*/11 steps ([0-9]*%), [0-9.]* steps/s, ETA [0-9]*:[0-9][0-9]' tty.txt ||
    fail "terminal: no done/total, rate, ETA line: $(cat -A tty.txt | head -3)"
  n=$(tr '\r' '\n' < tty.txt | grep -ac 'mmp-train-step: epoch [1-3]/3: train loss')
  [ "$n" = 3 ] || fail "terminal: $n epoch lines, want 3: $(cat -A tty.txt)"
  ok "stderr a terminal: live line and epoch lines"
else
  echo "script(1) not usable: the terminal form is not checked"
fi
[ "$fails" = 0 ]
