/* BERT WordPiece tokenizer (see wordpiece.h and docs/text.md). */
#include "text/wordpiece.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "text/unicode_tables.h"

/* ------------------------------------------------------------------ */
/* Unicode                                                             */
/* ------------------------------------------------------------------ */

static size_t runs_find(const uint32_t *runs, size_t n, uint32_t cp) {
    /* last run whose start <= cp */
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((runs[mid] >> 8) <= cp) lo = mid;
        else hi = mid;
    }
    return lo;
}

const char *mmp_wp_unicode_version(void) { return MMP_UNICODE_VERSION; }

unsigned mmp_uni_flags(uint32_t cp) {
    if (cp >= 0x110000) return MMP_UNI_CTRL;
    if (cp < 128) return uni_ascii_flags[cp];
    size_t k = runs_find(uni_flag_runs, sizeof uni_flag_runs / sizeof *uni_flag_runs, cp);
    return uni_flag_runs[k] & 0xff;
}

static int ccc_of(uint32_t cp) {
    if (cp < 0x300) return 0;
    size_t k = runs_find(uni_ccc_runs, sizeof uni_ccc_runs / sizeof *uni_ccc_runs, cp);
    return (int)(uni_ccc_runs[k] & 0xff);
}

int mmp_uni_ccc(uint32_t cp) { return ccc_of(cp); }

static const uni_map_entry *map_find(const uni_map_entry *tab, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (tab[mid].cp < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && tab[lo].cp == cp ? &tab[lo] : NULL;
}

int mmp_uni_lower(uint32_t cp, uint32_t *out) {
    if (cp < 128) {
        out[0] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
        return 1;
    }
    const uni_map_entry *e = map_find(uni_lower, sizeof uni_lower / sizeof *uni_lower, cp);
    if (!e) {
        out[0] = cp;
        return 1;
    }
    for (int i = 0; i < e->len; i++) out[i] = uni_seq_pool[e->off + i];
    return e->len;
}

/* longest canonical decomposition of one codepoint is 4 (gen_unicode.py checks), Hangul 3 */
size_t mmp_uni_nfd_bound(size_t n) { return 4 * n + 4; }

size_t mmp_uni_nfd(const uint32_t *in, size_t n, uint32_t *out) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = in[i];
        if (cp >= 0xAC00 && cp <= 0xD7A3) { /* Hangul syllable: algorithmic */
            uint32_t s = cp - 0xAC00;
            out[m++] = 0x1100 + s / (21 * 28);
            out[m++] = 0x1161 + (s % (21 * 28)) / 28;
            if (s % 28) out[m++] = 0x11A7 + s % 28;
            continue;
        }
        const uni_map_entry *e =
            cp < 0xC0 ? NULL : map_find(uni_decomp, sizeof uni_decomp / sizeof *uni_decomp, cp);
        if (!e) {
            out[m++] = cp;
            continue;
        }
        for (int k = 0; k < e->len; k++) out[m++] = uni_seq_pool[e->off + k];
    }
    /* canonical ordering: stable sort of each run of non-starters by ccc */
    for (size_t i = 1; i < m; i++) {
        int c = ccc_of(out[i]);
        if (c == 0) continue;
        size_t j = i;
        uint32_t v = out[i];
        while (j > 0) {
            int cp = ccc_of(out[j - 1]);
            if (cp == 0 || cp <= c) break;
            out[j] = out[j - 1];
            j--;
        }
        out[j] = v;
    }
    return m;
}

long mmp_utf8_decode(const char *str, size_t n, int replace, uint32_t *out, size_t *bad) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    long m = 0;
    while (i < n) {
        unsigned c = s[i];
        uint32_t cp;
        int len;
        if (c < 0x80) {
            out[m++] = c;
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            goto invalid;
        }
        if (i + (size_t)len > n) goto invalid;
        for (int k = 1; k < len; k++) {
            unsigned cc = s[i + k];
            if ((cc & 0xC0) != 0x80) goto invalid;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            goto invalid;
        out[m++] = cp;
        i += (size_t)len;
        continue;
    invalid:
        if (!replace) {
            if (bad) *bad = i;
            return -1;
        }
        out[m++] = 0xFFFD;
        i++;
    }
    return m;
}

/* ------------------------------------------------------------------ */
/* vocabulary                                                          */
/* ------------------------------------------------------------------ */

struct mmp_wordpiece {
    mmp_wp_opts o;
    int n;         /* number of ids (lines) */
    char **tok;    /* id -> string */
    size_t *toklen;
    int *slots;    /* open addressing, -1 = empty */
    size_t nslots; /* power of two */
    int unk, cls, sep, pad, mask;
};

static uint64_t str_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

int mmp_wp_id(const mmp_wordpiece *wp, const char *t, size_t len) {
    size_t mask = wp->nslots - 1;
    for (size_t k = str_hash(t, len) & mask;; k = (k + 1) & mask) {
        int id = wp->slots[k];
        if (id < 0) return -1;
        if (wp->toklen[id] == len && memcmp(wp->tok[id], t, len) == 0) return id;
    }
}

static void vocab_insert(mmp_wordpiece *wp, int id) {
    size_t mask = wp->nslots - 1;
    for (size_t k = str_hash(wp->tok[id], wp->toklen[id]) & mask;; k = (k + 1) & mask) {
        int cur = wp->slots[k];
        if (cur < 0) {
            wp->slots[k] = id;
            return;
        }
        if (wp->toklen[cur] == wp->toklen[id] && memcmp(wp->tok[cur], wp->tok[id], wp->toklen[id]) == 0) {
            wp->slots[k] = id; /* repeated token: the last line wins (Python dict) */
            return;
        }
    }
}

void mmp_wp_opts_default(mmp_wp_opts *o) {
    o->lower = 1;
    o->strip_accents = -1;
    o->chinese = 1;
    o->max_word_chars = 100;
}

mmp_wordpiece *mmp_wp_load_mem(const char *buf, size_t n, const mmp_wp_opts *o, char *err,
                               size_t errlen) {
    mmp_wordpiece *wp = mmp_xcalloc(1, sizeof *wp);
    if (o) wp->o = *o;
    else mmp_wp_opts_default(&wp->o);
    int cap = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && buf[j] != '\n') j++;
        /* Python: token.rstrip("\n") on lines read in text mode (\r\n -> \n) */
        size_t e = j;
        if (e > i && buf[e - 1] == '\r') e--;
        if (wp->n == cap) {
            cap = cap ? 2 * cap : 1024;
            wp->tok = mmp_xrealloc(wp->tok, (size_t)cap * sizeof *wp->tok);
            wp->toklen = mmp_xrealloc(wp->toklen, (size_t)cap * sizeof *wp->toklen);
        }
        size_t bad = 0;
        uint32_t *tmp = mmp_xmalloc((e - i + 1) * sizeof *tmp);
        long ok = mmp_utf8_decode(buf + i, e - i, 0, tmp, &bad);
        free(tmp);
        if (ok < 0) {
            snprintf(err, errlen, "line %d: invalid UTF-8", wp->n + 1);
            wp->nslots = 0;
            for (int k = 0; k < wp->n; k++) free(wp->tok[k]);
            free(wp->tok);
            free(wp->toklen);
            free(wp);
            return NULL;
        }
        wp->tok[wp->n] = mmp_xmalloc(e - i + 1);
        memcpy(wp->tok[wp->n], buf + i, e - i);
        wp->tok[wp->n][e - i] = 0;
        wp->toklen[wp->n] = e - i;
        wp->n++;
        i = j + 1;
    }
    if (wp->n == 0) {
        snprintf(err, errlen, "empty vocabulary");
        free(wp->tok);
        free(wp->toklen);
        free(wp);
        return NULL;
    }
    wp->nslots = 1;
    while (wp->nslots < (size_t)wp->n * 2) wp->nslots *= 2;
    wp->slots = mmp_xmalloc(wp->nslots * sizeof *wp->slots);
    for (size_t k = 0; k < wp->nslots; k++) wp->slots[k] = -1;
    for (int k = 0; k < wp->n; k++) vocab_insert(wp, k);
    wp->unk = mmp_wp_id(wp, "[UNK]", 5);
    wp->cls = mmp_wp_id(wp, "[CLS]", 5);
    wp->sep = mmp_wp_id(wp, "[SEP]", 5);
    wp->pad = mmp_wp_id(wp, "[PAD]", 5);
    wp->mask = mmp_wp_id(wp, "[MASK]", 6);
    if (wp->unk < 0 || wp->cls < 0 || wp->sep < 0) {
        snprintf(err, errlen, "vocabulary lacks [UNK], [CLS] or [SEP]");
        mmp_wp_free(wp);
        return NULL;
    }
    return wp;
}

mmp_wordpiece *mmp_wp_load(const char *path, const mmp_wp_opts *o, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = mmp_xmalloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) buf = mmp_xrealloc(buf, cap *= 2);
    }
    int ioerr = ferror(f);
    fclose(f);
    if (ioerr) {
        snprintf(err, errlen, "%s: read error", path);
        free(buf);
        return NULL;
    }
    char e2[200];
    mmp_wordpiece *wp = mmp_wp_load_mem(buf, n, o, e2, sizeof e2);
    free(buf);
    if (!wp) snprintf(err, errlen, "%s: %s", path, e2);
    return wp;
}

void mmp_wp_free(mmp_wordpiece *wp) {
    if (!wp) return;
    for (int k = 0; k < wp->n; k++) free(wp->tok[k]);
    free(wp->tok);
    free(wp->toklen);
    free(wp->slots);
    free(wp);
}

int mmp_wp_vocab_size(const mmp_wordpiece *wp) { return wp->n; }
const char *mmp_wp_token(const mmp_wordpiece *wp, int id) {
    return id >= 0 && id < wp->n ? wp->tok[id] : NULL;
}
int mmp_wp_unk_id(const mmp_wordpiece *wp) { return wp->unk; }
int mmp_wp_cls_id(const mmp_wordpiece *wp) { return wp->cls; }
int mmp_wp_sep_id(const mmp_wordpiece *wp) { return wp->sep; }

/* ------------------------------------------------------------------ */
/* tokenization                                                        */
/* ------------------------------------------------------------------ */

typedef struct {
    int32_t **ids;
    int *n, *cap;
} idvec;

static void push_id(idvec *v, int32_t id) {
    if (*v->n == *v->cap) {
        *v->cap = *v->cap ? 2 * *v->cap : 64;
        *v->ids = mmp_xrealloc(*v->ids, (size_t)*v->cap * sizeof **v->ids);
    }
    (*v->ids)[(*v->n)++] = id;
}

static int is_chinese(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

static size_t utf8_put(uint32_t cp, char *o) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    } else if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    } else if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t mmp_utf8_encode(const uint32_t *cps, size_t n, char *out) {
    size_t b = 0;
    for (size_t i = 0; i < n; i++) b += utf8_put(cps[i], out + b);
    out[b] = 0;
    return b;
}

char *mmp_utf8_sanitize(const char *s, size_t n) {
    uint32_t *cps = mmp_xmalloc((n + 1) * sizeof *cps);
    long m = mmp_utf8_decode(s, n, 1, cps, NULL);
    char *out = mmp_xmalloc(4 * (size_t)m + 1);
    mmp_utf8_encode(cps, (size_t)m, out);
    free(cps);
    return out;
}

/* WordpieceTokenizer.tokenize on one word (no whitespace, no punctuation split left). */
static void wordpiece_word(const mmp_wordpiece *wp, const uint32_t *w, size_t n, idvec *out,
                           char *buf, size_t *off) {
    if (n == 0) return;
    if ((int)n > wp->o.max_word_chars) {
        push_id(out, wp->unk);
        return;
    }
    /* byte offsets of each char in "##" + utf8(word) */
    buf[0] = '#';
    buf[1] = '#';
    size_t b = 2;
    for (size_t i = 0; i < n; i++) {
        off[i] = b;
        b += utf8_put(w[i], buf + b);
    }
    off[n] = b;
    int first = *out->n;
    size_t start = 0;
    while (start < n) {
        size_t end = n;
        int found = -1;
        while (start < end) {
            const char *s = buf + off[start];
            size_t len = off[end] - off[start];
            if (start > 0) {
                s -= 2;
                len += 2;
                /* restore the "##" prefix just before this char */
                char save0 = s[0], save1 = s[1];
                ((char *)s)[0] = '#';
                ((char *)s)[1] = '#';
                found = mmp_wp_id(wp, s, len);
                ((char *)s)[0] = save0;
                ((char *)s)[1] = save1;
            } else {
                found = mmp_wp_id(wp, s, len);
            }
            if (found >= 0) break;
            end--;
        }
        if (found < 0) {
            *out->n = first; /* is_bad: the whole word becomes [UNK] */
            push_id(out, wp->unk);
            return;
        }
        push_id(out, found);
        start = end;
    }
}

/* One whitespace-separated token of BasicTokenizer (after cleaning and
 * lower-casing): strip accents, split on punctuation, wordpiece. */
static void basic_word(const mmp_wordpiece *wp, const uint32_t *w, size_t n, idvec *out,
                       uint32_t **nfdp, size_t *nfdcap, char *buf, size_t *off) {
    int strip = wp->o.strip_accents == 1 || (wp->o.lower && wp->o.strip_accents != 0);
    const uint32_t *t = w;
    size_t m = n;
    if (strip) {
        if (mmp_uni_nfd_bound(n) > *nfdcap) {
            *nfdcap = mmp_uni_nfd_bound(n);
            *nfdp = mmp_xrealloc(*nfdp, *nfdcap * sizeof **nfdp);
        }
        uint32_t *nfd = *nfdp;
        size_t k = mmp_uni_nfd(w, n, nfd);
        m = 0;
        for (size_t i = 0; i < k; i++)
            if (!(mmp_uni_flags(nfd[i]) & MMP_UNI_MN)) nfd[m++] = nfd[i];
        t = nfd;
    }
    size_t s = 0;
    for (size_t i = 0; i <= m; i++) {
        unsigned f = i < m ? mmp_uni_flags(t[i]) : 0;
        if (i == m || (f & (MMP_UNI_PUNCT | MMP_UNI_SPACE))) {
            wordpiece_word(wp, t + s, i - s, out, buf, off);
            if (i < m && (f & MMP_UNI_PUNCT) && !(f & MMP_UNI_SPACE)) wordpiece_word(wp, t + i, 1, out, buf, off);
            s = i + 1;
        }
    }
}

/* BasicTokenizer.tokenize + wordpiece on a piece of text without special tokens. */
static void basic_piece(const mmp_wordpiece *wp, const uint32_t *cps, size_t n, idvec *out,
                        uint32_t *clean, uint32_t **nfd, size_t *nfdcap, char *buf, size_t *off) {
    /* lower (per codepoint, as PreTrainedTokenizer.tokenize's regex does), clean, CJK */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t lo[4];
        int k = 1;
        lo[0] = cps[i];
        if (wp->o.lower) k = mmp_uni_lower(cps[i], lo);
        for (int j = 0; j < k; j++) {
            uint32_t c = lo[j];
            unsigned f = mmp_uni_flags(c);
            if (c == 0 || c == 0xFFFD) continue;
            if (c == '\t' || c == '\n' || c == '\r' || c == ' ' || (f & MMP_UNI_ZS)) {
                clean[m++] = ' ';
                continue;
            }
            if (f & MMP_UNI_CTRL) continue;
            if (wp->o.chinese && is_chinese(c)) {
                clean[m++] = ' ';
                clean[m++] = c;
                clean[m++] = ' ';
            } else {
                clean[m++] = c;
            }
        }
    }
    /* str.split(): runs of isspace() characters separate words */
    size_t s = 0;
    for (size_t i = 0; i <= m; i++) {
        if (i == m || (mmp_uni_flags(clean[i]) & MMP_UNI_SPACE)) {
            if (i > s) basic_word(wp, clean + s, i - s, out, nfd, nfdcap, buf, off);
            s = i + 1;
        }
    }
}

static const char *const special_names[] = {"[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"};

int mmp_wp_tokenize(const mmp_wordpiece *wp, const char *text, size_t len, int utf8_policy,
                    int32_t **ids, int *n, int *cap, char *err, size_t errlen) {
    uint32_t *cps = mmp_xmalloc((len + 1) * sizeof *cps);
    size_t bad = 0;
    long ncp = mmp_utf8_decode(text, len, utf8_policy == MMP_UTF8_REPLACE, cps, &bad);
    if (ncp < 0) {
        snprintf(err, errlen, "invalid UTF-8 at byte %zu of the text", bad);
        free(cps);
        return -1;
    }
    /* work buffers sized for the worst case of the whole text */
    size_t nc = (size_t)ncp;
    uint32_t *clean = mmp_xmalloc((6 * nc + 4) * sizeof *clean); /* lower <= 2 cps (gen_unicode.py checks), CJK x3 */
    uint32_t *nfd = NULL; /* grown per word */
    size_t nfdcap = 0;
    char *buf = mmp_xmalloc(4 * (size_t)(wp->o.max_word_chars + 1) + 8);
    size_t *off = mmp_xmalloc((size_t)(wp->o.max_word_chars + 2) * sizeof *off);
    idvec out = {ids, n, cap};
    /* split on special tokens (PreTrainedTokenizer.tokenize's trie), case-sensitive */
    size_t s = 0, i = 0;
    while (i < nc) {
        int hit = -1;
        size_t hitlen = 0;
        if (cps[i] == '[') {
            for (int k = 0; k < 5; k++) {
                const char *nm = special_names[k];
                size_t L = strlen(nm);
                if (i + L > nc) continue;
                size_t j = 0;
                while (j < L && cps[i + j] == (uint32_t)(unsigned char)nm[j]) j++;
                if (j == L) {
                    int id = mmp_wp_id(wp, nm, L);
                    hit = id >= 0 ? id : wp->unk;
                    hitlen = L;
                    break;
                }
            }
        }
        if (hit < 0) {
            i++;
            continue;
        }
        basic_piece(wp, cps + s, i - s, &out, clean, &nfd, &nfdcap, buf, off);
        push_id(&out, hit);
        i += hitlen;
        s = i;
    }
    basic_piece(wp, cps + s, nc - s, &out, clean, &nfd, &nfdcap, buf, off);
    free(cps);
    free(clean);
    free(nfd);
    free(buf);
    free(off);
    return 0;
}

int mmp_wp_encode(const mmp_wordpiece *wp, const char *text, size_t len, int max_len,
                  int utf8_policy, int32_t *outids, char *err, size_t errlen) {
    if (max_len < 2) {
        snprintf(err, errlen, "max length %d < 2", max_len);
        return -1;
    }
    int32_t *ids = NULL;
    int n = 0, cap = 0;
    if (mmp_wp_tokenize(wp, text, len, utf8_policy, &ids, &n, &cap, err, errlen) < 0) {
        free(ids);
        return -1;
    }
    if (n > max_len - 2) n = max_len - 2;
    outids[0] = wp->cls;
    if (n > 0) memcpy(outids + 1, ids, (size_t)n * sizeof *ids);
    outids[n + 1] = wp->sep;
    free(ids);
    return n + 2;
}
