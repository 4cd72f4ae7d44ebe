/* libFuzzer target: the mmp stream reader on arbitrary bytes.
 * Build: make fuzz; run: build-fuzz/fuzz/fuzz_stream tests/fuzz/corpus/stream
 * The reader must return an error (never crash, hang or leak) on any input,
 * and whatever records it returns must satisfy the schema invariants.
 * An input starting with 'M' is the decompressed content (msgpack): it is
 * zstd-compressed here first, so the fuzzer reaches the msgpack parser and
 * the record/schema checks instead of stopping at zstd's frame checks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "mmp.h"

static int run(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 0 && data[0] == 'M') {
        size_t cap = ZSTD_compressBound(size);
        uint8_t *z = malloc(cap);
        ZSTD_CCtx *cc = ZSTD_createCCtx();
        ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1);
        ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
        size_t n = ZSTD_compress2(cc, z, cap, data + 1, size - 1);
        ZSTD_freeCCtx(cc);
        if (ZSTD_isError(n)) abort();
        run(z, n);
        free(z);
        return 0;
    }
    return run(data, size);
}

static int run(const uint8_t *data, size_t size) {
    char err[1024];
    mmp_reader *r = mmp_reader_open_mem(data, size, "fuzz", err, sizeof err);
    if (!r) {
        if (!err[0] || strchr(err, '\n')) abort(); /* one non-empty line */
        return 0;
    }
    const mmp_header *h = mmp_reader_header(r);
    mmp_record rec;
    mmp_record_init(&rec);
    int k;
    while ((k = mmp_reader_next(r, &rec)) == 1) {
        if (rec.nfields != h->nfields) abort();
        for (int i = 0; i < rec.nfields; i++) {
            const mmp_tensor *t = &rec.fields[i].t;
            int64_t numel = mmp_numel(t->ndim, t->shape);
            if (numel < 0 || t->nbytes != (size_t)numel * mmp_dtype_size(t->dtype)) abort();
            if (t->nbytes) {
                volatile uint8_t x = ((const uint8_t *)t->data)[t->nbytes - 1];
                (void)x;
            }
        }
    }
    if (k < 0) {
        const char *e = mmp_reader_error(r);
        if (!e[0] || strchr(e, '\n')) abort();
        if (mmp_reader_next(r, &rec) != -1) abort(); /* errors are sticky */
    }
    mmp_record_clear(&rec);
    mmp_reader_close(r);
    return 0;
}
