/* text/embed.h, mmp-embed-text's library loop, with the tiny BERT of
 * tests/fixtures/text on in-memory streams: the embeddings it writes equal
 * mmp_text_embed run batch by batch, for any thread count; dropped fields,
 * --missing-text skip (counted in the trailer), the one-line errors naming
 * the record, and the --lines reader (template, CRLF, NUL byte). */
#include <stdint.h>
#include <stdio.h>

#include "mmp.h"
#include "text/embed.h"
#include "stream_testlib.h"
#include "testlib.h"

static const char *const texts[] = {"a photo of a cat", "Hello, World!", "naïve café", "", "the quick brown fox",
                                    "jumps over the lazy dog", "CAFÉ", "x y z", "one more"};
enum { NT = sizeof texts / sizeof *texts };

/* NT records r0.. with text (none for record no_text, 1-based; invalid
 * UTF-8 for record bad_utf8), an "image" and an "extra" field. */
static mem make_stream(int no_text, int bad_utf8) {
    mem m;
    mmp_header h;
    mmp_header_init(&h);
    int64_t one = 1, img[3] = {2, 2, 3};
    mmp_header_add_field(&h, "image", MMP_U8, 3, img);
    mmp_header_add_field(&h, "extra", MMP_I32, 1, &one);
    mmp_writer *w = t_mem_writer(&m, "mem", &h);
    for (int i = 0; i < NT; i++) {
        mmp_record r;
        t_record_init(&r, "r", i, i);
        if (i + 1 == bad_utf8) mmp_record_set_text(&r, "bad \xff byte");
        else if (i + 1 != no_text) mmp_record_set_text(&r, texts[i]);
        memset(mmp_record_add(&r, "image", MMP_U8, 3, img)->data, i, 12);
        ((int32_t *)mmp_record_add(&r, "extra", MMP_I32, 1, &one)->data)[0] = 100 + i;
        mmp_writer_write(w, &r);
        mmp_record_clear(&r);
    }
    t_mem_close(&m, w);
    mmp_header_free(&h);
    return m;
}

/* Runs the loop over in (stream) or lines; output in *out. */
static int run(const mmp_text_embed_opts *o, const mem *in, const mmp_text_lines *lines, mem *out, char *err,
               size_t errlen) {
    char rerr[256];
    mmp_reader *r = NULL;
    if (in) {
        r = mmp_reader_open_mem(in->buf, in->n, "in.mmp", rerr, sizeof rerr);
        if (!r) return mmp_errf(err, errlen, "%s", rerr);
    }
    mmp_header oh;
    static const char *const tpl[] = {"a photo of a {}"};
    mmp_text_embed_header(o, r ? mmp_reader_header(r) : NULL, lines, tpl, 1, &oh);
    mmp_writer *w = t_mem_writer(out, "out.mmp", &oh);
    int rc = mmp_text_embed_stream(o, r, lines, "in.mmp", w, err, errlen);
    t_mem_close(out, w);
    if (r) mmp_reader_close(r);
    mmp_header_free(&oh);
    return rc;
}

/* Reference: mmp_text_embed on consecutive batches of o->batch texts. */
static float *reference(const mmp_text_embed_opts *o, const char *const *t, int n) {
    int H = o->model->dim;
    size_t lens[NT];
    for (int i = 0; i < n; i++) lens[i] = strlen(t[i]);
    float *y = malloc(sizeof(float) * H * (n ? n : 1));
    char err[256];
    for (int s = 0; s < n; s += o->batch) {
        int k = n - s < o->batch ? n - s : o->batch, bad;
        CHECK(mmp_text_embed(o->model->bert, t + s, lens + s, k, o->max_length, o->normalize, o->utf8, y + (size_t)s * H,
                             &bad, err, sizeof err) == 0);
    }
    return y;
}

/* Output records: id r<i> (i in idx), extra kept, image dropped, embedding == want. */
static void check_out(const mem *out, const mmp_text_embed_opts *o, const int *idx, int n, const float *want,
                      uint64_t skipped) {
    int H = o->model->dim;
    char err[256];
    mmp_reader *r = mmp_reader_open_mem(out->buf, out->n, "out.mmp", err, sizeof err);
    CHECKF(r, "%s", err);
    if (!r) return;
    const mmp_header *h = mmp_reader_header(r);
    CHECK(!mmp_header_field(h, "image") && mmp_header_field(h, "extra") && mmp_header_field(h, o->field));
    CHECK(!strcmp(mmp_meta_get(&h->meta, "text.field"), o->field));
    mmp_record rec;
    mmp_record_init(&rec);
    int i = 0;
    while (mmp_reader_next(r, &rec) > 0 && i < n) {
        char id[32];
        snprintf(id, sizeof id, "r%d", idx[i]);
        CHECKF(rec.id && !strcmp(rec.id, id), "record %d: id %s, want %s", i + 1, rec.id, id);
        CHECK(rec.text && !strcmp(rec.text, texts[idx[i]]));
        const mmp_tensor *x = mmp_record_cget(&rec, "extra"), *t = mmp_record_cget(&rec, o->field);
        CHECK(!mmp_record_cget(&rec, "image") && x && ((const int32_t *)x->data)[0] == 100 + idx[i]);
        CHECKF(t && t->shape[0] == H && !memcmp(t->data, want + (size_t)H * i, sizeof(float) * H),
               "record %d: embedding differs from mmp_text_embed", i + 1);
        mmp_record_clear(&rec);
        i++;
    }
    CHECKF(i == n, "%d records, want %d", i, n);
    CHECK(mmp_reader_skipped(r) == skipped);
    mmp_reader_close(r);
}

int main(void) {
    mmp_set_progname("test_text_embed");
    char err[512];
    mmp_text_encoder tm;
    if (mmp_text_encoder_load(&tm, t_root_path("tests/fixtures/text/tiny_bert"), NULL, err, sizeof err)) SKIP("%s", err);
    CHECK(tm.bert && !tm.clip && tm.dim == tm.bert->bert.cfg.hidden);
    static const char *const drops[] = {"image"};
    mmp_text_embed_opts o0 = {.model = &tm, .max_length = tm.max_length, .normalize = 1, .utf8 = MMP_UTF8_ERROR,
                              .batch = 2, .threads = 1, .dtype = MMP_F32, .field = "temb", .drops = drops,
                              .ndrops = 1};
    int idx[NT];

    /* every record, 1 and 3 threads: equal to mmp_text_embed batch by batch */
    {
        for (int i = 0; i < NT; i++) idx[i] = i;
        float *want = reference(&o0, texts, NT);
        mem in = make_stream(0, 0);
        for (int threads = 1; threads <= 3; threads += 2) {
            mmp_text_embed_opts o = o0;
            o.threads = threads;
            mem out;
            int rc = run(&o, &in, NULL, &out, err, sizeof err);
            CHECKF(rc == 0, "threads %d: %s", threads, err);
            if (!rc) check_out(&out, &o, idx, NT, want, 0);
            free(out.buf);
        }
        free(in.buf);
        free(want);
    }

    /* a record without text: an error, or skipped and counted */
    {
        mem in = make_stream(4, 0), out;
        CHECK(run(&o0, &in, NULL, &out, err, sizeof err) == -1);
        CHECKF(!strcmp(err, "in.mmp: record 4 (id r3): no text (--missing-text skip to skip such records)"), "got: %s",
               err);
        free(out.buf);
        mmp_text_embed_opts o = o0;
        o.missing_skip = 1;
        o.threads = 2;
        const char *kept[NT];
        int n = 0;
        for (int i = 0; i < NT; i++)
            if (i != 3) idx[n] = i, kept[n++] = texts[i];
        float *want = reference(&o, kept, n);
        int rc = run(&o, &in, NULL, &out, err, sizeof err);
        CHECKF(rc == 0, "skip: %s", err);
        if (!rc) check_out(&out, &o, idx, n, want, 1);
        free(out.buf), free(in.buf), free(want);
    }

    /* invalid UTF-8: the record and the byte named */
    {
        mem in = make_stream(0, 6), out;
        mmp_text_embed_opts o = o0;
        o.threads = 2;
        CHECK(run(&o, &in, NULL, &out, err, sizeof err) == -1);
        const char *tail = " (--utf8 replace to replace invalid bytes)";
        CHECKF(!strncmp(err, "in.mmp: record 6 (id r5): ", 26) && strlen(err) > strlen(tail) + 26 &&
                   !strcmp(err + strlen(err) - strlen(tail), tail),
               "got: %s", err);
        free(out.buf), free(in.buf);
    }

    /* --lines: template, CRLF; the records are the lines, classes in the header */
    {
        FILE *f = fopen("lines.txt", "wb");
        fputs("cat\r\ndog\nbig bird\n", f);
        fclose(f);
        mmp_text_lines tl;
        static const char *const tpl[] = {"a photo of a {}"};
        CHECKF(mmp_text_lines_read(&tl, "lines.txt", tpl, 1, MMP_UTF8_ERROR, err, sizeof err) == 0, "%s", err);
        CHECK(tl.n == 3 && !strcmp(tl.ids[0], "cat") && !strcmp(tl.texts[2], "a photo of a big bird"));
        CHECK(tl.nclasses == 3 && !strcmp(tl.classes[2], "big bird") && tl.labels[2] == 2);
        const char *lt[3] = {"a photo of a cat", "a photo of a dog", "a photo of a big bird"};
        float *want = reference(&o0, lt, 3);
        mem out;
        int rc = run(&o0, NULL, &tl, &out, err, sizeof err);
        CHECKF(rc == 0, "lines: %s", err);
        mmp_reader *r = mmp_reader_open_mem(out.buf, out.n, "out.mmp", err, sizeof err);
        CHECK(r && mmp_reader_header(r)->nclasses == 3);
        CHECK(r && !strcmp(mmp_meta_get(&mmp_reader_header(r)->meta, "text.template"), "a photo of a {}"));
        mmp_record rec;
        mmp_record_init(&rec);
        for (int i = 0; r && mmp_reader_next(r, &rec) > 0; i++) {
            const mmp_tensor *t = mmp_record_cget(&rec, "temb");
            CHECK(i < 3 && rec.label == i && !strcmp(rec.id, tl.ids[i]) && !strcmp(rec.text, lt[i]));
            CHECK(i < 3 && t && !memcmp(t->data, want + (size_t)i * tm.dim, sizeof(float) * t->shape[0]));
            mmp_record_clear(&rec);
        }
        CHECK(r && mmp_reader_count(r) == 3);
        if (r) mmp_reader_close(r);
        free(out.buf), free(want);
        mmp_text_lines_free(&tl);
        f = fopen("lines.txt", "wb");
        fwrite("ok\nbad\0line\n", 1, 12, f);
        fclose(f);
        CHECK(mmp_text_lines_read(&tl, "lines.txt", NULL, 0, MMP_UTF8_ERROR, err, sizeof err) == -1);
        CHECKF(!strcmp(err, "lines.txt: line 2: contains a NUL byte"), "got: %s", err);
        CHECK(mmp_text_lines_read(&tl, "no/such.txt", NULL, 0, MMP_UTF8_ERROR, err, sizeof err) == -1);
        CHECKF(!strcmp(err, "no/such.txt: cannot open"), "got: %s", err);
        remove("lines.txt");
    }
    mmp_text_encoder_free(&tm);
    TEST_END();
}
