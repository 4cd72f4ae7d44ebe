/* text/embed.h: mmp-embed-text's work (internal): embedding many texts in
 * batches on threads, the --lines input, the output header and the record
 * loop that adds a text-embedding tensor to every record. The batch split
 * depends only on the batch size, so the output is bit-identical for any
 * thread count. */
#ifndef MMP_TEXT_EMBED_H
#define MMP_TEXT_EMBED_H
#include "mmp.h"
#include "text/bert.h"

typedef struct {
    const mmp_text_model *model;
    int max_length;           /* tokens incl. [CLS]/[SEP] */
    int normalize;            /* L2-normalize */
    int utf8;                 /* MMP_UTF8_ERROR or MMP_UTF8_REPLACE */
    int batch;                /* texts per forward pass */
    int threads;              /* batches run at a time */
    mmp_dtype dtype;          /* of the output tensor: MMP_F32 or MMP_F16 */
    const char *field;        /* the output tensor's name */
    const char *const *drops; /* stream input: fields dropped */
    int ndrops;
    int missing_skip;         /* stream input: records without text are skipped and counted (else an error) */
} mmp_text_embed_opts;

/* Embeds n texts into out [n, hidden] in batches of `batch`, `threads`
 * batches at a time (mmp_text_embed on each). 0, or -1 on invalid UTF-8 with
 * *bad = the text's index and the message in err. */
int mmp_text_embed_batches(const mmp_text_model *tm, const char *const *texts, const size_t *lens, int n, int batch,
                           int threads, int max_length, int normalize, int utf8, float *out, int *bad, char *err,
                           size_t errlen);

/* --lines input: one item a line (\n or \r\n stripped); ids[i] = the line
 * (made valid UTF-8 under MMP_UTF8_REPLACE), texts[i] = the template with
 * "{}" replaced by it (the line itself without a template; the template
 * alone when it has no "{}"). */
typedef struct {
    char **ids, **texts;
    int n;
} mmp_text_lines;

/* path "-" = stdin. 0, or -1 with "FILE: line N: contains a NUL byte",
 * "FILE: read error" or "FILE: cannot open". */
int mmp_text_lines_read(mmp_text_lines *l, const char *path, const char *tpl, int utf8, char *err, size_t errlen);
void mmp_text_lines_free(mmp_text_lines *l);

/* The output header in *oh: a copy of ih with o->drops removed (stream
 * input) or, for lines (ih NULL), the lines as classes and tpl as
 * "text.template"; then the output field [hidden], the text.* meta and
 * "text_provenance". */
void mmp_text_embed_header(const mmp_text_embed_opts *o, const mmp_header *ih, const mmp_text_lines *lines,
                           const char *tpl, mmp_header *oh);

/* Reads the records of rd (or makes one a line: id, label = line number,
 * text), embeds their texts, `batch * threads` records at a time, and writes
 * them to w with the output tensor added (drops removed). Records without
 * text are skipped and counted in w's trailer with missing_skip. Progress on
 * stderr when enabled. 0, or -1 with one line naming in_name and the record
 * ("IN: record N (id X): no text ...", "IN: line N: invalid UTF-8 ..."); the
 * records of the failing group are not written. */
int mmp_text_embed_stream(const mmp_text_embed_opts *o, mmp_reader *rd, const mmp_text_lines *lines,
                          const char *in_name, mmp_writer *w, char *err, size_t errlen);

#endif
