/* libFuzzer target: CLIP's BPE tokenizer (UTF-8 decoding, ftfy's fixes with the
 * mojibake repair, html.unescape, whitespace and case, the pre-tokenizer, BPE)
 * on arbitrary bytes, both UTF-8 policies, with open_clip's vocabulary
 * (tests/fixtures/clip_tok/, the fuzzer runs from the repository root, or
 * $MMP_ROOT). Build: make fuzz. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "text/bpe.h"
#include "text/wordpiece.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static mmp_bpe *b;
    char err[512];
    if (!b) {
        const char *root = getenv("MMP_ROOT");
        char path[4096];
        snprintf(path, sizeof path, "%s%stests/fixtures/clip_tok/bpe_simple_vocab_16e6.txt.gz", root ? root : "",
                 root ? "/" : "");
        b = mmp_bpe_load_clip(path, err, sizeof err);
        if (!b) {
            fprintf(stderr, "%s\n", err);
            abort();
        }
    }
    int nv = mmp_bpe_vocab_size(b);
    for (int policy = 0; policy < 2; policy++) {
        int32_t *ids = NULL;
        int n = 0, cap = 0;
        err[0] = 0;
        int rc = mmp_bpe_tokenize(b, (const char *)data, size, policy, &ids, &n, &cap, err, sizeof err);
        if (rc == 0) {
            for (int i = 0; i < n; i++)
                if (ids[i] < 0 || ids[i] >= nv) abort();
        } else if (policy == MMP_UTF8_REPLACE || !err[0]) {
            abort(); /* replace never fails; an error always says why */
        }
        free(ids);
        int32_t out[77];
        int len = mmp_bpe_encode(b, (const char *)data, size, 77, policy, out, err, sizeof err);
        if (len > 77 || (rc == 0 && len < 2) || (len >= 2 && (out[0] != mmp_bpe_sot_id(b) || out[len - 1] != mmp_bpe_eot_id(b))))
            abort();
        for (int i = len; i >= 0 && i < 77; i++)
            if (out[i] != 0) abort();
        size_t cn = 0;
        char *clean = mmp_clip_clean((const char *)data, size, policy, &cn, err, sizeof err);
        if (clean) {
            /* the cleaned text is valid UTF-8 without NUL, stripped */
            uint32_t *cps = malloc((cn + 1) * sizeof *cps);
            size_t bad;
            if (mmp_utf8_decode(clean, cn, 0, cps, &bad) < 0 || memchr(clean, 0, cn)) abort();
            if (cn && (clean[0] == ' ' || clean[cn - 1] == ' ')) abort();
            free(cps);
            free(clean);
        } else if (policy == MMP_UTF8_REPLACE) {
            abort();
        }
    }
    return 0;
}
