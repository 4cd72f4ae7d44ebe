#!/usr/bin/env bash
# mmp-train-step --head transformer on the tiny models of tests/fixtures/tx_train:
# - image records (HF ViT, timm, open_clip's image tower) and text records (the
#   tiny BERT with its fixture vocab.txt): trains, mmp-eval applies the checkpoint;
# - --resume after --stop-after-epochs 1: the checkpoint and the optimizer state
#   (OUT.optim.safetensors) bit-identical to an uninterrupted run;
# - -j 1 and -j 3: bit-identical checkpoints;
# - --recompute (activation recomputation per block): checkpoints and optimizer
#   state bit-identical to the run without it (all, last:1, LoRA with dropout:
#   the same masks), and a smaller memory line;
# - mmp-embed / mmp-embed-text --model CKPT load the fine-tuned tower;
# - bad inputs: a record without the image / text, images of two sizes, images
#   the patches do not tile, an unknown model, last:N beyond the blocks: one
#   line naming the file/record, non-zero exit, no checkpoint written.
set -u
command -v mmp-train-step >/dev/null || { echo "mmp-train-step not built"; exit 77; }
FX="$MMP_ROOT/tests/fixtures/tx_train"
[ -f "$FX/vit_hf/model.safetensors" ] && [ -f "$FX/bert/vocab.txt" ] || { echo "no tests/fixtures/tx_train"; exit 77; }
[ -n "${MMP_PYTHON:-}" ] || { echo "no python3 with numpy, msgpack, zstandard"; exit 77; }
source "$MMP_ROOT/tests/sh/checks.sh"

"$MMP_PYTHON" - <<'PY' || { echo "FAIL: streams"; exit 1; }
import os, sys
sys.path.insert(0, os.path.join(os.environ["MMP_ROOT"], "formats", "python"))
import numpy as np
from mmpipe import stream
rng = np.random.default_rng(1)
def images(path, sizes, field="image"):
    w = stream.Writer(path, {field: {"dtype": "u8", "shape": [-1, -1, 3]}}, classes=["a", "b", "c"])
    for i, s in enumerate(sizes):
        w.write({field: rng.integers(0, 256, (s, s, 3), dtype=np.uint8)}, id="r%d" % i, label=i % 3)
    w.close()
images("img.mmp", [12] * 20)
images("two.mmp", [12] * 3 + [16])
images("odd.mmp", [10] * 4)
images("other.mmp", [12] * 4, field="pixels")
words = "the movie was good bad great awful plot actors fine dull long short music".split()
w = stream.Writer("txt.mmp", {}, classes=["a", "b", "c"])
for i in range(20):
    w.write({}, id="t%d" % i, label=i % 3, text=" ".join(rng.choice(words, rng.integers(1, 9))))
w.close()
images("big.mmp", [12] * 2048)
w = stream.Writer("bigt.mmp", {}, classes=["a", "b", "c"])
for i in range(2048):
    w.write({}, id="t%d" % i, label=i % 3, text=" ".join(rng.choice(words, 40)))
w.close()
w = stream.Writer("emb.mmp", {"embedding": {"dtype": "f32", "shape": [4]}}, classes=["a", "b"])
for i in range(4):
    w.write({"embedding": rng.standard_normal(4).astype(np.float32)}, id="e%d" % i, label=i % 2)
w.close()
w = stream.Writer("notext.mmp", {}, classes=["a", "b", "c"])
w.write({}, id="t0", label=0, text="good movie")
w.write({}, id="t1", label=1)
w.close()
PY

T="--head transformer --batch-size 6 --lr 1e-3 --seed 2 --epochs 2"
for m in vit_hf:img timm:img clip_oc:img bert:txt; do
  IFS=: read -r name data <<< "$m"
  if mmp-train-step $T --backbone "$FX/$name" -j 1 --out $name.safetensors $data.mmp 2> err.txt; then ok "$name: $(tail -1 err.txt)"
  else fail "$name: train: $(cat err.txt)"; continue; fi
  [ -f $name.optim.safetensors ] || fail "$name: no optimizer state beside the checkpoint"
  if mmp-eval --model $name.safetensors $data.mmp > pred.$name.mmp 2> err.txt; then ok "$name: eval: $(tail -1 err.txt)"
  else fail "$name: eval: $(cat err.txt)"; fi
  # threads
  mmp-train-step $T --backbone "$FX/$name" -j 3 --out $name.j3.safetensors $data.mmp 2>/dev/null || fail "$name: -j 3"
  cmp -s $name.safetensors $name.j3.safetensors && ok "$name: -j 1 and -j 3 bit-identical" || fail "$name: -j 1 and -j 3 differ"
  # activation recomputation: the same bits, less saved
  if mmp-train-step $T --backbone "$FX/$name" -j 2 --recompute --out $name.rc.safetensors $data.mmp 2> err.rc.txt &&
     cmp -s $name.safetensors $name.rc.safetensors && cmp -s $name.optim.safetensors $name.rc.optim.safetensors; then
    ok "$name: --recompute bit-identical (weights and optimizer state)"
  else fail "$name: --recompute differs: $(cat err.rc.txt)"; fi
  # the memory line (a batch of 4096: MiB to see); every record's tokens at --max-length
  mmp-train-step $T --backbone "$FX/$name" --batch-size 4096 --epochs 0 --out $name.m0.safetensors $data.mmp 2> err.m0.txt
  mmp-train-step $T --backbone "$FX/$name" --batch-size 4096 --epochs 0 --recompute --out $name.m0.safetensors $data.mmp 2> err.rc.txt
  s0=$(sed -n 's/.*: \([0-9.]*\) MiB saved activations.*/\1/p' err.m0.txt); s1=$(sed -n 's/.*: \([0-9.]*\) MiB saved activations.*/\1/p' err.rc.txt)
  if [ -n "$s0" ] && [ -n "$s1" ] && awk -v a="$s1" -v b="$s0" 'BEGIN{exit !(a > 0 && a < b)}'; then
    ok "$name: memory line: $s0 MiB saved, $s1 MiB with --recompute"
  else fail "$name: memory line: '$s0' / '$s1': $(cat err.m0.txt)"; fi
  lora="lora --lora-dropout 0.3 --lora-rank 2"; [ $name = clip_oc ] && lora="$lora --lora-targets c_fc,c_proj"
  for u in "last:1" "$lora"; do
    mmp-train-step $T --backbone "$FX/$name" -j 1 --unfreeze $u --out $name.u.safetensors $data.mmp 2>/dev/null || fail "$name: --unfreeze $u"
    mmp-train-step $T --backbone "$FX/$name" -j 1 --unfreeze $u --recompute --out $name.urc.safetensors $data.mmp 2> err.txt || fail "$name: --unfreeze $u --recompute: $(cat err.txt)"
    cmp -s $name.u.safetensors $name.urc.safetensors && cmp -s $name.u.optim.safetensors $name.urc.optim.safetensors \
      && ok "$name: --unfreeze $u: --recompute bit-identical" || fail "$name: --unfreeze $u: --recompute differs"
  done
  # interrupted and resumed
  mmp-train-step $T --backbone "$FX/$name" --stop-after-epochs 1 --out $name.r.safetensors $data.mmp 2>/dev/null || fail "$name: first half"
  mmp-train-step --resume $name.r.safetensors --out $name.r.safetensors $data.mmp 2> err.txt || fail "$name: --resume: $(cat err.txt)"
  if cmp -s $name.safetensors $name.r.safetensors && cmp -s $name.optim.safetensors $name.r.optim.safetensors; then
    ok "$name: --resume bit-identical (weights and optimizer state)"
  else fail "$name: --resume differs from the uninterrupted run"; fi
done
# --dev with early stopping: the best epoch's checkpoint and its optimizer state, and the last one's
if mmp-train-step $T --epochs 4 --backbone "$FX/vit_hf" --dev img.mmp --patience 1 --out dev.safetensors img.mmp 2> err.txt &&
   [ -f dev.optim.safetensors ] && [ -f dev.last.safetensors ] && [ -f dev.last.optim.safetensors ]; then ok "--dev: $(tail -1 err.txt)"
else fail "--dev: $(cat err.txt; ls)"; fi

# --unfreeze head: the classifier alone moves (the tower tensors stay the backbone's bits)
mmp-train-step $T --backbone "$FX/vit_hf" --unfreeze head --out head.safetensors img.mmp 2>/dev/null || fail "--unfreeze head"
"$MMP_PYTHON" - head.safetensors "$FX/vit_hf/model.safetensors" <<'PY' && ok "--unfreeze head: the tower unchanged" || fail "--unfreeze head changed the tower"
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items()}
a, b = load(sys.argv[1]), load(sys.argv[2])
sys.exit(any(a[k] != b[k] for k in b if not k.startswith("classifier.")))
PY

# mmp-embed / mmp-embed-text --model CKPT: the fine-tuned tower (configs and vocabulary from its
# backbone); after --unfreeze head its embeddings are the backbone's bits, after training all they differ
same_emb() { "$MMP_PYTHON" - "$1" "$2" "$3" <<'PY'
import os, sys
sys.path.insert(0, os.path.join(os.environ["MMP_ROOT"], "formats", "python"))
from mmpipe import stream
a = [r["tensors"][sys.argv[3]].tobytes() for r in stream.load(sys.argv[1])[1]]
b = [r["tensors"][sys.argv[3]].tobytes() for r in stream.load(sys.argv[2])[1]]
sys.exit(0 if a == b and a else 1)
PY
}
for m in vit_hf:img:mmp-embed:embedding timm:img:mmp-embed:embedding clip_oc:img:mmp-embed:embedding bert:txt:mmp-embed-text:text_embedding; do
  IFS=: read -r name data tool field <<< "$m"
  mmp-train-step $T --backbone "$FX/$name" --unfreeze head --out h_$name.safetensors $data.mmp 2>/dev/null || fail "$name: --unfreeze head"
  $tool --model "$FX/$name" $data.mmp > e0.mmp 2>/dev/null || fail "$name: $tool on the backbone"
  if $tool --model h_$name.safetensors $data.mmp > e1.mmp 2> err.txt && $tool --model $name.safetensors $data.mmp > e2.mmp 2>> err.txt; then
    same_emb e0.mmp e1.mmp $field && ok "$name: $tool --model CKPT (--unfreeze head): the backbone's embeddings" \
      || fail "$name: $tool of the head-only checkpoint differs from the backbone's"
    same_emb e0.mmp e2.mmp $field && fail "$name: $tool of the fine-tuned checkpoint gives the backbone's embeddings" \
      || ok "$name: $tool --model CKPT (fine-tuned): other embeddings"
  else fail "$name: $tool --model CKPT: $(cat err.txt)"; fi
done

# The memory line against the peak RSS: one batch of 2048 records, the growth
# of the peak over an --epochs 0 run of the same (the model, the data, the
# checkpoint's writing) within 0.8..1.25 of saved + buffers + gradients +
# optimizer state (texts: every record at --max-length tokens, as the line counts).
peak() { # out-file, args...: the child's peak RSS in KiB, its stderr in out-file
  "$MMP_PYTHON" -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[2:], stderr=open(sys.argv[1], "w"))
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if r.returncode == 0 else -1)' "$@"
}
case "${MMP_EXTRA_CFLAGS:-}" in *sanitize*) rss_models="" ; echo "sanitizer build: no peak RSS check (shadow memory)" ;; *) rss_models="vit_hf:big bert:bigt" ;; esac
for m in $rss_models; do
  IFS=: read -r name data <<< "$m"
  for r in "" --recompute; do
    a=$(peak m0.txt mmp-train-step $T --backbone "$FX/$name" --batch-size 2048 --epochs 0 -j 2 $r --out m.safetensors $data.mmp)
    b=$(peak m1.txt mmp-train-step $T --backbone "$FX/$name" --batch-size 2048 --epochs 1 -j 2 $r --out m.safetensors $data.mmp)
    tot=$(sed -n 's/.*: \([0-9.]*\) MiB saved activations + \([0-9.]*\) MiB backward buffers; [0-9.]* MiB parameters + \([0-9.]*\) MiB gradients + \([0-9.]*\) MiB optimizer state/\1 \2 \3 \4/p' m1.txt |
          awk '{print $1 + $2 + $3 + $4}')
    if [ "$a" -gt 0 ] && [ "$b" -gt 0 ] && [ -n "$tot" ] && awk -v a="$a" -v b="$b" -v t="$tot" 'BEGIN{g = (b - a) / 1024; exit !(t >= 0.8 * g && t <= 1.25 * g)}'; then
      ok "$name ${r:-(stored)}: memory line $tot MiB, peak RSS growth $(( (b - a) / 1024 )) MiB"
    else fail "$name ${r:-(stored)}: memory line '$tot' MiB, peak RSS $a -> $b KiB: $(cat m1.txt)"; fi
  done
done

# bad inputs: one line, non-zero, no checkpoint
bad() { # name, expected text, args...
  local n=$1 want=$2; shift 2
  rm -f bad.safetensors bad.optim.safetensors
  if mmp-train-step "$@" --out bad.safetensors 2> err.txt; then fail "$n: accepted"; return; fi
  [ "$(wc -l < err.txt)" -eq 1 ] || fail "$n: $(wc -l < err.txt) lines: $(cat err.txt)"
  grep -q -- "$want" err.txt && ok "$n: $(cat err.txt)" || fail "$n: message: $(cat err.txt)"
  [ -e bad.safetensors ] || [ -e bad.optim.safetensors ] && fail "$n: a checkpoint was written"
}
bad "no image" 'other.mmp: record 0: no tensor "image"' $T --backbone "$FX/vit_hf" other.mmp
bad "two sizes" "two.mmp: record 3" $T --backbone "$FX/vit_hf" two.mmp
bad "size the patches do not tile" "multiples of its patch size 4" $T --backbone "$FX/vit_hf" odd.mmp
bad "no text" "notext.mmp: record 1 (id t1): no text" $T --backbone "$FX/bert" notext.mmp
bad "unknown model" "unknown architecture.*nor a BERT-family model" $T --backbone "$MMP_ROOT/tests/fixtures/nn/mnv2_w025.safetensors" img.mmp
bad "--recompute without a transformer" "--recompute needs --head transformer" --head linear --recompute emb.mmp
bad "last:N beyond" "last:3: .* has 2 blocks" $T --backbone "$FX/vit_hf" --unfreeze last:3 img.mmp
[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all ok"
