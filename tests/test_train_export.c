/* mmp-export's library (train/export.h): a linear (ce) and an MLP (bce)
 * head trained with standardization are exported; the state dict has
 * exactly the torch module's tensors (no optim.*, no standardize.*) and,
 * read back, gives mmp-eval's logits (standardize + head) on the same
 * features within float rounding; without standardization the tensors are
 * copied bit for bit; other head kinds, a safetensors file that is not a
 * checkpoint and a truncated checkpoint are refused with one line naming
 * the file (or the kind) and leave no output file. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmp.h"
#include "rng.h"
#include "testlib.h"
#include "train_testlib.h"
#include "train/export.h"
#include "train/train.h"

enum { N = 60, D = 7, C = 3 };

/* features far from standardized: mean ~ 5 + k, std ~ 0.5 .. 3.5; class k shifts coordinate k */
static void features(float *x) {
    mmp_rng s = 11;
    for (int i = 0; i < N; i++)
        for (int k = 0; k < D; k++)
            x[i * D + k] = (float)((0.5 + 0.5 * k) * mmp_rng_normal_clamp(&s) + 5 + k + 2.0 * (k == i % C));
}

/* trains one epoch of a head (options as key=value pairs) on x and saves it to path */
static void make_head(const char *path, const float *x, const char *const *kv, int nkv) {
    int bce = 0;
    for (int i = 0; i < nkv; i += 2) bce |= !strcmp(kv[i], "loss") && !strcmp(kv[i + 1], "bce");
    mmp_dataset ds;
    t_dataset(&ds, x, N, D, C, bce);
    mmp_train_cfg c;
    mmp_train_cfg_defaults(&c);
    char err[512];
    for (int i = 0; i < nkv; i += 2) CHECKF(mmp_train_cfg_set(&c, kv[i], kv[i + 1], err, sizeof err) == 0, "%s", err);
    mmp_trainer tr;
    CHECKF(mmp_trainer_init(&tr, &c, &ds, err, sizeof err) == 0, "%s", err);
    mmp_trainer_standardize(&tr, &ds);
    mmp_trainer_epoch(&tr, &ds, NULL, 0);
    CHECKF(mmp_trainer_save(&tr, path, err, sizeof err) == 0, "%s", err);
    mmp_trainer_free(&tr);
    mmp_dataset_free(&ds);
}

/* logits[N,C] of x as mmp-eval computes them with the model at path */
static void eval_logits(const char *path, const float *x, float *logits) {
    char err[1024];
    mmp_trainer tr;
    if (mmp_trainer_load(&tr, path, NULL, err, sizeof err)) {
        CHECKF(0, "%s", err);
        memset(logits, 0, sizeof(float) * N * C);
        return;
    }
    float *xc = malloc(sizeof(float) * N * D);
    memcpy(xc, x, sizeof(float) * N * D);
    mmp_trainer_infer(&tr, xc, NULL, N, NULL, 0, logits, NULL, NULL);
    free(xc);
    mmp_trainer_free(&tr);
}

/* the exported file: its tensor names are exactly want[0..nw) */
static void check_names(const char *path, const char *const *want, int nw) {
    mmp_safetensors st;
    char err[512];
    if (mmp_st_open(&st, path, err, sizeof err)) { CHECKF(0, "%s", err); return; }
    CHECKF(st.n == nw, "%s: %d tensors, expected %d", path, st.n, nw);
    for (int i = 0; i < nw; i++) CHECKF(mmp_st_get(&st, want[i]) != NULL, "%s: no tensor %s", path, want[i]);
    for (int i = 0; i < st.n; i++)
        CHECKF(strncmp(st.entries[i].name, "optim.", 6) && strncmp(st.entries[i].name, "standardize.", 12),
               "%s: %s left in", path, st.entries[i].name);
    const char *f = mmp_meta_get(&st.meta, "format");
    CHECK(f && !strcmp(f, "pt"));
    mmp_st_close(&st);
}

/* Folding changes the rounding: W ((x - m) / s) + b against (W / s) x + (b - (W / s) m).
 * The terms (W / s) x and (W / s) m are each ~|W| |m| / s, larger than the logit (features
 * here have mean 5..11, std 0.5..3.5), so the error is a few float ulps of those terms, not of
 * the logit: measured up to ~7e-7 on logits of ~1.5. Tolerance: 1e-5 relative + 1e-5 of
 * (1 + max|logit|) absolute, ~20x that; a wrong fold (std or mean left out) moves logits by O(1). */
static void compare(const char *what, const float *got, const float *want) {
    double mx = 0;
    for (int i = 0; i < N * C; i++) mx = fmax(mx, fabs(want[i]));
    size_t at;
    double r = t_maxrel(got, want, N * C, 1e-5, 1e-5 * (1 + mx), &at);
    CHECKF(r <= 1, "%s: logit %zu: %.9g vs %.9g (%.3g of the tolerance)", what, at, got[at], want[at], r);
}

int main(void) {
    char dir[] = "/tmp/mmp-export-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char ck[256], out[256], path[256], err[1536];
    float x[N * D], want[N * C], got[N * C];
    features(x);

    /* linear, ce, standardized (the default of linear heads) */
    snprintf(ck, sizeof ck, "%s/lin.safetensors", dir);
    snprintf(out, sizeof out, "%s/lin.pt.safetensors", dir);
    const char *lin[] = {"loss", "ce", "seed", "3", "optimizer", "adamw"};
    make_head(ck, x, lin, 6);
    CHECKF(mmp_export_checkpoint(ck, out, err, sizeof err) == 0, "%s", err);
    const char *lin_names[] = {"weight", "bias"};
    check_names(out, lin_names, 2);
    eval_logits(ck, x, want);
    /* x W'^T + b' straight from the file, in double */
    mmp_safetensors st;
    if (mmp_st_open(&st, out, err, sizeof err) == 0) {
        const float *W = mmp_st_get(&st, "weight")->data, *b = mmp_st_get(&st, "bias")->data;
        for (int i = 0; i < N; i++)
            for (int c = 0; c < C; c++) {
                double s = b[c];
                for (int k = 0; k < D; k++) s += (double)W[c * D + k] * x[i * D + k];
                got[i * C + c] = (float)s;
            }
        compare("linear, x W'^T + b'", got, want);
        mmp_st_close(&st);
    } else CHECKF(0, "%s", err);
    /* read back as a plain state dict (mmp-eval's path for torch files): no standardization left */
    eval_logits(out, x, got);
    compare("linear, mmp-eval of the export", got, want);

    /* MLP, bce, standardized, SGD with momentum (optim.*.momentum_buffer) */
    snprintf(ck, sizeof ck, "%s/mlp.safetensors", dir);
    snprintf(out, sizeof out, "%s/mlp.pt.safetensors", dir);
    const char *mlp[] = {"loss", "bce", "seed", "4", "hidden", "8,5", "dropout", "0.1", "standardize", "1",
                         "optimizer", "sgd", "momentum", "0.9"};
    make_head(ck, x, mlp, 14);
    CHECKF(mmp_export_checkpoint(ck, out, err, sizeof err) == 0, "%s", err);
    const char *mlp_names[] = {"layers.0.weight", "layers.0.bias", "layers.3.weight", "layers.3.bias",
                               "layers.6.weight", "layers.6.bias"};
    check_names(out, mlp_names, 6);
    eval_logits(ck, x, want);
    eval_logits(out, x, got);
    compare("mlp, mmp-eval of the export", got, want);
    if (mmp_st_open(&st, out, err, sizeof err) == 0) {
        const char *h = mmp_meta_get(&st.meta, "head"), *hid = mmp_meta_get(&st.meta, "hidden");
        CHECK(h && !strcmp(h, "mlp") && hid && !strcmp(hid, "8,5"));
        mmp_st_close(&st);
    }

    /* without standardization the tensors are the checkpoint's, bit for bit */
    snprintf(ck, sizeof ck, "%s/raw.safetensors", dir);
    snprintf(out, sizeof out, "%s/raw.pt.safetensors", dir);
    const char *raw[] = {"loss", "ce", "seed", "5", "standardize", "0"};
    make_head(ck, x, raw, 6);
    CHECKF(mmp_export_checkpoint(ck, out, err, sizeof err) == 0, "%s", err);
    mmp_safetensors a, b;
    if (mmp_st_open(&a, ck, err, sizeof err) == 0 && mmp_st_open(&b, out, err, sizeof err) == 0) {
        for (int i = 0; i < 2; i++) {
            const mmp_tensor *ta = mmp_st_get(&a, lin_names[i]), *tb = mmp_st_get(&b, lin_names[i]);
            CHECK(ta && tb && ta->nbytes == tb->nbytes &&
                  !memcmp(ta->data, tb->data, ta->nbytes));
        }
        mmp_st_close(&a);
        mmp_st_close(&b);
    }

    /* refused: another head kind (one line naming it), nothing added */
    mmp_trainer tr;
    memset(&tr, 0, sizeof tr);
    mmp_head_init(&tr.head, MMP_HEAD_PAIR, D, 4, 5, 0, NULL, 0, 1);
    tr.in_dim = D;
    mmp_st_writer w;
    mmp_st_writer_init(&w);
    CHECK(mmp_export_state_dict(&tr, &w, err, sizeof err) == -1);
    CHECKF(strstr(err, "pair head") && !strchr(err, '\n'), "%s", err);
    CHECK(w.n == 0);
    mmp_st_writer_free(&w);
    mmp_head_free(&tr.head);

    /* refused: a safetensors file that is no checkpoint, a truncated checkpoint, a missing file */
    snprintf(out, sizeof out, "%s/bad.pt.safetensors", dir);
    snprintf(path, sizeof path, "%s/plain.safetensors", dir);
    mmp_st_writer_init(&w);
    int64_t sh[2] = {C, D};
    mmp_st_writer_add_f32(&w, "features.0.weight", x, 2, sh);
    CHECKF(mmp_st_writer_write(&w, path, err, sizeof err) == 0, "%s", err);
    mmp_st_writer_free(&w);
    CHECK(mmp_export_checkpoint(path, out, err, sizeof err) == -1);
    CHECKF(strstr(err, path) && strstr(err, "not an mmp-train-step checkpoint") && !strchr(err, '\n'), "%s", err);
    CHECK(access(out, F_OK) != 0);
    size_t n = 0;
    unsigned char *bytes = t_slurp(ck, &n);
    CHECK(bytes != NULL);
    snprintf(path, sizeof path, "%s/trunc.safetensors", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(bytes, 1, n - 9, f) == n - 9);
    if (f) fclose(f);
    free(bytes);
    CHECK(mmp_export_checkpoint(path, out, err, sizeof err) == -1);
    CHECKF(strstr(err, path) && !strchr(err, '\n'), "%s", err);
    CHECK(access(out, F_OK) != 0);
    snprintf(path, sizeof path, "%s/none.safetensors", dir);
    CHECK(mmp_export_checkpoint(path, out, err, sizeof err) == -1);
    CHECKF(strstr(err, path) != NULL, "%s", err);
    CHECK(access(out, F_OK) != 0);

    t_sh("rm -rf %s", dir);
    TEST_END();
}
