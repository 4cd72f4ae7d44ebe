/* train/report.c: text, JSON and HTML (inline SVG) rendering (see report.h). */
#include "train/report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "mmp.h"

/* ------------------------------------------------------------------ */
/* training log                                                        */
/* ------------------------------------------------------------------ */

/* mmp-train-step prints the log's numbers with %.9g: a diverged run writes
 * nan, -nan, inf or -inf, which JSON lacks. Those bare words (outside
 * strings) are quoted here, and lognum reads them back as numbers. */
static char *quote_nonfinite(const char *s, size_t n, size_t *outn) {
    char *o = mmp_xmalloc(3 * n + 1), prev = ' ';
    size_t k = 0;
    int instr = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (instr) {
            if (c == '\\' && i + 1 < n) o[k++] = s[i++], c = s[i];
            else if (c == '"') instr = 0;
        } else if (c == '"') {
            instr = 1;
        } else if (strchr(":,[ \t", prev)) {
            size_t m = i + (c == '-');
            size_t w = m + 3 <= n && (!strncmp(s + m, "nan", 3) || !strncmp(s + m, "inf", 3)) ? m + 3 - i : 0;
            if (w && (i + w == n || strchr(",]} \t\r\n", s[i + w]))) {
                o[k++] = '"';
                memcpy(o + k, s + i, w);
                k += w;
                o[k++] = '"';
                i += w - 1;
                prev = '"';
                continue;
            }
        }
        o[k++] = c;
        prev = c;
    }
    o[k] = 0;
    *outn = k;
    return o;
}

/* 1 = the number under key in *out (null: NaN), 0 = absent, -1 = not a number */
static int lognum(const json_t *o, const char *key, double *out) {
    const json_t *v = json_object_get(o, key);
    const char *s = json_string_value(v);
    if (!v) return 0;
    if (json_is_null(v)) *out = NAN;
    else if (json_is_number(v)) *out = json_number_value(v);
    else if (s && (!strcmp(s, "nan") || !strcmp(s, "-nan") || !strcmp(s, "inf") || !strcmp(s, "-inf"))) *out = strtod(s, NULL);
    else return -1;
    return 1;
}

int mmp_trainlog_read(mmp_trainlog *l, const char *path, char *err, size_t errlen) {
    memset(l, 0, sizeof *l);
    FILE *f = fopen(path, "r");
    if (!f) return mmp_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL, e2[400];
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, capS = 0, capE = 0;
    json_t *o = NULL;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '\n' || *p == 0) continue;
        if (line[len - 1] == '\n') len--;
        size_t qn;
        char *q = quote_nonfinite(line, (size_t)len, &qn);
        o = mmp_json_parse(q, qn, lineno, e2, sizeof e2);
        free(q);
        if (!o) {
            mmp_errf(err, errlen, "%s: %s", path, e2);
            goto fail;
        }
        if (!json_is_object(o)) {
            mmp_errf(err, errlen, "%s: line %d: not a JSON object", path, lineno);
            goto fail;
        }
        double step = NAN, epoch = NAN, v;
        int hs = lognum(o, "step", &step), he = lognum(o, "epoch", &epoch);
        if (hs < 0 || he < 0 || (hs && !isfinite(step)) || (he && !isfinite(epoch))) {
            mmp_errf(err, errlen, "%s: line %d: bad step/epoch", path, lineno);
            goto fail;
        }
        if (lognum(o, "train_loss", &v) == 1) {
            if (l->nepochs == capE) l->epochs = mmp_xrealloc(l->epochs, sizeof(mmp_log_epoch) * (size_t)(capE = capE ? capE * 2 : 64));
            mmp_log_epoch *e = &l->epochs[l->nepochs++];
            memset(e, 0, sizeof *e);
            e->train_loss = v;
            e->epoch = he == 1 ? (int)epoch : l->nepochs;
            e->step = hs == 1 ? (int64_t)step : 0;
            e->lr = NAN;
            lognum(o, "lr", &e->lr);
            e->dev_loss = e->dev_metric = NAN;
            int a = lognum(o, "dev_loss", &e->dev_loss), b = lognum(o, "dev_metric", &e->dev_metric);
            e->has_dev = a == 1 || b == 1;
        } else if (lognum(o, "loss", &v) == 1 && hs == 1) {
            if (l->nsteps == capS) l->steps = mmp_xrealloc(l->steps, sizeof(mmp_log_step) * (size_t)(capS = capS ? capS * 2 : 1024));
            mmp_log_step *s = &l->steps[l->nsteps++];
            s->step = (int64_t)step;
            s->epoch = he == 1 ? (int)epoch : 0;
            s->loss = v;
            s->lr = NAN;
            lognum(o, "lr", &s->lr);
        } else {
            mmp_errf(err, errlen, "%s: line %d: neither a step entry (step, loss) nor an epoch entry (train_loss)", path, lineno);
            goto fail;
        }
        json_decref(o);
        o = NULL;
    }
    free(line);
    fclose(f);
    return 0;
fail:
    json_decref(o);
    free(line);
    fclose(f);
    mmp_trainlog_free(l);
    return -1;
}

void mmp_trainlog_free(mmp_trainlog *l) {
    free(l->steps);
    free(l->epochs);
    memset(l, 0, sizeof *l);
}

/* ------------------------------------------------------------------ */
/* text                                                                */
/* ------------------------------------------------------------------ */

static void log_summary(FILE *f, const mmp_trainlog *log) {
    if (!log || (!log->nepochs && !log->nsteps)) return;
    int64_t last_step = log->nsteps ? log->steps[log->nsteps - 1].step : log->epochs[log->nepochs - 1].step;
    fprintf(f, "training: %d epochs, %lld steps", log->nepochs, (long long)last_step);
    if (log->nepochs) fprintf(f, ", final train loss %.4f", log->epochs[log->nepochs - 1].train_loss);
    int best = -1;
    for (int i = 0; i < log->nepochs; i++)
        if (log->epochs[i].has_dev && isfinite(log->epochs[i].dev_metric) &&
            (best < 0 || log->epochs[i].dev_metric > log->epochs[best].dev_metric))
            best = i;
    if (best >= 0)
        fprintf(f, ", best dev metric %.4f (loss %.4f) at epoch %d", log->epochs[best].dev_metric,
                log->epochs[best].dev_loss, log->epochs[best].epoch);
    fprintf(f, "\n");
}

void mmp_report_write_text(FILE *f, const mmp_report *r) {
    if (r->cls) {
        char *t = mmp_clsreport_text(r->cls, r->names, r->digits);
        fputs(t, f);
        free(t);
        fputc('\n', f);
        t = mmp_confusion_text(r->cls, r->names);
        fputs(t, f);
        free(t);
    }
    if (r->ml) {
        char *t = mmp_mlreport_text(r->ml, r->names, r->digits);
        fputs(t, f);
        free(t);
    }
    if (r->n_retrieval > 0) {
        if (r->cls || r->ml) fputc('\n', f);
        fprintf(f, "retrieval (%lld pairs)", (long long)r->n_retrieval);
        for (int k = 0; k < r->nk; k++) fprintf(f, "  R@%-4d", r->ks[k]);
        fprintf(f, "\n%-21s", "image -> text");
        for (int k = 0; k < r->nk; k++) fprintf(f, "  %.4f", r->a2b[k]);
        fprintf(f, "\n%-21s", "text -> image");
        for (int k = 0; k < r->nk; k++) fprintf(f, "  %.4f", r->b2a[k]);
        fprintf(f, "\n");
    }
    if (r->cap || r->vqa) mmp_report_gen_text(f, r);
    if (r->log) {
        fputc('\n', f);
        log_summary(f, r->log);
    }
}

/* ------------------------------------------------------------------ */
/* JSON                                                                */
/* ------------------------------------------------------------------ */

static void jd(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.17g", v);
    else fputs("null", f);
}

static void jname(FILE *f, const mmp_report *r, int c) {
    if (r->names) mmp_json_str(f, r->names[c]);
    else fprintf(f, "\"%d\"", c);
}

/* {"precision": p, "recall": r, "f1-score": f, "support": n}, as sklearn's output_dict */
static void jprf(FILE *f, double p, double r, double f1, int64_t support) {
    fputs("{\"precision\": ", f); jd(f, p);
    fputs(", \"recall\": ", f); jd(f, r);
    fputs(", \"f1-score\": ", f); jd(f, f1);
    fprintf(f, ", \"support\": %lld}", (long long)support);
}

/* "name": {...} for every class */
static void jclasses(FILE *f, const mmp_report *r, int C, const double *p, const double *rc,
                     const double *f1, const int64_t *support, int *first) {
    for (int k = 0; k < C; k++) {
        fputs(*first ? "\n  " : ",\n  ", f);
        *first = 0;
        jname(f, r, k);
        fputs(": ", f);
        jprf(f, p[k], rc[k], f1[k], support[k]);
    }
}

void mmp_report_write_json(FILE *f, const mmp_report *r) {
    fputs("{", f);
    int first = 1;
    if (r->cls) {
        const mmp_clsreport *c = r->cls;
        jclasses(f, r, c->C, c->precision, c->recall, c->f1, c->support, &first);
        fputs(",\n  \"accuracy\": ", f); jd(f, c->accuracy);
        const char *an[2] = {"macro avg", "weighted avg"};
        const double *av[2] = {c->macro, c->weighted};
        for (int a = 0; a < 2; a++) {
            fprintf(f, ",\n  \"%s\": ", an[a]);
            jprf(f, av[a][0], av[a][1], av[a][2], c->n);
        }
        fputs(",\n  \"labels\": [", f);
        for (int k = 0; k < c->C; k++) { if (k) fputs(", ", f); jname(f, r, k); }
        fputs("],\n  \"confusion_matrix\": [", f);
        for (int i = 0; i < c->C; i++) {
            fputs(i ? ", [" : "[", f);
            for (int j = 0; j < c->C; j++) fprintf(f, "%s%lld", j ? ", " : "", (long long)c->cm[i * c->C + j]);
            fputs("]", f);
        }
        fputs("]", f);
    }
    if (r->ml) {
        const mmp_mlreport *c = r->ml;
        jclasses(f, r, c->C, c->precision, c->recall, c->f1, c->support, &first);
        for (int a = 0; a < 4; a++) {
            fprintf(f, ",\n  \"%s\": ", mmp_mlreport_avg_names[a]);
            jprf(f, c->avg[a][0], c->avg[a][1], c->avg[a][2], c->total_support);
        }
    }
    if (r->n_retrieval > 0) {
        fputs(first ? "\n  " : ",\n  ", f);
        first = 0;
        fprintf(f, "\"retrieval\": {\"n\": %lld", (long long)r->n_retrieval);
        const char *dn[2] = {"image_to_text", "text_to_image"};
        const double *dv[2] = {r->a2b, r->b2a};
        for (int d = 0; d < 2; d++) {
            fprintf(f, ", \"%s\": {", dn[d]);
            for (int k = 0; k < r->nk; k++) {
                fprintf(f, "%s\"recall@%d\": ", k ? ", " : "", r->ks[k]);
                jd(f, dv[d][k]);
            }
            fputs("}", f);
        }
        fputs("}", f);
    }
    mmp_report_gen_json(f, r, &first);
    if (r->log && r->log->nepochs) {
        fputs(first ? "\n  " : ",\n  ", f);
        first = 0;
        fputs("\"training\": {\"epochs\": [", f);
        for (int i = 0; i < r->log->nepochs; i++) {
            const mmp_log_epoch *e = &r->log->epochs[i];
            fprintf(f, "%s{\"epoch\": %d, \"step\": %lld, \"train_loss\": ", i ? ", " : "", e->epoch, (long long)e->step);
            jd(f, e->train_loss);
            if (e->has_dev) {
                fputs(", \"dev_loss\": ", f); jd(f, e->dev_loss);
                fputs(", \"dev_metric\": ", f); jd(f, e->dev_metric);
            }
            fputs("}", f);
        }
        fputs("]}", f);
    }
    fputs("\n}\n", f);
}

/* ------------------------------------------------------------------ */
/* HTML + SVG                                                          */
/* ------------------------------------------------------------------ */

void mmp_report_html_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '&') fputs("&amp;", f);
        else if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

static void cname(FILE *f, const mmp_report *r, int c) {
    if (r->names) mmp_report_html_escape(f, r->names[c]);
    else fprintf(f, "%d", c);
}

typedef struct { const double *x, *y; int n; const char *color, *label; } series;

/* "nice" tick step for a range */
static double nice_step(double range, int target) {
    double raw = range / target, mag = pow(10, floor(log10(raw))), r = raw / mag;
    return (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
}

static void svg_chart(FILE *f, const char *id, const char *title, const char *xlabel, const series *s, int ns) {
    const double W = 640, H = 320, L = 64, R = 20, T = 34, B = 46;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].x[i]) || !isfinite(s[k].y[i])) continue;
            x0 = fmin(x0, s[k].x[i]); x1 = fmax(x1, s[k].x[i]);
            y0 = fmin(y0, s[k].y[i]); y1 = fmax(y1, s[k].y[i]);
        }
    if (!isfinite(x0)) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) { y1 = y0 + 0.5; y0 -= 0.5; }
    double pad = (y1 - y0) * 0.05;
    y0 -= pad; y1 += pad;
#define PX(v) (L + ((v) - x0) / (x1 - x0) * (W - L - R))
#define PY(v) (H - B - ((v) - y0) / (y1 - y0) * (H - T - B))
    fprintf(f, "<svg id=\"%s\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" viewBox=\"0 0 %g %g\">\n", id, W, H, W, H);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%g\" height=\"%g\" fill=\"#fff\"/>\n", W, H);
    fprintf(f, "<text x=\"%g\" y=\"20\" font-size=\"14\" font-weight=\"bold\">", L);
    mmp_report_html_escape(f, title);
    fputs("</text>\n", f);
    double ys = nice_step(y1 - y0, 5), xs = nice_step(x1 - x0, 6);
    for (double v = ceil(y0 / ys) * ys; v <= y1 + 1e-12; v += ys)
        fprintf(f, "<line x1=\"%g\" x2=\"%g\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/><text x=\"%g\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%g</text>\n",
                L, W - R, PY(v), PY(v), L - 6, PY(v) + 4, fabs(v) < ys * 1e-6 ? 0.0 : v);
    for (double v = ceil(x0 / xs) * xs; v <= x1 + 1e-12; v += xs)
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%g\" y2=\"%g\" stroke=\"#bbb\"/><text x=\"%.1f\" y=\"%g\" font-size=\"11\" text-anchor=\"middle\">%g</text>\n",
                PX(v), PX(v), H - B, H - B + 5, PX(v), H - B + 18, v);
    fprintf(f, "<line x1=\"%g\" x2=\"%g\" y1=\"%g\" y2=\"%g\" stroke=\"#333\"/>\n", L, W - R, H - B, H - B);
    fprintf(f, "<line x1=\"%g\" x2=\"%g\" y1=\"%g\" y2=\"%g\" stroke=\"#333\"/>\n", L, L, T, H - B);
    fprintf(f, "<text x=\"%g\" y=\"%g\" font-size=\"12\" text-anchor=\"middle\">", (L + W - R) / 2, H - 8);
    mmp_report_html_escape(f, xlabel);
    fputs("</text>\n", f);
    for (int k = 0; k < ns; k++) {
        if (s[k].n == 0) continue;
        fprintf(f, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" points=\"", s[k].color);
        for (int i = 0; i < s[k].n; i++)
            if (isfinite(s[k].x[i]) && isfinite(s[k].y[i])) fprintf(f, "%.1f,%.1f ", PX(s[k].x[i]), PY(s[k].y[i]));
        fputs("\"/>\n", f);
        if (s[k].n <= 60)
            for (int i = 0; i < s[k].n; i++)
                if (isfinite(s[k].x[i]) && isfinite(s[k].y[i]))
                    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"><title>%g: %.4f</title></circle>\n",
                            PX(s[k].x[i]), PY(s[k].y[i]), s[k].color, s[k].x[i], s[k].y[i]);
        fprintf(f, "<rect x=\"%g\" y=\"%d\" width=\"12\" height=\"3\" fill=\"%s\"/><text x=\"%g\" y=\"%d\" font-size=\"11\">",
                W - R - 150, 12 + 14 * k, s[k].color, W - R - 134, 16 + 14 * k);
        mmp_report_html_escape(f, s[k].label);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
#undef PX
#undef PY
}

static void svg_confusion(FILE *f, const mmp_report *r) {
    const mmp_clsreport *c = r->cls;
    int C = c->C;
    double cell = C <= 12 ? 40 : fmax(6, 480.0 / C), L = 170, T = 60;
    double W = fmax(L + cell * C + 20, 600), H = T + cell * C + 40;
    fprintf(f, "<svg id=\"confusion\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" viewBox=\"0 0 %g %g\">\n", W, H, W, H);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%g\" height=\"%g\" fill=\"#fff\"/>\n", W, H);
    fputs("<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">Confusion matrix (rows: true, columns: predicted; colour: row-normalized)</text>\n", f);
    for (int j = 0; j < C; j++)
        fprintf(f, "<text x=\"%.1f\" y=\"%g\" font-size=\"10\" text-anchor=\"middle\">%d</text>\n", L + cell * (j + 0.5), T - 6, j);
    for (int i = 0; i < C; i++) {
        int64_t row = 0;
        for (int j = 0; j < C; j++) row += c->cm[i * C + j];
        fprintf(f, "<text x=\"%g\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">", L - 6, T + cell * (i + 0.5) + 4);
        cname(f, r, i);
        fprintf(f, " (%d)</text>\n", i);
        for (int j = 0; j < C; j++) {
            int64_t v = c->cm[i * C + j];
            double q = row ? (double)v / (double)row : 0;
            int R = (int)(255 - q * (255 - 8)), G = (int)(255 - q * (255 - 81)), B = (int)(255 - q * (255 - 156));
            fprintf(f, "<rect class=\"cell\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"rgb(%d,%d,%d)\" stroke=\"#ddd\"><title>true ",
                    L + cell * j, T + cell * i, cell, cell, R, G, B);
            cname(f, r, i);
            fputs(", predicted ", f);
            cname(f, r, j);
            fprintf(f, ": %lld</title></rect>\n", (long long)v);
            if (cell >= 18)
                fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%d\" text-anchor=\"middle\" fill=\"%s\">%lld</text>\n",
                        L + cell * (j + 0.5), T + cell * (i + 0.5) + 4, cell >= 30 ? 11 : 8, q > 0.5 ? "#fff" : "#222", (long long)v);
        }
    }
    fputs("</svg>\n", f);
}

static void svg_bars(FILE *f, const mmp_report *r, int C, const double *prec, const double *rec, const double *f1) {
    double gw = fmax(12, fmin(60, 640.0 / C)), L = 50, T = 40, Hp = 220, B = 110;
    double W = fmax(L + gw * C + 130, 480), H = T + Hp + B;
    const char *col[3] = {"#4c72b0", "#dd8452", "#55a868"}, *lab[3] = {"precision", "recall", "f1-score"};
    const double *v[3] = {prec, rec, f1};
    fprintf(f, "<svg id=\"perclass\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" viewBox=\"0 0 %g %g\">\n", W, H, W, H);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%g\" height=\"%g\" fill=\"#fff\"/>\n", W, H);
    fputs("<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">Per-class precision, recall, F1</text>\n", f);
    for (int k = 0; k <= 4; k++)
        fprintf(f, "<line x1=\"%g\" x2=\"%g\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/><text x=\"%g\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\">%.2f</text>\n",
                L, L + gw * C, T + Hp - Hp * k / 4.0, T + Hp - Hp * k / 4.0, L - 4, T + Hp - Hp * k / 4.0 + 3, k / 4.0);
    for (int i = 0; i < C; i++) {
        double bw = (gw - 4) / 3;
        for (int m = 0; m < 3; m++) {
            double h = Hp * v[m][i];
            fprintf(f, "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>",
                    L + gw * i + 2 + bw * m, T + Hp - h, bw, h, col[m]);
            cname(f, r, i);
            fprintf(f, " %s: %.4f</title></rect>\n", lab[m], v[m][i]);
        }
        fprintf(f, "<text font-size=\"10\" text-anchor=\"end\" transform=\"translate(%.1f,%g) rotate(-45)\">", L + gw * (i + 0.5), T + Hp + 12);
        cname(f, r, i);
        fputs("</text>\n", f);
    }
    for (int m = 0; m < 3; m++)
        fprintf(f, "<rect x=\"%g\" y=\"%d\" width=\"12\" height=\"8\" fill=\"%s\"/><text x=\"%g\" y=\"%d\" font-size=\"11\">%s</text>\n",
                W - 110, 8 + 13 * m, col[m], W - 94, 16 + 13 * m, lab[m]);
    fputs("</svg>\n", f);
}

/* a classification report section: the title, the text report (freed here)
 * and the per-class bars */
static void html_cls_section(FILE *f, const mmp_report *r, const char *title, char *text, int C, const double *prec,
                             const double *rec, const double *f1) {
    fprintf(f, "<h2>%s</h2>\n<pre id=\"report\">", title);
    mmp_report_html_escape(f, text);
    free(text);
    fputs("</pre>\n", f);
    svg_bars(f, r, C, prec, rec, f1);
}

void mmp_report_write_html(FILE *f, const mmp_report *r) {
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>", f);
    mmp_report_html_escape(f, r->title ? r->title : "mmp-report");
    fputs("</title>\n<style>body{font-family:sans-serif;margin:24px;color:#222}pre{background:#f6f6f6;padding:10px;overflow-x:auto}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}.chart{display:block;margin:12px 0}"
          ".big{font-size:22px}.ex{display:flex;align-items:flex-start;gap:12px;margin:10px 0;padding:8px;border:1px solid #ddd}"
          ".ex img{width:160px;height:auto;image-rendering:pixelated}.ex p{margin:2px 0}.ex .id{color:#777;font-size:12px}"
          ".ex ul{margin:4px 0;padding-left:18px;color:#444}</style>\n</head><body>\n<h1>", f);
    mmp_report_html_escape(f, r->title ? r->title : "mmp-report");
    fputs("</h1>\n", f);
    if (r->cls) {
        const mmp_clsreport *c = r->cls;
        fprintf(f, "<p class=\"big\" id=\"accuracy\">Accuracy: %.4f</p>\n", c->accuracy);
        fprintf(f, "<p>%lld predictions, %d classes; macro F1 %.4f, weighted F1 %.4f</p>\n", (long long)c->n, c->C,
                c->macro[2], c->weighted[2]);
    }
    if (r->ml)
        fprintf(f, "<p class=\"big\" id=\"accuracy\">Multi-label micro F1: %.4f</p>\n<p>%lld samples, %d labels; samples F1 %.4f</p>\n",
                r->ml->avg[0][2], (long long)r->ml->n, r->ml->C, r->ml->avg[3][2]);
    if (r->cap || r->vqa) mmp_report_gen_html(f, r);
    if (r->n_retrieval > 0) {
        fprintf(f, "<h2>Retrieval (%lld pairs)</h2>\n<table id=\"retrieval\"><tr><th></th>", (long long)r->n_retrieval);
        for (int k = 0; k < r->nk; k++) fprintf(f, "<th>R@%d</th>", r->ks[k]);
        fputs("</tr>\n<tr><th>image &rarr; text</th>", f);
        for (int k = 0; k < r->nk; k++) fprintf(f, "<td>%.4f</td>", r->a2b[k]);
        fputs("</tr>\n<tr><th>text &rarr; image</th>", f);
        for (int k = 0; k < r->nk; k++) fprintf(f, "<td>%.4f</td>", r->b2a[k]);
        fputs("</tr></table>\n", f);
    }
    if (r->log && (r->log->nsteps || r->log->nepochs)) {
        const mmp_trainlog *lg = r->log;
        fputs("<h2>Training</h2>\n", f);
        int ne = lg->nepochs, ns = lg->nsteps;
        double *sx = mmp_xcalloc((size_t)ns + 1, sizeof(double)), *sy = mmp_xcalloc((size_t)ns + 1, sizeof(double));
        double *ex = mmp_xcalloc((size_t)ne + 1, sizeof(double)), *et = mmp_xcalloc((size_t)ne + 1, sizeof(double));
        double *ed = mmp_xcalloc((size_t)ne + 1, sizeof(double)), *em = mmp_xcalloc((size_t)ne + 1, sizeof(double));
        for (int i = 0; i < ns; i++) { sx[i] = (double)lg->steps[i].step; sy[i] = lg->steps[i].loss; }
        int anydev = 0;
        for (int i = 0; i < ne; i++) {
            ex[i] = lg->epochs[i].epoch;
            et[i] = lg->epochs[i].train_loss;
            ed[i] = lg->epochs[i].has_dev ? lg->epochs[i].dev_loss : NAN;
            em[i] = lg->epochs[i].has_dev ? lg->epochs[i].dev_metric : NAN;
            anydev |= lg->epochs[i].has_dev;
        }
        if (ns) {
            series s1[1] = {{sx, sy, ns, "#4c72b0", "train loss (per step)"}};
            svg_chart(f, "curve-steps", "Training loss per step", "step", s1, 1);
        }
        if (ne) {
            series s2[2] = {{ex, et, ne, "#4c72b0", "train loss"}, {ex, ed, anydev ? ne : 0, "#c44e52", "dev loss"}};
            svg_chart(f, "curve-epochs", "Loss per epoch", "epoch", s2, 2);
            if (anydev) {
                series s3[1] = {{ex, em, ne, "#55a868", "dev accuracy / metric"}};
                svg_chart(f, "curve-dev", "Dev metric per epoch", "epoch", s3, 1);
            }
        }
        free(sx); free(sy); free(ex); free(et); free(ed); free(em);
    }
    if (r->cls) {
        html_cls_section(f, r, "Classification report", mmp_clsreport_text(r->cls, r->names, r->digits), r->cls->C,
                         r->cls->precision, r->cls->recall, r->cls->f1);
        svg_confusion(f, r);
    }
    if (r->ml)
        html_cls_section(f, r, "Classification report (multi-label)", mmp_mlreport_text(r->ml, r->names, r->digits),
                         r->ml->C, r->ml->precision, r->ml->recall, r->ml->f1);
    fputs("</body></html>\n", f);
}
