/* tx/gpt2.c: the GPT-2 decoder (tx/gpt2.h) on the transformer engine:
 * loading and saving under Hugging Face's names, the from-scratch
 * initialization, the forward, the lm_head, the KV-cache steps and the
 * training forward/backward. */
#include "tx/gpt2.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"
#include "mmp.h"
#include "nn/gemm.h"
#include "rng.h"

/* the lm_head's columns (vocabulary entries) in fixed chunks: threads take
 * whole chunks, so a logit has the same bits for any thread count */
#define HEAD_CHUNK 2048

typedef struct {
    float *ln1_w, *ln1_b, *qkv_w, *qkv_b, *o_w, *o_b, *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} layer_bufs;

struct mmp_gpt2_store {
    char *path; /* the weights file (NULL: from scratch) */
    float *wte, *wpe, *lnf_w, *lnf_b;
    layer_bufs *L;
    mmp_tx_block *blocks;
    mmp_sgemm_pack **head; /* wte packed per chunk, or NULL */
    int nhead;
};

/* ---------------------------------------------------------------- the tensors */

/* One tensor under HF's names: file shape [rows, cols] (1-D: cols = 0);
 * conv: a Conv1D weight [in, out] kept [out, in]. */
typedef struct {
    char name[96];
    float *w;
    int rows, cols, conv;
    int kind; /* 0 normal(0.02), 1 normal(0.02/sqrt(2 layers)), 2 ones, 3 zeros */
} tens;

/* Every tensor of the model in GPT2LMHeadModel.named_parameters() order. */
static int tensor_list(const mmp_gpt2 *m, tens **out) {
    const mmp_gpt2_config *c = &m->cfg;
    struct mmp_gpt2_store *st = m->store;
    const int C = c->C, I = c->inter;
    int n = 0, cap = 4 + 12 * c->layers;
    tens *t = mmp_xcalloc((size_t)cap, sizeof *t);
#define T_(nm, ptr, r, cl, cv, k)                                                                                     \
    do {                                                                                                             \
        t[n] = (tens){.w = (ptr), .rows = (r), .cols = (cl), .conv = (cv), .kind = (k)};                             \
        snprintf(t[n].name, sizeof t[n].name, "%s", nm);                                                             \
        n++;                                                                                                         \
    } while (0)
    T_("wte.weight", st->wte, c->vocab, C, 0, 0);
    T_("wpe.weight", st->wpe, c->ctx, C, 0, 0);
    char nm[96];
    for (int l = 0; l < c->layers; l++) {
        layer_bufs *b = &st->L[l];
#define TL(suffix, ptr, r, cl, cv, k)                                                                           \
    do {                                                                                                         \
        snprintf(nm, sizeof nm, "h.%d." suffix, l);                                                              \
        T_(nm, ptr, r, cl, cv, k);                                                                               \
    } while (0)
        TL("ln_1.weight", b->ln1_w, C, 0, 0, 2);
        TL("ln_1.bias", b->ln1_b, C, 0, 0, 3);
        TL("attn.c_attn.weight", b->qkv_w, C, 3 * C, 1, 0);
        TL("attn.c_attn.bias", b->qkv_b, 3 * C, 0, 0, 3);
        TL("attn.c_proj.weight", b->o_w, C, C, 1, 1);
        TL("attn.c_proj.bias", b->o_b, C, 0, 0, 3);
        TL("ln_2.weight", b->ln2_w, C, 0, 0, 2);
        TL("ln_2.bias", b->ln2_b, C, 0, 0, 3);
        TL("mlp.c_fc.weight", b->fc1_w, C, I, 1, 0);
        TL("mlp.c_fc.bias", b->fc1_b, I, 0, 0, 3);
        TL("mlp.c_proj.weight", b->fc2_w, I, C, 1, 1);
        TL("mlp.c_proj.bias", b->fc2_b, C, 0, 0, 3);
#undef TL
    }
    T_("ln_f.weight", st->lnf_w, C, 0, 0, 2);
    T_("ln_f.bias", st->lnf_b, C, 0, 0, 3);
#undef T_
    *out = t;
    return n;
}

static size_t tens_n(const tens *t) { return (size_t)t->rows * (size_t)(t->cols ? t->cols : 1); }

/* ---------------------------------------------------------------- config */

void mmp_gpt2_config_default(mmp_gpt2_config *c) {
    *c = (mmp_gpt2_config){.vocab = 50257, .ctx = 1024, .C = 768, .NH = 12, .layers = 12, .inter = 3072,
                           .eps = 1e-5f, .act = MMP_TX_GELU_TANH, .bos_id = 50256, .eos_id = 50256, .pad_id = -1};
}

int mmp_gpt2_config_check(const mmp_gpt2_config *c, char *err, size_t errlen) {
    if (c->vocab < 1 || c->ctx < 1 || c->C < 1 || c->NH < 1 || c->layers < 0 || c->inter < 1)
        return mmp_errf(err, errlen, "GPT-2 config: sizes must be positive (vocab %d, n_positions %d, n_embd %d, n_head %d, n_layer %d, n_inner %d)",
                        c->vocab, c->ctx, c->C, c->NH, c->layers, c->inter);
    if (c->C % c->NH) return mmp_errf(err, errlen, "GPT-2 config: n_embd %d is not a multiple of n_head %d", c->C, c->NH);
    if (!(c->eps > 0)) return mmp_errf(err, errlen, "GPT-2 config: layer_norm_epsilon %g must be positive", (double)c->eps);
    const int ids[3] = {c->bos_id, c->eos_id, c->pad_id};
    const char *nm[3] = {"bos_token_id", "eos_token_id", "pad_token_id"};
    for (int i = 0; i < 3; i++)
        if (ids[i] < -1 || ids[i] >= c->vocab)
            return mmp_errf(err, errlen, "GPT-2 config: %s %d is outside the vocabulary (%d)", nm[i], ids[i], c->vocab);
    return 0;
}

static const char *act_name(mmp_tx_act a) {
    switch (a) {
    case MMP_TX_GELU_ERF: return "gelu";
    case MMP_TX_GELU_TANH: return "gelu_new";
    case MMP_TX_QUICK_GELU: return "quick_gelu";
    case MMP_TX_RELU: return "relu";
    }
    return "gelu_new";
}

static int act_parse(const char *s, mmp_tx_act *a) {
    if (!strcmp(s, "gelu_new") || !strcmp(s, "gelu_pytorch_tanh") || !strcmp(s, "gelu_fast")) *a = MMP_TX_GELU_TANH;
    else if (!strcmp(s, "gelu")) *a = MMP_TX_GELU_ERF;
    else if (!strcmp(s, "quick_gelu")) *a = MMP_TX_QUICK_GELU;
    else if (!strcmp(s, "relu")) *a = MMP_TX_RELU;
    else return -1;
    return 0;
}

/* ---------------------------------------------------------------- model */

/* allocates the buffers and wires the encoder for m->cfg */
static mmp_gpt2 *alloc_model(const mmp_gpt2_config *cfg) {
    mmp_gpt2 *m = mmp_xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    struct mmp_gpt2_store *st = m->store = mmp_xcalloc(1, sizeof *st);
    const size_t C = (size_t)cfg->C, I = (size_t)cfg->inter;
    st->wte = mmp_xcalloc((size_t)cfg->vocab * C, sizeof(float));
    st->wpe = mmp_xcalloc((size_t)cfg->ctx * C, sizeof(float));
    st->lnf_w = mmp_xcalloc(C, sizeof(float));
    st->lnf_b = mmp_xcalloc(C, sizeof(float));
    st->L = mmp_xcalloc((size_t)cfg->layers + 1, sizeof *st->L);
    st->blocks = mmp_xcalloc((size_t)cfg->layers + 1, sizeof *st->blocks);
    for (int l = 0; l < cfg->layers; l++) {
        layer_bufs *b = &st->L[l];
        b->ln1_w = mmp_xcalloc(C, sizeof(float));
        b->ln1_b = mmp_xcalloc(C, sizeof(float));
        b->qkv_w = mmp_xcalloc(3 * C * C, sizeof(float));
        b->qkv_b = mmp_xcalloc(3 * C, sizeof(float));
        b->o_w = mmp_xcalloc(C * C, sizeof(float));
        b->o_b = mmp_xcalloc(C, sizeof(float));
        b->ln2_w = mmp_xcalloc(C, sizeof(float));
        b->ln2_b = mmp_xcalloc(C, sizeof(float));
        b->fc1_w = mmp_xcalloc(I * C, sizeof(float));
        b->fc1_b = mmp_xcalloc(I, sizeof(float));
        b->fc2_w = mmp_xcalloc(C * I, sizeof(float));
        b->fc2_b = mmp_xcalloc(C, sizeof(float));
        st->blocks[l] = (mmp_tx_block){.ln1_w = b->ln1_w, .ln1_b = b->ln1_b,
                                       .q_w = b->qkv_w, .q_b = b->qkv_b,
                                       .k_w = b->qkv_w + C * C, .k_b = b->qkv_b + C,
                                       .v_w = b->qkv_w + 2 * C * C, .v_b = b->qkv_b + 2 * C,
                                       .o_w = b->o_w, .o_b = b->o_b, .ln2_w = b->ln2_w, .ln2_b = b->ln2_b,
                                       .fc1_w = b->fc1_w, .fc1_b = b->fc1_b, .fc2_w = b->fc2_w, .fc2_b = b->fc2_b};
    }
    m->wte = st->wte, m->wpe = st->wpe, m->lnf_w = st->lnf_w, m->lnf_b = st->lnf_b;
    m->enc = (mmp_tx_encoder){.layers = cfg->layers, .C = cfg->C, .NH = cfg->NH, .inter = cfg->inter,
                              .act = cfg->act, .post_ln = 0, .causal = 1, .eps = cfg->eps, .block = st->blocks};
    return m;
}

static void head_unpack(mmp_gpt2 *m) {
    struct mmp_gpt2_store *st = m->store;
    for (int i = 0; i < st->nhead; i++) mmp_sgemm_pack_free(st->head[i]);
    free(st->head);
    st->head = NULL, st->nhead = 0;
}

/* packs the encoder and the lm_head (inference) */
static void pack_all(mmp_gpt2 *m) {
    struct mmp_gpt2_store *st = m->store;
    head_unpack(m);
    mmp_tx_encoder_pack(&m->enc);
    const int V = m->cfg.vocab, C = m->cfg.C;
    st->nhead = (V + HEAD_CHUNK - 1) / HEAD_CHUNK;
    st->head = mmp_xcalloc((size_t)st->nhead, sizeof *st->head);
    for (int i = 0; i < st->nhead; i++) {
        int c0 = i * HEAD_CHUNK, nc = V - c0 < HEAD_CHUNK ? V - c0 : HEAD_CHUNK;
        st->head[i] = mmp_sgemm_pack_b(MMP_GEMM_T, nc, C, m->wte + (size_t)c0 * C, C);
    }
}

void mmp_gpt2_free(mmp_gpt2 *m) {
    if (!m) return;
    struct mmp_gpt2_store *st = m->store;
    mmp_tx_encoder_unpack(&m->enc);
    head_unpack(m);
    for (int l = 0; l < m->cfg.layers; l++) {
        layer_bufs *b = &st->L[l];
        float *p[] = {b->ln1_w, b->ln1_b, b->qkv_w, b->qkv_b, b->o_w, b->o_b,
                      b->ln2_w, b->ln2_b, b->fc1_w, b->fc1_b, b->fc2_w, b->fc2_b};
        for (size_t i = 0; i < sizeof p / sizeof *p; i++) free(p[i]);
    }
    free(st->L);
    free(st->blocks);
    free(st->wte);
    free(st->wpe);
    free(st->lnf_w);
    free(st->lnf_b);
    free(st->path);
    free(st);
    free(m);
}

void mmp_gpt2_set_threads(mmp_gpt2 *m, int threads) { m->enc.threads = threads > 1 ? threads : 1; }

const char *mmp_gpt2_path(const mmp_gpt2 *m) { return m->store->path; }

mmp_gpt2 *mmp_gpt2_init(const mmp_gpt2_config *cfg, uint64_t seed, char *err, size_t errlen) {
    if (mmp_gpt2_config_check(cfg, err, errlen)) return NULL;
    mmp_gpt2 *m = alloc_model(cfg);
    tens *t;
    int n = tensor_list(m, &t);
    mmp_rng_pair g;
    mmp_rng_pair_seed(&g, mmp_rng_mix(seed ^ 0x6A09E667F3BCC908ULL));
    const double sd0 = 0.02, sd1 = 0.02 / sqrt(2.0 * cfg->layers > 0 ? 2.0 * cfg->layers : 1.0);
    for (int i = 0; i < n; i++) {
        size_t k = tens_n(&t[i]);
        if (t[i].kind == 2)
            for (size_t j = 0; j < k; j++) t[i].w[j] = 1.0f;
        else if (t[i].kind <= 1) {
            const double sd = t[i].kind ? sd1 : sd0;
            /* drawn in the file's layout (Conv1D [in, out]), stored [out, in] */
            const int R = t[i].rows, Cc = t[i].cols;
            for (size_t j = 0; j < k; j++) {
                float v = (float)(sd * mmp_rng_normal_pair(&g));
                if (t[i].conv) t[i].w[(j % (size_t)Cc) * (size_t)R + j / (size_t)Cc] = v;
                else t[i].w[j] = v;
            }
        }
    }
    free(t);
    pack_all(m);
    return m;
}

/* ---------------------------------------------------------------- loading */

static int cfg_int(const json_t *cfg, const char *file, const char *key, int *out, int lo, char *err, size_t errlen) {
    int64_t v;
    char e2[256];
    int r = mmp_json_get_int(cfg, key, lo, 1 << 30, &v, e2, sizeof e2);
    if (r < 0) return mmp_errf(err, errlen, "%s: %s", file, e2);
    if (r == 1) *out = (int)v;
    return r;
}

/* the tensor under name (with the prefix), or NULL */
static const mmp_tensor *st_get(const mmp_safetensors *s, const char *prefix, const char *name) {
    char full[160];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return mmp_st_get(s, full);
}

mmp_gpt2 *mmp_gpt2_load(const char *path, char *err, size_t errlen) {
    struct stat sb;
    char *file = NULL, *dir = NULL;
    if (stat(path, &sb)) {
        mmp_errf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(sb.st_mode)) {
        dir = mmp_xstrdup(path);
        size_t n = strlen(path) + 32;
        file = mmp_xmalloc(n);
        snprintf(file, n, "%s/model.safetensors", path);
    } else {
        file = mmp_xstrdup(path);
        dir = mmp_xstrdup(path);
        char *sl = strrchr(dir, '/');
        if (sl) *sl = 0;
        else strcpy(dir, ".");
        size_t len = strlen(file);
        if ((len > 4 && !strcmp(file + len - 4, ".bin")) || (len > 3 && !strcmp(file + len - 3, ".pt"))) {
            mmp_errf(err, errlen, "%s: a PyTorch pickle; convert it to safetensors (model.save_pretrained(DIR, safe_serialization=True))", file);
            free(file), free(dir);
            return NULL;
        }
    }
    mmp_safetensors s;
    if (mmp_st_open(&s, file, err, errlen)) {
        free(file), free(dir);
        return NULL;
    }
    mmp_gpt2 *m = NULL;
    json_t *cfg = NULL;
    size_t cpl = strlen(dir) + 16;
    char *cfgp = mmp_xmalloc(cpl);
    snprintf(cfgp, cpl, "%s/config.json", dir);
    int rc = mmp_json_load(cfgp, &cfg, err, errlen);
    if (rc < 0) goto fail;
    /* the prefix: GPT2LMHeadModel's "transformer." or GPT2Model's none */
    const char *pre = mmp_st_get(&s, "transformer.wte.weight") ? "transformer." : "";
    const mmp_tensor *wte = st_get(&s, pre, "wte.weight"), *wpe = st_get(&s, pre, "wpe.weight");
    if (!wte || !wpe || wte->ndim != 2 || wpe->ndim != 2) {
        mmp_errf(err, errlen, "%s: not a GPT-2 checkpoint (no 2-D transformer.wte.weight / wpe.weight)", file);
        goto fail;
    }
    mmp_gpt2_config c;
    mmp_gpt2_config_default(&c);
    c.vocab = (int)wte->shape[0], c.C = (int)wte->shape[1], c.ctx = (int)wpe->shape[0];
    c.layers = 0;
    for (;;) {
        char nm[64];
        snprintf(nm, sizeof nm, "h.%d.ln_1.weight", c.layers);
        if (!st_get(&s, pre, nm)) break;
        c.layers++;
    }
    const mmp_tensor *fc = st_get(&s, pre, "h.0.mlp.c_fc.weight");
    c.inter = fc && fc->ndim == 2 ? (int)fc->shape[1] : 4 * c.C;
    c.NH = c.C % 64 == 0 ? c.C / 64 : 1;
    if (c.vocab <= 50256) c.bos_id = c.eos_id = -1;
    if (cfg) {
        const char *f = cfgp;
        int v = 0;
        const struct {
            const char *key;
            int *have;
        } sz[] = {{"vocab_size", &c.vocab}, {"n_embd", &c.C}, {"n_positions", &c.ctx}, {"n_layer", &c.layers}};
        for (size_t k = 0; k < sizeof sz / sizeof *sz; k++) {
            int r = cfg_int(cfg, f, sz[k].key, &v, 0, err, errlen);
            if (r < 0) goto fail;
            if (r == 1 && v != *sz[k].have) {
                mmp_errf(err, errlen, "%s: %s is %d but the weights (%s) have %d", f, sz[k].key, v, file, *sz[k].have);
                goto fail;
            }
        }
        if (cfg_int(cfg, f, "n_head", &c.NH, 1, err, errlen) < 0) goto fail;
        int ni = -1;
        if (cfg_int(cfg, f, "n_inner", &ni, 1, err, errlen) < 0) goto fail;
        if (ni > 0 && ni != c.inter) {
            mmp_errf(err, errlen, "%s: n_inner is %d but the weights (%s) have %d", f, ni, file, c.inter);
            goto fail;
        }
        if (ni <= 0 && c.inter != 4 * c.C) {
            mmp_errf(err, errlen, "%s: n_inner is null (4 n_embd = %d) but the weights (%s) have %d", f, 4 * c.C, file, c.inter);
            goto fail;
        }
        double eps;
        char e2[256];
        int r = mmp_json_get_num(cfg, "layer_norm_epsilon", &eps, e2, sizeof e2);
        if (r < 0) {
            mmp_errf(err, errlen, "%s: %s", f, e2);
            goto fail;
        }
        if (r == 1) c.eps = (float)eps;
        const char *act = NULL;
        r = mmp_json_get_str(cfg, "activation_function", &act, e2, sizeof e2);
        if (r < 0) {
            mmp_errf(err, errlen, "%s: %s", f, e2);
            goto fail;
        }
        if (r == 1 && act_parse(act, &c.act)) {
            mmp_errf(err, errlen, "%s: activation_function \"%s\" is not supported (gelu_new, gelu, gelu_pytorch_tanh, quick_gelu, relu)", f, act);
            goto fail;
        }
        int *ids[3] = {&c.bos_id, &c.eos_id, &c.pad_id};
        const char *idk[3] = {"bos_token_id", "eos_token_id", "pad_token_id"};
        for (int k = 0; k < 3; k++) {
            json_t *jv = json_object_get(cfg, idk[k]);
            if (jv && json_is_null(jv)) *ids[k] = -1;
            else if (cfg_int(cfg, f, idk[k], ids[k], 0, err, errlen) < 0) goto fail;
        }
        const struct {
            const char *key;
            int want;
        } flags[] = {{"scale_attn_weights", 1}, {"scale_attn_by_inverse_layer_idx", 0}, {"reorder_and_upcast_attn", 0},
                     {"add_cross_attention", 0}, {"tie_word_embeddings", 1}};
        for (size_t k = 0; k < sizeof flags / sizeof *flags; k++) {
            int b;
            r = mmp_json_get_bool(cfg, flags[k].key, &b, e2, sizeof e2);
            if (r < 0) {
                mmp_errf(err, errlen, "%s: %s", f, e2);
                goto fail;
            }
            if (r == 1 && b != flags[k].want) {
                mmp_errf(err, errlen, "%s: %s = %s is not supported", f, flags[k].key, b ? "true" : "false");
                goto fail;
            }
        }
    }
    {
        char e2[300];
        if (mmp_gpt2_config_check(&c, e2, sizeof e2)) {
            mmp_errf(err, errlen, "%s: %s", cfg ? cfgp : file, e2);
            goto fail;
        }
    }
    m = alloc_model(&c);
    m->store->path = mmp_xstrdup(file);
    tens *t;
    int n = tensor_list(m, &t);
    unsigned char *used = mmp_xcalloc((size_t)s.n + 1, 1);
    for (int i = 0; i < n; i++) {
        char full[160];
        snprintf(full, sizeof full, "%s%s", pre, t[i].name);
        const mmp_tensor *x = mmp_st_get(&s, full);
        int nd = t[i].cols ? 2 : 1;
        if (!x) {
            mmp_errf(err, errlen, "%s: tensor %s is missing", file, full);
            free(t), free(used);
            goto fail;
        }
        if (x->ndim != nd || x->shape[0] != t[i].rows || (nd == 2 && x->shape[1] != t[i].cols)) {
            char have[64];
            mmp_shape_str(x->ndim, x->shape, have, sizeof have);
            if (nd == 2)
                mmp_errf(err, errlen, "%s: tensor %s has shape %s; the config wants [%d,%d]", file, full, have, t[i].rows, t[i].cols);
            else
                mmp_errf(err, errlen, "%s: tensor %s has shape %s; the config wants [%d]", file, full, have, t[i].rows);
            free(t), free(used);
            goto fail;
        }
        if (x->dtype != MMP_F32 && x->dtype != MMP_F16 && x->dtype != MMP_BF16) {
            mmp_errf(err, errlen, "%s: tensor %s is %s, expected a float type", file, full, mmp_dtype_name(x->dtype));
            free(t), free(used);
            goto fail;
        }
        for (int k = 0; k < s.n; k++)
            if (&s.entries[k].t == x) used[k] = 1;
        if (!t[i].conv) mmp_tensor_to_f32(x, t[i].w);
        else {
            const size_t R = (size_t)t[i].rows, K = (size_t)t[i].cols;
            float *tmp = mmp_xmalloc(R * K * sizeof *tmp);
            mmp_tensor_to_f32(x, tmp);
            for (size_t a = 0; a < R; a++)
                for (size_t b = 0; b < K; b++) t[i].w[b * R + a] = tmp[a * K + b];
            free(tmp);
        }
    }
    free(t);
    for (int k = 0; k < s.n; k++) {
        if (used[k]) continue;
        const char *nm = s.entries[k].name;
        size_t len = strlen(nm);
        int ok = (len > 9 && !strcmp(nm + len - 9, ".attn.bias")) || (len > 17 && !strcmp(nm + len - 17, ".attn.masked_bias"));
        if (!strcmp(nm, "lm_head.weight")) {
            const mmp_tensor *x = &s.entries[k].t;
            ok = x->ndim == 2 && x->shape[0] == c.vocab && x->shape[1] == c.C;
            if (!ok) {
                mmp_errf(err, errlen, "%s: lm_head.weight is not tied to transformer.wte.weight (another shape)", file);
                free(used);
                goto fail;
            }
        }
        if (!ok) {
            mmp_errf(err, errlen, "%s: tensor %s is not part of a GPT-2 model", file, nm);
            free(used);
            goto fail;
        }
    }
    free(used);
    mmp_st_close(&s);
    if (cfg) json_decref(cfg);
    free(cfgp), free(file), free(dir);
    pack_all(m);
    return m;
fail:
    mmp_err_oneline(err, errlen);
    mmp_gpt2_free(m);
    mmp_st_close(&s);
    if (cfg) json_decref(cfg);
    free(cfgp), free(file), free(dir);
    return NULL;
}

/* ---------------------------------------------------------------- saving */

int mmp_gpt2_save(const mmp_gpt2 *m, const char *dir, char *err, size_t errlen) {
    if (mkdir(dir, 0777) && errno != EEXIST) return mmp_errf(err, errlen, "%s: cannot create: %s", dir, strerror(errno));
    tens *t;
    int n = tensor_list(m, &t);
    mmp_st_writer w;
    mmp_st_writer_init(&w);
    mmp_meta_set(&w.meta, "format", "pt");
    for (int i = 0; i < n; i++) {
        char full[160];
        snprintf(full, sizeof full, "transformer.%s", t[i].name);
        if (!t[i].cols) {
            mmp_st_writer_add_f32(&w, full, t[i].w, 1, (int64_t[]){t[i].rows});
            continue;
        }
        const float *src = t[i].w;
        float *tmp = NULL;
        if (t[i].conv) {
            const size_t R = (size_t)t[i].rows, K = (size_t)t[i].cols;
            tmp = mmp_xmalloc(R * K * sizeof *tmp);
            for (size_t a = 0; a < R; a++)
                for (size_t b = 0; b < K; b++) tmp[a * K + b] = t[i].w[b * R + a];
            src = tmp;
        }
        mmp_st_writer_add_f32(&w, full, src, 2, (int64_t[]){t[i].rows, t[i].cols});
        free(tmp);
    }
    free(t);
    size_t pl = strlen(dir) + 32;
    char *p = mmp_xmalloc(pl);
    snprintf(p, pl, "%s/model.safetensors", dir);
    int rc = mmp_st_writer_write(&w, p, err, errlen);
    mmp_st_writer_free(&w);
    if (rc) {
        free(p);
        return -1;
    }
    snprintf(p, pl, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    if (!f) {
        rc = mmp_errf(err, errlen, "%s: cannot write: %s", p, strerror(errno));
        free(p);
        return rc;
    }
    const mmp_gpt2_config *c = &m->cfg;
    fprintf(f, "{\n  \"activation_function\": \"%s\",\n  \"architectures\": [\"GPT2LMHeadModel\"],\n", act_name(c->act));
    fprintf(f, "  \"attn_pdrop\": 0.1,\n  \"embd_pdrop\": 0.1,\n  \"resid_pdrop\": 0.1,\n");
    if (c->bos_id >= 0) fprintf(f, "  \"bos_token_id\": %d,\n", c->bos_id);
    else fprintf(f, "  \"bos_token_id\": null,\n");
    if (c->eos_id >= 0) fprintf(f, "  \"eos_token_id\": %d,\n", c->eos_id);
    else fprintf(f, "  \"eos_token_id\": null,\n");
    if (c->pad_id >= 0) fprintf(f, "  \"pad_token_id\": %d,\n", c->pad_id);
    fprintf(f, "  \"initializer_range\": 0.02,\n  \"layer_norm_epsilon\": %.9g,\n  \"model_type\": \"gpt2\",\n", (double)c->eps);
    fprintf(f, "  \"n_ctx\": %d,\n  \"n_embd\": %d,\n  \"n_head\": %d,\n", c->ctx, c->C, c->NH);
    if (c->inter == 4 * c->C) fprintf(f, "  \"n_inner\": null,\n");
    else fprintf(f, "  \"n_inner\": %d,\n", c->inter);
    fprintf(f, "  \"n_layer\": %d,\n  \"n_positions\": %d,\n  \"tie_word_embeddings\": true,\n  \"vocab_size\": %d\n}\n",
            c->layers, c->ctx, c->vocab);
    if (fclose(f)) rc = mmp_errf(err, errlen, "%s: cannot write: %s", p, strerror(errno));
    free(p);
    return rc;
}

/* ---------------------------------------------------------------- forward */

int mmp_gpt2_check_vocab(const mmp_gpt2 *m, int id_bound, const char *tok_path, char *err, size_t errlen) {
    if (id_bound <= m->cfg.vocab) return 0;
    return mmp_errf(err, errlen, "%s: the tokenizer has ids up to %d but the decoder (%s) has a vocabulary of %d", tok_path,
                    id_bound - 1, m->store->path ? m->store->path : "from scratch", m->cfg.vocab);
}

void mmp_gpt2_embed(const mmp_gpt2 *m, const int32_t *ids, int n, float *out) {
    mmp_tx_embed_fwd(out, ids, m->wte, n, m->cfg.C);
}

typedef struct {
    const mmp_gpt2 *m;
    const float *h;
    float *logits;
    int n, nt;
} head_run;

static void head_chunk(const head_run *R, int i) {
    const mmp_gpt2 *m = R->m;
    const int V = m->cfg.vocab, C = m->cfg.C, c0 = i * HEAD_CHUNK, nc = V - c0 < HEAD_CHUNK ? V - c0 : HEAD_CHUNK;
    const struct mmp_gpt2_store *st = m->store;
    if (st->head)
        mmp_sgemm_packed(MMP_GEMM_N, R->n, R->h, C, st->head[i], NULL, NULL, 0, MMP_GEMM_ACT_NONE, R->logits + c0, V);
    else
        mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, R->n, nc, C, 1.0f, R->h, C, m->wte + (size_t)c0 * C, C, 0.0f, R->logits + c0, V);
}

typedef struct {
    const head_run *R;
    int tid;
} head_worker;

static void *head_thread(void *a) {
    const head_worker *w = a;
    const int nch = (w->R->m->cfg.vocab + HEAD_CHUNK - 1) / HEAD_CHUNK;
    for (int i = w->tid; i < nch; i += w->R->nt) head_chunk(w->R, i);
    return NULL;
}

void mmp_gpt2_lm_head(const mmp_gpt2 *m, const float *hidden, int n, float *logits) {
    if (n <= 0) return;
    const int nch = (m->cfg.vocab + HEAD_CHUNK - 1) / HEAD_CHUNK;
    int nt = m->enc.threads > 1 ? m->enc.threads : 1;
    if (nt > nch) nt = nch;
    head_run R = {m, hidden, logits, n, nt};
    if (nt == 1) {
        for (int i = 0; i < nch; i++) head_chunk(&R, i);
        return;
    }
    pthread_t th[64];
    head_worker w[64];
    if (nt > 64) nt = R.nt = 64;
    for (int t = 1; t < nt; t++) {
        w[t] = (head_worker){&R, t};
        if (pthread_create(&th[t], NULL, head_thread, &w[t])) mmp_die("cannot create a thread");
    }
    w[0] = (head_worker){&R, 0};
    head_thread(&w[0]);
    for (int t = 1; t < nt; t++) pthread_join(th[t], NULL);
}

static int check_lens(const mmp_gpt2 *m, const int *lens, int nseq, size_t *T, char *err, size_t errlen) {
    *T = 0;
    for (int s = 0; s < nseq; s++) {
        if (lens[s] < 0 || lens[s] > m->cfg.ctx)
            return mmp_errf(err, errlen, "GPT-2: sequence %d has %d positions; the model's n_positions is %d", s, lens[s],
                            m->cfg.ctx);
        *T += (size_t)lens[s];
    }
    return 0;
}

/* x[T, C] += wpe rows of the positions first[s] .. per sequence */
static void add_pos(const mmp_gpt2 *m, float *x, const int *lens, const int *first, int nseq) {
    const int C = m->cfg.C;
    size_t o = 0;
    for (int s = 0; s < nseq; s++) {
        for (int k = 0; k < lens[s]; k++) {
            float *r = x + (o + (size_t)k) * C;
            const float *p = m->wpe + (size_t)((first ? first[s] : 0) + k) * C;
            for (int c = 0; c < C; c++) r[c] += p[c];
        }
        o += (size_t)lens[s];
    }
}

int mmp_gpt2_fwd(const mmp_gpt2 *m, const float *x, const int *lens, int nseq, float *hidden, float *logits, char *err,
                 size_t errlen) {
    size_t T;
    if (check_lens(m, lens, nseq, &T, err, errlen)) return -1;
    const int C = m->cfg.C;
    float *h = mmp_xmalloc((T * C + 1) * sizeof *h);
    memcpy(h, x, T * C * sizeof *h);
    add_pos(m, h, lens, NULL, nseq);
    mmp_tx_encoder_fwd(&m->enc, h, lens, nseq, NULL);
    mmp_tx_layernorm_fwd(h, NULL, NULL, h, m->lnf_w, m->lnf_b, (int)T, C, m->cfg.eps);
    if (hidden) memcpy(hidden, h, T * C * sizeof *h);
    if (logits) mmp_gpt2_lm_head(m, h, (int)T, logits);
    free(h);
    return 0;
}

/* ---------------------------------------------------------------- KV cache */

struct mmp_gpt2_cache {
    int nseq, maxlen, layers, C;
    int *len, *len2;
    float *k, *v;   /* [layers][nseq][maxlen][C] */
    float *k2, *v2; /* reorder's other buffers (allocated on first use) */
};

mmp_gpt2_cache *mmp_gpt2_cache_new(const mmp_gpt2 *m, int nseq, int maxlen) {
    if (nseq < 1) nseq = 1;
    if (maxlen < 1) maxlen = 1;
    if (maxlen > m->cfg.ctx) maxlen = m->cfg.ctx;
    mmp_gpt2_cache *c = mmp_xcalloc(1, sizeof *c);
    c->nseq = nseq, c->maxlen = maxlen, c->layers = m->cfg.layers, c->C = m->cfg.C;
    c->len = mmp_xcalloc((size_t)nseq, sizeof *c->len);
    c->len2 = mmp_xcalloc((size_t)nseq, sizeof *c->len2);
    size_t n = (size_t)c->layers * nseq * maxlen * c->C + 1;
    c->k = mmp_xmalloc(n * sizeof(float));
    c->v = mmp_xmalloc(n * sizeof(float));
    return c;
}

void mmp_gpt2_cache_free(mmp_gpt2_cache *c) {
    if (!c) return;
    free(c->len), free(c->len2), free(c->k), free(c->v), free(c->k2), free(c->v2);
    free(c);
}

void mmp_gpt2_cache_reset(mmp_gpt2_cache *c) { memset(c->len, 0, (size_t)c->nseq * sizeof *c->len); }
int mmp_gpt2_cache_len(const mmp_gpt2_cache *c, int s) { return s >= 0 && s < c->nseq ? c->len[s] : 0; }
int mmp_gpt2_cache_nseq(const mmp_gpt2_cache *c) { return c->nseq; }

void mmp_gpt2_cache_reorder(mmp_gpt2_cache *c, const int *src) {
    const size_t row = (size_t)c->maxlen * c->C, n = (size_t)c->layers * c->nseq * row + 1;
    if (!c->k2) {
        c->k2 = mmp_xmalloc(n * sizeof(float));
        c->v2 = mmp_xmalloc(n * sizeof(float));
    }
    for (int l = 0; l < c->layers; l++)
        for (int s = 0; s < c->nseq; s++) {
            const size_t to = ((size_t)l * c->nseq + s) * row, from = ((size_t)l * c->nseq + src[s]) * row;
            const size_t k = (size_t)c->len[src[s]] * c->C;
            memcpy(c->k2 + to, c->k + from, k * sizeof(float));
            memcpy(c->v2 + to, c->v + from, k * sizeof(float));
        }
    for (int s = 0; s < c->nseq; s++) c->len2[s] = c->len[src[s]];
    float *t = c->k;
    c->k = c->k2, c->k2 = t;
    t = c->v, c->v = c->v2, c->v2 = t;
    int *ti = c->len;
    c->len = c->len2, c->len2 = ti;
}

int mmp_gpt2_step(const mmp_gpt2 *m, mmp_gpt2_cache *c, const float *x, const int *n_new, float *logits, char *err,
                  size_t errlen) {
    const int C = m->cfg.C, ns = c->nseq;
    size_t T = 0;
    for (int s = 0; s < ns; s++) {
        if (n_new[s] < 0 || c->len[s] + n_new[s] > c->maxlen)
            return mmp_errf(err, errlen, "GPT-2 cache: sequence %d would hold %d positions; the cache holds %d (n_positions %d)",
                            s, c->len[s] + n_new[s], c->maxlen, m->cfg.ctx);
        T += (size_t)n_new[s];
    }
    if (T == 0) return 0;
    float *h = mmp_xmalloc((T * C + 1) * sizeof *h);
    memcpy(h, x, T * C * sizeof *h);
    add_pos(m, h, n_new, c->len, ns);
    mmp_tx_encoder_fwd_cached(&m->enc, h, n_new, ns, c->k, c->v, c->len, c->maxlen);
    /* ln_f of each row's last new position, then the lm_head on those rows */
    float *last = mmp_xmalloc(((size_t)ns * C + 1) * sizeof *last);
    int nl = 0;
    size_t o = 0;
    for (int s = 0; s < ns; s++) {
        o += (size_t)n_new[s];
        if (n_new[s] > 0) memcpy(last + (size_t)nl++ * C, h + (o - 1) * C, (size_t)C * sizeof *h);
        c->len[s] += n_new[s];
    }
    if (logits) {
        mmp_tx_layernorm_fwd(last, NULL, NULL, last, m->lnf_w, m->lnf_b, nl, C, m->cfg.eps);
        const int V = m->cfg.vocab;
        if (nl == ns) mmp_gpt2_lm_head(m, last, nl, logits);
        else {
            float *lg = mmp_xmalloc(((size_t)nl * V + 1) * sizeof *lg);
            mmp_gpt2_lm_head(m, last, nl, lg);
            for (int s = 0, k = 0; s < ns; s++)
                if (n_new[s] > 0) memcpy(logits + (size_t)s * V, lg + (size_t)k++ * V, (size_t)V * sizeof *lg);
            free(lg);
        }
    }
    free(last);
    free(h);
    return 0;
}

int mmp_gpt2_step_ids(const mmp_gpt2 *m, mmp_gpt2_cache *c, const int32_t *ids, const int *n_new, float *logits,
                      char *err, size_t errlen) {
    size_t T = 0;
    for (int s = 0; s < c->nseq; s++) T += (size_t)(n_new[s] > 0 ? n_new[s] : 0);
    for (size_t i = 0; i < T; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab)
            return mmp_errf(err, errlen, "GPT-2: token id %d is outside the vocabulary (%d)", (int)ids[i], m->cfg.vocab);
    float *x = mmp_xmalloc((T * m->cfg.C + 1) * sizeof *x);
    mmp_gpt2_embed(m, ids, (int)T, x);
    int rc = mmp_gpt2_step(m, c, x, n_new, logits, err, errlen);
    free(x);
    return rc;
}

/* ---------------------------------------------------------------- training */

static mmp_tx_param *padd(mmp_tx_params *P, const char *name, float *w, const tens *t) {
    if (P->n == P->cap) {
        P->cap = P->cap ? 2 * P->cap : 64;
        P->p = mmp_xrealloc(P->p, sizeof *P->p * (size_t)P->cap);
    }
    size_t n = tens_n(t);
    mmp_tx_param *p = &P->p[P->n++];
    *p = (mmp_tx_param){.name = mmp_xstrdup(name), .w = w, .g = mmp_xcalloc(n ? n : 1, sizeof(float)), .n = n};
    p->ndim = t->cols ? 2 : 1;
    p->shape[0] = t->rows;
    if (t->cols) p->shape[1] = t->cols;
    p->rows = t->rows, p->cols = t->cols;
    p->transposed = t->conv;
    return p;
}

int mmp_gpt2_make_trainable(mmp_gpt2 *m, mmp_tx_params *P, char *err, size_t errlen) {
    (void)err, (void)errlen;
    memset(P, 0, sizeof *P);
    mmp_tx_encoder_unpack(&m->enc);
    head_unpack(m);
    mmp_gpt2_grad *g = P->gpt2 = mmp_xcalloc(1, sizeof *g);
    g->block = mmp_xcalloc((size_t)m->cfg.layers + 1, sizeof *g->block);
    tens *t;
    int n = tensor_list(m, &t);
    const size_t C = (size_t)m->cfg.C;
    char nm[160];
    for (int i = 0; i < n; i++) {
        snprintf(nm, sizeof nm, "transformer.%s", t[i].name);
        float *gw = padd(P, nm, t[i].w, &t[i])->g;
        int l;
        char rest[96];
        if (!strcmp(t[i].name, "wte.weight")) g->wte = gw;
        else if (!strcmp(t[i].name, "wpe.weight")) g->wpe = gw;
        else if (!strcmp(t[i].name, "ln_f.weight")) g->lnf_w = gw;
        else if (!strcmp(t[i].name, "ln_f.bias")) g->lnf_b = gw;
        else if (sscanf(t[i].name, "h.%d.%95s", &l, rest) == 2) {
            mmp_tx_block_grad *b = &g->block[l];
            if (!strcmp(rest, "ln_1.weight")) b->ln1_w = gw;
            else if (!strcmp(rest, "ln_1.bias")) b->ln1_b = gw;
            else if (!strcmp(rest, "attn.c_attn.weight")) b->q_w = gw, b->k_w = gw + C * C, b->v_w = gw + 2 * C * C;
            else if (!strcmp(rest, "attn.c_attn.bias")) b->q_b = gw, b->k_b = gw + C, b->v_b = gw + 2 * C;
            else if (!strcmp(rest, "attn.c_proj.weight")) b->o_w = gw;
            else if (!strcmp(rest, "attn.c_proj.bias")) b->o_b = gw;
            else if (!strcmp(rest, "ln_2.weight")) b->ln2_w = gw;
            else if (!strcmp(rest, "ln_2.bias")) b->ln2_b = gw;
            else if (!strcmp(rest, "mlp.c_fc.weight")) b->fc1_w = gw;
            else if (!strcmp(rest, "mlp.c_fc.bias")) b->fc1_b = gw;
            else if (!strcmp(rest, "mlp.c_proj.weight")) b->fc2_w = gw;
            else if (!strcmp(rest, "mlp.c_proj.bias")) b->fc2_b = gw;
        }
    }
    free(t);
    return 0;
}

void mmp_gpt2_pack(mmp_gpt2 *m) { pack_all(m); }

struct mmp_gpt2_saved {
    int nseq, T, frozen, recompute;
    int *lens;
    float *saved;        /* the encoder's */
    float *xe, *mu, *rs; /* the encoder's output (ln_f's input), ln_f's mean, rstd */
    float *xn;           /* ln_f's output (the lm_head's input) */
};

void mmp_gpt2_saved_free(mmp_gpt2_saved *a) {
    if (!a) return;
    free(a->lens), free(a->saved), free(a->xe), free(a->mu), free(a->rs), free(a->xn);
    free(a);
}

mmp_gpt2_saved *mmp_gpt2_fwd_train(const mmp_gpt2 *m, const float *x, const int *lens, int nseq, int frozen,
                                   float *logits, char *err, size_t errlen) {
    size_t T;
    if (check_lens(m, lens, nseq, &T, err, errlen)) return NULL;
    const int C = m->cfg.C;
    mmp_gpt2_saved *a = mmp_xcalloc(1, sizeof *a);
    a->nseq = nseq, a->T = (int)T, a->frozen = frozen > 0 ? frozen : 0;
    a->lens = mmp_xmalloc(sizeof(int) * (size_t)(nseq + 1));
    memcpy(a->lens, lens, sizeof(int) * (size_t)nseq);
    a->xe = mmp_xmalloc((T * C + 1) * sizeof(float));
    memcpy(a->xe, x, T * C * sizeof(float));
    add_pos(m, a->xe, lens, NULL, nseq);
    mmp_tx_encoder_fwd_part(&m->enc, a->xe, lens, nseq, a->frozen, &a->saved, &a->recompute);
    a->xn = mmp_xmalloc((T * C + 1) * sizeof(float));
    a->mu = mmp_xmalloc((T + 1) * sizeof(float));
    a->rs = mmp_xmalloc((T + 1) * sizeof(float));
    mmp_tx_layernorm_fwd(a->xn, a->mu, a->rs, a->xe, m->lnf_w, m->lnf_b, (int)T, C, m->cfg.eps);
    mmp_gpt2_lm_head(m, a->xn, (int)T, logits);
    return a;
}

/* the tied lm_head's backward, rows split among threads (each output row one
 * GEMM row: the same bits for any count): dxn[T, C] = dlogits wte;
 * dwte[V, C] += dlogits^T xn */
typedef struct {
    const mmp_gpt2 *m;
    const float *dlogits, *xn;
    float *dxn, *dwte;
    int T, nt;
} head_bwd_run;

typedef struct {
    const head_bwd_run *R;
    int tid;
} head_bwd_worker;

static void *head_bwd_thread(void *arg) {
    const head_bwd_run *R = ((const head_bwd_worker *)arg)->R;
    const int tid = ((const head_bwd_worker *)arg)->tid;
    const int C = R->m->cfg.C, V = R->m->cfg.vocab, T = R->T, nt = R->nt;
    int t0 = (int)((long)T * tid / nt), t1 = (int)((long)T * (tid + 1) / nt);
    if (t1 > t0)
        mmp_sgemm(MMP_GEMM_N, MMP_GEMM_N, t1 - t0, C, V, 1.0f, R->dlogits + (size_t)t0 * V, V, R->m->wte, C, 0.0f,
                  R->dxn + (size_t)t0 * C, C);
    if (R->dwte) {
        int v0 = (int)((long)V * tid / nt), v1 = (int)((long)V * (tid + 1) / nt);
        if (v1 > v0)
            mmp_sgemm(MMP_GEMM_T, MMP_GEMM_N, v1 - v0, C, T, 1.0f, R->dlogits + v0, V, R->xn, C, 1.0f,
                      R->dwte + (size_t)v0 * C, C);
    }
    return NULL;
}

void mmp_gpt2_bwd(const mmp_gpt2 *m, const mmp_gpt2_saved *a, const float *dlogits, const mmp_gpt2_grad *g, float *dx) {
    const int C = m->cfg.C, T = a->T;
    if (T == 0) return;
    float *dxn = mmp_xmalloc(((size_t)T * C + 1) * sizeof *dxn);
    {
        int nt = m->enc.threads > 1 ? m->enc.threads : 1;
        if (nt > 64) nt = 64;
        head_bwd_run R = {m, dlogits, a->xn, dxn, g ? g->wte : NULL, T, nt};
        pthread_t th[64];
        head_bwd_worker w[64];
        for (int t = 0; t < nt; t++) w[t] = (head_bwd_worker){&R, t};
        for (int t = 1; t < nt; t++)
            if (pthread_create(&th[t], NULL, head_bwd_thread, &w[t])) mmp_die("cannot create a thread");
        head_bwd_thread(&w[0]);
        for (int t = 1; t < nt; t++) pthread_join(th[t], NULL);
    }
    float *dh = mmp_xcalloc((size_t)T * C + 1, sizeof *dh);
    mmp_tx_layernorm_bwd(dh, g ? g->lnf_w : NULL, g ? g->lnf_b : NULL, dxn, a->xe, m->lnf_w, a->mu, a->rs, T, C);
    free(dxn);
    /* (the encoder's backward reads its own saved input: a->xe was overwritten in place by its output) */
    mmp_tx_encoder_bwd_part(&m->enc, a->saved, a->lens, a->nseq, a->frozen, a->recompute, dh, g ? g->block : NULL);
    if (a->frozen > 0) {
        free(dh);
        return;
    }
    if (g && g->wpe) {
        size_t o = 0;
        for (int s = 0; s < a->nseq; s++) {
            for (size_t k = 0; k < (size_t)a->lens[s] * C; k++) g->wpe[k] += dh[o * C + k];
            o += (size_t)a->lens[s];
        }
    }
    if (dx)
        for (size_t k = 0; k < (size_t)T * C; k++) dx[k] += dh[k];
    free(dh);
}

void mmp_gpt2_embed_bwd(const mmp_gpt2 *m, float *dwte, const float *dx, const int32_t *ids, int n) {
    mmp_tx_embed_bwd(dwte, dx, ids, n, m->cfg.C);
}
