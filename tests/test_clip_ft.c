/* CLIP contrastive fine-tuning (train/clip_ft.h) vs PyTorch on tiny random
 * Hugging Face CLIPModel and open_clip CLIP models
 * (tests/fixtures/gen_clip_ft.py): open_clip's ClipLoss on one batch, the
 * logits, every parameter's gradient (both towers, projections,
 * logit_scale) and the pixels' gradient within 1e-4 of each tensor's largest
 * magnitude (a bias's scale includes its weight's, as tests/test_tx_train.c);
 * 5 AdamW steps with open_clip's weight-decay groups and the logit_scale
 * clamp within 1e-5 (the key biases excepted: their gradient is zero in
 * exact arithmetic, softmax being shift-invariant, so both sides' are
 * rounding noise that Adam's normalization turns into steps of up to lr:
 * bounded by 2 * steps * lr); LiT (image tower locked): the same text and
 * logit_scale gradients, its own 5 AdamW steps vs PyTorch, the locked
 * tower's tensors bit-identical afterwards, and --lock text likewise;
 * 1..4 threads bit for bit; the saved state dict holds the trained tensors
 * under the file's names and loads back. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmp.h"
#include "st_testlib.h"
#include "testlib.h"
#include "train/clip_ft.h"

static double worst = 0, worst_adam = 0;

static double maxabs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

/* max |got - want| / max(scale, max |want|) <= tol */
static double compare(const char *fx, const char *what, const float *got, const float *want, size_t n, double scale, double tol) {
    double dm = 0, wm = scale;
    size_t where = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= dm)) dm = d, where = i;
        if (fabs(want[i]) > wm) wm = fabs(want[i]);
    }
    double rel = dm / (wm > 0 ? wm : 1);
    CHECKF(rel <= tol, "%s %s: element %zu is %.9g, expected %.9g (rel error %.3g of %.3g)", fx, what, where, n ? got[where] : 0,
           n ? want[where] : 0, rel, wm);
    return rel;
}

/* the parameter's values / gradient in the file's layout (a transposed one back) */
static float *file_layout(const mmp_tx_param *p, const float *x) {
    float *o = malloc(sizeof(float) * (p->n ? p->n : 1));
    if (!p->transposed) memcpy(o, x, sizeof(float) * p->n);
    else
        for (int r = 0; r < p->rows; r++)
            for (int c = 0; c < p->cols; c++) o[(size_t)r * p->cols + c] = x[(size_t)c * p->rows + r];
    return o;
}

static int is_image(const mmp_tx_model *m, const char *n) {
    return m->family == MMP_TXM_CLIP_HF ? !strncmp(n, "vision_model.", 13) || !strncmp(n, "visual_projection", 17)
                                        : !strncmp(n, "visual.", 7);
}

typedef struct {
    const char *name;
    char dir[512];
    mmp_safetensors r;
    float *imgs;
    int32_t *ids;
    int *lens;
    int n, H, W;
    mmp_optim opt;
    double lr;
    int steps;
} fixture;

static mmp_tx_model *load(fixture *f, mmp_clipft *ft, int lock, int threads) {
    char err[512];
    mmp_tx_model *m = mmp_tx_model_load(f->dir, err, sizeof err);
    if (!m) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    mmp_tx_model_set_threads(m, threads);
    if (mmp_clipft_init(ft, m, lock, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    return m;
}

static double batch(fixture *f, mmp_clipft *ft, float *logits, float *dimgs) {
    char err[512] = "";
    double l = mmp_clipft_batch(ft, f->imgs, f->n, f->H, f->W, f->ids, f->lens, 1, logits, dimgs, err, sizeof err);
    if (err[0]) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    return l;
}

/* the gradient of a trainable parameter vs grad.NAME */
static void check_grad(fixture *f, mmp_clipft *ft, const char *pname, const float *g, size_t n, const mmp_tx_param *p, const char *what) {
    char key[300];
    snprintf(key, sizeof key, "grad.%s", pname);
    size_t k;
    float *want = t_st_f32(&f->r, key, &k, 1);
    CHECKF(k == n, "%s %s: %zu values, the reference %zu", f->name, key, n, k);
    float *got = p ? file_layout(p, g) : (float *)g;
    double scale = 0;
    size_t L = strlen(pname);
    if (p && L > 4 && !strcmp(pname + L - 4, "bias")) { /* and its weight's gradient */
        char w[300];
        snprintf(w, sizeof w, "%.*sweight", (int)(L - 4), pname);
        mmp_tx_param *q = mmp_tx_params_find(&ft->P, w);
        if (q) scale = maxabs(q->g, q->n);
    }
    char wh[400];
    snprintf(wh, sizeof wh, "%s %s", what, key);
    double e = compare(f->name, wh, got, want, k < n ? k : n, scale, 1e-4);
    if (e > worst) worst = e;
    if (p) free(got);
    free(want);
}

/* 1 when the tensor's entry i is a key bias (see the top) */
static int key_bias(const mmp_tx_param *p, size_t i) {
    if (strstr(p->name, "k_proj.bias")) return 1;
    if (strstr(p->name, "in_proj_bias")) return i >= p->n / 3 && i < 2 * p->n / 3;
    return 0;
}

/* steps of AdamW vs KIND_loss and KIND.NAME */
static void check_steps(fixture *f, int lock, const char *kind) {
    mmp_clipft ft;
    mmp_tx_model *m = load(f, &ft, lock, 1);
    /* the locked tower's tensors before */
    int np = ft.P.n;
    float **before = calloc((size_t)np, sizeof *before);
    for (int i = 0; i < np; i++) {
        before[i] = malloc(sizeof(float) * (ft.P.p[i].n ? ft.P.p[i].n : 1));
        memcpy(before[i], ft.P.p[i].w, sizeof(float) * ft.P.p[i].n);
    }
    char key[300];
    snprintf(key, sizeof key, "%s_loss", kind);
    size_t nl;
    float *wl = lock == MMP_CLIPFT_LOCK_TEXT ? NULL : t_st_f32(&f->r, key, &nl, 1);
    for (int s = 0; s < f->steps; s++) {
        float l = (float)batch(f, &ft, NULL, NULL);
        if (wl) compare(f->name, key, &l, wl + s, 1, 0, 1e-5);
        mmp_clipft_update(&ft, &f->opt, 0, s, f->lr);
    }
    free(wl);
    for (int i = 0; i < np; i++) {
        mmp_tx_param *p = &ft.P.p[i];
        int img = is_image(m, p->name);
        int locked = (img && lock == MMP_CLIPFT_LOCK_IMAGE) || (!img && lock == MMP_CLIPFT_LOCK_TEXT);
        if (locked) {
            CHECKF(!memcmp(before[i], p->w, sizeof(float) * p->n), "%s %s: the locked tensor %s changed", f->name, kind, p->name);
            continue;
        }
        if (lock == MMP_CLIPFT_LOCK_TEXT) {
            CHECKF(memcmp(before[i], p->w, sizeof(float) * p->n), "%s %s: %s did not train", f->name, kind, p->name);
            continue;
        }
        snprintf(key, sizeof key, "%s.%s", kind, p->name);
        size_t k;
        float *want = t_st_f32(&f->r, key, &k, 1), *got = file_layout(p, p->w);
        CHECK(k == p->n);
        /* the key biases apart: |diff| <= 2 steps lr */
        double dm = 0, wm = maxabs(want, k), kb = 0;
        size_t where = 0;
        for (size_t j = 0; j < k; j++) {
            double d = fabs((double)got[j] - want[j]);
            if (key_bias(p, j)) kb = fmax(kb, d);
            else if (d > dm) dm = d, where = j;
        }
        double rel = dm / (wm > 0 ? wm : 1);
        if (rel > worst_adam) worst_adam = rel;
        CHECKF(rel <= 1e-5, "%s %s: element %zu is %.9g, expected %.9g (rel error %.3g of %.3g)", f->name, key, where, got[where],
               want[where], rel, wm);
        CHECKF(kb <= 2 * f->steps * f->lr, "%s %s: a key bias moved %.3g from PyTorch's", f->name, key, kb);
        free(want), free(got);
    }
    if (lock != MMP_CLIPFT_LOCK_TEXT) {
        snprintf(key, sizeof key, "%s.logit_scale", kind);
        float *want = t_st_f32(&f->r, key, NULL, 1);
        /* near the clamp at 0 (oc) the value is a few steps of lr: lr is its scale */
        compare(f->name, key, ft.scale.w, want, 1, f->lr, 1e-5);
        CHECK(m->logit_scale == ft.scale.w[0]);
        CHECK(ft.scale.w[0] >= 0 && ft.scale.w[0] <= 4.6051702f);
        free(want);
    }
    for (int i = 0; i < np; i++) free(before[i]);
    free(before);
    mmp_clipft_free(&ft);
    mmp_tx_model_free(m);
}

static void check_fixture(const char *name) {
    fixture F = {.name = name};
    fixture *f = &F;
    char path[1200];
    snprintf(f->dir, sizeof f->dir, "%s/%s", t_root_path("tests/fixtures/clip_ft"), name);
    snprintf(path, sizeof path, "%s/ref.safetensors", f->dir);
    mmp_st_open_or_die(&f->r, path);
    const mmp_tensor *it = mmp_st_get(&f->r, "images"), *lt = mmp_st_get(&f->r, "lens"), *dt = mmp_st_get(&f->r, "ids");
    CHECK(it && lt && dt && it->ndim == 4 && lt->dtype == MMP_I32 && dt->dtype == MMP_I32);
    f->n = (int)it->shape[0], f->H = (int)it->shape[2], f->W = (int)it->shape[3];
    f->imgs = t_st_f32(&f->r, "images", NULL, 1);
    f->lens = malloc(sizeof(int) * (size_t)f->n);
    for (int i = 0; i < f->n; i++) f->lens[i] = ((const int32_t *)lt->data)[i];
    f->ids = malloc(sizeof(int32_t) * (size_t)mmp_numel(dt->ndim, dt->shape));
    memcpy(f->ids, dt->data, sizeof(int32_t) * (size_t)mmp_numel(dt->ndim, dt->shape));
    mmp_optim_defaults(&f->opt, MMP_OPT_ADAMW);
    const mmp_meta *mt = &f->r.meta;
    f->lr = atof(mmp_meta_get(mt, "lr"));
    f->opt.weight_decay = atof(mmp_meta_get(mt, "weight_decay"));
    f->opt.beta1 = atof(mmp_meta_get(mt, "beta1"));
    f->opt.beta2 = atof(mmp_meta_get(mt, "beta2"));
    f->opt.eps = atof(mmp_meta_get(mt, "eps"));
    f->steps = atoi(mmp_meta_get(mt, "steps"));

    /* loss, logits, gradients; threads 1..4 bit for bit */
    size_t nn = (size_t)f->n * f->n, ni = (size_t)f->n * 3 * f->H * f->W;
    float *logits = malloc(sizeof(float) * nn), *dimgs = malloc(sizeof(float) * ni);
    float *logits1 = NULL, *dimgs1 = NULL, **g1 = NULL;
    double loss1 = 0;
    int ng = 0; /* trainable tensors */
    for (int t = 1; t <= 4; t++) {
        mmp_clipft ft;
        mmp_tx_model *m = load(f, &ft, MMP_CLIPFT_LOCK_NONE, t);
        float l = (float)batch(f, &ft, logits, dimgs);
        if (t == 1) {
            float *wl = t_st_f32(&f->r, "loss", NULL, 1), *wlog = t_st_f32(&f->r, "logits", NULL, 1),
                  *wd = t_st_f32(&f->r, "dimages", NULL, 1);
            worst = fmax(worst, compare(name, "loss", &l, wl, 1, 0, 1e-4));
            worst = fmax(worst, compare(name, "logits", logits, wlog, nn, 0, 1e-4));
            worst = fmax(worst, compare(name, "dimages", dimgs, wd, ni, 0, 1e-4));
            free(wl), free(wlog), free(wd);
            int refs = 0;
            for (int i = 0; i < f->r.n; i++) refs += !strncmp(f->r.entries[i].name, "grad.", 5);
            CHECKF(refs == ft.ntr, "%s: %d trainable parameters, PyTorch has %d", name, ft.ntr, refs);
            for (int i = 0; i < ft.P.n; i++) check_grad(f, &ft, ft.P.p[i].name, ft.P.p[i].g, ft.P.p[i].n, &ft.P.p[i], "full");
            check_grad(f, &ft, "logit_scale", ft.scale.g, 1, NULL, "full");
            /* weight decay groups: open_clip's */
            for (int i = 0; i < ft.ntr; i++) {
                const mmp_param *p = &ft.tr[i];
                int want = !(p->ndim < 2 || strstr(p->name, "bias") || strstr(p->name, "ln") || !strcmp(p->name, "logit_scale"));
                CHECKF(p->decay == want, "%s: %s decay %d", name, p->name, p->decay);
            }
            loss1 = l;
            logits1 = logits, dimgs1 = dimgs;
            logits = malloc(sizeof(float) * nn), dimgs = malloc(sizeof(float) * ni);
            ng = ft.ntr;
            g1 = calloc((size_t)(ng > 0 ? ng : 1), sizeof *g1);
            for (int i = 0; i < ng; i++) {
                g1[i] = malloc(sizeof(float) * (ft.tr[i].n ? ft.tr[i].n : 1));
                memcpy(g1[i], ft.tr[i].g, sizeof(float) * ft.tr[i].n);
            }
        } else {
            CHECKF(l == (float)loss1 && !memcmp(logits, logits1, sizeof(float) * nn) && !memcmp(dimgs, dimgs1, sizeof(float) * ni),
                   "%s: %d threads: another loss, logits or pixel gradient", name, t);
            for (int i = 0; i < ng; i++)
                CHECKF(!memcmp(g1[i], ft.tr[i].g, sizeof(float) * ft.tr[i].n), "%s: %d threads: another gradient of %s", name, t,
                       ft.tr[i].name);
        }
        if (t == 1) { /* the state dict: every tensor of the file, the trained ones in the file's layout */
            char out[700], err[512];
            snprintf(out, sizeof out, "clip_ft_%s_%d.safetensors", name, (int)getpid());
            ft.P.p[0].w[0] += 1.0f; /* a changed weight must show */
            ft.scale.w[0] = 1.25f;
            CHECK(mmp_clipft_save_weights(&ft, out, NULL, err, sizeof err) == 0);
            mmp_safetensors o;
            mmp_st_open_or_die(&o, out);
            const mmp_safetensors *src = m->st;
            CHECK(o.n == src->n);
            for (int i = 0; i < ft.P.n; i++) {
                const mmp_tx_param *p = &ft.P.p[i];
                float *want = file_layout(p, p->w), *got = t_st_f32(&o, p->name, NULL, 1);
                CHECKF(!memcmp(want, got, sizeof(float) * p->n), "%s: saved %s differs", name, p->name);
                free(want), free(got);
            }
            float *ls = t_st_f32(&o, "logit_scale", NULL, 1);
            CHECK(ls[0] == 1.25f);
            free(ls);
            mmp_st_close(&o);
            unlink(out);
        }
        mmp_clipft_free(&ft);
        mmp_tx_model_free(m);
    }

    /* LiT: the same text and logit_scale gradients, no image-tower gradient */
    {
        mmp_clipft ft;
        mmp_tx_model *m = load(f, &ft, MMP_CLIPFT_LOCK_IMAGE, 2);
        float l = (float)batch(f, &ft, NULL, NULL);
        CHECK(l == (float)loss1);
        int nimg = 0;
        for (int i = 0; i < ft.ntr; i++) {
            const mmp_param *p = &ft.tr[i];
            nimg += is_image(m, p->name);
            mmp_tx_param *q = mmp_tx_params_find(&ft.P, p->name);
            if (q) check_grad(f, &ft, q->name, q->g, q->n, q, "lit");
        }
        CHECK(nimg == 0);
        check_grad(f, &ft, "logit_scale", ft.scale.g, 1, NULL, "lit");
        for (int i = 0; i < ft.P.n; i++)
            if (is_image(m, ft.P.p[i].name)) CHECK(maxabs(ft.P.p[i].g, ft.P.p[i].n) == 0);
        mmp_clipft_free(&ft);
        mmp_tx_model_free(m);
    }
    check_steps(f, MMP_CLIPFT_LOCK_NONE, "adamw");
    check_steps(f, MMP_CLIPFT_LOCK_IMAGE, "lit");
    check_steps(f, MMP_CLIPFT_LOCK_TEXT, "lock-text");
    for (int i = 0; i < ng; i++) free(g1[i]);
    free(g1), free(logits), free(dimgs), free(logits1), free(dimgs1);
    free(f->imgs), free(f->ids), free(f->lens);
    mmp_st_close(&f->r);
}

int main(void) {
    check_fixture("hf");
    check_fixture("oc");
    /* open_clip's exclusion rule by name and shape */
    CHECK(mmp_clipft_no_decay("logit_scale", 0) && mmp_clipft_no_decay("visual.ln_pre.weight", 1) &&
          mmp_clipft_no_decay("transformer.resblocks.0.attn.in_proj_bias", 1) && !mmp_clipft_no_decay("visual.proj", 2) &&
          mmp_clipft_no_decay("x.bn.weight", 2) && !mmp_clipft_no_decay("positional_embedding", 2));
    printf("worst error vs PyTorch: gradients %.3g, after AdamW steps %.3g (of each tensor's largest magnitude)\n", worst, worst_adam);
    TEST_END();
}
