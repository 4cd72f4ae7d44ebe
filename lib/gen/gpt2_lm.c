/* gen/gpt2_lm.c: the mmp_gen_lm of a GPT-2 decoder (gen/gen.h, tx/gpt2.h). */
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
    float *buf;             /* [nslots, V]: prefill's logits by slot */
    int *n_new;
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

static int g_prefill(void *self, const mmp_gen_input *in, const int *slot_of, int n, float *logits, char *err,
                     size_t errlen) {
    mmp_gen_gpt2 *g = self;
    int C = g->m->cfg.C, V = g->m->cfg.vocab, S = g->cap_slots;
    int *row = mmp_xmalloc((size_t)S * sizeof *row);
    for (int s = 0; s < S; s++) row[s] = -1, g->n_new[s] = 0;
    size_t T = 0;
    for (int r = 0; r < n; r++) {
        row[slot_of[r]] = r;
        T += (size_t)(in[r].nprefix + in[r].plen);
    }
    float *x = mmp_xmalloc(T * C * sizeof *x), *p = x;
    for (int s = 0; s < S; s++) { /* packed in slot order */
        int r = row[s];
        if (r < 0) continue;
        g->n_new[s] = in[r].nprefix + in[r].plen;
        if (in[r].nprefix) memcpy(p, in[r].prefix, (size_t)in[r].nprefix * C * sizeof *p);
        p += (size_t)in[r].nprefix * C;
        if (in[r].plen) mmp_gpt2_embed(g->m, in[r].prompt, in[r].plen, p);
        p += (size_t)in[r].plen * C;
    }
    if (!g->buf) g->buf = mmp_xmalloc((size_t)S * V * sizeof *g->buf);
    int rc = mmp_gpt2_step(g->m, g->c, x, g->n_new, g->buf, err, errlen);
    if (!rc)
        for (int r = 0; r < n; r++)
            memcpy(logits + (size_t)r * V, g->buf + (size_t)slot_of[r] * V, (size_t)V * sizeof *logits);
    free(x);
    free(row);
    return rc;
}

static int g_step(void *self, const int32_t *ids, const int *n_new, float *logits, char *err, size_t errlen) {
    mmp_gen_gpt2 *g = self;
    int S = g->cap_slots;
    for (int s = 0; s < S; s++) g->n_new[s] = s < g->nslots ? n_new[s] : 0;
    if (S == g->nslots) return mmp_gpt2_step_ids(g->m, g->c, ids, g->n_new, logits, err, errlen);
    /* a bigger cache than the batch: logits go through the buffer */
    int V = g->m->cfg.vocab;
    if (!g->buf) g->buf = mmp_xmalloc((size_t)S * V * sizeof *g->buf);
    int rc = mmp_gpt2_step_ids(g->m, g->c, ids, g->n_new, g->buf, err, errlen);
    if (!rc)
        for (int s = 0; s < g->nslots; s++)
            if (n_new[s]) memcpy(logits + (size_t)s * V, g->buf + (size_t)s * V, (size_t)V * sizeof *logits);
    return rc;
}

static void g_reorder(void *self, const int *src) {
    mmp_gen_gpt2 *g = self;
    int S = g->cap_slots;
    if (S == g->nslots) {
        mmp_gpt2_cache_reorder(g->c, src);
        return;
    }
    int *full = mmp_xmalloc((size_t)S * sizeof *full);
    for (int s = 0; s < S; s++) full[s] = s < g->nslots ? src[s] : s;
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
