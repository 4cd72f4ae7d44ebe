/* bench/bench_nn.c: engine throughput (built and run by bench/bench_embed.sh).
 *   bench_nn sgemm THREADS             aggregate sgemm 1024^3 GFLOP/s, THREADS
 *                                      independent single-threaded sgemms (best of 3)
 *   bench_nn model FILE SIZE THREADS BATCHES [BATCH [REPS]]
 *                                      img/s of the forward pass (pool layer) on
 *                                      random normalized input, after one warm-up
 *                                      batch, best of REPS timings of BATCHES batches; prints "img/s GFLOP/s workspace_MB maxrss_MB img/cpu-s"
 *                                      (GFLOP/s = 2 x conv+linear multiply-adds)
 *   bench_nn cpu                       "isa LEVEL" (mmp_cpu_isa(), after MMP_ISA),
 *                                      "features LIST" (mmp_cpu_features()) and
 *                                      "openblas CORE CONFIG" (the kernel set OpenBLAS
 *                                      chose, after OPENBLAS_CORETYPE), three lines
 *   bench_nn paths                     the kernel path chosen per op (mmp_nn_cpu_paths()
 *                                      when this libmmp has it; else one line on stderr
 *                                      and exit status 2, so scripts can skip it) */
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "mmp.h"
#include "nn/nn.h"

static void *sg(void *arg) {
    int n = 1024, reps = *(int *)arg;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    for (int i = 0; i < n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
    for (int r = 0; r < reps; r++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    free(a), free(b), free(c);
    return NULL;
}

/* Declared weak: libmmp builds without it still link (the symbol is then NULL). */
extern const char *mmp_nn_cpu_paths(void) __attribute__((weak));

int main(int argc, char **argv) {
    mmp_set_progname("bench_nn");
    mmp_nn_cpu_init();
    if (argc == 2 && !strcmp(argv[1], "cpu")) {
        printf("isa %s\nfeatures %s\nopenblas %s (%s)\n", mmp_isa_name(mmp_cpu_isa()), mmp_cpu_features(),
               openblas_get_corename(), openblas_get_config());
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "paths")) {
        if (!mmp_nn_cpu_paths) {
            fprintf(stderr, "bench_nn: paths: this libmmp has no mmp_nn_cpu_paths()\n");
            return 2;
        }
        printf("%s\n", mmp_nn_cpu_paths());
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
    if (argc < 6 || strcmp(argv[1], "model")) mmp_die("usage: bench_nn cpu | paths | sgemm T | model FILE SIZE THREADS BATCHES [BATCH [REPS]]");
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
