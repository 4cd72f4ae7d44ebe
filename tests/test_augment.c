/* Augment ops against torchvision 0.14 / PIL 9.4 fixtures with fixed
 * parameters, plus RNG / parameter-sampling properties and determinism. */
#include "image/augment.h"
#include "mmp.h"
#include "testlib.h"

#include <stdlib.h>
#include <string.h>

static mmp_img_decoder *dec;

static int load(const char *rel, mmp_img *im) {
    FILE *f = fopen(t_root_path(rel), "rb");
    if (!f) return -1;
    uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    char err[256];
    return mmp_img_decode(dec, buf, n, NULL, im, err, sizeof err);
}

static int cmp_u8(const mmp_safetensors *st, const char *name, const uint8_t *px, int w, int h) {
    const mmp_tensor *t = mmp_st_get(st, name);
    if (!t || t->ndim != 3 || t->shape[0] != h || t->shape[1] != w) {
        fprintf(stderr, "%s: missing or shape mismatch\n", name);
        return 999;
    }
    int worst = 0;
    for (size_t i = 0; i < t->nbytes; i++) {
        int d = abs((int)((uint8_t *)t->data)[i] - (int)px[i]);
        if (d > worst) worst = d;
    }
    return worst;
}

static void test_color(const mmp_safetensors *st) {
    const char *srcs[] = {"a", "c"};
    int checked = 0;
    for (int s = 0; s < 2; s++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tests/fixtures/image/src_%s.png", srcs[s]);
        mmp_img im;
        CHECK(load(rel, &im) == 0);
        if (!im.px) continue;
        size_t np = (size_t)im.w * im.h;
        uint8_t *w = malloc(np * 3);
        for (int i = 0; i < st->n; i++) {
            const char *nm = st->entries[i].name;
            char kind[32], src[8];
            double f = 0;
            if (sscanf(nm, "%31[a-z_]/%7[a-z]/%lf", kind, src, &f) < 2 || strcmp(src, srcs[s]))
                continue;
            memcpy(w, im.px, np * 3);
            if (!strcmp(kind, "bright")) mmp_adjust_brightness(w, np, f);
            else if (!strcmp(kind, "contrast")) mmp_adjust_contrast(w, np, f);
            else if (!strcmp(kind, "sat")) mmp_adjust_saturation(w, np, f);
            else if (!strcmp(kind, "hue")) mmp_adjust_hue(w, np, f);
            else if (!strcmp(kind, "gray")) mmp_rgb_to_grayscale3(w, np);
            else continue;
            int d = cmp_u8(st, nm, w, im.w, im.h);
            CHECKF(d == 0, "%s: max |diff| %d vs torchvision", nm, d);
            checked++;
        }
        /* padding */
        int pads[3] = {4, 3, 2};
        int modes[3] = {MMP_PAD_CONSTANT, MMP_PAD_REFLECT, MMP_PAD_EDGE};
        const char *mn[3] = {"constant", "reflect", "edge"};
        for (int k = 0; k < 3; k++) {
            mmp_img p;
            mmp_pad(&im, pads[k], modes[k], 0, &p);
            char nm[64];
            snprintf(nm, sizeof nm, "pad/%s/%d,%s", srcs[s], pads[k], mn[k]);
            int d = cmp_u8(st, nm, p.px, p.w, p.h);
            CHECKF(d == 0, "%s: max |diff| %d", nm, d);
            mmp_img_free(&p);
            checked++;
        }
        /* ToTensor + Normalize, and erase on the normalized tensor */
        float *x = malloc(np * 3 * sizeof(float));
        float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
        mmp_to_tensor_normalize(&im, mean, sd, x);
        char nm[64];
        snprintf(nm, sizeof nm, "norm/%s", srcs[s]);
        const mmp_tensor *t = mmp_st_get(st, nm);
        CHECK(t && t->nbytes == np * 3 * sizeof(float));
        if (t) {
            size_t where;
            float *ref = malloc(t->nbytes); /* mapped data may be unaligned */
            memcpy(ref, t->data, t->nbytes);
            double r = t_maxrel(x, ref, np * 3, 0, 1e-30, &where);
            free(ref);
            CHECKF(r == 0, "%s: not bit-exact (|diff| %g at %zu)", nm, r * 1e-30, where);
        }
        for (int c = 0; c < 3; c++)
            for (int y = 2; y < 2 + 5; y++)
                for (int xx = 3; xx < 3 + 7; xx++) x[(size_t)c * np + (size_t)y * im.w + xx] = 0;
        snprintf(nm, sizeof nm, "norm_erase/%s", srcs[s]);
        t = mmp_st_get(st, nm);
        if (t) CHECK(!memcmp(t->data, x, t->nbytes));
        checked += 2;
        free(x);
        free(w);
        mmp_img_free(&im);
    }
    CHECKF(checked >= 60, "only %d references checked", checked);
    printf("colour/pad/normalize: %d references bit-exact\n", checked);
}

/* Straight port of Pillow's rgb2hsv/hsv2rgb (with fmod and round), to
 * check the library's faster equivalent on (almost) every RGB triple. */
static void ref_hue(uint8_t *px, uint8_t shift) {
    uint8_t r = px[0], g = px[1], b = px[2];
    uint8_t maxc = r > g ? (r > b ? r : b) : (g > b ? g : b), minc = r < g ? (r < b ? r : b) : (g < b ? g : b);
    uint8_t hh = 0, ss = 0, vv = maxc;
    if (minc != maxc) {
        float cr = (float)(maxc - minc), sf = cr / (float)maxc, rc = ((float)(maxc - r)) / cr,
              gc = ((float)(maxc - g)) / cr, bc = ((float)(maxc - b)) / cr, h;
        if (r == maxc) h = bc - gc;
        else if (g == maxc) h = 2.0 + rc - bc;
        else h = 4.0 + gc - rc;
        h = fmod((h / 6.0 + 1.0), 1.0);
        int a = (int)(h * 255.0), c = (int)(sf * 255.0);
        hh = a <= 0 ? 0 : a >= 255 ? 255 : a;
        ss = c <= 0 ? 0 : c >= 255 ? 255 : c;
    }
    hh = (uint8_t)(hh + shift);
    if (ss == 0) {
        px[0] = px[1] = px[2] = vv;
        return;
    }
    int i = floor((float)hh * 6.0 / 255.0);
    float f = (float)hh * 6.0 / 255.0 - (float)i, fs = ((float)ss) / 255.0;
    int p = round((float)vv * (1.0 - fs)), q = round((float)vv * (1.0 - fs * f)), t = round((float)vv * (1.0 - fs * (1.0 - f)));
    uint8_t up = p <= 0 ? 0 : p >= 255 ? 255 : p, uq = q <= 0 ? 0 : q >= 255 ? 255 : q, ut = t <= 0 ? 0 : t >= 255 ? 255 : t;
    uint8_t o[6][3] = {{vv, ut, up}, {uq, vv, up}, {up, vv, ut}, {up, uq, vv}, {ut, up, vv}, {vv, up, uq}};
    memcpy(px, o[i % 6], 3);
}

static void test_hue_exhaustive(void) {
    size_t n = 256 * 256 * 86;
    uint8_t *a = malloc(n * 3), *b = malloc(n * 3);
    size_t k = 0;
    for (int r = 0; r < 256; r++)
        for (int g = 0; g < 256; g++)
            for (int bl = 0; bl < 256; bl += 3, k++) a[k * 3] = (uint8_t)r, a[k * 3 + 1] = (uint8_t)g, a[k * 3 + 2] = (uint8_t)bl;
    double factors[3] = {0.0, -0.37, 0.21};
    for (int fi = 0; fi < 3; fi++) {
        memcpy(b, a, n * 3);
        mmp_adjust_hue(b, n, factors[fi]);
        size_t bad = 0;
        uint8_t shift = (uint8_t)(int64_t)(factors[fi] * 255.0);
        for (size_t i = 0; i < n; i++) {
            uint8_t px[3] = {a[i * 3], a[i * 3 + 1], a[i * 3 + 2]};
            ref_hue(px, shift);
            bad += memcmp(px, b + i * 3, 3) != 0;
        }
        CHECKF(bad == 0, "hue %g: %zu of %zu pixels differ from the reference port", factors[fi], bad, n);
    }
    free(a);
    free(b);
}

static void test_params(void) {
    mmp_rng r;
    mmp_rng_seed(&r, 7);
    double scale[2] = {0.08, 1.0}, ratio[2] = {3.0 / 4, 4.0 / 3};
    double area_sum = 0;
    for (int i = 0; i < 2000; i++) {
        int t, l, h, w;
        mmp_rrc_params(&r, 64, 48, scale, ratio, &t, &l, &h, &w);
        CHECK(h > 0 && w > 0 && t >= 0 && l >= 0 && t + h <= 48 && l + w <= 64);
        area_sum += (double)h * w / (64 * 48);
    }
    /* E[scale] = 0.54 minus rejections: within a loose band */
    CHECKF(area_sum / 2000 > 0.35 && area_sum / 2000 < 0.6, "mean area %g", area_sum / 2000);
    /* impossible scale -> torchvision fallback: center crop clamped to ratio */
    double big[2] = {5, 6};
    int t, l, h, w;
    mmp_rrc_params(&r, 100, 20, big, ratio, &t, &l, &h, &w);
    CHECK(h == 20 && w == 27 && t == 0 && l == 36); /* w = round(20*4/3) = 27, j = (100-27)//2 */
    mmp_rrc_params(&r, 20, 100, big, ratio, &t, &l, &h, &w);
    CHECK(w == 20 && h == 27 && l == 0 && t == 36);
    mmp_rrc_params(&r, 30, 30, big, ratio, &t, &l, &h, &w);
    CHECK(w == 30 && h == 30 && t == 0 && l == 0);
    double es[2] = {0.02, 0.33}, er[2] = {0.3, 3.3};
    for (int i = 0; i < 1000; i++) {
        if (mmp_erase_params(&r, 32, 32, es, er, &t, &l, &h, &w))
            CHECK(h < 32 && w < 32 && t + h <= 32 && l + w <= 32 && h >= 0 && w >= 0);
    }
    CHECK(mmp_erase_params(&r, 32, 32, big, er, &t, &l, &h, &w) == 0);
}

static void test_pipeline(void) {
    mmp_aug a;
    mmp_aug_init(&a);
    char err[256];
    CHECK(mmp_aug_parse(&a, "--rrc", "24,scale=0.2:1,ratio=0.75:1.33", err, sizeof err) == 0);
    CHECK(mmp_aug_parse(&a, "--hflip", "0.5", err, sizeof err) == 0);
    CHECK(mmp_aug_parse(&a, "--jitter", "0.4,0.4,0.4,0.1,p=0.8", err, sizeof err) == 0);
    CHECK(mmp_aug_parse(&a, "--gray", "0.2", err, sizeof err) == 0);
    CHECK(mmp_aug_parse(&a, "--normalize", "imagenet", err, sizeof err) == 0);
    CHECK(mmp_aug_parse(&a, "--erase", "0.5,value=random", err, sizeof err) == 0);
    CHECK(mmp_aug_parse(&a, "--hflip", "0.5", err, sizeof err) == -1); /* after normalize */
    CHECK(mmp_aug_parse(&a, "--bogus", "1", err, sizeof err) == 1);
    mmp_aug b;
    mmp_aug_init(&b);
    CHECK(mmp_aug_parse(&b, "--rrc", "0", err, sizeof err) == -1);
    CHECK(mmp_aug_parse(&b, "--rrc", "24,scale=1:0.5", err, sizeof err) == -1);
    CHECK(mmp_aug_parse(&b, "--jitter", "0.1,0.1,0.1,0.7", err, sizeof err) == -1); /* hue > 0.5 */
    CHECK(mmp_aug_parse(&b, "--normalize", "1,2,3", err, sizeof err) == -1);
    CHECK(mmp_aug_parse(&b, "--normalize", "0.5,0.5,0.5/0.5,0.5,0.5", err, sizeof err) == 0);
    CHECK(b.ops[0].mean[1] == 0.5f && b.ops[0].std[2] == 0.5f);
    int64_t shp[3];
    mmp_aug_out_shape(&a, shp);
    CHECK(shp[0] == 3 && shp[1] == 24 && shp[2] == 24);

    mmp_img im;
    CHECK(load("tests/fixtures/image/src_a.png", &im) == 0);
    if (!im.px) return;
    mmp_tensor in;
    int64_t s[3] = {im.h, im.w, 3};
    mmp_tensor_alloc(&in, MMP_U8, 3, s);
    memcpy(in.data, im.px, in.nbytes);
    mmp_tensor o1, o2, o3;
    mmp_rng r;
    mmp_rng_seed(&r, mmp_aug_key("src_a", 1, 0, 0));
    CHECK(mmp_aug_apply(&a, &r, &in, &o1, err, sizeof err) == 0);
    mmp_rng_seed(&r, mmp_aug_key("src_a", 1, 0, 0));
    CHECK(mmp_aug_apply(&a, &r, &in, &o2, err, sizeof err) == 0);
    mmp_rng_seed(&r, mmp_aug_key("src_a", 1, 1, 0));
    CHECK(mmp_aug_apply(&a, &r, &in, &o3, err, sizeof err) == 0);
    CHECK(o1.dtype == MMP_F32 && o1.ndim == 3 && o1.shape[0] == 3 && o1.shape[1] == 24);
    CHECK(o1.nbytes == o2.nbytes && !memcmp(o1.data, o2.data, o1.nbytes));
    CHECK(o1.nbytes == o3.nbytes && memcmp(o1.data, o3.data, o1.nbytes) != 0);
    mmp_tensor_free(&o1);
    mmp_tensor_free(&o2);
    mmp_tensor_free(&o3);
    /* wrong dtype/shape is a clear error */
    mmp_tensor bad;
    int64_t bs[2] = {4, 4};
    mmp_tensor_alloc(&bad, MMP_F32, 2, bs);
    CHECK(mmp_aug_apply(&a, &r, &bad, &o1, err, sizeof err) == -1 && strstr(err, "u8 [H,W,3]"));
    mmp_tensor_free(&bad);
    /* pad-crop bigger than the image: error, not a crash */
    mmp_aug c;
    mmp_aug_init(&c);
    CHECK(mmp_aug_parse(&c, "--pad-crop", "200,pad=2", err, sizeof err) == 0);
    CHECK(mmp_aug_apply(&c, &r, &in, &o1, err, sizeof err) == -1 && strstr(err, "smaller"));
    /* hflip p=1 twice = identity; gray p=1 gives r==g==b */
    mmp_aug d;
    mmp_aug_init(&d);
    mmp_aug_parse(&d, "--hflip", "1", err, sizeof err);
    mmp_aug_parse(&d, "--hflip", "1", err, sizeof err);
    CHECK(mmp_aug_apply(&d, &r, &in, &o1, err, sizeof err) == 0);
    CHECK(!memcmp(o1.data, in.data, in.nbytes));
    mmp_tensor_free(&o1);
    mmp_aug_init(&d);
    mmp_aug_parse(&d, "--gray", "1", err, sizeof err);
    mmp_aug_parse(&d, "--pad-crop", "47,pad=4", err, sizeof err);
    CHECK(mmp_aug_apply(&d, &r, &in, &o1, err, sizeof err) == 0);
    const uint8_t *g = o1.data;
    int gray_ok = 1;
    for (int64_t i = 0; i < o1.shape[0] * o1.shape[1]; i++)
        gray_ok &= g[i * 3] == g[i * 3 + 1] && g[i * 3 + 1] == g[i * 3 + 2];
    CHECK(gray_ok && o1.shape[0] == 47 && o1.shape[1] == 47);
    mmp_tensor_free(&o1);
    /* f16 output */
    mmp_aug_init(&d);
    d.out_dtype = MMP_F16;
    mmp_aug_parse(&d, "--normalize", "imagenet", err, sizeof err);
    CHECK(mmp_aug_apply(&d, &r, &in, &o1, err, sizeof err) == 0);
    CHECK(o1.dtype == MMP_F16 && o1.shape[0] == 3 && o1.shape[1] == im.h && o1.shape[2] == im.w);
    mmp_tensor_free(&o1);
    char *desc = mmp_aug_describe(&a);
    CHECK(strstr(desc, "rrc(24") && strstr(desc, "normalize("));
    free(desc);
    mmp_tensor_free(&in);
    mmp_img_free(&im);
}

int main(void) {
    mmp_set_progname("test_augment");
    dec = mmp_img_decoder_new();
    test_params();
    test_hue_exhaustive();
    mmp_safetensors st;
    char err[256];
    if (mmp_st_open(&st, t_root_path("tests/fixtures/image/ref.safetensors"), err, sizeof err) == 0) {
        test_color(&st);
        test_pipeline();
        mmp_st_close(&st);
    } else {
        CHECKF(0, "fixtures missing: %s", err);
    }
    mmp_img_decoder_free(dec);
    TEST_END();
}
