/* Winograd F(2x2,3x3) and F(4x4,3x3) (nn/winograd.h) vs the im2col path of
 * mmp_nn_cpu_conv2d and a double-precision direct convolution, on random data
 * (inputs and weights uniform in [-1,1), bias and residual too): channel
 * counts with a scalar tail (3, 5, 13, 33, 70) and multiples of 8; maps
 * 1x1, 2x2, 3x3, 7x7, 5x9, 16x16, 33x47 (tiles crossing the border, output
 * crop); G 1 and 3; with and without residual, ReLU, ReLU6.
 * Error = max |y - y_double| / max |y_double before the activation| per
 * output tensor. Measured (x86-64-v3, this file's data): im2col 7.1e-7,
 * F(2x2) 5.5e-7, F(4x4) 9.5e-6 (grows with cin: <= 6e-6 up to cin 64, 9.5e-6
 * at cin 256). Asserted: vs double F(2x2) <= 2e-6, F(4x4) <= 3e-5; vs the
 * im2col path F(2x2) <= 3e-6, F(4x4) <= 3e-5 (same scale). WINO_VERBOSE=1
 * prints every case.
 * Also: the dispatch (mmp_nn_cpu_conv2d runs Winograd only on maps with >= 9
 * tiles, scratch from mmp_nn_cpu_conv2d_scratch); an image's output is
 * bit-identical alone and inside a batch (chunks of tiles cross images);
 * mmp_nn_wino_prepare refuses non-eligible convolutions; mmp_nn_wino_pick_m. */
#include <stdint.h>
#include <string.h>

#include "mmp.h"
#include "nn/ops.h"
#include "nn/winograd.h"
#include "nn_testlib.h"
#include "testlib.h"

static uint64_t rs = 777;

/* out[G,H,W,cout] in double, 3x3 stride 1 pad 1, + b (+ res), act;
 * returns max |value before the activation| (the error scale). */
static double direct(const mmp_nn_conv *c, const float *in, int G, int H, int W, const float *res, double *out) {
    double scale = 0;
    for (int g = 0; g < G; g++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int o = 0; o < c->cout; o++) {
                    double s = c->b[o];
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            int iy = y - 1 + ky, ix = x - 1 + kx;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                            const float *p = in + (((size_t)g * H + iy) * W + ix) * c->cin;
                            const float *w = c->w + ((size_t)o * 9 + ky * 3 + kx) * c->cin;
                            for (int i = 0; i < c->cin; i++) s += (double)w[i] * p[i];
                        }
                    size_t oi = (((size_t)g * H + y) * W + x) * c->cout + o;
                    if (res) s += res[oi];
                    scale = fabs(s) > scale ? fabs(s) : scale;
                    if (c->act != MMP_NN_ACT_NONE && !(s > 0)) s = 0;
                    if (c->act == MMP_NN_ACT_RELU6 && s > 6) s = 6;
                    out[oi] = s;
                }
    return scale;
}

/* max |y - ref| / scale */
static double err_d(const float *y, const double *ref, size_t n, double scale) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(y[i] - ref[i]) > m ? fabs(y[i] - ref[i]) : m;
    return scale > 0 ? m / scale : m;
}
static double err_f(const float *y, const float *ref, size_t n, double scale) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(y[i] - ref[i]) > m ? fabs(y[i] - ref[i]) : m;
    return scale > 0 ? m / scale : m;
}
static int im2col_batch_dep; /* cases where the im2col path gives an image other bits alone */

static double worst[3]; /* im2col, F(2x2), F(4x4) vs double */

static void test_case(int G, int H, int W, int cin, int cout, mmp_nn_act act, int with_res) {
    mmp_nn_conv c = {cin, cout, 3, 1, 1, 0, act, NULL, NULL, NULL, 0, NULL};
    c.w = t_randv(&rs, (size_t)cout * 9 * cin, 1.0f);
    c.b = t_randv(&rs, cout, 1.0f);
    size_t ni = (size_t)G * H * W * cin, no = (size_t)G * H * W * cout;
    float *in = t_randv(&rs, ni, 1.0f), *res = with_res ? t_randv(&rs, no, 1.0f) : NULL;
    if (act == MMP_NN_ACT_RELU6)
        for (size_t i = 0; i < ni; i++) in[i] *= 4; /* reach the clamp */
    double *ref = malloc(sizeof(double) * no);
    double scale = direct(&c, in, G, H, W, res, ref);
    float *y0 = malloc(sizeof(float) * no), *y = malloc(sizeof(float) * no);
    /* the im2col path (no Winograd weights yet) */
    size_t sn = mmp_nn_cpu_conv2d_scratch(&c, G, H, W);
    float *scratch = malloc(sizeof(float) * (sn ? sn : 1));
    mmp_nn_cpu_conv2d(&c, in, G, H, W, res, y0, scratch);
    free(scratch);
    double e0 = err_d(y0, ref, no, scale);
    worst[0] = e0 > worst[0] ? e0 : worst[0];
    CHECKF(e0 <= 2e-6, "im2col G%d %dx%d %d->%d: err %.3g", G, H, W, cin, cout, e0);
    for (int m = 2; m <= 4; m += 2) {
        CHECK(mmp_nn_wino_prepare(&c, m) == 0 && c.wino && c.wino_m == m);
        /* direct call: every map size, even 1x1 */
        sn = mmp_nn_wino_scratch(&c, G, H, W);
        scratch = malloc(sizeof(float) * sn);
        memset(y, 0xff, sizeof(float) * no); /* NaN: every output must be written */
        mmp_nn_wino_conv2d(&c, in, G, H, W, res, y, scratch);
        free(scratch);
        double e = err_d(y, ref, no, scale), e1 = err_f(y, y0, no, scale);
        worst[m / 2] = e > worst[m / 2] ? e : worst[m / 2];
        if (getenv("WINO_VERBOSE")) printf("F%d G%d %dx%d %d->%d act%d res%d: %.3g\n", m, G, H, W, cin, cout, act, with_res, e);
        CHECKF(e <= (m == 2 ? 2e-6 : 3e-5) && e1 <= (m == 2 ? 3e-6 : 3e-5),
               "F(%dx%d) G%d %dx%d %d->%d act%d res%d: err %.3g vs double, %.3g vs im2col", m, m, G, H, W, cin,
               cout, act, with_res, e, e1);
        /* dispatch: Winograd from 9 tiles on, else the im2col result bit for bit */
        int tiles = ((H + m - 1) / m) * ((W + m - 1) / m);
        CHECK(mmp_nn_wino_use(&c, H, W) == (tiles >= 9));
        sn = mmp_nn_cpu_conv2d_scratch(&c, G, H, W);
        scratch = malloc(sizeof(float) * (sn ? sn : 1));
        float *y2 = malloc(sizeof(float) * no);
        mmp_nn_cpu_conv2d(&c, in, G, H, W, res, y2, scratch);
        CHECKF(!memcmp(y2, tiles >= 9 ? y : y0, sizeof(float) * no), "F(%dx%d) %dx%d: dispatch", m, m, H, W);
        /* the last image alone: same bits as inside the batch (Winograd and
         * the im2col path's GEMM, nn/gemm.h: by construction) */
        if (G > 1) {
            size_t pi = (size_t)H * W * cin, po = (size_t)H * W * cout;
            const float *ri = res ? res + (G - 1) * po : NULL;
            mmp_nn_cpu_conv2d(&c, in + (G - 1) * pi, 1, H, W, ri, y2, scratch);
            int same = !memcmp(y2, (tiles >= 9 ? y : y0) + (G - 1) * po, sizeof(float) * po);
            CHECKF(same, "%s G%d %dx%d %d->%d: image alone differs from the batch", tiles >= 9 ? "Winograd" : "im2col",
                   G, H, W, cin, cout);
            im2col_batch_dep += !same && tiles < 9;
            float *s1 = malloc(sizeof(float) * mmp_nn_wino_scratch(&c, 1, H, W));
            mmp_nn_wino_conv2d(&c, in + (G - 1) * pi, 1, H, W, ri, y2, s1);
            CHECKF(!memcmp(y2, y + (G - 1) * po, sizeof(float) * po), "F(%dx%d) G%d %dx%d %d->%d: alone differs",
                   m, m, G, H, W, cin, cout);
            free(s1);
        }
        free(scratch);
        free(y2);
    }
    free(c.wino), free(c.w), free(c.b), free(in), free(res), free(ref), free(y0), free(y);
}

int main(void) {
    mmp_set_progname("test_nn_winograd");
    t_failures += t_each_isa();
    mmp_nn_cpu_init();
    static const int sizes[][2] = {{1, 1}, {2, 2}, {3, 3}, {7, 7}, {5, 9}, {16, 16}, {33, 47}};
    static const int chans[][2] = {{3, 5}, {13, 13}, {8, 16}, {33, 70}, {64, 64}};
    for (size_t z = 0; z < sizeof sizes / sizeof *sizes; z++)
        for (size_t k = 0; k < sizeof chans / sizeof *chans; k++) {
            int H = sizes[z][0], W = sizes[z][1], big = H * W > 100;
            int G = big ? 2 : 3;
            test_case(G, H, W, chans[k][0], chans[k][1], (mmp_nn_act)((z + k) % 3), (int)((z + k) % 2));
            if (!big) test_case(1, W, H, chans[k][1], chans[k][0], MMP_NN_ACT_RELU, 1);
        }
    test_case(2, 14, 14, 256, 256, MMP_NN_ACT_RELU, 1); /* ResNet layer3 shape (the GEMM's K = 256) */
    printf("max error / max|pre-activation output| vs double: im2col %.3g, F(2x2) %.3g, F(4x4) %.3g\n", worst[0],
           worst[1], worst[2]);
    printf("im2col path (mmp_sgemm): %d cases where an image alone got other bits than in its batch\n",
           im2col_batch_dep);

    /* eligibility */
    float w[27 * 4] = {0}, b[4] = {0};
    mmp_nn_conv s2 = {3, 4, 3, 2, 1, 0, MMP_NN_ACT_NONE, w, b, NULL, 0, NULL}, k1 = {3, 4, 1, 1, 0, 0, MMP_NN_ACT_NONE, w, b, NULL, 0, NULL};
    mmp_nn_conv dw = {4, 4, 3, 1, 1, 1, MMP_NN_ACT_NONE, w, b, NULL, 0, NULL}, ok = {3, 4, 3, 1, 1, 0, MMP_NN_ACT_NONE, w, b, NULL, 0, NULL};
    CHECK(mmp_nn_wino_prepare(&s2, 4) == -1 && !s2.wino && !mmp_nn_wino_use(&s2, 64, 64));
    CHECK(mmp_nn_wino_prepare(&k1, 2) == -1 && !k1.wino);
    CHECK(mmp_nn_wino_prepare(&dw, 2) == -1 && !dw.wino);
    CHECK(mmp_nn_wino_prepare(&ok, 3) == -1 && !ok.wino);
    CHECK(mmp_nn_wino_prepare(&ok, 2) == 0 && ok.wino && mmp_nn_wino_use(&ok, 6, 6) && !mmp_nn_wino_use(&ok, 5, 4));
    free(ok.wino);
    /* tile size choice (MMP_NN_WINOGRAD unset) */
    if (!getenv("MMP_NN_WINOGRAD")) {
        CHECK(mmp_nn_wino_pick_m(56, 56) == 4 && mmp_nn_wino_pick_m(28, 28) == 4 && mmp_nn_wino_pick_m(12, 12) == 4);
        CHECK(mmp_nn_wino_pick_m(9, 12) == 4 && mmp_nn_wino_pick_m(14, 14) == 2);
        CHECK(mmp_nn_wino_pick_m(7, 7) == 2 && mmp_nn_wino_pick_m(6, 6) == 2 && mmp_nn_wino_pick_m(5, 5) == 2);
        CHECK(mmp_nn_wino_pick_m(4, 4) == 0 && mmp_nn_wino_pick_m(2, 3) == 0);
    }
    TEST_END();
}
