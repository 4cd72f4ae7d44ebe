/* GPT-2's byte-level BPE tokenizer (text/bpe.h mmp_bpe_load_gpt2) vs
 * transformers 4.30.2 GPT2Tokenizer on a committed vocabulary and corpus
 * (tests/fixtures/gen_gpt2_tok.py: a byte-level BPE trained with tokenizers'
 * ByteLevelBPETokenizer; unicode, digits, contractions in both cases,
 * whitespace runs, emoji, "<|endoftext|>" inside text): the ids, the decoded
 * text (decode(ids, clean_up_tokenization_spaces=False), invalid UTF-8
 * replaced as Python's errors="replace"), decode(encode(text)) == text; bad
 * files: one line naming the file. */
#include <string.h>

#include "json.h"
#include "mmp.h"
#include "testlib.h"
#include "text/bpe.h"
#include "text/wordpiece.h"
#include "tx/gpt2.h"

int main(void) {
    char err[512];
    const char *dir = t_root_path("tests/fixtures/gpt2_tok");
    mmp_bpe *b = mmp_bpe_load_gpt2(dir, err, sizeof err);
    CHECKF(b, "%s", err);
    if (!b) TEST_END();
    CHECK(mmp_bpe_is_gpt2(b));
    CHECK(mmp_bpe_eot_id(b) == mmp_bpe_id(b, "<|endoftext|>", 13) && mmp_bpe_eot_id(b) >= 0);
    CHECK(mmp_bpe_sot_id(b) == mmp_bpe_eot_id(b));
    char p[4200];
    snprintf(p, sizeof p, "%s/cases.jsonl", dir);
    size_t n;
    char *text = (char *)t_slurp(p, &n);
    CHECK(text);
    int ncase = 0, line = 0;
    for (char *ln = text, *nl; ln && *ln; ln = nl ? nl + 1 : NULL) {
        nl = strchr(ln, '\n');
        line++;
        size_t len = nl ? (size_t)(nl - ln) : strlen(ln);
        json_t *j = mmp_json_parse(ln, len, line, err, sizeof err);
        CHECKF(j, "%s", err);
        if (!j) continue;
        json_t *ids = json_object_get(j, "ids"), *t = json_object_get(j, "text");
        const char *want_dec = json_string_value(json_object_get(j, "decoded"));
        int nw = (int)json_array_size(ids);
        int32_t *w = malloc(sizeof(int32_t) * (size_t)(nw + 1));
        for (int k = 0; k < nw; k++) w[k] = (int32_t)json_integer_value(json_array_get(ids, (size_t)k));
        if (t) {
            const char *s = json_string_value(t);
            size_t sl = json_string_length(t);
            int32_t *got = NULL;
            int ng = 0, cap = 0;
            CHECK(!mmp_bpe_tokenize(b, s, sl, MMP_UTF8_ERROR, &got, &ng, &cap, err, sizeof err));
            int same = ng == nw && (nw == 0 || !memcmp(got, w, sizeof(int32_t) * (size_t)nw));
            CHECKF(same, "line %d: \"%s\": %d ids, transformers %d (first difference at %d)", line, s, ng, nw,
                   ({ int k = 0; while (k < ng && k < nw && got[k] == w[k]) k++; k; }));
            size_t dl;
            char *d = mmp_bpe_decode(b, got, ng, &dl, err, sizeof err);
            CHECKF(d && dl == sl && !memcmp(d, s, sl), "line %d: decode(encode(text)) != text", line);
            free(d);
            free(got);
        }
        size_t dl;
        char *d = mmp_bpe_decode(b, w, nw, &dl, err, sizeof err);
        CHECKF(d && !strcmp(d, want_dec), "line %d: decoded \"%s\", transformers \"%s\"", line, d ? d : err, want_dec);
        free(d);
        free(w);
        json_decref(j);
        ncase++;
    }
    CHECK(ncase >= 20);
    printf("%d cases\n", ncase);
    /* a decoder whose vocabulary is smaller than the tokenizer's: one line naming the tokenizer */
    mmp_gpt2_config c;
    mmp_gpt2_config_default(&c);
    c.vocab = 500, c.ctx = 16, c.C = 16, c.NH = 2, c.layers = 1, c.inter = 32, c.bos_id = c.eos_id = 0;
    mmp_gpt2 *m = mmp_gpt2_init(&c, 1, err, sizeof err);
    CHECK(mmp_bpe_id_bound(b) == 579);
    CHECK(mmp_gpt2_check_vocab(m, mmp_bpe_id_bound(b), dir, err, sizeof err) == -1 && strstr(err, "gpt2_tok") &&
          strstr(err, "500"));
    printf("  %s\n", err);
    CHECK(mmp_gpt2_check_vocab(m, 500, dir, err, sizeof err) == 0);
    mmp_gpt2_free(m);
    /* an id outside the vocabulary: an error */
    int32_t bad[2] = {5, 100000};
    CHECK(!mmp_bpe_decode(b, bad, 2, NULL, err, sizeof err) && strstr(err, "100000"));
    mmp_bpe_free(b);
    /* bad files */
    const char *tmp = getenv("MMP_TMP") ? getenv("MMP_TMP") : "/tmp";
    CHECK(!t_sh("rm -rf %s/tokbad && mkdir -p %s/tokbad && cp %s/vocab.json %s/tokbad/", tmp, tmp, dir, tmp));
    snprintf(p, sizeof p, "%s/tokbad", tmp);
    CHECK(!mmp_bpe_load_gpt2(p, err, sizeof err) && strstr(err, "tokbad") && strstr(err, "merges.txt"));
    CHECK(!t_sh("printf '#version: 0.2\\nzz qq\\n' > %s/tokbad/merges.txt", tmp));
    CHECK(!mmp_bpe_load_gpt2(p, err, sizeof err) && strstr(err, "merges.txt") && strstr(err, "line 2"));
    printf("  %s\n", err);
    CHECK(!t_sh("printf '{\"a\": \"x\"}' > %s/tokbad/vocab.json && cp %s/merges.txt %s/tokbad/", tmp, dir, tmp));
    CHECK(!mmp_bpe_load_gpt2(p, err, sizeof err) && strstr(err, "vocab.json"));
    printf("  %s\n", err);
    free(text);
    TEST_END();
}
