/* nn/embed.h, mmp-embed's library loop, on in-memory streams: the embeddings
 * it writes equal a direct mmp_nn_run of the same images (u8 and f32 [3,H,W]
 * input, mixed sizes grouped per size), for any runner thread count; fields
 * pass through; bad records give -1 with "IN: record N: ..." and the
 * batch-size rounding of mmp_nn_embed_header. */
#include <stdint.h>
#include <stdio.h>

#include "mmp.h"
#include "nn/embed.h"
#include "stream_testlib.h"
#include "nn_testlib.h"
#include "testlib.h"

static const uint8_t *fx_image(const fixture *f, int k) {
    return (const uint8_t *)f->in->data + (size_t)(k % f->N) * f->H * f->W * 3;
}

/* n records: image i from a (even i) or b (odd i, when given); chw: f32
 * [3,H,W] normalized with mean/std; bad_at (1-based, 0 = none, chw
 * only): that record's image has a NaN. */
static mem make_stream(const fixture *a, const fixture *b, int n, int chw, const float mean[3], const float std[3],
                       int bad_at) {
    mem m;
    mmp_header h;
    mmp_header_init(&h);
    int varies = b != NULL;
    int64_t shp[3] = {varies ? -1 : a->H, varies ? -1 : a->W, 3}, cshp[3] = {3, shp[0], shp[1]};
    mmp_header_add_field(&h, "image", chw ? MMP_F32 : MMP_U8, 3, chw ? cshp : shp);
    int64_t one = 1;
    mmp_header_add_field(&h, "extra", MMP_I32, 1, &one);
    if (chw) mmp_meta_set(&h.meta, "image.layout", "chw");
    mmp_writer *w = t_mem_writer(&m, "mem", &h);
    for (int i = 0; i < n; i++) {
        const fixture *f = b && i % 2 ? b : a;
        const uint8_t *px = fx_image(f, b ? i / 2 : i);
        mmp_record r;
        t_record_init(&r, "img", i, i % 3);
        {
            size_t hw = (size_t)f->H * f->W;
            if (chw) {
                int64_t s[3] = {3, f->H, f->W};
                float *d = mmp_record_add(&r, "image", MMP_F32, 3, s)->data, *tmp = malloc(sizeof(float) * hw * 3);
                mmp_nn_normalize_u8(px, f->H, f->W, mean, std, tmp);
                for (size_t p = 0; p < hw; p++)
                    for (int c = 0; c < 3; c++) d[c * hw + p] = tmp[p * 3 + c];
                if (i + 1 == bad_at) d[5] = NAN;
                free(tmp);
            } else {
                int64_t s[3] = {f->H, f->W, 3};
                memcpy(mmp_record_add(&r, "image", MMP_U8, 3, s)->data, px, hw * 3);
            }
        }
        ((int32_t *)mmp_record_add(&r, "extra", MMP_I32, 1, &one)->data)[0] = 1000 + i;
        mmp_writer_write(w, &r);
        mmp_record_clear(&r);
    }
    t_mem_close(&m, w);
    mmp_header_free(&h);
    return m;
}

/* Runs the library loop over stream in; the output stream in *out. */
static int run_embed(mmp_nn_embed *e, const mem *in, int threads, mem *out, char *err, size_t errlen) {
    char rerr[256];
    mmp_reader *r = mmp_reader_open_mem(in->buf, in->n, "in.mmp", rerr, sizeof rerr);
    if (!r) return mmp_errf(err, errlen, "%s", rerr);
    const mmp_header *ih = mmp_reader_header(r);
    mmp_header oh;
    int rc = mmp_nn_embed_input(e, ih, "in.mmp", err, errlen);
    if (!rc) rc = mmp_nn_embed_header(e, ih, "in.mmp", "dir/w.safetensors", "00ff", &oh, err, errlen);
    if (rc) {
        mmp_reader_close(r);
        return rc;
    }
    mmp_writer *w = t_mem_writer(out, "out.mmp", &oh);
    mmp_nn_runner *run = mmp_nn_runner_new(e->model, &mmp_nn_ops_cpu, threads);
    rc = mmp_nn_embed_stream(e, run, r, w, err, errlen);
    t_mem_close(out, w);
    mmp_nn_runner_free(run);
    mmp_reader_close(r);
    mmp_header_free(&oh);
    return rc;
}

/* Direct mmp_nn_run of the images of f, k0.. k0+n-1, normalized with mean/std. */
static float *direct(const mmp_nn_embed *e, const fixture *f, int n, int stride, int k0) {
    size_t per = (size_t)f->H * f->W * 3;
    float *x = malloc(sizeof(float) * per * n);
    for (int j = 0; j < n; j++) mmp_nn_normalize_u8(fx_image(f, k0 + j * stride), f->H, f->W, e->mean, e->std, x + per * j);
    int64_t dim = mmp_nn_output_dim(e->model, &e->layer, f->H, f->W);
    float *y = malloc(sizeof(float) * dim * n);
    mmp_nn_runner *run = mmp_nn_runner_new(e->model, &mmp_nn_ops_cpu, 1);
    mmp_nn_run(run, &e->layer, x, n, f->H, f->W, y);
    mmp_nn_runner_free(run);
    free(x);
    return y;
}

/* Checks out's records: ids, extra, no image; embedding i == want[i]. */
static void check_out(const mem *out, int n, const float *const *want, int64_t dim) {
    char err[256];
    mmp_reader *r = mmp_reader_open_mem(out->buf, out->n, "out.mmp", err, sizeof err);
    CHECKF(r, "%s", err);
    if (!r) return;
    const mmp_header *h = mmp_reader_header(r);
    CHECK(!mmp_header_field(h, "image") && mmp_header_field(h, "embedding") && mmp_header_field(h, "extra"));
    CHECK(!strcmp(mmp_meta_get(&h->meta, "embed.weights"), "w.safetensors"));
    mmp_record rec;
    mmp_record_init(&rec);
    int i = 0;
    while (mmp_reader_next(r, &rec) > 0) {
        char id[32];
        snprintf(id, sizeof id, "img%d", i);
        CHECK(rec.id && !strcmp(rec.id, id) && rec.label == i % 3);
        CHECK(!mmp_record_cget(&rec, "image"));
        const mmp_tensor *x = mmp_record_cget(&rec, "extra"), *t = mmp_record_cget(&rec, "embedding");
        CHECK(x && ((const int32_t *)x->data)[0] == 1000 + i);
        CHECKF(t && t->dtype == MMP_F32 && t->shape[0] == dim && !memcmp(t->data, want[i], sizeof(float) * dim),
               "record %d: embedding differs from mmp_nn_run", i + 1);
        mmp_record_clear(&rec);
        i++;
    }
    CHECKF(i == n, "%d records, want %d", i, n);
    mmp_reader_close(r);
}

int main(void) {
    mmp_set_progname("test_nn_embed");
    mmp_nn_model *m;
    char err[512];
    if (mmp_nn_model_load(&m, t_root_path("tests/fixtures/nn/mnv2_w025.safetensors"), NULL, err, sizeof err))
        SKIP("%s", err);
    fixture a, c;
    fx_open(&a, "tests/fixtures/nn/mnv2_w025_io_64x64.safetensors");
    fx_open(&c, "tests/fixtures/nn/mnv2_w025_io_33x47.safetensors");
    mmp_nn_embed e0 = {.model = m, .field = "image", .max_pixels = 1 << 24, .batch = 64, .out_dtype = MMP_F32};
    mmp_nn_preproc pre = mmp_nn_model_preproc(m);
    memcpy(e0.mean, pre.mean, sizeof e0.mean);
    memcpy(e0.std, pre.std, sizeof e0.std);
    CHECK(!mmp_nn_layer_parse(m, "pool", &e0.layer, err, sizeof err));
    int64_t dim = mmp_nn_output_dim(m, &e0.layer, a.H, a.W);

    /* one size, u8 and f32 [3,H,W] input, 1 and 3 threads: all equal the direct run */
    int n = a.N;
    float *y = direct(&e0, &a, n, 1, 0);
    const float **want = malloc(sizeof *want * 2 * n);
    for (int i = 0; i < n; i++) want[i] = y + (size_t)dim * i;
    for (int chw = 0; chw < 2; chw++) {
        mem in = make_stream(&a, NULL, n, chw, e0.mean, e0.std, 0);
        for (int threads = 1; threads <= 3; threads += 2) {
            mmp_nn_embed e = e0;
            mem out;
            int rc = run_embed(&e, &in, threads, &out, err, sizeof err);
            CHECKF(rc == 0, "chw %d threads %d: %s", chw, threads, err);
            CHECK(e.chw == chw && e.fh == a.H && e.fw == a.W);
            CHECK(e.batch % mmp_nn_micro_batch(a.H, a.W) == 0 && e.batch >= 64);
            if (!rc) check_out(&out, n, want, dim);
            free(out.buf);
        }
        free(in.buf);
    }
    free(y);

    /* mixed sizes in one batch: each size embedded as one group */
    {
        int na = (a.N + 1) / 2 > c.N ? c.N : (a.N + 1) / 2, nm = 2 * na;
        float *ya = direct(&e0, &a, na, 1, 0), *yc = direct(&e0, &c, na, 1, 0);
        int64_t dc = mmp_nn_output_dim(m, &e0.layer, c.H, c.W);
        CHECK(dc == dim);
        for (int i = 0; i < nm; i++) want[i] = i % 2 ? yc + (size_t)dim * (i / 2) : ya + (size_t)dim * (i / 2);
        mem in = make_stream(&a, &c, nm, 0, NULL, NULL, 0), out;
        mmp_nn_embed e = e0;
        int rc = run_embed(&e, &in, 2, &out, err, sizeof err);
        CHECKF(rc == 0, "mixed: %s", err);
        CHECK(e.fh < 0 && e.batch == 64);
        if (!rc) check_out(&out, nm, want, dim);
        free(out.buf);
        free(in.buf);
        free(ya), free(yc);
    }

    /* bad records: -1 and one line naming the stream and the record */
    {
        mem in = make_stream(&a, &c, 4, 0, NULL, NULL, 0), out;
        mmp_nn_embed e = e0;
        e.size = a.H;
        CHECK(run_embed(&e, &in, 1, &out, err, sizeof err) == -1);
        char exp[128];
        snprintf(exp, sizeof exp, "in.mmp: record 2: image is %dx%d but --size %d", c.H, c.W, a.H);
        CHECKF(!strcmp(err, exp), "got: %s", err);
        free(out.buf), free(in.buf);
        in = make_stream(&a, NULL, 5, 1, e0.mean, e0.std, 4);
        e = e0;
        CHECK(run_embed(&e, &in, 1, &out, err, sizeof err) == -1);
        CHECKF(!strcmp(err, "in.mmp: record 4: \"image\" has a non-finite value"), "got: %s", err);
        free(out.buf), free(in.buf);
        in = make_stream(&a, NULL, 2, 0, NULL, NULL, 0);
        e = e0;
        e.size = a.H + 1;
        CHECK(run_embed(&e, &in, 1, &out, err, sizeof err) == -1);
        snprintf(exp, sizeof exp, "in.mmp: images are %dx%d but --size %d", a.H, a.W, a.H + 1);
        CHECKF(!strcmp(err, exp), "got: %s", err);
        e = e0;
        e.field = "pixels";
        CHECK(run_embed(&e, &in, 1, &out, err, sizeof err) == -1);
        CHECKF(!strcmp(err, "in.mmp: no \"pixels\" field in the stream"), "got: %s", err);
        free(in.buf);
    }
    free(want);
    mmp_st_close(&a.st);
    mmp_st_close(&c.st);
    mmp_nn_model_free(m);
    TEST_END();
}
