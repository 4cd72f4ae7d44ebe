"""ViT and CLIP at their real sizes vs the reference libraries (skips without
them): random-weight ViT-B/16 (Hugging Face ViTModel with its config; timm
vit_base_patch16_224 without a config file, so with the loader's defaults)
and CLIP ViT-B/32 (Hugging Face CLIPModel without config files; open_clip
ViT-B-32-quickgelu with open_clip_config.json), written to a temporary
directory by tests/fixtures/gen_tx_models.py's builders with the libraries'
outputs, then compared by build/tests/test_tx_models DIR (within 1e-4 of
the largest reference magnitude): image embeddings, per-layer hidden states,
another image size (HF interpolate_pos_encoding, timm dynamic_img_size, CLIP
with bicubic-resized position embeddings), text embeddings at the full
77-token context.
The libraries: transformers 4.30.2, timm 0.9.16, open_clip 2.24, found on
sys.path or in $MMP_PEERS/{oc,hf} (default ~/.local/share/mmpipe-peers)."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.environ.get("MMP_ROOT", ".")
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
peers = os.environ.get("MMP_PEERS", os.path.expanduser("~/.local/share/mmpipe-peers"))
for sub in ("hf", "oc"):
    if os.path.isdir(os.path.join(peers, sub)):
        sys.path.append(os.path.join(peers, sub))
try:
    import open_clip  # noqa: F401
    import timm  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
except ImportError as e:
    print("no reference libraries (%s)" % e)
    sys.exit(77)
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import gen_tx_models as g  # noqa: E402

torch.set_num_threads(2)
tmp = tempfile.mkdtemp(prefix="txreal.", dir=os.environ.get("MMP_TMP"))
fails = 0
try:
    models = [
        ("vit_b16_hf", lambda d: g.hf_vit(d, C=768, layers=12, heads=12, inter=3072, size=224, patch=16,
                                          size2=(288, 224), seed=21)),
        ("vit_b16_timm_nocfg", lambda d: g.timm_vit(d, C=768, layers=12, heads=12, mlp_ratio=4.0, size=224,
                                                    patch=16, size2=(160, 240), num_classes=1000, write_cfg=False,
                                                    seed=22)),
        ("clip_b32_hf_nocfg", lambda d: g.hf_clip(d, vC=768, vlayers=12, vheads=12, vinter=3072, size=224, patch=32,
                                                  tC=512, tlayers=12, theads=8, tinter=2048, vocab=49408, ctx=77,
                                                  proj=512, lens=(77, 7, 20), size2=256, seed=23)),
        ("clip_b32_oc", lambda d: g.oc_clip(d, vC=768, vlayers=12, head_width=64, vmlp=4.0, size=224, patch=32,
                                            tC=512, tlayers=12, theads=8, tmlp=4.0, vocab=49408, ctx=77,
                                            embed_dim=512, quick_gelu=True, ls=None, lens=(77, 5, 30), size2=256,
                                            seed=24)),
    ]
    for name, build in models:
        d = os.path.join(tmp, name)
        t0 = time.time()
        build(d)
        if name.endswith("_nocfg"):
            for f in ("config.json", "preprocessor_config.json", "open_clip_config.json"):
                if os.path.exists(os.path.join(d, f)):
                    os.remove(os.path.join(d, f))
        t1 = time.time()
        r = subprocess.run([os.path.join(BUILD, "tests", "test_tx_models"), d], capture_output=True, text=True)
        print("%s (reference %.1fs, mmpipe %.1fs):" % (name, t1 - t0, time.time() - t1))
        print(r.stdout.rstrip())
        if r.returncode:
            print(r.stderr.rstrip())
            print("FAIL", name)
            fails += 1
        shutil.rmtree(d)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(1 if fails else 0)
