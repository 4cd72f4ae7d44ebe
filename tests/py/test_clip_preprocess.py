"""mmp-decode's CLIP / ViT recipes against the libraries themselves, live:
  --size S --interp bicubic                  == open_clip 2.24 preprocess (u8 stage)
  --size S --interp bicubic --crop-round hf  == transformers 4.30.2 CLIPImageProcessor
                                                (do_rescale=False, do_normalize=False)
  --size S --interp bicubic --crop-pct P     == timm 0.9.16 transforms_imagenet_eval(S, P, "bicubic")
pixel for pixel, on the committed images of tests/fixtures/image/clip and
src_*.png and on the shared photos (when present), at S = 224 and smaller.
Then mmp-augment --normalize with CLIP's mean/std against open_clip's
float tensor (ToTensor + Normalize: exact) and CLIPImageProcessor's
(numpy float math), both exact.
The libraries are looked for on the path and in $MMP_PEERS/{oc,hf}
(default ~/.local/share/mmpipe-peers, scripts/setup.sh --bench); skips (77)
without them."""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.environ.get("MMP_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
peers = os.environ.get("MMP_PEERS", os.path.expanduser("~/.local/share/mmpipe-peers"))
for sub in ("hf", "oc"):
    if os.path.isdir(os.path.join(peers, sub)):
        sys.path.insert(0, os.path.join(peers, sub))
sys.path.insert(0, os.path.join(ROOT, "formats", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
try:
    import warnings
    warnings.filterwarnings("ignore")
    import torch  # noqa: F401
    import open_clip  # noqa: F401
    import timm  # noqa: F401
    import transformers
    from PIL import Image
except ImportError as e:
    print(f"SKIP: {e} (open_clip, timm, transformers: scripts/setup.sh --bench)")
    sys.exit(77)
import mmp_stream  # noqa: E402
from clip_refs import clip_refs  # noqa: E402

DECODE, AUGMENT = os.path.join(BUILD, "mmp-decode"), os.path.join(BUILD, "mmp-augment")
for exe in (DECODE, AUGMENT):
    if not os.access(exe, os.X_OK):
        print(f"SKIP: {exe} not built")
        sys.exit(77)
print(f"transformers {transformers.__version__}, timm {timm.__version__}, Pillow {Image.__version__}")

FX = os.path.join(ROOT, "tests", "fixtures", "image")
tmp = tempfile.mkdtemp(prefix="mmp_clip_")
root = os.path.join(tmp, "in")
os.makedirs(os.path.join(root, "x"))
files = [os.path.join(FX, "clip", f) for f in sorted(os.listdir(os.path.join(FX, "clip")))]
files += [os.path.join(FX, f"src_{k}.png") for k in "abcd"]
shared = os.path.join(os.environ.get("MMP_SHARED", os.path.join(ROOT, "..", "shared")), "models", "samples")
if os.path.isdir(shared):
    files += [os.path.join(shared, f) for f in sorted(os.listdir(shared)) if f.endswith(".jpg")]
else:
    print(f"no shared photos at {shared}: committed images only")
for f in files:
    shutil.copy(f, os.path.join(root, "x", os.path.basename(f)))

failures = 0


def decode(args):
    out = subprocess.run([DECODE, root, "-j", "2"] + args, stdout=subprocess.PIPE, check=True).stdout
    path = os.path.join(tmp, "o.mmp")
    with open(path, "wb") as f:
        f.write(out)
    h, recs = mmp_stream.load(path)
    return path, {os.path.basename(r["id"]): r["tensors"]["image"] for r in recs}


counts = {}
for S in (224, 64, 37):
    refs = {}
    for f in files:
        with Image.open(f) as im:
            refs[os.path.basename(f)] = clip_refs(im.convert("RGB"), S, timm_pcts=(0.875, 0.9))
    runs = {"openclip": ["--interp", "bicubic"], "hf": ["--interp", "bicubic", "--crop-round", "hf"],
            "timm0.875": ["--interp", "bicubic", "--crop-pct", "0.875"],
            "timm0.9": ["--interp", "bicubic", "--crop-pct", "0.9"]}
    for name, args in runs.items():
        _, got = decode(["--size", str(S)] + args)
        for fn, r in refs.items():
            want = r[name]
            if fn not in got:
                print(f"FAIL {name} S={S} {fn}: not decoded")
                failures += 1
                continue
            d = np.abs(got[fn].astype(int) - want.astype(int))
            if got[fn].shape != want.shape or d.max() != 0:
                print(f"FAIL {name} S={S} {fn}: shape {got[fn].shape} vs {want.shape}, "
                      f"max |diff| {d.max() if d.size else '-'}")
                failures += 1
            counts[name] = counts.get(name, 0) + 1
    ndiff = sum(not np.array_equal(r["hf"], r["openclip"]) for r in refs.values())
    print(f"S={S}: {len(refs)} images; hf and open_clip crops differ on {ndiff}")
print("bit-exact u8 images:", ", ".join(f"{k} {v}" for k, v in counts.items()))

# normalized tensors at 224
MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
norm = ",".join(map(str, MEAN)) + "/" + ",".join(map(str, STD))
oc_t = open_clip.image_transform(224, is_train=False)
proc = transformers.CLIPImageProcessor()  # the defaults are openai/clip-vit-base-patch32's
for crop, ref in (("torchvision", "openclip"), ("hf", "hf")):
    path, _ = decode(["--size", "224", "--interp", "bicubic", "--crop-round", crop])
    aug = subprocess.run([AUGMENT, path, "--normalize", norm], stdout=subprocess.PIPE, check=True).stdout
    with open(os.path.join(tmp, "n.mmp"), "wb") as f:
        f.write(aug)
    _, recs = mmp_stream.load(os.path.join(tmp, "n.mmp"))
    got = {os.path.basename(r["id"]): r["tensors"]["image"] for r in recs}
    worst = 0.0
    for f in files:
        fn = os.path.basename(f)
        with Image.open(f) as im:
            im = im.convert("RGB")
            if ref == "openclip":
                want = oc_t(im).numpy()
            else:
                want = proc(images=im, return_tensors="np")["pixel_values"][0]
        if got[fn].shape != want.shape or got[fn].dtype != np.float32:
            print(f"FAIL normalize {ref} {fn}: {got[fn].dtype} {got[fn].shape} vs {want.shape}")
            failures += 1
            continue
        worst = max(worst, float(np.abs(got[fn].astype(np.float64) - want.astype(np.float64)).max()))
    limit = 0.0
    print(f"normalized vs {ref}: max |diff| {worst:.3g} (allowed {limit:g})")
    if worst > limit:
        print(f"FAIL normalized vs {ref}")
        failures += 1

shutil.rmtree(tmp)
if failures:
    print(f"{failures} failures")
    sys.exit(1)
print("ok")
