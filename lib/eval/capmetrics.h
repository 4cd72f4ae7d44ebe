/* eval/capmetrics.h: caption metrics, identical to pycocoevalcap 1.2.
 *
 * The scorers take tokenized captions (tokens separated by spaces), as
 * pycocoevalcap's scorers take the output of its PTBTokenizer:
 *  - BLEU-1..4: pycocoevalcap's Bleu(4) (bleu_scorer.py): n-gram counts
 *    clipped by the maximum count over the references of the image, the
 *    "closest" reference length (ties: the shorter), corpus-level totals with
 *    its tiny/small constants (1e-15, 1e-9) and brevity penalty
 *    exp(1 - 1/ratio) when testlen/reflen < 1; per-image scores the same way.
 *  - ROUGE-L: Rouge() (rouge.py): per image the maximum over the references of
 *    the LCS precision and of the LCS recall, F with beta 1.2; the mean over
 *    the images (numpy's pairwise sum). Tokens are split on single spaces as
 *    rouge.py does ("".split(" ") = [""]: an empty candidate has one empty token).
 *  - CIDEr-D: Cider() (cider_scorer.py): n = 1..4, tf-idf vectors with the
 *    document frequencies of the references of the evaluated set, idf
 *    log(N images) - log(max(1, df)), the clipped similarity
 *    sum min(v_hyp, v_ref) * v_ref / (|v_hyp| |v_ref|), the Gaussian length
 *    penalty e^(-delta^2 / (2 * 6^2)) with cider_scorer.py's "length" (its
 *    count of bigrams), the mean over n, over the references, times 10.
 * The results agree with pycocoevalcap to ~1e-15 relative
 * (tests/fixtures/gen_capmetrics.py, tests/test_capmetrics.c). */
#ifndef MMP_EVAL_CAPMETRICS_H
#define MMP_EVAL_CAPMETRICS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* PTBTokenizer -preserveLines -lowerCase followed by pycocoevalcap's
 * punctuation removal, for ordinary captions: ASCII lower-casing; words split
 * from punctuation; clitics split off as PTB does ("horse's" -> "horse 's",
 * "can't" -> "ca n't", "they're" -> "they 're"); hyphenated words, decimal
 * numbers ("3.5", "1,000") and acronyms ("u.s.") kept whole; brackets as
 * -lrb- -rrb- -lsb- -rsb- -lcb- -rcb- (lower-cased, so pycocoevalcap keeps
 * them); then the tokens '' ' `` ` . ? ! , : - -- ... ; removed. Returns the
 * tokens joined by single spaces (heap string; "" when none).
 * Where it may differ from Stanford's: abbreviations PTB knows ("mr.",
 * "etc."), non-ASCII letters, quotes and dashes (PTB lower-cases and
 * normalizes Unicode), URLs, emoticons. See docs/train.md. */
char *mmp_cap_tokenize(const char *s);

typedef struct {
    int n;              /* images */
    double bleu[4];     /* corpus BLEU-1..4 */
    double *bleu_img;   /* [n][4] per-image BLEU-1..4 */
    double testlen, reflen; /* BLEU's corpus totals (candidate words, closest reference lengths) */
    double rouge;       /* mean ROUGE-L */
    double *rouge_img;  /* [n] */
    double cider;       /* mean CIDEr-D */
    double *cider_img;  /* [n] */
} mmp_capscores;

/* cand[i]: the tokenized candidate of image i; refs[i][0..nrefs[i]): its
 * tokenized references (nrefs[i] >= 1). 0, or -1 (an image without
 * references, n < 1) with the message in err. */
int mmp_capscores_compute(mmp_capscores *s, const char *const *cand, const char *const *const *refs, const int *nrefs, int n,
                          char *err, size_t errlen);
void mmp_capscores_free(mmp_capscores *s);

#ifdef __cplusplus
}
#endif
#endif
