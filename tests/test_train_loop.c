/* The training loop on in-memory synthetic data: it learns, checkpoints
 * round-trip, an interrupted-and-resumed run is bit-identical to an
 * uninterrupted one (weights, optimizer state, step), runs are
 * deterministic, bad configurations are refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmp.h"
#include "testlib.h"
#include "train/train.h"

/* C gaussian clusters in D dims (offset and scaled so standardization matters);
 * pair embedding = a noisy linear map of x. */
static void make_ds(mmp_dataset *d, int64_t n, int64_t D, int64_t C, int64_t D2, uint64_t seed) {
    memset(d, 0, sizeof *d);
    mmp_header_init(&d->hdr);
    snprintf(d->name, sizeof d->name, "synthetic");
    uint64_t s = 99; /* class means are shared by every set */
    double *mu = malloc(sizeof(double) * C * D);
    for (int64_t k = 0; k < C * D; k++) mu[k] = 1.5 * mmp_rng_normal_clamp(&s);
    s = seed;
    d->n = n; d->dim = D; d->ncls = C; d->dim2 = D2;
    d->x = malloc(sizeof(float) * n * D);
    d->y = malloc(sizeof(int64_t) * n);
    d->ids = calloc((size_t)n, sizeof(char *));
    if (D2) d->x2 = malloc(sizeof(float) * n * D2);
    for (int64_t i = 0; i < n; i++) {
        int64_t c = (int64_t)mmp_rng_below_reject(&s, (uint64_t)C);
        d->y[i] = c;
        for (int64_t k = 0; k < D; k++) d->x[i * D + k] = (float)(5 + 3 * (mu[c * D + k] + mmp_rng_normal_clamp(&s)) * (k % 3 + 1));
        for (int64_t k = 0; k < D2; k++) d->x2[i * D2 + k] = (float)(d->x[i * D + (k % D)] * 0.1 + 0.3 * mmp_rng_normal_clamp(&s) + mu[c * D + (k % D)]);
    }
    free(mu);
    char *names[8] = {"alpha", "beta", "gamma \"quoted\"", "delta", "e", "f", "g", "h"};
    mmp_header_set_classes(&d->hdr, (int)C, names);
    mmp_meta_set(&d->hdr.meta, "provenance", "synthetic-v1");
}

static mmp_train_cfg cfg_of(const char *const *kv) {
    mmp_train_cfg c;
    mmp_train_cfg_defaults(&c);
    char err[256];
    for (int i = 0; kv[i]; i += 2)
        if (mmp_train_cfg_set(&c, kv[i], kv[i + 1], err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(1); }
    return c;
}

static int same_state(const mmp_trainer *a, const mmp_trainer *b) {
    if (a->step != b->step || a->epoch != b->epoch || a->head.np != b->head.np) return 0;
    for (int i = 0; i < a->head.np; i++) {
        const mmp_param *p = &a->head.params[i], *q = &b->head.params[i];
        if (memcmp(p->w, q->w, sizeof(float) * p->n)) return 0;
        if ((p->s1 == NULL) != (q->s1 == NULL) || (p->s2 == NULL) != (q->s2 == NULL)) return 0;
        if (p->s1 && memcmp(p->s1, q->s1, sizeof(float) * p->n)) return 0;
        if (p->s2 && memcmp(p->s2, q->s2, sizeof(float) * p->n)) return 0;
    }
    return 1;
}

static void run_epochs(mmp_trainer *t, const mmp_dataset *d, int k) {
    for (int e = 0; e < k; e++) mmp_trainer_epoch(t, d, NULL, 0);
}

/* interrupted (2 epochs, checkpoint, reload, 2 more) == uninterrupted (4) */
static void check_resume(const char *what, const char *const *kv, int64_t D2) {
    char err[512];
    mmp_dataset tr;
    make_ds(&tr, 300, 12, 4, D2, 1);
    mmp_train_cfg c = cfg_of(kv);
    c.epochs = 4;
    mmp_trainer a, b, b2;
    CHECKF(mmp_trainer_init(&a, &c, &tr, err, sizeof err) == 0, "%s: %s", what, err);
    mmp_dataset trs = tr; /* standardized copy shared by both runs */
    trs.x = malloc(sizeof(float) * tr.n * tr.dim);
    memcpy(trs.x, tr.x, sizeof(float) * tr.n * tr.dim);
    mmp_trainer_standardize(&a, &trs);
    run_epochs(&a, &trs, 4);
    CHECK(mmp_trainer_init(&b, &c, &tr, err, sizeof err) == 0);
    run_epochs(&b, &trs, 2);
    CHECK(mmp_trainer_save(&b, "resume.safetensors", err, sizeof err) == 0);
    mmp_trainer_free(&b);
    CHECKF(mmp_trainer_load(&b2, "resume.safetensors", NULL, err, sizeof err) == 0, "%s", err);
    CHECK(b2.epoch == 2);
    run_epochs(&b2, &trs, 2);
    CHECKF(same_state(&a, &b2), "%s: resumed run differs from the uninterrupted one", what);
    /* and a run with another seed differs (the check can fail) */
    mmp_train_cfg c2 = c;
    c2.seed = c.seed + 1;
    mmp_trainer o;
    CHECK(mmp_trainer_init(&o, &c2, &tr, err, sizeof err) == 0);
    run_epochs(&o, &trs, 4);
    CHECK(!same_state(&a, &o));
    printf("%-28s resume after 2 of 4 epochs: bit-identical (step %lld)\n", what, (long long)a.step);
    mmp_trainer_free(&a); mmp_trainer_free(&b2); mmp_trainer_free(&o);
    free(trs.x);
    mmp_dataset_free(&tr);
}

static void test_learns_and_roundtrip(void) {
    char err[512];
    mmp_dataset tr, dev;
    make_ds(&tr, 800, 16, 4, 0, 1);
    make_ds(&dev, 400, 16, 4, 0, 2);
    const char *kv[] = {"lr", "0.01", "epochs", "8", "batch_size", "32", "seed", "5", NULL};
    mmp_train_cfg c = cfg_of(kv);
    mmp_trainer t;
    CHECKF(mmp_trainer_init(&t, &c, &tr, err, sizeof err) == 0, "%s", err);
    CHECK(t.cfg.standardize == 1 && t.mean && t.cfg.head == MMP_HEAD_LINEAR);
    CHECK(fabs(t.cfg.opt.weight_decay - 1e-2) < 1e-15);
    mmp_trainer_standardize(&t, &tr);
    mmp_trainer_standardize(&t, &dev);
    double l0, a0, l1, a1;
    mmp_trainer_evaluate(&t, &dev, &l0, &a0);
    run_epochs(&t, &tr, 8);
    mmp_trainer_evaluate(&t, &dev, &l1, &a1);
    printf("linear probe: dev loss %.4f -> %.4f, accuracy %.3f -> %.3f\n", l0, l1, a0, a1);
    CHECK(l1 < l0 && a1 > 0.9);
    CHECK(mmp_trainer_check_data(&t, &dev, 0, err, sizeof err) == 0);
    mmp_meta_set(&dev.hdr.meta, "provenance", "other-backbone");
    CHECK(mmp_trainer_check_data(&t, &dev, 0, err, sizeof err) == -1);
    CHECK(strstr(err, "synthetic-v1") && strstr(err, "other-backbone"));
    CHECK(mmp_trainer_check_data(&t, &dev, 1, err, sizeof err) == 0);
    CHECK(mmp_trainer_save(&t, "probe.safetensors", err, sizeof err) == 0);
    /* reload: same logits, same classes and provenance */
    mmp_trainer u;
    CHECKF(mmp_trainer_load(&u, "probe.safetensors", NULL, err, sizeof err) == 0, "%s", err);
    CHECK(u.nclasses_named == 4 && !strcmp(u.classes[2], "gamma \"quoted\""));
    CHECK(u.provenance && !strcmp(u.provenance, "synthetic-v1"));
    CHECK(u.mean && memcmp(u.mean, t.mean, sizeof(float) * 16) == 0);
    float *la = malloc(sizeof(float) * 400 * 4), *lb = malloc(sizeof(float) * 400 * 4);
    mmp_trainer_predict(&t, dev.x, 400, la);
    mmp_trainer_predict(&u, dev.x, 400, lb);
    CHECK(memcmp(la, lb, sizeof(float) * 400 * 4) == 0);
    /* the checkpoint is a torch-style state dict */
    mmp_safetensors st;
    mmp_st_open_or_die(&st, "probe.safetensors");
    CHECK(mmp_st_get(&st, "weight") && mmp_st_get(&st, "bias") && mmp_st_get(&st, "optim.weight.exp_avg") &&
          mmp_st_get(&st, "optim.bias.exp_avg_sq") && mmp_st_get(&st, "standardize.std"));
    CHECK(mmp_st_get(&st, "weight")->shape[0] == 4 && mmp_st_get(&st, "weight")->shape[1] == 16);
    CHECK(!strcmp(mmp_meta_get(&st.meta, "lr"), "0.01") && !strcmp(mmp_meta_get(&st.meta, "epoch"), "8"));
    mmp_st_close(&st);
    /* architecture cannot change on load */
    mmp_meta ovr;
    mmp_meta_init(&ovr);
    mmp_meta_set(&ovr, "head", "mlp");
    mmp_trainer v;
    CHECK(mmp_trainer_load(&v, "probe.safetensors", &ovr, err, sizeof err) == -1);
    CHECK(strstr(err, "head") != NULL);
    mmp_meta_free(&ovr);
    free(la); free(lb);
    mmp_trainer_free(&t); mmp_trainer_free(&u);
    mmp_dataset_free(&tr); mmp_dataset_free(&dev);
}

static void test_bad_configs(void) {
    char err[512];
    mmp_train_cfg c;
    mmp_train_cfg_defaults(&c);
    CHECK(mmp_train_cfg_set(&c, "lr", "abc", err, sizeof err) == -1);
    CHECK(mmp_train_cfg_set(&c, "dropout", "1.5", err, sizeof err) == -1);
    CHECK(mmp_train_cfg_set(&c, "hidden", "12,x", err, sizeof err) == -1);
    CHECK(mmp_train_cfg_set(&c, "nope", "1", err, sizeof err) == -1);
    mmp_dataset tr;
    make_ds(&tr, 50, 4, 3, 0, 1);
    mmp_trainer t;
    const char *kv1[] = {"loss", "contrastive", NULL};
    c = cfg_of(kv1);
    CHECK(mmp_trainer_init(&t, &c, &tr, err, sizeof err) == -1); /* no pair embedding */
    mmp_trainer_free(&t);
    const char *kv2[] = {"class_weights", "1,2", NULL};
    c = cfg_of(kv2);
    CHECK(mmp_trainer_init(&t, &c, &tr, err, sizeof err) == -1 && strstr(err, "3 non-negative"));
    mmp_trainer_free(&t);
    const char *kv3[] = {"schedule", "step", NULL};
    c = cfg_of(kv3);
    CHECK(mmp_trainer_init(&t, &c, &tr, err, sizeof err) == -1);
    mmp_trainer_free(&t);
    const char *kv4[] = {"class_weights", "balanced", NULL};
    c = cfg_of(kv4);
    CHECK(mmp_trainer_init(&t, &c, &tr, err, sizeof err) == 0 && t.class_w);
    mmp_trainer_free(&t);
    mmp_dataset_free(&tr);
    FILE *f = fopen("junk.safetensors", "w");
    fputs("not a checkpoint", f);
    fclose(f);
    CHECK(mmp_trainer_load(&t, "junk.safetensors", NULL, err, sizeof err) == -1);
}

int main(void) {
    mmp_train_init_blas();
    test_learns_and_roundtrip();
    test_bad_configs();
    const char *lin[] = {"epochs", "4", "batch_size", "64", "seed", "3", NULL};
    check_resume("linear adamw", lin, 0);
    const char *mlp[] = {"hidden", "20,10", "dropout", "0.3", "optimizer", "sgd", "lr", "0.05",
                         "momentum", "0.9", "nesterov", "1", "weight_decay", "1e-3", "schedule", "cosine",
                         "warmup", "3", "clip_grad_norm", "1.0", "label_smoothing", "0.1",
                         "class_weights", "balanced", "batch_size", "50", "seed", "11", NULL};
    check_resume("mlp sgd dropout cosine", mlp, 0);
    const char *clip[] = {"loss", "contrastive", "proj_dim", "8", "batch_size", "64", "lr", "0.01", NULL};
    check_resume("pair contrastive", clip, 6);
    const char *trip[] = {"loss", "triplet", "mining", "all", "proj_dim", "8", "batch_size", "40",
                          "optimizer", "sgd", "momentum", "0.9", "schedule", "step", "step_size", "5", NULL};
    check_resume("pair triplet (all)", trip, 6);
    unlink("resume.safetensors");
    TEST_END();
}
