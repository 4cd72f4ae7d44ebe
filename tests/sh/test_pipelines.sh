#!/usr/bin/env bash
# The recipes in pipelines/ on small synthetic data (mmp-synth): each runs end
# to end, --help works, missing inputs fail early with a clear message, caches
# are reused, and remote-augment over a socket between two network namespaces
# gives a checkpoint bit-identical to the single-host run.
set -u
R=$MMP_ROOT; P=$R/pipelines
py=${MMP_PYTHON:-}
[ -n "$py" ] && "$py" -c 'import numpy' 2>/dev/null || { echo "no python3 with numpy (for the random-init models)"; exit 77; }
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

mmp-synth --classes > classes.txt
mmp-synth -n 150 --seed 3 --prefix tr- -o train.tar
mmp-synth -n 60 --seed 3 --first 5000 --prefix te- -o test.tar
"$py" "$P/lib/random_init.py" mobilenet_v2 mnv2.safetensors --seed 1
"$py" "$P/lib/random_init.py" bert bert --vocab-from train.tar --seed 1

for p in linear-probe multimodal-classify align-retrieve embed-once-train-many remote-augment demo; do
  "$P/$p" --help > help.txt 2>&1 && grep -q "$p" help.txt && ok "$p --help" || bad "$p --help"
done
for p in linear-probe multimodal-classify embed-once-train-many; do
  extra=(); [ $p = multimodal-classify ] && extra=(bert)
  if "$P/$p" nope.tar test.tar mnv2.safetensors "${extra[@]}" > err.txt 2>&1; then bad "$p accepted a missing input"
  else grep -q "nope.tar" err.txt && [ "$(wc -l < err.txt)" -eq 1 ] && ok "$p: missing input -> one line" || { cat err.txt; bad "$p missing-input message"; }; fi
done

# linear-probe, twice (the second run reuses the cached embeddings)
if "$P/linear-probe" --out lp --epochs 5 --classes-from classes.txt train.tar test.tar mnv2.safetensors > lp.txt 2> lp.err; then
  grep -q "weighted avg" lp.txt && [ -f lp/report.html ] && ok "linear-probe" || bad "linear-probe output"
  "$P/linear-probe" --out lp --epochs 5 --classes-from classes.txt train.tar test.tar mnv2.safetensors > lp2.txt 2> lp2.err
  grep -q "using cached" lp2.err && cmp -s <(sed '/^wall time/,$d' lp.txt) <(sed '/^wall time/,$d' lp2.txt) && ok "linear-probe cache reused, same report" || bad "linear-probe cache"
else cat lp.err; bad "linear-probe failed"; fi

if "$P/multimodal-classify" --out mm --epochs 5 --classes-from classes.txt train.tar test.tar mnv2.safetensors bert > mm.txt 2> mm.err; then
  grep -q "weighted avg" mm.txt && ok "multimodal-classify" || bad "multimodal-classify output"
else cat mm.err; bad "multimodal-classify failed"; fi

if "$P/align-retrieve" --out ar --epochs 3 --proj-dim 32 train.tar test.tar mnv2.safetensors bert classes.txt > ar.txt 2> ar.err; then
  grep -qi "recall" ar.txt && grep -q "weighted avg" ar.txt && ok "align-retrieve" || { cat ar.txt; bad "align-retrieve output"; }
else cat ar.err; bad "align-retrieve failed"; fi

if "$P/embed-once-train-many" --out eo --views 2 --heads linear,mlp:16 --lrs 1e-3,1e-2 --epochs 3 --classes-from classes.txt train.tar test.tar mnv2.safetensors > eo.txt 2> eo.err; then
  [ "$(grep -cE '^(linear|mlp:16) ' eo.txt)" -eq 4 ] && grep -q "views per training image: 2" eo.txt && ok "embed-once-train-many" || { cat eo.txt; bad "embed-once-train-many table"; }
  n=$(mmp-cat --count eo/fit.mmp); d=$(mmp-cat --count eo/dev.mmp)
  [ $((n + 2 * d)) -eq 300 ] && ok "2 views of each fit image ($n records)" || bad "views: fit $n dev $d"
else cat eo.err; bad "embed-once-train-many failed"; fi

# caption: a tiny run of the three decoder modes on mmp-synth caption scenes
"$P/caption" --help > help.txt 2>&1 && grep -q "caption" help.txt && ok "caption --help" || bad "caption --help"
if "$P/caption" --out cap --train 40 --dev 8 --test 8 --size 32 --epochs 1 --decoder-layers 1 --decoder-width 32 --decoder-heads 2 \
     --decoder-context 24 --prefix-length 4 --beams 2 --threads 2 mnv2.safetensors > cap.txt 2> cap.err; then
  [ "$(grep -cE '^(all|head|lora) +(greedy|beam2) ' cap.txt)" -eq 6 ] && ok "caption: 3 modes x greedy/beam table" || { cat cap.txt; bad "caption table"; }
else cat cap.err; bad "caption failed"; fi

# remote-augment: single host twice (determinism), then over TCP between two network namespaces
ra="--epochs 2 --classes-from $PWD/classes.txt --threads 2"
"$P/remote-augment" local $ra --out local1.safetensors train.tar mnv2.safetensors 2> ra1.err || { cat ra1.err; bad "remote-augment local"; }
"$P/remote-augment" local $ra --threads 1 --out local2.safetensors train.tar mnv2.safetensors 2> ra2.err || bad "remote-augment local 2"
cmp -s local1.safetensors local2.safetensors && ok "remote-augment local: identical for 1 and 2 threads" || bad "remote-augment local not deterministic"
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v socat >/dev/null && ip netns add mmpA$$ 2>/dev/null; then
  ip netns add mmpB$$
  ip link add va$$ type veth peer name vb$$
  ip link set va$$ netns mmpA$$; ip link set vb$$ netns mmpB$$
  ip -n mmpA$$ addr add 10.231.7.1/24 dev va$$; ip -n mmpB$$ addr add 10.231.7.2/24 dev vb$$
  ip -n mmpA$$ link set va$$ up; ip -n mmpB$$ link set vb$$ up; ip -n mmpA$$ link set lo up; ip -n mmpB$$ link set lo up
  ip netns exec mmpA$$ timeout 300 "$P/remote-augment" serve $ra --port 7755 train.tar mnv2.safetensors 2> serve.err &
  spid=$!
  ip netns exec mmpB$$ timeout 300 "$P/remote-augment" train $ra --connect 10.231.7.1:7755 --out remote.safetensors 2> train.err
  wait $spid
  ip netns del mmpA$$; ip netns del mmpB$$
  cmp -s local1.safetensors remote.safetensors && ok "remote-augment over TCP between two hosts: bit-identical head" || { cat serve.err train.err; bad "remote checkpoint differs"; }
else
  echo "note: network namespaces unavailable (not root or no ip/socat): TCP two-host check not run"
fi

# the demo, small
if MMP_TEXT_MODEL=$PWD/bert MMP_IMAGE_MODEL=$PWD/mnv2.safetensors "$P/demo" --out demo --train 150 --test 60 > demo.txt 2> demo.err; then
  grep -q "fused" demo.txt && grep -q "weighted avg" demo.txt && [ -s demo/report.html ] && ok "demo" || { cat demo.txt; bad "demo output"; }
else cat demo.err; bad "demo failed"; fi
exit $fail
