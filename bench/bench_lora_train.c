/* bench/bench_lora_train.c: one training step of LoRA adapters (tx/lora_train.h)
 * vs full fine-tuning (tx/train.h) on the transformer engine (built and run
 * by bench/bench_lora_train.sh).
 *   bench_lora_train vit MODEL N SIZE THREADS REPS [R [TARGETS]]
 *       N random images [N,3,SIZE,SIZE] -> the pooled output (MMP_TX_OUT_POOLED)
 *   bench_lora_train bert MODEL_DIR N LEN THREADS REPS [R [TARGETS]]
 *       N random token sequences of LEN tokens -> mean pooling (a
 *       sentence-transformers folder: MODEL_DIR/model.safetensors)
 * The loss is sum(G * out) for a fixed random G; a step is the forward with
 * saved activations, the backward, torch-style AdamW on the trainable
 * parameters. LoRA: rank R (8), alpha = R, the family's default targets
 * (attention q and v) or TARGETS; only the adapters have gradient buffers (the
 * frozen linears' dW GEMMs are skipped). Full: every parameter.
 * Prints per mode the best of REPS steps (after one warm-up step): wall
 * seconds of the step, its forward, backward and optimizer parts, the
 * least process CPU time of a step (steadier than wall time on a busy machine), the
 * trainable parameter count and the peak RSS so far. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "mmp.h"
#include "rng.h"
#include "train/optim.h"
#include "tx/lora_train.h"
#include "tx/train.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

typedef struct {
    int bert;
    mmp_tx_model *m;
    mmp_bert *b;
    float *imgs;
    int32_t *ids;
    int *lens;
    int n, size, D;
    float *G, *out;
} job;

static void step(job *j, mmp_tx_params *P, mmp_param *v, mmp_optim *o, int64_t k, double t[5]) {
    char err[512];
    mmp_tx_params_zero_grad(P);
    double c0 = cpu_now(), t0 = now();
    mmp_tx_saved *a = j->bert ? mmp_bert_fwd_train(j->b, j->ids, j->lens, j->n, j->out, err, sizeof err)
                              : mmp_tx_image_fwd_train(j->m, j->imgs, j->n, j->size, j->size, MMP_TX_OUT_POOLED, j->out,
                                                       err, sizeof err);
    if (!a) mmp_die("%s", err);
    double t1 = now();
    if (j->bert) mmp_bert_bwd(j->b, a, j->G, P->bert, NULL);
    else mmp_tx_image_bwd(j->m, a, j->G, P->vision, NULL);
    double t2 = now();
    mmp_optim_step(o, v, P->n, k, 1e-4);
    double t3 = now(), c3 = cpu_now();
    mmp_tx_saved_free(a);
    t[0] = t3 - t0, t[1] = t1 - t0, t[2] = t2 - t1, t[3] = t3 - t2, t[4] = c3 - c0;
}

static void bench(job *j, const char *mode, mmp_tx_params *P, int reps) {
    char err[512];
    mmp_param *v = mmp_tx_params_views(P, err, sizeof err);
    if (!v) mmp_die("%s", err);
    mmp_optim o;
    mmp_optim_defaults(&o, MMP_OPT_ADAMW);
    double best[5] = {1e30, 0, 0, 0, 0}, t[5], cpu = 1e30;
    step(j, P, v, &o, 0, t);
    for (int r = 0; r < reps; r++) {
        step(j, P, v, &o, r + 1, t);
        if (t[0] < best[0]) memcpy(best, t, sizeof best);
        if (t[4] < cpu) cpu = t[4];
    }
    size_t np = 0;
    for (int i = 0; i < P->n; i++) np += P->p[i].n;
    printf("%-5s step %.3f s (forward %.3f, backward %.3f, AdamW %.4f), least CPU time of a step %.3f s; %zu trainable "
           "parameters in %d tensors; peak RSS %.0f MB\n",
           mode, best[0], best[1], best[2], best[3], cpu, np, P->n, rss_mb());
    fflush(stdout);
    mmp_tx_params_views_free(v, P->n);
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: bench_lora_train vit|bert MODEL N SIZE|LEN THREADS REPS [R [TARGETS]]\n");
        return 2;
    }
    job j = {.bert = !strcmp(argv[1], "bert"), .n = atoi(argv[3]), .size = atoi(argv[4])};
    const int threads = atoi(argv[5]), reps = atoi(argv[6]);
    mmp_tx_lora_opts lo;
    mmp_tx_lora_opts_default(&lo);
    if (argc > 7) lo.r = atoi(argv[7]), lo.alpha = lo.r;
    if (argc > 8) lo.targets = argv[8];
    char err[512];
    mmp_rng g;
    mmp_rng_seed(&g, 1);
    mmp_bert bert;
    if (j.bert) {
        char *p = mmp_xasprintf("%s/model.safetensors", argv[2]);
        if (mmp_bert_load(&bert, p, 0, err, sizeof err)) mmp_die("%s", err);
        free(p);
        j.b = &bert;
        j.D = bert.cfg.hidden;
        mmp_bert_set_threads(&bert, threads);
        j.ids = mmp_xmalloc(sizeof(int32_t) * (size_t)j.n * j.size);
        j.lens = mmp_xmalloc(sizeof(int) * (size_t)j.n);
        for (int s = 0; s < j.n; s++) {
            j.lens[s] = j.size;
            for (int k = 0; k < j.size; k++)
                j.ids[(size_t)s * j.size + k] = k == 0 ? 101 : k == j.size - 1 ? 102 : 1000 + (int)(mmp_rng_next(&g) % 20000);
        }
        printf("%s: BERT %d layers, hidden %d; batch %d x %d tokens; %d threads\n", argv[2], bert.cfg.layers,
               bert.cfg.hidden, j.n, j.size, threads);
    } else {
        j.m = mmp_tx_model_load(argv[2], err, sizeof err);
        if (!j.m) mmp_die("%s", err);
        j.D = mmp_tx_image_dim(j.m, MMP_TX_OUT_POOLED);
        mmp_tx_model_set_threads(j.m, threads);
        size_t ni = (size_t)j.n * 3 * j.size * j.size;
        j.imgs = mmp_xmalloc(sizeof(float) * ni);
        for (size_t k = 0; k < ni; k++) j.imgs[k] = (float)(2 * mmp_rng_uniform53(&g) - 1);
        printf("%s: %s, %d layers, width %d; batch %d images of %dx%d; %d threads\n", argv[2],
               mmp_tx_family_name(j.m->family), j.m->vision->enc.layers, j.m->vision->C, j.n, j.size, j.size, threads);
    }
    j.G = mmp_xmalloc(sizeof(float) * (size_t)j.n * j.D);
    j.out = mmp_xmalloc(sizeof(float) * (size_t)j.n * j.D);
    for (size_t k = 0; k < (size_t)j.n * j.D; k++) j.G[k] = (float)(mmp_rng_uniform53(&g) - 0.5);

    /* LoRA first: the base stays as loaded (mapped; BERT's encoder packed) */
    mmp_tx_params P;
    memset(&P, 0, sizeof P);
    mmp_tx_lora_set *s = j.bert ? mmp_bert_lora_add(j.b, &lo, &P, err, sizeof err)
                                : mmp_tx_lora_add(j.m, &lo, &P, err, sizeof err);
    if (!s) mmp_die("%s", err);
    printf("LoRA r=%d alpha=%g on %d linears (targets %s)\n", lo.r, lo.alpha, mmp_tx_lora_count(s),
           lo.targets ? lo.targets : j.bert ? MMP_BERT_LORA_DEFAULT_TARGETS : mmp_tx_lora_default_targets(j.m->family));
    bench(&j, "lora", &P, reps);
    mmp_tx_params_free(&P);
    mmp_tx_lora_set_free(s);
    int rc = j.bert ? mmp_bert_make_trainable(j.b, &P, err, sizeof err) : mmp_tx_make_trainable(j.m, &P, err, sizeof err);
    if (rc) mmp_die("%s", err);
    bench(&j, "full", &P, reps);
    mmp_tx_params_free(&P);
    if (j.bert) mmp_bert_free(&bert);
    else mmp_tx_model_free(j.m);
    free(j.imgs), free(j.ids), free(j.lens), free(j.G), free(j.out);
    return 0;
}
