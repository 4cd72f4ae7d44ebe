#!/usr/bin/env python3
"""The CIFAR-10 linear-probe recipe in PyTorch (the peer of bench/bench_cifar.sh).

Pillow decode + torchvision Resize(S)+CenterCrop(S), ToTensor, Normalize(0.5, 0.5)
(pixel/127.5 - 1), torchvision MobileNetV2 with the given weights, pooled 1280-d
features (batch 64); standardized features, nn.Linear head, AdamW(lr, wd), batch
256, E epochs, seeded shuffling; test accuracy. Prints one JSON line with the
times of each stage. Usage:
  cifar_torch.py TRAIN.tar TEST.tar MODEL.safetensors [--size 96] [--epochs 30]
                 [--threads 2] [--shard-train N] [--shard-test N]
"""
import argparse, io, json, struct, tarfile, time
import numpy as np
import torch, torchvision
from PIL import Image
import torchvision.transforms as T


def load_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    d = b[8 + n:]
    dt = {"F32": np.float32, "I64": np.int64}
    return {k: torch.from_numpy(np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]], dtype=dt[v["dtype"]]).reshape(v["shape"]).copy())
            for k, v in h.items() if k != "__metadata__"}


def items(tar_path, shard):
    with tarfile.open(tar_path) as tf:
        members = sorted((m for m in tf if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg", ".png"))), key=lambda m: m.name)
        classes = sorted({m.name.split("/")[-2] for m in members})
        for i, m in enumerate(members):
            if i % shard:
                continue
            yield tf.extractfile(m).read(), classes.index(m.name.split("/")[-2])


def embed(model, tar_path, size, shard):
    tf = T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
    feats, labels, batch = [], [], []
    def flush():
        with torch.no_grad():
            x = torch.stack(batch)
            feats.append(model.features(x).mean((2, 3)))
        batch.clear()
    for data, label in items(tar_path, shard):
        batch.append(tf(Image.open(io.BytesIO(data)).convert("RGB")))
        labels.append(label)
        if len(batch) == 64:
            flush()
    if batch:
        flush()
    return torch.cat(feats), torch.tensor(labels)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("train"); ap.add_argument("test"); ap.add_argument("model")
    ap.add_argument("--size", type=int, default=96); ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2); ap.add_argument("--shard-train", type=int, default=1)
    ap.add_argument("--shard-test", type=int, default=1); ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    m = torchvision.models.mobilenet_v2()
    m.load_state_dict(load_st(a.model))
    m.eval()
    t0 = time.time()
    xtr, ytr = embed(m, a.train, a.size, a.shard_train)
    t1 = time.time()
    xte, yte = embed(m, a.test, a.size, a.shard_test)
    t2 = time.time()
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    head = torch.nn.Linear(xtr.shape[1], 10)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-2)
    g = torch.Generator().manual_seed(a.seed)
    for _ in range(a.epochs):
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), 256):
            idx = perm[i:i + 256]
            loss = torch.nn.functional.cross_entropy(head(xtr[idx]), ytr[idx])
            opt.zero_grad(); loss.backward(); opt.step()
    t3 = time.time()
    with torch.no_grad():
        acc = (head(xte).argmax(1) == yte).float().mean().item()
    print(json.dumps({"n_train": len(ytr), "n_test": len(yte), "embed_train_s": t1 - t0, "embed_test_s": t2 - t1,
                      "train_s": t3 - t2, "accuracy": acc}))


if __name__ == "__main__":
    main()
