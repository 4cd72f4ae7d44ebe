/* train/clip_ft.c: CLIP contrastive fine-tuning of both towers (see
 * train/clip_ft.h): the loss on a batch, the update, checkpoints. The
 * command (data, loop, dev evaluation) is in train/clip_ft_cmd.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/gemm.h"
#include "train/clip_ft.h"
#include "train/layers.h"

#define LOGIT_SCALE_MAX 4.605170185988092 /* log(100), CLIP's clamp */

const char *const mmp_clipft_lock_names[] = {"none", "image", "text", NULL};

int mmp_clipft_no_decay(const char *name, int ndim) {
    /* open_clip/training/main.py: exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n
     * or "logit_scale" in n */
    return ndim < 2 || strstr(name, "bn") || strstr(name, "ln") || strstr(name, "bias") || strstr(name, "logit_scale");
}

/* 1 when parameter NAME belongs to the image tower (its projection included) */
static int image_param(const mmp_tx_model *m, const char *name) {
    if (m->family == MMP_TXM_CLIP_HF) return !strncmp(name, "vision_model.", 13) || !strncmp(name, "visual_projection", 17);
    return !strncmp(name, "visual.", 7);
}

static void push(mmp_clipft *ft, const mmp_param *p) {
    if (ft->ntr == ft->captr) {
        ft->captr = ft->captr ? 2 * ft->captr : 64;
        ft->tr = mmp_xrealloc(ft->tr, sizeof *ft->tr * (size_t)ft->captr);
    }
    ft->tr[ft->ntr++] = *p;
}

int mmp_clipft_init(mmp_clipft *ft, mmp_tx_model *m, int lock, char *err, size_t errlen) {
    memset(ft, 0, sizeof *ft);
    if (m->family != MMP_TXM_CLIP_HF && m->family != MMP_TXM_CLIP_OPENCLIP)
        return mmp_errf(err, errlen, "%s: a %s model; --head clip needs a CLIP model (Hugging Face CLIPModel or open_clip)", m->path,
                        mmp_tx_family_name(m->family));
    if (!m->vision || !m->text)
        return mmp_errf(err, errlen, "%s: CLIP without its %s tower; --head clip trains both towers", m->path,
                        m->vision ? "text" : "image");
    const mmp_tensor *ls = m->st ? mmp_st_get((const mmp_safetensors *)m->st, "logit_scale") : NULL;
    if (!ls || !isfinite(m->logit_scale) || mmp_numel(ls->ndim, ls->shape) != 1)
        return mmp_errf(err, errlen, "%s: no finite scalar logit_scale", m->path);
    int E = mmp_tx_image_dim(m, MMP_TX_OUT_EMBED);
    if (E < 1 || E != mmp_tx_text_dim(m, MMP_TX_OUT_EMBED))
        return mmp_errf(err, errlen, "%s: the image and text projections differ in width (%d, %d)", m->path, E,
                        mmp_tx_text_dim(m, MMP_TX_OUT_EMBED));
    if (mmp_tx_make_trainable(m, &ft->P, err, errlen)) return -1;
    ft->m = m;
    ft->lock = lock;
    ft->E = E;
    ft->scale_ndim = ls->ndim;
    mmp_param_init(&ft->scale, "logit_scale", 0, NULL, 0);
    ft->scale.w[0] = m->logit_scale;
    mmp_param *v = mmp_tx_params_views(&ft->P, err, errlen);
    if (!v) {
        mmp_clipft_free(ft);
        return -1;
    }
    for (int i = 0; i < ft->P.n; i++) {
        int img = image_param(m, v[i].name);
        if ((img && lock == MMP_CLIPFT_LOCK_IMAGE) || (!img && lock == MMP_CLIPFT_LOCK_TEXT)) continue;
        v[i].decay = !mmp_clipft_no_decay(v[i].name, v[i].ndim);
        push(ft, &v[i]);
    }
    free(v); /* no optimizer state yet: the views' w and g are P's */
    push(ft, &ft->scale);
    ft->tr[ft->ntr - 1].s1 = ft->tr[ft->ntr - 1].s2 = NULL;
    return 0;
}

void mmp_clipft_add_param(mmp_clipft *ft, const mmp_tx_param *p) {
    mmp_param v;
    memset(&v, 0, sizeof v);
    snprintf(v.name, sizeof v.name, "%s", p->name);
    v.ndim = p->ndim;
    for (int d = 0; d < p->ndim && d < MMP_PARAM_MAXDIM; d++) v.shape[d] = p->shape[d];
    v.n = p->n, v.w = p->w, v.g = p->g;
    v.decay = !mmp_clipft_no_decay(v.name, v.ndim);
    push(ft, &v);
}

#define PEFT_PFX "base_model.model."
static int is_adapter(const char *name) { return !strncmp(name, PEFT_PFX, strlen(PEFT_PFX)); }

int mmp_clipft_lora(mmp_clipft *ft, const mmp_tx_lora_opts *o, char *err, size_t errlen) {
    mmp_tx_lora_opts oo = *o;
    oo.towers = ft->lock == MMP_CLIPFT_LOCK_IMAGE ? 2 : ft->lock == MMP_CLIPFT_LOCK_TEXT ? 1 : 0;
    ft->lora = mmp_tx_lora_add(ft->m, &oo, &ft->P, err, errlen);
    if (!ft->lora) return -1;
    /* the trainable parameters: the adapters (named without base_model.model.), logit_scale */
    for (int i = 0; i < ft->ntr; i++) free(ft->tr[i].s1), free(ft->tr[i].s2);
    ft->ntr = 0;
    for (int i = 0; i < ft->P.n; i++) {
        mmp_tx_param *p = &ft->P.p[i];
        if (!is_adapter(p->name)) { /* frozen: no gradient buffer */
            free(p->g);
            p->g = NULL;
            continue;
        }
        mmp_param v;
        memset(&v, 0, sizeof v);
        snprintf(v.name, sizeof v.name, "%s", p->name + strlen(PEFT_PFX));
        v.ndim = p->ndim;
        for (int d = 0; d < p->ndim && d < MMP_PARAM_MAXDIM; d++) v.shape[d] = p->shape[d];
        v.n = p->n, v.w = p->w, v.g = p->g;
        v.decay = !mmp_clipft_no_decay(v.name, v.ndim);
        push(ft, &v);
    }
    push(ft, &ft->scale);
    ft->tr[ft->ntr - 1].s1 = ft->tr[ft->ntr - 1].s2 = NULL;
    const mmp_tx_encoder *enc[2] = {&ft->m->vision->enc, &ft->m->text->enc};
    const mmp_tx_block_grad *pb[2] = {ft->P.vision->block, ft->P.text->block};
    mmp_tx_block_grad *gb[2];
    for (int t = 0; t < 2; t++) {
        const int L = enc[t]->layers;
        gb[t] = mmp_xcalloc((size_t)L + 1, sizeof *gb[t]);
        ft->lfirst[t] = L;
        for (int l = L - 1; l >= 0; l--) {
            gb[t][l].lora = pb[t][l].lora;
            if (pb[t][l].lora) ft->lfirst[t] = l;
        }
    }
    ft->lgv.block = gb[0], ft->lgt.block = gb[1];
    return 0;
}

void mmp_clipft_set_step(mmp_clipft *ft, uint64_t step_seed) {
    if (ft->lora) mmp_tx_lora_set_step(ft->lora, step_seed);
}

int mmp_clipft_lora_read(mmp_clipft *ft, const mmp_safetensors *st, char *err, size_t errlen) {
    for (int i = 0; i < ft->ntr; i++) {
        mmp_param *p = &ft->tr[i];
        if (p->w == ft->scale.w) {
            const mmp_tensor *t = mmp_st_get(st, "logit_scale");
            if (!t || mmp_numel(t->ndim, t->shape) != 1) return mmp_errf(err, errlen, "%s: no scalar logit_scale", st->path);
            mmp_tensor_to_f32(t, ft->scale.w);
            ft->m->logit_scale = ft->scale.w[0];
            continue;
        }
        if (mmp_st_read_f32(st, p->name, p->ndim, p->shape, p->w, err, errlen)) return -1;
    }
    return 0;
}

void mmp_clipft_free(mmp_clipft *ft) {
    for (int i = 0; i < ft->ntr; i++) free(ft->tr[i].s1), free(ft->tr[i].s2);
    free(ft->tr);
    free(ft->scale.w);
    free(ft->scale.g);
    free(ft->lgv.block), free(ft->lgt.block);
    mmp_tx_params_free(&ft->P);
    mmp_tx_lora_set_free(ft->lora); /* after P, before the model */
    free(ft->za), free(ft->zb), free(ft->dza), free(ft->dzb);
    memset(ft, 0, sizeof *ft);
}

static void grow(mmp_clipft *ft, int n) {
    if (n <= ft->cap) return;
    size_t s = sizeof(float) * (size_t)n * (size_t)ft->E;
    ft->za = mmp_xrealloc(ft->za, s);
    ft->zb = mmp_xrealloc(ft->zb, s);
    ft->dza = mmp_xrealloc(ft->dza, s);
    ft->dzb = mmp_xrealloc(ft->dzb, s);
    ft->cap = n;
}

double mmp_clipft_batch(mmp_clipft *ft, const float *imgs, int n, int H, int W, const int32_t *ids, const int *lens,
                        int grad, float *logits, float *dimgs, char *err, size_t errlen) {
    mmp_tx_model *m = ft->m;
    const int E = ft->E;
    grow(ft, n);
    mmp_tx_saved *si = NULL, *st = NULL;
    int train_img = grad && ft->lock != MMP_CLIPFT_LOCK_IMAGE, train_txt = grad && ft->lock != MMP_CLIPFT_LOCK_TEXT;
    if (ft->lora) { /* a tower without adapters runs its inference forward; the blocks below the lowest adapted one too */
        train_img = train_img && ft->lfirst[0] < m->vision->enc.layers;
        train_txt = train_txt && ft->lfirst[1] < m->text->enc.layers;
    }
    if (train_img) {
        si = mmp_tx_image_fwd_train_part(m, imgs, n, H, W, MMP_TX_OUT_EMBED, ft->lora ? ft->lfirst[0] : 0, ft->za, err, errlen);
        if (!si) return NAN;
    } else if (mmp_tx_image_embed(m, imgs, n, H, W, MMP_TX_OUT_EMBED, ft->za, NULL, err, errlen))
        return NAN;
    if (train_txt) {
        st = mmp_tx_text_fwd_train_part(m, ids, lens, n, MMP_TX_OUT_EMBED, ft->lora ? ft->lfirst[1] : 0, ft->zb, err, errlen);
        if (!st) {
            mmp_tx_saved_free(si);
            return NAN;
        }
    } else if (mmp_tx_text_embed(m, ids, lens, n, MMP_TX_OUT_EMBED, ft->zb, NULL, err, errlen)) {
        mmp_tx_saved_free(si);
        return NAN;
    }
    float ds = 0;
    double loss = mmp_clip_loss(ft->za, ft->zb, n, E, ft->scale.w[0], grad ? ft->dza : NULL, grad ? ft->dzb : NULL,
                                grad ? &ds : NULL);
    if (logits) {
        size_t ne = (size_t)n * (size_t)E;
        float *a = mmp_xmalloc(sizeof(float) * ne), *b = mmp_xmalloc(sizeof(float) * ne);
        memcpy(a, ft->za, sizeof(float) * ne);
        memcpy(b, ft->zb, sizeof(float) * ne);
        mmp_l2_normalize_rows(a, n, E);
        mmp_l2_normalize_rows(b, n, E);
        mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, n, n, E, expf(ft->scale.w[0]), a, E, b, E, 0.0f, logits, n);
        free(a);
        free(b);
    }
    if (grad) {
        for (int i = 0; i < ft->ntr; i++) memset(ft->tr[i].g, 0, sizeof(float) * (ft->tr[i].n ? ft->tr[i].n : 1));
        ft->scale.g[0] = ds;
        if (dimgs) memset(dimgs, 0, sizeof(float) * (size_t)n * 3 * (size_t)H * (size_t)W);
        if (train_img) mmp_tx_image_bwd(m, si, ft->dza, ft->lora ? &ft->lgv : ft->P.vision, dimgs);
        if (train_txt) mmp_tx_text_bwd(m, st, ft->dzb, ft->lora ? &ft->lgt : ft->P.text, NULL);
    }
    mmp_tx_saved_free(si);
    mmp_tx_saved_free(st);
    return loss;
}

void mmp_clipft_batch_bytes(const mmp_clipft *ft, int n, int H, int W, int L, int64_t *saved, int64_t *work) {
    const mmp_tx_model *m = ft->m;
    int train_img = ft->lock != MMP_CLIPFT_LOCK_IMAGE, train_txt = ft->lock != MMP_CLIPFT_LOCK_TEXT;
    if (ft->lora) { /* as mmp_clipft_batch */
        train_img = train_img && ft->lfirst[0] < m->vision->enc.layers;
        train_txt = train_txt && ft->lfirst[1] < m->text->enc.layers;
    }
    int64_t si = 0, wi = 0, st = 0, wt = 0, z = (int64_t)n * ft->E * (int64_t)sizeof(float);
    if (train_img) mmp_tx_image_train_size(m, n, H, W, MMP_TX_OUT_EMBED, ft->lora ? ft->lfirst[0] : 0, &si, &wi);
    if (train_txt) mmp_tx_text_train_size(m, n, L, ft->lora ? ft->lfirst[1] : 0, &st, &wt);
    *saved = si + st + 2 * z; /* + za, zb */
    *work = (wi > wt ? wi : wt) + 2 * z; /* one tower's backward after the other; + dza, dzb */
}

void mmp_clipft_update(mmp_clipft *ft, const mmp_optim *o, double clip, int64_t step, double lr) {
    if (clip > 0) mmp_clip_grad_norm(ft->tr, ft->ntr, clip);
    mmp_optim_step(o, ft->tr, ft->ntr, step, lr);
    float *s = ft->scale.w;
    if (*s < 0) *s = 0;
    if (*s > (float)LOGIT_SCALE_MAX) *s = (float)LOGIT_SCALE_MAX;
    ft->m->logit_scale = *s;
}

int mmp_clipft_embed(mmp_clipft *ft, const float *imgs, int n, int H, int W, const int32_t *ids, const int *lens,
                     float *I, float *T, char *err, size_t errlen) {
    if (mmp_tx_image_embed(ft->m, imgs, n, H, W, MMP_TX_OUT_EMBED, I, NULL, err, errlen)) return -1;
    if (mmp_tx_text_embed(ft->m, ids, lens, n, MMP_TX_OUT_EMBED, T, NULL, err, errlen)) return -1;
    mmp_l2_normalize_rows(I, n, ft->E);
    mmp_l2_normalize_rows(T, n, ft->E);
    return 0;
}

int mmp_clipft_save_weights(const mmp_clipft *ft, const char *path, const mmp_meta *meta, char *err, size_t errlen) {
    const mmp_safetensors *src = ft->m->st;
    mmp_st_writer w;
    mmp_st_writer_init(&w);
    mmp_tx_params *P = (mmp_tx_params *)&ft->P;
    for (int i = 0; i < src->n; i++) {
        const mmp_st_entry *e = &src->entries[i];
        const mmp_tx_param *p = mmp_tx_params_find(P, e->name);
        if (p) {
            if (p->transposed) { /* w is [cols][rows]: the file's [rows][cols] back */
                float *t = mmp_xmalloc(sizeof(float) * (p->n ? p->n : 1));
                for (int r = 0; r < p->rows; r++)
                    for (int c = 0; c < p->cols; c++) t[(size_t)r * p->cols + c] = p->w[(size_t)c * p->rows + r];
                mmp_st_writer_add_f32(&w, e->name, t, e->t.ndim, e->t.shape);
                free(t);
            } else
                mmp_st_writer_add_f32(&w, e->name, p->w, e->t.ndim, e->t.shape);
        } else if (!strcmp(e->name, "logit_scale"))
            mmp_st_writer_add_f32(&w, e->name, ft->scale.w, e->t.ndim, e->t.shape);
        else
            mmp_st_writer_add(&w, e->name, &e->t);
    }
    for (int i = 0; i < ft->P.n && ft->lora; i++) /* the adapters under PEFT's module names */
        if (is_adapter(ft->P.p[i].name))
            mmp_st_writer_add_f32(&w, ft->P.p[i].name + strlen(PEFT_PFX), ft->P.p[i].w, ft->P.p[i].ndim, ft->P.p[i].shape);
    mmp_meta_set(&w.meta, "format", "pt");
    if (meta) for (int i = 0; i < meta->n; i++) mmp_meta_set(&w.meta, meta->keys[i], meta->vals[i]);
    int rc = mmp_st_writer_write(&w, path, err, errlen);
    mmp_st_writer_free(&w);
    return rc;
}

int mmp_clipft_is_checkpoint(const char *path) {
    char *op = mmp_train_optim_path(path), e[256];
    mmp_safetensors st;
    int r = 0;
    if (mmp_st_open(&st, op, e, sizeof e) == 0) {
        const char *f = mmp_meta_get(&st.meta, "format");
        r = f && !strcmp(f, "mmpipe-clip-optim");
        mmp_st_close(&st);
    }
    if (!r && mmp_st_open(&st, path, e, sizeof e) == 0) { /* the weights name their head */
        const char *h = mmp_meta_get(&st.meta, "head"), *f = mmp_meta_get(&st.meta, "format");
        r = h && f && !strcmp(h, "clip") && !strcmp(f, "pt");
        mmp_st_close(&st);
    }
    free(op);
    return r;
}
