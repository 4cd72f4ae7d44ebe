/* Reading reference tensors of safetensors fixtures in C tests. */
#ifndef MMP_ST_TESTLIB_H
#define MMP_ST_TESTLIB_H
#include <stdio.h>
#include <stdlib.h>

#include "mmp.h"
#include "testlib.h"

/* Tensor name of r as a new f32 array (numel in *n when n): NULL when r has
 * no such tensor and !required; a missing required tensor or a read error
 * ends the test (exit 1). */
static inline float *t_st_f32(const mmp_safetensors *r, const char *name, size_t *n, int required) {
    const mmp_tensor *t = mmp_st_get(r, name);
    if (!t) {
        if (!required) return NULL;
        fprintf(stderr, "%s: no tensor %s in the reference\n", r->path ? r->path : "?", name);
        exit(1);
    }
    size_t k = (size_t)mmp_numel(t->ndim, t->shape);
    float *out = malloc(sizeof(float) * (k ? k : 1));
    char err[256];
    if (!out || mmp_st_read_f32(r, name, t->ndim, t->shape, out, err, sizeof err)) {
        fprintf(stderr, "%s\n", out ? err : "out of memory");
        exit(1);
    }
    if (n) *n = k;
    return out;
}

/* Tensor name of st (its data as stored), or the test ends (exit 1). */
static inline const mmp_tensor *t_st_get(const mmp_safetensors *st, const char *name) {
    const mmp_tensor *t = mmp_st_get(st, name);
    if (!t) {
        fprintf(stderr, "fixture tensor %s missing\n", name);
        exit(1);
    }
    return t;
}

/* The integer of metadata key k (0, and a failed check, when absent). */
static inline int t_st_meta_int(const mmp_safetensors *st, const char *k) {
    const char *v = mmp_meta_get(&st->meta, k);
    CHECKF(v != NULL, "fixture meta %s missing", k);
    return v ? atoi(v) : 0;
}
#endif
