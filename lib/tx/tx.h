/* tx/tx.h: the transformer engine (internal header, not installed).
 *
 * Every layer is a pair of plain C functions, forward and backward, with the
 * shapes in the comments (the llm.c way). Tensors are row-major f32; a
 * "token matrix" x[T,C] holds the T tokens of nseq sequences packed one after
 * another (lens[s] tokens each, no padding): attention stays inside a
 * sequence, which is what a padded batch with an attention mask computes for
 * its real tokens. Every forward row depends only on its own sequence, so
 * outputs are bit-identical whatever the batch composition and thread count
 * (the GEMM's rows are: nn/gemm.h).
 *
 * Backward conventions (llm.c): gradients of inputs and of parameters are
 * ACCUMULATED (+=) into the given buffers, which the caller zeroes; a NULL
 * gradient pointer means "not needed" and is skipped. Forward functions that
 * save something for the backward say so (NULL = inference, not saved).
 *
 * ops (tx/ops_avx2.c) -> encoder blocks (tx/encoder.c) -> models: ViT (tx/vit.c),
 * CLIP (tx/clip.c), BERT (text/bert.c).
 */
#ifndef MMP_TX_TX_H
#define MMP_TX_TX_H
#include <stddef.h>
#include <stdint.h>

typedef enum {
    MMP_TX_GELU_ERF,   /* x/2 (1 + erf(x/sqrt 2)): torch GELU(), HF "gelu" */
    MMP_TX_GELU_TANH,  /* torch GELU(approximate="tanh"), HF "gelu_new"/"gelu_pytorch_tanh" */
    MMP_TX_QUICK_GELU, /* x sigmoid(1.702 x): OpenAI CLIP, HF "quick_gelu" */
    MMP_TX_RELU,
} mmp_tx_act;

/* ---------------------------------------------------------------- ops */

/* y[N, OC] (row stride ldy >= OC) = x[N, IC] W[OC, IC]^T + b[OC] (b may be NULL).
 * Linear layout [out, in] as torch.nn.Linear. */
void mmp_tx_linear_fwd(float *y, int ldy, const float *x, const float *W, const float *b, int N, int IC, int OC);
/* dx[N,IC] += dy W; dW[OC,IC] += dy^T x; db[OC] += sum_n dy (dy row stride ldy) */
void mmp_tx_linear_bwd(float *dx, float *dW, float *db, const float *dy, int ldy, const float *x, const float *W,
                       int N, int IC, int OC);

/* The linear layer for few rows (a decoding step): y[N, j0..j1) (row stride
 * ldy) = x[N, K] (row stride ldx) W[j, :]^T + b[j] (+ R[N, j], row stride ldr)
 * for rows j0..j1-1 of W [*, K]; b and R may be NULL. mmp_sgemm_bias on
 * those columns: the bits of mmp_tx_linear_fwd (any N, any split of the
 * columns); up to 4 rows run the GEMM's few-row kernel (W streamed once). */
void mmp_tx_gemv_rows(float *y, int ldy, const float *x, int ldx, const float *W, const float *b, const float *R, int ldr,
                      int N, int K, int j0, int j1);

/* y[N,C] = (x - mean) / sqrt(var + eps) * w + b over each row (biased
 * variance, torch.nn.LayerNorm). mean, rstd [N]: saved for the backward
 * (NULL = not saved). y may equal x. */
void mmp_tx_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                          int C, float eps);
/* dx[N,C] += ..., dw[C] += ..., db[C] += ... from the saved mean/rstd */
void mmp_tx_layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                          const float *mean, const float *rstd, int N, int C);

/* y[n] = act(x[n]) (y may equal x: then the backward needs the input kept
 * elsewhere); dx[n] += act'(x) dy */
void mmp_tx_act_fwd(float *y, const float *x, size_t n, mmp_tx_act a);
void mmp_tx_act_bwd(float *dx, const float *dy, const float *x, size_t n, mmp_tx_act a);

/* Multi-head scaled dot-product attention of nseq packed sequences.
 *   q: [Tq, C] rows of stride ldq (head h = columns h*dh .. h*dh+dh-1, dh = C/NH)
 *   k, v: [Tk, C] rows of stride ldk, ldv
 *   qlens[s], kvlens[s]: tokens of sequence s on each side (self-attention: the same array)
 *   out: [Tq, C] (row stride C) = softmax(q k^T / sqrt(dh) [+ causal mask]) v per head
 *   causal: 0 none; 1: query i of a sequence sees keys j <= i (qlens == kvlens);
 *           c > 1: query i sees keys j < i + c (queries after c - 1 cached keys:
 *           mmp_tx_attention_head with Lk = c - 1 + Lq, a KV cache)
 *   att: the softmax probabilities saved for the backward, mmp_tx_attention_att_size()
 *        floats (NULL = inference: scratch of its own)
 * Self-attention over a fused qkv[T, 3C]: q = qkv, k = qkv + C, v = qkv + 2C, ld 3C. */
size_t mmp_tx_attention_att_size(const int *qlens, const int *kvlens, int nseq, int NH);
void mmp_tx_attention_fwd(float *out, float *att, const float *q, int ldq, const float *k, int ldk, const float *v,
                          int ldv, const int *qlens, const int *kvlens, int nseq, int C, int NH, int causal);
/* One (sequence, head) of mmp_tx_attention_fwd, for callers that split the
 * work (the same bits): q, k, v, out point at the sequence's first row
 * (out row stride C), sc [Lq * Lk] receives the probabilities. */
void mmp_tx_attention_head(float *out, float *sc, const float *q, int ldq, const float *k, int ldk, const float *v,
                           int ldv, int Lq, int Lk, int C, int NH, int h, int causal);
void mmp_tx_attention_bwd(float *dq, float *dk, float *dv, /* same strides as q, k, v */
                          const float *dout, const float *q, int ldq, const float *k, int ldk, const float *v,
                          int ldv, const float *att, const int *qlens, const int *kvlens, int nseq, int C, int NH,
                          int causal);

/* One (sequence, head) of mmp_tx_attention_bwd (the same bits): pointers at
 * the sequence's first rows (dout row stride C), P its saved probabilities
 * [Lq, Lk], dS scratch [Lq * Lk]. */
void mmp_tx_attention_head_bwd(float *dq, float *dk, float *dv, float *dS, const float *dout, const float *q, int ldq,
                               const float *k, int ldk, const float *v, int ldv, const float *P, int Lq, int Lk, int C,
                               int NH, int h, int causal);

/* out[T, C] = table[ids[t]] rows (token embeddings); dtable[V, C] += scatter of dout */
void mmp_tx_embed_fwd(float *out, const int32_t *ids, const float *table, int T, int C);
void mmp_tx_embed_bwd(float *dtable, const float *dout, const int32_t *ids, int T, int C);

/* Patch embedding: a Conv2d(3, C, P, stride P) over img [3, H, W] (CHW, H and W
 * multiples of P... rest cropped as the conv does) into out [(H/P)*(W/P), C]
 * rows in raster order. W [C, 3, P, P], b [C] or NULL. */
void mmp_tx_patch_fwd(float *out, const float *img, int H, int W, const float *Wt, const float *b, int C, int P);
void mmp_tx_patch_bwd(float *dimg, float *dW, float *db, const float *dout, const float *img, int H, int W,
                      const float *Wt, int C, int P);

/* Learned 2-D position embeddings pe [gh*gw, C] resized to [oh*ow, C] with
 * torch F.interpolate(mode="bicubic", align_corners=False), antialias=1 as
 * timm's resample_abs_pos_embed calls it (antialias=True: torch's separable
 * Pillow filter, cubic a = -0.5 normalized over a window widened by the
 * shrink factor, width pass first; used whether shrinking or growing) or
 * antialias=0 (a = -0.75, 4x4 taps with clamped edges: HF ViT/CLIP
 * interpolate_pos_encoding). The same taps and weight formulas as torch
 * 1.13's CPU kernels, in float; not bit-identical to them (their weights
 * differ in the last bits): within 1e-5 of the values' scale (tests/test_tx_ops.c).
 * pe rows in raster order [y][x]. */
void mmp_tx_pos_resize(float *out, const float *pe, int gh, int gw, int oh, int ow, int C, int antialias);

/* ------------------------------------------------------------ encoder */

/* One transformer block's weights (pointers into the model's storage).
 * Pre-LN (ViT, CLIP):  x += o(attn(ln1(x))) [* ls1];  x += fc2(act(fc1(ln2(x)))) [* ls2]
 * Post-LN (BERT):      x = ln1(x + o(attn(x)));      x = ln2(x + fc2(act(fc1(x))))
 * q/k/v: [C, C] + [C] each (biases may be NULL); a fused in_proj [3C, C] is
 * pointed into. ls1/ls2: timm LayerScale gammas [C] or NULL. */
typedef struct {
    const float *ln1_w, *ln1_b;
    const float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b;
    const float *o_w, *o_b;
    const float *ln2_w, *ln2_b;
    const float *fc1_w, *fc1_b; /* [I, C], [I] */
    const float *fc2_w, *fc2_b; /* [C, I], [C] */
    const float *ls1, *ls2;
    const struct mmp_tx_block_lora *lora; /* LoRA adapters of the six linears (tx/lora.h), NULL: none */
} mmp_tx_block;

typedef struct {
    int layers, C, NH, inter; /* inter = I, the MLP width */
    mmp_tx_act act;
    int post_ln; /* 1: BERT's post-LN blocks; 0: pre-LN */
    int causal;  /* causal self-attention (CLIP's text tower) */
    float eps;   /* LayerNorm eps */
    mmp_tx_block *block;
    struct mmp_tx_packed *packed; /* NULL, or mmp_tx_encoder_pack's weights */
    int threads; /* threads of the encoder's functions (rows and attention heads
                  * split among them, the same bits for any count); 0 or 1:
                  * the calling thread only */
    unsigned long long lora_seed; /* the training forward's LoRA dropout masks
                  * (tx/lora.h mmp_tx_lora_row_seed): set a new one per step */
    int layer0;  /* the masks' layer number of block[0] (0; a view of blocks
                  * first.. of a larger encoder keeps its masks with `first`) */
    int recompute; /* the training forward (tx/train.h) keeps only each kept
                  * block's input and recomputes the block's activations just
                  * before its backward (torch.utils.checkpoint per block): the
                  * same bits, less memory, one more forward of the blocks */
} mmp_tx_encoder;

/* Packs every block's GEMM weights once (q|k|v as one [3C, C] matrix, o, fc1,
 * fc2) for mmp_sgemm_packed (nn/gemm.h), which then also fuses the bias and
 * the residual into the GEMM. The outputs are the same bits packed or not
 * (tests/test_tx_ops.c): only time changes. Call after block[] is filled and
 * before the encoder is shared between threads; the block's weights must
 * stay as they are while packed (packing copies them: a later change is not
 * seen). mmp_tx_encoder_unpack frees the packs (packed = NULL). */
void mmp_tx_encoder_pack(mmp_tx_encoder *e);
void mmp_tx_encoder_unpack(mmp_tx_encoder *e);

/* x[T, C] through every block in place (nseq packed sequences, lens[s]).
 * hidden: NULL, or [layers + 1][T, C] receiving the input of block 0 and the
 * output of every block (HF output_hidden_states). Allocates its own scratch;
 * thread-safe on a const encoder; e->threads threads of its own. */
void mmp_tx_encoder_fwd(const mmp_tx_encoder *e, float *x, const int *lens, int nseq, float *hidden);

/* The inference forward of a causal encoder with a key/value cache
 * (generation): x[T, C] holds lens[s] new tokens of each of nseq sequences
 * (packed; lens[s] may be 0), which follow the past[s] tokens whose keys and
 * values are in the cache. kc, vc: [layers][nseq][maxlen][C], the keys and
 * values of row s of layer l at positions 0 .. past[s]-1 (the heads' columns
 * as q|k|v's k and v parts); the new tokens' are written at past[s] ..
 * past[s] + lens[s] - 1 (<= maxlen: the caller checks). Query i of sequence s
 * attends to positions j <= past[s] + i. The outputs are those of
 * mmp_tx_encoder_fwd over the whole sequences at the new tokens' positions
 * (tests/test_gpt2.c). e->threads threads, the same bits for any count. */
void mmp_tx_encoder_fwd_cached(const mmp_tx_encoder *e, float *x, const int *lens, int nseq, float *kc, float *vc,
                               const int *past, int maxlen);

/* ------------------------------------------------------ encoder training */

/* The gradients of one block's parameters (accumulated, +=; NULL = skipped),
 * the fields of mmp_tx_block. */
typedef struct {
    float *ln1_w, *ln1_b;
    float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b;
    float *o_w, *o_b;
    float *ln2_w, *ln2_b;
    float *fc1_w, *fc1_b;
    float *fc2_w, *fc2_b;
    float *ls1, *ls2;
    const struct mmp_tx_block_lora_grad *lora; /* the block's adapters' dA, dB (tx/lora.h); NULL: none */
} mmp_tx_block_grad;

/* Floats of the activations mmp_tx_encoder_fwd_save keeps for the backward
 * (per block: its input, the LayerNorm inputs/outputs with mean and rstd,
 * qkv, the attention probabilities, the context, the MLP's pre- and
 * post-activation, the branch outputs; per LoRA adapter (block.lora): its
 * low-rank activations u [T, r] and, with dropout, its mask [T, IC]; the
 * adapters' inputs are the linears' and are kept already). */
size_t mmp_tx_encoder_saved_size(const mmp_tx_encoder *e, const int *lens, int nseq);
/* mmp_tx_encoder_fwd (the same bits in x and hidden) keeping the activations
 * in saved [mmp_tx_encoder_saved_size floats]. LoRA adapters are added where
 * the inference forward adds them (the same bits without dropout); with
 * dropout (mmp_tx_lora.dropout > 0) each adapted linear's input is masked
 * by mmp_tx_lora_row_seed(e->lora_seed, e->layer0 + layer, slot, row) masks. On e->threads threads, with
 * the same bits for any count, as the backward: input gradients split by
 * rows, parameter gradients by output columns (each a sum over the tokens in
 * order), attention by (sequence, head). */
void mmp_tx_encoder_fwd_save(const mmp_tx_encoder *e, float *x, const int *lens, int nseq, float *hidden,
                             float *saved);
/* Backward through every block from the saved activations: dx [T, C] holds
 * d loss / d output on entry and d loss / d input on return (replaced, not
 * accumulated; through the adapters too); g: NULL or [layers] parameter
 * gradients, accumulated (NULL fields skipped: a frozen linear's dW GEMM is
 * not run; g[l].lora: the adapters' dA, dB). */
void mmp_tx_encoder_bwd(const mmp_tx_encoder *e, const float *saved, const int *lens, int nseq, float *dx,
                        const mmp_tx_block_grad *g);
/* Floats of mmp_tx_encoder_bwd's own scratch for these sequences (the
 * gradient buffers of one block's backward, reused block after block). */
size_t mmp_tx_encoder_bwd_size(const mmp_tx_encoder *e, const int *lens, int nseq);

#endif
