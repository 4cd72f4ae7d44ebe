"""mmp-train-step --from input against PyTorch (skips without torch): the tiny
torchvision MobileNetV2 and ResNet of tests/fixtures/gen_train_full.py trained
as a whole from mmp-synth images decoded to u8 32x32 records, 2 SGD(momentum,
weight decay) steps of one batch of all 8 images with train-mode BatchNorm (the
--from input default) and with --freeze-bn. PyTorch (float64, from the
float32 weights of mmp-train-step's --epochs 0 checkpoint: the same initial
classifier) normalizes the images as ToTensor + Normalize with the
checkpoint's input_mean/input_std, runs model.train() (or BN in eval mode)
and torch.optim.SGD; the weights and the BN running statistics of the CLI's
checkpoint must match within 1e-5 (relative to each tensor's largest value),
the momentum buffers of out.optim.safetensors torch's (1e-4: gradients); the checkpoint itself
(weights only) and mmp-export's state dict loads into the torchvision module with strict=True and
gives mmp-eval's logits of the checkpoint."""
import os
import subprocess
import sys

try:
    import torch
    from torch import nn
except ImportError:
    print("torch not installed")
    sys.exit(77)
try:
    import torchvision  # noqa: F401
except ImportError:
    print("torchvision not installed")
    sys.exit(77)

import numpy as np  # noqa: E402

ROOT = os.environ.get("MMP_ROOT", ".")
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(ROOT, "formats", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import mmp_stream  # noqa: E402
from export_data import read_st  # noqa: E402  (tests/py: name -> array, __metadata__)
from gen_train_full import make  # noqa: E402


def run(*a):
    subprocess.run([os.path.join(BUILD, a[0])] + list(a[1:]), check=True, capture_output=True)


N, LR, MOM, WD = 8, 0.01, 0.9, 1e-3
with open("s.tar", "wb") as f:
    subprocess.run([os.path.join(BUILD, "mmp-synth"), "-n", str(N), "--seed", "3"], check=True, stdout=f)
run("mmp-decode", "--size", "32", "-o", "img.mmp", "s.tar")
with mmp_stream.Reader("img.mmp") as r:
    recs = list(r)
u8 = np.stack([rec["tensors"]["image"] for rec in recs])  # [N,32,32,3]
y = torch.tensor([rec["label"] for rec in recs])
ncls = int(y.max()) + 1

fails = 0
for kind, head in (("mnv2", "mnv2-tail"), ("basic", "resnet-tail")):
    bb = os.path.join(ROOT, "tests", "fixtures", "train_full", kind + ".safetensors")
    for freeze in (False, True):
        tag = "%s%s" % (kind, " --freeze-bn" if freeze else "")
        common = ["--head", head, "--backbone", bb, "--from", "input", "--optimizer", "sgd", "--lr", str(LR),
                  "--momentum", str(MOM), "--weight-decay", str(WD), "--batch-size", str(N), "--dropout", "0", "-j", "1"]
        common += ["--freeze-bn"] if freeze else []
        run("mmp-train-step", *common, "--epochs", "0", "--out", "init.safetensors", "img.mmp")
        run("mmp-train-step", *common, "--epochs", "2", "--out", "out.safetensors", "img.mmp")
        init, meta = read_st("init.safetensors")
        got, _ = read_st("out.safetensors")
        mean = torch.tensor([float(v) for v in meta["input_mean"].split(",")], dtype=torch.float64)
        std = torch.tensor([float(v) for v in meta["input_std"].split(",")], dtype=torch.float64)
        m = make(kind)
        if kind == "mnv2":
            m.classifier = nn.Sequential(nn.Dropout(0.0), nn.Linear(24, ncls))
        else:
            m.fc = nn.Linear(16, ncls)
        m = m.double()
        state = m.state_dict()
        missing = [k for k in state if not k.endswith("num_batches_tracked") and k not in init]
        if missing:
            print("%s: the checkpoint lacks %s" % (tag, missing[:3]))
            fails += 1
            continue
        m.load_state_dict({k: torch.from_numpy(init[k].astype(np.float64)) if k in init else v for k, v in state.items()})
        # ToTensor + Normalize in float32, as torchvision does on the u8 pixels
        x = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255
        x = ((x - mean.float().view(1, 3, 1, 1)) / std.float().view(1, 3, 1, 1)).double()
        m.train()
        if freeze:
            for mod in m.modules():
                if isinstance(mod, nn.BatchNorm2d):
                    mod.eval()
        opt = torch.optim.SGD(m.parameters(), lr=LR, momentum=MOM, weight_decay=WD)
        for _ in range(2):
            opt.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
        worst, wname = 0.0, ""
        for k, v in m.state_dict().items():
            if k.endswith("num_batches_tracked"):
                continue
            want = v.detach().numpy()
            d = float(np.abs(got[k].astype(np.float64) - want).max() / max(np.abs(want).max(), 1e-12))
            if d > worst:
                worst, wname = d, k
        # the optimizer state apart: out.optim.safetensors holds SGD's momentum buffers
        optim, _ = read_st("out.optim.safetensors")
        named = dict(m.named_parameters())
        oworst = max(float(np.abs(optim["optim.%s.momentum_buffer" % k].astype(np.float64) - opt.state[p]["momentum_buffer"].numpy()).max()
                           / max(np.abs(opt.state[p]["momentum_buffer"].numpy()).max(), 1e-12)) for k, p in named.items())
        if sorted(optim) != sorted("optim.%s.momentum_buffer" % k for k in named) or any(k.startswith("optim.") for k in got) \
                or not oworst <= 1e-4:  # gradients: float32 sums vs float64
            print("FAIL: %s: out.optim.safetensors: %d tensors, worst momentum_buffer rel err %.3g" % (tag, len(optim), oworst))
            fails += 1
        else:
            print("%s: out.optim.safetensors: the momentum buffers (max rel err %.3g), out.safetensors none" % (tag, oworst))
        moved = any(not np.array_equal(got[k], init[k]) for k in got if k.endswith("running_mean"))
        print("%s: 2 SGD steps, CLI vs PyTorch: worst max rel err %.3g (%s; tol 1e-5); running statistics %s"
              % (tag, worst, wname, "moved" if moved else "kept"))
        if not worst <= 1e-5 or moved == freeze:
            print("FAIL: %s" % tag)
            fails += 1
        # the checkpoint itself: torchvision's state dict (classifier resized), strict=True
        mo = make(kind)
        if kind == "mnv2":
            mo.classifier = nn.Sequential(nn.Dropout(0.0), nn.Linear(24, ncls))
        else:
            mo.fc = nn.Linear(16, ncls)
        try:
            mo.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in got.items()}, strict=True)
            print("%s: load_state_dict(load_file(OUT), strict=True): ok" % tag)
        except RuntimeError as e:
            print("FAIL: %s: OUT: load_state_dict(strict=True): %s" % (tag, str(e).splitlines()[0]))
            fails += 1
        # mmp-export: torchvision's whole state dict, strict=True; its eval-mode logits are mmp-eval's
        run("mmp-export", "-o", "pt.safetensors", "out.safetensors")
        run("mmp-eval", "--model", "out.safetensors", "-o", "pred.mmp", "img.mmp")
        pt, _ = read_st("pt.safetensors")
        m32 = make(kind)
        if kind == "mnv2":
            m32.classifier = nn.Sequential(nn.Dropout(0.0), nn.Linear(24, ncls))
        else:
            m32.fc = nn.Linear(16, ncls)
        try:
            m32.load_state_dict({k: torch.from_numpy(v) for k, v in pt.items()}, strict=True)
        except RuntimeError as e:
            print("FAIL: %s: mmp-export: load_state_dict(strict=True): %s" % (tag, str(e).splitlines()[0]))
            fails += 1
            continue
        if freeze:  # frozen random BN statistics: the trained ResNet overflows float32 on these images (1e52 in float64)
            continue
        with torch.no_grad():
            want = m32.eval()(x.float()).double().numpy()
        with mmp_stream.Reader("pred.mmp") as r:
            lg = np.stack([rec["tensors"]["logits"] for rec in r]).astype(np.float64)
        d = float(np.abs(lg - want).max() / max(np.abs(want).max(), 1e-12))
        print("%s: mmp-export -> load_state_dict(strict=True), eval logits vs mmp-eval: max rel err %.3g (tol 1e-5)" % (tag, d))
        if not d <= 1e-5:
            print("FAIL: %s: exported model" % tag)
            fails += 1
sys.exit(1 if fails else 0)
