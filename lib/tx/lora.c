/* tx/lora.c: the LoRA linear op pair (tx/lora.h). Two thin GEMMs per
 * adapted linear: u = (x .* mask) A^T [N, r], y += scale u B^T. */
#include "tx/lora.h"

#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "nn/gemm.h"
#include "rng.h"

/* x .* mask as a contiguous [N, IC] copy (NULL when there is no mask: x is read in place) */
static float *masked(const float *x, int ldx, const float *mask, int N, int IC) {
    if (!mask) return NULL;
    float *xm = mmp_xmalloc(((size_t)N * IC + 1) * sizeof *xm);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < IC; i++) xm[(size_t)n * IC + i] = x[(size_t)n * ldx + i] * mask[(size_t)n * IC + i];
    return xm;
}

void mmp_tx_lora_fwd(float *y, int ldy, float *u, const float *x, int ldx, const float *mask, const mmp_tx_lora *a,
                     int N) {
    if (N <= 0) return;
    const int r = a->r, IC = a->IC, OC = a->OC;
    float *xm = masked(x, ldx, mask, N, IC);
    const float *xin = xm ? xm : x;
    const int ld = xm ? IC : ldx;
    float *own = u ? NULL : mmp_xmalloc(((size_t)N * r + 1) * sizeof *own);
    if (!u) u = own;
    mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, N, r, IC, 1.0f, xin, ld, a->A, IC, 0.0f, u, r);
    mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, N, OC, r, a->scale, u, r, a->B, r, 1.0f, y, ldy);
    free(own);
    free(xm);
}

void mmp_tx_lora_bwd(float *dx, int ldx, float *dA, float *dB, const float *dy, int ldy, const float *x,
                     const float *mask, const float *u, const mmp_tx_lora *a, int N) {
    if (N <= 0) return;
    const int r = a->r, IC = a->IC, OC = a->OC;
    /* dB += scale dy^T u */
    if (dB) mmp_sgemm(MMP_GEMM_T, MMP_GEMM_N, OC, r, N, a->scale, dy, ldy, u, r, 1.0f, dB, r);
    if (!dA && !dx) return;
    /* du [N, r] = scale dy B */
    float *du = mmp_xmalloc(((size_t)N * r + 1) * sizeof *du);
    mmp_sgemm(MMP_GEMM_N, MMP_GEMM_N, N, r, OC, a->scale, dy, ldy, a->B, r, 0.0f, du, r);
    if (dA) {
        float *xm = masked(x, ldx, mask, N, IC);
        mmp_sgemm(MMP_GEMM_T, MMP_GEMM_N, r, IC, N, 1.0f, du, r, xm ? xm : x, xm ? IC : ldx, 1.0f, dA, IC);
        free(xm);
    }
    if (dx) {
        if (!mask) {
            mmp_sgemm(MMP_GEMM_N, MMP_GEMM_N, N, IC, r, 1.0f, du, r, a->A, IC, 1.0f, dx, ldx);
        } else {
            float *g = mmp_xmalloc(((size_t)N * IC + 1) * sizeof *g);
            mmp_sgemm(MMP_GEMM_N, MMP_GEMM_N, N, IC, r, 1.0f, du, r, a->A, IC, 0.0f, g, IC);
            for (int n = 0; n < N; n++)
                for (int i = 0; i < IC; i++)
                    dx[(size_t)n * ldx + i] += g[(size_t)n * IC + i] * mask[(size_t)n * IC + i];
            free(g);
        }
    }
    free(du);
}

void mmp_tx_lora_dropout_mask(float *mask, size_t n, float p, unsigned long long seed) {
    mmp_rng g;
    mmp_rng_seed(&g, (uint64_t)seed);
    const float keep = p > 0 ? 1.0f / (1.0f - p) : 1.0f;
    for (size_t i = 0; i < n; i++) mask[i] = p > 0 && mmp_rng_uniform53(&g) < (double)p ? 0.0f : keep;
}

void mmp_tx_lora_merge(float *W, const mmp_tx_lora *a) {
    /* W[OC, IC] += scale * B[OC, r] A[r, IC] */
    mmp_sgemm(MMP_GEMM_N, MMP_GEMM_N, a->OC, a->IC, a->r, a->scale, a->B, a->r, a->A, a->IC, 1.0f, W, a->IC);
}

unsigned long long mmp_tx_lora_row_seed(unsigned long long seed, int layer, int slot, int row) {
    uint64_t z = mmp_rng_mix((uint64_t)seed ^ 0x243F6A8885A308D3ULL);
    z = mmp_rng_mix(z ^ ((uint64_t)(uint32_t)layer << 32 | (uint64_t)(uint32_t)slot));
    return mmp_rng_mix(z ^ (uint64_t)(uint32_t)row);
}
