/* tx/peft.h: LoRA adapters in PEFT's format (docs/finetune.md).
 *
 * An adapter folder holds adapter_config.json (peft_type "LORA", r,
 * lora_alpha, lora_dropout, target_modules, bias "none", fan_in_fan_out
 * false, modules_to_save null, base_model_name_or_path) and
 * adapter_model.safetensors with PEFT's names
 *   base_model.model.MODULE.lora_A.weight [r, in], ...lora_B.weight [out, r]
 * where MODULE names a linear of the Hugging Face model (ViTModel, CLIPModel's
 * vision_model / text_model, BertModel): encoder.layer.N.attention.self.query,
 * vision_model.encoder.layers.N.self_attn.q_proj, ... The adaptable linears
 * ("sites") are found from the base weights file's tensor names; a "vit." or
 * "bert." prefix of the weights (ViTForImageClassification, BertFor...) is
 * accepted on either side. target_modules is matched as PEFT 0.4 does: a list
 * of names = suffix match on the module names, a string = a regular
 * expression matching the whole name (POSIX extended here).
 *
 * mmpipe records the base weights' SHA-256 in the adapter's safetensors
 * __metadata__ under "mmpipe.base_sha256" (PEFT ignores it) and checks it
 * at load when present. */
#ifndef MMP_TX_PEFT_H
#define MMP_TX_PEFT_H
#include <stddef.h>

#include "mmp.h"
#include "tx/lora.h"
#include "tx/tx.h"

#define MMP_LORA_SHA_KEY "mmpipe.base_sha256"

typedef struct mmp_lora mmp_lora;

/* Loads the adapter folder DIR for the base weights file BASE_PATH (a
 * .safetensors file; its SHA-256 BASE_SHA256, computed when NULL). NULL with
 * one line in err: a pattern that matches no module, a module mmpipe cannot
 * adapt, a missing or misshapen tensor, a tensor of no target module, an
 * adapter recorded for another base (both checksums named), ... */
mmp_lora *mmp_lora_load(const char *dir, const char *base_path, const char *base_sha256, char *err, size_t errlen);
void mmp_lora_free(mmp_lora *a);

/* Points the blocks of encoder E (tower 0: the image tower / BERT, 1: CLIP's
 * text tower) at the adapter's matrices (mmp_tx_block.lora). The adapter must
 * outlive the encoder's use. 0, or -1 with err when the shapes differ. */
int mmp_lora_attach(const mmp_lora *a, int tower, mmp_tx_encoder *e, char *err, size_t errlen);
/* Whether the adapter has any module in that tower. */
int mmp_lora_has_tower(const mmp_lora *a, int tower);

/* SHA-256 of adapter_model.safetensors (hex), and r, alpha, modules adapted. */
const char *mmp_lora_sha256(const mmp_lora *a);
int mmp_lora_rank(const mmp_lora *a);
double mmp_lora_alpha(const mmp_lora *a);
int mmp_lora_nsites(const mmp_lora *a);
/* "sha256=...:r=R:alpha=A:modules=N" for provenance strings (static to a) */
const char *mmp_lora_provenance(const mmp_lora *a);

/* Writes the base weights with every adapted W replaced by W + (alpha/r) B A
 * (F32; every other tensor and the metadata as they were) to OUT: a plain
 * backbone under the original names. 0 or -1 (err). */
int mmp_lora_merge_write(const mmp_lora *a, const char *out, char *err, size_t errlen);

/* Writes the adapter in PEFT's format into folder DIR (created), with the
 * base's SHA-256 in the metadata. 0 or -1 (err). */
int mmp_lora_write(const mmp_lora *a, const char *dir, char *err, size_t errlen);

/* A PEFT LoRA adapter folder from explicit pieces, for any model family
 * (mmp_lora_write's format): adapter_config.json (peft_type LORA, r,
 * lora_alpha, lora_dropout, target_modules = the list targets, bias "none",
 * modules_to_save = the list save or null, base_model_name_or_path) and
 * adapter_model.safetensors with the tensors as named (PEFT's
 * "base_model.model.<module>.lora_A.weight", ...), __metadata__ format "pt",
 * MMP_LORA_SHA_KEY = base_sha and every entry of extra (may be NULL). */
typedef struct {
    const char *base_name, *base_sha;
    int r;
    double alpha, dropout;
    const char *const *targets;
    int ntargets;
    int targets_regex;      /* targets[0] is written as a string (a regular expression PEFT fullmatches) */
    int fan_in_fan_out;     /* 1: the base's linears are Conv1D [in, out] (GPT-2); PEFT's fan_in_fan_out */
    const char *const *save;
    int nsave;
    const mmp_meta *extra;
} mmp_peft_folder;
int mmp_peft_write_folder(const char *dir, const mmp_peft_folder *f, mmp_st_writer *tensors, char *err, size_t errlen);
/* An adapter made in memory (trained: tx/lora_train.h), to be written by
 * mmp_lora_write: for the base weights file BASE_PATH with SHA-256
 * BASE_SHA256 (hex), config values as named, target_modules the list
 * TARGETS. mmp_lora_add_module adds one adapted linear under its full
 * module name (as in the home library's model: the tensors are written as
 * base_model.model.MODULE.lora_A.weight); A [r, IC] and B [OC, r] are copied. */
mmp_lora *mmp_lora_new(const char *base_path, const char *base_sha256, const char *base_name, int r, double alpha,
                       double dropout, const char *const *targets, int ntargets);
void mmp_lora_add_module(mmp_lora *a, const char *module, int OC, int IC, const float *A, const float *B);

/* The image embeddings' provenance (IMG_PROV) and the text embeddings' (TXT_PROV)
 * name the same adapter ("lora=SHA") or none: 0; else the message (naming
 * IMG_WHAT and TXT_WHAT) and -1, or 1 with allow_mixed (a warning). */
int mmp_lora_prov_check(const char *img_prov, const char *txt_prov, const char *img_what, const char *txt_what,
                        int allow_mixed, char *msg, size_t msglen);

#endif

/* The adapter DIR loaded for a ViT/CLIP model (its weights file m->path) and
 * attached to each of its towers. Also for the callers that add it to an
 * output header: mmp_lora_stamp. NULL with one line in err. */
struct mmp_tx_model;
mmp_lora *mmp_lora_attach_model(struct mmp_tx_model *m, const char *dir, char *err, size_t errlen);

/* Appends ":" mmp_lora_provenance() to the header's KEY ("provenance";
 * mmp-embed-text: "text_provenance") (the
 * embeddings of base + adapter are not the base's) and sets
 * "lora.adapter" (the folder's name), "lora.sha256", "lora.r", "lora.alpha"
 * ("text_lora.*" for "text_provenance"). */
void mmp_lora_stamp(const mmp_lora *a, mmp_header *h, const char *key);
