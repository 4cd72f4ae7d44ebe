#!/usr/bin/env bash
# The command-line syntax every mmp-* program shares (lib/cli.h): --help and
# --version, "--opt=v" and "--opt v", "-j4" on the threaded programs, "--"
# before the inputs, one line with a suggestion for a misspelt option, a value
# given to a flag refused. A whole pipeline runs in the "--opt=v ... -- INPUT"
# spelling on the small fixture models.
set -u
fail=0
bad() { echo "FAIL: $*"; fail=1; }
progs="mmp-synth mmp-decode mmp-augment mmp-cat mmp-shuffle mmp-split mmp-embed mmp-embed-text mmp-fuse mmp-train-step mmp-eval mmp-report mmp-export mmp-generate"
for p in $progs; do command -v "$p" >/dev/null || { echo "$p not built"; exit 77; }; done
NN="$MMP_ROOT/tests/fixtures/nn/mnv2_w025.safetensors"
TB="$MMP_ROOT/tests/fixtures/text/tiny_bert"
GM="$MMP_ROOT/tests/fixtures/generate/gpt2"
[ -f "$NN" ] && [ -d "$TB" ] && [ -d "$GM" ] || { echo "no fixture models"; exit 77; }

oneline() { # prog, expected message (exact), command...
  local p=$1 want=$2; shift 2
  if "$@" >out.txt 2>err.txt; then bad "$p: '$*' exited 0"; return; fi
  [ "$(cat err.txt)" = "$p: $want" ] || bad "$p: '$*': got '$(cat err.txt)', want '$p: $want'"
}
for p in $progs; do
  "$p" --help >out.txt 2>err.txt || bad "$p --help: exit $?"
  head -n 1 out.txt | grep -q "^usage: $p" || bad "$p --help: no usage line"
  grep -q -- "^  -h, --help " out.txt || bad "$p --help: no option list"
  [ -s err.txt ] && bad "$p --help wrote to stderr"
  "$p" -h | cmp -s - out.txt || bad "$p -h differs from --help"
  [ "$("$p" --version)" = "$p (mmpipe) $(sed -n 's/^#define MMP_VERSION "\(.*\)"/\1/p' "$MMP_ROOT/lib/mmp.h")" ] || bad "$p --version"
  oneline "$p" "unknown option --bogus (see --help)" "$p" --bogus
  oneline "$p" "unknown option --hepl (did you mean --help?)" "$p" --hepl
  oneline "$p" "unknown option --versio (did you mean --version?)" "$p" --versio  # no abbreviations
  oneline "$p" "option --progress takes no value (see --help)" "$p" --progress=1
done
# the threaded programs take -j/--threads
for p in mmp-decode mmp-augment mmp-embed mmp-embed-text mmp-train-step mmp-generate; do
  grep -q -- "-j, --threads N" <("$p" --help) || bad "$p has no -j, --threads"
  oneline "$p" "value for --threads out of range: 0 (allowed 1..1024)" "$p" -j0
  oneline "$p" "bad value for --threads: 'x' (an integer is expected)" "$p" --threads=x
done
oneline mmp-shuffle "bad value for --buffer: 'x' (an integer is expected)" mmp-shuffle --buffer x
oneline mmp-cat "option --head needs a value (see --help)" mmp-cat --head
oneline mmp-train-step "value for --lr out of range: -1 (must be > 0)" mmp-train-step --lr=-1 --out x.safetensors
oneline mmp-train-step "unknown option --weight_decay (did you mean --weight-decay?)" mmp-train-step --weight_decay 0.1
oneline mmp-embed-text "bad value for --dtype: f64 (f32 or f16)" mmp-embed-text --dtype=f64

# a pipeline, "--opt=v" spelling, -j4, inputs after "--"
mmp-synth --count=24 --seed=1 --prefix=s- -o s.tar -- || bad "synth"
mmp-decode --size=32 -j4 -o d.mmp -- s.tar 2>/dev/null || bad "decode"
mmp-decode --size 32 --threads 1 s.tar > d1.mmp 2>/dev/null || bad "decode -j 1"
cmp -s <(mmp-cat d.mmp | tail -n +2) <(mmp-cat d1.mmp | tail -n +2) || bad "decode: -j4 and --threads 1 records differ"
mmp-augment --hflip=0.5 --seed=3 -j4 -o a.mmp -- d.mmp || bad "augment"
mmp-augment --hflip 0.5 --seed 3 -j 1 d.mmp > a1.mmp || bad "augment -j 1"
cmp -s <(mmp-cat a.mmp | tail -n +2) <(mmp-cat a1.mmp | tail -n +2) || bad "augment: --opt=v -j4 and --opt v -j 1 records differ"
[ "$(mmp-cat --count -- a.mmp d.mmp)" = 48 ] || bad "cat --count -- two inputs"
mmp-shuffle --seed=2 --buffer=5 -o sh.mmp -- d.mmp || bad "shuffle"
mmp-split --ratio=0.5 --rest=r.mmp -o f.mmp -- d.mmp 2>/dev/null || bad "split"
mmp-embed --model="$NN" -j4 --batch=5 -o e.mmp -- d.mmp || bad "embed"
mmp-embed --model "$NN" --threads 1 d.mmp > e1.mmp || bad "embed --threads 1"
cmp -s <(mmp-cat --full e.mmp | tail -n +2) <(mmp-cat --full e1.mmp | tail -n +2) || bad "embed: -j4 and --threads 1 differ"
mmp-embed-text --model="$TB" -j4 -o t.mmp -- e.mmp || bad "embed-text"
mmp-fuse --fields=embedding,text_embedding --l2 -o fu.mmp -- t.mmp || bad "fuse"
mmp-train-step --epochs=2 --batch-size=8 -j4 --out=h.safetensors -- fu.mmp 2>/dev/null || bad "train-step"
mmp-eval --model=h.safetensors --batch-size=7 -o p.mmp -- fu.mmp 2>/dev/null || bad "eval"
mmp-report --digits=3 -o rep.txt -- p.mmp 2>/dev/null || bad "report"
grep -q "accuracy" rep.txt || bad "report: no accuracy line"
mmp-generate --model="$GM" --max-new-tokens=3 --num-beams=2 -j4 --batch=5 -o g.mmp -- t.mmp || bad "generate"
mmp-generate --model "$GM" --max-new-tokens 3 --num-beams 2 --threads 1 --batch 1 t.mmp > g1.mmp || bad "generate --threads 1"
[ "$(mmp-cat --count g.mmp)" = 24 ] || bad "generate: not 24 records"
cmp -s <(mmp-cat --full g.mmp | tail -n +2) <(mmp-cat --full g1.mmp | tail -n +2) || bad "generate: -j4 --batch=5 and --threads 1 --batch 1 differ"
# options after the input, bundled flags
mmp-cat d.mmp --head=1 | grep -q '"id"' || bad "cat: option after the input"
exit $fail
