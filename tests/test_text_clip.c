/* mmp-embed-text's CLIP path (text/embed.h with a CLIP checkpoint): text ->
 * CLIP's BPE tokenizer -> text tower -> embedding, against the libraries'
 * outputs for real strings (tests/fixtures/tx_models/clip_text_hf: HF
 * CLIPTextModelWithProjection, context 77; clip_text_oc: open_clip CLIP,
 * context 16, so the long text is truncated; both with CLIP's 49408-token
 * vocabulary, tokenized by open_clip's tokenize(); written by
 * tests/fixtures/gen_tx_models.py). Also: projected, pooled and normalized
 * outputs; bit-identical for any batch size and thread count; the prompt
 * ensemble's records and header; provenance; the load errors. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "stream_testlib.h"
#include "st_testlib.h"
#include "testlib.h"
#include "text/embed.h"

#define TOL 1e-4
#define MAXT 16

static double worst = 0;

static float *ref_f32(const mmp_safetensors *r, const char *name, size_t *n) { return t_st_f32(r, name, n, 1); }

/* per text: max |got - want| / max |want| */
static void compare(const char *model, const char *what, const float *got, const float *want, int n, int D) {
    double w = 0;
    for (int i = 0; i < n; i++) {
        double dm = 0, wm = 0;
        for (int j = 0; j < D; j++) {
            double d = fabs((double)got[i * D + j] - want[i * D + j]);
            if (d > dm || d != d) dm = d != d ? INFINITY : d;
            if (fabs(want[i * D + j]) > wm) wm = fabs(want[i * D + j]);
        }
        double rel = dm / (wm > 0 ? wm : 1);
        CHECKF(rel <= TOL, "%s %s: text %d: rel error %.3g", model, what, i, rel);
        if (rel > w) w = rel;
    }
    if (w > worst) worst = w;
    printf("  %-14s %-10s max rel err %.3g\n", model, what, w);
}

/* texts.txt: one hex-encoded UTF-8 text a line */
static int read_texts(const char *dir, char **t, size_t *lens) {
    char path[4200], line[8192];
    snprintf(path, sizeof path, "%s/texts.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0;
    while (n < MAXT && fgets(line, sizeof line, f)) {
        size_t L = strcspn(line, "\r\n") / 2;
        t[n] = malloc(L + 1);
        for (size_t i = 0; i < L; i++) {
            unsigned v;
            sscanf(line + 2 * i, "%2x", &v);
            t[n][i] = (char)v;
        }
        t[n][L] = 0;
        lens[n++] = L;
    }
    fclose(f);
    return n;
}

static void check_fixture(const char *name, const char *family, int want_ctx) {
    char dir[4096], err[1024];
    snprintf(dir, sizeof dir, "%s", t_root_path(name));
    const char *gz = t_root_path("tests/fixtures/clip_tok/bpe_simple_vocab_16e6.txt.gz");
    char *texts[MAXT];
    size_t lens[MAXT];
    int n = read_texts(dir, texts, lens);
    CHECKF(n == 8, "%s: %d texts", name, n);
    if (n <= 0) return;
    char refp[4200];
    snprintf(refp, sizeof refp, "%s/ref.safetensors", dir);
    mmp_safetensors ref;
    mmp_st_open_or_die(&ref, refp);

    mmp_text_encoder_opts eo = {.tokenizer = gz};
    mmp_text_encoder e, ep;
    if (mmp_text_encoder_load(&e, dir, &eo, err, sizeof err)) {
        CHECKF(0, "%s", err);
        return;
    }
    eo.pooled = 1;
    if (mmp_text_encoder_load(&ep, dir, &eo, err, sizeof err)) {
        CHECKF(0, "%s", err);
        return;
    }
    CHECK(e.clip && !e.bert && e.context == want_ctx && e.max_length == want_ctx && e.normalize == 0);
    CHECK(!strcmp(mmp_tx_family_name(e.clip->family), family));
    char arch[128];
    snprintf(arch, sizeof arch, "%s-text-L%d-C8", family, e.clip->text->enc.layers);
    CHECKF(!strcmp(e.arch, arch), "arch %s, want %s", e.arch, arch);

    /* the tokens: open_clip's tokenize() with the model's context */
    const mmp_tensor *ids = mmp_st_get(&ref, "ids");
    CHECK(ids && ids->ndim == 2 && ids->shape[0] == n && ids->shape[1] == want_ctx);
    int32_t tok[77];
    for (int i = 0; ids && i < n; i++) {
        int k = mmp_bpe_encode(e.bpe, texts[i], lens[i], e.max_length, MMP_UTF8_ERROR, tok, err, sizeof err);
        CHECKF(k > 0 && !memcmp(tok, (const int32_t *)ids->data + (size_t)i * want_ctx, sizeof(int32_t) * want_ctx),
               "%s: text %d: tokens differ from open_clip's tokenize", name, i);
    }

    size_t ne, np;
    float *we = ref_f32(&ref, "text_embed", &ne), *wp = ref_f32(&ref, "text_pooled", &np);
    int D = e.dim, C = ep.dim;
    CHECK(ne == (size_t)n * D && np == (size_t)n * C && C == 8);
    float *got = calloc((size_t)n * (D > C ? D : C), sizeof(float));
    int bad = -1;
    CHECKF(mmp_text_encoder_embed(&e, (const char *const *)texts, lens, n, 0, 0, MMP_UTF8_ERROR, got, &bad, err,
                                  sizeof err) == 0,
           "%s", err);
    compare(name, "embed", got, we, n, D);
    CHECK(mmp_text_encoder_embed(&ep, (const char *const *)texts, lens, n, 0, 0, MMP_UTF8_ERROR, got, &bad, err,
                                 sizeof err) == 0);
    compare(name, "pooled", got, wp, n, C);
    /* normalized: F.normalize of the reference */
    CHECK(mmp_text_encoder_embed(&e, (const char *const *)texts, lens, n, 0, 1, MMP_UTF8_ERROR, got, &bad, err,
                                 sizeof err) == 0);
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < D; j++) s += (double)we[i * D + j] * we[i * D + j];
        for (int j = 0; j < D; j++) we[i * D + j] = (float)(we[i * D + j] / sqrt(s));
    }
    compare(name, "normalized", got, we, n, D);

    /* any batch size and thread count: the same bits */
    float *a = calloc((size_t)n * D, sizeof(float)), *b = calloc((size_t)n * D, sizeof(float));
    CHECK(mmp_text_embed_batches(&e, (const char *const *)texts, lens, n, 1, 1, e.max_length, 0, MMP_UTF8_ERROR, a,
                                 &bad, err, sizeof err) == 0);
    static const int bt[][2] = {{3, 2}, {8, 1}, {2, 3}, {5, 2}};
    for (int k = 0; k < 4; k++) {
        memset(b, 0, sizeof(float) * n * D);
        CHECK(mmp_text_embed_batches(&e, (const char *const *)texts, lens, n, bt[k][0], bt[k][1], e.max_length, 0,
                                     MMP_UTF8_ERROR, b, &bad, err, sizeof err) == 0);
        CHECKF(!memcmp(a, b, sizeof(float) * n * D), "%s: batch %d threads %d differ from batch 1", name, bt[k][0],
               bt[k][1]);
    }
    /* a shorter --max-length truncates as tokenize(context_length=...) does: end token last */
    {
        int k = mmp_bpe_encode(e.bpe, texts[7], lens[7], 5, MMP_UTF8_ERROR, tok, err, sizeof err);
        CHECK(k == 5 && tok[0] == 49406 && tok[4] == 49407);
        float one[64], trunc[64];
        const char *tt[1] = {texts[7]};
        CHECK(mmp_text_encoder_embed(&e, tt, lens + 7, 1, 5, 0, MMP_UTF8_ERROR, trunc, &bad, err, sizeof err) == 0);
        CHECK(mmp_tx_text_embed(e.clip, tok, &k, 1, MMP_TX_OUT_EMBED, one, NULL, err, sizeof err) == 0);
        CHECK(!memcmp(one, trunc, sizeof(float) * D));
    }
    /* invalid UTF-8: the text's index */
    {
        const char *tt[3] = {"ok", "fine", "bad \xff"};
        size_t tl[3] = {2, 4, 5};
        bad = -1;
        CHECK(mmp_text_embed_batches(&e, tt, tl, 3, 2, 2, e.max_length, 0, MMP_UTF8_ERROR, b, &bad, err, sizeof err) ==
              -1);
        CHECKF(bad == 2 && strstr(err, "invalid UTF-8"), "bad %d: %s", bad, err);
    }
    free(a), free(b), free(got), free(we), free(wp);
    for (int i = 0; i < n; i++) free(texts[i]);
    mmp_st_close(&ref);
    mmp_text_encoder_free(&e);
    mmp_text_encoder_free(&ep);
}

/* --lines with three templates on the open_clip fixture: records, header, provenance */
static void check_ensemble(void) {
    char err[1024];
    mmp_text_encoder_opts eo = {.tokenizer = t_root_path("tests/fixtures/clip_tok")};
    mmp_text_encoder e;
    if (mmp_text_encoder_load(&e, t_root_path("tests/fixtures/tx_models/clip_text_oc"), &eo, err, sizeof err)) {
        CHECKF(0, "%s", err);
        return;
    }
    CHECKF(!strcmp(e.tok_source, "bpe_simple_vocab_16e6.txt.gz"), "%s", e.tok_source);
    FILE *f = fopen("ens_lines.txt", "wb");
    fputs("cat\r\nbig dog\n", f);
    fclose(f);
    static const char *const tpls[] = {"a photo of a {}.", "{}", "a drawing of a {}"};
    mmp_text_lines tl;
    CHECKF(mmp_text_lines_read(&tl, "ens_lines.txt", tpls, 3, MMP_UTF8_ERROR, err, sizeof err) == 0, "%s", err);
    remove("ens_lines.txt");
    static const char *const want_ids[] = {"cat#0", "cat#1", "cat#2", "big dog#0", "big dog#1", "big dog#2"};
    static const char *const want_texts[] = {"a photo of a cat.", "cat", "a drawing of a cat",
                                             "a photo of a big dog.", "big dog", "a drawing of a big dog"};
    CHECK(tl.n == 6 && tl.nclasses == 2 && !strcmp(tl.classes[1], "big dog"));
    for (int i = 0; i < tl.n && i < 6; i++)
        CHECKF(!strcmp(tl.ids[i], want_ids[i]) && !strcmp(tl.texts[i], want_texts[i]) && tl.labels[i] == i / 3,
               "record %d: %s %s %d", i, tl.ids[i], tl.texts[i], tl.labels[i]);
    float want[6 * 64];
    size_t lens[6];
    for (int i = 0; i < 6; i++) lens[i] = strlen(want_texts[i]);
    int bad;
    CHECK(mmp_text_encoder_embed(&e, want_texts, lens, 6, 0, 1, MMP_UTF8_ERROR, want, &bad, err, sizeof err) == 0);

    mmp_text_embed_opts o = {.model = &e, .max_length = e.max_length, .normalize = 1, .utf8 = MMP_UTF8_ERROR,
                             .batch = 4, .threads = 2, .dtype = MMP_F32, .field = "text_embedding"};
    mmp_header oh;
    mmp_text_embed_header(&o, NULL, &tl, tpls, 3, &oh);
    mem out;
    mmp_writer *w = t_mem_writer(&out, "out.mmp", &oh);
    CHECKF(mmp_text_embed_stream(&o, NULL, &tl, "lines.txt", w, err, sizeof err) == 0, "%s", err);
    t_mem_close(&out, w);
    mmp_header_free(&oh);
    mmp_reader *r = mmp_reader_open_mem(out.buf, out.n, "out.mmp", err, sizeof err);
    CHECKF(r, "%s", err);
    if (r) {
        const mmp_header *h = mmp_reader_header(r);
        const mmp_meta *m = &h->meta;
        CHECK(h->nclasses == 2 && !strcmp(h->classes[0], "cat") && !strcmp(h->classes[1], "big dog"));
        const char *tm = mmp_meta_get(m, "text.template");
        CHECKF(tm && !strcmp(tm, "[\"a photo of a {}.\",\"{}\",\"a drawing of a {}\"]"), "%s", tm);
        CHECK(!strcmp(mmp_meta_get(m, "text.pooling"), "eos") && !strcmp(mmp_meta_get(m, "text.output"), "projection"));
        CHECK(!strcmp(mmp_meta_get(m, "text.context"), "16") && !strcmp(mmp_meta_get(m, "text.max_length"), "16"));
        CHECK(!strcmp(mmp_meta_get(m, "text.tokenizer"), "clip-bpe:vocab=49408:source=bpe_simple_vocab_16e6.txt.gz"));
        char prov[512];
        snprintf(prov, sizeof prov,
                 "clip-openclip-text-L1-C8:pooling=eos:output=projection:normalize=true:max_length=16:context=16:sha256=%s",
                 e.sha256);
        CHECKF(!strcmp(mmp_meta_get(m, "text_provenance"), prov), "%s", mmp_meta_get(m, "text_provenance"));
        CHECK(!strcmp(mmp_meta_get(m, "text.weights"), "open_clip_model.safetensors"));
        mmp_record rec;
        mmp_record_init(&rec);
        int i = 0;
        for (; mmp_reader_next(r, &rec) > 0; i++) {
            const mmp_tensor *t = mmp_record_cget(&rec, "text_embedding");
            CHECKF(i < 6 && !strcmp(rec.id, want_ids[i]) && rec.label == i / 3 && !strcmp(rec.text, want_texts[i]),
                   "record %d", i);
            CHECK(i < 6 && t && t->shape[0] == e.dim && !memcmp(t->data, want + i * e.dim, sizeof(float) * e.dim));
            mmp_record_clear(&rec);
        }
        CHECK(i == 6);
        mmp_reader_close(r);
    }
    free(out.buf);
    mmp_text_lines_free(&tl);
    mmp_text_encoder_free(&e);
}

static void check_load_errors(void) {
    char err[1024];
    mmp_text_encoder e;
    const char *oc = t_root_path("tests/fixtures/tx_models/clip_text_oc");
    /* no vocabulary beside an open_clip model: one line saying where to get it */
    CHECK(mmp_text_encoder_load(&e, oc, NULL, err, sizeof err) == -1);
    CHECKF(strstr(err, "no CLIP vocabulary beside the weights") && strstr(err, "bpe_simple_vocab_16e6.txt.gz") &&
               strstr(err, "--tokenizer") && !strchr(err, '\n'),
           "got: %s", err);
    mmp_text_encoder_opts o = {.heads = 4, .tokenizer = t_root_path("tests/fixtures/clip_tok")};
    CHECK(mmp_text_encoder_load(&e, oc, &o, err, sizeof err) == -1);
    CHECKF(strstr(err, "--heads is for BERT models"), "got: %s", err);
    o = (mmp_text_encoder_opts){.tokenizer = "no/such/vocab.json"};
    CHECK(mmp_text_encoder_load(&e, oc, &o, err, sizeof err) == -1);
    CHECKF(strstr(err, "no/such/vocab.json"), "got: %s", err);
    /* an image-only CLIP would have no text tower; a BERT model refuses the CLIP options */
    const char *bert = t_root_path("tests/fixtures/text/tiny_bert");
    CHECK(!mmp_text_is_clip(bert) && mmp_text_is_clip(oc) && mmp_text_is_clip(t_root_path("tests/fixtures/tx_models/clip_text_hf")));
    o = (mmp_text_encoder_opts){.pooled = 1};
    CHECK(mmp_text_encoder_load(&e, bert, &o, err, sizeof err) == -1);
    CHECKF(strstr(err, "--pooled is for CLIP models"), "got: %s", err);
    o = (mmp_text_encoder_opts){.tokenizer = "x"};
    CHECK(mmp_text_encoder_load(&e, bert, &o, err, sizeof err) == -1);
    CHECKF(strstr(err, "--tokenizer is for CLIP models"), "got: %s", err);
    /* a ViT checkpoint is not a CLIP text model */
    const char *vit = t_root_path("tests/fixtures/tx_models/vit_hf");
    CHECK(!mmp_text_is_clip(vit));
}

int main(void) {
    mmp_set_progname("test_text_clip");
    check_fixture("tests/fixtures/tx_models/clip_text_hf", "clip-hf", 77);
    check_fixture("tests/fixtures/tx_models/clip_text_oc", "clip-openclip", 16);
    check_ensemble();
    check_load_errors();
    printf("worst relative error %.3g (tolerance %g)\n", worst, TOL);
    TEST_END();
}
