/* nn/gemm_avx512.c: the AVX-512 micro-kernel of mmp_sgemm (see gemm.h,
 * gemm_kernel.h): MR rows x NR = 16*NV columns of zmm accumulators, one
 * broadcast of A a row folded into the FMAs, masked stores at the right
 * edge. Compiled with AVX-512 flags (Makefile), called only when
 * mmp_cpu_isa() is MMP_ISA_AVX512. */
#include "nn/gemm.h"
#include "nn/gemm_kernel.h"

#include <immintrin.h>

#ifndef GEMM512_MR
#define GEMM512_MR 12
#endif
#ifndef GEMM512_NV
#define GEMM512_NV 2
#endif
#ifndef GEMM512_MC
#define GEMM512_MC (GEMM512_MR * 16)
#endif
#ifndef GEMM512_NC
#define GEMM512_NC 2048
#endif
#define MR GEMM512_MR
#define NV GEMM512_NV
#define NR (16 * NV)

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
static inline __attribute__((always_inline)) void kern(int kc, const float *A, long lda, int direct, const float *B,
                                                       float *C, long ldc, int m, int n, const mmp_gemm_tile *t) {
    __m512 acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        __m512 b[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) b[v] = _mm512_loadu_ps(B + 16 * v);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            __m512 a = _mm512_set1_ps(direct ? A[i * lda] : A[i]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
        }
        A += direct ? 1 : MR;
        B += NR;
    }
    __mmask16 mk[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
        int left = n - 16 * v;
        mk[v] = left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        if (i >= m) break;
        float *c = C + i * ldc;
        const float *q = t->res ? t->res + i * t->ldr : NULL;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            if (!mk[v]) break;
            __m512 r = epi(acc[i][v], c + 16 * v, t->bias ? t->bias + 16 * v : NULL, q ? q + 16 * v : NULL, mk[v], t);
            _mm512_mask_storeu_ps(c + 16 * v, mk[v], r);
        }
    }
}

static void kernel(int kc, const float *A, const float *B, float *C, long ldc, int m, int n, const mmp_gemm_tile *t) {
    kern(kc, A, 0, 0, B, C, ldc, m, n, t);
}
static void kernel_direct(int kc, const float *A, long lda, const float *B, float *C, long ldc, int n,
                          const mmp_gemm_tile *t) {
    kern(kc, A, lda, 1, B, C, ldc, MR, n, t);
}

const mmp_gemm_arch mmp_gemm_arch_avx512 = {
    .mr = MR, .nr = NR, .kc = MMP_GEMM_KC, .mc = GEMM512_MC, .nc = GEMM512_NC, .kernel = kernel, .kernel_direct = kernel_direct};
