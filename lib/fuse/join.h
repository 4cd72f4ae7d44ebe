/* Joining two record streams by record id with bounded memory.
 *
 * Records are read alternately from A and B (one from each, deterministic order,
 * independent of timing). A record whose id was already seen on the other side and
 * is still buffered is paired with it at once; otherwise it waits in its side's
 * buffer. When both streams list their ids in the same order (any order), at most
 * a few records wait; a side holding more than `window` unmatched records means the
 * orders differ too much or records are missing:
 *   missing = error: stop with "more than N unmatched records from A buffered ..."
 *   missing = skip:  the oldest waiting record is dropped as missing (counted).
 * At the end, records still waiting had no partner: error, or counted skips.
 * Duplicate ids (within a side, or an id already paired) are always an error;
 * paired ids are remembered as 64-bit hashes (8 bytes a record).
 * Pairs come out in the order of the later record of each pair. */
#ifndef MMP_FUSE_JOIN_H
#define MMP_FUSE_JOIN_H
#include <stdint.h>

#include "mmp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    /* 1 = a record in r, 0 = end, -1 = error (message written to err) */
    int (*next)(void *ctx, mmp_record *r, char *err, size_t errlen);
    void *ctx;
    const char *name; /* for messages */
} mmp_join_src;

typedef struct mmp_joiner mmp_joiner;

mmp_joiner *mmp_join_new(mmp_join_src a, mmp_join_src b, int window, int skip_missing);
/* 1 = a pair (ra from A, rb from B, equal ids), 0 = both ended, -1 = error. */
int mmp_join_next(mmp_joiner *j, mmp_record *ra, mmp_record *rb);
const char *mmp_join_error(const mmp_joiner *j);
uint64_t mmp_join_skipped(const mmp_joiner *j);
/* records read so far from side 0 (A) or 1 (B) */
uint64_t mmp_join_read(const mmp_joiner *j, int side);
void mmp_join_free(mmp_joiner *j);

#ifdef __cplusplus
}
#endif
#endif
