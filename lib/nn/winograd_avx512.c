/* nn/winograd_avx512.c: Winograd's input and output transforms at the
 * AVX-512 level (lib/cpu.h): winograd_tr.h with 16 channels a zmm. */
#include "nn/cpu.h"

#define VL 16
#define WTR(name) name##_16
#include "nn/winograd_tr.h"

void mmp_nn_wino_in_avx512(int m, const float *in, int H, int W, int ci, long t0, int nt, long per, int ntx, float *V,
                           long pstride) {
    if (m == 2) in_chunk_16(2, in, H, W, ci, t0, nt, per, ntx, V, pstride);
    else in_chunk_16(4, in, H, W, ci, t0, nt, per, ntx, V, pstride);
}

void mmp_nn_wino_out_avx512(int m, const float *M, long pstride, long t0, int nt, long per, int ntx, int co, int cop,
                            const float *b, const float *res, mmp_nn_act act, int Ho, int Wo, float *out) {
    if (m == 2) out_chunk_16(2, M, pstride, t0, nt, per, ntx, co, cop, b, res, act, Ho, Wo, out);
    else out_chunk_16(4, M, pstride, t0, nt, per, ntx, co, cop, b, res, act, Ho, Wo, out);
}
