/* train/caption.c: ClipCap captioning (train/caption.h, train/caption_train.h):
 * the model (mapping network + GPT-2 decoder + tokenizer), its NLL loss and
 * gradients, the data rows, the checkpoint tensors and mmp_captioner_load. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "mmp.h"
#include "text/bpe.h"
#include "text/wordlevel.h"
#include "train/caption.h"
#include "train/caption_map.h"
#include "train/caption_train.h"
#include "train/unfreeze.h"
#include "tx/gpt2.h"
#include "tx/lora.h"
#include "tx/lora_train.h"

struct mmp_captioner {
    mmp_capmap map;
    mmp_gpt2 *dec;
    int K, C, V, eos;
    int unfreeze;          /* MMP_UNFREEZE_HEAD | LORA | ALL */
    int scratch;           /* the decoder started from scratch (its weights always go in the checkpoint) */
    mmp_tx_params P;       /* the decoder's trainable parameters (all: every one; lora: the adapters) */
    int has_P;
    mmp_tx_lora_set *lora;
    mmp_param *params;     /* the optimizer's list: the mapper's then the decoder's views */
    int np, nmap;
    mmp_wordlevel *wl;
    mmp_bpe *bpe;
    char feature[64];
    int64_t D, N, F;       /* feature values per token, tokens (0 pooled), values per record */
    int maxlen;            /* caption tokens + EOS */
    int threads;
    /* training buffers */
    float *feat, *x, *logits, *dlogits, *dx, *prefix, *dprefix;
    int32_t *ids;
    int *lens;
    size_t cap_rows, cap_T;
    mmp_gpt2_saved *saved;
};

/* ------------------------------------------------------------------ tokenizer */

static int is_wordlevel(const char *path) {
    size_t n = strlen(path);
    if (n < 5 || strcmp(path + n - 5, ".json")) return 0;
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    return strcmp(b, "vocab.json") != 0;
}

/* the tokenizer file: --tokenizer, else the decoder folder's GPT-2 BPE */
static int open_tokenizer(mmp_captioner *m, const char *tok, const char *decoder, char *err, size_t errlen) {
    const char *p = tok && *tok ? tok : decoder;
    char *own = NULL;
    if (!(tok && *tok)) { /* a decoder folder with a word-level tokenizer.json (mmp_captioner_save_decoder) */
        own = mmp_xasprintf("%s/tokenizer.json", decoder);
        struct stat sb;
        int wl = stat(own, &sb) == 0 && S_ISREG(sb.st_mode) && !strstr(decoder, ".safetensors");
        if (wl) {
            m->wl = mmp_wl_load(own, err, errlen);
            free(own);
            if (!m->wl) return -1;
            m->eos = MMP_WL_EOS;
            return 0;
        }
        free(own);
    }
    if (tok && *tok && is_wordlevel(tok)) {
        m->wl = mmp_wl_load(tok, err, errlen);
        if (!m->wl) return -1;
        m->eos = MMP_WL_EOS;
        return 0;
    }
    char e2[512];
    m->bpe = mmp_bpe_load_gpt2(p, e2, sizeof e2);
    if (!m->bpe) return mmp_errf(err, errlen, "the caption tokenizer: %s (--tokenizer: a tokenizer.json WordLevel file or a GPT-2 vocab.json + merges.txt folder)", e2);
    m->eos = mmp_bpe_eot_id(m->bpe);
    return 0;
}

static int tok_size(const mmp_captioner *m) { return m->wl ? mmp_wl_size(m->wl) : mmp_bpe_vocab_size(m->bpe); }

int mmp_captioner_encode(const mmp_captioner *m, const char *text, int32_t *ids, int max, char *err, size_t errlen) {
    if (m->wl) return mmp_wl_encode(m->wl, text, ids, max);
    int32_t *v = NULL;
    int n = 0, cap = 0;
    if (mmp_bpe_tokenize(m->bpe, text, strlen(text), MMP_UTF8_REPLACE, &v, &n, &cap, err, errlen)) {
        free(v);
        return -1;
    }
    for (int i = 0; i < n && i < max; i++) ids[i] = v[i];
    free(v);
    return n;
}

char *mmp_captioner_decode(const mmp_captioner *m, const int32_t *ids, int n) {
    if (m->wl) return mmp_wl_decode(m->wl, ids, n);
    int32_t *keep = mmp_xmalloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    int k = 0;
    for (int i = 0; i < n; i++)
        if (ids[i] != m->eos && ids[i] >= 0 && ids[i] < mmp_bpe_vocab_size(m->bpe)) keep[k++] = ids[i];
    char e2[256];
    char *s = mmp_bpe_decode(m->bpe, keep, k, NULL, e2, sizeof e2);
    free(keep);
    return s ? s : mmp_xstrdup("");
}

int mmp_captioner_eos(const mmp_captioner *m) { return m->eos; }

int mmp_captioner_save_decoder(const mmp_captioner *m, const char *dir, char *err, size_t errlen) {
    if (mmp_gpt2_save(m->dec, dir, err, errlen)) return -1;
    if (!m->wl) return 0;
    char *p = mmp_xasprintf("%s/tokenizer.json", dir);
    int rc = mmp_wl_save(m->wl, p, err, errlen);
    free(p);
    return rc;
}
int mmp_captioner_vocab(const mmp_captioner *m) { return m->V; }
struct mmp_gpt2 *mmp_captioner_decoder(const mmp_captioner *m) { return m->dec; }
int mmp_captioner_prefix_length(const mmp_captioner *m) { return m->K; }
int mmp_captioner_width(const mmp_captioner *m) { return m->C; }
const char *mmp_captioner_feature(const mmp_captioner *m) { return m->feature; }
int64_t mmp_captioner_feature_dim(const mmp_captioner *m) { return m->D; }
int64_t mmp_captioner_feature_tokens(const mmp_captioner *m) { return m->N; }
int64_t mmp_captioner_feature_size(const mmp_captioner *m) { return m->F; }

int mmp_captioner_prefix(const mmp_captioner *m, const float *feat, int n, float *prefix) {
    if (n < 0) return -1;
    mmp_capmap_forward_const(&m->map, feat, n, prefix);
    return 0;
}

/* ------------------------------------------------------------------ the model */

static void strip_ext(const char *out, char *buf, size_t n) {
    const char *slash = strrchr(out, '/'), *dot = strrchr(out, '.');
    if (dot && (!slash || dot > slash)) snprintf(buf, n, "%.*s", (int)(dot - out), out);
    else snprintf(buf, n, "%s", out);
}

/* a config.json value of the decoder folder (n_positions ...), -1 when absent */
static int decoder_config_int(const char *decoder, const char *key) {
    struct stat sb;
    char *p = stat(decoder, &sb) == 0 && S_ISDIR(sb.st_mode) ? mmp_xasprintf("%s/config.json", decoder) : NULL;
    if (!p) {
        const char *slash = strrchr(decoder, '/');
        p = slash ? mmp_xasprintf("%.*s/config.json", (int)(slash - decoder), decoder) : mmp_xstrdup("config.json");
    }
    json_t *j = NULL;
    char e2[256];
    int v = -1;
    if (mmp_json_load(p, &j, e2, sizeof e2) == 1) {
        json_t *x = json_object_get(j, key);
        if (json_is_integer(x)) v = (int)json_integer_value(x);
        json_decref(j);
    }
    free(p);
    return v;
}

static void build_params(mmp_captioner *m) {
    int nd = m->has_P ? m->P.n : 0;
    m->nmap = m->map.np;
    m->np = m->nmap + nd;
    m->params = mmp_xcalloc((size_t)(m->np ? m->np : 1), sizeof(mmp_param));
    for (int i = 0; i < m->nmap; i++) {
        m->params[i] = m->map.p[i];
        m->params[i].s1 = m->params[i].s2 = NULL;
    }
    for (int i = 0; i < nd; i++) {
        const mmp_tx_param *q = &m->P.p[i];
        mmp_param *p = &m->params[m->nmap + i];
        snprintf(p->name, sizeof p->name, "gpt.%s", q->name);
        p->ndim = q->ndim;
        for (int k = 0; k < q->ndim && k < MMP_PARAM_MAXDIM; k++) p->shape[k] = q->shape[k];
        p->n = q->n;
        p->w = q->w;
        p->g = q->g;
        p->decay = 1;
    }
}

/* the decoder's trainable parameters for --unfreeze (all: every one; lora: adapters) */
static int decoder_trainable(mmp_captioner *m, int unfreeze, const mmp_tx_lora_opts *lo, char *err, size_t errlen) {
    m->unfreeze = unfreeze;
    if (unfreeze == MMP_UNFREEZE_HEAD) return 0;
    memset(&m->P, 0, sizeof m->P);
    m->has_P = 1;
    if (unfreeze == MMP_UNFREEZE_ALL) return mmp_gpt2_make_trainable(m->dec, &m->P, err, errlen);
    m->lora = mmp_gpt2_lora_add(m->dec, lo, &m->P, err, errlen);
    return m->lora ? 0 : -1;
}

static mmp_captioner *new_model(const char *decoder, const char *tokenizer, int mapper, int K, int layers, int64_t D, int64_t N,
                                const char *feature, char *err, size_t errlen) {
    mmp_captioner *m = mmp_xcalloc(1, sizeof *m);
    char e2[1024];
    m->dec = mmp_gpt2_load(decoder, e2, sizeof e2);
    if (!m->dec) {
        mmp_errf(err, errlen, "--decoder: %s", e2);
        free(m);
        return NULL;
    }
    m->C = m->dec->cfg.C;
    m->V = m->dec->cfg.vocab;
    m->K = K;
    m->D = D, m->N = N, m->F = N > 0 ? N * D : D;
    snprintf(m->feature, sizeof m->feature, "%s", feature);
    if (open_tokenizer(m, tokenizer, decoder, err, errlen)) goto fail;
    if (m->bpe && m->dec->cfg.eos_id >= 0) m->eos = m->dec->cfg.eos_id; /* config.json's eos_token_id, as generate() takes it */
    if (tok_size(m) != m->V) {
        mmp_errf(err, errlen, "the tokenizer %s has %d tokens, the decoder %s a vocabulary of %d: they must match",
                 tokenizer && *tokenizer ? tokenizer : decoder, tok_size(m), decoder, m->V);
        goto fail;
    }
    if (m->eos < 0 || m->eos >= m->V) {
        mmp_errf(err, errlen, "the tokenizer %s has no end-of-text token", tokenizer && *tokenizer ? tokenizer : decoder);
        goto fail;
    }
    if (K < 1 || K >= m->dec->cfg.ctx) {
        mmp_errf(err, errlen, "--prefix-length %d: must be 1..%d (the decoder's context %d)", K, m->dec->cfg.ctx - 1, m->dec->cfg.ctx);
        goto fail;
    }
    if (mmp_capmap_init(&m->map, mapper, D, N, K, m->C, layers, err, errlen)) goto fail;
    return m;
fail:
    mmp_captioner_free(m);
    return NULL;
}

void mmp_captioner_free(mmp_captioner *m) {
    if (!m) return;
    if (m->params) {
        for (int i = 0; i < m->np; i++) {
            free(m->params[i].s1);
            free(m->params[i].s2);
        }
        free(m->params);
    }
    mmp_gpt2_saved_free(m->saved);
    if (m->has_P) mmp_tx_params_free(&m->P);
    if (m->lora) mmp_tx_lora_set_free(m->lora);
    mmp_capmap_free(&m->map);
    if (m->dec) mmp_gpt2_free(m->dec);
    mmp_wl_free(m->wl);
    if (m->bpe) mmp_bpe_free(m->bpe);
    free(m->feat); free(m->x); free(m->logits); free(m->dlogits); free(m->dx); free(m->prefix); free(m->dprefix);
    free(m->ids); free(m->lens);
    free(m);
}

mmp_captioner *mmp_caption_new(const mmp_train_cfg *c, char *err, size_t errlen) {
    int kind;
    if (mmp_capmap_kind_parse(c->mapper, &kind)) { mmp_errf(err, errlen, "--mapper %s: expected mlp or transformer", c->mapper); return NULL; }
    if (!c->decoder[0]) { mmp_errf(err, errlen, "--head caption: no decoder (--decoder PATH or the --decoder-* sizes)"); return NULL; }
    if (c->unfreeze_kind != MMP_UNFREEZE_HEAD && c->unfreeze_kind != MMP_UNFREEZE_LORA && c->unfreeze_kind != MMP_UNFREEZE_ALL) {
        mmp_errf(err, errlen, "--head caption: --unfreeze %s: expected head, lora or all", c->unfreeze);
        return NULL;
    }
    mmp_captioner *m = new_model(c->decoder, c->tokenizer, kind, c->prefix_length, c->mapper_layers, c->feat_dim, c->feat_tokens,
                                 c->feature, err, errlen);
    if (!m) return NULL;
    m->maxlen = c->max_length;
    mmp_capmap_init_weights(&m->map, c->seed);
    mmp_tx_lora_opts lo;
    mmp_tx_lora_opts_default(&lo);
    lo.r = c->lora_rank, lo.alpha = c->lora_alpha, lo.dropout = c->lora_dropout, lo.seed = c->seed;
    lo.targets = c->lora_targets[0] ? c->lora_targets : MMP_GPT2_LORA_DEFAULT_TARGETS;
    char e2[1024];
    if (decoder_trainable(m, c->unfreeze_kind, &lo, e2, sizeof e2)) {
        mmp_errf(err, errlen, "--head caption: %s", e2);
        mmp_captioner_free(m);
        return NULL;
    }
    build_params(m);
    return m;
}

mmp_param *mmp_caption_params(mmp_captioner *m, int *np) {
    *np = m->np;
    return m->params;
}

int64_t mmp_caption_row_dim(const mmp_captioner *m) { return m->F + m->maxlen; }

void mmp_caption_set_threads(mmp_captioner *m, int threads) {
    m->threads = threads;
    m->map.threads = threads;
    mmp_gpt2_set_threads(m->dec, threads);
}

/* ------------------------------------------------------------------ loss */

static void grow(mmp_captioner *m, int B, size_t T) {
    size_t C = (size_t)m->C, V = (size_t)m->V;
    if ((size_t)B > m->cap_rows) {
        m->feat = mmp_xrealloc(m->feat, sizeof(float) * (size_t)B * (size_t)m->F);
        m->prefix = mmp_xrealloc(m->prefix, sizeof(float) * (size_t)B * (size_t)m->K * C);
        m->dprefix = mmp_xrealloc(m->dprefix, sizeof(float) * (size_t)B * (size_t)m->K * C);
        m->lens = mmp_xrealloc(m->lens, sizeof(int) * (size_t)B);
        m->cap_rows = (size_t)B;
    }
    if (T > m->cap_T) {
        m->x = mmp_xrealloc(m->x, sizeof(float) * T * C);
        m->dx = mmp_xrealloc(m->dx, sizeof(float) * T * C);
        m->logits = mmp_xrealloc(m->logits, sizeof(float) * T * V);
        m->dlogits = mmp_xrealloc(m->dlogits, sizeof(float) * T * V);
        m->ids = mmp_xrealloc(m->ids, sizeof(int32_t) * T);
        m->cap_T = T;
    }
}

double mmp_caption_loss(mmp_captioner *m, const float *rows, int B, double smoothing, int grad, uint64_t step_seed,
                        int64_t *tokens) {
    int K = m->K, C = m->C, V = m->V;
    int64_t RD = mmp_caption_row_dim(m);
    size_t T = 0;
    for (int b = 0; b < B; b++) T += (size_t)K + (size_t)rows[(size_t)b * RD + m->F];
    grow(m, B, T);
    for (int b = 0; b < B; b++) {
        const float *r = rows + (size_t)b * RD;
        memcpy(m->feat + (size_t)b * m->F, r, sizeof(float) * (size_t)m->F);
        m->lens[b] = K + (int)r[m->F];
    }
    if (m->lora) mmp_tx_lora_set_step(m->lora, step_seed);
    mmp_capmap_forward(&m->map, m->feat, B, grad, m->prefix);
    /* x: each sequence's K prefix rows then its tokens' embeddings */
    size_t off = 0;
    for (int b = 0; b < B; b++) {
        const float *r = rows + (size_t)b * RD;
        int n = m->lens[b] - K;
        memcpy(m->x + off * C, m->prefix + (size_t)b * K * C, sizeof(float) * (size_t)K * C);
        for (int j = 0; j < n; j++) m->ids[off + K + j] = (int32_t)r[m->F + 1 + j];
        mmp_gpt2_embed(m->dec, m->ids + off + K, n, m->x + (off + K) * C);
        off += (size_t)m->lens[b];
    }
    char e2[512];
    if (grad) {
        mmp_gpt2_saved_free(m->saved);
        m->saved = mmp_gpt2_fwd_train(m->dec, m->x, m->lens, B, 0, m->logits, e2, sizeof e2);
        if (!m->saved) mmp_die("--head caption: %s", e2);
    } else if (mmp_gpt2_fwd(m->dec, m->x, m->lens, B, NULL, m->logits, e2, sizeof e2)) {
        mmp_die("--head caption: %s", e2);
    }
    /* the targets: position K-1+j predicts token j (j < n) or EOS (j = n) */
    int64_t count = 0;
    for (int b = 0; b < B; b++) count += m->lens[b] - K + 1;
    if (tokens) *tokens = count;
    double sum = 0, e = smoothing;
    if (grad) memset(m->dlogits, 0, sizeof(float) * T * (size_t)V);
    off = 0;
    for (int b = 0; b < B; b++) {
        int n = m->lens[b] - K;
        for (int j = 0; j <= n; j++) {
            size_t row = off + (size_t)K - 1 + (size_t)j;
            int y = j < n ? m->ids[off + K + j] : m->eos;
            const float *z = m->logits + row * V;
            double mx = z[0];
            for (int k = 1; k < V; k++) mx = z[k] > mx ? z[k] : mx;
            double se = 0, sz = 0;
            for (int k = 0; k < V; k++) se += exp((double)z[k] - mx), sz += (double)z[k];
            double lse = mx + log(se);
            double l = (1 - e) * (lse - z[y]) + (e > 0 ? e * (lse - sz / V) : 0);
            sum += l;
            if (grad) {
                float *dz = m->dlogits + row * V;
                for (int k = 0; k < V; k++) dz[k] = (float)((exp((double)z[k] - lse) - e / V) / (double)count);
                dz[y] -= (float)((1 - e) / (double)count);
            }
        }
        off += (size_t)m->lens[b];
    }
    if (!grad) return sum / (double)count;
    if (m->has_P) mmp_tx_params_zero_grad(&m->P);
    memset(m->dx, 0, sizeof(float) * T * (size_t)C);
    mmp_gpt2_grad *g = m->has_P ? m->P.gpt2 : NULL;
    mmp_gpt2_bwd(m->dec, m->saved, m->dlogits, g, m->dx);
    off = 0;
    for (int b = 0; b < B; b++) {
        memcpy(m->dprefix + (size_t)b * K * C, m->dx + off * C, sizeof(float) * (size_t)K * C);
        if (g && g->wte) mmp_gpt2_embed_bwd(m->dec, g->wte, m->dx + (off + K) * C, m->ids + off + K, m->lens[b] - K);
        off += (size_t)m->lens[b];
    }
    mmp_capmap_backward(&m->map, m->feat, B, m->dprefix);
    return sum / (double)count;
}

/* ------------------------------------------------------------------ checkpoint tensors */

static int lora_only(const mmp_captioner *m) { return m->unfreeze == MMP_UNFREEZE_LORA; }

void mmp_caption_save(const mmp_captioner *m, mmp_st_writer *w) {
    for (int i = 0; i < m->map.np; i++) {
        const mmp_param *p = &m->map.p[i];
        mmp_st_writer_add_f32(w, p->name, p->w, p->ndim, p->shape);
    }
    if (!m->has_P) return;
    for (int i = 0; i < m->P.n; i++) {
        const mmp_tx_param *q = &m->P.p[i];
        char name[300];
        snprintf(name, sizeof name, "gpt.%s", q->name);
        if (!q->transposed) {
            mmp_st_writer_add_f32(w, name, q->w, q->ndim, q->shape);
            continue;
        }
        float *t = mmp_xmalloc(sizeof(float) * q->n); /* w is [cols, rows]: the file's [rows, cols] */
        for (int r = 0; r < q->rows; r++)
            for (int c = 0; c < q->cols; c++) t[(size_t)r * q->cols + c] = q->w[(size_t)c * q->rows + r];
        mmp_st_writer_add_f32(w, name, t, q->ndim, q->shape);
        free(t);
    }
}

void mmp_caption_param_file_layout(const mmp_captioner *m, int i, const float *src, float *dst) {
    const mmp_param *p = &m->params[i];
    const mmp_tx_param *q = i >= m->nmap ? &m->P.p[i - m->nmap] : NULL;
    if (!q || !q->transposed) {
        memcpy(dst, src, sizeof(float) * p->n);
        return;
    }
    for (int r = 0; r < q->rows; r++)
        for (int c = 0; c < q->cols; c++) dst[(size_t)r * q->cols + c] = src[(size_t)c * q->rows + r];
}

static int read_tx_param(const mmp_tx_param *q, const mmp_safetensors *st, const char *name, char *err, size_t errlen) {
    if (!q->transposed) return mmp_st_read_f32(st, name, q->ndim, q->shape, q->w, err, errlen);
    float *t = mmp_xmalloc(sizeof(float) * q->n);
    int rc = mmp_st_read_f32(st, name, q->ndim, q->shape, t, err, errlen);
    if (!rc)
        for (int r = 0; r < q->rows; r++)
            for (int c = 0; c < q->cols; c++) q->w[(size_t)c * q->rows + r] = t[(size_t)r * q->cols + c];
    free(t);
    return rc;
}

static int load_map(mmp_captioner *m, const mmp_safetensors *st, char *err, size_t errlen) {
    char e2[512];
    for (int i = 0; i < m->map.np; i++) {
        mmp_param *p = &m->map.p[i];
        if (mmp_st_read_f32(st, p->name, p->ndim, p->shape, p->w, e2, sizeof e2)) return mmp_errf(err, errlen, "%s: %s", st->path, e2);
    }
    return 0;
}

int mmp_caption_load_weights(mmp_captioner *m, const mmp_safetensors *st, char *err, size_t errlen) {
    if (load_map(m, st, err, errlen)) return -1;
    if (!m->has_P) return 0;
    char e2[512];
    for (int i = 0; i < m->P.n; i++) {
        char name[300];
        snprintf(name, sizeof name, "gpt.%s", m->P.p[i].name);
        if (!mmp_st_get(st, name) && !lora_only(m)) continue; /* a decoder the checkpoint did not train: the folder's */
        if (read_tx_param(&m->P.p[i], st, name, e2, sizeof e2)) return mmp_errf(err, errlen, "%s: %s", st->path, e2);
    }
    return 0;
}

/* ------------------------------------------------------------------ mmp_captioner_load */

/* a relative path of the checkpoint's metadata: as recorded, else beside the checkpoint */
static char *beside(const char *ckpt, const char *p) {
    if (!p || !*p || p[0] == '/' || access(p, F_OK) == 0) return mmp_xstrdup(p ? p : "");
    const char *slash = strrchr(ckpt, '/'), *base = strrchr(p, '/');
    base = base ? base + 1 : p;
    char *q = slash ? mmp_xasprintf("%.*s/%s", (int)(slash - ckpt), ckpt, base) : mmp_xstrdup(base);
    if (access(q, F_OK) == 0) return q;
    free(q);
    return mmp_xstrdup(p);
}

static int meta_int(const mmp_meta *mt, const char *k, int64_t def, int64_t *out) {
    const char *s = mmp_meta_get(mt, k);
    if (!s) { *out = def; return def >= 0 ? 0 : -1; }
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    if (e == s || *e || errno) return -1;
    *out = v;
    return 0;
}

/* merges each adapter into its base weight: W += (alpha/r) B A (PEFT's merge) */
static void merge_lora(mmp_captioner *m) {
    for (int i = 0; i < mmp_tx_lora_count(m->lora); i++) {
        int layer;
        const mmp_tx_lora *a = mmp_tx_lora_site(m->lora, i, &layer);
        const char *mod = mmp_tx_lora_module(m->lora, i);
        mmp_tx_block *b = &m->dec->enc.block[layer];
        size_t L = strlen(mod);
        const float *W = NULL;
        if (L >= 6 && !strcmp(mod + L - 6, "c_attn")) W = b->q_w;
        else if (L >= 11 && !strcmp(mod + L - 11, "attn.c_proj")) W = b->o_w;
        else if (L >= 4 && !strcmp(mod + L - 4, "c_fc")) W = b->fc1_w;
        else if (L >= 10 && !strcmp(mod + L - 10, "mlp.c_proj")) W = b->fc2_w;
        if (W) mmp_tx_lora_merge((float *)W, a);
    }
}

int mmp_captioner_probe(const char *path) {
    struct stat sb;
    if (stat(path, &sb) || !S_ISREG(sb.st_mode)) return 0;
    mmp_safetensors st;
    char e2[512];
    if (mmp_st_open(&st, path, e2, sizeof e2)) return 0;
    const char *h = mmp_meta_get(&st.meta, "head"), *f = mmp_meta_get(&st.meta, "format");
    int yes = h && f && !strcmp(h, "caption") && !strcmp(f, "mmpipe-head");
    mmp_st_close(&st);
    return yes;
}

mmp_captioner *mmp_captioner_load(const char *path, char *err, size_t errlen) {
    mmp_safetensors st;
    char e2[1024];
    if (mmp_st_open(&st, path, e2, sizeof e2)) { mmp_errf(err, errlen, "%s", e2); return NULL; }
    mmp_captioner *m = NULL;
    char *dec = NULL, *tok = NULL;
    const mmp_meta *mt = &st.meta;
    const char *fmt = mmp_meta_get(mt, "format"), *head = mmp_meta_get(mt, "head");
    if (!fmt || strcmp(fmt, "mmpipe-head") || !head || strcmp(head, "caption")) {
        mmp_errf(err, errlen, "%s: not a captioner (an mmp-train-step --head caption checkpoint)", path);
        goto out;
    }
    int kind;
    int64_t K, layers, D, N;
    const char *mapper = mmp_meta_get(mt, "mapper"), *feature = mmp_meta_get(mt, "feature"), *unf = mmp_meta_get(mt, "unfreeze");
    if (!mapper || mmp_capmap_kind_parse(mapper, &kind) || meta_int(mt, "prefix_length", -1, &K) || K < 1 ||
        meta_int(mt, "mapper_layers", 8, &layers) || meta_int(mt, "feature_dim", -1, &D) || D < 1 ||
        meta_int(mt, "feature_tokens", 0, &N) || N < 0 || !mmp_meta_get(mt, "decoder")) {
        mmp_errf(err, errlen, "%s: bad or missing captioner metadata (mapper, prefix_length, feature_dim, decoder)", path);
        goto out;
    }
    dec = beside(path, mmp_meta_get(mt, "decoder"));
    tok = beside(path, mmp_meta_get(mt, "tokenizer"));
    m = new_model(dec, tok, kind, (int)K, (int)layers, D, N, feature ? feature : "embedding", e2, sizeof e2);
    if (!m) { mmp_errf(err, errlen, "%s: %s", path, e2); goto out; }
    int uk = MMP_UNFREEZE_ALL, un;
    if (unf && mmp_unfreeze_parse(unf, &uk, &un, e2, sizeof e2)) uk = MMP_UNFREEZE_ALL;
    mmp_tx_lora_opts lo;
    mmp_tx_lora_opts_default(&lo);
    if (uk == MMP_UNFREEZE_LORA) {
        int64_t r;
        const char *al = mmp_meta_get(mt, "lora_alpha"), *tg = mmp_meta_get(mt, "lora_targets");
        if (!meta_int(mt, "lora_rank", 8, &r)) lo.r = (int)r;
        if (al) lo.alpha = strtod(al, NULL);
        lo.targets = tg && *tg ? tg : MMP_GPT2_LORA_DEFAULT_TARGETS;
    }
    /* the decoder's trained weights: every one (all, or a scratch decoder), the adapters (lora) */
    int trained = mmp_st_get(&st, "gpt.transformer.wte.weight") != NULL;
    if (uk == MMP_UNFREEZE_LORA || trained) {
        if (decoder_trainable(m, uk == MMP_UNFREEZE_LORA ? MMP_UNFREEZE_LORA : MMP_UNFREEZE_ALL, &lo, e2, sizeof e2)) {
            mmp_errf(err, errlen, "%s: %s", path, e2);
            goto fail;
        }
    }
    if (mmp_caption_load_weights(m, &st, e2, sizeof e2)) { mmp_errf(err, errlen, "%s", e2); goto fail; }
    if (m->lora) {
        merge_lora(m);
        mmp_tx_params_free(&m->P);
        m->has_P = 0;
        mmp_tx_lora_set_free(m->lora);
        m->lora = NULL;
    }
    if (m->has_P) { /* inference only: the gradient buffers go */
        mmp_tx_params_free(&m->P);
        m->has_P = 0;
    }
    goto out;
fail:
    mmp_captioner_free(m);
    m = NULL;
out:
    free(dec);
    free(tok);
    mmp_st_close(&st);
    return m;
}

/* ------------------------------------------------------------------ data */

int mmp_caption_prepare(mmp_train_cfg *c, const char *train_path, const char *out, char *err, size_t errlen) {
    if (c->decoder[0]) return 0;
    char stem[1024];
    strip_ext(out, stem, sizeof stem);
    if (!c->tokenizer[0]) {
        /* the training captions' words */
        char rerr[512];
        mmp_reader *r = mmp_reader_open(train_path, rerr, sizeof rerr);
        if (!r) return mmp_errf(err, errlen, "%s", rerr);
        mmp_record rec;
        mmp_record_init(&rec);
        char **texts = NULL;
        size_t n = 0, cap = 0;
        int rc;
        while ((rc = mmp_reader_next(r, &rec)) == 1) {
            const mmp_strlist *sl = mmp_record_strings(&rec, c->captions_field);
            for (int i = 0; sl && i < sl->n; i++) {
                if (n == cap) { cap = cap ? 2 * cap : 1024; texts = mmp_xrealloc(texts, sizeof(char *) * cap); }
                texts[n++] = mmp_xstrdup(sl->v[i]);
            }
        }
        if (rc < 0) mmp_errf(err, errlen, "%s", mmp_reader_error(r));
        mmp_record_clear(&rec);
        mmp_reader_close(r);
        if (rc < 0) {
            for (size_t i = 0; i < n; i++) free(texts[i]);
            free(texts);
            return -1;
        }
        mmp_wordlevel *wl = mmp_wl_build((const char *const *)texts, n, c->min_count);
        for (size_t i = 0; i < n; i++) free(texts[i]);
        free(texts);
        char *tp = mmp_xasprintf("%s.tokenizer.json", stem);
        int rc2 = mmp_wl_save(wl, tp, err, errlen);
        mmp_wl_free(wl);
        if (rc2 || strlen(tp) >= sizeof c->tokenizer) { free(tp); return rc2 ? -1 : mmp_errf(err, errlen, "--out: path too long"); }
        snprintf(c->tokenizer, sizeof c->tokenizer, "%s", tp);
        free(tp);
    }
    /* the vocabulary: the tokenizer's */
    mmp_gpt2_config g;
    mmp_gpt2_config_default(&g);
    if (is_wordlevel(c->tokenizer)) {
        mmp_wordlevel *wl = mmp_wl_load(c->tokenizer, err, errlen);
        if (!wl) return -1;
        g.vocab = mmp_wl_size(wl);
        g.bos_id = MMP_WL_BOS, g.eos_id = MMP_WL_EOS, g.pad_id = MMP_WL_PAD;
        mmp_wl_free(wl);
    } else {
        char e2[512];
        mmp_bpe *b = mmp_bpe_load_gpt2(c->tokenizer, e2, sizeof e2);
        if (!b) return mmp_errf(err, errlen, "--tokenizer: %s", e2);
        g.vocab = mmp_bpe_vocab_size(b);
        g.bos_id = g.eos_id = mmp_bpe_eot_id(b);
        g.pad_id = -1;
        mmp_bpe_free(b);
    }
    g.layers = c->decoder_layers, g.C = c->decoder_width, g.NH = c->decoder_heads, g.ctx = c->decoder_context;
    g.inter = 4 * g.C;
    char e2[512];
    if (mmp_gpt2_config_check(&g, e2, sizeof e2)) return mmp_errf(err, errlen, "the scratch decoder (--decoder-*): %s", e2);
    mmp_gpt2 *d = mmp_gpt2_init(&g, mmp_rng_derive(c->seed, 0x475054ULL /* GPT */, 0), e2, sizeof e2);
    if (!d) return mmp_errf(err, errlen, "the scratch decoder: %s", e2);
    char *dp = mmp_xasprintf("%s.decoder", stem);
    int rc = mmp_gpt2_save(d, dp, e2, sizeof e2);
    mmp_gpt2_free(d);
    if (rc) { free(dp); return mmp_errf(err, errlen, "%s", e2); }
    char *rp = realpath(dp, NULL);
    snprintf(c->decoder, sizeof c->decoder, "%s", rp ? rp : dp);
    free(rp);
    free(dp);
    rp = realpath(c->tokenizer, NULL);
    if (rp && strlen(rp) < sizeof c->tokenizer) snprintf(c->tokenizer, sizeof c->tokenizer, "%s", rp);
    free(rp);
    return 0;
}

static int is_float(mmp_dtype t) { return t == MMP_F32 || t == MMP_F16 || t == MMP_BF16; }

int mmp_caption_load_data(mmp_dataset *d, mmp_train_cfg *c, const char *path, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    mmp_header_init(&d->hdr);
    if (!c->decoder[0]) return mmp_errf(err, errlen, "--head caption needs --decoder PATH (a GPT-2 folder) or a decoder from scratch");
    char *rp = realpath(c->decoder, NULL);
    if (rp && strlen(rp) < sizeof c->decoder) snprintf(c->decoder, sizeof c->decoder, "%s", rp);
    free(rp);
    if (c->tokenizer[0]) {
        rp = realpath(c->tokenizer, NULL);
        if (rp && strlen(rp) < sizeof c->tokenizer) snprintf(c->tokenizer, sizeof c->tokenizer, "%s", rp);
        free(rp);
    }
    mmp_captioner tk;
    memset(&tk, 0, sizeof tk);
    if (open_tokenizer(&tk, c->tokenizer, c->decoder, err, errlen)) return -1;
    int dv = decoder_config_int(c->decoder, "vocab_size");
    if (dv > 0 && dv != tok_size(&tk)) {
        mmp_errf(err, errlen, "the tokenizer %s has %d tokens, the decoder %s a vocabulary of %d: they must match",
                 c->tokenizer[0] ? c->tokenizer : c->decoder, tok_size(&tk), c->decoder, dv);
        mmp_wl_free(tk.wl);
        if (tk.bpe) mmp_bpe_free(tk.bpe);
        return -1;
    }
    if (c->max_length <= 0) {
        int ctx = decoder_config_int(c->decoder, "n_positions");
        if (ctx < 0) ctx = 1024;
        c->max_length = ctx - c->prefix_length;
        if (c->max_length > 64) c->max_length = 64;
    }
    if (c->max_length < 2) {
        mmp_wl_free(tk.wl);
        if (tk.bpe) mmp_bpe_free(tk.bpe);
        return mmp_errf(err, errlen, "--max-length %d: at least 2 (a token and the end of text)", c->max_length);
    }
    char rerr[512];
    mmp_reader *r = mmp_reader_open(path, rerr, sizeof rerr);
    int ret = -1;
    if (!r) { mmp_errf(err, errlen, "%s", rerr); goto out0; }
    snprintf(d->name, sizeof d->name, "%s", mmp_reader_name(r));
    mmp_header_copy(&d->hdr, mmp_reader_header(r));
    mmp_record rec;
    mmp_record_init(&rec);
    int rc;
    int64_t rno = 0, cap = 0, nocap = 0, empty = 0, cut = 0, M = c->max_length;
    int32_t *ids = mmp_xmalloc(sizeof(int32_t) * (size_t)M);
    int64_t F = -1, RD = 0;
    for (; (rc = mmp_reader_next(r, &rec)) == 1; rno++) {
        const mmp_tensor *t = mmp_record_cget(&rec, c->feature);
        if (!t) { mmp_errf(err, errlen, "%s: record %lld: no tensor \"%s\" (--feature)", d->name, (long long)rno, c->feature); goto out; }
        if (!is_float(t->dtype) || t->ndim < 1 || t->ndim > 2) {
            char sh[64];
            mmp_shape_str(t->ndim, t->shape, sh, sizeof sh);
            mmp_errf(err, errlen, "%s: record %lld: \"%s\" is %s %s, expected a float [D] or [N, D] feature", d->name, (long long)rno,
                     c->feature, mmp_dtype_name(t->dtype), sh);
            goto out;
        }
        int64_t Dt = t->shape[t->ndim - 1], Nt = t->ndim == 2 ? t->shape[0] : 0;
        if (c->feat_dim <= 0) c->feat_dim = Dt, c->feat_tokens = Nt;
        if (Dt != c->feat_dim || Nt != c->feat_tokens) {
            char a[48] = "", b[48] = "";
            if (Nt) snprintf(a, sizeof a, "%lld, ", (long long)Nt);
            if (c->feat_tokens) snprintf(b, sizeof b, "%lld, ", (long long)c->feat_tokens);
            mmp_errf(err, errlen, "%s: record %lld: \"%s\" is [%s%lld], the model's features are [%s%lld]", d->name, (long long)rno,
                     c->feature, a, (long long)Dt, b, (long long)c->feat_dim);
            goto out;
        }
        if (F < 0) {
            F = Nt ? Nt * Dt : Dt;
            RD = F + M;
            d->dim = RD;
        }
        const mmp_strlist *sl = mmp_record_strings(&rec, c->captions_field);
        if (!sl || sl->n == 0) { nocap++; continue; }
        for (int i = 0; i < sl->n; i++) {
            char e2[512];
            int n = mmp_captioner_encode(&tk, sl->v[i], ids, (int)M - 1, e2, sizeof e2);
            if (n < 0) { mmp_errf(err, errlen, "%s: record %lld: caption %d: %s", d->name, (long long)rno, i, e2); goto out; }
            if (n == 0) { empty++; continue; }
            if (n > M - 1) { cut++; n = (int)M - 1; }
            if (d->n == cap) {
                cap = cap ? 2 * cap : 256;
                d->x = mmp_xrealloc(d->x, sizeof(float) * (size_t)cap * (size_t)RD);
                d->y = mmp_xrealloc(d->y, sizeof(int64_t) * (size_t)cap);
                d->ids = mmp_xrealloc(d->ids, sizeof(char *) * (size_t)cap);
            }
            float *row = d->x + (size_t)d->n * (size_t)RD;
            mmp_tensor_to_f32(t, row);
            row[F] = (float)n;
            for (int j = 0; j < M - 1; j++) row[F + 1 + j] = j < n ? (float)ids[j] : 0.0f;
            d->y[d->n] = MMP_NO_LABEL;
            d->ids[d->n] = rec.id && rec.id[0] ? mmp_xasprintf("%s#%d", rec.id, i) : NULL;
            d->n++;
        }
    }
    if (rc < 0) { mmp_errf(err, errlen, "%s", mmp_reader_error(r)); goto out; }
    if (d->n == 0) { mmp_errf(err, errlen, "%s: no (record, caption) pair: no record has a non-empty \"%s\" list", d->name, c->captions_field); goto out; }
    if (nocap || empty || cut)
        fprintf(stderr, "%s: %s: %lld (image, caption) pairs; skipped %lld records without captions and %lld empty captions; "
                "%lld captions cut to --max-length %lld\n", mmp_progname(), d->name, (long long)d->n, (long long)nocap, (long long)empty,
                (long long)cut, (long long)M);
    d->ncls = 0;
    d->dim2 = 0;
    ret = 0;
out:
    free(ids);
    mmp_record_clear(&rec);
    mmp_reader_close(r);
out0:
    mmp_wl_free(tk.wl);
    if (tk.bpe) mmp_bpe_free(tk.bpe);
    if (ret) mmp_dataset_free(d);
    return ret;
}
