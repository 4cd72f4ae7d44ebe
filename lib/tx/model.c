/* tx/model.c: loading ViT/CLIP checkpoints (family detection, config files,
 * weights), preprocessing constants, position-embedding resizing. The
 * families' tensor names are in tx/vit.c and tx/clip.c. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tx/loader.h"

const char *mmp_tx_family_name(mmp_txm_family f) {
    switch (f) {
    case MMP_TXM_VIT_HF: return "vit-hf";
    case MMP_TXM_VIT_TIMM: return "vit-timm";
    case MMP_TXM_CLIP_HF: return "clip-hf";
    case MMP_TXM_CLIP_OPENCLIP: return "clip-openclip";
    }
    return "?";
}

/* ------------------------------------------------------------ loader helpers */

int txl_fail(mmp_tx_loader *l, const char *fmt, ...) {
    if (!l->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l->err, l->errlen, fmt, ap);
        va_end(ap);
        mmp_err_oneline(l->err, l->errlen);
        l->failed = 1;
    }
    return -1;
}

const char *txl_name(mmp_tx_loader *l, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->name, sizeof l->name, fmt, ap);
    va_end(ap);
    return l->name;
}

const mmp_tensor *txl_tensor(mmp_tx_loader *l, const char *name) { return mmp_st_get(l->st, name); }
int txl_has(mmp_tx_loader *l, const char *name) { return mmp_st_get(l->st, name) != NULL; }

float *txl_alloc(mmp_tx_loader *l, size_t n) {
    mmp_tx_model *m = l->m;
    if (m->nowned == m->capowned) {
        m->capowned = m->capowned ? 2 * m->capowned : 64;
        m->owned = mmp_xrealloc(m->owned, sizeof *m->owned * (size_t)m->capowned);
    }
    return m->owned[m->nowned++] = mmp_xcalloc(n ? n : 1, sizeof(float));
}

static void mark_used(mmp_tx_loader *l, const mmp_tensor *t) {
    if (!t) return;
    const mmp_st_entry *e = (const mmp_st_entry *)(const void *)((const char *)t - offsetof(mmp_st_entry, t));
    l->used[e - l->st->entries] = 1;
}

int txl_check_unused(mmp_tx_loader *l) {
    static const char *buffers[] = {"position_ids", "attn_mask", "num_batches_tracked"};
    for (int i = 0; i < l->st->n && !l->failed; i++) {
        if (l->used[i]) continue;
        const char *nm = l->st->entries[i].name, *last = strrchr(nm, '.');
        last = last ? last + 1 : nm;
        int buf = 0;
        for (size_t k = 0; k < sizeof buffers / sizeof *buffers; k++) buf |= !strcmp(last, buffers[k]);
        /* mmp-train-step --head transformer's classifier on a CLIP tower: not part of the model */
        buf |= l->finetuned && (!strcmp(nm, "classifier.weight") || !strcmp(nm, "classifier.bias"));
        if (!buf)
            txl_fail(l, "%s: tensor '%s' is not part of a %s model as mmpipe knows it (an unsupported variant)",
                     l->path, nm, mmp_tx_family_name(l->m->family));
    }
    return l->failed ? -1 : 0;
}

static const float *add_ref(mmp_tx_model *m, const char *name, const float *data, size_t n, int rows, int cols,
                            int transposed) {
    if (!data) return NULL;
    if (m->nrefs == m->caprefs) {
        m->caprefs = m->caprefs ? 2 * m->caprefs : 64;
        m->refs = mmp_xrealloc(m->refs, sizeof *m->refs * (size_t)m->caprefs);
    }
    m->refs[m->nrefs++] = (mmp_tx_ref){mmp_xstrdup(name), data, n, rows, cols, transposed};
    return data;
}

static const float *get_v(mmp_tx_loader *l, const char *name, int ndim, va_list ap) {
    int64_t shape[MMP_MAX_DIMS];
    for (int i = 0; i < ndim; i++) shape[i] = va_arg(ap, int64_t);
    if (l->failed) return NULL;
    const mmp_tensor *t = mmp_st_get(l->st, name);
    mark_used(l, t);
    int same = t && t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    int64_t n = mmp_numel(ndim, shape);
    if (n < 0) n = 0;
    if (same && t->dtype == MMP_F32 && ((uintptr_t)t->data & 3) == 0)
        return add_ref(l->m, name, t->data, (size_t)n, 0, 0, 0);
    char e[512];
    float *out = txl_alloc(l, (size_t)n);
    if (mmp_st_read_f32(l->st, name, ndim, shape, out, e, sizeof e)) {
        txl_fail(l, "%s", e);
        return NULL;
    }
    return add_ref(l->m, name, out, (size_t)n, 0, 0, 0);
}

const float *txl_get(mmp_tx_loader *l, const char *name, int ndim, ...) {
    va_list ap;
    va_start(ap, ndim);
    const float *r = get_v(l, name, ndim, ap);
    va_end(ap);
    return r;
}

const float *txl_opt(mmp_tx_loader *l, const char *name, int ndim, ...) {
    if (!txl_has(l, name)) return NULL;
    va_list ap;
    va_start(ap, ndim);
    const float *r = get_v(l, name, ndim, ap);
    va_end(ap);
    return r;
}

int64_t txl_dim(mmp_tx_loader *l, const char *name, int d) {
    const mmp_tensor *t = mmp_st_get(l->st, name);
    if (!t) return txl_fail(l, "%s: tensor '%s' is missing", l->path, name);
    if (d < 0) d += t->ndim;
    if (d < 0 || d >= t->ndim) return txl_fail(l, "%s: tensor '%s' has %d dimensions, too few", l->path, name, t->ndim);
    return t->shape[d];
}

int txl_count(mmp_tx_loader *l, const char *fmt) {
    int n = 0;
    char b[512];
    for (;;) {
        snprintf(b, sizeof b, fmt, n);
        if (!mmp_st_get(l->st, b)) return n;
        n++;
    }
}

const float *txl_transpose(mmp_tx_loader *l, const float *a, int R, int K) {
    if (!a) return NULL;
    float *t = txl_alloc(l, (size_t)R * K);
    for (int r = 0; r < R; r++)
        for (int k = 0; k < K; k++) t[(size_t)k * R + r] = a[(size_t)r * K + k];
    mmp_tx_model *m = l->m;
    for (int i = m->nrefs - 1; i >= 0; i--)
        if (m->refs[i].data == a) return add_ref(m, m->refs[i].name, t, (size_t)R * K, R, K, 1);
    return t;
}

int txl_cfg_int(mmp_tx_loader *l, const char *file, const json_t *obj, const char *key, int want, int *out) {
    char e[256];
    int64_t v;
    int r = mmp_json_get_int(obj, key, INT32_MIN, INT32_MAX, &v, e, sizeof e);
    if (r < 0) return txl_fail(l, "%s: %s", file, e);
    if (r == 0) return 0;
    if (want >= 0 && v != want)
        return txl_fail(l, "%s: \"%s\" is %lld but the weights (%s) have %d", file, key, (long long)v, l->path, want);
    if (out) *out = (int)v;
    return 1;
}

int txl_cfg_num(mmp_tx_loader *l, const char *file, const json_t *obj, const char *key, double *out) {
    char e[256];
    int r = mmp_json_get_num(obj, key, out, e, sizeof e);
    if (r < 0) return txl_fail(l, "%s: %s", file, e);
    return r;
}

int txl_cfg_bool(mmp_tx_loader *l, const char *file, const json_t *obj, const char *key, int *out) {
    char e[256];
    int r = mmp_json_get_bool(obj, key, out, e, sizeof e);
    if (r < 0) return txl_fail(l, "%s: %s", file, e);
    return r;
}

const char *txl_cfg_str(mmp_tx_loader *l, const char *file, const json_t *obj, const char *key) {
    char e[256];
    const char *s = NULL;
    if (mmp_json_get_str(obj, key, &s, e, sizeof e) < 0) {
        txl_fail(l, "%s: %s", file, e);
        return NULL;
    }
    return s;
}

int txl_act(mmp_tx_loader *l, const char *file, const char *name, mmp_tx_act *out) {
    if (!strcmp(name, "gelu")) *out = MMP_TX_GELU_ERF;
    else if (!strcmp(name, "gelu_new") || !strcmp(name, "gelu_pytorch_tanh") || !strcmp(name, "gelu_fast"))
        *out = MMP_TX_GELU_TANH;
    else if (!strcmp(name, "quick_gelu")) *out = MMP_TX_QUICK_GELU;
    else if (!strcmp(name, "relu")) *out = MMP_TX_RELU;
    else return txl_fail(l, "%s: activation \"%s\" is not supported (gelu, gelu_new, quick_gelu, relu)", file, name);
    return 0;
}

int txl_default_heads(int C) {
    if (C == 1280 || C == 1408 || C == 1664) return 16; /* ViT-H (80-wide heads), ViT-g (88), ViT-bigG (104) */
    return C % 64 == 0 ? C / 64 : 1;
}

/* ------------------------------------------------------------ preprocessing */

static void pre_set(mmp_tx_preprocess *p, int size, const float *mean, const float *std, const char *interp,
                    int shortest, float crop_pct) {
    p->height = p->width = size;
    p->resize_shortest = shortest;
    memcpy(p->mean, mean, sizeof p->mean);
    memcpy(p->std, std, sizeof p->std);
    snprintf(p->interpolation, sizeof p->interpolation, "%s", interp);
    p->crop_pct = crop_pct;
}

static int read3(mmp_tx_loader *l, const char *file, const json_t *obj, const char *key, float *out) {
    const json_t *a = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    if (!a || json_is_null(a)) return 0;
    if (json_is_number(a)) { /* one value for the three channels */
        out[0] = out[1] = out[2] = (float)json_number_value(a);
        return 1;
    }
    if (!json_is_array(a) || json_array_size(a) != 3)
        return txl_fail(l, "%s: \"%s\" should be an array of 3 numbers", file, key);
    for (int i = 0; i < 3; i++) {
        const json_t *v = json_array_get(a, (size_t)i);
        if (!json_is_number(v)) return txl_fail(l, "%s: \"%s\" should be an array of 3 numbers", file, key);
        out[i] = (float)json_number_value(v);
    }
    return 1;
}

static const char *pil_resample(int r) {
    switch (r) {
    case 0: return "nearest";
    case 2: return "bilinear";
    case 3: return "bicubic";
    default: return NULL;
    }
}

/* Hugging Face preprocessor_config.json (ViTImageProcessor, CLIPImageProcessor) */
static void pre_hf(mmp_tx_loader *l) {
    const char *f = l->pp_path;
    const json_t *pp = l->pp;
    mmp_tx_preprocess *p = &l->m->pre;
    read3(l, f, pp, "image_mean", p->mean);
    read3(l, f, pp, "image_std", p->std);
    int64_t r;
    char e[256];
    int k = mmp_json_get_int(pp, "resample", 0, 5, &r, e, sizeof e);
    if (k < 0) txl_fail(l, "%s: %s", f, e);
    if (k > 0) {
        const char *s = pil_resample((int)r);
        if (!s) txl_fail(l, "%s: resample %d is not supported (0 nearest, 2 bilinear, 3 bicubic)", f, (int)r);
        else snprintf(p->interpolation, sizeof p->interpolation, "%s", s);
    }
    /* size: an int (shortest edge in old configs), {"shortest_edge"} or {"height","width"} */
    int crop = 1;
    txl_cfg_bool(l, f, pp, "do_center_crop", &crop);
    const json_t *size = json_is_object(pp) ? json_object_get(pp, "size") : NULL;
    int shortest = -1, h = -1, w = -1;
    if (size && json_is_integer(size)) shortest = (int)json_integer_value(size);
    else if (json_is_object(size)) {
        txl_cfg_int(l, f, size, "shortest_edge", -1, &shortest);
        txl_cfg_int(l, f, size, "height", -1, &h);
        txl_cfg_int(l, f, size, "width", -1, &w);
    }
    const json_t *cs = json_is_object(pp) ? json_object_get(pp, "crop_size") : NULL;
    int ch = -1, cw = -1;
    if (cs && json_is_integer(cs)) ch = cw = (int)json_integer_value(cs);
    else if (json_is_object(cs)) {
        txl_cfg_int(l, f, cs, "height", -1, &ch);
        txl_cfg_int(l, f, cs, "width", -1, &cw);
    }
    if (shortest > 0) {
        p->resize_shortest = shortest;
        if (crop && ch > 0 && cw > 0) p->height = ch, p->width = cw;
        else p->height = p->width = shortest;
    } else if (h > 0 && w > 0) {
        p->resize_shortest = 0;
        if (crop && ch > 0 && cw > 0) p->height = ch, p->width = cw;
        else p->height = h, p->width = w;
    }
}

/* open_clip_config.json's preprocess_cfg */
static void pre_openclip(mmp_tx_loader *l, const json_t *pc) {
    const char *f = l->oc_path;
    mmp_tx_preprocess *p = &l->m->pre;
    read3(l, f, pc, "mean", p->mean);
    read3(l, f, pc, "std", p->std);
    const char *s = txl_cfg_str(l, f, pc, "interpolation");
    if (s) snprintf(p->interpolation, sizeof p->interpolation, "%s", s);
    s = txl_cfg_str(l, f, pc, "resize_mode");
    if (s && !strcmp(s, "squash")) p->resize_shortest = 0;
    else if (s && strcmp(s, "shortest"))
        txl_fail(l, "%s: resize_mode \"%s\" is not supported (shortest, squash)", f, s);
}

/* timm's pretrained_cfg (config.json) */
static void pre_timm(mmp_tx_loader *l, const json_t *pc) {
    const char *f = l->cfg_path;
    mmp_tx_preprocess *p = &l->m->pre;
    read3(l, f, pc, "mean", p->mean);
    read3(l, f, pc, "std", p->std);
    const char *s = txl_cfg_str(l, f, pc, "interpolation");
    if (s) snprintf(p->interpolation, sizeof p->interpolation, "%s", s);
    double cp;
    if (txl_cfg_num(l, f, pc, "crop_pct", &cp) > 0 && cp > 0) p->crop_pct = (float)cp;
    const json_t *is = json_is_object(pc) ? json_object_get(pc, "input_size") : NULL;
    if (json_is_array(is) && json_array_size(is) == 3) {
        p->height = (int)json_integer_value(json_array_get(is, 1));
        p->width = (int)json_integer_value(json_array_get(is, 2));
    }
    p->resize_shortest = p->crop_pct > 0 ? (int)floor(p->height / p->crop_pct) : p->height;
}

static const float CLIP_MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float CLIP_STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};
static const float HALF[3] = {0.5f, 0.5f, 0.5f};

static void preprocess(mmp_tx_loader *l) {
    mmp_tx_model *m = l->m;
    int size = m->vision ? m->vision->gh * m->vision->P : 224;
    switch (m->family) {
    case MMP_TXM_VIT_HF:
        /* ViTImageProcessor: 224x224 bilinear resize (no crop), mean = std = 0.5 */
        pre_set(&m->pre, size, HALF, HALF, "bilinear", 0, 0);
        if (l->pp) pre_hf(l);
        break;
    case MMP_TXM_CLIP_HF:
        pre_set(&m->pre, size, CLIP_MEAN, CLIP_STD, "bicubic", size, 0);
        if (l->pp) pre_hf(l);
        break;
    case MMP_TXM_CLIP_OPENCLIP:
        pre_set(&m->pre, size, CLIP_MEAN, CLIP_STD, "bicubic", size, 0);
        if (l->oc) pre_openclip(l, json_object_get(l->oc, "preprocess_cfg"));
        break;
    case MMP_TXM_VIT_TIMM:
        /* timm's default vit pretrained_cfg: mean = std = 0.5, bicubic, crop_pct 0.9 */
        pre_set(&m->pre, size, HALF, HALF, "bicubic", (int)floor(size / 0.9), 0.9f);
        if (l->cfg) {
            const json_t *pc = json_object_get(l->cfg, "pretrained_cfg");
            if (pc) pre_timm(l, pc);
        }
        break;
    }
}

/* ------------------------------------------------------------ loading */

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int refuse_pickle(const char *p, char *err, size_t errlen) {
    return mmp_errf(err, errlen,
                    "%s: PyTorch pickle files are not read (they can run code); convert it once with: python3 -c "
                    "\"import torch, safetensors.torch as s; d = torch.load('%s', map_location='cpu'); d = "
                    "d.get('state_dict', d); s.save_file({k: v.contiguous() for k, v in d.items()}, "
                    "'model.safetensors')\"",
                    p, p);
}

char *mmp_model_config_dir(const mmp_meta *meta) {
    const char *fmt = mmp_meta_get(meta, "format"), *bb = mmp_meta_get(meta, "backbone");
    if (!fmt || strcmp(fmt, "mmpipe-head") || !bb || !*bb) return NULL;
    struct stat sb;
    if (stat(bb, &sb) == 0 && S_ISDIR(sb.st_mode)) return mmp_xstrdup(bb);
    const char *s = strrchr(bb, '/');
    if (!s) return mmp_xstrdup(".");
    return s == bb ? mmp_xstrdup("/") : mmp_xasprintf("%.*s", (int)(s - bb), bb);
}

static json_t *load_json(mmp_tx_loader *l, const char *dir, const char *name, char **pathout) {
    *pathout = mmp_xasprintf("%s/%s", dir, name);
    json_t *j = NULL;
    char e[512];
    if (mmp_json_load(*pathout, &j, e, sizeof e) < 0) {
        txl_fail(l, "%s", e);
        return NULL;
    }
    if (j && !json_is_object(j)) {
        txl_fail(l, "%s: not a JSON object", *pathout);
        json_decref(j);
        return NULL;
    }
    return j;
}

void mmp_tx_model_free(mmp_tx_model *m) {
    if (!m) return;
    for (int i = 0; i < m->nowned; i++) free(m->owned[i]);
    free(m->owned);
    for (int i = 0; i < m->nrefs; i++) free(m->refs[i].name);
    free(m->refs);
    if (m->vision) {
        mmp_tx_encoder_unpack(&m->vision->enc);
        free(m->vision->enc.block);
    }
    if (m->text) {
        mmp_tx_encoder_unpack(&m->text->enc);
        free(m->text->enc.block);
    }
    free(m->vision);
    free(m->text);
    if (m->st) {
        mmp_st_close(m->st);
        free(m->st);
    }
    free(m->path);
    free(m);
}

mmp_tx_model *mmp_tx_model_load(const char *path, char *err, size_t errlen) {
    char *file = NULL, *dir = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        mmp_errf(err, errlen, "%s: no such file or directory", path);
        return NULL;
    }
    if (S_ISDIR(sb.st_mode)) {
        static const char *names[] = {"model.safetensors", "open_clip_model.safetensors"};
        static const char *pickles[] = {"pytorch_model.bin", "open_clip_pytorch_model.bin", "model.bin", "model.pt",
                                        "model.pth"};
        for (size_t i = 0; i < sizeof names / sizeof *names && !file; i++) {
            char *p = mmp_xasprintf("%s/%s", path, names[i]);
            if (is_file(p)) file = p;
            else free(p);
        }
        if (!file) {
            for (size_t i = 0; i < sizeof pickles / sizeof *pickles; i++) {
                char *p = mmp_xasprintf("%s/%s", path, pickles[i]);
                if (is_file(p)) {
                    refuse_pickle(p, err, errlen);
                    free(p);
                    return NULL;
                }
                free(p);
            }
            mmp_errf(err, errlen, "%s: no model.safetensors or open_clip_model.safetensors in this directory", path);
            return NULL;
        }
        dir = mmp_xstrdup(path);
    } else {
        if (ends_with(path, ".bin") || ends_with(path, ".pt") || ends_with(path, ".pth")) {
            refuse_pickle(path, err, errlen);
            return NULL;
        }
        file = mmp_xstrdup(path);
        const char *s = strrchr(path, '/');
        dir = s ? mmp_xasprintf("%.*s", (int)(s - path), path) : mmp_xstrdup(".");
        if (s == path) {
            free(dir);
            dir = mmp_xstrdup("/");
        }
    }

    mmp_tx_model *m = mmp_xcalloc(1, sizeof *m);
    m->path = file;
    m->logit_scale = NAN;
    m->st = mmp_xcalloc(1, sizeof(mmp_safetensors));
    mmp_tx_loader L = {.m = m, .st = m->st, .path = file, .err = err, .errlen = errlen};
    mmp_tx_loader *l = &L;
    if (mmp_st_open(m->st, file, err, errlen)) {
        free(m->st);
        m->st = NULL;
        goto fail;
    }
    l->used = mmp_xcalloc((size_t)(((mmp_safetensors *)m->st)->n + 1), 1);
    { /* a model fine-tuned by mmp-train-step --head transformer: the configs of its backbone */
        char *bdir = mmp_model_config_dir(&((mmp_safetensors *)m->st)->meta);
        if (bdir) {
            free(dir);
            dir = bdir;
            l->finetuned = 1;
        }
    }
    l->cfg = load_json(l, dir, "config.json", &l->cfg_path);
    l->oc = load_json(l, dir, "open_clip_config.json", &l->oc_path);
    l->pp = load_json(l, dir, "preprocessor_config.json", &l->pp_path);
    if (l->failed) goto fail;

    if (txl_has(l, "logit_bias") || txl_has(l, "vision_model.head.probe")) {
        /* SigLIP: sigmoid loss with a bias, attention-pooling head, no class token */
        txl_fail(l, "%s: SigLIP checkpoints are not supported (ViT and CLIP are)", file);
        goto fail;
    }
    if (txl_has(l, "vision_model.embeddings.patch_embedding.weight") ||
        txl_has(l, "text_model.embeddings.token_embedding.weight"))
        m->family = MMP_TXM_CLIP_HF;
    else if (txl_has(l, "visual.conv1.weight") || txl_has(l, "token_embedding.weight"))
        m->family = MMP_TXM_CLIP_OPENCLIP;
    else if (txl_has(l, "embeddings.patch_embeddings.projection.weight") ||
             txl_has(l, "vit.embeddings.patch_embeddings.projection.weight"))
        m->family = MMP_TXM_VIT_HF;
    else if (txl_has(l, "patch_embed.proj.weight"))
        m->family = MMP_TXM_VIT_TIMM;
    else {
        if (txl_has(l, "visual.trunk.patch_embed.proj.weight"))
            txl_fail(l, "%s: open_clip with a timm image tower (visual.trunk.*) is not supported", file);
        else
            txl_fail(l,
                     "%s: unknown architecture: no ViT or CLIP tensor names (expected one of "
                     "embeddings.patch_embeddings.projection.weight, patch_embed.proj.weight, "
                     "vision_model.embeddings.patch_embedding.weight, visual.conv1.weight; first tensor is '%s')",
                     file, m->st && ((mmp_safetensors *)m->st)->n ? ((mmp_safetensors *)m->st)->entries[0].name : "");
        goto fail;
    }
    int rc = 0;
    switch (m->family) {
    case MMP_TXM_VIT_HF: rc = mmp_tx_load_vit_hf(l); break;
    case MMP_TXM_VIT_TIMM: rc = mmp_tx_load_vit_timm(l); break;
    case MMP_TXM_CLIP_HF: rc = mmp_tx_load_clip_hf(l); break;
    case MMP_TXM_CLIP_OPENCLIP: rc = mmp_tx_load_clip_openclip(l); break;
    }
    if (rc || l->failed || txl_check_unused(l)) goto fail;
    preprocess(l);
    if (l->failed) goto fail;
    /* Not mmp_tx_encoder_pack by default: it copies every GEMM weight
     * (ViT-B/16: +344 MB) for little time (CPU time an image at 224, best of
     * 5 interleaved, 1 thread: ViT-B/16 313 vs 317 ms, CLIP B/32 81 vs 85).
     * The weights stay in the mapping; a caller may pack m->vision->enc. */
    json_decref(l->cfg);
    json_decref(l->oc);
    json_decref(l->pp);
    free(l->cfg_path);
    free(l->oc_path);
    free(l->pp_path);
    free(l->used);
    free(dir);
    return m;
fail:
    if (!l->failed && err && errlen && !err[0]) snprintf(err, errlen, "%s: cannot load", path);
    json_decref(l->cfg);
    json_decref(l->oc);
    json_decref(l->pp);
    free(l->cfg_path);
    free(l->oc_path);
    free(l->pp_path);
    free(l->used);
    free(dir);
    mmp_tx_model_free(m);
    return NULL;
}

void mmp_tx_model_set_threads(mmp_tx_model *m, int threads) {
    if (m->vision) m->vision->enc.threads = threads;
    if (m->text) m->text->enc.threads = threads;
}

float mmp_tx_logit_scale(const mmp_tx_model *m) { return isnan(m->logit_scale) ? NAN : expf(m->logit_scale); }

/* ------------------------------------------------------------ position embeddings */

/* torch's upsample_bicubic2d (align_corners=False): cubic convolution with
 * A = -0.75, source index clamped at the borders. */
static void cubic_w(double t, double w[4]) {
    const double A = -0.75;
    double x;
    x = t + 1;
    w[0] = ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
    x = t;
    w[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
    x = 1 - t;
    w[2] = ((A + 2) * x - (A + 3)) * x * x + 1;
    x = 2 - t;
    w[3] = ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
}

static int clampi(int v, int hi) { return v < 0 ? 0 : v > hi ? hi : v; }

void mmp_tx_pos_resize_scaled(float *out, const float *pe, int gh, int gw, int oh, int ow, int C, double sh,
                              double sw) {
    /* torch computes in float: real_input_index = scale * (dst + 0.5) - 0.5 with
     * scale and the index as float (acc type of float is float on CPU for this kernel) */
    float *tmp = mmp_xcalloc((size_t)gh * ow * C, sizeof(float));
    /* along the width, then the height (torch does both at once per output
     * pixel: sum_i wy_i sum_j wx_j in[i][j], the same order as here) */
    for (int x = 0; x < ow; x++) {
        float src = (float)sw * ((float)x + 0.5f) - 0.5f;
        int x0 = (int)floorf(src);
        double w[4];
        cubic_w((double)(src - (float)x0), w);
        float wf[4];
        for (int k = 0; k < 4; k++) wf[k] = (float)w[k];
        for (int y = 0; y < gh; y++) {
            float *o = tmp + ((size_t)y * ow + x) * C;
            for (int k = 0; k < 4; k++) {
                const float *r = pe + ((size_t)y * gw + clampi(x0 - 1 + k, gw - 1)) * C;
                for (int c = 0; c < C; c++) o[c] += wf[k] * r[c];
            }
        }
    }
    for (int y = 0; y < oh; y++) {
        float src = (float)sh * ((float)y + 0.5f) - 0.5f;
        int y0 = (int)floorf(src);
        double w[4];
        cubic_w((double)(src - (float)y0), w);
        float wf[4];
        for (int k = 0; k < 4; k++) wf[k] = (float)w[k];
        for (int x = 0; x < ow; x++) {
            float *o = out + ((size_t)y * ow + x) * C;
            for (int c = 0; c < C; c++) o[c] = 0;
            for (int k = 0; k < 4; k++) {
                const float *r = tmp + ((size_t)clampi(y0 - 1 + k, gh - 1) * ow + x) * C;
                for (int c = 0; c < C; c++) o[c] += wf[k] * r[c];
            }
        }
    }
    free(tmp);
}

/* ------------------------------------------------------------ threads */

typedef struct {
    const mmp_tx_model *m;
    const float *imgs;
    const int32_t *ids;
    const int *lens;
    int n, H, W, rc;
    mmp_tx_out which;
    float *out;
    char err[512];
} share;

static void *share_run(void *p) {
    share *s = p;
    s->rc = s->ids ? mmp_tx_text_embed(s->m, s->ids, s->lens, s->n, s->which, s->out, NULL, s->err, sizeof s->err)
                   : mmp_tx_image_embed(s->m, s->imgs, s->n, s->H, s->W, s->which, s->out, NULL, s->err, sizeof s->err);
    return NULL;
}

/* runs the shares (the first in this thread), the first error wins */
static int run_shares(share *sh, int k, char *err, size_t errlen) {
    pthread_t *th = mmp_xcalloc((size_t)k, sizeof *th);
    for (int i = 1; i < k; i++)
        if (pthread_create(&th[i], NULL, share_run, &sh[i])) mmp_die("cannot create a thread");
    share_run(&sh[0]);
    for (int i = 1; i < k; i++) pthread_join(th[i], NULL);
    free(th);
    for (int i = 0; i < k; i++)
        if (sh[i].rc) return mmp_errf(err, errlen, "%s", sh[i].err);
    return 0;
}

int mmp_tx_image_embed_mt(const mmp_tx_model *m, const float *imgs, int n, int H, int W, mmp_tx_out which, float *out,
                          int threads, char *err, size_t errlen) {
    int D = mmp_tx_image_dim(m, which);
    if (threads > n) threads = n;
    if (threads <= 1 || D < 0) return mmp_tx_image_embed(m, imgs, n, H, W, which, out, NULL, err, errlen);
    share *sh = mmp_xcalloc((size_t)threads, sizeof *sh);
    for (int i = 0, a = 0; i < threads; i++) {
        int b = (int)((int64_t)n * (i + 1) / threads);
        sh[i] = (share){.m = m, .imgs = imgs + (size_t)a * 3 * H * W, .n = b - a, .H = H, .W = W, .which = which,
                        .out = out + (size_t)a * D};
        a = b;
    }
    int rc = run_shares(sh, threads, err, errlen);
    free(sh);
    return rc;
}

int mmp_tx_text_embed_mt(const mmp_tx_model *m, const int32_t *ids, const int *lens, int n, mmp_tx_out which,
                         float *out, int threads, char *err, size_t errlen) {
    int D = mmp_tx_text_dim(m, which);
    if (threads > n) threads = n;
    if (threads <= 1 || D < 0) return mmp_tx_text_embed(m, ids, lens, n, which, out, NULL, err, errlen);
    share *sh = mmp_xcalloc((size_t)threads, sizeof *sh);
    size_t off = 0;
    for (int i = 0, a = 0; i < threads; i++) {
        int b = (int)((int64_t)n * (i + 1) / threads);
        sh[i] = (share){.m = m, .ids = ids + off, .lens = lens + a, .n = b - a, .which = which, .out = out + (size_t)a * D};
        for (int k = a; k < b; k++) off += (size_t)(lens[k] > 0 ? lens[k] : 0);
        a = b;
    }
    int rc = run_shares(sh, threads, err, errlen);
    free(sh);
    return rc;
}
