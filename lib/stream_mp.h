/* msgpack support for the mmp stream (lib/stream.c). Internal header: not
 * part of the public API.
 *
 * msgpack-c (libmsgpack-dev) encodes and decodes. What it lacks for
 * untrusted input is added here: msgpack-c allocates what a length prefix
 * declares (24 bytes per declared element of an array or map, before any
 * element is there: the 5 bytes "dd 00 10 00 00" make it allocate 32 MiB).
 * So the reader first measures each object with mmp_stream_measure(), which walks
 * the bytes present without allocating, and hands it to msgpack-c only once
 * it is complete and within the limits below; what msgpack-c allocates is
 * then bounded by the bytes really there (24 bytes per value at most). */
#ifndef MMP_STREAM_MP_H
#define MMP_STREAM_MP_H

#include <stddef.h>
#include <stdint.h>

/* Nesting depth msgpack-c can unpack (MSGPACK_EMBED_STACK_SIZE, which
 * libmsgpackc is built with): at most this many containers enclose a value.
 * tests/test_stream.c checks that msgpack-c agrees. */
#define MP_MAX_DEPTH 32
/* Values (keys, elements, containers themselves) in one object. */
#define MP_MAX_VALUES ((uint64_t)1 << 20)

enum { MP_INVALID = -1, MP_NEED_MORE = 0, MP_COMPLETE = 1 };
/* Walks one msgpack object at p[0..n) without allocating. MP_COMPLETE:
 * *len = its size; it is then valid msgpack that msgpack-c unpacks, at most
 * max_len bytes, MP_MAX_DEPTH deep and MP_MAX_VALUES values. MP_NEED_MORE:
 * *need = a lower bound on the total bytes required (> n). MP_INVALID: *why
 * says what (the byte 0xc1, a limit). Arbitrary bytes never crash it. */
int mmp_stream_measure(const uint8_t *p, size_t n, size_t max_len, size_t *len, size_t *need,
               const char **why);

/* CRC-32 as zlib's crc32() computes it (chained: pass the previous value);
 * lib/stream_crc.c. */
uint32_t mmp_stream_crc32(uint32_t crc, const void *data, size_t n);

#endif
