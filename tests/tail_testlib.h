/* Helpers shared by the CNN-tail head tests (test_train_tail,
 * test_train_resnet_tail): seeded inputs, the scale-aware comparison used
 * against PyTorch fixtures and finite differences, fixture lookup, and the
 * optimizer steps the steps fixtures were made with. */
#ifndef MMP_TAIL_TESTLIB_H
#define MMP_TAIL_TESTLIB_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "testlib.h"
#include "train/head.h"
#include "train/layers.h"
#include "train/optim.h"

/* uniform in [-1, 1) from the training RNG state *s */
static inline float t_trnd(uint64_t *s) { return (float)(mmp_rng_uniform53(s) * 2 - 1); }
static inline void t_fill(uint64_t *s, float *a, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) a[i] = t_trnd(s) * scale;
}

/* scale-aware comparison, printed: |a-b| <= tol * max|b| (NaN fails);
 * returns the worst relative error */
static inline double t_cmp_scaled(const char *what, const float *a, const float *b, size_t n, double tol) {
    double mx = 0, worst = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)b[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (mx + 1e-30);
        if (d > worst || d != d) { worst = d != d ? INFINITY : d; w = i; }
    }
    printf("%-52s n=%-5zu max rel err %.3g (tol %.0e)\n", what, n, worst, tol);
    CHECKF(worst <= tol, "%s: element %zu: %.9g vs %.9g (rel %.3g)", what, w, a[w], b[w], worst);
    return worst;
}

typedef double (*loss_fn)(void *ctx);
/* numeric dL/dp for every element of p (central, step h) vs analytic g */
static inline void t_fd(const char *what, float *p, size_t n, const float *g, loss_fn L, void *ctx, float h, double tol) {
    float *num = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) {
        float s = p[i];
        p[i] = s + h;
        double lp = L(ctx);
        p[i] = s - h;
        double lm = L(ctx);
        p[i] = s;
        num[i] = (float)((lp - lm) / (2.0 * (double)h));
    }
    char nm[96];
    snprintf(nm, sizeof nm, "fd %s", what);
    t_cmp_scaled(nm, g, num, n, tol);
    free(num);
}

/* an f32 tensor of a fixture file; exits when it is missing */
static inline const mmp_tensor *t_fixture_f32(const mmp_safetensors *st, const char *name) {
    const mmp_tensor *t = mmp_st_get(st, name);
    if (!t || t->dtype != MMP_F32) {
        fprintf(stderr, "fixture tensor %s missing\n", name);
        exit(1);
    }
    return t;
}
/* the steps fixtures' optimizers: o = 0 AdamW (weight decay 1e-2, lr 1e-2),
 * 1 SGD (momentum 0.9, weight decay 1e-3, lr sgd_lr); returns the lr */
static inline double t_fixture_optim(mmp_optim *opt, int o, double sgd_lr) {
    mmp_optim_defaults(opt, o ? MMP_OPT_SGD : MMP_OPT_ADAMW);
    if (o) { opt->momentum = 0.9; opt->weight_decay = 1e-3; return sgd_lr; }
    opt->weight_decay = 1e-2;
    return 1e-2;
}

/* steps training steps of h on x[N,D], y[N]: batch s holds rows (s*B + b) % N;
 * losses[s] = its cross-entropy before the step */
static inline void t_train_steps(mmp_head *h, const mmp_optim *opt, double lr, const float *x, const int64_t *y, int N,
                                 int64_t D, int C, int steps, int B, uint64_t *rng, float *losses) {
    float *bx = malloc(sizeof(float) * (size_t)(B * D)), *bl = malloc(sizeof(float) * (size_t)(B * C)),
          *bd = malloc(sizeof(float) * (size_t)(B * C));
    int64_t *by = malloc(sizeof(int64_t) * (size_t)B);
    for (int s = 0; s < steps; s++) {
        for (int b = 0; b < B; b++) {
            int r = (s * B + b) % N;
            memcpy(bx + b * D, x + r * D, sizeof(float) * (size_t)D);
            by[b] = y[r];
        }
        mmp_head_forward(h, bx, B, 1, rng, bl);
        losses[s] = (float)mmp_ce_loss(bl, by, B, C, NULL, 0, bd);
        mmp_head_backward(h, bx, B, bd);
        mmp_optim_step(opt, h->params, h->np, s, lr);
    }
    free(bx);
    free(bl);
    free(bd);
    free(by);
}
/* h's weights followed by dx[ndx], bit for bit: the first call (*ref NULL)
 * keeps a copy in *ref (free it) and returns 1; later calls return whether
 * they equal it */
static inline int t_same_state(const mmp_head *h, const float *dx, size_t ndx, float **ref) {
    size_t total = ndx, o = 0;
    for (int i = 0; i < h->np; i++) total += h->params[i].n;
    float *cur = malloc(sizeof(float) * total);
    for (int i = 0; i < h->np; i++) {
        memcpy(cur + o, h->params[i].w, sizeof(float) * h->params[i].n);
        o += h->params[i].n;
    }
    memcpy(cur + o, dx, sizeof(float) * ndx);
    if (!*ref) {
        *ref = cur;
        return 1;
    }
    int same = !memcmp(*ref, cur, sizeof(float) * total);
    free(cur);
    return same;
}
#endif
