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
    float dropout;  /* p of the training forward's dropout on x (0: none); inference ignores it */
} mmp_tx_lora;

/* qkv: one adapter over the fused q|k|v linear (timm's blocks.N.attn.qkv:
 * PEFT puts one LoRA on that nn.Linear): OC = 3C, its output is the q|k|v
 * row [T, 3C]; used instead of q, k, v (which are then NULL). */
typedef struct mmp_tx_block_lora {
    const mmp_tx_lora *q, *k, *v, *o, *fc1, *fc2, *qkv;
} mmp_tx_block_lora;

/* The adapters' gradients of one block (accumulated; NULL = not needed):
 * dA [r, IC], dB [OC, r] per linear, the members of mmp_tx_block_lora. */
typedef struct {
    float *A, *B;
} mmp_tx_lora_grad;
typedef struct mmp_tx_block_lora_grad {
    mmp_tx_lora_grad q, k, v, o, fc1, fc2, qkv;
} mmp_tx_block_lora_grad;

/* The slots of a block in the order of mmp_tx_block_lora's members */
enum { MMP_TX_LORA_Q, MMP_TX_LORA_K, MMP_TX_LORA_V, MMP_TX_LORA_O, MMP_TX_LORA_FC1, MMP_TX_LORA_FC2, MMP_TX_LORA_QKV,
       MMP_TX_LORA_NSLOT };
static inline const mmp_tx_lora *mmp_tx_lora_slot(const mmp_tx_block_lora *b, int s) {
    const mmp_tx_lora *const v[MMP_TX_LORA_NSLOT] = {b->q, b->k, b->v, b->o, b->fc1, b->fc2, b->qkv};
    return v[s];
}
static inline const mmp_tx_lora_grad *mmp_tx_lora_grad_slot(const mmp_tx_block_lora_grad *g, int s) {
    const mmp_tx_lora_grad *const v[MMP_TX_LORA_NSLOT] = {&g->q, &g->k, &g->v, &g->o, &g->fc1, &g->fc2, &g->qkv};
    return v[s];
}

/* The dropout mask of token row `row` of linear `slot` of block `layer` in
 * a training forward seeded with `seed` (tx/tx.h mmp_tx_encoder.lora_seed):
 * mmp_tx_lora_dropout_mask(mask, IC, p, mmp_tx_lora_row_seed(...)). One
 * seed per row: the masks do not depend on how the rows are split among
 * threads. */
unsigned long long mmp_tx_lora_row_seed(unsigned long long seed, int layer, int slot, int row);

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
