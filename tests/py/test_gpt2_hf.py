"""A GPT-2 made from scratch by mmpipe (tx/gpt2.h mmp_gpt2_init + mmp_gpt2_save,
through build/tests/test_gpt2 --save DIR) loads with transformers'
GPT2LMHeadModel.from_pretrained (no missing or unexpected keys) and gives
mmpipe's logits; the LoRA adapter mmpipe saved over it (c_attn and
mlp.c_proj, fan_in_fan_out) loads with peft.PeftModel.from_pretrained and
gives mmpipe's logits with the adapters. Skips (77) without torch,
transformers and peft (looked for on sys.path or in $MMP_PEERS/{hf,peft})."""
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
    import torch
    from peft import PeftModel
    from transformers import GPT2LMHeadModel
except ImportError as e:
    print("no reference libraries (%s)" % e)
    sys.exit(77)
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
from st_io import st_read  # noqa: E402

torch.set_num_threads(2)
tmp = tempfile.mkdtemp(prefix="gpt2.", dir=os.environ.get("MMP_TMP"))
d = os.path.join(tmp, "scratch")
exe = os.path.join(BUILD, "tests", "test_gpt2")
if not os.path.exists(exe):
    print("no %s (make it first)" % exe)
    sys.exit(77)
subprocess.run([exe, "--save", d], check=True)
ref = st_read(os.path.join(d, "ref.safetensors"))
m, info = GPT2LMHeadModel.from_pretrained(d, output_loading_info=True)
m.eval()
bad = [k for k in info["missing_keys"] + info["unexpected_keys"] if not k.endswith(("attn.bias", "attn.masked_bias"))]
fails = 0
if bad or info["mismatched_keys"]:
    print("loading info:", info)
    fails += 1
ids = torch.tensor(ref["ids"].astype(np.int64))[None]
with torch.no_grad():
    lg = m(ids).logits[0].numpy()
e = np.abs(lg - ref["logits"]).max() / np.abs(ref["logits"]).max()
print("from_pretrained logits: relative error %.3g" % e)
if not e <= 1e-5:
    fails += 1
pm = PeftModel.from_pretrained(m, os.path.join(d, "lora")).eval()
with torch.no_grad():
    lg = pm(ids).logits[0].numpy()
e = np.abs(lg - ref["lora_logits"]).max() / np.abs(ref["lora_logits"]).max()
d0 = np.abs(ref["lora_logits"] - ref["logits"]).max()
print("PEFT adapter logits: relative error %.3g (the adapter moves the logits by %.3g)" % (e, d0))
if not e <= 1e-5 or not d0 > 1e-3:
    fails += 1
print("ok" if not fails else "%d failed" % fails)
sys.exit(1 if fails else 0)
