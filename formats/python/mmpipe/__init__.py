"""mmpipe: mmp streams (formats/stream.md) as numpy arrays.

    import mmpipe
    d = mmpipe.load("train.mmp")         # every record in memory
    X, y = d.features["embedding"], d.labels    # [N, D] float32, [N] int64 (-1 = unlabelled)
    d.ids, d.classes                     # numpy str array [N], list of class names

    for rec in mmpipe.records("train.mmp"):    # one record at a time (dicts)
        rec["id"], rec["label"], rec["tensors"]["embedding"]

    with mmpipe.Writer("out.mmp", {"embedding": {"dtype": "f32", "shape": [D]}},
                       classes=names) as w:
        w.write({"embedding": x}, id="a", label=3)

    ds = mmpipe.StreamDataset("train.mmp", "embedding")   # torch IterableDataset (needs torch)

The reader makes every check of the format (truncation, checksums, schema).
bf16 tensors come back as float32 (exact).
"""
import numpy as np

from .stream import DTYPES, FORMAT_VERSION, Reader, StreamError, Writer, write  # noqa: F401

__version__ = "0.1.0"
__all__ = ["load", "records", "Arrays", "Reader", "Writer", "write", "StreamError",
           "StreamDataset"]


class Arrays:
    """What load() returns.

    features: {field: array [N, ...]} (a list of N arrays for a field whose
              shape varies between records, e.g. native-size images)
    labels:   int64 array [N], -1 where a record has no label
    ids:      str array [N] ("" where a record has no id)
    texts:    list of N str or None
    classes:  list of class names (label i = classes[i])
    header:   the stream header (schema, classes, meta)
    """

    def __init__(self, header, features, labels, ids, texts):
        self.header = header
        self.classes = list(header["classes"])
        self.features = features
        self.labels = labels
        self.ids = ids
        self.texts = texts

    def __len__(self):
        return len(self.labels)

    def __repr__(self):
        f = ", ".join("%s=%s" % (k, "%s%s" % (v.dtype, list(v.shape)) if isinstance(v, np.ndarray)
                                 else "list[%d]" % len(v)) for k, v in self.features.items())
        return "mmpipe.Arrays(%d records, %d classes, %s)" % (len(self), len(self.classes), f)


def records(src, **kw):
    """Iterates over the records of a stream (path, '-', bytes or binary file):
    dicts with id, label (-1 = none), text and tensors {field: numpy array}.
    The stream is verified as it is read; a corrupt one raises StreamError."""
    with Reader(src, **kw) as r:
        yield from r


def load(src, **kw):
    """The whole stream as numpy arrays (an Arrays object)."""
    with Reader(src, **kw) as r:
        header = r.header
        per_field = {name: [] for name in header["schema"]}
        labels, ids, texts = [], [], []
        for rec in r:
            for name, a in rec["tensors"].items():
                per_field[name].append(a)
            labels.append(rec["label"])
            ids.append(rec["id"] if rec["id"] is not None else "")
            texts.append(rec["text"])
    features = {}
    for name, arrays in per_field.items():
        f = header["schema"][name]
        dtype = np.float32 if f["dtype"] == "bf16" and kw.get("bf16") != "raw" else DTYPES[f["dtype"]]
        if not arrays:
            features[name] = np.zeros([0] + [max(d, 0) for d in f["shape"]], dtype=dtype)
        elif all(a.shape == arrays[0].shape for a in arrays):
            features[name] = np.stack(arrays)
        else:
            features[name] = arrays
    return Arrays(header, features, np.array(labels, dtype=np.int64),
                  np.array(ids, dtype=str) if ids else np.zeros(0, dtype="<U1"), texts)


def __getattr__(name):
    # torch is optional: mmpipe.StreamDataset imports it on first use
    if name == "StreamDataset":
        from .dataset import StreamDataset
        return StreamDataset
    raise AttributeError("module 'mmpipe' has no attribute %r" % name)
