/* mmp-fuse's loop (lib/fuse/run.c) on in-memory streams: two streams joined
 * by id in different orders, and two fields of one stream, with fixed, projected
 * and learned (gated) fusion; every output equals the fusion computed
 * directly from the record's own inputs; the output header says how it was
 * made; bad inputs and bad option combinations give one line. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuse/run.h"
#include "mmp.h"
#include "rng.h"
#include "stream_testlib.h"
#include "testlib.h"

enum { N = 150, DA = 5, DB = 4 };

static float XA[N * DA], XB[N * DB];


/* stream of records i (in order perm[k]) with field fa [DA] from XA and/or fb [DB]
 * from XB; labels i % 3, except record bad_label gets 2 - its label */
static mem stream(const char *fa, const char *fb, const char *prov, int reverse, int bad_label) {
    mem m;
    mmp_header h;
    mmp_header_init(&h);
    char *names[3] = {"x", "y", "z"};
    mmp_header_set_classes(&h, 3, names);
    mmp_meta_set(&h.meta, "provenance", prov);
    int64_t sa[1] = {DA}, sb[1] = {DB};
    if (fa) mmp_header_add_field(&h, fa, MMP_F32, 1, sa);
    if (fb) mmp_header_add_field(&h, fb, MMP_F32, 1, sb);
    mmp_writer *w = t_mem_writer(&m, "mem", &h);
    for (int k = 0; k < N; k++) {
        int i = reverse ? (k / 10) * 10 + 9 - k % 10 : k; /* reversed in blocks of 10 */
        mmp_record r;
        mmp_record_init(&r);
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        mmp_record_set_id(&r, id);
        r.label = i == bad_label ? 2 - i % 3 : i % 3;
        if (fa) memcpy(mmp_record_add(&r, fa, MMP_F32, 1, sa)->data, XA + i * DA, sizeof(float) * DA);
        if (fb) memcpy(mmp_record_add(&r, fb, MMP_F32, 1, sb)->data, XB + i * DB, sizeof(float) * DB);
        mmp_writer_write(w, &r);
        mmp_record_clear(&r);
    }
    t_mem_close(&m, w);
    mmp_header_free(&h);
    return m;
}

static mmp_fuse_opts opts(mmp_fuse_mode mode) {
    mmp_fuse_opts o = {.mode = mode, .fa = "embedding", .fb = "text_embedding", .outf = "fused", .wa = 0.5f, .wb = 0.5f,
                       .odt = MMP_F32, .window = 1024};
    return o;
}

/* fuses a (and b, or one stream when b is NULL); the output (NULL on error, message in err) and its header's meta */
static mem fuse(const mmp_fuse_opts *o, const mem *a, const mem *b, mmp_header *oh, char *err, size_t errlen) {
    mem out = {0};
    mmp_reader *ra = mmp_reader_open_mem(a->buf, a->n, "A", err, errlen), *rb = b ? mmp_reader_open_mem(b->buf, b->n, "B", err, errlen) : NULL;
    mmp_fuser f;
    if (mmp_fuser_open(&f, o, mmp_reader_header(ra), "A", rb ? mmp_reader_header(rb) : NULL, rb ? "B" : NULL, err, errlen) == 0) {
        mmp_fuser_header(&f, oh);
        FILE *fp = open_memstream(&out.buf, &out.n);
        mmp_writer *w = mmp_writer_open_fp(fp, "out", oh, 1);
        uint64_t skipped = 1;
        int rc = mmp_fuser_run(&f, ra, rb, w, &skipped, err, errlen);
        if (rc == 0) {
            mmp_writer_close(w);
            CHECK(skipped == 0);
        } else mmp_writer_abandon(w);
        fclose(fp);
        if (rc) {
            free(out.buf);
            out.buf = NULL;
        }
    } else mmp_header_init(oh);
    mmp_fuser_free(&f);
    mmp_reader_close(ra);
    if (rb) mmp_reader_close(rb);
    return out;
}

typedef void (*expect_fn)(int i, float *h, const void *ctx);

/* every record of out is record rI (any order) with label i % 3 and fused == expect(i) */
static void check_output(const char *what, const mem *out, int D, expect_fn expect, const void *ctx) {
    char err[512];
    CHECKF(out->buf != NULL, "%s: no output", what);
    if (!out->buf) return;
    mmp_reader *r = mmp_reader_open_mem(out->buf, out->n, "out", err, sizeof err);
    mmp_record rec;
    mmp_record_init(&rec);
    int n = 0, seen[N] = {0};
    float want[64];
    while (mmp_reader_next(r, &rec) == 1) {
        int i = atoi(rec.id + 1);
        CHECKF(i >= 0 && i < N && !seen[i] && rec.label == i % 3, "%s: record %s", what, rec.id);
        if (i < 0 || i >= N) break;
        seen[i] = 1;
        const mmp_tensor *t = mmp_record_cget(&rec, "fused");
        CHECK(t && t->shape[0] == D);
        expect(i, want, ctx);
        CHECKF(t_maxrel(t->data, want, (size_t)D, 1e-5, 1e-6, NULL) <= 1, "%s: record %d differs", what, i);
        n++;
    }
    CHECKF(n == N, "%s: %d records", what, n);
    mmp_record_clear(&rec);
    mmp_reader_close(r);
}

/* a field fused with itself: sum of the L2-normalized inputs = 2 a / ||a|| (by hand) */
static void expect_sum_l2(int i, float *h, const void *ctx) {
    double na = 0;
    for (int k = 0; k < DA; k++) na += (double)XA[i * DA + k] * XA[i * DA + k];
    for (int k = 0; k < DA; k++) h[k] = (float)(2 * XA[i * DA + k] / sqrt(na));
}

typedef struct { const float *Wa, *Wb; int p; } projctx;
/* concat of the projections Wa a, Wb b */
static void expect_proj(int i, float *h, const void *ctx) {
    const projctx *c = ctx;
    for (int o = 0; o < c->p; o++) {
        double sa = 0, sb = 0;
        for (int k = 0; k < DA; k++) sa += (double)c->Wa[o * DA + k] * XA[i * DA + k];
        for (int k = 0; k < DB; k++) sb += (double)c->Wb[o * DB + k] * XB[i * DB + k];
        h[o] = (float)sa;
        h[c->p + o] = (float)sb;
    }
}

/* the gated module's forward of record i alone */
static void expect_gated(int i, float *h, const void *ctx) { mmp_fuse_forward(ctx, 1, XA + i * DA, XB + i * DB, h, NULL); }

int main(void) {
    mmp_rng s = 5;
    for (int k = 0; k < N * DA; k++) XA[k] = (float)mmp_rng_normal_clamp(&s);
    for (int k = 0; k < N * DB; k++) XB[k] = (float)mmp_rng_normal_clamp(&s);
    char err[512] = "";
    mmp_header oh;

    /* two streams in different orders, sum of L2-normalized inputs: the sizes must agree */
    mem a = stream("embedding", NULL, "img-v1", 0, -1), b = stream(NULL, "text_embedding", "txt-v1", 1, -1);
    mmp_fuse_opts o = opts(MMP_FUSE_SUM);
    o.l2 = 1;
    mem out = fuse(&o, &a, &b, &oh, err, sizeof err);
    CHECK(out.buf == NULL && strstr(err, "dimension mismatch: --mode sum needs equal sizes, embedding has 5 and text_embedding has 4"));
    mmp_header_free(&oh);

    /* ... with a projection to 3 dims, concat */
    o = opts(MMP_FUSE_CONCAT);
    o.project = 3;
    o.proj_seed = 9;
    out = fuse(&o, &a, &b, &oh, err, sizeof err);
    float Wa[3 * DA], Wb[3 * DB];
    CHECK(mmp_fuse_random_projection(Wa, 3, DA, 9, 0) == 0 && mmp_fuse_random_projection(Wb, 3, DB, 10, 0) == 0);
    projctx pc = {Wa, Wb, 3};
    check_output("concat project", &out, 6, expect_proj, &pc);
    const char *prov = mmp_meta_get(&oh.meta, "provenance");
    CHECKF(prov && !strcmp(prov, "fuse(concat:l2=0:project=3:gaussian:seed=9;a=img-v1;b=txt-v1)"), "%s", prov ? prov : "(none)");
    CHECK(oh.nclasses == 3 && mmp_header_field(&oh, "fused")->shape[0] == 6);
    free(out.buf);
    mmp_header_free(&oh);

    mem one = stream("embedding", "text_embedding", "both-v1", 0, -1);

    /* a learned gated module (checkpoint written by --init) on one stream */
    const char *dir = getenv("MMP_TMP");
    char ck[512];
    snprintf(ck, sizeof ck, "%s/gated.safetensors", dir ? dir : "/tmp");
    CHECKF(mmp_fuse_params_create(MMP_FUSE_GATED, DA, DB, 7, 0, 3, ck, err, sizeof err) == 0, "%s", err);
    mmp_fuse_params P;
    CHECK(mmp_fuse_params_load(&P, ck, err, sizeof err) == 0);
    o = opts(MMP_FUSE_GATED);
    o.checkpoint = ck;
    out = fuse(&o, &one, NULL, &oh, err, sizeof err);
    check_output("gated", &out, 7, expect_gated, &P);
    CHECK(mmp_meta_get(&oh.meta, "fuse.checkpoint_sha256") && !strcmp(mmp_meta_get(&oh.meta, "fuse.mode"), "gated"));
    free(out.buf);
    mmp_header_free(&oh);
    mmp_fuse_params_free(&P);

    /* one stream, a field with itself: --l2 sum */
    o = opts(MMP_FUSE_SUM);
    o.l2 = 1;
    o.fb = "embedding";
    out = fuse(&o, &one, NULL, &oh, err, sizeof err);
    check_output("sum l2", &out, DA, expect_sum_l2, NULL);
    CHECK(!strcmp(mmp_meta_get(&oh.meta, "fuse.desc"), "sum:l2=1"));
    free(out.buf);
    mmp_header_free(&oh);

    /* a label that disagrees between the streams */
    mem bl = stream(NULL, "text_embedding", "txt-v1", 1, 42);
    o = opts(MMP_FUSE_CONCAT);
    out = fuse(&o, &a, &bl, &oh, err, sizeof err);
    CHECKF(out.buf == NULL && !strcmp(err, "A: record id r42: label 0 but B says 2"), "got: %s", err);
    mmp_header_free(&oh);

    /* a checkpoint of the wrong kind */
    o = opts(MMP_FUSE_ATTENTION);
    o.checkpoint = ck;
    out = fuse(&o, &one, NULL, &oh, err, sizeof err);
    CHECK(out.buf == NULL && strstr(err, "a 'gated' checkpoint, but --mode attention needs 'attention'"));
    mmp_header_free(&oh);

    /* option combinations */
    o = opts(MMP_FUSE_GATED);
    CHECK(mmp_fuse_opts_check(&o, err, sizeof err) == -1 && !strcmp(err, "--mode gated needs --checkpoint (mmp-fuse --init makes a fresh one)"));
    o = opts(MMP_FUSE_SUM);
    o.weights_given = 1;
    CHECK(mmp_fuse_opts_check(&o, err, sizeof err) == -1 && !strcmp(err, "--weights is for --mode weighted"));
    o = opts(MMP_FUSE_CONCAT);
    o.project = 2;
    CHECK(mmp_fuse_opts_check(&o, err, sizeof err) == 0);
    o.checkpoint = ck;
    CHECK(mmp_fuse_opts_check(&o, err, sizeof err) == -1 && !strcmp(err, "--project and --checkpoint exclude each other"));

    unlink(ck);
    free(a.buf); free(b.buf); free(bl.buf); free(one.buf);
    TEST_END();
}
