/* Analytic gradients of every layer and loss in lib/train/layers.c against
 * central finite differences of independent double-precision reference
 * implementations written here. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "testlib.h"
#include "train/layers.h"
#include "train/optim.h"

static uint64_t rs = 12345;
static float frand(void) { return (float)(mmp_rng_uniform53(&rs) * 2 - 1); }
static void fill(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] = s * frand();
}

typedef double (*ref_fn)(const double *x, void *ctx);

/* Compares analytic[i] with d f / d x[i] at x (float point, double reference). */
static void fd_check(const char *what, const float *x, size_t n, ref_fn f, void *ctx,
                     const float *analytic, double tol) {
    double *xd = malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++) xd[i] = x[i];
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double h = 1e-5 * (fabs(xd[i]) > 1 ? fabs(xd[i]) : 1), keep = xd[i];
        xd[i] = keep + h;
        double fp = f(xd, ctx);
        xd[i] = keep - h;
        double fm = f(xd, ctx);
        xd[i] = keep;
        double fd = (fp - fm) / (2 * h);
        double err = fabs(fd - analytic[i]) / (1e-3 + fabs(fd));
        if (err > worst) { worst = err; wi = i; }
    }
    printf("%-28s n=%-5zu max rel err %.2e\n", what, n, worst);
    CHECKF(worst < tol, "%s: gradient mismatch at %zu: rel err %.3e", what, wi, worst);
    free(xd);
}

/* ---------- linear: f = sum(R * (x W^T + b)) ---------- */
typedef struct { int64_t N, I, O; const float *x, *W, *b, *R; int which; } lin_ctx;
static double ref_linear(const double *v, void *c_) {
    lin_ctx *c = c_;
    double s = 0;
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t o = 0; o < c->O; o++) {
            double y = c->which == 2 ? v[o] : c->b[o];
            for (int64_t i = 0; i < c->I; i++) {
                double xv = c->which == 0 ? v[n * c->I + i] : c->x[n * c->I + i];
                double wv = c->which == 1 ? v[o * c->I + i] : c->W[o * c->I + i];
                y += xv * wv;
            }
            s += c->R[n * c->O + o] * y;
        }
    return s;
}

static void test_linear(void) {
    int64_t N = 5, I = 7, O = 4;
    float x[35], W[28], b[4], R[20], y[20], dx[35], dW[28], db[4];
    fill(x, 35, 1); fill(W, 28, 1); fill(b, 4, 1); fill(R, 20, 1);
    mmp_linear_forward(x, N, I, W, b, O, y);
    lin_ctx c = {N, I, O, x, W, b, R, 0};
    /* forward value */
    double s = 0;
    for (int k = 0; k < 20; k++) s += (double)R[k] * y[k];
    double dummy[1] = {0};
    double ref = ref_linear(dummy, &(lin_ctx){N, I, O, x, W, b, R, 3});
    CHECKF(fabs(s - ref) < 1e-5 * (1 + fabs(ref)), "linear forward %g vs %g", s, ref);
    mmp_linear_backward(x, R, N, I, W, O, dx, dW, db);
    c.which = 0; fd_check("linear dx", x, 35, ref_linear, &c, dx, 1e-4);
    c.which = 1; fd_check("linear dW", W, 28, ref_linear, &c, dW, 1e-4);
    c.which = 2; fd_check("linear db", b, 4, ref_linear, &c, db, 1e-4);
}

/* ---------- MLP block: f = sum(R * L2(dropout(relu(L1 x)))) w.r.t. x and W1 ---------- */
typedef struct { int64_t N, I, H, O; const float *x, *W1, *b1, *W2, *b2, *mask, *R; int which; } mlp_ctx;
static double ref_mlp(const double *v, void *c_) {
    mlp_ctx *c = c_;
    double s = 0;
    double *h = malloc(sizeof(double) * (size_t)c->H);
    for (int64_t n = 0; n < c->N; n++) {
        for (int64_t j = 0; j < c->H; j++) {
            double a = c->b1[j];
            for (int64_t i = 0; i < c->I; i++) {
                double xv = c->which == 0 ? v[n * c->I + i] : c->x[n * c->I + i];
                double wv = c->which == 1 ? v[j * c->I + i] : c->W1[j * c->I + i];
                a += xv * wv;
            }
            h[j] = (a > 0 ? a : 0) * c->mask[n * c->H + j];
        }
        for (int64_t o = 0; o < c->O; o++) {
            double y = c->b2[o];
            for (int64_t j = 0; j < c->H; j++) y += h[j] * c->W2[o * c->H + j];
            s += c->R[n * c->O + o] * y;
        }
    }
    free(h);
    return s;
}

static void test_mlp_block(void) {
    enum { N = 4, I = 6, H = 8, O = 3 };
    float x[N * I], W1[H * I], b1[H], W2[O * H], b2[O], R[N * O], h[N * H], mask[N * H], y[N * O];
    float dh[N * H], dx[N * I], dW1[H * I], db1[H], dW2[O * H], db2[O];
    fill(x, N * I, 1); fill(W1, H * I, 1); fill(b1, H, 0.5f); fill(W2, O * H, 1); fill(b2, O, 1);
    fill(R, N * O, 1);
    uint64_t rng = 7;
    mmp_linear_forward(x, N, I, W1, b1, H, h);
    mmp_relu_forward(h, N * H);
    float hr[N * H];
    memcpy(hr, h, sizeof hr);
    mmp_dropout_forward(h, mask, N * H, 0.25f, &rng);
    int zeros = 0;
    for (int k = 0; k < N * H; k++) {
        zeros += mask[k] == 0;
        CHECK(mask[k] == 0 || fabsf(mask[k] - 1 / 0.75f) < 1e-6f);
    }
    CHECK(zeros > 0 && zeros < N * H);
    mmp_linear_forward(h, N, H, W2, b2, O, y);
    mmp_linear_backward(h, R, N, H, W2, O, dh, dW2, db2);
    mmp_dropout_backward(mask, dh, N * H);
    mmp_relu_backward(hr, dh, N * H);
    mmp_linear_backward(x, dh, N, I, W1, H, dx, dW1, db1);
    mlp_ctx c = {N, I, H, O, x, W1, b1, W2, b2, mask, R, 0};
    fd_check("mlp dx (relu, dropout)", x, N * I, ref_mlp, &c, dx, 1e-4);
    c.which = 1;
    fd_check("mlp dW1", W1, H * I, ref_mlp, &c, dW1, 1e-4);
}

/* ---------- cross-entropy ---------- */
typedef struct { int64_t N, C; const int64_t *y; const float *w; double e; } ce_ctx;
static double ref_ce(const double *z, void *c_) {
    ce_ctx *c = c_;
    double num = 0, den = 0;
    for (int64_t i = 0; i < c->N; i++) {
        double m = -INFINITY, s = 0;
        for (int64_t k = 0; k < c->C; k++) m = fmax(m, z[i * c->C + k]);
        for (int64_t k = 0; k < c->C; k++) s += exp(z[i * c->C + k] - m);
        double lse = m + log(s);
        double wy = c->w ? c->w[c->y[i]] : 1;
        double smooth = 0;
        for (int64_t k = 0; k < c->C; k++) smooth += (c->w ? c->w[k] : 1) * (lse - z[i * c->C + k]);
        num += (1 - c->e) * wy * (lse - z[i * c->C + c->y[i]]) + c->e / c->C * smooth;
        den += wy;
    }
    return num / den;
}

static void test_ce(void) {
    enum { N = 6, C = 5 };
    float z[N * C], dz[N * C], w[C] = {0.5f, 2.0f, 1.0f, 0.25f, 3.0f};
    int64_t y[N] = {0, 4, 2, 2, 1, 3};
    fill(z, N * C, 3);
    for (int variant = 0; variant < 4; variant++) {
        ce_ctx c = {N, C, y, variant & 1 ? w : NULL, variant & 2 ? 0.1 : 0.0};
        double l = mmp_ce_loss(z, y, N, C, c.w, c.e, dz);
        double dz0[N * C];
        for (int k = 0; k < N * C; k++) dz0[k] = z[k];
        double r = ref_ce(dz0, &c);
        CHECKF(fabs(l - r) < 1e-9 * (1 + fabs(r)), "ce value %g vs %g", l, r);
        char name[64];
        snprintf(name, sizeof name, "ce%s%s dz", c.w ? " weighted" : "", c.e > 0 ? " smoothed" : "");
        fd_check(name, z, N * C, ref_ce, &c, dz, 1e-4);
    }
    int64_t bad[N] = {0, 5, 0, 0, 0, 0};
    CHECK(isnan(mmp_ce_loss(z, bad, N, C, NULL, 0, NULL)));
}

/* ---------- BCE with logits ---------- */
typedef struct { int64_t n; const float *t; } bce_ctx;
static double ref_bce(const double *z, void *c_) {
    bce_ctx *c = c_;
    double s = 0;
    for (int64_t i = 0; i < c->n; i++) {
        double p = 1 / (1 + exp(-z[i]));
        s += -(c->t[i] * log(p) + (1 - c->t[i]) * log(1 - p));
    }
    return s / c->n;
}

static void test_bce(void) {
    enum { N = 4, C = 6 };
    float z[N * C], t[N * C], dz[N * C];
    fill(z, N * C, 4);
    for (int k = 0; k < N * C; k++) t[k] = k % 3 == 0 ? 1.0f : k % 5 == 0 ? 0.3f : 0.0f;
    bce_ctx c = {N * C, t};
    double l = mmp_bce_logits_loss(z, t, N, C, dz);
    double zd[N * C];
    for (int k = 0; k < N * C; k++) zd[k] = z[k];
    CHECKF(fabs(l - ref_bce(zd, &c)) < 1e-9, "bce value");
    fd_check("bce dz", z, N * C, ref_bce, &c, dz, 1e-4);
    /* large logits stay finite */
    float big[2] = {100.0f, -100.0f}, tb[2] = {0, 1};
    CHECK(isfinite(mmp_bce_logits_loss(big, tb, 1, 2, NULL)));
}

/* ---------- CLIP InfoNCE ---------- */
typedef struct { int64_t N, E; const float *za, *zb; float ls; int which; } clip_ctx;
static double ref_clip(const double *v, void *c_) {
    clip_ctx *c = c_;
    int64_t N = c->N, E = c->E;
    double *a = malloc(sizeof(double) * N * E), *b = malloc(sizeof(double) * N * E);
    double *S = malloc(sizeof(double) * N * N);
    double ls = c->which == 2 ? v[0] : c->ls;
    for (int64_t i = 0; i < N; i++) {
        double na = 0, nb = 0;
        for (int64_t k = 0; k < E; k++) {
            a[i * E + k] = c->which == 0 ? v[i * E + k] : c->za[i * E + k];
            b[i * E + k] = c->which == 1 ? v[i * E + k] : c->zb[i * E + k];
            na += a[i * E + k] * a[i * E + k];
            nb += b[i * E + k] * b[i * E + k];
        }
        for (int64_t k = 0; k < E; k++) { a[i * E + k] /= sqrt(na); b[i * E + k] /= sqrt(nb); }
    }
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < N; j++) {
            double d = 0;
            for (int64_t k = 0; k < E; k++) d += a[i * E + k] * b[j * E + k];
            S[i * N + j] = exp(ls) * d;
        }
    double L = 0;
    for (int64_t i = 0; i < N; i++) {
        double sr = 0, sc = 0;
        for (int64_t j = 0; j < N; j++) { sr += exp(S[i * N + j]); sc += exp(S[j * N + i]); }
        L += (log(sr) - S[i * N + i]) + (log(sc) - S[i * N + i]);
    }
    free(a); free(b); free(S);
    return L / (2.0 * N);
}

static void test_clip(void) {
    enum { N = 5, E = 4 };
    float za[N * E], zb[N * E], dza[N * E], dzb[N * E], ds, ls = 1.2f;
    fill(za, N * E, 1); fill(zb, N * E, 1);
    for (int k = 0; k < E; k++) zb[k] += za[k]; /* some alignment */
    double l = mmp_clip_loss(za, zb, N, E, ls, dza, dzb, &ds);
    clip_ctx c = {N, E, za, zb, ls, 0};
    double zd[N * E];
    for (int k = 0; k < N * E; k++) zd[k] = za[k];
    double r = ref_clip(zd, &c);
    CHECKF(fabs(l - r) < 1e-5 * (1 + fabs(r)), "clip value %g vs %g", l, r);
    fd_check("clip dza", za, N * E, ref_clip, &c, dza, 2e-4);
    c.which = 1;
    fd_check("clip dzb", zb, N * E, ref_clip, &c, dzb, 2e-4);
    c.which = 2;
    fd_check("clip dlogit_scale", &ls, 1, ref_clip, &c, &ds, 2e-4);
}

/* ---------- triplet ---------- */
typedef struct { int64_t T, D; const float *A, *P; const int64_t *ai, *pi, *ni; double margin; int which; } tri_ctx;
static double ref_triplet(const double *v, void *c_) {
    tri_ctx *c = c_;
    double s = 0;
    for (int64_t t = 0; t < c->T; t++) {
        int64_t ia = c->ai ? c->ai[t] : t, ip = c->pi ? c->pi[t] : t, iq = c->ni ? c->ni[t] : t;
        double dp = 0, dq = 0;
        for (int64_t k = 0; k < c->D; k++) {
            double a = c->which == 0 ? v[ia * c->D + k] : c->A[ia * c->D + k];
            double p = c->which == 1 ? v[ip * c->D + k] : c->P[ip * c->D + k];
            double q = c->which == 1 ? v[iq * c->D + k] : c->P[iq * c->D + k];
            dp += (a - p + 1e-6) * (a - p + 1e-6);
            dq += (a - q + 1e-6) * (a - q + 1e-6);
        }
        double l = sqrt(dp) - sqrt(dq) + c->margin;
        s += l > 0 ? l : 0;
    }
    return s / c->T;
}

static void test_triplet(void) {
    enum { N = 6, D = 5 };
    float A[N * D], P[N * D], dA[N * D], dP[N * D];
    fill(A, N * D, 1); fill(P, N * D, 1);
    int64_t ai[N * (N - 1)], pi[N * (N - 1)], ni[N * (N - 1)];
    for (int hard = 0; hard < 2; hard++) {
        int64_t T = mmp_triplet_mine(A, P, N, D, hard, ai, pi, ni);
        CHECK(T == (hard ? N : N * (N - 1)));
        memset(dA, 0, sizeof dA); memset(dP, 0, sizeof dP);
        double l = mmp_triplet_loss(A, P, P, ai, pi, ni, T, D, 0.5, dA, dP, dP);
        tri_ctx c = {T, D, A, P, ai, pi, ni, 0.5, 0};
        double ad[N * D];
        for (int k = 0; k < N * D; k++) ad[k] = A[k];
        CHECKF(fabs(l - ref_triplet(ad, &c)) < 1e-9, "triplet value");
        CHECK(l > 0);
        fd_check(hard ? "triplet hard dA" : "triplet all dA", A, N * D, ref_triplet, &c, dA, 1e-4);
        c.which = 1;
        fd_check(hard ? "triplet hard dP(+neg)" : "triplet all dP(+neg)", P, N * D, ref_triplet, &c, dP, 1e-4);
    }
    /* hard negative really is the closest non-matching one */
    int64_t T = mmp_triplet_mine(A, P, N, D, 1, ai, pi, ni);
    for (int64_t t = 0; t < T; t++) {
        CHECK(ni[t] != ai[t]);
    }
}

/* ---------- schedules and clipping ---------- */
static void test_sched_clip(void) {
    mmp_sched s = {MMP_SCHED_COSINE, 0.1, 10, 110, 0, 0, 0.001};
    CHECK(fabs(mmp_sched_lr(&s, 0) - 0.01) < 1e-15);
    CHECK(fabs(mmp_sched_lr(&s, 9) - 0.1) < 1e-15);
    CHECK(fabs(mmp_sched_lr(&s, 10) - 0.1) < 1e-15);
    CHECK(fabs(mmp_sched_lr(&s, 60) - (0.001 + 0.099 * 0.5)) < 1e-15);
    CHECK(fabs(mmp_sched_lr(&s, 110) - 0.001) < 1e-15);
    CHECK(fabs(mmp_sched_lr(&s, 500) - 0.001) < 1e-15);
    mmp_sched st = {MMP_SCHED_STEP, 1.0, 0, 0, 3, 0.5, 0};
    CHECK(mmp_sched_lr(&st, 2) == 1.0 && mmp_sched_lr(&st, 3) == 0.5 && mmp_sched_lr(&st, 7) == 0.25);
    mmp_param p[2];
    int64_t sh1[1] = {3}, sh2[2] = {2, 2};
    mmp_param_init(&p[0], "a", 1, sh1, 1);
    mmp_param_init(&p[1], "b", 2, sh2, 1);
    float g1[3] = {3, 0, 0}, g2[4] = {0, 4, 0, 0};
    memcpy(p[0].g, g1, sizeof g1); memcpy(p[1].g, g2, sizeof g2);
    double tot = mmp_clip_grad_norm(p, 2, 1.0);
    CHECK(fabs(tot - 5) < 1e-12);
    CHECK(fabsf(p[0].g[0] - 3 * (float)(1.0 / (5 + 1e-6))) < 1e-7f);
    tot = mmp_clip_grad_norm(p, 2, 10.0);
    CHECK(fabs(tot - 1) < 1e-5);
    mmp_param_free(&p[0]); mmp_param_free(&p[1]);
    /* standardization */
    float x[6] = {1, 5, 3, 5, 5, 5}, mean[2], sd[2];
    mmp_standardize_fit(x, 3, 2, mean, sd);
    CHECK(fabsf(mean[0] - 3) < 1e-6f && fabsf(sd[0] - sqrtf(8.0f / 3)) < 1e-6f);
    CHECK(mean[1] == 5 && sd[1] == 1); /* constant column: std 1 like sklearn */
    /* permutation is a permutation and depends on the seed */
    int64_t perm[100], perm2[100];
    uint64_t r1 = mmp_rng_derive(1, 0, 0), r2 = mmp_rng_derive(1, 1, 0);
    mmp_rng_permutation(&r1, perm, 100);
    mmp_rng_permutation(&r2, perm2, 100);
    int seen[100] = {0}, same = 0;
    for (int i = 0; i < 100; i++) { seen[perm[i]]++; same += perm[i] == perm2[i]; }
    for (int i = 0; i < 100; i++) CHECK(seen[i] == 1);
    CHECK(same < 20);
}

int main(void) {
    mmp_train_init_blas();
    test_linear();
    test_mlp_block();
    test_ce();
    test_bce();
    test_clip();
    test_triplet();
    test_sched_clip();
    TEST_END();
}
