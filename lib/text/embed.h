/* text/embed.h: mmp-embed-text's work (internal): the text encoder (a
 * BERT-family sentence encoder or a CLIP text tower), embedding many texts in
 * batches on threads, the --lines input, the output header and the record
 * loop that adds a text-embedding tensor to every record. The batch split
 * depends only on the batch size, and a text's result does not depend on its
 * batch, so the output is bit-identical for any thread count and batch size. */
#ifndef MMP_TEXT_EMBED_H
#define MMP_TEXT_EMBED_H
#include "mmp.h"
#include "text/bert.h"
#include "text/bpe.h"
#include "tx/model.h"

/* One of two encoders behind the same loop:
 *   BERT: text/bert.h's sentence-transformers model (WordPiece, mean pooling);
 *   CLIP: a CLIP checkpoint's text tower (tx/model.h, families clip-hf and
 *         clip-openclip) with CLIP's BPE tokenizer (text/bpe.h), EOS pooling,
 *         the projected embedding (get_text_features / encode_text) or the
 *         pooled output before the projection. */
typedef struct {
    mmp_text_model *bert; /* BERT, or NULL */
    mmp_tx_model *clip;   /* CLIP, or NULL */
    mmp_bpe *bpe;         /* CLIP's tokenizer */
    char *tok_source;     /* CLIP: the tokenizer's file name(s), e.g. "bpe_simple_vocab_16e6.txt.gz" */
    mmp_tx_out which;     /* CLIP: MMP_TX_OUT_EMBED or MMP_TX_OUT_POOLED */
    int dim;              /* output vector length */
    int context;          /* CLIP: the tower's context (positions); BERT: max positions */
    int max_length;       /* default --max-length: BERT's max_seq_length; CLIP: min(77, context) */
    int normalize;        /* default normalization: BERT's modules.json Normalize; CLIP: off */
    const char *weights;  /* the weights file */
    char sha256[65];      /* of the weights file */
    char arch[128];       /* "bert-L6-H384-A12", "clip-hf-text-L12-C512" */
} mmp_text_encoder;

typedef struct {
    int heads;             /* BERT without config.json: attention heads (0: from config.json) */
    const char *tokenizer; /* CLIP: the vocabulary (file or folder) instead of the one beside the weights */
    int pooled;            /* CLIP: the pooled output before the projection */
} mmp_text_encoder_opts;

/* 1 when path (a folder or a weights file) is a CLIP checkpoint: open_clip's
 * file names, or CLIP tensor names in its safetensors; 0 otherwise (BERT is
 * assumed; an unreadable file is left to the loader's error). */
int mmp_text_is_clip(const char *path);

/* Loads a BERT or CLIP model (mmp_text_is_clip). An option that does not
 * apply to the model (--heads with CLIP, --tokenizer / --pooled with BERT),
 * a CLIP checkpoint without a text tower, no CLIP vocabulary beside an
 * open_clip/HF model (the message says where to get one) or a vocabulary
 * larger than the tower's: -1 with one line in err. */
int mmp_text_encoder_load(mmp_text_encoder *e, const char *path, const mmp_text_encoder_opts *o, char *err,
                          size_t errlen);
/* Loads the PEFT LoRA adapter folder DIR for the encoder's weights and
 * attaches it (run unmerged; text/adapter.c, tx/peft.h). Free it with
 * mmp_lora_free after the encoder. NULL with one line in err. */
struct mmp_lora;
struct mmp_lora *mmp_text_encoder_adapter(mmp_text_encoder *e, const char *dir, char *err, size_t errlen);
void mmp_text_encoder_free(mmp_text_encoder *e);

/* Embeds n texts into out [n, e->dim]: BERT's mmp_text_embed, or CLIP:
 * mmp_bpe_encode with context max_length (truncated: end token last), the
 * text tower, and when normalize x / max(||x||, 1e-12). 0, or -1 with
 * *bad = the text's index (invalid UTF-8) and the message in err. */
int mmp_text_encoder_embed(const mmp_text_encoder *e, const char *const *texts, const size_t *lens, int n,
                           int max_length, int normalize, int utf8, float *out, int *bad, char *err, size_t errlen);

typedef struct {
    const mmp_text_encoder *model;
    int max_length;           /* tokens incl. [CLS]/[SEP] (CLIP: start/end of text) */
    int normalize;            /* L2-normalize */
    int utf8;                 /* MMP_UTF8_ERROR or MMP_UTF8_REPLACE */
    int batch;                /* texts per forward pass */
    int threads;              /* batches run at a time */
    mmp_dtype dtype;          /* of the output tensor: MMP_F32 or MMP_F16 */
    const char *field;        /* the output tensor's name */
    const char *const *drops; /* stream input: fields dropped */
    int ndrops;
    int missing_skip;         /* stream input: records without text are skipped and counted (else an error) */
} mmp_text_embed_opts;

/* Embeds n texts into out [n, dim] in batches of `batch`, `threads`
 * batches at a time (mmp_text_encoder_embed on each). 0, or -1 on invalid
 * UTF-8 with *bad = the text's index and the message in err. */
int mmp_text_embed_batches(const mmp_text_encoder *tm, const char *const *texts, const size_t *lens, int n, int batch,
                           int threads, int max_length, int normalize, int utf8, float *out, int *bad, char *err,
                           size_t errlen);

/* --lines input: one item (class) a line (\n or \r\n stripped), classes[c]
 * = the line (made valid UTF-8 under MMP_UTF8_REPLACE). The records: with
 * at most one template, one a line: ids[i] = the line, labels[i] = i,
 * texts[i] = the template with "{}" replaced by the line (the line itself
 * without a template; the template alone when it has no "{}"); with several
 * templates (a prompt ensemble), ntpl records a line, in template order:
 * ids = "LINE#k" (k = the template's 0-based index), labels = the line's
 * 0-based number, texts = template k applied to the line. */
typedef struct {
    char **ids, **texts;
    int *labels;
    int n;          /* records */
    char **classes; /* the lines */
    int nclasses;
} mmp_text_lines;

/* path "-" = stdin; tpls: ntpl templates (ntpl 0: none). 0, or -1 with
 * "FILE: line N: contains a NUL byte", "FILE: read error" or "FILE: cannot open". */
int mmp_text_lines_read(mmp_text_lines *l, const char *path, const char *const *tpls, int ntpl, int utf8, char *err,
                        size_t errlen);
void mmp_text_lines_free(mmp_text_lines *l);

/* The output header in *oh: a copy of ih with o->drops removed (stream
 * input) or, for lines (ih NULL), the lines as classes and the template as
 * "text.template" (several: a JSON array of them); then the output field
 * [dim], the text.* meta and "text_provenance". */
void mmp_text_embed_header(const mmp_text_embed_opts *o, const mmp_header *ih, const mmp_text_lines *lines,
                           const char *const *tpls, int ntpl, mmp_header *oh);

/* Reads the records of rd (or makes one a line: id, label = line number,
 * text), embeds their texts, `batch * threads` records at a time, and writes
 * them to w with the output tensor added (drops removed). Records without
 * text are skipped and counted in w's trailer with missing_skip. Progress on
 * stderr when enabled. 0, or -1 with one line naming in_name and the record
 * ("IN: record N (id X): no text ...", "IN: line N: invalid UTF-8 ..."); the
 * records of the failing group are not written. */
int mmp_text_embed_stream(const mmp_text_embed_opts *o, mmp_reader *rd, const mmp_text_lines *lines,
                          const char *in_name, mmp_writer *w, char *err, size_t errlen);

#endif
