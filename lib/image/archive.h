/* Compressed tars (.tar.gz/.tgz, .tar.zst, .tar.xz, .tar.bz2) and zip archives
 * through libarchive, behind the mmp_tar API (tar.h): mmp_tar_open_fp sniffs
 * the first bytes and hands these to this reader; a plain tar keeps the
 * native reader. Streaming: libarchive reads through a small buffer, never
 * the whole archive. */
#ifndef MMP_IMAGE_ARCHIVE_H
#define MMP_IMAGE_ARCHIVE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "image/tar.h"

typedef struct mmp_arc mmp_arc;

/* "gzip", "zstd", "xz", "bzip2", "zip" when the first bytes (n of them) are
 * those of a compressed stream or a zip archive, else NULL. */
const char *mmp_arc_sniff(const uint8_t *head, size_t n);

/* pre[0..npre) = the first bytes, read from fp to sniff it: replayed for a
 * pipe; a seekable fp is back at base (the archive's start) and reads them
 * again. The first mmp_arc_next reports an error of the open. */
mmp_arc *mmp_arc_open(FILE *fp, const char *name, int seekable, uint64_t base, const uint8_t *pre,
                      size_t npre);
int mmp_arc_next(mmp_arc *a, mmp_tar_entry *e);
int mmp_arc_read(mmp_arc *a, uint8_t **buf);
const char *mmp_arc_error(const mmp_arc *a);
int mmp_arc_rewind(mmp_arc *a);
void mmp_arc_close(mmp_arc *a);

/* Grows *b (capacity *cap, 1 MiB first, doubling, at most n) so that memory
 * follows the bytes that arrive, never a claimed size; -1 = out of memory
 * (*b kept). Shared by both readers. */
int mmp_tar_grow(uint8_t **b, size_t *cap, uint64_t n);
/* err = "NAME: " + the formatted message (tar.c's, shared by both readers); returns -1. */
int mmp_tar_vseterr(char *err, size_t n, const char *name, const char *fmt, va_list ap);

#endif
