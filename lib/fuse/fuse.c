/* Fusion modules: fixed combinations, random projections, learned gated and
 * attention fusion with forward and backward. See fuse.h. */
#include "fuse/fuse.h"

#include "nn/gemm.h"
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

/* y[N, out] (row stride ldy) = x[N, in] (stride ldx) W[out, in]^T + b */
static void lin_fwd(float *y, int ldy, const float *x, int ldx, int N, int in, int out, const float *W, const float *b) {
    for (int i = 0; i < N; i++) memcpy(y + (size_t)i * ldy, b, (size_t)out * sizeof *y);
    mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, N, out, in, 1.0f, x, ldx, W, in, 1.0f, y, ldy);
}

/* dW[out, in] += dy^T x; db[out] += sum_rows dy; dx[N, in] = dy W (when dx) */
static void lin_bwd(const float *dy, int ldy, const float *x, int ldx, int N, int in, int out, const float *W,
                    float *dW, float *db, float *dx, int lddx) {
    mmp_sgemm(MMP_GEMM_T, MMP_GEMM_N, out, in, N, 1.0f, dy, ldy, x, ldx, 1.0f, dW, in);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < out; j++) db[j] += dy[(size_t)i * ldy + j];
    if (dx) mmp_sgemm(MMP_GEMM_N, MMP_GEMM_N, N, in, out, 1.0f, dy, ldy, W, in, 0.0f, dx, lddx);
}

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
        lin_fwd(h, 2 * d, a, da, N, da, d, p->wa, p->ba);
        lin_fwd(h + d, 2 * d, b, db, N, db, d, p->wb, p->bb);
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
        lin_fwd(pa, d, a, da, N, da, d, p->wa, p->ba);
        lin_fwd(pb, d, b, db, N, db, d, p->wb, p->bb);
        lin_fwd(g, d, ab, da + db, N, da + db, d, p->wg, p->bg);
        for (size_t i = 0; i < (size_t)N * d; i++) {
            g[i] = sigmoidf(g[i]);
            h[i] = g[i] * pa[i] + (1.0f - g[i]) * pb[i];
        }
        free(ab);
        free(own);
        return;
    }
    /* attention */
    const int nh = p->heads, dh = d / nh;
    const float scale = 1.0f / sqrtf((float)dh);
    float *own = cache ? NULL : mmp_xmalloc(mmp_fuse_cache_size(p, N) * sizeof(float));
    float *c = cache ? cache : own;
    float *X = c, *QKV = X + (size_t)2 * N * d, *O = QKV + (size_t)6 * N * d, *P = O + (size_t)2 * N * d;
    lin_fwd(X, 2 * d, a, da, N, da, d, p->wa, p->ba);     /* token 0 of row i = row 2i of X */
    lin_fwd(X + d, 2 * d, b, db, N, db, d, p->wb, p->bb); /* token 1 = row 2i+1 */
    lin_fwd(QKV, 3 * d, X, d, 2 * N, d, 3 * d, p->win, p->bin);
    for (int i = 0; i < N; i++) {
        for (int hd = 0; hd < nh; hd++) {
            float *Pi = P + ((size_t)i * nh + hd) * 4;
            for (int t = 0; t < 2; t++) {
                const float *q = QKV + (size_t)(2 * i + t) * 3 * d + hd * dh;
                float s[2];
                for (int u = 0; u < 2; u++) {
                    const float *k = QKV + (size_t)(2 * i + u) * 3 * d + d + hd * dh;
                    float acc = 0;
                    for (int j = 0; j < dh; j++) acc += q[j] * k[j];
                    s[u] = acc * scale;
                }
                float mx = s[0] > s[1] ? s[0] : s[1];
                float e0 = expf(s[0] - mx), e1 = expf(s[1] - mx), inv = 1.0f / (e0 + e1);
                Pi[t * 2 + 0] = e0 * inv;
                Pi[t * 2 + 1] = e1 * inv;
                float *o = O + (size_t)(2 * i + t) * d + hd * dh;
                const float *v0 = QKV + (size_t)(2 * i) * 3 * d + 2 * d + hd * dh, *v1 = v0 + 3 * d;
                for (int j = 0; j < dh; j++) o[j] = Pi[t * 2] * v0[j] + Pi[t * 2 + 1] * v1[j];
            }
        }
    }
    float *Y = mmp_xmalloc((size_t)2 * N * d * sizeof *Y);
    lin_fwd(Y, d, O, d, 2 * N, d, d, p->wo, p->bo);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < d; j++) h[(size_t)i * d + j] = 0.5f * (Y[(size_t)2 * i * d + j] + Y[(size_t)(2 * i + 1) * d + j]);
    free(Y);
    free(own);
}

void mmp_fuse_backward(const mmp_fuse_params *p, int N, const float *a, const float *b, const float *cache,
                       const float *dh, mmp_fuse_params *g, float *da_out, float *db_out) {
    const int d = p->d, da = p->da, db = p->db;
    if (N <= 0) return;
    if (p->kind == MMP_FUSEP_PROJ) {
        lin_bwd(dh, 2 * d, a, da, N, da, d, p->wa, g->wa, g->ba, da_out, da);
        lin_bwd(dh + d, 2 * d, b, db, N, db, d, p->wb, g->wb, g->bb, db_out, db);
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
        float *dab = (da_out || db_out) ? mmp_xmalloc((size_t)N * (da + db) * sizeof *dab) : NULL;
        lin_bwd(dz, d, ab, da + db, N, da + db, d, p->wg, g->wg, g->bg, dab, da + db);
        lin_bwd(dpa, d, a, da, N, da, d, p->wa, g->wa, g->ba, da_out, da);
        lin_bwd(dpb, d, b, db, N, db, d, p->wb, g->wb, g->bb, db_out, db);
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
    const int nh = p->heads, dhd = d / nh;
    const float scale = 1.0f / sqrtf((float)dhd);
    const float *X = cache, *QKV = X + (size_t)2 * N * d, *O = QKV + (size_t)6 * N * d, *P = O + (size_t)2 * N * d;
    float *dY = mmp_xmalloc((size_t)2 * N * d * sizeof *dY);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < d; j++) dY[(size_t)2 * i * d + j] = dY[(size_t)(2 * i + 1) * d + j] = 0.5f * dh[(size_t)i * d + j];
    float *dO = mmp_xmalloc((size_t)2 * N * d * sizeof *dO);
    lin_bwd(dY, d, O, d, 2 * N, d, d, p->wo, g->wo, g->bo, dO, d);
    float *dQKV = mmp_xcalloc((size_t)6 * N * d, sizeof *dQKV);
    for (int i = 0; i < N; i++) {
        for (int hd = 0; hd < nh; hd++) {
            const float *Pi = P + ((size_t)i * nh + hd) * 4;
            float dP[4], dS[4];
            for (int t = 0; t < 2; t++) {
                const float *dot = dO + (size_t)(2 * i + t) * d + hd * dhd;
                for (int u = 0; u < 2; u++) {
                    const float *v = QKV + (size_t)(2 * i + u) * 3 * d + 2 * d + hd * dhd;
                    float acc = 0;
                    for (int j = 0; j < dhd; j++) acc += dot[j] * v[j];
                    dP[t * 2 + u] = acc;
                    /* dV[u] += P[t][u] dO[t] */
                    float *dv = dQKV + (size_t)(2 * i + u) * 3 * d + 2 * d + hd * dhd;
                    for (int j = 0; j < dhd; j++) dv[j] += Pi[t * 2 + u] * dot[j];
                }
                float rs = Pi[t * 2] * dP[t * 2] + Pi[t * 2 + 1] * dP[t * 2 + 1];
                for (int u = 0; u < 2; u++) dS[t * 2 + u] = Pi[t * 2 + u] * (dP[t * 2 + u] - rs) * scale;
            }
            for (int t = 0; t < 2; t++) {
                float *dq = dQKV + (size_t)(2 * i + t) * 3 * d + hd * dhd;
                float *dk = dQKV + (size_t)(2 * i + t) * 3 * d + d + hd * dhd;
                for (int u = 0; u < 2; u++) {
                    const float *k = QKV + (size_t)(2 * i + u) * 3 * d + d + hd * dhd;
                    const float *q = QKV + (size_t)(2 * i + u) * 3 * d + hd * dhd;
                    for (int j = 0; j < dhd; j++) {
                        dq[j] += dS[t * 2 + u] * k[j]; /* dQ[t] = sum_u dS[t][u] K[u] */
                        dk[j] += dS[u * 2 + t] * q[j]; /* dK[t] = sum_u dS[u][t] Q[u] */
                    }
                }
            }
        }
    }
    float *dX = mmp_xmalloc((size_t)2 * N * d * sizeof *dX);
    lin_bwd(dQKV, 3 * d, X, d, 2 * N, d, 3 * d, p->win, g->win, g->bin, dX, d);
    lin_bwd(dX, 2 * d, a, da, N, da, d, p->wa, g->wa, g->ba, da_out, da);
    lin_bwd(dX + d, 2 * d, b, db, N, db, d, p->wb, g->wb, g->bb, db_out, db);
    free(dY);
    free(dO);
    free(dQKV);
    free(dX);
}
