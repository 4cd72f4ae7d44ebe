/* mmp-report: classification report (sklearn layout and numbers),
 * confusion matrix, retrieval metrics, training curves; text, JSON, HTML.
 * See docs/train.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mmp.h"
#include "train/metrics.h"
#include "train/report.h"

static const char usage[] =
    "usage: mmp-report [options] [PREDICTIONS.mmp]   (default: stdin)\n"
    "Reads prediction records from mmp-eval (label = true label; tensor \"pred\" i64 [1],\n"
    "else the argmax of \"probs\" or \"logits\") and prints scikit-learn's\n"
    "classification_report (same layout and numbers), the confusion matrix and, when the\n"
    "records carry \"image_proj\" and \"text_proj\", retrieval recall@K both ways.\n"
    "Records without a label are left out of the classification metrics (counted on stderr).\n"
    "Multi-label predictions (a \"labels\" f32 [C] target tensor next to \"probs\"/\"logits\", as\n"
    "mmp-eval writes for bce heads) get sklearn's multilabel report (micro/macro/weighted/samples avg).\n"
    "\n";

int main(int argc, char **argv) {
    mmp_cli_init("mmp-report");
    const char *json = NULL, *html = NULL, *logp = NULL, *outp = NULL, *title = NULL;
    int digits = 2, nk = 3, threshold_given = 0;
    double threshold = 0.5;
    int ks[MMP_REPORT_MAXK] = {1, 5, 10};
    mmp_option opts[] = {
        MMP_O_TEXT("options:"),
        MMP_O_INT("digits", 0, &digits, 0, 17, "N", "decimals in the text report (2)"),
        MMP_O_STRING("json", 0, &json, "FILE",
                     "the numbers as JSON (sklearn's output_dict keys + confusion_matrix,\n"
                     "retrieval, training); '-' = stdout instead of the text"),
        MMP_O_STRING("html", 0, &html, "FILE", "one self-contained HTML page with SVG plots"),
        MMP_O_STRING("log", 0, &logp, "FILE", "training log of mmp-train-step --log: curves and a summary"),
        MMP_O_INT_LIST("k", 0, ks, &nk, MMP_REPORT_MAXK, "K[,K...]", "recall cut-offs (1,5,10)"),
        MMP_O_DOUBLE("threshold", 0, &threshold, -INFINITY, INFINITY, "T",
                     "multi-label: a label is predicted when its probability > T (0.5)", .given = &threshold_given),
        MMP_O_STRING("title", 0, &title, "TEXT", "HTML title"),
        MMP_O_OUTPUT(&outp, "text report to FILE instead of stdout"),
        MMP_O_COMMON,
        MMP_O_END,
    };
    const char *in = mmp_cli_parse_input(argc, argv, opts, usage);
    if (threshold_given && !(threshold >= 0 && threshold <= 1)) mmp_die("--threshold must lie in [0,1]");
    char err[1024];
    mmp_trainlog lg;
    if (logp && mmp_trainlog_read(&lg, logp, err, sizeof err)) mmp_die("%s", err);

    mmp_reader *r = mmp_reader_open_or_die(in);
    const mmp_header *h = mmp_reader_header(r);
    const char *rname = mmp_reader_name(r);
    int64_t cap = 0, n = 0, unlabelled = 0, C = h->nclasses, E = -1, nret = 0, cap_r = 0;
    int64_t *yt = NULL, *yp = NULL;
    float *pa = NULL, *pb = NULL;
    int have_pred = -1, multi = -1;
    uint8_t *mt = NULL, *mp = NULL;
    int64_t nml = 0, cap_ml = 0, Cml = -1;
    mmp_record rec;
    mmp_record_init(&rec);
    int rc;
    uint64_t idx = 0;
    while ((rc = mmp_reader_next(r, &rec)) == 1) {
        /* multi-label: "labels" targets next to probs/logits */
        const mmp_tensor *lt = mmp_record_cget(&rec, "labels"), *pp = mmp_record_cget(&rec, "probs");
        const mmp_tensor *lgt = mmp_record_cget(&rec, "logits"), *scv = pp ? pp : lgt;
        int is_ml = lt && scv && mmp_numel(lt->ndim, lt->shape) == mmp_numel(scv->ndim, scv->shape);
        if (multi < 0) multi = is_ml;
        else if (multi != is_ml) mmp_die("%s: record %llu: some records are multi-label and others not", rname, (unsigned long long)idx);
        if (multi) {
            int64_t k = mmp_numel(lt->ndim, lt->shape);
            if (Cml < 0) Cml = k;
            if (k != Cml || k == 0) mmp_die("%s: record %llu: \"labels\" has %lld values, earlier records %lld", rname, (unsigned long long)idx, (long long)k, (long long)Cml);
            if (nml == cap_ml) {
                cap_ml = cap_ml ? cap_ml * 2 : 4096;
                mt = mmp_xrealloc(mt, (size_t)(cap_ml * Cml));
                mp = mmp_xrealloc(mp, (size_t)(cap_ml * Cml));
            }
            float *tv = mmp_xmalloc(sizeof(float) * (size_t)k), *sv = mmp_xmalloc(sizeof(float) * (size_t)k);
            mmp_tensor_to_f32(lt, tv);
            mmp_tensor_to_f32(scv, sv);
            for (int64_t c = 0; c < k; c++) {
                double p = pp ? sv[c] : 1.0 / (1.0 + exp(-(double)sv[c]));
                mt[nml * Cml + c] = tv[c] > 0.5f;
                mp[nml * Cml + c] = p > threshold;
            }
            free(tv);
            free(sv);
            nml++;
            idx++;
            continue;
        }
        const mmp_tensor *pt = mmp_record_cget(&rec, "pred");
        const mmp_tensor *sc = mmp_record_cget(&rec, "probs");
        if (!sc) sc = mmp_record_cget(&rec, "logits");
        int64_t pred = -1;
        if (pt) {
            if (pt->dtype != MMP_I64 && pt->dtype != MMP_I32) mmp_die("%s: record %llu: \"pred\" must be an integer tensor [1]", rname, (unsigned long long)idx);
            if (mmp_numel(pt->ndim, pt->shape) != 1) mmp_die("%s: record %llu: \"pred\" must hold one value", rname, (unsigned long long)idx);
            pred = pt->dtype == MMP_I64 ? *(const int64_t *)pt->data : *(const int32_t *)pt->data;
        } else if (sc) {
            int64_t k = mmp_numel(sc->ndim, sc->shape);
            float *tmp = mmp_xmalloc(sizeof(float) * (size_t)(k ? k : 1));
            mmp_tensor_to_f32(sc, tmp);
            pred = 0;
            for (int64_t c = 1; c < k; c++)
                if (tmp[c] > tmp[pred]) pred = c;
            if (C <= 0) C = k;
            free(tmp);
        }
        int hp = pred >= 0;
        if (have_pred < 0) have_pred = hp;
        else if (have_pred != hp) mmp_die("%s: record %llu: some records have predictions and others not", rname, (unsigned long long)idx);
        if (hp) {
            if (rec.label < 0) unlabelled++;
            else {
                if (n == cap) {
                    cap = cap ? cap * 2 : 4096;
                    yt = mmp_xrealloc(yt, sizeof(int64_t) * (size_t)cap);
                    yp = mmp_xrealloc(yp, sizeof(int64_t) * (size_t)cap);
                }
                yt[n] = rec.label;
                yp[n] = pred;
                n++;
            }
        }
        const mmp_tensor *ia = mmp_record_cget(&rec, "image_proj"), *tb = mmp_record_cget(&rec, "text_proj");
        if (ia && tb) {
            if (ia->ndim != 1 || tb->ndim != 1 || ia->shape[0] != tb->shape[0] || (E >= 0 && ia->shape[0] != E))
                mmp_die("%s: record %llu: image_proj/text_proj must be vectors of one length", rname, (unsigned long long)idx);
            E = ia->shape[0];
            if (nret == cap_r) {
                cap_r = cap_r ? cap_r * 2 : 4096;
                pa = mmp_xrealloc(pa, sizeof(float) * (size_t)(cap_r * E));
                pb = mmp_xrealloc(pb, sizeof(float) * (size_t)(cap_r * E));
            }
            mmp_tensor_to_f32(ia, pa + nret * E);
            mmp_tensor_to_f32(tb, pb + nret * E);
            nret++;
        }
        idx++;
    }
    if (rc < 0) mmp_die("%s", mmp_reader_error(r));
    if (multi == 1 && nml == 0) mmp_die("%s: no records", rname);
    if (multi != 1 && have_pred != 1 && nret == 0) mmp_die("%s: no predictions (\"pred\", \"probs\" or \"logits\") and no image_proj/text_proj pairs", rname);
    if (unlabelled) mmp_warn("%lld records without a label left out of the classification metrics", (long long)unlabelled);
    if (have_pred == 1 && n == 0) mmp_die("%s: no labelled predictions", rname);
    mmp_clsreport cr;
    int has_cls = have_pred == 1 && n > 0;
    if (has_cls) {
        if (C <= 0)
            for (int64_t i = 0; i < n; i++) {
                if (yt[i] + 1 > C) C = yt[i] + 1;
                if (yp[i] + 1 > C) C = yp[i] + 1;
            }
        int64_t bad = -1;
        if (mmp_clsreport_compute(&cr, yt, yp, n, (int)C, &bad))
            mmp_die("%s: labelled record %lld: label %lld / prediction %lld out of range (%lld classes)", rname, (long long)bad,
                    (long long)yt[bad], (long long)yp[bad], (long long)C);
    }
    mmp_mlreport mr;
    if (multi == 1) {
        mmp_mlreport_compute(&mr, mt, mp, nml, (int)Cml);
        C = Cml;
    }
    mmp_report rep;
    memset(&rep, 0, sizeof rep);
    rep.cls = has_cls ? &cr : NULL;
    rep.ml = multi == 1 ? &mr : NULL;
    rep.names = h->nclasses == C ? h->classes : NULL;
    rep.digits = digits;
    rep.log = logp ? &lg : NULL;
    rep.title = title ? title : "mmp-report";
    if (nret > 0) {
        rep.n_retrieval = nret;
        rep.nk = nk;
        memcpy(rep.ks, ks, sizeof(int) * (size_t)nk);
        mmp_retrieval_recall(pa, pb, nret, E, ks, nk, rep.a2b, rep.b2a);
    }
    int json_stdout = json && !strcmp(json, "-");
    if (!json_stdout) {
        FILE *f = outp ? fopen(outp, "w") : stdout;
        if (!f) mmp_die("%s: cannot open for writing", outp);
        mmp_report_write_text(f, &rep);
        if (f != stdout && fclose(f)) mmp_die("%s: write error", outp);
    }
    if (json) {
        FILE *f = json_stdout ? stdout : fopen(json, "w");
        if (!f) mmp_die("%s: cannot open for writing", json);
        mmp_report_write_json(f, &rep);
        if (f != stdout && fclose(f)) mmp_die("%s: write error", json);
    }
    if (html) {
        char *tmp = mmp_xasprintf("%s.tmp", html);
        FILE *f = fopen(tmp, "w");
        if (!f) mmp_die("%s: cannot open for writing", tmp);
        mmp_report_write_html(f, &rep);
        if (fclose(f) || rename(tmp, html)) mmp_die("%s: write error", html);
        free(tmp);
    }
    fflush(stdout);
    if (has_cls) mmp_clsreport_free(&cr);
    if (multi == 1) mmp_mlreport_free(&mr);
    free(mt);
    free(mp);
    if (logp) mmp_trainlog_free(&lg);
    mmp_record_clear(&rec);
    mmp_reader_close(r);
    free(yt); free(yp); free(pa); free(pb);
    return 0;
}
