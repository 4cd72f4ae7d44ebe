/* fuse/check.c: see check.h. */
#include "fuse/check.h"

#include <string.h>

int mmp_fuse_field_dim(const mmp_header *h, const char *name, const char *file, char *msg, size_t msglen) {
    const mmp_schema_field *f = mmp_header_field(h, name);
    if (!f) {
        char list[512] = "";
        for (int i = 0; i < h->nfields; i++) {
            strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
            strncat(list, h->fields[i].name, sizeof list - strlen(list) - 1);
        }
        return mmp_errf(msg, msglen, "%s: no field '%s' in the stream (fields: %s)", file, name, list[0] ? list : "none");
    }
    if (f->ndim != 1 || f->shape[0] <= 0) return mmp_errf(msg, msglen, "%s: field '%s' is not a fixed-size vector", file, name);
    if (f->dtype != MMP_F32 && f->dtype != MMP_F16 && f->dtype != MMP_BF16)
        return mmp_errf(msg, msglen, "%s: field '%s' is %s, not a float vector", file, name, mmp_dtype_name(f->dtype));
    return (int)f->shape[0];
}

const char *mmp_fuse_side_provenance(const mmp_header *h, const char *field) {
    const char *tf = mmp_meta_get(&h->meta, "text.field");
    if (tf && strcmp(tf, field) == 0 && mmp_meta_get(&h->meta, "text_provenance"))
        return mmp_meta_get(&h->meta, "text_provenance");
    const char *p = mmp_meta_get(&h->meta, "provenance");
    return p ? p : "unknown";
}

int mmp_check_same_classes(const mmp_header *a, const mmp_header *b, const char *na, const char *nb, char *msg,
                           size_t msglen) {
    if (!a->nclasses || !b->nclasses) return 0;
    int same = a->nclasses == b->nclasses;
    for (int i = 0; same && i < a->nclasses; i++) same = strcmp(a->classes[i], b->classes[i]) == 0;
    return same ? 0 : mmp_errf(msg, msglen, "%s and %s have different class lists", na, nb);
}

int mmp_check_fuse_provenance(const char *want, const char *have, int allow_mixed, const char *what, const char *field,
                              const char *ckpt, char *msg, size_t msglen) {
    if (!want || !strcmp(want, have)) return 0;
    if (!allow_mixed)
        return mmp_errf(msg, msglen, "provenance mismatch: %s (%s) has \"%s\" but %s was trained on \"%s\" (--allow-mixed to proceed anyway)",
                        what, field, have, ckpt, want);
    mmp_errf(msg, msglen, "provenance mismatch: %s (%s) has \"%s\" but %s was trained on \"%s\"", what, field, have, ckpt, want);
    return 1;
}
