#!/usr/bin/env python3
"""The Hugging Face side of bench/bench_generate.sh.

  bench_generate_peer.py make DIR        a random GPT-2 small (GPT2Config(): 12 layers,
                                         768 wide, 12 heads, 1024 positions, vocab 50257;
                                         torch.manual_seed(0), HF's init) as
                                         DIR/model.safetensors + config.json, and a
                                         synthetic byte-level BPE tokenizer of 50257
                                         tokens (vocab.json + merges.txt: GPT-2's 256
                                         byte tokens, 50000 merges of earlier tokens
                                         drawn from a seeded generator, <|endoftext|>
                                         50256) -- no pretrained GPT-2 is reachable here;
                                         DIR/prompts.txt: 16 prompts
  bench_generate_peer.py run DIR THREADS BATCH BEAMS NEW
                                         transformers' generate() on the first BATCH
                                         prompts (left-padded, attention_mask), greedy
                                         (BEAMS 1) or beam search, exactly NEW new tokens
                                         (min_new_tokens = max_new_tokens), use_cache=True,
                                         torch.set_num_threads(THREADS); a warm-up call (one
                                         prompt, one token), then REPS timed calls (default 1;
                                         Debian's torch uses a generic BLAS: slow), the best; prints
                                         "tokens SECONDS TOKENS_PER_S" (tokens = BATCH * NEW)
                                         and the generated ids of the first prompt."""
import json
import os
import sys
import time

import torch

PROMPTS = [  # short: the synthetic tokenizer's merges are random, about one token a character
    "a photo", "the cat", "In the", "Once", "The fox", "what is", "A man on", "three", "Speed", "hello",
    "Today", "a square", "Describe", "It was", "mmpipe", "one two",
]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def make(d):
    from safetensors.torch import save_file
    from transformers import GPT2Config, GPT2LMHeadModel

    os.makedirs(d, exist_ok=True)
    toks = list(bytes_to_unicode().values())
    seen = set(toks)
    merges = []
    st = 12345
    def rnd(n):
        nonlocal st
        st = (st * 6364136223846793005 + 1442695040888963407) & ((1 << 64) - 1)
        return (st >> 33) % n
    # merges of earlier tokens, biased to short ones (as real merges are)
    while len(toks) < 50256:
        a = toks[rnd(min(len(toks), 256 + len(merges) // 4 + 1))]
        b = toks[rnd(min(len(toks), 256 + len(merges) // 8 + 1))]
        if a.startswith("\u0120") is False and rnd(3) == 0:
            a = "\u0120" + a if "\u0120" + a in seen else a
        t = a + b
        if t in seen or len(t) > 12:
            continue
        seen.add(t)
        toks.append(t)
        merges.append(a + " " + b)
    toks.append("<|endoftext|>")
    with open(os.path.join(d, "vocab.json"), "w") as f:
        json.dump({t: i for i, t in enumerate(toks)}, f, ensure_ascii=False)
    with open(os.path.join(d, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    torch.manual_seed(0)
    cfg = GPT2Config()
    m = GPT2LMHeadModel(cfg)
    sd = {k: v.contiguous() for k, v in m.state_dict().items()
          if not k.endswith((".attn.bias", ".attn.masked_bias")) and k != "lm_head.weight"}
    save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    cfg.to_json_file(os.path.join(d, "config.json"))
    with open(os.path.join(d, "prompts.txt"), "w") as f:
        f.write("\n".join(PROMPTS) + "\n")


def run(d, threads, batch, beams, new):
    from transformers import GPT2LMHeadModel, GPT2Tokenizer

    torch.set_num_threads(threads)
    tok = GPT2Tokenizer(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"))
    m = GPT2LMHeadModel.from_pretrained(d)
    m.eval()
    ids = [tok(p)["input_ids"] for p in PROMPTS[:batch]]
    L = max(len(x) for x in ids)
    eos = m.config.eos_token_id
    x = torch.tensor([[eos] * (L - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (L - len(i)) + [1] * len(i) for i in ids])
    kw = dict(attention_mask=mask, max_new_tokens=new, min_new_tokens=new, num_beams=beams, do_sample=False,
              use_cache=True, pad_token_id=eos, eos_token_id=eos)
    best = None
    with torch.no_grad():
        m.generate(x[:1], **dict(kw, attention_mask=mask[:1], max_new_tokens=1, min_new_tokens=1))  # warm-up
        for _ in range(int(os.environ.get("REPS", "1"))):
            t0 = time.perf_counter()
            out = m.generate(x, **kw)
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
    n = batch * new
    print("tokens %d %.4f %.2f" % (n, best, n / best))
    print("ids " + " ".join(str(t) for t in out[0, L:].tolist()))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        run(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
