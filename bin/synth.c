/* mmp-synth: write the built-in demo data set (shape pictures + captions) as
 * a WebDataset-style tar. */
#include "mmp.h"
#include "synth/synth.h"

#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: mmp-synth [options] > data.tar\n"
    "Writes a deterministic synthetic image+caption data set as a WebDataset-style\n"
    "tar (KEY.jpg 96x96 RGB, KEY.txt caption, KEY.cls label index).\n"
    "The picture shows a shape, the caption a scene: the label (shape x scene,\n"
    "6 classes) needs both.\n\n"
    "  -n, --count N     items to write (default 600)\n"
    "  --first I         index of the first item (default 0)\n"
    "  --seed S          data set seed (default 0)\n"
    "  --prefix P        key prefix inside the tar (default 'item')\n"
    "  --quality Q       JPEG quality 1..100 (default 95)\n"
    "  --classes         print the 6 class names, one a line, and exit\n"
    "  -o FILE           output file (default stdout, '-')\n"
    "  -h, --help, --version\n";

int main(int argc, char **argv) {
    mmp_cli_init("mmp-synth");
    long long count = 600, first = 0, seed = 0, quality = 95;
    const char *out = "-", *prefix = "item", *v;
    for (int i = 1; i < argc; i++) {
        if (mmp_cli_common(argc, argv, &i, usage)) continue;
        if (mmp_cli_opt(argc, argv, &i, "--count", &v) || mmp_cli_opt(argc, argv, &i, "-n", &v))
            count = mmp_cli_int("--count", v, 0, 100000000);
        else if (mmp_cli_opt(argc, argv, &i, "--first", &v)) first = mmp_cli_int("--first", v, 0, 1LL << 40);
        else if (mmp_cli_opt(argc, argv, &i, "--seed", &v)) seed = mmp_cli_int("--seed", v, 0, 1LL << 62);
        else if (mmp_cli_opt(argc, argv, &i, "--quality", &v)) quality = mmp_cli_int("--quality", v, 1, 100);
        else if (mmp_cli_opt(argc, argv, &i, "--prefix", &v)) prefix = v;
        else if (mmp_cli_opt(argc, argv, &i, "-o", &v)) out = v;
        else if (mmp_cli_flag(argv, i, "--classes")) {
            for (int c = 0; c < MMP_SYNTH_NCLASSES; c++) puts(mmp_synth_classes[c]);
            return 0;
        } else mmp_cli_unknown(argv[i]);
    }
    FILE *fp = strcmp(out, "-") ? fopen(out, "wb") : stdout;
    if (!fp) mmp_die("%s: cannot open for writing", out);
    if (mmp_synth_write_tar(fp, (uint64_t)seed, (uint64_t)first, (uint64_t)count, prefix, (int)quality) || fflush(fp))
        mmp_die("%s: write failed", out);
    if (fp != stdout && fclose(fp)) mmp_die("%s: write failed", out);
    return 0;
}
