"""mmp-train-step --head clip against PyTorch (skips without torch,
transformers, open_clip): a tiny random Hugging Face CLIPModel (written here,
CLIP's real vocabulary size, bpe_simple_vocab_16e6.txt.gz beside it) and the
tiny open_clip model of tests/fixtures/tx_models/clip_text_oc trained for one
step on one batch of 8 mmp-synth images (u8 16x16 records) and their
captions, with both towers and with --lock image. PyTorch normalizes the
images with the model's mean/std (ToTensor + Normalize), tokenizes the
captions with open_clip.tokenize, computes open_clip's ClipLoss on the
normalized projections and takes one torch.optim.AdamW step with open_clip's
parameter groups (no weight decay on ndim < 2, "bn", "ln", "bias",
"logit_scale"), then clamps logit_scale to [0, log 100]. The checkpoint must
load with load_state_dict(strict=True) into CLIPModel / open_clip's CLIP and
every tensor must match within 1e-5 of its largest magnitude (the key biases
within 2 lr: their gradient is rounding noise, see tests/test_clip_ft.c);
the locked tower must be bit-identical to the backbone's. --unfreeze lora (with
peft 0.4; skipped without it): from the command's --epochs 0 checkpoint, 3
SGD-momentum steps of PEFT's adapters (both towers, or the text tower's with
--lock image) and logit_scale equal the command's within 1e-5."""
import json
import math
import os
import subprocess
import sys

peers = os.environ.get("MMP_PEERS", os.path.expanduser("~/.local/share/mmpipe-peers"))
for sub in ("oc", "hf"):
    if os.path.isdir(os.path.join(peers, sub)):
        sys.path.append(os.path.join(peers, sub))
try:
    import torch
    import torch.nn.functional as F
    import transformers  # noqa: F401
    import open_clip
    from safetensors.torch import load_file, save_file
except ImportError as e:
    print("no torch/transformers/open_clip/safetensors: %s" % e)
    sys.exit(77)

import numpy as np  # noqa: E402

ROOT = os.environ.get("MMP_ROOT", ".")
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(ROOT, "formats", "python"))
import mmp_stream  # noqa: E402

FX = os.path.join(ROOT, "tests", "fixtures")
GZ = os.path.join(FX, "clip_tok", "bpe_simple_vocab_16e6.txt.gz")
N, LR, WD, CTX = 8, 1e-3, 0.1, 16
MEAN, STD = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD


def run(*a):
    p = subprocess.run([os.path.join(BUILD, a[0])] + list(a[1:]), capture_output=True, text=True)
    if p.returncode:
        print(p.stderr)
        raise SystemExit("%s failed" % a[0])
    return p.stderr


def link(src, dst):
    if not os.path.exists(dst):
        os.symlink(os.path.abspath(src), dst)


with open("s.tar", "wb") as f:
    subprocess.run([os.path.join(BUILD, "mmp-synth"), "-n", str(N), "--seed", "4"], check=True, stdout=f)
run("mmp-decode", "--size", "16", "-o", "img.mmp", "s.tar")
with mmp_stream.Reader("img.mmp") as r:
    recs = list(r)
u8 = np.stack([rec["tensors"]["image"] for rec in recs])
x = torch.tensor(u8).permute(0, 3, 1, 2).float() / 255
x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
ids = open_clip.tokenize([rec["text"] for rec in recs], context_length=CTX)

# a tiny HF CLIPModel with the real vocabulary
from transformers import CLIPConfig, CLIPModel  # noqa: E402
os.makedirs("hf", exist_ok=True)
cfg = CLIPConfig(text_config=dict(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                                  vocab_size=49408, max_position_embeddings=CTX),
                 vision_config=dict(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                                    image_size=16, patch_size=8), projection_dim=6)
torch.manual_seed(0)
hf = CLIPModel(cfg).eval()
cfg.save_pretrained("hf")
save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, "hf/model.safetensors", metadata={"format": "pt"})
link(GZ, "hf/bpe_simple_vocab_16e6.txt.gz")
os.makedirs("oc", exist_ok=True)
for f in ("open_clip_model.safetensors", "open_clip_config.json"):
    link(os.path.join(FX, "tx_models", "clip_text_oc", f), os.path.join("oc", f))
link(GZ, "oc/bpe_simple_vocab_16e6.txt.gz")


def hf_model():
    m = CLIPModel(cfg).eval()
    m.load_state_dict(load_file("hf/model.safetensors"), strict=True)
    return m, m.get_image_features, lambda t: m.get_text_features(input_ids=t), \
        lambda n: n.startswith(("vision_model.", "visual_projection"))


def oc_model():
    mc = json.load(open("oc/open_clip_config.json"))["model_cfg"]
    m = open_clip.model.CLIP(**mc).eval()
    m.load_state_dict(load_file("oc/open_clip_model.safetensors"), strict=True)
    return m, m.encode_image, m.encode_text, lambda n: n.startswith("visual.")


def exclude(n, p):
    return p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n


def torch_step(m, enc_img, enc_txt, is_image, lock):
    named = list(m.named_parameters())
    for n, p in named:
        p.requires_grad_(not (lock and is_image(n)))
    gain = [p for n, p in named if exclude(n, p) and p.requires_grad]
    rest = [p for n, p in named if not exclude(n, p) and p.requires_grad]
    opt = torch.optim.AdamW([{"params": gain, "weight_decay": 0.}, {"params": rest, "weight_decay": WD}], lr=LR)
    I = F.normalize(enc_img(x), dim=-1)
    T = F.normalize(enc_txt(ids), dim=-1)
    logits = m.logit_scale.exp() * I @ T.T
    lab = torch.arange(N)
    loss = (F.cross_entropy(logits, lab) + F.cross_entropy(logits.T, lab)) / 2
    loss.backward()
    opt.step()
    with torch.no_grad():
        m.logit_scale.clamp_(0, math.log(100))
    return loss.item()


fails = 0
for name, make, backbone in (("hf", hf_model, "hf"), ("oc", oc_model, "oc")):
    for lock in ("none", "image"):
        out = "out_%s_%s" % (name, lock)
        os.makedirs(out, exist_ok=True)
        wfile = os.path.join(out, "model.safetensors")
        run("mmp-train-step", "--head", "clip", "--loss", "contrastive", "--backbone", backbone, "--lock", lock,
            "--batch-size", str(N), "--lr", str(LR), "--weight-decay", str(WD), "-j", "1", "--out", wfile, "img.mmp")
        m, ei, et, is_image = make()
        src = {k: v.clone() for k, v in m.state_dict().items()}
        loss = torch_step(m, ei, et, is_image, lock == "image")
        got = load_file(wfile)
        m2, _, _, _ = make()
        m2.load_state_dict(got, strict=True)  # the whole state dict under the library's names
        ref = m.state_dict()
        worst = 0
        for k, v in ref.items():
            if k not in got:
                continue  # non-persistent buffers
            g = got[k]
            if not torch.is_floating_point(v):
                if not torch.equal(g, v):
                    print("%s %s: %s differs" % (name, lock, k)); fails += 1
                continue
            if lock == "image" and is_image(k):
                if not torch.equal(g.float(), src[k].float()):
                    print("%s lock image: %s changed" % (name, k)); fails += 1
                continue
            d = (g.double() - v.double()).abs()
            if "k_proj.bias" in k or "in_proj_bias" in k:
                C = v.shape[0] // 3
                kb = d[C:2 * C].max().item() if "in_proj_bias" in k else d.max().item()
                if kb > 2 * LR:
                    print("%s %s: %s key bias off by %.3g" % (name, lock, k, kb)); fails += 1
                if "in_proj_bias" in k:
                    d[C:2 * C] = 0
                else:
                    continue
            rel = d.max().item() / max(v.abs().max().item(), LR if k == "logit_scale" else 1e-30)
            worst = max(worst, rel)
            if rel > 1e-5:
                print("%s %s: %s rel error %.3g" % (name, lock, k, rel)); fails += 1
        moved = sum(not torch.equal(got[k].float(), src[k].float()) for k in got if torch.is_floating_point(src[k]))
        print("%s --lock %s: loss %.5f, %d tensors trained, worst rel error %.3g" % (name, lock, loss, moved, worst))
        if moved == 0:
            print("nothing trained"); fails += 1

# --unfreeze lora (r 2, alpha 4; HF: the default q_proj,v_proj, open_clip: c_fc,c_proj): from the command's
# --epochs 0 checkpoint (the initial lora_A, lora_B = 0), 3 SGD-momentum steps (lr 0.05, momentum 0.9,
# open_clip's parameter groups; SGD, so the gradients' sizes count, not only their signs as in Adam's
# first step) of peft 0.4's adapters + logit_scale against the command's --init --epochs 3
try:
    sys.path.append(os.path.join(peers, "peft"))
    from peft import LoraConfig, get_peft_model
except ImportError:
    print("SKIP part: peft not installed (--unfreeze lora)")
    sys.exit(1 if fails else 0)
for name, make, backbone, targets in (("hf", hf_model, "hf", None), ("oc", oc_model, "oc", "c_fc,c_proj")):
    for lock in ("none", "image"):
        out = "lora_%s_%s" % (name, lock)
        os.makedirs(out, exist_ok=True)
        init, wfile = os.path.join(out, "init.safetensors"), os.path.join(out, "model.safetensors")
        args = ["mmp-train-step", "--head", "clip", "--loss", "contrastive", "--backbone", backbone, "--lock", lock,
                "--batch-size", str(N), "--lr", "0.05", "--optimizer", "sgd", "--momentum", "0.9",
                "--weight-decay", str(WD), "-j", "1", "--unfreeze", "lora",
                "--lora-rank", "2", "--lora-alpha", "4"] + (["--lora-targets", targets] if targets else [])
        run(*args, "--epochs", "0", "--out", init, "img.mmp")
        run("mmp-train-step", "--init", init, "--epochs", "3", "--out", wfile, "img.mmp")
        sd0, got = load_file(init), load_file(wfile)
        mods = sorted({k.rsplit(".lora_", 1)[0] for k in sd0 if ".lora_A." in k})
        m, ei, et, is_image = make()
        pm = get_peft_model(m, LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0,
                                          target_modules="(" + "|".join(x.replace(".", r"\.") for x in mods) + ")"))
        with torch.no_grad():
            for mn, sub in pm.named_modules():
                if hasattr(sub, "lora_A") and "default" in sub.lora_A:
                    k = mn[len("base_model.model."):]
                    sub.lora_A["default"].weight.copy_(sd0[k + ".lora_A.weight"])
                    sub.lora_B["default"].weight.copy_(sd0[k + ".lora_B.weight"])
        m.logit_scale.requires_grad_(True)
        named = [(n[len("base_model.model."):].replace(".default.", "."), p) for n, p in pm.named_parameters() if p.requires_grad]
        gain = [p for n, p in named if exclude(n, p)]
        rest = [p for n, p in named if not exclude(n, p)]
        opt = torch.optim.SGD([{"params": gain, "weight_decay": 0.}, {"params": rest, "weight_decay": WD}], lr=0.05,
                              momentum=0.9)
        for _ in range(3):
            opt.zero_grad()
            I = F.normalize(ei(x), dim=-1)
            T = F.normalize(et(ids), dim=-1)
            logits = m.logit_scale.exp() * I @ T.T
            lab = torch.arange(N)
            loss = (F.cross_entropy(logits, lab) + F.cross_entropy(logits.T, lab)) / 2
            loss.backward()
            opt.step()
            with torch.no_grad():
                m.logit_scale.clamp_(0, math.log(100))
        worst = 0
        if (lock == "image") != (not any(is_image(k) for k in mods)) or not mods:
            print("%s lora --lock %s: adapted modules %s" % (name, lock, mods)); fails += 1
        for n, p in named:
            v = p.detach().double()
            rel = (got[n].double() - v).abs().max().item() / max(v.abs().max().item(), LR)
            worst = max(worst, rel)
            if rel > 1e-5:
                print("%s lora --lock %s: %s rel error %.3g" % (name, lock, n, rel)); fails += 1
        print("%s --unfreeze lora --lock %s: loss %.5f, %d trainable tensors (%d adapted modules), worst rel error %.3g" %
              (name, lock, loss.item(), len(named), len(mods), worst))
sys.exit(1 if fails else 0)
