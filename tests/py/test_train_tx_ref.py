"""mmp-train-step --head transformer against PyTorch's numbers committed in
tests/fixtures/train_tx (tests/fixtures/gen_train_tx.py; numpy only, so it runs
where torch is not installed): the tiny HF ViT, timm ViT, HF CLIP image tower and
BERT, from the committed --epochs 0 checkpoint (--backbone the fixture model):
  - the first step's loss (--log) and mmp-eval's logits within 1e-5;
  - every parameter's gradient for --unfreeze all and last:1 (from one SGD step
    with lr 1000) within 1e-4 of the tensor's largest; under last:1 every other
    tensor keeps the checkpoint's bits;
  - the weights after 5 AdamW and 5 SGD-momentum steps within 1e-5 of each
    tensor's largest value."""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.environ.get("MMP_ROOT", ".")
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(ROOT, "formats", "python"))
from mmpipe import stream  # noqa: E402

FIX = os.path.join(ROOT, "tests", "fixtures")
fails = []


def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", {})
    out = {}
    for k, v in h.items():
        s, e = v["data_offsets"]
        dt = {"F32": np.float32, "I64": np.int64}[v["dtype"]]
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=dt).reshape(v["shape"]).copy()
    return out, meta


def run(*a, **kw):
    p = subprocess.run([os.path.join(BUILD, a[0])] + [str(x) for x in a[1:]], capture_output=True, **kw)
    if p.returncode:
        raise SystemExit("FAIL: %s: %s" % (" ".join(map(str, a)), p.stderr.decode()))
    return p


def relocated(path, backbone, tmp):
    """a copy of the checkpoint whose metadata names this checkout's backbone (the committed
    file records the absolute path of the checkout that wrote it)"""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.setdefault("__metadata__", {})["backbone"] = backbone
    hb = json.dumps(h).encode()
    hb += b" " * (-len(hb) % 8)
    out = os.path.join(tmp, os.path.basename(os.path.dirname(path)) + "." + os.path.basename(path))
    open(out, "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])
    return out


def check(what, got, want, tol):
    want = np.asarray(want, np.float64)
    scale = max(float(np.abs(want).max()), 1e-30)
    err = float(np.abs(np.asarray(got, np.float64) - want).max()) / scale
    if not err <= tol:
        fails.append("%s: relative error %.3g > %g" % (what, err, tol))
    return err


def main():
    tmp = tempfile.mkdtemp()
    for fix in ("vit_hf", "timm", "clip_hf", "bert"):
        d = os.path.join(FIX, "train_tx", fix)
        rec, init = os.path.join(d, "rec.mmp"), os.path.join(d, "init.safetensors")
        ref, meta = read_st(os.path.join(d, "ref.safetensors"))
        fam = meta["family"]
        sd0, _ = read_st(init)
        base = ["mmp-train-step", "--init", init, "--backbone", os.path.join(FIX, "tx_train", fix), "--batch-size", 8]
        pred = run("mmp-eval", "--model", relocated(init, os.path.join(FIX, "tx_train", fix), tmp), rec).stdout
        logits = np.stack([r["tensors"]["logits"] for r in stream.load(__import__("io").BytesIO(pred))[1]])
        check("%s: mmp-eval's logits" % fam, logits, ref["logits"], 1e-5)
        for unf, pre in (("all", "grad."), ("last:1", "last1.")):
            out, log = os.path.join(tmp, fix + unf + ".safetensors"), os.path.join(tmp, fix + ".log")
            run(*base, "--unfreeze", unf, "--optimizer", "sgd", "--lr", 1000, "--momentum", 0, "--weight-decay", 0,
                "--epochs", 1, "--log", log, "--out", out, rec)
            sd1, _ = read_st(out)
            if unf == "all":
                step = [json.loads(line) for line in open(log) if '"loss"' in line][-1]
                check("%s: the first step's loss" % fam, [step["loss"]], ref["loss"], 1e-5)
            want = {k[len(pre):]: v for k, v in ref.items() if k.startswith(pre)}
            for k in sd0:
                if k in want:
                    check("%s --unfreeze %s: gradient of %s" % (fam, unf, k),
                          (sd0[k].astype(np.float64) - sd1[k]) / 1000.0, want[k], 1e-4)
                elif not np.array_equal(sd0[k], sd1[k]):
                    fails.append("%s --unfreeze %s: %s changed (frozen)" % (fam, unf, k))
        for opt, args in (("adamw", ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.01"]),
                          ("sgd", ["--optimizer", "sgd", "--lr", "0.01", "--momentum", "0.9", "--weight-decay", "0.01"])):
            out = os.path.join(tmp, fix + opt + ".safetensors")
            run(*base, *args, "--epochs", 5, "--out", out, rec)
            sd5, _ = read_st(out)
            worst = 0
            for k, w in ref.items():
                if k.startswith(opt + "."):
                    worst = max(worst, check("%s 5 %s steps: %s" % (fam, opt, k[len(opt) + 1:]), sd5[k[len(opt) + 1:]], w, 1e-5))
            print("%s: gradients, loss, logits; 5 %s steps within %.2g" % (fam, opt, worst))
    if fails:
        for f in fails[:30]:
            print("FAIL:", f)
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
