/* tx/encoder.c: pre-LN and post-LN transformer blocks over packed sequences
 * (tx/tx.h). Every sum is in a fixed order: a linear layer is the GEMM, then
 * its bias, then the residual, (gemm + b) + x, the order mmp_sgemm_packed's
 * fused epilogue uses. */
#include "tx/tx.h"

#include <stdlib.h>
#include <string.h>

#include "mmp.h"

/* y[T, C] += r[T, C] (* g[C] when g) */
static void residual(float *x, const float *r, const float *g, int T, int C) {
    for (int t = 0; t < T; t++) {
        float *xt = x + (size_t)t * C;
        const float *rt = r + (size_t)t * C;
        if (g)
            for (int j = 0; j < C; j++) xt[j] += rt[j] * g[j];
        else
            for (int j = 0; j < C; j++) xt[j] = rt[j] + xt[j];
    }
}

/* qkv[T, 3C] = x q_w^T + q_b | x k_w^T + k_b | x v_w^T + v_b */
static void qkv_fwd(float *qkv, const float *x, const mmp_tx_block *b, int T, int C) {
    mmp_tx_linear_fwd(qkv, 3 * C, x, b->q_w, b->q_b, T, C, C);
    mmp_tx_linear_fwd(qkv + C, 3 * C, x, b->k_w, b->k_b, T, C, C);
    mmp_tx_linear_fwd(qkv + 2 * C, 3 * C, x, b->v_w, b->v_b, T, C, C);
}

void mmp_tx_encoder_fwd(const mmp_tx_encoder *e, float *x, const int *lens, int nseq, float *hidden) {
    const int C = e->C, I = e->inter;
    int T = 0;
    for (int s = 0; s < nseq; s++) T += lens[s];
    if (hidden) memcpy(hidden, x, (size_t)T * C * sizeof *x);
    if (T == 0 || e->layers == 0) return;
    float *h = mmp_xmalloc((size_t)T * C * sizeof *h);
    float *qkv = mmp_xmalloc((size_t)T * 3 * C * sizeof *qkv);
    float *ctx = mmp_xmalloc((size_t)T * C * sizeof *ctx);
    float *f = mmp_xmalloc((size_t)T * I * sizeof *f);
    for (int l = 0; l < e->layers; l++) {
        const mmp_tx_block *b = &e->block[l];
        if (e->post_ln) {
            /* x = ln1(x + o(attn(x))); x = ln2(x + fc2(act(fc1(x)))) */
            qkv_fwd(qkv, x, b, T, C);
            mmp_tx_attention_fwd(ctx, NULL, qkv, 3 * C, qkv + C, 3 * C, qkv + 2 * C, 3 * C, lens, lens, nseq, C, e->NH,
                                 e->causal);
            mmp_tx_linear_fwd(h, C, ctx, b->o_w, b->o_b, T, C, C);
            residual(h, x, NULL, T, C);
            mmp_tx_layernorm_fwd(x, NULL, NULL, h, b->ln1_w, b->ln1_b, T, C, e->eps);
            mmp_tx_linear_fwd(f, I, x, b->fc1_w, b->fc1_b, T, C, I);
            mmp_tx_act_fwd(f, f, (size_t)T * I, e->act);
            mmp_tx_linear_fwd(h, C, f, b->fc2_w, b->fc2_b, T, I, C);
            residual(h, x, NULL, T, C);
            mmp_tx_layernorm_fwd(x, NULL, NULL, h, b->ln2_w, b->ln2_b, T, C, e->eps);
        } else {
            /* x += o(attn(ln1(x))) [* ls1]; x += fc2(act(fc1(ln2(x)))) [* ls2] */
            mmp_tx_layernorm_fwd(h, NULL, NULL, x, b->ln1_w, b->ln1_b, T, C, e->eps);
            qkv_fwd(qkv, h, b, T, C);
            mmp_tx_attention_fwd(ctx, NULL, qkv, 3 * C, qkv + C, 3 * C, qkv + 2 * C, 3 * C, lens, lens, nseq, C, e->NH,
                                 e->causal);
            mmp_tx_linear_fwd(h, C, ctx, b->o_w, b->o_b, T, C, C);
            residual(x, h, b->ls1, T, C);
            mmp_tx_layernorm_fwd(h, NULL, NULL, x, b->ln2_w, b->ln2_b, T, C, e->eps);
            mmp_tx_linear_fwd(f, I, h, b->fc1_w, b->fc1_b, T, C, I);
            mmp_tx_act_fwd(f, f, (size_t)T * I, e->act);
            mmp_tx_linear_fwd(h, C, f, b->fc2_w, b->fc2_b, T, I, C);
            residual(x, h, b->ls2, T, C);
        }
        if (hidden) memcpy(hidden + (size_t)(l + 1) * T * C, x, (size_t)T * C * sizeof *x);
    }
    free(h);
    free(qkv);
    free(ctx);
    free(f);
}
