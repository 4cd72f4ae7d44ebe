/* train/bn_mt.h: train-mode BatchNorm2d fused with the residual add and the
 * activation that follow it in the CNN engines (cnn_tail.c), on threads.
 *
 * The batch statistics are per-channel double sums over the rows in order,
 * split over threads by channel ranges, so every channel's sum is the one
 * mmp_bn_train_forward / mmp_bn_train_backward compute (same operations, same
 * order); the elementwise passes (normalize + residual + activation; the
 * activation's backward + the residual's gradient; the BN input gradient)
 * are split by row ranges. The results are bit-identical to the serial layer
 * functions applied one after the other, for any thread count (tested:
 * tests/test_bn_mt.c). */
#ifndef MMP_TRAIN_BN_MT_H
#define MMP_TRAIN_BN_MT_H

#include <stdint.h>

/* y = act(bn_train(x) + skip) over x[M,C]: mmp_bn_train_forward (batch
 * statistics, mean/invstd saved, running statistics moved when rmean/rvar are
 * non-NULL), then y += skip[M,C] when skip is non-NULL, then act
 * (MMP_ACT_NONE / MMP_ACT_RELU6 / MMP_ACT_RELU of cnn_tail.h). y may not
 * alias x; skip may alias neither. threads <= 1: the caller's thread only. */
void mmp_bn_train_act_forward(const float *x, int64_t M, int64_t C, const float *weight, const float *bias,
                              float momentum, float *rmean, float *rvar, float *mean, float *invstd, float *y,
                              const float *skip, int act, int threads);

/* Its backward, in place on g[M,C] (dloss/dy on entry, dloss/dx on exit):
 * g = 0 where the activation's backward stops it (y = the forward's output),
 * gskip += g when gskip is non-NULL (the residual's source), then
 * mmp_bn_train_backward(x, g, ..., dx = g, dweight, dbias). */
void mmp_bn_train_act_backward(const float *x, const float *y, float *g, int64_t M, int64_t C, const float *weight,
                               const float *mean, const float *invstd, float *gskip, int act, float *dweight,
                               float *dbias, int threads);

#endif
