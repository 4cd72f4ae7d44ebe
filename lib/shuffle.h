/* Seeded shuffling and hashed splitting of record streams (mmp-shuffle,
 * mmp-split): they work on any stream's records, whatever the tensors. */
#ifndef MMP_SHUFFLE_H
#define MMP_SHUFFLE_H

#include "mmp.h"
#include "rng.h"

/* Shuffle buffer (as tf.data / WebDataset shuffle): holds up to cap
 * records; once full, every new record makes a uniformly chosen held
 * record leave. cap = 0: unbounded (exact full shuffle on drain). */
typedef struct {
    mmp_record *buf;
    size_t n, cap, alloc;
    mmp_rng rng;
} mmp_shufbuf;

void mmp_shufbuf_init(mmp_shufbuf *s, size_t cap, uint64_t seed);
/* Moves rec in. When the buffer was full, moves a random held record into
 * out and returns 1; else 0. */
int mmp_shufbuf_push(mmp_shufbuf *s, mmp_record *rec, mmp_record *out);
/* At the end: moves a uniformly chosen remaining record into out (1), or
 * returns 0 when empty. Draining an unbounded buffer yields a uniform
 * random permutation (Fisher-Yates). */
int mmp_shufbuf_pop(mmp_shufbuf *s, mmp_record *out);
void mmp_shufbuf_free(mmp_shufbuf *s);

/* Split coordinate of an id: mmp_rng_unit53(mmp_hash64(id, len, seed)), i.e.
 * (mmp_hash64(id, len, seed) >> 11) * 2^-53 in
 * [0, 1); a record goes to the first output when it is < ratio. Depends
 * only on (id, seed): stable across runs, machines and stream orders. */
double mmp_split_u(const char *id, uint64_t seed);

#endif
