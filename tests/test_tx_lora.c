/* LoRA on the transformer engine (tx/lora.h) and PEFT adapters (tx/peft.h)
 * against peft 0.4.0: tests/fixtures/gen_lora.py's random adapters over the
 * tiny ViT, CLIP and BERT fixtures with the PeftModel's outputs (within 1e-4
 * of the reference's largest magnitude); the op pair against torch autograd
 * and finite differences; merged weights against base + adapter; the adapter
 * written back; bad adapters one line each. */
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmp.h"
#include "st_testlib.h"
#include "testlib.h"
#include "text/bert.h"
#include "tx/model.h"
#include "tx/peft.h"

#define TOL 1e-4

static double worst = 0;
static char tmpdir[1024];

static float *ref_f32(const mmp_safetensors *r, const char *name, size_t *n) { return t_st_f32(r, name, n, 1); }

static double compare(const char *what, const float *got, const float *want, size_t n, double tol) {
    double dm = 0, wm = 0;
    size_t where = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (d > dm || d != d) dm = d != d ? INFINITY : d, where = i;
        if (fabs(want[i]) > wm) wm = fabs(want[i]);
    }
    double rel = dm / (wm > 0 ? wm : 1);
    if (tol == TOL && rel > worst) worst = rel;
    printf("  %-28s max err %.3g (rel %.3g of %.3g)\n", what, dm, rel, wm);
    CHECKF(rel <= tol, "%s: element %zu is %.9g, expected %.9g (rel error %.3g)", what, where, n ? got[where] : 0,
           n ? want[where] : 0, rel);
    return rel;
}

/* ---- the op pair ---- */

static void op_vs_torch(void) {
    mmp_safetensors r;
    mmp_st_open_or_die(&r, t_root_path("tests/fixtures/lora/op.safetensors"));
    const mmp_tensor *tx = mmp_st_get(&r, "x"), *tA = mmp_st_get(&r, "A"), *tB = mmp_st_get(&r, "B");
    const int N = (int)tx->shape[0], IC = (int)tx->shape[1], R = (int)tA->shape[0], OC = (int)tB->shape[0];
    float *x = ref_f32(&r, "x", NULL), *A = ref_f32(&r, "A", NULL), *B = ref_f32(&r, "B", NULL),
          *mask = ref_f32(&r, "mask", NULL), *dy = ref_f32(&r, "dy", NULL), *sc = ref_f32(&r, "scale", NULL),
          *y = ref_f32(&r, "y", NULL), *dx = ref_f32(&r, "dx", NULL), *dA = ref_f32(&r, "dA", NULL),
          *dB = ref_f32(&r, "dB", NULL);
    mmp_tx_lora a = {.r = R, .IC = IC, .OC = OC, .scale = sc[0], .A = A, .B = B};
    float *gy = calloc((size_t)N * OC, 4), *u = calloc((size_t)N * R, 4), *gdx = calloc((size_t)N * IC, 4),
          *gdA = calloc((size_t)R * IC, 4), *gdB = calloc((size_t)OC * R, 4);
    printf("op vs torch autograd (dropout mask, scale %g):\n", sc[0]);
    mmp_tx_lora_fwd(gy, OC, u, x, IC, mask, &a, N);
    compare("y", gy, y, (size_t)N * OC, 1e-5);
    mmp_tx_lora_bwd(gdx, IC, gdA, gdB, dy, OC, x, mask, u, &a, N);
    compare("dx", gdx, dx, (size_t)N * IC, 1e-5);
    compare("dA", gdA, dA, (size_t)R * IC, 1e-5);
    compare("dB", gdB, dB, (size_t)OC * R, 1e-5);
    /* finite differences of L = sum(dy .* y) (bilinear: central differences are exact up to rounding) */
    double fdmax = 0;
    float *ps[3] = {A, B, x}, *gs[3] = {gdA, gdB, gdx};
    size_t ns[3] = {(size_t)R * IC, (size_t)OC * R, (size_t)N * IC};
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < ns[k]; i += 5) {
            double L[2];
            float keep = ps[k][i];
            for (int s = 0; s < 2; s++) {
                ps[k][i] = keep + (s ? -1e-2f : 1e-2f);
                memset(gy, 0, (size_t)N * OC * 4);
                mmp_tx_lora_fwd(gy, OC, NULL, x, IC, mask, &a, N);
                L[s] = 0;
                for (size_t j = 0; j < (size_t)N * OC; j++) L[s] += (double)dy[j] * gy[j];
            }
            ps[k][i] = keep;
            double fd = (L[0] - L[1]) / (2e-2 * 1.0), d = fabs(fd - gs[k][i]) / (1 + fabs(fd));
            if (d > fdmax) fdmax = d;
        }
    printf("  finite differences           max rel err %.3g\n", fdmax);
    CHECKF(fdmax < 2e-3, "finite differences differ by %.3g", fdmax);
    /* accumulation: a second backward adds the same again */
    mmp_tx_lora_bwd(NULL, IC, NULL, gdB, dy, OC, x, mask, u, &a, N);
    for (size_t i = 0; i < (size_t)OC * R; i++) gdB[i] *= 0.5f;
    compare("dB accumulated twice / 2", gdB, dB, (size_t)OC * R, 1e-5);
    /* the dropout mask: deterministic, 0 or 1/(1-p), about p zeros */
    float m1[4000], m2[4000];
    mmp_tx_lora_dropout_mask(m1, 4000, 0.25f, 7);
    mmp_tx_lora_dropout_mask(m2, 4000, 0.25f, 7);
    int zeros = 0, okv = 1;
    for (int i = 0; i < 4000; i++) {
        zeros += m1[i] == 0;
        okv &= m1[i] == 0 || fabsf(m1[i] - 1 / 0.75f) < 1e-7f;
    }
    CHECK(!memcmp(m1, m2, sizeof m1) && okv && zeros > 850 && zeros < 1150);
    float *ptrs[] = {x, A, B, mask, dy, sc, y, dx, dA, dB, gy, u, gdx, gdA, gdB};
    for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++) free(ptrs[i]);
    mmp_st_close(&r);
}

/* ---- models ---- */

static mmp_lora *load_adapter(const char *dir, const char *base) {
    char err[1024] = "";
    mmp_lora *a = mmp_lora_load(dir, base, NULL, err, sizeof err);
    CHECKF(a, "%s", err);
    if (!a) exit(1);
    return a;
}

static void vit(void) {
    const char *base = t_root_path("tests/fixtures/tx_models/vit_hf/model.safetensors");
    const char *ad = t_root_path("tests/fixtures/lora/vit");
    char err[1024] = "";
    mmp_tx_model *m = mmp_tx_model_load(t_root_path("tests/fixtures/tx_models/vit_hf"), err, sizeof err);
    CHECKF(m, "%s", err);
    mmp_safetensors r;
    char rp[2048];
    snprintf(rp, sizeof rp, "%s/ref.safetensors", ad);
    mmp_st_open_or_die(&r, rp);
    size_t ni, np_, nq;
    float *imgs = ref_f32(&r, "images", &ni), *pooled = ref_f32(&r, "pooled", &np_), *pooler = ref_f32(&r, "pooler", &nq);
    const int n = 2, H = 40, W = 40, C = 48;
    float *base_out = calloc(np_, 4), *out = calloc(np_, 4), *out2 = calloc(np_, 4);
    CHECK(!mmp_tx_image_embed(m, imgs, n, H, W, MMP_TX_OUT_POOLED, base_out, NULL, err, sizeof err));
    mmp_lora *a = load_adapter(ad, base);
    CHECK(mmp_lora_nsites(a) == 2 * 6 && mmp_lora_rank(a) == 4 && mmp_lora_alpha(a) == 8);
    CHECK(!mmp_lora_attach(a, 0, &m->vision->enc, err, sizeof err));
    printf("vit-hf + adapter vs PeftModel:\n");
    CHECK(!mmp_tx_image_embed(m, imgs, n, H, W, MMP_TX_OUT_POOLED, out, NULL, err, sizeof err));
    compare("pooled", out, pooled, np_, TOL);
    CHECK(!mmp_tx_image_embed(m, imgs, n, H, W, MMP_TX_OUT_POOLER, out2, NULL, err, sizeof err));
    compare("pooler", out2, pooler, nq, TOL);
    int T = mmp_tx_image_tokens(m, H, W);
    size_t nh;
    float *hid = ref_f32(&r, "hidden", &nh), *gh = calloc(nh, 4), *o3 = calloc(np_, 4);
    CHECK(nh == (size_t)3 * n * T * C);
    CHECK(!mmp_tx_image_embed(m, imgs, n, H, W, MMP_TX_OUT_POOLED, o3, gh, err, sizeof err));
    compare("hidden states", gh, hid, nh, TOL);
    /* the adapter matters, and without it the outputs are the base's bits again */
    double dd = 0;
    for (size_t i = 0; i < np_; i++) dd = fmax(dd, fabs(out[i] - base_out[i]));
    CHECKF(dd > 0.05, "the adapter changes the output by only %g", dd);
    for (int l = 0; l < m->vision->enc.layers; l++) m->vision->enc.block[l].lora = NULL;
    CHECK(!mmp_tx_image_embed(m, imgs, n, H, W, MMP_TX_OUT_POOLED, o3, NULL, err, sizeof err));
    CHECK(!memcmp(o3, base_out, np_ * 4));
    /* threads: the same bits */
    CHECK(!mmp_lora_attach(a, 0, &m->vision->enc, err, sizeof err));
    mmp_tx_model_set_threads(m, 3);
    CHECK(!mmp_tx_image_embed(m, imgs, n, H, W, MMP_TX_OUT_POOLED, o3, NULL, err, sizeof err));
    CHECK(!memcmp(o3, out, np_ * 4));
    mmp_tx_model_set_threads(m, 1);

    /* merge: a plain backbone with the same outputs */
    char d[1200], p[2048];
    snprintf(d, sizeof d, "%s/merged", tmpdir);
    mkdir(d, 0777);
    CHECK(!t_sh("cp '%s/config.json' '%s/'", t_root_path("tests/fixtures/tx_models/vit_hf"), d));
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    CHECK(!mmp_lora_merge_write(a, p, err, sizeof err));
    mmp_tx_model *mm = mmp_tx_model_load(d, err, sizeof err);
    CHECKF(mm, "%s", err);
    if (mm) {
        CHECK(!mmp_tx_image_embed(mm, imgs, n, H, W, MMP_TX_OUT_POOLED, o3, NULL, err, sizeof err));
        compare("merged vs base + adapter", o3, out, np_, 1e-5);
        compare("merged vs PeftModel", o3, pooled, np_, TOL);
        mmp_tx_model_free(mm);
    }
    /* written back (with the base's checksum): the same tensors, loads, the same bits */
    snprintf(d, sizeof d, "%s/written", tmpdir);
    CHECK(!mmp_lora_write(a, d, err, sizeof err));
    mmp_lora *b = load_adapter(d, base);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", d);
    mmp_safetensors w;
    mmp_st_open_or_die(&w, p);
    char sha[65];
    mmp_sha256_file(base, sha);
    const char *rec = mmp_meta_get(&w.meta, MMP_LORA_SHA_KEY);
    CHECKF(rec && !strcmp(rec, sha), "the written adapter records %s, the base is %s", rec ? rec : "nothing", sha);
    CHECK(mmp_st_get(&w, "base_model.model.encoder.layer.1.attention.attention.value.lora_B.weight"));
    mmp_st_close(&w);
    CHECK(!mmp_lora_attach(b, 0, &m->vision->enc, err, sizeof err));
    CHECK(!mmp_tx_image_embed(m, imgs, n, H, W, MMP_TX_OUT_POOLED, o3, NULL, err, sizeof err));
    CHECK(!memcmp(o3, out, np_ * 4));
    mmp_lora_free(b);
    mmp_tx_model_free(m);
    mmp_lora_free(a);
    free(imgs), free(pooled), free(pooler), free(base_out), free(out), free(out2), free(hid), free(gh), free(o3);
    mmp_st_close(&r);
}

static void clip(void) {
    const char *dir = t_root_path("tests/fixtures/tx_models/clip_hf");
    char base[2048], err[1024] = "", rp[2048];
    snprintf(base, sizeof base, "%s/model.safetensors", dir);
    mmp_tx_model *m = mmp_tx_model_load(dir, err, sizeof err);
    CHECKF(m, "%s", err);
    mmp_lora *a = load_adapter(t_root_path("tests/fixtures/lora/clip"), base);
    CHECK(mmp_lora_has_tower(a, 0) && mmp_lora_has_tower(a, 1));
    CHECK(!mmp_lora_attach(a, 0, &m->vision->enc, err, sizeof err));
    CHECK(!mmp_lora_attach(a, 1, &m->text->enc, err, sizeof err));
    snprintf(rp, sizeof rp, "%s/ref.safetensors", t_root_path("tests/fixtures/lora/clip"));
    mmp_safetensors r;
    mmp_st_open_or_die(&r, rp);
    size_t ne, nt, nl, nid;
    float *imgs = ref_f32(&r, "images", NULL), *emb = ref_f32(&r, "embed", &ne), *temb = ref_f32(&r, "text_embed", &nt);
    const mmp_tensor *tid = mmp_st_get(&r, "ids"), *tl = mmp_st_get(&r, "lens");
    nid = (size_t)tid->shape[0], nl = (size_t)tl->shape[0];
    int lens[16];
    for (size_t i = 0; i < nl; i++) lens[i] = ((const int32_t *)tl->data)[i];
    float *o = calloc(ne, 4), *ot = calloc(nt, 4);
    printf("clip-hf + adapter (both towers, a regular expression) vs PeftModel:\n");
    CHECK(!mmp_tx_image_embed(m, imgs, 2, 40, 40, MMP_TX_OUT_EMBED, o, NULL, err, sizeof err));
    compare("image embeds", o, emb, ne, TOL);
    CHECK(!mmp_tx_text_embed(m, (const int32_t *)tid->data, lens, (int)nl, MMP_TX_OUT_EMBED, ot, NULL, err, sizeof err));
    compare("text embeds", ot, temb, nt, TOL);
    (void)nid;
    free(imgs), free(emb), free(temb), free(o), free(ot);
    mmp_st_close(&r);
    mmp_tx_model_free(m);
    mmp_lora_free(a);
}

/* a text-only CLIP (CLIPTextModelWithProjection) with every linear of its blocks adapted */
static void clip_text(void) {
    const char *dir = t_root_path("tests/fixtures/tx_models/clip_text_hf");
    char base[2048], err[1024] = "", rp[2100], ad[2048];
    snprintf(base, sizeof base, "%s/model.safetensors", dir);
    snprintf(ad, sizeof ad, "%s", t_root_path("tests/fixtures/lora/clip_text"));
    mmp_tx_model *m = mmp_tx_model_load(dir, err, sizeof err);
    CHECKF(m, "%s", err);
    if (!m) return;
    mmp_lora *a = mmp_lora_attach_model(m, ad, err, sizeof err);
    CHECKF(a, "%s", err);
    if (!a) exit(1);
    CHECK(!mmp_lora_has_tower(a, 0) && mmp_lora_nsites(a) == 2 * 6);
    snprintf(rp, sizeof rp, "%s/ref.safetensors", ad);
    mmp_safetensors r;
    mmp_st_open_or_die(&r, rp);
    size_t nt;
    float *temb = ref_f32(&r, "text_embed", &nt), *ot = calloc(nt, 4);
    const mmp_tensor *tid = mmp_st_get(&r, "ids"), *tl = mmp_st_get(&r, "lens");
    int lens[16], nl = (int)tl->shape[0];
    for (int i = 0; i < nl; i++) lens[i] = ((const int32_t *)tl->data)[i];
    printf("clip-hf text tower (CLIPTextModelWithProjection) + adapter vs PeftModel:\n");
    CHECK(!mmp_tx_text_embed(m, (const int32_t *)tid->data, lens, nl, MMP_TX_OUT_EMBED, ot, NULL, err, sizeof err));
    compare("text embeds", ot, temb, nt, TOL);
    free(temb), free(ot);
    mmp_st_close(&r);
    mmp_tx_model_free(m);
    mmp_lora_free(a);
}

static void bert(void) {
    const char *base = t_root_path("tests/fixtures/text/tiny_bert/model.safetensors");
    char err[1024] = "", rp[2048];
    mmp_bert m;
    CHECKF(!mmp_bert_load(&m, base, 0, err, sizeof err), "%s", err);
    mmp_lora *a = mmp_lora_load(t_root_path("tests/fixtures/lora/bert"), base, m.sha256, err, sizeof err);
    CHECKF(a, "%s", err);
    if (!a) exit(1);
    CHECK(!mmp_lora_attach(a, 0, (mmp_tx_encoder *)m.tx, err, sizeof err));
    snprintf(rp, sizeof rp, "%s/ref.safetensors", t_root_path("tests/fixtures/lora/bert"));
    mmp_safetensors r;
    mmp_st_open_or_die(&r, rp);
    size_t nh;
    float *hid = ref_f32(&r, "hidden", &nh), *o = calloc(nh, 4);
    const mmp_tensor *tid = mmp_st_get(&r, "ids"), *tl = mmp_st_get(&r, "lens");
    int lens[16], nl = (int)tl->shape[0];
    for (int i = 0; i < nl; i++) lens[i] = ((const int32_t *)tl->data)[i];
    printf("BERT + adapter vs PeftModel:\n");
    mmp_bert_forward(&m, (const int32_t *)tid->data, lens, nl, o);
    compare("last_hidden_state", o, hid, nh, TOL);
    free(hid), free(o);
    mmp_st_close(&r);
    mmp_lora_free(a);
    mmp_bert_free(&m);
}

/* ---- bad adapters ---- */

static void expect_fail(const char *dir, const char *base, const char *want1, const char *want2) {
    char err[1024] = "";
    mmp_lora *a = mmp_lora_load(dir, base, NULL, err, sizeof err);
    CHECKF(!a, "%s: loaded", dir);
    mmp_lora_free(a);
    printf("  refused: %s\n", err);
    CHECKF(!strchr(err, '\n'), "more than one line: %s", err);
    CHECKF(strstr(err, want1), "'%s' does not say '%s'", err, want1);
    CHECKF(!want2 || strstr(err, want2), "'%s' does not say '%s'", err, want2);
}

/* a copy of the vit adapter in tmpdir/NAME with its config's text edited by sed EXPR (NULL: as is) */
static char *variant(const char *name, const char *sed) {
    static char d[2048];
    snprintf(d, sizeof d, "%s/%s", tmpdir, name);
    CHECK(!t_sh("mkdir -p '%s' && cp '%s'/adapter_config.json '%s'/adapter_model.safetensors '%s'/", d,
                t_root_path("tests/fixtures/lora/vit"), t_root_path("tests/fixtures/lora/vit"), d));
    if (sed) CHECK(!t_sh("sed -i '%s' '%s/adapter_config.json'", sed, d));
    return d;
}

static void bad_inputs(void) {
    printf("bad adapters:\n");
    char vitb[2048], vitad[2048], clipb[2048], other[2048];
    snprintf(vitb, sizeof vitb, "%s", t_root_path("tests/fixtures/tx_models/vit_hf/model.safetensors"));
    snprintf(vitad, sizeof vitad, "%s", t_root_path("tests/fixtures/lora/vit"));
    snprintf(clipb, sizeof clipb, "%s", t_root_path("tests/fixtures/tx_models/clip_hf/model.safetensors"));
    snprintf(other, sizeof other, "%s", t_root_path("tests/fixtures/tx_models/vit_hf_cls/model.safetensors"));
    char *d = variant("nomatch", "s/\"intermediate.dense\"/\"nosuch_proj\"/; s/\"query\",//; s/\"key\",//; s/\"value\",//; s/\"output.dense\",//");
    expect_fail(d, vitb, "matches no module", "nosuch_proj");
    d = variant("regex", "s/\"r\": 4/\"r\": 4/; /target_modules/,/]/c\\  \"target_modules\": \"nothing.*here\",");
    expect_fail(d, vitb, "matches no module", "nothing.*here");
    d = variant("pooler", "s/\"intermediate.dense\"/\"dense\"/");
    expect_fail(d, vitb, "pooler.dense", "does not adapt");
    d = variant("bias", "s/\"bias\": \"none\"/\"bias\": \"all\"/");
    expect_fail(d, vitb, "bias \"all\"", "adapter_config.json");
    d = variant("rank", "s/\"r\": 4/\"r\": 3/");
    expect_fail(d, vitb, "lora_A.weight", "expected");
    d = variant("fewer", "s/\"key\",//");
    expect_fail(d, vitb, "key.lora_A.weight", "belongs to no target module");
    d = variant("bin", NULL);
    CHECK(!t_sh("mv '%s/adapter_model.safetensors' '%s/adapter_model.bin'", d, d));
    expect_fail(d, vitb, "safe_serialization", "adapter_model.bin");
    expect_fail(t_root_path("tests/fixtures/lora/nosuch"), vitb, "not an adapter folder", NULL);
    /* the vit adapter over CLIP: its modules are not there */
    expect_fail(vitad, clipb, "matches no module", NULL);
    /* an adapter recorded for another base: both checksums named */
    char err[1024] = "", w[2048], sha[65], sha2[65];
    mmp_lora *a = load_adapter(vitad, vitb);
    snprintf(w, sizeof w, "%s/stamped", tmpdir);
    CHECK(!mmp_lora_write(a, w, err, sizeof err));
    mmp_lora_free(a);
    mmp_sha256_file(vitb, sha);
    mmp_sha256_file(other, sha2);
    expect_fail(w, other, sha, sha2);
}

/* mmp-eval's check with a CLIP model: image and text through the same adapter */
static void prov_check(void) {
    char msg[512];
    const char *base = "clip-hf-vit-w48:proj:size=40x40:sha256=ab:mean=0,0,0:std=1,1,1";
    const char *img = "clip-hf-vit-w48:proj:size=40x40:sha256=ab:mean=0,0,0:std=1,1,1:lora=cd:r=4:alpha=8:modules=8";
    const char *txt = "clip-hf-text:pooling=eos:output=proj:sha256=ab:lora=cd:r=4:alpha=8:modules=8";
    const char *txt2 = "clip-hf-text:pooling=eos:output=proj:sha256=ab:lora=ef:r=4:alpha=8:modules=8";
    CHECK(mmp_lora_prov_check(img, txt, "i.mmp", "t.mmp", 0, msg, sizeof msg) == 0);
    CHECK(mmp_lora_prov_check(base, "clip-hf-text:sha256=ab", "i.mmp", "t.mmp", 0, msg, sizeof msg) == 0);
    CHECK(mmp_lora_prov_check(img, "clip-hf-text:sha256=ab", "i.mmp", "t.mmp", 0, msg, sizeof msg) == -1);
    printf("  refused: %s\n", msg);
    CHECK(strstr(msg, "lora=cd") && strstr(msg, "no adapter") && strstr(msg, "t.mmp"));
    CHECK(mmp_lora_prov_check(img, txt2, "i.mmp", "t.mmp", 0, msg, sizeof msg) == -1 && strstr(msg, "lora=ef"));
    CHECK(mmp_lora_prov_check(img, txt2, "i.mmp", "t.mmp", 1, msg, sizeof msg) == 1);
}

int main(void) {
    const char *tmp = getenv("MMP_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s/lora.XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    op_vs_torch();
    vit();
    clip();
    clip_text();
    bert();
    bad_inputs();
    prov_check();
    printf("worst relative error vs peft %.3g\n", worst);
    t_sh("rm -rf '%s'", tmpdir);
    TEST_END();
}
