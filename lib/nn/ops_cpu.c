/* nn/ops_cpu.c: CPU kernels of the CNN engine (see ops.h).
 *
 * Dense convolution = GEMM (mmp_sgemm, nn/gemm.h) on NHWC activations:
 *   out[M, cout] = A[M, k*k*cin] . W[cout, k*k*cin]^T,  M = G*Ho*Wo
 * where A is the input itself for 1x1 stride-1 convolutions, a row
 * subsampling for 1x1 strided ones and an im2col (one memcpy per kernel
 * row: in NHWC the kx taps of one ky are contiguous) otherwise. The rows
 * are processed in chunks so the im2col block and the GEMM output are
 * still in cache when the epilogue (bias, residual, ReLU/ReLU6) runs.
 * Depthwise 3x3, pooling and the epilogue are AVX2/FMA loops over the
 * channel dimension (8 floats a vector), scalar when __AVX2__ is absent.
 * Dense 3x3 stride-1 convolutions whose weights were Winograd-transformed
 * at load (mmp_nn_conv.wino) go to nn/winograd.c instead. */
#include "../cpu.h"
#include "nn/ops.h"
#include "nn/winograd.h"
#include "nn/cpu.h"

#include "nn/gemm.h"
#include <float.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

void mmp_nn_cpu_init(void) { (void)mmp_cpu_isa(); /* decided once, MMP_ISA read, before the threads */ }

#ifndef CHUNK_FLOATS
#define CHUNK_FLOATS (1L << 17)
#endif

/* Rows of A per GEMM call: enough for the GEMM to run at full speed,
 * small enough for the im2col block and the output rows to stay in L2/L3. */
static int chunk_rows(int kd, int n, long M) {
    long r = CHUNK_FLOATS / (kd > n ? kd : n);
    if (r < 256) r = 256;
    if (r > M) r = M;
    return (int)r;
}

/* ---- epilogue: x = act(x (+ b) (+ res)) over rows of n channels ---- */
static void epilogue(float *x, long rows, int n, const float *b, const float *res, mmp_nn_act act) {
    for (long r = 0; r < rows; r++) {
        float *o = x + r * n;
        const float *q = res ? res + r * n : NULL;
        int j = 0;
#ifdef __AVX2__
        const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
        for (; j + 8 <= n; j += 8) {
            __m256 v = _mm256_loadu_ps(o + j);
            if (b) v = _mm256_add_ps(v, _mm256_loadu_ps(b + j));
            if (q) v = _mm256_add_ps(v, _mm256_loadu_ps(q + j));
            if (act != MMP_NN_ACT_NONE) v = _mm256_max_ps(v, zero);
            if (act == MMP_NN_ACT_RELU6) v = _mm256_min_ps(v, six);
            _mm256_storeu_ps(o + j, v);
        }
#endif
        for (; j < n; j++) {
            float v = o[j];
            if (b) v += b[j];
            if (q) v += q[j];
            if (act != MMP_NN_ACT_NONE) v = v > 0.0f ? v : 0.0f;
            if (act == MMP_NN_ACT_RELU6) v = v < 6.0f ? v : 6.0f;
            o[j] = v;
        }
    }
}

/* x[rows, n] = b (broadcast) */
static void fill_rows(float *x, long rows, int n, const float *b) {
    for (long r = 0; r < rows; r++) {
        float *o = x + r * n;
        int j = 0;
#ifdef __AVX2__
        for (; j + 8 <= n; j += 8) _mm256_storeu_ps(o + j, _mm256_loadu_ps(b + j));
#endif
        for (; j < n; j++) o[j] = b[j];
    }
}

/* ---- im2col rows [r0, r1) of A for a dense conv (NHWC) ---- */
static void im2col_rows(const mmp_nn_conv *c, const float *in, int H, int W, int Ho, int Wo, long r0,
                        long r1, float *col) {
    int k = c->k, s = c->stride, p = c->pad, ci = c->cin, kd = k * k * ci;
    for (long r = r0; r < r1; r++) {
        long g = r / ((long)Ho * Wo);
        int rem = (int)(r % ((long)Ho * Wo)), oy = rem / Wo, ox = rem % Wo;
        float *dst = col + (r - r0) * kd;
        int ix0 = ox * s - p, kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + k > W ? W - ix0 : k;
        for (int ky = 0; ky < k; ky++) {
            float *d = dst + ky * k * ci;
            int iy = oy * s - p + ky;
            if (iy < 0 || iy >= H || kx1 <= kx0) {
                memset(d, 0, sizeof(float) * k * ci);
                continue;
            }
            if (kx0 > 0) memset(d, 0, sizeof(float) * kx0 * ci);
            memcpy(d + kx0 * ci, in + ((g * H + iy) * W + ix0 + kx0) * ci,
                   sizeof(float) * (kx1 - kx0) * ci);
            if (kx1 < k) memset(d + kx1 * ci, 0, sizeof(float) * (k - kx1) * ci);
        }
    }
}

size_t mmp_nn_cpu_conv2d_scratch(const mmp_nn_conv *c, int G, int H, int W) {
    if (mmp_nn_wino_use(c, H, W)) return mmp_nn_wino_scratch(c, G, H, W);
    if (c->depthwise || (c->k == 1 && c->stride == 1 && c->pad == 0)) return 0;
    int Ho = mmp_nn_conv_out(H, c->k, c->stride, c->pad), Wo = mmp_nn_conv_out(W, c->k, c->stride, c->pad);
    long M = (long)G * Ho * Wo;
    int kd = c->k * c->k * c->cin;
    return (size_t)chunk_rows(kd, c->cout, M) * kd;
}

#ifdef __AVX2__
/* One depthwise 3x3 output block, all 8-channel blocks (channels inner, so
 * the input pixels stream): nb (1..4) adjacent outputs starting at input
 * column ix0 whose taps are rows [KY0, KY1) and columns [KX0, KX1) of the
 * window (the others are padding; KX0 > 0 or KX1 < 3 only with nb = 1).
 * r[ky]: input row oy*s-1+ky (NULL outside [KY0, KY1)). Each loaded input
 * vector feeds up to three outputs; taps in (ky, kx) order from the bias. */
static inline __attribute__((always_inline)) void dw_block(const int KY0, const int KY1, const int KX0, const int KX1,
                                                           const int s, const int nb, const float *const r[3], int ix0,
                                                           int C, int C8, const float *w, const float *b,
                                                           const float *res, float *out, mmp_nn_act act) {
    const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    for (int cb = 0; cb < C8; cb += 8) {
        __m256 a[4];
        a[0] = a[1] = a[2] = a[3] = _mm256_loadu_ps(b + cb);
        for (int ky = KY0; ky < KY1; ky++) {
            const float *p = r[ky] + cb;
            __m256 wk[3], v[9];
            for (int kx = KX0; kx < KX1; kx++) wk[kx] = _mm256_loadu_ps(w + (ky * 3 + kx) * C + cb);
            for (int k = KX0; k < (nb - 1) * s + KX1; k++) v[k] = _mm256_loadu_ps(p + (long)(ix0 + k) * C);
            for (int j = 0; j < nb; j++)
                for (int kx = KX0; kx < KX1; kx++) a[j] = _mm256_fmadd_ps(wk[kx], v[j * s + kx], a[j]);
        }
        for (int j = 0; j < nb; j++) {
            if (res) a[j] = _mm256_add_ps(a[j], _mm256_loadu_ps(res + (long)j * C + cb));
            if (act != MMP_NN_ACT_NONE) a[j] = _mm256_max_ps(a[j], zero);
            if (act == MMP_NN_ACT_RELU6) a[j] = _mm256_min_ps(a[j], six);
            _mm256_storeu_ps(out + (long)j * C + cb, a[j]);
        }
    }
}

typedef void (*dw_fn)(const float *const r[3], int ix0, int C, int C8, const float *w, const float *b,
                      const float *res, float *out, mmp_nn_act act);
#define DW_FN(KY0, KY1, KX0, KX1, S, NB)                                                                          \
    static void dw_##KY0##KY1##KX0##KX1##S##NB(const float *const r[3], int ix0, int C, int C8, const float *w,    \
                                               const float *b, const float *res, float *out, mmp_nn_act act) {        \
        dw_block(KY0, KY1, KX0, KX1, S, NB, r, ix0, C, C8, w, b, res, out, act);                                  \
    }
/* interior blocks: [ky0][ky1 - 2][s - 1][nb - 1] */
#define DW_INT(KY0, KY1) \
    DW_FN(KY0, KY1, 0, 3, 1, 1) DW_FN(KY0, KY1, 0, 3, 1, 2) DW_FN(KY0, KY1, 0, 3, 1, 3) DW_FN(KY0, KY1, 0, 3, 1, 4) \
    DW_FN(KY0, KY1, 0, 3, 2, 1) DW_FN(KY0, KY1, 0, 3, 2, 2) DW_FN(KY0, KY1, 0, 3, 2, 3) DW_FN(KY0, KY1, 0, 3, 2, 4)
DW_INT(0, 2)
DW_INT(0, 3)
DW_INT(1, 2)
DW_INT(1, 3)
#define DW_INT_ROW(KY0, KY1)                                                                                      \
    {{dw_##KY0##KY1##03##11, dw_##KY0##KY1##03##12, dw_##KY0##KY1##03##13, dw_##KY0##KY1##03##14},                 \
     {dw_##KY0##KY1##03##21, dw_##KY0##KY1##03##22, dw_##KY0##KY1##03##23, dw_##KY0##KY1##03##24}}
static const dw_fn dw_interior[2][2][2][4] = {{DW_INT_ROW(0, 2), DW_INT_ROW(0, 3)},
                                              {DW_INT_ROW(1, 2), DW_INT_ROW(1, 3)}};
/* edge pixels (one output): [ky0][ky1 - 2][kx0][kx1 - 2] (the stride does not matter for one output) */
#define DW_EDGE(KY0, KY1) DW_FN(KY0, KY1, 0, 2, 1, 1) DW_FN(KY0, KY1, 1, 2, 1, 1) DW_FN(KY0, KY1, 1, 3, 1, 1)
DW_EDGE(0, 2)
DW_EDGE(0, 3)
DW_EDGE(1, 2)
DW_EDGE(1, 3)
#define DW_EDGE_ROW(KY0, KY1) {{dw_##KY0##KY1##02##11, dw_##KY0##KY1##03##11}, {dw_##KY0##KY1##12##11, dw_##KY0##KY1##13##11}}
static const dw_fn dw_edge[2][2][2][2] = {{DW_EDGE_ROW(0, 2), DW_EDGE_ROW(0, 3)},
                                          {DW_EDGE_ROW(1, 2), DW_EDGE_ROW(1, 3)}};
#undef DW_FN
#undef DW_INT
#undef DW_INT_ROW
#undef DW_EDGE
#undef DW_EDGE_ROW
#endif

/* Depthwise 3x3 output row (cpu.h). Interior pixels (all three kx taps
 * inside) four at a time (dw_block), edge pixels one at a time with their
 * valid taps; channels innermost (8 a vector, scalar tail); taps in
 * (ky, kx) order from the bias. At the AVX-512 level (lib/cpu.h): the same
 * scheme 16 channels a zmm, 8 pixels a block (dw_avx512.c). */
void mmp_nn_cpu_dw3x3_row(const mmp_nn_conv *c, const float *const rows[3], int W, const float *res, float *out) {
    if (mmp_cpu_isa() >= MMP_ISA_AVX512) {
        mmp_nn_cpu_dw3x3_row_avx512(c, rows, W, res, out);
        return;
    }
    int C = c->cout, s = c->stride;
    int Wo = mmp_nn_conv_out(W, 3, s, 1);
    const float *w = c->w, *b = c->b;
    mmp_nn_act act = c->act;
    int ky0 = rows[0] ? 0 : 1, ky1 = rows[2] ? 3 : 2; /* rows[1] always exists */
    int cb = 0;
#ifdef __AVX2__
    int C8 = C / 8 * 8;
    if (C8) {
        const dw_fn *fi = dw_interior[ky0][ky1 - 2][s - 1];
        for (int ox = 0; ox < Wo;) {
            int ix0 = ox * s - 1;
            const float *rp = res ? res + (long)ox * C : NULL;
            if (ix0 < 0 || ix0 + 3 > W) { /* edge pixel */
                int kx0 = ix0 < 0 ? 1 : 0, kx1 = ix0 + 3 > W ? W - ix0 : 3;
                dw_edge[ky0][ky1 - 2][kx0][kx1 - 2](rows, ix0, C, C8, w, b, rp, out + (long)ox * C, act);
                ox++;
                continue;
            }
            int nb = 1; /* interior outputs ahead, up to 4 */
            while (nb < 4 && ox + nb < Wo && (ox + nb) * s + 1 < W) nb++;
            fi[nb - 1](rows, ix0, C, C8, w, b, rp, out + (long)ox * C, act);
            ox += nb;
        }
    }
    cb = C8;
#endif
    for (; cb < C; cb++) { /* scalar channels (all of them without AVX2) */
        for (int ox = 0; ox < Wo; ox++) {
            int ix0 = ox * s - 1;
            int kx0 = ix0 < 0 ? 1 : 0, kx1 = ix0 + 3 > W ? W - ix0 : 3;
            float acc = b[cb];
            for (int ky = ky0; ky < ky1; ky++)
                for (int kx = kx0; kx < kx1; kx++) acc += w[(ky * 3 + kx) * C + cb] * rows[ky][(long)(ix0 + kx) * C + cb];
            if (res) acc += res[(long)ox * C + cb];
            if (act != MMP_NN_ACT_NONE) acc = acc > 0.0f ? acc : 0.0f;
            if (act == MMP_NN_ACT_RELU6) acc = acc < 6.0f ? acc : 6.0f;
            out[(long)ox * C + cb] = acc;
        }
    }
}

/* Depthwise 3x3, pad 1, stride 1 or 2. in [G,H,W,C], out [G,Ho,Wo,C],
 * w [9][C], b [C]: row by row. */
static void dwconv3x3(const mmp_nn_conv *c, const float *in, int G, int H, int W, const float *res,
                      float *out) {
    int C = c->cout, s = c->stride;
    int Ho = mmp_nn_conv_out(H, 3, s, 1), Wo = mmp_nn_conv_out(W, 3, s, 1);
    for (int g = 0; g < G; g++) {
        const float *img = in + (long)g * H * W * C;
        for (int oy = 0; oy < Ho; oy++) {
            const float *rows[3];
            for (int ky = 0; ky < 3; ky++) {
                int iy = oy * s - 1 + ky;
                rows[ky] = iy < 0 || iy >= H ? NULL : img + (long)iy * W * C;
            }
            long o = ((long)g * Ho + oy) * Wo * C;
            mmp_nn_cpu_dw3x3_row(c, rows, W, res ? res + o : NULL, out + o);
        }
    }
}

void mmp_nn_cpu_conv2d(const mmp_nn_conv *c, const float *in, int G, int H, int W, const float *res,
                   float *out, float *scratch) {
    if (c->depthwise) {
        dwconv3x3(c, in, G, H, W, res, out);
        return;
    }
    if (mmp_nn_wino_use(c, H, W)) { /* dense 3x3 stride 1 with transformed weights */
        mmp_nn_wino_conv2d(c, in, G, H, W, res, out, scratch);
        return;
    }
    int Ho = mmp_nn_conv_out(H, c->k, c->stride, c->pad), Wo = mmp_nn_conv_out(W, c->k, c->stride, c->pad);
    long M = (long)G * Ho * Wo;
    int kd = c->k * c->k * c->cin, n = c->cout;
    int direct = c->k == 1 && c->stride == 1 && c->pad == 0;
    int R = chunk_rows(kd, n, M);
    for (long r0 = 0; r0 < M; r0 += R) {
        long r1 = r0 + R < M ? r0 + R : M;
        const float *A;
        if (direct) {
            A = in + r0 * kd;
        } else {
            im2col_rows(c, in, H, W, Ho, Wo, r0, r1, scratch);
            A = scratch;
        }
        float *C = out + r0 * n;
        if (c->gemm) { /* weights packed at load, bias/residual/activation fused */
            mmp_sgemm_packed(MMP_GEMM_N, (int)(r1 - r0), A, kd, c->gemm, c->b, res ? res + r0 * n : NULL, n, (int)c->act,
                             C, n);
            continue;
        }
        /* C[rows, n] = b + A[rows, kd] . W[n, kd]^T (beta = 1: no zeroing pass) */
        fill_rows(C, r1 - r0, n, c->b);
        mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, (int)(r1 - r0), n, kd, 1.0f, A, kd,
                    c->w, kd, 1.0f, C, n);
        if (res || c->act != MMP_NN_ACT_NONE) epilogue(C, r1 - r0, n, NULL, res ? res + r0 * n : NULL, c->act);
    }
}

void mmp_nn_cpu_maxpool3x3s2(const float *in, int G, int H, int W, int C, float *out) {
    int Ho = mmp_nn_conv_out(H, 3, 2, 1), Wo = mmp_nn_conv_out(W, 3, 2, 1);
    for (int g = 0; g < G; g++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++) {
                int iy0 = oy * 2 - 1, ix0 = ox * 2 - 1;
                int ky0 = iy0 < 0 ? 1 : 0, ky1 = iy0 + 3 > H ? H - iy0 : 3;
                int kx0 = ix0 < 0 ? 1 : 0, kx1 = ix0 + 3 > W ? W - ix0 : 3;
                float *o = out + (((long)g * Ho + oy) * Wo + ox) * C;
                int c = 0;
#ifdef __AVX2__
                for (; c + 8 <= C; c += 8) {
                    __m256 m = _mm256_set1_ps(-FLT_MAX);
                    for (int ky = ky0; ky < ky1; ky++)
                        for (int kx = kx0; kx < kx1; kx++)
                            m = _mm256_max_ps(m, _mm256_loadu_ps(in + (((long)g * H + iy0 + ky) * W + ix0 + kx) * C + c));
                    _mm256_storeu_ps(o + c, m);
                }
#endif
                for (; c < C; c++) {
                    float m = -FLT_MAX;
                    for (int ky = ky0; ky < ky1; ky++)
                        for (int kx = kx0; kx < kx1; kx++) {
                            float v = in[(((long)g * H + iy0 + ky) * W + ix0 + kx) * C + c];
                            m = v > m ? v : m;
                        }
                    o[c] = m;
                }
            }
}

void mmp_nn_cpu_avgpool(const float *in, int G, int HW, int C, float *out) {
    for (int g = 0; g < G; g++) {
        const float *x = in + (long)g * HW * C;
        float *o = out + (long)g * C;
        int c = 0;
#ifdef __AVX2__
        for (; c + 8 <= C; c += 8) {
            __m256 acc = _mm256_setzero_ps();
            for (int i = 0; i < HW; i++) acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + (long)i * C + c));
            _mm256_storeu_ps(o + c, _mm256_div_ps(acc, _mm256_set1_ps((float)HW)));
        }
#endif
        for (; c < C; c++) {
            float acc = 0;
            for (int i = 0; i < HW; i++) acc += x[(long)i * C + c];
            o[c] = acc / (float)HW;
        }
    }
}

void mmp_nn_cpu_linear(const float *in, int G, int D, const float *w, const float *b, int O, float *out) {
    mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, G, O, D, 1.0f, in, D, w, D, 0.0f, out, O);
    epilogue(out, G, O, b, NULL, MMP_NN_ACT_NONE);
}

void mmp_nn_cpu_to_chw(const float *in, int G, int HW, int C, float *out) {
    for (int g = 0; g < G; g++)
        for (int i = 0; i < HW; i++)
            for (int c = 0; c < C; c++)
                out[((long)g * C + c) * HW + i] = in[((long)g * HW + i) * C + c];
}

static size_t conv2d_scratch(const mmp_nn_conv *c, int G, int H, int W) { return mmp_nn_cpu_conv2d_scratch(c, G, H, W); }

const mmp_nn_ops mmp_nn_ops_cpu = {
    .name = "cpu",
    .conv2d_scratch = conv2d_scratch,
    .conv2d = mmp_nn_cpu_conv2d,
    .maxpool3x3s2 = mmp_nn_cpu_maxpool3x3s2,
    .avgpool = mmp_nn_cpu_avgpool,
    .linear = mmp_nn_cpu_linear,
    .to_chw = mmp_nn_cpu_to_chw,
    .inverted_residual_scratch = mmp_nn_cpu_inverted_residual_scratch,
    .inverted_residual = mmp_nn_cpu_inverted_residual,
    .conv2d_packed_scratch = mmp_nn_cpu_conv2d_packed_scratch,
    .conv2d_packed = mmp_nn_cpu_conv2d_packed,
};
