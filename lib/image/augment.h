/* Seeded, counter-based data augmentation with torchvision semantics.
 *
 * Pixel ops work on PIL-like RGB u8 images and reproduce torchvision's
 * functional API on PIL images (which uses Pillow): F.resized_crop,
 * F.pad, F.hflip, F.adjust_brightness / contrast / saturation (Pillow's
 * ImageEnhance: blend with a degenerate image) and F.adjust_hue (Pillow's
 * HSV conversion), F.rgb_to_grayscale (Pillow's "L" conversion). The
 * normalization is ToTensor + Normalize on float32 (CHW); erasing works on
 * u8 HWC or on the normalized float CHW tensor, like F.erase.
 *
 * Randomness: each record gets its own SplitMix64 stream (lib/rng.h) keyed
 * by (id, seed, epoch, view) -- see mmp_aug_key -- so outputs do not depend
 * on thread count, record order or machine.
 */
#ifndef MMP_IMAGE_AUGMENT_H
#define MMP_IMAGE_AUGMENT_H

#include "image/image.h"
#include "mmp.h"
#include "rng.h"

#include <stdint.h>

/* ------------------------------------------------------------------ */
/* deterministic pixel ops (PIL/torchvision semantics)                 */
/* ------------------------------------------------------------------ */

/* Pillow ImagingBlend(im1, im2, alpha) on RGB u8, n = bytes. */
void mmp_pil_blend(const uint8_t *im1, const uint8_t *im2, float alpha, uint8_t *out, size_t n);
/* Pillow "RGB" -> "L": (r*19595 + g*38470 + b*7471 + 0x8000) >> 16 */
static inline uint8_t mmp_pil_luma(const uint8_t *p) {
    return (uint8_t)((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16);
}
/* In place on an RGB image of npix pixels. */
void mmp_adjust_brightness(uint8_t *px, size_t npix, double factor);
void mmp_adjust_contrast(uint8_t *px, size_t npix, double factor);
void mmp_adjust_saturation(uint8_t *px, size_t npix, double factor);
void mmp_adjust_hue(uint8_t *px, size_t npix, double hue_factor); /* [-0.5, 0.5] */
void mmp_rgb_to_grayscale3(uint8_t *px, size_t npix);
void mmp_hflip(mmp_img *im);
enum { MMP_PAD_CONSTANT = 0, MMP_PAD_EDGE, MMP_PAD_REFLECT, MMP_PAD_SYMMETRIC };
/* Pads p pixels on every side (F.pad(img, p, fill, mode)). */
void mmp_pad(const mmp_img *in, int p, int mode, uint8_t fill, mmp_img *out);
/* ToTensor + Normalize: u8 HxWx3 -> f32 3xHxW: (v / 255.f - mean[c]) / std[c]. */
void mmp_to_tensor_normalize(const mmp_img *in, const float mean[3], const float std[3], float *out);

/* torchvision RandomResizedCrop.get_params (10 attempts, then the
 * ratio-clamped center crop). scale/ratio are (min, max). */
void mmp_rrc_params(mmp_rng *r, int w, int h, const double scale[2], const double ratio[2],
                    int *top, int *left, int *ch, int *cw);
/* torchvision RandomErasing.get_params: 1 when a box was found. */
int mmp_erase_params(mmp_rng *r, int w, int h, const double scale[2], const double ratio[2],
                     int *top, int *left, int *eh, int *ew);

/* ------------------------------------------------------------------ */
/* op pipeline                                                         */
/* ------------------------------------------------------------------ */

typedef enum {
    MMP_AUG_RRC = 1,   /* --rrc S[,scale=a:b][,ratio=c:d][,p=][,interp=F] */
    MMP_AUG_PADCROP,   /* --pad-crop S[,pad=P][,mode=constant|edge|reflect|symmetric][,fill=V] */
    MMP_AUG_RESIZE,    /* --resize S[,interp=F]   (shorter side, deterministic) */
    MMP_AUG_CCROP,     /* --center-crop S */
    MMP_AUG_HFLIP,     /* --hflip P */
    MMP_AUG_JITTER,    /* --jitter B,C,S,H[,p=] */
    MMP_AUG_GRAY,      /* --gray P */
    MMP_AUG_ERASE,     /* --erase P[,scale=a:b][,ratio=c:d][,value=V|random] */
    MMP_AUG_NORMALIZE, /* --normalize imagenet | m,m,m/s,s,s */
} mmp_aug_kind;

typedef struct {
    mmp_aug_kind kind;
    double p;
    int size;
    double scale[2], ratio[2];
    int pad, padmode, fill;
    double jitter[4]; /* brightness, contrast, saturation, hue */
    float mean[3], std[3];
    int erase_random;
    float erase_value;
    int interp; /* RRC, RESIZE: an mmp_interp, or -1: the pipeline's (mmp_aug.interp) */
} mmp_aug_op;

#define MMP_AUG_MAX_OPS 32
typedef struct {
    int n;
    mmp_aug_op ops[MMP_AUG_MAX_OPS];
    mmp_dtype out_dtype; /* F32 / F16 when normalized */
    mmp_interp interp;   /* filter of the resizing ops without their own (--interp; default bilinear) */
} mmp_aug;

void mmp_aug_init(mmp_aug *a);
/* 1 when flag ("--rrc", ...) names an augment op. */
int mmp_aug_is_op(const char *flag);
/* Parses one command-line op ("--rrc", "224,scale=0.08:1"); 0 ok, -1 with
 * reason. Returns 1 when flag is not an augment op. */
int mmp_aug_parse(mmp_aug *a, const char *flag, const char *value, char *err, size_t errlen);
/* 1 when the pipeline ends in a normalization (float CHW output). */
int mmp_aug_normalizes(const mmp_aug *a);
/* Output image shape when fixed ([H,W,3] u8 or [3,H,W] float); -1 where
 * it varies with the input. */
void mmp_aug_out_shape(const mmp_aug *a, int64_t shape[3]);
/* Human description for header meta ("rrc(224,scale=0.08:1,...) hflip(0.5) ..."). */
char *mmp_aug_describe(const mmp_aug *a);
/* Applies the ops in order to a u8 [H,W,3] tensor; writes the result
 * tensor (u8 [H,W,3] or f32/f16 [3,H,W]) into out (allocated). 0 ok,
 * -1 with reason (wrong dtype/shape, image too small for a crop). */
int mmp_aug_apply(const mmp_aug *a, mmp_rng *rng, const mmp_tensor *in, mmp_tensor *out, char *err,
                  size_t errlen);

#endif
