/* train/report.h: rendering of evaluation results for mmp-report:
 * sklearn-style text, JSON, and one self-contained HTML page with inline
 * SVG plots (training curves, confusion-matrix heat map, per-class bars). */
#ifndef MMP_TRAIN_REPORT_H
#define MMP_TRAIN_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "eval/capmetrics.h"
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

/* Generated captions (records with the string list "captions" and the
 * generated "text"): pycocoevalcap's metrics over the images, examples for
 * the HTML page (train/report_gen.c). */
#define MMP_REPORT_MAXEX 64
typedef struct {
    char *id, *text;
    int nrefs;
    char **refs;
    unsigned char *img; /* the image, encoded (JPEG or PNG), or NULL */
    size_t nimg;
    const char *mime;
    int64_t index;      /* image index among the scored ones */
} mmp_capexample;
typedef struct {
    int64_t n;                  /* images scored (one record per image) */
    int64_t duplicates;         /* later records of an image already seen (same "image_id", else id): left out */
    int64_t norefs;             /* records with an empty "captions" list: left out */
    int64_t empty;              /* generated captions empty after tokenization (scored) */
    mmp_capscores s;
    int nex;
    mmp_capexample ex[MMP_REPORT_MAXEX];
} mmp_capreport;

/* VQA predictions (records with string lists "prediction" and "answers",
 * optional "qtype"): the official VQA accuracy (eval/vqaeval.h) for
 * questions with several answers, exact match after the same normalization
 * for one-answer questions. */
typedef struct {
    int64_t n, multi, single;   /* questions; with >= 2 answers; with one */
    int64_t noanswers;          /* records with an empty "answers" list: left out */
    double accuracy;            /* mean over the questions (vqa for multi, exact for single) */
    double vqa_accuracy;        /* mean over the multi-answer questions (NAN when none) */
    double exact_accuracy;      /* mean over the one-answer questions (NAN when none) */
    int ntypes;                 /* question types in order of first appearance */
    char **types;
    int64_t *type_n;
    double *type_acc;
    int64_t vocab;              /* answer vocabulary size (0: the stream has none) */
    int64_t pred_oov;           /* predictions not in the vocabulary */
    int64_t ans_unseen;         /* questions none of whose answers is in the vocabulary */
} mmp_vqareport;

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
    const mmp_capreport *cap; /* caption metrics or NULL */
    const mmp_vqareport *vqa; /* VQA accuracy or NULL */
    int examples;             /* caption examples shown in the HTML page */
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
    int kind;                      /* -1 = no record yet, 0 = predictions, 1 = captions, 2 = VQA */
    struct mmp_report_gen *gen;    /* captions/VQA records (train/report_gen.c) */
    mmp_capreport capr;
    mmp_vqareport vqar;
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

/* ---- captions and VQA (train/report_gen.c) ---- */
/* 1 = a caption record (string list "captions"), 2 = a VQA record ("prediction"
 * and "answers"), 0 = neither. */
int mmp_report_gen_kind(const mmp_record *rec);
/* Adds one record of that kind; 0, or -1 ("FILE: record N: what": no "text"
 * on a caption record, a "prediction" list without one string). */
int mmp_report_gen_add(mmp_report_data *d, const mmp_record *rec, const char *rname, uint64_t idx, char *err,
                       size_t errlen);
/* Scores what was added (h: the answer vocabulary in the header's classes or
 * its "vqa.answers" metadata, a JSON array of strings). 0 or -1 (no image
 * or question left to score). */
int mmp_report_gen_compute(mmp_report_data *d, const mmp_header *h, const char *rname, char *err, size_t errlen);
void mmp_report_gen_free(mmp_report_data *d);
/* the captions / VQA sections of the text, JSON (members, each preceded by
 * ",\n  " unless *first) and HTML reports */
void mmp_report_gen_text(FILE *f, const mmp_report *r);
void mmp_report_gen_json(FILE *f, const mmp_report *r, int *first);
void mmp_report_gen_html(FILE *f, const mmp_report *r);
/* s with & < > " as HTML entities (train/report.c) */
void mmp_report_html_escape(FILE *f, const char *s);

#ifdef __cplusplus
}
#endif
#endif
