/* nn/model.c: loading torchvision ResNet / MobileNetV2 state_dicts (batch
 * norm folded), the forward passes, and threading over micro-batches. */
#include "nn/nn.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "nn/winograd.h"
#include "nn/gemm.h"
#include "nn/cpu.h"
#include "nn/txmodel.h"

#define BN_EPS 1e-5f /* torchvision BatchNorm2d default */

typedef enum { BLK_STEM, BLK_BASIC, BLK_BOTTLENECK, BLK_INVERTED_RESIDUAL, BLK_CONV } blk_kind;

/* One block of the network. Shapes: in [G,H,W,cin] -> out [G,Ho,Wo,cout].
 *  STEM        ResNet conv1+bn1+relu, maxpool 3x3/2      conv[0]
 *  BASIC       relu(c2(relu(c1 x)) + (ds x | x))         conv[0..1], ds conv[3]
 *  BOTTLENECK  relu(c3(relu(c2(relu(c1 x)))) + (ds x|x)) conv[0..2], ds conv[3]
 *  INVERTED_RESIDUAL  MobileNetV2 InvertedResidual: [expand 1x1 relu6] dw3x3 relu6,
 *              project 1x1 (+ x when stride 1 and cin == cout)  conv[0..2]
 *  CONV        Conv-BN-ReLU6 (MobileNetV2 features.0, features.18) conv[0] */
typedef struct {
    blk_kind kind;
    char name[32];  /* "layer3.1", "features.13" */
    char alias[32]; /* "layer3" for the last block of layer3; "maxpool" for the stem */
    mmp_nn_conv conv[4];
    int has_expand, has_ds, residual;
    int cin, cout;
    float *wt[3]; /* INVERTED_RESIDUAL: conv[0], conv[2]; CONV: conv[0]: weights packed for the CPU (mmp_nn_cpu_pack_1x1) */
} mmp_nn_block;

struct mmp_nn_model {
    char arch[64];
    mmp_nn_preproc pre;
    int nblocks;
    mmp_nn_block *blocks;
    int pool_dim;
    int classes; /* 0: no classifier */
    float *fc_w, *fc_b;
    char *block_names;
    mmp_tx_model *tx; /* a ViT/CLIP image tower (nn/txmodel.h) instead of the blocks */
    char *weights;    /* the weights file */
};

/* ---- loading ---- */

typedef struct {
    const mmp_safetensors *st;
    const char *path;
    char *err;
    size_t errlen;
} loader;

/* Tensor as floats (any float dtype) with an exact shape; NULL + err when not. */
static float *get_f32(loader *L, const char *name, int ndim, const int64_t *shape) {
    return mmp_st_f32(L->st, name, ndim, shape, L->err, L->errlen);
}

static const mmp_tensor *find(loader *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const mmp_tensor *find(loader *L, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return mmp_st_get(L->st, name);
}

/* Loads conv weight WNAME ([cout, cin/groups, k, k]) and batch norm BNPREFIX.{weight,bias,
 * running_mean,running_var}, folds them into c. Shapes come from the weight. */
static int load_conv(loader *L, mmp_nn_conv *c, const char *wname, const char *bn, int stride,
                     int depthwise, mmp_nn_act act) {
    const mmp_tensor *t = mmp_st_get(L->st, wname);
    if (!t) return mmp_errf(L->err, L->errlen, "%s: tensor '%s' is missing", L->path, wname);
    if (t->ndim != 4 || t->shape[2] != t->shape[3] || t->shape[2] < 1 || t->shape[2] > 11 ||
        t->shape[0] < 1 || t->shape[1] < 1 || t->shape[0] > 65536 || t->shape[1] > 65536)
        return mmp_errf(L->err, L->errlen, "%s: tensor %s is not a square conv weight", L->path, wname);
    int cout = (int)t->shape[0], k = (int)t->shape[2];
    int cin = depthwise ? cout : (int)t->shape[1];
    if (depthwise && (t->shape[1] != 1 || k != 3))
        return mmp_errf(L->err, L->errlen, "%s: tensor %s: expected a depthwise 3x3 weight [C,1,3,3]",
                    L->path, wname);
    int64_t wshape[4] = {cout, depthwise ? 1 : cin, k, k}, cs[1] = {cout};
    float *w = get_f32(L, wname, 4, wshape);
    if (!w) return -1;
    char nm[256];
    float *bnv[4] = {0};
    static const char *suf[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) {
        snprintf(nm, sizeof nm, "%s.%s", bn, suf[i]);
        if (!(bnv[i] = get_f32(L, nm, 1, cs))) {
            for (int j = 0; j < i; j++) free(bnv[j]);
            free(w);
            return -1;
        }
    }
    c->cin = cin;
    c->cout = cout;
    c->k = k;
    c->stride = stride;
    c->pad = k / 2;
    c->depthwise = depthwise;
    c->act = act;
    int kk = k * k;
    c->w = mmp_xmalloc(sizeof(float) * (size_t)cout * kk * (depthwise ? 1 : cin));
    c->b = mmp_xmalloc(sizeof(float) * cout);
    for (int o = 0; o < cout; o++) {
        float scale = bnv[0][o] / sqrtf(bnv[3][o] + BN_EPS);
        c->b[o] = bnv[1][o] - bnv[2][o] * scale;
        if (depthwise) {
            for (int t2 = 0; t2 < kk; t2++) c->w[(size_t)t2 * cout + o] = w[(size_t)o * kk + t2] * scale;
        } else {
            /* torch [cout][cin][ky][kx] -> ours [cout][ky][kx][cin] */
            for (int i = 0; i < cin; i++)
                for (int t2 = 0; t2 < kk; t2++)
                    c->w[((size_t)o * kk + t2) * cin + i] = w[((size_t)o * cin + i) * kk + t2] * scale;
        }
    }
    for (int i = 0; i < 4; i++) free(bnv[i]);
    free(w);
    return 0;
}

static mmp_nn_block *add_block(mmp_nn_model *m, int *cap) {
    if (m->nblocks == *cap) {
        *cap = *cap ? *cap * 2 : 32;
        m->blocks = mmp_xrealloc(m->blocks, sizeof(mmp_nn_block) * *cap);
    }
    mmp_nn_block *b = &m->blocks[m->nblocks++];
    memset(b, 0, sizeof *b);
    return b;
}

static int load_resnet(mmp_nn_model *m, loader *L, const char *want) {
    int cap = 0;
    mmp_nn_block *b = add_block(m, &cap);
    b->kind = BLK_STEM;
    snprintf(b->name, sizeof b->name, "maxpool");
    if (load_conv(L, &b->conv[0], "conv1.weight", "bn1", 2, 0, MMP_NN_ACT_RELU)) return -1;
    if (b->conv[0].k != 7 || b->conv[0].cin != 3)
        return mmp_errf(L->err, L->errlen, "%s: conv1.weight: expected [C,3,7,7]", L->path);
    b->cin = 3;
    b->cout = b->conv[0].cout;
    int bottleneck = find(L, "layer1.0.conv3.weight") != NULL;
    int counts[4], width = b->cout, c = b->cout;
    char nm[128], bn[128];
    for (int li = 0; li < 4; li++) {
        int n = 0;
        while (find(L, "layer%d.%d.conv1.weight", li + 1, n)) n++;
        if (n == 0) return mmp_errf(L->err, L->errlen, "%s: tensor 'layer%d.0.conv1.weight' is missing", L->path, li + 1);
        counts[li] = n;
        for (int i = 0; i < n; i++) {
            b = add_block(m, &cap);
            b->kind = bottleneck ? BLK_BOTTLENECK : BLK_BASIC;
            snprintf(b->name, sizeof b->name, "layer%d.%d", li + 1, i);
            if (i == n - 1) snprintf(b->alias, sizeof b->alias, "layer%d", li + 1);
            int stride = (i == 0 && li > 0) ? 2 : 1;
            int nconv = bottleneck ? 3 : 2;
            for (int j = 0; j < nconv; j++) {
                int s = bottleneck ? (j == 1 ? stride : 1) : (j == 0 ? stride : 1);
                snprintf(nm, sizeof nm, "layer%d.%d.conv%d.weight", li + 1, i, j + 1);
                snprintf(bn, sizeof bn, "layer%d.%d.bn%d", li + 1, i, j + 1);
                /* the last conv's ReLU comes after the residual add: act in its epilogue */
                if (load_conv(L, &b->conv[j], nm, bn, s, 0, MMP_NN_ACT_RELU)) return -1;
                if (b->conv[j].k != (bottleneck && j != 1 ? 1 : 3))
                    return mmp_errf(L->err, L->errlen, "%s: %s: unexpected kernel size %d", L->path, nm, b->conv[j].k);
            }
            b->cin = c;
            b->cout = b->conv[nconv - 1].cout;
            if (b->conv[0].cin != c)
                return mmp_errf(L->err, L->errlen, "%s: layer%d.%d.conv1.weight: %d input channels, expected %d",
                            L->path, li + 1, i, b->conv[0].cin, c);
            for (int j = 1; j < nconv; j++)
                if (b->conv[j].cin != b->conv[j - 1].cout)
                    return mmp_errf(L->err, L->errlen, "%s: layer%d.%d: channel counts do not chain", L->path, li + 1, i);
            snprintf(nm, sizeof nm, "layer%d.%d.downsample.0.weight", li + 1, i);
            if (mmp_st_get(L->st, nm)) {
                snprintf(bn, sizeof bn, "layer%d.%d.downsample.1", li + 1, i);
                if (load_conv(L, &b->conv[3], nm, bn, stride, 0, MMP_NN_ACT_NONE)) return -1;
                if (b->conv[3].k != 1 || b->conv[3].cin != c || b->conv[3].cout != b->cout)
                    return mmp_errf(L->err, L->errlen, "%s: %s: unexpected shape", L->path, nm);
                b->has_ds = 1;
            } else if (stride != 1 || c != b->cout) {
                return mmp_errf(L->err, L->errlen, "%s: tensor '%s' is missing", L->path, nm);
            }
            c = b->cout;
        }
    }
    m->pool_dim = c;
    if (mmp_st_get(L->st, "fc.weight")) {
        const mmp_tensor *t = mmp_st_get(L->st, "fc.weight");
        if (t->ndim != 2 || t->shape[1] != c || t->shape[0] < 1)
            return mmp_errf(L->err, L->errlen, "%s: fc.weight: expected [classes,%d]", L->path, c);
        int64_t ws[2] = {t->shape[0], c}, bs[1] = {t->shape[0]};
        if (!(m->fc_w = get_f32(L, "fc.weight", 2, ws)) || !(m->fc_b = get_f32(L, "fc.bias", 1, bs))) return -1;
        m->classes = (int)t->shape[0];
    }
    /* name */
    static const int std_counts[5][4] = {{2, 2, 2, 2}, {3, 4, 6, 3}, {3, 4, 6, 3}, {3, 4, 23, 3}, {3, 8, 36, 3}};
    static const int std_bott[5] = {0, 0, 1, 1, 1}, std_depth[5] = {18, 34, 50, 101, 152};
    snprintf(m->arch, sizeof m->arch, "resnet-%s-%d.%d.%d.%d-w%d", bottleneck ? "bottleneck" : "basic",
             counts[0], counts[1], counts[2], counts[3], width);
    for (int i = 0; i < 5; i++)
        if (width == 64 && std_bott[i] == bottleneck && !memcmp(counts, std_counts[i], sizeof counts))
            snprintf(m->arch, sizeof m->arch, "resnet%d", std_depth[i]);
    if (want && strcmp(want, "resnet") && strcmp(want, m->arch))
        return mmp_errf(L->err, L->errlen, "%s: --arch %s, but the weights are %s", L->path, want, m->arch);
    return 0;
}

static int load_mnv2(mmp_nn_model *m, loader *L, const char *want) {
    /* torchvision inverted_residual_setting: t, c, n, s */
    static const int rep[7] = {1, 2, 3, 4, 3, 3, 1}, str[7] = {1, 2, 2, 2, 1, 2, 1};
    int cap = 0;
    char nm[128], bn[128];
    mmp_nn_block *b = add_block(m, &cap);
    b->kind = BLK_CONV;
    snprintf(b->name, sizeof b->name, "features.0");
    if (load_conv(L, &b->conv[0], "features.0.0.weight", "features.0.1", 2, 0, MMP_NN_ACT_RELU6)) return -1;
    if (b->conv[0].k != 3 || b->conv[0].cin != 3)
        return mmp_errf(L->err, L->errlen, "%s: features.0.0.weight: expected [C,3,3,3]", L->path);
    b->wt[0] = mmp_nn_cpu_pack_1x1(b->conv[0].w, b->conv[0].cout, 27);
    b->cin = 3;
    int c = b->cout = b->conv[0].cout;
    int fi = 1;
    for (int st = 0; st < 7; st++)
        for (int i = 0; i < rep[st]; i++, fi++) {
            int stride = i == 0 ? str[st] : 1;
            b = add_block(m, &cap);
            b->kind = BLK_INVERTED_RESIDUAL;
            snprintf(b->name, sizeof b->name, "features.%d", fi);
            b->has_expand = find(L, "features.%d.conv.3.weight", fi) != NULL;
            int j = 0;
            if (b->has_expand) {
                snprintf(nm, sizeof nm, "features.%d.conv.0.0.weight", fi);
                snprintf(bn, sizeof bn, "features.%d.conv.0.1", fi);
                if (load_conv(L, &b->conv[0], nm, bn, 1, 0, MMP_NN_ACT_RELU6)) return -1;
                j = 1;
            }
            snprintf(nm, sizeof nm, "features.%d.conv.%d.0.weight", fi, j);
            snprintf(bn, sizeof bn, "features.%d.conv.%d.1", fi, j);
            if (load_conv(L, &b->conv[1], nm, bn, stride, 1, MMP_NN_ACT_RELU6)) return -1;
            snprintf(nm, sizeof nm, "features.%d.conv.%d.weight", fi, j + 1);
            snprintf(bn, sizeof bn, "features.%d.conv.%d", fi, j + 2);
            if (load_conv(L, &b->conv[2], nm, bn, 1, 0, MMP_NN_ACT_NONE)) return -1;
            int hid = b->conv[1].cout;
            if ((b->has_expand && (b->conv[0].k != 1 || b->conv[0].cin != c || b->conv[0].cout != hid)) ||
                (!b->has_expand && hid != c) || b->conv[2].k != 1 || b->conv[2].cin != hid)
                return mmp_errf(L->err, L->errlen, "%s: features.%d: channel counts do not chain", L->path, fi);
            b->cin = c;
            b->cout = b->conv[2].cout;
            b->residual = stride == 1 && c == b->cout;
            c = b->cout;
            for (int q = 0; q < 3; q += 2) /* q = 0 without expansion: skipped */
                if (q == 2 || b->has_expand) b->wt[q] = mmp_nn_cpu_pack_1x1(b->conv[q].w, b->conv[q].cout, b->conv[q].cin);
        }
    b = add_block(m, &cap);
    b->kind = BLK_CONV;
    snprintf(b->name, sizeof b->name, "features.%d", fi);
    snprintf(nm, sizeof nm, "features.%d.0.weight", fi);
    snprintf(bn, sizeof bn, "features.%d.1", fi);
    if (load_conv(L, &b->conv[0], nm, bn, 1, 0, MMP_NN_ACT_RELU6)) return -1;
    if (b->conv[0].k != 1 || b->conv[0].cin != c)
        return mmp_errf(L->err, L->errlen, "%s: %s: unexpected shape", L->path, nm);
    b->wt[0] = mmp_nn_cpu_pack_1x1(b->conv[0].w, b->conv[0].cout, c);
    b->cin = c;
    c = b->cout = b->conv[0].cout;
    if (find(L, "features.%d.0.weight", fi + 1))
        return mmp_errf(L->err, L->errlen, "%s: unsupported MobileNetV2 layout (more than %d features)", L->path, fi + 1);
    m->pool_dim = c;
    const mmp_tensor *t = mmp_st_get(L->st, "classifier.1.weight");
    if (t) {
        if (t->ndim != 2 || t->shape[1] != c || t->shape[0] < 1)
            return mmp_errf(L->err, L->errlen, "%s: classifier.1.weight: expected [classes,%d]", L->path, c);
        int64_t ws[2] = {t->shape[0], c}, bs[1] = {t->shape[0]};
        if (!(m->fc_w = get_f32(L, "classifier.1.weight", 2, ws)) ||
            !(m->fc_b = get_f32(L, "classifier.1.bias", 1, bs)))
            return -1;
        m->classes = (int)t->shape[0];
    }
    snprintf(m->arch, sizeof m->arch, "mobilenet_v2");
    if (want && strcmp(want, "mobilenet_v2"))
        return mmp_errf(L->err, L->errlen, "%s: --arch %s, but the weights are mobilenet_v2", L->path, want);
    return 0;
}

int mmp_nn_parse3(const char *s, float out[3]) {
    if (!s) return -1;
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !isfinite(v)) return -1;
        out[i] = (float)v;
        p = end;
        while (*p == ' ') p++;
        if (i < 2) {
            if (*p != ',') return -1;
            p++;
        }
    }
    return *p ? -1 : 0;
}

static void prepare_winograd(mmp_nn_model *m);
static void prepare_gemm(mmp_nn_model *m);

/* A ViT/CLIP checkpoint (file or folder) behind an mmp_nn_model. */
static int load_tx(mmp_nn_model **out, const char *path, const char *arch, char *err, size_t errlen) {
    mmp_tx_model *tx = mmp_tx_model_load(path, err, errlen);
    if (!tx) return -1;
    mmp_nn_model *m = mmp_xcalloc(1, sizeof *m);
    m->tx = tx;
    m->weights = mmp_xstrdup(tx->path);
    mmp_nn_tx_arch(tx, m->arch, sizeof m->arch);
    if (!tx->vision) {
        mmp_errf(err, errlen, "%s: %s has no image tower (a text-only checkpoint)", path, m->arch);
        mmp_nn_model_free(m);
        return -1;
    }
    if (mmp_nn_tx_check_arch(tx, m->arch, arch, path, err, errlen)) {
        mmp_nn_model_free(m);
        return -1;
    }
    m->pre.size = tx->pre.height;
    memcpy(m->pre.mean, tx->pre.mean, sizeof m->pre.mean);
    memcpy(m->pre.std, tx->pre.std, sizeof m->pre.std);
    for (int i = 0; i < 3; i++)
        if (!(m->pre.std[i] > 0)) {
            mmp_errf(err, errlen, "%s: the preprocessing's std must be positive", path);
            mmp_nn_model_free(m);
            return -1;
        }
    m->classes = mmp_tx_image_dim(tx, MMP_TX_OUT_LOGITS) > 0 ? mmp_tx_image_dim(tx, MMP_TX_OUT_LOGITS) : 0;
    m->pool_dim = mmp_tx_image_dim(tx, MMP_TX_OUT_POOLED);
    char names[128];
    mmp_nn_tx_layer_names(tx, names, sizeof names);
    m->block_names = mmp_xstrdup(names);
    *out = m;
    return 0;
}

static int is_tx_arch(const char *a) { return !strncmp(a, "vit", 3) || !strncmp(a, "clip", 4); }

int mmp_nn_model_load(mmp_nn_model **out, const char *path, const char *arch, char *err, size_t errlen) {
    *out = NULL;
    if (arch && strcmp(arch, "mobilenet_v2") && strncmp(arch, "resnet", 6) && !is_tx_arch(arch))
        return mmp_errf(err, errlen,
                        "unknown --arch %s (resnet18, resnet34, resnet50, resnet101, resnet152, mobilenet_v2; "
                        "vit, clip, vit-hf, vit-timm, clip-hf, clip-openclip)",
                        arch);
    if (mmp_nn_tx_wants(path, NULL)) return load_tx(out, path, arch, err, errlen);
    mmp_safetensors st;
    if (mmp_st_open(&st, path, err, errlen)) return -1;
    const char *meta_arch = mmp_meta_get(&st.meta, "architecture");
    int is_resnet = mmp_st_get(&st, "conv1.weight") && mmp_st_get(&st, "layer1.0.conv1.weight");
    int is_mnv2 = mmp_st_get(&st, "features.0.0.weight") != NULL;
    if (!is_resnet && !is_mnv2 && mmp_nn_tx_wants(path, &st)) {
        mmp_st_close(&st);
        return load_tx(out, path, arch, err, errlen);
    }
    mmp_nn_model *m = mmp_xcalloc(1, sizeof *m);
    loader L = {&st, path, err, errlen};
    int rc;
    if (is_resnet) {
        rc = load_resnet(m, &L, arch);
    } else if (is_mnv2) {
        rc = load_mnv2(m, &L, arch);
    } else {
        rc = mmp_errf(err, errlen, "%s: not a torchvision ResNet or MobileNetV2 state_dict "
                  "(no conv1.weight/layer1.0.conv1.weight or features.0.0.weight) nor a ViT/CLIP checkpoint", path);
    }
    if (!rc && meta_arch && !arch && strcmp(meta_arch, m->arch) &&
        !(strcmp(meta_arch, "resnet") == 0 && strncmp(m->arch, "resnet", 6) == 0))
        rc = mmp_errf(err, errlen, "%s: __metadata__ architecture is %s but the tensors are %s", path,
                  meta_arch, m->arch);
    /* preprocessing */
    mmp_nn_preproc p = {224, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
    const char *v;
    if (!rc && (v = mmp_meta_get(&st.meta, "input_size"))) {
        char *end;
        long n = strtol(v, &end, 10);
        if (*end || n < 1 || n > 16384) rc = mmp_errf(err, errlen, "%s: bad __metadata__ input_size \"%s\"", path, v);
        p.size = (int)n;
    }
    if (!rc && (v = mmp_meta_get(&st.meta, "input_mean")) && mmp_nn_parse3(v, p.mean))
        rc = mmp_errf(err, errlen, "%s: bad __metadata__ input_mean \"%s\" (want a,b,c)", path, v);
    if (!rc && (v = mmp_meta_get(&st.meta, "input_std")) && mmp_nn_parse3(v, p.std))
        rc = mmp_errf(err, errlen, "%s: bad __metadata__ input_std \"%s\" (want a,b,c)", path, v);
    for (int i = 0; !rc && i < 3; i++)
        if (!(p.std[i] > 0)) rc = mmp_errf(err, errlen, "%s: input_std must be positive", path);
    m->pre = p;
    mmp_st_close(&st);
    if (!rc) prepare_winograd(m);
    if (!rc) prepare_gemm(m);
    if (rc) {
        mmp_nn_model_free(m);
        return -1;
    }
    /* block names for messages */
    size_t len = 1;
    for (int i = 0; i < m->nblocks; i++) len += strlen(m->blocks[i].name) + strlen(m->blocks[i].alias) + 4;
    m->block_names = mmp_xcalloc(1, len);
    for (int i = 0; i < m->nblocks; i++) {
        if (i) strcat(m->block_names, ", ");
        strcat(m->block_names, m->blocks[i].name);
        if (m->blocks[i].alias[0]) {
            strcat(m->block_names, ", ");
            strcat(m->block_names, m->blocks[i].alias);
        }
    }
    m->weights = mmp_xstrdup(path);
    *out = m;
    return 0;
}

void mmp_nn_model_free(mmp_nn_model *m) {
    if (!m) return;
    mmp_tx_model_free(m->tx);
    free(m->weights);
    for (int i = 0; i < m->nblocks; i++)
        for (int j = 0; j < 4; j++) {
            free(m->blocks[i].conv[j].w);
            free(m->blocks[i].conv[j].b);
            free(m->blocks[i].conv[j].wino);
            mmp_sgemm_pack_free(m->blocks[i].conv[j].gemm);
        }
    for (int i = 0; i < m->nblocks; i++)
        for (int j = 0; j < 3; j++) free(m->blocks[i].wt[j]);
    free(m->blocks);
    free(m->fc_w);
    free(m->fc_b);
    free(m->block_names);
    free(m);
}

const char *mmp_nn_model_arch(const mmp_nn_model *m) { return m->arch; }
mmp_nn_preproc mmp_nn_model_preproc(const mmp_nn_model *m) { return m->pre; }
int mmp_nn_model_classes(const mmp_nn_model *m) { return m->classes; }
int mmp_nn_model_pool_dim(const mmp_nn_model *m) { return m->pool_dim; }
const char *mmp_nn_model_block_names(const mmp_nn_model *m) { return m->block_names; }
const char *mmp_nn_model_weights(const mmp_nn_model *m) { return m->weights; }
const char *mmp_nn_model_default_layer(const mmp_nn_model *m) {
    return m->tx ? mmp_nn_tx_default_layer(m->tx) : "pool";
}
const mmp_tx_model *mmp_nn_model_tx(const mmp_nn_model *m) { return m->tx; }

void mmp_nn_size_refusal(const mmp_nn_model *m, const mmp_nn_layer *l, int H, int W, char *buf, size_t n) {
    if (m->tx && m->tx->vision)
        snprintf(buf, n, "is not a multiple of %s's patch size %d", m->arch, m->tx->vision->P);
    else
        snprintf(buf, n, "is too small for %s --layer %s", m->arch, l->name);
}

int64_t mmp_nn_layer_dim_any(const mmp_nn_model *m, const mmp_nn_layer *l) {
    if (l->tokens) return -1;
    if (m->tx) {
        int d = mmp_tx_image_dim(m->tx, mmp_nn_tx_out(l));
        return d > 0 ? d : -1;
    }
    if (l->kind == MMP_NN_OUT_BLOCK && (l->flat || l->tokens)) return -1;
    return mmp_nn_output_dim(m, l, 1024, 1024);
}

int mmp_nn_layer_parse(const mmp_nn_model *m, const char *spec, mmp_nn_layer *l, char *err, size_t errlen) {
    memset(l, 0, sizeof *l);
    if (m->tx) return mmp_nn_tx_layer_parse(m->tx, m->arch, spec, l, err, errlen);
    if (!strcmp(spec, "pool")) {
        l->kind = MMP_NN_OUT_POOL;
        snprintf(l->name, sizeof l->name, "pool");
        return 0;
    }
    if (!strcmp(spec, "logits")) {
        if (!m->classes) return mmp_errf(err, errlen, "--layer logits: the weights have no classifier");
        l->kind = MMP_NN_OUT_LOGITS;
        snprintf(l->name, sizeof l->name, "logits");
        return 0;
    }
    char nm[64];
    size_t n = strcspn(spec, ":");
    if (n >= sizeof nm) return mmp_errf(err, errlen, "unknown --layer %s", spec);
    memcpy(nm, spec, n);
    nm[n] = 0;
    if (spec[n] && strcmp(spec + n, ":flat") && strcmp(spec + n, ":tokens"))
        return mmp_errf(err, errlen, "bad --layer %s (NAME, NAME:flat or NAME:tokens)", spec);
    for (int i = 0; i < m->nblocks; i++)
        if (!strcmp(m->blocks[i].name, nm) || (m->blocks[i].alias[0] && !strcmp(m->blocks[i].alias, nm))) {
            l->kind = MMP_NN_OUT_BLOCK;
            l->block = i;
            l->flat = spec[n] && !strcmp(spec + n, ":flat");
            l->tokens = spec[n] && !strcmp(spec + n, ":tokens");
            snprintf(l->name, sizeof l->name, "%s", spec);
            return 0;
        }
    return mmp_errf(err, errlen, "unknown --layer %s (pool, logits, or a block: %s; NAME:flat to flatten, NAME:tokens for [h*w, C])", spec,
                m->block_names);
}

/* Output spatial size of block i for an h x w input to it. */
static void block_hw(const mmp_nn_block *b, int *h, int *w) {
    if (b->kind == BLK_STEM) {
        *h = mmp_nn_conv_out(mmp_nn_conv_out(*h, 7, 2, 3), 3, 2, 1);
        *w = mmp_nn_conv_out(mmp_nn_conv_out(*w, 7, 2, 3), 3, 2, 1);
        return;
    }
    int s = b->kind == BLK_INVERTED_RESIDUAL ? b->conv[1].stride : b->kind == BLK_BOTTLENECK ? b->conv[1].stride : b->conv[0].stride;
    int k = 3;
    *h = mmp_nn_conv_out(*h, k, s, 1);
    *w = mmp_nn_conv_out(*w, k, s, 1);
}

/* Winograd weights (nn/winograd.h) for the dense 3x3 stride-1 convolutions,
 * whose map is the block's output map: tile size for its size at the
 * model's input size (other input sizes fall back to im2col per layer
 * when the map gets too small for that tile size). */
static void prepare_winograd(mmp_nn_model *m) {
    int h = m->pre.size, w = m->pre.size;
    for (int i = 0; i < m->nblocks && h > 0 && w > 0; i++) {
        block_hw(&m->blocks[i], &h, &w);
        for (int j = 0; j < 4; j++) {
            mmp_nn_conv *c = &m->blocks[i].conv[j];
            int wm = mmp_nn_wino_eligible(c) ? mmp_nn_wino_pick_m(h, w) : 0;
            if (wm) mmp_nn_wino_prepare(c, wm);
        }
    }
}

/* The other dense convolutions' weights packed once for the CPU GEMM
 * (im2col and 1x1 paths of conv2d: no repacking at every call). */
static void prepare_gemm(mmp_nn_model *m) {
    for (int i = 0; i < m->nblocks; i++)
        for (int j = 0; j < 4; j++) {
            mmp_nn_conv *c = &m->blocks[i].conv[j];
            if (!c->w || c->depthwise || c->wino || c->cout < 1) continue;
            if (j < 3 && m->blocks[i].wt[j]) continue; /* MobileNetV2: packed for its own kernels */
            int kd = c->k * c->k * c->cin;
            c->gemm = mmp_sgemm_pack_b(MMP_GEMM_T, c->cout, kd, c->w, kd);
            if (!c->gemm) mmp_die("out of memory packing weights");
        }
}

int64_t mmp_nn_output_dim(const mmp_nn_model *m, const mmp_nn_layer *l, int H, int W) {
    if (m->tx) return mmp_nn_tx_output_dim(m->tx, l, H, W);
    int h = H, w = W;
    int last = l->kind == MMP_NN_OUT_BLOCK ? l->block : m->nblocks - 1;
    for (int i = 0; i <= last; i++) {
        if (h < 1 || w < 1) return 0;
        block_hw(&m->blocks[i], &h, &w);
    }
    if (h < 1 || w < 1) return 0;
    if (l->kind == MMP_NN_OUT_LOGITS) return m->classes;
    if (l->kind == MMP_NN_OUT_POOL) return m->pool_dim;
    int c = m->blocks[l->block].cout;
    return l->flat || l->tokens ? (int64_t)c * h * w : c;
}

int64_t mmp_nn_token_width(const mmp_nn_model *m, const mmp_nn_layer *l) {
    if (!l->tokens) return 0;
    if (m->tx) return m->tx->vision ? m->tx->vision->C : 0;
    return l->kind == MMP_NN_OUT_BLOCK ? m->blocks[l->block].cout : 0;
}

static double conv_macs(const mmp_nn_conv *c, int *h, int *w) {
    *h = mmp_nn_conv_out(*h, c->k, c->stride, c->pad);
    *w = mmp_nn_conv_out(*w, c->k, c->stride, c->pad);
    return (double)*h * *w * c->cout * c->k * c->k * (c->depthwise ? 1 : c->cin);
}

double mmp_nn_model_macs(const mmp_nn_model *m, const mmp_nn_layer *l, int H, int W) {
    if (m->tx) return mmp_nn_tx_macs(m->tx, l, H, W);
    double macs = 0;
    int h = H, w = W, last = l->kind == MMP_NN_OUT_BLOCK ? l->block : m->nblocks - 1;
    for (int i = 0; i <= last; i++) {
        const mmp_nn_block *b = &m->blocks[i];
        int h1 = h, w1 = w;
        switch (b->kind) {
        case BLK_STEM:
            macs += conv_macs(&b->conv[0], &h1, &w1);
            break;
        case BLK_CONV:
            macs += conv_macs(&b->conv[0], &h1, &w1);
            break;
        case BLK_BASIC:
        case BLK_BOTTLENECK:
        case BLK_INVERTED_RESIDUAL:
            for (int j = 0; j < 3; j++)
                if (b->conv[j].w && !(b->kind == BLK_INVERTED_RESIDUAL && j == 0 && !b->has_expand)) macs += conv_macs(&b->conv[j], &h1, &w1);
            if (b->has_ds) {
                int h3 = h, w3 = w;
                macs += conv_macs(&b->conv[3], &h3, &w3);
            }
            break;
        }
        block_hw(b, &h, &w);
    }
    if (l->kind == MMP_NN_OUT_LOGITS) macs += (double)m->classes * m->pool_dim;
    return macs;
}

/* The largest power of two (1..16) with g*H*W <= 131072 pixels: later layers
 * get enough GEMM rows, early activations stay cache-friendly, and a batch
 * of 64 splits evenly over 1, 2, 4 or 8 threads. */
int mmp_nn_micro_batch(int H, int W) {
    long hw = (long)H * W, g = 1;
    while (g < 16 && 2 * g * hw <= 131072) g *= 2;
    return (int)g;
}

/* ---- forward ---- */

#define NSLOT 5 /* 4 activation buffers + conv scratch */
typedef struct {
    float *buf[NSLOT];
    size_t cap[NSLOT];
} workspace;

static float *ws_get(workspace *ws, int slot, size_t n) {
    if (n == 0) n = 1;
    if (ws->cap[slot] < n) {
        free(ws->buf[slot]);
        size_t bytes = (sizeof(float) * n + 63) & ~(size_t)63;
        ws->buf[slot] = aligned_alloc(64, bytes);
        if (!ws->buf[slot]) mmp_die("out of memory (%zu bytes of workspace)", bytes);
        ws->cap[slot] = n;
    }
    return ws->buf[slot];
}

/* A free activation slot (0..3) not in the mask. */
static int pick(unsigned used) {
    for (int i = 0; i < 4; i++)
        if (!(used & (1u << i))) return i;
    return -1;
}

/* out = conv(in) (+res); in [G,H,W,cin] -> slot `dst`; returns the buffer, sets *Ho,*Wo. */
static float *run_conv(const mmp_nn_ops *ops, workspace *ws, const mmp_nn_conv *c, const float *in, int G,
                       int H, int W, const float *res, int dst, int *Ho, int *Wo) {
    *Ho = mmp_nn_conv_out(H, c->k, c->stride, c->pad);
    *Wo = mmp_nn_conv_out(W, c->k, c->stride, c->pad);
    float *out = ws_get(ws, dst, (size_t)G * *Ho * *Wo * c->cout);
    size_t sn = ops->conv2d_scratch(c, G, H, W);
    float *scratch = sn ? ws_get(ws, 4, sn) : NULL;
    ops->conv2d(c, in, G, H, W, res, out, scratch);
    return out;
}

/* Runs block b on cur (slot cs, -1 = caller's input). Returns the output slot. */
static int run_block(const mmp_nn_ops *ops, workspace *ws, const mmp_nn_block *b, const float *cur, int cs,
                     int G, int *H, int *W) {
    unsigned used = cs >= 0 ? 1u << cs : 0;
    int h = *H, w = *W, h1, w1, h2, w2, h3, w3;
    int s1 = pick(used), s2, s3, s4;
    float *t1, *t2, *ds;
    switch (b->kind) {
    case BLK_STEM:
        t1 = run_conv(ops, ws, &b->conv[0], cur, G, h, w, NULL, s1, &h1, &w1);
        s2 = pick(used | 1u << s1);
        *H = mmp_nn_conv_out(h1, 3, 2, 1);
        *W = mmp_nn_conv_out(w1, 3, 2, 1);
        t2 = ws_get(ws, s2, (size_t)G * *H * *W * b->cout);
        ops->maxpool3x3s2(t1, G, h1, w1, b->cout, t2);
        return s2;
    case BLK_CONV:
        if (ops->conv2d_packed && b->wt[0]) {
            const mmp_nn_conv *c = &b->conv[0];
            *H = mmp_nn_conv_out(h, c->k, c->stride, c->pad);
            *W = mmp_nn_conv_out(w, c->k, c->stride, c->pad);
            float *out = ws_get(ws, s1, (size_t)G * *H * *W * c->cout);
            size_t sn = ops->conv2d_packed_scratch(c, G, h, w);
            ops->conv2d_packed(c, b->wt[0], cur, G, h, w, NULL, out, sn ? ws_get(ws, 4, sn) : NULL);
            return s1;
        }
        run_conv(ops, ws, &b->conv[0], cur, G, h, w, NULL, s1, H, W);
        return s1;
    case BLK_BASIC:
    case BLK_BOTTLENECK: {
        const float *res = cur;
        used |= 1u << s1;
        t1 = run_conv(ops, ws, &b->conv[0], cur, G, h, w, NULL, s1, &h1, &w1);
        if (b->kind == BLK_BOTTLENECK) {
            s2 = pick(used);
            used |= 1u << s2;
            t1 = run_conv(ops, ws, &b->conv[1], t1, G, h1, w1, NULL, s2, &h1, &w1);
        }
        if (b->has_ds) {
            s3 = pick(used);
            used |= 1u << s3;
            ds = run_conv(ops, ws, &b->conv[3], cur, G, h, w, NULL, s3, &h3, &w3);
            res = ds;
        }
        s4 = pick(used & ~(b->kind == BLK_BOTTLENECK ? 1u << s1 : 0)); /* s1 is dead in a bottleneck */
        const mmp_nn_conv *lc = &b->conv[b->kind == BLK_BOTTLENECK ? 2 : 1];
        run_conv(ops, ws, lc, t1, G, h1, w1, res, s4, H, W);
        return s4;
    }
    case BLK_INVERTED_RESIDUAL: {
        if (ops->inverted_residual) {
            mmp_nn_inverted_residual blk = {b->has_expand ? &b->conv[0] : NULL, &b->conv[1], &b->conv[2], b->wt[0], b->wt[2], b->residual};
            *H = mmp_nn_conv_out(h, 3, b->conv[1].stride, 1);
            *W = mmp_nn_conv_out(w, 3, b->conv[1].stride, 1);
            float *out = ws_get(ws, s1, (size_t)G * *H * *W * b->cout);
            size_t sn = ops->inverted_residual_scratch(&blk, G, h, w);
            ops->inverted_residual(&blk, cur, G, h, w, out, sn ? ws_get(ws, 4, sn) : NULL);
            return s1;
        }
        const float *x = cur;
        int hh = h, ww = w;
        if (b->has_expand) {
            x = run_conv(ops, ws, &b->conv[0], cur, G, h, w, NULL, s1, &hh, &ww);
            used |= 1u << s1;
        }
        s2 = pick(used);
        t2 = run_conv(ops, ws, &b->conv[1], x, G, hh, ww, NULL, s2, &h2, &w2);
        used |= 1u << s2;
        if (b->has_expand) used &= ~(1u << s1);
        s3 = pick(used);
        run_conv(ops, ws, &b->conv[2], t2, G, h2, w2, b->residual ? cur : NULL, s3, H, W);
        return s3;
    }
    }
    return -1;
}

/* One micro-batch: x [G,H,W,3] -> out [G,dim]. */
static void forward(const mmp_nn_model *m, const mmp_nn_ops *ops, workspace *ws, const mmp_nn_layer *l,
                    const float *x, int G, int H, int W, float *out) {
    const float *cur = x;
    int cs = -1, h = H, w = W;
    int last = l->kind == MMP_NN_OUT_BLOCK ? l->block : m->nblocks - 1;
    for (int i = 0; i <= last; i++) {
        cs = run_block(ops, ws, &m->blocks[i], cur, cs, G, &h, &w);
        cur = ws->buf[cs];
    }
    int C = m->blocks[last].cout;
    if (l->kind == MMP_NN_OUT_BLOCK && l->tokens) {
        memcpy(out, cur, sizeof(float) * (size_t)G * h * w * C); /* NHWC: [G][h*w][C] already */
    } else if (l->kind == MMP_NN_OUT_BLOCK && l->flat) {
        ops->to_chw(cur, G, h * w, C, out);
    } else if (l->kind != MMP_NN_OUT_LOGITS) {
        ops->avgpool(cur, G, h * w, C, out);
    } else {
        int s = pick(1u << cs);
        float *pooled = ws_get(ws, s, (size_t)G * C);
        ops->avgpool(cur, G, h * w, C, pooled);
        ops->linear(pooled, G, C, m->fc_w, m->fc_b, m->classes, out);
    }
}

struct mmp_nn_runner {
    const mmp_nn_model *m;
    const mmp_nn_ops *ops;
    int threads;
    workspace *ws; /* one per thread */
};

mmp_nn_runner *mmp_nn_runner_new(const mmp_nn_model *m, const mmp_nn_ops *ops, int threads) {
    mmp_nn_cpu_init();
    mmp_nn_runner *r = mmp_xcalloc(1, sizeof *r);
    r->m = m;
    r->ops = ops;
    r->threads = threads < 1 ? 1 : threads;
    r->ws = mmp_xcalloc(r->threads, sizeof(workspace));
    return r;
}

void mmp_nn_runner_free(mmp_nn_runner *r) {
    if (!r) return;
    for (int t = 0; t < r->threads; t++)
        for (int i = 0; i < NSLOT; i++) free(r->ws[t].buf[i]);
    free(r->ws);
    free(r);
}

size_t mmp_nn_runner_workspace_bytes(const mmp_nn_runner *r) {
    size_t n = 0;
    for (int t = 0; t < r->threads; t++)
        for (int i = 0; i < NSLOT; i++) n += r->ws[t].cap[i] * sizeof(float);
    return n;
}

typedef struct {
    mmp_nn_runner *r;
    const mmp_nn_layer *l;
    const float *x;
    float *out;
    int N, H, W, G;
    int64_t dim;
    int next; /* next micro-batch (atomic) */
    int tid;
} job;

static void *worker(void *arg) {
    job *j = arg;
    job *shared = j - j->tid; /* jobs[0] holds the shared counter */
    int nmb = (j->N + j->G - 1) / j->G;
    for (;;) {
        int k = __atomic_fetch_add(&shared->next, 1, __ATOMIC_RELAXED);
        if (k >= nmb) break;
        int i0 = k * j->G, g = j->N - i0 < j->G ? j->N - i0 : j->G;
        forward(j->r->m, j->r->ops, &j->r->ws[j->tid], j->l, j->x + (size_t)i0 * j->H * j->W * 3, g, j->H,
                j->W, j->out + (size_t)i0 * j->dim);
    }
    return NULL;
}

void mmp_nn_run(mmp_nn_runner *r, const mmp_nn_layer *l, const float *x, int N, int H, int W, float *out) {
    if (N <= 0) return;
    if (r->m->tx) {
        mmp_nn_tx_run(r->m->tx, r->threads, l, x, N, H, W, out);
        return;
    }
    int64_t dim = mmp_nn_output_dim(r->m, l, H, W);
    if (dim <= 0) mmp_die("image %dx%d is too small for %s --layer %s", H, W, r->m->arch, l->name);
    int G = mmp_nn_micro_batch(H, W);
    int nmb = (N + G - 1) / G;
    int T = r->threads < nmb ? r->threads : nmb;
    job jobs[T];
    pthread_t tids[T];
    for (int t = 0; t < T; t++)
        jobs[t] = (job){r, l, x, out, N, H, W, G, dim, 0, t};
    for (int t = 1; t < T; t++)
        if (pthread_create(&tids[t], NULL, worker, &jobs[t])) mmp_die("cannot create a thread");
    worker(&jobs[0]);
    for (int t = 1; t < T; t++) pthread_join(tids[t], NULL);
}

void mmp_nn_normalize_u8(const uint8_t *in, int H, int W, const float mean[3], const float std[3], float *out) {
    size_t n = (size_t)H * W;
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) out[i * 3 + c] = ((float)in[i * 3 + c] / 255.0f - mean[c]) / std[c];
}

void mmp_nn_chw_to_hwc(const float *in, int C, int H, int W, float *out) {
    size_t hw = (size_t)H * W;
    for (int c = 0; c < C; c++)
        for (size_t i = 0; i < hw; i++) out[i * C + c] = in[c * hw + i];
}
