/* Shuffle buffer and hashed split (see shuffle.h). */
#include "shuffle.h"

#include <stdlib.h>
#include <string.h>

void mmp_shufbuf_init(mmp_shufbuf *s, size_t cap, uint64_t seed) {
    memset(s, 0, sizeof *s);
    s->cap = cap;
    mmp_rng_seed(&s->rng, mmp_rng_mix(seed ^ 0x53485546464C45ULL)); /* "SHUFFLE" */
}

int mmp_shufbuf_push(mmp_shufbuf *s, mmp_record *rec, mmp_record *out) {
    if (s->cap && s->n == s->cap) {
        size_t k = (size_t)mmp_rng_int(&s->rng, 0, (int64_t)s->n);
        mmp_record_move(out, &s->buf[k]);
        mmp_record_move(&s->buf[k], rec);
        return 1;
    }
    if (s->n == s->alloc) {
        size_t na = s->alloc ? s->alloc * 2 : 1024;
        if (s->cap && na > s->cap) na = s->cap;
        s->buf = mmp_xrealloc(s->buf, na * sizeof(mmp_record));
        for (size_t i = s->alloc; i < na; i++) mmp_record_init(&s->buf[i]);
        s->alloc = na;
    }
    mmp_record_move(&s->buf[s->n++], rec);
    return 0;
}

int mmp_shufbuf_pop(mmp_shufbuf *s, mmp_record *out) {
    if (!s->n) return 0;
    size_t k = (size_t)mmp_rng_int(&s->rng, 0, (int64_t)s->n);
    mmp_record_move(out, &s->buf[k]);
    if (k != s->n - 1) mmp_record_move(&s->buf[k], &s->buf[s->n - 1]);
    s->n--;
    return 1;
}

void mmp_shufbuf_free(mmp_shufbuf *s) {
    for (size_t i = 0; i < s->alloc; i++) mmp_record_clear(&s->buf[i]);
    free(s->buf);
    memset(s, 0, sizeof *s);
}

double mmp_split_u(const char *id, uint64_t seed) {
    return mmp_rng_unit53(mmp_hash64(id, strlen(id), seed));
}
