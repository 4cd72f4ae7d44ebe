/* The configuration table of mmp-train-step (lib/train/config.c): defaults,
 * the checkpoint metadata (keys, order, formatting) and reading it back,
 * architecture keys, and the command line through the same table. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "testlib.h"
#include "train/train.h"

/* the keys of a checkpoint, in order (docs/train.md; the CNN-tail keys last) */
static const char *const keys[] = {"head", "hidden", "dropout", "proj_dim", "fuse_dim", "heads", "loss", "label_smoothing",
    "class_weights", "margin", "mining", "optimizer", "lr", "momentum", "nesterov", "weight_decay", "beta1", "beta2", "eps",
    "schedule", "warmup", "step_size", "gamma", "min_lr", "total_steps", "clip_grad_norm", "batch_size", "epochs", "seed",
    "standardize", "patience", "feature", "pair_field", "labels_field", "backbone", "from", "in_hw", NULL};

static void set(mmp_train_cfg *c, const char *k, const char *v) {
    char err[256];
    CHECKF(mmp_train_cfg_set(c, k, v, err, sizeof err) == 0, "%s=%s: %s", k, v, err);
}

static const char *get(const mmp_meta *m, const char *k) {
    const char *v = mmp_meta_get(m, k);
    return v ? v : "(absent)";
}

static void test_defaults(void) {
    mmp_train_cfg c;
    mmp_train_cfg_defaults(&c);
    CHECK((int)c.head == -1 && c.nhidden == 0 && isnan(c.dropout) && c.proj_dim == 256 && c.fuse_dim == 256 && c.heads == 4);
    CHECK(c.loss == MMP_LOSS_CE && c.label_smoothing == 0 && !c.class_weights[0] && c.margin == 1.0 && c.mining_hard == 1);
    CHECK(c.opt.kind == MMP_OPT_ADAMW && isnan(c.sched.lr) && c.opt.momentum == 0 && c.opt.nesterov == 0 && isnan(c.opt.weight_decay));
    CHECK(c.opt.beta1 == 0.9 && c.opt.beta2 == 0.999 && c.opt.eps == 1e-8 && c.opt.dampening == 0);
    CHECK(c.sched.kind == MMP_SCHED_CONSTANT && c.sched.warmup == 0 && c.sched.step_size == 0 && c.sched.gamma == 0.1);
    CHECK(c.sched.min_lr == 0 && c.sched.total == 0 && c.clip == 0 && c.batch == 256 && c.epochs == 1 && c.seed == 0);
    CHECK(c.standardize == -1 && c.patience == 0 && !strcmp(c.feature, "embedding") && !strcmp(c.pair_field, "text_embedding"));
    CHECK(!strcmp(c.labels_field, "labels") && !c.backbone[0] && c.from == -1 && c.in_h == 0 && c.in_w == 0);
    CHECK(c.rn_layer == 0 && c.rn_block == -1);
    mmp_train_cfg_resolve(&c);
    CHECK(c.head == MMP_HEAD_LINEAR && c.sched.lr == 1e-3 && c.opt.weight_decay == 1e-2 && c.standardize == 1 && c.dropout == 0);
}

static void test_meta(void) {
    mmp_train_cfg c;
    mmp_train_cfg_defaults(&c);
    mmp_train_cfg_resolve(&c);
    mmp_meta m;
    mmp_meta_init(&m);
    mmp_train_cfg_to_meta(&c, &m);
    /* every key but step_size (unset) and the CNN-tail keys (not a tail head), in order */
    int k = 0;
    for (int i = 0; keys[i]; i++) {
        if (!strcmp(keys[i], "step_size") || !strcmp(keys[i], "backbone") || !strcmp(keys[i], "from") || !strcmp(keys[i], "in_hw")) continue;
        CHECKF(k < m.n && !strcmp(m.keys[k], keys[i]), "key %d: %s, want %s", k, k < m.n ? m.keys[k] : "(end)", keys[i]);
        k++;
    }
    CHECK(k == m.n);
    /* formatting: %.17g doubles, names, "auto" */
    CHECK(!strcmp(get(&m, "head"), "linear") && !strcmp(get(&m, "hidden"), "") && !strcmp(get(&m, "dropout"), "0"));
    CHECK(!strcmp(get(&m, "lr"), "0.001") && !strcmp(get(&m, "weight_decay"), "0.01") && !strcmp(get(&m, "eps"), "1e-08"));
    CHECK(!strcmp(get(&m, "gamma"), "0.10000000000000001") && !strcmp(get(&m, "mining"), "hard"));
    CHECK(!strcmp(get(&m, "optimizer"), "adamw") && !strcmp(get(&m, "standardize"), "1") && !strcmp(get(&m, "nesterov"), "0"));
    CHECK(!strcmp(get(&m, "seed"), "0") && !strcmp(get(&m, "batch_size"), "256") && !strcmp(get(&m, "schedule"), "constant"));
    mmp_meta_free(&m);

    /* a round trip of every key with non-default values */
    mmp_train_cfg a, b;
    mmp_train_cfg_defaults(&a);
    const char *kv[] = {"head", "resnet-tail", "dropout", "0.25", "proj_dim", "17", "fuse_dim", "9", "heads", "3", "loss", "bce",
        "label_smoothing", "0.1", "class_weights", "1,2.5", "margin", "0.3", "mining", "all", "optimizer", "sgd", "lr", "0.05",
        "momentum", "0.9", "nesterov", "true", "weight_decay", "0", "beta1", "0.8", "beta2", "0.99", "eps", "1e-6",
        "schedule", "step", "warmup", "5", "step_size", "7", "gamma", "0.5", "min_lr", "1e-5", "total_steps", "100",
        "clip_grad_norm", "2", "batch_size", "33", "epochs", "4", "seed", "18446744073709551615", "standardize", "0",
        "patience", "2", "feature", "f", "pair_field", "p", "labels_field", "l", "backbone", "r18.safetensors",
        "from", "layer3.1", "in_hw", "6x7", NULL};
    for (int i = 0; kv[i]; i += 2) set(&a, kv[i], kv[i + 1]);
    mmp_meta ma, mb;
    mmp_meta_init(&ma);
    mmp_meta_init(&mb);
    mmp_train_cfg_to_meta(&a, &ma);
    CHECK(ma.n == 37);
    CHECK(!strcmp(get(&ma, "seed"), "18446744073709551615") && !strcmp(get(&ma, "from"), "layer3.1") && !strcmp(get(&ma, "in_hw"), "6x7"));
    CHECK(!strcmp(get(&ma, "nesterov"), "1") && !strcmp(get(&ma, "step_size"), "7") && !strcmp(get(&ma, "backbone"), "r18.safetensors"));
    CHECK(!strcmp(get(&ma, "eps"), "9.9999999999999995e-07") && !strcmp(get(&ma, "mining"), "all") && !strcmp(get(&ma, "optimizer"), "sgd"));
    char err[256];
    mmp_train_cfg_defaults(&b);
    CHECKF(mmp_train_cfg_from_meta(&b, &ma, err, sizeof err) == 0, "%s", err);
    mmp_train_cfg_to_meta(&b, &mb);
    CHECK(ma.n == mb.n);
    for (int i = 0; i < ma.n && i < mb.n; i++)
        CHECKF(!strcmp(ma.keys[i], mb.keys[i]) && !strcmp(ma.vals[i], mb.vals[i]), "%s=%s vs %s=%s", ma.keys[i], ma.vals[i], mb.keys[i], mb.vals[i]);
    CHECK(b.rn_layer == 3 && b.rn_block == 1 && b.in_h == 6 && b.in_w == 7 && b.seed == UINT64_MAX && b.opt.kind == MMP_OPT_SGD);
    /* mnv2-tail's from; "nan" from an old writer reads as auto */
    mmp_meta_set(&mb, "head", "mnv2-tail");
    mmp_meta_set(&mb, "from", "features.16:flat");
    mmp_meta_set(&mb, "lr", "nan");
    mmp_train_cfg_defaults(&b);
    CHECK(mmp_train_cfg_from_meta(&b, &mb, err, sizeof err) == 0 && b.from == 16 && isnan(b.sched.lr));
    mmp_meta_free(&ma);
    mmp_meta_free(&mb);
    /* bad values are refused with the key named */
    mmp_train_cfg_defaults(&b);
    CHECK(mmp_train_cfg_set(&b, "lr", "0", err, sizeof err) == -1 && !strcmp(err, "value for lr out of range: 0 (must be > 0)"));
    CHECK(mmp_train_cfg_set(&b, "seed", "-1", err, sizeof err) == -1 && !strcmp(err, "bad value for seed: '-1'"));
    CHECK(mmp_train_cfg_set(&b, "from", "features.18", err, sizeof err) == -1);
    CHECK(mmp_train_cfg_set(&b, "feature", "", err, sizeof err) == -1);
    CHECK(mmp_train_cfg_set(&b, "no_standardize", "1", err, sizeof err) == -1 && strstr(err, "unknown configuration key"));
    CHECK(mmp_train_cfg_is_arch("hidden") && mmp_train_cfg_is_arch("in_hw") && !mmp_train_cfg_is_arch("lr") && !mmp_train_cfg_is_arch("x"));
}

static void test_cli(void) {
    mmp_train_cfg c;
    mmp_train_cfg_defaults(&c);
    mmp_meta given;
    mmp_meta_init(&given);
    const char *out = NULL;
    mmp_option opts[] = {MMP_O_INCLUDE(mmp_train_options, .base = &c, .record = &given), MMP_O_STRING("out", 'o', &out, "FILE", "x"),
                         MMP_O_COMMON, MMP_O_END};
    char *argv[] = {"mmp-train-step", "--weight-decay=0.5", "-o", "h.safetensors", "--hidden", "8,4", "--no-standardize", "in.mmp",
                    "--nesterov", "--epochs", "3", NULL};
    char *pos[16], err[256];
    CHECK(mmp_cli_parse_r(11, argv, opts, "", pos, stdout, err, sizeof err) == 1 && !strcmp(pos[0], "in.mmp"));
    CHECK(!strcmp(out, "h.safetensors") && c.opt.weight_decay == 0.5 && c.nhidden == 2 && c.head == MMP_HEAD_MLP && c.standardize == 0);
    const char *want[] = {"weight_decay", "0.5", "hidden", "8,4", "standardize", "0", "nesterov", "1", "epochs", "3"};
    CHECK(given.n == 5);
    for (int i = 0; i < 5 && i < given.n; i++) CHECK(!strcmp(given.keys[i], want[2 * i]) && !strcmp(given.vals[i], want[2 * i + 1]));
    char *bad[] = {"mmp-train-step", "--lr", "abc", NULL};
    CHECK(mmp_cli_parse_r(3, bad, opts, "", pos, stdout, err, sizeof err) == -1 && !strcmp(err, "bad value for --lr: 'abc' (a number is expected)"));
    char *bad2[] = {"mmp-train-step", "--label-smoothing", "2", NULL};
    CHECK(mmp_cli_parse_r(3, bad2, opts, "", pos, stdout, err, sizeof err) == -1 &&
          !strcmp(err, "value for --label-smoothing out of range: 2 (must be >= 0 and <= 1)"));
    char *bad3[] = {"mmp-train-step", "--weight_decay", "0.1", NULL};
    CHECK(mmp_cli_parse_r(3, bad3, opts, "", pos, stdout, err, sizeof err) == -1 &&
          !strcmp(err, "unknown option --weight_decay (did you mean --weight-decay?)"));
    mmp_meta_free(&given);
}

int main(void) {
    test_defaults();
    test_meta();
    test_cli();
    TEST_END();
}
