/* mmp_report_read / mmp_report_compute on generated captions and VQA
 * predictions (in-memory streams with string lists): the caption metrics of
 * raw captions equal pycocoevalcap's on PTBTokenizer's tokens
 * (tests/fixtures/capmetrics/scores_coco.json), duplicates and records
 * without references left out, example images; the VQA accuracy equal to the
 * vqaEval.py reimplementation (tests/fixtures/vqaeval), per question type,
 * the answer vocabulary counts, one-answer questions; the text/JSON/HTML
 * sections; bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "mmp.h"
#include "stream_testlib.h"
#include "testlib.h"
#include "train/report.h"

static json_t *load(const char *rel) {
    char err[512];
    json_t *j = NULL;
    if (mmp_json_load(t_root_path(rel), &j, err, sizeof err) != 1) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    return j;
}

static const char *sget(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

static int list_of(json_t *a, const char **out, int max) {
    int n = (int)json_array_size(a);
    for (int i = 0; i < n && i < max; i++) out[i] = json_string_value(json_array_get(a, (size_t)i));
    return n;
}

static int close_rel(double a, double b) { return fabs(a - b) <= 1e-12 * fmax(fabs(b), 1e-300) || a == b; }

/* renders the three reports into strings */
static char *render(void (*w)(FILE *, const mmp_report *), const mmp_report *r) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    w(f, r);
    fclose(f);
    return buf;
}

static int read_stream(mem *m, mmp_report_data *d, mmp_report *rep, char *err, size_t errlen) {
    mmp_reader *r = mmp_reader_open_mem(m->buf, m->n, "mem", err, errlen);
    if (!r) return -1;
    memset(rep, 0, sizeof *rep);
    int ks[1] = {1};
    int rc = mmp_report_read(d, r, 0.5, err, errlen);
    if (!rc) rc = mmp_report_compute(d, mmp_reader_header(r), "mem", ks, 1, rep, err, errlen);
    mmp_reader_close(r);
    return rc;
}

static void test_captions(void) {
    json_t *j = load("tests/fixtures/capmetrics/scores_coco.json"), *imgs = json_object_get(j, "images");
    int n = (int)json_array_size(imgs);
    mmp_header h;
    mmp_header_init(&h);
    int64_t s[3] = {8, 6, 3};
    mmp_header_add_field(&h, "image", MMP_U8, 3, s);
    mem m;
    mmp_writer *w = t_mem_writer(&m, "mem", &h);
    for (int i = 0; i < n; i++) {
        json_t *im = json_array_get(imgs, (size_t)i);
        const char *refs[8];
        int nr = list_of(json_object_get(im, "refs_raw"), refs, 8);
        mmp_record r;
        mmp_record_init(&r);
        char id[32];
        snprintf(id, sizeof id, "img%02d.jpg", i);
        mmp_record_set_id(&r, id);
        mmp_record_set_text(&r, sget(im, "cand_raw"));
        mmp_record_set_strings(&r, "captions", refs, nr);
        unsigned char *p = mmp_record_add(&r, "image", MMP_U8, 3, s)->data; /* examples with a picture */
        for (int k = 0; k < 8 * 6 * 3; k++) p[k] = (unsigned char)(k * 5 + i);
        mmp_writer_write(w, &r);
        if (i == 2) { /* the same image again (other text): left out */
            mmp_record_set_text(&r, "something else entirely");
            mmp_writer_write(w, &r);
            mmp_record_set_id(&r, "norefs");
            mmp_record_set_strings(&r, "captions", NULL, 0);
            mmp_writer_write(w, &r);
        }
        mmp_record_clear(&r);
    }
    t_mem_close(&m, w);
    mmp_report_data d;
    mmp_report rep;
    char err[512] = "";
    CHECKF(read_stream(&m, &d, &rep, err, sizeof err) == 0, "%s", err);
    CHECK(rep.cap && !rep.vqa && !rep.cls && rep.cap->n == n && rep.cap->duplicates == 1 && rep.cap->norefs == 1 && rep.cap->empty == 1);
    if (rep.cap) {
        const mmp_capscores *s = &rep.cap->s;
        for (int k = 0; k < 4; k++)
            CHECKF(close_rel(s->bleu[k], json_real_value(json_array_get(json_object_get(j, "bleu"), (size_t)k))), "BLEU-%d %.17g", k + 1,
                   s->bleu[k]);
        CHECKF(close_rel(s->rouge, json_real_value(json_object_get(j, "rouge"))), "ROUGE-L %.17g", s->rouge);
        CHECKF(close_rel(s->cider, json_real_value(json_object_get(j, "cider"))), "CIDEr %.17g", s->cider);
        for (int i = 0; i < n; i++)
            CHECK(close_rel(s->cider_img[i], json_real_value(json_object_get(json_array_get(imgs, (size_t)i), "cider"))));
        CHECK(rep.cap->nex == n && rep.cap->ex[1].img && !strcmp(rep.cap->ex[1].mime, "image/jpeg"));
        CHECK(rep.cap->ex[3].index == 3 && !strcmp(rep.cap->ex[3].id, "img03.jpg"));
        rep.examples = 2;
        rep.digits = 2;
        char *t = render(mmp_report_write_text, &rep), *js = render(mmp_report_write_json, &rep), *ht = render(mmp_report_write_html, &rep);
        char want[64];
        snprintf(want, sizeof want, "CIDEr-D  %.4f", s->cider);
        CHECKF(strstr(t, want) && strstr(t, "1 records of images already seen left out"), "%s", t);
        json_t *o = mmp_json_parse(js, strlen(js), 1, err, sizeof err), *c = json_object_get(o, "captions");
        CHECKF(o && json_real_value(json_object_get(c, "CIDEr")) == s->cider && json_real_value(json_object_get(c, "Bleu_4")) == s->bleu[3] &&
                   json_array_size(json_object_get(c, "examples")) == 2,
               "%s", js);
        json_decref(o);
        CHECK(strstr(ht, "id=\"examples\"") && strstr(ht, "src=\"data:image/jpeg;base64,/9j/") && strstr(ht, "A man riding a horse on a dirt road."));
        free(t);
        free(js);
        free(ht);
    }
    mmp_report_data_free(&d);
    free(m.buf);
    mmp_header_free(&h);
    json_decref(j);
}

static void test_vqa(void) {
    json_t *j = load("tests/fixtures/vqaeval/vqaeval.json"), *qs = json_object_get(j, "questions");
    int n = (int)json_array_size(qs);
    mmp_header h;
    mmp_header_init(&h);
    char *vocab[5] = {"yes", "no", "2", "red", "left"};
    mmp_header_set_classes(&h, 5, vocab);
    mem m;
    mmp_writer *w = t_mem_writer(&m, "mem", &h);
    int64_t oov = 0, unseen = 0;
    for (int i = 0; i < n; i++) {
        json_t *q = json_array_get(qs, (size_t)i);
        const char *ans[10], *pred = sget(q, "prediction"), *qt = sget(q, "qtype");
        int na = list_of(json_object_get(q, "answers"), ans, 10), any = 0, pin = 0;
        for (int k = 0; k < 5; k++) {
            pin |= !strcmp(pred, vocab[k]);
            for (int a = 0; a < na; a++) any |= !strcmp(ans[a], vocab[k]);
        }
        oov += !pin;
        unseen += !any;
        mmp_record r;
        mmp_record_init(&r);
        mmp_record_set_text(&r, "a question?");
        mmp_record_set_strings(&r, "prediction", &pred, 1);
        mmp_record_set_strings(&r, "answers", ans, na);
        mmp_record_set_strings(&r, "qtype", &qt, 1);
        mmp_writer_write(w, &r);
        mmp_record_clear(&r);
    }
    t_mem_close(&m, w);
    mmp_report_data d;
    mmp_report rep;
    char err[512] = "";
    CHECKF(read_stream(&m, &d, &rep, err, sizeof err) == 0, "%s", err);
    CHECK(rep.vqa && !rep.cap && !rep.cls);
    if (rep.vqa) {
        const mmp_vqareport *v = rep.vqa;
        CHECK(v->n == n && v->multi == n && v->single == 0 && isnan(v->exact_accuracy));
        CHECKF(v->accuracy == json_real_value(json_object_get(j, "overall")) && v->vqa_accuracy == v->accuracy, "%.17g", v->accuracy);
        json_t *per = json_object_get(j, "per_qtype");
        CHECK(v->ntypes == (int)json_object_size(per));
        for (int k = 0; k < v->ntypes; k++)
            CHECKF(v->type_acc[k] == json_real_value(json_object_get(per, v->types[k])), "type %s", v->types[k]);
        CHECK(v->vocab == 5 && v->pred_oov == oov && v->ans_unseen == unseen && oov > 0 && unseen > 0);
        rep.digits = 2;
        char *t = render(mmp_report_write_text, &rep), *js = render(mmp_report_write_json, &rep), *ht = render(mmp_report_write_html, &rep);
        char want[96];
        snprintf(want, sizeof want, "VQA accuracy (official evaluation) %.2f", 100 * v->accuracy);
        CHECKF(strstr(t, want) && strstr(t, "how many"), "%s", t);
        json_t *o = mmp_json_parse(js, strlen(js), 1, err, sizeof err), *vq = json_object_get(o, "vqa");
        CHECKF(o && json_real_value(json_object_get(vq, "accuracy")) == v->accuracy &&
                   json_integer_value(json_object_get(json_object_get(vq, "answer_vocabulary"), "predictions_outside")) == oov,
               "%s", js);
        json_decref(o);
        CHECK(strstr(ht, "id=\"vqa-accuracy\"") && strstr(ht, "id=\"qtypes\""));
        free(t);
        free(js);
        free(ht);
    }
    mmp_report_data_free(&d);
    free(m.buf);
    mmp_header_free(&h);
    json_decref(j);
}

/* one answer per question: exact match after normalization */
static void test_vqa_one_answer(void) {
    const char *pa[][2] = {{"Two", "2"}, {"the cat", "cat"}, {"dog", "cat"}, {"yes.", "yes"}};
    mmp_header h;
    mmp_header_init(&h);
    mem m;
    mmp_writer *w = t_mem_writer(&m, "mem", &h);
    for (int i = 0; i < 4; i++) {
        mmp_record r;
        mmp_record_init(&r);
        mmp_record_set_strings(&r, "prediction", &pa[i][0], 1);
        mmp_record_set_strings(&r, "answers", &pa[i][1], 1);
        mmp_writer_write(w, &r);
        if (i == 0) { /* no answers: left out */
            mmp_record_set_strings(&r, "answers", NULL, 0);
            mmp_writer_write(w, &r);
        }
        mmp_record_clear(&r);
    }
    t_mem_close(&m, w);
    mmp_report_data d;
    mmp_report rep;
    char err[512] = "";
    CHECKF(read_stream(&m, &d, &rep, err, sizeof err) == 0, "%s", err);
    CHECK(rep.vqa && rep.vqa->single == 4 && rep.vqa->multi == 0 && rep.vqa->exact_accuracy == 0.75 && isnan(rep.vqa->vqa_accuracy) &&
          rep.vqa->noanswers == 1 && rep.vqa->vocab == 0 && rep.vqa->ntypes == 0);
    mmp_report_data_free(&d);
    free(m.buf);
    mmp_header_free(&h);
}

/* bad input: one line naming the record */
static void test_bad(void) {
    for (int c = 0; c < 3; c++) {
        mmp_header h;
        mmp_header_init(&h);
        int64_t s[1] = {2};
        if (c == 1) mmp_header_add_field(&h, "probs", MMP_F32, 1, s);
        mem m;
        mmp_writer *w = t_mem_writer(&m, "mem", &h);
        mmp_record r;
        mmp_record_init(&r);
        const char *cap = "a dog", *two[2] = {"x", "y"};
        mmp_record_set_strings(&r, "captions", &cap, 1);
        if (c != 0) mmp_record_set_text(&r, "a dog");
        if (c == 1) mmp_record_add(&r, "probs", MMP_F32, 1, s);
        mmp_writer_write(w, &r);
        mmp_record_clear(&r);
        if (c == 1) { /* a classification record after a caption record */
            mmp_record_add(&r, "probs", MMP_F32, 1, s);
            r.label = 0;
        } else if (c == 2) { /* a VQA record with two predictions */
            mmp_record_set_strings(&r, "prediction", two, 2);
            mmp_record_set_strings(&r, "answers", two, 2);
        }
        if (c) mmp_writer_write(w, &r);
        mmp_record_clear(&r);
        t_mem_close(&m, w);
        mmp_report_data d;
        mmp_report rep;
        char err[512] = "";
        CHECK(read_stream(&m, &d, &rep, err, sizeof err) == -1);
        const char *want[3] = {"record 0: reference \"captions\" but no generated \"text\"", "record 1: the first record has caption records",
                               "record 1: the first record has caption records (\"captions\"), this one VQA records"};
        CHECKF(strstr(err, want[c]) != NULL, "case %d: %s", c, err);
        mmp_report_data_free(&d);
        free(m.buf);
        mmp_header_free(&h);
    }
}

int main(void) {
    test_captions();
    test_vqa();
    test_vqa_one_answer();
    test_bad();
    TEST_END();
}
