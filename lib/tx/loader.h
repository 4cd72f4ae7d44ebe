/* tx/loader.h: what the ViT/CLIP loaders share (internal to tx/model.c,
 * tx/vit.c, tx/clip.c). Errors are sticky: the first one is kept in err and
 * every later getter returns NULL, so a loader checks l->failed once at the end. */
#ifndef MMP_TX_LOADER_H
#define MMP_TX_LOADER_H
#include "json.h"
#include "mmp.h"
#include "tx/model.h"

typedef struct mmp_tx_loader {
    mmp_tx_model *m;
    mmp_safetensors *st;
    const char *path; /* the weights */
    json_t *cfg;      /* config.json beside them, or NULL */
    char *cfg_path;
    json_t *oc;       /* open_clip_config.json, or NULL */
    char *oc_path;
    json_t *pp;       /* preprocessor_config.json, or NULL */
    char *pp_path;
    char *err;
    size_t errlen;
    int failed;
    unsigned char *used; /* per safetensors entry: read by a getter */
    int finetuned;       /* an mmp-train-step --head transformer checkpoint (configs from its backbone) */
    char name[512];
} mmp_tx_loader;

/* Formats a tensor name into l->name (returned). */
const char *txl_name(mmp_tx_loader *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const mmp_tensor *txl_tensor(mmp_tx_loader *l, const char *name);
int txl_has(mmp_tx_loader *l, const char *name);
/* Tensor NAME as floats with exactly this shape (ndim dims, then the sizes):
 * a pointer into the mapping for aligned F32 data, else an owned converted
 * copy. NULL (and l->failed) when missing or of another shape or dtype. */
const float *txl_get(mmp_tx_loader *l, const char *name, int ndim, ...);
/* The same, but NULL without an error when NAME is absent. */
const float *txl_opt(mmp_tx_loader *l, const char *name, int ndim, ...);
/* Dimension d of NAME (negative d from the end); -1 with an error when absent or too few dims. */
int64_t txl_dim(mmp_tx_loader *l, const char *name, int d);
/* Number of i for which the name printf(fmt, i) exists (0, 1, ... consecutively). */
int txl_count(mmp_tx_loader *l, const char *fmt);
/* Fails naming the first tensor no getter has read (a variant of the
 * architecture the loader does not know), buffers such as position_ids aside. */
int txl_check_unused(mmp_tx_loader *l);
/* An owned zeroed buffer of n floats. */
float *txl_alloc(mmp_tx_loader *l, size_t n);
/* [R, K] -> owned [K, R] */
const float *txl_transpose(mmp_tx_loader *l, const float *a, int R, int K);
/* Sets the error (if none yet); returns -1. */
int txl_fail(mmp_tx_loader *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Config values: obj may be NULL (absent). file names the config file in messages.
 * *out is left alone when the key is absent; when want >= 0 and the value
 * differs, that is an error ("FILE: KEY is 64 but the weights have 48"). */
int txl_cfg_int(mmp_tx_loader *l, const char *file, const json_t *obj, const char *key, int want, int *out);
int txl_cfg_num(mmp_tx_loader *l, const char *file, const json_t *obj, const char *key, double *out);
int txl_cfg_bool(mmp_tx_loader *l, const char *file, const json_t *obj, const char *key, int *out);
/* A string value (pointing into obj), or NULL. */
const char *txl_cfg_str(mmp_tx_loader *l, const char *file, const json_t *obj, const char *key);
/* "gelu", "quick_gelu", ... -> act; -1 with an error when unknown. */
int txl_act(mmp_tx_loader *l, const char *file, const char *name, mmp_tx_act *out);

/* Heads of an image tower when no config says: 64-wide heads, except the
 * widths of ViT-H/g/bigG (16 heads). */
int txl_default_heads(int C);

#endif
