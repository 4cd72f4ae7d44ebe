/* The bounded measure step the stream reader runs before msgpack-c unpacks
 * an object; see stream_mp.h. */
#include "stream_mp.h"

static inline uint64_t be(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v = (v << 8) | p[i];
    return v;
}

/* Header of the object at p[0..n): *hdr = bytes of the type+length prefix,
 * *payload = bytes following it, *children = nested objects it contains,
 * *container = 1 for an array or map (also an empty one).
 * Returns MP_COMPLETE when the prefix is complete, MP_NEED_MORE when it is
 * cut (*hdr = bytes needed), MP_INVALID for the unused byte 0xc1. */
static int obj_prefix(const uint8_t *p, size_t n, size_t *hdr, uint64_t *payload,
                      uint64_t *children, int *container) {
    uint8_t t = p[0];
    int lenbytes = 0, extra = 0; /* extra: the ext type byte */
    *payload = 0;
    *children = 0;
    *container = 0;
    *hdr = 1;
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) return MP_COMPLETE;
    if (t <= 0x8f) { *container = 1; *children = 2u * (t & 0x0f); return MP_COMPLETE; }
    if (t <= 0x9f) { *container = 1; *children = t & 0x0f; return MP_COMPLETE; }
    if (t <= 0xbf) { *payload = t & 0x1f; return MP_COMPLETE; }
    switch (t) {
    case 0xc4: case 0xd9: lenbytes = 1; break;
    case 0xc5: case 0xda: lenbytes = 2; break;
    case 0xc6: case 0xdb: lenbytes = 4; break;
    case 0xc7: lenbytes = 1; extra = 1; break;
    case 0xc8: lenbytes = 2; extra = 1; break;
    case 0xc9: lenbytes = 4; extra = 1; break;
    case 0xca: *payload = 4; return MP_COMPLETE;
    case 0xcb: *payload = 8; return MP_COMPLETE;
    case 0xcc: case 0xd0: *payload = 1; return MP_COMPLETE;
    case 0xcd: case 0xd1: *payload = 2; return MP_COMPLETE;
    case 0xce: case 0xd2: *payload = 4; return MP_COMPLETE;
    case 0xcf: case 0xd3: *payload = 8; return MP_COMPLETE;
    case 0xd4: *hdr = 2; *payload = 1; return MP_COMPLETE;
    case 0xd5: *hdr = 2; *payload = 2; return MP_COMPLETE;
    case 0xd6: *hdr = 2; *payload = 4; return MP_COMPLETE;
    case 0xd7: *hdr = 2; *payload = 8; return MP_COMPLETE;
    case 0xd8: *hdr = 2; *payload = 16; return MP_COMPLETE;
    case 0xdc: case 0xde: lenbytes = 2; *container = 1; break;
    case 0xdd: case 0xdf: lenbytes = 4; *container = 1; break;
    default: return MP_INVALID; /* 0xc1 */
    }
    *hdr = 1 + (size_t)lenbytes + (size_t)extra;
    if (n < *hdr) return MP_NEED_MORE;
    uint64_t len = be(p + 1, lenbytes);
    if (t == 0xdc || t == 0xdd) *children = len;
    else if (t == 0xde || t == 0xdf) *children = 2 * len;
    else *payload = len;
    return MP_COMPLETE;
}

int mmp_stream_measure(const uint8_t *p, size_t n, size_t max_len, size_t *len, size_t *need,
               const char **why) {
    /* Iterative walk: 'pending' counts objects still to visit. Every object
     * takes at least one byte, so pending is also a lower bound on the bytes
     * still needed, which bounds it by max_len. left[d] counts the objects
     * still to visit inside the container at depth d (left[0]: the root). */
    uint64_t pending = 1, values = 1;
    uint64_t left[MP_MAX_DEPTH + 1];
    int depth = 0;
    size_t pos = 0;
    left[0] = 1;
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
        int container;
        int r = obj_prefix(p + pos, n - pos, &hdr, &payload, &children, &container);
        if (r == MP_INVALID) {
            *why = "invalid msgpack type byte 0xc1";
            return MP_INVALID;
        }
        if (r == MP_NEED_MORE) {
            *need = pos + hdr + (size_t)(pending - 1);
            return MP_NEED_MORE;
        }
        pending--;
        left[depth]--;
        if (payload > max_len || (uint64_t)pos + hdr + payload + pending + children > max_len) {
            *why = "declared length larger than the size limit";
            return MP_INVALID;
        }
        if (container && depth == MP_MAX_DEPTH) {
            *why = "nested deeper than 32 levels";
            return MP_INVALID;
        }
        if (children > MP_MAX_VALUES - values) {
            *why = "more than 1048576 values in one object";
            return MP_INVALID;
        }
        values += children;
        pos += hdr + (size_t)payload;
        pending += children;
        if (children) left[++depth] = children;
        while (depth > 0 && left[depth] == 0) depth--;
        if (pos > n) {
            *need = pos + (size_t)pending;
            return MP_NEED_MORE;
        }
    }
    *len = pos;
    return MP_COMPLETE;
}
