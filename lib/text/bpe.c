/* Byte-level BPE tokenizer, CLIP's and GPT-2's flavours (see bpe.h and docs/text.md). */
#include "text/bpe.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "json.h"
#include "mmp.h"
#include "text/bpe_tables.h"
#include "text/wordpiece.h"

/* ------------------------------------------------------------------ */
/* growable code point vector                                          */
/* ------------------------------------------------------------------ */

typedef struct {
    uint32_t *v;
    size_t n, cap;
} cpvec;

static void cp_reserve(cpvec *a, size_t extra) {
    if (a->n + extra <= a->cap) return;
    size_t c = a->cap ? a->cap : 64;
    while (c < a->n + extra) c *= 2;
    a->v = mmp_xrealloc(a->v, c * sizeof *a->v);
    a->cap = c;
}
static void cp_push(cpvec *a, uint32_t c) {
    cp_reserve(a, 1);
    a->v[a->n++] = c;
}
static void cp_swap(cpvec *a, cpvec *b) {
    cpvec t = *a;
    *a = *b;
    *b = t;
}

/* ------------------------------------------------------------------ */
/* Unicode lookups (bpe_tables.h)                                      */
/* ------------------------------------------------------------------ */

static unsigned bflags(uint32_t cp) {
    size_t n = sizeof bpe_flag_runs / sizeof *bpe_flag_runs, lo = 0, hi = n;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((bpe_flag_runs[mid] >> 8) <= cp) lo = mid;
        else hi = mid;
    }
    return bpe_flag_runs[lo] & 0xff;
}

/* 1 when code point c matches the ASCII character a under regex IGNORECASE */
static int ci_eq(uint32_t c, char a) {
    uint32_t u = (unsigned char)a;
    if (c == u) return 1;
    if (u >= 'a' && u <= 'z' && c == u - 32) return 1;
    if (u >= 'A' && u <= 'Z' && c == u + 32) return 1;
    if (c < 128) return 0;
    for (size_t k = 0; k < sizeof bpe_ci_ascii / sizeof *bpe_ci_ascii; k++) {
        uint32_t l = bpe_ci_ascii[k][1];
        if (bpe_ci_ascii[k][0] == c && (l == u || (l >= 'a' && l <= 'z' && l - 32 == u))) return 1;
    }
    return 0;
}

static const uint32_t *map4_find(const uint32_t (*tab)[4], size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (tab[mid][0] < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && tab[lo][0] == cp ? tab[lo] : NULL;
}

/* canonical composition of a pair, 0 when none */
static uint32_t compose(uint32_t a, uint32_t b) {
    /* Hangul: L + V -> LV, LV + T -> LVT */
    if (a >= 0x1100 && a < 0x1100 + 19 && b >= 0x1161 && b < 0x1161 + 21)
        return 0xAC00 + ((a - 0x1100) * 21 + (b - 0x1161)) * 28;
    if (a >= 0xAC00 && a < 0xAC00 + 11172 && (a - 0xAC00) % 28 == 0 && b > 0x11A7 && b < 0x11A7 + 28)
        return a + (b - 0x11A7);
    size_t n = sizeof bpe_comp / sizeof *bpe_comp, lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (bpe_comp[mid][0] < a || (bpe_comp[mid][0] == a && bpe_comp[mid][1] < b)) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && bpe_comp[lo][0] == a && bpe_comp[lo][1] == b ? bpe_comp[lo][2] : 0;
}

/* unicodedata.normalize("NFC", s): NFD (canonical order) then canonical composition */
static void nfc(cpvec *s, cpvec *tmp) {
    size_t i;
    for (i = 0; i < s->n && s->v[i] < 0x300; i++) {}
    if (i == s->n) return; /* nothing below U+0300 decomposes or combines */
    tmp->n = 0;
    cp_reserve(tmp, mmp_uni_nfd_bound(s->n));
    tmp->n = mmp_uni_nfd(s->v, s->n, tmp->v);
    s->n = 0;
    cp_reserve(s, tmp->n);
    long sp = -1;
    int last_ccc = 0;
    for (size_t k = 0; k < tmp->n; k++) {
        uint32_t c = tmp->v[k];
        int ccc = mmp_uni_ccc(c);
        if (sp >= 0 && ((size_t)sp == s->n - 1 || (last_ccc != 0 && last_ccc < ccc))) {
            uint32_t m = compose(s->v[sp], c);
            if (m) {
                s->v[sp] = m;
                continue;
            }
        }
        if (ccc == 0) sp = (long)s->n;
        last_ccc = ccc;
        s->v[s->n++] = c;
    }
}

/* ------------------------------------------------------------------ */
/* html.unescape (Python 3.11) and ftfy's unescape_html                */
/* ------------------------------------------------------------------ */

static const char *html5_find(const char *name, size_t n) {
    size_t cnt = sizeof bpe_html5 / sizeof *bpe_html5, lo = 0, hi = cnt;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *k = bpe_html5[mid][0];
        size_t kl = strlen(k);
        int c = memcmp(k, name, kl < n ? kl : n);
        if (c == 0) c = kl < n ? -1 : kl > n ? 1 : 0;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    if (lo < cnt && strlen(bpe_html5[lo][0]) == n && memcmp(bpe_html5[lo][0], name, n) == 0)
        return bpe_html5[lo][1];
    return NULL;
}

static void push_utf8(cpvec *o, const char *s) {
    uint32_t tmp[8];
    size_t bad;
    long m = mmp_utf8_decode(s, strlen(s), 1, tmp, &bad);
    for (long k = 0; k < m; k++) cp_push(o, tmp[k]);
}

static int is_hex(uint32_t c) { return (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'f'); }

/* a numeric character reference's replacement (html._replace_charref); 0 = '' */
static uint32_t charref_value(const uint32_t *d, size_t n, int base) {
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++) {
        uint32_t c = d[k], dig = c <= '9' ? c - '0' : (c | 32) - 'a' + 10;
        v = v * (uint64_t)base + dig;
        if (v > 0x10FFFF) v = 0x110000; /* saturate: only "too large" matters */
    }
    for (size_t k = 0; k < sizeof bpe_invalid_charrefs / sizeof *bpe_invalid_charrefs; k++)
        if (bpe_invalid_charrefs[k][0] == v) return bpe_invalid_charrefs[k][1];
    if ((v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF) return 0xFFFD;
    for (size_t k = 0; k < sizeof bpe_invalid_codepoints / sizeof *bpe_invalid_codepoints; k++)
        if (bpe_invalid_codepoints[k] == v) return 0;
    return (uint32_t)v;
}

/* html.unescape: matches &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?) */
static int html_unescape(const cpvec *in, cpvec *o) {
    const uint32_t *s = in->v;
    size_t n = in->n, i = 0;
    int changed = 0;
    o->n = 0;
    cp_reserve(o, n);
    while (i < n) {
        if (s[i] != '&' || i + 1 >= n) {
            cp_push(o, s[i++]);
            continue;
        }
        size_t j = i + 1;
        if (s[j] == '#') {
            size_t k = j + 1, d0;
            int base = 10;
            if (k < n && (s[k] == 'x' || s[k] == 'X')) {
                base = 16;
                k++;
            }
            d0 = k;
            while (k < n && (base == 16 ? is_hex(s[k]) : (s[k] >= '0' && s[k] <= '9'))) k++;
            if (k == d0) { /* no digits: '&' stays */
                cp_push(o, s[i++]);
                continue;
            }
            uint32_t v = charref_value(s + d0, k - d0, base);
            if (k < n && s[k] == ';') k++;
            if (v) cp_push(o, v);
            i = k;
            changed = 1;
            continue;
        }
        /* named: up to 32 characters of [^\t\n\f <&#;], then an optional ';' */
        size_t k = j;
        while (k < n && k - j < 32) {
            uint32_t c = s[k];
            if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';')
                break;
            k++;
        }
        if (k == j) {
            cp_push(o, s[i++]);
            continue;
        }
        if (k < n && s[k] == ';') k++;
        /* s[j, k) is the name; look it up whole, then its longest prefix of >= 2 characters */
        size_t len = k - j;
        char name[40];
        size_t ascii = 0;
        while (ascii < len && s[j + ascii] < 128) {
            name[ascii] = (char)s[j + ascii];
            ascii++;
        }
        const char *rep = NULL;
        size_t used = 0;
        if (ascii == len) rep = html5_find(name, len), used = len;
        if (!rep) {
            for (size_t x = len - 1; x > 1; x--) {
                if (x > ascii) continue;
                rep = html5_find(name, x);
                if (rep) {
                    used = x;
                    break;
                }
            }
        }
        if (!rep) { /* '&' + name unchanged */
            for (size_t q = i; q < k; q++) cp_push(o, s[q]);
            i = k;
            continue;
        }
        push_utf8(o, rep);
        for (size_t q = j + used; q < k; q++) cp_push(o, s[q]);
        i = k;
        changed = 1;
    }
    return changed;
}

static int is_alnum_ascii(uint32_t c) {
    return (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z');
}

/* ftfy.fixes.unescape_html: &#?[0-9A-Za-z]{1,24}; replaced when it is an HTML5
 * entity ending in ';', one of ftfy's all-caps ones, or a numeric reference
 * that html.unescape decodes whole */
static void ftfy_unescape(const cpvec *in, cpvec *o, cpvec *t1, cpvec *t2) {
    const uint32_t *s = in->v;
    size_t n = in->n, i = 0;
    o->n = 0;
    cp_reserve(o, n);
    while (i < n) {
        if (s[i] != '&') {
            cp_push(o, s[i++]);
            continue;
        }
        size_t j = i + 1;
        if (j < n && s[j] == '#') j++;
        size_t k = j;
        while (k < n && is_alnum_ascii(s[k])) k++;
        if (k == j || k - j > 24 || k >= n || s[k] != ';') {
            cp_push(o, s[i++]);
            continue;
        }
        k++; /* s[i, k) = "&...;" */
        char name[32];
        size_t len = k - i - 1;
        for (size_t q = 0; q < len; q++) name[q] = (char)s[i + 1 + q];
        const char *rep = NULL;
        if (name[0] != '#') {
            rep = html5_find(name, len);
            if (!rep) {
                size_t cnt = sizeof bpe_ftfy_upper / sizeof *bpe_ftfy_upper;
                for (size_t q = 0; q < cnt && !rep; q++)
                    if (strlen(bpe_ftfy_upper[q][0]) == len && memcmp(bpe_ftfy_upper[q][0], name, len) == 0)
                        rep = bpe_ftfy_upper[q][1];
            }
            if (rep) push_utf8(o, rep);
            else
                for (size_t q = i; q < k; q++) cp_push(o, s[q]);
        } else {
            t1->n = 0;
            for (size_t q = i; q < k; q++) cp_push(t1, s[q]);
            html_unescape(t1, t2);
            int semi = 0;
            for (size_t q = 0; q < t2->n; q++) semi |= t2->v[q] == ';';
            const cpvec *src = semi ? t1 : t2;
            for (size_t q = 0; q < src->n; q++) cp_push(o, src->v[q]);
        }
        i = k;
    }
}

/* ------------------------------------------------------------------ */
/* ftfy.fix_text (ftfy 6.1.3 defaults): the character fixers          */
/* ------------------------------------------------------------------ */

static int ftfy_control(uint32_t c) {
    return c <= 8 || c == 0xB || (c >= 0xE && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
           c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

/* the character fixers of one fix_and_explain round after fix_encoding:
 * fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes,
 * fix_line_breaks, (fix_surrogates: none in decoded UTF-8),
 * remove_terminal_escapes, remove_control_chars */
static void ftfy_chars(const cpvec *in, cpvec *o, cpvec *t) {
    t->n = 0;
    cp_reserve(t, in->n);
    for (size_t i = 0; i < in->n; i++) {
        uint32_t c = in->v[i];
        if (c >= 0x80 && c <= 0x9F) c = bpe_c1[c - 0x80];
        const uint32_t *m = NULL;
        if (c >= 0x80 && (m = map4_find(bpe_ftfy_lig, sizeof bpe_ftfy_lig / sizeof *bpe_ftfy_lig, c))) {
            for (int q = 1; q < 4 && m[q]; q++) cp_push(t, m[q]);
            continue;
        }
        cp_push(t, c);
    }
    /* width, then quotes, applied to the ligature step's output */
    o->n = 0;
    cp_reserve(o, t->n);
    for (size_t i = 0; i < t->n; i++) {
        uint32_t c = t->v[i];
        const uint32_t *m;
        if ((c == 0x3000 || c >= 0xFF01) &&
            (m = map4_find(bpe_ftfy_width, sizeof bpe_ftfy_width / sizeof *bpe_ftfy_width, c))) {
            for (int q = 1; q < 4 && m[q]; q++) {
                uint32_t d = m[q];
                if (d == 0x2BC || (d >= 0x2018 && d <= 0x201B)) d = '\'';
                else if (d >= 0x201C && d <= 0x201F) d = '"';
                cp_push(o, d);
            }
            continue;
        }
        if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B)) c = '\'';
        else if (c >= 0x201C && c <= 0x201F) c = '"';
        cp_push(o, c);
    }
    /* line breaks: \r\n, \r, U+2028, U+2029, U+0085 -> \n */
    t->n = 0;
    for (size_t i = 0; i < o->n; i++) {
        uint32_t c = o->v[i];
        if (c == '\r') {
            if (i + 1 < o->n && o->v[i + 1] == '\n') i++;
            c = '\n';
        } else if (c == 0x2028 || c == 0x2029 || c == 0x85) {
            c = '\n';
        }
        cp_push(t, c);
    }
    /* terminal escapes \033\[(\d|;)*[a-zA-Z], then control characters */
    o->n = 0;
    for (size_t i = 0; i < t->n; i++) {
        uint32_t c = t->v[i];
        if (c == 0x1B && i + 1 < t->n && t->v[i + 1] == '[') {
            size_t k = i + 2;
            while (k < t->n && (t->v[k] == ';' || (bflags(t->v[k]) & BF_DIG))) k++;
            if (k < t->n && ((t->v[k] | 32) >= 'a' && (t->v[k] | 32) <= 'z')) {
                i = k;
                continue;
            }
        }
        if (ftfy_control(c)) continue;
        cp_push(o, c);
    }
}

static int cp_equal(const cpvec *a, const cpvec *b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof *a->v) == 0);
}

/* ------------------------------------------------------------------ */
/* ftfy's mojibake repair: fix_encoding (ftfy 6.1.3)                   */
/* ------------------------------------------------------------------ */

enum { N_CHARMAPS = sizeof bpe_charmap / sizeof *bpe_charmap, CM_LATIN1 = 0, CM_SLOPPY1252 = 1 };

/* the mojibake class bits of a code point (bpe_moji_class) */
static void moji_mask(uint32_t cp, uint64_t m[2]) {
    size_t n = sizeof bpe_moji_class / sizeof *bpe_moji_class, lo = 0, hi = n;
    m[0] = m[1] = 0;
    if (cp < 0x20) return;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (bpe_moji_class[mid].cp < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo < n && bpe_moji_class[lo].cp == cp) {
        m[0] = bpe_moji_class[lo].m[0];
        m[1] = bpe_moji_class[lo].m[1];
    }
}

static int mask_has(const uint64_t m[2], int k) { return (int)((m[k >> 6] >> (k & 63)) & 1); }

static int re_word(uint32_t cp) {
    size_t n = sizeof bpe_word_runs / sizeof *bpe_word_runs, lo = 0, hi = n;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((bpe_word_runs[mid] >> 1) <= cp) lo = mid;
        else hi = mid;
    }
    return (int)(bpe_word_runs[lo] & 1);
}

static int ascii_letter(uint32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

static int elem_match(int code, uint32_t c, const uint64_t m[2]) {
    switch (code) {
    case 1: return (bflags(c) & BF_PS) != 0;
    case 3: return re_word(c);
    case 4: return c != '\n';
    case 6: return ascii_letter(c);
    case 7: return c >= 'a' && c <= 'z';
    case 8: return !ascii_letter(c);
    case 9: return ascii_letter(c) || c == ' ';
    default: return mask_has(m, code - 16);
    }
}

static int alt_at(const uint8_t *a, const uint32_t *s, const uint64_t (*m)[2], size_t n, size_t i) {
    if (!*a) return 1;
    if (*a == 5) return i == 0 && alt_at(a + 1, s, m, n, i);
    if (*a == 2) {
        if (i < n && (bflags(s[i]) & BF_PS) && alt_at(a + 1, s, m, n, i + 1)) return 1;
        return alt_at(a + 1, s, m, n, i);
    }
    return i < n && elem_match(*a, s[i], m[i]) && alt_at(a + 1, s, m, n, i + 1);
}

/* ftfy.badness.is_bad: BADNESS_RE.search */
static int is_bad(const uint32_t *s, size_t n) {
    uint64_t (*m)[2] = mmp_xmalloc((n + 1) * sizeof *m);
    for (size_t i = 0; i < n; i++) moji_mask(s[i], m[i]);
    int bad = 0;
    for (size_t i = 0; i < n && !bad; i++)
        for (size_t a = 0; a < sizeof bpe_badness / sizeof *bpe_badness && !bad; a++)
            bad = alt_at(bpe_badness[a], s, (const uint64_t(*)[2])m, n, i);
    free(m);
    return bad;
}

/* the byte that charmap encoding e encodes c to, -1 when it cannot (chardata.possible_encoding) */
static int charmap_byte(int e, uint32_t c) {
    if (c < 0x80 && c != 0x1A) return (int)c;
    if (bpe_charmap[e][0x1A] == c) return 0x1A;
    for (int b = 0x80; b < 0x100; b++)
        if (bpe_charmap[e][b] == c) return b;
    return -1;
}

/* ALTERED_UTF8_RE at p (bytes n left): the match length, 0 when none */
static size_t altered_at(const uint8_t *p, size_t n) {
#define CONT_NOT_A0_85(x) (((x) >= 0x80 && (x) <= 0x84) || ((x) >= 0x86 && (x) <= 0x9F) || ((x) >= 0xA1 && (x) <= 0xBF))
#define CONT(x) ((x) >= 0x80 && (x) <= 0xBF)
    uint8_t b = p[0];
    if (n >= 2 && (b == 0xC2 || b == 0xC3 || b == 0xC5 || b == 0xCE || b == 0xD0 || b == 0xD9) && p[1] == ' ') return 2;
    if (n >= 3 && (b == 0xE2 || b == 0xE3) && p[1] == ' ' && CONT_NOT_A0_85(p[2])) return 3;
    if (n >= 3 && b >= 0xE0 && b <= 0xE3 && CONT_NOT_A0_85(p[1]) && p[2] == ' ') return 3;
    if (n >= 4 && b == 0xF0) {
        if (p[1] == ' ' && CONT(p[2]) && CONT(p[3])) return 4;
        if (CONT(p[1]) && p[2] == ' ' && CONT(p[3])) return 4;
        if (CONT(p[1]) && CONT(p[2]) && p[3] == ' ') return 4;
    }
    return 0;
}

/* fixes.restore_byte_a0 into o (room for 2n); returns the length */
static size_t restore_byte_a0(const uint8_t *s, size_t n, uint8_t *o, uint8_t *t) {
    static const char *const keep[] = {" ", "quele", "quela", "quilo", "s "};
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == 0xC3 && i + 1 < n && s[i + 1] == ' ') {
            int skip = 0;
            for (int k = 0; k < 5; k++) {
                size_t L = strlen(keep[k]);
                if (i + 2 + L <= n && memcmp(s + i + 2, keep[k], L) == 0) skip = 1;
            }
            if (!skip) {
                t[m++] = 0xC3;
                t[m++] = 0xA0;
                t[m++] = ' ';
                i += 2;
                continue;
            }
        }
        t[m++] = s[i++];
    }
    size_t k = 0;
    for (size_t i = 0; i < m;) {
        size_t L = altered_at(t + i, m - i);
        if (L) {
            for (size_t q = 0; q < L; q++) o[k++] = t[i + q] == ' ' ? 0xA0 : t[i + q];
            i += L;
        } else {
            o[k++] = t[i++];
        }
    }
    return k;
}

/* LOSSY_UTF8_RE at p: the match length, 0 when none */
static size_t lossy_at(const uint8_t *p, size_t n) {
#define SUBQ(x) ((x) == 0x1A || (x) == '?')
#define SUBC(x) ((x) == 0x1A || CONT(x))
#define SUBQC(x) ((x) == 0x1A || (x) == '?' || CONT(x))
    uint8_t b = p[0];
    if (n >= 2 && b >= 0xC2 && b <= 0xDF && p[1] == 0x1A) return 2;
    if (n >= 2 && (b == 0xC2 || b == 0xC3) && p[1] == '?') return 2;
    if (n >= 6 && b == 0xED && p[1] >= 0xA0 && p[1] <= 0xAF && p[3] == 0xED && p[4] >= 0xB0 && p[4] <= 0xBF) {
        if (SUBQ(p[2]) && SUBQC(p[5])) return 6;
        if (SUBQC(p[2]) && SUBQ(p[5])) return 6;
    }
    if (n >= 3 && b >= 0xE0 && b <= 0xEF) {
        if (SUBQ(p[1]) && SUBC(p[2])) return 3;
        if (SUBC(p[1]) && SUBQ(p[2])) return 3;
    }
    if (n >= 4 && b >= 0xF0 && b <= 0xF4) {
        if (SUBQ(p[1]) && SUBC(p[2]) && SUBC(p[3])) return 4;
        if (SUBC(p[1]) && SUBQ(p[2]) && SUBC(p[3])) return 4;
        if (SUBC(p[1]) && SUBC(p[2]) && SUBQ(p[3])) return 4;
    }
    if (b == 0x1A) return 1;
    return 0;
}

/* ftfy's utf-8-variants decoding (CESU-8 surrogate pairs, Java's C0 80) or
 * strict UTF-8: 0 and the code points in o, or -1 */
static int decode_utf8(const uint8_t *s, size_t n, int variants, cpvec *o) {
    o->n = 0;
    cp_reserve(o, n + 1);
    for (size_t i = 0; i < n;) {
        if (variants && s[i] == 0xC0 && i + 1 < n && s[i + 1] == 0x80) {
            o->v[o->n++] = 0;
            i += 2;
            continue;
        }
        if (variants && s[i] == 0xED && n - i >= 6 && s[i + 1] >= 0xA0 && s[i + 1] <= 0xAF && CONT(s[i + 2]) &&
            s[i + 3] == 0xED && s[i + 4] >= 0xB0 && s[i + 4] <= 0xBF && CONT(s[i + 5])) {
            o->v[o->n++] = (((uint32_t)s[i + 1] & 0x0F) << 16) + (((uint32_t)s[i + 2] & 0x3F) << 10) +
                           (((uint32_t)s[i + 4] & 0x0F) << 6) + ((uint32_t)s[i + 5] & 0x3F) + 0x10000;
            i += 6;
            continue;
        }
        size_t L = s[i] < 0x80 ? 1 : s[i] >= 0xC2 && s[i] <= 0xDF ? 2 : s[i] >= 0xE0 && s[i] <= 0xEF ? 3
                 : s[i] >= 0xF0 && s[i] <= 0xF4 ? 4 : 0;
        if (!L || i + L > n) return -1;
        uint32_t cp;
        size_t bad;
        if (mmp_utf8_decode((const char *)s + i, L, 0, &cp, &bad) != 1) return -1;
        o->v[o->n++] = cp;
        i += L;
    }
    return 0;
}

static int has_c1(const cpvec *t) {
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i] >= 0x80 && t->v[i] <= 0x9F) return 1;
    return 0;
}

static void fix_encoding(cpvec *t);

/* UTF8_DETECTOR_RE at i (the lookbehind checked by the caller): the match end, i when none */
static size_t utf8_detector_at(const uint32_t *s, size_t n, size_t i) {
    size_t j = i;
    for (;;) {
        if (j >= n) break;
        uint64_t m[2];
        moji_mask(s[j], m);
        size_t k = mask_has(m, BPE_U8_FIRST2) ? 1 : mask_has(m, BPE_U8_FIRST3) ? 2 : mask_has(m, BPE_U8_FIRST4) ? 3 : 0;
        if (!k || j + 1 + k > n) break;
        size_t q = 1;
        for (; q <= k; q++) {
            moji_mask(s[j + q], m);
            if (!mask_has(m, BPE_U8_CONT)) break;
        }
        if (q <= k) break;
        j += 1 + k;
    }
    return j;
}

/* fixes.decode_inconsistent_utf8 */
static void decode_inconsistent(const cpvec *in, cpvec *o) {
    const uint32_t *s = in->v;
    size_t n = in->n;
    o->n = 0;
    cp_reserve(o, n);
    for (size_t i = 0; i < n;) {
        uint64_t pm[2] = {0, 0};
        if (i > 0) moji_mask(s[i - 1], pm);
        size_t j = (i == 0 || !mask_has(pm, BPE_U8_STRICT)) ? utf8_detector_at(s, n, i) : i;
        if (j == i) {
            cp_push(o, s[i++]);
            continue;
        }
        cpvec sub = {0};
        cp_reserve(&sub, j - i);
        memcpy(sub.v, s + i, (j - i) * sizeof *s);
        sub.n = j - i;
        if (sub.n < n && is_bad(sub.v, sub.n)) fix_encoding(&sub);
        cp_reserve(o, sub.n);
        memcpy(o->v + o->n, sub.v, sub.n * sizeof *sub.v);
        o->n += sub.n;
        free(sub.v);
        i = j;
    }
}

/* one step of _fix_encoding_one_step_and_explain: 1 when o holds a new text */
static int fix_encoding_step(const cpvec *t, cpvec *o) {
    if (t->n == 0) return 0;
    int ascii = 1;
    for (size_t i = 0; i < t->n && ascii; i++) ascii = t->v[i] < 0x80;
    if (ascii || !is_bad(t->v, t->n)) return 0;
    uint8_t *b = mmp_xmalloc(5 * t->n + 16), *b2 = mmp_xmalloc(5 * t->n + 16), *b3 = mmp_xmalloc(5 * t->n + 16);
    int possible_latin1 = 0, done = 0;
    for (int e = 0; e < (int)N_CHARMAPS && !done; e++) {
        size_t n = 0;
        int ok = 1;
        for (size_t i = 0; i < t->n && ok; i++) {
            int x = charmap_byte(e, t->v[i]);
            if (x < 0) ok = 0;
            else b[n++] = (uint8_t)x;
        }
        if (!ok) continue;
        if (e == CM_LATIN1) possible_latin1 = 1;
        uint8_t *cur = b;
        int alt = 0;
        for (size_t i = 0; i < n && !alt; i++) alt = altered_at(b + i, n - i) != 0;
        if (alt) {
            size_t m = restore_byte_a0(b, n, b2, b3);
            if (m != n || memcmp(b2, b, n) != 0) {
                cur = b2;
                n = m;
            }
        }
        if (e >= 1 && e <= 5) { /* sloppy-windows-125x: replace_lossy_sequences */
            uint8_t *dst = cur == b ? b3 : b;
            size_t k = 0;
            for (size_t i = 0; i < n;) {
                size_t L = lossy_at(cur + i, n - i);
                if (L) {
                    dst[k++] = 0xEF;
                    dst[k++] = 0xBF;
                    dst[k++] = 0xBD;
                    i += L;
                } else {
                    dst[k++] = cur[i++];
                }
            }
            cur = dst;
            n = k;
        }
        int variants = memchr(cur, 0xED, n) || memchr(cur, 0xC0, n);
        if (decode_utf8(cur, n, variants, o) == 0) done = 1;
    }
    free(b);
    free(b2);
    free(b3);
    if (done) return 1;
    /* decode_inconsistent_utf8 where UTF8_DETECTOR_RE finds something */
    int found = 0;
    for (size_t i = 0; i < t->n && !found; i++) {
        uint64_t pm[2] = {0, 0};
        if (i > 0) moji_mask(t->v[i - 1], pm);
        if ((i == 0 || !mask_has(pm, BPE_U8_STRICT)) && utf8_detector_at(t->v, t->n, i) > i) found = 1;
    }
    if (found) {
        decode_inconsistent(t, o);
        if (!cp_equal(t, o)) return 1;
    }
    /* latin-1 text: read as windows-1252 when that decodes (never when
     * "windows-1252" is possible: ftfy asks for that name, which its list lacks) */
    if (possible_latin1) {
        int ok = 1;
        o->n = 0;
        cp_reserve(o, t->n);
        for (size_t i = 0; i < t->n && ok; i++) {
            uint32_t c = t->v[i];
            for (size_t k = 0; k < sizeof bpe_cp1252_undef; k++) ok &= c != bpe_cp1252_undef[k];
            o->v[o->n++] = c >= 0x80 ? bpe_charmap[CM_SLOPPY1252][c] : c;
        }
        if (ok && !cp_equal(t, o)) return 1;
    }
    if (has_c1(t)) {
        o->n = 0;
        cp_reserve(o, t->n);
        for (size_t i = 0; i < t->n; i++) {
            uint32_t c = t->v[i];
            o->v[o->n++] = c >= 0x80 && c <= 0x9F ? bpe_c1[c - 0x80] : c;
        }
        return 1;
    }
    return 0;
}

/* ftfy.fix_encoding: steps until the text no longer changes */
static void fix_encoding(cpvec *t) {
    cpvec o = {0};
    while (fix_encoding_step(t, &o) && !cp_equal(t, &o)) cp_swap(t, &o);
    free(o.v);
}

/* fix_text: segments end after each '\n' (or at 1,000,000 characters); HTML
 * unescaping is off from the first segment holding '<' on. Each segment is
 * fixed until it no longer changes. */
static void ftfy_fix_text(cpvec *text, cpvec *w) {
    cpvec out = {0}, seg = {0}, a = {0}, t1 = {0}, t2 = {0};
    int unescape = 1;
    size_t pos = 0;
    while (pos < text->n) {
        size_t end = pos;
        while (end < text->n && text->v[end] != '\n') end++;
        if (end < text->n) end++;
        if (end - pos > 1000000) end = pos + 1000000;
        seg.n = 0;
        cp_reserve(&seg, end - pos);
        memcpy(seg.v, text->v + pos, (end - pos) * sizeof *seg.v);
        seg.n = end - pos;
        for (size_t q = 0; q < seg.n && unescape; q++)
            if (seg.v[q] == '<') unescape = 0;
        for (;;) {
            /* a = seg (origtext); work on seg */
            a.n = 0;
            cp_reserve(&a, seg.n);
            if (seg.n) memcpy(a.v, seg.v, seg.n * sizeof *seg.v);
            a.n = seg.n;
            if (unescape) {
                ftfy_unescape(&seg, w, &t1, &t2);
                cp_swap(&seg, w);
            }
            fix_encoding(&seg);
            ftfy_chars(&seg, w, &t1);
            cp_swap(&seg, w);
            nfc(&seg, w);
            if (cp_equal(&seg, &a)) break;
        }
        cp_reserve(&out, seg.n);
        if (seg.n) memcpy(out.v + out.n, seg.v, seg.n * sizeof *seg.v);
        out.n += seg.n;
        pos = end;
    }
    cp_swap(text, &out);
    free(out.v);
    free(seg.v);
    free(a.v);
    free(t1.v);
    free(t2.v);
}

/* basic_clean, whitespace_clean and lower() on decoded text (in place) */
static void clip_clean(cpvec *s) {
    cpvec w = {0};
    ftfy_fix_text(s, &w);
    for (int r = 0; r < 2; r++) {
        if (html_unescape(s, &w)) cp_swap(s, &w);
    }
    /* strip (str.isspace), collapse regex \s+ to ' ', strip */
    w.n = 0;
    cp_reserve(&w, s->n);
    size_t b = 0, e = s->n;
    while (b < e && (bflags(s->v[b]) & BF_PS)) b++;
    while (e > b && (bflags(s->v[e - 1]) & BF_PS)) e--;
    for (size_t i = b; i < e;) {
        if (bflags(s->v[i]) & BF_RS) {
            while (i < e && (bflags(s->v[i]) & BF_RS)) i++;
            w.v[w.n++] = ' ';
        } else {
            w.v[w.n++] = s->v[i++];
        }
    }
    b = 0;
    e = w.n;
    while (b < e && (bflags(w.v[b]) & BF_PS)) b++;
    while (e > b && (bflags(w.v[e - 1]) & BF_PS)) e--;
    /* lower(), Final_Sigma included */
    s->n = 0;
    cp_reserve(s, 2 * (e - b));
    for (size_t i = b; i < e; i++) {
        uint32_t c = w.v[i];
        if (c == 0x3A3) {
            long j = (long)i - 1;
            while (j >= (long)b && (bflags(w.v[j]) & BF_CIGN)) j--;
            int fin = j >= (long)b && (bflags(w.v[j]) & BF_CASED);
            if (fin) {
                size_t k = i + 1;
                while (k < e && (bflags(w.v[k]) & BF_CIGN)) k++;
                fin = !(k < e && (bflags(w.v[k]) & BF_CASED));
            }
            s->v[s->n++] = fin ? 0x3C2 : 0x3C3;
            continue;
        }
        uint32_t lo[4];
        int m = mmp_uni_lower(c, lo);
        for (int q = 0; q < m; q++) s->v[s->n++] = lo[q];
    }
    free(w.v);
}

static int decode_text(const char *text, size_t len, int utf8_policy, cpvec *s, char *err, size_t errlen) {
    s->n = 0;
    cp_reserve(s, len + 1);
    size_t bad = 0;
    long m = mmp_utf8_decode(text, len, utf8_policy == MMP_UTF8_REPLACE, s->v, &bad);
    if (m < 0) {
        snprintf(err, errlen, "invalid UTF-8 at byte %zu of the text", bad);
        return -1;
    }
    s->n = (size_t)m;
    return 0;
}

char *mmp_clip_clean(const char *text, size_t len, int utf8_policy, size_t *outlen, char *err,
                     size_t errlen) {
    cpvec s = {0};
    if (decode_text(text, len, utf8_policy, &s, err, errlen) < 0) {
        free(s.v);
        return NULL;
    }
    clip_clean(&s);
    char *o = mmp_xmalloc(4 * s.n + 1);
    size_t n = mmp_utf8_encode(s.v, s.n, o);
    if (outlen) *outlen = n;
    free(s.v);
    return o;
}

/* ------------------------------------------------------------------ */
/* vocabulary, merges                                                  */
/* ------------------------------------------------------------------ */

typedef struct {
    uint64_t key; /* left << 32 | right, UINT64_MAX = empty */
    int32_t rank, merged;
} merge_slot;

struct mmp_bpe {
    int n;             /* ids 0..n-1 (strings may be NULL for holes) */
    char **tok;
    int32_t *slots;    /* vocab hash: open addressing over ids, -1 = empty */
    size_t nslots;
    int nuniq;         /* distinct token strings */
    merge_slot *ms;
    size_t nms;
    int32_t byte_id[256], byte_eow_id[256]; /* bytes_to_unicode symbols, and with the word end */
    int eow;           /* 1: a word's last symbol carries "</w>" (CLIP); 0: none (GPT-2) */
    int max_merges;    /* merges read from the file (CLIP: MMP_CLIP_MERGES) */
    int nspecial;
    char *special[2];
    int32_t special_id[2];
    int gpt2;          /* GPT-2's flavour: no cleaning, GPT-2's pattern, "<|endoftext|>" */
};

static uint64_t str_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

int mmp_bpe_id(const mmp_bpe *b, const char *t, size_t len) {
    size_t mask = b->nslots - 1, h = (size_t)str_hash(t, len) & mask;
    for (;; h = (h + 1) & mask) {
        int32_t id = b->slots[h];
        if (id < 0) return -1;
        if (strlen(b->tok[id]) == len && memcmp(b->tok[id], t, len) == 0) return id;
    }
}

/* sets the string of id; a string already present moves to the new id
 * (Python's dict(zip(vocab, range(...))) keeps the last) */
static void vocab_set(mmp_bpe *b, int id, char *s) {
    size_t len = strlen(s), mask = b->nslots - 1, h = (size_t)str_hash(s, len) & mask;
    b->tok[id] = s;
    for (;; h = (h + 1) & mask) {
        int32_t o = b->slots[h];
        if (o < 0) {
            b->slots[h] = id;
            b->nuniq++;
            return;
        }
        if (strcmp(b->tok[o], s) == 0) {
            b->slots[h] = id;
            return;
        }
    }
}

static void vocab_init(mmp_bpe *b, int n) {
    b->n = n;
    b->tok = mmp_xcalloc((size_t)n, sizeof *b->tok);
    b->nslots = 16;
    while (b->nslots < 2 * (size_t)n + 16) b->nslots *= 2;
    b->slots = mmp_xmalloc(b->nslots * sizeof *b->slots);
    memset(b->slots, 0xff, b->nslots * sizeof *b->slots);
}

static merge_slot *merge_find(const mmp_bpe *b, int32_t l, int32_t r) {
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    size_t mask = b->nms - 1, h = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
    for (;; h = (h + 1) & mask) {
        if (b->ms[h].key == key) return &b->ms[h];
        if (b->ms[h].key == UINT64_MAX) return NULL;
    }
}

static void merge_put(mmp_bpe *b, int32_t l, int32_t r, int32_t rank, int32_t merged) {
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    size_t mask = b->nms - 1, h = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
    for (;; h = (h + 1) & mask) {
        if (b->ms[h].key == key || b->ms[h].key == UINT64_MAX) {
            b->ms[h].key = key; /* a repeated pair keeps its last rank, as dict(zip(merges, range)) */
            b->ms[h].rank = rank;
            b->ms[h].merged = merged;
            return;
        }
    }
}

/* GPT-2's bytes_to_unicode: the bytes that stand for themselves */
static int printable_byte(int c) { return (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF); }

/* the byte order of bytes_to_unicode's dict (its values are the first 256 tokens) */
static void byte_order(int ord[256]) {
    int m = 0;
    for (int c = 0; c < 256; c++)
        if (printable_byte(c)) ord[m++] = c;
    for (int c = 0; c < 256; c++)
        if (!printable_byte(c)) ord[m++] = c;
}

/* byte -> code point: itself, or 256 + its rank among the other bytes */
static uint32_t byte_cp(int byte) {
    if (printable_byte(byte)) return (uint32_t)byte;
    int n = 0;
    for (int c = 0; c < byte; c++) n += !printable_byte(c);
    return 256 + (uint32_t)n;
}

static char *byte_str(int byte, int eow) {
    uint32_t cp = byte_cp(byte);
    char buf[16];
    size_t n = mmp_utf8_encode(&cp, 1, buf);
    if (eow) memcpy(buf + n, "</w>", 5);
    return mmp_xstrdup(buf);
}

void mmp_bpe_free(mmp_bpe *b) {
    if (!b) return;
    /* each id owns its string (a repeated string has one allocation per id) */
    for (int i = 0; i < b->n; i++) free(b->tok[i]);
    free(b->tok);
    free(b->slots);
    free(b->ms);
    for (int k = 0; k < b->nspecial; k++) free(b->special[k]);
    free(b);
}

int mmp_bpe_vocab_size(const mmp_bpe *b) { return b->nuniq; }
int mmp_bpe_id_bound(const mmp_bpe *b) { return b->n; }
int mmp_bpe_sot_id(const mmp_bpe *b) { return b->special_id[0]; }
int mmp_bpe_eot_id(const mmp_bpe *b) { return b->special_id[1]; }
const char *mmp_bpe_token(const mmp_bpe *b, int id) { return id >= 0 && id < b->n ? b->tok[id] : NULL; }

/* one merges line: two symbols separated by whitespace (Python's str.split()) */
static int split2(char *line, char **a, char **b2) {
    char *p = line, *f[3];
    int k = 0;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\v' || *p == '\f') p++;
        if (!*p) break;
        if (k == 3) return 3;
        f[k++] = p;
        while (*p && !(*p == ' ' || *p == '\t' || *p == '\r' || *p == '\v' || *p == '\f')) p++;
        if (*p) *p++ = 0;
    }
    if (k != 2) return k;
    *a = f[0];
    *b2 = f[1];
    return 2;
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    mmp_err_oneline(err, errlen);
    return -1;
}

/* The merges of text (the lines after the first, at most b->max_merges) into
 * b's merge table. build_vocab (open_clip's .gz): each merged string also
 * becomes a token, ids 512.. in order, as SimpleTokenizer builds its vocabulary;
 * else (vocab.json) the merged string must already be a token. A merge whose
 * parts are no tokens can never apply and gets no entry. */
static int read_merges(mmp_bpe *b, char *text, const char *path, int build_vocab, int *nmerges,
                       char *err, size_t errlen) {
    size_t cap = 1;
    size_t lines = 0;
    for (const char *q = text; (q = strchr(q, '\n')); q++) lines++;
    if (lines > (size_t)b->max_merges) lines = (size_t)b->max_merges;
    while (cap < 2 * lines + 16) cap *= 2;
    b->nms = cap;
    b->ms = mmp_xmalloc(cap * sizeof *b->ms);
    for (size_t i = 0; i < cap; i++) b->ms[i].key = UINT64_MAX;
    char *p = strchr(text, '\n');
    int line = 1, r = 0;
    char **pend = NULL; /* build_vocab: (a, b) strings to resolve after all merged strings exist */
    if (build_vocab) pend = mmp_xmalloc((2 * lines + 2) * sizeof *pend);
    while (p && r < b->max_merges) {
        char *ln = p + 1;
        line++;
        p = strchr(ln, '\n');
        if (p) *p = 0;
        char *a, *c;
        int k = split2(ln, &a, &c);
        if (k != 2) {
            free(pend);
            return fail(err, errlen, "%s: line %d: expected two symbols separated by a space, found %d", path,
                        line, k);
        }
        if (build_vocab) {
            size_t la = strlen(a), lc = strlen(c);
            char *m = mmp_xmalloc(la + lc + 1);
            memcpy(m, a, la);
            memcpy(m + la, c, lc + 1);
            vocab_set(b, 512 + r, m);
            pend[2 * r] = a;
            pend[2 * r + 1] = c;
        } else {
            int ia = mmp_bpe_id(b, a, strlen(a)), ic = mmp_bpe_id(b, c, strlen(c));
            size_t la = strlen(a), lc = strlen(c);
            char *m = mmp_xmalloc(la + lc + 1);
            memcpy(m, a, la);
            memcpy(m + la, c, lc + 1);
            int im = mmp_bpe_id(b, m, la + lc);
            free(m);
            if (im < 0) return fail(err, errlen, "%s: line %d: the merged token \"%s%s\" is not in vocab.json", path, line, a, c);
            if (ia >= 0 && ic >= 0) merge_put(b, ia, ic, r, im);
        }
        r++;
    }
    if (build_vocab) {
        for (int q = 0; q < r; q++) {
            const char *a = pend[2 * q], *c = pend[2 * q + 1];
            int ia = mmp_bpe_id(b, a, strlen(a)), ic = mmp_bpe_id(b, c, strlen(c));
            size_t la = strlen(a);
            char *m = mmp_xmalloc(la + strlen(c) + 1);
            memcpy(m, a, la);
            strcpy(m + la, c);
            int im = mmp_bpe_id(b, m, strlen(m));
            free(m);
            /* a pair whose parts are no tokens can never be formed: no entry */
            if (ia >= 0 && ic >= 0) merge_put(b, ia, ic, q, im);
        }
        free(pend);
    }
    *nmerges = r;
    return 0;
}

static int set_bytes(mmp_bpe *b, const char *path, char *err, size_t errlen) {
    for (int c = 0; c < 256; c++) {
        for (int eow = 0; eow <= b->eow; eow++) {
            char *s = byte_str(c, eow);
            int id = mmp_bpe_id(b, s, strlen(s));
            if (id < 0) {
                fail(err, errlen, "%s: the byte symbol \"%s\" is not in the vocabulary", path, s);
                free(s);
                return -1;
            }
            free(s);
            (eow ? b->byte_eow_id : b->byte_id)[c] = id;
        }
    }
    return 0;
}

static char *read_gz(const char *path, size_t *n, char *err, size_t errlen) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        fail(err, errlen, "%s: %s", path, strerror(errno ? errno : ENOENT));
        return NULL;
    }
    size_t cap = 1 << 20, len = 0;
    char *buf = mmp_xmalloc(cap + 1);
    for (;;) {
        if (len == cap) buf = mmp_xrealloc(buf, (cap *= 2) + 1);
        int r = gzread(f, buf + len, (unsigned)(cap - len));
        if (r < 0) {
            int e;
            const char *m = gzerror(f, &e);
            fail(err, errlen, "%s: not a readable gzip file (%s)", path, m);
            free(buf);
            gzclose(f);
            return NULL;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    gzclose(f);
    buf[len] = 0;
    *n = len;
    return buf;
}

/* text must be UTF-8 without NUL bytes (Python's decode('utf-8') accepts NUL,
 * but no symbol of a real vocabulary has one) */
static int check_text(const char *path, const char *t, size_t n, char *err, size_t errlen) {
    if (memchr(t, 0, n)) return fail(err, errlen, "%s: holds a NUL byte (not a BPE vocabulary)", path);
    uint32_t *tmp = mmp_xmalloc((n + 1) * sizeof *tmp);
    size_t bad = 0;
    long m = mmp_utf8_decode(t, n, 0, tmp, &bad);
    free(tmp);
    if (m < 0) {
        int line = 1;
        for (size_t i = 0; i < bad; i++) line += t[i] == '\n';
        return fail(err, errlen, "%s: line %d: invalid UTF-8 (byte %zu)", path, line, bad);
    }
    return 0;
}

static mmp_bpe *load_openclip_gz(const char *path, char *err, size_t errlen) {
    size_t n;
    char *text = read_gz(path, &n, err, errlen);
    if (!text) return NULL;
    if (check_text(path, text, n, err, errlen) < 0) {
        free(text);
        return NULL;
    }
    /* vocab = the 256 byte symbols, the same with "</w>", the merges, the two specials */
    int nlines = 0;
    for (size_t i = 0; i < n; i++) nlines += text[i] == '\n';
    int nm = nlines < MMP_CLIP_MERGES ? nlines : MMP_CLIP_MERGES;
    mmp_bpe *b = mmp_xcalloc(1, sizeof *b);
    b->eow = 1;
    b->max_merges = MMP_CLIP_MERGES;
    vocab_init(b, 512 + nm + 2);
    int ord[256];
    byte_order(ord);
    for (int k = 0; k < 256; k++) vocab_set(b, k, byte_str(ord[k], 0));
    for (int k = 0; k < 256; k++) vocab_set(b, 256 + k, byte_str(ord[k], 1));
    int got = 0;
    if (read_merges(b, text, path, 1, &got, err, errlen) < 0) goto bad;
    if (got == 0) {
        fail(err, errlen, "%s: no merges (not a BPE merges file)", path);
        goto bad;
    }
    /* the vocabulary has 512 + got + 2 ids: move the specials down when the file is short */
    b->nspecial = 2;
    b->special[0] = mmp_xstrdup("<start_of_text>");
    b->special[1] = mmp_xstrdup("<end_of_text>");
    for (int k = 0; k < 2; k++) {
        vocab_set(b, 512 + got + k, mmp_xstrdup(b->special[k]));
        b->special_id[k] = 512 + got + k;
    }
    b->n = 512 + got + 2;
    if (set_bytes(b, path, err, errlen) < 0) goto bad;
    free(text);
    return b;
bad:
    free(text);
    mmp_bpe_free(b);
    return NULL;
}

static mmp_bpe *load_hf(const char *vocab_path, const char *merges_path, int gpt2, char *err, size_t errlen) {
    json_t *root = NULL;
    int r = mmp_json_load(vocab_path, &root, err, errlen);
    if (r == 0) fail(err, errlen, "%s: %s", vocab_path, strerror(ENOENT));
    if (r <= 0) return NULL;
    if (!json_is_object(root)) {
        fail(err, errlen, "%s: expected a JSON object of token -> id", vocab_path);
        json_decref(root);
        return NULL;
    }
    int maxid = -1;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) > 10000000) {
            fail(err, errlen, "%s: token \"%s\": expected an id (an integer 0..10000000)", vocab_path, key);
            json_decref(root);
            return NULL;
        }
        if (json_integer_value(val) > maxid) maxid = (int)json_integer_value(val);
    }
    mmp_bpe *b = mmp_xcalloc(1, sizeof *b);
    b->eow = !gpt2;
    b->gpt2 = gpt2;
    b->max_merges = gpt2 ? INT32_MAX : MMP_CLIP_MERGES;
    vocab_init(b, maxid + 1);
    json_object_foreach(root, key, val) {
        int id = (int)json_integer_value(val);
        if (b->tok[id]) {
            fail(err, errlen, "%s: tokens \"%s\" and \"%s\" have the same id %d", vocab_path, b->tok[id], key, id);
            json_decref(root);
            mmp_bpe_free(b);
            return NULL;
        }
        vocab_set(b, id, mmp_xstrdup(key));
    }
    json_decref(root);
    for (int id = 0; id < b->n; id++)
        if (!b->tok[id]) b->tok[id] = mmp_xstrdup(""); /* a hole: never produced, never found */
    size_t n;
    errno = 0;
    char *text = mmp_read_small_file(merges_path, &n);
    if (!text) {
        fail(err, errlen, "%s: %s", merges_path, strerror(errno ? errno : EIO));
        mmp_bpe_free(b);
        return NULL;
    }
    int got = 0;
    if (check_text(merges_path, text, n, err, errlen) < 0) goto bad;
    char *s = text;
    if (gpt2) {
        /* GPT2Tokenizer: merges.read().split("\n")[1:-1] (the last piece dropped: the
         * empty one after the final newline, or else the last line) */
        char *nl = strrchr(s, '\n');
        if (nl) *nl = 0;
        else s[0] = 0;
    } else {
        /* transformers: merges.read().strip().split("\n")[1:49152-256-2+1] */
        while (*s && (unsigned char)*s < 128 && (bflags((unsigned char)*s) & BF_PS)) s++;
        size_t e = strlen(s);
        while (e > 0 && (unsigned char)s[e - 1] < 128 && (bflags((unsigned char)s[e - 1]) & BF_PS)) s[--e] = 0;
    }
    if (read_merges(b, s, merges_path, 0, &got, err, errlen) < 0) goto bad;
    if (got == 0) {
        fail(err, errlen, "%s: no merges after the first line", merges_path);
        goto bad;
    }
    if (set_bytes(b, vocab_path, err, errlen) < 0) goto bad;
    if (gpt2) { /* "<|endoftext|>" is bos, eos and unk (none: -1) */
        int id = mmp_bpe_id(b, "<|endoftext|>", 13);
        b->special_id[0] = b->special_id[1] = id;
        if (id >= 0) {
            b->nspecial = 1;
            b->special[0] = mmp_xstrdup("<|endoftext|>");
        }
        free(text);
        return b;
    }
    b->nspecial = 2;
    b->special[0] = mmp_xstrdup("<|startoftext|>");
    b->special[1] = mmp_xstrdup("<|endoftext|>");
    for (int k = 0; k < 2; k++) {
        b->special_id[k] = mmp_bpe_id(b, b->special[k], strlen(b->special[k]));
        if (b->special_id[k] < 0) {
            fail(err, errlen, "%s: no token \"%s\"", vocab_path, b->special[k]);
            goto bad;
        }
    }
    free(text);
    return b;
bad:
    free(text);
    mmp_bpe_free(b);
    return NULL;
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* The folder of PATH's tokenizer files into dir ("" or ending in '/'): PATH's
 * own folder when it is a file (*base = its name), else PATH itself (*base =
 * NULL). 0, or -1 with one line in err when PATH cannot be stat'ed. */
static int tok_dir(const char *path, char *dir, size_t cap, const char **base, char *err, size_t errlen) {
    struct stat st;
    if (stat(path, &st) != 0) {
        fail(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    *base = NULL;
    if (S_ISREG(st.st_mode)) {
        const char *b = strrchr(path, '/');
        b = b ? b + 1 : path;
        size_t dl = (size_t)(b - path);
        if (dl >= cap) dl = cap - 1;
        memcpy(dir, path, dl);
        dir[dl] = 0;
        *base = b;
    } else {
        snprintf(dir, cap, "%s/", path);
    }
    return 0;
}

mmp_bpe *mmp_bpe_load_clip(const char *path, char *err, size_t errlen) {
    char dir[4096], a[4200], c[4200];
    const char *base;
    if (tok_dir(path, dir, sizeof dir, &base, err, errlen)) return NULL;
    if (base) {
        if (ends_with(path, ".gz")) return load_openclip_gz(path, err, errlen);
        if (strcmp(base, "vocab.json") == 0 || strcmp(base, "merges.txt") == 0) {
            snprintf(a, sizeof a, "%svocab.json", dir);
            snprintf(c, sizeof c, "%smerges.txt", dir);
            return load_hf(a, c, 0, err, errlen);
        }
    }
    snprintf(a, sizeof a, "%svocab.json", dir);
    snprintf(c, sizeof c, "%smerges.txt", dir);
    if (is_file(a) && is_file(c)) return load_hf(a, c, 0, err, errlen);
    snprintf(a, sizeof a, "%sbpe_simple_vocab_16e6.txt.gz", dir);
    if (is_file(a)) return load_openclip_gz(a, err, errlen);
    fail(err, errlen, "%s: no CLIP tokenizer files (vocab.json + merges.txt, or bpe_simple_vocab_16e6.txt.gz) in %s",
         path, dir[0] ? dir : "./");
    return NULL;
}

mmp_bpe *mmp_bpe_load_gpt2(const char *path, char *err, size_t errlen) {
    char dir[4096], a[4200], c[4200];
    const char *base;
    if (tok_dir(path, dir, sizeof dir, &base, err, errlen)) return NULL;
    snprintf(a, sizeof a, "%svocab.json", dir);
    snprintf(c, sizeof c, "%smerges.txt", dir);
    if (is_file(a) && is_file(c)) return load_hf(a, c, 1, err, errlen);
    fail(err, errlen, "%s: no GPT-2 tokenizer files (vocab.json + merges.txt) in %s", path, dir[0] ? dir : "./");
    return NULL;
}

int mmp_bpe_is_gpt2(const mmp_bpe *b) { return b->gpt2; }

/* ------------------------------------------------------------------ */
/* BPE and CLIP's pre-tokenizer                                        */
/* ------------------------------------------------------------------ */

typedef struct {
    int32_t **v;
    int *n, *cap;
} idvec;

static void push_id(idvec *o, int32_t id) {
    if (*o->n == *o->cap) {
        *o->cap = *o->cap ? 2 * *o->cap : 128;
        *o->v = mmp_xrealloc(*o->v, (size_t)*o->cap * sizeof **o->v);
    }
    (*o->v)[(*o->n)++] = id;
}

/* SimpleTokenizer.bpe on the bytes of one pre-token: symbols start as the
 * bytes' symbols (the last one with "</w>"); the adjacent pair of lowest rank
 * is merged everywhere, left to right, until no pair has a rank. */
static void bpe_word(const mmp_bpe *b, const unsigned char *s, size_t n, int32_t **sym, size_t *symcap,
                     idvec *out) {
    if (n > *symcap) {
        *symcap = 2 * n;
        *sym = mmp_xrealloc(*sym, *symcap * sizeof **sym);
    }
    int32_t *w = *sym;
    for (size_t i = 0; i < n; i++) w[i] = i + 1 == n && b->eow ? b->byte_eow_id[s[i]] : b->byte_id[s[i]];
    size_t m = n;
    while (m > 1) {
        int32_t best = INT32_MAX, bl = 0, br = 0, bm = 0;
        for (size_t i = 0; i + 1 < m; i++) {
            const merge_slot *e = merge_find(b, w[i], w[i + 1]);
            if (e && e->rank < best) {
                best = e->rank;
                bl = w[i];
                br = w[i + 1];
                bm = e->merged;
            }
        }
        if (best == INT32_MAX) break;
        size_t k = 0;
        for (size_t i = 0; i < m;) {
            if (i + 1 < m && w[i] == bl && w[i + 1] == br) {
                w[k++] = bm;
                i += 2;
            } else {
                w[k++] = w[i++];
            }
        }
        m = k;
    }
    for (size_t i = 0; i < m; i++) push_id(out, w[i]);
}

/* GPT-2's pre-tokenizer (GPT2Tokenizer: the added "<|endoftext|>" split out
 * first, then regex findall of
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * on each piece), each pre-token BPE'd from its UTF-8 bytes. */
static void gpt2_pieces(const mmp_bpe *b, const uint32_t *v, size_t n, idvec *out, int32_t **sym, size_t *symcap,
                        unsigned char **buf, size_t *bufcap) {
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    size_t i = 0;
    while (i < n) {
        size_t end = 0;
        if (v[i] == '\'') {
            for (int k = 0; k < 7 && !end; k++) {
                const char *ct = contractions[k];
                size_t L = strlen(ct), q = 1;
                if (i + L > n) continue;
                while (q < L && v[i + q] == (unsigned char)ct[q]) q++;
                if (q == L) end = i + L;
            }
        }
        if (!end) {
            size_t j = i + (v[i] == ' ' && i + 1 < n && !(bflags(v[i + 1]) & BF_RS));
            unsigned f = bflags(v[j]);
            unsigned cls = f & BF_L ? BF_L : f & BF_N ? BF_N : f & BF_RS ? 0 : BF_O;
            if (cls) { /* ' ?' then a run of one class (a letter is never O, nor a space) */
                end = j + 1;
                while (end < n && (cls == BF_O ? !(bflags(v[end]) & (BF_L | BF_N | BF_RS)) : (bflags(v[end]) & cls))) end++;
            } else { /* whitespace: \s+(?!\S), else \s+ */
                size_t e = i + 1;
                while (e < n && (bflags(v[e]) & BF_RS)) e++;
                end = e == n || e - i == 1 ? e : e - 1;
            }
        }
        if (4 * (end - i) + 1 > *bufcap) {
            *bufcap = 8 * (end - i) + 1;
            *buf = mmp_xrealloc(*buf, *bufcap);
        }
        size_t nb = mmp_utf8_encode(v + i, end - i, (char *)*buf);
        bpe_word(b, *buf, nb, sym, symcap, out);
        i = end;
    }
}

static int gpt2_tokenize(const mmp_bpe *b, const cpvec *s, idvec *out) {
    int32_t *sym = NULL;
    size_t symcap = 0, bufcap = 256;
    unsigned char *buf = mmp_xmalloc(bufcap);
    size_t i = 0, start = 0;
    while (i <= s->n) {
        /* the special token, spelled exactly */
        int hit = 0;
        if (b->nspecial && i < s->n) {
            const char *sp = b->special[0];
            size_t L = strlen(sp), q = 0;
            if (i + L <= s->n) {
                while (q < L && s->v[i + q] == (unsigned char)sp[q]) q++;
                hit = q == L;
            }
        }
        if (hit || i == s->n) {
            gpt2_pieces(b, s->v + start, i - start, out, &sym, &symcap, &buf, &bufcap);
            if (!hit) break;
            push_id(out, b->special_id[0]);
            i += strlen(b->special[0]);
            start = i;
            continue;
        }
        i++;
    }
    free(sym);
    free(buf);
    return 0;
}

int mmp_bpe_tokenize(const mmp_bpe *b, const char *text, size_t len, int utf8_policy, int32_t **ids,
                     int *n, int *cap, char *err, size_t errlen) {
    cpvec s = {0};
    if (decode_text(text, len, utf8_policy, &s, err, errlen) < 0) {
        free(s.v);
        return -1;
    }
    if (b->gpt2) {
        idvec o = {ids, n, cap};
        gpt2_tokenize(b, &s, &o);
        free(s.v);
        return 0;
    }
    clip_clean(&s);
    idvec out = {ids, n, cap};
    int32_t *sym = NULL;
    size_t symcap = 0, bufcap = 256;
    unsigned char *buf = mmp_xmalloc(bufcap);
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    /* regex findall of special|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ (IGNORECASE) */
    size_t i = 0;
    while (i < s.n) {
        size_t end = 0;
        int special = -1;
        for (int k = 0; k < b->nspecial && !end; k++) {
            const char *sp = b->special[k];
            size_t L = strlen(sp), q = 0;
            if (i + L > s.n) continue;
            while (q < L && ci_eq(s.v[i + q], sp[q])) q++;
            if (q == L) {
                end = i + L;
                /* the special id only for the exact spelling (SimpleTokenizer's cache); a
                 * case-insensitive match is BPE'd like any other piece */
                special = k;
                for (q = 0; q < L; q++)
                    if (s.v[i + q] != (unsigned char)sp[q]) special = -1;
            }
        }
        if (!end && s.v[i] == '\'') {
            for (int k = 0; k < 7 && !end; k++) {
                const char *ct = contractions[k];
                size_t L = strlen(ct), q = 1;
                if (i + L > s.n) continue;
                while (q < L && ci_eq(s.v[i + q], ct[q])) q++;
                if (q == L) end = i + L;
            }
        }
        if (!end) {
            unsigned f = bflags(s.v[i]);
            if (f & BF_L) {
                end = i + 1;
                while (end < s.n && (bflags(s.v[end]) & BF_L)) end++;
            } else if (f & BF_N) {
                end = i + 1;
            } else if (f & BF_O) {
                end = i + 1;
                while (end < s.n && (bflags(s.v[end]) & BF_O)) end++;
            } else {
                i++;
                continue;
            }
        }
        if (special >= 0) {
            push_id(&out, b->special_id[special]);
        } else {
            if (4 * (end - i) + 1 > bufcap) {
                bufcap = 8 * (end - i) + 1;
                buf = mmp_xrealloc(buf, bufcap);
            }
            size_t nb = mmp_utf8_encode(s.v + i, end - i, (char *)buf);
            bpe_word(b, buf, nb, &sym, &symcap, &out);
        }
        i = end;
    }
    free(sym);
    free(buf);
    free(s.v);
    return 0;
}

int mmp_bpe_encode(const mmp_bpe *b, const char *text, size_t len, int context, int utf8_policy,
                   int32_t *ids_out, char *err, size_t errlen) {
    if (context < 1) {
        snprintf(err, errlen, "context length %d: expected at least 1", context);
        return -1;
    }
    int32_t *ids = NULL;
    int n = 0, cap = 0;
    idvec v = {&ids, &n, &cap};
    push_id(&v, b->special_id[0]);
    if (mmp_bpe_tokenize(b, text, len, utf8_policy, &ids, &n, &cap, err, errlen) < 0) {
        free(ids);
        return -1;
    }
    push_id(&v, b->special_id[1]);
    int m = n;
    if (m > context) {
        m = context;
        ids[m - 1] = b->special_id[1];
    }
    memcpy(ids_out, ids, (size_t)m * sizeof *ids_out);
    for (int k = m; k < context; k++) ids_out[k] = 0;
    free(ids);
    return m;
}

/* ------------------------------------------------------------------ */
/* decoding                                                            */
/* ------------------------------------------------------------------ */

/* the length of the valid UTF-8 sequence at p (n bytes left), or 0; *sub: the
 * maximal subpart of a valid sequence there (Python's errors="replace" turns
 * it into one U+FFFD; at least 1) */
static size_t utf8_seq(const unsigned char *p, size_t n, size_t *sub) {
    unsigned c = p[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    *sub = 1;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    for (size_t k = 1; k <= need; k++) {
        if (k >= n) return 0;
        unsigned d = p[k];
        if (k == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF)) return 0;
        *sub = k + 1;
    }
    return need + 1;
}

char *mmp_bpe_decode(const mmp_bpe *b, const int32_t *ids, int n, size_t *outlen, char *err, size_t errlen) {
    /* the tokens' symbols back to bytes (GPT-2's byte_decoder), then UTF-8 with replacement */
    int dec[512];
    for (int k = 0; k < 512; k++) dec[k] = -1;
    for (int c = 0; c < 256; c++) dec[byte_cp(c)] = c;
    size_t cap = 64, len = 0;
    unsigned char *raw = mmp_xmalloc(cap);
    for (int i = 0; i < n; i++) {
        const char *t = ids[i] >= 0 && ids[i] < b->n ? b->tok[ids[i]] : NULL;
        if (!t || (!*t && ids[i] != b->special_id[0])) {
            free(raw);
            fail(err, errlen, "token id %d is not in the vocabulary (%d ids)", (int)ids[i], b->n);
            return NULL;
        }
        size_t tl = strlen(t);
        int special = 0;
        for (int k = 0; k < b->nspecial; k++) special |= !strcmp(t, b->special[k]);
        if (!b->gpt2 && tl >= 4 && !strcmp(t + tl - 4, "</w>")) tl -= 4;
        uint32_t cps[64];
        if (len + 4 * tl + 8 > cap) raw = mmp_xrealloc(raw, cap = 2 * (len + 4 * tl + 8));
        if (special) { /* CLIP: "<start_of_text>" etc. kept as text */
            memcpy(raw + len, t, tl);
            len += tl;
        } else {
            size_t bad = 0;
            uint32_t *cp = tl <= 64 ? cps : mmp_xmalloc(tl * sizeof *cp);
            long m = mmp_utf8_decode(t, tl, 0, cp, &bad);
            for (long k = 0; k < m; k++)
                if (cp[k] < 512 && dec[cp[k]] >= 0) raw[len++] = (unsigned char)dec[cp[k]];
                else { /* a symbol outside the byte alphabet (an added token): its own UTF-8 */
                    len += mmp_utf8_encode(&cp[k], 1, (char *)raw + len);
                }
            if (cp != cps) free(cp);
        }
        if (!b->gpt2 && tl != strlen(t)) raw[len++] = ' ';
    }
    /* bytearray.decode("utf-8", errors="replace") */
    unsigned char *o = mmp_xmalloc(3 * len + 1);
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        size_t sub, q = utf8_seq(raw + i, len - i, &sub);
        if (q) {
            memcpy(o + k, raw + i, q);
            k += q, i += q;
        } else {
            o[k++] = 0xEF, o[k++] = 0xBF, o[k++] = 0xBD;
            i += sub;
        }
    }
    o[k] = 0;
    free(raw);
    if (outlen) *outlen = k;
    return (char *)o;
}
