/* gen/gpt2_lm.c: the mmp_gen_lm of a GPT-2 decoder (gen/gen.h, tx/gpt2.h).
 *
 * A row's logits must not depend on the batch: mmp_gpt2_step guarantees it
 * (the same bits for a row whatever the call's rows, the few-row steps
 * included), so a batch's prompts are fed in one call and each decoding step
 * feeds all its sequences in one call. */
#include <stdlib.h>
#include <string.h>

#include "gen/gen.h"
#include "mmp.h"
#include "tx/gpt2.h"

struct mmp_gen_gpt2 {
    mmp_gen_lm lm;
    const mmp_gpt2 *m;
    mmp_gpt2_cache *c;
    int nslots, maxlen;     /* in use */
    int cap_slots, cap_len; /* of the cache */
    float *buf;             /* [cap_slots, V]: the step's logits by slot */
    int *n_new;             /* [cap_slots] */
};

static int g_begin(void *self, int nslots, int maxlen, char *err, size_t errlen) {
    mmp_gen_gpt2 *g = self;
    if (maxlen > g->m->cfg.ctx)
        return mmp_errf(err, errlen, "%d positions needed, the decoder has %d", maxlen, g->m->cfg.ctx);
    if (!g->c || nslots > g->cap_slots || maxlen > g->cap_len) {
        mmp_gpt2_cache_free(g->c);
        g->cap_slots = nslots > g->cap_slots ? nslots : g->cap_slots;
        g->cap_len = maxlen > g->cap_len ? maxlen : g->cap_len;
        g->c = mmp_gpt2_cache_new(g->m, g->cap_slots, g->cap_len);
        if (!g->c) return mmp_errf(err, errlen, "cannot make a KV cache of %d x %d", g->cap_slots, g->cap_len);
        free(g->buf);
        free(g->n_new);
        g->buf = NULL;
        g->n_new = mmp_xmalloc((size_t)g->cap_slots * sizeof *g->n_new);
    }
    mmp_gpt2_cache_reset(g->c);
    g->nslots = nslots;
    g->maxlen = maxlen;
    return 0;
}

static float *logit_buf(mmp_gen_gpt2 *g) {
    if (!g->buf) g->buf = mmp_xmalloc((size_t)g->cap_slots * g->m->cfg.vocab * sizeof *g->buf);
    return g->buf;
}

/* all prompts in one call: row r (prefix embeddings, then its prompt's) into slot slot_of[r] */
static int g_prefill(void *self, const mmp_gen_input *in, const int *slot_of, int n, float *logits, char *err,
                     size_t errlen) {
    mmp_gen_gpt2 *g = self;
    const int C = g->m->cfg.C, V = g->m->cfg.vocab, S = g->cap_slots;
    float *buf = logit_buf(g);
    int *row_of = mmp_xmalloc((size_t)S * sizeof *row_of);
    for (int s = 0; s < S; s++) g->n_new[s] = 0, row_of[s] = -1;
    size_t T = 0;
    for (int r = 0; r < n; r++) {
        g->n_new[slot_of[r]] = in[r].nprefix + in[r].plen;
        row_of[slot_of[r]] = r;
        T += (size_t)g->n_new[slot_of[r]];
    }
    /* the rows' positions in slot order (mmp_gpt2_step's packing) */
    float *x = mmp_xmalloc((T * C + 1) * sizeof *x), *p = x;
    for (int s = 0; s < S; s++) {
        if (row_of[s] < 0) continue;
        const mmp_gen_input *q = &in[row_of[s]];
        if (q->nprefix) memcpy(p, q->prefix, (size_t)q->nprefix * C * sizeof *x);
        p += (size_t)q->nprefix * C;
        if (q->plen) mmp_gpt2_embed(g->m, q->prompt, q->plen, p);
        p += (size_t)q->plen * C;
    }
    int rc = mmp_gpt2_step(g->m, g->c, x, g->n_new, buf, err, errlen);
    if (!rc)
        for (int r = 0; r < n; r++)
            memcpy(logits + (size_t)r * V, buf + (size_t)slot_of[r] * V, (size_t)V * sizeof *logits);
    free(x);
    free(row_of);
    return rc;
}

/* all fed slots in one call */
static int g_step(void *self, const int32_t *ids, const int *n_new, float *logits, char *err, size_t errlen) {
    mmp_gen_gpt2 *g = self;
    const int S = g->cap_slots, V = g->m->cfg.vocab;
    float *buf = logit_buf(g);
    int fed = 0;
    for (int s = 0; s < S; s++) fed += g->n_new[s] = s < g->nslots && n_new[s] ? 1 : 0;
    if (!fed) return 0;
    int rc = mmp_gpt2_step_ids(g->m, g->c, ids, g->n_new, buf, err, errlen);
    if (!rc)
        for (int t = 0; t < g->nslots; t++)
            if (n_new[t]) memcpy(logits + (size_t)t * V, buf + (size_t)t * V, (size_t)V * sizeof *logits);
    return rc;
}

static void g_reorder(void *self, const int *src) {
    mmp_gen_gpt2 *g = self;
    int *full = mmp_xmalloc((size_t)g->cap_slots * sizeof *full);
    for (int s = 0; s < g->cap_slots; s++) full[s] = s < g->nslots && src ? src[s] : s;
    mmp_gpt2_cache_reorder(g->c, full);
    free(full);
}

mmp_gen_gpt2 *mmp_gen_gpt2_new(const mmp_gpt2 *m) {
    mmp_gen_gpt2 *g = mmp_xcalloc(1, sizeof *g);
    g->m = m;
    g->lm = (mmp_gen_lm){.self = g, .vocab = m->cfg.vocab, .begin = g_begin, .prefill = g_prefill, .step = g_step,
                         .reorder = g_reorder};
    return g;
}

const mmp_gen_lm *mmp_gen_gpt2_lm(const mmp_gen_gpt2 *g) { return &g->lm; }

void mmp_gen_gpt2_free(mmp_gen_gpt2 *g) {
    if (!g) return;
    mmp_gpt2_cache_free(g->c);
    free(g->buf);
    free(g->n_new);
    free(g);
}
