/* train/eval.c: mmp-eval's work: a trained head applied to a feature stream,
 * one prediction record per input record. See train/eval.h, docs/train.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/provenance.h"
#include "train/eval.h"
#include "train/tx_head.h"
#include "train/metrics.h"

static int is_float(const mmp_tensor *t) { return t->dtype == MMP_F32 || t->dtype == MMP_F16 || t->dtype == MMP_BF16; }

int mmp_eval_init(mmp_eval *e, mmp_trainer *tr, int want_fused, const char *model, char *err, size_t errlen) {
    memset(e, 0, sizeof *e);
    e->img_chw = -1;
    mmp_header_init(&e->prompt_classes);
    e->tr = tr;
    e->pair = tr->cfg.head == MMP_HEAD_PAIR;
    e->E = tr->head.out_dim;
    e->fuse = MMP_HEAD_IS_FUSE(tr->cfg.head);
    e->F = e->fuse ? tr->head.fuse_dim : 1;
    e->sigmoid = tr->cfg.loss == MMP_LOSS_BCE;
    e->want_fused = want_fused;
    if (want_fused && !e->fuse)
        return mmp_errf(err, errlen, "--fused needs a fusion head (gated, attention); %s is a %s head", model, mmp_head_kind_name(tr->cfg.head));
    return 0;
}

void mmp_eval_attach(mmp_eval *e, const mmp_header *ih) {
    mmp_trainer *tr = e->tr;
    if (e->pair) e->has_text = mmp_header_field(ih, tr->pair_field) != NULL;
    if (e->fuse) e->has_text = 1; /* both inputs are required */
    e->ncn = tr->nclasses_named;
    e->cnames = tr->classes;
    if (!e->ncn && ih->nclasses) { e->ncn = ih->nclasses; e->cnames = ih->classes; }
    if (!e->pair) {
        e->C = tr->ncls;
        if (e->ncn && e->ncn != e->C) e->ncn = 0, e->cnames = NULL;
    }
}

int mmp_eval_read_prompts(mmp_eval *e, mmp_reader *pr, char *err, size_t errlen) {
    mmp_trainer *tr = e->tr;
    const mmp_header *ph = mmp_reader_header(pr);
    const char *pname = mmp_reader_name(pr);
    mmp_record rec;
    mmp_record_init(&rec);
    int64_t cap = 0, n = 0, *lab = NULL;
    float *pe = NULL;
    int rc, ret = -1;
    while ((rc = mmp_reader_next(pr, &rec)) == 1) {
        const mmp_tensor *t = mmp_record_cget(&rec, tr->pair_field);
        if (!t) t = mmp_record_cget(&rec, "embedding");
        if (!t || t->ndim != 1 || t->shape[0] != tr->pair_dim || !is_float(t)) {
            mmp_errf(err, errlen, "%s: record %lld: needs a float vector \"%s\" (or \"embedding\") of %lld values", pname, (long long)n,
                     tr->pair_field, (long long)tr->pair_dim);
            goto out;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            pe = mmp_xrealloc(pe, sizeof(float) * (size_t)(cap * tr->pair_dim));
            lab = mmp_xrealloc(lab, sizeof(int64_t) * (size_t)cap);
        }
        mmp_tensor_to_f32(t, pe + n * tr->pair_dim);
        lab[n] = rec.label;
        n++;
    }
    if (rc < 0) { mmp_errf(err, errlen, "%s", mmp_reader_error(pr)); goto out; }
    if (n == 0) { mmp_errf(err, errlen, "%s: no prompt records", pname); goto out; }
    int labelled = 1;
    int64_t C = 0;
    for (int64_t i = 0; i < n; i++) {
        if (lab[i] < 0) labelled = 0;
        else if (lab[i] + 1 > C) C = lab[i] + 1;
    }
    if (!labelled) C = n;
    if (ph->nclasses > 0) {
        if (labelled && ph->nclasses < C) { mmp_errf(err, errlen, "%s: prompt label out of range", pname); goto out; }
        C = labelled ? ph->nclasses : C;
        mmp_header_set_classes(&e->prompt_classes, ph->nclasses, ph->classes);
    }
    e->C = C;
    e->prompts = mmp_xmalloc(sizeof(float) * (size_t)(C * e->E));
    char why[512];
    if (mmp_trainer_prompts(tr, pe, labelled ? lab : NULL, n, C, e->prompts, why, sizeof why)) {
        mmp_errf(err, errlen, "%s: %s", pname, why);
        goto out;
    }
    e->zeroshot = 1;
    if (e->prompt_classes.nclasses == C) { e->ncn = (int)C; e->cnames = e->prompt_classes.classes; }
    else if (e->ncn != C) { e->ncn = 0; e->cnames = NULL; }
    ret = 0;
out:
    free(pe);
    free(lab);
    mmp_record_clear(&rec);
    return ret;
}

/* bce heads pass the multi-label targets through when the stream has them */
static int pass_labels(const mmp_eval *e, const mmp_header *ih) {
    const mmp_schema_field *lf = e->sigmoid ? mmp_header_field(ih, e->tr->cfg.labels_field) : NULL;
    return lf && lf->ndim == 1 && lf->shape[0] == e->C;
}

void mmp_eval_header(const mmp_eval *e, const mmp_header *ih, const char *model, mmp_header *oh) {
    const mmp_trainer *tr = e->tr;
    mmp_header_copy(oh, ih);
    while (oh->nfields > 0) mmp_header_remove_field(oh, oh->fields[0].name);
    mmp_header_set_classes(oh, e->ncn, e->cnames);
    int64_t shC[1] = {e->C}, shE[1] = {e->E}, sh1[1] = {1}, shF[1] = {e->F};
    if (e->want_fused) mmp_header_add_field(oh, "fused", MMP_F32, 1, shF);
    if (e->pair) {
        mmp_header_add_field(oh, "image_proj", MMP_F32, 1, shE);
        if (e->has_text) mmp_header_add_field(oh, "text_proj", MMP_F32, 1, shE);
    }
    if (pass_labels(e, ih)) mmp_header_add_field(oh, tr->cfg.labels_field, MMP_F32, 1, shC);
    if (!e->pair || e->zeroshot) {
        mmp_header_add_field(oh, "logits", MMP_F32, 1, shC);
        mmp_header_add_field(oh, "probs", MMP_F32, 1, shC);
        mmp_header_add_field(oh, "pred", MMP_I64, 1, sh1);
    }
    mmp_meta_set(&oh->meta, "model", model);
    char sha[65];
    if (mmp_sha256_file(model, sha) == 0) mmp_meta_set(&oh->meta, "model_sha256", sha);
    mmp_meta_set(&oh->meta, "head", mmp_head_kind_name(tr->cfg.head));
    mmp_meta_set(&oh->meta, "loss", mmp_loss_name(tr->cfg.loss));
}

/* one float vector of n finite values from field name of record idx into x */
static int get_vector(const mmp_record *rec, const char *name, int64_t n, float *x, const char *rname, int64_t idx, char *err,
                      size_t errlen) {
    const mmp_tensor *t = mmp_record_cget(rec, name);
    if (!t || t->ndim != 1 || t->shape[0] != n || !is_float(t))
        return mmp_errf(err, errlen, "%s: record %lld: \"%s\" must be a float vector of %lld values", rname, (long long)idx, name, (long long)n);
    mmp_tensor_to_f32(t, x);
    for (int64_t k = 0; k < n; k++)
        if (!isfinite(x[k])) return mmp_errf(err, errlen, "%s: record %lld: \"%s\" has a non-finite value", rname, (long long)idx, name);
    return 0;
}

/* A CNN trained --from input: the record's image (u8 [H,W,3] normalized as
 * in training, or normalized f32/f16 [3,H,W] whose header states the same
 * normalization) -> x[3*H*W], C,H,W order */
static int get_image(mmp_eval *e, const mmp_header *ih, const mmp_record *rec, float *x, const char *rname, int64_t idx, char *err,
                     size_t errlen) {
    const mmp_trainer *tr = e->tr;
    const mmp_tensor *t = mmp_record_cget(rec, tr->feature);
    if (e->img_chw < 0) {
        memcpy(e->img_mean, tr->cfg.in_mean, sizeof e->img_mean);
        memcpy(e->img_std, tr->cfg.in_std, sizeof e->img_std);
        e->img_chw = t->dtype != MMP_U8;
        if (e->img_chw) {
            const char *lay = mmp_meta_get(&ih->meta, "image.layout");
            if (lay && strcmp(lay, "chw"))
                return mmp_errf(err, errlen, "%s: \"%s\" is a float image but image.layout is \"%s\" (want chw)", rname, tr->feature, lay);
            char msg[1024];
            int nrc = mmp_check_normalization(ih, e->img_mean, e->img_std, e->allow_mixed, rname, tr->cfg.backbone, msg, sizeof msg);
            if (nrc < 0) return mmp_errf(err, errlen, "%s", msg);
            if (nrc > 0) fprintf(stderr, "mmp-eval: warning: %s\n", msg);
        }
    }
    char e2[512];
    if (mmp_image_to_chw(t, e->img_chw, tr->cfg.in_h, tr->cfg.in_w, e->img_mean, e->img_std, x, e2, sizeof e2)) {
        if (strstr(e2, "earlier images"))
            snprintf(e2, sizeof e2, "is not %lldx%lld, the size the model was trained on (mmp-decode --size)", (long long)tr->cfg.in_h,
                     (long long)tr->cfg.in_w);
        return mmp_errf(err, errlen, "%s: record %lld: \"%s\" %s", rname, (long long)idx, tr->feature, e2);
    }
    return 0;
}

/* the prediction record of input ir (row k of the batch's outputs) */
static int write_prediction(const mmp_eval *e, mmp_writer *w, const mmp_record *ir, int plabels, const float *fz, const float *za,
                            const float *zb, const float *z, mmp_eval_summary *s, const char *rname, int64_t idx, char *err,
                            size_t errlen) {
    const mmp_trainer *tr = e->tr;
    int64_t shC[1] = {e->C}, shE[1] = {e->E}, sh1[1] = {1}, shF[1] = {e->F};
    mmp_record o;
    mmp_record_init(&o);
    if (ir->id) mmp_record_set_id(&o, ir->id);
    if (ir->text) mmp_record_set_text(&o, ir->text);
    mmp_record_copy_strings(&o, ir);
    if (e->ncn > 0 && ir->label >= e->ncn) { /* the output header has the (prompt) classes */
        mmp_record_clear(&o);
        return mmp_errf(err, errlen, "%s: record %lld: label %lld but %s %d classes", rname, (long long)idx,
                        (long long)ir->label, e->zeroshot ? "the prompts have" : "the output has", e->ncn);
    }
    o.label = ir->label;
    if (plabels) {
        const mmp_tensor *tl = mmp_record_cget(ir, tr->cfg.labels_field);
        if (!tl || mmp_numel(tl->ndim, tl->shape) != e->C) {
            mmp_record_clear(&o);
            return mmp_errf(err, errlen, "%s: record %lld: \"%s\" must be a float vector of %lld values", rname, (long long)idx,
                            tr->cfg.labels_field, (long long)e->C);
        }
        mmp_tensor_to_f32(tl, mmp_record_add(&o, tr->cfg.labels_field, MMP_F32, 1, shC)->data);
    }
    if (e->want_fused) memcpy(mmp_record_add(&o, "fused", MMP_F32, 1, shF)->data, fz, sizeof(float) * (size_t)e->F);
    if (e->pair) {
        memcpy(mmp_record_add(&o, "image_proj", MMP_F32, 1, shE)->data, za, sizeof(float) * (size_t)e->E);
        if (e->has_text) memcpy(mmp_record_add(&o, "text_proj", MMP_F32, 1, shE)->data, zb, sizeof(float) * (size_t)e->E);
    }
    if (!e->pair || e->zeroshot) {
        memcpy(mmp_record_add(&o, "logits", MMP_F32, 1, shC)->data, z, sizeof(float) * (size_t)e->C);
        float *p = mmp_record_add(&o, "probs", MMP_F32, 1, shC)->data;
        if (e->sigmoid) mmp_sigmoid(z, p, (size_t)e->C);
        else mmp_softmax(z, p, 1, e->C);
        int64_t best = 0;
        for (int64_t c = 1; c < e->C; c++)
            if (z[c] > z[best]) best = c;
        *(int64_t *)mmp_record_add(&o, "pred", MMP_I64, 1, sh1)->data = best;
        if (ir->label >= 0) {
            s->labelled++;
            s->correct += best == ir->label;
        }
    }
    mmp_writer_write(w, &o);
    mmp_record_clear(&o);
    return 0;
}

int mmp_eval_run(mmp_eval *e, mmp_reader *r, mmp_writer *w, int64_t B, const int *ks, int nk, mmp_eval_summary *s, char *err,
                 size_t errlen) {
    mmp_trainer *tr = e->tr;
    const char *rname = mmp_reader_name(r);
    const int plabels = pass_labels(e, mmp_reader_header(r));
    const int64_t E = e->E, F = e->F, C = e->C;
    memset(s, 0, sizeof *s);
    s->zeroshot = e->zeroshot;
    s->nk = nk;
    memcpy(s->ks, ks, sizeof(int) * (size_t)nk);
    mmp_record *recs = mmp_xcalloc((size_t)B, sizeof(mmp_record));
    for (int64_t k = 0; k < B; k++) mmp_record_init(&recs[k]);
    float *x = mmp_xmalloc(sizeof(float) * (size_t)(B * tr->in_dim));
    float *x2 = e->has_text ? mmp_xmalloc(sizeof(float) * (size_t)(B * tr->pair_dim)) : NULL;
    float *lg = mmp_xmalloc(sizeof(float) * (size_t)(B * (C > 0 ? C : 1)));
    float *fz = e->want_fused ? mmp_xmalloc(sizeof(float) * (size_t)(B * F)) : NULL;
    float *za = mmp_xmalloc(sizeof(float) * (size_t)(B * E)), *zb = mmp_xmalloc(sizeof(float) * (size_t)(B * E));
    float *all_a = NULL, *all_b = NULL;
    int64_t n = 0, cap_all = 0;
    double t0 = mmp_now();
    int rc = 1, ret = -1;
    while (rc == 1) {
        int64_t m = 0;
        while (m < B && (rc = mmp_reader_next(r, &recs[m])) == 1) {
            int64_t idx = n + m;
            if (tr->head.tx && mmp_txhead_is_text(tr->head.tx)) { /* text records: the model's tokenizer */
                char e2[512];
                if (!recs[m].text) {
                    mmp_errf(err, errlen, "%s: record %lld: no text (the model reads text records)", rname, (long long)idx);
                    goto out;
                }
                if (mmp_txhead_encode_text(tr->head.tx, recs[m].text, x + m * tr->in_dim, e2, sizeof e2)) {
                    mmp_errf(err, errlen, "%s: record %lld: %s", rname, (long long)idx, e2);
                    goto out;
                }
                m++;
                continue;
            }
            if (!mmp_record_cget(&recs[m], tr->feature)) {
                mmp_errf(err, errlen, "%s: record %lld: no tensor \"%s\"", rname, (long long)idx, tr->feature);
                goto out;
            }
            if ((tr->head.tail && tr->cfg.from_input) || tr->head.tx) {
                if (get_image(e, mmp_reader_header(r), &recs[m], x + m * tr->in_dim, rname, idx, err, errlen)) goto out;
            } else if (get_vector(&recs[m], tr->feature, tr->in_dim, x + m * tr->in_dim, rname, idx, err, errlen)) goto out;
            if (e->has_text) {
                if (e->fuse && !mmp_record_cget(&recs[m], tr->pair_field)) {
                    mmp_errf(err, errlen, "%s: record %lld: no tensor \"%s\" (the %s head's second input)", rname, (long long)idx,
                             tr->pair_field, mmp_head_kind_name(tr->cfg.head));
                    goto out;
                }
                if (get_vector(&recs[m], tr->pair_field, tr->pair_dim, x2 + m * tr->pair_dim, rname, idx, err, errlen)) goto out;
            }
            m++;
        }
        if (rc < 0) {
            mmp_errf(err, errlen, "%s", mmp_reader_error(r));
            goto out;
        }
        if (m == 0) break;
        if (e->fuse) mmp_trainer_infer_fuse(tr, x, x2, m, fz, lg);
        else mmp_trainer_infer(tr, x, e->has_text ? x2 : NULL, m, e->zeroshot ? e->prompts : NULL, C, lg, za, zb);
        if (e->pair) {
            if (n + m > cap_all) {
                cap_all = (n + m) * 2;
                all_a = mmp_xrealloc(all_a, sizeof(float) * (size_t)(cap_all * E));
                if (e->has_text) all_b = mmp_xrealloc(all_b, sizeof(float) * (size_t)(cap_all * E));
            }
            memcpy(all_a + n * E, za, sizeof(float) * (size_t)(m * E));
            if (e->has_text) memcpy(all_b + n * E, zb, sizeof(float) * (size_t)(m * E));
        }
        for (int64_t k = 0; k < m; k++)
            if (write_prediction(e, w, &recs[k], plabels, fz ? fz + k * F : NULL, za + k * E, zb + k * E, lg + k * C, s, rname, n + k,
                                 err, errlen))
                goto out;
        n += m;
        mmp_progress_count(NULL, "records", (uint64_t)n, 0, t0);
    }
    mmp_progress_done();
    mmp_writer_add_skipped(w, mmp_reader_skipped(r));
    s->n = n;
    s->retrieval = e->pair && e->has_text && n > 0;
    if (s->retrieval) mmp_retrieval_recall(all_a, all_b, n, E, ks, nk, s->a2b, s->b2a);
    ret = 0;
out:
    for (int64_t k = 0; k < B; k++) mmp_record_clear(&recs[k]);
    free(recs); free(x); free(x2); free(fz); free(lg); free(za); free(zb); free(all_a); free(all_b);
    return ret;
}

void mmp_eval_summary_print(FILE *f, const char *prog, const mmp_eval_summary *s) {
    fprintf(f, "%s: %lld records", prog, (long long)s->n);
    if (s->labelled)
        fprintf(f, "; %s accuracy %.4f (%lld/%lld)", s->zeroshot ? "zero-shot" : "top-1", (double)s->correct / (double)s->labelled,
                (long long)s->correct, (long long)s->labelled);
    if (s->retrieval) {
        fprintf(f, "; image->text");
        for (int k = 0; k < s->nk; k++) fprintf(f, " R@%d %.4f", s->ks[k], s->a2b[k]);
        fprintf(f, "; text->image");
        for (int k = 0; k < s->nk; k++) fprintf(f, " R@%d %.4f", s->ks[k], s->b2a[k]);
    }
    fputc('\n', f);
}

int mmp_eval_summary_json(const char *path, const mmp_eval_summary *s, char *err, size_t errlen) {
    FILE *jf = strcmp(path, "-") ? fopen(path, "w") : stdout;
    if (!jf) return mmp_errf(err, errlen, "%s: cannot open for writing", path);
    fprintf(jf, "{\"records\": %lld, \"labelled\": %lld", (long long)s->n, (long long)s->labelled);
    if (s->labelled)
        fprintf(jf, ", \"accuracy\": %.17g, \"zero_shot\": %s", (double)s->correct / (double)s->labelled, s->zeroshot ? "true" : "false");
    if (s->retrieval) {
        const char *dn[2] = {"image_to_text", "text_to_image"};
        const double *dv[2] = {s->a2b, s->b2a};
        fprintf(jf, ", \"retrieval\": {\"n\": %lld", (long long)s->n);
        for (int d = 0; d < 2; d++) {
            fprintf(jf, ", \"%s\": {", dn[d]);
            for (int k = 0; k < s->nk; k++) fprintf(jf, "%s\"recall@%d\": %.17g", k ? ", " : "", s->ks[k], dv[d][k]);
            fputs("}", jf);
        }
        fputs("}", jf);
    }
    fputs("}\n", jf);
    if (jf != stdout) fclose(jf);
    return 0;
}

void mmp_eval_free(mmp_eval *e) {
    free(e->prompts);
    mmp_header_free(&e->prompt_classes);
    e->prompts = NULL;
}
