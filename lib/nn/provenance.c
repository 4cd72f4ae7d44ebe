/* nn/provenance.c: see provenance.h. */
#include "nn/provenance.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nn/nn.h"

char *mmp_provenance_floats(const float v[3]) {
    return mmp_xasprintf("%g,%g,%g", (double)v[0], (double)v[1], (double)v[2]);
}

char *mmp_provenance_format(const char *arch, const char *layer, const char *size,
                            const char *weights_sha256, const float mean[3], const float std[3]) {
    char *m = mmp_provenance_floats(mean), *s = mmp_provenance_floats(std);
    char *p = mmp_xasprintf("%s:%s:size=%s:sha256=%s:mean=%s:std=%s", arch, layer, size, weights_sha256, m, s);
    free(m);
    free(s);
    return p;
}

int mmp_check_provenance(const mmp_header *a, const char *b_prov, int allow_mixed, const char *what_a,
                         const char *what_b, char *msg, size_t msglen) {
    const char *pa = a ? mmp_meta_get(&a->meta, "provenance") : NULL;
    if (!pa && !b_prov) return 0;
    if (pa && b_prov && !strcmp(pa, b_prov)) return 0;
    const char *fmt = "provenance mismatch: %s has \"%s\" but %s has \"%s\"%s";
    if (allow_mixed) {
        mmp_errf(msg, msglen, fmt, what_a, pa ? pa : "(none)", what_b, b_prov ? b_prov : "(none)", " (--allow-mixed)");
        return 1;
    }
    return mmp_errf(msg, msglen, fmt, what_a, pa ? pa : "(none)", what_b, b_prov ? b_prov : "(none)",
                    " (embedded with a different model, layer, input size or normalization; "
                    "--allow-mixed to proceed anyway)");
}

void mmp_provenance_check(const mmp_header *a, const char *b_prov, int allow_mixed,
                          const char *what_a, const char *what_b) {
    char msg[2048];
    mmp_cli_check(mmp_check_provenance(a, b_prov, allow_mixed, what_a, what_b, msg, sizeof msg), msg);
}

int mmp_check_normalization(const mmp_header *h, float mean[3], float std[3], int allow_mixed, const char *what,
                            const char *model, char *msg, size_t msglen) {
    float sm[3], ss[3];
    const char *ms = mmp_meta_get(&h->meta, "image.mean"), *sd = mmp_meta_get(&h->meta, "image.std");
    int known = ms && sd && !mmp_nn_parse3(ms, sm) && !mmp_nn_parse3(sd, ss);
    int same = known;
    for (int k = 0; known && k < 3; k++)
        same &= fabsf(sm[k] - mean[k]) <= 1e-5f * (1 + fabsf(mean[k])) && fabsf(ss[k] - std[k]) <= 1e-5f * (1 + fabsf(std[k]));
    if (same) return 0;
    char *a = mmp_provenance_floats(mean), *b = mmp_provenance_floats(std);
    int rc = -1;
    if (!allow_mixed)
        mmp_errf(msg, msglen, "%s: images normalized with mean %s std %s but %s expects mean %s std %s "
                 "(--allow-mixed to embed anyway)", what, ms ? ms : "(unknown)", sd ? sd : "(unknown)", model, a, b);
    else {
        mmp_errf(msg, msglen, "%s: images normalized with mean %s std %s, %s expects mean %s std %s (--allow-mixed)",
                 what, ms ? ms : "(unknown)", sd ? sd : "(unknown)", model, a, b);
        if (known) memcpy(mean, sm, sizeof sm), memcpy(std, ss, sizeof ss);
        rc = 1;
    }
    free(a);
    free(b);
    return rc;
}
