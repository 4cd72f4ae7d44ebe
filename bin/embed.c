/* mmp-embed: run a frozen pretrained CNN backbone over image records and
 * write embedding records (see docs/embed.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "mmp.h"
#include "nn/nn.h"
#include "nn/provenance.h"

static const char usage[] =
    "usage: mmp-embed --model FILE.safetensors [options] [IN.mmp|-] [-o OUT.mmp]\n"
    "Runs a frozen pretrained CNN (torchvision ResNet-18/34/50/101/152 or\n"
    "MobileNetV2 state_dict names) over the \"image\" of every record and writes\n"
    "the record with an \"embedding\" tensor [D] instead (id, label, text and\n"
    "other fields kept; the image dropped unless --keep).\n"
    "Input images: u8 [H,W,3] (normalized here: x/255, (x-mean)/std), or f32/f16\n"
    "[3,H,W] already normalized (header meta image.layout=chw, image.mean,\n"
    "image.std, as mmp-augment writes). Any image size; one size per batch run.\n\n";

typedef struct {
    mmp_record rec;
    int H, W;
    int64_t dim;
    float *out; /* into the batch output buffer */
} item;

typedef struct {
    mmp_nn_model *m;
    mmp_nn_runner *run;
    mmp_nn_layer layer;
    const char *field, *in_name;
    int chw;             /* input is f32/f16 [3,H,W] normalized */
    mmp_dtype out_dtype;
    int keep, size;
    long long max_pixels;
    float mean[3], std[3];
    float *x, *y;
    size_t xcap, ycap;
} ctx;

static float *grow(float **p, size_t *cap, size_t n) {
    if (*cap < n) {
        free(*p);
        *p = mmp_xmalloc(sizeof(float) * n);
        *cap = n;
    }
    return *p;
}

/* Shape check of one record's image; sets H, W. */
static void check_image(ctx *c, item *it, uint64_t recno) {
    const mmp_tensor *t = mmp_record_cget(&it->rec, c->field);
    if (!t) mmp_die("%s: record %llu: no \"%s\" field", c->in_name, (unsigned long long)recno, c->field);
    if (c->chw) {
        if ((t->dtype != MMP_F32 && t->dtype != MMP_F16) || t->ndim != 3 || t->shape[0] != 3)
            mmp_die("%s: record %llu: \"%s\" must be f32/f16 [3,H,W]", c->in_name, (unsigned long long)recno, c->field);
        it->H = (int)t->shape[1];
        it->W = (int)t->shape[2];
    } else {
        if (t->dtype != MMP_U8 || t->ndim != 3 || t->shape[2] != 3)
            mmp_die("%s: record %llu: \"%s\" must be u8 [H,W,3]", c->in_name, (unsigned long long)recno, c->field);
        it->H = (int)t->shape[0];
        it->W = (int)t->shape[1];
    }
    if (c->size && (it->H != c->size || it->W != c->size))
        mmp_die("%s: record %llu: image is %dx%d but --size %d", c->in_name, (unsigned long long)recno, it->H,
                it->W, c->size);
    if ((long long)it->H * it->W > c->max_pixels)
        mmp_die("%s: record %llu: image %dx%d has more than --max-pixels %lld pixels (resize with mmp-decode --size)",
                c->in_name, (unsigned long long)recno, it->H, it->W, c->max_pixels);
    if (it->H < 1 || it->W < 1 || (it->dim = mmp_nn_output_dim(c->m, &c->layer, it->H, it->W)) <= 0)
        mmp_die("%s: record %llu: image %dx%d is too small for %s --layer %s", c->in_name,
                (unsigned long long)recno, it->H, it->W, mmp_nn_model_arch(c->m), c->layer.name);
}

/* Image -> normalized NHWC floats at dst. */
static void load_image(ctx *c, item *it, float *dst, uint64_t recno) {
    const mmp_tensor *t = mmp_record_cget(&it->rec, c->field);
    size_t n = (size_t)it->H * it->W;
    if (!c->chw) {
        mmp_nn_normalize_u8(t->data, it->H, it->W, c->mean, c->std, dst);
        return;
    }
    const float *src = t->data;
    float *tmp = NULL;
    if (t->dtype != MMP_F32) {
        tmp = mmp_xmalloc(sizeof(float) * 3 * n);
        mmp_tensor_to_f32(t, tmp);
        src = tmp;
    } else if ((uintptr_t)src % sizeof(float)) {
        tmp = mmp_xmalloc(sizeof(float) * 3 * n);
        memcpy(tmp, t->data, sizeof(float) * 3 * n);
        src = tmp;
    }
    for (size_t i = 0; i < 3 * n; i++)
        if (!isfinite(src[i]))
            mmp_die("%s: record %llu: \"%s\" has a non-finite value", c->in_name, (unsigned long long)recno, c->field);
    mmp_nn_chw_to_hwc(src, 3, it->H, it->W, dst);
    free(tmp);
}

/* Runs the batch: same-size images together (in order of first appearance). */
static void run_batch(ctx *c, item *items, int n, uint64_t first_recno) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)items[i].dim;
    float *y = grow(&c->y, &c->ycap, total);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        items[i].out = y + off;
        off += (size_t)items[i].dim;
    }
    char *done = mmp_xcalloc((size_t)n, 1);
    int *idx = mmp_xmalloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) {
        if (done[i]) continue;
        int H = items[i].H, W = items[i].W, k = 0;
        for (int j = i; j < n; j++)
            if (!done[j] && items[j].H == H && items[j].W == W) idx[k++] = j, done[j] = 1;
        size_t per = (size_t)H * W * 3;
        float *x = grow(&c->x, &c->xcap, per * k);
        for (int j = 0; j < k; j++) load_image(c, &items[idx[j]], x + per * j, first_recno + idx[j]);
        int64_t dim = items[i].dim;
        /* contiguous output for the group, then scattered */
        float *gy = mmp_xmalloc(sizeof(float) * (size_t)dim * k);
        mmp_nn_run(c->run, &c->layer, x, k, H, W, gy);
        for (int j = 0; j < k; j++) memcpy(items[idx[j]].out, gy + (size_t)dim * j, sizeof(float) * dim);
        free(gy);
    }
    free(done);
    free(idx);
}

int main(int argc, char **argv) {
    mmp_cli_init("mmp-embed");
    const char *model = NULL, *arch = NULL, *layer = "pool", *mean_s = NULL, *std_s = NULL;
    const char *out = "-", *field = "image";
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), level = 0, keep = 0, allow_mixed = 0, dtype = 0;
    long long batch = 64, size = 0, max_pixels = 16777216;
    if (threads < 1) threads = 1;
    static const char *const dtypes[] = {"f32", "f16", NULL};
    mmp_option opts[] = {
        MMP_O_STRING("model", 0, &model, "FILE",
                     "weights (safetensors, torchvision names; preprocessing\n"
                     "from its __metadata__ input_mean/input_std)"),
        MMP_O_STRING("arch", 0, &arch, "A",
                     "resnet18|resnet34|resnet50|resnet101|resnet152|mobilenet_v2\n"
                     "(default: detected from the tensor names; checked)"),
        MMP_O_STRING("layer", 0, &layer, "L",
                     "pool (default): global-average-pooled features (1280-d\n"
                     "MobileNetV2, 512/2048 ResNet); logits: classifier output\n"
                     "[classes]; a block (layer1..layer4, layer3.1, maxpool,\n"
                     "features.0..features.18): its output average-pooled [C];\n"
                     "BLOCK:flat: flattened in C,H,W order [C*h*w]"),
        MMP_O_CHOICE("dtype", 0, &dtype, dtypes, "embedding dtype (default f32)"),
        MMP_O_STRING("mean", 0, &mean_s, "a,b,c", "override the model's normalization mean (u8 input)"),
        MMP_O_STRING("std", 0, &std_s, "a,b,c", "override the model's normalization std (u8 input)"),
        MMP_O_LLONG("size", 0, &size, 1, 16384, "N", "require NxN input images (default: any size)"),
        MMP_O_FLAG("allow-mixed", 0, &allow_mixed, "accept f32 input normalized differently from the model"),
        MMP_O_FLAG("keep", 0, &keep, "keep the input image field"),
        MMP_O_LLONG("max-pixels", 0, &max_pixels, 1, 1LL << 31, "N",
                    "refuse larger images (default 16777216 = 4096x4096; the\n"
                    "activations of one image take up to ~150 bytes a pixel)"),
        MMP_O_STRING("field", 0, &field, "NAME", "image field name (default image)"),
        MMP_O_THREADS(&threads, "worker threads (default: online CPUs); output identical"),
        MMP_O_LLONG("batch", 0, &batch, 1, 65536, "N", "records per batch (default 64)"),
        MMP_O_LEVEL(&level, "zstd level of the output, -7..19 (default 3)"),
        MMP_O_OUTPUT(&out, "output (default stdout)"),
        MMP_O_COMMON,
        MMP_O_END,
    };
    const char *in = mmp_cli_parse_input(argc, argv, opts, usage);
    if (!model) mmp_die("--model FILE.safetensors is required (see --help)");
    ctx c = {0};
    c.field = field;
    c.keep = keep;
    c.size = (int)size;
    c.max_pixels = max_pixels;
    c.out_dtype = dtype ? MMP_F16 : MMP_F32;
    char err[1024];
    if (mmp_nn_model_load(&c.m, model, arch, err, sizeof err)) mmp_die("%s", err);
    if (mmp_nn_layer_parse(c.m, layer, &c.layer, err, sizeof err)) mmp_die("%s", err);
    mmp_nn_preproc pre = mmp_nn_model_preproc(c.m);
    memcpy(c.mean, pre.mean, sizeof c.mean);
    memcpy(c.std, pre.std, sizeof c.std);
    if (mean_s && mmp_nn_parse3(mean_s, c.mean)) mmp_die("bad value for --mean: %s (want a,b,c)", mean_s);
    if (std_s && mmp_nn_parse3(std_s, c.std)) mmp_die("bad value for --std: %s (want a,b,c)", std_s);
    for (int k = 0; k < 3; k++)
        if (!(c.std[k] > 0)) mmp_die("bad value for --std: %s (must be positive)", std_s);
    char sha[65];
    if (mmp_sha256_file(model, sha)) mmp_die("%s: cannot read", model);

    mmp_reader *r = mmp_reader_open_or_die(in);
    c.in_name = mmp_reader_name(r);
    const mmp_header *ih = mmp_reader_header(r);
    const mmp_schema_field *sf = mmp_header_field(ih, field);
    if (!sf) mmp_die("%s: no \"%s\" field in the stream", c.in_name, field);
    int fh, fw;
    if (sf->dtype == MMP_U8) {
        if (sf->ndim != 3 || sf->shape[2] != 3)
            mmp_die("%s: \"%s\" is u8 but not [H,W,3]", c.in_name, field);
        fh = (int)sf->shape[0], fw = (int)sf->shape[1];
    } else if (sf->dtype == MMP_F32 || sf->dtype == MMP_F16) {
        const char *lay = mmp_meta_get(&ih->meta, "image.layout");
        if (sf->ndim != 3 || sf->shape[0] != 3 || (lay && strcmp(lay, "chw")))
            mmp_die("%s: \"%s\" is %s but not [3,H,W] (image.layout=chw)", c.in_name, field, mmp_dtype_name(sf->dtype));
        c.chw = 1;
        fh = (int)sf->shape[1], fw = (int)sf->shape[2];
        /* the stream's normalization must be the model's */
        mmp_cli_check(mmp_check_normalization(ih, c.mean, c.std, allow_mixed, c.in_name, model, err, sizeof err), err);
    } else {
        mmp_die("%s: \"%s\" has dtype %s (u8 [H,W,3] or f32/f16 [3,H,W])", c.in_name, field, mmp_dtype_name(sf->dtype));
    }
    int fixed = fh > 0 && fw > 0;
    if (size && fixed && (fh != size || fw != size))
        mmp_die("%s: images are %dx%d but --size %lld", c.in_name, fh, fw, size);
    if (fixed && mmp_nn_output_dim(c.m, &c.layer, fh, fw) <= 0)
        mmp_die("%s: images %dx%d are too small for %s --layer %s", c.in_name, fh, fw, mmp_nn_model_arch(c.m), layer);
    /* records per batch: a multiple of the micro-batch, so that the result does
     * not depend on --batch (same micro-batches) when the size is fixed */
    if (fixed) {
        int g = mmp_nn_micro_batch(fh, fw);
        batch = (batch + g - 1) / g * g;
    }

    /* output header */
    mmp_header oh;
    mmp_header_copy(&oh, ih);
    if (!keep) mmp_header_remove_field(&oh, field);
    int64_t dim = -1;
    if (fixed || c.layer.kind != MMP_NN_OUT_BLOCK || !c.layer.flat)
        dim = mmp_nn_output_dim(c.m, &c.layer, fixed ? fh : 1024, fixed ? fw : 1024);
    mmp_header_add_field(&oh, "embedding", c.out_dtype, 1, &dim);
    char sizestr[64];
    if (size) snprintf(sizestr, sizeof sizestr, "%lldx%lld", size, size);
    else if (fixed) snprintf(sizestr, sizeof sizestr, "%dx%d", fh, fw);
    else snprintf(sizestr, sizeof sizestr, "any");
    char *ms = mmp_provenance_floats(c.mean), *ss = mmp_provenance_floats(c.std);
    char *prov = mmp_provenance_format(mmp_nn_model_arch(c.m), c.layer.name, sizestr, sha, c.mean, c.std);
    mmp_meta_set(&oh.meta, "embed.arch", mmp_nn_model_arch(c.m));
    mmp_meta_set(&oh.meta, "embed.layer", c.layer.name);
    mmp_meta_set(&oh.meta, "embed.size", sizestr);
    mmp_meta_set(&oh.meta, "embed.mean", ms);
    mmp_meta_set(&oh.meta, "embed.std", ss);
    mmp_meta_set(&oh.meta, "embed.dtype", mmp_dtype_name(c.out_dtype));
    mmp_meta_set(&oh.meta, "embed.weights_sha256", sha);
    const char *base = strrchr(model, '/');
    mmp_meta_set(&oh.meta, "embed.weights", base ? base + 1 : model);
    mmp_meta_set(&oh.meta, "provenance", prov);
    mmp_header_stamp(&oh, argc, argv);
    mmp_writer *w = mmp_writer_open(out, &oh, (int)level);

    c.run = mmp_nn_runner_new(c.m, &mmp_nn_ops_cpu, (int)threads);
    item *items = mmp_xcalloc((size_t)batch, sizeof(item));
    for (int i = 0; i < batch; i++) mmp_record_init(&items[i].rec);
    uint64_t recno = 0;
    double t0 = mmp_now();
    for (;;) {
        int n = 0;
        uint64_t first = recno + 1;
        while (n < batch && mmp_reader_next_or_die(r, &items[n].rec)) {
            recno++;
            check_image(&c, &items[n], recno);
            n++;
        }
        if (n == 0) break;
        run_batch(&c, items, n, first);
        for (int i = 0; i < n; i++) {
            mmp_record *rec = &items[i].rec;
            if (!keep) mmp_record_remove(rec, field);
            int64_t d = items[i].dim;
            mmp_tensor *t = mmp_record_add(rec, "embedding", c.out_dtype, 1, &d);
            mmp_f32_to_dtype(items[i].out, (size_t)d, c.out_dtype, t->data);
            mmp_writer_write(w, rec);
            mmp_record_clear(rec);
        }
        if (mmp_progress_enabled())
            mmp_progress("%llu images, %.1f img/s", (unsigned long long)recno, recno / (mmp_now() - t0 + 1e-9));
        if (n < batch) break;
    }
    if (mmp_progress_enabled()) mmp_progress_done();
    mmp_writer_add_skipped(w, mmp_reader_skipped(r));
    mmp_writer_close(w);
    mmp_reader_close(r);
    for (int i = 0; i < batch; i++) mmp_record_clear(&items[i].rec);
    free(items);
    free(ms), free(ss), free(prov);
    free(c.x), free(c.y);
    mmp_nn_runner_free(c.run);
    mmp_nn_model_free(c.m);
    mmp_header_free(&oh);
    return 0;
}
