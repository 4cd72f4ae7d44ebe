/* text/wordlevel.c: the word-level vocabulary of text/wordlevel.h. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "mmp.h"
#include "text/wordlevel.h"

struct mmp_wordlevel {
    int n;
    char **tok;   /* [n] by id */
    int *sorted;  /* ids sorted by token bytes (lookup) */
};

static const char *const SPECIAL[MMP_WL_NSPECIAL] = {"<pad>", "<bos>", "<eos>", "<unk>"};

static int isword(unsigned char c) { return isalnum(c) || c == '_' || c >= 0x80; }

/* the next word of s at *p (lower-cased into buf, cap bytes); its length, 0 at the end */
static size_t next_word(const char *s, size_t *p, char **buf, size_t *cap) {
    size_t i = *p;
    while (s[i] && isspace((unsigned char)s[i])) i++;
    if (!s[i]) { *p = i; return 0; }
    size_t j = i;
    int w = isword((unsigned char)s[i]);
    while (s[j] && !isspace((unsigned char)s[j]) && isword((unsigned char)s[j]) == w) j++;
    size_t n = j - i;
    if (n + 1 > *cap) { *cap = n + 64; *buf = mmp_xrealloc(*buf, *cap); }
    for (size_t k = 0; k < n; k++) (*buf)[k] = (char)tolower((unsigned char)s[i + k]);
    (*buf)[n] = 0;
    *p = j;
    return n;
}

static const mmp_wordlevel *g_sort_w;
static int by_tok(const void *a, const void *b) {
    return strcmp(g_sort_w->tok[*(const int *)a], g_sort_w->tok[*(const int *)b]);
}
static void index_sorted(mmp_wordlevel *w) {
    w->sorted = mmp_xmalloc(sizeof(int) * (size_t)(w->n ? w->n : 1));
    for (int i = 0; i < w->n; i++) w->sorted[i] = i;
    g_sort_w = w;
    qsort(w->sorted, (size_t)w->n, sizeof(int), by_tok);
}

int mmp_wl_id(const mmp_wordlevel *w, const char *tok) {
    int lo = 0, hi = w->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(w->tok[w->sorted[mid]], tok);
        if (!c) return w->sorted[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

typedef struct { char *s; long cnt; } wc;
static int by_count(const void *a, const void *b) {
    const wc *x = a, *y = b;
    if (x->cnt != y->cnt) return x->cnt > y->cnt ? -1 : 1;
    return strcmp(x->s, y->s);
}
static int by_str(const void *a, const void *b) { return strcmp(((const wc *)a)->s, ((const wc *)b)->s); }

mmp_wordlevel *mmp_wl_build(const char *const *texts, size_t n, int min_count) {
    wc *all = NULL;
    size_t na = 0, ca = 0, cap = 0;
    char *buf = NULL;
    for (size_t t = 0; t < n; t++) {
        size_t p = 0;
        while (next_word(texts[t], &p, &buf, &cap)) {
            if (na == ca) { ca = ca ? 2 * ca : 1024; all = mmp_xrealloc(all, sizeof(wc) * ca); }
            all[na++] = (wc){mmp_xstrdup(buf), 1};
        }
    }
    free(buf);
    if (na) qsort(all, na, sizeof(wc), by_str);
    size_t nu = 0;
    for (size_t i = 0; i < na; i++) {
        if (nu && !strcmp(all[nu - 1].s, all[i].s)) { all[nu - 1].cnt++; free(all[i].s); continue; }
        all[nu++] = all[i];
    }
    if (nu) qsort(all, nu, sizeof(wc), by_count);
    mmp_wordlevel *w = mmp_xcalloc(1, sizeof *w);
    w->tok = mmp_xmalloc(sizeof(char *) * (nu + MMP_WL_NSPECIAL));
    for (int k = 0; k < MMP_WL_NSPECIAL; k++) w->tok[w->n++] = mmp_xstrdup(SPECIAL[k]);
    for (size_t i = 0; i < nu; i++) {
        int special = 0;
        for (int k = 0; k < MMP_WL_NSPECIAL; k++) special |= !strcmp(all[i].s, SPECIAL[k]);
        if (all[i].cnt >= min_count && !special) w->tok[w->n++] = all[i].s;
        else free(all[i].s);
    }
    free(all);
    index_sorted(w);
    return w;
}

mmp_wordlevel *mmp_wl_load(const char *path, char *err, size_t errlen) {
    json_t *j = NULL;
    char e2[512] = "";
    int rc = mmp_json_load(path, &j, e2, sizeof e2);
    if (rc != 1) {
        if (rc == 0 || !e2[0]) mmp_errf(err, errlen, "%s: no such file", path);
        else mmp_errf(err, errlen, "%s", e2); /* names the file */
        return NULL;
    }
    json_t *m = json_object_get(j, "model"), *voc = m ? json_object_get(m, "vocab") : NULL;
    const char *type = m ? json_string_value(json_object_get(m, "type")) : NULL;
    if (!type || strcmp(type, "WordLevel") || !json_is_object(voc)) {
        mmp_errf(err, errlen, "%s: not a tokenizers WordLevel file (model.type %s)", path, type ? type : "missing");
        json_decref(j);
        return NULL;
    }
    int n = (int)json_object_size(voc);
    mmp_wordlevel *w = mmp_xcalloc(1, sizeof *w);
    w->n = n;
    w->tok = mmp_xcalloc((size_t)(n ? n : 1), sizeof(char *));
    const char *k;
    json_t *v;
    json_object_foreach(voc, k, v) {
        json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || id >= n || w->tok[id]) {
            mmp_errf(err, errlen, "%s: token \"%s\": id %s (ids must be 0..%d, each once)", path, k,
                     json_is_integer(v) ? "repeated or out of range" : "not an integer", n - 1);
            json_decref(j);
            mmp_wl_free(w);
            return NULL;
        }
        w->tok[id] = mmp_xstrdup(k);
    }
    json_decref(j);
    index_sorted(w);
    if (n < MMP_WL_NSPECIAL || mmp_wl_id(w, "<unk>") != MMP_WL_UNK || mmp_wl_id(w, "<eos>") != MMP_WL_EOS ||
        mmp_wl_id(w, "<pad>") != MMP_WL_PAD || mmp_wl_id(w, "<bos>") != MMP_WL_BOS) {
        mmp_errf(err, errlen, "%s: the special tokens must be <pad> 0, <bos> 1, <eos> 2, <unk> 3", path);
        mmp_wl_free(w);
        return NULL;
    }
    return w;
}

int mmp_wl_save(const mmp_wordlevel *w, const char *path, char *err, size_t errlen) {
    size_t L = strlen(path);
    char *tmp = mmp_xmalloc(L + 16);
    snprintf(tmp, L + 16, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) { free(tmp); return mmp_errf(err, errlen, "%s: cannot write", path); }
    fputs("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [", f);
    for (int k = 0; k < MMP_WL_NSPECIAL; k++)
        fprintf(f, "%s\n    {\"id\": %d, \"content\": \"%s\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                   "\"normalized\": false, \"special\": true}", k ? "," : "", k, SPECIAL[k]);
    fputs("\n  ],\n  \"normalizer\": {\"type\": \"Lowercase\"},\n  \"pre_tokenizer\": {\"type\": \"Whitespace\"},\n"
          "  \"post_processor\": null,\n  \"decoder\": null,\n  \"model\": {\n    \"type\": \"WordLevel\",\n    \"vocab\": {", f);
    for (int i = 0; i < w->n; i++) {
        fputs(i ? ",\n      " : "\n      ", f);
        mmp_json_put_str(f, w->tok[i], MMP_JSON_ESC_NT | MMP_JSON_ESC_R);
        fprintf(f, ": %d", i);
    }
    fputs("\n    },\n    \"unk_token\": \"<unk>\"\n  }\n}\n", f);
    int bad = ferror(f);
    if (fclose(f) || bad || rename(tmp, path)) {
        remove(tmp);
        free(tmp);
        return mmp_errf(err, errlen, "%s: write failed", path);
    }
    free(tmp);
    return 0;
}

void mmp_wl_free(mmp_wordlevel *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->tok[i]);
    free(w->tok);
    free(w->sorted);
    free(w);
}

int mmp_wl_size(const mmp_wordlevel *w) { return w->n; }
const char *mmp_wl_token(const mmp_wordlevel *w, int id) { return id >= 0 && id < w->n ? w->tok[id] : NULL; }

int mmp_wl_encode(const mmp_wordlevel *w, const char *text, int32_t *ids, int max) {
    size_t p = 0, cap = 0;
    char *buf = NULL;
    int n = 0;
    while (next_word(text, &p, &buf, &cap)) {
        int id = mmp_wl_id(w, buf);
        if (n < max) ids[n] = id < 0 ? MMP_WL_UNK : id;
        n++;
    }
    free(buf);
    return n;
}

char *mmp_wl_decode(const mmp_wordlevel *w, const int32_t *ids, int n) {
    size_t len = 1;
    for (int i = 0; i < n; i++)
        if (ids[i] >= MMP_WL_NSPECIAL && ids[i] < w->n) len += strlen(w->tok[ids[i]]) + 1;
    char *s = mmp_xmalloc(len), *q = s;
    *q = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < MMP_WL_NSPECIAL || ids[i] >= w->n) continue;
        if (q != s) *q++ = ' ';
        size_t l = strlen(w->tok[ids[i]]);
        memcpy(q, w->tok[ids[i]], l);
        q += l;
        *q = 0;
    }
    return s;
}
