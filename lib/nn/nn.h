/* nn/nn.h: frozen pretrained CNN backbones (CPU engine) for mmp-embed.
 *
 * Models load from safetensors with torchvision's state_dict names:
 * ResNet-18/34/50/101/152 (any width, any block counts of torchvision's
 * BasicBlock/Bottleneck layout) and MobileNetV2 (any width_mult). Batch
 * norm (eps 1e-5) is folded into the convolutions at load time.
 * ViT and CLIP image towers load too (a .safetensors file or a model folder
 * of the families of docs/vit_clip.md), run by the transformer engine with
 * the layers proj, pool, pooler and logits (see mmp_nn_layer).
 *
 *   mmp_nn_model *m; mmp_nn_model_load(&m, "mnv2.safetensors", NULL, err, sizeof err);
 *   mmp_nn_layer l; mmp_nn_layer_parse(m, "pool", &l, err, sizeof err);
 *   mmp_nn_runner *r = mmp_nn_runner_new(m, &mmp_nn_ops_cpu, threads);
 *   mmp_nn_run(r, &l, x, N, H, W, out);  // x [N,H,W,3] normalized, out [N,dim]
 *
 * Results are bit-identical whatever the thread count: images are grouped
 * into micro-batches whose size depends only on the image size, and each
 * micro-batch is computed by one thread (the GEMM, nn/gemm.h, single-threaded). */
#ifndef MMP_NN_H
#define MMP_NN_H
#include <stddef.h>
#include <stdint.h>

#include "nn/ops.h"

typedef struct mmp_nn_model mmp_nn_model;

/* Preprocessing the weights were trained with (safetensors __metadata__
 * "input_size", "input_mean", "input_std"; torchvision's ImageNet defaults
 * 224, 0.485,0.456,0.406 / 0.229,0.224,0.225 when absent). */
typedef struct {
    int size;
    float mean[3], std[3];
} mmp_nn_preproc;

typedef enum {
    MMP_NN_OUT_POOL = 0,
    MMP_NN_OUT_LOGITS,
    MMP_NN_OUT_BLOCK,
    MMP_NN_OUT_PROJ,   /* ViT/CLIP only */
    MMP_NN_OUT_POOLER, /* ViT/CLIP only */
    MMP_NN_OUT_TOKENS, /* ViT/CLIP only: the patch tokens */
} mmp_nn_out_kind;

/* What mmp_nn_run outputs per image:
 *  pool    global-average-pooled final features [D] (MobileNetV2 1280*max(1,w),
 *          ResNet 512 (Basic) / 2048 (Bottleneck) at full width)
 *  logits  the classifier's output [classes] (no softmax)
 *  NAME    output of block NAME ("layer3", "layer3.1", "maxpool";
 *          "features.0".."features.18"), global-average-pooled: [C]
 *  NAME:flat  the same block output flattened like torch.flatten(x, 1)
 *          (C, H, W order): [C*h*w], depends on the input size.
 *  NAME:tokens  the same block output as a token sequence [h*w, C]: the
 *          grid's positions in raster order (row y, then column x), each
 *          position's C channels (x.flatten(2).transpose(1, 2) in torch);
 *          h*w*C floats, written as a 2-D tensor by mmp-embed.
 * ViT/CLIP:
 *  proj    CLIP's projected image embedding [projection dim] (the default)
 *  pool    the pooled output before any projection or head [width] (the
 *          default for ViT): CLIP pooler_output, HF ViT last_hidden_state[:, 0],
 *          timm forward_head(pre_logits=True)
 *  pooler  HF ViTModel's pooler_output (when the weights have pooler.dense)
 *  logits  the ViT's classifier / timm head [classes]
 *  tokens  the patch tokens after the final norm [h*w, C], raster order,
 *          the class token excluded: HF ViTModel last_hidden_state[:, 1:]
 *          (after its layernorm), timm forward_features(x)[:, 1:] (after
 *          norm), HF CLIPVisionModel last_hidden_state[:, 1:] (the encoder's
 *          output: CLIP has no norm there; post_layernorm is the pooled
 *          token's). */
typedef struct {
    mmp_nn_out_kind kind;
    int block; /* index into the model's blocks (MMP_NN_OUT_BLOCK) */
    int flat;
    int tokens; /* NAME:tokens (CNN) or tokens (ViT/CLIP): [h*w, C] */
    char name[80]; /* canonical spelling, e.g. "pool", "layer3", "features.13:flat" */
} mmp_nn_layer;

/* path: a safetensors file, or a ViT/CLIP model folder.
 * arch: NULL = detect from the tensor names (and __metadata__
 * "architecture"); else "resnet", "resnet18|34|50|101|152" or
 * "mobilenet_v2", or for ViT/CLIP "vit", "clip", a family ("vit-hf",
 * "vit-timm", "clip-hf", "clip-openclip") or the whole arch name; checked
 * against the tensors. 0 ok, -1 error (err). */
int mmp_nn_model_load(mmp_nn_model **m, const char *path, const char *arch, char *err, size_t errlen);
void mmp_nn_model_free(mmp_nn_model *m);
/* "resnet18", ..., "mobilenet_v2"; non-standard layouts e.g. "resnet-basic-2.2.2.2-w8";
 * ViT/CLIP: family, tower, native size when not 224, e.g. "clip-hf-vit-b32",
 * "vit-timm-vit-l16-384", "clip-openclip-vit-w48-d2-p8-40". */
const char *mmp_nn_model_arch(const mmp_nn_model *m);
/* The weights file (for a model folder: the safetensors file in it). */
const char *mmp_nn_model_weights(const mmp_nn_model *m);
/* The layer used when none is asked for: "proj" for CLIP, else "pool". */
const char *mmp_nn_model_default_layer(const mmp_nn_model *m);
mmp_nn_preproc mmp_nn_model_preproc(const mmp_nn_model *m);
int mmp_nn_model_classes(const mmp_nn_model *m); /* 0 when the file has no classifier */
int mmp_nn_model_pool_dim(const mmp_nn_model *m);
/* Comma-separated list of valid block names (for messages); ViT/CLIP: its layers. */
const char *mmp_nn_model_block_names(const mmp_nn_model *m);
/* Parses "pool", "logits", "NAME", "NAME:flat" or "NAME:tokens" (ViT/CLIP:
 * "tokens"). 0 ok, -1 error (err). */
int mmp_nn_layer_parse(const mmp_nn_model *m, const char *spec, mmp_nn_layer *l, char *err, size_t errlen);
/* Output floats per image for an HxW input; 0 when the input is too small. */
int64_t mmp_nn_output_dim(const mmp_nn_model *m, const mmp_nn_layer *l, int H, int W);

/* The width C of one token of a token layer (l->tokens), else 0. */
int64_t mmp_nn_token_width(const mmp_nn_model *m, const mmp_nn_layer *l);

/* Multiply-adds of the convolutions (and classifier when logits) per HxW image. */
double mmp_nn_model_macs(const mmp_nn_model *m, const mmp_nn_layer *l, int H, int W);

/* Images per micro-batch for HxW inputs (a function of H*W only; a power of
 * two, 1..16: 2 at 224x224, 8 at 96x96, 16 at 64x64 and below). */
int mmp_nn_micro_batch(int H, int W);

typedef struct mmp_nn_runner mmp_nn_runner;
/* Per-thread workspaces; ops = &mmp_nn_ops_cpu. */
mmp_nn_runner *mmp_nn_runner_new(const mmp_nn_model *m, const mmp_nn_ops *ops, int threads);
void mmp_nn_runner_free(mmp_nn_runner *r);
/* x: [N,H,W,3] float, normalized, NHWC; out: [N, mmp_nn_output_dim]. */
void mmp_nn_run(mmp_nn_runner *r, const mmp_nn_layer *l, const float *x, int N, int H, int W, float *out);
/* Bytes currently held by the runner's workspaces. */
size_t mmp_nn_runner_workspace_bytes(const mmp_nn_runner *r);

/* out[H,W,3] = (x/255 - mean) / std for u8 pixels in[H,W,3]. */
void mmp_nn_normalize_u8(const uint8_t *in, int H, int W, const float mean[3], const float std[3],
                     float *out);
/* out[H,W,C] = in[C,H,W] (f32). */
void mmp_nn_chw_to_hwc(const float *in, int C, int H, int W, float *out);
/* Parses "a,b,c" (3 floats). 0 ok, -1 bad. */
int mmp_nn_parse3(const char *s, float out[3]);
#endif
