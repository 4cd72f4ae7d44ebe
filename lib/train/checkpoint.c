/* train/checkpoint.c: checkpoints: the head tensors, standardization,
 * optimizer state and the configuration + training state in __metadata__
 * (written atomically); loading them back, or a plain PyTorch state dict of
 * a known head. */
#include <errno.h>
#include <unistd.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "train/caption_train.h"
#include "train/cnn_tail.h"
#include "train/metrics.h"
#include "train/train.h"
#include "train/train_internal.h"
#include "train/tx_head.h"

static int pint(const char *v, int64_t lo, int64_t hi, int64_t *out) {
    char *e;
    errno = 0;
    long long d = strtoll(v, &e, 10);
    if (e == v || *e || errno || d < lo || d > hi) return -1;
    *out = d;
    return 0;
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

int mmp_trainer_optim_apart(const mmp_trainer *tr) {
    return (MMP_HEAD_IS_TAIL(tr->cfg.head) && tr->cfg.from_input) || tr->head.tx != NULL;
}

char *mmp_train_optim_path(const char *out) {
    const char *slash = strrchr(out, '/'), *dot = strrchr(out, '.');
    if (dot && (!slash || dot > slash))
        return mmp_xasprintf("%.*s.optim%s", (int)(dot - out), out, dot);
    return mmp_xasprintf("%s.optim", out);
}

void mmp_train_optim_add(const mmp_param *p, int np, const mmp_optim *o, mmp_st_writer *w) {
    for (int i = 0; i < np; i++) {
        float *st[2] = {p[i].s1, p[i].s2};
        for (int k = 0; k < 2; k++) {
            const char *sn = mmp_optim_state_name(o, k);
            if (!sn || !st[k]) continue;
            char name[160];
            snprintf(name, sizeof name, "optim.%s.%s", p[i].name, sn);
            mmp_st_writer_add_f32(w, name, st[k], p[i].ndim, p[i].shape);
        }
    }
}

int mmp_train_optim_read(mmp_param *p, int np, const mmp_optim *o, const mmp_safetensors *st, char *err, size_t errlen) {
    char e2[512];
    for (int i = 0; i < np; i++) {
        float **dst[2] = {&p[i].s1, &p[i].s2};
        for (int k = 0; k < 2; k++) {
            const char *sn = mmp_optim_state_name(o, k);
            if (!sn) continue;
            char name[160];
            snprintf(name, sizeof name, "optim.%s.%s", p[i].name, sn);
            if (!mmp_st_get(st, name)) continue; /* not used yet (step 0) */
            if (!*dst[k]) *dst[k] = mmp_xmalloc(sizeof(float) * (p[i].n ? p[i].n : 1));
            if (mmp_st_read_f32(st, name, p[i].ndim, p[i].shape, *dst[k], e2, sizeof e2))
                return mmp_errf(err, errlen, "%s: %s", st->path, e2);
        }
    }
    return 0;
}

void mmp_train_optim_id(const mmp_param *p, int np, const int64_t *state, int nstate, char *buf, size_t n) {
    uint64_t h = 0x6f7074696d ^ (uint64_t)state[0];
    for (int i = 0; i < np; i++) h = mmp_hash64(p[i].w, sizeof(float) * p[i].n, h);
    h = mmp_hash64(state, sizeof *state * (size_t)nstate, h);
    snprintf(buf, n, "%016llx", (unsigned long long)h);
}

int mmp_train_optim_open(const char *path, const char *format, const char *id, mmp_safetensors *st, char *err, size_t errlen) {
    char *op = mmp_train_optim_path(path), e2[512];
    int ret = -1;
    if (access(op, F_OK)) {
        mmp_errf(err, errlen, "%s: its optimizer state %s is missing (the checkpoint's optimizer state is kept beside it; "
                 "--init and --resume need both files)", path, op);
        goto out;
    }
    if (mmp_st_open(st, op, e2, sizeof e2)) {
        mmp_errf(err, errlen, "%s", e2);
        goto out;
    }
    const char *fmt = mmp_meta_get(&st->meta, "format"), *fid = mmp_meta_get(&st->meta, "optim_id");
    if (!fmt || strcmp(fmt, format) || (id && (!fid || strcmp(fid, id)))) {
        mmp_errf(err, errlen, "%s: not the optimizer state of %s (optim_id %s, the checkpoint's %s): both files must come from the same save",
                 op, path, fid ? fid : "missing", id ? id : "none");
        mmp_st_close(st);
        goto out;
    }
    ret = 0;
out:
    free(op);
    return ret;
}

/* optim.<param>.<state> tensors of tr into w */
static void add_optim(const mmp_trainer *tr, mmp_st_writer *w) { mmp_train_optim_add(tr->head.params, tr->head.np, &tr->cfg.opt, w); }

/* the token a checkpoint and its .optim file share: a hash of the weights
 * and the training state (deterministic: the same run gives the same files) */
static void optim_id(const mmp_trainer *tr, char *buf, size_t n) {
    int64_t st[3] = {tr->step, tr->epoch, tr->skipped};
    mmp_train_optim_id(tr->head.params, tr->head.np, st, 3, buf, n);
}

int mmp_trainer_save(const mmp_trainer *tr, const char *path, char *err, size_t errlen) {
    int apart = mmp_trainer_optim_apart(tr);
    char oid[40] = "";
    if (apart) { /* the optimizer state first: OUT never names a file that is not there */
        optim_id(tr, oid, sizeof oid);
        char *op = mmp_train_optim_path(path);
        mmp_st_writer ow;
        mmp_st_writer_init(&ow);
        add_optim(tr, &ow);
        mmp_meta_set(&ow.meta, "format", "mmpipe-optim");
        mmp_meta_set(&ow.meta, "optim_id", oid);
        mmp_meta_set(&ow.meta, "optimizer", tr->cfg.opt.kind == MMP_OPT_ADAMW ? "adamw" : "sgd");
        mset(&ow.meta, "step", "%lld", (long long)tr->step);
        mmp_meta_set(&ow.meta, "mmpipe_version", MMP_VERSION);
        int rc = mmp_st_writer_write(&ow, op, err, errlen);
        mmp_st_writer_free(&ow);
        free(op);
        if (rc) return -1;
    }
    mmp_st_writer w;
    mmp_st_writer_init(&w);
    const mmp_head *h = &tr->head;
    if (h->tx) mmp_txhead_save(h->tx, &w, 0); /* the whole model under its own names */
    if (h->capt) mmp_caption_save(h->capt, &w); /* ClipCap's names (the decoder's views are named for the optimizer state) */
    for (int i = 0; i < h->np && !h->tx && !h->capt; i++) {
        const mmp_param *p = &h->params[i];
        mmp_st_writer_add_f32(&w, p->name, p->w, p->ndim, p->shape);
    }
    if (h->tail) mmp_tail_save_buffers(h->tail, &w); /* running_mean/var: the fine-tuned model is complete */
    if (h->tail && apart) mmp_tail_save_nbt(h->tail, h->tail->train_bn ? tr->step : 0, &w); /* torchvision's buffers (strict) */
    if (tr->mean) {
        int64_t sh[1] = {tr->in_dim};
        mmp_st_writer_add_f32(&w, "standardize.mean", tr->mean, 1, sh);
        mmp_st_writer_add_f32(&w, "standardize.std", tr->std, 1, sh);
    }
    if (!apart) add_optim(tr, &w);
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
    if (h->capt) {
        mset(m, "feature_dim", "%lld", (long long)tr->cfg.feat_dim);
        mset(m, "feature_tokens", "%lld", (long long)tr->cfg.feat_tokens);
    }
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
    if (tr->cfg.skip_nonfinite || tr->skipped) mset(m, "skipped_steps", "%lld", (long long)tr->skipped);
    if (apart) {
        mmp_meta_set(m, "optim_apart", "1"); /* in the file with .optim before the extension (mmp_train_optim_path) */
        mmp_meta_set(m, "optim_id", oid);
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

/* The joint embedding width E of a CLIP checkpoint: a scalar logit_scale and
 * both projections (HF: visual_projection.weight [E, Dv], text_projection.weight
 * [E, Dt]; open_clip: visual.proj [Dv, E], text_projection [Dt, E]). 1 or 0. */
static int clip_dim(const mmp_safetensors *st, int64_t *E) {
    const mmp_tensor *ls = mmp_st_get(st, "logit_scale");
    if (!ls || mmp_numel(ls->ndim, ls->shape) != 1) return 0;
    int64_t a, b, a2, b2;
    if (st2(st, "visual_projection.weight", &a, &b) && st2(st, "text_projection.weight", &a2, &b2) && a == a2) {
        *E = a;
        return 1;
    }
    if (st2(st, "visual.proj", &a, &b) && st2(st, "text_projection", &a2, &b2) && b == b2) {
        *E = b;
        return 1;
    }
    return 0;
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
    } else if (clip_dim(st, &a)) {
        /* a CLIP model (Hugging Face CLIPModel or open_clip names): its towers
         * ran in mmp-embed / mmp-embed-text, whose outputs are already the
         * projected embeddings; zero-shot and retrieval only need the
         * embedding width and the logit scale (identity projections) */
        mset(im, "head", "pair");
        mset(im, "loss", "contrastive");
        mset(im, "proj_dim", "%lld", (long long)a);
        mset(im, "in_dim", "%lld", (long long)a);
        mset(im, "pair_dim", "%lld", (long long)a);
        mset(im, "num_classes", "0");
        mset(im, "clip", "1");
    } else {
        return -1;
    }
    mset(im, "standardize", "%d", mmp_st_get(st, "standardize.mean") != NULL);
    const char *zero[] = {"step", "epoch", "best_epoch", "bad_epochs"};
    for (int i = 0; i < 4; i++)
        if (!mmp_meta_get(im, zero[i])) mset(im, zero[i], "0");
    return 0;
}

/* A relative backbone path in a checkpoint (mmp-train-step records the whole
 * path; a checkpoint shipped with its backbone, such as the test fixtures,
 * may name it relative to its own folder) is resolved against the
 * checkpoint's folder when it is there. */
static void backbone_beside(mmp_train_cfg *c, const char *path) {
    const char *slash = strrchr(path, '/');
    if (!c->backbone[0] || c->backbone[0] == '/' || !slash) return;
    char *p = mmp_xasprintf("%.*s/%s", (int)(slash - path), path, c->backbone);
    if (access(p, F_OK) == 0 && strlen(p) < sizeof c->backbone) snprintf(c->backbone, sizeof c->backbone, "%s", p);
    free(p);
}

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
    backbone_beside(&tr->cfg, path);
    if (ovr)
        for (int i = 0; i < ovr->n; i++) {
            const char *k = ovr->keys[i], *v = ovr->vals[i];
            const char *cur = mmp_meta_get(m, k);
            if (mmp_train_cfg_is_arch(k) && cur && strcmp(cur, v) && !(!strcmp(k, "head") && !strcmp(v, "auto"))) {
                mmp_errf(err, errlen, "%s: the checkpoint has %s=%s; cannot change it to %s", path, k, cur, v);
                goto out;
            }
            if (mmp_train_cfg_set(&tr->cfg, k, v, e2, sizeof e2)) {
                mmp_errf(err, errlen, "%s", e2);
                goto out;
            }
        }
    mmp_train_cfg_resolve(&tr->cfg);
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
    if (tr->cfg.head == MMP_HEAD_CAPTION) {
        MINT("feature_dim", tr->cfg.feat_dim, 1, 1 << 24);
        MINT("feature_tokens", tr->cfg.feat_tokens, 0, 1 << 24);
    }
#undef MINT
    s = mmp_meta_get(m, "best_metric");
    tr->best_metric = s ? strtod(s, NULL) : -INFINITY;
    s = mmp_meta_get(m, "skipped_steps");
    if (s && pint(s, 0, INT64_MAX / 2, &tr->skipped)) { mmp_errf(err, errlen, "%s: bad metadata skipped_steps", path); goto out; }
    s = mmp_meta_get(m, "optim_id");
    snprintf(tr->optim_id, sizeof tr->optim_id, "%s", s && mmp_meta_get(m, "optim_apart") ? s : "");
    if (mmp_trainer_setup_head(tr, &st, 1, err, errlen)) goto out;
    tr->clip = m == &im && mmp_meta_get(m, "clip") != NULL;
    if (tr->clip) { /* identity projections (exact: x * 1 + 0s), the model's logit scale */
        int64_t E = tr->head.out_dim;
        for (int k = 0; k < 2; k++) {
            mmp_param *p = &tr->head.params[k];
            memset(p->w, 0, sizeof(float) * p->n);
            for (int64_t i = 0; i < E; i++) p->w[i * E + i] = 1.0f;
        }
        mmp_param *p = &tr->head.params[2];
        const mmp_tensor *ls = mmp_st_get(&st, "logit_scale");
        mmp_tensor_to_f32(ls, p->w);
        if (!isfinite(p->w[0])) {
            mmp_errf(err, errlen, "%s: logit_scale is not finite", path);
            goto out;
        }
    }
    for (int i = 0; i < tr->head.np && !tr->clip; i++) {
        mmp_param *p = &tr->head.params[i];
        if (strstr(p->name, ".lora_") && !mmp_st_get(&st, p->name)) continue; /* --unfreeze lora from a plain checkpoint: fresh adapters */
        if (!tr->head.tx && !tr->head.capt && mmp_st_read_f32(&st, p->name, p->ndim, p->shape, p->w, err, errlen)) goto out; /* a transformer reads its own */
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
    s = mmp_meta_get(m, "classes");
    if (s) {
        char e3[512];
        if (mmp_json_strings(s, &tr->nclasses_named, &tr->classes, e3, sizeof e3)) {
            mmp_errf(err, errlen, "%s: __metadata__ classes: %s", path, e3);
            goto out;
        }
    }
    snprintf(tr->feature, sizeof tr->feature, "%s", tr->cfg.feature);
    snprintf(tr->pair_field, sizeof tr->pair_field, "%s", tr->cfg.pair_field);
    ret = 0;
out:
    mmp_meta_free(&im);
    mmp_st_close(&st);
    if (ret) mmp_trainer_free(tr);
    return ret;
}

int mmp_trainer_load_optim(mmp_trainer *tr, const char *path, char *err, size_t errlen) {
    if (!tr->optim_id[0]) return 0;
    mmp_safetensors st;
    if (mmp_train_optim_open(path, "mmpipe-optim", tr->optim_id, &st, err, errlen)) return -1;
    int ret = mmp_train_optim_read(tr->head.params, tr->head.np, &tr->cfg.opt, &st, err, errlen);
    mmp_st_close(&st);
    return ret;
}

char *mmp_train_last_path(const char *out) {
    const char *slash = strrchr(out, '/'), *dot = strrchr(out, '.');
    if (dot && (!slash || dot > slash))
        return mmp_xasprintf("%.*s.last%s", (int)(dot - out), out, dot);
    return mmp_xasprintf("%s.last", out);
}

char *mmp_train_classes_json(const mmp_trainer *tr) {
    return tr->nclasses_named ? json_names(tr->nclasses_named, tr->classes) : NULL;
}
