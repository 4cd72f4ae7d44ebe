/* train/train_internal.h: what the parts of the trainer (setup.c,
 * checkpoint.c) share and programs do not call. */
#ifndef MMP_TRAIN_TRAIN_INTERNAL_H
#define MMP_TRAIN_TRAIN_INTERNAL_H

#include "train/train.h"

/* Builds tr->head for tr->cfg (checked with mmp_train_cfg_check) and the
 * dims in tr; src: where the CNN-tail heads' weights come from (the backbone,
 * or the checkpoint when from_ckpt). 0 or -1 (err). */
int mmp_trainer_setup_head(mmp_trainer *tr, const mmp_safetensors *src, int from_ckpt, char *err, size_t errlen);
/* The checkpoint's "classes" value: the class names as a JSON list (heap), NULL without names. */
char *mmp_train_classes_json(const mmp_trainer *tr);

/* A record's label for a stream that needs one: 0, or -1 with "NAME: record
 * REC: no label" / "... label L out of range (N classes in the header)" in
 * err (ncls <= 0: the header names no classes). */
int mmp_dataset_check_label(const char *name, int64_t rec, int64_t label, int64_t ncls, char *err, size_t errlen);

#endif
