/* bench/bench_tx.c: transformer-engine throughput (built and run by bench/bench_tx.sh).
 *   bench_tx image MODEL IMGS.f32 N SIZE THREADS REPS OUT.f32
 *       N images [N,3,SIZE,SIZE] through mmp_tx_image_embed_mt (MMP_TX_OUT_EMBED),
 *       one call per pass, after a warm-up pass
 *   bench_tx text MODEL IDS.i32 LENS.i32 N THREADS REPS OUT.f32
 *       N packed token sequences through mmp_tx_text_embed_mt (MMP_TX_OUT_EMBED)
 * Prints "best_s cpu_s maxrss_MB": the best wall time of REPS passes, the
 * process CPU time of that pass, the peak RSS of the process (the model's
 * weights are mapped: their pages count once touched); writes the last
 * pass's embeddings to OUT.f32. Env BENCH_TX_PACK=1: mmp_tx_encoder_pack first. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "mmp.h"
#include "tx/model.h"

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) mmp_die("%s: cannot open", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = mmp_xmalloc((size_t)sz + 1);
    if (fread(p, 1, (size_t)sz, f) != (size_t)sz) mmp_die("%s: short read", path);
    fclose(f);
    *n = (size_t)sz;
    return p;
}

int main(int argc, char **argv) {
    mmp_set_progname("bench_tx");
    int img = argc == 9 && !strcmp(argv[1], "image"), txt = argc == 9 && !strcmp(argv[1], "text");
    if (!img && !txt)
        mmp_die("usage: bench_tx image MODEL IMGS.f32 N SIZE THREADS REPS OUT.f32 | text MODEL IDS.i32 LENS.i32 N "
                "THREADS REPS OUT.f32");
    char err[512];
    mmp_tx_model *m = mmp_tx_model_load(argv[2], err, sizeof err);
    if (!m) mmp_die("%s", err);
    if (getenv("BENCH_TX_PACK")) { /* the encoders' GEMM weights packed (a copy; docs/vit_clip.md) */
        if (m->vision) mmp_tx_encoder_pack(&m->vision->enc);
        if (m->text) mmp_tx_encoder_pack(&m->text->enc);
    }
    int n = atoi(argv[img ? 4 : 5]), S = img ? atoi(argv[5]) : 0, T = atoi(argv[6]), reps = atoi(argv[7]);
    if (n < 1 || T < 1 || reps < 1 || (img && S < 1)) mmp_die("N, THREADS, REPS (and SIZE) must be >= 1");
    size_t na, nb = 0;
    void *a = slurp(argv[3], &na), *b = txt ? slurp(argv[4], &nb) : NULL;
    int D = img ? mmp_tx_image_dim(m, MMP_TX_OUT_EMBED) : mmp_tx_text_dim(m, MMP_TX_OUT_EMBED);
    if (D < 0) mmp_die("%s: no %s tower", argv[2], img ? "image" : "text");
    if (img && na < (size_t)n * 3 * S * S * sizeof(float)) mmp_die("%s: fewer than %d images", argv[3], n);
    if (txt && nb < (size_t)n * sizeof(int32_t)) mmp_die("%s: fewer than %d lengths", argv[4], n);
    float *out = mmp_xmalloc((size_t)n * D * sizeof(float));
    double best = 1e30, bcpu = 0;
    for (int r = 0; r <= reps; r++) {
        double t0 = mmp_now(), c0 = cpu_now();
        int rc = img ? mmp_tx_image_embed_mt(m, a, n, S, S, MMP_TX_OUT_EMBED, out, T, err, sizeof err)
                     : mmp_tx_text_embed_mt(m, a, b, n, MMP_TX_OUT_EMBED, out, T, err, sizeof err);
        if (rc) mmp_die("%s", err);
        double dt = mmp_now() - t0, dc = cpu_now() - c0;
        if (r > 0 && dt < best) best = dt, bcpu = dc; /* r == 0: warm-up */
    }
    FILE *f = fopen(argv[8], "wb");
    if (!f || fwrite(out, sizeof(float), (size_t)n * D, f) != (size_t)n * D || fclose(f)) mmp_die("%s: cannot write", argv[8]);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%.4f %.4f %.1f\n", best, bcpu, ru.ru_maxrss / 1024.0);
    free(out), free(a), free(b);
    mmp_tx_model_free(m);
    return 0;
}
