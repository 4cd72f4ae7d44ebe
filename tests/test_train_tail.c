/* The mnv2-tail head (train/cnn_tail.h):
 * - every layer's backward against central finite differences (1x1 conv,
 *   depthwise 3x3 stride 1 and 2, eval BN, ReLU6, average pool);
 * - parity with PyTorch 1.13 / torchvision 0.14 (fixtures from
 *   tests/fixtures/gen_train_tail.py: a tiny MobileNetV2 tail with a stride-2
 *   block, residual blocks, a block without expand conv and the final 1x1 conv,
 *   eval-mode BN with nonzero running statistics): logits, loss, every
 *   parameter gradient and dloss/dx of the initial model; the losses and the
 *   weights after 5 AdamW and 5 SGD(momentum) steps;
 * - the real ImageNet MobileNetV2 (skipped without the shared folder): the
 *   tail after features.16 and after features.13 trains without NaN and its
 *   loss goes down. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "tail_testlib.h"
#include "testlib.h"
#include "train/cnn_tail.h"
#include "train/head.h"
#include "train/layers.h"
#include "train/optim.h"

static uint64_t rs = 12345;

/* ---------------- finite differences ---------------- */


static double dot(const float *a, const float *r, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * r[i];
    return s;
}

/* 1x1 conv */
typedef struct { float *x, *w, *y, *r; int64_t M, I, O; } pw_ctx;
static double pw_loss(void *c_) {
    pw_ctx *c = c_;
    mmp_pw_conv_forward(c->x, c->M, c->I, c->w, c->O, c->y);
    return dot(c->y, c->r, (size_t)(c->M * c->O));
}
static void test_fd_pw(void) {
    pw_ctx c = {.M = 7, .I = 5, .O = 4};
    c.x = malloc(sizeof(float) * 35); c.w = malloc(sizeof(float) * 20);
    c.y = malloc(sizeof(float) * 28); c.r = malloc(sizeof(float) * 28);
    t_fill(&rs, c.x, 35, 1); t_fill(&rs, c.w, 20, 1); t_fill(&rs, c.r, 28, 1);
    float dx[35], dw[20];
    mmp_pw_conv_backward(c.x, c.r, c.M, c.I, c.w, c.O, dx, dw);
    t_fd("pw_conv dW", c.w, 20, dw, pw_loss, &c, 1e-2f, 1e-3);
    t_fd("pw_conv dx", c.x, 35, dx, pw_loss, &c, 1e-2f, 1e-3);
    free(c.x); free(c.w); free(c.y); free(c.r);
}

/* depthwise 3x3 */
typedef struct { float *x, *w, *y, *r; int64_t N, H, W, C; int s; size_t ny; } dw_ctx;
static double dw_loss(void *c_) {
    dw_ctx *c = c_;
    mmp_dw_conv_forward(c->x, c->N, c->H, c->W, c->C, c->w, c->s, c->y);
    return dot(c->y, c->r, c->ny);
}
static void test_fd_dw(int s) {
    dw_ctx c = {.N = 2, .H = 5, .W = 7, .C = 3, .s = s};
    int64_t Ho = (c.H - 1) / s + 1, Wo = (c.W - 1) / s + 1;
    size_t nx = (size_t)(c.N * c.H * c.W * c.C);
    c.ny = (size_t)(c.N * Ho * Wo * c.C);
    c.x = malloc(sizeof(float) * nx); c.w = malloc(sizeof(float) * 27);
    c.y = malloc(sizeof(float) * c.ny); c.r = malloc(sizeof(float) * c.ny);
    t_fill(&rs, c.x, nx, 1); t_fill(&rs, c.w, 27, 1); t_fill(&rs, c.r, c.ny, 1);
    float *dx = malloc(sizeof(float) * nx), dw[27];
    mmp_dw_conv_backward(c.x, c.r, c.N, c.H, c.W, c.C, c.w, s, dx, dw);
    char nm[64];
    snprintf(nm, sizeof nm, "dw_conv stride %d dW", s);
    t_fd(nm, c.w, 27, dw, dw_loss, &c, 1e-2f, 1e-3);
    snprintf(nm, sizeof nm, "dw_conv stride %d dx", s);
    t_fd(nm, c.x, nx, dx, dw_loss, &c, 1e-2f, 1e-3);
    /* output size: (H-1)/s+1 with pad 1 (torch: floor((H+2-3)/s)+1) */
    CHECK(Ho == (s == 1 ? 5 : 3) && Wo == (s == 1 ? 7 : 4));
    free(c.x); free(c.w); free(c.y); free(c.r); free(dx);
}

/* eval BN */
typedef struct { float *x, *w, *b, *mean, *var, *y, *r; int64_t M, C; } bn_ctx;
static double bn_loss(void *c_) {
    bn_ctx *c = c_;
    mmp_bn_eval_forward(c->x, c->M, c->C, c->w, c->b, c->mean, c->var, c->y);
    return dot(c->y, c->r, (size_t)(c->M * c->C));
}
static void test_fd_bn(void) {
    bn_ctx c = {.M = 6, .C = 4};
    float x[24], w[4], b[4], mean[4], var[4], y[24], r[24], dx[24], dw[4], db[4];
    c.x = x; c.w = w; c.b = b; c.mean = mean; c.var = var; c.y = y; c.r = r;
    t_fill(&rs, x, 24, 2); t_fill(&rs, w, 4, 1); t_fill(&rs, b, 4, 1); t_fill(&rs, mean, 4, 0.5f); t_fill(&rs, r, 24, 1);
    for (int i = 0; i < 4; i++) var[i] = 0.3f + (float)i * 0.4f;
    mmp_bn_eval_backward(x, r, c.M, c.C, w, mean, var, dx, dw, db);
    t_fd("bn_eval dweight", w, 4, dw, bn_loss, &c, 1e-2f, 1e-3);
    t_fd("bn_eval dbias", b, 4, db, bn_loss, &c, 1e-2f, 1e-3);
    t_fd("bn_eval dx", x, 24, dx, bn_loss, &c, 1e-2f, 1e-3);
    /* the formula itself: y = (x-mean)/sqrt(var+eps)*w + b */
    mmp_bn_eval_forward(x, c.M, c.C, w, b, mean, var, y);
    float ref[24];
    for (int m = 0; m < 6; m++)
        for (int k = 0; k < 4; k++)
            ref[m * 4 + k] = (float)(((double)x[m * 4 + k] - mean[k]) / sqrt((double)var[k] + 1e-5) * w[k] + b[k]);
    t_cmp_scaled("bn_eval forward vs formula", y, ref, 24, 1e-6);
}

/* ReLU6 (inputs kept away from the kinks at 0 and 6) */
typedef struct { float *x, *y, *r; size_t n; } r6_ctx;
static double r6_loss(void *c_) {
    r6_ctx *c = c_;
    memcpy(c->y, c->x, sizeof(float) * c->n);
    mmp_relu6_forward(c->y, c->n);
    return dot(c->y, c->r, c->n);
}
static void test_fd_relu6(void) {
    float x[12] = {-3, -0.5f, 0.5f, 1, 2.5f, 4, 5.5f, 6.5f, 7, 9, -1, 3}, y[12], r[12], dx[12];
    t_fill(&rs, r, 12, 1);
    r6_ctx c = {x, y, r, 12};
    memcpy(y, x, sizeof x);
    mmp_relu6_forward(y, 12);
    CHECK(y[0] == 0 && y[7] == 6 && y[9] == 6 && y[4] == 2.5f);
    memcpy(dx, r, sizeof r);
    mmp_relu6_backward(y, dx, 12);
    t_fd("relu6 dx", x, 12, dx, r6_loss, &c, 1e-2f, 1e-3);
}

/* average pool */
typedef struct { float *x, *y, *r; } ap_ctx;
static double ap_loss(void *c_) {
    ap_ctx *c = c_;
    mmp_avgpool_forward(c->x, 2, 6, 3, c->y);
    return dot(c->y, c->r, 6);
}
static void test_fd_pool(void) {
    float x[36], y[6], r[6], dx[36];
    t_fill(&rs, x, 36, 1); t_fill(&rs, r, 6, 1);
    ap_ctx c = {x, y, r};
    mmp_avgpool_backward(r, 2, 6, 3, dx);
    t_fd("avgpool dx", x, 36, dx, ap_loss, &c, 1e-2f, 1e-3);
}

/* ---------------- PyTorch parity ---------------- */

static void make_head(mmp_head *h, const mmp_safetensors *st) {
    char err[512];
    int rc = mmp_head_init_tail(h, st, 14, 5, 7, 3, 0.0f, 1, err, sizeof err);
    if (rc) {
        fprintf(stderr, "mmp_head_init_tail: %s\n", err);
        exit(1);
    }
}

static void test_parity(void) {
    mmp_safetensors st, ss;
    mmp_st_open_or_die(&st, t_root_path("tests/fixtures/train_tail/init.safetensors"));
    mmp_st_open_or_die(&ss, t_root_path("tests/fixtures/train_tail/steps.safetensors"));
    const float *x = t_fixture_f32(&st, "x")->data, *yf = t_fixture_f32(&st, "y")->data;
    enum { N = 10, C = 3, D = 3 * 5 * 7 };
    int64_t y[N];
    for (int i = 0; i < N; i++) y[i] = (int64_t)yf[i];
    mmp_head h;
    make_head(&h, &st);
    CHECK(h.in_dim == D && h.out_dim == C && h.tail->first == 14 && h.tail->last == 18 && h.tail->F == 10);
    /* units: 14: 3 (expand, dw s2, project), 15: 3 (residual), 16: 3, 17: 2 (no expand, residual), 18: 1 */
    CHECK(h.tail->nu == 12);
    CHECK(h.tail->u[1].stride == 2 && h.tail->u[1].Ho == 3 && h.tail->u[1].Wo == 4);
    CHECK(h.tail->res_unit[5] && !h.tail->res_unit[8] && h.tail->res_unit[10] && !h.tail->res_unit[2]);
    CHECK(h.np == 3 * 12 + 2);

    float logits[N * C], dl[N * C], dx[N * D];
    uint64_t rng = 1;
    mmp_head_forward(&h, x, N, 1, &rng, logits);
    t_cmp_scaled("logits (initial model)", logits, t_fixture_f32(&st, "logits0")->data, N * C, 1e-5);
    float loss = (float)mmp_ce_loss(logits, y, N, C, NULL, 0, dl);
    t_cmp_scaled("loss (initial model)", &loss, t_fixture_f32(&st, "loss0")->data, 1, 1e-5);
    mmp_tail_backward(h.tail, N, dl, dx);
    double worst = 0;
    for (int i = 0; i < h.np; i++) {
        char nm[160];
        snprintf(nm, sizeof nm, "grad.%s", h.params[i].name);
        const mmp_tensor *g = t_fixture_f32(&st, nm);
        CHECKF((size_t)mmp_numel(g->ndim, g->shape) == h.params[i].n, "%s: size", nm);
        worst = fmax(worst, t_cmp_scaled(nm, h.params[i].g, g->data, h.params[i].n, 1e-5));
    }
    printf("gradients: worst max rel err %.3g over %d parameters\n", worst, h.np);
    t_cmp_scaled("dx (dloss/dinput)", dx, t_fixture_f32(&st, "dx0")->data, N * D, 1e-5);
    /* mmp_head_backward gives the same parameter gradients */
    mmp_head_forward(&h, x, N, 1, &rng, logits);
    mmp_head_backward(&h, x, N, dl);
    for (int i = 0; i < h.np; i++) {
        char nm[160];
        snprintf(nm, sizeof nm, "grad.%s", h.params[i].name);
        CHECKF(t_maxrel(h.params[i].g, t_fixture_f32(&st, nm)->data, h.params[i].n, 1e-4, 1e-6, NULL) <= 1, "head backward %s", nm);
    }
    /* forward without training (eval) gives the same logits (dropout 0) */
    float l2[N * C];
    mmp_head_forward(&h, x, N, 0, NULL, l2);
    CHECK(!memcmp(l2, logits, sizeof l2));
    /* inference on more rows than MMP_TAIL_INFER_ROWS goes in blocks: the same logits */
    {
        enum { R = 15 };
        float *bx = malloc(sizeof(float) * R * N * D), *bl = malloc(sizeof(float) * R * N * C);
        for (int r = 0; r < R; r++) memcpy(bx + r * N * D, x, sizeof(float) * N * D);
        mmp_head_forward(&h, bx, R * N, 0, NULL, bl);
        for (int r = 0; r < R; r++) {
            char nm[64];
            snprintf(nm, sizeof nm, "logits, inference of %d rows (copy %d)", R * N, r);
            if (r == 0 || r == R - 1) t_cmp_scaled(nm, bl + r * N * C, t_fixture_f32(&st, "logits0")->data, N * C, 1e-5);
            else CHECK(t_maxrel(bl + r * N * C, t_fixture_f32(&st, "logits0")->data, N * C, 1e-5, 1e-6, NULL) <= 1);
        }
        free(bx);
        free(bl);
    }
    mmp_head_free(&h);

    /* optimizer steps */
    for (int o = 0; o < 2; o++) {
        const char *on = o ? "sgd" : "adamw";
        mmp_optim opt;
        double lr = t_fixture_optim(&opt, o, 0.05);
        make_head(&h, &st);
        enum { STEPS = 5, B = 4 };
        float losses[STEPS];
        t_train_steps(&h, &opt, lr, x, y, N, D, C, STEPS, B, &rng, losses);
        char nm[160];
        snprintf(nm, sizeof nm, "%s.losses", on);
        t_cmp_scaled(nm, losses, t_fixture_f32(&ss, nm)->data, STEPS, 1e-5);
        worst = 0;
        for (int i = 0; i < h.np; i++) {
            snprintf(nm, sizeof nm, "%s.final.%s", on, h.params[i].name);
            printf("  ");
            worst = fmax(worst, t_cmp_scaled(nm, h.params[i].w, t_fixture_f32(&ss, nm)->data, h.params[i].n, 1e-5));
        }
        printf("%s: %d steps, final weights worst max rel err %.3g\n", on, STEPS, worst);
        mmp_head_free(&h);
    }
    mmp_st_close(&st);
    mmp_st_close(&ss);
}

/* the same bits for 1, 2, 3 and 4 threads (fixed slices, gradients summed in slice order) */
static void test_threads(void) {
    mmp_safetensors st;
    mmp_st_open_or_die(&st, t_root_path("tests/fixtures/train_tail/init.safetensors"));
    const float *x = t_fixture_f32(&st, "x")->data, *yf = t_fixture_f32(&st, "y")->data;
    enum { N = 10, C = 3, D = 3 * 5 * 7 };
    int64_t y[N];
    for (int i = 0; i < N; i++) y[i] = (int64_t)yf[i];
    float *ref = NULL;
    for (int T = 1; T <= 4; T++) {
        mmp_head h;
        make_head(&h, &st);
        h.tail->dropout = 0.3f; /* dropout on too */
        h.tail->threads = T;
        mmp_optim opt;
        mmp_optim_defaults(&opt, MMP_OPT_ADAMW);
        float lg[N * C], dl[N * C], dx[N * D];
        for (int s = 0; s < 4; s++) {
            uint64_t rng = mmp_rng_derive(5, 6, (uint64_t)s);
            mmp_head_forward(&h, x, N, 1, &rng, lg);
            mmp_ce_loss(lg, y, N, C, NULL, 0, dl);
            mmp_tail_backward(h.tail, N, dl, dx);
            mmp_optim_step(&opt, h.params, h.np, s, 1e-2);
        }
        CHECKF(t_same_state(&h, dx, N * D, &ref), "%d threads: weights/dx differ from 1 thread", T);
        mmp_head_free(&h);
    }
    printf("threads 1..4: 4 AdamW steps with dropout give bit-identical weights and dx\n");
    free(ref);
    mmp_st_close(&st);
}

/* bad backbones: one clear error, no crash */
static void test_errors(void) {
    mmp_safetensors st;
    mmp_st_open_or_die(&st, t_root_path("tests/fixtures/train_tail/init.safetensors"));
    mmp_head h;
    char err[512] = "";
    CHECK(mmp_head_init_tail(&h, &st, 3, 5, 7, 3, 0, 0, err, sizeof err) == -1);
    printf("no block: %s\n", err);
    CHECK(strstr(err, "features.3") != NULL);
    CHECK(mmp_head_init_tail(&h, &st, 19, 5, 7, 3, 0, 0, err, sizeof err) == -1);
    CHECK(mmp_head_init_tail(&h, &st, 14, 0, 7, 3, 0, 0, err, sizeof err) == -1);
    /* starting at 15: 4 input channels, fine; classifier zero (load_classifier 0) */
    CHECK(mmp_head_init_tail(&h, &st, 15, 3, 4, 3, 0, 0, err, sizeof err) == 0);
    CHECK(h.in_dim == 4 * 3 * 4 && h.params[h.np - 2].w[0] == 0);
    mmp_head_free(&h);
    mmp_st_close(&st);
}

/* ---------------- the real ImageNet MobileNetV2 ---------------- */

static void real_tail(const mmp_safetensors *st, int first, int64_t hw, const char *what) {
    mmp_head h;
    char err[512];
    int rc = mmp_head_init_tail(&h, st, first, hw, hw, 10, 0.2f, 0, err, sizeof err);
    CHECKF(rc == 0, "%s: %s", what, err);
    if (rc) return;
    mmp_head_init_weights(&h, 3);
    CHECK(h.tail->F == 1280 && h.tail->last == 18);
    const int B = 16;
    int64_t D = h.in_dim, y[16];
    float *x = malloc(sizeof(float) * (size_t)(B * D)), lg[160], dl[160];
    for (int64_t i = 0; i < B * D; i++) x[i] = t_trnd(&rs) * 1.5f;
    for (int b = 0; b < B; b++) y[b] = b % 10;
    mmp_optim opt;
    mmp_optim_defaults(&opt, MMP_OPT_ADAMW);
    opt.weight_decay = 1e-2;
    mmp_head_forward(&h, x, B, 0, NULL, lg); /* eval mode: no dropout */
    double l0 = mmp_ce_loss(lg, y, B, 10, NULL, 0, NULL), l;
    int finite = isfinite(l0);
    for (int s = 0; s < 6; s++) {
        uint64_t r = mmp_rng_derive(1, 2, (uint64_t)s);
        mmp_head_forward(&h, x, B, 1, &r, lg);
        l = mmp_ce_loss(lg, y, B, 10, NULL, 0, dl);
        finite &= isfinite(l);
        mmp_head_backward(&h, x, B, dl);
        for (int i = 0; i < h.np; i++)
            for (size_t k = 0; k < h.params[i].n; k++) finite &= isfinite(h.params[i].g[k]);
        mmp_optim_step(&opt, h.params, h.np, s, 1e-3);
    }
    mmp_head_forward(&h, x, B, 0, NULL, lg);
    l = mmp_ce_loss(lg, y, B, 10, NULL, 0, NULL);
    printf("%s: %d units, %lld inputs, %d tensors; eval loss %.4f -> %.4f after 6 AdamW steps (dropout 0.2)\n", what, h.tail->nu,
           (long long)D, h.np, l0, l);
    CHECKF(finite, "%s: NaN/inf in the loss or gradients", what);
    CHECKF(l < l0, "%s: loss did not decrease (%.4f -> %.4f)", what, l0, l);
    free(x);
    mmp_head_free(&h);
}

static void test_real(void) {
    const char *sh = t_shared();
    if (!sh) {
        printf("real weights: skipped (no shared folder)\n");
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/models/mobilenet_v2-imagenet.safetensors", sh);
    mmp_safetensors st;
    char err[512];
    if (mmp_st_open(&st, path, err, sizeof err)) {
        printf("real weights: skipped (%s)\n", err);
        return;
    }
    CHECK(mmp_tail_first_cin(&st, 17) == 160 && mmp_tail_first_cin(&st, 14) == 96);
    CHECK(mmp_mnv2_spatial(96, 16) == 3 && mmp_mnv2_spatial(96, 13) == 6 && mmp_mnv2_spatial(224, 16) == 7);
    real_tail(&st, 17, 3, "ImageNet MobileNetV2 from features.16 (96 px)");
    real_tail(&st, 14, 6, "ImageNet MobileNetV2 from features.13 (96 px)");
    mmp_st_close(&st);
}

int main(void) {
    mmp_train_init_blas();
    test_fd_pw();
    test_fd_dw(1);
    test_fd_dw(2);
    test_fd_bn();
    test_fd_relu6();
    test_fd_pool();
    test_parity();
    test_threads();
    test_errors();
    test_real();
    TEST_END();
}
