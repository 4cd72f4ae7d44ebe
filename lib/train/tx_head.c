/* train/tx_head.c: the transformer head (train/tx_head.h): a ViT / CLIP
 * tower / BERT encoder from lib/tx, its trainable parameters chosen by
 * --unfreeze, and a linear classifier on the pooled output. */
#include "train/tx_head.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "text/embed.h"
#include "text/wordpiece.h"
#include "train/layers.h"
#include "train/train.h"
#include "train/train_internal.h"
#include "tx/train.h"

struct mmp_txhead {
    int text;                 /* 1: text records */
    mmp_tx_model *m;          /* image tower (or CLIP text through te->clip) */
    mmp_text_encoder te;      /* text: BERT or CLIP text tower + tokenizer */
    mmp_bert *bert;           /* te.bert->bert */
    mmp_tx_model *tm;         /* the tx model whose tower runs (m, or te.clip) */
    mmp_safetensors src;      /* the backbone file (its other tensors are copied on save) */
    char prefix[16];          /* BERT: "bert." when the file's names have it */
    mmp_tx_params P;
    mmp_tx_lora_set *lora;    /* --unfreeze lora: the adapters (their parameters at the end of P) */
    int lora_first;           /* the lowest block with an adapter */
    unsigned char *trainable; /* per P.p */
    unsigned char *onpath;    /* per P.p: on the path of the pooled output */
    unsigned char *dropped;   /* per P.p: replaced by the classifier (the backbone's own head) */
    int unfreeze, last_n, layers;
    int64_t ncls, H, W;
    int C, max_length;
    char cls_w[32], cls_b[32];
    mmp_param *params;        /* trainable views, then classifier weight, bias (owned) */
    int np;
    /* the last training forward */
    int saved_grad;           /* 1: sv holds the tower's activations */
    mmp_tx_saved *sv;
    float *feat;              /* [cap, C] pooled features */
    float *dfeat;
    int64_t cap;
    /* gradient structures with the frozen fields NULL */
    mmp_tx_vision_grad gv;
    mmp_tx_text_grad gt;
    mmp_bert_grad gb;
    mmp_tx_block_grad *gblock;
    int32_t *ids;
    int *lens;
};

/* an adapter of --unfreeze lora: P names it as PEFT saves it */
#define PEFT_PFX "base_model.model."
static int is_adapter(const char *name) { return !strncmp(name, PEFT_PFX, strlen(PEFT_PFX)); }

/* a tower tensor's name in the checkpoint: the file's (its prefix) or the
 * adapter's module name + .lora_A/B.weight */
static void param_name(const mmp_txhead *t, const mmp_tx_param *p, char *buf, size_t n) {
    if (is_adapter(p->name)) snprintf(buf, n, "%s", p->name + strlen(PEFT_PFX));
    else snprintf(buf, n, "%s%s", t->prefix, p->name);
}

/* index of the parameter whose gradient buffer holds g, -1 if none */
static int pidx(const mmp_tx_params *P, const float *g) {
    if (!g) return -1;
    for (int i = 0; i < P->n; i++)
        if (g >= P->p[i].g && g < P->p[i].g + (P->p[i].n ? P->p[i].n : 1)) return i;
    return -1;
}

#define BLOCK_GFIELDS(X, b)                                                                                          \
    X(b, ln1_w, 1) X(b, ln1_b, 1) X(b, q_w, 0) X(b, q_b, 0) X(b, k_w, 0) X(b, k_b, 0) X(b, v_w, 0) X(b, v_b, 0)      \
        X(b, o_w, 0) X(b, o_b, 0) X(b, ln2_w, 1) X(b, ln2_b, 1) X(b, fc1_w, 0) X(b, fc1_b, 0) X(b, fc2_w, 0)         \
            X(b, fc2_b, 0) X(b, ls1, 0) X(b, ls2, 0)

/* marks param of g: on the path; trainable when train */
static void mark(mmp_txhead *t, const float *g, int train) {
    int i = pidx(&t->P, g);
    if (i < 0) return;
    t->onpath[i] = 1;
    if (train) t->trainable[i] = 1;
}

/* The trainable flags from --unfreeze, then the gradient structures with
 * the frozen fields NULL. */
static void choose(mmp_txhead *t) {
    const int all = t->unfreeze == MMP_UNFREEZE_ALL, norm = t->unfreeze == MMP_UNFREEZE_NORM;
    const int L = t->layers, first = t->unfreeze == MMP_UNFREEZE_LAST ? L - t->last_n : all ? 0 : L;
    const mmp_tx_block_grad *blk = NULL;
    if (!t->text) {
        mmp_tx_vision_grad *g = t->P.vision;
        mark(t, g->patch_w, all), mark(t, g->patch_b, all), mark(t, g->cls_tok, all), mark(t, g->pos, all);
        mark(t, g->pre_w, all || norm), mark(t, g->pre_b, all || norm);
        int fin = all || norm || t->unfreeze == MMP_UNFREEZE_LAST;
        mark(t, g->norm_w, fin), mark(t, g->norm_b, fin), mark(t, g->post_w, fin), mark(t, g->post_b, fin);
        blk = g->block;
    } else if (t->bert) {
        mmp_bert_grad *g = t->P.bert;
        mark(t, g->word, all), mark(t, g->pos, all), mark(t, g->type, all);
        mark(t, g->eln_w, all || norm), mark(t, g->eln_b, all || norm);
        blk = g->block;
    } else {
        mmp_tx_text_grad *g = t->P.text;
        mark(t, g->tok, all), mark(t, g->pos, all);
        int fin = all || norm || t->unfreeze == MMP_UNFREEZE_LAST;
        mark(t, g->final_w, fin), mark(t, g->final_b, fin);
        blk = g->block;
    }
    for (int l = 0; l < L; l++) {
#define MK(b, f, isnorm) mark(t, (b)->f, l >= first || (norm && isnorm));
        BLOCK_GFIELDS(MK, &blk[l])
#undef MK
    }
    /* gradient structures: a field only where its parameter trains */
#define KEEP(p) (t->trainable[pidx(&t->P, (p))] ? (p) : NULL)
#define KEEPF(dst, src, f) (dst)->f = (src)->f ? KEEP((src)->f) : NULL;
    t->gblock = mmp_xcalloc((size_t)L + 1, sizeof *t->gblock);
    for (int l = 0; l < L; l++) {
#define KB(b, f, isnorm) KEEPF(&t->gblock[l], b, f)
        BLOCK_GFIELDS(KB, &blk[l])
#undef KB
    }
    if (!t->text) {
        const mmp_tx_vision_grad *g = t->P.vision;
        mmp_tx_vision_grad *d = &t->gv;
        KEEPF(d, g, patch_w) KEEPF(d, g, patch_b) KEEPF(d, g, cls_tok) KEEPF(d, g, pos) KEEPF(d, g, pre_w)
        KEEPF(d, g, pre_b) KEEPF(d, g, norm_w) KEEPF(d, g, norm_b) KEEPF(d, g, post_w) KEEPF(d, g, post_b)
        d->block = t->gblock;
    } else if (t->bert) {
        const mmp_bert_grad *g = t->P.bert;
        mmp_bert_grad *d = &t->gb;
        KEEPF(d, g, word) KEEPF(d, g, pos) KEEPF(d, g, type) KEEPF(d, g, eln_w) KEEPF(d, g, eln_b)
        d->block = t->gblock;
    } else {
        const mmp_tx_text_grad *g = t->P.text;
        mmp_tx_text_grad *d = &t->gt;
        KEEPF(d, g, tok) KEEPF(d, g, pos) KEEPF(d, g, final_w) KEEPF(d, g, final_b)
        d->block = t->gblock;
    }
#undef KEEP
#undef KEEPF
}

const char *mmp_txhead_family(const mmp_txhead *t) { return t->bert ? "bert" : mmp_tx_family_name(t->tm->family); }

int mmp_txhead_model_modality(const char *model, char *err, size_t errlen) {
    char e2[1024];
    mmp_tx_model *m = mmp_tx_model_load(model, e2, sizeof e2);
    if (!m) {
        if (mmp_text_is_clip(model)) return mmp_errf(err, errlen, "--backbone: %s", e2), -2;
        /* a BERT-family model: a folder (or a weights file) with vocab.txt */
        struct stat sb;
        char *v = stat(model, &sb) == 0 && S_ISDIR(sb.st_mode) ? mmp_xasprintf("%s/vocab.txt", model)
                  : strrchr(model, '/') ? mmp_xasprintf("%.*s/vocab.txt", (int)(strrchr(model, '/') - model), model)
                                        : mmp_xstrdup("vocab.txt");
        int bert = access(v, R_OK) == 0;
        free(v);
        if (bert) return 1;
        mmp_errf(err, errlen, "--backbone: %s; nor a BERT-family model (no vocab.txt beside it)", e2);
        return -2;
    }
    int r = m->vision && m->text ? -1 : m->text ? 1 : 0;
    mmp_tx_model_free(m);
    return r;
}

mmp_txhead *mmp_txhead_new(const char *model, int text, int64_t ncls, int unfreeze, int last_n, int max_length,
                           const mmp_tx_lora_opts *lora, char *err, size_t errlen) {
    if ((unfreeze == MMP_UNFREEZE_LORA) != (lora != NULL)) {
        mmp_errf(err, errlen, "--unfreeze lora: the LoRA options are missing (internal)");
        return NULL;
    }
    if (ncls < 1) {
        mmp_errf(err, errlen, "no classes (labels missing?)");
        return NULL;
    }
    mmp_txhead *t = mmp_xcalloc(1, sizeof *t);
    t->text = text, t->ncls = ncls, t->unfreeze = unfreeze, t->last_n = last_n;
    char e2[1024];
    if (!text) {
        t->m = mmp_tx_model_load(model, e2, sizeof e2);
        if (!t->m) {
            mmp_errf(err, errlen, "--backbone: %s", e2);
            goto fail;
        }
        if (!t->m->vision) {
            mmp_errf(err, errlen, "--backbone %s: the model has no image tower (image records need one)", model);
            goto fail;
        }
        t->tm = t->m;
        t->C = mmp_tx_image_dim(t->m, MMP_TX_OUT_POOLED);
        t->layers = t->m->vision->enc.layers;
        if (mmp_tx_make_trainable(t->m, &t->P, e2, sizeof e2)) {
            mmp_errf(err, errlen, "--backbone: %s", e2);
            goto fail;
        }
    } else {
        mmp_text_encoder_opts o = {.pooled = 1};
        if (!mmp_text_is_clip(model)) o.pooled = 0;
        if (mmp_text_encoder_load(&t->te, model, &o, e2, sizeof e2)) {
            mmp_errf(err, errlen, "--backbone: %s", e2);
            goto fail;
        }
        if (t->te.bert) {
            t->bert = &t->te.bert->bert;
            t->C = t->bert->cfg.hidden;
            t->layers = t->bert->cfg.layers;
            t->max_length = t->te.max_length;
            if (mmp_bert_make_trainable(t->bert, &t->P, e2, sizeof e2)) {
                mmp_errf(err, errlen, "--backbone: %s", e2);
                goto fail;
            }
        } else {
            t->tm = t->te.clip;
            if (!t->tm->text) {
                mmp_errf(err, errlen, "--backbone %s: the model has no text tower (text records need one)", model);
                goto fail;
            }
            t->C = mmp_tx_text_dim(t->tm, MMP_TX_OUT_POOLED);
            t->layers = t->tm->text->enc.layers;
            t->max_length = t->te.max_length;
            if (mmp_tx_make_trainable(t->tm, &t->P, e2, sizeof e2)) {
                mmp_errf(err, errlen, "--backbone: %s", e2);
                goto fail;
            }
        }
        if (max_length > 0) {
            if (max_length > t->te.context || max_length < 2) {
                mmp_errf(err, errlen, "--max-length %d: the model takes 2..%d tokens", max_length, t->te.context);
                goto fail;
            }
            t->max_length = max_length;
        }
    }
    const char *wpath = t->bert ? t->bert->path : t->tm->path;
    if (mmp_st_open(&t->src, wpath, e2, sizeof e2)) {
        mmp_errf(err, errlen, "--backbone: %s", e2);
        goto fail;
    }
    if (t->bert && mmp_st_get(&t->src, "bert.embeddings.word_embeddings.weight")) snprintf(t->prefix, sizeof t->prefix, "bert.");
    if (unfreeze == MMP_UNFREEZE_LAST && last_n > t->layers) {
        mmp_errf(err, errlen, "--unfreeze last:%d: %s has %d blocks", last_n, model, t->layers);
        goto fail;
    }
    if (lora) {
        mmp_tx_lora_opts o = *lora;
        if (!t->bert && t->tm->vision && t->tm->text) o.towers = t->text ? 2 : 1; /* one CLIP tower's linears */
        t->lora = t->bert ? mmp_bert_lora_add(t->bert, &o, &t->P, e2, sizeof e2) : mmp_tx_lora_add(t->tm, &o, &t->P, e2, sizeof e2);
        if (!t->lora) {
            mmp_errf(err, errlen, "--unfreeze lora: %s", e2);
            goto fail;
        }
        t->lora_first = t->layers;
        for (int i = 0, l; mmp_tx_lora_site(t->lora, i, &l); i++)
            if (l < t->lora_first) t->lora_first = l;
    }
    const int timm = !t->text && t->m->family == MMP_TXM_VIT_TIMM;
    snprintf(t->cls_w, sizeof t->cls_w, "%s.weight", timm ? "head" : "classifier");
    snprintf(t->cls_b, sizeof t->cls_b, "%s.bias", timm ? "head" : "classifier");
    t->trainable = mmp_xcalloc((size_t)t->P.n + 1, 1);
    t->onpath = mmp_xcalloc((size_t)t->P.n + 1, 1);
    t->dropped = mmp_xcalloc((size_t)t->P.n + 1, 1);
    for (int i = 0; i < t->P.n; i++) {
        char full[256];
        snprintf(full, sizeof full, "%s%s", t->prefix, t->P.p[i].name);
        t->dropped[i] = !strcmp(full, t->cls_w) || !strcmp(full, t->cls_b);
    }
    choose(t);
    if (t->lora) { /* the adapters and their gradients (P's block gradients hold them) */
        const mmp_tx_block_grad *pb = !t->text ? t->P.vision->block : t->bert ? t->P.bert->block : t->P.text->block;
        for (int l = 0; l < t->layers; l++) t->gblock[l].lora = pb[l].lora;
        for (int i = 0; i < t->P.n; i++)
            if (is_adapter(t->P.p[i].name)) t->trainable[i] = t->onpath[i] = 1;
    }
    /* frozen tensors keep no gradient buffer */
    for (int i = 0; i < t->P.n; i++)
        if (!t->trainable[i]) free(t->P.p[i].g), t->P.p[i].g = NULL;
    int n = 0;
    for (int i = 0; i < t->P.n; i++) n += t->trainable[i];
    t->params = mmp_xcalloc((size_t)n + 2, sizeof *t->params);
    for (int i = 0; i < t->P.n; i++) {
        if (!t->trainable[i]) continue;
        const mmp_tx_param *p = &t->P.p[i];
        char full[256];
        param_name(t, p, full, sizeof full);
        mmp_param *v = &t->params[t->np++];
        if (strlen(full) >= sizeof v->name) {
            mmp_errf(err, errlen, "parameter '%s': the name is longer than the optimizer's %zu characters", full, sizeof v->name - 1);
            goto fail;
        }
        memcpy(v->name, full, strlen(full) + 1);
        v->ndim = p->ndim, v->n = p->n;
        for (int d = 0; d < p->ndim; d++) v->shape[d] = p->shape[d];
        v->w = p->w, v->g = p->g, v->decay = 1;
    }
    mmp_param_init(&t->params[t->np++], t->cls_w, 2, (int64_t[]){ncls, t->C}, 1);
    mmp_param_init(&t->params[t->np++], t->cls_b, 1, (int64_t[]){ncls}, 1);
    return t;
fail:
    mmp_txhead_free(t);
    return NULL;
}

void mmp_txhead_free(mmp_txhead *t) {
    if (!t) return;
    if (t->params) {
        mmp_param *cw = &t->params[t->np - 2];
        for (int i = 0; i < t->np - 2; i++) free(t->params[i].s1), free(t->params[i].s2);
        mmp_param_free(cw);
        mmp_param_free(cw + 1);
        free(t->params);
    }
    mmp_tx_saved_free(t->sv);
    if (t->P.p) mmp_tx_params_free(&t->P);
    mmp_tx_lora_set_free(t->lora); /* after P, before the model */
    if (t->src.n || t->src.entries) mmp_st_close(&t->src);
    if (t->m) mmp_tx_model_free(t->m);
    if (t->text) mmp_text_encoder_free(&t->te);
    free(t->trainable), free(t->onpath), free(t->dropped), free(t->gblock);
    free(t->feat), free(t->dfeat), free(t->ids), free(t->lens);
    free(t);
}

int mmp_txhead_add_trainable(mmp_txhead *t, const char *name, float *w, float *g, int ndim, const int64_t *shape, int decay) {
    if (strlen(name) >= sizeof t->params[0].name || ndim > MMP_PARAM_MAXDIM) return -1;
    t->params = mmp_xrealloc(t->params, sizeof *t->params * (size_t)(t->np + 1));
    memmove(&t->params[t->np - 1], &t->params[t->np - 2], 2 * sizeof *t->params); /* the classifier stays last */
    mmp_param *v = &t->params[t->np - 2];
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s", name);
    v->ndim = ndim, v->n = 1;
    for (int d = 0; d < ndim; d++) v->shape[d] = shape[d], v->n *= (size_t)shape[d];
    v->w = w, v->g = g, v->decay = decay;
    t->np++;
    return 0;
}

mmp_param *mmp_txhead_params(mmp_txhead *t, int *np) {
    *np = t->np;
    return t->params;
}

int64_t mmp_txhead_in_dim(const mmp_txhead *t) { return t->text ? t->max_length + 1 : 3 * t->H * t->W; }
void mmp_txhead_set_image_size(mmp_txhead *t, int64_t H, int64_t W) { t->H = H, t->W = W; }
int mmp_txhead_max_length(const mmp_txhead *t) { return t->max_length; }
int mmp_txhead_pooled_dim(const mmp_txhead *t) { return t->C; }

void mmp_txhead_normalization(const mmp_txhead *t, float mean[3], float std[3]) {
    const mmp_tx_preprocess *p = &t->tm->pre;
    memcpy(mean, p->mean, sizeof p->mean);
    memcpy(std, p->std, sizeof p->std);
}

void mmp_txhead_set_threads(mmp_txhead *t, int threads) {
    if (t->bert) mmp_bert_set_threads(t->bert, threads);
    else mmp_tx_model_set_threads(t->tm, threads);
}

void mmp_txhead_set_recompute(mmp_txhead *t, int on) {
    if (t->bert) mmp_bert_set_recompute(t->bert, on);
    else mmp_tx_model_set_recompute(t->tm, on);
}

static int any_tower_trains(const mmp_txhead *t);

/* the blocks that run in inference mode in the training forward */
static int frozen_blocks(const mmp_txhead *t) {
    return t->unfreeze == MMP_UNFREEZE_LAST ? t->layers - t->last_n : t->lora ? t->lora_first : 0;
}

void mmp_txhead_batch_bytes(const void *model, int64_t N, int64_t *saved, int64_t *work) {
    const mmp_txhead *t = model;
    const int64_t NC = (N > 0 ? N : 0) * t->C * (int64_t)sizeof(float);
    int64_t sv = 0, wk = 0;
    if (N > 0 && any_tower_trains(t)) {
        const int frozen = frozen_blocks(t);
        if (!t->text) mmp_tx_image_train_size(t->m, (int)N, (int)t->H, (int)t->W, MMP_TX_OUT_POOLED, frozen, &sv, &wk);
        else if (t->bert) mmp_bert_train_size(t->bert, (int)N, t->max_length, frozen, &sv, &wk);
        else mmp_tx_text_train_size(t->tm, (int)N, t->max_length, frozen, &sv, &wk);
    }
    *saved = sv + NC; /* + the pooled features and their gradient (feat, dfeat) */
    *work = wk + NC;
}

static void grow(mmp_txhead *t, int64_t N) {
    if (N <= t->cap) return;
    t->feat = mmp_xrealloc(t->feat, sizeof(float) * (size_t)(N * t->C));
    t->dfeat = mmp_xrealloc(t->dfeat, sizeof(float) * (size_t)(N * t->C));
    t->lens = mmp_xrealloc(t->lens, sizeof(int) * (size_t)N);
    if (t->text) t->ids = mmp_xrealloc(t->ids, sizeof(int32_t) * (size_t)(N * t->max_length));
    t->cap = N;
}

/* the rows [len, ids...] -> packed ids and lens */
static int64_t unpack_texts(mmp_txhead *t, const float *x, int64_t N) {
    const int64_t D = t->max_length + 1;
    int64_t T = 0;
    for (int64_t s = 0; s < N; s++) {
        const float *r = x + s * D;
        int len = (int)r[0];
        t->lens[s] = len;
        for (int k = 0; k < len; k++) t->ids[T + k] = (int32_t)r[1 + k];
        T += len;
    }
    return T;
}

static int any_tower_trains(const mmp_txhead *t) { return t->np > 2; }

void mmp_txhead_forward(mmp_txhead *t, const float *x, int64_t N, int train, float *logits) {
    if (N <= 0) return;
    grow(t, N);
    char err[512] = "";
    int rc = 0;
    mmp_tx_saved_free(t->sv);
    t->sv = NULL;
    t->saved_grad = train && any_tower_trains(t);
    if (t->text) unpack_texts(t, x, N);
    if (!t->saved_grad) { /* the inference forward: nothing kept */
        if (!t->text)
            rc = mmp_tx_image_embed(t->m, x, (int)N, (int)t->H, (int)t->W, MMP_TX_OUT_POOLED, t->feat, NULL, err, sizeof err);
        else if (t->bert) {
            int64_t T = 0;
            for (int64_t s = 0; s < N; s++) T += t->lens[s];
            float *hid = mmp_xmalloc(sizeof(float) * (size_t)(T * t->C + 1));
            mmp_bert_forward(t->bert, t->ids, t->lens, (int)N, hid);
            mmp_bert_mean_pool(hid, t->lens, (int)N, t->C, 0, t->feat);
            free(hid);
        } else
            rc = mmp_tx_text_embed(t->tm, t->ids, t->lens, (int)N, MMP_TX_OUT_POOLED, t->feat, NULL, err, sizeof err);
    } else { /* last:N, LoRA: the blocks below run in inference mode, keeping nothing */
        const int frozen = frozen_blocks(t);
        if (!t->text)
            t->sv = mmp_tx_image_fwd_train_part(t->m, x, (int)N, (int)t->H, (int)t->W, MMP_TX_OUT_POOLED, frozen, t->feat, err,
                                                sizeof err);
        else if (t->bert)
            t->sv = mmp_bert_fwd_train_part(t->bert, t->ids, t->lens, (int)N, frozen, t->feat, err, sizeof err);
        else
            t->sv = mmp_tx_text_fwd_train_part(t->tm, t->ids, t->lens, (int)N, MMP_TX_OUT_POOLED, frozen, t->feat, err,
                                               sizeof err);
        rc = t->sv ? 0 : -1;
    }
    if (rc) mmp_die("%s", err); /* sizes and ids are checked when the data is read */
    const mmp_param *cw = &t->params[t->np - 2], *cb = &t->params[t->np - 1];
    mmp_linear_forward(t->feat, N, t->C, cw->w, cb->w, t->ncls, logits);
}

void mmp_txhead_backward(mmp_txhead *t, int64_t N, const float *dlogits) {
    mmp_param *cw = &t->params[t->np - 2], *cb = &t->params[t->np - 1];
    for (int i = 0; i < t->np - 2; i++) memset(t->params[i].g, 0, sizeof(float) * t->params[i].n);
    if (N <= 0) {
        memset(cw->g, 0, sizeof(float) * cw->n);
        memset(cb->g, 0, sizeof(float) * cb->n);
        return;
    }
    float *dfeat = t->saved_grad ? t->dfeat : NULL;
    mmp_linear_backward(t->feat, dlogits, N, t->C, cw->w, t->ncls, dfeat, cw->g, cb->g);
    if (!t->saved_grad) return;
    if (!t->text) mmp_tx_image_bwd(t->m, t->sv, dfeat, &t->gv, NULL);
    else if (t->bert) mmp_bert_bwd(t->bert, t->sv, dfeat, &t->gb, NULL);
    else mmp_tx_text_bwd(t->tm, t->sv, dfeat, &t->gt, NULL);
    /* The key bias adds q.b_k to every score of a query alike, which the
     * softmax cancels: its gradient is exactly zero. Computed, it is rounding
     * noise (~1e-9) that AdamW's m/sqrt(v) would turn into +-lr steps
     * (as the attention fusion head, train/head.c). */
    for (int l = 0; l < t->layers; l++)
        if (t->gblock[l].k_b) memset(t->gblock[l].k_b, 0, sizeof(float) * (size_t)t->C);
    mmp_tx_saved_free(t->sv);
    t->sv = NULL;
}

/* one tower tensor under the file's name (transposed ones back to the file's
 * layout); w2: the values to write instead of p->w (a merged weight) */
static void add_param(mmp_st_writer *w, const mmp_txhead *t, const mmp_tx_param *p, const float *w2) {
    char name[256];
    param_name(t, p, name, sizeof name);
    if (w2) {
        mmp_st_writer_add_f32(w, name, w2, p->ndim, p->shape);
        return;
    }
    if (!p->transposed) {
        mmp_st_writer_add_f32(w, name, p->w, p->ndim, p->shape);
        return;
    }
    float *tmp = mmp_xmalloc(sizeof(float) * (p->n ? p->n : 1));
    for (int r = 0; r < p->rows; r++)
        for (int c = 0; c < p->cols; c++) tmp[(size_t)r * p->cols + c] = p->w[(size_t)c * p->rows + r];
    mmp_st_writer_add_f32(w, name, tmp, p->ndim, p->shape);
    free(tmp);
}

/* W + scale B A of the adapter on P's parameter i (PEFT's merge: W [OC, IC]
 * += B [OC, r] A [r, IC] * alpha / r), NULL when it has none */
static float *merged_weight(const mmp_txhead *t, int i) {
    const mmp_tx_param *p = &t->P.p[i];
    const mmp_tx_lora *lo;
    for (int k = 0; (lo = mmp_tx_lora_site(t->lora, k, NULL)); k++) {
        const char *mod = mmp_tx_lora_module(t->lora, k);
        size_t n = strlen(mod);
        if (strncmp(p->name, mod, n) || strcmp(p->name + n, ".weight") || p->n != (size_t)lo->OC * lo->IC || p->transposed)
            continue;
        float *m = mmp_xmalloc(sizeof(float) * p->n);
        for (int o = 0; o < lo->OC; o++)
            for (int e = 0; e < lo->IC; e++) {
                float d = 0;
                for (int q = 0; q < lo->r; q++) d += lo->B[(size_t)o * lo->r + q] * lo->A[(size_t)q * lo->IC + e];
                m[(size_t)o * lo->IC + e] = p->w[(size_t)o * lo->IC + e] + d * lo->scale;
            }
        return m;
    }
    return NULL;
}

void mmp_txhead_save(const mmp_txhead *t, mmp_st_writer *w, int merged) {
    for (int i = 0; i < t->P.n; i++) {
        if (t->dropped[i] || (merged && is_adapter(t->P.p[i].name))) continue;
        float *mw = merged && t->lora ? merged_weight(t, i) : NULL;
        add_param(w, t, &t->P.p[i], mw);
        free(mw); /* (the writer copied it) */
    }
    const mmp_param *cw = &t->params[t->np - 2], *cb = &t->params[t->np - 1];
    mmp_st_writer_add_f32(w, cw->name, cw->w, cw->ndim, cw->shape);
    mmp_st_writer_add_f32(w, cb->name, cb->w, cb->ndim, cb->shape);
    /* the backbone's tensors the engine does not use (buffers such as
     * position_ids, HF ViT / BERT poolers, logit_scale ...): as they were */
    for (int i = 0; i < t->src.n; i++) {
        const char *nm = t->src.entries[i].name;
        if (!strcmp(nm, cw->name) || !strcmp(nm, cb->name)) continue;
        int have = 0;
        for (int k = 0; k < t->P.n && !have; k++) {
            char full[256];
            param_name(t, &t->P.p[k], full, sizeof full);
            have = !strcmp(full, nm);
        }
        if (!have) mmp_st_writer_add(w, nm, &t->src.entries[i].t);
    }
}

int mmp_txhead_load_weights(mmp_txhead *t, const mmp_safetensors *st, char *err, size_t errlen) {
    for (int i = 0; i < t->P.n; i++) {
        if (t->dropped[i]) continue;
        mmp_tx_param *p = &t->P.p[i];
        char name[256];
        param_name(t, p, name, sizeof name);
        const mmp_tensor *x = mmp_st_get(st, name);
        if (!x && is_adapter(p->name)) continue; /* --unfreeze lora from a checkpoint without adapters: fresh ones */
        if (!x || (size_t)mmp_numel(x->ndim, x->shape) != p->n)
            return mmp_errf(err, errlen, "tensor %s is missing or of another size than the backbone's", name);
        float *tmp = mmp_xmalloc(sizeof(float) * (p->n ? p->n : 1));
        mmp_tensor_to_f32(x, tmp);
        if (p->transposed) {
            for (int r = 0; r < p->rows; r++)
                for (int c = 0; c < p->cols; c++) p->w[(size_t)c * p->rows + r] = tmp[(size_t)r * p->cols + c];
        } else
            memcpy(p->w, tmp, sizeof(float) * p->n);
        free(tmp);
    }
    for (int k = 0; k < 2; k++) {
        mmp_param *p = &t->params[t->np - 2 + k];
        if (mmp_st_read_f32(st, p->name, p->ndim, p->shape, p->w, err, errlen)) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ text records */

int mmp_txhead_tokenize_stream(const char *model, int max_length, const char *path, int need_label, void *dataset,
                               char *err, size_t errlen) {
    mmp_dataset *d = dataset;
    memset(d, 0, sizeof *d);
    mmp_header_init(&d->hdr);
    mmp_text_encoder te;
    mmp_text_encoder_opts o = {.pooled = mmp_text_is_clip(model)};
    char e2[1024];
    if (mmp_text_encoder_load(&te, model, &o, e2, sizeof e2)) return mmp_errf(err, errlen, "--backbone: %s", e2);
    int ml = max_length > 0 ? max_length : te.max_length;
    if (ml > te.context) ml = te.context;
    mmp_reader *r = mmp_reader_open(path, e2, sizeof e2);
    if (!r) {
        mmp_text_encoder_free(&te);
        return mmp_errf(err, errlen, "%s", e2);
    }
    snprintf(d->name, sizeof d->name, "%s", mmp_reader_name(r));
    mmp_header_copy(&d->hdr, mmp_reader_header(r));
    const char *nm = d->name;
    int64_t cap = 0, ncls_hdr = d->hdr.nclasses, maxlab = -1;
    d->dim = ml + 1;
    mmp_record rec;
    mmp_record_init(&rec);
    int rc, ret = -1;
    int32_t *ids = mmp_xmalloc(sizeof(int32_t) * (size_t)(ml + 1));
    while ((rc = mmp_reader_next(r, &rec)) == 1) {
        int64_t i = d->n;
        if (!rec.text) {
            mmp_errf(err, errlen, "%s: record %lld%s%s%s: no text (text records for --head transformer)", nm, (long long)i,
                     rec.id ? " (id " : "", rec.id ? rec.id : "", rec.id ? ")" : "");
            goto out;
        }
        if (need_label && mmp_dataset_check_label(nm, i, rec.label, ncls_hdr, err, errlen)) goto out;
        int k = te.bert ? mmp_wp_encode(te.bert->tok, rec.text, strlen(rec.text), ml, MMP_UTF8_ERROR, ids, e2, sizeof e2)
                        : mmp_bpe_encode(te.bpe, rec.text, strlen(rec.text), ml, MMP_UTF8_ERROR, ids, e2, sizeof e2);
        if (k < 0) { mmp_errf(err, errlen, "%s: record %lld: %s", nm, (long long)i, e2); goto out; }
        if (d->n == cap) {
            cap = cap ? cap * 2 : 256;
            d->x = mmp_xrealloc(d->x, sizeof(float) * (size_t)(cap * d->dim));
            d->y = mmp_xrealloc(d->y, sizeof(int64_t) * (size_t)cap);
            d->ids = mmp_xrealloc(d->ids, sizeof(char *) * (size_t)cap);
        }
        float *row = d->x + i * d->dim;
        memset(row, 0, sizeof(float) * (size_t)d->dim);
        row[0] = (float)k;
        for (int j = 0; j < k; j++) row[1 + j] = (float)ids[j];
        d->y[i] = rec.label;
        if (rec.label > maxlab) maxlab = rec.label;
        d->ids[i] = rec.id ? mmp_xstrdup(rec.id) : NULL;
        d->n++;
    }
    if (rc < 0) {
        mmp_errf(err, errlen, "%s", mmp_reader_error(r));
        goto out;
    }
    if (d->n == 0) {
        mmp_errf(err, errlen, "%s: no records", nm);
        goto out;
    }
    d->ncls = ncls_hdr > 0 ? ncls_hdr : maxlab + 1;
    ret = 0;
out:
    free(ids);
    mmp_record_clear(&rec);
    mmp_reader_close(r);
    mmp_text_encoder_free(&te);
    if (ret) mmp_dataset_free(d);
    return ret;
}

int mmp_txhead_encode_text(const mmp_txhead *t, const char *text, float *row, char *err, size_t errlen) {
    const int ml = t->max_length;
    int32_t *ids = mmp_xmalloc(sizeof(int32_t) * (size_t)(ml + 1));
    int k = t->te.bert ? mmp_wp_encode(t->te.bert->tok, text, strlen(text), ml, MMP_UTF8_ERROR, ids, err, errlen)
                       : mmp_bpe_encode(t->te.bpe, text, strlen(text), ml, MMP_UTF8_ERROR, ids, err, errlen);
    if (k >= 0) {
        memset(row, 0, sizeof(float) * (size_t)(ml + 1));
        row[0] = (float)k;
        for (int j = 0; j < k; j++) row[1 + j] = (float)ids[j];
    }
    free(ids);
    return k < 0 ? -1 : 0;
}

int mmp_txhead_is_text(const mmp_txhead *t) { return t->text; }

void mmp_txhead_set_step(mmp_txhead *t, uint64_t step_seed) {
    if (t->lora) mmp_tx_lora_set_step(t->lora, step_seed);
}

int mmp_txhead_has_lora(const mmp_txhead *t) { return t->lora != NULL; }

int mmp_txhead_write_peft(const mmp_txhead *t, const char *dir, char *err, size_t errlen) {
    if (!t->lora) return mmp_errf(err, errlen, "not trained with --unfreeze lora: no adapters to write");
    return mmp_tx_lora_save(t->lora, dir, err, errlen);
}

int mmp_txhead_model_normalization(const char *model, float mean[3], float std[3], char *err, size_t errlen) {
    char e2[1024];
    mmp_tx_model *m = mmp_tx_model_load(model, e2, sizeof e2);
    if (!m) return mmp_errf(err, errlen, "--backbone: %s", e2);
    memcpy(mean, m->pre.mean, sizeof m->pre.mean);
    memcpy(std, m->pre.std, sizeof m->pre.std);
    mmp_tx_model_free(m);
    return 0;
}

int mmp_txhead_check_image_size(const mmp_txhead *t, int64_t H, int64_t W, char *err, size_t errlen) {
    const int P = t->m->vision->P;
    if (H < P || W < P || H % P || W % P || H > 1 << 14 || W > 1 << 14)
        return mmp_errf(err, errlen, "the images are %lldx%lld; %s takes sizes that are multiples of its patch size %d (mmp-decode --size)",
                        (long long)H, (long long)W, t->m->path, P);
    return 0;
}
