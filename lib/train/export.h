/* train/export.h: a trained head as a plain PyTorch state dict (mmp-export).
 *
 * The file holds exactly the state_dict of the head's torch module (the
 * names of train/head.h: "weight"/"bias" of nn.Linear, "layers.<3i>.*" of
 * the MLP's nn.Sequential), so module.load_state_dict(sd, strict=True)
 * works: no optim.* tensors, no standardize.* buffers - the standardization
 * is folded into the first linear layer:
 *   W'[h,k] = W[h,k] / std[k],   b'[h] = b[h] - sum_k W'[h,k] * mean[k]
 * (b' summed in double), so W' x + b' = W ((x - mean) / std) + b up to
 * float rounding. __metadata__: format "pt", head, hidden/dropout (mlp),
 * classes (JSON list), provenance. Supported: linear and mlp heads (ce, bce);
 * the other kinds are refused with one line naming the kind. */
#ifndef MMP_TRAIN_EXPORT_H
#define MMP_TRAIN_EXPORT_H

#include <stddef.h>

#include "mmp.h"
#include "train/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Adds the state dict of tr's head (standardization folded) and its
 * metadata to w. 0, or -1 (err) for a head kind that cannot be exported. */
int mmp_export_state_dict(const mmp_trainer *tr, mmp_st_writer *w, char *err, size_t errlen);
/* Reads the checkpoint `in` (mmp-train-step's) and writes the state dict
 * to `out` atomically (nothing is written on error). 0 or -1 (err: one line
 * naming the file, or the head kind). */
int mmp_export_checkpoint(const char *in, const char *out, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
