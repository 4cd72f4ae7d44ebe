/* mmp-split: deterministic split of a stream by hashed record id. */
#include "shuffle.h"
#include "mmp.h"

#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include <math.h>

static const char usage[] =
    "usage: mmp-split --ratio R [options] [IN.mmp|-] -o FIRST.mmp [--rest REST.mmp]\n"
    "Sends each record to FIRST when u(id) < R, else to REST, where\n"
    "u(id) = (mmp_hash64(id, seed) >> 11) / 2^53 is uniform in [0,1): the split\n"
    "depends only on the record id and the seed (not on order, threads or machine),\n"
    "and a record keeps its side when the data set grows. Order is preserved.\n\n";

int main(int argc, char **argv) {
    mmp_cli_init("mmp-split");
    const char *out = "-", *rest = NULL;
    double ratio = -1;
    long long seed = 0;
    int level = 0, ratio_given = 0;
    mmp_option opts[] = {
        MMP_O_DOUBLE("ratio", 0, &ratio, -INFINITY, INFINITY, "R", "fraction for FIRST, 0 <= R <= 1 (e.g. 0.9)", .given = &ratio_given),
        MMP_O_LLONG("seed", 0, &seed, 0, 1LL << 62, "S", "(default 0)"),
        MMP_O_OUTPUT(&out, "first output (default stdout)"),
        MMP_O_STRING("rest", 0, &rest, "FILE", "second output (default: records not in FIRST are dropped)"),
        MMP_O_LEVEL(&level, "zstd level (default 3)"),
        MMP_O_COMMON,
        MMP_O_TEXT("\nRecords without an id are an error."),
        MMP_O_END,
    };
    const char *in = mmp_cli_parse_input(argc, argv, opts, usage);
    if (ratio_given && !(ratio >= 0 && ratio <= 1)) mmp_die("bad value for --ratio: want 0 <= R <= 1");
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
