/* train/vqa_cmd.h: mmp-train-step --head vqa|vqa-pooled and mmp-eval on
 * their checkpoints (docs/vqa.md).
 *
 * Records: the image tokens in --feature (default "embedding": a 2-D float
 * tensor [N, C], mmp-embed --layer BLOCK:tokens or tokens), the question in
 * the record's "text", the annotated answers in the string list "answers"
 * (repeats kept: 10 per question in VQA v2, one for one-answer sets), the
 * question type in "qtype" (optional). The question's tokens are the last
 * hidden states of the text tower --backbone (a BERT-family model folder:
 * WordPiece tokenization with [CLS] and [SEP], --max-length): frozen
 * (--text-unfreeze head) computed once per distinct question; with
 * --text-unfreeze lora (PEFT LoRA adapters, --lora-*) or all (every weight)
 * computed in every step with the tower's training forward, the fusion
 * model's gradient of its question-token input taken back through it, and
 * the tower's trained tensors updated by the same optimizer.
 *
 * The answer vocabulary: the K (--answers) answers annotated most often in
 * the training stream (ties: byte order), in that order; the rest are
 * counted and reported. Targets: several answers per question: soft scores
 * min(count / 3, 1) with BCE; one answer: cross-entropy, and a training
 * question whose answer is outside the vocabulary is skipped (counted).
 * Records with no image tokens (no --feature tensor or 0 rows) or an empty
 * question are skipped and counted; a record without "answers" is skipped in
 * training (counted) and scored as nothing at evaluation.
 *
 * Checkpoint OUT (safetensors): the model's parameters under the names of
 * train/vqa.h, the optimizer state "optim.<param>.exp_avg" ..., and
 * __metadata__: the configuration keys (mmp_train_cfg_to_meta), "format" =
 * "mmpipe-vqa", "vqa.answers" (the vocabulary, a JSON list), "vqa.loss" (bce|ce),
 * "vqa.image_width", "vqa.image_tokens" (the grid's tokens with position
 * embeddings, else 0), "vqa.question_width", "text_model_sha256", "step",
 * "epoch", "best_metric", "best_epoch", "provenance" (of the image tokens).
 * --text-unfreeze lora|all: the tower's trained tensors as "text_tower." +
 * their name (lora: PEFT's, text_tower.base_model.model.encoder.layer.0.
 * attention.self.query.lora_A.weight; all: BertModel's,
 * text_tower.encoder.layer.0.attention.self.query.weight) with their
 * optimizer state; "text_unfreeze" and the lora_* keys in the metadata. */
#ifndef MMP_TRAIN_VQA_CMD_H
#define MMP_TRAIN_VQA_CMD_H

#include "train/train.h"

typedef struct {
    mmp_train_cfg *cfg;
    const mmp_meta *given;
    const char *in, *out, *last, *init, *resume, *dev, *log;
    int allow_mixed, threads, log_every, stop_after;
} mmp_vqa_cmd_args;

/* mmp-train-step's run for the VQA heads: exit status (dies with one line on an error). */
int mmp_vqa_cmd(const mmp_vqa_cmd_args *a);
/* 1 when path is a VQA checkpoint ("format" = "mmpipe-vqa"). */
int mmp_vqa_is_checkpoint(const char *path);
/* mmp-eval --model a VQA checkpoint: every record keeps what it has (id,
 * text, "answers", "qtype", "image_id" ...; the image tokens dropped) and
 * gets the strings "prediction" [answer] and "pred" i64 [1] (the answer's
 * index in the vocabulary); the output header's metadata "vqa.answers" is
 * the vocabulary (mmp-report reads it). VQA accuracy (overall, per question type),
 * skipped records and answers outside the vocabulary go to stderr
 * (and json). Exit status. */
int mmp_vqa_eval_cmd(const char *model, const char *in, const char *out, int level, int allow_mixed, int threads,
                     const char *json, int argc, char **argv);

/* mmp-export --peft of a --text-unfreeze lora checkpoint: the text tower's
 * adapters as a PEFT adapter folder DIR over the --backbone (tx/lora_train.h
 * mmp_tx_lora_save: adapter_config.json, adapter_model.safetensors), which
 * peft.PeftModel.from_pretrained and mmp-embed-text --adapter load. 0 or -1 (err). */
int mmp_vqa_write_peft(const char *model, const char *dir, char *err, size_t errlen);

#endif
