/* nn/embed.h: mmp-embed's work on a stream (internal): the checks of the
 * input's image field, the output header with its provenance, and the record
 * loop that batches images through mmp_nn_run and writes "embedding"
 * records. The output does not depend on the runner's thread count.
 *
 *   mmp_nn_embed e = {.model = m, .layer = l, .field = "image", .batch = 64, ...};
 *   mmp_nn_embed_input(&e, ih, name, err, sizeof err);       // sets chw, fh, fw
 *   mmp_nn_embed_header(&e, ih, name, path, sha, &oh, err, sizeof err);
 *   mmp_nn_embed_stream(&e, runner, reader, writer, err, sizeof err);
 */
#ifndef MMP_NN_EMBED_H
#define MMP_NN_EMBED_H
#include "mmp.h"
#include "nn/nn.h"

typedef struct {
    /* set by the caller */
    const mmp_nn_model *model;
    mmp_nn_layer layer;
    const char *field;     /* the image field ("image") */
    int keep;              /* keep the image field in the output */
    int size;              /* required NxN images; 0 = any size */
    long long max_pixels;  /* larger images are refused */
    long long batch;       /* records per batch (rounded up by mmp_nn_embed_header) */
    mmp_dtype out_dtype;   /* MMP_F32 or MMP_F16 */
    float mean[3], std[3]; /* normalization of u8 input */
    int reuse;             /* a record with the same string "image_id" and the same image
                              bytes as the record before it gets that record's embedding
                              (bit-identical) without running the model again */
    uint64_t *reused;      /* when set: the number of such records */
    /* set by mmp_nn_embed_input */
    int chw;               /* input is f32/f16 [3,H,W], already normalized */
    int fh, fw;            /* the schema's image size; <= 0 = varies */
} mmp_nn_embed;

/* Checks the stream's image field (u8 [H,W,3], or f32/f16 [3,H,W] with
 * image.layout=chw) and sets chw, fh, fw. 0, or -1 with the message
 * ("IN: \"image\" is u8 but not [H,W,3]"). The caller checks the
 * normalization of chw input (mmp_check_normalization) next. */
int mmp_nn_embed_input(mmp_nn_embed *e, const mmp_header *ih, const char *in_name, char *err, size_t errlen);

/* Checks a fixed image size against --size and the layer, rounds batch up to
 * a multiple of the micro-batch (fixed size), and makes the output header in
 * *oh: a copy of ih, the image field removed unless keep, the "embedding"
 * field, the embed.* meta and "provenance" (weights = the model's path,
 * weights_sha256 its SHA-256). 0, or -1 with the message (oh untouched). */
int mmp_nn_embed_header(mmp_nn_embed *e, const mmp_header *ih, const char *in_name, const char *weights,
                        const char *weights_sha256, mmp_header *oh, char *err, size_t errlen);

/* Reads every record of r, embeds its image in batches of e->batch records
 * (same-size images together; with e->reuse, consecutive records of one
 * image, as mmp-decode --manifest writes them, run the model once) and writes it to w with the "embedding" tensor
 * (the image field dropped unless keep). Progress on stderr when enabled.
 * 0 at the end of the stream; -1 with the message on a bad record
 * ("IN: record N: ...") or a read error: records of the failing batch are
 * not written. */
int mmp_nn_embed_stream(const mmp_nn_embed *e, mmp_nn_runner *run, mmp_reader *r, mmp_writer *w, char *err,
                        size_t errlen);

#endif
