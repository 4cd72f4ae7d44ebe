/* Fusion of two embeddings (image a, text b) into one vector.
 *
 * Fixed modes (no parameters):
 *   concat    h = [a'; b']                       (da + db)
 *   sum       h = a' + b'                        (da == db)
 *   weighted  h = wa a' + wb b'                  (da == db)
 * where x' = x, or x / max(||x||2, 1e-12) with --l2, then optionally x W^T (+ bias) with
 * a projection: a seeded random one (gaussian N(0, 1/d), or orthogonal rows) or a
 * learned one from a checkpoint (proj_a / proj_b).
 *
 * Learned modes (parameters from a safetensors checkpoint with PyTorch module names;
 * the PyTorch modules are in tests/fixtures/gen_fuse.py):
 *   gated:      pa = proj_a(a), pb = proj_b(b)                     (Linear da->d, db->d)
 *               g  = sigmoid(gate([a; b]))                         (Linear da+db -> d)
 *               h  = g * pa + (1 - g) * pb                         [d]
 *   attention:  X  = [proj_a(a); proj_b(b)]                        [2, d] (two tokens)
 *               Y  = MultiheadAttention(X, X, X)                   torch.nn.MultiheadAttention(d, heads,
 *                    (attn.in_proj_weight [3d,d], attn.in_proj_bias [3d],  batch_first=True),
 *                     attn.out_proj.weight [d,d], attn.out_proj.bias [d])  no mask, no dropout
 *               h  = (Y[0] + Y[1]) / 2                             [d]  (mean over the tokens)
 *   proj:       just proj_a / proj_b (a learned projection for concat/sum/weighted).
 * Checkpoint __metadata__: "fuse.mode" (gated|attention|proj), "fuse.heads" (attention).
 *
 * Every learned mode has a forward and a backward (gradients of the parameters and of
 * the inputs) for mmp-train-step; batches are rows: a [N, da], b [N, db], h [N, d].
 * No hidden global state. */
#ifndef MMP_FUSE_FUSE_H
#define MMP_FUSE_FUSE_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { MMP_FUSE_CONCAT = 0, MMP_FUSE_SUM, MMP_FUSE_WEIGHTED, MMP_FUSE_GATED, MMP_FUSE_ATTENTION } mmp_fuse_mode;
/* "concat", "sum", ... ; parse returns -1 when unknown */
const char *mmp_fuse_mode_name(mmp_fuse_mode m);
int mmp_fuse_mode_parse(const char *s, mmp_fuse_mode *m);

/* ---- fixed operations ---- */
/* x[n] /= max(||x||2, 1e-12) (torch.nn.functional.normalize) */
void mmp_fuse_l2(float *x, int n);
/* h = concat / sum / weighted of a[da], b[db] (sum/weighted need da == db); h has
 * da+db (concat) or da entries. */
void mmp_fuse_fixed(mmp_fuse_mode m, const float *a, int da, const float *b, int db, float wa, float wb, float *h);
/* Seeded random projection W [out, in] (row-major, Linear layout):
 * orthogonal = 0: W_ij ~ N(0, 1/out) (Johnson-Lindenstrauss; E||Wx||^2 = ||x||^2);
 * orthogonal = 1: rows orthonormal (Gram-Schmidt of gaussian rows; needs out <= in).
 * The same (out, in, seed, orthogonal) gives the same bits on every machine. 0 ok, -1 bad sizes. */
int mmp_fuse_random_projection(float *W, int out, int in, uint64_t seed, int orthogonal);

/* ---- learned parameters ---- */
typedef enum { MMP_FUSEP_PROJ = 0, MMP_FUSEP_GATED, MMP_FUSEP_ATTENTION } mmp_fusep_kind;

typedef struct {
    mmp_fusep_kind kind;
    int da, db, d, heads;
    float *wa, *ba; /* proj_a.weight [d, da], proj_a.bias [d] */
    float *wb, *bb; /* proj_b.weight [d, db], proj_b.bias [d] */
    float *wg, *bg; /* gate.weight [d, da+db], gate.bias [d]            (gated) */
    float *win, *bin; /* attn.in_proj_weight [3d, d], attn.in_proj_bias [3d] (attention) */
    float *wo, *bo;   /* attn.out_proj.weight [d, d], attn.out_proj.bias [d] (attention) */
} mmp_fuse_params;

/* Zeroed parameters of a kind and size (heads only for attention; d % heads == 0). */
int mmp_fuse_params_alloc(mmp_fuse_params *p, mmp_fusep_kind kind, int da, int db, int d, int heads,
                          char *err, size_t errlen);
void mmp_fuse_params_free(mmp_fuse_params *p);
/* PyTorch's default initialization, with a seeded generator: Linear weight and bias
 * U(-1/sqrt(in), 1/sqrt(in)); MultiheadAttention in_proj xavier_uniform, biases 0,
 * out_proj weight U(-1/sqrt(d), 1/sqrt(d)). */
void mmp_fuse_params_init(mmp_fuse_params *p, uint64_t seed);
/* The parameter tensors in a fixed order: name (PyTorch), data, ndim, shape. Returns the count
 * (<= 8); with names == NULL only counts. Lets an optimizer walk them. */
int mmp_fuse_params_tensors(const mmp_fuse_params *p, const char **names, float **data, int *ndim,
                            int64_t (*shape)[2]);
/* Reads a checkpoint (kind from "fuse.mode" metadata, else from the tensor names; sizes
 * from shapes; heads from "fuse.heads"). 0 ok, -1 error (err names the file and tensor). */
int mmp_fuse_params_load(mmp_fuse_params *p, const char *path, char *err, size_t errlen);
/* Writes atomically (mmp_st_writer) with the metadata above. */
int mmp_fuse_params_save(const mmp_fuse_params *p, const char *path, char *err, size_t errlen);
const char *mmp_fusep_kind_name(mmp_fusep_kind k);
/* output size: d, or (proj) d for each input */
int mmp_fuse_params_out_dim(const mmp_fuse_params *p);

/* Floats of cache forward needs to keep for backward, for N rows. */
size_t mmp_fuse_cache_size(const mmp_fuse_params *p, int N);
/* Forward. gated / attention: a [N, da], b [N, db] -> h [N, d].
 * proj: h = [proj_a(a) | proj_b(b)] [N, 2d] (the caller then sums/concats).
 * cache: NULL, or mmp_fuse_cache_size floats kept for backward. */
void mmp_fuse_forward(const mmp_fuse_params *p, int N, const float *a, const float *b, float *h, float *cache);
/* Backward from dh (same shape as h): adds the parameter gradients into g (same kind
 * and sizes as p, zero it first for a fresh step), and writes the input gradients
 * da [N, da], db [N, db] (either may be NULL). cache from the forward of the same rows. */
void mmp_fuse_backward(const mmp_fuse_params *p, int N, const float *a, const float *b, const float *cache,
                       const float *dh, mmp_fuse_params *g, float *da, float *db);

#ifdef __cplusplus
}
#endif
#endif
