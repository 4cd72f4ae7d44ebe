/* train/report_gen.c: mmp-report for generated text: caption metrics
 * (eval/capmetrics.h) over records with reference "captions" and the
 * generated "text", and the VQA accuracy (eval/vqaeval.h) over records with
 * a "prediction" and "answers" (+ "qtype"); their text, JSON and HTML
 * sections (see report.h). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>

#include "eval/capmetrics.h"
#include "eval/vqaeval.h"
#include "json.h"
#include "train/report.h"

/* the image keys seen (an open-addressing set of strings) */
typedef struct {
    char **k;
    size_t n, cap;
} keyset;

static int keyset_add(keyset *s, const char *key) {
    if ((s->n + 1) * 2 > s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 1024;
        char **k = mmp_xcalloc(nc, sizeof(char *));
        for (size_t i = 0; i < s->cap; i++)
            if (s->k[i]) {
                size_t h = (size_t)mmp_hash64(s->k[i], strlen(s->k[i]), 7) & (nc - 1);
                while (k[h]) h = (h + 1) & (nc - 1);
                k[h] = s->k[i];
            }
        free(s->k);
        s->k = k;
        s->cap = nc;
    }
    size_t h = (size_t)mmp_hash64(key, strlen(key), 7) & (s->cap - 1);
    for (; s->k[h]; h = (h + 1) & (s->cap - 1))
        if (!strcmp(s->k[h], key)) return 0;
    s->k[h] = mmp_xstrdup(key);
    s->n++;
    return 1;
}

static void keyset_free(keyset *s) {
    for (size_t i = 0; i < s->cap; i++) free(s->k[i]);
    free(s->k);
    memset(s, 0, sizeof *s);
}

struct mmp_report_gen {
    /* captions: one entry per image */
    int64_t n, cap;
    char **cand;       /* tokenized generated captions */
    char ***refs;      /* tokenized references */
    int *nrefs;
    keyset seen;       /* image keys ("image_id", else the id) */
    /* VQA: one entry per question */
    int64_t nq, capq;
    char **pred;
    char ***ans;
    int *nans;
    char **qtype;      /* NULL when absent */
};

int mmp_report_gen_kind(const mmp_record *rec) {
    if (mmp_record_strings(rec, "captions")) return 1;
    if (mmp_record_strings(rec, "prediction") && mmp_record_strings(rec, "answers")) return 2;
    return 0;
}

static char **dup_list(const mmp_strlist *l, int tokenize) {
    char **v = mmp_xmalloc(sizeof(char *) * (size_t)(l->n ? l->n : 1));
    for (int i = 0; i < l->n; i++) v[i] = tokenize ? mmp_cap_tokenize(l->v[i]) : mmp_xstrdup(l->v[i]);
    return v;
}

static void free_list(char **v, int n) {
    for (int i = 0; v && i < n; i++) free(v[i]);
    free(v);
}

/* a JPEG of a u8 [H, W, 3], [H, W, 1] or [H, W] "image" tensor */
static int encode_tensor(const mmp_tensor *t, mmp_capexample *ex) {
    if (t->dtype != MMP_U8 || t->ndim < 2 || t->ndim > 3) return 0;
    int64_t H = t->shape[0], W = t->shape[1], C = t->ndim == 3 ? t->shape[2] : 1;
    if ((C != 1 && C != 3) || H < 1 || W < 1 || H > 8192 || W > 8192) return 0;
    tjhandle tj = tjInitCompress();
    if (!tj) return 0;
    unsigned char *jpg = NULL;
    unsigned long jn = 0;
    int ok = !tjCompress2(tj, (const unsigned char *)t->data, (int)W, 0, (int)H, C == 3 ? TJPF_RGB : TJPF_GRAY, &jpg, &jn,
                          C == 3 ? TJSAMP_444 : TJSAMP_GRAY, 90, 0);
    if (ok) {
        ex->img = mmp_xmalloc(jn);
        memcpy(ex->img, jpg, jn);
        ex->nimg = jn;
        ex->mime = "image/jpeg";
    }
    tjFree(jpg);
    tjDestroy(tj);
    return ok;
}

/* the bytes of a readable JPEG/PNG file named by the record's id (at most 4 MiB) */
static int read_image_file(const char *path, mmp_capexample *ex) {
    size_t L = strlen(path);
    const char *dot = strrchr(path, '.');
    if (!dot || L < 5) return 0;
    const char *mime = !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") ? "image/jpeg" : !strcasecmp(dot, ".png") ? "image/png" : NULL;
    struct stat st;
    if (!mime || stat(path, &st) || !S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > (4 << 20)) return 0;
    size_t n;
    char *b = mmp_read_small_file(path, &n);
    if (!b) return 0;
    ex->img = (unsigned char *)b;
    ex->nimg = n;
    ex->mime = mime;
    return 1;
}

static struct mmp_report_gen *gen_of(mmp_report_data *d) {
    if (!d->gen) d->gen = mmp_xcalloc(1, sizeof *d->gen);
    return d->gen;
}

static int add_caption(mmp_report_data *d, const mmp_record *rec, const char *rname, uint64_t idx, char *err, size_t errlen) {
    struct mmp_report_gen *g = gen_of(d);
    const mmp_strlist *refs = mmp_record_strings(rec, "captions");
    if (!rec->text)
        return mmp_errf(err, errlen, "%s: record %llu: reference \"captions\" but no generated \"text\" (run mmp-generate first)", rname,
                        (unsigned long long)idx);
    if (refs->n == 0) {
        d->capr.norefs++;
        return 0;
    }
    const char *key = mmp_record_string(rec, "image_id");
    if (!key) key = rec->id;
    if (key && !keyset_add(&g->seen, key)) {
        d->capr.duplicates++;
        return 0;
    }
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 1024;
        g->cand = mmp_xrealloc(g->cand, sizeof(char *) * (size_t)g->cap);
        g->refs = mmp_xrealloc(g->refs, sizeof(char **) * (size_t)g->cap);
        g->nrefs = mmp_xrealloc(g->nrefs, sizeof(int) * (size_t)g->cap);
    }
    g->cand[g->n] = mmp_cap_tokenize(rec->text);
    if (!g->cand[g->n][0]) d->capr.empty++;
    g->refs[g->n] = dup_list(refs, 1);
    g->nrefs[g->n] = refs->n;
    if (d->capr.nex < MMP_REPORT_MAXEX) {
        mmp_capexample *ex = &d->capr.ex[d->capr.nex++];
        memset(ex, 0, sizeof *ex);
        ex->id = rec->id ? mmp_xstrdup(rec->id) : NULL;
        ex->text = mmp_xstrdup(rec->text);
        ex->refs = dup_list(refs, 0);
        ex->nrefs = refs->n;
        ex->index = g->n;
        const mmp_tensor *im = mmp_record_cget(rec, "image");
        if (!(im && encode_tensor(im, ex)) && rec->id) read_image_file(rec->id, ex);
    }
    g->n++;
    return 0;
}

static int add_vqa(mmp_report_data *d, const mmp_record *rec, const char *rname, uint64_t idx, char *err, size_t errlen) {
    struct mmp_report_gen *g = gen_of(d);
    const mmp_strlist *p = mmp_record_strings(rec, "prediction"), *a = mmp_record_strings(rec, "answers");
    if (p->n != 1)
        return mmp_errf(err, errlen, "%s: record %llu: \"prediction\" must hold one string, not %d", rname, (unsigned long long)idx, p->n);
    if (a->n == 0) {
        d->vqar.noanswers++;
        return 0;
    }
    if (g->nq == g->capq) {
        g->capq = g->capq ? g->capq * 2 : 1024;
        g->pred = mmp_xrealloc(g->pred, sizeof(char *) * (size_t)g->capq);
        g->ans = mmp_xrealloc(g->ans, sizeof(char **) * (size_t)g->capq);
        g->nans = mmp_xrealloc(g->nans, sizeof(int) * (size_t)g->capq);
        g->qtype = mmp_xrealloc(g->qtype, sizeof(char *) * (size_t)g->capq);
    }
    const char *t = mmp_record_string(rec, "qtype");
    g->pred[g->nq] = mmp_xstrdup(p->v[0]);
    g->ans[g->nq] = dup_list(a, 0);
    g->nans[g->nq] = a->n;
    g->qtype[g->nq] = t ? mmp_xstrdup(t) : NULL;
    g->nq++;
    return 0;
}

int mmp_report_gen_add(mmp_report_data *d, const mmp_record *rec, const char *rname, uint64_t idx, char *err, size_t errlen) {
    int k = mmp_report_gen_kind(rec);
    return k == 1 ? add_caption(d, rec, rname, idx, err, errlen) : k == 2 ? add_vqa(d, rec, rname, idx, err, errlen) : 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int in_vocab(char **sorted, int64_t n, const char *s) {
    return n > 0 && bsearch(&s, sorted, (size_t)n, sizeof(char *), cmp_str) != NULL;
}

static int compute_vqa(mmp_report_data *d, const mmp_header *h, const char *rname, char *err, size_t errlen) {
    struct mmp_report_gen *g = d->gen;
    mmp_vqareport *v = &d->vqar;
    /* the answer vocabulary: header metadata "vqa.answers" (a JSON array of
     * strings, as VQA checkpoints record it), else the class names */
    char **voc = NULL;
    int nv = 0;
    char e2[256];
    if (mmp_json_strings(mmp_meta_get(&h->meta, "vqa.answers"), &nv, &voc, e2, sizeof e2))
        return mmp_errf(err, errlen, "%s: header metadata \"vqa.answers\": %s", rname, e2);
    if (nv == 0) {
        free(voc);
        nv = h->nclasses;
        voc = mmp_xmalloc(sizeof(char *) * (size_t)(nv ? nv : 1));
        for (int i = 0; i < nv; i++) voc[i] = mmp_xstrdup(h->classes[i]);
    }
    qsort(voc, (size_t)nv, sizeof(char *), cmp_str);
    v->vocab = nv;
    double sum = 0, sm = 0, ss = 0;
    for (int64_t i = 0; i < g->nq; i++) {
        double acc;
        if (g->nans[i] >= 2) {
            acc = mmp_vqa_accuracy(g->pred[i], (const char *const *)g->ans[i], g->nans[i]);
            v->multi++;
            sm += acc;
        } else {
            acc = mmp_vqa_exact(g->pred[i], g->ans[i][0]);
            v->single++;
            ss += acc;
        }
        sum += acc;
        if (nv) {
            v->pred_oov += !in_vocab(voc, nv, g->pred[i]);
            int any = 0;
            for (int k = 0; k < g->nans[i] && !any; k++) any = in_vocab(voc, nv, g->ans[i][k]);
            v->ans_unseen += !any;
        }
        const char *t = g->qtype[i];
        if (t) {
            int k = 0;
            while (k < v->ntypes && strcmp(v->types[k], t)) k++;
            if (k == v->ntypes) {
                v->types = mmp_xrealloc(v->types, sizeof(char *) * (size_t)(k + 1));
                v->type_n = mmp_xrealloc(v->type_n, sizeof(int64_t) * (size_t)(k + 1));
                v->type_acc = mmp_xrealloc(v->type_acc, sizeof(double) * (size_t)(k + 1));
                v->types[k] = mmp_xstrdup(t);
                v->type_n[k] = 0;
                v->type_acc[k] = 0;
                v->ntypes++;
            }
            v->type_n[k]++;
            v->type_acc[k] += acc;
        }
    }
    for (int k = 0; k < v->ntypes; k++) v->type_acc[k] /= (double)v->type_n[k];
    v->n = g->nq;
    v->accuracy = sum / (double)g->nq;
    v->vqa_accuracy = v->multi ? sm / (double)v->multi : NAN;
    v->exact_accuracy = v->single ? ss / (double)v->single : NAN;
    free_list(voc, nv);
    return 0;
}

int mmp_report_gen_compute(mmp_report_data *d, const mmp_header *h, const char *rname, char *err, size_t errlen) {
    struct mmp_report_gen *g = gen_of(d);
    if (d->kind == 1) {
        if (g->n == 0) return mmp_errf(err, errlen, "%s: no image with reference captions to score", rname);
        char e2[256];
        if (mmp_capscores_compute(&d->capr.s, (const char *const *)g->cand, (const char *const *const *)g->refs, g->nrefs, (int)g->n,
                                  e2, sizeof e2))
            return mmp_errf(err, errlen, "%s: %s", rname, e2);
        d->capr.n = g->n;
    } else if (d->kind == 2) {
        if (g->nq == 0) return mmp_errf(err, errlen, "%s: no question with answers to score", rname);
        if (compute_vqa(d, h, rname, err, errlen)) return -1;
    }
    return 0;
}

void mmp_report_gen_free(mmp_report_data *d) {
    struct mmp_report_gen *g = d->gen;
    if (g) {
        for (int64_t i = 0; i < g->n; i++) {
            free(g->cand[i]);
            free_list(g->refs[i], g->nrefs[i]);
        }
        free(g->cand);
        free(g->refs);
        free(g->nrefs);
        for (int64_t i = 0; i < g->nq; i++) {
            free(g->pred[i]);
            free_list(g->ans[i], g->nans[i]);
            free(g->qtype[i]);
        }
        free(g->pred);
        free(g->ans);
        free(g->nans);
        free(g->qtype);
        keyset_free(&g->seen);
        free(g);
        d->gen = NULL;
    }
    mmp_capscores_free(&d->capr.s);
    for (int i = 0; i < d->capr.nex; i++) {
        mmp_capexample *ex = &d->capr.ex[i];
        free(ex->id);
        free(ex->text);
        free_list(ex->refs, ex->nrefs);
        free(ex->img);
    }
    d->capr.nex = 0;
    free_list(d->vqar.types, d->vqar.ntypes);
    free(d->vqar.type_n);
    free(d->vqar.type_acc);
    memset(&d->vqar, 0, sizeof d->vqar);
}

/* ------------------------------------------------------------------ */
/* rendering                                                           */
/* ------------------------------------------------------------------ */

static const char *const cap_names[6] = {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D"};
/* the keys of pycocoevalcap's COCOEvalCap.eval */
static const char *const cap_keys[6] = {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"};

static double cap_value(const mmp_capscores *s, int k) { return k < 4 ? s->bleu[k] : k == 4 ? s->rouge : s->cider; }

void mmp_report_gen_text(FILE *f, const mmp_report *r) {
    int dg = r->digits > 4 ? r->digits : 4;
    if (r->cap) {
        const mmp_capreport *c = r->cap;
        fprintf(f, "caption metrics (pycocoevalcap 1.2 scorers), %lld images\n", (long long)c->n);
        for (int k = 0; k < 6; k++) fprintf(f, "  %-8s %.*f\n", cap_names[k], dg, cap_value(&c->s, k));
        if (c->empty) fprintf(f, "  %lld generated captions empty (scored)\n", (long long)c->empty);
        if (c->duplicates) fprintf(f, "  %lld records of images already seen left out\n", (long long)c->duplicates);
        if (c->norefs) fprintf(f, "  %lld records without reference captions left out\n", (long long)c->norefs);
    }
    if (r->vqa) {
        const mmp_vqareport *v = r->vqa;
        if (v->multi) fprintf(f, "VQA accuracy (official evaluation) %.2f  (%lld questions with several answers)\n", 100 * v->vqa_accuracy, (long long)v->multi);
        if (v->single) fprintf(f, "exact-match accuracy %.2f  (%lld questions with one answer)\n", 100 * v->exact_accuracy, (long long)v->single);
        if (v->multi && v->single) fprintf(f, "overall accuracy %.2f  (%lld questions)\n", 100 * v->accuracy, (long long)v->n);
        if (v->ntypes) {
            int w = 13;
            for (int k = 0; k < v->ntypes; k++) w = (int)strlen(v->types[k]) > w ? (int)strlen(v->types[k]) : w;
            fprintf(f, "\n%-*s  accuracy  questions\n", w, "question type");
            for (int k = 0; k < v->ntypes; k++) fprintf(f, "%-*s  %8.2f  %9lld\n", w, v->types[k], 100 * v->type_acc[k], (long long)v->type_n[k]);
        }
        if (v->vocab)
            fprintf(f, "\nanswer vocabulary: %lld answers; predictions outside it %lld; questions with no answer in it %lld (answers unseen in training)\n",
                    (long long)v->vocab, (long long)v->pred_oov, (long long)v->ans_unseen);
        if (v->noanswers) fprintf(f, "%lld records without answers left out\n", (long long)v->noanswers);
    }
}

static void jd(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.17g", v);
    else fputs("null", f);
}

void mmp_report_gen_json(FILE *f, const mmp_report *r, int *first) {
    if (r->cap) {
        const mmp_capreport *c = r->cap;
        fputs(*first ? "\n  " : ",\n  ", f);
        *first = 0;
        fprintf(f, "\"captions\": {\"n\": %lld", (long long)c->n);
        for (int k = 0; k < 6; k++) {
            fprintf(f, ", \"%s\": ", cap_keys[k]);
            jd(f, cap_value(&c->s, k));
        }
        fprintf(f, ", \"empty\": %lld, \"duplicates\": %lld, \"no_references\": %lld, \"examples\": [", (long long)c->empty,
                (long long)c->duplicates, (long long)c->norefs);
        int ne = c->nex < r->examples ? c->nex : r->examples;
        for (int i = 0; i < ne; i++) {
            const mmp_capexample *ex = &c->ex[i];
            fputs(i ? ", {\"id\": " : "{\"id\": ", f);
            if (ex->id) mmp_json_str(f, ex->id);
            else fputs("null", f);
            fputs(", \"text\": ", f);
            mmp_json_str(f, ex->text);
            fputs(", \"references\": [", f);
            for (int k = 0; k < ex->nrefs; k++) {
                if (k) fputs(", ", f);
                mmp_json_str(f, ex->refs[k]);
            }
            fputs("], \"Bleu_4\": ", f);
            jd(f, c->s.bleu_img[ex->index * 4 + 3]);
            fputs(", \"CIDEr\": ", f);
            jd(f, c->s.cider_img[ex->index]);
            fputs("}", f);
        }
        fputs("]}", f);
    }
    if (r->vqa) {
        const mmp_vqareport *v = r->vqa;
        fputs(*first ? "\n  " : ",\n  ", f);
        *first = 0;
        fprintf(f, "\"vqa\": {\"n\": %lld, \"accuracy\": ", (long long)v->n);
        jd(f, v->accuracy);
        fprintf(f, ", \"vqa_accuracy\": ");
        jd(f, v->vqa_accuracy);
        fprintf(f, ", \"multi_answer\": %lld, \"exact_accuracy\": ", (long long)v->multi);
        jd(f, v->exact_accuracy);
        fprintf(f, ", \"one_answer\": %lld, \"no_answers\": %lld, \"per_question_type\": {", (long long)v->single, (long long)v->noanswers);
        for (int k = 0; k < v->ntypes; k++) {
            if (k) fputs(", ", f);
            mmp_json_str(f, v->types[k]);
            fprintf(f, ": {\"accuracy\": ");
            jd(f, v->type_acc[k]);
            fprintf(f, ", \"n\": %lld}", (long long)v->type_n[k]);
        }
        fputs("}", f);
        if (v->vocab)
            fprintf(f, ", \"answer_vocabulary\": {\"size\": %lld, \"predictions_outside\": %lld, \"questions_unseen\": %lld}", (long long)v->vocab,
                    (long long)v->pred_oov, (long long)v->ans_unseen);
        fputs("}", f);
    }
}


static void base64(FILE *f, const unsigned char *p, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        fputc(tab[v >> 18 & 63], f);
        fputc(tab[v >> 12 & 63], f);
        fputc(i + 1 < n ? tab[v >> 6 & 63] : '=', f);
        fputc(i + 2 < n ? tab[v & 63] : '=', f);
    }
}

void mmp_report_gen_html(FILE *f, const mmp_report *r) {
    if (r->cap) {
        const mmp_capreport *c = r->cap;
        fprintf(f, "<p class=\"big\" id=\"cider\">CIDEr-D: %.4f &nbsp; BLEU-4: %.4f</p>\n", c->s.cider, c->s.bleu[3]);
        fprintf(f, "<h2>Caption metrics (%lld images)</h2>\n<table id=\"captions\"><tr>", (long long)c->n);
        for (int k = 0; k < 6; k++) fprintf(f, "<th>%s</th>", cap_names[k]);
        fputs("</tr>\n<tr>", f);
        for (int k = 0; k < 6; k++) fprintf(f, "<td>%.4f</td>", cap_value(&c->s, k));
        fputs("</tr></table>\n<p>pycocoevalcap 1.2's Bleu(4), Rouge() and Cider() on PTB-like tokenized captions", f);
        if (c->duplicates || c->norefs || c->empty)
            fprintf(f, "; %lld duplicate records and %lld without references left out, %lld empty captions", (long long)c->duplicates,
                    (long long)c->norefs, (long long)c->empty);
        fputs(".</p>\n", f);
        int ne = c->nex < r->examples ? c->nex : r->examples;
        if (ne > 0) {
            fputs("<h2>Examples</h2>\n<div id=\"examples\">\n", f);
            for (int i = 0; i < ne; i++) {
                const mmp_capexample *ex = &c->ex[i];
                fputs("<div class=\"ex\">", f);
                if (ex->img) {
                    fprintf(f, "<img alt=\"image %d\" src=\"data:%s;base64,", i, ex->mime);
                    base64(f, ex->img, ex->nimg);
                    fputs("\">", f);
                }
                fputs("<div class=\"cap\"><p class=\"id\">", f);
                mmp_report_html_escape(f, ex->id ? ex->id : "");
                fputs("</p><p class=\"gen\"><b>", f);
                mmp_report_html_escape(f, ex->text);
                fprintf(f, "</b></p><p class=\"sc\">BLEU-4 %.3f, CIDEr-D %.3f</p><ul>", c->s.bleu_img[ex->index * 4 + 3],
                        c->s.cider_img[ex->index]);
                for (int k = 0; k < ex->nrefs; k++) {
                    fputs("<li>", f);
                    mmp_report_html_escape(f, ex->refs[k]);
                    fputs("</li>", f);
                }
                fputs("</ul></div></div>\n", f);
            }
            fputs("</div>\n", f);
        }
    }
    if (r->vqa) {
        const mmp_vqareport *v = r->vqa;
        if (v->multi)
            fprintf(f, "<p class=\"big\" id=\"vqa-accuracy\">VQA accuracy: %.2f</p>\n<p>official evaluation (vqaEval.py), %lld questions with several answers</p>\n",
                    100 * v->vqa_accuracy, (long long)v->multi);
        if (v->single)
            fprintf(f, "<p class=\"big\" id=\"exact-accuracy\">Accuracy: %.2f</p>\n<p>exact match after the answer normalization, %lld questions with one answer</p>\n",
                    100 * v->exact_accuracy, (long long)v->single);
        if (v->ntypes) {
            fputs("<h2>Per question type</h2>\n<table id=\"qtypes\"><tr><th>question type</th><th>accuracy</th><th>questions</th></tr>\n", f);
            for (int k = 0; k < v->ntypes; k++) {
                fputs("<tr><td style=\"text-align:left\">", f);
                mmp_report_html_escape(f, v->types[k]);
                fprintf(f, "</td><td>%.2f</td><td>%lld</td></tr>\n", 100 * v->type_acc[k], (long long)v->type_n[k]);
            }
            fputs("</table>\n", f);
        }
        if (v->vocab)
            fprintf(f, "<p id=\"vocab\">Answer vocabulary: %lld answers; predictions outside it: %lld; questions with no answer in it (answers unseen in training): %lld.</p>\n",
                    (long long)v->vocab, (long long)v->pred_oov, (long long)v->ans_unseen);
    }
}
