/* tx/clip.c: CLIP: the Hugging Face CLIPModel and open_clip loaders (both
 * towers; the image forward is tx/vit.c's) and the text tower's forward. */
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

/* a scalar parameter (shape [] or [1]) */
static int scalar(mmp_tx_loader *l, const char *name, float *out) {
    const mmp_tensor *t = txl_tensor(l, name);
    if (!t) return 0;
    if (mmp_numel(t->ndim, t->shape) != 1) return txl_fail(l, "%s: tensor '%s' should be a scalar", l->path, name);
    const float *p = txl_get(l, name, t->ndim, t->ndim > 0 ? t->shape[0] : 0, t->ndim > 1 ? t->shape[1] : 0);
    if (!p) return -1;
    *out = p[0];
    return 1;
}

static int check_heads(mmp_tx_loader *l, const char *file, int NH, int C) {
    if (NH < 1 || C % NH) return txl_fail(l, "%s: %d attention heads do not divide the width %d", file, NH, C);
    return 0;
}

/* ------------------------------------------------------------ Hugging Face CLIPModel */

/* the blocks of vision_model / text_model: encoder.layers.N.* */
static void hf_blocks(mmp_tx_loader *l, const char *p, mmp_tx_encoder *e) {
    const int64_t c = e->C, i = e->inter;
    e->block = mmp_xcalloc((size_t)e->layers, sizeof *e->block);
    for (int k = 0; k < e->layers; k++) {
        mmp_tx_block *b = &e->block[k];
#define N(s) txl_name(l, "%sencoder.layers.%d." s, p, k)
        b->ln1_w = txl_get(l, N("layer_norm1.weight"), 1, c);
        b->ln1_b = txl_get(l, N("layer_norm1.bias"), 1, c);
        b->q_w = txl_get(l, N("self_attn.q_proj.weight"), 2, c, c);
        b->q_b = txl_get(l, N("self_attn.q_proj.bias"), 1, c);
        b->k_w = txl_get(l, N("self_attn.k_proj.weight"), 2, c, c);
        b->k_b = txl_get(l, N("self_attn.k_proj.bias"), 1, c);
        b->v_w = txl_get(l, N("self_attn.v_proj.weight"), 2, c, c);
        b->v_b = txl_get(l, N("self_attn.v_proj.bias"), 1, c);
        b->o_w = txl_get(l, N("self_attn.out_proj.weight"), 2, c, c);
        b->o_b = txl_get(l, N("self_attn.out_proj.bias"), 1, c);
        b->ln2_w = txl_get(l, N("layer_norm2.weight"), 1, c);
        b->ln2_b = txl_get(l, N("layer_norm2.bias"), 1, c);
        b->fc1_w = txl_get(l, N("mlp.fc1.weight"), 2, i, c);
        b->fc1_b = txl_get(l, N("mlp.fc1.bias"), 1, i);
        b->fc2_w = txl_get(l, N("mlp.fc2.weight"), 2, c, i);
        b->fc2_b = txl_get(l, N("mlp.fc2.bias"), 1, c);
#undef N
    }
}

/* heads, act, eps of a tower from its sub-config (vision_config / text_config,
 * then the *_config_dict of older files, whose values transformers 4.30 lets win) */
static void hf_tower_cfg(mmp_tx_loader *l, const json_t *const tcs[2], mmp_tx_encoder *e, int image_size) {
    const char *cf = l->cfg_path;
    double eps = 1e-5;
    e->act = MMP_TX_QUICK_GELU; /* CLIPVisionConfig / CLIPTextConfig default */
    for (int k = 0; k < 2; k++) {
        const json_t *tc = tcs[k];
        if (!tc) continue;
        txl_cfg_int(l, cf, tc, "hidden_size", e->C, NULL);
        txl_cfg_int(l, cf, tc, "intermediate_size", e->inter, NULL);
        txl_cfg_int(l, cf, tc, "num_hidden_layers", e->layers, NULL);
        txl_cfg_int(l, cf, tc, "num_attention_heads", -1, &e->NH);
        if (image_size > 0) txl_cfg_int(l, cf, tc, "image_size", image_size, NULL);
        txl_cfg_num(l, cf, tc, "layer_norm_eps", &eps);
        const char *a = txl_cfg_str(l, cf, tc, "hidden_act");
        if (a) txl_act(l, cf, a, &e->act);
    }
    e->eps = (float)eps;
    check_heads(l, cf ? cf : l->path, e->NH, e->C);
}

int mmp_tx_load_clip_hf(mmp_tx_loader *l) {
    mmp_tx_model *m = l->m;
    const json_t *cfg = l->cfg;
    const char *cf = l->cfg_path;
    const json_t *vcs[2] = {cfg ? json_object_get(cfg, "vision_config") : NULL,
                            cfg ? json_object_get(cfg, "vision_config_dict") : NULL};
    const json_t *tcs[2] = {cfg ? json_object_get(cfg, "text_config") : NULL,
                            cfg ? json_object_get(cfg, "text_config_dict") : NULL};
    /* a CLIPVisionModel / CLIPTextModel config is the tower's own */
    if (cfg && !vcs[0] && !vcs[1] && !tcs[0] && !tcs[1]) vcs[0] = tcs[0] = cfg;
    int proj_dim = -1;
    if (cfg) txl_cfg_int(l, cf, cfg, "projection_dim", -1, &proj_dim);

    if (txl_has(l, "vision_model.embeddings.patch_embedding.weight")) {
        mmp_tx_vision *v = m->vision = mmp_xcalloc(1, sizeof *v);
        const char *pw = "vision_model.embeddings.patch_embedding.weight";
        const mmp_tensor *t = txl_tensor(l, pw);
        if (t->ndim != 4 || t->shape[1] != 3 || t->shape[2] != t->shape[3] || t->shape[2] < 1)
            return txl_fail(l, "%s: tensor '%s' should be [hidden, 3, patch, patch]", l->path, pw);
        int C = v->C = (int)t->shape[0], P = v->P = (int)t->shape[2];
        const int64_t c = C;
        v->patch_w = txl_get(l, pw, 4, c, (int64_t)3, (int64_t)P, (int64_t)P);
        const char *pn = "vision_model.embeddings.position_embedding.weight";
        int64_t npos = txl_dim(l, pn, 0);
        if (l->failed) return -1;
        int g = isqrt_exact(npos - 1);
        if (g < 0) return txl_fail(l, "%s: '%s' has %lld positions: not 1 + a square grid", l->path, pn, (long long)npos);
        v->gh = v->gw = g;
        v->cls = v->pos_cls = 1;
        v->resize = 2;
        v->pos = txl_get(l, pn, 2, npos, c);
        v->cls_tok = txl_get(l, "vision_model.embeddings.class_embedding", 1, c);
        mmp_tx_encoder *e = &v->enc;
        e->C = C;
        e->layers = txl_count(l, "vision_model.encoder.layers.%d.layer_norm1.weight");
        if (!e->layers) return txl_fail(l, "%s: tensor 'vision_model.encoder.layers.0.layer_norm1.weight' is missing", l->path);
        e->inter = (int)txl_dim(l, "vision_model.encoder.layers.0.mlp.fc1.weight", 0);
        e->NH = txl_default_heads(C);
        for (int k = 0; k < 2; k++) txl_cfg_int(l, cf, vcs[k], "patch_size", P, NULL);
        hf_tower_cfg(l, vcs, e, g * P);
        if (l->failed) return -1;
        hf_blocks(l, "vision_model.", e);
        v->pre_w = txl_get(l, "vision_model.pre_layrnorm.weight", 1, c);
        v->pre_b = txl_get(l, "vision_model.pre_layrnorm.bias", 1, c);
        v->post_w = txl_get(l, "vision_model.post_layernorm.weight", 1, c);
        v->post_b = txl_get(l, "vision_model.post_layernorm.bias", 1, c);
        v->eps_final = e->eps;
        if (txl_has(l, "visual_projection.weight")) {
            v->proj_dim = (int)txl_dim(l, "visual_projection.weight", 0);
            v->proj = txl_get(l, "visual_projection.weight", 2, (int64_t)v->proj_dim, c);
            if (proj_dim >= 0 && proj_dim != v->proj_dim)
                return txl_fail(l, "%s: \"projection_dim\" is %d but the weights (%s) have %d", cf, proj_dim, l->path,
                                v->proj_dim);
        }
    }
    if (txl_has(l, "text_model.embeddings.token_embedding.weight")) {
        mmp_tx_textenc *t = m->text = mmp_xcalloc(1, sizeof *t);
        const char *tn = "text_model.embeddings.token_embedding.weight";
        t->vocab = (int)txl_dim(l, tn, 0);
        int C = t->C = (int)txl_dim(l, tn, 1);
        t->ctx = (int)txl_dim(l, "text_model.embeddings.position_embedding.weight", 0);
        if (l->failed) return -1;
        const int64_t c = C;
        t->tok = txl_get(l, tn, 2, (int64_t)t->vocab, c);
        t->pos = txl_get(l, "text_model.embeddings.position_embedding.weight", 2, (int64_t)t->ctx, c);
        mmp_tx_encoder *e = &t->enc;
        e->C = C;
        e->causal = 1;
        e->layers = txl_count(l, "text_model.encoder.layers.%d.layer_norm1.weight");
        if (!e->layers) return txl_fail(l, "%s: tensor 'text_model.encoder.layers.0.layer_norm1.weight' is missing", l->path);
        e->inter = (int)txl_dim(l, "text_model.encoder.layers.0.mlp.fc1.weight", 0);
        e->NH = C % 64 == 0 ? C / 64 : 1;
        for (int k = 0; k < 2; k++) {
            txl_cfg_int(l, cf, tcs[k], "vocab_size", t->vocab, NULL);
            txl_cfg_int(l, cf, tcs[k], "max_position_embeddings", t->ctx, NULL);
        }
        hf_tower_cfg(l, tcs, e, -1);
        if (l->failed) return -1;
        hf_blocks(l, "text_model.", e);
        t->final_w = txl_get(l, "text_model.final_layer_norm.weight", 1, c);
        t->final_b = txl_get(l, "text_model.final_layer_norm.bias", 1, c);
        t->eps_final = e->eps;
        if (txl_has(l, "text_projection.weight")) {
            t->proj_dim = (int)txl_dim(l, "text_projection.weight", 0);
            t->proj = txl_get(l, "text_projection.weight", 2, (int64_t)t->proj_dim, c);
            if (proj_dim >= 0 && proj_dim != t->proj_dim)
                return txl_fail(l, "%s: \"projection_dim\" is %d but the weights (%s) have %d", cf, proj_dim, l->path,
                                t->proj_dim);
        }
    }
    scalar(l, "logit_scale", &m->logit_scale);
    return l->failed ? -1 : 0;
}

/* ------------------------------------------------------------ open_clip */

/* transformer.resblocks.N.* with a fused in_proj */
static void oc_blocks(mmp_tx_loader *l, const char *p, mmp_tx_encoder *e) {
    const int64_t c = e->C, i = e->inter;
    const int C = e->C;
    e->block = mmp_xcalloc((size_t)e->layers, sizeof *e->block);
    for (int k = 0; k < e->layers; k++) {
        mmp_tx_block *b = &e->block[k];
#define N(s) txl_name(l, "%stransformer.resblocks.%d." s, p, k)
        b->ln1_w = txl_get(l, N("ln_1.weight"), 1, c);
        b->ln1_b = txl_get(l, N("ln_1.bias"), 1, c);
        const float *w = txl_get(l, N("attn.in_proj_weight"), 2, 3 * c, c);
        const float *bb = txl_get(l, N("attn.in_proj_bias"), 1, 3 * c);
        if (w) b->q_w = w, b->k_w = w + (size_t)C * C, b->v_w = w + (size_t)2 * C * C;
        if (bb) b->q_b = bb, b->k_b = bb + C, b->v_b = bb + 2 * C;
        b->o_w = txl_get(l, N("attn.out_proj.weight"), 2, c, c);
        b->o_b = txl_get(l, N("attn.out_proj.bias"), 1, c);
        b->ls1 = txl_opt(l, N("ls_1.gamma"), 1, c);
        b->ln2_w = txl_get(l, N("ln_2.weight"), 1, c);
        b->ln2_b = txl_get(l, N("ln_2.bias"), 1, c);
        b->fc1_w = txl_get(l, N("mlp.c_fc.weight"), 2, i, c);
        b->fc1_b = txl_get(l, N("mlp.c_fc.bias"), 1, i);
        b->fc2_w = txl_get(l, N("mlp.c_proj.weight"), 2, c, i);
        b->fc2_b = txl_get(l, N("mlp.c_proj.bias"), 1, c);
        b->ls2 = txl_opt(l, N("ls_2.gamma"), 1, c);
        if (txl_has(l, N("ln_attn.weight")) || txl_has(l, N("mlp.ln.weight")))
            txl_fail(l, "%s: scale-norm blocks ('%s...') are not supported", l->path, N("ln_attn"));
#undef N
    }
}

int mmp_tx_load_clip_openclip(mmp_tx_loader *l) {
    mmp_tx_model *m = l->m;
    const char *cf = l->oc_path;
    const json_t *mc = l->oc ? json_object_get(l->oc, "model_cfg") : NULL;
    if (l->oc && !mc) mc = l->oc; /* a bare model config (open_clip/model_configs/NAME.json) */
    const json_t *vc = mc ? json_object_get(mc, "vision_cfg") : NULL;
    const json_t *tcf = mc ? json_object_get(mc, "text_cfg") : NULL;
    int quick = 0;
    if (mc) txl_cfg_bool(l, cf, mc, "quick_gelu", &quick);
    int embed_dim = -1;
    if (mc) txl_cfg_int(l, cf, mc, "embed_dim", -1, &embed_dim);
    mmp_tx_act act = quick ? MMP_TX_QUICK_GELU : MMP_TX_GELU_ERF;

    if (txl_has(l, "visual.conv1.weight")) {
        mmp_tx_vision *v = m->vision = mmp_xcalloc(1, sizeof *v);
        const char *pw = "visual.conv1.weight";
        const mmp_tensor *t = txl_tensor(l, pw);
        if (t->ndim != 4 || t->shape[1] != 3 || t->shape[2] != t->shape[3] || t->shape[2] < 1)
            return txl_fail(l, "%s: tensor '%s' should be [width, 3, patch, patch]", l->path, pw);
        int C = v->C = (int)t->shape[0], P = v->P = (int)t->shape[2];
        const int64_t c = C;
        v->patch_w = txl_get(l, pw, 4, c, (int64_t)3, (int64_t)P, (int64_t)P);
        v->patch_b = txl_opt(l, "visual.conv1.bias", 1, c);
        const char *pn = "visual.positional_embedding";
        int64_t npos = txl_dim(l, pn, 0);
        if (l->failed) return -1;
        int g = isqrt_exact(npos - 1);
        if (g < 0) return txl_fail(l, "%s: '%s' has %lld positions: not 1 + a square grid", l->path, pn, (long long)npos);
        v->gh = v->gw = g;
        v->cls = v->pos_cls = 1;
        v->resize = 2;
        v->pos = txl_get(l, pn, 2, npos, c);
        v->cls_tok = txl_get(l, "visual.class_embedding", 1, c);
        if (txl_has(l, "visual.attn_pool.query") || txl_has(l, "visual.attn_pool.q.weight"))
            return txl_fail(l, "%s: attentional pooling (visual.attn_pool) is not supported", l->path);
        mmp_tx_encoder *e = &v->enc;
        e->C = C;
        e->act = act;
        e->eps = 1e-5f;
        e->layers = txl_count(l, "visual.transformer.resblocks.%d.ln_1.weight");
        if (!e->layers) return txl_fail(l, "%s: tensor 'visual.transformer.resblocks.0.ln_1.weight' is missing", l->path);
        e->inter = (int)txl_dim(l, "visual.transformer.resblocks.0.mlp.c_fc.weight", 0);
        e->NH = txl_default_heads(C);
        const char *pool = "tok";
        int ln_after_pool = 0;
        if (vc) {
            txl_cfg_int(l, cf, vc, "width", C, NULL);
            txl_cfg_int(l, cf, vc, "layers", e->layers, NULL);
            txl_cfg_int(l, cf, vc, "patch_size", P, NULL);
            txl_cfg_int(l, cf, vc, "image_size", g * P, NULL);
            int hw = 64;
            txl_cfg_int(l, cf, vc, "head_width", -1, &hw);
            if (hw < 1 || C % hw) return txl_fail(l, "%s: \"head_width\" %d does not divide the width %d", cf, hw, C);
            e->NH = C / hw;
            double r;
            if (txl_cfg_num(l, cf, vc, "mlp_ratio", &r) > 0 && (int)(C * r) != e->inter)
                return txl_fail(l, "%s: \"mlp_ratio\" %g gives %d but the weights (%s) have %d", cf, r, (int)(C * r),
                                l->path, e->inter);
            int gap = 0;
            if (txl_cfg_bool(l, cf, vc, "global_average_pool", &gap) > 0 && gap) pool = "avg";
            const char *pt = txl_cfg_str(l, cf, vc, "pool_type");
            if (pt) pool = pt;
            txl_cfg_bool(l, cf, vc, "final_ln_after_pool", &ln_after_pool);
            int b;
            if (txl_cfg_bool(l, cf, vc, "no_ln_pre", &b) > 0 && b)
                return txl_fail(l, "%s: \"no_ln_pre\" is not supported", cf);
            if (l->failed) return -1;
        }
        check_heads(l, cf ? cf : l->path, e->NH, C);
        if (l->failed) return -1;
        oc_blocks(l, "visual.", e);
        v->pre_w = txl_get(l, "visual.ln_pre.weight", 1, c);
        v->pre_b = txl_get(l, "visual.ln_pre.bias", 1, c);
        v->eps_final = 1e-5f;
        const float *lw = txl_get(l, "visual.ln_post.weight", 1, c), *lb = txl_get(l, "visual.ln_post.bias", 1, c);
        if (!strcmp(pool, "avg")) v->pool_avg = 1;
        else if (strcmp(pool, "tok"))
            return txl_fail(l, "%s: pool_type \"%s\" is not supported (tok, avg)", cf, pool);
        if (ln_after_pool || !v->pool_avg) v->post_w = lw, v->post_b = lb; /* tok: the same either way */
        else v->norm_w = lw, v->norm_b = lb;
        if (txl_has(l, "visual.proj")) {
            v->proj_dim = (int)txl_dim(l, "visual.proj", 1);
            v->proj = txl_transpose(l, txl_get(l, "visual.proj", 2, c, (int64_t)v->proj_dim), C, v->proj_dim);
            if (embed_dim >= 0 && embed_dim != v->proj_dim)
                return txl_fail(l, "%s: \"embed_dim\" is %d but the weights (%s) have %d", cf, embed_dim, l->path,
                                v->proj_dim);
        }
    }
    if (txl_has(l, "token_embedding.weight")) {
        mmp_tx_textenc *t = m->text = mmp_xcalloc(1, sizeof *t);
        t->vocab = (int)txl_dim(l, "token_embedding.weight", 0);
        int C = t->C = (int)txl_dim(l, "token_embedding.weight", 1);
        t->ctx = (int)txl_dim(l, "positional_embedding", 0);
        if (l->failed) return -1;
        const int64_t c = C;
        t->tok = txl_get(l, "token_embedding.weight", 2, (int64_t)t->vocab, c);
        t->pos = txl_get(l, "positional_embedding", 2, (int64_t)t->ctx, c);
        mmp_tx_encoder *e = &t->enc;
        e->C = C;
        e->causal = 1;
        e->act = act;
        e->eps = 1e-5f;
        e->layers = txl_count(l, "transformer.resblocks.%d.ln_1.weight");
        if (!e->layers) return txl_fail(l, "%s: tensor 'transformer.resblocks.0.ln_1.weight' is missing", l->path);
        e->inter = (int)txl_dim(l, "transformer.resblocks.0.mlp.c_fc.weight", 0);
        e->NH = C % 64 == 0 ? C / 64 : 1;
        if (tcf) {
            txl_cfg_int(l, cf, tcf, "width", C, NULL);
            txl_cfg_int(l, cf, tcf, "layers", e->layers, NULL);
            txl_cfg_int(l, cf, tcf, "vocab_size", t->vocab, NULL);
            txl_cfg_int(l, cf, tcf, "context_length", t->ctx, NULL);
            txl_cfg_int(l, cf, tcf, "heads", -1, &e->NH);
            const char *pt = txl_cfg_str(l, cf, tcf, "pool_type");
            if (pt && strcmp(pt, "argmax"))
                return txl_fail(l, "%s: text pool_type \"%s\" is not supported (argmax)", cf, pt);
            int b;
            if (txl_cfg_bool(l, cf, tcf, "embed_cls", &b) > 0 && b)
                return txl_fail(l, "%s: \"embed_cls\" is not supported", cf);
            if (l->failed) return -1;
        }
        if (t->ctx < 1) return txl_fail(l, "%s: 'positional_embedding' is empty", l->path);
        check_heads(l, cf ? cf : l->path, e->NH, C);
        if (l->failed) return -1;
        oc_blocks(l, "", e);
        t->final_w = txl_get(l, "ln_final.weight", 1, c);
        t->final_b = txl_get(l, "ln_final.bias", 1, c);
        t->eps_final = 1e-5f;
        if (txl_has(l, "text_projection")) {
            t->proj_dim = (int)txl_dim(l, "text_projection", 1);
            t->proj = txl_transpose(l, txl_get(l, "text_projection", 2, c, (int64_t)t->proj_dim), C, t->proj_dim);
            if (embed_dim >= 0 && embed_dim != t->proj_dim)
                return txl_fail(l, "%s: \"embed_dim\" is %d but the weights (%s) have %d", cf, embed_dim, l->path,
                                t->proj_dim);
        }
    }
    scalar(l, "logit_scale", &m->logit_scale);
    return l->failed ? -1 : 0;
}

/* ------------------------------------------------------------ text forward */

int mmp_tx_text_dim(const mmp_tx_model *m, mmp_tx_out which) {
    const mmp_tx_textenc *t = m->text;
    if (!t) return -1;
    switch (which) {
    case MMP_TX_OUT_EMBED: return t->proj ? t->proj_dim : t->C;
    case MMP_TX_OUT_POOLED: return t->C;
    default: return -1;
    }
}

int mmp_tx_text_embed(const mmp_tx_model *m, const int32_t *ids, const int *lens, int n, mmp_tx_out which,
                      float *out, float *hidden, char *err, size_t errlen) {
    const mmp_tx_textenc *t = m->text;
    if (!t) return mmp_errf(err, errlen, "%s: the model has no text tower", m->path);
    int D = mmp_tx_text_dim(m, which);
    if (D < 0) return mmp_errf(err, errlen, "%s: the text tower gives only the embedding and the pooled output", m->path);
    const int C = t->C;
    size_t T = 0;
    for (int s = 0; s < n; s++) {
        if (lens[s] < 1 || lens[s] > t->ctx)
            return mmp_errf(err, errlen, "%s: text %d has %d tokens; the context length is %d", m->path, s, lens[s],
                            t->ctx);
        for (int k = 0; k < lens[s]; k++)
            if (ids[T + (size_t)k] < 0 || ids[T + (size_t)k] >= t->vocab)
                return mmp_errf(err, errlen, "%s: text %d: token id %d is outside the vocabulary (%d)", m->path, s,
                                (int)ids[T + (size_t)k], t->vocab);
        T += (size_t)lens[s];
    }
    if (n <= 0) return 0;
    float *x = mmp_xmalloc(sizeof(float) * T * C);
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
    mmp_tx_encoder_fwd(&t->enc, x, lens, n, hidden);
    mmp_tx_layernorm_fwd(x, NULL, NULL, x, t->final_w, t->final_b, (int)T, C, t->eps_final);
    float *pooled = mmp_xmalloc(sizeof(float) * (size_t)n * C);
    o = 0;
    for (int s = 0; s < n; s++) {
        int best = 0; /* argmax: the first largest id (the end-of-text token) */
        for (int k = 1; k < lens[s]; k++)
            if (ids[o + (size_t)k] > ids[o + (size_t)best]) best = k;
        memcpy(pooled + (size_t)s * C, x + (o + (size_t)best) * C, sizeof(float) * C);
        o += (size_t)lens[s];
    }
    if (which == MMP_TX_OUT_EMBED && t->proj) mmp_tx_linear_fwd(out, D, pooled, t->proj, NULL, n, C, D);
    else memcpy(out, pooled, sizeof(float) * (size_t)n * C);
    free(pooled);
    free(x);
    return 0;
}
