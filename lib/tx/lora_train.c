/* tx/lora_train.c: trainable LoRA adapters on the engine's encoders
 * (tx/lora_train.h): the adaptable linears found by their tensor names,
 * PEFT 0.4's target matching and initialization, the parameters, saving. */
#include "tx/lora_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "mmp.h"
#include "rng.h"
#include "tx/gpt2.h"
#include "tx/lora.h"
#include "tx/peft.h"

void mmp_tx_lora_opts_default(mmp_tx_lora_opts *o) {
    memset(o, 0, sizeof *o);
    o->r = 8;
    o->alpha = 8;
}

const char *mmp_tx_lora_default_targets(mmp_txm_family f) {
    switch (f) {
    case MMP_TXM_VIT_HF: return "query,value";
    case MMP_TXM_CLIP_HF: return "q_proj,v_proj";
    case MMP_TXM_VIT_TIMM: return "qkv";
    case MMP_TXM_CLIP_OPENCLIP: return NULL;
    }
    return NULL;
}

/* A module of the model: an adaptable linear of an encoder block (why ==
 * NULL) or any other (a parent of some tensor, or a linear mmpipe refuses:
 * why says so). */
typedef struct {
    char *mod;
    int tower, layer, slot, OC, IC;
    const char *why;
    int sel;
} cand;

typedef struct {
    cand *c;
    int n, cap;
} cands;

static cand *cand_add(cands *L, const char *mod, int tower, int layer, int slot, int OC, int IC, const char *why) {
    for (int i = 0; i < L->n; i++)
        if (!strcmp(L->c[i].mod, mod)) return NULL; /* first one wins (a linear before its parents) */
    if (L->n == L->cap) L->c = mmp_xrealloc(L->c, (size_t)(L->cap = L->cap ? 2 * L->cap : 64) * sizeof *L->c);
    cand *c = &L->c[L->n++];
    *c = (cand){mmp_xstrdup(mod), tower, layer, slot, OC, IC, why, 0};
    return c;
}

/* every dotted prefix of a tensor name is a module */
static void parents_add(cands *L, const char *tensor) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", tensor);
    for (char *d = strrchr(buf, '.'); d; d = strrchr(buf, '.')) {
        *d = 0;
        cand_add(L, buf, -1, -1, -1, 0, 0, "not a linear of the encoder blocks");
    }
}

static void cands_free(cands *L) {
    for (int i = 0; i < L->n; i++) free(L->c[i].mod);
    free(L->c);
}

typedef struct {
    char mod[256];
    int tower, layer, slot;
    mmp_tx_lora lo;
    float *A, *B; /* owned: [r, IC], [OC, r] */
} tsite;

struct mmp_tx_lora_set {
    int r;
    double alpha, dropout;
    uint64_t seed;
    char **targets;
    int ntargets;
    int restricted; /* a target matched a linear of the other tower (towers): skipped */
    int fan_in_fan_out; /* GPT-2's Conv1D base (tx/gpt2.h) */
    char *base_path, *base_name;
    char base_sha[65];
    tsite *s;
    int ns;
    mmp_tx_encoder *enc[2];
    mmp_tx_block_lora *tab[2];
    mmp_tx_block_lora_grad *gtab[2];
};

static void targets_free(char **t, int n) {
    for (int i = 0; i < n; i++) free(t[i]);
    free(t);
}

/* "a, b,c" -> ["a", "b", "c"]; -1 on an empty entry */
static int targets_parse(const char *s, char ***out, int *n, char *err, size_t errlen) {
    *out = NULL, *n = 0;
    const char *p = s;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && (*p == ' ' || *p == '\t')) p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
        if (!len) {
            targets_free(*out, *n);
            *out = NULL, *n = 0;
            return mmp_errf(err, errlen, "LoRA targets \"%s\": an empty name (a comma-separated list of module names)", s);
        }
        *out = mmp_xrealloc(*out, (size_t)(*n + 1) * sizeof **out);
        (*out)[(*n)++] = mmp_xasprintf("%.*s", (int)len, p);
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* PEFT 0.4's _check_target_module_exists for a list: key.endswith(target) */
static int ends(const char *name, const char *t) {
    size_t n = strlen(name), m = strlen(t);
    return m <= n && !strcmp(name + n - m, t);
}

static void padd(mmp_tx_params *P, const char *name, float *w, int rows, int cols) {
    if (P->n == P->cap) {
        P->cap = P->cap ? 2 * P->cap : 64;
        P->p = mmp_xrealloc(P->p, sizeof *P->p * (size_t)P->cap);
    }
    size_t n = (size_t)rows * cols;
    P->p[P->n++] = (mmp_tx_param){mmp_xstrdup(name), w, mmp_xcalloc(n ? n : 1, sizeof(float)), n, 0, 0, 0, 2,
                                  {rows, cols}};
}

void mmp_tx_lora_set_free(mmp_tx_lora_set *s) {
    if (!s) return;
    for (int t = 0; t < 2; t++) {
        if (s->enc[t] && s->tab[t])
            for (int l = 0; l < s->enc[t]->layers; l++)
                if (s->enc[t]->block[l].lora == &s->tab[t][l]) s->enc[t]->block[l].lora = NULL;
        free(s->tab[t]);
        free(s->gtab[t]);
    }
    for (int i = 0; i < s->ns; i++) free(s->s[i].A), free(s->s[i].B);
    free(s->s);
    targets_free(s->targets, s->ntargets);
    free(s->base_path);
    free(s->base_name);
    free(s);
}

/* Selects the candidates, builds the set, the parameters and the gradients.
 * grads[t]: P's block gradients of tower t ([layers]). */
static mmp_tx_lora_set *build(cands *L, const char *what, mmp_tx_encoder *enc[2], mmp_tx_block_grad *grads[2],
                              const mmp_tx_lora_opts *o, mmp_tx_params *P, const char *base_path, const char *base_name,
                              char *err, size_t errlen) {
    if (o->r < 1) {
        mmp_errf(err, errlen, "LoRA rank %d: must be at least 1", o->r);
        return NULL;
    }
    if (!(o->dropout >= 0 && o->dropout < 1)) {
        mmp_errf(err, errlen, "LoRA dropout %g: must be in [0, 1)", o->dropout);
        return NULL;
    }
    if (o->towers < 0 || o->towers > 3) {
        mmp_errf(err, errlen, "LoRA towers %d: 0 (both), 1 (image) or 2 (text)", o->towers);
        return NULL;
    }
    if (!(o->alpha == o->alpha) || isinf(o->alpha)) {
        mmp_errf(err, errlen, "LoRA alpha %g: must be a finite number", o->alpha);
        return NULL;
    }
    for (int t = 0; t < 2; t++)
        for (int l = 0; enc[t] && l < enc[t]->layers; l++)
            if (enc[t]->block[l].lora) {
                mmp_errf(err, errlen, "%s: the model has LoRA adapters already (block %d)", what, l);
                return NULL;
            }
    mmp_tx_lora_set *s = mmp_xcalloc(1, sizeof *s);
    s->r = o->r, s->alpha = o->alpha, s->dropout = o->dropout, s->seed = o->seed;
    if (targets_parse(o->targets, &s->targets, &s->ntargets, err, errlen)) goto fail;
    /* PEFT's matching over every module; each target must match something, and only adaptable linears */
    const char *example = NULL;
    for (int i = 0; i < L->n; i++)
        if (!L->c[i].why && !example) example = L->c[i].mod;
    for (int k = 0; k < s->ntargets; k++) {
        int hit = 0;
        for (int i = 0; i < L->n; i++) {
            cand *c = &L->c[i];
            if (!ends(c->mod, s->targets[k])) continue;
            hit = 1;
            if (o->towers && c->tower >= 0 && !(o->towers & (1 << c->tower))) { /* the other tower's */
                if (!c->why) s->restricted = 1;
                continue;
            }
            if (c->why) {
                mmp_errf(err, errlen, "%s: LoRA target \"%s\" selects %s, which mmpipe does not adapt (%s)", what,
                         s->targets[k], c->mod, c->why);
                goto fail;
            }
            c->sel = 1;
        }
        if (!hit) {
            mmp_errf(err, errlen,
                     "%s: LoRA target \"%s\" matches no module (a module is adapted when its name ends with a target, "
                     "e.g. %s)",
                     what, s->targets[k], example ? example : "none");
            goto fail;
        }
    }
    for (int i = 0; i < L->n; i++) s->ns += L->c[i].sel;
    if (!s->ns) {
        mmp_errf(err, errlen, "%s: LoRA targets \"%s\" select no linear of the %s tower", what, o->targets,
                 o->towers == 1 ? "image" : "text");
        goto fail;
    }
    s->s = mmp_xcalloc((size_t)s->ns + 1, sizeof *s->s);
    for (int t = 0; t < 2; t++)
        if (enc[t]) {
            s->enc[t] = enc[t];
            s->tab[t] = mmp_xcalloc((size_t)enc[t]->layers + 1, sizeof *s->tab[t]);
            s->gtab[t] = mmp_xcalloc((size_t)enc[t]->layers + 1, sizeof *s->gtab[t]);
        }
    mmp_rng g;
    mmp_rng_seed(&g, mmp_rng_mix(o->seed ^ 0x13198A2E03707344ULL));
    const float scale = (float)(o->alpha / o->r);
    int k = 0;
    for (int i = 0; i < L->n; i++) {
        const cand *c = &L->c[i];
        if (!c->sel) continue;
        tsite *x = &s->s[k++];
        snprintf(x->mod, sizeof x->mod, "%s", c->mod);
        x->tower = c->tower, x->layer = c->layer, x->slot = c->slot;
        x->A = mmp_xmalloc((size_t)o->r * c->IC * sizeof *x->A);
        x->B = mmp_xcalloc((size_t)c->OC * o->r, sizeof *x->B);
        /* kaiming_uniform_(a = sqrt(5)) on [r, IC]: gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / fan_in) = 1/sqrt(IC) */
        const double bound = 1.0 / sqrt((double)c->IC);
        for (size_t j = 0; j < (size_t)o->r * c->IC; j++)
            x->A[j] = (float)(bound * (2.0 * mmp_rng_uniform53(&g) - 1.0));
        x->lo = (mmp_tx_lora){.r = o->r, .IC = c->IC, .OC = c->OC, .scale = scale, .A = x->A, .B = x->B,
                              .dropout = (float)o->dropout};
        mmp_tx_block_lora *bl = &s->tab[c->tower][c->layer];
        const mmp_tx_lora **slots[MMP_TX_LORA_NSLOT] = {&bl->q, &bl->k, &bl->v, &bl->o, &bl->fc1, &bl->fc2, &bl->qkv};
        *slots[c->slot] = &x->lo;
        mmp_tx_block_lora_grad *gl = &s->gtab[c->tower][c->layer];
        mmp_tx_lora_grad *gs[MMP_TX_LORA_NSLOT] = {&gl->q, &gl->k, &gl->v, &gl->o, &gl->fc1, &gl->fc2, &gl->qkv};
        char nm[320];
        snprintf(nm, sizeof nm, "base_model.model.%s.lora_A.weight", c->mod);
        padd(P, nm, x->A, o->r, c->IC);
        gs[c->slot]->A = P->p[P->n - 1].g;
        snprintf(nm, sizeof nm, "base_model.model.%s.lora_B.weight", c->mod);
        padd(P, nm, x->B, c->OC, o->r);
        gs[c->slot]->B = P->p[P->n - 1].g;
    }
    for (int t = 0; t < 2; t++)
        for (int l = 0; enc[t] && l < enc[t]->layers; l++) {
            const mmp_tx_block_lora *bl = &s->tab[t][l];
            if (!(bl->q || bl->k || bl->v || bl->o || bl->fc1 || bl->fc2 || bl->qkv)) continue;
            enc[t]->block[l].lora = bl;
            grads[t][l].lora = &s->gtab[t][l];
        }
    s->base_path = mmp_xstrdup(base_path);
    s->base_name = mmp_xstrdup(base_name);
    mmp_tx_lora_set_step(s, 0);
    return s;
fail:
    mmp_err_oneline(err, errlen);
    mmp_tx_lora_set_free(s);
    return NULL;
}

/* the tensor name of the model's weight at w (a pointer into one of its tensors), NULL if none */
static const mmp_tx_ref *ref_of(const mmp_tx_model *m, const float *w) {
    for (int k = 0; k < m->nrefs; k++)
        if (w >= m->refs[k].data && w < m->refs[k].data + m->refs[k].n) return &m->refs[k];
    return NULL;
}

static const char *WHY_MHA =
    "open_clip's attention is torch's nn.MultiheadAttention: q|k|v is its in_proj_weight, not an nn.Linear, and "
    "its forward reads out_proj's weight directly, so PEFT's adapter there is never applied; adapt mlp.c_fc, "
    "mlp.c_proj";

/* the blocks' linears of one tower */
static void tower_cands(cands *L, const mmp_tx_model *m, const mmp_tx_encoder *e, int tower) {
    const int C = e->C, I = e->inter;
    char mod[300];
    for (int l = 0; l < e->layers; l++) {
        const mmp_tx_block *b = &e->block[l];
        const float *w[6] = {b->q_w, b->k_w, b->v_w, b->o_w, b->fc1_w, b->fc2_w};
        const int oc[6] = {C, C, C, C, I, C}, ic[6] = {C, C, C, C, C, I};
        for (int s = 0; s < 6; s++) {
            const mmp_tx_ref *r = ref_of(m, w[s]);
            if (!r) continue;
            size_t len = strlen(r->name);
            const int fused = r->n >= (size_t)3 * C * C && (s == 0 || s == 1 || s == 2) && ref_of(m, b->k_w) == r;
            if (fused && s > 0) continue;
            if (len > 7 && !strcmp(r->name + len - 7, ".weight")) {
                snprintf(mod, sizeof mod, "%.*s", (int)(len - 7), r->name);
                const int mha = m->family == MMP_TXM_CLIP_OPENCLIP && s == 3;
                cand_add(L, mod, tower, l, fused ? MMP_TX_LORA_QKV : s, fused ? 3 * C : oc[s], ic[s], mha ? WHY_MHA : NULL);
            } else {
                /* open_clip's attn.in_proj_weight: the module is attn */
                const char *d = strrchr(r->name, '.');
                snprintf(mod, sizeof mod, "%.*s", d ? (int)(d - r->name) : 0, r->name);
                cand_add(L, mod, tower, l, -1, 0, 0, WHY_MHA);
            }
        }
    }
}

mmp_tx_lora_set *mmp_tx_lora_add(mmp_tx_model *m, const mmp_tx_lora_opts *o, mmp_tx_params *P, char *err,
                                 size_t errlen) {
    mmp_tx_lora_opts oo = *o;
    if (!oo.targets && !(oo.targets = mmp_tx_lora_default_targets(m->family))) {
        mmp_errf(err, errlen,
                 "%s: an open_clip model has no default LoRA targets (its attention's q|k|v is no nn.Linear): name "
                 "them, e.g. c_fc,c_proj",
                 m->path);
        return NULL;
    }
    cands L = {0};
    if (m->vision) tower_cands(&L, m, &m->vision->enc, 0);
    if (m->text) tower_cands(&L, m, &m->text->enc, 1);
    for (int k = 0; k < m->nrefs; k++) parents_add(&L, m->refs[k].name);
    /* linears outside the blocks (heads, poolers, projections) are parents of their .weight: refused */
    mmp_tx_encoder *enc[2] = {m->vision ? &m->vision->enc : NULL, m->text ? &m->text->enc : NULL};
    if (m->vision && !P->vision) {
        P->vision = mmp_xcalloc(1, sizeof *P->vision);
        P->vision->block = mmp_xcalloc((size_t)m->vision->enc.layers + 1, sizeof *P->vision->block);
    }
    if (m->text && !P->text) {
        P->text = mmp_xcalloc(1, sizeof *P->text);
        P->text->block = mmp_xcalloc((size_t)m->text->enc.layers + 1, sizeof *P->text->block);
    }
    mmp_tx_block_grad *grads[2] = {P->vision ? P->vision->block : NULL, P->text ? P->text->block : NULL};
    /* base_model_name_or_path: the model's folder (or file) */
    char *dir = mmp_xstrdup(m->path);
    char *sl = strrchr(dir, '/');
    if (sl && (!strcmp(sl + 1, "model.safetensors") || !strcmp(sl + 1, "open_clip_model.safetensors"))) *sl = 0;
    mmp_tx_lora_set *s = build(&L, m->path, enc, grads, &oo, P, m->path, dir, err, errlen);
    free(dir);
    cands_free(&L);
    return s;
}

mmp_tx_lora_set *mmp_bert_lora_add(mmp_bert *b, const mmp_tx_lora_opts *o, mmp_tx_params *P, char *err,
                                   size_t errlen) {
    mmp_tx_lora_opts oo = *o;
    if (!oo.targets) oo.targets = MMP_BERT_LORA_DEFAULT_TARGETS;
    mmp_tx_encoder *e = b->tx;
    const int H = b->cfg.hidden, I = b->cfg.inter;
    cands L = {0};
    static const struct {
        const char *fmt;
        int slot;
    } lin[] = {{"encoder.layer.%d.attention.self.query", MMP_TX_LORA_Q},
               {"encoder.layer.%d.attention.self.key", MMP_TX_LORA_K},
               {"encoder.layer.%d.attention.self.value", MMP_TX_LORA_V},
               {"encoder.layer.%d.attention.output.dense", MMP_TX_LORA_O},
               {"encoder.layer.%d.intermediate.dense", MMP_TX_LORA_FC1},
               {"encoder.layer.%d.output.dense", MMP_TX_LORA_FC2}};
    char nm[256];
    for (int l = 0; l < b->cfg.layers; l++)
        for (size_t k = 0; k < sizeof lin / sizeof *lin; k++) {
            snprintf(nm, sizeof nm, lin[k].fmt, l);
            const int s = lin[k].slot;
            cand_add(&L, nm, 0, l, s, s == MMP_TX_LORA_FC1 ? I : H, s == MMP_TX_LORA_FC2 ? I : H, NULL);
            char w[300];
            snprintf(w, sizeof w, "%s.weight", nm);
            parents_add(&L, w);
        }
    static const char *others[] = {"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                                   "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight"};
    for (size_t k = 0; k < sizeof others / sizeof *others; k++) parents_add(&L, others[k]);
    for (int l = 0; l < b->cfg.layers; l++) {
        snprintf(nm, sizeof nm, "encoder.layer.%d.attention.output.LayerNorm.weight", l);
        parents_add(&L, nm);
        snprintf(nm, sizeof nm, "encoder.layer.%d.output.LayerNorm.weight", l);
        parents_add(&L, nm);
    }
    if (!P->bert) {
        P->bert = mmp_xcalloc(1, sizeof *P->bert);
        P->bert->block = mmp_xcalloc((size_t)b->cfg.layers + 1, sizeof *P->bert->block);
    }
    mmp_tx_encoder *enc[2] = {e, NULL};
    mmp_tx_block_grad *grads[2] = {P->bert->block, NULL};
    const char *path = b->path ? b->path : "bert";
    char *dir = mmp_xstrdup(path);
    char *sl = strrchr(dir, '/');
    if (sl && !strcmp(sl + 1, "model.safetensors")) *sl = 0;
    mmp_tx_lora_set *s = build(&L, path, enc, grads, &oo, P, path, dir, err, errlen);
    free(dir);
    cands_free(&L);
    return s;
}

void mmp_tx_lora_set_step(mmp_tx_lora_set *s, uint64_t step) {
    for (int t = 0; t < 2; t++)
        if (s->enc[t])
            s->enc[t]->lora_seed = mmp_rng_mix(mmp_rng_mix(s->seed ^ 0xA4093822299F31D0ULL) ^ mmp_rng_mix(step)) + (uint64_t)t;
}

int mmp_tx_lora_count(const mmp_tx_lora_set *s) { return s->ns; }
const char *mmp_tx_lora_module(const mmp_tx_lora_set *s, int i) { return i >= 0 && i < s->ns ? s->s[i].mod : NULL; }

const mmp_tx_lora *mmp_tx_lora_site(const mmp_tx_lora_set *s, int i, int *layer) {
    if (i < 0 || i >= s->ns) return NULL;
    if (layer) *layer = s->s[i].layer;
    return &s->s[i].lo;
}

int mmp_tx_lora_save(mmp_tx_lora_set *s, const char *dir, char *err, size_t errlen) {
    if (!s->base_sha[0] && mmp_sha256_file(s->base_path, s->base_sha) < 0)
        return mmp_errf(err, errlen, "%s: cannot read for hashing", s->base_path);
    if (s->restricted || s->fan_in_fan_out) { /* restricted: the list would select the other tower's linears too: a
                                                 * regular expression naming the adapted ones */
        size_t cap = 64, len = 0;
        char *re = mmp_xmalloc(cap);
        re[len++] = '(';
        mmp_st_writer w;
        mmp_st_writer_init(&w);
        for (int i = 0; i < s->ns; i++) {
            const tsite *x = &s->s[i];
            size_t need = len + 2 * strlen(x->mod) + 4;
            if (need > cap) re = mmp_xrealloc(re, cap = need * 2);
            if (i) re[len++] = '|';
            for (const char *c = x->mod; *c; c++) {
                if (strchr(".[]()*+?^$|\\{}", *c)) re[len++] = '\\';
                re[len++] = *c;
            }
            char nm[320];
            snprintf(nm, sizeof nm, "base_model.model.%s.lora_A.weight", x->mod);
            mmp_st_writer_add_f32(&w, nm, x->A, 2, (int64_t[]){x->lo.r, x->lo.IC});
            snprintf(nm, sizeof nm, "base_model.model.%s.lora_B.weight", x->mod);
            mmp_st_writer_add_f32(&w, nm, x->B, 2, (int64_t[]){x->lo.OC, x->lo.r});
        }
        re[len++] = ')';
        re[len] = 0;
        const char *tg[1] = {re};
        mmp_peft_folder f = {.base_name = s->base_name, .base_sha = s->base_sha, .r = s->r, .alpha = s->alpha,
                             .dropout = s->dropout, .targets = tg, .ntargets = 1, .targets_regex = 1,
                             .fan_in_fan_out = s->fan_in_fan_out};
        if (!s->restricted) f.targets = (const char *const *)s->targets, f.ntargets = s->ntargets, f.targets_regex = 0;
        int rc = mmp_peft_write_folder(dir, &f, &w, err, errlen);
        mmp_st_writer_free(&w);
        free(re);
        return rc;
    }
    mmp_lora *a = mmp_lora_new(s->base_path, s->base_sha, s->base_name, s->r, s->alpha, s->dropout,
                               (const char *const *)s->targets, s->ntargets);
    for (int i = 0; i < s->ns; i++) {
        const tsite *x = &s->s[i];
        mmp_lora_add_module(a, x->mod, x->lo.OC, x->lo.IC, x->A, x->B);
    }
    int rc = mmp_lora_write(a, dir, err, errlen);
    mmp_lora_free(a);
    return rc;
}

mmp_tx_lora_set *mmp_gpt2_lora_add(mmp_gpt2 *m, const mmp_tx_lora_opts *o, mmp_tx_params *P, char *err,
                                   size_t errlen) {
    mmp_tx_lora_opts oo = *o;
    if (!oo.targets) oo.targets = MMP_GPT2_LORA_DEFAULT_TARGETS;
    const char *path = mmp_gpt2_path(m);
    if (!path) {
        mmp_errf(err, errlen, "GPT-2: LoRA needs a saved base model (mmp_gpt2_save, then load it): the adapter names its file");
        return NULL;
    }
    const int C = m->cfg.C, I = m->cfg.inter;
    cands L = {0};
    static const struct {
        const char *fmt;
        int slot;
    } lin[] = {{"transformer.h.%d.attn.c_attn", MMP_TX_LORA_QKV},
               {"transformer.h.%d.attn.c_proj", MMP_TX_LORA_O},
               {"transformer.h.%d.mlp.c_fc", MMP_TX_LORA_FC1},
               {"transformer.h.%d.mlp.c_proj", MMP_TX_LORA_FC2}};
    char nm[256];
    for (int l = 0; l < m->cfg.layers; l++)
        for (size_t k = 0; k < sizeof lin / sizeof *lin; k++) {
            snprintf(nm, sizeof nm, lin[k].fmt, l);
            const int s = lin[k].slot;
            const int OC = s == MMP_TX_LORA_QKV ? 3 * C : s == MMP_TX_LORA_FC1 ? I : C;
            cand_add(&L, nm, 0, l, s, OC, s == MMP_TX_LORA_FC2 ? I : C, NULL);
            char w[300];
            snprintf(w, sizeof w, "%s.weight", nm);
            parents_add(&L, w);
        }
    static const char *others[] = {"transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight",
                                   "lm_head.weight"};
    for (size_t k = 0; k < sizeof others / sizeof *others; k++) parents_add(&L, others[k]);
    for (int l = 0; l < m->cfg.layers; l++) {
        snprintf(nm, sizeof nm, "transformer.h.%d.ln_1.weight", l);
        parents_add(&L, nm);
        snprintf(nm, sizeof nm, "transformer.h.%d.ln_2.weight", l);
        parents_add(&L, nm);
    }
    if (!P->gpt2) {
        P->gpt2 = mmp_xcalloc(1, sizeof *P->gpt2);
        P->gpt2->block = mmp_xcalloc((size_t)m->cfg.layers + 1, sizeof *P->gpt2->block);
    }
    mmp_tx_encoder_unpack(&m->enc); /* (adapters are added after the packed GEMMs either way) */
    mmp_tx_encoder *enc[2] = {&m->enc, NULL};
    mmp_tx_block_grad *grads[2] = {P->gpt2->block, NULL};
    char *dir = mmp_xstrdup(path);
    char *sl = strrchr(dir, '/');
    if (sl && !strcmp(sl + 1, "model.safetensors")) *sl = 0;
    mmp_tx_lora_set *s = build(&L, path, enc, grads, &oo, P, path, dir, err, errlen);
    if (s) s->fan_in_fan_out = 1;
    free(dir);
    cands_free(&L);
    return s;
}
