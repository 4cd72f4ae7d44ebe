/* Join by id with a bounded window (lib/fuse/join.c) on in-memory streams. */
#include <string.h>

#include "fuse/join.h"
#include "mmp.h"
#include "testlib.h"

typedef struct {
    const char *const *ids;
    int n, pos;
} memsrc;

static int mem_next(void *ctx, mmp_record *r, char *err, size_t errlen) {
    memsrc *m = ctx;
    if (m->pos >= m->n) return 0;
    mmp_record_clear(r);
    const char *id = m->ids[m->pos++];
    if (strcmp(id, "!ERR") == 0) {
        snprintf(err, errlen, "src: truncated");
        return -1;
    }
    if (*id) mmp_record_set_id(r, id);
    r->label = m->pos;
    return 1;
}

/* runs a join; returns pairs (or -1 on error), the error in err */
static int run(const char *const *a, int na, const char *const *b, int nb, int window, int skip, uint64_t *skipped,
               char *order, char *err) {
    memsrc ma = {a, na, 0}, mb = {b, nb, 0};
    mmp_join_src sa = {mem_next, &ma, "A.mmp"}, sb = {mem_next, &mb, "B.mmp"};
    mmp_joiner *j = mmp_join_new(sa, sb, window, skip);
    mmp_record ra, rb;
    mmp_record_init(&ra);
    mmp_record_init(&rb);
    int n = 0, rc;
    if (order) order[0] = 0;
    while ((rc = mmp_join_next(j, &ra, &rb)) == 1) {
        if (strcmp(ra.id, rb.id) != 0) return -2;
        if (order) strcat(strcat(order, ra.id), " ");
        n++;
    }
    if (rc < 0) {
        strcpy(err, mmp_join_error(j));
        n = -1;
    }
    if (skipped) *skipped = mmp_join_skipped(j);
    mmp_record_clear(&ra);
    mmp_record_clear(&rb);
    mmp_join_free(j);
    return n;
}

int main(void) {
    char err[1024], order[4096];
    uint64_t sk;
    const char *A[] = {"a", "b", "c", "d", "e", "f"};
    const char *B1[] = {"a", "b", "c", "d", "e", "f"};
    CHECK(run(A, 6, B1, 6, 2, 0, &sk, order, err) == 6 && sk == 0);
    CHECK(strcmp(order, "a b c d e f ") == 0);
    const char *B2[] = {"b", "a", "d", "c", "f", "e"}; /* local swaps */
    CHECK(run(A, 6, B2, 6, 2, 0, &sk, NULL, err) == 6);
    const char *B3[] = {"f", "e", "d", "c", "b", "a"}; /* reversed: needs a big window */
    CHECK(run(A, 6, B3, 6, 2, 0, &sk, NULL, err) == -1);
    CHECKF(strstr(err, "window overflow") && strstr(err, "--window"), "%s", err);
    CHECK(run(A, 6, B3, 6, 6, 0, &sk, NULL, err) == 6);
    /* deterministic: the same inputs give the same pair order */
    char o2[4096];
    run(A, 6, B3, 6, 6, 0, &sk, order, err);
    run(A, 6, B3, 6, 6, 0, &sk, o2, err);
    CHECK(strcmp(order, o2) == 0);
    /* missing in B */
    const char *B4[] = {"a", "b", "d", "e", "f"};
    CHECK(run(A, 6, B4, 5, 4, 0, &sk, NULL, err) == -1);
    CHECKF(strstr(err, "A.mmp: record 3: id \"c\" is not in B.mmp"), "%s", err);
    CHECK(run(A, 6, B4, 5, 4, 1, &sk, order, err) == 5 && sk == 1);
    CHECK(strcmp(order, "a b d e f ") == 0);
    /* missing with a small window: skipped when it falls out of the window */
    CHECK(run(A, 6, B4, 5, 1, 1, &sk, NULL, err) == 5 && sk == 1);
    /* extra in B */
    const char *B5[] = {"a", "x", "b", "c", "d", "e", "f"};
    CHECK(run(A, 6, B5, 7, 4, 0, &sk, NULL, err) == -1 && strstr(err, "\"x\" is not in A.mmp"));
    CHECK(run(A, 6, B5, 7, 4, 1, &sk, NULL, err) == 6 && sk == 1);
    /* duplicates */
    const char *A2[] = {"a", "b", "a"};
    CHECK(run(A2, 3, B1, 6, 8, 1, &sk, NULL, err) == -1 && strstr(err, "A.mmp: record 3: duplicate id \"a\""));
    const char *A3[] = {"a", "b", "b"};
    CHECK(run(A3, 3, B1, 6, 8, 1, &sk, NULL, err) == -1 && strstr(err, "duplicate id \"b\""));
    /* no id, source error */
    const char *A4[] = {"a", ""};
    CHECK(run(A4, 2, B1, 6, 8, 0, &sk, NULL, err) == -1 && strstr(err, "record 2: no id"));
    const char *A5[] = {"a", "!ERR"};
    CHECK(run(A5, 2, B1, 6, 8, 0, &sk, NULL, err) == -1 && strstr(err, "truncated"));
    /* an empty side: everything missing */
    CHECK(run(A, 6, NULL, 0, 2, 1, &sk, NULL, err) == 0 && sk == 6);
    CHECK(run(NULL, 0, NULL, 0, 2, 0, &sk, NULL, err) == 0);
    /* many records, same order, window 1 is enough */
    enum { M = 5000 };
    static char names[M][16];
    static const char *big[M];
    for (int i = 0; i < M; i++) {
        snprintf(names[i], sizeof names[i], "id%05d", i);
        big[i] = names[i];
    }
    CHECK(run(big, M, big, M, 1, 0, &sk, NULL, err) == M);
    TEST_END();
}
