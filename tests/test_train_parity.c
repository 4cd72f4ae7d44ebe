/* Parity with PyTorch 1.13 (fixtures from tests/fixtures/gen_train.py):
 * loss values and gradients, and a few optimizer steps (SGD momentum/
 * Nesterov, AdamW, weight decay, schedules, clipping) from the same initial
 * weights and data giving the same weights to 1e-5. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "testlib.h"
#include "train/head.h"
#include "train/layers.h"
#include "train/optim.h"

static const float *get(const mmp_safetensors *st, const char *name, size_t *n) {
    const mmp_tensor *t = mmp_st_get(st, name);
    if (!t) {
        fprintf(stderr, "fixture tensor %s missing\n", name);
        exit(1);
    }
    if (n) *n = (size_t)mmp_numel(t->ndim, t->shape);
    return t->data;
}

static void cmp(const char *what, const float *a, const float *b, size_t n, double tol) {
    size_t w;
    double r = t_maxrel(a, b, n, tol, tol, &w);
    printf("%-32s n=%-4zu worst %.3g (tol %.0e) at %zu: %.8g vs %.8g\n", what, n, r * tol, tol, w,
           a[w], b[w]);
    CHECKF(r <= 1, "%s differs from PyTorch at %zu: %.9g vs %.9g", what, w, a[w], b[w]);
}

static void test_losses(void) {
    mmp_safetensors st;
    mmp_st_open_or_die(&st, t_root_path("tests/fixtures/train/losses.safetensors"));
    size_t n;
    const float *z = get(&st, "ce_z", &n), *w = get(&st, "ce_w", NULL);
    const int64_t *y = (const int64_t *)get(&st, "ce_y", NULL);
    int64_t N = 8, C = 5;
    float dz[40];
    const char *tags[4] = {"plain", "w", "s", "ws"};
    for (int v = 0; v < 4; v++) {
        char nm[64];
        double l = mmp_ce_loss(z, y, N, C, v & 1 ? w : NULL, v & 2 ? 0.1 : 0.0, dz);
        float lf = (float)l;
        snprintf(nm, sizeof nm, "ce_%s_loss", tags[v]);
        cmp(nm, &lf, get(&st, nm, NULL), 1, 1e-6);
        snprintf(nm, sizeof nm, "ce_%s_grad", tags[v]);
        cmp(nm, dz, get(&st, nm, NULL), 40, 1e-6);
    }
    float g[24];
    float l = (float)mmp_bce_logits_loss(get(&st, "bce_z", NULL), get(&st, "bce_t", NULL), 6, 4, g);
    cmp("bce_loss", &l, get(&st, "bce_loss", NULL), 1, 1e-6);
    cmp("bce_grad", g, get(&st, "bce_grad", NULL), 24, 1e-6);

    float dza[48], dzb[48], dls;
    l = (float)mmp_clip_loss(get(&st, "clip_za", NULL), get(&st, "clip_zb", NULL), 8, 6,
                             get(&st, "clip_ls", NULL)[0], dza, dzb, &dls);
    cmp("clip_loss", &l, get(&st, "clip_loss", NULL), 1, 1e-5);
    cmp("clip_dza", dza, get(&st, "clip_dza", NULL), 48, 1e-5);
    cmp("clip_dzb", dzb, get(&st, "clip_dzb", NULL), 48, 1e-5);
    cmp("clip_dlogit_scale", &dls, get(&st, "clip_dls", NULL), 1, 1e-5);

    const float *A = get(&st, "trip_a", NULL), *P = get(&st, "trip_p", NULL), *Q = get(&st, "trip_n", NULL);
    float dA[35] = {0}, dP[35] = {0}, dQ[35] = {0};
    l = (float)mmp_triplet_loss(A, P, Q, NULL, NULL, NULL, 7, 5, 1.0, dA, dP, dQ);
    cmp("triplet_loss", &l, get(&st, "trip_loss", NULL), 1, 1e-6);
    cmp("triplet_da", dA, get(&st, "trip_da", NULL), 35, 1e-6);
    cmp("triplet_dp", dP, get(&st, "trip_dp", NULL), 35, 1e-6);
    cmp("triplet_dn", dQ, get(&st, "trip_dn", NULL), 35, 1e-6);
    for (int hard = 1; hard >= 0; hard--) {
        int64_t ai[42], pi[42], ni[42];
        int64_t T = mmp_triplet_mine(A, P, 7, 5, hard, ai, pi, ni);
        memset(dA, 0, sizeof dA);
        memset(dP, 0, sizeof dP);
        l = (float)mmp_triplet_loss(A, P, P, ai, pi, ni, T, 5, 1.0, dA, dP, dP);
        char nm[64];
        const char *tag = hard ? "hard" : "all";
        snprintf(nm, sizeof nm, "trip_%s_loss", tag);
        cmp(nm, &l, get(&st, nm, NULL), 1, 1e-6);
        snprintf(nm, sizeof nm, "trip_%s_da", tag);
        cmp(nm, dA, get(&st, nm, NULL), 35, 1e-6);
        snprintf(nm, sizeof nm, "trip_%s_dp", tag);
        cmp(nm, dP, get(&st, nm, NULL), 35, 1e-6);
    }
    mmp_st_close(&st);
}

static double metanum(const mmp_safetensors *st, const char *k, double dflt) {
    const char *v = mmp_meta_get(&st->meta, k);
    if (!v) return dflt;
    if (!strcmp(v, "true")) return 1;
    if (!strcmp(v, "false")) return 0;
    return atof(v);
}

static void test_steps(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/train/steps_%s.safetensors", name);
    mmp_safetensors st;
    mmp_st_open_or_die(&st, t_root_path(path));
    const char *head = mmp_meta_get(&st.meta, "head"), *loss = mmp_meta_get(&st.meta, "loss");
    const mmp_tensor *xt = mmp_st_get(&st, "x");
    int64_t N = xt->shape[0], D = xt->shape[1];
    const float *x = xt->data;
    const mmp_tensor *x2t = mmp_st_get(&st, "x2");
    const float *x2 = x2t ? x2t->data : NULL;
    int64_t D2 = x2t ? x2t->shape[1] : 0;
    const int64_t *y = mmp_st_get(&st, "y") ? mmp_st_get(&st, "y")->data : NULL;
    const float *tt = mmp_st_get(&st, "t") ? mmp_st_get(&st, "t")->data : NULL;
    /* the head from the init.* tensors */
    mmp_head h;
    if (!strcmp(head, "pair")) {
        const mmp_tensor *wi = mmp_st_get(&st, "init.image_projection.weight");
        mmp_head_init(&h, MMP_HEAD_PAIR, D, wi->shape[0], D2, 0, NULL, 0, mmp_st_get(&st, "init.logit_scale") != NULL);
    } else if (!strcmp(head, "mlp")) {
        int64_t hid[8];
        int nh = 0;
        const char *s = mmp_meta_get(&st.meta, "hidden");
        while (*s) { hid[nh++] = strtoll(s, (char **)&s, 10); if (*s == ',') s++; }
        const mmp_tensor *last = mmp_st_get(&st, nh == 1 ? "init.layers.3.weight" : "init.layers.6.weight");
        mmp_head_init(&h, MMP_HEAD_MLP, D, last->shape[0], 0, nh, hid, 0, 0);
    } else {
        mmp_head_init(&h, MMP_HEAD_LINEAR, D, mmp_st_get(&st, "init.weight")->shape[0], 0, 0, NULL, 0, 0);
    }
    for (int i = 0; i < h.np; i++) {
        char nm[160];
        snprintf(nm, sizeof nm, "init.%s", h.params[i].name);
        size_t n;
        const float *w0 = get(&st, nm, &n);
        CHECK(n == h.params[i].n);
        memcpy(h.params[i].w, w0, sizeof(float) * n);
    }
    const char *optname = mmp_meta_get(&st.meta, "optimizer");
    mmp_optim o;
    mmp_optim_defaults(&o, !strcmp(optname, "adamw") ? MMP_OPT_ADAMW : MMP_OPT_SGD);
    o.weight_decay = metanum(&st, "opt_weight_decay", o.weight_decay);
    o.momentum = metanum(&st, "opt_momentum", 0);
    o.nesterov = (int)metanum(&st, "opt_nesterov", 0);
    mmp_sched sc = {0};
    const char *sk = mmp_meta_get(&st.meta, "sched_kind");
    {   /* meta strings were json.dumps'd: strip quotes */
        char buf[32];
        snprintf(buf, sizeof buf, "%s", sk + (sk[0] == '"'));
        char *q = strchr(buf, '"');
        if (q) *q = 0;
        CHECK(mmp_sched_parse(buf, &sc.kind) == 0);
    }
    sc.lr = metanum(&st, "opt_lr", 0);
    sc.warmup = (int64_t)metanum(&st, "sched_warmup", 0);
    sc.total = (int64_t)metanum(&st, "sched_total", 0);
    sc.step_size = (int64_t)metanum(&st, "sched_step_size", 0);
    sc.gamma = metanum(&st, "sched_gamma", 1);
    int steps = (int)metanum(&st, "steps", 0), B = (int)metanum(&st, "batch", 0);
    double clip = metanum(&st, "clip", 0);
    const char *ws = mmp_meta_get(&st.meta, "class_weights");
    float cw[16];
    int ncw = 0;
    while (ws && *ws) { cw[ncw++] = strtof(ws, (char **)&ws); if (*ws == ',') ws++; }
    double smoothing = metanum(&st, "smoothing", 0), margin = metanum(&st, "margin", 1);
    int64_t C = h.out_dim, E = h.out_dim;
    float *bx = malloc(sizeof(float) * B * D), *bx2 = malloc(sizeof(float) * B * (D2 + 1));
    float *bt = malloc(sizeof(float) * B * C), *out = malloc(sizeof(float) * B * C);
    float *za = malloc(sizeof(float) * B * E), *zb = malloc(sizeof(float) * B * E);
    float *dza = malloc(sizeof(float) * B * E), *dzb = malloc(sizeof(float) * B * E);
    float *dout = malloc(sizeof(float) * B * C);
    int64_t by[64], ai[64 * 64], pi[64 * 64], ni[64 * 64];
    float losses[64];
    for (int t = 0; t < steps; t++) {
        for (int b = 0; b < B; b++) {
            int64_t r = (t * B + b) % N;
            memcpy(bx + b * D, x + r * D, sizeof(float) * D);
            if (x2) memcpy(bx2 + b * D2, x2 + r * D2, sizeof(float) * D2);
            if (y) by[b] = y[r];
            if (tt) memcpy(bt + b * C, tt + r * C, sizeof(float) * C);
        }
        double l;
        if (!strcmp(loss, "ce") || !strcmp(loss, "bce")) {
            mmp_head_forward(&h, bx, B, 1, NULL, out);
            l = !strcmp(loss, "ce") ? mmp_ce_loss(out, by, B, C, ncw ? cw : NULL, smoothing, dout)
                                    : mmp_bce_logits_loss(out, bt, B, C, dout);
            mmp_head_backward(&h, bx, B, dout);
        } else {
            mmp_head_pair_forward(&h, bx, bx2, B, za, zb);
            if (!strcmp(loss, "contrastive")) {
                mmp_param *ls = mmp_head_param(&h, "logit_scale");
                l = mmp_clip_loss(za, zb, B, E, ls->w[0], dza, dzb, ls->g);
            } else {
                int64_t T = mmp_triplet_mine(za, zb, B, E, 1, ai, pi, ni);
                memset(dza, 0, sizeof(float) * B * E);
                memset(dzb, 0, sizeof(float) * B * E);
                l = mmp_triplet_loss(za, zb, zb, ai, pi, ni, T, E, margin, dza, dzb, dzb);
            }
            mmp_head_pair_backward(&h, bx, bx2, B, dza, dzb);
        }
        losses[t] = (float)l;
        if (clip > 0) mmp_clip_grad_norm(h.params, h.np, clip);
        mmp_optim_step(&o, h.params, h.np, t, mmp_sched_lr(&sc, t));
    }
    char what[256];
    snprintf(what, sizeof what, "%s losses", name);
    cmp(what, losses, get(&st, "losses", NULL), (size_t)steps, 1e-5);
    for (int i = 0; i < h.np; i++) {
        char nm[160];
        snprintf(nm, sizeof nm, "final.%s", h.params[i].name);
        snprintf(what, sizeof what, "%s %s", name, h.params[i].name);
        cmp(what, h.params[i].w, get(&st, nm, NULL), h.params[i].n, 1e-5);
    }
    free(bx); free(bx2); free(bt); free(out); free(za); free(zb); free(dza); free(dzb); free(dout);
    mmp_head_free(&h);
    mmp_st_close(&st);
}

int main(void) {
    mmp_train_init_blas();
    test_losses();
    test_steps("sgd_mlp");
    test_steps("sgd_plain");
    test_steps("adamw_linear");
    test_steps("adamw_bce");
    test_steps("adamw_clip");
    test_steps("sgd_triplet");
    TEST_END();
}
