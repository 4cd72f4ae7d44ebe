/* Deterministic synthetic image+caption data set: see synth.h. */
#include "synth/synth.h"

#include "mmp.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

const char *const mmp_synth_classes[MMP_SYNTH_NCLASSES] = {
    "circle-indoor", "circle-outdoor", "square-indoor", "square-outdoor", "triangle-indoor", "triangle-outdoor"};

/* Draws from lib/rng.h (the formulas are part of the data set's bytes): labels and
 * picks by plain modulo, geometry and noise by mmp_rng_uniform53. */
static int irand(mmp_rng *r, int n) { return (int)mmp_rng_below_mod(r, (uint64_t)n); }

static const struct { const char *name; uint8_t rgb[3]; } colours[] = {
    {"red", {210, 40, 40}},   {"green", {40, 170, 60}},   {"blue", {40, 70, 210}},
    {"yellow", {230, 210, 40}}, {"purple", {140, 50, 170}}, {"orange", {240, 140, 30}},
    {"white", {235, 235, 235}}, {"black", {25, 25, 25}},
};
#define NCOL ((int)(sizeof colours / sizeof colours[0]))
static const char *textures[] = {"plain", "striped", "dotted", "checkered"};
static const char *indoor[] = {"on a kitchen table", "in a living room", "on a bookshelf", "inside a cardboard box", "on an office desk", "next to a sofa"};
static const char *outdoor[] = {"in a park", "on a sandy beach", "in a garden", "on a busy street", "under a tree", "in a snowy field"};
static const char *openers[] = {"a", "one", "a small", "a large", "an old", "a shiny"};
static const char *nouns[] = {"thing", "object", "item", "toy", "sticker", "piece"};

static int inside(int shape, double x, double y, double cx, double cy, double r, double rot) {
    double dx = x - cx, dy = y - cy;
    if (shape == 0) return dx * dx + dy * dy <= r * r;
    double c = cos(rot), s = sin(rot);
    double u = c * dx + s * dy, v = -s * dx + c * dy;
    if (shape == 1) return fabs(u) <= r * 0.85 && fabs(v) <= r * 0.85;
    /* equilateral triangle with circumradius r, pointing up in (u, v) */
    double h = r * 1.5;
    if (v > r * 0.5 || v < -r) return 0;
    double half = (v + r) / h * (r * 0.866);
    return fabs(u) <= half;
}

void mmp_synth_item_make(uint64_t seed, uint64_t index, mmp_synth_item *it) {
    mmp_rng r = mmp_hash64(&index, sizeof index, seed);
    int label = irand(&r, MMP_SYNTH_NCLASSES);
    int shape = label / 2, outdoors = label % 2;
    int fg = irand(&r, NCOL), bg;
    do bg = irand(&r, NCOL); while (bg == fg);
    int tex = irand(&r, 4);
    const int S = MMP_SYNTH_SIZE;
    double rad = S * (0.22 + 0.12 * mmp_rng_uniform53(&r));
    double cx = rad + (S - 2 * rad) * mmp_rng_uniform53(&r), cy = rad + (S - 2 * rad) * mmp_rng_uniform53(&r);
    double rot = 2 * M_PI * mmp_rng_uniform53(&r);
    double period = 4 + irand(&r, 5);
    for (int y = 0; y < S; y++) {
        for (int x = 0; x < S; x++) {
            /* 4x supersampling for smooth edges */
            double cov = 0;
            for (int sy = 0; sy < 2; sy++)
                for (int sx = 0; sx < 2; sx++)
                    cov += inside(shape, x + 0.25 + 0.5 * sx, y + 0.25 + 0.5 * sy, cx, cy, rad, rot) ? 0.25 : 0;
            double t = 1.0;
            if (tex == 1) t = fmod(x + y, 2 * period) < period ? 1.0 : 0.55;
            else if (tex == 2) { double px = fmod(x, period) - period / 2, py = fmod(y, period) - period / 2; t = px * px + py * py < period * period / 8 ? 0.5 : 1.0; }
            else if (tex == 3) t = (((int)(x / period) + (int)(y / period)) & 1) ? 1.0 : 0.6;
            for (int c = 0; c < 3; c++) {
                double noise = (mmp_rng_uniform53(&r) - 0.5) * 24;
                double v = cov * colours[fg].rgb[c] * t + (1 - cov) * colours[bg].rgb[c] * 0.8 + noise;
                it->rgb[(y * S + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lrint(v));
            }
        }
    }
    const char *scene = outdoors ? outdoor[irand(&r, 6)] : indoor[irand(&r, 6)];
    snprintf(it->caption, sizeof it->caption, "%s %s %s %s %s", openers[irand(&r, 6)], colours[fg].name,
             tex ? textures[tex] : "", nouns[irand(&r, 6)], scene);
    /* collapse the double space of a plain texture */
    char *d = strstr(it->caption, "  ");
    if (d) memmove(d, d + 1, strlen(d));
    it->label = label;
}

static int tar_member(FILE *fp, const char *name, const void *data, size_t n) {
    unsigned char h[512];
    memset(h, 0, sizeof h);
    snprintf((char *)h, 100, "%s", name);
    memcpy(h + 100, "0000644", 8);
    memcpy(h + 108, "0000000", 8);
    memcpy(h + 116, "0000000", 8);
    snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)n);
    memcpy(h + 136, "00000000000", 12);
    h[156] = '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
    static const unsigned char zero[512];
    if (fwrite(h, 1, 512, fp) != 512) return -1;
    if (n && fwrite(data, 1, n, fp) != n) return -1;
    size_t pad = (512 - n % 512) % 512;
    if (pad && fwrite(zero, 1, pad, fp) != pad) return -1;
    return 0;
}

int mmp_synth_write_tar(FILE *fp, uint64_t seed, uint64_t first, uint64_t n, const char *prefix, int quality) {
    tjhandle tj = tjInitCompress();
    if (!tj) mmp_die("TurboJPEG: %s", tjGetErrorStr());
    mmp_synth_item *it = mmp_xmalloc(sizeof *it);
    int rc = 0;
    for (uint64_t i = first; i < first + n && rc == 0; i++) {
        mmp_synth_item_make(seed, i, it);
        unsigned char *jpg = NULL;
        unsigned long jn = 0;
        if (tjCompress2(tj, it->rgb, MMP_SYNTH_SIZE, 0, MMP_SYNTH_SIZE, TJPF_RGB, &jpg, &jn, TJSAMP_444, quality, 0))
            mmp_die("TurboJPEG: %s", tjGetErrorStr2(tj));
        char name[256], cls[16];
        snprintf(name, sizeof name, "%s%06llu.jpg", prefix, (unsigned long long)i);
        rc |= tar_member(fp, name, jpg, jn);
        tjFree(jpg);
        snprintf(name, sizeof name, "%s%06llu.txt", prefix, (unsigned long long)i);
        rc |= tar_member(fp, name, it->caption, strlen(it->caption));
        snprintf(name, sizeof name, "%s%06llu.cls", prefix, (unsigned long long)i);
        snprintf(cls, sizeof cls, "%d", it->label);
        rc |= tar_member(fp, name, cls, strlen(cls));
    }
    static const unsigned char zero[1024];
    if (rc == 0 && fwrite(zero, 1, 1024, fp) != 1024) rc = -1;
    free(it);
    tjDestroy(tj);
    return rc ? -1 : 0;
}
