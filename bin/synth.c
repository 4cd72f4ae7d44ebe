/* mmp-synth: write the built-in demo data set (shape pictures + captions) as
 * a WebDataset-style tar. */
#include "cli.h"
#include "mmp.h"
#include "synth/synth.h"

#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: mmp-synth [options] > data.tar\n"
    "Writes a deterministic synthetic image+caption data set as a WebDataset-style\n"
    "tar (KEY.jpg 96x96 RGB, KEY.txt caption, KEY.cls label index).\n"
    "The picture shows a shape, the caption a scene: the label (shape x scene,\n"
    "6 classes) needs both.\n\n";

int main(int argc, char **argv) {
    mmp_cli_init("mmp-synth");
    long long count = 600, first = 0, seed = 0;
    int quality = 95, classes = 0;
    const char *out = "-", *prefix = "item";
    mmp_option opts[] = {
        MMP_O_LLONG("count", 'n', &count, 0, 100000000, "N", "items to write (default 600)"),
        MMP_O_LLONG("first", 0, &first, 0, 1LL << 40, "I", "index of the first item (default 0)"),
        MMP_O_LLONG("seed", 0, &seed, 0, 1LL << 62, "S", "data set seed (default 0)"),
        MMP_O_STRING("prefix", 0, &prefix, "P", "key prefix inside the tar (default 'item')"),
        MMP_O_INT("quality", 0, &quality, 1, 100, "Q", "JPEG quality 1..100 (default 95)"),
        MMP_O_FLAG("classes", 0, &classes, "print the 6 class names, one a line, and exit"),
        MMP_O_OUTPUT(&out, "output file (default stdout, '-')"),
        MMP_O_COMMON,
        MMP_O_END,
    };
    char **pos;
    int npos = mmp_cli_parse(argc, argv, opts, usage, &pos);
    if (npos) mmp_die("unexpected argument '%s' (see --help)", pos[0]);
    free(pos);
    if (classes) {
        for (int c = 0; c < MMP_SYNTH_NCLASSES; c++) puts(mmp_synth_classes[c]);
        return 0;
    }
    FILE *fp = strcmp(out, "-") ? fopen(out, "wb") : stdout;
    if (!fp) mmp_die("%s: cannot open for writing", out);
    if (mmp_synth_write_tar(fp, (uint64_t)seed, (uint64_t)first, (uint64_t)count, prefix, quality) || fflush(fp))
        mmp_die("%s: write failed", out);
    if (fp != stdout && fclose(fp)) mmp_die("%s: write failed", out);
    return 0;
}
