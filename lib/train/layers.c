/* train/layers.c: layers, losses, standardization (see layers.h). */
#include "train/layers.h"

#include "nn/gemm.h"
#include "tx/tx.h"
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"

void mmp_train_init_blas(void) { (void)mmp_cpu_isa(); }

/* ------------------------------------------------------------------ */
/* layers                                                              */
/* ------------------------------------------------------------------ */

/* the transformer engine's linear (tx/tx.h): GEMM, then the bias */
void mmp_linear_forward(const float *x, int64_t N, int64_t I, const float *W, const float *b,
                        int64_t O, float *y) {
    if (N == 0) return;
    mmp_tx_linear_fwd(y, (int)O, x, W, b, (int)N, (int)I, (int)O);
}

void mmp_linear_backward(const float *x, const float *dy, int64_t N, int64_t I, const float *W,
                         int64_t O, float *dx, float *dW, float *db) {
    /* the transformer engine's op (tx/tx.h), which accumulates: the gradients start from zero */
    if (dW) memset(dW, 0, sizeof(float) * (size_t)(O * I));
    if (db) memset(db, 0, sizeof(float) * (size_t)O);
    if (dx) memset(dx, 0, sizeof(float) * (size_t)(N * I));
    mmp_tx_linear_bwd(dx, dW, db, dy, (int)O, x, W, (int)N, (int)I, (int)O);
}

void mmp_relu_forward(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : 0.0f;
}

void mmp_relu_backward(const float *y, float *dx, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(y[i] > 0)) dx[i] = 0.0f;
}

void mmp_dropout_forward(float *x, float *mask, size_t n, float p, mmp_rng *rng) {
    if (p <= 0) {
        for (size_t i = 0; i < n; i++) mask[i] = 1.0f;
        return;
    }
    float keep = p >= 1 ? 0.0f : 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) {
        mask[i] = mmp_rng_uniform53(rng) < p ? 0.0f : keep;
        x[i] *= mask[i];
    }
}

void mmp_dropout_backward(const float *mask, float *dx, size_t n) {
    for (size_t i = 0; i < n; i++) dx[i] *= mask[i];
}

void mmp_softmax(const float *z, float *out, int64_t N, int64_t C) {
    for (int64_t n = 0; n < N; n++) {
        const float *r = z + n * C;
        float *o = out + n * C;
        double m = -INFINITY, s = 0;
        for (int64_t c = 0; c < C; c++) m = r[c] > m ? r[c] : m;
        for (int64_t c = 0; c < C; c++) s += exp((double)r[c] - m);
        for (int64_t c = 0; c < C; c++) o[c] = (float)(exp((double)r[c] - m) / s);
    }
}

void mmp_sigmoid(const float *z, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = (float)(1.0 / (1.0 + exp(-(double)z[i])));
}

/* ------------------------------------------------------------------ */
/* losses                                                              */
/* ------------------------------------------------------------------ */

double mmp_ce_loss(const float *z, const int64_t *y, int64_t N, int64_t C, const float *w,
                   double e, float *dz) {
    double Sw = 0, W = 0, total = 0;
    for (int64_t c = 0; c < C; c++) Sw += w ? w[c] : 1.0;
    for (int64_t i = 0; i < N; i++) {
        if (y[i] < 0 || y[i] >= C) return NAN;
        W += w ? w[y[i]] : 1.0;
    }
    double *lp = mmp_xmalloc(sizeof(double) * (size_t)(C > 0 ? C : 1));
    for (int64_t i = 0; i < N; i++) {
        const float *r = z + i * C;
        double m = -INFINITY, s = 0;
        for (int64_t c = 0; c < C; c++) m = r[c] > m ? r[c] : m;
        for (int64_t c = 0; c < C; c++) s += exp((double)r[c] - m);
        double lse = m + log(s);
        double sm = 0;
        for (int64_t c = 0; c < C; c++) {
            lp[c] = (double)r[c] - lse;
            sm += (w ? w[c] : 1.0) * -lp[c];
        }
        int64_t yi = y[i];
        double wy = w ? w[yi] : 1.0;
        total += (1 - e) * wy * -lp[yi] + e / (double)C * sm;
        if (dz)
            for (int64_t c = 0; c < C; c++) {
                double p = exp(lp[c]);
                double wc = w ? w[c] : 1.0;
                double g = (1 - e) * wy * (p - (c == yi)) + e / (double)C * (Sw * p - wc);
                dz[i * C + c] = (float)(g / W);
            }
    }
    free(lp);
    return total / W;
}

double mmp_bce_logits_loss(const float *z, const float *t, int64_t N, int64_t C, float *dz) {
    double total = 0, inv = 1.0 / (double)(N * C);
    for (int64_t i = 0; i < N * C; i++) {
        double x = z[i], y = t[i];
        total += (x > 0 ? x : 0) - x * y + log1p(exp(-fabs(x)));
        if (dz) dz[i] = (float)((1.0 / (1.0 + exp(-x)) - y) * inv);
    }
    return total * inv;
}

/* F.normalize rows of z[N,E] into a (double), keeping the norms. */
static void l2norm_rows(const float *z, int64_t N, int64_t E, float *a, double *norm) {
    for (int64_t i = 0; i < N; i++) {
        double s = 0;
        for (int64_t k = 0; k < E; k++) s += (double)z[i * E + k] * z[i * E + k];
        double nrm = sqrt(s);
        norm[i] = nrm;
        double d = nrm > 1e-12 ? nrm : 1e-12;
        for (int64_t k = 0; k < E; k++) a[i * E + k] = (float)(z[i * E + k] / d);
    }
}

/* d/dz of a = z/max(||z||,eps) given da: (da - a (a.da)) / ||z|| */
static void l2norm_backward(const float *a, const double *norm, const float *da, int64_t N,
                            int64_t E, float *dz) {
    for (int64_t i = 0; i < N; i++) {
        const float *ai = a + i * E, *dai = da + i * E;
        if (norm[i] > 1e-12) {
            double dot = 0;
            for (int64_t k = 0; k < E; k++) dot += (double)ai[k] * dai[k];
            for (int64_t k = 0; k < E; k++)
                dz[i * E + k] = (float)((dai[k] - ai[k] * dot) / norm[i]);
        } else {
            for (int64_t k = 0; k < E; k++) dz[i * E + k] = (float)(dai[k] / 1e-12);
        }
    }
}

/* Cross-entropy of each line of the logit matrix S[N,N] against its diagonal,
 * for CLIP's two directions: line o holds S[o*so + k*si], k = 0..N-1 (rows:
 * so = N, si = 1; columns: so = 1, si = N). Adds the mean loss over both
 * directions to *loss and its gradient to dS, in the order of the lines. */
static void clip_ce_lines(const float *S, double *dS, int64_t N, int64_t so, int64_t si, double *loss) {
    for (int64_t o = 0; o < N; o++) {
        const float *L = S + o * so;
        double m = -INFINITY, s = 0;
        for (int64_t k = 0; k < N; k++) m = L[k * si] > m ? L[k * si] : m;
        for (int64_t k = 0; k < N; k++) s += exp((double)L[k * si] - m);
        double lse = m + log(s);
        *loss += (lse - L[o * si]) / (2.0 * N);
        for (int64_t k = 0; k < N; k++) dS[o * so + k * si] += (exp((double)L[k * si] - lse) - (o == k)) / (2.0 * N);
    }
}

double mmp_clip_loss(const float *za, const float *zb, int64_t N, int64_t E, float logit_scale,
                     float *dza, float *dzb, float *dscale) {
    if (N == 0) return NAN;
    size_t ne = (size_t)(N * E), nn = (size_t)(N * N);
    float *a = mmp_xmalloc(sizeof(float) * ne), *b = mmp_xmalloc(sizeof(float) * ne);
    double *na = mmp_xmalloc(sizeof(double) * (size_t)N), *nb = mmp_xmalloc(sizeof(double) * (size_t)N);
    l2norm_rows(za, N, E, a, na);
    l2norm_rows(zb, N, E, b, nb);
    float *S = mmp_xmalloc(sizeof(float) * nn);
    float scale = expf(logit_scale);
    mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, (int)N, (int)N, (int)E, scale, a, (int)E,
                b, (int)E, 0.0f, S, (int)N);
    double *dS = mmp_xcalloc(nn, sizeof(double));
    double loss = 0;
    clip_ce_lines(S, dS, N, N, 1, &loss); /* rows: image -> text */
    clip_ce_lines(S, dS, N, 1, N, &loss); /* columns: text -> image */
    if (dscale) {
        double g = 0;
        for (size_t k = 0; k < nn; k++) g += dS[k] * S[k];
        *dscale = (float)g;
    }
    if (dza || dzb) {
        float *G = mmp_xmalloc(sizeof(float) * nn), *da = mmp_xmalloc(sizeof(float) * ne);
        for (size_t k = 0; k < nn; k++) G[k] = (float)dS[k];
        if (dza) { /* da = scale * G b */
            mmp_sgemm(MMP_GEMM_N, MMP_GEMM_N, (int)N, (int)E, (int)N, scale, G,
                        (int)N, b, (int)E, 0.0f, da, (int)E);
            l2norm_backward(a, na, da, N, E, dza);
        }
        if (dzb) { /* db = scale * G^T a */
            mmp_sgemm(MMP_GEMM_T, MMP_GEMM_N, (int)N, (int)E, (int)N, scale, G,
                        (int)N, a, (int)E, 0.0f, da, (int)E);
            l2norm_backward(b, nb, da, N, E, dzb);
        }
        free(G);
        free(da);
    }
    free(a); free(b); free(na); free(nb); free(S); free(dS);
    return loss;
}

#define TRIPLET_EPS 1e-6
static double pdist(const float *x, const float *y, int64_t D) {
    double s = 0;
    for (int64_t k = 0; k < D; k++) {
        double d = (double)x[k] - y[k] + TRIPLET_EPS;
        s += d * d;
    }
    return sqrt(s);
}

double mmp_triplet_loss(const float *A, const float *P, const float *Q, const int64_t *ai,
                        const int64_t *pi, const int64_t *ni, int64_t T, int64_t D, double margin,
                        float *dA, float *dP, float *dQ) {
    if (T == 0) return NAN;
    double total = 0;
    for (int64_t t = 0; t < T; t++) {
        int64_t ia = ai ? ai[t] : t, ip = pi ? pi[t] : t, iq = ni ? ni[t] : t;
        const float *a = A + ia * D, *p = P + ip * D, *q = Q + iq * D;
        double dap = pdist(a, p, D), daq = pdist(a, q, D);
        double l = dap - daq + margin;
        if (l <= 0) continue;
        total += l;
        double cp = dap > 0 ? 1.0 / (dap * (double)T) : 0, cq = daq > 0 ? 1.0 / (daq * (double)T) : 0;
        for (int64_t k = 0; k < D; k++) {
            double gp = ((double)a[k] - p[k] + TRIPLET_EPS) * cp;
            double gq = ((double)a[k] - q[k] + TRIPLET_EPS) * cq;
            if (dA) dA[ia * D + k] += (float)(gp - gq);
            if (dP) dP[ip * D + k] -= (float)gp;
            if (dQ) dQ[iq * D + k] += (float)gq;
        }
    }
    return total / (double)T;
}

int64_t mmp_triplet_mine(const float *a, const float *b, int64_t N, int64_t D, int hard,
                         int64_t *ai, int64_t *pi, int64_t *ni) {
    int64_t T = 0;
    for (int64_t i = 0; i < N; i++) {
        if (hard) {
            int64_t best = -1;
            double bd = INFINITY;
            for (int64_t j = 0; j < N; j++) {
                if (j == i) continue;
                double d = pdist(a + i * D, b + j * D, D);
                if (d < bd) { bd = d; best = j; }
            }
            if (best < 0) continue;
            ai[T] = i; pi[T] = i; ni[T] = best; T++;
        } else {
            for (int64_t j = 0; j < N; j++) {
                if (j == i) continue;
                ai[T] = i; pi[T] = i; ni[T] = j; T++;
            }
        }
    }
    return T;
}

/* ------------------------------------------------------------------ */
/* standardization                                                     */
/* ------------------------------------------------------------------ */

void mmp_standardize_fit(const float *x, int64_t N, int64_t D, float *mean, float *std) {
    double *m = mmp_xcalloc((size_t)D, sizeof(double)), *v = mmp_xcalloc((size_t)D, sizeof(double));
    for (int64_t i = 0; i < N; i++)
        for (int64_t k = 0; k < D; k++) m[k] += x[i * D + k];
    for (int64_t k = 0; k < D; k++) m[k] = N > 0 ? m[k] / (double)N : 0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t k = 0; k < D; k++) {
            double d = x[i * D + k] - m[k];
            v[k] += d * d;
        }
    for (int64_t k = 0; k < D; k++) {
        double sd = N > 0 ? sqrt(v[k] / (double)N) : 1;
        if (sd < 10 * DBL_EPSILON) sd = 1;
        mean[k] = (float)m[k];
        std[k] = (float)sd;
    }
    free(m);
    free(v);
}

void mmp_standardize_apply(float *x, int64_t N, int64_t D, const float *mean, const float *std) {
    for (int64_t i = 0; i < N; i++)
        for (int64_t k = 0; k < D; k++) x[i * D + k] = (x[i * D + k] - mean[k]) / std[k];
}
