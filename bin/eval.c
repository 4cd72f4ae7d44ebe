/* mmp-eval: apply a trained head to feature records; write prediction
 * records (classification heads) or projections + retrieval metrics and
 * zero-shot predictions (pair heads). See docs/train.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "mmp.h"
#include "nn/provenance.h"
#include "tx/peft.h"
#include "train/adapter.h"
#include "train/caption.h"
#include "train/eval.h"
#include "train/tx_head.h"
#include "train/vqa_cmd.h"

static const char usage[] =
    "usage: mmp-eval --model HEAD.safetensors [options] [FEATURES.mmp]   (default: stdin)\n"
    "Applies a head trained by mmp-train-step; writes a prediction stream to stdout (-o).\n"
    "\n"
    "classification heads (ce/bce): every record keeps its id and label and gets\n"
    "  \"logits\" f32 [C], \"probs\" f32 [C] (softmax; sigmoid for bce), \"pred\" i64 [1] (argmax);\n"
    "  bce heads also pass the multi-label targets (\"labels\") through.\n"
    "whole networks (--head mnv2-tail|resnet-tail --from input, --head transformer) read\n"
    "  the records they were trained on: images (u8 [H,W,3] or normalized [3,H,W]) or the\n"
    "  record's text (tokenized by the model's tokenizer).\n"
    "VQA heads (--head vqa|vqa-pooled) read image tokens + question records and write the\n"
    "  strings \"prediction\" [answer] and \"pred\" i64 [1], keeping \"answers\"/\"qtype\";\n"
    "  VQA accuracy per question type to stderr (docs/vqa.md).\n"
    "fusion heads (gated, attention) read both inputs of every record (the training\n"
    "  --feature and --pair-field, raw) and write logits/probs/pred as above; --fused also\n"
    "  writes the fused vector \"fused\" f32 [F] (what mmp-fuse --checkpoint MODEL computes).\n"
    "pair heads (contrastive/triplet): every record gets \"image_proj\" f32 [E] and, when the\n"
    "  stream has the pair field, \"text_proj\" f32 [E] (L2-normalized projections);\n"
    "  retrieval recall@K image->text and text->image over all records goes to stderr\n"
    "  (and --json). With --prompts, zero-shot classification: \"logits\" = exp(logit_scale)\n"
    "  * cosine(image, class prompt), \"probs\", \"pred\" as above.\n"
    "a CLIP model (Hugging Face CLIPModel or open_clip weights) works as a pair head whose\n"
    "  projections are its own: the stream's \"embedding\" (mmp-embed --layer proj) and\n"
    "  \"text_embedding\" / the prompts (mmp-embed-text) must come from the same weights;\n"
    "  zero-shot logits use the model's logit_scale. Embeddings made with a LoRA adapter\n"
    "  (mmp-embed/mmp-embed-text --adapter) need the model as --model, and the image and\n"
    "  the text side the same adapter (their provenance says which).\n"
    "\n";

/* A CLIP model as the head: the embeddings' provenance (text: the
 * text_provenance) must name the model's SHA-256 and its projection (image:
 * layer "proj"; text: not the pre-projection "pooled" output). 0, 1 with
 * allow_mixed (msg = the warning), -1 (msg = the error). */
static int clip_check(const char *prov, const char *sha, int text, int allow_mixed, const char *what, const char *model,
                      char *msg, size_t msglen) {
    char key[80];
    snprintf(key, sizeof key, "sha256=%s", sha);
    const char *why = !prov ? "have no provenance; the model is"
                      : !strstr(prov, key) ? "were not embedded with"
                      : (text ? strstr(prov, "pooled") != NULL : strstr(prov, ":proj:") == NULL)
                          ? (text ? "are the text tower's pooled output, not the projected embedding (mmp-embed-text without --pooled), of"
                                  : "are another layer than the projected image embedding (mmp-embed --layer proj) of")
                          : NULL;
    if (!why) return 0;
    mmp_errf(msg, msglen, "%s: the %s embeddings %s %s (their provenance: \"%s\")%s", what, text ? "text" : "image", why,
             model, prov ? prov : "(none)", allow_mixed ? " (--allow-mixed)" : "; --allow-mixed to proceed anyway");
    return allow_mixed ? 1 : -1;
}

int main(int argc, char **argv) {
    mmp_cli_init("mmp-eval");
    const char *model = NULL, *outp = "-", *prompts = NULL, *json = NULL, *adapter = NULL;
    int allow_mixed = 0, want_fused = 0, level = 0, ks[8] = {1, 5, 10}, nk = 3;
    int64_t B = 1024;
    mmp_option opts[] = {
        MMP_O_TEXT("options:"),
        MMP_O_STRING("model", 0, &model, "FILE", "checkpoint from mmp-train-step (required)"),
        MMP_O_STRING("adapter", 0, &adapter, "DIR",
                     "a PEFT LoRA adapter folder of a CNN trained --unfreeze lora\n"
                     "(mmp-export --peft); --model is then its base network"),
        MMP_O_OUTPUT(&outp, "output stream (default stdout)"),
        MMP_O_STRING("prompts", 0, &prompts, "FILE",
                     "text embeddings of the class prompts (pair field, else \"embedding\"):\n"
                     "one record per class in class order, or labelled records\n"
                     "(several prompts per class are averaged, CLIP-style)"),
        MMP_O_FLAG("fused", 0, &want_fused, "fusion heads: also write \"fused\" f32 [F] (the fused vector)"),
        MMP_O_STRING("json", 0, &json, "FILE", "summary (counts, accuracy when labelled, retrieval) as JSON ('-' = stdout)"),
        MMP_O_INT_LIST("k", 0, ks, &nk, 8, "K[,K...]", "recall cut-offs (1,5,10)"),
        MMP_O_INT64("batch-size", 0, &B, 1, 1 << 20, "N", "records per forward pass (1024)"),
        MMP_O_FLAG("allow-mixed", 0, &allow_mixed, "accept features of another provenance than the training features"),
        MMP_O_LEVEL(&level, "zstd level of the output (3)"),
        MMP_O_COMMON,
        MMP_O_END,
    };
    const char *in = mmp_cli_parse_input(argc, argv, opts, usage);
    if (!model) mmp_die("--model FILE is required (see --help)");
    mmp_train_init_blas();
    if (mmp_vqa_is_checkpoint(model)) { /* --head vqa|vqa-pooled */
        if (adapter || prompts || want_fused) mmp_die("%s is a VQA checkpoint: --adapter, --prompts and --fused do not apply", model);
        return mmp_vqa_eval_cmd(model, in, outp, level, allow_mixed, 0, json, argc, argv);
    }
    char err[1024];
    mmp_trainer tr;
    mmp_eval ec;
    memset(&tr, 0, sizeof tr);
    struct stat sb;
    char *model_file = NULL; /* the weights file of a model folder */
    if (stat(model, &sb) == 0 && S_ISDIR(sb.st_mode)) { /* a model folder (CLIP): its weights file */
        static const char *const names[] = {"model.safetensors", "open_clip_model.safetensors"};
        char *f = NULL;
        for (int k = 0; k < 2 && !f; k++) {
            f = mmp_xasprintf("%s/%s", model, names[k]);
            if (access(f, R_OK)) free(f), f = NULL;
        }
        if (!f) mmp_die("%s: a folder without model.safetensors or open_clip_model.safetensors", model);
        model = model_file = f;
    }
    if (!adapter && mmp_captioner_probe(model))
        mmp_die("%s: a captioner (--head caption): mmp-generate --model %s writes its captions (docs/caption.md)", model, model);
    if (adapter ? mmp_trainer_load_adapter(&tr, model, adapter, err, sizeof err) : mmp_trainer_load(&tr, model, NULL, err, sizeof err))
        mmp_die("%s", err);
    if (tr.head.tx) { /* a transformer: the encoder on every core (the same bits for any count) */
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        mmp_txhead_set_threads(tr.head.tx, nc > 0 ? (int)nc : 1);
    }
    char clip_sha[65] = "";
    if (tr.clip && mmp_sha256_file(model, clip_sha)) mmp_die("%s: cannot read", model);
    if (mmp_eval_init(&ec, &tr, want_fused, model, err, sizeof err)) mmp_die("%s", err);
    ec.allow_mixed = allow_mixed;

    mmp_reader *r = mmp_reader_open(in, err, sizeof err);
    if (!r) mmp_die("%s", err);
    const mmp_header *ih = mmp_reader_header(r);
    const char *rname = mmp_reader_name(r);
    if (tr.clip) /* embeddings of this model's image tower, projected */
        mmp_cli_check(clip_check(mmp_meta_get(&ih->meta, "provenance"), clip_sha, 0, allow_mixed, rname, model, err, sizeof err), err);
    else
        mmp_cli_check(mmp_check_provenance(ih, tr.provenance, allow_mixed, rname, model, err, sizeof err), err);
    mmp_cli_check(mmp_trainer_check_header(&tr, ih, rname, err, sizeof err), err);
    mmp_eval_attach(&ec, ih);
    if (ec.has_text && tr.clip) {
        mmp_cli_check(clip_check(mmp_meta_get(&ih->meta, "text_provenance"), clip_sha, 1, allow_mixed, rname, model, err, sizeof err), err);
        mmp_cli_check(mmp_lora_prov_check(mmp_meta_get(&ih->meta, "provenance"), mmp_meta_get(&ih->meta, "text_provenance"), rname,
                                      rname, allow_mixed, err, sizeof err), err);
    }
    else if (ec.has_text)
        mmp_cli_check(mmp_check_text_provenance(ih, tr.text_provenance, allow_mixed, rname, model, err, sizeof err), err);
    if (!ec.pair) mmp_cli_check(mmp_check_classes(ih, tr.nclasses_named, tr.classes, rname, model, err, sizeof err), err);
    if (prompts) { /* zero-shot */
        if (!ec.pair) mmp_die("--prompts needs a pair (contrastive/triplet) head; %s is a %s head", model, mmp_head_kind_name(tr.cfg.head));
        mmp_reader *pr = mmp_reader_open(prompts, err, sizeof err);
        if (!pr) mmp_die("%s", err);
        if (tr.clip) {
            mmp_cli_check(clip_check(mmp_meta_get(&mmp_reader_header(pr)->meta, "text_provenance"), clip_sha, 1, allow_mixed,
                                     mmp_reader_name(pr), model, err, sizeof err), err);
            mmp_cli_check(mmp_lora_prov_check(mmp_meta_get(&ih->meta, "provenance"),
                                          mmp_meta_get(&mmp_reader_header(pr)->meta, "text_provenance"), rname,
                                          mmp_reader_name(pr), allow_mixed, err, sizeof err), err);
        } else
            mmp_cli_check(mmp_check_text_provenance(mmp_reader_header(pr), tr.text_provenance, allow_mixed, mmp_reader_name(pr), model, err,
                                                    sizeof err), err);
        if (mmp_eval_read_prompts(&ec, pr, err, sizeof err)) mmp_die("%s", err);
        mmp_reader_close(pr);
    }

    mmp_header oh;
    mmp_eval_header(&ec, ih, model, &oh);
    mmp_header_stamp(&oh, argc, argv);
    mmp_writer *w = mmp_writer_open(outp, &oh, level);
    mmp_eval_summary sum;
    if (mmp_eval_run(&ec, r, w, B, ks, nk, &sum, err, sizeof err)) mmp_die("%s", err);
    mmp_writer_close(w);
    mmp_reader_close(r);
    mmp_eval_summary_print(stderr, "mmp-eval", &sum);
    if (json && mmp_eval_summary_json(json, &sum, err, sizeof err)) mmp_die("%s", err);
    mmp_header_free(&oh);
    mmp_eval_free(&ec);
    mmp_trainer_free(&tr);
    free(model_file);
    return 0;
}
