/* train/resnet_tail.h: a trainable torchvision ResNet tail (the resnet-tail head).
 *
 * mmp-embed caches the output of a stage (--layer layer3:flat, or a block
 * --layer layer3.1:flat; [C*h*w] in C,H,W order); this head trains the rest
 * of the network on those activations:
 *
 *   x [N,C0,H0,W0] -> the remaining blocks of layerL, layerL+1 .. layer4
 *   -> global average pool -> fc (Linear(F, C))
 *
 * BasicBlock (resnet18/34):  out = relu(bn2(conv2(relu(bn1(conv1(x))))) + id)
 *   conv1 3x3 stride s, conv2 3x3
 * Bottleneck (resnet50/101/152, torchvision v1.5):
 *   out = relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + id)
 *   conv1 1x1, conv2 3x3 stride s, conv3 1x1
 * id = x, or downsample: 1x1 conv stride s (downsample.0) + BN (downsample.1).
 * s = 2 for block 0 of layer2..layer4, else 1. BN in eval mode (running
 * statistics frozen, weight/bias trained), as in train/cnn_tail.h whose
 * engine (units, threads, slices) this builder fills.
 * Trainable tensors, torchvision names: layerL.i.conv{1,2,3}.weight,
 * layerL.i.bn{1,2,3}.{weight,bias}, layerL.i.downsample.{0.weight,1.weight,1.bias},
 * fc.weight [C,F], fc.bias [C]; buffers layerL.i.*.running_mean/var copied.
 */
#ifndef MMP_TRAIN_RESNET_TAIL_H
#define MMP_TRAIN_RESNET_TAIL_H

#include "train/cnn_tail.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "layerL" or "layerL.i" (optionally ":flat") -> L (1..4), i (-1: the whole
 * stage). 0 or -1. */
int mmp_resnet_parse_layer(const char *s, int *L, int *i);
/* Number of blocks of layerL in src (0: none). */
int mmp_resnet_nblocks(const mmp_safetensors *src, int L);
/* The first trainable block after the output of (L, i): *tl, *ti; 0, or -1
 * when nothing of layer1..4 follows (the input is the last block). With
 * i = -1 (the whole stage) layerL itself need not be in src. */
int mmp_resnet_next_block(const mmp_safetensors *src, int L, int i, int *tl, int *ti);
/* Input channels of block layerL.i (0: no such block). */
int64_t mmp_resnet_block_cin(const mmp_safetensors *src, int L, int i);
/* Spatial size after (any block of) layerL of a torchvision ResNet for an
 * image of size s (per axis): stem /4 (conv 7x7 s2, maxpool 3x3 s2), /2 at
 * block 0 of layer2..4. */
int64_t mmp_resnet_spatial(int64_t s, int L);

/* Builds the tail after the output of layerL (block i; -1 = the whole stage;
 * L = 0: the whole network from the normalized image: the stem conv1 7x7
 * stride 2 + bn1 + relu, maxpool 3x3 stride 2, then layer1..4; C0 = 3)
 * from src (a torchvision ResNet state dict or a resnet-tail checkpoint):
 * input [C0, H0, W0], ncls classes, fc zeroed unless load_fc and fc.* present
 * with shape [ncls,F]. 0 or -1 with the reason in err. t->first/t->last hold
 * L*100+i of the first/last trained block. */
int mmp_resnet_tail_init(mmp_cnn_tail *t, const mmp_safetensors *src, int L, int i, int64_t H0, int64_t W0,
                         int64_t ncls, int load_fc, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
