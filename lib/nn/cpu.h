/* nn/cpu.h: building blocks shared by the CPU kernel files (ops_cpu.c,
 * inverted_residual.c); not part of the device seam. */
#ifndef MMP_NN_CPU_H
#define MMP_NN_CPU_H
#include "nn/ops.h"

/* A 1x1 conv's weights w[N][K] (N = cout, K = cin) in the layout of
 * mmp_nn_cpu_pw_gemm: panels of 16 output channels, panel q at q*16*K floats,
 * [K][16] ([K][8] for a last panel of <= 8 channels), zero padded. The
 * caller frees it. */
float *mmp_nn_cpu_pack_1x1(const float *w, int N, int K);

/* C[M,N] = act(A[M,K] (row stride lda) . W^T + bias[N] (+ R[M,N])), W
 * packed by mmp_nn_cpu_pack_1x1, C and R with row stride N. Single-threaded,
 * register-blocked: AVX2/FMA 6 rows x 16 columns, or, at the AVX-512 level
 * (mmp_cpu_isa()), 12 x 32 (mmp_nn_cpu_gemm_seg_avx512) on the same packed
 * weights; each element's sum runs over k in order (one FMA chain from zero,
 * then + bias, + R, act at either level), so a row's result does not depend
 * on M or on the other rows. */
void mmp_nn_cpu_pw_gemm(int M, int N, int K, const float *A, long lda, const float *Bp, const float *bias,
                    const float *R, float *C, mmp_nn_act act);

/* The AVX-512 level (lib/cpu.h) of pw_gemm, with the implicit im2col of the
 * packed dense conv: C[M,N] = act(sum over segments g < nseg of A_g . B_g +
 * bias (+ R)), row i of A_g = As[g] + i*lda (Ks[g] values) times packed rows
 * Bo[g].. of Bp (K rows in all); bias and R may be NULL. Called only when
 * mmp_cpu_isa() says so. */
void mmp_nn_cpu_gemm_seg_avx512(int M, int N, int K, int nseg, const float *const *As, const int *Ks, const int *Bo,
                                long lda, const float *Bp, const float *bias, const float *R, float *C,
                                mmp_nn_act act);

/* One output row of a depthwise 3x3 conv (pad 1, stride c->stride):
 * rows[ky] = input row oy*s-1+ky ([W,C]), NULL where it is padding;
 * out [Wo,C] = act(conv + b (+ res[Wo,C])); res may be NULL. */
void mmp_nn_cpu_dw3x3_row(const mmp_nn_conv *c, const float *const rows[3], int W, const float *res, float *out);
/* Its AVX-512 level: 16 channels a zmm, the last vector masked. */
void mmp_nn_cpu_dw3x3_row_avx512(const mmp_nn_conv *c, const float *const rows[3], int W, const float *res, float *out);

/* Winograd's transforms at the AVX-512 level (winograd_avx512.c, 16 channels
 * a zmm; the same per-lane operations as winograd.c's 8-channel ones): the
 * input transform of tiles t0 .. t0+nt-1 into rows of V[a*a][T][cin] and the
 * output transform (+ bias, + res, act) of rows of M[a*a][T][cop]. */
void mmp_nn_wino_in_avx512(int m, const float *in, int H, int W, int ci, long t0, int nt, long per, int ntx, float *V,
                           long pstride);
void mmp_nn_wino_out_avx512(int m, const float *M, long pstride, long t0, int nt, long per, int ntx, int co, int cop,
                            const float *b, const float *res, mmp_nn_act act, int Ho, int Wo, float *out);

/* The kernel each op of the CPU engine runs at this process's instruction-set
 * level (mmp_cpu_isa()), one "op: path" line each, the first "level: NAME";
 * for benchmark headers (bench_nn paths). */
const char *mmp_nn_cpu_paths(void);
#endif
