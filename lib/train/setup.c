/* train/setup.c: a trainer from a configuration: the head (linear, MLP,
 * pair, fusion, CNN tails) with its inputs resolved from the stream header,
 * weights initialized from the seed; freeing it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/caption_train.h"
#include "train/cnn_tail.h"
#include "train/resnet_tail.h"
#include "train/train.h"
#include "train/train_internal.h"
#include "train/tx_head.h"

/* the BatchNorm mode of a tail's training forwards: train mode (batch
 * statistics, running statistics moved with PyTorch's momentum 0.1) for
 * --from input unless --freeze-bn; frozen otherwise */
static void tail_bn_mode(mmp_head *h, const mmp_train_cfg *c) {
    mmp_cnn_tail *t = h->tail;
    t->train_bn = c->from_input && c->freeze_bn == 0;
    t->bn_momentum = 0.1f;
    h->batch_bytes = mmp_tail_batch_bytes; /* the memory report (mmp_trainer_memory) */
    h->batch_model = t;
}

/* --unfreeze: frozen parts, LoRA adapters (their values come from the
 * checkpoint when there is one); the head sees the tail's new parameter list */
static int tail_unfreeze(mmp_trainer *tr, const mmp_safetensors *src, int from_ckpt, char *err, size_t errlen) {
    const mmp_train_cfg *c = &tr->cfg;
    if (from_ckpt && c->unfreeze_kind != MMP_UNFREEZE_LORA)
        for (int e = 0; e < src->n; e++)
            if (strstr(src->entries[e].name, ".lora_A.")) {
                mmp_errf(err, errlen, "the checkpoint holds LoRA adapters (%s): keep --unfreeze lora, or train from its merged "
                         "state dict (mmp-export)", src->entries[e].name);
                mmp_head_free(&tr->head);
                return -1;
            }
    mmp_tail_unfreeze_opts o = {.kind = c->unfreeze_kind, .n = c->unfreeze_n, .rank = c->lora_rank, .alpha = c->lora_alpha,
                                .dropout = c->lora_dropout, .targets = c->lora_targets};
    char e2[512];
    if (mmp_tail_unfreeze(tr->head.tail, &o, c->seed, e2, sizeof e2)) {
        mmp_errf(err, errlen, "--head %s: %s", mmp_head_kind_name(c->head), e2);
        mmp_head_free(&tr->head);
        return -1;
    }
    tr->head.params = tr->head.tail->params;
    tr->head.np = tr->head.tail->np;
    return 0;
}

static int tail_input_mismatch(mmp_trainer *tr, char *err, size_t errlen) {
    const mmp_cnn_tail *t = tr->head.tail;
    mmp_errf(err, errlen, "--head %s --from input: the network takes [%lld,%lld,%lld] = %lld values, the images have %lld",
             mmp_head_kind_name(tr->cfg.head), (long long)t->C0, (long long)t->H0, (long long)t->W0, (long long)tr->head.in_dim,
             (long long)tr->in_dim);
    mmp_head_free(&tr->head);
    return -1;
}

/* src: where the mnv2-tail head's weights come from (the backbone or the checkpoint) */
int mmp_trainer_setup_head(mmp_trainer *tr, const mmp_safetensors *src, int from_ckpt, char *err, size_t errlen) {
    mmp_train_cfg *c = &tr->cfg;
    if (mmp_train_cfg_check(c, err, errlen)) return -1;
    if (c->head == MMP_HEAD_CAPTION) {
        char e2[1024];
        if (from_ckpt && c->unfreeze_kind != MMP_UNFREEZE_LORA && mmp_st_get(src, "gpt.base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"))
            return mmp_errf(err, errlen, "the checkpoint holds LoRA adapters: keep --unfreeze lora");
        mmp_captioner *m = mmp_caption_new(c, err, errlen);
        if (!m) return -1;
        memset(&tr->head, 0, sizeof tr->head);
        tr->head.kind = MMP_HEAD_CAPTION;
        tr->head.capt = m;
        tr->head.params = mmp_caption_params(m, &tr->head.np);
        tr->head.in_dim = mmp_caption_row_dim(m);
        if (from_ckpt && mmp_caption_load_weights(m, src, e2, sizeof e2)) {
            mmp_head_free(&tr->head);
            return mmp_errf(err, errlen, "%s", e2);
        }
        if (tr->head.in_dim != tr->in_dim) {
            mmp_errf(err, errlen, "--head caption: the rows have %lld values, the model takes %lld (the feature and --max-length)",
                     (long long)tr->in_dim, (long long)tr->head.in_dim);
            mmp_head_free(&tr->head);
            return -1;
        }
        return 0;
    }
    if (c->head == MMP_HEAD_TRANSFORMER) {
        char e2[1024];
        if (c->modality < 0) return mmp_errf(err, errlen, "--head transformer: the records' modality is unknown (internal)");
        if (from_ckpt && c->unfreeze_kind != MMP_UNFREEZE_LORA)
            for (int e = 0; e < src->n; e++)
                if (strstr(src->entries[e].name, ".lora_A.")) /* (as the CNN tails) */
                    return mmp_errf(err, errlen, "the checkpoint holds LoRA adapters (%s): keep --unfreeze lora, or train from its "
                                    "merged state dict (mmp-export)", src->entries[e].name);
        mmp_tx_lora_opts lo;
        mmp_tx_lora_opts_default(&lo);
        lo.r = c->lora_rank, lo.alpha = c->lora_alpha, lo.dropout = c->lora_dropout, lo.seed = c->seed;
        lo.targets = c->lora_targets[0] ? c->lora_targets : NULL;
        mmp_txhead *t = mmp_txhead_new(c->backbone, c->modality, tr->ncls, c->unfreeze_kind, c->unfreeze_n, c->max_length,
                                       c->unfreeze_kind == MMP_UNFREEZE_LORA ? &lo : NULL, err, errlen);
        if (!t) return -1;
        mmp_txhead_set_recompute(t, c->recompute);
        memset(&tr->head, 0, sizeof tr->head);
        tr->head.kind = MMP_HEAD_TRANSFORMER;
        tr->head.batch_bytes = mmp_txhead_batch_bytes; /* the memory report (mmp_trainer_memory) */
        tr->head.batch_model = t;
        tr->head.tx = t;
        tr->head.params = mmp_txhead_params(t, &tr->head.np);
        tr->head.out_dim = tr->ncls;
        if (!c->modality) {
            if (mmp_txhead_check_image_size(t, c->in_h, c->in_w, e2, sizeof e2)) {
                mmp_head_free(&tr->head);
                return mmp_errf(err, errlen, "--head transformer: %s", e2);
            }
            mmp_txhead_set_image_size(t, c->in_h, c->in_w);
        }
        tr->head.in_dim = mmp_txhead_in_dim(t);
        if (from_ckpt && mmp_txhead_load_weights(t, src, e2, sizeof e2)) {
            mmp_head_free(&tr->head);
            return mmp_errf(err, errlen, "%s", e2);
        }
        if (tr->head.in_dim != tr->in_dim) {
            mmp_errf(err, errlen, "--head transformer: the records give %lld values, the model takes %lld (%s)", (long long)tr->in_dim,
                     (long long)tr->head.in_dim, c->modality ? "--max-length" : "the image size");
            mmp_head_free(&tr->head);
            return -1;
        }
        return 0;
    }
    if (c->head == MMP_HEAD_RESNET_TAIL) {
        if (tr->ncls < 1) { mmp_errf(err, errlen, "no classes (labels missing?)"); return -1; }
        if ((c->rn_layer < 1 && !c->from_input) || c->in_h < 1 || !src) { mmp_errf(err, errlen, "resnet-tail: the input layer and size are unknown"); return -1; }
        char e2[512];
        if (mmp_head_init_resnet_tail(&tr->head, src, c->from_input ? 0 : c->rn_layer, c->from_input ? -1 : c->rn_block, c->in_h, c->in_w, tr->ncls, from_ckpt, e2, sizeof e2)) {
            mmp_errf(err, errlen, "--head resnet-tail: %s", e2);
            return -1;
        }
        tr->head.tail->dropout = (float)c->dropout;
        tr->head.dropout = (float)c->dropout;
        tail_bn_mode(&tr->head, c);
        if (tail_unfreeze(tr, src, from_ckpt, err, errlen)) return -1;
        if (tr->head.in_dim != tr->in_dim && c->from_input)
            return tail_input_mismatch(tr, err, errlen);
        if (tr->head.in_dim != tr->in_dim) {
            const mmp_cnn_tail *t = tr->head.tail;
            char lay[32];
            if (c->rn_block >= 0) snprintf(lay, sizeof lay, "layer%d.%d", c->rn_layer, c->rn_block);
            else snprintf(lay, sizeof lay, "layer%d", c->rn_layer);
            mmp_errf(err, errlen, "--head resnet-tail: the output of %s is [%lld,%lld,%lld] = %lld values, the features have %lld "
                     "(embed with mmp-embed --layer %s:flat; --in-hw HxW for its spatial size)",
                     lay, (long long)t->C0, (long long)t->H0, (long long)t->W0, (long long)tr->head.in_dim, (long long)tr->in_dim, lay);
            mmp_head_free(&tr->head);
            return -1;
        }
        return 0;
    }
    if (c->head == MMP_HEAD_MNV2_TAIL) {
        if (tr->ncls < 1) { mmp_errf(err, errlen, "no classes (labels missing?)"); return -1; }
        if ((c->from < 0 && !c->from_input) || c->in_h < 1 || !src) { mmp_errf(err, errlen, "mnv2-tail: the input block and size are unknown"); return -1; }
        char e2[512];
        if (mmp_head_init_tail(&tr->head, src, c->from_input ? 0 : c->from + 1, c->in_h, c->in_w, tr->ncls, (float)c->dropout, from_ckpt, e2, sizeof e2)) {
            mmp_errf(err, errlen, "--head mnv2-tail: %s", e2);
            return -1;
        }
        tail_bn_mode(&tr->head, c);
        if (tail_unfreeze(tr, src, from_ckpt, err, errlen)) return -1;
        if (tr->head.in_dim != tr->in_dim && c->from_input)
            return tail_input_mismatch(tr, err, errlen);
        if (tr->head.in_dim != tr->in_dim) {
            const mmp_cnn_tail *t = tr->head.tail;
            mmp_errf(err, errlen, "--head mnv2-tail: the input of features.%d is [%lld,%lld,%lld] = %lld values, the features have %lld "
                     "(embed with mmp-embed --layer features.%d:flat; --in-hw HxW for the block's spatial size)",
                     c->from + 1, (long long)t->C0, (long long)t->H0, (long long)t->W0, (long long)tr->head.in_dim,
                     (long long)tr->in_dim, c->from);
            mmp_head_free(&tr->head);
            return -1;
        }
        return 0;
    }
    if (MMP_HEAD_IS_FUSE(c->head)) {
        if (tr->pair_dim <= 0) { mmp_errf(err, errlen, "the %s head needs a second input (--pair-field)", mmp_head_kind_name(c->head)); return -1; }
        if (tr->ncls < 1) { mmp_errf(err, errlen, "no classes (labels missing?)"); return -1; }
        char e2[256];
        if (mmp_head_init_fuse(&tr->head, c->head, tr->in_dim, tr->pair_dim, c->fuse_dim, c->heads, tr->ncls, e2, sizeof e2)) {
            mmp_errf(err, errlen, "--head %s: %s", mmp_head_kind_name(c->head), e2);
            return -1;
        }
    } else if (c->head == MMP_HEAD_PAIR) {
        if (tr->pair_dim <= 0) { mmp_errf(err, errlen, "the pair head needs a second embedding (--pair-field)"); return -1; }
        mmp_head_init(&tr->head, MMP_HEAD_PAIR, tr->in_dim, c->proj_dim, tr->pair_dim, 0, NULL, 0,
                      c->loss == MMP_LOSS_CONTRASTIVE);
    } else {
        if (tr->ncls < 1) { mmp_errf(err, errlen, "no classes (labels missing?)"); return -1; }
        mmp_head_init(&tr->head, c->head, tr->in_dim, tr->ncls, 0, c->nhidden, c->hidden,
                      (float)c->dropout, 0);
    }
    return 0;
}

/* mnv2-tail: the input block (features.K) and the tail's input size from the
 * stream header (embed.layer = "features.K:flat", embed.size = "HxW" of the
 * images) unless given; the channel count comes from the backbone. */
static int resolve_mnv2_input(mmp_train_cfg *c, const mmp_dataset *ds, const char *layer, char *err, size_t errlen) {
    if (layer) {
        int k;
        char rest[32] = "";
        if (sscanf(layer, "features.%d%31s", &k, rest) < 1 || strcmp(rest, ":flat") || k < 0 || k > 17)
            return mmp_errf(err, errlen, "%s: embed.layer is \"%s\"; the mnv2-tail head needs flattened block activations "
                            "(mmp-embed --layer features.K:flat, K < 18)", ds->name, layer);
        if (c->from >= 0 && c->from != k)
            return mmp_errf(err, errlen, "%s: the stream holds features.%d activations (embed.layer), --from says features.%d", ds->name, k, c->from);
        c->from = k;
    }
    if (c->from < 0)
        return mmp_errf(err, errlen, "%s: no embed.layer in the header: give --from features.K (the block whose output the stream holds)", ds->name);
    if (c->in_h <= 0) {
        const char *sz = mmp_meta_get(&ds->hdr.meta, "embed.size");
        long long h, w;
        if (sz && sscanf(sz, "%lldx%lld", &h, &w) == 2 && h > 0 && w > 0) {
            c->in_h = mmp_mnv2_spatial(h, c->from);
            c->in_w = mmp_mnv2_spatial(w, c->from);
        } else {
            /* square activations: D = C*s*s with C from the backbone */
            mmp_safetensors bb;
            char e2[512];
            if (mmp_st_open(&bb, c->backbone, e2, sizeof e2)) { mmp_errf(err, errlen, "--backbone: %s", e2); return -1; }
            int64_t C0 = mmp_tail_first_cin(&bb, c->from + 1);
            mmp_st_close(&bb);
            int64_t s = C0 > 0 ? (int64_t)llround(sqrt((double)ds->dim / (double)C0)) : 0;
            if (C0 <= 0 || s < 1 || C0 * s * s != ds->dim)
                return mmp_errf(err, errlen, "%s: embed.size unknown (\"%s\") and %lld values are not [%lld,s,s]: give --in-hw HxW", ds->name,
                                sz ? sz : "", (long long)ds->dim, (long long)C0);
            c->in_h = c->in_w = s;
        }
    }
    return 0;
}

/* resnet-tail: the input layer (layerL[.i]) and size from the stream header
 * (embed.layer = "layer3:flat", embed.size = "HxW") unless given. */
static int resolve_resnet_input(mmp_train_cfg *c, const mmp_dataset *ds, const char *layer, char *err, size_t errlen) {
    if (layer) {
        int L, i;
        if (mmp_resnet_parse_layer(layer, &L, &i) || !strstr(layer, ":flat") || L > 3 + (i >= 0))
            return mmp_errf(err, errlen, "%s: embed.layer is \"%s\"; the resnet-tail head needs flattened stage activations "
                            "(mmp-embed --layer layer3:flat, layer1..layer3 or a block layerL.i)", ds->name, layer);
        if (c->rn_layer > 0 && (c->rn_layer != L || c->rn_block != i))
            return mmp_errf(err, errlen, "%s: the stream holds %s activations (embed.layer), --from says layer%d%s", ds->name, layer, c->rn_layer,
                            c->rn_block >= 0 ? ".i" : "");
        c->rn_layer = L;
        c->rn_block = i;
    }
    if (c->rn_layer < 1)
        return mmp_errf(err, errlen, "%s: no embed.layer in the header: give --from layerL (the stage whose output the stream holds)", ds->name);
    if (c->in_h <= 0) {
        const char *sz = mmp_meta_get(&ds->hdr.meta, "embed.size");
        long long h, w;
        if (!sz || sscanf(sz, "%lldx%lld", &h, &w) != 2 || h < 1 || w < 1)
            return mmp_errf(err, errlen, "%s: embed.size unknown (\"%s\"): give --in-hw HxW (the activations' spatial size)", ds->name, sz ? sz : "");
        c->in_h = mmp_resnet_spatial(h, c->rn_layer);
        c->in_w = mmp_resnet_spatial(w, c->rn_layer);
    }
    return 0;
}

/* what a tail head checks first: a --backbone is given and the stream's
 * features come from its architecture (embed.arch equal to arch, or starting
 * with it when prefix); then its input layer and size (resolve) from the
 * stream's embed.layer */
typedef struct {
    const char *head, *backbone, *arch;
    int prefix;
    const char *acts;
    int (*resolve)(mmp_train_cfg *c, const mmp_dataset *ds, const char *layer, char *err, size_t errlen);
} tail_kind;
static const tail_kind tail_kinds[2] = {
    {"mnv2-tail", "the pretrained MobileNetV2", "mobilenet_v2", 0, "MobileNetV2 block", resolve_mnv2_input},
    {"resnet-tail", "the pretrained torchvision ResNet", "resnet", 1, "ResNet stage", resolve_resnet_input},
};

static int resolve_tail_input(mmp_train_cfg *c, const mmp_dataset *ds, char *err, size_t errlen) {
    const tail_kind *t = &tail_kinds[c->head == MMP_HEAD_MNV2_TAIL ? 0 : 1];
    if (!c->backbone[0])
        return mmp_errf(err, errlen, "--head %s needs --backbone FILE.safetensors (%s)", t->head, t->backbone);
    if (c->from_input) { /* images: the size is the stream's (mmp_dataset_load_images) */
        if (ds->img_h < 1) return mmp_errf(err, errlen, "%s: --from input needs image records", ds->name);
        if (c->in_h > 0 && (c->in_h != ds->img_h || c->in_w != ds->img_w))
            return mmp_errf(err, errlen, "%s: the images are %lldx%lld, --in-hw says %lldx%lld", ds->name, (long long)ds->img_h,
                            (long long)ds->img_w, (long long)c->in_h, (long long)c->in_w);
        c->in_h = ds->img_h;
        c->in_w = ds->img_w;
        return 0;
    }
    const char *arch = mmp_meta_get(&ds->hdr.meta, "embed.arch");
    if (arch && (t->prefix ? strncmp(arch, t->arch, strlen(t->arch)) : strcmp(arch, t->arch)))
        return mmp_errf(err, errlen, "%s: features of %s (embed.arch); the %s head needs %s activations", ds->name, arch,
                        t->head, t->acts);
    return t->resolve(c, ds, mmp_meta_get(&ds->hdr.meta, "embed.layer"), err, errlen);
}

int mmp_trainer_init(mmp_trainer *tr, const mmp_train_cfg *cfg, const mmp_dataset *ds, char *err,
                     size_t errlen) {
    memset(tr, 0, sizeof *tr);
    tr->cfg = *cfg;
    mmp_train_cfg *c = &tr->cfg;
    mmp_train_cfg_resolve(c);
    tr->in_dim = ds->dim;
    tr->pair_dim = ds->dim2;
    tr->ncls = ds->ncls;
    tr->best_metric = -INFINITY;
    if (MMP_HEAD_IS_TAIL(c->head)) {
        if (resolve_tail_input(c, ds, err, errlen)) return -1;
        mmp_safetensors bb;
        char e2[512];
        if (mmp_st_open(&bb, c->backbone, e2, sizeof e2)) { mmp_errf(err, errlen, "--backbone: %s", e2); return -1; }
        int rc = mmp_trainer_setup_head(tr, &bb, 0, err, errlen);
        if (rc == 0) { /* the tail's input channels/size are now known: record them */
            c->in_h = tr->head.tail->H0;
            c->in_w = tr->head.tail->W0;
        }
        mmp_st_close(&bb);
        if (rc) return -1;
    } else if (c->head == MMP_HEAD_TRANSFORMER) {
        if (!c->modality) {
            if (ds->img_h < 1) return mmp_errf(err, errlen, "%s: --head transformer on images needs image records", ds->name);
            c->in_h = ds->img_h;
            c->in_w = ds->img_w;
        }
        if (mmp_trainer_setup_head(tr, NULL, 0, err, errlen)) return -1;
    } else if (mmp_trainer_setup_head(tr, NULL, 0, err, errlen)) return -1;
    if (c->loss == MMP_LOSS_CE)
        for (int64_t i = 0; i < ds->n; i++)
            if (ds->y[i] >= tr->ncls) {
                mmp_errf(err, errlen, "%s: record %lld: label %lld out of range", ds->name, (long long)i, (long long)ds->y[i]);
                return -1;
            }
    /* class weights */
    if (c->class_weights[0]) {
        if (c->loss != MMP_LOSS_CE) { mmp_errf(err, errlen, "--class-weights needs --loss ce"); return -1; }
        tr->class_w = mmp_xcalloc((size_t)tr->ncls, sizeof(float));
        if (!strcmp(c->class_weights, "balanced")) {
            /* sklearn compute_class_weight("balanced"): n / (C * count) */
            int64_t *cnt = mmp_xcalloc((size_t)tr->ncls, sizeof(int64_t));
            for (int64_t i = 0; i < ds->n; i++) cnt[ds->y[i]]++;
            for (int64_t k = 0; k < tr->ncls; k++)
                tr->class_w[k] = cnt[k] ? (float)((double)ds->n / ((double)tr->ncls * (double)cnt[k])) : 1.0f;
            free(cnt);
            /* freeze the numbers so a resumed run uses the same weights */
            char buf[1024] = "";
            for (int64_t k = 0; k < tr->ncls; k++)
                snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%.9g", k ? "," : "", tr->class_w[k]);
            if (strlen(buf) >= sizeof c->class_weights - 1) { mmp_errf(err, errlen, "too many classes for balanced weights"); return -1; }
            snprintf(c->class_weights, sizeof c->class_weights, "%s", buf);
        } else {
            const char *p = c->class_weights;
            int64_t k = 0;
            while (*p) {
                char *e;
                double w = strtod(p, &e);
                if (e == p || w < 0 || k >= tr->ncls) break;
                tr->class_w[k++] = (float)w;
                p = e;
                if (*p == ',') p++;
            }
            if (k != tr->ncls || *p) {
                mmp_errf(err, errlen, "--class-weights: expected %lld non-negative numbers (one per class) or 'balanced'", (long long)tr->ncls);
                return -1;
            }
        }
    }
    if (c->sched.total <= 0) /* optimizer steps: --grad-accum micro-batches each */
        c->sched.total = (int64_t)c->epochs * (((ds->n + c->batch - 1) / c->batch + c->grad_accum - 1) / c->grad_accum);
    if (c->standardize) {
        tr->mean = mmp_xmalloc(sizeof(float) * (size_t)tr->in_dim);
        tr->std = mmp_xmalloc(sizeof(float) * (size_t)tr->in_dim);
        if (!ds->x) { mmp_errf(err, errlen, "--standardize needs feature vectors, not images"); return -1; }
        mmp_standardize_fit(ds->x, ds->n, ds->dim, tr->mean, tr->std);
    }
    mmp_head_init_weights(&tr->head, c->seed);
    const char *prov = mmp_dataset_provenance(ds);
    tr->provenance = prov ? mmp_xstrdup(prov) : NULL;
    const char *tprov = mmp_meta_get(&ds->hdr.meta, "text_provenance");
    tr->text_provenance = tprov && (tr->cfg.head == MMP_HEAD_PAIR || MMP_HEAD_IS_FUSE(tr->cfg.head)) ? mmp_xstrdup(tprov) : NULL;
    if (ds->hdr.nclasses > 0) {
        tr->nclasses_named = ds->hdr.nclasses;
        tr->classes = mmp_xcalloc((size_t)ds->hdr.nclasses, sizeof(char *));
        for (int k = 0; k < ds->hdr.nclasses; k++) tr->classes[k] = mmp_xstrdup(ds->hdr.classes[k]);
    }
    snprintf(tr->feature, sizeof tr->feature, "%s", c->feature);
    snprintf(tr->pair_field, sizeof tr->pair_field, "%s", c->pair_field);
    return 0;
}

void mmp_trainer_free(mmp_trainer *tr) {
    mmp_head_free(&tr->head);
    free(tr->mean); free(tr->std); free(tr->class_w); free(tr->provenance); free(tr->text_provenance);
    for (int k = 0; k < tr->nclasses_named; k++) free(tr->classes[k]);
    free(tr->classes);
    free(tr->bx); free(tr->bx2); free(tr->bt); free(tr->out); free(tr->dout);
    free(tr->za); free(tr->zb); free(tr->dza); free(tr->dzb); free(tr->by); free(tr->gacc);
    for (int k = 0; k < 3; k++) free(tr->ti[k]);
    memset(tr, 0, sizeof *tr);
}
