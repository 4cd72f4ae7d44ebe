/* fuse/check.h: mmp-fuse's checks of its inputs: the fields it fuses, the
 * class lists of two joined streams, and the provenance a learned
 * checkpoint (from mmp-train-step) was trained on. Each returns 0 when the
 * check passes, 1 when it passes with a warning in msg (--allow-mixed), -1
 * with the reason in msg (report them with mmp_cli_check). */
#ifndef MMP_FUSE_CHECK_H
#define MMP_FUSE_CHECK_H
#include <stddef.h>

#include "mmp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The size of field name in stream header h (file: the stream's name in
 * messages): a fixed-size 1-D float vector. The size, or -1 (msg). */
int mmp_fuse_field_dim(const mmp_header *h, const char *name, const char *file, char *msg, size_t msglen);
/* What made a stream's field: its "text_provenance" when it is the text
 * encoder's field ("text.field"), else the stream's "provenance", else "unknown". */
const char *mmp_fuse_side_provenance(const mmp_header *h, const char *field);
/* Two joined streams a, b (names na, nb): class lists, when both have one, must be equal. */
int mmp_check_same_classes(const mmp_header *a, const mmp_header *b, const char *na, const char *nb, char *msg,
                           size_t msglen);
/* One input of a learned checkpoint: want = what ckpt was trained on (its
 * "provenance" or "text_provenance"; NULL: not recorded, passes), have =
 * mmp_fuse_side_provenance of the input (what: its stream, field: its field). */
int mmp_check_fuse_provenance(const char *want, const char *have, int allow_mixed, const char *what, const char *field,
                              const char *ckpt, char *msg, size_t msglen);

#ifdef __cplusplus
}
#endif
#endif
