/* mmp-report: classification report (sklearn layout and numbers),
 * confusion matrix, retrieval metrics, caption metrics (pycocoevalcap's),
 * the VQA accuracy (vqaEval.py's), training curves; text, JSON, HTML.
 * See docs/train.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mmp.h"
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
    "Generated captions (records with the reference captions in the string list \"captions\"\n"
    "and the generated \"text\", as mmp-generate writes them): BLEU-1..4, ROUGE-L, CIDEr-D,\n"
    "identical to pycocoevalcap 1.2 on the same tokenized captions (one record per image).\n"
    "VQA predictions (string lists \"prediction\" and \"answers\", optional \"qtype\"): the\n"
    "official VQA accuracy (vqaEval.py), exact match for one-answer questions, per question\n"
    "type, answers outside the answer vocabulary (header classes or \"vqa.answers\" metadata).\n"
    "\n";

int main(int argc, char **argv) {
    mmp_cli_init("mmp-report");
    const char *json = NULL, *html = NULL, *logp = NULL, *outp = NULL, *title = NULL;
    int digits = 2, nk = 3, threshold_given = 0, examples = 8;
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
        MMP_O_INT("examples", 0, &examples, 0, MMP_REPORT_MAXEX, "N",
                  "captions: the first N images with their generated caption and\n"
                  "references in the HTML page and the JSON (8)"),
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
    const char *rname = mmp_reader_name(r);
    mmp_report_data d;
    mmp_report rep;
    memset(&rep, 0, sizeof rep);
    if (mmp_report_read(&d, r, threshold, err, sizeof err)) mmp_die("%s", err);
    if (d.unlabelled) mmp_warn("%lld records without a label left out of the classification metrics", (long long)d.unlabelled);
    if (mmp_report_compute(&d, mmp_reader_header(r), rname, ks, nk, &rep, err, sizeof err)) mmp_die("%s", err);
    rep.digits = digits;
    rep.log = logp ? &lg : NULL;
    rep.title = title ? title : "mmp-report";
    rep.examples = examples;
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
    mmp_report_data_free(&d);
    if (logp) mmp_trainlog_free(&lg);
    mmp_reader_close(r);
    return 0;
}
