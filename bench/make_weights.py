#!/usr/bin/python3
"""Writes torchvision models with random weights as safetensors (bench only).
usage: make_weights.py OUTDIR  -> OUTDIR/resnet18.safetensors, resnet50.safetensors"""
import json, os, struct, sys
import numpy as np
import torch, torchvision


def write_st(path, sd):
    hdr, blobs, off = {}, [], 0
    for k, v in sd.items():
        b = np.ascontiguousarray(v.detach().float().numpy()).astype("<f4").tobytes()
        hdr[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


torch.manual_seed(0)
for name in ["resnet18", "resnet50"]:
    m = getattr(torchvision.models, name)()
    write_st(os.path.join(sys.argv[1], name + ".safetensors"),
             {k: v for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")})
