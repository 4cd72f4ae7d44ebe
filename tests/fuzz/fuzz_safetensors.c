/* libFuzzer target: the safetensors header parser (mmp_st_parse) on
 * arbitrary bytes. Build: make fuzz; run:
 * build-fuzz/fuzz/fuzz_safetensors tests/fuzz/corpus/safetensors
 * Accepted files must satisfy what formats/safetensors.md promises:
 * every tensor inside the buffer, sizes matching shapes, no overlap. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mmp_safetensors st;
    char err[1024];
    if (mmp_st_parse(&st, data, size, err, sizeof err)) {
        if (!err[0] || strchr(err, '\n')) abort();
        mmp_st_close(&st);
        return 0;
    }
    uint64_t covered = 0;
    for (int i = 0; i < st.n; i++) {
        const mmp_tensor *t = &st.entries[i].t;
        const uint8_t *p = t->data;
        int64_t numel = mmp_numel(t->ndim, t->shape);
        if (numel < 0 || t->nbytes != (size_t)numel * mmp_dtype_size(t->dtype)) abort();
        if (t->nbytes && (p < data || p + t->nbytes > data + size)) abort();
        if (i > 0) {
            const mmp_tensor *q = &st.entries[i - 1].t;
            if ((const uint8_t *)q->data + q->nbytes != p) abort(); /* ordered, no gap/overlap */
        }
        if (mmp_st_get(&st, st.entries[i].name) == NULL) abort();
        covered += t->nbytes;
    }
    if (st.n > 0 && st.entries[st.n - 1].t.nbytes &&
        (const uint8_t *)st.entries[st.n - 1].t.data + st.entries[st.n - 1].t.nbytes != data + size)
        abort();
    (void)covered;
    mmp_st_close(&st);
    return 0;
}
