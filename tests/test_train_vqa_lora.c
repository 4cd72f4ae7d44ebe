/* mmp-train-step --head vqa|vqa-pooled --text-unfreeze lora against PyTorch
 * (tests/fixtures/gen_vqa_lora.py: a transformers BertModel with peft 0.4
 * LoRA adapters whose last hidden states are the question tokens of
 * gen_vqa.py's VQAFusion / VQAPooled): from the same weights, adapters and
 * batch, the tower's output, the logits, the loss and the gradients of the
 * fusion model's parameters and of every adapter (d loss / d question tokens
 * back through the tower: train/vqa.h mmp_vqa_backward_q, tx/train.h
 * mmp_bert_fwd_train_tokens / mmp_bert_bwd) within 1e-4; then AdamW steps
 * on both: the losses and every weight within 1e-5. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "testlib.h"
#include "st_testlib.h"
#include "text/bert.h"
#include "train/optim.h"
#include "train/vqa.h"
#include "tx/lora_train.h"
#include "tx/train.h"

static double cmp(const char *what, const float *a, const float *b, size_t n, double tol, int quiet) {
    size_t w;
    double r = t_maxrel(a, b, n, tol, tol, &w);
    if (!quiet) printf("  %-72s n=%-5zu worst %.3g (tol %.0e)\n", what, n, r * tol, tol);
    CHECKF(r <= 1, "%s differs at %zu: %.9g vs %.9g", what, w, a[w], b[w]);
    return r * tol;
}

static void run_case(const char *file, int threads) {
    printf("%s (%d threads)\n", file, threads);
    mmp_safetensors st;
    mmp_st_open_or_die(&st, t_root_path(file));
    mmp_vqa_config c = {.pooled = t_st_meta_int(&st, "pooled"), .Ci = t_st_meta_int(&st, "Ci"), .Cq = t_st_meta_int(&st, "Cq"),
                        .D = t_st_meta_int(&st, "D"), .NH = t_st_meta_int(&st, "heads"), .L = t_st_meta_int(&st, "layers"),
                        .npos = t_st_meta_int(&st, "npos"), .hidden = t_st_meta_int(&st, "hidden"), .K = t_st_meta_int(&st, "K")};
    int bce = t_st_meta_int(&st, "bce"), steps = t_st_meta_int(&st, "steps");
    double lr = atof(mmp_meta_get(&st.meta, "lr")), wd = atof(mmp_meta_get(&st.meta, "weight_decay"));
    char err[1024], path[512];
    /* the tower and its adapters */
    snprintf(path, sizeof path, "tests/fixtures/%s/model.safetensors", mmp_meta_get(&st.meta, "base"));
    mmp_bert bert;
    CHECKF(mmp_bert_load(&bert, t_root_path(path), 0, err, sizeof err) == 0, "%s", err);
    mmp_tx_lora_opts lo;
    mmp_tx_lora_opts_default(&lo);
    lo.r = t_st_meta_int(&st, "r"), lo.alpha = atof(mmp_meta_get(&st.meta, "alpha")), lo.targets = mmp_meta_get(&st.meta, "targets");
    mmp_tx_params P;
    memset(&P, 0, sizeof P);
    mmp_tx_lora_set *ls = mmp_bert_lora_add(&bert, &lo, &P, err, sizeof err);
    CHECKF(ls != NULL, "%s", err);
    mmp_bert_set_threads(&bert, threads);
    mmp_param *pv = mmp_tx_params_views(&P, err, sizeof err);
    int nfix = 0;
    for (int i = 0; i < st.n; i++) nfix += !strncmp(st.entries[i].name, "lora_init.", 10);
    CHECKF(nfix == P.n, "%d adapter tensors, PEFT has %d", P.n, nfix);
    char nm[256];
    for (int i = 0; i < P.n; i++) {
        snprintf(nm, sizeof nm, "lora_init.%s", P.p[i].name);
        const mmp_tensor *t = t_st_get(&st, nm);
        CHECKF(t->nbytes == P.p[i].n * sizeof(float), "%s: shape", nm);
        memcpy(P.p[i].w, t->data, P.p[i].n * sizeof(float));
    }
    /* the fusion model */
    mmp_vqa *m = mmp_vqa_new(&c, err, sizeof err);
    CHECKF(m != NULL, "%s", err);
    int np;
    mmp_param *p = mmp_vqa_params(m, &np);
    for (int i = 0; i < np; i++) {
        snprintf(nm, sizeof nm, "init.%s", p[i].name);
        memcpy(p[i].w, t_st_get(&st, nm)->data, p[i].n * sizeof(float));
    }
    const mmp_tensor *ql = t_st_get(&st, "qlens"), *idt = t_st_get(&st, "ids");
    int B = (int)ql->shape[0], Tq = (int)idt->shape[0];
    const float *xi = t_st_get(&st, "xi")->data;
    const int *kvlens = t_st_get(&st, "kvlens")->data, *qlens = ql->data;
    const int32_t *ids = idt->data;
    float *t = NULL;
    int64_t *y = NULL;
    if (bce) t = (float *)t_st_get(&st, "t")->data;
    else {
        y = calloc((size_t)B, sizeof *y);
        for (int b = 0; b < B; b++) y[b] = (int64_t)((const float *)t_st_get(&st, "y")->data)[b];
    }
    float *xq = calloc((size_t)Tq * c.Cq, sizeof(float)), *dxq = calloc((size_t)Tq * c.Cq, sizeof(float));
    float *logits = calloc((size_t)B * c.K, sizeof(float)), *dl = calloc((size_t)B * c.K, sizeof(float));
    /* one training step's forward and backward, as vqa_cmd.c runs it */
    mmp_tx_saved *sv = mmp_bert_fwd_train_tokens(&bert, ids, qlens, B, 0, xq, err, sizeof err);
    CHECKF(sv != NULL, "%s", err);
    cmp("question tokens (last hidden states with the adapters)", xq, t_st_get(&st, "xq0")->data, (size_t)Tq * c.Cq, 1e-4, 0);
    {   /* the inference forward (mmp-eval's, the dev set's) gives the same bits */
        float *xq2 = calloc((size_t)Tq * c.Cq, sizeof(float));
        mmp_bert_forward(&bert, ids, qlens, B, xq2);
        CHECK(!memcmp(xq, xq2, sizeof(float) * (size_t)Tq * c.Cq));
        free(xq2);
    }
    mmp_vqa_forward(m, xi, kvlens, xq, qlens, B, logits);
    cmp("logits", logits, t_st_get(&st, "logits0")->data, (size_t)B * c.K, 1e-4, 0);
    float loss = (float)mmp_vqa_loss(logits, t, y, B, c.K, bce, dl);
    cmp(bce ? "loss (soft-score BCE)" : "loss (CE)", &loss, t_st_get(&st, "loss0")->data, 1, 1e-4, 0);
    mmp_vqa_backward_q(m, dl, dxq);
    mmp_tx_params_zero_grad(&P);
    mmp_bert_bwd(&bert, sv, dxq, P.bert, NULL);
    mmp_tx_saved_free(sv);
    double worst = 0, r;
    for (int i = 0; i < np; i++) {
        snprintf(nm, sizeof nm, "grad.%s", p[i].name);
        r = cmp(nm, p[i].g, t_st_get(&st, nm)->data, p[i].n, 1e-4, 1);
        worst = r > worst ? r : worst;
    }
    printf("  %-72s worst %.3g (tol 1e-04)\n", "fusion model gradients", worst);
    for (int i = 0; i < P.n; i++) {
        snprintf(nm, sizeof nm, "lora_grad.%s", P.p[i].name);
        cmp(nm, P.p[i].g, t_st_get(&st, nm)->data, P.p[i].n, 1e-4, 0);
    }
    /* AdamW on both */
    mmp_optim o;
    mmp_optim_defaults(&o, MMP_OPT_ADAMW);
    o.weight_decay = wd;
    float *losses = calloc((size_t)steps, sizeof(float));
    for (int s = 0; s < steps; s++) {
        sv = mmp_bert_fwd_train_tokens(&bert, ids, qlens, B, 0, xq, err, sizeof err);
        mmp_vqa_forward(m, xi, kvlens, xq, qlens, B, logits);
        losses[s] = (float)mmp_vqa_loss(logits, t, y, B, c.K, bce, dl);
        mmp_vqa_backward_q(m, dl, dxq);
        mmp_tx_params_zero_grad(&P);
        mmp_bert_bwd(&bert, sv, dxq, P.bert, NULL);
        mmp_tx_saved_free(sv);
        mmp_optim_step(&o, p, np, s, lr);
        mmp_optim_step(&o, pv, P.n, s, lr);
    }
    cmp("AdamW losses", losses, t_st_get(&st, "losses")->data, (size_t)steps, 1e-5, 0);
    worst = 0;
    for (int i = 0; i < np; i++) {
        snprintf(nm, sizeof nm, "final.%s", p[i].name);
        r = cmp(nm, p[i].w, t_st_get(&st, nm)->data, p[i].n, 1e-5, 1);
        worst = r > worst ? r : worst;
    }
    for (int i = 0; i < P.n; i++) {
        snprintf(nm, sizeof nm, "lora_final.%s", P.p[i].name);
        r = cmp(nm, P.p[i].w, t_st_get(&st, nm)->data, P.p[i].n, 1e-5, 1);
        worst = r > worst ? r : worst;
    }
    printf("  %-72s worst %.3g (tol 1e-05)\n", "fusion weights and adapters after AdamW", worst);
    free(losses), free(logits), free(dl), free(y), free(xq), free(dxq);
    mmp_vqa_free(m);
    mmp_tx_params_views_free(pv, P.n);
    mmp_tx_params_free(&P);
    mmp_tx_lora_set_free(ls);
    mmp_bert_free(&bert);
    mmp_st_close(&st);
}

int main(void) {
    mmp_set_progname("test_train_vqa_lora");
    run_case("tests/fixtures/vqa/lora_cross_bce.safetensors", 1);
    run_case("tests/fixtures/vqa/lora_pooled_ce.safetensors", 2);
    TEST_END();
}
