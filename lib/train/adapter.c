/* train/adapter.c: the LoRA adapters of a CNN trained --from input
 * --unfreeze lora as a PEFT adapter folder (the tx/peft.c writer), and a
 * trainer from a base network + such a folder (mmp-eval --adapter,
 * mmp-export --merge-lora). See docs/train.md. */
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "train/adapter.h"
#include "train/cnn_tail.h"
#include "train/train_internal.h"
#include "tx/peft.h"

#define PFX "base_model.model."
#define MPFX "mmpipe."

static int is_lora(const mmp_param *p) { return strstr(p->name, ".lora_A.") || strstr(p->name, ".lora_B."); }

int mmp_trainer_write_adapter(const mmp_trainer *tr, const char *base, const char *dir, char *err, size_t errlen) {
    const mmp_head *h = &tr->head;
    const mmp_cnn_tail *t = h->tail;
    if (!t || !tr->cfg.from_input || tr->cfg.unfreeze_kind != MMP_UNFREEZE_LORA || !t->lora_rank)
        return mmp_errf(err, errlen, "not trained with --unfreeze lora (--from input): no adapters to write");
    if (t->train_bn)
        return mmp_errf(err, errlen, "trained with train-mode BatchNorm: its running statistics moved, and a PEFT adapter carries "
                        "no base buffers (train with --freeze-bn, or mmp-export the merged state dict)");
    if (!base || !*base) base = tr->cfg.backbone;
    char sha[65];
    if (mmp_sha256_file(base, sha) < 0)
        return mmp_errf(err, errlen, "%s: cannot read the base network (its SHA-256 goes into the adapter; --model BASE)", base);
    /* target_modules: the adapted convolutions by their exact names, as a regular
     * expression PEFT fullmatches (a list would match by suffix: "conv1" = every conv1) */
    size_t cap = 64, len = 0;
    char *re = mmp_xmalloc(cap), mod[128];
    re[len++] = '(';
    int n = 0;
    for (int k = 0; k < t->nu; k++) {
        if (!t->u[k].lora) continue;
        mmp_tail_unit_module(t, k, mod, sizeof mod);
        size_t need = len + 2 * strlen(mod) + 4;
        if (need > cap) re = mmp_xrealloc(re, cap = need * 2);
        if (n++) re[len++] = '|';
        for (const char *c = mod; *c; c++) {
            if (*c == '.') re[len++] = '\\';
            re[len++] = *c;
        }
    }
    re[len++] = ')';
    re[len] = 0;
    const char *save = t->arch ? "fc" : "classifier";
    mmp_meta extra;
    mmp_meta_init(&extra);
    mmp_meta cm;
    mmp_meta_init(&cm);
    mmp_train_cfg_to_meta(&tr->cfg, &cm);
    char buf[64];
    snprintf(buf, sizeof buf, "%lld", (long long)tr->in_dim);
    mmp_meta_set(&cm, "in_dim", buf);
    snprintf(buf, sizeof buf, "%lld", (long long)tr->ncls);
    mmp_meta_set(&cm, "num_classes", buf);
    char *cls = mmp_train_classes_json(tr);
    if (cls) mmp_meta_set(&cm, "classes", cls);
    free(cls);
    if (tr->provenance) mmp_meta_set(&cm, "provenance", tr->provenance);
    for (int i = 0; i < cm.n; i++) {
        char *k = mmp_xasprintf(MPFX "%s", cm.keys[i]);
        mmp_meta_set(&extra, k, cm.vals[i]);
        free(k);
    }
    mmp_meta_free(&cm);
    mmp_st_writer w;
    mmp_st_writer_init(&w);
    for (int i = 0; i < h->np; i++) {
        const mmp_param *p = &h->params[i];
        if (!is_lora(p) && i < h->np - 2) continue;
        char *nm = mmp_xasprintf(PFX "%s", p->name); /* the classifier: PEFT's saved modules_to_save name */
        mmp_st_writer_add_f32(&w, nm, p->w, p->ndim, p->shape);
        free(nm);
    }
    const char *tg[1] = {re};
    mmp_peft_folder f = {.base_name = base, .base_sha = sha, .r = t->lora_rank, .alpha = tr->cfg.lora_alpha,
                         .dropout = tr->cfg.lora_dropout, .targets = tg, .ntargets = 1, .targets_regex = 1,
                         .save = &save, .nsave = 1, .extra = &extra};
    int rc = mmp_peft_write_folder(dir, &f, &w, err, errlen);
    mmp_st_writer_free(&w);
    mmp_meta_free(&extra);
    free(re);
    return rc;
}

int mmp_trainer_load_adapter(mmp_trainer *tr, const char *base, const char *dir, char *err, size_t errlen) {
    memset(tr, 0, sizeof *tr);
    char e2[1024], sha[65];
    char *stp = mmp_xasprintf("%s/adapter_model.safetensors", dir);
    mmp_safetensors ad, bs;
    int ret = -1, have_bs = 0;
    mmp_meta m;
    mmp_meta_init(&m);
    if (mmp_st_open(&ad, stp, e2, sizeof e2)) {
        mmp_errf(err, errlen, "%s", e2);
        free(stp);
        return -1;
    }
    for (int i = 0; i < ad.meta.n; i++)
        if (!strncmp(ad.meta.keys[i], MPFX, strlen(MPFX))) mmp_meta_set(&m, ad.meta.keys[i] + strlen(MPFX), ad.meta.vals[i]);
    const char *head = mmp_meta_get(&m, "head"), *uf = mmp_meta_get(&m, "unfreeze");
    if (!head || !uf || strcmp(uf, "lora")) {
        mmp_errf(err, errlen, "%s: not the adapter of a CNN trained by mmp-train-step --from input --unfreeze lora "
                 "(no __metadata__ mmpipe.head / mmpipe.unfreeze=lora)", stp);
        goto out;
    }
    const char *rec = mmp_meta_get(&ad.meta, MMP_LORA_SHA_KEY);
    if (mmp_sha256_file(base, sha) < 0) {
        mmp_errf(err, errlen, "%s: cannot read the base network", base);
        goto out;
    }
    if (rec && strcmp(rec, sha)) {
        mmp_errf(err, errlen, "%s: the adapter was made for base weights with sha256 %s, but %s has sha256 %s", stp, rec, base, sha);
        goto out;
    }
    mmp_train_cfg_defaults(&tr->cfg);
    if (mmp_train_cfg_from_meta(&tr->cfg, &m, e2, sizeof e2)) {
        mmp_errf(err, errlen, "%s: %s", stp, e2);
        goto out;
    }
    snprintf(tr->cfg.backbone, sizeof tr->cfg.backbone, "%s", base);
    mmp_train_cfg_resolve(&tr->cfg);
    const char *s = mmp_meta_get(&m, "in_dim"), *c = mmp_meta_get(&m, "num_classes");
    tr->in_dim = s ? strtoll(s, NULL, 10) : 0;
    tr->ncls = c ? strtoll(c, NULL, 10) : 0;
    if (tr->in_dim < 1 || tr->ncls < 1) {
        mmp_errf(err, errlen, "%s: bad or missing metadata mmpipe.in_dim / mmpipe.num_classes", stp);
        goto out;
    }
    if (mmp_st_open(&bs, base, e2, sizeof e2)) {
        mmp_errf(err, errlen, "%s", e2);
        goto out;
    }
    have_bs = 1;
    if (mmp_trainer_setup_head(tr, &bs, 0, e2, sizeof e2)) {
        mmp_errf(err, errlen, "%s + %s: %s", base, dir, e2);
        goto out;
    }
    const mmp_head *h = &tr->head;
    for (int i = 0; i < h->np; i++) {
        mmp_param *p = &h->params[i];
        if (!is_lora(p) && i < h->np - 2) continue;
        char *nm = mmp_xasprintf(PFX "%s", p->name);
        int rc = mmp_st_read_f32(&ad, nm, p->ndim, p->shape, p->w, e2, sizeof e2);
        free(nm);
        if (rc) {
            mmp_errf(err, errlen, "%s: %s", stp, e2);
            goto out;
        }
    }
    int nl = 0; /* every lora tensor of the file is one of the network's */
    for (int e = 0; e < ad.n; e++) nl += strstr(ad.entries[e].name, ".lora_") != NULL;
    int nh = 0;
    for (int i = 0; i < h->np; i++) nh += is_lora(&h->params[i]);
    if (nl != nh) {
        mmp_errf(err, errlen, "%s: %d LoRA tensors, the network adapts %d convolutions (%d tensors)", stp, nl, nh / 2, nh);
        goto out;
    }
    s = mmp_meta_get(&m, "provenance");
    tr->provenance = s ? mmp_xstrdup(s) : NULL;
    s = mmp_meta_get(&m, "classes");
    if (s && mmp_json_strings(s, &tr->nclasses_named, &tr->classes, e2, sizeof e2)) {
        mmp_errf(err, errlen, "%s: __metadata__ mmpipe.classes: %s", stp, e2);
        goto out;
    }
    snprintf(tr->feature, sizeof tr->feature, "%s", tr->cfg.feature);
    snprintf(tr->pair_field, sizeof tr->pair_field, "%s", tr->cfg.pair_field);
    ret = 0;
out:
    if (have_bs) mmp_st_close(&bs);
    mmp_st_close(&ad);
    mmp_meta_free(&m);
    free(stp);
    if (ret) mmp_trainer_free(tr);
    return ret;
}
