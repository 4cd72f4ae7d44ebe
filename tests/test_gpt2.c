/* The GPT-2 decoder (tx/gpt2.h) vs transformers 4.30.2 GPT2LMHeadModel on
 * tiny random models (tests/fixtures/gen_gpt2.py): batches of packed
 * sequences of input embeddings (a prefix of free rows, then token rows),
 * the logits, the loss sum(R * logits)'s gradient of every parameter (the
 * tied wte: lm_head + embedding) and of inputs_embeds within 1e-4 of each
 * tensor's largest magnitude; PEFT 0.4 LoRA on c_attn (fan_in_fan_out) the
 * same; the KV cache's step logits (prefix + prompt at once, then one token
 * per step, rows reordered as beam search does) vs the whole-sequence
 * forward; finite differences on the tied wte, wpe, ln_f and the input;
 * threads bit for bit, a row's step logits alone as among 1 .. 32 others;
 * from scratch: the init's statistics, save + load;
 * bad checkpoints: one line naming the file.
 *
 * test_gpt2 --save DIR: writes a from-scratch model (seed 7) into DIR and
 * DIR/ref.safetensors (ids, logits) for tests/py/test_gpt2_hf.py. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "mmp.h"
#include "st_testlib.h"
#include "testlib.h"
#include "tx/gpt2.h"

#define TOL 1e-4

static double worst = 0;

static double maxabs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

/* max |a - b| / max |b| */
static double relerr(const float *a, const float *b, size_t n) {
    double s = maxabs(b, n), e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        e = d > e || d != d ? d : e;
    }
    return e / (s > 0 ? s : 1);
}

static void cmp(const char *what, const float *a, const float *b, size_t n, double tol) {
    double e = relerr(a, b, n);
    if (e > worst) worst = e;
    CHECKF(e <= tol, "%s: relative error %.3g > %.3g", what, e, tol);
}

static int32_t *i32(const mmp_safetensors *r, const char *name, size_t *n) {
    const mmp_tensor *t = mmp_st_get(r, name);
    CHECK(t && t->dtype == MMP_I32);
    if (!t) exit(1);
    *n = (size_t)mmp_numel(t->ndim, t->shape);
    int32_t *v = malloc(sizeof *v * (*n + 1));
    memcpy(v, t->data, sizeof *v * *n);
    return v;
}

typedef struct {
    int n, T, C, V;
    int *lens, *K;
    int32_t *ids;  /* the token rows' ids */
    int *is_tok;   /* per row: index into ids, or -1 for a prefix row */
    float *x;      /* inputs_embeds [T, C] */
} batch;

static void batch_load(batch *b, const mmp_safetensors *r, const mmp_gpt2 *m) {
    size_t n, nk, nid, np;
    int32_t *lens = i32(r, "lens", &n), *K = i32(r, "K", &nk), *ids = i32(r, "ids", &nid);
    float *prefix = t_st_f32(r, "prefix", &np, 1);
    b->n = (int)n, b->C = m->cfg.C, b->V = m->cfg.vocab;
    b->lens = malloc(sizeof(int) * n), b->K = malloc(sizeof(int) * n);
    b->T = 0;
    for (size_t s = 0; s < n; s++) b->lens[s] = lens[s], b->K[s] = K[s], b->T += lens[s];
    b->ids = ids;
    b->x = malloc(sizeof(float) * (size_t)b->T * b->C);
    b->is_tok = malloc(sizeof(int) * (size_t)b->T);
    size_t row = 0, pi = 0, ti = 0;
    for (size_t s = 0; s < n; s++)
        for (int k = 0; k < lens[s]; k++, row++) {
            if (k < K[s]) {
                memcpy(b->x + row * b->C, prefix + pi++ * b->C, sizeof(float) * b->C);
                b->is_tok[row] = -1;
            } else {
                mmp_gpt2_embed(m, &ids[ti], 1, b->x + row * b->C);
                b->is_tok[row] = (int)ti++;
            }
        }
    CHECK(ti == nid && pi * b->C == np);
    free(lens), free(K), free(prefix);
}

static void batch_free(batch *b) { free(b->lens), free(b->K), free(b->ids), free(b->x), free(b->is_tok); }

/* wte's embedding gradient: the token rows of dx scattered */
static void embed_grad(const mmp_gpt2 *m, const batch *b, const float *dx, float *dwte) {
    for (int t = 0; t < b->T; t++)
        if (b->is_tok[t] >= 0) mmp_gpt2_embed_bwd(m, dwte, dx + (size_t)t * b->C, &b->ids[b->is_tok[t]], 1);
}

/* the parameter's gradient in the file's layout (Conv1D [in, out]) */
static float *grad_file_layout(const mmp_tx_param *p) {
    float *g = malloc(sizeof(float) * (p->n + 1));
    if (!p->transposed) memcpy(g, p->g, sizeof(float) * p->n);
    else
        for (int a = 0; a < p->rows; a++)
            for (int c = 0; c < p->cols; c++) g[(size_t)a * p->cols + c] = p->g[(size_t)c * p->rows + a];
    return g;
}

/* the loss with the token rows embedded from the current wte */
static double loss_of(const mmp_gpt2 *m, const batch *b, const float *R) {
    float *lg = malloc(sizeof(float) * (size_t)b->T * b->V), *x = malloc(sizeof(float) * (size_t)b->T * b->C);
    memcpy(x, b->x, sizeof(float) * (size_t)b->T * b->C);
    for (int t = 0; t < b->T; t++)
        if (b->is_tok[t] >= 0) mmp_gpt2_embed(m, &b->ids[b->is_tok[t]], 1, x + (size_t)t * b->C);
    char err[256];
    CHECK(!mmp_gpt2_fwd(m, x, b->lens, b->n, NULL, lg, err, sizeof err));
    free(x);
    double l = 0;
    for (size_t i = 0; i < (size_t)b->T * b->V; i++) l += (double)R[i] * lg[i];
    free(lg);
    return l;
}

/* central difference of the loss in w[i] vs the analytic gradient g */
static void fd(const char *what, mmp_gpt2 *m, const batch *b, const float *R, float *w, size_t i, double g, double scale) {
    const float h = 1e-2f, w0 = w[i];
    mmp_gpt2_pack(m); /* (unpacked after: the weights change) */
    w[i] = w0 + h;
    mmp_gpt2_pack(m);
    double lp = loss_of(m, b, R);
    w[i] = w0 - h;
    mmp_gpt2_pack(m);
    double lm = loss_of(m, b, R);
    w[i] = w0;
    mmp_gpt2_pack(m);
    double num = (lp - lm) / (2 * h);
    double e = fabs(num - g) / (scale > 0 ? scale : 1);
    CHECKF(e < 2e-2, "%s[%zu]: finite difference %.6g, gradient %.6g (scale %.3g)", what, i, num, g, scale);
}

static size_t argmax_abs(const float *g, size_t n) {
    size_t k = 0;
    for (size_t i = 1; i < n; i++)
        if (fabs(g[i]) > fabs(g[k])) k = i;
    return k;
}

/* The KV cache vs the whole-sequence logits (lg [T, V]): every sequence in
 * its own cache row; step 1 puts the first `first` positions in at once,
 * then one position per step; halfway, the rows are reordered (reversed)
 * and the bookkeeping follows them. */
static void check_cache(const mmp_gpt2 *m, const batch *b, const float *lg) {
    const int n = b->n, C = b->C, V = b->V;
    int maxlen = 0, *off = malloc(sizeof(int) * n), *done = calloc((size_t)n, sizeof(int)), *row_of = malloc(sizeof(int) * n);
    for (int s = 0, o = 0; s < n; o += b->lens[s], s++) off[s] = o, maxlen = b->lens[s] > maxlen ? b->lens[s] : maxlen, row_of[s] = s;
    mmp_gpt2_cache *c = mmp_gpt2_cache_new(m, n, maxlen);
    float *logits = malloc(sizeof(float) * (size_t)n * V), *x = malloc(sizeof(float) * (size_t)b->T * C);
    int *nn = malloc(sizeof(int) * n), *src = malloc(sizeof(int) * n), *seq_at = malloc(sizeof(int) * n);
    for (int s = 0; s < n; s++) seq_at[s] = s;
    char err[256];
    double e = 0;
    for (int step = 0;; step++) {
        int any = 0;
        size_t rows = 0;
        for (int r = 0; r < n; r++) {
            int s = seq_at[r];
            int k = step == 0 ? (b->K[s] + 2 < b->lens[s] ? b->K[s] + 2 : b->lens[s]) : (done[s] < b->lens[s] ? 1 : 0);
            nn[r] = k;
            memcpy(x + rows * C, b->x + (size_t)(off[s] + done[s]) * C, sizeof(float) * (size_t)k * C);
            rows += (size_t)k;
            any |= k > 0;
        }
        if (!any) break;
        CHECK(!mmp_gpt2_step(m, c, x, nn, logits, err, sizeof err));
        for (int r = 0; r < n; r++) {
            int s = seq_at[r];
            if (!nn[r]) continue;
            done[s] += nn[r];
            CHECK(mmp_gpt2_cache_len(c, r) == done[s]);
            const float *want = lg + (size_t)(off[s] + done[s] - 1) * V;
            double d = relerr(logits + (size_t)r * V, want, (size_t)V);
            e = d > e ? d : e;
        }
        if (step == 2) { /* reverse the rows */
            for (int r = 0; r < n; r++) src[r] = n - 1 - r;
            mmp_gpt2_cache_reorder(c, src);
            int *t = malloc(sizeof(int) * n);
            for (int r = 0; r < n; r++) t[r] = seq_at[src[r]];
            memcpy(seq_at, t, sizeof(int) * n);
            free(t);
        }
    }
    CHECKF(e <= 1e-5, "KV cache: step logits differ from the whole forward by %.3g", e);
    printf("  kv cache vs whole forward: %.3g\n", e);
    /* past the cache: an error, not a crash */
    for (int r = 0; r < n; r++) nn[r] = 1;
    for (int r = 0; r < n; r++) nn[r] = mmp_gpt2_cache_len(c, r) == maxlen ? 1 : 0;
    int any = 0;
    for (int r = 0; r < n; r++) any |= nn[r];
    if (any) CHECK(mmp_gpt2_step(m, c, x, nn, logits, err, sizeof err) == -1 && strstr(err, "cache"));
    mmp_gpt2_cache_free(c);
    free(off), free(done), free(row_of), free(logits), free(x), free(nn), free(src), free(seq_at);
}

/* the step's logits with 1 and 3 threads: the same bits (few rows: the
 * decoding step's own path; all rows at once: the encoder's) */
static void check_cache_threads(mmp_gpt2 *m, const batch *b) {
    const int n = b->n, V = b->V;
    float *lg[2];
    char err[256];
    for (int pass = 0; pass < 2; pass++) {
        mmp_gpt2_set_threads(m, pass ? 3 : 1);
        mmp_gpt2_cache *c = mmp_gpt2_cache_new(m, n, m->cfg.ctx);
        lg[pass] = malloc(sizeof(float) * (size_t)n * V * 4);
        int *nn = malloc(sizeof(int) * n);
        for (int s = 0; s < n; s++) nn[s] = 5;
        float *x = malloc(sizeof(float) * (size_t)n * 5 * b->C);
        for (size_t k = 0; k < (size_t)n * 5 * b->C; k++) x[k] = b->x[k % ((size_t)b->T * b->C)];
        CHECK(!mmp_gpt2_step(m, c, x, nn, lg[pass], err, sizeof err));
        for (int step = 1; step < 4; step++) {
            for (int s = 0; s < n; s++) nn[s] = 1;
            CHECK(!mmp_gpt2_step(m, c, x + (size_t)step * b->C, nn, lg[pass] + (size_t)step * n * V, err, sizeof err));
        }
        free(nn), free(x);
        mmp_gpt2_cache_free(c);
    }
    CHECK(!memcmp(lg[0], lg[1], sizeof(float) * (size_t)n * V * 4));
    free(lg[0]), free(lg[1]);
    mmp_gpt2_set_threads(m, 1);
}

/* A sequence's logits have the same bits whatever the call carries: row 0
 * fed (a 3-position prompt, then two 1-token steps) alone and among 1, 2, 3,
 * 4, 15, 32 other rows (calls of 1 .. 4 new positions: the few-row kernel;
 * more: the GEMM's full tiles), on 1 and 3 threads. */
static void check_step_batch(mmp_gpt2 *m) {
    static const int ns[] = {1, 2, 3, 4, 5, 16, 33};
    const int C = m->cfg.C, V = m->cfg.vocab, P = 3, NS = 3, maxlen = P + 5 + NS;
    char err[256];
    float *want = malloc(sizeof(float) * (size_t)NS * V), *lg = malloc(sizeof(float) * 33 * (size_t)V);
    float *x = malloc(sizeof(float) * 33 * (size_t)(P + 5) * C);
    int *nn = malloc(sizeof(int) * 33);
    for (int th = 0; th < 2; th++) {
        mmp_gpt2_set_threads(m, th ? 3 : 1);
        for (size_t q = 0; q < sizeof ns / sizeof *ns; q++) {
            const int n = ns[q];
            mmp_gpt2_cache *c = mmp_gpt2_cache_new(m, n, maxlen);
            /* prompts: row 0 ids 1..3, row s > 0 (s % 5) + 1 positions of other ids */
            int32_t ids[33 * 8];
            int k = 0;
            for (int s = 0; s < n; s++) {
                nn[s] = s ? s % 5 + 1 : P;
                for (int i = 0; i < nn[s]; i++) ids[k++] = s ? (s * 7 + i * 3) % V : i + 1;
            }
            mmp_gpt2_embed(m, ids, k, x);
            int bad = mmp_gpt2_step(m, c, x, nn, lg, err, sizeof err) != 0;
            if (!th && n == 1) memcpy(want, lg, sizeof(float) * V);
            bad |= memcmp(lg, want, sizeof(float) * V) != 0;
            for (int step = 1; step < NS; step++) {
                for (int s = 0; s < n; s++) ids[s] = s ? (s * 11 + step) % V : 10 + step, nn[s] = 1;
                bad |= mmp_gpt2_step_ids(m, c, ids, nn, lg, err, sizeof err) != 0;
                if (!th && n == 1) memcpy(want + (size_t)step * V, lg, sizeof(float) * V);
                bad |= memcmp(lg, want + (size_t)step * V, sizeof(float) * V) != 0;
            }
            CHECKF(!bad, "step: row 0 among %d rows, %d thread(s): other bits than alone", n, th ? 3 : 1);
            mmp_gpt2_cache_free(c);
        }
    }
    mmp_gpt2_set_threads(m, 1);
    free(want), free(lg), free(x), free(nn);
}

static void check_fixture(const char *name) {
    char dir[4096], path[4400], err[512];
    snprintf(dir, sizeof dir, "%s/%s", t_root_path("tests/fixtures/gpt2"), name);
    printf("%s\n", name);
    mmp_gpt2 *m = mmp_gpt2_load(dir, err, sizeof err);
    CHECKF(m, "%s", err);
    if (!m) return;
    snprintf(path, sizeof path, "%s/ref.safetensors", dir);
    mmp_safetensors r;
    mmp_st_open_or_die(&r, path);
    batch b;
    batch_load(&b, &r, m);
    const size_t TV = (size_t)b.T * b.V, TC = (size_t)b.T * b.C;
    float *want = t_st_f32(&r, "logits", NULL, 1), *R = t_st_f32(&r, "R", NULL, 1), *wdx = t_st_f32(&r, "dx", NULL, 1);
    float *lg = malloc(sizeof(float) * TV), *lg3 = malloc(sizeof(float) * TV), *hid = malloc(sizeof(float) * TC);
    CHECK(!mmp_gpt2_fwd(m, b.x, b.lens, b.n, hid, lg, err, sizeof err));
    cmp("logits", lg, want, TV, TOL);
    printf("  logits: %.3g\n", relerr(lg, want, TV));
    /* threads: the same bits */
    mmp_gpt2_set_threads(m, 3);
    CHECK(!mmp_gpt2_fwd(m, b.x, b.lens, b.n, NULL, lg3, err, sizeof err));
    CHECK(!memcmp(lg, lg3, sizeof(float) * TV));
    check_cache(m, &b, lg);
    mmp_gpt2_set_threads(m, 1);
    check_cache(m, &b, lg);
    check_cache_threads(m, &b);
    check_step_batch(m);
    /* the lm_head on chosen rows = those rows of the logits */
    mmp_gpt2_lm_head(m, hid + TC - b.C, 1, lg3);
    CHECK(!memcmp(lg3, lg + TV - b.V, sizeof(float) * b.V));

    /* training */
    mmp_tx_params P;
    CHECK(!mmp_gpt2_make_trainable(m, &P, err, sizeof err));
    float *dx = calloc(TC, sizeof(float));
    mmp_gpt2_saved *a = mmp_gpt2_fwd_train(m, b.x, b.lens, b.n, 0, lg3, err, sizeof err);
    CHECKF(a, "%s", err);
    CHECK(!memcmp(lg, lg3, sizeof(float) * TV));
    mmp_gpt2_bwd(m, a, R, P.gpt2, dx);
    embed_grad(m, &b, dx, P.gpt2->wte);
    cmp("dx", dx, wdx, TC, TOL);
    printf("  dx: %.3g\n", relerr(dx, wdx, TC));
    double gw = 0;
    int ng = 0;
    for (int i = 0; i < P.n; i++) {
        char nm[200];
        snprintf(nm, sizeof nm, "grad.%s", P.p[i].name);
        size_t n;
        float *ref = t_st_f32(&r, nm, &n, 1);
        CHECK(n == P.p[i].n);
        float *g = grad_file_layout(&P.p[i]);
        cmp(nm, g, ref, n, TOL);
        double e = relerr(g, ref, n);
        gw = e > gw ? e : gw;
        ng++;
        free(g), free(ref);
    }
    CHECK(ng == 4 + 12 * m->cfg.layers);
    printf("  %d parameter gradients: worst %.3g\n", ng, gw);
    /* threads: the same bits in the gradients */
    {
        mmp_gpt2_set_threads(m, 3);
        float **g1 = malloc(sizeof(float *) * P.n);
        for (int i = 0; i < P.n; i++) g1[i] = malloc(sizeof(float) * P.p[i].n), memcpy(g1[i], P.p[i].g, sizeof(float) * P.p[i].n);
        mmp_tx_params_zero_grad(&P);
        mmp_gpt2_saved *a3 = mmp_gpt2_fwd_train(m, b.x, b.lens, b.n, 0, lg3, err, sizeof err);
        float *dx3 = calloc(TC, sizeof(float));
        mmp_gpt2_bwd(m, a3, R, P.gpt2, dx3);
        embed_grad(m, &b, dx3, P.gpt2->wte);
        CHECK(!memcmp(dx, dx3, sizeof(float) * TC));
        for (int i = 0; i < P.n; i++) CHECKF(!memcmp(g1[i], P.p[i].g, sizeof(float) * P.p[i].n), "%s: threads", P.p[i].name);
        for (int i = 0; i < P.n; i++) free(g1[i]);
        free(g1), free(dx3);
        mmp_gpt2_saved_free(a3);
        mmp_gpt2_set_threads(m, 1);
    }
    /* frozen blocks: no dx, the upper gradients unchanged */
    {
        mmp_tx_params_zero_grad(&P);
        mmp_gpt2_saved *af = mmp_gpt2_fwd_train(m, b.x, b.lens, b.n, 1, lg3, err, sizeof err);
        CHECK(!memcmp(lg, lg3, sizeof(float) * TV));
        mmp_gpt2_bwd(m, af, R, P.gpt2, NULL);
        mmp_tx_param *p = mmp_tx_params_find(&P, "transformer.h.1.mlp.c_fc.weight");
        mmp_tx_param *p0 = mmp_tx_params_find(&P, "transformer.h.0.mlp.c_fc.weight");
        char nm[200];
        snprintf(nm, sizeof nm, "grad.%s", p->name);
        float *ref = t_st_f32(&r, nm, NULL, 1), *g = grad_file_layout(p);
        cmp("frozen 1: h.1 c_fc", g, ref, p->n, TOL);
        CHECK(maxabs(p0->g, p0->n) == 0);
        free(ref), free(g);
        mmp_gpt2_saved_free(af);
    }
    /* finite differences on the new backward pieces: the tied wte, wpe, ln_f, the input */
    if (!strcmp(name, "g1")) {
        mmp_tx_params_zero_grad(&P);
        memset(dx, 0, sizeof(float) * TC);
        mmp_gpt2_saved *a2 = mmp_gpt2_fwd_train(m, b.x, b.lens, b.n, 0, lg3, err, sizeof err);
        mmp_gpt2_bwd(m, a2, R, P.gpt2, dx);
        embed_grad(m, &b, dx, P.gpt2->wte);
        mmp_gpt2_saved_free(a2);
        const char *names[] = {"transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight",
                               "transformer.ln_f.bias", "transformer.h.1.attn.c_attn.weight"};
        for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
            mmp_tx_param *p = mmp_tx_params_find(&P, names[k]);
            size_t i = argmax_abs(p->g, p->n);
            double sc = maxabs(p->g, p->n);
            fd(names[k], m, &b, R, p->w, i, p->g[i], sc);
            fd(names[k], m, &b, R, p->w, p->n / 2 + 1, p->g[p->n / 2 + 1], sc);
        }
        size_t i = 0; /* the largest gradient of a prefix row (token rows are re-embedded by loss_of) */
        for (size_t k = 0; k < TC; k++)
            if (b.is_tok[k / b.C] < 0 && fabs(dx[k]) > fabs(dx[i])) i = k;
        CHECK(b.is_tok[i / b.C] < 0);
        fd("inputs_embeds", m, &b, R, b.x, i, dx[i], maxabs(dx, TC));
        mmp_tx_encoder_unpack(&m->enc);
    }
    mmp_gpt2_saved_free(a);
    mmp_tx_params_free(&P);

    /* LoRA: PEFT 0.4 on c_attn, fan_in_fan_out */
    snprintf(path, sizeof path, "%s/lora.safetensors", dir);
    FILE *f = fopen(path, "rb");
    if (f) {
        fclose(f);
        mmp_safetensors lr;
        mmp_st_open_or_die(&lr, path);
        mmp_tx_params Q;
        memset(&Q, 0, sizeof Q);
        mmp_tx_lora_opts o;
        mmp_tx_lora_opts_default(&o);
        o.r = 4, o.alpha = 8, o.targets = "c_attn";
        mmp_tx_lora_set *ls = mmp_gpt2_lora_add(m, &o, &Q, err, sizeof err);
        CHECKF(ls, "%s", err);
        CHECK(ls && mmp_tx_lora_count(ls) == m->cfg.layers);
        for (int i = 0; i < Q.n; i++) {
            char nm[300];
            snprintf(nm, sizeof nm, "lora.%s", Q.p[i].name);
            size_t n;
            float *w = t_st_f32(&lr, nm, &n, 1);
            CHECK(n == Q.p[i].n);
            memcpy(Q.p[i].w, w, sizeof(float) * n);
            free(w);
        }
        float *wl = t_st_f32(&lr, "logits", NULL, 1), *wldx = t_st_f32(&lr, "dx", NULL, 1);
        memset(dx, 0, sizeof(float) * TC);
        mmp_gpt2_saved *al = mmp_gpt2_fwd_train(m, b.x, b.lens, b.n, 0, lg3, err, sizeof err);
        cmp("lora logits", lg3, wl, TV, TOL);
        CHECK(!mmp_gpt2_fwd(m, b.x, b.lens, b.n, NULL, lg, err, sizeof err));
        CHECK(!memcmp(lg, lg3, sizeof(float) * TV));
        mmp_gpt2_bwd(m, al, R, Q.gpt2, dx);
        cmp("lora dx", dx, wldx, TC, TOL);
        double lw = 0;
        for (int i = 0; i < Q.n; i++) {
            char nm[300];
            snprintf(nm, sizeof nm, "lgrad.%s", Q.p[i].name);
            size_t n;
            float *ref = t_st_f32(&lr, nm, &n, 1);
            cmp(nm, Q.p[i].g, ref, n, TOL);
            double e = relerr(Q.p[i].g, ref, n);
            lw = e > lw ? e : lw;
            free(ref);
        }
        printf("  lora: logits %.3g, dx %.3g, %d adapter gradients worst %.3g\n", relerr(lg3, wl, TV), relerr(dx, wldx, TC),
               Q.n, lw);
        /* the cache with the adapters */
        check_cache(m, &b, lg);
        /* the adapter folder: fan_in_fan_out true */
        char ad[4200];
        snprintf(ad, sizeof ad, "%s/lora_%s", getenv("MMP_TMP") ? getenv("MMP_TMP") : "/tmp", name);
        CHECKF(!mmp_tx_lora_save(ls, ad, err, sizeof err), "%s", err);
        snprintf(path, sizeof path, "%s/adapter_config.json", ad);
        size_t n;
        char *cfg = (char *)t_slurp(path, &n);
        CHECK(cfg && strstr(cfg, "\"fan_in_fan_out\": true") && strstr(cfg, "\"c_attn\""));
        free(cfg);
        mmp_gpt2_saved_free(al);
        free(wl), free(wldx);
        mmp_tx_params_free(&Q);
        mmp_tx_lora_set_free(ls);
        mmp_st_close(&lr);
    }
    free(want), free(R), free(wdx), free(lg), free(lg3), free(hid), free(dx);
    batch_free(&b);
    mmp_st_close(&r);
    mmp_gpt2_free(m);
}

/* from scratch: HF _init_weights' statistics; save + load the same logits */
static void check_init(void) {
    mmp_gpt2_config c;
    mmp_gpt2_config_default(&c);
    c.vocab = 500, c.ctx = 32, c.C = 64, c.NH = 4, c.layers = 3, c.inter = 96, c.bos_id = c.eos_id = 499;
    char err[512];
    mmp_gpt2 *m = mmp_gpt2_init(&c, 5, err, sizeof err);
    CHECKF(m, "%s", err);
    if (!m) return;
    double s = 0, s2 = 0;
    size_t n = (size_t)c.vocab * c.C;
    for (size_t i = 0; i < n; i++) s += m->wte[i], s2 += (double)m->wte[i] * m->wte[i];
    double sd = sqrt(s2 / n - (s / n) * (s / n));
    CHECKF(fabs(sd - 0.02) < 0.001 && fabs(s / n) < 0.001, "wte std %g mean %g", sd, s / n);
    s = s2 = 0, n = (size_t)c.C * c.inter;
    for (size_t i = 0; i < n; i++) s2 += (double)m->enc.block[1].fc2_w[i] * m->enc.block[1].fc2_w[i];
    sd = sqrt(s2 / n);
    CHECKF(fabs(sd - 0.02 / sqrt(6.0)) < 0.0008, "mlp.c_proj std %g", sd);
    CHECK(m->enc.block[0].ln1_w[3] == 1 && m->enc.block[0].ln1_b[3] == 0 && m->enc.block[2].q_b[5] == 0 && m->lnf_w[0] == 1);
    check_step_batch(m); /* the weights not packed */
    /* the same seed, the same model; another seed, another */
    mmp_gpt2 *m2 = mmp_gpt2_init(&c, 5, err, sizeof err), *m3 = mmp_gpt2_init(&c, 6, err, sizeof err);
    CHECK(!memcmp(m->wte, m2->wte, sizeof(float) * c.vocab * c.C));
    CHECK(!memcmp(m->enc.block[2].fc1_w, m2->enc.block[2].fc1_w, sizeof(float) * c.C * c.inter));
    CHECK(memcmp(m->wte, m3->wte, sizeof(float) * c.vocab * c.C));
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/scratch", getenv("MMP_TMP") ? getenv("MMP_TMP") : "/tmp");
    CHECKF(!mmp_gpt2_save(m, dir, err, sizeof err), "%s", err);
    mmp_gpt2 *l = mmp_gpt2_load(dir, err, sizeof err);
    CHECKF(l, "%s", err);
    if (l) {
        CHECK(l->cfg.vocab == c.vocab && l->cfg.inter == c.inter && l->cfg.NH == c.NH && l->cfg.eos_id == 499 &&
              l->cfg.pad_id == -1 && l->cfg.act == MMP_TX_GELU_TANH);
        int32_t ids[7] = {1, 5, 499, 3, 200, 7, 9};
        int lens[2] = {3, 4};
        float x[7 * 64], a[7 * 500], b[7 * 500];
        mmp_gpt2_embed(m, ids, 7, x);
        CHECK(!mmp_gpt2_fwd(m, x, lens, 2, NULL, a, err, sizeof err));
        CHECK(!mmp_gpt2_fwd(l, x, lens, 2, NULL, b, err, sizeof err));
        CHECK(!memcmp(a, b, sizeof a));
        /* LoRA on a from-scratch model needs its saved file: refused with a message */
        mmp_tx_params Q;
        memset(&Q, 0, sizeof Q);
        mmp_tx_lora_opts o;
        mmp_tx_lora_opts_default(&o);
        CHECK(!mmp_gpt2_lora_add(m, &o, &Q, err, sizeof err) && strstr(err, "saved"));
        o.targets = "ln_1";
        CHECK(!mmp_gpt2_lora_add(l, &o, &Q, err, sizeof err) && strstr(err, "ln_1"));
        mmp_tx_params_free(&Q);
        /* too long a sequence: an error */
        int bad[1] = {33};
        float *xx = calloc(33 * 64, sizeof(float));
        CHECK(mmp_gpt2_fwd(l, xx, bad, 1, NULL, NULL, err, sizeof err) == -1 && strstr(err, "n_positions"));
        free(xx);
    }
    mmp_gpt2_free(l);
    mmp_gpt2_free(m), mmp_gpt2_free(m2), mmp_gpt2_free(m3);
    c.C = 30;
    CHECK(!mmp_gpt2_init(&c, 1, err, sizeof err) && strstr(err, "n_head"));
}

/* bad checkpoints: one line naming the file */
static void check_bad(void) {
    const char *tmp = getenv("MMP_TMP") ? getenv("MMP_TMP") : "/tmp";
    const char *g1 = t_root_path("tests/fixtures/gpt2/g1");
    char err[512];
    /* a missing tensor, an odd tensor, a config that does not match */
    CHECK(!t_sh("rm -rf %s/bad && mkdir -p %s/bad", tmp, tmp));
    mmp_safetensors s;
    char p[4200];
    snprintf(p, sizeof p, "%s/model.safetensors", g1);
    mmp_st_open_or_die(&s, p);
    for (int mode = 0; mode < 3; mode++) {
        mmp_st_writer w;
        mmp_st_writer_init(&w);
        for (int i = 0; i < s.n; i++) {
            if (mode == 0 && !strcmp(s.entries[i].name, "transformer.h.1.mlp.c_fc.bias")) continue;
            mmp_st_writer_add(&w, s.entries[i].name, &s.entries[i].t);
        }
        if (mode == 1) mmp_st_writer_add_f32(&w, "transformer.h.0.attn.extra.weight", (float[]){1, 2}, 1, (int64_t[]){2});
        snprintf(p, sizeof p, "%s/bad/model.safetensors", tmp);
        mmp_st_writer_write_or_die(&w, p);
        mmp_st_writer_free(&w);
        CHECK(!t_sh("cp %s/config.json %s/bad/config.json", g1, tmp));
        if (mode == 2) CHECK(!t_sh("sed -i 's/\"n_embd\": 32/\"n_embd\": 36/' %s/bad/config.json", tmp));
        snprintf(p, sizeof p, "%s/bad", tmp);
        mmp_gpt2 *m = mmp_gpt2_load(p, err, sizeof err);
        CHECK(!m);
        printf("  bad %d: %s\n", mode, err);
        CHECK(!strchr(err, '\n') && strstr(err, "/bad/"));
        if (mode == 0) CHECK(strstr(err, "h.1.mlp.c_fc.bias") && strstr(err, "missing"));
        if (mode == 1) CHECK(strstr(err, "attn.extra.weight"));
        if (mode == 2) CHECK(strstr(err, "config.json") && strstr(err, "n_embd"));
        mmp_gpt2_free(m);
    }
    mmp_st_close(&s);
    CHECK(!mmp_gpt2_load("/nonexistent/gpt2", err, sizeof err) && strstr(err, "/nonexistent/gpt2"));
}

static int save_mode(const char *dir) {
    mmp_gpt2_config c;
    mmp_gpt2_config_default(&c);
    c.vocab = 300, c.ctx = 40, c.C = 48, c.NH = 4, c.layers = 2, c.inter = 4 * 48, c.bos_id = c.eos_id = 299;
    char err[512];
    mmp_gpt2 *m = mmp_gpt2_init(&c, 7, err, sizeof err);
    if (!m || mmp_gpt2_save(m, dir, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int32_t ids[9] = {299, 1, 2, 3, 250, 17, 40, 41, 5};
    int lens[1] = {9};
    float x[9 * 48], lg[9 * 300];
    mmp_gpt2_embed(m, ids, 9, x);
    mmp_gpt2_fwd(m, x, lens, 1, NULL, lg, err, sizeof err);
    mmp_st_writer w;
    mmp_st_writer_init(&w);
    mmp_tensor t = {.dtype = MMP_I32, .ndim = 1, .shape = {9}, .data = ids, .nbytes = sizeof ids};
    mmp_st_writer_add(&w, "ids", &t);
    mmp_st_writer_add_f32(&w, "logits", lg, 2, (int64_t[]){9, 300});
    /* LoRA on c_attn and mlp.c_proj over the saved base, B nonzero: DIR/lora and its logits */
    mmp_gpt2 *l = mmp_gpt2_load(dir, err, sizeof err);
    if (!l) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    mmp_tx_params Q;
    memset(&Q, 0, sizeof Q);
    mmp_tx_lora_opts o;
    mmp_tx_lora_opts_default(&o);
    o.r = 4, o.alpha = 16, o.targets = "c_attn,mlp.c_proj", o.seed = 3;
    mmp_tx_lora_set *ls = mmp_gpt2_lora_add(l, &o, &Q, err, sizeof err);
    if (!ls) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    for (int i = 0; i < Q.n; i++)
        if (strstr(Q.p[i].name, "lora_B"))
            for (size_t k = 0; k < Q.p[i].n; k++) Q.p[i].w[k] = 0.05f * (float)((int)((k * 7919 + (size_t)i * 31) % 13) - 6);
    float lg2[9 * 300];
    mmp_gpt2_fwd(l, x, lens, 1, NULL, lg2, err, sizeof err);
    mmp_st_writer_add_f32(&w, "lora_logits", lg2, 2, (int64_t[]){9, 300});
    char p[4200];
    snprintf(p, sizeof p, "%s/lora", dir);
    if (mmp_tx_lora_save(ls, p, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    mmp_tx_params_free(&Q);
    mmp_tx_lora_set_free(ls);
    mmp_gpt2_free(l);
    snprintf(p, sizeof p, "%s/ref.safetensors", dir);
    mmp_st_writer_write_or_die(&w, p);
    mmp_st_writer_free(&w);
    mmp_gpt2_free(m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--save")) return save_mode(argv[2]);
    check_fixture("g1");
    check_fixture("g2");
    check_init();
    check_bad();
    printf("worst relative error vs transformers: %.3g\n", worst);
    TEST_END();
}
