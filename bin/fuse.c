/* mmp-fuse: one vector per record from an image embedding and a text embedding
 * (two streams joined by record id, or two fields of one stream). */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fuse/check.h"
#include "fuse/fuse.h"
#include "fuse/join.h"
#include "mmp.h"

void openblas_set_num_threads(int);

static const char usage[] =
    "usage: mmp-fuse [options] IMAGE.mmp TEXT.mmp > fused.mmp     (join by record id)\n"
    "       mmp-fuse [options] --fields embedding,text_embedding [IN.mmp|-] > fused.mmp\n"
    "Fuses two embeddings of each record into one tensor 'embedding' (f32 [D]); the\n"
    "record keeps its id, label and text, the input tensors are dropped.\n\n";

typedef struct {
    mmp_reader *rd;
} rsrc;

static int reader_next(void *ctx, mmp_record *r, char *err, size_t errlen) {
    rsrc *s = ctx;
    int rc = mmp_reader_next(s->rd, r);
    if (rc < 0) snprintf(err, errlen, "%s: %s", mmp_reader_name(s->rd), mmp_reader_error(s->rd));
    return rc;
}

/* "A,B" into a and b (buffers of n) */
static int parse_pair(const char *v, char *a, char *b, size_t n) {
    const char *c = strchr(v, ',');
    if (!c || c == v || !c[1] || (size_t)(c - v) >= n || strlen(c + 1) >= n) return -1;
    memcpy(a, v, (size_t)(c - v));
    a[c - v] = 0;
    strcpy(b, c + 1);
    return 0;
}

typedef struct {
    char fa[64], fb[64], outf[64];
    float wa, wb;
    int single, have_weights;
    mmp_fuse_mode mode;
} fuseopts;

static int opt_fields(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    fuseopts *f = t;
    if (parse_pair(v, f->fa, f->fb, sizeof f->fa)) return mmp_errf(err, errlen, "bad value for --fields: %s (A,B)", v);
    f->single = 1;
    return 0;
}

static int opt_weights(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    fuseopts *f = t;
    char x[64], y[64];
    double a, b;
    if (parse_pair(v, x, y, sizeof x)) return mmp_errf(err, errlen, "bad value for --weights: %s (A,B)", v);
    if (mmp_cli_parse_double("--weights", x, &a, err, errlen) || mmp_cli_parse_double("--weights", y, &b, err, errlen)) return -1;
    f->wa = (float)a;
    f->wb = (float)b;
    f->have_weights = 1;
    return 0;
}

static int opt_mode(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    if (mmp_fuse_mode_parse(v, &((fuseopts *)t)->mode) < 0)
        return mmp_errf(err, errlen, "bad value for --mode: %s (concat, sum, weighted, gated, attention)", v);
    return 0;
}

static int opt_field(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    snprintf(t, 64, "%s", v);
    return 0;
}

int main(int argc, char **argv) {
    mmp_cli_init("mmp-fuse");
    const char *out = "-", *ckpt = NULL, *init = NULL, *dims = NULL;
    int l2 = 0, skip = 0, orth = 0, heads = 0, allow_mixed = 0, dtype = 0;
    long long window = 1024, project = 0, pseed = 0, seed = 0;
    fuseopts fo = {.fa = "embedding", .fb = "text_embedding", .outf = "embedding", .wa = 0.5f, .wb = 0.5f, .mode = MMP_FUSE_CONCAT};
    static const char *const missing_names[] = {"error", "skip", NULL}, *const init_names[] = {"gaussian", "orthogonal", NULL},
                             *const dtypes[] = {"f32", "f16", NULL};
    mmp_option opts[] = {
        MMP_O_CALL("mode", 0, opt_mode, &fo, "M", "concat (default) | sum | weighted | gated | attention"),
        MMP_O_CALL("weights", 0, opt_weights, &fo, "WA,WB", "weighted: h = WA a + WB b (default 0.5,0.5)"),
        MMP_O_FLAG("l2", 0, &l2, "L2-normalize each input first"),
        MMP_O_LLONG("project", 0, &project, 1, 1 << 16, "D", "fixed random projection of both inputs to D dims (after --l2)"),
        MMP_O_CHOICE("proj-init", 0, &orth, init_names, "gaussian N(0,1/D) (default) or orthonormal rows (D <= dims)"),
        MMP_O_LLONG("proj-seed", 0, &pseed, 0, 1LL << 62, "S", "seed of the projections (default 0; a uses S, b uses S+1)"),
        MMP_O_STRING("checkpoint", 0, &ckpt, "FILE",
                     "learned parameters (safetensors): gated / attention, or a learned\n"
                     "projection ('proj') for concat / sum / weighted; a checkpoint from\n"
                     "mmp-train-step must match the inputs' provenance"),
        MMP_O_FLAG("allow-mixed", 0, &allow_mixed, "fuse inputs of another provenance than the checkpoint's (warning)"),
        MMP_O_CALL("fields", 0, opt_fields, &fo, "A,B", "fuse fields A and B of one stream"),
        MMP_O_CALL("a-field", 0, opt_field, fo.fa, "NAME", "field of the first stream (default embedding)"),
        MMP_O_CALL("b-field", 0, opt_field, fo.fb, "NAME", "field of the second stream (default text_embedding)"),
        MMP_O_LLONG("window", 0, &window, 1, 1 << 24, "N", "join: unmatched records buffered per stream (default 1024)"),
        MMP_O_CHOICE("missing", 0, &skip, missing_names,
                     "a record without partner (or out of the window): error (default)\n"
                     "or skip it (counted in the trailer's skipped)"),
        MMP_O_STRBUF("out-field", 0, fo.outf, 1, "NAME", "output tensor name (default embedding)"),
        MMP_O_CHOICE("dtype", 0, &dtype, dtypes, "output dtype (default f32)"),
        MMP_O_STRING("init", 0, &init, "FILE",
                     "with --dims DA,DB,D [--heads H] [--seed S]: write a freshly initialized\n"
                     "checkpoint for --mode (gated, attention; concat/sum/weighted: a learned\n"
                     "projection) and exit"),
        MMP_O_STRING("dims", 0, &dims, "DA,DB,D", "--init: the input and output sizes"),
        MMP_O_INT("heads", 0, &heads, 1, 4096, "H", "--init --mode attention: attention heads"),
        MMP_O_LLONG("seed", 0, &seed, 0, 1LL << 62, "S", "--init: the seed of the weights (default 0)"),
        MMP_O_OUTPUT(&out, "output (default stdout)"),
        MMP_O_COMMON,
        MMP_O_END,
    };
    char **inputs;
    int ninputs = mmp_cli_parse(argc, argv, opts, usage, &inputs);
    if (ninputs > 2) mmp_die("at most two inputs (see --help)");
    mmp_fuse_mode mode = fo.mode;
    mmp_dtype odt = dtype ? MMP_F16 : MMP_F32;
    const char *fa = fo.fa, *fb = fo.fb, *outf = fo.outf;
    float wa = fo.wa, wb = fo.wb;
    int single = fo.single;
    openblas_set_num_threads(1);
    char err[1024];
    mmp_fusep_kind kind = mode == MMP_FUSE_GATED ? MMP_FUSEP_GATED : mode == MMP_FUSE_ATTENTION ? MMP_FUSEP_ATTENTION : MMP_FUSEP_PROJ;
    if (init) {
        int da, db, d;
        if (!dims || sscanf(dims, "%d,%d,%d", &da, &db, &d) != 3) mmp_die("--init needs --dims DA,DB,D");
        if (kind == MMP_FUSEP_ATTENTION && !heads) mmp_die("--init --mode attention needs --heads");
        mmp_fuse_params p;
        if (mmp_fuse_params_alloc(&p, kind, da, db, d, heads, err, sizeof err) < 0) mmp_die("%s", err);
        mmp_fuse_params_init(&p, (uint64_t)seed);
        if (mmp_fuse_params_save(&p, init, err, sizeof err) < 0) mmp_die("%s", err);
        mmp_fuse_params_free(&p);
        free(inputs);
        return 0;
    }
    if (ninputs == 2 && single) mmp_die("--fields fuses two fields of ONE stream; with two inputs use --a-field/--b-field");
    if (ninputs < 2) single = 1;
    if (!inputs[0]) inputs[0] = "-";
    if ((mode == MMP_FUSE_GATED || mode == MMP_FUSE_ATTENTION) && !ckpt)
        mmp_die("--mode %s needs --checkpoint (mmp-fuse --init makes a fresh one)", mmp_fuse_mode_name(mode));
    if (fo.have_weights && mode != MMP_FUSE_WEIGHTED) mmp_die("--weights is for --mode weighted");
    if (project && ckpt) mmp_die("--project and --checkpoint exclude each other");
    if (project && (mode == MMP_FUSE_GATED || mode == MMP_FUSE_ATTENTION)) mmp_die("--project is for concat, sum, weighted");

    mmp_reader *ra = mmp_reader_open_or_die(inputs[0]), *rb = single ? NULL : mmp_reader_open_or_die(inputs[1]);
    const char *na = mmp_reader_name(ra), *nb = single ? na : mmp_reader_name(rb);
    const mmp_header *ha = mmp_reader_header(ra), *hb = single ? ha : mmp_reader_header(rb);
    int da = mmp_fuse_field_dim(ha, fa, na, err, sizeof err);
    if (da < 0) mmp_die("%s", err);
    int db = mmp_fuse_field_dim(hb, fb, nb, err, sizeof err);
    if (db < 0) mmp_die("%s", err);

    /* parameters */
    mmp_fuse_params P;
    int learned = 0;
    char ck_sha[65] = "";
    if (ckpt) {
        if (mmp_fuse_params_load(&P, ckpt, err, sizeof err) < 0) mmp_die("%s", err);
        if (P.kind != kind)
            mmp_die("%s: a '%s' checkpoint, but --mode %s needs '%s'", ckpt, mmp_fusep_kind_name(P.kind), mmp_fuse_mode_name(mode),
                    mmp_fusep_kind_name(kind));
        if (P.da != da || P.db != db)
            mmp_die("%s: dimension mismatch: checkpoint takes %d + %d, the inputs have %s %d and %s %d", ckpt, P.da, P.db, fa, da, fb, db);
        if (mmp_sha256_file(ckpt, ck_sha) < 0) mmp_die("%s: cannot read", ckpt);
        learned = 1;
        /* a checkpoint trained by mmp-train-step records what made its inputs */
        mmp_safetensors st;
        mmp_st_open_or_die(&st, ckpt);
        const char *want[2] = {mmp_meta_get(&st.meta, "provenance"), mmp_meta_get(&st.meta, "text_provenance")};
        const char *have[2] = {mmp_fuse_side_provenance(ha, fa), mmp_fuse_side_provenance(hb, fb)};
        const char *what[2] = {na, nb};
        for (int k = 0; k < 2; k++)
            mmp_cli_check(mmp_check_fuse_provenance(want[k], have[k], allow_mixed, what[k], k ? fb : fa, ckpt, err, sizeof err), err);
        mmp_st_close(&st);
    }
    float *Wa = NULL, *Wb = NULL;
    if (project) {
        Wa = mmp_xmalloc((size_t)project * da * sizeof *Wa);
        Wb = mmp_xmalloc((size_t)project * db * sizeof *Wb);
        if (mmp_fuse_random_projection(Wa, (int)project, da, (uint64_t)pseed, orth) < 0 ||
            mmp_fuse_random_projection(Wb, (int)project, db, (uint64_t)pseed + 1, orth) < 0)
            mmp_die("--proj-init orthogonal needs --project <= both sizes (%d, %d)", da, db);
    }
    int ea = learned ? P.d : project ? (int)project : da, eb = learned ? P.d : project ? (int)project : db; /* sizes fed to the combination */
    int D;
    if (mode == MMP_FUSE_GATED || mode == MMP_FUSE_ATTENTION) D = P.d;
    else if (mode == MMP_FUSE_CONCAT) D = ea + eb;
    else {
        if (ea != eb)
            mmp_die("dimension mismatch: --mode %s needs equal sizes, %s has %d and %s has %d (use --project D or a projection checkpoint)",
                    mmp_fuse_mode_name(mode), fa, ea, fb, eb);
        D = ea;
    }

    /* output header: A's classes and meta, B's meta where A has none */
    mmp_header oh;
    mmp_header_init(&oh);
    mmp_meta_copy(&oh.meta, &ha->meta);
    if (!single) {
        for (int i = 0; i < hb->meta.n; i++) {
            const char *k = hb->meta.keys[i], *av = mmp_meta_get(&ha->meta, k);
            if (!strcmp(k, "program") || !strcmp(k, "args") || !strcmp(k, "history")) continue;
            if (!av) mmp_meta_set(&oh.meta, k, hb->meta.vals[i]);
            else if (strcmp(av, hb->meta.vals[i]) != 0) {
                char *kk = mmp_xasprintf("fuse.b.%s", k);
                mmp_meta_set(&oh.meta, kk, hb->meta.vals[i]);
                free(kk);
            }
        }
        mmp_cli_check(mmp_check_same_classes(ha, hb, na, nb, err, sizeof err), err);
    }
    const mmp_header *hc = ha->nclasses ? ha : hb;
    if (hc->nclasses) mmp_header_set_classes(&oh, hc->nclasses, hc->classes);
    int64_t oshape[1] = {D};
    mmp_header_add_field(&oh, outf, odt, 1, oshape);
    const char *pa = mmp_fuse_side_provenance(ha, fa), *pb = mmp_fuse_side_provenance(hb, fb);
    char desc[512];
    if (learned) snprintf(desc, sizeof desc, "%s:l2=%d:checkpoint=sha256=%s", mmp_fuse_mode_name(mode), l2, ck_sha);
    else if (project)
        snprintf(desc, sizeof desc, "%s:l2=%d:project=%lld:%s:seed=%lld", mmp_fuse_mode_name(mode), l2, project,
                 orth ? "orthogonal" : "gaussian", pseed);
    else snprintf(desc, sizeof desc, "%s:l2=%d", mmp_fuse_mode_name(mode), l2);
    if (mode == MMP_FUSE_WEIGHTED) {
        size_t k = strlen(desc);
        snprintf(desc + k, sizeof desc - k, ":weights=%g,%g", wa, wb);
    }
    char *prov = mmp_xasprintf("fuse(%s;a=%s;b=%s)", desc, pa, pb);
    mmp_meta_set(&oh.meta, "provenance", prov);
    mmp_meta_set(&oh.meta, "fuse.mode", mmp_fuse_mode_name(mode));
    mmp_meta_set(&oh.meta, "fuse.desc", desc);
    mmp_meta_set(&oh.meta, "fuse.a_provenance", pa);
    mmp_meta_set(&oh.meta, "fuse.b_provenance", pb);
    char *fl = mmp_xasprintf("%s:%s,%s:%s", na, fa, nb, fb);
    mmp_meta_set(&oh.meta, "fuse.inputs", fl);
    free(fl);
    if (learned) mmp_meta_set(&oh.meta, "fuse.checkpoint_sha256", ck_sha);
    mmp_header_stamp(&oh, argc, argv);
    mmp_writer *w = mmp_writer_open(out, &oh, 0);

    enum { BATCH = 64 };
    mmp_record A[BATCH], B[BATCH], o;
    for (int i = 0; i < BATCH; i++) {
        mmp_record_init(&A[i]);
        mmp_record_init(&B[i]);
    }
    mmp_record_init(&o);
    float *xa = mmp_xmalloc((size_t)BATCH * da * sizeof *xa), *xb = mmp_xmalloc((size_t)BATCH * db * sizeof *xb);
    float *pj = mmp_xmalloc((size_t)BATCH * (size_t)(ea + eb) * sizeof *pj);
    float *h = mmp_xmalloc((size_t)BATCH * D * sizeof *h);
    rsrc sa = {ra}, sb = {rb};
    mmp_joiner *J = single ? NULL : mmp_join_new((mmp_join_src){reader_next, &sa, na}, (mmp_join_src){reader_next, &sb, nb}, (int)window, skip);
    uint64_t nout = 0, recno = 0;
    for (;;) {
        int n = 0;
        while (n < BATCH) {
            if (single) {
                if (!mmp_reader_next_or_die(ra, &A[n])) break;
                recno++;
            } else {
                int rc = mmp_join_next(J, &A[n], &B[n]);
                if (rc < 0) mmp_die("%s", mmp_join_error(J));
                if (rc == 0) break;
            }
            const mmp_record *rb_ = single ? &A[n] : &B[n];
            const mmp_tensor *ta = mmp_record_cget(&A[n], fa), *tb = mmp_record_cget(rb_, fb);
            const char *id = A[n].id ? A[n].id : "";
            if (!ta || ta->ndim != 1 || ta->shape[0] != da)
                mmp_die("%s: record %s%s: field '%s' missing or not [%d] (dimension mismatch)", na, single ? "" : "id ", id, fa, da);
            if (!tb || tb->ndim != 1 || tb->shape[0] != db)
                mmp_die("%s: record %s%s: field '%s' missing or not [%d] (dimension mismatch)", nb, single ? "" : "id ", id, fb, db);
            if (!single && A[n].label != MMP_NO_LABEL && B[n].label != MMP_NO_LABEL && A[n].label != B[n].label)
                mmp_die("%s: record id %s: label %lld but %s says %lld", na, id, (long long)A[n].label, nb, (long long)B[n].label);
            mmp_tensor_to_f32(ta, xa + (size_t)n * da);
            mmp_tensor_to_f32(tb, xb + (size_t)n * db);
            if (l2) {
                mmp_fuse_l2(xa + (size_t)n * da, da);
                mmp_fuse_l2(xb + (size_t)n * db, db);
            }
            n++;
        }
        if (n == 0) break;
        if (learned && kind != MMP_FUSEP_PROJ) {
            mmp_fuse_forward(&P, n, xa, xb, h, NULL);
        } else {
            const float *ya = xa, *yb = xb;
            int lda = da, ldb = db;
            if (learned) { /* [N, 2d]: proj_a | proj_b */
                mmp_fuse_forward(&P, n, xa, xb, pj, NULL);
                ya = pj;
                yb = pj + ea;
                lda = ldb = ea + eb;
            } else if (project) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, ea, da, 1.0f, xa, da, Wa, da, 0.0f, pj, ea + eb);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, eb, db, 1.0f, xb, db, Wb, db, 0.0f, pj + ea, ea + eb);
                ya = pj;
                yb = pj + ea;
                lda = ldb = ea + eb;
            }
            for (int i = 0; i < n; i++)
                mmp_fuse_fixed(mode, ya + (size_t)i * lda, ea, yb + (size_t)i * ldb, eb, wa, wb, h + (size_t)i * D);
        }
        for (int i = 0; i < n; i++) {
            mmp_record_clear(&o);
            const mmp_record *rb_ = single ? &A[i] : &B[i];
            if (A[i].id) mmp_record_set_id(&o, A[i].id);
            o.label = A[i].label != MMP_NO_LABEL ? A[i].label : rb_->label;
            if (A[i].text) mmp_record_set_text(&o, A[i].text);
            else if (rb_->text) mmp_record_set_text(&o, rb_->text);
            mmp_tensor *t = mmp_record_add(&o, outf, odt, 1, oshape);
            mmp_f32_to_dtype(h + (size_t)i * D, (size_t)D, odt, t->data);
            mmp_writer_write(w, &o);
        }
        nout += (uint64_t)n;
        mmp_progress("%llu records", (unsigned long long)nout);
    }
    mmp_progress_done();
    uint64_t skipped = (J ? mmp_join_skipped(J) : 0) + mmp_reader_skipped(ra) + (rb ? mmp_reader_skipped(rb) : 0);
    if (skipped) mmp_writer_add_skipped(w, skipped);
    mmp_writer_close(w);
    if (J && mmp_join_skipped(J)) mmp_warn("skipped %llu records without a partner", (unsigned long long)mmp_join_skipped(J));
    (void)recno;
    mmp_join_free(J);
    mmp_reader_close(ra);
    if (rb) mmp_reader_close(rb);
    for (int i = 0; i < BATCH; i++) {
        mmp_record_clear(&A[i]);
        mmp_record_clear(&B[i]);
    }
    mmp_record_clear(&o);
    free(xa); free(xb); free(pj); free(h); free(Wa); free(Wb); free(prov);
    if (learned) mmp_fuse_params_free(&P);
    mmp_header_free(&oh);
    free(inputs);
    return 0;
}
