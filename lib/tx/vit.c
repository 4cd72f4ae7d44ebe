/* tx/vit.c: ViT image towers: the Hugging Face ViTModel and timm vit_*
 * loaders, and the image forward shared with CLIP's image tower. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tx/loader.h"

static int isqrt_exact(int64_t n) {
    if (n <= 0) return -1;
    int64_t r = (int64_t)llround(sqrt((double)n));
    return r * r == n ? (int)r : -1;
}

/* ------------------------------------------------------------ Hugging Face ViT */

int mmp_tx_load_vit_hf(mmp_tx_loader *l) {
    mmp_tx_model *m = l->m;
    const char *p = txl_has(l, "vit.embeddings.patch_embeddings.projection.weight") ? "vit." : "";
    const char *cf = l->cfg_path;
    const json_t *cfg = l->cfg;
    mmp_tx_vision *v = m->vision = mmp_xcalloc(1, sizeof *v);
    const char *pw = txl_name(l, "%sembeddings.patch_embeddings.projection.weight", p);
    const mmp_tensor *t = txl_tensor(l, pw);
    if (t->ndim != 4 || t->shape[1] != 3 || t->shape[2] != t->shape[3] || t->shape[2] < 1)
        return txl_fail(l, "%s: tensor '%s' should be [hidden, 3, patch, patch]", l->path, pw);
    int C = v->C = (int)t->shape[0], P = v->P = (int)t->shape[2];
    v->patch_w = txl_get(l, pw, 4, (int64_t)C, (int64_t)3, (int64_t)P, (int64_t)P);
    v->patch_b = txl_opt(l, txl_name(l, "%sembeddings.patch_embeddings.projection.bias", p), 1, (int64_t)C);
    const char *pn = txl_name(l, "%sembeddings.position_embeddings", p);
    int64_t npos = txl_dim(l, pn, 1);
    if (l->failed) return -1;
    int g = isqrt_exact(npos - 1);
    if (g < 0) return txl_fail(l, "%s: '%s' has %lld positions: not 1 + a square grid", l->path, pn, (long long)npos);
    v->gh = v->gw = g;
    v->cls = v->pos_cls = 1;
    v->pos = txl_get(l, pn, 3, (int64_t)1, npos, (int64_t)C);
    v->cls_tok = txl_get(l, txl_name(l, "%sembeddings.cls_token", p), 3, (int64_t)1, (int64_t)1, (int64_t)C);
    v->resize = 0;
    char fmt[256];
    snprintf(fmt, sizeof fmt, "%sencoder.layer.%%d.attention.attention.query.weight", p);
    int layers = txl_count(l, fmt);
    if (layers == 0) return txl_fail(l, "%s: tensor '%sencoder.layer.0.attention.attention.query.weight' is missing", l->path, p);
    int I = (int)txl_dim(l, txl_name(l, "%sencoder.layer.0.intermediate.dense.weight", p), 0);
    if (l->failed) return -1;

    int NH = txl_default_heads(C), qkv_bias = 1;
    double eps = 1e-12;
    mmp_tx_act act = MMP_TX_GELU_ERF;
    if (cfg) {
        txl_cfg_int(l, cf, cfg, "hidden_size", C, NULL);
        txl_cfg_int(l, cf, cfg, "num_hidden_layers", layers, NULL);
        txl_cfg_int(l, cf, cfg, "intermediate_size", I, NULL);
        txl_cfg_int(l, cf, cfg, "patch_size", P, NULL);
        txl_cfg_int(l, cf, cfg, "image_size", g * P, NULL);
        txl_cfg_int(l, cf, cfg, "num_channels", 3, NULL);
        txl_cfg_int(l, cf, cfg, "num_attention_heads", -1, &NH);
        txl_cfg_num(l, cf, cfg, "layer_norm_eps", &eps);
        txl_cfg_bool(l, cf, cfg, "qkv_bias", &qkv_bias);
        const char *a = txl_cfg_str(l, cf, cfg, "hidden_act");
        if (a) txl_act(l, cf, a, &act);
        if (l->failed) return -1;
    }
    if (NH < 1 || C % NH) return txl_fail(l, "%s: %d attention heads do not divide the width %d", cf ? cf : l->path, NH, C);
    mmp_tx_encoder *e = &v->enc;
    *e = (mmp_tx_encoder){.layers = layers, .C = C, .NH = NH, .inter = I, .act = act, .eps = (float)eps};
    e->block = mmp_xcalloc((size_t)layers, sizeof *e->block);
    const int64_t c = C, i = I;
    for (int k = 0; k < layers; k++) {
        mmp_tx_block *b = &e->block[k];
#define N(s) txl_name(l, "%sencoder.layer.%d." s, p, k)
        b->ln1_w = txl_get(l, N("layernorm_before.weight"), 1, c);
        b->ln1_b = txl_get(l, N("layernorm_before.bias"), 1, c);
        b->q_w = txl_get(l, N("attention.attention.query.weight"), 2, c, c);
        b->k_w = txl_get(l, N("attention.attention.key.weight"), 2, c, c);
        b->v_w = txl_get(l, N("attention.attention.value.weight"), 2, c, c);
        if (qkv_bias) {
            b->q_b = txl_get(l, N("attention.attention.query.bias"), 1, c);
            b->k_b = txl_get(l, N("attention.attention.key.bias"), 1, c);
            b->v_b = txl_get(l, N("attention.attention.value.bias"), 1, c);
        }
        b->o_w = txl_get(l, N("attention.output.dense.weight"), 2, c, c);
        b->o_b = txl_get(l, N("attention.output.dense.bias"), 1, c);
        b->ln2_w = txl_get(l, N("layernorm_after.weight"), 1, c);
        b->ln2_b = txl_get(l, N("layernorm_after.bias"), 1, c);
        b->fc1_w = txl_get(l, N("intermediate.dense.weight"), 2, i, c);
        b->fc1_b = txl_get(l, N("intermediate.dense.bias"), 1, i);
        b->fc2_w = txl_get(l, N("output.dense.weight"), 2, c, i);
        b->fc2_b = txl_get(l, N("output.dense.bias"), 1, c);
#undef N
    }
    v->norm_w = txl_get(l, txl_name(l, "%slayernorm.weight", p), 1, c);
    v->norm_b = txl_get(l, txl_name(l, "%slayernorm.bias", p), 1, c);
    v->eps_final = (float)eps;
    v->pooler_w = txl_opt(l, txl_name(l, "%spooler.dense.weight", p), 2, c, c);
    if (v->pooler_w) v->pooler_b = txl_get(l, txl_name(l, "%spooler.dense.bias", p), 1, c);
    if (txl_has(l, "classifier.weight")) {
        v->nclass = (int)txl_dim(l, "classifier.weight", 0);
        v->head_w = txl_get(l, "classifier.weight", 2, (int64_t)v->nclass, c);
        v->head_b = txl_get(l, "classifier.bias", 1, (int64_t)v->nclass);
    }
    return l->failed ? -1 : 0;
}

/* ------------------------------------------------------------ timm */

int mmp_tx_load_vit_timm(mmp_tx_loader *l) {
    mmp_tx_model *m = l->m;
    const char *cf = l->cfg_path;
    const json_t *cfg = l->cfg, *ma = cfg ? json_object_get(cfg, "model_args") : NULL;
    mmp_tx_vision *v = m->vision = mmp_xcalloc(1, sizeof *v);
    const char *pw = "patch_embed.proj.weight";
    const mmp_tensor *t = txl_tensor(l, pw);
    if (t->ndim != 4 || t->shape[1] != 3 || t->shape[2] != t->shape[3] || t->shape[2] < 1)
        return txl_fail(l, "%s: tensor '%s' should be [embed_dim, 3, patch, patch]", l->path, pw);
    int C = v->C = (int)t->shape[0], P = v->P = (int)t->shape[2];
    const int64_t c = C;
    v->patch_w = txl_get(l, pw, 4, c, (int64_t)3, (int64_t)P, (int64_t)P);
    v->patch_b = txl_opt(l, "patch_embed.proj.bias", 1, c);
    if (txl_has(l, "dist_token"))
        return txl_fail(l, "%s: distillation tokens (DeiT dist_token) are not supported", l->path);
    if (txl_has(l, "reg_token"))
        return txl_fail(l, "%s: register tokens (reg_token) are not supported", l->path);
    if (txl_has(l, "blocks.0.attn.q_norm.weight"))
        return txl_fail(l, "%s: q/k norms (blocks.N.attn.q_norm) are not supported", l->path);
    if (txl_has(l, "attn_pool.latent") || txl_has(l, "attn_pool.q.weight"))
        return txl_fail(l, "%s: attention pooling (global_pool \"map\") is not supported", l->path);
    v->cls = txl_has(l, "cls_token");
    int64_t L = txl_dim(l, "pos_embed", 1);
    if (l->failed) return -1;
    int g;
    if (v->cls && isqrt_exact(L - 1) > 0) g = isqrt_exact(L - 1), v->pos_cls = 1;
    else if (isqrt_exact(L) > 0) g = isqrt_exact(L), v->pos_cls = 0; /* no_embed_class or no class token */
    else return txl_fail(l, "%s: 'pos_embed' has %lld positions: not a square grid (+ 1)", l->path, (long long)L);
    v->gh = v->gw = g;
    v->pos = txl_get(l, "pos_embed", 3, (int64_t)1, L, c);
    if (v->cls) v->cls_tok = txl_get(l, "cls_token", 3, (int64_t)1, (int64_t)1, c);
    v->resize = 1;
    int layers = txl_count(l, "blocks.%d.norm1.weight");
    if (layers == 0) return txl_fail(l, "%s: tensor 'blocks.0.norm1.weight' is missing", l->path);
    int I = (int)txl_dim(l, "blocks.0.mlp.fc1.weight", 0);
    if (l->failed) return -1;
    int has_fc_norm = txl_has(l, "fc_norm.weight");
    const char *pool = has_fc_norm || !v->cls ? "avg" : "token";
    int NH = txl_default_heads(C);
    mmp_tx_act act = MMP_TX_GELU_ERF;
    if (cfg) {
        const char *arch = txl_cfg_str(l, cf, cfg, "architecture");
        if (arch && strstr(arch, "quickgelu")) act = MMP_TX_QUICK_GELU;
        txl_cfg_int(l, cf, cfg, "num_features", C, NULL);
        int nc = -1;
        txl_cfg_int(l, cf, cfg, "num_classes", -1, &nc);
        int have = txl_has(l, "head.weight") ? (int)txl_dim(l, "head.weight", 0) : 0;
        if (nc >= 0 && nc != have && !l->finetuned) /* a fine-tuned checkpoint has its own classes */
            return txl_fail(l, "%s: \"num_classes\" is %d but the weights (%s) have %d", cf, nc, l->path, have);
        const char *gp = txl_cfg_str(l, cf, cfg, "global_pool");
        const char *gp2 = txl_cfg_str(l, cf, ma, "global_pool");
        if (gp2) gp = gp2;
        if (gp) pool = gp;
        txl_cfg_int(l, cf, ma, "embed_dim", C, NULL);
        txl_cfg_int(l, cf, ma, "depth", layers, NULL);
        txl_cfg_int(l, cf, ma, "patch_size", P, NULL);
        txl_cfg_int(l, cf, ma, "num_heads", -1, &NH);
        int b;
        if (txl_cfg_bool(l, cf, ma, "class_token", &b) > 0 && b != v->cls)
            return txl_fail(l, "%s: \"class_token\" is %s but the weights (%s) %s cls_token", cf, b ? "true" : "false",
                            l->path, v->cls ? "have" : "have no");
        if (v->cls && txl_cfg_bool(l, cf, ma, "no_embed_class", &b) > 0 && b == v->pos_cls)
            return txl_fail(l, "%s: \"no_embed_class\" is %s but 'pos_embed' of %s has %lld positions", cf,
                            b ? "true" : "false", l->path, (long long)L);
        if (txl_cfg_bool(l, cf, ma, "fc_norm", &b) > 0 && b != has_fc_norm)
            return txl_fail(l, "%s: \"fc_norm\" is %s but the weights (%s) %s fc_norm", cf, b ? "true" : "false",
                            l->path, has_fc_norm ? "have" : "have no");
        const json_t *is = json_is_object(ma) ? json_object_get(ma, "img_size") : NULL;
        if (is && json_is_integer(is) && json_integer_value(is) != (json_int_t)g * P)
            return txl_fail(l, "%s: \"img_size\" is %lld but 'pos_embed' of %s covers %d", cf,
                            (long long)json_integer_value(is), l->path, g * P);
        if (l->failed) return -1;
    }
    if (!strcmp(pool, "avg")) v->pool_avg = 1;
    else if (!strcmp(pool, "token")) {
        if (!v->cls) return txl_fail(l, "%s: global_pool \"token\" needs a class token, %s has none", cf ? cf : l->path, l->path);
        v->pool_avg = 0;
    } else
        return txl_fail(l, "%s: global_pool \"%s\" is not supported (token, avg)", cf ? cf : l->path, pool);
    if (NH < 1 || C % NH) return txl_fail(l, "%s: %d attention heads do not divide the width %d", cf ? cf : l->path, NH, C);
    mmp_tx_encoder *e = &v->enc;
    *e = (mmp_tx_encoder){.layers = layers, .C = C, .NH = NH, .inter = I, .act = act, .eps = 1e-6f};
    e->block = mmp_xcalloc((size_t)layers, sizeof *e->block);
    const int64_t i = I;
    for (int k = 0; k < layers; k++) {
        mmp_tx_block *b = &e->block[k];
#define N(s) txl_name(l, "blocks.%d." s, k)
        b->ln1_w = txl_get(l, N("norm1.weight"), 1, c);
        b->ln1_b = txl_get(l, N("norm1.bias"), 1, c);
        const float *qkv = txl_get(l, N("attn.qkv.weight"), 2, 3 * c, c);
        const float *qkvb = txl_opt(l, N("attn.qkv.bias"), 1, 3 * c);
        if (qkv) b->q_w = qkv, b->k_w = qkv + (size_t)C * C, b->v_w = qkv + (size_t)2 * C * C;
        if (qkvb) b->q_b = qkvb, b->k_b = qkvb + C, b->v_b = qkvb + 2 * C;
        b->o_w = txl_get(l, N("attn.proj.weight"), 2, c, c);
        b->o_b = txl_opt(l, N("attn.proj.bias"), 1, c);
        b->ls1 = txl_opt(l, N("ls1.gamma"), 1, c);
        b->ln2_w = txl_get(l, N("norm2.weight"), 1, c);
        b->ln2_b = txl_get(l, N("norm2.bias"), 1, c);
        b->fc1_w = txl_get(l, N("mlp.fc1.weight"), 2, i, c);
        b->fc1_b = txl_opt(l, N("mlp.fc1.bias"), 1, i);
        b->fc2_w = txl_get(l, N("mlp.fc2.weight"), 2, c, i);
        b->fc2_b = txl_opt(l, N("mlp.fc2.bias"), 1, c);
        b->ls2 = txl_opt(l, N("ls2.gamma"), 1, c);
        if (txl_has(l, N("mlp.norm.weight")))
            return txl_fail(l, "%s: a norm inside the MLP ('%s') is not supported", l->path, l->name);
#undef N
    }
    v->pre_w = txl_opt(l, "norm_pre.weight", 1, c);
    if (v->pre_w) v->pre_b = txl_get(l, "norm_pre.bias", 1, c);
    v->norm_w = txl_opt(l, "norm.weight", 1, c);
    if (v->norm_w) v->norm_b = txl_get(l, "norm.bias", 1, c);
    v->post_w = txl_opt(l, "fc_norm.weight", 1, c);
    if (v->post_w) v->post_b = txl_get(l, "fc_norm.bias", 1, c);
    v->eps_final = 1e-6f;
    if (txl_has(l, "head.weight")) {
        v->nclass = (int)txl_dim(l, "head.weight", 0);
        v->head_w = txl_get(l, "head.weight", 2, (int64_t)v->nclass, c);
        v->head_b = txl_opt(l, "head.bias", 1, (int64_t)v->nclass);
    }
    return l->failed ? -1 : 0;
}

/* ------------------------------------------------------------ image forward */

int mmp_tx_image_dim(const mmp_tx_model *m, mmp_tx_out which) {
    const mmp_tx_vision *v = m->vision;
    if (!v) return -1;
    switch (which) {
    case MMP_TX_OUT_EMBED: return v->proj ? v->proj_dim : v->C;
    case MMP_TX_OUT_POOLED: return v->C;
    case MMP_TX_OUT_POOLER: return v->pooler_w ? v->C : -1;
    case MMP_TX_OUT_LOGITS: return v->head_w ? v->nclass : -1;
    }
    return -1;
}

int mmp_tx_image_tokens(const mmp_tx_model *m, int H, int W) {
    const mmp_tx_vision *v = m->vision;
    if (!v || H < v->P || W < v->P || H % v->P || W % v->P) return 0;
    return v->cls + (H / v->P) * (W / v->P);
}

static const char *out_name(mmp_tx_out w) {
    switch (w) {
    case MMP_TX_OUT_EMBED: return "embedding";
    case MMP_TX_OUT_POOLED: return "pooled output";
    case MMP_TX_OUT_POOLER: return "pooler output (pooler.dense)";
    case MMP_TX_OUT_LOGITS: return "logits (a classifier head)";
    }
    return "?";
}

/* pe [oh*ow, C]: the patches' position embeddings at this grid */
static float *patch_pos(const mmp_tx_vision *v, int oh, int ow) {
    const int C = v->C;
    const float *pe = v->pos + (size_t)v->pos_cls * C;
    float *out = mmp_xmalloc(sizeof(float) * (size_t)oh * ow * C);
    if (oh == v->gh && ow == v->gw) {
        memcpy(out, pe, sizeof(float) * (size_t)oh * ow * C);
        return out;
    }
    switch (v->resize) {
    case 0: { /* HF ViT: F.interpolate(scale_factor=((h0 + 0.1) / sqrt(N), ...)) */
        double sq = sqrt((double)v->gh * v->gw);
        double fh = ((double)oh + 0.1) / sq, fw = ((double)ow + 0.1) / sq;
        mmp_tx_pos_resize_scaled(out, pe, v->gh, v->gw, oh, ow, C, 1.0 / fh, 1.0 / fw);
        break;
    }
    case 1: /* timm resample_abs_pos_embed: F.interpolate(size, bicubic, antialias=True) */
        mmp_tx_pos_resize(out, pe, v->gh, v->gw, oh, ow, C, 1);
        break;
    default: /* F.interpolate(size, bicubic, align_corners=False) */
        mmp_tx_pos_resize_scaled(out, pe, v->gh, v->gw, oh, ow, C, (double)v->gh / oh, (double)v->gw / ow);
        break;
    }
    return out;
}

void mmp_tx_vision_pool(const mmp_tx_vision *v, const float *x, int n, int T1, float *pooled) {
    const int C = v->C, np = T1 - v->cls;
    for (int s = 0; s < n; s++) {
        const float *xs = x + (size_t)s * T1 * C;
        float *ps = pooled + (size_t)s * C;
        if (v->pool_avg) {
            for (int c = 0; c < C; c++) {
                double a = 0;
                for (int k = v->cls; k < T1; k++) a += xs[(size_t)k * C + c];
                ps[c] = (float)(a / np);
            }
        } else
            memcpy(ps, xs, sizeof(float) * C);
    }
}

/* The tower's forward: x [n * T1, C] after the final norm (hidden as
 * mmp_tx_image_embed's). H, W checked by the caller. */
static float *vision_tokens(const mmp_tx_vision *v, const float *imgs, int n, int H, int W, float *hidden) {
    const int C = v->C, P = v->P;
    const int oh = H / P, ow = W / P, np = oh * ow, T1 = v->cls + np;
    const size_t T = (size_t)n * T1;
    float *pe = patch_pos(v, oh, ow);
    float *x = mmp_xmalloc(sizeof(float) * T * C);
    int *lens = mmp_xmalloc(sizeof(int) * (size_t)n);
    for (int s = 0; s < n; s++) {
        float *xs = x + (size_t)s * T1 * C, *xp = xs + (size_t)v->cls * C;
        mmp_tx_patch_fwd(xp, imgs + (size_t)s * 3 * H * W, H, W, v->patch_w, v->patch_b, C, P);
        for (size_t k = 0; k < (size_t)np * C; k++) xp[k] += pe[k];
        if (v->cls)
            for (int c = 0; c < C; c++) xs[c] = v->cls_tok[c] + (v->pos_cls ? v->pos[c] : 0.0f);
        lens[s] = T1;
    }
    free(pe);
    if (v->pre_w) mmp_tx_layernorm_fwd(x, NULL, NULL, x, v->pre_w, v->pre_b, (int)T, C, v->enc.eps);
    mmp_tx_encoder_fwd(&v->enc, x, lens, n, hidden);
    if (v->norm_w) mmp_tx_layernorm_fwd(x, NULL, NULL, x, v->norm_w, v->norm_b, (int)T, C, v->eps_final);
    free(lens);
    return x;
}

int mmp_tx_image_patch_tokens(const mmp_tx_model *m, const float *imgs, int n, int H, int W, float *out, char *err,
                              size_t errlen) {
    const mmp_tx_vision *v = m->vision;
    if (!v) return mmp_errf(err, errlen, "%s: the model has no image tower", m->path);
    const int C = v->C, P = v->P;
    if (H < P || W < P || H % P || W % P)
        return mmp_errf(err, errlen, "%s: image size %dx%d (HxW) is not a multiple of the patch size %d", m->path, H, W,
                        P);
    const int np = (H / P) * (W / P), T1 = v->cls + np;
    /* chunks of about 2048 tokens as mmp_tx_image_embed (the same bits in any batch) */
    const int chunk = T1 < 2048 ? 2048 / T1 : 1;
    for (int s = 0; s < n; s += chunk) {
        int k = n - s < chunk ? n - s : chunk;
        float *x = vision_tokens(v, imgs + (size_t)s * 3 * H * W, k, H, W, NULL);
        for (int i = 0; i < k; i++)
            memcpy(out + ((size_t)s + i) * np * C, x + ((size_t)i * T1 + v->cls) * C, sizeof(float) * (size_t)np * C);
        free(x);
    }
    return 0;
}

int mmp_tx_image_embed(const mmp_tx_model *m, const float *imgs, int n, int H, int W, mmp_tx_out which, float *out,
                       float *hidden, char *err, size_t errlen) {
    const mmp_tx_vision *v = m->vision;
    if (!v) return mmp_errf(err, errlen, "%s: the model has no image tower", m->path);
    int D = mmp_tx_image_dim(m, which);
    if (D < 0) return mmp_errf(err, errlen, "%s: the model has no %s", m->path, out_name(which));
    const int C = v->C, P = v->P;
    if (H < P || W < P || H % P || W % P)
        return mmp_errf(err, errlen, "%s: image size %dx%d (HxW) is not a multiple of the patch size %d", m->path, H, W,
                        P);
    if (n <= 0) return 0;
    const int T1 = v->cls + (H / P) * (W / P);
    /* Without hidden states, a large batch goes through in chunks of about
     * 2048 tokens: every image's result is the same bits in any batch (tx/tx.h),
     * the GEMMs are as fast at that M, and the activations (a few [T, 4C]
     * arrays) stay ~100 MB instead of growing with n. */
    const int chunk = T1 < 2048 ? 2048 / T1 : 1;
    if (!hidden && n > chunk) {
        for (int s = 0; s < n; s += chunk)
            if (mmp_tx_image_embed(m, imgs + (size_t)s * 3 * H * W, n - s < chunk ? n - s : chunk, H, W, which,
                                   out + (size_t)s * D, NULL, err, errlen))
                return -1;
        return 0;
    }
    float *x = vision_tokens(v, imgs, n, H, W, hidden);
    float *pooled = mmp_xmalloc(sizeof(float) * (size_t)n * C);
    mmp_tx_vision_pool(v, x, n, T1, pooled);
    if (v->post_w) mmp_tx_layernorm_fwd(pooled, NULL, NULL, pooled, v->post_w, v->post_b, n, C, v->eps_final);
    switch (which) {
    case MMP_TX_OUT_EMBED:
        if (v->proj) mmp_tx_linear_fwd(out, D, pooled, v->proj, NULL, n, C, D);
        else memcpy(out, pooled, sizeof(float) * (size_t)n * C);
        break;
    case MMP_TX_OUT_POOLED: memcpy(out, pooled, sizeof(float) * (size_t)n * C); break;
    case MMP_TX_OUT_POOLER:
        mmp_tx_linear_fwd(out, D, pooled, v->pooler_w, v->pooler_b, n, C, D);
        for (size_t k = 0; k < (size_t)n * D; k++) out[k] = tanhf(out[k]);
        break;
    case MMP_TX_OUT_LOGITS: mmp_tx_linear_fwd(out, D, pooled, v->head_w, v->head_b, n, C, D); break;
    }
    free(pooled);
    free(x);
    return 0;
}
