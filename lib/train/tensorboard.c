/* train/tensorboard.c: TensorBoard event files: TFRecord framing (masked
 * CRC-32C) around hand-serialized Event protos. See tensorboard.h. */
#include "train/tensorboard.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmp.h"

uint32_t mmp_tensorboard_masked_crc(const void *data, size_t n) {
    uint32_t crc = mmp_crc32c(0, data, n);
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

static void put_le(uint8_t *p, uint64_t v, int n) {
    for (int k = 0; k < n; k++) p[k] = (uint8_t)(v >> (8 * k));
}

size_t mmp_tensorboard_frame(uint8_t *out, const void *data, size_t n) {
    put_le(out, (uint64_t)n, 8);
    put_le(out + 8, mmp_tensorboard_masked_crc(out, 8), 4);
    memcpy(out + 12, data, n);
    put_le(out + 12 + n, mmp_tensorboard_masked_crc(data, n), 4);
    return n + 16;
}

/* protobuf wire format: a bounded buffer; overflow sets p past end */
typedef struct { uint8_t *p, *end; } pb;

static void pb_byte(pb *b, uint8_t v) {
    if (b->p < b->end) *b->p = v;
    b->p++;
}
static void pb_varint(pb *b, uint64_t v) {
    do {
        pb_byte(b, (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0)));
        v >>= 7;
    } while (v);
}
static void pb_fixed(pb *b, uint64_t v, int n) {
    for (int k = 0; k < n; k++) pb_byte(b, (uint8_t)(v >> (8 * k)));
}
static void pb_double(pb *b, int field, double v) { /* wire type 1 */
    uint64_t u;
    memcpy(&u, &v, 8);
    pb_varint(b, (uint64_t)field << 3 | 1);
    pb_fixed(b, u, 8);
}
static void pb_float(pb *b, int field, float v) { /* wire type 5 */
    uint32_t u;
    memcpy(&u, &v, 4);
    pb_varint(b, (uint64_t)field << 3 | 5);
    pb_fixed(b, u, 4);
}
static void pb_bytes(pb *b, int field, const void *s, size_t n) { /* wire type 2 */
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, n);
    for (size_t k = 0; k < n; k++) pb_byte(b, ((const uint8_t *)s)[k]);
}
static size_t varint_len(uint64_t v) {
    size_t n = 1;
    while (v > 0x7f) v >>= 7, n++;
    return n;
}

/* Event fields: wall_time double = 1, step int64 = 2, file_version string = 3,
 * summary Summary = 5, source_metadata SourceMetadata = 10 {writer string = 1};
 * Summary: repeated Value value = 1; Value: tag string = 1, simple_value float = 2. */
size_t mmp_tensorboard_event_version(uint8_t *buf, size_t cap, double wall_time, const char *version) {
    static const char writer[] = "mmp-train-step";
    pb b = {buf, buf + cap};
    pb_double(&b, 1, wall_time);
    pb_bytes(&b, 3, version, strlen(version));
    pb_varint(&b, 10 << 3 | 2);
    pb_varint(&b, 1 + varint_len(sizeof writer - 1) + sizeof writer - 1);
    pb_bytes(&b, 1, writer, sizeof writer - 1);
    return b.p <= b.end ? (size_t)(b.p - buf) : 0;
}

size_t mmp_tensorboard_event_restart(uint8_t *buf, size_t cap, double wall_time, int64_t step, int which) {
    pb b = {buf, buf + cap};
    pb_double(&b, 1, wall_time);
    if (step) {
        pb_varint(&b, 2 << 3 | 0);
        pb_varint(&b, (uint64_t)step);
    }
    if (which == 0) {
        pb_bytes(&b, 3, "brain.Event:2", 13);
    } else { /* session_log = 7: SessionLog {status = 1: START = 1} */
        pb_varint(&b, 7 << 3 | 2);
        pb_varint(&b, 2);
        pb_varint(&b, 1 << 3 | 0);
        pb_varint(&b, 1);
    }
    return b.p <= b.end ? (size_t)(b.p - buf) : 0;
}

size_t mmp_tensorboard_event_scalar(uint8_t *buf, size_t cap, double wall_time, int64_t step, const char *tag, float value) {
    size_t nt = strlen(tag);
    size_t vlen = 1 + varint_len(nt) + nt + 5; /* Value: tag, simple_value */
    size_t slen = 1 + varint_len(vlen) + vlen; /* Summary: value */
    pb b = {buf, buf + cap};
    pb_double(&b, 1, wall_time);
    if (step) {
        pb_varint(&b, 2 << 3 | 0);
        pb_varint(&b, (uint64_t)step);
    }
    pb_varint(&b, 5 << 3 | 2);
    pb_varint(&b, slen);
    pb_varint(&b, 1 << 3 | 2);
    pb_varint(&b, vlen);
    pb_bytes(&b, 1, tag, nt);
    pb_float(&b, 2, value);
    return b.p <= b.end ? (size_t)(b.p - buf) : 0;
}

/* mkdir -p */
static int make_dirs(const char *dir, char *err, size_t errlen) {
    char *p = mmp_xstrdup(dir);
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s && *s != '/') continue;
        char c = *s;
        *s = 0;
        if (mkdir(p, 0777) && errno != EEXIST) {
            if (c) rc = mmp_errf(err, errlen, "%s: cannot create the directory %s: %s", dir, p, strerror(errno));
            else rc = mmp_errf(err, errlen, "%s: cannot create the directory: %s", dir, strerror(errno));
            break;
        }
        *s = c;
        if (!c) break;
    }
    free(p);
    if (rc) return rc;
    struct stat st;
    if (stat(dir, &st)) return mmp_errf(err, errlen, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return mmp_errf(err, errlen, "%s: not a directory", dir);
    return 0;
}

static void write_event(mmp_tensorboard_writer *w, const uint8_t *ev, size_t n) {
    uint8_t rec[512];
    if (!n || n + 16 > sizeof rec) {
        w->failed = 1;
        return;
    }
    size_t m = mmp_tensorboard_frame(rec, ev, n);
    if (fwrite(rec, 1, m, w->f) != m && !w->failed) {
        w->failed = 1;
        w->err_no = errno;
    }
}

int mmp_tensorboard_open(mmp_tensorboard_writer *w, const char *dir, char *err, size_t errlen) {
    memset(w, 0, sizeof *w);
    if (!*dir) return mmp_errf(err, errlen, "--tensorboard: an empty directory name");
    if (make_dirs(dir, err, errlen)) return -1;
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) == 0) host[sizeof host - 1] = 0;
    double now = mmp_wall_time();
    size_t n = strlen(dir) + strlen(host) + 96;
    w->path = mmp_xmalloc(n);
    /* tensorboard's EventFileWriter: "events.out.tfevents.%010d.%s.%s.%s" % (time, host, pid, uid) */
    snprintf(w->path, n, "%s%sevents.out.tfevents.%010lld.%s.%ld.0", dir, dir[strlen(dir) - 1] == '/' ? "" : "/",
             (long long)now, host, (long)getpid());
    w->f = fopen(w->path, "wbx");
    if (!w->f) {
        mmp_errf(err, errlen, "%s: cannot create %s: %s", dir, w->path, strerror(errno));
        free(w->path);
        w->path = NULL;
        return -1;
    }
    uint8_t ev[128];
    write_event(w, ev, mmp_tensorboard_event_version(ev, sizeof ev, now, "brain.Event:2"));
    if (mmp_tensorboard_flush(w, err, errlen)) {
        fclose(w->f);
        unlink(w->path);
        free(w->path);
        memset(w, 0, sizeof *w);
        return -1;
    }
    return 0;
}

void mmp_tensorboard_purge_from(mmp_tensorboard_writer *w, int64_t step) {
    if (!w->f) return;
    uint8_t ev[64];
    for (int k = 0; k < 2; k++) write_event(w, ev, mmp_tensorboard_event_restart(ev, sizeof ev, mmp_wall_time(), step, k));
}

void mmp_tensorboard_scalar(mmp_tensorboard_writer *w, const char *tag, int64_t step, double value) {
    if (!w->f) return;
    uint8_t ev[448];
    write_event(w, ev, mmp_tensorboard_event_scalar(ev, sizeof ev, mmp_wall_time(), step, tag, (float)value));
}

int mmp_tensorboard_flush(mmp_tensorboard_writer *w, char *err, size_t errlen) {
    if (!w->f) return 0;
    if (fflush(w->f) && !w->failed) {
        w->failed = 1;
        w->err_no = errno;
    }
    if (w->failed) {
        int e = w->err_no;
        return mmp_errf(err, errlen, "%s: cannot write: %s", w->path, e ? strerror(e) : "an event too large");
    }
    return 0;
}

int mmp_tensorboard_close(mmp_tensorboard_writer *w, char *err, size_t errlen) {
    if (!w->f) return 0;
    int rc = mmp_tensorboard_flush(w, err, errlen);
    if (fclose(w->f) && !rc) rc = mmp_errf(err, errlen, "%s: cannot write: %s", w->path, strerror(errno));
    free(w->path);
    memset(w, 0, sizeof *w);
    return rc;
}
