#!/usr/bin/env python3
"""PyTorch reference of bench/bench_text_task.sh: all-MiniLM-L6-v2 fine-tuned on the
gen_text_task.py splits (the .jsonl files).

  text_task_torch.py MODEL_DIR DATA_DIR full|lora [--epochs 6] [--lr LR] [--batch-size 32]
                     [--threads 2] [--seed 0]
transformers BertModel (+ peft 0.4 LoRA r 8, alpha 8, query+value, dropout 0 for lora) ->
mean pooling over the attention mask -> nn.Linear(384, classes); CE; AdamW(lr, wd 1e-2)
over the trainable parameters (full: every one; lora: adapters + linear), lr default 1e-4
(full) / 1e-3 (lora), constant; batch 32, seeded shuffling, model.train() (BERT's dropout
0.1); tokenized by the model's tokenizer (padding to the longest in the batch, max 128).
The last epoch's model is tested. Prints one JSON line (accuracy, dev accuracy per epoch,
times).
"""
import argparse, json, os, sys, time
import torch


def load(path):
    with open(path) as f:
        return [json.loads(l) for l in f]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model"); ap.add_argument("data"); ap.add_argument("mode", choices=["full", "lora"])
    ap.add_argument("--epochs", type=int, default=6); ap.add_argument("--lr", type=float)
    ap.add_argument("--batch-size", type=int, default=32); ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    from transformers import AutoTokenizer, BertModel
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    tok = AutoTokenizer.from_pretrained(a.model)
    enc = BertModel.from_pretrained(a.model, add_pooling_layer=False)
    if a.mode == "lora":
        from peft import LoraConfig, get_peft_model
        enc = get_peft_model(enc, LoraConfig(r=8, lora_alpha=8, target_modules=["query", "value"], lora_dropout=0.0, bias="none"))
    tr, dev, te = (load(os.path.join(a.data, s + ".jsonl")) for s in ("train", "dev", "test"))
    classes = 1 + max(r["label"] for r in tr + dev + te)
    head = torch.nn.Linear(enc.config.hidden_size, classes)
    params = [p for p in list(enc.parameters()) + list(head.parameters()) if p.requires_grad]
    lr = a.lr if a.lr else (1e-4 if a.mode == "full" else 1e-3)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)

    def logits(recs):
        b = tok([r["text"] for r in recs], padding=True, truncation=True, max_length=128, return_tensors="pt")
        h = enc(input_ids=b["input_ids"], attention_mask=b["attention_mask"], token_type_ids=b.get("token_type_ids")).last_hidden_state
        m = b["attention_mask"].unsqueeze(-1).float()
        return head((h * m).sum(1) / m.sum(1).clamp(min=1e-9))

    def accuracy(recs):
        enc.eval(); ok = 0
        with torch.no_grad():
            for i in range(0, len(recs), 128):
                c = recs[i:i + 128]
                ok += (logits(c).argmax(1) == torch.tensor([r["label"] for r in c])).sum().item()
        return ok / len(recs)

    g = torch.Generator().manual_seed(a.seed)
    epochs, t_train = [], 0.0
    for e in range(a.epochs):
        t0 = time.time()
        enc.train()
        perm = torch.randperm(len(tr), generator=g).tolist()
        tot = 0.0
        for s in range(0, len(tr), a.batch_size):
            c = [tr[i] for i in perm[s:s + a.batch_size]]
            loss = torch.nn.functional.cross_entropy(logits(c), torch.tensor([r["label"] for r in c]))
            opt.zero_grad(); loss.backward(); opt.step()
            tot += loss.item() * len(c)
        t_train += time.time() - t0
        epochs.append({"epoch": e + 1, "train_loss": round(tot / len(tr), 5), "dev_accuracy": round(accuracy(dev), 4)})
        print(json.dumps(epochs[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"mode": a.mode, "lr": lr, "accuracy": accuracy(te), "train_s": round(t_train, 1),
                      "trainable": sum(p.numel() for p in params), "epochs": epochs}))


if __name__ == "__main__":
    main()
