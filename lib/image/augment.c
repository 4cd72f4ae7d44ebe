/* Augmentation ops (see augment.h). */
#include "image/augment.h"

#include <math.h>
#include <pthread.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Pillow colour ops                                                   */
/* ------------------------------------------------------------------ */

void mmp_pil_blend(const uint8_t *im1, const uint8_t *im2, float alpha, uint8_t *out, size_t n) {
    if (alpha >= 0 && alpha <= 1.0) {
        for (size_t x = 0; x < n; x++)
            out[x] = (uint8_t)((int)im1[x] + alpha * ((int)im2[x] - (int)im1[x]));
    } else {
        for (size_t x = 0; x < n; x++) {
            float temp = (float)((int)im1[x] + alpha * ((int)im2[x] - (int)im1[x]));
            out[x] = temp <= 0.0 ? 0 : temp >= 255.0 ? 255 : (uint8_t)temp;
        }
    }
}

/* blend(degenerate, img, factor) in place. With a constant degenerate
 * (brightness: black, contrast: the mean grey) the output is a function of
 * the input byte alone: a 256-entry table computed with mmp_pil_blend's own
 * arithmetic, so the result is that of the blend, byte for byte. */
static void blend_const_lut(uint8_t *px, size_t nbytes, uint8_t deg, float alpha) {
    uint8_t d[256], v[256], lut[256];
    for (int i = 0; i < 256; i++) d[i] = deg, v[i] = (uint8_t)i;
    mmp_pil_blend(d, v, alpha, lut, 256);
    for (size_t i = 0; i < nbytes; i++) px[i] = lut[px[i]];
}

void mmp_adjust_brightness(uint8_t *px, size_t npix, double factor) {
    /* degenerate = black: out = (u8)(0 + a * (v - 0)) */
    blend_const_lut(px, npix * 3, 0, (float)factor);
}

void mmp_adjust_contrast(uint8_t *px, size_t npix, double factor) {
    /* ImageEnhance.Contrast: mean = int(ImageStat.Stat(img.convert("L")).mean[0] + 0.5) */
    uint64_t sum = 0;
    for (size_t i = 0; i < npix; i++) sum += mmp_pil_luma(px + i * 3);
    double mean = npix ? (double)sum / (double)npix : 0;
    int m = (int)(mean + 0.5);
    blend_const_lut(px, npix * 3, (uint8_t)m, (float)factor);
}

void mmp_adjust_saturation(uint8_t *px, size_t npix, double factor) {
    /* degenerate = the pixel's luma in all three channels; blended a block
     * of pixels at a time (no image-sized temporary) */
    enum { B = 1024 };
    uint8_t deg[B * 3];
    for (size_t i0 = 0; i0 < npix; i0 += B) {
        size_t n = npix - i0 < B ? npix - i0 : B;
        uint8_t *p = px + i0 * 3;
        for (size_t i = 0; i < n; i++) deg[i * 3] = deg[i * 3 + 1] = deg[i * 3 + 2] = mmp_pil_luma(p + i * 3);
        mmp_pil_blend(deg, p, (float)factor, p, n * 3);
    }
}

void mmp_rgb_to_grayscale3(uint8_t *px, size_t npix) {
    for (size_t i = 0; i < npix; i++) {
        uint8_t l = mmp_pil_luma(px + i * 3);
        px[i * 3] = px[i * 3 + 1] = px[i * 3 + 2] = l;
    }
}

static inline uint8_t clip8d(int v) { return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v; }

/* Pillow Convert.c's rgb2hsv/hsv2rgb (which follow colorsys.py) divide by
 * small integers only: every float quotient a/b (0 <= a <= b <= 255) and the
 * per-hue and per-saturation terms of hsv2rgb are tabulated once, computed
 * with the very same expressions, so the per-pixel work keeps Pillow's
 * arithmetic without its divisions. tests/test_augment.c checks every colour
 * against a line-by-line port of Pillow. */
static struct {
    float q[256][256]; /* q[b][a] = (float)a / (float)b */
    int hi[256];       /* hsv2rgb: floor(h * 6.0 / 255.0) % 6 */
    float hf[256];     /* hsv2rgb: h * 6.0 / 255.0 - i (as float) */
    float fs[256];     /* hsv2rgb: s / 255.0 (as float) */
} hsvt;
static pthread_once_t hsvt_once = PTHREAD_ONCE_INIT;
static void hsvt_init(void) {
    for (int b = 1; b < 256; b++)
        for (int a = 0; a <= b; a++) hsvt.q[b][a] = (float)a / (float)b;
    for (int h = 0; h < 256; h++) {
        int i = floor((float)h * 6.0 / 255.0);
        hsvt.hf[h] = (float)h * 6.0 / 255.0 - (float)i;
        hsvt.hi[h] = i % 6;
        hsvt.fs[h] = ((float)h) / 255.0;
    }
}

/* Pillow Convert.c rgb2hsv_row */
static inline void rgb2hsv(const uint8_t *in, uint8_t *out) {
    float h, s, rc, gc, bc;
    uint8_t r = in[0], g = in[1], b = in[2];
    uint8_t maxc = r > g ? (r > b ? r : b) : (g > b ? g : b);
    uint8_t minc = r < g ? (r < b ? r : b) : (g < b ? g : b);
    uint8_t uh, us, uv = maxc;
    if (minc == maxc) {
        uh = 0;
        us = 0;
    } else {
        int cr = maxc - minc;
        const float *q = hsvt.q[cr];
        s = hsvt.q[maxc][cr]; /* cr / maxc */
        rc = q[maxc - r];     /* (maxc - r) / cr */
        gc = q[maxc - g];
        bc = q[maxc - b];
        if (r == maxc)
            h = bc - gc;
        else if (g == maxc)
            h = 2.0 + rc - bc;
        else
            h = 4.0 + gc - rc;
        /* fmod(x, 1.0) for x = h/6 + 1 in [5/6, 11/6]: x - 1 is exact there */
        double x = h / 6.0 + 1.0;
        h = x >= 1.0 ? x - 1.0 : x;
        uh = clip8d((int)(h * 255.0));
        us = clip8d((int)(s * 255.0));
    }
    out[0] = uh;
    out[1] = us;
    out[2] = uv;
}

/* C round() (half away from zero) for x >= 0, without the libm call:
 * x - floor(x) is exact, so this equals round(x) for every double x >= 0 */
static inline double round_pos(double x) {
    double f = floor(x);
    return x - f >= 0.5 ? f + 1.0 : f;
}

/* Pillow Convert.c hsv2rgb */
static inline void hsv2rgb(const uint8_t *in, uint8_t *out) {
    int p, q, t;
    uint8_t h = in[0], s = in[1], v = in[2];
    if (s == 0) {
        out[0] = out[1] = out[2] = v;
        return;
    }
    float f = hsvt.hf[h], fs = hsvt.fs[s];
    /* arguments are >= 0 (fs, f in [0, 1]) */
    p = round_pos((float)v * (1.0 - fs));
    q = round_pos((float)v * (1.0 - fs * f));
    t = round_pos((float)v * (1.0 - fs * (1.0 - f)));
    uint8_t up = clip8d(p), uq = clip8d(q), ut = clip8d(t);
    switch (hsvt.hi[h]) {
    case 0: out[0] = v; out[1] = ut; out[2] = up; break;
    case 1: out[0] = uq; out[1] = v; out[2] = up; break;
    case 2: out[0] = up; out[1] = v; out[2] = ut; break;
    case 3: out[0] = up; out[1] = uq; out[2] = v; break;
    case 4: out[0] = ut; out[1] = up; out[2] = v; break;
    default: out[0] = v; out[1] = up; out[2] = uq; break;
    }
}

#ifdef __AVX2__
/* rgb2hsv, the hue shift and hsv2rgb above on 8 pixels at once: the same
 * float and double operations lane by lane (IEEE results do not depend on
 * the vector width), the branches as blends, so no mispredicted branch per
 * pixel. Doubles run in two halves of 4 lanes. */
static inline __m256d lo_pd(__m256 x) { return _mm256_cvtps_pd(_mm256_castps256_ps128(x)); }
static inline __m256d hi_pd(__m256 x) { return _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)); }
static inline __m256 to_ps(__m256d lo, __m256d hi) { return _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo)); }
static inline __m256i to_epi32(__m256d lo, __m256d hi) { /* truncation toward zero, as (int) */
    return _mm256_set_m128i(_mm256_cvttpd_epi32(hi), _mm256_cvttpd_epi32(lo));
}
static inline __m256d round_pos_pd(__m256d x) {
    __m256d f = _mm256_floor_pd(x);
    __m256d up = _mm256_cmp_pd(_mm256_sub_pd(x, f), _mm256_set1_pd(0.5), _CMP_GE_OQ);
    return _mm256_add_pd(f, _mm256_and_pd(up, _mm256_set1_pd(1.0)));
}
static inline __m256i clip8_epi32(__m256i v) {
    return _mm256_min_epi32(_mm256_max_epi32(v, _mm256_setzero_si256()), _mm256_set1_epi32(255));
}
/* x * (1.0 - a) for x, a double; returns round_pos of it for both halves as int32 */
static void hue8(const uint8_t *in, uint8_t *out, int shift) {
    int32_t ri[8], gi[8], bi[8];
    for (int k = 0; k < 8; k++) ri[k] = in[3 * k], gi[k] = in[3 * k + 1], bi[k] = in[3 * k + 2];
    __m256i r = _mm256_loadu_si256((const __m256i *)ri), g = _mm256_loadu_si256((const __m256i *)gi),
            b = _mm256_loadu_si256((const __m256i *)bi);
    __m256i maxc = _mm256_max_epi32(r, _mm256_max_epi32(g, b)), minc = _mm256_min_epi32(r, _mm256_min_epi32(g, b));
    __m256i cr = _mm256_sub_epi32(maxc, minc);
    __m256i same = _mm256_cmpeq_epi32(cr, _mm256_setzero_si256());
    const float *q = &hsvt.q[0][0];
    __m256i row = _mm256_slli_epi32(cr, 8);
    __m256 s = _mm256_i32gather_ps(q, _mm256_add_epi32(_mm256_slli_epi32(maxc, 8), cr), 4);
    __m256 rc = _mm256_i32gather_ps(q, _mm256_add_epi32(row, _mm256_sub_epi32(maxc, r)), 4);
    __m256 gc = _mm256_i32gather_ps(q, _mm256_add_epi32(row, _mm256_sub_epi32(maxc, g)), 4);
    __m256 bc = _mm256_i32gather_ps(q, _mm256_add_epi32(row, _mm256_sub_epi32(maxc, b)), 4);
    __m256i isr = _mm256_cmpeq_epi32(r, maxc), isg = _mm256_andnot_si256(isr, _mm256_cmpeq_epi32(g, maxc));
    __m256 hr = _mm256_sub_ps(bc, gc); /* float arithmetic */
    __m256d two = _mm256_set1_pd(2.0), four = _mm256_set1_pd(4.0);
    __m256 hg = to_ps(_mm256_sub_pd(_mm256_add_pd(two, lo_pd(rc)), lo_pd(bc)),
                      _mm256_sub_pd(_mm256_add_pd(two, hi_pd(rc)), hi_pd(bc)));
    __m256 hb = to_ps(_mm256_sub_pd(_mm256_add_pd(four, lo_pd(gc)), lo_pd(rc)),
                      _mm256_sub_pd(_mm256_add_pd(four, hi_pd(gc)), hi_pd(rc)));
    __m256 h = _mm256_blendv_ps(_mm256_blendv_ps(hb, hg, _mm256_castsi256_ps(isg)), hr, _mm256_castsi256_ps(isr));
    __m256d one = _mm256_set1_pd(1.0), six = _mm256_set1_pd(6.0), d255 = _mm256_set1_pd(255.0);
    __m256d xl = _mm256_add_pd(_mm256_div_pd(lo_pd(h), six), one), xh = _mm256_add_pd(_mm256_div_pd(hi_pd(h), six), one);
    xl = _mm256_blendv_pd(xl, _mm256_sub_pd(xl, one), _mm256_cmp_pd(xl, one, _CMP_GE_OQ));
    xh = _mm256_blendv_pd(xh, _mm256_sub_pd(xh, one), _mm256_cmp_pd(xh, one, _CMP_GE_OQ));
    h = to_ps(xl, xh); /* the float h of the scalar code */
    __m256i uh = clip8_epi32(to_epi32(_mm256_mul_pd(lo_pd(h), d255), _mm256_mul_pd(hi_pd(h), d255)));
    __m256i us = clip8_epi32(to_epi32(_mm256_mul_pd(lo_pd(s), d255), _mm256_mul_pd(hi_pd(s), d255)));
    uh = _mm256_andnot_si256(same, uh);
    us = _mm256_andnot_si256(same, us);
    /* hsv2rgb of (uh + shift, us, maxc) */
    __m256i hh = _mm256_and_si256(_mm256_add_epi32(uh, _mm256_set1_epi32(shift)), _mm256_set1_epi32(255));
    __m256 f = _mm256_i32gather_ps(hsvt.hf, hh, 4), fs = _mm256_i32gather_ps(hsvt.fs, us, 4);
    __m256i hi = _mm256_i32gather_epi32(hsvt.hi, hh, 4);
    __m256 v = _mm256_cvtepi32_ps(maxc);
    __m256d vl = lo_pd(v), vh = hi_pd(v), fsl = lo_pd(fs), fsh = hi_pd(fs), fl = lo_pd(f), fh = hi_pd(f);
    __m256 fsf = _mm256_mul_ps(fs, f); /* float product, as fs * f in C */
    __m256i P = clip8_epi32(to_epi32(round_pos_pd(_mm256_mul_pd(vl, _mm256_sub_pd(one, fsl))),
                                     round_pos_pd(_mm256_mul_pd(vh, _mm256_sub_pd(one, fsh)))));
    __m256i Q = clip8_epi32(to_epi32(round_pos_pd(_mm256_mul_pd(vl, _mm256_sub_pd(one, lo_pd(fsf)))),
                                     round_pos_pd(_mm256_mul_pd(vh, _mm256_sub_pd(one, hi_pd(fsf))))));
    __m256i T = clip8_epi32(
        to_epi32(round_pos_pd(_mm256_mul_pd(vl, _mm256_sub_pd(one, _mm256_mul_pd(fsl, _mm256_sub_pd(one, fl))))),
                 round_pos_pd(_mm256_mul_pd(vh, _mm256_sub_pd(one, _mm256_mul_pd(fsh, _mm256_sub_pd(one, fh)))))));
    __m256i V = maxc;
#define SEL(m, a, b) _mm256_blendv_epi8((b), (a), (m)) /* m ? a : b */
#define IS(k) _mm256_cmpeq_epi32(hi, _mm256_set1_epi32(k))
    /* case 0: v t p; 1: q v p; 2: p v t; 3: p q v; 4: t p v; 5: v p q */
    __m256i R = SEL(_mm256_or_si256(IS(0), IS(5)), V, SEL(IS(1), Q, SEL(_mm256_or_si256(IS(2), IS(3)), P, T)));
    __m256i G = SEL(IS(0), T, SEL(_mm256_or_si256(IS(1), IS(2)), V, SEL(IS(3), Q, P)));
    __m256i B = SEL(_mm256_or_si256(IS(0), IS(1)), P, SEL(IS(2), T, SEL(_mm256_or_si256(IS(3), IS(4)), V, Q)));
    __m256i gray = _mm256_cmpeq_epi32(us, _mm256_setzero_si256());
    R = SEL(gray, V, R);
    G = SEL(gray, V, G);
    B = SEL(gray, V, B);
#undef SEL
#undef IS
    _mm256_storeu_si256((__m256i *)ri, R);
    _mm256_storeu_si256((__m256i *)gi, G);
    _mm256_storeu_si256((__m256i *)bi, B);
    for (int k = 0; k < 8; k++) out[3 * k] = (uint8_t)ri[k], out[3 * k + 1] = (uint8_t)gi[k], out[3 * k + 2] = (uint8_t)bi[k];
}
#endif

void mmp_adjust_hue(uint8_t *px, size_t npix, double hue_factor) {
    pthread_once(&hsvt_once, hsvt_init);
    /* np.uint8(hue_factor * 255): truncation toward zero, then mod 256 */
    uint8_t shift = (uint8_t)(int64_t)(hue_factor * 255.0);
    size_t i = 0;
#ifdef __AVX2__
    for (; i + 8 <= npix; i += 8) hue8(px + i * 3, px + i * 3, shift);
#endif
    for (; i < npix; i++) {
        uint8_t hsv[3];
        rgb2hsv(px + i * 3, hsv);
        hsv[0] = (uint8_t)(hsv[0] + shift);
        hsv2rgb(hsv, px + i * 3);
    }
}

void mmp_hflip(mmp_img *im) {
    for (int y = 0; y < im->h; y++) {
        uint8_t *row = im->px + (size_t)y * im->w * 3;
        for (int a = 0, b = im->w - 1; a < b; a++, b--)
            for (int c = 0; c < 3; c++) {
                uint8_t t = row[a * 3 + c];
                row[a * 3 + c] = row[b * 3 + c];
                row[b * 3 + c] = t;
            }
    }
}

/* numpy.pad index mapping for one axis; -1 = constant */
static int pad_index(int i, int n, int mode) {
    if (i >= 0 && i < n) return i;
    if (mode == MMP_PAD_CONSTANT) return -1;
    if (mode == MMP_PAD_EDGE) return i < 0 ? 0 : n - 1;
    if (n == 1) return 0;
    if (mode == MMP_PAD_REFLECT) {
        int period = 2 * (n - 1);
        int k = ((i % period) + period) % period;
        return k < n ? k : period - k;
    }
    /* symmetric */
    int period = 2 * n;
    int k = ((i % period) + period) % period;
    return k < n ? k : period - 1 - k;
}

void mmp_pad(const mmp_img *in, int p, int mode, uint8_t fill, mmp_img *out) {
    mmp_img_alloc(out, in->w + 2 * p, in->h + 2 * p);
    for (int y = 0; y < out->h; y++) {
        int sy = pad_index(y - p, in->h, mode);
        for (int x = 0; x < out->w; x++) {
            int sx = pad_index(x - p, in->w, mode);
            uint8_t *o = out->px + ((size_t)y * out->w + x) * 3;
            if (sy < 0 || sx < 0) {
                o[0] = o[1] = o[2] = fill;
            } else {
                const uint8_t *s = in->px + ((size_t)sy * in->w + sx) * 3;
                o[0] = s[0];
                o[1] = s[1];
                o[2] = s[2];
            }
        }
    }
}

void mmp_to_tensor_normalize(const mmp_img *in, const float mean[3], const float std[3], float *out) {
    size_t n = (size_t)in->w * in->h;
    for (int c = 0; c < 3; c++) {
        float *o = out + (size_t)c * n;
        for (size_t i = 0; i < n; i++) {
            float v = (float)in->px[i * 3 + c] / 255.0f;
            v = v - mean[c];
            o[i] = v / std[c];
        }
    }
}

/* ------------------------------------------------------------------ */
/* random parameters (torchvision get_params)                          */
/* ------------------------------------------------------------------ */

/* one try of torchvision's get_params loops: an area in scale * area and an
 * aspect ratio ar log-uniform in [lr0, lr1]; *a = round(sqrt(area * ar)),
 * *b = round(sqrt(area / ar)) */
static void rand_box(mmp_rng *r, double area, const double scale[2], double lr0, double lr1, int *a, int *b) {
    double target = area * mmp_rng_range(r, scale[0], scale[1]);
    double ar = exp(mmp_rng_range(r, lr0, lr1));
    *a = (int)nearbyint(sqrt(target * ar));
    *b = (int)nearbyint(sqrt(target / ar));
}

/* a w x h box at a uniform position in a width x height image */
static void rand_place(mmp_rng *r, int width, int height, int w, int h, int *top, int *left, int *bh, int *bw) {
    *top = (int)mmp_rng_int(r, 0, height - h + 1);
    *left = (int)mmp_rng_int(r, 0, width - w + 1);
    *bh = h;
    *bw = w;
}

void mmp_rrc_params(mmp_rng *r, int width, int height, const double scale[2], const double ratio[2],
                    int *top, int *left, int *ch, int *cw) {
    double area = (double)height * width;
    double lr0 = log(ratio[0]), lr1 = log(ratio[1]);
    for (int k = 0; k < 10; k++) {
        int w, h;
        rand_box(r, area, scale, lr0, lr1, &w, &h);
        if (0 < w && w <= width && 0 < h && h <= height) {
            rand_place(r, width, height, w, h, top, left, ch, cw);
            return;
        }
    }
    double in_ratio = (double)width / (double)height;
    double rmin = ratio[0] < ratio[1] ? ratio[0] : ratio[1];
    double rmax = ratio[0] < ratio[1] ? ratio[1] : ratio[0];
    int w, h;
    if (in_ratio < rmin) {
        w = width;
        h = (int)nearbyint(w / rmin);
    } else if (in_ratio > rmax) {
        h = height;
        w = (int)nearbyint(h * rmax);
    } else {
        w = width;
        h = height;
    }
    *top = (height - h) / 2;
    *left = (width - w) / 2;
    *ch = h;
    *cw = w;
}

int mmp_erase_params(mmp_rng *r, int img_w, int img_h, const double scale[2], const double ratio[2],
                     int *top, int *left, int *eh, int *ew) {
    double area = (double)img_h * img_w;
    double lr0 = log(ratio[0]), lr1 = log(ratio[1]);
    for (int k = 0; k < 10; k++) {
        int w, h;
        rand_box(r, area, scale, lr0, lr1, &h, &w);
        if (!(h < img_h && w < img_w)) continue;
        rand_place(r, img_w, img_h, w, h, top, left, eh, ew);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* parsing                                                             */
/* ------------------------------------------------------------------ */

static int perr(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

void mmp_aug_init(mmp_aug *a) {
    memset(a, 0, sizeof *a);
    a->out_dtype = MMP_F32;
}

static int parse_d(const char *s, double *v) {
    char *end;
    *v = strtod(s, &end);
    return end != s && *end == 0 && isfinite(*v) ? 0 : -1;
}

static int parse_pair(const char *s, double out[2]) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    char *c = strchr(buf, ':');
    if (!c) return -1;
    *c = 0;
    return parse_d(buf, &out[0]) || parse_d(c + 1, &out[1]) || out[0] > out[1] ? -1 : 0;
}

static int parse_prob(const char *s, double *p) { return parse_d(s, p) || *p < 0 || *p > 1 ? -1 : 0; }

static const char *const op_names[] = {"--rrc", "--pad-crop", "--resize", "--center-crop", "--hflip",
                                       "--jitter", "--gray", "--erase", "--normalize"};

int mmp_aug_is_op(const char *flag) {
    for (int i = 0; i < 9; i++)
        if (!strcmp(flag, op_names[i])) return 1;
    return 0;
}

/* Splits "v0,k=v,..." into positional values and key=value options. */
int mmp_aug_parse(mmp_aug *a, const char *flag, const char *value, char *err, size_t errlen) {
    const char *const *names = op_names;
    int kind = 0;
    for (int i = 0; i < 9; i++)
        if (!strcmp(flag, names[i])) kind = i + 1;
    if (!kind) return 1;
    if (a->n >= MMP_AUG_MAX_OPS) return perr(err, errlen, "too many augment ops (max %d)", MMP_AUG_MAX_OPS);
    if (mmp_aug_normalizes(a) && kind != MMP_AUG_ERASE)
        return perr(err, errlen, "%s must come before --normalize (only --erase may follow it)", flag);
    mmp_aug_op op;
    memset(&op, 0, sizeof op);
    op.kind = (mmp_aug_kind)kind;
    op.p = 1.0;
    op.interp = -1;
    op.scale[0] = 0.08, op.scale[1] = 1.0;
    op.ratio[0] = 3.0 / 4.0, op.ratio[1] = 4.0 / 3.0;
    if (kind == MMP_AUG_ERASE) {
        op.p = 0.5;
        op.scale[0] = 0.02, op.scale[1] = 0.33;
        op.ratio[0] = 0.3, op.ratio[1] = 3.3;
    }
    if (kind == MMP_AUG_NORMALIZE) {
        if (!strcmp(value, "imagenet")) {
            float m[3] = {0.485f, 0.456f, 0.406f}, s[3] = {0.229f, 0.224f, 0.225f};
            memcpy(op.mean, m, sizeof m);
            memcpy(op.std, s, sizeof s);
        } else {
            double v[6];
            char buf[256], *save = NULL;
            snprintf(buf, sizeof buf, "%s", value);
            int n = 0;
            for (char *t = strtok_r(buf, ",/", &save); t; t = strtok_r(NULL, ",/", &save)) {
                if (n >= 6 || parse_d(t, &v[n])) {
                    n = -1;
                    break;
                }
                n++;
            }
            if (n != 6 || !strchr(value, '/'))
                return perr(err, errlen, "bad value for --normalize: want imagenet or m,m,m/s,s,s");
            for (int c = 0; c < 3; c++) {
                op.mean[c] = (float)v[c];
                op.std[c] = (float)v[3 + c];
                if (!(op.std[c] > 0)) return perr(err, errlen, "--normalize: std must be > 0");
            }
        }
        a->ops[a->n++] = op;
        return 0;
    }
    char buf[512], *save = NULL;
    snprintf(buf, sizeof buf, "%s", value);
    int pos = 0;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        int bad = 0;
        if (!eq) {
            double v;
            if (parse_d(t, &v)) bad = 1;
            else if (kind == MMP_AUG_JITTER) {
                if (pos >= 4 || v < 0 || (pos == 3 && v > 0.5)) bad = 1;
                else op.jitter[pos] = v;
            } else if (pos > 0) {
                bad = 1;
            } else if (kind == MMP_AUG_HFLIP || kind == MMP_AUG_GRAY || kind == MMP_AUG_ERASE) {
                if (v < 0 || v > 1) bad = 1;
                op.p = v;
            } else {
                if (v < 1 || v > 1 << 16 || v != floor(v)) bad = 1;
                op.size = (int)v;
            }
            pos++;
        } else {
            *eq = 0;
            const char *k = t, *v = eq + 1;
            double d;
            if (!strcmp(k, "p")) bad = parse_prob(v, &op.p);
            else if (!strcmp(k, "scale") && (kind == MMP_AUG_RRC || kind == MMP_AUG_ERASE))
                bad = parse_pair(v, op.scale) || op.scale[0] < 0;
            else if (!strcmp(k, "ratio") && (kind == MMP_AUG_RRC || kind == MMP_AUG_ERASE))
                bad = parse_pair(v, op.ratio) || op.ratio[0] <= 0;
            else if (!strcmp(k, "pad") && kind == MMP_AUG_PADCROP)
                bad = parse_d(v, &d) || d < 0 || d > 4096 || d != floor(d), op.pad = (int)d;
            else if (!strcmp(k, "fill") && kind == MMP_AUG_PADCROP)
                bad = parse_d(v, &d) || d < 0 || d > 255 || d != floor(d), op.fill = (int)d;
            else if (!strcmp(k, "mode") && kind == MMP_AUG_PADCROP) {
                if (!strcmp(v, "constant")) op.padmode = MMP_PAD_CONSTANT;
                else if (!strcmp(v, "edge")) op.padmode = MMP_PAD_EDGE;
                else if (!strcmp(v, "reflect")) op.padmode = MMP_PAD_REFLECT;
                else if (!strcmp(v, "symmetric")) op.padmode = MMP_PAD_SYMMETRIC;
                else bad = 1;
            } else if (!strcmp(k, "interp") && (kind == MMP_AUG_RRC || kind == MMP_AUG_RESIZE)) {
                op.interp = mmp_interp_parse(v);
                if (op.interp < 0)
                    return perr(err, errlen, "bad value for %s: interp=%s (want bilinear, bicubic, lanczos, box or hamming)",
                                flag, v);
            } else if (!strcmp(k, "value") && kind == MMP_AUG_ERASE) {
                if (!strcmp(v, "random")) op.erase_random = 1;
                else bad = parse_d(v, &d), op.erase_value = (float)d;
            } else
                return perr(err, errlen, "%s: unknown option '%s'", flag, k);
            if (bad) return perr(err, errlen, "bad value for %s: %s=%s", flag, k, v);
        }
        if (bad) return perr(err, errlen, "bad value for %s: %s", flag, value);
    }
    int needsize = kind == MMP_AUG_RRC || kind == MMP_AUG_PADCROP || kind == MMP_AUG_RESIZE ||
                   kind == MMP_AUG_CCROP;
    if (needsize && op.size <= 0) return perr(err, errlen, "%s needs a size (e.g. %s 224)", flag, flag);
    if (kind == MMP_AUG_JITTER && pos == 0)
        return perr(err, errlen, "--jitter needs B,C,S,H (e.g. 0.4,0.4,0.4,0.1)");
    if ((kind == MMP_AUG_HFLIP || kind == MMP_AUG_GRAY) && pos == 0)
        return perr(err, errlen, "%s needs a probability", flag);
    a->ops[a->n++] = op;
    return 0;
}

int mmp_aug_normalizes(const mmp_aug *a) {
    for (int i = 0; i < a->n; i++)
        if (a->ops[i].kind == MMP_AUG_NORMALIZE) return 1;
    return 0;
}

void mmp_aug_out_shape(const mmp_aug *a, int64_t shape[3]) {
    int64_t h = -1, w = -1;
    for (int i = 0; i < a->n; i++) {
        const mmp_aug_op *o = &a->ops[i];
        if (o->kind == MMP_AUG_RRC || o->kind == MMP_AUG_PADCROP || o->kind == MMP_AUG_CCROP)
            h = w = o->size;
        else if (o->kind == MMP_AUG_RESIZE)
            h = w = -1;
    }
    if (mmp_aug_normalizes(a)) {
        shape[0] = 3, shape[1] = h, shape[2] = w;
    } else {
        shape[0] = h, shape[1] = w, shape[2] = 3;
    }
}

static mmp_interp aug_interp(const mmp_aug *a, const mmp_aug_op *o) {
    return o->interp >= 0 ? (mmp_interp)o->interp : a->interp;
}

char *mmp_aug_describe(const mmp_aug *a) {
    size_t cap = 4096, len = 0;
    char *s = mmp_xmalloc(cap);
    s[0] = 0;
    static const char *pm[] = {"constant", "edge", "reflect", "symmetric"};
    for (int i = 0; i < a->n; i++) {
        const mmp_aug_op *o = &a->ops[i];
        char b[512], in[64] = "";
        mmp_interp f = aug_interp(a, o);
        /* the default filter is not named (descriptions of bilinear pipelines unchanged) */
        if (f != MMP_INTERP_BILINEAR) snprintf(in, sizeof in, ",interp=%s", mmp_interp_name(f));
        switch (o->kind) {
        case MMP_AUG_RRC: snprintf(b, sizeof b, "rrc(%d,scale=%g:%g,ratio=%g:%g,p=%g%s)", o->size, o->scale[0], o->scale[1], o->ratio[0], o->ratio[1], o->p, in); break;
        case MMP_AUG_PADCROP: snprintf(b, sizeof b, "pad_crop(%d,pad=%d,mode=%s,fill=%d)", o->size, o->pad, pm[o->padmode], o->fill); break;
        case MMP_AUG_RESIZE: snprintf(b, sizeof b, "resize(%d%s)", o->size, in); break;
        case MMP_AUG_CCROP: snprintf(b, sizeof b, "center_crop(%d)", o->size); break;
        case MMP_AUG_HFLIP: snprintf(b, sizeof b, "hflip(p=%g)", o->p); break;
        case MMP_AUG_JITTER: snprintf(b, sizeof b, "color_jitter(%g,%g,%g,%g,p=%g)", o->jitter[0], o->jitter[1], o->jitter[2], o->jitter[3], o->p); break;
        case MMP_AUG_GRAY: snprintf(b, sizeof b, "grayscale(p=%g)", o->p); break;
        case MMP_AUG_ERASE:
            if (o->erase_random) snprintf(b, sizeof b, "erase(p=%g,scale=%g:%g,ratio=%g:%g,value=random)", o->p, o->scale[0], o->scale[1], o->ratio[0], o->ratio[1]);
            else snprintf(b, sizeof b, "erase(p=%g,scale=%g:%g,ratio=%g:%g,value=%g)", o->p, o->scale[0], o->scale[1], o->ratio[0], o->ratio[1], o->erase_value);
            break;
        case MMP_AUG_NORMALIZE: snprintf(b, sizeof b, "normalize(mean=%g,%g,%g,std=%g,%g,%g)", o->mean[0], o->mean[1], o->mean[2], o->std[0], o->std[1], o->std[2]); break;
        default: b[0] = 0;
        }
        size_t bl = strlen(b);
        if (len + bl + 2 > cap) s = mmp_xrealloc(s, cap = (len + bl + 2) * 2);
        if (len) s[len++] = ' ';
        memcpy(s + len, b, bl + 1);
        len += bl;
    }
    return s;
}

/* ------------------------------------------------------------------ */
/* apply                                                               */
/* ------------------------------------------------------------------ */

static void img_replace(mmp_img *dst, mmp_img *src) {
    mmp_img_free(dst);
    *dst = *src;
    src->px = NULL;
}

int mmp_aug_apply(const mmp_aug *a, mmp_rng *rng, const mmp_tensor *in, mmp_tensor *out, char *err,
                  size_t errlen) {
    if (in->dtype != MMP_U8 || in->ndim != 3 || in->shape[2] != 3 || in->shape[0] < 1 ||
        in->shape[1] < 1) {
        char sh[128];
        mmp_shape_str(in->ndim, in->shape, sh, sizeof sh);
        return perr(err, errlen, "\"image\" must be u8 [H,W,3] (as mmp-decode writes), got %s %s",
                    mmp_dtype_name(in->dtype), sh);
    }
    mmp_img im;
    mmp_img_alloc(&im, (int)in->shape[1], (int)in->shape[0]);
    memcpy(im.px, in->data, (size_t)im.w * im.h * 3);
    float *fl = NULL; /* normalized CHW, once --normalize ran */
    int rc = 0;
    for (int k = 0; k < a->n && rc == 0; k++) {
        const mmp_aug_op *o = &a->ops[k];
        /* every op draws its coin first: the stream layout does not depend on p */
        int apply = mmp_rng_uniform53(rng) < o->p;
        switch (o->kind) {
        case MMP_AUG_RRC: {
            int t, l, h, w;
            mmp_rrc_params(rng, im.w, im.h, o->scale, o->ratio, &t, &l, &h, &w);
            if (!apply) break;
            mmp_img r;
            mmp_img_resized_crop_interp(&im, t, l, h, w, o->size, o->size, aug_interp(a, o), &r);
            img_replace(&im, &r);
            break;
        }
        case MMP_AUG_PADCROP: {
            mmp_img p;
            mmp_pad(&im, o->pad, o->padmode, (uint8_t)o->fill, &p);
            if (p.w < o->size || p.h < o->size) {
                rc = perr(err, errlen, "image %dx%d (padded %dx%d) is smaller than the crop %d",
                          im.w, im.h, p.w, p.h, o->size);
                mmp_img_free(&p);
                break;
            }
            int i = (int)mmp_rng_int(rng, 0, p.h - o->size + 1);
            int j = (int)mmp_rng_int(rng, 0, p.w - o->size + 1);
            mmp_img c;
            mmp_img_alloc(&c, o->size, o->size);
            for (int y = 0; y < o->size; y++)
                memcpy(c.px + (size_t)y * o->size * 3, p.px + ((size_t)(y + i) * p.w + j) * 3,
                       (size_t)o->size * 3);
            mmp_img_free(&p);
            img_replace(&im, &c);
            break;
        }
        case MMP_AUG_RESIZE: {
            int nw, nh;
            mmp_tv_resize_dims(im.w, im.h, o->size, &nw, &nh);
            if (nw < 1 || nh < 1) {
                rc = perr(err, errlen, "resize(%d) of a %dx%d image is empty", o->size, im.w, im.h);
                break;
            }
            mmp_img r;
            mmp_img_resize_interp(&im, nw, nh, aug_interp(a, o), &r);
            img_replace(&im, &r);
            break;
        }
        case MMP_AUG_CCROP: {
            if (im.w < o->size || im.h < o->size) {
                rc = perr(err, errlen, "image %dx%d is smaller than center-crop %d", im.w, im.h, o->size);
                break;
            }
            int t = mmp_tv_center_offset(im.h, o->size), l = mmp_tv_center_offset(im.w, o->size);
            mmp_img c;
            mmp_img_alloc(&c, o->size, o->size);
            for (int y = 0; y < o->size; y++)
                memcpy(c.px + (size_t)y * o->size * 3, im.px + ((size_t)(y + t) * im.w + l) * 3,
                       (size_t)o->size * 3);
            img_replace(&im, &c);
            break;
        }
        case MMP_AUG_HFLIP:
            if (apply) mmp_hflip(&im);
            break;
        case MMP_AUG_JITTER: {
            /* ColorJitter.get_params: randperm(4), then each factor */
            int order[4] = {0, 1, 2, 3};
            for (int i = 3; i > 0; i--) {
                int j = (int)mmp_rng_int(rng, 0, i + 1);
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
            double f[4];
            int use[4];
            for (int i = 0; i < 4; i++) {
                double v = o->jitter[i];
                use[i] = v > 0;
                if (i < 3) f[i] = use[i] ? mmp_rng_range(rng, v < 1 ? 1 - v : 0, 1 + v) : 1;
                else f[i] = use[i] ? mmp_rng_range(rng, -v, v) : 0;
            }
            if (!apply) break;
            size_t np = (size_t)im.w * im.h;
            for (int i = 0; i < 4; i++) {
                int fn = order[i];
                if (!use[fn]) continue;
                if (fn == 0) mmp_adjust_brightness(im.px, np, f[0]);
                else if (fn == 1) mmp_adjust_contrast(im.px, np, f[1]);
                else if (fn == 2) mmp_adjust_saturation(im.px, np, f[2]);
                else mmp_adjust_hue(im.px, np, f[3]);
            }
            break;
        }
        case MMP_AUG_GRAY:
            if (apply) mmp_rgb_to_grayscale3(im.px, (size_t)im.w * im.h);
            break;
        case MMP_AUG_ERASE: {
            int t, l, h, w;
            int found = mmp_erase_params(rng, im.w, im.h, o->scale, o->ratio, &t, &l, &h, &w);
            if (!apply || !found) break;
            if (fl) {
                size_t n = (size_t)im.w * im.h;
                for (int c = 0; c < 3; c++)
                    for (int y = t; y < t + h; y++)
                        for (int x = l; x < l + w; x++)
                            fl[c * n + (size_t)y * im.w + x] =
                                o->erase_random ? (float)mmp_rng_normal_log1m(rng) : o->erase_value;
            } else {
                int v = (int)o->erase_value;
                uint8_t u = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                for (int y = t; y < t + h; y++)
                    for (int x = l; x < l + w; x++)
                        for (int c = 0; c < 3; c++)
                            im.px[((size_t)y * im.w + x) * 3 + c] =
                                o->erase_random ? (uint8_t)mmp_rng_int(rng, 0, 256) : u;
            }
            break;
        }
        case MMP_AUG_NORMALIZE:
            fl = mmp_xmalloc((size_t)im.w * im.h * 3 * sizeof(float));
            mmp_to_tensor_normalize(&im, o->mean, o->std, fl);
            break;
        }
    }
    if (rc == 0) {
        if (fl) {
            int64_t shape[3] = {3, im.h, im.w};
            mmp_tensor_alloc(out, a->out_dtype, 3, shape);
            if (a->out_dtype == MMP_F32)
                memcpy(out->data, fl, out->nbytes);
            else
                mmp_f32_to_dtype(fl, (size_t)3 * im.w * im.h, a->out_dtype, out->data);
        } else {
            int64_t shape[3] = {im.h, im.w, 3};
            mmp_tensor_alloc(out, MMP_U8, 3, shape);
            memcpy(out->data, im.px, out->nbytes);
        }
    }
    free(fl);
    mmp_img_free(&im);
    return rc;
}
