/* JSON lines view of stream headers and records (mmp-cat); see stream_ext.h. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "mmp.h"
#include "stream_ext.h"

/* JSON string (null for NULL): the one escaper (json.h), short \n \t \r, and
 * invalid UTF-8 bytes as U+FFFD. */
static void json_str(FILE *fp, const char *s) { mmp_json_put_str(fp, s, MMP_JSON_ESC_NT | MMP_JSON_ESC_R | MMP_JSON_ESC_UTF8); }

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
    if (r->nstrlists > 0) { /* only when present: older outputs stay as they were */
        fputs(",\"strings\":{", fp);
        for (int i = 0; i < r->nstrlists; i++) {
            if (i) putc(',', fp);
            json_str(fp, r->strlists[i].name);
            fputs(":[", fp);
            for (int j = 0; j < r->strlists[i].n; j++) {
                if (j) putc(',', fp);
                json_str(fp, r->strlists[i].v[j]);
            }
            putc(']', fp);
        }
        putc('}', fp);
    }
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
