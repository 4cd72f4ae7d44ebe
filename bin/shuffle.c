/* mmp-shuffle: seeded shuffle of an mmp stream (shuffle buffer or exact). */
#include "shuffle.h"
#include "mmp.h"

#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: mmp-shuffle [options] [IN.mmp|-] > out.mmp\n"
    "Shuffles the records of a stream, deterministically for a given --seed.\n\n"
    "  --buffer N    shuffle buffer of N records (default 10000): the first N\n"
    "                records fill it, then each new record makes a uniformly chosen\n"
    "                held one leave; the rest leave in random order at the end.\n"
    "                Memory: N records. Streams; a record moves at most ~N places\n"
    "                earlier.\n"
    "  --full        exact uniform shuffle (Fisher-Yates) of the whole stream: holds\n"
    "                every record in memory until the input ends\n"
    "  --seed S      (default 0)\n"
    "  --level L     zstd level (default 3)    -o FILE  output (default stdout)\n"
    "  --progress, -h, --help, --version\n";

int main(int argc, char **argv) {
    mmp_cli_init("mmp-shuffle");
    const char *in = "-", *out = "-", *v;
    long long buffer = 10000, seed = 0;
    int full = 0, level = 0, nin = 0;
    for (int i = 1; i < argc; i++) {
        if (mmp_cli_common(argc, argv, &i, usage)) continue;
        if (argv[i][0] != '-' || !strcmp(argv[i], "-")) {
            if (nin++) mmp_die("one input stream only (see --help)");
            in = argv[i];
        } else if (mmp_cli_opt(argc, argv, &i, "-o", &v)) out = v;
        else if (mmp_cli_opt(argc, argv, &i, "--buffer", &v)) buffer = mmp_cli_int("--buffer", v, 1, 1LL << 40);
        else if (mmp_cli_opt(argc, argv, &i, "--seed", &v)) seed = mmp_cli_int("--seed", v, 0, 1LL << 62);
        else if (mmp_cli_level(argc, argv, &i, &level)) {}
        else if (mmp_cli_flag(argv, i, "--full")) full = 1;
        else mmp_cli_unknown(argv[i]);
    }
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
    while (mmp_reader_next_or_die(r, &rec)) {
        if (mmp_shufbuf_push(&sb, &rec, &o)) {
            mmp_writer_write(w, &o);
            mmp_record_clear(&o);
        }
        if (mmp_progress_enabled() && ++n % 10000 == 0) mmp_progress("%llu records", (unsigned long long)n);
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
