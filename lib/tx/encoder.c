/* tx/encoder.c: pre-LN and post-LN transformer blocks over packed sequences
 * (tx/tx.h). Every sum is in a fixed order: a linear layer is the GEMM, then
 * its bias, then the residual, (gemm + b) + x, the order of mmp_sgemm_packed's
 * fused epilogue, so packed and unpacked weights give the same bits. */
#include "tx/tx.h"

#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "nn/gemm.h"

typedef struct {
    mmp_sgemm_pack *qkv, *o, *fc1, *fc2;
    float *qkv_b; /* [3C] or NULL (no q/k/v bias) */
} packed_block;

struct mmp_tx_packed {
    int layers;
    packed_block *b;
};

/* q, k, v weights stacked [3C, C] in place (fused in_proj), else NULL */
static const float *fused_qkv_w(const mmp_tx_block *b, int C) {
    size_t CC = (size_t)C * C;
    return b->k_w == b->q_w + CC && b->v_w == b->q_w + 2 * CC ? b->q_w : NULL;
}
/* q, k, v biases contiguous [3C] (or all NULL: *none) */
static const float *fused_qkv_b(const mmp_tx_block *b, int C, int *none) {
    *none = !b->q_b && !b->k_b && !b->v_b;
    return b->q_b && b->k_b == b->q_b + C && b->v_b == b->q_b + 2 * C ? b->q_b : NULL;
}

void mmp_tx_encoder_pack(mmp_tx_encoder *e) {
    mmp_tx_encoder_unpack(e);
    const int C = e->C, I = e->inter;
    struct mmp_tx_packed *p = mmp_xcalloc(1, sizeof *p);
    p->layers = e->layers;
    p->b = mmp_xcalloc((size_t)e->layers + 1, sizeof *p->b);
    for (int l = 0; l < e->layers; l++) {
        const mmp_tx_block *b = &e->block[l];
        packed_block *pb = &p->b[l];
        const float *w = fused_qkv_w(b, C);
        float *cat = NULL;
        if (!w) {
            size_t CC = (size_t)C * C;
            cat = mmp_xmalloc(3 * CC * sizeof *cat);
            memcpy(cat, b->q_w, CC * sizeof *cat);
            memcpy(cat + CC, b->k_w, CC * sizeof *cat);
            memcpy(cat + 2 * CC, b->v_w, CC * sizeof *cat);
            w = cat;
        }
        pb->qkv = mmp_sgemm_pack_b(MMP_GEMM_T, 3 * C, C, w, C);
        free(cat);
        if (b->q_b || b->k_b || b->v_b) {
            pb->qkv_b = mmp_xcalloc((size_t)3 * C, sizeof *pb->qkv_b);
            if (b->q_b) memcpy(pb->qkv_b, b->q_b, (size_t)C * sizeof(float));
            if (b->k_b) memcpy(pb->qkv_b + C, b->k_b, (size_t)C * sizeof(float));
            if (b->v_b) memcpy(pb->qkv_b + 2 * C, b->v_b, (size_t)C * sizeof(float));
        }
        pb->o = mmp_sgemm_pack_b(MMP_GEMM_T, C, C, b->o_w, C);
        pb->fc1 = mmp_sgemm_pack_b(MMP_GEMM_T, I, C, b->fc1_w, C);
        pb->fc2 = mmp_sgemm_pack_b(MMP_GEMM_T, C, I, b->fc2_w, I);
    }
    e->packed = p;
}

void mmp_tx_encoder_unpack(mmp_tx_encoder *e) {
    struct mmp_tx_packed *p = e->packed;
    if (!p) return;
    for (int l = 0; l < p->layers; l++) {
        packed_block *pb = &p->b[l];
        mmp_sgemm_pack_free(pb->qkv);
        mmp_sgemm_pack_free(pb->o);
        mmp_sgemm_pack_free(pb->fc1);
        mmp_sgemm_pack_free(pb->fc2);
        free(pb->qkv_b);
    }
    free(p->b);
    free(p);
    e->packed = NULL;
}

/* y[T, OC] = x[T, IC] W^T + b (+ R[T, OC] when R): packed or not, the same bits */
static void lin(float *y, const float *x, const float *W, const float *b, const mmp_sgemm_pack *pk, const float *R,
                int T, int IC, int OC) {
    if (pk) {
        mmp_sgemm_packed(MMP_GEMM_N, T, x, IC, pk, b, R, OC, MMP_GEMM_ACT_NONE, y, OC);
        return;
    }
    mmp_tx_linear_fwd(y, OC, x, W, b, T, IC, OC);
    if (R)
        for (size_t i = 0; i < (size_t)T * OC; i++) y[i] = y[i] + R[i];
}

/* qkv[T, 3C] = x q_w^T + q_b | x k_w^T + k_b | x v_w^T + v_b (one GEMM when
 * the weights are stacked: the same bits, the GEMM's columns are independent) */
static void qkv_fwd(float *qkv, const float *x, const mmp_tx_block *b, const packed_block *pb, int T, int C) {
    if (pb) {
        mmp_sgemm_packed(MMP_GEMM_N, T, x, C, pb->qkv, pb->qkv_b, NULL, 0, MMP_GEMM_ACT_NONE, qkv, 3 * C);
        return;
    }
    int none;
    const float *w = fused_qkv_w(b, C), *bias = fused_qkv_b(b, C, &none);
    if (w && (bias || none)) {
        mmp_tx_linear_fwd(qkv, 3 * C, x, w, bias, T, C, 3 * C);
        return;
    }
    mmp_tx_linear_fwd(qkv, 3 * C, x, b->q_w, b->q_b, T, C, C);
    mmp_tx_linear_fwd(qkv + C, 3 * C, x, b->k_w, b->k_b, T, C, C);
    mmp_tx_linear_fwd(qkv + 2 * C, 3 * C, x, b->v_w, b->v_b, T, C, C);
}

/* x[T, C] += r[T, C] * g[C] (LayerScale) */
static void add_scaled(float *x, const float *r, const float *g, int T, int C) {
    for (int t = 0; t < T; t++) {
        float *xt = x + (size_t)t * C;
        const float *rt = r + (size_t)t * C;
        for (int j = 0; j < C; j++) xt[j] += rt[j] * g[j];
    }
}

void mmp_tx_encoder_fwd(const mmp_tx_encoder *e, float *x, const int *lens, int nseq, float *hidden) {
    const int C = e->C, I = e->inter;
    int T = 0;
    for (int s = 0; s < nseq; s++) T += lens[s];
    if (hidden) memcpy(hidden, x, (size_t)T * C * sizeof *x);
    if (T == 0 || e->layers == 0) return;
    float *h = mmp_xmalloc((size_t)T * C * sizeof *h);
    float *h2 = mmp_xmalloc((size_t)T * C * sizeof *h2);
    float *qkv = mmp_xmalloc((size_t)T * 3 * C * sizeof *qkv);
    float *ctx = mmp_xmalloc((size_t)T * C * sizeof *ctx);
    float *f = mmp_xmalloc((size_t)T * I * sizeof *f);
    for (int l = 0; l < e->layers; l++) {
        const mmp_tx_block *b = &e->block[l];
        const packed_block *pb = e->packed ? &e->packed->b[l] : NULL;
        const mmp_sgemm_pack *po = pb ? pb->o : NULL, *p1 = pb ? pb->fc1 : NULL, *p2 = pb ? pb->fc2 : NULL;
        if (e->post_ln) {
            /* x = ln1(x + o(attn(x))); x = ln2(x + fc2(act(fc1(x)))) */
            qkv_fwd(qkv, x, b, pb, T, C);
            mmp_tx_attention_fwd(ctx, NULL, qkv, 3 * C, qkv + C, 3 * C, qkv + 2 * C, 3 * C, lens, lens, nseq, C, e->NH,
                                 e->causal);
            lin(h, ctx, b->o_w, b->o_b, po, x, T, C, C);
            mmp_tx_layernorm_fwd(x, NULL, NULL, h, b->ln1_w, b->ln1_b, T, C, e->eps);
            lin(f, x, b->fc1_w, b->fc1_b, p1, NULL, T, C, I);
            mmp_tx_act_fwd(f, f, (size_t)T * I, e->act);
            lin(h, f, b->fc2_w, b->fc2_b, p2, x, T, I, C);
            mmp_tx_layernorm_fwd(x, NULL, NULL, h, b->ln2_w, b->ln2_b, T, C, e->eps);
        } else {
            /* x += o(attn(ln1(x))) [* ls1]; x += fc2(act(fc1(ln2(x)))) [* ls2] */
            mmp_tx_layernorm_fwd(h, NULL, NULL, x, b->ln1_w, b->ln1_b, T, C, e->eps);
            qkv_fwd(qkv, h, b, pb, T, C);
            mmp_tx_attention_fwd(ctx, NULL, qkv, 3 * C, qkv + C, 3 * C, qkv + 2 * C, 3 * C, lens, lens, nseq, C, e->NH,
                                 e->causal);
            /* h2 = x + o(ctx) (fused residual), or x += o(ctx) * ls1 */
            float *x1 = x;
            if (b->ls1) {
                lin(h, ctx, b->o_w, b->o_b, po, NULL, T, C, C);
                add_scaled(x, h, b->ls1, T, C);
            } else {
                lin(h2, ctx, b->o_w, b->o_b, po, x, T, C, C);
                x1 = h2;
            }
            mmp_tx_layernorm_fwd(h, NULL, NULL, x1, b->ln2_w, b->ln2_b, T, C, e->eps);
            lin(f, h, b->fc1_w, b->fc1_b, p1, NULL, T, C, I);
            mmp_tx_act_fwd(f, f, (size_t)T * I, e->act);
            if (b->ls2) {
                lin(h, f, b->fc2_w, b->fc2_b, p2, NULL, T, I, C);
                if (x1 != x) memcpy(x, x1, (size_t)T * C * sizeof *x);
                add_scaled(x, h, b->ls2, T, C);
            } else {
                lin(x, f, b->fc2_w, b->fc2_b, p2, x1 == x ? (memcpy(h2, x, (size_t)T * C * sizeof *x), h2) : x1, T,
                    I, C);
            }
        }
        if (hidden) memcpy(hidden + (size_t)(l + 1) * T * C, x, (size_t)T * C * sizeof *x);
    }
    free(h);
    free(h2);
    free(qkv);
    free(ctx);
    free(f);
}
