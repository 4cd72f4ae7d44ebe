#!/usr/bin/python3
"""PyTorch + Pillow peer of `mmp-decode --size 96 | mmp-embed` on CIFAR-10:
decode JPEGs from the tar with Pillow, resize to 96x96 (bilinear), normalize,
MobileNetV2 (real weights) forward in batches of 64, pool features.
usage: bench_embed_cifar_torch.py TAR WEIGHTS THREADS N  -> prints "img/s" over the first N images."""
import io, sys, tarfile, time
import numpy as np
import torch, torchvision
from PIL import Image
sys.path.insert(0, __import__("os").path.dirname(__file__))
from bench_embed_torch import load_st  # noqa: E402

tar, weights, threads, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
m = torchvision.models.mobilenet_v2()
m.load_state_dict(load_st(weights))
m.eval()
mean = torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1)
std = torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1)
t0 = time.perf_counter()
done, batch = 0, []
with tarfile.open(tar) as tf, torch.no_grad():
    for ti in tf:
        if done + len(batch) >= n:
            break
        if not ti.isfile() or not ti.name.endswith(".jpg"):
            continue
        im = Image.open(io.BytesIO(tf.extractfile(ti).read())).convert("RGB").resize((96, 96), Image.BILINEAR)
        batch.append(torch.from_numpy(np.asarray(im).copy()))
        if len(batch) == 64:
            x = (torch.stack(batch).permute(0, 3, 1, 2).float() / 255 - mean) / std
            torch.flatten(torch.nn.functional.adaptive_avg_pool2d(m.features(x), 1), 1)
            done += len(batch)
            batch = []
    if batch:
        x = (torch.stack(batch).permute(0, 3, 1, 2).float() / 255 - mean) / std
        m.features(x)
        done += len(batch)
print("%.1f" % (done / (time.perf_counter() - t0)))
