/* train/adapter.h: LoRA adapters of CNNs trained --from input --unfreeze lora
 * as PEFT 0.4 adapter folders (docs/train.md).
 *
 * adapter_config.json: peft_type LORA, r, lora_alpha, lora_dropout,
 * target_modules = a regular expression naming exactly the adapted
 * convolutions (PEFT fullmatches a string), modules_to_save ["classifier"]
 * (MobileNetV2) or ["fc"] (ResNet), base_model_name_or_path = the backbone.
 * adapter_model.safetensors: base_model.model.<conv>.lora_A.weight
 * [r,Ci,K,K], ...lora_B.weight [O,r,1,1], base_model.model.classifier.1.weight
 * / .bias (fc.weight / .bias): what PEFT's get_peft_model_state_dict saves;
 * __metadata__ format "pt", mmpipe.base_sha256 (the backbone's SHA-256, checked
 * at load) and the checkpoint's configuration under "mmpipe." keys. */
#ifndef MMP_TRAIN_ADAPTER_H
#define MMP_TRAIN_ADAPTER_H

#include <stddef.h>

#include "train/train.h"

/* Writes tr's adapters into folder dir (created); base = the backbone file
 * (NULL: the checkpoint's --backbone). 0 or -1 (err). */
int mmp_trainer_write_adapter(const mmp_trainer *tr, const char *base, const char *dir, char *err, size_t errlen);
/* A trainer (as mmp_trainer_load gives) from the base network file and an
 * adapter folder written by mmp_trainer_write_adapter, unmerged. 0 or -1 with
 * one line in err (another base: both checksums named). */
int mmp_trainer_load_adapter(mmp_trainer *tr, const char *base, const char *dir, char *err, size_t errlen);

#endif
