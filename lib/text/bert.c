/* BERT encoder forward (inference) and sentence embedding; see bert.h. */
#include "text/bert.h"
#include "tx/model.h"

#include "tx/tx.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"
#include "mmp.h"

/* ------------------------------------------------------------------ */
/* loading                                                             */
/* ------------------------------------------------------------------ */

static char *dir_of(const char *path) {
    const char *s = strrchr(path, '/');
    if (!s) return mmp_xstrdup(".");
    char *d = mmp_xmalloc((size_t)(s - path) + 2);
    memcpy(d, path, (size_t)(s - path));
    d[s - path] = 0;
    if (s == path) strcpy(d, "/");
    return d;
}

typedef struct {
    const mmp_safetensors *st;
    const char *prefix;
    char *err;
    size_t errlen;
    int failed;
} loader;

/* f32 copy of tensor prefix+name with the given shape (ndim entries); after
 * the first failure (message in err) NULL for every call */
static float *take(loader *L, const char *name, int ndim, const int64_t *shape) {
    if (L->failed) return NULL;
    char full[256];
    snprintf(full, sizeof full, "%s%s", L->prefix, name);
    float *d = mmp_st_f32(L->st, full, ndim, shape, L->err, L->errlen);
    L->failed = !d;
    return d;
}

/* config.json beside the weights (optional): its sizes must match the
 * weights' (c); sets c->eps and *heads when given. 0 or -1 (err names the file). */
static mmp_tx_encoder *make_encoder(const mmp_bert *m);
static void free_encoder(mmp_tx_encoder *e);

static int read_config(const char *cfgpath, mmp_bert_config *c, int *heads, char *err, size_t errlen) {
    json_t *js;
    int rc = mmp_json_load(cfgpath, &js, err, errlen);
    if (rc <= 0) return rc;
    char e2[400] = "";
    int64_t nh = 0, nl = c->layers, hs = c->hidden;
    double eps = c->eps;
    const char *act = "gelu", *pos = "absolute";
    if (mmp_json_get_int(js, "num_attention_heads", 1, 1 << 20, &nh, e2, sizeof e2) < 0 ||
        mmp_json_get_num(js, "layer_norm_eps", &eps, e2, sizeof e2) < 0 ||
        mmp_json_get_int(js, "num_hidden_layers", 0, 1 << 20, &nl, e2, sizeof e2) < 0 ||
        mmp_json_get_int(js, "hidden_size", 0, 1 << 20, &hs, e2, sizeof e2) < 0 ||
        mmp_json_get_str(js, "hidden_act", &act, e2, sizeof e2) < 0 ||
        mmp_json_get_str(js, "position_embedding_type", &pos, e2, sizeof e2) < 0)
        rc = mmp_errf(err, errlen, "%s: %s", cfgpath, e2);
    else if (nl != c->layers)
        rc = mmp_errf(err, errlen, "%s: num_hidden_layers %d but the weights have %d layers", cfgpath, (int)nl, c->layers);
    else if (hs != c->hidden)
        rc = mmp_errf(err, errlen, "%s: hidden_size %d but the weights have %d", cfgpath, (int)hs, c->hidden);
    else if (strcmp(act, "gelu") != 0)
        rc = mmp_errf(err, errlen, "%s: hidden_act \"%s\" not supported (only \"gelu\", the erf form)", cfgpath, act);
    else if (strcmp(pos, "absolute") != 0)
        rc = mmp_errf(err, errlen, "%s: position_embedding_type \"%s\" not supported", cfgpath, pos);
    else {
        rc = 0;
        c->eps = (float)eps;
        *heads = (int)nh;
        const json_t *pad = json_object_get(js, "pad_token_id");
        if (json_is_integer(pad)) c->pad_id = (int)json_integer_value(pad);
        else if (pad && json_is_null(pad)) c->pad_id = -1;
    }
    json_decref(js);
    return rc;
}

int mmp_bert_load(mmp_bert *m, const char *path, int heads, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    mmp_safetensors st;
    if (mmp_st_open(&st, path, err, errlen) < 0) return -1;
    const char *prefix = mmp_st_get(&st, "embeddings.word_embeddings.weight") ? ""
                         : mmp_st_get(&st, "bert.embeddings.word_embeddings.weight") ? "bert."
                                                                                      : NULL;
    if (!prefix) {
        mmp_st_close(&st);
        return mmp_errf(err, errlen, "%s: no embeddings.word_embeddings.weight (not a BERT checkpoint with Hugging Face names)", path);
    }
    char nm[256];
    snprintf(nm, sizeof nm, "%sembeddings.word_embeddings.weight", prefix);
    const mmp_tensor *we = mmp_st_get(&st, nm);
    snprintf(nm, sizeof nm, "%sembeddings.position_embeddings.weight", prefix);
    const mmp_tensor *pe = mmp_st_get(&st, nm);
    snprintf(nm, sizeof nm, "%sembeddings.token_type_embeddings.weight", prefix);
    const mmp_tensor *te = mmp_st_get(&st, nm);
    snprintf(nm, sizeof nm, "%sencoder.layer.0.intermediate.dense.weight", prefix);
    const mmp_tensor *ie = mmp_st_get(&st, nm);
    if (we->ndim != 2 || !pe || pe->ndim != 2 || !te || te->ndim != 2 || !ie || ie->ndim != 2) {
        mmp_st_close(&st);
        return mmp_errf(err, errlen, "%s: missing or malformed embeddings/encoder.layer.0 tensors", path);
    }
    mmp_bert_config *c = &m->cfg;
    c->vocab = (int)we->shape[0];
    c->hidden = (int)we->shape[1];
    c->max_pos = (int)pe->shape[0];
    c->type_vocab = (int)te->shape[0];
    c->inter = (int)ie->shape[0];
    c->eps = 1e-12f;
    for (c->layers = 0;; c->layers++) {
        snprintf(nm, sizeof nm, "%sencoder.layer.%d.attention.self.query.weight", prefix, c->layers);
        if (!mmp_st_get(&st, nm)) break;
    }
    /* config.json beside the weights (a checkpoint of mmp-train-step --head transformer: its backbone's) */
    char *dir = mmp_model_config_dir(&st.meta);
    if (!dir) dir = dir_of(path);
    char *cfgpath = mmp_xasprintf("%s/config.json", dir);
    int cfg_heads = 0, rc = read_config(cfgpath, c, &cfg_heads, err, errlen);
    c->heads = heads > 0 ? heads : cfg_heads;
    if (rc == 0 && c->heads <= 0)
        rc = mmp_errf(err, errlen, "%s: number of attention heads unknown (no config.json with num_attention_heads beside the weights): give --heads", path);
    else if (rc == 0 && (c->layers == 0 || c->hidden % c->heads != 0))
        rc = mmp_errf(err, errlen, "%s: %d layers, hidden %d not divisible by %d heads", path, c->layers, c->hidden, c->heads);
    free(cfgpath);
    free(dir);
    if (rc) {
        mmp_st_close(&st);
        return -1;
    }

    loader L = {&st, prefix, err, errlen, 0};
    int64_t H = c->hidden, NI = c->inter;
    int64_t sVH[2] = {c->vocab, H}, sPH[2] = {c->max_pos, H}, sTH[2] = {c->type_vocab, H};
    int64_t sHH[2] = {H, H}, sIH[2] = {NI, H}, sHI[2] = {H, NI}, sH[1] = {H}, sI[1] = {NI};
    m->word = take(&L, "embeddings.word_embeddings.weight", 2, sVH);
    m->pos = take(&L, "embeddings.position_embeddings.weight", 2, sPH);
    m->type = take(&L, "embeddings.token_type_embeddings.weight", 2, sTH);
    m->eln_w = take(&L, "embeddings.LayerNorm.weight", 1, sH);
    m->eln_b = take(&L, "embeddings.LayerNorm.bias", 1, sH);
    m->layer = mmp_xcalloc((size_t)c->layers, sizeof *m->layer);
    for (int l = 0; l < c->layers && !L.failed; l++) {
        mmp_bert_layer *ly = &m->layer[l];
        char p[200];
#define T(field, suffix, nd, shp) (snprintf(p, sizeof p, "encoder.layer.%d.%s", l, suffix), ly->field = take(&L, p, nd, shp))
        float *q, *k, *v, *qb, *kb, *vb;
        snprintf(p, sizeof p, "encoder.layer.%d.attention.self.query.weight", l); q = take(&L, p, 2, sHH);
        snprintf(p, sizeof p, "encoder.layer.%d.attention.self.key.weight", l); k = take(&L, p, 2, sHH);
        snprintf(p, sizeof p, "encoder.layer.%d.attention.self.value.weight", l); v = take(&L, p, 2, sHH);
        snprintf(p, sizeof p, "encoder.layer.%d.attention.self.query.bias", l); qb = take(&L, p, 1, sH);
        snprintf(p, sizeof p, "encoder.layer.%d.attention.self.key.bias", l); kb = take(&L, p, 1, sH);
        snprintf(p, sizeof p, "encoder.layer.%d.attention.self.value.bias", l); vb = take(&L, p, 1, sH);
        if (!L.failed) {
            ly->qkv_w = mmp_xmalloc((size_t)(3 * H * H) * sizeof(float));
            ly->qkv_b = mmp_xmalloc((size_t)(3 * H) * sizeof(float));
            memcpy(ly->qkv_w, q, (size_t)(H * H) * sizeof(float));
            memcpy(ly->qkv_w + H * H, k, (size_t)(H * H) * sizeof(float));
            memcpy(ly->qkv_w + 2 * H * H, v, (size_t)(H * H) * sizeof(float));
            memcpy(ly->qkv_b, qb, (size_t)H * sizeof(float));
            memcpy(ly->qkv_b + H, kb, (size_t)H * sizeof(float));
            memcpy(ly->qkv_b + 2 * H, vb, (size_t)H * sizeof(float));
        }
        free(q); free(k); free(v); free(qb); free(kb); free(vb);
        T(ao_w, "attention.output.dense.weight", 2, sHH);
        T(ao_b, "attention.output.dense.bias", 1, sH);
        T(aln_w, "attention.output.LayerNorm.weight", 1, sH);
        T(aln_b, "attention.output.LayerNorm.bias", 1, sH);
        T(in_w, "intermediate.dense.weight", 2, sIH);
        T(in_b, "intermediate.dense.bias", 1, sI);
        T(out_w, "output.dense.weight", 2, sHI);
        T(out_b, "output.dense.bias", 1, sH);
        T(oln_w, "output.LayerNorm.weight", 1, sH);
        T(oln_b, "output.LayerNorm.bias", 1, sH);
#undef T
    }
    mmp_st_close(&st);
    if (L.failed) { /* the message names the file and the tensor */
        mmp_bert_free(m);
        return -1;
    }
    if (mmp_sha256_file(path, m->sha256) < 0) {
        mmp_bert_free(m);
        return mmp_errf(err, errlen, "%s: cannot read for hashing", path);
    }
    m->path = mmp_xstrdup(path);
    mmp_tx_encoder *e = make_encoder(m);
    mmp_tx_encoder_pack(e);
    m->tx = e;
    return 0;
}

void mmp_bert_free(mmp_bert *m) {
    free_encoder(m->tx);
    free(m->word);
    free(m->pos);
    free(m->type);
    free(m->eln_w);
    free(m->eln_b);
    if (m->layer) {
        for (int l = 0; l < m->cfg.layers; l++) {
            mmp_bert_layer *ly = &m->layer[l];
            float *ps[] = {ly->qkv_w, ly->qkv_b, ly->ao_w, ly->ao_b, ly->aln_w, ly->aln_b, ly->in_w,
                           ly->in_b, ly->out_w, ly->out_b, ly->oln_w, ly->oln_b};
            for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) free(ps[i]);
        }
    }
    free(m->layer);
    free(m->path);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ */
/* forward                                                             */
/* ------------------------------------------------------------------ */

/* The encoder runs on the transformer engine (tx/tx.h): post-LN blocks,
 * GELU erf, the query/key/value weights pointed into the fused qkv_w. */
static mmp_tx_encoder *make_encoder(const mmp_bert *m) {
    const mmp_bert_config *c = &m->cfg;
    const int H = c->hidden;
    mmp_tx_block *blk = mmp_xcalloc((size_t)c->layers + 1, sizeof *blk);
    for (int l = 0; l < c->layers; l++) {
        const mmp_bert_layer *ly = &m->layer[l];
        mmp_tx_block *b = &blk[l];
        const size_t HH = (size_t)H * H;
        b->q_w = ly->qkv_w, b->k_w = ly->qkv_w + HH, b->v_w = ly->qkv_w + 2 * HH;
        b->q_b = ly->qkv_b, b->k_b = ly->qkv_b + H, b->v_b = ly->qkv_b + 2 * H;
        b->o_w = ly->ao_w, b->o_b = ly->ao_b;
        b->ln1_w = ly->aln_w, b->ln1_b = ly->aln_b;
        b->fc1_w = ly->in_w, b->fc1_b = ly->in_b;
        b->fc2_w = ly->out_w, b->fc2_b = ly->out_b;
        b->ln2_w = ly->oln_w, b->ln2_b = ly->oln_b;
    }
    mmp_tx_encoder *e = mmp_xcalloc(1, sizeof *e);
    *e = (mmp_tx_encoder){.layers = c->layers, .C = H, .NH = c->heads, .inter = c->inter, .act = MMP_TX_GELU_ERF,
                          .post_ln = 1, .causal = 0, .eps = c->eps, .block = blk};
    return e;
}

static void free_encoder(mmp_tx_encoder *e) {
    if (!e) return;
    mmp_tx_encoder_unpack(e);
    free(e->block);
    free(e);
}

void mmp_bert_forward(const mmp_bert *m, const int32_t *ids, const int *lens, int nseq, float *x) {
    const mmp_bert_config *c = &m->cfg;
    const int H = c->hidden;
    int T = 0;
    for (int s = 0; s < nseq; s++) T += lens[s];
    float *tmp = mmp_xmalloc(((size_t)T * H + 1) * sizeof *tmp);
    /* embeddings: word + token_type[0] + position, then LayerNorm */
    for (int s = 0, t = 0; s < nseq; s++) {
        for (int p = 0; p < lens[s]; p++, t++) {
            const float *we = m->word + (size_t)ids[t] * H, *pe = m->pos + (size_t)p * H, *te = m->type;
            float *xt = tmp + (size_t)t * H;
            for (int j = 0; j < H; j++) xt[j] = we[j] + te[j] + pe[j];
        }
    }
    mmp_tx_layernorm_fwd(x, NULL, NULL, tmp, m->eln_w, m->eln_b, T, H, c->eps);
    free(tmp);
    mmp_tx_encoder *own = m->tx ? NULL : make_encoder(m);
    mmp_tx_encoder_fwd(m->tx ? m->tx : own, x, lens, nseq, NULL);
    free_encoder(own);
}

void mmp_bert_mean_pool(const float *hidden, const int *lens, int nseq, int H, int normalize, float *out) {
    for (int s = 0, t = 0; s < nseq; s++) {
        float *o = out + (size_t)s * H;
        for (int j = 0; j < H; j++) o[j] = 0;
        for (int p = 0; p < lens[s]; p++, t++)
            for (int j = 0; j < H; j++) o[j] += hidden[(size_t)t * H + j];
        float inv = 1.0f / (float)(lens[s] > 0 ? lens[s] : 1);
        for (int j = 0; j < H; j++) o[j] *= inv;
        if (normalize) {
            double n2 = 0;
            for (int j = 0; j < H; j++) n2 += (double)o[j] * o[j];
            double nrm = sqrt(n2);
            float d = (float)(nrm > 1e-12 ? nrm : 1e-12);
            for (int j = 0; j < H; j++) o[j] /= d;
        }
    }
}

/* ------------------------------------------------------------------ */
/* the sentence-embedding model                                        */
/* ------------------------------------------------------------------ */

/* The sentence-transformers side files of dir (each optional): tokenizer
 * options, max length, pooling, normalization. 0 or -1 (err names the file). */
static int read_side_files(mmp_text_model *tm, mmp_wp_opts *o, char *err, size_t errlen) {
    static const char *const files[4] = {"tokenizer_config.json", "sentence_bert_config.json", "1_Pooling/config.json",
                                         "modules.json"};
    int rc = 0;
    for (int f = 0; f < 4 && rc == 0; f++) {
        char *p = mmp_xasprintf("%s/%s", tm->dir, files[f]), e2[400] = "";
        json_t *js;
        rc = mmp_json_load(p, &js, err, errlen);
        if (rc <= 0) {
            free(p);
            continue;
        }
        rc = 0;
        int b = 1;
        int64_t v = 0;
        if (f == 0) {
            if (mmp_json_get_bool(js, "do_lower_case", &o->lower, e2, sizeof e2) < 0 ||
                mmp_json_get_bool(js, "strip_accents", &o->strip_accents, e2, sizeof e2) < 0 ||
                mmp_json_get_bool(js, "tokenize_chinese_chars", &o->chinese, e2, sizeof e2) < 0)
                rc = -1;
        } else if (f == 1) {
            if (mmp_json_get_int(js, "max_seq_length", INT32_MIN, INT32_MAX, &v, e2, sizeof e2) < 0) rc = -1;
            else if (v >= 2) tm->max_length = (int)v;
        } else if (f == 2) {
            if (mmp_json_get_bool(js, "pooling_mode_mean_tokens", &b, e2, sizeof e2) < 0) rc = -1;
            else if (!b) rc = mmp_errf(err, errlen, "%s: only mean pooling is supported", p);
        } else { /* a list of modules {"idx", "name", "path", "type"} */
            for (size_t i = 0; i < json_array_size(js); i++) {
                const char *type = "";
                if (mmp_json_get_str(json_array_get(js, i), "type", &type, e2, sizeof e2) < 0) rc = -1;
                if (!strcmp(type, "sentence_transformers.models.Normalize")) tm->normalize = 1;
            }
        }
        if (rc && e2[0]) mmp_errf(err, errlen, "%s: %s", p, e2);
        json_decref(js);
        free(p);
    }
    return rc;
}

int mmp_text_model_load(mmp_text_model *tm, const char *path, int heads, char *err, size_t errlen) {
    memset(tm, 0, sizeof *tm);
    struct stat sb;
    if (stat(path, &sb) < 0) return mmp_errf(err, errlen, "%s: %s", path, strerror(errno));
    char *weights;
    if (S_ISDIR(sb.st_mode)) {
        tm->dir = mmp_xstrdup(path);
        weights = mmp_xasprintf("%s/model.safetensors", path);
    } else {
        mmp_safetensors st; /* a checkpoint of mmp-train-step --head transformer: the side files of its backbone */
        char e2[512];
        tm->dir = NULL;
        if (mmp_st_open(&st, path, e2, sizeof e2) == 0) {
            tm->dir = mmp_model_config_dir(&st.meta);
            mmp_st_close(&st);
        }
        if (!tm->dir) tm->dir = dir_of(path);
        weights = mmp_xstrdup(path);
    }
    if (mmp_bert_load(&tm->bert, weights, heads, err, errlen) < 0) {
        free(weights);
        free(tm->dir);
        tm->dir = NULL;
        return -1;
    }
    free(weights);
    mmp_wp_opts o;
    mmp_wp_opts_default(&o);
    tm->max_length = 256;
    if (read_side_files(tm, &o, err, errlen)) {
        mmp_text_model_free(tm);
        return -1;
    }
    if (tm->max_length > tm->bert.cfg.max_pos) tm->max_length = tm->bert.cfg.max_pos;
    tm->lower = o.lower;
    char *p = mmp_xasprintf("%s/vocab.txt", tm->dir);
    tm->tok = mmp_wp_load(p, &o, err, errlen);
    free(p);
    if (!tm->tok) {
        mmp_text_model_free(tm);
        return -1;
    }
    if (mmp_wp_vocab_size(tm->tok) > tm->bert.cfg.vocab) {
        mmp_errf(err, errlen, "%s/vocab.txt: %d tokens but the model has %d word embeddings", tm->dir,
                 mmp_wp_vocab_size(tm->tok), tm->bert.cfg.vocab);
        mmp_text_model_free(tm);
        return -1;
    }
    const mmp_bert_config *c = &tm->bert.cfg;
    snprintf(tm->arch, sizeof tm->arch, "bert-L%d-H%d-A%d", c->layers, c->hidden, c->heads);
    return 0;
}

void mmp_text_model_free(mmp_text_model *tm) {
    mmp_bert_free(&tm->bert);
    mmp_wp_free(tm->tok);
    free(tm->dir);
    memset(tm, 0, sizeof *tm);
}

int mmp_text_embed(const mmp_text_model *tm, const char *const *texts, const size_t *lens, int n,
                   int max_length, int normalize, int utf8_policy, float *out, int *bad, char *err,
                   size_t errlen) {
    if (max_length <= 0) max_length = tm->max_length;
    if (max_length > tm->bert.cfg.max_pos) max_length = tm->bert.cfg.max_pos;
    int32_t *ids = mmp_xmalloc((size_t)n * (size_t)max_length * sizeof *ids);
    int *sl = mmp_xmalloc((size_t)(n > 0 ? n : 1) * sizeof *sl);
    size_t T = 0;
    for (int i = 0; i < n; i++) {
        int k = mmp_wp_encode(tm->tok, texts[i], lens[i], max_length, utf8_policy, ids + T, err, errlen);
        if (k < 0) {
            if (bad) *bad = i;
            free(ids);
            free(sl);
            return -1;
        }
        for (int j = 0; j < k; j++) {
            if (ids[T + j] >= tm->bert.cfg.vocab) { /* cannot happen: vocab size checked at load */
                mmp_errf(err, errlen, "token id %d out of range", ids[T + j]);
                if (bad) *bad = i;
                free(ids);
                free(sl);
                return -1;
            }
        }
        sl[i] = k;
        T += (size_t)k;
    }
    if (n > 0) {
        float *hid = mmp_xmalloc(T * (size_t)tm->bert.cfg.hidden * sizeof *hid);
        mmp_bert_forward(&tm->bert, ids, sl, n, hid);
        mmp_bert_mean_pool(hid, sl, n, tm->bert.cfg.hidden, normalize, out);
        free(hid);
    }
    free(ids);
    free(sl);
    return 0;
}
