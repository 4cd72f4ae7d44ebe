/* train/report_read.c: reading a prediction stream (mmp-eval's output) into
 * the numbers of mmp-report: single-label predictions, multi-label targets
 * and decisions, retrieval projections. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/report.h"

void mmp_report_data_free(mmp_report_data *d) {
    mmp_report_gen_free(d);
    if (d->has_cls) mmp_clsreport_free(&d->cr);
    if (d->multi == 1 && d->has_ml) mmp_mlreport_free(&d->mr);
    free(d->yt); free(d->yp); free(d->pa); free(d->pb); free(d->mt); free(d->mp);
    memset(d, 0, sizeof *d);
}

/* one multi-label record: targets lt, scores scv (probabilities when probs) */
static int add_multi(mmp_report_data *d, const mmp_tensor *lt, const mmp_tensor *scv, int probs, double threshold,
                     const char *rname, uint64_t idx, char *err, size_t errlen) {
    int64_t k = mmp_numel(lt->ndim, lt->shape);
    if (d->Cml < 0) d->Cml = k;
    if (k != d->Cml || k == 0)
        return mmp_errf(err, errlen, "%s: record %llu: \"labels\" has %lld values, earlier records %lld", rname, (unsigned long long)idx,
                        (long long)k, (long long)d->Cml);
    if (d->nml == d->cap_ml) {
        d->cap_ml = d->cap_ml ? d->cap_ml * 2 : 4096;
        d->mt = mmp_xrealloc(d->mt, (size_t)(d->cap_ml * d->Cml));
        d->mp = mmp_xrealloc(d->mp, (size_t)(d->cap_ml * d->Cml));
    }
    float *tv = mmp_xmalloc(sizeof(float) * (size_t)k), *sv = mmp_xmalloc(sizeof(float) * (size_t)k);
    mmp_tensor_to_f32(lt, tv);
    mmp_tensor_to_f32(scv, sv);
    for (int64_t c = 0; c < k; c++) {
        double p = probs ? sv[c] : 1.0 / (1.0 + exp(-(double)sv[c]));
        d->mt[d->nml * d->Cml + c] = tv[c] > 0.5f;
        d->mp[d->nml * d->Cml + c] = p > threshold;
    }
    free(tv);
    free(sv);
    d->nml++;
    return 0;
}

/* one single-label record: its prediction and, when present, its projections */
static int add_single(mmp_report_data *d, const mmp_record *rec, const char *rname, uint64_t idx, char *err, size_t errlen) {
    const mmp_tensor *pt = mmp_record_cget(rec, "pred");
    const mmp_tensor *sc = mmp_record_cget(rec, "probs");
    if (!sc) sc = mmp_record_cget(rec, "logits");
    int64_t pred = -1;
    if (pt) {
        if (pt->dtype != MMP_I64 && pt->dtype != MMP_I32)
            return mmp_errf(err, errlen, "%s: record %llu: \"pred\" must be an integer tensor [1]", rname, (unsigned long long)idx);
        if (mmp_numel(pt->ndim, pt->shape) != 1) return mmp_errf(err, errlen, "%s: record %llu: \"pred\" must hold one value", rname, (unsigned long long)idx);
        pred = pt->dtype == MMP_I64 ? *(const int64_t *)pt->data : *(const int32_t *)pt->data;
    } else if (sc) {
        int64_t k = mmp_numel(sc->ndim, sc->shape);
        float *tmp = mmp_xmalloc(sizeof(float) * (size_t)(k ? k : 1));
        mmp_tensor_to_f32(sc, tmp);
        pred = 0;
        for (int64_t c = 1; c < k; c++)
            if (tmp[c] > tmp[pred]) pred = c;
        if (d->C <= 0) d->C = k;
        free(tmp);
    }
    int hp = pred >= 0;
    if (d->have_pred < 0) d->have_pred = hp;
    else if (d->have_pred != hp)
        return mmp_errf(err, errlen, "%s: record %llu: some records have predictions and others not", rname, (unsigned long long)idx);
    if (hp) {
        if (rec->label < 0) d->unlabelled++;
        else {
            if (d->n == d->cap) {
                d->cap = d->cap ? d->cap * 2 : 4096;
                d->yt = mmp_xrealloc(d->yt, sizeof(int64_t) * (size_t)d->cap);
                d->yp = mmp_xrealloc(d->yp, sizeof(int64_t) * (size_t)d->cap);
            }
            d->yt[d->n] = rec->label;
            d->yp[d->n] = pred;
            d->n++;
        }
    }
    const mmp_tensor *ia = mmp_record_cget(rec, "image_proj"), *tb = mmp_record_cget(rec, "text_proj");
    if (ia && tb) {
        if (ia->ndim != 1 || tb->ndim != 1 || ia->shape[0] != tb->shape[0] || (d->E >= 0 && ia->shape[0] != d->E))
            return mmp_errf(err, errlen, "%s: record %llu: image_proj/text_proj must be vectors of one length", rname, (unsigned long long)idx);
        d->E = ia->shape[0];
        if (d->nret == d->cap_r) {
            d->cap_r = d->cap_r ? d->cap_r * 2 : 4096;
            d->pa = mmp_xrealloc(d->pa, sizeof(float) * (size_t)(d->cap_r * d->E));
            d->pb = mmp_xrealloc(d->pb, sizeof(float) * (size_t)(d->cap_r * d->E));
        }
        mmp_tensor_to_f32(ia, d->pa + d->nret * d->E);
        mmp_tensor_to_f32(tb, d->pb + d->nret * d->E);
        d->nret++;
    }
    return 0;
}

int mmp_report_read(mmp_report_data *d, mmp_reader *r, double threshold, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    const mmp_header *h = mmp_reader_header(r);
    const char *rname = mmp_reader_name(r);
    d->C = h->nclasses;
    d->E = -1;
    d->Cml = -1;
    d->have_pred = d->multi = d->kind = -1;
    mmp_record rec;
    mmp_record_init(&rec);
    int rc, bad = 0;
    uint64_t idx = 0;
    while (!bad && (rc = mmp_reader_next(r, &rec)) == 1) {
        /* generated captions, VQA predictions (train/report_gen.c) */
        int gk = mmp_report_gen_kind(&rec);
        if (d->kind < 0) d->kind = gk;
        if (gk != d->kind) {
            static const char *const kn[3] = {"predictions", "caption records (\"captions\")", "VQA records (\"prediction\", \"answers\")"};
            bad = mmp_errf(err, errlen, "%s: record %llu: the first record has %s, this one %s", rname, (unsigned long long)idx,
                           kn[d->kind], gk ? kn[gk] : "neither");
            break;
        }
        if (gk) {
            bad = mmp_report_gen_add(d, &rec, rname, idx, err, errlen);
            idx++;
            continue;
        }
        /* multi-label: "labels" targets next to probs/logits */
        const mmp_tensor *lt = mmp_record_cget(&rec, "labels"), *pp = mmp_record_cget(&rec, "probs");
        const mmp_tensor *lgt = mmp_record_cget(&rec, "logits"), *scv = pp ? pp : lgt;
        int is_ml = lt && scv && mmp_numel(lt->ndim, lt->shape) == mmp_numel(scv->ndim, scv->shape);
        if (d->multi < 0) d->multi = is_ml;
        else if (d->multi != is_ml)
            bad = mmp_errf(err, errlen, "%s: record %llu: some records are multi-label and others not", rname, (unsigned long long)idx);
        if (!bad) bad = d->multi ? add_multi(d, lt, scv, pp != NULL, threshold, rname, idx, err, errlen) : add_single(d, &rec, rname, idx, err, errlen);
        idx++;
    }
    mmp_record_clear(&rec);
    if (bad) return -1;
    if (rc < 0) return mmp_errf(err, errlen, "%s", mmp_reader_error(r));
    if (d->kind > 0) return 0;
    if (d->multi == 1 && d->nml == 0) return mmp_errf(err, errlen, "%s: no records", rname);
    if (d->multi != 1 && d->have_pred != 1 && d->nret == 0)
        return mmp_errf(err, errlen, "%s: no predictions (\"pred\", \"probs\" or \"logits\") and no image_proj/text_proj pairs", rname);
    return 0;
}

int mmp_report_compute(mmp_report_data *d, const mmp_header *h, const char *rname, const int *ks, int nk, mmp_report *rep,
                       char *err, size_t errlen) {
    if (d->kind > 0) {
        if (mmp_report_gen_compute(d, h, rname, err, errlen)) return -1;
        rep->cap = d->kind == 1 ? &d->capr : NULL;
        rep->vqa = d->kind == 2 ? &d->vqar : NULL;
        return 0;
    }
    if (d->have_pred == 1 && d->n == 0) return mmp_errf(err, errlen, "%s: no labelled predictions", rname);
    int64_t C = d->C, n = d->n;
    if (d->have_pred == 1) {
        if (C <= 0)
            for (int64_t i = 0; i < n; i++) {
                if (d->yt[i] + 1 > C) C = d->yt[i] + 1;
                if (d->yp[i] + 1 > C) C = d->yp[i] + 1;
            }
        int64_t bad = -1;
        if (mmp_clsreport_compute(&d->cr, d->yt, d->yp, n, (int)C, &bad))
            return mmp_errf(err, errlen, "%s: labelled record %lld: label %lld / prediction %lld out of range (%lld classes)", rname,
                            (long long)bad, (long long)d->yt[bad], (long long)d->yp[bad], (long long)C);
        d->has_cls = 1;
    }
    if (d->multi == 1) {
        mmp_mlreport_compute(&d->mr, d->mt, d->mp, d->nml, (int)d->Cml);
        d->has_ml = 1;
        C = d->Cml;
    }
    rep->cls = d->has_cls ? &d->cr : NULL;
    rep->ml = d->has_ml ? &d->mr : NULL;
    rep->names = h->nclasses == C ? h->classes : NULL;
    if (d->nret > 0) {
        rep->n_retrieval = d->nret;
        rep->nk = nk;
        memcpy(rep->ks, ks, sizeof(int) * (size_t)nk);
        mmp_retrieval_recall(d->pa, d->pb, d->nret, d->E, ks, nk, rep->a2b, rep->b2a);
    }
    return 0;
}
