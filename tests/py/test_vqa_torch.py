"""mmp-train-step --head vqa / vqa-pooled checkpoints in PyTorch (skips without torch
and transformers, found on PYTHONPATH or in ~/.local/share/mmpipe-peers): a small
mmp-synth --mode vqa set, image tokens of the tiny MobileNetV2 fixture
(features.13:tokens), the tiny BERT fixture as the text tower; after two epochs the
checkpoint (its optim.* tensors aside; --head vqa with and without --img-layers)
loads with strict=True into VQAFusion /
VQAPooled of tests/fixtures/gen_vqa.py, transformers' BertModel and BertTokenizer give
the question tokens (last_hidden_state, [CLS] ... [SEP], the model's max_seq_length),
and PyTorch's answer (argmax of the logits, float64) is mmp-eval's "pred" and
"prediction" for every test question."""
import json
import os
import struct
import subprocess
import sys

PEERS = os.path.expanduser("~/.local/share/mmpipe-peers")
for sub in ("hf", "oc"):
    if os.path.isdir(os.path.join(PEERS, sub)):
        sys.path.append(os.path.join(PEERS, sub))
try:
    import torch
    import transformers  # noqa: F401
except ImportError as e:
    print("torch / transformers not installed (%s)" % e)
    sys.exit(77)
import numpy as np  # noqa: E402

ROOT = os.environ.get("MMP_ROOT", ".")
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(ROOT, "formats", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
from mmpipe import stream  # noqa: E402
from gen_vqa import VQAFusion, VQAPooled  # noqa: E402

BERT = os.path.join(ROOT, "tests", "fixtures", "text", "tiny_bert")
MNV2 = os.path.join(ROOT, "tests", "fixtures", "nn", "mnv2_w025.safetensors")


def sh(cmd):
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True, env=dict(os.environ, PATH=BUILD + ":" + os.environ["PATH"]))
    if p.returncode:
        raise SystemExit("FAIL: %s: %s" % (cmd, p.stderr))
    return p


def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", {})
    d = b[8 + n:]
    out = {}
    for k, v in h.items():
        dt = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}[v["dtype"]]
        a = np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]], dt).reshape(v["shape"])
        out[k] = torch.from_numpy(a.astype(np.float64 if dt[1] == "f" else np.int64))
    return out, meta


sh("mmp-synth --mode vqa --out s --train 40 --dev 4 --test 10 --answers 10 --no-progress")
for split in ("train", "test"):
    sh("mmp-decode --manifest s/%s.jsonl --no-progress | mmp-embed --model %s --layer features.13:tokens --no-progress -o %s.mmp"
       % (split, MNV2, split))

from transformers import BertConfig, BertModel, BertTokenizer  # noqa: E402
bert = BertModel(BertConfig.from_pretrained(BERT), add_pooling_layer=False)
sd, _ = read_st(os.path.join(BERT, "model.safetensors"))
sd = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in sd.items() if not k.startswith("pooler.")}
if "embeddings.position_ids" not in sd:
    sd["embeddings.position_ids"] = bert.embeddings.position_ids.clone()
bert.load_state_dict(sd, strict=True)
bert = bert.double().eval()
sbc = json.load(open(os.path.join(BERT, "sentence_bert_config.json")))
tok = BertTokenizer(os.path.join(BERT, "vocab.txt"), do_lower_case=sbc.get("do_lower_case", True))

H, R = stream.load("test.mmp")
xi, kvlens, xq, qlens = [], [], [], []
with torch.no_grad():
    for r in R:
        t = r["tensors"]["embedding"]
        xi.append(torch.from_numpy(t.astype(np.float64)))
        kvlens.append(t.shape[0])
        ids = tok(r["text"], truncation=True, max_length=sbc["max_seq_length"], return_tensors="pt")["input_ids"]
        h = bert(input_ids=ids).last_hidden_state[0]
        xq.append(h)
        qlens.append(h.shape[0])
xi, xq = torch.cat(xi), torch.cat(xq)

fails = []
for name in ("vqa", "vqa-img", "vqa-pooled"):
    head = "vqa-pooled" if name == "vqa-pooled" else "vqa"
    extra = {"vqa": "--fuse-dim 16 --heads 2 --fuse-layers 2 --hidden 24",
             "vqa-img": "--fuse-dim 16 --heads 2 --fuse-layers 2 --img-layers 2 --hidden 24",
             "vqa-pooled": "--hidden 24"}[name]
    sh("mmp-train-step --head %s --backbone %s %s --epochs 2 --batch-size 16 --no-progress -o %s.safetensors train.mmp"
       % (head, BERT, extra, name))
    sh("mmp-eval --model %s.safetensors test.mmp -o %s.pred.mmp" % (name, name))
    sd, meta = read_st(name + ".safetensors")
    sd = {k: v for k, v in sd.items() if not k.startswith("optim.")}
    answers = json.loads(meta["vqa.answers"])
    ci, cq, K = int(meta["vqa.image_width"]), int(meta["vqa.question_width"]), len(answers)
    if head == "vqa":
        m = VQAFusion(ci, cq, int(meta["fuse_dim"]), int(meta["heads"]), int(meta["fuse_layers"]),
                      int(meta["vqa.image_tokens"]), int(meta["hidden"]), K, int(meta.get("img_layers", 0)))
    else:
        m = VQAPooled(ci, cq, int(meta["hidden"]), K)
    m.load_state_dict(sd, strict=True)
    m = m.double().eval()
    with torch.no_grad():
        logits = m(xi, kvlens, xq, qlens)
    want = logits.argmax(1).tolist()
    P = stream.load(name + ".pred.mmp")[1]
    got = [int(p["tensors"]["pred"][0]) for p in P]
    gots = [p["strings"]["prediction"][0] for p in P]
    top2 = logits.topk(2, 1).values
    margin = float((top2[:, 0] - top2[:, 1]).min())
    print("%s: %d test questions, torch argmax == mmp-eval pred: %d, smallest top-2 margin %.3g"
          % (name, len(want), sum(a == b for a, b in zip(want, got)), margin))
    if got != want or gots != [answers[i] for i in want]:
        fails.append(name)
if fails:
    raise SystemExit("FAIL: %s" % fails)
print("ok")
