/* train/config.c: the configuration of mmp-train-step. One table entry per
 * option feeds the command line (mmp-train-step includes the table), the
 * defaults, the checkpoint's __metadata__ (written in table order) and
 * reading a configuration back from a checkpoint (--init, --resume,
 * mmp-eval). */
#include "train/train.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "train/resnet_tail.h"
#include "train/tx_head.h"

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
/* values that need more than the table's types                        */
/* ------------------------------------------------------------------ */

#define CFG(t) ((mmp_train_cfg *)(t))
#define CCFG(t) ((const mmp_train_cfg *)(t))

static int set_head(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    if (!strcmp(v, "auto")) CFG(t)->head = (mmp_head_kind)-1;
    else if (mmp_head_kind_parse(v, &CFG(t)->head)) return -1;
    return 0;
}
static int fmt_head(const mmp_option *o, const void *t, char *buf, size_t n) {
    snprintf(buf, n, "%s", (int)CCFG(t)->head == -1 ? "auto" : mmp_head_kind_name(CCFG(t)->head));
    return 1;
}

static int set_hidden(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    mmp_train_cfg *c = t;
    int n = 0;
    const char *p = v;
    if (!*p) { c->nhidden = 0; return 0; }
    while (*p) {
        char *e;
        long long h = strtoll(p, &e, 10);
        if (e == p || h < 1 || h > (1 << 24) || n >= MMP_HEAD_MAX_HIDDEN) return -1;
        c->hidden[n++] = h;
        p = e;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    c->nhidden = n;
    if ((int)c->head == -1) c->head = MMP_HEAD_MLP;
    return 0;
}
static int fmt_hidden(const mmp_option *o, const void *t, char *buf, size_t n) {
    const mmp_train_cfg *c = t;
    buf[0] = 0;
    for (int i = 0; i < c->nhidden; i++) snprintf(buf + strlen(buf), n - strlen(buf), "%s%lld", i ? "," : "", (long long)c->hidden[i]);
    return 1;
}

static int set_loss(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    return mmp_loss_parse(v, &CFG(t)->loss);
}
static int fmt_loss(const mmp_option *o, const void *t, char *buf, size_t n) {
    snprintf(buf, n, "%s", mmp_loss_name(CCFG(t)->loss));
    return 1;
}

static int set_schedule(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    return mmp_sched_parse(v, &CFG(t)->sched.kind);
}
static int fmt_schedule(const mmp_option *o, const void *t, char *buf, size_t n) {
    snprintf(buf, n, "%s", mmp_sched_name(CCFG(t)->sched.kind));
    return 1;
}

/* step_size is recorded only when set */
static int fmt_positive(const mmp_option *o, const void *t, char *buf, size_t n) {
    if (*(const int64_t *)t <= 0) return 0;
    snprintf(buf, n, "%lld", (long long)*(const int64_t *)t);
    return 1;
}

/* the loop and augmentation keys appear in a checkpoint only when set:
 * the checkpoints of runs without them stay as they were */
static int fmt_int_set(const mmp_option *o, const void *t, char *buf, size_t n) {
    int v = *(const int *)t;
    if (v <= (o->min > 0 ? o->min : 0)) return 0;
    snprintf(buf, n, "%d", v);
    return 1;
}
/* not recorded (a way of computing the same result, as -j) */
static int fmt_never(const mmp_option *o, const void *t, char *buf, size_t n) {
    (void)o, (void)t, (void)buf, (void)n;
    return 0;
}
static int fmt_str_set(const mmp_option *o, const void *t, char *buf, size_t n) {
    if (!*(const char *)t) return 0;
    snprintf(buf, n, "%s", (const char *)t);
    return 1;
}
static int fmt_dbl_set(const mmp_option *o, const void *t, char *buf, size_t n) {
    if (!(*(const double *)t > 0)) return 0;
    snprintf(buf, n, "%.17g", *(const double *)t);
    return 1;
}

static int set_seed(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    char *e;
    errno = 0;
    unsigned long long s = strtoull(v, &e, 10);
    if (e == v || *e || errno || v[0] == '-') return -1;
    CFG(t)->seed = s;
    return 0;
}
static int fmt_seed(const mmp_option *o, const void *t, char *buf, size_t n) {
    snprintf(buf, n, "%llu", (unsigned long long)CCFG(t)->seed);
    return 1;
}

/* standardize: "auto" (-1), or a boolean; --standardize / --no-standardize */
static int set_standardize(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    int *s = t;
    if (!strcmp(v, "auto")) *s = -1;
    else if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "on")) *s = 1;
    else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "off")) *s = 0;
    else return -1;
    return 0;
}
static int fmt_standardize(const mmp_option *o, const void *t, char *buf, size_t n) {
    int s = *(const int *)t;
    snprintf(buf, n, "%s", s < 0 ? "auto" : s ? "1" : "0");
    return 1;
}

/* backbone, from, in_hw: recorded for the CNN-tail heads only */
static int set_backbone(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    mmp_train_cfg *c = t;
    if (strlen(v) >= sizeof c->backbone) return -1;
    snprintf(c->backbone, sizeof c->backbone, "%s", v);
    return 0;
}
static int fmt_backbone(const mmp_option *o, const void *t, char *buf, size_t n) {
    const mmp_train_cfg *c = t;
    if (!MMP_HEAD_IS_TAIL(c->head) && c->head != MMP_HEAD_TRANSFORMER && !MMP_HEAD_IS_VQA(c->head)) return 0;
    snprintf(buf, n, "%s", c->backbone);
    return 1;
}

static int set_from(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    /* "auto", "features.K" or "features.K:flat" (as mmp-embed --layer), or K; resnet-tail: layerL[.i][:flat] */
    mmp_train_cfg *c = t;
    const char *p = v;
    c->from_input = 0;
    if (!strcmp(v, "auto")) { c->from = -1; c->rn_layer = 0; c->rn_block = -1; return 0; }
    if (!strcmp(v, "input")) { c->from = -1; c->rn_layer = 0; c->rn_block = -1; c->from_input = 1; return 0; }
    if (!strncmp(v, "layer", 5)) {
        int L, i;
        if (mmp_resnet_parse_layer(v, &L, &i)) return -1;
        c->rn_layer = L;
        c->rn_block = i;
        return 0;
    }
    if (!strncmp(p, "features.", 9)) p += 9;
    char *e;
    errno = 0;
    long f = strtol(p, &e, 10);
    if (e == p || errno || f < 0 || f > 17 || (*e && strcmp(e, ":flat"))) return -1;
    c->from = (int)f;
    return 0;
}
static int fmt_from(const mmp_option *o, const void *t, char *buf, size_t n) {
    const mmp_train_cfg *c = t;
    if (MMP_HEAD_IS_TAIL(c->head) && c->from_input) snprintf(buf, n, "input");
    else if (c->head == MMP_HEAD_MNV2_TAIL && c->from >= 0) snprintf(buf, n, "features.%d", c->from);
    else if (c->head == MMP_HEAD_RESNET_TAIL && c->rn_layer > 0 && c->rn_block >= 0) snprintf(buf, n, "layer%d.%d", c->rn_layer, c->rn_block);
    else if (c->head == MMP_HEAD_RESNET_TAIL && c->rn_layer > 0) snprintf(buf, n, "layer%d", c->rn_layer);
    else return 0;
    return 1;
}

static int set_in_hw(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    mmp_train_cfg *c = t;
    if (!strcmp(v, "auto") || !*v) { c->in_h = c->in_w = 0; return 0; }
    long long a, b;
    char tail;
    if (sscanf(v, "%lldx%lld%c", &a, &b, &tail) != 2 || a < 1 || b < 1 || a > 4096 || b > 4096) return -1;
    c->in_h = a;
    c->in_w = b;
    return 0;
}
static int fmt_in_hw(const mmp_option *o, const void *t, char *buf, size_t n) {
    const mmp_train_cfg *c = t;
    if ((!MMP_HEAD_IS_TAIL(c->head) && !(c->head == MMP_HEAD_TRANSFORMER && c->modality == 0)) || c->in_h <= 0) return 0;
    snprintf(buf, n, "%lldx%lld", (long long)c->in_h, (long long)c->in_w);
    return 1;
}

int mmp_unfreeze_parse(const char *s, int *kind, int *n, char *err, size_t errlen) {
    *n = 0;
    if (!strcmp(s, "all")) *kind = MMP_UNFREEZE_ALL;
    else if (!strcmp(s, "head")) *kind = MMP_UNFREEZE_HEAD;
    else if (!strcmp(s, "norm") || !strcmp(s, "bn")) *kind = MMP_UNFREEZE_NORM;
    else if (!strcmp(s, "lora")) *kind = MMP_UNFREEZE_LORA;
    else if (!strncmp(s, "last:", 5)) {
        char *end;
        long v = strtol(s + 5, &end, 10);
        if (end == s + 5 || *end || v < 1 || v > 100000)
            return mmp_errf(err, errlen, "--unfreeze %s: N must be a positive number of blocks (last:N)", s);
        *kind = MMP_UNFREEZE_LAST;
        *n = (int)v;
    } else {
        return mmp_errf(err, errlen, "--unfreeze %s: expected head, last:N, all, norm (or bn) or lora", s);
    }
    return 0;
}

/* --unfreeze and the LoRA options (recorded when they apply: a CNN --from input, --head transformer) */
static int unfreeze_applies(const mmp_train_cfg *c) {
    return (MMP_HEAD_IS_TAIL(c->head) && c->from_input) || c->head == MMP_HEAD_TRANSFORMER || c->head == MMP_HEAD_CLIP ||
           c->head == MMP_HEAD_CAPTION;
}
static int set_unfreeze(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    mmp_train_cfg *c = t;
    if (strlen(v) >= sizeof c->unfreeze) return mmp_errf(err, errlen, "--unfreeze %s: too long", v);
    if (mmp_unfreeze_parse(v, &c->unfreeze_kind, &c->unfreeze_n, err, errlen)) return -1;
    snprintf(c->unfreeze, sizeof c->unfreeze, "%s", !strcmp(v, "bn") ? "norm" : v);
    return 0;
}
static int fmt_unfreeze(const mmp_option *o, const void *t, char *buf, size_t n) {
    const mmp_train_cfg *c = t;
    if (!unfreeze_applies(c)) return 0;
    snprintf(buf, n, "%s", c->unfreeze);
    return 1;
}
static int set_lora_rank(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    char *e;
    long r = strtol(v, &e, 10);
    if (e == v || *e || r < 1 || r > 4096) return mmp_errf(err, errlen, "--lora-rank %s: expected 1..4096", v);
    ((mmp_train_cfg *)t)->lora_rank = (int)r;
    return 0;
}
static int set_lora_real(double *dst, const char *what, double hi, const char *v, char *err, size_t errlen) {
    char *e;
    double x = strtod(v, &e);
    if (e == v || *e || !(x >= 0) || !(x < hi)) return mmp_errf(err, errlen, "--%s %s: expected a number in [0, %g)", what, v, hi);
    *dst = x;
    return 0;
}
static int set_lora_alpha(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    return set_lora_real(&((mmp_train_cfg *)t)->lora_alpha, "lora-alpha", 1e9, v, err, errlen);
}
static int set_lora_dropout(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    return set_lora_real(&((mmp_train_cfg *)t)->lora_dropout, "lora-dropout", 1, v, err, errlen);
}
static int set_lora_targets(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    mmp_train_cfg *c = t;
    if (strlen(v) >= sizeof c->lora_targets) return mmp_errf(err, errlen, "--lora-targets: too long");
    snprintf(c->lora_targets, sizeof c->lora_targets, "%s", v);
    return 0;
}
static int lora_applies(const mmp_train_cfg *c) {
    return (unfreeze_applies(c) && c->unfreeze_kind == MMP_UNFREEZE_LORA) || (MMP_HEAD_IS_VQA(c->head) && c->text_unfreeze == 1);
}
static int fmt_lora_rank(const mmp_option *o, const void *t, char *buf, size_t n) {
    return lora_applies(t) ? (snprintf(buf, n, "%d", ((const mmp_train_cfg *)t)->lora_rank), 1) : 0;
}
static int fmt_lora_alpha(const mmp_option *o, const void *t, char *buf, size_t n) {
    return lora_applies(t) ? (snprintf(buf, n, "%.17g", ((const mmp_train_cfg *)t)->lora_alpha), 1) : 0;
}
static int fmt_lora_dropout(const mmp_option *o, const void *t, char *buf, size_t n) {
    return lora_applies(t) ? (snprintf(buf, n, "%.17g", ((const mmp_train_cfg *)t)->lora_dropout), 1) : 0;
}
static int fmt_lora_targets(const mmp_option *o, const void *t, char *buf, size_t n) {
    return lora_applies(t) ? (snprintf(buf, n, "%s", ((const mmp_train_cfg *)t)->lora_targets), 1) : 0;
}

 /* freeze_bn: "auto" (-1) or a boolean; recorded for --from input only
  * (the tails on cached activations always freeze BN: their checkpoints stay as they were) */
static int set_freeze_bn(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    int *f = t;
    if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "on")) *f = 1;
    else if (!strcmp(v, "auto")) *f = -1;
    else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "off")) *f = 0;
    else return -1;
    return 0;
}
static int fmt_freeze_bn(const mmp_option *o, const void *t, char *buf, size_t n) {
    const mmp_train_cfg *c = (const void *)((const char *)t - offsetof(mmp_train_cfg, freeze_bn)); /* the flag's target */
    if (!MMP_HEAD_IS_TAIL(c->head) || !c->from_input) return 0;
    snprintf(buf, n, "%s", c->freeze_bn < 0 ? "auto" : c->freeze_bn ? "1" : "0");
    return 1;
}

/* input_mean, input_std: "a,b,c"; recorded for --from input only */
static int set_norm3(float *f, const char *v) {
    if (!strcmp(v, "auto") || !*v) { f[0] = f[1] = f[2] = 0; return 0; }
    float a[3];
    char tail;
    if (sscanf(v, "%f,%f,%f%c", &a[0], &a[1], &a[2], &tail) != 3) return -1;
    for (int k = 0; k < 3; k++)
        if (!isfinite(a[k])) return -1;
    memcpy(f, a, sizeof a);
    return 0;
}
static int set_in_mean(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    return set_norm3(((mmp_train_cfg *)t)->in_mean, v);
}
static int set_in_std(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    mmp_train_cfg *c = t;
    if (set_norm3(c->in_std, v)) return -1;
    if (c->in_std[0] != 0 && !(c->in_std[0] > 0 && c->in_std[1] > 0 && c->in_std[2] > 0)) return -1;
    return 0;
}
static int fmt_norm3(const mmp_train_cfg *c, const float *f, char *buf, size_t n) {
    int images = (MMP_HEAD_IS_TAIL(c->head) && c->from_input) || (c->head == MMP_HEAD_TRANSFORMER && c->modality == 0);
    if (!images || c->in_std[0] <= 0) return 0;
    snprintf(buf, n, "%.9g,%.9g,%.9g", f[0], f[1], f[2]);
    return 1;
}
static int fmt_in_mean(const mmp_option *o, const void *t, char *buf, size_t n) {
    const mmp_train_cfg *c = t;
    return fmt_norm3(c, c->in_mean, buf, n);
}
static int fmt_in_std(const mmp_option *o, const void *t, char *buf, size_t n) {
    const mmp_train_cfg *c = t;
    return fmt_norm3(c, c->in_std, buf, n);
}

/* transformer head: --modality, --max-length: recorded for it only */
static int set_modality(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    mmp_train_cfg *c = t;
    if (!strcmp(v, "auto")) c->modality = -1;
    else if (!strcmp(v, "image")) c->modality = 0;
    else if (!strcmp(v, "text")) c->modality = 1;
    else return -1;
    return 0;
}
static int fmt_modality(const mmp_option *o, const void *t, char *buf, size_t n) {
    const mmp_train_cfg *c = t;
    if (c->head != MMP_HEAD_TRANSFORMER) return 0;
    snprintf(buf, n, "%s", c->modality < 0 ? "auto" : c->modality ? "text" : "image");
    return 1;
}
static int fmt_tx_int(const mmp_train_cfg *c, int v, char *buf, size_t n) {
    if (c->head != MMP_HEAD_TRANSFORMER) return 0;
    snprintf(buf, n, "%d", v);
    return 1;
}
static int set_max_length(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    char *e;
    long x = strtol(v, &e, 10);
    if (!strcmp(v, "auto")) x = 0, e = "";
    if (e == v || *e || x < 0 || x > 1 << 20) return -1;
    ((mmp_train_cfg *)t)->max_length = (int)x;
    return 0;
}
static int fmt_max_length(const mmp_option *o, const void *t, char *buf, size_t n) {
    const mmp_train_cfg *c = t;
    if (MMP_HEAD_IS_VQA(c->head)) return snprintf(buf, n, "%d", c->max_length), 1;
    if (c->head == MMP_HEAD_CAPTION) return snprintf(buf, n, "%d", c->max_length), 1;
    return c->modality == 1 ? fmt_tx_int(c, c->max_length, buf, n) : 0;
}

/* VQA heads: --answers, --fuse-layers, --vqa-pos (recorded for them only) */
static int set_answers(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    char *e;
    long long x = strtoll(v, &e, 10);
    if (e == v || *e || x < 1 || x > 1 << 24) return mmp_errf(err, errlen, "--answers %s: expected 1..16777216", v);
    ((mmp_train_cfg *)t)->answers = x;
    return 0;
}
static int fmt_answers(const mmp_option *o, const void *t, char *buf, size_t n) {
    const mmp_train_cfg *c = t;
    return MMP_HEAD_IS_VQA(c->head) ? (snprintf(buf, n, "%lld", (long long)c->answers), 1) : 0;
}
static int set_fuse_layers(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    char *e;
    long x = strtol(v, &e, 10);
    if (e == v || *e || x < 0 || x > 64) return mmp_errf(err, errlen, "--fuse-layers %s: expected 0..64", v);
    ((mmp_train_cfg *)t)->fuse_layers = (int)x;
    return 0;
}
static int fmt_fuse_layers(const mmp_option *o, const void *t, char *buf, size_t n) {
    const mmp_train_cfg *c = t;
    return c->head == MMP_HEAD_VQA ? (snprintf(buf, n, "%d", c->fuse_layers), 1) : 0;
}
static int set_img_layers(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    char *e;
    long x = strtol(v, &e, 10);
    if (e == v || *e || x < 0 || x > 64) return mmp_errf(err, errlen, "--img-layers %s: expected 0..64", v);
    ((mmp_train_cfg *)t)->img_layers = (int)x;
    return 0;
}
static int fmt_img_layers(const mmp_option *o, const void *t, char *buf, size_t n) {
    const mmp_train_cfg *c = t;
    return c->head == MMP_HEAD_VQA ? (snprintf(buf, n, "%d", c->img_layers), 1) : 0;
}
static int set_vqa_pos(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    if (!strcmp(v, "grid")) ((mmp_train_cfg *)t)->vqa_pos = 1;
    else if (!strcmp(v, "none")) ((mmp_train_cfg *)t)->vqa_pos = 0;
    else return mmp_errf(err, errlen, "--vqa-pos %s: expected grid or none", v);
    return 0;
}
static int fmt_vqa_pos(const mmp_option *o, const void *t, char *buf, size_t n) {
    const mmp_train_cfg *c = t;
    return c->head == MMP_HEAD_VQA ? (snprintf(buf, n, "%s", c->vqa_pos ? "grid" : "none"), 1) : 0;
}

/* caption head: its keys are recorded for it only (t: the field; o->off its offset) */
static const mmp_train_cfg *field_cfg(const mmp_option *o, const void *t) {
    return (const mmp_train_cfg *)(const void *)((const char *)t - o->off);
}
static int fmt_cap_str(const mmp_option *o, const void *t, char *buf, size_t n) {
    if (field_cfg(o, t)->head != MMP_HEAD_CAPTION) return 0;
    snprintf(buf, n, "%s", (const char *)t);
    return 1;
}
static int fmt_cap_int(const mmp_option *o, const void *t, char *buf, size_t n) {
    if (field_cfg(o, t)->head != MMP_HEAD_CAPTION) return 0;
    snprintf(buf, n, "%d", *(const int *)t);
    return 1;
}
static int set_mapper(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    if (strcmp(v, "mlp") && strcmp(v, "transformer")) return mmp_errf(err, errlen, "--mapper %s: expected mlp or transformer", v);
    snprintf(CFG(t)->mapper, sizeof CFG(t)->mapper, "%s", v);
    return 0;
}
static int fmt_mapper(const mmp_option *o, const void *t, char *buf, size_t n) {
    if (CCFG(t)->head != MMP_HEAD_CAPTION) return 0;
    snprintf(buf, n, "%s", CCFG(t)->mapper);
    return 1;
}
static const char *const text_unfreeze_names[] = {"head", "lora", "all"};
static int set_text_unfreeze(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    for (int k = 0; k < 3; k++)
        if (!strcmp(v, text_unfreeze_names[k])) return ((mmp_train_cfg *)t)->text_unfreeze = k, 0;
    return mmp_errf(err, errlen, "--text-unfreeze %s: expected head, lora or all", v);
}
static int fmt_text_unfreeze(const mmp_option *o, const void *t, char *buf, size_t n) {
    const mmp_train_cfg *c = t;
    return MMP_HEAD_IS_VQA(c->head) ? (snprintf(buf, n, "%s", text_unfreeze_names[c->text_unfreeze]), 1) : 0;
}
/* ------------------------------------------------------------------ */
/* the table                                                           */
/* ------------------------------------------------------------------ */

/* offsetof with a compile-time check of the field's type */
#define OFF(type, f) _Generic(((mmp_train_cfg *)0)->f, type: offsetof(mmp_train_cfg, f))
#define ARCH MMP_TRAIN_OPTION_ARCH
#define KEY(k, opt) .meta = (k), .name = (opt)
#define I64(k, opt, f, lo, hi, d, vn, h, ...) \
    {.type = MMP_OPTION_INT64, KEY(k, opt), .off = OFF(int64_t, f), .min = (lo), .max = (hi), .def = (d), .valname = (vn), .help = (h), __VA_ARGS__}
#define INT(k, opt, f, lo, hi, d, vn, h, ...) \
    {.type = MMP_OPTION_INT, KEY(k, opt), .off = OFF(int, f), .min = (lo), .max = (hi), .def = (d), .valname = (vn), .help = (h), __VA_ARGS__}
#define DBL(k, opt, f, lo, hi, fl, d, vn, h) \
    {.type = MMP_OPTION_DOUBLE, KEY(k, opt), .off = OFF(double, f), .dmin = (lo), .dmax = (hi), .flags = (fl), .def = (d), .valname = (vn), .help = (h)}
#define STR(k, opt, f, minlen, d, vn, h, ...) \
    {.type = MMP_OPTION_STRBUF, KEY(k, opt), .off = OFF(char *, f), .min = (minlen), .max = sizeof(((mmp_train_cfg *)0)->f), .def = (d), .valname = (vn), .help = (h), __VA_ARGS__}
/* custom parse and format of the whole configuration */
#define FN(k, opt, setf, fmtf, d, vn, h, ...) \
    {.type = MMP_OPTION_CALL, KEY(k, opt), .call = (setf), .fmt = (fmtf), .def = (d), .valname = (vn), .help = (h), __VA_ARGS__}
#define NOLIM INFINITY
#define OPEN0 MMP_OPTION_OPEN_MIN
#define BIG (INT64_MAX / 2)

static const char *const mining_names[] = {"all", "hard", NULL}; /* index = mining_hard */
static const char *const optimizer_names[] = {"sgd", "adamw", NULL}; /* index = mmp_opt_kind */

/* The order of the entries is the order of the keys in a checkpoint's metadata. */
const mmp_option mmp_train_options[] = {
    MMP_O_TEXT("model:"),
    FN("head", "head", set_head, fmt_head, "auto", "linear|mlp|pair|gated|attention|mnv2-tail|resnet-tail|clip|transformer|vqa|vqa-pooled|caption",
       "default linear (pair for --loss contrastive|triplet)\n"
       "gated, attention: learned fusion (lib/fuse, as mmp-fuse --mode)\n"
       "  of --feature and --pair-field, then nn.Linear(F, C) (ce/bce); raw\n"
       "  inputs (no standardization); mmp-fuse --checkpoint OUT applies the\n"
       "  fusion part of the checkpoint\n"
       "mnv2-tail: partly unfrozen MobileNetV2: trains blocks\n"
       "  features.K+1..18 (BN in eval mode) + classifier on features.K\n"
       "  activations cached by mmp-embed --layer features.K:flat\n"
       "  (see docs/train.md)\n"
       "resnet-tail: partly unfrozen torchvision ResNet: trains the blocks\n"
       "  after layerL (or block layerL.i) .. layer4 (BN in eval mode) + fc\n"
       "  on activations cached by mmp-embed --layer layerL:flat\n"
       "clip: both towers of the CLIP --backbone end to end on image + text\n"
       "  records (--loss contrastive; --lock image|text; docs/train.md)\n"
       "transformer: a whole ViT / CLIP tower / BERT encoder (--backbone)\n"
       "  + nn.Linear on its pooled output, on image or text records\n"
       "  (--unfreeze; see docs/train.md)\n"
       "vqa: visual question answering: the question's tokens (text tower\n"
       "  --backbone, frozen) attend to the image tokens (--feature [N, C],\n"
       "  mmp-embed --layer BLOCK:tokens) through --fuse-layers cross-attention\n"
       "  layers of width --fuse-dim, then an MLP (--hidden) over --answers\n"
       "  answers; vqa-pooled: the baseline, an MLP on the mean image token and\n"
       "  the mean question token (docs/vqa.md)\n"
       "caption: ClipCap image captioning: a mapping network (--mapper) and\n"
       "  a GPT-2 decoder (--decoder, or from scratch) on feature records\n"
       "  with \"captions\" (docs/caption.md)",
       .flags = ARCH),
    FN("hidden", "hidden", set_hidden, fmt_hidden, "", "N[,N...]", "MLP hidden widths (implies --head mlp): Linear-ReLU-Dropout blocks",
       .flags = ARCH),
    DBL("dropout", "dropout", dropout, 0, 1, MMP_OPTION_OPEN_MAX | MMP_OPTION_AUTO, "auto", "P",
        "MLP dropout probability (0; mnv2-tail: before the classifier, 0.2)"),
    I64("proj_dim", "proj-dim", proj_dim, 1, 1 << 20, "256", "E", "pair head projection width (256)", .flags = ARCH),
    I64("fuse_dim", "fuse-dim", fuse_dim, 1, 1 << 16, "256", "F", "fusion heads: width of the fused vector (256)", .flags = ARCH),
    INT("heads", "heads", heads, 1, 4096, "4", "H", "attention fusion: attention heads, dividing F (4)", .flags = ARCH),
    MMP_O_TEXT("loss:"),
    FN("loss", "loss", set_loss, fmt_loss, "ce", "ce|bce|contrastive|triplet", "(ce)"),
    DBL("label_smoothing", "label-smoothing", label_smoothing, 0, 1, 0, "0", "E", "ce label smoothing (0)"),
    STR("class_weights", "class-weights", class_weights, 0, "", "W,W,...|balanced", "ce class weights (PyTorch weighted mean)"),
    DBL("margin", "margin", margin, 0, NOLIM, 0, "1", "M", "triplet margin (1.0)"),
    {.type = MMP_OPTION_CHOICE, KEY("mining", "mining"), .off = OFF(int, mining_hard), .choices = mining_names, .def = "hard",
     .valname = "hard|all", .help = "triplet in-batch negatives: hardest one, or all (hard)"},
    MMP_O_TEXT("optimization:"),
    {.type = MMP_OPTION_CHOICE, KEY("optimizer", "optimizer"), .off = OFF(mmp_opt_kind, opt.kind), .choices = optimizer_names,
     .def = "adamw", .valname = "adamw|sgd", .help = "(adamw)"},
    DBL("lr", "lr", sched.lr, 0, NOLIM, OPEN0 | MMP_OPTION_AUTO, "auto", "LR", "(adamw 1e-3, sgd 1e-2)"),
    DBL("momentum", "momentum", opt.momentum, 0, NOLIM, 0, "0", "M", "SGD momentum (0)"),
    {.type = MMP_OPTION_FLAG, KEY("nesterov", "nesterov"), .off = OFF(int, opt.nesterov), .val = 1, .metaval = "1", .def = "0",
     .help = "SGD Nesterov momentum"},
    DBL("weight_decay", "weight-decay", opt.weight_decay, 0, NOLIM, MMP_OPTION_AUTO, "auto", "WD", "(adamw 1e-2 decoupled, sgd 0 as L2)"),
    DBL("beta1", "beta1", opt.beta1, 0, 1, MMP_OPTION_OPEN_MAX, "0.9", "B", "AdamW (0.9)"),
    DBL("beta2", "beta2", opt.beta2, 0, 1, MMP_OPTION_OPEN_MAX, "0.999", "B", "AdamW (0.999)"),
    DBL("eps", "eps", opt.eps, 0, NOLIM, OPEN0, "1e-8", "E", "AdamW (1e-8)"),
    FN("schedule", "schedule", set_schedule, fmt_schedule, "constant", "constant|step|cosine", "per-step LR schedule (constant)"),
    I64("warmup", "warmup", sched.warmup, 0, BIG, "0", "STEPS", "linear warm-up: lr*(t+1)/STEPS for the first STEPS steps"),
    I64("step_size", "step-size", sched.step_size, 1, BIG, NULL, "STEPS", "step schedule: lr *= gamma every STEPS steps", .fmt = fmt_positive),
    DBL("gamma", "gamma", sched.gamma, 0, NOLIM, 0, "0.1", "G", "step schedule factor (0.1)"),
    DBL("min_lr", "min-lr", sched.min_lr, 0, NOLIM, 0, "0", "LR", "cosine floor (0)"),
    I64("total_steps", "total-steps", sched.total, 0, BIG, "0", "N", "cosine length (default epochs * batches per epoch)"),
    DBL("clip_grad_norm", "clip-grad-norm", clip, 0, NOLIM, 0, "0", "MAX", "clip the total gradient L2 norm (off)"),
    I64("batch_size", "batch-size", batch, 1, 1 << 24, "256", "N", "(256)"),
    INT("grad_accum", "grad-accum", grad_accum, 1, 1 << 20, "1", "K",
        "K micro-batches of --batch-size per optimizer step, their gradients\n"
        "summed with the weights m_i / sum m (the mean loss of one K-times\n"
        "larger batch); steps and schedules count optimizer steps (1)", .fmt = fmt_int_set),
    {.type = MMP_OPTION_FLAG, KEY("skip_nonfinite", "skip-nonfinite"), .off = OFF(int, skip_nonfinite), .val = 1, .metaval = "1",
     .def = "0", .fmt = fmt_int_set, .help = "a NaN/Inf loss or gradient skips its step (no update; counted)\n"
                         "instead of stopping the run"},
    INT("epochs", "epochs", epochs, 0, 1 << 24, "1", "N", "(1)"),
    FN("seed", "seed", set_seed, fmt_seed, "0", "N", "weights init, shuffling, dropout (0)"),
    {.type = MMP_OPTION_FLAG, KEY("standardize", "standardize"), .off = OFF(int, standardize), .val = 1, .metaval = "1",
     .call = set_standardize, .fmt = fmt_standardize, .def = "auto",
     .help = "feature standardization fitted on the training stream\n(default: on for linear ce/bce heads)"},
    {.type = MMP_OPTION_FLAG, KEY("standardize", "no-standardize"), .off = OFF(int, standardize), .val = 0, .metaval = "0",
     .flags = MMP_OPTION_ALIAS, .help = "no standardization"},
    INT("patience", "patience", patience, 0, 1 << 24, "0", "N", "early stopping after N epochs without dev improvement (--dev)"),
    MMP_O_TEXT("data:"),
    STR("feature", "feature", feature, 1, "embedding", "NAME", "input tensor (embedding)", .flags = ARCH),
    STR("pair_field", "pair-field", pair_field, 1, "text_embedding", "NAME",
        "second input for pair losses and fusion heads (text_embedding)", .flags = ARCH),
    STR("labels_field", "labels-field", labels_field, 1, "labels", "NAME", "multi-label targets f32 [C] for bce (labels)", .flags = ARCH),
    MMP_O_TEXT("augmentation of u8 image records in the training loop (fresh every epoch; never --dev):"),
    STR("aug_rrc", "aug-rrc", aug_rrc, 0, "", "S[,MIN,MAX]",
        "RandomResizedCrop(S, scale=(MIN,MAX) (0.08,1), ratio=(3/4,4/3)),\n"
        "bilinear: the model's input becomes SxS", .fmt = fmt_str_set),
    I64("aug_crop", "aug-crop", aug_crop, 0, 1 << 16, "0", "S", "RandomCrop(S, padding=--aug-pad) (CIFAR: 32 with --aug-pad 4)",
        .fmt = fmt_positive),
    INT("aug_pad", "aug-pad", aug_pad, 0, 1 << 16, "0", "N", "zero padding of --aug-crop (0)", .fmt = fmt_int_set),
    {.type = MMP_OPTION_DOUBLE, KEY("aug_hflip", "aug-hflip"), .off = OFF(double, aug_hflip), .dmin = 0, .dmax = 1, .def = "0",
     .valname = "P", .help = "RandomHorizontalFlip(P) (0: off)", .fmt = fmt_dbl_set},
    STR("aug_jitter", "aug-jitter", aug_jitter, 0, "", "B,C,S,H",
        "ColorJitter(brightness, contrast, saturation, hue)\n"
        "(the ops run in this order; mmp-augment's code and random streams:\n"
        "see docs/train.md)", .fmt = fmt_str_set),
    MMP_O_TEXT("CNN tails (mnv2-tail, resnet-tail):"),
    FN("backbone", "backbone", set_backbone, fmt_backbone, "", "FILE", "the pretrained network the tail starts from (--head clip: the CLIP\n"
       "model, a folder or its weights file; transformer: the model, as\n"
       "mmp-embed / mmp-embed-text take it)"),
    FN("from", "from", set_from, fmt_from, "auto", "features.K|layerL[.i]|input",
       "the input block (default: the stream's embed.layer); input: the whole\n"
       "network from image records (--feature default image: u8 [H,W,3] or\n"
       "normalized f32/f16 [3,H,W], all of one size)",
       .flags = ARCH),
    FN("in_hw", "in-hw", set_in_hw, fmt_in_hw, "auto", "HxW", "its spatial size (default: from the stream's embed.size)", .flags = ARCH),
    {.type = MMP_OPTION_FLAG, KEY("freeze_bn", "freeze-bn"), .off = OFF(int, freeze_bn), .val = 1, .metaval = "1", .call = set_freeze_bn, .fmt = fmt_freeze_bn,
     .def = "auto", .help = "--from input: BatchNorm in eval mode with the backbone's running\n"
                            "statistics (default there: train mode, batch statistics, running\n"
                            "statistics moved with momentum 0.1 as PyTorch's); the tails on\n"
                            "cached activations always freeze BN"},
    {.type = MMP_OPTION_FLAG, KEY("freeze_bn", "no-freeze-bn"), .off = OFF(int, freeze_bn), .val = 0, .metaval = "0",
     .flags = MMP_OPTION_ALIAS, .help = "--from input: BatchNorm in train mode (the default there)"},
    FN("unfreeze", "unfreeze", set_unfreeze, fmt_unfreeze, "all", "head|last:N|all|norm|lora",
       "--from input and --head transformer: what trains: the classifier\n"
       "only (head), the last N blocks + classifier (transformers: + the\n"
       "final norm), everything (all), BatchNorm / LayerNorm weight and bias\n"
       "+ classifier (norm, or bn), LoRA adapters + classifier (lora); frozen\n"
       "parts get no gradient, no optimizer state, no weight decay (all);\n"
       "may change with --init (e.g. head first, then all); --head clip:\n"
       "all or lora (adapters on the unlocked towers + logit_scale)"),
    FN("lora_rank", "lora-rank", set_lora_rank, fmt_lora_rank, "8", "R", "--unfreeze lora: the rank r (8)", .flags = ARCH),
    FN("lora_alpha", "lora-alpha", set_lora_alpha, fmt_lora_alpha, "8", "A", "lora_alpha: the update is scaled by A/r (8)", .flags = ARCH),
    FN("lora_dropout", "lora-dropout", set_lora_dropout, fmt_lora_dropout, "0", "P", "dropout on the adapters' inputs (0)"),
    FN("lora_targets", "lora-targets", set_lora_targets, fmt_lora_targets, "", "NAMES",
       "comma-separated PEFT target_modules, matched as suffixes of the\n"
       "module names (features.3.conv.0.0, layer1.0.conv1, query); default:\n"
       "CNNs every convolution that is not depthwise, transformers the\n"
       "attention query and value projections", .flags = ARCH),
    FN("input_mean", "input-mean", set_in_mean, fmt_in_mean, "auto", "M,M,M",
       "--from input: normalization of u8 images (default: the backbone's\n"
       "__metadata__ input_mean, else torchvision's 0.485,0.456,0.406)", .flags = ARCH),
    FN("input_std", "input-std", set_in_std, fmt_in_std, "auto", "S,S,S", "(default: input_std, else 0.229,0.224,0.225)", .flags = ARCH),
    MMP_O_TEXT("transformers (--head transformer --backbone MODEL):"),
    FN("modality", "modality", set_modality, fmt_modality, "auto", "image|text",
       "the records: images (field --feature, default image) or texts (the\n"
       "record's text); default from the model (BERT, a text tower: text;\n"
       "a two-tower CLIP: image)", .flags = ARCH),
    FN("max_length", "max-length", set_max_length, fmt_max_length, "auto", "N",
       "text: tokens per record, start/end included (the model's: BERT's\n"
       "max_seq_length, CLIP's context)", .flags = ARCH),
    MMP_O_TEXT("visual question answering (--head vqa|vqa-pooled --backbone TEXT-MODEL):"),
    FN("answers", "answers", set_answers, fmt_answers, "3000", "K",
       "the answer vocabulary: the K answers annotated most often in the\n"
       "training stream (3000); the rest are counted and reported", .flags = ARCH),
    FN("fuse_layers", "fuse-layers", set_fuse_layers, fmt_fuse_layers, "2", "L", "cross-attention layers (2)", .flags = ARCH),
    FN("img_layers", "img-layers", set_img_layers, fmt_img_layers, "0", "N",
       "image self-attention layers (pre-LN transformer encoder layers) before\n"
       "the cross-attention, so that each image token sees the others (0)", .flags = ARCH),
    FN("vqa_pos", "vqa-pos", set_vqa_pos, fmt_vqa_pos, "grid", "grid|none",
       "learned 2-D position embeddings of the image grid added to the\n"
       "image tokens (grid: one per token of the grid, raster order), or none", .flags = ARCH),
    FN("text_unfreeze", "text-unfreeze", set_text_unfreeze, fmt_text_unfreeze, "head", "head|lora|all",
       "the text tower: frozen, its tokens computed once per question (head),\n"
       "PEFT LoRA adapters (--lora-rank, --lora-alpha, --lora-dropout,\n"
       "--lora-targets; default query,value) trained with the fusion model\n"
       "(lora), or all its weights (all)", .flags = ARCH),
    MMP_O_TEXT("captioning (--head caption; docs/caption.md):"),
    FN("mapper", "mapper", set_mapper, fmt_mapper, "mlp", "mlp|transformer",
       "ClipCap's mapping network from the image feature to the prefix:\n"
       "its MLP (Linear, Tanh, Linear) or its TransformerMapper", .flags = ARCH),
    INT("prefix_length", "prefix-length", prefix_length, 1, 1024, "10", "K", "prefix embeddings in front of the caption (10)", .fmt = fmt_cap_int,
        .flags = ARCH),
    INT("mapper_layers", "mapper-layers", mapper_layers, 1, 64, "8", "N", "--mapper transformer: its layers (8)", .fmt = fmt_cap_int,
        .flags = ARCH),
    STR("decoder", "decoder", decoder, 0, "", "PATH",
        "the GPT-2 decoder (a GPT2LMHeadModel folder); without it a decoder\n"
        "from scratch of the --decoder-* sizes", .fmt = fmt_cap_str, .flags = ARCH),
    INT("decoder_layers", "decoder-layers", decoder_layers, 1, 128, "4", "N", "scratch decoder: layers (4)", .fmt = fmt_cap_int, .flags = ARCH),
    INT("decoder_width", "decoder-width", decoder_width, 8, 1 << 16, "256", "C", "scratch decoder: width n_embd (256)", .fmt = fmt_cap_int,
        .flags = ARCH),
    INT("decoder_heads", "decoder-heads", decoder_heads, 1, 1024, "4", "H", "scratch decoder: attention heads (4)", .fmt = fmt_cap_int,
        .flags = ARCH),
    INT("decoder_context", "decoder-context", decoder_context, 2, 1 << 16, "64", "N", "scratch decoder: positions n_positions (64)",
        .fmt = fmt_cap_int, .flags = ARCH),
    STR("tokenizer", "tokenizer", tokenizer, 0, "", "FILE",
        "the captions' tokenizer: a tokenizers WordLevel tokenizer.json or a\n"
        "GPT-2 vocab.json + merges.txt folder (default: the --decoder's;\n"
        "scratch: built from the training captions, OUT-stem.tokenizer.json)", .fmt = fmt_cap_str, .flags = ARCH),
    INT("min_count", "min-count", min_count, 1, 1 << 30, "2", "N", "scratch vocabulary: words seen at least N times (2)", .fmt = fmt_cap_int),
    STR("captions_field", "captions-field", captions_field, 1, "captions", "NAME", "the records' string list of captions (captions)",
        .fmt = fmt_cap_str, .flags = ARCH),
    {.type = MMP_OPTION_FLAG, KEY("recompute", "recompute"), .off = OFF(int, recompute), .val = 1, .metaval = "1", .def = "0",
     .fmt = fmt_never, .help = "--head transformer|clip: activation recomputation\n"
                         "(torch.utils.checkpoint per block): keep only each trainable\n"
                         "encoder block's input, compute its activations again before its\n"
                         "backward: less memory, one more forward of those blocks, the\n"
                         "same results bit for bit; not recorded (as -j)"},
    MMP_O_END,
};

/* ------------------------------------------------------------------ */
/* defaults, keys, metadata                                            */
/* ------------------------------------------------------------------ */

static int is_key(const mmp_option *o) { return o->meta && !(o->flags & MMP_OPTION_ALIAS); }

void mmp_train_cfg_defaults(mmp_train_cfg *c) {
    char err[256];
    memset(c, 0, sizeof *c);
    if (mmp_options_defaults(mmp_train_options, c, err, sizeof err)) mmp_die("train configuration defaults: %s", err);
}

int mmp_train_cfg_set(mmp_train_cfg *c, const char *k, const char *v, char *err, size_t errlen) {
    const mmp_option *o = mmp_option_by_meta(mmp_train_options, k);
    if (!o) return mmp_errf(err, errlen, "unknown configuration key '%s'", k);
    return mmp_option_set(o, c, v, k, err, errlen);
}

int mmp_train_cfg_is_arch(const char *key) {
    const mmp_option *o = mmp_option_by_meta(mmp_train_options, key);
    return o && (o->flags & MMP_TRAIN_OPTION_ARCH);
}

void mmp_train_cfg_to_meta(const mmp_train_cfg *c, mmp_meta *m) {
    char buf[1200];
    for (const mmp_option *o = mmp_train_options; o->type != MMP_OPTION_END; o++)
        if (is_key(o) && mmp_option_format(o, c, buf, sizeof buf)) mmp_meta_set(m, o->meta, buf);
}

int mmp_train_cfg_from_meta(mmp_train_cfg *c, const mmp_meta *m, char *err, size_t errlen) {
    for (const mmp_option *o = mmp_train_options; o->type != MMP_OPTION_END; o++) {
        if (!is_key(o)) continue;
        const char *v = mmp_meta_get(m, o->meta);
        if (!v) continue;
        if ((o->flags & MMP_OPTION_AUTO) && !strcmp(v, "nan")) continue; /* "auto" as a number */
        if (mmp_option_set(o, c, v, o->meta, err, errlen)) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* resolution and consistency                                          */
/* ------------------------------------------------------------------ */

void mmp_train_cfg_resolve(mmp_train_cfg *c) {
    if ((int)c->head == -1)
        c->head = c->loss == MMP_LOSS_CONTRASTIVE || c->loss == MMP_LOSS_TRIPLET ? MMP_HEAD_PAIR
                  : c->nhidden > 0 ? MMP_HEAD_MLP : MMP_HEAD_LINEAR;
    if (((MMP_HEAD_IS_TAIL(c->head) && c->from_input) || (c->head == MMP_HEAD_TRANSFORMER && c->modality == 0)) &&
        !strcmp(c->feature, "embedding"))
        snprintf(c->feature, sizeof c->feature, "image"); /* mmp-decode's field */
    if (c->head == MMP_HEAD_TRANSFORMER && c->modality == 1 && !strcmp(c->feature, "embedding"))
        snprintf(c->feature, sizeof c->feature, "text"); /* the record's text */
    if (c->freeze_bn < 0 && !(MMP_HEAD_IS_TAIL(c->head) && c->from_input)) c->freeze_bn = 1;
    if (c->freeze_bn < 0) c->freeze_bn = 0; /* --from input: train-mode BN */
    if (isnan(c->dropout)) c->dropout = c->head == MMP_HEAD_MNV2_TAIL ? 0.2 : 0;
    if (isnan(c->sched.lr)) c->sched.lr = c->opt.kind == MMP_OPT_ADAMW ? 1e-3 : 1e-2;
    if (isnan(c->opt.weight_decay)) c->opt.weight_decay = c->opt.kind == MMP_OPT_ADAMW ? 1e-2 : 0;
    /* fusion heads see the raw inputs (off): mmp-fuse --checkpoint computes the same fused vector */
    if (c->standardize < 0)
        c->standardize = c->head == MMP_HEAD_LINEAR && (c->loss == MMP_LOSS_CE || c->loss == MMP_LOSS_BCE);
}

int mmp_train_cfg_check(const mmp_train_cfg *c, char *err, size_t errlen) {
    int pairloss = c->loss == MMP_LOSS_CONTRASTIVE || c->loss == MMP_LOSS_TRIPLET;
    if (MMP_HEAD_IS_VQA(c->head) && (pairloss || c->loss == MMP_LOSS_BCE))
        return mmp_errf(err, errlen, "--head %s chooses its loss from the data (soft-score BCE with several answers, else CE): no --loss %s",
                        mmp_head_kind_name(c->head), mmp_loss_name(c->loss));
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
        if (!c->from_input && c->unfreeze_kind != MMP_UNFREEZE_ALL) {
            mmp_errf(err, errlen, "--unfreeze %s needs --from input (a tail on cached activations trains all its blocks)", c->unfreeze);
            return -1;
        }
        if (!c->from_input && c->freeze_bn == 0) {
            mmp_errf(err, errlen, "--no-freeze-bn needs --from input (the tails on cached activations keep BatchNorm frozen)");
            return -1;
        }
    }
    if (c->head == MMP_HEAD_TRANSFORMER) {
        if (c->standardize > 0)
            return mmp_errf(err, errlen, "--standardize is not available for the transformer head (it sees the records as the model does)");
        if (c->nhidden > 0) return mmp_errf(err, errlen, "--hidden needs --head mlp");
        if (c->loss != MMP_LOSS_CE) return mmp_errf(err, errlen, "--head transformer trains with --loss ce");
        if (!c->backbone[0]) return mmp_errf(err, errlen, "--head transformer needs --backbone MODEL (a ViT, CLIP or BERT-family model)");
    }
    if (c->text_unfreeze && !MMP_HEAD_IS_VQA(c->head))
        return mmp_errf(err, errlen, "--text-unfreeze %s needs --head vqa|vqa-pooled (--head transformer: --unfreeze)",
                        c->text_unfreeze == 1 ? "lora" : "all");
    if (MMP_HEAD_IS_VQA(c->head)) {
        if (c->standardize > 0) return mmp_errf(err, errlen, "--standardize is not available for the %s head", mmp_head_kind_name(c->head));
        if (c->nhidden > 1) return mmp_errf(err, errlen, "--head %s: --hidden takes one width (the classifier's hidden layer)", mmp_head_kind_name(c->head));
        if (!c->backbone[0]) return mmp_errf(err, errlen, "--head %s needs --backbone MODEL: the text tower of the questions (a BERT-family folder)", mmp_head_kind_name(c->head));
        if (c->head == MMP_HEAD_VQA && c->fuse_dim % c->heads)
            return mmp_errf(err, errlen, "--fuse-dim %lld must be a multiple of --heads %d", (long long)c->fuse_dim, c->heads);
    }
    if (c->head == MMP_HEAD_CAPTION) {
        if (c->standardize > 0) return mmp_errf(err, errlen, "--standardize is not available for the caption head");
        if (c->nhidden > 0) return mmp_errf(err, errlen, "--hidden needs --head mlp");
        if (c->loss != MMP_LOSS_CE) return mmp_errf(err, errlen, "--head caption trains with the captions' NLL (--loss ce)");
        if (c->unfreeze_kind != MMP_UNFREEZE_ALL && c->unfreeze_kind != MMP_UNFREEZE_HEAD && c->unfreeze_kind != MMP_UNFREEZE_LORA)
            return mmp_errf(err, errlen, "--head caption: --unfreeze %s: head, lora or all", c->unfreeze);
    }
    if (c->recompute && c->head != MMP_HEAD_TRANSFORMER && c->head != MMP_HEAD_CLIP)
        return mmp_errf(err, errlen, "--recompute needs --head transformer or clip (the encoder blocks it recomputes)");
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
    if (mmp_train_aug_check(c, err, errlen)) return -1;
    if (c->head == MMP_HEAD_CLIP && c->unfreeze_kind != MMP_UNFREEZE_ALL && c->unfreeze_kind != MMP_UNFREEZE_LORA) {
        mmp_errf(err, errlen, "--head clip: --unfreeze %s: all or lora (--lock image|text locks a tower)", c->unfreeze);
        return -1;
    }
    if (!MMP_HEAD_IS_TAIL(c->head) && c->head != MMP_HEAD_TRANSFORMER && c->head != MMP_HEAD_CLIP && c->head != MMP_HEAD_CAPTION &&
        c->unfreeze_kind != MMP_UNFREEZE_ALL) {
        mmp_errf(err, errlen, "--unfreeze %s needs a backbone that trains (--head mnv2-tail|resnet-tail --from input, --head transformer)", c->unfreeze);
        return -1;
    }
    if (c->sched.kind == MMP_SCHED_STEP && c->sched.step_size <= 0) {
        mmp_errf(err, errlen, "--schedule step needs --step-size N (steps)");
        return -1;
    }
    return 0;
}
