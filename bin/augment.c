/* mmp-augment: seeded, deterministic torchvision-style augmentation of the
 * "image" tensor of an mmp stream. */
#include "image/pipeline.h"
#include "cli.h"
#include "mmp.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: mmp-augment [options] [IN.mmp|-] > out.mmp\n"
    "Augments the u8 [H,W,3] \"image\" of each record (as mmp-decode writes it).\n"
    "Ops run in the order given; each draws from its own record's random stream,\n"
    "keyed by (record id, --seed, --epoch, view), so the output is the same for any\n"
    "thread count, record order or machine. Pixel ops reproduce torchvision 0.14 on\n"
    "PIL images (Pillow 9.4 arithmetic, bit-exact for given parameters).\n\n";

/* an augment op (--rrc ...): appended to the pipeline in command-line order */
static int opt_op(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    char flag[64];
    snprintf(flag, sizeof flag, "--%s", o->name);
    return mmp_aug_parse(t, flag, v, err, errlen) ? -1 : 0;
}

int main(int argc, char **argv) {
    mmp_cli_init("mmp-augment");
    /* per-image buffers (100 KB .. 25 MB) stay in the heap instead of being
     * mmap'ed and page-faulted in again for every image */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
    const char *out = "-";
    int level = 1, views = 1, strict = 0, dtype = 0;
    long long seed = 0, epoch = 0;
    long nt = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = nt < 1 ? 1 : nt > 16 ? 16 : (int)nt;
    mmp_aug aug;
    mmp_aug_init(&aug);
    static const char *const dtypes[] = {"f32", "f16", NULL};
    /* in mmp_interp order */
    static const char *const interps[] = {"bilinear", "bicubic", "lanczos", "box", "hamming", NULL};
    int interp = MMP_INTERP_BILINEAR;
    mmp_option opts[] = {
        MMP_O_CALL("rrc", 0, opt_op, &aug, "S[,scale=A:B][,ratio=C:D][,p=P][,interp=F]",
                   "RandomResizedCrop(S, scale=(0.08,1), ratio=(3/4,4/3)): 10 attempts, then\n"
                   "the ratio-clamped center crop; Pillow resize with --interp (or interp=F)"),
        MMP_O_CALL("pad-crop", 0, opt_op, &aug, "S[,pad=P][,mode=constant|edge|reflect|symmetric][,fill=V]",
                   "RandomCrop(S, padding=P, fill=V, padding_mode=mode)"),
        MMP_O_CALL("resize", 0, opt_op, &aug, "S[,interp=F]",
                   "Resize(S): shorter side to S (deterministic); filter --interp (or interp=F)"),
        MMP_O_CALL("center-crop", 0, opt_op, &aug, "S", "CenterCrop(S) (deterministic)"),
        MMP_O_CALL("hflip", 0, opt_op, &aug, "P", "RandomHorizontalFlip(P)"),
        MMP_O_CALL("jitter", 0, opt_op, &aug, "B,C,S,H[,p=P]",
                   "ColorJitter(brightness=B, contrast=C, saturation=S, hue=H) in a random\n"
                   "order (Pillow ImageEnhance / HSV math, as torchvision on PIL images);\n"
                   "applied with probability P (default 1; RandomApply)"),
        MMP_O_CALL("gray", 0, opt_op, &aug, "P", "RandomGrayscale(P) (Pillow's L conversion, 3 channels)"),
        MMP_O_CALL("normalize", 0, opt_op, &aug, "imagenet|m,m,m/s,s,s",
                   "ToTensor + Normalize: output float [3,H,W] (CHW), (x/255 - mean)/std;\n"
                   "must come after the pixel ops"),
        MMP_O_CALL("erase", 0, opt_op, &aug, "P[,scale=A:B][,ratio=C:D][,value=V|random]",
                   "RandomErasing(P, scale=(0.02,0.33), ratio=(0.3,3.3), value=0); on the\n"
                   "normalized tensor when after --normalize, else on u8 pixels"),
        MMP_O_CHOICE("interp", 0, &interp, interps,
                     "filter of --rrc and --resize (torchvision interpolation=,\n"
                     "Pillow's resample, bit-exact; default bilinear as torchvision's)"),
        MMP_O_CHOICE("dtype", 0, &dtype, dtypes, "dtype of normalized output (default f32)"),
        MMP_O_LLONG("seed", 0, &seed, 0, 1LL << 62, "S", "(default 0)"),
        MMP_O_LLONG("epoch", 0, &epoch, 0, 1LL << 62, "E", "(default 0)"),
        MMP_O_INT("views", 0, &views, 1, 1000, "K",
                  "K augmented views per record, ids suffixed #v0..#v{K-1}\n"
                  "(K=1: ids unchanged)"),
        MMP_O_FLAG("strict", 0, &strict,
                   "an image an op cannot handle (too small to crop) is fatal\n"
                   "(default: warn, skip, count)"),
        MMP_O_THREADS(&threads, "threads (default: online CPUs, max 16)"),
        MMP_O_LEVEL(&level, "zstd level -7..19 (default 1)"),
        MMP_O_OUTPUT(&out, "output (default stdout)"),
        MMP_O_COMMON,
        MMP_O_TEXT("\nA record whose \"image\" is missing or not u8 [H,W,3] is a fatal error."),
        MMP_O_END,
    };
    const char *in = mmp_cli_parse_input(argc, argv, opts, usage);
    aug.out_dtype = dtype ? MMP_F16 : MMP_F32;
    aug.interp = (mmp_interp)interp;
    if (aug.n == 0) mmp_warn("no augment op given: records pass through unchanged");

    mmp_aug_run o = {.seed = (uint64_t)seed, .epoch = (uint64_t)epoch, .views = views, .strict = strict,
                     .threads = threads};
    mmp_reader *r = mmp_reader_open_or_die(in);
    mmp_header h;
    char err[1024];
    if (mmp_aug_header(&h, &aug, &o, mmp_reader_header(r), mmp_reader_name(r), argc, argv, err, sizeof err))
        mmp_die("%s", err);
    mmp_writer *w = mmp_writer_open(out, &h, level);
    mmp_header_free(&h);
    mmp_img_counts n;
    if (mmp_aug_stream(&aug, &o, r, w, &n, err, sizeof err))
        mmp_die("%s", err); /* no trailer written: downstream sees a truncated stream */
    mmp_writer_close(w);
    if (n.skipped)
        fprintf(stderr, "%s: %llu records written, %llu skipped\n", mmp_progname(), (unsigned long long)n.written,
                (unsigned long long)n.skipped);
    mmp_reader_close(r);
    return 0;
}
