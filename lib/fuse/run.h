/* fuse/run.h: mmp-fuse's work: one fused vector per record from two
 * embeddings (two streams joined by record id, or two fields of one
 * stream), with a fixed, projected or learned fusion (fuse/fuse.h). */
#ifndef MMP_FUSE_RUN_H
#define MMP_FUSE_RUN_H
#include <stdint.h>

#include "fuse/fuse.h"
#include "mmp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    mmp_fuse_mode mode;
    const char *fa, *fb, *outf; /* input fields of a and b, output field */
    float wa, wb;               /* weighted */
    int l2;                     /* L2-normalize the inputs first */
    int project, orthogonal;    /* project > 0: seeded random projection to that size */
    uint64_t proj_seed;
    const char *checkpoint;     /* learned parameters (or NULL) */
    mmp_dtype odt;              /* MMP_F32 or MMP_F16 */
    int window, skip_missing;   /* join by id */
    int weights_given;          /* --weights was given (only for weighted) */
} mmp_fuse_opts;

/* The kind of learned parameters a mode takes (gated, attention, else proj). */
mmp_fusep_kind mmp_fuse_mode_params(mmp_fuse_mode m);
/* The options agree with each other (a checkpoint for the learned modes, a
 * projection only for the fixed ones ...). 0, or -1 with the message. */
int mmp_fuse_opts_check(const mmp_fuse_opts *o, char *err, size_t errlen);
/* mmp-fuse --init: freshly initialized parameters (seeded) for mode, saved
 * to path. 0 or -1. */
int mmp_fuse_params_create(mmp_fuse_mode mode, int da, int db, int d, int heads, uint64_t seed, const char *path, char *err,
                           size_t errlen);

typedef struct {
    mmp_fuse_opts o;
    const mmp_header *ha, *hb; /* the input headers (hb == ha for one stream) */
    const char *na, *nb;       /* their names */
    int single;                /* one stream, two fields */
    int da, db, ea, eb, D;     /* input sizes, sizes fed to the combination, output size */
    int learned;
    mmp_fuse_params P;
    char ck_sha[65];
    char *ck_prov[2];          /* the checkpoint's "provenance", "text_provenance" (or NULL) */
    float *Wa, *Wb;            /* random projections [project, da], [project, db] */
} mmp_fuser;

/* Sizes of the fields, the checkpoint (kind for o->mode, sizes, SHA-256) or
 * the random projections, the output size. hb/nb NULL: one stream.
 * 0, or -1 with the message ("CKPT: dimension mismatch: ..."). */
int mmp_fuser_open(mmp_fuser *f, const mmp_fuse_opts *o, const mmp_header *ha, const char *na, const mmp_header *hb, const char *nb,
                   char *err, size_t errlen);
/* The checkpoint's provenance check of side k (0 = a, 1 = b):
 * mmp_check_fuse_provenance's 0 / 1 (warning) / -1 (refused). */
int mmp_fuser_check_provenance(const mmp_fuser *f, int k, int allow_mixed, char *err, size_t errlen);
/* The output header (initialized here): a's meta and classes, b's meta where a
 * has none (differing values as "fuse.b.KEY"), the provenance of the fusion,
 * the output field. */
void mmp_fuser_header(const mmp_fuser *f, mmp_header *oh);
/* Fuses every record (pair) of ra (and rb) into w (not closed); adds the
 * skipped count to w's trailer and returns the join's skips in *join_skipped.
 * 0, or -1 with "FILE: record ...: ..." (w is then left unfinished). */
int mmp_fuser_run(mmp_fuser *f, mmp_reader *ra, mmp_reader *rb, mmp_writer *w, uint64_t *join_skipped, char *err, size_t errlen);
void mmp_fuser_free(mmp_fuser *f);

#ifdef __cplusplus
}
#endif
#endif
