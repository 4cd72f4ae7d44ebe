/* nn/gemm.c: mmp_sgemm (see gemm.h): the blocking driver, the per-thread
 * pack buffers, the pre-packed B. The packing and the AVX2/FMA 6x16
 * micro-kernel are in gemm_avx2.c, the AVX-512 micro-kernel in
 * gemm_avx512.c (each compiled for its level whatever the build's flags).
 *
 * Loops (BLIS order): jc over N by NC, pc over K by KC (pack op(B) block
 * KC x NC into NR-column panels), ic over M by MC (pack op(A) block MC x KC
 * into MR-row panels when A is transposed; otherwise the kernel reads A's
 * rows in place and only a last partial panel is packed), jr over NR panels,
 * ir over MR panels: micro-kernel. Edges are zero-padded in the panels; the
 * kernel stores only the valid m x n part of its tile, with the same
 * arithmetic as a full tile. */
#include "nn/gemm.h"
#include "nn/gemm_kernel.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- per-thread pack buffers ---- */
typedef struct {
    float *a, *b;
    size_t na, nb; /* floats */
} packbuf;

static pthread_key_t g_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

static void packbuf_free(void *p) {
    packbuf *pb = p;
    free(pb->a);
    free(pb->b);
    free(pb);
}
static void key_init(void) {
    if (pthread_key_create(&g_key, packbuf_free)) {
        fprintf(stderr, "mmpipe: gemm: pthread_key_create failed\n");
        abort();
    }
}

static float *grow(float **p, size_t *have, size_t need) {
    if (*have >= need) return *p;
    free(*p);
    *p = aligned_alloc(64, (need * sizeof(float) + 63) / 64 * 64);
    if (!*p) {
        fprintf(stderr, "mmpipe: gemm: out of memory (%zu floats of pack buffer)\n", need);
        abort();
    }
    *have = need;
    return *p;
}

static packbuf *packbuf_get(size_t na, size_t nb) {
    pthread_once(&g_key_once, key_init);
    packbuf *pb = pthread_getspecific(g_key);
    if (!pb) {
        pb = calloc(1, sizeof *pb);
        if (!pb || pthread_setspecific(g_key, pb)) {
            fprintf(stderr, "mmpipe: gemm: out of memory\n");
            abort();
        }
    }
    grow(&pb->a, &pb->na, na);
    if (nb) grow(&pb->b, &pb->nb, nb);
    return pb;
}

/* the kernel set for a level and N (every set has the same KC: the same bits) */
static const mmp_gemm_arch *arch_of(mmp_isa isa, int N) {
    if (isa > mmp_cpu_isa()) {
        fprintf(stderr, "mmpipe: gemm: %s requested on a CPU without it\n", mmp_isa_name(isa));
        abort();
    }
    if (isa == MMP_ISA_AVX512) return N <= 16 ? &mmp_gemm_arch_avx512_n16 : &mmp_gemm_arch_avx512;
    return &mmp_gemm_arch_avx2;
}

static inline int rup(int x, int m) { return (x + m - 1) / m * m; }

/* The driver. */
/* Bpre: op(B) packed whole by mmp_sgemm_pack_b (NULL: pack here), the call's
 * columns from jpre (a multiple of nr) of its Npre. */
static void run(const mmp_gemm_arch *ar, int transa, int transb, int M, int N, int K, float alpha, const float *A,
                int lda, const float *B, int ldb, float beta, float *C, int ldc, const float *Bpre, int Npre, int jpre,
                const float *bias, const float *R, int ldr, int act) {
    const int mr = ar->mr, nr = ar->nr, KC = ar->kc;
    int MC = ar->mc / mr * mr, NC = ar->nc / nr * nr; /* whole panels (the pre-packed layout needs it) */
    if (MC > rup(M, mr)) MC = rup(M, mr);
    if (NC > rup(N, nr)) NC = rup(N, nr);
    int kcmax = K < KC ? K : KC;
    /* few rows of A in place (a decoding step): the tile kernel at height M,
     * each B panel streamed once; the same FMA chains and epilogue, so the same
     * bits as inside a bigger call */
    const int few = !transa && M <= MMP_GEMM_FEW;
    packbuf *pb = packbuf_get(few ? 1 : (size_t)MC * kcmax, Bpre ? 0 : (size_t)NC * kcmax);
    const int Npad = rup(Bpre ? Npre : N, nr);
    /* op(A) = A read in place by the kernel (no packing) when not transposed:
     * faster at every measured shape, 1.2-2x where N is small (an A element
     * serves only N FMAs, packing it costs about as much) */
    const int direct = !transa;
    for (int jc = 0; jc < N; jc += NC) {
        int nc = N - jc < NC ? N - jc : NC;
        for (int pc = 0; pc < K; pc += KC) {
            int kc = K - pc < KC ? K - pc : KC;
            const float *Bp;
            if (Bpre) Bp = Bpre + (long)pc * Npad + (long)(jpre + jc) * kc;
            else {
                mmp_gemm_pack_b(nr, transb, B, ldb, jc, nc, pc, kc, pb->b);
                Bp = pb->b;
            }
            mmp_gemm_tile t = {.alpha = alpha, .beta = beta, .first = pc == 0, .last = pc + kc >= K, .act = act,
                               .ldr = ldr};
            if (few) {
                for (int jr = 0; jr < nc; jr += nr) {
                    t.bias = bias ? bias + jc + jr : NULL;
                    t.res = R ? R + jc + jr : NULL;
                    ar->kernel_few(kc, A + pc, lda, Bp + (long)jr * kc, C + jc + jr, ldc, M,
                                   nc - jr < nr ? nc - jr : nr, &t);
                }
                continue;
            }
            for (int ic = 0; ic < M; ic += MC) {
                int mc = M - ic < MC ? M - ic : MC;
                /* direct: full panels of A read in place, only a last partial one packed */
                int full = direct ? mc / mr * mr : 0;
                mmp_gemm_pack_a(mr, transa, A, lda, ic + full, mc - full, pc, kc, pb->a);
                /* tiles over the mc x nc block: B's micro-panels outer (each one
                 * kept in L1 while A's panels stream from L2) or, ir_outer, A's
                 * panel kept in L1 while B's block (kc x nc, NC small enough
                 * for L2) streams: the same tiles and bits either way */
                const int ni = (mc + mr - 1) / mr, nj = (nc + nr - 1) / nr;
                for (int u = 0; u < ni * nj; u++) {
                    const int ir = (ar->ir_outer ? u / nj : u % ni) * mr, jr = (ar->ir_outer ? u % nj : u / ni) * nr;
                    const int m = mc - ir < mr ? mc - ir : mr, n = nc - jr < nr ? nc - jr : nr;
                    const float *bp = Bp + (long)jr * kc;
                    t.bias = bias ? bias + jc + jr : NULL;
                    t.res = R ? R + (long)(ic + ir) * ldr + jc + jr : NULL;
                    float *c = C + (long)(ic + ir) * ldc + jc + jr;
                    if (ir < full) ar->kernel_direct(kc, A + (long)(ic + ir) * lda + pc, lda, bp, c, ldc, n, &t);
                    else ar->kernel(kc, pb->a + (long)(ir - full) * kc, bp, c, ldc, m, n, &t);
                }
            }
        }
    }
}

void mmp_sgemm_isa(mmp_isa isa, int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) { /* C = beta*C */
        for (int i = 0; i < M; i++) {
            float *c = C + (long)i * ldc;
            for (int j = 0; j < N; j++) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
        }
        return;
    }
    run(arch_of(isa, N), transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL, 0, 0, NULL, NULL, 0,
        MMP_GEMM_ACT_NONE);
}

void mmp_sgemm(int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
               int ldb, float beta, float *C, int ldc) {
    mmp_sgemm_isa(mmp_cpu_isa(), transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void epilogue_only(int M, int N, const float *bias, const float *R, int ldr, int act, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float v = 0.0f;
            if (bias) v += bias[j];
            if (R) v += R[(long)i * ldr + j];
            if (act != MMP_GEMM_ACT_NONE) v = v > 0.0f ? v : 0.0f;
            if (act == MMP_GEMM_ACT_RELU6) v = v < 6.0f ? v : 6.0f;
            C[(long)i * ldc + j] = v;
        }
}

void mmp_sgemm_bias(int transb, int M, int N, int K, const float *A, int lda, const float *B, int ldb, const float *bias,
                    const float *R, int ldr, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        epilogue_only(M, N, bias, R, ldr, MMP_GEMM_ACT_NONE, C, ldc);
        return;
    }
    run(arch_of(mmp_cpu_isa(), N), MMP_GEMM_N, transb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc, NULL, 0, 0, bias, R,
        ldr, MMP_GEMM_ACT_NONE);
}

/* ---- pre-packed B ---- */
struct mmp_sgemm_pack {
    const mmp_gemm_arch *ar;
    int N, K;
    float *p; /* KC blocks in order, each [ceil(N/nr)][kc][nr] */
};

mmp_sgemm_pack *mmp_sgemm_pack_b_isa(mmp_isa isa, int transb, int N, int K, const float *B, int ldb) {
    const mmp_gemm_arch *ar = arch_of(isa, N);
    mmp_sgemm_pack *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->ar = ar, p->N = N, p->K = K;
    size_t n = (size_t)rup(N, ar->nr) * (K > 0 ? K : 1);
    p->p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p->p) {
        free(p);
        return NULL;
    }
    int Npad = rup(N, ar->nr);
    for (int pc = 0; pc < K; pc += ar->kc) {
        int kc = K - pc < ar->kc ? K - pc : ar->kc;
        mmp_gemm_pack_b(ar->nr, transb, B, ldb, 0, N, pc, kc, p->p + (long)pc * Npad);
    }
    return p;
}

mmp_sgemm_pack *mmp_sgemm_pack_b(int transb, int N, int K, const float *B, int ldb) {
    return mmp_sgemm_pack_b_isa(mmp_cpu_isa(), transb, N, K, B, ldb);
}

void mmp_sgemm_pack_free(mmp_sgemm_pack *p) {
    if (!p) return;
    free(p->p);
    free(p);
}
int mmp_sgemm_pack_n(const mmp_sgemm_pack *p) { return p->N; }
int mmp_sgemm_pack_k(const mmp_sgemm_pack *p) { return p->K; }

void mmp_sgemm_packed(int transa, int M, const float *A, int lda, const mmp_sgemm_pack *B, const float *bias,
                      const float *R, int ldr, int act, float *C, int ldc) {
    int N = B->N, K = B->K;
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* act(bias + R) */
        epilogue_only(M, N, bias, R, ldr, act, C, ldc);
        return;
    }
    run(B->ar, transa, 0, M, N, K, 1.0f, A, lda, NULL, 0, 0.0f, C, ldc, B->p, N, 0, bias, R, ldr, act);
}

int mmp_sgemm_pack_nr(const mmp_sgemm_pack *p) { return p->ar->nr; }

void mmp_sgemm_packed_cols(int M, const float *A, int lda, const mmp_sgemm_pack *B, int j0, int j1, const float *bias,
                           const float *R, int ldr, int act, float *C, int ldc) {
    int N = B->N, K = B->K;
    if (j0 % B->ar->nr || j0 < 0 || j1 > N) {
        fprintf(stderr, "mmpipe: gemm: columns [%d, %d) of a pack of %d in panels of %d\n", j0, j1, N, B->ar->nr);
        abort();
    }
    if (M <= 0 || j1 <= j0) return;
    const float *b = bias ? bias + j0 : NULL, *r = R ? R + j0 : NULL;
    if (K <= 0) {
        epilogue_only(M, j1 - j0, b, r, ldr, act, C + j0, ldc);
        return;
    }
    run(B->ar, MMP_GEMM_N, 0, M, j1 - j0, K, 1.0f, A, lda, NULL, 0, 0.0f, C + j0, ldc, B->p, N, j0, b, r, ldr, act);
}
