/* train/clip_ft.h: CLIP-style contrastive fine-tuning of both towers of a
 * CLIP model (mmp-train-step --head clip --loss contrastive --backbone CLIP),
 * end to end from image + text records.
 *
 * The loss is open_clip's ClipLoss (one process) on the model's own
 * normalized projections:
 *   I = normalize(image projection of the pooled image)   [n,E]
 *   T = normalize(text projection of the end-of-text token) [n,E]
 *   logits = exp(logit_scale) I T^T,
 *   loss = (CE(logits, arange n) + CE(logits^T, arange n)) / 2
 * (train/layers.h mmp_clip_loss). logit_scale trains and is clamped to
 * [0, log 100] after every step, as open_clip's training loop does.
 *
 * Parameters keep the model file's names (HF CLIPModel or open_clip).
 * Weight decay follows open_clip's main.py: none on parameters with fewer
 * than 2 dimensions, on names containing "bn", "ln" or "bias", and on
 * logit_scale (the gains/biases group has weight_decay 0).
 *
 * Locking (LiT): a locked tower runs in inference mode (the engine's embed
 * function: no saved activations, no gradients) and none of its tensors
 * change; the other tower and logit_scale train as without the lock.
 *
 * --unfreeze lora: OUT also holds the adapters ("<module>.lora_A.weight" [r,
 * in], ".lora_B.weight" [out, r], PEFT's module names), the base tensors
 * are the backbone's; mmp-export --peft writes them as a PEFT folder.
 *
 * Checkpoints: OUT = the whole state dict of the model file in its order
 * and under its names (every tensor of the backbone file, the trained ones
 * replaced, f32), so CLIPModel.load_state_dict(load_file(OUT), strict=True)
 * (or open_clip's model.load_state_dict) works and mmp-embed / mmp-embed-text
 * / mmp-eval --model OUT read it; OUT with ".optim" before the extension:
 * the training state (configuration, step, epoch, early stopping, lock, the
 * AdamW/SGD state "optim.<param>.exp_avg" ...), both written atomically, the
 * .optim file first, with the same "optim_id" in both (checked on --init /
 * --resume).
 * The backbone's side files (config.json, preprocessor_config.json,
 * open_clip_config.json and the tokenizer: vocab.json + merges.txt or
 * bpe_simple_vocab_16e6.txt.gz ...) are copied beside OUT. */
#ifndef MMP_TRAIN_CLIP_FT_H
#define MMP_TRAIN_CLIP_FT_H

#include <stdint.h>
#include <stdio.h>

#include "text/embed.h"
#include "train/optim.h"
#include "train/train.h"
#include "tx/lora_train.h"
#include "tx/model.h"
#include "tx/train.h"

enum { MMP_CLIPFT_LOCK_NONE = 0, MMP_CLIPFT_LOCK_IMAGE = 1, MMP_CLIPFT_LOCK_TEXT = 2 };
extern const char *const mmp_clipft_lock_names[]; /* "none", "image", "text", NULL */

typedef struct {
    mmp_tx_model *m;      /* the CLIP model (both towers), its parameters trainable */
    int lock;             /* MMP_CLIPFT_LOCK_* */
    mmp_tx_params P;      /* every parameter of the model (tx/train.h) */
    mmp_param scale;      /* "logit_scale" (its own storage; the model's logit_scale follows it) */
    int scale_ndim;       /* the file's shape of logit_scale ([] or [1]) */
    mmp_param *tr;        /* the trainable parameters: views of P's unlocked towers, logit_scale, extras */
    int ntr, captr;
    int E;                /* the joint embedding width */
    /* --unfreeze lora: the adapters (their parameters at the end of P) train with
     * logit_scale, the base is frozen (no gradient buffers; lgv/lgt: the gradient
     * structures with only the adapters'); lfirst: the lowest adapted block per
     * tower (image, text; the layers when none) */
    mmp_tx_lora_set *lora;
    mmp_tx_vision_grad lgv;
    mmp_tx_text_grad lgt;
    int lfirst[2];
    /* batch buffers */
    int cap;
    float *za, *zb, *dza, *dzb;
} mmp_clipft;

/* A trainer on model m (a CLIP model with both towers; not owned). 0 or -1
 * (err: not CLIP, a tower missing, no logit_scale). */
int mmp_clipft_init(mmp_clipft *ft, mmp_tx_model *m, int lock, char *err, size_t errlen);
void mmp_clipft_free(mmp_clipft *ft);
/* Adds a trainable parameter (w and g stay the caller's, e.g. a LoRA
 * adapter's mmp_tx_param) with decay per open_clip's rule. */
void mmp_clipft_add_param(mmp_clipft *ft, const mmp_tx_param *p);
/* open_clip main.py's exclude(): 1 when a parameter gets no weight decay. */
int mmp_clipft_no_decay(const char *name, int ndim);

/* --unfreeze lora: adapters on the unlocked tower(s) (tx/lora_train.h; o's
 * towers is set from the lock), which train instead of the towers' weights,
 * with logit_scale. Call after mmp_clipft_init, before the optimizer state is
 * read. 0 or -1 (err: a target that matches nothing ...). */
int mmp_clipft_lora(mmp_clipft *ft, const mmp_tx_lora_opts *o, char *err, size_t errlen);
/* The dropout masks of the next training batch (a function of step_seed). */
void mmp_clipft_set_step(mmp_clipft *ft, uint64_t step_seed);
/* The adapters and logit_scale from a --unfreeze lora checkpoint (its
 * "<module>.lora_A.weight" ... tensors). 0 or -1 (err). */
int mmp_clipft_lora_read(mmp_clipft *ft, const mmp_safetensors *st, char *err, size_t errlen);
/* mmp-export --peft of a --head clip --unfreeze lora checkpoint: its
 * adapters as one PEFT folder over the CLIP model (tx/lora_train.h's
 * mmp_tx_lora_save). 0 or -1 (err). */
int mmp_clipft_write_peft(const char *ckpt, const char *dir, char *err, size_t errlen);

/* One batch: n images [n][3][H][W] (normalized) and n token sequences
 * packed (ids, lens as tx/model.h). Returns the loss; logits (NULL or
 * [n][n]) get exp(logit_scale) I T^T. grad: the gradients of the trainable
 * parameters are set (zeroed first); dimgs (NULL or [n][3][H][W], needs the
 * image tower unlocked) gets d loss / d pixels. NAN with err on failure. */
double mmp_clipft_batch(mmp_clipft *ft, const float *imgs, int n, int H, int W, const int32_t *ids, const int *lens,
                        int grad, float *logits, float *dimgs, char *err, size_t errlen);
/* The optimizer step with learning rate lr (step = steps taken so far),
 * gradient clipping first when clip > 0, then the logit_scale clamp. */
void mmp_clipft_update(mmp_clipft *ft, const mmp_optim *o, double clip, int64_t step, double lr);
/* The normalized embeddings of n images / texts (inference). */
int mmp_clipft_embed(mmp_clipft *ft, const float *imgs, int n, int H, int W, const int32_t *ids, const int *lens,
                     float *I, float *T, char *err, size_t errlen);

/* Writes the model's state dict (see above) to path, atomically; meta
 * (may be NULL) is added to the file's __metadata__. 0 or -1. */
int mmp_clipft_save_weights(const mmp_clipft *ft, const char *path, const mmp_meta *meta, char *err, size_t errlen);
/* The optimizer state goes through train/checkpoint.c's functions
 * (mmp_train_optim_add / _read / _id / _open, mmp_train_optim_path): the
 * same tensors, the same atomic writes, an optim_id shared by OUT and its
 * .optim file (a mismatch or a missing file: one line). */
/* 1 when path is a --head clip checkpoint (its .optim file, or its own
 * __metadata__ head = clip, says so). */
int mmp_clipft_is_checkpoint(const char *path);

/* mmp-train-step --head clip: the whole command after option parsing. */
typedef struct {
    mmp_train_cfg *cfg;
    const mmp_meta *given;      /* the configuration options of the command line */
    const char *in, *out, *last, *init, *resume, *dev, *log, *tb_dir;
    int lock;                   /* -1: not given */
    int allow_mixed, threads, log_every, stop_after;
} mmp_clipft_cmd_args;
int mmp_clipft_cmd(const mmp_clipft_cmd_args *a);

/* Bytes of one training batch of n pairs (images HxW, texts of up to L
 * tokens each, counted at L: an upper bound): saved = the unlocked towers'
 * activations kept for the backward and the projections, work = the
 * backward's buffers (tx/train.h mmp_tx_image_train_size ...). */
void mmp_clipft_batch_bytes(const mmp_clipft *ft, int n, int H, int W, int L, int64_t *saved, int64_t *work);

#endif
