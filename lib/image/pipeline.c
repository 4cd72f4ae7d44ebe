/* The stream pipelines of mmp-decode and mmp-augment on the ordered
 * parallel map (see image/pipeline.h and docs/image.md). */
#include "image/pipeline.h"

#include "image/pmap.h"
#include "rng.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------ */
/* mmp-decode                                                          */
/* ------------------------------------------------------------------ */

static void decode_header(mmp_header *h, const mmp_prep *prep, int nclasses, char **classes, const char *kinds,
                          int shard_i, int shard_n, int argc, char **argv) {
    mmp_header_init(h);
    int64_t shape[3] = {-1, -1, 3};
    if (prep->size) shape[0] = shape[1] = prep->size;
    if (prep->rw) shape[0] = prep->rh, shape[1] = prep->rw;
    mmp_header_add_field(h, "image", MMP_U8, 3, shape);
    if (nclasses > 0) mmp_header_set_classes(h, nclasses, classes);
    mmp_header_stamp(h, argc, argv);
    char buf[256];
    mmp_meta_set(&h->meta, "image.layout", "hwc");
    mmp_meta_set(&h->meta, "image.dtype", "u8");
    mmp_meta_set(&h->meta, "image.source", kinds);
    snprintf(buf, sizeof buf, "turbojpeg (libjpeg-turbo, accurate IDCT, fancy upsampling), libpng %s",
             PNG_LIBPNG_VER_STRING);
    mmp_meta_set(&h->meta, "image.decoder", buf);
    /* the keys and text of the defaults (bilinear, no crop_pct, torchvision
     * offsets) are those written before these options existed */
    const char *fname = mmp_interp_name(prep->interp);
    char up[16];
    snprintf(up, sizeof up, "%s", fname);
    for (char *c = up; *c; c++) *c = (char)(*c - 'a' + 'A');
    if ((prep->size || prep->rw) && prep->interp != MMP_INTERP_BILINEAR) mmp_meta_set(&h->meta, "image.interp", fname);
    if (prep->size) {
        snprintf(buf, sizeof buf, "%d", prep->size);
        mmp_meta_set(&h->meta, "image.size", buf);
        int rs = prep->crop_pct > 0 ? mmp_crop_pct_resize(prep->size, prep->crop_pct) : prep->size;
        char resize[64] = "size", crop[64] = "CenterCrop(size)";
        if (prep->crop_pct > 0) {
            snprintf(buf, sizeof buf, "%.15g", prep->crop_pct);
            mmp_meta_set(&h->meta, "image.crop_pct", buf);
            snprintf(resize, sizeof resize, "%d = floor(size / crop_pct)", rs);
        }
        if (prep->crop_round != MMP_CROP_ROUND_TORCHVISION) {
            mmp_meta_set(&h->meta, "image.crop_round", mmp_crop_round_name(prep->crop_round));
            snprintf(crop, sizeof crop, "center crop(size) at offsets (n - size) // 2 (Hugging Face)");
        }
        if (prep->interp == MMP_INTERP_BILINEAR && prep->crop_pct <= 0 && prep->crop_round == MMP_CROP_ROUND_TORCHVISION)
            snprintf(buf, sizeof buf, "torchvision Resize(size) + CenterCrop(size) on PIL (Pillow bilinear, antialiased)");
        else
            snprintf(buf, sizeof buf, "torchvision Resize(%s) + %s on PIL (Pillow %s, antialiased)", resize, crop,
                     fname);
        mmp_meta_set(&h->meta, "image.preprocess", buf);
    } else if (prep->rw) {
        snprintf(buf, sizeof buf, "%dx%d", prep->rw, prep->rh);
        mmp_meta_set(&h->meta, "image.resize", buf);
        snprintf(buf, sizeof buf, "Pillow resize((W,H), %s)", up);
        mmp_meta_set(&h->meta, "image.preprocess", buf);
    } else {
        mmp_meta_set(&h->meta, "image.preprocess", "none (native size)");
    }
    mmp_meta_set(&h->meta, "image.dct_scale", prep->dct_scale ? "1" : "0");
    if (shard_n > 1) {
        snprintf(buf, sizeof buf, "%d/%d", shard_i, shard_n);
        mmp_meta_set(&h->meta, "image.shard", buf);
    }
}

void mmp_img_decode_header(mmp_header *h, const mmp_prep *prep, const mmp_src *src, int shard_i, int shard_n,
                           int argc, char **argv) {
    decode_header(h, prep, mmp_src_nclasses(src), mmp_src_classes(src), mmp_src_kinds(src), shard_i, shard_n, argc,
                  argv);
}

void mmp_img_manifest_header(mmp_header *h, const mmp_prep *prep, const mmp_manifest *m, int shard_i, int shard_n,
                             int argc, char **argv) {
    decode_header(h, prep, 0, NULL, m->csv ? "manifest-csv" : "manifest-jsonl", shard_i, shard_n, argc, argv);
}

typedef struct {
    mmp_src_item it;
    mmp_img im;
    char err[320];
} dslot;

typedef struct {
    mmp_src *src;
    const mmp_prep *prep;
    mmp_img_decoder **dec;
    mmp_writer *w;
    int strict;
    mmp_img_counts n;
    double t0;
    char *err;
    size_t errlen;
} dctx;

static int d_produce(void *c, void *s) {
    dctx *x = c;
    dslot *sl = s;
    return mmp_src_next(x->src, &sl->it);
}

static void d_work(void *c, void *s, int tid) {
    dctx *x = c;
    dslot *sl = s;
    sl->err[0] = 0;
    sl->im.px = NULL;
    if (sl->it.err[0]) {
        snprintf(sl->err, sizeof sl->err, "%s", sl->it.err);
        return;
    }
    mmp_prep_image(x->dec[tid], x->prep, sl->it.data, sl->it.n, &sl->im, sl->err, sizeof sl->err);
    free(sl->it.data); /* the compressed bytes are not needed any more */
    sl->it.data = NULL;
}

static void d_discard(void *c, void *s) {
    dslot *sl = s;
    mmp_img_free(&sl->im);
    mmp_src_item_clear(&sl->it);
}

/* r's one field "image": a u8 [h, w, 3] view of im's pixels (borrowed: not freed with r) */
static void image_field(mmp_record *r, const mmp_img *im) {
    r->nfields = 1;
    snprintf(r->fields[0].name, sizeof r->fields[0].name, "image");
    mmp_tensor *t = &r->fields[0].t;
    t->dtype = MMP_U8;
    t->ndim = 3;
    t->shape[0] = im->h;
    t->shape[1] = im->w;
    t->shape[2] = 3;
    t->data = im->px;
    t->nbytes = (size_t)im->w * im->h * 3;
    t->owns = 0;
}

static int d_consume(void *c, void *s) {
    dctx *x = c;
    dslot *sl = s;
    int stop = 0;
    if (sl->err[0]) {
        if (x->strict) /* stop: a positive value, -1 is the producer's failure */
            stop = (mmp_errf(x->err, x->errlen, "%s: %s (--strict)", sl->it.id ? sl->it.id : "?", sl->err), 1);
        else {
            mmp_warn("%s: %s (skipped)", sl->it.id ? sl->it.id : "?", sl->err);
            x->n.skipped++;
        }
    } else {
        mmp_record r;
        mmp_record_init(&r);
        r.id = sl->it.id;
        r.label = sl->it.label;
        r.text = sl->it.text;
        image_field(&r, &sl->im);
        mmp_writer_write(x->w, &r);
        x->n.written++;
        if (mmp_progress_enabled() && x->n.written % 1000 == 0)
            mmp_progress("%llu images, %.0f/s", (unsigned long long)x->n.written, x->n.written / (mmp_now() - x->t0));
    }
    d_discard(c, s);
    return stop;
}

int mmp_img_decode_stream(mmp_src *src, const mmp_prep *prep, int threads, int strict, mmp_writer *w,
                          mmp_img_counts *n, char *err, size_t errlen) {
    dctx x = {.src = src, .prep = prep, .w = w, .strict = strict, .t0 = mmp_now(), .err = err, .errlen = errlen};
    x.dec = mmp_xmalloc(sizeof(*x.dec) * (size_t)threads);
    for (int t = 0; t < threads; t++) x.dec[t] = mmp_img_decoder_new();
    mmp_pmap_spec sp = {d_produce, d_work, d_consume, &x, sizeof(dslot), threads, 0, d_discard};
    int rc = mmp_pmap(&sp);
    for (int t = 0; t < threads; t++) mmp_img_decoder_free(x.dec[t]);
    free(x.dec);
    *n = x.n;
    if (rc < 0) return mmp_errf(err, errlen, "%s", mmp_src_error(src));
    if (rc) return -1;
    mmp_progress_done();
    mmp_writer_add_skipped(w, x.n.skipped);
    return 0;
}

/* ------------------------------------------------------------------ */
/* mmp-decode --manifest: rows sharing an image, decoded once          */
/* ------------------------------------------------------------------ */

typedef struct {
    size_t first, count; /* the rows: a run of consecutive rows with the same image */
    uint8_t *data;
    size_t nbytes;
    mmp_img im;
    char err[320];
} mslot;

typedef struct {
    const mmp_manifest *m;
    const mmp_prep *prep;
    mmp_img_decoder **dec;
    mmp_writer *w;
    uint64_t max_bytes;
    int shard_i, shard_n, strict;
    size_t pos;     /* next row */
    uint64_t group; /* runs seen (the shard index) */
    mmp_img_counts n;
    double t0;
    char *err;
    size_t errlen;
} mctx;

/* the file's bytes, or a reason in err (as mmp-decode's sources say it) */
static uint8_t *read_image_file(const char *path, uint64_t max_bytes, size_t *n, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return mmp_errf(err, errlen, "cannot open: %s", strerror(errno)), NULL;
    struct stat st;
    uint8_t *data = NULL;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) mmp_errf(err, errlen, "not a regular file");
    else if ((uint64_t)st.st_size > max_bytes) mmp_errf(err, errlen, "file too large (%lld bytes)", (long long)st.st_size);
    else {
        *n = (size_t)st.st_size;
        data = mmp_xmalloc(*n ? *n : 1);
        if (fread(data, 1, *n, f) != *n || ferror(f)) {
            mmp_errf(err, errlen, "read error: %s", strerror(errno));
            free(data);
            data = NULL;
        }
    }
    fclose(f);
    return data;
}

static int m_produce(void *c, void *s) {
    mctx *x = c;
    mslot *sl = s;
    const mmp_manifest *m = x->m;
    for (;;) {
        if (x->pos >= m->n) return 0;
        size_t first = x->pos, k = 1;
        while (first + k < m->n && !strcmp(m->rows[first + k].image, m->rows[first].image)) k++;
        x->pos += k;
        uint64_t g = x->group++;
        if (x->shard_n > 1 && g % (uint64_t)x->shard_n != (uint64_t)x->shard_i) continue;
        sl->first = first;
        sl->count = k;
        sl->err[0] = 0;
        sl->data = read_image_file(m->rows[first].image, x->max_bytes, &sl->nbytes, sl->err, sizeof sl->err);
        return 1;
    }
}

static void m_work(void *c, void *s, int tid) {
    mctx *x = c;
    mslot *sl = s;
    sl->im.px = NULL;
    if (sl->err[0]) return;
    mmp_prep_image(x->dec[tid], x->prep, sl->data, sl->nbytes, &sl->im, sl->err, sizeof sl->err);
    free(sl->data);
    sl->data = NULL;
}

static void m_discard(void *c, void *s) {
    mslot *sl = s;
    (void)c;
    mmp_img_free(&sl->im);
    free(sl->data);
    sl->data = NULL;
}

static int m_consume(void *c, void *s) {
    mctx *x = c;
    mslot *sl = s;
    const mmp_mrow *rows = x->m->rows + sl->first;
    int stop = 0;
    if (sl->err[0]) {
        if (x->strict)
            stop = (mmp_errf(x->err, x->errlen, "%s: %s (line %d; --strict)", rows[0].image, sl->err, rows[0].line), 1);
        else {
            mmp_warn("%s: %s (line %d; skipped, %zu record%s)", rows[0].image, sl->err, rows[0].line, sl->count,
                     sl->count == 1 ? "" : "s");
            x->n.skipped += sl->count;
        }
        m_discard(c, s);
        return stop;
    }
    x->n.decoded++;
    for (size_t i = 0; i < sl->count; i++) {
        const mmp_mrow *q = &rows[i];
        mmp_record r;
        mmp_record_init(&r);
        r.id = q->id;
        r.text = q->question;
        image_field(&r, &sl->im);
        const char *iid = q->image_id;
        mmp_record_set_strings(&r, "image_id", &iid, 1);
        if (q->qtype) {
            const char *qt = q->qtype;
            mmp_record_set_strings(&r, "qtype", &qt, 1);
        }
        if (q->nanswers) mmp_record_set_strings(&r, "answers", (const char *const *)q->answers, q->nanswers);
        if (q->ncaptions) mmp_record_set_strings(&r, "captions", (const char *const *)q->captions, q->ncaptions);
        mmp_writer_write(x->w, &r);
        r.id = r.text = NULL; /* borrowed */
        mmp_record_clear(&r);
        x->n.written++;
    }
    if (mmp_progress_enabled() && x->n.decoded % 1000 == 0)
        mmp_progress("%llu images, %llu records, %.0f images/s", (unsigned long long)x->n.decoded,
                     (unsigned long long)x->n.written, x->n.decoded / (mmp_now() - x->t0));
    m_discard(c, s);
    return 0;
}

int mmp_img_decode_manifest(const mmp_manifest *m, const mmp_prep *prep, uint64_t max_bytes, int shard_i, int shard_n,
                            int threads, int strict, mmp_writer *w, mmp_img_counts *n, char *err, size_t errlen) {
    mctx x = {.m = m, .prep = prep, .w = w, .max_bytes = max_bytes ? max_bytes : (1ULL << 30), .shard_i = shard_i,
              .shard_n = shard_n, .strict = strict, .t0 = mmp_now(), .err = err, .errlen = errlen};
    x.dec = mmp_xmalloc(sizeof(*x.dec) * (size_t)threads);
    for (int t = 0; t < threads; t++) x.dec[t] = mmp_img_decoder_new();
    mmp_pmap_spec sp = {m_produce, m_work, m_consume, &x, sizeof(mslot), threads, 0, m_discard};
    int rc = mmp_pmap(&sp);
    for (int t = 0; t < threads; t++) mmp_img_decoder_free(x.dec[t]);
    free(x.dec);
    *n = x.n;
    if (rc) return -1;
    mmp_progress_done();
    mmp_writer_add_skipped(w, x.n.skipped);
    return 0;
}

/* ------------------------------------------------------------------ */
/* mmp-augment                                                         */
/* ------------------------------------------------------------------ */

int mmp_aug_header(mmp_header *oh, const mmp_aug *aug, const mmp_aug_run *o, const mmp_header *ih,
                   const char *in_name, int argc, char **argv, char *err, size_t errlen) {
    const mmp_schema_field *f = mmp_header_field(ih, "image");
    if (!f) return mmp_errf(err, errlen, "%s: the stream has no \"image\" field (run mmp-decode first)", in_name);
    if (f->dtype != MMP_U8 || f->ndim != 3 || f->shape[2] != 3) {
        char sh[128];
        mmp_shape_str(f->ndim, f->shape, sh, sizeof sh);
        return mmp_errf(err, errlen, "%s: \"image\" is %s %s; mmp-augment needs u8 [H,W,3] (before any normalization)",
                        in_name, mmp_dtype_name(f->dtype), sh);
    }
    mmp_header_copy(oh, ih);
    int64_t shape[3];
    mmp_aug_out_shape(aug, shape);
    int norm = mmp_aug_normalizes(aug), resizes = 0;
    for (int k = 0; k < aug->n; k++) resizes |= aug->ops[k].kind == MMP_AUG_RESIZE;
    /* deterministic ops keep a known input size only when nothing resizes */
    if (!norm && shape[0] < 0 && f->shape[0] > 0 && !resizes) shape[0] = f->shape[0], shape[1] = f->shape[1];
    if (norm && shape[1] < 0 && f->shape[0] > 0 && !resizes) shape[1] = f->shape[0], shape[2] = f->shape[1];
    mmp_header_add_field(oh, "image", norm ? aug->out_dtype : MMP_U8, 3, shape);
    mmp_header_stamp(oh, argc, argv);
    char *desc = mmp_aug_describe(aug);
    char buf[256];
    mmp_meta_set(&oh->meta, "image.augment", desc);
    free(desc);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->seed);
    mmp_meta_set(&oh->meta, "image.augment.seed", buf);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->epoch);
    mmp_meta_set(&oh->meta, "image.augment.epoch", buf);
    snprintf(buf, sizeof buf, "%d", o->views);
    mmp_meta_set(&oh->meta, "image.augment.views", buf);
    mmp_meta_set(&oh->meta, "image.augment.rng", "splitmix64, key = mmp_aug_key(id, seed, epoch, view)");
    if (norm) {
        const mmp_aug_op *op = NULL;
        for (int k = 0; k < aug->n; k++)
            if (aug->ops[k].kind == MMP_AUG_NORMALIZE) op = &aug->ops[k];
        mmp_meta_set(&oh->meta, "image.layout", "chw");
        mmp_meta_set(&oh->meta, "layout", "chw");
        mmp_meta_set(&oh->meta, "image.dtype", mmp_dtype_name(aug->out_dtype));
        snprintf(buf, sizeof buf, "%.9g,%.9g,%.9g", op->mean[0], op->mean[1], op->mean[2]);
        mmp_meta_set(&oh->meta, "image.mean", buf);
        snprintf(buf, sizeof buf, "%.9g,%.9g,%.9g", op->std[0], op->std[1], op->std[2]);
        mmp_meta_set(&oh->meta, "image.std", buf);
    } else {
        mmp_meta_set(&oh->meta, "image.layout", "hwc");
        mmp_meta_set(&oh->meta, "layout", "hwc");
        mmp_meta_set(&oh->meta, "image.dtype", "u8");
    }
    return 0;
}

typedef struct {
    mmp_record rec;
    int nviews;
    mmp_tensor *views;
    char err[320];
    uint64_t recno;
} aslot;

typedef struct {
    mmp_reader *r;
    mmp_writer *w;
    const mmp_aug *aug;
    const mmp_aug_run *o;
    uint64_t n;
    mmp_img_counts c;
    double t0;
    char ferr[1024]; /* the producer's read error */
    char *err;
    size_t errlen;
} actx;

static int a_produce(void *c, void *s) {
    actx *x = c;
    aslot *sl = s;
    mmp_record_init(&sl->rec);
    int r = mmp_reader_next(x->r, &sl->rec);
    if (r < 0) {
        snprintf(x->ferr, sizeof x->ferr, "%s", mmp_reader_error(x->r));
        return -1;
    }
    sl->recno = x->n++;
    return r;
}

static void a_work(void *c, void *s, int tid) {
    actx *x = c;
    aslot *sl = s;
    sl->err[0] = 0;
    sl->nviews = 0;
    sl->views = mmp_xcalloc((size_t)x->o->views, sizeof(mmp_tensor));
    const mmp_tensor *in = mmp_record_cget(&sl->rec, "image");
    if (!in) {
        snprintf(sl->err, sizeof sl->err, "FATAL:no \"image\" tensor");
        return;
    }
    for (int v = 0; v < x->o->views; v++) {
        mmp_rng rng;
        mmp_rng_seed(&rng, mmp_aug_key(sl->rec.id, x->o->seed, x->o->epoch, (uint64_t)v));
        char e[300];
        if (mmp_aug_apply(x->aug, &rng, in, &sl->views[v], e, sizeof e)) {
            /* dtype/shape problems are fatal, op limits are skips */
            snprintf(sl->err, sizeof sl->err, "%s%s", strstr(e, "must be u8") ? "FATAL:" : "", e);
            return;
        }
        sl->nviews++;
    }
}

static void a_discard(void *c, void *s) {
    actx *x = c;
    aslot *sl = s;
    for (int v = 0; v < x->o->views; v++)
        if (sl->views) mmp_tensor_free(&sl->views[v]);
    free(sl->views);
    sl->views = NULL;
    mmp_record_clear(&sl->rec);
}

static int a_consume(void *c, void *s) {
    actx *x = c;
    aslot *sl = s;
    int stop = 0;
    if (sl->err[0]) {
        int fatal = !strncmp(sl->err, "FATAL:", 6) || x->o->strict;
        const char *m = strncmp(sl->err, "FATAL:", 6) ? sl->err : sl->err + 6;
        if (fatal)
            stop = (mmp_errf(x->err, x->errlen, "%s: record %llu (%s): %s", mmp_reader_name(x->r),
                             (unsigned long long)sl->recno, sl->rec.id ? sl->rec.id : "no id", m), 1);
        else {
            mmp_warn("%s: record %llu (%s): %s (skipped)", mmp_reader_name(x->r), (unsigned long long)sl->recno,
                     sl->rec.id ? sl->rec.id : "no id", m);
            x->c.skipped++;
        }
    } else {
        char *id0 = sl->rec.id;
        for (int v = 0; v < sl->nviews; v++) {
            mmp_record out = sl->rec; /* shallow: other fields, label, text pass through */
            char *vid = NULL;
            if (x->o->views > 1) {
                vid = mmp_xasprintf("%s#v%d", id0 ? id0 : "", v);
                out.id = vid;
            }
            for (int f = 0; f < out.nfields; f++)
                if (!strcmp(out.fields[f].name, "image")) out.fields[f].t = sl->views[v];
            mmp_writer_write(x->w, &out);
            free(vid);
            x->c.written++;
        }
        if (mmp_progress_enabled() && x->n % 1000 == 0)
            mmp_progress("%llu records, %.0f/s", (unsigned long long)x->n, x->n / (mmp_now() - x->t0));
    }
    a_discard(c, s);
    return stop;
}

int mmp_aug_stream(const mmp_aug *aug, const mmp_aug_run *o, mmp_reader *r, mmp_writer *w, mmp_img_counts *n,
                   char *err, size_t errlen) {
    actx x = {.r = r, .w = w, .aug = aug, .o = o, .t0 = mmp_now(), .err = err, .errlen = errlen};
    mmp_pmap_spec sp = {a_produce, a_work, a_consume, &x, sizeof(aslot), o->threads, 0, a_discard};
    int rc = mmp_pmap(&sp);
    *n = x.c;
    if (rc < 0) return mmp_errf(err, errlen, "%s", x.ferr);
    if (rc) return -1;
    mmp_progress_done();
    mmp_writer_add_skipped(w, mmp_reader_skipped(r) + x.c.skipped);
    return 0;
}
