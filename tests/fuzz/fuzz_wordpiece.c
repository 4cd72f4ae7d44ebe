/* libFuzzer target: the BERT tokenizer (UTF-8 decoding, cleaning, lower-casing,
 * NFD + accent stripping, CJK/punctuation splitting, WordPiece) on arbitrary
 * bytes, both UTF-8 policies, against a small vocabulary. Build: make fuzz. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "text/wordpiece.h"

static const char vocab[] =
    "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\nc\nthe\ncat\n##s\n##ing\nplay\n,\n.\n!\n\xe4\xb8\xad\n\xe6\x96\x87\ne\n##e\nu\n##u\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static mmp_wordpiece *wp;
    char err[512];
    if (!wp) {
        mmp_wp_opts o;
        mmp_wp_opts_default(&o);
        wp = mmp_wp_load_mem(vocab, sizeof vocab - 1, &o, err, sizeof err);
        if (!wp) abort();
    }
    for (int policy = 0; policy < 2; policy++) {
        int32_t *ids = NULL;
        int n = 0, cap = 0;
        err[0] = 0;
        int rc = mmp_wp_tokenize(wp, (const char *)data, size, policy, &ids, &n, &cap, err, sizeof err);
        if (rc == 0) {
            for (int i = 0; i < n; i++)
                if (ids[i] < 0 || ids[i] >= mmp_wp_vocab_size(wp)) abort();
        } else if (policy == MMP_UTF8_REPLACE || !err[0]) {
            abort(); /* replace never fails; an error always says why */
        }
        free(ids);
        int32_t out[16];
        int len = mmp_wp_encode(wp, (const char *)data, size, 16, policy, out, err, sizeof err);
        if (len > 16 || (len >= 0 && (len < 2 || out[0] != mmp_wp_cls_id(wp) || out[len - 1] != mmp_wp_sep_id(wp)))) abort();
    }
    return 0;
}
