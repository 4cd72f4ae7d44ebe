#!/usr/bin/python3
"""Makes larger JPEGs for bench/bench_decode.sh from the shared sample photos:
random crops (seeded) resized with Pillow, saved at quality 90 (4:2:0).
usage: bench_decode_gen.py SAMPLES_DIR OUT_DIR WIDTH HEIGHT COUNT"""
import glob
import os
import random
import sys

from PIL import Image

src, out, w, h, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
photos = [Image.open(p).convert("RGB") for p in sorted(glob.glob(os.path.join(src, "*.jpg")))]
rng = random.Random(0)
os.makedirs(os.path.join(out, "photos"), exist_ok=True)
for i in range(n):
    im = photos[i % len(photos)]
    cw = rng.randint(im.width // 2, im.width)
    ch = min(im.height, max(1, int(cw * h / w)))
    x, y = rng.randint(0, im.width - cw), rng.randint(0, im.height - ch)
    c = im.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BICUBIC)
    if i % 2:
        c = c.transpose(Image.FLIP_LEFT_RIGHT)
    c.save(os.path.join(out, "photos", f"{i:04d}.jpg"), quality=90)
