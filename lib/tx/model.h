/* tx/model.h: ViT and CLIP models on the transformer engine (tx/tx.h).
 *
 * One loader for four families of safetensors checkpoints, told apart by
 * their tensor names (sizes come from the shapes; config files beside the
 * weights, when present, give what shapes cannot: heads, activation, eps,
 * pooling, and are checked against the shapes):
 *   vit-hf         Hugging Face ViTModel / ViTForImageClassification (vit. prefix,
 *                  classifier.*), config.json, preprocessor_config.json
 *   vit-timm       timm vit_* (class token or not, no_embed_class, LayerScale,
 *                  norm_pre, fc_norm, global_pool token/avg), config.json (HF hub form:
 *                  architecture, model_args, pretrained_cfg)
 *   clip-hf        Hugging Face CLIPModel (vision_model.*, text_model.*, projections,
 *                  logit_scale); CLIPVisionModel(WithProjection) / CLIPTextModel(...)
 *                  give one tower; config.json, preprocessor_config.json
 *   clip-openclip  open_clip CLIP (visual.*, token_embedding, transformer.*, ...),
 *                  open_clip_config.json (model_cfg, preprocess_cfg)
 * .bin/.pt/.pth files are refused with the conversion to safetensors.
 *
 * Image tower: patch embedding, class token, position embeddings (resized
 * for another image size as the family's library does: HF ViT's
 * interpolate_pos_encoding, timm's resample_abs_pos_embed, and for CLIP the
 * size-based bicubic of later transformers' CLIP interpolate_pos_encoding),
 * pre-LN (CLIP, timm pre_norm), encoder, final norm, pooling (class token or
 * mean of the patch tokens), post-LN (CLIP post_layernorm/ln_post, timm
 * fc_norm), projection (CLIP) or head. Text tower (CLIP): token + position
 * embeddings, causal encoder, final LN, EOS pooling (the position of the
 * largest id, first one: transformers 4.30 and open_clip's argmax), projection.
 *
 * Batches are packed sequences (tx/tx.h): a row of the result depends only on
 * its own image/text, so results do not depend on the batch's composition.
 * A loaded model is read-only: the embed functions may run in several
 * threads at once on one model. */
#ifndef MMP_TX_MODEL_H
#define MMP_TX_MODEL_H
#include <stddef.h>
#include <stdint.h>

#include "mmp.h"
#include "tx/tx.h"

typedef enum {
    MMP_TXM_VIT_HF,
    MMP_TXM_VIT_TIMM,
    MMP_TXM_CLIP_HF,
    MMP_TXM_CLIP_OPENCLIP,
} mmp_txm_family;

/* What an embed call returns per image / text. */
typedef enum {
    MMP_TX_OUT_EMBED,  /* CLIP: the projected embedding (image_embeds / encode_image);
                          ViT: the pooled feature (= MMP_TX_OUT_POOLED) */
    MMP_TX_OUT_POOLED, /* before any projection/head: CLIP pooler_output (post-LN class token or
                          EOS token), HF ViT last_hidden_state[:, 0], timm forward_head(pre_logits=True) */
    MMP_TX_OUT_POOLER, /* HF ViTModel's pooler_output tanh(dense(cls)) (needs pooler.dense) */
    MMP_TX_OUT_LOGITS, /* HF ViTForImageClassification classifier / timm head */
} mmp_tx_out;

/* Preprocessing the model expects (from preprocessor_config.json,
 * open_clip_config.json's preprocess_cfg or timm's pretrained_cfg, else the
 * family's defaults). */
typedef struct {
    int height, width;  /* the model's input size (the crop) */
    int resize_shortest; /* > 0: resize the shortest edge to this, then center-crop
                            height x width; 0: resize straight to height x width */
    float mean[3], std[3];
    char interpolation[16]; /* "bicubic", "bilinear", "nearest" */
    float crop_pct;         /* timm's crop_pct (resize_shortest = size / crop_pct); 0 if none */
} mmp_tx_preprocess;

/* One image tower. Pointers into the mapped file or into the model's own copies. */
typedef struct {
    int C, P, gh, gw; /* width, patch, native grid (gh x gw patches) */
    int cls;          /* 1: a class token is prepended */
    int pos_cls;      /* 1: pos[0] belongs to the class token (else pos covers the patches only) */
    int pool_avg;     /* 1: mean of the patch tokens, 0: the class token */
    int resize;       /* position-embedding resizing: 0 HF ViT (scale factor +0.1), 1 timm (antialias), 2 size */
    const float *patch_w, *patch_b; /* [C, 3, P, P], [C] or NULL */
    const float *cls_tok;           /* [C] */
    const float *pos;               /* [(pos_cls + gh*gw), C] */
    const float *pre_w, *pre_b;     /* LN before the encoder (CLIP pre_layrnorm / ln_pre, timm norm_pre) */
    const float *norm_w, *norm_b;   /* LN on every token after the encoder (HF ViT layernorm, timm norm) */
    const float *post_w, *post_b;   /* LN on the pooled vector (CLIP post_layernorm / ln_post, timm fc_norm) */
    float eps_final;                /* eps of those three */
    const float *proj;              /* [proj_dim, C] (CLIP), no bias */
    int proj_dim;
    const float *pooler_w, *pooler_b; /* HF ViT pooler [C, C], [C] */
    const float *head_w, *head_b;     /* [nclass, C], [nclass] */
    int nclass;
    mmp_tx_encoder enc;
} mmp_tx_vision;

typedef struct {
    int C, ctx, vocab;
    const float *tok, *pos;       /* [vocab, C], [ctx, C] */
    const float *final_w, *final_b;
    float eps_final;
    const float *proj; /* [proj_dim, C] */
    int proj_dim;
    mmp_tx_encoder enc;
} mmp_tx_textenc;

/* Where a parameter came from: every tensor a loader read, by its name in the
 * file (the home library's name). data: the floats the model points at (into
 * the mapping, or an owned copy); transposed: data is the [cols, rows]
 * transpose of the file's [rows, cols] tensor (open_clip's projections). */
typedef struct {
    char *name;
    const float *data;
    size_t n;
    int rows, cols, transposed;
} mmp_tx_ref;

typedef struct mmp_tx_model {
    mmp_txm_family family;
    char *path;                   /* the weights file */
    mmp_tx_vision *vision;        /* NULL: no image tower */
    mmp_tx_textenc *text;         /* NULL: no text tower */
    float logit_scale;            /* CLIP's logit_scale parameter (log of the scale); NAN if absent */
    mmp_tx_preprocess pre;
    /* storage */
    void *st;                     /* the open mmp_safetensors */
    float **owned;
    int nowned, capowned;
    mmp_tx_block *blocks;         /* both towers' blocks */
    mmp_tx_ref *refs;             /* every tensor read (names for training: tx/train.h) */
    int nrefs, caprefs;
} mmp_tx_model;

/* Loads PATH: a .safetensors file, or a directory holding model.safetensors
 * (or open_clip_model.safetensors). NULL with one line in err naming the file
 * and what is wrong. */
mmp_tx_model *mmp_tx_model_load(const char *path, char *err, size_t errlen);
void mmp_tx_model_free(mmp_tx_model *m);
/* For a checkpoint of mmp-train-step --head transformer (__metadata__
 * format=mmpipe-head with a backbone): the folder holding its backbone's
 * config files (heap); NULL otherwise. The ViT/CLIP and BERT loaders read the
 * configs (and BERT's vocabulary) there, so the fine-tuned file loads as the
 * model it was trained from. */
char *mmp_model_config_dir(const mmp_meta *meta);

/* "vit-hf", "vit-timm", "clip-hf", "clip-openclip" */
const char *mmp_tx_family_name(mmp_txm_family f);
static inline int mmp_tx_has_image(const mmp_tx_model *m) { return m->vision != NULL; }
static inline int mmp_tx_has_text(const mmp_tx_model *m) { return m->text != NULL; }

/* Length of one output vector, -1 when the model cannot give it (no tower,
 * no pooler, no head). */
int mmp_tx_image_dim(const mmp_tx_model *m, mmp_tx_out which);
int mmp_tx_text_dim(const mmp_tx_model *m, mmp_tx_out which);
/* Tokens per image of H x W (class token included), 0 if that size is refused. */
int mmp_tx_image_tokens(const mmp_tx_model *m, int H, int W);

/* n images [n][3][H][W] (CHW, normalized f32) -> out [n][dim(which)].
 * hidden: NULL or [layers + 1][n * tokens(H, W)][C] (HF output_hidden_states:
 * the encoder's input, after CLIP's pre-LN, then every block's output; the
 * images' tokens one after another). 0, or -1 with one line in err (an image
 * size the patches or position embeddings cannot cover, no such output). */
int mmp_tx_image_embed(const mmp_tx_model *m, const float *imgs, int n, int H, int W, mmp_tx_out which, float *out,
                       float *hidden, char *err, size_t errlen);

/* n images [n][3][H][W] -> out [n][np][C]: the patch tokens (np = (H/P)*(W/P),
 * raster order, the class token left out) after the final norm when the
 * tower has one (HF ViT layernorm, timm norm; CLIP: the encoder's output,
 * HF CLIPVisionModel's last_hidden_state): last_hidden_state[:, cls:].
 * 0, or -1 with one line in err. */
int mmp_tx_image_patch_tokens(const mmp_tx_model *m, const float *imgs, int n, int H, int W, float *out, char *err,
                              size_t errlen);

/* n token sequences, packed: ids[lens[0] + ... + lens[n-1]] (each one whole,
 * start and end tokens included, at most the context length) -> out
 * [n][dim(which)] (MMP_TX_OUT_EMBED: projected; MMP_TX_OUT_POOLED: the EOS
 * token after the final LN). hidden: NULL or [layers + 1][sum lens][C]. */
int mmp_tx_text_embed(const mmp_tx_model *m, const int32_t *ids, const int *lens, int n, mmp_tx_out which,
                      float *out, float *hidden, char *err, size_t errlen);
/* The text tower's context length (0 without one). */
static inline int mmp_tx_text_context(const mmp_tx_model *m) { return m->text ? m->text->ctx : 0; }

/* Threads of each encoder forward (tx/tx.h: rows and attention heads split
 * among them, the same bits for any count); 0 or 1: the calling thread.
 * Set before the model is shared between threads. */
void mmp_tx_model_set_threads(mmp_tx_model *m, int threads);

/* The same split over `threads` threads (images / texts in contiguous
 * shares; each one's result does not depend on its share, so the bits are
 * those of one call). No hidden states. */
int mmp_tx_image_embed_mt(const mmp_tx_model *m, const float *imgs, int n, int H, int W, mmp_tx_out which, float *out,
                          int threads, char *err, size_t errlen);
int mmp_tx_text_embed_mt(const mmp_tx_model *m, const int32_t *ids, const int *lens, int n, mmp_tx_out which,
                         float *out, int threads, char *err, size_t errlen);

/* CLIP's logit scale: the stored parameter is its log; this is exp() of it
 * (100 for trained OpenAI models), NAN when the model has none. */
float mmp_tx_logit_scale(const mmp_tx_model *m);

/* Position embeddings [gh*gw, C] -> [oh*ow, C] by torch bicubic
 * interpolation (align_corners=False, no antialias) with the source
 * coordinate of output pixel i = (i + 0.5) * sh - 0.5 (sh = 1/scale_factor
 * as torch computes it when F.interpolate is given scale_factor; gh/oh when
 * given a size). HF ViT's interpolate_pos_encoding passes a scale factor. */
/* The pooled vector of each of n images' T1 tokens x [n][T1][C] (after the
 * final norm): the class token, or the mean of the patch tokens (pool_avg),
 * summed in double in token order. pooled: [n][C]. */
void mmp_tx_vision_pool(const mmp_tx_vision *v, const float *x, int n, int T1, float *pooled);

void mmp_tx_pos_resize_scaled(float *out, const float *pe, int gh, int gw, int oh, int ow, int C, double sh, double sw);

/* Internal: the loaders of each family (tx/vit.c, tx/clip.c). */
struct mmp_tx_loader;
int mmp_tx_load_vit_hf(struct mmp_tx_loader *l);
int mmp_tx_load_vit_timm(struct mmp_tx_loader *l);
int mmp_tx_load_clip_hf(struct mmp_tx_loader *l);
int mmp_tx_load_clip_openclip(struct mmp_tx_loader *l);

#endif
