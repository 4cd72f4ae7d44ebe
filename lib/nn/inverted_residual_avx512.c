/* nn/inverted_residual_avx512.c: the AVX-512 level (lib/cpu.h) of the small
 * pointwise GEMM of inverted_residual.c (mmp_nn_cpu_pw_gemm and the stem's
 * implicit im2col): 12 rows x 32 output channels in 24 zmm accumulators.
 *
 * The weights stay in mmp_nn_cpu_pack_1x1's layout (panels of 16 output
 * channels, [K][16], [K][8] for a last panel of <= 8): one zmm is one row of
 * one panel, a 32-column block reads two panels side by side (two streams),
 * a column tail is a masked load/store (no separate narrow kernels). The A
 * values are broadcast from memory (embedded broadcast of the FMA). Each
 * element's sum is one FMA chain over k in order from zero, then + bias,
 * + residual, ReLU/ReLU6: the same sequence for any M, row block, column
 * block or mask, hence results that do not depend on the micro-batch (and
 * equal to the AVX2 level's, which runs the same per-lane sequence).
 * Winograd's batched tile GEMMs (winograd.c, weights in the same panels)
 * run on it too, without bias. */
#include <immintrin.h>

#include "nn/cpu.h"
#include "nn/ops.h"

#define MR 12

/* mr rows x NV zmm columns; b0 (ldb0) / b1 (ldb1): the two panels' rows;
 * m0/m1: lanes of the two vectors (loads zero the others, stores skip them).
 * The sum over k runs over nseg segments (see gemm_seg). */
static inline __attribute__((always_inline)) void ukr(const int mr, const int NV, int nseg,
                                                      const float *const *As, const int *Ks, const int *Bo,
                                                      long lda, const float *B0, long ldb0, const float *B1,
                                                      long ldb1, const float *bias, const float *R, long ldr,
                                                      float *C, long ldc, mmp_nn_act act, __mmask16 m0,
                                                      __mmask16 m1) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
           c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00,
           c81 = c00, c90 = c00, c91 = c00, ca0 = c00, ca1 = c00, cb0 = c00, cb1 = c00;
    /* 4 row pointers (rows 3j, 3j+1, 3j+2 at q_j, q_j + L, q_j + 2L bytes:
     * base + index * scale addressing) keep the loop within the 16 GPRs */
#define ROW(i, n, q, o)                                                                                     \
    if (mr > n) {                                                                                           \
        __m512 a = _mm512_set1_ps(*(const float *)(q + o));                                                 \
        c##i##0 = _mm512_fmadd_ps(a, b0, c##i##0);                                                          \
        if (NV == 2) c##i##1 = _mm512_fmadd_ps(a, b1, c##i##1);                                             \
    }
    const long L = lda * (long)sizeof(float);
    for (int sg = 0; sg < nseg; sg++) {
        const float *p0 = B0 + (long)Bo[sg] * ldb0, *p1 = B1 + (long)Bo[sg] * ldb1;
        const char *q0 = (const char *)As[sg], *q1 = q0 + 3 * L, *q2 = q0 + 6 * L, *q3 = q0 + 9 * L;
        for (int k = 0, K = Ks[sg]; k < K; k++) {
            __m512 b0 = _mm512_maskz_loadu_ps(m0, p0), b1 = b0;
            if (NV == 2) b1 = _mm512_maskz_loadu_ps(m1, p1);
            ROW(0, 0, q0, 0) ROW(1, 1, q0, L) ROW(2, 2, q0, 2 * L)
            ROW(3, 3, q1, 0) ROW(4, 4, q1, L) ROW(5, 5, q1, 2 * L)
            ROW(6, 6, q2, 0) ROW(7, 7, q2, L) ROW(8, 8, q2, 2 * L)
            ROW(9, 9, q3, 0) ROW(a, 10, q3, L) ROW(b, 11, q3, 2 * L)
            p0 += ldb0, p1 += ldb1, q0 += 4, q1 += 4, q2 += 4, q3 += 4;
        }
    }
#undef ROW
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    __m512 bb0 = zero, bb1 = zero;
    if (bias) bb0 = _mm512_maskz_loadu_ps(m0, bias);
    if (bias && NV == 2) bb1 = _mm512_maskz_loadu_ps(m1, bias + 16);
#define OUT(i, n)                                                                                           \
    if (mr > n) {                                                                                           \
        __m512 v0 = c##i##0, v1 = c##i##1;                                                                  \
        if (bias) v0 = _mm512_add_ps(v0, bb0), v1 = _mm512_add_ps(v1, bb1);                                 \
        if (R) {                                                                                            \
            const float *r = R + n * ldr;                                                                   \
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, r));                                           \
            if (NV == 2) v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, r + 16));                         \
        }                                                                                                   \
        if (act != MMP_NN_ACT_NONE) v0 = _mm512_max_ps(v0, zero), v1 = _mm512_max_ps(v1, zero);            \
        if (act == MMP_NN_ACT_RELU6) v0 = _mm512_min_ps(v0, six), v1 = _mm512_min_ps(v1, six);             \
        float *o = C + n * ldc;                                                                             \
        _mm512_mask_storeu_ps(o, m0, v0);                                                                   \
        if (NV == 2) _mm512_mask_storeu_ps(o + 16, m1, v1);                                                 \
    }
    OUT(0, 0) OUT(1, 1) OUT(2, 2) OUT(3, 3) OUT(4, 4) OUT(5, 5)
    OUT(6, 6) OUT(7, 7) OUT(8, 8) OUT(9, 9) OUT(a, 10) OUT(b, 11)
#undef OUT
}

#define UKR_ROWS(NV)                                                                                        \
    static void ukr_##NV(int mr, int nseg, const float *const *As, const int *Ks, const int *Bo, long lda,  \
                         const float *B0, long ldb0, const float *B1, long ldb1, const float *bias,         \
                         const float *R, long ldr, float *C, long ldc, mmp_nn_act act, __mmask16 m0,        \
                         __mmask16 m1) {                                                                    \
        switch (mr) {                                                                                       \
        CASE(NV, 12) CASE(NV, 11) CASE(NV, 10) CASE(NV, 9) CASE(NV, 8) CASE(NV, 7)                          \
        CASE(NV, 6) CASE(NV, 5) CASE(NV, 4) CASE(NV, 3) CASE(NV, 2)                                         \
        default: ukr(1, NV, nseg, As, Ks, Bo, lda, B0, ldb0, B1, ldb1, bias, R, ldr, C, ldc, act, m0, m1); \
        }                                                                                                   \
    }
#define CASE(NV, n)                                                                                         \
    case n: ukr(n, NV, nseg, As, Ks, Bo, lda, B0, ldb0, B1, ldb1, bias, R, ldr, C, ldc, act, m0, m1); break;
UKR_ROWS(2)
UKR_ROWS(1)
#undef CASE
#undef UKR_ROWS

static __mmask16 lanes(int n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* width of the packed panel that holds output channel n (a multiple of 16) */
static long panel_ld(int N, int n) { return N - n > 8 ? 16 : 8; }

void mmp_nn_cpu_gemm_seg_avx512(int M, int N, int K, int nseg, const float *const *As, const int *Ks, const int *Bo,
                                long lda, const float *Bp, const float *bias, const float *R, float *C,
                                mmp_nn_act act) {
    /* column chunks of B small enough to stay in L2 while all rows pass */
    long nc = (256L * 1024 / 4) / (K > 0 ? K : 1) / 32 * 32;
    if (nc < 32) nc = 32;
    const float *as[4];
    for (int n0 = 0; n0 < N; n0 += (int)nc) {
        int n1 = n0 + nc < N ? n0 + (int)nc : N;
        for (int m0 = 0; m0 < M; m0 += MR) {
            int mr = M - m0 < MR ? M - m0 : MR;
            for (int g = 0; g < nseg; g++) as[g] = As[g] + (long)m0 * lda;
            const float *r = R ? R + (long)m0 * N : NULL;
            float *c = C + (long)m0 * N;
            for (int n = n0; n < n1; n += 32) {
                int left = n1 - n;
                const float *bp0 = Bp + (long)n * K;
                if (left > 16)
                    ukr_2(mr, nseg, as, Ks, Bo, lda, bp0, 16, bp0 + 16L * K, panel_ld(N, n + 16), bias ? bias + n : NULL,
                          r ? r + n : NULL, N, c + n, N, act, 0xffff, lanes(left - 16));
                else
                    ukr_1(mr, nseg, as, Ks, Bo, lda, bp0, panel_ld(N, n), bp0, 0, bias ? bias + n : NULL, r ? r + n : NULL, N,
                          c + n, N, act, lanes(left), 0);
            }
        }
    }
}
