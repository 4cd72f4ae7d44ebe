#!/usr/bin/env bash
# mmp-embed-text --model CLIP end to end on the tiny CLIP text towers with CLIP's
# real vocabulary (tests/fixtures/tx_models/clip_text_{hf,oc}): the vocabulary found
# beside the weights (open_clip's .gz; HF vocab.json + merges.txt made from it),
# the embeddings vs the libraries' references, --pooled/--normalize, thread and
# batch determinism (bit-identical embeddings), the prompt-ensemble records, and the
# errors (no vocabulary, --max-length over the context, options of the other
# family): one line, non-zero exit.
set -u
command -v mmp-embed-text >/dev/null || { echo "mmp-embed-text not built"; exit 77; }
F="$MMP_ROOT/tests/fixtures"
GZ="$F/clip_tok/bpe_simple_vocab_16e6.txt.gz"
source "$MMP_ROOT/tests/sh/checks.sh" # refuse
fail() { echo "FAIL: $*"; exit 1; }


# open_clip weights with the vocabulary beside them (symlinks)
mkdir -p oc hf
for f in open_clip_model.safetensors open_clip_config.json; do ln -sf "$F/tx_models/clip_text_oc/$f" oc/$f; done
ln -sf "$GZ" oc/bpe_simple_vocab_16e6.txt.gz
for f in model.safetensors config.json; do ln -sf "$F/tx_models/clip_text_hf/$f" hf/$f; done
printf 'cat\ndog\nbig bird\n' > classes.txt

mmp-embed-text --model oc --lines classes.txt > oc1.mmp || fail "open_clip"
mmp-embed-text --model oc/open_clip_model.safetensors --lines --threads 2 --batch 2 classes.txt > oc2.mmp || fail "threads 2"
mmp-embed-text --model hf --tokenizer "$GZ" --lines classes.txt > hf_gz.mmp || fail "HF with --tokenizer"
mmp-embed-text --model hf --tokenizer "$GZ" --lines --template 'a photo of a {}.' --template 'a {}' --normalize \
    classes.txt > ens.mmp || fail "ensemble"
mmp-embed-text --model oc --lines --pooled --normalize --dtype f16 classes.txt > pooled.mmp || fail "pooled"

refuse "no CLIP vocabulary beside the weights" mmp-embed-text --model "$F/tx_models/clip_text_oc" --lines classes.txt
refuse "bpe_simple_vocab_16e6.txt.gz" mmp-embed-text --model hf --lines classes.txt
refuse "--max-length 17 > the CLIP model's context of 16 tokens" mmp-embed-text --model oc --max-length 17 --lines classes.txt
refuse "--heads is for BERT models" mmp-embed-text --model oc --heads 2 --lines classes.txt
refuse "--pooled is for CLIP models" mmp-embed-text --model "$F/text/tiny_bert" --pooled --lines classes.txt
refuse "--tokenizer is for CLIP models" mmp-embed-text --model "$F/text/tiny_bert" --tokenizer "$GZ" --lines classes.txt
printf 'ok\nbad \377\n' > bad.txt
refuse "bad.txt: line 2: invalid UTF-8" mmp-embed-text --model oc --lines --template 'a {}' --template '{}!' bad.txt

[ -n "${MMP_PYTHON:-}" ] || { echo "no python with numpy/msgpack/zstandard: the CLI ran, outputs not checked"; exit 77; }
export PYTHONPATH="$MMP_ROOT/formats/python"
"$MMP_PYTHON" - "$GZ" <<'PY' || fail "making vocab.json + merges.txt"
# Hugging Face's files from open_clip's: the same vocabulary and merges (transformers' CLIP conversion)
import gzip, json, sys
merges = gzip.open(sys.argv[1]).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
vocab = [chr(c) for c in cs]
vocab += [v + "</w>" for v in vocab] + ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
json.dump({v: i for i, v in enumerate(vocab)}, open("hf/vocab.json", "w"), ensure_ascii=False)
open("hf/merges.txt", "w").write("#version: 0.2\n" + "\n".join(merges) + "\n")
PY
mmp-embed-text --model hf --lines classes.txt > hf_json.mmp || fail "HF with vocab.json beside it"

"$MMP_PYTHON" - "$F" <<'PY' || fail "outputs"
import json, struct, sys, numpy as np, mmp_stream
F = sys.argv[1]
def st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); d = f.read()
    return {k: np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]], dtype={"F32": "<f4", "I32": "<i4"}[v["dtype"]]).reshape(v["shape"])
            for k, v in h.items() if k != "__metadata__"}
def emb(fn):
    h, recs = mmp_stream.load(fn)
    return h, recs, np.stack([np.asarray(r["tensors"]["text_embedding"], dtype=np.float32) for r in recs])
# 1 vs 2 threads, batch 32 vs 2: the same bits
assert (emb("oc1.mmp")[2] == emb("oc2.mmp")[2]).all(), "threads/batch changed the embeddings"
h, recs, E = emb("ens.mmp")
assert h["classes"] == ["cat", "dog", "big bird"], h["classes"]
assert [r["id"] for r in recs] == ["cat#0", "cat#1", "dog#0", "dog#1", "big bird#0", "big bird#1"]
assert [r["label"] for r in recs] == [0, 0, 1, 1, 2, 2]
assert [r["text"] for r in recs][:2] == ["a photo of a cat.", "a cat"]
m = h["meta"]
assert json.loads(m["text.template"]) == ["a photo of a {}.", "a {}"], m["text.template"]
assert m["text.arch"] == "clip-hf-text-L2-C8" and m["text.pooling"] == "eos" and m["text.output"] == "projection", m
assert m["text.tokenizer"] == "clip-bpe:vocab=49408:source=bpe_simple_vocab_16e6.txt.gz", m["text.tokenizer"]
assert m["text_provenance"] == "clip-hf-text-L2-C8:pooling=eos:output=projection:normalize=true:max_length=77:context=77:sha256=" + m["text.weights_sha256"]
assert np.abs(np.linalg.norm(E, axis=1) - 1).max() < 1e-6
h, recs, E = emb("hf_gz.mmp")
_, _, J = emb("hf_json.mmp")
hj = mmp_stream.load("hf_json.mmp")[0]["meta"]
assert (E == J).all() and hj["text.tokenizer"] == "clip-bpe:vocab=49408:source=vocab.json+merges.txt", hj["text.tokenizer"]
assert E.shape == (3, 12) and h["meta"]["text.normalize"] == "false"
h, recs, P = emb("pooled.mmp")
assert P.shape == (3, 8) and h["schema"]["text_embedding"]["dtype"] == "f16"
assert h["meta"]["text_provenance"].startswith("clip-openclip-text-L1-C8:pooling=eos:output=pooled:normalize=true:max_length=16:context=16:sha256=")
# the references: the fixture's texts through mmp-embed-text --lines (one line each; the text with a newline left out)
for fam, d in (("hf", "clip_text_hf"), ("oc", "clip_text_oc")):
    texts = [bytes.fromhex(l.strip()).decode() for l in open(F + "/tx_models/%s/texts.txt" % d)]
    keep = [i for i, t in enumerate(texts) if "\n" not in t and "\r" not in t]
    open("ref_%s.txt" % fam, "w", encoding="utf-8").write("".join(texts[i] + "\n" for i in keep))
    json.dump(keep, open("keep_%s.json" % fam, "w"))
PY
mmp-embed-text --model hf --lines ref_hf.txt > ref_hf.mmp || fail "HF reference texts"
mmp-embed-text --model oc --lines ref_oc.txt > ref_oc.mmp || fail "open_clip reference texts"
"$MMP_PYTHON" - "$F" <<'PY' || fail "vs references"
import json, struct, sys, numpy as np, mmp_stream
F = sys.argv[1]
def st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); d = f.read()
    return {k: np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]], dtype={"F32": "<f4", "I32": "<i4"}[v["dtype"]]).reshape(v["shape"])
            for k, v in h.items() if k != "__metadata__"}
for fam, d in (("hf", "clip_text_hf"), ("oc", "clip_text_oc")):
    ref = st(F + "/tx_models/%s/ref.safetensors" % d)["text_embed"][json.load(open("keep_%s.json" % fam))]
    E = np.stack([np.asarray(r["tensors"]["text_embedding"], dtype=np.float32) for r in mmp_stream.load("ref_%s.mmp" % fam)[1]])
    rel = (np.abs(E - ref).max(axis=1) / np.abs(ref).max(axis=1)).max()
    print("%s: %d texts, max rel err %.3g" % (d, len(E), rel))
    assert rel < 1e-4, rel
PY
echo "ok"
