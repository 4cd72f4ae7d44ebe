/* nn/inverted_residual.c: MobileNetV2 on the CPU: the inverted residual blocks (ops.h
 * `inverted_residual`: expand 1x1 -> depthwise 3x3 -> project 1x1 (+ input), fused) and
 * the first and last convolutions (`conv2d_packed`).
 *
 * Why not three conv2d calls: at 96 px the late stages are 6x6 and 3x3
 * pixels, so the GEMMs are small (M = images x pixels) and OpenBLAS spends
 * a good part of its time packing both operands on every call, and at every
 * size the 6x-expanded tensor makes a round trip to memory between the
 * three convolutions. Here:
 *  - the 1x1 convolutions are a small register-blocked GEMM (pw_gemm):
 *    6 rows x 16 output channels in 12 AVX2 accumulators, A = the NHWC
 *    activations read in place (broadcast), B = the weights packed in
 *    panels of 16 output channels once at load time (mmp_nn_cpu_pack_1x1,
 *    called by model.c), a contiguous stream; bias, residual and ReLU6 are
 *    applied before the store (no fill/epilogue passes, no per-call
 *    packing); at the AVX-512 level (lib/cpu.h) 12 rows x 32 channels in
 *    24 zmm accumulators on the same panels (inverted_residual_avx512.c);
 *  - the block runs over groups of whole images (small images: as many as
 *    fit a cache budget) or, when one image's expanded tensor is too large,
 *    over bands of output rows whose expanded input rows live in a ring of
 *    rows (each input row is expanded once), so the expanded and the
 *    depthwise tensors stay in L2;
 *  - the 3x3 stride-2 stem (3 input channels) is the same GEMM with an
 *    implicit im2col: one K segment per kernel row, read in place from the
 *    input row (the pixels of a row are at a fixed stride), edge pixels
 *    im2col'ed one by one.
 * Every output element is computed by the same instruction sequence whatever
 * the group, band or micro-batch it falls in (no K blocking, fixed k order),
 * so results per image do not depend on the micro-batch size. */
#include <string.h>

#include "../cpu.h"
#include "mmp.h"
#include "nn/cpu.h"
#include "nn/ops.h"
#ifdef __AVX2__
#include <immintrin.h>
#endif

/* Cache budget (bytes) for the expanded + depthwise tensors of one group. */
#ifndef IR_BUDGET
#define IR_BUDGET (320L * 1024)
#endif

/* ---- pointwise GEMM: C[M,N] = act(A[M,K] . W[N,K]^T + bias (+ R[M,N])) ---- */

#ifdef __AVX2__
#define MR 6
/* mr rows x (8*NV) columns; masked: the last vector (or both) partial (lanes
 * in mk0, mk1). The sum over k runs over nseg segments: segment g multiplies
 * A rows As[g] + i*lda (Ks[g] values) with B rows Bo[g].. (implicit im2col). */
static inline __attribute__((always_inline)) void ukr(const int mr, const int NV, const int masked, int nseg,
                                                      const float *const *As, const int *Ks, const int *Bo,
                                                      long lda, const float *B0, long ldb,
                                                      const float *bias, const float *R, long ldr, float *C,
                                                      long ldc, mmp_nn_act act, __m256i mk0, __m256i mk1) {
    /* named accumulators (arrays end up on the stack) */
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
           c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#define ROW(i)                                                                                              \
    if (mr > i) {                                                                                           \
        __m256 a = _mm256_broadcast_ss(a##i + k);                                                           \
        c##i##0 = _mm256_fmadd_ps(a, b0, c##i##0);                                                          \
        if (NV == 2) c##i##1 = _mm256_fmadd_ps(a, b1, c##i##1);                                             \
    }
    for (int sg = 0; sg < nseg; sg++) {
        const float *A = As[sg], *B = B0 + (long)Bo[sg] * ldb;
        const float *a0 = A, *a1 = A + lda, *a2 = A + 2 * lda, *a3 = A + 3 * lda, *a4 = A + 4 * lda, *a5 = A + 5 * lda;
        for (int k = 0, K = Ks[sg]; k < K; k++) {
            const float *b = B + (long)k * ldb;
            __m256 b0 = masked ? _mm256_maskload_ps(b, mk0) : _mm256_loadu_ps(b), b1 = b0;
            if (NV == 2) b1 = masked ? _mm256_maskload_ps(b + 8, mk1) : _mm256_loadu_ps(b + 8);
            ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
        }
    }
#undef ROW
    const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    __m256 bb0 = masked ? _mm256_maskload_ps(bias, mk0) : _mm256_loadu_ps(bias), bb1 = bb0;
    if (NV == 2) bb1 = masked ? _mm256_maskload_ps(bias + 8, mk1) : _mm256_loadu_ps(bias + 8);
#define OUT(i)                                                                                              \
    if (mr > i) {                                                                                           \
        __m256 v0 = _mm256_add_ps(c##i##0, bb0), v1 = _mm256_add_ps(c##i##1, bb1);                         \
        if (R) {                                                                                            \
            const float *r = R + i * ldr;                                                                   \
            v0 = _mm256_add_ps(v0, masked ? _mm256_maskload_ps(r, mk0) : _mm256_loadu_ps(r));               \
            if (NV == 2) v1 = _mm256_add_ps(v1, masked ? _mm256_maskload_ps(r + 8, mk1) : _mm256_loadu_ps(r + 8)); \
        }                                                                                                   \
        if (act != MMP_NN_ACT_NONE) v0 = _mm256_max_ps(v0, zero), v1 = _mm256_max_ps(v1, zero);                \
        if (act == MMP_NN_ACT_RELU6) v0 = _mm256_min_ps(v0, six), v1 = _mm256_min_ps(v1, six);                  \
        float *o = C + i * ldc;                                                                             \
        if (masked) {                                                                                       \
            _mm256_maskstore_ps(o, mk0, v0);                                                                \
            if (NV == 2) _mm256_maskstore_ps(o + 8, mk1, v1);                                               \
        } else {                                                                                            \
            _mm256_storeu_ps(o, v0);                                                                        \
            if (NV == 2) _mm256_storeu_ps(o + 8, v1);                                                       \
        }                                                                                                   \
    }
    OUT(0) OUT(1) OUT(2) OUT(3) OUT(4) OUT(5)
#undef OUT
}

#define UKR_ROWS(NV, MASKED)                                                                                \
    static void ukr_##NV##_##MASKED(int mr, int nseg, const float *const *As, const int *Ks, const int *Bo,  \
                                    long lda, const float *B, long ldb,                                     \
                                    const float *bias, const float *R, long ldr, float *C, long ldc,       \
                                    mmp_nn_act act, __m256i mk0, __m256i mk1) {                                \
        switch (mr) {                                                                                       \
        case 6: ukr(6, NV, MASKED, nseg, As, Ks, Bo, lda, B, ldb, bias, R, ldr, C, ldc, act, mk0, mk1); break;          \
        case 5: ukr(5, NV, MASKED, nseg, As, Ks, Bo, lda, B, ldb, bias, R, ldr, C, ldc, act, mk0, mk1); break;          \
        case 4: ukr(4, NV, MASKED, nseg, As, Ks, Bo, lda, B, ldb, bias, R, ldr, C, ldc, act, mk0, mk1); break;          \
        case 3: ukr(3, NV, MASKED, nseg, As, Ks, Bo, lda, B, ldb, bias, R, ldr, C, ldc, act, mk0, mk1); break;          \
        case 2: ukr(2, NV, MASKED, nseg, As, Ks, Bo, lda, B, ldb, bias, R, ldr, C, ldc, act, mk0, mk1); break;          \
        default: ukr(1, NV, MASKED, nseg, As, Ks, Bo, lda, B, ldb, bias, R, ldr, C, ldc, act, mk0, mk1); break;         \
        }                                                                                                   \
    }
UKR_ROWS(2, 0)
UKR_ROWS(1, 0)
UKR_ROWS(2, 1)
UKR_ROWS(1, 1)

static __m256i lanes(int n) { /* lanes < n set */
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

float *mmp_nn_cpu_pack_1x1(const float *w, int N, int K) {
    int np = (N + 15) / 16;
    float *p = mmp_xcalloc((size_t)np * 16 * K + 1, sizeof(float));
    for (int q = 0; q < np; q++) {
        int n0 = q * 16, real = N - n0 < 16 ? N - n0 : 16, wp = real > 8 ? 16 : 8;
        float *d = p + (size_t)n0 * K;
        for (int k = 0; k < K; k++)
            for (int j = 0; j < real; j++) d[(size_t)k * wp + j] = w[(size_t)(n0 + j) * K + k];
    }
    return p;
}

#ifdef __AVX2__
/* C[M,N] (row stride N) = act(sum over segments of A_g . B_g + bias (+ R)):
 * row i of segment g is As[g] + i*lda (Ks[g] values), multiplied with rows
 * Bo[g].. of the packed B (K rows in all). */
static void gemm_seg(int M, int N, int K, int nseg, const float *const *As, const int *Ks, const int *Bo, long lda,
                     const float *Bp, const float *bias, const float *R, float *C, mmp_nn_act act) {
    if (mmp_cpu_isa() >= MMP_ISA_AVX512) {
        mmp_nn_cpu_gemm_seg_avx512(M, N, K, nseg, As, Ks, Bo, lda, Bp, bias, R, C, act);
        return;
    }
    /* column chunks of B small enough to stay in L2 while all rows pass */
    long nc = (192L * 1024 / 4) / (K > 0 ? K : 1) / 16 * 16;
    if (nc < 16) nc = 16;
    const __m256i full = _mm256_set1_epi32(-1);
    const float *as[4];
    for (int n0 = 0; n0 < N; n0 += (int)nc) {
        int n1 = n0 + nc < N ? n0 + (int)nc : N;
        for (int m0 = 0; m0 < M; m0 += MR) {
            int mr = M - m0 < MR ? M - m0 : MR;
            for (int g = 0; g < nseg; g++) as[g] = As[g] + (long)m0 * lda;
            const float *r = R ? R + (long)m0 * N : NULL;
            float *c = C + (long)m0 * N;
            int n = n0;
            for (; n + 16 <= n1; n += 16)
                ukr_2_0(mr, nseg, as, Ks, Bo, lda, Bp + (long)n * K, 16, bias + n, r ? r + n : NULL, N, c + n, N, act,
                        full, full);
            int left = n1 - n;
            const float *bp = Bp + (long)n * K;
            if (left == 8)
                ukr_1_0(mr, nseg, as, Ks, Bo, lda, bp, 8, bias + n, r ? r + n : NULL, N, c + n, N, act, full, full);
            else if (left > 8)
                ukr_2_1(mr, nseg, as, Ks, Bo, lda, bp, 16, bias + n, r ? r + n : NULL, N, c + n, N, act, full,
                        lanes(left - 8));
            else if (left > 0)
                ukr_1_1(mr, nseg, as, Ks, Bo, lda, bp, 8, bias + n, r ? r + n : NULL, N, c + n, N, act, lanes(left),
                        full);
        }
    }
}
#endif

void mmp_nn_cpu_pw_gemm(int M, int N, int K, const float *A, long lda, const float *Bp, const float *bias,
                    const float *R, float *C, mmp_nn_act act) {
#ifdef __AVX2__
    const float *as[1] = {A};
    int ks[1] = {K}, bo[1] = {0};
    gemm_seg(M, N, K, 1, as, ks, bo, lda, Bp, bias, R, C, act);
#else
    for (long m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float s = 0;
            int q = n / 16, j = n % 16, wp = N - q * 16 > 8 ? 16 : 8;
            for (int k = 0; k < K; k++) s += A[m * lda + k] * Bp[((long)q * 16 * K) + (long)k * wp + j];
            float v = s + bias[n];
            if (R) v += R[m * N + n];
            if (act != MMP_NN_ACT_NONE) v = v > 0.0f ? v : 0.0f;
            if (act == MMP_NN_ACT_RELU6) v = v < 6.0f ? v : 6.0f;
            C[m * N + n] = v;
        }
#endif
}

/* ---- the block ---- */

/* Images per group: whole images whose expanded + depthwise tensors fit the
 * budget; 0 = not even one (then bands of rows). */
static int group_images(const mmp_nn_inverted_residual *b, int G, int H, int W) {
    int hid = b->dw->cout, s = b->dw->stride;
    int Ho = mmp_nn_conv_out(H, 3, s, 1), Wo = mmp_nn_conv_out(W, 3, s, 1);
    long per = ((b->expand ? (long)H * W : 0) + (long)Ho * Wo) * hid * (long)sizeof(float);
    long g = IR_BUDGET / (per > 0 ? per : 1);
    return (int)(g > G ? G : g);
}

/* Output rows per band (ring mode): the ring holds (R-1)*s+3 expanded rows. */
static int band_rows(const mmp_nn_inverted_residual *b, int H, int W) {
    int hid = b->dw->cout, s = b->dw->stride;
    int Wo = mmp_nn_conv_out(W, 3, s, 1);
    long rowe = (long)W * hid * sizeof(float), rowd = (long)Wo * hid * sizeof(float);
    long r = (IR_BUDGET - 3 * rowe + (long)s * rowe) / ((long)s * rowe + rowd);
    int Ho = mmp_nn_conv_out(H, 3, s, 1);
    if (r < 1) r = 1;
    if (r > Ho) r = Ho;
    return (int)r;
}

size_t mmp_nn_cpu_inverted_residual_scratch(const mmp_nn_inverted_residual *b, int G, int H, int W) {
    int hid = b->dw->cout, s = b->dw->stride;
    int Ho = mmp_nn_conv_out(H, 3, s, 1), Wo = mmp_nn_conv_out(W, 3, s, 1);
    int gb = group_images(b, G, H, W);
    if (gb > 0) return (size_t)gb * ((b->expand ? (size_t)H * W : 0) + (size_t)Ho * Wo) * hid;
    int R = band_rows(b, H, W);
    int ring = (R - 1) * s + 3;
    return ((size_t)ring * W + (size_t)R * Wo) * hid;
}

/* Depthwise output rows [oy0, oy1) of one image whose expanded input row iy
 * is at rows[iy mod nring] (nring >= H: rows = the image). */
static void dw_rows(const mmp_nn_conv *dw, const float *ring, int nring, int H, int W, int oy0, int oy1, float *out) {
    int C = dw->cout, s = dw->stride, Wo = mmp_nn_conv_out(W, 3, s, 1);
    for (int oy = oy0; oy < oy1; oy++) {
        const float *r3[3];
        for (int ky = 0; ky < 3; ky++) {
            int iy = oy * s - 1 + ky;
            r3[ky] = iy < 0 || iy >= H ? NULL : ring + (long)(iy % nring) * W * C;
        }
        mmp_nn_cpu_dw3x3_row(dw, r3, W, NULL, out + (long)(oy - oy0) * Wo * C);
    }
}

void mmp_nn_cpu_inverted_residual(const mmp_nn_inverted_residual *b, const float *in, int G, int H, int W, float *out, float *scratch) {
    const mmp_nn_conv *ex = b->expand, *dw = b->dw, *pj = b->project;
    int cin = ex ? ex->cin : dw->cout, hid = dw->cout, cout = pj->cout, s = dw->stride;
    int Ho = mmp_nn_conv_out(H, 3, s, 1), Wo = mmp_nn_conv_out(W, 3, s, 1);
    long HW = (long)H * W, HWo = (long)Ho * Wo;
    int gb = group_images(b, G, H, W);
    if (gb > 0) { /* groups of whole images */
        for (int g0 = 0; g0 < G; g0 += gb) {
            int n = G - g0 < gb ? G - g0 : gb;
            const float *x = in + g0 * HW * cin;
            float *e = scratch, *d = scratch + (ex ? n * HW * hid : 0);
            if (ex) mmp_nn_cpu_pw_gemm((int)(n * HW), hid, cin, x, cin, b->expand_wt, ex->b, NULL, e, ex->act);
            const float *src = ex ? e : x;
            for (int g = 0; g < n; g++)
                dw_rows(dw, src + g * HW * hid, H, H, W, 0, Ho, d + g * HWo * hid);
            mmp_nn_cpu_pw_gemm((int)(n * HWo), cout, hid, d, hid, b->project_wt, pj->b, b->residual ? x : NULL,
                           out + g0 * HWo * cout, pj->act);
        }
        return;
    }
    /* one image at a time, bands of R output rows; expanded rows in a ring */
    int R = band_rows(b, H, W), nring = (R - 1) * s + 3;
    float *ring = scratch, *d = scratch + (long)nring * W * hid;
    for (int g = 0; g < G; g++) {
        const float *x = in + g * HW * cin;
        float *o = out + g * HWo * cout;
        int done = 0; /* input rows [0, done) expanded */
        for (int oy0 = 0; oy0 < Ho; oy0 += R) {
            int oy1 = oy0 + R < Ho ? oy0 + R : Ho;
            int need = (oy1 - 1) * s + 2 < H ? (oy1 - 1) * s + 2 : H; /* rows [0, need) */
            const float *src = x;
            if (ex) {
                while (done < need) { /* contiguous runs of the ring */
                    int slot = done % nring, n = need - done;
                    if (n > nring - slot) n = nring - slot;
                    mmp_nn_cpu_pw_gemm(n * W, hid, cin, x + (long)done * W * cin, cin, b->expand_wt, ex->b, NULL,
                                   ring + (long)slot * W * hid, ex->act);
                    done += n;
                }
                src = ring;
            }
            dw_rows(dw, src, ex ? nring : H, H, W, oy0, oy1, d);
            mmp_nn_cpu_pw_gemm((oy1 - oy0) * Wo, cout, hid, d, hid, b->project_wt, pj->b,
                           b->residual ? x + (long)oy0 * Wo * cin : NULL, o + (long)oy0 * Wo * cout, pj->act);
        }
    }
}

/* ---- dense convolutions on packed weights (MobileNetV2's first and last) ---- */

/* Output rows per im2col chunk: about 64 KB of columns, at least one row. */
static int im2col_rows_per_chunk(const mmp_nn_conv *c, int Wo) {
    long kd = (long)c->k * c->k * c->cin, r = (64L * 1024 / 4) / (kd * Wo);
    return r < 1 ? 1 : (int)r;
}

/* d[k*k*cin] = the taps of output pixel (oy, ox) of one image, zeros for padding. */
static void im2col_pixel(const mmp_nn_conv *c, const float *img, int H, int W, int oy, int ox, float *d) {
    int k = c->k, s = c->stride, p = c->pad, ci = c->cin;
    int ix0 = ox * s - p, kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + k > W ? W - ix0 : k;
    if (kx1 < kx0) kx1 = kx0;
    for (int ky = 0; ky < k; ky++, d += k * ci) {
        int iy = oy * s - p + ky;
        if (iy < 0 || iy >= H) {
            for (int t = 0; t < k * ci; t++) d[t] = 0.0f;
            continue;
        }
        const float *src = img + ((long)iy * W + ix0) * ci;
        for (int t = 0; t < kx0 * ci; t++) d[t] = 0.0f;
        for (int t = kx0 * ci; t < kx1 * ci; t++) d[t] = src[t];
        for (int t = kx1 * ci; t < k * ci; t++) d[t] = 0.0f;
    }
}

size_t mmp_nn_cpu_conv2d_packed_scratch(const mmp_nn_conv *c, int G, int H, int W) {
    if (c->k == 1 && c->stride == 1 && c->pad == 0) return 0;
    int Ho = mmp_nn_conv_out(H, c->k, c->stride, c->pad), Wo = mmp_nn_conv_out(W, c->k, c->stride, c->pad);
    int r = im2col_rows_per_chunk(c, Wo);
    if (r > Ho) r = Ho;
    return (size_t)r * Wo * c->k * c->k * c->cin;
}

void mmp_nn_cpu_conv2d_packed(const mmp_nn_conv *c, const float *wp, const float *in, int G, int H, int W, const float *res,
                          float *out, float *scratch) {
    int k = c->k, s = c->stride, p = c->pad, ci = c->cin, co = c->cout, kd = k * k * ci;
    if (k == 1 && s == 1 && p == 0) {
        mmp_nn_cpu_pw_gemm(G * H * W, co, ci, in, ci, wp, c->b, res, out, c->act);
        return;
    }
    int Ho = mmp_nn_conv_out(H, k, s, p), Wo = mmp_nn_conv_out(W, k, s, p), R = im2col_rows_per_chunk(c, Wo);
#ifdef __AVX2__
    if (k <= 4) { /* implicit im2col: a segment per kernel row, the input rows read in place */
        int ox_lo = (p + s - 1) / s, ox_hi = Wo; /* interior: all k*k taps inside */
        while (ox_hi > ox_lo && (ox_hi - 1) * s - p + k > W) ox_hi--;
        const float *as[4];
        int ks[4], bo[4];
        for (int g = 0; g < G; g++) {
            const float *img = in + (long)g * H * W * ci;
            for (int oy = 0; oy < Ho; oy++) {
                long o = ((long)g * Ho + oy) * Wo * co;
                int nseg = 0;
                for (int ky = 0; ky < k; ky++) {
                    int iy = oy * s - p + ky;
                    if (iy < 0 || iy >= H) continue;
                    as[nseg] = img + ((long)iy * W + ox_lo * s - p) * ci;
                    ks[nseg] = k * ci;
                    bo[nseg++] = ky * k * ci;
                }
                if (ox_hi > ox_lo)
                    gemm_seg(ox_hi - ox_lo, co, kd, nseg, as, ks, bo, (long)s * ci, wp, c->b,
                             res ? res + o + (long)ox_lo * co : NULL, out + o + (long)ox_lo * co, c->act);
                for (int ox = 0; ox < Wo; ox++) { /* edge pixels: their own im2col row */
                    if (ox == ox_lo && ox_hi > ox_lo) ox = ox_hi;
                    if (ox >= Wo) break;
                    im2col_pixel(c, img, H, W, oy, ox, scratch);
                    mmp_nn_cpu_pw_gemm(1, co, kd, scratch, kd, wp, c->b, res ? res + o + (long)ox * co : NULL,
                                   out + o + (long)ox * co, c->act);
                }
            }
        }
        return;
    }
#endif
    for (int g = 0; g < G; g++) {
        const float *img = in + (long)g * H * W * ci;
        for (int oy0 = 0; oy0 < Ho; oy0 += R) {
            int oy1 = oy0 + R < Ho ? oy0 + R : Ho;
            float *d = scratch;
            for (int oy = oy0; oy < oy1; oy++)
                for (int ox = 0; ox < Wo; ox++, d += kd) im2col_pixel(c, img, H, W, oy, ox, d);
            long o = ((long)g * Ho + oy0) * Wo * co;
            mmp_nn_cpu_pw_gemm((oy1 - oy0) * Wo, co, kd, scratch, kd, wp, c->b, res ? res + o : NULL, out + o, c->act);
        }
    }
}
