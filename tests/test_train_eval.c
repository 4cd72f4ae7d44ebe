/* mmp_eval_run (mmp-eval's loop) on in-memory streams: a linear head and a
 * bce head saved and loaded as mmp-eval does; the prediction records must
 * equal a direct forward pass (standardize + head) of the same features,
 * the batching must not matter, and a bad record gives one line naming the
 * stream and the record. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmp.h"
#include "rng.h"
#include "stream_testlib.h"
#include "testlib.h"
#include "train_testlib.h"
#include "train/eval.h"
#include "train/layers.h"

enum { N = 50, D = 6, C = 3 };

/* features: class k shifts coordinate k; label of record i = i % C */
static void features(float *x, uint64_t seed) {
    mmp_rng s = seed;
    for (int i = 0; i < N; i++)
        for (int k = 0; k < D; k++) x[i * D + k] = (float)(2 * mmp_rng_normal_clamp(&s) + 4.0 * (k == i % C) + k);
}

/* a freshly initialized head of loss `loss`, saved to path */
static void make_head(const char *path, const char *loss, const float *x) {
    mmp_dataset ds;
    t_dataset(&ds, x, N, D, C, !strcmp(loss, "bce"));
    mmp_train_cfg c;
    mmp_train_cfg_defaults(&c);
    char err[512];
    CHECKF(mmp_train_cfg_set(&c, "loss", loss, err, sizeof err) == 0, "%s", err);
    CHECKF(mmp_train_cfg_set(&c, "seed", "3", err, sizeof err) == 0, "%s", err);
    mmp_trainer tr;
    CHECKF(mmp_trainer_init(&tr, &c, &ds, err, sizeof err) == 0, "%s", err);
    mmp_trainer_epoch(&tr, &ds, NULL, 0);
    CHECKF(mmp_trainer_save(&tr, path, err, sizeof err) == 0, "%s", err);
    mmp_trainer_free(&tr);
    mmp_dataset_free(&ds);
}

/* the feature stream: "embedding" f32 [D], id, label; "labels" f32 [C] with
 * targets; record bad (if >= 0) gets a NaN */
static char *feature_stream(const float *x, int targets, int bad, size_t *len) {
    mem m;
    mmp_header h;
    mmp_header_init(&h);
    int64_t sd[1] = {D}, sc[1] = {C};
    mmp_header_add_field(&h, "embedding", MMP_F32, 1, sd);
    if (targets) mmp_header_add_field(&h, "labels", MMP_F32, 1, sc);
    mmp_writer *w = t_mem_writer(&m, "feat", &h);
    for (int i = 0; i < N; i++) {
        mmp_record r;
        mmp_record_init(&r);
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        mmp_record_set_id(&r, id);
        r.label = i % 4 == 3 ? MMP_NO_LABEL : i % C;
        float *v = mmp_record_add(&r, "embedding", MMP_F32, 1, sd)->data;
        memcpy(v, x + i * D, sizeof(float) * D);
        if (i == bad) v[2] = NAN;
        if (targets) {
            float *t = mmp_record_add(&r, "labels", MMP_F32, 1, sc)->data;
            for (int c = 0; c < C; c++) t[c] = (float)(c == (i + 1) % C);
        }
        mmp_writer_write(w, &r);
        mmp_record_clear(&r);
    }
    t_mem_close(&m, w);
    mmp_header_free(&h);
    *len = m.n;
    return m.buf;
}

/* runs the eval loop; returns the output stream (NULL on error, message in err) */
static char *eval(const char *path, const char *in, size_t inlen, int64_t batch, mmp_eval_summary *s, size_t *outlen, char *err,
                  size_t errlen) {
    mmp_trainer tr;
    mmp_eval e;
    CHECKF(mmp_trainer_load(&tr, path, NULL, err, errlen) == 0, "%s", err);
    CHECK(mmp_eval_init(&e, &tr, 0, path, err, errlen) == 0);
    mmp_reader *r = mmp_reader_open_mem(in, inlen, "feat", err, errlen);
    mmp_eval_attach(&e, mmp_reader_header(r));
    mmp_header oh;
    mmp_eval_header(&e, mmp_reader_header(r), path, &oh);
    char *buf = NULL;
    FILE *fp = open_memstream(&buf, outlen);
    mmp_writer *w = mmp_writer_open_fp(fp, "pred", &oh, 1);
    int ks[1] = {1};
    int rc = mmp_eval_run(&e, r, w, batch, ks, 1, s, err, errlen);
    if (rc == 0) mmp_writer_close(w);
    else mmp_writer_abandon(w); /* no trailer, as when mmp-eval dies */
    fclose(fp);
    if (rc) {
        free(buf);
        buf = NULL;
    }
    mmp_header_free(&oh);
    mmp_reader_close(r);
    mmp_eval_free(&e);
    mmp_trainer_free(&tr);
    return buf;
}

static void check_head(const char *dir, const char *loss) {
    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/head-%s.safetensors", dir, loss);
    float x[N * D];
    features(x, 11);
    make_head(path, loss, x);
    int bce = !strcmp(loss, "bce");
    size_t inlen, outlen, outlen2;
    char *in = feature_stream(x, bce, -1, &inlen);
    mmp_eval_summary s, s2;
    char *out = eval(path, in, inlen, 7, &s, &outlen, err, sizeof err);
    CHECKF(out != NULL, "%s: %s", loss, err);
    char *out2 = eval(path, in, inlen, 1024, &s2, &outlen2, err, sizeof err);
    CHECKF(out2 && outlen2 == outlen && !memcmp(out, out2, outlen), "%s: batch size changed the output", loss);

    /* direct forward pass */
    mmp_trainer tr;
    CHECK(mmp_trainer_load(&tr, path, NULL, err, sizeof err) == 0);
    float xs[N * D], z[N * C];
    memcpy(xs, x, sizeof xs);
    mmp_standardize_apply(xs, N, D, tr.mean, tr.std);
    mmp_trainer_predict(&tr, xs, N, z);
    mmp_trainer_free(&tr);

    mmp_reader *r = mmp_reader_open_mem(out, outlen, "pred", err, sizeof err);
    CHECK((mmp_header_field(mmp_reader_header(r), "labels") != NULL) == bce);
    mmp_record rec;
    mmp_record_init(&rec);
    int i = 0, labelled = 0, correct = 0;
    while (mmp_reader_next(r, &rec) == 1 && i < N) {
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        CHECK(rec.id && !strcmp(rec.id, id) && rec.label == (i % 4 == 3 ? MMP_NO_LABEL : i % C));
        const float *lg = mmp_record_cget(&rec, "logits")->data, *p = mmp_record_cget(&rec, "probs")->data;
        int64_t pred = *(const int64_t *)mmp_record_cget(&rec, "pred")->data;
        CHECKF(t_maxrel(lg, z + i * C, C, 1e-5, 1e-6, NULL) <= 1, "%s: record %d: logits differ from the forward pass", loss, i);
        int best = 0;
        double sum = 0;
        for (int c = 0; c < C; c++) {
            if (z[i * C + c] > z[i * C + best]) best = c;
            sum += p[c];
            double want = bce ? 1 / (1 + exp(-(double)lg[c])) : 0;
            if (bce) CHECK(fabs(p[c] - want) < 1e-6);
        }
        if (!bce) CHECK(fabs(sum - 1) < 1e-5);
        CHECK(pred == best);
        if (bce) CHECK(((const float *)mmp_record_cget(&rec, "labels")->data)[(i + 1) % C] == 1);
        if (rec.label >= 0) labelled++, correct += best == rec.label;
        i++;
    }
    CHECK(i == N);
    CHECK(s.n == N && s.labelled == labelled && s.correct == correct && !s.retrieval);
    mmp_record_clear(&rec);
    mmp_reader_close(r);
    free(out);
    free(out2);
    free(in);

    /* a NaN in record 9 */
    in = feature_stream(x, bce, 9, &inlen);
    CHECK(eval(path, in, inlen, 4, &s, &outlen, err, sizeof err) == NULL);
    CHECKF(!strcmp(err, "feat: record 9: \"embedding\" has a non-finite value"), "got: %s", err);
    free(in);
    unlink(path);
}

int main(void) {
    const char *dir = getenv("MMP_TMP");
    if (!dir) dir = "/tmp";
    check_head(dir, "ce");
    check_head(dir, "bce");
    TEST_END();
}
