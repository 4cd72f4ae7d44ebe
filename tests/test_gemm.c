/* nn/gemm.c: mmp_sgemm against a double-precision reference (every
 * transposition combination, odd and large sizes, alpha/beta cases, strided
 * leading dimensions, beta = 0 over NaN), bit-identity of a row (and a
 * column) whatever the other rows/columns of the call, the pre-packed variant
 * with its fused epilogue, at each instruction-set level this CPU has
 * (the AVX-512 part is skipped, with a line, on a CPU without it), and the
 * same bits from both levels. */
#include "nn/gemm.h"
#include "testlib.h"

#include <stdint.h>

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform in [-1, 1) */
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(g_rng >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}
static int irand(int lo, int hi) { return lo + (int)((frand() + 1.0f) * 0.5f * (float)(hi - lo + 1)) % (hi - lo + 1); }
static float *rnd(size_t n) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = frand();
    return p;
}
/* op(X)(r, c) of a row-major matrix with leading dimension ld */
static float at(const float *X, int trans, int ld, int r, int c) { return trans ? X[(long)c * ld + r] : X[(long)r * ld + c]; }

/* one call at level isa vs the double reference; returns 0 when within tolerance */
static int check_one(mmp_isa isa, int ta, int tb, int M, int N, int K, float alpha, float beta, int pad) {
    int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    float *A = rnd((size_t)(ta ? K : M) * lda), *B = rnd((size_t)(tb ? N : K) * ldb);
    float *C = rnd((size_t)M * ldc), *C0 = malloc((size_t)M * ldc * sizeof(float));
    if (beta == 0.0f)
        for (long i = 0; i < (long)M * ldc; i++) C[i] = NAN; /* must not be read */
    memcpy(C0, C, (size_t)M * ldc * sizeof(float));
    mmp_sgemm_isa(isa, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    int bad = 0;
    for (int i = 0; i < M && !bad; i++) {
        for (int j = 0; j < N; j++) {
            double s = 0, sa = 0;
            for (int k = 0; k < K; k++) {
                double p = (double)at(A, ta, lda, i, k) * at(B, tb, ldb, k, j);
                s += p, sa += fabs(p);
            }
            double c0 = beta == 0.0f ? 0.0 : C0[(long)i * ldc + j];
            double ref = alpha * s + beta * c0;
            double tol = (K + 4) * 1.2e-7 * (fabs(alpha) * sa + fabs(beta * c0)) + 1e-30;
            double got = C[(long)i * ldc + j];
            if (!(fabs(got - ref) <= tol)) {
                fprintf(stderr, "%s ta=%d tb=%d M=%d N=%d K=%d alpha=%g beta=%g: C[%d][%d] = %.9g, reference %.9g (tol %.3g)\n",
                        mmp_isa_name(isa), ta, tb, M, N, K, alpha, beta, i, j, got, ref, tol);
                bad = 1;
                break;
            }
        }
        for (int j = N; j < ldc; j++) /* padding untouched */
            if (memcmp(&C[(long)i * ldc + j], &C0[(long)i * ldc + j], sizeof(float))) {
                fprintf(stderr, "%s M=%d N=%d K=%d: C[%d][%d] past N written\n", mmp_isa_name(isa), M, N, K, i, j);
                bad = 1;
            }
    }
    free(A), free(B), free(C), free(C0);
    return bad;
}

static void test_reference(mmp_isa isa) {
    static const float alphas[] = {1.0f, 0.5f, -2.0f}, betas[] = {0.0f, 1.0f, 0.75f};
    int n = 0;
    for (int it = 0; it < 240; it++) { /* small odd sizes, all combinations */
        int ta = it & 1, tb = (it >> 1) & 1;
        int M = irand(1, 100), N = irand(1, 100), K = irand(1, 100);
        n += check_one(isa, ta, tb, M, N, K, alphas[it % 3], betas[(it / 3) % 3], it % 5 == 0 ? 3 : 0);
    }
    /* across KC (k blocks), MC and NC (cache blocks), with edges */
    static const int big[][3] = {{1, 1, 1}, {13, 33, 257}, {37, 65, 600}, {300, 70, 300}, {250, 2100, 40},
                                 {7, 2049, 513}, {600, 17, 1100}};
    for (size_t b = 0; b < sizeof big / sizeof big[0]; b++)
        for (int c = 0; c < 4; c++) n += check_one(isa, c & 1, c >> 1, big[b][0], big[b][1], big[b][2], c == 3 ? 0.5f : 1.0f, c == 2 ? 1.0f : 0.0f, c);
    CHECKF(n == 0, "%s: %d product(s) off the reference", mmp_isa_name(isa), n);
    /* K = 0 and alpha = 0: C = beta*C; beta = 0 clears NaN */
    float A[4] = {1, 2, 3, 4}, C[4] = {NAN, NAN, 2, 2};
    mmp_sgemm_isa(isa, 0, 0, 1, 2, 0, 1.0f, A, 1, A, 2, 0.0f, C, 2);
    CHECK(C[0] == 0.0f && C[1] == 0.0f);
    mmp_sgemm_isa(isa, 0, 0, 1, 2, 2, 0.0f, A, 2, A, 2, 0.5f, C + 2, 2);
    CHECK(C[2] == 1.0f && C[3] == 1.0f);
}

/* Row i of C (and column j) has the same bits whatever M (N) and whichever
 * rows (columns) are in the call. */
static void test_rows(mmp_isa isa) {
    const int Mf = 333, Nf = 150, K = 600; /* K crosses the k block of both levels */
    for (int c = 0; c < 3; c++) {
        int ta = c == 1, tb = c == 0;
        int lda = ta ? Mf : K, ldb = tb ? K : Nf;
        float *A = rnd((size_t)(ta ? K : Mf) * lda), *B = rnd((size_t)(tb ? Nf : K) * ldb);
        float *full = malloc((size_t)Mf * Nf * sizeof(float)), *part = malloc((size_t)Mf * Nf * sizeof(float));
        mmp_sgemm_isa(isa, ta, tb, Mf, Nf, K, 1.0f, A, lda, B, ldb, 0.0f, full, Nf);
        static const int Ms[] = {1, 7, 64, 333, 13};
        int diff = 0;
        for (int t = 0; t < 5; t++) {
            int m = Ms[t] < Mf ? Ms[t] : Mf;
            int i0 = (t * 97) % (Mf - m + 1);
            const float *Ai = ta ? A + i0 : A + (long)i0 * lda;
            mmp_sgemm_isa(isa, ta, tb, m, Nf, K, 1.0f, Ai, lda, B, ldb, 0.0f, part, Nf);
            diff += memcmp(part, full + (long)i0 * Nf, (size_t)m * Nf * sizeof(float)) != 0;
            /* columns j0..j0+n-1 alone */
            int n = 1 + t * 23, j0 = (t * 31) % (Nf - n + 1);
            const float *Bj = tb ? B + (long)j0 * ldb : B + j0;
            mmp_sgemm_isa(isa, ta, tb, Mf, n, K, 1.0f, A, lda, Bj, ldb, 0.0f, part, n);
            for (int i = 0; i < Mf; i++) diff += memcmp(part + (long)i * n, full + (long)i * Nf + j0, (size_t)n * sizeof(float)) != 0;
        }
        CHECKF(diff == 0, "%s ta=%d tb=%d: %d sub-products differ in bits from the full product", mmp_isa_name(isa), ta, tb, diff);
        free(A), free(B), free(full), free(part);
    }
}

/* Pre-packed B + epilogue = mmp_sgemm (alpha 1, beta 0) + bias + residual + act, bit for bit. */
static void test_packed(mmp_isa isa) {
    static const int sz[][3] = {{50, 64, 147}, {333, 37, 600}, {9, 100, 1}, {70, 513, 70}, {41, 10, 300}};
    for (int s = 0; s < 5; s++)
        for (int act = 0; act < 3; act++)
            for (int ta = 0; ta < 2; ta++) {
                int M = sz[s][0], N = sz[s][1], K = sz[s][2];
                float *A = rnd((size_t)M * K), *W = rnd((size_t)N * K), *bias = rnd(N), *R = rnd((size_t)M * (N + 1));
                for (int i = 0; i < N; i++) bias[i] *= 4.0f; /* ReLU6 clips somewhere */
                float *C = malloc((size_t)M * N * sizeof(float)), *D = malloc((size_t)M * N * sizeof(float));
                mmp_sgemm_pack *p = mmp_sgemm_pack_b_isa(isa, 1, N, K, W, K);
                CHECK(p && mmp_sgemm_pack_n(p) == N && mmp_sgemm_pack_k(p) == K);
                const float *res = act == 1 ? NULL : R;
                mmp_sgemm_packed(ta, M, A, ta ? M : K, p, s == 2 ? NULL : bias, res, N + 1, act, C, N);
                mmp_sgemm_isa(isa, ta, 1, M, N, K, 1.0f, A, ta ? M : K, W, K, 0.0f, D, N);
                int diff = 0;
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        float v = D[(long)i * N + j];
                        if (s != 2) v += bias[j];
                        if (res) v += res[(long)i * (N + 1) + j];
                        if (act) v = v > 0.0f ? v : 0.0f;
                        if (act == 2) v = v < 6.0f ? v : 6.0f;
                        diff += memcmp(&v, &C[(long)i * N + j], sizeof v) != 0;
                    }
                CHECKF(diff == 0, "%s packed M=%d N=%d K=%d act=%d ta=%d: %d elements differ", mmp_isa_name(isa), M, N, K, act, ta, diff);
                mmp_sgemm_pack_free(p);
                free(A), free(W), free(bias), free(R), free(C), free(D);
            }
}

/* The two levels: the same k blocks and per-element operations, the same bits. */
static void test_levels(void) {
    static const int sz[][3] = {{333, 150, 1100}, {7, 33, 257}, {64, 1000, 512}, {256, 10, 1280}, {30, 16, 300}};
    for (int s = 0; s < 5; s++)
        for (int c = 0; c < 4; c++) {
            int ta = c & 1, tb = c >> 1, M = sz[s][0], N = sz[s][1], K = sz[s][2];
            float *A = rnd((size_t)M * K), *B = rnd((size_t)N * K), *C1 = rnd((size_t)M * N);
            float *C2 = malloc((size_t)M * N * sizeof(float));
            memcpy(C2, C1, (size_t)M * N * sizeof(float));
            float beta = c == 3 ? 0.5f : 0.0f;
            mmp_sgemm_isa(MMP_ISA_AVX2, ta, tb, M, N, K, 0.7f, A, ta ? M : K, B, tb ? K : N, beta, C1, N);
            mmp_sgemm_isa(MMP_ISA_AVX512, ta, tb, M, N, K, 0.7f, A, ta ? M : K, B, tb ? K : N, beta, C2, N);
            CHECKF(!memcmp(C1, C2, (size_t)M * N * sizeof(float)), "M=%d N=%d K=%d ta=%d tb=%d: avx2 and avx512 differ", M,
                   N, K, ta, tb);
            free(A), free(B), free(C1), free(C2);
        }
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    mmp_isa top = mmp_cpu_isa();
    printf("level %s (features: %s)\n", mmp_isa_name(top), mmp_cpu_features());
    for (mmp_isa isa = MMP_ISA_AVX2; isa <= MMP_ISA_AVX512; isa++) {
        if (isa > top) {
            printf("%s: not on this CPU, skipped\n", mmp_isa_name(isa));
            continue;
        }
        test_reference(isa);
        test_rows(isa);
        test_packed(isa);
        printf("%s: checked\n", mmp_isa_name(isa));
    }
    if (top >= MMP_ISA_AVX512) {
        test_levels();
        printf("avx2 = avx512 bit for bit: checked\n");
    }
    /* mmp_sgemm runs the top level */
    float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 0, 0, 1, 1, 1}, C[4];
    mmp_sgemm(MMP_GEMM_N, MMP_GEMM_N, 2, 2, 3, 1.0f, A, 3, B, 2, 0.0f, C, 2);
    CHECK(C[0] == 4 && C[1] == 5 && C[2] == 10 && C[3] == 11);
    TEST_END();
}
