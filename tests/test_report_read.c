/* mmp_report_read / mmp_report_compute on in-memory prediction streams:
 * the classification report equals mmp_clsreport_compute on the records'
 * own (label, argmax) pairs, multi-label decisions follow the threshold,
 * retrieval recall equals mmp_retrieval_recall on the projections, and bad
 * streams give one line naming the stream and the record. */
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "rng.h"
#include "stream_testlib.h"
#include "testlib.h"
#include "train/report.h"

enum { N = 60, C = 4, E = 6 };


/* kind 0: "probs" + label (every 7th unlabelled) + projections;
 * kind 1: multi-label "labels" + "logits"; kind 2: like 0 with an i64
 * "pred" [2]; kind 3: like 0 with an f32 "pred" [1]. */
static mem make(int kind, float *probs, int64_t *labels, float *pa, float *pb) {
    mem m;
    mmp_header h;
    mmp_header_init(&h);
    char *names[C] = {"a", "b", "c", "d"};
    mmp_header_set_classes(&h, C, names);
    int64_t sc[1] = {C}, se[1] = {E}, s1[1] = {1};
    if (kind == 1) mmp_header_add_field(&h, "labels", MMP_F32, 1, sc);
    mmp_header_add_field(&h, kind == 1 ? "logits" : "probs", MMP_F32, 1, sc);
    if (kind != 1) {
        mmp_header_add_field(&h, "image_proj", MMP_F32, 1, se);
        mmp_header_add_field(&h, "text_proj", MMP_F32, 1, se);
    }
    int64_t s2[1] = {2};
    if (kind >= 2) mmp_header_add_field(&h, "pred", kind == 2 ? MMP_I64 : MMP_F32, 1, kind == 2 ? s2 : s1);
    mmp_writer *w = t_mem_writer(&m, "mem", &h);
    uint64_t s = 7;
    for (int i = 0; i < N; i++) {
        mmp_record r;
        mmp_record_init(&r);
        float *p = mmp_record_add(&r, kind == 1 ? "logits" : "probs", MMP_F32, 1, sc)->data;
        for (int c = 0; c < C; c++) p[c] = probs[i * C + c] = (float)mmp_rng_uniform53(&s) - (kind == 1 ? 0.5f : 0);
        if (kind == 1) {
            float *t = mmp_record_add(&r, "labels", MMP_F32, 1, sc)->data;
            for (int c = 0; c < C; c++) t[c] = mmp_rng_uniform53(&s) < 0.4;
        } else {
            r.label = labels[i] = i % 7 == 3 ? MMP_NO_LABEL : (int64_t)(mmp_rng_uniform53(&s) * C);
            float *a = mmp_record_add(&r, "image_proj", MMP_F32, 1, se)->data, *b = mmp_record_add(&r, "text_proj", MMP_F32, 1, se)->data;
            for (int k = 0; k < E; k++) {
                a[k] = pa[i * E + k] = (float)mmp_rng_uniform53(&s);
                b[k] = pb[i * E + k] = a[k] + 0.3f * (float)mmp_rng_uniform53(&s);
            }
        }
        if (kind == 2) memset(mmp_record_add(&r, "pred", MMP_I64, 1, s2)->data, 0, 2 * sizeof(int64_t));
        if (kind == 3) *(float *)mmp_record_add(&r, "pred", MMP_F32, 1, s1)->data = 1;
        mmp_writer_write(w, &r);
        mmp_record_clear(&r);
    }
    t_mem_close(&m, w);
    mmp_header_free(&h);
    return m;
}

static void test_single(void) {
    float probs[N * C], pa[N * E], pb[N * E];
    int64_t labels[N], yt[N], yp[N], n = 0;
    mem m = make(0, probs, labels, pa, pb);
    char err[512] = "";
    mmp_reader *r = mmp_reader_open_mem(m.buf, m.n, "mem", err, sizeof err);
    CHECKF(r != NULL, "%s", err);
    mmp_report_data d;
    mmp_report rep;
    memset(&rep, 0, sizeof rep);
    int ks[2] = {1, 5};
    CHECKF(mmp_report_read(&d, r, 0.5, err, sizeof err) == 0, "%s", err);
    CHECKF(mmp_report_compute(&d, mmp_reader_header(r), "mem", ks, 2, &rep, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < N; i++) {
        if (labels[i] < 0) continue;
        int best = 0;
        for (int c = 1; c < C; c++)
            if (probs[i * C + c] > probs[i * C + best]) best = c;
        yt[n] = labels[i];
        yp[n++] = best;
    }
    CHECK(d.n == n && d.unlabelled == N - n && d.nret == N && rep.n_retrieval == N);
    mmp_clsreport want;
    CHECK(mmp_clsreport_compute(&want, yt, yp, n, C, NULL) == 0);
    CHECK(rep.cls && rep.cls->C == C && rep.cls->accuracy == want.accuracy && !memcmp(rep.cls->cm, want.cm, sizeof(int64_t) * C * C));
    CHECK(rep.names && !strcmp(rep.names[2], "c") && rep.ml == NULL);
    double a2b[2], b2a[2];
    mmp_retrieval_recall(pa, pb, N, E, ks, 2, a2b, b2a);
    CHECK(rep.nk == 2 && rep.a2b[0] == a2b[0] && rep.a2b[1] == a2b[1] && rep.b2a[0] == b2a[0] && rep.b2a[1] == b2a[1]);
    mmp_clsreport_free(&want);
    mmp_report_data_free(&d);
    mmp_reader_close(r);
    free(m.buf);
}

static void test_multi(void) {
    float probs[N * C], pa[N * E], pb[N * E];
    int64_t labels[N];
    mem m = make(1, probs, labels, pa, pb);
    char err[512] = "";
    mmp_reader *r = mmp_reader_open_mem(m.buf, m.n, "mem", err, sizeof err);
    mmp_report_data d;
    mmp_report rep;
    memset(&rep, 0, sizeof rep);
    CHECKF(mmp_report_read(&d, r, 0.55, err, sizeof err) == 0, "%s", err);
    CHECK(d.multi == 1 && d.nml == N && d.Cml == C);
    int agree = 1;
    for (int i = 0; i < N * C; i++) agree &= d.mp[i] == (1.0 / (1.0 + exp(-(double)probs[i])) > 0.55);
    CHECK(agree);
    CHECKF(mmp_report_compute(&d, mmp_reader_header(r), "mem", NULL, 0, &rep, err, sizeof err) == 0, "%s", err);
    CHECK(rep.ml && !rep.cls && rep.ml->n == N && rep.n_retrieval == 0);
    mmp_report_data_free(&d);
    mmp_reader_close(r);
    free(m.buf);
}

static void test_bad(int kind, const char *want) {
    float probs[N * C], pa[N * E], pb[N * E];
    int64_t labels[N];
    mem m = make(kind, probs, labels, pa, pb);
    char err[512] = "";
    mmp_reader *r = mmp_reader_open_mem(m.buf, m.n, "mem", err, sizeof err);
    mmp_report_data d;
    CHECK(mmp_report_read(&d, r, 0.5, err, sizeof err) == -1);
    CHECKF(!strcmp(err, want), "got '%s', want '%s'", err, want);
    mmp_report_data_free(&d);
    mmp_reader_close(r);
    free(m.buf);
}

int main(void) {
    test_single();
    test_multi();
    test_bad(2, "mem: record 0: \"pred\" must hold one value");
    test_bad(3, "mem: record 0: \"pred\" must be an integer tensor [1]");
    TEST_END();
}
