/* Augmentation ops (see augment.h). */
#include "image/augment.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* RNG                                                                 */
/* ------------------------------------------------------------------ */

uint64_t mmp_splitmix64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void mmp_rng_seed(mmp_rng *r, uint64_t key) { r->s = key; }

uint64_t mmp_rng_u64(mmp_rng *r) {
    r->s += 0x9E3779B97F4A7C15ULL;
    return mmp_splitmix64_mix(r->s);
}

double mmp_rng_uniform(mmp_rng *r) { return (double)(mmp_rng_u64(r) >> 11) * 0x1.0p-53; }

double mmp_rng_range(mmp_rng *r, double a, double b) { return a + (b - a) * mmp_rng_uniform(r); }

int64_t mmp_rng_int(mmp_rng *r, int64_t lo, int64_t hi) {
    if (hi <= lo) return lo;
    uint64_t n = (uint64_t)(hi - lo);
    uint64_t lim = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
    uint64_t v;
    do v = mmp_rng_u64(r);
    while (v >= lim);
    return lo + (int64_t)(v % n);
}

double mmp_rng_normal(mmp_rng *r) {
    double u1 = mmp_rng_uniform(r), u2 = mmp_rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

uint64_t mmp_aug_key(const char *id, uint64_t seed, uint64_t epoch, uint64_t view) {
    uint64_t h = mmp_hash64(id ? id : "", id ? strlen(id) : 0, 0);
    return mmp_splitmix64_mix(mmp_splitmix64_mix(h) ^ mmp_splitmix64_mix(seed ^ 0x243F6A8885A308D3ULL) ^
                              mmp_splitmix64_mix(epoch ^ 0x13198A2E03707344ULL) ^
                              mmp_splitmix64_mix(view ^ 0xA4093822299F31D0ULL));
}

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

/* blend(degenerate, img, factor) in place, on whole buffers (vectorizable) */
void mmp_adjust_brightness(uint8_t *px, size_t npix, double factor) {
    /* degenerate = black: out = (u8)(0 + a * (v - 0)) */
    uint8_t *deg = mmp_xcalloc(npix ? npix * 3 : 1, 1);
    mmp_pil_blend(deg, px, (float)factor, px, npix * 3);
    free(deg);
}

void mmp_adjust_contrast(uint8_t *px, size_t npix, double factor) {
    /* ImageEnhance.Contrast: mean = int(ImageStat.Stat(img.convert("L")).mean[0] + 0.5) */
    uint64_t sum = 0;
    for (size_t i = 0; i < npix; i++) sum += mmp_pil_luma(px + i * 3);
    double mean = npix ? (double)sum / (double)npix : 0;
    int m = (int)(mean + 0.5);
    uint8_t *deg = mmp_xmalloc(npix ? npix * 3 : 1);
    memset(deg, m, npix * 3);
    mmp_pil_blend(deg, px, (float)factor, px, npix * 3);
    free(deg);
}

void mmp_adjust_saturation(uint8_t *px, size_t npix, double factor) {
    uint8_t *deg = mmp_xmalloc(npix ? npix * 3 : 1);
    for (size_t i = 0; i < npix; i++) {
        uint8_t l = mmp_pil_luma(px + i * 3);
        deg[i * 3] = deg[i * 3 + 1] = deg[i * 3 + 2] = l;
    }
    mmp_pil_blend(deg, px, (float)factor, px, npix * 3);
    free(deg);
}

void mmp_rgb_to_grayscale3(uint8_t *px, size_t npix) {
    for (size_t i = 0; i < npix; i++) {
        uint8_t l = mmp_pil_luma(px + i * 3);
        px[i * 3] = px[i * 3 + 1] = px[i * 3 + 2] = l;
    }
}

static inline uint8_t clip8d(int v) { return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v; }

/* Pillow Convert.c rgb2hsv_row (follows colorsys.py) */
static void rgb2hsv(const uint8_t *in, uint8_t *out) {
    float h, s, rc, gc, bc, cr;
    uint8_t r = in[0], g = in[1], b = in[2];
    uint8_t maxc = r > g ? (r > b ? r : b) : (g > b ? g : b);
    uint8_t minc = r < g ? (r < b ? r : b) : (g < b ? g : b);
    uint8_t uh, us, uv = maxc;
    if (minc == maxc) {
        uh = 0;
        us = 0;
    } else {
        cr = (float)(maxc - minc);
        s = cr / (float)maxc;
        rc = ((float)(maxc - r)) / cr;
        gc = ((float)(maxc - g)) / cr;
        bc = ((float)(maxc - b)) / cr;
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
static void hsv2rgb(const uint8_t *in, uint8_t *out) {
    int p, q, t, i;
    float f, fs;
    uint8_t h = in[0], s = in[1], v = in[2];
    if (s == 0) {
        out[0] = out[1] = out[2] = v;
        return;
    }
    i = floor((float)h * 6.0 / 255.0);
    f = (float)h * 6.0 / 255.0 - (float)i;
    fs = ((float)s) / 255.0;
    /* arguments are >= 0 (fs, f in [0, 1]) */
    p = round_pos((float)v * (1.0 - fs));
    q = round_pos((float)v * (1.0 - fs * f));
    t = round_pos((float)v * (1.0 - fs * (1.0 - f)));
    uint8_t up = clip8d(p), uq = clip8d(q), ut = clip8d(t);
    switch (i % 6) {
    case 0: out[0] = v; out[1] = ut; out[2] = up; break;
    case 1: out[0] = uq; out[1] = v; out[2] = up; break;
    case 2: out[0] = up; out[1] = v; out[2] = ut; break;
    case 3: out[0] = up; out[1] = uq; out[2] = v; break;
    case 4: out[0] = ut; out[1] = up; out[2] = v; break;
    default: out[0] = v; out[1] = up; out[2] = uq; break;
    }
}

void mmp_adjust_hue(uint8_t *px, size_t npix, double hue_factor) {
    /* np.uint8(hue_factor * 255): truncation toward zero, then mod 256 */
    uint8_t shift = (uint8_t)(int64_t)(hue_factor * 255.0);
    for (size_t i = 0; i < npix; i++) {
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

void mmp_rrc_params(mmp_rng *r, int width, int height, const double scale[2], const double ratio[2],
                    int *top, int *left, int *ch, int *cw) {
    double area = (double)height * width;
    double lr0 = log(ratio[0]), lr1 = log(ratio[1]);
    for (int k = 0; k < 10; k++) {
        double target = area * mmp_rng_range(r, scale[0], scale[1]);
        double ar = exp(mmp_rng_range(r, lr0, lr1));
        int w = (int)nearbyint(sqrt(target * ar));
        int h = (int)nearbyint(sqrt(target / ar));
        if (0 < w && w <= width && 0 < h && h <= height) {
            *top = (int)mmp_rng_int(r, 0, height - h + 1);
            *left = (int)mmp_rng_int(r, 0, width - w + 1);
            *ch = h;
            *cw = w;
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
        double ea = area * mmp_rng_range(r, scale[0], scale[1]);
        double ar = exp(mmp_rng_range(r, lr0, lr1));
        int h = (int)nearbyint(sqrt(ea * ar));
        int w = (int)nearbyint(sqrt(ea / ar));
        if (!(h < img_h && w < img_w)) continue;
        *top = (int)mmp_rng_int(r, 0, img_h - h + 1);
        *left = (int)mmp_rng_int(r, 0, img_w - w + 1);
        *eh = h;
        *ew = w;
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

char *mmp_aug_describe(const mmp_aug *a) {
    size_t cap = 4096, len = 0;
    char *s = mmp_xmalloc(cap);
    s[0] = 0;
    static const char *pm[] = {"constant", "edge", "reflect", "symmetric"};
    for (int i = 0; i < a->n; i++) {
        const mmp_aug_op *o = &a->ops[i];
        char b[512];
        switch (o->kind) {
        case MMP_AUG_RRC: snprintf(b, sizeof b, "rrc(%d,scale=%g:%g,ratio=%g:%g,p=%g)", o->size, o->scale[0], o->scale[1], o->ratio[0], o->ratio[1], o->p); break;
        case MMP_AUG_PADCROP: snprintf(b, sizeof b, "pad_crop(%d,pad=%d,mode=%s,fill=%d)", o->size, o->pad, pm[o->padmode], o->fill); break;
        case MMP_AUG_RESIZE: snprintf(b, sizeof b, "resize(%d)", o->size); break;
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
        int apply = mmp_rng_uniform(rng) < o->p;
        switch (o->kind) {
        case MMP_AUG_RRC: {
            int t, l, h, w;
            mmp_rrc_params(rng, im.w, im.h, o->scale, o->ratio, &t, &l, &h, &w);
            if (!apply) break;
            mmp_img r;
            mmp_img_resized_crop(&im, t, l, h, w, o->size, o->size, &r);
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
            mmp_img_resize(&im, nw, nh, &r);
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
                                o->erase_random ? (float)mmp_rng_normal(rng) : o->erase_value;
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
