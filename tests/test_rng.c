/* lib/rng.h: the SplitMix64 core against published reference values, the
 * formula of each variant, ranges, statistical sanity, and the key
 * derivations against an independent implementation.
 *
 * The key values below come from this Python transcription of the formulas
 * (SplitMix64 per Vigna's splitmix64.c, FNV-1a 64), not from the C code:
 *
 *   M = (1 << 64) - 1; G = 0x9E3779B97F4A7C15
 *   def mix(z):
 *       z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
 *       z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
 *       return z ^ (z >> 31)
 *   def h(x): return mix((x + G) & M)
 *   def hash64(b, seed):
 *       x = 0xcbf29ce484222325 ^ seed
 *       for c in b: x = ((x ^ c) * 0x100000001b3) & M
 *       return h(x)
 *   def derive(seed, a, b):
 *       x = h(seed ^ 0x6D6D70697065)
 *       x = h(x ^ ((a * 0xD1B54A32D192ED03) & M))
 *       return h(x ^ ((b * 0xABC98388FB8FAC03) & M))
 *   def aug_key(id, seed, epoch, view):
 *       return mix(mix(hash64(id.encode(), 0)) ^ mix(seed ^ 0x243F6A8885A308D3)
 *                  ^ mix(epoch ^ 0x13198A2E03707344) ^ mix(view ^ 0xA4093822299F31D0))
 */
#include "rng.h"

#include "mmp.h"
#include "testlib.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define N 100000

static void test_core(void) {
    /* Vigna's splitmix64.c, x = 1234567: the first five next() values */
    static const uint64_t ref[5] = {6457827717110365317ULL, 3203168211198807973ULL, 9817491932198370423ULL,
                                    4593380528125082431ULL, 16408922859458223821ULL};
    mmp_rng r;
    mmp_rng_seed(&r, 1234567);
    for (int i = 0; i < 5; i++) CHECKF(mmp_rng_next(&r) == ref[i], "splitmix64 output %d", i);
    CHECK(r == 1234567 + 5 * MMP_RNG_GAMMA); /* the state is the counter */
    /* the stateless step and the finalizer */
    CHECK(mmp_rng_hash(1234567) == ref[0]);
    CHECK(mmp_rng_mix(0) == 0);
    CHECK(mmp_rng_mix(1) == 6238072747940578789ULL);
    CHECK(mmp_rng_mix(1234567 + MMP_RNG_GAMMA) == ref[0]);
    /* mmp_hash64 ends with that step */
    CHECK(mmp_hash64("abc", 3, 0) == 3018304574923447344ULL);
    CHECK(mmp_hash64("", 0, 7) == 2542908220362270422ULL);
}

/* Each variant is the formula rng.h documents, drawn from a copy of the state. */
static void test_formulas(void) {
    for (uint64_t seed = 0; seed < 2000; seed++) {
        mmp_rng r = seed * 0x2545F4914F6CDD1DULL, c = r;
        uint64_t v = mmp_rng_next(&c);
        CHECK(mmp_rng_uniform53(&r) == (double)(v >> 11) / 9007199254740992.0);
        CHECK(r == c);
        v = mmp_rng_next(&c);
        CHECK(mmp_rng_uniform53_open(&r) == ((double)(v >> 11) + 0.5) / 9007199254740992.0);
        v = mmp_rng_next(&c);
        CHECK(mmp_rng_range(&r, -3, 5) == -3 + 8 * ((double)(v >> 11) / 9007199254740992.0));
        v = mmp_rng_next(&c);
        CHECK(mmp_rng_below_mod(&r, 6) == v % 6);
        v = mmp_rng_next(&c);
        CHECK(mmp_rng_below_reject(&r, 1000) == v % 1000); /* 1000: rejection never fires in practice */
        v = mmp_rng_next(&c);
        CHECK(mmp_rng_int(&r, -10, 10) == -10 + (int64_t)(v % 20));
        CHECK(r == c);
    }
    /* how many values each draw consumes */
    mmp_rng r = 99, r0 = 99;
    CHECK(mmp_rng_below_reject(&r, 0) == 0 && r == r0);     /* n == 0: nothing */
    CHECK(mmp_rng_below_reject(&r, 1) == 0 && r == r0 + MMP_RNG_GAMMA); /* n == 1: one value */
    r = r0;
    CHECK(mmp_rng_int(&r, 5, 5) == 5 && r == r0);           /* empty range: nothing */
    CHECK(mmp_rng_int(&r, 5, 2) == 5 && r == r0);
    CHECK(mmp_rng_int(&r, 5, 6) == 5 && r == r0 + MMP_RNG_GAMMA);
    r = r0;
    mmp_rng_normal_log1m(&r);
    CHECK(r == r0 + 2 * MMP_RNG_GAMMA);
    r = r0;
    mmp_rng_normal_clamp(&r);
    CHECK(r == r0 + 2 * MMP_RNG_GAMMA);
    /* the rejection really rejects: with n = 2^63 + 1 the tail above
     * UINT64_MAX - UINT64_MAX % n is almost half of all values */
    uint64_t big = (1ULL << 63) + 1, lim = UINT64_MAX - UINT64_MAX % big;
    r = 5;
    mmp_rng c = r;
    for (int i = 0; i < 200; i++) {
        uint64_t want;
        do want = mmp_rng_next(&c);
        while (want >= lim);
        CHECK(mmp_rng_below_reject(&r, big) == want % big);
    }
    CHECK(r == c);
    /* the Box-Muller variants from their uniforms */
    for (uint64_t seed = 0; seed < 200; seed++) {
        mmp_rng a = seed, b = seed;
        double u1 = mmp_rng_uniform53(&b), u2 = mmp_rng_uniform53(&b);
        CHECK(mmp_rng_normal_log1m(&a) == sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2));
        a = b = seed;
        u1 = mmp_rng_uniform53(&b), u2 = mmp_rng_uniform53(&b);
        CHECK(mmp_rng_normal_clamp(&a) == sqrt(-2.0 * log(u1 < 1e-300 ? 1e-300 : u1)) * cos(2.0 * M_PI * u2));
        mmp_rng_pair g;
        mmp_rng_pair_seed(&g, seed);
        b = seed;
        u1 = mmp_rng_uniform53_open(&b), u2 = mmp_rng_uniform53_open(&b);
        double rad = sqrt(-2.0 * log(u1));
        CHECK(mmp_rng_normal_pair(&g) == rad * cos(2.0 * M_PI * u2));
        CHECK(g.s == b);
        CHECK(mmp_rng_normal_pair(&g) == rad * sin(2.0 * M_PI * u2)); /* the cached half: no draw */
        CHECK(g.s == b);
        mmp_rng_normal_pair(&g);
        CHECK(g.s == b + 2 * MMP_RNG_GAMMA);
    }
    /* a state that makes the next uniform53 exactly 0 (state + GAMMA = mix^-1(0) = 0):
     * the clamp and the 1 - u keep both normals finite */
    mmp_rng z = 0 - MMP_RNG_GAMMA, z2 = z;
    CHECK(mmp_rng_uniform53(&z2) == 0);
    CHECK(isfinite(mmp_rng_normal_log1m(&z)));
    z = 0 - MMP_RNG_GAMMA;
    double nc = mmp_rng_normal_clamp(&z);
    CHECKF(isfinite(nc) && fabs(nc) <= sqrt(-2.0 * log(1e-300)), "clamped normal %g", nc);
    CHECK(mmp_rng_unit53(UINT64_MAX) == 1.0 - 0x1.0p-53);
    CHECK(mmp_rng_unit53(2048) == 0x1.0p-53);
}

static void moments(const char *what, double (*draw)(void *), void *st, double mean, double var, double tol_m,
                    double tol_v, double lo, double hi, int open_lo) {
    double s1 = 0, s2 = 0;
    int bad = 0;
    for (int i = 0; i < N; i++) {
        double x = draw(st);
        if (!(open_lo ? x > lo : x >= lo) || !(x < hi)) bad++;
        s1 += x;
        s2 += x * x;
    }
    double m = s1 / N, v = s2 / N - m * m;
    CHECKF(!bad, "%s: %d of %d draws out of range", what, bad, N);
    CHECKF(fabs(m - mean) < tol_m, "%s: mean %g, want %g", what, m, mean);
    CHECKF(fabs(v - var) < tol_v, "%s: variance %g, want %g", what, v, var);
}
static double d_u53(void *s) { return mmp_rng_uniform53(s); }
static double d_u53o(void *s) { return mmp_rng_uniform53_open(s); }
static double d_range(void *s) { return mmp_rng_range(s, -2, 6); }
static double d_log1m(void *s) { return mmp_rng_normal_log1m(s); }
static double d_clamp(void *s) { return mmp_rng_normal_clamp(s); }
static double d_pair(void *s) { return mmp_rng_normal_pair(s); }

/* 1e5 draws: the standard error of the mean is ~0.001 (uniform) and ~0.003
 * (normal), of the variance ~0.0002 and ~0.0045: the bounds are 5-7 of them. */
static void test_stats(void) {
    mmp_rng r = 11;
    moments("uniform53", d_u53, &r, 0.5, 1 / 12.0, 0.005, 0.0015, 0, 1, 0);
    moments("uniform53_open", d_u53o, &r, 0.5, 1 / 12.0, 0.005, 0.0015, 0, 1, 1);
    moments("range(-2,6)", d_range, &r, 2, 64 / 12.0, 0.04, 0.1, -2, 6, 0);
    moments("normal_log1m", d_log1m, &r, 0, 1, 0.02, 0.03, -40, 40, 0);
    moments("normal_clamp", d_clamp, &r, 0, 1, 0.02, 0.03, -40, 40, 0);
    mmp_rng_pair g;
    mmp_rng_pair_seed(&g, 12);
    moments("normal_pair", d_pair, &g, 0, 1, 0.02, 0.03, -40, 40, 0);

    /* bounded integers: in range, every value about equally often */
    static const uint64_t ns[] = {1, 2, 3, 7, 10, 1000, 1ULL << 32, (1ULL << 63) + 1, UINT64_MAX};
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++)
        for (int i = 0; i < 2000; i++) {
            CHECK(mmp_rng_below_reject(&r, ns[k]) < ns[k]);
            CHECK(mmp_rng_below_mod(&r, ns[k]) < ns[k]);
        }
    int h1[7] = {0}, h2[7] = {0}, h3[7] = {0};
    for (int i = 0; i < 70000; i++) {
        h1[mmp_rng_below_reject(&r, 7)]++;
        h2[mmp_rng_below_mod(&r, 7)]++;
        int64_t v = mmp_rng_int(&r, -3, 4);
        CHECK(v >= -3 && v < 4);
        if (v >= -3 && v < 4) h3[v + 3]++;
    }
    for (int i = 0; i < 7; i++)
        CHECKF(h1[i] > 9500 && h1[i] < 10500 && h2[i] > 9500 && h2[i] < 10500 && h3[i] > 9500 && h3[i] < 10500,
               "bucket %d: %d %d %d", i, h1[i], h2[i], h3[i]);
    CHECK(mmp_rng_int(&r, INT64_MIN, INT64_MAX) < INT64_MAX);
    for (int i = 0; i < 1000; i++) {
        int64_t v = mmp_rng_int(&r, -5, -2);
        CHECK(v >= -5 && v < -2);
    }
}

static void test_permutation(void) {
    enum { P = 257 };
    int64_t a[P], b[P];
    int seen[P] = {0};
    mmp_rng r1 = mmp_rng_derive(3, 1, 0), r2 = r1;
    mmp_rng_permutation(&r1, a, P);
    mmp_rng_permutation(&r2, b, P);
    CHECK(!memcmp(a, b, sizeof a) && r1 == r2);
    int fixed = 0;
    for (int i = 0; i < P; i++) {
        if (a[i] >= 0 && a[i] < P) seen[a[i]]++;
        fixed += a[i] == i;
    }
    for (int i = 0; i < P; i++) CHECKF(seen[i] == 1, "value %d seen %d times", i, seen[i]);
    CHECKF(fixed < 8, "%d fixed points", fixed); /* ~Poisson(1) */
    /* first position of a 3-permutation: all 3 about equally often */
    int cnt[3] = {0};
    mmp_rng r = 77;
    for (int i = 0; i < 30000; i++) {
        int64_t p3[3];
        mmp_rng_permutation(&r, p3, 3);
        cnt[p3[0]]++;
    }
    for (int i = 0; i < 3; i++) CHECKF(cnt[i] > 9500 && cnt[i] < 10500, "perm3 first = %d: %d", i, cnt[i]);
    mmp_rng_permutation(&r, a, 0); /* n = 0, 1: nothing to draw */
    mmp_rng before = r;
    mmp_rng_permutation(&r, a, 1);
    CHECK(a[0] == 0 && r == before);
}

static void test_derive(void) {
    /* against the independent implementation (see the top of the file) */
    CHECK(mmp_rng_derive(1, 0, 0) == 14677016025675086984ULL);
    CHECK(mmp_rng_derive(7, 0x5348554646ULL, 3) == 7726192644635038540ULL);
    CHECK(mmp_aug_key("a/b.jpg", 1, 0, 0) == 12624586878675299238ULL);
    CHECK(mmp_aug_key("", 3, 2, 1) == 5802014970334867332ULL);
    CHECK(mmp_aug_key(NULL, 3, 2, 1) == mmp_aug_key("", 3, 2, 1));
    /* deterministic, and every input matters */
    CHECK(mmp_rng_derive(5, 6, 7) == mmp_rng_derive(5, 6, 7));
    CHECK(mmp_rng_derive(5, 6, 7) != mmp_rng_derive(6, 6, 7));
    CHECK(mmp_rng_derive(5, 6, 7) != mmp_rng_derive(5, 7, 7));
    CHECK(mmp_rng_derive(5, 6, 7) != mmp_rng_derive(5, 6, 8));
    CHECK(mmp_rng_derive(1, 2, 3) != mmp_rng_derive(1, 3, 2)); /* a and b don't commute */
    uint64_t k0 = mmp_aug_key("a/b.jpg", 1, 0, 0);
    CHECK(k0 == mmp_aug_key("a/b.jpg", 1, 0, 0));
    CHECK(k0 != mmp_aug_key("a/b.jpg", 2, 0, 0));
    CHECK(k0 != mmp_aug_key("a/b.jpg", 1, 1, 0));
    CHECK(k0 != mmp_aug_key("a/b.jpg", 1, 0, 1));
    CHECK(k0 != mmp_aug_key("a/c.jpg", 1, 0, 0));
    CHECK(mmp_aug_key("x", 1, 2, 0) != mmp_aug_key("x", 2, 1, 0)); /* seed/epoch don't commute */
    /* neighbouring keys give unrelated streams: ~32 of 64 bits differ */
    int bits = 0;
    for (uint64_t e = 0; e < 1000; e++) {
        mmp_rng a = mmp_rng_derive(9, 1, e), b = mmp_rng_derive(9, 1, e + 1);
        bits += __builtin_popcountll(mmp_rng_next(&a) ^ mmp_rng_next(&b));
    }
    CHECKF(bits > 31000 && bits < 33000, "derived streams share bits: %d / 64000 differ", bits);
}

int main(void) {
    test_core();
    test_formulas();
    test_stats();
    test_permutation();
    test_derive();
    TEST_END();
}
