/* The real MobileNetV2 weights (MMP_SHARED/models) on the three sample
 * photos: decode with TurboJPEG, resize the shorter side to 224 (PIL-style
 * antialiased bilinear, u8 after each pass), center-crop 224x224,
 * pixel/127.5-1 from the file's __metadata__, logits: top-1 must be the
 * classes the models README lists (88 macaw, 934 hotdog, 285 Egyptian cat).
 * Skipped without the shared data. */
#include <turbojpeg.h>

#include "mmp.h"
#include "nn/nn.h"
#include "nn_testlib.h"
#include "testlib.h"

static unsigned char *load_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)len);
    *n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    return buf;
}

/* One PIL-style resampling pass along a line: in n_in samples at stride is,
 * out n_out samples at stride os (3 channels interleaved, u8). */
static void resample_line(const unsigned char *in, int n_in, long is, unsigned char *out, int n_out, long os) {
    double scale = (double)n_in / n_out, fs = scale > 1 ? scale : 1, support = 1.0 * fs;
    for (int i = 0; i < n_out; i++) {
        double center = (i + 0.5) * scale, sum[3] = {0}, wsum = 0;
        int x0 = (int)(center - support + 0.5), x1 = (int)(center + support + 0.5);
        if (x0 < 0) x0 = 0;
        if (x1 > n_in) x1 = n_in;
        for (int x = x0; x < x1; x++) {
            double t = fabs((x - center + 0.5) / fs), w = t < 1 ? 1 - t : 0;
            wsum += w;
            for (int c = 0; c < 3; c++) sum[c] += w * in[x * is + c];
        }
        for (int c = 0; c < 3; c++) {
            double v = wsum > 0 ? sum[c] / wsum : 0;
            v = v < 0 ? 0 : v > 255 ? 255 : v;
            out[i * os + c] = (unsigned char)(v + 0.5);
        }
    }
}

/* Decode, resize shorter side to S, center crop SxS -> out [S,S,3]. */
static int prepare(const char *path, int S, unsigned char *out) {
    size_t n;
    unsigned char *jpg = load_file(path, &n);
    if (!jpg) return -1;
    tjhandle tj = tjInitDecompress();
    int w, h, ss, cs;
    if (tjDecompressHeader3(tj, jpg, n, &w, &h, &ss, &cs)) return -1;
    unsigned char *rgb = malloc((size_t)w * h * 3);
    if (tjDecompress2(tj, jpg, n, rgb, w, 0, h, TJPF_RGB, TJFLAG_ACCURATEDCT)) return -1;
    tjDestroy(tj);
    free(jpg);
    int nw = w < h ? S : (int)((long)S * w / h), nh = w < h ? (int)((long)S * h / w) : S;
    unsigned char *tmp = malloc((size_t)nw * h * 3), *rs = malloc((size_t)nw * nh * 3);
    for (int y = 0; y < h; y++) resample_line(rgb + (size_t)y * w * 3, w, 3, tmp + (size_t)y * nw * 3, nw, 3);
    for (int x = 0; x < nw; x++) resample_line(tmp + x * 3, h, (long)nw * 3, rs + x * 3, nh, (long)nw * 3);
    int top = (int)lround((nh - S) / 2.0), left = (int)lround((nw - S) / 2.0);
    for (int y = 0; y < S; y++) memcpy(out + (size_t)y * S * 3, rs + ((size_t)(y + top) * nw + left) * 3, (size_t)S * 3);
    free(rgb), free(tmp), free(rs);
    return 0;
}

int main(void) {
    mmp_set_progname("test_nn_samples");
    t_failures += t_each_isa();
    const char *sh = t_shared();
    if (!sh) SKIP("no shared data (MMP_SHARED)");
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/models/mobilenet_v2-imagenet.safetensors", sh);
    mmp_nn_model *m;
    if (mmp_nn_model_load(&m, path, NULL, err, sizeof err)) SKIP("%s", err);
    CHECK(!strcmp(mmp_nn_model_arch(m), "mobilenet_v2") && mmp_nn_model_classes(m) == 1000);
    mmp_nn_preproc p = mmp_nn_model_preproc(m);
    CHECK(p.size == 224 && p.mean[0] == 0.5f && p.std[2] == 0.5f);
    const char *files[3] = {"parrot.jpg", "hot_dog.jpg", "cat_720p.jpg"};
    const int want[3] = {88, 934, 285};
    int S = p.size;
    unsigned char *u8 = malloc((size_t)S * S * 3);
    float *x = malloc(sizeof(float) * 3 * S * S * 3), logits[3 * 1000];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/models/samples/%s", sh, files[i]);
        CHECKF(prepare(path, S, u8) == 0, "cannot decode %s", path);
        mmp_nn_normalize_u8(u8, S, S, p.mean, p.std, x + (size_t)i * S * S * 3);
    }
    mmp_nn_layer l;
    CHECK(mmp_nn_layer_parse(m, "logits", &l, err, sizeof err) == 0);
    mmp_nn_runner *r = mmp_nn_runner_new(m, &mmp_nn_ops_cpu, 2);
    mmp_nn_run(r, &l, x, 3, S, S, logits);
    for (int i = 0; i < 3; i++) {
        const float *z = logits + i * 1000;
        int best = 0;
        double mx = z[0], se = 0;
        for (int k = 1; k < 1000; k++)
            if (z[k] > z[best]) best = k, mx = z[k];
        for (int k = 0; k < 1000; k++) se += exp(z[k] - mx);
        printf("%-14s top-1 %3d (want %3d) p=%.3f\n", files[i], best, want[i], 1.0 / se);
        CHECKF(best == want[i], "%s: top-1 %d, expected %d", files[i], best, want[i]);
    }
    mmp_nn_runner_free(r);
    mmp_nn_model_free(m);
    free(u8), free(x);
    TEST_END();
}
