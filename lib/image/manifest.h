/* image/manifest.h: the question / caption manifests of mmp-decode
 * --manifest (formats/manifest.md): CSV (a header row) or JSONL rows of an
 * image path and what goes with it: a question, its answers, the question
 * type, the image id, reference captions.
 *
 * Keys (JSONL) / columns (CSV), other keys ignored:
 *   image        the image file, relative to the manifest's folder (or
 *                absolute); aliases path, file_name, image_path
 *   image_id     string (JSONL: or integer); default: image as written
 *   question     the question (the record's "text"); absent: no question
 *   question_id  string (JSONL: or integer); default: image_id + "/q" + the
 *                question's index among the rows of that image_id
 *   question_type  (alias qtype)
 *   answers      JSONL: a list of strings, or of VQA v2 objects {"answer": ...};
 *                CSV: the answers joined by '|'
 *   answer       one answer (used when there is no answers)
 *   captions     JSONL: a list of strings; CSV: joined by '|'
 *   caption      one caption (used when there is no captions)
 * A UTF-8 byte order mark is skipped, blank lines too. Errors are one line,
 * "FILE: line N: what" (a row with a question but no image, a value of the
 * wrong type, an empty caption / answer / question, bad JSON or CSV quoting). */
#ifndef MMP_IMAGE_MANIFEST_H
#define MMP_IMAGE_MANIFEST_H

#include <stddef.h>

typedef struct {
    char *image;    /* resolved path: relative to the manifest's folder */
    char *image_id;
    char *id;       /* the record id: question_id, image_id + "/qK", or image_id (no question) */
    char *question; /* NULL: none */
    char *qtype;    /* NULL: none */
    char **answers;
    int nanswers;
    char **captions;
    int ncaptions;
    int line;       /* of the row's first byte */
} mmp_mrow;

typedef struct {
    char *path;
    int csv;
    mmp_mrow *rows;
    size_t n;
} mmp_manifest;

/* Reads path (.csv: CSV; else JSONL). 0, or -1 with one line in err. */
int mmp_manifest_read(const char *path, mmp_manifest *m, char *err, size_t errlen);
void mmp_manifest_free(mmp_manifest *m);

#endif
