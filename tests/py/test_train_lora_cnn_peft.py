"""CNN LoRA adapters against PEFT 0.4 (skips without torch, torchvision, peft):
the tiny torchvision MobileNetV2 and BasicBlock ResNet of
tests/fixtures/gen_train_full.py trained --from input --unfreeze lora
--freeze-bn for 2 AdamW steps on 8 mmp-synth images; mmp-export --peft writes
the adapter folder, which peft.PeftModel.from_pretrained(torchvision module,
dir) loads; its eval-mode logits must be mmp-eval --adapter's (base +
adapter, unmerged) and the checkpoint's. PEFT 0.4 builds each adapted Conv2d
with bias=True and keeps that random bias when the original has none
(torchvision's convs): it is zeroed after loading. Also: mmp-export
--merge-lora loads with strict=True into the plain torchvision module and
gives the same logits; the adapter on another base is refused (checksums);
a train-mode BN checkpoint is refused by --peft."""
import os
import subprocess
import sys

ROOT = os.environ.get("MMP_ROOT", ".")
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
peers = os.environ.get("MMP_PEERS", os.path.expanduser("~/.local/share/mmpipe-peers"))
for sub in ("hf", "peft"):
    if os.path.isdir(os.path.join(peers, sub)):
        sys.path.append(os.path.join(peers, sub))
try:
    import numpy as np
    import torch
    import torchvision  # noqa: F401
    import transformers  # noqa: F401
    from peft import PeftModel
    from torch import nn
except ImportError as e:
    print("no reference libraries (%s)" % e)
    sys.exit(77)

sys.path.insert(0, os.path.join(ROOT, "formats", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
import mmp_stream  # noqa: E402
from export_data import read_st  # noqa: E402
from gen_train_full import make  # noqa: E402


def run(*a, ok=True):
    p = subprocess.run([os.path.join(BUILD, a[0])] + list(a[1:]), capture_output=True, text=True)
    if ok and p.returncode:
        sys.exit("%s failed: %s" % (a[0], p.stderr.strip()))
    return p


def logits(path):
    with mmp_stream.Reader(path) as r:
        return np.stack([rec["tensors"]["logits"] for rec in r]).astype(np.float64)


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


N = 8
with open("s.tar", "wb") as f:
    subprocess.run([os.path.join(BUILD, "mmp-synth"), "-n", str(N), "--seed", "3"], check=True, stdout=f)
run("mmp-decode", "--size", "32", "-o", "img.mmp", "s.tar")
with mmp_stream.Reader("img.mmp") as r:
    recs = list(r)
u8 = np.stack([rec["tensors"]["image"] for rec in recs])
ncls = max(rec["label"] for rec in recs) + 1

fails = 0
for kind, head in (("mnv2", "mnv2-tail"), ("basic", "resnet-tail")):
    bb = os.path.join(ROOT, "tests", "fixtures", "train_full", kind + ".safetensors")
    common = ["--head", head, "--backbone", bb, "--from", "input", "--unfreeze", "lora", "--lora-rank", "2",
              "--lora-alpha", "4", "--batch-size", str(N), "--dropout", "0", "--epochs", "2", "--lr", "0.05"]
    run("mmp-train-step", *common, "--freeze-bn", "--out", "lora.safetensors", "img.mmp")
    run("mmp-export", "--peft", "-o", "ad_" + kind, "lora.safetensors")
    run("mmp-eval", "--model", bb, "--adapter", "ad_" + kind, "-o", "pa.mmp", "img.mmp")
    run("mmp-eval", "--model", "lora.safetensors", "-o", "pc.mmp", "img.mmp")
    got, want_ck = logits("pa.mmp"), logits("pc.mmp")
    _, meta = read_st("lora.safetensors")
    mean = torch.tensor([float(v) for v in meta["input_mean"].split(",")])
    std = torch.tensor([float(v) for v in meta["input_std"].split(",")])
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255
    x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    m = make(kind)
    if kind == "mnv2":
        m.classifier = nn.Sequential(nn.Dropout(0.0), nn.Linear(24, ncls))
    else:
        m.fc = nn.Linear(16, ncls)
    pm = PeftModel.from_pretrained(m, "ad_" + kind)
    nad = 0
    with torch.no_grad():
        for name, mod in pm.named_modules():
            if hasattr(mod, "lora_A") and isinstance(mod, nn.Conv2d) and len(mod.lora_A):
                nad += 1
                if mod.bias is not None:
                    mod.bias.zero_()  # PEFT 0.4's spurious bias (see above)
        want = pm.eval()(x.double() if False else x).double().numpy()
    d1, d2 = rel(got, want), rel(want_ck, got)
    print("%s: PeftModel.from_pretrained (%d adapted convs) vs mmp-eval --adapter: max rel err %.3g (tol 1e-5); "
          "--adapter vs the checkpoint: %.3g (tol 0)" % (kind, nad, d1, d2))
    if not (d1 <= 1e-5 and d2 == 0 and nad > 0):
        print("FAIL: %s adapter logits" % kind)
        fails += 1
    # --merge-lora: the plain torchvision module, strict=True
    run("mmp-export", "--merge-lora", "ad_" + kind, "--model", bb, "-o", "merged.safetensors")
    sd, _ = read_st("merged.safetensors")
    m2 = make(kind)
    if kind == "mnv2":
        m2.classifier = nn.Sequential(nn.Dropout(0.0), nn.Linear(24, ncls))
    else:
        m2.fc = nn.Linear(16, ncls)
    try:
        m2.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    except RuntimeError as e:
        print("FAIL: %s: --merge-lora: load_state_dict(strict=True): %s" % (kind, str(e).splitlines()[0]))
        fails += 1
        continue
    with torch.no_grad():
        wm = m2.eval()(x).double().numpy()
    d3 = rel(wm, want)
    print("%s: mmp-export --merge-lora, strict=True: logits vs PEFT's unmerged: max rel err %.3g (tol 1e-4)" % (kind, d3))
    if not d3 <= 1e-4:
        print("FAIL: %s merged" % kind)
        fails += 1
    # another base: the checksum check; train-mode BN: no adapter
    other = os.path.join(ROOT, "tests", "fixtures", "train_full", "bottleneck.safetensors")
    p = run("mmp-eval", "--model", other, "--adapter", "ad_" + kind, "-o", "px.mmp", "img.mmp", ok=False)
    if p.returncode == 0 or "sha256" not in p.stderr:
        print("FAIL: %s: adapter on another base: %s" % (kind, p.stderr.strip()))
        fails += 1
    run("mmp-train-step", *common, "--epochs", "1", "--out", "trbn.safetensors", "img.mmp")
    p = run("mmp-export", "--peft", "-o", "ad_bn", "trbn.safetensors", ok=False)
    if p.returncode == 0 or "freeze-bn" not in p.stderr:
        print("FAIL: %s: --peft of a train-mode BN checkpoint: %s" % (kind, p.stderr.strip()))
        fails += 1
sys.exit(1 if fails else 0)
