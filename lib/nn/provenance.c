/* nn/provenance.c: see provenance.h. */
#include "nn/provenance.h"

#include <stdlib.h>
#include <string.h>

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

void mmp_provenance_check(const mmp_header *a, const char *b_prov, int allow_mixed,
                          const char *what_a, const char *what_b) {
    const char *pa = a ? mmp_meta_get(&a->meta, "provenance") : NULL;
    if (!pa && !b_prov) return;
    if (pa && b_prov && !strcmp(pa, b_prov)) return;
    const char *fmt = "provenance mismatch: %s has \"%s\" but %s has \"%s\"%s";
    if (allow_mixed) {
        mmp_warn(fmt, what_a, pa ? pa : "(none)", what_b, b_prov ? b_prov : "(none)", " (--allow-mixed)");
        return;
    }
    mmp_die(fmt, what_a, pa ? pa : "(none)", what_b, b_prov ? b_prov : "(none)",
            " (embedded with a different model, layer, input size or normalization; "
            "--allow-mixed to proceed anyway)");
}
