/* Fusion heads of mmp-train-step (gated, attention: lib/fuse + classifier):
 * - gradients of the whole head (fusion + classifier + weighted, smoothed CE)
 *   against central differences of an independent double-precision reference;
 * - PyTorch parity (tests/fixtures/gen_train_fuse.py): initial logits/fused
 *   vectors and a few AdamW steps with weight decay (and clipping, bce) give the
 *   same losses and weights to 1e-5;
 * - a plain torch state dict loads as a fusion head;
 * - the trainer: init = mmp_fuse_params_init(seed); a saved checkpoint is read
 *   by lib/fuse's loader (mmp-fuse --checkpoint) with the same fusion weights and
 *   fused vectors, and by mmp_trainer_load with bit-identical weights and
 *   optimizer state. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuse/fuse.h"
#include "mmp.h"
#include "testlib.h"
#include "st_testlib.h"
#include "train/head.h"
#include "train/layers.h"
#include "train/optim.h"
#include "train/train.h"

static void cmp(const char *what, const float *a, const float *b, size_t n, double tol) {
    size_t w;
    double r = t_maxrel(a, b, n, tol, tol, &w);
    printf("%-40s n=%-4zu worst %.3g (tol %.0e)\n", what, n, r * tol, tol);
    CHECKF(r <= 1, "%s differs at %zu: %.9g vs %.9g", what, w, a[w], b[w]);
}

/* ------------------------------------------------------------------ */
/* double-precision reference of the head + CE                          */
/* ------------------------------------------------------------------ */

typedef struct {
    int att, heads, da, db, F, C;
} shape_t;

/* P: the head's parameters in mmp_head order (lib/fuse's, then classifier.weight/bias) */
static double ref_loss(const shape_t *s, double **P, const double *a, const double *b, const int64_t *y, int N,
                       const double *cw, double eps_ls) {
    int F = s->F, C = s->C, da = s->da, db = s->db;
    double num = 0, den = 0;
    double *h = calloc((size_t)F, sizeof(double)), *pa = calloc((size_t)F, sizeof(double)),
           *pb = calloc((size_t)F, sizeof(double)), *z = calloc((size_t)C, sizeof(double));
    for (int n = 0; n < N; n++) {
        const double *an = a + n * da, *bn = b + n * db;
        for (int j = 0; j < F; j++) {
            double u = P[1][j], v = P[3][j];
            for (int k = 0; k < da; k++) u += P[0][j * da + k] * an[k];
            for (int k = 0; k < db; k++) v += P[2][j * db + k] * bn[k];
            pa[j] = u;
            pb[j] = v;
        }
        int ci; /* index of classifier.weight */
        if (!s->att) {
            for (int j = 0; j < F; j++) {
                double g = P[5][j];
                for (int k = 0; k < da; k++) g += P[4][j * (da + db) + k] * an[k];
                for (int k = 0; k < db; k++) g += P[4][j * (da + db) + da + k] * bn[k];
                g = 1 / (1 + exp(-g));
                h[j] = g * pa[j] + (1 - g) * pb[j];
            }
            ci = 6;
        } else {
            int H = s->heads, dh = F / H;
            double X[2][64], Q[2][64], K[2][64], V[2][64], O[2][64];
            for (int j = 0; j < F; j++) X[0][j] = pa[j], X[1][j] = pb[j];
            for (int t = 0; t < 2; t++)
                for (int j = 0; j < F; j++) {
                    double q = P[5][j], kk = P[5][F + j], vv = P[5][2 * F + j];
                    for (int k = 0; k < F; k++) {
                        q += P[4][j * F + k] * X[t][k];
                        kk += P[4][(F + j) * F + k] * X[t][k];
                        vv += P[4][(2 * F + j) * F + k] * X[t][k];
                    }
                    Q[t][j] = q, K[t][j] = kk, V[t][j] = vv;
                }
            for (int hd = 0; hd < H; hd++)
                for (int t = 0; t < 2; t++) {
                    double sc[2], mx, se = 0;
                    for (int u = 0; u < 2; u++) {
                        sc[u] = 0;
                        for (int k = 0; k < dh; k++) sc[u] += Q[t][hd * dh + k] * K[u][hd * dh + k];
                        sc[u] /= sqrt((double)dh);
                    }
                    mx = sc[0] > sc[1] ? sc[0] : sc[1];
                    for (int u = 0; u < 2; u++) se += sc[u] = exp(sc[u] - mx);
                    for (int k = 0; k < dh; k++)
                        O[t][hd * dh + k] = (sc[0] * V[0][hd * dh + k] + sc[1] * V[1][hd * dh + k]) / se;
                }
            for (int j = 0; j < F; j++) {
                double y0 = P[7][j], y1 = P[7][j];
                for (int k = 0; k < F; k++) y0 += P[6][j * F + k] * O[0][k], y1 += P[6][j * F + k] * O[1][k];
                h[j] = (y0 + y1) / 2;
            }
            ci = 8;
        }
        double mx = -INFINITY, se = 0;
        for (int c = 0; c < C; c++) {
            double v = P[ci + 1][c];
            for (int j = 0; j < F; j++) v += P[ci][c * F + j] * h[j];
            z[c] = v;
            if (v > mx) mx = v;
        }
        for (int c = 0; c < C; c++) se += exp(z[c] - mx);
        double lse = mx + log(se), wy = cw ? cw[y[n]] : 1, sm = 0;
        for (int c = 0; c < C; c++) sm += (cw ? cw[c] : 1) * (lse - z[c]);
        num += (1 - eps_ls) * wy * (lse - z[y[n]]) + eps_ls / C * sm;
        den += wy;
    }
    free(h); free(pa); free(pb); free(z);
    return num / den;
}

static void test_gradcheck(int att) {
    shape_t s = {att, att ? 2 : 0, 4, 3, 6, 3};
    const int N = 5;
    mmp_head h;
    char err[256];
    CHECK(mmp_head_init_fuse(&h, att ? MMP_HEAD_ATTENTION : MMP_HEAD_GATED, s.da, s.db, s.F, s.heads, s.C, err, sizeof err) == 0);
    CHECK(h.np == (att ? 10 : 8));
    mmp_head_init_weights(&h, 7);
    /* larger weights than the default init so every path matters */
    uint64_t rng = 99;
    for (int i = 0; i < h.np; i++)
        for (size_t k = 0; k < h.params[i].n; k++) h.params[i].w[k] = (float)(mmp_rng_uniform53(&rng) * 1.6 - 0.8);
    float a[5 * 4], b[5 * 3];
    double ad[5 * 4], bd[5 * 3];
    for (int k = 0; k < N * s.da; k++) ad[k] = a[k] = (float)(mmp_rng_uniform53(&rng) * 4 - 2);
    for (int k = 0; k < N * s.db; k++) bd[k] = b[k] = (float)(mmp_rng_uniform53(&rng) * 4 - 2);
    int64_t y[5] = {0, 2, 1, 2, 0};
    float cwf[3] = {1.0f, 2.5f, 0.5f};
    double cw[3] = {1.0, 2.5, 0.5}, ls = 0.1;
    float logits[5 * 3], dz[5 * 3];
    mmp_head_fuse_forward(&h, a, b, N, NULL, logits);
    double lf = mmp_ce_loss(logits, y, N, s.C, cwf, ls, dz);
    mmp_head_fuse_backward(&h, a, b, N, dz);
    double *P[10];
    for (int i = 0; i < h.np; i++) {
        P[i] = malloc(sizeof(double) * h.params[i].n);
        for (size_t k = 0; k < h.params[i].n; k++) P[i][k] = h.params[i].w[k];
    }
    double l0 = ref_loss(&s, P, ad, bd, y, N, cw, ls);
    printf("%s: loss float %.9g, double reference %.9g\n", att ? "attention" : "gated", lf, l0);
    CHECKF(fabs(lf - l0) <= 1e-5 * (1 + fabs(l0)), "loss %.9g vs reference %.9g", lf, l0);
    double worst = 0;
    int nchk = 0;
    for (int i = 0; i < h.np; i++) {
        mmp_param *p = &h.params[i];
        for (size_t k = 0; k < p->n; k++) {
            double keep = P[i][k], e = 1e-6;
            P[i][k] = keep + e;
            double lp = ref_loss(&s, P, ad, bd, y, N, cw, ls);
            P[i][k] = keep - e;
            double lm = ref_loss(&s, P, ad, bd, y, N, cw, ls);
            P[i][k] = keep;
            double fd = (lp - lm) / (2 * e), an = p->g[k];
            double r = fabs(fd - an) / (1e-5 + 1e-3 * fabs(fd));
            if (r > worst) worst = r;
            nchk++;
            CHECKF(r <= 1, "%s %s[%zu]: gradient %.9g, finite difference %.9g", att ? "attention" : "gated", p->name, k, an, fd);
        }
    }
    printf("%s: %d parameter gradients vs central differences: worst %.3g of the tolerance (1e-5 + 1e-3|g|)\n",
           att ? "attention" : "gated", nchk, worst);
    for (int i = 0; i < h.np; i++) free(P[i]);
    mmp_head_free(&h);
}

/* ------------------------------------------------------------------ */
/* PyTorch parity                                                       */
/* ------------------------------------------------------------------ */

static double metanum(const mmp_safetensors *st, const char *k) {
    const char *v = mmp_meta_get(&st->meta, k);
    CHECKF(v != NULL, "metadata %s missing", k);
    return v ? atof(v) : 0;
}

static void test_steps(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/train_fuse/steps_%s.safetensors", name);
    mmp_safetensors st;
    mmp_st_open_or_die(&st, t_root_path(path));
    int att = !strcmp(mmp_meta_get(&st.meta, "head"), "attention"), ce = !strcmp(mmp_meta_get(&st.meta, "loss"), "ce");
    const mmp_tensor *at = t_st_get(&st, "a"), *bt = t_st_get(&st, "b"), *cwt = t_st_get(&st, "init.classifier.weight");
    int N = (int)at->shape[0], da = (int)at->shape[1], db = (int)bt->shape[1];
    int C = (int)cwt->shape[0], F = (int)cwt->shape[1], heads = (int)metanum(&st, "heads");
    mmp_head h;
    char err[256];
    CHECK(mmp_head_init_fuse(&h, att ? MMP_HEAD_ATTENTION : MMP_HEAD_GATED, da, db, F, heads, C, err, sizeof err) == 0);
    for (int i = 0; i < h.np; i++) {
        char nm[160];
        snprintf(nm, sizeof nm, "init.%s", h.params[i].name);
        const mmp_tensor *t = t_st_get(&st, nm);
        CHECKF((size_t)mmp_numel(t->ndim, t->shape) == h.params[i].n, "%s: size", nm);
        memcpy(h.params[i].w, t->data, sizeof(float) * h.params[i].n);
    }
    const float *a = at->data, *b = bt->data, *yf = t_st_get(&st, "y")->data, *tt = t_st_get(&st, "t")->data;
    int64_t *yall = malloc(sizeof(int64_t) * N);
    for (int i = 0; i < N; i++) yall[i] = (int64_t)yf[i];
    /* the initial model on all rows */
    float *lg = malloc(sizeof(float) * N * C), *fz = malloc(sizeof(float) * N * F);
    mmp_head_fuse_forward(&h, a, b, N, fz, lg);
    char what[160];
    snprintf(what, sizeof what, "%s fused0", name);
    cmp(what, fz, t_st_get(&st, "fused0")->data, (size_t)N * F, 1e-5);
    snprintf(what, sizeof what, "%s logits0", name);
    cmp(what, lg, t_st_get(&st, "logits0")->data, (size_t)N * C, 1e-5);

    mmp_optim o;
    mmp_optim_defaults(&o, MMP_OPT_ADAMW);
    o.weight_decay = metanum(&st, "weight_decay");
    double lr = metanum(&st, "lr"), clip = metanum(&st, "clip"), ls = metanum(&st, "label_smoothing");
    int steps = (int)metanum(&st, "steps"), B = (int)metanum(&st, "batch");
    float cw[16];
    int ncw = 0;
    const char *ws = mmp_meta_get(&st.meta, "class_weights");
    while (ws && *ws && ncw < 16) { cw[ncw++] = strtof(ws, (char **)&ws); if (*ws == ',') ws++; }
    float *ba = malloc(sizeof(float) * B * da), *bb = malloc(sizeof(float) * B * db), *btg = malloc(sizeof(float) * B * C);
    float *out = malloc(sizeof(float) * B * C), *dout = malloc(sizeof(float) * B * C), losses[64];
    int64_t by[64];
    for (int t = 0; t < steps; t++) {
        for (int k = 0; k < B; k++) {
            int r = (t * B + k) % N;
            memcpy(ba + k * da, a + r * da, sizeof(float) * da);
            memcpy(bb + k * db, b + r * db, sizeof(float) * db);
            memcpy(btg + k * C, tt + r * C, sizeof(float) * C);
            by[k] = yall[r];
        }
        mmp_head_fuse_forward(&h, ba, bb, B, NULL, out);
        double l = ce ? mmp_ce_loss(out, by, B, C, ncw ? cw : NULL, ls, dout) : mmp_bce_logits_loss(out, btg, B, C, dout);
        mmp_head_fuse_backward(&h, ba, bb, B, dout);
        losses[t] = (float)l;
        if (clip > 0) mmp_clip_grad_norm(h.params, h.np, clip);
        mmp_optim_step(&o, h.params, h.np, t, lr);
    }
    snprintf(what, sizeof what, "%s losses", name);
    cmp(what, losses, t_st_get(&st, "losses")->data, (size_t)steps, 1e-5);
    for (int i = 0; i < h.np; i++) {
        char nm[160];
        snprintf(nm, sizeof nm, "final.%s", h.params[i].name);
        snprintf(what, sizeof what, "%s %s", name, h.params[i].name);
        cmp(what, h.params[i].w, t_st_get(&st, nm)->data, h.params[i].n, 1e-5);
    }
    free(yall); free(lg); free(fz); free(ba); free(bb); free(btg); free(out); free(dout);
    mmp_head_free(&h);
    mmp_st_close(&st);
}

/* a plain torch state dict (FusionClassifier.state_dict()) loads as a head */
static void test_state_dict(void) {
    mmp_trainer tr;
    char err[512];
    int rc = mmp_trainer_load(&tr, t_root_path("tests/fixtures/train_fuse/attention_sd.safetensors"), NULL, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    if (rc) return;
    CHECK(tr.cfg.head == MMP_HEAD_ATTENTION && tr.head.heads == 2 && tr.head.fuse_dim == 8 && tr.in_dim == 7 &&
          tr.pair_dim == 5 && tr.ncls == 3 && tr.mean == NULL);
    mmp_safetensors st;
    mmp_st_open_or_die(&st, t_root_path("tests/fixtures/train_fuse/steps_attention_ce.safetensors"));
    const mmp_tensor *at = t_st_get(&st, "a");
    int N = (int)at->shape[0];
    float *lg = malloc(sizeof(float) * N * 3);
    mmp_trainer_infer_fuse(&tr, at->data, t_st_get(&st, "b")->data, N, NULL, lg);
    cmp("state dict: logits0", lg, t_st_get(&st, "logits0")->data, (size_t)N * 3, 1e-5);
    free(lg);
    mmp_st_close(&st);
    mmp_trainer_free(&tr);
}

/* ------------------------------------------------------------------ */
/* trainer: init, checkpoint read by lib/fuse and by the trainer        */
/* ------------------------------------------------------------------ */

static void test_trainer(int att) {
    const int N = 40, da = 5, db = 4;
    mmp_dataset ds;
    memset(&ds, 0, sizeof ds);
    mmp_header_init(&ds.hdr);
    ds.n = N, ds.dim = da, ds.dim2 = db, ds.ncls = 2;
    ds.x = malloc(sizeof(float) * N * da);
    ds.x2 = malloc(sizeof(float) * N * db);
    ds.y = malloc(sizeof(int64_t) * N);
    snprintf(ds.name, sizeof ds.name, "mem");
    uint64_t rng = 5;
    for (int i = 0; i < N * da; i++) ds.x[i] = (float)(mmp_rng_uniform53(&rng) * 2 - 1);
    for (int i = 0; i < N * db; i++) ds.x2[i] = (float)(mmp_rng_uniform53(&rng) * 2 - 1);
    for (int i = 0; i < N; i++) ds.y[i] = (ds.x[i * da] > 0) ^ (ds.x2[i * db] > 0);
    mmp_meta_set(&ds.hdr.meta, "text_provenance", "TXT");
    mmp_train_cfg cfg;
    mmp_train_cfg_defaults(&cfg);
    char err[512];
    CHECK(mmp_train_cfg_set(&cfg, "head", att ? "attention" : "gated", err, sizeof err) == 0);
    CHECK(mmp_train_cfg_set(&cfg, "fuse_dim", "8", err, sizeof err) == 0);
    CHECK(mmp_train_cfg_set(&cfg, "heads", "2", err, sizeof err) == 0);
    CHECK(mmp_train_cfg_set(&cfg, "batch_size", "16", err, sizeof err) == 0);
    CHECK(mmp_train_cfg_set(&cfg, "seed", "3", err, sizeof err) == 0);
    CHECK(mmp_train_cfg_set(&cfg, "clip_grad_norm", "1", err, sizeof err) == 0);
    mmp_trainer tr;
    int rc = mmp_trainer_init(&tr, &cfg, &ds, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    if (rc) return;
    CHECK(tr.mean == NULL); /* fusion heads: no standardization */
    CHECK(tr.text_provenance && !strcmp(tr.text_provenance, "TXT"));
    /* the fusion module starts as mmp_fuse_params_init(seed) (= mmp-fuse --init --seed 3) */
    mmp_fuse_params ref;
    CHECK(mmp_fuse_params_alloc(&ref, att ? MMP_FUSEP_ATTENTION : MMP_FUSEP_GATED, da, db, 8, att ? 2 : 0, err, sizeof err) == 0);
    mmp_fuse_params_init(&ref, 3);
    const char *nm[8];
    float *dt[8];
    int nd[8];
    int64_t sh[8][2];
    int nt = mmp_fuse_params_tensors(&ref, nm, dt, nd, sh);
    for (int i = 0; i < nt; i++) {
        mmp_param *p = mmp_head_param(&tr.head, nm[i]);
        CHECKF(p && !memcmp(p->w, dt[i], sizeof(float) * p->n), "init of %s differs from mmp_fuse_params_init", nm[i]);
    }
    mmp_fuse_params_free(&ref);
    double l0, m0, l1, m1;
    mmp_trainer_evaluate(&tr, &ds, &l0, &m0);
    for (int e = 0; e < 3; e++) mmp_trainer_epoch(&tr, &ds, NULL, 0);
    mmp_trainer_evaluate(&tr, &ds, &l1, &m1);
    printf("%s trainer: loss %.4f -> %.4f after 3 epochs\n", att ? "attention" : "gated", l0, l1);
    CHECK(isfinite(l1) && l1 < l0);
    const char *ck = att ? "fuse_att.safetensors" : "fuse_gated.safetensors";
    CHECKF(mmp_trainer_save(&tr, ck, err, sizeof err) == 0, "%s", err);
    /* lib/fuse reads the fusion part (and ignores classifier.* / optim.*) */
    mmp_fuse_params fp;
    rc = mmp_fuse_params_load(&fp, ck, err, sizeof err);
    CHECKF(rc == 0, "mmp_fuse_params_load: %s", err);
    if (rc == 0) {
        CHECK(fp.kind == (att ? MMP_FUSEP_ATTENTION : MMP_FUSEP_GATED) && fp.da == da && fp.db == db && fp.d == 8 &&
              fp.heads == (att ? 2 : 0));
        nt = mmp_fuse_params_tensors(&fp, nm, dt, nd, sh);
        for (int i = 0; i < nt; i++) {
            mmp_param *p = mmp_head_param(&tr.head, nm[i]);
            CHECKF(p && !memcmp(p->w, dt[i], sizeof(float) * p->n), "%s differs in lib/fuse's reading", nm[i]);
        }
        float *h1 = malloc(sizeof(float) * N * 8), *h2 = malloc(sizeof(float) * N * 8), *lg = malloc(sizeof(float) * N * 2);
        mmp_fuse_forward(&fp, N, ds.x, ds.x2, h1, NULL);
        mmp_trainer_infer_fuse(&tr, ds.x, ds.x2, N, h2, lg);
        CHECKF(!memcmp(h1, h2, sizeof(float) * N * 8), "mmp_fuse_forward differs from the head's fused vectors");
        free(h1); free(h2); free(lg);
        mmp_fuse_params_free(&fp);
    }
    /* and the trainer reads back the same bits, optimizer state included */
    mmp_trainer t2;
    rc = mmp_trainer_load(&t2, ck, NULL, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    if (rc == 0) {
        CHECK(t2.head.np == tr.head.np && t2.step == tr.step && t2.cfg.fuse_dim == 8 && t2.mean == NULL);
        for (int i = 0; i < tr.head.np && i < t2.head.np; i++) {
            mmp_param *p = &tr.head.params[i], *q = &t2.head.params[i];
            CHECKF(!strcmp(p->name, q->name) && !memcmp(p->w, q->w, sizeof(float) * p->n) && q->s1 && q->s2 &&
                   !memcmp(p->s1, q->s1, sizeof(float) * p->n) && !memcmp(p->s2, q->s2, sizeof(float) * p->n),
                   "%s: checkpoint round trip differs", p->name);
        }
        /* one more epoch each: identical */
        mmp_trainer_epoch(&tr, &ds, NULL, 0);
        mmp_trainer_epoch(&t2, &ds, NULL, 0);
        for (int i = 0; i < tr.head.np && i < t2.head.np; i++)
            CHECKF(!memcmp(tr.head.params[i].w, t2.head.params[i].w, sizeof(float) * tr.head.params[i].n),
                   "%s: resumed epoch differs", tr.head.params[i].name);
        mmp_trainer_free(&t2);
    }
    /* bad configurations */
    mmp_trainer t3;
    CHECK(mmp_train_cfg_set(&cfg, "standardize", "1", err, sizeof err) == 0);
    CHECK(mmp_trainer_init(&t3, &cfg, &ds, err, sizeof err) != 0 && strstr(err, "--standardize"));
    mmp_trainer_free(&t3);
    CHECK(mmp_train_cfg_set(&cfg, "standardize", "auto", err, sizeof err) == 0);
    if (att) {
        CHECK(mmp_train_cfg_set(&cfg, "heads", "3", err, sizeof err) == 0);
        CHECK(mmp_trainer_init(&t3, &cfg, &ds, err, sizeof err) != 0 && strstr(err, "divisible"));
        printf("heads 3, fuse-dim 8: %s\n", err);
        mmp_trainer_free(&t3);
    }
    mmp_trainer_free(&tr);
    mmp_dataset_free(&ds);
}

int main(void) {
    mmp_train_init_blas();
    test_gradcheck(0);
    test_gradcheck(1);
    test_steps("gated_ce");
    test_steps("gated_bce_clip");
    test_steps("attention_ce");
    test_state_dict();
    test_trainer(0);
    test_trainer(1);
    TEST_END();
}
