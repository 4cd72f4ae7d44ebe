/* SplitMix64 and the draws built on it (see rng.h). */
#include "rng.h"

#include <math.h>
#include <string.h>

#include "mmp.h"

uint64_t mmp_rng_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t mmp_rng_next(mmp_rng *r) { return mmp_rng_mix(*r += MMP_RNG_GAMMA); }

uint64_t mmp_rng_hash(uint64_t x) { return mmp_rng_mix(x + MMP_RNG_GAMMA); }

double mmp_rng_uniform53(mmp_rng *r) { return mmp_rng_unit53(mmp_rng_next(r)); }

double mmp_rng_uniform53_open(mmp_rng *r) { return ((double)(mmp_rng_next(r) >> 11) + 0.5) * 0x1.0p-53; }

double mmp_rng_range(mmp_rng *r, double a, double b) { return a + (b - a) * mmp_rng_uniform53(r); }

uint64_t mmp_rng_below_reject(mmp_rng *r, uint64_t n) {
    if (!n) return 0;
    uint64_t lim = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
    uint64_t v;
    do v = mmp_rng_next(r);
    while (v >= lim);
    return v % n;
}

int64_t mmp_rng_int(mmp_rng *r, int64_t lo, int64_t hi) {
    if (hi <= lo) return lo;
    return lo + (int64_t)mmp_rng_below_reject(r, (uint64_t)hi - (uint64_t)lo);
}

uint64_t mmp_rng_below_mod(mmp_rng *r, uint64_t n) { return mmp_rng_next(r) % n; }

void mmp_rng_permutation(mmp_rng *r, int64_t *perm, int64_t n) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)mmp_rng_below_reject(r, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

double mmp_rng_normal_log1m(mmp_rng *r) {
    double u1 = mmp_rng_uniform53(r), u2 = mmp_rng_uniform53(r);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

double mmp_rng_normal_clamp(mmp_rng *r) {
    double u1 = mmp_rng_uniform53(r), u2 = mmp_rng_uniform53(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double mmp_rng_normal_pair(mmp_rng_pair *g) {
    if (g->have) {
        g->have = 0;
        return g->spare;
    }
    double u = mmp_rng_uniform53_open(&g->s), v = mmp_rng_uniform53_open(&g->s), rad = sqrt(-2.0 * log(u));
    g->spare = rad * sin(2.0 * M_PI * v);
    g->have = 1;
    return rad * cos(2.0 * M_PI * v);
}

uint64_t mmp_rng_derive(uint64_t seed, uint64_t a, uint64_t b) {
    uint64_t x = mmp_rng_hash(seed ^ 0x6D6D70697065ULL); /* "mmpipe" */
    x = mmp_rng_hash(x ^ (a * 0xD1B54A32D192ED03ULL));
    return mmp_rng_hash(x ^ (b * 0xABC98388FB8FAC03ULL));
}

uint64_t mmp_aug_key(const char *id, uint64_t seed, uint64_t epoch, uint64_t view) {
    uint64_t h = mmp_hash64(id ? id : "", id ? strlen(id) : 0, 0);
    return mmp_rng_mix(mmp_rng_mix(h) ^ mmp_rng_mix(seed ^ 0x243F6A8885A308D3ULL) ^
                       mmp_rng_mix(epoch ^ 0x13198A2E03707344ULL) ^ mmp_rng_mix(view ^ 0xA4093822299F31D0ULL));
}
