/* Pillow's other resampling filters (bicubic, lanczos, box, hamming), timm's
 * crop_pct and the two center-crop conventions, against committed fixtures:
 *  - tests/fixtures/image/interp.safetensors (tests/fixtures/gen_image.py:
 *    PIL 9.4 Image.resize, torchvision 0.14 Resize/CenterCrop/resized_crop
 *    with each InterpolationMode);
 *  - tests/fixtures/image/clip_ref.safetensors (tests/fixtures/gen_image_clip.py:
 *    the u8 images of transformers 4.30.2 CLIPImageProcessor, open_clip 2.24's
 *    preprocess and timm 0.9.16's eval transform).
 * Every comparison is exact (tolerance 0). */
#include "image/augment.h"
#include "image/image.h"
#include "mmp.h"
#include "testlib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static mmp_img_decoder *dec;

static int load_file(const char *rel, mmp_img *im) {
    size_t n;
    uint8_t *b = t_slurp(t_root_path(rel), &n);
    if (!b) return -1;
    char err[256];
    int rc = mmp_img_decode(dec, b, n, NULL, im, err, sizeof err);
    if (rc) fprintf(stderr, "%s: %s\n", rel, err);
    free(b);
    return rc;
}

/* max |diff| between an [H,W,3] u8 reference and h x w x 3 pixels */
static int cmp_px(const mmp_safetensors *st, const char *name, const uint8_t *px, int w, int h, int *count) {
    const mmp_tensor *t = mmp_st_get(st, name);
    if (!t) {
        fprintf(stderr, "missing reference %s\n", name);
        return 999;
    }
    if (t->dtype != MMP_U8 || t->ndim != 3 || t->shape[0] != h || t->shape[1] != w || t->shape[2] != 3) {
        fprintf(stderr, "%s: reference %lldx%lld, ours %dx%d\n", name, (long long)t->shape[1],
                (long long)t->shape[0], w, h);
        return 999;
    }
    int worst = 0, nd = 0;
    const uint8_t *r = t->data;
    for (size_t i = 0; i < t->nbytes; i++) {
        int d = abs((int)r[i] - (int)px[i]);
        nd += d != 0;
        if (d > worst) worst = d;
    }
    if (count) *count = nd;
    return worst;
}

static void test_names(void) {
    const char *names[] = {"bilinear", "bicubic", "lanczos", "box", "hamming"};
    for (int i = 0; i < 5; i++) {
        CHECK(mmp_interp_parse(names[i]) == i);
        CHECK(!strcmp(mmp_interp_name((mmp_interp)i), names[i]));
    }
    CHECK(mmp_interp_parse("cubic") == -1 && mmp_interp_parse("") == -1 && mmp_interp_parse("nearest") == -1);
    /* timm: math.floor(size / crop_pct) */
    CHECK(mmp_crop_pct_resize(224, 0.9) == 248);
    CHECK(mmp_crop_pct_resize(224, 0.875) == 256);
    CHECK(mmp_crop_pct_resize(224, 0.95) == 235);
    CHECK(mmp_crop_pct_resize(384, 1.0) == 384);
    CHECK(mmp_crop_pct_resize(288, 0.95) == 303);
    /* offsets: torchvision round-half-even vs hf floor division */
    struct { int n, s, tv, hf; } off[] = {{227, 224, 2, 1}, {225, 224, 0, 0}, {226, 224, 1, 1}, {229, 224, 2, 2},
                                          {231, 224, 4, 3}, {224, 224, 0, 0}, {297, 224, 36, 36}, {299, 224, 38, 37}};
    for (size_t i = 0; i < sizeof off / sizeof *off; i++) {
        CHECKF(mmp_center_offset(off[i].n, off[i].s, MMP_CROP_ROUND_TORCHVISION) == off[i].tv, "tv offset %d,%d",
               off[i].n, off[i].s);
        CHECKF(mmp_center_offset(off[i].n, off[i].s, MMP_CROP_ROUND_HF) == off[i].hf, "hf offset %d,%d", off[i].n,
               off[i].s);
    }
    CHECK(!strcmp(mmp_crop_round_name(MMP_CROP_ROUND_HF), "hf"));
}

/* the 4 kinds of fixture of gen_image.py for each filter and source */
static void test_interp(const mmp_safetensors *st) {
    const char *srcs = "abcdefg";
    int counts[4] = {0};
    for (const char *sp = srcs; *sp; sp++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tests/fixtures/image/src_%c.png", *sp);
        mmp_img im;
        CHECK(load_file(rel, &im) == 0);
        if (!im.px) continue;
        size_t n = 0;
        uint8_t *png = t_slurp(t_root_path(rel), &n);
        for (int i = 0; i < st->n; i++) {
            const char *nm = st->entries[i].name;
            char kind[32], fname[32], src[8];
            int off = 0;
            if (sscanf(nm, "%31[^/]/%31[^/]/%7[^/]/%n", kind, fname, src, &off) != 3 || !off) continue;
            if (src[0] != *sp || src[1]) continue;
            int f = mmp_interp_parse(fname);
            CHECKF(f >= 0, "%s: unknown filter", nm);
            if (f < 0) continue;
            const char *arg = nm + off;
            mmp_img out = {0};
            int k = -1;
            if (!strcmp(kind, "interp")) {
                int w, h;
                CHECK(sscanf(arg, "%dx%d", &w, &h) == 2);
                mmp_img_resize_interp(&im, w, h, (mmp_interp)f, &out);
                k = 0;
            } else if (!strcmp(kind, "rcc_interp")) {
                int R, S;
                CHECK(sscanf(arg, "%d,%d", &R, &S) == 2);
                mmp_img_resize_center_crop_ex(&im, R, S, (mmp_interp)f, MMP_CROP_ROUND_TORCHVISION, &out);
                k = 1;
                /* the same through mmp-decode's preprocessing (decode + crop_pct) */
                double pcts[] = {0.875, 0.9, 0.95};
                for (int p = 0; p < 3 + (R == S); p++) {
                    mmp_prep pr = {.size = S, .interp = (mmp_interp)f, .crop_pct = p < 3 ? pcts[p] : 0};
                    if (p < 3 && mmp_crop_pct_resize(S, pcts[p]) != R) continue;
                    mmp_img o2;
                    char err[256];
                    CHECKF(mmp_prep_image(dec, &pr, png, n, &o2, err, sizeof err) == 0, "%s: %s", nm, err);
                    int nd = 0, d = cmp_px(st, nm, o2.px, o2.w, o2.h, &nd);
                    CHECKF(d == 0, "%s (mmp_prep_image, crop_pct %g): max |diff| %d on %d values", nm, pr.crop_pct, d,
                           nd);
                    mmp_img_free(&o2);
                }
            } else if (!strcmp(kind, "tvresize")) {
                int S = atoi(arg), nw, nh;
                mmp_tv_resize_dims(im.w, im.h, S, &nw, &nh);
                mmp_img_resize_interp(&im, nw, nh, (mmp_interp)f, &out);
                k = 2;
                /* mmp-augment --resize S,interp=F and --interp F --resize S */
                for (int way = 0; way < 2; way++) {
                    mmp_aug a;
                    mmp_aug_init(&a);
                    char val[64], err[256];
                    snprintf(val, sizeof val, way ? "%d" : "%d,interp=%s", S, fname);
                    if (way) a.interp = (mmp_interp)f;
                    CHECK(mmp_aug_parse(&a, "--resize", val, err, sizeof err) == 0);
                    mmp_tensor in, o;
                    int64_t s[3] = {im.h, im.w, 3};
                    mmp_tensor_alloc(&in, MMP_U8, 3, s);
                    memcpy(in.data, im.px, in.nbytes);
                    mmp_rng r;
                    mmp_rng_seed(&r, 1);
                    CHECKF(mmp_aug_apply(&a, &r, &in, &o, err, sizeof err) == 0, "%s: %s", nm, err);
                    int nd = 0, d = cmp_px(st, nm, o.data, (int)o.shape[1], (int)o.shape[0], &nd);
                    CHECKF(d == 0, "%s (mmp-augment --resize %s): max |diff| %d on %d values", nm, val, d, nd);
                    mmp_tensor_free(&in);
                    mmp_tensor_free(&o);
                }
            } else if (!strcmp(kind, "rcrop_interp")) {
                int t, l, h, w, S;
                CHECK(sscanf(arg, "%d,%d,%d,%d,%d", &t, &l, &h, &w, &S) == 5);
                mmp_img_resized_crop_interp(&im, t, l, h, w, S, S, (mmp_interp)f, &out);
                k = 3;
            } else {
                CHECKF(0, "%s: unknown fixture kind", nm);
                continue;
            }
            int nd = 0, d = cmp_px(st, nm, out.px, out.w, out.h, &nd);
            CHECKF(d == 0, "%s: differs from Pillow: max |diff| %d on %d values", nm, d, nd);
            mmp_img_free(&out);
            counts[k]++;
        }
        free(png);
        mmp_img_free(&im);
    }
    CHECKF(counts[0] >= 150 && counts[1] >= 150 && counts[2] >= 60 && counts[3] >= 90,
           "too few references: %d resize, %d resize+crop, %d Resize, %d resized_crop", counts[0], counts[1],
           counts[2], counts[3]);
    printf("interp: %d resize, %d resize+center-crop, %d Resize(S), %d resized_crop references checked\n",
           counts[0], counts[1], counts[2], counts[3]);
}

/* clip_ref/<ref>/<file>/<S>: the u8 image of hf (CLIPImageProcessor),
 * openclip (open_clip preprocess) or timm<pct> (timm eval, bicubic) */
static void test_clip(const mmp_safetensors *st) {
    int nchecked = 0, ndiffer = 0;
    for (int i = 0; i < st->n; i++) {
        const char *nm = st->entries[i].name;
        char ref[32], file[64];
        int S, off = 0;
        if (sscanf(nm, "%31[^/]/%63[^/]/%d%n", ref, file, &S, &off) != 3 || nm[off]) {
            CHECKF(0, "%s: unknown reference", nm);
            continue;
        }
        mmp_prep p = {.size = S, .interp = MMP_INTERP_BICUBIC};
        if (!strcmp(ref, "hf")) p.crop_round = MMP_CROP_ROUND_HF;
        else if (!strncmp(ref, "timm", 4)) p.crop_pct = atof(ref + 4);
        else CHECKF(!strcmp(ref, "openclip"), "%s: unknown reference", nm);
        char rel[160];
        snprintf(rel, sizeof rel, "tests/fixtures/image/clip/%s", file);
        size_t n;
        uint8_t *b = t_slurp(t_root_path(rel), &n);
        CHECKF(b, "no %s", rel);
        if (!b) continue;
        mmp_img out;
        char err[256];
        CHECKF(mmp_prep_image(dec, &p, b, n, &out, err, sizeof err) == 0, "%s: %s", rel, err);
        int nd = 0, d = cmp_px(st, nm, out.px, out.w, out.h, &nd);
        CHECKF(d == 0, "%s: differs: max |diff| %d on %d values", nm, d, nd);
        /* the other crop convention differs where the offset does */
        mmp_prep q = p;
        q.crop_round = p.crop_round == MMP_CROP_ROUND_HF ? MMP_CROP_ROUND_TORCHVISION : MMP_CROP_ROUND_HF;
        mmp_img o2;
        CHECK(mmp_prep_image(dec, &q, b, n, &o2, err, sizeof err) == 0);
        int rs = p.crop_pct > 0 ? mmp_crop_pct_resize(S, p.crop_pct) : S;
        mmp_img im;
        CHECK(mmp_img_decode(dec, b, n, NULL, &im, err, sizeof err) == 0);
        int nw, nh;
        mmp_tv_resize_dims(im.w, im.h, rs, &nw, &nh);
        int same = mmp_center_offset(nw, S, 0) == mmp_center_offset(nw, S, 1) &&
                   mmp_center_offset(nh, S, 0) == mmp_center_offset(nh, S, 1);
        int d2 = cmp_px(st, nm, o2.px, o2.w, o2.h, NULL);
        CHECKF(same ? d2 == 0 : d2 > 0, "%s: the other crop convention %s", nm, same ? "differs" : "matches");
        ndiffer += !same;
        mmp_img_free(&im);
        mmp_img_free(&o2);
        mmp_img_free(&out);
        free(b);
        nchecked++;
    }
    CHECKF(nchecked >= 20 && ndiffer >= 2, "only %d CLIP references (%d where the crop conventions differ)", nchecked,
           ndiffer);
    printf("clip: %d references of CLIPImageProcessor / open_clip / timm checked (%d where hf != torchvision)\n",
           nchecked, ndiffer);
}

int main(void) {
    mmp_set_progname("test_image_interp");
    dec = mmp_img_decoder_new();
    test_names();
    mmp_safetensors st;
    char err[256];
    if (mmp_st_open(&st, t_root_path("tests/fixtures/image/interp.safetensors"), err, sizeof err))
        SKIP("no fixtures: %s", err);
    test_interp(&st);
    mmp_st_close(&st);
    if (mmp_st_open(&st, t_root_path("tests/fixtures/image/clip_ref.safetensors"), err, sizeof err)) {
        CHECKF(0, "no CLIP fixtures: %s", err);
    } else {
        test_clip(&st);
        mmp_st_close(&st);
    }
    mmp_img_decoder_free(dec);
    TEST_END();
}
