/* mmp-embed's record loop: image records in, embedding records out (see
 * nn/embed.h and docs/embed.md). */
#include "nn/embed.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/provenance.h"
#include "nn/txmodel.h"

int mmp_nn_embed_input(mmp_nn_embed *e, const mmp_header *ih, const char *in_name, char *err, size_t errlen) {
    const char *field = e->field;
    const mmp_schema_field *sf = mmp_header_field(ih, field);
    if (!sf) return mmp_errf(err, errlen, "%s: no \"%s\" field in the stream", in_name, field);
    e->chw = 0;
    if (sf->dtype == MMP_U8) {
        if (sf->ndim != 3 || sf->shape[2] != 3)
            return mmp_errf(err, errlen, "%s: \"%s\" is u8 but not [H,W,3]", in_name, field);
        e->fh = (int)sf->shape[0], e->fw = (int)sf->shape[1];
    } else if (sf->dtype == MMP_F32 || sf->dtype == MMP_F16) {
        const char *lay = mmp_meta_get(&ih->meta, "image.layout");
        if (sf->ndim != 3 || sf->shape[0] != 3 || (lay && strcmp(lay, "chw")))
            return mmp_errf(err, errlen, "%s: \"%s\" is %s but not [3,H,W] (image.layout=chw)", in_name, field,
                            mmp_dtype_name(sf->dtype));
        e->chw = 1;
        e->fh = (int)sf->shape[1], e->fw = (int)sf->shape[2];
    } else {
        return mmp_errf(err, errlen, "%s: \"%s\" has dtype %s (u8 [H,W,3] or f32/f16 [3,H,W])", in_name, field,
                        mmp_dtype_name(sf->dtype));
    }
    return 0;
}

int mmp_nn_embed_header(mmp_nn_embed *e, const mmp_header *ih, const char *in_name, const char *weights,
                        const char *weights_sha256, mmp_header *oh, char *err, size_t errlen) {
    int fh = e->fh, fw = e->fw, fixed = fh > 0 && fw > 0;
    const char *arch = mmp_nn_model_arch(e->model);
    if (e->size && fixed && (fh != e->size || fw != e->size))
        return mmp_errf(err, errlen, "%s: images are %dx%d but --size %d", in_name, fh, fw, e->size);
    if (fixed && mmp_nn_output_dim(e->model, &e->layer, fh, fw) <= 0) {
        char why[160];
        mmp_nn_size_refusal(e->model, &e->layer, fh, fw, why, sizeof why);
        return mmp_errf(err, errlen, "%s: image size %dx%d %s", in_name, fh, fw, why);
    }
    /* records per batch: a multiple of the micro-batch, so that the result does
     * not depend on --batch (same micro-batches) when the size is fixed; a
     * ViT/CLIP image's result does not depend on its batch at all */
    if (fixed && !mmp_nn_model_tx(e->model)) {
        int g = mmp_nn_micro_batch(fh, fw);
        e->batch = (e->batch + g - 1) / g * g;
    }
    mmp_header_copy(oh, ih);
    if (!e->keep) mmp_header_remove_field(oh, e->field);
    int64_t dim = fixed ? mmp_nn_output_dim(e->model, &e->layer, fh, fw) : mmp_nn_layer_dim_any(e->model, &e->layer);
    mmp_header_add_field(oh, "embedding", e->out_dtype, 1, &dim);
    char sizestr[64];
    if (e->size) snprintf(sizestr, sizeof sizestr, "%dx%d", e->size, e->size);
    else if (fixed) snprintf(sizestr, sizeof sizestr, "%dx%d", fh, fw);
    else snprintf(sizestr, sizeof sizestr, "any");
    char *ms = mmp_provenance_floats(e->mean), *ss = mmp_provenance_floats(e->std);
    char *prov = mmp_provenance_format(arch, e->layer.name, sizestr, weights_sha256, e->mean, e->std);
    mmp_meta_set(&oh->meta, "embed.arch", arch);
    mmp_meta_set(&oh->meta, "embed.layer", e->layer.name);
    mmp_meta_set(&oh->meta, "embed.size", sizestr);
    mmp_meta_set(&oh->meta, "embed.mean", ms);
    mmp_meta_set(&oh->meta, "embed.std", ss);
    mmp_meta_set(&oh->meta, "embed.dtype", mmp_dtype_name(e->out_dtype));
    mmp_meta_set(&oh->meta, "embed.weights_sha256", weights_sha256);
    /* the file or folder name (a folder's trailing slashes aside) */
    size_t wl = strlen(weights);
    while (wl > 1 && weights[wl - 1] == '/') wl--;
    size_t b0 = wl;
    while (b0 > 0 && weights[b0 - 1] != '/') b0--;
    char *base = mmp_xasprintf("%.*s", (int)(wl - b0), weights + b0);
    mmp_meta_set(&oh->meta, "embed.weights", base);
    free(base);
    mmp_meta_set(&oh->meta, "provenance", prov);
    free(ms), free(ss), free(prov);
    return 0;
}

typedef struct {
    mmp_record rec;
    int H, W;
    int64_t dim;
    float *out; /* into the batch output buffer */
    int reuse;  /* the previous record's embedding (same image_id and pixels) */
} item;

typedef struct {
    const mmp_nn_embed *e;
    mmp_nn_runner *run;
    const char *in_name;
    float *x, *y;
    size_t xcap, ycap;
    /* the last record of the previous batch, for reuse */
    mmp_record prev;
    float *prev_out;
    size_t prev_cap;
    int have_prev;
    uint64_t reused;
} loop;

/* b's image is a's: the same string "image_id" (both have one) and the same
 * image tensor, byte for byte */
static int same_image(const mmp_nn_embed *e, const mmp_record *a, const mmp_record *b) {
    const char *ia = mmp_record_string(a, "image_id"), *ib = mmp_record_string(b, "image_id");
    if (!ia || !ib || strcmp(ia, ib)) return 0;
    const mmp_tensor *x = mmp_record_cget(a, e->field), *y = mmp_record_cget(b, e->field);
    if (!x || !y || x->dtype != y->dtype || x->ndim != y->ndim || x->nbytes != y->nbytes) return 0;
    for (int k = 0; k < x->ndim; k++)
        if (x->shape[k] != y->shape[k]) return 0;
    return !memcmp(x->data, y->data, x->nbytes);
}

static float *grow(float **p, size_t *cap, size_t n) {
    if (*cap < n) {
        free(*p);
        *p = mmp_xmalloc(sizeof(float) * n);
        *cap = n;
    }
    return *p;
}

/* Shape check of one record's image; sets H, W, dim. */
static int check_image(const loop *c, item *it, uint64_t recno, char *err, size_t errlen) {
    const mmp_nn_embed *e = c->e;
    const char *in = c->in_name;
    unsigned long long rn = (unsigned long long)recno;
    const mmp_tensor *t = mmp_record_cget(&it->rec, e->field);
    if (!t) return mmp_errf(err, errlen, "%s: record %llu: no \"%s\" field", in, rn, e->field);
    if (e->chw) {
        if ((t->dtype != MMP_F32 && t->dtype != MMP_F16) || t->ndim != 3 || t->shape[0] != 3)
            return mmp_errf(err, errlen, "%s: record %llu: \"%s\" must be f32/f16 [3,H,W]", in, rn, e->field);
        it->H = (int)t->shape[1];
        it->W = (int)t->shape[2];
    } else {
        if (t->dtype != MMP_U8 || t->ndim != 3 || t->shape[2] != 3)
            return mmp_errf(err, errlen, "%s: record %llu: \"%s\" must be u8 [H,W,3]", in, rn, e->field);
        it->H = (int)t->shape[0];
        it->W = (int)t->shape[1];
    }
    if (e->size && (it->H != e->size || it->W != e->size))
        return mmp_errf(err, errlen, "%s: record %llu: image is %dx%d but --size %d", in, rn, it->H, it->W, e->size);
    if ((long long)it->H * it->W > e->max_pixels)
        return mmp_errf(err, errlen,
                        "%s: record %llu: image %dx%d has more than --max-pixels %lld pixels (resize with mmp-decode --size)",
                        in, rn, it->H, it->W, e->max_pixels);
    if (it->H < 1 || it->W < 1 || (it->dim = mmp_nn_output_dim(e->model, &e->layer, it->H, it->W)) <= 0) {
        char why[160];
        mmp_nn_size_refusal(e->model, &e->layer, it->H, it->W, why, sizeof why);
        return mmp_errf(err, errlen, "%s: record %llu: image %dx%d %s", in, rn, it->H, it->W, why);
    }
    return 0;
}

/* Image -> normalized NHWC floats at dst. */
static int load_image(const loop *c, item *it, float *dst, uint64_t recno, char *err, size_t errlen) {
    const mmp_nn_embed *e = c->e;
    const mmp_tensor *t = mmp_record_cget(&it->rec, e->field);
    size_t n = (size_t)it->H * it->W;
    if (!e->chw) {
        mmp_nn_normalize_u8(t->data, it->H, it->W, e->mean, e->std, dst);
        return 0;
    }
    const float *src = t->data;
    float *tmp = NULL;
    if (t->dtype != MMP_F32) {
        tmp = mmp_xmalloc(sizeof(float) * 3 * n);
        mmp_tensor_to_f32(t, tmp);
        src = tmp;
    } else if ((uintptr_t)src % sizeof(float)) {
        tmp = mmp_xmalloc(sizeof(float) * 3 * n);
        memcpy(tmp, t->data, sizeof(float) * 3 * n);
        src = tmp;
    }
    for (size_t i = 0; i < 3 * n; i++)
        if (!isfinite(src[i])) {
            free(tmp);
            return mmp_errf(err, errlen, "%s: record %llu: \"%s\" has a non-finite value", c->in_name,
                            (unsigned long long)recno, e->field);
        }
    mmp_nn_chw_to_hwc(src, 3, it->H, it->W, dst);
    free(tmp);
    return 0;
}

/* Runs the batch: same-size images together (in order of first appearance). */
static int run_batch(loop *c, item *items, int n, uint64_t first_recno, char *err, size_t errlen) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)items[i].dim;
    float *y = grow(&c->y, &c->ycap, total);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        items[i].out = y + off;
        off += (size_t)items[i].dim;
    }
    char *done = mmp_xcalloc((size_t)n, 1);
    int *idx = mmp_xmalloc(sizeof(int) * n);
    int rc = 0;
    for (int i = 0; i < n; i++) done[i] = (char)items[i].reuse;
    for (int i = 0; i < n && !rc; i++) {
        if (done[i]) continue;
        int H = items[i].H, W = items[i].W, k = 0;
        for (int j = i; j < n; j++)
            if (!done[j] && items[j].H == H && items[j].W == W) idx[k++] = j, done[j] = 1;
        size_t per = (size_t)H * W * 3;
        float *x = grow(&c->x, &c->xcap, per * k);
        for (int j = 0; j < k && !rc; j++)
            rc = load_image(c, &items[idx[j]], x + per * j, first_recno + idx[j], err, errlen);
        if (rc) break;
        int64_t dim = items[i].dim;
        /* contiguous output for the group, then scattered */
        float *gy = mmp_xmalloc(sizeof(float) * (size_t)dim * k);
        mmp_nn_run(c->run, &c->e->layer, x, k, H, W, gy);
        for (int j = 0; j < k; j++) memcpy(items[idx[j]].out, gy + (size_t)dim * j, sizeof(float) * dim);
        free(gy);
    }
    /* reused embeddings, in order: the previous record's (the previous batch's last one for the first) */
    for (int i = 0; i < n && !rc; i++)
        if (items[i].reuse)
            memcpy(items[i].out, i ? items[i - 1].out : c->prev_out, sizeof(float) * (size_t)items[i].dim);
    free(done);
    free(idx);
    return rc;
}

int mmp_nn_embed_stream(const mmp_nn_embed *e, mmp_nn_runner *run, mmp_reader *r, mmp_writer *w, char *err,
                        size_t errlen) {
    loop c = {.e = e, .run = run, .in_name = mmp_reader_name(r)};
    mmp_record_init(&c.prev);
    int batch = (int)e->batch, rc = 0;
    item *items = mmp_xcalloc((size_t)batch, sizeof(item));
    for (int i = 0; i < batch; i++) mmp_record_init(&items[i].rec);
    uint64_t recno = 0;
    double t0 = mmp_now();
    while (!rc) {
        int n = 0, k = 0;
        uint64_t first = recno + 1;
        while (n < batch && (k = mmp_reader_next(r, &items[n].rec)) > 0) {
            recno++;
            if ((rc = check_image(&c, &items[n], recno, err, errlen))) break;
            items[n].reuse = e->reuse && (n ? same_image(e, &items[n - 1].rec, &items[n].rec)
                                              : c.have_prev && same_image(e, &c.prev, &items[n].rec));
            c.reused += (uint64_t)items[n].reuse;
            n++;
        }
        if (k < 0) rc = mmp_errf(err, errlen, "%s", mmp_reader_error(r));
        if (rc || n == 0) break;
        if ((rc = run_batch(&c, items, n, first, err, errlen))) break;
        if (e->reuse) { /* keep the last record's image and embedding for the next batch */
            mmp_record_clear(&c.prev);
            mmp_record_copy(&c.prev, &items[n - 1].rec);
            memcpy(grow(&c.prev_out, &c.prev_cap, (size_t)items[n - 1].dim), items[n - 1].out,
                   sizeof(float) * (size_t)items[n - 1].dim);
            c.have_prev = 1;
        }
        for (int i = 0; i < n; i++) {
            mmp_record *rec = &items[i].rec;
            if (!e->keep) mmp_record_remove(rec, e->field);
            int64_t d = items[i].dim;
            mmp_tensor *t = mmp_record_add(rec, "embedding", e->out_dtype, 1, &d);
            mmp_f32_to_dtype(items[i].out, (size_t)d, e->out_dtype, t->data);
            mmp_writer_write(w, rec);
            mmp_record_clear(rec);
        }
        if (mmp_progress_enabled())
            mmp_progress_count(NULL, "images", (uint64_t)recno, 0, t0);
        if (n < batch) break;
    }
    if (!rc && mmp_progress_enabled()) mmp_progress_done();
    for (int i = 0; i < batch; i++) mmp_record_clear(&items[i].rec);
    free(items);
    free(c.x), free(c.y);
    mmp_record_clear(&c.prev);
    free(c.prev_out);
    if (e->reused) *e->reused = c.reused;
    return rc;
}
