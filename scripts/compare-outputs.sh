#!/usr/bin/env bash
# Compares what two revisions of mmpipe produce: builds BASE (a git revision,
# default HEAD) in a temporary worktree and the working tree
# as it is, runs tests/snapshot/outputs.sh with each in the same directory,
# and compares every output byte for byte: streams, checkpoints, reports, the
# printed results of every C test, and the committed fixtures (differences
# that a commit made on purpose are listed in tests/snapshot/changed.txt
# and reported, not failed, when BASE predates it). Timings in
# the programs' stderr ("0.12 s") are masked; the one-line messages for bad
# input (bad-*) are shown side by side, since a change may improve them.
#
#   scripts/compare-outputs.sh [BASE]     exit 0 = identical
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd); cd "$root"
base=${1:-HEAD}
work=$(mktemp -d /tmp/mmp-compare.XXXXXX)
trap 'git worktree remove --force "$work/src" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/src" "$base" >/dev/null 2>&1
echo "compare: building $base ($(git rev-parse --short "$base")) and the working tree" >&2
make -s -C "$work/src" -j2 BUILD="$work/build-base" all >/dev/null
make -s -j2 BUILD="$work/build-new" all >/dev/null
# the models and the snapshot script are the working tree's for both runs
ln -s "$root/models" "$work/src/models" 2>/dev/null || true
for side in base new; do
  rm -rf "$work/run"
  bash tests/snapshot/outputs.sh "$work/build-$side" "$work/run" >/dev/null
  mv "$work/run" "$work/$side"
done
mask() { sed -E 's/[0-9]+(\.[0-9]+)? s\b/# s/g; s/[0-9.]+ (img|records|sentences)\/s/# \1\/s/g' "$1"; }
renamed() { # an output's name in the working tree (tests/snapshot/renamed.txt)
  local to; to=$(awk -v f="${1#./}" '$1 == f {print $2}' tests/snapshot/renamed.txt 2>/dev/null)
  [ -n "$to" ] && [ ! -e "$work/new/$1" ] && echo "./$to" || echo "$1"
}
bad=0; n=0; chg=0
for f in $(cd "$work/base" && find . -type f | sort); do
  n=$((n+1))
  g=$(renamed "$f")
  [ "$g" != "$f" ] && { mv "$work/new/$g" "$work/new/$f" || { echo "DIFFERS: ${f#./} (renamed ${g#./}) missing"; bad=1; continue; }; }
  case "$f" in
    ./bad-*.err) if ! cmp -s "$work/base/$f" "$work/new/$f"; then
                   echo "message changed: ${f#./}"; echo "  before: $(cat "$work/base/$f")"; echo "  after:  $(cat "$work/new/$f")"; fi ;;
    *.err) cmp -s <(mask "$work/base/$f") <(mask "$work/new/$f") || { echo "DIFFERS: ${f#./}"; diff <(mask "$work/base/$f") <(mask "$work/new/$f") | head -5; bad=1; } ;;
    *) if ! cmp -s "$work/base/$f" "$work/new/$f"; then
         why=$(awk -v f="${f#./}" '$1 == f {print $2}' tests/snapshot/changed.txt 2>/dev/null)
         if [ -n "$why" ] && ! git merge-base --is-ancestor "$why" "$base" 2>/dev/null; then
           chg=$((chg+1)); echo "changed on purpose: ${f#./} ($(awk -v f="${f#./}" '$1 == f {$1 = $2 = ""; sub(/^ +/, ""); print}' tests/snapshot/changed.txt))"
         else echo "DIFFERS: ${f#./}"; bad=1; fi
       fi ;;
  esac
done
for f in $(cd "$work/new" && find . -type f | sort); do [ -e "$work/base/$f" ] || echo "new output (not compared): ${f#./}"; done
# (a renamed output was moved back to its old name above, so it is compared, not listed)
# the fixture files themselves (the scripts that make them may change, e.g. a comment)
# fixtures that BASE lacks are new (listed, not compared); a changed or removed one differs
git diff --name-only --diff-filter=A "$base" -- tests/fixtures ':(exclude)*.py' | sed 's/^/new fixture (not compared): /'
if ! git diff --quiet --diff-filter=a "$base" -- tests/fixtures ':(exclude)*.py'; then echo "DIFFERS: committed fixtures (git diff $base -- tests/fixtures)"; bad=1; fi
[ $bad = 0 ] && echo "compare: $((n - chg)) outputs and the committed fixtures identical to $base$([ $chg -gt 0 ] && echo ", $chg changed on purpose")" || echo "compare: outputs differ from $base"
exit $bad
