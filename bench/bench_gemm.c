/* bench_gemm: single-threaded SGEMM GFLOP/s, best of several timed runs, of
 * mmp_sgemm at each instruction-set level this CPU has, and of OpenBLAS
 * (-DHAVE_OPENBLAS) and oneDNN dnnl_sgemm (-DHAVE_DNNL) when built with them,
 * on the shapes of the issue and the ones mmpipe calls.
 * usage: bench_gemm [-c COLUMNS] [-q]   COLUMNS: comma list of
 * avx512,avx2,packed,openblas,dnnl (default: all built in; packed = the top
 * level with B pre-packed, as conv2d's weights, for the N/T shapes). Each
 * cell: the best of 3 rounds over all shapes x 3 timed runs (-q: 1 round).
 * Output: a header, then one tab-separated line per shape. bench_gemm.sh
 * runs it (twice: OpenBLAS's default kernels and OPENBLAS_CORETYPE=SkylakeX). */
#include "nn/gemm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef HAVE_OPENBLAS
#include <cblas.h>
#endif
#ifdef HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

typedef struct {
    int ta, tb, M, N, K;
    const char *what;
} shape;

static const shape shapes[] = {
    /* the shapes */
    {0, 1, 9216, 64, 147, "stem 7x7 im2col, whole"},
    {0, 1, 2304, 128, 576, "3x3 s2 im2col"},
    {0, 1, 4096, 384, 384, "square-ish"},
    {0, 1, 4096, 1536, 384, "FFN up"},
    {0, 1, 4096, 384, 1536, "FFN down"},
    {0, 0, 1024, 1024, 1024, "1024^3"},
    /* ResNet-18/50 as conv2d calls them (chunk_rows, micro-batch 4 @96, 1 @224) */
    {0, 1, 891, 64, 147, "R18/50 stem chunk, 96 or 224 px"},
    {0, 1, 256, 128, 576, "R18 layer2 3x3 s2 chunk"},
    {0, 1, 144, 256, 1152, "R18 layer3 3x3 s2 @96"},
    {0, 1, 36, 512, 2304, "R18 layer4 3x3 s2 @96"},
    {0, 1, 49, 512, 2304, "R18 layer4 3x3 s2 @224"},
    {0, 1, 576, 128, 64, "R18 downsample 1x1 s2 @96"},
    {0, 1, 512, 256, 64, "R50 layer1 1x1 64->256 @224"},
    {0, 1, 512, 64, 256, "R50 layer1 1x1 256->64 @224"},
    {0, 1, 256, 256, 1024, "R50 layer3 1x1 1024->256"},
    {0, 1, 256, 2048, 512, "R50 layer4 1x1 512->2048"},
    {0, 1, 64, 1000, 512, "R18 classifier, 64 images"},
    {0, 1, 4, 1000, 512, "R18 classifier, micro-batch 4 @96"},
    /* MiniLM (H 384, FFN 1536), 32 sentences x ~32 tokens */
    {0, 1, 1024, 1152, 384, "MiniLM QKV"},
    {0, 1, 1024, 384, 384, "MiniLM attn out"},
    {0, 1, 1024, 1536, 384, "MiniLM FFN up"},
    {0, 1, 1024, 384, 1536, "MiniLM FFN down"},
    {0, 1, 32, 32, 32, "attn scores L=32"},
    {0, 0, 32, 32, 32, "attn P.V L=32"},
    {0, 1, 64, 64, 32, "attn scores L=64"},
    {0, 0, 64, 32, 64, "attn P.V L=64"},
    /* training heads: 256 x 1280 -> 10 / 512, forward and backward */
    {0, 1, 256, 10, 1280, "head fwd 1280->10"},
    {0, 1, 256, 512, 1280, "head fwd 1280->512"},
    {1, 0, 512, 1280, 256, "head dW 1280->512"},
    {0, 0, 256, 1280, 512, "head dx 1280->512"},
};

/* CPU time of this thread: on a shared machine the time the thread was
 * descheduled does not count (every column is single-threaded: the script
 * runs with OMP_NUM_THREADS=1 for oneDNN) */
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

typedef void (*gemm_fn)(const shape *s, const float *A, const float *B, float *C);
static void run_avx512(const shape *s, const float *A, const float *B, float *C) {
    mmp_sgemm_isa(MMP_ISA_AVX512, s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, s->ta ? s->M : s->K, B,
                  s->tb ? s->K : s->N, 0.0f, C, s->N);
}
static void run_avx2(const shape *s, const float *A, const float *B, float *C) {
    mmp_sgemm_isa(MMP_ISA_AVX2, s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, s->ta ? s->M : s->K, B,
                  s->tb ? s->K : s->N, 0.0f, C, s->N);
}
/* the weights (op(B) = B^T, B [N,K]) packed once, as conv2d's at model load: N/T shapes only */
static mmp_sgemm_pack *g_pack;
static void run_packed(const shape *s, const float *A, const float *B, float *C) {
    (void)B;
    mmp_sgemm_packed(s->ta, s->M, A, s->ta ? s->M : s->K, g_pack, NULL, NULL, 0, MMP_GEMM_ACT_NONE, C, s->N);
}
#ifdef HAVE_OPENBLAS
static void run_openblas(const shape *s, const float *A, const float *B, float *C) {
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, s->M, s->N,
                s->K, 1.0f, A, s->ta ? s->M : s->K, B, s->tb ? s->K : s->N, 0.0f, C, s->N);
}
#endif
#ifdef HAVE_DNNL
static void run_dnnl(const shape *s, const float *A, const float *B, float *C) {
    dnnl_sgemm(s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', s->M, s->N, s->K, 1.0f, A, s->ta ? s->M : s->K, B,
               s->tb ? s->K : s->N, 0.0f, C, s->N);
}
#endif

/* best GFLOP/s of reps timed runs, each >= ~20 ms of calls (thread CPU time) */
static double measure(gemm_fn f, const shape *s, const float *A, const float *B, float *C, int reps) {
    double flop = 2.0 * s->M * s->N * s->K;
    f(s, A, B, C);
    double t0 = now();
    f(s, A, B, C);
    double one = now() - t0;
    int iters = one > 0.02 ? 1 : (int)(0.02 / (one > 1e-7 ? one : 1e-7)) + 1;
    double best = 0;
    for (int r = 0; r < reps; r++) {
        t0 = now();
        for (int i = 0; i < iters; i++) f(s, A, B, C);
        double g = flop * iters / (now() - t0) / 1e9;
        if (g > best) best = g;
    }
    return best;
}

int main(int argc, char **argv) {
    const char *cols = NULL;
    int reps = 3, rounds = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc) cols = argv[++i];
        else if (!strcmp(argv[i], "-q")) rounds = 1;
        else {
            fprintf(stderr, "usage: bench_gemm [-c avx512,avx2,packed,openblas,dnnl] [-q]\n");
            return 2;
        }
    }
    struct {
        const char *name;
        gemm_fn f;
    } all[5];
    int nc = 0;
    if (mmp_cpu_isa() >= MMP_ISA_AVX512) all[nc].name = "avx512", all[nc++].f = run_avx512;
    all[nc].name = "avx2", all[nc++].f = run_avx2;
    all[nc].name = "packed", all[nc++].f = run_packed;
#ifdef HAVE_OPENBLAS
    openblas_set_num_threads(1);
    all[nc].name = "openblas", all[nc++].f = run_openblas;
#endif
#ifdef HAVE_DNNL
    all[nc].name = "dnnl", all[nc++].f = run_dnnl;
#endif
    int use[5], nu = 0;
    for (int c = 0; c < nc; c++) {
        if (cols) {
            char pat[32];
            snprintf(pat, sizeof pat, ",%s,", all[c].name);
            char list[256];
            snprintf(list, sizeof list, ",%s,", cols);
            if (!strstr(list, pat)) continue;
        }
        use[nu++] = c;
    }
    printf("# level chosen: %s; features: %s\n", mmp_isa_name(mmp_cpu_isa()), mmp_cpu_features());
#ifdef HAVE_OPENBLAS
    printf("# OpenBLAS: %s, core %s\n", openblas_get_config(), openblas_get_corename());
#endif
    printf("ta\ttb\tM\tN\tK");
    for (int u = 0; u < nu; u++) printf("\t%s", all[use[u]].name);
    printf("\tshape\n");
    size_t mx = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *s = &shapes[i];
        size_t n = (size_t)s->M * s->K + (size_t)s->K * s->N + (size_t)s->M * s->N;
        if (n > mx) mx = n;
    }
    float *buf = malloc(mx * sizeof(float));
    for (size_t i = 0; i < mx; i++) buf[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
    /* rounds over all the shapes (a passing load burst hits one round), the
     * best of each cell kept */
    enum { NS = sizeof shapes / sizeof shapes[0] };
    static double best[NS][5];
    for (int round = 0; round < rounds; round++)
        for (size_t i = 0; i < NS; i++) {
            const shape *s = &shapes[i];
            const float *A = buf, *B = buf + (size_t)s->M * s->K;
            float *C = buf + (size_t)s->M * s->K + (size_t)s->K * s->N;
            for (int u = 0; u < nu; u++) {
                if (all[use[u]].f == run_packed) {
                    if (!s->tb) continue;
                    g_pack = mmp_sgemm_pack_b(1, s->N, s->K, B, s->K);
                }
                double g = measure(all[use[u]].f, s, A, B, C, reps);
                if (g > best[i][u]) best[i][u] = g;
                if (all[use[u]].f == run_packed) mmp_sgemm_pack_free(g_pack);
            }
        }
    for (size_t i = 0; i < NS; i++) {
        const shape *s = &shapes[i];
        printf("%c\t%c\t%d\t%d\t%d", s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', s->M, s->N, s->K);
        for (int u = 0; u < nu; u++) {
            if (best[i][u] > 0) printf("\t%.1f", best[i][u]);
            else printf("\t-");
        }
        printf("\t%s\n", s->what);
    }
    free(buf);
    return 0;
}
