/* bench/prof_wrap.c: per-layer timers for the CNN engine without touching lib/
 * (docs/compute.md "Where the time goes"). Linked into bench/bench_nn.c with
 * ld's --wrap, it times every mmp_nn_cpu_conv2d call (by kind and shape), the
 * GEMMs inside it (mmp_sgemm_packed for 1x1 and im2col convs, the Winograd tile
 * GEMMs mmp_nn_cpu_gemm_seg_avx512), the pools, and prints a table to stderr at
 * exit. One thread only (the counters are not shared-safe): run with THREADS 1.
 *   cc -std=c11 -D_GNU_SOURCE -O3 -march=x86-64-v3 -Ilib bench/bench_nn.c bench/prof_wrap.c \
 *      build/libmmp.a -o bench_nn_prof $(make -s ldlibs) \
 *      -Wl,--wrap=mmp_nn_ops_cpu,--wrap=mmp_sgemm_packed,--wrap=mmp_nn_cpu_gemm_seg_avx512
 *   ./bench_nn_prof model resnet50.safetensors 224 1 1 64 1 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "nn/ops.h"
#include "nn/gemm.h"
#include "nn/winograd.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

typedef struct {
    char kind[16];
    int k, s, cin, cout, H, W;
    long calls;
    double t, t_gemm, flop;
} row;
static row rows[256];
static int nrows;
static double t_inner; /* GEMM seconds inside the current conv */
static double t_pool, t_conv_all, t0_prog;
static long pool_calls;

extern const mmp_nn_ops __real_mmp_nn_ops_cpu;
mmp_nn_ops __wrap_mmp_nn_ops_cpu; /* the CPU table with the timed entries below */
#define __real_mmp_nn_cpu_conv2d mmp_nn_cpu_conv2d
void __real_mmp_sgemm_packed(int transa, int M, const float *A, int lda, const mmp_sgemm_pack *B, const float *bias,
                             const float *R, int ldr, int act, float *C, int ldc);
void __real_mmp_nn_cpu_gemm_seg_avx512(int M, int N, int K, int nseg, const float *const *As, const int *Ks,
                                       const int *Bo, int lda, const float *Bp, const float *bias, const float *R,
                                       float *C, int act);
#define __real_mmp_nn_cpu_maxpool3x3s2 mmp_nn_cpu_maxpool3x3s2
#define __real_mmp_nn_cpu_avgpool mmp_nn_cpu_avgpool

void __wrap_mmp_sgemm_packed(int transa, int M, const float *A, int lda, const mmp_sgemm_pack *B, const float *bias,
                             const float *R, int ldr, int act, float *C, int ldc) {
    double t = now();
    __real_mmp_sgemm_packed(transa, M, A, lda, B, bias, R, ldr, act, C, ldc);
    t_inner += now() - t;
}
void __wrap_mmp_nn_cpu_gemm_seg_avx512(int M, int N, int K, int nseg, const float *const *As, const int *Ks,
                                       const int *Bo, int lda, const float *Bp, const float *bias, const float *R,
                                       float *C, int act) {
    double t = now();
    __real_mmp_nn_cpu_gemm_seg_avx512(M, N, K, nseg, As, Ks, Bo, lda, Bp, bias, R, C, act);
    t_inner += now() - t;
}
void __wrap_mmp_nn_cpu_maxpool3x3s2(const float *in, int G, int H, int W, int C, float *out) {
    double t = now();
    __real_mmp_nn_cpu_maxpool3x3s2(in, G, H, W, C, out);
    t_pool += now() - t, pool_calls++;
}
void __wrap_mmp_nn_cpu_avgpool(const float *in, int G, int HW, int C, float *out) {
    double t = now();
    __real_mmp_nn_cpu_avgpool(in, G, HW, C, out);
    t_pool += now() - t, pool_calls++;
}

void __wrap_mmp_nn_cpu_conv2d(const mmp_nn_conv *c, const float *in, int G, int H, int W, const float *res,
                              float *out, float *scratch) {
    const char *kind = c->depthwise                                ? "depthwise"
                       : mmp_nn_wino_use(c, H, W)                  ? (c->wino_m == 4 ? "wino F4" : "wino F2")
                       : c->k == 1 && c->stride == 1 && !c->pad    ? "1x1 direct"
                                                                   : "im2col";
    t_inner = 0;
    double t = now();
    __real_mmp_nn_cpu_conv2d(c, in, G, H, W, res, out, scratch);
    t = now() - t;
    t_conv_all += t;
    int i = 0;
    for (; i < nrows; i++)
        if (!strcmp(rows[i].kind, kind) && rows[i].k == c->k && rows[i].s == c->stride && rows[i].cin == c->cin &&
            rows[i].cout == c->cout && rows[i].H == H && rows[i].W == W)
            break;
    if (i == nrows) {
        if (nrows == 256) return;
        nrows++;
        snprintf(rows[i].kind, sizeof rows[i].kind, "%s", kind);
        rows[i].k = c->k, rows[i].s = c->stride, rows[i].cin = c->cin, rows[i].cout = c->cout, rows[i].H = H,
        rows[i].W = W;
    }
    int Ho = mmp_nn_conv_out(H, c->k, c->stride, c->pad), Wo = mmp_nn_conv_out(W, c->k, c->stride, c->pad);
    rows[i].calls++;
    rows[i].t += t;
    rows[i].t_gemm += t_inner;
    rows[i].flop += 2.0 * G * Ho * Wo * c->cout * c->k * c->k * (c->depthwise ? 1 : c->cin);
}

static double t_stem;
static long stem_calls;
static void stem(const mmp_nn_conv *c, const float *wp, const float *in, int G, int H, int W, const float *res,
                 float *out, float *scratch) {
    double t = now();
    __real_mmp_nn_ops_cpu.conv2d_packed(c, wp, in, G, H, W, res, out, scratch);
    t_stem += now() - t, stem_calls++;
}

__attribute__((constructor)) static void start(void) {
    t0_prog = now();
    __wrap_mmp_nn_ops_cpu = __real_mmp_nn_ops_cpu;
    __wrap_mmp_nn_ops_cpu.conv2d = __wrap_mmp_nn_cpu_conv2d;
    __wrap_mmp_nn_ops_cpu.maxpool3x3s2 = __wrap_mmp_nn_cpu_maxpool3x3s2;
    __wrap_mmp_nn_ops_cpu.avgpool = __wrap_mmp_nn_cpu_avgpool;
    if (__real_mmp_nn_ops_cpu.conv2d_packed) __wrap_mmp_nn_ops_cpu.conv2d_packed = stem;
}

__attribute__((destructor)) static void report(void) {
    double total = now() - t0_prog;
    fprintf(stderr, "# per conv shape (all calls, warm-up included); total process %.3f s, convs %.3f s, pools %.3f s (%ld calls)\n",
            total, t_conv_all, t_pool, pool_calls);
    fprintf(stderr, "# conv2d_packed (stem, implicit im2col): %.3f s, %ld calls\n", t_stem, stem_calls);
    fprintf(stderr, "%-10s %2s %2s %5s %5s %4s %4s %5s %8s %6s %8s %8s %8s\n", "kind", "k", "s", "cin", "cout", "H", "W",
            "calls", "s", "%conv", "GFLOP/s", "gemm s", "gemm GF/s");
    for (int i = 0; i < nrows; i++) {
        row *r = &rows[i];
        fprintf(stderr, "%-10s %2d %2d %5d %5d %4d %4d %5ld %8.3f %6.1f %8.1f %8.3f %8.1f\n", r->kind, r->k, r->s, r->cin,
                r->cout, r->H, r->W, r->calls, r->t, 100 * r->t / t_conv_all, r->flop / r->t * 1e-9, r->t_gemm,
                r->t_gemm > 0 ? r->flop / r->t_gemm * 1e-9 : 0);
    }
    const char *kinds[] = {"wino F4", "wino F2", "1x1 direct", "im2col", "depthwise"};
    fprintf(stderr, "# by kind: kind, s, %% of convs, GFLOP/s (whole op), GEMM s, non-GEMM s (transforms / im2col)\n");
    for (int k = 0; k < 5; k++) {
        double t = 0, tg = 0, f = 0;
        for (int i = 0; i < nrows; i++)
            if (!strcmp(rows[i].kind, kinds[k])) t += rows[i].t, tg += rows[i].t_gemm, f += rows[i].flop;
        if (t > 0)
            fprintf(stderr, "%-10s %8.3f %6.1f %8.1f %8.3f %8.3f\n", kinds[k], t, 100 * t / t_conv_all, f / t * 1e-9, tg,
                    t - tg);
    }
}
