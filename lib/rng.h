/* rng.h: the one random-number module of libmmp.
 *
 * Every seeded number in mmpipe comes from SplitMix64 (Steele, Lea & Flood
 * 2014; reference C by S. Vigna, prng.di.unimi.it/splitmix64.c): the state
 * is one uint64_t, each step adds the golden-ratio increment MMP_RNG_GAMMA
 * and returns the state through a 64-bit finalizer (mmp_rng_mix). A stream
 * is therefore fully described by its 64-bit state: no hidden globals, so
 * outputs never depend on thread count, record order or machine.
 *
 * On top of the core, the uniform, bounded-integer and normal draws that the
 * modules have always used are kept as separately named variants, because
 * their exact formulas are part of the seeded outputs (augmented images,
 * initial weights, synthetic data): changing one formula would change bytes
 * on disk. Use the variant a module already uses; for new code prefer
 * mmp_rng_uniform53, mmp_rng_below_reject and mmp_rng_normal_log1m.
 */
#ifndef MMP_RNG_H
#define MMP_RNG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- */
/* core                                                              */
/* ---------------------------------------------------------------- */

/* A SplitMix64 stream: its whole state is this one counter. Seeding is
 * assignment (mmp_rng_seed, or `mmp_rng r = key;`). */
typedef uint64_t mmp_rng;

/* The increment of each step: 2^64 / golden ratio, odd. */
#define MMP_RNG_GAMMA 0x9E3779B97F4A7C15ULL

/* SplitMix64's finalizer (a variant of MurmurHash3's fmix64, "Mix13"):
 *   z = (z ^ z>>30) * 0xBF58476D1CE4E5B9; z = (z ^ z>>27) * 0x94D049BB133111EB; z ^ z>>31
 * A bijection of uint64 with good avalanche. Used on its own to mix keys
 * (mmp_aug_key, the shuffle buffer's seed). */
uint64_t mmp_rng_mix(uint64_t z);

static inline void mmp_rng_seed(mmp_rng *r, uint64_t key) { *r = key; }

/* One step: *r += MMP_RNG_GAMMA; return mmp_rng_mix(*r). */
uint64_t mmp_rng_next(mmp_rng *r);

/* Stateless SplitMix64 step: the value mmp_rng_next returns from state x,
 * i.e. mmp_rng_mix(x + MMP_RNG_GAMMA). The finalizer of mmp_hash64. */
uint64_t mmp_rng_hash(uint64_t x);

/* ---------------------------------------------------------------- */
/* uniform reals                                                     */
/* ---------------------------------------------------------------- */

/* The top 53 bits of x as a double in [0, 1): (x >> 11) * 2^-53. Exact
 * (every value is a multiple of 2^-53). Used by mmp_split_u on a hash. */
static inline double mmp_rng_unit53(uint64_t x) { return (double)(x >> 11) * 0x1.0p-53; }

/* [0, 1): mmp_rng_unit53(mmp_rng_next(r)); 0 is possible, 1 is not.
 * Users: image/augment.c (apply coins, jitter factors, crop scales),
 * train (dropout mask, head init, shuffles via the permutation),
 * synth/synth.c (shape geometry, pixel noise). */
double mmp_rng_uniform53(mmp_rng *r);

/* (0, 1): ((mmp_rng_next(r) >> 11) + 0.5) * 2^-53, the midpoints of the
 * 2^53 cells; never 0 or 1, so log() of it is finite.
 * Users: fuse/fuse.c (fusion-module init, random projections). */
double mmp_rng_uniform53_open(mmp_rng *r);

/* [a, b): a + (b - a) * mmp_rng_uniform53(r). Users: image/augment.c. */
double mmp_rng_range(mmp_rng *r, double a, double b);

/* ---------------------------------------------------------------- */
/* bounded integers                                                  */
/* ---------------------------------------------------------------- */

/* Unbiased integer in [0, n) by rejection: draws v = mmp_rng_next(r) until
 * v < UINT64_MAX - UINT64_MAX % n, returns v % n. Draws at least once for
 * every n >= 1 (n == 1 consumes a value and returns 0: augment streams
 * depend on it); n == 0 returns 0 without drawing.
 * Users: mmp_rng_int (augment, shuffle buffer), mmp_rng_permutation (train
 * batch order), tests. */
uint64_t mmp_rng_below_reject(mmp_rng *r, uint64_t n);

/* Integer in [lo, hi): lo + mmp_rng_below_reject(r, hi - lo); lo without
 * drawing when hi <= lo. Users: image/augment.c (crop offsets, erase
 * boxes), lib/shuffle.c (which held record leaves). */
int64_t mmp_rng_int(mmp_rng *r, int64_t lo, int64_t hi);

/* Integer in [0, n), n >= 1, by plain modulo: mmp_rng_next(r) % n, one
 * draw. Slightly biased (by < n / 2^64, negligible for small n).
 * Users: synth/synth.c (labels, colours, textures, caption words). */
uint64_t mmp_rng_below_mod(mmp_rng *r, uint64_t n);

/* Fisher-Yates: perm = 0..n-1, then for i = n-1 down to 1 swap perm[i]
 * with perm[mmp_rng_below_reject(r, i + 1)]. Users: train (epoch order). */
void mmp_rng_permutation(mmp_rng *r, int64_t *perm, int64_t n);

/* ---------------------------------------------------------------- */
/* standard normals (Box-Muller, all with u1, u2 drawn in that order)  */
/* ---------------------------------------------------------------- */

/* u1, u2 = mmp_rng_uniform53; sqrt(-2 ln(1 - u1)) * cos(2 pi u2); one value
 * per call (the sine half is dropped). 1 - u1 is in (0, 1], so always finite.
 * Users: image/augment.c (--erase value=random). */
double mmp_rng_normal_log1m(mmp_rng *r);

/* u1, u2 = mmp_rng_uniform53; u1 = max(u1, 1e-300);
 * sqrt(-2 ln(u1)) * cos(2 pi u2); one value per call.
 * Users: train/head.c (pair-head init N(0, 1/fan_in)), test_train_loop. */
double mmp_rng_normal_clamp(mmp_rng *r);

/* Box-Muller that uses both halves: a stream plus the cached second value. */
typedef struct {
    mmp_rng s;
    int have;     /* spare holds the next value */
    double spare;
} mmp_rng_pair;

static inline void mmp_rng_pair_seed(mmp_rng_pair *g, uint64_t key) {
    g->s = key;
    g->have = 0;
    g->spare = 0;
}

/* u, v = mmp_rng_uniform53_open; rad = sqrt(-2 ln u); returns rad * cos(2 pi v)
 * and keeps rad * sin(2 pi v) for the next call (which draws nothing).
 * Users: fuse/fuse.c (random projections, --proj-seed). */
double mmp_rng_normal_pair(mmp_rng_pair *g);

/* ---------------------------------------------------------------- */
/* key derivation                                                    */
/* ---------------------------------------------------------------- */

/* A stream state derived from (seed, a, b), for independent streams per
 * (purpose, epoch/step): with s0 = seed ^ 0x6D6D70697065 ("mmpipe"),
 *   x1 = next(s0); x2 = next(x1 ^ a * 0xD1B54A32D192ED03); return next(x2 ^ b * 0xABC98388FB8FAC03)
 * where next(s) = mmp_rng_hash(s). Users: train (shuffle per epoch, dropout
 * per step, head init), tests. */
uint64_t mmp_rng_derive(uint64_t seed, uint64_t a, uint64_t b);

/* Key of one augmented record's stream (the name is recorded in the
 * "image.augment.rng" header meta of mmp-augment's output):
 *   mix(mix(mmp_hash64(id, strlen(id), 0)) ^ mix(seed ^ 0x243F6A8885A308D3)
 *       ^ mix(epoch ^ 0x13198A2E03707344) ^ mix(view ^ 0xA4093822299F31D0))
 * with mix = mmp_rng_mix (the constants: hex digits of pi); id NULL = "".
 * Users: bin/augment.c (one stream per (id, seed, epoch, view)). */
uint64_t mmp_aug_key(const char *id, uint64_t seed, uint64_t epoch, uint64_t view);

#ifdef __cplusplus
}
#endif

#endif
