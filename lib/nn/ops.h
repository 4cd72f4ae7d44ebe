/* nn/ops.h: the layer kernels of the CNN engine and the device seam.
 *
 * Every activation is a float tensor in NHWC layout ([G,H,W,C], row-major),
 * G = images in the micro-batch. A model (nn/nn.h) only ever calls the
 * kernels through an mmp_nn_ops table, so a device backend (kernels/, cuBLAS)
 * plugs in by providing another table whose pointers are device pointers;
 * see kernels/README.md. The CPU table is mmp_nn_ops_cpu (ops_cpu.c):
 * mmp_sgemm (nn/gemm.h) for dense convolutions and linear layers (Winograd
 * F(2x2|4x4, 3x3) for dense 3x3 stride-1 ones, nn/winograd.h), hand-vectorized
 * AVX2/FMA loops (scalar fallback without __AVX2__) for the rest.
 * No kernel keeps state between calls; scratch memory is passed in. */
#ifndef MMP_NN_OPS_H
#define MMP_NN_OPS_H
#include <stddef.h>

typedef enum { MMP_NN_ACT_NONE = 0, MMP_NN_ACT_RELU, MMP_NN_ACT_RELU6 } mmp_nn_act;

/* A convolution with batch norm already folded in (w' = w*g/sqrt(v+eps),
 * b' = beta - mean*g/sqrt(v+eps)), torchvision padding (k/2, symmetric). */
typedef struct {
    int cin, cout, k, stride, pad;
    int depthwise; /* groups == cin == cout (MobileNetV2 3x3) */
    mmp_nn_act act;
    float *w; /* dense: [cout][k][k][cin]; depthwise: [k*k][cout] */
    float *b; /* [cout] */
    /* Winograd F(m x m, 3x3) weights U[(m+2)^2][cin][cout] (packed, see
     * nn/winograd.h; set at load for dense 3x3 stride-1 convs), NULL = im2col only. */
    float *wino;
    int wino_m;
    /* w as [cout][k*k*cin] pre-packed for the CPU GEMM (mmp_sgemm_pack_b,
     * nn/gemm.h; set at load for dense convs without Winograd weights),
     * NULL = packed at every call. Same bits either way. */
    struct mmp_sgemm_pack *gemm;
} mmp_nn_conv;

static inline int mmp_nn_conv_out(int n, int k, int s, int p) { return (n + 2 * p - k) / s + 1; }

/* A MobileNetV2 inverted residual block: out = project(dw(expand(in)))
 * (+ in when residual: stride 1 and cin == cout). expand is NULL when the
 * expansion factor is 1; dw is the depthwise 3x3 (stride 1 or 2); expand
 * has ReLU6, project no activation. *_wt: the 1x1 weights in the CPU
 * GEMM's layout (mmp_nn_cpu_pack_1x1 in cpu.h: panels of 16 output channels),
 * made once at load time like the batch-norm folding; a device backend uses
 * expand->w / project->w. */
typedef struct {
    const mmp_nn_conv *expand, *dw, *project;
    const float *expand_wt, *project_wt;
    int residual;
} mmp_nn_inverted_residual;

typedef struct mmp_nn_ops {
    const char *name;
    /* Floats of scratch conv2d needs for this input ([G,H,W,cin]); 0 = none. */
    size_t (*conv2d_scratch)(const mmp_nn_conv *c, int G, int H, int W);
    /* out[G,Ho,Wo,cout] = act(conv(in[G,H,W,cin]) + b (+ res[G,Ho,Wo,cout]));
     * dense or depthwise per c->depthwise; res may be NULL. */
    void (*conv2d)(const mmp_nn_conv *c, const float *in, int G, int H, int W, const float *res,
                   float *out, float *scratch);
    /* out[G,Ho,Wo,C] = max over 3x3 window, stride 2, pad 1 (padding ignored). */
    void (*maxpool3x3s2)(const float *in, int G, int H, int W, int C, float *out);
    /* out[G,C] = mean over HW of in[G,HW,C]. */
    void (*avgpool)(const float *in, int G, int HW, int C, float *out);
    /* out[G,O] = in[G,D] . w[O,D]^T + b[O]. */
    void (*linear)(const float *in, int G, int D, const float *w, const float *b, int O, float *out);
    /* out[G,C,HW] = transpose of in[G,HW,C] (torch.flatten order). */
    void (*to_chw)(const float *in, int G, int HW, int C, float *out);
    /* Optional (NULL: the model runs the block as three conv2d calls).
     * out[G,Ho,Wo,project.cout] = the inverted residual b on in[G,H,W,cin];
     * inverted_residual_scratch: floats of scratch it needs. */
    size_t (*inverted_residual_scratch)(const mmp_nn_inverted_residual *b, int G, int H, int W);
    void (*inverted_residual)(const mmp_nn_inverted_residual *b, const float *in, int G, int H, int W, float *out, float *scratch);
    /* Optional (NULL: conv2d). conv2d of a dense conv whose weights were
     * packed at load time: wp = w viewed as [cout][k*k*cin] in the CPU
     * GEMM's layout (mmp_nn_cpu_pack_1x1); MobileNetV2's first and last convs. */
    size_t (*conv2d_packed_scratch)(const mmp_nn_conv *c, int G, int H, int W);
    void (*conv2d_packed)(const mmp_nn_conv *c, const float *wp, const float *in, int G, int H, int W, const float *res,
                          float *out, float *scratch);
} mmp_nn_ops;

extern const mmp_nn_ops mmp_nn_ops_cpu;

/* The CPU kernels, also callable directly (tests). */
size_t mmp_nn_cpu_conv2d_scratch(const mmp_nn_conv *c, int G, int H, int W);
void mmp_nn_cpu_conv2d(const mmp_nn_conv *c, const float *in, int G, int H, int W, const float *res,
                   float *out, float *scratch);
void mmp_nn_cpu_maxpool3x3s2(const float *in, int G, int H, int W, int C, float *out);
void mmp_nn_cpu_avgpool(const float *in, int G, int HW, int C, float *out);
void mmp_nn_cpu_linear(const float *in, int G, int D, const float *w, const float *b, int O, float *out);
void mmp_nn_cpu_to_chw(const float *in, int G, int HW, int C, float *out);
size_t mmp_nn_cpu_inverted_residual_scratch(const mmp_nn_inverted_residual *b, int G, int H, int W);
void mmp_nn_cpu_inverted_residual(const mmp_nn_inverted_residual *b, const float *in, int G, int H, int W, float *out, float *scratch);
size_t mmp_nn_cpu_conv2d_packed_scratch(const mmp_nn_conv *c, int G, int H, int W);
void mmp_nn_cpu_conv2d_packed(const mmp_nn_conv *c, const float *wp, const float *in, int G, int H, int W, const float *res,
                          float *out, float *scratch);
/* Decides the GEMM's instruction-set level (lib/cpu.h, MMP_ISA) up front,
 * before the threads that run over the batch. */
void mmp_nn_cpu_init(void);
#endif
