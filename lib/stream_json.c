/* JSON lines view of stream headers and records (mmp-cat); see stream_ext.h. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "stream_ext.h"

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) { len = 2; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { len = 3; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    unsigned cp = c & (0x3f >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

/* JSON string; invalid UTF-8 bytes become U+FFFD. */
static void json_str(FILE *fp, const char *s) {
    if (!s) {
        fputs("null", fp);
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    putc('"', fp);
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        if (c == '"' || c == '\\') {
            putc('\\', fp);
            putc((int)c, fp);
            i++;
        } else if (c < 0x20) {
            switch (c) {
            case '\n': fputs("\\n", fp); break;
            case '\t': fputs("\\t", fp); break;
            case '\r': fputs("\\r", fp); break;
            default: fprintf(fp, "\\u%04x", c); break;
            }
            i++;
        } else if (c < 0x80) {
            putc((int)c, fp);
            i++;
        } else {
            size_t l = utf8_len(p + i, n - i);
            if (l == 0) {
                fputs("\\ufffd", fp);
                i++;
            } else {
                fwrite(p + i, 1, l, fp);
                i += l;
            }
        }
    }
    putc('"', fp);
}

static void json_shape(FILE *fp, int ndim, const int64_t *shape) {
    putc('[', fp);
    for (int d = 0; d < ndim; d++) fprintf(fp, d ? ",%" PRId64 : "%" PRId64, shape[d]);
    putc(']', fp);
}

static void json_double(FILE *fp, double v) {
    if (!isfinite(v)) fputs("null", fp);
    else fprintf(fp, "%.9g", v);
}

static int is_int_dtype(mmp_dtype d) { return d == MMP_U8 || d == MMP_I32 || d == MMP_I64; }

static int64_t int_at(const mmp_tensor *t, size_t i) {
    switch (t->dtype) {
    case MMP_U8: return ((const uint8_t *)t->data)[i];
    case MMP_I32: { int32_t v; memcpy(&v, (const char *)t->data + 4 * i, 4); return v; }
    default: { int64_t v; memcpy(&v, (const char *)t->data + 8 * i, 8); return v; }
    }
}

static double float_at(const mmp_tensor *t, size_t i) {
    switch (t->dtype) {
    case MMP_F32: { float v; memcpy(&v, (const char *)t->data + 4 * i, 4); return v; }
    case MMP_F16: { uint16_t v; memcpy(&v, (const char *)t->data + 2 * i, 2); return mmp_f16_to_f32(v); }
    case MMP_BF16: { uint16_t v; memcpy(&v, (const char *)t->data + 2 * i, 2); return mmp_bf16_to_f32(v); }
    default: return (double)int_at(t, i);
    }
}

/* Nested arrays following the shape (like numpy's tolist()). */
static void json_values(FILE *fp, const mmp_tensor *t, int dim, size_t *idx) {
    if (dim == t->ndim) {
        if (is_int_dtype(t->dtype)) fprintf(fp, "%" PRId64, int_at(t, *idx));
        else json_double(fp, float_at(t, *idx));
        (*idx)++;
        return;
    }
    putc('[', fp);
    for (int64_t i = 0; i < t->shape[dim]; i++) {
        if (i) putc(',', fp);
        json_values(fp, t, dim + 1, idx);
    }
    putc(']', fp);
}

static void json_summary(FILE *fp, const mmp_tensor *t) {
    size_t n = (size_t)mmp_numel(t->ndim, t->shape);
    if (n == 0) {
        fputs(",\"min\":null,\"max\":null,\"mean\":null", fp);
        return;
    }
    double sum = 0;
    if (is_int_dtype(t->dtype)) {
        int64_t mn = INT64_MAX, mx = INT64_MIN;
        for (size_t i = 0; i < n; i++) {
            int64_t v = int_at(t, i);
            if (v < mn) mn = v;
            if (v > mx) mx = v;
            sum += (double)v;
        }
        fprintf(fp, ",\"min\":%" PRId64 ",\"max\":%" PRId64 ",\"mean\":", mn, mx);
    } else {
        double mn = INFINITY, mx = -INFINITY;
        int nan = 0;
        for (size_t i = 0; i < n; i++) {
            double v = float_at(t, i);
            if (v != v) nan = 1;
            if (v < mn) mn = v;
            if (v > mx) mx = v;
            sum += v;
        }
        fputs(",\"min\":", fp);
        json_double(fp, nan ? NAN : mn);
        fputs(",\"max\":", fp);
        json_double(fp, nan ? NAN : mx);
        fputs(",\"mean\":", fp);
    }
    json_double(fp, sum / (double)n);
}

void mmp_header_print_json(FILE *fp, const mmp_header *h) {
    fprintf(fp, "{\"mmpipe\":%d,\"schema\":{", MMP_STREAM_VERSION);
    for (int i = 0; i < h->nfields; i++) {
        const mmp_schema_field *f = &h->fields[i];
        if (i) putc(',', fp);
        json_str(fp, f->name);
        fprintf(fp, ":{\"dtype\":\"%s\",\"shape\":", mmp_dtype_name(f->dtype));
        json_shape(fp, f->ndim, f->shape);
        putc('}', fp);
    }
    fputs("},\"classes\":[", fp);
    for (int i = 0; i < h->nclasses; i++) {
        if (i) putc(',', fp);
        json_str(fp, h->classes[i]);
    }
    fputs("],\"meta\":{", fp);
    for (int i = 0; i < h->meta.n; i++) {
        if (i) putc(',', fp);
        json_str(fp, h->meta.keys[i]);
        putc(':', fp);
        json_str(fp, h->meta.vals[i]);
    }
    fputs("}}\n", fp);
}

void mmp_record_print_json(FILE *fp, const mmp_record *r, const mmp_header *h, int full) {
    fputs("{\"id\":", fp);
    json_str(fp, r->id);
    fputs(",\"label\":", fp);
    if (r->label == MMP_NO_LABEL) fputs("null", fp);
    else fprintf(fp, "%" PRId64, r->label);
    if (h && r->label >= 0 && r->label < h->nclasses) {
        fputs(",\"class\":", fp);
        json_str(fp, h->classes[r->label]);
    }
    fputs(",\"text\":", fp);
    json_str(fp, r->text);
    fputs(",\"tensors\":{", fp);
    for (int i = 0; i < r->nfields; i++) {
        const mmp_tensor *t = &r->fields[i].t;
        if (i) putc(',', fp);
        json_str(fp, r->fields[i].name);
        fprintf(fp, ":{\"dtype\":\"%s\",\"shape\":", mmp_dtype_name(t->dtype));
        json_shape(fp, t->ndim, t->shape);
        json_summary(fp, t);
        if (full) {
            size_t idx = 0;
            fputs(",\"data\":", fp);
            json_values(fp, t, 0, &idx);
        }
        putc('}', fp);
    }
    fputs("}}\n", fp);
}
