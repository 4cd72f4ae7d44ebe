/* nn/txmodel.c: ViT/CLIP image towers (tx/model.h) as mmp_nn_model layers
 * for mmp-embed (see nn/txmodel.h). */
#include "nn/txmodel.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

int mmp_nn_tx_wants(const char *path, const mmp_safetensors *st) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return 1;
    if (ends_with(path, ".bin") || ends_with(path, ".pt") || ends_with(path, ".pth")) return 1;
    if (!st) return 0;
    static const char *prefixes[] = {"vision_model.", "text_model.", "visual.", "token_embedding.",
                                     "embeddings.patch_embeddings.", "vit.", "patch_embed.", "logit_bias"};
    for (int i = 0; i < st->n; i++)
        for (size_t k = 0; k < sizeof prefixes / sizeof *prefixes; k++)
            if (!strncmp(st->entries[i].name, prefixes[k], strlen(prefixes[k]))) return 1;
    return 0;
}

/* ---- names ---- */

void mmp_nn_tx_arch(const mmp_tx_model *m, char *buf, size_t n) {
    const char *fam = mmp_tx_family_name(m->family);
    const mmp_tx_vision *v = m->vision;
    if (!v) {
        snprintf(buf, n, "%s-text", fam);
        return;
    }
    /* the standard ViT sizes: width, depth, MLP width */
    static const struct {
        int C, L, I;
        const char *name;
    } std[] = {{192, 12, 768, "ti"},   {384, 12, 1536, "s"},    {768, 12, 3072, "b"},    {1024, 24, 4096, "l"},
               {1280, 32, 5120, "h"},  {1408, 40, 6144, "g"},   {1664, 48, 8192, "bigg"}};
    char tower[64] = "";
    for (size_t i = 0; i < sizeof std / sizeof *std; i++)
        if (v->C == std[i].C && v->enc.layers == std[i].L && v->enc.inter == std[i].I)
            snprintf(tower, sizeof tower, "vit-%s%d", std[i].name, v->P);
    if (!tower[0]) snprintf(tower, sizeof tower, "vit-w%d-d%d-p%d", v->C, v->enc.layers, v->P);
    int h = v->gh * v->P, w = v->gw * v->P;
    if (h == 224 && w == 224) snprintf(buf, n, "%s-%s", fam, tower);
    else if (h == w) snprintf(buf, n, "%s-%s-%d", fam, tower, h);
    else snprintf(buf, n, "%s-%s-%dx%d", fam, tower, h, w);
}

static int is_clip(const mmp_tx_model *m) {
    return m->family == MMP_TXM_CLIP_HF || m->family == MMP_TXM_CLIP_OPENCLIP;
}

int mmp_nn_tx_check_arch(const mmp_tx_model *m, const char *arch, const char *want, const char *path, char *err,
                         size_t errlen) {
    if (!want) return 0;
    const char *fam = mmp_tx_family_name(m->family);
    if (!strcmp(want, arch) || !strcmp(want, fam) || (!strcmp(want, "clip") && is_clip(m)) ||
        (!strcmp(want, "vit") && !is_clip(m)))
        return 0;
    return mmp_errf(err, errlen, "%s: --arch %s, but the weights are %s (%s)", path, want, arch, fam);
}

static const struct {
    const char *name;
    mmp_nn_out_kind kind;
    mmp_tx_out out;
} layers[] = {
    {"proj", MMP_NN_OUT_PROJ, MMP_TX_OUT_EMBED},
    {"pool", MMP_NN_OUT_POOL, MMP_TX_OUT_POOLED},
    {"pooler", MMP_NN_OUT_POOLER, MMP_TX_OUT_POOLER},
    {"logits", MMP_NN_OUT_LOGITS, MMP_TX_OUT_LOGITS},
};
#define NLAYERS ((int)(sizeof layers / sizeof *layers))

/* proj only for CLIP (a ViT's EMBED is its pooled output: "pool") */
static int layer_ok(const mmp_tx_model *m, int i) {
    if (layers[i].kind == MMP_NN_OUT_PROJ && !is_clip(m)) return 0;
    return mmp_tx_image_dim(m, layers[i].out) > 0;
}

void mmp_nn_tx_layer_names(const mmp_tx_model *m, char *buf, size_t n) {
    size_t off = 0;
    buf[0] = 0;
    for (int i = 0; i < NLAYERS; i++)
        if (layer_ok(m, i) && off < n) off += (size_t)snprintf(buf + off, n - off, "%s%s", off ? ", " : "", layers[i].name);
    if (m->vision && off < n) snprintf(buf + off, n - off, "%stokens", off ? ", " : "");
}

const char *mmp_nn_tx_default_layer(const mmp_tx_model *m) { return is_clip(m) ? "proj" : "pool"; }

int mmp_nn_tx_layer_parse(const mmp_tx_model *m, const char *arch, const char *spec, mmp_nn_layer *l, char *err,
                          size_t errlen) {
    memset(l, 0, sizeof *l);
    char names[128];
    mmp_nn_tx_layer_names(m, names, sizeof names);
    if (!m->vision) return mmp_errf(err, errlen, "%s: %s has no image tower", m->path, arch);
    if (!strcmp(spec, "tokens")) {
        l->kind = MMP_NN_OUT_TOKENS;
        l->tokens = 1;
        snprintf(l->name, sizeof l->name, "tokens");
        return 0;
    }
    for (int i = 0; i < NLAYERS; i++)
        if (!strcmp(spec, layers[i].name)) {
            if (!layer_ok(m, i)) break;
            l->kind = layers[i].kind;
            snprintf(l->name, sizeof l->name, "%s", spec);
            return 0;
        }
    return mmp_errf(err, errlen, "unknown --layer %s for %s (its layers: %s)", spec, arch, names);
}

mmp_tx_out mmp_nn_tx_out(const mmp_nn_layer *l) {
    for (int i = 0; i < NLAYERS; i++)
        if (layers[i].kind == l->kind) return layers[i].out;
    return MMP_TX_OUT_POOLED;
}

int64_t mmp_nn_tx_output_dim(const mmp_tx_model *m, const mmp_nn_layer *l, int H, int W) {
    int T1 = mmp_tx_image_tokens(m, H, W);
    if (T1 <= 0) return 0;
    if (l->tokens) return (int64_t)(T1 - m->vision->cls) * m->vision->C;
    int d = mmp_tx_image_dim(m, mmp_nn_tx_out(l));
    return d > 0 ? d : 0;
}

double mmp_nn_tx_macs(const mmp_tx_model *m, const mmp_nn_layer *l, int H, int W) {
    const mmp_tx_vision *v = m->vision;
    int T = mmp_tx_image_tokens(m, H, W);
    if (!v || T <= 0) return 0;
    double C = v->C, I = v->enc.inter, np = (double)(H / v->P) * (W / v->P);
    double macs = np * C * 3.0 * v->P * v->P;
    macs += v->enc.layers * (T * (4 * C * C + 2 * C * I) + 2.0 * T * T * C);
    int D = mmp_tx_image_dim(m, mmp_nn_tx_out(l));
    if (l->kind != MMP_NN_OUT_POOL && !l->tokens && D > 0) macs += (double)D * C;
    return macs;
}

/* ---- running ---- */

typedef struct {
    const mmp_tx_model *m; /* a view whose encoder has its share of the threads */
    mmp_tx_out which;
    int tokens; /* the patch tokens (mmp_tx_image_patch_tokens) */
    const float *x; /* [N,3,H,W] */
    float *out;
    int N, H, W, G, D;
    int *next; /* next micro-batch (atomic) */
    int rc;
    char err[512];
} txjob;

static void *tx_worker(void *arg) {
    txjob *j = arg;
    int nmb = (j->N + j->G - 1) / j->G;
    for (;;) {
        int k = __atomic_fetch_add(j->next, 1, __ATOMIC_RELAXED);
        if (k >= nmb || j->rc) break;
        int i0 = k * j->G, g = j->N - i0 < j->G ? j->N - i0 : j->G;
        const float *xi = j->x + (size_t)i0 * 3 * j->H * j->W;
        j->rc = j->tokens ? mmp_tx_image_patch_tokens(j->m, xi, g, j->H, j->W, j->out + (size_t)i0 * j->D, j->err,
                                                      sizeof j->err)
                          : mmp_tx_image_embed(j->m, xi, g, j->H, j->W, j->which, j->out + (size_t)i0 * j->D, NULL,
                                               j->err, sizeof j->err);
    }
    return NULL;
}

void mmp_nn_tx_run(const mmp_tx_model *m, int threads, const mmp_nn_layer *l, const float *x, int N, int H, int W,
                   float *out) {
    if (N <= 0) return;
    int T1 = mmp_tx_image_tokens(m, H, W);
    mmp_tx_out which = mmp_nn_tx_out(l);
    int D = l->tokens ? (int)mmp_nn_tx_output_dim(m, l, H, W) : mmp_tx_image_dim(m, which);
    char err[512];
    if (T1 <= 0 || D <= 0) {
        mmp_tx_image_embed(m, NULL, 0, H, W, which, NULL, NULL, err, sizeof err);
        mmp_die("%s", err);
    }
    if (threads < 1) threads = 1;
    /* CHW for the transformer */
    size_t hw = (size_t)H * W;
    float *chw = mmp_xmalloc(sizeof(float) * 3 * hw * (size_t)N);
    for (int i = 0; i < N; i++) {
        const float *s = x + (size_t)i * hw * 3;
        float *d = chw + (size_t)i * hw * 3;
        for (size_t p = 0; p < hw; p++)
            for (int c = 0; c < 3; c++) d[c * hw + p] = s[p * 3 + c];
    }
    /* micro-batches of at most about 1024 tokens (GEMMs with enough rows,
     * bounded activations), of equal size, `rounds` of them a thread */
    int gmax = (1024 + T1 - 1) / T1;
    int64_t rounds = ((int64_t)N + (int64_t)threads * gmax - 1) / ((int64_t)threads * gmax);
    int G = (int)(((int64_t)N + threads * rounds - 1) / (threads * rounds));
    if (G < 1) G = 1;
    int nmb = (N + G - 1) / G;
    int T = threads < nmb ? threads : nmb;
    /* the threads left over go to each encoder forward (same bits) */
    mmp_tx_vision v = *m->vision;
    v.enc.threads = threads / T;
    mmp_tx_model view = *m;
    view.vision = &v;
    int next = 0;
    txjob *jobs = mmp_xcalloc((size_t)T, sizeof *jobs);
    pthread_t *tids = mmp_xcalloc((size_t)T, sizeof *tids);
    for (int t = 0; t < T; t++) jobs[t] = (txjob){&view, which, l->tokens, chw, out, N, H, W, G, D, &next, 0, ""};
    for (int t = 1; t < T; t++)
        if (pthread_create(&tids[t], NULL, tx_worker, &jobs[t])) mmp_die("cannot create a thread");
    tx_worker(&jobs[0]);
    for (int t = 1; t < T; t++) pthread_join(tids[t], NULL);
    for (int t = 0; t < T; t++)
        if (jobs[t].rc) mmp_die("%s", jobs[t].err);
    free(jobs);
    free(tids);
    free(chw);
}

/* ---- preprocessing guard ---- */

/* One resize recipe, as mmp-decode's options. */
typedef struct {
    int crop;         /* 1: shorter side + center crop (--size), 0: straight resize (--resize) */
    int h, w;         /* crop size / resize size */
    double crop_pct;  /* crop / resize of the shorter side (1: none) */
    int hf;           /* HF center-crop offsets */
    char interp[16];
} recipe;

static void recipe_flags(const recipe *r, char *buf, size_t n) {
    size_t o = 0;
    if (r->crop) o += (size_t)snprintf(buf + o, n - o, "--size %d", r->h);
    else o += (size_t)snprintf(buf + o, n - o, "--resize %dx%d", r->w, r->h);
    if (o < n) o += (size_t)snprintf(buf + o, n - o, " --interp %s", r->interp);
    if (r->crop && fabs(r->crop_pct - 1) > 1e-6 && o < n) o += (size_t)snprintf(buf + o, n - o, " --crop-pct %.6g", r->crop_pct);
    if (r->crop && r->hf && o < n) snprintf(buf + o, n - o, " --crop-round hf");
}

static recipe model_recipe(const mmp_tx_model *m) {
    const mmp_tx_preprocess *p = &m->pre;
    recipe r = {.crop = p->resize_shortest > 0, .h = p->height, .w = p->width, .crop_pct = 1,
                .hf = m->family == MMP_TXM_VIT_HF || m->family == MMP_TXM_CLIP_HF};
    snprintf(r.interp, sizeof r.interp, "%s", p->interpolation);
    if (r.crop) {
        if (p->crop_pct > 0) r.crop_pct = p->crop_pct;
        else if (p->resize_shortest != p->height) r.crop_pct = (double)p->height / p->resize_shortest;
    }
    return r;
}

void mmp_nn_tx_decode_flags(const mmp_tx_model *m, char *buf, size_t n) {
    recipe r = model_recipe(m);
    recipe_flags(&r, buf, n);
}

int mmp_nn_tx_preprocess_check(const mmp_tx_model *m, const mmp_header *ih, const char *in_name,
                               const char *model_name, char *msg, size_t msglen) {
    const mmp_meta *mt = &ih->meta;
    const char *aug = mmp_meta_get(mt, "image.augment");
    if (aug && (strstr(aug, "rrc(") || strstr(aug, "resize(") || strstr(aug, "crop(")))
        return 0; /* resized again after mmp-decode: the header does not say how in these terms */
    const char *size = mmp_meta_get(mt, "image.size"), *rs = mmp_meta_get(mt, "image.resize");
    recipe s = {.crop_pct = 1};
    if (size) {
        s.crop = 1;
        s.h = s.w = atoi(size);
        const char *cp = mmp_meta_get(mt, "image.crop_pct"), *cr = mmp_meta_get(mt, "image.crop_round");
        if (cp) s.crop_pct = atof(cp);
        s.hf = cr && !strcmp(cr, "hf");
    } else if (rs) {
        if (sscanf(rs, "%dx%d", &s.w, &s.h) != 2) return 0;
    } else {
        return 0;
    }
    const char *in = mmp_meta_get(mt, "image.interp");
    snprintf(s.interp, sizeof s.interp, "%s", in ? in : "bilinear");
    recipe r = model_recipe(m);
    int same = s.crop == r.crop && !strcmp(s.interp, r.interp);
    if (same && s.crop) same = fabs(s.crop_pct - r.crop_pct) <= 1e-3 * r.crop_pct && s.hf == r.hf;
    if (same) return 0;
    char a[160], b[160];
    recipe_flags(&s, a, sizeof a);
    recipe_flags(&r, b, sizeof b);
    snprintf(msg, msglen,
             "%s: images resized as mmp-decode %s, but %s (%s) expects %s (its preprocessing): the embeddings "
             "will differ from the reference library's",
             in_name, a, model_name, mmp_tx_family_name(m->family), b);
    return 1;
}
