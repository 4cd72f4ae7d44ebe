/* gen/gpt2_lm.c: the mmp_gen_lm of a GPT-2 decoder (gen/gen.h, tx/gpt2.h).
 *
 * A row's logits must not depend on the batch. mmp_gpt2_step computes a call
 * of at most GROUP new positions with few-row dot products and a bigger one
 * with the GEMM: the same values within float rounding, not the same bits.
 * So each prompt is fed in a call of its own (its bits depend on its length
 * only) and the decoding steps take one path whatever the batch: by default
 * the slots GROUP at a time (the few-row path: weights streamed once per
 * GROUP rows, best for few sequences); "wide" (mmp_gen_gpt2_set_wide: beam
 * search, many sequences) all fed slots in one call, topped up to GROUP + 1
 * rows with dummy slots (reset to empty at each reorder) so that it is always
 * the GEMM. */
#include <stdlib.h>
#include <string.h>

#include "gen/gen.h"
#include "mmp.h"
#include "tx/gpt2.h"

#define GROUP 4 /* mmp_gpt2_step's few-row path: calls of <= 4 new positions */

struct mmp_gen_gpt2 {
    mmp_gen_lm lm;
    const mmp_gpt2 *m;
    mmp_gpt2_cache *c;
    int nslots, maxlen;     /* in use */
    int cap_slots, cap_len; /* of the cache */
    float *buf;             /* [nslots, V]: prefill's logits by slot */
    int *n_new;
    int wide;               /* steps through the GEMM (dummy slots nslots .. nslots + GROUP, empty slot after) */
    int dummies_fed;        /* the dummy slots hold a position since the last reorder */
    int32_t *ids;           /* [cap_slots] */
    int *src;               /* [cap_slots] */
};

#define SPARE (GROUP + 1) /* GROUP dummy slots + one always empty */

static int g_begin(void *self, int nslots, int maxlen, char *err, size_t errlen) {
    mmp_gen_gpt2 *g = self;
    if (maxlen > g->m->cfg.ctx)
        return mmp_errf(err, errlen, "%d positions needed, the decoder has %d", maxlen, g->m->cfg.ctx);
    if (!g->c || nslots + SPARE > g->cap_slots || maxlen > g->cap_len) {
        mmp_gpt2_cache_free(g->c);
        g->cap_slots = nslots + SPARE > g->cap_slots ? nslots + SPARE : g->cap_slots;
        g->cap_len = maxlen > g->cap_len ? maxlen : g->cap_len;
        g->c = mmp_gpt2_cache_new(g->m, g->cap_slots, g->cap_len);
        if (!g->c) return mmp_errf(err, errlen, "cannot make a KV cache of %d x %d", g->cap_slots, g->cap_len);
        free(g->buf);
        free(g->n_new);
        g->buf = NULL;
        g->n_new = mmp_xmalloc((size_t)g->cap_slots * sizeof *g->n_new);
        free(g->ids);
        free(g->src);
        g->ids = mmp_xmalloc((size_t)g->cap_slots * sizeof *g->ids);
        g->src = mmp_xmalloc((size_t)g->cap_slots * sizeof *g->src);
    }
    g->dummies_fed = 0;
    mmp_gpt2_cache_reset(g->c);
    g->nslots = nslots;
    g->maxlen = maxlen;
    return 0;
}

static int g_prefill(void *self, const mmp_gen_input *in, const int *slot_of, int n, float *logits, char *err,
                     size_t errlen) {
    mmp_gen_gpt2 *g = self;
    int C = g->m->cfg.C, V = g->m->cfg.vocab, S = g->cap_slots;
    if (!g->buf) g->buf = mmp_xmalloc((size_t)S * V * sizeof *g->buf);
    int rc = 0;
    for (int r = 0; r < n && !rc; r++) { /* one call per prompt: its bits depend on it alone */
        int T = in[r].nprefix + in[r].plen;
        float *x = mmp_xmalloc((size_t)T * C * sizeof *x);
        if (in[r].nprefix) memcpy(x, in[r].prefix, (size_t)in[r].nprefix * C * sizeof *x);
        if (in[r].plen) mmp_gpt2_embed(g->m, in[r].prompt, in[r].plen, x + (size_t)in[r].nprefix * C);
        for (int s = 0; s < S; s++) g->n_new[s] = 0;
        g->n_new[slot_of[r]] = T;
        rc = mmp_gpt2_step(g->m, g->c, x, g->n_new, g->buf, err, errlen);
        if (!rc) memcpy(logits + (size_t)r * V, g->buf + (size_t)slot_of[r] * V, (size_t)V * sizeof *logits);
        free(x);
    }
    return rc;
}

/* src over the whole cache: the search's slots, then the spare ones (the
 * dummies reset to the empty slot) */
static void full_reorder(mmp_gen_gpt2 *g, const int *src) {
    int S = g->cap_slots, empty = S - 1;
    for (int s = 0; s < S; s++) g->src[s] = s < g->nslots && src ? src[s] : s >= g->nslots ? empty : s;
    mmp_gpt2_cache_reorder(g->c, g->src);
    g->dummies_fed = 0;
}

static int g_step(void *self, const int32_t *ids, const int *n_new, float *logits, char *err, size_t errlen) {
    mmp_gen_gpt2 *g = self;
    int S = g->cap_slots, V = g->m->cfg.vocab;
    if (!g->buf) g->buf = mmp_xmalloc((size_t)S * V * sizeof *g->buf);
    if (g->wide) { /* one call, at least GROUP + 1 rows: always the GEMM */
        int fed = 0;
        for (int s = 0; s < S; s++) {
            g->n_new[s] = s < g->nslots && n_new[s] ? 1 : 0;
            if (g->n_new[s]) g->ids[fed] = ids[fed], fed++;
        }
        if (!fed) return 0;
        if (fed <= GROUP) {
            if (g->dummies_fed) full_reorder(g, NULL);
            /* the dummy slots follow the search's: their ids after the fed ones */
            for (int d = 0; fed <= GROUP; d++) {
                g->n_new[g->nslots + d] = 1;
                g->ids[fed++] = 0;
            }
            g->dummies_fed = 1;
        }
        int rc = mmp_gpt2_step_ids(g->m, g->c, g->ids, g->n_new, g->buf, err, errlen);
        if (!rc)
            for (int t = 0; t < g->nslots; t++)
                if (n_new[t]) memcpy(logits + (size_t)t * V, g->buf + (size_t)t * V, (size_t)V * sizeof *logits);
        return rc;
    }
    /* the fed slots GROUP at a time (the few-row path for every row, whatever the batch) */
    int s = 0, k = 0;
    while (s < g->nslots) {
        for (int t = 0; t < S; t++) g->n_new[t] = 0;
        int k0 = k, got = 0;
        for (; s < g->nslots && got < GROUP; s++)
            if (n_new[s]) g->n_new[s] = 1, got++, k++;
        if (!got) break;
        int rc = mmp_gpt2_step_ids(g->m, g->c, ids + k0, g->n_new, g->buf, err, errlen);
        if (rc) return rc;
        for (int t = 0; t < g->nslots; t++)
            if (g->n_new[t]) memcpy(logits + (size_t)t * V, g->buf + (size_t)t * V, (size_t)V * sizeof *logits);
    }
    return 0;
}

static void g_reorder(void *self, const int *src) { full_reorder(self, src); }

mmp_gen_gpt2 *mmp_gen_gpt2_new(const mmp_gpt2 *m) {
    mmp_gen_gpt2 *g = mmp_xcalloc(1, sizeof *g);
    g->m = m;
    g->lm = (mmp_gen_lm){.self = g, .vocab = m->cfg.vocab, .begin = g_begin, .prefill = g_prefill, .step = g_step,
                         .reorder = g_reorder};
    return g;
}

const mmp_gen_lm *mmp_gen_gpt2_lm(const mmp_gen_gpt2 *g) { return &g->lm; }

void mmp_gen_gpt2_set_wide(mmp_gen_gpt2 *g, int wide) { g->wide = wide; }

void mmp_gen_gpt2_free(mmp_gen_gpt2 *g) {
    if (!g) return;
    free(g->ids);
    free(g->src);
    mmp_gpt2_cache_free(g->c);
    free(g->buf);
    free(g->n_new);
    free(g);
}
