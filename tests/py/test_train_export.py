"""mmp-export with numpy only: the exported state dict holds exactly the
torch module's tensors (weight/bias; layers.0/3/6.*), no optim.* or
standardize.*, format "pt"; its forward pass computed here (x W'^T + b',
ReLU between the MLP's layers) on the raw features gives mmp-eval's logits
of the checkpoint (standardization folded: equal to float rounding)."""
import sys

import numpy as np

from export_data import HIDDEN, make, read_st

x, out = make()
fails = 0
want_keys = {"linear": ["weight", "bias"],
             "mlp": ["layers.%d.%s" % (3 * i, s) for i in range(len(HIDDEN) + 1) for s in ("weight", "bias")]}
for kind, (path, want) in out.items():
    sd, meta = read_st(path)
    if sorted(sd) != sorted(want_keys[kind]):
        print("FAIL %s: tensors %s, expected %s" % (kind, sorted(sd), sorted(want_keys[kind])))
        fails += 1
        continue
    if meta.get("format") != "pt" or meta.get("head") != kind or meta.get("classes") != '["a","b","c","d"]':
        print("FAIL %s: metadata %s" % (kind, meta))
        fails += 1
    h = x.astype(np.float64)
    names = want_keys[kind]
    for i in range(0, len(names), 2):
        if i:
            h = np.maximum(h, 0)
        h = h @ sd[names[i]].astype(np.float64).T + sd[names[i + 1]]
    # folding changes float rounding only: ~1e-6 relative to the largest logit
    tol = 1e-5 * (1 + np.abs(want).max())
    err = np.abs(h - want).max()
    print("%s: numpy forward of the export vs mmp-eval of the checkpoint: max |diff| %.2e (tol %.1e)" % (kind, err, tol))
    fails += not err <= tol
sys.exit(1 if fails else 0)
