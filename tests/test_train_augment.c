/* The training loop's augmentation of u8 image records (mmp_dataset_augment,
 * mmp_dataset_row): one record's pixels depend only on (id, seed, epoch) --
 * not on the order rows are asked for; epochs and seeds differ; without
 * augmentation (or on the dev path) a row is ToTensor + Normalize of the
 * stored u8 image, the bits of mmp_image_to_chw; the model's input is the
 * crop size; records without an id get their own streams. Prints the
 * throughput of the augmentation alone (images/s, 64 px -> RRC 56 + flip +
 * jitter) for docs/train.md. (The pixels against mmp-augment's:
 * tests/sh/test_train_loop_features.sh.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "testlib.h"
#include "train/train.h"

static void make_images(mmp_dataset *d, int64_t n, int64_t H, int64_t W, int with_ids) {
    memset(d, 0, sizeof *d);
    mmp_header_init(&d->hdr);
    snprintf(d->name, sizeof d->name, "imgs");
    d->n = n;
    d->raw_h = d->img_h = H;
    d->raw_w = d->img_w = W;
    d->dim = 3 * H * W;
    d->u8 = malloc((size_t)(n * d->dim));
    d->y = calloc((size_t)n, sizeof(int64_t));
    d->ids = calloc((size_t)n, sizeof(char *));
    uint64_t s = 7;
    for (int64_t i = 0; i < n * d->dim; i++) d->u8[i] = (uint8_t)(mmp_rng_next(&s) >> 56);
    for (int64_t i = 0; i < n && with_ids; i++) d->ids[i] = mmp_xasprintf("img%03lld", (long long)i);
    const float m[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    memcpy(d->mean, m, sizeof m);
    memcpy(d->std, sd, sizeof sd);
}

static mmp_train_cfg cfg_of(const char *const *kv) {
    mmp_train_cfg c;
    mmp_train_cfg_defaults(&c);
    char err[256];
    for (int i = 0; kv[i]; i += 2)
        if (mmp_train_cfg_set(&c, kv[i], kv[i + 1], err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(1); }
    return c;
}

static float *row(const mmp_dataset *d, int64_t r, int aug, uint64_t epoch) {
    float *o = malloc(sizeof(float) * (size_t)d->dim);
    char err[512];
    CHECKF(mmp_dataset_row(d, r, aug, epoch, o, err, sizeof err) == 0, "%s", err);
    return o;
}

int main(void) {
    mmp_dataset d;
    make_images(&d, 12, 40, 36, 1);
    char err[512];
    /* without augmentation: ToTensor + Normalize of the u8 pixels, mmp_image_to_chw's bits */
    {
        float *a = row(&d, 3, 1, 0), *b = malloc(sizeof(float) * (size_t)d.dim);
        mmp_tensor t = {.dtype = MMP_U8, .ndim = 3, .shape = {40, 36, 3}, .data = d.u8 + 3 * d.dim, .nbytes = (size_t)d.dim};
        CHECK(mmp_image_to_chw(&t, 0, 40, 36, d.mean, d.std, b, err, sizeof err) == 0);
        CHECK(memcmp(a, b, sizeof(float) * (size_t)d.dim) == 0);
        CHECK(a[0] == ((float)d.u8[3 * d.dim] / 255.0f - d.mean[0]) / d.std[0]);
        free(a);
        free(b);
    }
    mmp_train_cfg c = cfg_of((const char *const[]){"aug_rrc", "24,0.3,1", "aug_hflip", "0.5", "aug_jitter", "0.3,0.3,0.3,0.1", "seed", "11", NULL});
    CHECKF(mmp_dataset_augment(&d, &c, err, sizeof err) == 0, "%s", err);
    CHECK(d.img_h == 24 && d.img_w == 24 && d.dim == 3 * 24 * 24 && d.raw_h == 40 && d.raw_w == 36);
    char args[256];
    mmp_train_aug_args(&c, args, sizeof args);
    CHECKF(!strcmp(args, "--rrc 24,scale=0.29999999999999999:1 --hflip 0.5 --jitter 0.3,0.3,0.3,0.1"), "%s", args);
    /* the same (id, seed, epoch): the same pixels, whatever came before */
    float *e0[12], *e1[12];
    for (int64_t r = 0; r < 12; r++) e0[r] = row(&d, r, 1, 0);
    for (int64_t r = 11; r >= 0; r--) e1[r] = row(&d, r, 1, 1);
    int ndiff_epoch = 0;
    for (int64_t r = 0; r < 12; r++) {
        float *again = row(&d, (r * 5) % 12, 1, 0);
        CHECKF(memcmp(again, e0[(r * 5) % 12], sizeof(float) * (size_t)d.dim) == 0, "row %lld epoch 0 not reproduced", (long long)((r * 5) % 12));
        free(again);
        ndiff_epoch += memcmp(e0[r], e1[r], sizeof(float) * (size_t)d.dim) != 0;
    }
    CHECKF(ndiff_epoch == 12, "epochs 0 and 1 differ for %d of 12 records", ndiff_epoch);
    /* the augmented set read without augmentation (the eval path): refused, not a buffer of the wrong size */
    {
        float *o = malloc(sizeof(float) * (size_t)d.dim);
        CHECK(mmp_dataset_row(&d, 0, 0, 0, o, err, sizeof err) == -1 && strstr(err, "the model takes 24x24"));
        free(o);
    }
    /* another seed: other pixels */
    mmp_train_cfg c2 = c;
    c2.seed = 12;
    CHECK(mmp_dataset_augment(&d, &c2, err, sizeof err) == 0);
    float *s12 = row(&d, 0, 1, 0);
    CHECK(memcmp(s12, e0[0], sizeof(float) * (size_t)d.dim) != 0);
    free(s12);
    for (int r = 0; r < 12; r++) { free(e0[r]); free(e1[r]); }
    mmp_dataset_free(&d);

    /* no ids: record R's stream is the key of "#R" (not all records alike) */
    make_images(&d, 4, 32, 32, 0);
    memcpy(d.u8 + d.dim, d.u8, (size_t)d.dim); /* records 0 and 1: the same pixels */
    mmp_train_cfg cr = cfg_of((const char *const[]){"aug_rrc", "16", NULL});
    CHECK(mmp_dataset_augment(&d, &cr, err, sizeof err) == 0);
    float *r0 = row(&d, 0, 1, 0), *r1 = row(&d, 1, 1, 0);
    CHECK(memcmp(r0, r1, sizeof(float) * 3 * 16 * 16) != 0);
    free(r0);
    free(r1);
    /* pad-crop keeps the size (so the eval path reads the same records unaugmented); too large
     * a crop is refused; floats are refused */
    mmp_train_cfg cc = cfg_of((const char *const[]){"aug_crop", "32", "aug_pad", "4", NULL});
    CHECK(mmp_dataset_augment(&d, &cc, err, sizeof err) == 0 && d.img_h == 32 && d.dim == 3 * 32 * 32);
    {
        float *a = row(&d, 2, 0, 0), *b = row(&d, 2, 1, 0);
        mmp_tensor t = {.dtype = MMP_U8, .ndim = 3, .shape = {32, 32, 3}, .data = d.u8 + 2 * d.dim, .nbytes = (size_t)d.dim};
        float *want = malloc(sizeof(float) * (size_t)d.dim);
        CHECK(mmp_image_to_chw(&t, 0, 32, 32, d.mean, d.std, want, err, sizeof err) == 0);
        CHECK(memcmp(a, want, sizeof(float) * (size_t)d.dim) == 0); /* the eval path: never augmented */
        CHECK(memcmp(b, want, sizeof(float) * (size_t)d.dim) != 0); /* the training path: cropped from the padded image */
        free(a);
        free(b);
        free(want);
    }
    cc = cfg_of((const char *const[]){"aug_crop", "41", "aug_pad", "4", NULL});
    CHECK(mmp_dataset_augment(&d, &cc, err, sizeof err) == -1 && strstr(err, "needs at least 33x33"));
    mmp_dataset_free(&d);
    mmp_dataset f;
    memset(&f, 0, sizeof f);
    snprintf(f.name, sizeof f.name, "floats");
    CHECK(mmp_dataset_augment(&f, &cr, err, sizeof err) == -1 && strstr(err, "floats: --aug-* needs u8"));
    mmp_train_cfg none = cfg_of((const char *const[]){NULL});
    CHECK(mmp_dataset_augment(&f, &none, err, sizeof err) == 0 && !f.aug);
    mmp_train_cfg bad = cfg_of((const char *const[]){"aug_rrc", "16,0.5,0.2", NULL});
    CHECK(mmp_train_cfg_check(&bad, err, sizeof err) == -1 && strstr(err, "--aug-rrc"));

    /* throughput of the augmentation alone: 64 px records, RRC 56 + flip + jitter, one thread */
    make_images(&d, 256, 64, 64, 1);
    mmp_train_cfg ct = cfg_of((const char *const[]){"aug_rrc", "56", "aug_hflip", "0.5", NULL});
    CHECK(mmp_dataset_augment(&d, &ct, err, sizeof err) == 0);
    float *o = malloc(sizeof(float) * (size_t)d.dim);
    double t0 = mmp_now();
    int64_t done = 0;
    for (int rep = 0; rep < 4; rep++)
        for (int64_t r = 0; r < d.n; r++, done++) CHECK(mmp_dataset_row(&d, r, 1, (uint64_t)rep, o, err, sizeof err) == 0);
    double t1 = mmp_now();
    mmp_train_cfg cj = cfg_of((const char *const[]){"aug_rrc", "56", "aug_hflip", "0.5", "aug_jitter", "0.4,0.4,0.4,0.1", NULL});
    CHECK(mmp_dataset_augment(&d, &cj, err, sizeof err) == 0);
    for (int rep = 0; rep < 4; rep++)
        for (int64_t r = 0; r < d.n; r++) CHECK(mmp_dataset_row(&d, r, 1, (uint64_t)rep, o, err, sizeof err) == 0);
    double t2 = mmp_now();
    printf("augmentation in the loop, 64 px -> 56, one thread: rrc+hflip %.0f images/s, rrc+hflip+jitter %.0f images/s\n",
           (double)done / (t1 - t0), (double)done / (t2 - t1));
    free(o);
    mmp_dataset_free(&d);
    TEST_END();
}
