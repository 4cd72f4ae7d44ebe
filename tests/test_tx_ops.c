/* The transformer engine (lib/tx/tx.h) vs PyTorch (tests/fixtures/gen_tx.py):
 * every op's forward and backward against autograd in float64 (scale-aware
 * 1e-5: |got - ref| <= 1e-5 (|ref| + rms(ref))), every backward against
 * central finite differences of its own forward, pos_resize against torch's
 * float32 kernels (1e-5), the encoders' hidden states (pre-LN + LayerScale, causal
 * CLIP-style, post-LN BERT-style) and their backward (mmp_tx_encoder_bwd vs
 * autograd and finite differences), and determinism: a sequence's rows are the
 * same bits alone as packed with others, fused qkv strides as separate
 * buffers, packed weights as unpacked, a linear's row alone as in calls of
 * 2 .. 33 rows (the GEMM's few-row kernel), e->threads 2, 3, 40 as 1 (forward,
 * forward with saved activations, backward), and two forwards at once on
 * two threads as one. */
#include <pthread.h>

#include "mmp.h"
#include "testlib.h"
#include "nn/gemm.h"
#include "tx/tx.h"

static mmp_safetensors io, enc;

static const mmp_tensor *tget(const mmp_safetensors *st, const char *name) {
    const mmp_tensor *t = mmp_st_get(st, name);
    if (!t) {
        fprintf(stderr, "fixture tensor %s missing\n", name);
        exit(1);
    }
    return t;
}
static const float *F(const char *name) { return tget(&io, name)->data; }
static size_t NEL(const char *name) { return tget(&io, name)->nbytes / 4; }
static const int32_t *I32(const char *name) { return tget(&io, name)->data; }
static float *copy(const char *name) {
    float *p = malloc(NEL(name) * 4 + 4);
    memcpy(p, F(name), NEL(name) * 4);
    return p;
}
static float *zeros(size_t n) { return calloc(n + 1, sizeof(float)); }

/* worst |a - b| / (tol (|b| + rms(b))) over n: <= 1 passes */
static double scaled_err(const float *a, const float *b, size_t n, double tol) {
    double ss = 0, worst = 0;
    for (size_t i = 0; i < n; i++) ss += (double)b[i] * b[i];
    double rms = n ? sqrt(ss / n) : 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (tol * (fabs(b[i]) + rms) + 1e-30);
        if (!(d <= worst)) worst = d != d ? INFINITY : d;
    }
    return worst;
}
static void near(const char *what, const float *got, const char *ref, double tol) {
    double e = scaled_err(got, F(ref), NEL(ref), tol);
    CHECKF(e <= 1, "%s vs %s: error %.3g x tolerance %.0e", what, ref, e, tol);
}

/* central differences of loss() in the n elements of p at a few positions
 * vs the analytic gradient g */
typedef double (*lossfn)(void);
static void fd(const char *what, lossfn loss, float *p, const float *g, size_t n, double h) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    double rms = sqrt(ss / (double)n), worst = 0;
    for (size_t k = 0; k < 12 && k < n; k++) {
        size_t i = (k * 7919 + 13) % n;
        float keep = p[i];
        p[i] = keep + (float)h;
        double lp = loss();
        p[i] = keep - (float)h;
        double lm = loss();
        p[i] = keep;
        double num = (lp - lm) / (2 * h), e = fabs(num - g[i]) / (2e-2 * (fabs(g[i]) + rms) + 1e-12);
        if (e > worst) worst = e;
    }
    CHECKF(worst <= 1, "%s: finite differences differ from the backward (%.3g x tolerance)", what, worst);
}
static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* ---------------------------------------------------------------- linear */
static float *L_x, *L_W, *L_b, *L_y;
static int L_N, L_IC, L_OC;
static double loss_linear(void) {
    mmp_tx_linear_fwd(L_y, L_OC, L_x, L_W, L_b, L_N, L_IC, L_OC);
    return dot(L_y, F("linear.r"), (size_t)L_N * L_OC);
}
static void test_linear(void) {
    const mmp_tensor *W = tget(&io, "linear.W");
    L_OC = (int)W->shape[0], L_IC = (int)W->shape[1], L_N = (int)(NEL("linear.x") / L_IC);
    L_x = copy("linear.x"), L_W = copy("linear.W"), L_b = copy("linear.b");
    L_y = zeros(NEL("linear.out"));
    loss_linear();
    near("linear fwd", L_y, "linear.out", 1e-5);
    /* a strided output (ldy > OC) writes only its OC columns */
    int ld = L_OC + 5;
    float *ys = malloc(sizeof(float) * (size_t)L_N * ld);
    for (int i = 0; i < L_N * ld; i++) ys[i] = -7.0f;
    mmp_tx_linear_fwd(ys, ld, L_x, L_W, L_b, L_N, L_IC, L_OC);
    int bad = 0;
    for (int i = 0; i < L_N; i++) {
        bad += memcmp(ys + (size_t)i * ld, L_y + (size_t)i * L_OC, sizeof(float) * L_OC) != 0;
        for (int j = L_OC; j < ld; j++) bad += ys[(size_t)i * ld + j] != -7.0f;
    }
    CHECKF(!bad, "linear fwd with ldy > OC differs");
    float *dx = zeros(NEL("linear.x")), *dW = zeros(NEL("linear.W")), *db = zeros(NEL("linear.b"));
    /* accumulation: start from 1 and subtract it afterwards */
    for (size_t i = 0; i < NEL("linear.b"); i++) db[i] = 1.0f;
    mmp_tx_linear_bwd(dx, dW, db, F("linear.r"), L_OC, L_x, L_W, L_N, L_IC, L_OC);
    for (size_t i = 0; i < NEL("linear.b"); i++) db[i] -= 1.0f;
    near("linear dx", dx, "linear.grad.x", 1e-5);
    near("linear dW", dW, "linear.grad.W", 1e-5);
    near("linear db", db, "linear.grad.b", 1e-5);
    /* NULL gradients are skipped; the others are the same */
    float *dW2 = zeros(NEL("linear.W"));
    mmp_tx_linear_bwd(NULL, dW2, NULL, F("linear.r"), L_OC, L_x, L_W, L_N, L_IC, L_OC);
    CHECK(memcmp(dW2, dW, NEL("linear.W") * 4) == 0 || scaled_err(dW2, dW, NEL("linear.W"), 1e-6) <= 1);
    fd("linear dx", loss_linear, L_x, dx, NEL("linear.x"), 1e-2);
    fd("linear dW", loss_linear, L_W, dW, NEL("linear.W"), 1e-2);
    fd("linear db", loss_linear, L_b, db, NEL("linear.b"), 1e-2);
    free(L_x), free(L_W), free(L_b), free(L_y), free(ys), free(dx), free(dW), free(db), free(dW2);
}

/* A row of a linear has the same bits whatever the call's row count: 1..4
 * rows (the GEMM's few-row kernel, mmp_tx_gemv_rows' column splits, the
 * packed weights' column ranges at every level) as inside 5, 16, 33 rows. */
static void test_few_rows(void) {
    enum { NMAX = 33, K = 600, OC = 100 }; /* K: 3 KC blocks, the last partial; OC: a partial panel */
    float *x = malloc(sizeof(float) * NMAX * K), *W = malloc(sizeof(float) * OC * K), *b = malloc(sizeof(float) * OC);
    float *R = malloc(sizeof(float) * NMAX * OC), *ref = malloc(sizeof(float) * NMAX * OC);
    float *y = malloc(sizeof(float) * NMAX * OC);
    uint32_t r = 12345;
#define RND() ((r = r * 1664525u + 1013904223u), (float)((r >> 8) & 0xFFFF) / 32768.0f - 1.0f)
    for (int i = 0; i < NMAX * K; i++) x[i] = RND();
    for (int i = 0; i < OC * K; i++) W[i] = RND() * 0.05f;
    for (int i = 0; i < OC; i++) b[i] = RND();
    for (int i = 0; i < NMAX * OC; i++) R[i] = RND();
#undef RND
    /* the reference: all 33 rows in one call, + b + R */
    mmp_sgemm_bias(MMP_GEMM_T, NMAX, OC, K, x, K, W, K, b, R, OC, ref, OC);
    static const int ns[] = {1, 2, 3, 4, 5, 16, 33};
    for (size_t q = 0; q < sizeof ns / sizeof *ns; q++) {
        const int n = ns[q];
        int bad = 0;
        /* rows [33 - n, 33): the row alone or among others, at an offset */
        const float *xs = x + (size_t)(NMAX - n) * K, *Rs = R + (size_t)(NMAX - n) * OC, *want = ref + (size_t)(NMAX - n) * OC;
        mmp_sgemm_bias(MMP_GEMM_T, n, OC, K, xs, K, W, K, b, Rs, OC, y, OC);
        bad += memcmp(y, want, sizeof(float) * n * OC) != 0;
        /* the decoding step's column splits */
        memset(y, 0, sizeof(float) * n * OC);
        mmp_tx_gemv_rows(y, OC, xs, K, W, b, Rs, OC, n, K, 0, 48);
        mmp_tx_gemv_rows(y, OC, xs, K, W, b, Rs, OC, n, K, 48, 64);
        mmp_tx_gemv_rows(y, OC, xs, K, W, b, Rs, OC, n, K, 64, OC);
        bad += memcmp(y, want, sizeof(float) * n * OC) != 0;
        /* packed weights at each level, whole and in column ranges */
        for (int isa = MMP_ISA_AVX2; isa <= (int)mmp_cpu_isa(); isa++) {
            mmp_sgemm_pack *pk = mmp_sgemm_pack_b_isa((mmp_isa)isa, MMP_GEMM_T, OC, K, W, K);
            mmp_sgemm_packed(MMP_GEMM_N, n, xs, K, pk, b, Rs, OC, MMP_GEMM_ACT_NONE, y, OC);
            bad += memcmp(y, want, sizeof(float) * n * OC) != 0;
            memset(y, 0, sizeof(float) * n * OC);
            mmp_sgemm_packed_cols(n, xs, K, pk, 0, 64, b, Rs, OC, MMP_GEMM_ACT_NONE, y, OC);
            mmp_sgemm_packed_cols(n, xs, K, pk, 64, OC, b, Rs, OC, MMP_GEMM_ACT_NONE, y, OC);
            bad += memcmp(y, want, sizeof(float) * n * OC) != 0;
            mmp_sgemm_pack_free(pk);
        }
        CHECKF(!bad, "linear of %d rows: a row's bits differ from the 33-row call's", n);
    }
    free(x), free(W), free(b), free(R), free(ref), free(y);
}

/* ------------------------------------------------------------- layernorm */
static float *N_x, *N_w, *N_b, *N_y;
static int N_N, N_C;
static double loss_ln(void) {
    mmp_tx_layernorm_fwd(N_y, NULL, NULL, N_x, N_w, N_b, N_N, N_C, 1e-5f);
    return dot(N_y, F("layernorm.r"), (size_t)N_N * N_C);
}
static void test_layernorm(void) {
    N_C = (int)NEL("layernorm.w"), N_N = (int)(NEL("layernorm.x") / N_C);
    N_x = copy("layernorm.x"), N_w = copy("layernorm.w"), N_b = copy("layernorm.b");
    N_y = zeros(NEL("layernorm.x"));
    float *mean = zeros(N_N), *rstd = zeros(N_N);
    mmp_tx_layernorm_fwd(N_y, mean, rstd, N_x, N_w, N_b, N_N, N_C, 1e-5f);
    near("layernorm fwd", N_y, "layernorm.out", 1e-5);
    /* a width that is not a multiple of 8 (the scalar tail) vs a double reference */
    {
        const int c = 45;
        float y45[45];
        mmp_tx_layernorm_fwd(y45, NULL, NULL, N_x, N_w, N_b, 1, c, 1e-5f);
        double m = 0, v = 0, worst = 0;
        for (int j = 0; j < c; j++) m += N_x[j];
        m /= c;
        for (int j = 0; j < c; j++) v += (N_x[j] - m) * (N_x[j] - m);
        v /= c;
        for (int j = 0; j < c; j++) {
            double ref = (N_x[j] - m) / sqrt(v + 1e-5) * N_w[j] + N_b[j];
            worst = fmax(worst, fabs(y45[j] - ref) / (1e-5 * (fabs(ref) + 1)));
        }
        CHECKF(worst <= 1, "layernorm C=45: error %.3g x 1e-5", worst);
    }
    /* in place: the same bits */
    float *yi = copy("layernorm.x");
    mmp_tx_layernorm_fwd(yi, NULL, NULL, yi, N_w, N_b, N_N, N_C, 1e-5f);
    CHECKF(memcmp(yi, N_y, NEL("layernorm.x") * 4) == 0, "layernorm in place differs");
    float *dx = zeros(NEL("layernorm.x")), *dw = zeros(N_C), *db = zeros(N_C);
    mmp_tx_layernorm_bwd(dx, dw, db, F("layernorm.r"), N_x, N_w, mean, rstd, N_N, N_C);
    near("layernorm dx", dx, "layernorm.grad.x", 1e-5);
    near("layernorm dw", dw, "layernorm.grad.w", 1e-5);
    near("layernorm db", db, "layernorm.grad.b", 1e-5);
    fd("layernorm dx", loss_ln, N_x, dx, NEL("layernorm.x"), 1e-2);
    fd("layernorm dw", loss_ln, N_w, dw, N_C, 1e-2);
    fd("layernorm db", loss_ln, N_b, db, N_C, 1e-2);
    free(N_x), free(N_w), free(N_b), free(N_y), free(mean), free(rstd), free(yi), free(dx), free(dw), free(db);
}

/* ------------------------------------------------------------ activations */
static const char *const act_names[4] = {"gelu_erf", "gelu_tanh", "quick_gelu", "relu"};
static float *A_x, *A_y;
static size_t A_n;
static int A_a;
static char A_r[64];
static double loss_act(void) {
    mmp_tx_act_fwd(A_y, A_x, A_n, (mmp_tx_act)A_a);
    return dot(A_y, F(A_r), A_n);
}
static void test_act(void) {
    for (int a = 0; a < 4; a++) {
        char nx[64], no[64], ng[64], what[64];
        snprintf(nx, sizeof nx, "act_%s.x", act_names[a]);
        snprintf(no, sizeof no, "act_%s.out", act_names[a]);
        snprintf(ng, sizeof ng, "act_%s.grad.x", act_names[a]);
        snprintf(A_r, sizeof A_r, "act_%s.r", act_names[a]);
        A_a = a, A_n = NEL(nx), A_x = copy(nx), A_y = zeros(A_n);
        loss_act();
        snprintf(what, sizeof what, "%s fwd", act_names[a]);
        near(what, A_y, no, 1e-5);
        /* in place: the same bits */
        float *yi = copy(nx);
        mmp_tx_act_fwd(yi, yi, A_n, (mmp_tx_act)a);
        CHECKF(memcmp(yi, A_y, A_n * 4) == 0, "%s in place differs", act_names[a]);
        /* one value at a time (the scalar path) = the same bits as 8 at a time */
        int badv = 0;
        for (size_t i = 0; i < A_n; i++) {
            float one;
            mmp_tx_act_fwd(&one, A_x + i, 1, (mmp_tx_act)a);
            badv += memcmp(&one, A_y + i, 4) != 0;
        }
        CHECKF(!badv, "%s: %d values differ computed alone", act_names[a], badv);
        float *dx = zeros(A_n);
        mmp_tx_act_bwd(dx, F(A_r), A_x, A_n, (mmp_tx_act)a);
        snprintf(what, sizeof what, "%s bwd", act_names[a]);
        near(what, dx, ng, 1e-5);
        /* finite differences away from ReLU's kink */
        if (a == 3)
            for (size_t i = 0; i < A_n; i++)
                if (fabsf(A_x[i]) < 0.05f) A_x[i] = 0.5f;
        if (a == 3) {
            memset(dx, 0, A_n * 4);
            mmp_tx_act_bwd(dx, F(A_r), A_x, A_n, (mmp_tx_act)a);
        }
        fd(what, loss_act, A_x, dx, A_n, 1e-2);
        free(A_x), free(A_y), free(yi), free(dx);
    }
}

/* -------------------------------------------------------------- attention */
static float *T_q, *T_k, *T_v, *T_o;
static const int *T_ql, *T_kl;
static int T_ns, T_C, T_NH, T_causal;
static char T_r[96];
static double loss_attn(void) {
    mmp_tx_attention_fwd(T_o, NULL, T_q, T_C, T_k, T_C, T_v, T_C, T_ql, T_kl, T_ns, T_C, T_NH, T_causal);
    int Tq = 0;
    for (int s = 0; s < T_ns; s++) Tq += T_ql[s];
    return dot(T_o, F(T_r), (size_t)Tq * T_C);
}
static void test_attention(const char *nm) {
    char b[8][80];
    const char *sfx[8] = {"q", "k", "v", "out", "qlens", "kvlens", "nh", "r"};
    for (int i = 0; i < 8; i++) snprintf(b[i], sizeof b[i], "%s.%s", nm, sfx[i]);
    T_C = (int)tget(&io, b[0])->shape[1];
    T_ns = (int)NEL(b[4]), T_ql = I32(b[4]), T_kl = I32(b[5]), T_NH = I32(b[6])[0], T_causal = I32(b[6])[1];
    snprintf(T_r, sizeof T_r, "%s", b[7]);
    T_q = copy(b[0]), T_k = copy(b[1]), T_v = copy(b[2]), T_o = zeros(NEL(b[3]));
    int Tq = (int)(NEL(b[0]) / T_C), Tk = (int)(NEL(b[1]) / T_C), C = T_C;
    size_t na = mmp_tx_attention_att_size(T_ql, T_kl, T_ns, T_NH);
    float *att = zeros(na);
    mmp_tx_attention_fwd(T_o, att, T_q, C, T_k, C, T_v, C, T_ql, T_kl, T_ns, C, T_NH, T_causal);
    char what[96];
    snprintf(what, sizeof what, "%s fwd", nm);
    near(what, T_o, b[3], 1e-5);
    /* without att (scratch of its own): the same bits */
    float *o2 = zeros(NEL(b[3]));
    mmp_tx_attention_fwd(o2, NULL, T_q, C, T_k, C, T_v, C, T_ql, T_kl, T_ns, C, T_NH, T_causal);
    CHECKF(memcmp(o2, T_o, NEL(b[3]) * 4) == 0, "%s: att NULL gives other bits", nm);
    /* each sequence alone: the same bits as packed with the others */
    int bad = 0;
    for (int s = 0, tq = 0, tk = 0; s < T_ns; tq += T_ql[s], tk += T_kl[s], s++) {
        memset(o2, 0, NEL(b[3]) * 4);
        mmp_tx_attention_fwd(o2, NULL, T_q + (size_t)tq * C, C, T_k + (size_t)tk * C, C, T_v + (size_t)tk * C, C,
                             T_ql + s, T_kl + s, 1, C, T_NH, T_causal);
        bad += memcmp(o2, T_o + (size_t)tq * C, (size_t)T_ql[s] * C * 4) != 0;
    }
    CHECKF(!bad, "%s: %d sequence(s) differ alone vs packed", nm, bad);
    /* fused [T, 3C] rows (self-attention layout): the same bits */
    if (Tq == Tk) {
        float *qkv = malloc(sizeof(float) * (size_t)Tq * 3 * C);
        for (int t = 0; t < Tq; t++) {
            memcpy(qkv + (size_t)t * 3 * C, T_q + (size_t)t * C, (size_t)C * 4);
            memcpy(qkv + (size_t)t * 3 * C + C, T_k + (size_t)t * C, (size_t)C * 4);
            memcpy(qkv + (size_t)t * 3 * C + 2 * C, T_v + (size_t)t * C, (size_t)C * 4);
        }
        mmp_tx_attention_fwd(o2, NULL, qkv, 3 * C, qkv + C, 3 * C, qkv + 2 * C, 3 * C, T_ql, T_kl, T_ns, C, T_NH,
                             T_causal);
        CHECKF(memcmp(o2, T_o, NEL(b[3]) * 4) == 0, "%s: fused qkv strides give other bits", nm);
        /* backward into a fused dqkv = the separate gradients */
        float *dqkv = zeros((size_t)Tq * 3 * C), *dq = zeros(NEL(b[0])), *dk = zeros(NEL(b[1])), *dv = zeros(NEL(b[2]));
        mmp_tx_attention_bwd(dqkv, dqkv + C, dqkv + 2 * C, F(T_r), qkv, 3 * C, qkv + C, 3 * C, qkv + 2 * C, 3 * C,
                             att, T_ql, T_kl, T_ns, C, T_NH, T_causal);
        mmp_tx_attention_bwd(dq, dk, dv, F(T_r), T_q, C, T_k, C, T_v, C, att, T_ql, T_kl, T_ns, C, T_NH, T_causal);
        int badg = 0;
        for (int t = 0; t < Tq; t++) {
            badg += memcmp(dqkv + (size_t)t * 3 * C, dq + (size_t)t * C, (size_t)C * 4) != 0;
            badg += memcmp(dqkv + (size_t)t * 3 * C + C, dk + (size_t)t * C, (size_t)C * 4) != 0;
            badg += memcmp(dqkv + (size_t)t * 3 * C + 2 * C, dv + (size_t)t * C, (size_t)C * 4) != 0;
        }
        CHECKF(!badg, "%s: fused dqkv differs from separate gradients", nm);
        free(qkv), free(dqkv), free(dq), free(dk), free(dv);
    }
    float *dq = zeros(NEL(b[0])), *dk = zeros(NEL(b[1])), *dv = zeros(NEL(b[2]));
    mmp_tx_attention_bwd(dq, dk, dv, F(T_r), T_q, C, T_k, C, T_v, C, att, T_ql, T_kl, T_ns, C, T_NH, T_causal);
    char g[80];
    snprintf(g, sizeof g, "%s.grad.q", nm), snprintf(what, sizeof what, "%s dq", nm), near(what, dq, g, 1e-5);
    snprintf(g, sizeof g, "%s.grad.k", nm), snprintf(what, sizeof what, "%s dk", nm), near(what, dk, g, 1e-5);
    snprintf(g, sizeof g, "%s.grad.v", nm), snprintf(what, sizeof what, "%s dv", nm), near(what, dv, g, 1e-5);
    /* only dv: the same bits for dv */
    float *dv2 = zeros(NEL(b[2]));
    mmp_tx_attention_bwd(NULL, NULL, dv2, F(T_r), T_q, C, T_k, C, T_v, C, att, T_ql, T_kl, T_ns, C, T_NH, T_causal);
    CHECKF(memcmp(dv2, dv, NEL(b[2]) * 4) == 0, "%s: dv alone differs", nm);
    snprintf(what, sizeof what, "%s dq", nm), fd(what, loss_attn, T_q, dq, NEL(b[0]), 1e-2);
    snprintf(what, sizeof what, "%s dk", nm), fd(what, loss_attn, T_k, dk, NEL(b[1]), 1e-2);
    snprintf(what, sizeof what, "%s dv", nm), fd(what, loss_attn, T_v, dv, NEL(b[2]), 1e-2);
    free(T_q), free(T_k), free(T_v), free(T_o), free(att), free(o2), free(dq), free(dk), free(dv), free(dv2);
}

/* ------------------------------------------------------------------ embed */
static void test_embed(void) {
    int C = (int)tget(&io, "embed.table")->shape[1], T = (int)NEL("embed.ids");
    float *o = zeros((size_t)T * C), *dt = zeros(NEL("embed.table"));
    mmp_tx_embed_fwd(o, I32("embed.ids"), F("embed.table"), T, C);
    CHECKF(memcmp(o, F("embed.out"), (size_t)T * C * 4) == 0, "embed fwd differs");
    mmp_tx_embed_bwd(dt, F("embed.r"), I32("embed.ids"), T, C);
    near("embed bwd", dt, "embed.grad.table", 1e-5);
    free(o), free(dt);
}

/* ------------------------------------------------------------------ patch */
static float *P_img, *P_W, *P_b, *P_y;
static int P_H, P_Wd, P_C, P_P;
static double loss_patch(void) {
    mmp_tx_patch_fwd(P_y, P_img, P_H, P_Wd, P_W, P_b, P_C, P_P);
    return dot(P_y, F("patch.r"), NEL("patch.out"));
}
static void test_patch(void) {
    const mmp_tensor *ti = tget(&io, "patch.img"), *tw = tget(&io, "patch.W");
    P_H = (int)ti->shape[1], P_Wd = (int)ti->shape[2], P_C = (int)tw->shape[0], P_P = (int)tw->shape[2];
    P_img = copy("patch.img"), P_W = copy("patch.W"), P_b = copy("patch.b"), P_y = zeros(NEL("patch.out"));
    loss_patch();
    near("patch fwd", P_y, "patch.out", 1e-5);
    float *di = zeros(NEL("patch.img")), *dW = zeros(NEL("patch.W")), *db = zeros(NEL("patch.b"));
    /* accumulation: start dimg from 1 and subtract it afterwards */
    for (size_t i = 0; i < NEL("patch.img"); i++) di[i] = 1.0f;
    mmp_tx_patch_bwd(di, dW, db, F("patch.r"), P_img, P_H, P_Wd, P_W, P_C, P_P);
    for (size_t i = 0; i < NEL("patch.img"); i++) di[i] -= 1.0f;
    near("patch dimg", di, "patch.grad.img", 1e-5);
    near("patch dW", dW, "patch.grad.W", 1e-5);
    near("patch db", db, "patch.grad.b", 1e-5);
    fd("patch dimg", loss_patch, P_img, di, NEL("patch.img"), 1e-2);
    fd("patch dW", loss_patch, P_W, dW, NEL("patch.W"), 1e-2);
    fd("patch db", loss_patch, P_b, db, NEL("patch.b"), 1e-2);
    free(P_img), free(P_W), free(P_b), free(P_y), free(di), free(dW), free(db);
}

/* ------------------------------------------------------------- pos_resize */
static void test_pos_resize(void) {
    for (int i = 0;; i++) {
        char n[64];
        snprintf(n, sizeof n, "pos_resize.%d.size", i);
        if (!mmp_st_get(&io, n)) {
            CHECK(i >= 5);
            break;
        }
        const int32_t *sz = I32(n);
        snprintf(n, sizeof n, "pos_resize.%d.pe", i);
        int C = (int)tget(&io, n)->shape[1];
        const float *pe = F(n);
        for (int aa = 0; aa < 2; aa++) {
            float *o = zeros((size_t)sz[2] * sz[3] * C);
            mmp_tx_pos_resize(o, pe, sz[0], sz[1], sz[2], sz[3], C, aa);
            snprintf(n, sizeof n, "pos_resize.%d.%d", i, aa);
            double e = scaled_err(o, F(n), NEL(n), 1e-5);
            size_t same = 0;
            for (size_t j = 0; j < NEL(n); j++) same += o[j] == F(n)[j];
            CHECKF(e <= 1, "pos_resize %dx%d -> %dx%d antialias %d: error %.3g x 1e-5", sz[0], sz[1], sz[2], sz[3], aa,
                   e);
            if (getenv("TX_VERBOSE"))
                printf("pos_resize %dx%d -> %dx%d aa %d: %zu/%zu bit-equal to torch\n", sz[0], sz[1], sz[2], sz[3], aa,
                       same, NEL(n));
            free(o);
        }
    }
}

/* ---------------------------------------------------------------- encoder */
static const float *ef(const char *nm, int l, const char *p) {
    char n[96];
    snprintf(n, sizeof n, "%s.%d.%s", nm, l, p);
    const mmp_tensor *t = mmp_st_get(&enc, n);
    return t ? t->data : NULL;
}

typedef struct {
    const mmp_tx_encoder *e;
    float *x;
    const int *lens;
    int nseq;
} enc_job;
static void *enc_run(void *p) {
    enc_job *j = p;
    mmp_tx_encoder_fwd(j->e, j->x, j->lens, j->nseq, NULL);
    return NULL;
}

static const mmp_tx_encoder *E_e;
static const int *E_lens;
static int E_nseq, E_T;
static const float *E_r, *E_x0;
static float *E_x;
static double loss_enc(void) {
    size_t n = (size_t)E_T * E_e->C;
    memcpy(E_x, E_x0, n * sizeof(float));
    mmp_tx_encoder_fwd(E_e, E_x, E_lens, E_nseq, NULL);
    return dot(E_x, E_r, n);
}

static void test_encoder(const char *nm) {
    char n[96];
    snprintf(n, sizeof n, "%s.cfg", nm);
    const int32_t *cfg = tget(&enc, n)->data;
    snprintf(n, sizeof n, "%s.eps", nm);
    float eps = ((const float *)tget(&enc, n)->data)[0];
    snprintf(n, sizeof n, "%s.lens", nm);
    const mmp_tensor *tl = tget(&enc, n);
    const int *lens = tl->data, nseq = (int)tl->shape[0];
    mmp_tx_encoder e = {.layers = cfg[0], .C = cfg[1], .NH = cfg[2], .inter = cfg[3], .post_ln = cfg[4],
                        .causal = cfg[5], .act = (mmp_tx_act)cfg[6], .eps = eps};
    e.block = calloc((size_t)e.layers, sizeof *e.block);
    for (int l = 0; l < e.layers; l++) {
        mmp_tx_block *b = &e.block[l];
#define W(f) b->f = ef(nm, l, #f)
        W(ln1_w), W(ln1_b), W(q_w), W(q_b), W(k_w), W(k_b), W(v_w), W(v_b), W(o_w), W(o_b);
        W(ln2_w), W(ln2_b), W(fc1_w), W(fc1_b), W(fc2_w), W(fc2_b), W(ls1), W(ls2);
#undef W
    }
    snprintf(n, sizeof n, "%s.hidden", nm);
    const mmp_tensor *th = tget(&enc, n);
    const int C = e.C;
    int T = 0;
    for (int s = 0; s < nseq; s++) T += lens[s];
    const float *ref = th->data;
    float *x = malloc(sizeof(float) * (size_t)T * C), *hid = zeros((size_t)(e.layers + 1) * T * C);
    memcpy(x, ref, sizeof(float) * (size_t)T * C);
    mmp_tx_encoder_fwd(&e, x, lens, nseq, hid);
    for (int l = 0; l <= e.layers; l++) {
        double err = scaled_err(hid + (size_t)l * T * C, ref + (size_t)l * T * C, (size_t)T * C, 1e-5);
        CHECKF(err <= 1, "encoder %s hidden state %d: error %.3g x 1e-5", nm, l, err);
    }
    CHECKF(memcmp(x, hid + (size_t)e.layers * T * C, sizeof(float) * (size_t)T * C) == 0,
           "encoder %s: x differs from the last hidden state", nm);
    /* each sequence alone: the same bits */
    int bad = 0;
    for (int s = 0, t0 = 0; s < nseq; t0 += lens[s], s++) {
        float *xs = malloc(sizeof(float) * (size_t)lens[s] * C);
        memcpy(xs, ref + (size_t)t0 * C, sizeof(float) * (size_t)lens[s] * C);
        mmp_tx_encoder_fwd(&e, xs, lens + s, 1, NULL);
        bad += memcmp(xs, x + (size_t)t0 * C, sizeof(float) * (size_t)lens[s] * C) != 0;
        free(xs);
    }
    CHECKF(!bad, "encoder %s: %d sequence(s) differ alone vs packed", nm, bad);
    /* e->threads 2, 3 and 40 (more than rows or heads): the same bits */
    for (int nt = 2; nt <= 40; nt = nt == 3 ? 40 : nt + 1) {
        float *xt = malloc(sizeof(float) * (size_t)T * C), *ht = zeros((size_t)(e.layers + 1) * T * C);
        memcpy(xt, ref, sizeof(float) * (size_t)T * C);
        e.threads = nt;
        mmp_tx_encoder_fwd(&e, xt, lens, nseq, ht);
        e.threads = 0;
        CHECKF(memcmp(xt, x, sizeof(float) * (size_t)T * C) == 0 &&
                   memcmp(ht, hid, sizeof(float) * (size_t)(e.layers + 1) * T * C) == 0,
               "encoder %s: %d threads give other bits", nm, nt);
        free(xt), free(ht);
    }
    /* packed weights (mmp_tx_encoder_pack): the same bits */
    float *xp = malloc(sizeof(float) * (size_t)T * C);
    memcpy(xp, ref, sizeof(float) * (size_t)T * C);
    mmp_tx_encoder_pack(&e);
    mmp_tx_encoder_fwd(&e, xp, lens, nseq, NULL);
    CHECKF(memcmp(xp, x, sizeof(float) * (size_t)T * C) == 0, "encoder %s: packed weights give other bits", nm);
    memcpy(xp, ref, sizeof(float) * (size_t)T * C);
    e.threads = 2;
    mmp_tx_encoder_fwd(&e, xp, lens, nseq, NULL);
    e.threads = 0;
    CHECKF(memcmp(xp, x, sizeof(float) * (size_t)T * C) == 0, "encoder %s: packed on 2 threads gives other bits", nm);
    free(xp);
    /* two threads at once on the same const (packed) encoder: the same bits */
    float *x1 = malloc(sizeof(float) * (size_t)T * C), *x2 = malloc(sizeof(float) * (size_t)T * C);
    memcpy(x1, ref, sizeof(float) * (size_t)T * C);
    memcpy(x2, ref, sizeof(float) * (size_t)T * C);
    enc_job j1 = {&e, x1, lens, nseq}, j2 = {&e, x2, lens, nseq};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, enc_run, &j1);
    pthread_create(&t2, NULL, enc_run, &j2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECKF(memcmp(x1, x, sizeof(float) * (size_t)T * C) == 0 && memcmp(x2, x, sizeof(float) * (size_t)T * C) == 0,
           "encoder %s: two threads give other bits", nm);
    /* training: the forward with saved activations gives the same bits (packed and not) */
    size_t ns = mmp_tx_encoder_saved_size(&e, lens, nseq);
    float *saved = malloc(sizeof(float) * (ns + 1)), *xs = malloc(sizeof(float) * (size_t)T * C);
    float *hs = zeros((size_t)(e.layers + 1) * T * C);
    memcpy(xs, ref, sizeof(float) * (size_t)T * C);
    mmp_tx_encoder_fwd_save(&e, xs, lens, nseq, hs, saved);
    CHECKF(memcmp(xs, x, sizeof(float) * (size_t)T * C) == 0 &&
               memcmp(hs, hid, sizeof(float) * (size_t)(e.layers + 1) * T * C) == 0,
           "encoder %s: fwd_save (packed) differs from fwd", nm);
    mmp_tx_encoder_unpack(&e);
    CHECK(e.packed == NULL);
    memcpy(xs, ref, sizeof(float) * (size_t)T * C);
    mmp_tx_encoder_fwd_save(&e, xs, lens, nseq, NULL, saved);
    CHECKF(memcmp(xs, x, sizeof(float) * (size_t)T * C) == 0, "encoder %s: fwd_save differs from fwd", nm);
    /* backward vs autograd */
    static const char *const pn[18] = {"ln1_w", "ln1_b", "q_w", "q_b", "k_w", "k_b", "v_w", "v_b", "o_w",
                                       "o_b", "ln2_w", "ln2_b", "fc1_w", "fc1_b", "fc2_w", "fc2_b", "ls1", "ls2"};
    mmp_tx_block_grad *g = calloc((size_t)e.layers, sizeof *g);
    for (int l = 0; l < e.layers; l++) {
        float **f = (float **)&g[l];
        for (int i = 0; i < 18; i++) {
            char gn[96];
            snprintf(gn, sizeof gn, "%s.%d.%s", nm, l, pn[i]);
            const mmp_tensor *t = mmp_st_get(&enc, gn);
            f[i] = t ? zeros(t->nbytes / 4) : NULL;
        }
    }
    snprintf(n, sizeof n, "%s.r", nm);
    const float *r = tget(&enc, n)->data;
    float *dx = malloc(sizeof(float) * (size_t)T * C);
    memcpy(dx, r, sizeof(float) * (size_t)T * C);
    mmp_tx_encoder_bwd(&e, saved, lens, nseq, dx, g);
    snprintf(n, sizeof n, "%s.grad.x", nm);
    double err = scaled_err(dx, tget(&enc, n)->data, (size_t)T * C, 1e-5);
    CHECKF(err <= 1, "encoder %s backward dx: error %.3g x 1e-5", nm, err);
    for (int l = 0; l < e.layers; l++) {
        float **f = (float **)&g[l];
        for (int i = 0; i < 18; i++) {
            if (!f[i]) continue;
            char gn[96];
            snprintf(gn, sizeof gn, "%s.%d.grad.%s", nm, l, pn[i]);
            const mmp_tensor *t = tget(&enc, gn);
            if (i == 5) { /* k_b: softmax ignores it, the gradient is 0 up to rounding (~1e-7 of q_b's) */
                double mx = 0, ss = 0;
                for (int j = 0; j < C; j++) mx = fmax(mx, fabs(f[i][j])), ss += (double)f[3][j] * f[3][j];
                CHECKF(mx <= 1e-5 * sqrt(ss / C), "encoder %s backward %s: %.3g, not ~0", nm, gn, mx);
                continue;
            }
            err = scaled_err(f[i], t->data, t->nbytes / 4, 1e-5);
            CHECKF(err <= 1, "encoder %s backward %s: error %.3g x 1e-5", nm, gn, err);
        }
    }
    /* e->threads 2, 3, 40: fwd_save and bwd give the same bits (activations, dx, every gradient) */
    for (int nt = 2; nt <= 40; nt = nt == 3 ? 40 : nt + 1) {
        float *sv2 = malloc(sizeof(float) * (ns + 1)), *x2t = malloc(sizeof(float) * (size_t)T * C);
        memcpy(x2t, ref, sizeof(float) * (size_t)T * C);
        e.threads = nt;
        mmp_tx_encoder_fwd_save(&e, x2t, lens, nseq, NULL, sv2);
        CHECKF(memcmp(x2t, x, sizeof(float) * (size_t)T * C) == 0 && memcmp(sv2, saved, sizeof(float) * ns) == 0,
               "encoder %s: fwd_save on %d threads gives other bits", nm, nt);
        mmp_tx_block_grad *g2 = calloc((size_t)e.layers, sizeof *g2);
        for (int l = 0; l < e.layers; l++) {
            float **f = (float **)&g[l], **f2 = (float **)&g2[l];
            for (int i = 0; i < 18; i++) {
                char gn[96];
                snprintf(gn, sizeof gn, "%s.%d.%s", nm, l, pn[i]);
                f2[i] = f[i] ? zeros(tget(&enc, gn)->nbytes / 4) : NULL;
            }
        }
        memcpy(x2t, r, sizeof(float) * (size_t)T * C);
        mmp_tx_encoder_bwd(&e, sv2, lens, nseq, x2t, g2);
        e.threads = 0;
        int bad2 = memcmp(x2t, dx, sizeof(float) * (size_t)T * C) != 0;
        for (int l = 0; l < e.layers; l++) {
            float **f = (float **)&g[l], **f2 = (float **)&g2[l];
            for (int i = 0; i < 18; i++) {
                if (!f[i]) continue;
                char gn[96];
                snprintf(gn, sizeof gn, "%s.%d.%s", nm, l, pn[i]);
                bad2 += memcmp(f[i], f2[i], tget(&enc, gn)->nbytes) != 0;
                free(f2[i]);
            }
        }
        CHECKF(!bad2, "encoder %s: backward on %d threads gives other bits (%d tensors)", nm, nt, bad2);
        free(g2), free(sv2), free(x2t);
    }
    /* finite differences of sum(encoder(x) * r) for x and a few parameters */
    E_e = &e, E_lens = lens, E_nseq = nseq, E_T = T, E_r = r, E_x0 = ref;
    E_x = malloc(sizeof(float) * (size_t)T * C);
    float *x0 = malloc(sizeof(float) * (size_t)T * C);
    memcpy(x0, ref, sizeof(float) * (size_t)T * C);
    E_x0 = x0;
    char what[256];
    snprintf(what, sizeof what, "encoder %s dx", nm);
    fd(what, loss_enc, x0, dx, (size_t)T * C, 1e-2);
    for (int i = 0; i < 18; i++) {
        int l = i % e.layers;
        float **f = (float **)&g[l];
        const float **w = (const float **)&e.block[l];
        if (!f[i] || i == 5) continue;
        char gn[96];
        snprintf(gn, sizeof gn, "%s.%d.%s", nm, l, pn[i]);
        size_t np = tget(&enc, gn)->nbytes / 4;
        float *wc = malloc(sizeof(float) * np);
        memcpy(wc, w[i], sizeof(float) * np);
        const float *keep = w[i];
        w[i] = wc;
        snprintf(what, sizeof what, "encoder %s d%s", nm, gn);
        fd(what, loss_enc, wc, f[i], np, 1e-2);
        w[i] = keep;
        free(wc);
    }
    for (int l = 0; l < e.layers; l++) {
        float **f = (float **)&g[l];
        for (int i = 0; i < 18; i++) free(f[i]);
    }
    free(g), free(dx), free(E_x), free(x0), free(saved), free(xs), free(hs);
    free(x), free(hid), free(x1), free(x2), free(e.block);
}

int main(void) {
    mmp_st_open_or_die(&io, t_root_path("tests/fixtures/tx/ops.safetensors"));
    mmp_st_open_or_die(&enc, t_root_path("tests/fixtures/tx/encoder.safetensors"));
    test_linear();
    test_few_rows();
    test_layernorm();
    test_act();
    test_attention("attn_self");
    test_attention("attn_causal");
    test_attention("attn_cross");
    test_embed();
    test_patch();
    test_pos_resize();
    test_encoder("pre");
    test_encoder("clip");
    test_encoder("bert");
    mmp_st_close(&io);
    mmp_st_close(&enc);
    TEST_END();
}
