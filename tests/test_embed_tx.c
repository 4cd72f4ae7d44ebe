/* mmp-embed with ViT and CLIP models, end to end: streams of f32 [3,H,W]
 * records made here from the input images of tests/fixtures/tx_models/
 * (tiny random models of every family, gen_tx_models.py), embedded by
 * build/mmp-embed, compared with the outputs of transformers 4.30.2, timm
 * 0.9.16 and open_clip 2.24 in each fixture's ref.safetensors (within 1e-4
 * of the reference's largest magnitude, as test_tx_models): proj and pool
 * (CLIP), pool, pooler and logits (ViT), another image size in a mixed-size
 * stream; and u8 images through mmp-decode with each family's recipe
 * against the library's own preprocessing (ref_decode.safetensors). Also: default layers, header provenance, u8 input normalized with
 * the model's mean/std (and --mean/--std), bit-identical results for any
 * --threads and --batch, the preprocessing warning, and refusals (unknown
 * layer, pickle, an image size that is not a multiple of the patch, --arch
 * of another family) in one line with a non-zero exit. */
#include <stdint.h>
#include <unistd.h>

#include "mmp.h"
#include "nn/nn.h"
#include "nn/provenance.h"
#include "nn/txmodel.h"
#include "testlib.h"
#include "tx/model.h"

#define TOL 1e-4

static char embed[4096];
static double worst = 0;

typedef struct {
    const float *x; /* [3,H,W] */
    int H, W;
} img;

/* f32 [3,H,W] records of imgs[order[i]]; fixed-size schema when all are one size. */
static void write_f32(const char *path, const img *imgs, const int *order, int n, const float mean[3],
                      const float std[3], const char *extra_meta_k, const char *extra_meta_v) {
    mmp_header h;
    mmp_header_init(&h);
    int fixed = 1;
    for (int i = 1; i < n; i++)
        fixed &= imgs[order[i]].H == imgs[order[0]].H && imgs[order[i]].W == imgs[order[0]].W;
    int64_t shp[3] = {3, fixed ? imgs[order[0]].H : -1, fixed ? imgs[order[0]].W : -1};
    mmp_header_add_field(&h, "image", MMP_F32, 3, shp);
    mmp_meta_set(&h.meta, "image.layout", "chw");
    char ms[128], ss[128];
    snprintf(ms, sizeof ms, "%.9g,%.9g,%.9g", mean[0], mean[1], mean[2]);
    snprintf(ss, sizeof ss, "%.9g,%.9g,%.9g", std[0], std[1], std[2]);
    mmp_meta_set(&h.meta, "image.mean", ms);
    mmp_meta_set(&h.meta, "image.std", ss);
    if (extra_meta_k) mmp_meta_set(&h.meta, extra_meta_k, extra_meta_v);
    mmp_writer *w = mmp_writer_open(path, &h, 1);
    for (int i = 0; i < n; i++) {
        const img *im = &imgs[order[i]];
        mmp_record r;
        mmp_record_init(&r);
        char id[32];
        snprintf(id, sizeof id, "img%d", i);
        mmp_record_set_id(&r, id);
        r.label = i % 3;
        int64_t s[3] = {3, im->H, im->W};
        mmp_tensor *t = mmp_record_add(&r, "image", MMP_F32, 3, s);
        memcpy(t->data, im->x, t->nbytes);
        mmp_writer_write(w, &r);
        mmp_record_clear(&r);
    }
    mmp_writer_close(w);
    mmp_header_free(&h);
}

/* u8 [H,W,3] records (meta as given: NULL-terminated key, value pairs) */
static void write_u8(const char *path, const uint8_t *px, int n, int H, int W, const char *const *meta) {
    mmp_header h;
    mmp_header_init(&h);
    int64_t shp[3] = {H, W, 3};
    mmp_header_add_field(&h, "image", MMP_U8, 3, shp);
    for (int i = 0; meta && meta[i]; i += 2) mmp_meta_set(&h.meta, meta[i], meta[i + 1]);
    mmp_writer *w = mmp_writer_open(path, &h, 1);
    for (int i = 0; i < n; i++) {
        mmp_record r;
        mmp_record_init(&r);
        mmp_tensor *t = mmp_record_add(&r, "image", MMP_U8, 3, shp);
        memcpy(t->data, px + (size_t)i * H * W * 3, t->nbytes);
        mmp_writer_write(w, &r);
        mmp_record_clear(&r);
    }
    mmp_writer_close(w);
    mmp_header_free(&h);
}

/* all embeddings of a stream as f32, records one after another; returns the count
 * (ids: NULL or room for the records' ids, strdup'ed) */
static int read_emb_ids(const char *path, float *out, size_t maxn, int64_t *dim, mmp_header *hcopy, char **ids) {
    char err[512];
    mmp_reader *r = mmp_reader_open(path, err, sizeof err);
    CHECKF(r != NULL, "%s: %s", path, err);
    if (!r) return 0;
    if (hcopy) mmp_header_copy(hcopy, mmp_reader_header(r));
    mmp_record rec;
    mmp_record_init(&rec);
    int n = 0, rc;
    size_t off = 0;
    while ((rc = mmp_reader_next(r, &rec)) == 1) {
        const mmp_tensor *t = mmp_record_cget(&rec, "embedding");
        CHECK(t && t->ndim == 1 && off + (size_t)t->shape[0] <= maxn);
        if (!t || off + (size_t)t->shape[0] > maxn) break;
        *dim = t->shape[0];
        mmp_tensor_to_f32(t, out + off);
        off += (size_t)t->shape[0];
        if (ids) ids[n] = mmp_xstrdup(rec.id ? rec.id : "");
        n++;
    }
    CHECKF(rc == 0, "%s: %s", path, rc ? mmp_reader_error(r) : "");
    mmp_record_clear(&rec);
    mmp_reader_close(r);
    return n;
}

static int read_emb(const char *path, float *out, size_t maxn, int64_t *dim, mmp_header *hcopy) {
    return read_emb_ids(path, out, maxn, dim, hcopy, NULL);
}

/* got[D] against row `row` of the reference [n, D]: max |got - want| / max |want of the tensor| */
static void compare(const char *what, const float *got, const mmp_safetensors *ref, const char *name, int row) {
    const mmp_tensor *t = mmp_st_get(ref, name);
    CHECKF(t && t->ndim == 2 && t->dtype == MMP_F32, "%s: no reference %s", what, name);
    if (!t) return;
    int64_t D = t->shape[1];
    const float *all = t->data, *want = all + (size_t)row * D;
    double wm = 0, dm = 0;
    for (size_t i = 0; i < (size_t)t->shape[0] * D; i++) wm = fabs(all[i]) > wm ? fabs(all[i]) : wm;
    for (int64_t i = 0; i < D; i++) {
        double d = fabs((double)got[i] - want[i]);
        dm = d > dm || d != d ? (d != d ? INFINITY : d) : dm;
    }
    double rel = dm / (wm > 0 ? wm : 1);
    if (rel > worst) worst = rel;
    printf("  %-34s row %d: max err %.3g (rel %.3g)\n", what, row, dm, rel);
    CHECKF(rel <= TOL, "%s row %d: rel error %.3g", what, row, rel);
}

static float *ref_images(const mmp_safetensors *ref, const char *name, int *n, int *H, int *W) {
    const mmp_tensor *t = mmp_st_get(ref, name);
    if (!t) return NULL;
    *n = (int)t->shape[0], *H = (int)t->shape[2], *W = (int)t->shape[3];
    return (float *)t->data;
}

static int one_line(const char *file) {
    return t_sh("test $(wc -l < %s) = 1", file) == 0;
}

typedef struct {
    const char *dir;
    const char *layers[4];   /* mmp-embed --layer ... */
    const char *refs[4];     /* ... and its reference in ref.safetensors */
    const char *deflayer;    /* the default layer */
    const char *ref2;        /* reference at the second size (images2) */
    const char *layer2;
} fx;

static void check_fixture(const fx *f) {
    char dir[4096], rp[4200], cmd[8192];
    snprintf(dir, sizeof dir, "%s", t_root_path(f->dir));
    snprintf(rp, sizeof rp, "%s/ref.safetensors", dir);
    mmp_safetensors ref;
    mmp_st_open_or_die(&ref, rp);
    char err[1024];
    mmp_tx_model *m = mmp_tx_model_load(dir, err, sizeof err);
    CHECKF(m, "%s", err);
    if (!m) return;
    int n = 0, H = 0, W = 0, n2 = 0, H2 = 0, W2 = 0;
    float *x = ref_images(&ref, "images", &n, &H, &W);
    float *x2 = ref_images(&ref, "images2", &n2, &H2, &W2);
    img imgs[3] = {{x, H, W}, {x + (size_t)3 * H * W, H, W}, {x2, H2, W2}};
    CHECK(n == 2 && (!x2 || n2 == 1));
    int order[3] = {0, 1, 2};
    write_f32("f.mmp", imgs, order, 2, m->pre.mean, m->pre.std, NULL, NULL);
    static float e[1 << 16];
    int64_t dim = 0;
    const char *name = strrchr(f->dir, '/') + 1;
    for (int k = 0; k < 4 && f->layers[k]; k++) {
        CHECK(t_sh("%s --model %s --layer %s --threads 2 f.mmp -o o.mmp", embed, dir, f->layers[k]) == 0);
        CHECK(read_emb("o.mmp", e, 1 << 16, &dim, NULL) == 2);
        snprintf(cmd, sizeof cmd, "%s --layer %s", name, f->layers[k]);
        for (int i = 0; i < 2; i++) compare(cmd, e + (size_t)i * dim, &ref, f->refs[k], i);
    }
    /* the default layer, header and provenance */
    CHECK(t_sh("%s --model %s f.mmp -o d.mmp", embed, dir) == 0);
    mmp_header h;
    mmp_header_init(&h);
    mmp_header_free(&h);
    CHECK(read_emb("d.mmp", e, 1 << 16, &dim, &h) == 2);
    const char *dl = mmp_meta_get(&h.meta, "embed.layer");
    CHECKF(dl && !strcmp(dl, f->deflayer), "%s: default layer %s, expected %s", name, dl ? dl : "?", f->deflayer);
    for (int k = 0; k < 4 && f->layers[k]; k++)
        if (!strcmp(f->layers[k], f->deflayer)) {
            snprintf(cmd, sizeof cmd, "%s (default layer)", name);
            compare(cmd, e, &ref, f->refs[k], 0);
        }
    char sha[65];
    CHECK(mmp_sha256_file(m->path, sha) == 0);
    const char *arch = mmp_meta_get(&h.meta, "embed.arch");
    char want_arch[128];
    snprintf(want_arch, sizeof want_arch, "%s-vit-w48-d2-p8-40", mmp_tx_family_name(m->family));
    CHECKF(arch && !strcmp(arch, want_arch), "arch %s, expected %s", arch ? arch : "?", want_arch);
    char sz[32];
    snprintf(sz, sizeof sz, "%dx%d", H, W);
    char *prov = mmp_provenance_format(want_arch, f->deflayer, sz, sha, m->pre.mean, m->pre.std);
    const char *p = mmp_meta_get(&h.meta, "provenance");
    CHECKF(p && !strcmp(p, prov), "provenance %s, expected %s", p ? p : "?", prov);
    free(prov);
    const char *wn = mmp_meta_get(&h.meta, "embed.weights");
    CHECKF(wn && !strcmp(wn, name), "embed.weights %s", wn ? wn : "?");
    CHECK(!strcmp(mmp_meta_get(&h.meta, "embed.weights_sha256"), sha));
    mmp_header_free(&h);
    /* the weights file instead of the folder: the same bits, the same provenance */
    float *e0 = malloc(sizeof(float) * 2 * dim);
    memcpy(e0, e, sizeof(float) * 2 * dim);
    CHECK(t_sh("%s --model %s f.mmp -o d2.mmp", embed, m->path) == 0);
    mmp_header_init(&h);
    mmp_header_free(&h);
    CHECK(read_emb("d2.mmp", e, 1 << 16, &dim, &h) == 2);
    CHECK(!memcmp(e, e0, sizeof(float) * 2 * dim));
    CHECK(mmp_meta_get(&h.meta, "provenance") && p);
    mmp_header_free(&h);
    free(e0);
    /* another size, in a stream of mixed sizes */
    if (x2) {
        int o3[3] = {0, 2, 1};
        write_f32("mix.mmp", imgs, o3, 3, m->pre.mean, m->pre.std, NULL, NULL);
        CHECK(t_sh("%s --model %s --layer %s mix.mmp -o mo.mmp", embed, dir, f->layer2) == 0);
        mmp_header_init(&h);
        mmp_header_free(&h);
        CHECK(read_emb("mo.mmp", e, 1 << 16, &dim, &h) == 3);
        CHECK(!strcmp(mmp_meta_get(&h.meta, "embed.size"), "any"));
        mmp_header_free(&h);
        snprintf(cmd, sizeof cmd, "%s --layer %s %dx%d", name, f->layer2, H2, W2);
        compare(cmd, e + dim, &ref, f->ref2, 0);
    }
    mmp_tx_model_free(m);
    mmp_st_close(&ref);
}

/* mmp-decode FLAGS | mmp-embed on the source images of tests/fixtures/image/clip/
 * against the library's own preprocessing + model (ref_decode.safetensors:
 * metadata "decode" = FLAGS, "files" = the image of each row), without a
 * preprocessing warning. */
static void check_decode(const char *fixture, const char *const *layers, const char *const *refs) {
    char dir[4096], rp[4200], cmd[256];
    snprintf(dir, sizeof dir, "%s", t_root_path(fixture));
    snprintf(rp, sizeof rp, "%s/ref_decode.safetensors", dir);
    mmp_safetensors ref;
    mmp_st_open_or_die(&ref, rp);
    const char *flags = mmp_meta_get(&ref.meta, "decode"), *files = mmp_meta_get(&ref.meta, "files");
    CHECK(flags && files);
    if (!flags || !files) return;
    const char *b = getenv("MMP_BUILD");
    static float e[1 << 14];
    char *ids[16];
    for (int k = 0; layers[k]; k++) {
        CHECK(t_sh("%s/mmp-decode %s src.tar | %s --model %s --layer %s --threads 2 -o dec.mmp 2> dec.err",
                   b ? b : "build", flags, embed, dir, layers[k]) == 0);
        CHECKF(t_sh("test -s dec.err") != 0, "%s: a warning for mmp-decode %s", fixture, flags);
        int64_t dim = 0;
        int n = read_emb_ids("dec.mmp", e, 1 << 14, &dim, NULL, ids);
        CHECK(n == 7);
        for (int i = 0; i < n; i++) {
            /* the row of this record's image in the reference */
            const char *base = strrchr(ids[i], '/') ? strrchr(ids[i], '/') + 1 : ids[i];
            int row = -1, r = 0;
            for (const char *p = files; *p; r++) {
                size_t l = strcspn(p, ",");
                if (l == strlen(base) && !strncmp(p, base, l)) row = r;
                p += l + (p[l] == ',');
            }
            CHECKF(row >= 0, "%s: %s not in the reference", fixture, ids[i]);
            snprintf(cmd, sizeof cmd, "%s decode %s %s", strrchr(fixture, '/') + 1, layers[k], base);
            if (row >= 0) compare(cmd, e + (size_t)i * dim, &ref, refs[k], row);
            free(ids[i]);
        }
    }
    mmp_st_close(&ref);
}

/* --layer tokens of a CLIP image tower: the patch tokens [np, C] of every
 * image against HF CLIPVisionModel's last_hidden_state[:, 1:] (the fixture's
 * last hidden state: CLIP has no norm after the encoder). */
static void check_tokens(const char *dir) {
    char rp[4300], mp[4200];
    snprintf(mp, sizeof mp, "%s", t_root_path(dir));
    snprintf(rp, sizeof rp, "%s/ref.safetensors", mp);
    mmp_safetensors ref;
    mmp_st_open_or_die(&ref, rp);
    char err[1024];
    mmp_tx_model *m = mmp_tx_model_load(mp, err, sizeof err);
    CHECKF(m != NULL, "%s", err);
    int n = 0, H = 0, W = 0;
    float *x = ref_images(&ref, "images", &n, &H, &W);
    const mmp_tensor *hid = mmp_st_get(&ref, "hidden");
    CHECK(x && hid && hid->ndim == 3 && m);
    if (!x || !hid || !m) {
        mmp_st_close(&ref);
        return;
    }
    img imgs[4];
    int order[4];
    for (int i = 0; i < n && i < 4; i++) imgs[i] = (img){x + (size_t)i * 3 * H * W, H, W}, order[i] = i;
    write_f32("tok.mmp", imgs, order, n, m->pre.mean, m->pre.std, NULL, NULL);
    CHECK(t_sh("%s --model %s --layer tokens tok.mmp -o tok_out.mmp", embed, mp) == 0);
    int64_t L = hid->shape[0] - 1, T = hid->shape[1] / n, C = hid->shape[2];
    const float *last = (const float *)hid->data + (size_t)L * hid->shape[1] * C;
    mmp_reader *r = mmp_reader_open("tok_out.mmp", err, sizeof err);
    CHECKF(r != NULL, "%s", err);
    if (r) {
        const mmp_schema_field *f = mmp_header_field(mmp_reader_header(r), "embedding");
        CHECK(f && f->ndim == 2 && f->shape[0] == T - 1 && f->shape[1] == C);
        CHECK(!strcmp(mmp_meta_get(&mmp_reader_header(r)->meta, "embed.layer"), "tokens"));
        mmp_record rec;
        mmp_record_init(&rec);
        double wm = 0, dm = 0;
        for (size_t i = 0; i < (size_t)hid->shape[1] * C; i++) wm = fabs(last[i]) > wm ? fabs(last[i]) : wm;
        int k = 0;
        while (mmp_reader_next(r, &rec) == 1) {
            const mmp_tensor *t = mmp_record_cget(&rec, "embedding");
            CHECK(t && t->ndim == 2 && t->shape[0] == T - 1 && t->shape[1] == C);
            if (t && k < n)
                for (int64_t j = 0; j < (T - 1) * C; j++) {
                    double d = fabs((double)((const float *)t->data)[j] - last[((size_t)k * T + 1) * C + j]);
                    dm = d > dm || d != d ? (d != d ? INFINITY : d) : dm;
                }
            k++;
            mmp_record_clear(&rec);
        }
        CHECK(k == n);
        printf("  %-34s max err %.3g (rel %.3g)\n", dir, dm, dm / (wm > 0 ? wm : 1));
        CHECKF(dm / (wm > 0 ? wm : 1) <= TOL, "%s tokens: rel error %.3g", dir, dm / wm);
        if (dm / (wm > 0 ? wm : 1) > worst) worst = dm / (wm > 0 ? wm : 1);
        mmp_reader_close(r);
    }
    mmp_tx_model_free(m);
    mmp_st_close(&ref);
}

/* --layer tokens of a timm ViT with the final norm on every token and average
 * pooling without fc_norm: the mean of the normed patch tokens is timm's
 * pooled output (forward_head(pre_logits=True)), the fixture's "pooled". */
static void check_tokens_mean(const char *dir) {
    char rp[4300], mp[4200];
    snprintf(mp, sizeof mp, "%s", t_root_path(dir));
    snprintf(rp, sizeof rp, "%s/ref.safetensors", mp);
    mmp_safetensors ref;
    mmp_st_open_or_die(&ref, rp);
    char err[1024];
    mmp_tx_model *m = mmp_tx_model_load(mp, err, sizeof err);
    CHECKF(m != NULL, "%s", err);
    int n = 0, H = 0, W = 0;
    float *x = ref_images(&ref, "images", &n, &H, &W);
    CHECK(x && m && n <= 4);
    if (!x || !m || n > 4) {
        mmp_st_close(&ref);
        return;
    }
    img imgs[4];
    int order[4];
    for (int i = 0; i < n; i++) imgs[i] = (img){x + (size_t)i * 3 * H * W, H, W}, order[i] = i;
    write_f32("tokm.mmp", imgs, order, n, m->pre.mean, m->pre.std, NULL, NULL);
    CHECK(t_sh("%s --model %s --layer tokens tokm.mmp -o tokm_out.mmp", embed, mp) == 0);
    mmp_reader *r = mmp_reader_open("tokm_out.mmp", err, sizeof err);
    CHECKF(r != NULL, "%s", err);
    mmp_record rec;
    mmp_record_init(&rec);
    int k = 0;
    while (r && mmp_reader_next(r, &rec) == 1) {
        const mmp_tensor *t = mmp_record_cget(&rec, "embedding");
        CHECK(t && t->ndim == 2);
        if (t && t->ndim == 2 && k < n) {
            int64_t N = t->shape[0], C = t->shape[1];
            float mean[1024];
            CHECK(C <= 1024);
            for (int64_t c = 0; c < C && c < 1024; c++) {
                double a = 0;
                for (int64_t j = 0; j < N; j++) a += ((const float *)t->data)[j * C + c];
                mean[c] = (float)(a / N);
            }
            compare("timm tokens (mean = pooled)", mean, &ref, "pooled", k);
        }
        k++;
        mmp_record_clear(&rec);
    }
    CHECK(k == n);
    if (r) mmp_reader_close(r);
    mmp_tx_model_free(m);
    mmp_st_close(&ref);
}

int main(void) {
    mmp_set_progname("test_embed_tx");
    const char *b = getenv("MMP_BUILD");
    snprintf(embed, sizeof embed, "%s/mmp-embed", b ? b : "build");
    if (access(embed, X_OK)) SKIP("no %s", embed);
    static const fx fixtures[] = {
        {"tests/fixtures/tx_models/clip_hf", {"proj", "pool"}, {"embed", "pooled"}, "proj", "embed2", "proj"},
        {"tests/fixtures/tx_models/clip_oc", {"proj", "pool"}, {"embed", "pooled"}, "proj", "embed2", "proj"},
        {"tests/fixtures/tx_models/vit_hf", {"pool", "pooler"}, {"pooled", "pooler"}, "pool", "pooled2", "pool"},
        {"tests/fixtures/tx_models/vit_hf_cls", {"pool", "logits"}, {"pooled", "logits"}, "pool", "pooled2", "pool"},
        {"tests/fixtures/tx_models/timm_cls", {"pool", "logits"}, {"pooled", "logits"}, "pool", "pooled2", "pool"},
        {"tests/fixtures/tx_models/timm_nocls", {"pool"}, {"pooled"}, "pool", "pooled2", "pool"},
        {"tests/fixtures/tx_models/timm_noembcls", {"pool", "logits"}, {"pooled", "logits"}, "pool", "pooled2", "pool"},
    };
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) check_fixture(&fixtures[i]);
    check_tokens("tests/fixtures/tx_models/clip_hf");
    check_tokens("tests/fixtures/tx_models/clip_oc");
    check_tokens_mean("tests/fixtures/tx_models/timm_noembcls");

    /* u8 images through mmp-decode with the recipe of docs/embed.md */
    {
        const char *b = getenv("MMP_BUILD");
        char dec[4096];
        snprintf(dec, sizeof dec, "%s/mmp-decode", b ? b : "build");
        if (access(dec, X_OK)) {
            printf("no %s: the mmp-decode checks are skipped\n", dec);
        } else {
            CHECK(t_sh("tar -cf src.tar -C %s clip", t_root_path("tests/fixtures/image")) == 0);
            const char *cl[] = {"proj", "pool", NULL}, *cr[] = {"embed", "pooled"};
            check_decode("tests/fixtures/tx_models/clip_hf", cl, cr);
            check_decode("tests/fixtures/tx_models/clip_oc", cl, cr);
            const char *tl[] = {"pool", "logits", NULL}, *tr[] = {"pooled", "logits"};
            check_decode("tests/fixtures/tx_models/timm_cls", tl, tr);
            const char *vl[] = {"pool", "pooler", NULL}, *vr[] = {"pooled", "pooler"};
            check_decode("tests/fixtures/tx_models/vit_hf", vl, vr);
        }
    }

    char clip[4096], oc[4096], vit[4096];
    snprintf(clip, sizeof clip, "%s", t_root_path("tests/fixtures/tx_models/clip_hf"));
    snprintf(oc, sizeof oc, "%s", t_root_path("tests/fixtures/tx_models/clip_oc"));
    snprintf(vit, sizeof vit, "%s", t_root_path("tests/fixtures/tx_models/vit_hf"));
    char err[1024];
    mmp_tx_model *m = mmp_tx_model_load(oc, err, sizeof err);
    CHECKF(m, "%s", err);
    if (!m) TEST_END();
    char rp[4200];
    snprintf(rp, sizeof rp, "%s/ref.safetensors", oc);
    mmp_safetensors ref;
    mmp_st_open_or_die(&ref, rp);
    int n = 0, H = 0, W = 0, n2 = 0, H2 = 0, W2 = 0;
    float *x = ref_images(&ref, "images", &n, &H, &W), *x2 = ref_images(&ref, "images2", &n2, &H2, &W2);
    img imgs[3] = {{x, H, W}, {x + (size_t)3 * H * W, H, W}, {x2, H2, W2}};

    /* --threads and --batch do not change a bit (20 records, two sizes) */
    int order[20];
    for (int i = 0; i < 20; i++) order[i] = i % 3 == 2 ? 2 : i % 2;
    write_f32("many.mmp", imgs, order, 20, m->pre.mean, m->pre.std, NULL, NULL);
    static float e1[1 << 14], e2[1 << 14];
    int64_t dim = 0;
    CHECK(t_sh("%s --model %s --threads 1 --batch 1 many.mmp -o m1.mmp", embed, oc) == 0);
    CHECK(read_emb("m1.mmp", e1, 1 << 14, &dim, NULL) == 20 && dim == 32);
    for (int i = 0; i < 20; i++)
        if (order[i] == 2) compare("clip_oc 20 records, 56x56", e1 + (size_t)i * dim, &ref, "embed2", 0);
        else compare("clip_oc 20 records, 40x40", e1 + (size_t)i * dim, &ref, "embed", order[i]);
    const char *variants[] = {"--threads 2 --batch 7", "--threads 3 --batch 64", "--threads 2 --batch 1",
                              "--threads 1 --batch 7"};
    for (int v = 0; v < 4; v++) {
        CHECK(t_sh("%s --model %s %s many.mmp -o m2.mmp", embed, oc, variants[v]) == 0);
        CHECK(read_emb("m2.mmp", e2, 1 << 14, &dim, NULL) == 20);
        CHECKF(!memcmp(e1, e2, sizeof(float) * 20 * 32), "%s: not the bits of --threads 1 --batch 1", variants[v]);
    }
    /* f16 output */
    CHECK(t_sh("%s --model %s --dtype f16 many.mmp -o m3.mmp", embed, oc) == 0);
    CHECK(read_emb("m3.mmp", e2, 1 << 14, &dim, NULL) == 20);
    for (int i = 0; i < 20 * 32; i++) CHECK(fabsf(e2[i] - e1[i]) <= 1e-3f * (1 + fabsf(e1[i])));

    /* u8 input: normalized here with the model's mean/std = f32 input normalized the same way */
    {
        int N = 3;
        uint8_t *px = malloc((size_t)N * H * W * 3);
        for (size_t i = 0; i < (size_t)N * H * W * 3; i++) px[i] = (uint8_t)((i * 2654435761u) >> 13);
        write_u8("u8.mmp", px, N, H, W, NULL);
        float *nh = malloc(sizeof(float) * H * W * 3), *chw = malloc(sizeof(float) * (size_t)N * 3 * H * W);
        img u[3];
        for (int i = 0; i < N; i++) {
            mmp_nn_normalize_u8(px + (size_t)i * H * W * 3, H, W, m->pre.mean, m->pre.std, nh);
            for (int p = 0; p < H * W; p++)
                for (int c = 0; c < 3; c++) chw[(size_t)i * 3 * H * W + (size_t)c * H * W + p] = nh[p * 3 + c];
            u[i] = (img){chw + (size_t)i * 3 * H * W, H, W};
        }
        int o[3] = {0, 1, 2};
        write_f32("u8f.mmp", u, o, N, m->pre.mean, m->pre.std, NULL, NULL);
        CHECK(t_sh("%s --model %s u8.mmp -o u1.mmp", embed, oc) == 0);
        CHECK(t_sh("%s --model %s u8f.mmp -o u2.mmp", embed, oc) == 0);
        CHECK(read_emb("u1.mmp", e1, 1 << 14, &dim, NULL) == N);
        CHECK(read_emb("u2.mmp", e2, 1 << 14, &dim, NULL) == N);
        CHECK(!memcmp(e1, e2, sizeof(float) * N * 32));
        /* the same bits from the library directly */
        float *d = malloc(sizeof(float) * N * 32);
        CHECK(mmp_tx_image_embed(m, chw, N, H, W, MMP_TX_OUT_EMBED, d, NULL, err, sizeof err) == 0);
        CHECK(!memcmp(e1, d, sizeof(float) * N * 32));
        /* --mean/--std override: other embeddings, named in the provenance */
        CHECK(t_sh("%s --model %s --mean 0.5,0.5,0.5 --std 0.25,0.25,0.25 u8.mmp -o u3.mmp", embed, oc) == 0);
        mmp_header h;
        mmp_header_init(&h);
        mmp_header_free(&h);
        CHECK(read_emb("u3.mmp", e2, 1 << 14, &dim, &h) == N);
        CHECK(memcmp(e1, e2, sizeof(float) * N * 32) != 0);
        const char *p = mmp_meta_get(&h.meta, "provenance");
        CHECKF(p && strstr(p, ":mean=0.5,0.5,0.5:std=0.25,0.25,0.25"), "provenance %s", p ? p : "?");
        mmp_header_free(&h);
        /* the preprocessing guard: one warning line naming both, output unchanged */
        const char *bilinear[] = {"image.size", "40", NULL};
        write_u8("w1.mmp", px, N, H, W, bilinear);
        CHECK(t_sh("%s --model %s w1.mmp -o w1o.mmp 2> w1.err", embed, oc) == 0);
        CHECK(one_line("w1.err"));
        CHECK(t_sh("grep -q 'warning: w1.mmp: images resized as mmp-decode --size 40 --interp bilinear, but .*clip_oc "
                   "(clip-openclip) expects --size 40 --interp bicubic (its preprocessing)' w1.err") == 0);
        CHECK(read_emb("w1o.mmp", e2, 1 << 14, &dim, NULL) == N && !memcmp(e1, e2, sizeof(float) * N * 32));
        const char *bicubic[] = {"image.size", "40", "image.interp", "bicubic", NULL};
        write_u8("w2.mmp", px, N, H, W, bicubic);
        CHECK(t_sh("%s --model %s w2.mmp -o w2o.mmp 2> w2.err", embed, oc) == 0);
        CHECK(t_sh("test -s w2.err") != 0); /* open_clip: bicubic, torchvision offsets */
        CHECK(t_sh("%s --model %s w2.mmp -o w2o.mmp 2> w2.err", embed, clip) == 0);
        CHECK(t_sh("grep -q 'expects --size 40 --interp bicubic --crop-round hf' w2.err") == 0 && one_line("w2.err"));
        const char *hf[] = {"image.size", "64", "image.interp", "bicubic", "image.crop_round", "hf", NULL};
        write_u8("w3.mmp", px, N, H, W, hf); /* header size 64 vs 40: any size is allowed, no warning */
        CHECK(t_sh("%s --model %s w3.mmp -o w3o.mmp 2> w3.err", embed, clip) == 0);
        CHECK(t_sh("test -s w3.err") != 0);
        const char *pct[] = {"image.size", "40", "image.interp", "bicubic", "image.crop_pct", "0.875", NULL};
        write_u8("w4.mmp", px, N, H, W, pct);
        CHECK(t_sh("%s --model %s w4.mmp -o w4o.mmp 2> w4.err", embed, t_root_path("tests/fixtures/tx_models/timm_cls")) == 0);
        CHECK(t_sh("grep -q 'crop-pct 0.875, but .*expects --size 40 --interp bicubic --crop-pct 0.9' w4.err") == 0 &&
              one_line("w4.err"));
        const char *rs[] = {"image.resize", "40x40", NULL};
        write_u8("w5.mmp", px, N, H, W, rs); /* HF ViT: bilinear resize to 40x40, no crop */
        CHECK(t_sh("%s --model %s w5.mmp -o w5o.mmp 2> w5.err", embed, vit) == 0);
        CHECK(t_sh("test -s w5.err") != 0);
        CHECK(t_sh("%s --model %s w1.mmp -o w5o.mmp 2> w5.err", embed, vit) == 0);
        CHECK(t_sh("grep -q 'expects --resize 40x40 --interp bilinear' w5.err") == 0 && one_line("w5.err"));
        free(d);
        free(px);
        free(nh);
        free(chw);
    }

    /* refusals: one line, non-zero exit */
    CHECK(t_sh("%s --model %s --layer logits many.mmp > /dev/null 2> e.err", embed, oc) == 1);
    CHECK(t_sh("grep -q 'unknown --layer logits for clip-openclip-vit-w48-d2-p8-40 (its layers: proj, pool, tokens)' e.err") == 0 &&
          one_line("e.err"));
    CHECK(t_sh("%s --model %s --layer proj many.mmp > /dev/null 2> e.err", embed, vit) == 1);
    CHECK(t_sh("grep -q 'unknown --layer proj for vit-hf-vit-w48-d2-p8-40 (its layers: pool, pooler, tokens)' e.err") == 0 &&
          one_line("e.err"));
    CHECK(t_sh("%s --model %s --layer layer3 many.mmp > /dev/null 2> e.err", embed, oc) == 1 && one_line("e.err"));
    CHECK(t_sh("printf 'PK' > model.bin && %s --model model.bin many.mmp > /dev/null 2> e.err", embed) == 1);
    CHECK(t_sh("grep -q 'model.bin: PyTorch pickle files are not read' e.err") == 0 && one_line("e.err"));
    CHECK(t_sh("mkdir -p pk && printf 'PK' > pk/pytorch_model.bin && %s --model pk many.mmp > /dev/null 2> e.err",
               embed) == 1);
    CHECK(t_sh("grep -q 'pytorch_model.bin: PyTorch pickle' e.err") == 0 && one_line("e.err"));
    CHECK(t_sh("%s --model %s --arch vit-timm many.mmp > /dev/null 2> e.err", embed, oc) == 1);
    CHECK(t_sh("grep -q -- '--arch vit-timm, but the weights are clip-openclip-vit-w48-d2-p8-40 (clip-openclip)' e.err") == 0 &&
          one_line("e.err"));
    CHECK(t_sh("%s --model %s --arch resnet50 many.mmp > /dev/null 2> e.err", embed, oc) == 1 && one_line("e.err"));
    CHECK(t_sh("%s --model %s --arch clip many.mmp -o /dev/null", embed, oc) == 0);
    CHECK(t_sh("%s --model %s --arch clip-openclip many.mmp -o /dev/null", embed, oc) == 0);
    CHECK(t_sh("%s --model %s --arch clip %s > /dev/null 2> e.err", embed,
               t_root_path("tests/fixtures/nn/mnv2_w025.safetensors"), "many.mmp") == 1 && one_line("e.err"));
    /* an image size that is not a multiple of the patch: the record named */
    {
        float *y = calloc((size_t)3 * 44 * 40, sizeof(float));
        img bad[3] = {imgs[0], {y, 44, 40}, imgs[1]};
        int o[3] = {0, 1, 2};
        write_f32("bad.mmp", bad, o, 3, m->pre.mean, m->pre.std, NULL, NULL);
        CHECK(t_sh("%s --model %s bad.mmp > /dev/null 2> e.err", embed, oc) == 1);
        CHECK(t_sh("grep -q 'bad.mmp: record 2: image 44x40 is not a multiple of clip-openclip-vit-w48-d2-p8-40.s "
                   "patch size 8' e.err") == 0 && one_line("e.err"));
        int o1[1] = {1};
        write_f32("bad1.mmp", bad, o1, 1, m->pre.mean, m->pre.std, NULL, NULL); /* fixed size: from the header */
        CHECK(t_sh("%s --model %s bad1.mmp > /dev/null 2> e.err", embed, oc) == 1);
        CHECK(t_sh("grep -q 'bad1.mmp: image size 44x40 is not a multiple of' e.err") == 0 && one_line("e.err"));
        free(y);
    }
    /* f32 input normalized otherwise: refused as for CNNs */
    {
        float half[3] = {0.5f, 0.5f, 0.5f};
        int o[2] = {0, 1};
        write_f32("g.mmp", imgs, o, 2, half, half, NULL, NULL);
        CHECK(t_sh("%s --model %s g.mmp > /dev/null 2> e.err", embed, oc) == 1 && one_line("e.err"));
        CHECK(t_sh("%s --model %s --allow-mixed g.mmp -o /dev/null 2> e.err", embed, oc) == 0);
    }
    /* arch names of real sizes (the tower's dims, as the loader fills them) */
    {
        static const struct {
            mmp_txm_family f;
            int C, L, I, P, g;
            const char *want;
        } cases[] = {
            {MMP_TXM_CLIP_HF, 768, 12, 3072, 32, 7, "clip-hf-vit-b32"},
            {MMP_TXM_CLIP_OPENCLIP, 1024, 24, 4096, 14, 24, "clip-openclip-vit-l14-336"},
            {MMP_TXM_VIT_TIMM, 384, 12, 1536, 16, 14, "vit-timm-vit-s16"},
            {MMP_TXM_VIT_HF, 768, 12, 3072, 16, 24, "vit-hf-vit-b16-384"},
            {MMP_TXM_CLIP_OPENCLIP, 1664, 48, 8192, 14, 16, "clip-openclip-vit-bigg14"},
            {MMP_TXM_CLIP_HF, 768, 12, 2048, 32, 7, "clip-hf-vit-w768-d12-p32"},
        };
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            mmp_tx_vision v = {.C = cases[i].C, .P = cases[i].P, .gh = cases[i].g, .gw = cases[i].g};
            v.enc.layers = cases[i].L, v.enc.inter = cases[i].I;
            mmp_tx_model fake = {.family = cases[i].f, .vision = &v};
            char a[128];
            mmp_nn_tx_arch(&fake, a, sizeof a);
            CHECKF(!strcmp(a, cases[i].want), "arch %s, expected %s", a, cases[i].want);
        }
    }
    /* --list-layers */
    CHECK(t_sh("test \"$(%s --model %s --list-layers | tr '\\n' ' ')\" = 'proj pool tokens '", embed, oc) == 0);
    CHECK(t_sh("test \"$(%s --model %s --list-layers | tr '\\n' ' ')\" = 'pool pooler tokens '", embed, vit) == 0);
    printf("worst relative error %.3g (tolerance %g)\n", worst, TOL);
    mmp_tx_model_free(m);
    mmp_st_close(&ref);
    TEST_END();
}
