/* Fusion modules: fixed combinations, random projections, learned gated and
 * attention fusion with forward and backward. See fuse.h. */
#include "fuse/fuse.h"

#include "tx/tx.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "rng.h"

static const char *mode_names[] = {"concat", "sum", "weighted", "gated", "attention"};
const char *mmp_fuse_mode_name(mmp_fuse_mode m) { return m >= 0 && m <= MMP_FUSE_ATTENTION ? mode_names[m] : "?"; }
int mmp_fuse_mode_parse(const char *s, mmp_fuse_mode *m) {
    for (int i = 0; i <= MMP_FUSE_ATTENTION; i++)
        if (strcmp(s, mode_names[i]) == 0) {
            *m = (mmp_fuse_mode)i;
            return 0;
        }
    return -1;
}
static const char *kind_names[] = {"proj", "gated", "attention"};
const char *mmp_fusep_kind_name(mmp_fusep_kind k) { return k >= 0 && k <= MMP_FUSEP_ATTENTION ? kind_names[k] : "?"; }

/* ------------------------------------------------------------------ */
/* fixed                                                               */
/* ------------------------------------------------------------------ */

void mmp_fuse_l2(float *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)x[i] * x[i];
    double nrm = sqrt(s);
    float d = (float)(nrm > 1e-12 ? nrm : 1e-12);
    for (int i = 0; i < n; i++) x[i] /= d;
}

void mmp_fuse_fixed(mmp_fuse_mode m, const float *a, int da, const float *b, int db, float wa, float wb, float *h) {
    if (m == MMP_FUSE_CONCAT) {
        memcpy(h, a, (size_t)da * sizeof *h);
        memcpy(h + da, b, (size_t)db * sizeof *h);
    } else if (m == MMP_FUSE_SUM) {
        for (int i = 0; i < da; i++) h[i] = a[i] + b[i];
    } else {
        for (int i = 0; i < da; i++) h[i] = wa * a[i] + wb * b[i];
    }
}

int mmp_fuse_random_projection(float *W, int out, int in, uint64_t seed, int orthogonal) {
    if (out <= 0 || in <= 0 || (orthogonal && out > in)) return -1;
    mmp_rng_pair g;
    mmp_rng_pair_seed(&g, seed);
    double *w = mmp_xmalloc((size_t)out * in * sizeof *w);
    for (size_t i = 0; i < (size_t)out * in; i++) w[i] = mmp_rng_normal_pair(&g);
    if (orthogonal) { /* modified Gram-Schmidt on rows, in double */
        for (int i = 0; i < out; i++) {
            double *wi = w + (size_t)i * in;
            for (int j = 0; j < i; j++) {
                const double *wj = w + (size_t)j * in;
                double dot = 0;
                for (int k = 0; k < in; k++) dot += wi[k] * wj[k];
                for (int k = 0; k < in; k++) wi[k] -= dot * wj[k];
            }
            double n = 0;
            for (int k = 0; k < in; k++) n += wi[k] * wi[k];
            n = sqrt(n);
            if (n < 1e-9) { /* degenerate draw: practically impossible */
                free(w);
                return -1;
            }
            for (int k = 0; k < in; k++) wi[k] /= n;
        }
        for (size_t i = 0; i < (size_t)out * in; i++) W[i] = (float)w[i];
    } else {
        double sc = 1.0 / sqrt((double)out);
        for (size_t i = 0; i < (size_t)out * in; i++) W[i] = (float)(w[i] * sc);
    }
    free(w);
    return 0;
}

/* ------------------------------------------------------------------ */
/* parameters                                                          */
/* ------------------------------------------------------------------ */

int mmp_fuse_params_alloc(mmp_fuse_params *p, mmp_fusep_kind kind, int da, int db, int d, int heads, char *err,
                          size_t errlen) {
    memset(p, 0, sizeof *p);
    if (da <= 0 || db <= 0 || d <= 0 || da > (1 << 20) || db > (1 << 20) || d > (1 << 16)) {
        return mmp_errf(err, errlen, "bad fusion sizes da=%d db=%d d=%d", da, db, d);
    }
    if (kind == MMP_FUSEP_ATTENTION && (heads <= 0 || d % heads != 0)) {
        return mmp_errf(err, errlen, "attention fusion: %d dims not divisible by %d heads", d, heads);
    }
    p->kind = kind;
    p->da = da;
    p->db = db;
    p->d = d;
    p->heads = kind == MMP_FUSEP_ATTENTION ? heads : 0;
    size_t D = (size_t)d;
    p->wa = mmp_xcalloc(D * da, sizeof(float));
    p->ba = mmp_xcalloc(D, sizeof(float));
    p->wb = mmp_xcalloc(D * db, sizeof(float));
    p->bb = mmp_xcalloc(D, sizeof(float));
    if (kind == MMP_FUSEP_GATED) {
        p->wg = mmp_xcalloc(D * (size_t)(da + db), sizeof(float));
        p->bg = mmp_xcalloc(D, sizeof(float));
    } else if (kind == MMP_FUSEP_ATTENTION) {
        p->win = mmp_xcalloc(3 * D * D, sizeof(float));
        p->bin = mmp_xcalloc(3 * D, sizeof(float));
        p->wo = mmp_xcalloc(D * D, sizeof(float));
        p->bo = mmp_xcalloc(D, sizeof(float));
    }
    return 0;
}

void mmp_fuse_params_free(mmp_fuse_params *p) {
    float *ps[] = {p->wa, p->ba, p->wb, p->bb, p->wg, p->bg, p->win, p->bin, p->wo, p->bo};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) free(ps[i]);
    memset(p, 0, sizeof *p);
}

int mmp_fuse_params_tensors(const mmp_fuse_params *p, const char **names, float **data, int *ndim,
                            int64_t (*shape)[2]) {
    int n = 0;
#define ADD(nm, ptr, nd, s0, s1)                          \
    do {                                                  \
        if (names) {                                      \
            names[n] = nm;                                \
            data[n] = ptr;                                \
            ndim[n] = nd;                                 \
            shape[n][0] = s0;                             \
            shape[n][1] = s1;                             \
        }                                                 \
        n++;                                              \
    } while (0)
    ADD("proj_a.weight", p->wa, 2, p->d, p->da);
    ADD("proj_a.bias", p->ba, 1, p->d, 0);
    ADD("proj_b.weight", p->wb, 2, p->d, p->db);
    ADD("proj_b.bias", p->bb, 1, p->d, 0);
    if (p->kind == MMP_FUSEP_GATED) {
        ADD("gate.weight", p->wg, 2, p->d, p->da + p->db);
        ADD("gate.bias", p->bg, 1, p->d, 0);
    } else if (p->kind == MMP_FUSEP_ATTENTION) {
        ADD("attn.in_proj_weight", p->win, 2, 3 * p->d, p->d);
        ADD("attn.in_proj_bias", p->bin, 1, 3 * p->d, 0);
        ADD("attn.out_proj.weight", p->wo, 2, p->d, p->d);
        ADD("attn.out_proj.bias", p->bo, 1, p->d, 0);
    }
#undef ADD
    return n;
}

static void fill_unif(mmp_rng *r, float *x, size_t n, double bound) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((2 * mmp_rng_uniform53_open(r) - 1) * bound);
}

void mmp_fuse_params_init(mmp_fuse_params *p, uint64_t seed) {
    mmp_rng r = seed;
    size_t D = (size_t)p->d;
    fill_unif(&r, p->wa, D * p->da, 1 / sqrt(p->da));
    fill_unif(&r, p->ba, D, 1 / sqrt(p->da));
    fill_unif(&r, p->wb, D * p->db, 1 / sqrt(p->db));
    fill_unif(&r, p->bb, D, 1 / sqrt(p->db));
    if (p->kind == MMP_FUSEP_GATED) {
        fill_unif(&r, p->wg, D * (size_t)(p->da + p->db), 1 / sqrt(p->da + p->db));
        fill_unif(&r, p->bg, D, 1 / sqrt(p->da + p->db));
    } else if (p->kind == MMP_FUSEP_ATTENTION) {
        fill_unif(&r, p->win, 3 * D * D, sqrt(6.0 / (double)(D + 3 * D))); /* xavier_uniform on [3d, d] */
        memset(p->bin, 0, 3 * D * sizeof(float));
        fill_unif(&r, p->wo, D * D, 1 / sqrt((double)D));
        memset(p->bo, 0, D * sizeof(float));
    }
}

int mmp_fuse_params_out_dim(const mmp_fuse_params *p) { return p->d; }

int mmp_fuse_params_load(mmp_fuse_params *p, const char *path, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    mmp_safetensors st;
    char e2[512];
    if (mmp_st_open(&st, path, err, errlen) < 0) return -1;
    const char *mode = mmp_meta_get(&st.meta, "fuse.mode");
    mmp_fusep_kind kind;
    if (mode) {
        if (strcmp(mode, "gated") == 0) kind = MMP_FUSEP_GATED;
        else if (strcmp(mode, "attention") == 0) kind = MMP_FUSEP_ATTENTION;
        else if (strcmp(mode, "proj") == 0) kind = MMP_FUSEP_PROJ;
        else {
            mmp_errf(err, errlen, "%s: unknown fuse.mode \"%s\"", path, mode);
            mmp_st_close(&st);
            return -1;
        }
    } else {
        kind = mmp_st_get(&st, "gate.weight") ? MMP_FUSEP_GATED
               : mmp_st_get(&st, "attn.in_proj_weight") ? MMP_FUSEP_ATTENTION
                                                          : MMP_FUSEP_PROJ;
    }
    const mmp_tensor *wa = mmp_st_get(&st, "proj_a.weight"), *wb = mmp_st_get(&st, "proj_b.weight");
    if (!wa || !wb || wa->ndim != 2 || wb->ndim != 2 || wa->shape[0] != wb->shape[0]) {
        mmp_errf(err, errlen, "%s: needs proj_a.weight [d, da] and proj_b.weight [d, db]", path);
        mmp_st_close(&st);
        return -1;
    }
    int heads = 0;
    const char *hs = mmp_meta_get(&st.meta, "fuse.heads");
    if (kind == MMP_FUSEP_ATTENTION) {
        if (!hs || (heads = atoi(hs)) <= 0) {
            mmp_errf(err, errlen, "%s: attention checkpoint without a \"fuse.heads\" metadata entry", path);
            mmp_st_close(&st);
            return -1;
        }
    }
    if (mmp_fuse_params_alloc(p, kind, (int)wa->shape[1], (int)wb->shape[1], (int)wa->shape[0], heads, e2, sizeof e2) < 0) {
        mmp_errf(err, errlen, "%s: %s", path, e2);
        mmp_st_close(&st);
        return -1;
    }
    const char *names[8];
    float *data[8];
    int nd[8];
    int64_t shp[8][2];
    int n = mmp_fuse_params_tensors(p, names, data, nd, shp);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) rc = mmp_st_read_f32(&st, names[i], nd[i], shp[i], data[i], err, errlen);
    if (rc) mmp_fuse_params_free(p);
    mmp_st_close(&st);
    return rc;
}

int mmp_fuse_params_save(const mmp_fuse_params *p, const char *path, char *err, size_t errlen) {
    mmp_st_writer w;
    mmp_st_writer_init(&w);
    const char *names[8];
    float *data[8];
    int nd[8];
    int64_t shp[8][2];
    int n = mmp_fuse_params_tensors(p, names, data, nd, shp);
    for (int i = 0; i < n; i++) mmp_st_writer_add_f32(&w, names[i], data[i], nd[i], shp[i]);
    mmp_meta_set(&w.meta, "fuse.mode", mmp_fusep_kind_name(p->kind));
    if (p->kind == MMP_FUSEP_ATTENTION) {
        char hs[32];
        snprintf(hs, sizeof hs, "%d", p->heads);
        mmp_meta_set(&w.meta, "fuse.heads", hs);
    }
    int rc = mmp_st_writer_write(&w, path, err, errlen);
    mmp_st_writer_free(&w);
    return rc;
}

/* ------------------------------------------------------------------ */
/* forward / backward                                                  */
/* ------------------------------------------------------------------ */

size_t mmp_fuse_cache_size(const mmp_fuse_params *p, int N) {
    size_t d = (size_t)p->d;
    switch (p->kind) {
    case MMP_FUSEP_GATED: return (size_t)N * 3 * d;
    case MMP_FUSEP_ATTENTION: return (size_t)N * (2 * d + 6 * d + 2 * d + 4 * (size_t)p->heads);
    default: return 0;
    }
}

static inline float sigmoidf(float z) { return z >= 0 ? 1.0f / (1.0f + expf(-z)) : expf(z) / (1.0f + expf(z)); }

/* attention cache layout for N rows: X [2N, d] | QKV [2N, 3d] | O [2N, d] | P [N, heads, 2, 2] */
void mmp_fuse_forward(const mmp_fuse_params *p, int N, const float *a, const float *b, float *h, float *cache) {
    const int d = p->d, da = p->da, db = p->db;
    if (N <= 0) return;
    if (p->kind == MMP_FUSEP_PROJ) {
        mmp_tx_linear_fwd(h, 2 * d, a, p->wa, p->ba, N, da, d);
        mmp_tx_linear_fwd(h + d, 2 * d, b, p->wb, p->bb, N, db, d);
        return;
    }
    if (p->kind == MMP_FUSEP_GATED) {
        float *own = cache ? NULL : mmp_xmalloc(mmp_fuse_cache_size(p, N) * sizeof(float));
        float *c = cache ? cache : own;
        float *pa = c, *pb = c + (size_t)N * d, *g = c + (size_t)2 * N * d;
        float *ab = mmp_xmalloc((size_t)N * (da + db) * sizeof *ab);
        for (int i = 0; i < N; i++) {
            memcpy(ab + (size_t)i * (da + db), a + (size_t)i * da, (size_t)da * sizeof *ab);
            memcpy(ab + (size_t)i * (da + db) + da, b + (size_t)i * db, (size_t)db * sizeof *ab);
        }
        mmp_tx_linear_fwd(pa, d, a, p->wa, p->ba, N, da, d);
        mmp_tx_linear_fwd(pb, d, b, p->wb, p->bb, N, db, d);
        mmp_tx_linear_fwd(g, d, ab, p->wg, p->bg, N, da + db, d);
        for (size_t i = 0; i < (size_t)N * d; i++) {
            g[i] = sigmoidf(g[i]);
            h[i] = g[i] * pa[i] + (1.0f - g[i]) * pb[i];
        }
        free(ab);
        free(own);
        return;
    }
    /* attention */
    const int nh = p->heads;
    float *own = cache ? NULL : mmp_xmalloc(mmp_fuse_cache_size(p, N) * sizeof(float));
    float *c = cache ? cache : own;
    float *X = c, *QKV = X + (size_t)2 * N * d, *O = QKV + (size_t)6 * N * d, *P = O + (size_t)2 * N * d;
    mmp_tx_linear_fwd(X, 2 * d, a, p->wa, p->ba, N, da, d);     /* token 0 of row i = row 2i of X */
    mmp_tx_linear_fwd(X + d, 2 * d, b, p->wb, p->bb, N, db, d); /* token 1 = row 2i+1 */
    mmp_tx_linear_fwd(QKV, 3 * d, X, p->win, p->bin, 2 * N, d, 3 * d);
    /* N sequences of 2 tokens: P [N, heads, 2, 2] is the engine's att layout */
    int *lens = mmp_xmalloc((size_t)N * sizeof *lens);
    for (int i = 0; i < N; i++) lens[i] = 2;
    mmp_tx_attention_fwd(O, P, QKV, 3 * d, QKV + d, 3 * d, QKV + 2 * d, 3 * d, lens, lens, N, d, nh, 0);
    free(lens);
    float *Y = mmp_xmalloc((size_t)2 * N * d * sizeof *Y);
    mmp_tx_linear_fwd(Y, d, O, p->wo, p->bo, 2 * N, d, d);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < d; j++) h[(size_t)i * d + j] = 0.5f * (Y[(size_t)2 * i * d + j] + Y[(size_t)(2 * i + 1) * d + j]);
    free(Y);
    free(own);
}

void mmp_fuse_backward(const mmp_fuse_params *p, int N, const float *a, const float *b, const float *cache,
                       const float *dh, mmp_fuse_params *g, float *da_out, float *db_out) {
    const int d = p->d, da = p->da, db = p->db;
    if (N <= 0) return;
    /* the input gradients are written: the engine's backward accumulates */
    if (da_out) memset(da_out, 0, (size_t)N * da * sizeof *da_out);
    if (db_out) memset(db_out, 0, (size_t)N * db * sizeof *db_out);
    if (p->kind == MMP_FUSEP_PROJ) {
        mmp_tx_linear_bwd(da_out, g->wa, g->ba, dh, 2 * d, a, p->wa, N, da, d);
        mmp_tx_linear_bwd(db_out, g->wb, g->bb, dh + d, 2 * d, b, p->wb, N, db, d);
        return;
    }
    if (p->kind == MMP_FUSEP_GATED) {
        const float *pa = cache, *pb = cache + (size_t)N * d, *gt = cache + (size_t)2 * N * d;
        float *dpa = mmp_xmalloc((size_t)N * d * sizeof *dpa), *dpb = mmp_xmalloc((size_t)N * d * sizeof *dpb);
        float *dz = mmp_xmalloc((size_t)N * d * sizeof *dz);
        for (size_t i = 0; i < (size_t)N * d; i++) {
            dpa[i] = dh[i] * gt[i];
            dpb[i] = dh[i] * (1.0f - gt[i]);
            dz[i] = dh[i] * (pa[i] - pb[i]) * gt[i] * (1.0f - gt[i]);
        }
        float *ab = mmp_xmalloc((size_t)N * (da + db) * sizeof *ab);
        for (int i = 0; i < N; i++) {
            memcpy(ab + (size_t)i * (da + db), a + (size_t)i * da, (size_t)da * sizeof *ab);
            memcpy(ab + (size_t)i * (da + db) + da, b + (size_t)i * db, (size_t)db * sizeof *ab);
        }
        float *dab = (da_out || db_out) ? mmp_xcalloc((size_t)N * (da + db), sizeof *dab) : NULL;
        mmp_tx_linear_bwd(dab, g->wg, g->bg, dz, d, ab, p->wg, N, da + db, d);
        mmp_tx_linear_bwd(da_out, g->wa, g->ba, dpa, d, a, p->wa, N, da, d);
        mmp_tx_linear_bwd(db_out, g->wb, g->bb, dpb, d, b, p->wb, N, db, d);
        for (int i = 0; dab && i < N; i++) {
            if (da_out)
                for (int j = 0; j < da; j++) da_out[(size_t)i * da + j] += dab[(size_t)i * (da + db) + j];
            if (db_out)
                for (int j = 0; j < db; j++) db_out[(size_t)i * db + j] += dab[(size_t)i * (da + db) + da + j];
        }
        free(dab);
        free(ab);
        free(dpa);
        free(dpb);
        free(dz);
        return;
    }
    /* attention */
    const int nh = p->heads;
    const float *X = cache, *QKV = X + (size_t)2 * N * d, *O = QKV + (size_t)6 * N * d, *P = O + (size_t)2 * N * d;
    float *dY = mmp_xmalloc((size_t)2 * N * d * sizeof *dY);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < d; j++) dY[(size_t)2 * i * d + j] = dY[(size_t)(2 * i + 1) * d + j] = 0.5f * dh[(size_t)i * d + j];
    float *dO = mmp_xcalloc((size_t)2 * N * d, sizeof *dO);
    mmp_tx_linear_bwd(dO, g->wo, g->bo, dY, d, O, p->wo, 2 * N, d, d);
    float *dQKV = mmp_xcalloc((size_t)6 * N * d, sizeof *dQKV);
    int *lens = mmp_xmalloc((size_t)N * sizeof *lens);
    for (int i = 0; i < N; i++) lens[i] = 2;
    mmp_tx_attention_bwd(dQKV, dQKV + d, dQKV + 2 * d, dO, QKV, 3 * d, QKV + d, 3 * d, QKV + 2 * d, 3 * d, P, lens,
                         lens, N, d, nh, 0);
    free(lens);
    float *dX = mmp_xcalloc((size_t)2 * N * d, sizeof *dX);
    mmp_tx_linear_bwd(dX, g->win, g->bin, dQKV, 3 * d, X, p->win, 2 * N, d, 3 * d);
    mmp_tx_linear_bwd(da_out, g->wa, g->ba, dX, 2 * d, a, p->wa, N, da, d);
    mmp_tx_linear_bwd(db_out, g->wb, g->bb, dX + d, 2 * d, b, p->wb, N, db, d);
    free(dY);
    free(dO);
    free(dQKV);
    free(dX);
}
