/* nn/txmodel.h: ViT and CLIP image towers (tx/model.h) behind mmp_nn_model
 * (internal to lib/nn: model.c holds an mmp_tx_model and calls these; embed.c
 * uses the helpers at the end). The nn API (layers, output dims, runner,
 * NHWC input) stays the same: mmp_nn_run turns the images into the CHW the
 * transformer takes. Layer names: proj (CLIP's projected embedding), pool
 * (the pooled output before any projection/head), pooler (HF ViTModel's
 * pooler), logits (ViT classifier). */
#ifndef MMP_NN_TXMODEL_H
#define MMP_NN_TXMODEL_H
#include <stddef.h>
#include <stdint.h>

#include "mmp.h"
#include "nn/nn.h"
#include "tx/model.h"

/* Does PATH look like a ViT/CLIP checkpoint (a directory, a pickle the tx
 * loader refuses with its conversion, or safetensors with ViT/CLIP tensor
 * names)? st: the open file when it is safetensors, else NULL. */
int mmp_nn_tx_wants(const char *path, const mmp_safetensors *st);
/* "clip-hf-vit-b32", "vit-timm-vit-l16-384", "clip-openclip-vit-w48-d2-p8-40":
 * family, then the image tower (standard ViT sizes by width and depth, else
 * width/depth/patch), then the native input size when not 224. */
void mmp_nn_tx_arch(const mmp_tx_model *m, char *buf, size_t n);
/* --arch for a ViT/CLIP file: NULL, "vit", "clip", a family name or the
 * whole arch string. 0 ok, -1 with the message. */
int mmp_nn_tx_check_arch(const mmp_tx_model *m, const char *arch, const char *want, const char *path, char *err,
                         size_t errlen);
/* "proj, pool" / "pool, pooler" / "pool, logits" ...: the layers m gives. */
void mmp_nn_tx_layer_names(const mmp_tx_model *m, char *buf, size_t n);
/* "proj" for CLIP, "pool" for ViT. */
const char *mmp_nn_tx_default_layer(const mmp_tx_model *m);
int mmp_nn_tx_layer_parse(const mmp_tx_model *m, const char *arch, const char *spec, mmp_nn_layer *l, char *err,
                          size_t errlen);
mmp_tx_out mmp_nn_tx_out(const mmp_nn_layer *l);
/* Floats per image, 0 when the model refuses HxW (not a multiple of the patch). */
int64_t mmp_nn_tx_output_dim(const mmp_tx_model *m, const mmp_nn_layer *l, int H, int W);
double mmp_nn_tx_macs(const mmp_tx_model *m, const mmp_nn_layer *l, int H, int W);
/* x [N,H,W,3] normalized -> out [N, dim] with `threads` threads: micro-batches
 * of whole images shared among the threads (each image's result does not
 * depend on its company, tx/model.h), the encoder's own threads when there
 * are fewer micro-batches than threads. Dies on a refused size (the callers
 * check it first). */
void mmp_nn_tx_run(const mmp_tx_model *m, int threads, const mmp_nn_layer *l, const float *x, int N, int H, int W,
                   float *out);

/* ---- for nn/embed.c and mmp-embed ---- */

/* The ViT/CLIP model behind m, NULL for a CNN. */
const mmp_tx_model *mmp_nn_model_tx(const mmp_nn_model *m);
/* Why HxW gets no output: "is too small for ARCH --layer L" (CNN) or "is not
 * a multiple of ARCH's patch size P". */
void mmp_nn_size_refusal(const mmp_nn_model *m, const mmp_nn_layer *l, int H, int W, char *buf, size_t n);
/* Output floats per image when they do not depend on the image size, else -1 (NAME:flat). */
int64_t mmp_nn_layer_dim_any(const mmp_nn_model *m, const mmp_nn_layer *l);

/* mmp-embed's preprocessing guard: compares how the stream's images were
 * resized (mmp-decode's header meta image.size, image.resize, image.interp,
 * image.crop_pct, image.crop_round) with the model's preprocessing (m->pre;
 * center-crop offsets: hf for the Hugging Face families, torchvision for
 * timm and open_clip). 0: the same, or the header does not say (no
 * mmp-decode resize, or mmp-augment's geometric ops after it); 1: differs,
 * msg = one line naming both as mmp-decode options. */
int mmp_nn_tx_preprocess_check(const mmp_tx_model *m, const mmp_header *ih, const char *in_name,
                               const char *model_name, char *msg, size_t msglen);
/* The mmp-decode options that give m's preprocessing ("--size 224 --interp
 * bicubic --crop-round hf"). */
void mmp_nn_tx_decode_flags(const mmp_tx_model *m, char *buf, size_t n);
#endif
