/* eval/vqaeval.h: the standard VQA accuracy, as the official evaluation
 * (GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py)
 * computes it.
 *
 * Per question: the prediction has '\n' and '\t' replaced by spaces, is
 * stripped, then normalized (mmp_vqa_punct, then mmp_vqa_digit_article). The
 * annotated answers are compared as they are, except that when they are not
 * all the same string each goes through mmp_vqa_punct (vqaEval.py normalizes
 * no more of them). For each of the n answers, acc_i = min(1, #(other
 * answers equal to the prediction) / 3); the question's accuracy is their
 * mean (with 10 answers: the average over the 10 choose 9 subsets). The
 * overall accuracy is the mean over the questions (vqaEval.py prints 100x,
 * rounded to 2 decimals), per question type the same over its questions.
 *
 * Differences, all outside ASCII: Python's str.lower(), str.split(),
 * str.strip() and the regular expressions' \d know Unicode letters, spaces
 * and digits; these functions only ASCII ones. */
#ifndef MMP_EVAL_VQAEVAL_H
#define MMP_EVAL_VQAEVAL_H

#ifdef __cplusplus
extern "C" {
#endif

/* processPunctuation: each of ; / [ ] " { } ( ) = + \ _ - > < @ ` , ? ! is
 * removed when it has a space on either side somewhere in the text or the
 * text has a digit,digit group, else replaced by a space; then the first 32
 * periods not followed by a digit are removed (vqaEval.py passes re.UNICODE,
 * 32, as re.sub's count). Heap string. */
char *mmp_vqa_punct(const char *s);
/* processDigitArticle: lower-case, split on whitespace, number words
 * none/zero..ten -> 0..10, articles a/an/the dropped, vqaEval.py's
 * contractions table ("dont" -> "don't"), joined by single spaces. Heap string. */
char *mmp_vqa_digit_article(const char *s);
/* The prediction's whole normalization: '\n' '\t' -> ' ', strip, punct, digit_article. */
char *mmp_vqa_normalize(const char *s);

/* The official accuracy of one question (n >= 1 answers; with n == 1 it is
 * always 0, as vqaEval.py computes it: use mmp_vqa_exact for one-answer data). */
double mmp_vqa_accuracy(const char *pred, const char *const *answers, int n);
/* 1 when the normalized prediction equals the normalized answer (both through
 * mmp_vqa_normalize), else 0: the plain accuracy of one-answer data sets. */
int mmp_vqa_exact(const char *pred, const char *answer);

#ifdef __cplusplus
}
#endif
#endif
