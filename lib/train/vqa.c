/* train/vqa.c: the VQA models (train/vqa.h) on the transformer engine's
 * layers (tx/tx.h): linears, LayerNorm, GELU and the packed multi-head
 * attention with different query and key/value lengths. */
#include "train/vqa.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "rng.h"
#include "train/layers.h"
#include "tx/tx.h"

#define EPS 1e-5f

typedef struct {
    mmp_param *ln1w, *ln1b, *inw, *inb, *ow, *ob, *ln2w, *ln2b, *f1w, *f1b, *f2w, *f2b;
} lparams;

typedef struct {
    float *xin, *a, *m1, *r1, *q, *kv, *att, *ctx, *x1, *b, *m2, *r2, *hpre, *h;
} lsaved;

/* an image self-attention layer: nn.TransformerEncoderLayer(norm_first=True, activation="gelu") */
typedef struct {
    mmp_param *inw, *inb, *ow, *ob, *f1w, *f1b, *f2w, *f2b, *n1w, *n1b, *n2w, *n2b;
} eparams;

typedef struct {
    float *hin, *a, *m1, *r1, *qkv, *att, *ctx, *h1, *b, *m2, *r2, *u, *g;
} esaved;

struct mmp_vqa {
    mmp_vqa_config c;
    int np;
    mmp_param *p;
    mmp_param *ipw, *ipb, *pos, *inw, *inb, *qpw, *qpb, *nw, *nb, *c0w, *c0b, *c2w, *c2b;
    lparams *lp;
    eparams *ep;
    /* the last forward */
    int B, Tq, Tk;
    int *qlens, *kvlens;
    const float *xi, *xq;
    float *kvpre, *kv, *km, *kr, *xL, *fn, *fm, *fr, *pooled, *z;
    lsaved *ls;
    esaved *es;
};

static mmp_param *add(mmp_vqa *m, const char *name, int ndim, int64_t d0, int64_t d1) {
    int64_t shape[2] = {d0, d1};
    mmp_param *p = &m->p[m->np++];
    mmp_param_init(p, name, ndim, shape, 1);
    return p;
}

mmp_vqa *mmp_vqa_new(const mmp_vqa_config *c, char *err, size_t errlen) {
    if (c->Ci < 1 || c->Cq < 1 || c->K < 1 || c->hidden < 1) {
        mmp_errf(err, errlen, "vqa: bad sizes (image tokens %d, question tokens %d, answers %d, hidden %d)", c->Ci, c->Cq,
                 c->K, c->hidden);
        return NULL;
    }
    if (!c->pooled && (c->D < 1 || c->NH < 1 || c->L < 0 || c->IL < 0 || c->D % c->NH || c->npos < 0)) {
        mmp_errf(err, errlen, "vqa: --vqa-dim %d must be a multiple of --heads %d (both >= 1)", c->D, c->NH);
        return NULL;
    }
    mmp_vqa *m = mmp_xcalloc(1, sizeof *m);
    m->c = *c;
    const int D = c->D, I = 4 * c->D;
    m->p = mmp_xcalloc((size_t)(16 + 12 * (c->pooled ? 0 : c->L + c->IL)), sizeof(mmp_param));
    if (!c->pooled) {
        char nm[128];
        m->ipw = add(m, "img_proj.weight", 2, D, c->Ci);
        m->ipb = add(m, "img_proj.bias", 1, D, 0);
        if (c->npos) m->pos = add(m, "img_pos", 2, c->npos, D);
        m->ep = mmp_xcalloc((size_t)(c->IL ? c->IL : 1), sizeof(eparams));
        m->es = mmp_xcalloc((size_t)(c->IL ? c->IL : 1), sizeof(esaved));
        for (int l = 0; l < c->IL; l++) {
            eparams *q = &m->ep[l];
#define P(field, suffix, nd, a, b) (snprintf(nm, sizeof nm, "img_layers.%d.%s", l, suffix), q->field = add(m, nm, nd, a, b))
            P(inw, "self_attn.in_proj_weight", 2, 3 * D, D);
            P(inb, "self_attn.in_proj_bias", 1, 3 * D, 0);
            P(ow, "self_attn.out_proj.weight", 2, D, D);
            P(ob, "self_attn.out_proj.bias", 1, D, 0);
            P(f1w, "linear1.weight", 2, I, D);
            P(f1b, "linear1.bias", 1, I, 0);
            P(f2w, "linear2.weight", 2, D, I);
            P(f2b, "linear2.bias", 1, D, 0);
            P(n1w, "norm1.weight", 1, D, 0);
            P(n1b, "norm1.bias", 1, D, 0);
            P(n2w, "norm2.weight", 1, D, 0);
            P(n2b, "norm2.bias", 1, D, 0);
#undef P
        }
        m->inw = add(m, "img_norm.weight", 1, D, 0);
        m->inb = add(m, "img_norm.bias", 1, D, 0);
        m->qpw = add(m, "q_proj.weight", 2, D, c->Cq);
        m->qpb = add(m, "q_proj.bias", 1, D, 0);
        m->lp = mmp_xcalloc((size_t)(c->L ? c->L : 1), sizeof(lparams));
        m->ls = mmp_xcalloc((size_t)(c->L ? c->L : 1), sizeof(lsaved));
        for (int l = 0; l < c->L; l++) {
            lparams *q = &m->lp[l];
#define P(field, suffix, nd, a, b) (snprintf(nm, sizeof nm, "layers.%d.%s", l, suffix), q->field = add(m, nm, nd, a, b))
            P(ln1w, "ln1.weight", 1, D, 0);
            P(ln1b, "ln1.bias", 1, D, 0);
            P(inw, "attn.in_proj_weight", 2, 3 * D, D);
            P(inb, "attn.in_proj_bias", 1, 3 * D, 0);
            P(ow, "attn.out_proj.weight", 2, D, D);
            P(ob, "attn.out_proj.bias", 1, D, 0);
            P(ln2w, "ln2.weight", 1, D, 0);
            P(ln2b, "ln2.bias", 1, D, 0);
            P(f1w, "mlp.0.weight", 2, I, D);
            P(f1b, "mlp.0.bias", 1, I, 0);
            P(f2w, "mlp.2.weight", 2, D, I);
            P(f2b, "mlp.2.bias", 1, D, 0);
#undef P
        }
        m->nw = add(m, "norm.weight", 1, D, 0);
        m->nb = add(m, "norm.bias", 1, D, 0);
    }
    int in = c->pooled ? c->Ci + c->Cq : D;
    m->c0w = add(m, "classifier.0.weight", 2, c->hidden, in);
    m->c0b = add(m, "classifier.0.bias", 1, c->hidden, 0);
    m->c2w = add(m, "classifier.2.weight", 2, c->K, c->hidden);
    m->c2b = add(m, "classifier.2.bias", 1, c->K, 0);
    return m;
}

const mmp_vqa_config *mmp_vqa_cfg(const mmp_vqa *m) { return &m->c; }

mmp_param *mmp_vqa_params(mmp_vqa *m, int *np) {
    *np = m->np;
    return m->p;
}

mmp_param *mmp_vqa_param(mmp_vqa *m, const char *name) {
    for (int i = 0; i < m->np; i++)
        if (!strcmp(m->p[i].name, name)) return &m->p[i];
    return NULL;
}

static void free_saved(mmp_vqa *m) {
    free(m->qlens), free(m->kvlens);
    m->qlens = m->kvlens = NULL;
    free(m->kvpre), free(m->kv), free(m->km), free(m->kr), free(m->xL), free(m->fn), free(m->fm), free(m->fr);
    free(m->pooled), free(m->z);
    m->kvpre = m->kv = m->km = m->kr = m->xL = m->fn = m->fm = m->fr = m->pooled = m->z = NULL;
    for (int l = 0; m->ls && l < m->c.L; l++) {
        lsaved *s = &m->ls[l];
        float **f[] = {&s->xin, &s->a, &s->m1, &s->r1, &s->q, &s->kv, &s->att, &s->ctx, &s->x1, &s->b, &s->m2, &s->r2, &s->hpre, &s->h};
        for (size_t k = 0; k < sizeof f / sizeof *f; k++) free(*f[k]), *f[k] = NULL;
    }
    for (int l = 0; m->es && l < m->c.IL; l++) {
        esaved *s = &m->es[l];
        float **f[] = {&s->hin, &s->a, &s->m1, &s->r1, &s->qkv, &s->att, &s->ctx, &s->h1, &s->b, &s->m2, &s->r2, &s->u, &s->g};
        for (size_t k = 0; k < sizeof f / sizeof *f; k++) free(*f[k]), *f[k] = NULL;
    }
}

void mmp_vqa_free(mmp_vqa *m) {
    if (!m) return;
    free_saved(m);
    for (int i = 0; i < m->np; i++) mmp_param_free(&m->p[i]);
    free(m->p);
    free(m->lp);
    free(m->ls);
    free(m->ep);
    free(m->es);
    free(m);
}

static void uniform(mmp_rng *r, float *w, size_t n, double bound) {
    for (size_t i = 0; i < n; i++) w[i] = (float)mmp_rng_range(r, -bound, bound);
}

static void init_linear(mmp_rng *r, mmp_param *w, mmp_param *b) {
    double bound = 1.0 / sqrt((double)w->shape[1]);
    uniform(r, w->w, w->n, bound);
    if (b) uniform(r, b->w, b->n, bound);
}

static void init_ln(mmp_param *w, mmp_param *b) {
    for (size_t i = 0; i < w->n; i++) w->w[i] = 1.0f, b->w[i] = 0.0f;
}

void mmp_vqa_init_weights(mmp_vqa *m, uint64_t seed) {
    mmp_rng r;
    mmp_rng_seed(&r, mmp_rng_derive(seed, 0x7651, 0));
    if (!m->c.pooled) {
        init_linear(&r, m->ipw, m->ipb);
        if (m->pos) {
            mmp_rng_pair g;
            mmp_rng_pair_seed(&g, mmp_rng_derive(seed, 0x7651, 1));
            for (size_t i = 0; i < m->pos->n; i++) m->pos->w[i] = (float)(0.02 * mmp_rng_normal_pair(&g));
        }
        const int D = m->c.D;
        for (int l = 0; l < m->c.IL; l++) {
            eparams *q = &m->ep[l];
            uniform(&r, q->inw->w, q->inw->n, sqrt(6.0 / (D + 3.0 * D)));
            memset(q->inb->w, 0, sizeof(float) * q->inb->n);
            init_linear(&r, q->ow, NULL);
            memset(q->ob->w, 0, sizeof(float) * q->ob->n);
            init_linear(&r, q->f1w, q->f1b);
            init_linear(&r, q->f2w, q->f2b);
            init_ln(q->n1w, q->n1b);
            init_ln(q->n2w, q->n2b);
        }
        init_ln(m->inw, m->inb);
        init_linear(&r, m->qpw, m->qpb);
        for (int l = 0; l < m->c.L; l++) {
            lparams *q = &m->lp[l];
            init_ln(q->ln1w, q->ln1b);
            uniform(&r, q->inw->w, q->inw->n, sqrt(6.0 / (D + 3.0 * D))); /* xavier_uniform_ on [3D, D] */
            memset(q->inb->w, 0, sizeof(float) * q->inb->n);
            init_linear(&r, q->ow, NULL);
            memset(q->ob->w, 0, sizeof(float) * q->ob->n);
            init_ln(q->ln2w, q->ln2b);
            init_linear(&r, q->f1w, q->f1b);
            init_linear(&r, q->f2w, q->f2b);
        }
        init_ln(m->nw, m->nb);
    }
    init_linear(&r, m->c0w, m->c0b);
    init_linear(&r, m->c2w, m->c2b);
}

static float *fa(size_t n) { return mmp_xcalloc(n ? n : 1, sizeof(float)); }

/* the classifier on u [B, in] -> logits, keeping z (post-ReLU) */
static void classify(mmp_vqa *m, const float *u, int in, float *logits) {
    const int B = m->B, H = m->c.hidden;
    m->z = fa((size_t)B * H);
    mmp_tx_linear_fwd(m->z, H, u, m->c0w->w, m->c0b->w, B, in, H);
    for (size_t i = 0; i < (size_t)B * H; i++) m->z[i] = m->z[i] > 0 ? m->z[i] : 0.0f;
    mmp_tx_linear_fwd(logits, m->c.K, m->z, m->c2w->w, m->c2b->w, B, H, m->c.K);
}

void mmp_vqa_forward(mmp_vqa *m, const float *xi, const int *kvlens, const float *xq, const int *qlens, int B,
                     float *logits) {
    free_saved(m);
    const mmp_vqa_config *c = &m->c;
    const int D = c->D, I = 4 * c->D;
    m->B = B;
    m->xi = xi, m->xq = xq;
    m->qlens = mmp_xmalloc(sizeof(int) * (size_t)(B ? B : 1));
    m->kvlens = mmp_xmalloc(sizeof(int) * (size_t)(B ? B : 1));
    memcpy(m->qlens, qlens, sizeof(int) * (size_t)B);
    memcpy(m->kvlens, kvlens, sizeof(int) * (size_t)B);
    int Tq = 0, Tk = 0;
    for (int b = 0; b < B; b++) Tq += qlens[b], Tk += kvlens[b];
    m->Tq = Tq, m->Tk = Tk;
    if (c->pooled) {
        const int in = c->Ci + c->Cq;
        m->pooled = fa((size_t)B * in);
        const float *pi = xi, *pq = xq;
        for (int b = 0; b < B; b++) {
            float *u = m->pooled + (size_t)b * in;
            for (int t = 0; t < kvlens[b]; t++)
                for (int k = 0; k < c->Ci; k++) u[k] += pi[(size_t)t * c->Ci + k];
            for (int k = 0; k < c->Ci; k++) u[k] /= (float)kvlens[b];
            for (int t = 0; t < qlens[b]; t++)
                for (int k = 0; k < c->Cq; k++) u[c->Ci + k] += pq[(size_t)t * c->Cq + k];
            for (int k = 0; k < c->Cq; k++) u[c->Ci + k] /= (float)qlens[b];
            pi += (size_t)kvlens[b] * c->Ci;
            pq += (size_t)qlens[b] * c->Cq;
        }
        classify(m, m->pooled, in, logits);
        return;
    }
    /* image side: kv = img_norm(img_proj(xi) + pos) */
    m->kvpre = fa((size_t)Tk * D);
    mmp_tx_linear_fwd(m->kvpre, D, xi, m->ipw->w, m->ipb->w, Tk, c->Ci, D);
    if (m->pos)
        for (int t = 0, b = 0, k = 0; t < Tk; t++, k++) {
            while (k >= kvlens[b]) k = 0, b++;
            for (int j = 0; j < D; j++) m->kvpre[(size_t)t * D + j] += m->pos->w[(size_t)k * D + j];
        }
    /* image self-attention layers (pre-LN encoder layers; each image token sees its own image's) */
    for (int l = 0; l < c->IL; l++) {
        eparams *p = &m->ep[l];
        esaved *s = &m->es[l];
        s->hin = m->kvpre;
        s->a = fa((size_t)Tk * D), s->m1 = fa((size_t)Tk), s->r1 = fa((size_t)Tk);
        mmp_tx_layernorm_fwd(s->a, s->m1, s->r1, s->hin, p->n1w->w, p->n1b->w, Tk, D, EPS);
        s->qkv = fa((size_t)Tk * 3 * D);
        mmp_tx_linear_fwd(s->qkv, 3 * D, s->a, p->inw->w, p->inb->w, Tk, D, 3 * D);
        s->att = fa(mmp_tx_attention_att_size(kvlens, kvlens, B, c->NH));
        s->ctx = fa((size_t)Tk * D);
        mmp_tx_attention_fwd(s->ctx, s->att, s->qkv, 3 * D, s->qkv + D, 3 * D, s->qkv + 2 * D, 3 * D, kvlens, kvlens, B, D,
                             c->NH, 0);
        s->h1 = fa((size_t)Tk * D);
        mmp_tx_linear_fwd(s->h1, D, s->ctx, p->ow->w, p->ob->w, Tk, D, D);
        for (size_t i = 0; i < (size_t)Tk * D; i++) s->h1[i] += s->hin[i];
        s->b = fa((size_t)Tk * D), s->m2 = fa((size_t)Tk), s->r2 = fa((size_t)Tk);
        mmp_tx_layernorm_fwd(s->b, s->m2, s->r2, s->h1, p->n2w->w, p->n2b->w, Tk, D, EPS);
        s->u = fa((size_t)Tk * I), s->g = fa((size_t)Tk * I);
        mmp_tx_linear_fwd(s->u, I, s->b, p->f1w->w, p->f1b->w, Tk, D, I);
        mmp_tx_act_fwd(s->g, s->u, (size_t)Tk * I, MMP_TX_GELU_ERF);
        m->kvpre = fa((size_t)Tk * D);
        mmp_tx_linear_fwd(m->kvpre, D, s->g, p->f2w->w, p->f2b->w, Tk, I, D);
        for (size_t i = 0; i < (size_t)Tk * D; i++) m->kvpre[i] += s->h1[i];
    }
    m->kv = fa((size_t)Tk * D), m->km = fa((size_t)Tk), m->kr = fa((size_t)Tk);
    mmp_tx_layernorm_fwd(m->kv, m->km, m->kr, m->kvpre, m->inw->w, m->inb->w, Tk, D, EPS);
    /* question side */
    float *x = fa((size_t)Tq * D);
    mmp_tx_linear_fwd(x, D, xq, m->qpw->w, m->qpb->w, Tq, c->Cq, D);
    for (int l = 0; l < c->L; l++) {
        lparams *p = &m->lp[l];
        lsaved *s = &m->ls[l];
        s->xin = x;
        s->a = fa((size_t)Tq * D), s->m1 = fa((size_t)Tq), s->r1 = fa((size_t)Tq);
        mmp_tx_layernorm_fwd(s->a, s->m1, s->r1, x, p->ln1w->w, p->ln1b->w, Tq, D, EPS);
        s->q = fa((size_t)Tq * D);
        mmp_tx_linear_fwd(s->q, D, s->a, p->inw->w, p->inb->w, Tq, D, D);
        s->kv = fa((size_t)Tk * 2 * D);
        mmp_tx_linear_fwd(s->kv, 2 * D, m->kv, p->inw->w + (size_t)D * D, p->inb->w + D, Tk, D, 2 * D);
        s->att = fa(mmp_tx_attention_att_size(qlens, kvlens, B, c->NH));
        s->ctx = fa((size_t)Tq * D);
        mmp_tx_attention_fwd(s->ctx, s->att, s->q, D, s->kv, 2 * D, s->kv + D, 2 * D, qlens, kvlens, B, D, c->NH, 0);
        s->x1 = fa((size_t)Tq * D);
        mmp_tx_linear_fwd(s->x1, D, s->ctx, p->ow->w, p->ob->w, Tq, D, D);
        for (size_t i = 0; i < (size_t)Tq * D; i++) s->x1[i] += x[i];
        s->b = fa((size_t)Tq * D), s->m2 = fa((size_t)Tq), s->r2 = fa((size_t)Tq);
        mmp_tx_layernorm_fwd(s->b, s->m2, s->r2, s->x1, p->ln2w->w, p->ln2b->w, Tq, D, EPS);
        s->hpre = fa((size_t)Tq * I), s->h = fa((size_t)Tq * I);
        mmp_tx_linear_fwd(s->hpre, I, s->b, p->f1w->w, p->f1b->w, Tq, D, I);
        mmp_tx_act_fwd(s->h, s->hpre, (size_t)Tq * I, MMP_TX_GELU_ERF);
        x = fa((size_t)Tq * D);
        mmp_tx_linear_fwd(x, D, s->h, p->f2w->w, p->f2b->w, Tq, I, D);
        for (size_t i = 0; i < (size_t)Tq * D; i++) x[i] += s->x1[i];
    }
    m->xL = x;
    m->fn = fa((size_t)Tq * D), m->fm = fa((size_t)Tq), m->fr = fa((size_t)Tq);
    mmp_tx_layernorm_fwd(m->fn, m->fm, m->fr, x, m->nw->w, m->nb->w, Tq, D, EPS);
    m->pooled = fa((size_t)B * D);
    for (int b = 0, t0 = 0; b < B; t0 += qlens[b], b++) {
        float *u = m->pooled + (size_t)b * D;
        for (int t = 0; t < qlens[b]; t++)
            for (int j = 0; j < D; j++) u[j] += m->fn[(size_t)(t0 + t) * D + j];
        for (int j = 0; j < D; j++) u[j] /= (float)qlens[b];
    }
    classify(m, m->pooled, D, logits);
}

void mmp_vqa_backward(mmp_vqa *m, const float *dlogits) { mmp_vqa_backward_q(m, dlogits, NULL); }

void mmp_vqa_backward_q(mmp_vqa *m, const float *dlogits, float *dxq) {
    const mmp_vqa_config *c = &m->c;
    const int B = m->B, H = c->hidden, D = c->D, I = 4 * c->D, Tq = m->Tq, Tk = m->Tk;
    for (int i = 0; i < m->np; i++) memset(m->p[i].g, 0, sizeof(float) * m->p[i].n);
    const int in = c->pooled ? c->Ci + c->Cq : D;
    if (dxq) memset(dxq, 0, sizeof(float) * (size_t)Tq * c->Cq);
    float *dz = fa((size_t)B * H), *du = c->pooled && !dxq ? NULL : fa((size_t)B * in);
    mmp_tx_linear_bwd(dz, m->c2w->g, m->c2b->g, dlogits, c->K, m->z, m->c2w->w, B, H, c->K);
    for (size_t i = 0; i < (size_t)B * H; i++)
        if (!(m->z[i] > 0)) dz[i] = 0;
    mmp_tx_linear_bwd(du, m->c0w->g, m->c0b->g, dz, H, m->pooled, m->c0w->w, B, in, H);
    free(dz);
    if (c->pooled) {
        if (dxq) /* u[Ci + k] = the mean of the question's tokens */
            for (int b = 0, t0 = 0; b < B; t0 += m->qlens[b], b++)
                for (int t = 0; t < m->qlens[b]; t++)
                    for (int k = 0; k < c->Cq; k++)
                        dxq[(size_t)(t0 + t) * c->Cq + k] = du[(size_t)b * in + c->Ci + k] / (float)m->qlens[b];
        free(du);
        return;
    }
    /* mean over the question's tokens, final norm */
    float *dfn = fa((size_t)Tq * D), *dx = fa((size_t)Tq * D);
    for (int b = 0, t0 = 0; b < B; t0 += m->qlens[b], b++)
        for (int t = 0; t < m->qlens[b]; t++)
            for (int j = 0; j < D; j++) dfn[(size_t)(t0 + t) * D + j] = du[(size_t)b * D + j] / (float)m->qlens[b];
    free(du);
    mmp_tx_layernorm_bwd(dx, m->nw->g, m->nb->g, dfn, m->xL, m->nw->w, m->fm, m->fr, Tq, D);
    float *dkv = fa((size_t)Tk * D), *dh = fa((size_t)Tq * I), *db = dfn, *dctx = fa((size_t)Tq * D);
    float *dqkv = fa((size_t)Tk * 2 * D), *dq = fa((size_t)Tq * D), *da = fa((size_t)Tq * D);
    for (int l = c->L - 1; l >= 0; l--) {
        lparams *p = &m->lp[l];
        lsaved *s = &m->ls[l];
        /* x = x1 + fc2(gelu(fc1(ln2(x1)))): dx flows to x1 as is */
        memset(dh, 0, sizeof(float) * (size_t)Tq * I);
        mmp_tx_linear_bwd(dh, p->f2w->g, p->f2b->g, dx, D, s->h, p->f2w->w, Tq, I, D);
        float *dhp = fa((size_t)Tq * I);
        mmp_tx_act_bwd(dhp, dh, s->hpre, (size_t)Tq * I, MMP_TX_GELU_ERF);
        memset(db, 0, sizeof(float) * (size_t)Tq * D);
        mmp_tx_linear_bwd(db, p->f1w->g, p->f1b->g, dhp, I, s->b, p->f1w->w, Tq, D, I);
        free(dhp);
        mmp_tx_layernorm_bwd(dx, p->ln2w->g, p->ln2b->g, db, s->x1, p->ln2w->w, s->m2, s->r2, Tq, D); /* dx = d x1 */
        /* x1 = xin + out_proj(attn(q(ln1(xin)), k(kv), v(kv))) */
        memset(dctx, 0, sizeof(float) * (size_t)Tq * D);
        mmp_tx_linear_bwd(dctx, p->ow->g, p->ob->g, dx, D, s->ctx, p->ow->w, Tq, D, D);
        memset(dq, 0, sizeof(float) * (size_t)Tq * D);
        memset(dqkv, 0, sizeof(float) * (size_t)Tk * 2 * D);
        mmp_tx_attention_bwd(dq, dqkv, dqkv + D, dctx, s->q, D, s->kv, 2 * D, s->kv + D, 2 * D, s->att, m->qlens,
                             m->kvlens, B, D, c->NH, 0);
        memset(da, 0, sizeof(float) * (size_t)Tq * D);
        mmp_tx_linear_bwd(da, p->inw->g, p->inb->g, dq, D, s->a, p->inw->w, Tq, D, D);
        mmp_tx_linear_bwd(dkv, p->inw->g + (size_t)D * D, p->inb->g + D, dqkv, 2 * D, m->kv, p->inw->w + (size_t)D * D,
                          Tk, D, 2 * D);
        /* the key bias: exactly 0 (softmax does not see a constant per query; the sum is rounding noise) */
        memset(p->inb->g + D, 0, sizeof(float) * (size_t)D);
        mmp_tx_layernorm_bwd(dx, p->ln1w->g, p->ln1b->g, da, s->xin, p->ln1w->w, s->m1, s->r1, Tq, D); /* dx = d xin */
    }
    mmp_tx_linear_bwd(dxq, m->qpw->g, m->qpb->g, dx, D, m->xq, m->qpw->w, Tq, c->Cq, D);
    float *dkvpre = fa((size_t)Tk * D);
    mmp_tx_layernorm_bwd(dkvpre, m->inw->g, m->inb->g, dkv, m->kvpre, m->inw->w, m->km, m->kr, Tk, D);
    if (c->IL) {
        /* dkvpre: d of the last image layer's output, then of each layer's input */
        float *dg = fa((size_t)Tk * I), *du2 = fa((size_t)Tk * I), *dbb = fa((size_t)Tk * D), *dc = fa((size_t)Tk * D);
        float *dqkv3 = fa((size_t)Tk * 3 * D), *dA = fa((size_t)Tk * D);
        for (int l = c->IL - 1; l >= 0; l--) {
            eparams *p = &m->ep[l];
            esaved *s = &m->es[l];
            /* h2 = h1 + linear2(gelu(linear1(norm2(h1)))) */
            memset(dg, 0, sizeof(float) * (size_t)Tk * I);
            mmp_tx_linear_bwd(dg, p->f2w->g, p->f2b->g, dkvpre, D, s->g, p->f2w->w, Tk, I, D);
            memset(du2, 0, sizeof(float) * (size_t)Tk * I);
            mmp_tx_act_bwd(du2, dg, s->u, (size_t)Tk * I, MMP_TX_GELU_ERF);
            memset(dbb, 0, sizeof(float) * (size_t)Tk * D);
            mmp_tx_linear_bwd(dbb, p->f1w->g, p->f1b->g, du2, I, s->b, p->f1w->w, Tk, D, I);
            mmp_tx_layernorm_bwd(dkvpre, p->n2w->g, p->n2b->g, dbb, s->h1, p->n2w->w, s->m2, s->r2, Tk, D); /* d h1 */
            /* h1 = hin + out_proj(self_attn(norm1(hin))) */
            memset(dc, 0, sizeof(float) * (size_t)Tk * D);
            mmp_tx_linear_bwd(dc, p->ow->g, p->ob->g, dkvpre, D, s->ctx, p->ow->w, Tk, D, D);
            memset(dqkv3, 0, sizeof(float) * (size_t)Tk * 3 * D);
            mmp_tx_attention_bwd(dqkv3, dqkv3 + D, dqkv3 + 2 * D, dc, s->qkv, 3 * D, s->qkv + D, 3 * D, s->qkv + 2 * D, 3 * D,
                                 s->att, m->kvlens, m->kvlens, B, D, c->NH, 0);
            memset(dA, 0, sizeof(float) * (size_t)Tk * D);
            mmp_tx_linear_bwd(dA, p->inw->g, p->inb->g, dqkv3, 3 * D, s->a, p->inw->w, Tk, D, 3 * D);
            memset(p->inb->g + D, 0, sizeof(float) * (size_t)D); /* the key bias, as above */
            mmp_tx_layernorm_bwd(dkvpre, p->n1w->g, p->n1b->g, dA, s->hin, p->n1w->w, s->m1, s->r1, Tk, D); /* d hin */
        }
        free(dg), free(du2), free(dbb), free(dc), free(dqkv3), free(dA);
    }
    if (m->pos)
        for (int t = 0, b = 0, k = 0; t < Tk; t++, k++) {
            while (k >= m->kvlens[b]) k = 0, b++;
            for (int j = 0; j < D; j++) m->pos->g[(size_t)k * D + j] += dkvpre[(size_t)t * D + j];
        }
    mmp_tx_linear_bwd(NULL, m->ipw->g, m->ipb->g, dkvpre, D, m->xi, m->ipw->w, Tk, c->Ci, D);
    free(dkvpre), free(dkv), free(dh), free(db), free(dctx), free(dqkv), free(dq), free(da), free(dx);
}

double mmp_vqa_loss(const float *logits, const float *t, const int64_t *y, int B, int K, int bce, float *dlogits) {
    if (B <= 0) return 0;
    if (!bce) return mmp_ce_loss(logits, y, B, K, NULL, 0.0, dlogits);
    double s = 0;
    for (size_t i = 0; i < (size_t)B * K; i++) {
        double z = logits[i], tt = t[i];
        /* log(1 + exp(-|z|)) + max(z, 0) - z t, torch's stable form */
        s += (z > 0 ? z : 0) - z * tt + log1p(exp(-fabs(z)));
        if (dlogits) dlogits[i] = (float)((1.0 / (1.0 + exp(-z)) - tt) / B);
    }
    return s / B;
}
