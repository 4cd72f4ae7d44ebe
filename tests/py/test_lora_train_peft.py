"""Adapters trained by mmpipe (tx/lora_train.h) in peft 0.4 (skips without
peft, transformers, timm, open_clip and torch, looked for on sys.path or in
$MMP_PEERS/{oc,hf,peft}): build/tests/test_tx_lora_train DIR saves each case
of tests/fixtures/lora_train as a PEFT adapter folder (the fixture's initial
adapters, and after 5 AdamW steps the trained ones); each loads with
peft.PeftModel.from_pretrained over the home library's model (transformers'
BertModel, ViTForImageClassification, CLIPModel; timm's VisionTransformer;
open_clip's CLIP) with every lora_A / lora_B weight in place (PEFT loads with
strict=False, so the values are compared, not trusted), the config's r,
lora_alpha, lora_dropout and target_modules as trained, and gives PEFT's
outputs of the fixture (eval mode; the dropout case is compared by weights)."""
import json
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.environ.get("MMP_ROOT", ".")
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
peers = os.environ.get("MMP_PEERS", os.path.expanduser("~/.local/share/mmpipe-peers"))
for sub in ("oc", "hf", "peft"):
    if os.path.isdir(os.path.join(peers, sub)):
        sys.path.append(os.path.join(peers, sub))
try:
    import numpy as np
    import open_clip  # noqa: F401
    import peft
    import timm  # noqa: F401
    import torch
    import transformers  # noqa: F401
    from peft import PeftModel
except ImportError as e:
    print("no reference libraries (%s)" % e)
    sys.exit(77)
prog = os.path.join(BUILD, "tests", "test_tx_lora_train")
if not os.path.exists(prog):
    print("%s not built" % prog)
    sys.exit(77)
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import gen_lora_train as g  # noqa: E402
from st_io import st_read  # noqa: E402

torch.set_num_threads(2)
tmp = tempfile.mkdtemp(prefix="lora_train.", dir=os.environ.get("MMP_TMP"))
print("peft", peft.__version__)
subprocess.run([prog, tmp], check=True, stdout=subprocess.DEVNULL)
fails = 0


def check(what, got, want, tol=1e-5):
    global fails
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)
    ok = got.shape == want.shape and err <= tol
    print("%-64s max rel diff %.3g%s" % (what, err, "" if ok else "  FAIL"))
    fails += not ok


def st_meta(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)).get("__metadata__", {})


def outputs(pm, family, bref):
    mm = pm.base_model.model
    res = {}
    with torch.no_grad():
        if "images" in bref:
            x = torch.from_numpy(bref["images"])
            res["out"] = {"vit-hf": lambda: pm(pixel_values=x).logits, "clip-hf": lambda: mm.get_image_features(pixel_values=x),
                          "vit-timm": lambda: mm(x), "clip-openclip": lambda: mm.encode_image(x)}[family]()
        if "ids" in bref:
            ids = g.split_ids(bref)
            if family == "bert":
                f = lambda t: mm(t).last_hidden_state.mean(1)  # noqa: E731
            elif family == "clip-hf":
                f = mm.get_text_features
            else:
                ctx = mm.context_length
                f = lambda t: mm.encode_text(torch.cat([t, torch.zeros(1, ctx - t.shape[1], dtype=t.dtype)], 1))  # noqa: E731
            res["text_out"] = torch.stack([f(torch.tensor([s]))[0] for s in ids])
    return res


for name in ("bert", "vit", "vit_drop", "clip", "timm", "clip_oc"):
    ref = st_read(os.path.join(ROOT, "tests", "fixtures", "lora_train", name, "ref.safetensors"))
    meta = st_meta(os.path.join(ROOT, "tests", "fixtures", "lora_train", name, "ref.safetensors"))
    base = meta["base"].split("/")[-1]
    bref = st_read(os.path.join(ROOT, "tests", "fixtures", "tx_train", base, "ref.safetensors"))
    for suffix, prefix in (("", "init."), ("_adamw", "adamw.")):
        d = os.path.join(tmp, name + suffix)
        if not os.path.isdir(d):
            continue
        cfg = json.load(open(os.path.join(d, "adapter_config.json")))
        ok = (cfg["r"] == int(meta["r"]) and float(cfg["lora_alpha"]) == float(meta["alpha"]) and
              abs(cfg["lora_dropout"] - float(meta["dropout"])) < 1e-12 and
              cfg["target_modules"] == meta["targets"].split(","))
        print("%-64s %s" % (name + suffix + ": adapter_config.json", "ok" if ok else "FAIL %s" % cfg))
        fails += not ok
        pm = PeftModel.from_pretrained(g.base_model(base), d).eval()
        got = dict(g.lora_params(pm))
        want = {k[len(prefix):]: v for k, v in ref.items() if k.startswith(prefix)}
        same = sorted(got) == sorted(want)
        print("%-64s %s" % (name + suffix + ": the adapters' names", "ok" if same else "FAIL"))
        fails += not same
        for k in sorted(want):
            if k in got:
                check(name + suffix + ": " + k.replace("base_model.model.", "")[-52:], got[k].detach().numpy(), want[k],
                      0 if not suffix else 1e-5)
        if not suffix and float(meta["dropout"]) == 0:
            for k, v in outputs(pm, meta["family"], bref).items():
                check("%s: PeftModel over mmpipe's adapter, %s" % (name, k), v.numpy(), ref[k], 1e-5)
print("FAIL" if fails else "ok")
sys.exit(1 if fails else 0)
