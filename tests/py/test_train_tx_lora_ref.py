"""mmp-train-step --head transformer --unfreeze lora against peft 0.4 + PyTorch's
numbers committed in tests/fixtures/train_tx_lora (tests/fixtures/gen_train_tx_lora.py;
numpy only, so it runs where torch is not installed): the tiny HF ViT and the
MiniLM-shaped BERT, r 2, alpha 4, from the committed --epochs 0 checkpoint
(--backbone the fixture model): every adapter and the classifier after 5 AdamW
and 5 SGD-momentum steps within 1e-5 of each tensor's largest value, every
base tensor keeping the checkpoint's bits, and mmp-eval's logits of the trained
checkpoint (base + adapters unmerged) within 1e-5 of PEFT's."""
import io
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_train_tx_ref as R  # noqa: E402  (numpy only: read_st, check, run)

from mmpipe import stream  # noqa: E402


def main():
    tmp = tempfile.mkdtemp()
    for fix in ("vit_hf", "bert"):
        d = os.path.join(R.FIX, "train_tx_lora", fix)
        rec, init = os.path.join(d, "rec.mmp"), os.path.join(d, "init.safetensors")
        ref, meta = R.read_st(os.path.join(d, "ref.safetensors"))
        fam = meta["family"]
        sd0, _ = R.read_st(init)
        base = ["mmp-train-step", "--init", init, "--backbone", os.path.join(R.FIX, "tx_train", fix), "--batch-size", 8]
        for opt, args in (("adamw", ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.01"]),
                          ("sgd", ["--optimizer", "sgd", "--lr", "0.01", "--momentum", "0.9", "--weight-decay", "0.01"])):
            out = os.path.join(tmp, fix + opt + ".safetensors")
            R.run(*base, *args, "--epochs", 5, "--out", out, rec)
            sd5, _ = R.read_st(out)
            want = {k[len(opt) + 1:]: v for k, v in ref.items() if k.startswith(opt + ".") and k != opt + ".logits"}
            worst = 0
            for k in sd0:
                if k in want:
                    worst = max(worst, R.check("%s LoRA 5 %s steps: %s" % (fam, opt, k), sd5[k], want[k], 1e-5))
                elif not np.array_equal(sd0[k], sd5[k]):
                    R.fails.append("%s LoRA %s: %s changed (frozen)" % (fam, opt, k))
            missing = set(want) - set(sd0)
            if missing or not want:
                R.fails.append("%s: tensors of the reference not in the checkpoint: %s" % (fam, sorted(missing)[:3]))
            pred = R.run("mmp-eval", "--model", out, rec).stdout
            logits = np.stack([r["tensors"]["logits"] for r in stream.load(io.BytesIO(pred))[1]])
            e = R.check("%s LoRA %s: mmp-eval's logits" % (fam, opt), logits, ref[opt + ".logits"], 1e-5)
            print("%s: %d trainable tensors after 5 %s steps within %.2g of peft's; logits %.2g" % (fam, len(want), opt, worst, e))
    if R.fails:
        for f in R.fails[:30]:
            print("FAIL:", f)
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
