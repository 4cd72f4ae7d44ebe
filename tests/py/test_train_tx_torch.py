"""mmp-train-step --head transformer against PyTorch (skips without torch and
transformers/timm, found on PYTHONPATH or in ~/.local/share/mmpipe-peers):
the tiny random models of tests/fixtures/tx_train (HF ViT, timm ViT, HF CLIP's
and open_clip's image towers) on u8 12x12 image records, HF CLIP's text tower
(tests/fixtures/tx_models/clip_text_hf, open_clip's vocabulary) and the tiny BERT (its vocab.txt from
tests/fixtures/gen_tx_train_vocab.py) on text records. From the --epochs 0 checkpoint (the same initial
classifier; it loads with strict=True into the library's module:
ViTForImageClassification, timm's VisionTransformer, CLIPModel / open_clip's
CLIP / CLIPTextModelWithProjection / BertModel plus an nn.Linear classifier) PyTorch (float64) computes
  - the loss of the first step (the CLI's --log) and mmp-eval's logits, within 1e-5;
  - the gradient of every trainable parameter (one batch of all records;
    recovered from the CLI's checkpoint after one SGD step with lr 1000):
    within 1e-4 of each tensor's largest gradient, for --unfreeze all, last:1,
    norm and head; the frozen tensors of the CLI's checkpoint are bit-identical to
    the backbone's;
  - 5 AdamW steps and 5 SGD (momentum 0.9, weight decay 0.01) steps: every
    weight within 1e-5 of each tensor's largest value."""
import glob
import json
import os
import struct
import subprocess
import sys
import tempfile

PEERS = os.path.expanduser("~/.local/share/mmpipe-peers")
for sub in ("hf", "oc"):
    if os.path.isdir(os.path.join(PEERS, sub)):
        sys.path.append(os.path.join(PEERS, sub))
try:
    import torch
    import transformers  # noqa: F401
    import timm  # noqa: F401
except ImportError as e:
    print("torch / transformers / timm not installed (%s)" % e)
    sys.exit(77)
import numpy as np  # noqa: E402

ROOT = os.environ.get("MMP_ROOT", ".")
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(ROOT, "formats", "python"))
from mmpipe import stream  # noqa: E402

FIX = os.path.join(ROOT, "tests", "fixtures", "tx_train")
fails = []


def run(*a):
    p = subprocess.run([os.path.join(BUILD, a[0])] + [str(x) for x in a[1:]], capture_output=True, text=True)
    if p.returncode:
        raise SystemExit("FAIL: %s: %s" % (" ".join(map(str, a)), p.stderr))
    return p


def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", {})
    out = {}
    for k, v in h.items():
        s, e = v["data_offsets"]
        dt = {"F32": np.float32, "F16": np.float16, "I64": np.int64}[v["dtype"]]
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=dt).reshape(v["shape"]).copy()
    return out, meta


def check(what, got, want, tol):
    scale = max(float(np.abs(want).max()), 1e-30)
    err = float(np.abs(np.asarray(got, np.float64) - want).max()) / scale
    if not err <= tol:
        fails.append("%s: relative error %.3g > %g" % (what, err, tol))
    return err


def image_stream(path, n, size, ncls, seed):
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = [i % ncls for i in range(n)]
    w = stream.Writer(path, {"image": {"dtype": "u8", "shape": [size, size, 3]}}, classes=["c%d" % k for k in range(ncls)])
    for i in range(n):
        w.write({"image": imgs[i]}, id="r%d" % i, label=labels[i])
    w.close()
    return imgs, np.array(labels)


def text_stream(path, n, ncls, seed):
    rng = np.random.default_rng(seed)
    words = "the movie was good bad great awful plot actors fine dull long short music".split()
    texts = [" ".join(rng.choice(words, rng.integers(2, 9))) for _ in range(n)]
    labels = [i % ncls for i in range(n)]
    w = stream.Writer(path, {}, classes=["c%d" % k for k in range(ncls)])
    for i in range(n):
        w.write({}, id="t%d" % i, label=labels[i], text=texts[i])
    w.close()
    return texts, np.array(labels)


# ------------------------------------------------------------ torch models


class Family:
    """model(sd) -> (module, forward(params) -> logits) in float64"""

    def __init__(self, name, backbone, text=False):
        self.name, self.backbone, self.text = name, backbone, text


def build(fam, sd, ncls):
    """the library's module holding the checkpoint sd (strict=True) and its logits function"""
    sdt = {k: torch.from_numpy(v.astype(np.float32)) if v.dtype != np.int64 else torch.from_numpy(v) for k, v in sd.items()}
    if fam.name == "vit-hf":
        from transformers import ViTConfig, ViTForImageClassification
        cfg = ViTConfig.from_pretrained(fam.backbone)
        cfg.num_labels = ncls
        m = ViTForImageClassification(cfg)
        m.load_state_dict(sdt, strict=True)
        m = m.double().eval()
        return m, lambda x: m(x).logits
    if fam.name == "vit-timm":
        from timm.models.vision_transformer import VisionTransformer
        args = dict(json.load(open(os.path.join(fam.backbone, "config.json")))["model_args"])
        args["num_classes"] = ncls
        m = VisionTransformer(**args)
        m.load_state_dict(sdt, strict=True)
        m = m.double().eval()
        return m, lambda x: m(x)
    cls = torch.nn.Linear(sdt["classifier.weight"].shape[1], ncls)
    cls.load_state_dict({"weight": sdt.pop("classifier.weight"), "bias": sdt.pop("classifier.bias")})
    if fam.name == "clip-hf":
        from transformers import CLIPConfig, CLIPModel
        m = CLIPModel(CLIPConfig.from_pretrained(fam.backbone))
        m.load_state_dict(sdt, strict=True)
        m = m.double().eval()
        mod = torch.nn.ModuleDict({"m": m, "classifier": cls.double()})
        return mod, lambda x: mod["classifier"](m.vision_model(pixel_values=x).pooler_output)
    if fam.name == "clip-openclip":
        import open_clip
        mcfg = json.load(open(os.path.join(fam.backbone, "open_clip_config.json")))["model_cfg"]
        m = open_clip.model.CLIP(**mcfg)
        for k, v in m.state_dict().items():  # buffers the file has none of (attn_mask)
            if k not in sdt and k == "attn_mask":
                sdt[k] = v
        m.load_state_dict(sdt, strict=True)
        m = m.double().eval()
        mod = torch.nn.ModuleDict({"m": m, "classifier": cls.double()})

        def fwd(x):  # the pooled output before the projection (ln_post of the class token)
            proj = m.visual.proj
            m.visual.proj = None
            try:
                return mod["classifier"](m.visual(x))
            finally:
                m.visual.proj = proj
        return mod, fwd
    if fam.name == "clip-hf-text":
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
        cfg = CLIPTextConfig.from_pretrained(fam.backbone)
        m = (CLIPTextModelWithProjection if "text_projection.weight" in sdt else CLIPTextModel)(cfg)
        if "text_model.embeddings.position_ids" not in sdt:  # a buffer transformers 4.30 saves; the file has none
            sdt["text_model.embeddings.position_ids"] = m.text_model.embeddings.position_ids.clone()
        m.load_state_dict(sdt, strict=True)
        m = m.double().eval()
        mod = torch.nn.ModuleDict({"m": m, "classifier": cls.double()})
        # the EOS token (the largest id, transformers 4.30's argmax) after the final LayerNorm
        return mod, lambda ids: mod["classifier"](
            m.text_model(input_ids=ids).last_hidden_state[torch.arange(ids.shape[0]), ids.argmax(-1)])
    from transformers import BertConfig, BertModel
    m = BertModel(BertConfig.from_pretrained(fam.backbone), add_pooling_layer="pooler.dense.weight" in sdt)
    if "embeddings.position_ids" not in sdt:  # a buffer transformers 4.30 saves; the tiny model's file has none
        sdt["embeddings.position_ids"] = m.embeddings.position_ids.clone()
    m.load_state_dict(sdt, strict=True)
    m = m.double().eval()
    mod = torch.nn.ModuleDict({"m": m, "classifier": cls.double()})

    def fwd(batch):
        ids, mask = batch
        h = m(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return mod["classifier"](pooled)
    return mod, fwd


def ckpt_name(fam, mod, name):
    """the checkpoint name of a torch parameter"""
    if fam.name in ("clip-hf", "clip-openclip", "clip-hf-text", "bert"):
        return name[len("m."):] if name.startswith("m.") else name
    return name


def inputs(fam, data, meta):
    if fam.name == "clip-hf-text":  # open_clip's tokenize: start, ids, end, zeros to the context
        from open_clip.tokenizer import SimpleTokenizer
        tok = SimpleTokenizer(os.path.join(ROOT, "tests", "fixtures", "clip_tok", "bpe_simple_vocab_16e6.txt.gz"))
        return tok(list(data), context_length=int(meta["max_length"]))
    if fam.text:
        from transformers import BertTokenizer
        tok = BertTokenizer.from_pretrained(fam.backbone)
        enc = tok(list(data), padding=True, truncation=True, max_length=int(meta["max_length"]), return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"].double()
    mean = np.array([float(v) for v in meta["input_mean"].split(",")], np.float32)
    std = np.array([float(v) for v in meta["input_std"].split(",")], np.float32)
    x = (data.astype(np.float32) / np.float32(255) - mean) / std  # as mmp_image_to_chw, in float32
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).double()


def torch_train(fam, sd, meta, data, labels, ncls, trainable, opt, steps):
    mod, fwd = build(fam, sd, ncls)
    names = {n: ckpt_name(fam, mod, n) for n, _ in mod.named_parameters()}
    params = []
    for n, p in mod.named_parameters():
        p.requires_grad_(names[n] in trainable)
        if names[n] in trainable:
            params.append(p)
    x, y = inputs(fam, data, meta), torch.from_numpy(labels)
    def zero_key_bias():
        # the key bias's exact gradient is zero (the softmax cancels q.b_k); computed, it is rounding noise
        # that AdamW would turn into +-lr steps: zero in the reference as in mmp-train-step
        for n, p in mod.named_parameters():
            if p.grad is None:
                continue
            nm = names[n]
            if nm.endswith(("attention.key.bias", "k_proj.bias", "attention.self.key.bias")):
                p.grad.zero_()
            elif nm.endswith(("attn.qkv.bias", "attn.in_proj_bias")):
                C = p.shape[0] // 3
                p.grad[C:2 * C] = 0
    if opt == "grad":
        logits = fwd(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        zero_key_bias()
        g = {names[n]: p.grad.numpy() for n, p in mod.named_parameters() if p.grad is not None}
        g[" loss"], g[" logits"] = loss.item(), logits.detach().numpy()
        return g
    o = (torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01) if opt == "adamw"
         else torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=0.01))
    for _ in range(steps):
        o.zero_grad()
        torch.nn.functional.cross_entropy(fwd(x), y).backward()
        zero_key_bias()
        o.step()
    return {names[n]: p.detach().numpy() for n, p in mod.named_parameters()}


def main():
    torch.set_num_threads(1)
    fams = [Family("vit-hf", os.path.join(FIX, "vit_hf")), Family("vit-timm", os.path.join(FIX, "timm")),
            Family("clip-hf", os.path.join(FIX, "clip_hf"))]
    fams.append(Family("bert", os.path.join(FIX, "bert"), text=True))
    try:
        import open_clip  # noqa: F401  (open_clip's image tower; its tokenizer for the CLIP text tower's ids)
        fams.append(Family("clip-openclip", os.path.join(FIX, "clip_oc")))
        # HF CLIP's text tower (real vocabulary, width 8) with open_clip's vocabulary file beside it
        ct = os.path.join(tempfile.mkdtemp(), "clip_text_hf")
        os.makedirs(ct)
        for f in ("model.safetensors", "config.json"):
            os.symlink(os.path.join(ROOT, "tests", "fixtures", "tx_models", "clip_text_hf", f), os.path.join(ct, f))
        os.symlink(os.path.join(ROOT, "tests", "fixtures", "clip_tok", "bpe_simple_vocab_16e6.txt.gz"),
                   os.path.join(ct, "bpe_simple_vocab_16e6.txt.gz"))
        fams.append(Family("clip-hf-text", ct, text=True))
    except ImportError:
        print("SKIP part: open_clip not installed (the CLIP text tower's tokenizer)")
    ncls, n = 3, 8
    tmp = tempfile.mkdtemp()
    for fam in fams:
        d = os.path.join(tmp, fam.name)
        os.makedirs(d)
        rec = os.path.join(d, "rec.mmp")
        if fam.text:
            data, labels = text_stream(rec, n, ncls, 5)
        else:
            data, labels = image_stream(rec, n, 12, ncls, 5)
        base = ["mmp-train-step", "--head", "transformer", "--backbone", fam.backbone, "--batch-size", n, "-j", 1]
        init = os.path.join(d, "init.safetensors")
        run(*base, "--epochs", 0, "--seed", 7, "--out", init, rec)
        sd0, meta = read_st(init)
        for unf in ("all", "last:1", "norm", "head"):
            out = os.path.join(d, "g_%s.safetensors" % unf.replace(":", ""))
            log = os.path.join(d, "log.jsonl")
            run(*base, "--init", init, "--unfreeze", unf, "--optimizer", "sgd", "--lr", 1000, "--weight-decay", 0,
                "--momentum", 0, "--epochs", 1, "--log", log, "--out", out, rec)
            sd1, _ = read_st(out)
            changed = {k for k in sd0 if not np.array_equal(sd0[k], sd1[k])}
            trainable = set(changed)
            if unf == "head":
                extra = changed - {"classifier.weight", "classifier.bias", "head.weight", "head.bias"}
                if extra:
                    fails.append("%s head: tower tensors changed: %s" % (fam.name, sorted(extra)[:3]))
            want = torch_train(fam, sd0, meta, data, labels, ncls,
                               {k for k in sd0 if k in changed or unf != "head" and is_trainable(fam, k, unf)}, "grad", 1)
            loss, logits = want.pop(" loss"), want.pop(" logits")
            step = [json.loads(l) for l in open(log) if '"step"' in l and '"loss"' in l][-1]
            check("%s --unfreeze %s: the loss" % (fam.name, unf), np.array([step["loss"]]), np.array([loss]), 1e-5)
            if unf == "all":  # mmp-eval's logits of the initial checkpoint
                pred = os.path.join(d, "pred.mmp")
                with open(pred, "wb") as f:
                    subprocess.run([os.path.join(BUILD, "mmp-eval"), "--model", init, rec], stdout=f, check=True,
                                   stderr=subprocess.DEVNULL)
                got = np.stack([r["tensors"]["logits"] for r in stream.load(pred)[1]])
                check("%s: mmp-eval's logits" % fam.name, got, logits, 1e-5)
            for k, g in want.items():
                got = (sd0[k].astype(np.float64) - sd1[k].astype(np.float64)) / 1000.0
                check("%s --unfreeze %s: gradient of %s" % (fam.name, unf, k), got, g, 1e-4)
            for k in sd0:
                if k not in want and not np.array_equal(sd0[k], sd1[k]):
                    fails.append("%s --unfreeze %s: %s changed without a torch gradient" % (fam.name, unf, k))
            if unf == "all":
                trainable_all = set(want)
            print("%s --unfreeze %s: %d trainable tensors match torch's gradients" % (fam.name, unf, len(want)))
        for opt, args in (("adamw", ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.01"]),
                          ("sgd", ["--optimizer", "sgd", "--lr", "0.01", "--momentum", "0.9", "--weight-decay", "0.01"])):
            out = os.path.join(d, "%s.safetensors" % opt)
            run(*base, "--init", init, *args, "--epochs", 5, "--out", out, rec)
            sd5, _ = read_st(out)
            want = torch_train(fam, sd0, meta, data, labels, ncls, trainable_all, opt, 5)
            worst = 0
            for k, w in want.items():
                worst = max(worst, check("%s 5 %s steps: %s" % (fam.name, opt, k), sd5[k], w, 1e-5))
            print("%s: 5 %s steps, worst relative error %.2g" % (fam.name, opt, worst))
    if fails:
        for f in fails[:30]:
            print("FAIL:", f)
        sys.exit(1)
    print("ok")


def is_trainable(fam, name, unf):
    """last:1: the last block and the final norm(s); norm: every LayerNorm"""
    if unf == "norm":
        return any(k in name for k in ("norm", "LayerNorm", "layrnorm", "ln_"))
    if unf != "last:1":
        return True
    last = {"vit-hf": ("vit.encoder.layer.1.", "vit.layernorm."), "vit-timm": ("blocks.1.", "norm.", "fc_norm."),
            "clip-hf": ("vision_model.encoder.layers.1.", "vision_model.post_layernorm."),
            "clip-openclip": ("visual.transformer.resblocks.1.", "visual.ln_post."),
            "clip-hf-text": ("text_model.encoder.layers.1.", "text_model.final_layer_norm."),
            "bert": ("encoder.layer.1.",)}[fam.name]
    return name.startswith(last)


if __name__ == "__main__":
    main()
