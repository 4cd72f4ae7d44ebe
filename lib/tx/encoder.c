/* tx/encoder.c: pre-LN and post-LN transformer blocks over packed sequences
 * (tx/tx.h). Every sum is in a fixed order: a linear layer is the GEMM, then
 * its bias, then the residual, (gemm + b) + x, the order of mmp_sgemm_packed's
 * fused epilogue, so packed and unpacked weights give the same bits. */
#include "tx/tx.h"

#include <pthread.h>
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

/* The inference forward as phases, each split over threads with the same
 * bits for any split: per layer a row phase (everything row-local: the
 * previous block's MLP and residuals, this block's LayerNorm and q|k|v) and
 * an attention phase over the (sequence, head) pairs. */
typedef struct {
    const mmp_tx_encoder *e;
    const int *lens;
    int nseq, T, nthreads;
    float *x, *h, *h2, *qkv, *ctx, *f, *hidden;
    float **sc;   /* per thread [Lmax^2] */
    int layer;    /* the row phase ends layer `layer - 1` and starts `layer` */
    int phase;    /* 0 rows, 1 attention, -1 quit */
    pthread_barrier_t go, done;
} fwd_run;

/* rows [r0, r1): end block l-1 (its output projection onward) when l > 0,
 * then the start of block l (up to q|k|v) when l < layers */
static void rows_phase(fwd_run *R, int r0, int r1) {
    const mmp_tx_encoder *e = R->e;
    const int C = e->C, I = e->inter, n = r1 - r0, T = R->T, l = R->layer;
    if (n <= 0) return;
    const size_t o = (size_t)r0 * C, oi = (size_t)r0 * I;
    float *x = R->x + o, *h = R->h + o, *h2 = R->h2 + o, *ctx = R->ctx + o, *f = R->f + oi;
    if (l > 0) {
        const mmp_tx_block *b = &e->block[l - 1];
        const packed_block *pb = e->packed ? &e->packed->b[l - 1] : NULL;
        const mmp_sgemm_pack *po = pb ? pb->o : NULL, *p1 = pb ? pb->fc1 : NULL, *p2 = pb ? pb->fc2 : NULL;
        if (e->post_ln) {
            /* x = ln1(x + o(ctx)); x = ln2(x + fc2(act(fc1(x)))) */
            lin(h, ctx, b->o_w, b->o_b, po, x, n, C, C);
            mmp_tx_layernorm_fwd(x, NULL, NULL, h, b->ln1_w, b->ln1_b, n, C, e->eps);
            lin(f, x, b->fc1_w, b->fc1_b, p1, NULL, n, C, I);
            mmp_tx_act_fwd(f, f, (size_t)n * I, e->act);
            lin(h, f, b->fc2_w, b->fc2_b, p2, x, n, I, C);
            mmp_tx_layernorm_fwd(x, NULL, NULL, h, b->ln2_w, b->ln2_b, n, C, e->eps);
        } else {
            /* x += o(ctx) [* ls1]; x += fc2(act(fc1(ln2(x)))) [* ls2] */
            float *x1 = x;
            if (b->ls1) {
                lin(h, ctx, b->o_w, b->o_b, po, NULL, n, C, C);
                add_scaled(x, h, b->ls1, n, C);
            } else {
                lin(h2, ctx, b->o_w, b->o_b, po, x, n, C, C);
                x1 = h2;
            }
            mmp_tx_layernorm_fwd(h, NULL, NULL, x1, b->ln2_w, b->ln2_b, n, C, e->eps);
            lin(f, h, b->fc1_w, b->fc1_b, p1, NULL, n, C, I);
            mmp_tx_act_fwd(f, f, (size_t)n * I, e->act);
            if (b->ls2) {
                lin(h, f, b->fc2_w, b->fc2_b, p2, NULL, n, I, C);
                if (x1 != x) memcpy(x, x1, (size_t)n * C * sizeof *x);
                add_scaled(x, h, b->ls2, n, C);
            } else {
                if (x1 == x) memcpy(h2, x, (size_t)n * C * sizeof *x);
                lin(x, f, b->fc2_w, b->fc2_b, p2, h2, n, I, C);
            }
        }
        if (R->hidden) memcpy(R->hidden + (size_t)l * T * C + o, x, (size_t)n * C * sizeof *x);
    }
    if (l < e->layers) {
        const mmp_tx_block *b = &e->block[l];
        const packed_block *pb = e->packed ? &e->packed->b[l] : NULL;
        float *qkv = R->qkv + 3 * o;
        if (e->post_ln) {
            qkv_fwd(qkv, x, b, pb, n, C);
        } else {
            mmp_tx_layernorm_fwd(h, NULL, NULL, x, b->ln1_w, b->ln1_b, n, C, e->eps);
            qkv_fwd(qkv, h, b, pb, n, C);
        }
    }
}

/* (sequence, head) pairs k = tid, tid + nthreads, ... */
static void attention_phase(fwd_run *R, int tid) {
    const mmp_tx_encoder *e = R->e;
    const int C = e->C, NH = e->NH;
    for (int s = 0, t0 = 0, k = 0; s < R->nseq; t0 += R->lens[s], s++) {
        const int L = R->lens[s];
        const float *q = R->qkv + (size_t)t0 * 3 * C;
        for (int hd = 0; hd < NH; hd++, k++)
            if (k % R->nthreads == tid)
                mmp_tx_attention_head(R->ctx + (size_t)t0 * C, R->sc[tid], q, 3 * C, q + C, 3 * C, q + 2 * C, 3 * C, L,
                                      L, C, NH, hd, e->causal);
    }
}

static void run_phase(fwd_run *R, int tid) {
    if (R->phase == 0) {
        /* rows split in equal contiguous parts */
        int r0 = (int)((long)R->T * tid / R->nthreads), r1 = (int)((long)R->T * (tid + 1) / R->nthreads);
        rows_phase(R, r0, r1);
    } else {
        attention_phase(R, tid);
    }
}

typedef struct {
    fwd_run *R;
    int tid;
} fwd_worker;

static void *fwd_thread(void *arg) {
    fwd_worker *w = arg;
    for (;;) {
        pthread_barrier_wait(&w->R->go);
        if (w->R->phase < 0) break;
        run_phase(w->R, w->tid);
        pthread_barrier_wait(&w->R->done);
    }
    return NULL;
}

void mmp_tx_encoder_fwd(const mmp_tx_encoder *e, float *x, const int *lens, int nseq, float *hidden) {
    const int C = e->C, I = e->inter;
    int T = 0, Lmax = 0;
    for (int s = 0; s < nseq; s++) {
        T += lens[s];
        if (lens[s] > Lmax) Lmax = lens[s];
    }
    if (hidden) memcpy(hidden, x, (size_t)T * C * sizeof *x);
    if (T == 0 || e->layers == 0) return;
    int nt = e->threads > 1 ? e->threads : 1;
    if (nt > T && nt > nseq * e->NH) nt = T > nseq * e->NH ? T : nseq * e->NH;
    fwd_run R = {.e = e, .lens = lens, .nseq = nseq, .T = T, .nthreads = nt, .x = x, .hidden = hidden};
    R.h = mmp_xmalloc((size_t)T * C * sizeof(float));
    R.h2 = mmp_xmalloc((size_t)T * C * sizeof(float));
    R.qkv = mmp_xmalloc((size_t)T * 3 * C * sizeof(float));
    R.ctx = mmp_xmalloc((size_t)T * C * sizeof(float));
    R.f = mmp_xmalloc((size_t)T * I * sizeof(float));
    R.sc = mmp_xmalloc((size_t)nt * sizeof *R.sc);
    for (int i = 0; i < nt; i++) R.sc[i] = mmp_xmalloc(((size_t)Lmax * Lmax + 1) * sizeof(float));
    pthread_t *th = NULL;
    fwd_worker *wk = NULL;
    if (nt > 1) {
        pthread_barrier_init(&R.go, NULL, (unsigned)nt);
        pthread_barrier_init(&R.done, NULL, (unsigned)nt);
        th = mmp_xmalloc((size_t)nt * sizeof *th);
        wk = mmp_xmalloc((size_t)nt * sizeof *wk);
        for (int i = 1; i < nt; i++) {
            wk[i] = (fwd_worker){&R, i};
            if (pthread_create(&th[i], NULL, fwd_thread, &wk[i])) mmp_die("cannot create a thread");
        }
    }
    for (int l = 0; l <= e->layers; l++) {
        for (int ph = 0; ph < 2; ph++) {
            if (ph == 1 && l == e->layers) break;
            R.layer = l;
            R.phase = ph;
            if (nt > 1) pthread_barrier_wait(&R.go);
            run_phase(&R, 0);
            if (nt > 1) pthread_barrier_wait(&R.done);
        }
    }
    if (nt > 1) {
        R.phase = -1;
        pthread_barrier_wait(&R.go);
        for (int i = 1; i < nt; i++) pthread_join(th[i], NULL);
        pthread_barrier_destroy(&R.go);
        pthread_barrier_destroy(&R.done);
    }
    free(th);
    free(wk);
    for (int i = 0; i < nt; i++) free(R.sc[i]);
    free(R.sc);
    free(R.h);
    free(R.h2);
    free(R.qkv);
    free(R.ctx);
    free(R.f);
}

/* ------------------------------------------------------------- training */

/* One block's saved activations (offsets into saved, floats):
 *   X0 [T,C]  block input
 *   A  [T,C]  pre-LN: ln1(X0);  post-LN: ln1's input X0 + o(ctx)
 *   m1, r1 [T] ln1's mean and rstd
 *   QKV [T,3C], ATT [att], CTX [T,C]
 *   O  [T,C]  pre-LN: o(ctx) (LayerScale's gradient)
 *   X1 [T,C]  pre-LN: X0 + O [* ls1];  post-LN: ln1(A)
 *   B  [T,C]  pre-LN: ln2(X1);  post-LN: ln2's input X1 + fc2(G)
 *   m2, r2 [T]
 *   F  [T,I]  fc1 output;  G [T,I] act(F)
 *   M  [T,C]  pre-LN: fc2(G) */
typedef struct {
    float *X0, *A, *m1, *r1, *QKV, *ATT, *CTX, *O, *X1, *B, *m2, *r2, *F, *G, *M;
} slots;

static size_t layer_floats(int T, int C, int I, size_t na) { return (size_t)T * (10 * C + 4 + 2 * I) + na; }

static slots slots_at(float *base, int l, int T, int C, int I, size_t na) {
    float *p = base + (size_t)l * layer_floats(T, C, I, na);
    slots s;
    size_t TC = (size_t)T * C;
    s.X0 = p, p += TC;
    s.A = p, p += TC;
    s.m1 = p, p += T;
    s.r1 = p, p += T;
    s.QKV = p, p += 3 * TC;
    s.ATT = p, p += na;
    s.CTX = p, p += TC;
    s.O = p, p += TC;
    s.X1 = p, p += TC;
    s.B = p, p += TC;
    s.m2 = p, p += T;
    s.r2 = p, p += T;
    s.F = p, p += (size_t)T * I;
    s.G = p, p += (size_t)T * I;
    s.M = p;
    return s;
}

size_t mmp_tx_encoder_saved_size(const mmp_tx_encoder *e, const int *lens, int nseq) {
    int T = 0;
    for (int s = 0; s < nseq; s++) T += lens[s];
    size_t na = mmp_tx_attention_att_size(lens, lens, nseq, e->NH);
    return (size_t)e->layers * layer_floats(T, e->C, e->inter, na);
}

void mmp_tx_encoder_fwd_save(const mmp_tx_encoder *e, float *x, const int *lens, int nseq, float *hidden,
                             float *saved) {
    const int C = e->C, I = e->inter;
    int T = 0;
    for (int s = 0; s < nseq; s++) T += lens[s];
    const size_t TC = (size_t)T * C, na = mmp_tx_attention_att_size(lens, lens, nseq, e->NH);
    if (hidden) memcpy(hidden, x, TC * sizeof *x);
    if (T == 0) return;
    for (int l = 0; l < e->layers; l++) {
        const mmp_tx_block *b = &e->block[l];
        const packed_block *pb = e->packed ? &e->packed->b[l] : NULL;
        const mmp_sgemm_pack *po = pb ? pb->o : NULL, *p1 = pb ? pb->fc1 : NULL, *p2 = pb ? pb->fc2 : NULL;
        slots s = slots_at(saved, l, T, C, I, na);
        memcpy(s.X0, x, TC * sizeof *x);
        if (e->post_ln) {
            qkv_fwd(s.QKV, s.X0, b, pb, T, C);
            mmp_tx_attention_fwd(s.CTX, s.ATT, s.QKV, 3 * C, s.QKV + C, 3 * C, s.QKV + 2 * C, 3 * C, lens, lens, nseq,
                                 C, e->NH, e->causal);
            lin(s.A, s.CTX, b->o_w, b->o_b, po, s.X0, T, C, C);
            mmp_tx_layernorm_fwd(s.X1, s.m1, s.r1, s.A, b->ln1_w, b->ln1_b, T, C, e->eps);
            lin(s.F, s.X1, b->fc1_w, b->fc1_b, p1, NULL, T, C, I);
            mmp_tx_act_fwd(s.G, s.F, (size_t)T * I, e->act);
            lin(s.B, s.G, b->fc2_w, b->fc2_b, p2, s.X1, T, I, C);
            mmp_tx_layernorm_fwd(x, s.m2, s.r2, s.B, b->ln2_w, b->ln2_b, T, C, e->eps);
        } else {
            mmp_tx_layernorm_fwd(s.A, s.m1, s.r1, s.X0, b->ln1_w, b->ln1_b, T, C, e->eps);
            qkv_fwd(s.QKV, s.A, b, pb, T, C);
            mmp_tx_attention_fwd(s.CTX, s.ATT, s.QKV, 3 * C, s.QKV + C, 3 * C, s.QKV + 2 * C, 3 * C, lens, lens, nseq,
                                 C, e->NH, e->causal);
            lin(s.O, s.CTX, b->o_w, b->o_b, po, NULL, T, C, C);
            memcpy(s.X1, s.X0, TC * sizeof *x);
            if (b->ls1)
                add_scaled(s.X1, s.O, b->ls1, T, C);
            else
                for (size_t i = 0; i < TC; i++) s.X1[i] = s.O[i] + s.X1[i];
            mmp_tx_layernorm_fwd(s.B, s.m2, s.r2, s.X1, b->ln2_w, b->ln2_b, T, C, e->eps);
            lin(s.F, s.B, b->fc1_w, b->fc1_b, p1, NULL, T, C, I);
            mmp_tx_act_fwd(s.G, s.F, (size_t)T * I, e->act);
            lin(s.M, s.G, b->fc2_w, b->fc2_b, p2, NULL, T, I, C);
            memcpy(x, s.X1, TC * sizeof *x);
            if (b->ls2)
                add_scaled(x, s.M, b->ls2, T, C);
            else
                for (size_t i = 0; i < TC; i++) x[i] = s.M[i] + x[i];
        }
        if (hidden) memcpy(hidden + (size_t)(l + 1) * TC, x, TC * sizeof *x);
    }
}

/* dg[C] += sum_t d[t] * v[t] (LayerScale's gradient) */
static void ls_grad(float *dg, const float *d, const float *v, int T, int C) {
    if (!dg) return;
    for (int t = 0; t < T; t++)
        for (int j = 0; j < C; j++) dg[j] += d[(size_t)t * C + j] * v[(size_t)t * C + j];
}

/* d * g[C] per row into out (or a copy when g is NULL) */
static void scale_rows(float *out, const float *d, const float *g, int T, int C) {
    if (!g) {
        memcpy(out, d, (size_t)T * C * sizeof *out);
        return;
    }
    for (int t = 0; t < T; t++)
        for (int j = 0; j < C; j++) out[(size_t)t * C + j] = d[(size_t)t * C + j] * g[j];
}

void mmp_tx_encoder_bwd(const mmp_tx_encoder *e, const float *saved, const int *lens, int nseq, float *dx,
                        const mmp_tx_block_grad *g) {
    const int C = e->C, I = e->inter;
    int T = 0;
    for (int s = 0; s < nseq; s++) T += lens[s];
    if (T == 0) return;
    const size_t TC = (size_t)T * C, na = mmp_tx_attention_att_size(lens, lens, nseq, e->NH);
    float *d1 = mmp_xmalloc(TC * sizeof *d1), *d2 = mmp_xmalloc(TC * sizeof *d2);
    float *dctx = mmp_xmalloc(TC * sizeof *dctx), *dqkv = mmp_xmalloc(3 * TC * sizeof *dqkv);
    float *dF = mmp_xmalloc((size_t)T * I * sizeof *dF), *dG = mmp_xmalloc((size_t)T * I * sizeof *dG);
    static const mmp_tx_block_grad none;
    for (int l = e->layers - 1; l >= 0; l--) {
        const mmp_tx_block *b = &e->block[l];
        const mmp_tx_block_grad *gb = g ? &g[l] : &none;
        slots s = slots_at((float *)saved, l, T, C, I, na);
        const size_t TI = (size_t)T * I;
        if (e->post_ln) {
            /* y = ln2(B), B = X1 + fc2(G), G = act(F), F = fc1(X1); X1 = ln1(A), A = X0 + o(ctx) */
            memset(d1, 0, TC * sizeof *d1); /* dB */
            mmp_tx_layernorm_bwd(d1, gb->ln2_w, gb->ln2_b, dx, s.B, b->ln2_w, s.m2, s.r2, T, C);
            memset(dG, 0, TI * sizeof *dG);
            mmp_tx_linear_bwd(dG, gb->fc2_w, gb->fc2_b, d1, C, s.G, b->fc2_w, T, I, C);
            memset(dF, 0, TI * sizeof *dF);
            mmp_tx_act_bwd(dF, dG, s.F, TI, e->act);
            /* dX1 = dB + fc1's input gradient (in d1) */
            mmp_tx_linear_bwd(d1, gb->fc1_w, gb->fc1_b, dF, I, s.X1, b->fc1_w, T, C, I);
            memset(d2, 0, TC * sizeof *d2); /* dA */
            mmp_tx_layernorm_bwd(d2, gb->ln1_w, gb->ln1_b, d1, s.A, b->ln1_w, s.m1, s.r1, T, C);
            memset(dctx, 0, TC * sizeof *dctx);
            mmp_tx_linear_bwd(dctx, gb->o_w, gb->o_b, d2, C, s.CTX, b->o_w, T, C, C);
            memcpy(dx, d2, TC * sizeof *dx); /* dX0 = dA + the q/k/v input gradients below */
        } else {
            /* y = X1 + M [* ls2], M = fc2(G), G = act(F), F = fc1(B), B = ln2(X1);
             * X1 = X0 + O [* ls1], O = o(ctx), ctx = attn(qkv(A)), A = ln1(X0) */
            ls_grad(gb->ls2, dx, s.M, T, C);
            scale_rows(d1, dx, b->ls2, T, C); /* dM */
            memset(dG, 0, TI * sizeof *dG);
            mmp_tx_linear_bwd(dG, gb->fc2_w, gb->fc2_b, d1, C, s.G, b->fc2_w, T, I, C);
            memset(dF, 0, TI * sizeof *dF);
            mmp_tx_act_bwd(dF, dG, s.F, TI, e->act);
            memset(d2, 0, TC * sizeof *d2); /* dB */
            mmp_tx_linear_bwd(d2, gb->fc1_w, gb->fc1_b, dF, I, s.B, b->fc1_w, T, C, I);
            /* dX1 = dy + ln2's input gradient (in dx) */
            mmp_tx_layernorm_bwd(dx, gb->ln2_w, gb->ln2_b, d2, s.X1, b->ln2_w, s.m2, s.r2, T, C);
            ls_grad(gb->ls1, dx, s.O, T, C);
            scale_rows(d1, dx, b->ls1, T, C); /* dO */
            memset(dctx, 0, TC * sizeof *dctx);
            mmp_tx_linear_bwd(dctx, gb->o_w, gb->o_b, d1, C, s.CTX, b->o_w, T, C, C);
            memset(d2, 0, TC * sizeof *d2); /* dA, from the q/k/v input gradients below */
        }
        memset(dqkv, 0, 3 * TC * sizeof *dqkv);
        mmp_tx_attention_bwd(dqkv, dqkv + C, dqkv + 2 * C, dctx, s.QKV, 3 * C, s.QKV + C, 3 * C, s.QKV + 2 * C, 3 * C,
                             s.ATT, lens, lens, nseq, C, e->NH, e->causal);
        const float *qin = e->post_ln ? s.X0 : s.A;
        float *din = e->post_ln ? dx : d2;
        mmp_tx_linear_bwd(din, gb->q_w, gb->q_b, dqkv, 3 * C, qin, b->q_w, T, C, C);
        mmp_tx_linear_bwd(din, gb->k_w, gb->k_b, dqkv + C, 3 * C, qin, b->k_w, T, C, C);
        mmp_tx_linear_bwd(din, gb->v_w, gb->v_b, dqkv + 2 * C, 3 * C, qin, b->v_w, T, C, C);
        if (!e->post_ln) /* dX0 = dX1 + ln1's input gradient */
            mmp_tx_layernorm_bwd(dx, gb->ln1_w, gb->ln1_b, d2, s.X0, b->ln1_w, s.m1, s.r1, T, C);
    }
    free(d1);
    free(d2);
    free(dctx);
    free(dqkv);
    free(dF);
    free(dG);
}
