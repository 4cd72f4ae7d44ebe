/* numpy .npz writer: a zip (stored or deflated with zlib) of NPY 1.0 files.
 * Field data goes to one temporary file per field while the records come
 * (the record count, part of each NPY header, is known only at the end); the
 * zip is then written to a temporary file beside the target and renamed. */
#include "npz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define ZIP_MAX 0xFFFFFFFFull /* no zip64: sizes and offsets stay below 4 GiB */

typedef struct {
    char name[64];
    mmp_dtype dtype;   /* in the stream */
    const char *descr; /* numpy dtype string */
    size_t outsize;    /* bytes per element written */
    int ndim;          /* per record */
    int64_t shape[MMP_MAX_DIMS];
    FILE *data;        /* tmpfile() with the stacked elements */
} npz_array;

typedef struct {
    char *name;
    uint32_t crc;
    uint64_t csize, usize, offset;
    int method;
} zip_entry;

struct mmp_npz {
    char *path, *tmp;
    FILE *out;
    int deflate;
    int narrays;
    npz_array arrays[MMP_MAX_FIELDS];
    uint64_t n;
    int64_t *labels;
    char **ids;
    size_t cap, id_width;
    int nclasses;
    char **classes;
    /* zip being written */
    zip_entry entries[MMP_MAX_FIELDS + 3];
    int nentries;
    zip_entry *cur;
    z_stream zs;
    int io_error;
};

/* Number of code points of a UTF-8 string; -1 when it is not valid UTF-8.
 * out (may be NULL) receives them. */
static long utf8_decode(const char *s, uint32_t *out) {
    const unsigned char *p = (const unsigned char *)s;
    long n = 0;
    while (*p) {
        uint32_t c = *p;
        int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len) return -1;
        if (len > 1) c &= 0xFFu >> (len + 1);
        for (int k = 1; k < len; k++) {
            if ((p[k] & 0xC0) != 0x80) return -1;
            c = (c << 6) | (p[k] & 0x3Fu);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (c < min[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return -1;
        if (out) out[n] = c;
        n++;
        p += len;
    }
    return n;
}

static void le16(uint8_t *b, unsigned v) { b[0] = (uint8_t)v; b[1] = (uint8_t)(v >> 8); }
static void le32(uint8_t *b, uint32_t v) {
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
}

static void out_write(mmp_npz *z, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, z->out) != n) z->io_error = errno ? errno : EIO;
}

/* ---- zip entries ------------------------------------------------------ */

static void local_header(mmp_npz *z, const zip_entry *e) {
    uint8_t b[30];
    size_t nl = strlen(e->name);
    le32(b, 0x04034b50);
    le16(b + 4, 20);                   /* version needed: 2.0 */
    le16(b + 6, 0);                    /* flags */
    le16(b + 8, (unsigned)e->method);
    le16(b + 10, 0);                   /* 00:00 */
    le16(b + 12, (1 << 5) | 1);        /* 1980-01-01: fixed, the file is reproducible */
    le32(b + 14, e->crc);
    le32(b + 18, (uint32_t)e->csize);
    le32(b + 22, (uint32_t)e->usize);
    le16(b + 26, (unsigned)nl);
    le16(b + 28, 0);
    out_write(z, b, sizeof b);
    out_write(z, e->name, nl);
}

static void entry_begin(mmp_npz *z, const char *name) {
    zip_entry *e = &z->entries[z->nentries++];
    memset(e, 0, sizeof *e);
    e->name = mmp_xstrdup(name);
    e->method = z->deflate ? 8 : 0;
    e->crc = (uint32_t)crc32(0L, Z_NULL, 0);
    long off = ftell(z->out);
    if (off < 0) z->io_error = errno;
    e->offset = (uint64_t)(off < 0 ? 0 : off);
    local_header(z, e); /* sizes and CRC patched by entry_end */
    if (z->deflate) {
        memset(&z->zs, 0, sizeof z->zs);
        if (deflateInit2(&z->zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            z->io_error = ENOMEM;
    }
    z->cur = e;
}

static void deflate_run(mmp_npz *z, const void *p, size_t n, int flush) {
    uint8_t buf[1 << 16];
    z->zs.next_in = (Bytef *)(uintptr_t)p;
    z->zs.avail_in = (uInt)n;
    int rc;
    do {
        z->zs.next_out = buf;
        z->zs.avail_out = sizeof buf;
        rc = deflate(&z->zs, flush);
        if (rc == Z_STREAM_ERROR) { z->io_error = EIO; return; }
        size_t got = sizeof buf - z->zs.avail_out;
        out_write(z, buf, got);
        z->cur->csize += got;
    } while (z->zs.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
}

static void entry_put(mmp_npz *z, const void *p, size_t n) {
    zip_entry *e = z->cur;
    const uint8_t *b = p;
    for (size_t done = 0; done < n;) { /* zlib takes uInt lengths */
        size_t k = n - done > (1u << 30) ? (1u << 30) : n - done;
        e->crc = (uint32_t)crc32(e->crc, b + done, (uInt)k);
        if (z->deflate) deflate_run(z, b + done, k, Z_NO_FLUSH);
        else {
            out_write(z, b + done, k);
            e->csize += k;
        }
        done += k;
    }
    e->usize += n;
}

static void entry_end(mmp_npz *z) {
    zip_entry *e = z->cur;
    if (z->deflate) {
        deflate_run(z, NULL, 0, Z_FINISH);
        deflateEnd(&z->zs);
    }
    z->cur = NULL;
    if (e->usize >= ZIP_MAX || e->csize >= ZIP_MAX) return; /* reported by mmp_npz_close */
    if (fseek(z->out, (long)e->offset, SEEK_SET)) z->io_error = errno;
    local_header(z, e);
    if (fseek(z->out, 0, SEEK_END)) z->io_error = errno;
}

/* ---- NPY ------------------------------------------------------------- */

/* NPY 1.0 header of an array [n, shape...] with dtype descr. */
static void npy_header(mmp_npz *z, const char *descr, uint64_t n, int ndim, const int64_t *shape) {
    char dict[512];
    int k = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%llu,",
                     descr, (unsigned long long)n);
    for (int i = 0; i < ndim; i++)
        k += snprintf(dict + k, sizeof dict - (size_t)k, "%s%lld", i ? ", " : " ", (long long)shape[i]);
    k += snprintf(dict + k, sizeof dict - (size_t)k, "), }");
    /* pad with spaces and end with '\n' so that the data starts at a multiple of 64, as numpy does */
    size_t total = 10 + (size_t)k + 1;
    size_t padded = (total + 63) / 64 * 64;
    uint8_t head[10 + sizeof dict + 64];
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    le16(head + 8, (unsigned)(padded - 10));
    memcpy(head + 10, dict, (size_t)k);
    memset(head + 10 + k, ' ', padded - total);
    head[padded - 1] = '\n';
    entry_put(z, head, padded);
}

/* A 1-D '<U' array of n strings (UTF-8 in, UTF-32LE out, width code points). */
static void npy_strings(mmp_npz *z, const char *name, char *const *s, uint64_t n, size_t width) {
    char descr[32];
    snprintf(descr, sizeof descr, "<U%zu", width);
    entry_begin(z, name);
    npy_header(z, descr, n, 0, NULL);
    uint32_t *cp = mmp_xmalloc(width * 4);
    uint8_t *b = mmp_xmalloc(width * 4);
    for (uint64_t i = 0; i < n; i++) {
        memset(cp, 0, width * 4);
        utf8_decode(s[i] ? s[i] : "", cp); /* checked when stored */
        for (size_t j = 0; j < width; j++) le32(b + 4 * j, cp[j]);
        entry_put(z, b, width * 4);
    }
    free(cp);
    free(b);
    entry_end(z);
}

/* ---- public ----------------------------------------------------------- */

mmp_npz *mmp_npz_open(const char *path, const mmp_header *h, int deflate, char *err,
                      size_t errlen) {
    static const char *const reserved[] = {"labels", "ids", "classes"};
    for (int i = 0; i < h->nfields; i++)
        for (int k = 0; k < 3; k++)
            if (strcmp(h->fields[i].name, reserved[k]) == 0) {
                mmp_errf(err, errlen, "%s: field '%s' has the name of the npz array of the %s", path,
                         h->fields[i].name, reserved[k]);
                return NULL;
            }
    for (int c = 0; c < h->nclasses; c++)
        if (utf8_decode(h->classes[c], NULL) < 0) {
            mmp_errf(err, errlen, "%s: header: class %d is not valid UTF-8", path, c);
            return NULL;
        }
    mmp_npz *z = mmp_xcalloc(1, sizeof *z);
    z->deflate = deflate;
    z->path = mmp_xstrdup(path);
    z->nclasses = h->nclasses;
    z->classes = mmp_xcalloc((size_t)h->nclasses + 1, sizeof *z->classes);
    for (int c = 0; c < h->nclasses; c++) z->classes[c] = mmp_xstrdup(h->classes[c]);
    for (int i = 0; i < h->nfields; i++) {
        const mmp_schema_field *f = &h->fields[i];
        npz_array *a = &z->arrays[z->narrays++];
        snprintf(a->name, sizeof a->name, "%s", f->name);
        a->dtype = f->dtype;
        static const char *const descr[MMP_DTYPE_COUNT] = {
            [MMP_U8] = "|u1", [MMP_I32] = "<i4", [MMP_I64] = "<i8",
            [MMP_F16] = "<f2", [MMP_BF16] = "<f4", [MMP_F32] = "<f4"};
        a->descr = descr[f->dtype];
        a->outsize = f->dtype == MMP_BF16 ? 4 : mmp_dtype_size(f->dtype);
        a->ndim = f->ndim;
        for (int d = 0; d < f->ndim; d++) a->shape[d] = f->shape[d] < 0 ? 0 : f->shape[d];
        a->data = tmpfile();
        if (!a->data) {
            mmp_errf(err, errlen, "%s: cannot create a temporary file: %s", path, strerror(errno));
            mmp_npz_abort(z);
            return NULL;
        }
    }
    z->tmp = mmp_xasprintf("%s.tmp.XXXXXX", path);
    int fd = mkstemp(z->tmp);
    if (fd < 0 || !(z->out = fdopen(fd, "w+b"))) {
        int e = errno;
        if (fd >= 0) close(fd);
        if (fd < 0) { free(z->tmp); z->tmp = NULL; }
        mmp_errf(err, errlen, "%s: cannot create a temporary file: %s", path, strerror(e));
        mmp_npz_abort(z);
        return NULL;
    }
    return z;
}

int mmp_npz_add(mmp_npz *z, const mmp_record *r, const char *src, uint64_t index, char *err,
                size_t errlen) {
    long idlen = utf8_decode(r->id ? r->id : "", NULL);
    if (idlen < 0)
        return mmp_errf(err, errlen, "%s: record %llu: id is not valid UTF-8", src,
                        (unsigned long long)index);
    for (int i = 0; i < z->narrays; i++) {
        npz_array *a = &z->arrays[i];
        const mmp_tensor *t = mmp_record_cget(r, a->name);
        if (!t || t->dtype != a->dtype || t->ndim != a->ndim)
            return mmp_errf(err, errlen, "%s: record %llu: field '%s' does not match the schema", src,
                            (unsigned long long)index, a->name);
        if (z->n == 0) memcpy(a->shape, t->shape, sizeof a->shape);
        else if (memcmp(a->shape, t->shape, (size_t)a->ndim * sizeof *a->shape)) {
            char was[128], is[128];
            mmp_shape_str(a->ndim, a->shape, was, sizeof was);
            mmp_shape_str(t->ndim, t->shape, is, sizeof is);
            return mmp_errf(err, errlen,
                            "%s: record %llu: field '%s' has shape %s, the first record %s: an .npz "
                            "array needs one shape per field (resize first, e.g. mmp-decode --size)",
                            src, (unsigned long long)index, a->name, is, was);
        }
    }
    for (int i = 0; i < z->narrays; i++) {
        npz_array *a = &z->arrays[i];
        const mmp_tensor *t = mmp_record_cget(r, a->name);
        if (a->dtype == MMP_BF16) { /* numpy has no bf16: float32, exact */
            size_t ne = t->nbytes / 2;
            float *f = mmp_xmalloc(ne ? ne * sizeof *f : 1);
            mmp_tensor_to_f32(t, f);
            if (ne && fwrite(f, sizeof *f, ne, a->data) != ne) z->io_error = errno ? errno : EIO;
            free(f);
        } else if (t->nbytes && fwrite(t->data, 1, t->nbytes, a->data) != t->nbytes) {
            z->io_error = errno ? errno : EIO;
        }
    }
    if (z->io_error)
        return mmp_errf(err, errlen, "%s: temporary file: write error: %s", z->path, strerror(z->io_error));
    if (z->n == z->cap) {
        z->cap = z->cap ? 2 * z->cap : 256;
        z->labels = mmp_xrealloc(z->labels, z->cap * sizeof *z->labels);
        z->ids = mmp_xrealloc(z->ids, z->cap * sizeof *z->ids);
    }
    z->labels[z->n] = r->label;
    z->ids[z->n] = r->id ? mmp_xstrdup(r->id) : NULL;
    if ((size_t)idlen > z->id_width) z->id_width = (size_t)idlen;
    z->n++;
    return 0;
}

static void free_npz(mmp_npz *z) {
    for (int i = 0; i < z->narrays; i++)
        if (z->arrays[i].data) fclose(z->arrays[i].data);
    for (uint64_t i = 0; i < z->n; i++) free(z->ids[i]);
    for (int c = 0; c < z->nclasses; c++) free(z->classes[c]);
    for (int e = 0; e < z->nentries; e++) free(z->entries[e].name);
    free(z->classes);
    free(z->ids);
    free(z->labels);
    free(z->tmp);
    free(z->path);
    free(z);
}

void mmp_npz_abort(mmp_npz *z) {
    if (!z) return;
    if (z->cur && z->deflate) deflateEnd(&z->zs);
    if (z->out) fclose(z->out);
    if (z->tmp) unlink(z->tmp);
    free_npz(z);
}

int mmp_npz_close(mmp_npz *z, char *err, size_t errlen) {
    char name[80];
    static uint8_t buf[1 << 16];
    for (int i = 0; i < z->narrays && !z->io_error; i++) {
        npz_array *a = &z->arrays[i];
        snprintf(name, sizeof name, "%s.npy", a->name);
        entry_begin(z, name);
        npy_header(z, a->descr, z->n, a->ndim, a->shape);
        if (fflush(a->data) || fseek(a->data, 0, SEEK_SET)) z->io_error = errno;
        size_t k;
        while (!z->io_error && (k = fread(buf, 1, sizeof buf, a->data)) > 0) entry_put(z, buf, k);
        if (ferror(a->data)) z->io_error = EIO;
        entry_end(z);
    }
    if (!z->io_error) {
        entry_begin(z, "labels.npy");
        npy_header(z, "<i8", z->n, 0, NULL);
        for (uint64_t i = 0; i < z->n; i++) {
            uint8_t b[8];
            for (int j = 0; j < 8; j++) b[j] = (uint8_t)((uint64_t)z->labels[i] >> (8 * j));
            entry_put(z, b, 8);
        }
        entry_end(z);
        npy_strings(z, "ids.npy", z->ids, z->n, z->id_width ? z->id_width : 1);
        size_t cw = 1;
        for (int c = 0; c < z->nclasses; c++) {
            long l = utf8_decode(z->classes[c], NULL);
            if ((size_t)l > cw) cw = (size_t)l;
        }
        npy_strings(z, "classes.npy", z->classes, (uint64_t)z->nclasses, cw);
    }
    /* central directory */
    long cd = ftell(z->out);
    int too_large = cd < 0 || (uint64_t)cd >= ZIP_MAX;
    for (int e = 0; e < z->nentries; e++) {
        zip_entry *x = &z->entries[e];
        if (x->usize >= ZIP_MAX || x->csize >= ZIP_MAX) too_large = 1;
        uint8_t b[46];
        size_t nl = strlen(x->name);
        le32(b, 0x02014b50);
        le16(b + 4, (3 << 8) | 20); /* made by: unix, 2.0 */
        le16(b + 6, 20);
        le16(b + 8, 0);
        le16(b + 10, (unsigned)x->method);
        le16(b + 12, 0);
        le16(b + 14, (1 << 5) | 1);
        le32(b + 16, x->crc);
        le32(b + 20, (uint32_t)x->csize);
        le32(b + 24, (uint32_t)x->usize);
        le16(b + 28, (unsigned)nl);
        le16(b + 30, 0);
        le16(b + 32, 0);
        le16(b + 34, 0);
        le16(b + 36, 0);
        le32(b + 38, 0100644u << 16); /* regular file, rw-r--r-- */
        le32(b + 42, (uint32_t)x->offset);
        out_write(z, b, sizeof b);
        out_write(z, x->name, nl);
    }
    long end = ftell(z->out);
    if (end < 0 || (uint64_t)end >= ZIP_MAX) too_large = 1;
    uint8_t b[22];
    le32(b, 0x06054b50);
    le16(b + 4, 0);
    le16(b + 6, 0);
    le16(b + 8, (unsigned)z->nentries);
    le16(b + 10, (unsigned)z->nentries);
    le32(b + 12, (uint32_t)(end - cd));
    le32(b + 16, (uint32_t)cd);
    le16(b + 20, 0);
    out_write(z, b, sizeof b);
    if (too_large && !z->io_error) {
        mmp_errf(err, errlen, "%s: the arrays need 4 GiB or more (this writer makes no zip64): write "
                 "fewer records (--head) or a smaller field", z->path);
        mmp_npz_abort(z);
        return -1;
    }
    if (fflush(z->out) && !z->io_error) z->io_error = errno;
    if (!z->io_error && fsync(fileno(z->out))) z->io_error = errno;
    FILE *f = z->out;
    z->out = NULL;
    if (fclose(f) && !z->io_error) z->io_error = errno;
    if (!z->io_error) {
        chmod(z->tmp, 0644);
        if (rename(z->tmp, z->path)) z->io_error = errno;
    }
    if (z->io_error) {
        mmp_errf(err, errlen, "%s: write failed: %s", z->path, strerror(z->io_error));
        mmp_npz_abort(z);
        return -1;
    }
    free_npz(z);
    return 0;
}
