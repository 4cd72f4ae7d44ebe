/* nn/gemm_avx512.c: the AVX-512 micro-kernel of mmp_sgemm (see gemm.h,
 * gemm_kernel.h): MR rows x NR = 16*NV columns of zmm accumulators (12 x 32,
 * and 24 x 16 for N <= 16), one broadcast of A a row, masked stores at the
 * right edge. Compiled with AVX-512 flags (Makefile), called only when
 * mmp_cpu_isa() is MMP_ISA_AVX512. */
#include "nn/gemm.h"
#include "nn/gemm_kernel.h"

#include <immintrin.h>

/* the main tile: 12 x 32 (24 accumulators); for N <= 16 a 24 x 16 one
 * (a 32-wide tile would be half or more padding) */
#define MR 12
#define NV 2
#define MR1 24
#define MC (MR * 16)
#define MC1 (MR1 * 8)
#define NC 512
#define MRMAX 24

static inline __m512 epi(__m512 acc, const float *c, const float *bias, const float *res, __mmask16 k,
                         const mmp_gemm_tile *t) {
    __m512 v;
    if (t->first) {
        v = t->alpha == 1.0f ? acc : _mm512_mul_ps(acc, _mm512_set1_ps(t->alpha));
        if (t->beta == 1.0f) v = _mm512_add_ps(_mm512_maskz_loadu_ps(k, c), v);
        else if (t->beta != 0.0f) v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, c), _mm512_set1_ps(t->beta), v);
    } else {
        __m512 old = _mm512_maskz_loadu_ps(k, c);
        v = t->alpha == 1.0f ? _mm512_add_ps(old, acc) : _mm512_fmadd_ps(acc, _mm512_set1_ps(t->alpha), old);
    }
    if (t->last) {
        if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, bias));
        if (res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, res));
        if (t->act != MMP_GEMM_ACT_NONE) v = _mm512_max_ps(v, _mm512_setzero_ps());
        if (t->act == MMP_GEMM_ACT_RELU6) v = _mm512_min_ps(v, _mm512_set1_ps(6.0f));
    }
    return v;
}

/* A packed ([kc][MR], lda unused) or, direct, op(A) rows in place (row i at
 * A + i*lda, element k at k: m == MR); the same FMAs either way */
static inline __attribute__((always_inline)) void kern(const int mr, const int nv, int kc, const float *A, long lda,
                                                       int direct, const float *B, float *C, long ldc, int m, int n,
                                                       const mmp_gemm_tile *t) {
    __m512 acc[MRMAX][2];
#pragma GCC unroll 24
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) acc[i][v] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        __m512 b[2];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) b[v] = _mm512_loadu_ps(B + 16 * v);
#pragma GCC unroll 24
        for (int i = 0; i < mr; i++) {
            __m512 a = _mm512_set1_ps(direct ? A[i * lda] : A[i]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
        }
        A += direct ? 1 : mr;
        B += 16 * nv;
    }
    __mmask16 mk[2];
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
        int left = n - 16 * v;
        mk[v] = left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
    }
#pragma GCC unroll 24
    for (int i = 0; i < mr; i++) {
        if (i >= m) break;
        float *c = C + i * ldc;
        const float *q = t->res ? t->res + i * t->ldr : NULL;
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            if (!mk[v]) break;
            __m512 r = epi(acc[i][v], c + 16 * v, t->bias ? t->bias + 16 * v : NULL, q ? q + 16 * v : NULL, mk[v], t);
            _mm512_mask_storeu_ps(c + 16 * v, mk[v], r);
        }
    }
}

static void kernel(int kc, const float *A, const float *B, float *C, long ldc, int m, int n, const mmp_gemm_tile *t) {
    kern(MR, NV, kc, A, 0, 0, B, C, ldc, m, n, t);
}
static void kernel_direct(int kc, const float *A, long lda, const float *B, float *C, long ldc, int n,
                          const mmp_gemm_tile *t) {
    kern(MR, NV, kc, A, lda, 1, B, C, ldc, MR, n, t);
}
static void kernel1(int kc, const float *A, const float *B, float *C, long ldc, int m, int n, const mmp_gemm_tile *t) {
    kern(MR1, 1, kc, A, 0, 0, B, C, ldc, m, n, t);
}
static void kernel1_direct(int kc, const float *A, long lda, const float *B, float *C, long ldc, int n,
                           const mmp_gemm_tile *t) {
    kern(MR1, 1, kc, A, lda, 1, B, C, ldc, MR1, n, t);
}

/* m <= MMP_GEMM_FEW rows in place: kern with the tile's height m */
static void kernel_few(int kc, const float *A, long lda, const float *B, float *C, long ldc, int m, int n,
                       const mmp_gemm_tile *t) {
    switch (m) {
    case 1: kern(1, NV, kc, A, lda, 1, B, C, ldc, 1, n, t); break;
    case 2: kern(2, NV, kc, A, lda, 1, B, C, ldc, 2, n, t); break;
    case 3: kern(3, NV, kc, A, lda, 1, B, C, ldc, 3, n, t); break;
    default: kern(4, NV, kc, A, lda, 1, B, C, ldc, 4, n, t); break;
    }
}
static void kernel1_few(int kc, const float *A, long lda, const float *B, float *C, long ldc, int m, int n,
                        const mmp_gemm_tile *t) {
    switch (m) {
    case 1: kern(1, 1, kc, A, lda, 1, B, C, ldc, 1, n, t); break;
    case 2: kern(2, 1, kc, A, lda, 1, B, C, ldc, 2, n, t); break;
    case 3: kern(3, 1, kc, A, lda, 1, B, C, ldc, 3, n, t); break;
    default: kern(4, 1, kc, A, lda, 1, B, C, ldc, 4, n, t); break;
    }
}

const mmp_gemm_arch mmp_gemm_arch_avx512 = {
    .mr = MR, .nr = 16 * NV, .kc = MMP_GEMM_KC, .mc = MC, .nc = NC, .ir_outer = 1, .kernel = kernel, .kernel_direct = kernel_direct,
    .kernel_few = kernel_few};
const mmp_gemm_arch mmp_gemm_arch_avx512_n16 = {
    .mr = MR1, .nr = 16, .kc = MMP_GEMM_KC, .mc = MC1, .nc = NC, .kernel = kernel1, .kernel_direct = kernel1_direct,
    .kernel_few = kernel1_few};
