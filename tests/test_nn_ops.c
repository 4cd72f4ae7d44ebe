/* CPU kernels vs naive loops (double accumulation): dense conv (1x1, 1x1
 * strided, 3x3, 7x7; with residual and ReLU/ReLU6), depthwise 3x3 stride
 * 1/2 with channel counts that leave a scalar tail (C % 8 != 0), maxpool,
 * avgpool, linear, to_chw; tiny and odd spatial sizes (1x1, 2x3, 5x7). */
#include <stdint.h>

#include "mmp.h"
#include "nn/gemm.h"
#include "nn/ops.h"
#include "nn_testlib.h"
#include "testlib.h"

static uint64_t rs = 12345;


static void test_conv(int G, int H, int W, int cin, int cout, int k, int s, int dw, mmp_nn_act a, int with_res) {
    mmp_nn_conv c = {cin, cout, k, s, k / 2, dw, a, NULL, NULL, NULL, 0, NULL};
    c.w = t_randv(&rs, (size_t)cout * k * k * (dw ? 1 : cin), 1.0f);
    c.b = t_randv(&rs, cout, 1.0f);
    int Ho = mmp_nn_conv_out(H, k, s, k / 2), Wo = mmp_nn_conv_out(W, k, s, k / 2);
    size_t no = (size_t)G * Ho * Wo * cout;
    float *in = t_randv(&rs, (size_t)G * H * W * cin, 1.0f), *res = with_res ? t_randv(&rs, no, 1.0f) : NULL;
    if (a == MMP_NN_ACT_RELU6)
        for (size_t i = 0; i < (size_t)G * H * W * cin; i++) in[i] *= 8; /* reach the clamp */
    float *o1 = malloc(sizeof(float) * no), *o2 = malloc(sizeof(float) * no);
    size_t sn = mmp_nn_cpu_conv2d_scratch(&c, G, H, W);
    float *scratch = sn ? malloc(sizeof(float) * sn) : NULL;
    mmp_nn_cpu_conv2d(&c, in, G, H, W, res, o1, scratch);
    t_naive_conv(&c, in, G, H, W, res, o2);
    double e = t_maxrel(o1, o2, no, 1e-5, 1e-5, NULL);
    CHECKF(e <= 1, "conv G%d %dx%d cin %d cout %d k%d s%d dw%d act%d res%d: err %.3g", G, H, W, cin, cout, k, s, dw,
           a, with_res, e);
    if (!dw) { /* weights pre-packed as at model load (fused epilogue): the same bits */
        c.gemm = mmp_sgemm_pack_b(MMP_GEMM_T, cout, k * k * cin, c.w, k * k * cin);
        mmp_nn_cpu_conv2d(&c, in, G, H, W, res, o2, scratch);
        CHECKF(!memcmp(o1, o2, sizeof(float) * no), "conv G%d %dx%d cin %d cout %d k%d s%d act%d res%d: pre-packed weights give other bits",
               G, H, W, cin, cout, k, s, a, with_res);
        mmp_sgemm_pack_free(c.gemm);
    }
    free(c.w), free(c.b), free(in), free(res), free(o1), free(o2), free(scratch);
}

int main(void) {
    mmp_set_progname("test_nn_ops");
    t_failures += t_each_isa();
    mmp_nn_cpu_init();
    int sizes[4][2] = {{1, 1}, {2, 3}, {5, 7}, {16, 9}};
    for (int z = 0; z < 4; z++) {
        int H = sizes[z][0], W = sizes[z][1];
        for (int s = 1; s <= 2; s++) {
            test_conv(2, H, W, 5, 7, 1, s, 0, MMP_NN_ACT_NONE, s == 1);
            test_conv(2, H, W, 6, 9, 3, s, 0, MMP_NN_ACT_RELU, 1);
            test_conv(1, H, W, 3, 8, 7, s, 0, MMP_NN_ACT_RELU, 0);
            test_conv(3, H, W, 13, 13, 3, s, 1, MMP_NN_ACT_RELU6, 0);
            test_conv(2, H, W, 24, 24, 3, s, 1, MMP_NN_ACT_NONE, 1);
            test_conv(1, H, W, 5, 5, 3, s, 1, MMP_NN_ACT_RELU, 0);
        }
        /* maxpool / avgpool / to_chw, C = 11 (vector + tail) */
        int G = 2, C = 11, Ho = mmp_nn_conv_out(H, 3, 2, 1), Wo = mmp_nn_conv_out(W, 3, 2, 1);
        float *in = t_randv(&rs, (size_t)G * H * W * C, 1.0f), *o = malloc(sizeof(float) * G * Ho * Wo * C);
        mmp_nn_cpu_maxpool3x3s2(in, G, H, W, C, o);
        for (int g = 0; g < G; g++)
            for (int oy = 0; oy < Ho; oy++)
                for (int ox = 0; ox < Wo; ox++)
                    for (int c = 0; c < C; c++) {
                        float m = -INFINITY;
                        for (int y = oy * 2 - 1; y <= oy * 2 + 1; y++)
                            for (int x = ox * 2 - 1; x <= ox * 2 + 1; x++)
                                if (y >= 0 && y < H && x >= 0 && x < W) m = fmaxf(m, in[((g * H + y) * W + x) * C + c]);
                        CHECK(o[((g * Ho + oy) * Wo + ox) * C + c] == m);
                    }
        float avg[22], chw[2 * 11 * 16 * 9];
        mmp_nn_cpu_avgpool(in, G, H * W, C, avg);
        mmp_nn_cpu_to_chw(in, G, H * W, C, chw);
        for (int g = 0; g < G; g++)
            for (int c = 0; c < C; c++) {
                double s = 0;
                for (int i = 0; i < H * W; i++) {
                    s += in[((size_t)g * H * W + i) * C + c];
                    CHECK(chw[((size_t)g * C + c) * H * W + i] == in[((size_t)g * H * W + i) * C + c]);
                }
                CHECK(fabs(avg[g * C + c] - s / (H * W)) <= 1e-6 * (1 + fabs(s)));
            }
        free(in), free(o);
    }
    /* linear */
    int G = 3, D = 19, O = 10;
    float *x = t_randv(&rs, G * D, 1.0f), *w = t_randv(&rs, O * D, 1.0f), *b = t_randv(&rs, O, 1.0f), y[30];
    mmp_nn_cpu_linear(x, G, D, w, b, O, y);
    for (int g = 0; g < G; g++)
        for (int o = 0; o < O; o++) {
            double s = b[o];
            for (int d = 0; d < D; d++) s += (double)x[g * D + d] * w[o * D + d];
            CHECK(fabs(y[g * O + o] - s) <= 1e-5 * (1 + fabs(s)));
        }
    free(x), free(w), free(b);
    TEST_END();
}
