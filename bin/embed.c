/* mmp-embed: run a frozen pretrained CNN backbone over image records and
 * write embedding records (see docs/embed.md). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "mmp.h"
#include "nn/embed.h"
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
    mmp_nn_embed e = {.field = field, .keep = keep, .size = (int)size, .max_pixels = max_pixels,
                      .batch = batch, .out_dtype = dtype ? MMP_F16 : MMP_F32};
    mmp_nn_model *m;
    char err[1024];
    if (mmp_nn_model_load(&m, model, arch, err, sizeof err)) mmp_die("%s", err);
    e.model = m;
    if (mmp_nn_layer_parse(m, layer, &e.layer, err, sizeof err)) mmp_die("%s", err);
    mmp_nn_preproc pre = mmp_nn_model_preproc(m);
    memcpy(e.mean, pre.mean, sizeof e.mean);
    memcpy(e.std, pre.std, sizeof e.std);
    if (mean_s && mmp_nn_parse3(mean_s, e.mean)) mmp_die("bad value for --mean: %s (want a,b,c)", mean_s);
    if (std_s && mmp_nn_parse3(std_s, e.std)) mmp_die("bad value for --std: %s (want a,b,c)", std_s);
    for (int k = 0; k < 3; k++)
        if (!(e.std[k] > 0)) mmp_die("bad value for --std: %s (must be positive)", std_s);
    char sha[65];
    if (mmp_sha256_file(model, sha)) mmp_die("%s: cannot read", model);

    mmp_reader *r = mmp_reader_open_or_die(in);
    const char *name = mmp_reader_name(r);
    const mmp_header *ih = mmp_reader_header(r);
    if (mmp_nn_embed_input(&e, ih, name, err, sizeof err)) mmp_die("%s", err);
    /* the stream's normalization must be the model's */
    if (e.chw) mmp_cli_check(mmp_check_normalization(ih, e.mean, e.std, allow_mixed, name, model, err, sizeof err), err);
    mmp_header oh;
    if (mmp_nn_embed_header(&e, ih, name, model, sha, &oh, err, sizeof err)) mmp_die("%s", err);
    mmp_header_stamp(&oh, argc, argv);
    mmp_writer *w = mmp_writer_open(out, &oh, (int)level);
    mmp_nn_runner *run = mmp_nn_runner_new(m, &mmp_nn_ops_cpu, (int)threads);
    if (mmp_nn_embed_stream(&e, run, r, w, err, sizeof err)) mmp_die("%s", err);
    mmp_writer_add_skipped(w, mmp_reader_skipped(r));
    mmp_writer_close(w);
    mmp_reader_close(r);
    mmp_nn_runner_free(run);
    mmp_nn_model_free(m);
    mmp_header_free(&oh);
    return 0;
}
