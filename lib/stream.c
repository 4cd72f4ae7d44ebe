/* The mmp stream: zstd-compressed msgpack, specified in formats/stream.md.
 *
 * Writer: one ZSTD_CCtx in streaming mode (checksum flag on, no worker
 * threads so the bytes are deterministic); a record's small msgpack parts go
 * through a scratch buffer while tensor data is fed to zstd in place. The
 * compressor is flushed (ZSTD_e_flush) after the header and after a record
 * once >= 1 MiB was written since the last flush, or, when the output is not
 * a regular file (pipe, socket, terminal), once >= 50 ms have passed; the
 * trailer ends the frame (ZSTD_e_end).
 *
 * Reader: ZSTD_DCtx streaming decompression into a growing buffer; each
 * msgpack object is first measured (mp_measure: complete / need more /
 * invalid, no allocation), then decoded once complete. Memory is bounded by
 * the largest object (record) plus the zstd window. */
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

#include "mmp.h"
#include "stream_ext.h"
#include "stream_mp.h"

#define FLUSH_BYTES ((size_t)1 << 20)  /* flush after this much uncompressed data */
#define FLUSH_SECONDS 0.050            /* ... or after this long (pipes only) */
#define OUTBUF_SIZE ((size_t)1 << 18)  /* compressed output buffer */
#define INBUF_SIZE ((size_t)1 << 18)   /* compressed input read size */
#define DCHUNK ((size_t)1 << 18)       /* minimum free buffer space */

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
/* header encoding                                                     */
/* ------------------------------------------------------------------ */

static void encode_header(mp_buf *b, const mmp_header *h) {
    mp_put_map(b, 4);
    mp_put_cstr(b, "mmpipe");
    mp_put_uint(b, MMP_STREAM_VERSION);
    mp_put_cstr(b, "schema");
    mp_put_map(b, (uint32_t)h->nfields);
    for (int i = 0; i < h->nfields; i++) {
        const mmp_schema_field *f = &h->fields[i];
        mp_put_cstr(b, f->name);
        mp_put_map(b, 2);
        mp_put_cstr(b, "dtype");
        mp_put_cstr(b, mmp_dtype_name(f->dtype));
        mp_put_cstr(b, "shape");
        mp_put_array(b, (uint32_t)f->ndim);
        for (int d = 0; d < f->ndim; d++) mp_put_int(b, f->shape[d]);
    }
    mp_put_cstr(b, "classes");
    mp_put_array(b, (uint32_t)h->nclasses);
    for (int i = 0; i < h->nclasses; i++) mp_put_cstr(b, h->classes[i] ? h->classes[i] : "");
    mp_put_cstr(b, "meta");
    mp_put_map(b, (uint32_t)h->meta.n);
    for (int i = 0; i < h->meta.n; i++) {
        mp_put_cstr(b, h->meta.keys[i]);
        mp_put_cstr(b, h->meta.vals[i] ? h->meta.vals[i] : "");
    }
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
    mp_buf sbuf;
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
    if (with_crc) w->crc = mp_crc32(w->crc, p, n);
    w_compress(w, p, n, ZSTD_e_continue);
    w->since_flush += n;
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
    w->sbuf.n = 0;
    encode_header(&w->sbuf, &w->h);
    w_feed(w, w->sbuf.p, w->sbuf.n, 0);
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
    mp_buf *b = &w->sbuf;
    b->n = 0;
    uint32_t nkeys = 1 + (r->id != NULL) + (r->label != MMP_NO_LABEL) + (r->text != NULL);
    mp_put_map(b, nkeys);
    if (r->id) {
        mp_put_cstr(b, "id");
        mp_put_cstr(b, r->id);
    }
    if (r->label != MMP_NO_LABEL) {
        mp_put_cstr(b, "label");
        mp_put_int(b, r->label);
    }
    if (r->text) {
        mp_put_cstr(b, "text");
        mp_put_cstr(b, r->text);
    }
    mp_put_cstr(b, "tensors");
    mp_put_map(b, (uint32_t)w->h.nfields);
    /* fields in schema order: the bytes do not depend on how the producer
     * happened to add them */
    for (int i = 0; i < w->h.nfields; i++) {
        const mmp_tensor *t = mmp_record_cget(r, w->h.fields[i].name);
        mp_put_cstr(b, w->h.fields[i].name);
        mp_put_map(b, 3);
        mp_put_cstr(b, "dtype");
        mp_put_cstr(b, mmp_dtype_name(t->dtype));
        mp_put_cstr(b, "shape");
        mp_put_array(b, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) mp_put_int(b, t->shape[d]);
        mp_put_cstr(b, "data");
        mp_put_bin_header(b, (uint32_t)t->nbytes);
        if (t->nbytes >= 4096) {
            /* big payload: compress it in place instead of copying it */
            w_feed(w, b->p, b->n, 1);
            b->n = 0;
            w_feed(w, t->data, t->nbytes, 1);
        } else if (t->nbytes) {
            mp_buf_reserve(b, t->nbytes);
            memcpy(b->p + b->n, t->data, t->nbytes);
            b->n += t->nbytes;
        }
    }
    w_feed(w, b->p, b->n, 1);
    b->n = 0;
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

void mmp_writer_close(mmp_writer *w) {
    if (!w) return;
    if (w->has_thread) {
        pthread_mutex_lock(&w->mu);
        w->stop = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
        pthread_cond_destroy(&w->cv);
    }
    pthread_mutex_destroy(&w->mu);
    mp_buf *b = &w->sbuf;
    b->n = 0;
    mp_put_map(b, 4);
    mp_put_cstr(b, "end");
    mp_put_bool(b, 1);
    mp_put_cstr(b, "count");
    mp_put_uint(b, w->count);
    mp_put_cstr(b, "checksum");
    mp_put_uint(b, w->crc);
    mp_put_cstr(b, "skipped");
    mp_put_uint(b, w->skipped);
    w_feed(w, b->p, b->n, 0);
    w_flush(w, ZSTD_e_end);
    if (w->own_fp) {
        if (fclose(w->fp) != 0) mmp_die("%s: write error: %s", w->name, strerror(errno));
    } else if (ferror(w->fp)) {
        mmp_die("%s: write error", w->name);
    }
    ZSTD_freeCCtx(w->cctx);
    mmp_header_free(&w->h);
    mp_buf_free(&w->sbuf);
    free(w->obuf);
    free(w->name);
    free(w);
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

/* Makes a complete msgpack object available at d+dstart (*len bytes).
 * 1 = object, 0 = clean end of input (nothing pending), -1 = error. */
static int r_object(mmp_reader *r, size_t *len) {
    size_t need = 1;
    for (;;) {
        if (r->dend > r->dstart) {
            const char *why;
            int m = mp_measure(r->d + r->dstart, r->dend - r->dstart, MMP_STREAM_MAX_OBJECT_BYTES,
                               len, &need, &why);
            if (m == MP_COMPLETE) return 1;
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

/* Classifies a map by key presence: 'h' header, 't' trailer, 'r' record;
 * 0 when the object is not a map. */
static int classify(const uint8_t *p, size_t n) {
    mp_cur c = {p, n, 0};
    uint32_t k;
    if (mp_rd_map(&c, &k)) return 0;
    int kind = 'r';
    for (uint32_t i = 0; i < k; i++) {
        const char *s;
        uint32_t l;
        if (mp_rd_str(&c, &s, &l) == 0) {
            if (mp_str_eq(s, l, "mmpipe")) return 'h';
            if (mp_str_eq(s, l, "end")) kind = 't';
        } else if (mp_skip(&c)) {
            return kind;
        }
        if (mp_skip(&c)) return kind;
    }
    return kind;
}

/* Copies a msgpack str into buf as a C string. -1 when too long or it
 * holds a NUL byte. */
static int str_to_buf(const char *s, uint32_t l, char *buf, size_t cap) {
    if ((size_t)l >= cap || memchr(s, 0, l)) return -1;
    memcpy(buf, s, l);
    buf[l] = 0;
    return 0;
}

static char *str_dup(const char *s, uint32_t l) {
    char *p = mmp_xmalloc((size_t)l + 1);
    memcpy(p, s, l);
    p[l] = 0;
    return p;
}

/* Reads dtype str and shape array (used by schema and tensors). */
static int rd_dtype(mp_cur *c, mmp_dtype *dt, char *why, size_t wl) {
    const char *s;
    uint32_t l;
    if (mp_rd_str(c, &s, &l)) {
        snprintf(why, wl, "dtype is not a string");
        return -1;
    }
    if (mmp_dtype_parse(s, l, dt)) {
        snprintf(why, wl, "unknown dtype '%.*s'", (int)(l > 16 ? 16 : l), s);
        return -1;
    }
    return 0;
}

static int rd_shape(mp_cur *c, int *ndim, int64_t *shape, int64_t mindim, char *why, size_t wl) {
    uint32_t n;
    if (mp_rd_array(c, &n)) {
        snprintf(why, wl, "shape is not an array");
        return -1;
    }
    if (n > MMP_MAX_DIMS) {
        snprintf(why, wl, "shape has %u dimensions (at most %d)", n, MMP_MAX_DIMS);
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (mp_rd_int(c, &shape[i]) || shape[i] < mindim) {
            snprintf(why, wl, "bad shape dimension %u", i);
            return -1;
        }
    }
    *ndim = (int)n;
    return 0;
}

static int decode_header(const uint8_t *p, size_t n, mmp_header *h, char *why, size_t wl) {
    mp_cur c = {p, n, 0};
    uint32_t k;
    int have_version = 0;
    mp_rd_map(&c, &k);
    for (uint32_t i = 0; i < k; i++) {
        const char *s;
        uint32_t l;
        if (mp_rd_str(&c, &s, &l)) {
            if (mp_skip(&c) || mp_skip(&c)) goto bad;
            continue;
        }
        if (mp_str_eq(s, l, "mmpipe")) {
            int64_t v;
            if (mp_rd_int(&c, &v)) {
                snprintf(why, wl, "header: \"mmpipe\" version is not an integer");
                return -1;
            }
            if (v != MMP_STREAM_VERSION) {
                snprintf(why, wl, "unsupported mmp stream version %" PRId64
                                  " (this reader supports %d)", v, MMP_STREAM_VERSION);
                return -1;
            }
            have_version = 1;
        } else if (mp_str_eq(s, l, "schema")) {
            uint32_t nf;
            if (mp_rd_map(&c, &nf)) {
                snprintf(why, wl, "header: schema is not a map");
                return -1;
            }
            if (nf > MMP_MAX_FIELDS) {
                snprintf(why, wl, "header: schema has %u fields (at most %d)", nf, MMP_MAX_FIELDS);
                return -1;
            }
            for (uint32_t j = 0; j < nf; j++) {
                char name[64];
                uint32_t fk;
                if (mp_rd_str(&c, &s, &l) || l == 0 || str_to_buf(s, l, name, sizeof name)) {
                    snprintf(why, wl, "header: schema field %u has a bad name", j);
                    return -1;
                }
                if (mmp_header_field(h, name)) {
                    snprintf(why, wl, "header: duplicate schema field '%s'", name);
                    return -1;
                }
                if (mp_rd_map(&c, &fk)) {
                    snprintf(why, wl, "header: schema field '%s' is not a map", name);
                    return -1;
                }
                mmp_dtype dt = MMP_DTYPE_COUNT;
                int ndim = -1;
                int64_t shape[MMP_MAX_DIMS];
                for (uint32_t q = 0; q < fk; q++) {
                    char w2[128];
                    if (mp_rd_str(&c, &s, &l)) {
                        if (mp_skip(&c) || mp_skip(&c)) goto bad;
                        continue;
                    }
                    if (mp_str_eq(s, l, "dtype")) {
                        if (rd_dtype(&c, &dt, w2, sizeof w2)) {
                            snprintf(why, wl, "header: schema field '%s': %s", name, w2);
                            return -1;
                        }
                    } else if (mp_str_eq(s, l, "shape")) {
                        if (rd_shape(&c, &ndim, shape, -1, w2, sizeof w2)) {
                            snprintf(why, wl, "header: schema field '%s': %s", name, w2);
                            return -1;
                        }
                    } else if (mp_skip(&c)) {
                        goto bad;
                    }
                }
                if (dt == MMP_DTYPE_COUNT || ndim < 0) {
                    snprintf(why, wl, "header: schema field '%s' lacks dtype or shape", name);
                    return -1;
                }
                mmp_header_add_field(h, name, dt, ndim, shape);
            }
        } else if (mp_str_eq(s, l, "classes")) {
            uint32_t nc;
            if (mp_rd_array(&c, &nc)) {
                snprintf(why, wl, "header: classes is not an array");
                return -1;
            }
            /* every entry takes >= 1 byte, so nc is bounded by the object size */
            if ((size_t)nc > n) goto bad;
            char **names = mmp_xcalloc(nc ? nc : 1, sizeof *names);
            int ok = 1;
            for (uint32_t j = 0; j < nc; j++) {
                if (mp_rd_str(&c, &s, &l) || memchr(s, 0, l)) {
                    ok = 0;
                    break;
                }
                names[j] = str_dup(s, l);
            }
            if (ok) mmp_header_set_classes(h, (int)nc, names);
            for (uint32_t j = 0; j < nc; j++) free(names[j]);
            free(names);
            if (!ok) {
                snprintf(why, wl, "header: a class name is not a string");
                return -1;
            }
        } else if (mp_str_eq(s, l, "meta")) {
            uint32_t nm;
            if (mp_rd_map(&c, &nm)) {
                snprintf(why, wl, "header: meta is not a map");
                return -1;
            }
            for (uint32_t j = 0; j < nm; j++) {
                const char *v;
                uint32_t vl;
                if (mp_rd_str(&c, &s, &l) || memchr(s, 0, l) || mp_rd_str(&c, &v, &vl) ||
                    memchr(v, 0, vl)) {
                    snprintf(why, wl, "header: meta entry %u is not a string pair", j);
                    return -1;
                }
                char *ks = str_dup(s, l), *vs = str_dup(v, vl);
                mmp_meta_set(&h->meta, ks, vs);
                free(ks);
                free(vs);
            }
        } else if (mp_skip(&c)) {
            goto bad;
        }
    }
    if (!have_version) goto bad;
    return 0;
bad:
    snprintf(why, wl, "header: malformed header map");
    return -1;
}

static int decode_trailer(const uint8_t *p, size_t n, uint64_t *count, uint64_t *checksum,
                          uint64_t *skipped, char *why, size_t wl) {
    mp_cur c = {p, n, 0};
    uint32_t k;
    int have_end = 0, have_count = 0, have_sum = 0;
    *skipped = 0;
    mp_rd_map(&c, &k);
    for (uint32_t i = 0; i < k; i++) {
        const char *s;
        uint32_t l;
        if (mp_rd_str(&c, &s, &l)) {
            if (mp_skip(&c) || mp_skip(&c)) break;
            continue;
        }
        int ok = 1;
        if (mp_str_eq(s, l, "end")) {
            int v;
            ok = mp_rd_bool(&c, &v) == 0 && v;
            have_end = 1;
        } else if (mp_str_eq(s, l, "count")) {
            ok = mp_rd_uint(&c, count) == 0;
            have_count = 1;
        } else if (mp_str_eq(s, l, "checksum")) {
            ok = mp_rd_uint(&c, checksum) == 0 && *checksum <= 0xffffffffu;
            have_sum = 1;
        } else if (mp_str_eq(s, l, "skipped")) {
            ok = mp_rd_uint(&c, skipped) == 0;
        } else {
            ok = mp_skip(&c) == 0;
        }
        if (!ok) {
            snprintf(why, wl, "corrupt trailer (bad \"%.*s\")", (int)(l > 16 ? 16 : l), s);
            return -1;
        }
    }
    if (!have_end || !have_count || !have_sum) {
        snprintf(why, wl, "corrupt trailer (needs \"end\", \"count\" and \"checksum\")");
        return -1;
    }
    return 0;
}

static int decode_tensor(mp_cur *c, mmp_field *f, char *why, size_t wl) {
    uint32_t k;
    const char *s;
    uint32_t l;
    const uint8_t *data = NULL;
    uint32_t dlen = 0;
    int have_dtype = 0, have_shape = 0;
    char w2[128];
    if (mp_rd_map(c, &k)) {
        snprintf(why, wl, "tensor '%s' is not a map", f->name);
        return -1;
    }
    for (uint32_t i = 0; i < k; i++) {
        if (mp_rd_str(c, &s, &l)) {
            if (mp_skip(c) || mp_skip(c)) goto bad;
            continue;
        }
        if (mp_str_eq(s, l, "dtype")) {
            if (rd_dtype(c, &f->t.dtype, w2, sizeof w2)) {
                snprintf(why, wl, "tensor '%s': %s", f->name, w2);
                return -1;
            }
            have_dtype = 1;
        } else if (mp_str_eq(s, l, "shape")) {
            if (rd_shape(c, &f->t.ndim, f->t.shape, 0, w2, sizeof w2)) {
                snprintf(why, wl, "tensor '%s': %s", f->name, w2);
                return -1;
            }
            have_shape = 1;
        } else if (mp_str_eq(s, l, "data")) {
            if (mp_rd_bin(c, &data, &dlen)) {
                snprintf(why, wl, "tensor '%s': data is not msgpack bin", f->name);
                return -1;
            }
        } else if (mp_skip(c)) {
            goto bad;
        }
    }
    if (!have_dtype || !have_shape || !data) {
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
bad:
    snprintf(why, wl, "tensor '%s' is malformed", f->name);
    return -1;
}

static int decode_record(const mmp_header *h, const uint8_t *p, size_t n, mmp_record *rec,
                         char *why, size_t wl) {
    mp_cur c = {p, n, 0};
    uint32_t k;
    const char *s;
    uint32_t l;
    int have_tensors = 0;
    mp_rd_map(&c, &k);
    for (uint32_t i = 0; i < k; i++) {
        if (mp_rd_str(&c, &s, &l)) {
            if (mp_skip(&c) || mp_skip(&c)) goto bad;
            continue;
        }
        if (mp_str_eq(s, l, "id")) {
            if (rec->id) goto dup;
            if (mp_rd_nil(&c) == 0) continue;
            if (mp_rd_str(&c, &s, &l) || memchr(s, 0, l)) {
                snprintf(why, wl, "id is not a string");
                return -1;
            }
            rec->id = str_dup(s, l);
        } else if (mp_str_eq(s, l, "label")) {
            if (mp_rd_nil(&c) == 0) continue;
            if (mp_rd_int(&c, &rec->label) || rec->label < MMP_NO_LABEL) {
                snprintf(why, wl, "label is not an integer >= -1");
                return -1;
            }
            if (rec->label >= 0 && h->nclasses > 0 && rec->label >= h->nclasses) {
                snprintf(why, wl, "label %" PRId64 " out of range (%d classes)", rec->label,
                         h->nclasses);
                return -1;
            }
        } else if (mp_str_eq(s, l, "text")) {
            if (rec->text) goto dup;
            if (mp_rd_nil(&c) == 0) continue;
            if (mp_rd_str(&c, &s, &l) || memchr(s, 0, l)) {
                snprintf(why, wl, "text is not a string");
                return -1;
            }
            rec->text = str_dup(s, l);
        } else if (mp_str_eq(s, l, "tensors")) {
            uint32_t nt;
            if (have_tensors) goto dup;
            have_tensors = 1;
            if (mp_rd_map(&c, &nt)) {
                snprintf(why, wl, "tensors is not a map");
                return -1;
            }
            for (uint32_t j = 0; j < nt; j++) {
                char name[64];
                if (mp_rd_str(&c, &s, &l) || l == 0 || str_to_buf(s, l, name, sizeof name)) {
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
                if (rec->nfields >= MMP_MAX_FIELDS) goto bad;
                mmp_field *f = &rec->fields[rec->nfields];
                memset(f, 0, sizeof *f);
                memcpy(f->name, name, sizeof name);
                if (decode_tensor(&c, f, why, wl)) {
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
        } else if (mp_skip(&c)) {
            goto bad;
        }
    }
    for (int i = 0; i < h->nfields; i++)
        if (!mmp_record_cget(rec, h->fields[i].name)) {
            snprintf(why, wl, "missing tensor '%s'", h->fields[i].name);
            return -1;
        }
    return 0;
dup:
    snprintf(why, wl, "duplicate key \"%.*s\"", (int)(l > 16 ? 16 : l), s);
    return -1;
bad:
    snprintf(why, wl, "malformed record map");
    return -1;
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
    const uint8_t *p = r->d + r->dstart;
    int kind = classify(p, len);
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
    if (decode_header(p, len, &h, why, sizeof why)) {
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
        const uint8_t *p = r->d + r->dstart;
        char why[512];
        switch (classify(p, len)) {
        case 'r':
            if (decode_record(&r->h, p, len, rec, why, sizeof why)) {
                mmp_record_clear(rec);
                return r_fail(r, "%s", why);
            }
            r->crc = mp_crc32(r->crc, p, len);
            r->dstart += len;
            r->count++;
            r->seg_count++;
            return 1;
        case 't': {
            uint64_t cnt = 0, sum = 0, skipped = 0;
            if (decode_trailer(p, len, &cnt, &sum, &skipped, why, sizeof why))
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
