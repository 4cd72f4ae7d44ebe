/* mmp-augment: seeded, deterministic torchvision-style augmentation of the
 * "image" tensor of an mmp stream. */
#include "image/augment.h"
#include "image/pmap.h"
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

typedef struct {
    mmp_record rec;
    int nviews;
    mmp_tensor *views;
    char err[320];
    uint64_t recno;
} slot;

typedef struct {
    mmp_reader *r;
    mmp_writer *w;
    const mmp_aug *aug;
    uint64_t seed, epoch;
    int views, strict;
    uint64_t n, nskipped, nwritten;
    int fail;
    char ferr[1024];
    double t0;
} ctx;

static int produce(void *c, void *s) {
    ctx *x = c;
    slot *sl = s;
    mmp_record_init(&sl->rec);
    int r = mmp_reader_next(x->r, &sl->rec);
    if (r < 0) {
        snprintf(x->ferr, sizeof x->ferr, "%s", mmp_reader_error(x->r));
        return -1;
    }
    sl->recno = x->n++;
    return r;
}

static void work(void *c, void *s, int tid) {
    ctx *x = c;
    slot *sl = s;
    sl->err[0] = 0;
    sl->nviews = 0;
    sl->views = mmp_xcalloc((size_t)x->views, sizeof(mmp_tensor));
    const mmp_tensor *in = mmp_record_cget(&sl->rec, "image");
    if (!in) {
        snprintf(sl->err, sizeof sl->err, "FATAL:no \"image\" tensor");
        return;
    }
    for (int v = 0; v < x->views; v++) {
        mmp_rng rng;
        mmp_rng_seed(&rng, mmp_aug_key(sl->rec.id, x->seed, x->epoch, (uint64_t)v));
        char e[300];
        if (mmp_aug_apply(x->aug, &rng, in, &sl->views[v], e, sizeof e)) {
            /* dtype/shape problems are fatal, op limits are skips */
            snprintf(sl->err, sizeof sl->err, "%s%s", strstr(e, "must be u8") ? "FATAL:" : "", e);
            return;
        }
        sl->nviews++;
    }
}

static int consume(void *c, void *s) {
    ctx *x = c;
    slot *sl = s;
    if (sl->err[0]) {
        int fatal = !strncmp(sl->err, "FATAL:", 6) || x->strict;
        const char *m = strncmp(sl->err, "FATAL:", 6) ? sl->err : sl->err + 6;
        if (fatal) /* exit at once: no trailer, so downstream sees a truncated stream */
            mmp_die("%s: record %llu (%s): %s", mmp_reader_name(x->r), (unsigned long long)sl->recno,
                    sl->rec.id ? sl->rec.id : "no id", m);
        else {
            mmp_warn("%s: record %llu (%s): %s (skipped)", mmp_reader_name(x->r),
                     (unsigned long long)sl->recno, sl->rec.id ? sl->rec.id : "no id", m);
            x->nskipped++;
        }
    } else {
        char *id0 = sl->rec.id;
        for (int v = 0; v < sl->nviews; v++) {
            mmp_record out = sl->rec; /* shallow: other fields, label, text pass through */
            char *vid = NULL;
            if (x->views > 1) {
                vid = mmp_xasprintf("%s#v%d", id0 ? id0 : "", v);
                out.id = vid;
            }
            for (int f = 0; f < out.nfields; f++)
                if (!strcmp(out.fields[f].name, "image")) out.fields[f].t = sl->views[v];
            mmp_writer_write(x->w, &out);
            free(vid);
            x->nwritten++;
        }
        if (mmp_progress_enabled() && x->n % 1000 == 0)
            mmp_progress("%llu records, %.0f/s", (unsigned long long)x->n, x->n / (mmp_now() - x->t0));
    }
    for (int v = 0; v < x->views; v++)
        if (sl->views) mmp_tensor_free(&sl->views[v]);
    free(sl->views);
    sl->views = NULL;
    mmp_record_clear(&sl->rec);
    return x->fail;
}

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
    mmp_option opts[] = {
        MMP_O_CALL("rrc", 0, opt_op, &aug, "S[,scale=A:B][,ratio=C:D][,p=P]",
                   "RandomResizedCrop(S, scale=(0.08,1), ratio=(3/4,4/3)): 10 attempts, then\n"
                   "the ratio-clamped center crop; Pillow bilinear resize"),
        MMP_O_CALL("pad-crop", 0, opt_op, &aug, "S[,pad=P][,mode=constant|edge|reflect|symmetric][,fill=V]",
                   "RandomCrop(S, padding=P, fill=V, padding_mode=mode)"),
        MMP_O_CALL("resize", 0, opt_op, &aug, "S", "Resize(S): shorter side to S (deterministic)"),
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
    if (aug.n == 0) mmp_warn("no augment op given: records pass through unchanged");

    mmp_reader *r = mmp_reader_open_or_die(in);
    const mmp_header *ih = mmp_reader_header(r);
    const mmp_schema_field *f = mmp_header_field(ih, "image");
    if (!f) mmp_die("%s: the stream has no \"image\" field (run mmp-decode first)", mmp_reader_name(r));
    if (f->dtype != MMP_U8 || f->ndim != 3 || f->shape[2] != 3) {
        char sh[128];
        mmp_shape_str(f->ndim, f->shape, sh, sizeof sh);
        mmp_die("%s: \"image\" is %s %s; mmp-augment needs u8 [H,W,3] (before any normalization)",
                mmp_reader_name(r), mmp_dtype_name(f->dtype), sh);
    }
    mmp_header h;
    mmp_header_copy(&h, ih);
    int64_t shape[3];
    mmp_aug_out_shape(&aug, shape);
    int norm = mmp_aug_normalizes(&aug);
    /* deterministic ops keep a known input size only when nothing resizes */
    if (!norm && shape[0] < 0 && f->shape[0] > 0) {
        int resizes = 0;
        for (int k = 0; k < aug.n; k++) resizes |= aug.ops[k].kind == MMP_AUG_RESIZE;
        if (!resizes) shape[0] = f->shape[0], shape[1] = f->shape[1];
    }
    if (norm && shape[1] < 0 && f->shape[0] > 0) {
        int resizes = 0;
        for (int k = 0; k < aug.n; k++) resizes |= aug.ops[k].kind == MMP_AUG_RESIZE;
        if (!resizes) shape[1] = f->shape[0], shape[2] = f->shape[1];
    }
    mmp_header_add_field(&h, "image", norm ? aug.out_dtype : MMP_U8, 3, shape);
    mmp_header_stamp(&h, argc, argv);
    char *desc = mmp_aug_describe(&aug);
    char buf[256];
    mmp_meta_set(&h.meta, "image.augment", desc);
    free(desc);
    snprintf(buf, sizeof buf, "%lld", seed);
    mmp_meta_set(&h.meta, "image.augment.seed", buf);
    snprintf(buf, sizeof buf, "%lld", epoch);
    mmp_meta_set(&h.meta, "image.augment.epoch", buf);
    snprintf(buf, sizeof buf, "%d", views);
    mmp_meta_set(&h.meta, "image.augment.views", buf);
    mmp_meta_set(&h.meta, "image.augment.rng", "splitmix64, key = mmp_aug_key(id, seed, epoch, view)");
    if (norm) {
        const mmp_aug_op *o = NULL;
        for (int k = 0; k < aug.n; k++)
            if (aug.ops[k].kind == MMP_AUG_NORMALIZE) o = &aug.ops[k];
        mmp_meta_set(&h.meta, "image.layout", "chw");
        mmp_meta_set(&h.meta, "layout", "chw");
        mmp_meta_set(&h.meta, "image.dtype", mmp_dtype_name(aug.out_dtype));
        snprintf(buf, sizeof buf, "%.9g,%.9g,%.9g", o->mean[0], o->mean[1], o->mean[2]);
        mmp_meta_set(&h.meta, "image.mean", buf);
        snprintf(buf, sizeof buf, "%.9g,%.9g,%.9g", o->std[0], o->std[1], o->std[2]);
        mmp_meta_set(&h.meta, "image.std", buf);
    } else {
        mmp_meta_set(&h.meta, "image.layout", "hwc");
        mmp_meta_set(&h.meta, "layout", "hwc");
        mmp_meta_set(&h.meta, "image.dtype", "u8");
    }
    mmp_writer *w = mmp_writer_open(out, &h, level);
    mmp_header_free(&h);

    ctx x = {.r = r, .w = w, .aug = &aug, .seed = (uint64_t)seed, .epoch = (uint64_t)epoch,
             .views = views, .strict = strict, .t0 = mmp_now()};
    mmp_pmap_spec sp = {produce, work, consume, &x, sizeof(slot), threads, 0};
    int rc = mmp_pmap(&sp);
    if (rc != 0) mmp_die("%s", x.ferr); /* no trailer written: downstream sees a truncated stream */
    mmp_progress_done();
    mmp_writer_add_skipped(w, mmp_reader_skipped(r) + x.nskipped);
    mmp_writer_close(w);
    if (x.nskipped)
        fprintf(stderr, "%s: %llu records written, %llu skipped\n", mmp_progname(),
                (unsigned long long)x.nwritten, (unsigned long long)x.nskipped);
    mmp_reader_close(r);
    return 0;
}
