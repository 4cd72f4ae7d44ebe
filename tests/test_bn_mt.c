/* train/bn_mt.h: the fused, threaded train-mode BatchNorm + residual +
 * activation (forward and backward) gives the same bits as the serial layer
 * functions one after the other (mmp_bn_train_forward, the residual add,
 * mmp_relu6_* / mmp_relu_*, mmp_bn_train_backward) for 1..5 threads, with and
 * without the residual and the running statistics, for every activation, on
 * sizes that do and do not split evenly (and below the one-thread cut-off);
 * values at and around the ReLU6 clamps. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "testlib.h"
#include "train/bn_mt.h"
#include "train/cnn_tail.h"
#include "train/layers.h"

static uint64_t rs = 4242;
static float urand(void) {
    rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rs >> 40) / 16777216.0);
}

static float *fill(size_t n, float lo, float hi) {
    float *a = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) a[i] = lo + (hi - lo) * urand();
    return a;
}

static float *fdup(const float *a, size_t n) {
    float *b = malloc(sizeof(float) * n);
    memcpy(b, a, sizeof(float) * n);
    return b;
}

static int same(const float *a, const float *b, size_t n) { return !memcmp(a, b, sizeof(float) * n); }

static void one(int64_t M, int64_t C, int act, int with_skip, int with_running) {
    size_t n = (size_t)(M * C);
    float *x = fill(n, -3, 9), *w = fill((size_t)C, 0.5f, 2), *b = fill((size_t)C, -1, 1);
    float *skip = with_skip ? fill(n, -2, 2) : NULL;
    float *gy = fill(n, -1, 1), *gs0 = fill(n, -1, 1);
    x[0] = 6; x[1] = 0; /* exact clamp points */
    float *rm0 = fill((size_t)C, -1, 1), *rv0 = fill((size_t)C, 0.5f, 2);
    /* reference: the serial functions */
    float *y = malloc(sizeof(float) * n), *mean = malloc(sizeof(float) * (size_t)C), *inv = malloc(sizeof(float) * (size_t)C);
    float *rm = fdup(rm0, (size_t)C), *rv = fdup(rv0, (size_t)C);
    mmp_bn_train_forward(x, M, C, w, b, 0.1f, with_running ? rm : NULL, with_running ? rv : NULL, mean, inv, y);
    if (skip)
        for (size_t e = 0; e < n; e++) y[e] += skip[e];
    if (act == MMP_ACT_RELU6) mmp_relu6_forward(y, n);
    else if (act == MMP_ACT_RELU) mmp_relu_forward(y, n);
    float *g = fdup(gy, n), *gs = fdup(gs0, n), *dw = malloc(sizeof(float) * (size_t)C), *db = malloc(sizeof(float) * (size_t)C);
    if (act == MMP_ACT_RELU6) mmp_relu6_backward(y, g, n);
    else if (act == MMP_ACT_RELU) mmp_relu_backward(y, g, n);
    if (skip)
        for (size_t e = 0; e < n; e++) gs[e] += g[e];
    mmp_bn_train_backward(x, g, M, C, w, mean, inv, g, dw, db);
    for (int T = 1; T <= 5; T++) {
        float *y2 = malloc(sizeof(float) * n), *mean2 = malloc(sizeof(float) * (size_t)C), *inv2 = malloc(sizeof(float) * (size_t)C);
        float *rm2 = fdup(rm0, (size_t)C), *rv2 = fdup(rv0, (size_t)C);
        mmp_bn_train_act_forward(x, M, C, w, b, 0.1f, with_running ? rm2 : NULL, with_running ? rv2 : NULL, mean2, inv2, y2,
                                 skip, act, T);
        CHECKF(same(y, y2, n) && same(mean, mean2, (size_t)C) && same(inv, inv2, (size_t)C),
               "forward M=%lld C=%lld act %d skip %d: %d threads differ from the serial layers", (long long)M, (long long)C,
               act, with_skip, T);
        CHECKF(same(rm, rm2, (size_t)C) && same(rv, rv2, (size_t)C), "running statistics, %d threads", T);
        float *g2 = fdup(gy, n), *gs2 = fdup(gs0, n), *dw2 = malloc(sizeof(float) * (size_t)C), *db2 = malloc(sizeof(float) * (size_t)C);
        mmp_bn_train_act_backward(x, y2, g2, M, C, w, mean2, inv2, skip ? gs2 : NULL, act, dw2, db2, T);
        CHECKF(same(g, g2, n) && same(dw, dw2, (size_t)C) && same(db, db2, (size_t)C) && same(gs, gs2, n),
               "backward M=%lld C=%lld act %d skip %d: %d threads differ from the serial layers", (long long)M, (long long)C,
               act, with_skip, T);
        free(y2); free(mean2); free(inv2); free(rm2); free(rv2); free(g2); free(gs2); free(dw2); free(db2);
    }
    free(x); free(w); free(b); free(skip); free(gy); free(gs0); free(rm0); free(rv0);
    free(y); free(mean); free(inv); free(rm); free(rv); free(g); free(gs); free(dw); free(db);
}

int main(void) {
    int64_t sizes[][2] = {{7, 3}, {64 * 9, 96}, {2 * 24 * 24, 37}, {4 * 48 * 48, 16}, {3 * 12 * 12, 160}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int act = MMP_ACT_NONE; act <= MMP_ACT_RELU; act++)
            for (int sk = 0; sk < 2; sk++) one(sizes[s][0], sizes[s][1], act, sk, (s + act + sk) % 2);
    TEST_END();
}
