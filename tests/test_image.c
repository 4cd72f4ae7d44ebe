/* Decoding and Pillow-exact resizing against the committed fixtures of
 * tests/fixtures/gen_image.py (PIL 9.4 / torchvision 0.14). */
#include "image/image.h"
#include "mmp.h"
#include "testlib.h"

#include <stdlib.h>
#include <string.h>

static mmp_img_decoder *dec;

static int load_png(const char *rel, mmp_img *im) {
    size_t n;
    uint8_t *b = t_slurp(t_root_path(rel), &n);
    if (!b) return -1;
    char err[256];
    int rc = mmp_img_decode(dec, b, n, NULL, im, err, sizeof err);
    if (rc) fprintf(stderr, "%s: %s\n", rel, err);
    free(b);
    return rc;
}

/* compares an image with a [H,W,3] u8 reference; returns max abs diff */
static int cmp_ref(const mmp_safetensors *st, const char *name, const mmp_img *im, int *count) {
    const mmp_tensor *t = mmp_st_get(st, name);
    if (!t) {
        fprintf(stderr, "missing reference %s\n", name);
        return 999;
    }
    if (t->ndim != 3 || t->shape[0] != im->h || t->shape[1] != im->w || t->shape[2] != 3) {
        fprintf(stderr, "%s: shape %lldx%lld vs ours %dx%d\n", name, (long long)t->shape[1],
                (long long)t->shape[0], im->w, im->h);
        return 999;
    }
    int worst = 0, nd = 0;
    const uint8_t *r = t->data;
    for (size_t i = 0; i < t->nbytes; i++) {
        int d = abs((int)r[i] - (int)im->px[i]);
        if (d) nd++;
        if (d > worst) worst = d;
    }
    if (count) *count = nd;
    return worst;
}

static void test_decode(const mmp_safetensors *st) {
    const char *files[] = {"base420.jpg", "base444.jpg", "base422.jpg", "prog.jpg",
                           "gray.jpg",    "cmyk.jpg",    "rgb.png",     "gray.png",
                           "graya.png",   "rgba.png",    "palette.png", "rgb16.png",
                           "gray16.png",  "interlaced.png", "palette_trns.png", "gray_trns.png",
                           "rgb_trns.png"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char rel[256], name[256];
        snprintf(rel, sizeof rel, "tests/fixtures/image/%s", files[i]);
        snprintf(name, sizeof name, "dec/%s", files[i]);
        mmp_img im;
        CHECKF(load_png(rel, &im) == 0, "decode %s", files[i]);
        if (!im.px) continue;
        int nd = 0, d = cmp_ref(st, name, &im, &nd);
        CHECKF(d == 0, "%s: decode differs from PIL: max |diff| %d on %d values", files[i], d, nd);
        mmp_img_free(&im);
    }
}

static void test_resize(const mmp_safetensors *st) {
    int nchecked = 0;
    const char *srcs[] = {"a", "b", "c", "d"};
    for (int s = 0; s < 4; s++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tests/fixtures/image/src_%s.png", srcs[s]);
        mmp_img im;
        CHECK(load_png(rel, &im) == 0);
        if (!im.px) continue;
        char pre[64];
        for (int pass = 0; pass < 3; pass++) {
            snprintf(pre, sizeof pre, pass == 0 ? "resize/%s/" : pass == 1 ? "rcc/%s/" : "rcrop/%s/",
                     srcs[s]);
            for (int i = 0; i < st->n; i++) {
                const char *nm = st->entries[i].name;
                if (strncmp(nm, pre, strlen(pre))) continue;
                const char *arg = nm + strlen(pre);
                mmp_img out;
                if (pass == 0) {
                    int w, h;
                    CHECK(sscanf(arg, "%dx%d", &w, &h) == 2);
                    mmp_img_resize(&im, w, h, &out);
                } else if (pass == 1) {
                    mmp_img_resize_center_crop(&im, atoi(arg), &out);
                } else {
                    int t, l, h, w, S;
                    CHECK(sscanf(arg, "%d,%d,%d,%d,%d", &t, &l, &h, &w, &S) == 5);
                    mmp_img_resized_crop(&im, t, l, h, w, S, S, &out);
                }
                int nd = 0, d = cmp_ref(st, nm, &out, &nd);
                CHECKF(d == 0, "%s: differs from Pillow: max |diff| %d on %d values", nm, d, nd);
                mmp_img_free(&out);
                nchecked++;
            }
        }
        mmp_img_free(&im);
    }
    CHECKF(nchecked >= 50, "only %d resize references checked", nchecked);
    printf("resize: %d references bit-exact\n", nchecked);
}

static void test_geometry(void) {
    int w, h;
    mmp_tv_resize_dims(500, 375, 224, &w, &h);
    CHECK(w == 298 && h == 224); /* int(224*500/375) = int(298.67) */
    mmp_tv_resize_dims(375, 500, 224, &w, &h);
    CHECK(w == 224 && h == 298);
    mmp_tv_resize_dims(32, 32, 224, &w, &h);
    CHECK(w == 224 && h == 224);
    /* round half to even, as Python's round */
    CHECK(mmp_tv_center_offset(225, 224) == 0); /* round(0.5) = 0 */
    CHECK(mmp_tv_center_offset(227, 224) == 2); /* round(1.5) = 2 */
    CHECK(mmp_tv_center_offset(229, 224) == 2); /* round(2.5) = 2 */
    CHECK(mmp_tv_center_offset(298, 224) == 37);
}

/* the first cut bytes of d (cut = first, first + step, ... < n) are refused */
static void refuse_cuts(const char *what, const uint8_t *d, size_t n, size_t first, size_t step) {
    char err[256];
    mmp_img im;
    for (size_t cut = first; cut < n; cut += step) {
        int rc = mmp_img_decode(dec, d, cut, NULL, &im, err, sizeof err);
        CHECKF(rc == -1, "%s truncated at %zu/%zu decoded", what, cut, n);
        if (rc == 0) mmp_img_free(&im);
    }
}

static void test_bad(void) {
    char err[256];
    mmp_img im;
    /* zero bytes, junk, truncated JPEG, truncated PNG, header-only bombs */
    CHECK(mmp_img_decode(dec, "", 0, NULL, &im, err, sizeof err) == -1 && strstr(err, "empty"));
    CHECK(mmp_img_decode(dec, "hello world", 11, NULL, &im, err, sizeof err) == -1 &&
          strstr(err, "not a JPEG or PNG"));
    CHECK(mmp_img_decode(dec, "GIF89a......", 12, NULL, &im, err, sizeof err) == -1 &&
          strstr(err, "GIF"));
    size_t n;
    uint8_t *j = t_slurp(t_root_path("tests/fixtures/image/base420.jpg"), &n);
    CHECK(j != NULL);
    if (j) {
        refuse_cuts("JPEG", j, n, 3, n / 7 + 1);
        /* corrupt the entropy-coded data heavily */
        uint8_t *c = malloc(n);
        memcpy(c, j, n);
        for (size_t i = n / 2; i < n - 2; i += 3) c[i] ^= 0x5a;
        int rc = mmp_img_decode(dec, c, n, NULL, &im, err, sizeof err);
        if (rc == 0) mmp_img_free(&im); /* may decode to garbage; must not crash */
        /* decompression bomb: patch SOF0 size to 60000x60000 */
        memcpy(c, j, n);
        for (size_t i = 2; i + 9 < n; i++)
            if (c[i] == 0xFF && (c[i + 1] == 0xC0 || c[i + 1] == 0xC2)) {
                c[i + 5] = 0xEA, c[i + 6] = 0x60, c[i + 7] = 0xEA, c[i + 8] = 0x60;
                break;
            }
        rc = mmp_img_decode(dec, c, n, NULL, &im, err, sizeof err);
        CHECKF(rc == -1 && strstr(err, "too large"), "bomb JPEG: rc %d err %s", rc, err);
        mmp_img_decode_opts o = {.max_pixels = 100};
        rc = mmp_img_decode(dec, j, n, &o, &im, err, sizeof err);
        CHECK(rc == -1 && strstr(err, "too large"));
        /* a failure leaves nothing behind: after a JPEG cut before its scan
         * (a header error) and one cut inside it, the same decoder gives the
         * good file the pixels a fresh decoder gives it (libjpeg-turbo 2.1
         * kept the failed header's state and reported a garbage size) */
        mmp_img ref, again;
        mmp_img_decoder *fresh = mmp_img_decoder_new();
        CHECK(mmp_img_decode(fresh, j, n, NULL, &ref, err, sizeof err) == 0);
        mmp_img_decoder_free(fresh);
        size_t sos = 0;
        for (size_t i = 2; i + 1 < n && !sos; i++)
            if (j[i] == 0xFF && j[i + 1] == 0xDA) sos = i;
        CHECK(sos > 0);
        size_t cuts[2] = {sos, sos + (n - sos) / 2};
        for (int k = 0; k < 2; k++) {
            rc = mmp_img_decode(dec, j, cuts[k], NULL, &im, err, sizeof err);
            CHECKF(rc == -1, "JPEG cut at %zu decoded", cuts[k]);
            if (rc == 0) mmp_img_free(&im);
            rc = mmp_img_decode(dec, j, n, NULL, &again, err, sizeof err);
            CHECKF(rc == 0, "good JPEG after a failed one (cut at %zu): %s", cuts[k], err);
            if (rc == 0) {
                CHECK(again.w == ref.w && again.h == ref.h && !memcmp(again.px, ref.px, (size_t)ref.w * ref.h * 3));
                mmp_img_free(&again);
            }
        }
        mmp_img_free(&ref);
        free(c);
        free(j);
    }
    uint8_t *p = t_slurp(t_root_path("tests/fixtures/image/rgb.png"), &n);
    CHECK(p != NULL);
    if (p) {
        refuse_cuts("PNG", p, n, 0, n / 9 + 1);
        uint8_t *c = malloc(n);
        memcpy(c, p, n);
        /* IHDR width/height = 100000 x 100000 (CRC fixed below) */
        c[16] = 0x00, c[17] = 0x01, c[18] = 0x86, c[19] = 0xA0;
        c[20] = 0x00, c[21] = 0x01, c[22] = 0x86, c[23] = 0xA0;
        /* CRC of IHDR: compute with zlib's crc32 via libpng? do it by hand */
        uint32_t crc = 0xFFFFFFFFu;
        for (int i = 12; i < 29; i++) {
            crc ^= c[i];
            for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
        }
        crc ^= 0xFFFFFFFFu;
        c[29] = (uint8_t)(crc >> 24), c[30] = (uint8_t)(crc >> 16), c[31] = (uint8_t)(crc >> 8),
        c[32] = (uint8_t)crc;
        int rc = mmp_img_decode(dec, c, n, NULL, &im, err, sizeof err);
        CHECKF(rc == -1 && strstr(err, "too large"), "bomb PNG: rc %d err %s", rc, err);
        /* corrupt IDAT payload: CRC error or zlib error, never a crash */
        memcpy(c, p, n);
        for (size_t i = 60; i < n - 20; i += 5) c[i] ^= 0xFF;
        rc = mmp_img_decode(dec, c, n, NULL, &im, err, sizeof err);
        CHECK(rc == -1);
        if (rc == 0) mmp_img_free(&im);
        free(c);
        free(p);
    }
}

/* random byte mutations of valid files: every outcome is fine except a
 * crash, a hang or a leak (run under ASan by make asan) */
static void test_mutations(void) {
    const char *files[] = {"base420.jpg", "prog.jpg", "cmyk.jpg", "rgb.png", "palette.png", "rgb16.png"};
    uint64_t s = 0x1234567;
    int decoded = 0, refused = 0;
    for (int f = 0; f < 6; f++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tests/fixtures/image/%s", files[f]);
        size_t n;
        uint8_t *b = t_slurp(t_root_path(rel), &n);
        if (!b) continue;
        uint8_t *m = malloc(n);
        for (int it = 0; it < 150; it++) {
            memcpy(m, b, n);
            int k = 1 + it % 8;
            for (int j = 0; j < k; j++) {
                s = s * 6364136223846793005ULL + 1442695040888963407ULL;
                size_t pos = (size_t)(s >> 33) % n;
                m[pos] = (uint8_t)(s >> 17);
            }
            size_t len = it % 5 == 4 ? (size_t)(s >> 40) % n : n; /* some truncated too */
            mmp_img im;
            char err[256];
            mmp_img_decode_opts o = {.max_pixels = 1 << 22};
            if (mmp_img_decode(dec, m, len, &o, &im, err, sizeof err) == 0) {
                CHECK(im.w > 0 && im.h > 0 && im.px);
                mmp_img_free(&im);
                decoded++;
            } else {
                CHECK(err[0] != 0);
                refused++;
            }
        }
        free(m);
        free(b);
    }
    printf("mutations: %d decoded, %d refused with a reason\n", decoded, refused);
    CHECK(refused > 0);
}

static void test_dct_scale(void) {
    /* DCT scaling keeps both sides >= the requested minimum */
    size_t n;
    uint8_t *j = t_slurp(t_root_path("tests/fixtures/image/base420.jpg"), &n); /* 61x47 */
    if (!j) return;
    char err[256];
    mmp_img im;
    mmp_img_decode_opts o = {.dct_min_w = 20, .dct_min_h = 20};
    CHECK(mmp_img_decode(dec, j, n, &o, &im, err, sizeof err) == 0);
    CHECKF(im.w == 31 && im.h == 24, "scaled to %dx%d", im.w, im.h); /* 4/8 */
    mmp_img_free(&im);
    free(j);
}

int main(void) {
    mmp_set_progname("test_image");
    dec = mmp_img_decoder_new();
    mmp_safetensors st;
    char err[256];
    if (mmp_st_open(&st, t_root_path("tests/fixtures/image/ref.safetensors"), err, sizeof err))
        SKIP("no fixtures: %s", err);
    test_geometry();
    test_decode(&st);
    test_resize(&st);
    test_bad();
    test_dct_scale();
    test_mutations();
    mmp_st_close(&st);
    mmp_img_decoder_free(dec);
    TEST_END();
}
