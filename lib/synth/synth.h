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

/* ---------------- scenes: captions and VQA (mmp-synth --mode captions|vqa) ----------------
 *
 * A scene is a 96x96 picture of 1..3 plain objects on a gray background.
 * The picture is cut into a 3x3 grid of 32-pixel cells; each object sits in
 * its own cell (so its position word is exact: "top left" ... "center" ...
 * "bottom right"), has its own colour (no two objects of a scene share one),
 * one of the shapes (shapes may repeat) and a size (small: radius 8..10 px,
 * large: 13..15 px). Relations between two objects a, b follow from the
 * cells and sizes: a is "to the left of" b when a's column is left of b's,
 * "above" when its row is above, "next to" when the cells touch (also
 * diagonally), "bigger than" when a is large and b small.
 *
 * Everything (picture, captions, questions, annotator answers) is a pure
 * function of (seed, index): each part draws from its own stream
 * mmp_hash64(index, seed ^ a per-part constant), independent of the tar
 * mode's items. */
#define MMP_SYNTH_NSHAPES 4
#define MMP_SYNTH_NCOLOURS 6
#define MMP_SYNTH_NCAPTIONS 5
#define MMP_SYNTH_MAXOBJ 3
#define MMP_SYNTH_NQTYPES 6

extern const char *const mmp_synth_shapes[MMP_SYNTH_NSHAPES];   /* circle square triangle diamond */
extern const char *const mmp_synth_colours[MMP_SYNTH_NCOLOURS]; /* red green blue yellow purple orange */
extern const char *const mmp_synth_positions[9];                /* cell row*3+col: "top left" ... "bottom right" */
extern const char *const mmp_synth_qtypes[MMP_SYNTH_NQTYPES];   /* color shape count yesno position relation */

typedef struct {
    int shape, colour, big, cell; /* indices into the tables above; big: 0 small, 1 large */
    double cx, cy, r;             /* centre and radius in pixels */
} mmp_synth_obj;

typedef struct {
    uint8_t rgb[MMP_SYNTH_SIZE * MMP_SYNTH_SIZE * 3]; /* HxWx3 */
    int n;                                            /* objects, 1..3 */
    mmp_synth_obj o[MMP_SYNTH_MAXOBJ];
    char captions[MMP_SYNTH_NCAPTIONS][192]; /* the same facts in five wordings */
} mmp_synth_scene;

/* Scene `index` of the set drawn with `seed`. */
void mmp_synth_scene_make(uint64_t seed, uint64_t index, mmp_synth_scene *sc);

/* Relation rel (0 left of, 1 right of, 2 above, 3 below, 4 next to, 5 bigger
 * than, 6 smaller than) of object a to object b; its words ("to the left of" ...). */
#define MMP_SYNTH_NRELS 7
int mmp_synth_rel(const mmp_synth_scene *sc, int a, int b, int rel);
extern const char *const mmp_synth_rel_words[MMP_SYNTH_NRELS];

#define MMP_SYNTH_MAXANSWERS 10
typedef struct {
    char question[192];
    int qtype;                                  /* index into mmp_synth_qtypes */
    char answer[32];                            /* the true answer */
    int nanswers;                               /* annotator answers */
    char answers[MMP_SYNTH_MAXANSWERS][32];
} mmp_synth_qa;

/* nq questions about scene sc (made from (seed, index)); question types
 * rotate from a random start so that an image with 6 questions has one of
 * each (a relation question needs two objects: a one-object scene gets a
 * position question instead). nanswers 1: answers[0] = answer; 2..10:
 * VQA v2 style annotators, each giving the true answer or, with probability
 * 0.15, a wrong one of the same kind (another colour, shape or position,
 * the count off by one, yes for no). */
void mmp_synth_questions(uint64_t seed, uint64_t index, const mmp_synth_scene *sc, int nq, int nanswers,
                         mmp_synth_qa *out);

/* A scene data set as a folder (mmp-synth --out DIR):
 *   DIR/images/KEY.png (or .jpg)   KEY = "img" + 6-digit index
 *   DIR/train.jsonl, dev.jsonl, test.jsonl  (splits with images; formats/manifest.md):
 *     captions: {"image": "images/KEY.png", "image_id": KEY, "captions": [5 strings]}
 *     vqa:      {"image", "image_id", "question_id": "KEY/qN", "question",
 *                "question_type", "answer" (the true one), "answers": [nanswers]}
 *   DIR/scenes.jsonl: what each picture shows, one line per image:
 *     {"image_id", "split", "objects": [{"shape", "color", "size": "small"|"large",
 *      "position", "x", "y", "r"}], "captions": [...]}
 * Image indices: train 0..ntrain-1, dev next, test next. */
typedef struct {
    uint64_t seed;
    int vqa;              /* 0: captions rows, 1: VQA rows */
    uint64_t nsplit[3];   /* images in train, dev, test */
    int questions;        /* per image (vqa) */
    int answers;          /* annotator answers per question, 1..10 */
    int jpeg, quality;    /* JPEG at this quality instead of PNG */
} mmp_synth_dir_opts;

/* 0, or -1 with one line in err (the path that could not be written). */
int mmp_synth_write_dir(const char *dir, const mmp_synth_dir_opts *o, char *err, size_t errlen);
#endif
