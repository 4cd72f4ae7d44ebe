#!/usr/bin/env python3
"""Writes randomly initialised models for the demo when no pretrained weights
are at hand (a fresh machine with no ../shared and no network). numpy only.

  random_init.py mobilenet_v2 OUT.safetensors [--seed S]
      torchvision MobileNetV2 names and shapes; convolutions Kaiming-normal
      (fan_in, ReLU gain) so activations neither vanish nor explode without
      batch-norm statistics; batch norm identity. NOT pretrained.
  random_init.py bert OUTDIR --vocab-from CAPTIONS.txt [--seed S]
      a 2-layer, 128-wide BERT (Hugging Face names) + config.json + vocab.txt
      built from the words of CAPTIONS.txt (lower-cased). NOT pretrained.
  random_init.py clip OUTDIR --vocab BPE.txt.gz [--seed S]
      a small CLIP (ViT 64-wide, patch 16, 96 px, 2 layers; text 64-wide, 2
      layers, context 77, CLIP's 49408-token vocabulary) with open_clip's names
      (open_clip_model.safetensors + open_clip_config.json) and the BPE
      vocabulary file copied beside it. NOT pretrained.
"""
import argparse, json, os, re, struct, sys
import numpy as np


def write_safetensors(path, tensors, meta):
    header, off, blobs = {"__metadata__": meta}, 0, []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dt = {np.dtype("float32"): "F32", np.dtype("int64"): "I64"}[a.dtype]
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def mobilenet_v2(rng):
    t = {}
    def conv(name, cout, cin_per_group, k, gain):
        fan_in = cin_per_group * k * k
        t[name + ".weight"] = (rng.standard_normal((cout, cin_per_group, k, k)) * gain / np.sqrt(fan_in)).astype(np.float32)
    def bn(name, c):
        t[name + ".weight"] = np.ones(c, np.float32)
        t[name + ".bias"] = np.zeros(c, np.float32)
        t[name + ".running_mean"] = np.zeros(c, np.float32)
        t[name + ".running_var"] = np.ones(c, np.float32)
        t[name + ".num_batches_tracked"] = np.zeros((), np.int64)
    relu, lin = np.sqrt(2.0), 1.0
    conv("features.0.0", 32, 3, 3, relu); bn("features.0.1", 32)
    cin, idx = 32, 1
    for tt, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            hid, p, j = cin * tt, "features.%d.conv." % idx, 0
            if tt != 1:
                conv(p + "0.0", hid, cin, 1, relu); bn(p + "0.1", hid); j = 1
            conv(p + "%d.0" % j, hid, 1, 3, relu); bn(p + "%d.1" % j, hid)
            conv(p + "%d" % (j + 1), c, hid, 1, lin); bn(p + "%d" % (j + 2), c)
            cin, idx = c, idx + 1
    conv("features.18.0", 1280, 320, 1, relu); bn("features.18.1", 1280)
    t["classifier.1.weight"] = (rng.standard_normal((1000, 1280)) * 0.01).astype(np.float32)
    t["classifier.1.bias"] = np.zeros(1000, np.float32)
    return t


def bert(rng, vocab_size, H=128, L=2, I=512, P=64):
    t = {}
    def lin(name, o, i):
        t[name + ".weight"] = (rng.standard_normal((o, i)) * 0.02).astype(np.float32)
        t[name + ".bias"] = np.zeros(o, np.float32)
    def ln(name):
        t[name + ".weight"] = np.ones(H, np.float32)
        t[name + ".bias"] = np.zeros(H, np.float32)
    t["embeddings.word_embeddings.weight"] = (rng.standard_normal((vocab_size, H)) * 0.02).astype(np.float32)
    t["embeddings.position_embeddings.weight"] = (rng.standard_normal((P, H)) * 0.02).astype(np.float32)
    t["embeddings.token_type_embeddings.weight"] = (rng.standard_normal((2, H)) * 0.02).astype(np.float32)
    ln("embeddings.LayerNorm")
    for l in range(L):
        p = "encoder.layer.%d." % l
        for q in ("query", "key", "value"):
            lin(p + "attention.self." + q, H, H)
        lin(p + "attention.output.dense", H, H); ln(p + "attention.output.LayerNorm")
        lin(p + "intermediate.dense", I, H)
        lin(p + "output.dense", H, I); ln(p + "output.LayerNorm")
    cfg = {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": H, "num_hidden_layers": L,
           "num_attention_heads": 4, "intermediate_size": I, "max_position_embeddings": P, "type_vocab_size": 2,
           "vocab_size": vocab_size, "hidden_act": "gelu", "layer_norm_eps": 1e-12}
    return t, cfg


def clip(rng, V=49408, W=64, L=2, P=16, S=96, ctx=77, E=32):
    t = {}
    def n(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)
    def ln(name, c):
        t[name + ".weight"] = np.ones(c, np.float32)
        t[name + ".bias"] = np.zeros(c, np.float32)
    def blocks(prefix):
        for l in range(L):
            p = "%s.resblocks.%d." % (prefix, l)
            ln(p + "ln_1", W)
            t[p + "attn.in_proj_weight"] = n((3 * W, W), W ** -0.5)
            t[p + "attn.in_proj_bias"] = np.zeros(3 * W, np.float32)
            t[p + "attn.out_proj.weight"] = n((W, W), (2 * L * W) ** -0.5)
            t[p + "attn.out_proj.bias"] = np.zeros(W, np.float32)
            ln(p + "ln_2", W)
            t[p + "mlp.c_fc.weight"] = n((4 * W, W), (2 * W) ** -0.5)
            t[p + "mlp.c_fc.bias"] = np.zeros(4 * W, np.float32)
            t[p + "mlp.c_proj.weight"] = n((W, 4 * W), (2 * L * W) ** -0.5)
            t[p + "mlp.c_proj.bias"] = np.zeros(W, np.float32)
    g = S // P
    t["visual.conv1.weight"] = n((W, 3, P, P), (3 * P * P) ** -0.5)
    t["visual.class_embedding"] = n((W,), W ** -0.5)
    t["visual.positional_embedding"] = n((g * g + 1, W), W ** -0.5)
    ln("visual.ln_pre", W)
    blocks("visual.transformer")
    ln("visual.ln_post", W)
    t["visual.proj"] = n((W, E), W ** -0.5)
    t["token_embedding.weight"] = n((V, W), 0.02)
    t["positional_embedding"] = n((ctx, W), 0.01)
    blocks("transformer")
    ln("ln_final", W)
    t["text_projection"] = n((W, E), W ** -0.5)
    t["logit_scale"] = np.array(np.log(1 / 0.07), np.float32)
    cfg = {"model_cfg": {"embed_dim": E, "quick_gelu": True,
                         "vision_cfg": {"image_size": S, "layers": L, "width": W, "head_width": W // 4, "patch_size": P},
                         "text_cfg": {"context_length": ctx, "vocab_size": V, "width": W, "heads": 4, "layers": L}},
           "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
                              "interpolation": "bicubic", "resize_mode": "shortest"}}
    return t, cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["mobilenet_v2", "bert", "clip"])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocab-from")
    ap.add_argument("--vocab", help="clip: CLIP's bpe_simple_vocab_16e6.txt.gz")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    note = "randomly initialised (seed %d), not pretrained" % a.seed
    if a.kind == "mobilenet_v2":
        write_safetensors(a.out, mobilenet_v2(rng), {"arch": "mobilenet_v2", "input_mean": "0.5,0.5,0.5",
                          "input_std": "0.5,0.5,0.5", "input_size": "96", "note": note})
        return
    if a.kind == "clip":
        if not a.vocab:
            sys.exit("random_init.py: clip needs --vocab bpe_simple_vocab_16e6.txt.gz")
        import shutil
        os.makedirs(a.out, exist_ok=True)
        t, cfg = clip(rng)
        write_safetensors(os.path.join(a.out, "open_clip_model.safetensors"), t, {"note": note})
        with open(os.path.join(a.out, "open_clip_config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        shutil.copyfile(a.vocab, os.path.join(a.out, "bpe_simple_vocab_16e6.txt.gz"))
        return
    if not a.vocab_from:
        sys.exit("random_init.py: bert needs --vocab-from CAPTIONS.txt")
    words = set()
    if a.vocab_from.endswith(".tar"):  # the captions (*.txt) of a WebDataset tar
        import tarfile
        with tarfile.open(a.vocab_from) as tf:
            lines = [tf.extractfile(m).read().decode("utf-8") for m in tf if m.isfile() and m.name.endswith(".txt")]
    else:
        with open(a.vocab_from, encoding="utf-8") as f:
            lines = f.readlines()
    for line in lines:
        words.update(re.findall(r"[a-z0-9]+|[^\sa-z0-9]", line.lower()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(words)
    os.makedirs(a.out, exist_ok=True)
    t, cfg = bert(rng, len(vocab))
    write_safetensors(os.path.join(a.out, "model.safetensors"), t, {"note": note})
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    with open(os.path.join(a.out, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")


if __name__ == "__main__":
    main()
