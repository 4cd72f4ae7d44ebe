/* tx/peft.c: PEFT LoRA adapters: reading, checking, attaching to the
 * engine's encoders, merging into the base weights, writing (tx/peft.h). */
#include "tx/peft.h"

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"
#include "mmp.h"
#include "tx/model.h"

/* ---- the adaptable linears of the Hugging Face models, by name ---- */

typedef struct {
    const char *fmt; /* module name with %d for the layer */
    int slot;        /* 0 q, 1 k, 2 v, 3 o, 4 fc1, 5 fc2, 6 the fused q|k|v (tx/lora.h MMP_TX_LORA_*) */
} tmpl;

static const tmpl T_VIT[] = {{"encoder.layer.%d.attention.attention.query", 0},
                             {"encoder.layer.%d.attention.attention.key", 1},
                             {"encoder.layer.%d.attention.attention.value", 2},
                             {"encoder.layer.%d.attention.output.dense", 3},
                             {"encoder.layer.%d.intermediate.dense", 4},
                             {"encoder.layer.%d.output.dense", 5}};
static const tmpl T_BERT[] = {{"encoder.layer.%d.attention.self.query", 0},
                              {"encoder.layer.%d.attention.self.key", 1},
                              {"encoder.layer.%d.attention.self.value", 2},
                              {"encoder.layer.%d.attention.output.dense", 3},
                              {"encoder.layer.%d.intermediate.dense", 4},
                              {"encoder.layer.%d.output.dense", 5}};
static const tmpl T_CLIPV[] = {{"vision_model.encoder.layers.%d.self_attn.q_proj", 0},
                               {"vision_model.encoder.layers.%d.self_attn.k_proj", 1},
                               {"vision_model.encoder.layers.%d.self_attn.v_proj", 2},
                               {"vision_model.encoder.layers.%d.self_attn.out_proj", 3},
                               {"vision_model.encoder.layers.%d.mlp.fc1", 4},
                               {"vision_model.encoder.layers.%d.mlp.fc2", 5}};
static const tmpl T_CLIPT[] = {{"text_model.encoder.layers.%d.self_attn.q_proj", 0},
                               {"text_model.encoder.layers.%d.self_attn.k_proj", 1},
                               {"text_model.encoder.layers.%d.self_attn.v_proj", 2},
                               {"text_model.encoder.layers.%d.self_attn.out_proj", 3},
                               {"text_model.encoder.layers.%d.mlp.fc1", 4},
                               {"text_model.encoder.layers.%d.mlp.fc2", 5}};

/* timm's VisionTransformer: q|k|v is one nn.Linear (one adapter, B [3C, r]);
 * open_clip: only the MLP's linears (nn.MultiheadAttention's in_proj is no
 * module and its out_proj's adapter is never applied by PEFT: tx/lora_train.h) */
static const tmpl T_TIMM[] = {{"blocks.%d.attn.qkv", 6}, {"blocks.%d.attn.proj", 3}, {"blocks.%d.mlp.fc1", 4},
                              {"blocks.%d.mlp.fc2", 5}};
static const tmpl T_OCV[] = {{"visual.transformer.resblocks.%d.mlp.c_fc", 4},
                             {"visual.transformer.resblocks.%d.mlp.c_proj", 5}};
static const tmpl T_OCT[] = {{"transformer.resblocks.%d.mlp.c_fc", 4}, {"transformer.resblocks.%d.mlp.c_proj", 5}};

static const struct {
    const tmpl *t;
    int nt;
    int tower;
    const char *prefix; /* the weights' optional prefix ("vit.", "bert.") */
} FAMILIES[] = {{T_VIT, 6, 0, "vit."}, {T_BERT, 6, 0, "bert."}, {T_CLIPV, 6, 0, ""}, {T_CLIPT, 6, 1, ""},
                {T_TIMM, 4, 0, ""},    {T_OCV, 2, 0, ""},       {T_OCT, 2, 1, ""}};

/* linears of these models that mmpipe does not adapt (a target matching one is refused) */
static const char *const EXTRAS[] = {"pooler.dense", "classifier", "visual_projection", "text_projection", "head",
                                     "patch_embed.proj"};

typedef struct {
    char name[192];  /* the module as PEFT names it in the bare model */
    char wname[272]; /* the base weight's tensor name in the file */
    const char *fprefix;
    int tower, layer, slot, OC, IC;
    int target;
    float *A, *B;
    mmp_tx_lora lo;
} site;

struct mmp_lora {
    char *dir, *base_path;
    char base_sha[65], sha[65];
    int r;
    double alpha, dropout;
    char *base_name;     /* base_model_name_or_path */
    json_t *targets;     /* as in the config */
    char *kprefix;       /* the adapter keys' prefix after base_model.model. ("" or "vit."/"bert.") */
    site *s;
    int ns, nextra;
    char **extra;
    int ntarget;
    char prov[256];
    mmp_tx_block_lora *tab[2]; /* per tower and layer: the blocks' adapters */
    int ntab[2];
};

static void free_sites(mmp_lora *a) {
    for (int i = 0; i < a->ns; i++) free(a->s[i].A), free(a->s[i].B);
    free(a->s);
    free(a->tab[0]), free(a->tab[1]);
    for (int i = 0; i < a->nextra; i++) free(a->extra[i]);
    free(a->extra);
}

void mmp_lora_free(mmp_lora *a) {
    if (!a) return;
    free_sites(a);
    free(a->dir), free(a->base_path), free(a->base_name), free(a->kprefix);
    if (a->targets) json_decref(a->targets);
    free(a);
}

static const mmp_tensor *w2d(const mmp_safetensors *st, const char *name) {
    const mmp_tensor *t = mmp_st_get(st, name);
    return t && t->ndim == 2 ? t : NULL;
}

/* every adaptable linear of the base file */
static void find_sites(mmp_lora *a, const mmp_safetensors *st) {
    int cap = 0;
    char nm[256];
    for (size_t f = 0; f < sizeof FAMILIES / sizeof *FAMILIES; f++) {
        const char *pfx[2] = {"", FAMILIES[f].prefix};
        for (int p = 0; p < 2; p++) {
            if (p == 1 && !pfx[1][0]) break;
            for (int l = 0;; l++) {
                /* a family's layer is there when its query is (ViT and BERT share the other names) */
                char q0[192];
                snprintf(q0, sizeof q0, FAMILIES[f].t[0].fmt, l);
                snprintf(nm, sizeof nm, "%s%s.weight", pfx[p], q0);
                if (!w2d(st, nm)) break;
                int found = 0;
                for (int k = 0; k < FAMILIES[f].nt; k++) {
                    const tmpl *t = &FAMILIES[f].t[k];
                    char mod[192];
                    snprintf(mod, sizeof mod, t->fmt, l);
                    snprintf(nm, sizeof nm, "%s%s.weight", pfx[p], mod);
                    const mmp_tensor *w = w2d(st, nm);
                    if (!w) continue;
                    found = 1;
                    if (a->ns == cap) a->s = mmp_xrealloc(a->s, (size_t)(cap = cap ? 2 * cap : 32) * sizeof *a->s);
                    site *s = &a->s[a->ns++];
                    memset(s, 0, sizeof *s);
                    snprintf(s->name, sizeof s->name, "%s", mod);
                    snprintf(s->wname, sizeof s->wname, "%s", nm);
                    s->fprefix = pfx[p];
                    s->tower = FAMILIES[f].tower, s->layer = l, s->slot = t->slot;
                    s->OC = (int)w->shape[0], s->IC = (int)w->shape[1];
                }
                if (!found) break;
            }
        }
    }
    for (size_t e = 0; e < sizeof EXTRAS / sizeof *EXTRAS; e++) {
        const char *pfx[3] = {"", "vit.", "bert."};
        for (int p = 0; p < 3; p++) {
            snprintf(nm, sizeof nm, "%s%s.weight", pfx[p], EXTRAS[e]);
            if (w2d(st, nm)) {
                a->extra = mmp_xrealloc(a->extra, (size_t)(a->nextra + 1) * sizeof *a->extra);
                a->extra[a->nextra++] = mmp_xstrdup(EXTRAS[e]);
                break;
            }
        }
    }
}

/* Python's re spelling -> POSIX extended: \d \w \s (and inside [...]) */
static char *posix_re(const char *py) {
    size_t n = strlen(py);
    char *o = mmp_xmalloc(16 * n + 8), *q = o;
    int br = 0;
    for (size_t i = 0; i < n; i++) {
        char c = py[i];
        if (c == '\\' && i + 1 < n && strchr("dws", py[i + 1])) {
            const char *cls = py[i + 1] == 'd' ? "0-9" : py[i + 1] == 'w' ? "A-Za-z0-9_" : " \t\n\r\f\v";
            q += sprintf(q, br ? "%s" : "[%s]", cls);
            i++;
            continue;
        }
        if (c == '\\' && i + 1 < n) {
            *q++ = c, *q++ = py[++i];
            continue;
        }
        if (c == '[') br = 1;
        else if (c == ']') br = 0;
        *q++ = c;
    }
    *q = 0;
    return o;
}

/* PEFT 0.4's _check_target_module_exists on the bare name (and the prefixed one) */
static int matches(const json_t *targets, const regex_t *re, const char *name, const char *fprefix) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", fprefix ? fprefix : "", name);
    if (re) return !regexec(re, name, 0, NULL, 0) || !regexec(re, full, 0, NULL, 0);
    size_t i;
    json_t *v;
    size_t n = strlen(name);
    json_array_foreach(targets, i, v) {
        const char *t = json_string_value(v);
        size_t m = strlen(t);
        if (m <= n && !strcmp(name + n - m, t)) return 1;
    }
    return 0;
}

static int read_config(mmp_lora *a, const char *cfgp, char *err, size_t errlen) {
    json_t *cfg = NULL;
    int rc = mmp_json_load(cfgp, &cfg, err, errlen);
    if (rc == 0) return mmp_errf(err, errlen, "%s: no such file (an adapter folder holds PEFT's adapter_config.json)", cfgp);
    if (rc < 0) return -1;
    char e2[256];
    const char *s;
    int64_t r = 0;
    int b;
    rc = -1;
    if (!json_is_object(cfg)) {
        mmp_errf(err, errlen, "%s: not a JSON object", cfgp);
        goto out;
    }
    if (mmp_json_get_str(cfg, "peft_type", &s, e2, sizeof e2) != 1 || strcmp(s, "LORA")) {
        mmp_errf(err, errlen, "%s: peft_type must be \"LORA\"", cfgp);
        goto out;
    }
    if (mmp_json_get_int(cfg, "r", 1, 1 << 16, &r, e2, sizeof e2) != 1) {
        mmp_errf(err, errlen, "%s: r must be a positive integer", cfgp);
        goto out;
    }
    a->r = (int)r;
    a->alpha = 8; /* PEFT's default */
    if (mmp_json_get_num(cfg, "lora_alpha", &a->alpha, e2, sizeof e2) < 0) {
        mmp_errf(err, errlen, "%s: %s", cfgp, e2);
        goto out;
    }
    if (mmp_json_get_num(cfg, "lora_dropout", &a->dropout, e2, sizeof e2) < 0 || a->dropout < 0 || a->dropout >= 1) {
        mmp_errf(err, errlen, "%s: lora_dropout must be a number in [0, 1)", cfgp);
        goto out;
    }
    if (mmp_json_get_str(cfg, "bias", &s, e2, sizeof e2) == 1 && strcmp(s, "none")) {
        mmp_errf(err, errlen, "%s: bias \"%s\" is not supported (only \"none\": the biases stay frozen)", cfgp, s);
        goto out;
    }
    if (mmp_json_get_bool(cfg, "fan_in_fan_out", &b, e2, sizeof e2) == 1 && b) {
        mmp_errf(err, errlen, "%s: fan_in_fan_out true is for Conv1D models (GPT-2), not these", cfgp);
        goto out;
    }
    const char *refuse[] = {"modules_to_save", "layers_to_transform", "rank_pattern", "alpha_pattern"};
    for (size_t i = 0; i < sizeof refuse / sizeof *refuse; i++) {
        json_t *v = json_object_get(cfg, refuse[i]);
        if (v && !json_is_null(v) && !((json_is_array(v) && !json_array_size(v)) || (json_is_object(v) && !json_object_size(v)))) {
            mmp_errf(err, errlen, "%s: %s is not supported", cfgp, refuse[i]);
            goto out;
        }
    }
    const char *flags[] = {"use_rslora", "use_dora"};
    for (size_t i = 0; i < 2; i++)
        if (mmp_json_get_bool(cfg, flags[i], &b, e2, sizeof e2) == 1 && b) {
            mmp_errf(err, errlen, "%s: %s is not supported", cfgp, flags[i]);
            goto out;
        }
    json_t *t = json_object_get(cfg, "target_modules");
    int ok = json_is_string(t);
    if (json_is_array(t) && json_array_size(t)) {
        ok = 1;
        size_t i;
        json_t *v;
        json_array_foreach(t, i, v) ok &= json_is_string(v);
    }
    if (!ok) {
        mmp_errf(err, errlen, "%s: target_modules must be a list of names or a regular expression", cfgp);
        goto out;
    }
    a->targets = json_incref(t);
    a->base_name = mmp_xstrdup(mmp_json_get_str(cfg, "base_model_name_or_path", &s, e2, sizeof e2) == 1 ? s : "");
    rc = 0;
out:
    json_decref(cfg);
    return rc;
}

static char *targets_str(const json_t *t) {
    char *s = json_dumps(t, JSON_COMPACT | JSON_ENCODE_ANY);
    if (strlen(s) > 120) strcpy(s + 117, "...");
    return s;
}

mmp_lora *mmp_lora_load(const char *dir, const char *base_path, const char *base_sha256, char *err, size_t errlen) {
    mmp_lora *a = mmp_xcalloc(1, sizeof *a);
    a->dir = mmp_xstrdup(dir);
    a->base_path = mmp_xstrdup(base_path);
    a->kprefix = mmp_xstrdup("");
    mmp_safetensors base = {0}, ad = {0};
    int base_open = 0, ad_open = 0, ok = 0;
    regex_t re;
    int have_re = 0;
    char *cfgp = mmp_xasprintf("%s/adapter_config.json", dir);
    char *stp = mmp_xasprintf("%s/adapter_model.safetensors", dir);
    struct stat sb;
    if (stat(dir, &sb) || !S_ISDIR(sb.st_mode)) {
        mmp_errf(err, errlen, "%s: not an adapter folder (PEFT's adapter_config.json + adapter_model.safetensors)", dir);
        goto out;
    }
    if (read_config(a, cfgp, err, errlen)) goto out;
    if (base_sha256) snprintf(a->base_sha, sizeof a->base_sha, "%s", base_sha256);
    else if (mmp_sha256_file(base_path, a->base_sha) < 0) {
        mmp_errf(err, errlen, "%s: cannot read for hashing", base_path);
        goto out;
    }
    if (mmp_st_open(&base, base_path, err, errlen)) goto out;
    base_open = 1;
    find_sites(a, &base);
    if (!a->ns) {
        mmp_errf(err, errlen, "%s: no linear that mmpipe adapts (LoRA is read for Hugging Face ViT, CLIP, BERT, timm ViT and open_clip weights)",
                 base_path);
        goto out;
    }
    /* which modules the targets select */
    if (json_is_string(a->targets)) {
        char *px = posix_re(json_string_value(a->targets));
        char *pat = mmp_xasprintf("^(%s)$", px);
        free(px);
        int bad = regcomp(&re, pat, REG_EXTENDED | REG_NOSUB);
        free(pat);
        if (bad) {
            mmp_errf(err, errlen, "%s: target_modules \"%s\" is not a regular expression", cfgp,
                     json_string_value(a->targets));
            goto out;
        }
        have_re = 1;
    }
    for (int i = 0; i < a->nextra; i++)
        if (matches(a->targets, have_re ? &re : NULL, a->extra[i], "")) {
            char *ts = targets_str(a->targets);
            mmp_errf(err, errlen, "%s: target_modules %s selects %s, which mmpipe does not adapt (only the encoder blocks' linears)",
                     cfgp, ts, a->extra[i]);
            free(ts);
            goto out;
        }
    for (int i = 0; i < a->ns; i++)
        if ((a->s[i].target = matches(a->targets, have_re ? &re : NULL, a->s[i].name, a->s[i].fprefix))) a->ntarget++;
    if (!a->ntarget) {
        char *ts = targets_str(a->targets);
        mmp_errf(err, errlen, "%s: target_modules %s matches no module of %s (e.g. %s)", cfgp, ts, base_path, a->s[0].name);
        free(ts);
        goto out;
    }
    /* the weights */
    if (stat(stp, &sb)) {
        char *bin = mmp_xasprintf("%s/adapter_model.bin", dir);
        if (!stat(bin, &sb))
            mmp_errf(err, errlen, "%s: a pickle; save the adapter with safe_serialization=True (adapter_model.safetensors)", bin);
        else
            mmp_errf(err, errlen, "%s: no such file", stp);
        free(bin);
        goto out;
    }
    if (mmp_st_open(&ad, stp, err, errlen)) goto out;
    ad_open = 1;
    const char *rec = mmp_meta_get(&ad.meta, MMP_LORA_SHA_KEY);
    if (rec && strcmp(rec, a->base_sha)) {
        mmp_errf(err, errlen, "%s: the adapter was made for base weights with sha256 %s, but %s has sha256 %s", stp, rec,
                 base_path, a->base_sha);
        goto out;
    }
    unsigned char *used = mmp_xcalloc((size_t)ad.n + 1, 1);
    int kp_set = 0;
    for (int i = 0; i < a->ns; i++) {
        site *s = &a->s[i];
        if (!s->target) continue;
        for (int ab = 0; ab < 2; ab++) {
            char nm[320];
            const char *cands[2] = {"", s->fprefix};
            const mmp_tensor *t = NULL;
            int which = -1;
            for (int c = 0; c < 2 && !t; c++) {
                if (c == 1 && !cands[1][0]) break;
                snprintf(nm, sizeof nm, "base_model.model.%s%s.lora_%c.weight", cands[c], s->name, ab ? 'B' : 'A');
                if ((t = mmp_st_get(&ad, nm))) which = c;
            }
            if (!t) {
                snprintf(nm, sizeof nm, "base_model.model.%s.lora_%c.weight", s->name, ab ? 'B' : 'A');
                mmp_errf(err, errlen, "%s: tensor '%s' is missing (target_modules selects %s)", stp, nm, s->name);
                free(used);
                goto out;
            }
            if (!kp_set) {
                free(a->kprefix);
                a->kprefix = mmp_xstrdup(cands[which]);
                kp_set = 1;
            }
            int64_t shp[2] = {ab ? s->OC : a->r, ab ? a->r : s->IC};
            float *d = mmp_st_f32(&ad, nm, 2, shp, err, errlen);
            if (!d) {
                free(used);
                goto out;
            }
            for (int e = 0; e < ad.n; e++)
                if (&ad.entries[e].t == t) used[e] = 1;
            if (ab) s->B = d;
            else s->A = d;
        }
        s->lo = (mmp_tx_lora){.r = a->r, .IC = s->IC, .OC = s->OC, .scale = (float)(a->alpha / a->r), .A = s->A, .B = s->B};
    }
    for (int i = 0; i < ad.n; i++)
        if (!used[i]) {
            mmp_errf(err, errlen, "%s: tensor '%s' belongs to no target module of %s (an adapter for another model?)", stp,
                     ad.entries[i].name, base_path);
            free(used);
            goto out;
        }
    free(used);
    if (mmp_sha256_file(stp, a->sha) < 0) {
        mmp_errf(err, errlen, "%s: cannot read for hashing", stp);
        goto out;
    }
    for (int i = 0; i < a->ns; i++)
        if (a->s[i].target && a->s[i].layer + 1 > a->ntab[a->s[i].tower]) a->ntab[a->s[i].tower] = a->s[i].layer + 1;
    for (int t = 0; t < 2; t++) a->tab[t] = mmp_xcalloc((size_t)a->ntab[t] + 1, sizeof *a->tab[t]);
    for (int i = 0; i < a->ns; i++) {
        const site *s = &a->s[i];
        if (!s->target) continue;
        mmp_tx_block_lora *bl = &a->tab[s->tower][s->layer];
        const mmp_tx_lora **slot[7] = {&bl->q, &bl->k, &bl->v, &bl->o, &bl->fc1, &bl->fc2, &bl->qkv};
        *slot[s->slot] = &s->lo;
    }
    snprintf(a->prov, sizeof a->prov, "lora=%s:r=%d:alpha=%g:modules=%d", a->sha, a->r, a->alpha, a->ntarget);
    ok = 1;
out:
    if (have_re) regfree(&re);
    if (base_open) mmp_st_close(&base);
    if (ad_open) mmp_st_close(&ad);
    free(cfgp);
    free(stp);
    if (!ok) {
        mmp_err_oneline(err, errlen);
        mmp_lora_free(a);
        return NULL;
    }
    return a;
}

int mmp_lora_has_tower(const mmp_lora *a, int tower) {
    for (int i = 0; i < a->ns; i++)
        if (a->s[i].target && a->s[i].tower == tower) return 1;
    return 0;
}

int mmp_lora_attach(const mmp_lora *a, int tower, mmp_tx_encoder *e, char *err, size_t errlen) {
    for (int i = 0; i < a->ns; i++) {
        const site *s = &a->s[i];
        if (!s->target || s->tower != tower) continue;
        if (s->layer >= e->layers)
            return mmp_errf(err, errlen, "%s: %s is beyond the model's %d layers", a->dir, s->name, e->layers);
        int wantIC = s->slot == 5 ? e->inter : e->C,
            wantOC = s->slot == 4 ? e->inter : s->slot == 6 ? 3 * e->C : e->C;
        if (s->IC != wantIC || s->OC != wantOC)
            return mmp_errf(err, errlen, "%s: %s is [%d, %d], the model's linear is [%d, %d]", a->dir, s->name, s->OC,
                            s->IC, wantOC, wantIC);
    }
    for (int l = 0; l < e->layers && l < a->ntab[tower]; l++) {
        const mmp_tx_block_lora *bl = &a->tab[tower][l];
        if (bl->q || bl->k || bl->v || bl->o || bl->fc1 || bl->fc2 || bl->qkv) e->block[l].lora = bl;
    }
    return 0;
}

const char *mmp_lora_sha256(const mmp_lora *a) { return a->sha; }
int mmp_lora_rank(const mmp_lora *a) { return a->r; }
double mmp_lora_alpha(const mmp_lora *a) { return a->alpha; }
int mmp_lora_nsites(const mmp_lora *a) { return a->ntarget; }
const char *mmp_lora_provenance(const mmp_lora *a) { return a->prov; }

static const site *site_of_weight(const mmp_lora *a, const char *name) {
    for (int i = 0; i < a->ns; i++)
        if (a->s[i].target && !strcmp(a->s[i].wname, name)) return &a->s[i];
    return NULL;
}

int mmp_lora_merge_write(const mmp_lora *a, const char *out, char *err, size_t errlen) {
    mmp_safetensors st;
    if (mmp_st_open(&st, a->base_path, err, errlen)) return -1;
    mmp_st_writer w;
    mmp_st_writer_init(&w);
    mmp_meta_copy(&w.meta, &st.meta);
    if (!mmp_meta_get(&w.meta, "format")) mmp_meta_set(&w.meta, "format", "pt");
    int rc = 0;
    for (int i = 0; i < st.n && !rc; i++) {
        const site *s = site_of_weight(a, st.entries[i].name);
        if (!s) {
            mmp_st_writer_add(&w, st.entries[i].name, &st.entries[i].t);
            continue;
        }
        int64_t shp[2] = {s->OC, s->IC};
        float *W = mmp_st_f32(&st, s->wname, 2, shp, err, errlen);
        if (!W) {
            rc = -1;
            break;
        }
        mmp_tx_lora_merge(W, &s->lo);
        mmp_st_writer_add_f32(&w, s->wname, W, 2, shp);
        free(W);
    }
    if (!rc) rc = mmp_st_writer_write(&w, out, err, errlen);
    mmp_st_writer_free(&w);
    mmp_st_close(&st);
    return rc;
}

/* An adapter folder: adapter_config.json (PEFT 0.4's keys; targets and save
 * are taken over: a list or a regular expression, modules_to_save or null)
 * and adapter_model.safetensors from w (format "pt", the base's SHA-256 and
 * every entry of extra added to its metadata). */
static int write_folder(const char *dir, const char *base_name, const char *base_sha, int r, double alpha, double dropout,
                        json_t *targets, json_t *save, const mmp_meta *extra, int fan_in_fan_out, mmp_st_writer *w,
                        char *err, size_t errlen) {
    if (mkdir(dir, 0777) && errno != EEXIST) {
        json_decref(targets), json_decref(save);
        return mmp_errf(err, errlen, "%s: cannot create: %s", dir, strerror(errno));
    }
    json_t *c = json_object();
    json_object_set_new(c, "base_model_name_or_path", json_string(base_name));
    json_object_set_new(c, "bias", json_string("none"));
    json_object_set_new(c, "fan_in_fan_out", fan_in_fan_out ? json_true() : json_false());
    json_object_set_new(c, "inference_mode", json_true());
    json_object_set_new(c, "init_lora_weights", json_true());
    json_object_set_new(c, "layers_pattern", json_null());
    json_object_set_new(c, "layers_to_transform", json_null());
    if (alpha == (double)(long)alpha) json_object_set_new(c, "lora_alpha", json_integer((json_int_t)alpha));
    else json_object_set_new(c, "lora_alpha", json_real(alpha));
    json_object_set_new(c, "lora_dropout", json_real(dropout));
    json_object_set_new(c, "modules_to_save", save);
    json_object_set_new(c, "peft_type", json_string("LORA"));
    json_object_set_new(c, "r", json_integer(r));
    json_object_set_new(c, "revision", json_null());
    json_object_set_new(c, "target_modules", targets);
    json_object_set_new(c, "task_type", json_null());
    char *cfgp = mmp_xasprintf("%s/adapter_config.json", dir);
    char *tmp = mmp_xasprintf("%s.tmp", cfgp);
    int rc = json_dump_file(c, tmp, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(c);
    if (rc || rename(tmp, cfgp)) {
        rc = mmp_errf(err, errlen, "%s: cannot write: %s", cfgp, strerror(errno));
        free(cfgp), free(tmp);
        return rc;
    }
    free(cfgp), free(tmp);
    mmp_meta_set(&w->meta, "format", "pt");
    mmp_meta_set(&w->meta, MMP_LORA_SHA_KEY, base_sha);
    for (int i = 0; extra && i < extra->n; i++) mmp_meta_set(&w->meta, extra->keys[i], extra->vals[i]);
    char *stp = mmp_xasprintf("%s/adapter_model.safetensors", dir);
    rc = mmp_st_writer_write(w, stp, err, errlen);
    free(stp);
    return rc;
}

int mmp_lora_write(const mmp_lora *a, const char *dir, char *err, size_t errlen) {
    mmp_st_writer w;
    mmp_st_writer_init(&w);
    for (int i = 0; i < a->ns; i++) {
        const site *s = &a->s[i];
        if (!s->target) continue;
        char nm[320];
        int64_t sa[2] = {a->r, s->IC}, sbb[2] = {s->OC, a->r};
        snprintf(nm, sizeof nm, "base_model.model.%s%s.lora_A.weight", a->kprefix, s->name);
        mmp_st_writer_add_f32(&w, nm, s->A, 2, sa);
        snprintf(nm, sizeof nm, "base_model.model.%s%s.lora_B.weight", a->kprefix, s->name);
        mmp_st_writer_add_f32(&w, nm, s->B, 2, sbb);
    }
    int rc = write_folder(dir, a->base_name, a->base_sha, a->r, a->alpha, a->dropout, json_incref(a->targets), json_null(),
                          NULL, 0, &w, err, errlen);
    mmp_st_writer_free(&w);
    return rc;
}

int mmp_peft_write_folder(const char *dir, const mmp_peft_folder *f, mmp_st_writer *w, char *err, size_t errlen) {
    json_t *save = f->nsave ? json_array() : json_null();
    for (int i = 0; i < f->nsave; i++) json_array_append_new(save, json_string(f->save[i]));
    json_t *tg = f->targets_regex ? json_string(f->targets[0]) : json_array();
    for (int i = 0; i < f->ntargets && !f->targets_regex; i++) json_array_append_new(tg, json_string(f->targets[i]));
    return write_folder(dir, f->base_name, f->base_sha, f->r, f->alpha, f->dropout, tg, save, f->extra, f->fan_in_fan_out, w, err,
                        errlen);
}

mmp_lora *mmp_lora_new(const char *base_path, const char *base_sha256, const char *base_name, int r, double alpha,
                       double dropout, const char *const *targets, int ntargets) {
    mmp_lora *a = mmp_xcalloc(1, sizeof *a);
    a->dir = mmp_xstrdup("");
    a->base_path = mmp_xstrdup(base_path);
    a->kprefix = mmp_xstrdup("");
    a->base_name = mmp_xstrdup(base_name ? base_name : "");
    snprintf(a->base_sha, sizeof a->base_sha, "%s", base_sha256);
    a->r = r, a->alpha = alpha, a->dropout = dropout;
    a->targets = json_array();
    for (int i = 0; i < ntargets; i++) json_array_append_new(a->targets, json_string(targets[i]));
    return a;
}

void mmp_lora_add_module(mmp_lora *a, const char *module, int OC, int IC, const float *A, const float *B) {
    a->s = mmp_xrealloc(a->s, (size_t)(a->ns + 1) * sizeof *a->s);
    site *s = &a->s[a->ns++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", module);
    snprintf(s->wname, sizeof s->wname, "%s.weight", module);
    s->fprefix = "";
    s->OC = OC, s->IC = IC, s->target = 1;
    s->A = mmp_xmalloc((size_t)a->r * IC * sizeof *s->A);
    s->B = mmp_xmalloc((size_t)OC * a->r * sizeof *s->B);
    memcpy(s->A, A, (size_t)a->r * IC * sizeof *s->A);
    memcpy(s->B, B, (size_t)OC * a->r * sizeof *s->B);
    s->lo = (mmp_tx_lora){.r = a->r, .IC = IC, .OC = OC, .scale = (float)(a->alpha / a->r), .A = s->A, .B = s->B};
    a->ntarget++;
}

mmp_lora *mmp_lora_attach_model(mmp_tx_model *m, const char *dir, char *err, size_t errlen) {
    mmp_lora *a = mmp_lora_load(dir, m->path, NULL, err, errlen);
    if (!a) return NULL;
    if ((m->vision && mmp_lora_attach(a, 0, &m->vision->enc, err, errlen)) ||
        (m->text && mmp_lora_attach(a, 1, &m->text->enc, err, errlen))) {
        mmp_lora_free(a);
        return NULL;
    }
    return a;
}

void mmp_lora_stamp(const mmp_lora *a, mmp_header *h, const char *key) {
    const char *p = mmp_meta_get(&h->meta, key);
    char *np = p ? mmp_xasprintf("%s:%s", p, a->prov) : mmp_xstrdup(a->prov);
    mmp_meta_set(&h->meta, key, np);
    free(np);
    const char *pre = strcmp(key, "provenance") ? "text_lora" : "lora";
    char k[64], buf[64];
    size_t wl = strlen(a->dir);
    while (wl > 1 && a->dir[wl - 1] == '/') wl--;
    size_t b0 = wl;
    while (b0 > 0 && a->dir[b0 - 1] != '/') b0--;
    char *base = mmp_xasprintf("%.*s", (int)(wl - b0), a->dir + b0);
    snprintf(k, sizeof k, "%s.adapter", pre);
    mmp_meta_set(&h->meta, k, base);
    free(base);
    snprintf(k, sizeof k, "%s.sha256", pre);
    mmp_meta_set(&h->meta, k, a->sha);
    snprintf(k, sizeof k, "%s.r", pre);
    snprintf(buf, sizeof buf, "%d", a->r);
    mmp_meta_set(&h->meta, k, buf);
    snprintf(k, sizeof k, "%s.alpha", pre);
    snprintf(buf, sizeof buf, "%g", a->alpha);
    mmp_meta_set(&h->meta, k, buf);
}

/* the adapter named in a provenance ("lora=SHA") into buf, "no adapter" when none */
static const char *lora_of(const char *prov, char *buf, size_t n) {
    const char *p = prov ? strstr(prov, "lora=") : NULL;
    if (!p) return "no adapter";
    snprintf(buf, n, "%.*s", (int)strcspn(p, ":"), p);
    return buf;
}

int mmp_lora_prov_check(const char *img_prov, const char *txt_prov, const char *img_what, const char *txt_what,
                        int allow_mixed, char *msg, size_t msglen) {
    char a[128], b[128];
    const char *la = lora_of(img_prov, a, sizeof a), *lb = lora_of(txt_prov, b, sizeof b);
    if (!strcmp(la, lb)) return 0;
    mmp_errf(msg, msglen, "%s: the image embeddings were made with %s but the text embeddings of %s with %s%s", img_what,
             la, txt_what, lb, allow_mixed ? " (--allow-mixed)" : "; --allow-mixed to proceed anyway");
    return allow_mixed ? 1 : -1;
}
