/* An in-memory training set for the C tests of the trainer (test_train_eval,
 * test_train_export): n records of x[n,d] (copied), label of record i = i % c,
 * with bce a one-hot "labels" target t[n,c] too. Free with mmp_dataset_free. */
#ifndef MMP_TRAIN_TESTLIB_H
#define MMP_TRAIN_TESTLIB_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

static inline void t_dataset(mmp_dataset *ds, const float *x, int64_t n, int64_t d, int64_t c, int bce) {
    memset(ds, 0, sizeof *ds);
    mmp_header_init(&ds->hdr);
    snprintf(ds->name, sizeof ds->name, "train");
    ds->n = n; ds->dim = d; ds->ncls = c;
    ds->x = malloc(sizeof(float) * n * d);
    memcpy(ds->x, x, sizeof(float) * n * d);
    ds->y = malloc(sizeof(int64_t) * n);
    ds->ids = calloc(n, sizeof(char *));
    if (bce) ds->t = calloc(n * c, sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        ds->y[i] = i % c;
        if (ds->t) ds->t[i * c + i % c] = 1;
    }
}
#endif
