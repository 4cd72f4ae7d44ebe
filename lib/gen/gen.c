/* gen/gen.c: greedy, beam search and sampling (gen/gen.h). */
#include "gen/gen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "rng.h"

void mmp_gen_opts_default(mmp_gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->mode = MMP_GEN_GREEDY;
    o->max_new_tokens = 20;
    o->eos_id = -1;
    o->num_beams = 1;
    o->length_penalty = 1.0;
    o->temperature = 1.0;
    o->top_k = 50;
    o->top_p = 1.0;
}

int mmp_gen_opts_check(const mmp_gen_opts *o, int vocab, char *err, size_t errlen) {
    if (o->max_new_tokens < 1) return mmp_errf(err, errlen, "max_new_tokens must be >= 1 (got %d)", o->max_new_tokens);
    if (o->min_new_tokens < 0) return mmp_errf(err, errlen, "min_new_tokens must be >= 0");
    if (o->eos_id >= vocab) return mmp_errf(err, errlen, "the EOS id %d is outside the vocabulary of %d", o->eos_id, vocab);
    if (o->no_repeat_ngram_size < 0) return mmp_errf(err, errlen, "no_repeat_ngram_size must be >= 0");
    if (o->mode == MMP_GEN_BEAM) {
        if (o->num_beams < 1) return mmp_errf(err, errlen, "num_beams must be >= 1");
        if (2 * o->num_beams > vocab)
            return mmp_errf(err, errlen, "num_beams %d needs a vocabulary of at least %d tokens (have %d)", o->num_beams,
                            2 * o->num_beams, vocab);
        if (!isfinite(o->length_penalty)) return mmp_errf(err, errlen, "length_penalty must be finite");
    }
    if (o->mode == MMP_GEN_SAMPLE) {
        if (!(o->temperature > 0) || !isfinite(o->temperature))
            return mmp_errf(err, errlen, "temperature must be > 0 (got %g)", o->temperature);
        if (o->top_k < 0) return mmp_errf(err, errlen, "top_k must be >= 0");
        if (!(o->top_p > 0 && o->top_p <= 1)) return mmp_errf(err, errlen, "top_p must be in (0, 1] (got %g)", o->top_p);
    }
    return 0;
}

void mmp_gen_output_free(mmp_gen_output *o) {
    free(o->tokens);
    o->tokens = NULL;
    o->n = 0;
}

uint64_t mmp_gen_key(uint64_t seed, const char *id) {
    if (!id) id = "";
    return mmp_rng_derive(seed, mmp_hash64(id, strlen(id), 0), 0x67656eULL);
}

/* ------------------------------------------------------------ processors */

void mmp_gen_no_repeat(const int32_t *hist, int len, int n, float *scores, int vocab) {
    if (n <= 0 || len + 1 < n) return;
    const int32_t *pre = hist + len - (n - 1); /* the last n-1 tokens */
    for (int i = 0; i + n <= len; i++) {
        if (n > 1 && memcmp(hist + i, pre, (size_t)(n - 1) * sizeof *hist)) continue;
        int32_t t = hist[i + n - 1];
        if (t >= 0 && t < vocab) scores[t] = -INFINITY;
    }
}

void mmp_gen_log_softmax(const float *x, int V, float *out) {
    float mx = -INFINITY;
    for (int i = 0; i < V; i++)
        if (x[i] > mx) mx = x[i];
    double s = 0;
    for (int i = 0; i < V; i++) s += expf(x[i] - mx);
    float lse = mx + (float)log(s);
    for (int i = 0; i < V; i++) out[i] = x[i] - lse;
}

void mmp_gen_top_k(float *s, int V, int k, int min_keep) {
    if (k < min_keep) k = min_keep;
    if (k >= V || k <= 0) return;
    /* the k-th largest value: partial selection on a copy */
    float *c = mmp_xmalloc((size_t)V * sizeof *c);
    memcpy(c, s, (size_t)V * sizeof *c);
    /* quickselect for index k-1 in descending order */
    int lo = 0, hi = V - 1, want = k - 1;
    while (lo < hi) {
        float piv = c[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (c[i] > piv) i++;
            while (c[j] < piv) j--;
            if (i <= j) {
                float t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break;
    }
    float kth = c[want];
    free(c);
    for (int i = 0; i < V; i++)
        if (s[i] < kth) s[i] = -INFINITY;
}

typedef struct {
    float v;
    int i;
} vi;

static int cmp_vi_asc(const void *a, const void *b) {
    const vi *x = a, *y = b;
    if (x->v < y->v) return -1;
    if (x->v > y->v) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

void mmp_gen_top_p(float *s, int V, double p, int min_keep) {
    if (p >= 1.0) return;
    vi *a = mmp_xmalloc((size_t)V * sizeof *a);
    for (int i = 0; i < V; i++) a[i] = (vi){s[i], i};
    qsort(a, (size_t)V, sizeof *a, cmp_vi_asc);
    float mx = a[V - 1].v;
    float sum = 0;
    float *e = mmp_xmalloc((size_t)V * sizeof *e);
    for (int i = 0; i < V; i++) {
        e[i] = expf(a[i].v - mx);
        sum += e[i];
    }
    float inv = 1.0f / sum;
    float thr = (float)(1.0 - p);
    double cum = 0;
    for (int i = 0; i < V - min_keep; i++) {
        cum += (double)(e[i] * inv);
        if ((float)cum <= thr) s[a[i].i] = -INFINITY;
    }
    free(e);
    free(a);
}

/* ------------------------------------------------------------ common */

typedef struct {
    const mmp_gen_lm *lm;
    const mmp_gen_opts *o;
    int V;
    float *scores; /* [V] scratch */
} ctx;

/* the processors on one row's scores: hist = prompt + generated (g of them) */
static void process(const ctx *c, const int32_t *hist, int len, int g, float *scores) {
    const mmp_gen_opts *o = c->o;
    if (o->no_repeat_ngram_size > 0) mmp_gen_no_repeat(hist, len, o->no_repeat_ngram_size, scores, c->V);
    if (o->eos_id >= 0 && g < o->min_new_tokens) scores[o->eos_id] = -INFINITY;
}

static float token_logprob(const float *logits, int V, int t) {
    float mx = -INFINITY;
    for (int i = 0; i < V; i++)
        if (logits[i] > mx) mx = logits[i];
    double s = 0;
    for (int i = 0; i < V; i++) s += expf(logits[i] - mx);
    float lse = mx + (float)log(s);
    return logits[t] - lse;
}

static int maxlen_of(const mmp_gen_input *in, int n, int max_new) {
    int m = 1;
    for (int r = 0; r < n; r++) {
        int l = in[r].nprefix + in[r].plen + max_new;
        if (l > m) m = l;
    }
    return m;
}

/* ------------------------------------------------------------ greedy / sample */

static int run_simple(const ctx *c, const mmp_gen_input *in, int n, mmp_gen_output *out, char *err, size_t errlen) {
    const mmp_gen_opts *o = c->o;
    const mmp_gen_lm *lm = c->lm;
    int V = c->V, T = o->max_new_tokens, rc = -1;
    int maxp = 0;
    for (int r = 0; r < n; r++)
        if (in[r].plen > maxp) maxp = in[r].plen;
    float *logits = mmp_xmalloc((size_t)n * V * sizeof *logits);
    int32_t *hist = mmp_xmalloc((size_t)n * (maxp + T) * sizeof *hist);
    int *len = mmp_xcalloc((size_t)n, sizeof *len), *slot = mmp_xmalloc((size_t)n * sizeof *slot);
    int *active = mmp_xmalloc((size_t)n * sizeof *active), *n_new = mmp_xcalloc((size_t)n, sizeof *n_new);
    int32_t *ids = mmp_xmalloc((size_t)n * sizeof *ids);
    mmp_rng *rng = mmp_xmalloc((size_t)n * sizeof *rng);
    float *sc = c->scores;
    for (int r = 0; r < n; r++) {
        if (in[r].plen) memcpy(hist + (size_t)r * (maxp + T), in[r].prompt, (size_t)in[r].plen * sizeof *hist);
        len[r] = in[r].plen;
        slot[r] = r;
        active[r] = 1;
        rng[r] = in[r].key;
        out[r] = (mmp_gen_output){.tokens = mmp_xmalloc((size_t)T * sizeof(int32_t))};
    }
    if (lm->begin(lm->self, n, maxlen_of(in, n, T), err, errlen)) goto done;
    if (lm->prefill(lm->self, in, slot, n, logits, err, errlen)) goto done;
    for (int g = 0; g < T; g++) {
        int nact = 0;
        for (int r = 0; r < n; r++) {
            n_new[r] = 0;
            if (!active[r]) continue;
            const float *lg = logits + (size_t)r * V;
            memcpy(sc, lg, (size_t)V * sizeof *sc);
            int32_t *h = hist + (size_t)r * (maxp + T);
            process(c, h, len[r], g, sc);
            int t = 0;
            if (o->mode == MMP_GEN_GREEDY) {
                for (int i = 1; i < V; i++)
                    if (sc[i] > sc[t]) t = i;
            } else {
                if (o->temperature != 1.0) {
                    float tf = (float)o->temperature;
                    for (int i = 0; i < V; i++) sc[i] = sc[i] / tf;
                }
                if (o->top_k > 0) mmp_gen_top_k(sc, V, o->top_k, 1);
                if (o->top_p < 1.0) mmp_gen_top_p(sc, V, o->top_p, 1);
                float mx = -INFINITY;
                for (int i = 0; i < V; i++)
                    if (sc[i] > mx) mx = sc[i];
                double tot = 0;
                for (int i = 0; i < V; i++) tot += (sc[i] = expf(sc[i] - mx));
                double u = mmp_rng_uniform53(&rng[r]) * tot, cum = 0;
                t = -1;
                for (int i = 0; i < V; i++) {
                    if (sc[i] <= 0) continue;
                    cum += sc[i];
                    t = i;
                    if (cum > u) break;
                }
            }
            mmp_gen_output *ou = &out[r];
            ou->logprob += token_logprob(lg, V, t);
            ou->tokens[ou->n++] = t;
            h[len[r]++] = t;
            if (t == o->eos_id) {
                ou->eos = 1;
                active[r] = 0;
                continue;
            }
            n_new[r] = 1;
            ids[nact++] = t;
        }
        if (!nact || g + 1 == T) break;
        if (lm->step(lm->self, ids, n_new, logits, err, errlen)) goto done;
    }
    for (int r = 0; r < n; r++) out[r].score = out[r].logprob;
    rc = 0;
done:
    if (rc)
        for (int r = 0; r < n; r++) mmp_gen_output_free(&out[r]);
    free(logits);
    free(hist);
    free(len);
    free(slot);
    free(active);
    free(n_new);
    free(ids);
    free(rng);
    return rc;
}

/* ------------------------------------------------------------ beam */

typedef struct {
    double score;
    float sum;
    int32_t *tok; /* generated tokens (without the EOS) */
    int n;
    int eos;
} hyp;

typedef struct {
    hyp *h; /* up to num_beams + 1 */
    int n;
    double worst;
    int done;
} hyps;

/* BeamHypotheses.add */
static void hyps_add(hyps *H, int nb, double lp, const int32_t *tok, int n, int full_len, float sum, int eos) {
    double score = (double)sum / pow((double)full_len, lp);
    if (!(H->n < nb || score > H->worst)) return;
    hyp *x = &H->h[H->n++];
    x->score = score;
    x->sum = sum;
    x->n = n;
    x->eos = eos;
    x->tok = mmp_xmalloc((size_t)(n ? n : 1) * sizeof *x->tok);
    memcpy(x->tok, tok, (size_t)n * sizeof *tok);
    if (H->n > nb) {
        /* sorted([(s, idx)]): the smallest score (lowest index on ties) goes,
         * worst = the next in that order */
        int a = 0;
        for (int i = 1; i < H->n; i++)
            if (H->h[i].score < H->h[a].score) a = i;
        int b = -1;
        for (int i = 0; i < H->n; i++) {
            if (i == a) continue;
            if (b < 0 || H->h[i].score < H->h[b].score) b = i;
        }
        H->worst = H->h[b].score;
        free(H->h[a].tok);
        memmove(&H->h[a], &H->h[a + 1], (size_t)(H->n - a - 1) * sizeof *H->h);
        H->n--;
    } else if (score < H->worst) {
        H->worst = score;
    }
}

typedef struct {
    float v;
    int idx; /* beam * V + token */
} cand;

static int run_beam(const ctx *c, const mmp_gen_input *in, int n, mmp_gen_output *out, char *err, size_t errlen) {
    const mmp_gen_opts *o = c->o;
    const mmp_gen_lm *lm = c->lm;
    int V = c->V, T = o->max_new_tokens, nb = o->num_beams, K = 2 * nb, S = n * nb, rc = -1;
    double lp = o->length_penalty;
    int maxp = 0;
    for (int r = 0; r < n; r++)
        if (in[r].plen > maxp) maxp = in[r].plen;
    int W = maxp + T; /* history row width */
    float *logits = mmp_xmalloc((size_t)S * V * sizeof *logits);
    int32_t *hist = mmp_xmalloc((size_t)S * W * sizeof *hist), *hist2 = mmp_xmalloc((size_t)S * W * sizeof *hist2);
    float *bscore = mmp_xmalloc((size_t)S * sizeof *bscore), *nscore = mmp_xmalloc((size_t)S * sizeof *nscore);
    int *src = mmp_xmalloc((size_t)S * sizeof *src), *n_new = mmp_xcalloc((size_t)S, sizeof *n_new);
    int32_t *ntok = mmp_xmalloc((size_t)S * sizeof *ntok), *ids = mmp_xmalloc((size_t)S * sizeof *ids);
    int *slot_of = mmp_xmalloc((size_t)n * sizeof *slot_of);
    hyps *H = mmp_xcalloc((size_t)n, sizeof *H);
    cand *cd = mmp_xmalloc((size_t)K * sizeof *cd);
    float *sc = c->scores;
    for (int r = 0; r < n; r++) {
        H[r].h = mmp_xcalloc((size_t)nb + 1, sizeof *H[r].h);
        H[r].worst = 1e9;
        slot_of[r] = r * nb;
        for (int b = 0; b < nb; b++) {
            if (in[r].plen) memcpy(hist + (size_t)(r * nb + b) * W, in[r].prompt, (size_t)in[r].plen * sizeof *hist);
            bscore[r * nb + b] = b ? -1e9f : 0.0f;
        }
    }
    if (lm->begin(lm->self, S, maxlen_of(in, n, T), err, errlen)) goto done;
    if (lm->prefill(lm->self, in, slot_of, n, logits, err, errlen)) goto done;
    /* the prompt's logits are every beam's (HF runs the num_beams copies) */
    for (int r = n - 1; r >= 0; r--) {
        const float *l0 = logits + (size_t)r * V;
        for (int b = nb - 1; b >= 0; b--) memmove(logits + (size_t)(r * nb + b) * V, l0, (size_t)V * sizeof *logits);
    }
    for (int s = 0; s < S; s++) src[s] = (s / nb) * nb;
    lm->reorder(lm->self, src);
    for (int g = 0; g < T; g++) {
        int nact = 0;
        for (int r = 0; r < n; r++) {
            int pl = in[r].plen, lpl = in[r].lp_len > 0 ? in[r].lp_len : pl;
            for (int b = 0; b < nb; b++) n_new[r * nb + b] = 0;
            if (H[r].done) continue;
            /* candidates: the K best of log_softmax + processors + beam score */
            int nc = 0;
            for (int b = 0; b < nb; b++) {
                int s = r * nb + b;
                mmp_gen_log_softmax(logits + (size_t)s * V, V, sc);
                process(c, hist + (size_t)s * W, pl + g, g, sc);
                float bs = bscore[s];
                for (int t = 0; t < V; t++) {
                    float v = sc[t] + bs;
                    int idx = b * V + t;
                    if (nc == K && !(v > cd[K - 1].v)) continue;
                    int j = nc < K ? nc++ : K - 1;
                    while (j > 0 && v > cd[j - 1].v) {
                        cd[j] = cd[j - 1];
                        j--;
                    }
                    cd[j] = (cand){v, idx};
                }
            }
            /* BeamSearchScorer.process */
            int bi = 0;
            for (int k = 0; k < K && bi < nb; k++) {
                int b = cd[k].idx / V, t = cd[k].idx % V, s = r * nb + b;
                if (t == o->eos_id) {
                    if (k >= nb) continue;
                    hyps_add(&H[r], nb, lp, hist + (size_t)s * W + pl, g, lpl + g, cd[k].v, 1);
                } else {
                    int d = r * nb + bi;
                    nscore[d] = cd[k].v;
                    ntok[d] = t;
                    src[d] = s;
                    bi++;
                }
            }
            if (bi < nb) { /* cannot happen: at most nb EOS among 2 nb candidates */
                mmp_errf(err, errlen, "beam search: too few candidates");
                goto done;
            }
            if (H[r].n >= nb) {
                if (o->early_stopping)
                    H[r].done = 1;
                else
                    H[r].done = H[r].worst >= (double)cd[0].v / pow((double)(lpl + g + 1), lp);
            }
            /* the beams continue from their sources */
            for (int b = 0; b < nb; b++) {
                int d = r * nb + b;
                memcpy(hist2 + (size_t)d * W, hist + (size_t)src[d] * W, (size_t)(pl + g) * sizeof *hist);
                hist2[(size_t)d * W + pl + g] = ntok[d];
                bscore[d] = nscore[d];
            }
            if (!H[r].done) {
                for (int b = 0; b < nb; b++) {
                    n_new[r * nb + b] = 1;
                    ids[nact++] = ntok[r * nb + b];
                }
            }
        }
        {
            int32_t *t = hist;
            hist = hist2;
            hist2 = t;
        }
        /* rows done this step: their histories in hist2 (now hist) may be
         * stale, but they are not read again */
        if (g + 1 == T || !nact) break;
        for (int r = 0; r < n; r++)
            if (H[r].done)
                for (int b = 0; b < nb; b++) src[r * nb + b] = r * nb + b;
        lm->reorder(lm->self, src);
        if (lm->step(lm->self, ids, n_new, logits, err, errlen)) goto done;
    }
    /* finalize: open beams of rows not done close at max length */
    for (int r = 0; r < n; r++) {
        if (H[r].done) continue;
        int pl = in[r].plen, lpl = in[r].lp_len > 0 ? in[r].lp_len : pl;
        for (int b = 0; b < nb; b++) {
            int s = r * nb + b;
            hyps_add(&H[r], nb, lp, hist + (size_t)s * W + pl, T, lpl + T, bscore[s], 0);
        }
    }
    for (int r = 0; r < n; r++) {
        /* sorted(key=score).pop(): the highest score, the last added on ties */
        int best = 0;
        for (int i = 1; i < H[r].n; i++)
            if (H[r].h[i].score >= H[r].h[best].score) best = i;
        hyp *x = &H[r].h[best];
        mmp_gen_output *ou = &out[r];
        ou->n = x->n + x->eos;
        ou->tokens = mmp_xmalloc((size_t)(ou->n ? ou->n : 1) * sizeof *ou->tokens);
        memcpy(ou->tokens, x->tok, (size_t)x->n * sizeof *x->tok);
        if (x->eos) ou->tokens[x->n] = o->eos_id;
        ou->eos = x->eos;
        ou->logprob = x->sum;
        ou->score = x->score;
    }
    rc = 0;
done:
    for (int r = 0; r < n; r++) {
        for (int i = 0; i < H[r].n; i++) free(H[r].h[i].tok);
        free(H[r].h);
    }
    free(H);
    free(cd);
    free(logits);
    free(hist);
    free(hist2);
    free(bscore);
    free(nscore);
    free(src);
    free(n_new);
    free(ntok);
    free(ids);
    free(slot_of);
    return rc;
}

int mmp_gen_run(const mmp_gen_lm *lm, const mmp_gen_opts *o, const mmp_gen_input *in, int n, mmp_gen_output *out,
                char *err, size_t errlen) {
    if (mmp_gen_opts_check(o, lm->vocab, err, errlen)) return -1;
    if (n <= 0) return 0;
    for (int r = 0; r < n; r++)
        if (in[r].plen + in[r].nprefix < 1) return mmp_errf(err, errlen, "row %d: an empty prompt", r);
    ctx c = {.lm = lm, .o = o, .V = lm->vocab, .scores = mmp_xmalloc((size_t)lm->vocab * sizeof(float))};
    int rc;
    if (o->mode == MMP_GEN_BEAM && o->num_beams > 1)
        rc = run_beam(&c, in, n, out, err, errlen);
    else {
        mmp_gen_opts o1 = *o;
        if (o1.mode == MMP_GEN_BEAM) o1.mode = MMP_GEN_GREEDY; /* HF: num_beams 1 is greedy */
        c.o = &o1;
        rc = run_simple(&c, in, n, out, err, errlen);
    }
    free(c.scores);
    return rc;
}
