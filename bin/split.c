/* mmp-split: deterministic split of a stream by hashed record id. */
#include "shuffle.h"
#include "mmp.h"

#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: mmp-split --ratio R [options] [IN.mmp|-] -o FIRST.mmp [--rest REST.mmp]\n"
    "Sends each record to FIRST when u(id) < R, else to REST, where\n"
    "u(id) = (mmp_hash64(id, seed) >> 11) / 2^53 is uniform in [0,1): the split\n"
    "depends only on the record id and the seed (not on order, threads or machine),\n"
    "and a record keeps its side when the data set grows. Order is preserved.\n\n"
    "  --ratio R     fraction for FIRST, 0 <= R <= 1 (e.g. 0.9)\n"
    "  --seed S      (default 0)\n"
    "  -o FILE       first output (default stdout)\n"
    "  --rest FILE   second output (default: records not in FIRST are dropped)\n"
    "  --level L     zstd level (default 3)\n"
    "  --progress, -h, --help, --version\n"
    "Records without an id are an error.\n";

int main(int argc, char **argv) {
    mmp_cli_init("mmp-split");
    const char *in = "-", *out = "-", *rest = NULL, *v;
    double ratio = -1;
    long long seed = 0;
    int level = 0, nin = 0;
    for (int i = 1; i < argc; i++) {
        if (mmp_cli_common(argc, argv, &i, usage)) continue;
        if (argv[i][0] != '-' || !strcmp(argv[i], "-")) {
            if (nin++) mmp_die("one input stream only (see --help)");
            in = argv[i];
        } else if (mmp_cli_opt(argc, argv, &i, "-o", &v)) out = v;
        else if (mmp_cli_opt(argc, argv, &i, "--rest", &v)) rest = v;
        else if (mmp_cli_opt(argc, argv, &i, "--ratio", &v)) {
            ratio = mmp_cli_double("--ratio", v);
            if (!(ratio >= 0 && ratio <= 1)) mmp_die("bad value for --ratio: want 0 <= R <= 1");
        } else if (mmp_cli_opt(argc, argv, &i, "--seed", &v)) seed = mmp_cli_int("--seed", v, 0, 1LL << 62);
        else if (mmp_cli_level(argc, argv, &i, &level)) {}
        else mmp_cli_unknown(argv[i]);
    }
    if (ratio < 0) mmp_die("--ratio is required (see --help)");
    if (rest && !strcmp(rest, out) && strcmp(out, "/dev/null")) mmp_die("-o and --rest name the same file");
    if (rest && !strcmp(rest, "-") && !strcmp(out, "-")) mmp_die("-o and --rest cannot both be stdout");
    mmp_reader *r = mmp_reader_open_or_die(in);
    mmp_header h;
    mmp_header_copy(&h, mmp_reader_header(r));
    mmp_header_stamp(&h, argc, argv);
    char buf[128];
    snprintf(buf, sizeof buf, "%.17g", ratio);
    mmp_meta_set(&h.meta, "split.ratio", buf);
    snprintf(buf, sizeof buf, "%lld", seed);
    mmp_meta_set(&h.meta, "split.seed", buf);
    mmp_meta_set(&h.meta, "split.part", "first");
    mmp_writer *w1 = mmp_writer_open(out, &h, level);
    mmp_writer *w2 = NULL;
    if (rest) {
        mmp_meta_set(&h.meta, "split.part", "rest");
        w2 = mmp_writer_open(rest, &h, level);
    }
    mmp_header_free(&h);
    mmp_record rec;
    mmp_record_init(&rec);
    uint64_t n = 0, n1 = 0, n2 = 0;
    while (mmp_reader_next_or_die(r, &rec)) {
        if (!rec.id)
            mmp_die("%s: record %llu: no id (mmp-split hashes the id)", mmp_reader_name(r), (unsigned long long)n);
        if (mmp_split_u(rec.id, (uint64_t)seed) < ratio) {
            mmp_writer_write(w1, &rec);
            n1++;
        } else {
            if (w2) mmp_writer_write(w2, &rec);
            n2++;
        }
        n++;
    }
    mmp_record_clear(&rec);
    /* upstream skips are reported once, in the first output */
    mmp_writer_add_skipped(w1, mmp_reader_skipped(r));
    mmp_writer_close(w1);
    if (w2) mmp_writer_close(w2);
    fprintf(stderr, "%s: %llu records: %llu first, %llu rest%s\n", mmp_progname(), (unsigned long long)n,
            (unsigned long long)n1, (unsigned long long)n2, w2 ? "" : " (dropped)");
    mmp_reader_close(r);
    return 0;
}
