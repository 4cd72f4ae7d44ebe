/* train/caption_map.c: ClipCap's mapping networks (train/caption_map.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "rng.h"
#include "train/caption_map.h"

const char *mmp_capmap_kind_name(int kind) { return kind == MMP_CAPMAP_TRANSFORMER ? "transformer" : "mlp"; }

int mmp_capmap_kind_parse(const char *s, int *kind) {
    if (!strcmp(s, "mlp")) *kind = MMP_CAPMAP_MLP;
    else if (!strcmp(s, "transformer")) *kind = MMP_CAPMAP_TRANSFORMER;
    else return -1;
    return 0;
}

int64_t mmp_capmap_in_size(const mmp_capmap *m) { return m->N > 0 ? m->N * m->D : m->D; }

static mmp_param *add(mmp_capmap *m, const char *name, int ndim, int64_t a, int64_t b) {
    mmp_param *p = &m->p[m->np++];
    int64_t shape[2] = {a, b};
    mmp_param_init(p, name, ndim, shape, 1);
    return p;
}

int mmp_capmap_init(mmp_capmap *m, int kind, int64_t D, int64_t N, int K, int C, int layers, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    if (D < 1 || N < 0 || K < 1 || C < 1) return mmp_errf(err, errlen, "mapping network: bad sizes (D %lld, K %d, C %d)", (long long)D, K, C);
    m->kind = kind, m->D = D, m->N = N, m->K = K, m->C = C;
    if (kind == MMP_CAPMAP_MLP) {
        int64_t in = N > 0 ? N * D : D, H = (int64_t)K * C / 2;
        if (H < 1) return mmp_errf(err, errlen, "mapping network: K*C/2 is 0");
        m->p = mmp_xcalloc(4, sizeof(mmp_param));
        add(m, "clip_project.model.0.weight", 2, H, in);
        add(m, "clip_project.model.0.bias", 1, H, 0);
        add(m, "clip_project.model.2.weight", 2, (int64_t)K * C, H);
        add(m, "clip_project.model.2.bias", 1, (int64_t)K * C, 0);
        return 0;
    }
    if (C % MMP_CAPMAP_HEADS) return mmp_errf(err, errlen, "--mapper transformer: the decoder width %d is not a multiple of its %d heads", C, MMP_CAPMAP_HEADS);
    if (layers < 1) return mmp_errf(err, errlen, "--mapper-layers must be >= 1");
    m->layers = layers;
    m->L = N > 0 ? (int)N : K;
    m->p = mmp_xcalloc((size_t)(3 + 12 * layers), sizeof(mmp_param));
    add(m, "clip_project.prefix_const", 2, K, C);
    m->enc.layers = layers, m->enc.C = C, m->enc.NH = MMP_CAPMAP_HEADS, m->enc.inter = 2 * C;
    m->enc.act = MMP_TX_RELU, m->enc.post_ln = 0, m->enc.causal = 0, m->enc.eps = 1e-5f;
    m->enc.block = mmp_xcalloc((size_t)layers, sizeof(mmp_tx_block));
    m->bg = mmp_xcalloc((size_t)layers, sizeof(mmp_tx_block_grad));
    for (int l = 0; l < layers; l++) {
        char nm[128];
        mmp_tx_block *b = &m->enc.block[l];
        mmp_tx_block_grad *g = &m->bg[l];
        mmp_param *p;
#define P(suffix, nd, a, bb) (snprintf(nm, sizeof nm, "clip_project.transformer.layers.%d." suffix, l), p = add(m, nm, nd, a, bb))
        P("norm1.weight", 1, C, 0); b->ln1_w = p->w; g->ln1_w = p->g;
        P("norm1.bias", 1, C, 0); b->ln1_b = p->w; g->ln1_b = p->g;
        P("attn.to_queries.weight", 2, C, C); b->q_w = p->w; g->q_w = p->g;
        P("attn.to_keys_values.weight", 2, 2 * C, C);
        b->k_w = p->w; g->k_w = p->g;
        b->v_w = p->w + (size_t)C * C; g->v_w = p->g + (size_t)C * C;
        P("attn.project.weight", 2, C, C); b->o_w = p->w; g->o_w = p->g;
        P("attn.project.bias", 1, C, 0); b->o_b = p->w; g->o_b = p->g;
        P("norm2.weight", 1, C, 0); b->ln2_w = p->w; g->ln2_w = p->g;
        P("norm2.bias", 1, C, 0); b->ln2_b = p->w; g->ln2_b = p->g;
        P("mlp.fc1.weight", 2, 2 * C, C); b->fc1_w = p->w; g->fc1_w = p->g;
        P("mlp.fc1.bias", 1, 2 * C, 0); b->fc1_b = p->w; g->fc1_b = p->g;
        P("mlp.fc2.weight", 2, C, 2 * C); b->fc2_w = p->w; g->fc2_w = p->g;
        P("mlp.fc2.bias", 1, C, 0); b->fc2_b = p->w; g->fc2_b = p->g;
#undef P
    }
    int64_t out = N > 0 ? C : (int64_t)K * C;
    add(m, "clip_project.linear.weight", 2, out, D);
    add(m, "clip_project.linear.bias", 1, out, 0);
    return 0;
}

void mmp_capmap_free(mmp_capmap *m) {
    for (int i = 0; i < m->np; i++) mmp_param_free(&m->p[i]);
    free(m->p);
    free(m->enc.block);
    free(m->bg);
    free(m->hid);
    free(m->seq);
    free(m->saved);
    free(m->lens);
    memset(m, 0, sizeof *m);
}

void mmp_capmap_init_weights(mmp_capmap *m, uint64_t seed) {
    mmp_rng rng;
    mmp_rng_seed(&rng, mmp_rng_derive(seed, 0x434150ULL /* CAP */, 0));
    for (int i = 0; i < m->np; i++) {
        mmp_param *p = &m->p[i];
        const char *nm = p->name;
        size_t L = strlen(nm);
        if (strstr(nm, "prefix_const")) {
            for (size_t k = 0; k < p->n; k++) p->w[k] = (float)mmp_rng_normal_clamp(&rng);
        } else if (strstr(nm, ".norm")) {
            for (size_t k = 0; k < p->n; k++) p->w[k] = L > 7 && !strcmp(nm + L - 7, ".weight") ? 1.0f : 0.0f;
        } else {
            /* Linear: fan_in of the weight (a bias follows its weight) */
            int64_t fan_in = p->ndim == 2 ? p->shape[1] : m->p[i - 1].shape[1];
            double bound = 1.0 / sqrt((double)fan_in);
            for (size_t k = 0; k < p->n; k++) p->w[k] = (float)((mmp_rng_uniform53(&rng) * 2 - 1) * bound);
        }
    }
}

static const mmp_param *cparam(const mmp_capmap *m, int i) { return &m->p[i]; }

/* the transformer's encoder input [B*(L+K), C]: linear(x) then prefix_const per record */
static void tf_input(const mmp_capmap *m, const float *x, int B, float *seq) {
    int K = m->K, C = m->C, L = m->L, S = L + K;
    const mmp_param *lw = cparam(m, m->np - 2), *lb = cparam(m, m->np - 1), *pc = cparam(m, 0);
    for (int b = 0; b < B; b++) {
        float *s = seq + (size_t)b * S * C;
        if (m->N > 0)
            mmp_tx_linear_fwd(s, C, x + (size_t)b * m->N * m->D, lw->w, lb->w, (int)m->N, (int)m->D, C);
        else
            mmp_tx_linear_fwd(s, L * C, x + (size_t)b * m->D, lw->w, lb->w, 1, (int)m->D, L * C);
        memcpy(s + (size_t)L * C, pc->w, sizeof(float) * (size_t)K * C);
    }
}

static void tf_output(const mmp_capmap *m, const float *seq, int B, float *out) {
    int K = m->K, C = m->C, L = m->L, S = L + K;
    for (int b = 0; b < B; b++) memcpy(out + (size_t)b * K * C, seq + ((size_t)b * S + L) * C, sizeof(float) * (size_t)K * C);
}

static void mlp_fwd(const mmp_capmap *m, const float *x, int B, float *hid, float *out) {
    int64_t in = mmp_capmap_in_size(m), H = m->p[0].shape[0], O = m->p[2].shape[0];
    mmp_tx_linear_fwd(hid, (int)H, x, m->p[0].w, m->p[1].w, B, (int)in, (int)H);
    for (size_t k = 0; k < (size_t)B * (size_t)H; k++) hid[k] = tanhf(hid[k]);
    mmp_tx_linear_fwd(out, (int)O, hid, m->p[2].w, m->p[3].w, B, (int)H, (int)O);
}

void mmp_capmap_forward_const(const mmp_capmap *m, const float *x, int B, float *out) {
    if (B <= 0) return;
    if (m->kind == MMP_CAPMAP_MLP) {
        float *hid = mmp_xmalloc(sizeof(float) * (size_t)B * (size_t)m->p[0].shape[0]);
        mlp_fwd(m, x, B, hid, out);
        free(hid);
        return;
    }
    int S = m->L + m->K;
    float *seq = mmp_xmalloc(sizeof(float) * (size_t)B * S * m->C);
    int *lens = mmp_xmalloc(sizeof(int) * (size_t)B);
    for (int b = 0; b < B; b++) lens[b] = S;
    tf_input(m, x, B, seq);
    mmp_tx_encoder e = m->enc;
    e.threads = m->threads;
    mmp_tx_encoder_fwd(&e, seq, lens, B, NULL);
    tf_output(m, seq, B, out);
    free(seq);
    free(lens);
}

static void grow(mmp_capmap *m, int B) {
    if (B <= m->cap) return;
    if (m->kind == MMP_CAPMAP_MLP) {
        m->hid = mmp_xrealloc(m->hid, sizeof(float) * (size_t)B * (size_t)m->p[0].shape[0]);
    } else {
        m->seq = mmp_xrealloc(m->seq, sizeof(float) * (size_t)B * (size_t)(m->L + m->K) * (size_t)m->C);
        m->lens = mmp_xrealloc(m->lens, sizeof(int) * (size_t)B);
    }
    m->cap = B;
}

void mmp_capmap_forward(mmp_capmap *m, const float *x, int B, int train, float *out) {
    if (!train) { mmp_capmap_forward_const(m, x, B, out); return; }
    if (B <= 0) return;
    grow(m, B);
    if (m->kind == MMP_CAPMAP_MLP) { mlp_fwd(m, x, B, m->hid, out); return; }
    int S = m->L + m->K;
    for (int b = 0; b < B; b++) m->lens[b] = S;
    size_t ns = mmp_tx_encoder_saved_size(&m->enc, m->lens, B);
    if (ns > m->saved_cap) {
        m->saved = mmp_xrealloc(m->saved, sizeof(float) * ns);
        m->saved_cap = ns;
    }
    tf_input(m, x, B, m->seq);
    m->enc.threads = m->threads;
    mmp_tx_encoder_fwd_save(&m->enc, m->seq, m->lens, B, NULL, m->saved);
    tf_output(m, m->seq, B, out);
}

void mmp_capmap_backward(mmp_capmap *m, const float *x, int B, const float *dout) {
    for (int i = 0; i < m->np; i++) memset(m->p[i].g, 0, sizeof(float) * m->p[i].n);
    if (B <= 0) return;
    int K = m->K, C = m->C;
    if (m->kind == MMP_CAPMAP_MLP) {
        int64_t in = mmp_capmap_in_size(m), H = m->p[0].shape[0], O = m->p[2].shape[0];
        float *dh = mmp_xcalloc((size_t)B * (size_t)H, sizeof(float));
        mmp_tx_linear_bwd(dh, m->p[2].g, m->p[3].g, dout, (int)O, m->hid, m->p[2].w, B, (int)H, (int)O);
        for (size_t k = 0; k < (size_t)B * (size_t)H; k++) dh[k] *= 1.0f - m->hid[k] * m->hid[k];
        mmp_tx_linear_bwd(NULL, m->p[0].g, m->p[1].g, dh, (int)H, x, m->p[0].w, B, (int)in, (int)H);
        free(dh);
        return;
    }
    int L = m->L, S = L + K;
    float *dseq = mmp_xcalloc((size_t)B * S * C, sizeof(float));
    for (int b = 0; b < B; b++)
        memcpy(dseq + ((size_t)b * S + L) * C, dout + (size_t)b * K * C, sizeof(float) * (size_t)K * C);
    mmp_tx_encoder_bwd(&m->enc, m->saved, m->lens, B, dseq, m->bg);
    mmp_param *lw = &m->p[m->np - 2], *lb = &m->p[m->np - 1], *pc = &m->p[0];
    for (int b = 0; b < B; b++) {
        const float *s = dseq + (size_t)b * S * C;
        for (size_t k = 0; k < (size_t)K * C; k++) pc->g[k] += s[(size_t)L * C + k];
    }
    /* the linear over every record at once: per-record rows in order, a sum over the records */
    if (m->N > 0) {
        float *dl = mmp_xmalloc(sizeof(float) * (size_t)B * L * C);
        for (int b = 0; b < B; b++) memcpy(dl + (size_t)b * L * C, dseq + (size_t)b * S * C, sizeof(float) * (size_t)L * C);
        mmp_tx_linear_bwd(NULL, lw->g, lb->g, dl, C, x, lw->w, B * L, (int)m->D, C);
        free(dl);
    } else {
        mmp_tx_linear_bwd(NULL, lw->g, lb->g, dseq, S * C, x, lw->w, B, (int)m->D, L * C);
    }
    free(dseq);
}
