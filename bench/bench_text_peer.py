#!/usr/bin/python3
"""Peers of mmp-embed-text for bench_text.sh (all-MiniLM-L6-v2, mean pooling, L2-normalized).

usage: bench_text_peer.py torch MODEL_DIR SENTENCES THREADS
           PyTorch: sentence-transformers' SentenceTransformer.encode(batch_size=32) when
           importable, else the HF-BertModel-equivalent code of tests/fixtures/gen_text.py
           with a BERT tokenizer (transformers' BertTokenizer, else tokenizers with the
           model's tokenizer.json); torch.set_num_threads(THREADS)
       bench_text_peer.py export MODEL_DIR OUT.onnx
           torch.onnx.export (opset 14) of the same weights: transformers' BertModel when
           importable, else gen_text.bert_forward; + mean pooling + L2 normalization in the
           graph; inputs input_ids, attention_mask (int64 [batch, seq], both dynamic)
       bench_text_peer.py ort MODEL_DIR FILE.onnx SENTENCES THREADS
           ONNX Runtime: intra_op_num_threads = THREADS, inter_op_num_threads = 1,
           ORT_ENABLE_ALL; tokenization (tokenizers' Tokenizer from tokenizer.json, else
           transformers' BertTokenizerFast; padded to the longest of each batch, truncated
           at 256 tokens as sentence-transformers does) counted in the time
Every mode prints "NAME sentences/s": batches of 32 in input order, after a warm-up batch,
best of 2 passes over all sentences, model loading excluded. Folders in MMP_ST_PATH and
MMP_HF_PATH (colon-separated) are appended to sys.path first. Exit status 3 with one line
on stderr when a module the mode needs is missing."""
import json, os, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
for d in (os.environ.get("MMP_ST_PATH", "") + ":" + os.environ.get("MMP_HF_PATH", "")).split(":"):
    if d:
        sys.path.append(d)
BATCH, MAXLEN = 32, 256


def missing(what):
    print("bench_text_peer: %s not installed" % what, file=sys.stderr)
    sys.exit(3)


def best_of_2(sents, embed_batch):
    embed_batch(sents[:BATCH])  # warm-up
    dt = 1e30
    for _ in range(2):
        t0 = time.perf_counter()
        for i in range(0, len(sents), BATCH):
            embed_batch(sents[i:i + BATCH])
        dt = min(dt, time.perf_counter() - t0)
    return len(sents) / dt


def gen_text():
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "fixtures"))
    import gen_text as g
    return g


def bert_tokenizer(model):
    """encode(list of str) -> (input_ids, attention_mask) int64 numpy [B, L], name."""
    import numpy as np
    try:
        import tokenizers
        tok = tokenizers.Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
        tok.no_padding()
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        tok.enable_truncation(MAXLEN)

        def enc(batch):
            e = tok.encode_batch(batch)
            return (np.array([x.ids for x in e], dtype=np.int64), np.array([x.attention_mask for x in e], dtype=np.int64))
        return enc, "tokenizers %s" % tokenizers.__version__
    except ImportError:
        pass
    try:
        from transformers import BertTokenizerFast
    except ImportError:
        missing("a BERT tokenizer (tokenizers or transformers)")
    tok = BertTokenizerFast(os.path.join(model, "vocab.txt"), do_lower_case=True)

    def enc(batch):
        e = tok(batch, padding=True, truncation=True, max_length=MAXLEN, return_tensors="np")
        return e["input_ids"].astype(np.int64), e["attention_mask"].astype(np.int64)
    return enc, "BertTokenizerFast"


def run_torch(model, path, threads):
    try:
        import torch
    except ImportError:
        missing("torch")
    torch.set_num_threads(threads)
    sents = [l.rstrip("\n") for l in open(path)]
    try:
        from sentence_transformers import SentenceTransformer
        import sentence_transformers
        m = SentenceTransformer(model, device="cpu")
        name = "sentence-transformers-%s" % sentence_transformers.__version__
        rate = best_of_2(sents, lambda b: m.encode(b, batch_size=BATCH))
    except ImportError:
        g = gen_text()
        w = dict(g.st_read(os.path.join(model, "model.safetensors")))
        cfg = json.load(open(os.path.join(model, "config.json")))
        try:
            from transformers import BertTokenizer
            tok = BertTokenizer(os.path.join(model, "vocab.txt"), do_lower_case=True)

            def enc(b):
                e = tok(b, padding=True, truncation=True, max_length=MAXLEN, return_tensors="pt")
                return e["input_ids"], e["attention_mask"]
        except ImportError:
            enc0, _ = bert_tokenizer(model)

            def enc(b):
                ids, mask = enc0(b)
                return torch.from_numpy(ids), torch.from_numpy(mask)

        def batch(b):
            ids, mask = enc(b)
            with torch.no_grad():
                return g.l2norm(g.mean_pool(g.bert_forward(w, cfg, ids, mask), mask))
        name = "torch-reference"
        rate = best_of_2(sents, batch)
    print("%s(torch-%s) %.2f" % (name, torch.__version__, rate))


def export(model, out):
    try:
        import torch
    except ImportError:
        missing("torch")

    class Embed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            try:
                from transformers import BertModel
                self.bert = BertModel.from_pretrained(model, add_pooling_layer=False).eval()
                self.fwd = lambda ids, mask: self.bert(input_ids=ids, attention_mask=mask)[0]
            except ImportError:
                g = gen_text()
                w = dict(g.st_read(os.path.join(model, "model.safetensors")))
                cfg = json.load(open(os.path.join(model, "config.json")))
                self.fwd = lambda ids, mask: g.bert_forward(w, cfg, ids, mask)

        def forward(self, ids, mask):
            h = self.fwd(ids, mask)
            m = mask.unsqueeze(-1).to(h.dtype)
            return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), p=2, dim=1)

    e = Embed().eval()
    ids = torch.tensor([[101, 1037, 6302, 1997, 1037, 4937, 1012, 102], [101, 1037, 4937, 102, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        torch.onnx.export(e, (ids, mask), out, input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "embedding": {0: "batch"}}, opset_version=14, do_constant_folding=True)


def run_ort(model, onnx_path, path, threads):
    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))  # tokenizers' own thread pool
    try:
        import onnxruntime as ort
    except ImportError:
        missing("onnxruntime")
    enc, tname = bert_tokenizer(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    s = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    sents = [l.rstrip("\n") for l in open(path)]

    def batch(b):
        ids, mask = enc(b)
        return s.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    rate = best_of_2(sents, batch)
    print("onnxruntime-%s(%s) %.2f" % (ort.__version__, tname.replace(" ", "-"), rate))


def main():
    a = sys.argv[1:]
    if len(a) == 4 and a[0] == "torch":
        run_torch(a[1], a[2], int(a[3]))
    elif len(a) == 3 and a[0] == "export":
        export(a[1], a[2])
    elif len(a) == 5 and a[0] == "ort":
        run_ort(a[1], a[2], a[3], int(a[4]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
