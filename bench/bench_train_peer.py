#!/usr/bin/env python3
"""PyTorch side of bench/bench_train.sh: steady-state training-step time of full fine-tuning.

  bench_train_peer.py make OUTDIR
      torchvision mobilenet_v2() and resnet18() with torch.manual_seed(0) weights, as
      OUTDIR/mobilenet_v2.safetensors and OUTDIR/resnet18.safetensors (torchvision names,
      no num_batches_tracked: what mmp-train-step --backbone reads).
  bench_train_peer.py cnn ARCH WEIGHTS BN THREADS BATCH SIZE CLASSES WARMUP STEPS
      ARCH mobilenet_v2|resnet18 loaded from WEIGHTS (strict), classifier / fc resized to
      CLASSES (mobilenet_v2 keeps its Dropout(0.2)); BN train (model.train(): batch
      statistics) or frozen (model.train() with every BatchNorm2d in eval mode, affine
      trained: mmp-train-step --freeze-bn); AdamW(lr 1e-3, wd 1e-2) over every parameter;
      one fixed random batch [BATCH,3,SIZE,SIZE] (NCHW, torch's default layout) and
      labels: no data loading. WARMUP steps, then STEPS timed steps.
  bench_train_peer.py bert MODEL_DIR MODE THREADS BATCH TOKENS WARMUP STEPS
      transformers BertModel from MODEL_DIR (all-MiniLM-L6-v2), mean pooling over the
      attention mask, nn.Linear(hidden, 2), CE; MODE full (every parameter) or lora (peft
      0.4 LoraConfig(r=8, lora_alpha=8, target_modules=["query","value"], dropout 0):
      adapters + the linear head trained); AdamW(lr 1e-4 full / 1e-3 lora, wd 1e-2); one
      fixed batch of BATCH sequences of TOKENS ids ([CLS] ... [SEP], random word pieces),
      attention mask all ones. model.train() (dropout as configured: 0.1).
  bench_train_peer.py text OUT.mmp VOCAB N TOKENS
      N text records (field text, labels 0/1, ids t0..) of TOKENS-2 whole words of VOCAB
      (lowercase a-z entries, no ## pieces), so each tokenizes to exactly TOKENS word
      pieces with [CLS] and [SEP]: the mmp side's input (mmp-train-step --head transformer).
Prints "step_s cpu_s_per_step" (mean over the timed steps: wall and process CPU).
"""
import json, os, struct, sys, time
import numpy as np
import torch


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


def load_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    d = b[8 + n:]
    return {k: torch.from_numpy(np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]], dtype=np.float32).reshape(v["shape"]).copy())
            for k, v in h.items() if k != "__metadata__"}


def timed(step, warmup, steps):
    for _ in range(warmup):
        step()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps


def cnn(arch, weights, bn, threads, batch, size, classes, warmup, steps):
    import torchvision
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = getattr(torchvision.models, arch)()
    m.load_state_dict(load_st(weights), strict=False)  # no num_batches_tracked in the file
    if arch == "mobilenet_v2":
        m.classifier[1] = torch.nn.Linear(m.classifier[1].in_features, classes)
    else:
        m.fc = torch.nn.Linear(m.fc.in_features, classes)
    m.train()
    if bn == "frozen":
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.eval()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=1e-2)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, classes, (batch,))

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    return timed(step, warmup, steps)


def bert(model_dir, mode, threads, batch, tokens, warmup, steps):
    from transformers import BertModel
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    enc = BertModel.from_pretrained(model_dir, add_pooling_layer=False)
    if mode == "lora":
        from peft import LoraConfig, get_peft_model
        enc = get_peft_model(enc, LoraConfig(r=8, lora_alpha=8, target_modules=["query", "value"], lora_dropout=0.0, bias="none"))
    head = torch.nn.Linear(enc.config.hidden_size, 2)
    params = [p for p in list(enc.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4 if mode == "full" else 1e-3, weight_decay=1e-2)
    enc.train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, enc.config.vocab_size, (batch, tokens), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones(batch, tokens, dtype=torch.long)
    y = torch.randint(0, 2, (batch,), generator=g)

    def step():
        opt.zero_grad()
        h = enc(input_ids=ids, attention_mask=mask).last_hidden_state
        mf = mask.unsqueeze(-1).float()
        pooled = (h * mf).sum(1) / mf.sum(1).clamp(min=1e-9)
        torch.nn.functional.cross_entropy(head(pooled), y).backward()
        opt.step()
    return timed(step, warmup, steps)


def main():
    a = sys.argv[1:]
    if a and a[0] == "make":
        import torchvision
        torch.manual_seed(0)
        for name in ("mobilenet_v2", "resnet18"):
            m = getattr(torchvision.models, name)()
            write_st(os.path.join(a[1], name + ".safetensors"),
                     {k: v for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")})
        return
    if a and a[0] == "text" and len(a) == 5:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats", "python"))
        import random, re, mmp_stream
        words = [w.strip() for w in open(a[2], encoding="utf-8")]
        words = [w for w in words if re.fullmatch(r"[a-z]{3,}", w)]
        rng = random.Random(0)
        with mmp_stream.Writer(a[1], {}, classes=["a", "b"], meta={"provenance": "bench_train text"}) as w:
            for i in range(int(a[3])):
                w.write({}, id="t%d" % i, label=i % 2, text=" ".join(rng.choice(words) for _ in range(int(a[4]) - 2)))
        return
    if a and a[0] == "cnn" and len(a) == 10:
        r = cnn(a[1], a[2], a[3], *map(int, a[4:]))
    elif a and a[0] == "bert" and len(a) == 8:
        r = bert(a[1], a[2], *map(int, a[3:]))
    else:
        sys.exit(__doc__)
    print("%.6f %.6f" % r)


if __name__ == "__main__":
    main()
