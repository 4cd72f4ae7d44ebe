/* Caption metrics vs pycocoevalcap 1.2 (fixtures from
 * tests/fixtures/gen_capmetrics.py): BLEU-1..4 (corpus and per image),
 * ROUGE-L, CIDEr-D on the same tokenized captions within 1e-12 relative; the
 * tokenizer equal to PTBTokenizer + pycocoevalcap's punctuation removal on
 * the fixture's captions; bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/capmetrics.h"
#include "json.h"
#include "mmp.h"
#include "testlib.h"

static double worst = 0;

static void close_to(double got, double want, const char *what, int img) {
    double rel = fabs(got - want) / fmax(fabs(want), 1e-300);
    if (want == 0) rel = fabs(got);
    if (rel > worst) worst = rel;
    CHECKF(rel <= 1e-12, "%s (image %d): got %.17g, pycocoevalcap %.17g", what, img, got, want);
}

static json_t *load(const char *name) {
    char rel[256], err[512];
    snprintf(rel, sizeof rel, "tests/fixtures/capmetrics/%s", name);
    json_t *j = NULL;
    if (mmp_json_load(t_root_path(rel), &j, err, sizeof err) != 1) {
        fprintf(stderr, "%s: %s\n", rel, err);
        exit(1);
    }
    return j;
}

static void check_set(const char *name) {
    json_t *j = load(name), *imgs = json_object_get(j, "images");
    int n = (int)json_array_size(imgs);
    CHECK(n > 3);
    const char **cand = calloc((size_t)n, sizeof *cand);
    const char ***refs = calloc((size_t)n, sizeof *refs);
    int *nrefs = calloc((size_t)n, sizeof *nrefs);
    for (int i = 0; i < n; i++) {
        json_t *im = json_array_get(imgs, (size_t)i), *rs = json_object_get(im, "refs");
        cand[i] = json_string_value(json_object_get(im, "cand"));
        nrefs[i] = (int)json_array_size(rs);
        refs[i] = calloc((size_t)nrefs[i], sizeof(char *));
        for (int r = 0; r < nrefs[i]; r++) refs[i][r] = json_string_value(json_array_get(rs, (size_t)r));
    }
    mmp_capscores s;
    char err[256];
    CHECK(mmp_capscores_compute(&s, cand, (const char *const *const *)refs, nrefs, n, err, sizeof err) == 0);
    for (int k = 0; k < 4; k++) close_to(s.bleu[k], json_real_value(json_array_get(json_object_get(j, "bleu"), (size_t)k)), "corpus BLEU", -1);
    close_to(s.rouge, json_real_value(json_object_get(j, "rouge")), "ROUGE-L", -1);
    close_to(s.cider, json_real_value(json_object_get(j, "cider")), "CIDEr-D", -1);
    for (int i = 0; i < n; i++) {
        json_t *im = json_array_get(imgs, (size_t)i);
        for (int k = 0; k < 4; k++)
            close_to(s.bleu_img[i * 4 + k], json_real_value(json_array_get(json_object_get(im, "bleu"), (size_t)k)), "BLEU", i);
        close_to(s.rouge_img[i], json_real_value(json_object_get(im, "rouge")), "ROUGE-L", i);
        close_to(s.cider_img[i], json_real_value(json_object_get(im, "cider")), "CIDEr-D", i);
    }
    printf("%s: %d images, BLEU-4 %.6f ROUGE-L %.6f CIDEr-D %.6f\n", name, n, s.bleu[3], s.rouge, s.cider);
    mmp_capscores_free(&s);
    for (int i = 0; i < n; i++) free(refs[i]);
    free(refs);
    free(cand);
    free(nrefs);
    json_decref(j);
}

static void check_tokenizer(void) {
    json_t *j = load("tokenize.json");
    size_t n = json_array_size(j);
    CHECK(n > 10);
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(j, i);
        const char *raw = json_string_value(json_array_get(p, 0)), *want = json_string_value(json_array_get(p, 1));
        char *got = mmp_cap_tokenize(raw);
        CHECKF(!strcmp(got, want), "tokenize \"%s\": got \"%s\", PTBTokenizer \"%s\"", raw, got, want);
        free(got);
    }
    json_decref(j);
    /* cases the fixture does not hold */
    const char *cases[][2] = {
        {"", ""},
        {"...", ""},
        {"Hello, WORLD.", "hello world"},
        {"won't can't ain't", "wo n't ca n't ai n't"},
        {"(x)", "-lrb- x -rrb-"},
        {"the '90s and 1980's", "the '90s and 1980 's"},
        {"a -- b --- c - d", "a b c d"},
        {"it\xe2\x80\x99s \xe2\x80\x9c" "fine\xe2\x80\x9d \xe2\x80\x94 ok", "it 's fine ok"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *got = mmp_cap_tokenize(cases[i][0]);
        CHECKF(!strcmp(got, cases[i][1]), "tokenize \"%s\": got \"%s\", want \"%s\"", cases[i][0], got, cases[i][1]);
        free(got);
    }
}

static void check_bad(void) {
    mmp_capscores s;
    char err[256];
    const char *c[1] = {"a dog"};
    const char *const *r[1] = {NULL};
    int nr[1] = {0};
    CHECK(mmp_capscores_compute(&s, c, r, nr, 1, err, sizeof err) == -1);
    CHECK(strstr(err, "no reference") != NULL);
    CHECK(mmp_capscores_compute(&s, c, r, nr, 0, err, sizeof err) == -1);
    /* a perfect match: BLEU 1 (up to pycocoevalcap's 1e-9), CIDEr 0 with one image (idf log(1/1) = 0) */
    const char *ref0[1] = {"a dog runs on the grass"};
    const char *const *r1[1] = {ref0};
    const char *c1[1] = {"a dog runs on the grass"};
    int n1[1] = {1};
    CHECK(mmp_capscores_compute(&s, c1, r1, n1, 1, err, sizeof err) == 0);
    CHECK(fabs(s.bleu[3] - 1) < 1e-8 && s.rouge == 1.0 && s.cider == 0.0);
    mmp_capscores_free(&s);
}

int main(void) {
    check_tokenizer();
    check_set("scores_coco.json");
    check_set("scores_rand.json");
    check_bad();
    printf("largest relative difference from pycocoevalcap: %.3g\n", worst);
    TEST_END();
}
