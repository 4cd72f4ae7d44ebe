/* Report rendering: training-log parsing, JSON keys, and the HTML page
 * rendered by headless Chromium (skipped when chromium is not installed):
 * the DOM has the SVG plots, the accuracy text, every class name. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mmp.h"
#include "testlib.h"
#include "train/report.h"

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, k;
    char tmp[65536];
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (len + k + 1 > cap) buf = realloc(buf, cap = (len + k + 1) * 2);
        memcpy(buf + len, tmp, k);
        len += k;
    }
    fclose(f);
    if (!buf) buf = calloc(1, 1);
    buf[len] = 0;
    if (n) *n = len;
    return buf;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
    return n;
}

/* what writer wrote for r into path */
static char *written(const char *path, void (*writer)(FILE *, const mmp_report *), const mmp_report *r) {
    FILE *f = fopen(path, "w");
    writer(f, r);
    fclose(f);
    return slurp(path, NULL);
}

int main(void) {
    /* a training log with step and epoch entries */
    FILE *f = fopen("train.jsonl", "w");
    for (int s = 1; s <= 30; s++) fprintf(f, "{\"step\":%d,\"epoch\":%d,\"loss\":%.4f,\"lr\":0.001}\n", s, (s - 1) / 10 + 1, 2.0 / s);
    for (int e = 1; e <= 3; e++)
        fprintf(f, "{\"epoch\":%d,\"step\":%d,\"train_loss\":%.3f,\"lr\":0.001,\"dev_loss\":%.3f,\"dev_metric\":%.3f}\n", e, e * 10, 1.0 / e, 1.2 / e, 0.5 + e * 0.1);
    fclose(f);
    mmp_trainlog lg;
    char err[256];
    CHECKF(mmp_trainlog_read(&lg, "train.jsonl", err, sizeof err) == 0, "%s", err);
    CHECK(lg.nsteps == 30 && lg.nepochs == 3);
    CHECK(lg.epochs[2].has_dev && fabs(lg.epochs[2].dev_metric - 0.8) < 1e-12 && lg.steps[29].step == 30);
    f = fopen("bad.jsonl", "w");
    fputs("{\"step\":1,\"loss\":1}\nnot json\n", f);
    fclose(f);
    mmp_trainlog bad;
    CHECKF(mmp_trainlog_read(&bad, "bad.jsonl", err, sizeof err) == -1 && strstr(err, "bad.jsonl: line 2, column "), "%s", err);
    /* keys are the entry's own (not inside a nested object or a string); a
     * diverged run's %.9g numbers (nan, inf) are read as such */
    f = fopen("odd.jsonl", "w");
    fputs("{\"step\":1,\"epoch\":1,\"loss\":0.5,\"note\":\"\\\"train_loss\\\":2\",\"extra\":{\"train_loss\":3}}\n", f);
    fputs("{\"step\":2,\"epoch\":1,\"loss\":nan,\"lr\":-inf}\n", f);
    fputs("{\"epoch\":1,\"step\":2,\"train_loss\":inf,\"lr\":null,\"dev_loss\": -nan, \"dev_metric\":0.25}\n", f);
    fclose(f);
    mmp_trainlog odd;
    CHECKF(mmp_trainlog_read(&odd, "odd.jsonl", err, sizeof err) == 0, "%s", err);
    if (odd.nsteps == 2 && odd.nepochs == 1) {
        CHECK(odd.steps[0].loss == 0.5 && isnan(odd.steps[1].loss) && odd.steps[1].lr == -INFINITY);
        CHECK(isinf(odd.epochs[0].train_loss) && isnan(odd.epochs[0].lr) && isnan(odd.epochs[0].dev_loss) &&
              odd.epochs[0].dev_metric == 0.25 && odd.epochs[0].has_dev);
    } else {
        CHECKF(0, "odd log: %d steps, %d epochs", odd.nsteps, odd.nepochs);
    }
    mmp_trainlog_free(&odd);
    const char *badlog[][2] = {
        {"{\"step\":\"x\",\"loss\":1}\n", "line 1: bad step/epoch"},
        {"\n[1]\n", "line 2: not a JSON object"},
        {"{\"step\":1,\"loss\":1}\n{\"step\":1,\"step\":2,\"loss\":1}\n", "line 2, column 16: duplicate object key"},
        {"{\"step\":1,\"loss\":nano}\n", "line 1, column "},
        {"{\"lr\":1}\n", "line 1: neither a step entry"},
    };
    for (size_t k = 0; k < sizeof badlog / sizeof badlog[0]; k++) {
        f = fopen("bad.jsonl", "w");
        fputs(badlog[k][0], f);
        fclose(f);
        CHECKF(mmp_trainlog_read(&bad, "bad.jsonl", err, sizeof err) == -1 && !strncmp(err, "bad.jsonl: ", 11) &&
               strstr(err, badlog[k][1]), "log %zu: '%s' (want '%s')", k, err, badlog[k][1]);
    }

    int64_t yt[12] = {0, 0, 1, 1, 2, 2, 0, 1, 2, 2, 0, 1}, yp[12] = {0, 1, 1, 1, 2, 0, 0, 1, 2, 1, 0, 2};
    mmp_clsreport cr;
    CHECK(mmp_clsreport_compute(&cr, yt, yp, 12, 4, NULL) == 0); /* class 3: no support, never predicted */
    char *names[4] = {"cat", "dog <&>", "bird", "unused"};
    mmp_report r = {.cls = &cr, .names = names, .digits = 2, .n_retrieval = 100, .nk = 3, .ks = {1, 5, 10},
                    .a2b = {0.25, 0.5, 0.75}, .b2a = {0.3, 0.6, 0.9}, .log = &lg, .title = "test report"};
    char *js = written("r.json", mmp_report_write_json, &r);
    CHECK(strstr(js, "\"accuracy\": 0.66666666666666663") != NULL);
    CHECK(strstr(js, "\"macro avg\"") && strstr(js, "\"weighted avg\"") && strstr(js, "\"confusion_matrix\": [[3, 1, 0, 0]"));
    CHECK(strstr(js, "\"recall@5\": 0.5") && strstr(js, "\"text_to_image\""));
    CHECK(strstr(js, "\"dev_metric\": 0.80000000000000004") != NULL);
    /* python validates the JSON when available */
    const char *py = getenv("MMP_PYTHON");
    if (py && *py) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "%s -c 'import json,sys; d=json.load(open(\"r.json\")); sys.exit(0 if d[\"unused\"][\"support\"]==0 and d[\"dog <&>\"][\"precision\"]>0 else 1)'", py);
        CHECK(system(cmd) == 0);
    }
    free(js);
    char *txt = written("r.txt", mmp_report_write_text, &r);
    CHECK(strstr(txt, "    accuracy                           0.67        12") != NULL);
    CHECK(strstr(txt, "confusion matrix") && strstr(txt, "image -> text") && strstr(txt, "best dev metric 0.8000"));
    free(txt);

    char *html = written("report.html", mmp_report_write_html, &r);
    CHECK(count(html, "<svg") == 5); /* steps, epochs, dev, per-class, confusion */
    CHECK(strstr(html, "dog &lt;&amp;&gt;") && !strstr(html, "dog <&>"));
    CHECK(!strstr(html, "http://") || count(html, "http://") == count(html, "xmlns=\"http://www.w3.org/2000/svg\""));
    free(html);

    /* multi-label page */
    {
        uint8_t mt[12] = {1, 0, 1, 0, 1, 0, 1, 1, 0, 0, 0, 1}, mp[12] = {1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1};
        mmp_mlreport ml;
        mmp_mlreport_compute(&ml, mt, mp, 4, 3);
        char *mn[3] = {"x", "y", "z"};
        mmp_report mr = {.ml = &ml, .names = mn, .digits = 2, .title = "ml"};
        char *mh = written("ml.html", mmp_report_write_html, &mr);
        CHECK(count(mh, "<svg") == 1 && strstr(mh, "Multi-label micro F1: ") && strstr(mh, "samples avg"));
        free(mh);
        char *mj = written("ml.json", mmp_report_write_json, &mr);
        CHECK(strstr(mj, "\"samples avg\"") && strstr(mj, "\"micro avg\"") && !strstr(mj, "\"accuracy\""));
        free(mj);
        mmp_mlreport_free(&ml);
    }

    /* render in headless Chromium */
    const char *chrome = NULL;
    const char *cands[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome", NULL};
    for (int i = 0; cands[i]; i++) {
        struct stat sb;
        if (stat(cands[i], &sb) == 0) { chrome = cands[i]; break; }
    }
    if (!chrome) {
        mmp_clsreport_free(&cr);
        mmp_trainlog_free(&lg);
        if (t_failures) TEST_END();
        SKIP("chromium not installed (apt-get install -y chromium): HTML not rendered");
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --headless --disable-gpu --no-sandbox --user-data-dir=./chrome-profile --dump-dom file://$PWD/report.html > dom.html 2>chrome.log", chrome);
    CHECK(system(cmd) == 0);
    char *dom = slurp("dom.html", NULL);
    CHECK(dom && count(dom, "<svg") == 5);
    CHECK(dom && strstr(dom, "Accuracy: 0.6667"));
    CHECK(dom && count(dom, "class=\"cell\"") == 16 && count(dom, "class=\"bar\"") == 12);
    CHECK(dom && strstr(dom, "unused") && strstr(dom, "<polyline"));
    free(dom);
    snprintf(cmd, sizeof cmd, "%s --headless --disable-gpu --no-sandbox --user-data-dir=./chrome-profile --screenshot=$PWD/shot.png --window-size=900,2400 file://$PWD/report.html >>chrome.log 2>&1", chrome);
    CHECK(system(cmd) == 0);
    size_t pn = 0;
    char *png = slurp("shot.png", &pn);
    CHECK(png && pn > 10000 && !memcmp(png, "\x89PNG", 4));
    printf("chromium rendered the page: DOM has 5 svg, 16 cells, 12 bars; screenshot %zu bytes\n", pn);
    free(png);
    mmp_clsreport_free(&cr);
    mmp_trainlog_free(&lg);
    TEST_END();
}
