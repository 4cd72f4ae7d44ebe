/* tx/train.c: the training forward and backward of the ViT / CLIP towers and
 * BERT (tx/train.h). Outside the encoder every step is single-threaded in a
 * fixed order; the encoder's forward and backward give the same bits for any
 * thread count (tx/tx.h), so the whole is bit-identical for every count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "tx/gpt2.h"
#include "tx/train.h"

/* ------------------------------------------------------------ parameters */

static mmp_tx_param *param_add(mmp_tx_params *P, const char *name, float *w, size_t n) {
    if (P->n == P->cap) {
        P->cap = P->cap ? 2 * P->cap : 64;
        P->p = mmp_xrealloc(P->p, sizeof *P->p * (size_t)P->cap);
    }
    mmp_tx_param *p = &P->p[P->n++];
    *p = (mmp_tx_param){mmp_xstrdup(name), w, mmp_xcalloc(n ? n : 1, sizeof(float)), n, 0, 0, 0, 1, {(int64_t)n}};
    return p;
}

void mmp_tx_params_zero_grad(mmp_tx_params *P) {
    for (int i = 0; i < P->n; i++) memset(P->p[i].g, 0, P->p[i].n * sizeof(float));
}

mmp_tx_param *mmp_tx_params_find(mmp_tx_params *P, const char *name) {
    for (int i = 0; i < P->n; i++)
        if (!strcmp(P->p[i].name, name)) return &P->p[i];
    return NULL;
}

void mmp_tx_params_free(mmp_tx_params *P) {
    for (int i = 0; i < P->n; i++) {
        free(P->p[i].name);
        free(P->p[i].g);
    }
    free(P->p);
    if (P->vision) free(P->vision->block);
    if (P->text) free(P->text->block);
    if (P->bert) free(P->bert->block);
    if (P->gpt2) free(P->gpt2->block);
    free(P->gpt2);
    free(P->vision);
    free(P->text);
    free(P->bert);
    memset(P, 0, sizeof *P);
}

/* One weight field of the model and its gradient field. */
typedef struct {
    const float **w;
    float **g;
} field;

#define BLOCK_FIELDS(F, b, gb)                                                                                       \
    F(b, gb, ln1_w) F(b, gb, ln1_b) F(b, gb, q_w) F(b, gb, q_b) F(b, gb, k_w) F(b, gb, k_b) F(b, gb, v_w)           \
        F(b, gb, v_b) F(b, gb, o_w) F(b, gb, o_b) F(b, gb, ln2_w) F(b, gb, ln2_b) F(b, gb, fc1_w) F(b, gb, fc1_b)   \
            F(b, gb, fc2_w) F(b, gb, fc2_b) F(b, gb, ls1) F(b, gb, ls2)

static void owned_push(mmp_tx_model *m, float *p) {
    if (m->nowned == m->capowned) {
        m->capowned = m->capowned ? 2 * m->capowned : 64;
        m->owned = mmp_xrealloc(m->owned, sizeof *m->owned * (size_t)m->capowned);
    }
    m->owned[m->nowned++] = p;
}

static int is_owned(const mmp_tx_model *m, const float *p) {
    for (int i = 0; i < m->nowned; i++)
        if (m->owned[i] == p) return 1;
    return 0;
}

/* Points every field at a trainable copy and its gradient field into the
 * parameter's gradient (one parameter per tensor of the file). */
static int bind_fields(mmp_tx_model *m, mmp_tx_params *P, field *f, int nf, char *err, size_t errlen) {
    int *pidx = mmp_xmalloc(sizeof(int) * (size_t)(m->nrefs + 1));
    for (int i = 0; i < m->nrefs; i++) pidx[i] = -1;
    for (int i = 0; i < nf; i++) {
        const float *w = *f[i].w;
        if (!w) continue;
        int r = -1;
        for (int k = 0; k < m->nrefs && r < 0; k++)
            if (w >= m->refs[k].data && w < m->refs[k].data + m->refs[k].n) r = k;
        if (r < 0) {
            free(pidx);
            return mmp_errf(err, errlen, "%s: a parameter of the model has no tensor name (internal)", m->path);
        }
        mmp_tx_ref *ref = &m->refs[r];
        if (pidx[r] < 0) {
            float *copy = (float *)ref->data;
            if (!is_owned(m, ref->data)) {
                copy = mmp_xmalloc((ref->n ? ref->n : 1) * sizeof(float));
                memcpy(copy, ref->data, ref->n * sizeof(float));
                owned_push(m, copy);
            }
            mmp_tx_param *p = param_add(P, ref->name, copy, ref->n);
            p->transposed = ref->transposed, p->rows = ref->rows, p->cols = ref->cols;
            const mmp_tensor *t = m->st ? mmp_st_get((const mmp_safetensors *)m->st, ref->name) : NULL;
            if (t && t->ndim <= 4 && (size_t)mmp_numel(t->ndim, t->shape) == ref->n) {
                p->ndim = t->ndim;
                for (int d = 0; d < t->ndim; d++) p->shape[d] = t->shape[d];
            } else
                p->ndim = 1, p->shape[0] = (int64_t)ref->n;
            pidx[r] = P->n - 1;
        }
        mmp_tx_param *p = &P->p[pidx[r]];
        size_t off = (size_t)(w - ref->data);
        *f[i].w = p->w + off;
        *f[i].g = p->g + off;
    }
    /* the refs now name the trainable copies */
    for (int k = 0; k < m->nrefs; k++)
        if (pidx[k] >= 0) m->refs[k].data = P->p[pidx[k]].w;
    free(pidx);
    return 0;
}

int mmp_tx_make_trainable(mmp_tx_model *m, mmp_tx_params *P, char *err, size_t errlen) {
    memset(P, 0, sizeof *P);
    int cap = 64, nf = 0;
    field *f = mmp_xmalloc(sizeof *f * (size_t)cap);
#define ADD(wp, gp)                                                                                                  \
    do {                                                                                                             \
        if (nf == cap) f = mmp_xrealloc(f, sizeof *f * (size_t)(cap *= 2));                                          \
        f[nf++] = (field){(const float **)&(wp), &(gp)};                                                             \
    } while (0)
#define BF(b, gb, x) ADD((b)->x, (gb)->x);
    if (m->vision) {
        mmp_tx_vision *v = m->vision;
        mmp_tx_vision_grad *g = P->vision = mmp_xcalloc(1, sizeof *g);
        g->block = mmp_xcalloc((size_t)v->enc.layers + 1, sizeof *g->block);
        ADD(v->patch_w, g->patch_w); ADD(v->patch_b, g->patch_b); ADD(v->cls_tok, g->cls_tok); ADD(v->pos, g->pos);
        ADD(v->pre_w, g->pre_w); ADD(v->pre_b, g->pre_b); ADD(v->norm_w, g->norm_w); ADD(v->norm_b, g->norm_b);
        ADD(v->post_w, g->post_w); ADD(v->post_b, g->post_b); ADD(v->proj, g->proj);
        ADD(v->pooler_w, g->pooler_w); ADD(v->pooler_b, g->pooler_b); ADD(v->head_w, g->head_w);
        ADD(v->head_b, g->head_b);
        for (int l = 0; l < v->enc.layers; l++) {
            mmp_tx_block *b = &v->enc.block[l];
            mmp_tx_block_grad *gb = &g->block[l];
            BLOCK_FIELDS(BF, b, gb)
        }
        mmp_tx_encoder_unpack(&v->enc);
    }
    if (m->text) {
        mmp_tx_textenc *t = m->text;
        mmp_tx_text_grad *g = P->text = mmp_xcalloc(1, sizeof *g);
        g->block = mmp_xcalloc((size_t)t->enc.layers + 1, sizeof *g->block);
        ADD(t->tok, g->tok); ADD(t->pos, g->pos); ADD(t->final_w, g->final_w); ADD(t->final_b, g->final_b);
        ADD(t->proj, g->proj);
        for (int l = 0; l < t->enc.layers; l++) {
            mmp_tx_block *b = &t->enc.block[l];
            mmp_tx_block_grad *gb = &g->block[l];
            BLOCK_FIELDS(BF, b, gb)
        }
        mmp_tx_encoder_unpack(&t->enc);
    }
#undef BF
#undef ADD
    int rc = bind_fields(m, P, f, nf, err, errlen);
    free(f);
    if (rc) mmp_tx_params_free(P);
    return rc;
}

static mmp_tx_param *param2(mmp_tx_params *P, const char *name, float *w, size_t rows, size_t cols) {
    mmp_tx_param *p = param_add(P, name, w, rows * cols);
    p->ndim = 2, p->shape[0] = (int64_t)rows, p->shape[1] = (int64_t)cols;
    return p;
}

int mmp_bert_make_trainable(mmp_bert *b, mmp_tx_params *P, char *err, size_t errlen) {
    (void)err, (void)errlen;
    memset(P, 0, sizeof *P);
    const mmp_bert_config *c = &b->cfg;
    const size_t H = (size_t)c->hidden, I = (size_t)c->inter, HH = H * H;
    mmp_tx_encoder *e = b->tx;
    if (e) mmp_tx_encoder_unpack(e);
    mmp_bert_grad *g = P->bert = mmp_xcalloc(1, sizeof *g);
    g->block = mmp_xcalloc((size_t)c->layers + 1, sizeof *g->block);
    /* BERT's weights are owned copies already (text/bert.c converts at load) */
    g->word = param2(P, "embeddings.word_embeddings.weight", b->word, (size_t)c->vocab, H)->g;
    g->pos = param2(P, "embeddings.position_embeddings.weight", b->pos, (size_t)c->max_pos, H)->g;
    g->type = param2(P, "embeddings.token_type_embeddings.weight", b->type, (size_t)c->type_vocab, H)->g;
    g->eln_w = param_add(P, "embeddings.LayerNorm.weight", b->eln_w, H)->g;
    g->eln_b = param_add(P, "embeddings.LayerNorm.bias", b->eln_b, H)->g;
    char nm[160];
#define P_(suffix, w, n) (snprintf(nm, sizeof nm, "encoder.layer.%d." suffix, l), param_add(P, nm, (w), (n))->g)
#define P2(suffix, w, r, c) (snprintf(nm, sizeof nm, "encoder.layer.%d." suffix, l), param2(P, nm, (w), (r), (c))->g)
    for (int l = 0; l < c->layers; l++) {
        mmp_bert_layer *ly = &b->layer[l];
        mmp_tx_block_grad *gb = &g->block[l];
        gb->q_w = P2("attention.self.query.weight", ly->qkv_w, H, H);
        gb->q_b = P_("attention.self.query.bias", ly->qkv_b, H);
        gb->k_w = P2("attention.self.key.weight", ly->qkv_w + HH, H, H);
        gb->k_b = P_("attention.self.key.bias", ly->qkv_b + H, H);
        gb->v_w = P2("attention.self.value.weight", ly->qkv_w + 2 * HH, H, H);
        gb->v_b = P_("attention.self.value.bias", ly->qkv_b + 2 * H, H);
        gb->o_w = P2("attention.output.dense.weight", ly->ao_w, H, H);
        gb->o_b = P_("attention.output.dense.bias", ly->ao_b, H);
        gb->ln1_w = P_("attention.output.LayerNorm.weight", ly->aln_w, H);
        gb->ln1_b = P_("attention.output.LayerNorm.bias", ly->aln_b, H);
        gb->fc1_w = P2("intermediate.dense.weight", ly->in_w, I, H);
        gb->fc1_b = P_("intermediate.dense.bias", ly->in_b, I);
        gb->fc2_w = P2("output.dense.weight", ly->out_w, H, I);
        gb->fc2_b = P_("output.dense.bias", ly->out_b, H);
        gb->ln2_w = P_("output.LayerNorm.weight", ly->oln_w, H);
        gb->ln2_b = P_("output.LayerNorm.bias", ly->oln_b, H);
    }
#undef P_
#undef P2
    return 0;
}

mmp_param *mmp_tx_params_views(const mmp_tx_params *P, char *err, size_t errlen) {
    mmp_param *v = mmp_xcalloc((size_t)P->n + 1, sizeof *v);
    for (int i = 0; i < P->n; i++) {
        const mmp_tx_param *p = &P->p[i];
        if (strlen(p->name) >= sizeof v[i].name) {
            free(v);
            mmp_errf(err, errlen, "parameter '%s': the name is longer than the optimizer's %zu characters", p->name,
                     sizeof v[i].name - 1);
            return NULL;
        }
        snprintf(v[i].name, sizeof v[i].name, "%s", p->name);
        v[i].ndim = p->ndim, v[i].n = p->n;
        for (int d = 0; d < p->ndim; d++) v[i].shape[d] = p->shape[d];
        v[i].w = p->w, v[i].g = p->g, v[i].decay = 1;
    }
    return v;
}

void mmp_tx_params_views_free(mmp_param *v, int n) {
    if (!v) return;
    for (int i = 0; i < n; i++) free(v[i].s1), free(v[i].s2);
    free(v);
}

void mmp_tx_model_set_recompute(mmp_tx_model *m, int on) {
    if (m->vision) m->vision->enc.recompute = on;
    if (m->text) m->text->enc.recompute = on;
}

void mmp_bert_set_recompute(mmp_bert *b, int on) {
    if (b->tx) ((mmp_tx_encoder *)b->tx)->recompute = on;
}

void mmp_bert_set_threads(mmp_bert *b, int threads) {
    if (b->tx) ((mmp_tx_encoder *)b->tx)->threads = threads;
}

/* ------------------------------------------------------------ activations */

struct mmp_tx_saved {
    int n, H, W, T, C, D, which;
    int frozen;            /* blocks run in inference mode (nothing kept; the backward stops after them) */
    int recompute;         /* saved holds the kept blocks' inputs only (enc_fwd_part) */
    int *lens, *idx;
    int32_t *ids;
    float *imgs;           /* image inputs */
    float *x0, *m0, *r0;   /* encoder input before the pre-LN (image) / embeddings LN (BERT), its mean, rstd */
    float *saved;          /* the encoder's */
    float *xe, *m1, *r1;   /* encoder output, the norm's mean and rstd */
    float *xn;             /* after the final norm (the pooling's input) */
    float *pooled, *m2, *r2, *pooled2; /* pooled, post-LN stats, after the post-LN */
    float *out;            /* the output (pooler: after tanh) */
    float *A;              /* another grid than the native: the position resize's matrix */
};

void mmp_tx_saved_free(mmp_tx_saved *a) {
    if (!a) return;
    float *bufs[] = {a->imgs, a->x0, a->m0, a->r0, a->saved, a->xe, a->m1, a->r1, a->xn, a->pooled, a->m2, a->r2,
                     a->pooled2, a->out, a->A};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(a->lens);
    free(a->idx);
    free(a->ids);
    free(a);
}

static float *fbuf(size_t n) { return mmp_xcalloc(n ? n : 1, sizeof(float)); }

/* y = LN(x) keeping x, mean and rstd */
static void ln_save(float **y, float **mean, float **rstd, const float *x, const float *w, const float *b, int N,
                    int C, float eps) {
    *y = fbuf((size_t)N * C);
    *mean = fbuf((size_t)N);
    *rstd = fbuf((size_t)N);
    mmp_tx_layernorm_fwd(*y, *mean, *rstd, x, w, b, N, C, eps);
}

/* blocks first .. first+count-1 of e as an encoder of their own (the LoRA
 * masks as in e: layer0 moves with first) */
static mmp_tx_encoder enc_view(const mmp_tx_encoder *e, int first, int count) {
    mmp_tx_encoder v = *e;
    v.block = e->block + first;
    v.layers = count;
    v.layer0 = e->layer0 + first;
    return v;
}

/* --recompute's buffers for the kept blocks `tail`: TC = the floats of one
 * block input ([T, C]), most = the largest one-block saved size (the scratch) */
static void recompute_sizes(const mmp_tx_encoder *tail, const int *lens, int n, size_t *TC, size_t *most) {
    size_t T = 0;
    for (int s = 0; s < n; s++) T += (size_t)lens[s];
    *TC = T * (size_t)tail->C;
    *most = 0;
    for (int k = 0; k < tail->layers; k++) {
        mmp_tx_encoder b = enc_view(tail, k, 1);
        size_t sz = mmp_tx_encoder_saved_size(&b, lens, n);
        *most = sz > *most ? sz : *most;
    }
}

/* The encoder over x: its first `frozen` blocks in inference mode (nothing
 * kept), the others keeping their activations in *saved (the same bits as
 * one mmp_tx_encoder_fwd_save: each block reads only the previous output).
 * e->recompute: *saved keeps each kept block's input only ([kept][T, C]);
 * the block's activations go to a scratch buffer of one block, dropped, and
 * are computed again by enc_bwd_part (*recompute = 1 records it). */
void mmp_tx_encoder_fwd_part(const mmp_tx_encoder *e, float *x, const int *lens, int n, int frozen, float **saved,
                         int *recompute) {
    if (frozen > e->layers) frozen = e->layers;
    mmp_tx_encoder head = enc_view(e, 0, frozen), tail = enc_view(e, frozen, e->layers - frozen);
    tail.layer0 = e->layer0; /* (the kept blocks' masks count from the first kept one) */
    if (frozen > 0) mmp_tx_encoder_fwd(&head, x, lens, n, NULL);
    *recompute = e->recompute && tail.layers > 0;
    if (!*recompute) {
        *saved = fbuf(mmp_tx_encoder_saved_size(&tail, lens, n));
        if (tail.layers > 0) mmp_tx_encoder_fwd_save(&tail, x, lens, n, NULL, *saved);
        return;
    }
    size_t TC, most;
    recompute_sizes(&tail, lens, n, &TC, &most);
    *saved = fbuf((size_t)tail.layers * TC);
    float *scratch = fbuf(most);
    for (int k = 0; k < tail.layers; k++) {
        mmp_tx_encoder b = enc_view(&tail, k, 1);
        memcpy(*saved + (size_t)k * TC, x, TC * sizeof(float));
        mmp_tx_encoder_fwd_save(&b, x, lens, n, NULL, scratch);
    }
    free(scratch);
}

/* its backward: through the kept blocks (g: the whole encoder's [layers]);
 * recompute: block by block, from the last, its forward again from its kept
 * input (the same masks and bits), then its backward */
void mmp_tx_encoder_bwd_part(const mmp_tx_encoder *e, const float *saved, const int *lens, int n, int frozen, int recompute,
                         float *dx, const mmp_tx_block_grad *g) {
    if (frozen > e->layers) frozen = e->layers;
    mmp_tx_encoder tail = enc_view(e, frozen, e->layers - frozen);
    tail.layer0 = e->layer0;
    if (tail.layers <= 0) return;
    if (!recompute) {
        mmp_tx_encoder_bwd(&tail, saved, lens, n, dx, g ? g + frozen : NULL);
        return;
    }
    size_t TC, most;
    recompute_sizes(&tail, lens, n, &TC, &most);
    float *scratch = fbuf(most), *x = fbuf(TC);
    for (int k = tail.layers - 1; k >= 0; k--) {
        mmp_tx_encoder b = enc_view(&tail, k, 1);
        memcpy(x, saved + (size_t)k * TC, TC * sizeof(float));
        memset(scratch, 0, most * sizeof(float)); /* as fbuf's: slots the forward leaves (post-LN's M) read as 0 */
        mmp_tx_encoder_fwd_save(&b, x, lens, n, NULL, scratch);
        mmp_tx_encoder_bwd(&b, scratch, lens, n, dx, g ? g + frozen + k : NULL);
    }
    free(x);
    free(scratch);
}

void mmp_tx_encoder_train_size(const mmp_tx_encoder *e, const int *lens, int n, int frozen, size_t *saved, size_t *work) {
    if (frozen > e->layers) frozen = e->layers;
    if (frozen < 0) frozen = 0;
    mmp_tx_encoder tail = enc_view(e, frozen, e->layers - frozen);
    tail.layer0 = e->layer0;
    *saved = *work = 0;
    if (tail.layers <= 0) return;
    size_t T = 0, most = 0, wmost = 0;
    for (int s = 0; s < n; s++) T += (size_t)lens[s];
    if (!e->recompute) {
        *saved = mmp_tx_encoder_saved_size(&tail, lens, n);
        *work = mmp_tx_encoder_bwd_size(&tail, lens, n);
        return;
    }
    for (int k = 0; k < tail.layers; k++) {
        mmp_tx_encoder b = enc_view(&tail, k, 1);
        size_t sz = mmp_tx_encoder_saved_size(&b, lens, n), w = mmp_tx_encoder_bwd_size(&b, lens, n);
        most = sz > most ? sz : most;
        wmost = w > wmost ? w : wmost;
    }
    *saved = (size_t)tail.layers * T * (size_t)e->C;
    *work = most + T * (size_t)e->C + wmost;
}

/* n sequences of L tokens each through e (frozen blocks below): its saved and work floats */
static void enc_size_rect(const mmp_tx_encoder *e, int n, int L, int frozen, size_t *saved, size_t *work) {
    int *lens = mmp_xmalloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    for (int s = 0; s < n; s++) lens[s] = L;
    mmp_tx_encoder_train_size(e, lens, n, frozen, saved, work);
    free(lens);
}

void mmp_tx_image_train_size(const mmp_tx_model *m, int n, int H, int W, mmp_tx_out which, int frozen, int64_t *saved,
                             int64_t *work) {
    const mmp_tx_vision *v = m->vision;
    *saved = *work = 0;
    if (!v || n <= 0 || H < v->P || W < v->P) return;
    if (frozen < 0) frozen = 0;
    const size_t oh = (size_t)(H / v->P), ow = (size_t)(W / v->P), np = oh * ow, T = (size_t)n * ((size_t)v->cls + np),
                 C = (size_t)v->C, N = (size_t)n, D = (size_t)mmp_tx_image_dim(m, which), G = (size_t)v->gh * v->gw;
    const int other = oh != (size_t)v->gh || ow != (size_t)v->gw;
    size_t es, ew;
    enc_size_rect(&v->enc, n, v->cls + (int)np, frozen, &es, &ew);
    size_t sv = es + 2 * T * C + N * C + N * D;                   /* x0, xe; pooled, out */
    if (v->pre_w) sv += 2 * T;                                    /* its mean, rstd */
    if (v->norm_w) sv += T * C + 2 * T;                           /* xn, mean, rstd */
    if (v->post_w) sv += N * C + 2 * N;                           /* pooled2, mean, rstd */
    if (!frozen) sv += N * 3 * (size_t)H * (size_t)W + (other ? np * G : 0); /* the images; the resize's matrix */
    size_t wk = ew + 3 * T * C + 2 * N * C + N * D + (!frozen && other ? np * C : 0); /* dxn, dx, d0; dp2, dp, dz; dper */
    *saved = (int64_t)(sv * sizeof(float));
    *work = (int64_t)(wk * sizeof(float));
}

void mmp_tx_text_train_size(const mmp_tx_model *m, int n, int L, int frozen, int64_t *saved, int64_t *work) {
    const mmp_tx_textenc *t = m->text;
    *saved = *work = 0;
    if (!t || n <= 0 || L <= 0) return;
    const size_t T = (size_t)n * (size_t)L, C = (size_t)t->C, N = (size_t)n;
    size_t es, ew;
    enc_size_rect(&t->enc, n, L, frozen < 0 ? 0 : frozen, &es, &ew);
    size_t sv = es + 2 * T * C + 2 * T + N * C + T + 2 * N; /* xe, xn, mean, rstd; pooled; ids, idx, lens */
    size_t wk = ew + 2 * T * C + N * C;                     /* dxn, dx; dp */
    *saved = (int64_t)(sv * sizeof(float));
    *work = (int64_t)(wk * sizeof(float));
}

void mmp_bert_train_size(const mmp_bert *b, int n, int L, int frozen, int64_t *saved, int64_t *work) {
    *saved = *work = 0;
    if (!b->tx || n <= 0 || L <= 0) return;
    const size_t T = (size_t)n * (size_t)L, C = (size_t)b->cfg.hidden;
    size_t es, ew;
    enc_size_rect((const mmp_tx_encoder *)b->tx, n, L, frozen < 0 ? 0 : frozen, &es, &ew);
    size_t sv = es + 2 * T * C + 2 * T + T + (size_t)n; /* x0, xe, mean, rstd; ids, lens */
    size_t wk = ew + 2 * T * C;                         /* dx, d0 */
    *saved = (int64_t)(sv * sizeof(float));
    *work = (int64_t)(wk * sizeof(float));
}

/* ------------------------------------------------------------ image tower */

/* The patches' position embeddings pe [gh*gw, C] at another grid, as the
 * family's library resizes them (tx/vit.c's patch_pos: the same calls, the
 * same bits). */
static void pos_resize(const mmp_tx_vision *v, float *out, const float *pe, int oh, int ow, int C) {
    switch (v->resize) {
    case 0: { /* HF ViT: F.interpolate(scale_factor=((h0 + 0.1) / sqrt(N), ...)) */
        double sq = sqrt((double)v->gh * v->gw);
        double fh = ((double)oh + 0.1) / sq, fw = ((double)ow + 0.1) / sq;
        mmp_tx_pos_resize_scaled(out, pe, v->gh, v->gw, oh, ow, C, 1.0 / fh, 1.0 / fw);
        break;
    }
    case 1: mmp_tx_pos_resize(out, pe, v->gh, v->gw, oh, ow, C, 1); break;
    default: mmp_tx_pos_resize_scaled(out, pe, v->gh, v->gw, oh, ow, C, (double)v->gh / oh, (double)v->gw / ow); break;
    }
}

/* The resize is linear in pe, the same for every channel: its matrix
 * A [oh*ow][gh*gw] (column k: the resize of the k-th unit grid), whose
 * transpose carries the gradient back (torch's interpolate backward is the
 * adjoint of its own weights, these within float rounding of them). */
static float *pos_resize_matrix(const mmp_tx_vision *v, int oh, int ow) {
    const int G = v->gh * v->gw, O = oh * ow;
    float *A = fbuf((size_t)O * G), *e = fbuf((size_t)G), *col = fbuf((size_t)O);
    for (int k = 0; k < G; k++) {
        e[k] = 1.0f;
        pos_resize(v, col, e, oh, ow, 1);
        e[k] = 0.0f;
        for (int i = 0; i < O; i++) A[(size_t)i * G + k] = col[i];
    }
    free(e);
    free(col);
    return A;
}

mmp_tx_saved *mmp_tx_image_fwd_train(const mmp_tx_model *m, const float *imgs, int n, int H, int W, mmp_tx_out which,
                                   float *out, char *err, size_t errlen) {
    return mmp_tx_image_fwd_train_part(m, imgs, n, H, W, which, 0, out, err, errlen);
}

mmp_tx_saved *mmp_tx_image_fwd_train_part(const mmp_tx_model *m, const float *imgs, int n, int H, int W, mmp_tx_out which,
                                          int frozen, float *out, char *err, size_t errlen) {
    const mmp_tx_vision *v = m->vision;
    if (!v) {
        mmp_errf(err, errlen, "%s: the model has no image tower", m->path);
        return NULL;
    }
    const int D = mmp_tx_image_dim(m, which), C = v->C, P = v->P;
    if (D < 0) {
        mmp_errf(err, errlen, "%s: the model has no such output (%d)", m->path, (int)which);
        return NULL;
    }
    if (n <= 0) {
        mmp_errf(err, errlen, "%s: no images", m->path);
        return NULL;
    }
    if (H < P || W < P || H % P || W % P) {
        mmp_errf(err, errlen, "%s: image size %dx%d (HxW) is not a multiple of the patch size %d", m->path, H, W, P);
        return NULL;
    }
    const int oh = H / P, ow = W / P, np = oh * ow, T1 = v->cls + np, T = n * T1;
    mmp_tx_saved *a = mmp_xcalloc(1, sizeof *a);
    *a = (mmp_tx_saved){.n = n, .H = H, .W = W, .T = T, .C = C, .D = D, .which = (int)which, .frozen = frozen > 0 ? frozen : 0};
    if (!a->frozen) { /* the patch embedding's backward reads them */
        a->imgs = fbuf((size_t)n * 3 * H * W);
        memcpy(a->imgs, imgs, sizeof(float) * (size_t)n * 3 * H * W);
    }
    a->lens = mmp_xmalloc(sizeof(int) * (size_t)n);
    float *x = a->x0 = fbuf((size_t)T * C);
    const float *pe = v->pos + (size_t)v->pos_cls * C;
    float *pe_r = NULL;
    if (oh != v->gh || ow != v->gw) {
        pe = pe_r = fbuf((size_t)np * C);
        pos_resize(v, pe_r, v->pos + (size_t)v->pos_cls * C, oh, ow, C);
        if (!a->frozen) a->A = pos_resize_matrix(v, oh, ow);
    }
    for (int s = 0; s < n; s++) {
        float *xs = x + (size_t)s * T1 * C, *xp = xs + (size_t)v->cls * C;
        mmp_tx_patch_fwd(xp, imgs + (size_t)s * 3 * H * W, H, W, v->patch_w, v->patch_b, C, P);
        for (size_t k = 0; k < (size_t)np * C; k++) xp[k] += pe[k];
        if (v->cls)
            for (int c = 0; c < C; c++) xs[c] = v->cls_tok[c] + (v->pos_cls ? v->pos[c] : 0.0f);
        a->lens[s] = T1;
    }
    free(pe_r);
    float *xe;
    if (v->pre_w) ln_save(&xe, &a->m0, &a->r0, x, v->pre_w, v->pre_b, T, C, v->enc.eps);
    else {
        xe = fbuf((size_t)T * C);
        memcpy(xe, x, sizeof(float) * (size_t)T * C);
    }
    mmp_tx_encoder_fwd_part(&v->enc, xe, a->lens, n, a->frozen, &a->saved, &a->recompute);
    a->xe = xe;
    if (v->norm_w) ln_save(&a->xn, &a->m1, &a->r1, xe, v->norm_w, v->norm_b, T, C, v->eps_final);
    const float *xn = v->norm_w ? a->xn : xe;
    float *pooled = a->pooled = fbuf((size_t)n * C);
    mmp_tx_vision_pool(v, xn, n, T1, pooled);
    if (v->post_w) ln_save(&a->pooled2, &a->m2, &a->r2, pooled, v->post_w, v->post_b, n, C, v->eps_final);
    const float *p2 = v->post_w ? a->pooled2 : pooled;
    switch (which) {
    case MMP_TX_OUT_EMBED:
        if (v->proj) mmp_tx_linear_fwd(out, D, p2, v->proj, NULL, n, C, D);
        else memcpy(out, p2, sizeof(float) * (size_t)n * C);
        break;
    case MMP_TX_OUT_POOLED: memcpy(out, p2, sizeof(float) * (size_t)n * C); break;
    case MMP_TX_OUT_POOLER:
        mmp_tx_linear_fwd(out, D, p2, v->pooler_w, v->pooler_b, n, C, D);
        for (size_t k = 0; k < (size_t)n * D; k++) out[k] = tanhf(out[k]);
        break;
    case MMP_TX_OUT_LOGITS: mmp_tx_linear_fwd(out, D, p2, v->head_w, v->head_b, n, C, D); break;
    }
    a->out = fbuf((size_t)n * D);
    memcpy(a->out, out, sizeof(float) * (size_t)n * D);
    return a;
}

#define G(f) (g ? g->f : NULL)

void mmp_tx_image_bwd(const mmp_tx_model *m, const mmp_tx_saved *a, const float *dout, const mmp_tx_vision_grad *g,
                      float *dimgs) {
    const mmp_tx_vision *v = m->vision;
    const int n = a->n, C = a->C, D = a->D, T = a->T, H = a->H, W = a->W, P = v->P;
    const int np = (H / P) * (W / P), T1 = v->cls + np, G = v->gh * v->gw;
    const float *p2 = v->post_w ? a->pooled2 : a->pooled;
    float *dp2 = fbuf((size_t)n * C);
    switch ((mmp_tx_out)a->which) {
    case MMP_TX_OUT_EMBED:
        if (v->proj) {
            mmp_tx_linear_bwd(dp2, G(proj), NULL, dout, D, p2, v->proj, n, C, D);
            break;
        }
        /* fall through */
    case MMP_TX_OUT_POOLED:
        for (size_t k = 0; k < (size_t)n * C; k++) dp2[k] += dout[k];
        break;
    case MMP_TX_OUT_POOLER: {
        float *dz = fbuf((size_t)n * D);
        for (size_t k = 0; k < (size_t)n * D; k++) dz[k] = dout[k] * (1.0f - a->out[k] * a->out[k]);
        mmp_tx_linear_bwd(dp2, G(pooler_w), G(pooler_b), dz, D, p2, v->pooler_w, n, C, D);
        free(dz);
        break;
    }
    case MMP_TX_OUT_LOGITS: mmp_tx_linear_bwd(dp2, G(head_w), G(head_b), dout, D, p2, v->head_w, n, C, D); break;
    }
    float *dp = dp2;
    if (v->post_w) {
        dp = fbuf((size_t)n * C);
        mmp_tx_layernorm_bwd(dp, G(post_w), G(post_b), dp2, a->pooled, v->post_w, a->m2, a->r2, n, C);
    }
    float *dxn = fbuf((size_t)T * C);
    for (int s = 0; s < n; s++) {
        float *ds = dxn + (size_t)s * T1 * C;
        const float *gs = dp + (size_t)s * C;
        if (v->pool_avg) {
            for (int k = v->cls; k < T1; k++)
                for (int c = 0; c < C; c++) ds[(size_t)k * C + c] += gs[c] / (float)np;
        } else
            for (int c = 0; c < C; c++) ds[c] += gs[c];
    }
    float *dx = dxn;
    if (v->norm_w) {
        dx = fbuf((size_t)T * C);
        mmp_tx_layernorm_bwd(dx, G(norm_w), G(norm_b), dxn, a->xe, v->norm_w, a->m1, a->r1, T, C);
    }
    mmp_tx_encoder_bwd_part(&v->enc, a->saved, a->lens, n, a->frozen, a->recompute, dx, g ? g->block : NULL);
    if ((a->frozen > 0 || !(G(pre_w) || G(pre_b) || G(pos) || G(cls_tok) || G(patch_w) || G(patch_b))) && !dimgs) {
        /* nothing below the (frozen or first) blocks trains */
        if (dx != dxn) free(dx);
        free(dxn);
        if (dp != dp2) free(dp);
        free(dp2);
        return;
    }
    float *d0 = dx;
    if (v->pre_w) {
        d0 = fbuf((size_t)T * C);
        mmp_tx_layernorm_bwd(d0, G(pre_w), G(pre_b), dx, a->x0, v->pre_w, a->m0, a->r0, T, C);
    }
    /* the gradient of the patches' position embeddings at this grid: into the
     * parameter directly, or summed over the images and through A^T */
    float *dper = a->A && G(pos) ? fbuf((size_t)np * C) : NULL;
    for (int s = 0; s < n; s++) {
        const float *ds = d0 + (size_t)s * T1 * C, *dpat = ds + (size_t)v->cls * C;
        if (v->cls) {
            if (G(cls_tok))
                for (int c = 0; c < C; c++) g->cls_tok[c] += ds[c];
            if (v->pos_cls && G(pos))
                for (int c = 0; c < C; c++) g->pos[c] += ds[c];
        }
        if (G(pos)) {
            float *gp = dper ? dper : g->pos + (size_t)v->pos_cls * C;
            for (size_t k = 0; k < (size_t)np * C; k++) gp[k] += dpat[k];
        }
        mmp_tx_patch_bwd(dimgs ? dimgs + (size_t)s * 3 * H * W : NULL, G(patch_w), G(patch_b), dpat,
                         a->imgs + (size_t)s * 3 * H * W, H, W, v->patch_w, C, P);
    }
    if (dper) {
        float *gp = g->pos + (size_t)v->pos_cls * C;
        double *acc = mmp_xcalloc((size_t)C, sizeof *acc);
        for (int k = 0; k < G; k++) {
            for (int c = 0; c < C; c++) acc[c] = 0;
            for (int i = 0; i < np; i++) {
                const double w = a->A[(size_t)i * G + k];
                if (w == 0) continue;
                const float *di = dper + (size_t)i * C;
                for (int c = 0; c < C; c++) acc[c] += w * di[c];
            }
            for (int c = 0; c < C; c++) gp[(size_t)k * C + c] += (float)acc[c];
        }
        free(acc);
        free(dper);
    }
    if (d0 != dx) free(d0);
    if (dx != dxn) free(dx);
    free(dxn);
    if (dp != dp2) free(dp);
    free(dp2);
}

/* ------------------------------------------------------------ CLIP text tower */

mmp_tx_saved *mmp_tx_text_fwd_train(const mmp_tx_model *m, const int32_t *ids, const int *lens, int n,
                                  mmp_tx_out which, float *out, char *err, size_t errlen) {
    return mmp_tx_text_fwd_train_part(m, ids, lens, n, which, 0, out, err, errlen);
}

mmp_tx_saved *mmp_tx_text_fwd_train_part(const mmp_tx_model *m, const int32_t *ids, const int *lens, int n,
                                         mmp_tx_out which, int frozen, float *out, char *err, size_t errlen) {
    const mmp_tx_textenc *t = m->text;
    if (!t) {
        mmp_errf(err, errlen, "%s: the model has no text tower", m->path);
        return NULL;
    }
    const int D = mmp_tx_text_dim(m, which), C = t->C;
    if (D < 0) {
        mmp_errf(err, errlen, "%s: the text tower gives only the embedding and the pooled output", m->path);
        return NULL;
    }
    if (n <= 0) {
        mmp_errf(err, errlen, "%s: no texts", m->path);
        return NULL;
    }
    size_t T = 0;
    for (int s = 0; s < n; s++) {
        if (lens[s] < 1 || lens[s] > t->ctx) {
            mmp_errf(err, errlen, "%s: text %d has %d tokens; the context length is %d", m->path, s, lens[s], t->ctx);
            return NULL;
        }
        for (int k = 0; k < lens[s]; k++)
            if (ids[T + (size_t)k] < 0 || ids[T + (size_t)k] >= t->vocab) {
                mmp_errf(err, errlen, "%s: text %d: token id %d is outside the vocabulary (%d)", m->path, s,
                         (int)ids[T + (size_t)k], t->vocab);
                return NULL;
            }
        T += (size_t)lens[s];
    }
    mmp_tx_saved *a = mmp_xcalloc(1, sizeof *a);
    *a = (mmp_tx_saved){.n = n, .T = (int)T, .C = C, .D = D, .which = (int)which, .frozen = frozen > 0 ? frozen : 0};
    a->lens = mmp_xmalloc(sizeof(int) * (size_t)n);
    memcpy(a->lens, lens, sizeof(int) * (size_t)n);
    a->ids = mmp_xmalloc(sizeof(int32_t) * T);
    memcpy(a->ids, ids, sizeof(int32_t) * T);
    a->idx = mmp_xmalloc(sizeof(int) * (size_t)n);
    float *x = a->xe = fbuf(T * C);
    mmp_tx_embed_fwd(x, ids, t->tok, (int)T, C);
    size_t o = 0;
    for (int s = 0; s < n; s++) {
        for (int k = 0; k < lens[s]; k++) {
            float *r = x + (o + (size_t)k) * C;
            const float *p = t->pos + (size_t)k * C;
            for (int c = 0; c < C; c++) r[c] += p[c];
        }
        o += (size_t)lens[s];
    }
    mmp_tx_encoder_fwd_part(&t->enc, x, lens, n, a->frozen, &a->saved, &a->recompute);
    ln_save(&a->xn, &a->m1, &a->r1, x, t->final_w, t->final_b, (int)T, C, t->eps_final);
    float *pooled = a->pooled = fbuf((size_t)n * C);
    o = 0;
    for (int s = 0; s < n; s++) {
        int best = 0;
        for (int k = 1; k < lens[s]; k++)
            if (ids[o + (size_t)k] > ids[o + (size_t)best]) best = k;
        a->idx[s] = (int)o + best;
        memcpy(pooled + (size_t)s * C, a->xn + (o + (size_t)best) * C, sizeof(float) * C);
        o += (size_t)lens[s];
    }
    if (which == MMP_TX_OUT_EMBED && t->proj) mmp_tx_linear_fwd(out, D, pooled, t->proj, NULL, n, C, D);
    else memcpy(out, pooled, sizeof(float) * (size_t)n * C);
    return a;
}

void mmp_tx_text_bwd(const mmp_tx_model *m, const mmp_tx_saved *a, const float *dout, const mmp_tx_text_grad *g,
                     float *demb) {
    const mmp_tx_textenc *t = m->text;
    const int n = a->n, C = a->C, D = a->D, T = a->T;
    float *dp = fbuf((size_t)n * C);
    if (a->which == MMP_TX_OUT_EMBED && t->proj) mmp_tx_linear_bwd(dp, G(proj), NULL, dout, D, a->pooled, t->proj, n, C, D);
    else
        for (size_t k = 0; k < (size_t)n * C; k++) dp[k] += dout[k];
    float *dxn = fbuf((size_t)T * C), *dx = fbuf((size_t)T * C);
    for (int s = 0; s < n; s++)
        for (int c = 0; c < C; c++) dxn[(size_t)a->idx[s] * C + c] += dp[(size_t)s * C + c];
    mmp_tx_layernorm_bwd(dx, G(final_w), G(final_b), dxn, a->xe, t->final_w, a->m1, a->r1, T, C);
    mmp_tx_encoder_bwd_part(&t->enc, a->saved, a->lens, n, a->frozen, a->recompute, dx, g ? g->block : NULL);
    if ((a->frozen > 0 || !(G(tok) || G(pos))) && !demb) { /* the embeddings are frozen */
        free(dx);
        free(dxn);
        free(dp);
        return;
    }
    if (G(tok)) mmp_tx_embed_bwd(g->tok, dx, a->ids, T, C);
    size_t o = 0;
    for (int s = 0; s < n; s++) {
        if (G(pos))
            for (size_t k = 0; k < (size_t)a->lens[s] * C; k++) g->pos[k] += dx[o * C + k];
        o += (size_t)a->lens[s];
    }
    if (demb)
        for (size_t k = 0; k < (size_t)T * C; k++) demb[k] += dx[k];
    free(dx);
    free(dxn);
    free(dp);
}

/* ------------------------------------------------------------ BERT */

mmp_tx_saved *mmp_bert_fwd_train(const mmp_bert *b, const int32_t *ids, const int *lens, int n, float *out, char *err,
                                 size_t errlen) {
    return mmp_bert_fwd_train_part(b, ids, lens, n, 0, out, err, errlen);
}

static mmp_tx_saved *bert_fwd_train(const mmp_bert *b, const int32_t *ids, const int *lens, int n, int frozen, int tokens,
                                    float *out, char *err, size_t errlen);

mmp_tx_saved *mmp_bert_fwd_train_part(const mmp_bert *b, const int32_t *ids, const int *lens, int n, int frozen, float *out,
                                      char *err, size_t errlen) {
    return bert_fwd_train(b, ids, lens, n, frozen, 0, out, err, errlen);
}

mmp_tx_saved *mmp_bert_fwd_train_tokens(const mmp_bert *b, const int32_t *ids, const int *lens, int n, int frozen, float *out,
                                        char *err, size_t errlen) {
    return bert_fwd_train(b, ids, lens, n, frozen, 1, out, err, errlen);
}

/* tokens: out [T, H] = the last hidden states (which = 1), else their mean per sequence */
static mmp_tx_saved *bert_fwd_train(const mmp_bert *b, const int32_t *ids, const int *lens, int n, int frozen, int tokens,
                                    float *out, char *err, size_t errlen) {
    const mmp_bert_config *c = &b->cfg;
    const int H = c->hidden;
    int T = 0;
    if (n <= 0) {
        mmp_errf(err, errlen, "%s: no sequences", b->path ? b->path : "bert");
        return NULL;
    }
    for (int s = 0; s < n; s++) {
        if (lens[s] < 1 || lens[s] > c->max_pos) {
            mmp_errf(err, errlen, "%s: sequence %d has %d tokens; the position embeddings cover %d",
                     b->path ? b->path : "bert", s, lens[s], c->max_pos);
            return NULL;
        }
        for (int k = 0; k < lens[s]; k++)
            if (ids[T + k] < 0 || ids[T + k] >= c->vocab) {
                mmp_errf(err, errlen, "%s: sequence %d: token id %d is outside the vocabulary (%d)",
                         b->path ? b->path : "bert", s, (int)ids[T + k], c->vocab);
                return NULL;
            }
        T += lens[s];
    }
    mmp_tx_saved *a = mmp_xcalloc(1, sizeof *a);
    *a = (mmp_tx_saved){.n = n, .T = T, .C = H, .D = H, .which = tokens, .frozen = frozen > 0 ? frozen : 0};
    a->lens = mmp_xmalloc(sizeof(int) * (size_t)(n + 1));
    memcpy(a->lens, lens, sizeof(int) * (size_t)n);
    a->ids = mmp_xmalloc(sizeof(int32_t) * (size_t)(T + 1));
    memcpy(a->ids, ids, sizeof(int32_t) * (size_t)T);
    float *tmp = a->x0 = fbuf((size_t)T * H);
    for (int s = 0, t = 0; s < n; s++)
        for (int p = 0; p < lens[s]; p++, t++) {
            const float *we = b->word + (size_t)ids[t] * H, *pe = b->pos + (size_t)p * H, *te = b->type;
            float *xt = tmp + (size_t)t * H;
            for (int j = 0; j < H; j++) xt[j] = we[j] + te[j] + pe[j];
        }
    ln_save(&a->xe, &a->m0, &a->r0, tmp, b->eln_w, b->eln_b, T, H, c->eps);
    const mmp_tx_encoder *e = b->tx; /* text/bert.c makes it at load */
    mmp_tx_encoder_fwd_part(e, a->xe, lens, n, a->frozen, &a->saved, &a->recompute);
    if (tokens) memcpy(out, a->xe, sizeof(float) * (size_t)T * H);
    else mmp_bert_mean_pool(a->xe, lens, n, H, 0, out);
    return a;
}

void mmp_bert_bwd(const mmp_bert *b, const mmp_tx_saved *a, const float *dout, const mmp_bert_grad *g, float *demb) {
    const int H = a->C, n = a->n, T = a->T;
    float *dx = fbuf((size_t)T * H), *d0 = fbuf((size_t)T * H);
    if (a->which) /* mmp_bert_fwd_train_tokens: dout is [T, H] */
        memcpy(dx, dout, sizeof(float) * (size_t)T * H);
    else
        for (int s = 0, t = 0; s < n; s++) {
            const float inv = 1.0f / (float)(a->lens[s] > 0 ? a->lens[s] : 1);
            for (int p = 0; p < a->lens[s]; p++, t++)
                for (int j = 0; j < H; j++) dx[(size_t)t * H + j] = dout[(size_t)s * H + j] * inv;
        }
    mmp_tx_encoder_bwd_part((const mmp_tx_encoder *)b->tx, a->saved, a->lens, n, a->frozen, a->recompute, dx, g ? g->block : NULL);
    if ((a->frozen > 0 || !(G(word) || G(pos) || G(type) || G(eln_w) || G(eln_b))) && !demb) { /* the embeddings are frozen */
        free(d0);
        free(dx);
        return;
    }
    mmp_tx_layernorm_bwd(d0, G(eln_w), G(eln_b), dx, a->x0, b->eln_w, a->m0, a->r0, T, H);
    if (G(word)) /* nn.Embedding(padding_idx = pad_token_id): that row gets no gradient */
        for (int t = 0; t < T; t++)
            if (a->ids[t] != b->cfg.pad_id) mmp_tx_embed_bwd(g->word, d0 + (size_t)t * H, a->ids + t, 1, H);
    for (int s = 0, t = 0; s < n; s++)
        for (int p = 0; p < a->lens[s]; p++, t++)
            for (int j = 0; j < H; j++) {
                const float d = d0[(size_t)t * H + j];
                if (G(pos)) g->pos[(size_t)p * H + j] += d;
                if (G(type)) g->type[j] += d;
            }
    if (demb)
        for (size_t k = 0; k < (size_t)T * H; k++) demb[k] += d0[k];
    free(d0);
    free(dx);
}
