/* train/caption.h: image captioning (ClipCap, Mokady et al. 2021): an image
 * feature mapped to K prefix embeddings in front of a GPT-2 decoder
 * (tx/gpt2.h), trained by mmp-train-step --head caption and run by
 * mmp-generate --model CAPTIONER.
 *
 * The mapping network (--mapper), under ClipCap's names (module clip_project):
 *   mlp          ClipCap's MLP: Linear(D, K*C/2), Tanh, Linear(K*C/2, K*C)
 *                clip_project.model.0.weight [K*C/2, D], .model.0.bias,
 *                clip_project.model.2.weight [K*C, K*C/2], .model.2.bias;
 *                the output viewed as [K, C]. Spatial features [N, D] are
 *                flattened (D' = N*D).
 *   transformer  ClipCap's TransformerMapper: x = linear(f) viewed as [L, C]
 *                (pooled f [D]: Linear(D, L*C), L = K; spatial f [N, D]: the
 *                same Linear(D, C) on each of the N tokens, L = N), then
 *                cat(x, prefix_const [K, C]) through ClipCap's Transformer
 *                (pre-LN layers, 8 heads, ReLU MLP of width 2C, q and kv
 *                projections without bias) and the last K outputs:
 *                clip_project.linear.weight/bias, clip_project.prefix_const,
 *                clip_project.transformer.layers.N.{norm1,norm2}.weight/bias,
 *                .attn.to_queries.weight [C, C], .attn.to_keys_values.weight
 *                [2C, C] (keys then values), .attn.project.weight/bias,
 *                .mlp.fc1.weight/bias [2C, C], .mlp.fc2.weight/bias [C, 2C].
 * The decoder: GPT-2 (GPT2LMHeadModel names under "gpt.": gpt.transformer.*),
 * C its n_embd. The caption's token embeddings follow the prefix; the logits
 * of positions K-1 .. K+n-1 predict the caption's n tokens then EOS.
 *
 * A captioner checkpoint (mmp-train-step --head caption OUT) is a
 * safetensors file with the mapping network (clip_project.*), the decoder's
 * weights when they were trained (--unfreeze all: gpt.transformer.* in
 * GPT2LMHeadModel's Conv1D layout, the tied lm_head not written; --unfreeze
 * lora: the adapters only, under PEFT's names after "gpt.":
 * gpt.base_model.model.transformer.h.N.attn.c_attn.lora_A.weight [r, in],
 * .lora_B.weight [out, r]; mmp_captioner_load merges them into the base as
 * PEFT's merge_and_unload does), the optimizer state (optim.*) and
 * __metadata__ "format" = "mmpipe-head", "head" = "caption", "mapper",
 * "prefix_length", "mapper_layers", "unfreeze" (+ the lora_* keys),
 * "feature" (the records' field), "feature_dim" (D: the values per feature
 * token), "feature_tokens" (N, 0: pooled), "decoder" (the GPT-2 folder the
 * decoder starts from: a pretrained one, or the scratch decoder's initial
 * weights written beside the checkpoint as OUT-stem.decoder), "tokenizer"
 * ("" for the decoder folder's GPT-2 BPE; the scratch vocabulary is
 * OUT-stem.tokenizer.json, a Hugging Face tokenizers WordLevel file), and
 * "max_length" (caption tokens + EOS in training). Relative or moved paths:
 * a file of that name beside the checkpoint is taken. */
#ifndef MMP_TRAIN_CAPTION_H
#define MMP_TRAIN_CAPTION_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mmp_gpt2;
typedef struct mmp_captioner mmp_captioner;

/* Loads a captioner checkpoint: the mapping network, the decoder (its folder
 * + the trained weights of the checkpoint, LoRA merged), the tokenizer. NULL
 * with one line in err (naming the file). */
mmp_captioner *mmp_captioner_load(const char *path, char *err, size_t errlen);
/* 1 when path is a regular safetensors file whose metadata says head =
 * caption (a captioner checkpoint), else 0 (a folder, another file). */
int mmp_captioner_probe(const char *path);
void mmp_captioner_free(mmp_captioner *c);

/* prefix [n][K][C] = the mapping network of the n features feat
 * [n][mmp_captioner_feature_size]. 0, or -1 (n < 0). Thread-safe on a
 * loaded captioner. */
int mmp_captioner_prefix(const mmp_captioner *c, const float *feat, int n, float *prefix);

/* The decoder (owned by c). */
struct mmp_gpt2 *mmp_captioner_decoder(const mmp_captioner *c);
/* K, the prefix length; C, the decoder's width */
int mmp_captioner_prefix_length(const mmp_captioner *c);
int mmp_captioner_width(const mmp_captioner *c);
/* The records' feature field, the values per token D, the tokens N (0:
 * pooled [D]); a record's feature tensor has N*D (or D) values:
 * mmp_captioner_feature_size. */
const char *mmp_captioner_feature(const mmp_captioner *c);
int64_t mmp_captioner_feature_dim(const mmp_captioner *c);
int64_t mmp_captioner_feature_tokens(const mmp_captioner *c);
int64_t mmp_captioner_feature_size(const mmp_captioner *c);

/* The tokenizer: ids of a text (no BOS/EOS added); up to max ids in ids,
 * returns the count (which may exceed max: then ids holds the first max),
 * -1 with err. */
int mmp_captioner_encode(const mmp_captioner *c, const char *text, int32_t *ids, int max, char *err, size_t errlen);
/* Text of ids (special tokens -- BOS, EOS, PAD -- skipped), heap. */
char *mmp_captioner_decode(const mmp_captioner *c, const int32_t *ids, int n);
int mmp_captioner_eos(const mmp_captioner *c);
/* Writes the decoder (its trained weights, LoRA merged) as a GPT2LMHeadModel
 * folder DIR (mmp_gpt2_save), with a word-level tokenizer as
 * DIR/tokenizer.json (mmp-train-step --decoder DIR then finds it): the
 * decoder of a captioner trained from scratch, reused frozen or with LoRA
 * under a new mapping network (mmp-export --decoder). 0 or -1 (err). */
int mmp_captioner_save_decoder(const mmp_captioner *c, const char *dir, char *err, size_t errlen);
int mmp_captioner_vocab(const mmp_captioner *c);

#ifdef __cplusplus
}
#endif
#endif
