/* Core: dtypes, f16/bf16 conversion, records, headers, sha256, safetensors. */
#include "mmp.h"
#include "testlib.h"

#include <unistd.h>

static void test_half(void) {
    /* exact values */
    CHECK(mmp_f32_to_f16(1.0f) == 0x3c00);
    CHECK(mmp_f32_to_f16(-2.0f) == 0xc000);
    CHECK(mmp_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(mmp_f32_to_f16(65520.0f) == 0x7c00);     /* rounds to inf */
    CHECK(mmp_f32_to_f16(65519.0f) == 0x7bff);
    CHECK(mmp_f32_to_f16(5.9604645e-08f) == 0x0001); /* smallest subnormal */
    CHECK(mmp_f32_to_f16(2.9802322e-08f) == 0x0000); /* half of it: ties to even -> 0 */
    CHECK(mmp_f32_to_f16(8.940697e-08f) == 0x0002);  /* 1.5 units: ties to even -> 2 */
    CHECK(mmp_f32_to_f16(1.0009765625f) == 0x3c01);
    CHECK(mmp_f32_to_f16(1.00048828125f) == 0x3c00); /* tie -> even */
    CHECK(mmp_f32_to_f16(1.00146484375f) == 0x3c02); /* tie -> even (up) */
    CHECK((mmp_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (mmp_f32_to_f16(NAN) & 0x3ff));
    /* round trip every half value */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* nan */
        float f = mmp_f16_to_f32((uint16_t)h);
        if (mmp_f32_to_f16(f) != h) bad++;
    }
    CHECKF(bad == 0, "%d half values do not round trip", bad);
    CHECK(mmp_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(mmp_bf16_to_f32(0x3f80) == 1.0f);
    CHECK(mmp_f32_to_bf16(1.00390625f) == 0x3f80); /* tie -> even */
    CHECK(mmp_f32_to_bf16(1.01171875f) == 0x3f82); /* tie -> even (up) */
}

static void test_records(void) {
    mmp_record r, c;
    mmp_record_init(&r);
    mmp_record_init(&c);
    int64_t s[2] = {2, 3};
    mmp_tensor *t = mmp_record_add(&r, "x", MMP_F32, 2, s);
    for (int i = 0; i < 6; i++) ((float *)t->data)[i] = (float)i;
    mmp_record_set_id(&r, "a/b.jpg");
    mmp_record_set_text(&r, "hello");
    r.label = 4;
    mmp_record_copy(&c, &r);
    mmp_record_clear(&r);
    CHECK(r.nfields == 0 && r.id == NULL && r.label == MMP_NO_LABEL);
    CHECK(c.label == 4 && strcmp(c.id, "a/b.jpg") == 0 && strcmp(c.text, "hello") == 0);
    const mmp_tensor *ct = mmp_record_cget(&c, "x");
    CHECK(ct && ct->nbytes == 24 && ((float *)ct->data)[5] == 5.0f);
    float f[6];
    mmp_tensor_to_f32(ct, f);
    CHECK(f[3] == 3.0f);
    mmp_record_remove(&c, "x");
    CHECK(c.nfields == 0);
    mmp_record_clear(&c);
}

static void test_header(void) {
    mmp_header a, b;
    mmp_header_init(&a);
    int64_t s1[1] = {1280}, s2[3] = {-1, -1, 3};
    mmp_header_add_field(&a, "embedding", MMP_F32, 1, s1);
    mmp_header_add_field(&a, "image", MMP_U8, 3, s2);
    char *cls[2] = {"cat", "dog"};
    mmp_header_set_classes(&a, 2, cls);
    mmp_header_copy(&b, &a);
    char why[256];
    CHECK(mmp_header_compatible(&a, &b, why, sizeof why));
    mmp_header_add_field(&b, "embedding", MMP_F16, 1, s1);
    CHECK(!mmp_header_compatible(&a, &b, why, sizeof why) && strstr(why, "embedding"));
    mmp_header_add_field(&b, "embedding", MMP_F32, 1, s1);
    char *cls2[2] = {"cat", "cow"};
    mmp_header_set_classes(&b, 2, cls2);
    CHECK(!mmp_header_compatible(&a, &b, why, sizeof why) && strstr(why, "cow"));
    char *argv[] = {"/x/mmp-decode", "--size", "96", "a b.tar"};
    mmp_set_progname("mmp-decode");
    mmp_header_stamp(&a, 4, argv);
    CHECK(strcmp(mmp_meta_get(&a.meta, "args"), "mmp-decode --size 96 'a b.tar'") == 0);
    mmp_header_stamp(&a, 4, argv);
    CHECK(strchr(mmp_meta_get(&a.meta, "history"), '\n') != NULL);
    mmp_header_free(&a);
    mmp_header_free(&b);
}

/* SHA-256 of the n-th test buffer (n < 300: n bytes; then 1..5 MB + 7) */
static void sha_dump_one(size_t n, char hex[65]) {
    size_t len = n < 300 ? n : (n - 299) * 1000003 + 7;
    uint8_t *b = malloc(len ? len : 1), d[32];
    uint64_t s = n * 0x9E3779B97F4A7C15ULL + 1;
    for (size_t i = 0; i < len; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        b[i] = (uint8_t)(s >> 56);
    }
    mmp_sha256(b, len, d);
    free(b);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

static void test_sha(void) {
    uint8_t d[32];
    mmp_sha256("abc", 3, d);
    char hex[65];
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    mmp_sha256(m, strlen(m), d);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0);
    /* the SHA-NI and portable block functions agree: hashes of buffers of
     * every length 0..300 (all padding cases) and a few big ones, here and in
     * a copy of this program forced onto the portable code */
    char line[80], *self = realpath("/proc/self/exe", NULL);
    char *cmd = mmp_xasprintf("MMP_SHA256=portable '%s' sha-dump", self);
    FILE *p = popen(cmd, "r");
    int lines = 0, same = 0;
    for (size_t n = 0; p && n < 300 + 5; n++) {
        char want[65];
        sha_dump_one(n, want);
        if (!fgets(line, sizeof line, p)) break;
        lines++;
        same += !strncmp(line, want, 64);
    }
    CHECKF(p && lines == 305 && same == 305, "SHA-256: %d of %d hashes agree with the portable code", same, lines);
    if (p) pclose(p);
    free(cmd);
    free(self);
    CHECK(mmp_hash64("a", 1, 0) != mmp_hash64("b", 1, 0));
    CHECK(mmp_hash64("a", 1, 0) == mmp_hash64("a", 1, 0));
}

static int st_parse_str(const char *hdr, size_t datalen, char *err, size_t errlen) {
    size_t hl = strlen(hdr);
    size_t n = 8 + hl + datalen;
    uint8_t *buf = calloc(1, n);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    mmp_safetensors st;
    int rc = mmp_st_parse(&st, buf, n, err, errlen);
    if (rc == 0) mmp_st_close(&st);
    free(buf);
    return rc;
}

static void test_safetensors(void) {
    mmp_st_writer w;
    mmp_st_writer_init(&w);
    float a[6] = {1, 2, 3, 4, 5, 6};
    int64_t sa[2] = {2, 3};
    mmp_st_writer_add_f32(&w, "layer.weight", a, 2, sa);
    mmp_tensor t;
    int64_t sb[1] = {3};
    mmp_tensor_alloc(&t, MMP_I64, 1, sb);
    ((int64_t *)t.data)[2] = -7;
    mmp_st_writer_add(&w, "steps", &t);
    mmp_tensor_free(&t);
    mmp_tensor_alloc(&t, MMP_U8, 1, sb);
    mmp_st_writer_add(&w, "bytes", &t);
    mmp_tensor_free(&t);
    mmp_meta_set(&w.meta, "arch", "linear \"q\"\n");
    char err[512];
    CHECK(mmp_st_writer_write(&w, "t.safetensors", err, sizeof err) == 0);
    mmp_st_writer_free(&w);
    mmp_safetensors st;
    CHECKF(mmp_st_open(&st, "t.safetensors", err, sizeof err) == 0, "%s", err);
    CHECK(st.n == 3);
    const mmp_tensor *x = mmp_st_get(&st, "layer.weight");
    CHECK(x && x->dtype == MMP_F32 && x->ndim == 2 && x->shape[1] == 3 && ((float *)x->data)[4] == 5.0f);
    x = mmp_st_get(&st, "steps");
    CHECK(x && x->dtype == MMP_I64 && ((int64_t *)x->data)[2] == -7);
    CHECK(mmp_meta_get(&st.meta, "arch") && strcmp(mmp_meta_get(&st.meta, "arch"), "linear \"q\"\n") == 0);
    mmp_st_close(&st);
    CHECK(access("t.safetensors", F_OK) == 0);

    /* malformed headers: each must fail with a message, never crash */
    struct { const char *hdr; size_t dlen; const char *msg; } bad[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "past the data"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "shape needs"},
        {"{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, "unsupported dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", 8, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "gap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "cover"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "negative"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,4]}}", 4, "overflow"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "needs dtype"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "not a string"},
        {"{\"a\\ud800\":{}}", 0, "invalid Unicode"},
        {"[]", 0, "expected '{'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        int rc = st_parse_str(bad[i].hdr, bad[i].dlen, err, sizeof err);
        CHECKF(rc == -1 && strstr(err, bad[i].msg), "case %zu: rc=%d err='%s' (want '%s')", i, rc, err, bad[i].msg);
    }
    /* header length past the end */
    uint8_t tiny[12] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    mmp_safetensors st2;
    CHECK(mmp_st_parse(&st2, tiny, sizeof tiny, err, sizeof err) == -1 && strstr(err, "past the end"));
    CHECK(mmp_st_parse(&st2, tiny, 5, err, sizeof err) == -1 && strstr(err, "too short"));
    CHECK(mmp_st_open(&st2, "does-not-exist.safetensors", err, sizeof err) == -1 && strstr(err, "does-not-exist"));
}

static void test_shared_model(void) {
    const char *sh = t_shared();
    if (!sh) { printf("(no shared data: real model check skipped)\n"); return; }
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/models/mobilenet_v2-imagenet.safetensors", sh);
    mmp_safetensors st;
    CHECKF(mmp_st_open(&st, path, err, sizeof err) == 0, "%s", err);
    if (st.n == 0) return;
    const mmp_tensor *w = mmp_st_get(&st, "classifier.1.weight");
    CHECK(w && w->dtype == MMP_F32 && w->ndim == 2 && w->shape[0] == 1000 && w->shape[1] == 1280);
    CHECK(mmp_st_get(&st, "features.0.0.weight") != NULL);
    mmp_st_close(&st);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "sha-dump")) { /* the helper process of test_sha */
        for (size_t n = 0; n < 305; n++) {
            char h[65];
            sha_dump_one(n, h);
            printf("%s\n", h);
        }
        return 0;
    }
    test_half();
    test_records();
    test_header();
    test_sha();
    test_safetensors();
    test_shared_model();
    TEST_END();
}
