"""mmpipe's LoRA files in the reference libraries (skips without peft 0.4,
transformers and torch, looked for on sys.path or in $MMP_PEERS/{hf,peft}):
  - an adapter written by mmpipe (mmp-export --stamp-lora: PEFT's format with
    the base's SHA-256 in the metadata) loads with peft.PeftModel.from_pretrained
    over the Hugging Face model and gives the outputs of the PEFT-made adapter
    it was read from (tests/fixtures/lora/*/ref.safetensors: ViT, CLIP, CLIP's text model, BERT);
  - the merged backbone of mmp-export --merge-lora loads into the bare
    transformers model with load_state_dict(strict=True) (and from_pretrained
    with no missing or unexpected keys) and gives those outputs without PEFT."""
import os
import subprocess
import sys
import tempfile

ROOT = os.environ.get("MMP_ROOT", ".")
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
peers = os.environ.get("MMP_PEERS", os.path.expanduser("~/.local/share/mmpipe-peers"))
for sub in ("hf", "peft"):
    if os.path.isdir(os.path.join(peers, sub)):
        sys.path.append(os.path.join(peers, sub))
try:
    import numpy as np
    import peft
    import torch
    import transformers  # noqa: F401
    from peft import PeftModel
except ImportError as e:
    print("no reference libraries (%s)" % e)
    sys.exit(77)
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import gen_lora as g  # noqa: E402
from st_io import st_read  # noqa: E402

torch.set_num_threads(2)
tmp = tempfile.mkdtemp(prefix="lora.", dir=os.environ.get("MMP_TMP"))
F = os.path.join(ROOT, "tests", "fixtures")
fails = 0
print("peft", peft.__version__)


def check(what, got, want, tol=1e-5):
    global fails
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    err = np.abs(got - want).max() / np.abs(want).max()
    ok = err <= tol
    print("%-48s max rel diff %.3g%s" % (what, err, "" if ok else "  FAIL"))
    fails += not ok


def mmp(*args):
    subprocess.run([os.path.join(BUILD, "mmp-export")] + list(args), check=True)


def run(name, cls, base_dir, outputs):
    ref = st_read(os.path.join(F, "lora", name, "ref.safetensors"))
    stamped = os.path.join(tmp, name + "_stamped")
    mmp("--stamp-lora", os.path.join(F, "lora", name), "--model", base_dir, "-o", stamped)
    pm = PeftModel.from_pretrained(g.load_hf(cls, base_dir), stamped).eval()
    for key, got in outputs(pm, ref).items():
        check("%s: PeftModel over mmpipe's adapter, %s" % (name, key), got, ref[key], 1e-5)
    merged = os.path.join(tmp, name + "_merged")
    os.makedirs(merged)
    mmp("--merge-lora", os.path.join(F, "lora", name), "--model", base_dir, "-o", os.path.join(merged, "model.safetensors"))
    m = cls(cls.config_class.from_pretrained(base_dir)).eval()
    sd = {k: torch.from_numpy(v) for k, v in st_read(os.path.join(merged, "model.safetensors")).items()}
    want = set(m.state_dict().keys())
    buffers = {k for k in want - set(sd) if "position_ids" in k}  # buffers the fixture's weights never held
    for k in buffers:
        sd[k] = m.state_dict()[k]
    m.load_state_dict(sd, strict=True)
    for key, got in outputs(m, ref).items():
        check("%s: merged backbone (strict=True), %s" % (name, key), got, ref[key], 1e-4)
    # from_pretrained on the merged folder: the "pt" format metadata, every key
    import shutil
    shutil.copy(os.path.join(base_dir, "config.json"), merged)
    m2, info = cls.from_pretrained(merged, output_loading_info=True)
    bad = [k for k in info["missing_keys"] + info["unexpected_keys"] if "position_ids" not in k]
    print("%-48s missing/unexpected %s" % (name + ": from_pretrained(merged)", bad))
    global fails
    fails += bool(bad)


def vit_out(m, ref):
    with torch.no_grad():
        o = m(pixel_values=torch.from_numpy(ref["images"]))
    return {"pooled": o.last_hidden_state[:, 0].numpy(), "pooler": o.pooler_output.numpy()}


def clip_out(m, ref):
    x, msk = g.padded(ref["ids"], [int(v) for v in ref["lens"]])
    with torch.no_grad():
        return {"embed": m.get_image_features(pixel_values=torch.from_numpy(ref["images"])).numpy(),
                "text_embed": m.get_text_features(input_ids=x, attention_mask=msk).numpy()}


def bert_out(m, ref):
    lens = [int(v) for v in ref["lens"]]
    x, msk = g.padded(ref["ids"], lens)
    with torch.no_grad():
        h = m(input_ids=x, attention_mask=msk).last_hidden_state
    return {"hidden": torch.cat([h[i, :n] for i, n in enumerate(lens)]).numpy()}


def clip_text_out(m, ref):
    x, msk = g.padded(ref["ids"], [int(v) for v in ref["lens"]])
    with torch.no_grad():
        return {"text_embed": m(input_ids=x, attention_mask=msk).text_embeds.numpy()}


from transformers import BertModel, CLIPModel, CLIPTextModelWithProjection, ViTModel  # noqa: E402

run("vit", ViTModel, os.path.join(F, "tx_models", "vit_hf"), vit_out)
run("clip", CLIPModel, os.path.join(F, "tx_models", "clip_hf"), clip_out)
run("clip_text", CLIPTextModelWithProjection, os.path.join(F, "tx_models", "clip_text_hf"), clip_text_out)
run("bert", BertModel, os.path.join(F, "text", "tiny_bert"), bert_out)
sys.exit(1 if fails else 0)
