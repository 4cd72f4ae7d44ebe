/* train/unfreeze.h: the freezing strategies of mmp-train-step --unfreeze
 * (PyTorch's requires_grad), shared by the CNNs trained from the image
 * (train/cnn_tail.h) and the transformer head (train/tx_head.h):
 *   MMP_UNFREEZE_ALL    everything trains (the default)
 *   MMP_UNFREEZE_HEAD   the classifier only
 *   MMP_UNFREEZE_LAST   the last n blocks + the classifier
 *   MMP_UNFREEZE_NORM   BatchNorm / LayerNorm weight and bias + the classifier
 *   MMP_UNFREEZE_LORA   LoRA adapters + the classifier */
#ifndef MMP_TRAIN_UNFREEZE_H
#define MMP_TRAIN_UNFREEZE_H
#include <stddef.h>

enum { MMP_UNFREEZE_ALL = 0, MMP_UNFREEZE_HEAD, MMP_UNFREEZE_LAST, MMP_UNFREEZE_NORM, MMP_UNFREEZE_LORA };

/* Parses "head|last:N|all|norm|bn|lora" into kind and n (N of last:N, else 0).
 * 0 or -1 with one line in err. */
int mmp_unfreeze_parse(const char *s, int *kind, int *n, char *err, size_t errlen);

#endif
