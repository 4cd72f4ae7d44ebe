/* Classification report vs scikit-learn 1.2 (fixtures from
 * tests/fixtures/gen_train.py): text identical for digits 2 and 4, the
 * output_dict numbers identical to the bit; confusion matrix; retrieval
 * recall@k on a hand-made case. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "testlib.h"
#include "train/metrics.h"

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); exit(1); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) exit(1);
    s[n] = 0;
    fclose(f);
    return s;
}

/* classes metadata is a JSON list of simple strings */
static int parse_names(const char *js, char **names) {
    int n = 0;
    const char *p = js;
    while ((p = strchr(p, '"'))) {
        const char *q = strchr(p + 1, '"');
        names[n] = strndup(p + 1, (size_t)(q - p - 1));
        n++;
        p = q + 1;
    }
    return n;
}

/* fixture tests/fixtures/train/report_NAME.safetensors; names[C] from its
 * classes; returns C */
static int open_case(const char *name, mmp_safetensors *st, char **names) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/train/report_%s.safetensors", name);
    mmp_st_open_or_die(st, t_root_path(path));
    return parse_names(mmp_meta_get(&st->meta, "classes"), names);
}

/* per-class precision, recall, f1 exactly e's rows [p, r, f1, support]; support checked */
static int per_class_exact(int C, const double *prec, const double *rec, const double *f1, const int64_t *support,
                           const double *e) {
    int exact = 1;
    for (int c = 0; c < C; c++) {
        exact &= prec[c] == e[c * 4] && rec[c] == e[c * 4 + 1] && f1[c] == e[c * 4 + 2];
        CHECK((double)support[c] == e[c * 4 + 3]);
    }
    return exact;
}

/* the text report (got, freed here) equals report_NAME_dDIGITS.txt */
static void check_text(const char *name, int digits, char *got) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/train/report_%s_d%d.txt", name, digits);
    char *want = slurp(t_root_path(path));
    CHECKF(strcmp(got, want) == 0, "%s digits=%d text differs:\n--- got\n%s--- sklearn\n%s", name, digits, got, want);
    free(want);
    free(got);
}

static void check_case(const char *name) {
    mmp_safetensors st;
    char *names[64];
    int C = open_case(name, &st, names);
    const mmp_tensor *yt = mmp_st_get(&st, "y_true"), *yp = mmp_st_get(&st, "y_pred");
    const mmp_tensor *ex = mmp_st_get(&st, "expected"), *cm = mmp_st_get(&st, "confusion");
    mmp_clsreport r;
    CHECK(mmp_clsreport_compute(&r, yt->data, yp->data, yt->shape[0], C, NULL) == 0);
    const double *e = ex->data; /* float64 bit patterns */
    int exact = per_class_exact(C, r.precision, r.recall, r.f1, r.support, e);
    exact &= r.accuracy == e[C * 4];
    for (int k = 0; k < 3; k++) {
        exact &= r.macro[k] == e[(C + 1) * 4 + k];
        exact &= r.weighted[k] == e[(C + 2) * 4 + k];
        if (r.weighted[k] != e[(C + 2) * 4 + k])
            fprintf(stderr, "%s weighted[%d] %.17g vs %.17g\n", name, k, r.weighted[k], e[(C + 2) * 4 + k]);
        if (r.macro[k] != e[(C + 1) * 4 + k])
            fprintf(stderr, "%s macro[%d] %.17g vs %.17g\n", name, k, r.macro[k], e[(C + 1) * 4 + k]);
    }
    CHECKF(exact, "%s: numbers differ from sklearn's output_dict", name);
    CHECK(memcmp(cm->data, r.cm, sizeof(int64_t) * C * C) == 0);
    for (int digits = 2; digits <= 4; digits += 2) check_text(name, digits, mmp_clsreport_text(&r, names, digits));
    printf("%-16s C=%-2d n=%-4lld accuracy %.4f: compared with sklearn\n", name, C,
           (long long)r.n, r.accuracy);
    for (int c = 0; c < C; c++) free(names[c]);
    mmp_clsreport_free(&r);
    mmp_st_close(&st);
}

static void check_ml_case(const char *name) {
    mmp_safetensors st;
    char *names[64];
    int C = open_case(name, &st, names);
    const mmp_tensor *yt = mmp_st_get(&st, "y_true"), *yp = mmp_st_get(&st, "y_pred"), *ex = mmp_st_get(&st, "expected");
    int64_t n = yt->shape[0];
    CHECK(yt->shape[1] == C);
    uint8_t *a = malloc((size_t)(n * C)), *b = malloc((size_t)(n * C));
    for (int64_t k = 0; k < n * C; k++) {
        a[k] = ((const int64_t *)yt->data)[k] != 0;
        b[k] = ((const int64_t *)yp->data)[k] != 0;
    }
    mmp_mlreport r;
    mmp_mlreport_compute(&r, a, b, n, C);
    const double *e = ex->data;
    int exact = per_class_exact(C, r.precision, r.recall, r.f1, r.support, e);
    for (int v = 0; v < 4; v++)
        for (int k = 0; k < 3; k++) {
            if (r.avg[v][k] != e[(C + v) * 4 + k])
                fprintf(stderr, "%s %s[%d] %.17g vs %.17g\n", name, mmp_mlreport_avg_names[v], k, r.avg[v][k], e[(C + v) * 4 + k]);
            exact &= r.avg[v][k] == e[(C + v) * 4 + k];
        }
    CHECKF(exact, "%s: multi-label numbers differ from sklearn's output_dict", name);
    for (int digits = 2; digits <= 4; digits += 2) check_text(name, digits, mmp_mlreport_text(&r, names, digits));
    printf("%-16s C=%-2d n=%-4lld micro F1 %.4f, samples F1 %.4f: compared with sklearn\n", name, C, (long long)n,
           r.avg[0][2], r.avg[3][2]);
    for (int c = 0; c < C; c++) free(names[c]);
    free(a);
    free(b);
    mmp_mlreport_free(&r);
    mmp_st_close(&st);
}

static void test_np_sum(void) {
    /* pairwise summation differs from a left fold on these values */
    double a[200];
    for (int i = 0; i < 200; i++) a[i] = 1.0 / (i + 1) + (i % 3 ? 1e16 : -1e16) * (i % 7 == 0);
    double seq = 0;
    for (int i = 0; i < 200; i++) seq += a[i];
    double pw = mmp_np_sum(a, 200);
    CHECK(isfinite(pw));
    (void)seq;
    double b[3] = {0.1, 0.2, 0.3};
    CHECK(mmp_np_sum(b, 3) == (0.1 + 0.2) + 0.3); /* numpy: 0.6000000000000001 */
    double c[10] = {1e16, 1, -1e16, 1, 1, 1, 1, 1, 1, 1};
    CHECK(mmp_np_sum(c, 10) == 6.0); /* numpy: 6.0 (a left fold gives 7) */
}

static void test_bad_labels(void) {
    int64_t yt[3] = {0, 1, 2}, yp[3] = {0, 3, 1}, bad = -1;
    mmp_clsreport r;
    CHECK(mmp_clsreport_compute(&r, yt, yp, 3, 3, &bad) == -1 && bad == 1);
    mmp_clsreport_free(&r);
}

static void test_retrieval(void) {
    /* 4 pairs in 2-D: a_i = b_i for i = 0,1; a_2 is closer to b_3 than b_2 */
    float a[8] = {1, 0, 0, 1, 1, 1, -1, 0};
    float b[8] = {1, 0, 0, 1, 1, 0.2f, -1, 0.1f};
    int ks[3] = {1, 2, 5};
    double ab[3], ba[3];
    mmp_retrieval_recall(a, b, 4, 2, ks, 3, ab, ba);
    /* a_2=(1,1)/sqrt2: b_0 cos .707, b_1 .707, b_2 (1,.2) .832 -> rank 0 */
    /* a->b: all rank 0 except check by brute force below */
    double want_ab[3], want_ba[3];
    int rank_ab[4], rank_ba[4];
    for (int i = 0; i < 4; i++) {
        rank_ab[i] = rank_ba[i] = 0;
        for (int j = 0; j < 4; j++) {
            double na = hypot(a[2 * i], a[2 * i + 1]), nb = hypot(b[2 * j], b[2 * j + 1]);
            double nai = hypot(a[2 * j], a[2 * j + 1]), nbi = hypot(b[2 * i], b[2 * i + 1]);
            double sij = (a[2 * i] * b[2 * j] + a[2 * i + 1] * b[2 * j + 1]) / (na * nb);
            double sii = (a[2 * i] * b[2 * i] + a[2 * i + 1] * b[2 * i + 1]) / (na * nbi);
            double sji = (a[2 * j] * b[2 * i] + a[2 * j + 1] * b[2 * i + 1]) / (nai * nbi);
            if (j != i && sij > sii) rank_ab[i]++;
            if (j != i && sji > sii) rank_ba[i]++;
        }
    }
    for (int k = 0; k < 3; k++) {
        int h1 = 0, h2 = 0;
        for (int i = 0; i < 4; i++) { h1 += rank_ab[i] < ks[k]; h2 += rank_ba[i] < ks[k]; }
        want_ab[k] = h1 / 4.0;
        want_ba[k] = h2 / 4.0;
        CHECKF(ab[k] == want_ab[k] && ba[k] == want_ba[k], "recall@%d %g/%g vs %g/%g", ks[k], ab[k], ba[k], want_ab[k], want_ba[k]);
    }
    CHECK(ab[2] == 1.0 && ba[2] == 1.0);
    CHECK(ab[0] < 1.0 || ba[0] < 1.0); /* the case is not trivial */
}

int main(void) {
    const char *cases[] = {"basic", "never_predicted", "zero_support", "many", "long_names"};
    for (int i = 0; i < 5; i++) check_case(cases[i]);
    const char *ml[] = {"ml_basic", "ml_edge", "ml_many"};
    for (int i = 0; i < 3; i++) check_ml_case(ml[i]);
    test_np_sum();
    test_bad_labels();
    test_retrieval();
    TEST_END();
}
