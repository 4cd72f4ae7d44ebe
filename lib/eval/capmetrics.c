/* eval/capmetrics.c: BLEU-1..4, ROUGE-L, CIDEr-D as pycocoevalcap 1.2 computes
 * them, and a PTB-like caption tokenizer (see capmetrics.h). */
#include "eval/capmetrics.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "train/metrics.h"

/* ------------------------------------------------------------------ */
/* interning: words -> ids, n-grams (up to 4 word ids) -> ids          */
/* ------------------------------------------------------------------ */

typedef struct {
    char **s;
    size_t *len;
    int n, cap;
    int *slot;
    size_t nslot; /* power of two */
} words_t;

static void grow_slots(int **slot, size_t *nslot, int n, uint64_t (*hash)(void *, int), void *ctx) {
    if ((size_t)(n + 1) * 2 <= *nslot) return;
    size_t ns = *nslot ? *nslot * 2 : 1024;
    int *s = mmp_xmalloc(sizeof(int) * ns);
    for (size_t i = 0; i < ns; i++) s[i] = -1;
    for (int i = 0; i < n; i++) {
        size_t h = (size_t)hash(ctx, i) & (ns - 1);
        while (s[h] >= 0) h = (h + 1) & (ns - 1);
        s[h] = i;
    }
    free(*slot);
    *slot = s;
    *nslot = ns;
}

static uint64_t word_hash(void *ctx, int i) {
    words_t *w = ctx;
    return mmp_hash64(w->s[i], w->len[i], 0x5eed);
}

static int word_id(words_t *w, const char *p, size_t len) {
    grow_slots(&w->slot, &w->nslot, w->n, word_hash, w);
    size_t h = (size_t)mmp_hash64(p, len, 0x5eed) & (w->nslot - 1);
    for (; w->slot[h] >= 0; h = (h + 1) & (w->nslot - 1)) {
        int i = w->slot[h];
        if (w->len[i] == len && !memcmp(w->s[i], p, len)) return i;
    }
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 256;
        w->s = mmp_xrealloc(w->s, sizeof(char *) * (size_t)w->cap);
        w->len = mmp_xrealloc(w->len, sizeof(size_t) * (size_t)w->cap);
    }
    char *c = mmp_xmalloc(len + 1);
    memcpy(c, p, len);
    c[len] = 0;
    w->s[w->n] = c;
    w->len[w->n] = len;
    w->slot[h] = w->n;
    return w->n++;
}

static void words_free(words_t *w) {
    for (int i = 0; i < w->n; i++) free(w->s[i]);
    free(w->s);
    free(w->len);
    free(w->slot);
}

typedef struct {
    int (*key)[4]; /* word ids, -1 past the n-gram's length */
    int *k;        /* length 1..4 */
    int n, cap;
    int *slot;
    size_t nslot;
} ngrams_t;

static uint64_t ng_hash_key(const int *key) { return mmp_hash64(key, sizeof(int) * 4, 0x9e37); }
static uint64_t ng_hash(void *ctx, int i) { return ng_hash_key(((ngrams_t *)ctx)->key[i]); }

static int ngram_id(ngrams_t *g, const int *w, int k) {
    int key[4] = {-1, -1, -1, -1};
    memcpy(key, w, sizeof(int) * (size_t)k);
    grow_slots(&g->slot, &g->nslot, g->n, ng_hash, g);
    size_t h = (size_t)ng_hash_key(key) & (g->nslot - 1);
    for (; g->slot[h] >= 0; h = (h + 1) & (g->nslot - 1)) {
        int i = g->slot[h];
        if (!memcmp(g->key[i], key, sizeof key)) return i;
    }
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 1024;
        g->key = mmp_xrealloc(g->key, sizeof(int[4]) * (size_t)g->cap);
        g->k = mmp_xrealloc(g->k, sizeof(int) * (size_t)g->cap);
    }
    memcpy(g->key[g->n], key, sizeof key);
    g->k[g->n] = k;
    g->slot[h] = g->n;
    return g->n++;
}

static void ngrams_free(ngrams_t *g) {
    free(g->key);
    free(g->k);
    free(g->slot);
}

/* ------------------------------------------------------------------ */
/* cooked sentences                                                    */
/* ------------------------------------------------------------------ */

/* precook(): the distinct 1..4-grams of a sentence split on whitespace, in
 * the insertion order of its Python dict (all unigrams in order of first
 * occurrence, then the bigrams, ...), with their counts. */
typedef struct {
    int nwords;
    int m;
    int *id, *cnt;
} cooked_t;

typedef struct {
    words_t w;
    ngrams_t g;
    int *pos;   /* [cap_pos] scratch: index in the sentence being cooked, -1 */
    int cap_pos;
    int *wbuf;
    int cap_w;
} ctx_t;

static void ensure_pos(ctx_t *c) {
    if (c->g.n <= c->cap_pos) return;
    int nc = c->cap_pos ? c->cap_pos : 1024;
    while (nc < c->g.n) nc *= 2;
    c->pos = mmp_xrealloc(c->pos, sizeof(int) * (size_t)nc);
    for (int i = c->cap_pos; i < nc; i++) c->pos[i] = -1;
    c->cap_pos = nc;
}

static int is_pyspace(unsigned char ch) { return ch == ' ' || (ch >= '\t' && ch <= '\r') || (ch >= 0x1c && ch <= 0x1f); }

static void cook(ctx_t *c, const char *s, cooked_t *out) {
    int nw = 0;
    for (const char *p = s; *p;) {
        while (*p && is_pyspace((unsigned char)*p)) p++;
        if (!*p) break;
        const char *q = p;
        while (*q && !is_pyspace((unsigned char)*q)) q++;
        if (nw == c->cap_w) c->wbuf = mmp_xrealloc(c->wbuf, sizeof(int) * (size_t)(c->cap_w = c->cap_w ? c->cap_w * 2 : 64));
        c->wbuf[nw++] = word_id(&c->w, p, (size_t)(q - p));
        p = q;
    }
    out->nwords = nw;
    int maxm = nw * 4 + 1, m = 0;
    out->id = mmp_xmalloc(sizeof(int) * (size_t)maxm);
    out->cnt = mmp_xmalloc(sizeof(int) * (size_t)maxm);
    for (int k = 1; k <= 4; k++)
        for (int i = 0; i + k <= nw; i++) {
            int id = ngram_id(&c->g, c->wbuf + i, k);
            ensure_pos(c);
            if (c->pos[id] >= 0) {
                out->cnt[c->pos[id]]++;
            } else {
                c->pos[id] = m;
                out->id[m] = id;
                out->cnt[m++] = 1;
            }
        }
    for (int j = 0; j < m; j++) c->pos[out->id[j]] = -1;
    out->m = m;
}

static void cooked_free(cooked_t *x) {
    free(x->id);
    free(x->cnt);
}

/* ------------------------------------------------------------------ */
/* ROUGE-L                                                             */
/* ------------------------------------------------------------------ */

/* str.split(" "): n+1 tokens for n spaces (empty ones kept) */
static int split_space(words_t *w, const char *s, int **out) {
    int n = 1;
    for (const char *p = s; *p; p++) n += *p == ' ';
    int *t = mmp_xmalloc(sizeof(int) * (size_t)n), k = 0;
    const char *p = s;
    for (;;) {
        const char *q = strchr(p, ' ');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        t[k++] = word_id(w, p, len);
        if (!q) break;
        p = q + 1;
    }
    *out = t;
    return n;
}

static int lcs_len(const int *a, int na, const int *b, int nb, int *row) {
    /* row[0..nb]: lengths against b; the LCS length is symmetric */
    for (int j = 0; j <= nb; j++) row[j] = 0;
    for (int i = 1; i <= na; i++) {
        int diag = 0;
        for (int j = 1; j <= nb; j++) {
            int up = row[j];
            row[j] = a[i - 1] == b[j - 1] ? diag + 1 : (up > row[j - 1] ? up : row[j - 1]);
            diag = up;
        }
    }
    return row[nb];
}

static double rouge_one(words_t *w, const char *cand, const char *const *refs, int nrefs) {
    const double beta2 = 1.2 * 1.2;
    int *tc, nc = split_space(w, cand, &tc);
    double pmax = 0, rmax = 0;
    for (int r = 0; r < nrefs; r++) {
        int *tr, nr = split_space(w, refs[r], &tr);
        int *row = mmp_xmalloc(sizeof(int) * (size_t)(nc + 1));
        int l = lcs_len(tr, nr, tc, nc, row);
        free(row);
        free(tr);
        double p = l / (double)nc, rc = l / (double)nr;
        if (r == 0 || p > pmax) pmax = p;
        if (r == 0 || rc > rmax) rmax = rc;
    }
    free(tc);
    if (pmax != 0 && rmax != 0) return ((1 + beta2) * pmax * rmax) / (rmax + beta2 * pmax);
    return 0.0;
}

/* ------------------------------------------------------------------ */
/* scores                                                              */
/* ------------------------------------------------------------------ */

void mmp_capscores_free(mmp_capscores *s) {
    free(s->bleu_img);
    free(s->rouge_img);
    free(s->cider_img);
    memset(s, 0, sizeof *s);
}

/* counts2vec(): tf-idf values in the cooked order, norms per n, "length"
 * (cider_scorer.py adds the counts where its 0-based n == 1: the bigrams) */
static void counts2vec(const cooked_t *x, const int *k_of, const double *df, double ref_len, double *vec, double norm[4],
                       double *length) {
    double nrm[4] = {0, 0, 0, 0};
    double len = 0;
    for (int j = 0; j < x->m; j++) {
        double d = log(df[x->id[j]] > 1.0 ? df[x->id[j]] : 1.0);
        int n = k_of[x->id[j]] - 1;
        vec[j] = (double)x->cnt[j] * (ref_len - d);
        nrm[n] += pow(vec[j], 2);
        if (n == 1) len += x->cnt[j];
    }
    for (int n = 0; n < 4; n++) norm[n] = sqrt(nrm[n]);
    *length = len;
}

int mmp_capscores_compute(mmp_capscores *s, const char *const *cand, const char *const *const *refs, const int *nrefs, int n,
                          char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    if (n < 1) return mmp_errf(err, errlen, "no images to score");
    for (int i = 0; i < n; i++)
        if (nrefs[i] < 1) return mmp_errf(err, errlen, "image %d has no reference captions", i);
    s->n = n;
    s->bleu_img = mmp_xcalloc((size_t)n * 4, sizeof(double));
    s->rouge_img = mmp_xcalloc((size_t)n, sizeof(double));
    s->cider_img = mmp_xcalloc((size_t)n, sizeof(double));

    ctx_t c;
    memset(&c, 0, sizeof c);
    cooked_t *ct = mmp_xcalloc((size_t)n, sizeof(cooked_t));
    cooked_t **cr = mmp_xcalloc((size_t)n, sizeof(cooked_t *));
    for (int i = 0; i < n; i++) {
        cr[i] = mmp_xcalloc((size_t)nrefs[i], sizeof(cooked_t));
        for (int r = 0; r < nrefs[i]; r++) cook(&c, refs[i][r], &cr[i][r]);
        cook(&c, cand[i], &ct[i]);
    }
    int G = c.g.n;
    const int *k_of = c.g.k;

    /* ---- BLEU ---- */
    const double small = 1e-9, tiny = 1e-15;
    int *mx = mmp_xcalloc((size_t)G + 1, sizeof(int));
    double tot_guess[4] = {0, 0, 0, 0}, tot_correct[4] = {0, 0, 0, 0}, testlen_sum = 0, reflen_sum = 0;
    for (int i = 0; i < n; i++) {
        for (int r = 0; r < nrefs[i]; r++)
            for (int j = 0; j < cr[i][r].m; j++)
                if (cr[i][r].cnt[j] > mx[cr[i][r].id[j]]) mx[cr[i][r].id[j]] = cr[i][r].cnt[j];
        int testlen = ct[i].nwords, reflen = 0, best = -1;
        for (int r = 0; r < nrefs[i]; r++) {
            int l = cr[i][r].nwords, d = abs(l - testlen);
            if (best < 0 || d < best || (d == best && l < reflen)) best = d, reflen = l;
        }
        double correct[4] = {0, 0, 0, 0}, guess[4];
        for (int k = 0; k < 4; k++) guess[k] = testlen - k > 0 ? testlen - k : 0;
        for (int j = 0; j < ct[i].m; j++) {
            int id = ct[i].id[j], v = ct[i].cnt[j] < mx[id] ? ct[i].cnt[j] : mx[id];
            correct[k_of[id] - 1] += v;
        }
        for (int r = 0; r < nrefs[i]; r++)
            for (int j = 0; j < cr[i][r].m; j++) mx[cr[i][r].id[j]] = 0;
        testlen_sum += testlen;
        reflen_sum += reflen;
        double b = 1.0;
        for (int k = 0; k < 4; k++) {
            tot_guess[k] += guess[k];
            tot_correct[k] += correct[k];
            b *= (correct[k] + tiny) / (guess[k] + small);
            s->bleu_img[i * 4 + k] = pow(b, 1. / (k + 1));
        }
        double ratio = (testlen + tiny) / (reflen + small);
        if (ratio < 1)
            for (int k = 0; k < 4; k++) s->bleu_img[i * 4 + k] *= exp(1 - 1 / ratio);
    }
    free(mx);
    {
        double b = 1.0;
        for (int k = 0; k < 4; k++) {
            b *= (tot_correct[k] + tiny) / (tot_guess[k] + small);
            s->bleu[k] = pow(b, 1. / (k + 1));
        }
        double ratio = (testlen_sum + tiny) / (reflen_sum + small);
        if (ratio < 1)
            for (int k = 0; k < 4; k++) s->bleu[k] *= exp(1 - 1 / ratio);
        s->testlen = testlen_sum;
        s->reflen = reflen_sum;
    }

    /* ---- ROUGE-L ---- */
    for (int i = 0; i < n; i++) s->rouge_img[i] = rouge_one(&c.w, cand[i], refs[i], nrefs[i]);
    s->rouge = mmp_np_sum(s->rouge_img, n) / (double)n;

    /* ---- CIDEr-D ---- */
    double *df = mmp_xcalloc((size_t)G + 1, sizeof(double));
    int *stamp = mmp_xmalloc(sizeof(int) * ((size_t)G + 1));
    for (int j = 0; j < G; j++) stamp[j] = -1;
    for (int i = 0; i < n; i++)
        for (int r = 0; r < nrefs[i]; r++)
            for (int j = 0; j < cr[i][r].m; j++) {
                int id = cr[i][r].id[j];
                if (stamp[id] != i) stamp[id] = i, df[id] += 1;
            }
    free(stamp);
    double ref_len = log((double)n);
    double *refv = mmp_xcalloc((size_t)G + 1, sizeof(double));
    for (int i = 0; i < n; i++) {
        double *vh = mmp_xmalloc(sizeof(double) * (size_t)(ct[i].m + 1)), nh[4], lh;
        counts2vec(&ct[i], k_of, df, ref_len, vh, nh, &lh);
        double score[4] = {0, 0, 0, 0};
        for (int r = 0; r < nrefs[i]; r++) {
            const cooked_t *x = &cr[i][r];
            double *vr = mmp_xmalloc(sizeof(double) * (size_t)(x->m + 1)), nr[4], lr;
            counts2vec(x, k_of, df, ref_len, vr, nr, &lr);
            for (int j = 0; j < x->m; j++) refv[x->id[j]] = vr[j];
            double delta = lh - lr, val[4] = {0, 0, 0, 0};
            for (int j = 0; j < ct[i].m; j++) {
                int id = ct[i].id[j];
                double a = vh[j], b = refv[id];
                val[k_of[id] - 1] += (b < a ? b : a) * b;
            }
            double pen = pow(M_E, -(delta * delta) / (2 * pow(6.0, 2)));
            for (int k = 0; k < 4; k++) {
                if (nh[k] != 0 && nr[k] != 0) val[k] /= (nh[k] * nr[k]);
                val[k] *= pen;
                score[k] += val[k];
            }
            for (int j = 0; j < x->m; j++) refv[x->id[j]] = 0;
            free(vr);
        }
        free(vh);
        double avg = mmp_np_sum(score, 4) / 4.0;
        avg /= nrefs[i];
        avg *= 10.0;
        s->cider_img[i] = avg;
    }
    s->cider = mmp_np_sum(s->cider_img, n) / (double)n;
    free(refv);
    free(df);

    for (int i = 0; i < n; i++) {
        for (int r = 0; r < nrefs[i]; r++) cooked_free(&cr[i][r]);
        free(cr[i]);
        cooked_free(&ct[i]);
    }
    free(cr);
    free(ct);
    words_free(&c.w);
    ngrams_free(&c.g);
    free(c.pos);
    free(c.wbuf);
    return 0;
}

/* ------------------------------------------------------------------ */
/* the tokenizer                                                       */
/* ------------------------------------------------------------------ */

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *p, size_t len) {
    if (b->n + len + 2 > b->cap) {
        while (b->n + len + 2 > b->cap) b->cap = b->cap ? b->cap * 2 : 64;
        b->s = mmp_xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, p, len);
    b->n += len;
    b->s[b->n] = 0;
}

/* the tokens pycocoevalcap removes after PTBTokenizer */
static const char *const removed[] = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"};

static void emit(sbuf *out, const char *p, size_t len) {
    if (!len) return;
    for (size_t k = 0; k < sizeof removed / sizeof *removed; k++)
        if (strlen(removed[k]) == len && !memcmp(removed[k], p, len)) return;
    if (out->n) sb_put(out, " ", 1);
    sb_put(out, p, len);
}

/* words PTB's lexer keeps with their period ("mr." stays one token) */
static const char *const abbrev[] = {
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "inc", "co", "corp", "ltd", "bros", "no", "mt", "ave", "rd", "blvd", "prof",
    "gen", "sen", "rep", "gov", "sgt", "capt", "lt", "col", "adm", "cmdr", "rev", "hon", "pres", "supt", "messrs", "ste", "dept",
    "est", "sq", "ft", "etc", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sept", "oct", "nov", "dec", "mon", "tue", "wed",
    "thu", "fri", "fla", "calif", "ky", "tenn", "ariz", "mich", "minn", "mo", "va", "wis", "al", "ph"};

static int is_al(int c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80; }
static int is_dig(int c) { return c >= '0' && c <= '9'; }
static int is_let(int c) { return (c >= 'a' && c <= 'z') || c >= 0x80; }

/* "'s" "'m" "'d" "'re" "'ve" "'ll" at p (p[0] == '\''), not followed by a
 * letter or digit: its length, else 0 */
static size_t clitic_len(const unsigned char *p) {
    static const char *const cl[] = {"'s", "'m", "'d", "'re", "'ve", "'ll"};
    for (size_t k = 0; k < sizeof cl / sizeof *cl; k++) {
        size_t l = strlen(cl[k]);
        if (!strncmp((const char *)p, cl[k], l) && !is_al(p[l])) return l;
    }
    return 0;
}

/* a word [w, w+len) with a trailing '.' that PTB keeps: an abbreviation, one
 * letter, or letters separated by periods ("u.s", "t.v", "a.m") */
static int keeps_period(const unsigned char *w, size_t len) {
    for (size_t k = 0; k < sizeof abbrev / sizeof *abbrev; k++)
        if (strlen(abbrev[k]) == len && !memcmp(abbrev[k], w, len)) return 1;
    if (len == 1 && is_let(w[0])) return 1;
    if (len < 3) return 0;
    for (size_t i = 0; i < len; i++)
        if (i % 2 == 0 ? !is_let(w[i]) : w[i] != '.') return 0;
    return len % 2 == 1;
}

/* emits a word, splitting PTB's fused forms (gonna -> gon na, cannot -> can not) */
static void emit_word(sbuf *out, const char *w, size_t len) {
    static const char *const fused[][2] = {{"gonna", "gon"}, {"wanna", "wan"}, {"gotta", "got"}, {"cannot", "can"},
                                           {"lemme", "lem"}, {"gimme", "gim"}};
    for (size_t k = 0; k < sizeof fused / sizeof *fused; k++)
        if (strlen(fused[k][0]) == len && !memcmp(fused[k][0], w, len)) {
            size_t a = strlen(fused[k][1]);
            emit(out, w, a);
            emit(out, w + a, len - a);
            return;
        }
    emit(out, w, len);
}

char *mmp_cap_tokenize(const char *s) {
    /* lower-case ASCII; Unicode quotes and dashes to their ASCII forms */
    size_t n0 = strlen(s);
    unsigned char *b = mmp_xmalloc(n0 * 4 + 8);
    size_t n = 0;
    for (size_t i = 0; i < n0;) {
        const unsigned char *p = (const unsigned char *)s + i;
        if (p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0x98 || p[2] == 0x99)) { b[n++] = '\''; i += 3; continue; }
        if (p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0x9C || p[2] == 0x9D)) { b[n++] = '"'; i += 3; continue; }
        if (p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0x93 || p[2] == 0x94)) { memcpy(b + n, " -- ", 4); n += 4; i += 3; continue; }
        b[n++] = (unsigned char)(p[0] >= 'A' && p[0] <= 'Z' ? p[0] + 32 : p[0]);
        i++;
    }
    memset(b + n, 0, 8);
    sbuf out = {0};
    sb_put(&out, "", 0);
    size_t i = 0;
    while (i < n) {
        int c = b[i];
        if (c == ' ' || (c >= '\t' && c <= '\r')) { i++; continue; }
        if (c == '\'') {
            size_t l = clitic_len(b + i);
            if (l) { emit(&out, (char *)b + i, l); i += l; continue; }
            if (b[i + 1] == 't' && (!strncmp((char *)b + i + 2, "is", 2) || !strncmp((char *)b + i + 2, "was", 3))) {
                emit(&out, "'t", 2);
                i += 2;
                continue;
            }
            size_t j = i + 1;
            while (is_dig(b[j])) j++;
            if (j > i + 1 && b[j] == 's' && !is_al(b[j + 1])) { emit(&out, (char *)b + i, j + 1 - i); i = j + 1; continue; } /* '90s */
            if (b[i + 1] == 'e' && b[i + 2] == 'm' && !is_al(b[i + 3])) { emit(&out, "'em", 3); i += 3; continue; }
            emit(&out, "'", 1);
            i++;
            continue;
        }
        if (is_al(c) || (c == '.' && is_dig(b[i + 1])) || (c == '@' && is_al(b[i + 1]))) {
            size_t j = i + 1, clit = 0, nt = 0;
            for (;;) {
                int d = b[j];
                if (is_al(d)) { j++; continue; }
                if ((d == '-' || d == '.' || d == '/' || d == '&') && is_al(b[j - 1]) && is_al(b[j + 1])) { j++; continue; }
                if ((d == ',' || d == ':') && is_dig(b[j - 1]) && is_dig(b[j + 1])) { j++; continue; }
                if (d == '\'') {
                    if ((clit = clitic_len(b + j))) break;
                    if (b[j - 1] == 'n' && b[j + 1] == 't' && !is_al(b[j + 2]) && j - 1 > i) { nt = 1; break; }
                    if (is_let(b[j + 1]) && is_let(b[j - 1])) { j++; continue; } /* o'clock, ma'am */
                }
                break;
            }
            if (nt) {
                emit_word(&out, (char *)b + i, j - 1 - i);
                emit(&out, "n't", 3);
                i = j + 2;
                continue;
            }
            if (!clit && b[j] == '.' && keeps_period(b + i, j - i)) j++;
            emit_word(&out, (char *)b + i, j - i);
            i = j;
            if (clit) {
                emit(&out, (char *)b + i, clit);
                i += clit;
            }
            continue;
        }
        if (c == '.' || c == '-' || c == '!' || c == '?') {
            size_t j = i + 1;
            if (c == '!' || c == '?')
                while (b[j] == '!' || b[j] == '?') j++;
            else
                while (b[j] == c) j++;
            if (c == '.') emit(&out, j - i == 1 ? "." : "...", j - i == 1 ? 1 : 3);
            else if (c == '-') emit(&out, j - i == 1 ? "-" : "--", j - i == 1 ? 1 : 2);
            else emit(&out, (char *)b + i, j - i);
            i = j;
            continue;
        }
        switch (c) {
        case '(': emit(&out, "-lrb-", 5); break;
        case ')': emit(&out, "-rrb-", 5); break;
        case '[': emit(&out, "-lsb-", 5); break;
        case ']': emit(&out, "-rsb-", 5); break;
        case '{': emit(&out, "-lcb-", 5); break;
        case '}': emit(&out, "-rcb-", 5); break;
        case '"': emit(&out, "''", 2); break;
        default: emit(&out, (char *)b + i, 1); break;
        }
        i++;
    }
    free(b);
    return out.s;
}
