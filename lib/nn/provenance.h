/* nn/provenance.h: what made a stream's embeddings, and the check that two
 * things (a stream and a head, two streams...) were made the same way.
 *
 * mmp-embed writes header meta "provenance" =
 *   "ARCH:LAYER:size=HxW:sha256=WEIGHTS_SHA256:mean=a,b,c:std=a,b,c"
 * (size "any" when the input images vary in size), plus the parts as
 * "embed.arch", "embed.layer", "embed.size", "embed.mean", "embed.std",
 * "embed.dtype", "embed.weights_sha256". The storage dtype (f32/f16) is not
 * part of the provenance: f16 and f32 caches of the same model are
 * interchangeable. */
#ifndef MMP_NN_PROVENANCE_H
#define MMP_NN_PROVENANCE_H
#include "mmp.h"

/* The "provenance" string (heap, caller frees). size = "224x224" or "any". */
char *mmp_provenance_format(const char *arch, const char *layer, const char *size,
                            const char *weights_sha256, const float mean[3], const float std[3]);
/* "a,b,c" with %g (heap, caller frees); the spelling used in provenance strings. */
char *mmp_provenance_floats(const float v[3]);

/* Compares a's "provenance" meta with b_prov (NULL = none). Equal (or both
 * absent): returns. Different: with allow_mixed prints a warning and
 * returns; otherwise dies with one line naming both, e.g.
 *   "mmp-eval: provenance mismatch: test.mmp has \"…\" but head.safetensors has \"…\"
 *    (embedded with a different model, layer, input size or normalization;
 *    --allow-mixed to proceed anyway)". */
void mmp_provenance_check(const mmp_header *a, const char *b_prov, int allow_mixed,
                          const char *what_a, const char *what_b);
/* The same check, for a caller that reports it (mmp_cli_check): 0 equal (or
 * both absent); different: 1 with allow_mixed (msg = the warning), else -1
 * (msg = the error). */
int mmp_check_provenance(const mmp_header *a, const char *b_prov, int allow_mixed, const char *what_a,
                         const char *what_b, char *msg, size_t msglen);

/* mmp-embed's check of normalized float input images: the stream's
 * "image.mean"/"image.std" (h's meta) against the model's mean/std (relative
 * tolerance 1e-5). 0: the same. Different or not stated: -1 with the error
 * in msg, or with allow_mixed 1 with the warning in msg, and mean/std
 * replaced by the stream's when it states them (the images are undone with
 * what they were made with). */
int mmp_check_normalization(const mmp_header *h, float mean[3], float std[3], int allow_mixed, const char *what,
                            const char *model, char *msg, size_t msglen);
#endif
