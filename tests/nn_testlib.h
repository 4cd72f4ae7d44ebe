/* Helpers shared by the CNN engine tests (test_nn_ops, test_nn_inverted_residual,
 * test_nn_winograd): a small LCG for reproducible inputs and the naive
 * reference convolution every kernel is checked against; and the fixtures
 * of images with torchvision's outputs (test_embed, test_nn_embed). */
#ifndef MMP_NN_TESTLIB_H
#define MMP_NN_TESTLIB_H
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mmp.h"
#include "nn/ops.h"
#include "testlib.h"

/* Runs the rest of the test at every instruction-set level of lib/cpu.h the
 * CPU has: where MMP_ISA is unset and the CPU has AVX-512, a child process
 * runs it at MMP_ISA=avx2 while this one waits, then this one runs it at the
 * AVX-512 level (a child that skips, exit 77, is not a failure: this process
 * meets the same reason); returns the child's failures (0 in the child itself, or when
 * there is one level only), to be added to t_failures. Call it first in main,
 * before anything asks mmp_cpu_isa() (the level is decided once a process). */
static inline int t_each_isa(void) {
    const char *e = getenv("MMP_ISA");
    __builtin_cpu_init();
    if ((e && *e) || !__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq")) {
        printf("instruction-set level: %s only (%s)\n", e && *e ? e : "avx2",
               e && *e ? "MMP_ISA is set" : "this CPU has no AVX-512");
        return 0;
    }
    fflush(stdout), fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        setenv("MMP_ISA", "avx2", 1);
        printf("instruction-set level avx2 (child process):\n");
        return 0;
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || (WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 77)) {
        fprintf(stderr, "the run at MMP_ISA=avx2 failed\n");
        return 1;
    }
    printf("instruction-set level avx512:\n");
    return 0;
}

/* uniform in [-1, 1) from the LCG state *s */
static inline float t_frand(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*s >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}
/* n values t_frand(s) * scale (malloc'ed) */
static inline float *t_randv(uint64_t *s, size_t n, float scale) {
    float *v = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) v[i] = t_frand(s) * scale;
    return v;
}
/* out[G,Ho,Wo,cout] = act(conv(in[G,H,W,cin]) + b (+ res)), accumulated in
 * double, straight from the definition (dense or depthwise per c). */
static inline void t_naive_conv(const mmp_nn_conv *c, const float *in, int G, int H, int W, const float *res, float *out) {
    int Ho = mmp_nn_conv_out(H, c->k, c->stride, c->pad), Wo = mmp_nn_conv_out(W, c->k, c->stride, c->pad);
    for (int g = 0; g < G; g++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++)
                for (int o = 0; o < c->cout; o++) {
                    double s = c->b[o];
                    for (int ky = 0; ky < c->k; ky++)
                        for (int kx = 0; kx < c->k; kx++) {
                            int iy = oy * c->stride - c->pad + ky, ix = ox * c->stride - c->pad + kx;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                            const float *p = in + (((size_t)g * H + iy) * W + ix) * c->cin;
                            if (c->depthwise)
                                s += (double)c->w[(ky * c->k + kx) * c->cout + o] * p[o];
                            else
                                for (int i = 0; i < c->cin; i++)
                                    s += (double)c->w[((size_t)o * c->k * c->k + ky * c->k + kx) * c->cin + i] * p[i];
                        }
                    size_t oi = (((size_t)g * Ho + oy) * Wo + ox) * c->cout + o;
                    if (res) s += res[oi];
                    if (c->act != MMP_NN_ACT_NONE && s < 0) s = 0;
                    if (c->act == MMP_NN_ACT_RELU6 && s > 6) s = 6;
                    out[oi] = (float)s;
                }
}
/* tests/fixtures/nn/NAME_io_HxW.safetensors: "input" u8 [N,H,W,3] images
 * (name relative to the repository root). */
typedef struct {
    mmp_safetensors st;
    const mmp_tensor *in;
    int N, H, W;
} fixture;

static inline void fx_open(fixture *f, const char *name) {
    mmp_st_open_or_die(&f->st, t_root_path(name));
    f->in = mmp_st_get(&f->st, "input");
    f->N = (int)f->in->shape[0], f->H = (int)f->in->shape[1], f->W = (int)f->in->shape[2];
}

#endif
