/* text/wordlevel.h: a word-level vocabulary for decoders trained from
 * scratch (mmp-train-step --head caption without a tokenizer), saved as a
 * Hugging Face tokenizers file (tokenizer.json: model WordLevel, normalizer
 * Lowercase, pre_tokenizer Whitespace, no decoder; tokenizers.Tokenizer
 * .from_file loads it and gives the same ids).
 *
 * Words: the text lower-cased, then split as the Whitespace pre-tokenizer's
 * pattern \w+|[^\w\s]+ (ASCII letters, digits and '_' are \w; bytes >= 0x80
 * count as \w, so a UTF-8 word stays whole; lower-casing is ASCII's).
 * Ids: <pad> 0, <bos> 1, <eos> 2, <unk> 3 (special tokens), then the words
 * seen at least min_count times, the most frequent first (ties: byte order).
 * Decoding joins the words with one space and skips the special tokens (as
 * tokenizers' decode(ids) with skip_special_tokens=True and no decoder). */
#ifndef MMP_TEXT_WORDLEVEL_H
#define MMP_TEXT_WORDLEVEL_H
#include <stddef.h>
#include <stdint.h>

enum { MMP_WL_PAD = 0, MMP_WL_BOS = 1, MMP_WL_EOS = 2, MMP_WL_UNK = 3, MMP_WL_NSPECIAL = 4 };

typedef struct mmp_wordlevel mmp_wordlevel;

/* From n texts: every word counted; min_count >= 1. */
mmp_wordlevel *mmp_wl_build(const char *const *texts, size_t n, int min_count);
/* Reads a tokenizer.json of model type WordLevel (unk_token required).
 * NULL with one line in err naming the file. */
mmp_wordlevel *mmp_wl_load(const char *path, char *err, size_t errlen);
/* Writes PATH (atomically). 0 or -1 with err. */
int mmp_wl_save(const mmp_wordlevel *w, const char *path, char *err, size_t errlen);
void mmp_wl_free(mmp_wordlevel *w);
int mmp_wl_size(const mmp_wordlevel *w);
const char *mmp_wl_token(const mmp_wordlevel *w, int id);
/* The id of a token (exact), -1 when absent. */
int mmp_wl_id(const mmp_wordlevel *w, const char *tok);
/* ids of text's words (unknown: <unk>) into ids[0..max); returns the count
 * (may exceed max). */
int mmp_wl_encode(const mmp_wordlevel *w, const char *text, int32_t *ids, int max);
/* heap string */
char *mmp_wl_decode(const mmp_wordlevel *w, const int32_t *ids, int n);

#endif
