/* libmmp core: errors, memory, dtypes, tensors, metadata, records, headers. */
#include "mmp.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* errors and memory                                                   */
/* ------------------------------------------------------------------ */

static char g_progname[64] = "mmp";

/* The build's baseline is x86-64-v3 (AVX2, FMA; the Makefile's OPT): on an
 * older CPU the first AVX instruction would kill the program with SIGILL and
 * no word. This runs before main (core.o is in every program and in the
 * shared library), is itself compiled for plain x86-64, and stops with one
 * line instead. The kernels above the baseline are chosen at run time
 * (lib/cpu.h). */
__attribute__((constructor, target("arch=x86-64"))) static void mmp_check_baseline(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return;
    static const char msg[] = "mmpipe: this CPU has no AVX2/FMA, which this build of mmpipe needs (x86-64-v3)\n";
    if (write(2, msg, sizeof msg - 1) < 0) { /* nothing more to say */ }
    _exit(2);
}

void mmp_set_progname(const char *name) {
    const char *slash = strrchr(name, '/');
    snprintf(g_progname, sizeof g_progname, "%s", slash ? slash + 1 : name);
}

const char *mmp_progname(void) { return g_progname; }

/* "prog: KINDmessage" on one line of stderr (embedded newlines collapsed) */
static void vmessage(const char *kind, const char *fmt, va_list ap) {
    char buf[2048];
    vsnprintf(buf, sizeof buf, fmt, ap);
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    fprintf(stderr, "%s: %s%s\n", g_progname, kind, buf);
}

void mmp_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
    fflush(stderr);
    exit(1);
}

void mmp_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage("warning: ", fmt, ap);
    va_end(ap);
}

void *mmp_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) mmp_die("out of memory (%zu bytes)", n);
    return p;
}

void *mmp_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) mmp_die("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

void *mmp_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) mmp_die("out of memory (%zu bytes)", n);
    return q;
}

char *mmp_xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = mmp_xmalloc(n);
    memcpy(p, s, n);
    return p;
}

int mmp_errf(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

char *mmp_xasprintf(const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) mmp_die("bad format string");
    char *s = mmp_xmalloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return s;
}

/* ------------------------------------------------------------------ */
/* dtypes                                                              */
/* ------------------------------------------------------------------ */

static const char *dtype_names[MMP_DTYPE_COUNT] = {"u8", "i32", "i64", "f16", "bf16", "f32"};
static const char *dtype_st_names[MMP_DTYPE_COUNT] = {"U8", "I32", "I64", "F16", "BF16", "F32"};
static const size_t dtype_sizes[MMP_DTYPE_COUNT] = {1, 4, 8, 2, 2, 4};

const char *mmp_dtype_name(mmp_dtype d) {
    return (unsigned)d < MMP_DTYPE_COUNT ? dtype_names[d] : "?";
}

const char *mmp_dtype_st_name(mmp_dtype d) {
    return (unsigned)d < MMP_DTYPE_COUNT ? dtype_st_names[d] : "?";
}

size_t mmp_dtype_size(mmp_dtype d) { return (unsigned)d < MMP_DTYPE_COUNT ? dtype_sizes[d] : 0; }

int mmp_dtype_parse(const char *s, size_t len, mmp_dtype *out) {
    for (int i = 0; i < MMP_DTYPE_COUNT; i++) {
        if ((strlen(dtype_names[i]) == len && memcmp(s, dtype_names[i], len) == 0) ||
            (strlen(dtype_st_names[i]) == len && memcmp(s, dtype_st_names[i], len) == 0)) {
            *out = (mmp_dtype)i;
            return 0;
        }
    }
    return -1;
}

/* ------------------------------------------------------------------ */
/* half precision                                                      */
/* ------------------------------------------------------------------ */

static inline uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* IEEE binary16, round to nearest even (as numpy/PyTorch). */
uint16_t mmp_f32_to_f16(float f) {
    uint32_t x = f2u(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0));
    if (ax >= 0x477ff000u) /* rounds to >= 65520 -> inf */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) { /* subnormal half (or zero) */
        /* value = ax as float; half subnormal unit = 2^-24 */
        float a = u2f(ax);
        /* adding 0.5 (2^-1) aligns mantissa so the FPU rounds to nearest even at 2^-24 */
        float r = a + 0.5f;
        return (uint16_t)(sign | (f2u(r) - f2u(0.5f)));
    }
    uint32_t mant_odd = (ax >> 13) & 1u;
    ax += 0xc8000fffu + mant_odd; /* rebias exponent (-112 << 23) and round */
    return (uint16_t)(sign | (ax >> 13));
}

float mmp_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        float v = (float)mant * (1.0f / 16777216.0f); /* 2^-24 */
        return u2f(f2u(v) | sign);
    }
    if (exp == 31) return u2f(sign | 0x7f800000u | (mant << 13));
    return u2f(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t mmp_f32_to_bf16(float f) {
    uint32_t x = f2u(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet nan */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

float mmp_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

/* ------------------------------------------------------------------ */
/* tensors                                                             */
/* ------------------------------------------------------------------ */

int64_t mmp_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] != 0 && n > INT64_MAX / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

void mmp_tensor_alloc(mmp_tensor *t, mmp_dtype dtype, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > MMP_MAX_DIMS) mmp_die("tensor rank %d out of range", ndim);
    if ((unsigned)dtype >= MMP_DTYPE_COUNT) mmp_die("bad dtype %d", (int)dtype);
    int64_t n = mmp_numel(ndim, shape);
    if (n < 0 || (uint64_t)n > SIZE_MAX / 8) mmp_die("tensor shape overflows");
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = (size_t)n * mmp_dtype_size(dtype);
    t->data = mmp_xcalloc(t->nbytes ? t->nbytes : 1, 1);
    t->owns = 1;
}

void mmp_tensor_free(mmp_tensor *t) {
    if (t->owns) free(t->data);
    memset(t, 0, sizeof *t);
}

void mmp_tensor_copy(mmp_tensor *dst, const mmp_tensor *src) {
    mmp_tensor_alloc(dst, src->dtype, src->ndim, src->shape);
    if (src->nbytes) memcpy(dst->data, src->data, src->nbytes);
}

/* out[i] = CONV(element i of d read as T, unaligned) */
#define TO_F32_LOOP(T, CONV)                                        \
    for (int64_t i = 0; i < n; i++) {                               \
        T v;                                                        \
        memcpy(&v, (const char *)d + sizeof(T) * (size_t)i, sizeof(T)); \
        out[i] = CONV(v);                                           \
    }

void mmp_tensor_to_f32(const mmp_tensor *t, float *out) {
    int64_t n = mmp_numel(t->ndim, t->shape);
    const void *d = t->data;
    switch (t->dtype) {
    case MMP_U8:
        TO_F32_LOOP(uint8_t, (float));
        break;
    case MMP_I32:
        TO_F32_LOOP(int32_t, (float));
        break;
    case MMP_I64:
        TO_F32_LOOP(int64_t, (float));
        break;
    case MMP_F16:
        TO_F32_LOOP(uint16_t, mmp_f16_to_f32);
        break;
    case MMP_BF16:
        TO_F32_LOOP(uint16_t, mmp_bf16_to_f32);
        break;
    case MMP_F32:
        memcpy(out, d, (size_t)n * 4);
        break;
    default:
        mmp_die("bad dtype %d", (int)t->dtype);
    }
}

#undef TO_F32_LOOP

void mmp_f32_to_dtype(const float *in, size_t n, mmp_dtype d, void *out) {
    switch (d) {
    case MMP_F32:
        memcpy(out, in, n * 4);
        break;
    case MMP_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t v = mmp_f32_to_f16(in[i]);
            memcpy((char *)out + 2 * i, &v, 2);
        }
        break;
    case MMP_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t v = mmp_f32_to_bf16(in[i]);
            memcpy((char *)out + 2 * i, &v, 2);
        }
        break;
    default:
        mmp_die("mmp_f32_to_dtype: %s is not a float dtype", mmp_dtype_name(d));
    }
}

void mmp_shape_str(int ndim, const int64_t *shape, char *buf, size_t len) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, o < len ? len - o : 0, "[");
    for (int i = 0; i < ndim; i++)
        o += (size_t)snprintf(buf + o, o < len ? len - o : 0, "%s%lld", i ? "," : "",
                              (long long)shape[i]);
    snprintf(buf + o, o < len ? len - o : 0, "]");
}

/* ------------------------------------------------------------------ */
/* metadata                                                            */
/* ------------------------------------------------------------------ */

void mmp_meta_init(mmp_meta *m) { memset(m, 0, sizeof *m); }

void mmp_meta_free(mmp_meta *m) {
    for (int i = 0; i < m->n; i++) {
        free(m->keys[i]);
        free(m->vals[i]);
    }
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

void mmp_meta_copy(mmp_meta *dst, const mmp_meta *src) {
    mmp_meta_init(dst);
    for (int i = 0; i < src->n; i++) mmp_meta_set(dst, src->keys[i], src->vals[i]);
}

void mmp_meta_set(mmp_meta *m, const char *key, const char *val) {
    for (int i = 0; i < m->n; i++) {
        if (strcmp(m->keys[i], key) == 0) {
            char *v = mmp_xstrdup(val);
            free(m->vals[i]);
            m->vals[i] = v;
            return;
        }
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 8;
        m->keys = mmp_xrealloc(m->keys, (size_t)m->cap * sizeof *m->keys);
        m->vals = mmp_xrealloc(m->vals, (size_t)m->cap * sizeof *m->vals);
    }
    m->keys[m->n] = mmp_xstrdup(key);
    m->vals[m->n] = mmp_xstrdup(val);
    m->n++;
}

const char *mmp_meta_get(const mmp_meta *m, const char *key) {
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->keys[i], key) == 0) return m->vals[i];
    return NULL;
}

/* ------------------------------------------------------------------ */
/* records                                                             */
/* ------------------------------------------------------------------ */

void mmp_record_init(mmp_record *r) {
    memset(r, 0, sizeof *r);
    r->label = MMP_NO_LABEL;
}

static void strlist_free(mmp_strlist *l) {
    for (int j = 0; j < l->n; j++) free(l->v[j]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

void mmp_record_clear(mmp_record *r) {
    free(r->id);
    free(r->text);
    for (int i = 0; i < r->nstrlists; i++) strlist_free(&r->strlists[i]);
    for (int i = 0; i < r->nfields; i++) mmp_tensor_free(&r->fields[i].t);
    mmp_record_init(r);
}

void mmp_record_set_id(mmp_record *r, const char *id) {
    char *s = id ? mmp_xstrdup(id) : NULL;
    free(r->id);
    r->id = s;
}

void mmp_record_set_text(mmp_record *r, const char *text) {
    char *s = text ? mmp_xstrdup(text) : NULL;
    free(r->text);
    r->text = s;
}

void mmp_record_set_strings(mmp_record *r, const char *name, const char *const *v, int n) {
    size_t nl = strlen(name);
    if (nl == 0 || nl >= sizeof r->strlists[0].name) mmp_die("string list name must be 1 to 63 bytes: %s", name);
    if (n < 0) n = 0;
    char **copy = n ? mmp_xmalloc((size_t)n * sizeof *copy) : NULL;
    for (int j = 0; j < n; j++) copy[j] = mmp_xstrdup(v[j]);
    mmp_strlist *l = NULL;
    for (int i = 0; i < r->nstrlists; i++)
        if (strcmp(r->strlists[i].name, name) == 0) l = &r->strlists[i];
    if (l) {
        strlist_free(l);
    } else {
        if (r->nstrlists == MMP_MAX_STRLISTS) mmp_die("too many string lists in a record (max %d)", MMP_MAX_STRLISTS);
        l = &r->strlists[r->nstrlists++];
        snprintf(l->name, sizeof l->name, "%s", name);
    }
    l->n = n;
    l->v = copy;
}

const mmp_strlist *mmp_record_strings(const mmp_record *r, const char *name) {
    for (int i = 0; i < r->nstrlists; i++)
        if (strcmp(r->strlists[i].name, name) == 0) return &r->strlists[i];
    return NULL;
}

const char *mmp_record_string(const mmp_record *r, const char *name) {
    const mmp_strlist *l = mmp_record_strings(r, name);
    return l && l->n > 0 ? l->v[0] : NULL;
}

void mmp_record_remove_strings(mmp_record *r, const char *name) {
    for (int i = 0; i < r->nstrlists; i++) {
        if (strcmp(r->strlists[i].name, name) == 0) {
            strlist_free(&r->strlists[i]);
            memmove(&r->strlists[i], &r->strlists[i + 1], (size_t)(r->nstrlists - i - 1) * sizeof r->strlists[0]);
            r->nstrlists--;
            return;
        }
    }
}

void mmp_record_copy_strings(mmp_record *dst, const mmp_record *src) {
    if (dst == src) return;
    for (int i = 0; i < src->nstrlists; i++)
        mmp_record_set_strings(dst, src->strlists[i].name, (const char *const *)src->strlists[i].v, src->strlists[i].n);
}

mmp_tensor *mmp_record_get(mmp_record *r, const char *name) {
    for (int i = 0; i < r->nfields; i++)
        if (strcmp(r->fields[i].name, name) == 0) return &r->fields[i].t;
    return NULL;
}

const mmp_tensor *mmp_record_cget(const mmp_record *r, const char *name) {
    for (int i = 0; i < r->nfields; i++)
        if (strcmp(r->fields[i].name, name) == 0) return &r->fields[i].t;
    return NULL;
}

mmp_tensor *mmp_record_add(mmp_record *r, const char *name, mmp_dtype dtype, int ndim,
                           const int64_t *shape) {
    if (strlen(name) >= sizeof r->fields[0].name) mmp_die("field name too long: %s", name);
    mmp_tensor *t = mmp_record_get(r, name);
    if (t) {
        mmp_tensor_free(t);
    } else {
        if (r->nfields == MMP_MAX_FIELDS) mmp_die("too many fields in a record (max %d)", MMP_MAX_FIELDS);
        mmp_field *f = &r->fields[r->nfields++];
        snprintf(f->name, sizeof f->name, "%s", name);
        t = &f->t;
    }
    mmp_tensor_alloc(t, dtype, ndim, shape);
    return t;
}

void mmp_record_remove(mmp_record *r, const char *name) {
    for (int i = 0; i < r->nfields; i++) {
        if (strcmp(r->fields[i].name, name) == 0) {
            mmp_tensor_free(&r->fields[i].t);
            memmove(&r->fields[i], &r->fields[i + 1], (size_t)(r->nfields - i - 1) * sizeof r->fields[0]);
            r->nfields--;
            return;
        }
    }
}

void mmp_record_move(mmp_record *dst, mmp_record *src) {
    if (dst == src) return;
    mmp_record_clear(dst);
    *dst = *src;
    mmp_record_init(src);
}

void mmp_record_copy(mmp_record *dst, const mmp_record *src) {
    mmp_record tmp;
    mmp_record_init(&tmp);
    tmp.id = src->id ? mmp_xstrdup(src->id) : NULL;
    tmp.text = src->text ? mmp_xstrdup(src->text) : NULL;
    tmp.label = src->label;
    tmp.nfields = src->nfields;
    for (int i = 0; i < src->nfields; i++) {
        memcpy(tmp.fields[i].name, src->fields[i].name, sizeof tmp.fields[i].name);
        mmp_tensor_copy(&tmp.fields[i].t, &src->fields[i].t);
    }
    mmp_record_copy_strings(&tmp, src);
    mmp_record_move(dst, &tmp);
}

/* ------------------------------------------------------------------ */
/* headers                                                             */
/* ------------------------------------------------------------------ */

void mmp_header_init(mmp_header *h) {
    memset(h, 0, sizeof *h);
    mmp_meta_init(&h->meta);
}

void mmp_header_free(mmp_header *h) {
    for (int i = 0; i < h->nclasses; i++) free(h->classes[i]);
    free(h->classes);
    mmp_meta_free(&h->meta);
    mmp_header_init(h);
}

void mmp_header_copy(mmp_header *dst, const mmp_header *src) {
    mmp_header_init(dst);
    dst->nfields = src->nfields;
    memcpy(dst->fields, src->fields, sizeof dst->fields);
    mmp_header_set_classes(dst, src->nclasses, src->classes);
    mmp_meta_copy(&dst->meta, &src->meta);
}

void mmp_header_add_field(mmp_header *h, const char *name, mmp_dtype dtype, int ndim,
                          const int64_t *shape) {
    if (strlen(name) >= sizeof h->fields[0].name) mmp_die("field name too long: %s", name);
    if (ndim < 0 || ndim > MMP_MAX_DIMS) mmp_die("field %s: rank %d out of range", name, ndim);
    mmp_schema_field *f = NULL;
    for (int i = 0; i < h->nfields; i++)
        if (strcmp(h->fields[i].name, name) == 0) f = &h->fields[i];
    if (!f) {
        if (h->nfields == MMP_MAX_FIELDS) mmp_die("too many schema fields (max %d)", MMP_MAX_FIELDS);
        f = &h->fields[h->nfields++];
    }
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    f->dtype = dtype;
    f->ndim = ndim;
    for (int i = 0; i < ndim; i++) f->shape[i] = shape[i];
}

void mmp_header_remove_field(mmp_header *h, const char *name) {
    for (int i = 0; i < h->nfields; i++) {
        if (strcmp(h->fields[i].name, name) == 0) {
            memmove(&h->fields[i], &h->fields[i + 1], (size_t)(h->nfields - i - 1) * sizeof h->fields[0]);
            h->nfields--;
            return;
        }
    }
}

const mmp_schema_field *mmp_header_field(const mmp_header *h, const char *name) {
    for (int i = 0; i < h->nfields; i++)
        if (strcmp(h->fields[i].name, name) == 0) return &h->fields[i];
    return NULL;
}

void mmp_header_set_classes(mmp_header *h, int n, char *const *names) {
    char **c = n > 0 ? mmp_xcalloc((size_t)n, sizeof *c) : NULL;
    for (int i = 0; i < n; i++) c[i] = mmp_xstrdup(names[i]);
    for (int i = 0; i < h->nclasses; i++) free(h->classes[i]);
    free(h->classes);
    h->classes = c;
    h->nclasses = n > 0 ? n : 0;
}

int mmp_header_compatible(const mmp_header *a, const mmp_header *b, char *why, size_t whylen) {
    char sa[128], sb[128];
    for (int i = 0; i < a->nfields; i++) {
        const mmp_schema_field *fa = &a->fields[i];
        const mmp_schema_field *fb = mmp_header_field(b, fa->name);
        if (!fb) {
            snprintf(why, whylen, "field '%s' missing in the second schema", fa->name);
            return 0;
        }
        if (fa->dtype != fb->dtype) {
            snprintf(why, whylen, "field '%s' is %s in one and %s in the other", fa->name,
                     mmp_dtype_name(fa->dtype), mmp_dtype_name(fb->dtype));
            return 0;
        }
        int same = fa->ndim == fb->ndim;
        for (int k = 0; same && k < fa->ndim; k++) same = fa->shape[k] == fb->shape[k];
        if (!same) {
            mmp_shape_str(fa->ndim, fa->shape, sa, sizeof sa);
            mmp_shape_str(fb->ndim, fb->shape, sb, sizeof sb);
            snprintf(why, whylen, "field '%s' has shape %s in one and %s in the other", fa->name, sa, sb);
            return 0;
        }
    }
    for (int i = 0; i < b->nfields; i++) {
        if (!mmp_header_field(a, b->fields[i].name)) {
            snprintf(why, whylen, "field '%s' missing in the first schema", b->fields[i].name);
            return 0;
        }
    }
    if (a->nclasses != b->nclasses) {
        snprintf(why, whylen, "class lists differ (%d vs %d classes)", a->nclasses, b->nclasses);
        return 0;
    }
    for (int i = 0; i < a->nclasses; i++) {
        if (strcmp(a->classes[i], b->classes[i]) != 0) {
            snprintf(why, whylen, "class %d is '%s' in one and '%s' in the other", i, a->classes[i],
                     b->classes[i]);
            return 0;
        }
    }
    if (whylen) why[0] = 0;
    return 1;
}

void mmp_header_stamp(mmp_header *h, int argc, char **argv) {
    size_t len = 1;
    for (int i = 0; i < argc; i++) len += strlen(argv[i]) * 4 + 3;
    char *cmd = mmp_xmalloc(len);
    size_t o = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = i == 0 ? mmp_progname() : argv[i];
        int quote = a[0] == 0 || strpbrk(a, " \t\n'\"\\$`*?;&|<>()") != NULL;
        if (i) cmd[o++] = ' ';
        if (!quote) {
            size_t n = strlen(a);
            memcpy(cmd + o, a, n);
            o += n;
        } else {
            cmd[o++] = '\'';
            for (const char *p = a; *p; p++) {
                if (*p == '\'') {
                    memcpy(cmd + o, "'\\''", 4);
                    o += 4;
                } else {
                    cmd[o++] = (*p == '\n') ? ' ' : *p;
                }
            }
            cmd[o++] = '\'';
        }
    }
    cmd[o] = 0;
    mmp_meta_set(&h->meta, "program", mmp_progname());
    mmp_meta_set(&h->meta, "args", cmd);
    const char *old = mmp_meta_get(&h->meta, "history");
    char *hist = old && old[0] ? mmp_xasprintf("%s\n%s", old, cmd) : mmp_xstrdup(cmd);
    mmp_meta_set(&h->meta, "history", hist);
    free(hist);
    free(cmd);
}
