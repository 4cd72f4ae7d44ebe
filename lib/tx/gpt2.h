/* tx/gpt2.h: the GPT-2 decoder language model on the transformer engine
 * (tx/tx.h) (internal header, not installed). docs/decoder.md.
 *
 * Hugging Face GPT2LMHeadModel (names "transformer.wte.weight", ...,
 * "transformer.h.N.attn.c_attn.weight", ..., "transformer.ln_f.weight", a
 * tied lm_head) or GPT2Model (the same without "transformer.") safetensors,
 * with config.json beside them:
 *
 *     h[T, C]      = x[T, C] + wpe[pos]           x: the input embeddings (HF
 *                                                 inputs_embeds; wte rows of
 *                                                 token ids, or a caller's prefix);
 *                                                 pos restarts at 0 per sequence
 *     h            = enc(h)                       pre-LN blocks, causal attention
 *                                                 (ln_1, c_attn, c_proj, ln_2,
 *                                                 c_fc, act, c_proj), the engine's
 *     hidden[T, C] = ln_f(h)
 *     logits[T, V] = hidden wte^T                 (the tied lm_head, no bias)
 *
 * Batches are packed sequences (tx/tx.h): T = sum lens[s], no padding; a row
 * depends on its own sequence only, so results do not depend on the batch's
 * composition or the thread count (m->enc.threads; mmp_gpt2_set_threads):
 * the same bits, the KV-cache steps of any row count included (a step of
 * <= 4 new positions runs the GEMM's few-row kernel, same sums).
 *
 * Weights: HF's Conv1D keeps [in, out]; the engine's linears are [out, in]
 * (torch.nn.Linear): the loader transposes once (c_attn [C, 3C] -> the
 * engine's q|k|v [3C, C], q_w/k_w/v_w pointing into it), the saver writes
 * Conv1D's layout back. A loaded model owns every float it uses.
 *
 * Errors: NULL / -1 with one line in err naming the file and what is wrong
 * (a missing or unknown tensor, a shape that does not match config.json, ...).
 * Backward conventions as tx/tx.h: gradients accumulated (+=), NULL = skip. */
#ifndef MMP_TX_GPT2_H
#define MMP_TX_GPT2_H
#include <stddef.h>
#include <stdint.h>

#include "tx/lora_train.h"
#include "tx/train.h"
#include "tx/tx.h"

typedef struct {
    int vocab;    /* vocab_size (V) */
    int ctx;      /* n_positions: rows of wpe, the longest sequence */
    int C;        /* n_embd */
    int NH;       /* n_head (C % NH == 0) */
    int layers;   /* n_layer */
    int inter;    /* n_inner, 4C when config.json has null */
    float eps;    /* layer_norm_epsilon (1e-5) */
    mmp_tx_act act; /* activation_function: "gelu_new" (default) / "gelu_pytorch_tanh" -> GELU_TANH,
                     * "gelu" -> GELU_ERF, "quick_gelu", "relu" */
    int bos_id, eos_id; /* bos_token_id, eos_token_id (50256 for GPT-2); -1 when absent */
    int pad_id;   /* pad_token_id, -1 when absent (GPT-2 has none) */
} mmp_gpt2_config;

/* GPT-2 small's: V 50257, ctx 1024, C 768, NH 12, 12 layers, inter 3072,
 * eps 1e-5, gelu_new, bos = eos = 50256, pad -1. */
void mmp_gpt2_config_default(mmp_gpt2_config *cfg);
/* 0, or -1 with one line in err (C % NH, sizes < 1, ids outside the vocabulary). */
int mmp_gpt2_config_check(const mmp_gpt2_config *cfg, char *err, size_t errlen);

typedef struct mmp_gpt2 {
    mmp_gpt2_config cfg;
    const float *wte;          /* [V, C]: token embeddings and the tied lm_head */
    const float *wpe;          /* [ctx, C] */
    const float *lnf_w, *lnf_b; /* [C] */
    mmp_tx_encoder enc;        /* layers, C, NH, inter, act, eps; causal = 1, post_ln = 0;
                                * block[l]: ln1 = ln_1, q|k|v = c_attn (transposed: one [3C, C]
                                * buffer), o = attn.c_proj, ln2 = ln_2, fc1 = mlp.c_fc [I, C],
                                * fc2 = mlp.c_proj [C, I] (all [out, in]); block[].lora: LoRA */
    struct mmp_gpt2_store *store; /* the owned buffers (opaque) */
} mmp_gpt2;

/* Loads PATH: a folder holding model.safetensors (+ config.json), or a
 * .safetensors file (config.json beside it). Without config.json the sizes
 * come from the shapes (NH: C / 64, eps 1e-5, gelu_new, ids 50256 when
 * V > 50256, else -1). config.json's values are checked against the shapes.
 * Tensors the loader does not know (other than attn.bias / attn.masked_bias
 * buffers and lm_head.weight equal in shape to wte) fail naming the first. */
mmp_gpt2 *mmp_gpt2_load(const char *path, char *err, size_t errlen);
/* A model from scratch as transformers' GPT2PreTrainedModel._init_weights
 * (initializer_range 0.02): wte, wpe and every Conv1D weight normal(0, 0.02),
 * the c_proj weights (attn.c_proj, mlp.c_proj) normal(0, 0.02 / sqrt(2 layers)),
 * biases 0, LayerNorm weights 1 and biases 0; drawn from lib/rng.h seeded with
 * `seed` in the order of the HF names (deterministic; not torch's numbers). */
mmp_gpt2 *mmp_gpt2_init(const mmp_gpt2_config *cfg, uint64_t seed, char *err, size_t errlen);
/* Writes DIR (created if absent) /model.safetensors under GPT2LMHeadModel's
 * names (transformer.*; Conv1D layout [in, out]; lm_head tied, not written)
 * and DIR/config.json (model_type "gpt2", architectures ["GPT2LMHeadModel"],
 * the config's fields): transformers' GPT2LMHeadModel.from_pretrained(DIR)
 * loads it. LoRA adapters on enc.block[] are not merged (the base is written). */
int mmp_gpt2_save(const mmp_gpt2 *m, const char *dir, char *err, size_t errlen);
void mmp_gpt2_free(mmp_gpt2 *m);
/* Packs the encoder's and the lm_head's weights for the GEMM (inference
 * speed; load and init do it; mmp_gpt2_make_trainable undoes it, since a
 * pack is a copy): call after training, before generating. The same bits. */
void mmp_gpt2_pack(mmp_gpt2 *m);
void mmp_gpt2_set_threads(mmp_gpt2 *m, int threads);
/* The weights file the model was loaded from; NULL for mmp_gpt2_init's. */
const char *mmp_gpt2_path(const mmp_gpt2 *m);

/* A tokenizer with id_bound ids (text/bpe.h mmp_bpe_id_bound) for this
 * decoder: 0, or -1 with one line naming tok_path when an id could fall
 * outside the decoder's vocabulary. */
int mmp_gpt2_check_vocab(const mmp_gpt2 *m, int id_bound, const char *tok_path, char *err, size_t errlen);

/* out[n, C] = wte[ids[i]] (ids must be in [0, V): checked by the caller) */
void mmp_gpt2_embed(const mmp_gpt2 *m, const int32_t *ids, int n, float *out);

/* The whole-sequence forward (inference) over nseq packed sequences:
 * x[T, C] input embeddings (not changed), lens[s] <= ctx tokens each;
 * hidden: NULL or [T, C] receives ln_f's output; logits: NULL or [T, V].
 * 0, or -1 with err (a sequence longer than ctx). */
int mmp_gpt2_fwd(const mmp_gpt2 *m, const float *x, const int *lens, int nseq, float *hidden, float *logits, char *err,
                 size_t errlen);
/* logits[n, V] = hidden[n, C] wte^T (the lm_head on chosen rows) */
void mmp_gpt2_lm_head(const mmp_gpt2 *m, const float *hidden, int n, float *logits);

/* ------------------------------------------------------------ training */

/* Gradients mirroring mmp_gpt2's weights (pointers into P's g buffers;
 * NULL when that parameter is not trainable). wte gets both the
 * embedding's gradient (through mmp_gpt2_embed_bwd) and the lm_head's. */
typedef struct mmp_gpt2_grad {
    float *wte, *wpe, *lnf_w, *lnf_b;
    mmp_tx_block_grad *block; /* [layers] */
} mmp_gpt2_grad;

/* Makes every parameter trainable (owned copies already: the model's
 * fields keep pointing at them; the encoder is unpacked) and appends them to P
 * under GPT2LMHeadModel's names ("transformer.wte.weight",
 * "transformer.h.0.attn.c_attn.weight" (one fused parameter; transposed = 1:
 * the file's Conv1D shape [C, 3C]), ...) with gradient buffers; P->gpt2
 * points at the gradient struct (freed by mmp_tx_params_free). 0 or -1. */
int mmp_gpt2_make_trainable(mmp_gpt2 *m, mmp_tx_params *P, char *err, size_t errlen);

/* Saved activations of one training forward (opaque). */
typedef struct mmp_gpt2_saved mmp_gpt2_saved;
void mmp_gpt2_saved_free(mmp_gpt2_saved *a);

/* mmp_gpt2_fwd (the same bits in logits) keeping what the backward needs.
 * x [T, C] input embeddings; logits [T, V] (required). The first `frozen`
 * blocks run in inference mode (then the backward gives no gradient below
 * them and no dx: frozen = 0 when dx is wanted). LoRA adapters on
 * enc.block[].lora are applied (dropout masks from enc.lora_seed). NULL with err. */
mmp_gpt2_saved *mmp_gpt2_fwd_train(const mmp_gpt2 *m, const float *x, const int *lens, int nseq, int frozen,
                                   float *logits, char *err, size_t errlen);
/* dlogits [T, V]: d loss / d logits. g: parameter gradients (accumulated;
 * NULL: none; g->block[l].lora: the adapters'). dx: NULL or [T, C],
 * accumulated: d loss / d x (inputs_embeds; chain mmp_gpt2_embed_bwd for
 * token rows). */
void mmp_gpt2_bwd(const mmp_gpt2 *m, const mmp_gpt2_saved *a, const float *dlogits, const mmp_gpt2_grad *g, float *dx);
/* dwte[V, C] += scatter of dx[n, C] at ids (the embedding's gradient) */
void mmp_gpt2_embed_bwd(const mmp_gpt2 *m, float *dwte, const float *dx, const int32_t *ids, int n);

/* LoRA on the decoder's Conv1D modules (PEFT 0.4 LoraConfig with
 * fan_in_fan_out=True; target names as PEFT matches them, key.endswith:
 * "c_attn" (default: one adapter on the fused q|k|v, B [3C, r]),
 * "attn.c_proj", "c_fc", "mlp.c_proj", "c_proj" both). PEFT's adapter on a
 * Conv1D is lora_A [r, in], lora_B [out, r] as for nn.Linear (fan_in_fan_out
 * transposes the base weight only). P: as mmp_tx_lora_add (empty: LoRA only).
 * Names "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight".
 * mmp_tx_lora_save writes the PEFT folder (target_modules, fan_in_fan_out true). */
#define MMP_GPT2_LORA_DEFAULT_TARGETS "c_attn"
mmp_tx_lora_set *mmp_gpt2_lora_add(mmp_gpt2 *m, const mmp_tx_lora_opts *o, mmp_tx_params *P, char *err,
                                   size_t errlen);

/* ------------------------------------------------------------ KV cache */

/* Per-sequence keys and values of every layer for generation: nseq rows
 * (beams / batch entries), each up to maxlen (<= ctx) positions. */
typedef struct mmp_gpt2_cache mmp_gpt2_cache;
mmp_gpt2_cache *mmp_gpt2_cache_new(const mmp_gpt2 *m, int nseq, int maxlen);
void mmp_gpt2_cache_free(mmp_gpt2_cache *c);
/* Empties every row (length 0). */
void mmp_gpt2_cache_reset(mmp_gpt2_cache *c);
int mmp_gpt2_cache_len(const mmp_gpt2_cache *c, int s); /* positions held by row s */
int mmp_gpt2_cache_nseq(const mmp_gpt2_cache *c);

/* Appends n_new[s] positions to row s (n_new[s] may be 0: the row is left
 * alone and its logits row is not written): x [sum n_new, C] input
 * embeddings packed row after row (the prefix + prompt at once, then one
 * token per step); positions continue from the row's length. logits:
 * NULL or [nseq, V], the last new position's logits of each row with
 * n_new[s] > 0 (the same as the whole-sequence forward's, <= 1e-5; a row's
 * the same bits whatever the other rows of the call). 0, or -1 with err
 * (past maxlen). Runs on m->enc.threads threads (the same bits for any
 * count). */
int mmp_gpt2_step(const mmp_gpt2 *m, mmp_gpt2_cache *c, const float *x, const int *n_new, float *logits, char *err,
                  size_t errlen);
/* The same with token ids (wte rows): ids [sum n_new]. */
int mmp_gpt2_step_ids(const mmp_gpt2 *m, mmp_gpt2_cache *c, const int32_t *ids, const int *n_new, float *logits,
                      char *err, size_t errlen);
/* Row s becomes the former row src[s] (beam search; src may repeat rows). */
void mmp_gpt2_cache_reorder(mmp_gpt2_cache *c, const int *src);

#endif
