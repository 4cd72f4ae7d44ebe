/* Whole-network training from the normalized image (train/cnn_tail.h with the
 * stem: mnv2-tail from features.0, resnet-tail from layer 0), BatchNorm in
 * train mode (batch statistics) or frozen:
 * - finite differences for the new backward ops: train-mode BatchNorm2d
 *   (through the batch statistics), MaxPool2d(3, 2, 1), the 7x7 stride-2
 *   stem convolution; the running-statistics update against its formula;
 * - parity with PyTorch 1.13 / torchvision 0.14 (fixtures from
 *   tests/fixtures/gen_train_full.py: a tiny MobileNetV2 and tiny ResNets
 *   with BasicBlock and Bottleneck, real BN statistics, 32x32 inputs): logits,
 *   loss, every parameter gradient and dloss/dinput in both BN modes; BN
 *   running statistics after 3 train-mode SGD steps; losses, weights and
 *   running statistics after 5 AdamW and 5 SGD(momentum) steps;
 * - bit-identical weights, running statistics and dx for 1..4 threads;
 * - mmp-train-step --from input's path (mmp_train_load_data on a stream of
 *   normalized f32 [3,H,W] records, mmp_trainer_init, mmp_trainer_run): 5 SGD
 *   steps with train-mode BN (the default) match PyTorch's weights and running
 *   statistics. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmp.h"
#include "tail_testlib.h"
#include "testlib.h"
#include "train/head.h"
#include "train/layers.h"
#include "train/optim.h"
#include "train/resnet_tail.h"
#include "train/train.h"

static uint64_t rs = 777;

/* ---------------- train-mode BatchNorm ---------------- */

typedef struct { float *x, *w, *b, *y, *r, *mean, *invstd; int64_t M, C; } bn_ctx;
static double bn_loss(void *c_) {
    bn_ctx *c = c_;
    mmp_bn_train_forward(c->x, c->M, c->C, c->w, c->b, 0.1f, NULL, NULL, c->mean, c->invstd, c->y);
    double s = 0;
    for (int64_t i = 0; i < c->M * c->C; i++) s += (double)c->y[i] * c->r[i];
    return s;
}
static void test_bn_train(void) {
    bn_ctx c = {.M = 13, .C = 5};
    size_t n = (size_t)(c.M * c.C);
    c.x = malloc(sizeof(float) * n); c.y = malloc(sizeof(float) * n); c.r = malloc(sizeof(float) * n);
    c.w = malloc(sizeof(float) * 5); c.b = malloc(sizeof(float) * 5);
    c.mean = malloc(sizeof(float) * 5); c.invstd = malloc(sizeof(float) * 5);
    t_fill(&rs, c.x, n, 2); t_fill(&rs, c.r, n, 1); t_fill(&rs, c.w, 5, 1.5f); t_fill(&rs, c.b, 5, 1);
    for (size_t i = 0; i < n; i++) c.x[i] += (float)(i % 5); /* nonzero means */
    float rm[5], rv[5], rm0[5], rv0[5], ref[10];
    t_fill(&rs, rm, 5, 1);
    for (int k = 0; k < 5; k++) { rv[k] = 1 + (float)k; rm0[k] = rm[k]; rv0[k] = rv[k]; }
    mmp_bn_train_forward(c.x, c.M, c.C, c.w, c.b, 0.1f, rm, rv, c.mean, c.invstd, c.y);
    for (int k = 0; k < 5; k++) { /* PyTorch: momentum 0.1, the unbiased variance */
        double m = 0, q = 0;
        for (int64_t i = 0; i < c.M; i++) m += c.x[i * 5 + k];
        m /= (double)c.M;
        for (int64_t i = 0; i < c.M; i++) q += (c.x[i * 5 + k] - m) * (c.x[i * 5 + k] - m);
        ref[k] = (float)(0.9 * rm0[k] + 0.1 * m);
        ref[5 + k] = (float)(0.9 * rv0[k] + 0.1 * q / (double)(c.M - 1));
    }
    float got[10];
    memcpy(got, rm, sizeof rm);
    memcpy(got + 5, rv, sizeof rv);
    t_cmp_scaled("bn train: running mean/var (momentum 0.1, unbiased)", got, ref, 10, 1e-6);
    float *dx = malloc(sizeof(float) * n), dw[5], db[5];
    bn_loss(&c);
    mmp_bn_train_backward(c.x, c.r, c.M, c.C, c.w, c.mean, c.invstd, dx, dw, db);
    t_fd("bn train dx (through the batch statistics)", c.x, n, dx, bn_loss, &c, 1e-2f, 2e-3);
    t_fd("bn train dweight", c.w, 5, dw, bn_loss, &c, 1e-2f, 1e-3);
    t_fd("bn train dbias", c.b, 5, db, bn_loss, &c, 1e-2f, 1e-3);
    free(c.x); free(c.y); free(c.r); free(c.w); free(c.b); free(c.mean); free(c.invstd); free(dx);
}

/* ---------------- max pool 3x3 stride 2 pad 1 ---------------- */

typedef struct { float *x, *y, *r; int64_t N, H, W, C; size_t ny; } mp_ctx;
static double mp_loss(void *c_) {
    mp_ctx *c = c_;
    mmp_maxpool3s2_forward(c->x, c->N, c->H, c->W, c->C, c->y);
    double s = 0;
    for (size_t i = 0; i < c->ny; i++) s += (double)c->y[i] * c->r[i];
    return s;
}
static void test_maxpool(void) {
    mp_ctx c = {.N = 2, .H = 7, .W = 6, .C = 3};
    int64_t Ho = 4, Wo = 3;
    size_t nx = (size_t)(c.N * c.H * c.W * c.C);
    c.ny = (size_t)(c.N * Ho * Wo * c.C);
    c.x = malloc(sizeof(float) * nx); c.y = malloc(sizeof(float) * c.ny); c.r = malloc(sizeof(float) * c.ny);
    /* distinct values at least 0.05 apart (finite differences never swap the maximum) */
    for (size_t i = 0; i < nx; i++) c.x[i] = (float)((i * 37) % nx) * 0.05f - 1;
    t_fill(&rs, c.r, c.ny, 1);
    float *ref = malloc(sizeof(float) * c.ny);
    for (int64_t n = 0; n < c.N; n++)
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++)
                for (int64_t ch = 0; ch < c.C; ch++) {
                    float m = -INFINITY;
                    for (int64_t ih = oh * 2 - 1; ih <= oh * 2 + 1; ih++)
                        for (int64_t iw = ow * 2 - 1; iw <= ow * 2 + 1; iw++)
                            if (ih >= 0 && ih < c.H && iw >= 0 && iw < c.W) m = fmaxf(m, c.x[((n * c.H + ih) * c.W + iw) * c.C + ch]);
                    ref[((n * Ho + oh) * Wo + ow) * c.C + ch] = m;
                }
    mp_loss(&c);
    t_cmp_scaled("maxpool 3x3 s2 p1 forward vs definition", c.y, ref, c.ny, 0);
    float *dx = malloc(sizeof(float) * nx);
    mmp_maxpool3s2_backward(c.x, c.r, c.N, c.H, c.W, c.C, dx);
    t_fd("maxpool 3x3 s2 p1 dx", c.x, nx, dx, mp_loss, &c, 1e-2f, 1e-3);
    /* ties: the first maximum in (kh, kw) order gets the gradient (PyTorch's CPU kernel) */
    float tx[9] = {1, 2, 2, 0, 2, 0, 0, 0, 0}, ty[4], tg[4] = {1, 10, 100, 1000}, tdx[9];
    mmp_maxpool3s2_forward(tx, 1, 3, 3, 1, ty);
    mmp_maxpool3s2_backward(tx, tg, 1, 3, 3, 1, tdx);
    /* windows: (0,0) rows 0-1 cols 0-1 -> max 2 at (0,1); (0,1) rows 0-1 cols 1-2 -> (0,1);
     * (1,0) rows 1-2 cols 0-1 -> (1,1); (1,1) rows 1-2 cols 1-2 -> (1,1) */
    CHECK(ty[0] == 2 && ty[1] == 2 && ty[2] == 2 && ty[3] == 2);
    CHECKF(tdx[1] == 11 && tdx[4] == 1100 && tdx[2] == 0 && tdx[0] == 0, "maxpool ties: %g %g %g", tdx[1], tdx[4], tdx[2]);
    free(c.x); free(c.y); free(c.r); free(ref); free(dx);
}

/* ---------------- the 7x7 stride-2 stem convolution ---------------- */

typedef struct { float *x, *w, *y, *r; int64_t N, H, W, Ci, O; size_t ny; } cv_ctx;
static double cv_loss(void *c_) {
    cv_ctx *c = c_;
    mmp_conv2d_forward(c->x, c->N, c->H, c->W, c->Ci, c->w, c->O, 7, 2, c->y);
    double s = 0;
    for (size_t i = 0; i < c->ny; i++) s += (double)c->y[i] * c->r[i];
    return s;
}
static void test_conv7(void) {
    cv_ctx c = {.N = 2, .H = 9, .W = 8, .Ci = 3, .O = 2};
    int64_t Ho = (9 + 6 - 7) / 2 + 1, Wo = (8 + 6 - 7) / 2 + 1;
    size_t nx = (size_t)(c.N * c.H * c.W * c.Ci), nw = (size_t)(c.O * c.Ci * 49);
    c.ny = (size_t)(c.N * Ho * Wo * c.O);
    c.x = malloc(sizeof(float) * nx); c.w = malloc(sizeof(float) * nw);
    c.y = malloc(sizeof(float) * c.ny); c.r = malloc(sizeof(float) * c.ny);
    t_fill(&rs, c.x, nx, 1); t_fill(&rs, c.w, nw, 1); t_fill(&rs, c.r, c.ny, 1);
    float *ref = malloc(sizeof(float) * c.ny);
    for (int64_t n = 0; n < c.N; n++)
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++)
                for (int64_t o = 0; o < c.O; o++) {
                    double a = 0;
                    for (int64_t ci = 0; ci < c.Ci; ci++)
                        for (int kh = 0; kh < 7; kh++)
                            for (int kw = 0; kw < 7; kw++) {
                                int64_t ih = oh * 2 - 3 + kh, iw = ow * 2 - 3 + kw;
                                if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                                a += (double)c.x[((n * c.H + ih) * c.W + iw) * c.Ci + ci] * c.w[((o * c.Ci + ci) * 7 + kh) * 7 + kw];
                            }
                    ref[((n * Ho + oh) * Wo + ow) * c.O + o] = (float)a;
                }
    cv_loss(&c);
    t_cmp_scaled("conv 7x7 stride 2 pad 3 forward vs definition", c.y, ref, c.ny, 1e-6);
    float *dx = malloc(sizeof(float) * nx), *dw = malloc(sizeof(float) * nw);
    mmp_conv2d_backward(c.x, c.r, c.N, c.H, c.W, c.Ci, c.w, c.O, 7, 2, dx, dw);
    t_fd("conv 7x7 stride 2 dW", c.w, nw, dw, cv_loss, &c, 1e-2f, 1e-3);
    t_fd("conv 7x7 stride 2 dx", c.x, nx, dx, cv_loss, &c, 1e-2f, 1e-3);
    free(c.x); free(c.w); free(c.y); free(c.r); free(ref); free(dx); free(dw);
}

/* ---------------- PyTorch parity ---------------- */

/* t_cmp_scaled with the scale at least `floor`: with train-mode BN the bias of
 * a BN whose output feeds the next BN only linearly has a gradient that is 0
 * in exact arithmetic (the batch mean absorbs it); both sides are rounding
 * noise (~1e-8) there, measured against 1e-3 of the model's largest gradient */
static double cmp_floor(const char *what, const float *a, const float *b, size_t n, double floor, double tol) {
    double mx = 0, worst = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)b[i]));
    mx = fmax(mx, floor);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / mx;
        if (d > worst || d != d) { worst = d != d ? INFINITY : d; w = i; }
    }
    printf("%-52s n=%-5zu max rel err %.3g (tol %.0e)\n", what, n, worst, tol);
    CHECKF(worst <= tol, "%s: element %zu: %.9g vs %.9g (rel %.3g)", what, w, a[w], b[w], worst);
    return worst;
}

enum { N = 4, S = 32, C = 3, D = 3 * S * S };
typedef struct { const char *name; int resnet; int nu, np; } model;
static const model models[3] = {
    /* stem; features.1: dw+pw; 2..5: pw+dw+pw; final 1x1 */
    {"mnv2", 0, 1 + 2 + 4 * 3 + 1, 3 * (1 + 2 + 4 * 3 + 1) + 2},
    /* conv1, maxpool; layer1: 2 units; layer2..4: ds + 2 */
    {"basic", 1, 2 + 2 + 3 * 3, 3 * (1 + 2 + 3 * 3) + 2},
    /* layer1..4: ds + 3 */
    {"bottleneck", 1, 2 + 4 * 4, 3 * (1 + 4 * 4) + 2},
};

static void make_head(mmp_head *h, const mmp_safetensors *st, const model *m, int train_bn) {
    char err[512];
    int rc = m->resnet ? mmp_head_init_resnet_tail(h, st, 0, -1, S, S, C, 1, err, sizeof err)
                       : mmp_head_init_tail(h, st, 0, S, S, C, 0.0f, 1, err, sizeof err);
    if (rc) {
        fprintf(stderr, "%s: %s\n", m->name, err);
        exit(1);
    }
    h->tail->train_bn = train_bn;
}

/* the running statistics of every BN of h against <prefix><bn>.running_{mean,var} */
static double cmp_running(const mmp_head *h, const mmp_safetensors *st, const char *prefix, const char *what, double tol) {
    double worst = 0;
    int nb = 0;
    for (int k = 0; k < h->tail->nu; k++) {
        const mmp_tail_unit *u = &h->tail->u[k];
        if (u->kind == MMP_TAIL_MAXPOOL) continue;
        char nm[200];
        snprintf(nm, sizeof nm, "%s%s.running_mean", prefix, u->bn);
        printf("  ");
        worst = fmax(worst, t_cmp_scaled(nm, u->mean, t_fixture_f32(st, nm)->data, (size_t)u->cout, tol));
        snprintf(nm, sizeof nm, "%s%s.running_var", prefix, u->bn);
        printf("  ");
        worst = fmax(worst, t_cmp_scaled(nm, u->var, t_fixture_f32(st, nm)->data, (size_t)u->cout, tol));
        nb++;
    }
    printf("%s: %s: running statistics of %d BN layers, worst max rel err %.3g\n", h->tail->u[0].bn, what, nb, worst);
    return worst;
}

static void one_step(mmp_head *h, const mmp_optim *opt, double lr, const float *x, const int64_t *y, int s, float *loss,
                     float *dx) {
    float lg[N * C], dl[N * C];
    mmp_head_forward(h, x, N, 1, NULL, lg);
    float l = (float)mmp_ce_loss(lg, y, N, C, NULL, 0, dl);
    if (loss) *loss = l;
    mmp_tail_backward(h->tail, N, dl, dx);
    mmp_optim_step(opt, h->params, h->np, s, lr);
}

static void test_parity(const model *m) {
    mmp_safetensors st;
    char path[128], nm[200], n2[260];
    snprintf(path, sizeof path, "tests/fixtures/train_full/%s.safetensors", m->name);
    mmp_st_open_or_die(&st, t_root_path(path));
    const float *x = t_fixture_f32(&st, "x")->data, *yf = t_fixture_f32(&st, "y")->data;
    int64_t y[N];
    for (int i = 0; i < N; i++) y[i] = (int64_t)yf[i];
    float *dx = malloc(sizeof(float) * N * D);
    for (int mode = 0; mode < 2; mode++) {
        const char *mn = mode ? "frozen" : "train";
        mmp_head h;
        make_head(&h, &st, m, !mode);
        CHECKF(h.in_dim == D && h.tail->nu == m->nu && h.np == m->np && h.tail->first == 0 && h.tail->C0 == 3,
               "%s: structure (nu %d np %d first %d)", m->name, h.tail->nu, h.np, h.tail->first);
        int ngrad = 0; /* every parameter of the fixture is one of h */
        snprintf(nm, sizeof nm, "%s.grad.", mn);
        for (int e = 0; e < st.n; e++) ngrad += !strncmp(st.entries[e].name, nm, strlen(nm));
        CHECKF(ngrad == h.np, "%s: %d parameters in the fixture, %d in the head", m->name, ngrad, h.np);
        float logits[N * C], dl[N * C];
        mmp_head_forward(&h, x, N, 1, NULL, logits);
        snprintf(nm, sizeof nm, "%s.logits", mn);
        snprintf(n2, sizeof n2, "%s %s BN: logits", m->name, mn);
        t_cmp_scaled(n2, logits, t_fixture_f32(&st, nm)->data, N * C, 1e-4);
        float loss = (float)mmp_ce_loss(logits, y, N, C, NULL, 0, dl);
        snprintf(nm, sizeof nm, "%s.loss", mn);
        snprintf(n2, sizeof n2, "%s %s BN: loss", m->name, mn);
        t_cmp_scaled(n2, &loss, t_fixture_f32(&st, nm)->data, 1, 1e-4);
        mmp_tail_backward(h.tail, N, dl, dx);
        double worst = 0, gmax = 0; /* gmax: the largest gradient element of the model */
        for (int i = 0; i < h.np; i++) {
            snprintf(nm, sizeof nm, "%s.grad.%s", mn, h.params[i].name);
            const mmp_tensor *g = t_fixture_f32(&st, nm);
            CHECKF((size_t)mmp_numel(g->ndim, g->shape) == h.params[i].n, "%s: size", nm);
            for (size_t e = 0; e < h.params[i].n; e++) gmax = fmax(gmax, fabs(((const float *)g->data)[e]));
        }
        for (int i = 0; i < h.np; i++) {
            snprintf(nm, sizeof nm, "%s.grad.%s", mn, h.params[i].name);
            printf("  ");
            worst = fmax(worst, cmp_floor(nm, h.params[i].g, t_fixture_f32(&st, nm)->data, h.params[i].n, 1e-3 * gmax, 1e-4));
        }
        printf("%s %s BN: gradients: worst max rel err %.3g over %d tensors\n", m->name, mn, worst, h.np);
        snprintf(nm, sizeof nm, "%s.dx", mn);
        snprintf(n2, sizeof n2, "%s %s BN: dx (dloss/dinput)", m->name, mn);
        t_cmp_scaled(n2, dx, t_fixture_f32(&st, nm)->data, N * D, 1e-4);
        if (mode) { /* frozen: the running statistics did not move */
            snprintf(n2, sizeof n2, "%s frozen BN", m->name);
            mmp_head_free(&h);
            make_head(&h, &st, m, 0);
            mmp_head_forward(&h, x, N, 1, NULL, logits);
            cmp_running(&h, &st, "", n2, 0);
        }
        mmp_head_free(&h);
    }
    /* 5 AdamW steps with frozen BN, 5 SGD(momentum) steps with train-mode BN
     * (AdamW would turn the rounding noise of the gradients that are 0 with
     * train-mode BN into steps of +-lr; see gen_train_full.py) */
    for (int o = 0; o < 2; o++) {
        const char *on = o ? "sgd" : "adamw";
        mmp_optim opt;
        double lr = t_fixture_optim(&opt, o, 0.01);
        mmp_head h;
        make_head(&h, &st, m, o);
        enum { STEPS = 5 };
        float losses[STEPS];
        for (int s = 0; s < STEPS; s++) {
            one_step(&h, &opt, lr, x, y, s, &losses[s], NULL);
            if (s + 1 == 3) {
                snprintf(n2, sizeof n2, "%s after 3 %s steps", m->name, on);
                cmp_running(&h, &st, o ? "rs3." : "adamw.rs3.", n2, o ? 1e-5 : 0);
            }
        }
        snprintf(nm, sizeof nm, "%s.losses", on);
        snprintf(n2, sizeof n2, "%s: %s", m->name, nm);
        t_cmp_scaled(n2, losses, t_fixture_f32(&st, nm)->data, STEPS, 1e-5);
        double worst = 0;
        for (int i = 0; i < h.np; i++) {
            snprintf(nm, sizeof nm, "%s.final.%s", on, h.params[i].name);
            printf("  ");
            worst = fmax(worst, t_cmp_scaled(nm, h.params[i].w, t_fixture_f32(&st, nm)->data, h.params[i].n, 1e-5));
        }
        printf("%s %s: %d %s BN steps, final weights worst max rel err %.3g\n", m->name, on, STEPS, o ? "train-mode" : "frozen",
               worst);
        snprintf(nm, sizeof nm, "%s.final.", on);
        snprintf(n2, sizeof n2, "%s after 5 %s steps", m->name, on);
        cmp_running(&h, &st, nm, n2, 1e-5);
        mmp_head_free(&h);
    }
    free(dx);
    mmp_st_close(&st);
}

/* the same bits (weights, running statistics, dx) for 1..4 threads, both BN modes */
static void test_threads(const model *m) {
    mmp_safetensors st;
    char path[128];
    snprintf(path, sizeof path, "tests/fixtures/train_full/%s.safetensors", m->name);
    mmp_st_open_or_die(&st, t_root_path(path));
    const float *x = t_fixture_f32(&st, "x")->data, *yf = t_fixture_f32(&st, "y")->data;
    int64_t y[N];
    for (int i = 0; i < N; i++) y[i] = (int64_t)yf[i];
    for (int tb = 0; tb < 2; tb++) {
        float *ref = NULL, *rref = NULL;
        for (int T = 1; T <= 4; T++) {
            mmp_head h;
            make_head(&h, &st, m, tb);
            h.tail->threads = T;
            mmp_optim opt;
            mmp_optim_defaults(&opt, MMP_OPT_ADAMW);
            float *dx = malloc(sizeof(float) * N * D);
            for (int s = 0; s < 3; s++) one_step(&h, &opt, 1e-2, x, y, s, NULL, dx);
            CHECKF(t_same_state(&h, dx, N * D, &ref), "%s (train_bn %d): %d threads differ from 1", m->name, tb, T);
            size_t nr = 0;
            for (int k = 0; k < h.tail->nu; k++) nr += 2 * (size_t)h.tail->u[k].cout;
            float *run = calloc(nr, sizeof(float));
            size_t o = 0;
            for (int k = 0; k < h.tail->nu; k++)
                if (h.tail->u[k].mean) {
                    memcpy(run + o, h.tail->u[k].mean, sizeof(float) * (size_t)h.tail->u[k].cout);
                    memcpy(run + o + h.tail->u[k].cout, h.tail->u[k].var, sizeof(float) * (size_t)h.tail->u[k].cout);
                    o += 2 * (size_t)h.tail->u[k].cout;
                }
            if (!rref) rref = run;
            else {
                CHECKF(!memcmp(rref, run, sizeof(float) * o), "%s: running statistics with %d threads differ", m->name, T);
                free(run);
            }
            free(dx);
            mmp_head_free(&h);
        }
        printf("%s (%s BN): threads 1..4: 3 AdamW steps give bit-identical weights, running statistics and dx\n", m->name,
               tb ? "train-mode" : "frozen");
        free(ref);
        free(rref);
    }
    mmp_st_close(&st);
}

static void test_errors(void) {
    mmp_safetensors st;
    mmp_head h;
    char err[512] = "";
    mmp_st_open_or_die(&st, t_root_path("tests/fixtures/train_resnet_tail/basic.init.safetensors"));
    CHECK(mmp_head_init_resnet_tail(&h, &st, 0, -1, 32, 32, 3, 0, err, sizeof err) == -1); /* a tail: no stem */
    printf("resnet from the image without conv1: %s\n", err);
    CHECK(strstr(err, "conv1.weight") != NULL);
    mmp_st_close(&st);
    mmp_st_open_or_die(&st, t_root_path("tests/fixtures/train_tail/init.safetensors"));
    CHECK(mmp_head_init_tail(&h, &st, 0, 32, 32, 3, 0, 0, err, sizeof err) == -1);
    printf("mnv2 from the image without features.0: %s\n", err);
    CHECK(strstr(err, "features.0") != NULL);
    mmp_st_close(&st);
}

/* the command's path: configuration -> image stream -> trainer -> epochs, on the
 * fixture's x written as normalized f32 [3,32,32] records (the header states
 * torchvision's normalization, which the fixture network's, without
 * __metadata__, is), one batch of 4 per epoch: 5 SGD(momentum, wd) steps, BN in
 * train mode; the classifier starts from the fixture's (a new head's is
 * initialized from --seed) */
static void test_cli_path(const model *m) {
    char path[512], err[1024], nm[200];
    snprintf(path, sizeof path, "tests/fixtures/train_full/%s.safetensors", m->name);
    const char *fx = t_root_path(path);
    mmp_safetensors st;
    mmp_st_open_or_die(&st, fx);
    const float *x = t_fixture_f32(&st, "x")->data, *yf = t_fixture_f32(&st, "y")->data;
    char sp[64];
    snprintf(sp, sizeof sp, "/tmp/mmp_test_train_full_%d.mmp", (int)getpid());
    mmp_header h;
    mmp_header_init(&h);
    int64_t sh[3] = {3, S, S};
    mmp_header_add_field(&h, "image", MMP_F32, 3, sh);
    char *cls[C] = {"a", "b", "c"};
    mmp_header_set_classes(&h, C, cls);
    mmp_meta_set(&h.meta, "image.layout", "chw");
    mmp_meta_set(&h.meta, "image.mean", "0.485,0.456,0.406");
    mmp_meta_set(&h.meta, "image.std", "0.229,0.224,0.225");
    mmp_writer *w = mmp_writer_open(sp, &h, 1);
    CHECKF(w != NULL, "cannot write %s", sp);
    for (int i = 0; i < N; i++) {
        mmp_record r;
        mmp_record_init(&r);
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        mmp_record_set_id(&r, id);
        r.label = (int64_t)yf[i];
        memcpy(mmp_record_add(&r, "image", MMP_F32, 3, sh)->data, x + i * D, sizeof(float) * D);
        mmp_writer_write(w, &r);
        mmp_record_clear(&r);
    }
    mmp_writer_close(w);
    mmp_header_free(&h);

    mmp_train_cfg cfg;
    mmp_train_cfg_defaults(&cfg);
    const char *kv[][2] = {{"head", m->resnet ? "resnet-tail" : "mnv2-tail"}, {"backbone", fx}, {"from", "input"},
                           {"optimizer", "sgd"}, {"lr", "0.01"}, {"momentum", "0.9"}, {"weight_decay", "1e-3"},
                           {"batch_size", "4"}, {"epochs", "5"}, {"dropout", "0"}};
    for (size_t k = 0; k < sizeof kv / sizeof kv[0]; k++)
        CHECKF(mmp_train_cfg_set(&cfg, kv[k][0], kv[k][1], err, sizeof err) == 0, "%s", err);
    mmp_dataset ds;
    mmp_trainer tr;
    int ok = mmp_train_load_data(&ds, &cfg, sp, 0, err, sizeof err) == 0;
    CHECKF(ok, "%s: load: %s", m->name, err);
    if (!ok) { remove(sp); mmp_st_close(&st); return; }
    ok = mmp_trainer_init(&tr, &cfg, &ds, err, sizeof err) == 0;
    CHECKF(ok, "%s: init: %s", m->name, err);
    if (ok) {
        CHECKF(tr.head.tail->train_bn == 1 && tr.head.tail->first == 0 && tr.head.tail->C0 == 3,
               "%s: --from input: train-mode BN from the stem", m->name);
        for (int i = tr.head.np - 2; i < tr.head.np; i++) {
            snprintf(nm, sizeof nm, "%s", tr.head.params[i].name);
            memcpy(tr.head.params[i].w, t_fixture_f32(&st, nm)->data, sizeof(float) * tr.head.params[i].n);
        }
        tr.head.tail->threads = 1;
        char cp[64];
        snprintf(cp, sizeof cp, "/tmp/mmp_test_train_full_%d.safetensors", (int)getpid());
        mmp_train_run run = {.out = cp, .last = cp, .log_every = 1, .target = 5, .stop_after = -1};
        CHECKF(mmp_trainer_run(&tr, &ds, &run, err, sizeof err) == 0, "%s: run: %s", m->name, err);
        CHECKF(tr.step == 5, "%s: %lld steps", m->name, (long long)tr.step);
        double worst = 0;
        for (int i = 0; i < tr.head.np; i++) {
            snprintf(nm, sizeof nm, "sgd.final.%s", tr.head.params[i].name);
            printf("  ");
            worst = fmax(worst, t_cmp_scaled(nm, tr.head.params[i].w, t_fixture_f32(&st, nm)->data, tr.head.params[i].n, 1e-5));
        }
        printf("%s via mmp-train-step's path (--from input, f32 records): 5 SGD steps, final weights worst max rel err %.3g\n",
               m->name, worst);
        snprintf(nm, sizeof nm, "%s via mmp-train-step's path", m->name);
        cmp_running(&tr.head, &st, "sgd.final.", nm, 1e-5);
        remove(cp);
        mmp_trainer_free(&tr);
    }
    mmp_dataset_free(&ds);
    remove(sp);
    mmp_st_close(&st);
}

int main(void) {
    mmp_train_init_blas();
    test_bn_train();
    test_maxpool();
    test_conv7();
    for (int k = 0; k < 3; k++) {
        test_parity(&models[k]);
        test_threads(&models[k]);
        test_cli_path(&models[k]);
    }
    test_errors();
    TEST_END();
}
