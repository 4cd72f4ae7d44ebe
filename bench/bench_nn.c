/* bench/bench_nn.c: engine throughput (built and run by bench/bench_embed.sh).
 *   bench_nn paths                     the instruction-set level and the kernel of
 *                                      each op (mmp_nn_cpu_paths; env MMP_ISA)
 *   bench_nn gemm M N K                GFLOP/s of the pointwise GEMM (mmp_nn_cpu_pw_gemm,
 *                                      ReLU6 epilogue) at this level, operands in cache,
 *                                      best of 200 calls
 *   bench_nn dw C W STRIDE             GFLOP/s of the depthwise 3x3 row kernel
 *                                      (mmp_nn_cpu_dw3x3_row), rows in cache, best of 300
 *   bench_nn sgemm THREADS             aggregate mmp_sgemm 1024^3 GFLOP/s, THREADS
 *                                      independent single-threaded sgemms (best of 3)
 *   bench_nn model FILE SIZE THREADS BATCHES [BATCH [REPS]]
 *                                      img/s of the forward pass (pool layer) on
 *                                      random normalized input, after one warm-up
 *                                      batch, best of REPS timings of BATCHES batches; prints "img/s GFLOP/s workspace_MB maxrss_MB img/cpu-s"
 *                                      (GFLOP/s = 2 x conv+linear multiply-adds)
 *   bench_nn cpu                       "isa LEVEL" (mmp_cpu_isa(), after MMP_ISA),
 *                                      "features LIST" (mmp_cpu_features()), two lines */
#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "mmp.h"
#include "nn/cpu.h"
#include "nn/gemm.h"
#include "nn/nn.h"

static void *sg(void *arg) {
    int n = 1024, reps = *(int *)arg;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    for (int i = 0; i < n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
    for (int r = 0; r < reps; r++)
        mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, n, n, n, 1, a, n, b, n, 0, c, n);
    free(a), free(b), free(c);
    return NULL;
}


int main(int argc, char **argv) {
    mmp_set_progname("bench_nn");
    mmp_nn_cpu_init();
    if (argc == 2 && !strcmp(argv[1], "cpu")) {
        printf("isa %s\nfeatures %s\n", mmp_isa_name(mmp_cpu_isa()), mmp_cpu_features());
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "paths")) {
        fputs(mmp_nn_cpu_paths(), stdout);
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "gemm")) {
        int M = atoi(argv[2]), N = atoi(argv[3]), K = atoi(argv[4]);
        if (M < 1 || N < 1 || K < 1) mmp_die("gemm: M, N, K must be >= 1");
        float *A = malloc(sizeof(float) * M * K), *w = malloc(sizeof(float) * N * K), *b = calloc(N, sizeof(float)),
              *C = malloc(sizeof(float) * M * N);
        for (long i = 0; i < (long)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
        for (long i = 0; i < (long)N * K; i++) w[i] = (float)(i % 5) * 0.1f;
        float *wp = mmp_nn_cpu_pack_1x1(w, N, K);
        double best = 1e30;
        for (int r = 0; r < 200; r++) {
            double t0 = mmp_now();
            mmp_nn_cpu_pw_gemm(M, N, K, A, K, wp, b, NULL, C, MMP_NN_ACT_RELU6);
            double dt = mmp_now() - t0;
            best = dt < best ? dt : best;
        }
        printf("%.1f\n", 2.0 * M * N * K / best / 1e9);
        free(A), free(w), free(b), free(C), free(wp);
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "dw")) {
        int C = atoi(argv[2]), W = atoi(argv[3]), S = atoi(argv[4]);
        if (C < 1 || W < 1 || (S != 1 && S != 2)) mmp_die("dw: C, W must be >= 1, STRIDE 1 or 2");
        int Wo = mmp_nn_conv_out(W, 3, S, 1);
        float *w = malloc(sizeof(float) * 9 * C), *b = malloc(sizeof(float) * C), *in = malloc(sizeof(float) * 3 * W * C),
              *o = malloc(sizeof(float) * 16 * Wo * C);
        for (long i = 0; i < 9L * C; i++) w[i] = (float)(i % 7) * 0.1f;
        for (int i = 0; i < C; i++) b[i] = 0.1f;
        for (long i = 0; i < 3L * W * C; i++) in[i] = (float)(i % 5) * 0.1f;
        mmp_nn_conv c = {C, C, 3, S, 1, 1, MMP_NN_ACT_RELU6, w, b, NULL, 0};
        const float *rows[3] = {in, in + (long)W * C, in + 2L * W * C};
        double best = 1e30;
        for (int r = 0; r < 300; r++) { /* 16 rows a timing */
            double t0 = mmp_now();
            for (int k = 0; k < 16; k++) mmp_nn_cpu_dw3x3_row(&c, rows, W, NULL, o + (long)k * Wo * C);
            double dt = (mmp_now() - t0) / 16;
            best = dt < best ? dt : best;
        }
        printf("%.1f\n", 2.0 * 9 * C * Wo / best / 1e9);
        free(w), free(b), free(in), free(o);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "sgemm")) {
        int T = atoi(argv[2]), reps = 4, warm = 1;
        pthread_t t[64];
        for (int i = 0; i < T; i++) pthread_create(&t[i], NULL, sg, &warm);
        for (int i = 0; i < T; i++) pthread_join(t[i], NULL);
        double best = 0;
        for (int k = 0; k < 3; k++) { /* best of 3 */
            double t0 = mmp_now();
            for (int i = 0; i < T; i++) pthread_create(&t[i], NULL, sg, &reps);
            for (int i = 0; i < T; i++) pthread_join(t[i], NULL);
            double g = 2.0 * 1024 * 1024 * 1024 * reps * T / (mmp_now() - t0) / 1e9;
            best = g > best ? g : best;
        }
        printf("%.1f\n", best);
        return 0;
    }
    if (argc < 6 || strcmp(argv[1], "model")) mmp_die("usage: bench_nn cpu | paths | gemm M N K | dw C W STRIDE | sgemm T | model FILE SIZE THREADS BATCHES [BATCH [REPS]]");
    int S = atoi(argv[3]), T = atoi(argv[4]), nb = atoi(argv[5]), B = argc > 6 ? atoi(argv[6]) : 64;
    int reps = argc > 7 ? atoi(argv[7]) : 1;
    char err[512];
    mmp_nn_model *m;
    if (mmp_nn_model_load(&m, argv[2], NULL, err, sizeof err)) mmp_die("%s", err);
    mmp_nn_layer l;
    mmp_nn_layer_parse(m, "pool", &l, err, sizeof err);
    int64_t dim = mmp_nn_output_dim(m, &l, S, S);
    float *x = malloc(sizeof(float) * B * S * S * 3), *out = malloc(sizeof(float) * B * dim);
    uint64_t s = 1;
    for (long i = 0; i < (long)B * S * S * 3; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (float)((s >> 40) & 0xffff) / 32768.0f - 1.0f;
    }
    mmp_nn_runner *r = mmp_nn_runner_new(m, &mmp_nn_ops_cpu, T);
    mmp_nn_run(r, &l, x, B, S, S, out);
    struct rusage ru0;
    double ips = 0, cpu = 1e30;
    for (int k = 0; k < reps; k++) { /* best of reps (the machine may be shared) */
        getrusage(RUSAGE_SELF, &ru0);
        double t0 = mmp_now();
        for (int i = 0; i < nb; i++) mmp_nn_run(r, &l, x, B, S, S, out);
        double dt = mmp_now() - t0;
        struct rusage ru1;
        getrusage(RUSAGE_SELF, &ru1);
        double c = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + 1e-6 * (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) +
                   (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + 1e-6 * (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec);
        if ((double)B * nb / dt > ips) ips = (double)B * nb / dt;
        if (c < cpu) cpu = c;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%.2f %.1f %.0f %.0f %.2f\n", ips, 2.0 * mmp_nn_model_macs(m, &l, S, S) * ips / 1e9,
           mmp_nn_runner_workspace_bytes(r) / 1048576.0, ru.ru_maxrss / 1024.0, (double)B * nb / cpu);
    mmp_nn_runner_free(r);
    mmp_nn_model_free(m);
    return 0;
}
