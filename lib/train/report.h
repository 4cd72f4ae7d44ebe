/* train/report.h: rendering of evaluation results for mmp-report:
 * sklearn-style text, JSON, and one self-contained HTML page with inline
 * SVG plots (training curves, confusion-matrix heat map, per-class bars). */
#ifndef MMP_TRAIN_REPORT_H
#define MMP_TRAIN_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "mmp.h"
#include "train/metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The JSON-lines training log of mmp-train-step --log:
 *   {"step":S,"epoch":E,"loss":L,"lr":R}                 every --log-every steps
 *   {"epoch":E,"step":S,"train_loss":L,"lr":R[,"dev_loss":L,"dev_metric":A]...}  every epoch */
typedef struct { int64_t step; int epoch; double loss, lr; } mmp_log_step;
typedef struct { int epoch; int64_t step; double train_loss, lr, dev_loss, dev_metric; int has_dev; } mmp_log_epoch;
typedef struct {
    int nsteps, nepochs;
    mmp_log_step *steps;
    mmp_log_epoch *epochs;
} mmp_trainlog;

/* 0 or -1 ("FILE: line N: what" in err). */
int mmp_trainlog_read(mmp_trainlog *l, const char *path, char *err, size_t errlen);
void mmp_trainlog_free(mmp_trainlog *l);

#define MMP_REPORT_MAXK 3
typedef struct {
    const mmp_clsreport *cls; /* NULL when the stream had no predictions */
    const mmp_mlreport *ml;   /* multi-label report instead of cls (or NULL) */
    char *const *names;       /* class names [cls->C] or NULL */
    int digits;
    int64_t n_retrieval;      /* > 0: retrieval metrics present */
    int nk;
    int ks[MMP_REPORT_MAXK];
    double a2b[MMP_REPORT_MAXK], b2a[MMP_REPORT_MAXK]; /* image->text, text->image */
    const mmp_trainlog *log;  /* may be NULL */
    const char *title;
} mmp_report;

/* Text: classification report, confusion matrix, retrieval, training summary. */
void mmp_report_write_text(FILE *f, const mmp_report *r);
/* JSON: sklearn's output_dict keys (class names, "accuracy", "macro avg",
 * "weighted avg") plus "confusion_matrix", "labels", "retrieval", "training". */
void mmp_report_write_json(FILE *f, const mmp_report *r);
/* One self-contained HTML page (no external resources). */
void mmp_report_write_html(FILE *f, const mmp_report *r);

/* ---- reading a prediction stream (train/report_read.c) ---- */
/* What mmp-report gathers from mmp-eval's records: single-label (true, predicted)
 * pairs of the labelled records, multi-label targets and decisions (probability
 * > threshold; sigmoid of "logits" without "probs"), image/text projections. */
typedef struct {
    int have_pred, multi;          /* -1 = no record yet, else 0/1 */
    int64_t C, n, cap, unlabelled; /* classes (header, else the score length), labelled predictions */
    int64_t *yt, *yp;
    int64_t Cml, nml, cap_ml;      /* multi-label */
    uint8_t *mt, *mp;              /* [nml, Cml] targets, decisions */
    int64_t E, nret, cap_r;        /* retrieval */
    float *pa, *pb;                /* [nret, E] image_proj, text_proj */
    int has_cls, has_ml;
    mmp_clsreport cr;
    mmp_mlreport mr;
} mmp_report_data;

/* Reads every record of r. 0, or -1 with "FILE: record N: what" (mixed kinds
 * of records, bad "pred", projections of different lengths, no predictions). */
int mmp_report_read(mmp_report_data *d, mmp_reader *r, double threshold, char *err, size_t errlen);
/* Computes the reports of d (h: the stream's header, for the class names) and
 * points rep's cls/ml/names/retrieval at them. 0, or -1 (no labelled
 * predictions, a label or prediction out of range). */
int mmp_report_compute(mmp_report_data *d, const mmp_header *h, const char *rname, const int *ks, int nk, mmp_report *rep,
                       char *err, size_t errlen);
void mmp_report_data_free(mmp_report_data *d);

#ifdef __cplusplus
}
#endif
#endif
