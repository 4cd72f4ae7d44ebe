/* The resnet-tail head (train/resnet_tail.h on the train/cnn_tail.h engine):
 * - the dense convolution's backward (3x3 stride 1 and 2, 1x1 stride 2, odd
 *   sizes) against central finite differences, and its forward against a
 *   direct loop;
 * - parity with PyTorch 1.13 / torchvision 0.14 (fixtures from
 *   tests/fixtures/gen_train_resnet_tail.py: tiny BasicBlock and Bottleneck
 *   tails with stride-2 downsample blocks and identity blocks, eval-mode BN
 *   with nonzero running statistics, 5x7 inputs): logits, loss, every
 *   parameter gradient and dloss/dx; losses and weights after 5 AdamW and 5
 *   SGD(momentum) steps;
 * - bit-identical results for 1..4 threads; clear errors for bad backbones. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "tail_testlib.h"
#include "testlib.h"
#include "train/head.h"
#include "train/layers.h"
#include "train/optim.h"
#include "train/resnet_tail.h"

static uint64_t rs = 4242;

/* ---------------- dense convolution ---------------- */

typedef struct { float *x, *w, *y, *r; int64_t N, H, W, Ci, O; int K, s; size_t ny; } cv_ctx;
static double cv_loss(void *c_) {
    cv_ctx *c = c_;
    mmp_conv2d_forward(c->x, c->N, c->H, c->W, c->Ci, c->w, c->O, c->K, c->s, c->y);
    double s = 0;
    for (size_t i = 0; i < c->ny; i++) s += (double)c->y[i] * c->r[i];
    return s;
}
static void test_conv(int K, int s) {
    cv_ctx c = {.N = 2, .H = 5, .W = 7, .Ci = 3, .O = 4, .K = K, .s = s};
    int p = K / 2;
    int64_t Ho = (c.H + 2 * p - K) / s + 1, Wo = (c.W + 2 * p - K) / s + 1;
    size_t nx = (size_t)(c.N * c.H * c.W * c.Ci), nw = (size_t)(c.O * c.Ci * K * K);
    c.ny = (size_t)(c.N * Ho * Wo * c.O);
    c.x = malloc(sizeof(float) * nx); c.w = malloc(sizeof(float) * nw);
    c.y = malloc(sizeof(float) * c.ny); c.r = malloc(sizeof(float) * c.ny);
    t_fill(&rs, c.x, nx, 1); t_fill(&rs, c.w, nw, 1); t_fill(&rs, c.r, c.ny, 1);
    /* forward vs the definition (NHWC x, torch [O,Ci,K,K] w) */
    float *ref = malloc(sizeof(float) * c.ny);
    for (int64_t n = 0; n < c.N; n++)
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++)
                for (int64_t o = 0; o < c.O; o++) {
                    double a = 0;
                    for (int64_t ci = 0; ci < c.Ci; ci++)
                        for (int kh = 0; kh < K; kh++)
                            for (int kw = 0; kw < K; kw++) {
                                int64_t ih = oh * s - p + kh, iw = ow * s - p + kw;
                                if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                                a += (double)c.x[((n * c.H + ih) * c.W + iw) * c.Ci + ci] * c.w[((o * c.Ci + ci) * K + kh) * K + kw];
                            }
                    ref[((n * Ho + oh) * Wo + ow) * c.O + o] = (float)a;
                }
    cv_loss(&c);
    char nm[80];
    snprintf(nm, sizeof nm, "conv %dx%d stride %d forward vs definition", K, K, s);
    t_cmp_scaled(nm, c.y, ref, c.ny, 1e-6);
    float *dx = malloc(sizeof(float) * nx), *dw = malloc(sizeof(float) * nw);
    mmp_conv2d_backward(c.x, c.r, c.N, c.H, c.W, c.Ci, c.w, c.O, K, s, dx, dw);
    snprintf(nm, sizeof nm, "fd conv %dx%d stride %d dW", K, K, s);
    t_fd(nm, c.w, nw, dw, cv_loss, &c, 1e-2f, 1e-3);
    snprintf(nm, sizeof nm, "fd conv %dx%d stride %d dx", K, K, s);
    t_fd(nm, c.x, nx, dx, cv_loss, &c, 1e-2f, 1e-3);
    free(c.x); free(c.w); free(c.y); free(c.r); free(ref); free(dx); free(dw);
}

/* large images: im2col in several chunks of images (one per call here) ==
 * the definition; backward == the sum of one-image backwards */
static void test_conv_chunks(void) {
    enum { N = 3, H = 64, W = 64, Ci = 64, O = 4 };
    size_t nx = (size_t)N * H * W * Ci, nw = (size_t)O * Ci * 9, ny = (size_t)N * H * W * O;
    float *x = malloc(sizeof(float) * nx), *w = malloc(sizeof(float) * nw), *y = malloc(sizeof(float) * ny);
    float *ref = malloc(sizeof(float) * ny), *dx = malloc(sizeof(float) * nx), *dw = malloc(sizeof(float) * nw);
    float *dx1 = malloc(sizeof(float) * nx), *dw1 = malloc(sizeof(float) * nw), *dws = calloc(nw, sizeof(float));
    t_fill(&rs, x, nx, 1); t_fill(&rs, w, nw, 1);
    mmp_conv2d_forward(x, N, H, W, Ci, w, O, 3, 1, y);
    for (int n = 0; n < N; n++)
        for (int oh = 0; oh < H; oh++)
            for (int ow = 0; ow < W; ow++)
                for (int o = 0; o < O; o++) {
                    double a = 0;
                    for (int kh = 0; kh < 3; kh++)
                        for (int kw = 0; kw < 3; kw++) {
                            int ih = oh - 1 + kh, iw = ow - 1 + kw;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            for (int c = 0; c < Ci; c++)
                                a += (double)x[(((size_t)n * H + ih) * W + iw) * Ci + c] * w[((o * Ci + c) * 3 + kh) * 3 + kw];
                        }
                    ref[(((size_t)n * H + oh) * W + ow) * O + o] = (float)a;
                }
    t_cmp_scaled("conv 3x3 64x64x64, 3 images (chunked) vs definition", y, ref, ny, 1e-6);
    mmp_conv2d_backward(x, y, N, H, W, Ci, w, O, 3, 1, dx, dw);
    for (int n = 0; n < N; n++) {
        size_t px = (size_t)H * W * Ci;
        mmp_conv2d_backward(x + n * px, y + (size_t)n * H * W * O, 1, H, W, Ci, w, O, 3, 1, dx1 + n * px, dw1);
        for (size_t k = 0; k < nw; k++) dws[k] += dw1[k];
    }
    t_cmp_scaled("conv backward dx, chunked vs one image at a time", dx, dx1, nx, 1e-6);
    t_cmp_scaled("conv backward dW, chunked vs sum of one-image dW", dw, dws, nw, 1e-5);
    free(x); free(w); free(y); free(ref); free(dx); free(dw); free(dx1); free(dw1); free(dws);
}

/* one reused workspace over calls of several shapes (growing, shrinking, dirty
 * from the previous call) with prepacked weights == the allocating API, bit for bit */
static void test_conv_ws(void) {
    static const int sh[][6] = { /* N, H, W, Ci, O, K*10+s */
        {2, 9, 7, 16, 8, 31}, {3, 6, 6, 32, 12, 11}, {2, 12, 10, 24, 6, 32}, {4, 8, 8, 16, 8, 31}, {1, 5, 5, 8, 4, 12},
    };
    mmp_conv_ws ws = {0};
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
        int N = sh[i][0], H = sh[i][1], W = sh[i][2], Ci = sh[i][3], O = sh[i][4], K = sh[i][5] / 10, s = sh[i][5] % 10;
        int Ho = (H + 2 * (K / 2) - K) / s + 1, Wo = (W + 2 * (K / 2) - K) / s + 1;
        size_t nx = (size_t)N * H * W * Ci, nw = (size_t)O * Ci * K * K, ny = (size_t)N * Ho * Wo * O;
        float *x = malloc(sizeof(float) * nx), *w = malloc(sizeof(float) * nw), *wt = malloc(sizeof(float) * nw);
        float *y = malloc(sizeof(float) * ny), *y2 = malloc(sizeof(float) * ny), *g = malloc(sizeof(float) * ny);
        float *dx = malloc(sizeof(float) * nx), *dx2 = malloc(sizeof(float) * nx);
        float *dw = malloc(sizeof(float) * nw), *dw2 = malloc(sizeof(float) * nw);
        t_fill(&rs, x, nx, 1); t_fill(&rs, w, nw, 1); t_fill(&rs, g, ny, 1);
        mmp_conv2d_pack(w, O, Ci, K, wt);
        mmp_conv2d_forward(x, N, H, W, Ci, w, O, K, s, y);
        mmp_conv2d_forward_ws(x, N, H, W, Ci, wt, O, K, s, y2, &ws);
        mmp_conv2d_backward(x, g, N, H, W, Ci, w, O, K, s, dx, dw);
        for (int rep = 0; rep < 2; rep++) { /* the second time: ws dirty from this very call */
            mmp_conv2d_backward_ws(x, g, N, H, W, Ci, wt, O, K, s, dx2, dw2, &ws);
            CHECKF(memcmp(y, y2, sizeof(float) * ny) == 0 && memcmp(dx, dx2, sizeof(float) * nx) == 0 &&
                       memcmp(dw, dw2, sizeof(float) * nw) == 0,
                   "conv ws call %zu.%d (K=%d s=%d): not the same bits as the allocating API", i, rep, K, s);
        }
        free(x); free(w); free(wt); free(y); free(y2); free(g); free(dx); free(dx2); free(dw); free(dw2);
    }
    mmp_conv_ws_free(&ws);
}

/* ---------------- PyTorch parity ---------------- */

typedef struct { const char *name; int L, i; int64_t C0; int nu, np; } model;
static const model models[2] = {
    {"basic", 2, -1, 3, 3 + 2 + 3, 3 * 8 + 2},      /* layer3.0: ds+2, layer3.1: 2, layer4.0: ds+2 */
    {"bottleneck", 3, 0, 8, 3 + 4, 3 * 7 + 2},      /* layer3.1: 3, layer4.0: ds+3 */
};

static void make_head(mmp_head *h, const mmp_safetensors *st, const model *m) {
    char err[512];
    if (mmp_head_init_resnet_tail(h, st, m->L, m->i, 5, 7, 3, 1, err, sizeof err)) {
        fprintf(stderr, "mmp_head_init_resnet_tail: %s\n", err);
        exit(1);
    }
}

static void test_parity(const model *m) {
    mmp_safetensors st, ss;
    char p1[128], p2[128];
    snprintf(p1, sizeof p1, "tests/fixtures/train_resnet_tail/%s.init.safetensors", m->name);
    snprintf(p2, sizeof p2, "tests/fixtures/train_resnet_tail/%s.steps.safetensors", m->name);
    mmp_st_open_or_die(&st, t_root_path(p1));
    mmp_st_open_or_die(&ss, t_root_path(p2));
    const float *x = t_fixture_f32(&st, "x")->data, *yf = t_fixture_f32(&st, "y")->data;
    enum { N = 10, C = 3 };
    const int64_t D = m->C0 * 5 * 7;
    int64_t y[N];
    for (int i = 0; i < N; i++) y[i] = (int64_t)yf[i];
    mmp_head h;
    make_head(&h, &st, m);
    CHECKF(h.in_dim == D && h.out_dim == C && h.tail->nu == m->nu && h.np == m->np, "%s: structure (nu %d np %d)", m->name,
           h.tail->nu, h.np);
    CHECK(h.tail->last == 400 && h.tail->first == (m->i < 0 ? 300 : 301));
    float logits[N * C], dl[N * C], *dx = malloc(sizeof(float) * (size_t)(N * D));
    uint64_t rng = 1;
    char nm[200];
    snprintf(nm, sizeof nm, "%s: logits", m->name);
    mmp_head_forward(&h, x, N, 1, &rng, logits);
    t_cmp_scaled(nm, logits, t_fixture_f32(&st, "logits0")->data, N * C, 1e-5);
    float loss = (float)mmp_ce_loss(logits, y, N, C, NULL, 0, dl);
    snprintf(nm, sizeof nm, "%s: loss", m->name);
    t_cmp_scaled(nm, &loss, t_fixture_f32(&st, "loss0")->data, 1, 1e-5);
    mmp_tail_backward(h.tail, N, dl, dx);
    double worst = 0;
    for (int i = 0; i < h.np; i++) {
        snprintf(nm, sizeof nm, "grad.%s", h.params[i].name);
        const mmp_tensor *g = t_fixture_f32(&st, nm);
        CHECKF((size_t)mmp_numel(g->ndim, g->shape) == h.params[i].n, "%s: size", nm);
        printf("  ");
        worst = fmax(worst, t_cmp_scaled(nm, h.params[i].g, g->data, h.params[i].n, 1e-5));
    }
    printf("%s: gradients: worst max rel err %.3g over %d tensors\n", m->name, worst, h.np);
    snprintf(nm, sizeof nm, "%s: dx (dloss/dinput)", m->name);
    t_cmp_scaled(nm, dx, t_fixture_f32(&st, "dx0")->data, (size_t)(N * D), 1e-5);
    mmp_head_free(&h);
    for (int o = 0; o < 2; o++) {
        const char *on = o ? "sgd" : "adamw";
        mmp_optim opt;
        double lr = t_fixture_optim(&opt, o, 0.01);
        make_head(&h, &st, m);
        enum { STEPS = 5, B = 4 };
        float losses[STEPS];
        t_train_steps(&h, &opt, lr, x, y, N, D, C, STEPS, B, &rng, losses);
        snprintf(nm, sizeof nm, "%s.losses", on);
        char n2[240];
        snprintf(n2, sizeof n2, "%s: %s", m->name, nm);
        t_cmp_scaled(n2, losses, t_fixture_f32(&ss, nm)->data, STEPS, 1e-5);
        worst = 0;
        for (int i = 0; i < h.np; i++) {
            snprintf(nm, sizeof nm, "%s.final.%s", on, h.params[i].name);
            worst = fmax(worst, t_cmp_scaled(nm, h.params[i].w, t_fixture_f32(&ss, nm)->data, h.params[i].n, 1e-5));
        }
        printf("%s %s: %d steps, final weights worst max rel err %.3g\n", m->name, on, STEPS, worst);
        mmp_head_free(&h);
    }
    free(dx);
    mmp_st_close(&st);
    mmp_st_close(&ss);
}

/* the same bits for 1..4 threads */
static void test_threads(const model *m) {
    mmp_safetensors st;
    char p1[128];
    snprintf(p1, sizeof p1, "tests/fixtures/train_resnet_tail/%s.init.safetensors", m->name);
    mmp_st_open_or_die(&st, t_root_path(p1));
    const float *x = t_fixture_f32(&st, "x")->data, *yf = t_fixture_f32(&st, "y")->data;
    enum { N = 10, C = 3 };
    const int64_t D = m->C0 * 5 * 7;
    int64_t y[N];
    for (int i = 0; i < N; i++) y[i] = (int64_t)yf[i];
    float *ref = NULL;
    for (int T = 1; T <= 4; T++) {
        mmp_head h;
        make_head(&h, &st, m);
        h.tail->threads = T;
        mmp_optim opt;
        mmp_optim_defaults(&opt, MMP_OPT_ADAMW);
        float lg[N * C], dl[N * C], *dx = malloc(sizeof(float) * (size_t)(N * D));
        for (int s = 0; s < 3; s++) {
            mmp_head_forward(&h, x, N, 1, NULL, lg);
            mmp_ce_loss(lg, y, N, C, NULL, 0, dl);
            mmp_tail_backward(h.tail, N, dl, dx);
            mmp_optim_step(&opt, h.params, h.np, s, 1e-2);
        }
        CHECKF(t_same_state(&h, dx, (size_t)(N * D), &ref), "%s: %d threads differ from 1", m->name, T);
        free(dx);
        mmp_head_free(&h);
    }
    printf("%s: threads 1..4: 3 AdamW steps give bit-identical weights and dx\n", m->name);
    free(ref);
    mmp_st_close(&st);
}

static void test_errors(void) {
    mmp_safetensors st;
    mmp_st_open_or_die(&st, t_root_path("tests/fixtures/train_resnet_tail/basic.init.safetensors"));
    mmp_head h;
    char err[512] = "";
    int L, i;
    CHECK(mmp_resnet_parse_layer("layer3:flat", &L, &i) == 0 && L == 3 && i == -1);
    CHECK(mmp_resnet_parse_layer("layer3.1", &L, &i) == 0 && L == 3 && i == 1);
    CHECK(mmp_resnet_parse_layer("layer5", &L, &i) == -1 && mmp_resnet_parse_layer("features.3", &L, &i) == -1);
    CHECK(mmp_resnet_parse_layer("layer2.x", &L, &i) == -1);
    CHECK(mmp_resnet_spatial(224, 3) == 14 && mmp_resnet_spatial(224, 4) == 7 && mmp_resnet_spatial(32, 3) == 2);
    /* after the last block: nothing to train */
    CHECK(mmp_head_init_resnet_tail(&h, &st, 4, -1, 2, 2, 3, 0, err, sizeof err) == -1);
    printf("after layer4: %s\n", err);
    CHECK(mmp_head_init_resnet_tail(&h, &st, 3, 5, 3, 4, 3, 0, err, sizeof err) == -1);
    printf("layer3.5: %s\n", err);
    CHECK(strstr(err, "no block layer3.5") != NULL);
    CHECK(strstr(err, "layer3") != NULL);
    /* layer3.0 output: 4 channels at 3x4 -> layer3.1, layer4.0; fc zero */
    CHECK(mmp_head_init_resnet_tail(&h, &st, 3, 0, 3, 4, 3, 0, err, sizeof err) == 0);
    CHECK(h.in_dim == 4 * 3 * 4 && h.params[h.np - 2].w[0] == 0 && !strcmp(h.params[h.np - 2].name, "fc.weight"));
    mmp_head_free(&h);
    /* a MobileNetV2 state dict is not a ResNet */
    mmp_safetensors mb;
    mmp_st_open_or_die(&mb, t_root_path("tests/fixtures/train_tail/init.safetensors"));
    CHECK(mmp_head_init_resnet_tail(&h, &mb, 3, -1, 5, 7, 3, 0, err, sizeof err) == -1);
    printf("MobileNetV2 backbone: %s\n", err);
    mmp_st_close(&mb);
    mmp_st_close(&st);
}

int main(void) {
    mmp_train_init_blas();
    test_conv(3, 1);
    test_conv(3, 2);
    test_conv(1, 2);
    test_conv(1, 1);
    test_conv_chunks();
    test_conv_ws();
    for (int k = 0; k < 2; k++) {
        test_parity(&models[k]);
        test_threads(&models[k]);
    }
    test_errors();
    TEST_END();
}
