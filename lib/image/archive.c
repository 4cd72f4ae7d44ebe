/* libarchive reader behind the mmp_tar API (see archive.h). */
#include "image/archive.h"
#include "mmp.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <zlib.h>

struct mmp_arc {
    FILE *fp;
    char *name;
    int seekable;
    uint64_t base;       /* archive start in fp */
    uint8_t *pre;        /* bytes sniffed from a pipe, served first */
    size_t npre, ipre;
    struct archive *a;
    uint8_t *held;       /* data of a member whose size the archive does not record */
    char *path;          /* current member */
    uint64_t size;       /* its size */
    uint64_t off;        /* its header offset in the uncompressed stream */
    int has_off;         /* a tar: offsets are those of the uncompressed tar */
    char where[300];
    int done;
    char err[512];
    /* gzip is inflated here with zlib, which checks each member's CRC-32 and
     * length (libarchive's gzip filter does not), and read to its very end
     * after the tar's end blocks; libarchive then sees a plain tar */
    int gz, gz_end, raw_eof;
    z_stream zs;
    char gz_err[160];
    uint8_t zin[1 << 16];
    uint8_t buf[1 << 16];
};

const char *mmp_arc_sniff(const uint8_t *h, size_t n) {
    if (n >= 2 && h[0] == 0x1f && h[1] == 0x8b) return "gzip";
    if (n >= 4 && h[0] == 0x28 && h[1] == 0xb5 && h[2] == 0x2f && h[3] == 0xfd) return "zstd";
    if (n >= 6 && !memcmp(h, "\xfd" "7zXZ\0", 6)) return "xz";
    if (n >= 4 && h[0] == 'B' && h[1] == 'Z' && h[2] == 'h' && h[3] >= '1' && h[3] <= '9') return "bzip2";
    if (n >= 4 && h[0] == 'P' && h[1] == 'K' &&
        ((h[2] == 3 && h[3] == 4) || (h[2] == 5 && h[3] == 6) || (h[2] == 7 && h[3] == 8)))
        return "zip";
    return NULL;
}

static int aerr(mmp_arc *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    mmp_tar_vseterr(a->err, sizeof a->err, a->name, fmt, ap);
    va_end(ap);
    /* one line: libarchive messages carry no newline, but be sure */
    for (char *p = a->err; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return -1;
}

static const char *lib_msg(mmp_arc *a) {
    if (a->gz_err[0]) return a->gz_err; /* the cause, not libarchive's "truncated input" */
    const char *m = archive_error_string(a->a);
    return m && *m ? m : "corrupt or truncated archive";
}

/* raw bytes: the sniffed prefix, then the stream */
static size_t raw_read(mmp_arc *a, uint8_t *dst, size_t n) {
    if (a->ipre < a->npre) {
        size_t k = a->npre - a->ipre < n ? a->npre - a->ipre : n;
        memcpy(dst, a->pre + a->ipre, k);
        a->ipre += k;
        return k;
    }
    return fread(dst, 1, n, a->fp);
}

/* Next inflated bytes into a->buf: > 0 bytes, 0 end of the gzip data, -1
 * error (a->gz_err). Concatenated gzip members are one stream, as for gzip -d. */
static ptrdiff_t gz_fill(mmp_arc *a) {
    for (;;) {
        if (a->gz_err[0]) return -1;
        if (a->gz_end) return 0;
        if (a->zs.avail_in == 0 && !a->raw_eof) {
            size_t k = raw_read(a, a->zin, sizeof a->zin);
            if (k == 0) {
                if (ferror(a->fp)) {
                    snprintf(a->gz_err, sizeof a->gz_err, "read error");
                    return -1;
                }
                a->raw_eof = 1;
            }
            a->zs.next_in = a->zin;
            a->zs.avail_in = (uInt)k;
        }
        a->zs.next_out = a->buf;
        a->zs.avail_out = sizeof a->buf;
        int r = inflate(&a->zs, Z_NO_FLUSH);
        size_t out = sizeof a->buf - a->zs.avail_out;
        if (r == Z_STREAM_END) {
            if (a->zs.avail_in == 0 && !a->raw_eof) {
                size_t k = raw_read(a, a->zin, sizeof a->zin);
                a->zs.next_in = a->zin;
                a->zs.avail_in = (uInt)k;
                if (k == 0) a->raw_eof = 1;
            }
            if (a->zs.avail_in >= 2 && a->zs.next_in[0] == 0x1f && a->zs.next_in[1] == 0x8b) inflateReset(&a->zs);
            else a->gz_end = 1; /* trailing bytes after the last member are ignored, as gzip -d does */
        } else if (r == Z_BUF_ERROR && a->raw_eof && a->zs.avail_in == 0) {
            snprintf(a->gz_err, sizeof a->gz_err, "gzip data truncated (archive ends inside it)");
        } else if (r != Z_OK && r != Z_BUF_ERROR) {
            snprintf(a->gz_err, sizeof a->gz_err, "corrupt gzip data (%s)", a->zs.msg ? a->zs.msg : "inflate failed");
        }
        if (out) return (ptrdiff_t)out;
    }
}

static la_ssize_t cb_read(struct archive *ar, void *ud, const void **out) {
    mmp_arc *a = ud;
    if (a->gz) {
        ptrdiff_t k = gz_fill(a);
        if (k < 0) {
            archive_set_error(ar, EIO, "%s", a->gz_err);
            return -1;
        }
        *out = a->buf;
        return (la_ssize_t)k;
    }
    if (a->ipre < a->npre) {
        *out = a->pre + a->ipre;
        size_t k = a->npre - a->ipre;
        a->ipre = a->npre;
        return (la_ssize_t)k;
    }
    size_t k = fread(a->buf, 1, sizeof a->buf, a->fp);
    if (k == 0 && ferror(a->fp)) {
        archive_set_error(ar, EIO, "read error");
        return -1;
    }
    *out = a->buf;
    return (la_ssize_t)k;
}

static la_int64_t cb_seek(struct archive *ar, void *ud, la_int64_t off, int whence) {
    (void)ar;
    mmp_arc *a = ud;
    if (whence == SEEK_SET) off += (la_int64_t)a->base;
    if (fseeko(a->fp, (off_t)off, whence) != 0) return ARCHIVE_FATAL;
    off_t p = ftello(a->fp);
    return p < 0 ? ARCHIVE_FATAL : (la_int64_t)((uint64_t)p - a->base);
}

static la_int64_t cb_skip(struct archive *ar, void *ud, la_int64_t n) {
    (void)ar;
    mmp_arc *a = ud;
    if (!a->seekable || n <= 0) return 0; /* libarchive reads over it */
    if (fseeko(a->fp, (off_t)n, SEEK_CUR) != 0) return 0;
    return n;
}

/* "member PATH (offset N)" for messages; zip offsets are not meaningful */
static const char *at_member(mmp_arc *a) {
    if (a->has_off)
        snprintf(a->where, sizeof a->where, "member %s (offset %llu)", a->path, (unsigned long long)a->off);
    else
        snprintf(a->where, sizeof a->where, "member %s", a->path);
    return a->where;
}

static int start(mmp_arc *a) {
    a->a = archive_read_new();
    if (!a->a) return aerr(a, "out of memory");
    archive_read_support_filter_gzip(a->a);
    archive_read_support_filter_bzip2(a->a);
    archive_read_support_filter_xz(a->a);
    archive_read_support_filter_zstd(a->a);
    archive_read_support_format_tar(a->a);
    archive_read_support_format_gnutar(a->a);
    archive_read_support_format_zip(a->a);
    archive_read_set_callback_data(a->a, a);
    archive_read_set_read_callback(a->a, cb_read);
    if (a->gz) {
        memset(&a->zs, 0, sizeof a->zs);
        if (inflateInit2(&a->zs, 16 + MAX_WBITS) != Z_OK) return aerr(a, "out of memory");
        a->gz_end = a->raw_eof = 0;
        a->gz_err[0] = 0;
    } else if (a->seekable) {
        archive_read_set_skip_callback(a->a, cb_skip);
        archive_read_set_seek_callback(a->a, cb_seek);
    }
    if (archive_read_open1(a->a) != ARCHIVE_OK) return aerr(a, "%s", lib_msg(a));
    return 0;
}

mmp_arc *mmp_arc_open(FILE *fp, const char *name, int seekable, uint64_t base, const uint8_t *pre,
                      size_t npre) {
    mmp_arc *a = mmp_xcalloc(1, sizeof *a);
    a->gz = npre >= 2 && pre[0] == 0x1f && pre[1] == 0x8b;
    if (seekable) npre = 0; /* the stream is back at the start */
    a->fp = fp;
    a->name = mmp_xstrdup(name ? name : "-");
    a->seekable = seekable;
    a->base = base;
    if (npre) {
        a->pre = mmp_xmalloc(npre);
        memcpy(a->pre, pre, npre);
        a->npre = npre;
    }
    start(a); /* an error is reported by the first mmp_arc_next */
    return a;
}

void mmp_arc_close(mmp_arc *a) {
    if (!a) return;
    if (a->a) archive_read_free(a->a);
    if (a->gz) inflateEnd(&a->zs);
    free(a->name);
    free(a->pre);
    free(a->held);
    free(a->path);
    free(a);
}

const char *mmp_arc_error(const mmp_arc *a) { return a->err; }

int mmp_arc_rewind(mmp_arc *a) {
    if (!a->seekable || fseeko(a->fp, (off_t)a->base, SEEK_SET) != 0) return -1;
    if (a->a) archive_read_free(a->a);
    a->a = NULL;
    if (a->gz) inflateEnd(&a->zs);
    a->done = 0;
    a->err[0] = 0;
    free(a->held);
    a->held = NULL;
    return start(a);
}

static int read_data(mmp_arc *a, uint8_t **buf, uint64_t n, uint64_t *got_out);

static locale_t utf8;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;
static void utf8_init(void) { utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0); }

int mmp_arc_next(mmp_arc *a, mmp_tar_entry *e) {
    if (a->err[0]) return -1;
    if (a->done) return 0;
    for (;;) {
        struct archive_entry *ent;
        /* names are taken as bytes / UTF-8 whatever the process locale: in
         * the C locale libarchive cannot convert a zip's UTF-8 names (this
         * thread only, restored below) */
        pthread_once(&utf8_once, utf8_init);
        locale_t old = utf8 ? uselocale(utf8) : (locale_t)0;
        int r = archive_read_next_header(a->a, &ent);
        const char *p = r >= ARCHIVE_WARN ? archive_entry_pathname(ent) : NULL;
        if (old) uselocale(old);
        if (r == ARCHIVE_EOF) {
            /* the rest of a gzip stream (end blocks, CRC-32, length) is checked too */
            ptrdiff_t k;
            while (a->gz && (k = gz_fill(a)) > 0) {}
            if (a->gz && a->gz_err[0]) return aerr(a, "at the end of the archive: %s", a->gz_err);
            a->done = 1;
            return 0;
        }
        la_int64_t pos = archive_read_header_position(a->a);
        uint64_t at = pos > 0 ? (uint64_t)pos : 0;
        if (r < ARCHIVE_WARN) {
            if (a->path)
                return aerr(a, "after %s: %s", at_member(a), lib_msg(a));
            return aerr(a, "offset %llu: %s", (unsigned long long)at, lib_msg(a));
        }
        if (archive_entry_filetype(ent) != AE_IFREG) continue;
        if (!p) p = archive_entry_pathname_utf8(ent);
        if (!p) return aerr(a, "offset %llu: member without a usable name", (unsigned long long)at);
        la_int64_t sz = archive_entry_size(ent);
        if (sz < 0) return aerr(a, "offset %llu: member %s: bad size", (unsigned long long)at, p);
        free(a->path);
        a->path = mmp_xstrdup(p);
        a->size = (uint64_t)sz;
        a->off = at;
        a->has_off = (archive_format(a->a) & ARCHIVE_FORMAT_BASE_MASK) == ARCHIVE_FORMAT_TAR;
        free(a->held);
        a->held = NULL;
        if (!archive_entry_size_is_set(ent)) {
            /* a zip streamed with data descriptors: the size is known once the
             * data is read, so it is read now, up to 1 GiB (--max-bytes' default) */
            if (read_data(a, &a->held, (uint64_t)1 << 30, &a->size)) return -1;
        }
        e->path = a->path;
        e->size = a->size;
        e->offset = at;
        e->data_offset = at;
        return 1;
    }
}

/* Reads the current member's data: n bytes exactly, or with got != NULL
 * whatever there is, at most n. */
static int read_data(mmp_arc *a, uint8_t **buf, uint64_t n, uint64_t *got_out) {
    /* grown as the bytes arrive: memory follows the data, not the claimed size */
    size_t cap = 0, got = 0;
    uint8_t *b = NULL;
    while (got < n) {
        if (got == cap && mmp_tar_grow(&b, &cap, n)) {
            free(b);
            return aerr(a, "%s: out of memory", at_member(a));
        }
        la_ssize_t k = archive_read_data(a->a, b + got, cap - got);
        if (k == 0 && got_out) break;
        if (k <= 0) {
            free(b);
            if (k == 0)
                return aerr(a, "%s: truncated (archive ends inside its data)", at_member(a));
            return aerr(a, "%s: %s", at_member(a), lib_msg(a));
        }
        got += (size_t)k;
        if (got_out && got == n) {
            char c;
            if (archive_read_data(a->a, &c, 1) != 0) {
                free(b);
                return aerr(a, "%s: over %llu bytes", at_member(a), (unsigned long long)n);
            }
        }
    }
    if (!b && !(b = malloc(1))) return aerr(a, "%s: out of memory", at_member(a));
    if (got_out) *got_out = got;
    *buf = b;
    return 0;
}

int mmp_arc_read(mmp_arc *a, uint8_t **buf) {
    if (a->err[0]) return -1;
    if (a->held) {
        *buf = a->held;
        a->held = NULL;
        return 0;
    }
    if (a->size > ((uint64_t)1 << 40)) return aerr(a, "%s too large", at_member(a));
    return read_data(a, buf, a->size, NULL);
}
