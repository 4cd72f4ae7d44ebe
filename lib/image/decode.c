/* JPEG (TurboJPEG API) and PNG (libpng) decoding into packed RGB u8, with
 * the pixel conventions of PIL.Image.open(f).convert("RGB"). */
#include "image/image.h"

#include "mmp.h"

#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

struct mmp_img_decoder {
    tjhandle tj;
};

mmp_img_decoder *mmp_img_decoder_new(void) {
    mmp_img_decoder *d = mmp_xcalloc(1, sizeof *d);
    d->tj = tjInitDecompress();
    if (!d->tj) mmp_die("cannot initialize TurboJPEG: %s", tjGetErrorStr2(NULL));
    return d;
}

/* After a failed call, a TurboJPEG handle can keep the failed image's state
 * (libjpeg-turbo 2.1: the next tjDecompressHeader3 on a good JPEG then reports
 * the previous file's garbage size): a failure gets a fresh handle, so each
 * image is decoded as if alone, like Pillow's per-image decoder. The message
 * is formatted first, since it is the old handle's error string. */
static int tj_fail(mmp_img_decoder *d, char *err, size_t errlen, const char *what) {
    mmp_errf(err, errlen, "%s: %s", what, tjGetErrorStr2(d->tj));
    tjDestroy(d->tj);
    d->tj = tjInitDecompress();
    if (!d->tj) mmp_die("cannot initialize TurboJPEG: %s", tjGetErrorStr2(NULL));
    return -1;
}

void mmp_img_decoder_free(mmp_img_decoder *d) {
    if (!d) return;
    tjDestroy(d->tj);
    free(d);
}

mmp_imgfmt mmp_img_sniff(const void *buf, size_t n) {
    const uint8_t *p = buf;
    if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return MMP_IMGFMT_JPEG;
    if (n >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) return MMP_IMGFMT_PNG;
    return MMP_IMGFMT_UNKNOWN;
}

static const char *fmt_name(const uint8_t *p, size_t n) {
    if (n == 0) return "empty file (0 bytes)";
    if (n >= 2 && p[0] == 'B' && p[1] == 'M') return "unsupported format (BMP)";
    if (n >= 4 && (!memcmp(p, "GIF8", 4))) return "unsupported format (GIF)";
    if (n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4))
        return "unsupported format (WebP)";
    if (n >= 4 && (!memcmp(p, "II*\0", 4) || !memcmp(p, "MM\0*", 4)))
        return "unsupported format (TIFF)";
    if (n >= 2 && p[0] == 'P' && p[1] >= '1' && p[1] <= '7') return "unsupported format (PNM)";
    return "not a JPEG or PNG image";
}

/* ------------------------------------------------------------------ */
/* JPEG                                                                */
/* ------------------------------------------------------------------ */

static int jpeg_header(mmp_img_decoder *d, const void *buf, size_t n, int *w, int *h, int *ss,
                       int *cs, char *err, size_t errlen) {
    if (n > 0xFFFFFFFFUL) return mmp_errf(err, errlen, "JPEG too large");
    if (tjDecompressHeader3(d->tj, buf, (unsigned long)n, w, h, ss, cs) != 0)
        return tj_fail(d, err, errlen, "corrupt JPEG header");
    if (*w <= 0 || *h <= 0) return mmp_errf(err, errlen, "corrupt JPEG header: size %dx%d", *w, *h);
    return 0;
}

/* Pillow Convert.c cmyk2rgb on Pillow's (inverted, Adobe) CMYK values. */
#define MULDIV255(a, b, tmp) (tmp = (a) * (b) + 128, ((((tmp) >> 8) + (tmp)) >> 8))
static inline uint8_t clip8i(int v) { return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v; }

/* Pillow ignores libjpeg's warnings (corrupt-data notices, extraneous
 * bytes ...) but refuses a truncated file ("image file is truncated"):
 * same here. 1 when the last error was such an ignorable warning. */
static int tolerable_warning(mmp_img_decoder *d) {
    return tjGetErrorCode(d->tj) == TJERR_WARNING && !strstr(tjGetErrorStr2(d->tj), "Premature end");
}

static int decode_jpeg(mmp_img_decoder *d, const void *buf, size_t n, const mmp_img_decode_opts *o,
                       uint64_t maxpix, mmp_img *out, char *err, size_t errlen) {
    int w, h, ss, cs;
    if (jpeg_header(d, buf, n, &w, &h, &ss, &cs, err, errlen)) return -1;
    if ((uint64_t)w * (uint64_t)h > maxpix)
        return mmp_errf(err, errlen, "image too large: %dx%d = %llu pixels > --max-pixels %llu", w, h,
                    (unsigned long long)w * h, (unsigned long long)maxpix);
    int ow = w, oh = h;
    if (o && (o->dct_min_w > 0 || o->dct_min_h > 0)) {
        int nsf = 0;
        tjscalingfactor *sf = tjGetScalingFactors(&nsf);
        /* smallest scaled size that still covers the target */
        for (int i = 0; i < nsf; i++) {
            if (sf[i].num > sf[i].denom) continue;
            int sw = TJSCALED(w, sf[i]), sh = TJSCALED(h, sf[i]);
            if (sw >= o->dct_min_w && sh >= o->dct_min_h && (uint64_t)sw * sh < (uint64_t)ow * oh) {
                ow = sw;
                oh = sh;
            }
        }
    }
    int cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    int flags = TJFLAG_ACCURATEDCT | TJFLAG_LIMITSCANS;
    if (!cmyk) {
        mmp_img_alloc(out, ow, oh);
        if (tjDecompress2(d->tj, buf, (unsigned long)n, out->px, ow, 0, oh, TJPF_RGB, flags) != 0 &&
            !tolerable_warning(d)) {
            mmp_img_free(out);
            return tj_fail(d, err, errlen, "truncated or corrupt JPEG");
        }
        return 0;
    }
    uint8_t *tmp = malloc((size_t)ow * oh * 4);
    if (!tmp) return mmp_errf(err, errlen, "out of memory for %dx%d CMYK image", ow, oh);
    if (tjDecompress2(d->tj, buf, (unsigned long)n, tmp, ow, 0, oh, TJPF_CMYK, flags) != 0 &&
        !tolerable_warning(d)) {
        free(tmp);
        return tj_fail(d, err, errlen, "truncated or corrupt JPEG");
    }
    mmp_img_alloc(out, ow, oh);
    /* libjpeg returns the stored (Adobe-inverted) values; Pillow reads them
     * with rawmode "CMYK;I" (inverting) then converts. */
    for (size_t i = 0; i < (size_t)ow * oh; i++) {
        int c = 255 - tmp[i * 4], m = 255 - tmp[i * 4 + 1], y = 255 - tmp[i * 4 + 2],
            k = 255 - tmp[i * 4 + 3], t;
        int nk = 255 - k;
        out->px[i * 3 + 0] = clip8i(nk - MULDIV255(c, nk, t));
        out->px[i * 3 + 1] = clip8i(nk - MULDIV255(m, nk, t));
        out->px[i * 3 + 2] = clip8i(nk - MULDIV255(y, nk, t));
    }
    free(tmp);
    return 0;
}

/* ------------------------------------------------------------------ */
/* PNG                                                                 */
/* ------------------------------------------------------------------ */

typedef struct {
    const uint8_t *p;
    size_t n, off;
    char msg[200];
} png_src;

static void png_read_cb(png_structp png, png_bytep data, png_size_t len) {
    png_src *s = png_get_io_ptr(png);
    if (len > s->n - s->off) {
        snprintf(s->msg, sizeof s->msg, "truncated PNG (file ends at byte %zu)", s->n);
        png_longjmp(png, 1);
    }
    memcpy(data, s->p + s->off, len);
    s->off += len;
}

static void png_error_cb(png_structp png, png_const_charp msg) {
    png_src *s = png_get_error_ptr(png);
    if (!s->msg[0]) snprintf(s->msg, sizeof s->msg, "corrupt PNG: %s", msg);
    png_longjmp(png, 1);
}

static void png_warn_cb(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

/* Everything that must survive the longjmp lives in this struct (not in
 * locals modified after setjmp). */
typedef struct {
    png_structp png;
    png_infop info;
    uint8_t *rows; /* w*h*channels scratch */
    png_bytep *rowp;
} png_state;

static int png_decode_inner(png_state *st, png_src *src, uint64_t maxpix, mmp_img *out,
                            int probe_only, int *pw, int *ph) {
    png_read_info(st->png, st->info);
    png_uint_32 w = png_get_image_width(st->png, st->info);
    png_uint_32 h = png_get_image_height(st->png, st->info);
    if (pw) *pw = (int)w;
    if (ph) *ph = (int)h;
    if (probe_only) return 0;
    if ((uint64_t)w * h > maxpix) {
        snprintf(src->msg, sizeof src->msg,
                 "image too large: %ux%u = %llu pixels > --max-pixels %llu", (unsigned)w,
                 (unsigned)h, (unsigned long long)w * h, (unsigned long long)maxpix);
        return -1;
    }
    int ct = png_get_color_type(st->png, st->info);
    int bd = png_get_bit_depth(st->png, st->info);
    /* 16-bit plain gray: Pillow opens it as mode "I;16" and convert("RGB")
     * clips each value to 255 (min(v, 255)); reproduce that */
    int gray16 = ct == PNG_COLOR_TYPE_GRAY && bd == 16;
    if (bd == 16 && !gray16) png_set_strip_16(st->png); /* high byte, as Pillow's "RGB;16B" */
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(st->png);
    if (ct == PNG_COLOR_TYPE_GRAY && bd < 8) png_set_expand_gray_1_2_4_to_8(st->png);
    if (!gray16 && (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA)) png_set_gray_to_rgb(st->png);
    /* alpha (channel, or tRNS expanded with the palette) is dropped, as
     * convert("RGB") does */
    if ((ct & PNG_COLOR_MASK_ALPHA) || png_get_valid(st->png, st->info, PNG_INFO_tRNS))
        png_set_strip_alpha(st->png);
    png_set_interlace_handling(st->png);
    png_read_update_info(st->png, st->info);
    size_t rb = png_get_rowbytes(st->png, st->info);
    size_t want = (size_t)w * (gray16 ? 2 : 3);
    if (rb != want) {
        snprintf(src->msg, sizeof src->msg, "unsupported PNG layout (row of %zu bytes)", rb);
        return -1;
    }
    st->rows = malloc((size_t)w * h * 3);
    st->rowp = malloc(sizeof(png_bytep) * h);
    if (!st->rows || !st->rowp) {
        snprintf(src->msg, sizeof src->msg, "out of memory for %ux%u image", (unsigned)w,
                 (unsigned)h);
        return -1;
    }
    /* 16-bit gray rows (2 bytes/pixel) are read into the first 2/3 of each
     * 3-byte/pixel row slot, then expanded in place from the right */
    for (png_uint_32 y = 0; y < h; y++) st->rowp[y] = st->rows + (size_t)y * w * 3;
    png_read_image(st->png, st->rowp);
    if (gray16)
        for (png_uint_32 y = 0; y < h; y++) {
            uint8_t *r = st->rowp[y];
            for (png_uint_32 x = w; x-- > 0;) {
                unsigned v = (unsigned)r[x * 2] << 8 | r[x * 2 + 1];
                uint8_t c = v > 255 ? 255 : (uint8_t)v;
                r[x * 3] = r[x * 3 + 1] = r[x * 3 + 2] = c;
            }
        }
    png_read_end(st->png, NULL);
    out->w = (int)w;
    out->h = (int)h;
    out->px = st->rows;
    st->rows = NULL;
    return 0;
}

static int decode_png(const void *buf, size_t n, uint64_t maxpix, mmp_img *out, int probe_only,
                      int *pw, int *ph, char *err, size_t errlen) {
    /* heap state: nothing the longjmp could leave indeterminate */
    png_src *src = mmp_xcalloc(1, sizeof *src);
    png_state *st = mmp_xcalloc(1, sizeof *st);
    src->p = buf;
    src->n = n;
    st->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, src, png_error_cb, png_warn_cb);
    if (!st->png) {
        free(src);
        free(st);
        return mmp_errf(err, errlen, "cannot initialize libpng");
    }
    st->info = png_create_info_struct(st->png);
    volatile int rc = -1;
    if (st->info) {
        png_set_read_fn(st->png, src, png_read_cb);
        /* png_error / png_longjmp land here */
        if (setjmp(png_jmpbuf(st->png)) == 0)
            rc = png_decode_inner(st, src, maxpix, out, probe_only, pw, ph);
    }
    free(st->rows);
    free(st->rowp);
    png_destroy_read_struct(&st->png, &st->info, NULL);
    if (rc) mmp_errf(err, errlen, "%s", src->msg[0] ? src->msg : "corrupt PNG");
    free(src);
    free(st);
    return rc ? -1 : 0;
}

/* ------------------------------------------------------------------ */

int mmp_img_probe(mmp_img_decoder *d, const void *buf, size_t n, int *w, int *h, char *err,
                  size_t errlen) {
    switch (mmp_img_sniff(buf, n)) {
    case MMP_IMGFMT_JPEG: {
        int ss, cs;
        return jpeg_header(d, buf, n, w, h, &ss, &cs, err, errlen);
    }
    case MMP_IMGFMT_PNG: return decode_png(buf, n, 0, NULL, 1, w, h, err, errlen);
    default: return mmp_errf(err, errlen, "%s", fmt_name(buf, n));
    }
}

int mmp_img_decode(mmp_img_decoder *d, const void *buf, size_t n, const mmp_img_decode_opts *o,
                   mmp_img *out, char *err, size_t errlen) {
    uint64_t maxpix = o && o->max_pixels ? o->max_pixels : MMP_IMG_DEFAULT_MAX_PIXELS;
    out->w = out->h = 0;
    out->px = NULL;
    switch (mmp_img_sniff(buf, n)) {
    case MMP_IMGFMT_JPEG: return decode_jpeg(d, buf, n, o, maxpix, out, err, errlen);
    case MMP_IMGFMT_PNG: return decode_png(buf, n, maxpix, out, 0, NULL, NULL, err, errlen);
    default: return mmp_errf(err, errlen, "%s", fmt_name(buf, n));
    }
}
