/* Deterministic synthetic image+caption data set: see synth.h. */
#include "synth/synth.h"

#include "json.h"
#include "mmp.h"
#include "rng.h"

#include <errno.h>
#include <png.h>
#include <sys/stat.h>

#include <math.h>
#include <stdarg.h>
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

/* ------------------------------------------------------------------ */
/* scenes: captions and VQA                                            */
/* ------------------------------------------------------------------ */

/* snprintf for the sentences (short words: the buffers are sized for them) */
__attribute__((format(printf, 3, 4))) static void put(char *buf, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

const char *const mmp_synth_shapes[MMP_SYNTH_NSHAPES] = {"circle", "square", "triangle", "diamond"};
const char *const mmp_synth_colours[MMP_SYNTH_NCOLOURS] = {"red", "green", "blue", "yellow", "purple", "orange"};
static const uint8_t scene_rgb[MMP_SYNTH_NCOLOURS][3] = {{210, 40, 40},  {40, 170, 60},  {40, 70, 210},
                                                         {230, 210, 40}, {140, 50, 170}, {240, 140, 30}};
const char *const mmp_synth_positions[9] = {"top left", "top",         "top right", "left",        "center",
                                            "right",    "bottom left", "bottom",    "bottom right"};
const char *const mmp_synth_qtypes[MMP_SYNTH_NQTYPES] = {"color", "shape", "count", "yesno", "position", "relation"};
const char *const mmp_synth_rel_words[MMP_SYNTH_NRELS] = {"to the left of", "to the right of", "above", "below",
                                                          "next to", "bigger than", "smaller than"};
/* the relation seen from the other object: left <-> right, above <-> below ... */
static const int rel_inverse[MMP_SYNTH_NRELS] = {1, 0, 3, 2, 4, 6, 5};

/* per-part stream constants (any fixed values; part of the data set's bytes) */
#define K_SCENE 0x5c3e5ce7e0b1ec75ULL
#define K_CAPTION 0xca9710a5ca9710a5ULL
#define K_QUESTION 0x9e57109a9e57109aULL

static int scene_inside(int shape, double dx, double dy, double r) {
    switch (shape) {
    case 0: return dx * dx + dy * dy <= r * r;
    case 1: return fabs(dx) <= r * 0.8 && fabs(dy) <= r * 0.8;
    case 2: { /* pointing up, circumradius r */
        if (dy > r * 0.5 || dy < -r) return 0;
        return fabs(dx) <= (dy + r) / (r * 1.5) * (r * 0.866);
    }
    default: return fabs(dx) + fabs(dy) <= r;
    }
}

int mmp_synth_rel(const mmp_synth_scene *sc, int a, int b, int rel) {
    const mmp_synth_obj *x = &sc->o[a], *y = &sc->o[b];
    int xc = x->cell % 3, xr = x->cell / 3, yc = y->cell % 3, yr = y->cell / 3;
    if (a == b) return 0;
    switch (rel) {
    case 0: return xc < yc;
    case 1: return xc > yc;
    case 2: return xr < yr;
    case 3: return xr > yr;
    case 4: return abs(xc - yc) <= 1 && abs(xr - yr) <= 1;
    case 5: return x->big && !y->big;
    case 6: return !x->big && y->big;
    }
    return 0;
}

static const char *article(const char *w) { return strchr("aeiou", w[0]) ? "an" : "a"; }

/* "on the left", "in the top left corner", "in the center", "at the top" */
static const char *pos_phrase(int cell) {
    static const char *const p[9] = {"in the top left corner", "at the top", "in the top right corner",
                                     "on the left", "in the center", "on the right",
                                     "in the bottom left corner", "at the bottom", "in the bottom right corner"};
    return p[cell];
}

/* "a small red circle" / "a red circle" (art: with the article) */
static void obj_words(const mmp_synth_obj *o, int size, int art, char *buf, size_t n) {
    const char *sz = o->big ? "large" : "small";
    const char *first = size ? sz : mmp_synth_colours[o->colour];
    char tmp[96];
    if (size) put(tmp, sizeof tmp, "%s %s %s", sz, mmp_synth_colours[o->colour], mmp_synth_shapes[o->shape]);
    else put(tmp, sizeof tmp, "%s %s", mmp_synth_colours[o->colour], mmp_synth_shapes[o->shape]);
    if (art) put(buf, n, "%s %s", article(first), tmp);
    else put(buf, n, "%s", tmp);
}

static void scene_captions(uint64_t seed, uint64_t index, mmp_synth_scene *sc) {
    mmp_rng r = mmp_hash64(&index, sizeof index, seed ^ K_CAPTION);
    char A[96], B[96], C[96], Bs[96];
    if (sc->n == 1) {
        const mmp_synth_obj *o = &sc->o[0];
        obj_words(o, 1, 1, A, sizeof A);
        obj_words(o, 0, 1, B, sizeof B);
        put(sc->captions[0], sizeof sc->captions[0], "%s %s", A, pos_phrase(o->cell));
        put(sc->captions[1], sizeof sc->captions[1], "there is %s %s", B, pos_phrase(o->cell));
        put(sc->captions[2], sizeof sc->captions[2], "%s on a gray background", irand(&r, 2) ? A : B);
        obj_words(o, 1, 0, C, sizeof C);
        put(sc->captions[3], sizeof sc->captions[3], "one %s", C);
        put(sc->captions[4], sizeof sc->captions[4], "the picture shows %s %s", B, pos_phrase(o->cell));
        return;
    }
    /* a pair (a, b) and a relation that holds between them (left/right/above/
     * below always exist for two cells; bigger/smaller when the sizes differ) */
    int a = irand(&r, sc->n), b;
    do b = irand(&r, sc->n); while (b == a);
    int rels[MMP_SYNTH_NRELS], nr = 0;
    for (int k = 0; k < MMP_SYNTH_NRELS; k++)
        if (k != 4 && mmp_synth_rel(sc, a, b, k)) rels[nr++] = k;
    int rel = rels[irand(&r, nr)];
    int c = 3 - a - b; /* the third object when n == 3 */
    obj_words(&sc->o[a], 0, 1, A, sizeof A);
    obj_words(&sc->o[b], 1, 1, Bs, sizeof Bs);
    char tail[128] = "";
    if (sc->n == 3) {
        obj_words(&sc->o[c], irand(&r, 2), 1, C, sizeof C);
        put(tail, sizeof tail, " and %s", C);
    }
    put(sc->captions[0], sizeof sc->captions[0], "%s %s %s%s", A, mmp_synth_rel_words[rel], Bs, tail);
    obj_words(&sc->o[b], 0, 1, B, sizeof B);
    put(sc->captions[1], sizeof sc->captions[1], "there is %s %s and %s%s", B, pos_phrase(sc->o[b].cell), A,
             tail);
    char w[3][96];
    for (int i = 0; i < sc->n; i++) obj_words(&sc->o[i], irand(&r, 2), 1, w[i], sizeof w[i]);
    if (sc->n == 2) put(sc->captions[2], sizeof sc->captions[2], "two shapes: %s and %s", w[0], w[1]);
    else put(sc->captions[2], sizeof sc->captions[2], "three shapes: %s, %s and %s", w[0], w[1], w[2]);
    obj_words(&sc->o[b], 0, 0, B, sizeof B);
    obj_words(&sc->o[a], 0, 0, A, sizeof A);
    if (sc->n == 3) {
        obj_words(&sc->o[c], 0, 1, C, sizeof C);
        put(tail, sizeof tail, ", with %s %s", C, pos_phrase(sc->o[c].cell));
    }
    put(sc->captions[3], sizeof sc->captions[3], "the %s is %s the %s%s", B, mmp_synth_rel_words[rel_inverse[rel]],
             A, tail);
    for (int i = 0; i < sc->n; i++) obj_words(&sc->o[i], 1, 1, w[i], sizeof w[i]);
    if (sc->n == 2)
        put(sc->captions[4], sizeof sc->captions[4], "a picture with %s %s and %s %s", w[0],
                 pos_phrase(sc->o[0].cell), w[1], pos_phrase(sc->o[1].cell));
    else
        put(sc->captions[4], sizeof sc->captions[4], "a picture with %s %s, %s %s and %s %s", w[0],
                 pos_phrase(sc->o[0].cell), w[1], pos_phrase(sc->o[1].cell), w[2], pos_phrase(sc->o[2].cell));
}

void mmp_synth_scene_make(uint64_t seed, uint64_t index, mmp_synth_scene *sc) {
    mmp_rng r = mmp_hash64(&index, sizeof index, seed ^ K_SCENE);
    const int S = MMP_SYNTH_SIZE, cellpx = S / 3;
    memset(sc, 0, sizeof *sc);
    sc->n = 1 + irand(&r, MMP_SYNTH_MAXOBJ);
    int cells[9], cols[MMP_SYNTH_NCOLOURS];
    for (int i = 0; i < 9; i++) cells[i] = i;
    for (int i = 0; i < MMP_SYNTH_NCOLOURS; i++) cols[i] = i;
    for (int i = 0; i < sc->n; i++) { /* partial Fisher-Yates: distinct cells and colours */
        int j = i + irand(&r, 9 - i), t = cells[i];
        cells[i] = cells[j], cells[j] = t;
        j = i + irand(&r, MMP_SYNTH_NCOLOURS - i), t = cols[i];
        cols[i] = cols[j], cols[j] = t;
        mmp_synth_obj *o = &sc->o[i];
        o->cell = cells[i];
        o->colour = cols[i];
        o->shape = irand(&r, MMP_SYNTH_NSHAPES);
        o->big = irand(&r, 2);
        o->r = o->big ? 13 + 2 * mmp_rng_uniform53(&r) : 8 + 2 * mmp_rng_uniform53(&r);
        double slack = cellpx / 2.0 - o->r - 0.5;
        o->cx = (o->cell % 3) * cellpx + cellpx / 2.0 + slack * (2 * mmp_rng_uniform53(&r) - 1);
        o->cy = (o->cell / 3) * cellpx + cellpx / 2.0 + slack * (2 * mmp_rng_uniform53(&r) - 1);
    }
    int bg = 120 + irand(&r, 40); /* a gray */
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            const mmp_synth_obj *o = &sc->o[0];
            int in = -1;
            for (int i = 0; i < sc->n && in < 0; i++) /* cells do not overlap */
                if ((int)(x / cellpx) + 3 * (int)(y / cellpx) == sc->o[i].cell) in = i;
            double cov = 0;
            if (in >= 0) {
                o = &sc->o[in];
                for (int sy = 0; sy < 2; sy++)
                    for (int sx = 0; sx < 2; sx++)
                        cov += scene_inside(o->shape, x + 0.25 + 0.5 * sx - o->cx, y + 0.25 + 0.5 * sy - o->cy, o->r)
                                   ? 0.25 : 0;
            }
            for (int c = 0; c < 3; c++) {
                double noise = (mmp_rng_uniform53(&r) - 0.5) * 20;
                double v = cov * scene_rgb[o->colour][c] + (1 - cov) * bg + noise;
                sc->rgb[(y * S + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lrint(v));
            }
        }
    scene_captions(seed, index, sc);
}

/* ---------------- questions ---------------- */

static int count_shape(const mmp_synth_scene *sc, int shape) {
    int k = 0;
    for (int i = 0; i < sc->n; i++) k += sc->o[i].shape == shape;
    return k;
}

static int has_obj(const mmp_synth_scene *sc, int colour, int shape) {
    for (int j = 0; j < sc->n; j++)
        if (sc->o[j].colour == colour && sc->o[j].shape == shape) return 1;
    return 0;
}

/* one question of type t (may fall back to another type); returns the type used */
static int make_question(mmp_rng *r, const mmp_synth_scene *sc, int t, mmp_synth_qa *q) {
    char A[96], B[96];
    int i = irand(r, sc->n);
    const mmp_synth_obj *o = &sc->o[i];
    if (t == 5 && sc->n < 2) t = 4;
    switch (t) {
    case 0: /* color */
        if (count_shape(sc, o->shape) == 1)
            put(q->question, sizeof q->question, "what color is the %s?", mmp_synth_shapes[o->shape]);
        else
            put(q->question, sizeof q->question, "what color is the %s %s?", mmp_synth_shapes[o->shape],
                     pos_phrase(o->cell));
        put(q->answer, sizeof q->answer, "%s", mmp_synth_colours[o->colour]);
        break;
    case 1: /* shape */
        put(q->question, sizeof q->question, irand(r, 2) ? "what shape is the %s object?" : "what is the shape of the %s object?",
                 mmp_synth_colours[o->colour]);
        put(q->answer, sizeof q->answer, "%s", mmp_synth_shapes[o->shape]);
        break;
    case 2: { /* count */
        int k = irand(r, 3);
        if (k == 0) {
            put(q->question, sizeof q->question, "how many objects are there?");
            put(q->answer, sizeof q->answer, "%d", sc->n);
        } else if (k == 1) {
            int s = irand(r, MMP_SYNTH_NSHAPES);
            put(q->question, sizeof q->question, "how many %ss are there?", mmp_synth_shapes[s]);
            put(q->answer, sizeof q->answer, "%d", count_shape(sc, s));
        } else {
            int big = irand(r, 2), c = 0;
            for (int j = 0; j < sc->n; j++) c += sc->o[j].big == big;
            put(q->question, sizeof q->question, "how many %s objects are there?", big ? "large" : "small");
            put(q->answer, sizeof q->answer, "%d", c);
        }
        break;
    }
    case 3: { /* yesno: half yes, half no */
        int want = irand(r, 2);
        if (sc->n < 2 || irand(r, 4) == 0) { /* existence */
            int col = o->colour, sh = o->shape;
            if (!want) { /* an object the scene does not have */
                do col = irand(r, MMP_SYNTH_NCOLOURS), sh = irand(r, MMP_SYNTH_NSHAPES);
                while (has_obj(sc, col, sh));
            }
            put(q->question, sizeof q->question, "is there %s %s %s?", article(mmp_synth_colours[col]),
                     mmp_synth_colours[col], mmp_synth_shapes[sh]);
        } else {
            int b;
            do b = irand(r, sc->n); while (b == i);
            int rels[MMP_SYNTH_NRELS], nr = 0;
            for (int k = 0; k < MMP_SYNTH_NRELS; k++)
                if (mmp_synth_rel(sc, i, b, k) == want) rels[nr++] = k;
            if (!nr) want = !want; /* every relation holds or none does: flip the answer */
            nr = 0;
            for (int k = 0; k < MMP_SYNTH_NRELS; k++)
                if (mmp_synth_rel(sc, i, b, k) == want) rels[nr++] = k;
            int rel = rels[irand(r, nr)];
            obj_words(o, 0, 1, A, sizeof A);
            obj_words(&sc->o[b], 0, 0, B, sizeof B);
            put(q->question, sizeof q->question, "is there %s %s the %s?", A, mmp_synth_rel_words[rel], B);
        }
        put(q->answer, sizeof q->answer, "%s", want ? "yes" : "no");
        break;
    }
    case 4: /* position */
        obj_words(o, 0, 0, A, sizeof A);
        put(q->question, sizeof q->question, "where is the %s?", A);
        put(q->answer, sizeof q->answer, "%s", mmp_synth_positions[o->cell]);
        break;
    default: { /* relation: "what shape/color is REL the B?" with exactly one such object */
        int cand[MMP_SYNTH_MAXOBJ * MMP_SYNTH_NRELS][2], nc = 0;
        for (int b = 0; b < sc->n; b++)
            for (int rel = 0; rel < MMP_SYNTH_NRELS; rel++) {
                int k = 0;
                for (int a = 0; a < sc->n; a++) k += mmp_synth_rel(sc, a, b, rel);
                if (k == 1) cand[nc][0] = b, cand[nc][1] = rel, nc++;
            }
        if (!nc) return make_question(r, sc, 4, q);
        int pick = irand(r, nc), b = cand[pick][0], rel = cand[pick][1], a = 0;
        while (!mmp_synth_rel(sc, a, b, rel)) a++;
        obj_words(&sc->o[b], 0, 0, B, sizeof B);
        if (irand(r, 2)) {
            put(q->question, sizeof q->question, "what shape is %s the %s?", mmp_synth_rel_words[rel], B);
            put(q->answer, sizeof q->answer, "%s", mmp_synth_shapes[sc->o[a].shape]);
        } else {
            put(q->question, sizeof q->question, "what color is the object %s the %s?", mmp_synth_rel_words[rel], B);
            put(q->answer, sizeof q->answer, "%s", mmp_synth_colours[sc->o[a].colour]);
        }
        break;
    }
    }
    return t;
}

/* a wrong answer of the same kind as the true one */
static void wrong_answer(mmp_rng *r, const char *truth, char *out, size_t n) {
    const char *const *tab = NULL;
    int nt = 0;
    for (int k = 0; k < MMP_SYNTH_NCOLOURS; k++)
        if (!strcmp(truth, mmp_synth_colours[k])) tab = mmp_synth_colours, nt = MMP_SYNTH_NCOLOURS;
    for (int k = 0; k < MMP_SYNTH_NSHAPES; k++)
        if (!strcmp(truth, mmp_synth_shapes[k])) tab = mmp_synth_shapes, nt = MMP_SYNTH_NSHAPES;
    for (int k = 0; k < 9; k++)
        if (!strcmp(truth, mmp_synth_positions[k])) tab = mmp_synth_positions, nt = 9;
    if (tab) {
        const char *w;
        do w = tab[irand(r, nt)]; while (!strcmp(w, truth));
        put(out, n, "%s", w);
    } else if (!strcmp(truth, "yes") || !strcmp(truth, "no")) {
        put(out, n, "%s", truth[0] == 'y' ? "no" : "yes");
    } else { /* a count */
        int c = atoi(truth);
        put(out, n, "%d", c == 0 || irand(r, 2) ? c + 1 : c - 1);
    }
}

void mmp_synth_questions(uint64_t seed, uint64_t index, const mmp_synth_scene *sc, int nq, int nanswers,
                         mmp_synth_qa *out) {
    mmp_rng r = mmp_hash64(&index, sizeof index, seed ^ K_QUESTION);
    if (nanswers < 1) nanswers = 1;
    if (nanswers > MMP_SYNTH_MAXANSWERS) nanswers = MMP_SYNTH_MAXANSWERS;
    int start = irand(&r, MMP_SYNTH_NQTYPES);
    for (int k = 0; k < nq; k++) {
        mmp_synth_qa *q = &out[k];
        memset(q, 0, sizeof *q);
        /* a few tries for a question not asked already about this image */
        for (int tries = 0; tries < 8; tries++) {
            q->qtype = make_question(&r, sc, (start + k) % MMP_SYNTH_NQTYPES, q);
            int dup = 0;
            for (int j = 0; j < k; j++) dup |= !strcmp(out[j].question, q->question);
            if (!dup) break;
        }
        q->nanswers = nanswers;
        for (int a = 0; a < nanswers; a++) {
            if (nanswers > 1 && mmp_rng_uniform53(&r) < 0.15) wrong_answer(&r, q->answer, q->answers[a], sizeof q->answers[a]);
            else put(q->answers[a], sizeof q->answers[a], "%s", q->answer);
        }
    }
}

/* ---------------- the folder ---------------- */

static int write_png(const char *path, const uint8_t *rgb, int w, int h) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = PNG_FORMAT_RGB;
    int ok = png_image_write_to_file(&img, path, 0, rgb, 0, NULL);
    png_image_free(&img);
    return ok ? 0 : -1;
}

static int write_jpeg(tjhandle tj, const char *path, const uint8_t *rgb, int w, int h, int quality) {
    unsigned char *jpg = NULL;
    unsigned long jn = 0;
    if (tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &jpg, &jn, TJSAMP_444, quality, 0)) return -1;
    FILE *f = fopen(path, "wb");
    int rc = f && fwrite(jpg, 1, jn, f) == jn ? 0 : -1;
    if (f && fclose(f)) rc = -1;
    tjFree(jpg);
    return rc;
}

static void put_strs(FILE *f, const char *key, int n, size_t stride, const char *first) {
    fprintf(f, ", \"%s\": [", key);
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", f);
        mmp_json_put_str(f, first + (size_t)i * stride, 0);
    }
    fputc(']', f);
}

int mmp_synth_write_dir(const char *dir, const mmp_synth_dir_opts *o, char *err, size_t errlen) {
    static const char *const split_names[3] = {"train", "dev", "test"};
    char path[4096];
    if (mkdir(dir, 0777) && errno != EEXIST) return mmp_errf(err, errlen, "%s: %s", dir, strerror(errno));
    snprintf(path, sizeof path, "%s/images", dir);
    if (mkdir(path, 0777) && errno != EEXIST) return mmp_errf(err, errlen, "%s: %s", path, strerror(errno));
    snprintf(path, sizeof path, "%s/scenes.jsonl", dir);
    FILE *scenes = fopen(path, "w");
    if (!scenes) return mmp_errf(err, errlen, "%s: %s", path, strerror(errno));
    tjhandle tj = o->jpeg ? tjInitCompress() : NULL;
    if (o->jpeg && !tj) mmp_die("TurboJPEG: %s", tjGetErrorStr());
    mmp_synth_scene *sc = mmp_xmalloc(sizeof *sc);
    int nq = o->vqa ? o->questions : 0;
    mmp_synth_qa *qa = mmp_xmalloc(sizeof *qa * (size_t)(nq ? nq : 1));
    const char *ext = o->jpeg ? "jpg" : "png";
    int rc = 0;
    uint64_t index = 0;
    for (int s = 0; s < 3 && !rc; s++) {
        if (!o->nsplit[s]) continue;
        char mpath[4096];
        snprintf(mpath, sizeof mpath, "%s/%s.jsonl", dir, split_names[s]);
        FILE *m = fopen(mpath, "w");
        if (!m) {
            rc = mmp_errf(err, errlen, "%s: %s", mpath, strerror(errno));
            break;
        }
        for (uint64_t k = 0; k < o->nsplit[s] && !rc; k++, index++) {
            mmp_synth_scene_make(o->seed, index, sc);
            char key[32];
            snprintf(key, sizeof key, "img%06llu", (unsigned long long)index);
            snprintf(path, sizeof path, "%s/images/%s.%s", dir, key, ext);
            if (o->jpeg ? write_jpeg(tj, path, sc->rgb, MMP_SYNTH_SIZE, MMP_SYNTH_SIZE, o->quality)
                        : write_png(path, sc->rgb, MMP_SYNTH_SIZE, MMP_SYNTH_SIZE)) {
                rc = mmp_errf(err, errlen, "%s: cannot write the image", path);
                break;
            }
            /* scenes.jsonl */
            fprintf(scenes, "{\"image_id\": \"%s\", \"split\": \"%s\", \"objects\": [", key, split_names[s]);
            for (int i = 0; i < sc->n; i++) {
                const mmp_synth_obj *b = &sc->o[i];
                fprintf(scenes, "%s{\"shape\": \"%s\", \"color\": \"%s\", \"size\": \"%s\", \"position\": \"%s\", \"x\": %.3f, \"y\": %.3f, \"r\": %.3f}",
                        i ? ", " : "", mmp_synth_shapes[b->shape], mmp_synth_colours[b->colour], b->big ? "large" : "small",
                        mmp_synth_positions[b->cell], b->cx, b->cy, b->r);
            }
            fputc(']', scenes);
            put_strs(scenes, "captions", MMP_SYNTH_NCAPTIONS, sizeof sc->captions[0], sc->captions[0]);
            fputs("}\n", scenes);
            /* the manifest rows */
            if (!o->vqa) {
                fprintf(m, "{\"image\": \"images/%s.%s\", \"image_id\": \"%s\"", key, ext, key);
                put_strs(m, "captions", MMP_SYNTH_NCAPTIONS, sizeof sc->captions[0], sc->captions[0]);
                fputs("}\n", m);
                continue;
            }
            mmp_synth_questions(o->seed, index, sc, nq, o->answers, qa);
            for (int q = 0; q < nq; q++) {
                fprintf(m, "{\"image\": \"images/%s.%s\", \"image_id\": \"%s\", \"question_id\": \"%s/q%d\", \"question\": ",
                        key, ext, key, key, q);
                mmp_json_put_str(m, qa[q].question, 0);
                fprintf(m, ", \"question_type\": \"%s\", \"answer\": ", mmp_synth_qtypes[qa[q].qtype]);
                mmp_json_put_str(m, qa[q].answer, 0);
                put_strs(m, "answers", qa[q].nanswers, sizeof qa[q].answers[0], qa[q].answers[0]);
                fputs("}\n", m);
            }
        }
        if (fclose(m) && !rc) rc = mmp_errf(err, errlen, "%s: write failed", mpath);
    }
    if (fclose(scenes) && !rc) rc = mmp_errf(err, errlen, "%s/scenes.jsonl: write failed", dir);
    free(sc);
    free(qa);
    if (tj) tjDestroy(tj);
    return rc ? -1 : 0;
}
