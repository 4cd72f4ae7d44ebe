/* The VQA accuracy vs a Python reimplementation of the official vqaEval.py
 * (tests/fixtures/gen_vqaeval.py): the normalization steps on assorted
 * answers, each question's accuracy, the overall and per-question-type means
 * (exact doubles); one-answer exact match. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/vqaeval.h"
#include "json.h"
#include "mmp.h"
#include "testlib.h"

static const char *str(json_t *a, size_t i) { return json_string_value(json_array_get(a, i)); }

int main(void) {
    char err[512];
    json_t *j = NULL;
    if (mmp_json_load(t_root_path("tests/fixtures/vqaeval/vqaeval.json"), &j, err, sizeof err) != 1) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    json_t *norm = json_object_get(j, "normalize");
    CHECK(json_array_size(norm) > 20);
    for (size_t i = 0; i < json_array_size(norm); i++) {
        json_t *r = json_array_get(norm, i);
        char *p = mmp_vqa_punct(str(r, 0)), *d = mmp_vqa_digit_article(str(r, 0)), *f = mmp_vqa_normalize(str(r, 0));
        CHECKF(!strcmp(p, str(r, 1)), "punct(\"%s\") = \"%s\", vqaEval \"%s\"", str(r, 0), p, str(r, 1));
        CHECKF(!strcmp(d, str(r, 2)), "digit_article(\"%s\") = \"%s\", vqaEval \"%s\"", str(r, 0), d, str(r, 2));
        CHECKF(!strcmp(f, str(r, 3)), "normalize(\"%s\") = \"%s\", vqaEval \"%s\"", str(r, 0), f, str(r, 3));
        free(p);
        free(d);
        free(f);
    }
    json_t *qs = json_object_get(j, "questions"), *per = json_object_get(j, "per_qtype");
    size_t nq = json_array_size(qs);
    CHECK(nq > 100);
    double sum = 0;
    const char *tname[16];
    double tsum[16] = {0};
    int tn[16] = {0}, nt = 0;
    for (size_t i = 0; i < nq; i++) {
        json_t *q = json_array_get(qs, i), *a = json_object_get(q, "answers");
        int n = (int)json_array_size(a);
        const char *ans[10];
        CHECK(n == 10);
        for (int k = 0; k < n; k++) ans[k] = str(a, (size_t)k);
        const char *pred = json_string_value(json_object_get(q, "prediction"));
        double acc = mmp_vqa_accuracy(pred, ans, n), want = json_real_value(json_object_get(q, "acc"));
        CHECKF(acc == want, "question %zu (\"%s\"): accuracy %.17g, vqaEval %.17g", i, pred, acc, want);
        sum += acc;
        const char *t = json_string_value(json_object_get(q, "qtype"));
        int k = 0;
        while (k < nt && strcmp(tname[k], t)) k++;
        if (k == nt) tname[nt++] = t;
        tsum[k] += acc;
        tn[k]++;
    }
    CHECK(sum / (double)nq == json_real_value(json_object_get(j, "overall")));
    CHECK((size_t)nt == json_object_size(per));
    for (int k = 0; k < nt; k++)
        CHECKF(tsum[k] / tn[k] == json_real_value(json_object_get(per, tname[k])), "question type \"%s\"", tname[k]);
    /* one-answer data: the official formula gives 0; exact match after normalization */
    const char *one[1] = {"two"};
    CHECK(mmp_vqa_accuracy("two", one, 1) == 0.0);
    CHECK(mmp_vqa_exact("Two.", "2") && mmp_vqa_exact("the dog", "Dog") && !mmp_vqa_exact("cat", "dog"));
    json_decref(j);
    TEST_END();
}
