/* nn/gemm_avx2.c: the AVX2/FMA part of mmp_sgemm (see gemm.h,
 * gemm_kernel.h): the 6x16 micro-kernel (12 ymm accumulators, masked
 * loads/stores at the right edge) and the packing of op(A) and op(B) into
 * register-tile panels (8x8 transposes where the packing transposes).
 * Compiled with AVX2/FMA flags (Makefile) whatever the build's -march:
 * AVX2 + FMA is the lowest level mmp_cpu_isa() reports. */
#include "nn/gemm.h"
#include "nn/gemm_kernel.h"

#include <immintrin.h>
#include <string.h>

/* ---- AVX2/FMA micro-kernel: 6 rows x 16 columns (12 ymm accumulators) ---- */
#define MR2 6
#define NR2 16

static inline __m256 epi2(__m256 acc, const float *c, const float *bias, const float *res, __m256i mask, int full,
                          const mmp_gemm_tile *t) {
#define LD2(p) (full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask))
    __m256 v;
    if (t->first) {
        v = t->alpha == 1.0f ? acc : _mm256_mul_ps(acc, _mm256_set1_ps(t->alpha));
        if (t->beta == 1.0f) v = _mm256_add_ps(LD2(c), v);
        else if (t->beta != 0.0f) v = _mm256_fmadd_ps(LD2(c), _mm256_set1_ps(t->beta), v);
    } else {
        v = t->alpha == 1.0f ? _mm256_add_ps(LD2(c), acc) : _mm256_fmadd_ps(acc, _mm256_set1_ps(t->alpha), LD2(c));
    }
    if (t->last) {
        if (bias) v = _mm256_add_ps(v, LD2(bias));
        if (res) v = _mm256_add_ps(v, LD2(res));
        if (t->act != MMP_GEMM_ACT_NONE) v = _mm256_max_ps(v, _mm256_setzero_ps());
        if (t->act == MMP_GEMM_ACT_RELU6) v = _mm256_min_ps(v, _mm256_set1_ps(6.0f));
    }
    return v;
#undef LD2
}

/* A packed ([kc][6], lda unused) or, direct, op(A) rows in place (row i at
 * A + i*lda, element k at k: m == 6); the same FMAs either way */
static inline __attribute__((always_inline)) void kern6x16(int kc, const float *A, long lda, int direct, const float *B,
                                                           float *C, long ldc, int m, int n, const mmp_gemm_tile *t) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
           c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(B), b1 = _mm256_loadu_ps(B + 8), a;
        a = _mm256_broadcast_ss(A), c00 = _mm256_fmadd_ps(a, b0, c00), c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(direct ? A + 1 * lda : A + 1), c10 = _mm256_fmadd_ps(a, b0, c10), c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(direct ? A + 2 * lda : A + 2), c20 = _mm256_fmadd_ps(a, b0, c20), c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(direct ? A + 3 * lda : A + 3), c30 = _mm256_fmadd_ps(a, b0, c30), c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(direct ? A + 4 * lda : A + 4), c40 = _mm256_fmadd_ps(a, b0, c40), c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(direct ? A + 5 * lda : A + 5), c50 = _mm256_fmadd_ps(a, b0, c50), c51 = _mm256_fmadd_ps(a, b1, c51);
        A += direct ? 1 : MR2;
        B += NR2;
    }
    __m256 acc[MR2][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    int full0 = n >= 8, full1 = n >= 16;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
    __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8), lane);
    for (int r = 0; r < m; r++) {
        float *c = C + r * ldc;
        const float *q = t->res ? t->res + r * t->ldr : NULL;
        __m256 v0 = epi2(acc[r][0], c, t->bias, q, m0, full0, t);
        if (full0) _mm256_storeu_ps(c, v0);
        else _mm256_maskstore_ps(c, m0, v0);
        if (n > 8) {
            __m256 v1 = epi2(acc[r][1], c + 8, t->bias ? t->bias + 8 : NULL, q ? q + 8 : NULL, m1, full1, t);
            if (full1) _mm256_storeu_ps(c + 8, v1);
            else _mm256_maskstore_ps(c + 8, m1, v1);
        }
    }
}

static void kernel_6x16(int kc, const float *A, const float *B, float *C, long ldc, int m, int n,
                        const mmp_gemm_tile *t) {
    kern6x16(kc, A, 0, 0, B, C, ldc, m, n, t);
}
static void kernel_6x16_direct(int kc, const float *A, long lda, const float *B, float *C, long ldc, int n,
                               const mmp_gemm_tile *t) {
    kern6x16(kc, A, lda, 1, B, C, ldc, MR2, n, t);
}

/* m <= MMP_GEMM_FEW rows in place: the 6x16 tile's FMAs and epilogue for m rows */
static inline __attribute__((always_inline)) void kernfew(const int mr, int kc, const float *A, long lda,
                                                          const float *B, float *C, long ldc, int n,
                                                          const mmp_gemm_tile *t) {
    __m256 acc[MMP_GEMM_FEW][2];
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(B), b1 = _mm256_loadu_ps(B + 8);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m256 a = _mm256_broadcast_ss(A + i * lda);
            acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
        }
        A += 1;
        B += NR2;
    }
    int full0 = n >= 8, full1 = n >= 16;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
    __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8), lane);
#pragma GCC unroll 4
    for (int r = 0; r < mr; r++) {
        float *c = C + r * ldc;
        const float *q = t->res ? t->res + r * t->ldr : NULL;
        __m256 v0 = epi2(acc[r][0], c, t->bias, q, m0, full0, t);
        if (full0) _mm256_storeu_ps(c, v0);
        else _mm256_maskstore_ps(c, m0, v0);
        if (n > 8) {
            __m256 v1 = epi2(acc[r][1], c + 8, t->bias ? t->bias + 8 : NULL, q ? q + 8 : NULL, m1, full1, t);
            if (full1) _mm256_storeu_ps(c + 8, v1);
            else _mm256_maskstore_ps(c + 8, m1, v1);
        }
    }
}
static void kernel_few(int kc, const float *A, long lda, const float *B, float *C, long ldc, int m, int n,
                       const mmp_gemm_tile *t) {
    switch (m) {
    case 1: kernfew(1, kc, A, lda, B, C, ldc, n, t); break;
    case 2: kernfew(2, kc, A, lda, B, C, ldc, n, t); break;
    case 3: kernfew(3, kc, A, lda, B, C, ldc, n, t); break;
    default: kernfew(4, kc, A, lda, B, C, ldc, n, t); break;
    }
}

const mmp_gemm_arch mmp_gemm_arch_avx2 = {.mr = MR2, .nr = NR2, .kc = MMP_GEMM_KC, .mc = 120, .nc = 2048, .kernel = kernel_6x16, .kernel_direct = kernel_6x16_direct, .kernel_few = kernel_few};

/* ---- packing ---- */
/* t[kk*ld + j] = r[j][k + kk], kk, j < 8 */
static inline void tr8x8(const float *const r[8], long k, float *t, long ld) {
    __m256 r0 = _mm256_loadu_ps(r[0] + k), r1 = _mm256_loadu_ps(r[1] + k), r2 = _mm256_loadu_ps(r[2] + k),
           r3 = _mm256_loadu_ps(r[3] + k), r4 = _mm256_loadu_ps(r[4] + k), r5 = _mm256_loadu_ps(r[5] + k),
           r6 = _mm256_loadu_ps(r[6] + k), r7 = _mm256_loadu_ps(r[7] + k);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(t + 0 * ld, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(t + 1 * ld, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(t + 2 * ld, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(t + 3 * ld, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(t + 4 * ld, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(t + 5 * ld, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(t + 6 * ld, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(t + 7 * ld, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* dst[k*ld + j] = rows[j][k] for j < cnt (<= 8), k < kc: 8x8 transposes */
static void gather_t(const float *const r[8], int cnt, int kc, float *dst, int ld) {
    float t[64];
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
        float *d = dst + (long)k * ld;
        if (cnt == 8) {
            tr8x8(r, k, d, ld);
            continue;
        }
        tr8x8(r, k, t, 8);
        if (cnt == 4)
            for (int kk = 0; kk < 8; kk++) _mm_storeu_ps(d + (long)kk * ld, _mm_loadu_ps(t + 8 * kk));
        else
            for (int kk = 0; kk < 8; kk++)
                for (int j = 0; j < cnt; j++) d[(long)kk * ld + j] = t[8 * kk + j];
    }
    for (; k < kc; k++)
        for (int j = 0; j < cnt; j++) dst[(long)k * ld + j] = r[j][k];
}

/* rows 0..m-1 of a row-major matrix s (row stride ld, kc columns) as the
 * columns of dst [kc][w], columns past m zero (m <= w) */
static void pack_rows_t(const float *s, long ld, int m, int w, int kc, float *dst) {
    if (m < w) memset(dst, 0, sizeof(float) * w * kc);
    for (int j0 = 0; j0 < m; j0 += 8) {
        int cnt = m - j0 < 8 ? m - j0 : 8;
        const float *r[8];
        for (int j = 0; j < 8; j++) r[j] = s + (long)(j0 + (j < cnt ? j : cnt - 1)) * ld;
        gather_t(r, cnt, kc, dst + j0, w);
    }
}

/* op(A)[i0..i0+m-1][p0..p0+kc-1] into panels of mr rows: panel q at q*mr*kc,
 * [kc][mr], rows past m zero. */
void mmp_gemm_pack_a(int mr, int transa, const float *A, long lda, int i0, int m, int p0, int kc, float *dst) {
    for (int q = 0; q < m; q += mr, dst += (long)mr * kc) {
        int mm = m - q < mr ? m - q : mr;
        if (transa) { /* A is [K][M]: (i,k) = A[k*lda + i] */
            const float *s = A + (long)p0 * lda + i0 + q;
            for (int k = 0; k < kc; k++, s += lda) {
                float *d = dst + (long)k * mr;
                int i = 0;
                for (; i < mm; i++) d[i] = s[i];
                for (; i < mr; i++) d[i] = 0.0f;
            }
        } else { /* (i,k) = A[i*lda + k] */
            pack_rows_t(A + (long)(i0 + q) * lda + p0, lda, mm, mr, kc, dst);
        }
    }
}

/* op(B)[p0..p0+kc-1][j0..j0+n-1] into panels of nr columns: panel q at
 * q*nr*kc, [kc][nr], columns past n zero. */
void mmp_gemm_pack_b(int nr, int transb, const float *B, long ldb, int j0, int n, int p0, int kc, float *dst) {
    for (int q = 0; q < n; q += nr, dst += (long)nr * kc) {
        int nn = n - q < nr ? n - q : nr;
        if (!transb) { /* (k,j) = B[k*ldb + j] */
            const float *s = B + (long)p0 * ldb + j0 + q;
            for (int k = 0; k < kc; k++, s += ldb) {
                float *d = dst + (long)k * nr;
                if (nn == nr) memcpy(d, s, sizeof(float) * nr);
                else {
                    memcpy(d, s, sizeof(float) * nn);
                    memset(d + nn, 0, sizeof(float) * (nr - nn));
                }
            }
        } else { /* B is [N][K]: (k,j) = B[j*ldb + k]; 8x8 transposes */
            pack_rows_t(B + (long)(j0 + q) * ldb + p0, ldb, nn, nr, kc, dst);
        }
    }
}

