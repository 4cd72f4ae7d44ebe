/* lib/npz.c: the zip and NPY structure read back by hand (stored and
 * deflated give the same arrays), values, bf16 -> f32, one shape per field,
 * reserved names, no file left after an error. numpy.load itself is checked
 * by tests/sh/test_npz.sh. */
#include <stdint.h>
#include <unistd.h>
#include <zlib.h>

#include "npz.h"
#include "testlib.h"

static uint32_t rd32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static unsigned rd16(const unsigned char *p) { return p[0] | p[1] << 8; }

/* Finds entry NAME by walking the local headers; its uncompressed bytes
 * (malloc'ed) and their count, NULL when absent. Checks the CRC. */
static unsigned char *entry(const unsigned char *z, size_t n, const char *name, size_t *len) {
    size_t off = 0;
    while (off + 30 <= n && rd32(z + off) == 0x04034b50) {
        unsigned method = rd16(z + off + 8), nl = rd16(z + off + 26), xl = rd16(z + off + 28);
        uint32_t crc = rd32(z + off + 14), cs = rd32(z + off + 18), us = rd32(z + off + 22);
        const unsigned char *data = z + off + 30 + nl + xl;
        if (nl == strlen(name) && memcmp(z + off + 30, name, nl) == 0) {
            unsigned char *out = malloc(us + 1);
            if (method == 0) {
                CHECK(cs == us);
                memcpy(out, data, us);
            } else {
                CHECK(method == 8);
                z_stream s = {0};
                inflateInit2(&s, -15);
                s.next_in = (Bytef *)data;
                s.avail_in = cs;
                s.next_out = out;
                s.avail_out = us;
                CHECK(inflate(&s, Z_FINISH) == Z_STREAM_END);
                CHECK(s.total_out == us);
                inflateEnd(&s);
            }
            CHECKF(crc32(0, out, us) == crc, "%s: crc", name);
            *len = us;
            return out;
        }
        off += 30 + nl + xl + cs;
    }
    return NULL;
}

/* The NPY header of an entry: checks magic, 64-byte alignment, and returns
 * the dict text (static) and the data offset. */
static const char *npy(const unsigned char *e, size_t len, size_t *data) {
    static char dict[512];
    CHECK(len >= 10 && memcmp(e, "\x93NUMPY\x01\x00", 8) == 0);
    size_t hl = rd16(e + 8);
    CHECK((10 + hl) % 64 == 0 && e[10 + hl - 1] == '\n');
    size_t k = hl < sizeof dict ? hl : sizeof dict - 1;
    memcpy(dict, e + 10, k);
    dict[k] = 0;
    *data = 10 + hl;
    return dict;
}

static void make(const char *path, int deflate) {
    mmp_header h;
    mmp_header_init(&h);
    int64_t s3[1] = {3}, s2[1] = {2}, img[2] = {-1, 2};
    mmp_header_add_field(&h, "emb", MMP_F32, 1, s3);
    mmp_header_add_field(&h, "half", MMP_BF16, 1, s2);
    mmp_header_add_field(&h, "img", MMP_U8, 2, img);
    char *cls[] = {"cat", "dög"};
    mmp_header_set_classes(&h, 2, cls);
    char err[512];
    mmp_npz *z = mmp_npz_open(path, &h, deflate, err, sizeof err);
    CHECK(z != NULL);
    for (int i = 0; i < 3; i++) {
        mmp_record r;
        mmp_record_init(&r);
        if (i != 1) mmp_record_set_id(&r, i == 0 ? "a" : "ünï");
        r.label = i == 2 ? MMP_NO_LABEL : i;
        float *e = mmp_record_add(&r, "emb", MMP_F32, 1, s3)->data;
        for (int k = 0; k < 3; k++) e[k] = (float)(i * 10 + k) + 0.5f;
        uint16_t *b = mmp_record_add(&r, "half", MMP_BF16, 1, s2)->data;
        b[0] = mmp_f32_to_bf16(1.5f + (float)i);
        b[1] = mmp_f32_to_bf16(-2.0f);
        int64_t is[2] = {2, 2};
        uint8_t *u = mmp_record_add(&r, "img", MMP_U8, 2, is)->data;
        for (int k = 0; k < 4; k++) u[k] = (uint8_t)(i * 4 + k);
        CHECKF(mmp_npz_add(z, &r, "mem", (uint64_t)i, err, sizeof err) == 0, "%s", err);
        mmp_record_clear(&r);
    }
    CHECKF(access(path, F_OK) != 0, "the file appears only at close");
    CHECKF(mmp_npz_close(z, err, sizeof err) == 0, "%s", err);
    mmp_header_free(&h);
}

static void check_file(const char *path) {
    size_t n, len, d;
    unsigned char *z = t_slurp(path, &n);
    CHECK(z != NULL);
    if (!z) return;
    CHECK(rd32(z + n - 22) == 0x06054b50 && rd16(z + n - 22 + 10) == 6); /* 6 entries */

    unsigned char *e = entry(z, n, "emb.npy", &len);
    CHECK(e != NULL);
    CHECK(strstr(npy(e, len, &d), "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 3), }") != NULL);
    CHECK(len - d == 9 * 4);
    for (int i = 0; i < 9; i++) {
        float v;
        memcpy(&v, e + d + 4 * i, 4);
        CHECK(v == (float)((i / 3) * 10 + i % 3) + 0.5f);
    }
    free(e);

    e = entry(z, n, "half.npy", &len);
    CHECK(e != NULL && strstr(npy(e, len, &d), "'descr': '<f4'") && strstr(npy(e, len, &d), "(3, 2)"));
    float v[6];
    memcpy(v, e + d, sizeof v);
    CHECK(len - d == sizeof v && v[0] == 1.5f && v[2] == 2.5f && v[4] == 3.5f && v[5] == -2.0f);
    free(e);

    e = entry(z, n, "img.npy", &len);
    CHECK(e != NULL && strstr(npy(e, len, &d), "'descr': '|u1'") && strstr(npy(e, len, &d), "(3, 2, 2)"));
    for (int i = 0; i < 12; i++) CHECK(e[d + (size_t)i] == i);
    free(e);

    e = entry(z, n, "labels.npy", &len);
    CHECK(e != NULL && strstr(npy(e, len, &d), "'descr': '<i8'") && strstr(npy(e, len, &d), "(3,)"));
    int64_t lab[3];
    memcpy(lab, e + d, sizeof lab);
    CHECK(len - d == 24 && lab[0] == 0 && lab[1] == 1 && lab[2] == -1);
    free(e);

    e = entry(z, n, "ids.npy", &len); /* widest id: 3 code points; the missing one is "" */
    CHECK(e != NULL && strstr(npy(e, len, &d), "'descr': '<U3'") && strstr(npy(e, len, &d), "(3,)"));
    CHECK(len - d == 36 && rd32(e + d) == 'a' && rd32(e + d + 4) == 0 && rd32(e + d + 12) == 0);
    CHECK(rd32(e + d + 24) == 0xFC && rd32(e + d + 28) == 'n' && rd32(e + d + 32) == 0xEF);
    free(e);

    e = entry(z, n, "classes.npy", &len);
    CHECK(e != NULL && strstr(npy(e, len, &d), "'descr': '<U3'") && strstr(npy(e, len, &d), "(2,)"));
    CHECK(len - d == 24 && rd32(e + d) == 'c' && rd32(e + d + 12) == 'd' && rd32(e + d + 16) == 0xF6);
    free(e);
    free(z);
}

int main(void) {
    char dir[] = "/tmp/test_npz.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char stored[256], deflated[256];
    snprintf(stored, sizeof stored, "%s/s.npz", dir);
    snprintf(deflated, sizeof deflated, "%s/d.npz", dir);
    make(stored, 0);
    make(deflated, 1);
    check_file(stored);
    check_file(deflated);
    size_t a, b;
    unsigned char *sa = t_slurp(stored, &a), *sb = t_slurp(deflated, &b);
    CHECK(sa && sb && b < a);
    free(sa);
    free(sb);

    /* a second shape for a field: one line naming source, record and field; no file */
    char bad[256], err[512];
    snprintf(bad, sizeof bad, "%s/bad.npz", dir);
    mmp_header h;
    mmp_header_init(&h);
    int64_t img[3] = {-1, -1, 3};
    mmp_header_add_field(&h, "image", MMP_U8, 3, img);
    mmp_npz *z = mmp_npz_open(bad, &h, 0, err, sizeof err);
    CHECK(z != NULL);
    for (int i = 0; i < 2; i++) {
        mmp_record r;
        mmp_record_init(&r);
        int64_t s[3] = {4, 4 + i, 3};
        mmp_record_add(&r, "image", MMP_U8, 3, s);
        int rc = mmp_npz_add(z, &r, "x.mmp", (uint64_t)i, err, sizeof err);
        CHECK(rc == (i ? -1 : 0));
        mmp_record_clear(&r);
    }
    CHECKF(strstr(err, "x.mmp: record 1: field 'image' has shape [4,5,3], the first record [4,4,3]") != NULL,
           "%s", err);
    CHECK(strchr(err, '\n') == NULL);
    mmp_npz_abort(z);
    CHECK(access(bad, F_OK) != 0);
    CHECKF(t_sh("ls %s | grep -q tmp && exit 1; exit 0", dir) == 0, "temporary file left");

    /* a field named like an extra array */
    mmp_header_add_field(&h, "labels", MMP_I64, 0, NULL);
    CHECK(mmp_npz_open(bad, &h, 0, err, sizeof err) == NULL);
    CHECKF(strstr(err, "field 'labels'") != NULL, "%s", err);
    mmp_header_free(&h);

    t_sh("rm -rf %s", dir);
    TEST_END();
}
