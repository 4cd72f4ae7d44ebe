"""Checkpoints go both ways with PyTorch (skips without torch):
1. an MLP head trained by mmp-train-step loads into the documented
   nn.Sequential with load_state_dict(strict=True) (after dropping the
   optim.* and standardize.* entries) and gives mmp-eval's logits;
2. a linear head made in PyTorch and saved as a plain state dict
   (format=pt, no mmpipe metadata) is used by mmp-eval with the same logits."""
import json
import os
import struct
import subprocess
import sys

import numpy as np

try:
    import torch
except ImportError:
    print("torch not installed")
    sys.exit(77)

ROOT = os.environ.get("MMP_ROOT", ".")
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(ROOT, "formats", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import mmp_stream  # noqa: E402
from st_io import st_read, st_write  # noqa: E402


def read_st(path):
    """name -> torch tensor (every one F32), and the metadata."""
    with open(path, "rb") as f:
        h = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    assert all(v["dtype"] == "F32" for k, v in h.items() if k != "__metadata__"), path
    return {k: torch.from_numpy(a) for k, a in st_read(path).items()}, h.get("__metadata__", {})


def logits_of(path):
    with mmp_stream.Reader(path) as r:
        return np.stack([rec["tensors"]["logits"] for rec in r])


rng = np.random.default_rng(5)
N, D, C = 300, 12, 4
x = (rng.normal(size=(N, D)) * 3 + 2).astype(np.float32)
y = rng.integers(0, C, N)
x[np.arange(N), y] += 4
with mmp_stream.Writer("train.mmp", {"embedding": {"dtype": "f32", "shape": [D]}}, classes=list("abcd"),
                       meta={"provenance": "test-prov"}) as w:
    for i in range(N):
        w.write({"embedding": x[i]}, id=str(i), label=int(y[i]))

run = lambda *a: subprocess.run([os.path.join(BUILD, a[0])] + list(a[1:]), check=True, capture_output=True)
fails = 0

# 1. mmpipe -> PyTorch
run("mmp-train-step", "--hidden", "16,8", "--dropout", "0.1", "--standardize", "--epochs", "3", "--batch-size", "32",
    "--out", "mlp.safetensors", "train.mmp")
sd, meta = read_st("mlp.safetensors")
assert meta["format"] == "mmpipe-head" and meta["provenance"] == "test-prov"


class Head(torch.nn.Module):  # as documented in docs/train.md
    def __init__(self):
        super().__init__()
        p = 0.1
        self.layers = torch.nn.Sequential(torch.nn.Linear(D, 16), torch.nn.ReLU(), torch.nn.Dropout(p),
                                          torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Dropout(p),
                                          torch.nn.Linear(8, C))

    def forward(self, v):
        return self.layers(v)


m = Head().eval()
m.load_state_dict({k: v for k, v in sd.items() if not k.startswith(("optim.", "standardize."))}, strict=True)
with torch.no_grad():
    want = m((torch.from_numpy(x) - sd["standardize.mean"]) / sd["standardize.std"]).numpy()
run("mmp-eval", "--model", "mlp.safetensors", "-o", "pred.mmp", "train.mmp")
got = logits_of("pred.mmp")
err = np.abs(got - want).max()
print("mmpipe MLP checkpoint in torch: max |logit diff| %.2e" % err)
fails += not err < 1e-4

# 2. PyTorch -> mmpipe
torch.manual_seed(0)
lin = torch.nn.Linear(D, C)
st_write("torch_head.safetensors", lin.state_dict(), {"format": "pt"}, dtype=np.float32)
run("mmp-eval", "--allow-mixed", "--model", "torch_head.safetensors", "-o", "pred2.mmp", "train.mmp")
with torch.no_grad():
    want = lin(torch.from_numpy(x)).numpy()
got = logits_of("pred2.mmp")
err = np.abs(got - want).max()
print("torch linear state dict in mmp-eval: max |logit diff| %.2e" % err)
fails += not err < 1e-4
sys.exit(1 if fails else 0)
