/* safetensors read (mmap, validated) and atomic write. Spec: formats/safetensors.md.
 *
 * File = u64 little-endian N, N bytes of UTF-8 JSON header, data region.
 * Header = {"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...,
 *           "__metadata__": {"key": "value", ...}} with offsets relative to the
 * data region. */
#include "mmp.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER (100u << 20) /* as the reference implementation */

/* ---------------- reader ---------------- */

static int cmp_entry(const void *a, const void *b) {
    const mmp_st_entry *x = a, *y = b;
    const char *bx = x->t.data, *by = y->t.data;
    return bx < by ? -1 : bx > by ? 1 : 0;
}

static void st_reset(mmp_safetensors *st) {
    for (int i = 0; i < st->n; i++) free(st->entries[i].name);
    free(st->entries);
    mmp_meta_free(&st->meta);
    st->n = 0;
    st->entries = NULL;
}

#define FAIL(...) do { mmp_errf(err, errlen, __VA_ARGS__); goto fail; } while (0)

/* the integers of a JSON array into v (at most maxn): their count, or -1 (err) */
static int int_array(const json_t *a, const char *key, const char *field, int64_t *v, int maxn, char *err,
                     size_t errlen) {
    if (!json_is_array(a)) return mmp_errf(err, errlen, "tensor '%s': %s is %s, expected an array of integers", key, field, mmp_json_type_name(a));
    size_t n = json_array_size(a);
    if (n > (size_t)maxn) return mmp_errf(err, errlen, "tensor '%s': %s: array too long (max %d)", key, field, maxn);
    for (size_t i = 0; i < n; i++) {
        const json_t *x = json_array_get(a, i);
        /* jansson refuses integers outside long long (int64) at parsing; reals are refused here */
        if (!json_is_integer(x))
            return mmp_errf(err, errlen, "tensor '%s': %s holds %s, expected an integer", key, field, mmp_json_type_name(x));
        v[i] = (int64_t)json_integer_value(x);
    }
    return (int)n;
}

/* One tensor entry {"dtype": .., "shape": [..], "data_offsets": [b, e]} into e
 * (data and size checked against the data region data[0, dlen)). */
static int parse_entry(mmp_st_entry *e, const char *key, const json_t *o, const uint8_t *data, uint64_t dlen,
                       char *err, size_t errlen) {
    if (!json_is_object(o)) return mmp_errf(err, errlen, "tensor '%s' is %s, expected an object", key, mmp_json_type_name(o));
    const json_t *dt = json_object_get(o, "dtype"), *sh = json_object_get(o, "shape"), *of = json_object_get(o, "data_offsets");
    if (dt) {
        const char *d = json_string_value(dt);
        if (!d) return mmp_errf(err, errlen, "tensor '%s': dtype is %s, expected a string", key, mmp_json_type_name(dt));
        if (mmp_dtype_parse(d, strlen(d), &e->t.dtype) || strcmp(d, mmp_dtype_st_name(e->t.dtype)))
            return mmp_errf(err, errlen, "tensor '%s': unsupported dtype '%s' (supported: U8 I32 I64 F16 BF16 F32)", key, d);
    }
    if (sh) {
        if ((e->t.ndim = int_array(sh, key, "shape", e->t.shape, MMP_MAX_DIMS, err, errlen)) < 0) return -1;
        for (int k = 0; k < e->t.ndim; k++)
            if (e->t.shape[k] < 0) return mmp_errf(err, errlen, "tensor '%s': negative dimension", key);
    }
    int64_t off[2] = {0, 0};
    if (of) {
        int cnt = int_array(of, key, "data_offsets", off, 2, err, errlen);
        if (cnt < 0) return -1;
        if (cnt != 2) return mmp_errf(err, errlen, "tensor '%s': data_offsets needs 2 numbers", key);
    }
    if (!dt || !sh || !of) return mmp_errf(err, errlen, "tensor '%s': needs dtype, shape and data_offsets", key);
    int64_t numel = mmp_numel(e->t.ndim, e->t.shape);
    if (numel < 0 || (uint64_t)numel > UINT64_MAX / 8) return mmp_errf(err, errlen, "tensor '%s': shape overflows", key);
    uint64_t want = (uint64_t)numel * mmp_dtype_size(e->t.dtype);
    if (off[0] < 0 || off[1] < off[0])
        return mmp_errf(err, errlen, "tensor '%s': bad data_offsets [%lld, %lld]", key, (long long)off[0], (long long)off[1]);
    if ((uint64_t)off[1] > dlen)
        return mmp_errf(err, errlen, "tensor '%s': data_offsets end %lld is past the data (%llu bytes)", key, (long long)off[1], (unsigned long long)dlen);
    if ((uint64_t)(off[1] - off[0]) != want)
        return mmp_errf(err, errlen, "tensor '%s': %lld bytes in the file but its shape needs %llu", key, (long long)(off[1] - off[0]), (unsigned long long)want);
    e->t.data = (void *)(data + off[0]);
    e->t.nbytes = (size_t)want;
    e->t.owns = 0;
    return 0;
}

int mmp_st_parse(mmp_safetensors *st, const void *buf, size_t n, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    mmp_meta_init(&st->meta);
    if (errlen) err[0] = 0;
    const uint8_t *b = buf;
    json_t *h = NULL;
    if (n < 8) FAIL("file too short for a safetensors header (%zu bytes)", n);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)b[i] << (8 * i);
    if (hlen > MAX_HEADER) FAIL("header length %llu is larger than the 100 MiB limit", (unsigned long long)hlen);
    if (hlen > n - 8) FAIL("header length %llu runs past the end of the file (%zu bytes)", (unsigned long long)hlen, n);
    if (hlen < 2) FAIL("header is too short");
    const uint8_t *data = b + 8 + hlen;
    uint64_t dlen = n - 8 - hlen;
    char e2[512];
    if (!(h = mmp_json_parse(b + 8, hlen, 1, e2, sizeof e2))) FAIL("bad header JSON: %s", e2);
    if (!json_is_object(h)) FAIL("bad header JSON: expected '{' (an object), got %s", mmp_json_type_name(h));
    /* jansson refused duplicate names; keys come in file order */
    st->entries = mmp_xcalloc(json_object_size(h) ? json_object_size(h) : 1, sizeof *st->entries);
    const char *key;
    json_t *v;
    json_object_foreach(h, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v)) FAIL("__metadata__ is %s, expected an object", mmp_json_type_name(v));
            const char *k;
            json_t *s;
            json_object_foreach(v, k, s) {
                if (!json_is_string(s)) FAIL("__metadata__ value of '%s' is not a string", k);
                mmp_meta_set(&st->meta, k, json_string_value(s));
            }
            continue;
        }
        mmp_st_entry *e = &st->entries[st->n++];
        e->name = mmp_xstrdup(key);
        if (parse_entry(e, key, v, data, dlen, err, errlen)) goto fail;
    }
    json_decref(h);
    h = NULL;
    /* no overlap, no holes */
    if (st->n > 1) qsort(st->entries, (size_t)st->n, sizeof *st->entries, cmp_entry);
    uint64_t pos = 0;
    for (int i = 0; i < st->n; i++) {
        uint64_t b0 = (uint64_t)((const uint8_t *)st->entries[i].t.data - data);
        if (b0 < pos) FAIL("tensor '%s' overlaps the previous tensor", st->entries[i].name);
        if (b0 > pos) FAIL("gap in the data region before tensor '%s'", st->entries[i].name);
        pos = b0 + st->entries[i].t.nbytes;
    }
    if (pos != dlen) FAIL("data region has %llu bytes but the tensors cover %llu", (unsigned long long)dlen, (unsigned long long)pos);
    return 0;
fail:
    json_decref(h);
    if (errlen && !err[0]) mmp_errf(err, errlen, "bad safetensors header");
    mmp_err_oneline(err, errlen); /* names from the file may hold control characters */
    st_reset(st);
    return -1;
}

int mmp_st_open(mmp_safetensors *st, const char *path, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    char e2[512] = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mmp_errf(err, errlen, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return mmp_errf(err, errlen, "%s: not a regular file", path);
    }
    size_t n = (size_t)sb.st_size;
    void *map = NULL;
    if (n > 0) {
        map = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return mmp_errf(err, errlen, "%s: mmap: %s", path, strerror(e));
        }
    }
    close(fd);
    if (mmp_st_parse(st, map ? map : "", n, e2, sizeof e2)) {
        if (map) munmap(map, n);
        return mmp_errf(err, errlen, "%s: %s", path, e2);
    }
    st->map = map;
    st->mapsize = n;
    st->path = mmp_xstrdup(path);
    return 0;
}

void mmp_st_close(mmp_safetensors *st) {
    st_reset(st);
    if (st->map) munmap(st->map, st->mapsize);
    free(st->path);
    memset(st, 0, sizeof *st);
}

const mmp_tensor *mmp_st_get(const mmp_safetensors *st, const char *name) {
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->entries[i].name, name) == 0) return &st->entries[i].t;
    return NULL;
}

void mmp_st_open_or_die(mmp_safetensors *st, const char *path) {
    char err[1024];
    if (mmp_st_open(st, path, err, sizeof err)) mmp_die("%s", err);
}

/* The tensor when it exists with this dtype (MMP_DTYPE_COUNT: any float
 * dtype) and shape; else NULL with "PATH: tensor 'NAME' ..." in err. */
static const mmp_tensor *st_check(const mmp_safetensors *st, const char *name, mmp_dtype dtype, int ndim,
                                  const int64_t *shape, char *err, size_t errlen) {
    const char *path = st->path ? st->path : "safetensors";
    const mmp_tensor *t = mmp_st_get(st, name);
    if (!t) {
        mmp_errf(err, errlen, "%s: tensor '%s' is missing", path, name);
        return NULL;
    }
    if (dtype == MMP_DTYPE_COUNT ? t->dtype != MMP_F32 && t->dtype != MMP_F16 && t->dtype != MMP_BF16 : t->dtype != dtype) {
        mmp_errf(err, errlen, "%s: tensor '%s' is %s, expected %s", path, name, mmp_dtype_st_name(t->dtype),
                 dtype == MMP_DTYPE_COUNT ? "a float dtype (F32, F16 or BF16)" : mmp_dtype_st_name(dtype));
        return NULL;
    }
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        char a[128], b[128];
        mmp_shape_str(t->ndim, t->shape, a, sizeof a);
        mmp_shape_str(ndim, shape, b, sizeof b);
        mmp_errf(err, errlen, "%s: tensor '%s' has shape %s, expected %s", path, name, a, b);
        return NULL;
    }
    return t;
}

const mmp_tensor *mmp_st_require(const mmp_safetensors *st, const char *name, mmp_dtype dtype,
                                 int ndim, const int64_t *shape) {
    char err[1024];
    const mmp_tensor *t = st_check(st, name, dtype, ndim, shape, err, sizeof err);
    if (!t) mmp_die("%s", err);
    return t;
}

int mmp_st_read_f32(const mmp_safetensors *st, const char *name, int ndim, const int64_t *shape, float *out,
                    char *err, size_t errlen) {
    const mmp_tensor *t = st_check(st, name, MMP_DTYPE_COUNT, ndim, shape, err, errlen);
    if (!t) return -1;
    mmp_tensor_to_f32(t, out);
    return 0;
}

float *mmp_st_f32(const mmp_safetensors *st, const char *name, int ndim, const int64_t *shape, char *err,
                  size_t errlen) {
    const mmp_tensor *t = st_check(st, name, MMP_DTYPE_COUNT, ndim, shape, err, errlen);
    if (!t) return NULL;
    float *out = mmp_xmalloc(sizeof(float) * ((size_t)mmp_numel(ndim, shape) + 1));
    mmp_tensor_to_f32(t, out);
    return out;
}

/* ---------------- writer ---------------- */

void mmp_st_writer_init(mmp_st_writer *w) {
    memset(w, 0, sizeof *w);
    mmp_meta_init(&w->meta);
}

void mmp_st_writer_add(mmp_st_writer *w, const char *name, const mmp_tensor *t) {
    if (strcmp(name, "__metadata__") == 0) mmp_die("'__metadata__' is not a valid tensor name");
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->names[i], name) == 0) mmp_die("safetensors writer: tensor '%s' added twice", name);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->names = mmp_xrealloc(w->names, (size_t)w->cap * sizeof *w->names);
        w->tensors = mmp_xrealloc(w->tensors, (size_t)w->cap * sizeof *w->tensors);
    }
    w->names[w->n] = mmp_xstrdup(name);
    mmp_tensor_copy(&w->tensors[w->n], t);
    w->n++;
}

void mmp_st_writer_add_f32(mmp_st_writer *w, const char *name, const float *data, int ndim,
                           const int64_t *shape) {
    mmp_tensor t = {.dtype = MMP_F32, .ndim = ndim, .data = (void *)data};
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    t.nbytes = (size_t)mmp_numel(ndim, shape) * 4;
    mmp_st_writer_add(w, name, &t);
}

void mmp_st_writer_free(mmp_st_writer *w) {
    for (int i = 0; i < w->n; i++) {
        free(w->names[i]);
        mmp_tensor_free(&w->tensors[i]);
    }
    free(w->names);
    free(w->tensors);
    mmp_meta_free(&w->meta);
    memset(w, 0, sizeof *w);
}

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->s = mmp_xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* a JSON string: the one escaper (json.h); invalid UTF-8 becomes U+FFFD, since
 * a header must be UTF-8 to be read back (here with jansson, or by the
 * reference implementation) */
static void sb_json(sbuf *b, const char *s) {
    char *q = mmp_json_quote(s, MMP_JSON_ESC_UTF8);
    sb_str(b, q);
    free(q);
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

int mmp_st_writer_write(mmp_st_writer *w, const char *path, char *err, size_t errlen) {
    sbuf h = {0};
    char num[64];
    sb_str(&h, "{");
    int first = 1;
    if (w->meta.n) {
        sb_str(&h, "\"__metadata__\":{");
        for (int i = 0; i < w->meta.n; i++) {
            if (i) sb_str(&h, ",");
            sb_json(&h, w->meta.keys[i]);
            sb_str(&h, ":");
            sb_json(&h, w->meta.vals[i]);
        }
        sb_str(&h, "}");
        first = 0;
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const mmp_tensor *t = &w->tensors[i];
        if (!first) sb_str(&h, ",");
        first = 0;
        sb_json(&h, w->names[i]);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, mmp_dtype_st_name(t->dtype));
        sb_str(&h, "\",\"shape\":[");
        for (int k = 0; k < t->ndim; k++) {
            snprintf(num, sizeof num, "%s%lld", k ? "," : "", (long long)t->shape[k]);
            sb_str(&h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + t->nbytes));
        sb_str(&h, num);
        off += t->nbytes;
    }
    sb_str(&h, "}");
    while (h.n % 8) sb_str(&h, " "); /* align the data region to 8 bytes */

    /* temp file in the same directory, then fsync + rename: never a half-written file under path */
    char *tmp = mmp_xasprintf("%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        free(h.s);
        return mmp_errf(err, errlen, "%s: cannot create a temporary file: %s", path, strerror(e));
    }
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    int bad = write_all(fd, lenb, 8) || write_all(fd, h.s, h.n);
    for (int i = 0; !bad && i < w->n; i++) bad = write_all(fd, w->tensors[i].data, w->tensors[i].nbytes);
    if (!bad) bad = fsync(fd);
    int saved = errno;
    if (close(fd) && !bad) { bad = 1; saved = errno; }
    free(h.s);
    if (!bad) {
        chmod(tmp, 0644);
        if (rename(tmp, path)) { bad = 1; saved = errno; }
    }
    if (bad) {
        unlink(tmp);
        free(tmp);
        return mmp_errf(err, errlen, "%s: write failed: %s", path, strerror(saved));
    }
    free(tmp);
    /* make the rename durable */
    char *dcopy = mmp_xstrdup(path);
    int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dcopy);
    return 0;
}

void mmp_st_writer_write_or_die(mmp_st_writer *w, const char *path) {
    char err[1024];
    if (mmp_st_writer_write(w, path, err, sizeof err)) mmp_die("%s", err);
}
