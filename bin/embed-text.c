/* mmp-embed-text: text embeddings (BERT-family sentence encoders, e.g.
 * all-MiniLM-L6-v2) for the records of an mmp stream, or for plain lines. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mmp.h"
#include "text/bert.h"

void openblas_set_num_threads(int);

static const char usage[] =
    "usage: mmp-embed-text --model DIR|FILE.safetensors [options] [IN.mmp|-] > out.mmp\n"
    "       mmp-embed-text --model DIR --lines [--template 'a photo of a {}'] [FILE|-] > prompts.mmp\n"
    "Embeds each record's text with a BERT-family sentence encoder (sentence-transformers\n"
    "layout: model.safetensors, config.json, vocab.txt, sentence_bert_config.json,\n"
    "modules.json): WordPiece tokens -> BertModel -> mean pooling over the tokens\n"
    "-> optional L2 normalization. Adds the tensor 'text_embedding' [hidden]; every\n"
    "other field, the id, label and text pass through unchanged.\n\n";

typedef struct {
    const mmp_text_model *tm;
    const char *const *texts;
    const size_t *lens;
    int n, max_length, normalize, utf8;
    float *out;
    int rc, bad;
    char err[512];
} job;

static void *job_run(void *p) {
    job *j = p;
    j->rc = mmp_text_embed(j->tm, j->texts, j->lens, j->n, j->max_length, j->normalize, j->utf8, j->out, &j->bad,
                           j->err, sizeof j->err);
    return NULL;
}

/* Embeds n texts in batches of `batch`, `threads` batches at a time; on a UTF-8 error
 * returns -1 with *bad = index and the message. The batch split depends only on
 * `batch`, so results do not depend on the thread count. */
static int embed_all(const mmp_text_model *tm, const char *const *texts, const size_t *lens, int n, int batch,
                     int threads, int max_length, int normalize, int utf8, float *out, int *bad, char *err,
                     size_t errlen) {
    int H = tm->bert.cfg.hidden, nb = (n + batch - 1) / batch;
    job *jobs = mmp_xcalloc((size_t)(nb > 0 ? nb : 1), sizeof *jobs);
    pthread_t *th = mmp_xcalloc((size_t)(nb > 0 ? nb : 1), sizeof *th);
    for (int b0 = 0; b0 < nb; b0 += threads) {
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
                snprintf(err, errlen, "%s", jobs[b].err);
                free(jobs);
                free(th);
                return -1;
            }
    }
    free(jobs);
    free(th);
    return 0;
}

static char *apply_template(const char *tpl, const char *s) {
    const char *p = tpl ? strstr(tpl, "{}") : NULL;
    if (!p) return tpl ? mmp_xasprintf("%s", tpl) : mmp_xstrdup(s);
    return mmp_xasprintf("%.*s%s%s", (int)(p - tpl), tpl, s, p + 2);
}

typedef struct {
    const char *names[MMP_MAX_FIELDS];
    int n;
} droplist;

/* --drop NAME, --drop-image: repeatable (at most MMP_MAX_FIELDS kept) */
static int opt_drop(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    droplist *d = t;
    if (d->n < MMP_MAX_FIELDS) d->names[d->n++] = v;
    return 0;
}

int main(int argc, char **argv) {
    mmp_cli_init("mmp-embed-text");
    const char *model = NULL, *out = "-", *tpl = NULL, *field = "text_embedding";
    droplist dl = {.n = 0};
    int lines = 0, normalize = -1, heads = 0, missing_skip = 0, utf8i = 0, dtype_i = 0, drop_image = 0, threads = 1;
    long long max_length = 0, batch = 32;
    static const char *const dtypes[] = {"f32", "f16", NULL}, *const missing_names[] = {"error", "skip", NULL},
                             *const utf8_names[] = {"error", "replace", NULL};
    mmp_option opts[] = {
        MMP_O_STRING("model", 0, &model, "PATH", "folder (model.safetensors + vocab.txt + configs) or .safetensors file"),
        MMP_O_FLAG("lines", 0, &lines,
                   "input is plain UTF-8 text, one item a line: id = the line,\n"
                   "label = line number (0-based), classes = the lines"),
        MMP_O_STRING("template", 0, &tpl, "T", "with --lines: text = T with '{}' replaced by the line"),
        MMP_O_LLONG("max-length", 0, &max_length, 2, 1 << 20, "N",
                    "tokens incl. [CLS]/[SEP] (default: the model's max_seq_length, else 256)"),
        MMP_O_SET("normalize", 0, &normalize, 1, "L2-normalize (default: on when modules.json has Normalize)"),
        MMP_O_SET("no-normalize", 0, &normalize, 0, "do not"),
        MMP_O_INT("heads", 0, &heads, 1, 4096, "N", "attention heads when there is no config.json"),
        MMP_O_LLONG("batch", 0, &batch, 1, 65536, "N", "texts per forward pass (default 32)"),
        MMP_O_THREADS(&threads, "worker threads (default 1); output is bit-identical for any N"),
        MMP_O_CHOICE("dtype", 0, &dtype_i, dtypes, "output dtype (default f32)"),
        MMP_O_STRING("field", 0, &field, "NAME", "output field name (default text_embedding)"),
        MMP_O_FLAG("drop-image", 0, &drop_image, "drop the 'image' field (same as --drop image)"),
        MMP_O_CALL("drop", 0, opt_drop, &dl, "NAME", "drop this field (repeatable)"),
        MMP_O_CHOICE("missing-text", 0, &missing_skip, missing_names, "records without text: error (default) or skip (counted)"),
        MMP_O_CHOICE("utf8", 0, &utf8i, utf8_names, "invalid UTF-8: error (default) or U+FFFD (then dropped by BERT's cleaning)"),
        MMP_O_OUTPUT(&out, "output (default stdout)"),
        MMP_O_COMMON,
        MMP_O_END,
    };
    const char *in = mmp_cli_parse_input(argc, argv, opts, usage);
    if (drop_image && dl.n < MMP_MAX_FIELDS) dl.names[dl.n++] = "image";
    const char *const *drops = dl.names;
    int ndrops = dl.n;
    int utf8 = utf8i ? MMP_UTF8_REPLACE : MMP_UTF8_ERROR;
    mmp_dtype dtype = dtype_i ? MMP_F16 : MMP_F32;
    if (!model) mmp_die("--model is required (see --help)");
    if (tpl && !lines) mmp_die("--template needs --lines");
    if (strlen(field) >= 64) mmp_die("--field name too long");
    openblas_set_num_threads(1);
    mmp_text_model tm;
    char err[1024];
    if (mmp_text_model_load(&tm, model, heads, err, sizeof err) < 0) mmp_die("%s", err);
    if (normalize < 0) normalize = tm.normalize;
    int maxlen = max_length > 0 ? (int)max_length : tm.max_length;
    if (maxlen > tm.bert.cfg.max_pos) mmp_die("--max-length %d > the model's %d positions", maxlen, tm.bert.cfg.max_pos);
    const int H = tm.bert.cfg.hidden;
    const char *base = strrchr(tm.bert.path, '/');
    base = base ? base + 1 : tm.bert.path;
    char *prov = mmp_xasprintf("%s:pooling=mean:normalize=%s:max_length=%d:sha256=%s", tm.arch, normalize ? "true" : "false",
                               maxlen, tm.bert.sha256);

    mmp_header oh;
    mmp_header_init(&oh);
    mmp_reader *rd = NULL;
    char **lt = NULL, **ltext = NULL;
    int nl = 0;
    const char *inname = strcmp(in, "-") ? in : "stdin";
    if (lines) {
        FILE *f = strcmp(in, "-") ? fopen(in, "rb") : stdin;
        if (!f) mmp_die("%s: cannot open", in);
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        int lcap = 0;
        while ((len = getline(&line, &cap, f)) >= 0) {
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
            if ((size_t)len != strlen(line)) mmp_die("%s: line %d: contains a NUL byte", inname, nl + 1);
            if (nl == lcap) {
                lcap = lcap ? 2 * lcap : 64;
                lt = mmp_xrealloc(lt, (size_t)lcap * sizeof *lt);
                ltext = mmp_xrealloc(ltext, (size_t)lcap * sizeof *ltext);
            }
            /* with --utf8 replace, ids and texts are written as valid UTF-8 */
            lt[nl] = utf8 == MMP_UTF8_REPLACE ? mmp_utf8_sanitize(line, (size_t)len) : mmp_xstrdup(line);
            ltext[nl] = apply_template(tpl, lt[nl]);
            nl++;
        }
        if (ferror(f)) mmp_die("%s: read error", inname);
        free(line);
        if (f != stdin) fclose(f);
        mmp_header_set_classes(&oh, nl, lt);
        if (tpl) mmp_meta_set(&oh.meta, "text.template", tpl);
    } else {
        rd = mmp_reader_open_or_die(in);
        mmp_header_copy(&oh, mmp_reader_header(rd));
        for (int k = 0; k < ndrops; k++) mmp_header_remove_field(&oh, drops[k]);
    }
    int64_t shp[1] = {H};
    mmp_header_add_field(&oh, field, dtype, 1, shp);
    mmp_meta_set(&oh.meta, "text.arch", tm.arch);
    mmp_meta_set(&oh.meta, "text.weights", base);
    mmp_meta_set(&oh.meta, "text.weights_sha256", tm.bert.sha256);
    mmp_meta_set(&oh.meta, "text.pooling", "mean");
    mmp_meta_set(&oh.meta, "text.normalize", normalize ? "true" : "false");
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%d", maxlen);
    mmp_meta_set(&oh.meta, "text.max_length", tmp);
    mmp_meta_set(&oh.meta, "text.dtype", mmp_dtype_name(dtype));
    mmp_meta_set(&oh.meta, "text.field", field);
    char *tokdesc = mmp_xasprintf("wordpiece:vocab=%d:lower=%s:unicode=%s", mmp_wp_vocab_size(tm.tok),
                                  tm.lower ? "true" : "false", mmp_wp_unicode_version());
    mmp_meta_set(&oh.meta, "text.tokenizer", tokdesc);
    free(tokdesc);
    mmp_meta_set(&oh.meta, "text_provenance", prov);
    mmp_header_stamp(&oh, argc, argv);
    mmp_writer *w = mmp_writer_open(out, &oh, 0);

    int group = (int)(batch * threads);
    mmp_record *recs = mmp_xcalloc((size_t)group, sizeof *recs);
    for (int i = 0; i < group; i++) mmp_record_init(&recs[i]);
    const char **texts = mmp_xmalloc((size_t)group * sizeof *texts);
    size_t *lens = mmp_xmalloc((size_t)group * sizeof *lens);
    float *emb = mmp_xmalloc((size_t)group * H * sizeof *emb);
    uint64_t *recnos = mmp_xmalloc((size_t)group * sizeof *recnos);
    uint64_t recno = 0, skipped = 0, done = 0;
    int li = 0;
    for (;;) {
        int n = 0;
        while (n < group) {
            mmp_record *r = &recs[n];
            if (lines) {
                if (li >= nl) break;
                mmp_record_clear(r);
                mmp_record_set_id(r, lt[li]);
                r->label = li;
                mmp_record_set_text(r, ltext[li]);
                li++;
                recno++;
            } else {
                if (!mmp_reader_next_or_die(rd, r)) break;
                recno++;
                if (!r->text) {
                    if (missing_skip) {
                        skipped++;
                        continue;
                    }
                    mmp_die("%s: record %llu%s%s%s: no text (--missing-text skip to skip such records)", inname,
                            (unsigned long long)recno, r->id ? " (id " : "", r->id ? r->id : "", r->id ? ")" : "");
                }
                for (int k = 0; k < ndrops; k++) mmp_record_remove(r, drops[k]);
            }
            recnos[n] = recno;
            texts[n] = r->text;
            lens[n] = strlen(r->text);
            n++;
        }
        if (n == 0) break;
        int bad = -1;
        if (embed_all(&tm, texts, lens, n, (int)batch, (int)threads, maxlen, normalize, utf8, emb, &bad, err, sizeof err) < 0) {
            mmp_record *r = &recs[bad];
            mmp_die("%s: %s %llu%s%s%s: %s (--utf8 replace to replace invalid bytes)", inname, lines ? "line" : "record",
                    (unsigned long long)recnos[bad], r->id && !lines ? " (id " : "", r->id && !lines ? r->id : "",
                    r->id && !lines ? ")" : "", err);
        }
        for (int i = 0; i < n; i++) {
            mmp_tensor *t = mmp_record_add(&recs[i], field, dtype, 1, shp);
            mmp_f32_to_dtype(emb + (size_t)i * H, (size_t)H, dtype, t->data);
            mmp_writer_write(w, &recs[i]);
        }
        done += (uint64_t)n;
        mmp_progress("%llu texts", (unsigned long long)done);
    }
    mmp_progress_done();
    if (skipped) mmp_writer_add_skipped(w, skipped);
    mmp_writer_close(w);
    if (rd) mmp_reader_close(rd);
    for (int i = 0; i < group; i++) mmp_record_clear(&recs[i]);
    for (int i = 0; i < nl; i++) {
        free(lt[i]);
        free(ltext[i]);
    }
    free(lt);
    free(ltext);
    free(recs);
    free(texts);
    free(lens);
    free(emb);
    free(recnos);
    free(prov);
    mmp_header_free(&oh);
    mmp_text_model_free(&tm);
    return 0;
}
