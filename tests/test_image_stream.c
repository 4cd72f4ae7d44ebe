/* image/pipeline.h, the stream pipelines of mmp-decode and mmp-augment, on
 * in-memory output streams: the same bytes for 1 and 3 threads, pixels equal
 * to mmp_prep_image / mmp_aug_apply called directly, bad images skipped and
 * counted (or fatal with strict, with the one-line message), and the header
 * fields. */
#include "image/pipeline.h"
#include "stream_testlib.h"
#include "testlib.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void spit(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(d, 1, n, f);
    fclose(f);
}

static char *argv0[] = {"test", NULL};

static int decode(const mmp_prep *prep, int threads, int strict, mem *out, mmp_img_counts *n, char *err,
                  size_t errlen) {
    char *in[] = {"dfolder"};
    mmp_src_opts so = {0};
    mmp_src *src = mmp_src_open(1, in, &so, err, errlen);
    if (!src) return -1;
    mmp_header h;
    mmp_img_decode_header(&h, prep, src, 0, 1, 1, argv0);
    mmp_writer *w = t_mem_writer(out, "out.mmp", &h);
    int rc = mmp_img_decode_stream(src, prep, threads, strict, w, n, err, errlen);
    t_mem_close(out, w);
    mmp_header_free(&h);
    mmp_src_close(src);
    return rc;
}

static void test_decode(void) {
    size_t njpg, npng;
    unsigned char *jpg = t_slurp(t_root_path("tests/fixtures/image/base420.jpg"), &njpg);
    unsigned char *png = t_slurp(t_root_path("tests/fixtures/image/rgb.png"), &npng);
    if (!jpg || !png) SKIP("fixtures missing");
    mkdir("dfolder", 0755);
    mkdir("dfolder/a", 0755);
    mkdir("dfolder/b", 0755);
    spit("dfolder/a/x.jpg", jpg, njpg);
    spit("dfolder/a/y.png", png, npng);
    /* a corrupt JPEG before a good one on the same decoder (a failure gets a
     * fresh TurboJPEG handle: the good one still decodes) */
    spit("dfolder/b/bad.jpg", "\xff\xd8\xff not a jpeg", 14);
    spit("dfolder/b/z.jpg", jpg, njpg);
    mmp_prep prep = {.size = 16, .max_pixels = MMP_IMG_DEFAULT_MAX_PIXELS};
    char err[512];
    mem out[2];
    for (int k = 0; k < 2; k++) {
        mmp_img_counts n;
        int rc = decode(&prep, k ? 3 : 1, 0, &out[k], &n, err, sizeof err);
        CHECKF(rc == 0, "decode: %s", err);
        CHECK(n.written == 3 && n.skipped == 1);
    }
    CHECK(out[0].n == out[1].n && !memcmp(out[0].buf, out[1].buf, out[0].n));
    /* the records: the good images, pixels as mmp_prep_image makes them */
    mmp_reader *r = mmp_reader_open_mem(out[0].buf, out[0].n, "out.mmp", err, sizeof err);
    CHECKF(r, "%s", err);
    const mmp_header *h = mmp_reader_header(r);
    const mmp_schema_field *f = mmp_header_field(h, "image");
    CHECK(f && f->dtype == MMP_U8 && f->shape[0] == 16 && f->shape[1] == 16 && h->nclasses == 2);
    CHECK(!strcmp(mmp_meta_get(&h->meta, "image.size"), "16"));
    const char *names[] = {"a/x.jpg", "a/y.png", "b/z.jpg"};
    const unsigned char *data[] = {jpg, png, jpg};
    size_t sizes[] = {njpg, npng, njpg};
    int64_t labels[] = {0, 0, 1};
    mmp_img_decoder *dec = mmp_img_decoder_new();
    mmp_record rec;
    mmp_record_init(&rec);
    for (int i = 0; i < 3; i++) {
        CHECK(mmp_reader_next(r, &rec) == 1);
        CHECKF(rec.id && strstr(rec.id, names[i]) && rec.label == labels[i], "record %d: %s", i + 1, rec.id);
        mmp_img im = {0};
        CHECK(mmp_prep_image(dec, &prep, data[i], sizes[i], &im, err, sizeof err) == 0);
        const mmp_tensor *t = mmp_record_cget(&rec, "image");
        CHECK(t && t->nbytes == (size_t)im.w * im.h * 3 && !memcmp(t->data, im.px, t->nbytes));
        mmp_img_free(&im);
        mmp_record_clear(&rec);
    }
    CHECK(mmp_reader_next(r, &rec) == 0 && mmp_reader_skipped(r) == 1);
    mmp_reader_close(r);
    mmp_img_decoder_free(dec);
    free(out[0].buf), free(out[1].buf);
    /* strict: the bad image stops it with one line */
    for (int threads = 1; threads <= 3; threads += 2) {
        mmp_img_counts n;
        CHECK(decode(&prep, threads, 1, &out[0], &n, err, sizeof err) == -1);
        const char *tail = " (--strict)";
        CHECKF(strstr(err, "b/bad.jpg: ") && strlen(err) > strlen(tail) &&
                   !strcmp(err + strlen(err) - strlen(tail), tail) && n.written == 2,
               "strict, %d threads: %s", threads, err);
        free(out[0].buf);
    }
    free(jpg), free(png);
}

/* u8 records r0..: 24x20 images with a pattern, record 2 an 8x8 one */
static mem make_images(int n) {
    mem m;
    mmp_header h;
    mmp_header_init(&h);
    int64_t shp[3] = {-1, -1, 3};
    mmp_header_add_field(&h, "image", MMP_U8, 3, shp);
    mmp_writer *w = t_mem_writer(&m, "in.mmp", &h);
    for (int i = 0; i < n; i++) {
        mmp_record r;
        t_record_init(&r, "r", i, i);
        int64_t s[3] = {i == 2 ? 8 : 24, i == 2 ? 8 : 20, 3};
        mmp_tensor *t = mmp_record_add(&r, "image", MMP_U8, 3, s);
        for (size_t k = 0; k < t->nbytes; k++) ((uint8_t *)t->data)[k] = (uint8_t)(k * 7 + i * 13);
        mmp_writer_write(w, &r);
        mmp_record_clear(&r);
    }
    t_mem_close(&m, w);
    mmp_header_free(&h);
    return m;
}

static int augment(const mmp_aug *aug, const mmp_aug_run *o, const mem *in, mem *out, mmp_img_counts *n, char *err,
                   size_t errlen) {
    mmp_reader *r = mmp_reader_open_mem(in->buf, in->n, "in.mmp", err, errlen);
    if (!r) return -1;
    mmp_header h;
    int rc = mmp_aug_header(&h, aug, o, mmp_reader_header(r), "in.mmp", 1, argv0, err, errlen);
    if (rc) {
        mmp_reader_close(r);
        return rc;
    }
    mmp_writer *w = t_mem_writer(out, "out.mmp", &h);
    rc = mmp_aug_stream(aug, o, r, w, n, err, errlen);
    t_mem_close(out, w);
    mmp_header_free(&h);
    mmp_reader_close(r);
    return rc;
}

static void test_augment(void) {
    char err[512];
    mmp_aug aug;
    mmp_aug_init(&aug);
    CHECK(mmp_aug_parse(&aug, "--pad-crop", "12,pad=1", err, sizeof err) == 0);
    CHECK(mmp_aug_parse(&aug, "--hflip", "0.5", err, sizeof err) == 0);
    CHECK(mmp_aug_parse(&aug, "--jitter", "0.4,0.4,0.4,0.1", err, sizeof err) == 0);
    enum { N = 12 };
    mem in = make_images(N), out[2];
    mmp_aug_run o = {.seed = 7, .epoch = 3, .views = 2};
    for (int k = 0; k < 2; k++) {
        o.threads = k ? 3 : 1;
        mmp_img_counts n;
        int rc = augment(&aug, &o, &in, &out[k], &n, err, sizeof err);
        CHECKF(rc == 0, "augment: %s", err);
        CHECK(n.written == 2 * (N - 1) && n.skipped == 1);
    }
    CHECK(out[0].n == out[1].n && !memcmp(out[0].buf, out[1].buf, out[0].n));
    /* each view is mmp_aug_apply with the record's own random stream */
    mmp_reader *ri = mmp_reader_open_mem(in.buf, in.n, "in.mmp", err, sizeof err);
    mmp_reader *r = mmp_reader_open_mem(out[0].buf, out[0].n, "out.mmp", err, sizeof err);
    CHECK(!strcmp(mmp_meta_get(&mmp_reader_header(r)->meta, "image.augment.seed"), "7"));
    mmp_record a, b;
    mmp_record_init(&a);
    mmp_record_init(&b);
    for (int i = 0; i < N; i++) {
        CHECK(mmp_reader_next(ri, &a) == 1);
        if (i == 2) continue; /* 8x8 < 12 + 2: skipped */
        for (int v = 0; v < 2; v++) {
            CHECK(mmp_reader_next(r, &b) == 1);
            char id[32];
            snprintf(id, sizeof id, "r%d#v%d", i, v);
            CHECKF(b.id && !strcmp(b.id, id) && b.label == i, "got id %s, want %s", b.id, id);
            mmp_rng rng;
            mmp_rng_seed(&rng, mmp_aug_key(a.id, 7, 3, (uint64_t)v));
            mmp_tensor want;
            CHECK(mmp_aug_apply(&aug, &rng, mmp_record_cget(&a, "image"), &want, err, sizeof err) == 0);
            const mmp_tensor *t = mmp_record_cget(&b, "image");
            CHECKF(t && t->nbytes == want.nbytes && !memcmp(t->data, want.data, want.nbytes), "%s differs", id);
            mmp_tensor_free(&want);
            mmp_record_clear(&b);
        }
        mmp_record_clear(&a);
    }
    CHECK(mmp_reader_next(r, &b) == 0 && mmp_reader_skipped(r) == 1);
    mmp_reader_close(r);
    mmp_reader_close(ri);
    free(out[0].buf), free(out[1].buf);
    /* strict: the record an op cannot handle stops it (records are numbered from 0) */
    o.strict = 1;
    for (int threads = 1; threads <= 3; threads += 2) {
        o.threads = threads;
        mmp_img_counts n;
        CHECK(augment(&aug, &o, &in, &out[0], &n, err, sizeof err) == -1);
        CHECKF(!strncmp(err, "in.mmp: record 2 (r2): ", 23) && n.written == 4, "strict, %d threads: %s", threads, err);
        free(out[0].buf);
    }
    /* the header check */
    free(in.buf);
    mmp_header h;
    mmp_header_init(&h);
    int64_t shp[3] = {3, 8, 8};
    mmp_header_add_field(&h, "image", MMP_F32, 3, shp);
    mmp_header oh;
    CHECK(mmp_aug_header(&oh, &aug, &o, &h, "f.mmp", 1, argv0, err, sizeof err) == -1);
    CHECKF(!strcmp(err, "f.mmp: \"image\" is f32 [3,8,8]; mmp-augment needs u8 [H,W,3] (before any normalization)"),
           "got: %s", err);
    mmp_header_free(&h);
}

int main(void) {
    mmp_set_progname("test_image_stream");
    test_decode();
    test_augment();
    TEST_END();
}
