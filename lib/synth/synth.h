/* Deterministic synthetic image+caption data set (the built-in demo data).
 *
 * Each item is a 96x96 RGB picture of one shape (circle, square, triangle)
 * in a random colour and texture on a random background, with a caption that
 * names the colour, the texture and a scene (indoor or outdoor) but never the
 * shape. The label is shape x scene (6 classes: "circle-indoor", ...), so the
 * image alone can tell the shape but not the scene, the caption the scene but
 * not the shape: only a model that fuses both can reach full accuracy. */
#ifndef MMP_SYNTH_H
#define MMP_SYNTH_H
#include <stdint.h>
#include <stdio.h>

#define MMP_SYNTH_SIZE 96
#define MMP_SYNTH_NCLASSES 6

extern const char *const mmp_synth_classes[MMP_SYNTH_NCLASSES];

typedef struct {
    uint8_t rgb[MMP_SYNTH_SIZE * MMP_SYNTH_SIZE * 3]; /* HxWx3 */
    char caption[256];
    int label;
} mmp_synth_item;

/* Item `index` of the set drawn with `seed`: a pure function of both. */
void mmp_synth_item_make(uint64_t seed, uint64_t index, mmp_synth_item *it);

/* Writes n items as a WebDataset-style tar (KEY.jpg, KEY.txt, KEY.cls) to fp.
 * Key = prefix + 6-digit index. Returns 0, or -1 on a write error. */
int mmp_synth_write_tar(FILE *fp, uint64_t seed, uint64_t first, uint64_t n, const char *prefix, int quality);
#endif
