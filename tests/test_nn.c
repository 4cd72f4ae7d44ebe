/* CNN engine vs torchvision (fixtures from tests/fixtures/gen_nn.py):
 * pool features, logits, an intermediate block (pooled and flattened) of
 * reduced-width ResNet-18 (BasicBlock), ResNet-50 (Bottleneck) and
 * MobileNetV2 with random weights and non-trivial batch norm, at odd
 * input sizes. Tolerance: |c - torch| <= 1e-4*|torch| + 1e-4*max|torch|
 * per output tensor (atol relative to the tensor's scale).
 * Also: results bit-identical for 1, 2, 3 threads (also over several
 * micro-batches); one image at a time (other GEMM shapes) within the same
 * tolerance. */
#include <stdint.h>
#include <string.h>

#include "mmp.h"
#include "nn/nn.h"
#include "testlib.h"

static double maxabs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

static void check_model(const char *model, const char *io, const char *block) {
    char err[512];
    mmp_nn_model *m;
    int rc = mmp_nn_model_load(&m, t_root_path(model), NULL, err, sizeof err);
    CHECKF(rc == 0, "load %s: %s", model, err);
    if (rc) return;
    mmp_safetensors st;
    mmp_st_open_or_die(&st, t_root_path(io));
    const mmp_tensor *in = mmp_st_get(&st, "input");
    CHECK(in && in->dtype == MMP_U8 && in->ndim == 4);
    int N = (int)in->shape[0], H = (int)in->shape[1], W = (int)in->shape[2];
    /* the fixture's normalization is the model's preprocessing */
    mmp_nn_preproc p = mmp_nn_model_preproc(m);
    float mean[3], std[3];
    CHECK(mmp_nn_parse3(mmp_meta_get(&st.meta, "mean"), mean) == 0);
    CHECK(mmp_nn_parse3(mmp_meta_get(&st.meta, "std"), std) == 0);
    for (int c = 0; c < 3; c++) CHECK(fabsf(mean[c] - p.mean[c]) < 1e-7f && fabsf(std[c] - p.std[c]) < 1e-7f);
    float *x = malloc(sizeof(float) * N * H * W * 3);
    for (int i = 0; i < N; i++)
        mmp_nn_normalize_u8((const uint8_t *)in->data + (size_t)i * H * W * 3, H, W, p.mean, p.std,
                        x + (size_t)i * H * W * 3);
    char flat[96];
    snprintf(flat, sizeof flat, "%s:flat", block);
    const char *specs[4] = {"pool", "logits", block, flat};
    char names[4][96];
    snprintf(names[0], 96, "pool");
    snprintf(names[1], 96, "logits");
    snprintf(names[2], 96, "%s", block);
    snprintf(names[3], 96, "%s.flat", block);
    for (int s = 0; s < 4; s++) {
        mmp_nn_layer l;
        CHECKF(mmp_nn_layer_parse(m, specs[s], &l, err, sizeof err) == 0, "%s", err);
        const mmp_tensor *ref = mmp_st_get(&st, names[s]);
        CHECK(ref && ref->dtype == MMP_F32 && ref->ndim == 2 && ref->shape[0] == N);
        if (!ref) continue;
        int64_t dim = mmp_nn_output_dim(m, &l, H, W);
        CHECKF(dim == ref->shape[1], "%s %s: dim %lld, torch %lld", model, specs[s], (long long)dim,
               (long long)ref->shape[1]);
        if (dim != ref->shape[1]) continue;
        size_t n = (size_t)N * dim;
        float *out[4];
        int threads[3] = {1, 2, 3};
        for (int t = 0; t < 3; t++) {
            mmp_nn_runner *r = mmp_nn_runner_new(m, &mmp_nn_ops_cpu, threads[t]);
            out[t] = malloc(sizeof(float) * n);
            mmp_nn_run(r, &l, x, N, H, W, out[t]);
            mmp_nn_runner_free(r);
        }
        /* one image at a time */
        out[3] = malloc(sizeof(float) * n);
        mmp_nn_runner *r1 = mmp_nn_runner_new(m, &mmp_nn_ops_cpu, 1);
        for (int i = 0; i < N; i++) mmp_nn_run(r1, &l, x + (size_t)i * H * W * 3, 1, H, W, out[3] + (size_t)i * dim);
        mmp_nn_runner_free(r1);
        const float *tr = ref->data;
        double scale = maxabs(tr, n);
        size_t where;
        double rel = t_maxrel(out[0], tr, n, 1e-4, 1e-4 * scale, &where);
        printf("%-28s %-18s %dx%d dim %-5lld max err/tol %.3f (at %zu: %g vs %g)\n", model + 15, specs[s], H, W,
               (long long)dim, rel, where, out[0][where], tr[where]);
        CHECKF(rel <= 1.0, "%s %s %dx%d: error %.3g x tolerance", model, specs[s], H, W, rel);
        CHECKF(scale > 1e-3, "%s %s: reference is all ~0", model, specs[s]);
        for (int t = 1; t < 3; t++)
            CHECKF(!memcmp(out[0], out[t], sizeof(float) * n), "%s %s: %d threads not bit-identical", model,
                   specs[s], threads[t]);
        /* another micro-batch composition: the same bits (every GEMM sums each
         * element in a fixed order, nn/gemm.h) */
        CHECK(t_maxrel(out[3], tr, n, 1e-4, 1e-4 * scale, NULL) <= 1.0);
        CHECKF(!memcmp(out[0], out[3], sizeof(float) * n), "%s %s: other micro-batch composition not bit-identical",
               model, specs[s]);
        for (int t = 0; t < 4; t++) free(out[t]);
    }
    /* several micro-batches (the last one partial) over 1 and 3 threads:
     * 40 images = the fixture's images repeated */
    {
        mmp_nn_layer l;
        mmp_nn_layer_parse(m, "pool", &l, err, sizeof err);
        const mmp_tensor *ref = mmp_st_get(&st, "pool");
        int64_t dim = mmp_nn_output_dim(m, &l, H, W);
        int NN = 40;
        CHECK(mmp_nn_micro_batch(H, W) < NN);
        size_t per = (size_t)H * W * 3;
        float *xx = malloc(sizeof(float) * per * NN), *o1 = malloc(sizeof(float) * dim * NN),
              *o3 = malloc(sizeof(float) * dim * NN);
        for (int i = 0; i < NN; i++) memcpy(xx + per * i, x + per * (i % N), sizeof(float) * per);
        mmp_nn_runner *r = mmp_nn_runner_new(m, &mmp_nn_ops_cpu, 1);
        mmp_nn_run(r, &l, xx, NN, H, W, o1);
        mmp_nn_runner_free(r);
        r = mmp_nn_runner_new(m, &mmp_nn_ops_cpu, 3);
        mmp_nn_run(r, &l, xx, NN, H, W, o3);
        mmp_nn_runner_free(r);
        CHECKF(!memcmp(o1, o3, sizeof(float) * dim * NN), "%s: 40 images, 1 vs 3 threads differ", model);
        double scale = maxabs(ref->data, (size_t)N * dim);
        for (int i = 0; i < NN; i++)
            CHECKF(t_maxrel(o3 + dim * i, (const float *)ref->data + dim * (i % N), dim, 1e-4, 1e-4 * scale, NULL) <= 1,
                   "%s: 40 images: image %d off", model, i);
        free(xx), free(o1), free(o3);
    }
    free(x);
    mmp_st_close(&st);
    mmp_nn_model_free(m);
}

int main(void) {
    mmp_set_progname("test_nn");
    check_model("tests/fixtures/nn/resnet18_w8.safetensors", "tests/fixtures/nn/resnet18_w8_io_33x47.safetensors", "layer3");
    check_model("tests/fixtures/nn/resnet18_w8.safetensors", "tests/fixtures/nn/resnet18_w8_io_64x64.safetensors", "layer3");
    check_model("tests/fixtures/nn/resnet50_w4.safetensors", "tests/fixtures/nn/resnet50_w4_io_40x52.safetensors", "layer2");
    check_model("tests/fixtures/nn/mnv2_w025.safetensors", "tests/fixtures/nn/mnv2_w025_io_64x64.safetensors", "features.13");
    check_model("tests/fixtures/nn/mnv2_w025.safetensors", "tests/fixtures/nn/mnv2_w025_io_33x47.safetensors", "features.13");

    /* architecture names, detection, preprocessing from metadata / defaults */
    char err[512];
    mmp_nn_model *m;
    CHECK(mmp_nn_model_load(&m, t_root_path("tests/fixtures/nn/mnv2_w025.safetensors"), NULL, err, sizeof err) == 0);
    CHECK(!strcmp(mmp_nn_model_arch(m), "mobilenet_v2"));
    CHECK(mmp_nn_model_preproc(m).size == 64 && mmp_nn_model_preproc(m).mean[1] == 0.4f);
    CHECK(mmp_nn_model_classes(m) == 10 && mmp_nn_model_pool_dim(m) == 1280);
    mmp_nn_layer l;
    CHECK(mmp_nn_layer_parse(m, "layer3", &l, err, sizeof err) == -1 && strstr(err, "features.13"));
    CHECK(mmp_nn_layer_parse(m, "features.13:flatx", &l, err, sizeof err) == -1);
    mmp_nn_model_free(m);
    CHECK(mmp_nn_model_load(&m, t_root_path("tests/fixtures/nn/resnet18_w8.safetensors"), NULL, err, sizeof err) == 0);
    CHECK(!strcmp(mmp_nn_model_arch(m), "resnet-basic-2.2.2.2-w8"));
    CHECK(mmp_nn_model_preproc(m).size == 224 && mmp_nn_model_preproc(m).std[2] == 0.225f);
    mmp_nn_model_free(m);
    CHECK(mmp_nn_model_load(&m, t_root_path("tests/fixtures/nn/resnet50_w4.safetensors"), "mobilenet_v2", err, sizeof err) == -1);
    CHECK(strstr(err, "resnet-bottleneck-3.4.6.3-w4") != NULL);
    CHECK(mmp_nn_model_load(&m, t_root_path("tests/fixtures/nn/resnet50_w4.safetensors"), "resnet50", err, sizeof err) == -1);
    CHECK(mmp_nn_model_load(&m, t_root_path("tests/fixtures/nn/resnet50_w4_io_40x52.safetensors"), NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "not a torchvision") != NULL);
    CHECK(mmp_nn_model_load(&m, "/nonexistent.safetensors", NULL, err, sizeof err) == -1);
    TEST_END();
}
