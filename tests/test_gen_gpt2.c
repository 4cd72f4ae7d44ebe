/* test_gen_gpt2: greedy and beam search (lib/gen) on a tiny random GPT-2
 * (tx/gpt2.h with its KV cache) token-identical to transformers 4.30's
 * generate() (tests/fixtures/generate/gpt2/cases.txt, gen_generate.py):
 * each prompt alone, and the prompts as one left-padded batch (the length
 * penalty then counts the padded length: mmp_gen_input.lp_len); the same
 * outputs on 1 and 3 threads and in any batch. The prompts' ids are
 * GPT2Tokenizer's (prompts.txt); tests/sh/test_generate.sh checks mmpipe's
 * tokenizer and mmp-generate on the same model. */
#include <stdint.h>

#include "gen/gen.h"
#include "mmp.h"
#include "testlib.h"
#include "tx/gpt2.h"

#define NP 6

static int32_t P[NP][64];
static int PL[NP];

static int same(const mmp_gen_output *a, const mmp_gen_output *b) {
    return a->n == b->n && !memcmp(a->tokens, b->tokens, (size_t)a->n * sizeof *a->tokens) && a->logprob == b->logprob &&
           a->score == b->score;
}

int main(void) {
    const char *root = getenv("MMP_ROOT");
    if (!root) root = ".";
    char dir[4096], path[4200], err[1024];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/generate/gpt2", root);
    mmp_gpt2 *m = mmp_gpt2_load(dir, err, sizeof err);
    CHECKF(m, "%s", err);
    if (!m) TEST_END();

    /* the prompts' ids */
    snprintf(path, sizeof path, "%s/prompts.txt", dir);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f) TEST_END();
    char line[1024];
    for (int i = 0; i < NP; i++) {
        CHECK(fgets(line, sizeof line, f) != NULL);
        char *tab = strchr(line, '\t');
        CHECK(tab != NULL);
        if (!tab) TEST_END();
        *tab = 0;
        char *s = tab + 1, *e;
        PL[i] = 0;
        for (long v = strtol(s, &e, 10); e != s; s = e, v = strtol(s, &e, 10)) P[i][PL[i]++] = (int32_t)v;
        CHECK(PL[i] >= 1);
    }
    fclose(f);

    snprintf(path, sizeof path, "%s/cases.txt", dir);
    f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f) TEST_END();
    int Lpad, eos;
    CHECK(fscanf(f, "%d %d", &Lpad, &eos) == 2);
    mmp_gen_gpt2 *G = mmp_gen_gpt2_new(m);
    const mmp_gen_lm *lm = mmp_gen_gpt2_lm(G);
    int mode, nb, ng, mx, minn, row, ne, ncase = 0, nbad = 0, nmulti = 0;
    double lp, score;
    mmp_gen_output outs[2][NP]; /* alone, batched: of the current setting */
    int have[2][NP] = {{0}};
    while (fscanf(f, "%d %d %lf %d %d %d %d %d", &mode, &nb, &lp, &ng, &mx, &minn, &row, &ne) == 8) {
        int batched = minn; /* the column is BATCHED */
        int32_t e[64];
        for (int i = 0; i < ne; i++) CHECK(fscanf(f, "%d", &e[i]) == 1);
        CHECK(fscanf(f, "%lf", &score) == 1);
        mmp_gen_opts o;
        mmp_gen_opts_default(&o);
        o.mode = mode ? MMP_GEN_BEAM : MMP_GEN_GREEDY;
        o.num_beams = nb;
        o.length_penalty = lp;
        o.no_repeat_ngram_size = ng;
        o.max_new_tokens = mx;
        o.eos_id = eos;
        if (row == 0) { /* a new setting: decode it (alone, or all prompts at once) */
            for (int b = 0; b < 2; b++)
                for (int i = 0; i < NP; i++)
                    if (have[b][i]) mmp_gen_output_free(&outs[b][i]), have[b][i] = 0;
            mmp_gen_input in[NP];
            for (int i = 0; i < NP; i++)
                in[i] = (mmp_gen_input){.prompt = P[i], .plen = PL[i], .lp_len = batched ? Lpad : 0};
            mmp_gpt2_set_threads(m, 1 + 2 * (ncase % 2));
            if (batched) {
                CHECKF(mmp_gen_run(lm, &o, in, NP, outs[1], err, sizeof err) == 0, "%s", err);
                for (int i = 0; i < NP; i++) have[1][i] = 1;
            } else {
                for (int i = 0; i < NP; i++) {
                    CHECKF(mmp_gen_run(lm, &o, &in[i], 1, &outs[0][i], err, sizeof err) == 0, "%s", err);
                    have[0][i] = 1;
                }
                /* the same rows decoded together (their own lengths): the same results */
                mmp_gen_output all[NP];
                CHECKF(mmp_gen_run(lm, &o, in, NP, all, err, sizeof err) == 0, "%s", err);
                for (int i = 0; i < NP; i++) {
                    CHECKF(same(&all[i], &outs[0][i]), "row %d: batched differs from alone", i);
                    mmp_gen_output_free(&all[i]);
                }
                nmulti++;
            }
        }
        const mmp_gen_output *got = &outs[batched][row];
        int ok = have[batched][row] && got->n == ne && !memcmp(got->tokens, e, (size_t)ne * sizeof *e);
        if (ok && mode && fabs(got->score - score) > 1e-4 * (1 + fabs(score))) ok = 0;
        if (!ok) {
            nbad++;
            fprintf(stderr, "mode %d nb %d lp %g ng %d max %d batched %d row %d: got", mode, nb, lp, ng, mx, batched, row);
            for (int i = 0; i < got->n; i++) fprintf(stderr, " %d", got->tokens[i]);
            fprintf(stderr, " (%.7g), want", got->score);
            for (int i = 0; i < ne; i++) fprintf(stderr, " %d", e[i]);
            fprintf(stderr, " (%.7g)\n", score);
        }
        ncase++;
    }
    fclose(f);
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < NP; i++)
            if (have[b][i]) mmp_gen_output_free(&outs[b][i]);
    CHECKF(ncase >= 200 && nmulti >= 10, "%d cases read", ncase);
    CHECKF(nbad == 0, "%d of %d cases differ from transformers' generate()", nbad, ncase);
    printf("%d cases token-identical to generate()\n", ncase - nbad);
    mmp_gen_gpt2_free(G);
    mmp_gpt2_free(m);
    TEST_END();
}
