/* bench/prof_sgemm.c: times every mmp_sgemm call by (op, M, N, K) without touching
 * lib/ (docs/compute.md "Where the time goes"); ld's --wrap, one thread only.
 *   cc -std=c11 -D_GNU_SOURCE -O3 -march=x86-64-v3 -Ilib build/obj/bin/train-step.o bench/prof_sgemm.c \
 *      build/libmmp.a -o mmp-train-step-prof $(make -s ldlibs) -Wl,--wrap=mmp_sgemm
 * prints a table to stderr at exit: op, M, N, K, calls, s, GFLOP/s. */
#include <stdio.h>
#include <time.h>

void __real_mmp_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                      int ldb, float beta, float *C, int ldc);
typedef struct { int ta, tb, M, N, K; long calls; double t; } row;
static row rows[512];
static int nrows;
static double t_all;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

void __wrap_mmp_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                      int ldb, float beta, float *C, int ldc) {
    double t = now();
    __real_mmp_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    t = now() - t;
    t_all += t;
    int i = 0;
    for (; i < nrows; i++)
        if (rows[i].ta == ta && rows[i].tb == tb && rows[i].M == M && rows[i].N == N && rows[i].K == K) break;
    if (i == nrows) {
        if (nrows == 512) return;
        rows[nrows++] = (row){ta, tb, M, N, K, 0, 0};
    }
    rows[i].calls++, rows[i].t += t;
}

__attribute__((destructor)) static void report(void) {
    fprintf(stderr, "# mmp_sgemm: %.3f s in all\n%-3s %6s %6s %6s %6s %8s %8s\n", t_all, "op", "M", "N", "K", "calls",
            "s", "GFLOP/s");
    for (int i = 0; i < nrows; i++)
        fprintf(stderr, "%c%c  %6d %6d %6d %6ld %8.3f %8.1f\n", "NT"[rows[i].ta], "NT"[rows[i].tb], rows[i].M, rows[i].N,
                rows[i].K, rows[i].calls, rows[i].t, 2.0 * rows[i].M * rows[i].N * rows[i].K * rows[i].calls / rows[i].t * 1e-9);
}
