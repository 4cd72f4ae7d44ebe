/* safetensors read (mmap, validated) and atomic write. Spec: formats/safetensors.md.
 *
 * File = u64 little-endian N, N bytes of UTF-8 JSON header, data region.
 * Header = {"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...,
 *           "__metadata__": {"key": "value", ...}} with offsets relative to the
 * data region. */
#include "mmp.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER (100u << 20) /* as the reference implementation */

/* ---------------- a small strict JSON reader for the header ---------------- */

typedef struct {
    const char *p, *end;
    char *err;
    size_t errlen;
} jp;

static int jfail(jp *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int jfail(jp *j, const char *fmt, ...) {
    if (j->err && j->errlen && !j->err[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(j->err, j->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void jws(jp *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int jexpect(jp *j, char c) {
    jws(j);
    if (j->p >= j->end || *j->p != c) return jfail(j, "bad header JSON: expected '%c'", c);
    j->p++;
    return 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void put_utf8(char *o, size_t *n, uint32_t cp) {
    if (cp < 0x80) o[(*n)++] = (char)cp;
    else if (cp < 0x800) { o[(*n)++] = (char)(0xc0 | (cp >> 6)); o[(*n)++] = (char)(0x80 | (cp & 0x3f)); }
    else if (cp < 0x10000) {
        o[(*n)++] = (char)(0xe0 | (cp >> 12)); o[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[(*n)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        o[(*n)++] = (char)(0xf0 | (cp >> 18)); o[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        o[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[(*n)++] = (char)(0x80 | (cp & 0x3f));
    }
}

static int read_u4(jp *j, uint32_t *v) {
    if (j->end - j->p < 4) return jfail(j, "bad header JSON: short \\u escape");
    uint32_t x = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(j->p[i]);
        if (h < 0) return jfail(j, "bad header JSON: bad \\u escape");
        x = x * 16 + (uint32_t)h;
    }
    j->p += 4;
    *v = x;
    return 0;
}

/* Parses a JSON string into a fresh heap string (NUL-terminated; embedded NUL rejected). */
static int jstring(jp *j, char **out) {
    jws(j);
    if (j->p >= j->end || *j->p != '"') return jfail(j, "bad header JSON: expected a string");
    j->p++;
    const char *s = j->p;
    size_t cap = 16;
    while (s < j->end && *s != '"') { if (*s == '\\') s++; s++; cap++; }
    char *o = mmp_xmalloc(cap * 4 + 4);
    size_t n = 0;
    while (1) {
        if (j->p >= j->end) { free(o); return jfail(j, "bad header JSON: unterminated string"); }
        unsigned char c = (unsigned char)*j->p++;
        if (c == '"') break;
        if (c < 0x20) { free(o); return jfail(j, "bad header JSON: control character in string"); }
        if (c != '\\') { o[n++] = (char)c; continue; }
        if (j->p >= j->end) { free(o); return jfail(j, "bad header JSON: unterminated escape"); }
        char e = *j->p++;
        uint32_t cp;
        switch (e) {
        case '"': o[n++] = '"'; break;
        case '\\': o[n++] = '\\'; break;
        case '/': o[n++] = '/'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'n': o[n++] = '\n'; break;
        case 'r': o[n++] = '\r'; break;
        case 't': o[n++] = '\t'; break;
        case 'u':
            if (read_u4(j, &cp)) { free(o); return -1; }
            if (cp >= 0xd800 && cp < 0xdc00) {
                uint32_t lo;
                if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u') { free(o); return jfail(j, "bad header JSON: lone surrogate"); }
                j->p += 2;
                if (read_u4(j, &lo)) { free(o); return -1; }
                if (lo < 0xdc00 || lo >= 0xe000) { free(o); return jfail(j, "bad header JSON: bad surrogate pair"); }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp < 0xe000) {
                free(o);
                return jfail(j, "bad header JSON: lone surrogate");
            }
            if (cp == 0) { free(o); return jfail(j, "bad header JSON: NUL in string"); }
            put_utf8(o, &n, cp);
            break;
        default: free(o); return jfail(j, "bad header JSON: bad escape \\%c", e);
        }
    }
    o[n] = 0;
    *out = o;
    return 0;
}

static int jint(jp *j, int64_t *v) {
    jws(j);
    const char *s = j->p;
    int neg = 0;
    if (s < j->end && *s == '-') { neg = 1; s++; }
    if (s >= j->end || *s < '0' || *s > '9') return jfail(j, "bad header JSON: expected an integer");
    uint64_t x = 0;
    while (s < j->end && *s >= '0' && *s <= '9') {
        if (x > (UINT64_MAX - 9) / 10) return jfail(j, "bad header JSON: integer too large");
        x = x * 10 + (uint64_t)(*s - '0');
        s++;
    }
    if (s < j->end && (*s == '.' || *s == 'e' || *s == 'E')) return jfail(j, "bad header JSON: expected an integer");
    if (x > (uint64_t)INT64_MAX) return jfail(j, "bad header JSON: integer too large");
    j->p = s;
    *v = neg ? -(int64_t)x : (int64_t)x;
    return 0;
}

static int jint_array(jp *j, int64_t *v, int maxn, int *n) {
    if (jexpect(j, '[')) return -1;
    *n = 0;
    jws(j);
    if (j->p < j->end && *j->p == ']') { j->p++; return 0; }
    while (1) {
        if (*n >= maxn) return jfail(j, "array too long (max %d)", maxn);
        if (jint(j, &v[(*n)++])) return -1;
        jws(j);
        if (j->p < j->end && *j->p == ',') { j->p++; continue; }
        return jexpect(j, ']');
    }
}

/* Skips any JSON value (for unknown keys), with a depth bound. */
static int jskip(jp *j, int depth) {
    if (depth > 32) return jfail(j, "bad header JSON: nested too deeply");
    jws(j);
    if (j->p >= j->end) return jfail(j, "bad header JSON: unexpected end");
    char c = *j->p;
    if (c == '"') { char *s; if (jstring(j, &s)) return -1; free(s); return 0; }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        jws(j);
        if (j->p < j->end && *j->p == close) { j->p++; return 0; }
        while (1) {
            if (c == '{') { char *k; if (jstring(j, &k)) return -1; free(k); if (jexpect(j, ':')) return -1; }
            if (jskip(j, depth + 1)) return -1;
            jws(j);
            if (j->p < j->end && *j->p == ',') { j->p++; continue; }
            return jexpect(j, close);
        }
    }
    const char *s = j->p;
    while (s < j->end && (strchr("+-.eE", *s) || (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z'))) s++;
    if (s == j->p) return jfail(j, "bad header JSON: unexpected character");
    j->p = s;
    return 0;
}

/* ---------------- reader ---------------- */

/* Error messages quote names from the file: show control characters as \xNN
 * so that a message is always one printable line. */
static void one_line(char *err, size_t errlen) {
    if (!errlen) return;
    char tmp[1024];
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)err; *p && o + 5 < sizeof tmp; p++) {
        if (*p < 0x20 || *p == 0x7f) o += (size_t)snprintf(tmp + o, sizeof tmp - o, "\\x%02x", *p);
        else tmp[o++] = (char)*p;
    }
    tmp[o] = 0;
    snprintf(err, errlen, "%s", tmp);
}

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

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); goto fail; } while (0)

int mmp_st_parse(mmp_safetensors *st, const void *buf, size_t n, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    mmp_meta_init(&st->meta);
    if (errlen) err[0] = 0;
    const uint8_t *b = buf;
    int cap = 0;
    if (n < 8) FAIL("file too short for a safetensors header (%zu bytes)", n);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)b[i] << (8 * i);
    if (hlen > MAX_HEADER) FAIL("header length %llu is larger than the 100 MiB limit", (unsigned long long)hlen);
    if (hlen > n - 8) FAIL("header length %llu runs past the end of the file (%zu bytes)", (unsigned long long)hlen, n);
    if (hlen < 2) FAIL("header is too short");
    const uint8_t *data = b + 8 + hlen;
    uint64_t dlen = n - 8 - hlen;
    jp j = {(const char *)b + 8, (const char *)b + 8 + hlen, err, errlen};
    if (jexpect(&j, '{')) goto fail;
    jws(&j);
    int empty = j.p < j.end && *j.p == '}';
    if (empty) j.p++;
    while (!empty) {
        char *key;
        if (jstring(&j, &key)) goto fail;
        if (jexpect(&j, ':')) { free(key); goto fail; }
        if (strcmp(key, "__metadata__") == 0) {
            free(key);
            if (jexpect(&j, '{')) goto fail;
            jws(&j);
            if (j.p < j.end && *j.p == '}') j.p++;
            else while (1) {
                char *k, *v;
                if (jstring(&j, &k)) goto fail;
                if (jexpect(&j, ':')) { free(k); goto fail; }
                jws(&j);
                if (j.p >= j.end || *j.p != '"') { snprintf(err, errlen, "__metadata__ value of '%s' is not a string", k); free(k); goto fail; }
                if (jstring(&j, &v)) { free(k); goto fail; }
                mmp_meta_set(&st->meta, k, v);
                free(k); free(v);
                jws(&j);
                if (j.p < j.end && *j.p == ',') { j.p++; continue; }
                if (jexpect(&j, '}')) goto fail;
                break;
            }
        } else {
            for (int i = 0; i < st->n; i++)
                if (strcmp(st->entries[i].name, key) == 0) { snprintf(err, errlen, "tensor '%s' appears twice", key); free(key); goto fail; }
            if (st->n == cap) {
                cap = cap ? 2 * cap : 64;
                st->entries = mmp_xrealloc(st->entries, (size_t)cap * sizeof *st->entries);
            }
            mmp_st_entry *e = &st->entries[st->n++];
            memset(e, 0, sizeof *e);
            e->name = key;
            int have_dtype = 0, have_shape = 0, have_off = 0;
            int64_t off[2] = {0, 0};
            if (jexpect(&j, '{')) goto fail;
            while (1) {
                char *f;
                if (jstring(&j, &f)) goto fail;
                if (jexpect(&j, ':')) { free(f); goto fail; }
                if (strcmp(f, "dtype") == 0) {
                    char *d;
                    free(f);
                    if (jstring(&j, &d)) goto fail;
                    if (mmp_dtype_parse(d, strlen(d), &e->t.dtype) || strcmp(d, mmp_dtype_st_name(e->t.dtype))) {
                        snprintf(err, errlen, "tensor '%s': unsupported dtype '%s' (supported: U8 I32 I64 F16 BF16 F32)", key, d);
                        free(d);
                        goto fail;
                    }
                    free(d);
                    have_dtype = 1;
                } else if (strcmp(f, "shape") == 0) {
                    free(f);
                    if (jint_array(&j, e->t.shape, MMP_MAX_DIMS, &e->t.ndim)) goto fail;
                    for (int k = 0; k < e->t.ndim; k++)
                        if (e->t.shape[k] < 0) FAIL("tensor '%s': negative dimension", key);
                    have_shape = 1;
                } else if (strcmp(f, "data_offsets") == 0) {
                    int cnt;
                    free(f);
                    if (jint_array(&j, off, 2, &cnt)) goto fail;
                    if (cnt != 2) FAIL("tensor '%s': data_offsets needs 2 numbers", key);
                    have_off = 1;
                } else {
                    free(f);
                    if (jskip(&j, 0)) goto fail;
                }
                jws(&j);
                if (j.p < j.end && *j.p == ',') { j.p++; continue; }
                if (jexpect(&j, '}')) goto fail;
                break;
            }
            if (!have_dtype || !have_shape || !have_off) FAIL("tensor '%s': needs dtype, shape and data_offsets", key);
            int64_t numel = mmp_numel(e->t.ndim, e->t.shape);
            if (numel < 0 || (uint64_t)numel > UINT64_MAX / 8) FAIL("tensor '%s': shape overflows", key);
            uint64_t want = (uint64_t)numel * mmp_dtype_size(e->t.dtype);
            if (off[0] < 0 || off[1] < off[0]) FAIL("tensor '%s': bad data_offsets [%lld, %lld]", key, (long long)off[0], (long long)off[1]);
            if ((uint64_t)off[1] > dlen) FAIL("tensor '%s': data_offsets end %lld is past the data (%llu bytes)", key, (long long)off[1], (unsigned long long)dlen);
            if ((uint64_t)(off[1] - off[0]) != want) FAIL("tensor '%s': %lld bytes in the file but its shape needs %llu", key, (long long)(off[1] - off[0]), (unsigned long long)want);
            e->t.data = (void *)(data + off[0]);
            e->t.nbytes = (size_t)want;
            e->t.owns = 0;
        }
        jws(&j);
        if (j.p < j.end && *j.p == ',') { j.p++; continue; }
        if (jexpect(&j, '}')) goto fail;
        break;
    }
    jws(&j);
    if (j.p != j.end) FAIL("bad header JSON: trailing bytes after the header object");
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
    if (errlen && !err[0]) snprintf(err, errlen, "bad safetensors header");
    one_line(err, errlen);
    st_reset(st);
    return -1;
}

int mmp_st_open(mmp_safetensors *st, const char *path, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    char e2[512] = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return -1; }
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    size_t n = (size_t)sb.st_size;
    void *map = NULL;
    if (n > 0) {
        map = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) { snprintf(err, errlen, "%s: mmap: %s", path, strerror(errno)); close(fd); return -1; }
    }
    close(fd);
    if (mmp_st_parse(st, map ? map : "", n, e2, sizeof e2)) {
        snprintf(err, errlen, "%s: %s", path, e2);
        if (map) munmap(map, n);
        return -1;
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

const mmp_tensor *mmp_st_require(const mmp_safetensors *st, const char *name, mmp_dtype dtype,
                                 int ndim, const int64_t *shape) {
    const char *path = st->path ? st->path : "safetensors";
    const mmp_tensor *t = mmp_st_get(st, name);
    if (!t) mmp_die("%s: tensor '%s' is missing", path, name);
    if (t->dtype != dtype)
        mmp_die("%s: tensor '%s' is %s, expected %s", path, name, mmp_dtype_st_name(t->dtype), mmp_dtype_st_name(dtype));
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        char a[128], b[128];
        mmp_shape_str(t->ndim, t->shape, a, sizeof a);
        mmp_shape_str(ndim, shape, b, sizeof b);
        mmp_die("%s: tensor '%s' has shape %s, expected %s", path, name, a, b);
    }
    return t;
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

static void sb_json(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char tmp[8];
        if (*p == '"' || *p == '\\') { tmp[0] = '\\'; tmp[1] = (char)*p; sb_put(b, tmp, 2); }
        else if (*p < 0x20) { snprintf(tmp, sizeof tmp, "\\u%04x", *p); sb_put(b, tmp, 6); }
        else sb_put(b, (const char *)p, 1);
    }
    sb_put(b, "\"", 1);
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
        snprintf(err, errlen, "%s: cannot create a temporary file: %s", path, strerror(errno));
        free(tmp);
        free(h.s);
        return -1;
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
        snprintf(err, errlen, "%s: write failed: %s", path, strerror(saved));
        unlink(tmp);
        free(tmp);
        return -1;
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
