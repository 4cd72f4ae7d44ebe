/* train/vqa.h: the visual question answering models of mmp-train-step
 * (--head vqa, --head vqa-pooled): question tokens attend to spatial image
 * tokens through cross-attention layers, then a classifier over the answer
 * vocabulary; and the pooled baseline on the same features.
 *
 * Inputs of one record: its image tokens xi [Ni, Ci] (mmp-embed --layer
 * BLOCK:tokens or tokens: a CNN block's h x w grid or a ViT's patches) and
 * its question tokens xq [Nq, Cq] (the text tower's last hidden states,
 * [CLS] and [SEP] included). A batch packs the records' tokens one after
 * another (kvlens[b] image tokens, qlens[b] question tokens: no padding).
 *
 * --head vqa (cross-attention), the PyTorch module VQAFusion of
 * tests/fixtures/gen_vqa.py, whose state_dict names these are:
 *   h  = img_proj(xi) + img_pos                img_proj.weight [D,Ci], .bias [D];
 *                                              img_pos [P, D] (--vqa-pos grid: P = Ni,
 *                                              learned 2-D positions of the grid,
 *                                              raster order; absent with --vqa-pos none)
 *   IL times (--img-layers, img_layers.l.*: nn.TransformerEncoderLayer(D, H, 4D,
 *   dropout 0, activation "gelu", norm_first=True), the image's tokens attend to
 *   each other):
 *     h = h + self_attn(norm1(h))              self_attn.in_proj_weight [3D,D], .in_proj_bias,
 *                                              self_attn.out_proj.weight/.bias, norm1.*
 *     h = h + linear2(gelu(linear1(norm2(h)))) linear1 [4D,D], linear2 [D,4D], norm2.*
 *   kv = img_norm(h)                           img_norm.weight/.bias [D] (LayerNorm)
 *   x  = q_proj(xq)                            q_proj.weight [D,Cq], .bias [D]
 *   L times (pre-LN cross-attention block, layers.l.*):
 *     x = x + attn(ln1(x), kv, kv)             ln1.weight/.bias; attn = nn.MultiheadAttention(D, H):
 *                                              attn.in_proj_weight [3D,D], attn.in_proj_bias [3D],
 *                                              attn.out_proj.weight [D,D], attn.out_proj.bias [D]
 *     x = x + mlp(ln2(x))                      ln2.*; mlp.0 = Linear(D, 4D), GELU (erf),
 *                                              mlp.2 = Linear(4D, D)
 *   p = mean over the question's tokens of norm(x)   norm.weight/.bias [D]
 *   logits = classifier(p)                     classifier.0 = Linear(D, Hc), ReLU,
 *                                              classifier.2 = Linear(Hc, K)
 * --head vqa-pooled (the baseline): u = [mean of xi, mean of xq] (Ci + Cq),
 *   logits = classifier(u), classifier.0 = Linear(Ci + Cq, Hc), ReLU,
 *   classifier.2 = Linear(Hc, K).
 * LayerNorm eps 1e-5. Initialization (--seed): torch's defaults
 * (Linear U(+-1/sqrt(fan_in)), MultiheadAttention's xavier_uniform
 * in_proj and zero biases, LayerNorm ones/zeros), img_pos N(0, 0.02).
 *
 * Loss (mmp_vqa_loss): several answers per question: soft scores
 * t = min(count / 3, 1) per answer of the vocabulary, BCE with logits summed
 * over the answers and averaged over the batch (BCEWithLogitsLoss(mean) * K,
 * as the bottom-up top-down VQA baseline); one answer: softmax cross-entropy
 * (mean over the batch). */
#ifndef MMP_TRAIN_VQA_H
#define MMP_TRAIN_VQA_H

#include <stddef.h>
#include <stdint.h>

#include "train/optim.h"

typedef struct {
    int pooled;   /* 1: --head vqa-pooled */
    int Ci, Cq;   /* image / question token widths */
    int D, NH, L; /* fusion width, attention heads, cross-attention layers */
    int IL;       /* image self-attention layers before them (0: none) */
    int npos;     /* learned position embeddings of the image grid (tokens; 0: none) */
    int hidden;   /* classifier hidden width */
    int K;        /* answers */
} mmp_vqa_config;

typedef struct mmp_vqa mmp_vqa;

/* A model with zeroed parameters. NULL with one line in err (D % NH, a size < 1). */
mmp_vqa *mmp_vqa_new(const mmp_vqa_config *c, char *err, size_t errlen);
void mmp_vqa_free(mmp_vqa *m);
const mmp_vqa_config *mmp_vqa_cfg(const mmp_vqa *m);
/* torch's default initialization from seed (see above). */
void mmp_vqa_init_weights(mmp_vqa *m, uint64_t seed);
/* The parameters (state_dict names, in the module's order). */
mmp_param *mmp_vqa_params(mmp_vqa *m, int *np);
mmp_param *mmp_vqa_param(mmp_vqa *m, const char *name);

/* logits [B, K] of B records: xi [sum kvlens, Ci], xq [sum qlens, Cq]
 * (every length >= 1; with position embeddings every kvlens[b] == npos:
 * the caller checks). Keeps what mmp_vqa_backward needs. */
void mmp_vqa_forward(mmp_vqa *m, const float *xi, const int *kvlens, const float *xq, const int *qlens, int B,
                     float *logits);
/* Parameter gradients (overwritten) from dlogits [B, K], after the forward
 * of the same batch. */
void mmp_vqa_backward(mmp_vqa *m, const float *dlogits);
/* The same, and dxq [sum qlens, Cq] (overwritten; NULL: not computed) =
 * d loss / d the question tokens xq (the text tower's training backward
 * takes it: --text-unfreeze lora|all). */
void mmp_vqa_backward_q(mmp_vqa *m, const float *dlogits, float *dxq);

/* The loss of logits [B, K]: bce: targets t [B, K] (soft scores), else the
 * labels y [B] (CE). dlogits [B, K] (may be NULL). */
double mmp_vqa_loss(const float *logits, const float *t, const int64_t *y, int B, int K, int bce, float *dlogits);

/* Soft score of an answer given count annotators: min(count / 3, 1)
 * (the VQA v2 targets; the official accuracy averages over 10 choose 9
 * annotator subsets, which mmp-report computes). */
static inline float mmp_vqa_soft_score(int count) { return count >= 3 ? 1.0f : (float)count / 3.0f; }

#endif
