/* nn/winograd.h: Winograd F(m x m, 3x3) convolution (m = 2 or 4) for the
 * dense 3x3, stride 1, pad 1 convolutions of the CPU engine (ops.h).
 *
 *   out = A^T [ (G g G^T) (.) (B^T d B) ] A      per m x m output tile
 *
 * The weights are transformed once (mmp_nn_wino_prepare, at model load) into
 * U[a*a][cin][cout], a = m + 2, packed in panels of 16 output channels. A
 * convolution then runs over chunks of tiles: input transform into
 * V[a*a][T][cin] (T tiles of the chunk, zero padding at the borders), a*a
 * products V[p] . U[p] -> M[p][T][cout] by an AVX2/FMA 6x16 micro-kernel
 * (not OpenBLAS: the weights are already packed, so short GEMMs of small
 * maps stay fast), and the output transform fused with bias, residual and
 * ReLU/ReLU6, written NHWC and cropped at odd sizes. Every GEMM output is
 * one FMA chain over cin, so a tile's result depends only on its own input:
 * an image gets the same bits whatever batch or chunk it is in, whatever
 * the thread count. The transforms run over 8 channels at a time (GCC
 * vector extension: AVX2 with -march=x86-64-v3, SSE otherwise).
 * At the AVX-512 level (lib/cpu.h) the transforms run 16 channels a zmm
 * (nn/winograd_tr.h compiled in winograd_avx512.c) and the tile GEMMs on the
 * 12x32 zmm kernel of nn/cpu.h (same panels): the same per-lane operations
 * and FMA chains, so both levels give the same bits.
 * Measured error vs the im2col path: tests/test_nn_winograd.c. */
#ifndef MMP_NN_WINOGRAD_H
#define MMP_NN_WINOGRAD_H
#include <stddef.h>

#include "nn/ops.h"

/* 1 when c is a dense 3x3, stride 1, pad 1 convolution. */
int mmp_nn_wino_eligible(const mmp_nn_conv *c);
/* Sets c->wino (transformed weights, malloc'd; the caller frees it) and
 * c->wino_m = m (2 or 4) from c->w. Returns 0, or -1 (c unchanged) when
 * c is not eligible or m is not 2 or 4. */
int mmp_nn_wino_prepare(mmp_nn_conv *c, int m);
/* The tile size for a convolution whose map is HxW at the model's nominal
 * input size (the loader's choice): 4 when the map has at least 9 tiles
 * of 4x4 and 1.4 x their GEMM work is at most F(2x2)'s (56, 28, 24, 12 px
 * maps), else 2 when it has at least 9 tiles of 2x2 (14, 7, 6 px), else 0
 * (im2col).
 * Env MMP_NN_WINOGRAD: "0" = always 0 (im2col everywhere, for comparisons),
 * "2" or "4" = that m for every map. */
int mmp_nn_wino_pick_m(int H, int W);
/* 1 when mmp_nn_cpu_conv2d runs c on an HxW input with Winograd: c->wino set
 * and the map is large enough (a function of the shapes only). */
int mmp_nn_wino_use(const mmp_nn_conv *c, int H, int W);
/* Floats of scratch mmp_nn_wino_conv2d needs (independent of G). */
size_t mmp_nn_wino_scratch(const mmp_nn_conv *c, int G, int H, int W);
/* out[G,H,W,cout] = act(conv3x3(in[G,H,W,cin]) + b (+ res)); needs c->wino. */
void mmp_nn_wino_conv2d(const mmp_nn_conv *c, const float *in, int G, int H, int W, const float *res, float *out,
                    float *scratch);
#endif
