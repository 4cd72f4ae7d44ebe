/* train/data.c: reading a whole stream of feature records into memory, and
 * the checks of a data set against a model (dims, classes, provenance). */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "image/augment.h"
#include "nn/nn.h"
#include "nn/provenance.h"
#include "train/caption_train.h"
#include "train/train.h"
#include "train/train_internal.h"
#include "train/tx_head.h"

static int is_float(mmp_dtype t) { return t == MMP_F32 || t == MMP_F16 || t == MMP_BF16; }

int mmp_dataset_check_label(const char *name, int64_t rec, int64_t label, int64_t ncls, char *err, size_t errlen) {
    if (label < 0) return mmp_errf(err, errlen, "%s: record %lld: no label", name, (long long)rec);
    if (ncls > 0 && label >= ncls)
        return mmp_errf(err, errlen, "%s: record %lld: label %lld out of range (%lld classes in the header)", name,
                        (long long)rec, (long long)label, (long long)ncls);
    return 0;
}

int mmp_dataset_load(mmp_dataset *d, const char *path, const char *feature, const char *pair,
                     const char *labels_field, int need_label, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    mmp_header_init(&d->hdr);
    char rerr[512];
    mmp_reader *r = mmp_reader_open(path, rerr, sizeof rerr);
    if (!r) {
        mmp_errf(err, errlen, "%s", rerr);
        return -1;
    }
    snprintf(d->name, sizeof d->name, "%s", mmp_reader_name(r));
    mmp_header_copy(&d->hdr, mmp_reader_header(r));
    const char *nm = d->name;
    int64_t cap = 0, ncls_hdr = d->hdr.nclasses;
    mmp_record rec;
    mmp_record_init(&rec);
    int rc, ret = -1;
    d->dim = d->dim2 = d->ncls = -1;
    int64_t maxlab = -1;
    while ((rc = mmp_reader_next(r, &rec)) == 1) {
        int64_t i = d->n;
        const mmp_tensor *t = mmp_record_cget(&rec, feature);
        if (!t) { mmp_errf(err, errlen, "%s: record %lld: no tensor \"%s\"", nm, (long long)i, feature); goto out; }
        if (!is_float(t->dtype) || t->ndim != 1) {
            char sh[64];
            mmp_shape_str(t->ndim, t->shape, sh, sizeof sh);
            mmp_errf(err, errlen, "%s: record %lld: \"%s\" is %s %s, expected a float vector [D]", nm,
                   (long long)i, feature, mmp_dtype_name(t->dtype), sh);
            goto out;
        }
        if (d->dim < 0) d->dim = t->shape[0];
        if (t->shape[0] != d->dim || d->dim == 0) {
            mmp_errf(err, errlen, "%s: record %lld: \"%s\" has %lld values, earlier records %lld", nm,
                   (long long)i, feature, (long long)t->shape[0], (long long)d->dim);
            goto out;
        }
        const mmp_tensor *t2 = NULL;
        if (pair) {
            t2 = mmp_record_cget(&rec, pair);
            if (!t2) { mmp_errf(err, errlen, "%s: record %lld: no tensor \"%s\" (the pair embedding; see --pair-field)", nm, (long long)i, pair); goto out; }
            if (!is_float(t2->dtype) || t2->ndim != 1 || t2->shape[0] == 0 ||
                (d->dim2 >= 0 && t2->shape[0] != d->dim2)) {
                mmp_errf(err, errlen, "%s: record %lld: \"%s\" must be a float vector of one length", nm, (long long)i, pair);
                goto out;
            }
            d->dim2 = t2->shape[0];
        }
        const mmp_tensor *tl = NULL;
        if (labels_field) {
            tl = mmp_record_cget(&rec, labels_field);
            if (!tl) { mmp_errf(err, errlen, "%s: record %lld: no tensor \"%s\" (multi-label targets)", nm, (long long)i, labels_field); goto out; }
            if (!is_float(tl->dtype) || tl->ndim != 1 || tl->shape[0] == 0 || (d->ncls >= 0 && tl->shape[0] != d->ncls) ||
                (ncls_hdr > 0 && tl->shape[0] != ncls_hdr)) {
                mmp_errf(err, errlen, "%s: record %lld: \"%s\" must be a float vector [C] (C = number of classes)", nm, (long long)i, labels_field);
                goto out;
            }
            d->ncls = tl->shape[0];
        }
        if (need_label && mmp_dataset_check_label(nm, i, rec.label, ncls_hdr, err, errlen)) goto out;
        if (d->n == cap) {
            cap = cap ? cap * 2 : 1024;
            d->x = mmp_xrealloc(d->x, sizeof(float) * (size_t)(cap * d->dim));
            if (pair) d->x2 = mmp_xrealloc(d->x2, sizeof(float) * (size_t)(cap * d->dim2));
            if (labels_field) d->t = mmp_xrealloc(d->t, sizeof(float) * (size_t)(cap * d->ncls));
            d->y = mmp_xrealloc(d->y, sizeof(int64_t) * (size_t)cap);
            d->ids = mmp_xrealloc(d->ids, sizeof(char *) * (size_t)cap);
        }
        mmp_tensor_to_f32(t, d->x + i * d->dim);
        if (pair) mmp_tensor_to_f32(t2, d->x2 + i * d->dim2);
        if (labels_field) mmp_tensor_to_f32(tl, d->t + i * d->ncls);
        for (int64_t k = 0; k < d->dim; k++)
            if (!isfinite(d->x[i * d->dim + k])) {
                mmp_errf(err, errlen, "%s: record %lld: \"%s\" has a non-finite value", nm, (long long)i, feature);
                goto out;
            }
        if (pair)
            for (int64_t k = 0; k < d->dim2; k++)
                if (!isfinite(d->x2[i * d->dim2 + k])) {
                    mmp_errf(err, errlen, "%s: record %lld: \"%s\" has a non-finite value", nm, (long long)i, pair);
                    goto out;
                }
        d->y[i] = rec.label;
        if (rec.label > maxlab) maxlab = rec.label;
        d->ids[i] = rec.id ? mmp_xstrdup(rec.id) : NULL;
        d->n++;
    }
    if (rc < 0) {
        mmp_errf(err, errlen, "%s", mmp_reader_error(r)); /* "NAME: record N: what" */
        goto out;
    }
    if (d->n == 0) {
        mmp_errf(err, errlen, "%s: no records", nm);
        goto out;
    }
    /* shrink to fit (the arrays grew by doubling) */
    d->x = mmp_xrealloc(d->x, sizeof(float) * (size_t)(d->n * d->dim));
    if (pair) d->x2 = mmp_xrealloc(d->x2, sizeof(float) * (size_t)(d->n * d->dim2));
    if (!labels_field) d->ncls = ncls_hdr > 0 ? ncls_hdr : maxlab + 1;
    if (!pair) d->dim2 = 0;
    ret = 0;
out:
    mmp_record_clear(&rec);
    mmp_reader_close(r);
    if (ret) mmp_dataset_free(d);
    return ret;
}

/* ------------------------------------------------------------------ */
/* checks of a data set against a model                                */
/* ------------------------------------------------------------------ */

int mmp_train_provenance_compatible(const char *a, const char *b) {
    if (!a || !b || !*a || !*b) return 1;
    return strcmp(a, b) == 0;
}

/* ------------------------------------------------------------------ */
/* image records (the whole network from the image: --from input)      */
/* ------------------------------------------------------------------ */

int mmp_backbone_normalization(const char *path, float mean[3], float std[3], char *err, size_t errlen) {
    static const float m0[3] = {0.485f, 0.456f, 0.406f}, s0[3] = {0.229f, 0.224f, 0.225f};
    memcpy(mean, m0, sizeof m0);
    memcpy(std, s0, sizeof s0);
    mmp_safetensors st;
    char e2[512];
    if (mmp_st_open(&st, path, e2, sizeof e2)) return mmp_errf(err, errlen, "--backbone: %s", e2);
    const char *v;
    int rc = 0;
    if ((v = mmp_meta_get(&st.meta, "input_mean")) && mmp_nn_parse3(v, mean))
        rc = mmp_errf(err, errlen, "%s: bad __metadata__ input_mean \"%s\" (want a,b,c)", path, v);
    if (!rc && (v = mmp_meta_get(&st.meta, "input_std")) && mmp_nn_parse3(v, std))
        rc = mmp_errf(err, errlen, "%s: bad __metadata__ input_std \"%s\" (want a,b,c)", path, v);
    for (int k = 0; !rc && k < 3; k++)
        if (!(std[k] > 0)) rc = mmp_errf(err, errlen, "%s: __metadata__ input_std must be positive", path);
    mmp_st_close(&st);
    return rc;
}

int mmp_image_to_chw(const mmp_tensor *t, int chw, int64_t H, int64_t W, const float mean[3], const float std[3], float *out,
                     char *err, size_t errlen) {
    char sh[64];
    mmp_shape_str(t->ndim, t->shape, sh, sizeof sh);
    if (!chw) {
        if (t->dtype != MMP_U8 || t->ndim != 3 || t->shape[2] != 3)
            return mmp_errf(err, errlen, "is %s %s, expected u8 [H,W,3] (as the earlier records)", mmp_dtype_name(t->dtype), sh);
        if (t->shape[0] != H || t->shape[1] != W)
            return mmp_errf(err, errlen, "is %lldx%lld, earlier images %lldx%lld (resize all to one size: mmp-decode --size)",
                            (long long)t->shape[0], (long long)t->shape[1], (long long)H, (long long)W);
        const uint8_t *in = t->data;
        size_t n = (size_t)(H * W);
        /* torchvision ToTensor + Normalize: (x/255 - mean)/std in f32 */
        for (int c = 0; c < 3; c++)
            for (size_t i = 0; i < n; i++) out[(size_t)c * n + i] = ((float)in[i * 3 + (size_t)c] / 255.0f - mean[c]) / std[c];
        return 0;
    }
    if ((t->dtype != MMP_F32 && t->dtype != MMP_F16) || t->ndim != 3 || t->shape[0] != 3)
        return mmp_errf(err, errlen, "is %s %s, expected f32/f16 [3,H,W] (as the earlier records)", mmp_dtype_name(t->dtype), sh);
    if (t->shape[1] != H || t->shape[2] != W)
        return mmp_errf(err, errlen, "is %lldx%lld, earlier images %lldx%lld (resize all to one size: mmp-decode --size)",
                        (long long)t->shape[1], (long long)t->shape[2], (long long)H, (long long)W);
    mmp_tensor_to_f32(t, out);
    for (int64_t i = 0; i < 3 * H * W; i++)
        if (!isfinite(out[i])) return mmp_errf(err, errlen, "has a non-finite value");
    return 0;
}

int mmp_dataset_load_images(mmp_dataset *d, const char *path, const char *field, const float mean[3], const float std[3],
                            int allow_mixed, const char *model, int need_label, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    mmp_header_init(&d->hdr);
    char rerr[512];
    mmp_reader *r = mmp_reader_open(path, rerr, sizeof rerr);
    if (!r) return mmp_errf(err, errlen, "%s", rerr);
    snprintf(d->name, sizeof d->name, "%s", mmp_reader_name(r));
    mmp_header_copy(&d->hdr, mmp_reader_header(r));
    const char *nm = d->name;
    int64_t cap = 0, ncls_hdr = d->hdr.nclasses, maxlab = -1;
    mmp_record rec;
    mmp_record_init(&rec);
    int rc, ret = -1, chw = -1;
    float m[3], s[3];
    memcpy(m, mean, sizeof m);
    memcpy(s, std, sizeof s);
    d->dim = -1;
    while ((rc = mmp_reader_next(r, &rec)) == 1) {
        int64_t i = d->n;
        const mmp_tensor *t = mmp_record_cget(&rec, field);
        if (!t) { mmp_errf(err, errlen, "%s: record %lld: no tensor \"%s\" (the images; see --feature)", nm, (long long)i, field); goto out; }
        if (chw < 0) { /* the first record sets the kind and the size */
            char sh[64];
            mmp_shape_str(t->ndim, t->shape, sh, sizeof sh);
            if (t->dtype == MMP_U8 && t->ndim == 3 && t->shape[2] == 3) {
                chw = 0;
                d->img_h = t->shape[0];
                d->img_w = t->shape[1];
            } else if ((t->dtype == MMP_F32 || t->dtype == MMP_F16) && t->ndim == 3 && t->shape[0] == 3) {
                const char *lay = mmp_meta_get(&d->hdr.meta, "image.layout");
                if (lay && strcmp(lay, "chw")) {
                    mmp_errf(err, errlen, "%s: \"%s\" is %s but image.layout is \"%s\" (want chw)", nm, field, sh, lay);
                    goto out;
                }
                char msg[1024];
                int nrc = mmp_check_normalization(&d->hdr, m, s, allow_mixed, nm, model, msg, sizeof msg);
                if (nrc < 0) { mmp_errf(err, errlen, "%s", msg); goto out; }
                if (nrc > 0) fprintf(stderr, "mmp-train-step: warning: %s\n", msg);
                chw = 1;
                d->img_h = t->shape[1];
                d->img_w = t->shape[2];
            } else {
                mmp_errf(err, errlen, "%s: record %lld: \"%s\" is %s %s; --from input needs images: u8 [H,W,3] or "
                         "normalized f32/f16 [3,H,W]", nm, (long long)i, field, mmp_dtype_name(t->dtype), sh);
                goto out;
            }
            if (d->img_h < 1 || d->img_w < 1) { mmp_errf(err, errlen, "%s: record %lld: \"%s\" is empty", nm, (long long)i, field); goto out; }
            d->dim = 3 * d->img_h * d->img_w;
        }
        if (need_label && mmp_dataset_check_label(nm, i, rec.label, ncls_hdr, err, errlen)) goto out;
        if (d->n == cap) {
            cap = cap ? cap * 2 : 256;
            if (chw) d->x = mmp_xrealloc(d->x, sizeof(float) * (size_t)(cap * d->dim));
            else d->u8 = mmp_xrealloc(d->u8, (size_t)(cap * d->dim));
            d->y = mmp_xrealloc(d->y, sizeof(int64_t) * (size_t)cap);
            d->ids = mmp_xrealloc(d->ids, sizeof(char *) * (size_t)cap);
        }
        char e2[512];
        if (!chw) { /* kept as u8 [H,W,3]: normalized per batch (mmp_dataset_row), the same bits */
            if (t->dtype != MMP_U8 || t->ndim != 3 || t->shape[2] != 3 || t->shape[0] != d->img_h || t->shape[1] != d->img_w) {
                mmp_image_to_chw(t, 0, d->img_h, d->img_w, m, s, NULL, e2, sizeof e2); /* the reason */
                mmp_errf(err, errlen, "%s: record %lld: \"%s\" %s", nm, (long long)i, field, e2);
                goto out;
            }
            memcpy(d->u8 + i * d->dim, t->data, (size_t)d->dim);
        } else if (mmp_image_to_chw(t, chw, d->img_h, d->img_w, m, s, d->x + i * d->dim, e2, sizeof e2)) {
            mmp_errf(err, errlen, "%s: record %lld: \"%s\" %s", nm, (long long)i, field, e2);
            goto out;
        }
        d->y[i] = rec.label;
        if (rec.label > maxlab) maxlab = rec.label;
        d->ids[i] = rec.id ? mmp_xstrdup(rec.id) : NULL;
        d->n++;
    }
    if (rc < 0) {
        mmp_errf(err, errlen, "%s", mmp_reader_error(r));
        goto out;
    }
    if (d->n == 0) {
        mmp_errf(err, errlen, "%s: no records", nm);
        goto out;
    }
    if (chw) d->x = mmp_xrealloc(d->x, sizeof(float) * (size_t)(d->n * d->dim));
    else d->u8 = mmp_xrealloc(d->u8, (size_t)(d->n * d->dim));
    d->raw_h = d->img_h;
    d->raw_w = d->img_w;
    memcpy(d->mean, m, sizeof m);
    memcpy(d->std, s, sizeof s);
    d->ncls = ncls_hdr > 0 ? ncls_hdr : maxlab + 1;
    d->dim2 = 0;
    ret = 0;
out:
    mmp_record_clear(&rec);
    mmp_reader_close(r);
    if (ret) mmp_dataset_free(d);
    return ret;
}

/* --head transformer: image records normalized as the model's preprocessing
 * says (or --input-mean/--input-std), text records tokenized by its tokenizer */
static int load_tx_data(mmp_dataset *d, mmp_train_cfg *c, const char *path, int allow_mixed, char *err, size_t errlen) {
    if (!c->backbone[0]) return mmp_errf(err, errlen, "--head transformer needs --backbone MODEL (a ViT, CLIP or BERT-family model)");
    char *rp = realpath(c->backbone, NULL); /* recorded whole: the fine-tuned model's loaders find its configs there */
    if (rp && strlen(rp) < sizeof c->backbone) snprintf(c->backbone, sizeof c->backbone, "%s", rp);
    free(rp);
    if (c->modality < 0) {
        int m = mmp_txhead_model_modality(c->backbone, err, errlen);
        if (m == -2) return -1;
        c->modality = m < 0 ? 0 : m; /* a two-tower CLIP: images unless --modality text */
        mmp_train_cfg_resolve(c);
    }
    if (c->modality == 1) {
        if (strcmp(c->feature, "text"))
            return mmp_errf(err, errlen, "--head transformer: text records carry their text in the record's text (--feature text), not \"%s\"",
                            c->feature);
        if (mmp_txhead_tokenize_stream(c->backbone, c->max_length, path, c->loss == MMP_LOSS_CE, d, err, errlen)) return -1;
        c->max_length = (int)d->dim - 1;
        return 0;
    }
    if (c->in_std[0] <= 0 && mmp_txhead_model_normalization(c->backbone, c->in_mean, c->in_std, err, errlen)) return -1;
    return mmp_dataset_load_images(d, path, c->feature, c->in_mean, c->in_std, allow_mixed, c->backbone, c->loss == MMP_LOSS_CE,
                                   err, errlen);
}

int mmp_train_load_data(mmp_dataset *d, mmp_train_cfg *c, const char *path, int allow_mixed, char *err, size_t errlen) {
    mmp_train_cfg_resolve(c);
    if (c->head == MMP_HEAD_TRANSFORMER) return load_tx_data(d, c, path, allow_mixed, err, errlen);
    if (c->head == MMP_HEAD_CAPTION) return mmp_caption_load_data(d, c, path, err, errlen);
    if (MMP_HEAD_IS_TAIL(c->head) && c->from_input) {
        if (!c->backbone[0])
            return mmp_errf(err, errlen, "--head %s needs --backbone FILE.safetensors (the pretrained network)", mmp_head_kind_name(c->head));
        if (c->in_std[0] <= 0 && mmp_backbone_normalization(c->backbone, c->in_mean, c->in_std, err, errlen)) return -1;
        return mmp_dataset_load_images(d, path, c->feature, c->in_mean, c->in_std, allow_mixed, c->backbone, c->loss == MMP_LOSS_CE,
                                       err, errlen);
    }
    int two = c->loss == MMP_LOSS_CONTRASTIVE || c->loss == MMP_LOSS_TRIPLET || MMP_HEAD_IS_FUSE(c->head);
    return mmp_dataset_load(d, path, c->feature, two ? c->pair_field : NULL, c->loss == MMP_LOSS_BCE ? c->labels_field : NULL,
                            c->loss == MMP_LOSS_CE, err, errlen);
}

void mmp_dataset_free(mmp_dataset *d) {
    for (int64_t i = 0; i < d->n; i++) free(d->ids ? d->ids[i] : NULL);
    free(d->ids); free(d->x); free(d->x2); free(d->y); free(d->t);
    free(d->u8); free(d->aug);
    mmp_header_free(&d->hdr);
    memset(d, 0, sizeof *d);
}

int mmp_check_text_provenance(const mmp_header *h, const char *model_tp, int allow_mixed, const char *what_a,
                              const char *what_b, char *msg, size_t msglen) {
    const char *tp = mmp_meta_get(&h->meta, "text_provenance");
    if (!tp || !model_tp) return 0;
    mmp_header t;
    mmp_header_init(&t);
    mmp_meta_set(&t.meta, "provenance", tp);
    char *a = mmp_xasprintf("%s (text embeddings)", what_a);
    int rc = mmp_check_provenance(&t, model_tp, allow_mixed, a, what_b, msg, msglen);
    free(a);
    mmp_header_free(&t);
    return rc;
}

void mmp_train_check_text_provenance(const mmp_header *h, const char *model_tp, int allow_mixed,
                                     const char *what_a, const char *what_b) {
    char msg[2048];
    mmp_cli_check(mmp_check_text_provenance(h, model_tp, allow_mixed, what_a, what_b, msg, sizeof msg), msg);
}

const char *mmp_dataset_provenance(const mmp_dataset *d) { return mmp_meta_get(&d->hdr.meta, "provenance"); }

int mmp_trainer_check_data(const mmp_trainer *tr, const mmp_dataset *ds, int allow_mixed,
                           char *err, size_t errlen) {
    if (((tr->head.tail && tr->cfg.from_input) || (tr->head.tx && tr->cfg.modality == 0)) &&
        (ds->img_h != tr->cfg.in_h || ds->img_w != tr->cfg.in_w))
        return mmp_errf(err, errlen, "%s: the images are %lldx%lld, the model was trained on %lldx%lld (mmp-decode --size)", ds->name,
                        (long long)ds->img_h, (long long)ds->img_w, (long long)tr->cfg.in_h, (long long)tr->cfg.in_w);
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

int mmp_trainer_check_batches(const mmp_trainer *tr, const mmp_dataset *ds, char *err, size_t errlen) {
    if (tr->cfg.head == MMP_HEAD_PAIR && (ds->n < 2 || tr->cfg.batch < 2))
        return mmp_errf(err, errlen, "%s: --loss %s needs in-batch negatives: at least 2 records and --batch-size >= 2", ds->name,
                        mmp_loss_name(tr->cfg.loss));
    return 0;
}

int mmp_check_classes(const mmp_header *h, int n, char *const *names, const char *what, const char *model, char *msg,
                      size_t msglen) {
    if (h->nclasses <= 0 || n <= 0) return 0;
    int same = h->nclasses == n;
    for (int k = 0; same && k < n; k++) same = !strcmp(h->classes[k], names[k]);
    if (same) return 0;
    return mmp_errf(msg, msglen, "%s: the class list differs from the model's (%d classes, first \"%s\"; model %s: %d, first \"%s\")",
                    what, h->nclasses, h->classes[0], model, n, names[0]);
}

int mmp_trainer_check_header(const mmp_trainer *tr, const mmp_header *h, const char *what, char *err, size_t errlen) {
    const mmp_schema_field *sf = mmp_header_field(h, tr->feature);
    if (sf && sf->ndim == 1 && sf->shape[0] >= 0 && sf->shape[0] != tr->in_dim)
        return mmp_errf(err, errlen, "%s: \"%s\" has %lld values, the model expects %lld", what, tr->feature, (long long)sf->shape[0],
                        (long long)tr->in_dim);
    if (MMP_HEAD_IS_FUSE(tr->cfg.head)) {
        const mmp_schema_field *sf2 = mmp_header_field(h, tr->pair_field);
        if (sf2 && sf2->ndim == 1 && sf2->shape[0] >= 0 && sf2->shape[0] != tr->pair_dim)
            return mmp_errf(err, errlen, "%s: \"%s\" has %lld values, the model expects %lld", what, tr->pair_field,
                            (long long)sf2->shape[0], (long long)tr->pair_dim);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* the training loop's augmentation (u8 image records)                 */
/* ------------------------------------------------------------------ */

/* mmp-augment's op arguments for the --aug-* options, in the loop's order:
 * flags[i], vals[i]; returns the count; -1 (err) for a bad value */
#define AUG_MAXARGS 4
static int aug_args(const mmp_train_cfg *c, const char *flags[AUG_MAXARGS], char vals[AUG_MAXARGS][96], char *err,
                    size_t errlen) {
    int n = 0;
    if (c->aug_rrc[0]) {
        long long S;
        double a = 0.08, b = 1.0;
        char rest[64] = "";
        int k = sscanf(c->aug_rrc, "%lld,%lf,%lf%63s", &S, &a, &b, rest);
        int commas = 0;
        for (const char *p = c->aug_rrc; *p; p++) commas += *p == ',';
        if (!((k == 1 && commas == 0) || (k == 3 && commas == 2)) || S < 1 || S > 1 << 16 || !(a > 0) || !(a <= b) || !(b <= 1))
            return mmp_errf(err, errlen, "--aug-rrc \"%s\": want SIZE or SIZE,SCALE_MIN,SCALE_MAX (0 < MIN <= MAX <= 1)", c->aug_rrc);
        flags[n] = "--rrc";
        snprintf(vals[n++], 96, "%lld,scale=%.17g:%.17g", S, a, b);
    }
    if (c->aug_pad > 0 && c->aug_crop <= 0) return mmp_errf(err, errlen, "--aug-pad needs --aug-crop SIZE");
    if (c->aug_crop > 0) {
        flags[n] = "--pad-crop";
        snprintf(vals[n++], 96, "%lld,pad=%d", (long long)c->aug_crop, c->aug_pad);
    }
    if (c->aug_hflip > 0) {
        flags[n] = "--hflip";
        snprintf(vals[n++], 96, "%.17g", c->aug_hflip);
    }
    if (c->aug_jitter[0]) {
        flags[n] = "--jitter";
        snprintf(vals[n++], 96, "%s", c->aug_jitter);
    }
    return n;
}

static int aug_build(const mmp_train_cfg *c, mmp_aug *a, char *err, size_t errlen) {
    const char *flags[AUG_MAXARGS];
    char vals[AUG_MAXARGS][96], e2[512];
    mmp_aug_init(a);
    int n = aug_args(c, flags, vals, err, errlen);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++)
        if (mmp_aug_parse(a, flags[i], vals[i], e2, sizeof e2))
            return mmp_errf(err, errlen, "--aug-%s \"%s\": %s", !strcmp(flags[i], "--pad-crop") ? "crop" : flags[i] + 2, vals[i], e2);
    return 0;
}

int mmp_train_aug_check(const mmp_train_cfg *c, char *err, size_t errlen) {
    mmp_aug a;
    return aug_build(c, &a, err, errlen);
}

void mmp_train_aug_args(const mmp_train_cfg *c, char *buf, size_t n) {
    const char *flags[AUG_MAXARGS];
    char vals[AUG_MAXARGS][96], e2[256];
    int k = aug_args(c, flags, vals, e2, sizeof e2);
    buf[0] = 0;
    for (int i = 0; i < k; i++)
        snprintf(buf + strlen(buf), n - strlen(buf), "%s%s %s", i ? " " : "", flags[i], vals[i]);
}

int mmp_dataset_augment(mmp_dataset *d, const mmp_train_cfg *c, char *err, size_t errlen) {
    mmp_aug a;
    if (aug_build(c, &a, err, errlen)) return -1;
    if (a.n == 0) return 0;
    if (!d->u8)
        return mmp_errf(err, errlen, "%s: --aug-* needs u8 [H,W,3] image records (mmp-decode's \"image\"; not normalized floats)", d->name);
    int64_t H = d->raw_h, W = d->raw_w;
    if (c->aug_crop > 0 && (c->aug_crop > H + 2 * c->aug_pad || c->aug_crop > W + 2 * c->aug_pad))
        return mmp_errf(err, errlen, "%s: the images are %lldx%lld: --aug-crop %lld --aug-pad %d needs at least %lldx%lld", d->name,
                        (long long)H, (long long)W, (long long)c->aug_crop, c->aug_pad, (long long)(c->aug_crop - 2 * c->aug_pad),
                        (long long)(c->aug_crop - 2 * c->aug_pad));
    for (int i = 0; i < a.n; i++) /* the size after each op */
        if (a.ops[i].kind == MMP_AUG_RRC || a.ops[i].kind == MMP_AUG_PADCROP) H = W = a.ops[i].size;
    free(d->aug);
    d->aug = mmp_xmalloc(sizeof a);
    memcpy(d->aug, &a, sizeof a);
    d->aug_seed = c->seed;
    d->img_h = H;
    d->img_w = W;
    d->dim = 3 * H * W;
    return 0;
}

int mmp_dataset_row(const mmp_dataset *d, int64_t r, int augment, uint64_t epoch, float *out, char *err, size_t errlen) {
    if (!d->u8) {
        memcpy(out, d->x + r * d->dim, sizeof(float) * (size_t)d->dim);
        return 0;
    }
    size_t raw = (size_t)(d->raw_h * d->raw_w * 3);
    mmp_tensor in = {.dtype = MMP_U8, .ndim = 3, .shape = {d->raw_h, d->raw_w, 3}, .data = d->u8 + (size_t)r * raw, .nbytes = raw};
    if (!augment || !d->aug) {
        if (d->raw_h != d->img_h || d->raw_w != d->img_w) /* an augmented set read without its augmentation */
            return mmp_errf(err, errlen, "%s: record %lld: the images are %lldx%lld, the model takes %lldx%lld (the augmentation's size)",
                            d->name, (long long)r, (long long)d->raw_h, (long long)d->raw_w, (long long)d->img_h, (long long)d->img_w);
        return mmp_image_to_chw(&in, 0, d->raw_h, d->raw_w, d->mean, d->std, out, err, errlen);
    }
    char idbuf[32];
    const char *id = d->ids && d->ids[r] ? d->ids[r] : (snprintf(idbuf, sizeof idbuf, "#%lld", (long long)r), idbuf);
    mmp_rng rng;
    mmp_rng_seed(&rng, mmp_aug_key(id, d->aug_seed, epoch, 0));
    mmp_tensor o;
    char e2[512];
    if (mmp_aug_apply(d->aug, &rng, &in, &o, e2, sizeof e2))
        return mmp_errf(err, errlen, "%s: record %lld: augmentation: %s", d->name, (long long)r, e2);
    int rc = mmp_image_to_chw(&o, 0, d->img_h, d->img_w, d->mean, d->std, out, e2, sizeof e2);
    mmp_tensor_free(&o);
    if (rc) return mmp_errf(err, errlen, "%s: record %lld: augmented image %s", d->name, (long long)r, e2);
    return 0;
}
