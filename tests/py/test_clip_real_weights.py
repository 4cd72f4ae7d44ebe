"""mmpipe against transformers on a REAL CLIP checkpoint, where one is at hand
(skips otherwise: no pretrained CLIP is reachable from the build machines).

The model folder: $MMP_CLIP_MODEL, else models/clip-vit-base-patch32 (what
scripts/fetch-clip.sh writes: model.safetensors, config.json, vocab.json,
merges.txt, preprocessor_config.json). The photos of tests/fixtures/image/clip/
go through `mmp-decode --size S --interp bicubic --crop-round hf | mmp-embed`
and through CLIPImageProcessor + CLIPModel.get_image_features; a few captions
through `mmp-embed-text --lines` and CLIPTokenizerFast + get_text_features.
Embeddings within 1e-4 of the largest reference magnitude, and the zero-shot
logits of mmp-eval against logit_scale.exp() * cosine. transformers 4.30.2 on
sys.path or in $MMP_PEERS/hf."""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.environ.get("MMP_ROOT", ".")
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
model = os.environ.get("MMP_CLIP_MODEL", os.path.join(ROOT, "models", "clip-vit-base-patch32"))
if not os.path.isfile(os.path.join(model, "model.safetensors")):
    print("no real CLIP checkpoint at %s (scripts/fetch-clip.sh, or MMP_CLIP_MODEL=DIR)" % model)
    sys.exit(77)
peers = os.environ.get("MMP_PEERS", os.path.expanduser("~/.local/share/mmpipe-peers"))
if os.path.isdir(os.path.join(peers, "hf")):
    sys.path.append(os.path.join(peers, "hf"))
try:
    import numpy as np
    import torch
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizerFast
except ImportError as e:
    print("no reference libraries (%s)" % e)
    sys.exit(77)

tmp = tempfile.mkdtemp(prefix="clipreal.", dir=os.environ.get("MMP_TMP"))
imgdir = os.path.join(ROOT, "tests", "fixtures", "image", "clip")
files = sorted(f for f in os.listdir(imgdir) if f.endswith((".jpg", ".png")))
captions = ["a photo of a cat", "a diagram of a neural network", "two dogs playing in the snow",
            "Caf\u00e9 au lait and croissants", "a red square on a white background"]
m = CLIPModel.from_pretrained(model).eval()
size = CLIPImageProcessor.from_pretrained(model).crop_size["height"]


def run(cmd):
    subprocess.run(cmd, shell=True, check=True, cwd=tmp, env=dict(os.environ, PATH=BUILD + ":" + os.environ["PATH"]))


def npz(path):
    run("mmp-cat --npz %s.npz %s" % (path, path))
    return np.load(os.path.join(tmp, path + ".npz"))


def close(name, got, want):
    err = float(np.abs(got - want).max() / np.abs(want).max())
    print("%s: max rel err %.2e" % (name, err))
    return err <= 1e-4


with open(os.path.join(tmp, "imgs.csv"), "w") as f:
    f.write("path,label\n" + "".join("%s,%d\n" % (os.path.join(imgdir, x), i % len(captions)) for i, x in enumerate(files)))
with open(os.path.join(tmp, "captions.txt"), "w") as f:
    f.write("\n".join(captions) + "\n")
run("mmp-decode --size %d --interp bicubic --crop-round hf imgs.csv | mmp-embed --model %s > img.mmp" % (size, model))
run("mmp-embed-text --model %s --lines captions.txt > txt.mmp" % model)
run("mmp-eval --model %s --prompts txt.mmp img.mmp > zs.mmp" % model)
proc = CLIPImageProcessor.from_pretrained(model)
tok = CLIPTokenizerFast.from_pretrained(model)
with torch.no_grad():
    x = proc(images=[Image.open(os.path.join(imgdir, f)).convert("RGB") for f in files], return_tensors="pt")
    ie = m.get_image_features(**x).numpy()
    te = m.get_text_features(**tok(captions, padding=True, return_tensors="pt")).numpy()
    scale = float(m.logit_scale.exp())
ok = close("image embeddings", npz("img.mmp")["embedding"], ie)
ok &= close("text embeddings", npz("txt.mmp")["text_embedding"], te)
a = ie / np.linalg.norm(ie, axis=1, keepdims=True)
b = te / np.linalg.norm(te, axis=1, keepdims=True)
ok &= close("zero-shot logits", npz("zs.mmp")["logits"], scale * a @ b.T)
print(json.dumps({"model": model, "images": len(files), "captions": len(captions)}))
sys.exit(0 if ok else 1)
