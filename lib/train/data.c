/* train/data.c: reading a whole stream of feature records into memory
 * (kept apart from train.c so the trainer links without the stream code). */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

static int is_float(mmp_dtype t) { return t == MMP_F32 || t == MMP_F16 || t == MMP_BF16; }

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
        if (need_label) {
            if (rec.label < 0) { mmp_errf(err, errlen, "%s: record %lld: no label", nm, (long long)i); goto out; }
            if (ncls_hdr > 0 && rec.label >= ncls_hdr) {
                mmp_errf(err, errlen, "%s: record %lld: label %lld out of range (%lld classes in the header)", nm,
                       (long long)i, (long long)rec.label, (long long)ncls_hdr);
                goto out;
            }
        }
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

