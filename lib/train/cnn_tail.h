/* train/cnn_tail.h: a trainable MobileNetV2 tail (the mnv2-tail head).
 *
 * "Unfreeze the last blocks" the mmpipe way: mmp-embed caches the output of
 * block features.K (--layer features.K:flat, [C*h*w] in C,H,W order); this
 * head trains blocks features.K+1 .. features.18 plus the classifier on those
 * cached activations:
 *
 *   x [N,C0,H0,W0]  (one record = torch.flatten(features[:K+1](img), 1))
 *   -> InvertedResidual features.K+1 ... features.17
 *        [expand 1x1 conv, BN, ReLU6]  (blocks with expand_ratio != 1)
 *        depthwise 3x3 conv (stride 1|2, pad 1), BN, ReLU6
 *        project 1x1 conv, BN  (+ x when stride 1 and cin == cout)
 *   -> features.18: 1x1 conv, BN, ReLU6
 *   -> global average pool -> Dropout(p) -> Linear(F, C)   (classifier.1)
 *
 * BatchNorm runs in eval mode with the running statistics of the backbone
 * (torchvision's model.eval() / FrozenBatchNorm2d):
 *   y = (x - mean) / sqrt(var + 1e-5) * weight + bias
 * weight and bias train, running_mean/running_var stay as they are; or, with
 * train_bn, in train mode (batch statistics, running statistics moved as
 * PyTorch's). first = 0 starts at the image (the stem features.0; ResNet:
 * conv1 + bn1 + relu + maxpool, resnet_tail.h), so a whole network trains.
 * Trainable parameters, under torchvision's exact state_dict names:
 *   features.i.conv.0.0.weight [hid,cin,1,1], features.i.conv.0.1.{weight,bias}   (expand)
 *   features.i.conv.1.0.weight [hid,1,3,3],  features.i.conv.1.1.{weight,bias}   (depthwise)
 *   features.i.conv.2.weight [cout,hid,1,1], features.i.conv.3.{weight,bias}     (project)
 *   (no-expand blocks: conv.0.0 dw, conv.0.1 BN, conv.1 project, conv.2 BN)
 *   features.18.0.weight [F,cin,1,1], features.18.1.{weight,bias}
 *   classifier.1.weight [C,F], classifier.1.bias [C]
 * plus the frozen buffers features.*.running_mean / running_var (copied).
 *
 * Internally activations are NHWC (rows = pixels), so a 1x1 conv over a batch
 * is one sgemm [N*H*W, cin] x [cin, cout]. Threads over fixed slices of the
 * batch: deterministic, the same bits for any thread count.
 */
#ifndef MMP_TRAIN_CNN_TAIL_H
#define MMP_TRAIN_CNN_TAIL_H

#include <stddef.h>
#include <stdint.h>

#include "mmp.h"
#include "train/layers.h"
#include "train/optim.h"
#include "train/unfreeze.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MMP_BN_EPS 1e-5f

/* ---------------------------------------------------------------- */
/* layers (NHWC: an activation is [M = N*H*W rows, C channels])       */
/* ---------------------------------------------------------------- */

/* 1x1 convolution (no bias): z[M,O] = x[M,Ci] @ W[O,Ci]^T (W = torch's [O,Ci,1,1]). */
void mmp_pw_conv_forward(const float *x, int64_t M, int64_t Ci, const float *W, int64_t O, float *z);
/* dW[O,Ci] = dz[M,O]^T x[M,Ci] (overwritten); dx[M,Ci] = dz W (NULL to skip). */
void mmp_pw_conv_backward(const float *x, const float *dz, int64_t M, int64_t Ci, const float *W,
                          int64_t O, float *dx, float *dW);

/* Depthwise 3x3 convolution, padding 1, stride s (no bias):
 * x[N,H,W,C], W [C,1,3,3] (torch layout), z[N,Ho,Wo,C],
 * Ho = (H-1)/s + 1, Wo = (W-1)/s + 1. */
void mmp_dw_conv_forward(const float *x, int64_t N, int64_t H, int64_t W, int64_t C, const float *w,
                         int stride, float *z);
/* dw[C,9] (overwritten) and dx[N,H,W,C] (overwritten; NULL to skip) from dz[N,Ho,Wo,C]. */
void mmp_dw_conv_backward(const float *x, const float *dz, int64_t N, int64_t H, int64_t W, int64_t C,
                          const float *w, int stride, float *dx, float *dw);

/* Eval-mode BatchNorm2d over x[M,C]: y = x*s + t with
 * s = weight/sqrt(var+eps), t = bias - mean*s (y may alias x). */
void mmp_bn_eval_forward(const float *x, int64_t M, int64_t C, const float *weight, const float *bias,
                         const float *mean, const float *var, float *y);
/* From dy[M,C]: dweight[C] = sum dy*(x-mean)/sqrt(var+eps), dbias[C] = sum dy
 * (overwritten); dx[M,C] = dy*s (may alias dy; NULL to skip). */
void mmp_bn_eval_backward(const float *x, const float *dy, int64_t M, int64_t C, const float *weight,
                          const float *mean, const float *var, float *dx, float *dweight, float *dbias);

/* Train-mode BatchNorm2d over x[M,C] (torch.nn.BatchNorm2d in model.train()):
 * batch mean and biased variance per channel (double sums over the rows in
 * order: the same bits for any thread count),
 *   y = (x - mean) * invstd * weight + bias,  invstd = 1/sqrt(var + eps);
 * saves mean[C], invstd[C] for the backward; when rmean/rvar are non-NULL the
 * running statistics move as PyTorch's do:
 *   rmean = (1-momentum)*rmean + momentum*mean
 *   rvar  = (1-momentum)*rvar  + momentum*var*M/(M-1)   (unbiased; M > 1)
 * (y may alias x). */
void mmp_bn_train_forward(const float *x, int64_t M, int64_t C, const float *weight, const float *bias, float momentum,
                          float *rmean, float *rvar, float *mean, float *invstd, float *y);
/* Backward through the batch statistics (PyTorch's batch_norm_backward):
 *   dweight = sum dy*xhat, dbias = sum dy (overwritten; NULL to skip),
 *   dx = (dy - dbias/M - xhat*dweight/M) * invstd * weight  (may alias dy; NULL to skip),
 * xhat = (x - mean)*invstd; mean/invstd from the forward. */
void mmp_bn_train_backward(const float *x, const float *dy, int64_t M, int64_t C, const float *weight,
                           const float *mean, const float *invstd, float *dx, float *dweight, float *dbias);

/* nn.MaxPool2d(3, stride 2, padding 1) over x[N,H,W,C] -> y[N,Ho,Wo,C],
 * Ho = (H-1)/2 + 1 (torchvision ResNet's stem); padding is -inf. */
void mmp_maxpool3s2_forward(const float *x, int64_t N, int64_t H, int64_t W, int64_t C, float *y);
/* dx[N,H,W,C] (overwritten) from dy[N,Ho,Wo,C]: each output's gradient goes to
 * the first maximum of its window in (kh, kw) order (a NaN wins), as
 * PyTorch's CPU kernel picks it. */
void mmp_maxpool3s2_backward(const float *x, const float *dy, int64_t N, int64_t H, int64_t W, int64_t C, float *dx);

/* Dense KxK convolution (K odd: 1, 3, 7), padding K/2, stride s, no bias:
 * x[N,H,W,Ci], w [O,Ci,K,K] (torch layout), z[N,Ho,Wo,O],
 * Ho = (H + 2*(K/2) - K)/s + 1 (likewise Wo). im2col + one sgemm per chunk of images. */
void mmp_conv2d_forward(const float *x, int64_t N, int64_t H, int64_t W, int64_t Ci, const float *w, int64_t O,
                        int K, int stride, float *z);
/* dw[O,Ci,K,K] (overwritten) and dx[N,H,W,Ci] (overwritten, col2im; NULL to skip) from dz[N,Ho,Wo,O]. */
void mmp_conv2d_backward(const float *x, const float *dz, int64_t N, int64_t H, int64_t W, int64_t Ci,
                         const float *w, int64_t O, int K, int stride, float *dx, float *dw);

/* The same with reusable scratch and prepacked weights (bit-identical results):
 * wt [O, K*K*Ci] from mmp_conv2d_pack; ws grows as needed (zero-initialise it,
 * free with mmp_conv_ws_free); one ws per thread. */
typedef struct {
    float *col, *dwt;
    size_t ncol, ndwt;      /* capacities in floats */
} mmp_conv_ws;
void mmp_conv2d_pack(const float *w, int64_t O, int64_t Ci, int K, float *wt);
void mmp_conv2d_forward_ws(const float *x, int64_t N, int64_t H, int64_t W, int64_t Ci, const float *wt,
                           int64_t O, int K, int stride, float *z, mmp_conv_ws *ws);
void mmp_conv2d_backward_ws(const float *x, const float *dz, int64_t N, int64_t H, int64_t W, int64_t Ci,
                            const float *wt, int64_t O, int K, int stride, float *dx, float *dw, mmp_conv_ws *ws);
void mmp_conv_ws_free(mmp_conv_ws *ws);

/* (ReLU: mmp_relu_forward/backward of train/layers.h) */

/* ReLU6 in place: x = min(max(x,0),6). */
void mmp_relu6_forward(float *x, size_t n);
/* dx *= (0 < y < 6), y = the ReLU6 output (torch's hardtanh_backward). */
void mmp_relu6_backward(const float *y, float *dx, size_t n);

/* Global average pool: p[N,C] = mean over the HW rows of x[N,HW,C]. */
void mmp_avgpool_forward(const float *x, int64_t N, int64_t HW, int64_t C, float *p);
/* dx[N,HW,C] = dp[N,C] / HW. */
void mmp_avgpool_backward(const float *dp, int64_t N, int64_t HW, int64_t C, float *dx);

/* x[N,C,H,W] (torch order) -> y[N,H,W,C] and back. */
void mmp_nchw_to_nhwc(const float *x, int64_t N, int64_t C, int64_t HW, float *y);
void mmp_nhwc_to_nchw(const float *x, int64_t N, int64_t C, int64_t HW, float *y);

/* ---------------------------------------------------------------- */
/* the tail                                                          */
/* ---------------------------------------------------------------- */

enum { MMP_TAIL_PW = 0, MMP_TAIL_DW = 1, MMP_TAIL_CONV = 2 /* dense KxK, stride s */,
       MMP_TAIL_MAXPOOL = 3 /* MaxPool2d(3, 2, 1): no parameters, no BN (pw = pbw = pbb = -1) */ };
enum { MMP_ACT_NONE = 0, MMP_ACT_RELU6 = 1, MMP_ACT_RELU = 2 };
#define MMP_TAIL_NOSKIP (-2)

/* conv + eval BN (+ skip input) (+ activation): one unit
 *   y = act(BN(conv(in)) + skip)
 * in: the unit whose output is the input (-1: the tail input); skip: the
 * unit whose output is added (-1: the tail input, MMP_TAIL_NOSKIP: none).
 * Units are in topological order (in, skip < own index). */
typedef struct {
    int kind;               /* MMP_TAIL_PW, MMP_TAIL_DW or MMP_TAIL_CONV */
    int64_t cin, cout, stride, H, W, Ho, Wo;
    int ksize;              /* MMP_TAIL_CONV: 1 or 3 */
    int act;                /* MMP_ACT_* */
    int in, skip;
    float *gy;              /* backward: dloss/d(unit output) [N*Ho*Wo, cout] */
    int pw, pbw, pbb;       /* parameter indices: conv weight, BN weight, BN bias */
    char bn[64];            /* "features.17.conv.0.1" (BN prefix) */
    float *mean, *var;      /* running statistics [cout] (frozen, or moved by train-mode BN) */
    float *bmean, *binvstd; /* train-mode BN: the last batch's mean and 1/sqrt(var+eps) [cout] */
    float *z, *y;           /* cache: conv output, unit output [N*Ho*Wo, cout] */
    float *wt;              /* MMP_TAIL_CONV: the weights packed by the last forward (mmp_conv2d_pack),
                             * reused by its backward (the optimizer changes them only after both) */
    /* LoRA on this convolution (--unfreeze lora; PEFT 0.4's Conv2d):
     *   z = conv(x, W) + (B(A(dropout(x)))) * alpha/r
     * A = Conv2d(cin, r, K, stride, K/2, bias=False) [r,cin,K,K],
     * B = Conv2d(r, cout, 1x1, bias=False) [cout,r,1,1] */
    int lora;               /* 1: params plA, plB are the adapter */
    int plA, plB;
    float *lat;             /* K > 1: A packed by the last forward */
    float *lx;              /* lora dropout: the dropped input [cap*H*W*cin] (NULL: dropout 0) */
    float *lmask;           /* its mask (scaled keep: 1/(1-p) or 0) */
    float *lh;              /* A's output [cap*Ho*Wo, r] */
    float *ldh;             /* backward: dloss/d(A's output) [cap*Ho*Wo, r] */
} mmp_tail_unit;

#define MMP_TAIL_MAX_UNITS 192 /* ResNet-152 from the image: 2 + 50*3 + 4 units */
#define MMP_TAIL_SLICES 4
typedef struct {
    int first, last;        /* features.first .. features.last (the final 1x1 conv) */
    int64_t C0, H0, W0;     /* input [C0,H0,W0] per record */
    int arch;               /* 0: MobileNetV2 (features.*), 1: ResNet (layer*) */
    int64_t F, ncls;        /* pooled width (1280), classes */
    float dropout;
    int nu;
    mmp_tail_unit u[MMP_TAIL_MAX_UNITS];
    int res_unit[MMP_TAIL_MAX_UNITS]; /* u[k] is a project unit whose output adds input_of[k]: its block input unit index + 1 (0 = none; -1 = the tail input) */
    int block_in[MMP_TAIL_MAX_UNITS]; /* first unit of the block (for residual inputs) */
    int np;
    mmp_param *params;      /* owned: tail parameters then classifier.1.weight, classifier.1.bias */
    int64_t cap, widest;    /* batch capacity of the caches; widest activation per record */
    float *x0, *gx0, *pool, *mask, *dpool, *g1;
    int masked;             /* the last forward applied dropout */
    /* BatchNorm mode of training forwards (train = 1): 0 frozen (eval mode, the
     * default, the running statistics never move), 1 train mode (batch
     * statistics; running statistics updated with bn_momentum, PyTorch's 0.1).
     * Inference (train = 0) always uses the running statistics. */
    int train_bn;
    float bn_momentum;
    int bn_batch;           /* the last forward used batch statistics */
    /* threads: the batch is cut into min(N, MMP_TAIL_SLICES) fixed slices (whatever the
     * thread count), their weight gradients summed in slice order: bit-identical
     * results for any number of threads */
    int threads;            /* 1..MMP_TAIL_SLICES (default: online CPUs, at most MMP_TAIL_SLICES) */
    size_t *goff, gtotal;   /* offsets of the conv/BN parameters in a slice's gradient buffer */
    float *sgrad;           /* [MMP_TAIL_SLICES, gtotal] */
    mmp_conv_ws ws[MMP_TAIL_SLICES]; /* per-thread convolution scratch, kept across calls */
    /* freezing (mmp_tail_unfreeze): params[i].frozen; the backward starts
     * nothing below unit lo (the lowest unit with a trainable parameter) unless
     * dloss/dinput is asked for, and computes no gradient of a frozen tensor */
    int lo;
    int lora_rank;          /* 0: no LoRA */
    float lora_alpha, lora_scale, lora_dropout;
    int lora_masked;        /* the last forward applied the LoRA dropout */
} mmp_cnn_tail;

/* The block stride of torchvision's MobileNetV2 (width 1.0) features.i (i >= 1). */
int mmp_mnv2_block_stride(int i);
/* Spatial size after features.0..features.k for an input of size s (per axis). */
int64_t mmp_mnv2_spatial(int64_t s, int k);

/* Builds the tail features.first .. (the final 1x1 conv) from the tensors of
 * (first = 0: the whole network from the normalized image, the stem
 * features.0 = 3x3 conv stride 2 + BN + ReLU6 first; C0 = 3)
 * src (a torchvision MobileNetV2 state dict, or an mnv2-tail checkpoint):
 * structure from the tensor names/shapes, strides from mmp_mnv2_block_stride,
 * weights and running statistics copied. Input [C0 = the first block's
 * cin, H0, W0]; ncls classes; the classifier is zeroed (classifier.1.* are
 * read from src only when load_classifier and present with shape [ncls,F]).
 * 0 or -1 with the reason in err. */
int mmp_tail_init(mmp_cnn_tail *t, const mmp_safetensors *src, int first, int64_t H0, int64_t W0, int64_t ncls,
                  float dropout, int load_classifier, char *err, size_t errlen);
/* Input channels of block features.first in src (0 when src has no such block;
 * first = 0: the stem's input channels). */
int64_t mmp_tail_first_cin(const mmp_safetensors *src, int first);
void mmp_tail_free(mmp_cnn_tail *t);

/* logits[N,ncls] from x[N, C0*H0*W0] (C,H,W order). train: dropout with rng
 * and keep the activations for mmp_tail_backward (memory: all activations of
 * the N records); inference (train = 0) runs in blocks of MMP_TAIL_INFER_ROWS
 * records. */
#define MMP_TAIL_INFER_ROWS 64
void mmp_tail_forward(mmp_cnn_tail *t, const float *x, int64_t N, int train, uint64_t *rng, float *logits);
/* (train_bn: the forward of a batch of N = 1 has no variance to use; as in
 * PyTorch, train with batches of 2 or more records.) */
/* Parameter gradients (overwritten) from dlogits[N,ncls], after the forward
 * (train = 1) of the same x. dx (NULL to skip) gets dloss/dx [N, C0*H0*W0]. */
void mmp_tail_backward(mmp_cnn_tail *t, int64_t N, const float *dlogits, float *dx);

/* building blocks of a tail builder (cnn_tail.c, resnet_tail.c): one
 * conv + BN unit reading wname [cout,cin|1,K,K] and the BN prefix bn from
 * src (params appended; *cap: the params capacity); then the classifier
 * (cls.weight [ncls,F], cls.bias, read from src when load and present with
 * that shape) and the slice layout. 0 or -1 with err. */
int mmp_tail_add_unit(mmp_cnn_tail *t, int *cap, const mmp_safetensors *src, int kind, int ksize, const char *wname,
                      const char *bn, int64_t cin, int64_t cout, int stride, int act, int in, int skip, int64_t H,
                      int64_t W, char *err, size_t errlen);
int mmp_tail_finish(mmp_cnn_tail *t, int *cap, const mmp_safetensors *src, const char *cls, int load, char *err,
                    size_t errlen);

/* appends a MaxPool2d(3, 2, 1) unit reading the previous unit ([H,W,C]). 0 or -1. */
int mmp_tail_add_maxpool(mmp_cnn_tail *t, int64_t C, int64_t H, int64_t W, char *err, size_t errlen);

/* Bytes of a training batch of N records (mmp_head.batch_bytes; model = the
 * tail): saved = the forward's caches the backward reads (input, conv and
 * unit outputs, pooled features, dropout mask), work = the backward's
 * gradient buffers (per-unit output gradients, input gradient, scratch). */
void mmp_tail_batch_bytes(const void *model, int64_t N, int64_t *saved, int64_t *work);
/* Freezing strategies (mmp-train-step --unfreeze, PyTorch's requires_grad):
 *   MMP_UNFREEZE_ALL    everything trains (the default)
 *   MMP_UNFREEZE_HEAD   the classifier only
 *   MMP_UNFREEZE_LAST   the last n blocks + the classifier (MobileNetV2: features.18,
 *                       features.17, ... features.0 counted down; ResNet: the BasicBlock /
 *                       Bottleneck blocks from layer4's last down, the stem never)
 *   MMP_UNFREEZE_NORM   BatchNorm weight/bias + the classifier
 *   MMP_UNFREEZE_LORA   LoRA adapters on the convolutions named by targets + the classifier
 * Frozen BatchNorm keeps its mode (t->train_bn: batch statistics and moving
 * running statistics in train mode, as PyTorch's model.train() with
 * requires_grad=False). */
typedef struct {
    int kind, n;            /* MMP_UNFREEZE_*, n for LAST */
    int rank;               /* LoRA r (8) */
    double alpha, dropout;  /* lora_alpha (8), lora_dropout (0) */
    const char *targets;    /* comma-separated PEFT target_modules (suffixes of the conv
                             * module names); NULL or "": every non-grouped convolution */
} mmp_tail_unfreeze_opts;
/* Applies a strategy to a built tail (once, before training): frozen flags,
 * LoRA parameters (A: kaiming_uniform(a=sqrt(5)) from seed, B zeros; inserted
 * before the classifier) and the backward's range. With src (a checkpoint),
 * the LoRA tensors are read from it when present. 0 or -1 (err: a pattern
 * matching no convolution, only depthwise ones, last:N past the blocks). */
int mmp_tail_unfreeze(mmp_cnn_tail *t, const mmp_tail_unfreeze_opts *o, uint64_t seed, char *err, size_t errlen);
/* The conv module name of unit k ("features.3.conv.0.0", "layer1.0.conv1"). */
const char *mmp_tail_unit_module(const mmp_cnn_tail *t, int k, char *buf, size_t n);

/* Adds the frozen buffers (running_mean/var) to a checkpoint writer. */
void mmp_tail_save_buffers(const mmp_cnn_tail *t, mmp_st_writer *w);
/* Adds torchvision's BN buffers "<bn>.num_batches_tracked" (i64 scalars = nbt),
 * which load_state_dict(strict=True) needs. */
void mmp_tail_save_nbt(const mmp_cnn_tail *t, int64_t nbt, mmp_st_writer *w);

#ifdef __cplusplus
}
#endif
#endif
