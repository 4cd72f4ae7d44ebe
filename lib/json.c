/* JSON reading on jansson, and JSON string writing; see json.h. */
#include "json.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"

/* ---------------- reading ---------------- */

void mmp_err_oneline(char *err, size_t errlen) {
    if (!err || !errlen) return;
    char tmp[1024];
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)err; *p && o + 5 < sizeof tmp; p++) {
        if (*p < 0x20 || *p == 0x7f) o += (size_t)snprintf(tmp + o, sizeof tmp - o, "\\x%02x", *p);
        else tmp[o++] = (char)*p;
    }
    tmp[o] = 0;
    snprintf(err, errlen, "%s", tmp);
}

static int errpos(char *err, size_t errlen, int line0, int line, int column, const char *what) {
    mmp_errf(err, errlen, "line %d, column %d: %s", (line0 > 1 ? line0 - 1 : 0) + (line > 0 ? line : 1),
             column > 0 ? column : 1, what);
    mmp_err_oneline(err, errlen);
    return -1;
}

/* 0 when no array/object in v is nested deeper than `left` levels */
static int too_deep(const json_t *v, int left) {
    if (!json_is_object(v) && !json_is_array(v)) return 0;
    if (left <= 0) return 1;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (too_deep(json_array_get(v, i), left - 1)) return 1;
        return 0;
    }
    const char *k;
    const json_t *m;
    json_object_foreach((json_t *)v, k, m) if (too_deep(m, left - 1)) return 1;
    return 0;
}

json_t *mmp_json_parse(const void *buf, size_t n, int line0, char *err, size_t errlen) {
    json_error_t je;
    /* JSON_DISABLE_EOF_CHECK: what follows the value is checked here, for a clearer message */
    json_t *v = json_loadb(buf, n, JSON_REJECT_DUPLICATES | JSON_DISABLE_EOF_CHECK, &je);
    if (!v) {
        const char *what = je.text;
        char tmp[JSON_ERROR_TEXT_LENGTH + 64];
        if (json_error_code(&je) == json_error_null_character) { /* jansson names its flag */
            const char *near = strstr(je.text, " near ");
            snprintf(tmp, sizeof tmp, "NUL character (\\u0000) in a string%s", near ? near : "");
            what = tmp;
        }
        errpos(err, errlen, line0, je.line, je.column, what);
        return NULL;
    }
    const char *s = buf;
    size_t pos = je.position > 0 ? (size_t)je.position : 0;
    int line = 1;
    size_t bol = 0;
    for (size_t i = 0; i < pos && i < n; i++)
        if (s[i] == '\n') line++, bol = i + 1;
    for (size_t i = pos; i < n; i++) {
        if (s[i] == '\n') {
            line++, bol = i + 1;
        } else if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') {
            json_decref(v);
            errpos(err, errlen, line0, line, (int)(i - bol) + 1, "trailing bytes after the JSON value");
            return NULL;
        }
    }
    if (too_deep(v, MMP_JSON_MAX_DEPTH)) {
        json_decref(v);
        mmp_errf(err, errlen, "line %d: nested too deeply (more than %d levels)", line0 > 1 ? line0 : 1,
                 MMP_JSON_MAX_DEPTH);
        return NULL;
    }
    return v;
}

char *mmp_read_small_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0, r;
    char *buf = mmp_xmalloc(cap + 1);
    while ((r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) buf = mmp_xrealloc(buf, (cap *= 2) + 1);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    buf[len] = 0;
    if (n) *n = len;
    return buf;
}

int mmp_json_load(const char *path, json_t **out, char *err, size_t errlen) {
    *out = NULL;
    size_t n;
    char *buf = mmp_read_small_file(path, &n);
    if (!buf) {
        if (errno == ENOENT) return 0;
        return mmp_errf(err, errlen, "%s: %s", path, strerror(errno));
    }
    char e2[512];
    *out = mmp_json_parse(buf, n, 1, e2, sizeof e2);
    free(buf);
    if (!*out) return mmp_errf(err, errlen, "%s: %s", path, e2);
    return 1;
}

const char *mmp_json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* the member, NULL when absent or null */
static const json_t *member(const json_t *obj, const char *key) {
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_null(v) ? NULL : v;
}

static int wrong(const json_t *v, const char *key, const char *want, char *err, size_t errlen) {
    return mmp_errf(err, errlen, "\"%s\" is %s, expected %s", key, mmp_json_type_name(v), want);
}

int mmp_json_get_num(const json_t *obj, const char *key, double *out, char *err, size_t errlen) {
    const json_t *v = member(obj, key);
    if (!v) return 0;
    if (!json_is_number(v)) return wrong(v, key, "a number", err, errlen);
    *out = json_number_value(v);
    return 1;
}

int mmp_json_get_int(const json_t *obj, const char *key, int64_t lo, int64_t hi, int64_t *out, char *err,
                     size_t errlen) {
    const json_t *v = member(obj, key);
    if (!v) return 0;
    if (!json_is_integer(v)) return wrong(v, key, "an integer", err, errlen);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return mmp_errf(err, errlen, "\"%s\" is %lld, expected %lld to %lld", key, (long long)x, (long long)lo,
                        (long long)hi);
    *out = (int64_t)x;
    return 1;
}

int mmp_json_get_bool(const json_t *obj, const char *key, int *out, char *err, size_t errlen) {
    const json_t *v = member(obj, key);
    if (!v) return 0;
    if (!json_is_boolean(v)) return wrong(v, key, "true or false", err, errlen);
    *out = json_is_true(v);
    return 1;
}

int mmp_json_get_str(const json_t *obj, const char *key, const char **out, char *err, size_t errlen) {
    const json_t *v = member(obj, key);
    if (!v) return 0;
    if (!json_is_string(v)) return wrong(v, key, "a string", err, errlen);
    *out = json_string_value(v);
    return 1;
}

int mmp_json_strings(const char *js, int *n, char ***out, char *err, size_t errlen) {
    *n = 0;
    *out = NULL;
    if (!js) return 0;
    char e2[512];
    json_t *a = mmp_json_parse(js, strlen(js), 1, e2, sizeof e2);
    if (!a) return mmp_errf(err, errlen, "%s", e2);
    size_t cnt = json_array_size(a);
    if (!json_is_array(a) || cnt > INT_MAX) {
        json_decref(a);
        return mmp_errf(err, errlen, "expected a JSON array of strings");
    }
    for (size_t i = 0; i < cnt; i++)
        if (!json_is_string(json_array_get(a, i))) {
            mmp_errf(err, errlen, "item %zu is %s, expected a string", i, mmp_json_type_name(json_array_get(a, i)));
            json_decref(a);
            return -1;
        }
    *out = cnt ? mmp_xmalloc(cnt * sizeof **out) : NULL;
    for (size_t i = 0; i < cnt; i++) (*out)[i] = mmp_xstrdup(json_string_value(json_array_get(a, i)));
    *n = (int)cnt;
    json_decref(a);
    return 0;
}

/* ---------------- writing ---------------- */

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid
 * (overlong forms, surrogates and code points above U+10FFFF are invalid). */
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

void mmp_json_put_str(FILE *f, const char *s, unsigned flags) {
    if (!s) {
        fputs("null", f);
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), run = 0; /* p[run, i) is copied as it is */
    putc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t keep = 0; /* bytes copied as they are; 0 = escaped */
        if (c >= 0x20 && c != '"' && c != '\\')
            keep = c < 0x80 || !(flags & MMP_JSON_ESC_UTF8) ? 1 : utf8_len(p + i, n - i);
        if (keep) {
            i += keep;
            continue;
        }
        fwrite(p + run, 1, i - run, f);
        if (c == '"' || c == '\\') {
            putc('\\', f);
            putc((int)c, f);
        } else if (c >= 0x80) {
            fputs("\\ufffd", f); /* not UTF-8, with MMP_JSON_ESC_UTF8 */
        } else if ((flags & MMP_JSON_ESC_NT) && (c == '\n' || c == '\t')) {
            fputs(c == '\n' ? "\\n" : "\\t", f);
        } else if ((flags & MMP_JSON_ESC_R) && c == '\r') {
            fputs("\\r", f);
        } else {
            fprintf(f, "\\u%04x", c);
        }
        run = ++i;
    }
    fwrite(p + run, 1, n - run, f);
    putc('"', f);
}

char *mmp_json_quote(const char *s, unsigned flags) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) mmp_die("out of memory");
    mmp_json_put_str(f, s, flags);
    if (fclose(f)) mmp_die("out of memory");
    return buf;
}
