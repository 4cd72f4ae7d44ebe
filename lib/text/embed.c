/* mmp-embed-text's loop: texts of records (or lines) in, records with a text
 * embedding out (see text/embed.h and docs/text.md). */
#include "text/embed.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

typedef struct {
    const mmp_text_encoder *tm;
    const char *const *texts;
    const size_t *lens;
    int n, max_length, normalize, utf8;
    float *out;
    int rc, bad;
    char err[512];
} job;

static void *job_run(void *p) {
    job *j = p;
    j->rc = mmp_text_encoder_embed(j->tm, j->texts, j->lens, j->n, j->max_length, j->normalize, j->utf8, j->out,
                                   &j->bad, j->err, sizeof j->err);
    return NULL;
}

int mmp_text_embed_batches(const mmp_text_encoder *tm, const char *const *texts, const size_t *lens, int n, int batch,
                           int threads, int max_length, int normalize, int utf8, float *out, int *bad, char *err,
                           size_t errlen) {
    int H = tm->dim, nb = (n + batch - 1) / batch, rc = 0;
    job *jobs = mmp_xcalloc((size_t)(nb > 0 ? nb : 1), sizeof *jobs);
    pthread_t *th = mmp_xcalloc((size_t)(nb > 0 ? nb : 1), sizeof *th);
    for (int b0 = 0; b0 < nb && !rc; b0 += threads) {
        int b1 = b0 + threads < nb ? b0 + threads : nb;
        for (int b = b0; b < b1; b++) {
            job *j = &jobs[b];
            int s = b * batch, e = s + batch < n ? s + batch : n;
            *j = (job){tm, texts + s, lens + s, e - s, max_length, normalize, utf8, out + (size_t)s * H, 0, -1, ""};
            if (b1 - b0 == 1) job_run(j);
            else if (pthread_create(&th[b], NULL, job_run, j)) mmp_die("cannot create a thread");
        }
        if (b1 - b0 > 1)
            for (int b = b0; b < b1; b++) pthread_join(th[b], NULL);
        for (int b = b0; b < b1; b++)
            if (jobs[b].rc < 0) {
                *bad = b * batch + jobs[b].bad;
                rc = mmp_errf(err, errlen, "%s", jobs[b].err);
                break;
            }
    }
    free(jobs);
    free(th);
    return rc;
}

static char *apply_template(const char *tpl, const char *s) {
    const char *p = tpl ? strstr(tpl, "{}") : NULL;
    if (!p) return tpl ? mmp_xasprintf("%s", tpl) : mmp_xstrdup(s);
    return mmp_xasprintf("%.*s%s%s", (int)(p - tpl), tpl, s, p + 2);
}

int mmp_text_lines_read(mmp_text_lines *l, const char *path, const char *const *tpls, int ntpl, int utf8, char *err,
                        size_t errlen) {
    *l = (mmp_text_lines){0};
    const char *name = strcmp(path, "-") ? path : "stdin";
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return mmp_errf(err, errlen, "%s: cannot open", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lcap = 0, ccap = 0, rc = 0, per = ntpl > 1 ? ntpl : 1;
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if ((size_t)len != strlen(line)) {
            rc = mmp_errf(err, errlen, "%s: line %d: contains a NUL byte", name, l->nclasses + 1);
            break;
        }
        if (l->nclasses == ccap) {
            ccap = ccap ? 2 * ccap : 64;
            l->classes = mmp_xrealloc(l->classes, (size_t)ccap * sizeof *l->classes);
        }
        /* with --utf8 replace, ids and texts are written as valid UTF-8 */
        char *cls = utf8 == MMP_UTF8_REPLACE ? mmp_utf8_sanitize(line, (size_t)len) : mmp_xstrdup(line);
        l->classes[l->nclasses] = cls;
        for (int k = 0; k < per; k++) {
            if (l->n == lcap) {
                lcap = lcap ? 2 * lcap : 64;
                l->ids = mmp_xrealloc(l->ids, (size_t)lcap * sizeof *l->ids);
                l->texts = mmp_xrealloc(l->texts, (size_t)lcap * sizeof *l->texts);
                l->labels = mmp_xrealloc(l->labels, (size_t)lcap * sizeof *l->labels);
            }
            l->ids[l->n] = ntpl > 1 ? mmp_xasprintf("%s#%d", cls, k) : mmp_xstrdup(cls);
            l->texts[l->n] = apply_template(ntpl > 0 ? tpls[k] : NULL, cls);
            l->labels[l->n] = l->nclasses;
            l->n++;
        }
        l->nclasses++;
    }
    if (!rc && ferror(f)) rc = mmp_errf(err, errlen, "%s: read error", name);
    free(line);
    if (f != stdin) fclose(f);
    if (rc) mmp_text_lines_free(l);
    return rc;
}

void mmp_text_lines_free(mmp_text_lines *l) {
    for (int i = 0; i < l->n; i++) {
        free(l->ids[i]);
        free(l->texts[i]);
    }
    for (int i = 0; i < l->nclasses; i++) free(l->classes[i]);
    free(l->ids);
    free(l->texts);
    free(l->labels);
    free(l->classes);
    *l = (mmp_text_lines){0};
}

/* "text.template": the template, or a JSON array of them */
static char *templates_meta(const char *const *tpls, int ntpl) {
    if (ntpl == 1) return mmp_xstrdup(tpls[0]);
    size_t cap = 2, len = 0;
    char *s = mmp_xmalloc(cap);
    s[len++] = '[';
    for (int k = 0; k < ntpl; k++) {
        char *q = mmp_json_quote(tpls[k], MMP_JSON_ESC_NT | MMP_JSON_ESC_R);
        size_t ql = strlen(q);
        s = mmp_xrealloc(s, len + ql + 3);
        if (k) s[len++] = ',';
        memcpy(s + len, q, ql);
        len += ql;
        free(q);
    }
    s = mmp_xrealloc(s, len + 2);
    s[len++] = ']';
    s[len] = 0;
    return s;
}

void mmp_text_embed_header(const mmp_text_embed_opts *o, const mmp_header *ih, const mmp_text_lines *lines,
                           const char *const *tpls, int ntpl, mmp_header *oh) {
    const mmp_text_encoder *e = o->model;
    mmp_header_init(oh);
    if (ih) {
        mmp_header_copy(oh, ih);
        for (int k = 0; k < o->ndrops; k++) mmp_header_remove_field(oh, o->drops[k]);
    } else {
        mmp_header_set_classes(oh, lines->nclasses, lines->classes);
        if (ntpl > 0) {
            char *t = templates_meta(tpls, ntpl);
            mmp_meta_set(&oh->meta, "text.template", t);
            free(t);
        }
    }
    int64_t shp[1] = {e->dim};
    mmp_header_add_field(oh, o->field, o->dtype, 1, shp);
    const char *pooling = e->clip ? "eos" : "mean", *norm = o->normalize ? "true" : "false";
    mmp_meta_set(&oh->meta, "text.arch", e->arch);
    mmp_meta_set(&oh->meta, "text.weights", strrchr(e->weights, '/') ? strrchr(e->weights, '/') + 1 : e->weights);
    mmp_meta_set(&oh->meta, "text.weights_sha256", e->sha256);
    mmp_meta_set(&oh->meta, "text.pooling", pooling);
    mmp_meta_set(&oh->meta, "text.normalize", norm);
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%d", o->max_length);
    mmp_meta_set(&oh->meta, "text.max_length", tmp);
    mmp_meta_set(&oh->meta, "text.dtype", mmp_dtype_name(o->dtype));
    mmp_meta_set(&oh->meta, "text.field", o->field);
    char *tokdesc, *prov;
    if (e->bert) {
        const mmp_text_model *tm = e->bert;
        tokdesc = mmp_xasprintf("wordpiece:vocab=%d:lower=%s:unicode=%s", mmp_wp_vocab_size(tm->tok),
                                tm->lower ? "true" : "false", mmp_wp_unicode_version());
        prov = mmp_xasprintf("%s:pooling=mean:normalize=%s:max_length=%d:sha256=%s", e->arch, norm, o->max_length,
                             e->sha256);
    } else {
        const char *output = e->which == MMP_TX_OUT_POOLED ? "pooled" : "projection";
        snprintf(tmp, sizeof tmp, "%d", e->context);
        mmp_meta_set(&oh->meta, "text.context", tmp);
        mmp_meta_set(&oh->meta, "text.output", output);
        tokdesc = mmp_xasprintf("clip-bpe:vocab=%d:source=%s", mmp_bpe_vocab_size(e->bpe), e->tok_source);
        prov = mmp_xasprintf("%s:pooling=eos:output=%s:normalize=%s:max_length=%d:context=%d:sha256=%s", e->arch,
                             output, norm, o->max_length, e->context, e->sha256);
    }
    mmp_meta_set(&oh->meta, "text.tokenizer", tokdesc);
    free(tokdesc);
    mmp_meta_set(&oh->meta, "text_provenance", prov);
    free(prov);
}

int mmp_text_embed_stream(const mmp_text_embed_opts *o, mmp_reader *rd, const mmp_text_lines *lines,
                          const char *in_name, mmp_writer *w, char *err, size_t errlen) {
    const int H = o->model->dim, group = o->batch * o->threads;
    int64_t shp[1] = {H};
    mmp_record *recs = mmp_xcalloc((size_t)group, sizeof *recs);
    for (int i = 0; i < group; i++) mmp_record_init(&recs[i]);
    const char **texts = mmp_xmalloc((size_t)group * sizeof *texts);
    size_t *lens = mmp_xmalloc((size_t)group * sizeof *lens);
    float *emb = mmp_xmalloc((size_t)group * H * sizeof *emb);
    uint64_t *recnos = mmp_xmalloc((size_t)group * sizeof *recnos);
    uint64_t recno = 0, skipped = 0, done = 0;
    double t0 = mmp_now();
    int li = 0, rc = 0;
    while (!rc) {
        int n = 0;
        while (n < group) {
            mmp_record *r = &recs[n];
            if (lines) {
                if (li >= lines->n) break;
                mmp_record_clear(r);
                mmp_record_set_id(r, lines->ids[li]);
                r->label = lines->labels[li];
                mmp_record_set_text(r, lines->texts[li]);
                li++;
                recno++;
            } else {
                int k = mmp_reader_next(rd, r);
                if (k < 0) rc = mmp_errf(err, errlen, "%s", mmp_reader_error(rd));
                if (k <= 0) break;
                recno++;
                if (!r->text) {
                    if (o->missing_skip) {
                        skipped++;
                        continue;
                    }
                    rc = mmp_errf(err, errlen, "%s: record %llu%s%s%s: no text (--missing-text skip to skip such records)",
                                  in_name, (unsigned long long)recno, r->id ? " (id " : "", r->id ? r->id : "",
                                  r->id ? ")" : "");
                    break;
                }
                for (int k = 0; k < o->ndrops; k++) mmp_record_remove(r, o->drops[k]);
            }
            recnos[n] = recno;
            texts[n] = r->text;
            lens[n] = strlen(r->text);
            n++;
        }
        if (rc || n == 0) break;
        int bad = -1;
        char e[512];
        if (mmp_text_embed_batches(o->model, texts, lens, n, o->batch, o->threads, o->max_length, o->normalize, o->utf8,
                                   emb, &bad, e, sizeof e) < 0) {
            mmp_record *r = &recs[bad];
            int id = r->id && !lines;
            rc = mmp_errf(err, errlen, "%s: %s %llu%s%s%s: %s (--utf8 replace to replace invalid bytes)", in_name,
                          lines ? "line" : "record",
                          lines ? (unsigned long long)r->label + 1 : (unsigned long long)recnos[bad], id ? " (id " : "",
                          id ? r->id : "", id ? ")" : "", e);
            break;
        }
        for (int i = 0; i < n; i++) {
            mmp_tensor *t = mmp_record_add(&recs[i], o->field, o->dtype, 1, shp);
            mmp_f32_to_dtype(emb + (size_t)i * H, (size_t)H, o->dtype, t->data);
            mmp_writer_write(w, &recs[i]);
        }
        done += (uint64_t)n;
        mmp_progress_count(NULL, "texts", done, 0, t0);
    }
    if (!rc) {
        mmp_progress_done();
        if (skipped) mmp_writer_add_skipped(w, skipped);
    }
    for (int i = 0; i < group; i++) mmp_record_clear(&recs[i]);
    free(recs);
    free(texts);
    free(lens);
    free(emb);
    free(recnos);
    return rc;
}
