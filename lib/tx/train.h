/* tx/train.h: training the ViT / CLIP towers (tx/model.h) and BERT
 * (text/bert.h) on the transformer engine: a forward that keeps what the
 * backward needs, and the backward through every layer down to the input
 * (pixels; the token embeddings' rows for text), with every parameter's
 * gradient.
 *
 * Trainable weights: a loaded model points into the mapped file (read-only).
 * mmp_tx_make_trainable / mmp_bert_make_trainable copy the parameters the
 * towers use into owned buffers once (the model's fields are repointed, so
 * its inference functions then see the trained weights), unpack the
 * encoders (packing copies the weights: a packed encoder would not see an
 * update; unpacked gives the same bits), and allocate one gradient buffer
 * per parameter. Models that are never made trainable keep their memory.
 *
 * Parameters are named as the home library names them (the tensor names of
 * the checkpoint: "vit.encoder.layer.0.attention.attention.query.weight",
 * "blocks.0.attn.qkv.weight", "visual.proj", ...): a fused tensor (timm's
 * qkv, open_clip's in_proj) is one parameter; open_clip's projections are
 * kept transposed ([proj_dim, C]; transposed = 1, rows x cols is the file's
 * shape). BERT's fused q|k|v are three parameters (query, key, value).
 *
 * Gradients are accumulated (+=) as the engine's (tx/tx.h): zero them with
 * mmp_tx_params_zero_grad before a step. Thread counts: the encoder's
 * threads field (mmp_tx_model_set_threads); every count gives the same bits. */
#ifndef MMP_TX_TRAIN_H
#define MMP_TX_TRAIN_H
#include <stddef.h>
#include <stdint.h>

#include "text/bert.h"
#include "train/optim.h"
#include "tx/model.h"
#include "tx/tx.h"

typedef struct {
    char *name;
    float *w, *g;   /* the trainable weights (owned) and their gradient */
    size_t n;
    int rows, cols; /* transposed: the file's shape [rows, cols], w is [cols, rows] */
    int transposed;
    int ndim;       /* the tensor's shape in the checkpoint (a fused q|k|v: the fused tensor's) */
    int64_t shape[4];
} mmp_tx_param;

/* Gradients mirroring mmp_tx_vision / mmp_tx_textenc / mmp_bert (NULL where
 * the model has no such parameter); pointers into the params' g buffers. */
typedef struct {
    float *patch_w, *patch_b, *cls_tok, *pos, *pre_w, *pre_b, *norm_w, *norm_b, *post_w, *post_b, *proj;
    float *pooler_w, *pooler_b, *head_w, *head_b;
    mmp_tx_block_grad *block; /* [layers] */
} mmp_tx_vision_grad;

typedef struct {
    float *tok, *pos, *final_w, *final_b, *proj;
    mmp_tx_block_grad *block;
} mmp_tx_text_grad;

typedef struct {
    float *word, *pos, *type, *eln_w, *eln_b;
    mmp_tx_block_grad *block;
} mmp_bert_grad;

typedef struct {
    mmp_tx_param *p;
    int n, cap;
    mmp_tx_vision_grad *vision; /* NULL when the model has no such tower */
    mmp_tx_text_grad *text;
    mmp_bert_grad *bert;
    struct mmp_gpt2_grad *gpt2; /* tx/gpt2.h */
} mmp_tx_params;

/* 0, or -1 with one line in err. P is filled (mmp_tx_params_free). */
int mmp_tx_make_trainable(mmp_tx_model *m, mmp_tx_params *P, char *err, size_t errlen);
int mmp_bert_make_trainable(mmp_bert *b, mmp_tx_params *P, char *err, size_t errlen);
void mmp_tx_params_zero_grad(mmp_tx_params *P);
void mmp_tx_params_free(mmp_tx_params *P);
/* The parameter named NAME, or NULL. */
mmp_tx_param *mmp_tx_params_find(mmp_tx_params *P, const char *name);
/* The parameters as train/optim.h's (for mmp_optim_step): views sharing
 * w and g (names as above, one dimension, weight decay on all as one torch
 * parameter group). NULL with one line in err when a name does not fit
 * mmp_param's. Free with mmp_tx_params_views_free (the optimizer state
 * only: w and g stay the model's). */
mmp_param *mmp_tx_params_views(const mmp_tx_params *P, char *err, size_t errlen);
void mmp_tx_params_views_free(mmp_param *v, int n);

/* Activation recomputation (torch.utils.checkpoint around every trainable
 * encoder block) for the training forwards below: on = 1 keeps only each
 * kept block's input [T, C] and computes the block's activations again just
 * before its backward (the same operations in the same order, LoRA dropout
 * masks included: the same bits as on = 0, for one more forward of the kept
 * blocks). The tower's other activations (embeddings, final norms) are kept
 * as they are. */
void mmp_tx_model_set_recompute(mmp_tx_model *m, int on);
void mmp_bert_set_recompute(mmp_bert *b, int on);
/* Floats the training forward and backward of encoder e allocate for these
 * sequences with the first `frozen` blocks frozen: saved = what the forward
 * keeps for the backward (mmp_tx_encoder_saved_size of the kept blocks;
 * e->recompute: their inputs [kept][T, C]), work = the backward's scratch
 * (mmp_tx_encoder_bwd_size; recompute: + one block's activations, its input). */
void mmp_tx_encoder_train_size(const mmp_tx_encoder *e, const int *lens, int n, int frozen, size_t *saved, size_t *work);
/* The training forward of encoder e over x[T, C] in place with its first
 * `frozen` blocks in inference mode (nothing kept), the others keeping
 * their activations in *saved (allocated; free()); e->recompute: their
 * inputs only (*recompute = 1 then). The same bits as mmp_tx_encoder_fwd. */
void mmp_tx_encoder_fwd_part(const mmp_tx_encoder *e, float *x, const int *lens, int n, int frozen, float **saved,
                             int *recompute);
/* Its backward through the kept blocks: dx [T, C] d loss / d output in,
 * d loss / d the first kept block's input out; g: [layers] or NULL. */
void mmp_tx_encoder_bwd_part(const mmp_tx_encoder *e, const float *saved, const int *lens, int n, int frozen,
                             int recompute, float *dx, const mmp_tx_block_grad *g);
/* Bytes of one training forward + backward of a tower (the functions below,
 * with their `frozen`): saved = what mmp_tx_saved keeps (the encoder's as
 * mmp_tx_encoder_train_size, the embeddings, norms, pooled and output
 * tensors), work = the backward's buffers; n images of HxW, or n texts of L
 * tokens each (an upper bound for texts up to L). */
void mmp_tx_image_train_size(const mmp_tx_model *m, int n, int H, int W, mmp_tx_out which, int frozen, int64_t *saved,
                             int64_t *work);
void mmp_tx_text_train_size(const mmp_tx_model *m, int n, int L, int frozen, int64_t *saved, int64_t *work);
void mmp_bert_train_size(const mmp_bert *b, int n, int L, int frozen, int64_t *saved, int64_t *work);

/* Threads of a BERT model's encoder (the same bits for any count). */
void mmp_bert_set_threads(mmp_bert *b, int threads);

/* Saved activations of one training forward (opaque). */
typedef struct mmp_tx_saved mmp_tx_saved;
void mmp_tx_saved_free(mmp_tx_saved *a);

/* n images [n][3][H][W] -> out [n][mmp_tx_image_dim(which)] as
 * mmp_tx_image_embed (the same bits), keeping the activations. Another
 * size than the model's resizes the position embeddings as the family's
 * library does; their gradient goes back through the resize's adjoint.
 * NULL with one line in err. */
mmp_tx_saved *mmp_tx_image_fwd_train(const mmp_tx_model *m, const float *imgs, int n, int H, int W, mmp_tx_out which,
                                   float *out, char *err, size_t errlen);
/* The same with the first `frozen` encoder blocks (and everything before
 * them) frozen: they run in inference mode, keeping nothing, and the backward
 * stops after the first kept block (no gradient for the blocks below, the
 * embeddings, the pre-LN, nor the input unless dimgs / demb asks for it, which
 * needs frozen = 0). The same bits in out as frozen = 0. Likewise
 * mmp_tx_text_fwd_train_part and mmp_bert_fwd_train_part. */
mmp_tx_saved *mmp_tx_image_fwd_train_part(const mmp_tx_model *m, const float *imgs, int n, int H, int W, mmp_tx_out which,
                                          int frozen, float *out, char *err, size_t errlen);
/* dout [n][dim]: d loss / d out. g: parameter gradients (accumulated; NULL:
 * none); dimgs: NULL or [n][3][H][W], accumulated. */
void mmp_tx_image_bwd(const mmp_tx_model *m, const mmp_tx_saved *a, const float *dout, const mmp_tx_vision_grad *g,
                      float *dimgs);

/* The text tower as mmp_tx_text_embed (EMBED or POOLED). */
mmp_tx_saved *mmp_tx_text_fwd_train(const mmp_tx_model *m, const int32_t *ids, const int *lens, int n,
                                  mmp_tx_out which, float *out, char *err, size_t errlen);
mmp_tx_saved *mmp_tx_text_fwd_train_part(const mmp_tx_model *m, const int32_t *ids, const int *lens, int n,
                                         mmp_tx_out which, int frozen, float *out, char *err, size_t errlen);
/* demb: NULL or [sum lens][C], accumulated: d loss / d the token embeddings'
 * rows (transformers' inputs_embeds). */
void mmp_tx_text_bwd(const mmp_tx_model *m, const mmp_tx_saved *a, const float *dout, const mmp_tx_text_grad *g,
                     float *demb);

/* BERT + sentence-transformers mean pooling (no normalization):
 * out [n][H] = the mean of each sequence's last hidden states (token type 0).
 * NULL with one line in err (a length beyond the position embeddings, an id
 * outside the vocabulary). */
mmp_tx_saved *mmp_bert_fwd_train(const mmp_bert *b, const int32_t *ids, const int *lens, int n, float *out, char *err,
                                 size_t errlen);
mmp_tx_saved *mmp_bert_fwd_train_part(const mmp_bert *b, const int32_t *ids, const int *lens, int n, int frozen, float *out,
                                      char *err, size_t errlen);
/* The same with out [sum lens][H] = the last hidden states of every token
 * (transformers' last_hidden_state rows of the real tokens, as
 * mmp_bert_forward); mmp_bert_bwd then takes dout [sum lens][H]. */
mmp_tx_saved *mmp_bert_fwd_train_tokens(const mmp_bert *b, const int32_t *ids, const int *lens, int n, int frozen,
                                        float *out, char *err, size_t errlen);
/* demb: NULL or [sum lens][H], accumulated (d loss / d inputs_embeds). */
void mmp_bert_bwd(const mmp_bert *b, const mmp_tx_saved *a, const float *dout, const mmp_bert_grad *g, float *demb);

#endif
