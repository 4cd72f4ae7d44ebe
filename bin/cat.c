/* mmp-cat: print mmp streams as JSON lines, count them, or merge and
 * re-encode them into one stream. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mmp.h"
#include "npz.h"
#include "stream_ext.h"

static const char *usage =
    "usage: mmp-cat [options] [FILE...]\n"
    "Reads mmp streams (FILE or '-' = stdin; default stdin), checks them (trailer count\n"
    "and checksum) and prints them as JSON lines: the header, then one line per record\n"
    "with its id, label, text and tensors (dtype, shape, min/max/mean). Several inputs\n"
    "are merged into one stream; their schemas must agree.\n"
    "\n";

int main(int argc, char **argv) {
    mmp_cli_init("mmp-cat");
    int header_only = 0, count_only = 0, full = 0, level_given = 0, level = 3;
    long long head = -1;
    const char *out = NULL, *npz_path = NULL;
    int deflate = 0;
    mmp_option opts[] = {
        MMP_O_FLAG("header", 0, &header_only, "print only the header"),
        MMP_O_FLAG("count", 0, &count_only, "print only the number of records (the whole input is verified)"),
        MMP_O_LLONG("head", 0, &head, 0, (long long)1 << 62, "N", "stop after N records"),
        MMP_O_FLAG("full", 0, &full, "print every tensor value (nested arrays) besides the summary"),
        MMP_O_OUTPUT(&out, "write an mmp stream to FILE ('-' = stdout) instead of JSON"),
        MMP_O_STRING("npz", 0, &npz_path, "FILE",
                     "write numpy's .npz instead (numpy.load(FILE)): one array per tensor field\n"
                     "stacked over the records [N, ...] (bf16 is written as float32, numpy has no\n"
                     "bf16), labels (int64, -1 = unlabelled), ids and classes (str arrays); every\n"
                     "record must have the same shape per field"),
        MMP_O_FLAG("deflate", 0, &deflate, "with --npz: deflate the arrays (numpy.savez_compressed; default stored)"),
        MMP_O_LEVEL(&level, "zstd level -7..19 (default 3); without -o: an mmp stream on stdout", .given = &level_given),
        MMP_O_COMMON,
        MMP_O_TEXT("\nExit status: 0 ok; 1 on any error (one line on stderr naming file and record)."),
        MMP_O_END,
    };
    char **pos;
    int ninputs = mmp_cli_parse(argc, argv, opts, usage, &pos);
    const char **inputs = mmp_xcalloc((size_t)ninputs + 2, sizeof *inputs);
    for (int i = 0; i < ninputs; i++) inputs[i] = pos[i];
    free(pos);
    if (ninputs == 0) inputs[ninputs++] = "-";
    if (npz_path && (out || level_given || count_only || header_only || full))
        mmp_die("--npz cannot be combined with -o, --level, --count, --header or --full");
    if (deflate && !npz_path) mmp_die("--deflate needs --npz");
    /* --level alone re-encodes to stdout */
    if (level_given && !out && !count_only && !header_only) out = "-";
    for (int i = 0; i < ninputs; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(inputs[i], "-") == 0 && strcmp(inputs[j], "-") == 0)
                mmp_die("stdin ('-') given twice");

    /* All headers first: a mismatch fails before anything is written. */
    mmp_reader **rd = mmp_xcalloc((size_t)ninputs, sizeof *rd);
    for (int i = 0; i < ninputs; i++) {
        rd[i] = mmp_reader_open_or_die(inputs[i]);
        char why[512];
        if (i > 0 && !mmp_header_compatible(mmp_reader_header(rd[0]), mmp_reader_header(rd[i]),
                                            why, sizeof why))
            mmp_die("%s: header: schema mismatch with %s: %s", mmp_reader_name(rd[i]),
                    mmp_reader_name(rd[0]), why);
    }
    const mmp_header *h0 = mmp_reader_header(rd[0]);
    static char obuf[1 << 16];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);

    if (header_only) {
        mmp_header_print_json(stdout, h0);
    } else if (npz_path) {
        char err[1024];
        mmp_npz *z = mmp_npz_open(npz_path, h0, deflate, err, sizeof err);
        if (!z) mmp_die("%s", err);
        mmp_record rec;
        mmp_record_init(&rec);
        unsigned long long n = 0;
        double t0 = mmp_now();
        for (int i = 0; i < ninputs && !(head >= 0 && n >= (unsigned long long)head); i++) {
            int k;
            while (!(head >= 0 && n >= (unsigned long long)head) && (k = mmp_reader_next(rd[i], &rec)) != 0) {
                if (k < 0) snprintf(err, sizeof err, "%s", mmp_reader_error(rd[i]));
                if (k < 0 || mmp_npz_add(z, &rec, mmp_reader_name(rd[i]), mmp_reader_count(rd[i]) - 1,
                                         err, sizeof err)) {
                    mmp_npz_abort(z); /* no half file */
                    mmp_die("%s", err);
                }
                n++;
                if ((n & 1023) == 0 && mmp_progress_enabled()) mmp_progress_count(NULL, "records", n, 0, t0);
            }
        }
        if (mmp_progress_enabled()) mmp_progress_done();
        mmp_record_clear(&rec);
        if (mmp_npz_close(z, err, sizeof err)) mmp_die("%s", err);
    } else {
        mmp_writer *w = NULL;
        if (out) {
            mmp_header h;
            mmp_header_copy(&h, h0);
            mmp_header_stamp(&h, argc, argv);
            w = mmp_writer_open(out, &h, (int)level);
            mmp_header_free(&h);
        } else if (!count_only) {
            mmp_header_print_json(stdout, h0);
        }
        mmp_record rec;
        mmp_record_init(&rec);
        unsigned long long n = 0;
        double t0 = mmp_now();
        uint64_t skipped = 0;
        int stopped = 0;
        for (int i = 0; i < ninputs && !stopped; i++) {
            while (!(stopped = head >= 0 && n >= (unsigned long long)head) &&
                   mmp_reader_next_or_die(rd[i], &rec)) {
                if (w) mmp_writer_write(w, &rec);
                else if (!count_only) mmp_record_print_json(stdout, &rec, h0, full);
                n++;
                if ((n & 1023) == 0 && mmp_progress_enabled()) mmp_progress_count(NULL, "records", n, 0, t0);
            }
            if (!stopped) skipped += mmp_reader_skipped(rd[i]);
        }
        if (mmp_progress_enabled()) mmp_progress_done();
        mmp_record_clear(&rec);
        if (w) {
            mmp_writer_add_skipped(w, skipped);
            mmp_writer_close(w);
        }
        if (count_only) printf("%llu\n", n);
    }
    for (int i = 0; i < ninputs; i++) mmp_reader_close(rd[i]);
    if (fflush(stdout) != 0) mmp_die("stdout: write error: %s", strerror(errno));
    if (ferror(stdout)) mmp_die("stdout: write error");
    free(rd);
    free(inputs);
    return 0;
}
