/* The question / caption manifests of mmp-decode --manifest (manifest.h). */
#include "image/manifest.h"

#include "image/source.h"
#include "json.h"
#include "mmp.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void mmp_manifest_free(mmp_manifest *m) {
    for (size_t i = 0; i < m->n; i++) {
        mmp_mrow *r = &m->rows[i];
        free(r->image), free(r->image_id), free(r->id), free(r->question), free(r->qtype);
        for (int k = 0; k < r->nanswers; k++) free(r->answers[k]);
        for (int k = 0; k < r->ncaptions; k++) free(r->captions[k]);
        free(r->answers), free(r->captions);
    }
    free(m->rows);
    free(m->path);
    memset(m, 0, sizeof *m);
}

enum { K_IMAGE, K_IMAGE_ID, K_QUESTION, K_QUESTION_ID, K_QTYPE, K_ANSWERS, K_ANSWER, K_CAPTIONS, K_CAPTION, K_N };
static const char *const KEYS[K_N][5] = {
    {"image", "path", "file_name", "image_path", NULL},
    {"image_id", NULL},
    {"question", NULL},
    {"question_id", NULL},
    {"question_type", "qtype", NULL},
    {"answers", NULL},
    {"answer", NULL},
    {"captions", NULL},
    {"caption", NULL},
};

static int key_of(const char *name) {
    for (int k = 0; k < K_N; k++)
        for (int a = 0; KEYS[k][a]; a++)
            if (!strcasecmp(name, KEYS[k][a])) return k;
    return -1;
}

static void push(char ***v, int *n, const char *s) {
    *v = mmp_xrealloc(*v, sizeof(char *) * (size_t)(*n + 1));
    (*v)[(*n)++] = mmp_xstrdup(s);
}

static char *resolve(const char *manifest, const char *p) {
    if (p[0] == '/') return mmp_xstrdup(p);
    const char *slash = strrchr(manifest, '/');
    if (!slash) return mmp_xstrdup(p);
    return mmp_xasprintf("%.*s/%s", (int)(slash - manifest), manifest, p);
}

/* a raw row: strings from the file (image as written) */
typedef struct {
    char *v[K_N]; /* single values (answers/captions: CSV joined by '|') */
    char **answers, **captions;
    int nanswers, ncaptions, have_answers, have_captions;
} raw;

static void raw_free(raw *r) {
    for (int k = 0; k < K_N; k++) free(r->v[k]);
    for (int k = 0; k < r->nanswers; k++) free(r->answers[k]);
    for (int k = 0; k < r->ncaptions; k++) free(r->captions[k]);
    free(r->answers), free(r->captions);
    memset(r, 0, sizeof *r);
}

/* "a|b|c" into a list; 0, or -1 on an empty item (*bad = its 1-based index) */
static int split_bar(const char *s, char ***v, int *n, int *bad) {
    const char *p = s;
    for (int i = 1;; i++) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (!len) return *bad = i, -1;
        char *x = mmp_xmalloc(len + 1);
        memcpy(x, p, len);
        x[len] = 0;
        *v = mmp_xrealloc(*v, sizeof(char *) * (size_t)(*n + 1));
        (*v)[(*n)++] = x;
        if (!e) return 0;
        p = e + 1;
    }
}

/* a raw row into m->rows */
static int add_row(mmp_manifest *m, raw *r, int line, char *err, size_t errlen) {
    const char *f = m->path;
    if (r->v[K_QUESTION] && !r->v[K_QUESTION][0])
        return mmp_errf(err, errlen, "%s: line %d: empty question", f, line);
    if (!r->v[K_IMAGE] || !r->v[K_IMAGE][0]) {
        if (r->v[K_QUESTION]) return mmp_errf(err, errlen, "%s: line %d: a question with no image", f, line);
        return mmp_errf(err, errlen, "%s: line %d: no image (want an \"image\" path)", f, line);
    }
    int bad = 0;
    if (m->csv) { /* '|'-joined lists */
        if (r->v[K_ANSWERS] && r->v[K_ANSWERS][0] && split_bar(r->v[K_ANSWERS], &r->answers, &r->nanswers, &bad))
            return mmp_errf(err, errlen, "%s: line %d: empty answer (answer %d of \"answers\")", f, line, bad);
        if (r->v[K_CAPTIONS] && r->v[K_CAPTIONS][0] && split_bar(r->v[K_CAPTIONS], &r->captions, &r->ncaptions, &bad))
            return mmp_errf(err, errlen, "%s: line %d: empty caption (caption %d of \"captions\")", f, line, bad);
        r->have_answers = r->nanswers > 0;
        r->have_captions = r->ncaptions > 0;
    }
    for (int k = 0; k < r->nanswers; k++)
        if (!r->answers[k][0]) return mmp_errf(err, errlen, "%s: line %d: empty answer (answer %d of \"answers\")", f, line, k + 1);
    for (int k = 0; k < r->ncaptions; k++)
        if (!r->captions[k][0]) return mmp_errf(err, errlen, "%s: line %d: empty caption (caption %d of \"captions\")", f, line, k + 1);
    if (!r->have_answers && r->v[K_ANSWER]) {
        if (!r->v[K_ANSWER][0] && !m->csv) return mmp_errf(err, errlen, "%s: line %d: empty answer", f, line);
        if (r->v[K_ANSWER][0]) push(&r->answers, &r->nanswers, r->v[K_ANSWER]);
    }
    if (!r->have_captions && r->v[K_CAPTION]) {
        if (!r->v[K_CAPTION][0]) return mmp_errf(err, errlen, "%s: line %d: empty caption", f, line);
        push(&r->captions, &r->ncaptions, r->v[K_CAPTION]);
    }
    if ((r->nanswers || (r->v[K_QTYPE] && r->v[K_QTYPE][0])) && !r->v[K_QUESTION])
        return mmp_errf(err, errlen, "%s: line %d: answers or a question type without a question", f, line);
    if (m->n % 256 == 0) m->rows = mmp_xrealloc(m->rows, sizeof(mmp_mrow) * (m->n + 256));
    mmp_mrow *o = &m->rows[m->n++];
    memset(o, 0, sizeof *o);
    o->line = line;
    o->image = resolve(m->path, r->v[K_IMAGE]);
    o->image_id = mmp_xstrdup(r->v[K_IMAGE_ID] && r->v[K_IMAGE_ID][0] ? r->v[K_IMAGE_ID] : r->v[K_IMAGE]);
    if (r->v[K_QUESTION_ID] && r->v[K_QUESTION_ID][0]) o->id = mmp_xstrdup(r->v[K_QUESTION_ID]);
    o->question = r->v[K_QUESTION], r->v[K_QUESTION] = NULL;
    if (r->v[K_QTYPE] && r->v[K_QTYPE][0]) o->qtype = r->v[K_QTYPE], r->v[K_QTYPE] = NULL;
    o->answers = r->answers, o->nanswers = r->nanswers, r->answers = NULL, r->nanswers = 0;
    o->captions = r->captions, o->ncaptions = r->ncaptions, r->captions = NULL, r->ncaptions = 0;
    return 0;
}

/* ---------------- CSV ---------------- */

static int read_csv(mmp_manifest *m, char *err, size_t errlen) {
    FILE *f = fopen(m->path, "r");
    if (!f) return mmp_errf(err, errlen, "%s: %s", m->path, strerror(errno));
    mmp_skip_bom(f);
    char *buf = NULL, **hdr = NULL;
    size_t bcap = 0;
    int nh = 0, nl, rc = 0;
    int hrc = mmp_csv_record(f, &hdr, &nh, &buf, &bcap, &nl);
    int col[K_N];
    for (int k = 0; k < K_N; k++) col[k] = -1;
    if (hrc < 0) rc = mmp_errf(err, errlen, "%s: line 1: unterminated quoted field", m->path);
    else if (hrc == 0) rc = mmp_errf(err, errlen, "%s: empty CSV manifest (want a header row: image,question,answers...)", m->path);
    else {
        for (int i = 0; i < nh; i++) {
            int k = key_of(hdr[i]);
            if (k < 0) continue;
            if (col[k] >= 0) {
                rc = mmp_errf(err, errlen, "%s: line 1: column \"%s\" given twice", m->path, KEYS[k][0]);
                break;
            }
            col[k] = i;
        }
        if (!rc && col[K_IMAGE] < 0) rc = mmp_errf(err, errlen, "%s: line 1: CSV header has no image column (image, path, file_name or image_path)", m->path);
    }
    for (int i = 0; i < nh; i++) free(hdr[i]);
    free(hdr);
    int line = 1 + nl;
    while (!rc) {
        char **fl = NULL;
        int nf = 0, at = line;
        int r = mmp_csv_record(f, &fl, &nf, &buf, &bcap, &nl);
        line += nl;
        if (r == 0) break;
        if (r < 0) {
            rc = mmp_errf(err, errlen, "%s: line %d: unterminated quoted field", m->path, at);
            break;
        }
        if (!(nf == 1 && !fl[0][0])) { /* not a blank line */
            if (nf > nh) rc = mmp_errf(err, errlen, "%s: line %d: %d fields, the header has %d", m->path, at, nf, nh);
            raw w = {0};
            for (int k = 0; k < K_N && !rc; k++)
                if (col[k] >= 0 && col[k] < nf) w.v[k] = mmp_xstrdup(fl[col[k]]);
            if (!rc) rc = add_row(m, &w, at, err, errlen);
            raw_free(&w);
        }
        for (int i = 0; i < nf; i++) free(fl[i]);
        free(fl);
    }
    free(buf);
    fclose(f);
    return rc;
}

/* ---------------- JSONL ---------------- */

/* a string (or, where ints, an integer in decimal) */
static int json_str(const json_t *v, int ints, char **out) {
    if (json_is_string(v)) return *out = mmp_xstrdup(json_string_value(v)), 0;
    if (ints && json_is_integer(v)) return *out = mmp_xasprintf("%lld", (long long)json_integer_value(v)), 0;
    return -1;
}

static int json_row(mmp_manifest *m, const char *s, size_t n, int line, char *err, size_t errlen) {
    char e2[400];
    json_t *o = mmp_json_parse(s, n, line, e2, sizeof e2);
    if (!o) return mmp_errf(err, errlen, "%s: %s", m->path, e2);
    if (!json_is_object(o)) {
        mmp_errf(err, errlen, "%s: line %d: want a JSON object, not %s", m->path, line, mmp_json_type_name(o));
        json_decref(o);
        return -1;
    }
    raw w = {0};
    int rc = 0;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        int k = key_of(key);
        if (k < 0 || json_is_null(v)) continue;
        if (w.v[k] || (k == K_ANSWERS && w.have_answers) || (k == K_CAPTIONS && w.have_captions)) {
            rc = mmp_errf(err, errlen, "%s: line %d: \"%s\" given twice (as \"%s\")", m->path, line, KEYS[k][0], key);
            break;
        }
        if (k == K_ANSWERS || k == K_CAPTIONS) {
            char ***lst = k == K_ANSWERS ? &w.answers : &w.captions;
            int *cnt = k == K_ANSWERS ? &w.nanswers : &w.ncaptions;
            if (!json_is_array(v)) {
                rc = mmp_errf(err, errlen, "%s: line %d: \"%s\" is %s, expected a list of strings", m->path, line, key,
                              mmp_json_type_name(v));
                break;
            }
            size_t i;
            json_t *x;
            json_array_foreach(v, i, x) {
                char *sv = NULL;
                /* VQA v2 answers: {"answer": "...", "answer_confidence": ..., "answer_id": ...} */
                const json_t *y = k == K_ANSWERS && json_is_object(x) ? json_object_get(x, "answer") : x;
                if (!y || json_str(y, k == K_ANSWERS, &sv)) {
                    rc = mmp_errf(err, errlen, "%s: line %d: \"%s\" item %zu is %s, expected a string%s", m->path, line, key,
                                  i + 1, mmp_json_type_name(x), k == K_ANSWERS ? " (or {\"answer\": string})" : "");
                    break;
                }
                *lst = mmp_xrealloc(*lst, sizeof(char *) * (size_t)(*cnt + 1));
                (*lst)[(*cnt)++] = sv;
            }
            if (rc) break;
            if (k == K_ANSWERS) w.have_answers = 1;
            else w.have_captions = 1;
            continue;
        }
        int ints = k == K_IMAGE_ID || k == K_QUESTION_ID || k == K_ANSWER;
        if (json_str(v, ints, &w.v[k])) {
            rc = mmp_errf(err, errlen, "%s: line %d: \"%s\" is %s, expected a string%s", m->path, line, key,
                          mmp_json_type_name(v), ints ? " or an integer" : "");
            break;
        }
    }
    json_decref(o);
    if (!rc) rc = add_row(m, &w, line, err, errlen);
    raw_free(&w);
    return rc;
}

static int read_jsonl(mmp_manifest *m, char *err, size_t errlen) {
    FILE *f = fopen(m->path, "r");
    if (!f) return mmp_errf(err, errlen, "%s: %s", m->path, strerror(errno));
    char *line = NULL;
    size_t lc = 0;
    ssize_t len;
    int ln = 0, rc = 0;
    while (rc == 0 && (len = getline(&line, &lc, f)) >= 0) {
        ln++;
        char *p = line;
        if (ln == 1 && len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3, len -= 3;
        char *q = p;
        while (q < p + len && isspace((unsigned char)*q)) q++;
        if (q == p + len) continue;
        if (p[len - 1] == '\n') len--;
        rc = json_row(m, p, (size_t)len, ln, err, errlen);
    }
    free(line);
    fclose(f);
    return rc;
}

/* ---------------- ids ---------------- */

static const mmp_mrow *g_rows;
static int cmp_img_id(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int c = strcmp(g_rows[x].image_id, g_rows[y].image_id);
    return c ? c : (x > y) - (x < y);
}

/* question rows without a question_id: image_id + "/q" + their index among
 * the question rows of that image_id (file order); other rows: image_id */
static void make_ids(mmp_manifest *m) {
    size_t *ix = mmp_xmalloc(sizeof(size_t) * (m->n ? m->n : 1));
    for (size_t i = 0; i < m->n; i++) ix[i] = i;
    g_rows = m->rows;
    qsort(ix, m->n, sizeof *ix, cmp_img_id);
    int k = 0;
    for (size_t j = 0; j < m->n; j++) {
        mmp_mrow *r = &m->rows[ix[j]];
        if (j == 0 || strcmp(m->rows[ix[j - 1]].image_id, r->image_id)) k = 0;
        if (r->id) {
            if (r->question) k++;
            continue;
        }
        if (r->question) r->id = mmp_xasprintf("%s/q%d", r->image_id, k++);
        else r->id = mmp_xstrdup(r->image_id);
    }
    free(ix);
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcasecmp(s + n - k, suf);
}

int mmp_manifest_read(const char *path, mmp_manifest *m, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    m->path = mmp_xstrdup(path);
    m->csv = ends_with(path, ".csv");
    int rc = m->csv ? read_csv(m, err, errlen) : read_jsonl(m, err, errlen);
    if (!rc && !m->n) rc = mmp_errf(err, errlen, "%s: no rows", path);
    if (rc) {
        mmp_manifest_free(m);
        return -1;
    }
    make_ids(m);
    return 0;
}
