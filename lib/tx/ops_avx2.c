/* tx/ops_avx2.c: the transformer engine's layers, forward and backward (tx/tx.h).
 * Compiled for AVX2/FMA (the lowest instruction-set level, lib/cpu.h) in every
 * build, sanitizer builds included, so those run the same vector code.
 *
 * Every GEMM is mmp_sgemm (nn/gemm.h), whose rows do not depend on the other
 * rows of the call, and every other loop works row by row or element by
 * element, so a token's output depends only on its own sequence. */
#include "tx/tx.h"

#include "nn/gemm.h"
#ifdef __AVX2__
#include <immintrin.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"

/* ---------------------------------------------------------------- linear */

void mmp_tx_linear_fwd(float *y, int ldy, const float *x, const float *W, const float *b, int N, int IC, int OC) {
    if (N <= 0 || OC <= 0) return;
    /* the GEMM then + b (fused: the same bits) */
    mmp_sgemm_bias(MMP_GEMM_T, N, OC, IC, x, IC, W, IC, b, NULL, 0, y, ldy);
}

void mmp_tx_linear_bwd(float *dx, float *dW, float *db, const float *dy, int ldy, const float *x, const float *W,
                       int N, int IC, int OC) {
    if (N <= 0 || OC <= 0) return;
    if (dx) mmp_sgemm(MMP_GEMM_N, MMP_GEMM_N, N, IC, OC, 1.0f, dy, ldy, W, IC, 1.0f, dx, IC);
    if (dW) mmp_sgemm(MMP_GEMM_T, MMP_GEMM_N, OC, IC, N, 1.0f, dy, ldy, x, IC, 1.0f, dW, IC);
    if (db) { /* summed over the rows in double, then added: the training heads' bias gradient */
        double stack[1024], *acc = OC <= 1024 ? stack : mmp_xmalloc(sizeof(double) * (size_t)OC);
        for (int j = 0; j < OC; j++) acc[j] = 0;
        for (int i = 0; i < N; i++) {
            const float *di = dy + (size_t)i * ldy;
            for (int j = 0; j < OC; j++) acc[j] += di[j];
        }
        for (int j = 0; j < OC; j++) db[j] += (float)acc[j];
        if (acc != stack) free(acc);
    }
}

/* ------------------------------------------------------------- layernorm */

/* sum of x[j] (sq 0) or of (x[j] - m)^2 (sq 1) over n in double, element j
 * in lane j % 8, the lanes added in order at the end: the same bits with or
 * without AVX2 */
static double row_sum(const float *x, int n, double m, int sq) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
#ifdef __AVX2__
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), mm = _mm256_set1_pd(m);
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        if (sq) {
            lo = _mm256_sub_pd(lo, mm);
            hi = _mm256_sub_pd(hi, mm);
            lo = _mm256_mul_pd(lo, lo);
            hi = _mm256_mul_pd(hi, hi);
        }
        a0 = _mm256_add_pd(a0, lo);
        a1 = _mm256_add_pd(a1, hi);
    }
    _mm256_storeu_pd(acc, a0);
    _mm256_storeu_pd(acc + 4, a1);
#endif
    for (; j < n; j++) {
        double d = x[j];
        if (sq) {
            d = d - m;
            d = d * d;
        }
        acc[j % 8] += d;
    }
    double s = acc[0];
    for (int l = 1; l < 8; l++) s += acc[l];
    return s;
}

void mmp_tx_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                          int C, float eps) {
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * C;
        float *yi = y + (size_t)i * C;
        double m = row_sum(xi, C, 0.0, 0) / C;
        double var = row_sum(xi, C, m, 1) / C;
        float rs = (float)(1.0 / sqrt(var + eps)), mu = (float)m;
        if (mean) mean[i] = mu;
        if (rstd) rstd[i] = rs;
        for (int j = 0; j < C; j++) yi[j] = (xi[j] - mu) * rs * w[j] + b[j];
    }
}

void mmp_tx_layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                          const float *mean, const float *rstd, int N, int C) {
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * C, *di = dy + (size_t)i * C;
        const float mu = mean[i], rs = rstd[i];
        /* dxhat = dy w; dx = rs (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) */
        double s1 = 0, s2 = 0;
        for (int j = 0; j < C; j++) {
            float xh = (xi[j] - mu) * rs, dxh = di[j] * w[j];
            s1 += dxh;
            s2 += (double)dxh * xh;
            if (dw) dw[j] += di[j] * xh;
            if (db) db[j] += di[j];
        }
        if (!dx) continue;
        float m1 = (float)(s1 / C), m2 = (float)(s2 / C);
        float *dxi = dx + (size_t)i * C;
        for (int j = 0; j < C; j++) {
            float xh = (xi[j] - mu) * rs, dxh = di[j] * w[j];
            dxi[j] += rs * (dxh - m1 - xh * m2);
        }
    }
}

/* ------------------------------------------------------------------- exp */

/* expf by Cephes' polynomial (max error ~1 ulp on [-87.3, 88]; below -87.3
 * the result is 0, above 88 +inf), written twice with the same operations
 * (explicit FMAs): exp_one for one float, exp8 for 8 AVX2 lanes, so a value
 * has the same bits whichever path computes it. */
#define EXP_HI 88.0f
#define EXP_LO -87.33654022216797f
#define EXP_LOG2E 1.44269504088896341f
#define EXP_C1 0.693359375f
#define EXP_C2 -2.12194440e-4f
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

static inline float exp_one(float x) {
    if (x != x) return x;
    if (x > EXP_HI) return INFINITY;
    if (x < EXP_LO) return 0.0f;
    float n = rintf(x * EXP_LOG2E);
    float r = fmaf(n, -EXP_C1, x);
    r = fmaf(n, -EXP_C2, r);
    float y = fmaf(EXP_P0, r, EXP_P1);
    y = fmaf(y, r, EXP_P2);
    y = fmaf(y, r, EXP_P3);
    y = fmaf(y, r, EXP_P4);
    y = fmaf(y, r, EXP_P5);
    y = fmaf(y, r * r, r);
    y = y + 1.0f;
    union {
        int32_t i;
        float f;
    } p;
    p.i = ((int32_t)n + 127) << 23;
    return y * p.f;
}

#ifdef __AVX2__
static inline __m256 exp8(__m256 x) {
    const __m256 hi = _mm256_set1_ps(EXP_HI), lo = _mm256_set1_ps(EXP_LO);
    __m256 big = _mm256_cmp_ps(x, hi, _CMP_GT_OQ), small = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-EXP_C1), xc);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-EXP_C2), r);
    __m256 y = _mm256_fmadd_ps(_mm256_set1_ps(EXP_P0), r, _mm256_set1_ps(EXP_P1));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P2));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P4));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P5));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), big);
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), small);
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q)); /* NaN stays */
}
#endif

/* y = v / (1 + exp(-k v)) = v sigmoid(k v) over n values: QuickGELU (k =
 * 1.702) and GELU tanh (v sigmoid(2 sqrt(2/pi) (v + 0.044715 v^3)), which is
 * 0.5 v (1 + tanh(...))) */
static inline float sig_arg(float v, int tanh_form) {
    if (!tanh_form) return -(1.702f * v);
    float c = v * v;
    c = c * v;
    c = 0.044715f * c;
    return -(1.5957691216057308f * (v + c));
}
static void sigmoid_gate(float *y, const float *x, size_t n, int tanh_form) {
    size_t i = 0;
#ifdef __AVX2__
    const __m256 one = _mm256_set1_ps(1.0f), sgn = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), a;
        if (!tanh_form) {
            a = _mm256_xor_ps(_mm256_mul_ps(_mm256_set1_ps(1.702f), v), sgn);
        } else {
            __m256 c = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
            c = _mm256_mul_ps(_mm256_set1_ps(0.044715f), c);
            a = _mm256_xor_ps(_mm256_mul_ps(_mm256_set1_ps(1.5957691216057308f), _mm256_add_ps(v, c)), sgn);
        }
        __m256 d = _mm256_add_ps(one, exp8(a));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(v, _mm256_div_ps(one, d)));
    }
#endif
    for (; i < n; i++) {
        float v = x[i];
        y[i] = v * (1.0f / (1.0f + exp_one(sig_arg(v, tanh_form))));
    }
}

/* ------------------------------------------------------------ activations */

/* GELU with erf(x) for float by the rational approximation of Eigen /
 * TensorFlow (generic_fast_erf_float; max abs error ~1e-7 on [-4, 4], +-1
 * beyond), written so that the AVX2 loop below does the same operations. */
static inline float gelu_erf_one(float z) {
    float x = z * 0.70710678118654752f;
    x = x < -4.0f ? -4.0f : x;
    x = x > 4.0f ? 4.0f : x;
    float x2 = x * x;
    float p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    p = p * x;
    float q = x2 * -1.45660718464996e-05f + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return 0.5f * z * (1.0f + p / q);
}

static void gelu_erf(float *y, const float *v, size_t n) {
    size_t i = 0;
#ifdef __AVX2__
    /* the same operations as gelu_erf_one, 8 at a time (separate mul and add,
     * no FMA, max/min operand order keeping NaN like the scalar selects): the
     * same bits */
    const __m256 r2 = _mm256_set1_ps(0.70710678118654752f), lo = _mm256_set1_ps(-4.0f), hi = _mm256_set1_ps(4.0f);
#define C(x) _mm256_set1_ps(x)
    for (; i + 8 <= n; i += 8) {
        __m256 z = _mm256_loadu_ps(v + i);
        __m256 x = _mm256_mul_ps(z, r2);
        x = _mm256_max_ps(lo, x);
        x = _mm256_min_ps(hi, x);
        __m256 x2 = _mm256_mul_ps(x, x);
        __m256 p = _mm256_add_ps(_mm256_mul_ps(x2, C(-2.72614225801306e-10f)), C(2.77068142495902e-08f));
        p = _mm256_add_ps(_mm256_mul_ps(p, x2), C(-2.10102402082508e-06f));
        p = _mm256_add_ps(_mm256_mul_ps(p, x2), C(-5.69250639462346e-05f));
        p = _mm256_add_ps(_mm256_mul_ps(p, x2), C(-7.34990630326855e-04f));
        p = _mm256_add_ps(_mm256_mul_ps(p, x2), C(-2.95459980854025e-03f));
        p = _mm256_add_ps(_mm256_mul_ps(p, x2), C(-1.60960333262415e-02f));
        p = _mm256_mul_ps(p, x);
        __m256 q = _mm256_add_ps(_mm256_mul_ps(x2, C(-1.45660718464996e-05f)), C(-2.13374055278905e-04f));
        q = _mm256_add_ps(_mm256_mul_ps(q, x2), C(-1.68282697438203e-03f));
        q = _mm256_add_ps(_mm256_mul_ps(q, x2), C(-7.37332916720468e-03f));
        q = _mm256_add_ps(_mm256_mul_ps(q, x2), C(-1.42647390514189e-02f));
        __m256 e = _mm256_add_ps(C(1.0f), _mm256_div_ps(p, q));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(C(0.5f), z), e));
    }
#undef C
#endif
    for (; i < n; i++) y[i] = gelu_erf_one(v[i]);
}

/* torch's GELU(approximate="tanh") constants: sqrt(2/pi) and 0.044715 */
#define GT_BETA 0.7978845608028654f
#define GT_KAPPA 0.044715f
#define QG_K 1.702f

void mmp_tx_act_fwd(float *y, const float *x, size_t n, mmp_tx_act a) {
    switch (a) {
    case MMP_TX_GELU_ERF: gelu_erf(y, x, n); break;
    case MMP_TX_GELU_TANH: sigmoid_gate(y, x, n, 1); break;
    case MMP_TX_QUICK_GELU: sigmoid_gate(y, x, n, 0); break;
    case MMP_TX_RELU:
        for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : (x[i] != x[i] ? x[i] : 0.0f);
        break;
    }
}

void mmp_tx_act_bwd(float *dx, const float *dy, const float *x, size_t n, mmp_tx_act a) {
    switch (a) {
    case MMP_TX_GELU_ERF:
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
            float pdf = expf(-0.5f * v * v) * 0.3989422804014327f;
            dx[i] += dy[i] * (cdf + v * pdf);
        }
        break;
    case MMP_TX_GELU_TANH:
        for (size_t i = 0; i < n; i++) {
            float v = x[i], v2 = v * v;
            float th = tanhf(GT_BETA * (v + GT_KAPPA * v2 * v));
            float left = 0.5f * v, right = 1.0f + th;
            float dinner = GT_BETA * (1.0f + 3.0f * GT_KAPPA * v2);
            dx[i] += dy[i] * (0.5f * right + left * (1.0f - th * th) * dinner);
        }
        break;
    case MMP_TX_QUICK_GELU:
        for (size_t i = 0; i < n; i++) {
            float v = x[i], s = 1.0f / (1.0f + expf(-(QG_K * v)));
            dx[i] += dy[i] * (s + QG_K * v * s * (1.0f - s));
        }
        break;
    case MMP_TX_RELU:
        for (size_t i = 0; i < n; i++) dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
        break;
    }
}

/* -------------------------------------------------------------- attention */

size_t mmp_tx_attention_att_size(const int *qlens, const int *kvlens, int nseq, int NH) {
    size_t n = 0;
    for (int s = 0; s < nseq; s++) n += (size_t)qlens[s] * kvlens[s];
    return n * (size_t)NH;
}

/* row-wise softmax of sc[Lq, Lk] in place; causal > 0: row i keeps
 * j < i + causal (1: j <= i), the rest 0 */
static void softmax_rows(float *sc, int Lq, int Lk, int causal) {
    for (int i = 0; i < Lq; i++) {
        float *r = sc + (size_t)i * Lk;
        int n = causal > 0 ? (i + causal < Lk ? i + causal : Lk) : Lk, j = 0;
        float mx = r[0], acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int t = 1; t < n; t++) mx = r[t] > mx ? r[t] : mx;
        /* e = exp(r - max), summed in 8 lanes (element j in lane j % 8), then the lanes in order */
#ifdef __AVX2__
        const __m256 m = _mm256_set1_ps(mx);
        __m256 a = _mm256_setzero_ps();
        for (; j + 8 <= n; j += 8) {
            __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(r + j), m));
            _mm256_storeu_ps(r + j, e);
            a = _mm256_add_ps(a, e);
        }
        _mm256_storeu_ps(acc, a);
#endif
        for (; j < n; j++) acc[j % 8] += (r[j] = exp_one(r[j] - mx));
        float sum = acc[0];
        for (int l = 1; l < 8; l++) sum += acc[l];
        float inv = 1.0f / sum;
        for (j = 0; j < n; j++) r[j] *= inv;
        for (j = n; j < Lk; j++) r[j] = 0.0f;
    }
}

void mmp_tx_attention_head(float *out, float *sc, const float *q, int ldq, const float *k, int ldk, const float *v,
                           int ldv, int Lq, int Lk, int C, int NH, int h, int causal) {
    const int dh = C / NH;
    const float scale = 1.0f / sqrtf((float)dh);
    float *o = out + h * dh;
    if (Lq == 0) return;
    if (Lk == 0) { /* nothing to attend to: zeros (torch gives NaN) */
        for (int i = 0; i < Lq; i++) memset(o + (size_t)i * C, 0, (size_t)dh * sizeof *o);
        return;
    }
    const float *qh = q + h * dh, *kh = k + h * dh, *vh = v + h * dh;
    /* sc[Lq, Lk] = q k^T / sqrt(dh) */
    mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, Lq, Lk, dh, scale, qh, ldq, kh, ldk, 0.0f, sc, Lk);
    softmax_rows(sc, Lq, Lk, causal);
    /* o[Lq, dh] = P v */
    mmp_sgemm(MMP_GEMM_N, MMP_GEMM_N, Lq, dh, Lk, 1.0f, sc, Lk, vh, ldv, 0.0f, o, C);
}

void mmp_tx_attention_fwd(float *out, float *att, const float *q, int ldq, const float *k, int ldk, const float *v,
                          int ldv, const int *qlens, const int *kvlens, int nseq, int C, int NH, int causal) {
    size_t mx = 0;
    for (int s = 0; s < nseq; s++)
        if ((size_t)qlens[s] * kvlens[s] > mx) mx = (size_t)qlens[s] * kvlens[s];
    float *own = att ? NULL : mmp_xmalloc((mx ? mx : 1) * sizeof *own);
    size_t ao = 0;
    for (int s = 0, tq = 0, tk = 0; s < nseq; tq += qlens[s], tk += kvlens[s], s++) {
        const int Lq = qlens[s], Lk = kvlens[s];
        for (int h = 0; h < NH; h++) {
            float *sc = att ? att + ao : own;
            ao += (size_t)Lq * Lk;
            mmp_tx_attention_head(out + (size_t)tq * C, sc, q + (size_t)tq * ldq, ldq, k + (size_t)tk * ldk, ldk,
                                  v + (size_t)tk * ldv, ldv, Lq, Lk, C, NH, h, causal);
        }
    }
    free(own);
}

void mmp_tx_attention_head_bwd(float *dq, float *dk, float *dv, float *dS, const float *dout, const float *q, int ldq,
                               const float *k, int ldk, const float *v, int ldv, const float *P, int Lq, int Lk, int C,
                               int NH, int h, int causal) {
    const int dh = C / NH;
    const float scale = 1.0f / sqrtf((float)dh);
    if (Lq == 0 || Lk == 0) return;
    const float *doh = dout + h * dh, *qh = q + h * dh, *kh = k + h * dh, *vh = v + h * dh;
    /* dv[Lk, dh] += P^T dout */
    if (dv) mmp_sgemm(MMP_GEMM_T, MMP_GEMM_N, Lk, dh, Lq, 1.0f, P, Lk, doh, C, 1.0f, dv + h * dh, ldv);
    if (!dq && !dk) return;
    /* dP[Lq, Lk] = dout v^T; dS = P (dP - rowsum(P dP)) / sqrt(dh) */
    mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, Lq, Lk, dh, 1.0f, doh, C, vh, ldv, 0.0f, dS, Lk);
    for (int i = 0; i < Lq; i++) {
        float *r = dS + (size_t)i * Lk;
        const float *p = P + (size_t)i * Lk;
        int n = causal > 0 ? (i + causal < Lk ? i + causal : Lk) : Lk;
        float dot = 0;
        for (int j = 0; j < n; j++) dot += p[j] * r[j];
        for (int j = 0; j < n; j++) r[j] = p[j] * (r[j] - dot) * scale;
        for (int j = n; j < Lk; j++) r[j] = 0.0f;
    }
    /* dq[Lq, dh] += dS k; dk[Lk, dh] += dS^T q */
    if (dq) mmp_sgemm(MMP_GEMM_N, MMP_GEMM_N, Lq, dh, Lk, 1.0f, dS, Lk, kh, ldk, 1.0f, dq + h * dh, ldq);
    if (dk) mmp_sgemm(MMP_GEMM_T, MMP_GEMM_N, Lk, dh, Lq, 1.0f, dS, Lk, qh, ldq, 1.0f, dk + h * dh, ldk);
}

void mmp_tx_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, int ldq, const float *k,
                          int ldk, const float *v, int ldv, const float *att, const int *qlens, const int *kvlens,
                          int nseq, int C, int NH, int causal) {
    size_t mx = 0;
    for (int s = 0; s < nseq; s++)
        if ((size_t)qlens[s] * kvlens[s] > mx) mx = (size_t)qlens[s] * kvlens[s];
    float *dS = mmp_xmalloc((mx ? mx : 1) * sizeof *dS);
    size_t ao = 0;
    for (int s = 0, tq = 0, tk = 0; s < nseq; tq += qlens[s], tk += kvlens[s], s++) {
        const int Lq = qlens[s], Lk = kvlens[s];
        for (int h = 0; h < NH; h++) {
            const float *P = att + ao;
            ao += (size_t)Lq * Lk;
            mmp_tx_attention_head_bwd(dq ? dq + (size_t)tq * ldq : NULL, dk ? dk + (size_t)tk * ldk : NULL,
                                      dv ? dv + (size_t)tk * ldv : NULL, dS, dout + (size_t)tq * C,
                                      q + (size_t)tq * ldq, ldq, k + (size_t)tk * ldk, ldk, v + (size_t)tk * ldv, ldv,
                                      P, Lq, Lk, C, NH, h, causal);
        }
    }
    free(dS);
}

/* ------------------------------------------------------------------ embed */

void mmp_tx_embed_fwd(float *out, const int32_t *ids, const float *table, int T, int C) {
    for (int t = 0; t < T; t++) memcpy(out + (size_t)t * C, table + (size_t)ids[t] * C, (size_t)C * sizeof *out);
}

void mmp_tx_embed_bwd(float *dtable, const float *dout, const int32_t *ids, int T, int C) {
    for (int t = 0; t < T; t++) {
        float *d = dtable + (size_t)ids[t] * C;
        const float *g = dout + (size_t)t * C;
        for (int j = 0; j < C; j++) d[j] += g[j];
    }
}

/* ------------------------------------------------------------------ patch */

/* cols[(H/P)*(W/P), 3*P*P]: each patch's pixels in the order of W[C, 3, P, P] */
static float *im2col(const float *img, int H, int W, int P, int *np) {
    const int gh = H / P, gw = W / P, K = 3 * P * P;
    float *cols = mmp_xmalloc(((size_t)gh * gw * K + 1) * sizeof *cols);
    for (int py = 0; py < gh; py++)
        for (int px = 0; px < gw; px++) {
            float *c = cols + ((size_t)py * gw + px) * K;
            for (int ch = 0; ch < 3; ch++)
                for (int ky = 0; ky < P; ky++, c += P)
                    memcpy(c, img + ((size_t)ch * H + (size_t)py * P + ky) * W + (size_t)px * P, (size_t)P * sizeof *c);
        }
    *np = gh * gw;
    return cols;
}

void mmp_tx_patch_fwd(float *out, const float *img, int H, int W, const float *Wt, const float *b, int C, int P) {
    int np;
    float *cols = im2col(img, H, W, P, &np);
    mmp_tx_linear_fwd(out, C, cols, Wt, b, np, 3 * P * P, C);
    free(cols);
}

void mmp_tx_patch_bwd(float *dimg, float *dW, float *db, const float *dout, const float *img, int H, int W,
                      const float *Wt, int C, int P) {
    const int gh = H / P, gw = W / P, K = 3 * P * P;
    int np = gh * gw;
    if (dW) {
        float *cols = im2col(img, H, W, P, &np);
        mmp_tx_linear_bwd(NULL, dW, NULL, dout, C, cols, Wt, np, K, C);
        free(cols);
    }
    mmp_tx_linear_bwd(NULL, NULL, db, dout, C, NULL, Wt, np, K, C);
    if (!dimg) return;
    float *dcols = mmp_xcalloc((size_t)np * K + 1, sizeof *dcols);
    mmp_tx_linear_bwd(dcols, NULL, NULL, dout, C, NULL, Wt, np, K, C);
    for (int py = 0; py < gh; py++)
        for (int px = 0; px < gw; px++) {
            const float *c = dcols + ((size_t)py * gw + px) * K;
            for (int ch = 0; ch < 3; ch++)
                for (int ky = 0; ky < P; ky++, c += P) {
                    float *d = dimg + ((size_t)ch * H + (size_t)py * P + ky) * W + (size_t)px * P;
                    for (int kx = 0; kx < P; kx++) d[kx] += c[kx];
                }
        }
    free(dcols);
}

/* ------------------------------------------------------------- pos_resize */

/* torch's cubic convolution (upsample bicubic, A = -0.75; antialias A = -0.5) */
static inline float cc1(float x, float A) { return ((A + 2) * x - (A + 3)) * x * x + 1; }
static inline float cc2(float x, float A) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; }

/* One axis' taps: for output o, n[o] taps from first[o] (clamped indices in
 * idx[o*maxn + j]) with weights w[o*maxn + j]. Returns maxn. */
static int taps(int in, int out, int antialias, int **idx, float **w) {
    const float scale = (float)in / (float)out;
    if (!antialias) {
        /* torch upsample_bicubic2d, align_corners=False (UpSampleKernel.cpp,
         * HelperInterpCubic::compute_indices_weights) */
        *idx = mmp_xmalloc((size_t)out * 4 * sizeof **idx);
        *w = mmp_xmalloc((size_t)out * 4 * sizeof **w);
        for (int o = 0; o < out; o++) {
            float real = scale * ((float)o + 0.5f) - 0.5f;
            int64_t i0 = (int64_t)floorf(real);
            float t = real - (float)i0, A = -0.75f;
            float *wo = *w + (size_t)o * 4;
            wo[0] = cc2(t + 1.0f, A);
            wo[1] = cc1(t, A);
            wo[2] = cc1(1.0f - t, A);
            wo[3] = cc2((1.0f - t) + 1.0f, A);
            for (int j = 0; j < 4; j++) {
                int64_t ix = i0 - 1 + j;
                (*idx)[(size_t)o * 4 + j] = (int)(ix < 0 ? 0 : ix > in - 1 ? in - 1 : ix);
            }
        }
        return 4;
    }
    /* torch _upsample_bicubic2d_aa (Pillow's filter, A = -0.5,
     * HelperInterpCubic::aa_filter; _compute_weights_aa): window of support
     * 2 * max(scale, 1), weights normalized to sum 1, no clamping */
    const float support = scale >= 1.0f ? (float)(4 * 0.5 * (double)scale) : (float)(4 * 0.5);
    const int maxn = (int)ceilf(support) * 2 + 1;
    *idx = mmp_xmalloc((size_t)out * maxn * sizeof **idx);
    *w = mmp_xmalloc((size_t)out * maxn * sizeof **w);
    const float invscale = scale >= 1.0f ? (float)(1.0 / (double)scale) : 1.0f;
    for (int o = 0; o < out; o++) {
        float center = (float)((double)scale * (o + 0.5));
        int64_t xmin = (int64_t)((double)(center - support) + 0.5);
        if (xmin < 0) xmin = 0;
        int64_t xmax = (int64_t)((double)(center + support) + 0.5);
        if (xmax > in) xmax = in;
        int64_t xsize = xmax - xmin;
        float *wo = *w + (size_t)o * maxn, total = 0;
        int *io = *idx + (size_t)o * maxn;
        int j = 0;
        for (; j < xsize; j++) {
            float x = (float)(((double)((float)(j + xmin) - center) + 0.5) * (double)invscale);
            x = fabsf(x);
            float f = x < 1.0f ? cc1(x, -0.5f) : x < 2.0f ? cc2(x, -0.5f) : 0.0f;
            wo[j] = f;
            total += f;
            io[j] = (int)(xmin + j);
        }
        for (j = 0; j < xsize; j++)
            if (total != 0.0f) wo[j] /= total;
        for (; j < maxn; j++) {
            wo[j] = 0.0f;
            io[j] = (int)xmin; /* weight 0 */
        }
    }
    return maxn;
}

void mmp_tx_pos_resize(float *out, const float *pe, int gh, int gw, int oh, int ow, int C, int antialias) {
    if (gh == oh && gw == ow) {
        memcpy(out, pe, (size_t)gh * gw * C * sizeof *out);
        return;
    }
    int *ix, *iy;
    float *wx, *wy;
    if (!antialias) {
        /* one 2-D pass, rows (y) outer: out = sum_y wy (sum_x wx src) */
        taps(gw, ow, 0, &ix, &wx);
        taps(gh, oh, 0, &iy, &wy);
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                float *o = out + ((size_t)oy * ow + ox) * C;
                for (int c = 0; c < C; c++) {
                    float acc = 0;
                    for (int a = 0; a < 4; a++) {
                        const float *row = pe + (size_t)iy[oy * 4 + a] * gw * C + c;
                        float t = row[(size_t)ix[ox * 4] * C] * wx[ox * 4];
                        for (int b = 1; b < 4; b++) t += row[(size_t)ix[ox * 4 + b] * C] * wx[ox * 4 + b];
                        if (a == 0)
                            acc = t * wy[oy * 4];
                        else
                            acc += t * wy[oy * 4 + a];
                    }
                    o[c] = acc;
                }
            }
        free(ix);
        free(iy);
        free(wx);
        free(wy);
        return;
    }
    /* antialias: separable, the width pass first (skipped when the width stays) */
    const float *src = pe;
    float *tmp = NULL;
    if (gw != ow) {
        int nx = taps(gw, ow, 1, &ix, &wx);
        float *dst = gh == oh ? out : (tmp = mmp_xmalloc((size_t)gh * ow * C * sizeof *tmp));
        for (int y = 0; y < gh; y++)
            for (int ox = 0; ox < ow; ox++)
                for (int c = 0; c < C; c++) {
                    const float *row = src + (size_t)y * gw * C + c;
                    float acc = row[(size_t)ix[ox * nx] * C] * wx[ox * nx];
                    for (int b = 1; b < nx; b++) acc += row[(size_t)ix[ox * nx + b] * C] * wx[ox * nx + b];
                    dst[((size_t)y * ow + ox) * C + c] = acc;
                }
        free(ix);
        free(wx);
        src = dst;
    }
    if (gh != oh) {
        int ny = taps(gh, oh, 1, &iy, &wy);
        for (int oy = 0; oy < oh; oy++)
            for (int x = 0; x < ow; x++)
                for (int c = 0; c < C; c++) {
                    const float *col = src + (size_t)x * C + c;
                    float acc = col[(size_t)iy[oy * ny] * ow * C] * wy[oy * ny];
                    for (int a = 1; a < ny; a++) acc += col[(size_t)iy[oy * ny + a] * ow * C] * wy[oy * ny + a];
                    out[((size_t)oy * ow + x) * C + c] = acc;
                }
        free(iy);
        free(wy);
    }
    free(tmp);
}

/* -------------------------------------------------------------- few-row GEMM */

void mmp_tx_gemv_rows(float *y, int ldy, const float *x, int ldx, const float *W, const float *b, const float *R, int ldr,
                      int N, int K, int j0, int j1) {
    if (N <= 0 || j1 <= j0) return;
    mmp_sgemm_bias(MMP_GEMM_T, N, j1 - j0, K, x, ldx, W + (size_t)j0 * K, K, b ? b + j0 : NULL, R ? R + j0 : NULL, ldr,
                   y + j0, ldy);
}
