/* train/nn.h: the learning primitives of mmp-train-step.
 *
 * Layers, losses, optimizers, learning-rate schedules and gradient clipping
 * as plain C functions: every layer/loss is a forward/backward pair with the
 * shapes in comments, row-major float32, no hidden global state.
 * Semantics follow PyTorch 1.13 (torch.nn / torch.optim) exactly; the
 * parity fixtures in tests/fixtures/train (tests/fixtures/gen_train.py)
 * check it.
 *
 * Matrix products use OpenBLAS sgemm; call mmp_train_init_blas() once to
 * pin it to one thread (determinism: results never depend on --threads).
 */
#ifndef MMP_TRAIN_NN_H
#define MMP_TRAIN_NN_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h" /* SplitMix64 streams: mmp_rng_derive, mmp_rng_permutation, ... */

#ifdef __cplusplus
extern "C" {
#endif

/* OpenBLAS to 1 thread (bit-identical results whatever the machine load). */
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
/* parameters and optimizers                                         */
/* ---------------------------------------------------------------- */

#define MMP_PARAM_MAXDIM 4
typedef struct {
    char name[64];  /* torch state_dict name, e.g. "layers.0.weight" */
    int ndim;       /* 0 for a scalar such as logit_scale */
    int64_t shape[MMP_PARAM_MAXDIM];
    size_t n;       /* numel */
    float *w;       /* value */
    float *g;       /* gradient */
    float *s1;      /* optimizer state: SGD momentum_buffer / AdamW exp_avg (NULL until used) */
    float *s2;      /* AdamW exp_avg_sq */
    int decay;      /* weight decay applies (all weights and biases; not logit_scale) */
} mmp_param;

/* Allocates w, g (zeroed) for n = prod(shape). */
void mmp_param_init(mmp_param *p, const char *name, int ndim, const int64_t *shape, int decay);
void mmp_param_free(mmp_param *p);

typedef enum { MMP_OPT_SGD = 0, MMP_OPT_ADAMW = 1 } mmp_opt_kind;

typedef struct {
    mmp_opt_kind kind;
    double weight_decay; /* SGD: L2 added to the gradient; AdamW: decoupled p *= 1 - lr*wd */
    double momentum;     /* SGD */
    double dampening;    /* SGD (torch default 0) */
    int nesterov;        /* SGD */
    double beta1, beta2, eps; /* AdamW (0.9, 0.999, 1e-8) */
} mmp_optim;

void mmp_optim_defaults(mmp_optim *o, mmp_opt_kind kind);
/* One step of torch.optim.SGD / torch.optim.AdamW on every parameter with
 * learning rate lr. step = number of steps already taken (0 on the first
 * call); state buffers are allocated on first use. */
void mmp_optim_step(const mmp_optim *o, mmp_param *ps, int np, int64_t step, double lr);
/* State tensor names for parameter p: torch's "exp_avg"/"exp_avg_sq"
 * (AdamW) or "momentum_buffer" (SGD with momentum); NULL when unused. */
const char *mmp_optim_state_name(const mmp_optim *o, int which);

/* torch.nn.utils.clip_grad_norm_(params, max_norm) with norm_type 2:
 * total = ||(||g_1||, ||g_2||, ...)||_2; if max_norm > 0 the gradients
 * are scaled by min(1, max_norm/(total+1e-6)). Returns total. */
double mmp_clip_grad_norm(mmp_param *ps, int np, double max_norm);

/* ---------------------------------------------------------------- */
/* learning-rate schedules (per optimizer step)                       */
/* ---------------------------------------------------------------- */

typedef enum { MMP_SCHED_CONSTANT = 0, MMP_SCHED_STEP, MMP_SCHED_COSINE } mmp_sched_kind;

typedef struct {
    mmp_sched_kind kind;
    double lr;          /* base learning rate */
    int64_t warmup;     /* linear warm-up steps: lr*(t+1)/warmup for t < warmup */
    int64_t total;      /* total steps (cosine) */
    int64_t step_size;  /* step: multiply by gamma every step_size steps after warm-up */
    double gamma;
    double min_lr;      /* cosine floor (eta_min) */
} mmp_sched;

/* Learning rate for the step with 0-based index t:
 *   t < warmup: lr * (t+1) / warmup
 *   constant:   lr
 *   step:       lr * gamma^floor((t-warmup)/step_size)
 *   cosine:     min_lr + (lr-min_lr) * (1 + cos(pi * min(t-warmup, T) / T)) / 2, T = total-warmup */
double mmp_sched_lr(const mmp_sched *s, int64_t t);
const char *mmp_sched_name(mmp_sched_kind k);
int mmp_sched_parse(const char *s, mmp_sched_kind *k);

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
