/* train/tx_head.h: the transformer head of mmp-train-step (--head transformer
 * --backbone MODEL): a whole ViT / CLIP tower / BERT-family encoder (the
 * models mmp-embed and mmp-embed-text load) with a linear classifier on its
 * pooled output, fine-tuned end to end or in part (--unfreeze).
 *
 * The pooled feature:
 *   vit-hf         last_hidden_state[:, 0] after the final LayerNorm (what
 *                  ViTForImageClassification's classifier reads)
 *   vit-timm       forward_head(pre_logits=True) (the input of timm's head)
 *   clip-hf / clip-openclip image tower: pooler_output (post-LN class token,
 *                  before the visual projection); text tower: the EOT token
 *                  after the final LN (before the text projection)
 *   BERT           sentence-transformers mean pooling of the last hidden states
 * The classifier is nn.Linear(pooled width, classes) named as the family
 * names its own: classifier.weight/bias (HF ViT, CLIP, BERT), head.weight/bias
 * (timm). A classifier the backbone already has (ViTForImageClassification,
 * a timm head) is replaced by this one (initialized from --seed).
 *
 * Inputs (one record's row of the data set): image records: the normalized
 * image [3*H*W] (C,H,W); text records: [len, id_0, ..., id_{len-1}, 0...] as
 * floats (ids < 2^24 are exact), len <= max_length; a batch of texts is run
 * as the engine's packed sequences (no padding).
 *
 * --unfreeze: head (classifier only: the tower runs its inference forward,
 * nothing is kept), last:N (the last N blocks + the final norm(s) after them +
 * classifier), norm (every LayerNorm affine of the tower + classifier), all
 * (every parameter on the path of the pooled output + classifier). Frozen
 * parameters get no gradient and no optimizer state; parameters off the path
 * (projections, HF ViT's pooler, the other CLIP tower) are never trained, as
 * torch's optimizers skip parameters without a gradient. */
#ifndef MMP_TRAIN_TX_HEAD_H
#define MMP_TRAIN_TX_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "mmp.h"
#include "train/optim.h"
#include "train/unfreeze.h"
#include "tx/lora_train.h"


typedef struct mmp_txhead mmp_txhead;

/* Loads the backbone MODEL for image (text = 0) or text records. ncls
 * classes; unfreeze kind/N; max_length: the text length (0: the model's);
 * lora: the adapters of --unfreeze lora (tx/lora_train.h; NULL otherwise).
 * NULL with one line in err (unknown family, last:N beyond the blocks, a
 * LoRA target that matches nothing ...).
 *
 * --unfreeze lora: the adapters (PEFT 0.4's LoraLayer on the targeted
 * linears) and the classifier train; the base tower is frozen: its
 * gradient buffers are freed, the backward computes no weight gradient for
 * it and stops at the lowest adapted block (no gradient to the embeddings
 * or pixels). The adapters are parameters named <module>.lora_A.weight
 * [r, in] / <module>.lora_B.weight [out, r] (the module as PEFT names it,
 * without base_model.model.). */
mmp_txhead *mmp_txhead_new(const char *model, int text, int64_t ncls, int unfreeze, int last_n, int max_length,
                           const mmp_tx_lora_opts *lora, char *err, size_t errlen);
/* The dropout masks of the next training forward (LoRA with dropout): a
 * function of the step's seed only. Nothing to do otherwise. */
void mmp_txhead_set_step(mmp_txhead *t, uint64_t step_seed);
/* 1 when the head trains LoRA adapters */
int mmp_txhead_has_lora(const mmp_txhead *t);
/* The adapters as a PEFT 0.4 adapter folder DIR (tx/lora_train.h's
 * mmp_tx_lora_save: adapter_config.json, adapter_model.safetensors with the
 * base's SHA-256). 0 or -1 (err). */
int mmp_txhead_write_peft(const mmp_txhead *t, const char *dir, char *err, size_t errlen);
void mmp_txhead_free(mmp_txhead *t);
/* The parameters the optimizer steps: the trainable tower tensors (views of
 * the model's weights) then the classifier (weight, bias); owned by t. */
mmp_param *mmp_txhead_params(mmp_txhead *t, int *np);
/* Adds an extra trainable parameter (a view: w and g stay the caller's, e.g.
 * LoRA adapters under PEFT's names) before the classifier; its gradient must
 * be written by the caller's part of the backward. Call before the trainer
 * takes the parameter list (mmp_txhead_params again after). 0 or -1 (name too
 * long, too many dimensions). */
int mmp_txhead_add_trainable(mmp_txhead *t, const char *name, float *w, float *g, int ndim, const int64_t *shape, int decay);
/* Input row width (3*H*W for images of H x W, max_length + 1 for texts;
 * 0: images of any size until the first forward). */
int64_t mmp_txhead_in_dim(const mmp_txhead *t);
void mmp_txhead_set_image_size(mmp_txhead *t, int64_t H, int64_t W);
int mmp_txhead_max_length(const mmp_txhead *t);
int mmp_txhead_pooled_dim(const mmp_txhead *t);
/* "vit-hf", "vit-timm", "clip-hf", "clip-openclip", "bert" */
const char *mmp_txhead_family(const mmp_txhead *t);
/* Normalization of u8 images (the model's preprocessing). */
void mmp_txhead_normalization(const mmp_txhead *t, float mean[3], float std[3]);
void mmp_txhead_set_threads(mmp_txhead *t, int threads);
/* --recompute: activation recomputation per trainable encoder block (the
 * same bits; tx/train.h mmp_tx_model_set_recompute). */
void mmp_txhead_set_recompute(mmp_txhead *t, int on);
/* mmp_head.batch_bytes: bytes of one training batch of N records, an upper
 * bound for texts (every record at --max-length tokens), images at the
 * configured size: saved = the tower's activations kept for the backward
 * (the trainable encoder blocks' exactly as the engine allocates them,
 * --recompute: their inputs only; the embeddings' and final norms' [T, C]
 * tensors, the pooled features), work = the backward's buffers (the
 * encoder's scratch, --recompute: + one block's activations; the tower's
 * [T, C] gradients). Nothing of the tower when only the classifier trains. */
void mmp_txhead_batch_bytes(const void *model, int64_t N, int64_t *saved, int64_t *work);

/* logits [N, ncls] from x [N, in_dim]; train: keep what the backward needs. */
void mmp_txhead_forward(mmp_txhead *t, const float *x, int64_t N, int train, float *logits);
/* Gradients of the trainable parameters (overwritten) from dlogits [N, ncls]
 * after a training forward of the same batch. */
void mmp_txhead_backward(mmp_txhead *t, int64_t N, const float *dlogits);

/* Adds every tensor of the model under the backbone file's own names (the
 * trained values; tensors the engine does not use are copied from the
 * backbone file), the classifier included. LoRA: merged = 0 adds the
 * adapters (the checkpoint: base + adapters); merged = 1 adds each adapted
 * weight as W + (alpha/r) B A (PEFT's merge) and no adapter. */
void mmp_txhead_save(const mmp_txhead *t, mmp_st_writer *w, int merged);
/* Reads the tower's tensors and the classifier back from a checkpoint. 0 or -1. */
int mmp_txhead_load_weights(mmp_txhead *t, const mmp_safetensors *st, char *err, size_t errlen);

/* Text records of a stream -> rows [len, ids...] (see above) with the
 * model's tokenizer: d->x [n, max_length + 1]. need_label as
 * mmp_dataset_load. 0 or -1 ("NAME: record N: what"). */
int mmp_txhead_tokenize_stream(const char *model, int max_length, const char *path, int need_label, void *dataset,
                               char *err, size_t errlen);
/* One text -> its row [len, ids...] (max_length + 1 floats). 0 or -1 (err). */
int mmp_txhead_encode_text(const mmp_txhead *t, const char *text, float *row, char *err, size_t errlen);
int mmp_txhead_is_text(const mmp_txhead *t);
/* The model's image normalization (its preprocessing config). 0 or -1. */
int mmp_txhead_model_normalization(const char *model, float mean[3], float std[3], char *err, size_t errlen);
/* Images of H x W fit the image tower (multiples of the patch). 0 or -1. */
int mmp_txhead_check_image_size(const mmp_txhead *t, int64_t H, int64_t W, char *err, size_t errlen);
/* 1 when MODEL's records are texts (a BERT folder, a CLIP text tower only);
 * 0 images; -1 a two-tower CLIP (images unless --modality text); -2 with one
 * line in err: no model the transformer head knows. */
int mmp_txhead_model_modality(const char *model, char *err, size_t errlen);

#endif
