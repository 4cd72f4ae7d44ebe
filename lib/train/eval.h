/* train/eval.h: applying a trained head to a feature stream (mmp-eval):
 * the output header, the batched loop that writes prediction records, the
 * zero-shot class prompts, and the summary (accuracy, retrieval recall). */
#ifndef MMP_TRAIN_EVAL_H
#define MMP_TRAIN_EVAL_H
#include <stdint.h>
#include <stdio.h>

#include "mmp.h"
#include "train/train.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MMP_EVAL_MAXK 8

typedef struct {
    mmp_trainer *tr;
    int pair, fuse, has_text, zeroshot, sigmoid, want_fused;
    int64_t C, E, F;          /* classes (or prompt classes), projection size, fused size */
    float *prompts;           /* [C,E] normalized prompt projections (zero-shot) or NULL */
    int ncn;                  /* class names of the output: ncn names in cnames */
    char **cnames;
    mmp_header prompt_classes; /* owns the prompt stream's class names */
    int allow_mixed;          /* a CNN trained --from input: float images of another normalization are a warning */
    int img_chw;              /* (its images: -1 not seen yet, 0 u8 [H,W,3], 1 normalized f32/f16 [3,H,W]) */
    float img_mean[3], img_std[3];
} mmp_eval;

typedef struct {
    int64_t n, labelled, correct;
    int zeroshot, retrieval; /* retrieval: a2b/b2a hold recall@ks (pair heads with the pair field) */
    int nk, ks[MMP_EVAL_MAXK];
    double a2b[MMP_EVAL_MAXK], b2a[MMP_EVAL_MAXK];
} mmp_eval_summary;

/* For the loaded head tr; want_fused: also write "fused" (fusion heads only,
 * else -1 with the message naming model). */
int mmp_eval_init(mmp_eval *e, mmp_trainer *tr, int want_fused, const char *model, char *err, size_t errlen);
/* The input stream's header: whether records carry the second input, the
 * classes and their names (the model's, else the stream's). */
void mmp_eval_attach(mmp_eval *e, const mmp_header *ih);
/* Zero-shot: reads the class prompts (one record per class, or labelled
 * records averaged per class) of a pair head. 0 or -1 ("FILE: record N: ..."). */
int mmp_eval_read_prompts(mmp_eval *e, mmp_reader *pr, char *err, size_t errlen);
/* The output header (oh is initialized here): ih's meta and ids, the
 * prediction fields, the model's name, SHA-256, head and loss. */
void mmp_eval_header(const mmp_eval *e, const mmp_header *ih, const char *model, mmp_header *oh);
/* Reads every record of r in batches of `batch`, writes one prediction
 * record each to w (not closed), computes recall@ks (nk <= MMP_EVAL_MAXK).
 * 0, or -1 with "FILE: record N: ..." (w is then left unfinished). */
int mmp_eval_run(mmp_eval *e, mmp_reader *r, mmp_writer *w, int64_t batch, const int *ks, int nk, mmp_eval_summary *s,
                 char *err, size_t errlen);
/* "PROG: N records; top-1 accuracy ...; image->text R@1 ..." and a newline. */
void mmp_eval_summary_print(FILE *f, const char *prog, const mmp_eval_summary *s);
/* The summary as one JSON line to path ("-" = stdout). 0 or -1. */
int mmp_eval_summary_json(const char *path, const mmp_eval_summary *s, char *err, size_t errlen);
void mmp_eval_free(mmp_eval *e);

#ifdef __cplusplus
}
#endif
#endif
