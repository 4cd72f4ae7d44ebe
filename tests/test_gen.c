/* test_gen: lib/gen's greedy, beam search and sampling on a toy language
 * model whose logits are a hash of the history (exact float32 values),
 * against transformers' generate() on the same model
 * (tests/fixtures/generate/toy_cases.txt), the top-k / top-p filters against
 * transformers' warpers (warpers.txt), and the batch-independence and
 * determinism of every mode. */
#include <stdint.h>

#include "gen/gen.h"
#include "mmp.h"
#include "testlib.h"

#define V 40
#define EOS 0
#define MAXSLOT 512
#define MAXLEN 256

/* ---------------------------------------------------------- the toy LM */

static float toy_logit(const int32_t *h, int L, int t) {
    uint32_t p1 = L >= 1 ? (uint32_t)h[L - 1] : V, p2 = L >= 2 ? (uint32_t)h[L - 2] : V;
    uint32_t x = p1 * 1000003u + p2 * 7919u + (uint32_t)L * 104729u + (uint32_t)t * 15485863u + 12345u;
    x ^= x >> 13;
    x *= 0x5BD1E995u;
    x ^= x >> 15;
    float v = (float)(x % 100003u) / 16384.0f - 3.0f;
    if (t == EOS) v += (float)((L - 8) * 0.25);
    return v;
}

typedef struct {
    int nslots;
    int len[MAXSLOT];
    int32_t hist[MAXSLOT][MAXLEN];
    int steps; /* slot-steps run (to see that done rows leave the batch) */
} toy;

static void toy_logits(const toy *m, int s, float *out) {
    for (int t = 0; t < V; t++) out[t] = toy_logit(m->hist[s], m->len[s], t);
}

static int toy_begin(void *self, int nslots, int maxlen, char *err, size_t errlen) {
    toy *m = self;
    if (nslots > MAXSLOT || maxlen > MAXLEN) return mmp_errf(err, errlen, "toy: too big");
    m->nslots = nslots;
    memset(m->len, 0, sizeof m->len);
    return 0;
}

static int toy_prefill(void *self, const mmp_gen_input *in, const int *slot_of, int n, float *logits, char *err,
                       size_t errlen) {
    toy *m = self;
    for (int r = 0; r < n; r++) {
        int s = slot_of[r];
        memcpy(m->hist[s], in[r].prompt, (size_t)in[r].plen * sizeof(int32_t));
        m->len[s] = in[r].plen;
        toy_logits(m, s, logits + (size_t)r * V);
    }
    return 0;
}

static int toy_step(void *self, const int32_t *ids, const int *n_new, float *logits, char *err, size_t errlen) {
    toy *m = self;
    int k = 0;
    for (int s = 0; s < m->nslots; s++) {
        if (!n_new[s]) continue;
        if (m->len[s] >= MAXLEN) return mmp_errf(err, errlen, "toy: past maxlen");
        m->hist[s][m->len[s]++] = ids[k++];
        toy_logits(m, s, logits + (size_t)s * V);
        m->steps++;
    }
    return 0;
}

static void toy_reorder(void *self, const int *src) {
    toy *m = self;
    static int32_t h[MAXSLOT][MAXLEN];
    static int len[MAXSLOT];
    for (int s = 0; s < m->nslots; s++) {
        len[s] = m->len[src[s]];
        memcpy(h[s], m->hist[src[s]], sizeof h[s]);
    }
    memcpy(m->len, len, sizeof(int) * (size_t)m->nslots);
    memcpy(m->hist, h, sizeof h[0] * (size_t)m->nslots);
}

static toy TM;
static mmp_gen_lm LM = {.self = &TM, .vocab = V, .begin = toy_begin, .prefill = toy_prefill, .step = toy_step,
                        .reorder = toy_reorder};

/* ---------------------------------------------------------- HF cases */

static void test_hf_cases(const char *root) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/generate/toy_cases.txt", root);
    FILE *f = fopen(path, "r");
    if (!f) {
        CHECKF(0, "cannot open %s", path);
        return;
    }
    int ncase = 0, nbad = 0;
    int mode, nb, ng, mx, mn, early, np, ne;
    double lp;
    while (fscanf(f, "%d %d %lf %d %d %d %d %d", &mode, &nb, &lp, &ng, &mx, &mn, &early, &np) == 8) {
        int32_t p[64], e[64];
        for (int i = 0; i < np; i++)
            if (fscanf(f, "%d", &p[i]) != 1) goto bad;
        if (fscanf(f, "%d", &ne) != 1) goto bad;
        for (int i = 0; i < ne; i++)
            if (fscanf(f, "%d", &e[i]) != 1) goto bad;
        double score;
        if (fscanf(f, "%lf", &score) != 1) goto bad;
        mmp_gen_opts o;
        mmp_gen_opts_default(&o);
        o.mode = mode ? MMP_GEN_BEAM : MMP_GEN_GREEDY;
        o.num_beams = nb;
        o.length_penalty = lp;
        o.no_repeat_ngram_size = ng;
        o.max_new_tokens = mx;
        o.min_new_tokens = mn;
        o.early_stopping = early;
        o.eos_id = EOS;
        mmp_gen_input in = {.prompt = p, .plen = np};
        mmp_gen_output out;
        char err[256];
        int rc = mmp_gen_run(&LM, &o, &in, 1, &out, err, sizeof err);
        CHECKF(rc == 0, "case %d: %s", ncase, err);
        if (rc) return;
        int same = out.n == ne && !memcmp(out.tokens, e, (size_t)ne * sizeof *e);
        if (mode && fabs(out.score - score) > 1e-5 * (1 + fabs(score))) same = 0;
        if (!same) {
            nbad++;
            fprintf(stderr, "case %d (mode %d nb %d lp %g ng %d max %d min %d early %d): got", ncase, mode, nb, lp, ng,
                    mx, mn, early);
            for (int i = 0; i < out.n; i++) fprintf(stderr, " %d", out.tokens[i]);
            fprintf(stderr, " (%.9g), want", out.score);
            for (int i = 0; i < ne; i++) fprintf(stderr, " %d", e[i]);
            fprintf(stderr, " (%.9g)\n", score);
        }
        mmp_gen_output_free(&out);
        ncase++;
    }
    fclose(f);
    CHECKF(ncase >= 100, "only %d cases read", ncase);
    CHECKF(nbad == 0, "%d of %d cases differ from transformers", nbad, ncase);
    return;
bad:
    fclose(f);
    CHECKF(0, "%s: bad line after case %d", path, ncase);
}

static void test_warpers(const char *root) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/generate/warpers.txt", root);
    FILE *f = fopen(path, "r");
    if (!f) {
        CHECKF(0, "cannot open %s", path);
        return;
    }
    char kind[8];
    double par;
    int mk, n, nk, ncase = 0, nbad = 0;
    float lg[128];
    int keep[128];
    while (fscanf(f, "%7s %lf %d %d", kind, &par, &mk, &n) == 4) {
        for (int i = 0; i < n; i++)
            if (fscanf(f, "%f", &lg[i]) != 1) goto bad;
        if (fscanf(f, "%d", &nk) != 1) goto bad;
        for (int i = 0; i < nk; i++)
            if (fscanf(f, "%d", &keep[i]) != 1) goto bad;
        if (!strcmp(kind, "topk"))
            mmp_gen_top_k(lg, n, (int)par, mk);
        else
            mmp_gen_top_p(lg, n, par, mk);
        int got = 0, ok = 1;
        for (int i = 0; i < n; i++)
            if (isfinite(lg[i])) {
                if (got >= nk || keep[got] != i) ok = 0;
                got++;
            }
        if (got != nk) ok = 0;
        if (!ok) {
            nbad++;
            fprintf(stderr, "%s %g min_keep %d V %d: kept %d, want %d\n", kind, par, mk, n, got, nk);
        }
        ncase++;
    }
    fclose(f);
    CHECKF(ncase >= 100, "only %d warper cases", ncase);
    CHECKF(nbad == 0, "%d of %d warper cases differ", nbad, ncase);
    return;
bad:
    fclose(f);
    CHECKF(0, "%s: bad line", path);
}

/* ---------------------------------------------------------- properties */

static int same_out(const mmp_gen_output *a, const mmp_gen_output *b) {
    return a->n == b->n && a->eos == b->eos && !memcmp(a->tokens, b->tokens, (size_t)a->n * sizeof *a->tokens) &&
           a->logprob == b->logprob && a->score == b->score;
}

#define NR 7
static void test_batch(void) {
    static int32_t prompts[NR][12];
    mmp_gen_input in[NR];
    for (int r = 0; r < NR; r++) {
        int np = 1 + (r * 5) % 11;
        for (int i = 0; i < np; i++) prompts[r][i] = 1 + (r * 7 + i * 13) % (V - 1);
        in[r] = (mmp_gen_input){.prompt = prompts[r], .plen = np, .key = mmp_gen_key(42, r % 2 ? "a" : "b")};
        if (r == 6) in[r].key = mmp_gen_key(42, "c");
    }
    for (int c = 0; c < 6; c++) {
        mmp_gen_opts o;
        mmp_gen_opts_default(&o);
        o.eos_id = EOS;
        o.max_new_tokens = 15;
        if (c == 1) o.mode = MMP_GEN_BEAM, o.num_beams = 4, o.no_repeat_ngram_size = 2, o.length_penalty = 0.7;
        if (c == 2) o.mode = MMP_GEN_BEAM, o.num_beams = 3, o.length_penalty = 2.0, o.min_new_tokens = 3;
        if (c == 3) o.mode = MMP_GEN_SAMPLE, o.top_k = 0;
        if (c == 4) o.mode = MMP_GEN_SAMPLE, o.top_k = 10, o.top_p = 0.8, o.temperature = 0.7;
        if (c == 5) o.mode = MMP_GEN_SAMPLE, o.top_k = 0, o.temperature = 3.0, o.no_repeat_ngram_size = 1;
        mmp_gen_output all[NR], one;
        char err[256];
        CHECK(mmp_gen_run(&LM, &o, in, NR, all, err, sizeof err) == 0);
        for (int r = 0; r < NR; r++) {
            CHECK(mmp_gen_run(&LM, &o, &in[r], 1, &one, err, sizeof err) == 0);
            CHECKF(same_out(&all[r], &one), "mode case %d row %d: batched != alone", c, r);
            CHECK(all[r].n >= 1 && all[r].n <= o.max_new_tokens);
            CHECK(all[r].eos == (all[r].tokens[all[r].n - 1] == EOS));
            if (o.min_new_tokens) CHECK(all[r].n > o.min_new_tokens || !all[r].eos);
            if (o.no_repeat_ngram_size == 1)
                for (int i = 0; i < all[r].n; i++)
                    for (int j = 0; j < in[r].plen; j++) CHECK(all[r].tokens[i] != in[r].prompt[j]);
            if (o.mode != MMP_GEN_BEAM) CHECK(all[r].logprob < 0 && all[r].score == all[r].logprob);
            mmp_gen_output_free(&one);
        }
        if (c >= 3) { /* same key -> same text (rows 1, 3, 5 share prompt? no: keys only) */
            mmp_gen_input twin[2] = {in[0], in[0]};
            mmp_gen_output tw[2];
            CHECK(mmp_gen_run(&LM, &o, twin, 2, tw, err, sizeof err) == 0);
            CHECK(same_out(&tw[0], &tw[1]) && same_out(&tw[0], &all[0]));
            twin[1].key = mmp_gen_key(43, "b");
            mmp_gen_output_free(&tw[0]);
            mmp_gen_output_free(&tw[1]);
        }
        for (int r = 0; r < NR; r++) mmp_gen_output_free(&all[r]);
    }
    /* sampling: different keys give different texts (most of the time) */
    {
        mmp_gen_opts o;
        mmp_gen_opts_default(&o);
        o.mode = MMP_GEN_SAMPLE;
        o.top_k = 0;
        o.max_new_tokens = 10;
        mmp_gen_input x[16];
        mmp_gen_output y[16];
        char id[16], err[256];
        for (int r = 0; r < 16; r++) {
            snprintf(id, sizeof id, "r%d", r);
            x[r] = (mmp_gen_input){.prompt = prompts[0], .plen = 1, .key = mmp_gen_key(1, id)};
        }
        CHECK(mmp_gen_run(&LM, &o, x, 16, y, err, sizeof err) == 0);
        int distinct = 0;
        for (int r = 1; r < 16; r++) distinct += !same_out(&y[0], &y[r]);
        CHECKF(distinct >= 12, "only %d of 15 samples differ from the first", distinct);
        for (int r = 0; r < 16; r++) mmp_gen_output_free(&y[r]);
    }
}

/* done rows leave the batch: a row that ends at once costs no steps */
static void test_done_rows(void) {
    mmp_gen_opts o;
    mmp_gen_opts_default(&o);
    o.eos_id = EOS;
    o.max_new_tokens = 30;
    o.mode = MMP_GEN_BEAM;
    o.num_beams = 2;
    o.early_stopping = 1;
    int32_t p[1] = {5};
    mmp_gen_input in = {.prompt = p, .plen = 1};
    mmp_gen_output out;
    char err[256];
    TM.steps = 0;
    CHECK(mmp_gen_run(&LM, &o, &in, 1, &out, err, sizeof err) == 0);
    /* every step feeds 2 beams until the row is done: at most 2 per token */
    CHECK(TM.steps <= 2 * (out.n + 1));
    mmp_gen_output_free(&out);
}

static void test_no_repeat(void) {
    float s[8];
    int32_t h[] = {1, 2, 3, 1, 2};
    for (int i = 0; i < 8; i++) s[i] = 0;
    mmp_gen_no_repeat(h, 5, 3, s, 8); /* (1,2) -> 3 seen */
    for (int i = 0; i < 8; i++) CHECK(!!isinf(s[i]) == (i == 3));
    for (int i = 0; i < 8; i++) s[i] = 0;
    mmp_gen_no_repeat(h, 5, 2, s, 8); /* (2) -> 3 */
    for (int i = 0; i < 8; i++) CHECK(!!isinf(s[i]) == (i == 3));
    for (int i = 0; i < 8; i++) s[i] = 0;
    mmp_gen_no_repeat(h, 1, 3, s, 8); /* too short */
    for (int i = 0; i < 8; i++) CHECK(s[i] == 0);
}

static void test_bad_opts(void) {
    mmp_gen_opts o;
    char err[256];
    mmp_gen_opts_default(&o);
    o.max_new_tokens = 0;
    CHECK(mmp_gen_opts_check(&o, V, err, sizeof err) < 0 && strstr(err, "max_new_tokens"));
    mmp_gen_opts_default(&o);
    o.mode = MMP_GEN_BEAM;
    o.num_beams = 21;
    CHECK(mmp_gen_opts_check(&o, V, err, sizeof err) < 0 && strstr(err, "vocabulary"));
    mmp_gen_opts_default(&o);
    o.mode = MMP_GEN_SAMPLE;
    o.top_p = 0;
    CHECK(mmp_gen_opts_check(&o, V, err, sizeof err) < 0 && strstr(err, "top_p"));
    o.top_p = 1;
    o.eos_id = V;
    CHECK(mmp_gen_opts_check(&o, V, err, sizeof err) < 0 && strstr(err, "EOS"));
}

int main(void) {
    const char *root = getenv("MMP_ROOT");
    if (!root) root = ".";
    test_no_repeat();
    test_bad_opts();
    test_warpers(root);
    test_hf_cases(root);
    test_batch();
    test_done_rows();
    TEST_END();
}
