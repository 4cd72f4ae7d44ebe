/* The fused MobileNetV2 kernels of lib/nn/inverted_residual.c vs naive loops (double
 * accumulation): the inverted residual op (mmp_nn_cpu_inverted_residual: with and without
 * expansion, stride 1/2, residual, channel counts that leave GEMM column
 * tails and depthwise scalar channels; small images that run in groups of
 * whole images and large ones that run in bands of rows through the ring of
 * expanded rows), the packed dense conv (mmp_nn_cpu_conv2d_packed: 1x1 and the
 * 3x3 stride-2 stem, implicit im2col with padded edges, odd sizes), the
 * small GEMM at every row/column tail. Also: an image's result is
 * bit-identical whatever the other images of the micro-batch (G), and so
 * are whole MobileNetV2 embeddings (fixture model: a batch of 11 over 1 and
 * 2 threads vs one image at a time). All of it at both instruction-set
 * levels (t_each_isa: MMP_ISA=avx2, then AVX-512 where the CPU has it). */
#include <stdint.h>
#include <string.h>

#include "cpu.h"
#include "mmp.h"
#include "nn/cpu.h"
#include "nn/nn.h"
#include "nn/ops.h"
#include "nn_testlib.h"
#include "testlib.h"

static uint64_t rs = 777;


static mmp_nn_conv mkconv(int cin, int cout, int k, int s, int dw, mmp_nn_act a) {
    mmp_nn_conv c = {cin, cout, k, s, k / 2, dw, a, NULL, NULL, NULL, 0, NULL};
    c.w = t_randv(&rs, (size_t)cout * k * k * (dw ? 1 : cin), dw ? 0.5f : 1.5f / sqrtf((float)(k * k * cin)));
    c.b = t_randv(&rs, cout, 0.5f);
    return c;
}

/* cin -> (expand x t, ReLU6) -> dw 3x3 stride s (ReLU6) -> project to cout (+ x) */
static void test_ir(int G, int H, int W, int cin, int hid, int cout, int s) {
    int has_ex = hid != cin; /* t = 1 blocks: hid == cin, no expansion */
    mmp_nn_conv ex = mkconv(cin, hid, 1, 1, 0, MMP_NN_ACT_RELU6), dw = mkconv(hid, hid, 3, s, 1, MMP_NN_ACT_RELU6),
            pj = mkconv(hid, cout, 1, 1, 0, MMP_NN_ACT_NONE);
    float *ewt = mmp_nn_cpu_pack_1x1(ex.w, hid, cin), *pwt = mmp_nn_cpu_pack_1x1(pj.w, cout, hid);
    int residual = s == 1 && cin == cout;
    mmp_nn_inverted_residual b = {has_ex ? &ex : NULL, &dw, &pj, has_ex ? ewt : NULL, pwt, residual};
    int Ho = mmp_nn_conv_out(H, 3, s, 1), Wo = mmp_nn_conv_out(W, 3, s, 1);
    size_t ni = (size_t)H * W * cin, no = (size_t)Ho * Wo * cout;
    float *in = t_randv(&rs, ni * G, 3.0f), *o1 = malloc(sizeof(float) * no * G), *o2 = malloc(sizeof(float) * no * G);
    float *e = malloc(sizeof(float) * (size_t)G * H * W * hid), *d = malloc(sizeof(float) * (size_t)G * Ho * Wo * hid);
    size_t sn = mmp_nn_cpu_inverted_residual_scratch(&b, G, H, W);
    float *scratch = malloc(sizeof(float) * (sn ? sn : 1));
    mmp_nn_cpu_inverted_residual(&b, in, G, H, W, o1, scratch);
    if (has_ex) t_naive_conv(&ex, in, G, H, W, NULL, e);
    t_naive_conv(&dw, has_ex ? e : in, G, H, W, NULL, d);
    t_naive_conv(&pj, d, G, Ho, Wo, residual ? in : NULL, o2);
    double err = t_maxrel(o1, o2, no * G, 1e-4, 1e-4, NULL);
    CHECKF(err <= 1, "inverted residual G%d %dx%d %d->%d->%d s%d (scratch %zu floats): err %.3g", G, H, W, cin, hid, cout, s, sn,
           err);
    /* image 1 alone: the same bits */
    if (G > 1) {
        float *o3 = malloc(sizeof(float) * no);
        mmp_nn_cpu_inverted_residual(&b, in + ni, 1, H, W, o3, scratch);
        CHECKF(!memcmp(o3, o1 + no, sizeof(float) * no), "inverted residual %dx%d %d->%d->%d s%d: image 1 alone differs", H, W, cin,
               hid, cout, s);
        free(o3);
    }
    free(ex.w), free(ex.b), free(dw.w), free(dw.b), free(pj.w), free(pj.b), free(ewt), free(pwt);
    free(in), free(o1), free(o2), free(e), free(d), free(scratch);
}

static void test_packed(int G, int H, int W, int cin, int cout, int k, int s, mmp_nn_act a, int with_res) {
    mmp_nn_conv c = mkconv(cin, cout, k, s, 0, a);
    float *wp = mmp_nn_cpu_pack_1x1(c.w, cout, k * k * cin);
    int Ho = mmp_nn_conv_out(H, k, s, k / 2), Wo = mmp_nn_conv_out(W, k, s, k / 2);
    size_t ni = (size_t)H * W * cin, no = (size_t)Ho * Wo * cout;
    float *in = t_randv(&rs, ni * G, 3.0f), *res = with_res ? t_randv(&rs, no * G, 1.0f) : NULL;
    float *o1 = malloc(sizeof(float) * no * G), *o2 = malloc(sizeof(float) * no * G);
    size_t sn = mmp_nn_cpu_conv2d_packed_scratch(&c, G, H, W);
    float *scratch = malloc(sizeof(float) * (sn ? sn : 1));
    mmp_nn_cpu_conv2d_packed(&c, wp, in, G, H, W, res, o1, scratch);
    t_naive_conv(&c, in, G, H, W, res, o2);
    double err = t_maxrel(o1, o2, no * G, 1e-5, 1e-5, NULL);
    CHECKF(err <= 1, "packed conv G%d %dx%d %d->%d k%d s%d act%d res%d: err %.3g", G, H, W, cin, cout, k, s, a,
           with_res, err);
    if (G > 1) {
        float *o3 = malloc(sizeof(float) * no);
        mmp_nn_cpu_conv2d_packed(&c, wp, in + ni, 1, H, W, res ? res + no : NULL, o3, scratch);
        CHECKF(!memcmp(o3, o1 + no, sizeof(float) * no), "packed conv %dx%d k%d: image 1 alone differs", H, W, k);
        free(o3);
    }
    free(c.w), free(c.b), free(wp), free(in), free(res), free(o1), free(o2), free(scratch);
}

/* MobileNetV2 (reduced-width fixture): every image's embedding bit-identical
 * whatever the batch composition, since every kernel of its path is. */
static void test_model_batch_independence(const char *io) {
    char err[512];
    mmp_nn_model *m;
    int rc = mmp_nn_model_load(&m, t_root_path("tests/fixtures/nn/mnv2_w025.safetensors"), NULL, err, sizeof err);
    CHECKF(rc == 0, "load: %s", err);
    if (rc) return;
    mmp_safetensors st;
    mmp_st_open_or_die(&st, t_root_path(io));
    const mmp_tensor *in = mmp_st_get(&st, "input");
    int N = (int)in->shape[0], H = (int)in->shape[1], W = (int)in->shape[2], NN = 11;
    mmp_nn_preproc p = mmp_nn_model_preproc(m);
    size_t per = (size_t)H * W * 3;
    float *x = malloc(sizeof(float) * per * NN);
    for (int i = 0; i < NN; i++) /* the fixture's images, then noise */
        if (i < N) mmp_nn_normalize_u8((const uint8_t *)in->data + (size_t)i * per, H, W, p.mean, p.std, x + i * per);
        else
            for (size_t k = 0; k < per; k++) x[i * per + k] = t_frand(&rs) * 2;
    const char *specs[2] = {"pool", "features.13:flat"};
    for (int sp = 0; sp < 2; sp++) {
        mmp_nn_layer l;
        CHECK(mmp_nn_layer_parse(m, specs[sp], &l, err, sizeof err) == 0);
        int64_t dim = mmp_nn_output_dim(m, &l, H, W);
        float *all1 = malloc(sizeof(float) * dim * NN), *all2 = malloc(sizeof(float) * dim * NN),
              *one = malloc(sizeof(float) * dim * NN);
        mmp_nn_runner *r = mmp_nn_runner_new(m, &mmp_nn_ops_cpu, 1);
        mmp_nn_run(r, &l, x, NN, H, W, all1);
        for (int i = 0; i < NN; i++) mmp_nn_run(r, &l, x + i * per, 1, H, W, one + i * dim);
        mmp_nn_runner_free(r);
        r = mmp_nn_runner_new(m, &mmp_nn_ops_cpu, 2);
        mmp_nn_run(r, &l, x, NN, H, W, all2);
        mmp_nn_runner_free(r);
        CHECKF(!memcmp(all1, one, sizeof(float) * dim * NN), "%s %s: batch of %d vs one at a time differ", io,
               specs[sp], NN);
        CHECKF(!memcmp(all1, all2, sizeof(float) * dim * NN), "%s %s: 1 vs 2 threads differ", io, specs[sp]);
        /* a backend without the optional ops: the conv2d path, same values within rounding */
        mmp_nn_ops plain = mmp_nn_ops_cpu;
        plain.inverted_residual = NULL, plain.inverted_residual_scratch = NULL, plain.conv2d_packed = NULL, plain.conv2d_packed_scratch = NULL;
        r = mmp_nn_runner_new(m, &plain, 1);
        mmp_nn_run(r, &l, x, NN, H, W, all2);
        mmp_nn_runner_free(r);
        double scale = 0;
        for (int64_t i = 0; i < dim * NN; i++) scale = fabs(all2[i]) > scale ? fabs(all2[i]) : scale;
        double e = t_maxrel(all1, all2, dim * NN, 1e-4, 1e-4 * scale, NULL);
        CHECKF(e <= 1 && scale > 1e-3, "%s %s: fused vs conv2d path: err %.3g", io, specs[sp], e);
        free(all1), free(all2), free(one);
    }
    free(x);
    mmp_st_close(&st);
    mmp_nn_model_free(m);
}

int main(void) {
    mmp_set_progname("test_nn_inverted_residual");
    t_failures += t_each_isa();
    mmp_nn_cpu_init();
    /* the kernel paths name this process's level */
    char want[64];
    snprintf(want, sizeof want, "level: %s\n", mmp_isa_name(mmp_cpu_isa()));
    CHECKF(!strncmp(mmp_nn_cpu_paths(), want, strlen(want)) && strstr(mmp_nn_cpu_paths(), "pointwise 1x1"),
           "mmp_nn_cpu_paths: %s", mmp_nn_cpu_paths());
    test_model_batch_independence("tests/fixtures/nn/mnv2_w025_io_33x47.safetensors");
    test_model_batch_independence("tests/fixtures/nn/mnv2_w025_io_64x64.safetensors");
    /* the GEMM: every row tail (M % 6) and column tail (N % 16: 0, 8, < 8, > 8) */
    for (int M = 1; M <= 13; M++)
        for (int N = 1; N <= 40; N += (N < 18 ? 1 : 7)) {
            int K = 1 + (M * 7 + N) % 23;
            float *A = t_randv(&rs, (size_t)M * K, 1), *w = t_randv(&rs, (size_t)N * K, 1), *b = t_randv(&rs, N, 1), *R = t_randv(&rs, (size_t)M * N, 1);
            float *C = malloc(sizeof(float) * M * N), *wp = mmp_nn_cpu_pack_1x1(w, N, K);
            mmp_nn_cpu_pw_gemm(M, N, K, A, K, wp, b, R, C, MMP_NN_ACT_NONE);
            double worst = 0;
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    double s = b[n] + R[m * N + n];
                    for (int k = 0; k < K; k++) s += (double)A[m * K + k] * w[n * K + k];
                    double e = fabs(C[m * N + n] - s) / (1e-5 * (1 + fabs(s)));
                    worst = e > worst ? e : worst;
                }
            CHECKF(worst <= 1, "pw_gemm M%d N%d K%d: err %.3g", M, N, K, worst);
            free(A), free(w), free(b), free(R), free(C), free(wp);
        }
    /* packed dense convs: 1x1 (MobileNetV2's last) and the 3x3 stride-2 stem */
    int sizes[6][2] = {{1, 1}, {2, 3}, {5, 7}, {16, 9}, {33, 47}, {48, 48}};
    for (int z = 0; z < 6; z++) {
        int H = sizes[z][0], W = sizes[z][1];
        test_packed(3, H, W, 3, 32, 3, 2, MMP_NN_ACT_RELU6, 0);
        test_packed(2, H, W, 3, 13, 3, 2, MMP_NN_ACT_RELU6, 0);
        test_packed(2, H, W, 5, 24, 3, 1, MMP_NN_ACT_RELU, 1);
        test_packed(2, H, W, 20, 37, 1, 1, MMP_NN_ACT_RELU6, 1);
    }
    /* inverted residuals: groups of whole images (small) and bands of rows (large) */
    int ir_sizes[5][2] = {{1, 1}, {3, 3}, {6, 5}, {33, 47}, {61, 45}};
    for (int z = 0; z < 5; z++) {
        int H = ir_sizes[z][0], W = ir_sizes[z][1];
        test_ir(3, H, W, 16, 96, 24, 2);   /* features.2-like */
        test_ir(2, H, W, 24, 144, 24, 1);  /* residual */
        test_ir(2, H, W, 13, 78, 13, 1);   /* odd channels: GEMM tails, dw scalar channels */
        test_ir(2, H, W, 20, 120, 9, 2);
        test_ir(3, H, W, 32, 32, 16, 1);   /* no expansion (t = 1) */
        test_ir(2, H, W, 13, 13, 13, 2);
    }
    test_ir(2, 112, 64, 32, 32, 16, 1);  /* no expansion, bands of rows */
    test_ir(2, 97, 61, 24, 144, 24, 1);  /* several bands, ring wraps */
    test_ir(1, 200, 9, 8, 48, 8, 2);     /* narrow and tall */
    TEST_END();
}
