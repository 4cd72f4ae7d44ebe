/* Streaming tar reader (see tar.h). */
#include "image/tar.h"
#include "image/archive.h"

#include "mmp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

struct mmp_tar {
    FILE *fp;
    char *name;
    uint64_t pos;       /* bytes consumed so far */
    uint64_t remaining; /* unread data bytes of the current member */
    uint64_t pad;       /* padding after the current member's data */
    int seekable;
    uint64_t fsize; /* size of a seekable stream */
    int done;
    char *path;
    char err[512];
    mmp_arc *arc;      /* compressed tar or zip: libarchive (archive.h) */
    uint8_t pre[512];  /* first bytes of a pipe, read to tell the kind */
    size_t npre, ipre;
};

mmp_tar *mmp_tar_open_fp(FILE *fp, const char *name) {
    mmp_tar *t = mmp_xcalloc(1, sizeof *t);
    t->fp = fp;
    t->name = mmp_xstrdup(name ? name : "-");
    off_t o = ftello(fp);
    t->seekable = o >= 0 && fseeko(fp, 0, SEEK_END) == 0;
    if (t->seekable) {
        off_t end = ftello(fp);
        t->fsize = end > 0 ? (uint64_t)end : 0;
        if (fseeko(fp, o, SEEK_SET) != 0) mmp_die("%s: cannot seek", t->name);
    }
    if (o > 0) t->pos = (uint64_t)o;
    /* the first block tells a plain tar (native reader) from a compressed
     * stream or a zip (libarchive); a pipe keeps the bytes read */
    size_t got = fread(t->pre, 1, sizeof t->pre, fp);
    if (t->seekable) {
        if (fseeko(fp, o, SEEK_SET) != 0) mmp_die("%s: cannot seek", t->name);
        clearerr(fp);
    }
    int plain = got == sizeof t->pre && mmp_tar_is_header(t->pre);
    if (!plain && mmp_arc_sniff(t->pre, got))
        t->arc = mmp_arc_open(fp, t->name, t->seekable, o > 0 ? (uint64_t)o : 0, t->pre, got);
    else if (!t->seekable)
        t->npre = got;
    return t;
}

void mmp_tar_close(mmp_tar *t) {
    if (!t) return;
    mmp_arc_close(t->arc);
    free(t->name);
    free(t->path);
    free(t);
}

const char *mmp_tar_error(const mmp_tar *t) { return t->arc ? mmp_arc_error(t->arc) : t->err; }
int mmp_tar_seekable(const mmp_tar *t) { return t->seekable; }

int mmp_tar_rewind(mmp_tar *t) {
    if (t->arc) return mmp_arc_rewind(t->arc);
    if (!t->seekable || fseeko(t->fp, 0, SEEK_SET) != 0) return -1;
    t->pos = 0;
    t->remaining = t->pad = 0;
    t->done = 0;
    t->err[0] = 0;
    return 0;
}

int mmp_tar_grow(uint8_t **b, size_t *cap, uint64_t n) {
    size_t want = *cap ? *cap * 2 : (size_t)1 << 20;
    if (want > n) want = (size_t)n;
    uint8_t *nb = realloc(*b, want);
    if (!nb) return -1;
    *b = nb;
    *cap = want;
    return 0;
}

int mmp_tar_vseterr(char *err, size_t n, const char *name, const char *fmt, va_list ap) {
    int k = snprintf(err, n, "%s: ", name);
    if (k < 0 || (size_t)k >= n) k = 0;
    vsnprintf(err + k, n - k, fmt, ap);
    return -1;
}

static int terr(mmp_tar *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    mmp_tar_vseterr(t->err, sizeof t->err, t->name, fmt, ap);
    va_end(ap);
    return -1;
}

/* Reads exactly n bytes; 1 ok, 0 clean EOF before any byte, -1 short. */
static int rd(mmp_tar *t, void *buf, size_t n) {
    size_t got = 0;
    if (t->ipre < t->npre) { /* the bytes sniffed from a pipe first */
        got = t->npre - t->ipre < n ? t->npre - t->ipre : n;
        memcpy(buf, t->pre + t->ipre, got);
        t->ipre += got;
    }
    if (got < n) got += fread((uint8_t *)buf + got, 1, n - got, t->fp);
    t->pos += got;
    if (got == n) return 1;
    return got == 0 && feof(t->fp) ? 0 : -1;
}

static int skip(mmp_tar *t, uint64_t n) {
    if (n == 0) return 0;
    if (t->seekable) {
        if (t->pos + n > t->fsize) return -1; /* fseeko past EOF would succeed */
        if (fseeko(t->fp, (off_t)n, SEEK_CUR) == 0) {
            t->pos += n;
            return 0;
        }
        t->seekable = 0;
    }
    char buf[65536];
    while (n) {
        size_t k = n < sizeof buf ? (size_t)n : sizeof buf;
        if (rd(t, buf, k) != 1) return -1;
        n -= k;
    }
    return 0;
}

int mmp_tar_is_header(const uint8_t *b) {
    unsigned long long stored = 0;
    int i = 148, any = 0;
    while (i < 156 && (b[i] == ' ' || b[i] == 0)) i++;
    for (; i < 156 && b[i] >= '0' && b[i] <= '7'; i++) {
        stored = stored * 8 + (unsigned)(b[i] - '0');
        any = 1;
    }
    if (!any) return 0;
    unsigned long long us = 0;
    long long ss = 0;
    for (int j = 0; j < 512; j++) {
        unsigned char c = (j >= 148 && j < 156) ? ' ' : b[j];
        us += c;
        ss += (signed char)c;
    }
    return stored == us || (long long)stored == ss;
}

/* numeric field: octal (space/NUL padded) or GNU base-256 */
static int parse_num(const uint8_t *f, int len, uint64_t *out) {
    uint64_t v = 0;
    if (f[0] & 0x80) {
        if (f[0] & 0x40) return -1; /* negative */
        v = f[0] & 0x3f;
        for (int i = 1; i < len; i++) {
            if (v >> 56) return -1;
            v = (v << 8) | f[i];
        }
        *out = v;
        return 0;
    }
    int i = 0;
    while (i < len && f[i] == ' ') i++;
    for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
        if (v >> 60) return -1;
        v = v * 8 + (uint64_t)(f[i] - '0');
    }
    for (; i < len; i++)
        if (f[i] != ' ' && f[i] != 0) return -1;
    *out = v;
    return 0;
}

static int is_zero(const uint8_t *b) {
    for (int i = 0; i < 512; i++)
        if (b[i]) return 0;
    return 1;
}

/* Reads a special member's data (long name, pax) into a NUL-terminated buffer. */
static char *read_meta(mmp_tar *t, uint64_t size, uint64_t off) {
    if (size > (16u << 20)) {
        terr(t, "offset %llu: extended header of %llu bytes is too large",
             (unsigned long long)off, (unsigned long long)size);
        return NULL;
    }
    char *s = mmp_xmalloc((size_t)size + 1);
    if (rd(t, s, (size_t)size) != 1) {
        free(s);
        terr(t, "offset %llu: truncated member (archive ends inside it)", (unsigned long long)off);
        return NULL;
    }
    s[size] = 0;
    uint64_t pad = (512 - size % 512) % 512;
    if (skip(t, pad)) {
        free(s);
        terr(t, "offset %llu: truncated member (archive ends inside it)", (unsigned long long)off);
        return NULL;
    }
    return s;
}

/* pax records "LEN key=value\n": extracts path and size. */
static int parse_pax(const char *s, size_t n, char **path, uint64_t *size, int *has_size) {
    size_t i = 0;
    while (i < n) {
        size_t len = 0, j = i;
        while (j < n && s[j] >= '0' && s[j] <= '9') len = len * 10 + (size_t)(s[j++] - '0');
        if (j >= n || s[j] != ' ' || len == 0 || len > n - i) return -1;
        const char *kv = s + j + 1, *end = s + i + len - 1; /* end points at '\n' */
        if (*end != '\n') return -1;
        const char *eq = memchr(kv, '=', (size_t)(end - kv));
        if (!eq) return -1;
        size_t klen = (size_t)(eq - kv);
        if (klen == 4 && !memcmp(kv, "path", 4)) {
            free(*path);
            size_t vlen = (size_t)(end - eq - 1);
            *path = mmp_xmalloc(vlen + 1);
            memcpy(*path, eq + 1, vlen);
            (*path)[vlen] = 0;
        } else if (klen == 4 && !memcmp(kv, "size", 4)) {
            uint64_t v = 0;
            for (const char *p = eq + 1; p < end; p++) {
                if (*p < '0' || *p > '9' || v > UINT64_MAX / 10 - 10) return -1;
                v = v * 10 + (uint64_t)(*p - '0');
            }
            *size = v;
            *has_size = 1;
        }
        i += len;
    }
    return 0;
}

int mmp_tar_next(mmp_tar *t, mmp_tar_entry *e) {
    if (t->arc) return mmp_arc_next(t->arc, e);
    if (t->done) return 0;
    if (t->err[0]) return -1;
    /* pass over what is left of the previous member */
    if (t->remaining + t->pad) {
        uint64_t at = t->pos;
        if (skip(t, t->remaining + t->pad))
            return terr(t, "offset %llu: truncated member (archive ends inside it)",
                        (unsigned long long)at);
        t->remaining = t->pad = 0;
    }
    char *longname = NULL, *paxpath = NULL;
    uint64_t paxsize = 0;
    int has_paxsize = 0;
    uint64_t first = t->pos;
    int have_ext = 0;
    for (;;) {
        uint8_t b[512];
        uint64_t off = t->pos;
        if (!have_ext) first = off;
        int r = rd(t, b, 512);
        if (r == 0) { /* EOF on a block boundary: accept as the end */
            free(longname);
            free(paxpath);
            if (have_ext)
                return terr(t, "offset %llu: archive ends after an extended header",
                            (unsigned long long)off);
            t->done = 1;
            return 0;
        }
        if (r < 0) {
            free(longname);
            free(paxpath);
            return terr(t, "offset %llu: truncated header (archive ends inside it)",
                        (unsigned long long)off);
        }
        if (is_zero(b)) {
            free(longname);
            free(paxpath);
            t->done = 1;
            return 0;
        }
        if (!mmp_tar_is_header(b)) {
            free(longname);
            free(paxpath);
            return terr(t, "offset %llu: bad tar header checksum (corrupt archive or not a tar)",
                        (unsigned long long)off);
        }
        uint64_t size;
        if (parse_num(b + 124, 12, &size)) {
            free(longname);
            free(paxpath);
            return terr(t, "offset %llu: bad size field in tar header", (unsigned long long)off);
        }
        char type = (char)b[156];
        if (type == 'L' || type == 'x' || type == 'K' || type == 'g') {
            char *s = read_meta(t, size, off);
            if (!s) {
                free(longname);
                free(paxpath);
                return -1;
            }
            if (type == 'L') {
                free(longname);
                longname = s;
            } else if (type == 'x') {
                if (parse_pax(s, (size_t)size, &paxpath, &paxsize, &has_paxsize)) {
                    free(s);
                    free(longname);
                    free(paxpath);
                    return terr(t, "offset %llu: malformed pax extended header",
                                (unsigned long long)off);
                }
                free(s);
            } else {
                free(s);
            }
            have_ext = 1;
            continue;
        }
        if (has_paxsize) size = paxsize;
        /* the member's path */
        char *path;
        if (paxpath) {
            path = paxpath;
            paxpath = NULL;
        } else if (longname) {
            path = longname;
            longname = NULL;
        } else {
            char name[101], prefix[156];
            memcpy(name, b, 100);
            name[100] = 0;
            prefix[0] = 0;
            if (!memcmp(b + 257, "ustar", 5)) {
                memcpy(prefix, b + 345, 155);
                prefix[155] = 0;
            }
            path = prefix[0] ? mmp_xasprintf("%s/%s", prefix, name) : mmp_xstrdup(name);
        }
        free(longname);
        free(paxpath);
        longname = paxpath = NULL;
        int regular = type == '0' || type == 0 || type == '7';
        /* directories, links, devices, fifos carry no data we use */
        uint64_t data = (type == '1' || type == '2' || type == '3' || type == '4' || type == '5' ||
                         type == '6')
                            ? 0
                            : size;
        if (!regular) {
            free(path);
            if (skip(t, data + (512 - data % 512) % 512))
                return terr(t, "offset %llu: truncated member (archive ends inside it)",
                            (unsigned long long)off);
            have_ext = 0;
            continue;
        }
        free(t->path);
        t->path = path;
        t->remaining = size;
        t->pad = (512 - size % 512) % 512;
        e->path = path;
        e->size = size;
        e->offset = first;
        e->data_offset = t->pos;
        return 1;
    }
}

int mmp_tar_read(mmp_tar *t, uint8_t **buf) {
    if (t->arc) return mmp_arc_read(t->arc, buf);
    uint64_t n = t->remaining;
    uint64_t at = t->pos;
    if (n > ((uint64_t)1 << 40)) return terr(t, "offset %llu: member too large", (unsigned long long)at);
    /* A header may claim any size: a seekable archive too short for it fails
     * before any allocation, and a pipe is read in growing chunks, so memory
     * follows the bytes that are really there, never the claimed size. */
    int truncated = t->seekable && at + n > t->fsize;
    size_t cap = 0, got = 0;
    uint8_t *b = NULL;
    while (!truncated && got < n) {
        if (got == cap && mmp_tar_grow(&b, &cap, n)) {
            free(b);
            return terr(t, "offset %llu: out of memory for a %llu-byte member", (unsigned long long)at,
                        (unsigned long long)n);
        }
        if (rd(t, b + got, cap - got) != 1) truncated = 1;
        else got = cap;
    }
    if (truncated) {
        free(b);
        t->remaining = 0;
        return terr(t, "offset %llu: truncated member %s (archive ends inside its data)",
                    (unsigned long long)at, t->path ? t->path : "");
    }
    if (!b && !(b = malloc(1))) return terr(t, "offset %llu: out of memory", (unsigned long long)at);
    t->remaining = 0;
    *buf = b;
    return 0;
}
