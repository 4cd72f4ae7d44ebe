/* fuse/run.c: mmp-fuse's work (fuse/run.h): parameters, output header and
 * the batched loop over one stream or two streams joined by id. */
#include "nn/gemm.h"
#include <stdlib.h>
#include <string.h>

#include "fuse/check.h"
#include "fuse/join.h"
#include "fuse/run.h"

mmp_fusep_kind mmp_fuse_mode_params(mmp_fuse_mode m) {
    return m == MMP_FUSE_GATED ? MMP_FUSEP_GATED : m == MMP_FUSE_ATTENTION ? MMP_FUSEP_ATTENTION : MMP_FUSEP_PROJ;
}

int mmp_fuse_opts_check(const mmp_fuse_opts *o, char *err, size_t errlen) {
    int learned_mode = o->mode == MMP_FUSE_GATED || o->mode == MMP_FUSE_ATTENTION;
    if (learned_mode && !o->checkpoint)
        return mmp_errf(err, errlen, "--mode %s needs --checkpoint (mmp-fuse --init makes a fresh one)", mmp_fuse_mode_name(o->mode));
    if (o->weights_given && o->mode != MMP_FUSE_WEIGHTED) return mmp_errf(err, errlen, "--weights is for --mode weighted");
    if (o->project && o->checkpoint) return mmp_errf(err, errlen, "--project and --checkpoint exclude each other");
    if (o->project && learned_mode) return mmp_errf(err, errlen, "--project is for concat, sum, weighted");
    return 0;
}

int mmp_fuse_params_create(mmp_fuse_mode mode, int da, int db, int d, int heads, uint64_t seed, const char *path, char *err,
                           size_t errlen) {
    mmp_fuse_params p;
    if (mmp_fuse_params_alloc(&p, mmp_fuse_mode_params(mode), da, db, d, heads, err, errlen) < 0) return -1;
    mmp_fuse_params_init(&p, seed);
    int rc = mmp_fuse_params_save(&p, path, err, errlen);
    mmp_fuse_params_free(&p);
    return rc < 0 ? -1 : 0;
}

int mmp_fuser_open(mmp_fuser *f, const mmp_fuse_opts *o, const mmp_header *ha, const char *na, const mmp_header *hb, const char *nb,
                   char *err, size_t errlen) {
    memset(f, 0, sizeof *f);
    f->o = *o;
    f->single = hb == NULL;
    f->ha = ha;
    f->na = na;
    f->hb = hb ? hb : ha;
    f->nb = nb ? nb : na;
    const mmp_fuse_mode mode = o->mode;
    mmp_fusep_kind kind = mmp_fuse_mode_params(mode);
    if ((f->da = mmp_fuse_field_dim(f->ha, o->fa, f->na, err, errlen)) < 0) return -1;
    if ((f->db = mmp_fuse_field_dim(f->hb, o->fb, f->nb, err, errlen)) < 0) return -1;
    const char *ck = o->checkpoint;
    if (ck) {
        if (mmp_fuse_params_load(&f->P, ck, err, errlen) < 0) return -1;
        f->learned = 1;
        if (f->P.kind != kind)
            return mmp_errf(err, errlen, "%s: a '%s' checkpoint, but --mode %s needs '%s'", ck, mmp_fusep_kind_name(f->P.kind),
                            mmp_fuse_mode_name(mode), mmp_fusep_kind_name(kind));
        if (f->P.da != f->da || f->P.db != f->db)
            return mmp_errf(err, errlen, "%s: dimension mismatch: checkpoint takes %d + %d, the inputs have %s %d and %s %d", ck, f->P.da,
                            f->P.db, o->fa, f->da, o->fb, f->db);
        if (mmp_sha256_file(ck, f->ck_sha) < 0) return mmp_errf(err, errlen, "%s: cannot read", ck);
        /* a checkpoint trained by mmp-train-step records what made its inputs */
        mmp_safetensors st;
        if (mmp_st_open(&st, ck, err, errlen)) return -1;
        const char *keys[2] = {"provenance", "text_provenance"};
        for (int k = 0; k < 2; k++) {
            const char *v = mmp_meta_get(&st.meta, keys[k]);
            f->ck_prov[k] = v ? mmp_xstrdup(v) : NULL;
        }
        mmp_st_close(&st);
    }
    if (o->project) {
        f->Wa = mmp_xmalloc((size_t)o->project * f->da * sizeof *f->Wa);
        f->Wb = mmp_xmalloc((size_t)o->project * f->db * sizeof *f->Wb);
        if (mmp_fuse_random_projection(f->Wa, o->project, f->da, o->proj_seed, o->orthogonal) < 0 ||
            mmp_fuse_random_projection(f->Wb, o->project, f->db, o->proj_seed + 1, o->orthogonal) < 0)
            return mmp_errf(err, errlen, "--proj-init orthogonal needs --project <= both sizes (%d, %d)", f->da, f->db);
    }
    /* sizes fed to the combination */
    f->ea = f->learned ? f->P.d : o->project ? o->project : f->da;
    f->eb = f->learned ? f->P.d : o->project ? o->project : f->db;
    if (mode == MMP_FUSE_GATED || mode == MMP_FUSE_ATTENTION) f->D = f->P.d;
    else if (mode == MMP_FUSE_CONCAT) f->D = f->ea + f->eb;
    else {
        if (f->ea != f->eb)
            return mmp_errf(err, errlen,
                            "dimension mismatch: --mode %s needs equal sizes, %s has %d and %s has %d (use --project D or a projection checkpoint)",
                            mmp_fuse_mode_name(mode), o->fa, f->ea, o->fb, f->eb);
        f->D = f->ea;
    }
    return 0;
}

int mmp_fuser_check_provenance(const mmp_fuser *f, int k, int allow_mixed, char *err, size_t errlen) {
    const char *have = k ? mmp_fuse_side_provenance(f->hb, f->o.fb) : mmp_fuse_side_provenance(f->ha, f->o.fa);
    return mmp_check_fuse_provenance(f->ck_prov[k], have, allow_mixed, k ? f->nb : f->na, k ? f->o.fb : f->o.fa, f->o.checkpoint, err,
                                     errlen);
}

void mmp_fuser_header(const mmp_fuser *f, mmp_header *oh) {
    const mmp_header *ha = f->ha, *hb = f->hb;
    const mmp_fuse_opts *o = &f->o;
    mmp_header_init(oh);
    mmp_meta_copy(&oh->meta, &ha->meta);
    if (!f->single)
        for (int i = 0; i < hb->meta.n; i++) {
            const char *k = hb->meta.keys[i], *av = mmp_meta_get(&ha->meta, k);
            if (!strcmp(k, "program") || !strcmp(k, "args") || !strcmp(k, "history")) continue;
            if (!av) mmp_meta_set(&oh->meta, k, hb->meta.vals[i]);
            else if (strcmp(av, hb->meta.vals[i]) != 0) {
                char *kk = mmp_xasprintf("fuse.b.%s", k);
                mmp_meta_set(&oh->meta, kk, hb->meta.vals[i]);
                free(kk);
            }
        }
    const mmp_header *hc = ha->nclasses ? ha : hb;
    if (hc->nclasses) mmp_header_set_classes(oh, hc->nclasses, hc->classes);
    int64_t oshape[1] = {f->D};
    mmp_header_add_field(oh, o->outf, o->odt, 1, oshape);
    const char *pa = mmp_fuse_side_provenance(ha, o->fa), *pb = mmp_fuse_side_provenance(hb, o->fb);
    const char *mname = mmp_fuse_mode_name(o->mode);
    char desc[512];
    if (f->learned) snprintf(desc, sizeof desc, "%s:l2=%d:checkpoint=sha256=%s", mname, o->l2, f->ck_sha);
    else if (o->project)
        snprintf(desc, sizeof desc, "%s:l2=%d:project=%d:%s:seed=%lld", mname, o->l2, o->project, o->orthogonal ? "orthogonal" : "gaussian",
                 (long long)o->proj_seed);
    else snprintf(desc, sizeof desc, "%s:l2=%d", mname, o->l2);
    if (o->mode == MMP_FUSE_WEIGHTED) {
        size_t k = strlen(desc);
        snprintf(desc + k, sizeof desc - k, ":weights=%g,%g", o->wa, o->wb);
    }
    char *prov = mmp_xasprintf("fuse(%s;a=%s;b=%s)", desc, pa, pb);
    mmp_meta_set(&oh->meta, "provenance", prov);
    free(prov);
    mmp_meta_set(&oh->meta, "fuse.mode", mname);
    mmp_meta_set(&oh->meta, "fuse.desc", desc);
    mmp_meta_set(&oh->meta, "fuse.a_provenance", pa);
    mmp_meta_set(&oh->meta, "fuse.b_provenance", pb);
    char *fl = mmp_xasprintf("%s:%s,%s:%s", f->na, o->fa, f->nb, o->fb);
    mmp_meta_set(&oh->meta, "fuse.inputs", fl);
    free(fl);
    if (f->learned) mmp_meta_set(&oh->meta, "fuse.checkpoint_sha256", f->ck_sha);
}

static int reader_next(void *ctx, mmp_record *r, char *err, size_t errlen) {
    mmp_reader *rd = ctx;
    int rc = mmp_reader_next(rd, r);
    if (rc < 0) snprintf(err, errlen, "%s: %s", mmp_reader_name(rd), mmp_reader_error(rd));
    return rc;
}

/* h [n, D] from the inputs xa [n, da], xb [n, db]; pj: scratch [n, ea + eb] */
static void combine(const mmp_fuser *f, int n, const float *xa, const float *xb, float *pj, float *h) {
    const mmp_fuse_opts *o = &f->o;
    const int da = f->da, db = f->db, ea = f->ea, eb = f->eb;
    if (f->learned && f->P.kind != MMP_FUSEP_PROJ) {
        mmp_fuse_forward(&f->P, n, xa, xb, h, NULL);
        return;
    }
    const float *ya = xa, *yb = xb;
    int lda = da, ldb = db;
    if (f->learned) { /* [N, 2d]: proj_a | proj_b */
        mmp_fuse_forward(&f->P, n, xa, xb, pj, NULL);
        ya = pj;
        yb = pj + ea;
        lda = ldb = ea + eb;
    } else if (o->project) {
        mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, n, ea, da, 1.0f, xa, da, f->Wa, da, 0.0f, pj, ea + eb);
        mmp_sgemm(MMP_GEMM_N, MMP_GEMM_T, n, eb, db, 1.0f, xb, db, f->Wb, db, 0.0f, pj + ea, ea + eb);
        ya = pj;
        yb = pj + ea;
        lda = ldb = ea + eb;
    }
    for (int i = 0; i < n; i++) mmp_fuse_fixed(o->mode, ya + (size_t)i * lda, ea, yb + (size_t)i * ldb, eb, o->wa, o->wb, h + (size_t)i * f->D);
}

enum { BATCH = 64 };

int mmp_fuser_run(mmp_fuser *f, mmp_reader *ra, mmp_reader *rb, mmp_writer *w, uint64_t *join_skipped, char *err, size_t errlen) {
    const mmp_fuse_opts *o = &f->o;
    const int single = f->single, da = f->da, db = f->db, D = f->D;
    const char *na = f->na, *nb = f->nb, *fa = o->fa, *fb = o->fb;
    mmp_record A[BATCH], B[BATCH], out;
    for (int i = 0; i < BATCH; i++) {
        mmp_record_init(&A[i]);
        mmp_record_init(&B[i]);
    }
    mmp_record_init(&out);
    float *xa = mmp_xmalloc((size_t)BATCH * da * sizeof *xa), *xb = mmp_xmalloc((size_t)BATCH * db * sizeof *xb);
    float *pj = mmp_xmalloc((size_t)BATCH * (size_t)(f->ea + f->eb) * sizeof *pj);
    float *h = mmp_xmalloc((size_t)BATCH * D * sizeof *h);
    mmp_joiner *J = single ? NULL : mmp_join_new((mmp_join_src){reader_next, ra, na}, (mmp_join_src){reader_next, rb, nb}, o->window, o->skip_missing);
    int64_t oshape[1] = {D};
    uint64_t nout = 0;
    double t0 = mmp_now();
    int ret = -1;
    for (;;) {
        int n = 0;
        while (n < BATCH) {
            if (single) {
                int rc = mmp_reader_next(ra, &A[n]);
                if (rc < 0) { mmp_errf(err, errlen, "%s", mmp_reader_error(ra)); goto out; }
                if (rc == 0) break;
            } else {
                int rc = mmp_join_next(J, &A[n], &B[n]);
                if (rc < 0) { mmp_errf(err, errlen, "%s", mmp_join_error(J)); goto out; }
                if (rc == 0) break;
            }
            const mmp_record *rb_ = single ? &A[n] : &B[n];
            const mmp_tensor *ta = mmp_record_cget(&A[n], fa), *tb = mmp_record_cget(rb_, fb);
            const char *id = A[n].id ? A[n].id : "";
            if (!ta || ta->ndim != 1 || ta->shape[0] != da) {
                mmp_errf(err, errlen, "%s: record %s%s: field '%s' missing or not [%d] (dimension mismatch)", na, single ? "" : "id ", id, fa, da);
                goto out;
            }
            if (!tb || tb->ndim != 1 || tb->shape[0] != db) {
                mmp_errf(err, errlen, "%s: record %s%s: field '%s' missing or not [%d] (dimension mismatch)", nb, single ? "" : "id ", id, fb, db);
                goto out;
            }
            if (!single && A[n].label != MMP_NO_LABEL && B[n].label != MMP_NO_LABEL && A[n].label != B[n].label) {
                mmp_errf(err, errlen, "%s: record id %s: label %lld but %s says %lld", na, id, (long long)A[n].label, nb, (long long)B[n].label);
                goto out;
            }
            mmp_tensor_to_f32(ta, xa + (size_t)n * da);
            mmp_tensor_to_f32(tb, xb + (size_t)n * db);
            if (o->l2) {
                mmp_fuse_l2(xa + (size_t)n * da, da);
                mmp_fuse_l2(xb + (size_t)n * db, db);
            }
            n++;
        }
        if (n == 0) break;
        combine(f, n, xa, xb, pj, h);
        for (int i = 0; i < n; i++) {
            mmp_record_clear(&out);
            const mmp_record *rb_ = single ? &A[i] : &B[i];
            if (A[i].id) mmp_record_set_id(&out, A[i].id);
            out.label = A[i].label != MMP_NO_LABEL ? A[i].label : rb_->label;
            if (A[i].text) mmp_record_set_text(&out, A[i].text);
            else if (rb_->text) mmp_record_set_text(&out, rb_->text);
            mmp_record_copy_strings(&out, rb_);
            mmp_record_copy_strings(&out, &A[i]);
            mmp_tensor *t = mmp_record_add(&out, o->outf, o->odt, 1, oshape);
            mmp_f32_to_dtype(h + (size_t)i * D, (size_t)D, o->odt, t->data);
            mmp_writer_write(w, &out);
        }
        nout += (uint64_t)n;
        mmp_progress_count(NULL, "records", nout, 0, t0);
    }
    mmp_progress_done();
    *join_skipped = J ? mmp_join_skipped(J) : 0;
    uint64_t skipped = *join_skipped + mmp_reader_skipped(ra) + (rb ? mmp_reader_skipped(rb) : 0);
    if (skipped) mmp_writer_add_skipped(w, skipped);
    ret = 0;
out:
    mmp_join_free(J);
    for (int i = 0; i < BATCH; i++) {
        mmp_record_clear(&A[i]);
        mmp_record_clear(&B[i]);
    }
    mmp_record_clear(&out);
    free(xa); free(xb); free(pj); free(h);
    return ret;
}

void mmp_fuser_free(mmp_fuser *f) {
    if (f->learned) mmp_fuse_params_free(&f->P);
    free(f->ck_prov[0]);
    free(f->ck_prov[1]);
    free(f->Wa);
    free(f->Wb);
    memset(f, 0, sizeof *f);
}
