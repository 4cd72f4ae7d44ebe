/* tx/lora_train.h: training LoRA adapters on a loaded transformer (the ViT /
 * CLIP towers of tx/model.h, BERT of text/bert.h) with the training forward
 * and backward of tx/train.h, saved as a PEFT 0.4 adapter folder
 * (tx/peft.h). docs/finetune.md.
 *
 * mmp_tx_lora_add / mmp_bert_lora_add create one adapter per selected
 * linear of the encoder blocks, initialized as PEFT 0.4's LoraLayer does
 * (lora_A: kaiming_uniform_(a = sqrt(5)), i.e. uniform in +-1/sqrt(in), drawn
 * from mmpipe's seeded generator; lora_B: zeros, so the model starts as the
 * base), attach them to the encoders (mmp_tx_block.lora) and append their
 * weights to P as parameters named as PEFT saves them in
 * adapter_model.safetensors:
 *     base_model.model.encoder.layer.0.attention.self.query.lora_A.weight  [r, in]
 *     base_model.model.encoder.layer.0.attention.self.query.lora_B.weight  [out, r]
 * with gradient buffers, and point P's block gradients at them
 * (mmp_tx_block_grad.lora), so mmp_tx_params_views / mmp_optim_step train
 * them. P is either empty (zeroed: LoRA only; the base weights get no
 * gradient buffers and the backward runs no dW GEMM for them) or filled by
 * mmp_tx_make_trainable / mmp_bert_make_trainable (the adapters added to
 * those parameters). The base weights are never changed.
 *
 * Targets are PEFT 0.4's target_modules as a list (comma-separated here): a
 * module is adapted when its name ends with one of them (peft 0.4.0's
 * key.endswith(target), no dot required: "query", "self_attn.q_proj",
 * "dense" all work). The module names are those of the home library
 * (transformers' ViTModel / ViTForImageClassification (with "vit."),
 * CLIPModel, BertModel; timm's VisionTransformer; open_clip's CLIP):
 *   HF ViT     encoder.layer.N.attention.attention.{query,key,value},
 *              encoder.layer.N.attention.output.dense, .intermediate.dense, .output.dense
 *   HF CLIP    {vision,text}_model.encoder.layers.N.self_attn.{q,k,v,out}_proj, .mlp.fc1, .mlp.fc2
 *   BERT       encoder.layer.N.attention.self.{query,key,value}, ... as HF ViT's
 *   timm ViT   blocks.N.attn.qkv (one adapter on the fused q|k|v linear: B is [3C, r]),
 *              blocks.N.attn.proj, blocks.N.mlp.fc1, blocks.N.mlp.fc2
 *   open_clip  [visual.]transformer.resblocks.N.mlp.c_fc, .mlp.c_proj only: the
 *              attention's q|k|v is nn.MultiheadAttention's in_proj_weight (not a
 *              module: PEFT refuses "attn"), and its out_proj, an nn.Linear PEFT
 *              wraps, is read by MultiheadAttention's forward as a weight, so PEFT's
 *              adapter there is never applied (peft 0.4.0: its gradient stays None);
 *              both are refused.
 * Refused with one line in err: a target that matches no module (PEFT 0.4
 * only fails when none of them matches), a target that selects a module
 * mmpipe does not adapt (a LayerNorm, a container, the pooler, a head, a
 * projection, the patch embedding, the above), r < 1, dropout outside [0, 1),
 * an encoder that has adapters already. A regular-expression target_modules
 * (PEFT's other form) is read by tx/peft.h but not taken here. */
#ifndef MMP_TX_LORA_TRAIN_H
#define MMP_TX_LORA_TRAIN_H
#include <stddef.h>
#include <stdint.h>

#include "text/bert.h"
#include "tx/lora.h"
#include "tx/model.h"
#include "tx/train.h"

typedef struct {
    int r;               /* rank (PEFT r); 8 */
    double alpha;        /* lora_alpha (the scale is alpha / r); 8 */
    double dropout;      /* lora_dropout on each adapter's input while training; 0 */
    const char *targets; /* comma-separated target_modules; NULL: mmp_tx_lora_default_targets */
    uint64_t seed;       /* lora_A's initialization and the dropout masks */
    int towers;          /* CLIP: 0 both towers, 1 the image tower's linears only, 2 the text
                          * tower's (the other tower's matches are skipped, not refused) */
} mmp_tx_lora_opts;

/* r 8, alpha 8, dropout 0, targets NULL, seed 0, towers 0 */
void mmp_tx_lora_opts_default(mmp_tx_lora_opts *o);

/* The default targets of a family: the attention's query and value
 * ("query,value" HF ViT and BERT, "q_proj,v_proj" HF CLIP); timm's q, k, v
 * are one linear: "qkv"; open_clip has no adaptable q/v: NULL. */
const char *mmp_tx_lora_default_targets(mmp_txm_family f);
#define MMP_BERT_LORA_DEFAULT_TARGETS "query,value"

typedef struct mmp_tx_lora_set mmp_tx_lora_set;

/* NULL with one line in err. The set owns the adapters' weights (P's
 * lora_A/lora_B parameters point into it): free P's views and P before
 * the set, and the set before the model. */
mmp_tx_lora_set *mmp_tx_lora_add(mmp_tx_model *m, const mmp_tx_lora_opts *o, mmp_tx_params *P, char *err,
                                 size_t errlen);
mmp_tx_lora_set *mmp_bert_lora_add(mmp_bert *b, const mmp_tx_lora_opts *o, mmp_tx_params *P, char *err,
                                   size_t errlen);

/* The dropout masks of the next training forward: a function of (seed,
 * step, tower, block, linear, token row) only. Call once per step before
 * the forward (its mask is kept for the backward). Nothing to do without dropout. */
void mmp_tx_lora_set_step(mmp_tx_lora_set *s, uint64_t step);

/* Adapted linears; the i-th one's module name (PEFT's), r and alpha */
int mmp_tx_lora_count(const mmp_tx_lora_set *s);
const char *mmp_tx_lora_module(const mmp_tx_lora_set *s, int i);

/* The i-th adapter (r, IC, OC, scale = alpha/r, A [r, IC], B [OC, r]) and
 * its encoder block; NULL past the count. */
const mmp_tx_lora *mmp_tx_lora_site(const mmp_tx_lora_set *s, int i, int *layer);

/* Writes the adapters as a PEFT adapter folder DIR (created):
 * adapter_config.json (r, lora_alpha, lora_dropout, target_modules as the
 * list given, bias "none") and adapter_model.safetensors (the names above;
 * the base weights file's SHA-256 in its metadata, tx/peft.h), which
 * peft.PeftModel.from_pretrained loads over the home library's model and
 * mmp-embed / mmp-embed-text --adapter over the base (HF ViT, HF CLIP,
 * BERT). 0, or -1 with one line in err. */
int mmp_tx_lora_save(mmp_tx_lora_set *s, const char *dir, char *err, size_t errlen);

/* Detaches the adapters from the encoders and frees them. */
void mmp_tx_lora_set_free(mmp_tx_lora_set *s);

#endif
