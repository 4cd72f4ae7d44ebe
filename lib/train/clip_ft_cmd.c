/* train/clip_ft_cmd.c: mmp-train-step --head clip (train/clip_ft.h): image +
 * text records in memory, the epochs in the shuffled order of (seed, epoch),
 * the dev evaluation (contrastive loss, image->text top-1 retrieval within
 * the dev set), early stopping, the checkpoints and --init / --resume. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "nn/provenance.h"
#include "rng.h"
#include "text/bpe.h"
#include "text/wordpiece.h"
#include "train/clip_ft.h"
#include "train/metrics.h"
#include "train/tensorboard.h"

/* ------------------------------------------------------------------ data */

typedef struct {
    int64_t n;
    int H, W, ctx;
    float *x;      /* [n][3][H][W] normalized */
    int32_t *ids;  /* [n][ctx] */
    int *lens;     /* [n] */
    mmp_header hdr;
    char name[256];
} clip_data;

static void data_free(clip_data *d) {
    free(d->x), free(d->ids), free(d->lens);
    mmp_header_free(&d->hdr);
    memset(d, 0, sizeof *d);
}

/* every record: an image (field; u8 [H,W,3] or normalized f32/f16 [3,H,W], one size) and a text */
static int data_load(clip_data *d, const char *path, const char *field, const mmp_text_encoder *enc, int allow_mixed,
                     char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    mmp_header_init(&d->hdr);
    char rerr[512];
    mmp_reader *r = mmp_reader_open(path, rerr, sizeof rerr);
    if (!r) return mmp_errf(err, errlen, "%s", rerr);
    snprintf(d->name, sizeof d->name, "%s", mmp_reader_name(r));
    mmp_header_copy(&d->hdr, mmp_reader_header(r));
    const char *nm = d->name;
    const mmp_tx_model *m = enc->clip;
    float mean[3], std[3];
    memcpy(mean, m->pre.mean, sizeof mean);
    memcpy(std, m->pre.std, sizeof std);
    d->ctx = enc->max_length;
    mmp_record rec;
    mmp_record_init(&rec);
    int rc, ret = -1, chw = -1;
    int64_t cap = 0;
    size_t dim = 0;
    char first[96] = "";
    while ((rc = mmp_reader_next(r, &rec)) == 1) {
        int64_t i = d->n;
        const mmp_tensor *t = mmp_record_cget(&rec, field);
        if (!t) { mmp_errf(err, errlen, "%s: record %lld: no tensor \"%s\" (--head clip needs image + text records)", nm, (long long)i, field); goto out; }
        if (!rec.text) { mmp_errf(err, errlen, "%s: record %lld: no text (--head clip needs image + text records)", nm, (long long)i); goto out; }
        char sh[64];
        mmp_shape_str(t->ndim, t->shape, sh, sizeof sh);
        int kind = t->dtype == MMP_U8 && t->ndim == 3 && t->shape[2] == 3                          ? 0
                   : (t->dtype == MMP_F32 || t->dtype == MMP_F16) && t->ndim == 3 && t->shape[0] == 3 ? 1
                                                                                                      : -1;
        if (kind < 0) {
            mmp_errf(err, errlen, "%s: record %lld: \"%s\" is %s %s; --head clip needs images: u8 [H,W,3] or normalized f32/f16 [3,H,W]",
                     nm, (long long)i, field, mmp_dtype_name(t->dtype), sh);
            goto out;
        }
        int64_t h = kind ? t->shape[1] : t->shape[0], w = kind ? t->shape[2] : t->shape[1];
        if (chw < 0) {
            if (kind == 1) {
                char msg[1024];
                int nrc = mmp_check_normalization(&d->hdr, mean, std, allow_mixed, nm, m->path, msg, sizeof msg);
                if (nrc < 0) { mmp_errf(err, errlen, "%s", msg); goto out; }
                if (nrc > 0) fprintf(stderr, "%s: warning: %s\n", mmp_progname(), msg);
            }
            if (h < 1 || w < 1 || h > 65536 || w > 65536) { mmp_errf(err, errlen, "%s: record %lld: \"%s\" is %s", nm, (long long)i, field, sh); goto out; }
            chw = kind;
            d->H = (int)h, d->W = (int)w;
            dim = 3 * (size_t)h * (size_t)w;
            snprintf(first, sizeof first, "%s %s", mmp_dtype_name(t->dtype), sh);
        } else if (kind != chw || h != d->H || w != d->W) {
            mmp_errf(err, errlen, "%s: record %lld: \"%s\" is %s %s, record 0's %s (all images of one size and kind: mmp-decode --size S)",
                     nm, (long long)i, field, mmp_dtype_name(t->dtype), sh, first);
            goto out;
        }
        if (d->n == cap) {
            cap = cap ? 2 * cap : 64;
            d->x = mmp_xrealloc(d->x, sizeof(float) * dim * (size_t)cap);
            d->ids = mmp_xrealloc(d->ids, sizeof(int32_t) * (size_t)d->ctx * (size_t)cap);
            d->lens = mmp_xrealloc(d->lens, sizeof(int) * (size_t)cap);
        }
        char e2[512];
        if (mmp_image_to_chw(t, chw, d->H, d->W, mean, std, d->x + (size_t)i * dim, e2, sizeof e2)) {
            mmp_errf(err, errlen, "%s: record %lld: \"%s\" %s", nm, (long long)i, field, e2);
            goto out;
        }
        int k = mmp_bpe_encode(enc->bpe, rec.text, strlen(rec.text), d->ctx, MMP_UTF8_ERROR, d->ids + (size_t)i * (size_t)d->ctx, e2,
                               sizeof e2);
        if (k < 0) { mmp_errf(err, errlen, "%s: record %lld: text: %s", nm, (long long)i, e2); goto out; }
        d->lens[i] = k;
        d->n++;
    }
    if (rc < 0) { mmp_errf(err, errlen, "%s", mmp_reader_error(r)); goto out; }
    if (d->n == 0) { mmp_errf(err, errlen, "%s: no records", nm); goto out; }
    ret = 0;
out:
    mmp_record_clear(&rec);
    mmp_reader_close(r);
    if (ret) data_free(d);
    return ret;
}

/* rows idx[0..m) into imgs / packed ids */
static void gather(const clip_data *d, const int64_t *idx, int m, float *imgs, int32_t *ids, int *lens) {
    size_t dim = 3 * (size_t)d->H * (size_t)d->W, T = 0;
    for (int b = 0; b < m; b++) {
        int64_t r = idx[b];
        memcpy(imgs + (size_t)b * dim, d->x + (size_t)r * dim, sizeof(float) * dim);
        memcpy(ids + T, d->ids + (size_t)r * (size_t)d->ctx, sizeof(int32_t) * (size_t)d->lens[r]);
        lens[b] = d->lens[r];
        T += (size_t)d->lens[r];
    }
}

/* ------------------------------------------------------------ the state */

typedef struct {
    mmp_train_cfg *cfg;
    mmp_clipft ft;
    mmp_text_encoder enc;
    char backbone[1024];
    int64_t step;
    int epoch, best_epoch, bad_epochs;
    double best_metric;
    float *bimg;
    int32_t *bids;
    int *blens;
} run_state;

static void grow_batch(run_state *s, const clip_data *d, int64_t B) {
    s->bimg = mmp_xrealloc(s->bimg, sizeof(float) * (size_t)B * 3 * (size_t)d->H * (size_t)d->W);
    s->bids = mmp_xrealloc(s->bids, sizeof(int32_t) * (size_t)B * (size_t)d->ctx);
    s->blens = mmp_xrealloc(s->blens, sizeof(int) * (size_t)B);
}

/* the training state first (as train/checkpoint.c: OUT never names a file
 * that is not there), then the weights; both carry the same optim_id */
static int save(run_state *s, const char *path, char *err, size_t errlen) {
    char oid[40];
    int64_t ids[3] = {s->step, s->epoch, s->best_epoch};
    mmp_train_optim_id(s->ft.tr, s->ft.ntr, ids, 3, oid, sizeof oid);
    mmp_st_writer w;
    mmp_st_writer_init(&w);
    mmp_train_optim_add(s->ft.tr, s->ft.ntr, &s->cfg->opt, &w);
    mmp_meta *m = &w.meta;
    char buf[64];
    mmp_meta_set(m, "format", "mmpipe-clip-optim");
    mmp_meta_set(m, "optim_id", oid);
    mmp_train_cfg_to_meta(s->cfg, m);
    mmp_meta_set(m, "backbone", s->backbone);
    mmp_meta_set(m, "lock", mmp_clipft_lock_names[s->ft.lock]);
#define SETF(k, fmt, v) (snprintf(buf, sizeof buf, fmt, v), mmp_meta_set(m, k, buf))
    SETF("step", "%lld", (long long)s->step);
    SETF("epoch", "%d", s->epoch);
    SETF("best_metric", "%.17g", s->best_metric);
    SETF("best_epoch", "%d", s->best_epoch);
    SETF("bad_epochs", "%d", s->bad_epochs);
#undef SETF
    mmp_meta_set(m, "mmpipe_version", MMP_VERSION);
    char *op = mmp_train_optim_path(path);
    int rc = mmp_st_writer_write(&w, op, err, errlen);
    free(op);
    mmp_st_writer_free(&w);
    if (rc) return -1;
    mmp_meta wm;
    mmp_meta_init(&wm);
    mmp_meta_set(&wm, "optim_id", oid);
    mmp_meta_set(&wm, "head", "clip"); /* (mmp_clipft_is_checkpoint without its .optim file) */
    rc = mmp_clipft_save_weights(&s->ft, path, &wm, err, errlen);
    mmp_meta_free(&wm);
    return rc;
}

/* The loader's and the tokenizer's files beside the model go beside OUT (so
 * that mmp-embed, mmp-embed-text and mmp-eval --model OUT find them): copied
 * when missing there; one that is there and differs is an error. */
static int read_all(const char *path, char **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char *b = NULL;
    size_t n = 0, cap = 0, k;
    do {
        if (n + 65536 > cap) b = mmp_xrealloc(b, cap = 2 * cap + 65536);
        k = fread(b + n, 1, cap - n, f);
        n += k;
    } while (k > 0);
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(b); return -1; }
    *buf = b, *len = n;
    return 0;
}

static char *dir_of(const char *path) {
    const char *s = strrchr(path, '/');
    if (!s) return mmp_xstrdup(".");
    if (s == path) return mmp_xstrdup("/");
    return mmp_xasprintf("%.*s", (int)(s - path), path);
}

static int copy_side_files(const char *model_file, const char *out, char *err, size_t errlen) {
    static const char *const names[] = {"config.json", "preprocessor_config.json", "open_clip_config.json", "vocab.json",
                                        "merges.txt", "bpe_simple_vocab_16e6.txt.gz", "tokenizer.json", "tokenizer_config.json",
                                        "special_tokens_map.json", NULL};
    char *sd = dir_of(model_file), *dd = dir_of(out);
    int ret = 0;
    struct stat a, b;
    if (stat(sd, &a) == 0 && stat(dd, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) goto done; /* the same folder */
    for (int i = 0; names[i] && !ret; i++) {
        char *src = mmp_xasprintf("%s/%s", sd, names[i]), *dst = mmp_xasprintf("%s/%s", dd, names[i]);
        char *sb = NULL, *db = NULL;
        size_t sl = 0, dl = 0;
        if (read_all(src, &sb, &sl) == 0) {
            if (read_all(dst, &db, &dl) == 0) {
                if (dl != sl || memcmp(sb, db, sl))
                    ret = mmp_errf(err, errlen, "%s: differs from the backbone's %s (another model's file beside --out?)", dst, src);
            } else {
                char *tmp = mmp_xasprintf("%s.tmp%ld", dst, (long)getpid());
                FILE *f = fopen(tmp, "wb");
                if (!f || fwrite(sb, 1, sl, f) != sl || fclose(f) || rename(tmp, dst)) {
                    ret = mmp_errf(err, errlen, "%s: cannot write (%s)", dst, strerror(errno));
                    unlink(tmp);
                }
                free(tmp);
            }
        }
        free(sb), free(db), free(src), free(dst);
    }
done:
    free(sd), free(dd);
    return ret;
}

/* ------------------------------------------------------------ the loop */

static double run_epoch(run_state *s, const clip_data *d, FILE *log, int log_every, mmp_tensorboard_writer *tb, int target,
                        char *err, size_t errlen) {
    mmp_train_cfg *c = s->cfg;
    int64_t n = d->n, B = c->batch;
    grow_batch(s, d, B);
    int64_t *perm = mmp_xmalloc(sizeof(int64_t) * (size_t)n);
    uint64_t rng = mmp_rng_derive(c->seed, 0x5348554646ULL /* SHUFF */, (uint64_t)s->epoch);
    mmp_rng_permutation(&rng, perm, n);
    double sum = 0;
    int64_t counted = 0;
    int live = target > 0 && mmp_progress_enabled();
    uint64_t nsteps = 0, done = 0;
    char what[64] = "";
    double t0 = mmp_now();
    for (int64_t st = 0; st < n; st += B) nsteps += n - st >= 2;
    snprintf(what, sizeof what, "epoch %d/%d", s->epoch + 1, target);
    for (int64_t st = 0; st < n; st += B) {
        int m = (int)(n - st < B ? n - st : B);
        if (m < 2) continue; /* no in-batch negatives */
        gather(d, perm + st, m, s->bimg, s->bids, s->blens);
        mmp_clipft_set_step(&s->ft, mmp_rng_derive(c->seed, 0x44524F50ULL /* DROP */, (uint64_t)s->step)); /* LoRA dropout */
        double l = mmp_clipft_batch(&s->ft, s->bimg, m, d->H, d->W, s->bids, s->blens, 1, NULL, NULL, err, errlen);
        if (isnan(l) && err[0]) { free(perm); return NAN; }
        double lr = mmp_sched_lr(&c->sched, s->step);
        mmp_clipft_update(&s->ft, &c->opt, c->clip, s->step, lr);
        s->step++;
        sum += l * m;
        counted += m;
        if (log_every > 0 && s->step % log_every == 0) {
            if (log)
                fprintf(log, "{\"step\":%lld,\"epoch\":%d,\"loss\":%.9g,\"lr\":%.9g,\"logit_scale\":%.9g,\"time\":%.6f}\n",
                        (long long)s->step, s->epoch + 1, l, lr, s->ft.scale.w[0], mmp_wall_time());
            if (tb) {
                mmp_tensorboard_scalar(tb, "train/loss", s->step, l);
                mmp_tensorboard_scalar(tb, "train/lr", s->step, lr);
            }
        }
        if (live) mmp_progress_count(what, "steps", ++done, nsteps, t0);
    }
    free(perm);
    s->epoch++;
    return counted ? sum / (double)counted : NAN;
}

/* loss over batches of --batch-size in order (batches of one left out),
 * image->text top-1 retrieval among all dev pairs */
static int evaluate(run_state *s, const clip_data *d, double *loss, double *i2t, double *t2i, char *err, size_t errlen) {
    int64_t n = d->n, B = s->cfg->batch;
    int E = s->ft.E;
    grow_batch(s, d, B);
    int64_t *idx = mmp_xmalloc(sizeof(int64_t) * (size_t)B);
    float *pa = mmp_xmalloc(sizeof(float) * (size_t)n * (size_t)E), *pb = mmp_xmalloc(sizeof(float) * (size_t)n * (size_t)E);
    double num = 0, den = 0;
    int ret = 0;
    for (int64_t st = 0; st < n && !ret; st += B) {
        int m = (int)(n - st < B ? n - st : B);
        for (int k = 0; k < m; k++) idx[k] = st + k;
        gather(d, idx, m, s->bimg, s->bids, s->blens);
        if (m >= 2) {
            double l = mmp_clipft_batch(&s->ft, s->bimg, m, d->H, d->W, s->bids, s->blens, 0, NULL, NULL, err, errlen);
            if (isnan(l) && err[0]) { ret = -1; break; }
            num += l * m, den += m;
            memcpy(pa + st * E, s->ft.za, sizeof(float) * (size_t)m * (size_t)E);
            memcpy(pb + st * E, s->ft.zb, sizeof(float) * (size_t)m * (size_t)E);
        } else if (mmp_tx_image_embed(s->ft.m, s->bimg, m, d->H, d->W, MMP_TX_OUT_EMBED, pa + st * E, NULL, err, errlen) ||
                   mmp_tx_text_embed(s->ft.m, s->bids, s->blens, m, MMP_TX_OUT_EMBED, pb + st * E, NULL, err, errlen))
            ret = -1;
    }
    if (!ret) {
        mmp_l2_normalize_rows(pa, n, E);
        mmp_l2_normalize_rows(pb, n, E);
        int ks[1] = {1};
        mmp_retrieval_recall(pa, pb, n, E, ks, 1, i2t, t2i);
        *loss = den > 0 ? num / den : NAN;
    }
    free(idx), free(pa), free(pb);
    return ret;
}

static void die_if(int rc, const char *err) {
    if (rc) mmp_die("%s", err);
}

/* 1 when the weights file holds LoRA adapters (--unfreeze lora) */
static int ckpt_has_lora(const char *path) {
    mmp_safetensors st;
    char e[256];
    if (mmp_st_open(&st, path, e, sizeof e)) return 0;
    int r = 0;
    for (int i = 0; i < st.n && !r; i++) r = strstr(st.entries[i].name, ".lora_A.") != NULL;
    mmp_st_close(&st);
    return r;
}

static void lora_opts(const mmp_train_cfg *c, mmp_tx_lora_opts *o) {
    mmp_tx_lora_opts_default(o);
    o->r = c->lora_rank, o->alpha = c->lora_alpha, o->dropout = c->lora_dropout, o->seed = c->seed;
    o->targets = c->lora_targets[0] ? c->lora_targets : NULL;
}

int mmp_clipft_write_peft(const char *ckpt, const char *dir, char *err, size_t errlen) {
    mmp_safetensors ost, cst;
    if (mmp_train_optim_open(ckpt, "mmpipe-clip-optim", NULL, &ost, err, errlen)) return -1;
    mmp_train_cfg cfg;
    mmp_train_cfg_defaults(&cfg);
    int rc = mmp_train_cfg_from_meta(&cfg, &ost.meta, err, errlen);
    const char *b = mmp_meta_get(&ost.meta, "backbone"), *lk = mmp_meta_get(&ost.meta, "lock");
    char backbone[1024];
    snprintf(backbone, sizeof backbone, "%s", b ? b : "");
    int lock = MMP_CLIPFT_LOCK_NONE;
    for (int k = 0; lk && mmp_clipft_lock_names[k]; k++)
        if (!strcmp(lk, mmp_clipft_lock_names[k])) lock = k;
    mmp_st_close(&ost);
    if (rc) return -1;
    if (cfg.unfreeze_kind != MMP_UNFREEZE_LORA || !ckpt_has_lora(ckpt))
        return mmp_errf(err, errlen, "not trained with --unfreeze lora: no adapters to write");
    mmp_tx_model *m = mmp_tx_model_load(backbone, err, errlen);
    if (!m) return -1;
    mmp_clipft ft;
    mmp_tx_lora_opts lo;
    lora_opts(&cfg, &lo);
    rc = -1;
    if (mmp_clipft_init(&ft, m, lock, err, errlen)) goto out_m;
    if (mmp_clipft_lora(&ft, &lo, err, errlen) || mmp_st_open(&cst, ckpt, err, errlen)) goto out;
    rc = mmp_clipft_lora_read(&ft, &cst, err, errlen);
    mmp_st_close(&cst);
    if (!rc) rc = mmp_tx_lora_save(ft.lora, dir, err, errlen);
out:
    mmp_clipft_free(&ft);
out_m:
    mmp_tx_model_free(m);
    return rc;
}

int mmp_clipft_cmd(const mmp_clipft_cmd_args *a) {
    char err[1024] = "";
    run_state S;
    memset(&S, 0, sizeof S);
    S.cfg = a->cfg;
    S.best_metric = -INFINITY;
    mmp_train_cfg *cfg = a->cfg;
    const char *ckpt = a->init ? a->init : a->resume;
    int lock = a->lock < 0 ? MMP_CLIPFT_LOCK_NONE : a->lock;
    const char *model = cfg->backbone;
    mmp_safetensors ost;
    int have_ost = 0;
    if (ckpt) { /* the training state beside the weights: configuration <- command line */
        mmp_safetensors wst; /* the weights' optim_id names their .optim file */
        die_if(mmp_st_open(&wst, ckpt, err, sizeof err), err);
        const char *wid = mmp_meta_get(&wst.meta, "optim_id");
        char id[40];
        snprintf(id, sizeof id, "%s", wid ? wid : "");
        mmp_st_close(&wst);
        die_if(mmp_train_optim_open(ckpt, "mmpipe-clip-optim", id[0] ? id : NULL, &ost, err, sizeof err), err);
        have_ost = 1;
        mmp_train_cfg_defaults(cfg);
        die_if(mmp_train_cfg_from_meta(cfg, &ost.meta, err, sizeof err), err);
        for (int i = 0; i < a->given->n; i++) {
            const char *k = a->given->keys[i], *v = a->given->vals[i], *cur = mmp_meta_get(&ost.meta, k);
            if (!strcmp(k, "backbone")) continue; /* the weights are the checkpoint's */
            if (mmp_train_cfg_is_arch(k) && cur && strcmp(cur, v))
                mmp_die("%s: the checkpoint has %s=%s; cannot change it to %s", ckpt, k, cur, v);
            die_if(mmp_train_cfg_set(cfg, k, v, err, sizeof err), err);
        }
        const char *lk = mmp_meta_get(&ost.meta, "lock");
        int clock = MMP_CLIPFT_LOCK_NONE;
        for (int k = 0; lk && mmp_clipft_lock_names[k]; k++)
            if (!strcmp(lk, mmp_clipft_lock_names[k])) clock = k;
        if (a->lock >= 0 && a->lock != clock)
            mmp_die("%s: the checkpoint has lock=%s; cannot change it to %s", ckpt, mmp_clipft_lock_names[clock], mmp_clipft_lock_names[a->lock]);
        lock = clock;
        const char *v;
        if ((v = mmp_meta_get(&ost.meta, "step"))) S.step = strtoll(v, NULL, 10);
        if ((v = mmp_meta_get(&ost.meta, "epoch"))) S.epoch = atoi(v);
        if ((v = mmp_meta_get(&ost.meta, "best_epoch"))) S.best_epoch = atoi(v);
        if ((v = mmp_meta_get(&ost.meta, "bad_epochs"))) S.bad_epochs = atoi(v);
        if ((v = mmp_meta_get(&ost.meta, "best_metric"))) S.best_metric = strtod(v, NULL);
        snprintf(S.backbone, sizeof S.backbone, "%s", (v = mmp_meta_get(&ost.meta, "backbone")) ? v : "");
        model = ckpt;
        if (ckpt_has_lora(ckpt)) { /* the base is the backbone's (the adapters are read below) */
            if (cfg->unfreeze_kind != MMP_UNFREEZE_LORA)
                mmp_die("%s: the checkpoint holds LoRA adapters: keep --unfreeze lora, or export them (mmp-export --peft)", ckpt);
            model = S.backbone;
        }
    } else {
        if (!model[0]) mmp_die("--head clip needs --backbone CLIP (a Hugging Face CLIPModel or open_clip model file or folder)");
        snprintf(S.backbone, sizeof S.backbone, "%s", model);
    }
    if (!mmp_meta_get(a->given, "loss") && !ckpt) cfg->loss = MMP_LOSS_CONTRASTIVE; /* the only loss of --head clip */
    mmp_train_cfg_resolve(cfg);
    if (cfg->unfreeze_kind != MMP_UNFREEZE_ALL && cfg->unfreeze_kind != MMP_UNFREEZE_LORA)
        mmp_die("--head clip: --unfreeze %s: all or lora (--lock image|text locks a tower)", cfg->unfreeze);
    if (cfg->loss != MMP_LOSS_CONTRASTIVE) mmp_die("--head clip needs --loss contrastive (got %s)", mmp_loss_name(cfg->loss));
    if (cfg->batch < 2) mmp_die("--head clip: --batch-size %lld has no in-batch negatives (the contrastive loss needs at least 2)",
                                (long long)cfg->batch);
    if (!mmp_text_is_clip(model)) { /* say what it is instead */
        mmp_tx_model *probe = mmp_tx_model_load(model, err, sizeof err);
        if (!probe) mmp_die("--backbone %s: not a CLIP model: %s", model, err);
        const char *fam = mmp_tx_family_name(probe->family);
        mmp_tx_model_free(probe);
        mmp_die("--backbone %s: a %s model; --head clip needs a CLIP model (Hugging Face CLIPModel or open_clip)", model, fam);
    }
    mmp_text_encoder_opts eo = {0};
    die_if(mmp_text_encoder_load(&S.enc, model, &eo, err, sizeof err), err);
    int threads = a->threads;
    if (threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        threads = nc < 1 ? 1 : nc > 4 ? 4 : (int)nc;
    }
    mmp_tx_model_set_threads(S.enc.clip, threads);
    mmp_tx_model_set_recompute(S.enc.clip, cfg->recompute); /* --recompute: both towers' blocks */
    die_if(mmp_clipft_init(&S.ft, S.enc.clip, lock, err, sizeof err), err);
    if (cfg->unfreeze_kind == MMP_UNFREEZE_LORA) {
        mmp_tx_lora_opts lo;
        lora_opts(cfg, &lo);
        if (mmp_clipft_lora(&S.ft, &lo, err, sizeof err)) mmp_die("--unfreeze lora: %s", err);
        if (ckpt && model != ckpt) {
            mmp_safetensors cst;
            die_if(mmp_st_open(&cst, ckpt, err, sizeof err), err);
            die_if(mmp_clipft_lora_read(&S.ft, &cst, err, sizeof err), err);
            mmp_st_close(&cst);
        }
    }
    if (have_ost) {
        die_if(mmp_train_optim_read(S.ft.tr, S.ft.ntr, &cfg->opt, &ost, err, sizeof err), err);
        mmp_st_close(&ost);
    }
    const char *field = strcmp(cfg->feature, "embedding") ? cfg->feature : "image";
    double t0 = mmp_now();
    clip_data ds, dev;
    die_if(data_load(&ds, a->in, field, &S.enc, a->allow_mixed, err, sizeof err), err);
    double t_load = mmp_now() - t0;
    if (ds.n < 2) mmp_die("%s: %lld record; the contrastive loss needs at least 2 (in-batch negatives)", ds.name, (long long)ds.n);
    if (ds.n % cfg->batch == 1)
        fprintf(stderr, "%s: note: the last batch of every epoch holds one record (no in-batch negatives): it is skipped\n", mmp_progname());
    if (cfg->sched.total <= 0) cfg->sched.total = (int64_t)cfg->epochs * ((ds.n + cfg->batch - 1) / cfg->batch);
    int start_epoch = S.epoch;
    int target = a->resume ? cfg->epochs : S.epoch + (a->init && !mmp_meta_get(a->given, "epochs") ? 1 : cfg->epochs);
    if (a->init) cfg->epochs = target;
    if (a->dev) die_if(data_load(&dev, a->dev, field, &S.enc, a->allow_mixed, err, sizeof err), err);
    char *last = a->dev ? (a->last ? mmp_xstrdup(a->last) : mmp_train_last_path(a->out)) : mmp_xstrdup(a->out);
    die_if(copy_side_files(S.enc.clip->path, a->out, err, sizeof err), err);
    if (strcmp(last, a->out)) die_if(copy_side_files(S.enc.clip->path, last, err, sizeof err), err);
    FILE *log = NULL;
    if (a->log && !(log = fopen(a->log, ckpt ? "a" : "w"))) mmp_die("%s: cannot open for writing", a->log);
    mmp_tensorboard_writer tbw, *tb = NULL;
    if (a->tb_dir) {
        die_if(mmp_tensorboard_open(&tbw, a->tb_dir, err, sizeof err), err);
        tb = &tbw;
        if (S.step > 0) mmp_tensorboard_purge_from(tb, S.step + 1);
    }
    fprintf(stderr, "%s: CLIP fine-tuning of %s (%s): %d trainable tensors%s, %lld pairs of %dx%d images, batch %lld\n", mmp_progname(),
            model, mmp_tx_family_name(S.enc.clip->family), S.ft.ntr,
            lock == MMP_CLIPFT_LOCK_IMAGE ? " (image tower locked)" : lock == MMP_CLIPFT_LOCK_TEXT ? " (text tower locked)" : "",
            (long long)ds.n, ds.H, ds.W, (long long)cfg->batch);
    { /* what one batch needs (texts at the full context: an upper bound) */
        int64_t sv, wk, P = 0;
        mmp_clipft_batch_bytes(&S.ft, (int)(cfg->batch < ds.n ? cfg->batch : ds.n), ds.H, ds.W, ds.ctx, &sv, &wk);
        for (int i = 0; i < S.ft.ntr; i++) P += (int64_t)S.ft.tr[i].n * (int64_t)sizeof(float);
        int nstate = cfg->opt.kind == MMP_OPT_ADAMW ? 2 : cfg->opt.momentum > 0 ? 1 : 0;
        const double MiB = 1048576.0;
        fprintf(stderr, "%s: memory for a batch of %lld pairs of 3x%dx%d images and texts of up to %d tokens: %.1f MiB saved "
                "activations + %.1f MiB backward buffers; %.1f MiB parameters + %.1f MiB gradients + %.1f MiB optimizer state\n",
                mmp_progname(), (long long)(cfg->batch < ds.n ? cfg->batch : ds.n), ds.H, ds.W, ds.ctx, sv / MiB, wk / MiB, P / MiB,
                P / MiB, nstate * P / MiB);
    }
    double tt = mmp_now(), ct = (double)clock() / CLOCKS_PER_SEC;
    int ran = 0;
    double train_loss = NAN, dev_loss = NAN, dev_i2t = NAN, dev_t2i = NAN;
    while (S.epoch < target && (a->stop_after < 0 || ran < a->stop_after)) {
        if (a->dev && cfg->patience > 0 && S.bad_epochs >= cfg->patience) break;
        double te = mmp_now();
        err[0] = 0;
        train_loss = run_epoch(&S, &ds, log, a->log_every, tb, target, err, sizeof err);
        if (err[0]) mmp_die("%s", err);
        ran++;
        if (!isfinite(train_loss)) mmp_die("epoch %d: the training loss is not finite (lower --lr?)", S.epoch);
        int improved = 0;
        if (a->dev) {
            die_if(evaluate(&S, &dev, &dev_loss, &dev_i2t, &dev_t2i, err, sizeof err), err);
            if (dev_i2t > S.best_metric) {
                S.best_metric = dev_i2t, S.best_epoch = S.epoch, S.bad_epochs = 0;
                improved = 1;
            } else
                S.bad_epochs++;
        }
        if (log) {
            fprintf(log, "{\"epoch\":%d,\"step\":%lld,\"train_loss\":%.9g,\"lr\":%.9g", S.epoch, (long long)S.step, train_loss,
                    mmp_sched_lr(&cfg->sched, S.step > 0 ? S.step - 1 : 0));
            if (a->dev)
                fprintf(log, ",\"dev_loss\":%.9g,\"dev_metric\":%.9g,\"dev_i2t_top1\":%.9g,\"dev_t2i_top1\":%.9g", dev_loss, dev_i2t,
                        dev_i2t, dev_t2i);
            fprintf(log, ",\"logit_scale\":%.9g,\"seconds\":%.3f,\"time\":%.6f}\n", S.ft.scale.w[0], mmp_now() - te, mmp_wall_time());
            fflush(log);
        }
        if (tb) {
            mmp_tensorboard_scalar(tb, "epoch/train_loss", S.step, train_loss);
            if (a->dev) {
                mmp_tensorboard_scalar(tb, "dev/loss", S.step, dev_loss);
                mmp_tensorboard_scalar(tb, "dev/i2t_top1", S.step, dev_i2t);
            }
            die_if(mmp_tensorboard_flush(tb, err, sizeof err), err);
        }
        if (improved) die_if(save(&S, a->out, err, sizeof err), err);
        die_if(save(&S, last, err, sizeof err), err);
        if (a->dev)
            mmp_progress_line("epoch %d/%d: train loss %.4f, dev loss %.4f, dev image->text top-1 %.4f%s", S.epoch, target, train_loss,
                              dev_loss, dev_i2t, improved ? " (best)" : "");
        else
            mmp_progress_line("epoch %d/%d: train loss %.4f", S.epoch, target, train_loss);
        if (a->dev && cfg->patience > 0 && S.bad_epochs >= cfg->patience)
            fprintf(stderr, "%s: early stop after epoch %d: no dev improvement for %d epochs (best %.4f at epoch %d)\n", mmp_progname(),
                    S.epoch, S.bad_epochs, S.best_metric, S.best_epoch);
    }
    mmp_progress_done();
    if (ran == 0 && !(a->dev && S.best_epoch > 0)) {
        die_if(save(&S, a->out, err, sizeof err), err);
        if (strcmp(last, a->out)) die_if(save(&S, last, err, sizeof err), err);
    }
    double secs = mmp_now() - tt, csecs = (double)clock() / CLOCKS_PER_SEC - ct;
    fprintf(stderr, "%s: %lld pairs (clip, contrastive loss); epochs %d..%d, %lld steps; %.2f s training (%.2f s CPU), %.2f s loading",
            mmp_progname(), (long long)ds.n, start_epoch + 1, S.epoch, (long long)S.step, secs, csecs, t_load);
    if (ran) fprintf(stderr, "; train loss %.4f", train_loss);
    if (a->dev) fprintf(stderr, "; dev image->text top-1 %.4f (best %.4f at epoch %d)", dev_i2t, S.best_metric, S.best_epoch);
    fputc('\n', stderr);
    if (log) fclose(log);
    if (tb) die_if(mmp_tensorboard_close(tb, err, sizeof err), err);
    free(last);
    if (a->dev) data_free(&dev);
    data_free(&ds);
    free(S.bimg), free(S.bids), free(S.blens);
    mmp_clipft_free(&S.ft);
    mmp_text_encoder_free(&S.enc);
    return 0;
}
