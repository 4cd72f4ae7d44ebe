/* Training the ViT / CLIP towers and BERT (tx/train.h) vs PyTorch: tiny
 * random models of every family (tests/fixtures/gen_tx_train.py:
 * transformers 4.30.2, timm 0.9.16, open_clip 2.24, odd sizes), the loss
 * sum(R * output) for fixed R: the outputs, every parameter's gradient (by
 * its home library's name) and the input gradient (pixels; the token
 * embeddings' rows for text) within 1e-4 of each tensor's largest magnitude;
 * (a bias's scale includes its weight's: see grad_scale); central finite
 * differences on the largest-gradient entry and a middle one of every
 * parameter; 1, 2, 3 and 4 threads bit for bit, and activation recomputation
 * (mmp_tx_model_set_recompute) on 1 and 3 threads. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "mmp.h"
#include "st_testlib.h"
#include "testlib.h"
#include "text/bert.h"
#include "tx/train.h"

#define TOL 1e-4

static double worst_ref = 0, worst_fd = 0;

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

/* max |got - want| / max(scale, max |want|) */
static void compare_s(const char *fx, const char *what, const float *got, const float *want, size_t n, double scale) {
    double dm = 0, wm = scale;
    size_t where = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (d > dm) dm = d, where = i;
        if (fabs(want[i]) > wm) wm = fabs(want[i]);
    }
    double rel = dm / (wm > 0 ? wm : 1);
    if (rel > worst_ref) worst_ref = rel;
    CHECKF(rel <= TOL, "%s %s: element %zu is %.9g, expected %.9g (rel error %.3g of %.3g)", fx, what, where,
           n ? got[where] : 0, n ? want[where] : 0, rel, wm);
}

static void compare(const char *fx, const char *what, const float *got, const float *want, size_t n) {
    compare_s(fx, what, got, want, n, 0);
}

static double maxabs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

/* The scale of a gradient: its largest magnitude, and for a bias also its
 * weight's (a key bias's gradient is zero in exact arithmetic, softmax being
 * shift-invariant: both sides are rounding noise of the weight's terms). */
static double grad_scale(mmp_tx_params *P, const mmp_tx_param *p, const float *g) {
    double s = maxabs(g, p->n);
    size_t L = strlen(p->name);
    if (L > 5 && !strcmp(p->name + L - 5, ".bias")) {
        char w[300];
        snprintf(w, sizeof w, "%.*s.weight", (int)(L - 5), p->name);
        const mmp_tx_param *q = mmp_tx_params_find(P, w);
        if (q) s = fmax(s, maxabs(q->g, q->n));
    }
    return s;
}

typedef struct {
    const char *name;
    mmp_tx_model *m;
    mmp_bert bert;
    int is_bert;
    mmp_tx_params P;
    float *imgs, *R, *tR;
    int n, H, W, D, nt, Dt;
    size_t T, Ct;
    mmp_tx_out which;
    int32_t *ids;
    int *lens;
} fixture;

/* forward (and backward with dout = R) of every part; the loss sum(R * out) */
static double run(fixture *f, float *out, float *tout, float *dimg, float *demb, int backward) {
    char err[512];
    double loss = 0;
    if (f->imgs) {
        mmp_tx_saved *a = mmp_tx_image_fwd_train(f->m, f->imgs, f->n, f->H, f->W, f->which, out, err, sizeof err);
        if (!a) {
            fprintf(stderr, "%s\n", err);
            exit(1);
        }
        for (size_t k = 0; k < (size_t)f->n * f->D; k++) loss += (double)f->R[k] * out[k];
        if (backward) mmp_tx_image_bwd(f->m, a, f->R, f->P.vision, dimg);
        mmp_tx_saved_free(a);
    }
    if (f->ids) {
        mmp_tx_saved *a;
        if (f->is_bert) a = mmp_bert_fwd_train(&f->bert, f->ids, f->lens, f->nt, tout, err, sizeof err);
        else a = mmp_tx_text_fwd_train(f->m, f->ids, f->lens, f->nt, MMP_TX_OUT_EMBED, tout, err, sizeof err);
        if (!a) {
            fprintf(stderr, "%s\n", err);
            exit(1);
        }
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

static void check_fixture(const char *name) {
    char dir[512], path[600], err[512];
    snprintf(dir, sizeof dir, "%s", t_root_path("tests/fixtures/tx_train"));
    snprintf(path, sizeof path, "%s/%s/ref.safetensors", dir, name);
    mmp_safetensors r;
    mmp_st_open_or_die(&r, path);
    fixture F = {.name = name};
    fixture *f = &F;
    const char *family = mmp_meta_get(&r.meta, "family"), *outk = mmp_meta_get(&r.meta, "out");
    CHECK(family && outk);
    f->is_bert = !strcmp(family, "bert");
    snprintf(path, sizeof path, "%s/%s%s", dir, name, f->is_bert ? "/model.safetensors" : "");
    if (f->is_bert) {
        CHECKF(mmp_bert_load(&f->bert, path, 0, err, sizeof err) == 0, "%s", err);
        CHECKF(mmp_bert_make_trainable(&f->bert, &f->P, err, sizeof err) == 0, "%s", err);
    } else {
        f->m = mmp_tx_model_load(path, err, sizeof err);
        CHECKF(f->m, "%s", err);
        if (!f->m) return;
        CHECKF(mmp_tx_make_trainable(f->m, &f->P, err, sizeof err) == 0, "%s", err);
    }
    f->which = !strcmp(outk, "logits") ? MMP_TX_OUT_LOGITS : !strcmp(outk, "embed")  ? MMP_TX_OUT_EMBED
              : !strcmp(outk, "pooler") ? MMP_TX_OUT_POOLER
                                        : MMP_TX_OUT_POOLED;
    const mmp_tensor *ti = mmp_st_get(&r, "images");
    size_t nimg = 0, nR = 0, nT = 0, ntR = 0;
    if (ti) {
        f->imgs = ref_f32(&r, "images", &nimg);
        f->n = (int)ti->shape[0], f->H = (int)ti->shape[2], f->W = (int)ti->shape[3];
        f->R = ref_f32(&r, "R", &nR);
        f->D = (int)(nR / (size_t)f->n);
    }
    if (mmp_st_get(&r, "ids")) {
        size_t nl;
        f->ids = ref_i32(&r, "ids", &nT);
        f->lens = (int *)ref_i32(&r, "lens", &nl);
        f->nt = (int)nl, f->T = nT;
        f->tR = ref_f32(&r, "text_R", &ntR);
        f->Dt = (int)(ntR / nl);
        f->Ct = mmp_st_get(&r, "demb")->shape[1];
    }
    float *out = calloc(nR + 1, sizeof(float)), *tout = calloc(ntR + 1, sizeof(float));
    float *dimg = calloc(nimg + 1, sizeof(float)), *demb = calloc(nT * f->Ct + 1, sizeof(float));
    printf("%s (%s): %d parameters\n", name, family, f->P.n);

    /* 1 thread against the reference */
    set_threads(f, 1);
    mmp_tx_params_zero_grad(&f->P);
    run(f, out, tout, dimg, demb, 1);
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
    int nref = 0;
    for (int i = 0; i < r.n; i++)
        if (!strncmp(r.entries[i].name, "grad.", 5)) nref++;
    int matched = 0;
    for (int i = 0; i < f->P.n; i++) {
        mmp_tx_param *p = &f->P.p[i];
        char key[300];
        snprintf(key, sizeof key, "grad.%s", p->name);
        want = ref_f32(&r, key, &k);
        if (!want) { /* a parameter PyTorch gave no gradient: none here either */
            double mx = 0;
            for (size_t j = 0; j < p->n; j++) mx = fmax(mx, fabs(p->g[j]));
            CHECKF(mx == 0, "%s: %s has a gradient (max %g) where PyTorch has none", name, p->name, mx);
            continue;
        }
        matched++;
        CHECKF(k == p->n, "%s: %s has %zu floats, the reference %zu", name, p->name, p->n, k);
        const mmp_tensor *rt = mmp_st_get(&r, key);
        int same = rt->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = rt->shape[d] == p->shape[d];
        CHECKF(same, "%s: %s: the shape differs from PyTorch's", name, p->name);
        if (k != p->n) continue;
        float *g = p->g, *tmp = NULL;
        if (p->transposed) { /* ours [cols, rows], the file's [rows, cols] */
            g = tmp = malloc(sizeof(float) * k);
            for (int a = 0; a < p->rows; a++)
                for (int b = 0; b < p->cols; b++) tmp[(size_t)a * p->cols + b] = p->g[(size_t)b * p->rows + a];
        }
        compare_s(name, key, g, want, k, grad_scale(&f->P, p, want));
        free(tmp);
        free(want);
    }
    CHECKF(matched == nref, "%s: %d of the reference's %d gradients have a parameter here", name, matched, nref);

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
    for (int k = 2; k <= 6; k++) { /* 5, 6: 1 and 3 threads with activation recomputation */
        const int t = k <= 4 ? k : 2 * k - 9, rc = k > 4;
        set_threads(f, t);
        if (f->is_bert) mmp_bert_set_recompute(&f->bert, rc);
        else mmp_tx_model_set_recompute(f->m, rc);
        mmp_tx_params_zero_grad(&f->P);
        memset(dimg, 0, sizeof(float) * nimg), memset(demb, 0, sizeof(float) * nT * f->Ct);
        run(f, out, tout, dimg, demb, 1);
        const char *how = rc ? " (recompute)" : "";
        CHECKF(!memcmp(out, out1, sizeof(float) * nR) && !memcmp(tout, tout1, sizeof(float) * ntR), "%s: %d threads%s: other outputs",
               name, t, how);
        CHECKF(!memcmp(dimg, dimg1, sizeof(float) * nimg) && !memcmp(demb, demb1, sizeof(float) * nT * f->Ct),
               "%s: %d threads%s: other input gradients", name, t, how);
        for (int i = 0; i < f->P.n; i++)
            CHECKF(!memcmp(g1[i], f->P.p[i].g, sizeof(float) * f->P.p[i].n), "%s: %d threads%s: %s differs", name, t, how,
                   f->P.p[i].name);
    }
    set_threads(f, 1);
    if (f->is_bert) mmp_bert_set_recompute(&f->bert, 0);
    else mmp_tx_model_set_recompute(f->m, 0);

    /* gradients accumulate (+=): a second backward without zeroing doubles them */
    run(f, out, tout, NULL, NULL, 1);
    for (int i = 0; i < f->P.n; i++) {
        double dm = 0, wm = 0;
        for (size_t j = 0; j < f->P.p[i].n; j++)
            dm = fmax(dm, fabs(f->P.p[i].g[j] - 2.0 * g1[i][j])), wm = fmax(wm, fabs(2.0 * g1[i][j]));
        wm = fmax(wm, grad_scale(&f->P, &f->P.p[i], f->P.p[i].g));
        CHECKF(dm <= 1e-5 * wm, "%s: %s does not accumulate (%.3g of %.3g)", name, f->P.p[i].name, dm, wm);
    }
    mmp_tx_params_zero_grad(&f->P);
    run(f, out, tout, NULL, NULL, 1);

    /* finite differences: (L(w + h) - L(w - h)) / 2h */
    for (int i = 0; i < f->P.n; i++) {
        mmp_tx_param *p = &f->P.p[i];
        double gmax = 0;
        size_t imax = 0;
        for (size_t j = 0; j < p->n; j++)
            if (fabs(g1[i][j]) > gmax) gmax = fabs(g1[i][j]), imax = j;
        if (gmax == 0) continue;
        gmax = fmax(gmax, grad_scale(&f->P, p, p->g));
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

    /* bad inputs: NULL and one line naming the model */
    if (f->imgs) {
        CHECK(!mmp_tx_image_fwd_train(f->m, f->imgs, 1, f->H + 1, f->W, f->which, out, err, sizeof err));
        CHECKF(strstr(err, "not a multiple of the patch size") && !strchr(err, '\n'), "%s", err);
    }
    if (f->ids) {
        int32_t bad[2] = {0, 1 << 20};
        int two = 2;
        mmp_tx_saved *a = f->is_bert ? mmp_bert_fwd_train(&f->bert, bad, &two, 1, tout, err, sizeof err)
                                     : mmp_tx_text_fwd_train(f->m, bad, &two, 1, MMP_TX_OUT_EMBED, tout, err, sizeof err);
        CHECK(!a);
        CHECKF(strstr(err, "outside the vocabulary") && !strchr(err, '\n'), "%s", err);
    }

    /* 5 optimizer steps through the whole model vs torch.optim (the weights
     * within 1e-5 of each tensor's largest magnitude) */
    static const char *kinds[] = {"sgd", "adamw"};
    for (int kk = 0; kk < 2; kk++) {
        char key[300];
        snprintf(key, sizeof key, "%s_loss", kinds[kk]);
        float *losses = ref_f32(&r, key, &k);
        if (!losses) continue;
        mmp_optim o;
        mmp_optim_defaults(&o, kk ? MMP_OPT_ADAMW : MMP_OPT_SGD);
        double lr = kk ? 1e-3 : 0.01;
        if (kk) o.weight_decay = 0.05;
        else o.momentum = 0.9, o.weight_decay = 0.01;
        mmp_param *v = mmp_tx_params_views(&f->P, err, sizeof err);
        CHECKF(v, "%s", err);
        if (!v) continue;
        double wl = 0;
        const int nsteps = (int)k;
        for (int step = 0; step < nsteps; step++) {
            mmp_tx_params_zero_grad(&f->P);
            double loss = run(f, out, tout, NULL, NULL, 1);
            wl = fmax(wl, fabs(loss - losses[step]) / fmax(1, fabs(losses[step])));
            mmp_optim_step(&o, v, f->P.n, step, lr);
        }
        CHECKF(wl <= 1e-5, "%s %s: the losses differ by %.3g", name, kinds[kk], wl);
        double before = worst_ref;
        worst_ref = 0;
        for (int i = 0; i < f->P.n; i++) {
            snprintf(key, sizeof key, "%s.%s", kinds[kk], f->P.p[i].name);
            float *want = ref_f32(&r, key, &k);
            CHECKF(want && k == f->P.p[i].n, "%s: no %s", name, key);
            if (want && k == f->P.p[i].n) {
                double dm = 0, wm = 0;
                for (size_t j = 0; j < k; j++)
                    dm = fmax(dm, fabs((double)f->P.p[i].w[j] - want[j])), wm = fmax(wm, fabs(want[j]));
                double e = dm / (wm > 0 ? wm : 1);
                worst_ref = fmax(worst_ref, e);
                CHECKF(e <= 1e-5, "%s: %s after %d steps: error %.3g of %.3g", name, key, nsteps, e, wm);
            }
            free(want);
        }
        printf("  %s: %d %s steps: loss error %.3g, weights %.3g\n", name, nsteps, kinds[kk], wl, worst_ref);
        worst_ref = fmax(before, worst_ref);
        mmp_tx_params_views_free(v, f->P.n);
        free(losses);
    }
    free(g1), free(out1), free(tout1), free(dimg1), free(demb1);
    free(out), free(tout), free(dimg), free(demb);
    free(f->imgs), free(f->R), free(f->tR), free(f->ids), free(f->lens);
    mmp_tx_params_free(&f->P);
    if (f->is_bert) mmp_bert_free(&f->bert);
    else mmp_tx_model_free(f->m);
    mmp_st_close(&r);
}

/* make_trainable on the inference fixtures (some F16, converted copies;
 * open_clip's transposed projections): the same outputs bit for bit, every
 * parameter named after a tensor of the file with its values, and a change
 * of a trainable weight is seen by the inference functions. */
static void check_trainable_copy(const char *fx) {
    char d[512], err[512];
    snprintf(d, sizeof d, "tests/fixtures/tx_models/%s", fx);
    snprintf(d, sizeof d, "%s", t_root_path(d));
    mmp_tx_model *m = mmp_tx_model_load(d, err, sizeof err);
    CHECKF(m, "%s", err);
    if (!m) return;
    const int n = 2, H = m->vision->gh * m->vision->P, W = m->vision->gw * m->vision->P;
    const int D = mmp_tx_image_dim(m, MMP_TX_OUT_EMBED);
    float *img = malloc(sizeof(float) * 3 * H * W * n), *o1 = malloc(sizeof(float) * D * n),
          *o2 = malloc(sizeof(float) * D * n);
    for (int i = 0; i < 3 * H * W * n; i++) img[i] = (float)((i * 37 % 101) - 50) / 40.0f;
    CHECK(mmp_tx_image_embed(m, img, n, H, W, MMP_TX_OUT_EMBED, o1, NULL, err, sizeof err) == 0);
    mmp_tx_params P;
    CHECKF(mmp_tx_make_trainable(m, &P, err, sizeof err) == 0, "%s", err);
    CHECK(mmp_tx_image_embed(m, img, n, H, W, MMP_TX_OUT_EMBED, o2, NULL, err, sizeof err) == 0);
    CHECKF(!memcmp(o1, o2, sizeof(float) * D * n), "%s: make_trainable changed the outputs", fx);
    mmp_safetensors *st = m->st;
    for (int i = 0; i < P.n; i++) {
        const mmp_tx_param *p = &P.p[i];
        const mmp_tensor *t = mmp_st_get(st, p->name);
        CHECKF(t && (size_t)mmp_numel(t->ndim, t->shape) == p->n, "%s: parameter '%s' is not a tensor of the file", fx,
               p->name);
        if (!t) continue;
        float *v = malloc(sizeof(float) * (p->n + 1));
        CHECK(mmp_st_read_f32(st, p->name, t->ndim, t->shape, v, err, sizeof err) == 0);
        int same = 1;
        for (size_t j = 0; j < p->n && same; j++) {
            size_t jj = j;
            if (p->transposed) jj = (j % (size_t)p->rows) * (size_t)p->cols + j / (size_t)p->rows;
            same = memcmp(&v[jj], &p->w[j], sizeof(float)) == 0;
        }
        CHECKF(same, "%s: parameter '%s' differs from the file", fx, p->name);
        free(v);
    }
    /* a weight changed: the output follows */
    mmp_tx_param *last = &P.p[0]; /* the patch embedding */
    for (size_t j = 0; j < last->n; j++) last->w[j] *= 2;
    CHECK(mmp_tx_image_embed(m, img, n, H, W, MMP_TX_OUT_EMBED, o2, NULL, err, sizeof err) == 0);
    CHECKF(memcmp(o1, o2, sizeof(float) * D * n), "%s: a change of '%s' is not seen", fx, last->name);
    printf("%s: %d trainable parameters, outputs unchanged\n", fx, P.n);
    mmp_tx_params_free(&P);
    mmp_tx_model_free(m);
    free(img), free(o1), free(o2);
}

int main(void) {
    static const char *copies[] = {"timm_cls", "clip_oc", "vit_hf"};
    for (size_t i = 0; i < sizeof copies / sizeof *copies; i++) check_trainable_copy(copies[i]);
    static const char *fixtures[] = {"vit_hf", "vit_hf_adamw", "vit_hf_pooler", "timm", "clip_hf", "clip_oc", "bert"};
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) check_fixture(fixtures[i]);
    printf("worst error vs PyTorch %.3g (of each tensor's largest magnitude), worst finite difference %.3g\n",
           worst_ref, worst_fd);
    TEST_END();
}
