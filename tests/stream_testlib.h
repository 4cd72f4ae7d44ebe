/* In-memory mmp streams for the C tests of the stream loops (test_nn_embed,
 * test_text_embed, test_image_stream, test_fuse_run, test_report_read,
 * test_train_eval): a writer into an open_memstream buffer; read it back
 * with mmp_reader_open_mem(m.buf, m.n, ...). */
#ifndef MMP_STREAM_TESTLIB_H
#define MMP_STREAM_TESTLIB_H
#include <stdio.h>

#include "mmp.h"

typedef struct {
    char *buf; /* the stream once t_mem_close'd; free() it */
    size_t n;
    FILE *fp;
} mem;

static inline mmp_writer *t_mem_writer(mem *m, const char *name, const mmp_header *h) {
    *m = (mem){0};
    m->fp = open_memstream(&m->buf, &m->n);
    return mmp_writer_open_fp(m->fp, name, h, 1);
}

/* Closes the writer (trailer) and the memstream: m->buf, m->n hold the stream. */
static inline void t_mem_close(mem *m, mmp_writer *w) {
    mmp_writer_close(w);
    fclose(m->fp);
    m->fp = NULL;
}

/* An empty record with id PREFIX<i> and the label. */
static inline void t_record_init(mmp_record *r, const char *prefix, int i, int64_t label) {
    char id[64];
    snprintf(id, sizeof id, "%s%d", prefix, i);
    mmp_record_init(r);
    mmp_record_set_id(r, id);
    r->label = label;
}

#endif
