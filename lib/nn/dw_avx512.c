/* nn/dw_avx512.c: the AVX-512 level (lib/cpu.h) of the depthwise 3x3 row
 * kernel (mmp_nn_cpu_dw3x3_row, ops_cpu.c): 16 channels a zmm, the last
 * vector of a row masked (no scalar channels), up to 8 adjacent interior
 * outputs per block (each loaded input vector feeds up to three of them;
 * 8 accumulators + 3 weights + up to 17 inputs in the 32 zmm registers).
 * Each output element: from the bias, one FMA per valid tap in (ky, kx)
 * order, + residual, ReLU/ReLU6: the same sequence whatever block it falls
 * in, so a row's values do not depend on anything but the row. */
#include <immintrin.h>

#include "nn/cpu.h"
#include "nn/ops.h"

#define NBMAX 8

/* nb (1..8) adjacent outputs starting at input column ix0 whose taps are
 * rows [KY0, KY1) and columns [KX0, KX1) of the window (KX0 > 0 or KX1 < 3
 * only with nb = 1). */
static inline __attribute__((always_inline)) void dw_block(const int KY0, const int KY1, const int KX0, const int KX1,
                                                           const int s, const int nb, const float *const r[3], int ix0,
                                                           int C, const float *w, const float *b, const float *res,
                                                           float *out, mmp_nn_act act) {
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    for (int cb = 0; cb < C; cb += 16) {
        __mmask16 m = C - cb >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (C - cb)) - 1);
        __m512 a[NBMAX];
        a[0] = _mm512_maskz_loadu_ps(m, b + cb);
        for (int j = 1; j < nb; j++) a[j] = a[0];
        for (int ky = KY0; ky < KY1; ky++) {
            const float *p = r[ky] + cb;
            __m512 wk[3], v[(NBMAX - 1) * 2 + 3];
            for (int kx = KX0; kx < KX1; kx++) wk[kx] = _mm512_maskz_loadu_ps(m, w + (ky * 3 + kx) * C + cb);
            for (int k = KX0; k < (nb - 1) * s + KX1; k++) v[k] = _mm512_maskz_loadu_ps(m, p + (long)(ix0 + k) * C);
            for (int j = 0; j < nb; j++)
                for (int kx = KX0; kx < KX1; kx++) a[j] = _mm512_fmadd_ps(wk[kx], v[j * s + kx], a[j]);
        }
        for (int j = 0; j < nb; j++) {
            if (res) a[j] = _mm512_add_ps(a[j], _mm512_maskz_loadu_ps(m, res + (long)j * C + cb));
            if (act != MMP_NN_ACT_NONE) a[j] = _mm512_max_ps(a[j], zero);
            if (act == MMP_NN_ACT_RELU6) a[j] = _mm512_min_ps(a[j], six);
            _mm512_mask_storeu_ps(out + (long)j * C + cb, m, a[j]);
        }
    }
}

typedef void (*dw_fn)(const float *const r[3], int ix0, int C, const float *w, const float *b, const float *res,
                      float *out, mmp_nn_act act);
#define DW_FN(KY0, KY1, KX0, KX1, S, NB)                                                                          \
    static void dw_##KY0##KY1##KX0##KX1##S##NB(const float *const r[3], int ix0, int C, const float *w,           \
                                               const float *b, const float *res, float *out, mmp_nn_act act) {    \
        dw_block(KY0, KY1, KX0, KX1, S, NB, r, ix0, C, w, b, res, out, act);                                      \
    }
#define DW_S(KY0, KY1, S)                                                                                         \
    DW_FN(KY0, KY1, 0, 3, S, 1) DW_FN(KY0, KY1, 0, 3, S, 2) DW_FN(KY0, KY1, 0, 3, S, 3)                          \
    DW_FN(KY0, KY1, 0, 3, S, 4) DW_FN(KY0, KY1, 0, 3, S, 5) DW_FN(KY0, KY1, 0, 3, S, 6)                          \
    DW_FN(KY0, KY1, 0, 3, S, 7) DW_FN(KY0, KY1, 0, 3, S, 8)
#define DW_INT(KY0, KY1) DW_S(KY0, KY1, 1) DW_S(KY0, KY1, 2)
DW_INT(0, 2)
DW_INT(0, 3)
DW_INT(1, 2)
DW_INT(1, 3)
#define DW_S_ROW(KY0, KY1, S)                                                                                     \
    {dw_##KY0##KY1##03##S##1, dw_##KY0##KY1##03##S##2, dw_##KY0##KY1##03##S##3, dw_##KY0##KY1##03##S##4,           \
     dw_##KY0##KY1##03##S##5, dw_##KY0##KY1##03##S##6, dw_##KY0##KY1##03##S##7, dw_##KY0##KY1##03##S##8}
#define DW_INT_ROW(KY0, KY1) {DW_S_ROW(KY0, KY1, 1), DW_S_ROW(KY0, KY1, 2)}
/* interior blocks: [ky0][ky1 - 2][s - 1][nb - 1] */
static const dw_fn dw_interior[2][2][2][NBMAX] = {{DW_INT_ROW(0, 2), DW_INT_ROW(0, 3)},
                                                  {DW_INT_ROW(1, 2), DW_INT_ROW(1, 3)}};
/* edge pixels (one output): [ky0][ky1 - 2][kx0][kx1 - 2] */
#define DW_EDGE(KY0, KY1) DW_FN(KY0, KY1, 0, 2, 1, 1) DW_FN(KY0, KY1, 1, 2, 1, 1) DW_FN(KY0, KY1, 1, 3, 1, 1)
DW_EDGE(0, 2)
DW_EDGE(0, 3)
DW_EDGE(1, 2)
DW_EDGE(1, 3)
#define DW_EDGE_ROW(KY0, KY1) {{dw_##KY0##KY1##02##11, dw_##KY0##KY1##03##11}, {dw_##KY0##KY1##12##11, dw_##KY0##KY1##13##11}}
static const dw_fn dw_edge[2][2][2][2] = {{DW_EDGE_ROW(0, 2), DW_EDGE_ROW(0, 3)},
                                          {DW_EDGE_ROW(1, 2), DW_EDGE_ROW(1, 3)}};

void mmp_nn_cpu_dw3x3_row_avx512(const mmp_nn_conv *c, const float *const rows[3], int W, const float *res, float *out) {
    int C = c->cout, s = c->stride;
    int Wo = mmp_nn_conv_out(W, 3, s, 1);
    const float *w = c->w, *b = c->b;
    mmp_nn_act act = c->act;
    int ky0 = rows[0] ? 0 : 1, ky1 = rows[2] ? 3 : 2; /* rows[1] always exists */
    const dw_fn *fi = dw_interior[ky0][ky1 - 2][s - 1];
    for (int ox = 0; ox < Wo;) {
        int ix0 = ox * s - 1;
        const float *rp = res ? res + (long)ox * C : NULL;
        if (ix0 < 0 || ix0 + 3 > W) { /* edge pixel */
            int kx0 = ix0 < 0 ? 1 : 0, kx1 = ix0 + 3 > W ? W - ix0 : 3;
            dw_edge[ky0][ky1 - 2][kx0][kx1 - 2](rows, ix0, C, w, b, rp, out + (long)ox * C, act);
            ox++;
            continue;
        }
        int nb = 1; /* interior outputs ahead, up to NBMAX */
        while (nb < NBMAX && ox + nb < Wo && (ox + nb) * s + 1 < W) nb++;
        fi[nb - 1](rows, ix0, C, w, b, rp, out + (long)ox * C, act);
        ox += nb;
    }
}
