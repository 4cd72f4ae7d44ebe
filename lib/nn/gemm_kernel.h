/* nn/gemm_kernel.h: the seam between the GEMM driver (gemm.c) and the
 * micro-kernels of each instruction-set level (gemm.c: AVX2, gemm_avx512.c);
 * internal to nn/gemm.c and its kernel files. */
#ifndef MMP_NN_GEMM_KERNEL_H
#define MMP_NN_GEMM_KERNEL_H

/* What a kernel does with its MR x NR tile of sums (acc) for one KC block:
 *   first block: c = alpha*acc (+ beta*C when beta != 0)
 *   later block: c = C + alpha*acc
 *   last block:  then c += bias[j] (if bias), c += R[i][j] (if res), act
 * (alpha == 1 and beta == 1 skip their multiplications, which changes no bit). */
typedef struct {
    float alpha, beta;
    int first, last;
    const float *bias; /* at the tile's first column, or NULL */
    const float *res;  /* at the tile's first element, or NULL */
    long ldr;
    int act; /* MMP_GEMM_ACT_* */
} mmp_gemm_tile;

/* C[0..m-1][0..n-1] (m <= MR, n <= NR, row stride ldc) from Ap (kc x MR,
 * k-major) and Bp (kc x NR, k-major): each element one FMA chain over k = 0..kc-1. */
typedef void (*mmp_gemm_kernel_fn)(int kc, const float *Ap, const float *Bp, float *C, long ldc, int m, int n,
                                   const mmp_gemm_tile *t);

/* The k block of every level: each C element is the FMA chain over one
 * block's k in order, the blocks added into C in order. One value for all
 * levels, so the AVX2 and AVX-512 paths give the same bits. */
#define MMP_GEMM_KC 256

/* The same on MR full rows of op(A) read in place: row i at A + i*lda
 * (not transposed A, no packing). */
typedef void (*mmp_gemm_kernel_direct_fn)(int kc, const float *A, long lda, const float *Bp, float *C, long ldc, int n,
                                          const mmp_gemm_tile *t);

/* The same on m <= MMP_GEMM_FEW rows of op(A) read in place (a decoding
 * step's few rows: B streamed once, no empty rows of a full tile computed);
 * each element the same FMA chain and epilogue as the full tile's. */
#define MMP_GEMM_FEW 4
typedef void (*mmp_gemm_kernel_few_fn)(int kc, const float *A, long lda, const float *Bp, float *C, long ldc, int m,
                                       int n, const mmp_gemm_tile *t);

typedef struct {
    int mr, nr; /* register tile */
    int kc;     /* k block: fixes the summation order, never varies */
    int mc, nc; /* cache blocks (multiples of mr, nr): speed only */
    int ir_outer; /* tile order in a block (gemm.c): speed only */
    mmp_gemm_kernel_fn kernel;
    mmp_gemm_kernel_direct_fn kernel_direct;
    mmp_gemm_kernel_few_fn kernel_few;
} mmp_gemm_arch;

/* avx512_n16: the AVX-512 level's tile for N <= 16 (same KC: same bits) */
extern const mmp_gemm_arch mmp_gemm_arch_avx2, mmp_gemm_arch_avx512, mmp_gemm_arch_avx512_n16;

/* op(A)[i0..i0+m-1][p0..p0+kc-1] into panels of mr rows: panel q at q*mr*kc,
 * [kc][mr], rows past m zero (gemm_avx2.c). */
void mmp_gemm_pack_a(int mr, int transa, const float *A, long lda, int i0, int m, int p0, int kc, float *dst);
/* op(B)[p0..p0+kc-1][j0..j0+n-1] into panels of nr columns: panel q at
 * q*nr*kc, [kc][nr], columns past n zero. */
void mmp_gemm_pack_b(int nr, int transb, const float *B, long ldb, int j0, int n, int p0, int kc, float *dst);
#endif
