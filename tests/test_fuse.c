/* Fusion modules vs PyTorch (tests/fixtures/gen_fuse.py): forward and backward of the
 * learned modes (proj, gated, attention), finite-difference gradient checks, fixed
 * modes, random projections, checkpoint round trip and errors. */
#include <string.h>

#include "fuse/fuse.h"
#include "mmp.h"
#include "testlib.h"

static double loss(const mmp_fuse_params *p, int N, const float *a, const float *b, const float *r, int out) {
    float *h = malloc(sizeof(float) * (size_t)N * out);
    mmp_fuse_forward(p, N, a, b, h, NULL);
    double s = 0;
    for (int i = 0; i < N * out; i++) s += (double)h[i] * r[i];
    free(h);
    return s;
}

/* central difference of the loss w.r.t. x[k] vs the analytic gradient g */
static double fd_check(const mmp_fuse_params *p, int N, float *a, float *b, const float *r, int out, float *x, int n,
                       const float *g) {
    double worst = 0;
    for (int k = 0; k < n; k += (n > 12 ? n / 12 : 1)) {
        float keep = x[k], eps = 1e-2f;
        x[k] = keep + eps;
        double lp = loss(p, N, a, b, r, out);
        x[k] = keep - eps;
        double lm = loss(p, N, a, b, r, out);
        x[k] = keep;
        double num = (lp - lm) / (2 * eps);
        double err = fabs(num - g[k]) / (1e-2 + fabs(g[k]));
        if (err > worst) worst = err;
    }
    return worst;
}

static void check_kind(const char *kind) {
    char path[256], err[512];
    snprintf(path, sizeof path, "tests/fixtures/fuse/%s.safetensors", kind);
    mmp_fuse_params p;
    int rc = mmp_fuse_params_load(&p, t_root_path(path), err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    if (rc) return;
    CHECK(strcmp(mmp_fusep_kind_name(p.kind), kind) == 0);
    snprintf(path, sizeof path, "tests/fixtures/fuse/%s_io.safetensors", kind);
    mmp_safetensors io;
    mmp_st_open_or_die(&io, t_root_path(path));
    const mmp_tensor *ta = mmp_st_get(&io, "a"), *tb = mmp_st_get(&io, "b"), *tr = mmp_st_get(&io, "r"),
                     *th = mmp_st_get(&io, "h");
    int N = (int)ta->shape[0], out = (int)th->shape[1];
    CHECK(p.da == ta->shape[1] && p.db == tb->shape[1]);
    float *a = malloc(ta->nbytes), *b = malloc(tb->nbytes), *h = malloc(th->nbytes);
    memcpy(a, ta->data, ta->nbytes);
    memcpy(b, tb->data, tb->nbytes);
    float *cache = malloc(sizeof(float) * (mmp_fuse_cache_size(&p, N) + 1));
    mmp_fuse_forward(&p, N, a, b, h, cache);
    double wf = t_maxrel(h, th->data, (size_t)N * out, 1e-5, 1e-5, NULL);
    CHECKF(wf <= 1, "%s forward differs from PyTorch (%.3g)", kind, wf);
    /* backward */
    mmp_fuse_params g;
    mmp_fuse_params_alloc(&g, p.kind, p.da, p.db, p.d, p.heads, err, sizeof err);
    float *ga = malloc(ta->nbytes), *gb = malloc(tb->nbytes);
    mmp_fuse_backward(&p, N, a, b, cache, tr->data, &g, ga, gb);
    double wb = t_maxrel(ga, mmp_st_get(&io, "grad_a")->data, (size_t)N * p.da, 1e-4, 1e-5, NULL);
    wb = fmax(wb, t_maxrel(gb, mmp_st_get(&io, "grad_b")->data, (size_t)N * p.db, 1e-4, 1e-5, NULL));
    const char *names[8];
    float *pd[8], *gd[8];
    int nd[8], ntens;
    int64_t shp[8][2];
    ntens = mmp_fuse_params_tensors(&p, names, pd, nd, shp);
    mmp_fuse_params_tensors(&g, names, gd, nd, shp);
    double wfd = 0;
    for (int i = 0; i < ntens; i++) {
        char gn[128];
        snprintf(gn, sizeof gn, "grad.%s", names[i]);
        const mmp_tensor *rg = mmp_st_get(&io, gn);
        CHECKF(rg != NULL, "%s: no %s in the fixture", kind, gn);
        if (!rg) continue;
        size_t n = (size_t)mmp_numel(nd[i], shp[i]);
        double w = t_maxrel(gd[i], rg->data, n, 1e-4, 1e-5, NULL);
        CHECKF(w <= 1, "%s: %s differs from PyTorch (%.3g)", kind, gn, w);
        wb = fmax(wb, w);
        wfd = fmax(wfd, fd_check(&p, N, a, b, tr->data, out, pd[i], (int)n, gd[i]));
    }
    wfd = fmax(wfd, fd_check(&p, N, a, b, tr->data, out, a, N * p.da, ga));
    wfd = fmax(wfd, fd_check(&p, N, a, b, tr->data, out, b, N * p.db, gb));
    CHECKF(wb <= 1, "%s backward differs from PyTorch (%.3g)", kind, wb);
    CHECKF(wfd < 2e-2, "%s finite differences disagree (%.3g)", kind, wfd);
    printf("%s: forward %.3g, backward %.3g of tolerance; finite differences rel err %.2g\n", kind, wf, wb, wfd);
    /* save / load round trip */
    rc = mmp_fuse_params_save(&p, "rt.safetensors", err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    mmp_fuse_params q;
    CHECK(mmp_fuse_params_load(&q, "rt.safetensors", err, sizeof err) == 0);
    if (q.wa) {
        float *h2 = malloc(th->nbytes);
        mmp_fuse_forward(&q, N, a, b, h2, NULL);
        CHECK(memcmp(h, h2, th->nbytes) == 0);
        free(h2);
        mmp_fuse_params_free(&q);
    }
    free(a); free(b); free(h); free(ga); free(gb); free(cache);
    mmp_fuse_params_free(&g);
    mmp_fuse_params_free(&p);
    mmp_st_close(&io);
}

int main(void) {
    check_kind("proj");
    check_kind("gated");
    check_kind("attention");

    /* fixed modes */
    float a[3] = {3, 0, 4}, b[3] = {1, 2, 3}, h[6];
    mmp_fuse_fixed(MMP_FUSE_CONCAT, a, 3, b, 3, 0, 0, h);
    CHECK(h[0] == 3 && h[3] == 1 && h[5] == 3);
    mmp_fuse_fixed(MMP_FUSE_SUM, a, 3, b, 3, 0, 0, h);
    CHECK(h[0] == 4 && h[1] == 2 && h[2] == 7);
    mmp_fuse_fixed(MMP_FUSE_WEIGHTED, a, 3, b, 3, 0.75f, 0.25f, h);
    CHECK(h[0] == 2.5f && h[1] == 0.5f && h[2] == 3.75f);
    mmp_fuse_l2(a, 3);
    CHECK(fabsf(a[0] - 0.6f) < 1e-7 && fabsf(a[2] - 0.8f) < 1e-7);
    float z[2] = {0, 0};
    mmp_fuse_l2(z, 2);
    CHECK(z[0] == 0 && z[1] == 0);
    mmp_fuse_mode m;
    CHECK(mmp_fuse_mode_parse("attention", &m) == 0 && m == MMP_FUSE_ATTENTION);
    CHECK(mmp_fuse_mode_parse("mean", &m) == -1);

    /* random projections: seeded, orthonormal rows, JL scale */
    enum { O = 16, I = 40 };
    static float W1[O * I], W2[O * I], W3[O * I];
    CHECK(mmp_fuse_random_projection(W1, O, I, 7, 1) == 0);
    CHECK(mmp_fuse_random_projection(W2, O, I, 7, 1) == 0);
    CHECK(mmp_fuse_random_projection(W3, O, I, 8, 1) == 0);
    CHECK(memcmp(W1, W2, sizeof W1) == 0 && memcmp(W1, W3, sizeof W1) != 0);
    double worst = 0;
    for (int i = 0; i < O; i++)
        for (int j = 0; j < O; j++) {
            double s = 0;
            for (int k = 0; k < I; k++) s += (double)W1[i * I + k] * W1[j * I + k];
            worst = fmax(worst, fabs(s - (i == j)));
        }
    CHECKF(worst < 1e-5, "rows not orthonormal (%g)", worst);
    CHECK(mmp_fuse_random_projection(W1, I, O, 7, 1) == -1); /* more rows than columns */
    static float G[256 * 64];
    mmp_fuse_random_projection(G, 256, 64, 1, 0);
    double ss = 0;
    for (int i = 0; i < 256 * 64; i++) ss += (double)G[i] * G[i];
    CHECKF(fabs(ss / 64 - 1) < 0.05, "gaussian projection scale: E||Wx||^2/||x||^2 = %g", ss / 64);

    /* init: seeded, PyTorch bounds */
    char err[256];
    mmp_fuse_params p1, p2;
    mmp_fuse_params_alloc(&p1, MMP_FUSEP_ATTENTION, 10, 12, 8, 2, err, sizeof err);
    mmp_fuse_params_alloc(&p2, MMP_FUSEP_ATTENTION, 10, 12, 8, 2, err, sizeof err);
    mmp_fuse_params_init(&p1, 5);
    mmp_fuse_params_init(&p2, 5);
    CHECK(memcmp(p1.win, p2.win, sizeof(float) * 3 * 8 * 8) == 0 && p1.bin[0] == 0);
    float mx = 0;
    for (int i = 0; i < 8 * 10; i++) mx = fmaxf(mx, fabsf(p1.wa[i]));
    CHECK(mx <= 1 / sqrtf(10) && mx > 0.5f / sqrtf(10));
    mmp_fuse_params_free(&p1);
    mmp_fuse_params_free(&p2);
    CHECK(mmp_fuse_params_alloc(&p1, MMP_FUSEP_ATTENTION, 10, 12, 9, 2, err, sizeof err) == -1 && strstr(err, "heads"));

    /* bad checkpoints */
    CHECK(mmp_fuse_params_load(&p1, t_root_path("tests/fixtures/text/tiny_ref.safetensors"), err, sizeof err) == -1 &&
          strstr(err, "proj_a.weight"));
    CHECK(mmp_fuse_params_load(&p1, "no_such.safetensors", err, sizeof err) == -1);
    TEST_END();
}
