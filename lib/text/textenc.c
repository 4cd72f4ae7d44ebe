/* mmp-embed-text's two encoders behind one interface (text/embed.h): a
 * BERT-family sentence encoder (text/bert.h) or a CLIP text tower
 * (tx/model.h) with CLIP's BPE tokenizer (text/bpe.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "text/embed.h"

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static char *dir_of(const char *path) {
    const char *s = strrchr(path, '/');
    if (!s) return mmp_xstrdup(".");
    if (s == path) return mmp_xstrdup("/");
    return mmp_xasprintf("%.*s", (int)(s - path), path);
}

static const char *base_of(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int mmp_text_is_clip(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) return 0;
    char *file;
    if (S_ISDIR(sb.st_mode)) {
        char *p = mmp_xasprintf("%s/open_clip_model.safetensors", path), *q = mmp_xasprintf("%s/open_clip_config.json", path);
        int oc = is_file(p) || is_file(q);
        free(p);
        free(q);
        if (oc) return 1;
        file = mmp_xasprintf("%s/model.safetensors", path);
    } else {
        file = mmp_xstrdup(path);
    }
    mmp_safetensors st;
    char err[256];
    int clip = 0;
    if (mmp_st_open(&st, file, err, sizeof err) == 0) {
        static const char *const names[] = {"text_model.embeddings.token_embedding.weight",
                                            "vision_model.embeddings.patch_embedding.weight",
                                            "token_embedding.weight", "visual.conv1.weight"};
        for (size_t i = 0; i < sizeof names / sizeof *names; i++)
            if (mmp_st_get(&st, names[i])) clip = 1;
        mmp_st_close(&st);
    }
    free(file);
    return clip;
}

/* CLIP's vocabulary: --tokenizer PATH, else vocab.json + merges.txt or
 * bpe_simple_vocab_16e6.txt.gz beside the weights. */
static int load_clip_tokenizer(mmp_text_encoder *e, const char *model_path, const char *tok, char *err,
                               size_t errlen) {
    char *dir = NULL, *load = NULL;
    struct stat sb;
    if (tok) {
        if (stat(tok, &sb) != 0) return mmp_errf(err, errlen, "--tokenizer %s: %s", tok, strerror(errno));
        if (S_ISDIR(sb.st_mode)) dir = mmp_xstrdup(tok);
        else {
            const char *b = base_of(tok);
            e->tok_source = !strcmp(b, "vocab.json") || !strcmp(b, "merges.txt") ? mmp_xstrdup("vocab.json+merges.txt")
                                                                                  : mmp_xstrdup(b);
            load = mmp_xstrdup(tok);
        }
    } else {
        /* a checkpoint of mmp-train-step --head transformer: its backbone's vocabulary */
        dir = e->clip && e->clip->st ? mmp_model_config_dir(&((const mmp_safetensors *)e->clip->st)->meta) : NULL;
        if (!dir) dir = dir_of(e->weights);
    }
    if (!load) {
        char *v = mmp_xasprintf("%s/vocab.json", dir), *m = mmp_xasprintf("%s/merges.txt", dir),
             *g = mmp_xasprintf("%s/bpe_simple_vocab_16e6.txt.gz", dir);
        if (is_file(v) && is_file(m)) {
            load = v, v = NULL;
            e->tok_source = mmp_xstrdup("vocab.json+merges.txt");
        } else if (is_file(g)) {
            load = g, g = NULL;
            e->tok_source = mmp_xstrdup("bpe_simple_vocab_16e6.txt.gz");
        }
        free(v), free(m), free(g);
        if (!load) {
            if (tok)
                mmp_errf(err, errlen, "--tokenizer %s: no vocab.json + merges.txt or bpe_simple_vocab_16e6.txt.gz in this folder",
                         tok);
            else
                mmp_errf(err, errlen,
                         "%s: no CLIP vocabulary beside the weights in %s (HF: vocab.json + merges.txt from the model's "
                         "repository; open_clip: bpe_simple_vocab_16e6.txt.gz from open_clip's package or "
                         "https://github.com/mlfoundations/open_clip/raw/main/src/open_clip/bpe_simple_vocab_16e6.txt.gz); "
                         "put it there or give --tokenizer PATH",
                         model_path, dir);
            free(dir);
            return -1;
        }
    }
    free(dir);
    e->bpe = mmp_bpe_load_clip(load, err, errlen);
    free(load);
    return e->bpe ? 0 : -1;
}

static int load_clip(mmp_text_encoder *e, const char *path, const mmp_text_encoder_opts *o, char *err, size_t errlen) {
    if (o->heads) return mmp_errf(err, errlen, "%s: --heads is for BERT models (a CLIP model's heads come from its config)", path);
    e->clip = mmp_tx_model_load(path, err, errlen);
    if (!e->clip) return -1;
    mmp_tx_model *m = e->clip;
    e->weights = m->path;
    if (!mmp_tx_has_text(m))
        return mmp_errf(err, errlen, "%s: this %s checkpoint has no text tower", m->path, mmp_tx_family_name(m->family));
    e->which = o->pooled ? MMP_TX_OUT_POOLED : MMP_TX_OUT_EMBED;
    e->dim = mmp_tx_text_dim(m, e->which);
    if (e->dim <= 0)
        return mmp_errf(err, errlen, "%s: the text tower has no projection (use --pooled)", m->path);
    if (load_clip_tokenizer(e, path, o->tokenizer, err, errlen)) return -1;
    if (mmp_bpe_vocab_size(e->bpe) > m->text->vocab)
        return mmp_errf(err, errlen, "%s: the tokenizer (%s) has %d tokens but the text tower's token embedding %d",
                        m->path, e->tok_source, mmp_bpe_vocab_size(e->bpe), m->text->vocab);
    e->context = mmp_tx_text_context(m);
    e->max_length = e->context < MMP_CLIP_CONTEXT ? e->context : MMP_CLIP_CONTEXT;
    e->normalize = 0;
    if (mmp_sha256_file(m->path, e->sha256) < 0) return mmp_errf(err, errlen, "%s: cannot read", m->path);
    snprintf(e->arch, sizeof e->arch, "%s-text-L%d-C%d", mmp_tx_family_name(m->family), m->text->enc.layers,
             m->text->C);
    return 0;
}

int mmp_text_encoder_load(mmp_text_encoder *e, const char *path, const mmp_text_encoder_opts *o, char *err,
                          size_t errlen) {
    memset(e, 0, sizeof *e);
    mmp_text_encoder_opts none = {0};
    if (!o) o = &none;
    if (mmp_text_is_clip(path)) {
        if (load_clip(e, path, o, err, errlen)) {
            mmp_text_encoder_free(e);
            return -1;
        }
        return 0;
    }
    if (o->tokenizer || o->pooled)
        return mmp_errf(err, errlen, "%s: %s is for CLIP models (this is a BERT-family model)", path,
                        o->tokenizer ? "--tokenizer" : "--pooled");
    e->bert = mmp_xcalloc(1, sizeof *e->bert);
    if (mmp_text_model_load(e->bert, path, o->heads, err, errlen)) {
        free(e->bert);
        e->bert = NULL;
        return -1;
    }
    const mmp_text_model *tm = e->bert;
    e->dim = tm->bert.cfg.hidden;
    e->context = tm->bert.cfg.max_pos;
    e->max_length = tm->max_length;
    e->normalize = tm->normalize;
    e->weights = tm->bert.path;
    memcpy(e->sha256, tm->bert.sha256, sizeof e->sha256);
    snprintf(e->arch, sizeof e->arch, "%s", tm->arch);
    return 0;
}

void mmp_text_encoder_free(mmp_text_encoder *e) {
    if (e->bert) {
        mmp_text_model_free(e->bert);
        free(e->bert);
    }
    if (e->clip) mmp_tx_model_free(e->clip);
    mmp_bpe_free(e->bpe);
    free(e->tok_source);
    memset(e, 0, sizeof *e);
}

/* x / max(||x||2, 1e-12), as torch F.normalize (and mmp_bert_mean_pool) */
static void l2_normalize(float *o, int H) {
    double n2 = 0;
    for (int j = 0; j < H; j++) n2 += (double)o[j] * o[j];
    double nrm = sqrt(n2);
    float d = (float)(nrm > 1e-12 ? nrm : 1e-12);
    for (int j = 0; j < H; j++) o[j] /= d;
}

int mmp_text_encoder_embed(const mmp_text_encoder *e, const char *const *texts, const size_t *lens, int n,
                           int max_length, int normalize, int utf8, float *out, int *bad, char *err, size_t errlen) {
    if (e->bert) return mmp_text_embed(e->bert, texts, lens, n, max_length, normalize, utf8, out, bad, err, errlen);
    if (max_length <= 0) max_length = e->max_length;
    if (max_length > e->context) max_length = e->context;
    if (n <= 0) return 0;
    int32_t *ids = mmp_xmalloc((size_t)n * (size_t)max_length * sizeof *ids);
    int *sl = mmp_xmalloc((size_t)n * sizeof *sl);
    size_t T = 0;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        int k = mmp_bpe_encode(e->bpe, texts[i], lens[i], max_length, utf8, ids + T, err, errlen);
        if (k < 0) {
            if (bad) *bad = i;
            rc = -1;
        } else {
            sl[i] = k;
            T += (size_t)k;
        }
    }
    if (!rc && mmp_tx_text_embed(e->clip, ids, sl, n, e->which, out, NULL, err, errlen) < 0) {
        if (bad) *bad = 0; /* not expected: lengths and ids are checked at load */
        rc = -1;
    }
    if (!rc && normalize)
        for (int i = 0; i < n; i++) l2_normalize(out + (size_t)i * e->dim, e->dim);
    free(ids);
    free(sl);
    return rc;
}
