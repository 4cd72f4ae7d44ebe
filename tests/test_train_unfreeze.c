/* Freezing strategies and conv LoRA of the CNNs trained from the image
 * (mmp-train-step --from input --unfreeze head|last:N|all|norm|lora):
 * against PyTorch 1.13 / PEFT 0.4 (tests/fixtures/gen_train_unfreeze.py),
 * the backward's stop, finite differences of the LoRA backward, threads. */
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

enum { N = 4, S = 32, C = 3, D = 3 * S * S };
static const char *models[3] = {"mnv2", "basic", "bottleneck"};
static const char *strat[4] = {"head", "last2", "norm", "lora"};
static const int kinds[4] = {MMP_UNFREEZE_HEAD, MMP_UNFREEZE_LAST, MMP_UNFREEZE_NORM, MMP_UNFREEZE_LORA};

/* the fixture network (train_full's weights) with strategy s applied, LoRA
 * weights from the fixture */
static void make(mmp_head *h, const mmp_safetensors *full, const mmp_safetensors *fx, int m, int s, int train_bn,
                 const char *targets) {
    char err[512];
    int rc = m ? mmp_head_init_resnet_tail(h, full, 0, -1, S, S, C, 1, err, sizeof err)
               : mmp_head_init_tail(h, full, 0, S, S, C, 0.0f, 1, err, sizeof err);
    CHECKF(rc == 0, "%s: %s", models[m], err);
    h->tail->train_bn = train_bn;
    mmp_tail_unfreeze_opts o = {.kind = kinds[s], .n = 2, .rank = 2, .alpha = 4, .dropout = 0, .targets = targets};
    rc = mmp_tail_unfreeze(h->tail, &o, 5, err, sizeof err);
    CHECKF(rc == 0, "%s %s: %s", models[m], strat[s], err);
    h->params = h->tail->params;
    h->np = h->tail->np;
    for (int i = 0; i < h->np && fx; i++) {
        if (!strstr(h->params[i].name, ".lora_")) continue;
        char nm[160];
        snprintf(nm, sizeof nm, "lora.init.%s", h->params[i].name);
        const mmp_tensor *t = t_fixture_f32(fx, nm);
        CHECKF((size_t)mmp_numel(t->ndim, t->shape) == h->params[i].n, "%s: shape", nm);
        memcpy(h->params[i].w, t->data, sizeof(float) * h->params[i].n);
    }
}

static double cmp_floor(const char *what, const float *a, const float *b, size_t n, double floor, double tol) {
    double mx = 0, worst = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)b[i]));
    mx = fmax(mx, floor);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / mx;
        if (d > worst || d != d) { worst = d != d ? INFINITY : d; w = i; }
    }
    printf("  %-50s n=%-5zu max rel err %.3g (tol %.0e)\n", what, n, worst, tol);
    CHECKF(worst <= tol, "%s: element %zu: %.9g vs %.9g (rel %.3g)", what, w, a[w], b[w], worst);
    return worst;
}

static void test_parity(int m, int s) {
    mmp_safetensors full, fx;
    char path[160], nm[220], n2[260];
    snprintf(path, sizeof path, "tests/fixtures/train_full/%s.safetensors", models[m]);
    mmp_st_open_or_die(&full, t_root_path(path));
    snprintf(path, sizeof path, "tests/fixtures/train_unfreeze/%s.safetensors", models[m]);
    mmp_st_open_or_die(&fx, t_root_path(path));
    const char *sn = strat[s];
    const float *x = t_fixture_f32(&full, "x")->data, *yf = t_fixture_f32(&full, "y")->data;
    int64_t y[N];
    for (int i = 0; i < N; i++) y[i] = (int64_t)yf[i];
    mmp_head h;
    make(&h, &full, &fx, m, s, 1, NULL);
    /* the trainable set is PyTorch's */
    int ntr = 0;
    for (int i = 0; i < h.np; i++) {
        if (h.params[i].frozen) continue;
        ntr++;
        snprintf(nm, sizeof nm, "%s.grad.%s", sn, h.params[i].name);
        CHECKF(mmp_st_get(&fx, nm) != NULL, "%s %s: %s trains here, not in PyTorch", models[m], sn, h.params[i].name);
    }
    snprintf(nm, sizeof nm, "%s.trainable", sn);
    CHECKF(ntr == (int)((const float *)t_fixture_f32(&fx, nm)->data)[0], "%s %s: %d trainable tensors, PyTorch %g", models[m], sn,
           ntr, ((const float *)t_fixture_f32(&fx, nm)->data)[0]);
    float logits[N * C], dl[N * C], *dx = malloc(sizeof(float) * D * N);
    mmp_head_forward(&h, x, N, 1, NULL, logits);
    snprintf(nm, sizeof nm, "%s.logits", sn);
    snprintf(n2, sizeof n2, "%s %s: logits", models[m], sn);
    t_cmp_scaled(n2, logits, t_fixture_f32(&fx, nm)->data, N * C, 1e-4);
    float loss = (float)mmp_ce_loss(logits, y, N, C, NULL, 0, dl);
    /* the training backward (no dx: stops at the lowest trainable layer) */
    mmp_tail_backward(h.tail, N, dl, NULL);
    float **g0 = calloc((size_t)h.np, sizeof *g0);
    for (int i = 0; i < h.np; i++) {
        g0[i] = malloc(sizeof(float) * h.params[i].n);
        memcpy(g0[i], h.params[i].g, sizeof(float) * h.params[i].n);
    }
    /* the same forward, backward with dx (through everything) */
    mmp_head_forward(&h, x, N, 1, NULL, logits);
    mmp_tail_backward(h.tail, N, dl, dx);
    snprintf(nm, sizeof nm, "%s.loss", sn);
    snprintf(n2, sizeof n2, "%s %s: loss", models[m], sn);
    t_cmp_scaled(n2, &loss, t_fixture_f32(&fx, nm)->data, 1, 1e-4);
    double gmax = 0, worst = 0;
    for (int i = 0; i < h.np; i++) {
        if (h.params[i].frozen) continue;
        snprintf(nm, sizeof nm, "%s.grad.%s", sn, h.params[i].name);
        const mmp_tensor *g = t_fixture_f32(&fx, nm);
        for (size_t e = 0; e < h.params[i].n; e++) gmax = fmax(gmax, fabs(((const float *)g->data)[e]));
    }
    for (int i = 0; i < h.np; i++) {
        const mmp_param *p = &h.params[i];
        CHECKF(!memcmp(g0[i], p->g, sizeof(float) * p->n), "%s %s: %s: the gradient depends on whether dx is asked for", models[m],
               sn, p->name);
        if (p->frozen) {
            for (size_t e = 0; e < p->n; e++) CHECKF(p->g[e] == 0, "%s %s: frozen %s has a gradient", models[m], sn, p->name);
            continue;
        }
        snprintf(nm, sizeof nm, "%s.grad.%s", sn, p->name);
        worst = fmax(worst, cmp_floor(nm, p->g, t_fixture_f32(&fx, nm)->data, p->n, 1e-2 * gmax, 1e-4));
    }
    printf("%s %s: %d trainable tensors, gradients worst %.3g\n", models[m], sn, ntr, worst);
    snprintf(nm, sizeof nm, "%s.dx", sn);
    snprintf(n2, sizeof n2, "%s %s: dx", models[m], sn);
    t_cmp_scaled(n2, dx, t_fixture_f32(&fx, nm)->data, N * D, 1e-4);
    for (int i = 0; i < h.np; i++) free(g0[i]);
    free(g0);
    mmp_head_free(&h);
    /* 3 train-mode SGD steps: every BN's running statistics (frozen ones move too) */
    mmp_optim opt;
    double lr = t_fixture_optim(&opt, 1, 0.01);
    make(&h, &full, &fx, m, s, 1, NULL);
    for (int st = 0; st < 3; st++) {
        mmp_head_forward(&h, x, N, 1, NULL, logits);
        mmp_ce_loss(logits, y, N, C, NULL, 0, dl);
        mmp_tail_backward(h.tail, N, dl, NULL);
        mmp_optim_step(&opt, h.params, h.np, st, lr);
    }
    worst = 0;
    for (int k = 0; k < h.tail->nu; k++) {
        const mmp_tail_unit *u = &h.tail->u[k];
        if (u->kind == MMP_TAIL_MAXPOOL) continue;
        snprintf(nm, sizeof nm, "%s.rs3.%s.running_mean", sn, u->bn);
        worst = fmax(worst, cmp_floor(nm, u->mean, t_fixture_f32(&fx, nm)->data, (size_t)u->cout, 0, 1e-5));
        snprintf(nm, sizeof nm, "%s.rs3.%s.running_var", sn, u->bn);
        worst = fmax(worst, cmp_floor(nm, u->var, t_fixture_f32(&fx, nm)->data, (size_t)u->cout, 0, 1e-5));
    }
    printf("%s %s: running statistics after 3 train-mode SGD steps, worst %.3g\n", models[m], sn, worst);
    mmp_head_free(&h);
    /* 5 AdamW steps, BN in eval mode: trainable weights move as PyTorch's, frozen ones do not */
    lr = t_fixture_optim(&opt, 0, 0.01);
    make(&h, &full, &fx, m, s, 0, NULL);
    float losses[5];
    for (int st = 0; st < 5; st++) {
        mmp_head_forward(&h, x, N, 1, NULL, logits);
        losses[st] = (float)mmp_ce_loss(logits, y, N, C, NULL, 0, dl);
        mmp_tail_backward(h.tail, N, dl, NULL);
        mmp_optim_step(&opt, h.params, h.np, st, lr);
    }
    snprintf(nm, sizeof nm, "%s.adamw.losses", sn);
    snprintf(n2, sizeof n2, "%s %s: 5 AdamW losses", models[m], sn);
    t_cmp_scaled(n2, losses, t_fixture_f32(&fx, nm)->data, 5, 1e-5);
    worst = 0;
    for (int i = 0; i < h.np; i++) {
        const mmp_param *p = &h.params[i];
        if (p->frozen) {
            const mmp_tensor *w0 = mmp_st_get(&full, p->name);
            CHECKF(w0 && !memcmp(w0->data, p->w, sizeof(float) * p->n), "%s %s: frozen %s moved", models[m], sn, p->name);
            CHECKF(!p->s1 && !p->s2, "%s %s: frozen %s has optimizer state", models[m], sn, p->name);
            continue;
        }
        snprintf(nm, sizeof nm, "%s.adamw.final.%s", sn, p->name);
        worst = fmax(worst, cmp_floor(nm, p->w, t_fixture_f32(&fx, nm)->data, p->n, 0, 2e-5));
    }
    printf("%s %s: 5 AdamW steps, final weights worst %.3g\n", models[m], sn, worst);
    mmp_head_free(&h);
    free(dx);
    mmp_st_close(&fx);
    mmp_st_close(&full);
}

/* finite differences of the conv LoRA backward (lora_A of the 7x7 / 3x3 stride-2
 * stem and of 1x1 convs, lora_B; the first and last adapters), eval-mode BN */
typedef struct { mmp_head *h; const float *x; const int64_t *y; } fd_ctx;
static double fd_loss(void *p) {
    fd_ctx *c = p;
    float lg[N * C], dl[N * C];
    mmp_head_forward(c->h, c->x, N, 1, NULL, lg);
    return mmp_ce_loss(lg, c->y, N, C, NULL, 0, dl);
}

static void test_fd(int m) {
    mmp_safetensors full, fx;
    char path[160], nm[80];
    snprintf(path, sizeof path, "tests/fixtures/train_full/%s.safetensors", models[m]);
    mmp_st_open_or_die(&full, t_root_path(path));
    snprintf(path, sizeof path, "tests/fixtures/train_unfreeze/%s.safetensors", models[m]);
    mmp_st_open_or_die(&fx, t_root_path(path));
    const float *x = t_fixture_f32(&full, "x")->data, *yf = t_fixture_f32(&full, "y")->data;
    int64_t y[N];
    for (int i = 0; i < N; i++) y[i] = (int64_t)yf[i];
    mmp_head h;
    make(&h, &full, &fx, m, 3, 0, NULL); /* eval-mode BN: smooth enough for central differences */
    float lg[N * C], dl[N * C];
    mmp_head_forward(&h, x, N, 1, NULL, lg);
    mmp_ce_loss(lg, y, N, C, NULL, 0, dl);
    mmp_tail_backward(h.tail, N, dl, NULL);
    fd_ctx c = {&h, x, y};
    int done = 0;
    for (int i = 0; i < h.np && done < 6; i++) {
        mmp_param *p = &h.params[i];
        if (!strstr(p->name, ".lora_")) continue;
        if (i > 8 && i < h.np - 10) continue; /* the first and the last adapters */
        float *g = malloc(sizeof(float) * p->n);
        memcpy(g, p->g, sizeof(float) * p->n);
        size_t n = p->n < 48 ? p->n : 48;
        snprintf(nm, sizeof nm, "%.10s %.60s", models[m], p->name);
        t_fd(nm, p->w, n, g, fd_loss, &c, 2e-3f, 1e-2);
        free(g);
        done++;
    }
    mmp_head_free(&h);
    mmp_st_close(&fx);
    mmp_st_close(&full);
}

/* the same bits for 1..4 threads (LoRA and last:2, train-mode BN, dropout in LoRA) */
static void test_threads(int m) {
    mmp_safetensors full, fx;
    char path[160];
    snprintf(path, sizeof path, "tests/fixtures/train_full/%s.safetensors", models[m]);
    mmp_st_open_or_die(&full, t_root_path(path));
    snprintf(path, sizeof path, "tests/fixtures/train_unfreeze/%s.safetensors", models[m]);
    mmp_st_open_or_die(&fx, t_root_path(path));
    const float *x = t_fixture_f32(&full, "x")->data, *yf = t_fixture_f32(&full, "y")->data;
    int64_t y[N];
    for (int i = 0; i < N; i++) y[i] = (int64_t)yf[i];
    for (int s = 1; s < 4; s += 2) {
        float *ref = NULL;
        size_t tot = 0;
        for (int th = 1; th <= 4; th++) {
            mmp_head h;
            make(&h, &full, &fx, m, s, 1, NULL);
            h.tail->threads = th;
            h.tail->lora_dropout = s == 3 ? 0.25f : 0;
            if (s == 3) { /* dropout buffers */
                h.tail->lora_dropout = 0.25f;
            }
            mmp_optim opt;
            double lr = t_fixture_optim(&opt, 0, 0.01);
            uint64_t rng = 99;
            for (int st = 0; st < 2; st++) {
                float lg[N * C], dl[N * C];
                mmp_head_forward(&h, x, N, 1, &rng, lg);
                mmp_ce_loss(lg, y, N, C, NULL, 0, dl);
                mmp_tail_backward(h.tail, N, dl, NULL);
                mmp_optim_step(&opt, h.params, h.np, st, lr);
            }
            size_t n = 0;
            for (int i = 0; i < h.np; i++) n += h.params[i].n;
            float *w = malloc(sizeof(float) * n);
            n = 0;
            for (int i = 0; i < h.np; i++) memcpy(w + n, h.params[i].w, sizeof(float) * h.params[i].n), n += h.params[i].n;
            if (!ref) ref = w, tot = n;
            else {
                CHECKF(n == tot && !memcmp(ref, w, sizeof(float) * n), "%s %s: %d threads differ from 1", models[m], strat[s], th);
                free(w);
            }
            mmp_head_free(&h);
        }
        printf("%s %s: bit-identical for 1..4 threads\n", models[m], strat[s]);
        free(ref);
    }
    mmp_st_close(&fx);
    mmp_st_close(&full);
}

static void test_errors(void) {
    mmp_safetensors full;
    mmp_st_open_or_die(&full, t_root_path("tests/fixtures/train_full/mnv2.safetensors"));
    char err[512];
    mmp_head h;
    CHECK(mmp_head_init_tail(&h, &full, 0, S, S, C, 0.0f, 1, err, sizeof err) == 0);
    mmp_tail_unfreeze_opts o = {.kind = MMP_UNFREEZE_LORA, .rank = 2, .alpha = 4, .targets = "nothing_like_this"};
    CHECK(mmp_tail_unfreeze(h.tail, &o, 1, err, sizeof err) == -1);
    printf("no match: %s\n", err);
    CHECK(strstr(err, "matches no convolution") != NULL);
    o.targets = "features.2.conv.1.0"; /* the depthwise conv of features.2 */
    CHECK(mmp_tail_unfreeze(h.tail, &o, 1, err, sizeof err) == -1);
    printf("depthwise only: %s\n", err);
    CHECK(strstr(err, "depthwise") != NULL);
    o = (mmp_tail_unfreeze_opts){.kind = MMP_UNFREEZE_LAST, .n = 8};
    CHECK(mmp_tail_unfreeze(h.tail, &o, 1, err, sizeof err) == -1);
    printf("last:8: %s\n", err);
    CHECK(strstr(err, "7 blocks") != NULL);
    /* mixed: the depthwise conv is skipped, the 1x1 ones adapted */
    o = (mmp_tail_unfreeze_opts){.kind = MMP_UNFREEZE_LORA, .rank = 2, .alpha = 4, .targets = "features.2.conv.1.0,features.2.conv.2"};
    CHECK(mmp_tail_unfreeze(h.tail, &o, 1, err, sizeof err) == 0);
    int nl = 0;
    for (int k = 0; k < h.tail->nu; k++) nl += h.tail->u[k].lora;
    CHECKF(nl == 1 && h.tail->np == 3 * h.tail->nu + 2 + 2, "mixed targets: %d adapted", nl);
    int kind, n;
    CHECK(mmp_unfreeze_parse("bn", &kind, &n, err, sizeof err) == 0 && kind == MMP_UNFREEZE_NORM);
    CHECK(mmp_unfreeze_parse("last:3", &kind, &n, err, sizeof err) == 0 && kind == MMP_UNFREEZE_LAST && n == 3);
    CHECK(mmp_unfreeze_parse("last:0", &kind, &n, err, sizeof err) == -1);
    CHECK(mmp_unfreeze_parse("some", &kind, &n, err, sizeof err) == -1);
    mmp_head_free(&h);
    mmp_st_close(&full);
}

int main(void) {
    test_errors();
    for (int m = 0; m < 3; m++)
        for (int s = 0; s < 4; s++) test_parity(m, s);
    for (int m = 1; m < 3; m++) test_fd(m); /* (MobileNetV2's ReLU6 kinks defeat central differences here) */
    for (int m = 0; m < 3; m++) test_threads(m);
    TEST_END();
}
