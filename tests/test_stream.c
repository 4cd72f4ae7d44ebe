/* Unit tests for the mmp stream (lib/stream.c): round trips, determinism,
 * concatenation, truncation at every byte offset, flipped bytes, crafted
 * corrupt streams, pipe promptness. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include "mmp.h"
#include "stream_ext.h"
#include "stream_mp.h"
#include "stream_testlib.h"
#include "testlib.h"

#include <msgpack.h>

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static void make_header(mmp_header *h) {
    mmp_header_init(h);
    int64_t img[3] = {-1, -1, 3}, emb[1] = {16}, tok[1] = {4}, hf[2] = {2, 3}, bf[1] = {5};
    mmp_header_add_field(h, "image", MMP_U8, 3, img);
    mmp_header_add_field(h, "emb", MMP_F32, 1, emb);
    mmp_header_add_field(h, "tokens", MMP_I64, 1, tok);
    mmp_header_add_field(h, "half", MMP_F16, 2, hf);
    mmp_header_add_field(h, "bh", MMP_BF16, 1, bf);
    mmp_header_add_field(h, "scalar", MMP_I32, 0, NULL);
    char *classes[] = {"cat", "dog", "ship"};
    mmp_header_set_classes(h, 3, classes);
    mmp_meta_set(&h->meta, "program", "test_stream");
    mmp_meta_set(&h->meta, "note", "ünïcode \"quoted\"\n");
}

static void make_record(mmp_record *r, int i) {
    mmp_record_init(r);
    char id[64];
    snprintf(id, sizeof id, "item/%05d.jpg", i);
    if (i % 5 != 3) mmp_record_set_id(r, id);
    r->label = i % 4 == 0 ? MMP_NO_LABEL : i % 3;
    if (i % 2) mmp_record_set_text(r, i % 4 == 1 ? "" : "a photo of a thing");
    int64_t img[3] = {1 + i % 7, 2 + i % 5, 3}, emb[1] = {16}, tok[1] = {4}, hf[2] = {2, 3},
            bf[1] = {5};
    mmp_tensor *t = mmp_record_add(r, "image", MMP_U8, 3, img);
    for (size_t k = 0; k < t->nbytes; k++) ((uint8_t *)t->data)[k] = (uint8_t)rnd();
    t = mmp_record_add(r, "emb", MMP_F32, 1, emb);
    for (int k = 0; k < 16; k++) ((float *)t->data)[k] = (float)(rnd() % 1000) / 7.0f - 50;
    t = mmp_record_add(r, "tokens", MMP_I64, 1, tok);
    for (int k = 0; k < 4; k++) ((int64_t *)t->data)[k] = (int64_t)rnd() - (1ll << 40);
    t = mmp_record_add(r, "half", MMP_F16, 2, hf);
    for (int k = 0; k < 6; k++) ((uint16_t *)t->data)[k] = mmp_f32_to_f16((float)k - 2.5f);
    t = mmp_record_add(r, "bh", MMP_BF16, 1, bf);
    for (int k = 0; k < 5; k++) ((uint16_t *)t->data)[k] = mmp_f32_to_bf16((float)k * 1.5f);
    t = mmp_record_add(r, "scalar", MMP_I32, 0, NULL);
    *(int32_t *)t->data = -i;
}

static int same_record(const mmp_record *a, const mmp_record *b) {
    if ((a->id == NULL) != (b->id == NULL) || (a->id && strcmp(a->id, b->id))) return 0;
    if ((a->text == NULL) != (b->text == NULL) || (a->text && strcmp(a->text, b->text))) return 0;
    if (a->label != b->label || a->nfields != b->nfields || a->nstrlists != b->nstrlists) return 0;
    for (int i = 0; i < a->nstrlists; i++) {
        const mmp_strlist *x = &a->strlists[i], *y = mmp_record_strings(b, x->name);
        if (!y || x->n != y->n) return 0;
        for (int j = 0; j < x->n; j++)
            if (strcmp(x->v[j], y->v[j])) return 0;
    }
    for (int i = 0; i < a->nfields; i++) {
        const mmp_tensor *x = &a->fields[i].t, *y = mmp_record_cget(b, a->fields[i].name);
        if (!y || x->dtype != y->dtype || x->ndim != y->ndim || x->nbytes != y->nbytes) return 0;
        for (int d = 0; d < x->ndim; d++)
            if (x->shape[d] != y->shape[d]) return 0;
        if (x->nbytes && memcmp(x->data, y->data, x->nbytes)) return 0;
    }
    return 1;
}

/* Writes nrec records (seeded by first) to path. */
static void write_stream(const char *path, int first, int nrec, int level, uint64_t skipped) {
    mmp_header h;
    make_header(&h);
    mmp_writer *w = mmp_writer_open(path, &h, level);
    for (int i = first; i < first + nrec; i++) {
        mmp_record r;
        rng = 1000 + (uint64_t)i;
        make_record(&r, i);
        mmp_writer_write(w, &r);
        mmp_record_clear(&r);
    }
    mmp_writer_add_skipped(w, skipped);
    CHECK(mmp_writer_count(w) == (uint64_t)nrec);
    mmp_writer_close(w);
    mmp_header_free(&h);
}

/* Reads a whole stream from memory; returns records read, or -1 on error
 * (message in err). When check, compares each record with the expected one
 * (seeded first+i) and counts mismatches in *bad. */
static long read_all(const void *buf, size_t n, int first, char *err, size_t errlen, int *bad) {
    mmp_reader *r = mmp_reader_open_mem(buf, n, "mem", err, errlen);
    if (!r) return -1;
    mmp_record rec, want;
    mmp_record_init(&rec);
    long k = 0;
    int s;
    while ((s = mmp_reader_next(r, &rec)) == 1) {
        rng = 1000 + (uint64_t)(first + k);
        make_record(&want, first + (int)k);
        if (bad && !same_record(&want, &rec)) (*bad)++;
        mmp_record_clear(&want);
        k++;
    }
    if (s < 0) snprintf(err, errlen, "%s", mmp_reader_error(r));
    mmp_record_clear(&rec);
    mmp_reader_close(r);
    return s < 0 ? -1 : k;
}

static void test_roundtrip(void) {
    write_stream("a.mmp", 0, 40, 3, 2);
    size_t n;
    uint8_t *buf = t_slurp("a.mmp", &n);
    CHECK(buf && n > 100);
    char err[1024] = "";
    int bad = 0;
    long k = read_all(buf, n, 0, err, sizeof err, &bad);
    CHECKF(k == 40, "read %ld records: %s", k, err);
    CHECK(bad == 0);

    /* file reader: header, counts, skipped */
    mmp_reader *r = mmp_reader_open("a.mmp", err, sizeof err);
    CHECKF(r != NULL, "%s", err);
    if (r) {
        const mmp_header *h = mmp_reader_header(r);
        mmp_header want;
        make_header(&want);
        char why[256];
        CHECK(mmp_header_compatible(h, &want, why, sizeof why));
        CHECK(h->nfields == 6 && h->nclasses == 3 && strcmp(h->classes[2], "ship") == 0);
        CHECK(mmp_meta_get(&h->meta, "note") &&
              strcmp(mmp_meta_get(&h->meta, "note"), "ünïcode \"quoted\"\n") == 0);
        CHECK(h->fields[0].shape[0] == -1 && h->fields[5].ndim == 0);
        mmp_header_free(&want);
        mmp_record rec;
        mmp_record_init(&rec);
        int s;
        while ((s = mmp_reader_next(r, &rec)) == 1) {}
        CHECK(s == 0);
        CHECK(mmp_reader_count(r) == 40);
        CHECK(mmp_reader_skipped(r) == 2);
        CHECK(mmp_reader_next(r, &rec) == 0); /* stays at the end */
        mmp_record_clear(&rec);
        mmp_reader_close(r);
    }

    /* determinism: same records, same bytes; other levels read the same */
    write_stream("b.mmp", 0, 40, 3, 2);
    size_t n2;
    uint8_t *buf2 = t_slurp("b.mmp", &n2);
    CHECK(n2 == n && memcmp(buf, buf2, n) == 0);
    free(buf2);
    for (int level = 1; level <= 19; level += 9) {
        write_stream("c.mmp", 0, 40, level, 0);
        buf2 = t_slurp("c.mmp", &n2);
        bad = 0;
        CHECK(read_all(buf2, n2, 0, err, sizeof err, &bad) == 40 && bad == 0);
        free(buf2);
    }

    /* the decompressed content is one header, 40 records and a trailer */
    unsigned long long dsz = ZSTD_getFrameContentSize(buf, n);
    CHECK(dsz == ZSTD_CONTENTSIZE_UNKNOWN); /* streaming writer */
    size_t cap = 1 << 20;
    uint8_t *plain = malloc(cap);
    size_t pn = ZSTD_decompress(plain, cap, buf, n);
    CHECK(!ZSTD_isError(pn));
    if (!ZSTD_isError(pn)) {
        size_t pos = 0, len, need;
        const char *why;
        int objs = 0;
        while (pos < pn && mmp_stream_measure(plain + pos, pn - pos, pn, &len, &need, &why) == MP_COMPLETE) {
            pos += len;
            objs++;
        }
        CHECK(pos == pn && objs == 42);
    }
    free(plain);
    free(buf);
}

/* Writes records 0..n-1 (seeded as in every test here) to w and, when not
 * NULL, to w2. */
static void write_seeded(mmp_writer *w, mmp_writer *w2, int n) {
    for (int i = 0; i < n; i++) {
        mmp_record r;
        rng = 1000 + (uint64_t)i;
        make_record(&r, i);
        mmp_writer_write(w, &r);
        if (w2) mmp_writer_write(w2, &r);
        mmp_record_clear(&r);
    }
}

/* string lists (formats/stream.md "strings"): written, read back, copied,
 * replaced, removed; a record without them writes no "strings" key */
static void test_strings(void) {
    mmp_header h;
    make_header(&h);
    mem m;
    mmp_writer *w = t_mem_writer(&m, "strings", &h);
    mmp_record r[3];
    const char *caps[] = {"a red circle", "un cercle rouge \xc3\xa9", ""};
    const char *ans[] = {"2", "2", "two"};
    for (int i = 0; i < 3; i++) {
        rng = 1000 + (uint64_t)i;
        make_record(&r[i], i);
    }
    mmp_record_set_strings(&r[0], "captions", caps, 3);
    mmp_record_set_strings(&r[0], "answers", ans, 3);
    mmp_record_set_strings(&r[0], "captions", caps, 2); /* replaced */
    mmp_record_set_strings(&r[1], "empty", NULL, 0);
    CHECK(r[0].nstrlists == 2 && mmp_record_strings(&r[0], "captions")->n == 2);
    CHECK(mmp_record_string(&r[1], "empty") == NULL && mmp_record_strings(&r[1], "empty") != NULL);
    CHECK(mmp_record_string(&r[0], "answers") && strcmp(mmp_record_string(&r[0], "answers"), "2") == 0);
    for (int i = 0; i < 3; i++) mmp_writer_write(w, &r[i]);
    t_mem_close(&m, w);
    char err[512] = "";
    mmp_reader *rd = mmp_reader_open_mem(m.buf, m.n, "mem", err, sizeof err);
    CHECKF(rd != NULL, "%s", err);
    mmp_record got;
    mmp_record_init(&got);
    for (int i = 0; rd && i < 3; i++) {
        CHECK(mmp_reader_next(rd, &got) == 1);
        CHECKF(same_record(&r[i], &got), "record %d differs after the round trip", i);
        mmp_record cp;
        mmp_record_init(&cp);
        mmp_record_copy(&cp, &got);
        CHECK(same_record(&cp, &got));
        mmp_record_clear(&cp);
    }
    if (rd) {
        CHECK(mmp_reader_next(rd, &got) == 0);
        mmp_reader_close(rd);
    }
    /* a record without lists has no "strings" key: the same bytes as before the key existed */
    mmp_record_remove_strings(&r[1], "empty");
    mmp_record_remove_strings(&r[1], "absent");
    CHECK(r[1].nstrlists == 0);
    mmp_record_clear(&got);
    for (int i = 0; i < 3; i++) mmp_record_clear(&r[i]);
    free(m.buf);
    mmp_header_free(&h);
}

/* a FILE without a descriptor (memstream) goes through stdio */
static void test_memstream(void) {
    mmp_header h;
    make_header(&h);
    mem m;
    mmp_writer *w = t_mem_writer(&m, "memstream", &h);
    write_seeded(w, NULL, 5);
    t_mem_close(&m, w);
    mmp_header_free(&h);
    char err[512] = "";
    int bad = 0;
    CHECKF(read_all(m.buf, m.n, 0, err, sizeof err, &bad) == 5 && bad == 0, "%s", err);
    free(m.buf);
}

/* a producer that failed: mmp_writer_abandon leaves a stream without its
 * trailer, which the reader refuses; the background flusher (memstream: not
 * a regular file) is stopped before the caller closes the FILE */
static void test_abandon(void) {
    mmp_header h;
    make_header(&h);
    mem m;
    mmp_writer *w = t_mem_writer(&m, "memstream", &h);
    mmp_writer *wf = mmp_writer_open("abandoned.mmp", &h, 1);
    write_seeded(w, wf, 3);
    mmp_writer_abandon(w);
    mmp_writer_abandon(wf);
    fclose(m.fp);
    mmp_header_free(&h);
    char err[512] = "";
    CHECKF(read_all(m.buf, m.n, 0, err, sizeof err, NULL) < 0 && strstr(err, "no trailer"), "memstream: %s", err);
    free(m.buf);
    size_t n;
    uint8_t *buf = t_slurp("abandoned.mmp", &n);
    CHECK(buf != NULL);
    err[0] = 0;
    CHECKF(buf && read_all(buf, n, 0, err, sizeof err, NULL) < 0 && strstr(err, "no trailer"), "file: %s", err);
    free(buf);
}

static void test_empty_stream(void) {
    mmp_header h;
    mmp_header_init(&h);
    mmp_writer *w = mmp_writer_open("e.mmp", &h, 1);
    mmp_writer_close(w);
    mmp_header_free(&h);
    size_t n;
    uint8_t *buf = t_slurp("e.mmp", &n);
    char err[512] = "";
    CHECKF(read_all(buf, n, 0, err, sizeof err, NULL) == 0, "%s", err);
    free(buf);
}

static void test_concat(void) {
    write_stream("p1.mmp", 0, 7, 1, 1);
    write_stream("p2.mmp", 7, 5, 9, 3);
    size_t n1, n2;
    uint8_t *a = t_slurp("p1.mmp", &n1), *b = t_slurp("p2.mmp", &n2);
    uint8_t *ab = malloc(n1 + n2);
    memcpy(ab, a, n1);
    memcpy(ab + n1, b, n2);
    char err[1024] = "";
    int bad = 0;
    CHECKF(read_all(ab, n1 + n2, 0, err, sizeof err, &bad) == 12, "%s", err);
    CHECK(bad == 0);
    mmp_reader *r = mmp_reader_open_mem(ab, n1 + n2, "ab", err, sizeof err);
    mmp_record rec;
    mmp_record_init(&rec);
    while (mmp_reader_next(r, &rec) == 1) {}
    CHECK(mmp_reader_skipped(r) == 4 && mmp_reader_count(r) == 12);
    mmp_reader_close(r);

    /* first part truncated, second appended: detected */
    CHECK(read_all(ab + 0, n1 - 5, 0, err, sizeof err, NULL) == -1);
    memmove(ab + n1 - 5, b, n2);
    CHECK(read_all(ab, n1 - 5 + n2, 0, err, sizeof err, NULL) == -1);

    /* incompatible schema */
    mmp_header h;
    make_header(&h);
    int64_t emb[1] = {17};
    mmp_header_add_field(&h, "emb", MMP_F32, 1, emb);
    mmp_writer *w = mmp_writer_open("p3.mmp", &h, 1);
    mmp_writer_close(w);
    mmp_header_free(&h);
    size_t n3;
    uint8_t *c = t_slurp("p3.mmp", &n3);
    uint8_t *ac = malloc(n1 + n3);
    memcpy(ac, a, n1);
    memcpy(ac + n1, c, n3);
    err[0] = 0;
    CHECK(read_all(ac, n1 + n3, 0, err, sizeof err, NULL) == -1);
    char want[128];
    snprintf(want, sizeof want, "mem: record 7: schema mismatch at byte %zu", n1);
    CHECKF(strstr(err, want) && strstr(err, "emb"), "got: %s (want %s)", err, want);
    mmp_record_clear(&rec);
    free(a);
    free(b);
    free(c);
    free(ab);
    free(ac);
}

static void test_truncation_and_flips(void) {
    write_stream("t.mmp", 0, 3, 3, 0);
    size_t n;
    uint8_t *buf = t_slurp("t.mmp", &n);
    char err[1024];
    int fails = 0;
    for (size_t k = 0; k < n; k++) {
        uint8_t *cut = malloc(k ? k : 1); /* exact-size copy: ASan sees overreads */
        memcpy(cut, buf, k);
        err[0] = 0;
        long got = read_all(cut, k, 0, err, sizeof err, NULL);
        if (got != -1 || !strstr(err, "mem: ")) {
            fails++;
            if (fails < 5) fprintf(stderr, "truncated at %zu: got %ld (%s)\n", k, got, err);
        }
        free(cut);
    }
    CHECKF(fails == 0, "%d truncations not detected (stream of %zu bytes)", fails, n);
    err[0] = 0;
    CHECK(read_all(buf, 0, 0, err, sizeof err, NULL) == -1 && strstr(err, "empty input"));

    /* every single-byte corruption either fails cleanly or reads exactly
     * the original records (e.g. a flip in zstd's window-size bits) */
    int wrong = 0, detected = 0;
    for (size_t k = 0; k < n; k++) {
        for (int pat = 0; pat < 3; pat++) {
            uint8_t *cp = malloc(n);
            memcpy(cp, buf, n);
            cp[k] ^= pat == 0 ? 0x01 : pat == 1 ? 0x80 : 0xff;
            int bad = 0;
            long got = read_all(cp, n, 0, err, sizeof err, &bad);
            if (got == -1) detected++;
            else if (got != 3 || bad) wrong++;
            free(cp);
        }
    }
    if (getenv("MMP_TEST_VERBOSE"))
        fprintf(stderr, "stream of %zu bytes: %d of %zu single-byte corruptions detected, %d read "
                        "back the same records, %d wrong\n", n, detected, 3 * n,
                (int)(3 * n) - detected - wrong, wrong);
    CHECKF(wrong == 0, "%d corruptions gave different records", wrong);
    CHECKF(detected > (int)(3 * n * 9 / 10), "only %d of %zu corruptions detected", detected, 3 * n);
    free(buf);
}

/* Hand-made msgpack sequences (msgpack-c's packer into an sbuffer). */
static msgpack_sbuffer B;
static msgpack_packer PK;

static void pstr(const char *s) { msgpack_pack_str_with_body(&PK, s, strlen(s)); }
static void praw(const void *p, size_t n) { msgpack_sbuffer_write(&B, p, n); }

/* Compresses the hand-made sequence into a stream. */
static uint8_t *zc(size_t *n) {
    size_t cap = ZSTD_compressBound(B.size);
    uint8_t *out = malloc(cap);
    *n = ZSTD_compress(out, cap, B.data, B.size, 3);
    return out;
}

static void put_hdr(int version) {
    msgpack_pack_map(&PK, 4);
    pstr("mmpipe");
    msgpack_pack_int64(&PK, version);
    pstr("classes");
    msgpack_pack_array(&PK, 2);
    pstr("a");
    pstr("b");
    pstr("schema");
    msgpack_pack_map(&PK, 1);
    pstr("x");
    msgpack_pack_map(&PK, 2);
    pstr("dtype");
    pstr("f32");
    pstr("shape");
    msgpack_pack_array(&PK, 1);
    msgpack_pack_int64(&PK, 2);
    pstr("future");
    msgpack_pack_array(&PK, 2); /* unknown key: ignored */
    msgpack_pack_nil(&PK);
    msgpack_pack_double(&PK, 1.5);
}

/* record with tensor x: dtype, shape (n dims), data bytes */
static size_t put_rec(const char *dtype, int ndim, const int64_t *shape, uint32_t nbytes,
                      const char *extra_tensor) {
    size_t start = B.size;
    msgpack_pack_map(&PK, 3);
    pstr("id");
    pstr("r");
    pstr("tensors");
    msgpack_pack_map(&PK, extra_tensor ? 2 : 1);
    pstr("x");
    msgpack_pack_map(&PK, 3);
    pstr("dtype");
    pstr(dtype);
    pstr("shape");
    msgpack_pack_array(&PK, (size_t)ndim);
    for (int i = 0; i < ndim; i++) msgpack_pack_int64(&PK, shape[i]);
    pstr("data");
    msgpack_pack_bin(&PK, nbytes);
    for (uint32_t i = 0; i < nbytes; i++) praw("\x3f", 1);
    if (extra_tensor) {
        pstr(extra_tensor);
        msgpack_pack_map(&PK, 3);
        pstr("dtype");
        pstr("u8");
        pstr("shape");
        msgpack_pack_array(&PK, 0);
        pstr("data");
        msgpack_pack_bin_with_body(&PK, "\x07", 1);
    }
    pstr("z-unknown");
    msgpack_pack_map(&PK, 0);
    return start;
}

static void put_trailer(uint64_t count, uint32_t crc) {
    msgpack_pack_map(&PK, 3);
    pstr("end");
    msgpack_pack_true(&PK);
    pstr("count");
    msgpack_pack_uint64(&PK, count);
    pstr("checksum");
    msgpack_pack_uint64(&PK, crc);
}

/* n containers nested in one another: [[...[]...]] */
static void put_nested(int n) {
    for (int i = 0; i < n; i++) msgpack_pack_array(&PK, i + 1 < n);
}

/* an array of n nils */
static void put_nils(uint64_t n) {
    msgpack_pack_array(&PK, n);
    for (uint64_t i = 0; i < n; i++) msgpack_pack_nil(&PK);
}

#include <zlib.h>

/* Expects reading the crafted stream to fail with a message containing want. */
static void expect(int compress, const char *want, int line) {
    size_t n = B.size;
    uint8_t *z = compress ? zc(&n) : NULL;
    char err[1024] = "";
    long got = read_all(compress ? (void *)z : B.data, n, 0, err, sizeof err, NULL);
    if (!want) {
        if (got < 0) {
            fprintf(stderr, "line %d: expected success, got: %s\n", line, err);
            t_failures++;
        }
    } else if (got != -1 || !strstr(err, want)) {
        fprintf(stderr, "line %d: expected error '%s', got %ld: %s\n", line, want, got, err);
        t_failures++;
    } else if (strchr(err, '\n')) {
        fprintf(stderr, "line %d: multi-line error: %s\n", line, err);
        t_failures++;
    }
    free(z);
}

static void test_crafted(void) {
    int64_t s2[1] = {2}, s3[1] = {3}, s9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 2}, sneg[1] = {-1};

    /* a well-formed hand-made stream with unknown keys reads fine */
    msgpack_sbuffer_clear(&B);
    put_hdr(1);
    size_t r0 = put_rec("f32", 1, s2, 8, NULL);
    uint32_t crc = (uint32_t)crc32(0, (const Bytef *)B.data + r0, (uInt)(B.size - r0));
    put_trailer(1, crc);
    expect(1, NULL, __LINE__);
    /* same without zstd */
    expect(0, "not an mmp stream (bad zstd magic)", __LINE__);
    msgpack_sbuffer_clear(&B);
    pstr("hello");
    expect(1, "not an mmp stream", __LINE__);
    msgpack_sbuffer_clear(&B);
    put_hdr(2);
    expect(1, "header: unsupported mmp stream version 2", __LINE__);
    msgpack_sbuffer_clear(&B);
    put_nested(MP_MAX_DEPTH + 1);
    expect(1, "header: not an mmp stream (nested deeper than 32 levels)", __LINE__);

#define CASE(rec_stmt, count, want)                                                              \
    do {                                                                                         \
        msgpack_sbuffer_clear(&B);                                                               \
        put_hdr(1);                                                                              \
        size_t st = B.size;                                                                      \
        rec_stmt;                                                                                \
        uint32_t c2 = (uint32_t)crc32(0, (const Bytef *)B.data + st, (uInt)(B.size - st));       \
        put_trailer(count, c2);                                                                  \
        expect(1, want, __LINE__);                                                               \
    } while (0)

    CASE(put_rec("f32", 1, s2, 8, NULL), 1, NULL);
    CASE(put_rec("f32", 1, s2, 8, NULL), 2, "record 1: trailer says 2 records, the stream had 1");
    CASE(put_rec("f32", 1, s2, 7, NULL), 1, "record 0: tensor 'x' has 7 data bytes");
    CASE(put_rec("f16", 1, s2, 4, NULL), 1, "tensor 'x' has dtype f16, the schema says f32");
    CASE(put_rec("f32", 1, s3, 12, NULL), 1, "tensor 'x' has shape [3], the schema says [2]");
    CASE(put_rec("f32", 9, s9, 8, NULL), 1, "shape has 9 dimensions");
    CASE(put_rec("f32", 1, sneg, 0, NULL), 1, "bad shape dimension 0");
    CASE(put_rec("q8", 1, s2, 2, NULL), 1, "unknown dtype 'q8'");
    CASE(put_rec("f32", 1, s2, 8, "y"), 1, "tensor 'y' is not in the stream schema");
    CASE(put_rec("f32", 1, s2, 8, "x"), 1, "duplicate tensor 'x'");
    CASE((msgpack_pack_map(&PK, 1), pstr("id"), pstr("a")), 1, "missing tensor 'x'");
    CASE((msgpack_pack_map(&PK, 2), pstr("label"), msgpack_pack_int64(&PK, 5), pstr("tensors"),
          msgpack_pack_map(&PK, 0)), 1, "label 5 out of range");
    CASE((msgpack_pack_map(&PK, 1), pstr("id"), msgpack_pack_int64(&PK, 5)), 1,
         "id is not a string");
    CASE((msgpack_pack_map(&PK, 2), pstr("id"), pstr("a"), pstr("id"), pstr("b")), 1,
         "duplicate key \"id\"");
    CASE((msgpack_pack_map(&PK, 1), pstr("text"), msgpack_pack_true(&PK)), 1,
         "text is not a string");
    CASE(msgpack_pack_array(&PK, 0), 1, "expected a msgpack map");
    CASE((msgpack_pack_map(&PK, 1), pstr("strings"), pstr("a")), 1, "strings is not a map");
    CASE((msgpack_pack_map(&PK, 1), pstr("strings"), msgpack_pack_map(&PK, 1), pstr("answers"), pstr("a")), 1,
         "strings: \"answers\" is not an array");
    CASE((msgpack_pack_map(&PK, 1), pstr("strings"), msgpack_pack_map(&PK, 1), pstr("answers"),
          msgpack_pack_array(&PK, 2), pstr("a"), msgpack_pack_int64(&PK, 3)),
         1, "strings: \"answers\" item 1 is not a string");
    CASE((msgpack_pack_map(&PK, 1), pstr("strings"), msgpack_pack_map(&PK, 2), pstr("a"), msgpack_pack_array(&PK, 0),
          pstr("a"), msgpack_pack_array(&PK, 0)),
         1, "strings: duplicate list \"a\"");
    CASE((msgpack_pack_map(&PK, 1), pstr("strings"), msgpack_pack_map(&PK, 1), pstr(""), msgpack_pack_array(&PK, 0)), 1,
         "strings: a list name is not a string of 1 to 63 bytes");
    CASE((msgpack_pack_map(&PK, 1), pstr("strings"), msgpack_pack_map(&PK, 9), pstr("a"), msgpack_pack_array(&PK, 0),
          pstr("b"), msgpack_pack_array(&PK, 0), pstr("c"), msgpack_pack_array(&PK, 0), pstr("d"),
          msgpack_pack_array(&PK, 0), pstr("e"), msgpack_pack_array(&PK, 0), pstr("f"), msgpack_pack_array(&PK, 0),
          pstr("g"), msgpack_pack_array(&PK, 0), pstr("h"), msgpack_pack_array(&PK, 0), pstr("i"),
          msgpack_pack_array(&PK, 0)),
         1, "strings has 9 lists (at most 8)");
    CASE((msgpack_pack_map(&PK, 2), pstr("strings"), msgpack_pack_map(&PK, 0), pstr("strings"), msgpack_pack_map(&PK, 0)),
         1, "duplicate key \"strings\"");
    /* a bin that claims 2 GiB: refused without allocating it */
    CASE((msgpack_pack_map(&PK, 1), pstr("id"), msgpack_pack_bin(&PK, 0xfffffff0u)), 1,
         "larger than the size limit");
    CASE((msgpack_pack_map(&PK, 1), pstr("id"), msgpack_pack_map(&PK, 0xffffffffu)), 1,
         "larger than the size limit");
    /* a million-element array declared, 3 present: the input is cut, nothing
     * is allocated for the declared elements */
    CASE((msgpack_pack_map(&PK, 1), pstr("id"), msgpack_pack_array(&PK, 1000000),
          msgpack_pack_nil(&PK), msgpack_pack_nil(&PK), msgpack_pack_nil(&PK)), 1,
         "record 0: truncated stream (no trailer) after 0 records");
    /* msgpack-c's limits, checked before it sees the object: nesting and
     * the number of values (what it allocates: 24 bytes per value) */
    CASE((msgpack_pack_map(&PK, 2), pstr("z"), put_nested(MP_MAX_DEPTH - 1), pstr("tensors"),
          msgpack_pack_map(&PK, 1), pstr("x"), msgpack_pack_map(&PK, 3), pstr("dtype"),
          pstr("f32"), pstr("shape"), msgpack_pack_array(&PK, 1), msgpack_pack_int64(&PK, 2),
          pstr("data"), msgpack_pack_bin_with_body(&PK, "12345678", 8)),
         1, NULL);
    CASE((msgpack_pack_map(&PK, 1), pstr("z"), put_nested(MP_MAX_DEPTH)), 1,
         "record 0: corrupt stream: invalid msgpack (nested deeper than 32 levels)");
    CASE((msgpack_pack_map(&PK, 1), pstr("z"), put_nils(MP_MAX_VALUES)), 1,
         "record 0: corrupt stream: invalid msgpack (more than 1048576 values in one object)");

    /* checksum */
    msgpack_sbuffer_clear(&B);
    put_hdr(1);
    put_rec("f32", 1, s2, 8, NULL);
    put_trailer(1, 12345);
    expect(1, "record 1: record checksum mismatch", __LINE__);
    /* no trailer; record after trailer; trailer without header */
    msgpack_sbuffer_clear(&B);
    put_hdr(1);
    put_rec("f32", 1, s2, 8, NULL);
    expect(1, "record 1: truncated stream (no trailer) after 1 records", __LINE__);
    put_trailer(1, crc);
    put_rec("f32", 1, s2, 8, NULL);
    expect(1, "a record follows the trailer", __LINE__);
    msgpack_sbuffer_clear(&B);
    put_trailer(0, 0);
    expect(1, "header: not an mmp stream", __LINE__);
    /* header, header */
    msgpack_sbuffer_clear(&B);
    put_hdr(1);
    put_hdr(1);
    expect(1, "truncated stream (no trailer) after 0 records", __LINE__);
    /* the invalid msgpack byte */
    msgpack_sbuffer_clear(&B);
    put_hdr(1);
    msgpack_pack_map(&PK, 1);
    pstr("id");
    praw("\xc1", 1);
    expect(1, "invalid msgpack", __LINE__);
}

/* mmp_stream_measure's limits are msgpack-c's: what it measures complete,
 * msgpack_unpack (as the reader calls it) unpacks to the same length; one
 * level deeper is refused by both. */
static void test_measure_limits(void) {
    msgpack_zone zone;
    msgpack_object obj;
    msgpack_zone_init(&zone, MSGPACK_ZONE_CHUNK_SIZE);
    for (int depth = MP_MAX_DEPTH - 1; depth <= MP_MAX_DEPTH + 2; depth++) {
        msgpack_sbuffer_clear(&B);
        put_nested(depth);
        size_t len = 0, need, off = 0;
        const char *why;
        int m = mmp_stream_measure((const uint8_t *)B.data, B.size, B.size, &len, &need, &why);
        msgpack_zone_clear(&zone);
        int u = msgpack_unpack(B.data, B.size, &off, &zone, &obj);
        int ok = depth <= MP_MAX_DEPTH;
        CHECKF((m == MP_COMPLETE) == ok && (u == MSGPACK_UNPACK_SUCCESS) == ok,
               "%d nested arrays: measure %d, msgpack-c %d", depth, m, u);
        if (ok) CHECK(len == B.size && off == B.size);
        else CHECK(strstr(why, "nested deeper"));
    }
    /* an array of MP_MAX_VALUES - 1 values (with itself, the limit) */
    for (uint64_t n = MP_MAX_VALUES - 1; n <= MP_MAX_VALUES; n++) {
        msgpack_sbuffer_clear(&B);
        msgpack_pack_array(&PK, n);
        for (uint64_t i = 0; i < n; i++) msgpack_pack_int64(&PK, -1);
        size_t len = 0, need, off = 0;
        const char *why;
        int m = mmp_stream_measure((const uint8_t *)B.data, B.size, B.size, &len, &need, &why);
        CHECK((m == MP_COMPLETE) == (n < MP_MAX_VALUES));
        msgpack_zone_clear(&zone);
        if (m == MP_COMPLETE)
            CHECK(msgpack_unpack(B.data, B.size, &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS &&
                  off == len && len == B.size && obj.via.array.size == n);
    }
    /* a cut object: more is needed, at least one byte per declared value */
    msgpack_sbuffer_clear(&B);
    msgpack_pack_array(&PK, 1000);
    msgpack_pack_nil(&PK);
    size_t len, need = 0;
    const char *why;
    CHECK(mmp_stream_measure((const uint8_t *)B.data, B.size, 1 << 20, &len, &need, &why) ==
              MP_NEED_MORE &&
          need == 3 + 1000); /* array16 prefix + one byte per element */
    CHECK(mmp_stream_measure((const uint8_t *)B.data, B.size, 1000, &len, &need, &why) == MP_INVALID);
    msgpack_zone_destroy(&zone);
}

/* The writer's bytes, written out by hand from formats/stream.md (shortest
 * encodings; key order id, label, text, tensors; dtype, shape, data): a
 * header and two records, the second with a tensor large enough to be
 * compressed in place. */
static void test_writer_bytes(void) {
    mmp_header h;
    mmp_header_init(&h);
    int64_t sh[2] = {-1, 300};
    mmp_header_add_field(&h, "x", MMP_U8, 2, sh);
    char *classes[] = {"c"};
    mmp_header_set_classes(&h, 1, classes);
    mmp_writer *w = mmp_writer_open("bytes.mmp", &h, 1);
    mmp_record r;
    mmp_record_init(&r);
    mmp_record_set_id(&r, "a");
    int64_t s1[2] = {0, 300}, s2[2] = {20, 300};
    mmp_record_add(&r, "x", MMP_U8, 2, s1);
    mmp_writer_write(w, &r);
    mmp_record_clear(&r);
    mmp_record_init(&r);
    r.label = 0;
    mmp_record_set_text(&r, "t");
    mmp_tensor *t = mmp_record_add(&r, "x", MMP_U8, 2, s2);
    memset(t->data, 0x5a, t->nbytes);
    mmp_writer_write(w, &r);
    mmp_record_clear(&r);
    mmp_writer_close(w);
    mmp_header_free(&h);

    static const uint8_t hdr[] = {
        0x84, 0xa6, 'm', 'm', 'p', 'i', 'p', 'e', 0x01, 0xa6, 's', 'c', 'h', 'e', 'm', 'a', 0x81,
        0xa1, 'x', 0x82, 0xa5, 'd', 't', 'y', 'p', 'e', 0xa2, 'u', '8', 0xa5, 's', 'h', 'a', 'p',
        'e', 0x92, 0xff, 0xcd, 0x01, 0x2c, 0xa7, 'c', 'l', 'a', 's', 's', 'e', 's', 0x91, 0xa1,
        'c', 0xa4, 'm', 'e', 't', 'a', 0x80};
    static const uint8_t rec1[] = {
        0x82, 0xa2, 'i', 'd', 0xa1, 'a', 0xa7, 't', 'e', 'n', 's', 'o', 'r', 's', 0x81, 0xa1, 'x',
        0x83, 0xa5, 'd', 't', 'y', 'p', 'e', 0xa2, 'u', '8', 0xa5, 's', 'h', 'a', 'p', 'e', 0x92,
        0x00, 0xcd, 0x01, 0x2c, 0xa4, 'd', 'a', 't', 'a', 0xc4, 0x00};
    static const uint8_t rec2[] = {
        0x83, 0xa5, 'l', 'a', 'b', 'e', 'l', 0x00, 0xa4, 't', 'e', 'x', 't', 0xa1, 't', 0xa7, 't',
        'e', 'n', 's', 'o', 'r', 's', 0x81, 0xa1, 'x', 0x83, 0xa5, 'd', 't', 'y', 'p', 'e', 0xa2,
        'u', '8', 0xa5, 's', 'h', 'a', 'p', 'e', 0x92, 0x14, 0xcd, 0x01, 0x2c, 0xa4, 'd', 'a', 't',
        'a', 0xc5, 0x17, 0x70}; /* + 6000 bytes 0x5a */
    msgpack_sbuffer_clear(&B);
    praw(hdr, sizeof hdr);
    size_t st = B.size;
    praw(rec1, sizeof rec1);
    praw(rec2, sizeof rec2);
    for (int i = 0; i < 6000; i++) praw("\x5a", 1);
    uint32_t crc = (uint32_t)crc32(0, (const Bytef *)B.data + st, (uInt)(B.size - st));
    static const uint8_t tr[] = {0x84, 0xa3, 'e', 'n', 'd', 0xc3, 0xa5, 'c', 'o', 'u', 'n', 't',
                                 0x02, 0xa8, 'c', 'h', 'e', 'c', 'k', 's', 'u', 'm', 0xce};
    praw(tr, sizeof tr);
    uint8_t be[4] = {(uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8), (uint8_t)crc};
    praw(be, 4);
    static const uint8_t tr2[] = {0xa7, 's', 'k', 'i', 'p', 'p', 'e', 'd', 0x00};
    praw(tr2, sizeof tr2);

    size_t n;
    uint8_t *z = t_slurp("bytes.mmp", &n);
    uint8_t *plain = malloc(2 * B.size);
    size_t pn = z ? ZSTD_decompress(plain, 2 * B.size, z, n) : 0;
    if (!z || ZSTD_isError(pn)) pn = 0;
    CHECKF(pn == B.size && memcmp(plain, B.data, pn) == 0,
           "writer content differs from the hand-written bytes (%zu vs %zu bytes)", pn, B.size);
    free(plain);
    free(z);
}

/* a reader on the read end of a pipe (NULL, and a failed check, if it fails) */
static mmp_reader *open_fd_reader(int fd) {
    char path[64], err[512];
    snprintf(path, sizeof path, "/dev/fd/%d", fd);
    mmp_reader *r = mmp_reader_open(path, err, sizeof err);
    CHECKF(r, "%s", err);
    return r;
}

/* closes the read end and waits for the writer child, which must exit 0 */
static void reap_writer(int fd, pid_t pid) {
    close(fd);
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A reader at the end of a pipe sees records while the writer is still
 * running (it pauses after 3 records, then writes the rest). */
static void test_pipe_promptness(void) {
    int fds[2];
    if (pipe(fds)) {
        CHECK(0);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        FILE *fp = fdopen(fds[1], "wb");
        mmp_header h;
        make_header(&h);
        mmp_writer *w = mmp_writer_open_fp(fp, "pipe", &h, 3);
        for (int i = 0; i < 6; i++) {
            mmp_record r;
            make_record(&r, i);
            mmp_writer_write(w, &r);
            mmp_record_clear(&r);
            /* a producer that pauses right after a quick burst of records */
            if (i == 2) usleep(3000 * 1000);
        }
        mmp_writer_close(w);
        fclose(fp);
        _exit(0);
    }
    close(fds[1]);
    double t0 = mmp_now();
    mmp_reader *r = open_fd_reader(fds[0]);
    if (r) {
        mmp_record rec;
        mmp_record_init(&rec);
        for (int i = 0; i < 3; i++) CHECK(mmp_reader_next(r, &rec) == 1);
        double dt = mmp_now() - t0;
        CHECKF(dt < 1.5, "first 3 records took %.2f s (the writer pauses 3 s after them)", dt);
        int s, k = 3;
        while ((s = mmp_reader_next(r, &rec)) == 1) k++;
        CHECK(s == 0 && k == 6);
        mmp_record_clear(&rec);
        mmp_reader_close(r);
    }
    reap_writer(fds[0], pid);
}

static long vm_hwm_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
}

/* 64 MiB of records through a pipe: neither side's peak memory grows with
 * the stream's length. */
static void test_bounded_memory(void) {
    const int nrec = 4096, per = 16384;
    int fds[2];
#ifdef T_ASAN
    fprintf(stderr, "AddressSanitizer keeps freed memory: bounded-memory check skipped\n");
    return;
#endif
    if (vm_hwm_kb() < 0 || pipe(fds)) {
        fprintf(stderr, "no /proc/self/status: bounded-memory check skipped\n");
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        mmp_header h;
        mmp_header_init(&h);
        int64_t sh[1] = {per};
        mmp_header_add_field(&h, "x", MMP_U8, 1, sh);
        mmp_record r;
        mmp_record_init(&r);
        mmp_tensor *t = mmp_record_add(&r, "x", MMP_U8, 1, sh);
        FILE *fp = fdopen(fds[1], "wb");
        long before = vm_hwm_kb();
        mmp_writer *w = mmp_writer_open_fp(fp, "pipe", &h, 1);
        for (int i = 0; i < nrec; i++) {
            for (int k = 0; k < per; k += 4) *(uint32_t *)((uint8_t *)t->data + k) = rnd();
            mmp_writer_write(w, &r);
        }
        mmp_writer_close(w);
        fclose(fp);
        long grew = vm_hwm_kb() - before;
        if (grew > 24 * 1024) {
            fprintf(stderr, "writer peak memory grew by %ld KiB for a 64 MiB stream\n", grew);
            _exit(1);
        }
        _exit(0);
    }
    close(fds[1]);
    long before = vm_hwm_kb();
    mmp_reader *r = open_fd_reader(fds[0]);
    mmp_record rec;
    mmp_record_init(&rec);
    int n = 0, s = -1;
    while (r && (s = mmp_reader_next(r, &rec)) == 1) n++;
    CHECKF(s == 0 && n == nrec, "read %d records, status %d: %s", n, s, r ? mmp_reader_error(r) : "");
    long grew = vm_hwm_kb() - before;
    if (getenv("MMP_TEST_VERBOSE")) fprintf(stderr, "reader peak grew %ld KiB\n", grew);
    CHECKF(grew < 24 * 1024, "reader peak memory grew by %ld KiB for a 64 MiB stream", grew);
    mmp_record_clear(&rec);
    mmp_reader_close(r);
    reap_writer(fds[0], pid);
}

/* Large records: multi-MiB tensors cross flush and buffer boundaries. */
static void test_large(void) {
    mmp_header h;
    mmp_header_init(&h);
    int64_t sh[1] = {-1};
    mmp_header_add_field(&h, "big", MMP_F32, 1, sh);
    mmp_writer *w = mmp_writer_open("big.mmp", &h, 1);
    int sizes[] = {0, 1, 70000, 3 << 20, 5, 1 << 18};
    for (int i = 0; i < 6; i++) {
        mmp_record r;
        mmp_record_init(&r);
        int64_t s[1] = {sizes[i]};
        mmp_tensor *t = mmp_record_add(&r, "big", MMP_F32, 1, s);
        for (int k = 0; k < sizes[i]; k++) ((float *)t->data)[k] = (float)(k % 1000) * 0.25f + (float)i;
        mmp_writer_write(w, &r);
        mmp_record_clear(&r);
    }
    mmp_writer_close(w);
    char err[512];
    mmp_reader *r = mmp_reader_open("big.mmp", err, sizeof err);
    CHECKF(r, "%s", err);
    mmp_record rec;
    mmp_record_init(&rec);
    for (int i = 0; r && i < 6; i++) {
        CHECK(mmp_reader_next(r, &rec) == 1);
        const mmp_tensor *t = mmp_record_cget(&rec, "big");
        CHECK(t && t->shape[0] == sizes[i]);
        int ok = 1;
        for (int k = 0; t && k < sizes[i]; k++)
            if (((float *)t->data)[k] != (float)(k % 1000) * 0.25f + (float)i) ok = 0;
        CHECK(ok);
    }
    if (r) {
        CHECK(mmp_reader_next(r, &rec) == 0);
        mmp_reader_close(r);
    }
    mmp_record_clear(&rec);
    mmp_header_free(&h);
}

/* the fast CRC equals zlib's crc32 for every length, offset and chaining */
static void test_crc(void) {
    size_t n = 5000;
    uint8_t *buf = malloc(n);
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rnd();
    int bad = 0;
    for (size_t off = 0; off < 17; off++)
        for (size_t len = 0; off + len <= n; len += len < 300 ? 1 : 97) {
            uint32_t seed = (uint32_t)rnd();
            uint32_t want = (uint32_t)crc32(seed, buf + off, (uInt)len);
            if (mmp_stream_crc32(seed, buf + off, len) != want) bad++;
        }
    CHECKF(bad == 0, "%d CRC mismatches", bad);
    CHECK(mmp_stream_crc32(0, "123456789", 9) == 0xCBF43926u);
    free(buf);
}

int main(int argc, char **argv) {
    mmp_set_progname("test_stream");
    /* helper mode for the shell tests: test_stream gen FILE N [FIRST [LEVEL [SKIPPED]]] */
    if (argc >= 4 && strcmp(argv[1], "gen") == 0) {
        write_stream(argv[2], argc > 4 ? atoi(argv[4]) : 0, atoi(argv[3]),
                     argc > 5 ? atoi(argv[5]) : 3, argc > 6 ? (uint64_t)atoll(argv[6]) : 0);
        return 0;
    }
    test_bounded_memory(); /* first: before other tests raise the peak */
    test_crc();
    test_roundtrip();
    test_empty_stream();
    test_memstream();
    test_strings();
    test_abandon();
    test_concat();
    test_truncation_and_flips();
    msgpack_sbuffer_init(&B);
    msgpack_packer_init(&PK, &B, msgpack_sbuffer_write);
    test_crafted();
    test_measure_limits();
    test_writer_bytes();
    msgpack_sbuffer_destroy(&B);
    test_pipe_promptness();
    test_large();
    TEST_END();
}
