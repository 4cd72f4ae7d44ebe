/* mmp-export: a checkpoint of mmp-train-step as a plain PyTorch state dict
 * (safetensors) that the documented module loads with strict=True. See
 * docs/train.md and lib/train/export.h. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cli.h"
#include "mmp.h"
#include "train/adapter.h"
#include "train/caption.h"
#include "train/clip_ft.h"
#include "train/export.h"
#include "train/tx_head.h"
#include "train/vqa_cmd.h"
#include "tx/peft.h"

static int mmp_is_dir(const char *p) {
    struct stat sb;
    return !stat(p, &sb) && S_ISDIR(sb.st_mode);
}

static const char usage[] =
    "usage: mmp-export -o STATE_DICT.safetensors CHECKPOINT.safetensors\n"
    "       mmp-export --merge-lora ADAPTER_DIR --model BASE -o MERGED.safetensors\n"
    "       mmp-export --stamp-lora ADAPTER_DIR --model BASE -o OUT_DIR\n"
    "       mmp-export --peft [--model BASE] -o ADAPTER_DIR CHECKPOINT.safetensors\n"
    "Writes the trained head of an mmp-train-step checkpoint as a plain PyTorch state dict\n"
    "(safetensors, __metadata__ format \"pt\"): exactly the tensors of the head's torch module\n"
    "(linear: nn.Linear -> weight, bias; mlp: layers.0.weight ... of the nn.Sequential), the\n"
    "standardization folded into the first linear layer, no optimizer state. Linear and mlp\n"
    "heads, mnv2-tail / resnet-tail trained --from input (the whole torchvision state dict,\n"
    "num_batches_tracked included), and --head transformer (the model under its own names with\n"
    "the classifier; --unfreeze lora: the adapters merged). The output is written atomically.\n"
    "--merge-lora: a PEFT LoRA adapter merged into its base (a Hugging Face ViT, CLIP or BERT,\n"
    "timm ViT or open_clip model: W + alpha/r B A), written as a plain backbone under the original names (the\n"
    "adapted weights F32, the rest as they were). --stamp-lora: the adapter rewritten in\n"
    "PEFT's format with the base's SHA-256 recorded (checked when it is loaded). docs/finetune.md\n"
    "--peft: the adapters of a CNN trained --from input --unfreeze lora as a PEFT adapter folder\n"
    "(the classifier as modules_to_save; BASE: the backbone, default the checkpoint's --backbone);\n"
    "--merge-lora takes such a folder too (the base a torchvision MobileNetV2/ResNet) and writes\n"
    "the torchvision state dict with the adapters merged, as mmp-export of the checkpoint does.\n"
    "--peft of a --head transformer --unfreeze lora checkpoint: its adapters as a PEFT folder\n"
    "over the backbone (adapters only; the classifier stays in the checkpoint), which\n"
    "mmp-embed / mmp-embed-text --adapter take. --peft of a --head vqa|vqa-pooled\n"
    "--text-unfreeze lora checkpoint: the text tower's adapters as a PEFT folder over its --backbone.\n"
    "A captioner (mmp-train-step --head caption): -o DIR gets its decoder as a Hugging Face\n"
    "GPT2LMHeadModel folder (trained weights, LoRA merged; a word-level vocabulary as\n"
    "DIR/tokenizer.json), which mmp-train-step --head caption --decoder DIR takes (docs/caption.md).\n"
    "\n";

int main(int argc, char **argv) {
    mmp_cli_init("mmp-export");
    const char *outp = NULL, *merge = NULL, *stamp = NULL, *model = NULL;
    int peft = 0;
    mmp_option opts[] = {
        MMP_O_TEXT("options:"),
        MMP_O_OUTPUT(&outp, "the state dict (required)"),
        MMP_O_STRING("merge-lora", 0, &merge, "DIR", "merge this PEFT LoRA adapter into --model"),
        MMP_O_STRING("stamp-lora", 0, &stamp, "DIR", "rewrite this adapter with --model's SHA-256 into -o DIR"),
        MMP_O_FLAG("peft", 0, &peft, "write the LoRA adapters of a CNN or transformer checkpoint (--unfreeze lora) as a PEFT folder -o DIR"),
        MMP_O_STRING("model", 0, &model, "BASE", "the adapter's base: a .safetensors file or a folder holding model.safetensors (or open_clip_model.safetensors)"),
        MMP_O_COMMON,
        MMP_O_END,
    };
    const char *in = mmp_cli_parse_input(argc, argv, opts, usage);
    if (!outp) mmp_die("--output FILE is required (see --help)");
    char err[1536];
    if (peft) {
        if (merge || stamp) mmp_die("--peft: not with --merge-lora / --stamp-lora");
        if (!strcmp(in, "-")) mmp_die("the checkpoint must be a file (see --help)");
        if (mmp_clipft_is_checkpoint(in)) { /* --head clip --unfreeze lora: one adapter over the CLIP model */
            if (mmp_clipft_write_peft(in, outp, err, sizeof err)) mmp_die("%s: %s", in, err);
            return 0;
        }
        if (mmp_vqa_is_checkpoint(in)) { /* --head vqa|vqa-pooled --text-unfreeze lora: the text tower's adapters */
            if (mmp_vqa_write_peft(in, outp, err, sizeof err)) mmp_die("%s", err);
            return 0;
        }
        mmp_trainer tr;
        if (mmp_trainer_load(&tr, in, NULL, err, sizeof err)) mmp_die("%s", err);
        if (tr.head.tx ? mmp_txhead_write_peft(tr.head.tx, outp, err, sizeof err)
                       : mmp_trainer_write_adapter(&tr, model, outp, err, sizeof err))
            mmp_die("%s: %s", in, err);
        mmp_trainer_free(&tr);
        return 0;
    }
    if (merge && model) { /* a CNN adapter (mmp-export --peft): merged into the torchvision state dict */
        char *cfg = mmp_xasprintf("%s/adapter_model.safetensors", merge);
        mmp_safetensors st;
        int cnn = 0;
        if (!mmp_st_open(&st, cfg, err, sizeof err)) {
            cnn = mmp_meta_get(&st.meta, "mmpipe.head") != NULL;
            mmp_st_close(&st);
        }
        free(cfg);
        if (cnn) {
            if (strcmp(in, "-")) mmp_die("--merge-lora takes no checkpoint argument (%s)", in);
            mmp_trainer tr;
            if (mmp_trainer_load_adapter(&tr, model, merge, err, sizeof err)) mmp_die("%s", err);
            mmp_st_writer w;
            mmp_st_writer_init(&w);
            if (mmp_export_state_dict(&tr, &w, err, sizeof err) || mmp_st_writer_write(&w, outp, err, sizeof err)) mmp_die("%s", err);
            mmp_st_writer_free(&w);
            mmp_trainer_free(&tr);
            return 0;
        }
    }
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
    if (mmp_captioner_probe(in)) { /* a captioner: its decoder as a GPT-2 folder */
        mmp_captioner *c = mmp_captioner_load(in, err, sizeof err);
        if (!c || mmp_captioner_save_decoder(c, outp, err, sizeof err)) mmp_die("%s", err);
        mmp_captioner_free(c);
        return 0;
    }
    if (mmp_export_checkpoint(in, outp, err, sizeof err)) mmp_die("%s", err);
    return 0;
}
