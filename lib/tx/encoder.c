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
#include "tx/lora.h"

/* LoRA hooks (tx/lora.h): y[n rows] += the adapter of linear SLOT of block b, if any */
#define LORA(b, slot, y, ldy, x, ldx, n) \
    if ((b)->lora && (b)->lora->slot) mmp_tx_lora_fwd(y, ldy, NULL, x, ldx, NULL, (b)->lora->slot, n)
#define LORA_QKV(b, y_, x, n, C)                      \
    do {                                              \
        LORA(b, q, y_, 3 * (C), x, C, n);             \
        LORA(b, k, (y_) + (C), 3 * (C), x, C, n);     \
        LORA(b, v, (y_) + 2 * (C), 3 * (C), x, C, n); \
        LORA(b, qkv, y_, 3 * (C), x, C, n);           \
    } while (0)

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
    mmp_sgemm_bias(MMP_GEMM_T, T, OC, IC, x, IC, W, IC, b, R, OC, y, OC);
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
    float **sc;   /* per thread [Lmax^2] (cached: [max lens[s] * (past[s] + lens[s])]) */
    float *kc, *vc; /* mmp_tx_encoder_fwd_cached: the cache [layers][rows][maxlen][C], or NULL */
    const int *past; /* positions already in row s's cache */
    int rows, maxlen;
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
            LORA(b, o, h, C, ctx, C, n);
            mmp_tx_layernorm_fwd(x, NULL, NULL, h, b->ln1_w, b->ln1_b, n, C, e->eps);
            lin(f, x, b->fc1_w, b->fc1_b, p1, NULL, n, C, I);
            LORA(b, fc1, f, I, x, C, n);
            mmp_tx_act_fwd(f, f, (size_t)n * I, e->act);
            lin(h, f, b->fc2_w, b->fc2_b, p2, x, n, I, C);
            LORA(b, fc2, h, C, f, I, n);
            mmp_tx_layernorm_fwd(x, NULL, NULL, h, b->ln2_w, b->ln2_b, n, C, e->eps);
        } else {
            /* x += o(ctx) [* ls1]; x += fc2(act(fc1(ln2(x)))) [* ls2] */
            float *x1 = x;
            if (b->ls1) {
                lin(h, ctx, b->o_w, b->o_b, po, NULL, n, C, C);
                LORA(b, o, h, C, ctx, C, n);
                add_scaled(x, h, b->ls1, n, C);
            } else {
                lin(h2, ctx, b->o_w, b->o_b, po, x, n, C, C);
                LORA(b, o, h2, C, ctx, C, n);
                x1 = h2;
            }
            mmp_tx_layernorm_fwd(h, NULL, NULL, x1, b->ln2_w, b->ln2_b, n, C, e->eps);
            lin(f, h, b->fc1_w, b->fc1_b, p1, NULL, n, C, I);
            LORA(b, fc1, f, I, h, C, n);
            mmp_tx_act_fwd(f, f, (size_t)n * I, e->act);
            if (b->ls2) {
                lin(h, f, b->fc2_w, b->fc2_b, p2, NULL, n, I, C);
                LORA(b, fc2, h, C, f, I, n);
                if (x1 != x) memcpy(x, x1, (size_t)n * C * sizeof *x);
                add_scaled(x, h, b->ls2, n, C);
            } else {
                if (x1 == x) memcpy(h2, x, (size_t)n * C * sizeof *x);
                lin(x, f, b->fc2_w, b->fc2_b, p2, h2, n, I, C);
                LORA(b, fc2, x, C, f, I, n);
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
            LORA_QKV(b, qkv, x, n, C);
        } else {
            mmp_tx_layernorm_fwd(h, NULL, NULL, x, b->ln1_w, b->ln1_b, n, C, e->eps);
            qkv_fwd(qkv, h, b, pb, n, C);
            LORA_QKV(b, qkv, h, n, C);
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
        if (R->kc) { /* keys and values of the new rows into the cache, then attention over all of it */
            const int dh = C / NH, P = R->past[s];
            const size_t off = (((size_t)R->layer * R->rows + s) * R->maxlen) * C;
            float *kr = R->kc + off, *vr = R->vc + off;
            for (int hd = 0; hd < NH; hd++, k++) {
                if (k % R->nthreads != tid || L == 0) continue;
                for (int i = 0; i < L; i++) {
                    memcpy(kr + (size_t)(P + i) * C + hd * dh, q + (size_t)i * 3 * C + C + hd * dh, (size_t)dh * sizeof(float));
                    memcpy(vr + (size_t)(P + i) * C + hd * dh, q + (size_t)i * 3 * C + 2 * C + hd * dh, (size_t)dh * sizeof(float));
                }
                mmp_tx_attention_head(R->ctx + (size_t)t0 * C, R->sc[tid], q, 3 * C, kr, C, vr, C, L, P + L, C, NH, hd,
                                      P + 1);
            }
            continue;
        }
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

static void encoder_fwd(const mmp_tx_encoder *e, float *x, const int *lens, int nseq, float *hidden, float *kc,
                        float *vc, const int *past, int maxlen) {
    const int C = e->C, I = e->inter;
    int T = 0;
    size_t scn = 0;
    for (int s = 0; s < nseq; s++) {
        T += lens[s];
        size_t n = (size_t)lens[s] * (size_t)(lens[s] + (past ? past[s] : 0));
        if (n > scn) scn = n;
    }
    if (hidden) memcpy(hidden, x, (size_t)T * C * sizeof *x);
    if (T == 0 || e->layers == 0) return;
    int nt = e->threads > 1 ? e->threads : 1;
    if (nt > T && nt > nseq * e->NH) nt = T > nseq * e->NH ? T : nseq * e->NH;
    fwd_run R = {.e = e, .lens = lens, .nseq = nseq, .T = T, .nthreads = nt, .x = x, .hidden = hidden,
                 .kc = kc, .vc = vc, .past = past, .rows = nseq, .maxlen = maxlen};
    R.h = mmp_xmalloc((size_t)T * C * sizeof(float));
    R.h2 = mmp_xmalloc((size_t)T * C * sizeof(float));
    R.qkv = mmp_xmalloc((size_t)T * 3 * C * sizeof(float));
    R.ctx = mmp_xmalloc((size_t)T * C * sizeof(float));
    R.f = mmp_xmalloc((size_t)T * I * sizeof(float));
    R.sc = mmp_xmalloc((size_t)nt * sizeof *R.sc);
    for (int i = 0; i < nt; i++) R.sc[i] = mmp_xmalloc((scn + 1) * sizeof(float));
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

void mmp_tx_encoder_fwd(const mmp_tx_encoder *e, float *x, const int *lens, int nseq, float *hidden) {
    encoder_fwd(e, x, lens, nseq, hidden, NULL, NULL, NULL, 0);
}


/* ------------------------------------------------------------- training */

/* One block's saved activations (offsets into saved, floats):
 *   X0 [T,C]  block input
 *   A  [T,C]  pre-LN: ln1(X0);  post-LN: ln1's input X0 + o(ctx)
 *   m1, r1 [T] ln1's mean and rstd
 *   QKV [T,3C], ATT [att], CTX [T,C]
 *   O  [T,C]  pre-LN: o(ctx) (LayerScale's gradient); post-LN: zeros
 *   X1 [T,C]  pre-LN: X0 + O [* ls1];  post-LN: ln1(A)
 *   B  [T,C]  pre-LN: ln2(X1);  post-LN: ln2's input X1 + fc2(G)
 *   m2, r2 [T]
 *   F  [T,I]  fc1 output;  G [T,I] act(F)
 *   M  [T,C]  pre-LN: fc2(G); post-LN: zeros */
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

enum { NSLOT = MMP_TX_LORA_NSLOT };

static const mmp_tx_lora *lora_at(const mmp_tx_block *b, int s) { return b->lora ? mmp_tx_lora_slot(b->lora, s) : NULL; }

/* an adapter's saved floats after the blocks': u [T, r], then with dropout the mask [T, IC] */
static size_t lora_floats(const mmp_tx_lora *a, int T) {
    return (size_t)T * a->r + (a->dropout > 0 ? (size_t)T * a->IC : 0);
}

static size_t lora_total(const mmp_tx_encoder *e, int T) {
    size_t n = 0;
    for (int l = 0; l < e->layers; l++)
        for (int s = 0; s < NSLOT; s++)
            if (lora_at(&e->block[l], s)) n += lora_floats(lora_at(&e->block[l], s), T);
    return n;
}

size_t mmp_tx_encoder_saved_size(const mmp_tx_encoder *e, const int *lens, int nseq) {
    int T = 0;
    for (int s = 0; s < nseq; s++) T += lens[s];
    size_t na = mmp_tx_attention_att_size(lens, lens, nseq, e->NH);
    return (size_t)e->layers * layer_floats(T, e->C, e->inter, na) + lora_total(e, T);
}

size_t mmp_tx_encoder_bwd_size(const mmp_tx_encoder *e, const int *lens, int nseq) {
    size_t T = 0, Lmax = 0;
    for (int s = 0; s < nseq; s++) {
        T += (size_t)lens[s];
        Lmax = (size_t)lens[s] > Lmax ? (size_t)lens[s] : Lmax;
    }
    if (T == 0) return 0;
    int nt = e->threads > 1 ? e->threads : 1; /* as train_setup */
    if (nt > (int)T && nt > nseq * e->NH) nt = (int)T > nseq * e->NH ? (int)T : nseq * e->NH;
    size_t rmax = 0;
    for (int l = 0; l < e->layers; l++)
        for (int s = 0; s < NSLOT; s++)
            if (lora_at(&e->block[l], s) && (size_t)lora_at(&e->block[l], s)->r > rmax) rmax = (size_t)lora_at(&e->block[l], s)->r;
    /* d1, d2, d3, dctx [T, C]; dqkv [T, 3C]; dF, dG [T, I]; dS per thread; du per slot */
    return T * (7 * (size_t)e->C + 2 * (size_t)e->inter) + (size_t)nt * (Lmax * Lmax + 1) + (rmax ? NSLOT * (T * rmax + 1) : 0);
}

/* A pool of e->threads threads for the training phases (barriers, like the
 * inference forward's); nt 1 runs the phase on the caller. */
typedef struct tpool tpool;
typedef struct {
    tpool *p;
    int tid;
} tworker;
struct tpool {
    int nt, quit;
    void (*fn)(void *, int);
    void *arg;
    pthread_t *th;
    tworker *w;
    pthread_barrier_t go, done;
};

static void *tpool_thread(void *a) {
    tworker *w = a;
    for (;;) {
        pthread_barrier_wait(&w->p->go);
        if (w->p->quit) break;
        w->p->fn(w->p->arg, w->tid);
        pthread_barrier_wait(&w->p->done);
    }
    return NULL;
}

static void tpool_init(tpool *p, int nt) {
    memset(p, 0, sizeof *p);
    p->nt = nt > 1 ? nt : 1;
    if (p->nt == 1) return;
    pthread_barrier_init(&p->go, NULL, (unsigned)p->nt);
    pthread_barrier_init(&p->done, NULL, (unsigned)p->nt);
    p->th = mmp_xmalloc((size_t)p->nt * sizeof *p->th);
    p->w = mmp_xmalloc((size_t)p->nt * sizeof *p->w);
    for (int i = 1; i < p->nt; i++) {
        p->w[i] = (tworker){p, i};
        if (pthread_create(&p->th[i], NULL, tpool_thread, &p->w[i])) mmp_die("cannot create a thread");
    }
}

static void tpool_run(tpool *p, void (*fn)(void *, int), void *arg) {
    if (p->nt == 1) {
        fn(arg, 0);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    pthread_barrier_wait(&p->go);
    fn(arg, 0);
    pthread_barrier_wait(&p->done);
}

static void tpool_free(tpool *p) {
    if (p->nt > 1) {
        p->quit = 1;
        pthread_barrier_wait(&p->go);
        for (int i = 1; i < p->nt; i++) pthread_join(p->th[i], NULL);
        pthread_barrier_destroy(&p->go);
        pthread_barrier_destroy(&p->done);
    }
    free(p->th);
    free(p->w);
}

/* ---- the decoding step for few new rows (a token per sequence, a few beams):
 * the linears through the GEMM's few-row kernel (each W streamed once; the
 * same bits as in a bigger call) with the columns split among the threads
 * (boundaries multiples of 32: whole panels of the packed weights, and the
 * activation's 8-wide loop meets the same elements: the same bits for any
 * count), the row-local LayerNorms split by rows, the attention by
 * (sequence, head) as above. Pre-LN blocks without LoRA or LayerScale. */
#define SMALL_ROWS 4

typedef struct {
    const mmp_tx_encoder *e;
    const int *lens, *past;
    int nseq, T, nt, maxlen, layer, phase;
    float *x, *h, *h2, *qkv, *ctx, *f, *kc, *vc;
    float **sc;
} small_run;

static int small_ok(const mmp_tx_encoder *e, int T) {
    if (e->post_ln || T > SMALL_ROWS) return 0;
    for (int l = 0; l < e->layers; l++)
        if (e->block[l].lora || e->block[l].ls1 || e->block[l].ls2) return 0;
    return 1;
}

/* [j0, j1) of thread tid over n columns: multiples of 32, the last one n */
static void cols(int n, int tid, int nt, int *j0, int *j1) {
    int b = (n + 31) / 32;
    *j0 = 32 * (int)((long)b * tid / nt);
    *j1 = 32 * (int)((long)b * (tid + 1) / nt);
    if (*j0 > n) *j0 = n;
    if (*j1 > n) *j1 = n;
}

static void small_phase(void *arg, int tid) {
    small_run *R = arg;
    const mmp_tx_encoder *e = R->e;
    const mmp_tx_block *b = &e->block[R->layer];
    const packed_block *pb = e->packed ? &e->packed->b[R->layer] : NULL;
    const int C = e->C, I = e->inter, T = R->T;
    int j0, j1;
    switch (R->phase) {
    case 0: /* h = ln1(x) */
        for (int t = tid; t < T; t += R->nt)
            mmp_tx_layernorm_fwd(R->h + (size_t)t * C, NULL, NULL, R->x + (size_t)t * C, b->ln1_w, b->ln1_b, 1, C, e->eps);
        break;
    case 1: /* qkv = h [q|k|v]^T + b */
        cols(3 * C, tid, R->nt, &j0, &j1);
        if (pb) {
            mmp_sgemm_packed_cols(T, R->h, C, pb->qkv, j0, j1, pb->qkv_b, NULL, 0, MMP_GEMM_ACT_NONE, R->qkv, 3 * C);
            break;
        }
        for (int p = 0; p < 3; p++) {
            const float *W = p == 0 ? b->q_w : p == 1 ? b->k_w : b->v_w, *bb = p == 0 ? b->q_b : p == 1 ? b->k_b : b->v_b;
            int a = j0 > p * C ? j0 - p * C : 0, z = j1 - p * C < C ? j1 - p * C : C;
            if (a < z) mmp_tx_gemv_rows(R->qkv + p * C, 3 * C, R->h, C, W, bb, NULL, 0, T, C, a, z);
        }
        break;
    case 2: { /* keys and values into the cache, attention */
        fwd_run A = {.e = e, .lens = R->lens, .nseq = R->nseq, .T = T, .nthreads = R->nt, .qkv = R->qkv,
                     .ctx = R->ctx, .sc = R->sc, .kc = R->kc, .vc = R->vc, .past = R->past, .rows = R->nseq,
                     .maxlen = R->maxlen, .layer = R->layer};
        attention_phase(&A, tid);
        break;
    }
    case 3: /* h2 = x + ctx o^T + b */
        cols(C, tid, R->nt, &j0, &j1);
        if (pb) mmp_sgemm_packed_cols(T, R->ctx, C, pb->o, j0, j1, b->o_b, R->x, C, MMP_GEMM_ACT_NONE, R->h2, C);
        else mmp_tx_gemv_rows(R->h2, C, R->ctx, C, b->o_w, b->o_b, R->x, C, T, C, j0, j1);
        break;
    case 4: /* h = ln2(h2) */
        for (int t = tid; t < T; t += R->nt)
            mmp_tx_layernorm_fwd(R->h + (size_t)t * C, NULL, NULL, R->h2 + (size_t)t * C, b->ln2_w, b->ln2_b, 1, C, e->eps);
        break;
    case 5: /* f = act(h fc1^T + b) */
        cols(I, tid, R->nt, &j0, &j1);
        if (pb) mmp_sgemm_packed_cols(T, R->h, C, pb->fc1, j0, j1, b->fc1_b, NULL, 0, MMP_GEMM_ACT_NONE, R->f, I);
        else mmp_tx_gemv_rows(R->f, I, R->h, C, b->fc1_w, b->fc1_b, NULL, 0, T, C, j0, j1);
        for (int t = 0; t < T && j1 > j0; t++)
            mmp_tx_act_fwd(R->f + (size_t)t * I + j0, R->f + (size_t)t * I + j0, (size_t)(j1 - j0), e->act);
        break;
    case 6: /* x = h2 + f fc2^T + b */
        cols(C, tid, R->nt, &j0, &j1);
        if (pb) mmp_sgemm_packed_cols(T, R->f, I, pb->fc2, j0, j1, b->fc2_b, R->h2, C, MMP_GEMM_ACT_NONE, R->x, C);
        else mmp_tx_gemv_rows(R->x, C, R->f, I, b->fc2_w, b->fc2_b, R->h2, C, T, I, j0, j1);
        break;
    }
}

static void small_cached(const mmp_tx_encoder *e, float *x, const int *lens, int nseq, int T, float *kc, float *vc,
                         const int *past, int maxlen) {
    const int C = e->C, I = e->inter;
    int nt = e->threads > 1 ? e->threads : 1;
    size_t scn = 1;
    for (int s = 0; s < nseq; s++) {
        size_t n = (size_t)lens[s] * (size_t)(lens[s] + past[s]);
        if (n > scn) scn = n;
    }
    small_run R = {.e = e, .lens = lens, .past = past, .nseq = nseq, .T = T, .nt = nt, .maxlen = maxlen, .x = x,
                   .kc = kc, .vc = vc};
    float *buf = mmp_xmalloc(((size_t)T * (6 * C + I) + (size_t)nt * scn + 1) * sizeof(float));
    R.h = buf, R.h2 = R.h + (size_t)T * C, R.qkv = R.h2 + (size_t)T * C, R.ctx = R.qkv + (size_t)T * 3 * C;
    R.f = R.ctx + (size_t)T * C;
    float *scb = R.f + (size_t)T * I;
    R.sc = mmp_xmalloc((size_t)nt * sizeof *R.sc);
    for (int i = 0; i < nt; i++) R.sc[i] = scb + (size_t)i * scn;
    tpool pool;
    tpool_init(&pool, nt);
    for (int l = 0; l < e->layers; l++)
        for (int ph = 0; ph < 7; ph++) {
            R.layer = l, R.phase = ph;
            tpool_run(&pool, small_phase, &R);
        }
    tpool_free(&pool);
    free(R.sc);
    free(buf);
}

void mmp_tx_encoder_fwd_cached(const mmp_tx_encoder *e, float *x, const int *lens, int nseq, float *kc, float *vc,
                               const int *past, int maxlen) {
    int T = 0;
    for (int s = 0; s < nseq; s++) T += lens[s];
    if (T > 0 && e->layers > 0 && small_ok(e, T)) {
        small_cached(e, x, lens, nseq, T, kc, vc, past, maxlen);
        return;
    }
    encoder_fwd(e, x, lens, nseq, NULL, kc, vc, past, maxlen);
}

/* [n * tid / nt, n * (tid + 1) / nt) */
static int part(int n, int tid, int nt) { return (int)((long)n * tid / nt); }

typedef struct {
    const mmp_tx_encoder *e;
    const mmp_tx_block_grad *g;
    const int *lens;
    int nseq, T, nt, layer, phase;
    size_t na;
    size_t *aoff; /* per sequence: its probabilities' offset in ATT (head 0) */
    int *t0;      /* per sequence: its first row */
    float *saved, *x, *hidden, *dx;
    float *d1, *d2, *d3, *dctx, *dqkv, *dF, *dG; /* backward scratch */
    float **dS;                                     /* per thread [Lmax^2] */
    size_t *loff;                                   /* [layers][NSLOT]: an adapter's u in saved */
    float *du[NSLOT];                               /* backward: scale dy B [T, r] per slot */
} train_run;

static slots tr_slots(const train_run *R) { return slots_at(R->saved, R->layer, R->T, R->e->C, R->e->inter, R->na); }

/* ---- LoRA (tx/lora.h) in the training forward and backward. Rows go with
 * the rows phases; dB is split by its rows (output columns of the linear),
 * dA by its columns (input features), each a sum over all the tokens in
 * order: the same bits for any thread count. */

/* y[rows r0..r0+n) += adapter `s` of the current block over x[those rows]
 * (y, x point at row r0), keeping u and the dropout mask */
static void lora_fwd_rows(const train_run *R, int s, float *y, int ldy, const float *x, int ldx, int r0, int n) {
    const mmp_tx_lora *a = lora_at(&R->e->block[R->layer], s);
    if (!a || n <= 0) return;
    float *u = R->saved + R->loff[R->layer * NSLOT + s], *mask = NULL;
    if (a->dropout > 0) {
        mask = u + (size_t)R->T * a->r;
        for (int t = r0; t < r0 + n; t++)
            mmp_tx_lora_dropout_mask(mask + (size_t)t * a->IC, (size_t)a->IC, a->dropout,
                                     mmp_tx_lora_row_seed(R->e->lora_seed, R->e->layer0 + R->layer, s, t));
        mask += (size_t)r0 * a->IC;
    }
    mmp_tx_lora_fwd(y, ldy, u + (size_t)r0 * a->r, x, ldx, mask, a, n);
}

static const float *lora_mask(const train_run *R, const mmp_tx_lora *a, int s) {
    return a->dropout > 0 ? R->saved + R->loff[R->layer * NSLOT + s] + (size_t)R->T * a->r : NULL;
}

/* rows [r0, r0+n): du = scale dy B; dx += (du A) .* mask (dy, dx: whole matrices) */
static void lora_bwd_rows(const train_run *R, int s, float *dx, int ldx, const float *dy, int ldy, int r0, int n) {
    const mmp_tx_lora *a = lora_at(&R->e->block[R->layer], s);
    if (!a || n <= 0) return;
    const int r = a->r, IC = a->IC;
    float *du = R->du[s] + (size_t)r0 * r;
    mmp_sgemm(MMP_GEMM_N, MMP_GEMM_N, n, r, a->OC, a->scale, dy + (size_t)r0 * ldy, ldy, a->B, r, 0.0f, du, r);
    const float *mask = lora_mask(R, a, s);
    if (!mask) {
        mmp_sgemm(MMP_GEMM_N, MMP_GEMM_N, n, IC, r, 1.0f, du, r, a->A, IC, 1.0f, dx + (size_t)r0 * ldx, ldx);
        return;
    }
    float *g = mmp_xmalloc((size_t)n * IC * sizeof *g);
    mmp_sgemm(MMP_GEMM_N, MMP_GEMM_N, n, IC, r, 1.0f, du, r, a->A, IC, 0.0f, g, IC);
    mask += (size_t)r0 * IC;
    for (int t = 0; t < n; t++)
        for (int i = 0; i < IC; i++) dx[(size_t)(r0 + t) * ldx + i] += g[(size_t)t * IC + i] * mask[(size_t)t * IC + i];
    free(g);
}

static const mmp_tx_lora_grad *lora_grad(const train_run *R, int s) {
    const mmp_tx_block_grad *gb = R->g ? &R->g[R->layer] : NULL;
    return gb && gb->lora ? mmp_tx_lora_grad_slot(gb->lora, s) : NULL;
}

/* this thread's rows of dB: dB[o0:o0+n] += scale dy[:, o0:o0+n]^T u */
static void lora_dB_part(const train_run *R, int s, const float *dy, int ldy, int tid) {
    const mmp_tx_lora *a = lora_at(&R->e->block[R->layer], s);
    const mmp_tx_lora_grad *g = a ? lora_grad(R, s) : NULL;
    if (!g || !g->B) return;
    const int o0 = part(a->OC, tid, R->nt), n = part(a->OC, tid + 1, R->nt) - o0;
    if (n <= 0) return;
    const float *u = R->saved + R->loff[R->layer * NSLOT + s];
    mmp_sgemm(MMP_GEMM_T, MMP_GEMM_N, n, a->r, R->T, a->scale, dy + o0, ldy, u, a->r, 1.0f, g->B + (size_t)o0 * a->r,
              a->r);
}

/* this thread's columns of dA: dA[:, i0:i0+n] += du^T (x .* mask)[:, i0:i0+n] */
static void lora_dA_part(const train_run *R, int s, const float *x, int ldx, int tid) {
    const mmp_tx_lora *a = lora_at(&R->e->block[R->layer], s);
    const mmp_tx_lora_grad *g = a ? lora_grad(R, s) : NULL;
    if (!g || !g->A) return;
    const int IC = a->IC, T = R->T, i0 = part(IC, tid, R->nt), n = part(IC, tid + 1, R->nt) - i0;
    if (n <= 0) return;
    const float *mask = lora_mask(R, a, s);
    if (!mask) {
        mmp_sgemm(MMP_GEMM_T, MMP_GEMM_N, a->r, n, T, 1.0f, R->du[s], a->r, x + i0, ldx, 1.0f, g->A + i0, IC);
        return;
    }
    float *xm = mmp_xmalloc(((size_t)T * n + 1) * sizeof *xm);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < n; i++) xm[(size_t)t * n + i] = x[(size_t)t * ldx + i0 + i] * mask[(size_t)t * IC + i0 + i];
    mmp_sgemm(MMP_GEMM_T, MMP_GEMM_N, a->r, n, T, 1.0f, R->du[s], a->r, xm, n, 1.0f, g->A + i0, IC);
    free(xm);
}

static void lora_qkv_rows(const train_run *R, float *dx, const float *dqkv, int r0, int n, int C) {
    lora_bwd_rows(R, MMP_TX_LORA_Q, dx, C, dqkv, 3 * C, r0, n);
    lora_bwd_rows(R, MMP_TX_LORA_K, dx, C, dqkv + C, 3 * C, r0, n);
    lora_bwd_rows(R, MMP_TX_LORA_V, dx, C, dqkv + 2 * C, 3 * C, r0, n);
    lora_bwd_rows(R, MMP_TX_LORA_QKV, dx, C, dqkv, 3 * C, r0, n);
}
static void lora_qkv_dB(const train_run *R, const float *dqkv, int C, int tid) {
    lora_dB_part(R, MMP_TX_LORA_Q, dqkv, 3 * C, tid);
    lora_dB_part(R, MMP_TX_LORA_K, dqkv + C, 3 * C, tid);
    lora_dB_part(R, MMP_TX_LORA_V, dqkv + 2 * C, 3 * C, tid);
    lora_dB_part(R, MMP_TX_LORA_QKV, dqkv, 3 * C, tid);
}
static void lora_qkv_dA(const train_run *R, const float *x, int C, int tid) {
    lora_dA_part(R, MMP_TX_LORA_Q, x, C, tid);
    lora_dA_part(R, MMP_TX_LORA_K, x, C, tid);
    lora_dA_part(R, MMP_TX_LORA_V, x, C, tid);
    lora_dA_part(R, MMP_TX_LORA_QKV, x, C, tid);
}

/* the attention tasks (sequence, head) k = tid, tid + nt, ...: forward or backward */
static void attn_tasks(train_run *R, int tid, int bwd) {
    const mmp_tx_encoder *e = R->e;
    const int C = e->C, NH = e->NH;
    slots s = tr_slots(R);
    for (int q = 0, k = 0; q < R->nseq; q++) {
        const int L = R->lens[q];
        const size_t r = (size_t)R->t0[q];
        for (int h = 0; h < NH; h++, k++) {
            if (k % R->nt != tid) continue;
            float *P = s.ATT + R->aoff[q] + (size_t)h * L * L;
            const float *qkv = s.QKV + r * 3 * C;
            if (!bwd) {
                mmp_tx_attention_head(s.CTX + r * C, P, qkv, 3 * C, qkv + C, 3 * C, qkv + 2 * C, 3 * C, L, L, C, NH, h,
                                      e->causal);
            } else {
                float *dq = R->dqkv + r * 3 * C;
                mmp_tx_attention_head_bwd(dq, dq + C, dq + 2 * C, R->dS[tid], R->dctx + r * C, qkv, 3 * C, qkv + C,
                                          3 * C, qkv + 2 * C, 3 * C, P, L, L, C, NH, h, e->causal);
            }
        }
    }
}

/* forward phases: 0 rows up to q|k|v, 1 attention, 2 rows from the output projection on */
static void fwd_save_phase(void *arg, int tid) {
    train_run *R = arg;
    const mmp_tx_encoder *e = R->e;
    const int C = e->C, I = e->inter, l = R->layer;
    if (R->phase == 1) {
        attn_tasks(R, tid, 0);
        return;
    }
    const int r0 = part(R->T, tid, R->nt), n = part(R->T, tid + 1, R->nt) - r0;
    if (n <= 0) return;
    const mmp_tx_block *b = &e->block[l];
    const packed_block *pb = e->packed ? &e->packed->b[l] : NULL;
    const mmp_sgemm_pack *po = pb ? pb->o : NULL, *p1 = pb ? pb->fc1 : NULL, *p2 = pb ? pb->fc2 : NULL;
    slots s = tr_slots(R);
    const size_t o = (size_t)r0 * C, oi = (size_t)r0 * I, TC = (size_t)n * C;
    float *x = R->x + o, *X0 = s.X0 + o, *A = s.A + o, *CTX = s.CTX + o, *O = s.O + o, *X1 = s.X1 + o,
          *B = s.B + o, *F = s.F + oi, *G = s.G + oi, *M = s.M + o, *m1 = s.m1 + r0, *r1 = s.r1 + r0,
          *m2 = s.m2 + r0, *r2 = s.r2 + r0, *QKV = s.QKV + 3 * o;
    if (R->phase == 0) {
        memcpy(X0, x, TC * sizeof *x);
        if (e->post_ln) {
            memset(O, 0, TC * sizeof *O); /* not used by post-LN blocks: defined bytes */
            memset(M, 0, TC * sizeof *M);
            qkv_fwd(QKV, X0, b, pb, n, C);
        } else {
            mmp_tx_layernorm_fwd(A, m1, r1, X0, b->ln1_w, b->ln1_b, n, C, e->eps);
            qkv_fwd(QKV, A, b, pb, n, C);
        }
        if (b->lora) {
            const float *in = e->post_ln ? X0 : A;
            lora_fwd_rows(R, MMP_TX_LORA_Q, QKV, 3 * C, in, C, r0, n);
            lora_fwd_rows(R, MMP_TX_LORA_K, QKV + C, 3 * C, in, C, r0, n);
            lora_fwd_rows(R, MMP_TX_LORA_V, QKV + 2 * C, 3 * C, in, C, r0, n);
            lora_fwd_rows(R, MMP_TX_LORA_QKV, QKV, 3 * C, in, C, r0, n);
        }
        return;
    }
    if (e->post_ln) {
        lin(A, CTX, b->o_w, b->o_b, po, X0, n, C, C);
        lora_fwd_rows(R, MMP_TX_LORA_O, A, C, CTX, C, r0, n);
        mmp_tx_layernorm_fwd(X1, m1, r1, A, b->ln1_w, b->ln1_b, n, C, e->eps);
        lin(F, X1, b->fc1_w, b->fc1_b, p1, NULL, n, C, I);
        lora_fwd_rows(R, MMP_TX_LORA_FC1, F, I, X1, C, r0, n);
        mmp_tx_act_fwd(G, F, (size_t)n * I, e->act);
        lin(B, G, b->fc2_w, b->fc2_b, p2, X1, n, I, C);
        lora_fwd_rows(R, MMP_TX_LORA_FC2, B, C, G, I, r0, n);
        mmp_tx_layernorm_fwd(x, m2, r2, B, b->ln2_w, b->ln2_b, n, C, e->eps);
    } else {
        /* the adapters are added where the inference forward adds them (the same bits) */
        lin(O, CTX, b->o_w, b->o_b, po, NULL, n, C, C);
        memcpy(X1, X0, TC * sizeof *x);
        if (b->ls1) {
            lora_fwd_rows(R, MMP_TX_LORA_O, O, C, CTX, C, r0, n);
            add_scaled(X1, O, b->ls1, n, C);
        } else {
            for (size_t i = 0; i < TC; i++) X1[i] = O[i] + X1[i];
            lora_fwd_rows(R, MMP_TX_LORA_O, X1, C, CTX, C, r0, n);
        }
        mmp_tx_layernorm_fwd(B, m2, r2, X1, b->ln2_w, b->ln2_b, n, C, e->eps);
        lin(F, B, b->fc1_w, b->fc1_b, p1, NULL, n, C, I);
        lora_fwd_rows(R, MMP_TX_LORA_FC1, F, I, B, C, r0, n);
        mmp_tx_act_fwd(G, F, (size_t)n * I, e->act);
        lin(M, G, b->fc2_w, b->fc2_b, p2, NULL, n, I, C);
        memcpy(x, X1, TC * sizeof *x);
        if (b->ls2) {
            lora_fwd_rows(R, MMP_TX_LORA_FC2, M, C, G, I, r0, n);
            add_scaled(x, M, b->ls2, n, C);
        } else {
            for (size_t i = 0; i < TC; i++) x[i] = M[i] + x[i];
            lora_fwd_rows(R, MMP_TX_LORA_FC2, x, C, G, I, r0, n);
        }
    }
    if (R->hidden) memcpy(R->hidden + (size_t)(l + 1) * R->T * C + o, x, TC * sizeof *x);
}

static void train_setup(train_run *R, const mmp_tx_encoder *e, const int *lens, int nseq, float *saved) {
    memset(R, 0, sizeof *R);
    R->e = e, R->lens = lens, R->nseq = nseq, R->saved = saved;
    R->aoff = mmp_xmalloc(((size_t)nseq + 1) * sizeof *R->aoff);
    R->t0 = mmp_xmalloc(((size_t)nseq + 1) * sizeof *R->t0);
    size_t a = 0;
    for (int s = 0; s < nseq; s++) {
        R->aoff[s] = a, R->t0[s] = R->T;
        a += (size_t)e->NH * lens[s] * lens[s];
        R->T += lens[s];
    }
    R->na = a;
    R->loff = mmp_xmalloc(((size_t)e->layers * NSLOT + 1) * sizeof *R->loff);
    size_t lo = (size_t)e->layers * layer_floats(R->T, e->C, e->inter, a);
    for (int l = 0; l < e->layers; l++)
        for (int s = 0; s < NSLOT; s++) {
            const mmp_tx_lora *ad = lora_at(&e->block[l], s);
            R->loff[l * NSLOT + s] = lo;
            if (ad) lo += lora_floats(ad, R->T);
        }
    int nt = e->threads > 1 ? e->threads : 1;
    if (nt > R->T && nt > nseq * e->NH) nt = R->T > nseq * e->NH ? R->T : nseq * e->NH;
    R->nt = nt;
}

void mmp_tx_encoder_fwd_save(const mmp_tx_encoder *e, float *x, const int *lens, int nseq, float *hidden,
                             float *saved) {
    train_run R;
    train_setup(&R, e, lens, nseq, saved);
    R.x = x, R.hidden = hidden;
    if (hidden) memcpy(hidden, x, (size_t)R.T * e->C * sizeof *x);
    if (R.T > 0) {
        tpool pool;
        tpool_init(&pool, R.nt);
        for (int l = 0; l < e->layers; l++)
            for (int ph = 0; ph < 3; ph++) {
                R.layer = l, R.phase = ph;
                tpool_run(&pool, fwd_save_phase, &R);
            }
        tpool_free(&pool);
    }
    free(R.aoff);
    free(R.t0);
    free(R.loff);
}

/* ---- backward pieces: rows of input gradients, output columns of parameter gradients */

/* out = d * g[C] per row (a copy when g is NULL) */
static void scale_rows(float *out, const float *d, const float *g, int T, int C) {
    if (T <= 0) return;
    if (!g) {
        memcpy(out, d, (size_t)T * C * sizeof *out);
        return;
    }
    for (int t = 0; t < T; t++)
        for (int j = 0; j < C; j++) out[(size_t)t * C + j] = d[(size_t)t * C + j] * g[j];
}

/* dx[r0:r0+n] += dy[r0:r0+n] W  (W [OC, IC]) */
static void bwd_rows(float *dx, const float *dy, int ldy, const float *W, int r0, int n, int IC, int OC) {
    if (n > 0)
        mmp_sgemm(MMP_GEMM_N, MMP_GEMM_N, n, IC, OC, 1.0f, dy + (size_t)r0 * ldy, ldy, W, IC, 1.0f,
                  dx + (size_t)r0 * IC, IC);
}

/* dW[o0:o0+n] += dy[:, o0:o0+n]^T x; db[o0:o0+n] += sum_t dy[t, o0:o0+n] (t in order) */
static void bwd_params(float *dW, float *db, const float *dy, int ldy, const float *x, int o0, int n, int T, int IC) {
    if (n <= 0) return;
    if (dW)
        mmp_sgemm(MMP_GEMM_T, MMP_GEMM_N, n, IC, T, 1.0f, dy + o0, ldy, x, IC, 1.0f, dW + (size_t)o0 * IC, IC);
    if (db)
        for (int t = 0; t < T; t++) {
            const float *d = dy + (size_t)t * ldy + o0;
            for (int j = 0; j < n; j++) db[o0 + j] += d[j];
        }
}

/* LayerNorm's dw, db over columns [j0, j0+n) (rows in order: the bits of mmp_tx_layernorm_bwd) */
static void ln_params(float *dw, float *db, const float *dy, const float *x, const float *mean, const float *rstd,
                      int j0, int n, int T, int C) {
    if (n <= 0 || (!dw && !db)) return;
    for (int t = 0; t < T; t++) {
        const float *xi = x + (size_t)t * C, *di = dy + (size_t)t * C;
        const float mu = mean[t], rs = rstd[t];
        for (int j = j0; j < j0 + n; j++) {
            float xh = (xi[j] - mu) * rs;
            if (dw) dw[j] += di[j] * xh;
            if (db) db[j] += di[j];
        }
    }
}

/* LayerNorm's input gradient for rows [r0, r0+n) */
static void ln_rows(float *dx, const float *dy, const float *x, const float *w, const float *mean, const float *rstd,
                    int r0, int n, int C) {
    if (n > 0)
        mmp_tx_layernorm_bwd(dx + (size_t)r0 * C, NULL, NULL, dy + (size_t)r0 * C, x + (size_t)r0 * C, w, mean + r0,
                             rstd + r0, n, C);
}

static void bwd_phase(void *arg, int tid) {
    train_run *R = arg;
    const mmp_tx_encoder *e = R->e;
    const int C = e->C, I = e->inter, T = R->T, nt = R->nt, l = R->layer;
    const mmp_tx_block *b = &e->block[l];
    static const mmp_tx_block_grad none;
    const mmp_tx_block_grad *gb = R->g ? &R->g[l] : &none;
    slots s = tr_slots(R);
    /* this thread's rows [r0, r0+n), columns of C [c0, c0+nc), of I [i0, i0+ni) */
    const int r0 = part(T, tid, nt), n = part(T, tid + 1, nt) - r0;
    const int c0 = part(C, tid, nt), nc = part(C, tid + 1, nt) - c0;
    const int i0 = part(I, tid, nt), ni = part(I, tid + 1, nt) - i0;
    const size_t o = (size_t)r0 * C, oi = (size_t)r0 * I;
    float *dx = R->dx, *d1 = R->d1, *d2 = R->d2, *d3 = R->d3, *dctx = R->dctx, *dqkv = R->dqkv, *dF = R->dF,
          *dG = R->dG;
    if (e->post_ln) {
        /* y = ln2(B), B = X1 + fc2(G), G = act(F), F = fc1(X1); X1 = ln1(A), A = X0 + o(ctx) */
        switch (R->phase) {
        case 0: /* dB (d1) rows; ln2's parameters */
            memset(d1 + o, 0, (size_t)n * C * sizeof *d1);
            ln_rows(d1, dx, s.B, b->ln2_w, s.m2, s.r2, r0, n, C);
            ln_params(gb->ln2_w, gb->ln2_b, dx, s.B, s.m2, s.r2, c0, nc, T, C);
            break;
        case 1: /* rows: dG, dF, dX1 (d1 += ...), dA (d2), dctx; fc2's parameters */
            memset(dG + oi, 0, (size_t)n * I * sizeof *dG);
            bwd_rows(dG, d1, C, b->fc2_w, r0, n, I, C);
            lora_bwd_rows(R, MMP_TX_LORA_FC2, dG, I, d1, C, r0, n);
            memset(dF + oi, 0, (size_t)n * I * sizeof *dF);
            if (n > 0) mmp_tx_act_bwd(dF + oi, dG + oi, s.F + oi, (size_t)n * I, e->act);
            bwd_params(gb->fc2_w, gb->fc2_b, d1, C, s.G, c0, nc, T, I);
            lora_dB_part(R, MMP_TX_LORA_FC2, d1, C, tid);
            /* d1 is read by fc2's parameters above on other threads: dX1 goes to d3 */
            memcpy(d3 + o, d1 + o, (size_t)n * C * sizeof *d3);
            bwd_rows(d3, dF, I, b->fc1_w, r0, n, C, I);
            lora_bwd_rows(R, MMP_TX_LORA_FC1, d3, C, dF, I, r0, n);
            memset(d2 + o, 0, (size_t)n * C * sizeof *d2);
            ln_rows(d2, d3, s.A, b->ln1_w, s.m1, s.r1, r0, n, C);
            memset(dctx + o, 0, (size_t)n * C * sizeof *dctx);
            bwd_rows(dctx, d2, C, b->o_w, r0, n, C, C);
            lora_bwd_rows(R, MMP_TX_LORA_O, dctx, C, d2, C, r0, n);
            memset(dqkv + 3 * o, 0, (size_t)n * 3 * C * sizeof *dqkv);
            break;
        case 2: /* attention; fc1's, ln1's, o's parameters; the adapters' of fc2, fc1, o */
            attn_tasks(R, tid, 1);
            bwd_params(gb->fc1_w, gb->fc1_b, dF, I, s.X1, i0, ni, T, C);
            ln_params(gb->ln1_w, gb->ln1_b, d3, s.A, s.m1, s.r1, c0, nc, T, C);
            bwd_params(gb->o_w, gb->o_b, d2, C, s.CTX, c0, nc, T, C);
            lora_dA_part(R, MMP_TX_LORA_FC2, s.G, I, tid);
            lora_dB_part(R, MMP_TX_LORA_FC1, dF, I, tid);
            lora_dA_part(R, MMP_TX_LORA_FC1, s.X1, C, tid);
            lora_dB_part(R, MMP_TX_LORA_O, d2, C, tid);
            lora_dA_part(R, MMP_TX_LORA_O, s.CTX, C, tid);
            break;
        case 3: /* dX0 = dA + the q/k/v input gradients; their parameters */
            memcpy(dx + o, d2 + o, (size_t)n * C * sizeof *dx);
            bwd_rows(dx, dqkv, 3 * C, b->q_w, r0, n, C, C);
            bwd_rows(dx, dqkv + C, 3 * C, b->k_w, r0, n, C, C);
            bwd_rows(dx, dqkv + 2 * C, 3 * C, b->v_w, r0, n, C, C);
            lora_qkv_rows(R, dx, dqkv, r0, n, C);
            bwd_params(gb->q_w, gb->q_b, dqkv, 3 * C, s.X0, c0, nc, T, C);
            bwd_params(gb->k_w, gb->k_b, dqkv + C, 3 * C, s.X0, c0, nc, T, C);
            bwd_params(gb->v_w, gb->v_b, dqkv + 2 * C, 3 * C, s.X0, c0, nc, T, C);
            lora_qkv_dB(R, dqkv, C, tid);
            break;
        case 4: /* the q/k/v adapters' dA */
            lora_qkv_dA(R, s.X0, C, tid);
            break;
        }
        return;
    }
    /* y = X1 + M [* ls2], M = fc2(G), G = act(F), F = fc1(B), B = ln2(X1);
     * X1 = X0 + O [* ls1], O = o(ctx), ctx = attn(qkv(A)), A = ln1(X0) */
    switch (R->phase) {
    case 0: /* rows: dM (d1), dG, dF, dB (d2); LayerScale 2 */
        scale_rows(d1 + o, dx + o, b->ls2, n, C);
        memset(dG + oi, 0, (size_t)n * I * sizeof *dG);
        bwd_rows(dG, d1, C, b->fc2_w, r0, n, I, C);
        lora_bwd_rows(R, MMP_TX_LORA_FC2, dG, I, d1, C, r0, n);
        memset(dF + oi, 0, (size_t)n * I * sizeof *dF);
        if (n > 0) mmp_tx_act_bwd(dF + oi, dG + oi, s.F + oi, (size_t)n * I, e->act);
        memset(d2 + o, 0, (size_t)n * C * sizeof *d2);
        bwd_rows(d2, dF, I, b->fc1_w, r0, n, C, I);
        lora_bwd_rows(R, MMP_TX_LORA_FC1, d2, C, dF, I, r0, n);
        if (gb->ls2 && nc > 0)
            for (int t = 0; t < T; t++)
                for (int j = c0; j < c0 + nc; j++) gb->ls2[j] += dx[(size_t)t * C + j] * s.M[(size_t)t * C + j];
        break;
    case 1: /* rows: dX1 (dx += ...), dO (d3), dctx; fc2's, fc1's, ln2's parameters */
        ln_rows(dx, d2, s.X1, b->ln2_w, s.m2, s.r2, r0, n, C);
        scale_rows(d3 + o, dx + o, b->ls1, n, C);
        memset(dctx + o, 0, (size_t)n * C * sizeof *dctx);
        bwd_rows(dctx, d3, C, b->o_w, r0, n, C, C);
        lora_bwd_rows(R, MMP_TX_LORA_O, dctx, C, d3, C, r0, n);
        memset(dqkv + 3 * o, 0, (size_t)n * 3 * C * sizeof *dqkv);
        bwd_params(gb->fc2_w, gb->fc2_b, d1, C, s.G, c0, nc, T, I);
        bwd_params(gb->fc1_w, gb->fc1_b, dF, I, s.B, i0, ni, T, C);
        ln_params(gb->ln2_w, gb->ln2_b, d2, s.X1, s.m2, s.r2, c0, nc, T, C);
        lora_dB_part(R, MMP_TX_LORA_FC2, d1, C, tid);
        lora_dA_part(R, MMP_TX_LORA_FC2, s.G, I, tid);
        lora_dB_part(R, MMP_TX_LORA_FC1, dF, I, tid);
        lora_dA_part(R, MMP_TX_LORA_FC1, s.B, C, tid);
        break;
    case 2: /* attention; LayerScale 1, o's parameters */
        attn_tasks(R, tid, 1);
        if (gb->ls1 && nc > 0)
            for (int t = 0; t < T; t++)
                for (int j = c0; j < c0 + nc; j++) gb->ls1[j] += dx[(size_t)t * C + j] * s.O[(size_t)t * C + j];
        bwd_params(gb->o_w, gb->o_b, d3, C, s.CTX, c0, nc, T, C);
        lora_dB_part(R, MMP_TX_LORA_O, d3, C, tid);
        lora_dA_part(R, MMP_TX_LORA_O, s.CTX, C, tid);
        break;
    case 3: /* rows: dA (d2), dX0 (dx += ...); q/k/v's parameters */
        memset(d2 + o, 0, (size_t)n * C * sizeof *d2);
        bwd_rows(d2, dqkv, 3 * C, b->q_w, r0, n, C, C);
        bwd_rows(d2, dqkv + C, 3 * C, b->k_w, r0, n, C, C);
        bwd_rows(d2, dqkv + 2 * C, 3 * C, b->v_w, r0, n, C, C);
        lora_qkv_rows(R, d2, dqkv, r0, n, C);
        ln_rows(dx, d2, s.X0, b->ln1_w, s.m1, s.r1, r0, n, C);
        bwd_params(gb->q_w, gb->q_b, dqkv, 3 * C, s.A, c0, nc, T, C);
        bwd_params(gb->k_w, gb->k_b, dqkv + C, 3 * C, s.A, c0, nc, T, C);
        bwd_params(gb->v_w, gb->v_b, dqkv + 2 * C, 3 * C, s.A, c0, nc, T, C);
        lora_qkv_dB(R, dqkv, C, tid);
        break;
    case 4: /* ln1's parameters; the q/k/v adapters' dA */
        ln_params(gb->ln1_w, gb->ln1_b, d2, s.X0, s.m1, s.r1, c0, nc, T, C);
        lora_qkv_dA(R, s.A, C, tid);
        break;
    }
}

void mmp_tx_encoder_bwd(const mmp_tx_encoder *e, const float *saved, const int *lens, int nseq, float *dx,
                        const mmp_tx_block_grad *g) {
    train_run R;
    train_setup(&R, e, lens, nseq, (float *)saved);
    const int C = e->C, I = e->inter, T = R.T;
    if (T > 0) {
        const size_t TC = (size_t)T * C;
        int Lmax = 0;
        for (int s = 0; s < nseq; s++) Lmax = lens[s] > Lmax ? lens[s] : Lmax;
        R.g = g, R.dx = dx;
        R.d1 = mmp_xmalloc(TC * sizeof(float));
        R.d2 = mmp_xmalloc(TC * sizeof(float));
        R.d3 = mmp_xmalloc(TC * sizeof(float));
        R.dctx = mmp_xmalloc(TC * sizeof(float));
        R.dqkv = mmp_xmalloc(3 * TC * sizeof(float));
        R.dF = mmp_xmalloc((size_t)T * I * sizeof(float));
        R.dG = mmp_xmalloc((size_t)T * I * sizeof(float));
        R.dS = mmp_xmalloc((size_t)R.nt * sizeof *R.dS);
        for (int i = 0; i < R.nt; i++) R.dS[i] = mmp_xmalloc(((size_t)Lmax * Lmax + 1) * sizeof(float));
        int rmax = 0;
        for (int l = 0; l < e->layers; l++)
            for (int s = 0; s < NSLOT; s++)
                if (lora_at(&e->block[l], s) && lora_at(&e->block[l], s)->r > rmax) rmax = lora_at(&e->block[l], s)->r;
        for (int s = 0; s < NSLOT && rmax; s++) R.du[s] = mmp_xmalloc(((size_t)T * rmax + 1) * sizeof(float));
        tpool pool;
        tpool_init(&pool, R.nt);
        /* post-LN blocks: phase 4 is the q/k/v adapters' dA only (none without adapters) */
        const int nph = e->post_ln && rmax == 0 ? 4 : 5;
        for (int l = e->layers - 1; l >= 0; l--)
            for (int ph = 0; ph < nph; ph++) {
                R.layer = l, R.phase = ph;
                tpool_run(&pool, bwd_phase, &R);
            }
        tpool_free(&pool);
        for (int i = 0; i < R.nt; i++) free(R.dS[i]);
        free(R.dS);
        free(R.d1), free(R.d2), free(R.d3), free(R.dctx), free(R.dqkv), free(R.dF), free(R.dG);
        for (int s = 0; s < NSLOT; s++) free(R.du[s]);
    }
    free(R.aoff);
    free(R.t0);
    free(R.loff);
}
