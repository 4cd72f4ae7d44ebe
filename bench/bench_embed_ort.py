#!/usr/bin/python3
"""ONNX Runtime peer for bench_embed.sh: forward-only img/s of the torchvision models
exported with torch.onnx.export.

usage: bench_embed_ort.py export MNV2_WEIGHTS WEIGHTS_DIR OUT_DIR ARCH:SIZE...
           writes OUT_DIR/ARCH-SIZE.onnx (opset 13, input "x" float NCHW [64,3,SIZE,SIZE],
           the whole torchvision model in eval mode, as bench_embed_torch.py runs it):
           ResNets with the random weights of WEIGHTS_DIR/ARCH.safetensors
           (bench/make_weights.py, the same as mmp-embed's), MobileNetV2 with the real
           MNV2_WEIGHTS. Needs torch + torchvision (not onnxruntime).
       bench_embed_ort.py run FILE.onnx SIZE THREADS BATCHES
           prints "img/s maxrss_MB onnxruntime_version": SessionOptions
           intra_op_num_threads = THREADS, inter_op_num_threads = 1, sequential execution,
           ORT_ENABLE_ALL graph optimizations, CPUExecutionProvider; batch 64 of random
           N(0,1) input after one warm-up batch, best of 2 timings of BATCHES batches.
           Needs onnxruntime (not torch: the RSS is ORT's own).
Exit status 3 with one line on stderr when the module a mode needs is missing."""
import os, resource, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))


def need(mod):
    try:
        return __import__(mod)
    except ImportError:
        print("bench_embed_ort: %s not installed" % mod, file=sys.stderr)
        sys.exit(3)


def export(mnv2, wdir, out, cfgs):
    torch = need("torch")
    torchvision = need("torchvision")
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "fixtures"))
    from st_io import st_read
    models = {}
    for cfg in cfgs:
        arch, size = cfg.split(":")
        if arch not in models:
            m = getattr(torchvision.models, arch)()
            f = mnv2 if arch == "mobilenet_v2" else os.path.join(wdir, arch + ".safetensors")
            sd = {k: torch.from_numpy(a) for k, a in st_read(f).items()}
            # make_weights.py drops num_batches_tracked (not used in eval mode)
            missing, unexpected = m.load_state_dict(sd, strict=False)
            bad = [k for k in missing if not k.endswith("num_batches_tracked")] + list(unexpected)
            if bad:
                sys.exit("bench_embed_ort: %s: tensors do not match torchvision's %s: %s" % (f, arch, bad[:4]))
            models[arch] = m.eval()
        x = torch.zeros(64, 3, int(size), int(size))
        with torch.no_grad():
            torch.onnx.export(models[arch], x, os.path.join(out, "%s-%s.onnx" % (arch, size)),
                              input_names=["x"], output_names=["y"], opset_version=13,
                              do_constant_folding=True)


def run(path, size, threads, nb):
    np = need("numpy")
    ort = need("onnxruntime")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((64, 3, size, size), dtype=np.float32)
    s.run(None, {"x": x})  # warm-up
    dt = 1e30
    for _ in range(2):  # best of 2 (the machine may be shared)
        t0 = time.perf_counter()
        for _ in range(nb):
            s.run(None, {"x": x})
        dt = min(dt, time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("%.2f %.0f %s" % (64 * nb / dt, rss, ort.__version__), flush=True)


def main():
    a = sys.argv[1:]
    if len(a) >= 5 and a[0] == "export":
        export(a[1], a[2], a[3], a[4:])
    elif len(a) == 5 and a[0] == "run":
        run(a[1], int(a[2]), int(a[3]), int(a[4]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
