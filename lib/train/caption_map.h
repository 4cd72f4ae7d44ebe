/* train/caption_map.h: ClipCap's mapping networks (train/caption.h names
 * them): an image feature -> K prefix embeddings of width C.
 *
 *   MLP          clip_project.model.0 Linear(D', K*C/2), Tanh,
 *                clip_project.model.2 Linear(K*C/2, K*C); D' = D (pooled) or
 *                N*D (spatial features flattened)
 *   transformer  clip_project.linear: Linear(D, L*C) on a pooled feature (L = K)
 *                or Linear(D, C) on each of N spatial tokens (L = N);
 *                cat(x [L, C], prefix_const [K, C]) through ClipCap's
 *                Transformer(C, 8 heads, layers, mlp_ratio 2, ReLU, LayerNorm
 *                eps 1e-5, q/kv without bias), output = the last K tokens.
 * Parameters are mmp_params (train/optim.h) under those names, owned by the
 * mapper; the transformer runs on the engine's encoder (tx/tx.h): keys and
 * values are the two halves of to_keys_values [2C, C].
 *
 * Initialization (mmp_capmap_init_weights) follows torch's defaults in
 * distribution (Linear U(+-1/sqrt(fan_in)) for weight and bias, prefix_const
 * N(0, 1), LayerNorm 1 / 0), drawn from mmpipe's seeded generator. */
#ifndef MMP_TRAIN_CAPTION_MAP_H
#define MMP_TRAIN_CAPTION_MAP_H
#include <stddef.h>
#include <stdint.h>

#include "train/optim.h"
#include "tx/tx.h"

enum { MMP_CAPMAP_MLP = 0, MMP_CAPMAP_TRANSFORMER = 1 };
#define MMP_CAPMAP_HEADS 8

typedef struct {
    int kind;
    int K, C;
    int64_t D, N;  /* values per feature token, tokens (0: pooled) */
    int L;         /* transformer: tokens from the linear (K pooled, N spatial) */
    int layers;    /* transformer layers */
    int np;
    mmp_param *p;
    mmp_tx_encoder enc;
    mmp_tx_block_grad *bg;
    int threads;
    /* training buffers (the last training forward) */
    int cap;
    float *hid;    /* MLP: tanh output [B, K*C/2] */
    float *seq;    /* transformer: the encoder's input/output [B*(L+K), C] */
    float *saved;  /* the encoder's activations */
    size_t saved_cap;
    int *lens;
} mmp_capmap;

/* 0, or -1 with one line in err (sizes, C not a multiple of 8 heads). */
int mmp_capmap_init(mmp_capmap *m, int kind, int64_t D, int64_t N, int K, int C, int layers, char *err, size_t errlen);
void mmp_capmap_free(mmp_capmap *m);
void mmp_capmap_init_weights(mmp_capmap *m, uint64_t seed);
/* values per record's feature: N*D, or D */
int64_t mmp_capmap_in_size(const mmp_capmap *m);
const char *mmp_capmap_kind_name(int kind);
int mmp_capmap_kind_parse(const char *s, int *kind);
/* out [B][K][C] from x [B][in_size]; train: keep what the backward needs.
 * Inference is thread-safe on a const mapper (train = 0 allocates its own). */
void mmp_capmap_forward(mmp_capmap *m, const float *x, int B, int train, float *out);
void mmp_capmap_forward_const(const mmp_capmap *m, const float *x, int B, float *out);
/* Parameter gradients (overwritten) from dout [B][K][C] after the training
 * forward of the same x. */
void mmp_capmap_backward(mmp_capmap *m, const float *x, int B, const float *dout);

#endif
