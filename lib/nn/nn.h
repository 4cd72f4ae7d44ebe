/* nn/nn.h: frozen pretrained CNN backbones (CPU engine) for mmp-embed.
 *
 * Models load from safetensors with torchvision's state_dict names:
 * ResNet-18/34/50/101/152 (any width, any block counts of torchvision's
 * BasicBlock/Bottleneck layout) and MobileNetV2 (any width_mult). Batch
 * norm (eps 1e-5) is folded into the convolutions at load time.
 *
 *   nn_model *m; nn_model_load(&m, "mnv2.safetensors", NULL, err, sizeof err);
 *   nn_layer l; nn_layer_parse(m, "pool", &l, err, sizeof err);
 *   nn_runner *r = nn_runner_new(m, &nn_ops_cpu, threads);
 *   nn_run(r, &l, x, N, H, W, out);  // x [N,H,W,3] normalized, out [N,dim]
 *
 * Results are bit-identical whatever the thread count: images are grouped
 * into micro-batches whose size depends only on the image size, and each
 * micro-batch is computed by one thread with single-threaded OpenBLAS. */
#ifndef MMP_NN_H
#define MMP_NN_H
#include <stddef.h>
#include <stdint.h>

#include "nn/ops.h"

typedef struct nn_model nn_model;

/* Preprocessing the weights were trained with (safetensors __metadata__
 * "input_size", "input_mean", "input_std"; torchvision's ImageNet defaults
 * 224, 0.485,0.456,0.406 / 0.229,0.224,0.225 when absent). */
typedef struct {
    int size;
    float mean[3], std[3];
} nn_preproc;

typedef enum { NN_OUT_POOL = 0, NN_OUT_LOGITS, NN_OUT_BLOCK } nn_out_kind;

/* What nn_run outputs per image:
 *  pool    global-average-pooled final features [D] (MobileNetV2 1280*max(1,w),
 *          ResNet 512 (Basic) / 2048 (Bottleneck) at full width)
 *  logits  the classifier's output [classes] (no softmax)
 *  NAME    output of block NAME ("layer3", "layer3.1", "maxpool";
 *          "features.0".."features.18"), global-average-pooled: [C]
 *  NAME:flat  the same block output flattened like torch.flatten(x, 1)
 *          (C, H, W order): [C*h*w], depends on the input size. */
typedef struct {
    nn_out_kind kind;
    int block; /* index into the model's blocks (NN_OUT_BLOCK) */
    int flat;
    char name[80]; /* canonical spelling, e.g. "pool", "layer3", "features.13:flat" */
} nn_layer;

/* arch: NULL = detect from the tensor names (and __metadata__
 * "architecture"); else "resnet", "resnet18|34|50|101|152" or
 * "mobilenet_v2", checked against the tensors. 0 ok, -1 error (err). */
int nn_model_load(nn_model **m, const char *path, const char *arch, char *err, size_t errlen);
void nn_model_free(nn_model *m);
/* "resnet18", ..., "mobilenet_v2"; non-standard layouts e.g. "resnet-basic-2.2.2.2-w8". */
const char *nn_model_arch(const nn_model *m);
nn_preproc nn_model_preproc(const nn_model *m);
int nn_model_classes(const nn_model *m); /* 0 when the file has no classifier */
int nn_model_pool_dim(const nn_model *m);
/* Comma-separated list of valid block names (for messages). */
const char *nn_model_block_names(const nn_model *m);
/* Parses "pool", "logits", "NAME" or "NAME:flat". 0 ok, -1 error (err). */
int nn_layer_parse(const nn_model *m, const char *spec, nn_layer *l, char *err, size_t errlen);
/* Output floats per image for an HxW input; 0 when the input is too small. */
int64_t nn_output_dim(const nn_model *m, const nn_layer *l, int H, int W);

/* Multiply-adds of the convolutions (and classifier when logits) per HxW image. */
double nn_model_macs(const nn_model *m, const nn_layer *l, int H, int W);

/* Images per micro-batch for HxW inputs (a function of H*W only). */
int nn_micro_batch(int H, int W);

typedef struct nn_runner nn_runner;
/* Per-thread workspaces; ops = &nn_ops_cpu. */
nn_runner *nn_runner_new(const nn_model *m, const nn_ops *ops, int threads);
void nn_runner_free(nn_runner *r);
/* x: [N,H,W,3] float, normalized, NHWC; out: [N, nn_output_dim]. */
void nn_run(nn_runner *r, const nn_layer *l, const float *x, int N, int H, int W, float *out);
/* Bytes currently held by the runner's workspaces. */
size_t nn_runner_workspace_bytes(const nn_runner *r);

/* out[H,W,3] = (x/255 - mean) / std for u8 pixels in[H,W,3]. */
void nn_normalize_u8(const uint8_t *in, int H, int W, const float mean[3], const float std[3],
                     float *out);
/* out[H,W,C] = in[C,H,W] (f32). */
void nn_chw_to_hwc(const float *in, int C, int H, int W, float *out);
/* Parses "a,b,c" (3 floats). 0 ok, -1 bad. */
int nn_parse3(const char *s, float out[3]);
#endif
