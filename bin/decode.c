/* mmp-decode: images (ImageFolder folders, tars, WebDataset tars, CSV/JSONL
 * manifests) in, an mmp stream of u8 HxWx3 "image" records out. */
#include "image/pipeline.h"
#include "cli.h"
#include "mmp.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: mmp-decode [options] INPUT... > out.mmp\n"
    "Decodes images into an mmp stream: records with id = the path, label,\n"
    "optional text, and a u8 [H,W,3] RGB tensor \"image\"; class names in the header.\n"
    "INPUT: a folder in the ImageFolder layout (DIR/<class>/<image>), a tar with the\n"
    "same layout (read without extracting; classes = sorted parent folder names),\n"
    "a WebDataset-style tar (KEY.jpg + KEY.cls / KEY.txt / KEY.json), a manifest\n"
    "(.csv with a header row path,label[,text] or .jsonl {\"path\",\"label\",\"text\"}),\n"
    "a Hugging Face imagefolder (metadata.jsonl/.csv with file_name, split folders\n"
    "train/ validation/ test/; pick one with --split),\n"
    "or '-' = a tar on stdin (spooled to a temporary file for the class scan unless\n"
    "--classes/--classes-from is given, in which case it is streamed).\n"
    "With --manifest FILE (no INPUT): the rows of a question / caption manifest\n"
    "(formats/manifest.md), one record per row with the question as text and\n"
    "string lists image_id, qtype, answers, captions; consecutive rows with the\n"
    "same image decode it once.\n"
    "JPEG (TurboJPEG) and PNG (libpng); pixels equal PIL's Image.open().convert('RGB').\n\n";

/* "A<sep>B" for option name (form: the wanted form, for the message): two
 * integers in [lo, hi]; with a_below_b, B is read first and A is in [0, B-1] */
static int int_pair(const char *name, const char *v, int sep, const char *form, long long lo, long long hi,
                    int a_below_b, long long *a, long long *b, char *err, size_t errlen) {
    const char *x = strchr(v, sep);
    if (!x) return mmp_errf(err, errlen, "bad value for %s: want %s", name, form);
    char as[32];
    snprintf(as, sizeof as, "%.*s", (int)(x - v), v);
    if (a_below_b)
        return mmp_cli_parse_ll(name, x + 1, lo, hi, b, err, errlen) || mmp_cli_parse_ll(name, as, 0, *b - 1, a, err, errlen) ? -1 : 0;
    return mmp_cli_parse_ll(name, as, lo, hi, a, err, errlen) || mmp_cli_parse_ll(name, x + 1, lo, hi, b, err, errlen) ? -1 : 0;
}

/* "--resize WxH" */
static int opt_resize(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    mmp_prep *p = t;
    long long w, h;
    if (int_pair("--resize", v, 'x', "WxH, e.g. 224x224", 1, 65535, 0, &w, &h, err, errlen)) return -1;
    p->rw = (int)w;
    p->rh = (int)h;
    return 0;
}

/* "--shard I/N" */
static int opt_shard(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    mmp_src_opts *so = t;
    long long i, n;
    if (int_pair("--shard", v, '/', "I/N, e.g. 0/4", 1, 1 << 30, 1, &i, &n, err, errlen)) return -1;
    so->shard_n = (int)n;
    so->shard_i = (int)i;
    return 0;
}

int main(int argc, char **argv) {
    mmp_cli_init("mmp-decode");
    /* per-image buffers (100 KB .. 25 MB) stay in the heap instead of being
     * mmap'ed and page-faulted in again for every image */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
    const char *out = "-", *classes = NULL, *classes_from = NULL, *manifest = NULL;
    int strict = 0, level = 1;
    long nt = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = nt < 1 ? 1 : nt > 16 ? 16 : (int)nt;
    long long max_pixels = 0, max_bytes = 0;
    mmp_prep prep = {0};
    /* in mmp_interp / mmp_crop_round order */
    static const char *const interps[] = {"bilinear", "bicubic", "lanczos", "box", "hamming", NULL};
    static const char *const crop_rounds[] = {"torchvision", "hf", NULL};
    int interp = MMP_INTERP_BILINEAR, crop_round = MMP_CROP_ROUND_TORCHVISION;
    double crop_pct = 0;
    mmp_src_opts so = {0};
    mmp_option opts[] = {
        MMP_O_INT("size", 0, &prep.size, 1, 65535, "S",
                  "Resize(S) + CenterCrop(S), as torchvision on a PIL image\n"
                  "(Pillow's antialiased resample with --interp, bit-exact)"),
        MMP_O_CALL("resize", 0, opt_resize, &prep, "WxH", "resize to exactly W x H (Pillow, --interp)"),
        MMP_O_CHOICE("interp", 0, &interp, interps,
                      "filter of --size and --resize: Pillow's BILINEAR (default),\n"
                      "BICUBIC (CLIP, timm ViTs), LANCZOS, BOX or HAMMING"),
        MMP_O_DOUBLE("crop-pct", 0, &crop_pct, 0, 1, "P",
                     "with --size S: Resize(floor(S / P)) then CenterCrop(S), timm's\n"
                     "eval transform (crop_pct of the model's pretrained_cfg; 0 < P <= 1)",
                     .flags = MMP_OPTION_OPEN_MIN),
        MMP_O_CHOICE("crop-round", 0, &crop_round, crop_rounds,
                     "center-crop offsets of --size: torchvision's round((n-S)/2)\n"
                     "(default; OpenAI CLIP, open_clip, timm) or hf's (n-S)//2\n"
                     "(transformers CLIPImageProcessor, ViTImageProcessor ...)"),
        MMP_O_FLAG("dct-scale", 0, &prep.dct_scale,
                   "let libjpeg downscale in the DCT domain (1/8 steps) while\n"
                   "the image stays >= 2x the target: faster on big JPEGs,\n"
                   "pixels differ slightly from Pillow (off by default)"),
        MMP_O_THREADS(&threads,
                      "decoding threads (default: online CPUs, max 16); the\n"
                      "output is identical for any N, in input order"),
        MMP_O_CALL("shard", 0, opt_shard, &so, "I/N",
                   "keep items I, I+N, I+2N... (0 <= I < N); with --manifest\n"
                   "runs of rows sharing an image"),
        MMP_O_STRING("manifest", 0, &manifest, "FILE",
                     "a question / caption manifest (.csv with a header row, or\n"
                     "JSONL): image, question, answers (CSV: joined by '|'),\n"
                     "answer, question_type, image_id, question_id, captions"),
        MMP_O_STRING("classes", 0, &classes, "a,b,c", "class list (label = index in this list)"),
        MMP_O_STRING("classes-from", 0, &classes_from, "FILE", "class list, one name a line"),
        MMP_O_STRING("split", 0, &so.split, "NAME",
                     "split of a Hugging Face imagefolder: train, validation or\n"
                     "test, or several joined by '+' (needed when the folder\n"
                     "has more than one split)"),
        MMP_O_LLONG("max-pixels", 0, &max_pixels, 1, 1LL << 40, "N",
                    "refuse images with more pixels (default 89478485,\n"
                    "Pillow's MAX_IMAGE_PIXELS); checked from the header"),
        MMP_O_LLONG("max-bytes", 0, &max_bytes, 1, 1LL << 40, "N", "refuse files larger than N bytes (default 1 GiB)"),
        MMP_O_FLAG("strict", 0, &strict, "a bad image is fatal (default: warn, skip, count)"),
        MMP_O_LEVEL(&level,
                    "zstd level of the output, -7..19 (default 1: pixels barely\n"
                    "compress, higher levels cost more than the decoding)"),
        MMP_O_OUTPUT(&out, "output (default stdout)"),
        MMP_O_COMMON,
        MMP_O_TEXT("\nBad images (corrupt, truncated, empty, not JPEG/PNG, too large) are skipped with\n"
                   "one warning line each; the count is in the stream trailer and on stderr.\n"
                   "A corrupt tar (bad header checksum, truncated member) is fatal."),
        MMP_O_END,
    };
    char **inputs;
    int nin = mmp_cli_parse(argc, argv, opts, usage, &inputs);
    prep.max_pixels = (uint64_t)max_pixels;
    so.max_bytes = (uint64_t)max_bytes;
    if (manifest && nin) mmp_die("--manifest reads the images its rows name: no INPUT ('%s')", inputs[0]);
    if (manifest && (classes || classes_from || so.split))
        mmp_die("--classes, --classes-from and --split do not apply to --manifest");
    if (nin == 0 && !manifest) mmp_die("no input (give a folder, a tar, a manifest or '-'; see --help)");
    if (prep.size && prep.rw) mmp_die("--size and --resize are exclusive");
    prep.interp = (mmp_interp)interp;
    prep.crop_round = (mmp_crop_round)crop_round;
    prep.crop_pct = crop_pct;
    if (crop_pct > 0 && !prep.size) mmp_die("--crop-pct needs --size");
    if (crop_pct > 0 && mmp_crop_pct_resize(prep.size, crop_pct) > 65535)
        mmp_die("--crop-pct %g with --size %d resizes to %d (more than 65535)", crop_pct, prep.size,
                mmp_crop_pct_resize(prep.size, crop_pct));
    if (crop_round != MMP_CROP_ROUND_TORCHVISION && !prep.size) mmp_die("--crop-round needs --size");
    if (!prep.max_pixels) prep.max_pixels = MMP_IMG_DEFAULT_MAX_PIXELS;
    char err[1024];
    if (manifest) {
        mmp_manifest m;
        if (mmp_manifest_read(manifest, &m, err, sizeof err)) mmp_die("%s", err);
        mmp_header h;
        mmp_img_manifest_header(&h, &prep, &m, so.shard_i, so.shard_n, argc, argv);
        mmp_writer *w = mmp_writer_open(out, &h, level);
        mmp_header_free(&h);
        mmp_img_counts n;
        if (mmp_img_decode_manifest(&m, &prep, so.max_bytes, so.shard_i, so.shard_n, threads, strict, w, &n, err,
                                    sizeof err))
            mmp_die("%s", err);
        mmp_writer_close(w);
        fprintf(stderr, "%s: %llu records written from %llu decoded images", mmp_progname(),
                (unsigned long long)n.written, (unsigned long long)n.decoded);
        if (n.skipped) fprintf(stderr, ", %llu records skipped", (unsigned long long)n.skipped);
        fputc('\n', stderr);
        mmp_manifest_free(&m);
        free(inputs);
        return 0;
    }
    if (classes && classes_from) mmp_die("--classes and --classes-from are exclusive");
    if (classes) so.nclasses = mmp_split_list(classes, &so.classes);
    if (classes_from) {
        so.nclasses = mmp_read_lines(classes_from, &so.classes, err, sizeof err);
        if (so.nclasses < 0) mmp_die("%s", err);
    }
    if ((classes || classes_from) && so.nclasses == 0) mmp_die("empty class list");
    mmp_src *src = mmp_src_open(nin, inputs, &so, err, sizeof err);
    if (!src) mmp_die("%s", err);

    mmp_header h;
    mmp_img_decode_header(&h, &prep, src, so.shard_i, so.shard_n, argc, argv);
    mmp_writer *w = mmp_writer_open(out, &h, level);
    mmp_header_free(&h);
    mmp_img_counts n;
    if (mmp_img_decode_stream(src, &prep, threads, strict, w, &n, err, sizeof err))
        mmp_die("%s", err); /* no trailer: downstream sees a truncated stream */
    mmp_writer_close(w);
    if (n.skipped)
        fprintf(stderr, "%s: %llu images written, %llu skipped\n", mmp_progname(), (unsigned long long)n.written,
                (unsigned long long)n.skipped);
    mmp_src_close(src);
    for (int i = 0; i < so.nclasses; i++) free(so.classes[i]);
    free(so.classes);
    free(inputs);
    return 0;
}
