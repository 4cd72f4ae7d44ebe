/* BERT-family text encoder (Hugging Face BertModel math, inference) and the
 * sentence-transformers text-embedding pipeline around it: WordPiece
 * tokenization, BertModel forward, mean pooling over the attention mask,
 * optional L2 normalization. Weights: safetensors with HF names
 * (embeddings.word_embeddings.weight, encoder.layer.N.attention.self.query.weight, ...),
 * optionally prefixed "bert."; F32, F16 or BF16 (computed in f32). */
#ifndef MMP_TEXT_BERT_H
#define MMP_TEXT_BERT_H
#include <stddef.h>
#include <stdint.h>

#include "text/wordpiece.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int vocab, hidden, layers, heads, inter, max_pos, type_vocab;
    float eps;
    int pad_id; /* config.json pad_token_id (default 0; -1: none): transformers' word
                   embedding has padding_idx = pad_id, whose row gets no gradient (tx/train.h) */
} mmp_bert_config;

typedef struct {
    float *qkv_w;  /* [3H, H]: query, key, value weights stacked (Linear layout [out, in]) */
    float *qkv_b;  /* [3H] */
    float *ao_w, *ao_b;     /* attention.output.dense [H,H], [H] */
    float *aln_w, *aln_b;   /* attention.output.LayerNorm [H] */
    float *in_w, *in_b;     /* intermediate.dense [I,H], [I] */
    float *out_w, *out_b;   /* output.dense [H,I], [H] */
    float *oln_w, *oln_b;   /* output.LayerNorm [H] */
} mmp_bert_layer;

typedef struct {
    mmp_bert_config cfg;
    float *word, *pos, *type; /* [V,H], [P,H], [T,H] */
    float *eln_w, *eln_b;     /* embeddings.LayerNorm */
    mmp_bert_layer *layer;
    char sha256[65];          /* of the weights file */
    char *path;
    void *tx;                 /* the engine's encoder over these weights (tx/tx.h), packed at load */
} mmp_bert;

/* Loads weights from a .safetensors file. The config comes from config.json in
 * the same folder when present (num_attention_heads, layer_norm_eps,
 * hidden_act must be "gelu"), sizes from the tensor shapes; heads > 0
 * overrides the config; without both it is an error. 0 ok, -1 error (err). */
int mmp_bert_load(mmp_bert *m, const char *safetensors_path, int heads, char *err, size_t errlen);
void mmp_bert_free(mmp_bert *m);

/* Forward of nseq sequences packed one after another (no padding: each token
 * attends to the tokens of its own sequence, which is what HF's padded batch
 * with an additive -inf-like mask computes for the real tokens).
 * ids: [sum(lens)] token ids (token_type 0, positions 0..len-1 per sequence)
 * lens: [nseq], each 1..max_pos
 * hidden: out [sum(lens), H] = last_hidden_state rows of the real tokens.
 * Thread-safe (no shared mutable state); allocates its own scratch. */
void mmp_bert_forward(const mmp_bert *m, const int32_t *ids, const int *lens, int nseq, float *hidden);

/* Mean of each sequence's rows (sentence-transformers Pooling mean over the
 * attention mask) and, when normalize, x / max(||x||2, 1e-12) (torch F.normalize).
 * hidden: [sum(lens), H]; out: [nseq, H]. */
void mmp_bert_mean_pool(const float *hidden, const int *lens, int nseq, int H, int normalize, float *out);

/* The whole sentence-embedding model: a folder like sentence-transformers'
 * (model.safetensors, config.json, vocab.txt, sentence_bert_config.json,
 * 1_Pooling/config.json, modules.json), or a .safetensors file with
 * vocab.txt (and optionally the json files) beside it. */
typedef struct {
    mmp_bert bert;
    mmp_wordpiece *tok;
    int max_length;  /* sentence_bert_config.json max_seq_length, else 256 capped by max_pos */
    int normalize;   /* modules.json lists a Normalize module */
    int lower;       /* tokenizer lower-cases (tokenizer_config.json do_lower_case, default 1) */
    char *dir;
    char arch[128];  /* e.g. "bert-L6-H384-A12" */
} mmp_text_model;

int mmp_text_model_load(mmp_text_model *tm, const char *path, int heads, char *err, size_t errlen);
void mmp_text_model_free(mmp_text_model *tm);

/* Embeds n texts (UTF-8, lens in bytes) into out [n, H]: tokenize (truncated to
 * max_length incl. [CLS]/[SEP]), forward, mean pool, normalize when asked.
 * Returns 0, or -1 with *bad = index of the text with invalid UTF-8 (err). */
int mmp_text_embed(const mmp_text_model *tm, const char *const *texts, const size_t *lens, int n,
                   int max_length, int normalize, int utf8_policy, float *out, int *bad, char *err,
                   size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
