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
#endif
