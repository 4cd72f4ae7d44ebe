/* mmp-shuffle: seeded shuffle of an mmp stream (shuffle buffer or exact). */
#include "shuffle.h"
#include "mmp.h"

#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: mmp-shuffle [options] [IN.mmp|-] > out.mmp\n"
    "Shuffles the records of a stream, deterministically for a given --seed.\n\n";

int main(int argc, char **argv) {
    mmp_cli_init("mmp-shuffle");
    const char *out = "-";
    long long buffer = 10000, seed = 0;
    int full = 0, level = 0;
    mmp_option opts[] = {
        MMP_O_LLONG("buffer", 0, &buffer, 1, 1LL << 40, "N",
                    "shuffle buffer of N records (default 10000): the first N\n"
                    "records fill it, then each new record makes a uniformly chosen\n"
                    "held one leave; the rest leave in random order at the end.\n"
                    "Memory: N records. Streams; a record moves at most ~N places\n"
                    "earlier."),
        MMP_O_FLAG("full", 0, &full,
                   "exact uniform shuffle (Fisher-Yates) of the whole stream: holds\n"
                   "every record in memory until the input ends"),
        MMP_O_LLONG("seed", 0, &seed, 0, 1LL << 62, "S", "(default 0)"),
        MMP_O_LEVEL(&level, "zstd level (default 3)"),
        MMP_O_OUTPUT(&out, "output (default stdout)"),
        MMP_O_COMMON,
        MMP_O_END,
    };
    const char *in = mmp_cli_parse_input(argc, argv, opts, usage);
    mmp_reader *r = mmp_reader_open_or_die(in);
    mmp_header h;
    mmp_header_copy(&h, mmp_reader_header(r));
    mmp_header_stamp(&h, argc, argv);
    char buf[128];
    if (full) mmp_meta_set(&h.meta, "shuffle", "full");
    else {
        snprintf(buf, sizeof buf, "buffer %lld", buffer);
        mmp_meta_set(&h.meta, "shuffle", buf);
    }
    snprintf(buf, sizeof buf, "%lld", seed);
    mmp_meta_set(&h.meta, "shuffle.seed", buf);
    mmp_writer *w = mmp_writer_open(out, &h, level);
    mmp_header_free(&h);
    mmp_shufbuf sb;
    mmp_shufbuf_init(&sb, full ? 0 : (size_t)buffer, (uint64_t)seed);
    mmp_record rec, o;
    mmp_record_init(&rec);
    mmp_record_init(&o);
    uint64_t n = 0;
    double t0 = mmp_now();
    while (mmp_reader_next_or_die(r, &rec)) {
        if (mmp_shufbuf_push(&sb, &rec, &o)) {
            mmp_writer_write(w, &o);
            mmp_record_clear(&o);
        }
        if (mmp_progress_enabled() && ++n % 10000 == 0) mmp_progress_count(NULL, "records", n, 0, t0);
    }
    while (mmp_shufbuf_pop(&sb, &o)) {
        mmp_writer_write(w, &o);
        mmp_record_clear(&o);
    }
    mmp_progress_done();
    mmp_shufbuf_free(&sb);
    mmp_writer_add_skipped(w, mmp_reader_skipped(r));
    mmp_writer_close(w);
    mmp_reader_close(r);
    return 0;
}
