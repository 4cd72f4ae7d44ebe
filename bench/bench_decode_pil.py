#!/usr/bin/python3
"""The loader users have today, for bench/bench_decode.sh: torchvision
ImageFolder (Pillow decode, .convert("RGB")) + DataLoader.

usage: bench_decode_pil.py DIR THREADS [SIZE] [augment]
  THREADS 1 = DataLoader(num_workers=0) in this process (one core);
  THREADS N>1 = DataLoader(num_workers=N).
  SIZE: Resize(SIZE)+CenterCrop(SIZE) (as mmp-decode --size), else native size.
  augment: RandomResizedCrop(SIZE)+HorizontalFlip+ColorJitter(.4,.4,.4,.1)+
  ToTensor+Normalize(ImageNet) (as the mmp-augment row of the bench).
Prints: images/s (wall clock), images per CPU-second of this process.
"""
import sys
import time

import torch
import torchvision.datasets as D
import torchvision.transforms as T

root, threads = sys.argv[1], int(sys.argv[2])
size = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] != "0" else 0
aug = len(sys.argv) > 4 and sys.argv[4] == "augment"
torch.set_num_threads(1)
if aug:
    tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ColorJitter(0.4, 0.4, 0.4, 0.1),
                    T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
elif size:
    tf = T.Compose([T.Resize(size), T.CenterCrop(size), T.PILToTensor()])
else:
    tf = T.PILToTensor()
ds = D.ImageFolder(root, transform=tf)
dl = torch.utils.data.DataLoader(ds, batch_size=64, num_workers=0 if threads <= 1 else threads, shuffle=False)
t0 = time.perf_counter()
c0 = time.process_time()
n = 0
for x, y in dl:
    n += x.shape[0]
dt = time.perf_counter() - t0
dc = time.process_time() - c0
print(f"{n / dt:.1f} {n / dc:.1f}")
