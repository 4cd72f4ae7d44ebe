/* train/infer.c: applying a trained head (mmp-eval): logits, pair
 * projections, zero-shot class prompts, fusion heads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

void mmp_trainer_predict(mmp_trainer *tr, const float *x, int64_t N, float *logits) {
    mmp_head_forward(&tr->head, x, N, 0, NULL, logits);
}

void mmp_l2_normalize_rows(float *x, int64_t N, int64_t E) {
    for (int64_t i = 0; i < N; i++) {
        float *r = x + i * E;
        double s = 0;
        for (int64_t k = 0; k < E; k++) s += (double)r[k] * r[k];
        double d = sqrt(s);
        if (d < 1e-12) d = 1e-12;
        for (int64_t k = 0; k < E; k++) r[k] = (float)(r[k] / d);
    }
}

void mmp_trainer_infer(mmp_trainer *tr, float *x, const float *x2, int64_t N, const float *prompts,
                       int64_t C, float *logits, float *za, float *zb) {
    if (MMP_HEAD_IS_FUSE(tr->head.kind)) {
        if (!x2) mmp_die("the %s head needs both inputs", mmp_head_kind_name(tr->head.kind));
        mmp_trainer_infer_fuse(tr, x, x2, N, NULL, logits);
        return;
    }
    if (tr->mean) mmp_standardize_apply(x, N, tr->in_dim, tr->mean, tr->std);
    if (tr->head.kind != MMP_HEAD_PAIR) {
        mmp_head_forward(&tr->head, x, N, 0, NULL, logits);
        return;
    }
    int64_t E = tr->head.out_dim;
    mmp_head_pair_forward(&tr->head, x, x2, N, za, x2 ? zb : NULL);
    mmp_l2_normalize_rows(za, N, E);
    if (x2) mmp_l2_normalize_rows(zb, N, E);
    if (prompts) {
        double scale = tr->head.has_scale ? exp((double)tr->head.params[2].w[0]) : 1.0;
        for (int64_t k = 0; k < N; k++)
            for (int64_t c = 0; c < C; c++) {
                double s = 0;
                for (int64_t e = 0; e < E; e++) s += (double)za[k * E + e] * prompts[c * E + e];
                logits[k * C + c] = (float)(scale * s);
            }
    }
}

void mmp_trainer_infer_fuse(mmp_trainer *tr, const float *x, const float *x2, int64_t N, float *fused,
                            float *logits) {
    /* in blocks of mmp-fuse's batch: sgemm's rounding can depend on the row count */
    const int64_t R = MMP_TRAIN_FUSE_ROWS, F = tr->head.fuse_dim, C = tr->head.out_dim;
    for (int64_t s = 0; s < N; s += R) {
        int64_t m = N - s < R ? N - s : R;
        mmp_head_fuse_forward(&tr->head, x + s * tr->in_dim, x2 + s * tr->pair_dim, m, fused ? fused + s * F : NULL,
                              logits + s * C);
    }
}

int mmp_trainer_prompts(mmp_trainer *tr, const float *emb, const int64_t *labels, int64_t n, int64_t C,
                        float *out, char *err, size_t errlen) {
    int64_t E = tr->head.out_dim;
    float *proj = mmp_xmalloc(sizeof(float) * (size_t)(n * E));
    int64_t *cnt = mmp_xcalloc((size_t)(C > 0 ? C : 1), sizeof(int64_t));
    int ret = -1;
    mmp_head_pair_forward(&tr->head, NULL, emb, n, NULL, proj);
    mmp_l2_normalize_rows(proj, n, E);
    memset(out, 0, sizeof(float) * (size_t)(C * E));
    for (int64_t i = 0; i < n; i++) {
        int64_t c = labels ? labels[i] : i;
        if (c < 0 || c >= C) {
            mmp_errf(err, errlen, "prompt %lld: class %lld out of range (%lld classes)", (long long)i, (long long)c, (long long)C);
            goto out;
        }
        for (int64_t k = 0; k < E; k++) out[c * E + k] += proj[i * E + k];
        cnt[c]++;
    }
    for (int64_t c = 0; c < C; c++)
        if (!cnt[c]) {
            mmp_errf(err, errlen, "no prompt for class %lld", (long long)c);
            goto out;
        }
    mmp_l2_normalize_rows(out, C, E);
    ret = 0;
out:
    free(proj);
    free(cnt);
    return ret;
}
