/* tx/lora.h: LoRA (low-rank adapters) on the transformer engine's linear
 * layers (internal header, not installed).
 *
 * One adapted linear y = x W^T + b keeps W frozen and adds
 *     y += (alpha / r) * (dropout(x) A^T) B^T
 * with A [r, IC] and B [OC, r] (PEFT's lora_A / lora_B weights, Linear
 * layout [out, in]); the sum is PEFT's LoraLayer forward
 *     result += lora_B(lora_A(lora_dropout(x))) * scaling.
 * The op pair follows tx/tx.h's conventions (gradients accumulated, NULL =
 * not needed). Dropout is a caller-given mask [N, IC] of 0 or 1/(1-p)
 * (torch's inverted dropout); NULL = no dropout (inference).
 *
 * mmp_tx_block.lora points at the adapters of a block's six linears (NULL:
 * none; a NULL member: that linear has none); the encoder's inference
 * forward adds them after the linear's output (bias and, where fused, the
 * residual included): without adapters its outputs are the same bits. */
#ifndef MMP_TX_LORA_H
#define MMP_TX_LORA_H
#include <stddef.h>

typedef struct mmp_tx_lora {
    int r, IC, OC;
    float scale;    /* alpha / r */
    const float *A; /* [r, IC] */
    const float *B; /* [OC, r] */
} mmp_tx_lora;

typedef struct mmp_tx_block_lora {
    const mmp_tx_lora *q, *k, *v, *o, *fc1, *fc2;
} mmp_tx_block_lora;

/* y[N, OC] (row stride ldy) += scale * ((x .* mask) A^T) B^T.
 * x [N, IC] (row stride ldx); mask [N, IC] or NULL; u [N, r]: the low-rank
 * activations (x .* mask) A^T saved for the backward (NULL: scratch of its own). */
void mmp_tx_lora_fwd(float *y, int ldy, float *u, const float *x, int ldx, const float *mask, const mmp_tx_lora *a,
                     int N);
/* From dy [N, OC] (row stride ldy), the saved u and the forward's x, mask:
 *   dB[OC, r] += scale dy^T u
 *   dA[r, IC] += (scale dy B)^T (x .* mask)
 *   dx[N, IC] (row stride ldx) += ((scale dy B) A) .* mask
 * (W and b get nothing: frozen). */
void mmp_tx_lora_bwd(float *dx, int ldx, float *dA, float *dB, const float *dy, int ldy, const float *x,
                     const float *mask, const float *u, const mmp_tx_lora *a, int N);

/* Dropout mask [n] of 0 or 1/(1-p), from a seeded generator (deterministic:
 * the same seed gives the same mask); p == 0 fills 1. */
void mmp_tx_lora_dropout_mask(float *mask, size_t n, float p, unsigned long long seed);

/* W[OC, IC] += scale * B A (the merged weight: x W'^T = x W^T + scale (x A^T) B^T) */
void mmp_tx_lora_merge(float *W, const mmp_tx_lora *a);

#endif
