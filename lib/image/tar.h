/* Streaming tar reader: ustar, GNU long names ('L'), pax extended headers
 * ('x': path, size). Reads sequentially from a FILE* (a pipe works); seeks
 * over unread member data when the stream is seekable. */
#ifndef MMP_IMAGE_TAR_H
#define MMP_IMAGE_TAR_H

#include <stdint.h>
#include <stdio.h>

typedef struct mmp_tar mmp_tar;

typedef struct {
    char *path;          /* member path (owned by the reader, valid until next call) */
    uint64_t size;       /* data bytes */
    uint64_t offset;     /* byte offset of the member's (first) header */
    uint64_t data_offset;
} mmp_tar_entry;

/* name is used in messages. The FILE is not closed by mmp_tar_close. */
mmp_tar *mmp_tar_open_fp(FILE *fp, const char *name);
/* Next regular-file member (directories, links, ... are passed over).
 * 1 = entry, 0 = end of archive, -1 = error: mmp_tar_error() says
 * "NAME: offset N: bad header checksum" / "truncated member ..." etc. */
int mmp_tar_next(mmp_tar *t, mmp_tar_entry *e);
/* Reads the current member's data into *buf (malloc'd, caller frees).
 * 0 ok; -1 error (truncated archive). */
int mmp_tar_read(mmp_tar *t, uint8_t **buf);
const char *mmp_tar_error(const mmp_tar *t);
/* 1 when the stream is seekable (fseeko works). */
int mmp_tar_seekable(const mmp_tar *t);
/* Seek back to the start of the archive (seekable streams only). 0 ok. */
int mmp_tar_rewind(mmp_tar *t);
void mmp_tar_close(mmp_tar *t);

/* 1 when the 512-byte block is a tar header with a valid checksum. */
int mmp_tar_is_header(const uint8_t *blk);

#endif
