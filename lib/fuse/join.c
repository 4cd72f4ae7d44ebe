/* Bounded-memory join of two record streams by id; see join.h. */
#include "fuse/join.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    mmp_record *rec; /* window + 1 slots */
    uint64_t *hash;
    uint64_t *seq;   /* arrival order, for "oldest" */
    uint64_t *recno; /* record number in its stream (1-based) */
    int *used;
    int n, cap;
} side_buf;

typedef struct {
    uint64_t *k; /* 0 = empty (hash 0 is remapped to 1) */
    size_t cap, n;
} hset;

struct mmp_joiner {
    mmp_join_src src[2];
    int ended[2];
    uint64_t nread[2];
    side_buf buf[2];
    hset paired;
    int window, skip, turn, done;
    uint64_t skipped, seq;
    char err[1024];
};

static uint64_t id_hash(const char *id) {
    uint64_t h = mmp_hash64(id, strlen(id), 0x6d6d70667573ULL);
    return h ? h : 1;
}

static int hset_has(const hset *s, uint64_t k) {
    if (!s->cap) return 0;
    for (size_t i = k & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (s->k[i] == 0) return 0;
        if (s->k[i] == k) return 1;
    }
}

static void hset_add(hset *s, uint64_t k) {
    if (2 * (s->n + 1) > s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 1024;
        uint64_t *nk = mmp_xcalloc(nc, sizeof *nk);
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->k[i]) continue;
            size_t j = s->k[i] & (nc - 1);
            while (nk[j]) j = (j + 1) & (nc - 1);
            nk[j] = s->k[i];
        }
        free(s->k);
        s->k = nk;
        s->cap = nc;
    }
    size_t j = k & (s->cap - 1);
    while (s->k[j] && s->k[j] != k) j = (j + 1) & (s->cap - 1);
    if (!s->k[j]) s->n++;
    s->k[j] = k;
}

mmp_joiner *mmp_join_new(mmp_join_src a, mmp_join_src b, int window, int skip_missing) {
    mmp_joiner *j = mmp_xcalloc(1, sizeof *j);
    j->src[0] = a;
    j->src[1] = b;
    j->window = window < 1 ? 1 : window;
    j->skip = skip_missing;
    for (int s = 0; s < 2; s++) {
        side_buf *sb = &j->buf[s];
        sb->cap = j->window + 1;
        sb->rec = mmp_xcalloc((size_t)sb->cap, sizeof *sb->rec);
        for (int i = 0; i < sb->cap; i++) mmp_record_init(&sb->rec[i]);
        sb->hash = mmp_xcalloc((size_t)sb->cap, sizeof *sb->hash);
        sb->seq = mmp_xcalloc((size_t)sb->cap, sizeof *sb->seq);
        sb->recno = mmp_xcalloc((size_t)sb->cap, sizeof *sb->recno);
        sb->used = mmp_xcalloc((size_t)sb->cap, sizeof *sb->used);
    }
    return j;
}

void mmp_join_free(mmp_joiner *j) {
    if (!j) return;
    for (int s = 0; s < 2; s++) {
        side_buf *sb = &j->buf[s];
        for (int i = 0; i < sb->cap; i++) mmp_record_clear(&sb->rec[i]);
        free(sb->rec);
        free(sb->hash);
        free(sb->seq);
        free(sb->recno);
        free(sb->used);
    }
    free(j->paired.k);
    free(j);
}

const char *mmp_join_error(const mmp_joiner *j) { return j->err; }
uint64_t mmp_join_skipped(const mmp_joiner *j) { return j->skipped; }
uint64_t mmp_join_read(const mmp_joiner *j, int side) { return j->nread[side & 1]; }

static int buf_find(const side_buf *sb, uint64_t h, const char *id) {
    for (int i = 0; i < sb->cap; i++)
        if (sb->used[i] && sb->hash[i] == h && strcmp(sb->rec[i].id, id) == 0) return i;
    return -1;
}

static int buf_oldest(const side_buf *sb) {
    int best = -1;
    for (int i = 0; i < sb->cap; i++)
        if (sb->used[i] && (best < 0 || sb->seq[i] < sb->seq[best])) best = i;
    return best;
}

static void buf_drop(side_buf *sb, int i) {
    mmp_record_clear(&sb->rec[i]);
    sb->used[i] = 0;
    sb->n--;
}

int mmp_join_next(mmp_joiner *j, mmp_record *ra, mmp_record *rb) {
    if (j->done) return j->done > 0 ? 0 : -1;
    mmp_record r;
    mmp_record_init(&r);
    for (;;) {
        if (j->ended[0] && j->ended[1]) {
            /* leftovers had no partner */
            for (int s = 0; s < 2; s++) {
                side_buf *sb = &j->buf[s];
                while (sb->n > 0) {
                    int o = buf_oldest(sb);
                    if (!j->skip) {
                        snprintf(j->err, sizeof j->err, "%s: record %llu: id \"%s\" is not in %s (--missing skip to skip such records)",
                                 j->src[s].name, (unsigned long long)sb->recno[o], sb->rec[o].id, j->src[1 - s].name);
                        j->done = -1;
                        return -1;
                    }
                    j->skipped++;
                    buf_drop(sb, o);
                }
            }
            j->done = 1;
            return 0;
        }
        int s = j->turn;
        if (j->ended[s]) s = 1 - s;
        j->turn = 1 - s;
        char e2[512];
        e2[0] = 0;
        int rc = j->src[s].next(j->src[s].ctx, &r, e2, sizeof e2);
        if (rc < 0) {
            snprintf(j->err, sizeof j->err, "%s", e2);
            j->done = -1;
            mmp_record_clear(&r);
            return -1;
        }
        if (rc == 0) {
            j->ended[s] = 1;
            continue;
        }
        uint64_t recno = ++j->nread[s];
        if (!r.id || !r.id[0]) {
            snprintf(j->err, sizeof j->err, "%s: record %llu: no id (needed to join by id; --fields fuses two fields of one stream)",
                     j->src[s].name, (unsigned long long)recno);
            j->done = -1;
            mmp_record_clear(&r);
            return -1;
        }
        uint64_t h = id_hash(r.id);
        if (buf_find(&j->buf[s], h, r.id) >= 0 || hset_has(&j->paired, h)) {
            snprintf(j->err, sizeof j->err, "%s: record %llu: duplicate id \"%s\"", j->src[s].name,
                     (unsigned long long)recno, r.id);
            j->done = -1;
            mmp_record_clear(&r);
            return -1;
        }
        side_buf *other = &j->buf[1 - s];
        int k = buf_find(other, h, r.id);
        if (k >= 0) {
            hset_add(&j->paired, h);
            if (s == 0) {
                mmp_record_move(ra, &r);
                mmp_record_move(rb, &other->rec[k]);
            } else {
                mmp_record_move(ra, &other->rec[k]);
                mmp_record_move(rb, &r);
            }
            buf_drop(other, k);
            mmp_record_clear(&r);
            return 1;
        }
        side_buf *sb = &j->buf[s];
        if (sb->n >= j->window) {
            int o = buf_oldest(sb);
            if (!j->skip) {
                snprintf(j->err, sizeof j->err,
                         "%s: record %llu: more than %d unmatched records buffered (window overflow): id \"%s\" (record %llu) has no partner in %s within the window; the streams are not in the same order or records are missing (raise --window, or --missing skip)",
                         j->src[s].name, (unsigned long long)recno, j->window, sb->rec[o].id,
                         (unsigned long long)sb->recno[o], j->src[1 - s].name);
                j->done = -1;
                mmp_record_clear(&r);
                return -1;
            }
            j->skipped++;
            buf_drop(sb, o);
        }
        int slot = 0;
        while (sb->used[slot]) slot++;
        mmp_record_move(&sb->rec[slot], &r);
        sb->used[slot] = 1;
        sb->hash[slot] = h;
        sb->seq[slot] = ++j->seq;
        sb->recno[slot] = recno;
        sb->n++;
    }
}
