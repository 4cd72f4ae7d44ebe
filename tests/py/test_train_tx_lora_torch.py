"""mmp-train-step --head transformer --unfreeze lora against peft 0.4 + torch
(skips without torch, transformers, timm and peft, found on PYTHONPATH or in
~/.local/share/mmpipe-peers): the tiny random models of tests/fixtures/tx_train
(HF ViT, timm ViT, HF CLIP's image tower, the MiniLM-shaped tiny BERT on text
records). From the command's --epochs 0 checkpoint (the initial lora_A, lora_B
= 0 and the classifier), PyTorch (float64) wraps the library's module with
peft.get_peft_model (LoraConfig r 2, lora_alpha 4, lora_dropout 0, the same
modules), makes the classifier trainable too, and takes 5 AdamW steps (lr 1e-3,
weight decay 0.01) and 5 SGD steps (lr 0.01, momentum 0.9, weight decay 0.01)
on one batch of all records, as the command does with --init:
  - every adapter tensor and the classifier within 1e-5 of each tensor's
    largest value (lora_B starts at 0, so that is the size of its update);
    except HF CLIP's lora_B after AdamW: within 1e-4 (its gradient is within
    1.5e-6 of torch's, but Adam divides each element by its own root mean
    square, so the float32 rounding of the smallest elements, ~1e-3 of the
    largest, becomes a relative error of ~1e-4 of their step); the base
    tensors of the checkpoint the backbone's bits;
  - mmp-eval's logits of the trained checkpoint (base + adapters unmerged)
    within 1e-5 of the PEFT model's;
  - mmp-export --peft's folder loads with peft.PeftModel.from_pretrained over
    the library's model (every lora_A / lora_B value in place) and gives those
    logits again (with the checkpoint's classifier);
  - mmp-export's merged state dict loads with strict=True into the library's
    module (as --unfreeze all checkpoints do) and gives them within 1e-5."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.expanduser("~/.local/share/mmpipe-peers")
if os.path.isdir(os.path.join(PEERS, "peft")):
    sys.path.append(os.path.join(PEERS, "peft"))
import test_train_tx_torch as tt  # noqa: E402  (exits 77 without torch / transformers / timm)

try:
    import peft  # noqa: F401
    from peft import LoraConfig, PeftModel, get_peft_model
except ImportError as e:
    print("peft not installed (%s)" % e)
    sys.exit(77)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mmpipe import stream  # noqa: E402

R, ALPHA = 2, 4


def is_adapter(k):
    return ".lora_A." in k or ".lora_B." in k


def torch_path(fam, mod_name):
    """the module path in build()'s module of a checkpoint module name"""
    return mod_name if fam.name in ("vit-hf", "vit-timm") else "m." + mod_name


def main():
    torch.set_num_threads(1)
    fams = [tt.Family("vit-hf", os.path.join(tt.FIX, "vit_hf")), tt.Family("vit-timm", os.path.join(tt.FIX, "timm")),
            tt.Family("clip-hf", os.path.join(tt.FIX, "clip_hf")), tt.Family("bert", os.path.join(tt.FIX, "bert"), text=True)]
    ncls, n = 3, 8
    tmp = tempfile.mkdtemp()
    for fam in fams:
        d = os.path.join(tmp, fam.name)
        os.makedirs(d)
        rec = os.path.join(d, "rec.mmp")
        if fam.text:
            data, labels = tt.text_stream(rec, n, ncls, 5)
        else:
            data, labels = tt.image_stream(rec, n, 12, ncls, 5)
        base = ["mmp-train-step", "--head", "transformer", "--backbone", fam.backbone, "--batch-size", n, "-j", 1,
                "--unfreeze", "lora", "--lora-rank", R, "--lora-alpha", ALPHA, "--seed", 7]
        init, out = os.path.join(d, "init.safetensors"), os.path.join(d, "out.safetensors")
        tt.run(*base, "--epochs", 0, "--out", init, rec)
        sd0, meta = tt.read_st(init)
        for opt, args in (("sgd", ["--optimizer", "sgd", "--lr", "0.01", "--momentum", "0.9", "--weight-decay", "0.01"]),
                          ("adamw", ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.01"])):
            tt.run(*base, "--init", init, *args, "--epochs", 5, "--out", out, rec)
            sd5, _ = tt.read_st(out)
            logits, adapted, _ = peft_steps(fam, sd0, sd5, meta, data, labels, ncls, opt)
        check_exports(fam, d, rec, out, sd0, sd5, data, ncls, meta, logits, adapted)
    if tt.fails:
        for f in tt.fails[:30]:
            print("FAIL:", f)
        sys.exit(1)
    print("ok")


def peft_steps(fam, sd0, sd5, meta, data, labels, ncls, opt):
    """5 steps of opt with PEFT from sd0 (the command's --epochs 0 checkpoint), each trainable
    tensor compared with sd5 (the command's, or None): PEFT's logits after them, the adapted
    modules, the trained tensors by checkpoint name"""
    if True:
        adapted = sorted({k.rsplit(".lora_", 1)[0] for k in sd0 if is_adapter(k)})
        base_sd = {k: v for k, v in sd0.items() if not is_adapter(k)}
        for k in base_sd if sd5 is not None else ():
            if not k.startswith(("classifier.", "head.")) and not np.array_equal(sd0[k], sd5[k]):
                tt.fails.append("%s: base tensor %s changed" % (fam.name, k))
        # PEFT over the library's module: the same adapters, the classifier trainable
        mod, fwd = tt.build(fam, base_sd, ncls)
        regex = "(" + "|".join(torch_path(fam, m).replace(".", r"\.") for m in adapted) + ")"
        pm = get_peft_model(mod, LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=regex)).double()
        nlora = 0
        for name, sub in pm.named_modules():
            if hasattr(sub, "lora_A") and "default" in sub.lora_A:
                path = name[len("base_model.model."):]
                ck = path[2:] if path.startswith("m.") and fam.name not in ("vit-hf", "vit-timm") else path
                with torch.no_grad():
                    sub.lora_A["default"].weight.copy_(torch.from_numpy(sd0[ck + ".lora_A.weight"].astype(np.float64)))
                    sub.lora_B["default"].weight.copy_(torch.from_numpy(sd0[ck + ".lora_B.weight"].astype(np.float64)))
                nlora += 1
        if nlora != len(adapted):
            tt.fails.append("%s: PEFT adapted %d modules, the checkpoint %d" % (fam.name, nlora, len(adapted)))
        names = {}
        for pn, p in pm.named_parameters():
            ck = pn[len("base_model.model."):]
            ck = ck[2:] if ck.startswith("m.") else ck
            ck = ck.replace(".default.", ".")
            names[pn] = ck
            if ck.startswith(("classifier.", "head.")):
                p.requires_grad_(True)
        params = [p for p in pm.parameters() if p.requires_grad]
        x, y = tt.inputs(fam, data, meta), torch.from_numpy(labels)
        o = (torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01) if opt == "adamw"
             else torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=0.01))
        for _ in range(5):
            o.zero_grad()
            torch.nn.functional.cross_entropy(fwd(x), y).backward()
            o.step()
        worst = 0
        for pn, p in pm.named_parameters():
            if p.requires_grad and sd5 is not None:
                tol = 1e-4 if fam.name == "clip-hf" and opt == "adamw" and ".lora_B." in names[pn] else 1e-5
                worst = max(worst, tt.check("%s LoRA 5 %s steps: %s" % (fam.name, opt, names[pn]), sd5[names[pn]],
                                            p.detach().numpy(), tol))
        with torch.no_grad():
            logits = fwd(x).numpy()
        print("%s: %d adapters, %d trainable tensors after 5 %s steps within %.2g of peft's" %
              (fam.name, nlora, len(params), opt, worst))
        trained = {names[pn]: p.detach().numpy() for pn, p in pm.named_parameters() if p.requires_grad}
        return logits, adapted, trained


def check_exports(fam, d, rec, out, sd0, sd5, data, ncls, meta, logits, adapted):
    x = tt.inputs(fam, data, meta)
    base_sd = {k: v for k, v in sd0.items() if not is_adapter(k)}
    if True:
        # mmp-eval of the checkpoint (unmerged)
        pred = os.path.join(d, "pred.mmp")
        with open(pred, "wb") as f:
            subprocess.run([os.path.join(tt.BUILD, "mmp-eval"), "--model", out, rec], stdout=f, check=True,
                           stderr=subprocess.DEVNULL)
        got = np.stack([r["tensors"]["logits"] for r in stream.load(pred)[1]])
        print("%s: mmp-eval's logits, relative error %.2g" % (fam.name, tt.check("%s: mmp-eval's logits" % fam.name, got, logits, 1e-5)))
        # the PEFT folder over the library's model
        ad = os.path.join(d, "adapter")
        tt.run("mmp-export", "--peft", "-o", ad, out)
        sd_cls = dict(base_sd)
        for k in sd5:
            if k.startswith(("classifier.", "head.")):
                sd_cls[k] = sd5[k]
        mod2, fwd2 = tt.build(fam, sd_cls, ncls)
        inner = mod2 if fam.name in ("vit-hf", "vit-timm") else mod2["m"]
        pm2 = PeftModel.from_pretrained(inner, ad).double().eval()
        nl = 0
        for name, sub in pm2.named_modules():
            if hasattr(sub, "lora_A") and "default" in sub.lora_A:
                ck = name[len("base_model.model."):]
                for ab in ("A", "B"):
                    w = getattr(sub, "lora_" + ab)["default"].weight.detach().numpy()
                    if not np.array_equal(w.astype(np.float32), sd5[ck + ".lora_%s.weight" % ab]):
                        tt.fails.append("%s: PeftModel.from_pretrained: %s.lora_%s differs" % (fam.name, ck, ab))
                nl += 1
        if nl != len(adapted):
            tt.fails.append("%s: PeftModel.from_pretrained adapted %d modules, not %d" % (fam.name, nl, len(adapted)))
        with torch.no_grad():
            l2 = fwd2(x).numpy()
        print("%s: PeftModel.from_pretrained(DIR), relative error %.2g" %
              (fam.name, tt.check("%s: PeftModel.from_pretrained logits" % fam.name, l2, logits, 1e-5)))
        # the merged state dict, strict
        mg = os.path.join(d, "merged.safetensors")
        tt.run("mmp-export", "-o", mg, out)
        sdm, _ = tt.read_st(mg)
        mod3, fwd3 = tt.build(fam, sdm, ncls)
        with torch.no_grad():
            l3 = fwd3(x).numpy()
        print("%s: merged state dict (strict), relative error %.2g" %
              (fam.name, tt.check("%s: merged state dict logits" % fam.name, l3, logits, 1e-5)))


if __name__ == "__main__":
    main()
