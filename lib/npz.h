/* numpy .npz writer (internal): a zip of .npy files (NPY format 1.0), read
 * by numpy.load without Python on the writing side. One array per tensor
 * field stacked over the records ([N, ...]), plus "labels" (<i8, -1 when
 * unlabelled), "ids" and "classes" (<U arrays). bf16 has no numpy dtype and
 * is written as <f4 (exact). The file is written to a temporary file beside
 * path and renamed at mmp_npz_close: a failure leaves no half file. */
#ifndef MMP_NPZ_H
#define MMP_NPZ_H
#include <stddef.h>
#include <stdint.h>

#include "mmp.h"

typedef struct mmp_npz mmp_npz;

/* deflate: 0 = stored entries (numpy.savez), 1 = deflated
 * (numpy.savez_compressed). NULL on error (message in err): a field named
 * like one of the extra arrays, a class name that is not UTF-8, a file that
 * cannot be created. */
mmp_npz *mmp_npz_open(const char *path, const mmp_header *h, int deflate, char *err,
                      size_t errlen);
/* Appends one record (validated against h by the stream reader). src and
 * index name it in messages ("SRC: record INDEX: ..."). -1 when a field's
 * shape differs from the first record's (an .npz array has one shape), or
 * the id is not UTF-8, or on a write error. */
int mmp_npz_add(mmp_npz *z, const mmp_record *r, const char *src, uint64_t index, char *err,
                size_t errlen);
/* Writes the zip and renames it to path; frees z. -1 on error (nothing left
 * under path). */
int mmp_npz_close(mmp_npz *z, char *err, size_t errlen);
/* Removes the temporary file and frees z (after an error). NULL is a no-op. */
void mmp_npz_abort(mmp_npz *z);

#endif
