/* Helper for bench/bench_stream.sh (built by it, linked with build/libmmp.a).
 *
 *   stream_bench gen KIND MB LEVEL   mmp stream of about MB MiB of payload -> stdout
 *   stream_bench raw KIND MB         the same payload bytes, raw -> stdout
 *   stream_bench pool KIND           the record pool -> stdout (then SB_POOL=FILE
 *                                    makes gen/raw load it instead of generating)
 *   stream_bench read                reads an mmp stream on stdin; prints payload bytes,
 *                                    a checksum and the seconds it took
 * gen prints on stderr the seconds from the header to the closed stream
 * (excluding building the record pool).
 *
 * KIND: cifar (u8 32x32x3), imagenet (u8 224x224x3), emb32 (f32 1280),
 * emb16 (f16 1280). Records cycle over a pool of distinct records larger
 * than the zstd window (so repeats cannot be matched); tensors point into
 * the pool, so generating costs nothing. Images: smooth gradients plus
 * noise (natural-image-like entropy); embeddings: |N(0,1)| like pooled
 * post-ReLU features (random mantissas, near incompressible). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmp.h"

static uint64_t s = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}
/* approximately N(0,1) (Irwin-Hall, 4 uniforms): cheap, so building the
 * pool takes a few ms */
static double gauss(void) {
    uint64_t r = next();
    double u = (double)(r & 0xffff) + (double)((r >> 16) & 0xffff) + (double)((r >> 32) & 0xffff) +
               (double)(r >> 48);
    return (u / 65536.0 - 2.0) * 1.7320508075688772;
}

typedef struct {
    mmp_dtype dt;
    int ndim;
    int64_t shape[3];
    size_t rec_bytes;
    size_t pool;
    uint8_t *data;
} kind;

static void make_kind(const char *name, kind *k) {
    memset(k, 0, sizeof *k);
    if (!strcmp(name, "cifar") || !strcmp(name, "imagenet")) {
        int64_t side = name[0] == 'c' ? 32 : 224;
        k->dt = MMP_U8;
        k->ndim = 3;
        k->shape[0] = side;
        k->shape[1] = side;
        k->shape[2] = 3;
    } else if (!strcmp(name, "emb32") || !strcmp(name, "emb16")) {
        k->dt = name[3] == '3' ? MMP_F32 : MMP_F16;
        k->ndim = 1;
        k->shape[0] = 1280;
    } else {
        mmp_die("unknown kind %s (cifar, imagenet, emb32, emb16)", name);
    }
    k->rec_bytes = (size_t)mmp_numel(k->ndim, k->shape) * mmp_dtype_size(k->dt);
    k->pool = ((size_t)8 << 20) / k->rec_bytes + 1; /* > 8 MiB of distinct data */
    k->data = mmp_xmalloc(k->pool * k->rec_bytes);
    /* a pool saved by "stream_bench pool KIND > FILE" (env SB_POOL): the
     * timed runs then spend nothing on generating data */
    const char *saved = getenv("SB_POOL");
    if (saved) {
        FILE *f = fopen(saved, "rb");
        if (!f || fread(k->data, 1, k->pool * k->rec_bytes, f) != k->pool * k->rec_bytes)
            mmp_die("%s: cannot read the record pool", saved);
        fclose(f);
        return;
    }
    for (size_t r = 0; r < k->pool; r++) {
        uint8_t *p = k->data + r * k->rec_bytes;
        if (k->dt == MMP_U8) {
            int64_t side = k->shape[0];
            double a = (double)(next() % 200) / 100.0, b = (double)(next() % 200) / 100.0;
            int base = (int)(next() % 128);
            for (int64_t y = 0; y < side; y++)
                for (int64_t x = 0; x < side; x++)
                    for (int c = 0; c < 3; c++) {
                        double v = base + a * (double)x * 32 / (double)side +
                                   b * (double)y * 32 / (double)side + 20 * c + 6 * gauss();
                        p[(y * side + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                    }
        } else {
            float f[1280];
            for (int i = 0; i < 1280; i++) f[i] = (float)fabs(gauss());
            mmp_f32_to_dtype(f, 1280, k->dt, p);
        }
    }
}

static void write_all(const void *p, size_t n) {
    const uint8_t *q = p;
    while (n) {
        ssize_t w = write(1, q, n);
        if (w <= 0) mmp_die("write: stdout");
        q += w;
        n -= (size_t)w;
    }
}

int main(int argc, char **argv) {
    mmp_cli_init("stream_bench");
    if (argc >= 2 && !strcmp(argv[1], "read")) {
        double t0 = mmp_now();
        mmp_reader *r = mmp_reader_open_or_die("-");
        mmp_record rec;
        mmp_record_init(&rec);
        uint64_t bytes = 0, sum = 0;
        while (mmp_reader_next_or_die(r, &rec)) {
            for (int i = 0; i < rec.nfields; i++) {
                bytes += rec.fields[i].t.nbytes;
                if (rec.fields[i].t.nbytes) sum += ((uint8_t *)rec.fields[i].t.data)[0];
            }
        }
        mmp_record_clear(&rec);
        mmp_reader_close(r);
        printf("%llu %llu %.6f\n", (unsigned long long)bytes, (unsigned long long)sum,
               mmp_now() - t0);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "pool")) {
        kind k;
        make_kind(argv[2], &k);
        write_all(k.data, k.pool * k.rec_bytes);
        return 0;
    }
    if (argc < 4) mmp_die("usage: stream_bench gen KIND MB LEVEL | raw KIND MB | pool KIND | read");
    kind k;
    make_kind(argv[2], &k);
    size_t n = (size_t)(atof(argv[3]) * 1048576.0 / (double)k.rec_bytes);
    if (!strcmp(argv[1], "raw")) {
        for (size_t i = 0; i < n; i++) write_all(k.data + (i % k.pool) * k.rec_bytes, k.rec_bytes);
        return 0;
    }
    if (strcmp(argv[1], "gen") || argc < 5) mmp_die("usage: stream_bench gen KIND MB LEVEL");
    double t0 = mmp_now(); /* after building the pool */
    mmp_header h;
    mmp_header_init(&h);
    mmp_header_add_field(&h, "x", k.dt, k.ndim, k.shape);
    mmp_writer *w = mmp_writer_open("-", &h, atoi(argv[4]));
    mmp_record rec;
    mmp_record_init(&rec);
    rec.nfields = 1;
    snprintf(rec.fields[0].name, sizeof rec.fields[0].name, "x");
    mmp_tensor *t = &rec.fields[0].t;
    t->dtype = k.dt;
    t->ndim = k.ndim;
    memcpy(t->shape, k.shape, sizeof k.shape);
    t->nbytes = k.rec_bytes;
    t->owns = 0;
    char id[32];
    rec.id = id;
    for (size_t i = 0; i < n; i++) {
        snprintf(id, sizeof id, "%zu", i);
        rec.label = (int64_t)(i % 10);
        t->data = k.data + (i % k.pool) * k.rec_bytes;
        mmp_writer_write(w, &rec);
    }
    mmp_writer_close(w);
    fprintf(stderr, "%.6f\n", mmp_now() - t0);
    mmp_header_free(&h);
    free(k.data);
    return 0;
}
