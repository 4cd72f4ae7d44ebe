/* Training LoRA adapters on the transformer engine (tx/lora_train.h) vs
 * peft 0.4.0 (tests/fixtures/gen_lora_train.py): tiny random BERT, HF ViT
 * (with and without dropout: PEFT fed mmpipe's masks), HF CLIP (both
 * towers), timm ViT (one adapter on the fused qkv) and open_clip (mlp.c_fc /
 * c_proj) with random lora_A / lora_B: the outputs, the loss, every
 * adapter's gradient (by PEFT's saved name) and the input gradient within
 * 1e-4 of each tensor's largest magnitude; central finite differences; 1..4
 * threads bit for bit; 5 AdamW steps on the adapters only vs torch (1e-5);
 * PEFT's initialization; the adapters saved as a PEFT folder and read back
 * by tx/peft.h (the same outputs); the refusals, one line each.
 * With an argument DIR, writes each case's adapter to DIR/NAME (and the
 * AdamW-trained one to DIR/NAME_adamw) for tests/py/test_lora_train_peft.py. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmp.h"
#include "st_testlib.h"
#include "testlib.h"
#include "text/bert.h"
#include "tx/lora_train.h"
#include "tx/peft.h"
#include "tx/train.h"

#define TOL 1e-4

static double worst_ref = 0, worst_fd = 0;
static const char *save_dir = NULL;
static char tmpdir[512];

static float *ref_f32(const mmp_safetensors *r, const char *name, size_t *n) { return t_st_f32(r, name, n, 0); }

static int32_t *ref_i32(const mmp_safetensors *r, const char *name, size_t *n) {
    const mmp_tensor *t = mmp_st_get(r, name);
    if (!t) return NULL;
    CHECK(t->dtype == MMP_I32);
    size_t k = (size_t)mmp_numel(t->ndim, t->shape);
    int32_t *out = malloc(sizeof(int32_t) * (k ? k : 1));
    memcpy(out, t->data, sizeof(int32_t) * k);
    if (n) *n = k;
    return out;
}

/* max |got - want| / max |want| */
static void compare(const char *fx, const char *what, const float *got, const float *want, size_t n) {
    double dm = 0, wm = 0;
    size_t where = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (d > dm || d != d) dm = d != d ? INFINITY : d, where = i;
        if (fabs(want[i]) > wm) wm = fabs(want[i]);
    }
    double rel = dm / (wm > 0 ? wm : 1);
    if (rel > worst_ref) worst_ref = rel;
    CHECKF(rel <= TOL, "%s %s: element %zu is %.9g, expected %.9g (rel error %.3g of %.3g)", fx, what, where,
           n ? got[where] : 0, n ? want[where] : 0, rel, wm);
}

typedef struct {
    const char *name;
    mmp_tx_model *m;
    mmp_bert bert;
    int is_bert;
    mmp_tx_params P;
    mmp_tx_lora_set *s;
    float *imgs, *R, *tR;
    int n, H, W, D, nt, Dt;
    size_t T, Ct;
    mmp_tx_out which;
    int32_t *ids;
    int *lens;
} fixture;

static double run(fixture *f, float *out, float *tout, float *dimg, float *demb, int backward) {
    char err[512];
    double loss = 0;
    if (f->imgs) {
        mmp_tx_saved *a = mmp_tx_image_fwd_train(f->m, f->imgs, f->n, f->H, f->W, f->which, out, err, sizeof err);
        if (!a) mmp_die("%s", err);
        for (size_t k = 0; k < (size_t)f->n * f->D; k++) loss += (double)f->R[k] * out[k];
        if (backward) mmp_tx_image_bwd(f->m, a, f->R, f->P.vision, dimg);
        mmp_tx_saved_free(a);
    }
    if (f->ids) {
        mmp_tx_saved *a;
        if (f->is_bert) a = mmp_bert_fwd_train(&f->bert, f->ids, f->lens, f->nt, tout, err, sizeof err);
        else a = mmp_tx_text_fwd_train(f->m, f->ids, f->lens, f->nt, MMP_TX_OUT_EMBED, tout, err, sizeof err);
        if (!a) mmp_die("%s", err);
        for (size_t k = 0; k < (size_t)f->nt * f->Dt; k++) loss += (double)f->tR[k] * tout[k];
        if (backward) {
            if (f->is_bert) mmp_bert_bwd(&f->bert, a, f->tR, f->P.bert, demb);
            else mmp_tx_text_bwd(f->m, a, f->tR, f->P.text, demb);
        }
        mmp_tx_saved_free(a);
    }
    return loss;
}

static void set_threads(fixture *f, int t) {
    if (f->is_bert) mmp_bert_set_threads(&f->bert, t);
    else mmp_tx_model_set_threads(f->m, t);
}

/* the base model of a fixture; 0 or -1 */
static int load_base(fixture *f, const char *base, char *err, size_t errlen) {
    char path[600];
    snprintf(path, sizeof path, "%s", t_root_path("tests/fixtures"));
    size_t L = strlen(path);
    snprintf(path + L, sizeof path - L, "/%s%s", base, f->is_bert ? "/model.safetensors" : "");
    if (f->is_bert) return mmp_bert_load(&f->bert, path, 0, err, errlen);
    f->m = mmp_tx_model_load(path, err, errlen);
    return f->m ? 0 : -1;
}

static void free_base(fixture *f) {
    if (f->is_bert) mmp_bert_free(&f->bert);
    else mmp_tx_model_free(f->m);
}

/* the adapters saved, read back by tx/peft.h over a fresh base: the same outputs, bit for bit */
static void check_saved(fixture *f, const char *base, const char *dir, const float *out, const float *tout) {
    char err[512];
    fixture g = {.name = f->name, .is_bert = f->is_bert};
    if (load_base(&g, base, err, sizeof err)) {
        CHECKF(0, "%s", err);
        return;
    }
    mmp_lora *a = NULL;
    if (g.is_bert) {
        a = mmp_lora_load(dir, g.bert.path, NULL, err, sizeof err);
        CHECKF(a, "%s: the saved adapter: %s", f->name, err);
        if (a) CHECKF(mmp_lora_attach(a, 0, g.bert.tx, err, sizeof err) == 0, "%s", err);
    } else {
        a = mmp_lora_attach_model(g.m, dir, err, sizeof err);
        CHECKF(a, "%s: the saved adapter: %s", f->name, err);
    }
    if (!a) {
        free_base(&g);
        return;
    }
    CHECKF(mmp_lora_rank(a) == mmp_lora_rank(a) && mmp_lora_nsites(a) == mmp_tx_lora_count(f->s),
           "%s: %d modules read back, %d saved", f->name, mmp_lora_nsites(a), mmp_tx_lora_count(f->s));
    float *o = calloc((size_t)f->n * f->D + 1, 4), *to = calloc((size_t)f->nt * f->Dt + 1, 4);
    if (f->imgs) {
        CHECK(mmp_tx_image_embed(g.m, f->imgs, f->n, f->H, f->W, f->which, o, NULL, err, sizeof err) == 0);
        CHECKF(!memcmp(o, out, sizeof(float) * (size_t)f->n * f->D), "%s: base + the saved adapter: other outputs",
               f->name);
    }
    if (f->ids) {
        if (g.is_bert) {
            float *hid = calloc(f->T * f->Ct + 1, 4);
            mmp_bert_forward(&g.bert, f->ids, f->lens, f->nt, hid);
            mmp_bert_mean_pool(hid, f->lens, f->nt, (int)f->Ct, 0, to);
            free(hid);
        } else
            CHECK(mmp_tx_text_embed(g.m, f->ids, f->lens, f->nt, MMP_TX_OUT_EMBED, to, NULL, err, sizeof err) == 0);
        CHECKF(!memcmp(to, tout, sizeof(float) * (size_t)f->nt * f->Dt),
               "%s: base + the saved adapter: other text outputs", f->name);
    }
    printf("  saved as a PEFT folder, read back by tx/peft.h: %d modules, the same outputs\n", mmp_lora_nsites(a));
    free(o), free(to);
    mmp_lora_free(a);
    free_base(&g);
}

static void check_case(const char *name) {
    char dir[512], path[700], err[512];
    snprintf(dir, sizeof dir, "%s", t_root_path("tests/fixtures/lora_train"));
    snprintf(path, sizeof path, "%s/%s/ref.safetensors", dir, name);
    mmp_safetensors r, b;
    mmp_st_open_or_die(&r, path);
    fixture F = {.name = name};
    fixture *f = &F;
    const char *family = mmp_meta_get(&r.meta, "family"), *outk = mmp_meta_get(&r.meta, "out"),
               *base = mmp_meta_get(&r.meta, "base"), *targets = mmp_meta_get(&r.meta, "targets");
    CHECK(family && outk && base && targets);
    f->is_bert = !strcmp(family, "bert");
    if (load_base(f, base, err, sizeof err)) {
        CHECKF(0, "%s", err);
        mmp_st_close(&r);
        return;
    }
    mmp_tx_lora_opts o;
    mmp_tx_lora_opts_default(&o);
    o.r = atoi(mmp_meta_get(&r.meta, "r"));
    o.alpha = atof(mmp_meta_get(&r.meta, "alpha"));
    o.dropout = atof(mmp_meta_get(&r.meta, "dropout"));
    o.seed = (uint64_t)atoll(mmp_meta_get(&r.meta, "seed"));
    o.targets = targets;
    memset(&f->P, 0, sizeof f->P);
    f->s = f->is_bert ? mmp_bert_lora_add(&f->bert, &o, &f->P, err, sizeof err)
                      : mmp_tx_lora_add(f->m, &o, &f->P, err, sizeof err);
    CHECKF(f->s, "%s: %s", name, err);
    if (!f->s) return;
    /* LoRA only: the adapters are the only parameters, named as PEFT saves them, PEFT's initial values */
    int ninit = 0;
    for (int i = 0; i < r.n; i++) ninit += !strncmp(r.entries[i].name, "init.", 5);
    CHECKF(f->P.n == ninit && f->P.n == 2 * mmp_tx_lora_count(f->s), "%s: %d parameters, %d in the reference", name,
           f->P.n, ninit);
    for (int i = 0; i < f->P.n; i++) {
        mmp_tx_param *p = &f->P.p[i];
        /* PEFT's init: lora_A uniform in +-1/sqrt(in), lora_B zeros */
        const int isA = strstr(p->name, ".lora_A.") != NULL;
        double bound = 1.0 / sqrt((double)p->shape[1]), mx = 0;
        for (size_t j = 0; j < p->n; j++) mx = fmax(mx, fabs(p->w[j]));
        CHECKF(isA ? mx <= bound && mx > 0.5 * bound : mx == 0, "%s: %s starts at max %g (bound %g)", name, p->name,
               mx, bound);
        snprintf(path, sizeof path, "init.%s", p->name);
        size_t k = 0;
        float *v = ref_f32(&r, path, &k);
        CHECKF(v && k == p->n, "%s: no reference %s (%zu floats)", name, path, p->n);
        if (v && k == p->n) memcpy(p->w, v, sizeof(float) * k);
        free(v);
    }
    /* the inputs of the base's fixture */
    snprintf(path, sizeof path, "%s/%s/ref.safetensors", t_root_path("tests/fixtures"), base);
    mmp_st_open_or_die(&b, path);
    f->which = !strcmp(outk, "logits") ? MMP_TX_OUT_LOGITS : !strcmp(outk, "embed") ? MMP_TX_OUT_EMBED
                                                                                      : MMP_TX_OUT_POOLED;
    const mmp_tensor *ti = mmp_st_get(&b, "images");
    size_t nimg = 0, nR = 0, nT = 0, ntR = 0;
    if (ti) {
        f->imgs = ref_f32(&b, "images", &nimg);
        f->n = (int)ti->shape[0], f->H = (int)ti->shape[2], f->W = (int)ti->shape[3];
        f->R = ref_f32(&b, "R", &nR);
        f->D = (int)(nR / (size_t)f->n);
    }
    if (mmp_st_get(&b, "ids")) {
        size_t nl;
        f->ids = ref_i32(&b, "ids", &nT);
        f->lens = (int *)ref_i32(&b, "lens", &nl);
        f->nt = (int)nl, f->T = nT;
        f->tR = ref_f32(&b, "text_R", &ntR);
        f->Dt = (int)(ntR / nl);
        f->Ct = mmp_st_get(&b, "demb")->shape[1];
    }
    float *out = calloc(nR + 1, sizeof(float)), *tout = calloc(ntR + 1, sizeof(float));
    float *dimg = calloc(nimg + 1, sizeof(float)), *demb = calloc(nT * f->Ct + 1, sizeof(float));
    printf("%s (%s, targets %s, r %d, dropout %g): %d adapted linears\n", name, family, targets, o.r, o.dropout,
           mmp_tx_lora_count(f->s));

    set_threads(f, 1);
    mmp_tx_lora_set_step(f->s, 0);
    mmp_tx_params_zero_grad(&f->P);
    double loss = run(f, out, tout, dimg, demb, 1);
    size_t k;
    float *want;
#define CMP(key, got)                                                                                                \
    if ((want = ref_f32(&r, key, &k))) {                                                                             \
        compare(name, key, got, want, k);                                                                            \
        free(want);                                                                                                  \
    }
    CMP("out", out)
    CMP("dimages", dimg)
    CMP("text_out", tout)
    CMP("demb", demb)
#undef CMP
    float *lref = ref_f32(&r, "loss", NULL);
    CHECKF(fabs(loss - lref[0]) <= 1e-4 * fmax(1, fabs(lref[0])), "%s: loss %.9g, PEFT's %.9g", name, loss, lref[0]);
    free(lref);
    for (int i = 0; i < f->P.n; i++) {
        snprintf(path, sizeof path, "grad.%s", f->P.p[i].name);
        want = ref_f32(&r, path, &k);
        CHECKF(want && k == f->P.p[i].n, "%s: no reference %s", name, path);
        if (want && k == f->P.p[i].n) compare(name, path, f->P.p[i].g, want, k);
        free(want);
    }

    /* 2, 3 and 4 threads: the same bits */
    float **g1 = malloc(sizeof(float *) * (size_t)f->P.n);
    for (int i = 0; i < f->P.n; i++) {
        g1[i] = malloc(sizeof(float) * (f->P.p[i].n + 1));
        memcpy(g1[i], f->P.p[i].g, sizeof(float) * f->P.p[i].n);
    }
    float *out1 = malloc(sizeof(float) * (nR + 1)), *tout1 = malloc(sizeof(float) * (ntR + 1));
    float *dimg1 = malloc(sizeof(float) * (nimg + 1)), *demb1 = malloc(sizeof(float) * (nT * f->Ct + 1));
    memcpy(out1, out, sizeof(float) * nR), memcpy(tout1, tout, sizeof(float) * ntR);
    memcpy(dimg1, dimg, sizeof(float) * nimg), memcpy(demb1, demb, sizeof(float) * nT * f->Ct);
    for (int t = 2; t <= 4; t++) {
        set_threads(f, t);
        mmp_tx_params_zero_grad(&f->P);
        memset(dimg, 0, sizeof(float) * nimg), memset(demb, 0, sizeof(float) * nT * f->Ct);
        run(f, out, tout, dimg, demb, 1);
        CHECKF(!memcmp(out, out1, sizeof(float) * nR) && !memcmp(tout, tout1, sizeof(float) * ntR),
               "%s: %d threads: other outputs", name, t);
        CHECKF(!memcmp(dimg, dimg1, sizeof(float) * nimg) && !memcmp(demb, demb1, sizeof(float) * nT * f->Ct),
               "%s: %d threads: other input gradients", name, t);
        for (int i = 0; i < f->P.n; i++)
            CHECKF(!memcmp(g1[i], f->P.p[i].g, sizeof(float) * f->P.p[i].n), "%s: %d threads: %s differs", name, t,
                   f->P.p[i].name);
    }
    set_threads(f, 1);
    /* dropout: another step, other masks */
    if (o.dropout > 0) {
        mmp_tx_lora_set_step(f->s, 1);
        run(f, out, tout, NULL, NULL, 0);
        CHECKF(memcmp(out, out1, sizeof(float) * nR), "%s: step 1 has step 0's dropout masks", name);
        mmp_tx_lora_set_step(f->s, 0);
    }

    /* finite differences of the new backward: (L(w + h) - L(w - h)) / 2h on the largest-gradient
     * entry and a middle one of every adapter tensor */
    for (int i = 0; i < f->P.n; i++) {
        mmp_tx_param *p = &f->P.p[i];
        double gmax = 0;
        size_t imax = 0;
        for (size_t j = 0; j < p->n; j++)
            if (fabs(g1[i][j]) > gmax) gmax = fabs(g1[i][j]), imax = j;
        if (gmax == 0) continue;
        size_t idx[2] = {imax, p->n / 2};
        for (int q = 0; q < 2; q++) {
            size_t j = idx[q];
            float w0 = p->w[j];
            const float h = 1e-2f * fmaxf(1.0f, fabsf(w0));
            p->w[j] = w0 + h;
            double lp = run(f, out, tout, NULL, NULL, 0);
            p->w[j] = w0 - h;
            double lm = run(f, out, tout, NULL, NULL, 0);
            p->w[j] = w0;
            double fd = (lp - lm) / ((double)(w0 + h) - (double)(w0 - h));
            double e = fabs(fd - g1[i][j]) / gmax;
            if (e > worst_fd) worst_fd = e;
            CHECKF(e <= 1e-2, "%s: %s[%zu]: finite difference %.6g, gradient %.6g (error %.3g of %.3g)", name,
                   p->name, j, fd, g1[i][j], e, gmax);
        }
    }
    for (int i = 0; i < f->P.n; i++) free(g1[i]);
    free(g1);

    /* saved as a PEFT folder and read back over the base: the same outputs (no dropout at inference) */
    snprintf(path, sizeof path, "%s/%s", save_dir ? save_dir : tmpdir, name);
    CHECKF(mmp_tx_lora_save(f->s, path, err, sizeof err) == 0, "%s", err);
    if (o.dropout == 0) check_saved(f, base, path, out1, tout1);

    /* 5 AdamW steps on the adapters only vs torch.optim.AdamW (lr 1e-3, weight decay 0.05) */
    float *losses = ref_f32(&r, "adamw_loss", &k);
    if (losses) {
        mmp_optim opt;
        mmp_optim_defaults(&opt, MMP_OPT_ADAMW);
        opt.weight_decay = 0.05;
        mmp_param *v = mmp_tx_params_views(&f->P, err, sizeof err);
        CHECKF(v, "%s", err);
        double wl = 0, we = 0;
        const int nsteps = (int)k;
        for (int step = 0; v && step < nsteps; step++) {
            mmp_tx_lora_set_step(f->s, (uint64_t)step);
            mmp_tx_params_zero_grad(&f->P);
            double l = run(f, out, tout, NULL, NULL, 1);
            wl = fmax(wl, fabs(l - losses[step]) / fmax(1, fabs(losses[step])));
            mmp_optim_step(&opt, v, f->P.n, step, 1e-3);
        }
        CHECKF(wl <= 1e-5, "%s adamw: the losses differ by %.3g", name, wl);
        for (int i = 0; v && i < f->P.n; i++) {
            snprintf(path, sizeof path, "adamw.%s", f->P.p[i].name);
            want = ref_f32(&r, path, &k);
            CHECKF(want && k == f->P.p[i].n, "%s: no %s", name, path);
            if (want && k == f->P.p[i].n) {
                double dm = 0, wm = 0;
                for (size_t j = 0; j < k; j++)
                    dm = fmax(dm, fabs((double)f->P.p[i].w[j] - want[j])), wm = fmax(wm, fabs(want[j]));
                double e = dm / (wm > 0 ? wm : 1);
                we = fmax(we, e);
                CHECKF(e <= 1e-5, "%s: %s after %d steps: error %.3g of %.3g", name, path, nsteps, e, wm);
            }
            free(want);
        }
        printf("  %d AdamW steps on the adapters: loss error %.3g, weights %.3g\n", nsteps, wl, we);
        if (save_dir) {
            snprintf(path, sizeof path, "%s/%s_adamw", save_dir, name);
            CHECKF(mmp_tx_lora_save(f->s, path, err, sizeof err) == 0, "%s", err);
        }
        mmp_tx_params_views_free(v, f->P.n);
        free(losses);
    }
    free(out1), free(tout1), free(dimg1), free(demb1);
    free(out), free(tout), free(dimg), free(demb);
    free(f->imgs), free(f->R), free(f->tR), free(f->ids), free(f->lens);
    mmp_tx_params_free(&f->P);
    mmp_tx_lora_set_free(f->s);
    free_base(f);
    mmp_st_close(&b);
    mmp_st_close(&r);
}

/* one line naming the problem */
static void refused(const char *base, int is_bert, const char *targets, int rank, double dropout, const char *want) {
    char err[512];
    fixture f = {.is_bert = is_bert};
    if (load_base(&f, base, err, sizeof err)) {
        CHECKF(0, "%s", err);
        return;
    }
    mmp_tx_lora_opts o;
    mmp_tx_lora_opts_default(&o);
    o.targets = targets, o.r = rank, o.dropout = dropout;
    mmp_tx_params P;
    memset(&P, 0, sizeof P);
    err[0] = 0;
    mmp_tx_lora_set *s = is_bert ? mmp_bert_lora_add(&f.bert, &o, &P, err, sizeof err)
                                 : mmp_tx_lora_add(f.m, &o, &P, err, sizeof err);
    CHECKF(!s, "%s: targets \"%s\" accepted", base, targets ? targets : "(default)");
    CHECKF(strstr(err, want) && !strchr(err, '\n'), "%s \"%s\": message \"%s\", expected \"%s\"", base,
           targets ? targets : "", err, want);
    printf("  refused: %s\n", err);
    mmp_tx_lora_set_free(s);
    mmp_tx_params_free(&P);
    free_base(&f);
}

static void refusals(void) {
    printf("refusals:\n");
    refused("tx_train/vit_hf", 0, "query,nosuch", 8, 0, "LoRA target \"nosuch\" matches no module");
    refused("tx_train/vit_hf", 0, "layernorm_before", 8, 0, "selects vit.encoder.layer.0.layernorm_before");
    refused("tx_train/vit_hf", 0, "attention", 8, 0, "which mmpipe does not adapt");
    refused("tx_train/vit_hf", 0, "classifier", 8, 0, "selects classifier");
    refused("tx_train/vit_hf", 0, "query,", 8, 0, "an empty name");
    refused("tx_train/vit_hf", 0, "query", 0, 0, "LoRA rank 0");
    refused("tx_train/vit_hf", 0, "query", 8, 1.0, "LoRA dropout 1");
    refused("tx_train/timm", 0, "proj", 8, 0, "selects patch_embed.proj");
    refused("tx_train/clip_oc", 0, "out_proj", 8, 0, "nn.MultiheadAttention");
    refused("tx_train/clip_oc", 0, "attn", 8, 0, "in_proj_weight");
    refused("tx_train/clip_oc", 0, NULL, 8, 0, "no default LoRA targets");
    refused("tx_train/clip_hf", 0, "projection", 8, 0, "selects visual_projection");
    refused("tx_train/bert", 1, "LayerNorm", 8, 0, "selects embeddings.LayerNorm");
    refused("tx_train/vit_hf", 0, "query", 8, -0.5, "LoRA dropout -0.5");
}

/* defaults, determinism, base bits at init, adapters twice, LoRA after make_trainable */
static void api(void) {
    char err[512];
    fixture f = {0};
    if (load_base(&f, "tx_train/vit_hf", err, sizeof err)) {
        CHECKF(0, "%s", err);
        return;
    }
    const int H = 12, W = 12, n = 2, D = mmp_tx_image_dim(f.m, MMP_TX_OUT_LOGITS);
    float img[2 * 3 * 12 * 12], o0[64], o1[64];
    for (int i = 0; i < n * 3 * H * W; i++) img[i] = (float)((i * 37 % 101) - 50) / 40.0f;
    CHECK(mmp_tx_image_embed(f.m, img, n, H, W, MMP_TX_OUT_LOGITS, o0, NULL, err, sizeof err) == 0);
    mmp_tx_lora_opts o;
    mmp_tx_lora_opts_default(&o);
    CHECK(o.r == 8 && o.alpha == 8 && o.dropout == 0 && !o.targets);
    CHECK(!strcmp(mmp_tx_lora_default_targets(MMP_TXM_VIT_HF), "query,value"));
    mmp_tx_params P, P2;
    memset(&P, 0, sizeof P), memset(&P2, 0, sizeof P2);
    mmp_tx_lora_set *s = mmp_tx_lora_add(f.m, &o, &P, err, sizeof err);
    CHECKF(s, "%s", err);
    if (!s) return;
    CHECK(mmp_tx_lora_count(s) == 4 && P.n == 8);
    CHECKF(!strcmp(P.p[0].name, "base_model.model.vit.encoder.layer.0.attention.attention.query.lora_A.weight"), "%s",
           P.p[0].name);
    CHECK(!strcmp(mmp_tx_lora_module(s, 1), "vit.encoder.layer.0.attention.attention.value"));
    /* B = 0: the base's outputs */
    CHECK(mmp_tx_image_embed(f.m, img, n, H, W, MMP_TX_OUT_LOGITS, o1, NULL, err, sizeof err) == 0);
    int same = 1;
    for (int i = 0; i < n * D; i++) same &= o0[i] == o1[i];
    CHECKF(same, "LoRA at PEFT's init changes the outputs");
    /* twice: refused */
    CHECK(!mmp_tx_lora_add(f.m, &o, &P2, err, sizeof err) && strstr(err, "has LoRA adapters already"));
    mmp_tx_params_free(&P2);
    float *A0 = malloc(sizeof(float) * P.p[0].n);
    memcpy(A0, P.p[0].w, sizeof(float) * P.p[0].n);
    mmp_tx_params_free(&P);
    mmp_tx_lora_set_free(s);
    CHECK(!f.m->vision->enc.block[0].lora);
    /* the same seed: the same A; another seed: another */
    memset(&P, 0, sizeof P);
    s = mmp_tx_lora_add(f.m, &o, &P, err, sizeof err);
    CHECK(s && !memcmp(A0, P.p[0].w, sizeof(float) * P.p[0].n));
    mmp_tx_params_free(&P);
    mmp_tx_lora_set_free(s);
    o.seed = 1;
    memset(&P, 0, sizeof P);
    s = mmp_tx_lora_add(f.m, &o, &P, err, sizeof err);
    CHECK(s && memcmp(A0, P.p[0].w, sizeof(float) * P.p[0].n));
    mmp_tx_params_free(&P);
    mmp_tx_lora_set_free(s);
    free(A0);
    /* after make_trainable: the adapters appended, the block gradients point at them */
    CHECKF(mmp_tx_make_trainable(f.m, &P, err, sizeof err) == 0, "%s", err);
    int nbase = P.n;
    s = mmp_tx_lora_add(f.m, &o, &P, err, sizeof err);
    CHECKF(s && P.n == nbase + 8 && P.vision->block[0].lora && P.vision->block[0].q_w, "LoRA after make_trainable");
    mmp_tx_params_free(&P);
    mmp_tx_lora_set_free(s);
    free_base(&f);
    /* CLIP: one tower's linears only */
    if (load_base(&f, "tx_train/clip_hf", err, sizeof err)) {
        CHECKF(0, "%s", err);
        return;
    }
    o.targets = "q_proj";
    int count[3];
    for (int t = 0; t < 3; t++) {
        o.towers = t;
        memset(&P, 0, sizeof P);
        s = mmp_tx_lora_add(f.m, &o, &P, err, sizeof err);
        CHECKF(s, "%s", err);
        count[t] = s ? mmp_tx_lora_count(s) : -1;
        if (s && t) CHECK(strstr(mmp_tx_lora_module(s, 0), t == 1 ? "vision_model." : "text_model.") != NULL);
        mmp_tx_params_free(&P);
        mmp_tx_lora_set_free(s);
    }
    CHECKF(count[1] == f.m->vision->enc.layers && count[2] == f.m->text->enc.layers && count[0] == count[1] + count[2],
           "towers: %d %d %d linears", count[0], count[1], count[2]);
    free_base(&f);
    printf("api: defaults, PEFT's init keeps the base's outputs, seeded, after make_trainable\n");
}

int main(int argc, char **argv) {
    if (argc > 1) {
        save_dir = argv[1];
        mkdir(save_dir, 0777);
    }
    const char *tmp = getenv("MMP_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s/lora_train.XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    api();
    refusals();
    static const char *cases[] = {"bert", "vit", "vit_drop", "clip", "timm", "clip_oc"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_case(cases[i]);
    printf("worst error vs peft 0.4 %.3g (of each tensor's largest magnitude), worst finite difference %.3g\n",
           worst_ref, worst_fd);
    t_sh("rm -rf '%s'", tmpdir);
    TEST_END();
}
