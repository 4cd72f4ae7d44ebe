/* mmp-export: a checkpoint of mmp-train-step as a plain PyTorch state dict
 * (safetensors) that the documented module loads with strict=True. See
 * docs/train.md and lib/train/export.h. */
#include <string.h>

#include "cli.h"
#include "mmp.h"
#include "train/export.h"

static const char usage[] =
    "usage: mmp-export -o STATE_DICT.safetensors CHECKPOINT.safetensors\n"
    "Writes the trained head of an mmp-train-step checkpoint as a plain PyTorch state dict\n"
    "(safetensors, __metadata__ format \"pt\"): exactly the tensors of the head's torch module\n"
    "(linear: nn.Linear -> weight, bias; mlp: layers.0.weight ... of the nn.Sequential), the\n"
    "standardization folded into the first linear layer, no optimizer state. Linear and mlp\n"
    "heads only. The output is written atomically.\n"
    "\n";

int main(int argc, char **argv) {
    mmp_cli_init("mmp-export");
    const char *outp = NULL;
    mmp_option opts[] = {
        MMP_O_TEXT("options:"),
        MMP_O_OUTPUT(&outp, "the state dict (required)"),
        MMP_O_COMMON,
        MMP_O_END,
    };
    const char *in = mmp_cli_parse_input(argc, argv, opts, usage);
    if (!outp) mmp_die("--output FILE is required (see --help)");
    if (!strcmp(in, "-")) mmp_die("the checkpoint must be a file (see --help)");
    char err[1536];
    if (mmp_export_checkpoint(in, outp, err, sizeof err)) mmp_die("%s", err);
    return 0;
}
