/* train/train.c: configuration, data sets, training loop, checkpoints. */
#include "train/train.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "nn/provenance.h"
#include "train/cnn_tail.h"
#include "train/resnet_tail.h"
#include "train/metrics.h"

#define LOGIT_SCALE_MAX 4.605170185988092 /* log(100), CLIP's clamp */

const char *mmp_loss_name(mmp_loss_kind k) {
    static const char *n[] = {"ce", "bce", "contrastive", "triplet"};
    return (unsigned)k < 4 ? n[k] : "?";
}

int mmp_loss_parse(const char *s, mmp_loss_kind *k) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, mmp_loss_name((mmp_loss_kind)i))) { *k = (mmp_loss_kind)i; return 0; }
    return -1;
}

/* ------------------------------------------------------------------ */
/* configuration                                                       */
/* ------------------------------------------------------------------ */

void mmp_train_cfg_defaults(mmp_train_cfg *c) {
    memset(c, 0, sizeof *c);
    c->head = (mmp_head_kind)-1; /* auto: linear, or pair for contrastive/triplet */
    c->dropout = NAN; /* auto: 0.2 for mnv2-tail (torchvision's classifier), else 0 */
    c->proj_dim = 256;
    c->fuse_dim = 256;
    c->heads = 4;
    c->loss = MMP_LOSS_CE;
    c->margin = 1.0;
    c->mining_hard = 1;
    mmp_optim_defaults(&c->opt, MMP_OPT_ADAMW);
    c->opt.weight_decay = NAN; /* optimizer default: AdamW 1e-2, SGD 0 */
    c->sched.kind = MMP_SCHED_CONSTANT;
    c->sched.lr = NAN;         /* optimizer default: AdamW 1e-3, SGD 1e-2 */
    c->sched.gamma = 0.1;
    c->batch = 256;
    c->epochs = 1;
    c->seed = 0;
    c->standardize = -1;
    snprintf(c->feature, sizeof c->feature, "embedding");
    snprintf(c->pair_field, sizeof c->pair_field, "text_embedding");
    snprintf(c->labels_field, sizeof c->labels_field, "labels");
    c->from = -1;
    c->rn_block = -1;
}

static int pnum(const char *v, double *out) {
    char *e;
    errno = 0;
    double d = strtod(v, &e);
    if (e == v || *e || errno || !isfinite(d)) return -1;
    *out = d;
    return 0;
}

static int pint(const char *v, int64_t lo, int64_t hi, int64_t *out) {
    char *e;
    errno = 0;
    long long d = strtoll(v, &e, 10);
    if (e == v || *e || errno || d < lo || d > hi) return -1;
    *out = d;
    return 0;
}

static int pbool(const char *v, int *out) {
    if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "on")) *out = 1;
    else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "off")) *out = 0;
    else return -1;
    return 0;
}

int mmp_train_cfg_set(mmp_train_cfg *c, const char *k, const char *v, char *err, size_t errlen) {
    double d;
    int64_t i;
    int b;
#define BAD() do { mmp_errf(err, errlen, "bad value for %s: '%s'", k, v); return -1; } while (0)
#define NUM(dst) do { if (pnum(v, &d)) BAD(); dst = d; } while (0)
#define NUMGE0(dst) do { if (pnum(v, &d) || d < 0) BAD(); dst = d; } while (0)
#define INT(dst, lo, hi) do { if (pint(v, lo, hi, &i)) BAD(); dst = i; } while (0)
    if (!strcmp(k, "head")) {
        if (!strcmp(v, "auto")) c->head = (mmp_head_kind)-1;
        else if (mmp_head_kind_parse(v, &c->head)) BAD();
    } else if (!strcmp(k, "hidden")) {
        int n = 0;
        const char *p = v;
        if (!*p) { c->nhidden = 0; return 0; }
        while (*p) {
            char *e;
            long long h = strtoll(p, &e, 10);
            if (e == p || h < 1 || h > (1 << 24) || n >= MMP_HEAD_MAX_HIDDEN) BAD();
            c->hidden[n++] = h;
            p = e;
            if (*p == ',') p++;
            else if (*p) BAD();
        }
        c->nhidden = n;
        if ((int)c->head == -1) c->head = MMP_HEAD_MLP;
    } else if (!strcmp(k, "dropout")) {
        if (!strcmp(v, "auto")) { c->dropout = NAN; return 0; }
        if (pnum(v, &d) || d < 0 || d >= 1) BAD();
        c->dropout = d;
    } else if (!strcmp(k, "proj_dim")) INT(c->proj_dim, 1, 1 << 20);
    else if (!strcmp(k, "fuse_dim")) INT(c->fuse_dim, 1, 1 << 16);
    else if (!strcmp(k, "heads")) INT(c->heads, 1, 4096);
    else if (!strcmp(k, "loss")) { if (mmp_loss_parse(v, &c->loss)) BAD(); }
    else if (!strcmp(k, "label_smoothing")) {
        if (pnum(v, &d) || d < 0 || d > 1) BAD();
        c->label_smoothing = d;
    } else if (!strcmp(k, "class_weights")) {
        if (strlen(v) >= sizeof c->class_weights) BAD();
        snprintf(c->class_weights, sizeof c->class_weights, "%s", v);
    } else if (!strcmp(k, "margin")) NUMGE0(c->margin);
    else if (!strcmp(k, "mining")) {
        if (!strcmp(v, "hard")) c->mining_hard = 1;
        else if (!strcmp(v, "all")) c->mining_hard = 0;
        else BAD();
    } else if (!strcmp(k, "optimizer")) {
        if (!strcmp(v, "sgd")) c->opt.kind = MMP_OPT_SGD;
        else if (!strcmp(v, "adamw")) c->opt.kind = MMP_OPT_ADAMW;
        else BAD();
    } else if (!strcmp(k, "lr")) {
        if (pnum(v, &d) || d <= 0) BAD();
        c->sched.lr = d;
    } else if (!strcmp(k, "momentum")) NUMGE0(c->opt.momentum);
    else if (!strcmp(k, "nesterov")) { if (pbool(v, &b)) BAD(); c->opt.nesterov = b; }
    else if (!strcmp(k, "weight_decay")) NUMGE0(c->opt.weight_decay);
    else if (!strcmp(k, "beta1")) { if (pnum(v, &d) || d < 0 || d >= 1) BAD(); c->opt.beta1 = d; }
    else if (!strcmp(k, "beta2")) { if (pnum(v, &d) || d < 0 || d >= 1) BAD(); c->opt.beta2 = d; }
    else if (!strcmp(k, "eps")) { if (pnum(v, &d) || d <= 0) BAD(); c->opt.eps = d; }
    else if (!strcmp(k, "schedule")) { if (mmp_sched_parse(v, &c->sched.kind)) BAD(); }
    else if (!strcmp(k, "warmup")) INT(c->sched.warmup, 0, INT64_MAX / 2);
    else if (!strcmp(k, "step_size")) INT(c->sched.step_size, 1, INT64_MAX / 2);
    else if (!strcmp(k, "gamma")) NUMGE0(c->sched.gamma);
    else if (!strcmp(k, "min_lr")) NUMGE0(c->sched.min_lr);
    else if (!strcmp(k, "total_steps")) INT(c->sched.total, 0, INT64_MAX / 2);
    else if (!strcmp(k, "clip_grad_norm")) NUMGE0(c->clip);
    else if (!strcmp(k, "batch_size")) INT(c->batch, 1, 1 << 24);
    else if (!strcmp(k, "epochs")) INT(c->epochs, 0, 1 << 24);
    else if (!strcmp(k, "seed")) {
        char *e;
        errno = 0;
        unsigned long long s = strtoull(v, &e, 10);
        if (e == v || *e || errno || v[0] == '-') BAD();
        c->seed = s;
    } else if (!strcmp(k, "standardize")) {
        if (!strcmp(v, "auto")) c->standardize = -1;
        else if (pbool(v, &b)) BAD();
        else c->standardize = b;
    } else if (!strcmp(k, "patience")) INT(c->patience, 0, 1 << 24);
    else if (!strcmp(k, "feature") || !strcmp(k, "pair_field") || !strcmp(k, "labels_field")) {
        char *dst = !strcmp(k, "feature") ? c->feature : !strcmp(k, "pair_field") ? c->pair_field : c->labels_field;
        if (!*v || strlen(v) >= 64) BAD();
        snprintf(dst, 64, "%s", v);
    } else if (!strcmp(k, "backbone")) {
        if (strlen(v) >= sizeof c->backbone) BAD();
        snprintf(c->backbone, sizeof c->backbone, "%s", v);
    } else if (!strcmp(k, "from")) {
        /* "auto", "features.K" or "features.K:flat" (as mmp-embed --layer), or K */
        const char *p = v;
        if (!strcmp(v, "auto")) { c->from = -1; c->rn_layer = 0; c->rn_block = -1; return 0; }
        if (!strncmp(v, "layer", 5)) { /* resnet-tail: layerL[.i][:flat] */
            int L, i;
            if (mmp_resnet_parse_layer(v, &L, &i)) BAD();
            c->rn_layer = L;
            c->rn_block = i;
            return 0;
        }
        if (!strncmp(p, "features.", 9)) p += 9;
        char *e;
        errno = 0;
        long f = strtol(p, &e, 10);
        if (e == p || errno || f < 0 || f > 17 || (*e && strcmp(e, ":flat"))) BAD();
        c->from = (int)f;
    } else if (!strcmp(k, "in_hw")) {
        if (!strcmp(v, "auto") || !*v) { c->in_h = c->in_w = 0; return 0; }
        long long a, bb;
        char tail;
        if (sscanf(v, "%lldx%lld%c", &a, &bb, &tail) != 2 || a < 1 || bb < 1 || a > 4096 || bb > 4096) BAD();
        c->in_h = a;
        c->in_w = bb;
    } else {
        mmp_errf(err, errlen, "unknown configuration key '%s'", k);
        return -1;
    }
    return 0;
#undef BAD
#undef NUM
#undef NUMGE0
#undef INT
}

static void mset(mmp_meta *m, const char *k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void mset(mmp_meta *m, const char *k, const char *fmt, ...) {
    char buf[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    mmp_meta_set(m, k, buf);
}

static const char *cfg_keys[] = {"head", "hidden", "dropout", "proj_dim", "fuse_dim", "heads", "loss", "label_smoothing",
    "class_weights", "margin", "mining", "optimizer", "lr", "momentum", "nesterov", "weight_decay",
    "beta1", "beta2", "eps", "schedule", "warmup", "step_size", "gamma", "min_lr", "total_steps",
    "clip_grad_norm", "batch_size", "epochs", "seed", "standardize", "patience", "feature",
    "pair_field", "labels_field", "backbone", "from", "in_hw", NULL};

void mmp_train_cfg_to_meta(const mmp_train_cfg *c, mmp_meta *m) {
    char hid[256] = "";
    for (int i = 0; i < c->nhidden; i++)
        snprintf(hid + strlen(hid), sizeof hid - strlen(hid), "%s%lld", i ? "," : "", (long long)c->hidden[i]);
    mset(m, "head", "%s", (int)c->head == -1 ? "auto" : mmp_head_kind_name(c->head));
    mset(m, "hidden", "%s", hid);
    if (isnan(c->dropout)) mset(m, "dropout", "auto");
    else mset(m, "dropout", "%.17g", c->dropout);
    mset(m, "proj_dim", "%lld", (long long)c->proj_dim);
    mset(m, "fuse_dim", "%lld", (long long)c->fuse_dim);
    mset(m, "heads", "%d", c->heads);
    mset(m, "loss", "%s", mmp_loss_name(c->loss));
    mset(m, "label_smoothing", "%.17g", c->label_smoothing);
    mset(m, "class_weights", "%s", c->class_weights);
    mset(m, "margin", "%.17g", c->margin);
    mset(m, "mining", "%s", c->mining_hard ? "hard" : "all");
    mset(m, "optimizer", "%s", c->opt.kind == MMP_OPT_SGD ? "sgd" : "adamw");
    mset(m, "lr", "%.17g", c->sched.lr);
    mset(m, "momentum", "%.17g", c->opt.momentum);
    mset(m, "nesterov", "%d", c->opt.nesterov);
    mset(m, "weight_decay", "%.17g", c->opt.weight_decay);
    mset(m, "beta1", "%.17g", c->opt.beta1);
    mset(m, "beta2", "%.17g", c->opt.beta2);
    mset(m, "eps", "%.17g", c->opt.eps);
    mset(m, "schedule", "%s", mmp_sched_name(c->sched.kind));
    mset(m, "warmup", "%lld", (long long)c->sched.warmup);
    if (c->sched.step_size > 0) mset(m, "step_size", "%lld", (long long)c->sched.step_size);
    mset(m, "gamma", "%.17g", c->sched.gamma);
    mset(m, "min_lr", "%.17g", c->sched.min_lr);
    mset(m, "total_steps", "%lld", (long long)c->sched.total);
    mset(m, "clip_grad_norm", "%.17g", c->clip);
    mset(m, "batch_size", "%lld", (long long)c->batch);
    mset(m, "epochs", "%d", c->epochs);
    mset(m, "seed", "%llu", (unsigned long long)c->seed);
    mset(m, "standardize", "%s", c->standardize < 0 ? "auto" : c->standardize ? "1" : "0");
    mset(m, "patience", "%d", c->patience);
    mset(m, "feature", "%s", c->feature);
    mset(m, "pair_field", "%s", c->pair_field);
    mset(m, "labels_field", "%s", c->labels_field);
    if (c->head == MMP_HEAD_MNV2_TAIL) {
        mset(m, "backbone", "%s", c->backbone);
        if (c->from >= 0) mset(m, "from", "features.%d", c->from);
        if (c->in_h > 0) mset(m, "in_hw", "%lldx%lld", (long long)c->in_h, (long long)c->in_w);
    } else if (c->head == MMP_HEAD_RESNET_TAIL) {
        mset(m, "backbone", "%s", c->backbone);
        if (c->rn_layer > 0) {
            if (c->rn_block >= 0) mset(m, "from", "layer%d.%d", c->rn_layer, c->rn_block);
            else mset(m, "from", "layer%d", c->rn_layer);
        }
        if (c->in_h > 0) mset(m, "in_hw", "%lldx%lld", (long long)c->in_h, (long long)c->in_w);
    }
}

int mmp_train_cfg_from_meta(mmp_train_cfg *c, const mmp_meta *m, char *err, size_t errlen) {
    for (int i = 0; cfg_keys[i]; i++) {
        const char *v = mmp_meta_get(m, cfg_keys[i]);
        if (!v) continue;
        if (!strcmp(cfg_keys[i], "lr") && !strcmp(v, "nan")) continue;
        if (!strcmp(cfg_keys[i], "weight_decay") && !strcmp(v, "nan")) continue;
        if (mmp_train_cfg_set(c, cfg_keys[i], v, err, errlen)) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* data sets                                                           */
/* ------------------------------------------------------------------ */

int mmp_train_provenance_compatible(const char *a, const char *b) {
    if (!a || !b || !*a || !*b) return 1;
    return strcmp(a, b) == 0;
}

static int is_float(mmp_dtype t) { return t == MMP_F32 || t == MMP_F16 || t == MMP_BF16; }

void mmp_dataset_free(mmp_dataset *d) {
    for (int64_t i = 0; i < d->n; i++) free(d->ids ? d->ids[i] : NULL);
    free(d->ids); free(d->x); free(d->x2); free(d->y); free(d->t);
    mmp_header_free(&d->hdr);
    memset(d, 0, sizeof *d);
}

void mmp_train_check_text_provenance(const mmp_header *h, const char *model_tp, int allow_mixed,
                                     const char *what_a, const char *what_b) {
    const char *tp = mmp_meta_get(&h->meta, "text_provenance");
    if (!tp || !model_tp) return;
    mmp_header t;
    mmp_header_init(&t);
    mmp_meta_set(&t.meta, "provenance", tp);
    char *a = mmp_xasprintf("%s (text embeddings)", what_a);
    mmp_provenance_check(&t, model_tp, allow_mixed, a, what_b);
    free(a);
    mmp_header_free(&t);
}

const char *mmp_dataset_provenance(const mmp_dataset *d) { return mmp_meta_get(&d->hdr.meta, "provenance"); }

/* ------------------------------------------------------------------ */
/* trainer                                                             */
/* ------------------------------------------------------------------ */

static void resolve_defaults(mmp_train_cfg *c) {
    if ((int)c->head == -1)
        c->head = c->loss == MMP_LOSS_CONTRASTIVE || c->loss == MMP_LOSS_TRIPLET ? MMP_HEAD_PAIR
                  : c->nhidden > 0 ? MMP_HEAD_MLP : MMP_HEAD_LINEAR;
    if (isnan(c->dropout)) c->dropout = c->head == MMP_HEAD_MNV2_TAIL ? 0.2 : 0;
    if (isnan(c->sched.lr)) c->sched.lr = c->opt.kind == MMP_OPT_ADAMW ? 1e-3 : 1e-2;
    if (isnan(c->opt.weight_decay)) c->opt.weight_decay = c->opt.kind == MMP_OPT_ADAMW ? 1e-2 : 0;
    /* fusion heads see the raw inputs (off): mmp-fuse --checkpoint computes the same fused vector */
    if (c->standardize < 0)
        c->standardize = c->head == MMP_HEAD_LINEAR && (c->loss == MMP_LOSS_CE || c->loss == MMP_LOSS_BCE);
}

static int check_combo(const mmp_train_cfg *c, char *err, size_t errlen) {
    int pairloss = c->loss == MMP_LOSS_CONTRASTIVE || c->loss == MMP_LOSS_TRIPLET;
    if (pairloss != (c->head == MMP_HEAD_PAIR)) {
        mmp_errf(err, errlen, "--loss %s needs %s", mmp_loss_name(c->loss),
               pairloss ? "the pair head (two projections)" : "a linear, mlp, gated or attention head");
        return -1;
    }
    if (MMP_HEAD_IS_FUSE(c->head) && c->standardize > 0) {
        mmp_errf(err, errlen, "--standardize is not available for the %s fusion head (it sees the raw inputs, as mmp-fuse does)",
               mmp_head_kind_name(c->head));
        return -1;
    }
    if (MMP_HEAD_IS_TAIL(c->head)) {
        if (c->standardize > 0) {
            mmp_errf(err, errlen, "--standardize is not available for the %s head (it sees the block activations as the network does)",
                     mmp_head_kind_name(c->head));
            return -1;
        }
        if (c->nhidden > 0) { mmp_errf(err, errlen, "--hidden needs --head mlp"); return -1; }
    }
    if (MMP_HEAD_IS_FUSE(c->head) && c->nhidden > 0) {
        mmp_errf(err, errlen, "--hidden needs --head mlp");
        return -1;
    }
    if (c->head == MMP_HEAD_MLP && c->nhidden == 0) {
        mmp_errf(err, errlen, "--head mlp needs --hidden N[,N...]");
        return -1;
    }
    if (c->head == MMP_HEAD_LINEAR && c->nhidden > 0) {
        mmp_errf(err, errlen, "--hidden needs --head mlp");
        return -1;
    }
    if (c->sched.kind == MMP_SCHED_STEP && c->sched.step_size <= 0) {
        mmp_errf(err, errlen, "--schedule step needs --step-size N (steps)");
        return -1;
    }
    return 0;
}

static void parse_json_names(const char *js, int *n, char ***out) {
    *n = 0;
    *out = NULL;
    if (!js) return;
    const char *p = strchr(js, '[');
    if (!p) return;
    p++;
    int cap = 0;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\n') p++;
        if (*p != '"') break;
        p++;
        size_t L = 0, C = 64;
        char *s = mmp_xmalloc(C);
        while (*p && *p != '"') {
            if (L + 8 >= C) s = mmp_xrealloc(s, C *= 2);
            if (*p != '\\') { s[L++] = *p++; continue; }
            p++;
            char e = *p ? *p++ : 0;
            if (e == 'u') {
                unsigned cp = 0;
                for (int k = 0; k < 4 && isxdigit((unsigned char)*p); k++, p++)
                    cp = cp * 16 + (unsigned)(isdigit((unsigned char)*p) ? *p - '0' : (tolower((unsigned char)*p) - 'a' + 10));
                if (cp < 0x80) s[L++] = (char)cp;
                else if (cp < 0x800) { s[L++] = (char)(0xC0 | (cp >> 6)); s[L++] = (char)(0x80 | (cp & 0x3F)); }
                else { s[L++] = (char)(0xE0 | (cp >> 12)); s[L++] = (char)(0x80 | ((cp >> 6) & 0x3F)); s[L++] = (char)(0x80 | (cp & 0x3F)); }
            } else {
                s[L++] = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' : e == 'f' ? '\f' : e;
            }
        }
        s[L] = 0;
        if (*p == '"') p++;
        if (*n == cap) *out = mmp_xrealloc(*out, sizeof(char *) * (size_t)(cap = cap ? cap * 2 : 16));
        (*out)[(*n)++] = s;
    }
}

static char *json_names(int n, char *const *names) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i) fputc(',', f);
        mmp_json_str(f, names[i]);
    }
    fputc(']', f);
    fclose(f);
    return buf;
}

static void grow_batch(mmp_trainer *tr, int64_t B) {
    if (B <= tr->cap) return;
    size_t b = (size_t)B;
    int64_t C = tr->head.out_dim;
    tr->bx = mmp_xrealloc(tr->bx, sizeof(float) * b * (size_t)tr->in_dim);
    tr->bx2 = mmp_xrealloc(tr->bx2, sizeof(float) * b * (size_t)(tr->pair_dim + 1));
    tr->bt = mmp_xrealloc(tr->bt, sizeof(float) * b * (size_t)(tr->ncls + 1));
    tr->out = mmp_xrealloc(tr->out, sizeof(float) * b * (size_t)C);
    tr->dout = mmp_xrealloc(tr->dout, sizeof(float) * b * (size_t)C);
    tr->za = mmp_xrealloc(tr->za, sizeof(float) * b * (size_t)C);
    tr->zb = mmp_xrealloc(tr->zb, sizeof(float) * b * (size_t)C);
    tr->dza = mmp_xrealloc(tr->dza, sizeof(float) * b * (size_t)C);
    tr->dzb = mmp_xrealloc(tr->dzb, sizeof(float) * b * (size_t)C);
    tr->by = mmp_xrealloc(tr->by, sizeof(int64_t) * b);
    size_t nt = tr->cfg.loss == MMP_LOSS_TRIPLET ? b * (b > 1 ? b - 1 : 1) : 1;
    for (int k = 0; k < 3; k++) tr->ti[k] = mmp_xrealloc(tr->ti[k], sizeof(int64_t) * nt);
    tr->cap = B;
}

/* src: where the mnv2-tail head's weights come from (the backbone or the checkpoint) */
static int setup_head(mmp_trainer *tr, const mmp_safetensors *src, int from_ckpt, char *err, size_t errlen) {
    mmp_train_cfg *c = &tr->cfg;
    if (check_combo(c, err, errlen)) return -1;
    if (c->head == MMP_HEAD_RESNET_TAIL) {
        if (tr->ncls < 1) { mmp_errf(err, errlen, "no classes (labels missing?)"); return -1; }
        if (c->rn_layer < 1 || c->in_h < 1 || !src) { mmp_errf(err, errlen, "resnet-tail: the input layer and size are unknown"); return -1; }
        char e2[512];
        if (mmp_head_init_resnet_tail(&tr->head, src, c->rn_layer, c->rn_block, c->in_h, c->in_w, tr->ncls, from_ckpt, e2, sizeof e2)) {
            mmp_errf(err, errlen, "--head resnet-tail: %s", e2);
            return -1;
        }
        tr->head.tail->dropout = (float)c->dropout;
        tr->head.dropout = (float)c->dropout;
        if (tr->head.in_dim != tr->in_dim) {
            const mmp_cnn_tail *t = tr->head.tail;
            char lay[32];
            if (c->rn_block >= 0) snprintf(lay, sizeof lay, "layer%d.%d", c->rn_layer, c->rn_block);
            else snprintf(lay, sizeof lay, "layer%d", c->rn_layer);
            mmp_errf(err, errlen, "--head resnet-tail: the output of %s is [%lld,%lld,%lld] = %lld values, the features have %lld "
                     "(embed with mmp-embed --layer %s:flat; --in-hw HxW for its spatial size)",
                     lay, (long long)t->C0, (long long)t->H0, (long long)t->W0, (long long)tr->head.in_dim, (long long)tr->in_dim, lay);
            mmp_head_free(&tr->head);
            return -1;
        }
        return 0;
    }
    if (c->head == MMP_HEAD_MNV2_TAIL) {
        if (tr->ncls < 1) { mmp_errf(err, errlen, "no classes (labels missing?)"); return -1; }
        if (c->from < 0 || c->in_h < 1 || !src) { mmp_errf(err, errlen, "mnv2-tail: the input block and size are unknown"); return -1; }
        char e2[512];
        if (mmp_head_init_tail(&tr->head, src, c->from + 1, c->in_h, c->in_w, tr->ncls, (float)c->dropout, from_ckpt, e2, sizeof e2)) {
            mmp_errf(err, errlen, "--head mnv2-tail: %s", e2);
            return -1;
        }
        if (tr->head.in_dim != tr->in_dim) {
            const mmp_cnn_tail *t = tr->head.tail;
            mmp_errf(err, errlen, "--head mnv2-tail: the input of features.%d is [%lld,%lld,%lld] = %lld values, the features have %lld "
                     "(embed with mmp-embed --layer features.%d:flat; --in-hw HxW for the block's spatial size)",
                     c->from + 1, (long long)t->C0, (long long)t->H0, (long long)t->W0, (long long)tr->head.in_dim,
                     (long long)tr->in_dim, c->from);
            mmp_head_free(&tr->head);
            return -1;
        }
        return 0;
    }
    if (MMP_HEAD_IS_FUSE(c->head)) {
        if (tr->pair_dim <= 0) { mmp_errf(err, errlen, "the %s head needs a second input (--pair-field)", mmp_head_kind_name(c->head)); return -1; }
        if (tr->ncls < 1) { mmp_errf(err, errlen, "no classes (labels missing?)"); return -1; }
        char e2[256];
        if (mmp_head_init_fuse(&tr->head, c->head, tr->in_dim, tr->pair_dim, c->fuse_dim, c->heads, tr->ncls, e2, sizeof e2)) {
            mmp_errf(err, errlen, "--head %s: %s", mmp_head_kind_name(c->head), e2);
            return -1;
        }
    } else if (c->head == MMP_HEAD_PAIR) {
        if (tr->pair_dim <= 0) { mmp_errf(err, errlen, "the pair head needs a second embedding (--pair-field)"); return -1; }
        mmp_head_init(&tr->head, MMP_HEAD_PAIR, tr->in_dim, c->proj_dim, tr->pair_dim, 0, NULL, 0,
                      c->loss == MMP_LOSS_CONTRASTIVE);
    } else {
        if (tr->ncls < 1) { mmp_errf(err, errlen, "no classes (labels missing?)"); return -1; }
        mmp_head_init(&tr->head, c->head, tr->in_dim, tr->ncls, 0, c->nhidden, c->hidden,
                      (float)c->dropout, 0);
    }
    return 0;
}

/* mnv2-tail: the input block (features.K) and the tail's input size from the
 * stream header (embed.layer = "features.K:flat", embed.size = "HxW" of the
 * images) unless given; the channel count comes from the backbone. */
static int resolve_tail_input(mmp_train_cfg *c, const mmp_dataset *ds, char *err, size_t errlen) {
    if (!c->backbone[0]) {
        mmp_errf(err, errlen, "--head mnv2-tail needs --backbone FILE.safetensors (the pretrained MobileNetV2)");
        return -1;
    }
    const char *layer = mmp_meta_get(&ds->hdr.meta, "embed.layer");
    const char *arch = mmp_meta_get(&ds->hdr.meta, "embed.arch");
    if (arch && strcmp(arch, "mobilenet_v2")) {
        mmp_errf(err, errlen, "%s: features of %s (embed.arch); the mnv2-tail head needs MobileNetV2 block activations", ds->name, arch);
        return -1;
    }
    if (layer) {
        int k;
        char rest[32] = "";
        if (sscanf(layer, "features.%d%31s", &k, rest) < 1 || strcmp(rest, ":flat") || k < 0 || k > 17) {
            mmp_errf(err, errlen, "%s: embed.layer is \"%s\"; the mnv2-tail head needs flattened block activations "
                     "(mmp-embed --layer features.K:flat, K < 18)", ds->name, layer);
            return -1;
        }
        if (c->from >= 0 && c->from != k) {
            mmp_errf(err, errlen, "%s: the stream holds features.%d activations (embed.layer), --from says features.%d", ds->name, k, c->from);
            return -1;
        }
        c->from = k;
    }
    if (c->from < 0) {
        mmp_errf(err, errlen, "%s: no embed.layer in the header: give --from features.K (the block whose output the stream holds)", ds->name);
        return -1;
    }
    if (c->in_h <= 0) {
        const char *sz = mmp_meta_get(&ds->hdr.meta, "embed.size");
        long long h, w;
        if (sz && sscanf(sz, "%lldx%lld", &h, &w) == 2 && h > 0 && w > 0) {
            c->in_h = mmp_mnv2_spatial(h, c->from);
            c->in_w = mmp_mnv2_spatial(w, c->from);
        } else {
            /* square activations: D = C*s*s with C from the backbone */
            mmp_safetensors bb;
            char e2[512];
            if (mmp_st_open(&bb, c->backbone, e2, sizeof e2)) { mmp_errf(err, errlen, "--backbone: %s", e2); return -1; }
            int64_t C0 = mmp_tail_first_cin(&bb, c->from + 1);
            mmp_st_close(&bb);
            int64_t s = C0 > 0 ? (int64_t)llround(sqrt((double)ds->dim / (double)C0)) : 0;
            if (C0 <= 0 || s < 1 || C0 * s * s != ds->dim) {
                mmp_errf(err, errlen, "%s: embed.size unknown (\"%s\") and %lld values are not [%lld,s,s]: give --in-hw HxW", ds->name,
                         sz ? sz : "", (long long)ds->dim, (long long)C0);
                return -1;
            }
            c->in_h = c->in_w = s;
        }
    }
    return 0;
}

/* resnet-tail: the input layer (layerL[.i]) and size from the stream header
 * (embed.layer = "layer3:flat", embed.size = "HxW") unless given. */
static int resolve_resnet_input(mmp_train_cfg *c, const mmp_dataset *ds, char *err, size_t errlen) {
    if (!c->backbone[0]) {
        mmp_errf(err, errlen, "--head resnet-tail needs --backbone FILE.safetensors (the pretrained torchvision ResNet)");
        return -1;
    }
    const char *layer = mmp_meta_get(&ds->hdr.meta, "embed.layer");
    const char *arch = mmp_meta_get(&ds->hdr.meta, "embed.arch");
    if (arch && strncmp(arch, "resnet", 6)) {
        mmp_errf(err, errlen, "%s: features of %s (embed.arch); the resnet-tail head needs ResNet stage activations", ds->name, arch);
        return -1;
    }
    if (layer) {
        int L, i;
        if (mmp_resnet_parse_layer(layer, &L, &i) || !strstr(layer, ":flat") || L > 3 + (i >= 0)) {
            mmp_errf(err, errlen, "%s: embed.layer is \"%s\"; the resnet-tail head needs flattened stage activations "
                     "(mmp-embed --layer layer3:flat, layer1..layer3 or a block layerL.i)", ds->name, layer);
            return -1;
        }
        if (c->rn_layer > 0 && (c->rn_layer != L || c->rn_block != i)) {
            mmp_errf(err, errlen, "%s: the stream holds %s activations (embed.layer), --from says layer%d%s", ds->name, layer, c->rn_layer,
                     c->rn_block >= 0 ? ".i" : "");
            return -1;
        }
        c->rn_layer = L;
        c->rn_block = i;
    }
    if (c->rn_layer < 1) {
        mmp_errf(err, errlen, "%s: no embed.layer in the header: give --from layerL (the stage whose output the stream holds)", ds->name);
        return -1;
    }
    if (c->in_h <= 0) {
        const char *sz = mmp_meta_get(&ds->hdr.meta, "embed.size");
        long long h, w;
        if (!sz || sscanf(sz, "%lldx%lld", &h, &w) != 2 || h < 1 || w < 1) {
            mmp_errf(err, errlen, "%s: embed.size unknown (\"%s\"): give --in-hw HxW (the activations' spatial size)", ds->name, sz ? sz : "");
            return -1;
        }
        c->in_h = mmp_resnet_spatial(h, c->rn_layer);
        c->in_w = mmp_resnet_spatial(w, c->rn_layer);
    }
    return 0;
}

int mmp_trainer_init(mmp_trainer *tr, const mmp_train_cfg *cfg, const mmp_dataset *ds, char *err,
                     size_t errlen) {
    memset(tr, 0, sizeof *tr);
    tr->cfg = *cfg;
    mmp_train_cfg *c = &tr->cfg;
    resolve_defaults(c);
    tr->in_dim = ds->dim;
    tr->pair_dim = ds->dim2;
    tr->ncls = ds->ncls;
    tr->best_metric = -INFINITY;
    if (MMP_HEAD_IS_TAIL(c->head)) {
        if (c->head == MMP_HEAD_MNV2_TAIL ? resolve_tail_input(c, ds, err, errlen) : resolve_resnet_input(c, ds, err, errlen)) return -1;
        mmp_safetensors bb;
        char e2[512];
        if (mmp_st_open(&bb, c->backbone, e2, sizeof e2)) { mmp_errf(err, errlen, "--backbone: %s", e2); return -1; }
        int rc = setup_head(tr, &bb, 0, err, errlen);
        if (rc == 0) { /* the tail's input channels/size are now known: record them */
            c->in_h = tr->head.tail->H0;
            c->in_w = tr->head.tail->W0;
        }
        mmp_st_close(&bb);
        if (rc) return -1;
    } else if (setup_head(tr, NULL, 0, err, errlen)) return -1;
    if (c->loss == MMP_LOSS_CE)
        for (int64_t i = 0; i < ds->n; i++)
            if (ds->y[i] >= tr->ncls) {
                mmp_errf(err, errlen, "%s: record %lld: label %lld out of range", ds->name, (long long)i, (long long)ds->y[i]);
                return -1;
            }
    /* class weights */
    if (c->class_weights[0]) {
        if (c->loss != MMP_LOSS_CE) { mmp_errf(err, errlen, "--class-weights needs --loss ce"); return -1; }
        tr->class_w = mmp_xcalloc((size_t)tr->ncls, sizeof(float));
        if (!strcmp(c->class_weights, "balanced")) {
            /* sklearn compute_class_weight("balanced"): n / (C * count) */
            int64_t *cnt = mmp_xcalloc((size_t)tr->ncls, sizeof(int64_t));
            for (int64_t i = 0; i < ds->n; i++) cnt[ds->y[i]]++;
            for (int64_t k = 0; k < tr->ncls; k++)
                tr->class_w[k] = cnt[k] ? (float)((double)ds->n / ((double)tr->ncls * (double)cnt[k])) : 1.0f;
            free(cnt);
            /* freeze the numbers so a resumed run uses the same weights */
            char buf[1024] = "";
            for (int64_t k = 0; k < tr->ncls; k++)
                snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%.9g", k ? "," : "", tr->class_w[k]);
            if (strlen(buf) >= sizeof c->class_weights - 1) { mmp_errf(err, errlen, "too many classes for balanced weights"); return -1; }
            snprintf(c->class_weights, sizeof c->class_weights, "%s", buf);
        } else {
            const char *p = c->class_weights;
            int64_t k = 0;
            while (*p) {
                char *e;
                double w = strtod(p, &e);
                if (e == p || w < 0 || k >= tr->ncls) break;
                tr->class_w[k++] = (float)w;
                p = e;
                if (*p == ',') p++;
            }
            if (k != tr->ncls || *p) {
                mmp_errf(err, errlen, "--class-weights: expected %lld non-negative numbers (one per class) or 'balanced'", (long long)tr->ncls);
                return -1;
            }
        }
    }
    if (c->sched.total <= 0) c->sched.total = (int64_t)c->epochs * ((ds->n + c->batch - 1) / c->batch);
    if (c->standardize) {
        tr->mean = mmp_xmalloc(sizeof(float) * (size_t)tr->in_dim);
        tr->std = mmp_xmalloc(sizeof(float) * (size_t)tr->in_dim);
        mmp_standardize_fit(ds->x, ds->n, ds->dim, tr->mean, tr->std);
    }
    mmp_head_init_weights(&tr->head, c->seed);
    const char *prov = mmp_dataset_provenance(ds);
    tr->provenance = prov ? mmp_xstrdup(prov) : NULL;
    const char *tprov = mmp_meta_get(&ds->hdr.meta, "text_provenance");
    tr->text_provenance = tprov && (tr->cfg.head == MMP_HEAD_PAIR || MMP_HEAD_IS_FUSE(tr->cfg.head)) ? mmp_xstrdup(tprov) : NULL;
    if (ds->hdr.nclasses > 0) {
        tr->nclasses_named = ds->hdr.nclasses;
        tr->classes = mmp_xcalloc((size_t)ds->hdr.nclasses, sizeof(char *));
        for (int k = 0; k < ds->hdr.nclasses; k++) tr->classes[k] = mmp_xstrdup(ds->hdr.classes[k]);
    }
    snprintf(tr->feature, sizeof tr->feature, "%s", c->feature);
    snprintf(tr->pair_field, sizeof tr->pair_field, "%s", c->pair_field);
    return 0;
}

void mmp_trainer_free(mmp_trainer *tr) {
    mmp_head_free(&tr->head);
    free(tr->mean); free(tr->std); free(tr->class_w); free(tr->provenance); free(tr->text_provenance);
    for (int k = 0; k < tr->nclasses_named; k++) free(tr->classes[k]);
    free(tr->classes);
    free(tr->bx); free(tr->bx2); free(tr->bt); free(tr->out); free(tr->dout);
    free(tr->za); free(tr->zb); free(tr->dza); free(tr->dzb); free(tr->by);
    for (int k = 0; k < 3; k++) free(tr->ti[k]);
    memset(tr, 0, sizeof *tr);
}

int mmp_trainer_check_data(const mmp_trainer *tr, const mmp_dataset *ds, int allow_mixed,
                           char *err, size_t errlen) {
    if (ds->dim != tr->in_dim) {
        mmp_errf(err, errlen, "%s: \"%s\" has %lld values, the model expects %lld", ds->name, tr->feature,
               (long long)ds->dim, (long long)tr->in_dim);
        return -1;
    }
    if ((tr->cfg.head == MMP_HEAD_PAIR || MMP_HEAD_IS_FUSE(tr->cfg.head)) && ds->dim2 != tr->pair_dim) {
        mmp_errf(err, errlen, "%s: \"%s\" has %lld values, the model expects %lld", ds->name, tr->pair_field,
               (long long)ds->dim2, (long long)tr->pair_dim);
        return -1;
    }
    if (tr->cfg.head != MMP_HEAD_PAIR) {
        if (ds->hdr.nclasses > 0 && ds->hdr.nclasses != tr->ncls) {
            mmp_errf(err, errlen, "%s: %d classes in the header, the model has %lld", ds->name,
                   ds->hdr.nclasses, (long long)tr->ncls);
            return -1;
        }
        if (ds->hdr.nclasses > 0 && tr->nclasses_named == ds->hdr.nclasses)
            for (int k = 0; k < tr->nclasses_named; k++)
                if (strcmp(tr->classes[k], ds->hdr.classes[k])) {
                    mmp_errf(err, errlen, "%s: class %d is \"%s\" in the stream but \"%s\" in the model", ds->name, k,
                           ds->hdr.classes[k], tr->classes[k]);
                    return -1;
                }
        if (tr->cfg.loss == MMP_LOSS_CE)
            for (int64_t i = 0; i < ds->n; i++)
                if (ds->y[i] >= tr->ncls) {
                    mmp_errf(err, errlen, "%s: record %lld: label %lld out of range (%lld classes)", ds->name,
                           (long long)i, (long long)ds->y[i], (long long)tr->ncls);
                    return -1;
                }
        if (tr->cfg.loss == MMP_LOSS_BCE && ds->ncls != tr->ncls) {
            mmp_errf(err, errlen, "%s: %lld targets per record, the model has %lld classes", ds->name,
                   (long long)ds->ncls, (long long)tr->ncls);
            return -1;
        }
    }
    const char *p = mmp_dataset_provenance(ds);
    if (!mmp_train_provenance_compatible(tr->provenance, p) && !allow_mixed) {
        mmp_errf(err, errlen, "%s: features of another provenance: model trained on \"%s\", stream has \"%s\" (--allow-mixed to override)",
               ds->name, tr->provenance, p);
        return -1;
    }
    return 0;
}

void mmp_trainer_standardize(const mmp_trainer *tr, mmp_dataset *ds) {
    if (tr->mean) mmp_standardize_apply(ds->x, ds->n, ds->dim, tr->mean, tr->std);
}

/* rows idx[0..m) of ds into the batch buffers */
static void gather(mmp_trainer *tr, const mmp_dataset *ds, const int64_t *idx, int64_t m) {
    for (int64_t b = 0; b < m; b++) {
        int64_t r = idx[b];
        memcpy(tr->bx + b * tr->in_dim, ds->x + r * ds->dim, sizeof(float) * (size_t)ds->dim);
        if (ds->x2 && tr->pair_dim) memcpy(tr->bx2 + b * tr->pair_dim, ds->x2 + r * ds->dim2, sizeof(float) * (size_t)ds->dim2);
        if (ds->t) memcpy(tr->bt + b * tr->ncls, ds->t + r * ds->ncls, sizeof(float) * (size_t)ds->ncls);
        tr->by[b] = ds->y[r];
    }
}

/* forward + loss (+ gradients when grad) on the gathered batch */
static double batch_loss(mmp_trainer *tr, int64_t m, int grad, uint64_t *drng) {
    mmp_train_cfg *c = &tr->cfg;
    mmp_head *h = &tr->head;
    double l;
    if (MMP_HEAD_IS_FUSE(h->kind)) {
        mmp_head_fuse_forward(h, tr->bx, tr->bx2, m, NULL, tr->out);
        if (c->loss == MMP_LOSS_CE)
            l = mmp_ce_loss(tr->out, tr->by, m, tr->ncls, tr->class_w, c->label_smoothing, grad ? tr->dout : NULL);
        else
            l = mmp_bce_logits_loss(tr->out, tr->bt, m, tr->ncls, grad ? tr->dout : NULL);
        if (grad) mmp_head_fuse_backward(h, tr->bx, tr->bx2, m, tr->dout);
        return l;
    }
    if (h->kind != MMP_HEAD_PAIR) {
        mmp_head_forward(h, tr->bx, m, grad, drng, tr->out);
        if (c->loss == MMP_LOSS_CE)
            l = mmp_ce_loss(tr->out, tr->by, m, tr->ncls, tr->class_w, c->label_smoothing, grad ? tr->dout : NULL);
        else
            l = mmp_bce_logits_loss(tr->out, tr->bt, m, tr->ncls, grad ? tr->dout : NULL);
        if (grad) mmp_head_backward(h, tr->bx, m, tr->dout);
        return l;
    }
    int64_t E = h->out_dim;
    mmp_head_pair_forward(h, tr->bx, tr->bx2, m, tr->za, tr->zb);
    if (c->loss == MMP_LOSS_CONTRASTIVE) {
        mmp_param *ls = &h->params[2];
        l = mmp_clip_loss(tr->za, tr->zb, m, E, ls->w[0], grad ? tr->dza : NULL, grad ? tr->dzb : NULL,
                          grad ? ls->g : NULL);
    } else {
        int64_t T = mmp_triplet_mine(tr->za, tr->zb, m, E, c->mining_hard, tr->ti[0], tr->ti[1], tr->ti[2]);
        if (grad) {
            memset(tr->dza, 0, sizeof(float) * (size_t)(m * E));
            memset(tr->dzb, 0, sizeof(float) * (size_t)(m * E));
        }
        l = mmp_triplet_loss(tr->za, tr->zb, tr->zb, tr->ti[0], tr->ti[1], tr->ti[2], T, E, c->margin,
                             grad ? tr->dza : NULL, grad ? tr->dzb : NULL, grad ? tr->dzb : NULL);
    }
    if (grad) mmp_head_pair_backward(h, tr->bx, tr->bx2, m, tr->dza, tr->dzb);
    return l;
}

double mmp_trainer_epoch(mmp_trainer *tr, const mmp_dataset *ds, FILE *log, int log_every) {
    mmp_train_cfg *c = &tr->cfg;
    int64_t n = ds->n, B = c->batch;
    grow_batch(tr, B);
    int64_t *perm = mmp_xmalloc(sizeof(int64_t) * (size_t)n);
    uint64_t rng = mmp_rng_derive(c->seed, 0x5348554646ULL /* SHUFF */, (uint64_t)tr->epoch);
    mmp_rng_permutation(&rng, perm, n);
    int pairloss = tr->head.kind == MMP_HEAD_PAIR;
    double sum = 0;
    int64_t counted = 0;
    for (int64_t s = 0; s < n; s += B) {
        int64_t m = n - s < B ? n - s : B;
        if (pairloss && m < 2) continue; /* no in-batch negatives */
        gather(tr, ds, perm + s, m);
        uint64_t drng = mmp_rng_derive(c->seed, 0x44524F50ULL /* DROP */, (uint64_t)tr->step);
        double l = batch_loss(tr, m, 1, &drng);
        if (c->clip > 0) mmp_clip_grad_norm(tr->head.params, tr->head.np, c->clip);
        double lr = mmp_sched_lr(&c->sched, tr->step);
        mmp_optim_step(&c->opt, tr->head.params, tr->head.np, tr->step, lr);
        tr->step++;
        if (tr->head.has_scale) {
            float *ls = tr->head.params[2].w;
            if (*ls < 0) *ls = 0;
            if (*ls > (float)LOGIT_SCALE_MAX) *ls = (float)LOGIT_SCALE_MAX;
        }
        sum += l * (double)m;
        counted += m;
        if (log && log_every > 0 && tr->step % log_every == 0)
            fprintf(log, "{\"step\":%lld,\"epoch\":%d,\"loss\":%.9g,\"lr\":%.9g}\n", (long long)tr->step,
                    tr->epoch + 1, l, lr);
    }
    free(perm);
    tr->epoch++;
    return counted ? sum / (double)counted : NAN;
}

void mmp_trainer_evaluate(mmp_trainer *tr, const mmp_dataset *ds, double *loss, double *metric) {
    mmp_train_cfg *c = &tr->cfg;
    int64_t n = ds->n, B = c->batch;
    grow_batch(tr, B);
    int64_t *idx = mmp_xmalloc(sizeof(int64_t) * (size_t)B);
    double num = 0, den = 0;
    int64_t correct = 0;
    int pairloss = tr->head.kind == MMP_HEAD_PAIR;
    float *pa = NULL, *pb = NULL;
    int64_t E = tr->head.out_dim;
    if (pairloss) {
        pa = mmp_xmalloc(sizeof(float) * (size_t)(n * E));
        pb = mmp_xmalloc(sizeof(float) * (size_t)(n * E));
    }
    for (int64_t s = 0; s < n; s += B) {
        int64_t m = n - s < B ? n - s : B;
        for (int64_t k = 0; k < m; k++) idx[k] = s + k;
        gather(tr, ds, idx, m);
        if (pairloss) {
            if (m >= 2) {
                double l = batch_loss(tr, m, 0, NULL);
                num += l * (double)m;
                den += (double)m;
            } else {
                mmp_head_pair_forward(&tr->head, tr->bx, tr->bx2, m, tr->za, tr->zb);
            }
            memcpy(pa + s * E, tr->za, sizeof(float) * (size_t)(m * E));
            memcpy(pb + s * E, tr->zb, sizeof(float) * (size_t)(m * E));
            continue;
        }
        double l = batch_loss(tr, m, 0, NULL);
        double w = 0;
        if (c->loss == MMP_LOSS_CE)
            for (int64_t k = 0; k < m; k++) w += tr->class_w ? tr->class_w[tr->by[k]] : 1.0;
        else
            w = (double)m;
        num += l * w;
        den += w;
        for (int64_t k = 0; k < m; k++) {
            const float *o = tr->out + k * tr->ncls;
            if (c->loss == MMP_LOSS_CE) {
                int64_t best = 0;
                for (int64_t j = 1; j < tr->ncls; j++)
                    if (o[j] > o[best]) best = j;
                correct += best == tr->by[k];
            } else {
                int ok = 1;
                for (int64_t j = 0; j < tr->ncls; j++) ok &= (o[j] > 0) == (tr->bt[k * tr->ncls + j] > 0.5f);
                correct += ok;
            }
        }
    }
    *loss = den > 0 ? num / den : NAN;
    if (pairloss) {
        int ks[1] = {1};
        double a2b, b2a;
        mmp_retrieval_recall(pa, pb, n, E, ks, 1, &a2b, &b2a);
        *metric = (a2b + b2a) / 2;
        free(pa);
        free(pb);
    } else {
        *metric = (double)correct / (double)n;
    }
    free(idx);
}

void mmp_trainer_predict(mmp_trainer *tr, const float *x, int64_t N, float *logits) {
    mmp_head_forward(&tr->head, x, N, 0, NULL, logits);
}

void mmp_l2_normalize_rows(float *x, int64_t N, int64_t E) {
    for (int64_t i = 0; i < N; i++) {
        float *r = x + i * E;
        double s = 0;
        for (int64_t k = 0; k < E; k++) s += (double)r[k] * r[k];
        double d = sqrt(s);
        if (d < 1e-12) d = 1e-12;
        for (int64_t k = 0; k < E; k++) r[k] = (float)(r[k] / d);
    }
}

void mmp_trainer_infer(mmp_trainer *tr, float *x, const float *x2, int64_t N, const float *prompts,
                       int64_t C, float *logits, float *za, float *zb) {
    if (MMP_HEAD_IS_FUSE(tr->head.kind)) {
        if (!x2) mmp_die("the %s head needs both inputs", mmp_head_kind_name(tr->head.kind));
        mmp_trainer_infer_fuse(tr, x, x2, N, NULL, logits);
        return;
    }
    if (tr->mean) mmp_standardize_apply(x, N, tr->in_dim, tr->mean, tr->std);
    if (tr->head.kind != MMP_HEAD_PAIR) {
        mmp_head_forward(&tr->head, x, N, 0, NULL, logits);
        return;
    }
    int64_t E = tr->head.out_dim;
    mmp_head_pair_forward(&tr->head, x, x2, N, za, x2 ? zb : NULL);
    mmp_l2_normalize_rows(za, N, E);
    if (x2) mmp_l2_normalize_rows(zb, N, E);
    if (prompts) {
        double scale = tr->head.has_scale ? exp((double)tr->head.params[2].w[0]) : 1.0;
        for (int64_t k = 0; k < N; k++)
            for (int64_t c = 0; c < C; c++) {
                double s = 0;
                for (int64_t e = 0; e < E; e++) s += (double)za[k * E + e] * prompts[c * E + e];
                logits[k * C + c] = (float)(scale * s);
            }
    }
}

void mmp_trainer_infer_fuse(mmp_trainer *tr, const float *x, const float *x2, int64_t N, float *fused,
                            float *logits) {
    /* in blocks of mmp-fuse's batch: sgemm's rounding can depend on the row count */
    const int64_t R = MMP_TRAIN_FUSE_ROWS, F = tr->head.fuse_dim, C = tr->head.out_dim;
    for (int64_t s = 0; s < N; s += R) {
        int64_t m = N - s < R ? N - s : R;
        mmp_head_fuse_forward(&tr->head, x + s * tr->in_dim, x2 + s * tr->pair_dim, m, fused ? fused + s * F : NULL,
                              logits + s * C);
    }
}

int mmp_trainer_prompts(mmp_trainer *tr, const float *emb, const int64_t *labels, int64_t n, int64_t C,
                        float *out, char *err, size_t errlen) {
    int64_t E = tr->head.out_dim;
    float *proj = mmp_xmalloc(sizeof(float) * (size_t)(n * E));
    int64_t *cnt = mmp_xcalloc((size_t)(C > 0 ? C : 1), sizeof(int64_t));
    int ret = -1;
    mmp_head_pair_forward(&tr->head, NULL, emb, n, NULL, proj);
    mmp_l2_normalize_rows(proj, n, E);
    memset(out, 0, sizeof(float) * (size_t)(C * E));
    for (int64_t i = 0; i < n; i++) {
        int64_t c = labels ? labels[i] : i;
        if (c < 0 || c >= C) {
            mmp_errf(err, errlen, "prompt %lld: class %lld out of range (%lld classes)", (long long)i, (long long)c, (long long)C);
            goto out;
        }
        for (int64_t k = 0; k < E; k++) out[c * E + k] += proj[i * E + k];
        cnt[c]++;
    }
    for (int64_t c = 0; c < C; c++)
        if (!cnt[c]) {
            mmp_errf(err, errlen, "no prompt for class %lld", (long long)c);
            goto out;
        }
    mmp_l2_normalize_rows(out, C, E);
    ret = 0;
out:
    free(proj);
    free(cnt);
    return ret;
}

int mmp_trainer_save(const mmp_trainer *tr, const char *path, char *err, size_t errlen) {
    mmp_st_writer w;
    mmp_st_writer_init(&w);
    const mmp_head *h = &tr->head;
    for (int i = 0; i < h->np; i++) {
        const mmp_param *p = &h->params[i];
        mmp_st_writer_add_f32(&w, p->name, p->w, p->ndim, p->shape);
    }
    if (h->tail) mmp_tail_save_buffers(h->tail, &w); /* running_mean/var: the fine-tuned model is complete */
    if (tr->mean) {
        int64_t sh[1] = {tr->in_dim};
        mmp_st_writer_add_f32(&w, "standardize.mean", tr->mean, 1, sh);
        mmp_st_writer_add_f32(&w, "standardize.std", tr->std, 1, sh);
    }
    for (int i = 0; i < h->np; i++) {
        const mmp_param *p = &h->params[i];
        float *st[2] = {p->s1, p->s2};
        for (int k = 0; k < 2; k++) {
            const char *sn = mmp_optim_state_name(&tr->cfg.opt, k);
            if (!sn || !st[k]) continue;
            char name[160];
            snprintf(name, sizeof name, "optim.%s.%s", p->name, sn);
            mmp_st_writer_add_f32(&w, name, st[k], p->ndim, p->shape);
        }
    }
    mmp_meta *m = &w.meta;
    mmp_meta_set(m, "format", "mmpipe-head");
    mmp_train_cfg_to_meta(&tr->cfg, m);
    mset(m, "in_dim", "%lld", (long long)tr->in_dim);
    mset(m, "pair_dim", "%lld", (long long)tr->pair_dim);
    mset(m, "num_classes", "%lld", (long long)tr->ncls);
    mset(m, "step", "%lld", (long long)tr->step);
    mset(m, "epoch", "%d", tr->epoch);
    mset(m, "best_metric", "%.17g", tr->best_metric);
    mset(m, "best_epoch", "%d", tr->best_epoch);
    mset(m, "bad_epochs", "%d", tr->bad_epochs);
    if (tr->provenance) mmp_meta_set(m, "provenance", tr->provenance);
    if (tr->text_provenance) mmp_meta_set(m, "text_provenance", tr->text_provenance);
    if (MMP_HEAD_IS_FUSE(h->kind)) { /* lib/fuse's checkpoint keys (mmp-fuse --checkpoint) */
        mmp_meta_set(m, "fuse.mode", h->kind == MMP_HEAD_GATED ? "gated" : "attention");
        if (h->kind == MMP_HEAD_ATTENTION) mset(m, "fuse.heads", "%d", h->heads);
    }
    if (tr->nclasses_named) {
        char *js = json_names(tr->nclasses_named, tr->classes);
        mmp_meta_set(m, "classes", js);
        free(js);
    }
    mmp_meta_set(m, "mmpipe_version", MMP_VERSION);
    int rc = mmp_st_writer_write(&w, path, err, errlen);
    mmp_st_writer_free(&w);
    return rc;
}

/* A state dict saved from PyTorch (no mmpipe metadata): the head from the
 * tensor names and shapes, defaults for the rest, the file's own
 * __metadata__ (provenance, classes ...) kept. 0 or -1 (unknown layout). */
static int st2(const mmp_safetensors *st, const char *name, int64_t *a, int64_t *b) {
    const mmp_tensor *t = mmp_st_get(st, name);
    if (!t || t->ndim != 2) return 0;
    *a = t->shape[0];
    *b = t->shape[1];
    return 1;
}

static int infer_state_dict(const mmp_safetensors *st, mmp_meta *im) {
    mmp_meta_copy(im, &st->meta);
    int64_t a, b, a2, b2;
    if (st2(st, "weight", &a, &b)) {
        mset(im, "head", "linear");
        mset(im, "in_dim", "%lld", (long long)b);
        mset(im, "num_classes", "%lld", (long long)a);
        mset(im, "pair_dim", "0");
    } else if (st2(st, "layers.0.weight", &a, &b)) {
        char hid[256] = "", name[64];
        int64_t in = b, prev = a, L = 1;
        for (;; L++) {
            snprintf(name, sizeof name, "layers.%lld.weight", (long long)(3 * L));
            if (!st2(st, name, &a2, &b2)) break;
            if (b2 != prev) return -1;
            snprintf(hid + strlen(hid), sizeof hid - strlen(hid), "%s%lld", L > 1 ? "," : "", (long long)prev);
            prev = a2;
        }
        if (L < 2) return -1;
        mset(im, "head", "mlp");
        mset(im, "hidden", "%s", hid);
        mset(im, "in_dim", "%lld", (long long)in);
        mset(im, "num_classes", "%lld", (long long)prev);
        mset(im, "pair_dim", "0");
    } else if (st2(st, "classifier.weight", &a, &b) && (mmp_st_get(st, "gate.weight") || mmp_st_get(st, "attn.in_proj_weight")) &&
               st2(st, "proj_a.weight", &a2, &b2)) {
        /* a fusion head (FusionClassifier of tests/fixtures/gen_train_fuse.py) */
        int att = mmp_st_get(st, "attn.in_proj_weight") != NULL;
        int64_t db_, dd;
        if (!st2(st, "proj_b.weight", &dd, &db_) || dd != a2 || b != a2) return -1;
        if (att && !mmp_meta_get(&st->meta, "fuse.heads")) return -1;
        mset(im, "head", "%s", att ? "attention" : "gated");
        mset(im, "fuse_dim", "%lld", (long long)a2);
        if (att) mset(im, "heads", "%s", mmp_meta_get(&st->meta, "fuse.heads"));
        mset(im, "in_dim", "%lld", (long long)b2);
        mset(im, "pair_dim", "%lld", (long long)db_);
        mset(im, "num_classes", "%lld", (long long)a);
    } else if (st2(st, "image_projection.weight", &a, &b) && st2(st, "text_projection.weight", &a2, &b2) && a == a2) {
        mset(im, "head", "pair");
        mset(im, "loss", "%s", mmp_st_get(st, "logit_scale") ? "contrastive" : "triplet");
        mset(im, "proj_dim", "%lld", (long long)a);
        mset(im, "in_dim", "%lld", (long long)b);
        mset(im, "pair_dim", "%lld", (long long)b2);
        mset(im, "num_classes", "0");
    } else {
        return -1;
    }
    mset(im, "standardize", "%d", mmp_st_get(st, "standardize.mean") != NULL);
    const char *zero[] = {"step", "epoch", "best_epoch", "bad_epochs"};
    for (int i = 0; i < 4; i++)
        if (!mmp_meta_get(im, zero[i])) mset(im, zero[i], "0");
    return 0;
}

static const char *arch_keys[] = {"head", "hidden", "proj_dim", "fuse_dim", "heads", "feature", "pair_field", "labels_field",
                                  "from", "in_hw", NULL};

int mmp_trainer_load(mmp_trainer *tr, const char *path, const mmp_meta *ovr, char *err, size_t errlen) {
    memset(tr, 0, sizeof *tr);
    mmp_safetensors st;
    char e2[512];
    if (mmp_st_open(&st, path, e2, sizeof e2)) {
        mmp_errf(err, errlen, "%s", e2);
        return -1;
    }
    int ret = -1;
    const mmp_meta *m = &st.meta;
    mmp_meta im; /* inferred configuration of a plain torch state dict */
    mmp_meta_init(&im);
    const char *fmt = mmp_meta_get(m, "format");
    if (!fmt || strcmp(fmt, "mmpipe-head")) { /* e.g. safetensors.torch.save_file's {"format": "pt"} */
        if (infer_state_dict(&st, &im)) {
            mmp_errf(err, errlen, "%s: neither an mmp-train-step checkpoint (format=mmpipe-head) nor a torch state dict "
                   "of a known head (weight+bias; layers.0/3/6...; image_projection+text_projection; "
                   "proj_a/proj_b/gate or attn + classifier)", path);
            goto out;
        }
        m = &im;
    }
    mmp_train_cfg_defaults(&tr->cfg);
    if (mmp_train_cfg_from_meta(&tr->cfg, m, e2, sizeof e2)) {
        mmp_errf(err, errlen, "%s: %s", path, e2);
        goto out;
    }
    if (ovr)
        for (int i = 0; i < ovr->n; i++) {
            const char *k = ovr->keys[i], *v = ovr->vals[i];
            for (int a = 0; arch_keys[a]; a++) {
                const char *cur = mmp_meta_get(m, k);
                if (!strcmp(k, arch_keys[a]) && cur && strcmp(cur, v) && !(!strcmp(k, "head") && !strcmp(v, "auto"))) {
                    mmp_errf(err, errlen, "%s: the checkpoint has %s=%s; cannot change it to %s", path, k, cur, v);
                    goto out;
                }
            }
            if (mmp_train_cfg_set(&tr->cfg, k, v, e2, sizeof e2)) {
                mmp_errf(err, errlen, "%s", e2);
                goto out;
            }
        }
    resolve_defaults(&tr->cfg);
    int64_t v64;
    const char *s;
#define MINT(key, dst, lo, hi) do { s = mmp_meta_get(m, key); if (!s || pint(s, lo, hi, &v64)) { mmp_errf(err, errlen, "%s: bad or missing metadata %s", path, key); goto out; } dst = v64; } while (0)
    MINT("in_dim", tr->in_dim, 1, 1 << 24);
    MINT("pair_dim", tr->pair_dim, 0, 1 << 24);
    MINT("num_classes", tr->ncls, 0, 1 << 24);
    MINT("step", tr->step, 0, INT64_MAX / 2);
    MINT("epoch", tr->epoch, 0, 1 << 30);
    MINT("best_epoch", tr->best_epoch, 0, 1 << 30);
    MINT("bad_epochs", tr->bad_epochs, 0, 1 << 30);
#undef MINT
    s = mmp_meta_get(m, "best_metric");
    tr->best_metric = s ? strtod(s, NULL) : -INFINITY;
    if (setup_head(tr, &st, 1, err, errlen)) goto out;
    for (int i = 0; i < tr->head.np; i++) {
        mmp_param *p = &tr->head.params[i];
        const mmp_tensor *t = mmp_st_get(&st, p->name);
        char want[64], got[64];
        mmp_shape_str(p->ndim, p->shape, want, sizeof want);
        if (!t) { mmp_errf(err, errlen, "%s: tensor %s missing", path, p->name); goto out; }
        int shape_ok = t->ndim == p->ndim && is_float(t->dtype);
        for (int d = 0; shape_ok && d < p->ndim; d++) shape_ok = t->shape[d] == p->shape[d];
        if (!shape_ok) {
            mmp_shape_str(t->ndim, t->shape, got, sizeof got);
            mmp_errf(err, errlen, "%s: tensor %s has shape %s, expected %s", path, p->name, got, want);
            goto out;
        }
        mmp_tensor_to_f32(t, p->w);
        const char *sn[2] = {mmp_optim_state_name(&tr->cfg.opt, 0), mmp_optim_state_name(&tr->cfg.opt, 1)};
        float **dst[2] = {&p->s1, &p->s2};
        for (int k = 0; k < 2; k++) {
            if (!sn[k]) continue;
            char name[160];
            snprintf(name, sizeof name, "optim.%s.%s", p->name, sn[k]);
            const mmp_tensor *o = mmp_st_get(&st, name);
            if (!o) continue;
            if ((size_t)mmp_numel(o->ndim, o->shape) != p->n || o->dtype != MMP_F32) {
                mmp_errf(err, errlen, "%s: tensor %s has the wrong shape", path, name);
                goto out;
            }
            *dst[k] = mmp_xmalloc(sizeof(float) * (p->n ? p->n : 1));
            memcpy(*dst[k], o->data, sizeof(float) * p->n);
        }
    }
    const mmp_tensor *mt = mmp_st_get(&st, "standardize.mean"), *sd = mmp_st_get(&st, "standardize.std");
    if (mt || sd) {
        if (!mt || !sd || mt->dtype != MMP_F32 || sd->dtype != MMP_F32 || mmp_numel(mt->ndim, mt->shape) != tr->in_dim ||
            mmp_numel(sd->ndim, sd->shape) != tr->in_dim) {
            mmp_errf(err, errlen, "%s: standardize.mean/std must both be f32 [%lld]", path, (long long)tr->in_dim);
            goto out;
        }
        tr->mean = mmp_xmalloc(sizeof(float) * (size_t)tr->in_dim);
        tr->std = mmp_xmalloc(sizeof(float) * (size_t)tr->in_dim);
        memcpy(tr->mean, mt->data, sizeof(float) * (size_t)tr->in_dim);
        memcpy(tr->std, sd->data, sizeof(float) * (size_t)tr->in_dim);
        tr->cfg.standardize = 1;
    } else {
        tr->cfg.standardize = 0;
    }
    if (tr->cfg.class_weights[0]) {
        tr->class_w = mmp_xcalloc((size_t)tr->ncls, sizeof(float));
        const char *p = tr->cfg.class_weights;
        for (int64_t k = 0; k < tr->ncls && *p; k++) {
            char *e;
            tr->class_w[k] = strtof(p, &e);
            p = *e == ',' ? e + 1 : e;
        }
    }
    s = mmp_meta_get(m, "provenance");
    tr->provenance = s ? mmp_xstrdup(s) : NULL;
    s = mmp_meta_get(m, "text_provenance");
    tr->text_provenance = s ? mmp_xstrdup(s) : NULL;
    parse_json_names(mmp_meta_get(m, "classes"), &tr->nclasses_named, &tr->classes);
    snprintf(tr->feature, sizeof tr->feature, "%s", tr->cfg.feature);
    snprintf(tr->pair_field, sizeof tr->pair_field, "%s", tr->cfg.pair_field);
    ret = 0;
out:
    mmp_meta_free(&im);
    mmp_st_close(&st);
    if (ret) mmp_trainer_free(tr);
    return ret;
}
