/* train/optim.h: parameters, optimizers, gradient clipping and
 * learning-rate schedules of mmp-train-step (the torch.optim part).
 *
 * A parameter is a named float32 tensor with its gradient and optimizer
 * state; SGD (momentum, Nesterov) and AdamW follow torch.optim 1.13 exactly
 * (tests/fixtures/train). Layers and losses are in train/layers.h.
 */
#ifndef MMP_TRAIN_OPTIM_H
#define MMP_TRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>


#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- */
/* parameters and optimizers                                         */
/* ---------------------------------------------------------------- */

#define MMP_PARAM_MAXDIM 4
typedef struct {
    char name[128]; /* torch state_dict name, e.g. "layers.0.weight" */
    int ndim;       /* 0 for a scalar such as logit_scale */
    int64_t shape[MMP_PARAM_MAXDIM];
    size_t n;       /* numel */
    float *w;       /* value */
    float *g;       /* gradient */
    float *s1;      /* optimizer state: SGD momentum_buffer / AdamW exp_avg (NULL until used) */
    float *s2;      /* AdamW exp_avg_sq */
    int decay;      /* weight decay applies (all weights and biases; not logit_scale) */
    int frozen;     /* requires_grad = False: no gradient, no optimizer state, no weight decay,
                     * skipped by mmp_optim_step and mmp_clip_grad_norm (--unfreeze) */
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

#ifdef __cplusplus
}
#endif
#endif
