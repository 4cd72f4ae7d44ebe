/* nn/winograd.c: Winograd F(2x2,3x3) and F(4x4,3x3) convolutions (see winograd.h).
 *
 * Transform matrices (Lavin & Gray 2015), a = m + 2:
 *  F(2x2,3x3): B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *              G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *              A^T = [1 1 1 0; 0 1 -1 -1]
 *  F(4x4,3x3): B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0;
 *                     0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *              G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6;
 *                     1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *              A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * The weight transform is computed in double and rounded once. */
#include "nn/winograd.h"

#include <stdlib.h>
#include <string.h>
#ifdef __FMA__
#include <immintrin.h>
#endif

#include "../cpu.h"
#include "mmp.h"
#include "nn/cpu.h"

/* Tiles per chunk: a*a*T*(cin+cout) floats of V and M ~ WINO_CHUNK_FLOATS
 * (1 MB: L2), T a multiple of MR in [WINO_MIN_T, WINO_MAX_T]. The weights
 * are streamed once per chunk: with 256-512 channels they (4-17 MB) cost
 * more than V and M spilling to L3, hence the floor (a 7x7 map of 2 images
 * is one chunk). */
#ifndef WINO_CHUNK_FLOATS
#define WINO_CHUNK_FLOATS (1L << 18)
#endif
#ifndef WINO_MIN_T
#define WINO_MIN_T 48
#endif
#ifndef WINO_MAX_T
#define WINO_MAX_T 240
#endif
#define MR 6  /* GEMM micro-kernel: MR tiles x NR output channels */
#define NR 16
/* Winograd only for maps of at least this many tiles per image (below, the
 * GEMMs are too short to pay for streaming the transformed weights). */
#ifndef WINO_MIN_TILES
#define WINO_MIN_TILES 9
#endif

#ifndef __AVX__ /* 8-float vectors in SSE registers; static functions only, so no ABI concern */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float v8 __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));

static inline v8 ld8(const float *p) {
    v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void st8(float *p, v8 v) { memcpy(p, &v, sizeof v); }
#define VL 8
#define WTR(name) name##_8
#include "nn/winograd_tr.h"

int mmp_nn_wino_eligible(const mmp_nn_conv *c) {
    return c && !c->depthwise && c->k == 3 && c->stride == 1 && c->pad == 1 && c->w;
}

int mmp_nn_wino_pick_m(int H, int W) {
    const char *e = getenv("MMP_NN_WINOGRAD");
    if (e && !strcmp(e, "0")) return 0;
    if (e && (!strcmp(e, "2") || !strcmp(e, "4"))) return atoi(e);
    /* GEMM work ~ tiles * (m+2)^2; F(4x4) runs ~1.4x less efficiently per
     * multiply-add (36 weight planes streamed per chunk, fewer rows each):
     * measured faster at 56, 28, 24, 12 px maps, slower at 14 px */
    long t4 = (long)((H + 3) / 4) * ((W + 3) / 4), t2 = (long)((H + 1) / 2) * ((W + 1) / 2);
    if (t4 >= WINO_MIN_TILES && t4 * 36 * 14 <= t2 * 16 * 10) return 4;
    return t2 >= WINO_MIN_TILES ? 2 : 0;
}

/* Output channels padded to a multiple of 8 (M rows, U panels). */
static inline int coutp(int co) { return (co + 7) & ~7; }

/* Index of U[p][i][o] in the packed weights: per p, panels of NR output
 * channels (the last one 8 wide when coutp % NR == 8), each [cin][NR]. */
static inline size_t upos(int p, int i, int o, int ci, int cop) {
    int j = o / NR, nr = cop - j * NR < NR ? cop - j * NR : NR;
    return (size_t)p * ci * cop + (size_t)j * NR * ci + (size_t)i * nr + o % NR;
}

int mmp_nn_wino_prepare(mmp_nn_conv *c, int m) {
    static const double G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    static const double G4[6][3] = {{1.0 / 4, 0, 0},
                                    {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                    {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                    {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                    {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                    {0, 0, 1}};
    if (!mmp_nn_wino_eligible(c) || (m != 2 && m != 4)) return -1;
    int a = m + 2, ci = c->cin, co = c->cout, cop = coutp(co);
    float *u = mmp_xcalloc((size_t)a * a * ci * cop, sizeof(float));
    for (int o = 0; o < co; o++)
        for (int i = 0; i < ci; i++) {
            double g[3][3], t[6][3];
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) g[ky][kx] = c->w[((size_t)o * 9 + ky * 3 + kx) * ci + i];
            for (int r = 0; r < a; r++) /* t = G g */
                for (int kx = 0; kx < 3; kx++) {
                    double s = 0;
                    for (int k = 0; k < 3; k++) s += (m == 2 ? G2[r][k] : G4[r][k]) * g[k][kx];
                    t[r][kx] = s;
                }
            for (int r = 0; r < a; r++) /* U = t G^T */
                for (int q = 0; q < a; q++) {
                    double s = 0;
                    for (int k = 0; k < 3; k++) s += t[r][k] * (m == 2 ? G2[q][k] : G4[q][k]);
                    u[upos(r * a + q, i, o, ci, cop)] = (float)s;
                }
        }
    free(c->wino);
    c->wino = u;
    c->wino_m = m;
    return 0;
}

int mmp_nn_wino_use(const mmp_nn_conv *c, int H, int W) {
    if (!c->wino || !mmp_nn_wino_eligible(c)) return 0;
    int m = c->wino_m;
    long tiles = (long)((H + m - 1) / m) * ((W + m - 1) / m);
    return tiles >= WINO_MIN_TILES;
}

/* Tiles per chunk (a function of the convolution only), a multiple of MR. */
static int chunk_tiles(const mmp_nn_conv *c) {
    int a = c->wino_m + 2;
    long t = WINO_CHUNK_FLOATS / ((long)a * a * (c->cin + coutp(c->cout)));
    if (t < WINO_MIN_T) t = WINO_MIN_T;
    if (t > WINO_MAX_T) t = WINO_MAX_T;
    return (int)(t / MR * MR);
}

size_t mmp_nn_wino_scratch(const mmp_nn_conv *c, int G, int H, int W) {
    int a = c->wino_m + 2;
    return (size_t)a * a * chunk_tiles(c) * (c->cin + coutp(c->cout));
}

static inline v8 fma8(v8 a, v8 b, v8 c) {
#ifdef __FMA__
    return (v8)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
    return a * b + c;
#endif
}

/* c[MR][nr] (row stride ldc) = v[MR][K] (row stride ldv) . u[K][nr], nr = 16 or 8.
 * Each output is one FMA chain over k = 0..K-1: its bits do not depend on
 * the other rows or columns (so not on the batch). */
static inline __attribute__((always_inline)) void kern(const int nr, const float *v, long ldv, const float *u,
                                                      int K, float *c, long ldc) {
    v8 acc[MR][2];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = (v8){0};
    for (int k = 0; k < K; k++) {
        v8 u0 = ld8(u + (long)k * nr), u1 = nr == 16 ? ld8(u + (long)k * nr + 8) : (v8){0};
        for (int i = 0; i < MR; i++) {
            float x = v[i * ldv + k];
            v8 b = {x, x, x, x, x, x, x, x};
            acc[i][0] = fma8(b, u0, acc[i][0]);
            if (nr == 16) acc[i][1] = fma8(b, u1, acc[i][1]);
        }
    }
    for (int i = 0; i < MR; i++) {
        st8(c + i * ldc, acc[i][0]);
        if (nr == 16) st8(c + i * ldc + 8, acc[i][1]);
    }
}

/* M[rows][cop] = V[rows][ci] . U (one transform position p; rows % MR == 0). */
static void gemm_p(const float *V, int rows, int ci, const float *U, int cop, float *M) {
    if (mmp_cpu_isa() >= MMP_ISA_AVX512) { /* 12 x 32 in zmm, same panels, same FMA chains */
        const float *as[1] = {V};
        int ks[1] = {ci}, bo[1] = {0};
        mmp_nn_cpu_gemm_seg_avx512(rows, cop, ci, 1, as, ks, bo, ci, U, NULL, NULL, M, MMP_NN_ACT_NONE);
        return;
    }
    for (int j = 0; j < cop; j += NR) {
        const float *up = U + (size_t)j * ci;
        if (cop - j >= NR)
            for (int r = 0; r < rows; r += MR) kern(16, V + (long)r * ci, ci, up, ci, M + (long)r * cop + j, cop);
        else
            for (int r = 0; r < rows; r += MR) kern(8, V + (long)r * ci, ci, up, ci, M + (long)r * cop + j, cop);
    }
}

static inline __attribute__((always_inline)) void wino_run(const int m, const mmp_nn_conv *c, const float *in, int G,
                                                          int H, int W, const float *res, float *out,
                                                          float *scratch) {
    const int a = m + 2, a2 = a * a, ci = c->cin, co = c->cout, cop = coutp(co);
    int nty = (H + m - 1) / m, ntx = (W + m - 1) / m;
    long per = (long)nty * ntx, total = per * G;
    int T = chunk_tiles(c); /* the planes' stride in V and M */
    /* chunks of equal size (multiples of MR) <= T: the weights are streamed once per chunk */
    long nch = (total + T - 1) / T, Tc = ((total + nch - 1) / nch + MR - 1) / MR * MR;
    float *V = scratch, *M = scratch + (size_t)a2 * T * ci;
    const int avx512 = mmp_cpu_isa() >= MMP_ISA_AVX512; /* transforms 16 channels a zmm */
    for (long t0 = 0; t0 < total; t0 += Tc) {
        int nt = (int)(total - t0 < Tc ? total - t0 : Tc), rows = (nt + MR - 1) / MR * MR;
        if (avx512) mmp_nn_wino_in_avx512(m, in, H, W, ci, t0, nt, per, ntx, V, (long)T * ci);
        else in_chunk_8(m, in, H, W, ci, t0, nt, per, ntx, V, (long)T * ci);
        for (int p = 0; p < a2; p++) {
            float *vp = V + (size_t)p * T * ci;
            if (rows > nt) memset(vp + (size_t)nt * ci, 0, sizeof(float) * (rows - nt) * ci);
            gemm_p(vp, rows, ci, c->wino + (size_t)p * ci * cop, cop, M + (size_t)p * T * cop);
        }
        if (avx512) mmp_nn_wino_out_avx512(m, M, (long)T * cop, t0, nt, per, ntx, co, cop, c->b, res, c->act, H, W, out);
        else out_chunk_8(m, M, (long)T * cop, t0, nt, per, ntx, co, cop, c->b, res, c->act, H, W, out);
    }
}

void mmp_nn_wino_conv2d(const mmp_nn_conv *c, const float *in, int G, int H, int W, const float *res, float *out,
                    float *scratch) {
    if (c->wino_m == 2) wino_run(2, c, in, G, H, W, res, out, scratch);
    else wino_run(4, c, in, G, H, W, res, out, scratch);
}
