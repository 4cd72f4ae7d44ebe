/* train/export.c: a trained head as a plain PyTorch state dict (mmp-export);
 * see train/export.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/export.h"
#include "train/train_internal.h"
#include "train/tx_head.h"

/* the first linear layer of a linear or mlp head: its weight and bias */
static void first_layer(const mmp_head *h, const mmp_param **w, const mmp_param **b) {
    const char *wn = h->kind == MMP_HEAD_LINEAR ? "weight" : "layers.0.weight";
    const char *bn = h->kind == MMP_HEAD_LINEAR ? "bias" : "layers.0.bias";
    *w = *b = NULL;
    for (int i = 0; i < h->np; i++) {
        if (!strcmp(h->params[i].name, wn)) *w = &h->params[i];
        if (!strcmp(h->params[i].name, bn)) *b = &h->params[i];
    }
}

/* a whole CNN trained --from input: torchvision's full state dict (every
 * parameter, running_mean/var, and num_batches_tracked = the train-mode BN
 * steps of this training, 0 with --freeze-bn), loadable with strict=True */
static int export_whole_cnn(const mmp_trainer *tr, mmp_st_writer *w) {
    const mmp_head *h = &tr->head;
    const mmp_cnn_tail *t = h->tail;
    float **merged = mmp_xcalloc((size_t)h->np, sizeof *merged);
    /* --unfreeze lora: each adapted conv merged, W + (alpha/r) B A (PEFT's
     * get_delta_weight: B [O,r] times A [r, Ci*K*K]); the adapters are not written */
    for (int k = 0; k < t->nu; k++) {
        const mmp_tail_unit *u = &t->u[k];
        if (!u->lora) continue;
        const mmp_param *W = &h->params[u->pw], *A = &h->params[u->plA], *B = &h->params[u->plB];
        int64_t r = t->lora_rank, CK = (int64_t)(A->n / (size_t)r);
        float *m = mmp_xmalloc(sizeof(float) * W->n);
        for (int64_t o = 0; o < u->cout; o++)
            for (int64_t e = 0; e < CK; e++) {
                float d = 0;
                for (int64_t q = 0; q < r; q++) d += B->w[o * r + q] * A->w[q * CK + e];
                m[o * CK + e] = W->w[o * CK + e] + d * t->lora_scale;
            }
        merged[u->pw] = m;
    }
    for (int i = 0; i < h->np; i++) {
        if (strstr(h->params[i].name, ".lora_A.") || strstr(h->params[i].name, ".lora_B.")) continue;
        mmp_st_writer_add_f32(w, h->params[i].name, merged[i] ? merged[i] : h->params[i].w, h->params[i].ndim, h->params[i].shape);
    }
    mmp_tail_save_buffers(h->tail, w);
    mmp_tail_save_nbt(h->tail, h->tail->train_bn ? tr->step : 0, w);
    mmp_meta *m = &w->meta;
    mmp_meta_set(m, "format", "pt");
    mmp_meta_set(m, "head", mmp_head_kind_name(h->kind));
    mmp_meta_set(m, "architecture", h->kind == MMP_HEAD_MNV2_TAIL ? "mobilenet_v2" : "resnet");
    char buf[96];
    snprintf(buf, sizeof buf, "%.9g,%.9g,%.9g", tr->cfg.in_mean[0], tr->cfg.in_mean[1], tr->cfg.in_mean[2]);
    mmp_meta_set(m, "input_mean", buf);
    snprintf(buf, sizeof buf, "%.9g,%.9g,%.9g", tr->cfg.in_std[0], tr->cfg.in_std[1], tr->cfg.in_std[2]);
    mmp_meta_set(m, "input_std", buf);
    char *cls = mmp_train_classes_json(tr);
    if (cls) mmp_meta_set(m, "classes", cls);
    free(cls);
    for (int i = 0; i < h->np; i++) free(merged[i]); /* (the writer copied them) */
    free(merged);
    return 0;
}

int mmp_export_state_dict(const mmp_trainer *tr, mmp_st_writer *w, char *err, size_t errlen) {
    const mmp_head *h = &tr->head;
    if (h->tail && tr->cfg.from_input) return export_whole_cnn(tr, w);
    if (h->tx) { /* the model under its own names, LoRA adapters merged (PEFT's merge_and_unload) */
        mmp_txhead_save(h->tx, w, 1);
        mmp_meta_set(&w->meta, "format", "pt");
        char *cls = mmp_train_classes_json(tr);
        if (cls) mmp_meta_set(&w->meta, "classes", cls);
        free(cls);
        return 0;
    }
    if (h->tail) {
        mmp_errf(err, errlen, "the %s head trained on cached activations holds only the blocks it trained: it cannot be exported "
                 "as a whole network (train it --from input, or load it over the backbone with strict=False)", mmp_head_kind_name(h->kind));
        return -1;
    }
    if (h->kind != MMP_HEAD_LINEAR && h->kind != MMP_HEAD_MLP) {
        mmp_errf(err, errlen, "the %s head cannot be exported (mmp-export supports the linear and mlp heads, and CNNs trained --from input)",
                 mmp_head_kind_name(h->kind));
        return -1;
    }
    const mmp_param *pw, *pb;
    first_layer(h, &pw, &pb);
    if (!pw || !pb || pw->ndim != 2 || pw->shape[1] != tr->in_dim || pb->n != (size_t)pw->shape[0]) {
        mmp_errf(err, errlen, "the %s head has no first linear layer of %lld inputs", mmp_head_kind_name(h->kind),
                 (long long)tr->in_dim);
        return -1;
    }
    for (int i = 0; i < h->np; i++) {
        const mmp_param *p = &h->params[i];
        if (!tr->mean || (p != pw && p != pb)) {
            mmp_st_writer_add_f32(w, p->name, p->w, p->ndim, p->shape);
            continue;
        }
        if (p == pb) continue; /* written with the weight, in its own place below */
        const int64_t H = pw->shape[0], D = pw->shape[1];
        float *wf = mmp_xmalloc(sizeof(float) * (size_t)(H * D)), *bf = mmp_xmalloc(sizeof(float) * (size_t)H);
        for (int64_t r = 0; r < H; r++) {
            double s = pb->w[r];
            for (int64_t k = 0; k < D; k++) {
                wf[r * D + k] = pw->w[r * D + k] / tr->std[k];
                s -= (double)wf[r * D + k] * tr->mean[k];
            }
            bf[r] = (float)s;
        }
        mmp_st_writer_add_f32(w, pw->name, wf, pw->ndim, pw->shape);
        mmp_st_writer_add_f32(w, pb->name, bf, pb->ndim, pb->shape);
        free(wf);
        free(bf);
    }
    mmp_meta *m = &w->meta;
    mmp_meta_set(m, "format", "pt");
    mmp_meta_set(m, "head", mmp_head_kind_name(h->kind));
    if (h->kind == MMP_HEAD_MLP) {
        char buf[256] = "";
        for (int i = 0; i < h->nhidden; i++)
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%lld", i ? "," : "", (long long)h->hidden[i]);
        mmp_meta_set(m, "hidden", buf);
        snprintf(buf, sizeof buf, "%.9g", (double)h->dropout);
        mmp_meta_set(m, "dropout", buf);
    }
    char *cls = mmp_train_classes_json(tr);
    if (cls) mmp_meta_set(m, "classes", cls);
    free(cls);
    if (tr->provenance) mmp_meta_set(m, "provenance", tr->provenance);
    return 0;
}

int mmp_export_checkpoint(const char *in, const char *out, char *err, size_t errlen) {
    char e2[1024];
    mmp_safetensors st;
    if (mmp_st_open(&st, in, e2, sizeof e2)) {
        mmp_errf(err, errlen, "%s", e2);
        return -1;
    }
    const char *fmt = mmp_meta_get(&st.meta, "format");
    int ok = fmt && !strcmp(fmt, "mmpipe-head");
    mmp_st_close(&st);
    if (!ok) {
        mmp_errf(err, errlen, "%s: not an mmp-train-step checkpoint (no __metadata__ format=mmpipe-head)", in);
        return -1;
    }
    mmp_trainer tr;
    if (mmp_trainer_load(&tr, in, NULL, e2, sizeof e2)) {
        mmp_errf(err, errlen, "%s", e2);
        return -1;
    }
    mmp_st_writer w;
    mmp_st_writer_init(&w);
    int rc = mmp_export_state_dict(&tr, &w, e2, sizeof e2);
    if (rc) mmp_errf(err, errlen, "%s: %s", in, e2);
    else rc = mmp_st_writer_write(&w, out, err, errlen);
    mmp_st_writer_free(&w);
    mmp_trainer_free(&tr);
    return rc;
}
