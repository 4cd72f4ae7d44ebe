#!/usr/bin/env bash
# mmp-train-step --from input --unfreeze head|last:N|norm|lora on the small
# random-weights ResNet-18 and MobileNetV2 of tests/fixtures/nn (mmp-synth
# images at 32 px, 2 epochs, train-mode BN):
# - what moved in the checkpoint: head = fc only; last:1 = layer4.1 + fc
#   (layer4.0 kept); norm = BN weight/bias + fc (convs kept); lora = the
#   adapters + fc (every base weight kept); the running statistics of frozen
#   layers still move (model.train()); optimizer state only for what trains;
# - lora: mmp-export --peft writes the adapter folder, mmp-eval --adapter on the
#   base gives the checkpoint's predictions, mmp-export merges;
# - bad options: one line each.
set -u
command -v mmp-train-step >/dev/null || { echo "mmp-train-step not built"; exit 77; }
MN="$MMP_ROOT/tests/fixtures/nn/mnv2_w025.safetensors"
RN="$MMP_ROOT/tests/fixtures/nn/resnet18_w8.safetensors"
[ -f "$MN" ] && [ -f "$RN" ] || { echo "no tests/fixtures/nn networks"; exit 77; }
source "$MMP_ROOT/tests/sh/checks.sh"

mmp-synth -n 24 --seed 5 > s.tar || { echo "FAIL: mmp-synth"; exit 1; }
mmp-decode --size 32 s.tar > img.mmp 2>/dev/null || { echo "FAIL: decode"; exit 1; }
# same FILE_A FILE_B NAME: the tensor's bytes are equal (0) or not (1)
same() { python3 - "$@" <<'PY'
import json, struct, sys
def get(p, name):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    if name not in h:
        sys.exit("%s: no tensor %s" % (p, name))
    s, e = h[name]["data_offsets"]
    return b[8 + n + s:8 + n + e]
sys.exit(0 if get(sys.argv[1], sys.argv[3]) == get(sys.argv[2], sys.argv[3]) else 1)
PY
}
names() { python3 - "$1" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
print("\n".join(k for k in json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]]) if k != "__metadata__"))
PY
}
kept() { same "$RN" "$1" "$2" && ok "$1: $2 kept" || fail "$1: $2 moved"; }
moved() { same "$RN" "$1" "$2" && fail "$1: $2 did not move" || ok "$1: $2 moved"; }

T="--head resnet-tail --backbone $RN --from input --batch-size 12 --lr 1e-2 --seed 1 --epochs 2"
for u in head last:1 norm lora; do
  f=u_${u/:/}.safetensors
  mmp-train-step $T --unfreeze $u --lora-rank 2 --out $f img.mmp 2> err.txt || { fail "--unfreeze $u: $(cat err.txt)"; continue; }
done
kept u_head.safetensors layer4.1.conv2.weight; kept u_head.safetensors layer4.1.bn2.weight; kept u_head.safetensors conv1.weight
moved u_head.safetensors layer1.0.bn1.running_mean   # train-mode BN of a frozen layer
moved u_last1.safetensors layer4.1.conv2.weight; moved u_last1.safetensors layer4.1.bn2.bias
kept u_last1.safetensors layer4.0.conv2.weight; kept u_last1.safetensors layer4.0.downsample.0.weight
kept u_norm.safetensors layer2.0.conv1.weight; kept u_norm.safetensors conv1.weight
moved u_norm.safetensors layer2.0.bn1.weight; moved u_norm.safetensors bn1.bias
kept u_lora.safetensors layer3.1.conv2.weight; kept u_lora.safetensors layer3.1.bn2.weight
names u_lora.safetensors > n.txt
grep -q '^layer3.1.conv2.lora_A.weight$' n.txt && grep -q '^conv1.lora_B.weight$' n.txt && grep -q '^layer2.0.downsample.0.lora_A.weight$' n.txt \
  && ok "lora: adapters on the convolutions" || fail "lora: adapters missing"
# (the optimizer state: optim.* in the checkpoint, or in u_last1.optim.safetensors beside it)
{ names u_last1.safetensors; [ -f u_last1.optim.safetensors ] && names u_last1.optim.safetensors; } | grep 'exp_avg' \
  | sed 's/^optim\.//; s/\.exp_avg.*//' | sort -u > opt.txt
if grep -qv '^layer4\.1\.\|^fc\.' opt.txt || ! grep -q '^layer4.1.conv1.weight$' opt.txt; then fail "last:1: optimizer state of frozen tensors: $(head -3 opt.txt)"
else ok "last:1: optimizer state for the trainable tensors only ($(wc -l < opt.txt))"; fi

# the adapter folder, base + adapter unmerged, the merged export (MobileNetV2, --freeze-bn)
M="--head mnv2-tail --backbone $MN --from input --batch-size 12 --lr 1e-2 --seed 1 --epochs 2 --dropout 0 --freeze-bn"
mmp-train-step $M --unfreeze lora --lora-rank 4 --lora-alpha 8 --out ml.safetensors img.mmp 2>/dev/null || fail "mnv2 lora"
mmp-export --peft -o ad ml.safetensors && [ -f ad/adapter_config.json ] && [ -f ad/adapter_model.safetensors ] \
  && ok "mmp-export --peft: the adapter folder" || fail "mmp-export --peft"
grep -q '"modules_to_save"' ad/adapter_config.json && grep -q '"classifier"' ad/adapter_config.json && grep -q '"r": 4' ad/adapter_config.json \
  && ok "adapter_config.json: r, modules_to_save" || fail "adapter_config.json: $(cat ad/adapter_config.json)"
mmp-eval --model ml.safetensors -o p1.mmp img.mmp 2>/dev/null
mmp-eval --model "$MN" --adapter ad -o p2.mmp img.mmp 2>/dev/null || fail "mmp-eval --adapter"
diff <(mmp-cat p1.mmp | tail -n +2) <(mmp-cat p2.mmp | tail -n +2) >/dev/null && ok "mmp-eval --adapter: the checkpoint's predictions" \
  || fail "mmp-eval --adapter differs from the checkpoint"
mmp-export -o m1.safetensors ml.safetensors && mmp-export --merge-lora ad --model "$MN" -o m2.safetensors \
  && cmp -s m1.safetensors m2.safetensors && ok "--merge-lora: the checkpoint's merged export" || fail "--merge-lora"
names m2.safetensors | grep -q lora && fail "merged export holds adapters" || ok "merged export: no adapters"

bad "unknown strategy" "expected head, last:N" mmp-train-step $T --unfreeze some --out bad.safetensors img.mmp
bad "last:N past the blocks" "has 8 blocks" mmp-train-step $T --unfreeze last:9 --out bad.safetensors img.mmp
bad "targets matching nothing" "matches no convolution" mmp-train-step $T --unfreeze lora --lora-targets nothing --out bad.safetensors img.mmp
bad "depthwise-only targets" "only depthwise" mmp-train-step $M --unfreeze lora --lora-targets conv.1.0 --out bad.safetensors img.mmp
bad "--peft of a checkpoint without adapters" "not trained with --unfreeze lora" mmp-export --peft -o ad2 u_head.safetensors
bad "--peft of a train-mode BN checkpoint" "--freeze-bn" mmp-export --peft -o ad3 u_lora.safetensors
bad "adapter on another base" "sha256" mmp-eval --model "$RN" --adapter ad img.mmp
bad "--init of a LoRA checkpoint without --unfreeze lora" "holds LoRA adapters" \
  mmp-train-step $T --unfreeze all --init u_lora.safetensors --out bad.safetensors img.mmp
mmp-train-step $T --unfreeze lora --lora-rank 2 --init u_head.safetensors --out ih.safetensors img.mmp 2> err.txt \
  && names ih.safetensors | grep -q 'lora_A' && ok "--unfreeze lora from a plain checkpoint: fresh adapters" \
  || fail "--unfreeze lora --init plain: $(cat err.txt)"
mmp-decode --size 64 s.tar 2>/dev/null | mmp-embed --model "$MN" --layer features.15:flat > f15.mmp 2>/dev/null
bad "--unfreeze on cached activations" "needs --from input" \
  mmp-train-step --head mnv2-tail --backbone "$MN" --unfreeze last:1 --out bad.safetensors f15.mmp
[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all ok"
