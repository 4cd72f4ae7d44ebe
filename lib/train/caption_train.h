/* train/caption_train.h: mmp-train-step --head caption (train/caption.h
 * describes the model and its checkpoint; docs/caption.md the options).
 *
 * Data: one training example per (record, caption): the record's feature
 * (--feature: f32/f16/bf16 [D] pooled or [N, D] spatial tokens) and each
 * string of its --captions-field list (contract "strings": "captions"). A
 * data set row is [feature (N*D or D values), n, id_0 .. id_{M-2}]: the
 * caption's n tokens (at most M-1, M = --max-length, the EOS included;
 * longer captions are cut) as floats (ids < 2^24 are exact). Records with
 * no caption list and empty captions (no token) are skipped and counted on
 * stderr (one line).
 *
 * Loss: the NLL of each caption's tokens and its EOS given the prefix and
 * the tokens before (teacher forcing), the mean over the batch's target
 * tokens (prefix positions masked; the sequences are packed, so there is no
 * padding), torch CrossEntropyLoss(label_smoothing=--label-smoothing).
 * --grad-accum weights the micro-batches by their captions (not tokens).
 *
 * --unfreeze head: the decoder frozen, the mapping network trains (ClipCap's
 * --only_prefix); lora: LoRA adapters on the decoder (--lora-targets,
 * default c_attn) + the mapping network; all: everything. */
#ifndef MMP_TRAIN_CAPTION_TRAIN_H
#define MMP_TRAIN_CAPTION_TRAIN_H
#include <stddef.h>
#include <stdint.h>

#include "mmp.h"
#include "train/caption.h"
#include "train/train.h"

/* Before the data of a new run: a decoder from scratch (no --decoder) gets
 * its vocabulary (the training captions' words seen >= --min-count times,
 * unless --tokenizer gives one) written to OUT-stem.tokenizer.json and its
 * initial weights (mmp_gpt2_init, --seed) to the folder OUT-stem.decoder
 * (config.json + model.safetensors), which --decoder then names. c's
 * decoder and tokenizer are set. 0 or -1 (err). */
int mmp_caption_prepare(mmp_train_cfg *c, const char *train_path, const char *out, char *err, size_t errlen);
/* The rows above for stream path. Fills c's feature_dim/feature_tokens and
 * max_length (from the decoder's context when 0) the first time; later
 * streams must match. 0 or -1 ("NAME: record N: what"). */
int mmp_caption_load_data(mmp_dataset *d, mmp_train_cfg *c, const char *path, char *err, size_t errlen);
/* The model of configuration c (resolved, data loaded): the decoder folder,
 * the tokenizer (its size must equal the decoder's vocabulary), the mapping
 * network initialized from the seed, the --unfreeze mode. NULL with err. */
mmp_captioner *mmp_caption_new(const mmp_train_cfg *c, char *err, size_t errlen);
/* The parameters the optimizer steps: the mapping network's, then the
 * decoder's trainable ones (named "gpt." + GPT2LMHeadModel's / PEFT's name). */
mmp_param *mmp_caption_params(mmp_captioner *m, int *np);
int64_t mmp_caption_row_dim(const mmp_captioner *m);
void mmp_caption_set_threads(mmp_captioner *m, int threads);
/* The loss of B rows [B][row_dim]; grad: the parameters' gradients
 * (overwritten). step_seed: LoRA dropout masks. tokens (may be NULL): the
 * count of target tokens. */
double mmp_caption_loss(mmp_captioner *m, const float *rows, int B, double smoothing, int grad, uint64_t step_seed,
                        int64_t *tokens);
/* src: a buffer of parameter i's size (its values, gradient, optimizer
 * state) in the engine's layout -> dst in the checkpoint's (a Conv1D weight
 * of the decoder transposed back to [in, out]). */
void mmp_caption_param_file_layout(const mmp_captioner *m, int i, const float *src, float *dst);
/* The checkpoint's tensors: the mapping network, the decoder's trained ones. */
void mmp_caption_save(const mmp_captioner *m, mmp_st_writer *w);
/* Reads them back (resume): 0 or -1 (err). */
int mmp_caption_load_weights(mmp_captioner *m, const mmp_safetensors *st, char *err, size_t errlen);

#endif
