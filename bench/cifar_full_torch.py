#!/usr/bin/env python3
"""The CIFAR-10 full fine-tuning recipe in PyTorch (the peer of bench/bench_cifar_full.sh).

Same images and split as the mmpipe side: the record ids of FIT.mmp / DEV.mmp (the tar
member names, as mmp-decode writes them) pick the JPEGs of TRAIN.tar; the test set is the
whole TEST.tar. Pillow decode + Resize(S) + CenterCrop(S) once (what mmp-decode --size S
gives), then every epoch RandomCrop(S, padding=P, padding_mode='reflect') +
RandomHorizontalFlip(0.5) (mmp-augment --pad-crop S,pad=P,mode=reflect --hflip 0.5),
ToTensor + Normalize(0.5, 0.5) (the model's input_mean/std). torchvision
mobilenet_v2() with the given weights (strict), classifier[1] replaced by Linear(1280, C),
Dropout 0.2 (torchvision's), BatchNorm in eval mode (running statistics; weight and bias
train: mmp-train-step --freeze-bn), every parameter trained: AdamW(lr, wd) or
SGD(lr, momentum 0.9, wd), cosine per step to 0 over epochs * ceil(n / batch) steps,
batch B, seeded shuffling, the last partial batch kept. Test accuracy of the last epoch.
Prints one JSON line. Usage:
  cifar_full_torch.py FIT.mmp DEV.mmp TRAIN.tar TEST.tar MODEL.safetensors
      [--size 96] [--pad 12] [--epochs 10] [--lr 3e-4] [--weight-decay 1e-2]
      [--optimizer adamw|sgd] [--batch-size 64] [--threads 2] [--seed 0]
"""
import argparse, io, json, math, os, struct, sys, tarfile, time
import numpy as np
import torch, torchvision
from PIL import Image
import torchvision.transforms as T

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats", "python"))
import mmp_stream  # noqa: E402


def load_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    d = b[8 + n:]
    dt = {"F32": np.float32, "I64": np.int64}
    return {k: torch.from_numpy(np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]], dtype=dt[v["dtype"]]).reshape(v["shape"]).copy())
            for k, v in h.items() if k != "__metadata__"}


def ids_of(path):
    with mmp_stream.Reader(path) as r:
        return [rec["id"] for rec in r]


def decode(tar_path, size, want=None):
    """[(PIL image, label)] of the tar's JPEGs (all, or those named in want, in want's order)."""
    pre = T.Compose([T.Resize(size), T.CenterCrop(size)])
    out = {}
    with tarfile.open(tar_path) as tf:
        members = [m for m in tf if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg", ".png"))]
        classes = sorted({m.name.split("/")[-2] for m in members})
        for m in members:
            if want is not None and m.name not in want:
                continue
            im = Image.open(io.BytesIO(tf.extractfile(m).read())).convert("RGB")
            out[m.name] = (pre(im), classes.index(m.name.split("/")[-2]))
    names = sorted(out) if want is None else want
    missing = [n for n in names if n not in out]
    if missing:
        sys.exit(f"cifar_full_torch: {tar_path}: no member {missing[0]} (of {len(missing)} ids)")
    return [out[n] for n in names], classes


def accuracy(model, items, tf, bs=256):
    model.eval()
    ok = 0
    with torch.no_grad():
        for i in range(0, len(items), bs):
            chunk = items[i:i + bs]
            x = torch.stack([tf(im) for im, _ in chunk])
            y = torch.tensor([l for _, l in chunk])
            ok += (model(x).argmax(1) == y).sum().item()
    return ok / len(items)


def main():
    ap = argparse.ArgumentParser()
    for a in ("fit", "dev", "train", "test", "model"):
        ap.add_argument(a)
    ap.add_argument("--size", type=int, default=96); ap.add_argument("--pad", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=10); ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--weight-decay", type=float, default=1e-2); ap.add_argument("--optimizer", default="adamw")
    ap.add_argument("--batch-size", type=int, default=64); ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.time()
    fit_ids, dev_ids = ids_of(a.fit), ids_of(a.dev)
    fit, classes = decode(a.train, a.size, fit_ids)
    dev, _ = decode(a.train, a.size, dev_ids)
    test, _ = decode(a.test, a.size)
    t_decode = time.time() - t0
    norm = T.Compose([T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
    aug = T.Compose([T.RandomCrop(a.size, padding=a.pad, padding_mode="reflect"), T.RandomHorizontalFlip(0.5), norm])

    m = torchvision.models.mobilenet_v2()
    m.load_state_dict(load_st(a.model), strict=True)
    m.classifier[1] = torch.nn.Linear(m.classifier[1].in_features, len(classes))
    if a.optimizer == "adamw":
        opt = torch.optim.AdamW(m.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    else:
        opt = torch.optim.SGD(m.parameters(), lr=a.lr, momentum=0.9, weight_decay=a.weight_decay)
    steps_per_epoch = math.ceil(len(fit) / a.batch_size)
    total = a.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda u: (1 + math.cos(math.pi * min(u, total) / total)) / 2)
    g = torch.Generator().manual_seed(a.seed)
    epochs = []
    t_train = 0.0
    for e in range(a.epochs):
        te = time.time()
        m.train()
        for mod in m.modules():  # BatchNorm in eval mode (running statistics), its affine trains
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.eval()
        perm = torch.randperm(len(fit), generator=g).tolist()
        tot, n = 0.0, 0
        for s in range(0, len(fit), a.batch_size):
            chunk = [fit[i] for i in perm[s:s + a.batch_size]]
            x = torch.stack([aug(im) for im, _ in chunk])
            y = torch.tensor([l for _, l in chunk])
            loss = torch.nn.functional.cross_entropy(m(x), y)
            opt.zero_grad(); loss.backward(); opt.step(); sched.step()
            tot += loss.item() * len(chunk); n += len(chunk)
        t_train += time.time() - te
        dacc = accuracy(m, dev, norm)
        epochs.append({"epoch": e + 1, "train_loss": round(tot / n, 5), "dev_accuracy": round(dacc, 4), "s": round(time.time() - te, 1)})
        print(json.dumps(epochs[-1]), file=sys.stderr, flush=True)
    te = time.time()
    acc = accuracy(m, test, norm)
    print(json.dumps({"n_fit": len(fit), "n_dev": len(dev), "n_test": len(test), "decode_s": round(t_decode, 1),
                      "train_s": round(t_train, 1), "test_s": round(time.time() - te, 1), "accuracy": acc,
                      "dev_accuracy": epochs[-1]["dev_accuracy"] if epochs else None, "epochs": epochs}))


if __name__ == "__main__":
    main()
