/* train/head.h: trainable heads on top of frozen features.
 *
 * Kinds and their torch state_dict names (safetensors checkpoints):
 *   linear  nn.Linear(D, C)                       "weight" [C,D], "bias" [C]
 *   mlp     nn.Sequential(Linear(D,H1), ReLU(), Dropout(p),
 *                         Linear(H1,H2), ReLU(), Dropout(p), ..., Linear(Hk,C))
 *           as a module attribute named "layers":  "layers.0.weight", "layers.0.bias",
 *           "layers.3.weight", ..., "layers.<3k>.weight" (the Dropout module is always
 *           present, p may be 0, so linear i sits at index 3i)
 *   pair    two CLIP-style projections (no bias) and a learnable temperature:
 *           "image_projection.weight" [E,D], "text_projection.weight" [E,D2],
 *           "logit_scale" [] (contrastive loss only; init log(1/0.07))
 *
 *   gated, attention   a learned fusion module of lib/fuse (fuse/fuse.h) over two
 *           inputs a [N,Da] (--feature) and b [N,Db] (--pair-field), then a classifier:
 *             h = fusion(a, b) [N,F]  (F = --fuse-dim; attention: --heads H, F % H == 0)
 *             logits = classifier(h)  nn.Linear(F, C)
 *           names: the fusion module's own ("proj_a.weight", "proj_a.bias", "proj_b.*",
 *           gated: "gate.weight", "gate.bias"; attention: "attn.in_proj_weight",
 *           "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias") and
 *           "classifier.weight" [C,F], "classifier.bias" [C]: the torch module
 *           FusionClassifier in tests/fixtures/gen_train_fuse.py (fusion attributes at the
 *           top level, so mmp-fuse --checkpoint reads the fusion part of the same file).
 *
 *   mnv2-tail  MobileNetV2 blocks features.K+1 .. features.18 + classifier trained on
 *           cached block activations (mmp-embed --layer features.K:flat), BN in eval
 *           mode: torchvision's own names (features.17.conv.0.0.weight ...,
 *           classifier.1.weight [C,1280], classifier.1.bias); see train/cnn_tail.h.
 *   resnet-tail  torchvision ResNet blocks after layerL (or block layerL.i) .. layer4
 *           + fc trained on cached stage activations (mmp-embed --layer layer3:flat),
 *           BN in eval mode: torchvision's names (layer4.0.conv1.weight, layer4.0.bn1.*,
 *           layer4.0.downsample.0.weight ..., fc.weight [C,F], fc.bias); see
 *           train/resnet_tail.h.
 *   transformer  a whole ViT / CLIP tower / BERT encoder + classifier (train/tx_head.h):
 *           the backbone's own tensor names, classifier.weight/bias (timm: head.*).
 *   caption  ClipCap: a mapping network + a GPT-2 decoder (train/caption.h):
 *           clip_project.*, gpt.* (ClipCap's names).
 */
#ifndef MMP_TRAIN_HEAD_H
#define MMP_TRAIN_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "fuse/fuse.h"
#include "train/cnn_tail.h"
#include "train/layers.h"
#include "train/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { MMP_HEAD_LINEAR = 0, MMP_HEAD_MLP, MMP_HEAD_PAIR, MMP_HEAD_GATED, MMP_HEAD_ATTENTION, MMP_HEAD_MNV2_TAIL,
               MMP_HEAD_RESNET_TAIL, MMP_HEAD_CLIP, MMP_HEAD_TRANSFORMER, MMP_HEAD_VQA, MMP_HEAD_VQA_POOLED,
               MMP_HEAD_CAPTION } mmp_head_kind;
/* MMP_HEAD_VQA, MMP_HEAD_VQA_POOLED: visual question answering (train/vqa.h, train/vqa_cmd.h; no mmp_head) */
#define MMP_HEAD_IS_VQA(k) ((k) == MMP_HEAD_VQA || (k) == MMP_HEAD_VQA_POOLED)
/* MMP_HEAD_CLIP: both towers of a CLIP model, contrastive (train/clip_ft.h; no mmp_head) */
/* 1 for the CNN-tail heads (mnv2-tail, resnet-tail: h->tail) */
#define MMP_HEAD_IS_TAIL(k) ((k) == MMP_HEAD_MNV2_TAIL || (k) == MMP_HEAD_RESNET_TAIL)
/* 1 for the fusion heads (gated, attention) */
#define MMP_HEAD_IS_FUSE(k) ((k) == MMP_HEAD_GATED || (k) == MMP_HEAD_ATTENTION)

#define MMP_HEAD_MAX_HIDDEN 8

typedef struct {
    mmp_head_kind kind;
    int64_t in_dim;   /* D */
    int64_t out_dim;  /* classes C (linear, mlp) or projection dim E (pair) */
    int64_t pair_dim; /* D2: the second embedding (pair) */
    int nhidden;
    int64_t hidden[MMP_HEAD_MAX_HIDDEN];
    float dropout;
    int has_scale;    /* pair: logit_scale parameter present */
    int np;
    mmp_param *params;
    /* work buffers (grown on demand) */
    int64_t cap;
    float *act[MMP_HEAD_MAX_HIDDEN + 1];  /* hidden activations after ReLU+dropout */
    float *pre[MMP_HEAD_MAX_HIDDEN + 1];  /* after ReLU, before dropout */
    float *mask[MMP_HEAD_MAX_HIDDEN + 1];
    float *d1, *d2;
    /* fusion heads: views of params[] as lib/fuse parameter sets (values, gradients) */
    int64_t fuse_dim; /* F */
    int heads;
    mmp_fuse_params fp, fg;
    int64_t fcap;
    float *fcache, *fh, *fdh; /* forward cache, h [N,F], dh [N,F] */
    /* mnv2-tail: the CNN tail (owns the parameters: params/np are its own) */
    mmp_cnn_tail *tail;
    /* whole-backbone heads: bytes of one training batch of N records, saved =
     * the activations the forward keeps for the backward, work = the backward's
     * gradient buffers (NULL: not reported; mmp_trainer_memory) */
    void (*batch_bytes)(const void *model, int64_t N, int64_t *saved, int64_t *work);
    const void *batch_model; /* its first argument (the tail, the encoder ...) */
    /* transformer: the tower + classifier (train/tx_head.h; owns params/np likewise) */
    struct mmp_txhead *tx;
    /* caption: mapping network + decoder (train/caption_train.h; owns params/np likewise) */
    struct mmp_captioner *capt;
} mmp_head;

const char *mmp_head_kind_name(mmp_head_kind k);
int mmp_head_kind_parse(const char *s, mmp_head_kind *k);

/* Allocates the parameters (zeroed). hidden/nhidden for mlp; pair_dim and
 * has_scale for pair. */
void mmp_head_init(mmp_head *h, mmp_head_kind kind, int64_t in_dim, int64_t out_dim,
                   int64_t pair_dim, int nhidden, const int64_t *hidden, float dropout,
                   int has_scale);
/* Fusion head (kind gated or attention): inputs da, db, fusion width F, heads
 * (attention), C classes. 0, or -1 with the reason in err (bad sizes). */
int mmp_head_init_fuse(mmp_head *h, mmp_head_kind kind, int64_t da, int64_t db, int64_t F, int heads,
                       int64_t C, char *err, size_t errlen);
/* mnv2-tail head (see train/cnn_tail.h): blocks features.first.. of src (a
 * torchvision MobileNetV2 state dict or an mnv2-tail checkpoint) on inputs
 * [cin,H0,W0]; C classes; classifier.1.* read from src when load_classifier.
 * 0 or -1 (err). */
int mmp_head_init_tail(mmp_head *h, const mmp_safetensors *src, int first, int64_t H0, int64_t W0, int64_t C,
                       float dropout, int load_classifier, char *err, size_t errlen);
/* resnet-tail head (see train/resnet_tail.h): the blocks after layerL (block
 * i; -1 = the whole stage) of src (a torchvision ResNet state dict or a
 * resnet-tail checkpoint) on inputs [C0,H0,W0]; C classes; fc.* read from src
 * when load_fc. 0 or -1 (err). */
int mmp_head_init_resnet_tail(mmp_head *h, const mmp_safetensors *src, int L, int i, int64_t H0, int64_t W0, int64_t C,
                              int load_fc, char *err, size_t errlen);
void mmp_head_free(mmp_head *h);
/* PyTorch's default initialisation distributions (not its RNG stream):
 * Linear weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)); projections
 * N(0, fan_in^-0.5) (CLIP); logit_scale = log(1/0.07). Fusion heads: the
 * fusion module from mmp_fuse_params_init(seed) (the same numbers as
 * mmp-fuse --init --seed SEED), the classifier like the linear head. */
void mmp_head_init_weights(mmp_head *h, uint64_t seed);
mmp_param *mmp_head_param(mmp_head *h, const char *name);

/* linear/mlp: logits[N,C] from x[N,D]. train = 1 applies dropout with rng
 * and keeps the activations for mmp_head_backward. */
void mmp_head_forward(mmp_head *h, const float *x, int64_t N, int train, uint64_t *rng,
                      float *logits);
/* Parameter gradients (overwritten) from dlogits[N,C]; x as in forward. */
void mmp_head_backward(mmp_head *h, const float *x, int64_t N, const float *dlogits);

/* fusion heads: logits[N,C] from a[N,Da], b[N,Db]; fused (may be NULL) gets
 * h[N,F]. Keeps what mmp_head_fuse_backward needs (the last forward's rows). */
void mmp_head_fuse_forward(mmp_head *h, const float *a, const float *b, int64_t N, float *fused,
                           float *logits);
/* Parameter gradients (overwritten) from dlogits[N,C], after the forward of
 * the same a, b. */
void mmp_head_fuse_backward(mmp_head *h, const float *a, const float *b, int64_t N, const float *dlogits);

/* pair: za[N,E] = x[N,D] Wi^T, zb[N,E] = y[N,D2] Wt^T (either side may be NULL). */
void mmp_head_pair_forward(mmp_head *h, const float *x, const float *y, int64_t N, float *za,
                           float *zb);
/* Gradients of both projections (overwritten) from dza, dzb. */
void mmp_head_pair_backward(mmp_head *h, const float *x, const float *y, int64_t N,
                            const float *dza, const float *dzb);

#ifdef __cplusplus
}
#endif
#endif
