"""mmp-embed-text --model CLIP against the live libraries: the committed tiny
text towers with CLIP's vocabulary (tests/fixtures/tx_models/clip_text_hf,
clip_text_oc) loaded into transformers' CLIPTextModelWithProjection and
open_clip's CLIP, fresh texts (seeded random strings over many Unicode
ranges, caption-like lines, long lines truncated at the context) tokenized
by open_clip's tokenize(); the program's projected and --pooled outputs must
be within 1e-4 (relative to each vector's largest magnitude) of
get_text_features / encode_text and the pooled outputs.
Skips (77) when torch / transformers / open_clip are not importable (looked for
on sys.path and in $MMP_PEERS/{oc,hf}, default ~/.local/share/mmpipe-peers)."""
import json
import os
import random
import subprocess
import sys
import tempfile

ROOT = os.environ.get("MMP_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
peers = os.environ.get("MMP_PEERS", os.path.expanduser("~/.local/share/mmpipe-peers"))
sys.path[:0] = [os.path.join(peers, "oc"), os.path.join(peers, "hf")]
try:
    import numpy as np
    import open_clip
    import torch
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection
except Exception as e:  # noqa: BLE001
    print("SKIP: torch/transformers/open_clip not importable (%s)" % e)
    sys.exit(77)
EXE = os.path.join(BUILD, "mmp-embed-text")
if not os.access(EXE, os.X_OK):
    print("SKIP: %s not built" % EXE)
    sys.exit(77)
sys.path[:0] = [os.path.join(ROOT, "tests", "fixtures"), os.path.join(ROOT, "formats", "python")]
import gen_clip_tok  # noqa: E402
import mmp_stream  # noqa: E402
from st_io import st_read  # noqa: E402

FX = os.path.join(ROOT, "tests", "fixtures")
GZ = os.path.join(FX, "clip_tok", "bpe_simple_vocab_16e6.txt.gz")
torch.set_num_threads(1)


def texts():
    out = [t for t in gen_clip_tok.random_cases(120, seed=777) if not any(c in t for c in "\n\r\0")]
    rng = random.Random(11)
    words = "a photo of the cat dog on red blue car in with and is A THE Dog's it's caf\u00e9 na\u00efve 3 42 & &amp; !".split()
    out += [" ".join(rng.choice(words) for _ in range(rng.randint(1, 90))) for _ in range(60)]
    return out


def hf_model(d):
    m = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(d)).eval()
    sd = {k: torch.from_numpy(v.astype(np.float32)) for k, v in st_read(os.path.join(d, "model.safetensors")).items()}
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
    ctx = m.config.max_position_embeddings

    def run(ids):
        o = m(ids)
        return o.text_embeds, m.text_model(ids).pooler_output
    return run, ctx


def oc_model(d):
    cfg = json.load(open(os.path.join(d, "open_clip_config.json")))["model_cfg"]
    m = open_clip.model.CLIP(**cfg).eval()
    sd = {k: torch.from_numpy(v.astype(np.float32))
          for k, v in st_read(os.path.join(d, "open_clip_model.safetensors")).items()}
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert not unexpected and set(missing) <= {"attn_mask"}, (missing, unexpected)

    def run(ids):
        e = m.encode_text(ids)
        tp = m.text_projection
        m.text_projection = None
        p = m.encode_text(ids)
        m.text_projection = tp
        return e, p
    return run, cfg["text_cfg"]["context_length"]


def embed(d, lines_path, tmp, *opts):
    out = os.path.join(tmp, "out.mmp")
    subprocess.run([EXE, "--model", d, "--tokenizer", GZ, "--lines", "--batch", "7", "--threads", "2", *opts,
                    lines_path, "-o", out], check=True)
    h, recs = mmp_stream.load(out)
    return np.stack([np.asarray(r["tensors"]["text_embedding"], dtype=np.float32) for r in recs])


def rel_err(got, want):
    return float((np.abs(got - want).max(axis=1) / np.maximum(np.abs(want).max(axis=1), 1e-30)).max())


def main():
    T = texts()
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        lp = os.path.join(tmp, "lines.txt")
        with open(lp, "w", encoding="utf-8", newline="\n") as f:
            f.write("".join(t + "\n" for t in T))
        for name, load in (("clip_text_hf", hf_model), ("clip_text_oc", oc_model)):
            d = os.path.join(FX, "tx_models", name)
            run, ctx = load(d)
            with torch.no_grad():
                we, wp = (x.numpy() for x in run(open_clip.tokenize(T, context_length=ctx)))
            ge, gp = embed(d, lp, tmp), embed(d, lp, tmp, "--pooled")
            for what, g, w in (("embed", ge, we), ("pooled", gp, wp)):
                e = rel_err(g, w)
                print("%s %s: %d texts, max rel err %.3g" % (name, what, len(T), e))
                if not e <= 1e-4:
                    failures += 1
    sys.exit(1 if failures else 0)


main()
