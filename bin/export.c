/* mmp-export: a checkpoint of mmp-train-step as a plain PyTorch state dict
 * (safetensors) that the documented module loads with strict=True. See
 * docs/train.md and lib/train/export.h. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cli.h"
#include "mmp.h"
#include "train/export.h"
#include "tx/peft.h"

static int mmp_is_dir(const char *p) {
    struct stat sb;
    return !stat(p, &sb) && S_ISDIR(sb.st_mode);
}

static const char usage[] =
    "usage: mmp-export -o STATE_DICT.safetensors CHECKPOINT.safetensors\n"
    "       mmp-export --merge-lora ADAPTER_DIR --model BASE -o MERGED.safetensors\n"
    "       mmp-export --stamp-lora ADAPTER_DIR --model BASE -o OUT_DIR\n"
    "Writes the trained head of an mmp-train-step checkpoint as a plain PyTorch state dict\n"
    "(safetensors, __metadata__ format \"pt\"): exactly the tensors of the head's torch module\n"
    "(linear: nn.Linear -> weight, bias; mlp: layers.0.weight ... of the nn.Sequential), the\n"
    "standardization folded into the first linear layer, no optimizer state. Linear and mlp\n"
    "heads, and mnv2-tail / resnet-tail trained --from input (the whole torchvision state dict,\n"
    "num_batches_tracked included). The output is written atomically.\n"
    "--merge-lora: a PEFT LoRA adapter merged into its base (a Hugging Face ViT, CLIP or BERT,\n"
    "timm ViT or open_clip model: W + alpha/r B A), written as a plain backbone under the original names (the\n"
    "adapted weights F32, the rest as they were). --stamp-lora: the adapter rewritten in\n"
    "PEFT's format with the base's SHA-256 recorded (checked when it is loaded). docs/finetune.md\n"
    "\n";

int main(int argc, char **argv) {
    mmp_cli_init("mmp-export");
    const char *outp = NULL, *merge = NULL, *stamp = NULL, *model = NULL;
    mmp_option opts[] = {
        MMP_O_TEXT("options:"),
        MMP_O_OUTPUT(&outp, "the state dict (required)"),
        MMP_O_STRING("merge-lora", 0, &merge, "DIR", "merge this PEFT LoRA adapter into --model"),
        MMP_O_STRING("stamp-lora", 0, &stamp, "DIR", "rewrite this adapter with --model's SHA-256 into -o DIR"),
        MMP_O_STRING("model", 0, &model, "BASE", "the adapter's base: a .safetensors file or a folder holding model.safetensors (or open_clip_model.safetensors)"),
        MMP_O_COMMON,
        MMP_O_END,
    };
    const char *in = mmp_cli_parse_input(argc, argv, opts, usage);
    if (!outp) mmp_die("--output FILE is required (see --help)");
    char err[1536];
    if (merge || stamp) {
        if (merge && stamp) mmp_die("--merge-lora and --stamp-lora: one at a time");
        if (!model) mmp_die("--%s needs --model BASE (see --help)", merge ? "merge-lora" : "stamp-lora");
        if (strcmp(in, "-")) mmp_die("--%s takes no checkpoint argument (%s)", merge ? "merge-lora" : "stamp-lora", in);
        char *base = mmp_is_dir(model) ? mmp_xasprintf("%s/model.safetensors", model) : mmp_xstrdup(model);
        if (mmp_is_dir(model) && access(base, F_OK)) { /* open_clip's folder */
            char *oc = mmp_xasprintf("%s/open_clip_model.safetensors", model);
            if (!access(oc, F_OK)) free(base), base = oc;
            else free(oc);
        }
        mmp_lora *a = mmp_lora_load(merge ? merge : stamp, base, NULL, err, sizeof err);
        if (!a) mmp_die("%s", err);
        if (merge ? mmp_lora_merge_write(a, outp, err, sizeof err) : mmp_lora_write(a, outp, err, sizeof err))
            mmp_die("%s", err);
        mmp_lora_free(a);
        free(base);
        return 0;
    }
    if (model) mmp_die("--model is for --merge-lora / --stamp-lora");
    if (!strcmp(in, "-")) mmp_die("the checkpoint must be a file (see --help)");
    if (mmp_export_checkpoint(in, outp, err, sizeof err)) mmp_die("%s", err);
    return 0;
}
