/* mmp-synth: write the built-in demo data sets: shape pictures + captions as
 * a WebDataset-style tar (the default), or scenes with several captions or
 * VQA questions as an image folder with JSONL manifests (--mode). */
#include "cli.h"
#include "mmp.h"
#include "synth/synth.h"

#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: mmp-synth [options] > data.tar\n"
    "       mmp-synth --mode captions|vqa --out DIR [options]\n"
    "Writes a deterministic synthetic data set.\n"
    "--mode tar (default): a WebDataset-style tar (KEY.jpg 96x96 RGB, KEY.txt\n"
    "caption, KEY.cls label index). The picture shows a shape, the caption a\n"
    "scene: the label (shape x scene, 6 classes) needs both.\n"
    "--mode captions / vqa: scenes of 1-3 objects (circle, square, triangle,\n"
    "diamond; six colours; small or large; in a 3x3 grid of positions) written\n"
    "to DIR: images/KEY.png, train.jsonl / dev.jsonl / test.jsonl manifests\n"
    "(formats/manifest.md; read by mmp-decode --manifest) and scenes.jsonl (what\n"
    "each picture shows). captions: five reference captions per image, the same\n"
    "facts in different wordings. vqa: questions whose answer needs the picture\n"
    "and the question (types color, shape, count, yesno, position, relation).\n\n";

int main(int argc, char **argv) {
    mmp_cli_init("mmp-synth");
    long long count = 600, first = 0, seed = 0, ntrain = 1000, ndev = 200, ntest = 200;
    int quality = 95, classes = 0, mode = 0, questions = 6, answers = 1, format = 0;
    int count_given = 0, first_given = 0, prefix_given = 0, out_given = 0, dir_opts = 0;
    const char *out = "-", *prefix = "item", *dir = NULL;
    static const char *const modes[] = {"tar", "captions", "vqa", NULL};
    static const char *const formats[] = {"png", "jpg", NULL};
    mmp_option opts[] = {
        MMP_O_CHOICE("mode", 0, &mode, modes, "tar (default), captions or vqa"),
        MMP_O_LLONG("count", 'n', &count, 0, 100000000, "N", "tar: items to write (default 600)", .given = &count_given),
        MMP_O_LLONG("first", 0, &first, 0, 1LL << 40, "I", "tar: index of the first item (default 0)", .given = &first_given),
        MMP_O_LLONG("seed", 0, &seed, 0, 1LL << 62, "S", "data set seed (default 0)"),
        MMP_O_STRING("prefix", 0, &prefix, "P", "tar: key prefix inside the tar (default 'item')", .given = &prefix_given),
        MMP_O_INT("quality", 0, &quality, 1, 100, "Q", "JPEG quality 1..100 (default 95)"),
        MMP_O_FLAG("classes", 0, &classes, "tar: print the 6 class names, one a line, and exit"),
        MMP_O_OUTPUT(&out, "tar: output file (default stdout, '-')", .given = &out_given),
        MMP_O_STRING("out", 0, &dir, "DIR", "captions/vqa: the output folder (created)"),
        MMP_O_LLONG("train", 0, &ntrain, 0, 100000000, "N", "captions/vqa: training images (default 1000)", .given = &dir_opts),
        MMP_O_LLONG("dev", 0, &ndev, 0, 100000000, "N", "captions/vqa: dev images (default 200)", .given = &dir_opts),
        MMP_O_LLONG("test", 0, &ntest, 0, 100000000, "N", "captions/vqa: test images (default 200)", .given = &dir_opts),
        MMP_O_INT("questions", 0, &questions, 1, 64, "Q",
                  "vqa: questions per image (default 6: one of each type;\n"
                  "types rotate from a random start)", .given = &dir_opts),
        MMP_O_INT("answers", 0, &answers, 1, 10, "A",
                  "vqa: annotator answers per question (default 1, the true\n"
                  "answer; 10: VQA v2 style, each wrong with probability 0.15)", .given = &dir_opts),
        MMP_O_CHOICE("format", 0, &format, formats, "captions/vqa: image files png (default) or jpg (--quality)",
                     .given = &dir_opts),
        MMP_O_COMMON,
        MMP_O_END,
    };
    char **pos;
    int npos = mmp_cli_parse(argc, argv, opts, usage, &pos);
    if (npos) mmp_die("unexpected argument '%s' (see --help)", pos[0]);
    free(pos);
    if (mode == 0) {
        if (dir || dir_opts) mmp_die("--out, --train, --dev, --test, --questions, --answers and --format need --mode captions or vqa");
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
    if (count_given || first_given || prefix_given || out_given || classes)
        mmp_die("--mode %s writes a folder: give --out DIR and --train/--dev/--test (not --count, --first, --prefix, -o, --classes)",
                modes[mode]);
    if (!dir) mmp_die("--mode %s needs --out DIR", modes[mode]);
    if (mode == 1 && (questions != 6 || answers != 1)) mmp_die("--questions and --answers are for --mode vqa");
    mmp_synth_dir_opts o = {.seed = (uint64_t)seed, .vqa = mode == 2, .nsplit = {(uint64_t)ntrain, (uint64_t)ndev, (uint64_t)ntest},
                            .questions = questions, .answers = answers, .jpeg = format == 1, .quality = quality};
    char err[4200];
    if (mmp_synth_write_dir(dir, &o, err, sizeof err)) mmp_die("%s", err);
    return 0;
}
