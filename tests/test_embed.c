/* mmp-embed end to end: streams built here from the nn fixtures' u8
 * images, embedded by build/mmp-embed, compared with torchvision's outputs
 * (tests/fixtures/nn/NAME_io_HxW.safetensors; tolerance as test_nn, f16 output
 * 1e-3 relative), plus header provenance, record pass-through, f32 [3,H,W]
 * input, variable sizes, --threads/--batch invariance, and refusals. */
#include <stdint.h>
#include <unistd.h>

#include "mmp.h"
#include "nn/nn.h"
#include "nn_testlib.h"
#include "testlib.h"

static char embed[4096];

/* u8 [H,W,3] records from fixtures a (and b interleaved when given, variable-size schema). */
static void write_u8_n(const char *path, fixture *a, fixture *b, int total) {
    mmp_header h;
    mmp_header_init(&h);
    int64_t shp[3] = {b ? -1 : a->H, b ? -1 : a->W, 3};
    mmp_header_add_field(&h, "image", MMP_U8, 3, shp);
    int64_t one = 1;
    mmp_header_add_field(&h, "extra", MMP_I32, 1, &one);
    char *cls[3] = {"a", "b", "c"};
    mmp_header_set_classes(&h, 3, cls);
    mmp_writer *w = mmp_writer_open(path, &h, 1);
    int n = total ? total : a->N + (b ? b->N : 0);
    for (int i = 0; i < n; i++) {
        fixture *f = b && i % 2 ? b : a;
        int k = (b ? i / 2 : i) % f->N;
        mmp_record r;
        mmp_record_init(&r);
        char id[32];
        snprintf(id, sizeof id, "img%d", i);
        mmp_record_set_id(&r, id);
        r.label = i % 3;
        mmp_record_set_text(&r, "a caption");
        int64_t s[3] = {f->H, f->W, 3};
        mmp_tensor *t = mmp_record_add(&r, "image", MMP_U8, 3, s);
        memcpy(t->data, (const uint8_t *)f->in->data + (size_t)k * f->H * f->W * 3, t->nbytes);
        ((int32_t *)mmp_record_add(&r, "extra", MMP_I32, 1, &one)->data)[0] = 1000 + i;
        mmp_writer_write(w, &r);
        mmp_record_clear(&r);
    }
    mmp_writer_close(w);
    mmp_header_free(&h);
}

static void write_u8(const char *path, fixture *a, fixture *b) { write_u8_n(path, a, b, 0); }

/* f32 [3,H,W] normalized with mean/std, meta as mmp-augment writes it. */
static void write_f32(const char *path, fixture *a, const float mean[3], const float std[3], const char *ms,
                      const char *ss) {
    mmp_header h;
    mmp_header_init(&h);
    int64_t shp[3] = {3, a->H, a->W};
    mmp_header_add_field(&h, "image", MMP_F32, 3, shp);
    mmp_meta_set(&h.meta, "image.layout", "chw");
    mmp_meta_set(&h.meta, "image.mean", ms);
    mmp_meta_set(&h.meta, "image.std", ss);
    mmp_writer *w = mmp_writer_open(path, &h, 1);
    size_t hw = (size_t)a->H * a->W;
    float *tmp = malloc(sizeof(float) * hw * 3);
    for (int i = 0; i < a->N; i++) {
        mmp_record r;
        mmp_record_init(&r);
        mmp_tensor *t = mmp_record_add(&r, "image", MMP_F32, 3, shp);
        mmp_nn_normalize_u8((const uint8_t *)a->in->data + i * hw * 3, a->H, a->W, mean, std, tmp);
        float *d = t->data;
        for (size_t p = 0; p < hw; p++)
            for (int c = 0; c < 3; c++) d[c * hw + p] = tmp[p * 3 + c];
        mmp_writer_write(w, &r);
        mmp_record_clear(&r);
    }
    free(tmp);
    mmp_writer_close(w);
    mmp_header_free(&h);
}

/* Reads all embeddings (as f32) of a stream; returns the count. */
static int read_emb(const char *path, float *out, int64_t maxn, int64_t *dim, mmp_header *hcopy, mmp_record *recs) {
    char err[512];
    if (hcopy) mmp_header_init(hcopy);
    mmp_reader *r = mmp_reader_open(path, err, sizeof err);
    CHECKF(r != NULL, "%s: %s", path, err);
    if (!r) return 0;
    if (hcopy) {
        mmp_header_free(hcopy);
        mmp_header_copy(hcopy, mmp_reader_header(r));
    }
    mmp_record rec;
    mmp_record_init(&rec);
    int n = 0;
    int64_t off = 0;
    int rc;
    while ((rc = mmp_reader_next(r, &rec)) == 1) {
        const mmp_tensor *t = mmp_record_cget(&rec, "embedding");
        CHECK(t && t->ndim == 1);
        if (!t) break;
        *dim = t->shape[0];
        CHECK(off + t->shape[0] <= maxn);
        if (off + t->shape[0] > maxn) break;
        mmp_tensor_to_f32(t, out + off);
        off += t->shape[0];
        if (recs) mmp_record_copy(&recs[n], &rec);
        n++;
    }
    CHECKF(rc == 0, "%s: %s", path, rc ? mmp_reader_error(r) : "");
    mmp_record_clear(&rec);
    mmp_reader_close(r);
    return n;
}

static void compare(const float *got, const mmp_tensor *ref, int i0, int n, double rtol, const char *what) {
    int64_t dim = ref->shape[1];
    const float *tr = (const float *)ref->data + (size_t)i0 * dim;
    double scale = 0;
    for (size_t i = 0; i < (size_t)n * dim; i++) scale = fabs(tr[i]) > scale ? fabs(tr[i]) : scale;
    double e = t_maxrel(got, tr, (size_t)n * dim, rtol, rtol * scale, NULL);
    if (what) printf("%-40s max err/tol %.3f\n", what, e);
    CHECKF(e <= 1.0, "%s: error %.3g x tolerance", what ? what : "(repeat)", e);
}

int main(void) {
    mmp_set_progname("test_embed");
    const char *b = getenv("MMP_BUILD");
    snprintf(embed, sizeof embed, "%s/mmp-embed", b ? b : "build");
    if (access(embed, X_OK)) SKIP("no %s", embed);
    char *mnv2 = mmp_xstrdup(t_root_path("tests/fixtures/nn/mnv2_w025.safetensors"));
    char *r18 = mmp_xstrdup(t_root_path("tests/fixtures/nn/resnet18_w8.safetensors"));
    fixture a, c, r;
    fx_open(&a, "tests/fixtures/nn/mnv2_w025_io_64x64.safetensors");
    fx_open(&c, "tests/fixtures/nn/mnv2_w025_io_33x47.safetensors");
    fx_open(&r, "tests/fixtures/nn/resnet18_w8_io_33x47.safetensors");
    write_u8("a.mmp", &a, NULL);
    write_u8("r.mmp", &r, NULL);
    write_u8("ac.mmp", &a, &c);
    static float e1[1 << 16], e2[1 << 16];
    int64_t dim = 0;
    char sha[65];
    CHECK(mmp_sha256_file(mnv2, sha) == 0);

    /* default: pool, f32, header meta, records passed through */
    CHECK(t_sh("%s --model %s --threads 2 a.mmp -o out.mmp", embed, mnv2) == 0);
    mmp_header h;
    mmp_record recs[8];
    for (int i = 0; i < 8; i++) mmp_record_init(&recs[i]);
    CHECK(read_emb("out.mmp", e1, 1 << 16, &dim, &h, recs) == 3 && dim == 1280);
    compare(e1, mmp_st_get(&a.st, "pool"), 0, 3, 1e-4, "mnv2 pool 64x64");
    CHECK(!mmp_header_field(&h, "image") && mmp_header_field(&h, "extra"));
    const mmp_schema_field *ef = mmp_header_field(&h, "embedding");
    CHECK(ef && ef->dtype == MMP_F32 && ef->ndim == 1 && ef->shape[0] == 1280);
    CHECK(h.nclasses == 3 && !strcmp(h.classes[2], "c"));
    const char *p = mmp_meta_get(&h.meta, "provenance");
    char want[512];
    snprintf(want, sizeof want, "mobilenet_v2:pool:size=64x64:sha256=%s:mean=0.5,0.4,0.3:std=0.25,0.2,0.3", sha);
    CHECKF(p && !strcmp(p, want), "provenance %s", p ? p : "(none)");
    CHECK(!strcmp(mmp_meta_get(&h.meta, "embed.weights_sha256"), sha));
    CHECK(!strcmp(mmp_meta_get(&h.meta, "embed.arch"), "mobilenet_v2"));
    CHECK(!strcmp(mmp_meta_get(&h.meta, "embed.layer"), "pool"));
    CHECK(!strcmp(mmp_meta_get(&h.meta, "embed.size"), "64x64"));
    CHECK(!strcmp(mmp_meta_get(&h.meta, "embed.dtype"), "f32"));
    CHECK(!strcmp(mmp_meta_get(&h.meta, "embed.mean"), "0.5,0.4,0.3"));
    CHECK(!strcmp(mmp_meta_get(&h.meta, "embed.std"), "0.25,0.2,0.3"));
    mmp_header_free(&h);
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "img%d", i);
        CHECK(recs[i].id && !strcmp(recs[i].id, id) && recs[i].label == i % 3);
        CHECK(recs[i].text && !strcmp(recs[i].text, "a caption"));
        const mmp_tensor *x = mmp_record_cget(&recs[i], "extra");
        CHECK(x && ((int32_t *)x->data)[0] == 1000 + i && !mmp_record_cget(&recs[i], "image"));
        mmp_record_clear(&recs[i]);
    }
    /* --threads, --batch: bit-identical */
    CHECK(t_sh("%s --model %s --threads 1 --batch 1 a.mmp -o out1.mmp", embed, mnv2) == 0);
    CHECK(read_emb("out1.mmp", e2, 1 << 16, &dim, NULL, NULL) == 3);
    CHECK(!memcmp(e1, e2, sizeof(float) * 3 * 1280));
    /* 40 records (several micro-batches): --batch/--threads do not change a bit */
    write_u8_n("a40.mmp", &a, NULL, 40);
    CHECK(t_sh("%s --model %s --threads 1 --batch 1 a40.mmp -o o40a.mmp", embed, mnv2) == 0);
    CHECK(t_sh("%s --model %s --threads 3 --batch 7 a40.mmp -o o40b.mmp", embed, mnv2) == 0);
    CHECK(t_sh("%s --model %s --threads 2 a40.mmp -o o40c.mmp", embed, mnv2) == 0);
    CHECK(read_emb("o40a.mmp", e1, 1 << 16, &dim, NULL, NULL) == 40);
    CHECK(read_emb("o40b.mmp", e2, 1 << 16, &dim, NULL, NULL) == 40);
    CHECK(!memcmp(e1, e2, sizeof(float) * 40 * 1280));
    CHECK(read_emb("o40c.mmp", e2, 1 << 16, &dim, NULL, NULL) == 40);
    CHECK(!memcmp(e1, e2, sizeof(float) * 40 * 1280));
    for (int i = 0; i < 40; i++) compare(e1 + (size_t)i * 1280, mmp_st_get(&a.st, "pool"), i % 3, 1, 1e-4, i ? NULL : "mnv2 pool, 40 records");
    /* logits as f16, stdin/stdout */
    CHECK(t_sh("%s --model %s --layer logits --dtype f16 < a.mmp > lo.mmp", embed, mnv2) == 0);
    CHECK(read_emb("lo.mmp", e1, 1 << 16, &dim, &h, NULL) == 3 && dim == 10);
    CHECK(mmp_header_field(&h, "embedding")->dtype == MMP_F16);
    CHECK(!strcmp(mmp_meta_get(&h.meta, "embed.dtype"), "f16"));
    mmp_header_free(&h);
    compare(e1, mmp_st_get(&a.st, "logits"), 0, 3, 1e-3, "mnv2 logits f16");
    /* block, flattened, --keep */
    CHECK(t_sh("%s --model %s --layer features.13:flat --keep a.mmp -o fl.mmp", embed, mnv2) == 0);
    CHECK(read_emb("fl.mmp", e1, 1 << 16, &dim, &h, NULL) == 3 && dim == 384);
    CHECK(mmp_header_field(&h, "image") != NULL);
    mmp_header_free(&h);
    compare(e1, mmp_st_get(&a.st, "features.13.flat"), 0, 3, 1e-4, "mnv2 features.13:flat");
    /* the same block as a token sequence [h*w, C]: torch's x.flatten(2).transpose(1, 2) */
    CHECK(t_sh("%s --model %s --layer features.13:tokens a.mmp -o tk.mmp", embed, mnv2) == 0);
    {
        char terr[512];
        mmp_reader *tr = mmp_reader_open("tk.mmp", terr, sizeof terr);
        CHECKF(tr != NULL, "%s", terr);
        const mmp_schema_field *tf = tr ? mmp_header_field(mmp_reader_header(tr), "embedding") : NULL;
        CHECK(tf && tf->ndim == 2 && tf->shape[0] * tf->shape[1] == 384);
        const mmp_tensor *ft = mmp_st_get(&a.st, "features.13.flat");
        mmp_record tk;
        mmp_record_init(&tk);
        int k = 0;
        double dm = 0;
        while (tr && tf && mmp_reader_next(tr, &tk) == 1) {
            const mmp_tensor *t = mmp_record_cget(&tk, "embedding");
            CHECK(t && t->ndim == 2 && t->shape[0] == tf->shape[0] && t->shape[1] == tf->shape[1]);
            int64_t HW = tf->shape[0], C = tf->shape[1];
            const float *want = (const float *)ft->data + (size_t)k * HW * C, *got = t->data;
            for (int64_t p = 0; p < HW; p++)
                for (int64_t ch = 0; ch < C; ch++) {
                    double d = fabs((double)got[p * C + ch] - want[ch * HW + p]);
                    dm = d > dm || d != d ? (d != d ? INFINITY : d) : dm;
                }
            k++;
            mmp_record_clear(&tk);
        }
        CHECKF(k == 3 && dm <= 1e-4, "features.13:tokens: %d records, max err %.3g", k, dm);
        if (tr) mmp_reader_close(tr);
    }
    /* ResNet */
    CHECK(t_sh("%s --model %s --layer layer3 r.mmp -o r3.mmp", embed, r18) == 0);
    CHECK(read_emb("r3.mmp", e1, 1 << 16, &dim, NULL, NULL) == 3 && dim == 32);
    compare(e1, mmp_st_get(&r.st, "layer3"), 0, 3, 1e-4, "resnet18 layer3 33x47");
    /* variable sizes: 64x64 and 33x47 interleaved */
    CHECK(t_sh("%s --model %s --batch 4 ac.mmp -o ac_out.mmp", embed, mnv2) == 0);
    CHECK(read_emb("ac_out.mmp", e1, 1 << 16, &dim, &h, NULL) == 6 && dim == 1280);
    CHECK(!strcmp(mmp_meta_get(&h.meta, "embed.size"), "any"));
    mmp_header_free(&h);
    for (int i = 0; i < 6; i++)
        compare(e1 + (size_t)i * 1280, mmp_st_get(i % 2 ? &c.st : &a.st, "pool"), i / 2, 1, 1e-4,
                i % 2 ? "mnv2 pool 33x47 (mixed sizes)" : "mnv2 pool 64x64 (mixed sizes)");
    /* f32 [3,H,W] input normalized like the model: same result */
    float mean[3] = {0.5f, 0.4f, 0.3f}, std[3] = {0.25f, 0.2f, 0.3f};
    write_f32("f.mmp", &a, mean, std, "0.5,0.4,0.3", "0.25,0.2,0.3");
    CHECK(t_sh("%s --model %s f.mmp -o f_out.mmp", embed, mnv2) == 0);
    CHECK(read_emb("f_out.mmp", e2, 1 << 16, &dim, NULL, NULL) == 3);
    CHECK(read_emb("out.mmp", e1, 1 << 16, &dim, NULL, NULL) == 3);
    CHECK(!memcmp(e1, e2, sizeof(float) * 3 * 1280));
    /* ... normalized differently: refused, unless --allow-mixed */
    float m2[3] = {0.485f, 0.456f, 0.406f}, s2[3] = {0.229f, 0.224f, 0.225f};
    write_f32("g.mmp", &a, m2, s2, "0.485,0.456,0.406", "0.229,0.224,0.225");
    CHECK(t_sh("%s --model %s g.mmp -o g_out.mmp 2> g.err", embed, mnv2) == 1);
    CHECK(t_sh("grep -q 'mmp-embed: .*g.mmp: images normalized with mean 0.485,0.456,0.406.*--allow-mixed' g.err") == 0);
    CHECK(t_sh("%s --model %s --allow-mixed g.mmp -o g_out.mmp 2> g.err", embed, mnv2) == 0);
    CHECK(read_emb("g_out.mmp", e1, 1 << 16, &dim, &h, NULL) == 3);
    CHECK(strstr(mmp_meta_get(&h.meta, "provenance"), "mean=0.485,0.456,0.406:std=0.229,0.224,0.225") != NULL);
    mmp_header_free(&h);
    /* refusals: one line, non-zero exit */
    CHECK(t_sh("%s --model nonexistent.safetensors a.mmp > /dev/null 2> e.err", embed) == 1);
    CHECK(t_sh("%s --model %s --layer layer9 a.mmp > /dev/null 2> e.err", embed, mnv2) == 1);
    CHECK(t_sh("grep -q 'unknown --layer layer9' e.err && test $(wc -l < e.err) = 1") == 0);
    CHECK(t_sh("%s --model %s --size 96 a.mmp > /dev/null 2> e.err", embed, mnv2) == 1);
    CHECK(t_sh("%s --model %s --arch resnet50 a.mmp > /dev/null 2> e.err", embed, mnv2) == 1);
    CHECK(t_sh("%s --model %s --max-pixels 4095 a.mmp > /dev/null 2> e.err", embed, mnv2) == 1);
    CHECK(t_sh("grep -q 'a.mmp: record 1: image 64x64 has more than --max-pixels 4095' e.err") == 0);
    CHECK(t_sh("%s --model %s --max-pixels 4096 a.mmp > /dev/null", embed, mnv2) == 0);
    CHECK(t_sh("%s --model %s out.mmp > /dev/null 2> e.err", embed, mnv2) == 1); /* no image field */
    CHECK(t_sh("grep -q 'no \"image\" field' e.err") == 0);
    CHECK(t_sh("head -c 1000 a.mmp | %s --model %s > /dev/null 2> e.err", embed, mnv2) != 0); /* truncated */
    CHECK(t_sh("%s --model %s a.mmp --dtype f64 > /dev/null 2> e.err", embed, mnv2) == 1);
    mmp_st_close(&a.st);
    mmp_st_close(&c.st);
    mmp_st_close(&r.st);
    free(mnv2);
    free(r18);
    TEST_END();
}
