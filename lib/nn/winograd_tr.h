/* nn/winograd_tr.h: Winograd's input and output transforms (see winograd.c),
 * written once for a vector of VL floats (GCC vector extension) and included
 * by winograd.c (VL 8: AVX2 ymm) and winograd_avx512.c (VL 16: zmm).
 * Before including: VL, and WTR(name) giving the file's names. Every lane
 * runs the same operations in the same order at both widths (no FMA
 * contraction under -std=c11), so the two levels give the same bits. */
#include <string.h>

#include "nn/ops.h"

typedef float WTR(vf) __attribute__((vector_size(VL * 4)));
typedef int WTR(vi) __attribute__((vector_size(VL * 4)));
#define V_ WTR(vf)
#define VI_ WTR(vi)

/* the first n (<= VL) lanes, zeros above */
static inline V_ WTR(ldn)(const float *p, int n) {
    V_ v = {0};
    if (n == VL) memcpy(&v, p, sizeof v);
    else memcpy(&v, p, sizeof(float) * n);
    return v;
}
static inline void WTR(stn)(float *p, V_ v, int n) {
    if (n == VL) memcpy(p, &v, sizeof v);
    else memcpy(p, &v, sizeof(float) * n);
}

/* ---- 1-D transforms: y[i*sy] = sum_k T[i][k] x[k*sx] ---- */
static inline __attribute__((always_inline)) void WTR(bt_1d)(int m, const V_ *x, int sx, V_ *y, int sy) {
    if (m == 2) {
        V_ x0 = x[0], x1 = x[sx], x2 = x[2 * sx], x3 = x[3 * sx];
        y[0] = x0 - x2;
        y[sy] = x1 + x2;
        y[2 * sy] = x2 - x1;
        y[3 * sy] = x1 - x3;
    } else {
        V_ x0 = x[0], x1 = x[sx], x2 = x[2 * sx], x3 = x[3 * sx], x4 = x[4 * sx], x5 = x[5 * sx];
        V_ f4 = (V_){0} + 4.0f, f5 = (V_){0} + 5.0f, f2 = (V_){0} + 2.0f;
        V_ s34 = x3 + x4, s12 = x1 + x2, d43 = x4 - x3, d12 = x1 - x2, d42 = x4 - x2, d31 = x3 - x1;
        y[0] = f4 * x0 - f5 * x2 + x4;
        y[sy] = s34 - f4 * s12;
        y[2 * sy] = d43 + f4 * d12;
        y[3 * sy] = d42 + f2 * d31;
        y[4 * sy] = d42 - f2 * d31;
        y[5 * sy] = f4 * x1 - f5 * x3 + x5;
    }
}

static inline __attribute__((always_inline)) void WTR(at_1d)(int m, const V_ *x, int sx, V_ *y, int sy) {
    if (m == 2) {
        V_ x1 = x[sx], x2 = x[2 * sx];
        y[0] = x[0] + x1 + x2;
        y[sy] = x1 - x2 - x[3 * sx];
    } else {
        V_ f2 = (V_){0} + 2.0f, f4 = (V_){0} + 4.0f, f8 = (V_){0} + 8.0f;
        V_ a = x[sx] + x[2 * sx], b = x[sx] - x[2 * sx], c = x[3 * sx] + x[4 * sx], d = x[3 * sx] - x[4 * sx];
        y[0] = x[0] + a + c;
        y[sy] = b + f2 * d;
        y[2 * sy] = a + f4 * c;
        y[3 * sy] = b + f8 * d + x[5 * sx];
    }
}

/* Input transform of tile (g, ty, tx) into row tl of V[a*a][T][cin]. */
static inline __attribute__((always_inline)) void WTR(in_tile)(int m, const float *in, int H, int W, int ci, int g,
                                                              int ty, int tx, float *V, long pstride, int tl) {
    enum { A = 6 };
    const int a = m + 2;
    int y0 = ty * m - 1, x0 = tx * m - 1;
    int ok[A][A];
    for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++) ok[i][j] = y0 + i >= 0 && y0 + i < H && x0 + j >= 0 && x0 + j < W;
    long base = (((long)g * H + y0) * W + x0) * ci; /* may be < 0: only offsets of valid pixels are used */
    float *vrow = V + (long)tl * ci;
    for (int cb = 0; cb < ci; cb += VL) {
        int n = ci - cb < VL ? ci - cb : VL;
        V_ d[A * A], t[A * A];
        for (int i = 0; i < a; i++)
            for (int j = 0; j < a; j++) {
                V_ z = {0};
                if (!ok[i][j]) {
                    d[i * a + j] = z;
                    continue;
                }
                d[i * a + j] = WTR(ldn)(in + (base + ((long)i * W + j) * ci + cb), n);
            }
        for (int j = 0; j < a; j++) WTR(bt_1d)(m, d + j, a, t + j, a); /* columns: t = B^T d */
        for (int i = 0; i < a; i++) WTR(bt_1d)(m, t + i * a, 1, d + i * a, 1); /* rows: d = t B */
        for (int p = 0; p < a * a; p++) WTR(stn)(vrow + p * pstride + cb, d[p], n);
    }
}

/* Output transform of row tl of M[a*a][T][cout] into tile (g, ty, tx) of out, + b (+ res), act. */
static inline __attribute__((always_inline)) void WTR(out_tile)(int m, const float *M, long pstride, int tl, int co,
                                                               int cop, const float *b, const float *res,
                                                               mmp_nn_act act, int Ho, int Wo, int g, int ty, int tx,
                                                               float *out) {
    enum { A = 6 };
    const int a = m + 2;
    int oy0 = ty * m, ox0 = tx * m, ny = Ho - oy0 < m ? Ho - oy0 : m, nx = Wo - ox0 < m ? Wo - ox0 : m;
    const float *mrow = M + (long)tl * cop;
    long obase = (((long)g * Ho + oy0) * Wo + ox0) * co;
    V_ zero = {0}, six = (V_){0} + 6.0f;
    for (int cb = 0; cb < co; cb += VL) {
        int n = co - cb < VL ? co - cb : VL, np = cop - cb < VL ? cop - cb : VL; /* rows padded to cop */
        V_ x[A * A], t[4 * A], y[16];
        for (int p = 0; p < a * a; p++) x[p] = WTR(ldn)(mrow + p * pstride + cb, np);
        for (int j = 0; j < a; j++) WTR(at_1d)(m, x + j, a, t + j, a); /* columns: t[m][a] = A^T x */
        for (int i = 0; i < m; i++) WTR(at_1d)(m, t + i * a, 1, y + i * m, 1); /* rows: y[m][m] = t A */
        V_ bv = WTR(ldn)(b + cb, n);
        for (int i = 0; i < ny; i++)
            for (int j = 0; j < nx; j++) {
                long o = obase + ((long)i * Wo + j) * co + cb;
                V_ v = y[i * m + j] + bv;
                if (res) v += WTR(ldn)(res + o, n);
                if (act != MMP_NN_ACT_NONE) v = (V_)((VI_)v & (v > zero)); /* NaN -> 0 like max_ps(v, 0) */
                if (act == MMP_NN_ACT_RELU6) {
                    VI_ lt = v < six;
                    v = (V_)(((VI_)v & lt) | ((VI_)six & ~lt));
                }
                WTR(stn)(out + o, v, n);
            }
    }
}

/* The transforms of one chunk: tiles t0 .. t0+nt-1 of the batch (per tiles
 * an image, ntx a tile row), rows of V / M with plane stride pstride. */
static inline __attribute__((always_inline)) void WTR(in_chunk)(int m, const float *in, int H, int W, int ci, long t0,
                                                               int nt, long per, int ntx, float *V, long pstride) {
    for (int tl = 0; tl < nt; tl++) {
        long t = t0 + tl;
        int g = (int)(t / per), r = (int)(t % per);
        WTR(in_tile)(m, in, H, W, ci, g, r / ntx, r % ntx, V, pstride, tl);
    }
}
static inline __attribute__((always_inline)) void WTR(out_chunk)(int m, const float *M, long pstride, long t0, int nt,
                                                                long per, int ntx, int co, int cop, const float *b,
                                                                const float *res, mmp_nn_act act, int Ho, int Wo,
                                                                float *out) {
    for (int tl = 0; tl < nt; tl++) {
        long t = t0 + tl;
        int g = (int)(t / per), r = (int)(t % per);
        WTR(out_tile)(m, M, pstride, tl, co, cop, b, res, act, Ho, Wo, g, r / ntx, r % ntx, out);
    }
}
#undef V_
#undef VI_
