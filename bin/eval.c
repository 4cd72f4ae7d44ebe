/* mmp-eval: apply a trained head to feature records; write prediction
 * records (classification heads) or projections + retrieval metrics and
 * zero-shot predictions (pair heads). See docs/train.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mmp.h"
#include "nn/provenance.h"
#include "train/metrics.h"
#include "train/train.h"

static const char usage[] =
    "usage: mmp-eval --model HEAD.safetensors [options] [FEATURES.mmp]   (default: stdin)\n"
    "Applies a head trained by mmp-train-step; writes a prediction stream to stdout (-o).\n"
    "\n"
    "classification heads (ce/bce): every record keeps its id and label and gets\n"
    "  \"logits\" f32 [C], \"probs\" f32 [C] (softmax; sigmoid for bce), \"pred\" i64 [1] (argmax);\n"
    "  bce heads also pass the multi-label targets (\"labels\") through.\n"
    "fusion heads (gated, attention) read both inputs of every record (the training\n"
    "  --feature and --pair-field, raw) and write logits/probs/pred as above; --fused also\n"
    "  writes the fused vector \"fused\" f32 [F] (what mmp-fuse --checkpoint MODEL computes).\n"
    "pair heads (contrastive/triplet): every record gets \"image_proj\" f32 [E] and, when the\n"
    "  stream has the pair field, \"text_proj\" f32 [E] (L2-normalized projections);\n"
    "  retrieval recall@K image->text and text->image over all records goes to stderr\n"
    "  (and --json). With --prompts, zero-shot classification: \"logits\" = exp(logit_scale)\n"
    "  * cosine(image, class prompt), \"probs\", \"pred\" as above.\n"
    "\n";

typedef struct {
    mmp_trainer tr;
    int pair, has_text, zeroshot, fuse;
    int64_t C, E;
    float *prompts; /* [C,E] normalized prompt projections (zero-shot) */
} evalctx;

static void softmax_or_sigmoid(const float *z, float *p, int64_t C, int sigmoid) {
    if (sigmoid) mmp_sigmoid(z, p, (size_t)C);
    else mmp_softmax(z, p, 1, C);
}

int main(int argc, char **argv) {
    mmp_cli_init("mmp-eval");
    const char *model = NULL, *outp = "-", *prompts = NULL, *json = NULL;
    int allow_mixed = 0, want_fused = 0, level = 0, ks[8] = {1, 5, 10}, nk = 3;
    int64_t B = 1024;
    mmp_option opts[] = {
        MMP_O_TEXT("options:"),
        MMP_O_STRING("model", 0, &model, "FILE", "checkpoint from mmp-train-step (required)"),
        MMP_O_OUTPUT(&outp, "output stream (default stdout)"),
        MMP_O_STRING("prompts", 0, &prompts, "FILE",
                     "text embeddings of the class prompts (pair field, else \"embedding\"):\n"
                     "one record per class in class order, or labelled records\n"
                     "(several prompts per class are averaged, CLIP-style)"),
        MMP_O_FLAG("fused", 0, &want_fused, "fusion heads: also write \"fused\" f32 [F] (the fused vector)"),
        MMP_O_STRING("json", 0, &json, "FILE", "summary (counts, accuracy when labelled, retrieval) as JSON ('-' = stdout)"),
        MMP_O_INT_LIST("k", 0, ks, &nk, 8, "K[,K...]", "recall cut-offs (1,5,10)"),
        MMP_O_INT64("batch-size", 0, &B, 1, 1 << 20, "N", "records per forward pass (1024)"),
        MMP_O_FLAG("allow-mixed", 0, &allow_mixed, "accept features of another provenance than the training features"),
        MMP_O_LEVEL(&level, "zstd level of the output (3)"),
        MMP_O_COMMON,
        MMP_O_END,
    };
    const char *in = mmp_cli_parse_input(argc, argv, opts, usage);
    if (!model) mmp_die("--model FILE is required (see --help)");
    mmp_train_init_blas();
    char err[1024];
    evalctx ec;
    memset(&ec, 0, sizeof ec);
    mmp_trainer *tr = &ec.tr;
    if (mmp_trainer_load(tr, model, NULL, err, sizeof err)) mmp_die("%s", err);
    ec.pair = tr->cfg.head == MMP_HEAD_PAIR;
    ec.E = tr->head.out_dim;
    ec.fuse = MMP_HEAD_IS_FUSE(tr->cfg.head);
    if (want_fused && !ec.fuse) mmp_die("--fused needs a fusion head (gated, attention); %s is a %s head", model, mmp_head_kind_name(tr->cfg.head));
    int64_t F = ec.fuse ? tr->head.fuse_dim : 1;
    int sigmoid = tr->cfg.loss == MMP_LOSS_BCE;

    mmp_reader *r = mmp_reader_open(in, err, sizeof err);
    if (!r) mmp_die("%s", err);
    const mmp_header *ih = mmp_reader_header(r);
    const char *rname = mmp_reader_name(r);
    mmp_cli_check(mmp_check_provenance(ih, tr->provenance, allow_mixed, rname, model, err, sizeof err), err);
    mmp_cli_check(mmp_trainer_check_header(tr, ih, rname, err, sizeof err), err);
    if (ec.pair) ec.has_text = mmp_header_field(ih, tr->pair_field) != NULL;
    if (ec.fuse) ec.has_text = 1; /* both inputs are required */
    if (ec.has_text) mmp_cli_check(mmp_check_text_provenance(ih, tr->text_provenance, allow_mixed, rname, model, err, sizeof err), err);

    /* class names: model's, else the stream's */
    int ncn = tr->nclasses_named;
    char **cnames = tr->classes;
    if (!ncn && ih->nclasses) { ncn = ih->nclasses; cnames = ih->classes; }
    if (!ec.pair) mmp_cli_check(mmp_check_classes(ih, tr->nclasses_named, tr->classes, rname, model, err, sizeof err), err);
    if (!ec.pair) {
        ec.C = tr->ncls;
        if (ncn && ncn != ec.C) ncn = 0, cnames = NULL;
    }
    /* zero-shot prompts */
    mmp_header ph_classes;
    mmp_header_init(&ph_classes);
    if (prompts) {
        if (!ec.pair) mmp_die("--prompts needs a pair (contrastive/triplet) head; %s is a %s head", model, mmp_head_kind_name(tr->cfg.head));
        mmp_reader *pr = mmp_reader_open(prompts, err, sizeof err);
        if (!pr) mmp_die("%s", err);
        const mmp_header *ph = mmp_reader_header(pr);
        mmp_cli_check(mmp_check_text_provenance(ph, tr->text_provenance, allow_mixed, mmp_reader_name(pr), model, err, sizeof err), err);
        mmp_record rec;
        mmp_record_init(&rec);
        int64_t cap = 0, n = 0, *lab = NULL;
        float *pe = NULL;
        int rc;
        while ((rc = mmp_reader_next(pr, &rec)) == 1) {
            const mmp_tensor *t = mmp_record_cget(&rec, tr->pair_field);
            if (!t) t = mmp_record_cget(&rec, "embedding");
            if (!t || t->ndim != 1 || t->shape[0] != tr->pair_dim || !(t->dtype == MMP_F32 || t->dtype == MMP_F16 || t->dtype == MMP_BF16))
                mmp_die("%s: record %lld: needs a float vector \"%s\" (or \"embedding\") of %lld values", mmp_reader_name(pr),
                        (long long)n, tr->pair_field, (long long)tr->pair_dim);
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                pe = mmp_xrealloc(pe, sizeof(float) * (size_t)(cap * tr->pair_dim));
                lab = mmp_xrealloc(lab, sizeof(int64_t) * (size_t)cap);
            }
            mmp_tensor_to_f32(t, pe + n * tr->pair_dim);
            lab[n] = rec.label;
            n++;
        }
        if (rc < 0) mmp_die("%s", mmp_reader_error(pr));
        if (n == 0) mmp_die("%s: no prompt records", mmp_reader_name(pr));
        int labelled = 1;
        int64_t C = 0;
        for (int64_t i = 0; i < n; i++) {
            if (lab[i] < 0) labelled = 0;
            else if (lab[i] + 1 > C) C = lab[i] + 1;
        }
        if (!labelled) C = n;
        if (ph->nclasses > 0) {
            if (labelled && ph->nclasses < C) mmp_die("%s: prompt label out of range", mmp_reader_name(pr));
            C = labelled ? ph->nclasses : C;
            mmp_header_set_classes(&ph_classes, ph->nclasses, ph->classes);
        }
        ec.C = C;
        ec.prompts = mmp_xmalloc(sizeof(float) * (size_t)(C * ec.E));
        if (mmp_trainer_prompts(tr, pe, labelled ? lab : NULL, n, C, ec.prompts, err, sizeof err))
            mmp_die("%s: %s", mmp_reader_name(pr), err);
        ec.zeroshot = 1;
        if (ph_classes.nclasses == C) { ncn = (int)C; cnames = ph_classes.classes; }
        else if (ncn != C) { ncn = 0; cnames = NULL; }
        free(pe); free(lab);
        mmp_record_clear(&rec);
        mmp_reader_close(pr);
    }

    /* output header */
    mmp_header oh;
    mmp_header_copy(&oh, ih);
    while (oh.nfields > 0) mmp_header_remove_field(&oh, oh.fields[0].name);
    mmp_header_set_classes(&oh, ncn, cnames);
    int64_t shC[1] = {ec.C}, shE[1] = {ec.E}, sh1[1] = {1}, shF[1] = {F};
    if (want_fused) mmp_header_add_field(&oh, "fused", MMP_F32, 1, shF);
    if (ec.pair) {
        mmp_header_add_field(&oh, "image_proj", MMP_F32, 1, shE);
        if (ec.has_text) mmp_header_add_field(&oh, "text_proj", MMP_F32, 1, shE);
    }
    /* multi-label targets pass through (bce heads) */
    const mmp_schema_field *lf = sigmoid ? mmp_header_field(ih, tr->cfg.labels_field) : NULL;
    int pass_labels = lf && lf->ndim == 1 && lf->shape[0] == ec.C;
    if (pass_labels) mmp_header_add_field(&oh, tr->cfg.labels_field, MMP_F32, 1, shC);
    if (!ec.pair || ec.zeroshot) {
        mmp_header_add_field(&oh, "logits", MMP_F32, 1, shC);
        mmp_header_add_field(&oh, "probs", MMP_F32, 1, shC);
        mmp_header_add_field(&oh, "pred", MMP_I64, 1, sh1);
    }
    mmp_meta_set(&oh.meta, "model", model);
    char sha[65];
    if (mmp_sha256_file(model, sha) == 0) mmp_meta_set(&oh.meta, "model_sha256", sha);
    mmp_meta_set(&oh.meta, "head", mmp_head_kind_name(tr->cfg.head));
    mmp_meta_set(&oh.meta, "loss", mmp_loss_name(tr->cfg.loss));
    mmp_header_stamp(&oh, argc, argv);
    mmp_writer *w = mmp_writer_open(outp, &oh, level);

    /* batches */
    mmp_record *recs = mmp_xcalloc((size_t)B, sizeof(mmp_record));
    for (int64_t k = 0; k < B; k++) mmp_record_init(&recs[k]);
    float *x = mmp_xmalloc(sizeof(float) * (size_t)(B * tr->in_dim));
    float *x2 = ec.has_text ? mmp_xmalloc(sizeof(float) * (size_t)(B * tr->pair_dim)) : NULL;
    float *lg = mmp_xmalloc(sizeof(float) * (size_t)(B * (ec.C > 0 ? ec.C : 1)));
    float *fz = want_fused ? mmp_xmalloc(sizeof(float) * (size_t)(B * F)) : NULL;
    float *za = mmp_xmalloc(sizeof(float) * (size_t)(B * ec.E)), *zb = mmp_xmalloc(sizeof(float) * (size_t)(B * ec.E));
    float *all_a = NULL, *all_b = NULL;
    int64_t n = 0, labelled = 0, correct = 0, cap_all = 0;
    int rc = 1;
    while (rc == 1) {
        int64_t m = 0;
        while (m < B && (rc = mmp_reader_next(r, &recs[m])) == 1) {
            const mmp_tensor *t = mmp_record_cget(&recs[m], tr->feature);
            int64_t idx = n + m;
            if (!t) mmp_die("%s: record %lld: no tensor \"%s\"", rname, (long long)idx, tr->feature);
            if (t->ndim != 1 || t->shape[0] != tr->in_dim || !(t->dtype == MMP_F32 || t->dtype == MMP_F16 || t->dtype == MMP_BF16))
                mmp_die("%s: record %lld: \"%s\" must be a float vector of %lld values", rname, (long long)idx, tr->feature, (long long)tr->in_dim);
            mmp_tensor_to_f32(t, x + m * tr->in_dim);
            for (int64_t k = 0; k < tr->in_dim; k++)
                if (!isfinite(x[m * tr->in_dim + k])) mmp_die("%s: record %lld: \"%s\" has a non-finite value", rname, (long long)idx, tr->feature);
            if (ec.has_text) {
                const mmp_tensor *t2 = mmp_record_cget(&recs[m], tr->pair_field);
                if (!t2 && ec.fuse) mmp_die("%s: record %lld: no tensor \"%s\" (the %s head's second input)", rname, (long long)idx, tr->pair_field, mmp_head_kind_name(tr->cfg.head));
                if (!t2 || t2->ndim != 1 || t2->shape[0] != tr->pair_dim || !(t2->dtype == MMP_F32 || t2->dtype == MMP_F16 || t2->dtype == MMP_BF16))
                    mmp_die("%s: record %lld: \"%s\" must be a float vector of %lld values", rname, (long long)idx, tr->pair_field, (long long)tr->pair_dim);
                mmp_tensor_to_f32(t2, x2 + m * tr->pair_dim);
                for (int64_t k = 0; k < tr->pair_dim; k++)
                    if (!isfinite(x2[m * tr->pair_dim + k])) mmp_die("%s: record %lld: \"%s\" has a non-finite value", rname, (long long)idx, tr->pair_field);
            }
            m++;
        }
        if (rc < 0) mmp_die("%s", mmp_reader_error(r));
        if (m == 0) break;
        if (ec.fuse) mmp_trainer_infer_fuse(tr, x, x2, m, fz, lg);
        else mmp_trainer_infer(tr, x, ec.has_text ? x2 : NULL, m, ec.zeroshot ? ec.prompts : NULL, ec.C, lg, za, zb);
        if (ec.pair) {
            if (n + m > cap_all) {
                cap_all = (n + m) * 2;
                all_a = mmp_xrealloc(all_a, sizeof(float) * (size_t)(cap_all * ec.E));
                if (ec.has_text) all_b = mmp_xrealloc(all_b, sizeof(float) * (size_t)(cap_all * ec.E));
            }
            memcpy(all_a + n * ec.E, za, sizeof(float) * (size_t)(m * ec.E));
            if (ec.has_text) memcpy(all_b + n * ec.E, zb, sizeof(float) * (size_t)(m * ec.E));
        }
        mmp_record o;
        mmp_record_init(&o);
        for (int64_t k = 0; k < m; k++) {
            mmp_record *ir = &recs[k];
            if (ir->id) mmp_record_set_id(&o, ir->id);
            if (ir->text) mmp_record_set_text(&o, ir->text);
            o.label = ir->label;
            if (pass_labels) {
                const mmp_tensor *tl = mmp_record_cget(ir, tr->cfg.labels_field);
                if (!tl || mmp_numel(tl->ndim, tl->shape) != ec.C)
                    mmp_die("%s: record %lld: \"%s\" must be a float vector of %lld values", rname, (long long)(n + k),
                            tr->cfg.labels_field, (long long)ec.C);
                mmp_tensor_to_f32(tl, mmp_record_add(&o, tr->cfg.labels_field, MMP_F32, 1, shC)->data);
            }
            if (want_fused) memcpy(mmp_record_add(&o, "fused", MMP_F32, 1, shF)->data, fz + k * F, sizeof(float) * (size_t)F);
            if (ec.pair) {
                memcpy(mmp_record_add(&o, "image_proj", MMP_F32, 1, shE)->data, za + k * ec.E, sizeof(float) * (size_t)ec.E);
                if (ec.has_text) memcpy(mmp_record_add(&o, "text_proj", MMP_F32, 1, shE)->data, zb + k * ec.E, sizeof(float) * (size_t)ec.E);
            }
            if (!ec.pair || ec.zeroshot) {
                const float *z = lg + k * ec.C;
                memcpy(mmp_record_add(&o, "logits", MMP_F32, 1, shC)->data, z, sizeof(float) * (size_t)ec.C);
                softmax_or_sigmoid(z, mmp_record_add(&o, "probs", MMP_F32, 1, shC)->data, ec.C, sigmoid);
                int64_t best = 0;
                for (int64_t c = 1; c < ec.C; c++)
                    if (z[c] > z[best]) best = c;
                *(int64_t *)mmp_record_add(&o, "pred", MMP_I64, 1, sh1)->data = best;
                if (ir->label >= 0) {
                    labelled++;
                    correct += best == ir->label;
                }
            }
            mmp_writer_write(w, &o);
            mmp_record_clear(&o);
        }
        n += m;
        mmp_progress("%lld records", (long long)n);
    }
    mmp_progress_done();
    mmp_writer_add_skipped(w, mmp_reader_skipped(r));
    mmp_writer_close(w);
    mmp_reader_close(r);

    /* summary */
    double a2b[8] = {0}, b2a[8] = {0};
    int retr = ec.pair && ec.has_text && n > 0;
    if (retr) mmp_retrieval_recall(all_a, all_b, n, ec.E, ks, nk, a2b, b2a);
    fprintf(stderr, "mmp-eval: %lld records", (long long)n);
    if (labelled) fprintf(stderr, "; %s accuracy %.4f (%lld/%lld)", ec.zeroshot ? "zero-shot" : "top-1", (double)correct / (double)labelled,
                          (long long)correct, (long long)labelled);
    if (retr) {
        fprintf(stderr, "; image->text");
        for (int k = 0; k < nk; k++) fprintf(stderr, " R@%d %.4f", ks[k], a2b[k]);
        fprintf(stderr, "; text->image");
        for (int k = 0; k < nk; k++) fprintf(stderr, " R@%d %.4f", ks[k], b2a[k]);
    }
    fputc('\n', stderr);
    if (json) {
        FILE *jf = strcmp(json, "-") ? fopen(json, "w") : stdout;
        if (!jf) mmp_die("%s: cannot open for writing", json);
        fprintf(jf, "{\"records\": %lld, \"labelled\": %lld", (long long)n, (long long)labelled);
        if (labelled) fprintf(jf, ", \"accuracy\": %.17g, \"zero_shot\": %s", (double)correct / (double)labelled, ec.zeroshot ? "true" : "false");
        if (retr) {
            const char *dn[2] = {"image_to_text", "text_to_image"};
            const double *dv[2] = {a2b, b2a};
            fprintf(jf, ", \"retrieval\": {\"n\": %lld", (long long)n);
            for (int d = 0; d < 2; d++) {
                fprintf(jf, ", \"%s\": {", dn[d]);
                for (int k = 0; k < nk; k++) fprintf(jf, "%s\"recall@%d\": %.17g", k ? ", " : "", ks[k], dv[d][k]);
                fputs("}", jf);
            }
            fputs("}", jf);
        }
        fputs("}\n", jf);
        if (jf != stdout) fclose(jf);
    }
    for (int64_t k = 0; k < B; k++) mmp_record_clear(&recs[k]);
    free(recs); free(x); free(x2); free(fz); free(lg); free(za); free(zb); free(all_a); free(all_b); free(ec.prompts);
    mmp_header_free(&oh);
    mmp_header_free(&ph_classes);
    mmp_trainer_free(tr);
    return 0;
}
