/* mmp-embed: run a frozen pretrained CNN backbone or ViT/CLIP image tower
 * over image records and write embedding records (see docs/embed.md). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "mmp.h"
#include "nn/embed.h"
#include "nn/provenance.h"
#include "nn/txmodel.h"
#include "tx/peft.h"

static const char usage[] =
    "usage: mmp-embed --model FILE.safetensors|DIR [options] [IN.mmp|-] [-o OUT.mmp]\n"
    "Runs a frozen pretrained CNN (torchvision ResNet-18/34/50/101/152 or\n"
    "MobileNetV2 state_dict names) or a ViT/CLIP image tower (Hugging Face ViT\n"
    "and CLIP, timm vit_*, open_clip; a .safetensors file or a model folder)\n"
    "over the \"image\" of every record and writes the record with an\n"
    "\"embedding\" tensor [D] instead (id, label, text and other fields kept;\n"
    "the image dropped unless --keep).\n"
    "Input images: u8 [H,W,3] (normalized here: x/255, (x-mean)/std), or f32/f16\n"
    "[3,H,W] already normalized (header meta image.layout=chw, image.mean,\n"
    "image.std, as mmp-augment writes). Any image size (ViT/CLIP: multiples of\n"
    "the patch); one size per batch run. ViT/CLIP: resize with the model's\n"
    "recipe (docs/embed.md; a warning when the header says otherwise).\n\n";

int main(int argc, char **argv) {
    mmp_cli_init("mmp-embed");
    const char *adapter = NULL;
    const char *model = NULL, *arch = NULL, *layer = NULL, *mean_s = NULL, *std_s = NULL;
    const char *out = "-", *field = "image";
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), level = 0, keep = 0, reuse = 1, allow_mixed = 0, dtype = 0;
    int list_layers = 0;
    long long batch = 64, size = 0, max_pixels = 16777216;
    if (threads < 1) threads = 1;
    static const char *const dtypes[] = {"f32", "f16", NULL};
    mmp_option opts[] = {
        MMP_O_STRING("model", 0, &model, "FILE",
                     "weights: safetensors with torchvision names (preprocessing\n"
                     "from its __metadata__ input_mean/input_std), or a ViT/CLIP\n"
                     "checkpoint: .safetensors or a folder with config.json,\n"
                     "preprocessor_config.json or open_clip_config.json\n"
                     "(mean/std from those)"),
        MMP_O_STRING("adapter", 0, &adapter, "DIR",
                     "a PEFT LoRA adapter folder (adapter_config.json +\n"
                     "adapter_model.safetensors) for the ViT/CLIP --model\n"
                     "(HF, timm, open_clip), run unmerged; its SHA-256 joins the provenance\n"
                     "(docs/finetune.md)"),
        MMP_O_STRING("arch", 0, &arch, "A",
                     "resnet18|resnet34|resnet50|resnet101|resnet152|mobilenet_v2,\n"
                     "vit|clip|vit-hf|vit-timm|clip-hf|clip-openclip\n"
                     "(default: detected from the tensor names; checked)"),
        MMP_O_STRING("layer", 0, &layer, "L",
                     "CNN: pool (default): global-average-pooled features\n"
                     "(1280-d MobileNetV2, 512/2048 ResNet); logits: classifier\n"
                     "output [classes]; a block (layer1..layer4, layer3.1,\n"
                     "maxpool, features.0..features.18): its output\n"
                     "average-pooled [C]; BLOCK:flat: flattened in C,H,W order.\n"
                     "ViT/CLIP: proj (CLIP's default): projected image embedding;\n"
                     "pool (ViT's default): pooled output before projection or\n"
                     "head; pooler: HF ViT pooler_output; logits: ViT classifier"),
        MMP_O_CHOICE("dtype", 0, &dtype, dtypes, "embedding dtype (default f32)"),
        MMP_O_STRING("mean", 0, &mean_s, "a,b,c", "override the model's normalization mean (u8 input)"),
        MMP_O_STRING("std", 0, &std_s, "a,b,c", "override the model's normalization std (u8 input)"),
        MMP_O_LLONG("size", 0, &size, 1, 16384, "N", "require NxN input images (default: any size)"),
        MMP_O_FLAG("allow-mixed", 0, &allow_mixed, "accept f32 input normalized differently from the model"),
        MMP_O_FLAG("keep", 0, &keep, "keep the input image field"),
        MMP_O_SET("no-reuse", 0, &reuse, 0,
                  "run the model on every record (default: a record with the same\n"
                  "string image_id and the same pixels as the record before it\n"
                  "gets that record's embedding, bit-identical: the questions of\n"
                  "one image from mmp-decode --manifest)"),
        MMP_O_FLAG("list-layers", 0, &list_layers, "print the model's layer names and exit"),
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
    uint64_t reused = 0;
    mmp_nn_embed e = {.reuse = reuse, .reused = &reused, .field = field, .keep = keep, .size = (int)size, .max_pixels = max_pixels,
                      .batch = batch, .out_dtype = dtype ? MMP_F16 : MMP_F32};
    mmp_nn_model *m;
    char err[1024];
    if (mmp_nn_model_load(&m, model, arch, err, sizeof err)) mmp_die("%s", err);
    e.model = m;
    mmp_lora *lora = NULL;
    if (adapter) {
        if (!mmp_nn_model_tx(m)) mmp_die("--adapter: %s is a CNN; LoRA adapters are read for ViT/CLIP models", model);
        /* the model is this program's own: its blocks take the adapter before the runner shares it */
        lora = mmp_lora_attach_model((mmp_tx_model *)mmp_nn_model_tx(m), adapter, err, sizeof err);
        if (!lora) mmp_die("%s", err);
    }
    if (list_layers) {
        const char *names = mmp_nn_model_block_names(m);
        if (!mmp_nn_model_tx(m)) printf("pool\n%s", mmp_nn_model_classes(m) ? "logits\n" : "");
        for (const char *p = names; *p;) {
            size_t k = strcspn(p, ",");
            printf("%.*s\n", (int)k, p);
            p += k;
            while (*p == ',' || *p == ' ') p++;
        }
        mmp_nn_model_free(m);
        return 0;
    }
    if (!layer) layer = mmp_nn_model_default_layer(m);
    if (mmp_nn_layer_parse(m, layer, &e.layer, err, sizeof err)) mmp_die("%s", err);
    mmp_nn_preproc pre = mmp_nn_model_preproc(m);
    memcpy(e.mean, pre.mean, sizeof e.mean);
    memcpy(e.std, pre.std, sizeof e.std);
    if (mean_s && mmp_nn_parse3(mean_s, e.mean)) mmp_die("bad value for --mean: %s (want a,b,c)", mean_s);
    if (std_s && mmp_nn_parse3(std_s, e.std)) mmp_die("bad value for --std: %s (want a,b,c)", std_s);
    for (int k = 0; k < 3; k++)
        if (!(e.std[k] > 0)) mmp_die("bad value for --std: %s (must be positive)", std_s);
    char sha[65];
    const char *wfile = mmp_nn_model_weights(m);
    if (mmp_sha256_file(wfile, sha)) mmp_die("%s: cannot read", wfile);

    mmp_reader *r = mmp_reader_open_or_die(in);
    const char *name = mmp_reader_name(r);
    const mmp_header *ih = mmp_reader_header(r);
    if (mmp_nn_embed_input(&e, ih, name, err, sizeof err)) mmp_die("%s", err);
    /* the stream's normalization must be the model's */
    if (e.chw) mmp_cli_check(mmp_check_normalization(ih, e.mean, e.std, allow_mixed, name, model, err, sizeof err), err);
    /* ViT/CLIP: resized as the model's preprocessing? (a warning: the user's choice) */
    if (mmp_nn_model_tx(m) && mmp_nn_tx_preprocess_check(mmp_nn_model_tx(m), ih, name, model, err, sizeof err))
        mmp_warn("%s", err);
    mmp_header oh;
    if (mmp_nn_embed_header(&e, ih, name, model, sha, &oh, err, sizeof err)) mmp_die("%s", err);
    if (lora) mmp_lora_stamp(lora, &oh, "provenance");
    mmp_header_stamp(&oh, argc, argv);
    mmp_writer *w = mmp_writer_open(out, &oh, (int)level);
    mmp_nn_runner *run = mmp_nn_runner_new(m, &mmp_nn_ops_cpu, (int)threads);
    if (mmp_nn_embed_stream(&e, run, r, w, err, sizeof err)) mmp_die("%s", err);
    mmp_writer_add_skipped(w, mmp_reader_skipped(r));
    mmp_writer_close(w);
    if (reused)
        fprintf(stderr, "%s: %llu records reused the previous record's embedding (same image_id and pixels)\n",
                mmp_progname(), (unsigned long long)reused);
    mmp_reader_close(r);
    mmp_nn_runner_free(run);
    mmp_nn_model_free(m);
    mmp_lora_free(lora);
    mmp_header_free(&oh);
    return 0;
}
