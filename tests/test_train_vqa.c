/* The VQA models of mmp-train-step (train/vqa.h) against their PyTorch
 * reference (tests/fixtures/gen_vqa.py: VQAFusion with nn.MultiheadAttention
 * cross-attention, VQAPooled): from the same weights and packed batch, the
 * logits, the loss (soft-score BCE and CE) and every parameter gradient
 * within 1e-4, then a few torch.optim.AdamW steps: the losses and every
 * weight within 1e-5. Also: the initialization's shapes and statistics,
 * and the same bits for a record whatever its batch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "testlib.h"
#include "st_testlib.h"
#include "train/optim.h"
#include "train/vqa.h"

static void cmp(const char *what, const float *a, const float *b, size_t n, double tol) {
    size_t w;
    double r = t_maxrel(a, b, n, tol, tol, &w);
    printf("  %-44s n=%-5zu worst %.3g (tol %.0e)\n", what, n, r * tol, tol);
    CHECKF(r <= 1, "%s differs at %zu: %.9g vs %.9g", what, w, a[w], b[w]);
}

static void run_case(const char *file) {
    printf("%s\n", file);
    mmp_safetensors st;
    mmp_st_open_or_die(&st, t_root_path(file));
    mmp_vqa_config c = {.pooled = t_st_meta_int(&st, "pooled"), .Ci = t_st_meta_int(&st, "Ci"), .Cq = t_st_meta_int(&st, "Cq"),
                        .D = t_st_meta_int(&st, "D"), .NH = t_st_meta_int(&st, "heads"), .L = t_st_meta_int(&st, "layers"),
                        .IL = t_st_meta_int(&st, "img_layers"),
                        .npos = t_st_meta_int(&st, "npos"), .hidden = t_st_meta_int(&st, "hidden"), .K = t_st_meta_int(&st, "K")};
    int bce = t_st_meta_int(&st, "bce"), steps = t_st_meta_int(&st, "steps");
    double lr = atof(mmp_meta_get(&st.meta, "lr")), wd = atof(mmp_meta_get(&st.meta, "weight_decay"));
    char err[256];
    mmp_vqa *m = mmp_vqa_new(&c, err, sizeof err);
    CHECKF(m != NULL, "%s", err);
    if (!m) return;
    int np;
    mmp_param *p = mmp_vqa_params(m, &np);
    /* every parameter of the torch module, same shapes, no other */
    int nfix = 0;
    for (int i = 0; i < st.n; i++) nfix += !strncmp(st.entries[i].name, "init.", 5);
    CHECKF(nfix == np, "%d parameters, the module has %d", np, nfix);
    char nm[200];
    for (int i = 0; i < np; i++) {
        snprintf(nm, sizeof nm, "init.%s", p[i].name);
        const mmp_tensor *t = t_st_get(&st, nm);
        CHECKF(t->nbytes == p[i].n * sizeof(float) && t->ndim == p[i].ndim, "%s: shape", p[i].name);
        memcpy(p[i].w, t->data, p[i].n * sizeof(float));
    }
    const mmp_tensor *kl = t_st_get(&st, "kvlens"), *ql = t_st_get(&st, "qlens");
    int B = (int)ql->shape[0];
    const float *xi = t_st_get(&st, "xi")->data, *xq = t_st_get(&st, "xq")->data;
    const int *kvlens = kl->data, *qlens = ql->data;
    float *t = NULL;
    int64_t *y = NULL;
    if (bce) t = (float *)t_st_get(&st, "t")->data;
    else {
        y = calloc((size_t)B, sizeof *y);
        for (int b = 0; b < B; b++) y[b] = (int64_t)((const float *)t_st_get(&st, "y")->data)[b];
    }
    float *logits = calloc((size_t)B * c.K, sizeof(float)), *dl = calloc((size_t)B * c.K, sizeof(float));
    mmp_vqa_forward(m, xi, kvlens, xq, qlens, B, logits);
    cmp("logits", logits, t_st_get(&st, "logits0")->data, (size_t)B * c.K, 1e-4);
    float loss = (float)mmp_vqa_loss(logits, t, y, B, c.K, bce, dl);
    cmp(bce ? "loss (soft-score BCE)" : "loss (CE)", &loss, t_st_get(&st, "loss0")->data, 1, 1e-4);
    mmp_vqa_backward(m, dl);
    for (int i = 0; i < np; i++) {
        snprintf(nm, sizeof nm, "grad.%s", p[i].name);
        cmp(nm, p[i].g, t_st_get(&st, nm)->data, p[i].n, 1e-4);
    }
    /* the same bits for record 1 alone as in the batch */
    {
        int a = kvlens[0], q = qlens[0];
        float l1[64];
        mmp_vqa_forward(m, xi + (size_t)a * c.Ci, kvlens + 1, xq + (size_t)q * c.Cq, qlens + 1, 1, l1);
        CHECK(!memcmp(l1, logits + c.K, sizeof(float) * c.K));
    }
    /* AdamW steps */
    mmp_optim o;
    mmp_optim_defaults(&o, MMP_OPT_ADAMW);
    o.weight_decay = wd;
    float *losses = calloc((size_t)steps, sizeof(float));
    for (int s = 0; s < steps; s++) {
        mmp_vqa_forward(m, xi, kvlens, xq, qlens, B, logits);
        losses[s] = (float)mmp_vqa_loss(logits, t, y, B, c.K, bce, dl);
        mmp_vqa_backward(m, dl);
        mmp_optim_step(&o, p, np, s, lr);
    }
    cmp("AdamW losses", losses, t_st_get(&st, "losses")->data, (size_t)steps, 1e-5);
    double worst = 0;
    for (int i = 0; i < np; i++) {
        snprintf(nm, sizeof nm, "final.%s", p[i].name);
        size_t w;
        double r = t_maxrel(p[i].w, t_st_get(&st, nm)->data, p[i].n, 1e-5, 1e-5, &w);
        CHECKF(r <= 1, "%s after %d AdamW steps differs at %zu: %.9g vs %.9g", nm, steps, w, p[i].w[w],
               ((const float *)t_st_get(&st, nm)->data)[w]);
        if (r > worst) worst = r;
    }
    printf("  %-44s worst %.3g (tol 1e-05)\n", "weights after AdamW", worst * 1e-5);
    free(losses), free(logits), free(dl), free(y);
    mmp_vqa_free(m);
    mmp_st_close(&st);
}

static void check_init(void) {
    mmp_vqa_config c = {.Ci = 64, .Cq = 32, .D = 48, .NH = 4, .L = 2, .npos = 9, .hidden = 40, .K = 10};
    char err[256];
    mmp_vqa *m = mmp_vqa_new(&c, err, sizeof err);
    CHECK(m != NULL);
    mmp_vqa_init_weights(m, 7);
    mmp_param *w = mmp_vqa_param(m, "layers.1.attn.in_proj_weight"), *b = mmp_vqa_param(m, "layers.1.attn.in_proj_bias");
    mmp_param *pos = mmp_vqa_param(m, "img_pos"), *ln = mmp_vqa_param(m, "layers.0.ln2.weight");
    CHECK(w && w->shape[0] == 144 && w->shape[1] == 48 && b && pos && pos->shape[0] == 9 && ln);
    double mx = 0, s2 = 0;
    for (size_t i = 0; i < w->n; i++) mx = fabs(w->w[i]) > mx ? fabs(w->w[i]) : mx;
    for (size_t i = 0; i < pos->n; i++) s2 += (double)pos->w[i] * pos->w[i];
    CHECK(mx <= sqrt(6.0 / (48 + 144)) && mx > 0.9 * sqrt(6.0 / (48 + 144))); /* xavier_uniform_ */
    CHECK(b->w[0] == 0 && ln->w[3] == 1);
    CHECKF(fabs(sqrt(s2 / pos->n) - 0.02) < 0.005, "img_pos std %.4f", sqrt(s2 / pos->n));
    mmp_vqa_free(m);
    c.D = 50;
    CHECK(mmp_vqa_new(&c, err, sizeof err) == NULL && strstr(err, "multiple"));
}

int main(void) {
    mmp_set_progname("test_train_vqa");
    run_case("tests/fixtures/vqa/cross_bce_pos.safetensors");
    run_case("tests/fixtures/vqa/cross_ce.safetensors");
    run_case("tests/fixtures/vqa/pooled_bce.safetensors");
    run_case("tests/fixtures/vqa/pooled_ce.safetensors");
    run_case("tests/fixtures/vqa/img_bce_pos.safetensors");
    run_case("tests/fixtures/vqa/img_ce.safetensors");
    check_init();
    TEST_END();
}
