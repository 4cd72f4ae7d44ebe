"""Shared by test_train_export.py (numpy) and test_train_export_torch.py: a
feature stream, a linear (ce) and an MLP (bce, SGD + momentum) head trained
with standardization by mmp-train-step, exported by mmp-export, and
mmp-eval's logits of the checkpoints on the training features."""
import json
import os
import struct
import subprocess
import sys

import numpy as np

ROOT = os.environ.get("MMP_ROOT", ".")
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(ROOT, "formats", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import mmp_stream  # noqa: E402
from st_io import st_read  # noqa: E402

N, D, C = 200, 9, 4
HIDDEN, DROPOUT = [16, 8], 0.1


def run(*a):
    return subprocess.run([os.path.join(BUILD, a[0])] + list(a[1:]), check=True, capture_output=True)


def logits_of(path):
    with mmp_stream.Reader(path) as r:
        return np.stack([rec["tensors"]["logits"] for rec in r])


def read_st(path):
    """name -> numpy array, and the __metadata__."""
    with open(path, "rb") as f:
        h = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    return st_read(path), h.get("__metadata__", {})


def make():
    """x [N,D]; {"linear"|"mlp": (exported state dict path, mmp-eval logits of the checkpoint)}"""
    rng = np.random.default_rng(7)
    # far from standardized (mean ~ 4..12, std ~ 0.5..4.5), so the fold matters
    x = (rng.normal(size=(N, D)) * np.linspace(0.5, 4.5, D) + np.linspace(4, 12, D)).astype(np.float32)
    y = rng.integers(0, C, N)
    x[np.arange(N), y] += 3
    schema = {"embedding": {"dtype": "f32", "shape": [D]}, "labels": {"dtype": "f32", "shape": [C]}}
    with mmp_stream.Writer("train.mmp", schema, classes=list("abcd"), meta={"provenance": "test-prov"}) as w:
        for i in range(N):
            t = np.zeros(C, np.float32)
            t[y[i]] = 1
            t[(y[i] + 1) % C] = i % 2
            w.write({"embedding": x[i], "labels": t}, id=str(i), label=int(y[i]))
    run("mmp-train-step", "--epochs", "3", "--batch-size", "32", "--out", "linear.safetensors", "train.mmp")
    run("mmp-train-step", "--loss", "bce", "--hidden", ",".join(map(str, HIDDEN)), "--dropout", str(DROPOUT),
        "--standardize", "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--epochs", "3",
        "--batch-size", "32", "--out", "mlp.safetensors", "train.mmp")
    out = {}
    for k in ("linear", "mlp"):
        run("mmp-export", "-o", k + ".pt.safetensors", k + ".safetensors")
        run("mmp-eval", "--model", k + ".safetensors", "-o", k + ".pred.mmp", "train.mmp")
        out[k] = (k + ".pt.safetensors", logits_of(k + ".pred.mmp"))
    return x, out
