"""Peers of bench/bench_tx.sh: random-weight HF ViTModel (ViT-B/16 @224) and
CLIPModel (the openai/clip-vit-base-patch32 config) in transformers 4.30.2,
timed in PyTorch and in ONNX Runtime (torch.onnx.export, opset 14, dynamic
batch). Each timing runs in its own process (its peak RSS is its own).

  bench_tx_peer.py make DIR NIMG NTXT   models (DIR/vit, DIR/clip: config.json +
                                        model.safetensors for mmpipe), inputs
                                        (imgs.f32 [NIMG,3,224,224], ids.i32 packed,
                                        lens.i32), ONNX files, PyTorch outputs
                                        (vit_ref.f32 = last_hidden_state[:, 0],
                                        clip_ref.f32 = get_text_features)
  bench_tx_peer.py time torch|ort vit|clip DIR THREADS REPS [N]
                                        (N: the first N images/texts only) prints "best_s cpu_s maxrss_MB" (best of REPS
                                        passes over all inputs, one batch each, after
                                        a warm-up pass) and writes DIR/<side>_<model>.f32
  bench_tx_peer.py check DIR A.f32 B.f32 prints the largest |a - b| over max |b| (B may
                                        hold the first rows of A only)
"""
import os
import resource
import sys
import time

import numpy as np

CTX = 77


def texts(n, rng):
    # token counts of short captions (CLIP BPE of "a photo of a red cat." is 9 with
    # start and end; longer descriptive captions 15-30): start, n-2 ids, end
    lens = rng.integers(7, 32, size=n).astype(np.int32)
    ids = []
    for L in lens:
        ids.extend([49406] + list(rng.integers(256, 49000, size=L - 2)) + [49407])
    return np.array(ids, dtype=np.int32), lens


def padded(ids, lens):
    n, L = len(lens), int(lens.max())
    x = np.zeros((n, L), dtype=np.int64)
    m = np.zeros((n, L), dtype=np.int64)
    o = 0
    for i, l in enumerate(lens):
        x[i, :l] = ids[o:o + l]
        m[i, :l] = 1
        o += l
    return x, m


def make(d, nimg, ntxt):
    import torch
    from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
    from st_io import st_write
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    vit = ViTModel(ViTConfig(), add_pooling_layer=False).eval()  # ViT-B/16 @224 defaults
    clip = CLIPModel(CLIPConfig()).eval()  # the defaults are openai/clip-vit-base-patch32's
    for name, m in (("vit", vit), ("clip", clip)):
        os.makedirs(os.path.join(d, name), exist_ok=True)
        m.config.save_pretrained(os.path.join(d, name))
        st_write(os.path.join(d, name, "model.safetensors"),
                 {k: v.detach().contiguous() for k, v in m.state_dict().items()}, meta={"format": "pt"})
    imgs = rng.standard_normal((nimg, 3, 224, 224), dtype=np.float32)
    imgs.tofile(os.path.join(d, "imgs.f32"))
    ids, lens = texts(ntxt, rng)
    ids.tofile(os.path.join(d, "ids.i32"))
    lens.tofile(os.path.join(d, "lens.i32"))

    class Img(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(pixel_values=x).last_hidden_state[:, 0]

    class Txt(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids, mask):
            return self.m.get_text_features(input_ids=ids, attention_mask=mask)

    x, msk = padded(ids, lens)
    with torch.no_grad():
        Img(vit)(torch.from_numpy(imgs[:2]))
        torch.onnx.export(Img(vit), (torch.from_numpy(imgs[:2]),), os.path.join(d, "vit.onnx"), opset_version=14,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
        torch.onnx.export(Txt(clip), (torch.from_numpy(x[:2]), torch.from_numpy(msk[:2])),
                          os.path.join(d, "clip.onnx"), opset_version=14, input_names=["ids", "mask"],
                          output_names=["y"], dynamic_axes={"ids": {0: "b", 1: "t"}, "mask": {0: "b", 1: "t"},
                                                            "y": {0: "b"}})


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(f, reps):
    f()  # warm-up
    best, bc = 1e30, 1e30
    for _ in range(reps):
        t0, c0 = time.perf_counter(), cpu()
        y = f()
        dt, dc = time.perf_counter() - t0, cpu() - c0
        if dt < best:
            best, bc = dt, dc
    return y, best, bc


def time_side(side, model, d, threads, reps, n):
    imgs = ids = lens = None
    if model == "vit":
        imgs = np.fromfile(os.path.join(d, "imgs.f32"), dtype=np.float32).reshape(-1, 3, 224, 224)[:n]
    else:
        ids = np.fromfile(os.path.join(d, "ids.i32"), dtype=np.int32)
        lens = np.fromfile(os.path.join(d, "lens.i32"), dtype=np.int32)
        ids, lens = ids[:int(lens[:n].sum())], lens[:n]
        x, msk = padded(ids, lens)
    if side == "ort":
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        s = ort.InferenceSession(os.path.join(d, model + ".onnx"), so, providers=["CPUExecutionProvider"])
        if model == "vit":
            f = lambda: s.run(None, {"x": imgs})[0]  # noqa: E731
        else:
            f = lambda: s.run(None, {"ids": x, "mask": msk})[0]  # noqa: E731
    else:
        import torch
        from transformers import CLIPModel, ViTModel
        torch.set_num_threads(threads)
        if model == "vit":
            m = ViTModel.from_pretrained(os.path.join(d, "vit"), add_pooling_layer=False).eval()
            t = torch.from_numpy(imgs)

            def f():
                with torch.no_grad():
                    return m(pixel_values=t).last_hidden_state[:, 0].numpy()
        else:
            m = CLIPModel.from_pretrained(os.path.join(d, "clip")).eval()
            ti, tm = torch.from_numpy(x), torch.from_numpy(msk)

            def f():
                with torch.no_grad():
                    return m.get_text_features(input_ids=ti, attention_mask=tm).numpy()
    y, best, bc = timed(f, reps)
    np.ascontiguousarray(y, dtype=np.float32).tofile(os.path.join(d, "%s_%s.f32" % (side, model)))
    print("%.4f %.4f %.1f" % (best, bc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0))


def main():
    a = sys.argv[1:]
    if a and a[0] == "make" and len(a) == 4:
        make(a[1], int(a[2]), int(a[3]))
    elif a and a[0] == "time" and len(a) in (6, 7):
        time_side(a[1], a[2], a[3], int(a[4]), int(a[5]), int(a[6]) if len(a) == 7 else None)
    elif a and a[0] == "check" and len(a) == 4:
        x = np.fromfile(a[2], dtype=np.float32)
        y = np.fromfile(a[3], dtype=np.float32)
        x = x[:y.size]
        if x.shape != y.shape or y.size == 0:
            print("size %d vs %d" % (x.size, y.size))
            sys.exit(1)
        print("%.2e" % (np.abs(x - y).max() / max(np.abs(y).max(), 1e-30)))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
