/* ViT and CLIP on the transformer engine (tx/model.h) vs the reference
 * libraries: tiny random models of every family written by
 * tests/fixtures/gen_tx_models.py (transformers 4.30.2, timm 0.9.16,
 * open_clip 2.24) with their outputs; the outputs must agree within 1e-4 of
 * the reference's largest magnitude. Also: results of one image alone equal
 * its row in a batch (bit for bit), and bad inputs get one line naming the file.
 *
 * test_tx_models DIR: compares the model DIR with DIR/ref.safetensors only
 * (tests/py/test_tx_models_real.py: real-size models). */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmp.h"
#include "st_testlib.h"
#include "testlib.h"
#include "tx/model.h"

#define TOL 1e-4

static const mmp_tensor *ref_get(const mmp_safetensors *r, const char *name) { return mmp_st_get(r, name); }

static float *ref_f32(const mmp_safetensors *r, const char *name, size_t *n) { return t_st_f32(r, name, n, 0); }

static double worst_all = 0;

/* max |got - want| / max |want| */
static void compare(const char *model, const char *what, const float *got, const float *want, size_t n) {
    double dm = 0, wm = 0;
    size_t where = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (d > dm || d != d) dm = d != d ? INFINITY : d, where = i;
        if (fabs(want[i]) > wm) wm = fabs(want[i]);
    }
    double rel = dm / (wm > 0 ? wm : 1);
    if (rel > worst_all) worst_all = rel;
    printf("  %-14s %-10s max err %.3g (rel %.3g of %.3g)\n", model, what, dm, rel, wm);
    CHECKF(rel <= TOL, "%s %s: element %zu is %.9g, expected %.9g (rel error %.3g)", model, what, where,
           n ? got[where] : 0, n ? want[where] : 0, rel);
}

static void check_fixture(const char *dir, const char *label) {
    char err[1024] = "";
    mmp_tx_model *m = mmp_tx_model_load(dir, err, sizeof err);
    CHECKF(m, "%s: %s", dir, err);
    if (!m) return;
    char rp[4096];
    snprintf(rp, sizeof rp, "%s/ref.safetensors", dir);
    mmp_safetensors r;
    mmp_st_open_or_die(&r, rp);
    const char *fam = mmp_meta_get(&r.meta, "family");
    CHECKF(fam && !strcmp(fam, mmp_tx_family_name(m->family)), "%s: family %s, expected %s", dir,
           mmp_tx_family_name(m->family), fam ? fam : "?");

    const mmp_tensor *ti = ref_get(&r, "images");
    if (ti) {
        CHECK(mmp_tx_has_image(m));
        int n = (int)ti->shape[0], H = (int)ti->shape[2], W = (int)ti->shape[3];
        float *img = ref_f32(&r, "images", NULL);
        static const struct {
            const char *name;
            mmp_tx_out w;
        } outs[] = {{"embed", MMP_TX_OUT_EMBED},
                    {"pooled", MMP_TX_OUT_POOLED},
                    {"pooler", MMP_TX_OUT_POOLER},
                    {"logits", MMP_TX_OUT_LOGITS}};
        for (size_t k = 0; k < sizeof outs / sizeof *outs; k++) {
            size_t nw;
            float *want = ref_f32(&r, outs[k].name, &nw);
            int D = mmp_tx_image_dim(m, outs[k].w);
            if (!want) {
                CHECKF(D < 0 || outs[k].w <= MMP_TX_OUT_POOLED, "%s: has a %s the reference lacks", label, outs[k].name);
                continue;
            }
            CHECKF(D > 0 && (size_t)D * n == nw, "%s: %s has %d values per image, expected %zu", label, outs[k].name, D,
                   nw / n);
            if (D <= 0 || (size_t)D * n != nw) {
                free(want);
                continue;
            }
            float *got = malloc(sizeof(float) * nw);
            float *hid = NULL;
            size_t nh = 0;
            float *wh = k == 0 ? ref_f32(&r, "hidden", &nh) : NULL;
            if (wh) hid = malloc(sizeof(float) * nh);
            int rc = mmp_tx_image_embed(m, img, n, H, W, outs[k].w, got, hid, err, sizeof err);
            CHECKF(rc == 0, "%s: %s", label, err);
            if (rc == 0) {
                compare(label, outs[k].name, got, want, nw);
                if (wh) {
                    int T = mmp_tx_image_tokens(m, H, W);
                    CHECK(nh == (size_t)(m->vision->enc.layers + 1) * n * T * m->vision->C);
                    compare(label, "hidden", hid, wh, nh);
                }
                /* the last image alone: the same bits as its row in the batch */
                float *one = malloc(sizeof(float) * D);
                rc = mmp_tx_image_embed(m, img + (size_t)(n - 1) * 3 * H * W, 1, H, W, outs[k].w, one, NULL, err,
                                        sizeof err);
                CHECKF(rc == 0 && !memcmp(one, got + (size_t)(n - 1) * D, sizeof(float) * D),
                       "%s: %s of an image alone differs from its row in the batch", label, outs[k].name);
                free(one);
            }
            free(got);
            free(hid);
            free(wh);
            free(want);
        }
        free(img);
        const mmp_tensor *t2 = ref_get(&r, "images2");
        if (t2) {
            int n2 = (int)t2->shape[0], H2 = (int)t2->shape[2], W2 = (int)t2->shape[3];
            float *img2 = ref_f32(&r, "images2", NULL);
            for (int k = 0; k < 2; k++) {
                size_t nw;
                float *want = ref_f32(&r, k ? "pooled2" : "embed2", &nw);
                if (!want) continue;
                mmp_tx_out w = k ? MMP_TX_OUT_POOLED : MMP_TX_OUT_EMBED;
                float *got = malloc(sizeof(float) * nw);
                CHECK((size_t)mmp_tx_image_dim(m, w) * n2 == nw);
                int rc = mmp_tx_image_embed(m, img2, n2, H2, W2, w, got, NULL, err, sizeof err);
                CHECKF(rc == 0, "%s: %s", label, err);
                char what[32];
                snprintf(what, sizeof what, "%s@%dx%d", k ? "pooled" : "embed", H2, W2);
                if (rc == 0) compare(label, what, got, want, nw);
                free(got);
                free(want);
            }
            free(img2);
        }
    } else
        CHECK(!mmp_tx_has_image(m));

    const mmp_tensor *tids = ref_get(&r, "ids");
    if (tids) {
        CHECK(mmp_tx_has_text(m));
        const mmp_tensor *tl = ref_get(&r, "lens");
        int n = (int)tl->shape[0];
        const int32_t *ids = tids->data;
        int *lens = malloc(sizeof(int) * n);
        for (int s = 0; s < n; s++) lens[s] = ((const int32_t *)tl->data)[s];
        const char *names[] = {"text_embed", "text_pooled", "text_embed_batch"};
        for (int k = 0; k < 3; k++) {
            size_t nw;
            float *want = ref_f32(&r, names[k], &nw);
            if (!want) continue;
            mmp_tx_out w = k == 1 ? MMP_TX_OUT_POOLED : MMP_TX_OUT_EMBED;
            int D = mmp_tx_text_dim(m, w);
            CHECK((size_t)D * n == nw);
            float *got = malloc(sizeof(float) * nw);
            size_t nh = 0;
            float *wh = k == 0 ? ref_f32(&r, "text_hidden", &nh) : NULL, *hid = wh ? malloc(sizeof(float) * nh) : NULL;
            int rc = mmp_tx_text_embed(m, ids, lens, n, w, got, hid, err, sizeof err);
            CHECKF(rc == 0, "%s: %s", label, err);
            if (rc == 0) {
                compare(label, names[k], got, want, nw);
                if (wh) compare(label, "text_hidden", hid, wh, nh);
            }
            if (rc == 0 && k == 0) { /* the last text alone */
                size_t off = 0;
                for (int s = 0; s < n - 1; s++) off += (size_t)lens[s];
                float *one = malloc(sizeof(float) * D);
                rc = mmp_tx_text_embed(m, ids + off, lens + n - 1, 1, w, one, NULL, err, sizeof err);
                CHECKF(rc == 0 && !memcmp(one, got + (size_t)(n - 1) * D, sizeof(float) * D),
                       "%s: a text alone differs from its row in the batch", label);
                free(one);
            }
            free(got);
            free(hid);
            free(wh);
            free(want);
        }
        free(lens);
    } else
        CHECK(!mmp_tx_has_text(m));
    float *ls = ref_f32(&r, "logit_scale", NULL);
    if (ls) {
        double want = exp(ls[0]);
        CHECKF(fabs(mmp_tx_logit_scale(m) - want) <= 1e-5 * want, "%s: logit scale %g, expected %g", label,
               mmp_tx_logit_scale(m), want);
        free(ls);
    } else
        CHECK(isnan(mmp_tx_logit_scale(m)));
    mmp_st_close(&r);
    mmp_tx_model_free(m);
}

/* ------------------------------------------------------------ threads */

typedef struct {
    const mmp_tx_model *m;
    const float *img;
    int n, H, W, rc;
    float *out;
} job;

static void *job_run(void *p) {
    job *j = p;
    char err[256];
    j->rc = mmp_tx_image_embed(j->m, j->img, j->n, j->H, j->W, MMP_TX_OUT_EMBED, j->out, NULL, err, sizeof err);
    return NULL;
}

/* one model, two threads embedding at once: the bits of one thread alone */
static void threads(void) {
    char err[1024];
    mmp_tx_model *m = mmp_tx_model_load(t_root_path("tests/fixtures/tx_models/clip_oc"), err, sizeof err);
    CHECKF(m, "%s", err);
    if (!m) return;
    mmp_safetensors r;
    mmp_st_open_or_die(&r, t_root_path("tests/fixtures/tx_models/clip_oc/ref.safetensors"));
    float *img = ref_f32(&r, "images", NULL);
    const mmp_tensor *ti = ref_get(&r, "images");
    int n = (int)ti->shape[0], H = (int)ti->shape[2], W = (int)ti->shape[3], D = mmp_tx_image_dim(m, MMP_TX_OUT_EMBED);
    float *one = malloc(sizeof(float) * n * D), *two[2];
    CHECK(mmp_tx_image_embed(m, img, n, H, W, MMP_TX_OUT_EMBED, one, NULL, err, sizeof err) == 0);
    pthread_t th[2];
    job j[2];
    for (int k = 0; k < 2; k++) {
        two[k] = malloc(sizeof(float) * n * D);
        j[k] = (job){m, img, n, H, W, -1, two[k]};
        pthread_create(&th[k], NULL, job_run, &j[k]);
    }
    for (int k = 0; k < 2; k++) {
        pthread_join(th[k], NULL);
        CHECK(j[k].rc == 0 && !memcmp(two[k], one, sizeof(float) * n * D));
        free(two[k]);
    }
    /* the _mt wrappers: 1..3 threads over 2 images and 3 texts, the bits of one call */
    float *mt = malloc(sizeof(float) * n * D);
    for (int t = 1; t <= 3; t++) {
        memset(mt, 0, sizeof(float) * n * D);
        CHECK(mmp_tx_image_embed_mt(m, img, n, H, W, MMP_TX_OUT_EMBED, mt, t, err, sizeof err) == 0);
        CHECKF(!memcmp(mt, one, sizeof(float) * n * D), "image_embed_mt with %d threads", t);
    }
    const mmp_tensor *tids = ref_get(&r, "ids"), *tl = ref_get(&r, "lens");
    int nt = (int)tl->shape[0], Dt = mmp_tx_text_dim(m, MMP_TX_OUT_EMBED), lens[8];
    for (int s = 0; s < nt; s++) lens[s] = ((const int32_t *)tl->data)[s];
    float *t1 = malloc(sizeof(float) * nt * Dt), *t2 = malloc(sizeof(float) * nt * Dt);
    CHECK(mmp_tx_text_embed(m, tids->data, lens, nt, MMP_TX_OUT_EMBED, t1, NULL, err, sizeof err) == 0);
    for (int t = 2; t <= 4; t++) {
        memset(t2, 0, sizeof(float) * nt * Dt);
        CHECK(mmp_tx_text_embed_mt(m, tids->data, lens, nt, MMP_TX_OUT_EMBED, t2, t, err, sizeof err) == 0);
        CHECKF(!memcmp(t1, t2, sizeof(float) * nt * Dt), "text_embed_mt with %d threads", t);
    }
    /* a batch larger than one chunk (mmp_tx_image_embed goes through ~2048
     * tokens at a time without hidden states): every row the bits of its image
     * in a small batch, and of the unchunked call (with hidden states) */
    {
        const int T = mmp_tx_image_tokens(m, H, W), N = 2048 / T + 5;
        float *big = malloc(sizeof(float) * (size_t)N * 3 * H * W), *o1 = malloc(sizeof(float) * (size_t)N * D),
              *o2 = malloc(sizeof(float) * (size_t)N * D),
              *hid = malloc(sizeof(float) * (size_t)(m->vision->enc.layers + 1) * N * T * m->vision->C);
        for (int k = 0; k < N; k++)
            memcpy(big + (size_t)k * 3 * H * W, img + (size_t)(k % n) * 3 * H * W, sizeof(float) * 3 * H * W);
        CHECK(mmp_tx_image_embed(m, big, N, H, W, MMP_TX_OUT_EMBED, o1, NULL, err, sizeof err) == 0);
        CHECK(mmp_tx_image_embed(m, big, N, H, W, MMP_TX_OUT_EMBED, o2, hid, err, sizeof err) == 0);
        for (int k = 0; k < N; k++)
            CHECKF(!memcmp(o1 + (size_t)k * D, one + (size_t)(k % n) * D, sizeof(float) * D),
                   "image %d of a %d-image batch differs from the same image in a batch of %d", k, N, n);
        CHECKF(!memcmp(o1, o2, sizeof(float) * (size_t)N * D), "chunked and unchunked batches of %d images differ", N);
        free(big), free(o1), free(o2), free(hid);
    }
    /* the encoders' own threads */
    mmp_tx_model_set_threads(m, 3);
    memset(mt, 0, sizeof(float) * n * D);
    CHECK(mmp_tx_image_embed(m, img, n, H, W, MMP_TX_OUT_EMBED, mt, NULL, err, sizeof err) == 0);
    CHECKF(!memcmp(mt, one, sizeof(float) * n * D), "image_embed with 3 encoder threads");
    CHECK(mmp_tx_text_embed(m, tids->data, lens, nt, MMP_TX_OUT_EMBED, t2, NULL, err, sizeof err) == 0);
    CHECKF(!memcmp(t1, t2, sizeof(float) * nt * Dt), "text_embed with 3 encoder threads");
    mmp_tx_model_set_threads(m, 1);
    lens[nt - 1] = 99; /* an error in one share reaches the caller */
    CHECK(mmp_tx_text_embed_mt(m, tids->data, lens, nt, MMP_TX_OUT_EMBED, t2, 2, err, sizeof err) < 0);
    CHECKF(strstr(err, "99 tokens"), "%s", err);
    free(t1);
    free(t2);
    free(mt);
    free(one);
    free(img);
    mmp_st_close(&r);
    mmp_tx_model_free(m);
}

/* ------------------------------------------------------------ bad input */

static char tmpdir[1024];

static void put_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

/* a copy of fixture SRC's weights into tmpdir/NAME/model.safetensors, without tensor DROP
 * (NULL: all), renamed tensors: prefix OLD -> NEW (NULL: none) */
static char *copy_weights(const char *src, const char *name, const char *drop, const char *old, const char *new) {
    static char out[2048];
    char d[1536];
    snprintf(d, sizeof d, "%s/%s", tmpdir, name);
    mkdir(d, 0755);
    mmp_safetensors st;
    mmp_st_open_or_die(&st, src);
    mmp_st_writer w;
    mmp_st_writer_init(&w);
    for (int i = 0; i < st.n; i++) {
        const char *nm = st.entries[i].name;
        if (drop && !strcmp(nm, drop)) continue;
        char buf[1024];
        if (old && !strncmp(nm, old, strlen(old))) snprintf(buf, sizeof buf, "%s%s", new, nm + strlen(old));
        else snprintf(buf, sizeof buf, "%s", nm);
        mmp_st_writer_add(&w, buf, &st.entries[i].t);
    }
    snprintf(out, sizeof out, "%s/model.safetensors", d);
    mmp_st_writer_write_or_die(&w, out);
    mmp_st_writer_free(&w);
    mmp_st_close(&st);
    return out;
}

/* loading PATH fails with one line that contains every one of the NULL-terminated strings */
static void expect_load_error(const char *path, ...) {
    char err[1024] = "";
    mmp_tx_model *m = mmp_tx_model_load(path, err, sizeof err);
    CHECKF(!m, "%s: loaded, expected an error", path);
    mmp_tx_model_free(m);
    CHECKF(!strchr(err, '\n') && err[0], "%s: error message '%s' is not one line", path, err);
    va_list ap;
    va_start(ap, path);
    for (const char *s; (s = va_arg(ap, const char *));)
        CHECKF(strstr(err, s), "%s: error '%s' does not mention '%s'", path, err, s);
    va_end(ap);
    /* the temporary folder's random name printed as TMP: the same output on every run */
    printf("  error: ");
    size_t tl = strlen(tmpdir);
    for (const char *e = err; *e;)
        if (tl && !strncmp(e, tmpdir, tl)) fputs("TMP", stdout), e += tl;
        else putchar(*e++);
    putchar('\n');
}

static void bad_inputs(void) {
    const char *tmp = getenv("MMP_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s/txbad.XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        exit(1);
    }
    char p[2048], q[2048];
    char vit[2048];
    snprintf(vit, sizeof vit, "%s", t_root_path("tests/fixtures/tx_models/vit_hf/model.safetensors"));

    /* missing tensor */
    char *w = copy_weights(vit, "missing", "encoder.layer.1.output.dense.bias", NULL, NULL);
    expect_load_error(w, w, "encoder.layer.1.output.dense.bias", "missing", NULL);
    /* unknown architecture */
    w = copy_weights(vit, "unknown", NULL, "embeddings.", "stem.");
    expect_load_error(w, w, "unknown architecture", NULL);
    /* SigLIP (its logit_bias) is refused by name */
    w = copy_weights(vit, "siglip", NULL, "embeddings.cls_token", "logit_bias");
    expect_load_error(w, w, "SigLIP", NULL);
    /* a tensor the loader does not read: an unknown variant, not silently dropped */
    w = copy_weights(vit, "extra", NULL, "pooler.", "decoder.");
    expect_load_error(w, w, "decoder.dense.", "not part of a vit-hf model", NULL);
    /* older CLIP config.json: text_config_dict's values count too */
    w = copy_weights(t_root_path("tests/fixtures/tx_models/clip_hf/model.safetensors"), "clipdict", NULL, NULL, NULL);
    snprintf(p, sizeof p, "%s/clipdict/config.json", tmpdir);
    put_file(p, "{\"text_config\": {\"num_attention_heads\": 3}, \"vision_config\": {\"num_attention_heads\": 3},"
                " \"text_config_dict\": {\"max_position_embeddings\": 77}}\n");
    expect_load_error(w, p, "max_position_embeddings", "77", "13", NULL);
    /* config contradicting the shapes */
    w = copy_weights(vit, "contra", NULL, NULL, NULL);
    snprintf(p, sizeof p, "%s/contra/config.json", tmpdir);
    put_file(p, "{\"hidden_size\": 64, \"num_attention_heads\": 4}\n");
    expect_load_error(w, p, "hidden_size", "64", "48", NULL);
    put_file(p, "{\"num_hidden_layers\": 3, \"num_attention_heads\": 3}\n");
    expect_load_error(w, p, "num_hidden_layers", NULL);
    put_file(p, "{\"num_attention_heads\": 5}\n");
    expect_load_error(w, p, "heads", NULL);
    put_file(p, "{\"num_attention_heads\": 3, \"hidden_act\": \"swish2\"}\n");
    expect_load_error(w, p, "swish2", NULL);
    put_file(p, "{\"num_attention_heads\": 3,");
    expect_load_error(w, p, NULL);
    /* a wrong shape */
    w = copy_weights(t_root_path("tests/fixtures/tx_models/clip_oc/open_clip_model.safetensors"), "ocbad", NULL, NULL, NULL);
    snprintf(p, sizeof p, "%s/ocbad/open_clip_config.json", tmpdir);
    put_file(p, "{\"model_cfg\": {\"embed_dim\": 32, \"vision_cfg\": {\"width\": 48, \"head_width\": 16, \"layers\": 2, "
                "\"patch_size\": 8, \"image_size\": 48}}}\n");
    expect_load_error(w, p, "image_size", "48", "40", NULL);
    put_file(p, "{\"model_cfg\": {\"embed_dim\": 16}}\n");
    expect_load_error(w, p, "embed_dim", NULL);
    /* pickles */
    snprintf(p, sizeof p, "%s/pytorch_model.bin", tmpdir);
    put_file(p, "not read");
    expect_load_error(p, p, "save_file", NULL);
    snprintf(q, sizeof q, "%s/pickledir", tmpdir);
    mkdir(q, 0755);
    snprintf(p, sizeof p, "%s/pickledir/pytorch_model.bin", tmpdir);
    put_file(p, "not read");
    expect_load_error(q, p, "safetensors", NULL);
    snprintf(p, sizeof p, "%s/nothing-here", tmpdir);
    expect_load_error(p, p, NULL);

    /* image sizes the patches do not cover */
    char err[1024];
    mmp_tx_model *m = mmp_tx_model_load(t_root_path("tests/fixtures/tx_models/vit_hf"), err, sizeof err);
    CHECKF(m, "%s", err);
    if (m) {
        float *img = calloc(3 * 44 * 40, sizeof(float)), out[48];
        CHECK(mmp_tx_image_embed(m, img, 1, 44, 40, MMP_TX_OUT_EMBED, out, NULL, err, sizeof err) < 0);
        CHECKF(strstr(err, "44x40") && strstr(err, "patch size 8") && strstr(err, "vit_hf"), "%s", err);
        printf("  error: %s\n", err);
        CHECK(mmp_tx_image_embed(m, img, 1, 4, 8, MMP_TX_OUT_EMBED, out, NULL, err, sizeof err) < 0);
        CHECK(mmp_tx_image_embed(m, img, 1, 40, 40, MMP_TX_OUT_LOGITS, out, NULL, err, sizeof err) < 0);
        CHECKF(strstr(err, "logits"), "%s", err);
        int32_t ids[2] = {1, 2};
        int lens[1] = {2};
        CHECK(mmp_tx_text_embed(m, ids, lens, 1, MMP_TX_OUT_EMBED, out, NULL, err, sizeof err) < 0);
        CHECKF(strstr(err, "no text tower"), "%s", err);
        /* preprocessing: ViTImageProcessor's defaults */
        CHECK(m->pre.height == 40 && m->pre.width == 40 && m->pre.resize_shortest == 0 && m->pre.mean[0] == 0.5f);
        CHECK(!strcmp(m->pre.interpolation, "bilinear"));
        free(img);
        mmp_tx_model_free(m);
    }
    m = mmp_tx_model_load(t_root_path("tests/fixtures/tx_models/clip_hf"), err, sizeof err);
    CHECKF(m, "%s", err);
    if (m) {
        int32_t ids[20] = {0};
        int lens[1] = {14};
        float out[32];
        CHECK(mmp_tx_text_embed(m, ids, lens, 1, MMP_TX_OUT_EMBED, out, NULL, err, sizeof err) < 0);
        CHECKF(strstr(err, "14 tokens") && strstr(err, "13"), "%s", err);
        lens[0] = 3;
        ids[1] = 64;
        CHECK(mmp_tx_text_embed(m, ids, lens, 1, MMP_TX_OUT_EMBED, out, NULL, err, sizeof err) < 0);
        CHECKF(strstr(err, "64"), "%s", err);
        CHECK(m->pre.resize_shortest == 40 && m->pre.height == 40 && !strcmp(m->pre.interpolation, "bicubic"));
        CHECK(fabsf(m->pre.mean[0] - 0.48145466f) < 1e-7f);
        mmp_tx_model_free(m);
    }
    m = mmp_tx_model_load(t_root_path("tests/fixtures/tx_models/clip_oc"), err, sizeof err);
    CHECKF(m, "%s", err);
    if (m) {
        CHECK(m->pre.resize_shortest == 40 && m->pre.height == 40 && !strcmp(m->pre.interpolation, "bicubic"));
        CHECK(fabsf(m->pre.std[2] - 0.27577711f) < 1e-7f);
        CHECK(m->vision->enc.act == MMP_TX_QUICK_GELU && m->vision->enc.NH == 3 && m->text->enc.NH == 3);
        mmp_tx_model_free(m);
    }
    m = mmp_tx_model_load(t_root_path("tests/fixtures/tx_models/timm_cls"), err, sizeof err);
    CHECKF(m, "%s", err);
    if (m) {
        CHECK(m->pre.height == 40 && m->pre.resize_shortest == 44 && fabsf(m->pre.crop_pct - 0.9f) < 1e-6f);
        mmp_tx_model_free(m);
    }
    /* a model without config files: sizes from the shapes, the family's
     * defaults (64-wide heads; 48 has none: one head. tests/py/test_tx_models_real.py
     * checks real sizes without config files against the libraries) */
    w = copy_weights(vit, "nocfg", NULL, NULL, NULL);
    m = mmp_tx_model_load(w, err, sizeof err);
    CHECKF(m, "%s", err);
    if (m) {
        CHECK(m->family == MMP_TXM_VIT_HF && m->vision->enc.NH == 1 && m->vision->enc.layers == 2);
        CHECK(m->vision->enc.eps == 1e-12f && m->vision->enc.act == MMP_TX_GELU_ERF);
        mmp_tx_model_free(m);
    }
    if (!getenv("MMP_TMP")) { /* tests/run.sh removes its own */
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    }
}

int main(int argc, char **argv) {
    if (argc > 1) {
        check_fixture(argv[1], argv[1]);
        printf("worst relative error %.3g\n", worst_all);
        TEST_END();
    }
    static const char *fixtures[] = {"vit_hf", "vit_hf_cls", "timm_cls", "timm_nocls", "timm_noembcls", "clip_hf", "clip_oc"};
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) {
        char d[512];
        snprintf(d, sizeof d, "tests/fixtures/tx_models/%s", fixtures[i]);
        check_fixture(t_root_path(d), fixtures[i]);
    }
    printf("worst relative error over the fixtures %.3g\n", worst_all);
    threads();
    bad_inputs();
    TEST_END();
}
