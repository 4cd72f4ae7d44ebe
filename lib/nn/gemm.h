/* nn/gemm.h: mmpipe's single-precision matrix product (every GEMM of libmmp).
 *
 *   C[M,N] = alpha * op(A)[M,K] . op(B)[K,N] + beta * C
 *
 * row-major, cblas semantics: op(A) = A [M,K] (row stride lda) or, with
 * transa, A^T where A is [K,M]; op(B) likewise ([K,N] or, with transb, B^T
 * where B is [N,K]). beta == 0 does not read C (NaN in C is overwritten).
 * Single-threaded: callers parallelize over rows or images.
 *
 * BLIS-style: op(B) and a transposed A are packed (the packing does the
 * transposes) into register-tile panels, a not-transposed A is read in
 * place, and a micro-kernel chosen by CPUID features (lib/cpu.h: AVX2/FMA
 * 6x16; AVX-512 12x32, 24x16 for N <= 16) runs over them; a call of at
 * most 4 rows of a not-transposed A runs the same kernel at that height
 * (each B panel streamed once, no empty tile rows). docs/compute.md.
 *
 * Deterministic by construction: each C element is one FMA chain over k in
 * order, cut into blocks of a fixed KC = 256 (never dependent on M, N, the
 * element's position or the thread count), the blocks added into C in order,
 * then alpha/beta (and the fused epilogue) element-wise. So a row of C has
 * the same bits whatever M is and whichever other rows are in the call, and
 * since both levels use the same KC and the same per-element operations, the
 * AVX2 and AVX-512 paths give the same bits too (tests/test_gemm.c checks it).
 *
 * Pack buffers are per thread, allocated on first use (grown when needed),
 * freed at thread exit; no allocation in the hot path. */
#ifndef MMP_NN_GEMM_H
#define MMP_NN_GEMM_H
#include "../cpu.h" /* lib/cpu.h, not nn/cpu.h */

enum { MMP_GEMM_N = 0, MMP_GEMM_T = 1 };
/* Activations of the fused epilogue (same values as mmp_nn_act). */
enum { MMP_GEMM_ACT_NONE = 0, MMP_GEMM_ACT_RELU = 1, MMP_GEMM_ACT_RELU6 = 2 };

void mmp_sgemm(int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
               int ldb, float beta, float *C, int ldc);
/* The same at a given level (tests, benchmarks); isa must not exceed mmp_cpu_isa(). */
void mmp_sgemm_isa(mmp_isa isa, int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc);

/* C[M,N] = A[M,K] . op(B)[K,N] + bias[N] (+ R[M,N], row stride ldr): bias and
 * R may be NULL. The same bits as mmp_sgemm (alpha 1, beta 0) followed by
 * C += bias, then C += R (the fused epilogue of mmp_sgemm_packed), without
 * the extra passes over C. */
void mmp_sgemm_bias(int transb, int M, int N, int K, const float *A, int lda, const float *B, int ldb, const float *bias,
                    const float *R, int ldr, float *C, int ldc);

/* op(B) [K,N] packed once (weights at model load) for mmp_sgemm_packed, at
 * the level mmp_cpu_isa() (or isa) says. Free with mmp_sgemm_pack_free. */
typedef struct mmp_sgemm_pack mmp_sgemm_pack;
mmp_sgemm_pack *mmp_sgemm_pack_b(int transb, int N, int K, const float *B, int ldb);
mmp_sgemm_pack *mmp_sgemm_pack_b_isa(mmp_isa isa, int transb, int N, int K, const float *B, int ldb);
void mmp_sgemm_pack_free(mmp_sgemm_pack *p);
int mmp_sgemm_pack_n(const mmp_sgemm_pack *p);
int mmp_sgemm_pack_k(const mmp_sgemm_pack *p);

/* C[M,N] = act(op(A)[M,K] . packed B + bias[N] (+ R[M,N], row stride ldr)),
 * bias and R may be NULL; act one of MMP_GEMM_ACT_*. The same k order (and so
 * the same bits) as mmp_sgemm at the pack's level with alpha 1, beta 0,
 * followed by the bias, residual and activation. */
void mmp_sgemm_packed(int transa, int M, const float *A, int lda, const mmp_sgemm_pack *B, const float *bias,
                      const float *R, int ldr, int act, float *C, int ldc);
/* The panel width of a pack (the column granularity of mmp_sgemm_packed_cols). */
int mmp_sgemm_pack_nr(const mmp_sgemm_pack *p);
/* Columns [j0, j1) of mmp_sgemm_packed (A not transposed; j0 a multiple of
 * mmp_sgemm_pack_nr): C[M, j0..j1) (C, bias, R indexed by the whole pack's
 * columns), the same bits as the whole call's (threads split columns so). */
void mmp_sgemm_packed_cols(int M, const float *A, int lda, const mmp_sgemm_pack *B, int j0, int j1, const float *bias,
                           const float *R, int ldr, int act, float *C, int ldc);
#endif
