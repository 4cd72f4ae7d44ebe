/* WordPiece tokenizer vs Hugging Face BertTokenizer (slow, transformers 4.30.2)
 * token ids recorded by tests/fixtures/gen_text.py in tests/fixtures/text/tokens.txt,
 * for the real all-MiniLM-L6-v2 vocab and a tiny vocab; plus UTF-8 and Unicode checks. */
#include <stdint.h>
#include <string.h>

#include "mmp.h"
#include "testlib.h"
#include "text/wordpiece.h"

static int unhex(const char *h, size_t n, char *out) {
    for (size_t i = 0; i + 1 < n + 1 && i < n; i += 2) {
        unsigned v;
        if (sscanf(h + i, "%2x", &v) != 1) return -1;
        out[i / 2] = (char)v;
    }
    return (int)(n / 2);
}

int main(void) {
    char err[256];
    mmp_wordpiece *real = mmp_wp_load(t_root_path("tests/fixtures/text/minilm_vocab.txt"), NULL, err, sizeof err);
    mmp_wordpiece *tiny = mmp_wp_load(t_root_path("tests/fixtures/text/tiny_bert/vocab.txt"), NULL, err, sizeof err);
    CHECKF(real && tiny, "load: %s", err);
    if (!real || !tiny) TEST_END();
    CHECK(mmp_wp_vocab_size(real) == 30522);
    CHECK(mmp_wp_cls_id(real) == 101 && mmp_wp_sep_id(real) == 102 && mmp_wp_unk_id(real) == 100);

    FILE *f = fopen(t_root_path("tests/fixtures/text/tokens.txt"), "r");
    CHECK(f != NULL);
    if (!f) TEST_END();
    static char line[1 << 20], text[1 << 19];
    int cases = 0, bad = 0, with_unk = 0;
    int32_t ids[600];
    while (fgets(line, sizeof line, f)) {
        /* fields may be empty: split on tabs by hand */
        char *fld[4] = {line, NULL, NULL, NULL};
        for (int k = 1; k < 4; k++) {
            char *t = fld[k - 1] ? strchr(fld[k - 1], '\t') : NULL;
            if (t) { *t = 0; fld[k] = t + 1; }
        }
        if (!fld[3]) continue;
        fld[3][strcspn(fld[3], "\n")] = 0;
        char *vocab = fld[0], *ml = fld[1], *hx = fld[2], *want = fld[3];
        int n = unhex(hx, strlen(hx), text);
        int max_len = atoi(ml);
        mmp_wordpiece *wp = strcmp(vocab, "minilm") == 0 ? real : tiny;
        int k = mmp_wp_encode(wp, text, (size_t)n, max_len, MMP_UTF8_ERROR, ids, err, sizeof err);
        char got[8192];
        size_t g = 0;
        got[0] = 0;
        for (int i = 0; i < k && g + 16 < sizeof got; i++) {
            g += (size_t)snprintf(got + g, sizeof got - g, "%s%d", i ? " " : "", ids[i]);
            if (ids[i] == mmp_wp_unk_id(wp)) with_unk++;
        }
        cases++;
        if (strcmp(got, want) != 0) {
            if (bad++ < 5) fprintf(stderr, "mismatch (%s, max %d) text %s\n  want %s\n  got  %s\n", vocab, max_len, hx, want, got);
        }
    }
    fclose(f);
    CHECKF(bad == 0, "%d of %d tokenization cases differ from BertTokenizer", bad, cases);
    CHECKF(cases >= 300, "only %d cases", cases);
    CHECK(with_unk > 0); /* the fixtures exercise [UNK] */
    printf("%d tokenization cases match (%d [UNK]s)\n", cases, with_unk);

    /* invalid UTF-8: error naming the byte, or replacement (U+FFFD is then dropped) */
    const char bad1[] = "ab\xff" "cd", bad2[] = "x\xc0\xaf", bad3[] = "\xed\xa0\x80", bad4[] = "\xe4\xb8";
    const char *bads[] = {bad1, bad2, bad3, bad4};
    size_t badlen[] = {5, 3, 3, 2};
    for (int i = 0; i < 4; i++) {
        err[0] = 0;
        CHECK(mmp_wp_encode(real, bads[i], badlen[i], 16, MMP_UTF8_ERROR, ids, err, sizeof err) == -1);
        CHECK(strstr(err, "invalid UTF-8") != NULL);
        CHECK(mmp_wp_encode(real, bads[i], badlen[i], 16, MMP_UTF8_REPLACE, ids, err, sizeof err) >= 2);
    }
    /* "ab\xff" "cd" with replacement = "abcd" (U+FFFD dropped by BERT's cleaning) */
    int32_t ids2[16];
    int k1 = mmp_wp_encode(real, bad1, 5, 16, MMP_UTF8_REPLACE, ids, err, sizeof err);
    int k2 = mmp_wp_encode(real, "abcd", 4, 16, MMP_UTF8_ERROR, ids2, err, sizeof err);
    CHECK(k1 == k2 && memcmp(ids, ids2, (size_t)k1 * sizeof *ids) == 0);
    /* embedded NUL is dropped, not a terminator */
    k1 = mmp_wp_encode(real, "hello\0world", 11, 16, MMP_UTF8_ERROR, ids, err, sizeof err);
    k2 = mmp_wp_encode(real, "helloworld", 10, 16, MMP_UTF8_ERROR, ids2, err, sizeof err);
    CHECK(k1 == k2 && memcmp(ids, ids2, (size_t)k1 * sizeof *ids) == 0);
    /* truncation keeps [CLS] ... [SEP] */
    k1 = mmp_wp_encode(real, "a b c d e f g", 13, 4, MMP_UTF8_ERROR, ids, err, sizeof err);
    CHECK(k1 == 4 && ids[0] == 101 && ids[3] == 102);
    CHECK(mmp_wp_encode(real, "a", 1, 1, MMP_UTF8_ERROR, ids, err, sizeof err) == -1);

    /* Unicode helpers */
    uint32_t lo[4], in[3] = {0x1E69, 0x0323, 0}, out[64];
    CHECK(mmp_uni_lower(0x130, lo) == 2 && lo[0] == 'i' && lo[1] == 0x307);
    CHECK(mmp_uni_lower('Q', lo) == 1 && lo[0] == 'q');
    CHECK(mmp_uni_flags(0x3000) & MMP_UNI_ZS);
    CHECK(mmp_uni_flags('$') & MMP_UNI_PUNCT);
    CHECK(mmp_uni_flags(0x300) & MMP_UNI_MN);
    CHECK(mmp_uni_flags(0x200B) & MMP_UNI_CTRL); /* Cf */
    CHECK(mmp_uni_flags(0x2028) & MMP_UNI_SPACE);
    size_t m = mmp_uni_nfd(in, 1, out); /* U+1E69 -> s U+0323 U+0307 */
    CHECK(m == 3 && out[0] == 's' && out[1] == 0x323 && out[2] == 0x307);
    uint32_t in2[3] = {'a', 0x307, 0x323}; /* reordered by combining class: 0323 (220) before 0307 (230) */
    m = mmp_uni_nfd(in2, 3, out);
    CHECK(m == 3 && out[1] == 0x323 && out[2] == 0x307);
    uint32_t hangul = 0xD55C; /* 한 -> 1112 1161 11AB */
    m = mmp_uni_nfd(&hangul, 1, out);
    CHECK(m == 3 && out[0] == 0x1112 && out[1] == 0x1161 && out[2] == 0x11AB);

    /* random bytes (mostly invalid UTF-8) with replacement, and random valid codepoints:
     * never a crash (ASan build), ids always in range, [CLS] ... [SEP] framing */
    uint64_t x = 88172645463325252ULL;
    static char rb[4096];
    static int32_t rid[64];
    int framed = 1, inrange = 1;
    for (int it = 0; it < 3000; it++) {
        size_t n = 0, want;
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        want = x % sizeof rb / 4;
        while (n < want) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            if (it % 2) {
                rb[n++] = (char)(x & 0xff);
            } else { /* a valid codepoint, UTF-8 encoded */
                uint32_t cp = (uint32_t)(x % 0x110000);
                if (cp >= 0xD800 && cp <= 0xDFFF) cp = ' ';
                if (cp < 0x80) rb[n++] = (char)cp;
                else if (cp < 0x800) { rb[n++] = (char)(0xC0 | (cp >> 6)); rb[n++] = (char)(0x80 | (cp & 63)); }
                else if (cp < 0x10000) { rb[n++] = (char)(0xE0 | (cp >> 12)); rb[n++] = (char)(0x80 | ((cp >> 6) & 63)); rb[n++] = (char)(0x80 | (cp & 63)); }
                else { rb[n++] = (char)(0xF0 | (cp >> 18)); rb[n++] = (char)(0x80 | ((cp >> 12) & 63)); rb[n++] = (char)(0x80 | ((cp >> 6) & 63)); rb[n++] = (char)(0x80 | (cp & 63)); }
            }
        }
        mmp_wordpiece *wp = it % 3 ? real : tiny;
        int k = mmp_wp_encode(wp, rb, n, 64, MMP_UTF8_REPLACE, rid, err, sizeof err);
        if (k < 2 || rid[0] != mmp_wp_cls_id(wp) || rid[k - 1] != mmp_wp_sep_id(wp)) framed = 0;
        for (int i = 0; i < k; i++) if (rid[i] < 0 || rid[i] >= mmp_wp_vocab_size(wp)) inrange = 0;
        if (it % 2 == 0) CHECK(mmp_wp_encode(wp, rb, n, 64, MMP_UTF8_ERROR, rid, err, sizeof err) >= 2);
    }
    CHECK(framed && inrange);

    /* a vocab without [UNK] is refused; a bad path names the file */
    CHECK(mmp_wp_load_mem("a\nb\n", 4, NULL, err, sizeof err) == NULL);
    CHECK(mmp_wp_load("/nonexistent/vocab.txt", NULL, err, sizeof err) == NULL && strstr(err, "/nonexistent/vocab.txt"));
    mmp_wp_free(real);
    mmp_wp_free(tiny);
    TEST_END();
}
