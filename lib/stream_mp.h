/* Minimal msgpack encoder/decoder used by the mmp stream (lib/stream.c).
 * Internal header: not part of the public API.
 *
 * Decoding is done in two steps on a buffer that may hold an incomplete
 * object (streaming): mp_measure() walks one object without allocating and
 * says whether it is complete (and its length), needs more bytes, or is not
 * valid msgpack; then the mp_rd_* cursor functions decode a complete object.
 * Every function is bounds-checked; arbitrary bytes never crash them. */
#ifndef MMP_STREAM_MP_H
#define MMP_STREAM_MP_H

#include <stddef.h>
#include <stdint.h>

/* ---- growable byte buffer + encoder ---- */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} mp_buf;

void mp_buf_reserve(mp_buf *b, size_t extra);
void mp_buf_free(mp_buf *b);
void mp_put_map(mp_buf *b, uint32_t n);
void mp_put_array(mp_buf *b, uint32_t n);
void mp_put_str(mp_buf *b, const char *s, size_t len);
void mp_put_cstr(mp_buf *b, const char *s);
void mp_put_bin_header(mp_buf *b, uint32_t len);
void mp_put_int(mp_buf *b, int64_t v);
void mp_put_uint(mp_buf *b, uint64_t v);
void mp_put_bool(mp_buf *b, int v);
void mp_put_nil(mp_buf *b);
void mp_put_double(mp_buf *b, double v);

/* ---- measuring ---- */
enum { MP_INVALID = -1, MP_NEED_MORE = 0, MP_COMPLETE = 1 };
/* Walks one msgpack object at p[0..n). MP_COMPLETE: *len = its size.
 * MP_NEED_MORE: *need = a lower bound on the total bytes required (> n).
 * MP_INVALID: *why says what. Objects larger than max_len are invalid. */
int mp_measure(const uint8_t *p, size_t n, size_t max_len, size_t *len, size_t *need,
               const char **why);

/* ---- decoding cursor (on a complete object) ---- */
typedef struct {
    const uint8_t *p;
    size_t n, pos;
} mp_cur;

typedef enum {
    MPT_NIL, MPT_BOOL, MPT_INT, MPT_FLOAT, MPT_STR, MPT_BIN, MPT_ARRAY, MPT_MAP, MPT_EXT,
    MPT_BAD
} mp_type;

mp_type mp_peek(const mp_cur *c);
const char *mp_type_name(mp_type t);
/* Each returns 0 on success, -1 when the next object is not of that type
 * (cursor unchanged) or the data is short. */
int mp_rd_map(mp_cur *c, uint32_t *n);
int mp_rd_array(mp_cur *c, uint32_t *n);
int mp_rd_str(mp_cur *c, const char **s, uint32_t *len);
int mp_rd_bin(mp_cur *c, const uint8_t **b, uint32_t *len);
int mp_rd_int(mp_cur *c, int64_t *v);   /* any int that fits int64 */
int mp_rd_uint(mp_cur *c, uint64_t *v); /* any non-negative int */
int mp_rd_bool(mp_cur *c, int *v);
int mp_rd_nil(mp_cur *c);
/* Skips one object of any type. */
int mp_skip(mp_cur *c);
/* 1 when the str at the cursor equals key (cursor unchanged). */
int mp_str_eq(const char *s, uint32_t len, const char *key);

/* CRC-32 as zlib's crc32() computes it (chained: pass the previous value). */
uint32_t mp_crc32(uint32_t crc, const void *data, size_t n);

#endif
