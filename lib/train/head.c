/* train/head.c: linear, MLP and pair (contrastive) heads (see head.h). */
#include "train/head.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "train/caption.h"
#include "train/resnet_tail.h"
#include "train/tx_head.h"

const char *mmp_head_kind_name(mmp_head_kind k) {
    return k == MMP_HEAD_MLP ? "mlp" : k == MMP_HEAD_PAIR ? "pair" : k == MMP_HEAD_GATED ? "gated"
           : k == MMP_HEAD_ATTENTION ? "attention" : k == MMP_HEAD_MNV2_TAIL ? "mnv2-tail"
           : k == MMP_HEAD_RESNET_TAIL ? "resnet-tail" : k == MMP_HEAD_CLIP ? "clip"
           : k == MMP_HEAD_TRANSFORMER ? "transformer" : k == MMP_HEAD_VQA ? "vqa"
           : k == MMP_HEAD_VQA_POOLED ? "vqa-pooled" : k == MMP_HEAD_CAPTION ? "caption" : "linear";
}

int mmp_head_kind_parse(const char *s, mmp_head_kind *k) {
    if (!strcmp(s, "linear")) *k = MMP_HEAD_LINEAR;
    else if (!strcmp(s, "mlp")) *k = MMP_HEAD_MLP;
    else if (!strcmp(s, "pair")) *k = MMP_HEAD_PAIR;
    else if (!strcmp(s, "gated")) *k = MMP_HEAD_GATED;
    else if (!strcmp(s, "attention")) *k = MMP_HEAD_ATTENTION;
    else if (!strcmp(s, "mnv2-tail")) *k = MMP_HEAD_MNV2_TAIL;
    else if (!strcmp(s, "resnet-tail")) *k = MMP_HEAD_RESNET_TAIL;
    else if (!strcmp(s, "clip")) *k = MMP_HEAD_CLIP;
    else if (!strcmp(s, "vqa")) *k = MMP_HEAD_VQA;
    else if (!strcmp(s, "vqa-pooled")) *k = MMP_HEAD_VQA_POOLED;
    else if (!strcmp(s, "transformer")) *k = MMP_HEAD_TRANSFORMER;
    else if (!strcmp(s, "caption")) *k = MMP_HEAD_CAPTION;
    else return -1;
    return 0;
}

void mmp_head_init(mmp_head *h, mmp_head_kind kind, int64_t in_dim, int64_t out_dim,
                   int64_t pair_dim, int nhidden, const int64_t *hidden, float dropout,
                   int has_scale) {
    memset(h, 0, sizeof *h);
    h->kind = kind;
    h->in_dim = in_dim;
    h->out_dim = out_dim;
    h->dropout = dropout;
    if (kind == MMP_HEAD_LINEAR) {
        h->np = 2;
        h->params = mmp_xcalloc(2, sizeof(mmp_param));
        mmp_param_init(&h->params[0], "weight", 2, (int64_t[]){out_dim, in_dim}, 1);
        mmp_param_init(&h->params[1], "bias", 1, (int64_t[]){out_dim}, 1);
    } else if (kind == MMP_HEAD_MLP) {
        if (nhidden < 1 || nhidden > MMP_HEAD_MAX_HIDDEN) mmp_die("mlp: 1..%d hidden layers", MMP_HEAD_MAX_HIDDEN);
        h->nhidden = nhidden;
        memcpy(h->hidden, hidden, sizeof(int64_t) * (size_t)nhidden);
        h->np = 2 * (nhidden + 1);
        h->params = mmp_xcalloc((size_t)h->np, sizeof(mmp_param));
        int64_t prev = in_dim;
        for (int l = 0; l <= nhidden; l++) {
            int64_t o = l < nhidden ? hidden[l] : out_dim;
            char name[64];
            snprintf(name, sizeof name, "layers.%d.weight", 3 * l);
            mmp_param_init(&h->params[2 * l], name, 2, (int64_t[]){o, prev}, 1);
            snprintf(name, sizeof name, "layers.%d.bias", 3 * l);
            mmp_param_init(&h->params[2 * l + 1], name, 1, (int64_t[]){o}, 1);
            prev = o;
        }
    } else if (kind == MMP_HEAD_PAIR) {
        h->pair_dim = pair_dim;
        h->has_scale = has_scale;
        h->np = has_scale ? 3 : 2;
        h->params = mmp_xcalloc((size_t)h->np, sizeof(mmp_param));
        mmp_param_init(&h->params[0], "image_projection.weight", 2, (int64_t[]){out_dim, in_dim}, 1);
        mmp_param_init(&h->params[1], "text_projection.weight", 2, (int64_t[]){out_dim, pair_dim}, 1);
        if (has_scale) mmp_param_init(&h->params[2], "logit_scale", 0, NULL, 0);
    } else {
        mmp_die("head kind %s: use mmp_head_init_fuse", mmp_head_kind_name(kind));
    }
}

/* The fields of a mmp_fuse_params in mmp_fuse_params_tensors' order. */
static int fuse_fields(mmp_fuse_params *p, float ***f) {
    int n = 0;
    f[n++] = &p->wa; f[n++] = &p->ba; f[n++] = &p->wb; f[n++] = &p->bb;
    if (p->kind == MMP_FUSEP_GATED) { f[n++] = &p->wg; f[n++] = &p->bg; }
    else if (p->kind == MMP_FUSEP_ATTENTION) { f[n++] = &p->win; f[n++] = &p->bin; f[n++] = &p->wo; f[n++] = &p->bo; }
    return n;
}

int mmp_head_init_fuse(mmp_head *h, mmp_head_kind kind, int64_t da, int64_t db, int64_t F, int heads,
                       int64_t C, char *err, size_t errlen) {
    memset(h, 0, sizeof *h);
    if (!MMP_HEAD_IS_FUSE(kind)) return mmp_errf(err, errlen, "not a fusion head");
    if (C < 1 || da > (1 << 20) || db > (1 << 20) || F > (1 << 16)) {
        return mmp_errf(err, errlen, "fusion head: bad sizes (inputs %lld, %lld; --fuse-dim %lld; %lld classes)",
                        (long long)da, (long long)db, (long long)F, (long long)C);
    }
    mmp_fusep_kind fk = kind == MMP_HEAD_GATED ? MMP_FUSEP_GATED : MMP_FUSEP_ATTENTION;
    mmp_fuse_params tmp; /* the names and shapes, in lib/fuse's order */
    if (mmp_fuse_params_alloc(&tmp, fk, (int)da, (int)db, (int)F, heads, err, errlen)) return -1;
    const char *names[8];
    float *data[8];
    int nd[8];
    int64_t shp[8][2];
    int n = mmp_fuse_params_tensors(&tmp, names, data, nd, shp);
    h->kind = kind;
    h->in_dim = da;
    h->pair_dim = db;
    h->out_dim = C;
    h->fuse_dim = F;
    h->heads = kind == MMP_HEAD_ATTENTION ? heads : 0;
    h->np = n + 2;
    h->params = mmp_xcalloc((size_t)h->np, sizeof(mmp_param));
    for (int i = 0; i < n; i++) mmp_param_init(&h->params[i], names[i], nd[i], shp[i], 1);
    mmp_param_init(&h->params[n], "classifier.weight", 2, (int64_t[]){C, F}, 1);
    mmp_param_init(&h->params[n + 1], "classifier.bias", 1, (int64_t[]){C}, 1);
    /* views: fp/fg point at the parameters' values/gradients */
    h->fp = tmp;
    h->fg = tmp;
    float **fv[8], **fgr[8];
    fuse_fields(&h->fp, fv);
    fuse_fields(&h->fg, fgr);
    for (int i = 0; i < n; i++) {
        *fv[i] = h->params[i].w;
        *fgr[i] = h->params[i].g;
    }
    mmp_fuse_params_free(&tmp);
    return 0;
}
/* The head of kind `kind` over an initialised CNN tail t (owned from here on). */
static void head_adopt_tail(mmp_head *h, mmp_head_kind kind, mmp_cnn_tail *t, int64_t C, float dropout) {
    h->kind = kind;
    h->tail = t;
    h->in_dim = t->C0 * t->H0 * t->W0;
    h->out_dim = C;
    h->dropout = dropout;
    h->np = t->np;
    h->params = t->params;
}

int mmp_head_init_tail(mmp_head *h, const mmp_safetensors *src, int first, int64_t H0, int64_t W0, int64_t C,
                       float dropout, int load_classifier, char *err, size_t errlen) {
    memset(h, 0, sizeof *h);
    mmp_cnn_tail *t = mmp_xcalloc(1, sizeof *t);
    if (mmp_tail_init(t, src, first, H0, W0, C, dropout, load_classifier, err, errlen)) {
        free(t);
        return -1;
    }
    head_adopt_tail(h, MMP_HEAD_MNV2_TAIL, t, C, dropout);
    return 0;
}

int mmp_head_init_resnet_tail(mmp_head *h, const mmp_safetensors *src, int L, int i, int64_t H0, int64_t W0, int64_t C,
                              int load_fc, char *err, size_t errlen) {
    memset(h, 0, sizeof *h);
    mmp_cnn_tail *t = mmp_xcalloc(1, sizeof *t);
    if (mmp_resnet_tail_init(t, src, L, i, H0, W0, C, load_fc, err, errlen)) {
        free(t);
        return -1;
    }
    head_adopt_tail(h, MMP_HEAD_RESNET_TAIL, t, C, 0.0f); /* no dropout unless the caller sets one */
    return 0;
}

void mmp_head_free(mmp_head *h) {
    if (h->capt) { /* owns params */
        mmp_captioner_free(h->capt);
        h->capt = NULL;
        h->params = NULL;
        h->np = 0;
    }
    if (h->tx) { /* owns params */
        mmp_txhead_free(h->tx);
        h->params = NULL;
        h->np = 0;
    }
    if (h->tail) { /* owns params */
        mmp_tail_free(h->tail);
        free(h->tail);
        h->params = NULL;
        h->np = 0;
    }
    for (int i = 0; i < h->np; i++) mmp_param_free(&h->params[i]);
    free(h->params);
    for (int i = 0; i <= MMP_HEAD_MAX_HIDDEN; i++) {
        free(h->act[i]); free(h->pre[i]); free(h->mask[i]);
    }
    free(h->d1);
    free(h->d2);
    free(h->fcache); free(h->fh); free(h->fdh); /* fp/fg are views of params[] */
    memset(h, 0, sizeof *h);
}

mmp_param *mmp_head_param(mmp_head *h, const char *name) {
    for (int i = 0; i < h->np; i++)
        if (!strcmp(h->params[i].name, name)) return &h->params[i];
    return NULL;
}

void mmp_head_init_weights(mmp_head *h, uint64_t seed) {
    if (h->capt) return; /* the mapping network was initialized from the seed, the decoder is its folder's */
    uint64_t rng = mmp_rng_derive(seed, 0x1417, 0);
    int first = 0;
    if (MMP_HEAD_IS_FUSE(h->kind)) {
        mmp_fuse_params_init(&h->fp, seed);
        first = h->np - 2; /* the classifier */
    }
    if (MMP_HEAD_IS_TAIL(h->kind) || h->tx) first = h->np - 2; /* the tail / tower comes from the backbone */
    for (int i = first; i < h->np; i++) {
        mmp_param *p = &h->params[i];
        if (!strcmp(p->name, "logit_scale")) {
            p->w[0] = (float)log(1 / 0.07);
        } else if (h->kind == MMP_HEAD_PAIR) {
            double sd = 1.0 / sqrt((double)p->shape[1]);
            for (size_t k = 0; k < p->n; k++) p->w[k] = (float)(sd * mmp_rng_normal_clamp(&rng));
        } else {
            /* fan_in of the layer: weight [O,I] -> I; bias -> the weight before it */
            int64_t fan_in = p->ndim == 2 ? p->shape[1] : h->params[i - 1].shape[1];
            double bound = 1.0 / sqrt((double)fan_in);
            for (size_t k = 0; k < p->n; k++) p->w[k] = (float)((mmp_rng_uniform53(&rng) * 2 - 1) * bound);
        }
    }
}

static void grow(mmp_head *h, int64_t N) {
    if (N <= h->cap) return;
    int64_t cap = N;
    for (int l = 0; l < h->nhidden; l++) {
        size_t n = (size_t)(cap * h->hidden[l]);
        h->act[l] = mmp_xrealloc(h->act[l], sizeof(float) * n);
        h->pre[l] = mmp_xrealloc(h->pre[l], sizeof(float) * n);
        h->mask[l] = mmp_xrealloc(h->mask[l], sizeof(float) * n);
    }
    int64_t widest = h->out_dim > h->in_dim ? h->out_dim : h->in_dim;
    for (int l = 0; l < h->nhidden; l++) widest = h->hidden[l] > widest ? h->hidden[l] : widest;
    h->d1 = mmp_xrealloc(h->d1, sizeof(float) * (size_t)(cap * widest));
    h->d2 = mmp_xrealloc(h->d2, sizeof(float) * (size_t)(cap * widest));
    h->cap = cap;
}

void mmp_head_forward(mmp_head *h, const float *x, int64_t N, int train, uint64_t *rng,
                      float *logits) {
    if (h->tx) {
        if (train && rng) mmp_txhead_set_step(h->tx, *rng); /* LoRA dropout masks: the step's stream */
        mmp_txhead_forward(h->tx, x, N, train, logits);
        return;
    }
    if (MMP_HEAD_IS_TAIL(h->kind)) {
        mmp_tail_forward(h->tail, x, N, train, rng, logits);
        return;
    }
    if (h->kind == MMP_HEAD_LINEAR) {
        mmp_linear_forward(x, N, h->in_dim, h->params[0].w, h->params[1].w, h->out_dim, logits);
        return;
    }
    if (h->kind != MMP_HEAD_MLP) mmp_die("head kind %s has no classifier forward", mmp_head_kind_name(h->kind));
    grow(h, N);
    const float *in = x;
    int64_t prev = h->in_dim;
    for (int l = 0; l < h->nhidden; l++) {
        int64_t o = h->hidden[l];
        size_t n = (size_t)(N * o);
        mmp_linear_forward(in, N, prev, h->params[2 * l].w, h->params[2 * l + 1].w, o, h->act[l]);
        mmp_relu_forward(h->act[l], n);
        if (train && h->dropout > 0) {
            memcpy(h->pre[l], h->act[l], sizeof(float) * n);
            mmp_dropout_forward(h->act[l], h->mask[l], n, h->dropout, rng);
        }
        in = h->act[l];
        prev = o;
    }
    int L = h->nhidden;
    mmp_linear_forward(in, N, prev, h->params[2 * L].w, h->params[2 * L + 1].w, h->out_dim, logits);
}

void mmp_head_backward(mmp_head *h, const float *x, int64_t N, const float *dlogits) {
    if (h->tx) { /* the activations of the last forward (train = 1) */
        mmp_txhead_backward(h->tx, N, dlogits);
        return;
    }
    if (MMP_HEAD_IS_TAIL(h->kind)) { /* uses the activations of the last forward (train = 1) */
        mmp_tail_backward(h->tail, N, dlogits, NULL);
        return;
    }
    if (h->kind == MMP_HEAD_LINEAR) {
        mmp_linear_backward(x, dlogits, N, h->in_dim, h->params[0].w, h->out_dim, NULL,
                            h->params[0].g, h->params[1].g);
        return;
    }
    grow(h, N);
    int L = h->nhidden;
    const float *dy = dlogits;
    int64_t o = h->out_dim;
    float *bufs[2] = {h->d1, h->d2};
    for (int l = L; l >= 0; l--) {
        int64_t in_w = l > 0 ? h->hidden[l - 1] : h->in_dim;
        const float *in = l > 0 ? h->act[l - 1] : x;
        float *dx = l > 0 ? bufs[l & 1] : NULL;
        mmp_linear_backward(in, dy, N, in_w, h->params[2 * l].w, o, dx, h->params[2 * l].g,
                            h->params[2 * l + 1].g);
        if (l > 0) {
            size_t n = (size_t)(N * in_w);
            if (h->dropout > 0) {
                mmp_dropout_backward(h->mask[l - 1], dx, n);
                mmp_relu_backward(h->pre[l - 1], dx, n);
            } else {
                mmp_relu_backward(h->act[l - 1], dx, n);
            }
            dy = dx;
            o = in_w;
        }
    }
}

void mmp_head_pair_forward(mmp_head *h, const float *x, const float *y, int64_t N, float *za,
                           float *zb) {
    if (x && za) mmp_linear_forward(x, N, h->in_dim, h->params[0].w, NULL, h->out_dim, za);
    if (y && zb) mmp_linear_forward(y, N, h->pair_dim, h->params[1].w, NULL, h->out_dim, zb);
}

void mmp_head_pair_backward(mmp_head *h, const float *x, const float *y, int64_t N,
                            const float *dza, const float *dzb) {
    mmp_linear_backward(x, dza, N, h->in_dim, h->params[0].w, h->out_dim, NULL, h->params[0].g, NULL);
    mmp_linear_backward(y, dzb, N, h->pair_dim, h->params[1].w, h->out_dim, NULL, h->params[1].g, NULL);
}

static void grow_fuse(mmp_head *h, int64_t N) {
    if (N <= h->fcap) return;
    h->fcache = mmp_xrealloc(h->fcache, sizeof(float) * mmp_fuse_cache_size(&h->fp, (int)N));
    h->fh = mmp_xrealloc(h->fh, sizeof(float) * (size_t)(N * h->fuse_dim));
    h->fdh = mmp_xrealloc(h->fdh, sizeof(float) * (size_t)(N * h->fuse_dim));
    h->fcap = N;
}

void mmp_head_fuse_forward(mmp_head *h, const float *a, const float *b, int64_t N, float *fused,
                           float *logits) {
    if (!MMP_HEAD_IS_FUSE(h->kind)) mmp_die("head kind %s is not a fusion head", mmp_head_kind_name(h->kind));
    if (N <= 0) return;
    grow_fuse(h, N);
    mmp_fuse_forward(&h->fp, (int)N, a, b, h->fh, h->fcache);
    int n = h->np - 2;
    mmp_linear_forward(h->fh, N, h->fuse_dim, h->params[n].w, h->params[n + 1].w, h->out_dim, logits);
    if (fused) memcpy(fused, h->fh, sizeof(float) * (size_t)(N * h->fuse_dim));
}

void mmp_head_fuse_backward(mmp_head *h, const float *a, const float *b, int64_t N, const float *dlogits) {
    int n = h->np - 2;
    for (int i = 0; i < h->np; i++) memset(h->params[i].g, 0, sizeof(float) * h->params[i].n);
    if (N <= 0) return;
    grow_fuse(h, N);
    mmp_linear_backward(h->fh, dlogits, N, h->fuse_dim, h->params[n].w, h->out_dim, h->fdh, h->params[n].g,
                        h->params[n + 1].g);
    mmp_fuse_backward(&h->fp, (int)N, a, b, h->fcache, h->fdh, &h->fg, NULL, NULL);
    /* The key bias (attn.in_proj_bias[F:2F]) adds q.b_k to every score of a query
     * alike, which the softmax cancels: its gradient is exactly zero. Computed, it is
     * rounding noise (~1e-9) that AdamW's m/sqrt(v) would turn into +-lr steps. */
    if (h->kind == MMP_HEAD_ATTENTION) memset(h->fg.bin + h->fuse_dim, 0, sizeof(float) * (size_t)h->fuse_dim);
}
