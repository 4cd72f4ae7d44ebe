/* train/bn_mt.c: train-mode BatchNorm2d + residual + activation, fused and
 * threaded (see bn_mt.h). The arithmetic is that of mmp_bn_train_forward /
 * mmp_bn_train_backward, mmp_relu6_* / mmp_relu_* and the residual loops of
 * cnn_tail.c, operation for operation. */
#include "train/bn_mt.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "mmp.h"
#include "train/cnn_tail.h"

#define BN_MT_MAX_THREADS 16
#define BN_MT_MIN_WORK 32768 /* elements per thread below which one thread does it all */

typedef void (*range_fn)(void *ctx, int64_t a, int64_t b);
typedef struct {
    range_fn fn;
    void *ctx;
    int64_t n;
    int T, i;
} part;

static void *part_run(void *p) {
    part *q = p;
    int64_t a = q->n * q->i / q->T, b = q->n * (q->i + 1) / q->T;
    if (b > a) q->fn(q->ctx, a, b);
    return NULL;
}

/* fn over [0, n) cut in T contiguous ranges, T-1 on new threads (the result
 * must not depend on the cut: callers make every element / channel's value
 * a function of that element / channel only) */
static void par(int T, int64_t n, int64_t work, range_fn fn, void *ctx) {
    if (T > BN_MT_MAX_THREADS) T = BN_MT_MAX_THREADS;
    if (T > n) T = (int)n;
    if ((int64_t)T * BN_MT_MIN_WORK > work) T = (int)(work / BN_MT_MIN_WORK);
    if (T <= 1) {
        if (n > 0) fn(ctx, 0, n);
        return;
    }
    pthread_t th[BN_MT_MAX_THREADS];
    part p[BN_MT_MAX_THREADS];
    int started[BN_MT_MAX_THREADS] = {0};
    for (int i = 0; i < T; i++) p[i] = (part){fn, ctx, n, T, i};
    for (int i = 1; i < T; i++) started[i] = pthread_create(&th[i], NULL, part_run, &p[i]) == 0;
    part_run(&p[0]);
    for (int i = 1; i < T; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        else part_run(&p[i]); /* no thread: the same range here */
    }
}

typedef struct {
    const float *x, *weight, *bias, *skip, *y, *cmean, *cinvstd; /* cmean/cinvstd: the backward's */
    float *rmean, *rvar, *mean, *invstd, *out, *g, *gskip, *dweight, *dbias;
    double *s, *q, *sg, *sd;
    float *gm, *k, *sc;
    int64_t M, C;
    float momentum;
    int act;
} bn_ctx;

/* forward statistics of channels [c0, c1) (mmp_bn_train_forward's loops) */
static void fwd_stats(void *p, int64_t c0, int64_t c1) {
    bn_ctx *b = p;
    const int64_t M = b->M, C = b->C;
    double *s = b->s, *q = b->q;
    for (int64_t c = c0; c < c1; c++) s[c] = q[c] = 0;
    for (int64_t m = 0; m < M; m++) {
        const float *xr = b->x + m * C;
        for (int64_t c = c0; c < c1; c++) s[c] += xr[c];
    }
    for (int64_t c = c0; c < c1; c++) s[c] = M > 0 ? s[c] / (double)M : 0;
    for (int64_t m = 0; m < M; m++) {
        const float *xr = b->x + m * C;
        for (int64_t c = c0; c < c1; c++) {
            double d = (double)xr[c] - s[c];
            q[c] += d * d;
        }
    }
    const float momentum = b->momentum;
    for (int64_t c = c0; c < c1; c++) {
        double var = M > 0 ? q[c] / (double)M : 0;
        b->mean[c] = (float)s[c];
        b->invstd[c] = (float)(1.0 / sqrt(var + (double)MMP_BN_EPS));
        if (b->rmean) b->rmean[c] = (1 - momentum) * b->rmean[c] + momentum * (float)s[c];
        if (b->rvar) b->rvar[c] = (1 - momentum) * b->rvar[c] + momentum * (float)(M > 1 ? q[c] / (double)(M - 1) : var);
    }
}

/* rows [m0, m1): normalize, add the residual, activate */
static void fwd_apply(void *p, int64_t m0, int64_t m1) {
    bn_ctx *b = p;
    const int64_t C = b->C;
    const float *mean = b->mean, *invstd = b->invstd, *weight = b->weight, *bias = b->bias;
    for (int64_t m = m0; m < m1; m++) {
        const float *xr = b->x + m * C, *sk = b->skip ? b->skip + m * C : NULL;
        float *yr = b->out + m * C;
        for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - mean[c]) * invstd[c] * weight[c] + bias[c];
        if (sk)
            for (int64_t c = 0; c < C; c++) yr[c] += sk[c];
        if (b->act == MMP_ACT_RELU6)
            for (int64_t c = 0; c < C; c++) yr[c] = yr[c] < 0 ? 0 : yr[c] > 6 ? 6 : yr[c];
        else if (b->act == MMP_ACT_RELU)
            for (int64_t c = 0; c < C; c++) yr[c] = yr[c] > 0 ? yr[c] : 0.0f;
    }
}

void mmp_bn_train_act_forward(const float *x, int64_t M, int64_t C, const float *weight, const float *bias,
                              float momentum, float *rmean, float *rvar, float *mean, float *invstd, float *y,
                              const float *skip, int act, int threads) {
    bn_ctx b = {.x = x, .weight = weight, .bias = bias, .skip = skip, .rmean = rmean, .rvar = rvar, .mean = mean,
                .invstd = invstd, .out = y, .M = M, .C = C, .momentum = momentum, .act = act};
    b.s = mmp_xmalloc(sizeof(double) * (size_t)(2 * C));
    b.q = b.s + C;
    par(threads, C, M * C, fwd_stats, &b);
    par(threads, M, M * C, fwd_apply, &b);
    free(b.s);
}

/* rows [m0, m1): the activation's backward, the residual's gradient */
static void bwd_act(void *p, int64_t m0, int64_t m1) {
    bn_ctx *b = p;
    const size_t e0 = (size_t)(m0 * b->C), e1 = (size_t)(m1 * b->C);
    float *g = b->g;
    const float *y = b->y;
    if (b->act == MMP_ACT_RELU6) {
        for (size_t i = e0; i < e1; i++)
            if (!(y[i] > 0 && y[i] < 6)) g[i] = 0;
    } else if (b->act == MMP_ACT_RELU) {
        for (size_t i = e0; i < e1; i++)
            if (!(y[i] > 0)) g[i] = 0.0f;
    }
    if (b->gskip)
        for (size_t i = e0; i < e1; i++) b->gskip[i] += g[i];
}

/* channels [c0, c1): the sums of mmp_bn_train_backward, dweight, dbias, the dx coefficients */
static void bwd_stats(void *p, int64_t c0, int64_t c1) {
    bn_ctx *b = p;
    const int64_t M = b->M, C = b->C;
    double *sg = b->sg, *sd = b->sd;
    const float *mean = b->cmean, *invstd = b->cinvstd;
    for (int64_t c = c0; c < c1; c++) sg[c] = sd[c] = 0;
    for (int64_t m = 0; m < M; m++) {
        const float *xr = b->x + m * C, *gr = b->g + m * C;
        for (int64_t c = c0; c < c1; c++) {
            sg[c] += gr[c];
            sd[c] += (double)gr[c] * ((double)xr[c] - mean[c]);
        }
    }
    if (b->dweight)
        for (int64_t c = c0; c < c1; c++) b->dweight[c] = (float)(sd[c] * invstd[c]);
    if (b->dbias)
        for (int64_t c = c0; c < c1; c++) b->dbias[c] = (float)sg[c];
    if (M > 0)
        for (int64_t c = c0; c < c1; c++) {
            b->gm[c] = (float)(sg[c] / (double)M);
            b->k[c] = (float)(sd[c] / (double)M * (double)invstd[c] * (double)invstd[c]);
            b->sc[c] = invstd[c] * b->weight[c];
        }
}

/* rows [m0, m1): dx = (dy - mean(dy) - (x-mean) * k) * invstd*weight, in place */
static void bwd_dx(void *p, int64_t m0, int64_t m1) {
    bn_ctx *b = p;
    const int64_t C = b->C;
    const float *gm = b->gm, *k = b->k, *sc = b->sc, *mean = b->cmean;
    for (int64_t m = m0; m < m1; m++) {
        const float *xr = b->x + m * C;
        float *gr = b->g + m * C;
        for (int64_t c = 0; c < C; c++) gr[c] = (gr[c] - gm[c] - (xr[c] - mean[c]) * k[c]) * sc[c];
    }
}

void mmp_bn_train_act_backward(const float *x, const float *y, float *g, int64_t M, int64_t C, const float *weight,
                               const float *mean, const float *invstd, float *gskip, int act, float *dweight,
                               float *dbias, int threads) {
    bn_ctx b = {.x = x, .y = y, .g = g, .gskip = gskip, .weight = weight, .cmean = mean, .cinvstd = invstd,
                .dweight = dweight, .dbias = dbias, .M = M, .C = C, .act = act};
    b.sg = mmp_xmalloc(sizeof(double) * (size_t)(2 * C));
    b.sd = b.sg + C;
    b.gm = mmp_xmalloc(sizeof(float) * (size_t)(3 * C));
    b.k = b.gm + C;
    b.sc = b.k + C;
    if (act != MMP_ACT_NONE || gskip) par(threads, M, M * C, bwd_act, &b);
    par(threads, C, M * C, bwd_stats, &b);
    if (M > 0) par(threads, M, M * C, bwd_dx, &b);
    free(b.gm);
    free(b.sg);
}
