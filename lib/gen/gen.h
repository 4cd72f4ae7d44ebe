/* gen/gen.h: decoding strategies over a decoder's step function (internal
 * header, not installed). docs/generate.md.
 *
 * Greedy search, beam search and sampling as Hugging Face transformers 4.30
 * `generate` does them (generation/utils.py greedy_search, beam_search,
 * sample; beam_search.py BeamSearchScorer + BeamHypotheses;
 * logits_process.py NoRepeatNGramLogitsProcessor, MinNewTokensLength-,
 * Temperature-, TopK-, TopPLogitsWarper), row by row:
 *
 *  - greedy: argmax (first index on ties) of the logits after the
 *    processors (no-repeat n-grams, min new tokens: -inf);
 *  - beam: scores = log_softmax(logits) (float32) -> processors -> + the
 *    beam's running score (float32); the 2*num_beams best of the row's
 *    num_beams*V candidates (descending, lower flat index first on ties);
 *    an EOS among the first num_beams of them closes a hypothesis of
 *    score sum_logprobs / len**length_penalty, len = the tokens before the
 *    EOS including the prompt (HF counts input_ids, so left padding counts:
 *    mmp_gen_input.lp_len); the others continue; a row is done when it has
 *    num_beams hypotheses and (early_stopping) or the worst of them is >=
 *    best running score / (cur_len + 1)**length_penalty; at max length
 *    the open beams close; the best hypothesis is returned;
 *  - sampling: processors -> temperature -> top-k -> top-p (HF's warper
 *    order and semantics, filtered entries -inf) -> softmax -> one draw by
 *    the inverse CDF from the row's own SplitMix64 stream (lib/rng.h, keyed
 *    per record): deterministic for any batch or thread count; not torch's
 *    multinomial numbers.
 *
 * Rows are independent: a row's result depends on its own prompt, key and
 * the options only, never on the batch it was decoded in (the decoder's
 * step must guarantee the same of its logits: tx/gpt2.h does).
 *
 * The decoder is a mmp_gen_lm: slots (KV-cache rows) fed prompts, one
 * token per step, and reordered between beam steps. */
#ifndef MMP_GEN_H
#define MMP_GEN_H
#include <stddef.h>
#include <stdint.h>

typedef struct mmp_gen_input {
    const int32_t *prompt; /* prompt token ids (they count in the n-gram history and the lengths) */
    int plen;
    const float *prefix;   /* optional prefix embeddings [nprefix, C] fed before the prompt (captioner) */
    int nprefix;
    uint64_t key;          /* sampling: the row's stream key (mmp_gen_key) */
    int lp_len;            /* beam: the prompt length the length penalty counts (0: plen);
                            * HF with left padding counts the padded length */
} mmp_gen_input;

typedef struct mmp_gen_output {
    int32_t *tokens;       /* malloc'ed: generated ids, the EOS included when the row ended with it */
    int n;
    int eos;               /* 1: ended with the EOS token */
    float logprob;         /* sum of the chosen tokens' log-probabilities (log_softmax of the
                            * logits, float32 sums as HF's beam scores), EOS included */
    double score;          /* beam: logprob / len**length_penalty (HF sequences_scores); else logprob */
} mmp_gen_output;

/* The decoder. Slots 0..nslots-1 are KV-cache rows. */
typedef struct mmp_gen_lm {
    void *self;
    int vocab;
    /* Empties the cache and makes room for nslots rows of maxlen positions. */
    int (*begin)(void *self, int nslots, int maxlen, char *err, size_t errlen);
    /* Feeds in[r]'s prefix + prompt to slot slot_of[r] for r < n (the other
     * slots untouched); logits[r * vocab]: the last position's logits of in[r]. */
    int (*prefill)(void *self, const mmp_gen_input *in, const int *slot_of, int n, float *logits, char *err,
                   size_t errlen);
    /* Appends n_new[s] (0 or 1) tokens ids (packed) to the slots; logits[s * vocab]
     * for the slots fed. */
    int (*step)(void *self, const int32_t *ids, const int *n_new, float *logits, char *err, size_t errlen);
    /* Slot s becomes the former slot src[s]. */
    void (*reorder)(void *self, const int *src);
} mmp_gen_lm;

typedef enum { MMP_GEN_GREEDY = 0, MMP_GEN_BEAM, MMP_GEN_SAMPLE } mmp_gen_mode;

typedef struct mmp_gen_opts {
    mmp_gen_mode mode;
    int max_new_tokens;      /* tokens generated at most (HF max_new_tokens), >= 1 */
    int min_new_tokens;      /* EOS banned before this many (HF min_new_tokens), 0: off */
    int eos_id;              /* -1: none */
    int no_repeat_ngram_size;/* 0: off */
    int num_beams;           /* beam, >= 1 */
    double length_penalty;   /* beam (HF default 1.0) */
    int early_stopping;      /* beam: 1 True, 0 False (HF default) */
    double temperature;      /* sample: 1.0 off */
    int top_k;               /* sample: 0 off (HF default 50) */
    double top_p;            /* sample: 1.0 off */
} mmp_gen_opts;

/* HF generate's defaults: greedy, max_new_tokens 20, eos -1, beams 1,
 * length_penalty 1, temperature 1, top_k 50, top_p 1. */
void mmp_gen_opts_default(mmp_gen_opts *o);
/* 0, or -1 with one line in err. */
int mmp_gen_opts_check(const mmp_gen_opts *o, int vocab, char *err, size_t errlen);

/* Decodes n rows together (one cache of n * num_beams slots, rows that are
 * done leave the batch's steps). out[n] (free with mmp_gen_output_free).
 * 0, or -1 with err (the decoder's error). */
int mmp_gen_run(const mmp_gen_lm *lm, const mmp_gen_opts *o, const mmp_gen_input *in, int n, mmp_gen_output *out,
                char *err, size_t errlen);
void mmp_gen_output_free(mmp_gen_output *o);

/* The sampling key of a record: mmp_rng_derive(seed, mmp_hash64(id), 0x67656e) ("gen"). */
uint64_t mmp_gen_key(uint64_t seed, const char *id);

/* ---------------------------------------------------------- pieces (tests) */

/* Bans (scores[t] = -inf) every token that would repeat an n-gram of
 * hist[0..len) (NoRepeatNGramLogitsProcessor on one row). */
void mmp_gen_no_repeat(const int32_t *hist, int len, int n, float *scores, int vocab);
/* scores[i] = logits[i] - max - log(sum exp(logits - max)) (float32). */
void mmp_gen_log_softmax(const float *logits, int vocab, float *scores);
/* TopKLogitsWarper: k' = min(max(k, min_keep), V); entries below the k'-th
 * largest value -> -inf (ties with it kept). */
void mmp_gen_top_k(float *scores, int vocab, int k, int min_keep);
/* TopPLogitsWarper: ascending sort, float32 softmax, cumulative sums
 * (accumulated in double, stored float32 as torch's CPU cumsum); entries
 * whose cumulative probability is <= 1 - p (float32) -> -inf except the
 * min_keep largest. */
void mmp_gen_top_p(float *scores, int vocab, double p, int min_keep);

/* ---------------------------------------------------------- GPT-2 */

/* A mmp_gen_lm over a tx/gpt2.h decoder and its KV cache (made by begin,
 * grown when a batch needs more): prefill feeds every row's prefix
 * embeddings then its prompt's token embeddings in one mmp_gpt2_step; step
 * is one mmp_gpt2_step_ids for all fed rows (a row's bits do not depend on
 * the others); reorder mmp_gpt2_cache_reorder. */
struct mmp_gpt2;
typedef struct mmp_gen_gpt2 mmp_gen_gpt2;
mmp_gen_gpt2 *mmp_gen_gpt2_new(const struct mmp_gpt2 *m);
void mmp_gen_gpt2_free(mmp_gen_gpt2 *g);
const mmp_gen_lm *mmp_gen_gpt2_lm(const mmp_gen_gpt2 *g);

#endif
