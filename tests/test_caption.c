/* ClipCap captioning (train/caption_train.h) vs PyTorch
 * (tests/fixtures/gen_caption.py): ClipCap's MLP and TransformerMapper
 * (pooled, and on spatial tokens) in front of a tiny random transformers
 * GPT2LMHeadModel, 4 captions of different lengths: the NLL and every
 * trainable gradient within 1e-4 of each tensor's largest magnitude for the
 * decoder trained (all), frozen (head: ClipCap's only-prefix), LoRA (PEFT
 * 0.4 on c_attn) and with label smoothing 0.1; 3 AdamW steps within 1e-5;
 * 1 and 3 threads bit for bit; the scratch vocabulary (text/wordlevel.h)
 * against tokenizers' ids; the checkpoint tensors read back. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmp.h"
#include "st_testlib.h"
#include "testlib.h"
#include "text/wordlevel.h"
#include "train/caption_train.h"
#include "tx/gpt2.h"
#include "train/unfreeze.h"

static char FIX[900], TMP[1200];

/* a scratch file name under $MMP_TMP (tests/run.sh's folder of the test) or /tmp */
static const char *tmpfile_name(const char *base) {
    const char *d = getenv("MMP_TMP") ? getenv("MMP_TMP") : "/tmp";
    snprintf(TMP, sizeof TMP, "%s/test_caption.%d.%s", d, (int)getpid(), base);
    return TMP;
}

static double compare(const char *what, const float *got, const float *want, size_t n, double tol) {
    double dm = 0, wm = 0;
    size_t where = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= dm)) dm = d, where = i;
        if (fabs(want[i]) > wm) wm = fabs(want[i]);
    }
    double rel = dm / (wm > 1e-3 ? wm : 1e-3);
    CHECKF(rel <= tol, "%s: element %zu is %.9g, expected %.9g (rel error %.3g of %.3g)", what, where, n ? got[where] : 0,
           n ? want[where] : 0, rel, wm);
    return rel;
}

typedef struct {
    mmp_safetensors st;
    float *feat, *rows;
    int B, F, RD;
} fixture;

static void cfg_for(mmp_train_cfg *c, const char *kase, const char *mode) {
    char err[256];
    mmp_train_cfg_defaults(c);
    mmp_train_cfg_set(c, "head", "caption", err, sizeof err);
    mmp_train_cfg_set(c, "mapper", strcmp(kase, "mlp") ? "transformer" : "mlp", err, sizeof err);
    c->prefix_length = 3;
    c->mapper_layers = 2;
    snprintf(c->decoder, sizeof c->decoder, "%s/gpt2", FIX);
    snprintf(c->tokenizer, sizeof c->tokenizer, "%s/tokenizer.json", FIX);
    c->feat_dim = 12;
    c->feat_tokens = strcmp(kase, "tfsp") ? 0 : 3;
    c->max_length = 8;
    c->lora_rank = 2;
    c->lora_alpha = 4;
    if (mmp_train_cfg_set(c, "unfreeze", !strcmp(mode, "ls") ? "all" : mode, err, sizeof err)) fprintf(stderr, "%s\n", err);
    mmp_train_cfg_resolve(c);
}

static void load_fixture(fixture *f, const char *kase) {
    char p[4200], err[512];
    snprintf(p, sizeof p, "%s/%s.safetensors", FIX, kase);
    if (mmp_st_open(&f->st, p, err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(1); }
    size_t nf;
    f->feat = t_st_f32(&f->st, "in.feat", &nf, 1);
    const mmp_tensor *tl = mmp_st_get(&f->st, "in.lens"), *ti = mmp_st_get(&f->st, "in.ids");
    if (!tl || !ti || tl->dtype != MMP_I32 || ti->dtype != MMP_I32) { fprintf(stderr, "%s: in.lens, in.ids must be I32\n", p); exit(1); }
    const int32_t *lens = (const int32_t *)tl->data, *ids = (const int32_t *)ti->data;
    size_t nl = (size_t)tl->shape[0];
    f->B = (int)nl;
    f->F = (int)(nf / nl);
    f->RD = f->F + 8;
    f->rows = calloc((size_t)f->B * f->RD, sizeof(float));
    size_t off = 0;
    for (int b = 0; b < f->B; b++) {
        float *r = f->rows + (size_t)b * f->RD;
        memcpy(r, f->feat + (size_t)b * f->F, sizeof(float) * f->F);
        r[f->F] = (float)lens[b];
        for (int j = 0; j < lens[b]; j++) r[f->F + 1 + j] = (float)ids[off + j];
        off += (size_t)lens[b];
    }
}

static void free_fixture(fixture *f) {
    mmp_st_close(&f->st);
    free(f->feat);
    free(f->rows);
}

/* the model of the fixture's initial weights */
static mmp_captioner *model(fixture *f, const char *kase, const char *mode, mmp_train_cfg *c) {
    char err[1024];
    cfg_for(c, kase, mode);
    mmp_captioner *m = mmp_caption_new(c, err, sizeof err);
    if (!m) { fprintf(stderr, "%s: %s\n", kase, err); exit(1); }
    int np;
    mmp_param *p = mmp_caption_params(m, &np);
    for (int i = 0; i < np; i++) {
        char name[300];
        if (!strncmp(p[i].name, "clip_project.", 13)) snprintf(name, sizeof name, "map.%s", p[i].name);
        else if (strstr(p[i].name, ".lora_")) snprintf(name, sizeof name, "lora.%s", p[i].name);
        else continue; /* the decoder's: its folder */
        size_t n;
        float *w = t_st_f32(&f->st, name, &n, 1);
        CHECKF(n == p[i].n, "%s: %s has %zu values, the model %zu", kase, name, n, p[i].n);
        if (n == p[i].n) memcpy(p[i].w, w, sizeof(float) * n);
        free(w);
    }
    return m;
}

/* m's tensors as a captioner checkpoint (the metadata mmp-train-step writes) */
static void write_ckpt(const mmp_captioner *m, const char *path, const char *kase, const char *unfreeze) {
    mmp_st_writer w;
    mmp_st_writer_init(&w);
    mmp_caption_save(m, &w);
    char dec[1024], tok[1024];
    snprintf(dec, sizeof dec, "%s/gpt2", FIX);
    snprintf(tok, sizeof tok, "%s/tokenizer.json", FIX);
    const char *kv[][2] = {{"format", "mmpipe-head"}, {"head", "caption"}, {"mapper", strcmp(kase, "mlp") ? "transformer" : "mlp"},
                           {"prefix_length", "3"}, {"mapper_layers", "2"}, {"feature_dim", "12"},
                           {"feature_tokens", strcmp(kase, "tfsp") ? "0" : "3"}, {"decoder", dec}, {"tokenizer", tok},
                           {"unfreeze", unfreeze}, {"lora_rank", "2"}, {"lora_alpha", "4"}, {"lora_targets", "c_attn"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) mmp_meta_set(&w.meta, kv[i][0], kv[i][1]);
    char err[512];
    CHECKF(mmp_st_writer_write(&w, path, err, sizeof err) == 0, "%s", err);
    mmp_st_writer_free(&w);
}

/* the NLL of the fixture's captions through a loaded captioner (its prefix, its
 * decoder's whole-sequence forward): the inference path of mmp-generate */
static double loaded_loss(const mmp_captioner *c, const fixture *f) {
    const mmp_gpt2 *d = mmp_captioner_decoder(c);
    int K = mmp_captioner_prefix_length(c), C = mmp_captioner_width(c), V = d->cfg.vocab;
    double sum = 0;
    int cnt = 0;
    for (int b = 0; b < f->B; b++) {
        const float *r = f->rows + (size_t)b * f->RD;
        int n = (int)r[f->F], L = K + n;
        float *x = malloc(sizeof(float) * (size_t)L * C), *lg = malloc(sizeof(float) * (size_t)L * V);
        int32_t ids[16];
        for (int j = 0; j < n; j++) ids[j] = (int32_t)r[f->F + 1 + j];
        mmp_captioner_prefix(c, r, 1, x);
        mmp_gpt2_embed(d, ids, n, x + (size_t)K * C);
        char err[256];
        CHECK(mmp_gpt2_fwd(d, x, &L, 1, NULL, lg, err, sizeof err) == 0);
        for (int j = 0; j <= n; j++) {
            const float *z = lg + (size_t)(K - 1 + j) * V;
            int y = j < n ? ids[j] : mmp_captioner_eos(c);
            double mx = z[0], se = 0;
            for (int k = 1; k < V; k++) mx = fmax(mx, z[k]);
            for (int k = 0; k < V; k++) se += exp(z[k] - mx);
            sum += mx + log(se) - z[y];
            cnt++;
        }
        free(x);
        free(lg);
    }
    return sum / cnt;
}

static void check_mode(const char *kase, const char *mode) {
    fixture f;
    load_fixture(&f, kase);
    mmp_train_cfg c;
    mmp_captioner *m = model(&f, kase, mode, &c);
    double ls = !strcmp(mode, "ls") ? 0.1 : 0.0;
    int64_t ntok;
    double l = mmp_caption_loss(m, f.rows, f.B, ls, 1, 0, &ntok);
    char name[400];
    snprintf(name, sizeof name, "%s.loss", mode);
    float *want = t_st_f32(&f.st, name, NULL, 1);
    CHECKF(fabs(l - want[0]) <= 1e-4 * fmax(1, fabs(want[0])), "%s %s: loss %.9g, expected %.9g", kase, mode, l, want[0]);
    CHECK(ntok == 18 + 4);
    free(want);
    double l0 = mmp_caption_loss(m, f.rows, f.B, ls, 0, 0, NULL); /* the inference forward: the same loss */
    CHECKF(fabs(l0 - l) <= 1e-6 * fmax(1, fabs(l)), "%s %s: inference loss %.9g, training %.9g", kase, mode, l0, l);
    int np, nchk = 0;
    mmp_param *p = mmp_caption_params(m, &np);
    for (int i = 0; i < np; i++) {
        snprintf(name, sizeof name, "%s.grad.%s", mode, p[i].name);
        size_t n;
        float *g = t_st_f32(&f.st, name, &n, 1);
        float *got = malloc(sizeof(float) * p[i].n);
        mmp_caption_param_file_layout(m, i, p[i].g, got);
        char what[500];
        snprintf(what, sizeof what, "%s %s grad %s", kase, mode, p[i].name);
        if (n == p[i].n) compare(what, got, g, n, 1e-4), nchk++;
        else CHECKF(0, "%s: %zu values, expected %zu", what, p[i].n, n);
        free(g);
        free(got);
    }
    /* every reference gradient has its parameter */
    int nref = 0;
    snprintf(name, sizeof name, "%s.grad.", mode);
    for (int e = 0; e < f.st.n; e++) nref += !strncmp(f.st.entries[e].name, name, strlen(name));
    CHECKF(nref == nchk, "%s %s: %d gradients checked, the reference has %d", kase, mode, nchk, nref);
    if (strcmp(mode, "ls")) { /* the checkpoint loaded for generation (LoRA merged): the same loss */
        const char *tmp = tmpfile_name("ckpt.safetensors");
        write_ckpt(m, tmp, kase, mode);
        char err[1024];
        CHECK(mmp_captioner_probe(tmp) == 1);
        mmp_captioner *c = mmp_captioner_load(tmp, err, sizeof err);
        CHECKF(c != NULL, "%s %s: load: %s", kase, mode, err);
        if (c) {
            double ll = loaded_loss(c, &f);
            CHECKF(fabs(ll - l) <= 1e-5 * fmax(1, fabs(l)), "%s %s: the loaded captioner's loss %.9g, the trainer's %.9g", kase, mode, ll, l);
            CHECK(mmp_captioner_feature_size(c) == f.F && !strcmp(mmp_captioner_feature(c), "embedding"));
            mmp_captioner_free(c);
        }
        remove(tmp);
    }
    mmp_captioner_free(m);
    free_fixture(&f);
}

static void check_adamw(void) {
    fixture f;
    load_fixture(&f, "mlp");
    mmp_train_cfg c;
    mmp_captioner *m = model(&f, "mlp", "all", &c);
    int np;
    mmp_param *p = mmp_caption_params(m, &np);
    mmp_optim o;
    mmp_optim_defaults(&o, MMP_OPT_ADAMW);
    o.weight_decay = 0.01;
    for (int s = 0; s < 3; s++) {
        mmp_caption_loss(m, f.rows, f.B, 0, 1, 0, NULL);
        mmp_optim_step(&o, p, np, s, 1e-3);
    }
    for (int i = 0; i < np; i++) {
        char name[400], what[400];
        snprintf(name, sizeof name, "adamw.%s", p[i].name);
        size_t n;
        float *w = t_st_f32(&f.st, name, &n, 1), *got = malloc(sizeof(float) * p[i].n);
        mmp_caption_param_file_layout(m, i, p[i].w, got);
        snprintf(what, sizeof what, "adamw %s", p[i].name);
        if (n == p[i].n) {
            double dm = 0;
            for (size_t k = 0; k < n; k++) dm = fmax(dm, fabs((double)got[k] - w[k]));
            CHECKF(dm <= 1e-5, "%s: max abs error %.3g", what, dm);
        }
        free(w);
        free(got);
    }
    /* the checkpoint's tensors: every trained one under its name, read back */
    mmp_st_writer w;
    mmp_st_writer_init(&w);
    mmp_caption_save(m, &w);
    const char *tmp = tmpfile_name("tmp.safetensors");
    char err[512];
    CHECK(mmp_st_writer_write(&w, tmp, err, sizeof err) == 0);
    mmp_st_writer_free(&w);
    mmp_safetensors st;
    CHECK(mmp_st_open(&st, tmp, err, sizeof err) == 0);
    CHECK(mmp_st_get(&st, "gpt.transformer.h.1.attn.c_attn.weight") && mmp_st_get(&st, "clip_project.model.2.bias"));
    mmp_captioner *m2 = model(&f, "mlp", "all", &c);
    CHECK(mmp_caption_load_weights(m2, &st, err, sizeof err) == 0);
    int np2;
    mmp_param *p2 = mmp_caption_params(m2, &np2);
    CHECK(np2 == np);
    for (int i = 0; i < np && i < np2; i++) CHECKF(!memcmp(p[i].w, p2[i].w, sizeof(float) * p[i].n), "read back: %s", p[i].name);
    mmp_st_close(&st);
    remove(tmp);
    write_ckpt(m, tmp, "mlp", "all");
    mmp_captioner *cl = mmp_captioner_load(tmp, err, sizeof err);
    CHECKF(cl != NULL, "load the trained captioner: %s", err);
    if (cl) {
        double lt = mmp_caption_loss(m, f.rows, f.B, 0, 0, 0, NULL), ll = loaded_loss(cl, &f);
        CHECKF(fabs(ll - lt) <= 1e-5 * fmax(1, lt), "the loaded trained captioner's loss %.9g, the trainer's %.9g", ll, lt);
        mmp_captioner_free(cl);
    }
    remove(tmp);
    CHECK(mmp_captioner_probe(FIX) == 0);
    mmp_captioner_free(m2);
    mmp_captioner_free(m);
    free_fixture(&f);
}

/* 1 and 3 threads: the same bits (loss and gradients) */
static void check_threads(const char *kase) {
    fixture f;
    load_fixture(&f, kase);
    mmp_train_cfg c;
    mmp_captioner *a = model(&f, kase, "all", &c), *b = model(&f, kase, "all", &c);
    mmp_caption_set_threads(a, 1);
    mmp_caption_set_threads(b, 3);
    double la = mmp_caption_loss(a, f.rows, f.B, 0.1, 1, 0, NULL), lb = mmp_caption_loss(b, f.rows, f.B, 0.1, 1, 0, NULL);
    CHECK(la == lb);
    int np;
    mmp_param *pa = mmp_caption_params(a, &np), *pb = mmp_caption_params(b, &np);
    for (int i = 0; i < np; i++) CHECKF(!memcmp(pa[i].g, pb[i].g, sizeof(float) * pa[i].n), "%s threads: %s", kase, pa[i].name);
    mmp_captioner_free(a);
    mmp_captioner_free(b);
    free_fixture(&f);
}

static void check_wordlevel(void) {
    char p[4200], err[512];
    snprintf(p, sizeof p, "%s/tokenizer.json", FIX);
    mmp_wordlevel *w = mmp_wl_load(p, err, sizeof err);
    CHECKF(w != NULL, "%s", err);
    if (!w) return;
    CHECK(mmp_wl_size(w) == 40);
    snprintf(p, sizeof p, "%s/tokenizer.txt", FIX);
    size_t n;
    char *txt = (char *)t_slurp(p, &n), *save = NULL;
    CHECK(txt != NULL);
    int lines = 0;
    for (char *line = txt ? strtok_r(txt, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        *tab = 0;
        char text[256];
        size_t k = 0;
        for (char *s = line; *s && k < sizeof text - 1; s++) {
            if (s[0] == '\\' && s[1] == 't') { text[k++] = '\t'; s++; }
            else text[k++] = *s;
        }
        text[k] = 0;
        int32_t ids[64];
        int m = mmp_wl_encode(w, text, ids, 64), want[64], nw = 0, off;
        for (const char *q = tab + 1; sscanf(q, "%d%n", &want[nw], &off) == 1; q += off) nw++;
        CHECKF(m == nw, "wordlevel \"%s\": %d ids, tokenizers %d", text, m, nw);
        for (int i = 0; i < m && i < nw; i++) CHECKF(ids[i] == want[i], "wordlevel \"%s\": id %d is %d, tokenizers %d", text, i, ids[i], want[i]);
        lines++;
    }
    CHECK(lines >= 4);
    free(txt);
    int32_t ids[] = {1, 5, 3, 2, 0, 14};
    char *s = mmp_wl_decode(w, ids, 6);
    CHECKF(!strcmp(s, "w1 w10"), "decode: \"%s\"", s);
    free(s);
    /* built from texts: specials first, then by count, ties in byte order; min_count */
    const char *texts[] = {"A red circle.", "a blue circle", "A square"};
    mmp_wordlevel *b = mmp_wl_build(texts, 3, 2);
    CHECK(mmp_wl_size(b) == 6);
    CHECK(!strcmp(mmp_wl_token(b, 4), "a") && !strcmp(mmp_wl_token(b, 5), "circle"));
    const char *tmp = tmpfile_name("tokenizer.json");
    CHECK(mmp_wl_save(b, tmp, err, sizeof err) == 0);
    mmp_wordlevel *b2 = mmp_wl_load(tmp, err, sizeof err);
    CHECKF(b2 && mmp_wl_size(b2) == 6 && mmp_wl_id(b2, "circle") == 5, "saved vocabulary read back: %s", b2 ? "" : err);
    remove(tmp);
    mmp_wl_free(b2);
    mmp_wl_free(b);
    mmp_wl_free(w);
}

int main(void) {
    snprintf(FIX, sizeof FIX, "%s", t_root_path("tests/fixtures/caption"));
    mmp_train_init_blas();
    check_wordlevel();
    const char *cases[] = {"mlp", "tf", "tfsp"}, *modes[] = {"all", "head", "lora", "ls"};
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 4; j++) check_mode(cases[k], modes[j]);
    check_adamw();
    check_threads("tf");
    TEST_END();
}
