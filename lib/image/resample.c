/* Pillow-exact resampling (port of the algorithm of Pillow 9.4
 * src/libImaging/Resample.c: the box, bilinear, hamming, bicubic and lanczos
 * filters, precompute_coeffs, normalize_coeffs_8bpc,
 * ImagingResampleHorizontal_8bpc / Vertical_8bpc, ImagingResampleInner),
 * written for packed RGB u8, plus torchvision's Resize/CenterCrop geometry
 * and Hugging Face's center-crop offsets. */
#include "image/image.h"

#include "mmp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE4_1__
#include <immintrin.h>
#endif

#define PRECISION_BITS (32 - 8 - 2)

void mmp_img_alloc(mmp_img *im, int w, int h) {
    if (w <= 0 || h <= 0 || (uint64_t)w * (uint64_t)h > (1ULL << 40) / 3)
        mmp_die("image size %dx%d out of range", w, h);
    im->w = w;
    im->h = h;
    im->px = mmp_xmalloc((size_t)w * (size_t)h * 3);
}

void mmp_img_free(mmp_img *im) {
    free(im->px);
    im->px = NULL;
    im->w = im->h = 0;
}

/* The filters of Resample.c, expression for expression (the coefficients
 * are doubles rounded to 22-bit fixed point, so the same operations in the
 * same order are needed: this file is built with -std=c11, i.e. without
 * floating-point contraction into FMAs, as Pillow's -O2 x86-64 build). */
static double box_filter(double x) {
    if (x > -0.5 && x <= 0.5) return 1.0;
    return 0.0;
}

static double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

static double hamming_filter(double x) {
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x = x * M_PI;
    return sin(x) / x * (0.54 + 0.46 * cos(x));
}

static double bicubic_filter(double x) {
    /* Keys' cubic convolution with a = -0.5 */
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc_filter(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double lanczos_filter(double x) {
    /* truncated sinc */
    if (-3.0 <= x && x < 3.0) return sinc_filter(x) * sinc_filter(x / 3);
    return 0.0;
}

typedef struct {
    double (*filter)(double x);
    double support;
    const char *name;
} filter_t;

/* indexed by mmp_interp */
static const filter_t filters[] = {
    [MMP_INTERP_BILINEAR] = {bilinear_filter, 1.0, "bilinear"},
    [MMP_INTERP_BICUBIC] = {bicubic_filter, 2.0, "bicubic"},
    [MMP_INTERP_LANCZOS] = {lanczos_filter, 3.0, "lanczos"},
    [MMP_INTERP_BOX] = {box_filter, 0.5, "box"},
    [MMP_INTERP_HAMMING] = {hamming_filter, 1.0, "hamming"},
};
#define NFILTERS ((int)(sizeof filters / sizeof *filters))

static const filter_t *get_filter(mmp_interp f) {
    if ((int)f < 0 || (int)f >= NFILTERS) mmp_die("unknown interpolation %d", (int)f);
    return &filters[f];
}

const char *mmp_interp_name(mmp_interp f) { return get_filter(f)->name; }

int mmp_interp_parse(const char *name) {
    for (int i = 0; i < NFILTERS; i++)
        if (!strcmp(name, filters[i].name)) return i;
    return -1;
}

/* Coefficients for resampling [in0, in1) of an axis of inSize pixels into
 * outSize pixels; Pillow's precompute_coeffs + normalize_coeffs_8bpc.
 * Returns ksize; bounds[2*i] = first source index, bounds[2*i+1] = count. */
static int precompute_coeffs(int inSize, float in0, float in1, int outSize, const filter_t *fp,
                             int **boundsp, int32_t **kkp) {
    double support, scale, filterscale, center, ww, ss;
    int xx, x, ksize, xmin, xmax;
    filterscale = scale = (double)(in1 - in0) / outSize;
    if (filterscale < 1.0) filterscale = 1.0;
    support = fp->support * filterscale;
    ksize = (int)ceil(support) * 2 + 1;
    double *pre = mmp_xmalloc((size_t)outSize * (size_t)ksize * sizeof(double));
    int *bounds = mmp_xmalloc((size_t)outSize * 2 * sizeof(int));
    for (xx = 0; xx < outSize; xx++) {
        center = in0 + (xx + 0.5) * scale;
        ww = 0.0;
        ss = 1.0 / filterscale;
        xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        xmax = (int)(center + support + 0.5);
        if (xmax > inSize) xmax = inSize;
        xmax -= xmin;
        double *k = &pre[(size_t)xx * ksize];
        for (x = 0; x < xmax; x++) {
            double w = fp->filter((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        bounds[xx * 2 + 0] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    int32_t *kk = mmp_xmalloc((size_t)outSize * (size_t)ksize * sizeof(int32_t));
    for (size_t i = 0; i < (size_t)outSize * (size_t)ksize; i++) {
        if (pre[i] < 0)
            kk[i] = (int)(-0.5 + pre[i] * (1 << PRECISION_BITS));
        else
            kk[i] = (int)(0.5 + pre[i] * (1 << PRECISION_BITS));
    }
    free(pre);
    *boundsp = bounds;
    *kkp = kk;
    return ksize;
}

static inline uint8_t clip8(int in) {
    int v = in >> PRECISION_BITS; /* arithmetic shift, as Pillow's lookup */
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* Resamples the output window [ox0, ox1) x [oy0, oy1) of a full dw x dh
 * resampling of box; dst is (ox1-ox0) x (oy1-oy0) packed. */
static void resample_window(const uint8_t *src, int sw, int sh, size_t stride, const float box[4],
                            int dw, int dh, int ox0, int ox1, int oy0, int oy1, mmp_interp f,
                            uint8_t *dst) {
    const filter_t *fp = get_filter(f);
    int need_h = dw != sw || box[0] != 0 || box[2] != dw;
    int need_v = dh != sh || box[1] != 0 || box[3] != dh;
    int *bh, *bv;
    int32_t *kh, *kv;
    int ksh = precompute_coeffs(sw, box[0], box[2], dw, fp, &bh, &kh);
    int ksv = precompute_coeffs(sh, box[1], box[3], dh, fp, &bv, &kv);
    int ow = ox1 - ox0;
    /* source rows the window needs */
    int yfirst = bv[oy0 * 2], ylast = bv[(oy1 - 1) * 2] + bv[(oy1 - 1) * 2 + 1];
    const uint8_t *vin;    /* input of the vertical pass */
    size_t vstride;
    int vrow0;             /* source row index of vin's first row */
    uint8_t *tmp = NULL;
    if (need_h) {
        int rows = ylast - yfirst;
        tmp = mmp_xmalloc((size_t)ow * 3 * (size_t)(rows > 0 ? rows : 1));
        for (int y = 0; y < rows; y++) {
            const uint8_t *in = src + (size_t)(y + yfirst) * stride;
            uint8_t *out = tmp + (size_t)y * ow * 3;
#ifdef __SSE4_1__
            /* the 3 channels of a tap in one 4-lane vector (integer sums:
             * same result as the scalar loop) */
            const uint8_t *src_end = src + (size_t)(sh - 1) * stride + (size_t)sw * 3;
            for (int xx = ox0; xx < ox1; xx++) {
                int xmin = bh[xx * 2], xmax = bh[xx * 2 + 1];
                const int32_t *k = &kh[(size_t)xx * ksh];
                const uint8_t *p = in + (size_t)xmin * 3;
                __m128i acc = _mm_set1_epi32(1 << (PRECISION_BITS - 1));
                for (int x = 0; x < xmax; x++) {
                    const uint8_t *q = p + x * 3;
                    int32_t w;
                    if (q + 4 <= src_end)
                        memcpy(&w, q, 4);
                    else
                        w = q[0] | q[1] << 8 | q[2] << 16;
                    __m128i px = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(w));
                    acc = _mm_add_epi32(acc, _mm_mullo_epi32(px, _mm_set1_epi32(k[x])));
                }
                acc = _mm_srai_epi32(acc, PRECISION_BITS);
                int32_t r[4];
                _mm_storeu_si128((__m128i *)r, acc);
                uint8_t *o = out + (size_t)(xx - ox0) * 3;
                o[0] = r[0] < 0 ? 0 : r[0] > 255 ? 255 : (uint8_t)r[0];
                o[1] = r[1] < 0 ? 0 : r[1] > 255 ? 255 : (uint8_t)r[1];
                o[2] = r[2] < 0 ? 0 : r[2] > 255 ? 255 : (uint8_t)r[2];
            }
            continue;
#endif
            for (int xx = ox0; xx < ox1; xx++) {
                int xmin = bh[xx * 2], xmax = bh[xx * 2 + 1];
                const int32_t *k = &kh[(size_t)xx * ksh];
                int ss0 = 1 << (PRECISION_BITS - 1), ss1 = ss0, ss2 = ss0;
                const uint8_t *p = in + (size_t)xmin * 3;
                for (int x = 0; x < xmax; x++) {
                    ss0 += p[x * 3 + 0] * k[x];
                    ss1 += p[x * 3 + 1] * k[x];
                    ss2 += p[x * 3 + 2] * k[x];
                }
                uint8_t *o = out + (size_t)(xx - ox0) * 3;
                o[0] = clip8(ss0);
                o[1] = clip8(ss1);
                o[2] = clip8(ss2);
            }
        }
        vin = tmp;
        vstride = (size_t)ow * 3;
        vrow0 = yfirst;
    } else {
        vin = src + (size_t)ox0 * 3; /* dw == sw: column xx is source column xx */
        vstride = stride;
        vrow0 = 0;
    }
    if (need_v) {
        /* row-wise accumulation: contiguous, vectorizes (integer sums, so
         * the order of the terms does not change the result) */
        size_t rowlen = (size_t)ow * 3;
        int32_t *acc = mmp_xmalloc(rowlen * sizeof(int32_t));
        for (int yy = oy0; yy < oy1; yy++) {
            const int32_t *k = &kv[(size_t)yy * ksv];
            int ymin = bv[yy * 2] - vrow0, ymax = bv[yy * 2 + 1];
            for (size_t i = 0; i < rowlen; i++) acc[i] = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < ymax; y++) {
                const uint8_t *p = vin + (size_t)(ymin + y) * vstride;
                int32_t ky = k[y];
                for (size_t i = 0; i < rowlen; i++) acc[i] += p[i] * ky;
            }
            uint8_t *out = dst + (size_t)(yy - oy0) * rowlen;
            for (size_t i = 0; i < rowlen; i++) out[i] = clip8(acc[i]);
        }
        free(acc);
    } else {
        /* dh == sh: output row yy is vin's row yy (relative to vrow0) */
        for (int yy = oy0; yy < oy1; yy++)
            memcpy(dst + (size_t)(yy - oy0) * ow * 3, vin + (size_t)(yy - vrow0) * vstride,
                   (size_t)ow * 3);
    }
    free(tmp);
    free(bh);
    free(bv);
    free(kh);
    free(kv);
}

void mmp_img_resample_interp(const uint8_t *src, int sw, int sh, size_t stride, const float box[4],
                             uint8_t *dst, int dw, int dh, mmp_interp f) {
    resample_window(src, sw, sh, stride, box, dw, dh, 0, dw, 0, dh, f, dst);
}

void mmp_img_resample(const uint8_t *src, int sw, int sh, size_t stride, const float box[4],
                      uint8_t *dst, int dw, int dh) {
    mmp_img_resample_interp(src, sw, sh, stride, box, dst, dw, dh, MMP_INTERP_BILINEAR);
}

void mmp_img_resize_interp(const mmp_img *in, int w, int h, mmp_interp f, mmp_img *out) {
    mmp_img_alloc(out, w, h);
    float box[4] = {0, 0, (float)in->w, (float)in->h};
    mmp_img_resample_interp(in->px, in->w, in->h, (size_t)in->w * 3, box, out->px, w, h, f);
}

void mmp_img_resize(const mmp_img *in, int w, int h, mmp_img *out) {
    mmp_img_resize_interp(in, w, h, MMP_INTERP_BILINEAR, out);
}

void mmp_tv_resize_dims(int w, int h, int s, int *nw, int *nh) {
    int shrt = w <= h ? w : h, lng = w <= h ? h : w;
    int new_long = (int)((double)((int64_t)s * lng) / (double)shrt);
    if (w <= h) {
        *nw = s;
        *nh = new_long;
    } else {
        *nw = new_long;
        *nh = s;
    }
}

int mmp_tv_center_offset(int size, int crop) {
    /* round((size - crop) / 2.0), half to even */
    double v = (size - crop) / 2.0;
    double r = nearbyint(v); /* default rounding mode: nearest, ties to even */
    return (int)r;
}

int mmp_center_offset(int size, int crop, mmp_crop_round r) {
    if (r == MMP_CROP_ROUND_HF) {
        /* Python's (size - crop) // 2: floor division */
        int d = size - crop;
        return d >= 0 ? d / 2 : -((-d + 1) / 2);
    }
    return mmp_tv_center_offset(size, crop);
}

const char *mmp_crop_round_name(mmp_crop_round r) { return r == MMP_CROP_ROUND_HF ? "hf" : "torchvision"; }

int mmp_crop_pct_resize(int size, double crop_pct) {
    /* math.floor(size / crop_pct) */
    double v = floor((double)size / crop_pct);
    return v > 1 << 30 ? 1 << 30 : (int)v;
}

void mmp_img_resize_center_crop_ex(const mmp_img *in, int resize, int crop, mmp_interp f,
                                   mmp_crop_round r, mmp_img *out) {
    int nw, nh;
    mmp_tv_resize_dims(in->w, in->h, resize, &nw, &nh);
    if (nw < crop || nh < crop)
        mmp_die("center crop %d of a %dx%d resize (of a %dx%d image) would need padding", crop, nw,
                nh, in->w, in->h);
    int top = mmp_center_offset(nh, crop, r), left = mmp_center_offset(nw, crop, r);
    mmp_img_alloc(out, crop, crop);
    float box[4] = {0, 0, (float)in->w, (float)in->h};
    resample_window(in->px, in->w, in->h, (size_t)in->w * 3, box, nw, nh, left, left + crop, top,
                    top + crop, f, out->px);
}

void mmp_img_resize_center_crop(const mmp_img *in, int s, mmp_img *out) {
    mmp_img_resize_center_crop_ex(in, s, s, MMP_INTERP_BILINEAR, MMP_CROP_ROUND_TORCHVISION, out);
}

void mmp_img_resized_crop_interp(const mmp_img *in, int top, int left, int h, int w, int ow, int oh,
                                 mmp_interp f, mmp_img *out) {
    mmp_img_alloc(out, ow, oh);
    float box[4] = {0, 0, (float)w, (float)h};
    mmp_img_resample_interp(in->px + ((size_t)top * in->w + left) * 3, w, h, (size_t)in->w * 3, box,
                            out->px, ow, oh, f);
}

void mmp_img_resized_crop(const mmp_img *in, int top, int left, int h, int w, int ow, int oh,
                          mmp_img *out) {
    mmp_img_resized_crop_interp(in, top, left, h, w, ow, oh, MMP_INTERP_BILINEAR, out);
}

int mmp_prep_image(mmp_img_decoder *d, const mmp_prep *p, const void *buf, size_t n, mmp_img *out,
                   char *err, size_t errlen) {
    /* --crop-pct: Resize(floor(size / crop_pct)) then CenterCrop(size) */
    int rs = p->size > 0 && p->crop_pct > 0 ? mmp_crop_pct_resize(p->size, p->crop_pct) : p->size;
    if (p->size > 0 && rs < p->size) {
        snprintf(err, errlen, "crop_pct %g > 1 would need padding (not supported)", p->crop_pct);
        return -1;
    }
    mmp_img_decode_opts o = {.max_pixels = p->max_pixels};
    if (p->dct_scale && p->size > 0) o.dct_min_w = o.dct_min_h = 2 * rs;
    if (p->dct_scale && p->rw > 0) o.dct_min_w = 2 * p->rw, o.dct_min_h = 2 * p->rh;
    mmp_img im;
    if (mmp_img_decode(d, buf, n, &o, &im, err, errlen)) return -1;
    if (p->size > 0) {
        mmp_img_resize_center_crop_ex(&im, rs, p->size, p->interp, p->crop_round, out);
        mmp_img_free(&im);
    } else if (p->rw > 0) {
        mmp_img_resize_interp(&im, p->rw, p->rh, p->interp, out);
        mmp_img_free(&im);
    } else {
        *out = im;
    }
    return 0;
}
