/* BERT encoder forward (inference) and sentence embedding; see bert.h. */
#include "text/bert.h"

#include "nn/gemm.h"
#ifdef __AVX2__
#include <immintrin.h>
#endif
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
    /* config.json beside the weights */
    char *dir = dir_of(path);
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
    return 0;
}

void mmp_bert_free(mmp_bert *m) {
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

/* y[n,H] = LayerNorm(x[n,H]) * w + b, biased variance (torch layer_norm) */
static void layer_norm(float *y, const float *x, int n, int H, const float *w, const float *b, float eps) {
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * H;
        float *yi = y + (size_t)i * H;
        double mean = 0, var = 0;
        for (int j = 0; j < H; j++) mean += xi[j];
        mean /= H;
        for (int j = 0; j < H; j++) {
            double d = xi[j] - mean;
            var += d * d;
        }
        var /= H;
        float rs = (float)(1.0 / sqrt(var + eps)), mu = (float)mean;
        for (int j = 0; j < H; j++) yi[j] = (xi[j] - mu) * rs * w[j] + b[j];
    }
}

/* erf(x) for float: the rational approximation of Eigen / TensorFlow
 * (generic_fast_erf_float; max abs error ~1e-7 on [-4, 4], +-1 beyond), written
 * so the compiler vectorizes it. Same bits for the same input on every call. */
static inline float gelu_one(float z) {
    float x = z * 0.70710678118654752f;
    x = x < -4.0f ? -4.0f : x;
    x = x > 4.0f ? 4.0f : x;
    float x2 = x * x;
    float p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    p = p * x;
    float q = x2 * -1.45660718464996e-05f + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return 0.5f * z * (1.0f + p / q);
}

static void gelu_erf_inplace(float *v, size_t n) {
    size_t i = 0;
#ifdef __AVX2__
    /* the same operations as gelu_one, 8 at a time (separate mul and add, no FMA,
     * max/min operand order keeping NaN like the scalar selects): same bits */
    const __m256 r2 = _mm256_set1_ps(0.70710678118654752f), lo = _mm256_set1_ps(-4.0f), hi = _mm256_set1_ps(4.0f);
#define C(x) _mm256_set1_ps(x)
    for (; i + 8 <= n; i += 8) {
        __m256 z = _mm256_loadu_ps(v + i);
        __m256 x = _mm256_mul_ps(z, r2);
        x = _mm256_max_ps(lo, x);
        x = _mm256_min_ps(hi, x);
        __m256 x2 = _mm256_mul_ps(x, x);
        __m256 p = _mm256_add_ps(_mm256_mul_ps(x2, C(-2.72614225801306e-10f)), C(2.77068142495902e-08f));
        p = _mm256_add_ps(_mm256_mul_ps(p, x2), C(-2.10102402082508e-06f));
        p = _mm256_add_ps(_mm256_mul_ps(p, x2), C(-5.69250639462346e-05f));
        p = _mm256_add_ps(_mm256_mul_ps(p, x2), C(-7.34990630326855e-04f));
        p = _mm256_add_ps(_mm256_mul_ps(p, x2), C(-2.95459980854025e-03f));
        p = _mm256_add_ps(_mm256_mul_ps(p, x2), C(-1.60960333262415e-02f));
        p = _mm256_mul_ps(p, x);
        __m256 q = _mm256_add_ps(_mm256_mul_ps(x2, C(-1.45660718464996e-05f)), C(-2.13374055278905e-04f));
        q = _mm256_add_ps(_mm256_mul_ps(q, x2), C(-1.68282697438203e-03f));
        q = _mm256_add_ps(_mm256_mul_ps(q, x2), C(-7.37332916720468e-03f));
        q = _mm256_add_ps(_mm256_mul_ps(q, x2), C(-1.42647390514189e-02f));
        __m256 e = _mm256_add_ps(C(1.0f), _mm256_div_ps(p, q));
        _mm256_storeu_ps(v + i, _mm256_mul_ps(_mm256_mul_ps(C(0.5f), z), e));
    }
#undef C
#endif
    for (; i < n; i++) v[i] = gelu_one(v[i]);
}

/* y[n,out] = x[n,in] W[out,in]^T + b (+ y when accumulate) */
static void linear(float *y, const float *x, int n, int in, int out, const float *W, const float *b, int accumulate) {
    if (accumulate) {
        mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, n, out, in, 1.0f, x, in, W, in, 1.0f, y, out);
    } else {
        mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, n, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
    }
    for (int i = 0; i < n; i++) {
        float *yi = y + (size_t)i * out;
        for (int j = 0; j < out; j++) yi[j] += b[j];
    }
}

void mmp_bert_forward(const mmp_bert *m, const int32_t *ids, const int *lens, int nseq, float *x) {
    const mmp_bert_config *c = &m->cfg;
    const int H = c->hidden, NI = c->inter, nh = c->heads, dh = H / nh;
    int T = 0, Lmax = 0;
    for (int s = 0; s < nseq; s++) {
        T += lens[s];
        if (lens[s] > Lmax) Lmax = lens[s];
    }
    float *tmp = mmp_xmalloc((size_t)T * H * sizeof *tmp);
    float *qkv = mmp_xmalloc((size_t)T * 3 * H * sizeof *qkv);
    float *ctx = mmp_xmalloc((size_t)T * H * sizeof *ctx);
    float *a = mmp_xmalloc((size_t)T * H * sizeof *a);
    float *inter = mmp_xmalloc((size_t)T * NI * sizeof *inter);
    float *sc = mmp_xmalloc((size_t)Lmax * Lmax * sizeof *sc);
    /* embeddings: word + token_type[0] + position */
    for (int s = 0, t = 0; s < nseq; s++) {
        for (int p = 0; p < lens[s]; p++, t++) {
            const float *we = m->word + (size_t)ids[t] * H, *pe = m->pos + (size_t)p * H, *te = m->type;
            float *xt = tmp + (size_t)t * H;
            for (int j = 0; j < H; j++) xt[j] = we[j] + te[j] + pe[j];
        }
    }
    layer_norm(x, tmp, T, H, m->eln_w, m->eln_b, c->eps);
    const float scale = 1.0f / sqrtf((float)dh);
    for (int l = 0; l < c->layers; l++) {
        const mmp_bert_layer *ly = &m->layer[l];
        linear(qkv, x, T, H, 3 * H, ly->qkv_w, ly->qkv_b, 0);
        for (int s = 0, t0 = 0; s < nseq; t0 += lens[s], s++) {
            int L = lens[s];
            for (int h = 0; h < nh; h++) {
                const float *q = qkv + (size_t)t0 * 3 * H + h * dh;
                const float *k = q + H, *v = q + 2 * H;
                /* scores[L,L] = q k^T / sqrt(dh) */
                mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, L, L, dh, scale, q, 3 * H, k, 3 * H,
                            0.0f, sc, L);
                for (int i = 0; i < L; i++) {
                    float *r = sc + (size_t)i * L, mx = r[0];
                    for (int j = 1; j < L; j++) mx = r[j] > mx ? r[j] : mx;
                    float sum = 0;
                    for (int j = 0; j < L; j++) sum += (r[j] = expf(r[j] - mx));
                    float inv = 1.0f / sum;
                    for (int j = 0; j < L; j++) r[j] *= inv;
                }
                /* ctx[L, dh] = P v */
                mmp_sgemm(MMP_GEMM_N, MMP_GEMM_N, L, dh, L, 1.0f, sc, L, v, 3 * H, 0.0f,
                            ctx + (size_t)t0 * H + h * dh, H);
            }
        }
        /* a = LN(ctx Wo^T + bo + x) */
        memcpy(tmp, x, (size_t)T * H * sizeof *tmp);
        linear(tmp, ctx, T, H, H, ly->ao_w, ly->ao_b, 1);
        layer_norm(a, tmp, T, H, ly->aln_w, ly->aln_b, c->eps);
        /* inter = gelu(a Wi^T + bi), gelu(x) = x/2 (1 + erf(x/sqrt 2)) */
        linear(inter, a, T, H, NI, ly->in_w, ly->in_b, 0);
        gelu_erf_inplace(inter, (size_t)T * NI);
        /* x = LN(inter Wo2^T + bo2 + a) */
        memcpy(tmp, a, (size_t)T * H * sizeof *tmp);
        linear(tmp, inter, T, NI, H, ly->out_w, ly->out_b, 1);
        layer_norm(x, tmp, T, H, ly->oln_w, ly->oln_b, c->eps);
    }
    free(tmp);
    free(qkv);
    free(ctx);
    free(a);
    free(inter);
    free(sc);
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
        tm->dir = dir_of(path);
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
