/* safetensors validation as formats/safetensors.md states it: every rule
 * broken once -> -1 with one clear line (and the dying variant: exit 1, one
 * stderr line "prog: PATH: what"); valid files (writer output, hand-made,
 * zero-size tensors) accepted with the right tensors. */
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mmp.h"
#include "testlib.h"

/* Builds a file image: 8-byte length, header text, data bytes. */
static size_t build(uint8_t *out, const char *header, size_t hlen_override, size_t datalen) {
    size_t h = strlen(header);
    uint64_t n = hlen_override ? hlen_override : h;
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)(n >> (8 * i));
    memcpy(out + 8, header, h);
    for (size_t i = 0; i < datalen; i++) out[8 + h + i] = (uint8_t)(i * 7 + 1);
    return 8 + h + datalen;
}

static void expect_bad(const char *header, size_t hlen_override, size_t datalen, const char *want,
                       int line) {
    static uint8_t buf[1 << 16];
    size_t n = build(buf, header, hlen_override, datalen);
    /* exact-size copy so ASan catches any overread */
    uint8_t *copy = malloc(n);
    memcpy(copy, buf, n);
    mmp_safetensors st;
    char err[1024] = "";
    int r = mmp_st_parse(&st, copy, n, err, sizeof err);
    if (r != -1) {
        fprintf(stderr, "line %d: accepted a bad file (want '%s')\n", line, want);
        t_failures++;
        mmp_st_close(&st);
    } else if (!strstr(err, want)) {
        fprintf(stderr, "line %d: error '%s' does not contain '%s'\n", line, err, want);
        t_failures++;
    } else {
        for (const char *c = err; *c; c++)
            if ((unsigned char)*c < 0x20) {
                fprintf(stderr, "line %d: error message is not one printable line: '%s'\n", line, err);
                t_failures++;
                break;
            }
    }
    free(copy);
}

static void write_file(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(p, 1, n, f);
    fclose(f);
}

int main(void) {
    mmp_set_progname("test_stream_safetensors");
    /* 1. sizes */
    expect_bad("", 0, 0, "header is too short", __LINE__); /* 8 bytes, header length 0 */
    {
        mmp_safetensors st;
        char err[256] = "";
        CHECK(mmp_st_parse(&st, "abc", 3, err, sizeof err) == -1 && strstr(err, "too short"));
    }
    expect_bad("{}", 1000, 0, "runs past the end", __LINE__);
    expect_bad("{}", (size_t)200 << 20, 0, "100 MiB", __LINE__);
    expect_bad("{", 0, 0, "header is too short", __LINE__);
    /* 2. JSON */
    expect_bad("[1,2]", 0, 0, "bad header JSON", __LINE__);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 0, 4, "bad header JSON", __LINE__);
    expect_bad("{} x", 0, 0, "trailing bytes", __LINE__);
    expect_bad("{\"a\x01\":{}}", 0, 0, "control character", __LINE__);
    expect_bad("{\"\\ud800\":{}}", 0, 0, "invalid Unicode '\\uD800'", __LINE__); /* a lone surrogate */
    expect_bad("{\"\\ud800\\u0041\":{}}", 0, 0, "invalid Unicode", __LINE__);        /* a bad pair */
    expect_bad("{\"a\xff\":{}}", 0, 0, "unable to decode byte 0xff", __LINE__);         /* not UTF-8 */
    expect_bad("{\"a\\u0000\":{}}", 0, 0, "NUL", __LINE__);
    expect_bad("{\"a\\q\":{}}", 0, 0, "line 1, column 5: invalid escape", __LINE__);
    expect_bad("{\"a\\\n\":{}}", 0, 0, "invalid escape", __LINE__); /* message stays one line */
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 0, 4, "integer", __LINE__);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 0, 4, "too big integer", __LINE__);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-99999999999999999999],\"data_offsets\":[0,4]}}", 0, 4, "too big negative integer", __LINE__);
    /* within int64 but past the data, or negative */
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[9007199254740993],\"data_offsets\":[0,9007199254740993]}}", 0, 4, "past the data", __LINE__);
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 0, 1, "bad data_offsets [-1, 0]", __LINE__);
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1e0]}}", 0, 1, "expected an integer", __LINE__);
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,\"1\"]}}", 0, 1, "expected an integer", __LINE__);
    {
        char deep[200] = "{\"a\":{\"x\":";
        for (int i = 0; i < 40; i++) strcat(deep, "[");
        expect_bad(deep, 0, 0, "bad header JSON", __LINE__); /* unterminated */
        for (int i = 0; i < 40; i++) strcat(deep, "]");
        strcat(deep, "}}");
        expect_bad(deep, 0, 0, "nested too deeply", __LINE__);
    }
    /* 3. entries */
    expect_bad("{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 0, 8, "unsupported dtype 'F64'", __LINE__);
    expect_bad("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 4, "unsupported dtype 'f32'", __LINE__);
    /* a name with an escaped newline: the message must stay one line */
    expect_bad("{\"a\\nb\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 0, 8, "unsupported dtype 'F64'", __LINE__);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 0, 4, "negative dimension", __LINE__);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 0, 4, "array too long", __LINE__);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, 4, "needs dtype, shape and data_offsets", __LINE__);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 0, 4, "data_offsets needs 2", __LINE__);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 0, 4, "bad data_offsets", __LINE__);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 0, 4, "past the data", __LINE__);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 0, 4, "its shape needs 8", __LINE__);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,4]}}", 0, 4, "overflows", __LINE__);
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 0, 2, "duplicate object key near '\"a\"'", __LINE__);
    /* 4. metadata */
    expect_bad("{\"__metadata__\":{\"k\":1}}", 0, 0, "is not a string", __LINE__);
    /* 5. coverage */
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}", 0, 3, "overlaps", __LINE__);
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}", 0, 3, "gap", __LINE__);
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 0, 3, "cover", __LINE__);
    expect_bad("{}", 0, 1, "cover", __LINE__);

    /* valid: hand-made with metadata, unknown keys, whitespace, a scalar and
     * a zero-size tensor, offsets out of name order */
    {
        static uint8_t buf[4096];
        const char *h = " { \"__metadata__\" : {\"format\":\"pt\", \"x\\u00e9\\n\":\"\\\"q\\\"\"},"
                        "\"z\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[4,20],\"extra\":{\"a\":[1,{\"b\":null}]}},"
                        "\"s\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]},"
                        "\"e\":{\"dtype\":\"BF16\",\"shape\":[0,3],\"data_offsets\":[20,20]}}   ";
        size_t n = build(buf, h, 0, 20);
        uint8_t *copy = malloc(n);
        memcpy(copy, buf, n);
        mmp_safetensors st;
        char err[512] = "";
        CHECKF(mmp_st_parse(&st, copy, n, err, sizeof err) == 0, "%s", err);
        if (!err[0]) {
            CHECK(st.n == 3);
            CHECK(strcmp(st.entries[0].name, "s") == 0 && st.entries[0].t.ndim == 0);
            const mmp_tensor *z = mmp_st_get(&st, "z");
            CHECK(z && z->dtype == MMP_F32 && z->nbytes == 16 && (const uint8_t *)z->data == copy + 8 + strlen(h) + 4);
            const mmp_tensor *e = mmp_st_get(&st, "e");
            CHECK(e && e->nbytes == 0 && e->shape[1] == 3);
            CHECK(mmp_meta_get(&st.meta, "format") && strcmp(mmp_meta_get(&st.meta, "format"), "pt") == 0);
            CHECK(mmp_meta_get(&st.meta, "x\xc3\xa9\n") && strcmp(mmp_meta_get(&st.meta, "x\xc3\xa9\n"), "\"q\"") == 0);
            mmp_st_close(&st);
        }
        free(copy);
    }
    /* valid: the writer's output, read back through mmp_st_open */
    {
        mmp_st_writer w;
        mmp_st_writer_init(&w);
        float a[6] = {1, -2, 3.5f, 0, 1e-3f, 7};
        int64_t sh[2] = {2, 3};
        mmp_st_writer_add_f32(&w, "layer.weight", a, 2, sh);
        mmp_tensor t;
        int64_t s1[1] = {3};
        mmp_tensor_alloc(&t, MMP_I64, 1, s1);
        ((int64_t *)t.data)[2] = -5;
        mmp_st_writer_add(&w, "steps", &t);
        mmp_tensor_free(&t);
        mmp_meta_set(&w.meta, "epoch", "3");
        char err[512] = "";
        CHECKF(mmp_st_writer_write(&w, "w.safetensors", err, sizeof err) == 0, "%s", err);
        mmp_st_writer_free(&w);
        mmp_safetensors st;
        CHECKF(mmp_st_open(&st, "w.safetensors", err, sizeof err) == 0, "%s", err);
        if (st.n == 2) {
            int64_t want[2] = {2, 3};
            const mmp_tensor *x = mmp_st_require(&st, "layer.weight", MMP_F32, 2, want);
            CHECK(memcmp(x->data, a, sizeof a) == 0);
            CHECK(((const int64_t *)mmp_st_get(&st, "steps")->data)[2] == -5);
            CHECK(strcmp(mmp_meta_get(&st.meta, "epoch"), "3") == 0);
            mmp_st_close(&st);
        }
    }
    /* the model loaders' getter: float dtypes converted, exact shape, and a
     * message naming the file and the tensor otherwise */
    {
        mmp_st_writer w;
        mmp_st_writer_init(&w);
        float a[6] = {1, -2, 3.5f, 0, 0.25f, 7};
        int64_t sh[2] = {2, 3}, sh1[1] = {6}, sh3[2] = {3, 2};
        mmp_tensor h;
        mmp_tensor_alloc(&h, MMP_BF16, 2, sh);
        mmp_f32_to_dtype(a, 6, MMP_BF16, h.data);
        mmp_st_writer_add(&w, "w.bf16", &h);
        mmp_tensor_free(&h);
        mmp_tensor_alloc(&h, MMP_I32, 1, sh1);
        mmp_st_writer_add(&w, "ints", &h);
        mmp_tensor_free(&h);
        mmp_st_writer_add_f32(&w, "w.f32", a, 2, sh);
        /* header bytes as always (\n as \u000a), except that bytes which are not
         * UTF-8 become U+FFFD: the header must be UTF-8 to be read back */
        mmp_meta_set(&w.meta, "note", "a\nb\xff\xc3\xa9");
        char err[512] = "";
        CHECKF(mmp_st_writer_write(&w, "g.safetensors", err, sizeof err) == 0, "%s", err);
        mmp_st_writer_free(&w);
        mmp_safetensors st;
        CHECKF(mmp_st_open(&st, "g.safetensors", err, sizeof err) == 0, "%s", err);
        CHECKF(!strcmp(mmp_meta_get(&st.meta, "note"), "a\nb\xef\xbf\xbd\xc3\xa9"), "%s", mmp_meta_get(&st.meta, "note"));
        const char *note = "\"note\":\"a\\u000ab\\ufffd\xc3\xa9\"";
        CHECK(memmem(st.map, st.mapsize, note, strlen(note)) != NULL);
        float got[6] = {0};
        CHECK(mmp_st_read_f32(&st, "w.bf16", 2, sh, got, err, sizeof err) == 0 && memcmp(got, a, sizeof a) == 0);
        float *c = mmp_st_f32(&st, "w.f32", 2, sh, err, sizeof err);
        CHECK(c && memcmp(c, a, sizeof a) == 0);
        free(c);
        struct { const char *name; int ndim; const int64_t *shape; const char *msg; } bad[] = {
            {"nope", 2, sh, "g.safetensors: tensor 'nope' is missing"},
            {"ints", 1, sh1, "g.safetensors: tensor 'ints' is I32, expected a float dtype (F32, F16 or BF16)"},
            {"w.f32", 2, sh3, "g.safetensors: tensor 'w.f32' has shape [2,3], expected [3,2]"},
            {"w.bf16", 1, sh1, "g.safetensors: tensor 'w.bf16' has shape [2,3], expected [6]"},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            err[0] = 0;
            CHECKF(mmp_st_read_f32(&st, bad[i].name, bad[i].ndim, bad[i].shape, got, err, sizeof err) == -1 &&
                   !strcmp(err, bad[i].msg), "getter %zu: '%s'", i, err);
            err[0] = 0;
            CHECKF(mmp_st_f32(&st, bad[i].name, bad[i].ndim, bad[i].shape, err, sizeof err) == NULL &&
                   !strcmp(err, bad[i].msg), "getter %zu: '%s'", i, err);
        }
        mmp_st_close(&st);
    }
    /* the path prefix, and the dying variant: exit 1, exactly one stderr line */
    {
        static uint8_t buf[256];
        size_t n = build(buf, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 0, 4);
        write_file("bad.safetensors", buf, n);
        mmp_safetensors st;
        char err[512] = "";
        CHECK(mmp_st_open(&st, "bad.safetensors", err, sizeof err) == -1);
        CHECKF(strncmp(err, "bad.safetensors: tensor 'a'", 27) == 0, "%s", err);
        CHECK(mmp_st_open(&st, "missing.safetensors", err, sizeof err) == -1 && strstr(err, "missing.safetensors"));
        write_file("empty.safetensors", buf, 0);
        CHECK(mmp_st_open(&st, "empty.safetensors", err, sizeof err) == -1 && strstr(err, "too short"));
        int fds[2];
        CHECK(pipe(fds) == 0);
        pid_t pid = fork();
        if (pid == 0) {
            dup2(fds[1], 2);
            close(fds[0]);
            mmp_set_progname("mmp-x");
            mmp_st_open_or_die(&st, "bad.safetensors");
            _exit(0);
        }
        close(fds[1]);
        char out[1024] = "";
        size_t got = 0;
        ssize_t k;
        while ((k = read(fds[0], out + got, sizeof out - 1 - got)) > 0) got += (size_t)k;
        out[got] = 0;
        close(fds[0]);
        int status;
        waitpid(pid, &status, 0);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %d", status);
        CHECKF(strncmp(out, "mmp-x: bad.safetensors: ", 24) == 0, "stderr: %s", out);
        int lines = 0;
        for (char *c = out; *c; c++) lines += *c == '\n';
        CHECKF(lines == 1, "%d stderr lines: %s", lines, out);
    }
    TEST_END();
}
