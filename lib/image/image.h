/* Image decoding (JPEG via TurboJPEG, PNG via libpng) and Pillow-exact
 * resampling for mmpipe.
 *
 * Images are packed RGB u8, row-major HxWx3 (the layout of the "image"
 * tensor in mmp streams). Every function is reentrant: a decoder object is
 * per thread, there is no global state.
 */
#ifndef MMP_IMAGE_IMAGE_H
#define MMP_IMAGE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* Pillow's Image.MAX_IMAGE_PIXELS (its decompression-bomb warning limit). */
#define MMP_IMG_DEFAULT_MAX_PIXELS 89478485ULL

typedef struct {
    int w, h;
    uint8_t *px; /* w*h*3 bytes, owned (free with mmp_img_free) */
} mmp_img;

void mmp_img_alloc(mmp_img *im, int w, int h); /* dies on overflow / OOM */
void mmp_img_free(mmp_img *im);

typedef enum { MMP_IMGFMT_UNKNOWN = 0, MMP_IMGFMT_JPEG, MMP_IMGFMT_PNG } mmp_imgfmt;
/* Format from the magic bytes (never from a file name). */
mmp_imgfmt mmp_img_sniff(const void *buf, size_t n);

typedef struct mmp_img_decoder mmp_img_decoder;
mmp_img_decoder *mmp_img_decoder_new(void);
void mmp_img_decoder_free(mmp_img_decoder *d);

typedef struct {
    uint64_t max_pixels; /* refuse images with w*h above this (0 = default) */
    /* >0: allow libjpeg DCT-domain downscaling (JPEG only) by the smallest
     * factor M/8 whose result keeps both sides >= dct_min_w / dct_min_h.
     * Changes pixels versus Pillow (which decodes at full size); off (0) by
     * default in mmp-decode. */
    int dct_min_w, dct_min_h;
} mmp_img_decode_opts;

/* Decodes a JPEG (baseline/progressive; gray, RGB, YCbCr, CMYK/YCCK) or a
 * PNG (any bit depth / color type / interlace) into RGB u8 the way
 * PIL.Image.open(f).convert("RGB") does: gray replicated, alpha dropped,
 * palette expanded, 16-bit reduced to the high byte (16-bit gray clipped to
 * 255, as Pillow's "I;16" -> "RGB" does), CMYK converted with
 * Pillow's cmyk2rgb. Checks the header dimensions against max_pixels
 * before allocating. Returns 0, or -1 with a one-line reason in err
 * ("truncated or corrupt JPEG: ...", "not a JPEG or PNG image", ...). */
int mmp_img_decode(mmp_img_decoder *d, const void *buf, size_t n, const mmp_img_decode_opts *o,
                   mmp_img *out, char *err, size_t errlen);

/* Header-only probe: width and height. 0 ok, -1 with reason. */
int mmp_img_probe(mmp_img_decoder *d, const void *buf, size_t n, int *w, int *h, char *err,
                  size_t errlen);

/* ---------------------------------------------------------------- */
/* Pillow-exact resampling (ImagingResample, Pillow 9.4)            */
/* ---------------------------------------------------------------- */

/* Pillow's resampling filters (Image.Resampling / torchvision
 * InterpolationMode), each with its support: bilinear (triangle, 1),
 * bicubic (Keys cubic a = -0.5, 2), lanczos (sinc windowed by sinc(x/3),
 * 3), box (0.5), hamming (1). NEAREST is a different code path in Pillow
 * and is not provided. */
typedef enum {
    MMP_INTERP_BILINEAR = 0,
    MMP_INTERP_BICUBIC,
    MMP_INTERP_LANCZOS,
    MMP_INTERP_BOX,
    MMP_INTERP_HAMMING,
} mmp_interp;
/* "bilinear", "bicubic", "lanczos", "box", "hamming" */
const char *mmp_interp_name(mmp_interp f);
/* The mmp_interp of a name above, or -1. */
int mmp_interp_parse(const char *name);

/* Resamples the region box = (x0, y0, x1, y1) (floats, like Pillow's
 * Image.resize(box=...)) of an RGB image with row stride `stride` bytes into
 * dst (dw x dh x 3, packed), with Pillow's BILINEAR filter: separable
 * triangle filter whose support grows with the downscale factor
 * (antialiasing), double coefficients turned into 22-bit fixed point,
 * horizontal pass then vertical pass, round-half-up and clip to u8 exactly
 * as Pillow does. Bit-exact with PIL.Image.resize(..., Image.BILINEAR). */
void mmp_img_resample(const uint8_t *src, int sw, int sh, size_t stride, const float box[4],
                      uint8_t *dst, int dw, int dh);

/* The same with any filter: PIL.Image.resize(..., resample=f), bit-exact
 * (the support is scaled by the downscale factor as for bilinear). */
void mmp_img_resample_interp(const uint8_t *src, int sw, int sh, size_t stride, const float box[4],
                             uint8_t *dst, int dw, int dh, mmp_interp f);

/* Whole-image resize to w x h (Pillow BILINEAR; _interp: filter f). */
void mmp_img_resize(const mmp_img *in, int w, int h, mmp_img *out);
void mmp_img_resize_interp(const mmp_img *in, int w, int h, mmp_interp f, mmp_img *out);

/* torchvision 0.14 Resize(S) output size: shorter side = S, longer side =
 * int(S * long / short). */
void mmp_tv_resize_dims(int w, int h, int s, int *nw, int *nh);
/* torchvision CenterCrop offsets: int(round((size - crop) / 2.0)) with
 * Python's round-half-to-even. */
int mmp_tv_center_offset(int size, int crop);
/* Resize(S) then CenterCrop(S), as torchvision on a PIL image. Only the
 * rows/columns the crop keeps are resampled (same pixels as resizing the
 * whole image then cropping, since each output pixel depends only on its
 * own filter window). */
void mmp_img_resize_center_crop(const mmp_img *in, int s, mmp_img *out);

/* Center-crop offset conventions, which differ by one pixel when
 * size - crop is 3 mod 4 (e.g. 227 -> 224: torchvision 2, HF 1). */
typedef enum {
    MMP_CROP_ROUND_TORCHVISION = 0, /* int(round((size - crop) / 2.0)), half to even:
                                       torchvision CenterCrop, OpenAI CLIP, open_clip, timm */
    MMP_CROP_ROUND_HF,              /* (size - crop) // 2: transformers image_transforms.center_crop
                                       (CLIPImageProcessor, ViTImageProcessor ...) */
} mmp_crop_round;
int mmp_center_offset(int size, int crop, mmp_crop_round r);
const char *mmp_crop_round_name(mmp_crop_round r); /* "torchvision", "hf" */
/* timm's eval resize for crop_pct: math.floor(size / crop_pct). */
int mmp_crop_pct_resize(int size, double crop_pct);
/* Resize(resize) (shorter side, filter f) then CenterCrop(crop) with the
 * offsets of r; crop <= resize (no padding: dies otherwise). With
 * resize = floor(crop / crop_pct) this is timm's eval transform
 * (crop_mode "center"); with resize = crop, filter bicubic, CLIP's. */
void mmp_img_resize_center_crop_ex(const mmp_img *in, int resize, int crop, mmp_interp f,
                                   mmp_crop_round r, mmp_img *out);
/* Crop (top, left, h, w) then resize to (ow, oh): torchvision
 * F.resized_crop on a PIL image (crop inside the image); _interp: with
 * filter f (F.resized_crop(..., interpolation=f)). */
void mmp_img_resized_crop(const mmp_img *in, int top, int left, int h, int w, int ow, int oh,
                          mmp_img *out);
void mmp_img_resized_crop_interp(const mmp_img *in, int top, int left, int h, int w, int ow, int oh,
                                 mmp_interp f, mmp_img *out);

/* ---------------------------------------------------------------- */
/* mmp-decode's per-item preprocessing                              */
/* ---------------------------------------------------------------- */

typedef struct {
    int size;         /* >0: Resize(size) + CenterCrop(size) (torchvision) */
    int rw, rh;       /* >0: exact resize to rw x rh */
    int dct_scale;    /* allow libjpeg DCT downscaling while the scaled image
                         keeps >= 2x the target on every side */
    uint64_t max_pixels;
    /* zero = the defaults, so {.size = 224} keeps its meaning: */
    mmp_interp interp;         /* filter of size and rw x rh (default bilinear) */
    double crop_pct;           /* >0 (<= 1): with size, Resize(floor(size / crop_pct)) first (timm) */
    mmp_crop_round crop_round; /* center-crop offsets of size (default torchvision) */
} mmp_prep;

/* Decodes buf and applies the resize of p. 0 ok, -1 with reason. */
int mmp_prep_image(mmp_img_decoder *d, const mmp_prep *p, const void *buf, size_t n, mmp_img *out,
                   char *err, size_t errlen);

#endif
