/* The mmp stream: zstd-compressed msgpack, specified in formats/stream.md.
 *
 * Writer: msgpack-c's packer encodes; its write callback collects the small
 * parts of an object (prefixes, keys, short strings and tensors) in a stage
 * buffer and hands tensor data (>= 4 KiB) to zstd where it lies, without a
 * copy. One ZSTD_CCtx in streaming mode (checksum flag on, no worker
 * threads so the bytes are deterministic). The compressor is flushed
 * (ZSTD_e_flush) after the header and after a record once >= 1 MiB was
 * written since the last flush, or, when the output is not a regular file
 * (pipe, socket, terminal), once >= 50 ms have passed; the trailer ends the
 * frame (ZSTD_e_end).
 *
 * Reader: ZSTD_DCtx streaming decompression into a growing buffer; each
 * msgpack object is first measured (mmp_stream_measure: complete / need more /
 * invalid or over a limit, no allocation), then unpacked by msgpack-c
 * (a tree of msgpack_object in a reused zone, whose strings and bins point
 * into the buffer) and decoded from that. Memory is bounded by the
 * largest object (record) plus the zstd window. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <msgpack.h>

#include "mmp.h"
#include "stream_ext.h"
#include "stream_mp.h"

#define FLUSH_BYTES ((size_t)1 << 20)  /* flush after this much uncompressed data */
#define FLUSH_SECONDS 0.050            /* ... or after this long (pipes only) */
#define OUTBUF_SIZE ((size_t)1 << 18)  /* compressed output buffer */
#define INBUF_SIZE ((size_t)1 << 18)   /* compressed input read size */
#define DCHUNK ((size_t)1 << 18)       /* minimum free buffer space */
#define DIRECT_BYTES 4096              /* msgpack parts this large are not staged */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A closed pipe ends the program the way SIGPIPE's default action does,
 * without a message (EPIPE is only seen when SIGPIPE is ignored/blocked). */
static void quiet_epipe(void) {
    signal(SIGPIPE, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(SIGPIPE);
    _exit(128 + SIGPIPE);
}

/* ------------------------------------------------------------------ */
/* writer                                                              */
/* ------------------------------------------------------------------ */

struct mmp_writer {
    FILE *fp;
    int fd; /* fileno(fp), written with write(2); -1: through stdio */
    int own_fp;
    char *name;
    ZSTD_CCtx *cctx;
    uint8_t *obuf;
    size_t olen;
    msgpack_packer pk;     /* msgpack-c's encoder, writing through w_pack_write */
    msgpack_sbuffer stage; /* small parts of the object being encoded */
    int crc_on;            /* the object being encoded is a record */
    mmp_header h;
    uint64_t count, skipped;
    uint32_t crc;
    size_t since_flush;
    double last_flush;
    int timed; /* time-based flushing (output is not a regular file) */
    /* timed writers: a background thread flushes records that waited
     * >= FLUSH_SECONDS (a producer that pauses after writing). mu guards
     * everything above once the thread runs. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int has_thread, stop;
};

static void *w_flusher(void *arg);

static void w_write_error(mmp_writer *w) {
    if (errno == EPIPE) quiet_epipe();
    mmp_die("%s: write error: %s", w->name, strerror(errno));
}

/* Writes the compressed output buffer: write(2) on the descriptor (waiting
 * when it is non-blocking), or stdio for a FILE without one. */
static void w_write_out(mmp_writer *w) {
    if (w->olen == 0) return;
    if (w->fd < 0) {
        if (fwrite(w->obuf, 1, w->olen, w->fp) != w->olen) w_write_error(w);
        w->olen = 0;
        return;
    }
    const uint8_t *p = w->obuf;
    size_t left = w->olen;
    while (left) {
        ssize_t k = write(w->fd, p, left);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {w->fd, POLLOUT, 0};
            poll(&pfd, 1, -1);
            continue;
        }
        if (k <= 0) w_write_error(w);
        p += k;
        left -= (size_t)k;
    }
    w->olen = 0;
}

/* Compresses p[0..n) with the given directive, writing full output buffers.
 * For ZSTD_e_flush/e_end, loops until zstd has nothing left to emit. */
static void w_compress(mmp_writer *w, const void *p, size_t n, ZSTD_EndDirective mode) {
    ZSTD_inBuffer in = {p, n, 0};
    for (;;) {
        ZSTD_outBuffer out = {w->obuf, OUTBUF_SIZE, w->olen};
        size_t rem = ZSTD_compressStream2(w->cctx, &out, &in, mode);
        if (ZSTD_isError(rem))
            mmp_die("%s: zstd compression failed: %s", w->name, ZSTD_getErrorName(rem));
        w->olen = out.pos;
        if (w->olen == OUTBUF_SIZE) w_write_out(w);
        if (mode == ZSTD_e_continue ? in.pos == in.size : (rem == 0 && in.pos == in.size)) break;
    }
}

static void w_feed(mmp_writer *w, const void *p, size_t n, int with_crc) {
    if (n == 0) return;
    if (with_crc) w->crc = mmp_stream_crc32(w->crc, p, n);
    w_compress(w, p, n, ZSTD_e_continue);
    w->since_flush += n;
}

/* Feeds what is staged to zstd. */
static void w_stage_feed(mmp_writer *w) {
    w_feed(w, w->stage.data, w->stage.size, w->crc_on);
    msgpack_sbuffer_clear(&w->stage);
}

/* msgpack-c's write callback: the small parts of an object (type and
 * length prefixes, keys, short strings and tensors) collect in the stage
 * buffer; a part of >= DIRECT_BYTES (a tensor's data) is compressed where
 * it lies, after what was staged, instead of being copied. */
static int w_pack_write(void *data, const char *buf, size_t len) {
    mmp_writer *w = data;
    if (len >= DIRECT_BYTES) {
        w_stage_feed(w);
        w_feed(w, buf, len, w->crc_on);
    } else if (len && msgpack_sbuffer_write(&w->stage, buf, len)) {
        mmp_die("%s: out of memory (msgpack buffer)", w->name);
    }
    return 0;
}

static void pk_str(mmp_writer *w, const char *s) {
    size_t n = strlen(s);
    if (n > 0xffffffffu) mmp_die("%s: string too long for msgpack (%zu bytes)", w->name, n);
    msgpack_pack_str_with_body(&w->pk, s, n);
}

static void w_pack_header(mmp_writer *w) {
    msgpack_packer *pk = &w->pk;
    const mmp_header *h = &w->h;
    msgpack_pack_map(pk, 4);
    pk_str(w, "mmpipe");
    msgpack_pack_uint64(pk, MMP_STREAM_VERSION);
    pk_str(w, "schema");
    msgpack_pack_map(pk, (size_t)h->nfields);
    for (int i = 0; i < h->nfields; i++) {
        const mmp_schema_field *f = &h->fields[i];
        pk_str(w, f->name);
        msgpack_pack_map(pk, 2);
        pk_str(w, "dtype");
        pk_str(w, mmp_dtype_name(f->dtype));
        pk_str(w, "shape");
        msgpack_pack_array(pk, (size_t)f->ndim);
        for (int d = 0; d < f->ndim; d++) msgpack_pack_int64(pk, f->shape[d]);
    }
    pk_str(w, "classes");
    msgpack_pack_array(pk, (size_t)h->nclasses);
    for (int i = 0; i < h->nclasses; i++) pk_str(w, h->classes[i] ? h->classes[i] : "");
    pk_str(w, "meta");
    msgpack_pack_map(pk, (size_t)h->meta.n);
    for (int i = 0; i < h->meta.n; i++) {
        pk_str(w, h->meta.keys[i]);
        pk_str(w, h->meta.vals[i] ? h->meta.vals[i] : "");
    }
}

static void w_flush(mmp_writer *w, ZSTD_EndDirective mode) {
    w_compress(w, NULL, 0, mode);
    w_write_out(w);
    if (w->fd < 0 && fflush(w->fp) != 0) w_write_error(w);
    w->since_flush = 0;
    if (w->timed) w->last_flush = now_s();
}

mmp_writer *mmp_writer_open_fp(FILE *fp, const char *name, const mmp_header *h, int level) {
    if (level == 0) level = 3;
    if (level < -7 || level > 19) mmp_die("%s: bad zstd level %d (expected -7..19)", name, level);
    if (h->nfields < 0 || h->nfields > MMP_MAX_FIELDS)
        mmp_die("%s: header has %d fields (at most %d)", name, h->nfields, MMP_MAX_FIELDS);
    for (int i = 0; i < h->nfields; i++) {
        const mmp_schema_field *f = &h->fields[i];
        if (!f->name[0]) mmp_die("%s: header: schema field %d has an empty name", name, i);
        if ((unsigned)f->dtype >= MMP_DTYPE_COUNT || f->ndim < 0 || f->ndim > MMP_MAX_DIMS)
            mmp_die("%s: header: schema field '%s' has a bad dtype or rank", name, f->name);
        for (int d = 0; d < f->ndim; d++)
            if (f->shape[d] < -1)
                mmp_die("%s: header: schema field '%s' has a bad dimension %" PRId64, name,
                        f->name, f->shape[d]);
    }
    mmp_writer *w = mmp_xcalloc(1, sizeof *w);
    w->fp = fp;
    w->name = mmp_xstrdup(name);
    /* anything the program buffered in fp goes first; then we write(2) */
    if (fflush(fp) != 0) w_write_error(w);
    w->fd = fileno(fp);
    w->obuf = mmp_xmalloc(OUTBUF_SIZE);
    mmp_header_init(&w->h);
    mmp_header_copy(&w->h, h);
    w->cctx = ZSTD_createCCtx();
    if (!w->cctx) mmp_die("%s: out of memory (zstd)", name);
    size_t e = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(e)) e = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(e)) e = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_nbWorkers, 0);
    if (ZSTD_isError(e)) mmp_die("%s: zstd setup failed: %s", name, ZSTD_getErrorName(e));
    struct stat st;
    w->timed = !(w->fd >= 0 && fstat(w->fd, &st) == 0 && S_ISREG(st.st_mode));
    msgpack_sbuffer_init(&w->stage);
    msgpack_packer_init(&w->pk, w, w_pack_write);
    w_pack_header(w);
    w_stage_feed(w);
    /* the header reaches a reader before the first (maybe slow) record */
    w_flush(w, ZSTD_e_flush);
    pthread_mutex_init(&w->mu, NULL);
    if (w->timed) {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&w->cv, &ca);
        pthread_condattr_destroy(&ca);
        if (pthread_create(&w->thread, NULL, w_flusher, w) == 0) w->has_thread = 1;
        else pthread_cond_destroy(&w->cv);
    }
    return w;
}

static void *w_flusher(void *arg) {
    mmp_writer *w = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals go to the program's threads */
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long ns = ts.tv_nsec + (long)(FLUSH_SECONDS * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        if (!w->stop && w->since_flush > 0 && now_s() - w->last_flush >= FLUSH_SECONDS)
            w_flush(w, ZSTD_e_flush);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

mmp_writer *mmp_writer_open(const char *path, const mmp_header *h, int level) {
    if (!path || strcmp(path, "-") == 0) return mmp_writer_open_fp(stdout, "stdout", h, level);
    FILE *fp = fopen(path, "wb");
    if (!fp) mmp_die("%s: cannot open for writing: %s", path, strerror(errno));
    mmp_writer *w = mmp_writer_open_fp(fp, path, h, level);
    w->own_fp = 1;
    return w;
}

/* Checks a record against the schema; dies with a clear message. */
static void w_validate(const mmp_writer *w, const mmp_record *r) {
    unsigned long long n = (unsigned long long)w->count;
    if (r->nfields < 0 || r->nfields > MMP_MAX_FIELDS)
        mmp_die("%s: record %llu: bad field count %d", w->name, n, r->nfields);
    if (r->label < MMP_NO_LABEL || (w->h.nclasses > 0 && r->label >= w->h.nclasses))
        mmp_die("%s: record %llu: label %lld out of range (%d classes)", w->name, n,
                (long long)r->label, w->h.nclasses);
    for (int i = 0; i < r->nfields; i++)
        if (!mmp_header_field(&w->h, r->fields[i].name))
            mmp_die("%s: record %llu: field '%s' is not in the stream schema", w->name, n,
                    r->fields[i].name);
    for (int i = 0; i < w->h.nfields; i++) {
        const mmp_schema_field *f = &w->h.fields[i];
        const mmp_tensor *t = mmp_record_cget(r, f->name);
        char a[96], b[96];
        if (!t) mmp_die("%s: record %llu: missing field '%s'", w->name, n, f->name);
        if (t->dtype != f->dtype)
            mmp_die("%s: record %llu: field '%s' has dtype %s, the schema says %s", w->name, n,
                    f->name, mmp_dtype_name(t->dtype), mmp_dtype_name(f->dtype));
        int ok = t->ndim == f->ndim;
        for (int d = 0; ok && d < f->ndim; d++)
            if (t->shape[d] < 0 || (f->shape[d] >= 0 && t->shape[d] != f->shape[d])) ok = 0;
        if (!ok) {
            mmp_shape_str(t->ndim, t->shape, a, sizeof a);
            mmp_shape_str(f->ndim, f->shape, b, sizeof b);
            mmp_die("%s: record %llu: field '%s' has shape %s, the schema says %s", w->name, n,
                    f->name, a, b);
        }
        int64_t numel = mmp_numel(t->ndim, t->shape);
        if (numel < 0 || (uint64_t)numel > MMP_STREAM_MAX_TENSOR_BYTES / mmp_dtype_size(t->dtype))
            mmp_die("%s: record %llu: field '%s' is too large", w->name, n, f->name);
        if (t->nbytes != (size_t)numel * mmp_dtype_size(t->dtype) || (t->nbytes && !t->data))
            mmp_die("%s: record %llu: field '%s' has %zu data bytes, its shape needs %zu",
                    w->name, n, f->name, t->nbytes, (size_t)numel * mmp_dtype_size(t->dtype));
    }
}

void mmp_writer_write(mmp_writer *w, const mmp_record *r) {
    pthread_mutex_lock(&w->mu);
    w_validate(w, r);
    msgpack_packer *pk = &w->pk;
    w->crc_on = 1;
    uint32_t nkeys = 1 + (r->id != NULL) + (r->label != MMP_NO_LABEL) + (r->text != NULL) + (r->nstrlists > 0);
    msgpack_pack_map(pk, nkeys);
    if (r->id) {
        pk_str(w, "id");
        pk_str(w, r->id);
    }
    if (r->label != MMP_NO_LABEL) {
        pk_str(w, "label");
        msgpack_pack_int64(pk, r->label);
    }
    if (r->text) {
        pk_str(w, "text");
        pk_str(w, r->text);
    }
    if (r->nstrlists > 0) { /* in the record's order (the producer's) */
        pk_str(w, "strings");
        msgpack_pack_map(pk, (size_t)r->nstrlists);
        for (int i = 0; i < r->nstrlists; i++) {
            pk_str(w, r->strlists[i].name);
            msgpack_pack_array(pk, (size_t)r->strlists[i].n);
            for (int j = 0; j < r->strlists[i].n; j++) pk_str(w, r->strlists[i].v[j]);
        }
    }
    pk_str(w, "tensors");
    msgpack_pack_map(pk, (size_t)w->h.nfields);
    /* fields in schema order: the bytes do not depend on how the producer
     * happened to add them */
    for (int i = 0; i < w->h.nfields; i++) {
        const mmp_tensor *t = mmp_record_cget(r, w->h.fields[i].name);
        pk_str(w, w->h.fields[i].name);
        msgpack_pack_map(pk, 3);
        pk_str(w, "dtype");
        pk_str(w, mmp_dtype_name(t->dtype));
        pk_str(w, "shape");
        msgpack_pack_array(pk, (size_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) msgpack_pack_int64(pk, t->shape[d]);
        pk_str(w, "data");
        msgpack_pack_bin_with_body(pk, t->data, t->nbytes);
    }
    w_stage_feed(w);
    w->crc_on = 0;
    w->count++;
    if (w->since_flush >= FLUSH_BYTES) w_flush(w, ZSTD_e_flush);
    else if (w->timed && now_s() - w->last_flush >= FLUSH_SECONDS) w_flush(w, ZSTD_e_flush);
    pthread_mutex_unlock(&w->mu);
}

void mmp_writer_flush(mmp_writer *w) {
    pthread_mutex_lock(&w->mu);
    w_flush(w, ZSTD_e_flush);
    pthread_mutex_unlock(&w->mu);
}

void mmp_writer_add_skipped(mmp_writer *w, uint64_t n) {
    pthread_mutex_lock(&w->mu);
    w->skipped += n;
    pthread_mutex_unlock(&w->mu);
}

uint64_t mmp_writer_count(const mmp_writer *w) { return w->count; }

/* Stops the background flusher (if any): after this only the caller's thread touches w. */
static void w_stop_thread(mmp_writer *w) {
    if (w->has_thread) {
        pthread_mutex_lock(&w->mu);
        w->stop = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
        pthread_cond_destroy(&w->cv);
        w->has_thread = 0;
    }
    pthread_mutex_destroy(&w->mu);
}

static void w_free(mmp_writer *w) {
    ZSTD_freeCCtx(w->cctx);
    mmp_header_free(&w->h);
    msgpack_sbuffer_destroy(&w->stage);
    free(w->obuf);
    free(w->name);
    free(w);
}

void mmp_writer_abandon(mmp_writer *w) {
    if (!w) return;
    w_stop_thread(w);
    if (w->own_fp) fclose(w->fp);
    w_free(w);
}

void mmp_writer_close(mmp_writer *w) {
    if (!w) return;
    w_stop_thread(w);
    msgpack_packer *pk = &w->pk;
    msgpack_pack_map(pk, 4);
    pk_str(w, "end");
    msgpack_pack_true(pk);
    pk_str(w, "count");
    msgpack_pack_uint64(pk, w->count);
    pk_str(w, "checksum");
    msgpack_pack_uint64(pk, w->crc);
    pk_str(w, "skipped");
    msgpack_pack_uint64(pk, w->skipped);
    w_stage_feed(w);
    w_flush(w, ZSTD_e_end);
    if (w->own_fp) {
        if (fclose(w->fp) != 0) mmp_die("%s: write error: %s", w->name, strerror(errno));
    } else if (ferror(w->fp)) {
        mmp_die("%s: write error", w->name);
    }
    w_free(w);
}

/* ------------------------------------------------------------------ */
/* reader                                                              */
/* ------------------------------------------------------------------ */

enum { RS_START, RS_SEGMENT, RS_AFTER_TRAILER, RS_DONE, RS_ERROR };

struct mmp_reader {
    char *name;
    int fd, own_fd;
    const uint8_t *mem; /* memory source (fd < 0) */
    uint8_t *ibuf;
    ZSTD_inBuffer in;
    uint64_t in_base;   /* input offset of in.src[0] */
    int eof;            /* no more input */
    ZSTD_DCtx *dctx;
    int frame_open;     /* the last zstd frame is not complete */
    int zstd_pending;   /* zstd may hold decoded data it could not emit yet */
    uint64_t frame_end; /* input offset where the last complete frame ended */
    uint8_t *d;         /* decompressed bytes [dstart, dend) not consumed yet */
    size_t dcap, dstart, dend;
    uint64_t frame_start; /* input offset where the last frame started */
    mmp_header h;
    int state;
    uint64_t count, seg_count, skipped, nseg;
    uint32_t crc;
    msgpack_zone zone;  /* msgpack-c's allocations for obj, reused */
    msgpack_object obj; /* the last object, unpacked by msgpack-c */
    char err[1024];
};

static int r_fail(mmp_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int r_fail(mmp_reader *r, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->state == RS_START)
        snprintf(r->err, sizeof r->err, "%s: header: %s", r->name, msg);
    else
        snprintf(r->err, sizeof r->err, "%s: record %" PRIu64 ": %s", r->name, r->count, msg);
    /* names and dtypes quoted from the input may hold control characters:
     * the message stays one printable line */
    for (char *c = r->err; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    r->state = RS_ERROR;
    return -1;
}

static uint64_t r_inpos(const mmp_reader *r) { return r->in_base + r->in.pos; }

static int r_read_more(mmp_reader *r) {
    r->in_base += r->in.size;
    r->in.size = r->in.pos = 0;
    if (r->fd < 0) {
        r->eof = 1;
        return 0;
    }
    for (;;) {
        ssize_t n = read(r->fd, r->ibuf, INBUF_SIZE);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* a non-blocking descriptor (shared with e.g. ssh): wait for data */
            struct pollfd pfd = {r->fd, POLLIN, 0};
            poll(&pfd, 1, -1);
            continue;
        }
        if (n < 0) return r_fail(r, "read error: %s", strerror(errno));
        if (n == 0) r->eof = 1;
        r->in.src = r->ibuf;
        r->in.size = (size_t)n;
        return 0;
    }
}

/* Makes at least 'need' bytes available from dstart. 1 = ok, 0 = end of
 * input first, -1 = error. */
static int r_fill(mmp_reader *r, size_t need) {
    if (r->dstart > 0) {
        memmove(r->d, r->d + r->dstart, r->dend - r->dstart);
        r->dend -= r->dstart;
        r->dstart = 0;
    }
    while (r->dend < need) {
        /* grow with the data that actually arrives, never to a declared
         * length: memory stays bounded by the input's real content */
        if (r->dcap - r->dend < DCHUNK) {
            size_t cap = r->dcap ? 2 * r->dcap : 2 * DCHUNK;
            if (cap < r->dend + DCHUNK) cap = r->dend + DCHUNK;
            r->d = mmp_xrealloc(r->d, cap);
            r->dcap = cap;
        }
        /* read only once zstd has emitted everything it holds: a blocking
         * read must never delay data that is already here */
        if (r->in.pos == r->in.size && !r->zstd_pending) {
            if (r->eof) return 0;
            if (r_read_more(r) < 0) return -1;
            if (r->in.size == 0) return 0;
        }
        uint64_t before = r_inpos(r);
        if (!r->frame_open) r->frame_start = before;
        /* decode eagerly (all the room there is): corruption is found as
         * early as possible, often before a damaged record is handed out */
        ZSTD_outBuffer out = {r->d, r->dcap, r->dend};
        size_t ret = ZSTD_decompressStream(r->dctx, &out, &r->in);
        if (ZSTD_isError(ret)) {
            if (ZSTD_getErrorCode(ret) == ZSTD_error_prefix_unknown) {
                if (before == 0) return r_fail(r, "not an mmp stream (bad zstd magic)");
                return r_fail(r, "bad zstd magic at byte %" PRIu64
                                 " (garbage after the end of a stream)", before);
            }
            return r_fail(r, "corrupt stream (zstd frame at byte %" PRIu64 "): %s",
                          r->frame_open ? r->frame_start : before, ZSTD_getErrorName(ret));
        }
        r->dend = out.pos;
        r->zstd_pending = out.pos == out.size;
        if (ret == 0) {
            r->frame_open = 0;
            r->frame_end = r_inpos(r);
        } else {
            r->frame_open = 1;
        }
    }
    return 1;
}

/* Error for an input that ended before a clean end of stream. */
static int r_truncated(mmp_reader *r) {
    if (r->state == RS_START) {
        if (r_inpos(r) == 0 && r->dend == 0) return r_fail(r, "empty input (not an mmp stream)");
        if (r->dend == 0 && r_inpos(r) < 4) return r_fail(r, "not an mmp stream (too short)");
        return r_fail(r, "truncated stream (incomplete header)");
    }
    if (r->state == RS_AFTER_TRAILER) {
        if (r->dend > r->dstart)
            return r_fail(r, "truncated stream (incomplete header after byte %" PRIu64 ")",
                          r->frame_end);
        return r_fail(r, "truncated stream (incomplete zstd frame after the trailer)");
    }
    return r_fail(r, "truncated stream (no trailer) after %" PRIu64 " records", r->count);
}

/* Unpacks the measured object at d+dstart (len bytes) with msgpack-c into
 * r->obj (its strings and bins point into d). 1 = ok, -1 = error.
 * msgpack_unpack (marked "obsolete" in msgpack/unpack.h, still exported)
 * into the reader's zone, cleared for each object, rather than
 * msgpack_unpack_next, which creates and frees a zone per object (1.2% more
 * instructions reading 3 KiB records). */
static int r_unpack(mmp_reader *r, size_t len) {
    size_t off = 0;
    msgpack_zone_clear(&r->zone);
    msgpack_unpack_return u =
        msgpack_unpack((const char *)r->d + r->dstart, len, &off, &r->zone, &r->obj);
    if (u == MSGPACK_UNPACK_SUCCESS && off == len) return 1;
    /* mmp_stream_measure found it complete and within msgpack-c's limits: only an
     * allocation failure is left */
    return r_fail(r, "cannot unpack a msgpack object of %zu bytes (msgpack-c: out of memory)",
                  len);
}

/* Makes the next msgpack object available: measured complete at d+dstart
 * (*len bytes) and unpacked into r->obj. 1 = object, 0 = clean end of input
 * (nothing pending), -1 = error. */
static int r_object(mmp_reader *r, size_t *len) {
    size_t need = 1;
    for (;;) {
        if (r->dend > r->dstart) {
            const char *why;
            int m = mmp_stream_measure(r->d + r->dstart, r->dend - r->dstart, MMP_STREAM_MAX_OBJECT_BYTES,
                               len, &need, &why);
            if (m == MP_COMPLETE) return r_unpack(r, *len);
            if (m == MP_INVALID) {
                if (r->state == RS_START) return r_fail(r, "not an mmp stream (%s)", why);
                return r_fail(r, "corrupt stream: invalid msgpack (%s)", why);
            }
        }
        int f = r_fill(r, need);
        if (f < 0) return -1;
        if (f == 0) {
            if (r->dend > r->dstart || r->frame_open) return r_truncated(r);
            return 0;
        }
    }
}

/* ---- reading msgpack-c objects ---- */

static int key_is(const msgpack_object *k, const char *key) {
    size_t kl = strlen(key);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl &&
           memcmp(k->via.str.ptr, key, kl) == 0;
}

/* 0 when o is a str (then *s, *l), -1 otherwise */
static int obj_str(const msgpack_object *o, const char **s, uint32_t *l) {
    if (o->type != MSGPACK_OBJECT_STR) return -1;
    *s = o->via.str.ptr;
    *l = o->via.str.size;
    return 0;
}

/* a str without NUL bytes, as a new C string; NULL otherwise */
static char *obj_cstr(const msgpack_object *o) {
    const char *s;
    uint32_t l;
    if (obj_str(o, &s, &l) || memchr(s, 0, l)) return NULL;
    char *p = mmp_xmalloc((size_t)l + 1);
    memcpy(p, s, l);
    p[l] = 0;
    return p;
}

/* a str of 1 .. cap-1 bytes without NUL into buf as a C string; -1 otherwise */
static int obj_name(const msgpack_object *o, char *buf, size_t cap) {
    const char *s;
    uint32_t l;
    if (obj_str(o, &s, &l) || l == 0 || (size_t)l >= cap || memchr(s, 0, l)) return -1;
    memcpy(buf, s, l);
    buf[l] = 0;
    return 0;
}

/* any int that fits int64 */
static int obj_int(const msgpack_object *o, int64_t *v) {
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= (uint64_t)INT64_MAX) {
        *v = (int64_t)o->via.u64;
        return 0;
    }
    return -1;
}

/* any non-negative int */
static int obj_uint(const msgpack_object *o, uint64_t *v) {
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return -1;
    *v = o->via.u64;
    return 0;
}

/* the first 16 bytes of a str key, for messages */
#define KEY_FMT "\"%.*s\""
#define KEY_ARG(k) (int)((k)->via.str.size > 16 ? 16 : (k)->via.str.size), (k)->via.str.ptr

/* Classifies a map by key presence: 'h' header, 't' trailer, 'r' record;
 * 0 when the object is not a map. */
static int classify(const msgpack_object *o) {
    if (o->type != MSGPACK_OBJECT_MAP) return 0;
    int kind = 'r';
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        if (key_is(k, "mmpipe")) return 'h';
        if (key_is(k, "end")) kind = 't';
    }
    return kind;
}

/* Reads dtype str and shape array (used by schema and tensors). */
static int rd_dtype(const msgpack_object *o, mmp_dtype *dt, char *why, size_t wl) {
    const char *s;
    uint32_t l;
    if (obj_str(o, &s, &l)) {
        snprintf(why, wl, "dtype is not a string");
        return -1;
    }
    if (mmp_dtype_parse(s, l, dt)) {
        snprintf(why, wl, "unknown dtype '%.*s'", (int)(l > 16 ? 16 : l), s);
        return -1;
    }
    return 0;
}

static int rd_shape(const msgpack_object *o, int *ndim, int64_t *shape, int64_t mindim, char *why,
                    size_t wl) {
    if (o->type != MSGPACK_OBJECT_ARRAY) {
        snprintf(why, wl, "shape is not an array");
        return -1;
    }
    uint32_t n = o->via.array.size;
    if (n > MMP_MAX_DIMS) {
        snprintf(why, wl, "shape has %u dimensions (at most %d)", n, MMP_MAX_DIMS);
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (obj_int(&o->via.array.ptr[i], &shape[i]) || shape[i] < mindim) {
            snprintf(why, wl, "bad shape dimension %u", i);
            return -1;
        }
    }
    *ndim = (int)n;
    return 0;
}

static int decode_schema(const msgpack_object *o, mmp_header *h, char *why, size_t wl) {
    if (o->type != MSGPACK_OBJECT_MAP) {
        snprintf(why, wl, "header: schema is not a map");
        return -1;
    }
    uint32_t nf = o->via.map.size;
    if (nf > MMP_MAX_FIELDS) {
        snprintf(why, wl, "header: schema has %u fields (at most %d)", nf, MMP_MAX_FIELDS);
        return -1;
    }
    for (uint32_t j = 0; j < nf; j++) {
        const msgpack_object *fv = &o->via.map.ptr[j].val;
        char name[64];
        if (obj_name(&o->via.map.ptr[j].key, name, sizeof name)) {
            snprintf(why, wl, "header: schema field %u has a bad name", j);
            return -1;
        }
        if (mmp_header_field(h, name)) {
            snprintf(why, wl, "header: duplicate schema field '%s'", name);
            return -1;
        }
        if (fv->type != MSGPACK_OBJECT_MAP) {
            snprintf(why, wl, "header: schema field '%s' is not a map", name);
            return -1;
        }
        mmp_dtype dt = MMP_DTYPE_COUNT;
        int ndim = -1;
        int64_t shape[MMP_MAX_DIMS];
        for (uint32_t q = 0; q < fv->via.map.size; q++) {
            const msgpack_object *k = &fv->via.map.ptr[q].key, *v = &fv->via.map.ptr[q].val;
            char w2[128];
            int bad = 0;
            if (key_is(k, "dtype")) bad = rd_dtype(v, &dt, w2, sizeof w2);
            else if (key_is(k, "shape")) bad = rd_shape(v, &ndim, shape, -1, w2, sizeof w2);
            if (bad) {
                snprintf(why, wl, "header: schema field '%s': %s", name, w2);
                return -1;
            }
        }
        if (dt == MMP_DTYPE_COUNT || ndim < 0) {
            snprintf(why, wl, "header: schema field '%s' lacks dtype or shape", name);
            return -1;
        }
        mmp_header_add_field(h, name, dt, ndim, shape);
    }
    return 0;
}

static int decode_header(const msgpack_object *o, mmp_header *h, char *why, size_t wl) {
    int have_version = 0;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        if (key_is(k, "mmpipe")) {
            int64_t ver;
            if (obj_int(v, &ver)) {
                snprintf(why, wl, "header: \"mmpipe\" version is not an integer");
                return -1;
            }
            if (ver != MMP_STREAM_VERSION) {
                snprintf(why, wl, "unsupported mmp stream version %" PRId64
                                  " (this reader supports %d)", ver, MMP_STREAM_VERSION);
                return -1;
            }
            have_version = 1;
        } else if (key_is(k, "schema")) {
            if (decode_schema(v, h, why, wl)) return -1;
        } else if (key_is(k, "classes")) {
            if (v->type != MSGPACK_OBJECT_ARRAY) {
                snprintf(why, wl, "header: classes is not an array");
                return -1;
            }
            uint32_t nc = v->via.array.size; /* <= MP_MAX_VALUES (mmp_stream_measure) */
            char **names = mmp_xcalloc(nc ? nc : 1, sizeof *names);
            int ok = 1;
            for (uint32_t j = 0; ok && j < nc; j++)
                ok = (names[j] = obj_cstr(&v->via.array.ptr[j])) != NULL;
            if (ok) mmp_header_set_classes(h, (int)nc, names);
            for (uint32_t j = 0; j < nc; j++) free(names[j]);
            free(names);
            if (!ok) {
                snprintf(why, wl, "header: a class name is not a string");
                return -1;
            }
        } else if (key_is(k, "meta")) {
            if (v->type != MSGPACK_OBJECT_MAP) {
                snprintf(why, wl, "header: meta is not a map");
                return -1;
            }
            for (uint32_t j = 0; j < v->via.map.size; j++) {
                char *ks = obj_cstr(&v->via.map.ptr[j].key);
                char *vs = ks ? obj_cstr(&v->via.map.ptr[j].val) : NULL;
                if (vs) mmp_meta_set(&h->meta, ks, vs);
                free(ks);
                free(vs);
                if (!vs) {
                    snprintf(why, wl, "header: meta entry %u is not a string pair", j);
                    return -1;
                }
            }
        }
    }
    if (!have_version) {
        snprintf(why, wl, "header: malformed header map");
        return -1;
    }
    return 0;
}

static int decode_trailer(const msgpack_object *o, uint64_t *count, uint64_t *checksum,
                          uint64_t *skipped, char *why, size_t wl) {
    int have_end = 0, have_count = 0, have_sum = 0;
    *skipped = 0;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        int ok = 1;
        if (key_is(k, "end")) {
            ok = v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean;
            have_end = 1;
        } else if (key_is(k, "count")) {
            ok = obj_uint(v, count) == 0;
            have_count = 1;
        } else if (key_is(k, "checksum")) {
            ok = obj_uint(v, checksum) == 0 && *checksum <= 0xffffffffu;
            have_sum = 1;
        } else if (key_is(k, "skipped")) {
            ok = obj_uint(v, skipped) == 0;
        }
        if (!ok) {
            snprintf(why, wl, "corrupt trailer (bad " KEY_FMT ")", KEY_ARG(k));
            return -1;
        }
    }
    if (!have_end || !have_count || !have_sum) {
        snprintf(why, wl, "corrupt trailer (needs \"end\", \"count\" and \"checksum\")");
        return -1;
    }
    return 0;
}

static int decode_tensor(const msgpack_object *o, mmp_field *f, char *why, size_t wl) {
    const char *data = NULL;
    uint32_t dlen = 0;
    int have_dtype = 0, have_shape = 0, have_data = 0;
    char w2[128];
    if (o->type != MSGPACK_OBJECT_MAP) {
        snprintf(why, wl, "tensor '%s' is not a map", f->name);
        return -1;
    }
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        if (key_is(k, "dtype")) {
            if (rd_dtype(v, &f->t.dtype, w2, sizeof w2)) {
                snprintf(why, wl, "tensor '%s': %s", f->name, w2);
                return -1;
            }
            have_dtype = 1;
        } else if (key_is(k, "shape")) {
            if (rd_shape(v, &f->t.ndim, f->t.shape, 0, w2, sizeof w2)) {
                snprintf(why, wl, "tensor '%s': %s", f->name, w2);
                return -1;
            }
            have_shape = 1;
        } else if (key_is(k, "data")) {
            if (v->type != MSGPACK_OBJECT_BIN) {
                snprintf(why, wl, "tensor '%s': data is not msgpack bin", f->name);
                return -1;
            }
            data = v->via.bin.ptr;
            dlen = v->via.bin.size;
            have_data = 1;
        }
    }
    if (!have_dtype || !have_shape || !have_data) {
        snprintf(why, wl, "tensor '%s' lacks dtype, shape or data", f->name);
        return -1;
    }
    size_t es = mmp_dtype_size(f->t.dtype);
    uint64_t numel = 1;
    for (int d = 0; d < f->t.ndim; d++) {
        uint64_t dim = (uint64_t)f->t.shape[d];
        if (dim && numel > MMP_STREAM_MAX_TENSOR_BYTES / es / dim) {
            snprintf(why, wl, "tensor '%s' is too large", f->name);
            return -1;
        }
        numel *= dim;
    }
    if (numel * es != dlen) {
        char sh[96];
        mmp_shape_str(f->t.ndim, f->t.shape, sh, sizeof sh);
        snprintf(why, wl, "tensor '%s' has %u data bytes, %s %s needs %" PRIu64, f->name, dlen,
                 mmp_dtype_name(f->t.dtype), sh, numel * es);
        return -1;
    }
    f->t.nbytes = dlen;
    f->t.data = mmp_xmalloc(dlen ? dlen : 1);
    if (dlen) memcpy(f->t.data, data, dlen);
    f->t.owns = 1;
    return 0;
}

/* The "tensors" map of a record. */
static int decode_tensors(const mmp_header *h, const msgpack_object *o, mmp_record *rec, char *why,
                          size_t wl) {
    if (o->type != MSGPACK_OBJECT_MAP) {
        snprintf(why, wl, "tensors is not a map");
        return -1;
    }
    for (uint32_t j = 0; j < o->via.map.size; j++) {
        char name[64];
        if (obj_name(&o->via.map.ptr[j].key, name, sizeof name)) {
            snprintf(why, wl, "tensor %u has a bad name", j);
            return -1;
        }
        const mmp_schema_field *sf = mmp_header_field(h, name);
        if (!sf) {
            snprintf(why, wl, "tensor '%s' is not in the stream schema", name);
            return -1;
        }
        if (mmp_record_cget(rec, name)) {
            snprintf(why, wl, "duplicate tensor '%s'", name);
            return -1;
        }
        if (rec->nfields >= MMP_MAX_FIELDS) {
            snprintf(why, wl, "malformed record map");
            return -1;
        }
        mmp_field *f = &rec->fields[rec->nfields];
        memset(f, 0, sizeof *f);
        memcpy(f->name, name, sizeof name);
        if (decode_tensor(&o->via.map.ptr[j].val, f, why, wl)) {
            free(f->t.data);
            memset(f, 0, sizeof *f);
            return -1;
        }
        rec->nfields++;
        int ok = f->t.ndim == sf->ndim;
        for (int d = 0; ok && d < sf->ndim; d++)
            if (sf->shape[d] >= 0 && f->t.shape[d] != sf->shape[d]) ok = 0;
        if (f->t.dtype != sf->dtype) {
            snprintf(why, wl, "tensor '%s' has dtype %s, the schema says %s", name,
                     mmp_dtype_name(f->t.dtype), mmp_dtype_name(sf->dtype));
            return -1;
        }
        if (!ok) {
            char a[96], b[96];
            mmp_shape_str(f->t.ndim, f->t.shape, a, sizeof a);
            mmp_shape_str(sf->ndim, sf->shape, b, sizeof b);
            snprintf(why, wl, "tensor '%s' has shape %s, the schema says %s", name, a, b);
            return -1;
        }
    }
    return 0;
}

/* "strings": map name -> array of str (formats/stream.md section 4) */
static int decode_strings(const msgpack_object *v, mmp_record *rec, char *why, size_t wl) {
    if (v->type != MSGPACK_OBJECT_MAP) {
        snprintf(why, wl, "strings is not a map");
        return -1;
    }
    if (v->via.map.size > MMP_MAX_STRLISTS) {
        snprintf(why, wl, "strings has %u lists (at most %d)", v->via.map.size, MMP_MAX_STRLISTS);
        return -1;
    }
    for (uint32_t i = 0; i < v->via.map.size; i++) {
        const msgpack_object *k = &v->via.map.ptr[i].key, *a = &v->via.map.ptr[i].val;
        mmp_strlist *l = &rec->strlists[rec->nstrlists];
        if (obj_name(k, l->name, sizeof l->name)) {
            snprintf(why, wl, "strings: a list name is not a string of 1 to 63 bytes");
            return -1;
        }
        if (mmp_record_strings(rec, l->name)) {
            snprintf(why, wl, "strings: duplicate list \"%s\"", l->name);
            return -1;
        }
        if (a->type != MSGPACK_OBJECT_ARRAY) {
            snprintf(why, wl, "strings: \"%s\" is not an array", l->name);
            return -1;
        }
        l->n = 0;
        l->v = a->via.array.size ? mmp_xmalloc((size_t)a->via.array.size * sizeof *l->v) : NULL;
        rec->nstrlists++; /* owned from here: mmp_record_clear frees it */
        for (uint32_t j = 0; j < a->via.array.size; j++) {
            if (!(l->v[j] = obj_cstr(&a->via.array.ptr[j]))) {
                snprintf(why, wl, "strings: \"%s\" item %u is not a string without NUL", l->name, j);
                return -1;
            }
            l->n++;
        }
    }
    return 0;
}

static int decode_record(const mmp_header *h, const msgpack_object *o, mmp_record *rec,
                         char *why, size_t wl) {
    int have_strings = 0;
    int have_tensors = 0;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        if (key_is(k, "id") || key_is(k, "text")) {
            int is_id = k->via.str.size == 2;
            char **dst = is_id ? &rec->id : &rec->text;
            if (*dst) goto dup;
            if (v->type == MSGPACK_OBJECT_NIL) continue;
            if (!(*dst = obj_cstr(v))) {
                snprintf(why, wl, "%s is not a string", is_id ? "id" : "text");
                return -1;
            }
        } else if (key_is(k, "label")) {
            if (v->type == MSGPACK_OBJECT_NIL) continue;
            if (obj_int(v, &rec->label) || rec->label < MMP_NO_LABEL) {
                snprintf(why, wl, "label is not an integer >= -1");
                return -1;
            }
            if (rec->label >= 0 && h->nclasses > 0 && rec->label >= h->nclasses) {
                snprintf(why, wl, "label %" PRId64 " out of range (%d classes)", rec->label,
                         h->nclasses);
                return -1;
            }
        } else if (key_is(k, "strings")) {
            if (have_strings) goto dup;
            have_strings = 1;
            if (decode_strings(v, rec, why, wl)) return -1;
        } else if (key_is(k, "tensors")) {
            if (have_tensors) goto dup;
            have_tensors = 1;
            if (decode_tensors(h, v, rec, why, wl)) return -1;
        }
        continue;
    dup:
        snprintf(why, wl, "duplicate key " KEY_FMT, KEY_ARG(k));
        return -1;
    }
    for (int i = 0; i < h->nfields; i++)
        if (!mmp_record_cget(rec, h->fields[i].name)) {
            snprintf(why, wl, "missing tensor '%s'", h->fields[i].name);
            return -1;
        }
    return 0;
}

/* Reads the next header (state RS_START or RS_AFTER_TRAILER). 1 = ok,
 * 0 = clean end (only after a trailer), -1 = error. */
static int r_header(mmp_reader *r) {
    size_t len;
    int k = r_object(r, &len);
    if (k <= 0) {
        if (k == 0 && r->state == RS_START) return r_truncated(r);
        return k;
    }
    const msgpack_object *o = &r->obj;
    int kind = classify(o);
    uint64_t at = r->frame_start;
    char why[512];
    if (kind != 'h') {
        if (r->state == RS_START)
            return r_fail(r, "not an mmp stream (the first object is not an mmpipe header)");
        return r_fail(r, "corrupt stream: a %s follows the trailer instead of a header",
                      kind == 't' ? "second trailer" : kind == 'r' ? "record" : "non-map");
    }
    mmp_header h;
    mmp_header_init(&h);
    if (decode_header(o, &h, why, sizeof why)) {
        mmp_header_free(&h);
        if (r->state == RS_START) {
            if (strstr(why, "version")) return r_fail(r, "%s", why);
            return r_fail(r, "not an mmp stream (%s)", why);
        }
        return r_fail(r, "corrupt stream header at byte %" PRIu64 ": %s", at, why);
    }
    if (r->state == RS_START) {
        mmp_header_free(&r->h);
        r->h = h;
    } else {
        char cw[512];
        int ok = mmp_header_compatible(&r->h, &h, cw, sizeof cw);
        mmp_header_free(&h);
        if (!ok)
            return r_fail(r, "schema mismatch at byte %" PRIu64 " (stream %" PRIu64 "): %s", at,
                          r->nseg + 1, cw);
    }
    r->nseg++;
    r->dstart += len;
    r->seg_count = 0;
    r->crc = 0;
    r->state = RS_SEGMENT;
    return 1;
}

static mmp_reader *r_new(const char *name) {
    mmp_reader *r = mmp_xcalloc(1, sizeof *r);
    r->name = mmp_xstrdup(name);
    r->fd = -1;
    mmp_header_init(&r->h);
    r->dctx = ZSTD_createDCtx();
    if (!r->dctx) mmp_die("out of memory (zstd)");
    r->state = RS_START;
    if (!msgpack_zone_init(&r->zone, MSGPACK_ZONE_CHUNK_SIZE)) mmp_die("out of memory (msgpack)");
    return r;
}

static mmp_reader *r_open_finish(mmp_reader *r, char *err, size_t errlen) {
    if (r_header(r) != 1) {
        if (err && errlen) snprintf(err, errlen, "%s", r->err);
        mmp_reader_close(r);
        return NULL;
    }
    return r;
}

mmp_reader *mmp_reader_open(const char *path, char *err, size_t errlen) {
    int fd;
    const char *name = path;
    if (!path || strcmp(path, "-") == 0) {
        fd = 0;
        name = "stdin";
    } else {
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            if (err && errlen) snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
            return NULL;
        }
    }
    mmp_reader *r = r_new(name);
    r->fd = fd;
    r->own_fd = fd != 0;
    r->ibuf = mmp_xmalloc(INBUF_SIZE);
    r->in.src = r->ibuf;
    return r_open_finish(r, err, errlen);
}

mmp_reader *mmp_reader_open_mem(const void *buf, size_t n, const char *name, char *err,
                                size_t errlen) {
    mmp_reader *r = r_new(name ? name : "memory");
    r->mem = buf;
    r->in.src = buf;
    r->in.size = n;
    r->in.pos = 0;
    return r_open_finish(r, err, errlen);
}

const mmp_header *mmp_reader_header(const mmp_reader *r) { return &r->h; }
const char *mmp_reader_name(const mmp_reader *r) { return r->name; }
const char *mmp_reader_error(const mmp_reader *r) { return r->err; }
uint64_t mmp_reader_count(const mmp_reader *r) { return r->count; }
uint64_t mmp_reader_skipped(const mmp_reader *r) { return r->skipped; }

int mmp_reader_next(mmp_reader *r, mmp_record *rec) {
    mmp_record_clear(rec);
    for (;;) {
        if (r->state == RS_ERROR) return -1;
        if (r->state == RS_DONE) return 0;
        if (r->state == RS_AFTER_TRAILER) {
            int k = r_header(r);
            if (k < 0) return -1;
            if (k == 0) {
                r->state = RS_DONE;
                return 0;
            }
            continue;
        }
        size_t len;
        int k = r_object(r, &len);
        if (k < 0) return -1;
        if (k == 0) return r_truncated(r);
        const msgpack_object *o = &r->obj;
        char why[512];
        switch (classify(o)) {
        case 'r':
            if (decode_record(&r->h, o, rec, why, sizeof why)) {
                mmp_record_clear(rec);
                return r_fail(r, "%s", why);
            }
            r->crc = mmp_stream_crc32(r->crc, r->d + r->dstart, len);
            r->dstart += len;
            r->count++;
            r->seg_count++;
            return 1;
        case 't': {
            uint64_t cnt = 0, sum = 0, skipped = 0;
            if (decode_trailer(o, &cnt, &sum, &skipped, why, sizeof why))
                return r_fail(r, "%s", why);
            if (cnt != r->seg_count)
                return r_fail(r, "trailer says %" PRIu64 " records, the stream had %" PRIu64
                                 " (records lost or added)", cnt, r->seg_count);
            if ((uint32_t)sum != r->crc)
                return r_fail(r, "record checksum mismatch (trailer %08x, records %08x): "
                                 "corrupt stream", (unsigned)sum, (unsigned)r->crc);
            r->skipped += skipped;
            r->dstart += len;
            r->state = RS_AFTER_TRAILER;
            continue;
        }
        case 'h':
            return r_fail(r, "truncated stream (no trailer) after %" PRIu64
                             " records: a new stream header follows", r->count);
        default:
            return r_fail(r, "corrupt stream: expected a msgpack map");
        }
    }
}

void mmp_reader_close(mmp_reader *r) {
    if (!r) return;
    if (r->own_fd && r->fd >= 0) close(r->fd);
    ZSTD_freeDCtx(r->dctx);
    msgpack_zone_destroy(&r->zone);
    mmp_header_free(&r->h);
    free(r->ibuf);
    free(r->d);
    free(r->name);
    free(r);
}

mmp_reader *mmp_reader_open_or_die(const char *path) {
    char err[1024];
    mmp_reader *r = mmp_reader_open(path, err, sizeof err);
    if (!r) mmp_die("%s", err);
    return r;
}

int mmp_reader_next_or_die(mmp_reader *r, mmp_record *rec) {
    int k = mmp_reader_next(r, rec);
    if (k < 0) mmp_die("%s", r->err);
    return k;
}
