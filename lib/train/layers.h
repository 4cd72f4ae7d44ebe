/* train/layers.h: the layers and losses of mmp-train-step (the torch.nn part).
 *
 * Every layer/loss is a forward/backward pair of plain C functions with the
 * shapes in comments, row-major float32, no hidden global state; plus
 * feature standardization. Semantics follow PyTorch 1.13 (torch.nn)
 * exactly; the parity fixtures in tests/fixtures/train
 * (tests/fixtures/gen_train.py) check it. Optimizers, gradient clipping and
 * learning-rate schedules are in train/optim.h.
 *
 * Matrix products use mmp_sgemm (nn/gemm.h): single-threaded, and each
 * element's summation order fixed, so results never depend on --threads or
 * on the batch composition. mmp_train_init_blas() decides the CPU's
 * instruction-set level once (lib/cpu.h), before any thread starts.
 */
#ifndef MMP_TRAIN_LAYERS_H
#define MMP_TRAIN_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h" /* dropout masks: SplitMix64 streams */

#ifdef __cplusplus
extern "C" {
#endif

/* The GEMM's instruction-set level decided (MMP_ISA read) up front. */
void mmp_train_init_blas(void);

/* ---------------------------------------------------------------- */
/* layers                                                            */
/* ---------------------------------------------------------------- */

/* nn.Linear: y[N,O] = x[N,I] @ W[O,I]^T + b[O]  (b may be NULL). */
void mmp_linear_forward(const float *x, int64_t N, int64_t I, const float *W, const float *b,
                        int64_t O, float *y);
/* Given dy[N,O]: dW[O,I] = dy^T x, db[O] = sum_n dy (both overwritten;
 * NULL to skip), dx[N,I] = dy W (NULL to skip). */
void mmp_linear_backward(const float *x, const float *dy, int64_t N, int64_t I, const float *W,
                         int64_t O, float *dx, float *dW, float *db);

/* ReLU in place: x[n] = max(x,0). */
void mmp_relu_forward(float *x, size_t n);
/* dx[n] *= (y > 0), y = the ReLU output. In place on dx. */
void mmp_relu_backward(const float *y, float *dx, size_t n);

/* nn.Dropout(p), training mode: mask[n] = 0 with probability p, else
 * 1/(1-p); x *= mask. p == 0 leaves x unchanged (mask all 1). */
void mmp_dropout_forward(float *x, float *mask, size_t n, float p, mmp_rng *rng);
/* dx *= mask. */
void mmp_dropout_backward(const float *mask, float *dx, size_t n);

/* Row softmax: out[N,C] = softmax(z[N,C]) (out may alias z). */
void mmp_softmax(const float *z, float *out, int64_t N, int64_t C);
/* Elementwise sigmoid. */
void mmp_sigmoid(const float *z, float *out, size_t n);

/* ---------------------------------------------------------------- */
/* losses: return the loss value (mean reduction), write the gradient */
/* w.r.t. the inputs when the gradient pointer is non-NULL             */
/* ---------------------------------------------------------------- */

/* nn.CrossEntropyLoss(weight, label_smoothing), reduction='mean':
 * z[N,C] logits, y[N] labels in [0,C), w[C] class weights or NULL.
 * loss = sum_i [(1-e) w[y_i] (-log p_i,y_i) + e/C sum_c w_c (-log p_ic)] / sum_i w[y_i]
 * dz[N,C] gradient. Returns NAN if a label is out of range. */
double mmp_ce_loss(const float *z, const int64_t *y, int64_t N, int64_t C, const float *w,
                   double smoothing, float *dz);

/* nn.BCEWithLogitsLoss(), reduction='mean' over N*C elements:
 * z[N,C] logits, t[N,C] targets in [0,1]; dz[N,C]. */
double mmp_bce_logits_loss(const float *z, const float *t, int64_t N, int64_t C, float *dz);

/* CLIP's symmetric InfoNCE. za[N,E], zb[N,E] are the projected embeddings
 * of the N pairs (before normalization); logit_scale the learnable log
 * temperature:
 *   a = za/||za||, b = zb/||zb|| (F.normalize, eps 1e-12)
 *   S = exp(logit_scale) a b^T               [N,N]
 *   loss = (CE(S, arange N) + CE(S^T, arange N)) / 2
 * dza, dzb [N,E]; dscale = dloss/dlogit_scale (each may be NULL). */
double mmp_clip_loss(const float *za, const float *zb, int64_t N, int64_t E, float logit_scale,
                     float *dza, float *dzb, float *dscale);

/* nn.TripletMarginLoss(margin, p=2, eps=1e-6, swap=False), mean over T
 * triplets (anchor A[ai[t]], positive P[pi[t]], negative Q[ni[t]]; rows of
 * D floats): d(x,y) = ||x - y + eps||_2, l_t = max(d(a,p) - d(a,n) + margin, 0).
 * ai/pi/ni NULL = identity (t-th row). Gradients are ACCUMULATED (+=) into
 * dA, dP, dQ (which may alias each other when P and Q are the same array). */
double mmp_triplet_loss(const float *A, const float *P, const float *Q, const int64_t *ai,
                        const int64_t *pi, const int64_t *ni, int64_t T, int64_t D, double margin,
                        float *dA, float *dP, float *dQ);

/* In-batch negative mining for pairs (a_i, b_i), i < N (rows of D floats):
 * hard: ni[i] = argmin_{j != i} d(a_i, b_j) (lowest j on ties) -> N triplets;
 * all:  every (i, j != i) -> N(N-1) triplets.
 * Fills ai/pi/ni (capacity N*(N-1) for all, N for hard); returns T. */
int64_t mmp_triplet_mine(const float *a, const float *b, int64_t N, int64_t D, int hard,
                         int64_t *ai, int64_t *pi, int64_t *ni);

/* ---------------------------------------------------------------- */
/* feature standardization (sklearn StandardScaler: population std,  */
/* a zero std becomes 1)                                             */
/* ---------------------------------------------------------------- */

/* mean[D], std[D] over the N rows of x[N,D] (double accumulation, fixed order). */
void mmp_standardize_fit(const float *x, int64_t N, int64_t D, float *mean, float *std);
/* x = (x - mean) / std in place. */
void mmp_standardize_apply(float *x, int64_t N, int64_t D, const float *mean, const float *std);

#ifdef __cplusplus
}
#endif
#endif
