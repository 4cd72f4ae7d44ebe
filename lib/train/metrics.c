/* train/metrics.c: sklearn-identical classification report, retrieval recall@k. */
#include "train/metrics.h"

#include "nn/gemm.h"
#undef I
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "mmp.h"

/* numpy/core/src/umath/loops_utils.h.src pairwise_sum (PW_BLOCKSIZE 128). */
static double pairwise(const double *a, int64_t n) {
    if (n < 8) {
        double res = 0.;
        for (int64_t i = 0; i < n; i++) res += a[i];
        return res;
    } else if (n <= 128) {
        double r[8], res;
        int64_t i;
        for (int k = 0; k < 8; k++) r[k] = a[k];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int k = 0; k < 8; k++) r[k] += a[i + k];
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    } else {
        int64_t n2 = n / 2;
        n2 -= n2 % 8;
        return pairwise(a, n2) + pairwise(a + n2, n - n2);
    }
}

/* add.reduce: the identity 0.0 seeds the accumulator, all n elements are summed pairwise. */
double mmp_np_sum(const double *a, int64_t n) {
    if (n <= 0) return 0.0;
    return 0.0 + pairwise(a, n);
}

static double prf_divide(double num, double den) { return den == 0 ? 0.0 : num / den; }

static double f1_of(double p, double r) {
    double denom = p + r; /* beta2 * precision + recall, beta2 = 1 */
    if (denom == 0.0) denom = 1;
    return 2.0 * p * r / denom;
}

int mmp_clsreport_compute(mmp_clsreport *r, const int64_t *yt, const int64_t *yp, int64_t n, int C,
                          int64_t *bad) {
    memset(r, 0, sizeof *r);
    r->C = C;
    r->n = n;
    r->cm = mmp_xcalloc((size_t)C * (size_t)C, sizeof(int64_t));
    r->precision = mmp_xcalloc((size_t)C, sizeof(double));
    r->recall = mmp_xcalloc((size_t)C, sizeof(double));
    r->f1 = mmp_xcalloc((size_t)C, sizeof(double));
    r->support = mmp_xcalloc((size_t)C, sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) {
        if (yt[i] < 0 || yt[i] >= C || yp[i] < 0 || yp[i] >= C) {
            if (bad) *bad = i;
            return -1;
        }
        r->cm[yt[i] * C + yp[i]]++;
    }
    int64_t tp_all = 0, pred_all = 0, true_all = 0;
    double *w = mmp_xcalloc((size_t)C, sizeof(double)), *prod = mmp_xcalloc((size_t)C, sizeof(double));
    for (int c = 0; c < C; c++) {
        int64_t tp = r->cm[c * C + c], pred = 0, tru = 0;
        for (int k = 0; k < C; k++) {
            pred += r->cm[k * C + c];
            tru += r->cm[c * C + k];
        }
        r->support[c] = tru;
        r->precision[c] = prf_divide((double)tp, (double)pred);
        r->recall[c] = prf_divide((double)tp, (double)tru);
        r->f1[c] = f1_of(r->precision[c], r->recall[c]);
        tp_all += tp;
        pred_all += pred;
        true_all += tru;
        w[c] = (double)tru;
    }
    double mp = prf_divide((double)tp_all, (double)pred_all);
    double mr = prf_divide((double)tp_all, (double)true_all);
    r->accuracy = mp;
    r->micro_f1 = f1_of(mp, mr);
    const double *arr[3] = {r->precision, r->recall, r->f1};
    double wsum = mmp_np_sum(w, C);
    for (int k = 0; k < 3; k++) {
        r->macro[k] = mmp_np_sum(arr[k], C) / (double)C;
        if (wsum == 0) {
            r->weighted[k] = 0.0;
        } else {
            for (int c = 0; c < C; c++) prod[c] = arr[k][c] * w[c];
            r->weighted[k] = mmp_np_sum(prod, C) / wsum;
        }
    }
    free(w);
    free(prod);
    return 0;
}

void mmp_clsreport_free(mmp_clsreport *r) {
    free(r->cm); free(r->precision); free(r->recall); free(r->f1); free(r->support);
    memset(r, 0, sizeof *r);
}

/* growing string buffer */
typedef struct { char *s; size_t n, cap; } sbuf;
static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (b->s && (size_t)k < b->cap - b->n) { b->n += (size_t)k; return; }
        b->cap = (b->cap + (size_t)k + 1) * 2;
        b->s = mmp_xrealloc(b->s, b->cap);
        if (b->n == 0) b->s[0] = 0;
    }
}

/* Python's len() counts code points: pad UTF-8 strings the same way. */
static int u8len(const char *s) {
    int n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}
static void sb_rjust(sbuf *b, const char *s, int width) {
    for (int k = u8len(s); k < width; k++) sb_printf(b, " ");
    sb_printf(b, "%s", s);
}

/* One row of sklearn's report: the name right-aligned, then precision,
 * recall, f1-score and support. */
static void sb_row(sbuf *b, const char *name, int width, int digits, double p, double r, double f,
                   int64_t support) {
    sb_rjust(b, name, width);
    sb_printf(b, "  %9.*f %9.*f %9.*f %9lld\n", digits, p, digits, r, digits, f, (long long)support);
}

/* The heading and the per-class rows that both reports share; returns the
 * width of the name column (at least len("weighted avg")). */
static int sb_class_rows(sbuf *b, int C, char *const *names, const double *p, const double *r,
                         const double *f, const int64_t *support, int digits) {
    char tmp[32];
    int width = 12; /* len("weighted avg") */
    if (digits > width) width = digits;
    for (int c = 0; c < C; c++) {
        int l = names ? u8len(names[c]) : snprintf(tmp, sizeof tmp, "%d", c);
        if (l > width) width = l;
    }
    sb_rjust(b, "", width);
    sb_printf(b, "  %9s %9s %9s %9s\n\n", "precision", "recall", "f1-score", "support");
    for (int c = 0; c < C; c++) {
        if (!names) snprintf(tmp, sizeof tmp, "%d", c);
        sb_row(b, names ? names[c] : tmp, width, digits, p[c], r[c], f[c], support[c]);
    }
    sb_printf(b, "\n");
    return width;
}

char *mmp_clsreport_text(const mmp_clsreport *r, char *const *names, int digits) {
    sbuf b = {0};
    int width = sb_class_rows(&b, r->C, names, r->precision, r->recall, r->f1, r->support, digits);
    sb_rjust(&b, "accuracy", width);
    sb_printf(&b, "  %9s %9s %9.*f %9lld\n", "", "", digits, r->micro_f1, (long long)r->n);
    sb_row(&b, "macro avg", width, digits, r->macro[0], r->macro[1], r->macro[2], r->n);
    sb_row(&b, "weighted avg", width, digits, r->weighted[0], r->weighted[1], r->weighted[2], r->n);
    return b.s;
}

char *mmp_confusion_text(const mmp_clsreport *r, char *const *names) {
    sbuf b = {0};
    int64_t mx = 0;
    for (int k = 0; k < r->C * r->C; k++) mx = r->cm[k] > mx ? r->cm[k] : mx;
    char tmp[32];
    int cw = snprintf(tmp, sizeof tmp, "%lld", (long long)mx);
    int iw = snprintf(tmp, sizeof tmp, "%d", r->C - 1);
    if (iw > cw) cw = iw;
    int nw = 4;
    for (int c = 0; c < r->C; c++) {
        int l = names ? u8len(names[c]) : 0;
        nw = l > nw ? l : nw;
    }
    sb_printf(&b, "confusion matrix (rows: true, columns: predicted)\n");
    sb_rjust(&b, "", nw + iw + 1);
    for (int c = 0; c < r->C; c++) sb_printf(&b, " %*d", cw, c);
    sb_printf(&b, "\n");
    for (int c = 0; c < r->C; c++) {
        sb_rjust(&b, names ? names[c] : "", nw);
        sb_printf(&b, " %*d", iw, c);
        for (int k = 0; k < r->C; k++) sb_printf(&b, " %*lld", cw, (long long)r->cm[c * r->C + k]);
        sb_printf(&b, "\n");
    }
    return b.s;
}

const char *const mmp_mlreport_avg_names[4] = {"micro avg", "macro avg", "weighted avg", "samples avg"};

void mmp_mlreport_compute(mmp_mlreport *r, const uint8_t *yt, const uint8_t *yp, int64_t n, int C) {
    memset(r, 0, sizeof *r);
    r->C = C;
    r->n = n;
    r->precision = mmp_xcalloc((size_t)C, sizeof(double));
    r->recall = mmp_xcalloc((size_t)C, sizeof(double));
    r->f1 = mmp_xcalloc((size_t)C, sizeof(double));
    r->support = mmp_xcalloc((size_t)C, sizeof(int64_t));
    int64_t *tp = mmp_xcalloc((size_t)C, sizeof(int64_t)), *pr = mmp_xcalloc((size_t)C, sizeof(int64_t));
    double *sp = mmp_xcalloc((size_t)(n > 0 ? n : 1), sizeof(double)), *sr = mmp_xcalloc((size_t)(n > 0 ? n : 1), sizeof(double));
    double *sf = mmp_xcalloc((size_t)(n > 0 ? n : 1), sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        int64_t ti = 0, pi = 0, ci = 0;
        for (int c = 0; c < C; c++) {
            int a = yt[i * C + c] != 0, b = yp[i * C + c] != 0;
            tp[c] += a && b;
            pr[c] += b;
            r->support[c] += a;
            ti += a && b;
            pi += b;
            ci += a;
        }
        sp[i] = prf_divide((double)ti, (double)pi);
        sr[i] = prf_divide((double)ti, (double)ci);
        sf[i] = f1_of(sp[i], sr[i]);
    }
    int64_t tp_all = 0, pred_all = 0;
    double *w = mmp_xcalloc((size_t)C, sizeof(double)), *prod = mmp_xcalloc((size_t)C, sizeof(double));
    for (int c = 0; c < C; c++) {
        r->precision[c] = prf_divide((double)tp[c], (double)pr[c]);
        r->recall[c] = prf_divide((double)tp[c], (double)r->support[c]);
        r->f1[c] = f1_of(r->precision[c], r->recall[c]);
        tp_all += tp[c];
        pred_all += pr[c];
        r->total_support += r->support[c];
        w[c] = (double)r->support[c];
    }
    r->avg[0][0] = prf_divide((double)tp_all, (double)pred_all);
    r->avg[0][1] = prf_divide((double)tp_all, (double)r->total_support);
    r->avg[0][2] = f1_of(r->avg[0][0], r->avg[0][1]);
    const double *arr[3] = {r->precision, r->recall, r->f1}, *sarr[3] = {sp, sr, sf};
    double wsum = mmp_np_sum(w, C);
    for (int k = 0; k < 3; k++) {
        r->avg[1][k] = mmp_np_sum(arr[k], C) / (double)C;
        if (wsum == 0) r->avg[2][k] = 0.0;
        else {
            for (int c = 0; c < C; c++) prod[c] = arr[k][c] * w[c];
            r->avg[2][k] = mmp_np_sum(prod, C) / wsum;
        }
        r->avg[3][k] = n > 0 ? mmp_np_sum(sarr[k], n) / (double)n : 0.0;
    }
    free(tp); free(pr); free(sp); free(sr); free(sf); free(w); free(prod);
}

void mmp_mlreport_free(mmp_mlreport *r) {
    free(r->precision); free(r->recall); free(r->f1); free(r->support);
    memset(r, 0, sizeof *r);
}

char *mmp_mlreport_text(const mmp_mlreport *r, char *const *names, int digits) {
    sbuf b = {0};
    int width = sb_class_rows(&b, r->C, names, r->precision, r->recall, r->f1, r->support, digits);
    for (int a = 0; a < 4; a++)
        sb_row(&b, mmp_mlreport_avg_names[a], width, digits, r->avg[a][0], r->avg[a][1], r->avg[a][2],
               r->total_support);
    return b.s;
}

static void normalize_rows(const float *x, int64_t N, int64_t E, float *out) {
    for (int64_t i = 0; i < N; i++) {
        double s = 0;
        for (int64_t k = 0; k < E; k++) s += (double)x[i * E + k] * x[i * E + k];
        double d = sqrt(s);
        if (d < 1e-12) d = 1e-12;
        for (int64_t k = 0; k < E; k++) out[i * E + k] = (float)(x[i * E + k] / d);
    }
}

void mmp_retrieval_recall(const float *a, const float *b, int64_t N, int64_t E, const int *ks,
                          int nk, double *a2b, double *b2a) {
    float *na = mmp_xmalloc(sizeof(float) * (size_t)(N * E)), *nb = mmp_xmalloc(sizeof(float) * (size_t)(N * E));
    normalize_rows(a, N, E, na);
    normalize_rows(b, N, E, nb);
    int64_t *hit_ab = mmp_xcalloc((size_t)nk, sizeof(int64_t)), *hit_ba = mmp_xcalloc((size_t)nk, sizeof(int64_t));
    int64_t *rank_b = mmp_xcalloc((size_t)N, sizeof(int64_t));
    float *diag = mmp_xmalloc(sizeof(float) * (size_t)N);
    /* diagonal scores computed the way sgemm computes the block rows is not
     * guaranteed; use one blocked product and read the diagonal from it */
    int64_t blk = 256;
    float *S = mmp_xmalloc(sizeof(float) * (size_t)(blk * N));
    /* pass 1: diagonal */
    for (int64_t i0 = 0; i0 < N; i0 += blk) {
        int64_t m = N - i0 < blk ? N - i0 : blk;
        mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, (int)m, (int)N, (int)E, 1.0f, na + i0 * E,
                    (int)E, nb, (int)E, 0.0f, S, (int)N);
        for (int64_t r = 0; r < m; r++) diag[i0 + r] = S[r * N + i0 + r];
        (void)0;
    }
    /* pass 2: ranks both ways from the same products */
    for (int64_t i0 = 0; i0 < N; i0 += blk) {
        int64_t m = N - i0 < blk ? N - i0 : blk;
        mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, (int)m, (int)N, (int)E, 1.0f, na + i0 * E,
                    (int)E, nb, (int)E, 0.0f, S, (int)N);
        for (int64_t r = 0; r < m; r++) {
            int64_t i = i0 + r, rank = 0;
            float d = diag[i];
            for (int64_t j = 0; j < N; j++) {
                float s = S[r * N + j];
                if (s > d || (s == d && j < i)) rank++;
                /* for text j as the query: image i competes with image j */
                float dj = diag[j];
                if (j != i && (s > dj || (s == dj && i < j))) rank_b[j]++;
            }
            for (int k = 0; k < nk; k++) hit_ab[k] += rank < ks[k];
        }
    }
    for (int64_t j = 0; j < N; j++)
        for (int k = 0; k < nk; k++) hit_ba[k] += rank_b[j] < ks[k];
    for (int k = 0; k < nk; k++) {
        a2b[k] = N ? (double)hit_ab[k] / (double)N : 0;
        b2a[k] = N ? (double)hit_ba[k] / (double)N : 0;
    }
    free(na); free(nb); free(hit_ab); free(hit_ba); free(rank_b); free(diag); free(S);
}

void mmp_json_str(FILE *f, const char *s) { mmp_json_put_str(f, s, MMP_JSON_ESC_NT); }
