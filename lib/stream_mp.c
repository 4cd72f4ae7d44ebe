/* Minimal msgpack encoder/decoder for the mmp stream; see stream_mp.h. */
#include "stream_mp.h"

#include <stdlib.h>
#include <string.h>

#include "mmp.h"

/* ------------------------------------------------------------------ */
/* encoder                                                             */
/* ------------------------------------------------------------------ */

void mp_buf_reserve(mp_buf *b, size_t extra) {
    if (b->cap - b->n >= extra) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->n < extra) {
        if (cap > SIZE_MAX / 2) mmp_die("out of memory (msgpack buffer)");
        cap *= 2;
    }
    b->p = mmp_xrealloc(b->p, cap);
    b->cap = cap;
}

void mp_buf_free(mp_buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

static inline void put1(mp_buf *b, uint8_t v) {
    mp_buf_reserve(b, 1);
    b->p[b->n++] = v;
}

static inline void put_be(mp_buf *b, uint8_t tag, uint64_t v, int bytes) {
    mp_buf_reserve(b, 1 + (size_t)bytes);
    b->p[b->n++] = tag;
    for (int i = bytes - 1; i >= 0; i--) b->p[b->n++] = (uint8_t)(v >> (8 * i));
}

void mp_put_map(mp_buf *b, uint32_t n) {
    if (n < 16) put1(b, (uint8_t)(0x80 | n));
    else if (n <= 0xffff) put_be(b, 0xde, n, 2);
    else put_be(b, 0xdf, n, 4);
}

void mp_put_array(mp_buf *b, uint32_t n) {
    if (n < 16) put1(b, (uint8_t)(0x90 | n));
    else if (n <= 0xffff) put_be(b, 0xdc, n, 2);
    else put_be(b, 0xdd, n, 4);
}

void mp_put_str(mp_buf *b, const char *s, size_t len) {
    if (len > 0xffffffffu) mmp_die("string too long for msgpack (%zu bytes)", len);
    if (len < 32) put1(b, (uint8_t)(0xa0 | len));
    else if (len <= 0xff) put_be(b, 0xd9, len, 1);
    else if (len <= 0xffff) put_be(b, 0xda, len, 2);
    else put_be(b, 0xdb, len, 4);
    mp_buf_reserve(b, len);
    if (len) memcpy(b->p + b->n, s, len);
    b->n += len;
}

void mp_put_cstr(mp_buf *b, const char *s) { mp_put_str(b, s, strlen(s)); }

void mp_put_bin_header(mp_buf *b, uint32_t len) {
    if (len <= 0xff) put_be(b, 0xc4, len, 1);
    else if (len <= 0xffff) put_be(b, 0xc5, len, 2);
    else put_be(b, 0xc6, len, 4);
}

void mp_put_uint(mp_buf *b, uint64_t v) {
    if (v < 128) put1(b, (uint8_t)v);
    else if (v <= 0xff) put_be(b, 0xcc, v, 1);
    else if (v <= 0xffff) put_be(b, 0xcd, v, 2);
    else if (v <= 0xffffffffu) put_be(b, 0xce, v, 4);
    else put_be(b, 0xcf, v, 8);
}

void mp_put_int(mp_buf *b, int64_t v) {
    if (v >= 0) {
        mp_put_uint(b, (uint64_t)v);
        return;
    }
    if (v >= -32) put1(b, (uint8_t)(int8_t)v);
    else if (v >= INT8_MIN) put_be(b, 0xd0, (uint8_t)(int8_t)v, 1);
    else if (v >= INT16_MIN) put_be(b, 0xd1, (uint16_t)(int16_t)v, 2);
    else if (v >= INT32_MIN) put_be(b, 0xd2, (uint32_t)(int32_t)v, 4);
    else put_be(b, 0xd3, (uint64_t)v, 8);
}

void mp_put_bool(mp_buf *b, int v) { put1(b, v ? 0xc3 : 0xc2); }
void mp_put_nil(mp_buf *b) { put1(b, 0xc0); }

void mp_put_double(mp_buf *b, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    put_be(b, 0xcb, u, 8);
}

/* ------------------------------------------------------------------ */
/* measuring                                                           */
/* ------------------------------------------------------------------ */

static inline uint64_t be(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v = (v << 8) | p[i];
    return v;
}

/* Header of the object at p[0..n): *hdr = bytes of the type+length prefix,
 * *payload = bytes following it, *children = nested objects it contains.
 * Returns MP_COMPLETE when the prefix is complete, MP_NEED_MORE when it is
 * cut (*hdr = bytes needed), MP_INVALID for the unused byte 0xc1. */
static int obj_prefix(const uint8_t *p, size_t n, size_t *hdr, uint64_t *payload,
                      uint64_t *children) {
    uint8_t t = p[0];
    int lenbytes = 0, extra = 0; /* extra: fixed payload or ext type byte */
    *payload = 0;
    *children = 0;
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
        *hdr = 1;
        return MP_COMPLETE;
    }
    if (t >= 0x80 && t <= 0x8f) { *hdr = 1; *children = 2u * (t & 0x0f); return MP_COMPLETE; }
    if (t >= 0x90 && t <= 0x9f) { *hdr = 1; *children = t & 0x0f; return MP_COMPLETE; }
    if (t >= 0xa0 && t <= 0xbf) { *hdr = 1; *payload = t & 0x1f; return MP_COMPLETE; }
    switch (t) {
    case 0xc1: return MP_INVALID;
    case 0xc4: case 0xd9: lenbytes = 1; break;
    case 0xc5: case 0xda: lenbytes = 2; break;
    case 0xc6: case 0xdb: lenbytes = 4; break;
    case 0xc7: lenbytes = 1; extra = 1; break;
    case 0xc8: lenbytes = 2; extra = 1; break;
    case 0xc9: lenbytes = 4; extra = 1; break;
    case 0xca: *hdr = 1; *payload = 4; return MP_COMPLETE;
    case 0xcb: *hdr = 1; *payload = 8; return MP_COMPLETE;
    case 0xcc: case 0xd0: *hdr = 1; *payload = 1; return MP_COMPLETE;
    case 0xcd: case 0xd1: *hdr = 1; *payload = 2; return MP_COMPLETE;
    case 0xce: case 0xd2: *hdr = 1; *payload = 4; return MP_COMPLETE;
    case 0xcf: case 0xd3: *hdr = 1; *payload = 8; return MP_COMPLETE;
    case 0xd4: *hdr = 2; *payload = 1; return MP_COMPLETE;
    case 0xd5: *hdr = 2; *payload = 2; return MP_COMPLETE;
    case 0xd6: *hdr = 2; *payload = 4; return MP_COMPLETE;
    case 0xd7: *hdr = 2; *payload = 8; return MP_COMPLETE;
    case 0xd8: *hdr = 2; *payload = 16; return MP_COMPLETE;
    case 0xdc: case 0xde: lenbytes = 2; break;
    case 0xdd: case 0xdf: lenbytes = 4; break;
    default: return MP_INVALID;
    }
    *hdr = 1 + (size_t)lenbytes + (size_t)extra;
    if (n < *hdr) return MP_NEED_MORE;
    uint64_t len = be(p + 1, lenbytes);
    if (t == 0xdc || t == 0xdd) *children = len;
    else if (t == 0xde || t == 0xdf) *children = 2 * len;
    else *payload = len;
    return MP_COMPLETE;
}

int mp_measure(const uint8_t *p, size_t n, size_t max_len, size_t *len, size_t *need,
               const char **why) {
    /* Iterative walk: 'pending' counts objects still to visit. Every object
     * takes at least one byte, so pending is also a lower bound on the bytes
     * still needed, which bounds it by max_len. */
    uint64_t pending = 1;
    size_t pos = 0;
    *why = "";
    while (pending > 0) {
        if ((uint64_t)pos + pending > max_len) {
            *why = "object larger than the size limit";
            return MP_INVALID;
        }
        if (pos >= n) {
            *need = pos + (size_t)pending;
            return MP_NEED_MORE;
        }
        size_t hdr;
        uint64_t payload, children;
        int r = obj_prefix(p + pos, n - pos, &hdr, &payload, &children);
        if (r == MP_INVALID) {
            *why = "invalid msgpack type byte 0xc1";
            return MP_INVALID;
        }
        if (r == MP_NEED_MORE) {
            *need = pos + hdr + (size_t)(pending - 1);
            return MP_NEED_MORE;
        }
        pending--;
        if (payload > max_len || (uint64_t)pos + hdr + payload + pending + children > max_len) {
            *why = "declared length larger than the size limit";
            return MP_INVALID;
        }
        pos += hdr + (size_t)payload;
        pending += children;
        if (pos > n) {
            *need = pos + (size_t)pending;
            return MP_NEED_MORE;
        }
    }
    *len = pos;
    return MP_COMPLETE;
}

/* ------------------------------------------------------------------ */
/* cursor                                                              */
/* ------------------------------------------------------------------ */

mp_type mp_peek(const mp_cur *c) {
    if (c->pos >= c->n) return MPT_BAD;
    uint8_t t = c->p[c->pos];
    if (t <= 0x7f || t >= 0xe0) return MPT_INT;
    if (t <= 0x8f) return MPT_MAP;
    if (t <= 0x9f) return MPT_ARRAY;
    if (t <= 0xbf) return MPT_STR;
    switch (t) {
    case 0xc0: return MPT_NIL;
    case 0xc2: case 0xc3: return MPT_BOOL;
    case 0xc4: case 0xc5: case 0xc6: return MPT_BIN;
    case 0xc7: case 0xc8: case 0xc9: case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        return MPT_EXT;
    case 0xca: case 0xcb: return MPT_FLOAT;
    case 0xcc: case 0xcd: case 0xce: case 0xcf: case 0xd0: case 0xd1: case 0xd2: case 0xd3:
        return MPT_INT;
    case 0xd9: case 0xda: case 0xdb: return MPT_STR;
    case 0xdc: case 0xdd: return MPT_ARRAY;
    case 0xde: case 0xdf: return MPT_MAP;
    default: return MPT_BAD;
    }
}

const char *mp_type_name(mp_type t) {
    static const char *names[] = {"nil", "bool", "int", "float", "str", "bin", "array", "map",
                                  "ext", "invalid"};
    return (unsigned)t <= MPT_BAD ? names[t] : "invalid";
}

/* Reads a length prefix of 'bytes' big-endian bytes after the tag. */
static int rd_len(mp_cur *c, int bytes, uint64_t *len) {
    if (c->n - c->pos < 1 + (size_t)bytes) return -1;
    *len = be(c->p + c->pos + 1, bytes);
    return 0;
}

static int rd_container(mp_cur *c, uint32_t *n, uint8_t fixbase, uint8_t t16, uint8_t t32) {
    if (c->pos >= c->n) return -1;
    uint8_t t = c->p[c->pos];
    uint64_t len;
    if (t >= fixbase && t <= fixbase + 0x0f) {
        *n = t & 0x0f;
        c->pos += 1;
        return 0;
    }
    if (t == t16) {
        if (rd_len(c, 2, &len)) return -1;
        c->pos += 3;
    } else if (t == t32) {
        if (rd_len(c, 4, &len)) return -1;
        c->pos += 5;
    } else {
        return -1;
    }
    *n = (uint32_t)len;
    return 0;
}

int mp_rd_map(mp_cur *c, uint32_t *n) { return rd_container(c, n, 0x80, 0xde, 0xdf); }
int mp_rd_array(mp_cur *c, uint32_t *n) { return rd_container(c, n, 0x90, 0xdc, 0xdd); }

static int rd_bytes(mp_cur *c, const uint8_t **s, uint32_t *len, int want_str) {
    if (c->pos >= c->n) return -1;
    uint8_t t = c->p[c->pos];
    uint64_t l;
    size_t hdr;
    if (want_str && t >= 0xa0 && t <= 0xbf) {
        l = t & 0x1f;
        hdr = 1;
    } else {
        int bytes;
        if (t == (want_str ? 0xd9 : 0xc4)) bytes = 1;
        else if (t == (want_str ? 0xda : 0xc5)) bytes = 2;
        else if (t == (want_str ? 0xdb : 0xc6)) bytes = 4;
        else return -1;
        if (rd_len(c, bytes, &l)) return -1;
        hdr = 1 + (size_t)bytes;
    }
    if (c->n - c->pos < hdr || c->n - c->pos - hdr < l) return -1;
    *s = c->p + c->pos + hdr;
    *len = (uint32_t)l;
    c->pos += hdr + (size_t)l;
    return 0;
}

int mp_rd_str(mp_cur *c, const char **s, uint32_t *len) {
    return rd_bytes(c, (const uint8_t **)s, len, 1);
}
int mp_rd_bin(mp_cur *c, const uint8_t **b, uint32_t *len) { return rd_bytes(c, b, len, 0); }

/* Reads any int: *neg set when negative (then *v is the two's complement). */
static int rd_anyint(mp_cur *c, uint64_t *u, int *neg) {
    if (c->pos >= c->n) return -1;
    uint8_t t = c->p[c->pos];
    size_t avail = c->n - c->pos;
    if (t <= 0x7f) { *u = t; *neg = 0; c->pos++; return 0; }
    if (t >= 0xe0) { *u = (uint64_t)(int64_t)(int8_t)t; *neg = 1; c->pos++; return 0; }
    int bytes;
    int sgn;
    switch (t) {
    case 0xcc: bytes = 1; sgn = 0; break;
    case 0xcd: bytes = 2; sgn = 0; break;
    case 0xce: bytes = 4; sgn = 0; break;
    case 0xcf: bytes = 8; sgn = 0; break;
    case 0xd0: bytes = 1; sgn = 1; break;
    case 0xd1: bytes = 2; sgn = 1; break;
    case 0xd2: bytes = 4; sgn = 1; break;
    case 0xd3: bytes = 8; sgn = 1; break;
    default: return -1;
    }
    if (avail < 1 + (size_t)bytes) return -1;
    uint64_t v = be(c->p + c->pos + 1, bytes);
    if (sgn) {
        int64_t s;
        switch (bytes) {
        case 1: s = (int8_t)(uint8_t)v; break;
        case 2: s = (int16_t)(uint16_t)v; break;
        case 4: s = (int32_t)(uint32_t)v; break;
        default: s = (int64_t)v; break;
        }
        *u = (uint64_t)s;
        *neg = s < 0;
    } else {
        *u = v;
        *neg = 0;
    }
    c->pos += 1 + (size_t)bytes;
    return 0;
}

int mp_rd_int(mp_cur *c, int64_t *v) {
    size_t save = c->pos;
    uint64_t u;
    int neg;
    if (rd_anyint(c, &u, &neg)) return -1;
    if (!neg && u > (uint64_t)INT64_MAX) {
        c->pos = save;
        return -1;
    }
    *v = (int64_t)u;
    return 0;
}

int mp_rd_uint(mp_cur *c, uint64_t *v) {
    size_t save = c->pos;
    uint64_t u;
    int neg;
    if (rd_anyint(c, &u, &neg)) return -1;
    if (neg) {
        c->pos = save;
        return -1;
    }
    *v = u;
    return 0;
}

int mp_rd_bool(mp_cur *c, int *v) {
    if (c->pos >= c->n) return -1;
    uint8_t t = c->p[c->pos];
    if (t != 0xc2 && t != 0xc3) return -1;
    *v = t == 0xc3;
    c->pos++;
    return 0;
}

int mp_rd_nil(mp_cur *c) {
    if (c->pos >= c->n || c->p[c->pos] != 0xc0) return -1;
    c->pos++;
    return 0;
}

int mp_skip(mp_cur *c) {
    size_t len, need;
    const char *why;
    if (c->pos >= c->n) return -1;
    if (mp_measure(c->p + c->pos, c->n - c->pos, c->n - c->pos, &len, &need, &why) !=
        MP_COMPLETE)
        return -1;
    c->pos += len;
    return 0;
}

int mp_str_eq(const char *s, uint32_t len, const char *key) {
    size_t kl = strlen(key);
    return kl == len && memcmp(s, key, kl) == 0;
}
