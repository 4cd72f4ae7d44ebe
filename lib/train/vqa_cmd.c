/* train/vqa_cmd.c: the VQA data sets, answer vocabulary, training loop,
 * checkpoints and evaluation (train/vqa_cmd.h). */
#include "train/vqa_cmd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/vqaeval.h"
#include "json.h"
#include "mmp.h"
#include "nn/provenance.h"
#include "rng.h"
#include "text/bert.h"
#include "train/vqa.h"
#include "tx/lora_train.h"
#include "tx/train.h"
#include "tx/tx.h"

/* ------------------------------------------------------------------ */
/* the text tower                                                      */
/* ------------------------------------------------------------------ */

typedef struct {
    mmp_text_model tm;
    int max_length, H, threads;
    /* --text-unfreeze lora|all: the tower trains with the fusion model */
    int mode;               /* 0 frozen (head), 1 lora, 2 all */
    mmp_tx_params P;        /* lora: the adapters only; all: every weight */
    mmp_tx_lora_set *lora;
    int frozen;             /* lora: the blocks below the lowest adapter (inference mode) */
    mmp_param *v;           /* P's parameters under their checkpoint names (TEXT_PFX + P's) */
    int nv;
} qtower;

/* The text tower's trained tensors in a checkpoint: this prefix + the
 * tower's names (lora: PEFT's, base_model.model.encoder.layer.0.attention.self.query.lora_A.weight;
 * all: BertModel's, encoder.layer.0.attention.self.query.weight) */
#define TEXT_PFX "text_tower."

static int qtower_load(qtower *q, const char *path, int max_length, int threads, char *err, size_t errlen) {
    memset(q, 0, sizeof *q);
    if (!path || !*path)
        return mmp_errf(err, errlen, "--head vqa needs --backbone MODEL: the text tower of the questions (a BERT-family folder)");
    if (mmp_text_model_load(&q->tm, path, 0, err, errlen)) return -1;
    q->max_length = max_length > 0 ? max_length : q->tm.max_length;
    if (q->max_length > q->tm.bert.cfg.max_pos) q->max_length = q->tm.bert.cfg.max_pos;
    q->H = q->tm.bert.cfg.hidden;
    q->threads = threads;
    if (q->tm.bert.tx) ((mmp_tx_encoder *)q->tm.bert.tx)->threads = threads;
    return 0;
}

/* --text-unfreeze lora|all: adapters (lora_A from c->seed, lora_B zeros, as
 * PEFT) or trainable copies of the weights, and their views. 0 or -1 (err). */
static int qtower_trainable(qtower *q, const mmp_train_cfg *c, char *err, size_t errlen) {
    char e2[1024];
    q->mode = c->text_unfreeze;
    if (!q->mode) return 0;
    if (q->mode == 2) {
        if (mmp_bert_make_trainable(&q->tm.bert, &q->P, e2, sizeof e2)) return mmp_errf(err, errlen, "--text-unfreeze all: %s", e2);
    } else {
        mmp_tx_lora_opts o;
        mmp_tx_lora_opts_default(&o);
        o.r = c->lora_rank, o.alpha = c->lora_alpha, o.dropout = c->lora_dropout, o.seed = c->seed;
        o.targets = c->lora_targets[0] ? c->lora_targets : MMP_BERT_LORA_DEFAULT_TARGETS;
        if (!(q->lora = mmp_bert_lora_add(&q->tm.bert, &o, &q->P, e2, sizeof e2)))
            return mmp_errf(err, errlen, "--text-unfreeze lora: %s", e2);
        q->frozen = q->tm.bert.cfg.layers;
        for (int i = 0, l; mmp_tx_lora_site(q->lora, i, &l); i++)
            if (l < q->frozen) q->frozen = l;
    }
    mmp_bert_set_threads(&q->tm.bert, q->threads);
    q->v = mmp_xcalloc((size_t)q->P.n + 1, sizeof *q->v);
    for (int i = 0; i < q->P.n; i++) {
        const mmp_tx_param *p = &q->P.p[i];
        mmp_param *v = &q->v[q->nv++];
        if (strlen(TEXT_PFX) + strlen(p->name) >= sizeof v->name)
            return mmp_errf(err, errlen, "text tower parameter '%s': the name is longer than the optimizer's %zu characters", p->name,
                            sizeof v->name - 1 - strlen(TEXT_PFX));
        snprintf(v->name, sizeof v->name, "%s%s", TEXT_PFX, p->name);
        v->ndim = p->ndim, v->n = p->n;
        for (int d = 0; d < p->ndim; d++) v->shape[d] = p->shape[d];
        v->w = p->w, v->g = p->g, v->decay = 1;
    }
    return 0;
}

/* The tower's trained tensors (and with_optim: their optimizer state) from the checkpoint path. */
static int qtower_read(qtower *q, const char *path, int with_optim, const mmp_optim *opt, char *err, size_t errlen) {
    if (!q->nv) return 0;
    mmp_safetensors st;
    char e2[1024];
    if (mmp_st_open(&st, path, err, errlen)) return -1;
    int rc = 0;
    /* --init from a checkpoint of a frozen tower (no text_unfreeze key: an earlier mmpipe's): fresh ones */
    if (!mmp_st_get(&st, q->v[0].name) && !mmp_meta_get(&st.meta, "text_unfreeze")) goto out;
    for (int i = 0; i < q->nv && !rc; i++)
        if (mmp_st_read_f32(&st, q->v[i].name, q->v[i].ndim, q->v[i].shape, q->v[i].w, e2, sizeof e2))
            rc = mmp_errf(err, errlen, "%s: the text tower's %s: %s", path, q->mode == 1 ? "adapters" : "weights", e2);
    if (!rc && with_optim && mmp_train_optim_read(q->v, q->nv, opt, &st, err, errlen)) rc = -1;
out:
    mmp_st_close(&st);
    return rc;
}

static void qtower_free(qtower *q) {
    if (q->v) {
        for (int i = 0; i < q->nv; i++) free(q->v[i].s1), free(q->v[i].s2);
        free(q->v);
    }
    if (q->P.p) mmp_tx_params_free(&q->P);
    mmp_tx_lora_set_free(q->lora); /* after P, before the model */
    mmp_text_model_free(&q->tm);
    memset(q, 0, sizeof *q);
}

/* n texts -> their tokens' last hidden states: *out [sum lens, H] (out NULL:
 * not computed), lens[n], *ids_out (NULL: not kept) their token ids. 0 or -1 (err: text i). */
static int qtower_run(const qtower *q, char *const *texts, int n, float **out, int *lens, int32_t **ids_out, char *err,
                      size_t errlen) {
    int32_t *ids = mmp_xmalloc(sizeof(int32_t) * (size_t)(n ? n : 1) * q->max_length);
    size_t T = 0;
    for (int i = 0; i < n; i++) {
        int k = mmp_wp_encode(q->tm.tok, texts[i], strlen(texts[i]), q->max_length, MMP_UTF8_REPLACE, ids + T, err, errlen);
        if (k < 0) {
            free(ids);
            return -1;
        }
        lens[i] = k;
        T += (size_t)k;
    }
    if (!out) {
        *ids_out = ids;
        return 0;
    }
    *out = mmp_xmalloc(sizeof(float) * (T ? T : 1) * q->H);
    /* batches of 64 questions: each sequence's rows do not depend on its company (tx/tx.h) */
    size_t off = 0;
    for (int s = 0; s < n; s += 64) {
        int k = n - s < 64 ? n - s : 64;
        size_t t = 0;
        for (int i = 0; i < k; i++) t += (size_t)lens[s + i];
        mmp_bert_forward(&q->tm.bert, ids + off, lens + s, k, *out + off * q->H);
        off += t;
    }
    if (ids_out) *ids_out = ids;
    else free(ids);
    return 0;
}

/* ------------------------------------------------------------------ */
/* data sets                                                           */
/* ------------------------------------------------------------------ */

typedef struct {
    int64_t n;      /* records kept */
    int Ci, Cq;
    int *kvlen;     /* [n] */
    int64_t *kvoff; /* [n] row offsets into xi */
    float *xi;
    int nq;         /* distinct questions */
    int *qlen;      /* [nq] */
    int64_t *qoff;  /* [nq] */
    float *xq;      /* [sum qlen, Cq] (the tower frozen) */
    int32_t *qids;  /* the questions' token ids (the tower trains: NULL xq) */
    const qtower *q; /* the tower that runs on qids */
    int *qidx;      /* [n] the record's question */
    char **id, **qtype;
    int *nans;
    char ***ans;
    int64_t *rec;   /* [n] the record number in the stream (1-based) */
    int64_t skip_noimg, skip_noq, skip_noans, read;
    mmp_header hdr;
    char name[256];
} vqa_set;

static void set_free(vqa_set *d) {
    for (int64_t i = 0; i < d->n; i++) {
        free(d->id[i]);
        free(d->qtype[i]);
        for (int k = 0; k < d->nans[i]; k++) free(d->ans[i][k]);
        free(d->ans[i]);
    }
    free(d->kvlen), free(d->kvoff), free(d->xi), free(d->qlen), free(d->qoff), free(d->xq), free(d->qids), free(d->qidx);
    free(d->id), free(d->qtype), free(d->nans), free(d->ans), free(d->rec);
    mmp_header_free(&d->hdr);
    memset(d, 0, sizeof *d);
}

static char **g_texts; /* for the question sort */
static int cmp_text(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    int c = strcmp(g_texts[i], g_texts[j]);
    return c ? c : (i > j) - (i < j);
}

/* Reads the records of path: image tokens of field, question, answers, qtype.
 * need_answers: records without answers are skipped (counted). Ci: 0 = from
 * the data, else required. 0 or -1 (err). */
static int set_load(vqa_set *d, const char *path, const char *field, const qtower *q, int need_answers, int Ci,
                    char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    mmp_reader *r = mmp_reader_open(path, err, errlen);
    if (!r) return -1;
    snprintf(d->name, sizeof d->name, "%s", mmp_reader_name(r));
    mmp_header_copy(&d->hdr, mmp_reader_header(r));
    int64_t cap = 0, xcap = 0, xn = 0;
    char **texts = NULL;
    mmp_record rec;
    mmp_record_init(&rec);
    int rc, res = 0;
    int64_t recno = 0;
    d->Ci = Ci;
    while ((rc = mmp_reader_next(r, &rec)) == 1) {
        recno++;
        const mmp_tensor *t = mmp_record_cget(&rec, field);
        const mmp_strlist *as = mmp_record_strings(&rec, "answers");
        if (!t || (t->ndim == 2 && t->shape[0] == 0)) {
            d->skip_noimg++;
        } else if (t->ndim != 2 || (t->dtype != MMP_F32 && t->dtype != MMP_F16 && t->dtype != MMP_BF16)) {
            res = mmp_errf(err, errlen,
                           "%s: record %lld: \"%s\" is not a token sequence (a 2-D float tensor [N, C]: mmp-embed --layer "
                           "BLOCK:tokens or tokens)", d->name, (long long)recno, field);
            break;
        } else if (!rec.text || !*rec.text) {
            d->skip_noq++;
        } else if (need_answers && (!as || as->n == 0)) {
            d->skip_noans++;
        } else {
            if (!d->Ci) d->Ci = (int)t->shape[1];
            if (t->shape[1] != d->Ci) {
                res = mmp_errf(err, errlen, "%s: record %lld: \"%s\" has tokens of %lld values, %s %d", d->name, (long long)recno,
                               field, (long long)t->shape[1], Ci ? "the model expects" : "the first record's have", d->Ci);
                break;
            }
            if (d->n == cap) {
                cap = cap ? 2 * cap : 1024;
                d->kvlen = mmp_xrealloc(d->kvlen, sizeof(int) * cap);
                d->kvoff = mmp_xrealloc(d->kvoff, sizeof(int64_t) * cap);
                d->id = mmp_xrealloc(d->id, sizeof(char *) * cap);
                d->qtype = mmp_xrealloc(d->qtype, sizeof(char *) * cap);
                d->nans = mmp_xrealloc(d->nans, sizeof(int) * cap);
                d->ans = mmp_xrealloc(d->ans, sizeof(char **) * cap);
                d->rec = mmp_xrealloc(d->rec, sizeof(int64_t) * cap);
                texts = mmp_xrealloc(texts, sizeof(char *) * cap);
            }
            int64_t N = t->shape[0];
            if ((xn + N) * d->Ci > xcap) {
                xcap = xcap ? 2 * xcap : (int64_t)1 << 20;
                while (xcap < (xn + N) * d->Ci) xcap *= 2;
                d->xi = mmp_xrealloc(d->xi, sizeof(float) * xcap);
            }
            mmp_tensor_to_f32(t, d->xi + xn * d->Ci);
            for (int64_t k = 0; k < N * d->Ci; k++)
                if (!isfinite(d->xi[xn * d->Ci + k])) {
                    res = mmp_errf(err, errlen, "%s: record %lld: \"%s\" has a non-finite value", d->name, (long long)recno, field);
                    break;
                }
            if (res) break;
            int64_t i = d->n++;
            d->kvlen[i] = (int)N;
            d->kvoff[i] = xn;
            xn += N;
            d->id[i] = rec.id ? mmp_xstrdup(rec.id) : NULL;
            const mmp_strlist *qt = mmp_record_strings(&rec, "qtype");
            d->qtype[i] = qt && qt->n > 0 ? mmp_xstrdup(qt->v[0]) : NULL;
            d->nans[i] = as ? as->n : 0;
            d->ans[i] = mmp_xcalloc((size_t)(d->nans[i] ? d->nans[i] : 1), sizeof(char *));
            for (int k = 0; k < d->nans[i]; k++) d->ans[i][k] = mmp_xstrdup(as->v[k]);
            d->rec[i] = recno;
            texts[i] = mmp_xstrdup(rec.text);
        }
        mmp_record_clear(&rec);
    }
    if (rc < 0 && !res) res = mmp_errf(err, errlen, "%s", mmp_reader_error(r));
    mmp_record_clear(&rec);
    d->read = recno;
    mmp_reader_close(r);
    if (!res && d->n == 0)
        res = mmp_errf(err, errlen, "%s: no usable record (%lld read: %lld without image tokens, %lld with an empty question%s)",
                       d->name, (long long)recno, (long long)d->skip_noimg, (long long)d->skip_noq,
                       need_answers ? ", or without answers" : "");
    if (!res) {
        /* distinct questions, each through the text tower once */
        int *ord = mmp_xmalloc(sizeof(int) * d->n);
        for (int64_t i = 0; i < d->n; i++) ord[i] = (int)i;
        g_texts = texts;
        qsort(ord, (size_t)d->n, sizeof(int), cmp_text);
        d->qidx = mmp_xmalloc(sizeof(int) * d->n);
        char **uniq = mmp_xmalloc(sizeof(char *) * d->n);
        for (int64_t k = 0; k < d->n; k++) {
            if (!k || strcmp(texts[ord[k]], texts[ord[k - 1]])) uniq[d->nq++] = texts[ord[k]];
            d->qidx[ord[k]] = d->nq - 1;
        }
        d->qlen = mmp_xmalloc(sizeof(int) * d->nq);
        d->qoff = mmp_xmalloc(sizeof(int64_t) * d->nq);
        if (qtower_run(q, uniq, d->nq, q->mode ? NULL : &d->xq, d->qlen, q->mode ? &d->qids : NULL, err, errlen)) res = -1;
        else
            for (int u = 0, o = 0; u < d->nq; o += d->qlen[u], u++) d->qoff[u] = o;
        d->Cq = q->H;
        if (q->mode) d->q = q;
        free(uniq);
        free(ord);
    }
    for (int64_t i = 0; i < d->n; i++) free(texts[i]);
    free(texts);
    if (res) set_free(d);
    return res;
}

/* ------------------------------------------------------------------ */
/* the answer vocabulary                                               */
/* ------------------------------------------------------------------ */

typedef struct {
    int K;
    char **name;    /* [K] in vocabulary order */
    int *sorted;    /* [K] indices sorted by name (lookup) */
    int64_t left_out_answers, left_out_annotations, annotations;
} vocab;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

typedef struct {
    char *s;
    int64_t c;
} sc;
static int cmp_sc(const void *a, const void *b) {
    const sc *x = a, *y = b;
    if (x->c != y->c) return x->c > y->c ? -1 : 1;
    return strcmp(x->s, y->s);
}

static const vocab *g_vocab;
static int cmp_vidx(const void *a, const void *b) {
    return strcmp(g_vocab->name[*(const int *)a], g_vocab->name[*(const int *)b]);
}

static void vocab_index(vocab *v) {
    v->sorted = mmp_xmalloc(sizeof(int) * (v->K ? v->K : 1));
    for (int i = 0; i < v->K; i++) v->sorted[i] = i;
    g_vocab = v;
    qsort(v->sorted, (size_t)v->K, sizeof(int), cmp_vidx);
}

static int vocab_find(const vocab *v, const char *s) {
    int lo = 0, hi = v->K - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(s, v->name[v->sorted[mid]]);
        if (!c) return v->sorted[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return -1;
}

static void vocab_build(vocab *v, const vqa_set *d, int K) {
    memset(v, 0, sizeof *v);
    int64_t m = 0;
    for (int64_t i = 0; i < d->n; i++) m += d->nans[i];
    char **all = mmp_xmalloc(sizeof(char *) * (m ? m : 1));
    m = 0;
    for (int64_t i = 0; i < d->n; i++)
        for (int k = 0; k < d->nans[i]; k++) all[m++] = d->ans[i][k];
    qsort(all, (size_t)m, sizeof(char *), cmp_str);
    sc *u = mmp_xmalloc(sizeof(sc) * (m ? m : 1));
    int64_t nu = 0;
    for (int64_t i = 0; i < m; i++) {
        if (!i || strcmp(all[i], all[i - 1])) u[nu++] = (sc){all[i], 0};
        u[nu - 1].c++;
    }
    qsort(u, (size_t)nu, sizeof(sc), cmp_sc);
    v->K = nu < K ? (int)nu : K;
    v->name = mmp_xmalloc(sizeof(char *) * (v->K ? v->K : 1));
    for (int i = 0; i < v->K; i++) v->name[i] = mmp_xstrdup(u[i].s);
    v->annotations = m;
    v->left_out_answers = nu - v->K;
    for (int64_t i = v->K; i < nu; i++) v->left_out_annotations += u[i].c;
    free(u);
    free(all);
    vocab_index(v);
}

static void vocab_free(vocab *v) {
    for (int i = 0; i < v->K; i++) free(v->name[i]);
    free(v->name), free(v->sorted);
    memset(v, 0, sizeof *v);
}

/* ------------------------------------------------------------------ */
/* accuracy                                                            */
/* ------------------------------------------------------------------ */

/* The VQA accuracy of pred against the annotated answers, as mmp-report scores
 * it (eval/vqaeval.h, the official evaluation's normalization): one answer:
 * exact match of the normalized strings; several: the mean over the
 * leave-one-out subsets of min(#matches among the others / 3, 1). */
static double vqa_acc(const char *pred, char *const *ans, int n) {
    if (n <= 0 || !pred) return 0;
    if (n == 1) return mmp_vqa_exact(pred, ans[0]);
    return mmp_vqa_accuracy(pred, (const char *const *)ans, n);
}

#define MAX_QTYPES 64
typedef struct {
    double sum[MAX_QTYPES + 1];
    int64_t n[MAX_QTYPES + 1];
    char *name[MAX_QTYPES];
    int ntypes;
    double total;
    int64_t count, oov_questions;
} acc_table;

static void acc_add(acc_table *a, const char *qtype, double acc) {
    a->total += acc;
    a->count++;
    int k = MAX_QTYPES; /* the rest */
    if (qtype) {
        for (k = 0; k < a->ntypes && strcmp(a->name[k], qtype); k++) {}
        if (k == a->ntypes) {
            if (a->ntypes < MAX_QTYPES) a->name[a->ntypes++] = mmp_xstrdup(qtype);
            else k = MAX_QTYPES;
        }
    }
    a->sum[k] += acc;
    a->n[k]++;
}

static void acc_free(acc_table *a) {
    for (int k = 0; k < a->ntypes; k++) free(a->name[k]);
}

static void acc_print(FILE *f, const char *prog, const char *what, const acc_table *a) {
    fprintf(f, "%s: %s VQA accuracy %.4f over %lld questions", prog, what, a->count ? a->total / a->count : 0.0,
            (long long)a->count);
    if (a->oov_questions)
        fprintf(f, " (%lld with no annotated answer in the vocabulary: counted as wrong)", (long long)a->oov_questions);
    fputc('\n', f);
    for (int k = 0; k <= MAX_QTYPES; k++) {
        if (k >= a->ntypes && k < MAX_QTYPES) continue;
        if (!a->n[k]) continue;
        fprintf(f, "%s:   %-24s %.4f (%lld)\n", prog, k < MAX_QTYPES ? a->name[k] : "(other types)", a->sum[k] / a->n[k],
                (long long)a->n[k]);
    }
}

/* ------------------------------------------------------------------ */
/* batches                                                             */
/* ------------------------------------------------------------------ */

typedef struct {
    float *xi, *xq, *logits, *dl, *t;
    int *kvl, *ql;
    int64_t *y;
    size_t ci, cq, cids;
    int cap;
    /* a set whose questions go through a training tower (d->q): their ids; train: the training forward (sv) */
    int32_t *ids;
    float *dxq;
    int train;
    mmp_tx_saved *sv;
} batch;

static void batch_free(batch *b) {
    free(b->xi), free(b->xq), free(b->logits), free(b->dl), free(b->t), free(b->kvl), free(b->ql), free(b->y);
    free(b->ids), free(b->dxq);
    mmp_tx_saved_free(b->sv);
    memset(b, 0, sizeof *b);
}

/* gathers records idx[0..B) of d */
static void batch_gather(batch *b, const vqa_set *d, const int64_t *idx, int B, int K) {
    size_t ni = 0, nq = 0;
    for (int j = 0; j < B; j++) ni += (size_t)d->kvlen[idx[j]], nq += (size_t)d->qlen[d->qidx[idx[j]]];
    if (ni * d->Ci > b->ci) b->ci = ni * d->Ci, b->xi = mmp_xrealloc(b->xi, sizeof(float) * b->ci);
    if (nq * d->Cq > b->cq) {
        b->cq = nq * d->Cq, b->xq = mmp_xrealloc(b->xq, sizeof(float) * b->cq);
        if (d->q) b->dxq = mmp_xrealloc(b->dxq, sizeof(float) * b->cq);
    }
    if (d->q && nq > b->cids) b->cids = nq, b->ids = mmp_xrealloc(b->ids, sizeof(int32_t) * nq);
    if (B > b->cap) {
        b->cap = B;
        b->kvl = mmp_xrealloc(b->kvl, sizeof(int) * B);
        b->ql = mmp_xrealloc(b->ql, sizeof(int) * B);
        b->y = mmp_xrealloc(b->y, sizeof(int64_t) * B);
        b->logits = mmp_xrealloc(b->logits, sizeof(float) * B * K);
        b->dl = mmp_xrealloc(b->dl, sizeof(float) * B * K);
        b->t = mmp_xrealloc(b->t, sizeof(float) * B * K);
    }
    size_t oi = 0, oq = 0;
    for (int j = 0; j < B; j++) {
        int64_t r = idx[j];
        int u = d->qidx[r];
        b->kvl[j] = d->kvlen[r];
        b->ql[j] = d->qlen[u];
        memcpy(b->xi + oi * d->Ci, d->xi + d->kvoff[r] * d->Ci, sizeof(float) * d->kvlen[r] * d->Ci);
        if (d->q) memcpy(b->ids + oq, d->qids + d->qoff[u], sizeof(int32_t) * d->qlen[u]);
        else memcpy(b->xq + oq * d->Cq, d->xq + d->qoff[u] * d->Cq, sizeof(float) * d->qlen[u] * d->Cq);
        oi += (size_t)d->kvlen[r];
        oq += (size_t)d->qlen[u];
    }
    if (d->q) { /* the questions through the tower as it is now */
        const mmp_bert *bt = &d->q->tm.bert;
        if (b->train) {
            char err[1024];
            mmp_tx_saved_free(b->sv);
            if (!(b->sv = mmp_bert_fwd_train_tokens(bt, b->ids, b->ql, B, d->q->frozen, b->xq, err, sizeof err))) mmp_die("%s", err);
        } else {
            mmp_bert_forward(bt, b->ids, b->ql, B, b->xq);
        }
    }
}

/* targets of record r: soft scores t[K] (bce) or the label (-1: outside the vocabulary) */
static int64_t targets(const vqa_set *d, int64_t r, const vocab *v, int bce, float *t) {
    if (bce) {
        memset(t, 0, sizeof(float) * v->K);
        int *cnt = mmp_xcalloc((size_t)v->K, sizeof(int));
        for (int k = 0; k < d->nans[r]; k++) {
            int a = vocab_find(v, d->ans[r][k]);
            if (a >= 0) cnt[a]++;
        }
        for (int a = 0; a < v->K; a++) t[a] = mmp_vqa_soft_score(cnt[a]);
        free(cnt);
        return 0;
    }
    return d->nans[r] > 0 ? vocab_find(v, d->ans[r][0]) : -1;
}

/* argmax of logits [K] */
static int argmax(const float *z, int K) {
    int best = 0;
    for (int k = 1; k < K; k++)
        if (z[k] > z[best]) best = k;
    return best;
}

/* loss and accuracy of m on d (mean loss over the records the loss sees) */
static void evaluate(mmp_vqa *m, const vqa_set *d, const vocab *v, int bce, int bs, double *loss, acc_table *acc) {
    batch b = {0};
    int64_t *idx = mmp_xmalloc(sizeof(int64_t) * bs);
    double ls = 0;
    int64_t ln = 0;
    for (int64_t s = 0; s < d->n; s += bs) {
        int B = (int)(d->n - s < bs ? d->n - s : bs);
        for (int j = 0; j < B; j++) idx[j] = s + j;
        batch_gather(&b, d, idx, B, v->K);
        mmp_vqa_forward(m, b.xi, b.kvl, b.xq, b.ql, B, b.logits);
        for (int j = 0; j < B; j++) {
            int64_t r = idx[j];
            int p = argmax(b.logits + (size_t)j * v->K, v->K);
            int inv = 0;
            for (int k = 0; k < d->nans[r] && !inv; k++) inv = vocab_find(v, d->ans[r][k]) >= 0;
            if (d->nans[r] && !inv) acc->oov_questions++;
            acc_add(acc, d->qtype[r], vqa_acc(v->name[p], d->ans[r], d->nans[r]));
            int64_t y = targets(d, r, v, bce, b.t);
            if (bce || y >= 0) {
                ls += mmp_vqa_loss(b.logits + (size_t)j * v->K, b.t, &y, 1, v->K, bce, NULL);
                ln++;
            }
        }
    }
    *loss = ln ? ls / ln : NAN;
    batch_free(&b);
    free(idx);
}

/* ------------------------------------------------------------------ */
/* checkpoints                                                         */
/* ------------------------------------------------------------------ */

typedef struct {
    mmp_train_cfg cfg;
    mmp_vqa *m;
    vocab v;
    int bce;
    int64_t step;
    int epoch, best_epoch;
    double best_metric;
    char *provenance;
    char text_sha[65];
} vqa_state;

/* the vocabulary as a JSON list of strings (heap) */
static char *vocab_json(const vocab *v) {
    size_t len = 1, cap = 256;
    char *js = mmp_xmalloc(cap);
    js[0] = '[';
    for (int i = 0; i < v->K; i++) {
        char *q = mmp_json_quote(v->name[i], MMP_JSON_ESC_NT | MMP_JSON_ESC_R);
        size_t ql = strlen(q);
        while (len + ql + 3 > cap) cap *= 2, js = mmp_xrealloc(js, cap);
        if (i) js[len++] = ',';
        memcpy(js + len, q, ql);
        len += ql;
        free(q);
    }
    js[len++] = ']';
    js[len] = 0;
    return js;
}

/* the checkpoint: the fusion model, the text tower's trained tensors (q->v), their optimizer state, the metadata */
static int save(const vqa_state *s, const qtower *q, const char *path, char *err, size_t errlen) {
    mmp_st_writer w;
    mmp_st_writer_init(&w);
    int np;
    mmp_param *p = mmp_vqa_params(s->m, &np);
    for (int i = 0; i < np; i++) mmp_st_writer_add_f32(&w, p[i].name, p[i].w, p[i].ndim, p[i].shape);
    for (int i = 0; i < q->nv; i++) mmp_st_writer_add_f32(&w, q->v[i].name, q->v[i].w, q->v[i].ndim, q->v[i].shape);
    mmp_train_optim_add(p, np, &s->cfg.opt, &w);
    if (q->nv) mmp_train_optim_add(q->v, q->nv, &s->cfg.opt, &w);
    mmp_train_cfg_to_meta(&s->cfg, &w.meta);
    mmp_meta_set(&w.meta, "format", "mmpipe-vqa");
    char buf[64];
    const mmp_vqa_config *c = mmp_vqa_cfg(s->m);
#define MSET(k, ...) (snprintf(buf, sizeof buf, __VA_ARGS__), mmp_meta_set(&w.meta, k, buf))
    MSET("vqa.loss", "%s", s->bce ? "bce" : "ce");
    MSET("vqa.image_width", "%d", c->Ci);
    MSET("vqa.image_tokens", "%d", c->npos);
    MSET("vqa.question_width", "%d", c->Cq);
    MSET("step", "%lld", (long long)s->step);
    MSET("epoch", "%d", s->epoch);
    MSET("best_metric", "%.17g", s->best_metric);
    MSET("best_epoch", "%d", s->best_epoch);
#undef MSET
    mmp_meta_set(&w.meta, "text_model_sha256", s->text_sha);
    if (s->provenance) mmp_meta_set(&w.meta, "provenance", s->provenance);
    char *js = vocab_json(&s->v);
    mmp_meta_set(&w.meta, "vqa.answers", js);
    free(js);
    int rc = mmp_st_writer_write(&w, path, err, errlen);
    mmp_st_writer_free(&w);
    return rc;
}

int mmp_vqa_is_checkpoint(const char *path) {
    mmp_safetensors st;
    char err[256];
    if (mmp_st_open(&st, path, err, sizeof err)) return 0;
    const char *f = mmp_meta_get(&st.meta, "format");
    int yes = f && !strcmp(f, "mmpipe-vqa");
    mmp_st_close(&st);
    return yes;
}

static int meta_int(const mmp_meta *m, const char *k, long long *v, const char *path, char *err, size_t errlen) {
    const char *s = mmp_meta_get(m, k);
    char *e;
    if (!s || (*v = strtoll(s, &e, 10), e == s || *e)) return mmp_errf(err, errlen, "%s: metadata \"%s\" missing or bad", path, k);
    return 0;
}

/* Reads a checkpoint: configuration (then the overrides of the command line), model, vocabulary, counters. */
static int load(vqa_state *s, const char *path, const mmp_meta *given, int with_optim, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    mmp_safetensors st;
    if (mmp_st_open(&st, path, err, errlen)) return -1;
    int rc = -1;
    const mmp_meta *m = &st.meta;
    const char *f = mmp_meta_get(m, "format");
    long long ci = 0, cq = 0, npos = 0, step = 0, epoch = 0, be = 0;
    int nv = 0;
    char **names = NULL;
    if (!f || strcmp(f, "mmpipe-vqa")) {
        mmp_errf(err, errlen, "%s: not a VQA checkpoint of mmp-train-step (format %s)", path, f ? f : "missing");
        goto out;
    }
    mmp_train_cfg_defaults(&s->cfg);
    if (mmp_train_cfg_from_meta(&s->cfg, m, err, errlen)) goto out;
    if (given)
        for (int i = 0; i < given->n; i++) {
            if (mmp_train_cfg_is_arch(given->keys[i])) {
                const char *cv = mmp_meta_get(m, given->keys[i]);
                if (cv && strcmp(cv, given->vals[i])) {
                    mmp_errf(err, errlen, "--%s %s: the checkpoint %s has %s (an architecture option cannot change)", given->keys[i],
                             given->vals[i], path, cv);
                    goto out;
                }
            }
            if (mmp_train_cfg_set(&s->cfg, given->keys[i], given->vals[i], err, errlen)) goto out;
        }
    mmp_train_cfg_resolve(&s->cfg);
    if (meta_int(m, "vqa.image_width", &ci, path, err, errlen) || meta_int(m, "vqa.question_width", &cq, path, err, errlen) ||
        meta_int(m, "vqa.image_tokens", &npos, path, err, errlen) || meta_int(m, "step", &step, path, err, errlen) ||
        meta_int(m, "epoch", &epoch, path, err, errlen) || meta_int(m, "best_epoch", &be, path, err, errlen))
        goto out;
    if (mmp_json_strings(mmp_meta_get(m, "vqa.answers"), &nv, &names, err, errlen) || nv < 1) {
        if (nv < 1) mmp_errf(err, errlen, "%s: metadata \"vqa.answers\" missing or empty", path);
        goto out;
    }
    s->v.K = nv;
    s->v.name = names;
    names = NULL;
    vocab_index(&s->v);
    const char *lo = mmp_meta_get(m, "vqa.loss");
    s->bce = lo && !strcmp(lo, "bce");
    s->step = step, s->epoch = (int)epoch, s->best_epoch = (int)be;
    const char *bm = mmp_meta_get(m, "best_metric");
    s->best_metric = bm ? strtod(bm, NULL) : -INFINITY;
    const char *pv = mmp_meta_get(m, "provenance");
    s->provenance = pv ? mmp_xstrdup(pv) : NULL;
    const char *ts = mmp_meta_get(m, "text_model_sha256");
    snprintf(s->text_sha, sizeof s->text_sha, "%s", ts ? ts : "");
    mmp_vqa_config c = {.pooled = s->cfg.head == MMP_HEAD_VQA_POOLED, .Ci = (int)ci, .Cq = (int)cq, .D = (int)s->cfg.fuse_dim,
                        .NH = s->cfg.heads, .L = s->cfg.fuse_layers, .IL = s->cfg.img_layers, .npos = (int)npos,
                        .hidden = s->cfg.nhidden ? (int)s->cfg.hidden[0] : 2 * (int)s->cfg.fuse_dim, .K = nv};
    if (!(s->m = mmp_vqa_new(&c, err, errlen))) goto out;
    int np;
    mmp_param *p = mmp_vqa_params(s->m, &np);
    for (int i = 0; i < np; i++)
        if (mmp_st_read_f32(&st, p[i].name, p[i].ndim, p[i].shape, p[i].w, err, errlen)) goto out;
    if (with_optim && mmp_train_optim_read(p, np, &s->cfg.opt, &st, err, errlen)) goto out;
    rc = 0;
out:
    if (rc) {
        mmp_vqa_free(s->m);
        s->m = NULL;
    }
    mmp_st_close(&st);
    return rc;
}

/* ------------------------------------------------------------------ */
/* mmp-train-step --head vqa                                           */
/* ------------------------------------------------------------------ */

static void report_set(const char *prog, const vqa_set *d) {
    fprintf(stderr, "%s: %s: %lld records read, %lld used (%d distinct questions)", prog, d->name, (long long)d->read,
            (long long)d->n, d->nq);
    if (d->skip_noimg) fprintf(stderr, "; %lld skipped: no image tokens", (long long)d->skip_noimg);
    if (d->skip_noq) fprintf(stderr, "; %lld skipped: empty question", (long long)d->skip_noq);
    if (d->skip_noans) fprintf(stderr, "; %lld skipped: no answers", (long long)d->skip_noans);
    fputc('\n', stderr);
}

int mmp_vqa_cmd(const mmp_vqa_cmd_args *a) {
    const char *prog = "mmp-train-step";
    char err[1024];
    vqa_state s;
    const char *ckpt = a->init ? a->init : a->resume;
    if (ckpt) {
        if (load(&s, ckpt, a->given, 1, err, sizeof err)) mmp_die("%s", err);
    } else {
        memset(&s, 0, sizeof s);
        s.cfg = *a->cfg;
        mmp_train_cfg_resolve(&s.cfg);
        s.best_metric = -INFINITY;
    }
    mmp_train_cfg *c = &s.cfg;
    if (mmp_train_cfg_check(c, err, sizeof err)) mmp_die("%s", err);
    int threads = a->threads > 0 ? a->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    qtower q;
    if (qtower_load(&q, c->backbone, c->max_length, threads, err, sizeof err)) mmp_die("%s", err);
    if (ckpt && s.text_sha[0] && strcmp(s.text_sha, q.tm.bert.sha256))
        mmp_die("%s: the text tower %s is not the one the checkpoint %s was trained with", prog, c->backbone, ckpt);
    snprintf(s.text_sha, sizeof s.text_sha, "%s", q.tm.bert.sha256);
    if (qtower_trainable(&q, c, err, sizeof err) || (ckpt && qtower_read(&q, ckpt, 1, &c->opt, err, sizeof err))) mmp_die("%s", err);
    double t0 = mmp_now();
    vqa_set d, dev;
    int Ci = ckpt ? mmp_vqa_cfg(s.m)->Ci : 0;
    if (set_load(&d, a->in, c->feature, &q, 1, Ci, err, sizeof err)) mmp_die("%s", err);
    report_set(prog, &d);
    const char *prov = mmp_meta_get(&d.hdr.meta, "provenance");
    if (ckpt) mmp_provenance_check(&d.hdr, s.provenance, a->allow_mixed, d.name, ckpt);
    else s.provenance = prov ? mmp_xstrdup(prov) : NULL;
    int maxans = 0;
    for (int64_t i = 0; i < d.n; i++) maxans = d.nans[i] > maxans ? d.nans[i] : maxans;
    if (!ckpt) {
        s.bce = maxans > 1;
        vocab_build(&s.v, &d, (int)c->answers);
        fprintf(stderr, "%s: answer vocabulary: %d answers (--answers %lld) cover %lld of %lld annotations; %lld answers "
                "left out (%lld annotations); %s loss\n", prog, s.v.K, (long long)c->answers,
                (long long)(s.v.annotations - s.v.left_out_annotations), (long long)s.v.annotations, (long long)s.v.left_out_answers,
                (long long)s.v.left_out_annotations, s.bce ? "soft-score BCE (several answers per question)" : "cross-entropy (one answer)");
        int npos = 0;
        if (c->vqa_pos == 1 && c->head == MMP_HEAD_VQA) {
            npos = d.kvlen[0];
            for (int64_t i = 1; i < d.n; i++)
                if (d.kvlen[i] != npos)
                    mmp_die("%s: record %lld has %d image tokens, the first %d: --vqa-pos grid needs one grid size (or --vqa-pos none)",
                            d.name, (long long)d.rec[i], d.kvlen[i], npos);
        }
        mmp_vqa_config mc = {.pooled = c->head == MMP_HEAD_VQA_POOLED, .Ci = d.Ci, .Cq = d.Cq, .D = (int)c->fuse_dim,
                             .NH = c->heads, .L = c->fuse_layers, .IL = c->img_layers, .npos = npos,
                             .hidden = c->nhidden ? (int)c->hidden[0] : 2 * (int)c->fuse_dim, .K = s.v.K};
        if (!(s.m = mmp_vqa_new(&mc, err, sizeof err))) mmp_die("%s", err);
        mmp_vqa_init_weights(s.m, c->seed);
    } else if (!s.bce && maxans > 1) {
        mmp_die("%s: records with several answers, but the checkpoint %s trains with one answer (cross-entropy)", d.name, ckpt);
    }
    const mmp_vqa_config *mc = mmp_vqa_cfg(s.m);
    if (mc->npos)
        for (int64_t i = 0; i < d.n; i++)
            if (d.kvlen[i] != mc->npos)
                mmp_die("%s: record %lld has %d image tokens, the model's grid %d", d.name, (long long)d.rec[i], d.kvlen[i], mc->npos);
    if (a->dev) {
        if (set_load(&dev, a->dev, c->feature, &q, 0, mc->Ci, err, sizeof err)) mmp_die("%s", err);
        report_set(prog, &dev);
        mmp_provenance_check(&dev.hdr, s.provenance, a->allow_mixed, dev.name, ckpt ? ckpt : d.name);
        if (mc->npos)
            for (int64_t i = 0; i < dev.n; i++)
                if (dev.kvlen[i] != mc->npos)
                    mmp_die("%s: record %lld has %d image tokens, the model's grid %d", dev.name, (long long)dev.rec[i], dev.kvlen[i],
                            mc->npos);
    }
    double t_load = mmp_now() - t0;
    /* the records the loss sees: CE skips answers outside the vocabulary */
    int64_t *use = mmp_xmalloc(sizeof(int64_t) * d.n), nuse = 0, skip_oov = 0;
    float *tt = mmp_xmalloc(sizeof(float) * mc->K);
    for (int64_t i = 0; i < d.n; i++) {
        if (!s.bce && targets(&d, i, &s.v, 0, tt) < 0) skip_oov++;
        else use[nuse++] = i;
    }
    if (skip_oov) fprintf(stderr, "%s: %lld training questions skipped: their answer is outside the vocabulary\n", prog, (long long)skip_oov);
    if (!nuse) mmp_die("%s: no training question has its answer in the vocabulary", d.name);
    int64_t bs = c->batch, nb = (nuse + bs - 1) / bs;
    int target = a->resume ? c->epochs : s.epoch + (a->init && !mmp_meta_get(a->given, "epochs") ? 1 : c->epochs);
    if (a->init) c->epochs = target;
    if (c->sched.total <= 0) c->sched.total = (int64_t)c->epochs * nb;
    FILE *log = NULL;
    if (a->log && !(log = fopen(a->log, ckpt ? "a" : "w"))) mmp_die("%s: cannot open for writing", a->log);
    char *last = a->dev ? (a->last ? mmp_xstrdup(a->last) : mmp_train_last_path(a->out)) : mmp_xstrdup(a->out);
    int np;
    mmp_param *p = mmp_vqa_params(s.m, &np);
    batch b = {.train = 1};
    /* the gradient clipping's parameters: the fusion model's, then the tower's (views: the same w and g) */
    mmp_param *allp = mmp_xmalloc(sizeof(mmp_param) * (size_t)(np + q.nv));
    memcpy(allp, p, sizeof(mmp_param) * (size_t)np);
    if (q.nv) memcpy(allp + np, q.v, sizeof(mmp_param) * (size_t)q.nv);
    int64_t *perm = mmp_xmalloc(sizeof(int64_t) * nuse), *idx = mmp_xmalloc(sizeof(int64_t) * bs);
    double t_train = mmp_now(), train_loss = NAN, dev_loss = NAN, dev_acc = NAN;
    int ran = 0, start = s.epoch;
    while (s.epoch < target && (a->stop_after < 0 || ran < a->stop_after)) {
        uint64_t rng = mmp_rng_derive(c->seed, 0x5348554646ULL /* SHUFF */, (uint64_t)s.epoch);
        mmp_rng_permutation(&rng, perm, nuse);
        double ls = 0, te = mmp_now();
        for (int64_t k = 0; k < nb; k++) {
            int B = (int)(nuse - k * bs < bs ? nuse - k * bs : bs);
            for (int j = 0; j < B; j++) idx[j] = use[perm[k * bs + j]];
            if (q.lora) mmp_tx_lora_set_step(q.lora, (uint64_t)s.step); /* the dropout masks of this step */
            batch_gather(&b, &d, idx, B, mc->K);
            for (int j = 0; j < B; j++) b.y[j] = targets(&d, idx[j], &s.v, s.bce, b.t + (size_t)j * mc->K);
            mmp_vqa_forward(s.m, b.xi, b.kvl, b.xq, b.ql, B, b.logits);
            double loss = mmp_vqa_loss(b.logits, b.t, b.y, B, mc->K, s.bce, b.dl);
            if (!isfinite(loss)) mmp_die("%s: the loss is not finite at step %lld (lower --lr?)", prog, (long long)s.step + 1);
            mmp_vqa_backward_q(s.m, b.dl, q.mode ? b.dxq : NULL);
            if (q.mode) { /* d loss / d question tokens back through the tower */
                mmp_tx_params_zero_grad(&q.P);
                mmp_bert_bwd(&q.tm.bert, b.sv, b.dxq, q.P.bert, NULL);
                mmp_tx_saved_free(b.sv);
                b.sv = NULL;
            }
            if (c->clip > 0) mmp_clip_grad_norm(allp, np + q.nv, c->clip);
            double lr = mmp_sched_lr(&c->sched, s.step);
            mmp_optim_step(&c->opt, p, np, s.step, lr);
            if (q.nv) mmp_optim_step(&c->opt, q.v, q.nv, s.step, lr);
            s.step++;
            ls += loss;
            if (log && a->log_every > 0 && s.step % a->log_every == 0)
                fprintf(log, "{\"step\":%lld,\"epoch\":%d,\"loss\":%.9g,\"lr\":%.9g,\"time\":%.6f}\n", (long long)s.step, s.epoch + 1,
                        loss, lr, mmp_wall_time());
            if (mmp_progress_enabled()) mmp_progress_count("train", "steps", (uint64_t)(k + 1), (uint64_t)nb, te);
        }
        s.epoch++;
        ran++;
        train_loss = ls / nb;
        int better = 1;
        if (a->dev) {
            acc_table at = {0};
            evaluate(s.m, &dev, &s.v, s.bce, 256, &dev_loss, &at);
            dev_acc = at.count ? at.total / at.count : 0;
            acc_free(&at);
            better = dev_acc > s.best_metric;
            if (better) s.best_metric = dev_acc, s.best_epoch = s.epoch;
        }
        if (log) {
            fprintf(log, "{\"epoch\":%d,\"step\":%lld,\"train_loss\":%.9g", s.epoch, (long long)s.step, train_loss);
            if (a->dev) fprintf(log, ",\"dev_loss\":%.9g,\"dev_metric\":%.9g", dev_loss, dev_acc);
            fprintf(log, ",\"seconds\":%.3f,\"time\":%.6f}\n", mmp_now() - te, mmp_wall_time());
            fflush(log);
        }
        if (save(&s, &q, last, err, sizeof err)) mmp_die("%s", err);
        if (a->dev && better && save(&s, &q, a->out, err, sizeof err)) mmp_die("%s", err);
        if (mmp_progress_enabled()) {
            if (a->dev)
                mmp_progress_line("epoch %d/%d: train loss %.4f, dev loss %.4f, dev VQA accuracy %.4f", s.epoch, target, train_loss,
                                  dev_loss, dev_acc);
            else
                mmp_progress_line("epoch %d/%d: train loss %.4f", s.epoch, target, train_loss);
        }
    }
    if (mmp_progress_enabled()) mmp_progress_done();
    if (!ran && save(&s, &q, a->out, err, sizeof err)) mmp_die("%s", err);
    double secs = mmp_now() - t_train;
    fprintf(stderr, "%s: %lld questions (%s head, %s loss, %d answers); epochs %d..%d, %lld steps; %.2f s training, %.2f s loading",
            prog, (long long)nuse, mmp_head_kind_name(c->head), s.bce ? "bce" : "ce", mc->K, start + 1, s.epoch, (long long)s.step,
            secs, t_load);
    if (ran) fprintf(stderr, "; train loss %.4f", train_loss);
    if (a->dev) fprintf(stderr, "; dev VQA accuracy %.4f (best %.4f at epoch %d)", dev_acc, s.best_metric, s.best_epoch);
    fputc('\n', stderr);
    if (log) fclose(log);
    batch_free(&b);
    free(perm), free(idx), free(use), free(tt), free(last), free(allp);
    if (a->dev) set_free(&dev);
    set_free(&d);
    vocab_free(&s.v);
    mmp_vqa_free(s.m);
    free(s.provenance);
    qtower_free(&q);
    return 0;
}

/* ------------------------------------------------------------------ */
/* mmp-eval                                                            */
/* ------------------------------------------------------------------ */

int mmp_vqa_eval_cmd(const char *model, const char *in, const char *outp, int level, int allow_mixed, int threads,
                     const char *json, int argc, char **argv) {
    const char *prog = "mmp-eval";
    char err[1024];
    vqa_state s;
    if (load(&s, model, NULL, 0, err, sizeof err)) mmp_die("%s", err);
    if (threads < 1) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    qtower q;
    if (qtower_load(&q, s.cfg.backbone, s.cfg.max_length, threads, err, sizeof err)) mmp_die("%s", err);
    if (s.text_sha[0] && strcmp(s.text_sha, q.tm.bert.sha256))
        mmp_die("%s: the text tower %s is not the one %s was trained with", prog, s.cfg.backbone, model);
    /* --text-unfreeze lora|all: the tower runs with the checkpoint's adapters / weights */
    if (qtower_trainable(&q, &s.cfg, err, sizeof err) || qtower_read(&q, model, 0, NULL, err, sizeof err)) mmp_die("%s", err);
    const mmp_vqa_config *mc = mmp_vqa_cfg(s.m);
    mmp_reader *r = mmp_reader_open(in, err, sizeof err);
    if (!r) mmp_die("%s", err);
    const mmp_header *ih = mmp_reader_header(r);
    const char *rname = mmp_reader_name(r);
    mmp_cli_check(mmp_check_provenance(ih, s.provenance, allow_mixed, rname, model, err, sizeof err), err);
    mmp_header oh;
    mmp_header_copy(&oh, ih);
    mmp_header_remove_field(&oh, s.cfg.feature);
    int64_t one = 1;
    mmp_header_add_field(&oh, "pred", MMP_I64, 1, &one);
    char *vjs = vocab_json(&s.v); /* mmp-report: predictions outside the vocabulary */
    mmp_meta_set(&oh.meta, "vqa.answers", vjs);
    free(vjs);
    mmp_header_stamp(&oh, argc, argv);
    mmp_writer *w = mmp_writer_open(outp, &oh, level);
    /* batches of records: image tokens and questions gathered, run, written in order */
    enum { BS = 64 };
    mmp_record *recs = mmp_xcalloc(BS, sizeof(mmp_record));
    for (int i = 0; i < BS; i++) mmp_record_init(&recs[i]);
    int *ok = mmp_xmalloc(sizeof(int) * BS), *kvl = mmp_xmalloc(sizeof(int) * BS), *ql = mmp_xmalloc(sizeof(int) * BS);
    char **texts = mmp_xmalloc(sizeof(char *) * BS);
    float *logits = mmp_xmalloc(sizeof(float) * BS * mc->K), *xi = NULL;
    size_t xicap = 0;
    acc_table at = {0};
    int64_t recno = 0, skip_noimg = 0, skip_noq = 0, oov_annot = 0, annot = 0, noans = 0;
    int rc = 1;
    while (rc == 1) {
        int n = 0;
        while (n < BS && (rc = mmp_reader_next(r, &recs[n])) == 1) n++;
        if (rc < 0) mmp_die("%s", mmp_reader_error(r));
        int B = 0;
        size_t ti = 0;
        for (int i = 0; i < n; i++) {
            recno++;
            const mmp_tensor *t = mmp_record_cget(&recs[i], s.cfg.feature);
            ok[i] = 0;
            if (!t || (t->ndim == 2 && t->shape[0] == 0)) {
                skip_noimg++;
                continue;
            }
            if (t->ndim != 2 || t->shape[1] != mc->Ci || (t->dtype != MMP_F32 && t->dtype != MMP_F16 && t->dtype != MMP_BF16))
                mmp_die("%s: record %lld: \"%s\" is not a token sequence [N, %d] (the model's image tokens)", rname, (long long)recno,
                        s.cfg.feature, mc->Ci);
            if (mc->npos && t->shape[0] != mc->npos)
                mmp_die("%s: record %lld: %lld image tokens, the model's grid has %d", rname, (long long)recno, (long long)t->shape[0],
                        mc->npos);
            if (!recs[i].text || !*recs[i].text) {
                skip_noq++;
                continue;
            }
            ok[i] = 1;
            size_t need = (ti + (size_t)t->shape[0]) * mc->Ci;
            if (need > xicap) xicap = need * 2, xi = mmp_xrealloc(xi, sizeof(float) * xicap);
            mmp_tensor_to_f32(t, xi + ti * mc->Ci);
            ti += (size_t)t->shape[0];
            kvl[B] = (int)t->shape[0];
            texts[B++] = recs[i].text;
        }
        float *xq = NULL;
        if (B) {
            if (qtower_run(&q, texts, B, &xq, ql, NULL, err, sizeof err)) mmp_die("%s: %s", rname, err);
            mmp_vqa_forward(s.m, xi, kvl, xq, ql, B, logits);
        }
        free(xq);
        for (int i = 0, j = 0; i < n; i++) {
            mmp_record *rec = &recs[i];
            if (ok[i]) {
                int p = argmax(logits + (size_t)j * mc->K, mc->K);
                j++;
                const char *pv[1] = {s.v.name[p]};
                mmp_record_set_strings(rec, "prediction", pv, 1);
                mmp_record_remove(rec, s.cfg.feature);
                mmp_tensor *pt = mmp_record_add(rec, "pred", MMP_I64, 1, &one);
                ((int64_t *)pt->data)[0] = p;
                const mmp_strlist *as = mmp_record_strings(rec, "answers");
                const mmp_strlist *qt = mmp_record_strings(rec, "qtype");
                if (as && as->n) {
                    int inv = 0;
                    for (int k = 0; k < as->n; k++) {
                        int f = vocab_find(&s.v, as->v[k]) >= 0;
                        inv |= f;
                        oov_annot += !f;
                    }
                    annot += as->n;
                    if (!inv) at.oov_questions++;
                    acc_add(&at, qt && qt->n ? qt->v[0] : NULL, vqa_acc(s.v.name[p], as->v, as->n));
                } else
                    noans++;
                mmp_writer_write(w, rec);
            }
            mmp_record_clear(rec);
        }
    }
    mmp_writer_add_skipped(w, (uint64_t)(skip_noimg + skip_noq));
    mmp_writer_close(w);
    mmp_reader_close(r);
    fprintf(stderr, "%s: %lld records, %lld answered", prog, (long long)recno, (long long)(recno - skip_noimg - skip_noq));
    if (skip_noimg) fprintf(stderr, "; %lld skipped: no image tokens", (long long)skip_noimg);
    if (skip_noq) fprintf(stderr, "; %lld skipped: empty question", (long long)skip_noq);
    if (noans) fprintf(stderr, "; %lld without answers (not scored)", (long long)noans);
    if (annot) fprintf(stderr, "; %lld of %lld annotated answers outside the vocabulary", (long long)oov_annot, (long long)annot);
    fputc('\n', stderr);
    if (at.count) acc_print(stderr, prog, "", &at);
    if (json) {
        FILE *f = strcmp(json, "-") ? fopen(json, "w") : stdout;
        if (!f) mmp_die("%s: cannot open for writing", json);
        fprintf(f, "{\"records\":%lld,\"skipped_no_image\":%lld,\"skipped_empty_question\":%lld,\"scored\":%lld,\"vqa_accuracy\":%.9g,"
                "\"oov_annotations\":%lld,\"oov_questions\":%lld,\"per_qtype\":{", (long long)recno, (long long)skip_noimg,
                (long long)skip_noq, (long long)at.count, at.count ? at.total / at.count : 0.0, (long long)oov_annot,
                (long long)at.oov_questions);
        for (int k = 0; k < at.ntypes; k++) {
            fprintf(f, "%s", k ? "," : "");
            mmp_json_put_str(f, at.name[k], MMP_JSON_ESC_NT);
            fprintf(f, ":{\"accuracy\":%.9g,\"n\":%lld}", at.sum[k] / at.n[k], (long long)at.n[k]);
        }
        fprintf(f, "}}\n");
        if (f != stdout) fclose(f);
    }
    acc_free(&at);
    for (int i = 0; i < BS; i++) mmp_record_clear(&recs[i]);
    free(recs), free(ok), free(kvl), free(ql), free(texts), free(logits), free(xi);
    mmp_header_free(&oh);
    vocab_free(&s.v);
    mmp_vqa_free(s.m);
    free(s.provenance);
    qtower_free(&q);
    return 0;
}

/* ------------------------------------------------------------------ */
/* mmp-export --peft                                                   */
/* ------------------------------------------------------------------ */

int mmp_vqa_write_peft(const char *model, const char *dir, char *err, size_t errlen) {
    vqa_state s;
    if (load(&s, model, NULL, 0, err, errlen)) return -1;
    qtower q;
    memset(&q, 0, sizeof q);
    int rc = -1;
    if (s.cfg.text_unfreeze != 1) {
        mmp_errf(err, errlen, "%s: not trained with --text-unfreeze lora: no adapters to write", model);
        goto out;
    }
    if (qtower_load(&q, s.cfg.backbone, s.cfg.max_length, 1, err, errlen)) goto out;
    if (s.text_sha[0] && strcmp(s.text_sha, q.tm.bert.sha256)) {
        mmp_errf(err, errlen, "the text tower %s is not the one %s was trained with", s.cfg.backbone, model);
        goto out;
    }
    if (qtower_trainable(&q, &s.cfg, err, errlen) || qtower_read(&q, model, 0, NULL, err, errlen)) goto out;
    rc = mmp_tx_lora_save(q.lora, dir, err, errlen);
out:
    qtower_free(&q);
    vocab_free(&s.v);
    mmp_vqa_free(s.m);
    free(s.provenance);
    return rc;
}
