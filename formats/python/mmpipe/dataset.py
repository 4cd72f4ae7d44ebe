"""torch.utils.data.IterableDataset over mmp streams (imported by
mmpipe.StreamDataset on first use: torch is optional for the rest of mmpipe)."""
import numpy as np
import torch

from .stream import Reader


class StreamDataset(torch.utils.data.IterableDataset):
    """Streams (x, label) pairs from one or several mmp streams without loading
    them into memory.

    fields: one field name -> x is that tensor; a list of names -> x is a dict
            of tensors; None -> every field, as a dict.
    transform: applied to x (after the conversion to torch tensors).
    With DataLoader(num_workers=W), worker k takes records k, k+W, k+2W ...
    Labels are int64 tensors (-1 = unlabelled); bf16 fields come as float32.
    """

    def __init__(self, paths, fields=None, transform=None):
        super().__init__()
        self.paths = [paths] if isinstance(paths, str) else list(paths)
        self.fields = fields
        self.transform = transform

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        k, w = (info.id, info.num_workers) if info is not None else (0, 1)
        i = 0
        for path in self.paths:
            with Reader(path) as r:
                for rec in r:
                    mine = i % w == k
                    i += 1
                    if not mine:
                        continue
                    t = rec["tensors"]
                    if isinstance(self.fields, str):
                        x = torch.from_numpy(np.array(t[self.fields]))
                    else:
                        x = {n: torch.from_numpy(np.array(t[n])) for n in (self.fields or t)}
                    if self.transform is not None:
                        x = self.transform(x)
                    yield x, torch.tensor(rec["label"], dtype=torch.int64)
