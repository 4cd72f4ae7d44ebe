/* train/cnn_tail.c: layers and the trainable MobileNetV2 tail (see cnn_tail.h). */
#include "train/cnn_tail.h"
#include "train/bn_mt.h"

#include "nn/gemm.h"
#include "rng.h"
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* layers                                                              */
/* ------------------------------------------------------------------ */

/* z[M,O] = x[M,I] @ W[O,I]^T */
void mmp_pw_conv_forward(const float *x, int64_t M, int64_t Ci, const float *W, int64_t O, float *z) {
    if (M <= 0) return;
    mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, (int)M, (int)O, (int)Ci, 1.0f, x, (int)Ci, W, (int)Ci, 0.0f,
                z, (int)O);
}

/* dW[O,I] = dz[M,O]^T @ x[M,I];  dx[M,I] = dz[M,O] @ W[O,I] */
void mmp_pw_conv_backward(const float *x, const float *dz, int64_t M, int64_t Ci, const float *W,
                          int64_t O, float *dx, float *dW) {
    if (M <= 0) {
        if (dW) memset(dW, 0, sizeof(float) * (size_t)(O * Ci));
        return;
    }
    if (dW)
        mmp_sgemm(MMP_GEMM_T, MMP_GEMM_N, (int)O, (int)Ci, (int)M, 1.0f, dz, (int)O, x, (int)Ci, 0.0f,
                    dW, (int)Ci);
    if (dx)
        mmp_sgemm(MMP_GEMM_N, MMP_GEMM_N, (int)M, (int)Ci, (int)O, 1.0f, dz, (int)O, W, (int)Ci,
                    0.0f, dx, (int)Ci);
}

/* w [C,9] -> wt [9,C] */
static float *dw_transpose(const float *w, int64_t C) {
    float *wt = mmp_xmalloc(sizeof(float) * (size_t)(9 * C));
    for (int64_t c = 0; c < C; c++)
        for (int k = 0; k < 9; k++) wt[k * C + c] = w[c * 9 + k];
    return wt;
}

/* the taps of output pixel (n, oh, ow) of a 3x3 pad-1 depthwise conv that
 * fall inside the input: pix[t] = the input pixel (n*H + ih)*W + iw, k[t] =
 * kh*3 + kw, in kh-then-kw order; returns their count */
static int dw_taps(int64_t n, int64_t oh, int64_t ow, int64_t H, int64_t W, int stride, int64_t pix[9], int k[9]) {
    int nt = 0;
    for (int kh = 0; kh < 3; kh++) {
        int64_t ih = oh * stride - 1 + kh;
        if (ih < 0 || ih >= H) continue;
        for (int kw = 0; kw < 3; kw++) {
            int64_t iw = ow * stride - 1 + kw;
            if (iw < 0 || iw >= W) continue;
            pix[nt] = (n * H + ih) * W + iw;
            k[nt++] = kh * 3 + kw;
        }
    }
    return nt;
}

/* x[N,H,W,C] * w[C,1,3,3] (pad 1, stride s) -> z[N,Ho,Wo,C] */
void mmp_dw_conv_forward(const float *x, int64_t N, int64_t H, int64_t W, int64_t C, const float *w,
                         int stride, float *z) {
    int64_t Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1;
    float *wt = dw_transpose(w, C);
    for (int64_t n = 0; n < N; n++)
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++) {
                float *o = z + ((n * Ho + oh) * Wo + ow) * C;
                memset(o, 0, sizeof(float) * (size_t)C);
                int64_t pix[9];
                int k[9], nt = dw_taps(n, oh, ow, H, W, stride, pix, k);
                for (int t = 0; t < nt; t++) {
                    const float *xi = x + pix[t] * C, *wk = wt + k[t] * C;
                    for (int64_t c = 0; c < C; c++) o[c] += xi[c] * wk[c];
                }
            }
    free(wt);
}

/* dw[C,9] = sum dz * x (shifted); dx[N,H,W,C] = sum dz * w (scattered) */
void mmp_dw_conv_backward(const float *x, const float *dz, int64_t N, int64_t H, int64_t W, int64_t C,
                          const float *w, int stride, float *dx, float *dw) {
    int64_t Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1;
    float *wt = dw_transpose(w, C);
    double *acc = mmp_xcalloc((size_t)(9 * C), sizeof(double)); /* [9,C] */
    if (dx) memset(dx, 0, sizeof(float) * (size_t)(N * H * W * C));
    for (int64_t n = 0; n < N; n++)
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++) {
                const float *g = dz + ((n * Ho + oh) * Wo + ow) * C;
                int64_t pix[9];
                int k[9], nt = dw_taps(n, oh, ow, H, W, stride, pix, k);
                for (int t = 0; t < nt; t++) {
                    const float *xi = x + pix[t] * C, *wk = wt + k[t] * C;
                    double *a = acc + k[t] * C;
                    if (dw)
                        for (int64_t c = 0; c < C; c++) a[c] += (double)g[c] * xi[c];
                    if (dx) {
                        float *di = dx + pix[t] * C;
                        for (int64_t c = 0; c < C; c++) di[c] += g[c] * wk[c];
                    }
                }
            }
    if (dw)
        for (int64_t c = 0; c < C; c++)
            for (int k = 0; k < 9; k++) dw[c * 9 + k] = (float)acc[k * C + c];
    free(acc);
    free(wt);
}

/* ---- dense KxK convolution: im2col + sgemm over chunks of images ---- */

/* w [O,Ci,K,K] -> wt [O, K*K*Ci] ((kh,kw,ci) order, matching the im2col columns) */
void mmp_conv2d_pack(const float *w, int64_t O, int64_t Ci, int K, float *wt) {
    int64_t KK = (int64_t)K * K;
    for (int64_t o = 0; o < O; o++) {
        const float *wo = w + o * Ci * KK;
        float *to = wt + o * KK * Ci;
        if (KK == 1) memcpy(to, wo, sizeof(float) * (size_t)Ci);
        else
            for (int64_t k = 0; k < KK; k++) /* contiguous stores, strided loads */
                for (int64_t c = 0; c < Ci; c++) to[k * Ci + c] = wo[c * KK + k];
    }
}

void mmp_conv_ws_free(mmp_conv_ws *ws) {
    free(ws->col);
    free(ws->dwt);
    memset(ws, 0, sizeof *ws);
}

static float *ws_get(float **buf, size_t *cap, size_t n) {
    if (n > *cap) {
        free(*buf);
        *buf = mmp_xmalloc(sizeof(float) * n);
        *cap = n;
    }
    return *buf;
}

/* one image x[H,W,Ci] -> col[Ho*Wo, K*K*Ci] (zero padding) */
static void im2col(const float *x, int64_t H, int64_t W, int64_t Ci, int K, int s, int64_t Ho, int64_t Wo, float *col) {
    int p = K / 2;
    for (int64_t oh = 0; oh < Ho; oh++)
        for (int64_t ow = 0; ow < Wo; ow++) {
            float *c = col + (oh * Wo + ow) * K * K * Ci;
            for (int kh = 0; kh < K; kh++) {
                int64_t ih = oh * s - p + kh;
                for (int kw = 0; kw < K; kw++, c += Ci) {
                    int64_t iw = ow * s - p + kw;
                    if (ih < 0 || ih >= H || iw < 0 || iw >= W) memset(c, 0, sizeof(float) * (size_t)Ci);
                    else memcpy(c, x + (ih * W + iw) * Ci, sizeof(float) * (size_t)Ci);
                }
            }
        }
}

/* dx[H,W,Ci] += col2im(dcol[Ho*Wo, K*K*Ci]) (dx zeroed by the caller) */
static void col2im(const float *col, int64_t H, int64_t W, int64_t Ci, int K, int s, int64_t Ho, int64_t Wo, float *dx) {
    int p = K / 2;
    for (int64_t oh = 0; oh < Ho; oh++)
        for (int64_t ow = 0; ow < Wo; ow++) {
            const float *c = col + (oh * Wo + ow) * K * K * Ci;
            for (int kh = 0; kh < K; kh++) {
                int64_t ih = oh * s - p + kh;
                for (int kw = 0; kw < K; kw++, c += Ci) {
                    int64_t iw = ow * s - p + kw;
                    if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                    float *d = dx + (ih * W + iw) * Ci;
                    for (int64_t e = 0; e < Ci; e++) d[e] += c[e];
                }
            }
        }
}

/* images per im2col + sgemm call: whole slices of small images (one sgemm of
 * many rows), at most ~4M floats of columns */
static int64_t conv_chunk(int64_t N, int64_t P, int64_t KC) {
    int64_t c = ((int64_t)1 << 22) / (P * KC > 0 ? P * KC : 1);
    return c < 1 ? 1 : c > N ? N : c;
}

void mmp_conv2d_forward_ws(const float *x, int64_t N, int64_t H, int64_t W, int64_t Ci, const float *wt,
                           int64_t O, int K, int stride, float *z, mmp_conv_ws *ws) {
    int64_t Ho = (H + 2 * (K / 2) - K) / stride + 1, Wo = (W + 2 * (K / 2) - K) / stride + 1, P = Ho * Wo;
    int64_t KC = (int64_t)K * K * Ci, B = conv_chunk(N, P, KC);
    if (N <= 0) return;
    float *col = ws_get(&ws->col, &ws->ncol, (size_t)(B * P * KC));
    for (int64_t n0 = 0; n0 < N; n0 += B) {
        int64_t nb = N - n0 < B ? N - n0 : B;
        for (int64_t n = 0; n < nb; n++) im2col(x + (n0 + n) * H * W * Ci, H, W, Ci, K, stride, Ho, Wo, col + n * P * KC);
        mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, (int)(nb * P), (int)O, (int)KC, 1.0f, col, (int)KC, wt, (int)KC,
                    0.0f, z + n0 * P * O, (int)O);
    }
}

void mmp_conv2d_backward_ws(const float *x, const float *dz, int64_t N, int64_t H, int64_t W, int64_t Ci,
                            const float *wt, int64_t O, int K, int stride, float *dx, float *dw, mmp_conv_ws *ws) {
    int64_t Ho = (H + 2 * (K / 2) - K) / stride + 1, Wo = (W + 2 * (K / 2) - K) / stride + 1, P = Ho * Wo;
    int64_t KC = (int64_t)K * K * Ci, KK = (int64_t)K * K, B = conv_chunk(N, P, KC);
    float *col = ws_get(&ws->col, &ws->ncol, (size_t)(B * P * KC)), *dwt = NULL;
    if (dw) {
        dwt = ws_get(&ws->dwt, &ws->ndwt, (size_t)(O * KC));
        memset(dwt, 0, sizeof(float) * (size_t)(O * KC));
    }
    if (dx) memset(dx, 0, sizeof(float) * (size_t)(N * H * W * Ci));
    for (int64_t n0 = 0; n0 < N; n0 += B) {
        int64_t nb = N - n0 < B ? N - n0 : B;
        const float *g = dz + n0 * P * O;
        if (dw) {
            for (int64_t n = 0; n < nb; n++) im2col(x + (n0 + n) * H * W * Ci, H, W, Ci, K, stride, Ho, Wo, col + n * P * KC);
            mmp_sgemm(MMP_GEMM_T, MMP_GEMM_N, (int)O, (int)KC, (int)(nb * P), 1.0f, g, (int)O, col, (int)KC,
                        1.0f, dwt, (int)KC);
        }
        if (dx) {
            mmp_sgemm(MMP_GEMM_N, MMP_GEMM_N, (int)(nb * P), (int)KC, (int)O, 1.0f, g, (int)O, wt, (int)KC,
                        0.0f, col, (int)KC);
            for (int64_t n = 0; n < nb; n++)
                col2im(col + n * P * KC, H, W, Ci, K, stride, Ho, Wo, dx + (n0 + n) * H * W * Ci);
        }
    }
    if (dw)
        for (int64_t o = 0; o < O; o++) {
            const float *so = dwt + o * KC;
            float *d = dw + o * KC;
            if (KK == 1) memcpy(d, so, sizeof(float) * (size_t)Ci);
            else
                for (int64_t c = 0; c < Ci; c++) /* contiguous stores, strided loads */
                    for (int64_t k = 0; k < KK; k++) d[c * KK + k] = so[k * Ci + c];
        }
}

void mmp_conv2d_forward(const float *x, int64_t N, int64_t H, int64_t W, int64_t Ci, const float *w, int64_t O,
                        int K, int stride, float *z) {
    if (N <= 0) return;
    mmp_conv_ws ws = {0};
    float *wt = mmp_xmalloc(sizeof(float) * (size_t)(O * K * K * Ci));
    mmp_conv2d_pack(w, O, Ci, K, wt);
    mmp_conv2d_forward_ws(x, N, H, W, Ci, wt, O, K, stride, z, &ws);
    mmp_conv_ws_free(&ws);
    free(wt);
}

void mmp_conv2d_backward(const float *x, const float *dz, int64_t N, int64_t H, int64_t W, int64_t Ci,
                         const float *w, int64_t O, int K, int stride, float *dx, float *dw) {
    mmp_conv_ws ws = {0};
    float *wt = mmp_xmalloc(sizeof(float) * (size_t)(O * K * K * Ci));
    mmp_conv2d_pack(w, O, Ci, K, wt);
    mmp_conv2d_backward_ws(x, dz, N, H, W, Ci, wt, O, K, stride, dx, dw, &ws);
    mmp_conv_ws_free(&ws);
    free(wt);
}

/* y[M,C] = x*alpha + beta, alpha = w/sqrt(var+eps), beta = b - mean*alpha (torch's eval path) */
void mmp_bn_eval_forward(const float *x, int64_t M, int64_t C, const float *weight, const float *bias,
                         const float *mean, const float *var, float *y) {
    float *al = mmp_xmalloc(sizeof(float) * (size_t)(2 * C)), *be = al + C;
    for (int64_t c = 0; c < C; c++) {
        float invstd = 1.0f / sqrtf(var[c] + MMP_BN_EPS);
        al[c] = invstd * weight[c];
        be[c] = bias[c] - mean[c] * al[c];
    }
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * C;
        float *yr = y + m * C;
        for (int64_t c = 0; c < C; c++) yr[c] = xr[c] * al[c] + be[c];
    }
    free(al);
}

void mmp_bn_eval_backward(const float *x, const float *dy, int64_t M, int64_t C, const float *weight,
                          const float *mean, const float *var, float *dx, float *dweight, float *dbias) {
    double *sg = mmp_xcalloc((size_t)(2 * C), sizeof(double)), *sd = sg + C;
    float *invstd = mmp_xmalloc(sizeof(float) * (size_t)C);
    for (int64_t c = 0; c < C; c++) invstd[c] = 1.0f / sqrtf(var[c] + MMP_BN_EPS);
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * C, *gr = dy + m * C;
        for (int64_t c = 0; c < C; c++) {
            sg[c] += gr[c];
            sd[c] += (double)gr[c] * ((double)xr[c] - mean[c]);
        }
    }
    if (dweight)
        for (int64_t c = 0; c < C; c++) dweight[c] = (float)(sd[c] * invstd[c]);
    if (dbias)
        for (int64_t c = 0; c < C; c++) dbias[c] = (float)sg[c];
    if (dx) {
        for (int64_t c = 0; c < C; c++) invstd[c] *= weight[c];
        for (int64_t m = 0; m < M; m++) {
            const float *gr = dy + m * C;
            float *dr = dx + m * C;
            for (int64_t c = 0; c < C; c++) dr[c] = gr[c] * invstd[c];
        }
    }
    free(sg);
    free(invstd);
}

void mmp_bn_train_forward(const float *x, int64_t M, int64_t C, const float *weight, const float *bias, float momentum,
                          float *rmean, float *rvar, float *mean, float *invstd, float *y) {
    double *s = mmp_xcalloc((size_t)(2 * C), sizeof(double)), *q = s + C;
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * C;
        for (int64_t c = 0; c < C; c++) s[c] += xr[c];
    }
    for (int64_t c = 0; c < C; c++) s[c] = M > 0 ? s[c] / (double)M : 0;
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * C;
        for (int64_t c = 0; c < C; c++) {
            double d = (double)xr[c] - s[c];
            q[c] += d * d;
        }
    }
    for (int64_t c = 0; c < C; c++) {
        double var = M > 0 ? q[c] / (double)M : 0;
        mean[c] = (float)s[c];
        invstd[c] = (float)(1.0 / sqrt(var + (double)MMP_BN_EPS));
        if (rmean) rmean[c] = (1 - momentum) * rmean[c] + momentum * (float)s[c];
        if (rvar) rvar[c] = (1 - momentum) * rvar[c] + momentum * (float)(M > 1 ? q[c] / (double)(M - 1) : var);
    }
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * C;
        float *yr = y + m * C;
        for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - mean[c]) * invstd[c] * weight[c] + bias[c];
    }
    free(s);
}

void mmp_bn_train_backward(const float *x, const float *dy, int64_t M, int64_t C, const float *weight,
                           const float *mean, const float *invstd, float *dx, float *dweight, float *dbias) {
    double *sg = mmp_xcalloc((size_t)(2 * C), sizeof(double)), *sd = sg + C;
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * C, *gr = dy + m * C;
        for (int64_t c = 0; c < C; c++) {
            sg[c] += gr[c];
            sd[c] += (double)gr[c] * ((double)xr[c] - mean[c]);
        }
    }
    if (dweight)
        for (int64_t c = 0; c < C; c++) dweight[c] = (float)(sd[c] * invstd[c]);
    if (dbias)
        for (int64_t c = 0; c < C; c++) dbias[c] = (float)sg[c];
    if (dx && M > 0) {
        /* dx = (dy - mean(dy) - (x-mean) * k) * invstd*weight, k = invstd^2 * sum(dy*(x-mean)) / M */
        float *gm = mmp_xmalloc(sizeof(float) * (size_t)(3 * C)), *k = gm + C, *sc = k + C;
        for (int64_t c = 0; c < C; c++) {
            gm[c] = (float)(sg[c] / (double)M);
            k[c] = (float)(sd[c] / (double)M * (double)invstd[c] * (double)invstd[c]);
            sc[c] = invstd[c] * weight[c];
        }
        for (int64_t m = 0; m < M; m++) {
            const float *xr = x + m * C, *gr = dy + m * C;
            float *dr = dx + m * C;
            for (int64_t c = 0; c < C; c++) dr[c] = (gr[c] - gm[c] - (xr[c] - mean[c]) * k[c]) * sc[c];
        }
        free(gm);
    }
    free(sg);
}

/* the first maximum of the 3x3 stride-2 pad-1 window of output (oh, ow),
 * channel c, in (kh, kw) order (NaN wins): its input pixel index, -1 if none */
static int64_t maxpool_arg(const float *x, int64_t H, int64_t W, int64_t C, int64_t oh, int64_t ow, int64_t c) {
    int64_t best = -1;
    float mv = -INFINITY;
    for (int kh = 0; kh < 3; kh++) {
        int64_t ih = oh * 2 - 1 + kh;
        if (ih < 0 || ih >= H) continue;
        for (int kw = 0; kw < 3; kw++) {
            int64_t iw = ow * 2 - 1 + kw;
            if (iw < 0 || iw >= W) continue;
            float v = x[(ih * W + iw) * C + c];
            if (best < 0 || v > mv || isnan(v)) {
                mv = v;
                best = ih * W + iw;
                if (isnan(v)) return best;
            }
        }
    }
    return best;
}

void mmp_maxpool3s2_forward(const float *x, int64_t N, int64_t H, int64_t W, int64_t C, float *y) {
    int64_t Ho = (H - 1) / 2 + 1, Wo = (W - 1) / 2 + 1;
    for (int64_t n = 0; n < N; n++) {
        const float *xn = x + n * H * W * C;
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++) {
                float *o = y + ((n * Ho + oh) * Wo + ow) * C;
                for (int64_t c = 0; c < C; c++) o[c] = xn[maxpool_arg(xn, H, W, C, oh, ow, c) * C + c];
            }
    }
}

void mmp_maxpool3s2_backward(const float *x, const float *dy, int64_t N, int64_t H, int64_t W, int64_t C, float *dx) {
    int64_t Ho = (H - 1) / 2 + 1, Wo = (W - 1) / 2 + 1;
    memset(dx, 0, sizeof(float) * (size_t)(N * H * W * C));
    for (int64_t n = 0; n < N; n++) {
        const float *xn = x + n * H * W * C;
        float *dn = dx + n * H * W * C;
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++) {
                const float *g = dy + ((n * Ho + oh) * Wo + ow) * C;
                for (int64_t c = 0; c < C; c++) dn[maxpool_arg(xn, H, W, C, oh, ow, c) * C + c] += g[c];
            }
    }
}

void mmp_relu6_forward(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] < 0 ? 0 : x[i] > 6 ? 6 : x[i];
}

void mmp_relu6_backward(const float *y, float *dx, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(y[i] > 0 && y[i] < 6)) dx[i] = 0;
}

void mmp_avgpool_forward(const float *x, int64_t N, int64_t HW, int64_t C, float *p) {
    for (int64_t n = 0; n < N; n++) {
        float *pr = p + n * C;
        memset(pr, 0, sizeof(float) * (size_t)C);
        for (int64_t s = 0; s < HW; s++) {
            const float *xr = x + (n * HW + s) * C;
            for (int64_t c = 0; c < C; c++) pr[c] += xr[c];
        }
        for (int64_t c = 0; c < C; c++) pr[c] /= (float)HW;
    }
}

void mmp_avgpool_backward(const float *dp, int64_t N, int64_t HW, int64_t C, float *dx) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t s = 0; s < HW; s++) {
            float *dr = dx + (n * HW + s) * C;
            for (int64_t c = 0; c < C; c++) dr[c] = dp[n * C + c] / (float)HW;
        }
}

void mmp_nchw_to_nhwc(const float *x, int64_t N, int64_t C, int64_t HW, float *y) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t s = 0; s < HW; s++) y[(n * HW + s) * C + c] = x[(n * C + c) * HW + s];
}

void mmp_nhwc_to_nchw(const float *x, int64_t N, int64_t C, int64_t HW, float *y) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t s = 0; s < HW; s++) y[(n * C + c) * HW + s] = x[(n * HW + s) * C + c];
}

/* ------------------------------------------------------------------ */
/* the tail                                                            */
/* ------------------------------------------------------------------ */

int mmp_mnv2_block_stride(int i) { return i == 2 || i == 4 || i == 7 || i == 14 ? 2 : 1; }

int64_t mmp_mnv2_spatial(int64_t s, int k) {
    s = (s - 1) / 2 + 1; /* features.0 */
    for (int i = 1; i <= k && i <= 17; i++) s = (s - 1) / mmp_mnv2_block_stride(i) + 1;
    return s;
}

static int is_float(mmp_dtype t) { return t == MMP_F32 || t == MMP_F16 || t == MMP_BF16; }

static const mmp_tensor *tget(const mmp_safetensors *st, const char *fmt, int i) {
    char name[96];
    snprintf(name, sizeof name, fmt, i);
    const mmp_tensor *t = mmp_st_get(st, name);
    return t && is_float(t->dtype) ? t : NULL;
}

int64_t mmp_tail_first_cin(const mmp_safetensors *src, int first) {
    if (first == 0) { /* the stem features.0.0: 3x3 conv [32, 3, 3, 3] */
        const mmp_tensor *s0 = tget(src, "features.%d.0.weight", 0);
        return s0 && s0->ndim == 4 && s0->shape[2] == 3 && s0->shape[3] == 3 ? s0->shape[1] : 0;
    }
    const mmp_tensor *t = tget(src, "features.%d.conv.0.0.weight", first);
    if (t && t->ndim == 4) {
        if (t->shape[1] != 1) return t->shape[1]; /* expand [hid,cin,1,1] */
        return t->shape[0];                       /* depthwise first: cin = hid */
    }
    t = tget(src, "features.%d.0.weight", first);
    if (t && t->ndim == 4 && t->shape[2] == 1) return t->shape[1];
    return 0;
}

static int add_param(mmp_cnn_tail *t, int *cap, const char *name, int ndim, const int64_t *shape) {
    if (t->np == *cap) t->params = mmp_xrealloc(t->params, sizeof(mmp_param) * (size_t)(*cap = *cap ? *cap * 2 : 32));
    mmp_param_init(&t->params[t->np], name, ndim, shape, 1);
    return t->np++;
}

int mmp_tail_add_unit(mmp_cnn_tail *t, int *cap, const mmp_safetensors *src, int kind, int ksize, const char *wname,
                      const char *bn, int64_t cin, int64_t cout, int stride, int act, int in, int skip, int64_t H,
                      int64_t W, char *err, size_t errlen) {
    if (t->nu >= MMP_TAIL_MAX_UNITS) return mmp_errf(err, errlen, "too many layers");
    mmp_tail_unit *u = &t->u[t->nu];
    memset(u, 0, sizeof *u);
    u->kind = kind;
    u->ksize = kind == MMP_TAIL_CONV ? ksize : kind == MMP_TAIL_DW ? 3 : 1;
    u->cin = cin;
    u->cout = cout;
    u->stride = kind == MMP_TAIL_PW ? 1 : stride;
    u->act = act;
    u->in = in;
    u->skip = skip;
    u->H = H;
    u->W = W;
    int K = u->ksize;
    u->Ho = (H + 2 * (K / 2) - K) / u->stride + 1;
    u->Wo = (W + 2 * (K / 2) - K) / u->stride + 1;
    snprintf(u->bn, sizeof u->bn, "%s", bn);
    int64_t ws[4] = {cout, kind == MMP_TAIL_DW ? 1 : cin, K, K};
    char name[96];
    u->pw = add_param(t, cap, wname, 4, ws);
    if (mmp_st_read_f32(src, wname, 4, ws, t->params[u->pw].w, err, errlen)) return -1;
    int64_t cs[1] = {cout};
    snprintf(name, sizeof name, "%s.weight", bn);
    u->pbw = add_param(t, cap, name, 1, cs);
    if (mmp_st_read_f32(src, name, 1, cs, t->params[u->pbw].w, err, errlen)) return -1;
    snprintf(name, sizeof name, "%s.bias", bn);
    u->pbb = add_param(t, cap, name, 1, cs);
    if (mmp_st_read_f32(src, name, 1, cs, t->params[u->pbb].w, err, errlen)) return -1;
    u->mean = mmp_xmalloc(sizeof(float) * (size_t)cout);
    u->var = mmp_xmalloc(sizeof(float) * (size_t)cout);
    t->nu++; /* owned from here on (freed by mmp_tail_free) */
    snprintf(name, sizeof name, "%s.running_mean", bn);
    if (mmp_st_read_f32(src, name, 1, cs, u->mean, err, errlen)) return -1;
    snprintf(name, sizeof name, "%s.running_var", bn);
    if (mmp_st_read_f32(src, name, 1, cs, u->var, err, errlen)) return -1;
    for (int64_t c = 0; c < cout; c++)
        if (!(u->var[c] >= 0) || !isfinite(u->mean[c]))
            return mmp_errf(err, errlen, "%s.running_var/running_mean: channel %lld is not a valid statistic", bn, (long long)c);
    return 0;
}

int mmp_tail_add_maxpool(mmp_cnn_tail *t, int64_t C, int64_t H, int64_t W, char *err, size_t errlen) {
    if (t->nu >= MMP_TAIL_MAX_UNITS) return mmp_errf(err, errlen, "too many layers");
    mmp_tail_unit *u = &t->u[t->nu];
    memset(u, 0, sizeof *u);
    u->kind = MMP_TAIL_MAXPOOL;
    u->ksize = 3;
    u->cin = u->cout = C;
    u->stride = 2;
    u->act = MMP_ACT_NONE;
    u->in = t->nu - 1;
    u->skip = MMP_TAIL_NOSKIP;
    u->H = H;
    u->W = W;
    u->Ho = (H - 1) / 2 + 1;
    u->Wo = (W - 1) / 2 + 1;
    u->pw = u->pbw = u->pbb = -1;
    t->nu++;
    return 0;
}

/* MobileNetV2 unit: input = the previous unit, no skip (set after) */
static int add_unit(mmp_cnn_tail *t, int *cap, const mmp_safetensors *src, int kind, const char *wname, const char *bn,
                    int64_t cin, int64_t cout, int stride, int relu6, int64_t H, int64_t W, char *err, size_t errlen) {
    return mmp_tail_add_unit(t, cap, src, kind, 1, wname, bn, cin, cout, stride, relu6 ? MMP_ACT_RELU6 : MMP_ACT_NONE,
                             t->nu - 1, MMP_TAIL_NOSKIP, H, W, err, errlen);
}

int mmp_tail_finish(mmp_cnn_tail *t, int *cap, const mmp_safetensors *src, const char *cls, int load, char *err,
                    size_t errlen) {
    char wn[96], bnm[96];
    snprintf(wn, sizeof wn, "%s.weight", cls);
    snprintf(bnm, sizeof bnm, "%s.bias", cls);
    int64_t lw[2] = {t->ncls, t->F}, lb[1] = {t->ncls};
    int pw = add_param(t, cap, wn, 2, lw);
    int pb = add_param(t, cap, bnm, 1, lb);
    if (load) {
        const mmp_tensor *cw = mmp_st_get(src, wn);
        if (cw && cw->ndim == 2 && cw->shape[0] == t->ncls) {
            if (mmp_st_read_f32(src, wn, 2, lw, t->params[pw].w, err, errlen)) return -1;
            if (mmp_st_read_f32(src, bnm, 1, lb, t->params[pb].w, err, errlen)) return -1;
        }
    }
    /* per-slice gradient layout: the conv/BN parameters concatenated */
    t->goff = mmp_xmalloc(sizeof(size_t) * (size_t)t->np);
    t->gtotal = 0;
    for (int k = 0; k < t->np; k++) {
        t->goff[k] = t->gtotal;
        if (k < t->np - 2) t->gtotal += t->params[k].n;
    }
    t->bn_momentum = 0.1f;
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    t->threads = nc < 1 ? 1 : nc > MMP_TAIL_SLICES ? MMP_TAIL_SLICES : (int)nc;
    return 0;
}

int mmp_tail_init(mmp_cnn_tail *t, const mmp_safetensors *src, int first, int64_t H0, int64_t W0, int64_t ncls,
                  float dropout, int load_classifier, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    int cap = 0;
    char w[96], bn[96], e2[400];
    if (first < 0 || first > 18) return mmp_errf(err, errlen, "the first trainable block must be features.0 .. features.18, not features.%d", first);
    if (H0 < 1 || W0 < 1 || H0 > 4096 || W0 > 4096 || ncls < 1)
        return mmp_errf(err, errlen, "bad tail input %lldx%lld or class count %lld", (long long)H0, (long long)W0, (long long)ncls);
    int64_t c = mmp_tail_first_cin(src, first);
    if (c <= 0 && first == 0) return mmp_errf(err, errlen, "no MobileNetV2 stem features.0.0.weight [32,3,3,3] (a 3x3 conv)");
    if (c <= 0) return mmp_errf(err, errlen, "no MobileNetV2 block features.%d (features.%d.conv.0.0.weight or features.%d.0.weight)", first, first, first);
    t->first = first;
    t->C0 = c;
    t->H0 = H0;
    t->W0 = W0;
    t->ncls = ncls;
    t->dropout = dropout;
    int64_t H = H0, W = W0;
    int i = first;
    if (first == 0) { /* the stem: Conv2dNormActivation(3, 32, 3x3, stride 2) + BN + ReLU6 */
        int64_t c1 = tget(src, "features.%d.0.weight", 0)->shape[0];
        if (mmp_tail_add_unit(t, &cap, src, MMP_TAIL_CONV, 3, "features.0.0.weight", "features.0.1", c, c1, 2, MMP_ACT_RELU6, -1,
                              MMP_TAIL_NOSKIP, H, W, e2, sizeof e2))
            goto fail;
        H = t->u[0].Ho;
        W = t->u[0].Wo;
        c = c1;
        i = 1;
    }
    for (;; i++) {
        const mmp_tensor *c0 = tget(src, "features.%d.conv.0.0.weight", i);
        if (!c0) break;
        int first_unit = t->nu;
        int expand = tget(src, "features.%d.conv.3.weight", i) != NULL;
        int s = mmp_mnv2_block_stride(i);
        int64_t hid = c0->shape[0];
        if (c0->ndim != 4) goto bad;
        int j = 0;
        if (expand) {
            snprintf(w, sizeof w, "features.%d.conv.0.0.weight", i);
            snprintf(bn, sizeof bn, "features.%d.conv.0.1", i);
            if (add_unit(t, &cap, src, MMP_TAIL_PW, w, bn, c, hid, 1, 1, H, W, e2, sizeof e2)) goto fail;
            j = 1;
        } else if (hid != c) {
            goto bad;
        }
        snprintf(w, sizeof w, "features.%d.conv.%d.0.weight", i, j);
        snprintf(bn, sizeof bn, "features.%d.conv.%d.1", i, j);
        if (add_unit(t, &cap, src, MMP_TAIL_DW, w, bn, hid, hid, s, 1, H, W, e2, sizeof e2)) goto fail;
        H = t->u[t->nu - 1].Ho;
        W = t->u[t->nu - 1].Wo;
        const mmp_tensor *pj = tget(src, expand ? "features.%d.conv.2.weight" : "features.%d.conv.1.weight", i);
        if (!pj || pj->ndim != 4) goto bad;
        int64_t cout = pj->shape[0];
        snprintf(w, sizeof w, "features.%d.conv.%d.weight", i, j + 1);
        snprintf(bn, sizeof bn, "features.%d.conv.%d", i, j + 2);
        if (add_unit(t, &cap, src, MMP_TAIL_PW, w, bn, hid, cout, 1, 0, H, W, e2, sizeof e2)) goto fail;
        if (s == 1 && cout == c) {
            t->res_unit[t->nu - 1] = 1;
            t->block_in[t->nu - 1] = first_unit; /* the block input = the input of unit first_unit */
            t->u[t->nu - 1].skip = first_unit - 1;
        }
        c = cout;
    }
    /* the final Conv2dNormActivation 1x1 */
    const mmp_tensor *fw = tget(src, "features.%d.0.weight", i);
    if (!fw || fw->ndim != 4 || fw->shape[2] != 1 || fw->shape[3] != 1) {
        mmp_tail_free(t);
        return mmp_errf(err, errlen, "features.%d.0.weight: expected the final 1x1 conv [F,%lld,1,1] after the inverted-residual blocks", i, (long long)c);
    }
    snprintf(w, sizeof w, "features.%d.0.weight", i);
    snprintf(bn, sizeof bn, "features.%d.1", i);
    if (add_unit(t, &cap, src, MMP_TAIL_PW, w, bn, c, fw->shape[0], 1, 1, H, W, e2, sizeof e2)) goto fail;
    t->last = i;
    t->F = fw->shape[0];
    if (mmp_tail_finish(t, &cap, src, "classifier.1", load_classifier, e2, sizeof e2)) goto fail;
    return 0;
bad:
    mmp_tail_free(t);
    return mmp_errf(err, errlen, "features.%d: not a MobileNetV2 inverted-residual block (channel counts do not chain)", i);
fail:
    mmp_tail_free(t);
    return mmp_errf(err, errlen, "%s", e2);
}

static void free_caches(mmp_cnn_tail *t) {
    for (int k = 0; k < t->nu; k++) {
        free(t->u[k].z);
        free(t->u[k].y);
        free(t->u[k].gy);
        free(t->u[k].lx);
        free(t->u[k].lmask);
        free(t->u[k].lh);
        free(t->u[k].ldh);
        t->u[k].z = t->u[k].y = t->u[k].gy = NULL;
        t->u[k].lx = t->u[k].lmask = t->u[k].lh = t->u[k].ldh = NULL;
    }
    free(t->x0); free(t->gx0); free(t->pool); free(t->mask); free(t->dpool); free(t->g1);
    t->x0 = t->gx0 = t->pool = t->mask = t->dpool = t->g1 = NULL;
    t->cap = 0;
}

void mmp_tail_free(mmp_cnn_tail *t) {
    free_caches(t);
    free(t->sgrad);
    free(t->goff);
    for (int k = 0; k < t->nu; k++) {
        free(t->u[k].mean);
        free(t->u[k].var);
        free(t->u[k].bmean);
        free(t->u[k].binvstd);
        free(t->u[k].wt);
        free(t->u[k].lat);
    }
    for (int i = 0; i < MMP_TAIL_SLICES; i++) mmp_conv_ws_free(&t->ws[i]);
    for (int i = 0; i < t->np; i++) mmp_param_free(&t->params[i]);
    free(t->params);
    memset(t, 0, sizeof *t);
}

void mmp_tail_batch_bytes(const void *model, int64_t N, int64_t *saved, int64_t *work) {
    const mmp_cnn_tail *t = model;
    int64_t D = t->C0 * t->H0 * t->W0, widest = D, acts = 0;
    for (int k = 0; k < t->nu; k++) { /* grow()'s caches: z and y per unit, gy in the backward */
        const mmp_tail_unit *u = &t->u[k];
        int64_t m = u->Ho * u->Wo * u->cout, mi = u->H * u->W * u->cin;
        acts += m;
        widest = m > widest ? m : widest;
        widest = mi > widest ? mi : widest;
    }
    int64_t f = (int64_t)sizeof(float);
    *saved = N * f * (D + 2 * acts + 2 * t->F);          /* x0, z + y, pool, mask */
    *work = N * f * (acts + D + widest + t->F);           /* gy, gx0, g1, dpool */
}

static void grow(mmp_cnn_tail *t, int64_t N) {
    if (N <= t->cap) return;
    free_caches(t);
    size_t n = (size_t)N, D = (size_t)(t->C0 * t->H0 * t->W0), widest = D;
    for (int k = 0; k < t->nu; k++) {
        mmp_tail_unit *u = &t->u[k];
        size_t m = (size_t)(u->Ho * u->Wo * u->cout);
        u->z = mmp_xmalloc(sizeof(float) * n * m);
        u->y = mmp_xmalloc(sizeof(float) * n * m);
        size_t mi = (size_t)(u->H * u->W * u->cin);
        if (u->lora) {
            size_t mh = (size_t)(u->Ho * u->Wo * t->lora_rank);
            u->lh = mmp_xmalloc(sizeof(float) * n * mh);
            u->ldh = mmp_xmalloc(sizeof(float) * n * mh);
            if (t->lora_dropout > 0) {
                u->lx = mmp_xmalloc(sizeof(float) * n * mi);
                u->lmask = mmp_xmalloc(sizeof(float) * n * mi);
            }
        }
        widest = m > widest ? m : widest;
        widest = mi > widest ? mi : widest;
    }
    t->widest = (int64_t)widest;
    t->x0 = mmp_xmalloc(sizeof(float) * n * D);
    t->pool = mmp_xmalloc(sizeof(float) * n * (size_t)t->F);
    t->mask = mmp_xmalloc(sizeof(float) * n * (size_t)t->F);
    t->dpool = mmp_xmalloc(sizeof(float) * n * (size_t)t->F);
    t->g1 = mmp_xmalloc(sizeof(float) * n * widest);
    t->cap = N;
}

/* ------------------------------------------------------------------ */
/* slices: the batch is cut into min(N, MMP_TAIL_SLICES) fixed row ranges
 * (independent of the thread count); the convolutions of each slice run
 * on their own, the per-slice weight gradients are summed in slice order:
 * the same bits for any number of threads. */

typedef struct {
    mmp_cnn_tail *t;
    const float *x;   /* forward: the input rows [N, D] (C,H,W) */
    float *dx;        /* backward: dloss/dx [N, D] or NULL */
    int64_t N;
    int nslices, backward, next, nthreads;
    int per_unit, unit; /* train-mode BN: only the convolution (or max pool) of unit `unit` */
} slice_run;

typedef struct {
    slice_run *r;
    mmp_conv_ws *ws;  /* this thread's convolution scratch */
} slice_thread;

static void slice_rows(int64_t N, int S, int s, int64_t *n0, int64_t *n1) {
    *n0 = N * s / S;
    *n1 = N * (s + 1) / S;
}

/* per-record size of the output of unit k (k = -1: the tail input) */
static int64_t out_size(const mmp_cnn_tail *t, int k) {
    return k < 0 ? t->C0 * t->H0 * t->W0 : t->u[k].Ho * t->u[k].Wo * t->u[k].cout;
}

/* LoRA (PEFT 0.4's Conv2d): z += B(A(dropout(x))) * scaling, for the n
 * records from n0; in = the unit input rows from n0. B(A(.)) goes through the
 * slice's scratch rows of g1. */
static const float *lora_input(const mmp_cnn_tail *t, const mmp_tail_unit *u, const float *in, int64_t n0) {
    return t->lora_masked && u->lx ? u->lx + n0 * u->H * u->W * u->cin : in;
}

static void lora_fwd(mmp_cnn_tail *t, mmp_tail_unit *u, const float *in, int64_t n0, int64_t n, float *z, mmp_conv_ws *ws) {
    int64_t pin = u->H * u->W * u->cin, P = u->Ho * u->Wo, Mo = n * P, r = t->lora_rank;
    if (t->lora_masked && u->lx) {
        float *d = u->lx + n0 * pin;
        const float *m = u->lmask + n0 * pin;
        for (int64_t e = 0; e < n * pin; e++) d[e] = in[e] * m[e];
    }
    const float *xd = lora_input(t, u, in, n0);
    float *h = u->lh + n0 * P * r, *tmp = t->g1 + n0 * t->widest;
    const float *A = t->params[u->plA].w, *B = t->params[u->plB].w;
    if (u->kind == MMP_TAIL_PW) mmp_pw_conv_forward(xd, Mo, u->cin, A, r, h);
    else mmp_conv2d_forward_ws(xd, n, u->H, u->W, u->cin, u->lat, r, u->ksize, (int)u->stride, h, ws);
    mmp_pw_conv_forward(h, Mo, r, B, u->cout, tmp);
    float sc = t->lora_scale;
    for (int64_t e = 0; e < Mo * u->cout; e++) z[e] += tmp[e] * sc;
}

/* its backward from g = dloss/dz (rows from n0): dA, dB into grad; when gin,
 * dloss/d(input) added to it (through the dropout mask) */
static void lora_bwd(mmp_cnn_tail *t, mmp_tail_unit *u, const float *in, const float *g, int64_t n0, int64_t n, float *grad,
                     float *gin, mmp_conv_ws *ws) {
    int64_t pin = u->H * u->W * u->cin, P = u->Ho * u->Wo, Mo = n * P, r = t->lora_rank;
    const float *xd = lora_input(t, u, in, n0);
    float *h = u->lh + n0 * P * r, *dh = u->ldh + n0 * P * r, *tmp = t->g1 + n0 * t->widest;
    const float *A = t->params[u->plA].w, *B = t->params[u->plB].w;
    float sc = t->lora_scale;
    for (int64_t e = 0; e < Mo * u->cout; e++) tmp[e] = g[e] * sc;
    mmp_pw_conv_backward(h, tmp, Mo, r, B, u->cout, dh, grad + t->goff[u->plB]);
    float *dxl = gin ? tmp : NULL;
    if (u->kind == MMP_TAIL_PW) mmp_pw_conv_backward(xd, dh, Mo, u->cin, A, r, dxl, grad + t->goff[u->plA]);
    else mmp_conv2d_backward_ws(xd, dh, n, u->H, u->W, u->cin, u->lat, r, u->ksize, (int)u->stride, dxl, grad + t->goff[u->plA], ws);
    if (!gin) return;
    if (t->lora_masked && u->lx) {
        const float *m = u->lmask + n0 * pin;
        for (int64_t e = 0; e < n * pin; e++) gin[e] += tmp[e] * m[e];
    } else {
        for (int64_t e = 0; e < n * pin; e++) gin[e] += tmp[e];
    }
}

/* whether the backward needs dloss/d(output of unit k) (k = -1: the input) */
static int need_grad(const mmp_cnn_tail *t, int k, int want_dx) { return want_dx || (k >= 0 && k >= t->lo); }

/* conv units + pool of rows [n0, n1) */
static void fwd_slice(mmp_cnn_tail *t, const float *x, int64_t n0, int64_t n1, mmp_conv_ws *ws) {
    int64_t n = n1 - n0, D = t->C0 * t->H0 * t->W0;
    float *x0 = t->x0 + n0 * D;
    mmp_nchw_to_nhwc(x + n0 * D, n, t->C0, t->H0 * t->W0, x0);
    for (int k = 0; k < t->nu; k++) {
        mmp_tail_unit *u = &t->u[k];
        int64_t pout = u->Ho * u->Wo * u->cout, Mo = n * u->Ho * u->Wo;
        const float *in = u->in >= 0 ? t->u[u->in].y + n0 * out_size(t, u->in) : x0;
        float *z = u->z + n0 * pout, *y = u->y + n0 * pout;
        if (u->kind == MMP_TAIL_MAXPOOL) {
            mmp_maxpool3s2_forward(in, n, u->H, u->W, u->cin, y);
            continue;
        }
        const float *w = t->params[u->pw].w;
        if (u->kind == MMP_TAIL_PW) mmp_pw_conv_forward(in, Mo, u->cin, w, u->cout, z);
        else if (u->kind == MMP_TAIL_DW) mmp_dw_conv_forward(in, n, u->H, u->W, u->cin, w, (int)u->stride, z);
        else mmp_conv2d_forward_ws(in, n, u->H, u->W, u->cin, u->wt, u->cout, u->ksize, (int)u->stride, z, ws);
        if (u->lora) lora_fwd(t, u, in, n0, n, z, ws);
        mmp_bn_eval_forward(z, Mo, u->cout, t->params[u->pbw].w, t->params[u->pbb].w, u->mean, u->var, y);
        size_t ne = (size_t)(Mo * u->cout);
        if (u->skip != MMP_TAIL_NOSKIP) { /* residual: same shape as the output */
            const float *sk = u->skip >= 0 ? t->u[u->skip].y + n0 * pout : x0;
            for (size_t e = 0; e < ne; e++) y[e] += sk[e];
        }
        if (u->act == MMP_ACT_RELU6) mmp_relu6_forward(y, ne);
        else if (u->act == MMP_ACT_RELU) mmp_relu_forward(y, ne);
    }
    const mmp_tail_unit *L = &t->u[t->nu - 1];
    mmp_avgpool_forward(L->y + n0 * L->Ho * L->Wo * t->F, n, L->Ho * L->Wo, t->F, t->pool + n0 * t->F);
}

/* conv-unit gradients of rows [n0, n1) into grad (the conv/BN parameters,
 * concatenated in params order); dx rows when dx. Needs t->dpool. Each
 * unit's output gradient gy is the sum of its consumers' contributions,
 * added in the fixed (reverse unit) order. */
static void bwd_slice(mmp_cnn_tail *t, float *grad, float *dx, int64_t n0, int64_t n1, mmp_conv_ws *ws) {
    int64_t n = n1 - n0, D = t->C0 * t->H0 * t->W0;
    const mmp_tail_unit *L = &t->u[t->nu - 1];
    float *tmp = t->g1 + n0 * t->widest, *gx0 = t->gx0 + n0 * D;
    for (int k = dx ? 0 : t->lo; k < t->nu - 1; k++) memset(t->u[k].gy + n0 * out_size(t, k), 0, sizeof(float) * (size_t)(n * out_size(t, k)));
    if (dx) memset(gx0, 0, sizeof(float) * (size_t)(n * D));
    mmp_avgpool_backward(t->dpool + n0 * t->F, n, L->Ho * L->Wo, t->F, L->gy + n0 * L->Ho * L->Wo * t->F);
    int want_dx = dx != NULL;
    for (int k = t->nu - 1; k >= 0; k--) {
        if (!need_grad(t, k, want_dx)) break; /* nothing trains below: no dx, no dW */
        mmp_tail_unit *u = &t->u[k];
        int64_t pin = u->H * u->W * u->cin, pout = u->Ho * u->Wo * u->cout, Mo = n * u->Ho * u->Wo;
        size_t no = (size_t)(n * pout), ni = (size_t)(n * pin);
        float *g = u->gy + n0 * pout;
        const float *y = u->y + n0 * pout, *z = u->z + n0 * pout;
        int need_in = need_grad(t, u->in, want_dx);
        if (u->act == MMP_ACT_RELU6) mmp_relu6_backward(y, g, no);
        else if (u->act == MMP_ACT_RELU) mmp_relu_backward(y, g, no);
        if (u->skip != MMP_TAIL_NOSKIP && need_grad(t, u->skip, want_dx)) { /* the skip source gets dy too */
            float *gs = u->skip >= 0 ? t->u[u->skip].gy + n0 * pout : gx0;
            for (size_t e = 0; e < no; e++) gs[e] += g[e];
        }
        if (u->kind == MMP_TAIL_MAXPOOL) { /* (never the first unit: its input is a unit) */
            if (!need_in) continue;
            const float *in = t->u[u->in].y + n0 * pin;
            float *gi = t->u[u->in].gy + n0 * pin;
            mmp_maxpool3s2_backward(in, g, n, u->H, u->W, u->cin, tmp);
            for (size_t e = 0; e < ni; e++) gi[e] += tmp[e];
            continue;
        }
        int tw = !t->params[u->pw].frozen, tb = !t->params[u->pbw].frozen;
        float *gw = tw ? grad + t->goff[u->pw] : NULL;
        float *gbw = tb ? grad + t->goff[u->pbw] : NULL, *gbb = tb ? grad + t->goff[u->pbb] : NULL;
        int need_dz = tw || u->lora || need_in;
        mmp_bn_eval_backward(z, g, Mo, u->cout, t->params[u->pbw].w, u->mean, u->var, need_dz ? g : NULL, gbw, gbb);
        if (!need_dz) continue;
        const float *in = u->in >= 0 ? t->u[u->in].y + n0 * pin : t->x0 + n0 * pin;
        float *gi = need_in ? (u->in >= 0 ? t->u[u->in].gy + n0 * pin : gx0) : NULL;
        float *dxk = need_in ? tmp : NULL;
        const float *w = t->params[u->pw].w;
        if (gw || dxk) {
            if (u->kind == MMP_TAIL_PW) mmp_pw_conv_backward(in, g, Mo, u->cin, w, u->cout, dxk, gw);
            else if (u->kind == MMP_TAIL_DW) mmp_dw_conv_backward(in, g, n, u->H, u->W, u->cin, w, (int)u->stride, dxk, gw);
            else mmp_conv2d_backward_ws(in, g, n, u->H, u->W, u->cin, u->wt, u->cout, u->ksize, (int)u->stride, dxk, gw, ws);
        }
        if (dxk)
            for (size_t e = 0; e < ni; e++) gi[e] += dxk[e];
        if (u->lora) lora_bwd(t, u, in, g, n0, n, grad, gi, ws);
    }
    if (dx) mmp_nhwc_to_nchw(gx0, n, t->C0, t->H0 * t->W0, dx + n0 * D);
}

/* train-mode BN: the convolution (max pool) of unit k on rows [n0, n1) */
static void unit_fwd_slice(mmp_cnn_tail *t, int k, int64_t n0, int64_t n1, mmp_conv_ws *ws) {
    mmp_tail_unit *u = &t->u[k];
    int64_t n = n1 - n0, pin = u->H * u->W * u->cin, pout = u->Ho * u->Wo * u->cout, Mo = n * u->Ho * u->Wo;
    const float *in = u->in >= 0 ? t->u[u->in].y + n0 * pin : t->x0 + n0 * pin;
    if (u->kind == MMP_TAIL_MAXPOOL) {
        mmp_maxpool3s2_forward(in, n, u->H, u->W, u->cin, u->y + n0 * pout);
        return;
    }
    float *z = u->z + n0 * pout;
    const float *w = t->params[u->pw].w;
    if (u->kind == MMP_TAIL_PW) mmp_pw_conv_forward(in, Mo, u->cin, w, u->cout, z);
    else if (u->kind == MMP_TAIL_DW) mmp_dw_conv_forward(in, n, u->H, u->W, u->cin, w, (int)u->stride, z);
    else mmp_conv2d_forward_ws(in, n, u->H, u->W, u->cin, u->wt, u->cout, u->ksize, (int)u->stride, z, ws);
    if (u->lora) lora_fwd(t, u, in, n0, n, z, ws);
}

/* train-mode BN: from gy (already dloss/dz), the weight gradient of unit k's
 * convolution on rows [n0, n1) into grad, dloss/d(its input) added to the
 * input's gy (or gx0) */
static void unit_bwd_slice(mmp_cnn_tail *t, int k, float *grad, int64_t n0, int64_t n1, mmp_conv_ws *ws, int want_dx) {
    mmp_tail_unit *u = &t->u[k];
    int64_t n = n1 - n0, pin = u->H * u->W * u->cin, pout = u->Ho * u->Wo * u->cout, Mo = n * u->Ho * u->Wo;
    size_t ni = (size_t)(n * pin);
    const float *g = u->gy + n0 * pout;
    const float *in = u->in >= 0 ? t->u[u->in].y + n0 * pin : t->x0 + n0 * pin;
    int need_in = need_grad(t, u->in, want_dx);
    float *tmp = t->g1 + n0 * t->widest, *dxk = need_in ? tmp : NULL;
    float *gi = need_in ? (u->in >= 0 ? t->u[u->in].gy + n0 * pin : t->gx0 + n0 * pin) : NULL;
    if (u->kind == MMP_TAIL_MAXPOOL) {
        if (dxk) mmp_maxpool3s2_backward(in, g, n, u->H, u->W, u->cin, dxk);
    } else {
        float *gw = t->params[u->pw].frozen ? NULL : grad + t->goff[u->pw];
        const float *w = t->params[u->pw].w;
        if (gw || dxk) {
            if (u->kind == MMP_TAIL_PW) mmp_pw_conv_backward(in, g, Mo, u->cin, w, u->cout, dxk, gw);
            else if (u->kind == MMP_TAIL_DW) mmp_dw_conv_backward(in, g, n, u->H, u->W, u->cin, w, (int)u->stride, dxk, gw);
            else mmp_conv2d_backward_ws(in, g, n, u->H, u->W, u->cin, u->wt, u->cout, u->ksize, (int)u->stride, dxk, gw, ws);
        }
    }
    if (dxk)
        for (size_t e = 0; e < ni; e++) gi[e] += dxk[e];
    if (u->kind != MMP_TAIL_MAXPOOL && u->lora) lora_bwd(t, u, in, g, n0, n, grad, gi, ws);
}

static void *slice_worker(void *arg) {
    slice_thread *st = arg;
    slice_run *r = st->r;
    mmp_cnn_tail *t = r->t;
    for (;;) {
        int s = __atomic_fetch_add(&r->next, 1, __ATOMIC_RELAXED);
        if (s >= r->nslices) break;
        int64_t n0, n1;
        slice_rows(r->N, r->nslices, s, &n0, &n1);
        if (r->per_unit && r->backward) unit_bwd_slice(t, r->unit, t->sgrad + (size_t)s * t->gtotal, n0, n1, st->ws, r->dx != NULL);
        else if (r->per_unit) unit_fwd_slice(t, r->unit, n0, n1, st->ws);
        else if (r->backward) bwd_slice(t, t->sgrad + (size_t)s * t->gtotal, r->dx, n0, n1, st->ws);
        else fwd_slice(t, r->x, n0, n1, st->ws);
    }
    return NULL;
}

/* runs every slice, on up to t->threads threads (the caller's included) */
static void run_slices(slice_run *r) {
    int T = r->t->threads > 0 ? r->t->threads : 1;
    if (T > r->nslices) T = r->nslices;
    pthread_t th[MMP_TAIL_SLICES];
    slice_thread st[MMP_TAIL_SLICES];
    int started = 0;
    for (int i = 0; i < T; i++) st[i] = (slice_thread){.r = r, .ws = &r->t->ws[i]};
    for (int i = 1; i < T; i++)
        if (pthread_create(&th[started], NULL, slice_worker, &st[started + 1]) == 0) started++;
    slice_worker(&st[0]);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
}

/* the dense convolutions' weights in im2col order, once per forward (the
 * optimizer updates the weights in place between steps); the backward of
 * the same step reuses them */
static void pack_weights(mmp_cnn_tail *t) {
    for (int k = 0; k < t->nu; k++) {
        mmp_tail_unit *u = &t->u[k];
        if (u->kind != MMP_TAIL_CONV) continue;
        if (!u->wt) u->wt = mmp_xmalloc(sizeof(float) * (size_t)(u->cout * u->ksize * u->ksize * u->cin));
        mmp_conv2d_pack(t->params[u->pw].w, u->cout, u->cin, u->ksize, u->wt);
        if (u->lora) {
            if (!u->lat) u->lat = mmp_xmalloc(sizeof(float) * (size_t)(t->lora_rank * u->ksize * u->ksize * u->cin));
            mmp_conv2d_pack(t->params[u->plA].w, t->lora_rank, u->cin, u->ksize, u->lat);
        }
    }
}

static int nslices(int64_t N) { return N < MMP_TAIL_SLICES ? (int)N : MMP_TAIL_SLICES; }

/* train-mode BN forward: unit by unit over the whole batch (the statistics
 * need every record); each unit's convolution runs on the fixed slices in
 * parallel, the statistics, BN, residual and activation serially */
static void forward_train_bn(mmp_cnn_tail *t, const float *x, int64_t N) {
    mmp_nchw_to_nhwc(x, N, t->C0, t->H0 * t->W0, t->x0);
    for (int k = 0; k < t->nu; k++) {
        mmp_tail_unit *u = &t->u[k];
        slice_run r = {.t = t, .N = N, .nslices = nslices(N), .per_unit = 1, .unit = k};
        run_slices(&r);
        if (u->kind == MMP_TAIL_MAXPOOL) continue;
        int64_t M = N * u->Ho * u->Wo;
        if (!u->bmean) {
            u->bmean = mmp_xmalloc(sizeof(float) * (size_t)u->cout);
            u->binvstd = mmp_xmalloc(sizeof(float) * (size_t)u->cout);
        }
        /* BN, residual and activation fused, on threads (bn_mt.h: the same bits) */
        const float *sk = u->skip == MMP_TAIL_NOSKIP ? NULL : u->skip >= 0 ? t->u[u->skip].y : t->x0;
        mmp_bn_train_act_forward(u->z, M, u->cout, t->params[u->pbw].w, t->params[u->pbb].w, t->bn_momentum, u->mean,
                                 u->var, u->bmean, u->binvstd, u->y, sk, u->act, t->threads);
    }
    const mmp_tail_unit *L = &t->u[t->nu - 1];
    mmp_avgpool_forward(L->y, N, L->Ho * L->Wo, t->F, t->pool);
}

/* its backward: per unit in reverse order, the activation, residual and BN
 * (through the batch statistics) serially, the convolution on the slices */
static void backward_train_bn(mmp_cnn_tail *t, int64_t N, float *dx) {
    int S = nslices(N);
    for (int k = dx ? 0 : t->lo; k < t->nu; k++) memset(t->u[k].gy, 0, sizeof(float) * (size_t)(N * out_size(t, k)));
    if (dx) memset(t->gx0, 0, sizeof(float) * (size_t)(N * out_size(t, -1)));
    const mmp_tail_unit *L = &t->u[t->nu - 1];
    mmp_avgpool_backward(t->dpool, N, L->Ho * L->Wo, t->F, L->gy);
    int want_dx = dx != NULL;
    for (int k = t->nu - 1; k >= 0; k--) {
        if (!need_grad(t, k, want_dx)) break; /* nothing trains below: no dx, no dW */
        mmp_tail_unit *u = &t->u[k];
        int64_t M = N * u->Ho * u->Wo;
        size_t no = (size_t)(M * u->cout);
        float *g = u->gy;
        float *gs = u->skip != MMP_TAIL_NOSKIP && need_grad(t, u->skip, want_dx) ? (u->skip >= 0 ? t->u[u->skip].gy : t->gx0) : NULL;
        int need_in = need_grad(t, u->in, want_dx);
        if (u->kind == MMP_TAIL_MAXPOOL) {
            if (u->act == MMP_ACT_RELU6) mmp_relu6_backward(u->y, g, no);
            else if (u->act == MMP_ACT_RELU) mmp_relu_backward(u->y, g, no);
            if (gs)
                for (size_t e = 0; e < no; e++) gs[e] += g[e];
            if (!need_in) continue;
        } else {
            int tb = !t->params[u->pbw].frozen;
            int need_dz = !t->params[u->pw].frozen || u->lora || need_in;
            /* activation, residual and BN backward fused, on threads (bn_mt.h: the same bits); the BN
             * parameters' gradients: whole-batch sums, in slice 0 (zeros in the others) */
            mmp_bn_train_act_backward(u->z, u->y, g, M, u->cout, t->params[u->pbw].w, u->bmean, u->binvstd, gs, u->act,
                                      tb ? t->sgrad + t->goff[u->pbw] : NULL, tb ? t->sgrad + t->goff[u->pbb] : NULL,
                                      t->threads);
            for (int s = 1; s < S && tb; s++) {
                memset(t->sgrad + (size_t)s * t->gtotal + t->goff[u->pbw], 0, sizeof(float) * (size_t)u->cout);
                memset(t->sgrad + (size_t)s * t->gtotal + t->goff[u->pbb], 0, sizeof(float) * (size_t)u->cout);
            }
            if (!need_dz) continue;
        }
        slice_run r = {.t = t, .dx = dx, .N = N, .nslices = S, .backward = 1, .per_unit = 1, .unit = k};
        run_slices(&r);
    }
    if (dx) mmp_nhwc_to_nchw(t->gx0, N, t->C0, t->H0 * t->W0, dx);
}

void mmp_tail_forward(mmp_cnn_tail *t, const float *x, int64_t N, int train, uint64_t *rng, float *logits) {
    if (N <= 0) return;
    if (!train && N > MMP_TAIL_INFER_ROWS) { /* inference: bounded memory (mmp-eval's batches of 1024) */
        const int64_t D = t->C0 * t->H0 * t->W0;
        for (int64_t s = 0; s < N; s += MMP_TAIL_INFER_ROWS) {
            int64_t m = N - s < MMP_TAIL_INFER_ROWS ? N - s : MMP_TAIL_INFER_ROWS;
            mmp_tail_forward(t, x + s * D, m, 0, rng, logits + s * t->ncls);
        }
        return;
    }
    grow(t, N);
    pack_weights(t);
    t->bn_batch = train && t->train_bn;
    t->lora_masked = train && t->lora_rank > 0 && t->lora_dropout > 0;
    if (t->lora_masked) /* the dropout masks of the LoRA inputs, unit by unit (fixed order) */
        for (int k = 0; k < t->nu; k++) {
            mmp_tail_unit *u = &t->u[k];
            if (!u->lora) continue;
            size_t m = (size_t)(N * u->H * u->W * u->cin);
            for (size_t e = 0; e < m; e++) u->lx[e] = 1.0f;
            mmp_dropout_forward(u->lx, u->lmask, m, t->lora_dropout, rng);
        }
    if (t->bn_batch) {
        forward_train_bn(t, x, N);
    } else {
        slice_run r = {.t = t, .x = x, .N = N, .nslices = nslices(N)};
        run_slices(&r);
    }
    t->masked = train && t->dropout > 0;
    if (t->masked) mmp_dropout_forward(t->pool, t->mask, (size_t)(N * t->F), t->dropout, rng);
    const mmp_param *cw = &t->params[t->np - 2], *cb = &t->params[t->np - 1];
    mmp_linear_forward(t->pool, N, t->F, cw->w, cb->w, t->ncls, logits);
}

void mmp_tail_backward(mmp_cnn_tail *t, int64_t N, const float *dlogits, float *dx) {
    if (N <= 0) {
        for (int i = 0; i < t->np; i++) memset(t->params[i].g, 0, sizeof(float) * t->params[i].n);
        return;
    }
    mmp_param *cw = &t->params[t->np - 2], *cb = &t->params[t->np - 1];
    mmp_linear_backward(t->pool, dlogits, N, t->F, cw->w, t->ncls, t->dpool, cw->g, cb->g);
    if (t->masked) mmp_dropout_backward(t->mask, t->dpool, (size_t)(N * t->F));
    if (!t->sgrad) t->sgrad = mmp_xmalloc(sizeof(float) * (size_t)MMP_TAIL_SLICES * t->gtotal);
    if (!t->gx0) { /* the output gradients: only for training (freed with the caches) */
        for (int k = 0; k < t->nu; k++)
            t->u[k].gy = mmp_xmalloc(sizeof(float) * (size_t)t->cap * (size_t)(t->u[k].Ho * t->u[k].Wo * t->u[k].cout));
        t->gx0 = mmp_xmalloc(sizeof(float) * (size_t)t->cap * (size_t)(t->C0 * t->H0 * t->W0));
    }
    slice_run r = {.t = t, .dx = dx, .N = N, .nslices = nslices(N), .backward = 1};
    if (t->bn_batch) backward_train_bn(t, N, dx);
    else run_slices(&r);
    /* sum the slices' gradients in slice order */
    for (int i = 0; i < t->np - 2; i++) {
        mmp_param *p = &t->params[i];
        if (p->frozen) continue; /* no gradient (stays 0) */
        memcpy(p->g, t->sgrad + t->goff[i], sizeof(float) * p->n);
        for (int s = 1; s < r.nslices; s++) {
            const float *gs = t->sgrad + (size_t)s * t->gtotal + t->goff[i];
            for (size_t e = 0; e < p->n; e++) p->g[e] += gs[e];
        }
    }
}

/* ------------------------------------------------------------------ */
/* freezing strategies and LoRA                                        */
/* ------------------------------------------------------------------ */

const char *mmp_tail_unit_module(const mmp_cnn_tail *t, int k, char *buf, size_t n) {
    const mmp_tail_unit *u = &t->u[k];
    if (u->kind == MMP_TAIL_MAXPOOL) return snprintf(buf, n, "maxpool"), buf;
    const char *w = t->params[u->pw].name;
    size_t l = strlen(w);
    if (l > 7 && !strcmp(w + l - 7, ".weight")) l -= 7;
    snprintf(buf, n, "%.*s", (int)l, w);
    return buf;
}

/* the block of unit k: "features.N" (MobileNetV2, the stem features.0
 * included), "layerL.I" (ResNet); "" for ResNet's stem and the max pool */
static void unit_block(const mmp_cnn_tail *t, int k, char *key, size_t n) {
    const mmp_tail_unit *u = &t->u[k];
    key[0] = 0;
    if (u->kind == MMP_TAIL_MAXPOOL) return;
    int a, b;
    if (sscanf(u->bn, "features.%d", &a) == 1) snprintf(key, n, "features.%d", a);
    else if (sscanf(u->bn, "layer%d.%d", &a, &b) == 2) snprintf(key, n, "layer%d.%d", a, b);
}

/* PEFT 0.4's target_modules as a list: a module matches when its name ends with one of them */
static int target_match(const char *targets, const char *name) {
    if (!targets || !*targets) return 1;
    const char *p = targets;
    size_t ln = strlen(name);
    while (*p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        while (l && *p == ' ') p++, l--;
        while (l && p[l - 1] == ' ') l--;
        if (l && l <= ln && !strncmp(name + ln - l, p, l)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

int mmp_tail_unfreeze(mmp_cnn_tail *t, const mmp_tail_unfreeze_opts *o, uint64_t seed, char *err, size_t errlen) {
    int ncls0 = t->np - 2;
    char key[64], prev[64] = "", mod[96];
    /* blocks, counted in order */
    int ord[MMP_TAIL_MAX_UNITS], nb = 0;
    for (int k = 0; k < t->nu; k++) {
        unit_block(t, k, key, sizeof key);
        if (!key[0]) { ord[k] = -1; continue; }
        if (strcmp(key, prev)) nb++, snprintf(prev, sizeof prev, "%s", key);
        ord[k] = nb - 1;
    }
    if (o->kind == MMP_UNFREEZE_LAST && o->n > nb)
        return mmp_errf(err, errlen, "--unfreeze last:%d: the network has %d blocks (%s)", o->n, nb,
                        t->arch ? "the BasicBlock/Bottleneck blocks of layer1..layer4" : "features.0 .. features.18");
    int nl = 0, ndw = 0;
    if (o->kind == MMP_UNFREEZE_LORA) {
        if (o->rank < 1) return mmp_errf(err, errlen, "--lora-rank must be at least 1");
        for (int k = 0; k < t->nu; k++) {
            if (t->u[k].kind == MMP_TAIL_MAXPOOL || !target_match(o->targets, mmp_tail_unit_module(t, k, mod, sizeof mod))) continue;
            if (t->u[k].kind == MMP_TAIL_DW) ndw++;
            else nl++;
        }
        if (!nl && ndw)
            return mmp_errf(err, errlen, "--lora-targets %s: matches only depthwise convolutions, which PEFT 0.4's LoRA cannot adapt "
                            "(it drops their groups)", o->targets);
        if (!nl)
            return mmp_errf(err, errlen, "--lora-targets %s: matches no convolution of the network (names such as %s)", o->targets,
                            t->arch ? "conv1, layer1.0.conv1, layer2.0.downsample.0" : "features.0.0, features.1.conv.1, features.18.0");
    }
    /* LoRA parameters, inserted before the classifier */
    if (nl) {
        mmp_param cls[2] = {t->params[ncls0], t->params[ncls0 + 1]};
        t->params = mmp_xrealloc(t->params, sizeof(mmp_param) * (size_t)(t->np + 2 * nl));
        int np = ncls0;
        mmp_rng rng = mmp_rng_derive(seed, 0x10a4, 0);
        t->lora_rank = o->rank;
        t->lora_alpha = (float)o->alpha;
        t->lora_scale = (float)(o->alpha / o->rank);
        t->lora_dropout = (float)o->dropout;
        for (int k = 0; k < t->nu; k++) {
            mmp_tail_unit *u = &t->u[k];
            if (u->kind == MMP_TAIL_MAXPOOL || u->kind == MMP_TAIL_DW || !target_match(o->targets, mmp_tail_unit_module(t, k, mod, sizeof mod)))
                continue;
            char name[200];
            int64_t sa[4] = {o->rank, u->cin, u->ksize, u->ksize}, sb[4] = {u->cout, o->rank, 1, 1};
            snprintf(name, sizeof name, "%s.lora_A.weight", mod);
            mmp_param_init(&t->params[np], name, 4, sa, 1);
            /* kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = cin*K*K */
            double bound = 1.0 / sqrt((double)(u->cin * u->ksize * u->ksize));
            for (size_t e = 0; e < t->params[np].n; e++) t->params[np].w[e] = (float)((mmp_rng_uniform53(&rng) * 2 - 1) * bound);
            u->plA = np++;
            snprintf(name, sizeof name, "%s.lora_B.weight", mod);
            mmp_param_init(&t->params[np], name, 4, sb, 1); /* zeros */
            u->plB = np++;
            u->lora = 1;
        }
        t->params[np++] = cls[0];
        t->params[np++] = cls[1];
        t->np = np;
        free(t->goff);
        t->goff = mmp_xmalloc(sizeof(size_t) * (size_t)t->np);
        t->gtotal = 0;
        for (int k = 0; k < t->np; k++) {
            t->goff[k] = t->gtotal;
            if (k < t->np - 2) t->gtotal += t->params[k].n;
        }
        free(t->sgrad);
        t->sgrad = NULL;
        free_caches(t); /* the LoRA caches come with the next grow */
    }
    /* frozen flags */
    for (int k = 0; k < t->nu; k++) {
        mmp_tail_unit *u = &t->u[k];
        if (u->kind == MMP_TAIL_MAXPOOL) continue;
        int conv = 1, norm = 1;
        switch (o->kind) {
        case MMP_UNFREEZE_HEAD: conv = norm = 0; break;
        case MMP_UNFREEZE_LAST: conv = norm = ord[k] >= 0 && ord[k] >= nb - o->n; break;
        case MMP_UNFREEZE_NORM: conv = 0; break;
        case MMP_UNFREEZE_LORA: conv = norm = 0; break;
        default: break;
        }
        t->params[u->pw].frozen = !conv;
        t->params[u->pbw].frozen = t->params[u->pbb].frozen = !norm;
    }
    t->lo = t->nu;
    for (int k = t->nu - 1; k >= 0; k--) {
        const mmp_tail_unit *u = &t->u[k];
        if (u->kind == MMP_TAIL_MAXPOOL) continue;
        if (u->lora || !t->params[u->pw].frozen || !t->params[u->pbw].frozen) t->lo = k;
    }
    return 0;
}

void mmp_tail_save_buffers(const mmp_cnn_tail *t, mmp_st_writer *w) {
    for (int k = 0; k < t->nu; k++) {
        const mmp_tail_unit *u = &t->u[k];
        if (u->kind == MMP_TAIL_MAXPOOL) continue;
        char name[96];
        int64_t cs[1] = {u->cout};
        snprintf(name, sizeof name, "%s.running_mean", u->bn);
        mmp_st_writer_add_f32(w, name, u->mean, 1, cs);
        snprintf(name, sizeof name, "%s.running_var", u->bn);
        mmp_st_writer_add_f32(w, name, u->var, 1, cs);
    }
}

void mmp_tail_save_nbt(const mmp_cnn_tail *t, int64_t nbt, mmp_st_writer *w) {
    for (int k = 0; k < t->nu; k++) {
        const mmp_tail_unit *u = &t->u[k];
        if (u->kind == MMP_TAIL_MAXPOOL) continue;
        char name[96];
        snprintf(name, sizeof name, "%s.num_batches_tracked", u->bn);
        mmp_tensor x = {.dtype = MMP_I64, .ndim = 0, .data = &nbt, .nbytes = sizeof nbt};
        mmp_st_writer_add(w, name, &x);
    }
}
