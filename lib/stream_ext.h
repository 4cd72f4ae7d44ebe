/* Additions to the stream API of lib/mmp.h (see formats/stream.md). */
#ifndef MMP_STREAM_EXT_H
#define MMP_STREAM_EXT_H

#include <stdio.h>

#include "mmp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Size limits enforced by reader and writer: one tensor's data, and one
 * msgpack object (header, record or trailer) after decompression. */
#define MMP_STREAM_MAX_TENSOR_BYTES ((uint64_t)1 << 30)
#define MMP_STREAM_MAX_OBJECT_BYTES (((size_t)1 << 31) - 1)

/* Ends the current zstd block now so that every record written so far can be
 * decoded by a reader (for a producer about to pause; the writer already
 * flushes on its own, see formats/stream.md "Flushing"). */
void mmp_writer_flush(mmp_writer *w);

/* JSON lines (as printed by mmp-cat). The header line:
 *   {"mmpipe":1,"schema":{...},"classes":[...],"meta":{...}}
 * A record line: {"id":..,"label":..,"text":..,"tensors":{"x":{"dtype":"f32",
 *   "shape":[..],"min":..,"max":..,"mean":..}}}; full = 1 adds "data":[...]
 *   (all values, flat, row-major). Non-finite numbers print as null. */
void mmp_header_print_json(FILE *fp, const mmp_header *h);
void mmp_record_print_json(FILE *fp, const mmp_record *r, const mmp_header *h, int full);

#ifdef __cplusplus
}
#endif
#endif
