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
/* the first n (< 8) lanes */
static inline v8 ldn(const float *p, int n) {
    v8 v = {0};
    memcpy(&v, p, sizeof(float) * n);
    return v;
}
static inline void stn(float *p, v8 v, int n) { memcpy(p, &v, sizeof(float) * n); }

/* ---- 1-D transforms: y[i*sy] = sum_k T[i][k] x[k*sx] ---- */
static inline __attribute__((always_inline)) void bt_1d(int m, const v8 *x, int sx, v8 *y, int sy) {
    if (m == 2) {
        v8 x0 = x[0], x1 = x[sx], x2 = x[2 * sx], x3 = x[3 * sx];
        y[0] = x0 - x2;
        y[sy] = x1 + x2;
        y[2 * sy] = x2 - x1;
        y[3 * sy] = x1 - x3;
    } else {
        v8 x0 = x[0], x1 = x[sx], x2 = x[2 * sx], x3 = x[3 * sx], x4 = x[4 * sx], x5 = x[5 * sx];
        v8 f4 = {4, 4, 4, 4, 4, 4, 4, 4}, f5 = {5, 5, 5, 5, 5, 5, 5, 5}, f2 = {2, 2, 2, 2, 2, 2, 2, 2};
        v8 s34 = x3 + x4, s12 = x1 + x2, d43 = x4 - x3, d12 = x1 - x2, d42 = x4 - x2, d31 = x3 - x1;
        y[0] = f4 * x0 - f5 * x2 + x4;
        y[sy] = s34 - f4 * s12;
        y[2 * sy] = d43 + f4 * d12;
        y[3 * sy] = d42 + f2 * d31;
        y[4 * sy] = d42 - f2 * d31;
        y[5 * sy] = f4 * x1 - f5 * x3 + x5;
    }
}

static inline __attribute__((always_inline)) void at_1d(int m, const v8 *x, int sx, v8 *y, int sy) {
    if (m == 2) {
        v8 x1 = x[sx], x2 = x[2 * sx];
        y[0] = x[0] + x1 + x2;
        y[sy] = x1 - x2 - x[3 * sx];
    } else {
        v8 f2 = {2, 2, 2, 2, 2, 2, 2, 2}, f4 = {4, 4, 4, 4, 4, 4, 4, 4}, f8 = {8, 8, 8, 8, 8, 8, 8, 8};
        v8 a = x[sx] + x[2 * sx], b = x[sx] - x[2 * sx], c = x[3 * sx] + x[4 * sx], d = x[3 * sx] - x[4 * sx];
        y[0] = x[0] + a + c;
        y[sy] = b + f2 * d;
        y[2 * sy] = a + f4 * c;
        y[3 * sy] = b + f8 * d + x[5 * sx];
    }
}

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

/* Input transform of tile (g, ty, tx) into row tl of V[a*a][T][cin]. */
static inline __attribute__((always_inline)) void in_tile(int m, const float *in, int H, int W, int ci, int g,
                                                         int ty, int tx, float *V, long pstride, int tl) {
    enum { A = 6 };
    const int a = m + 2;
    int y0 = ty * m - 1, x0 = tx * m - 1;
    int ok[A][A];
    for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++) ok[i][j] = y0 + i >= 0 && y0 + i < H && x0 + j >= 0 && x0 + j < W;
    long base = (((long)g * H + y0) * W + x0) * ci; /* may be < 0: only offsets of valid pixels are used */
    float *vrow = V + (long)tl * ci;
    for (int cb = 0; cb < ci; cb += 8) {
        int n = ci - cb < 8 ? ci - cb : 8;
        v8 d[A * A], t[A * A];
        for (int i = 0; i < a; i++)
            for (int j = 0; j < a; j++) {
                v8 z = {0};
                if (!ok[i][j]) {
                    d[i * a + j] = z;
                    continue;
                }
                const float *p = in + (base + ((long)i * W + j) * ci + cb);
                d[i * a + j] = n == 8 ? ld8(p) : ldn(p, n);
            }
        for (int j = 0; j < a; j++) bt_1d(m, d + j, a, t + j, a); /* columns: t = B^T d */
        for (int i = 0; i < a; i++) bt_1d(m, t + i * a, 1, d + i * a, 1); /* rows: d = t B */
        for (int p = 0; p < a * a; p++) {
            if (n == 8) st8(vrow + p * pstride + cb, d[p]);
            else stn(vrow + p * pstride + cb, d[p], n);
        }
    }
}

/* Output transform of row tl of M[a*a][T][cout] into tile (g, ty, tx) of out, + b (+ res), act. */
static inline __attribute__((always_inline)) void out_tile(int m, const float *M, long pstride, int tl, int co,
                                                          int cop, const float *b, const float *res, mmp_nn_act act, int Ho,
                                                          int Wo, int g, int ty, int tx, float *out) {
    enum { A = 6 };
    const int a = m + 2;
    int oy0 = ty * m, ox0 = tx * m, ny = Ho - oy0 < m ? Ho - oy0 : m, nx = Wo - ox0 < m ? Wo - ox0 : m;
    const float *mrow = M + (long)tl * cop;
    long obase = (((long)g * Ho + oy0) * Wo + ox0) * co;
    v8 zero = {0}, six = {6, 6, 6, 6, 6, 6, 6, 6};
    for (int cb = 0; cb < co; cb += 8) {
        int n = co - cb < 8 ? co - cb : 8;
        v8 x[A * A], t[4 * A], y[16];
        for (int p = 0; p < a * a; p++) x[p] = ld8(mrow + p * pstride + cb); /* rows padded to cop */
        for (int j = 0; j < a; j++) at_1d(m, x + j, a, t + j, a); /* columns: t[m][a] = A^T x */
        for (int i = 0; i < m; i++) at_1d(m, t + i * a, 1, y + i * m, 1); /* rows: y[m][m] = t A */
        v8 bv = n == 8 ? ld8(b + cb) : ldn(b + cb, n);
        for (int i = 0; i < ny; i++)
            for (int j = 0; j < nx; j++) {
                long o = obase + ((long)i * Wo + j) * co + cb;
                v8 v = y[i * m + j] + bv;
                if (res) v += n == 8 ? ld8(res + o) : ldn(res + o, n);
                if (act != MMP_NN_ACT_NONE) v = (v8)((v8i)v & (v > zero)); /* NaN -> 0 like max_ps(v, 0) */
                if (act == MMP_NN_ACT_RELU6) {
                    v8i lt = v < six;
                    v = (v8)(((v8i)v & lt) | ((v8i)six & ~lt));
                }
                if (n == 8) st8(out + o, v);
                else stn(out + o, v, n);
            }
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
    for (long t0 = 0; t0 < total; t0 += Tc) {
        int nt = (int)(total - t0 < Tc ? total - t0 : Tc), rows = (nt + MR - 1) / MR * MR;
        for (int tl = 0; tl < nt; tl++) {
            long t = t0 + tl;
            int g = (int)(t / per), r = (int)(t % per);
            in_tile(m, in, H, W, ci, g, r / ntx, r % ntx, V, (long)T * ci, tl);
        }
        for (int p = 0; p < a2; p++) {
            float *vp = V + (size_t)p * T * ci;
            if (rows > nt) memset(vp + (size_t)nt * ci, 0, sizeof(float) * (rows - nt) * ci);
            gemm_p(vp, rows, ci, c->wino + (size_t)p * ci * cop, cop, M + (size_t)p * T * cop);
        }
        for (int tl = 0; tl < nt; tl++) {
            long t = t0 + tl;
            int g = (int)(t / per), r = (int)(t % per);
            out_tile(m, M, (long)T * cop, tl, co, cop, c->b, res, c->act, H, W, g, r / ntx, r % ntx, out);
        }
    }
}

void mmp_nn_wino_conv2d(const mmp_nn_conv *c, const float *in, int G, int H, int W, const float *res, float *out,
                    float *scratch) {
    if (c->wino_m == 2) wino_run(2, c, in, G, H, W, res, out, scratch);
    else wino_run(4, c, in, G, H, W, res, out, scratch);
}
