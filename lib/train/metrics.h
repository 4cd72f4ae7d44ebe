/* train/metrics.h: classification and retrieval metrics.
 *
 * The classification report reproduces scikit-learn 1.2's
 * classification_report(y_true, y_pred, labels=range(C), target_names=...)
 * bit for bit: precision/recall/F1 with zero_division="warn" (0.0 where a
 * denominator is 0), numpy's pairwise summation for the macro and weighted
 * averages, and the same text layout.
 */
#ifndef MMP_TRAIN_METRICS_H
#define MMP_TRAIN_METRICS_H

#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int C;
    int64_t n;
    int64_t *cm;        /* [C*C] confusion matrix, row = true label, column = prediction */
    double *precision;  /* [C] */
    double *recall;     /* [C] */
    double *f1;         /* [C] */
    int64_t *support;   /* [C] true count */
    double accuracy;    /* sklearn output_dict "accuracy" (micro precision) */
    double micro_f1;    /* what the text report prints on the accuracy line */
    double macro[3];    /* precision, recall, f1 */
    double weighted[3];
} mmp_clsreport;

/* Labels must lie in [0,C). Returns 0, or -1 (index in *bad) on a label out of range. */
int mmp_clsreport_compute(mmp_clsreport *r, const int64_t *y_true, const int64_t *y_pred,
                          int64_t n, int C, int64_t *bad);
void mmp_clsreport_free(mmp_clsreport *r);
/* sklearn's text (digits decimals); names[C] (NULL: "0","1",...). Heap string. */
char *mmp_clsreport_text(const mmp_clsreport *r, char *const *names, int digits);
/* Confusion matrix as aligned text with a header row of indices. Heap string. */
char *mmp_confusion_text(const mmp_clsreport *r, char *const *names);

/* Multi-label (sklearn's multilabel-indicator case): per-class precision,
 * recall, F1 and support (positives), then "micro avg", "macro avg",
 * "weighted avg", "samples avg" (no accuracy line), zero_division -> 0.0. */
typedef struct {
    int C;
    int64_t n;
    double *precision, *recall, *f1; /* [C] */
    int64_t *support;                /* [C] */
    int64_t total_support;
    double avg[4][3];                /* micro, macro, weighted, samples x (p, r, f1) */
} mmp_mlreport;

/* yt, yp: [n*C] 0/1 indicator matrices. */
void mmp_mlreport_compute(mmp_mlreport *r, const uint8_t *yt, const uint8_t *yp, int64_t n, int C);
void mmp_mlreport_free(mmp_mlreport *r);
char *mmp_mlreport_text(const mmp_mlreport *r, char *const *names, int digits);
extern const char *const mmp_mlreport_avg_names[4];

/* numpy's np.add.reduce on a contiguous float64 array (pairwise summation). */
double mmp_np_sum(const double *a, int64_t n);

/* Retrieval between N pairs (a_i, b_i), rows of E floats (normalized inside:
 * cosine similarity). For each query the rank of its true partner is the
 * number of candidates scoring strictly higher plus equal-scoring ones with
 * a lower index; recall@k = fraction of queries with rank < k.
 * a2b[nk] (query a_i among all b), b2a[nk]. */
void mmp_retrieval_recall(const float *a, const float *b, int64_t N, int64_t E, const int *ks,
                          int nk, double *a2b, double *b2a);

/* Appends a JSON string literal to f: json.h's escaper with short \n and \t
 * (the bytes reports and checkpoints' class lists have always had). */
void mmp_json_str(FILE *f, const char *s);

#ifdef __cplusplus
}
#endif
#endif
