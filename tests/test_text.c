/* BERT text encoder vs the PyTorch reference (HF BertModel math) on a random-weight
 * tiny BERT written by tests/fixtures/gen_text.py: token ids, last hidden state,
 * mean pooling, L2 normalization; the "bert." prefix; config/heads handling. */
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"
#include "mmp.h"
#include "testlib.h"
#include "text/bert.h"

static int read_lines_hex(const char *path, char **texts, size_t *lens, int max) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[8192];
    int n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        size_t L = strcspn(line, "\n");
        texts[n] = malloc(L / 2 + 1);
        for (size_t i = 0; i + 1 < L; i += 2) {
            unsigned v;
            sscanf(line + i, "%2x", &v);
            texts[n][i / 2] = (char)v;
        }
        lens[n] = L / 2;
        texts[n][L / 2] = 0;
        n++;
    }
    fclose(f);
    return n;
}

static void copy_file(const char *from, const char *to) {
    size_t n;
    char *d = mmp_read_small_file(from, &n);
    FILE *f = fopen(to, "wb");
    if (d && f) fwrite(d, 1, n, f);
    if (f) fclose(f);
    free(d);
}

int main(void) {
    char err[512];
    mmp_text_model tm;
    const char *dir = t_root_path("tests/fixtures/text/tiny_bert");
    int rc = mmp_text_model_load(&tm, dir, 0, err, sizeof err);
    CHECKF(rc == 0, "load: %s", err);
    if (rc) TEST_END();
    const mmp_bert_config *c = &tm.bert.cfg;
    CHECK(c->layers == 2 && c->hidden == 32 && c->heads == 4 && c->inter == 64 && c->max_pos == 64);
    CHECK(tm.max_length == 16); /* sentence_bert_config.json */
    CHECK(tm.normalize == 0);   /* no modules.json */
    CHECK(strcmp(tm.arch, "bert-L2-H32-A4") == 0);

    mmp_safetensors ref;
    mmp_st_open_or_die(&ref, t_root_path("tests/fixtures/text/tiny_ref.safetensors"));
    const mmp_tensor *rid = mmp_st_get(&ref, "input_ids"), *rmask = mmp_st_get(&ref, "attention_mask");
    const mmp_tensor *rhid = mmp_st_get(&ref, "hidden"), *rmean = mmp_st_get(&ref, "mean"),
                     *rnorm = mmp_st_get(&ref, "normalized");
    CHECK(rid && rmask && rhid && rmean && rnorm);
    if (!rid || !rmask || !rhid || !rmean || !rnorm) TEST_END();
    int B = (int)rid->shape[0], Lmax = (int)rid->shape[1], H = c->hidden;

    char *texts[32];
    size_t lens[32];
    int n = read_lines_hex(t_root_path("tests/fixtures/text/sentences.txt"), texts, lens, 32);
    CHECK(n == B);
    if (n != B) TEST_END();

    /* token ids and lengths = reference (padded batch + mask) */
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)B * 16);
    int sl[32], T = 0, truncated = 0;
    for (int i = 0; i < B; i++) {
        sl[i] = mmp_wp_encode(tm.tok, texts[i], lens[i], tm.max_length, MMP_UTF8_ERROR, ids + T, err, sizeof err);
        const int32_t *r = (const int32_t *)rid->data + (size_t)i * Lmax, *mk = (const int32_t *)rmask->data + (size_t)i * Lmax;
        int rl = 0;
        for (int j = 0; j < Lmax; j++) rl += mk[j];
        CHECKF(sl[i] == rl, "sentence %d: %d tokens, reference %d", i, sl[i], rl);
        for (int j = 0; j < sl[i] && j < rl; j++) CHECKF(ids[T + j] == r[j], "sentence %d token %d: %d vs %d", i, j, ids[T + j], r[j]);
        if (sl[i] == 16) truncated++;
        T += sl[i];
    }
    CHECK(truncated >= 1); /* the fixture exercises truncation */

    /* last hidden state of every real token */
    float *hid = malloc(sizeof(float) * (size_t)T * H);
    mmp_bert_forward(&tm.bert, ids, sl, B, hid);
    double worst = 0;
    for (int i = 0, t = 0; i < B; i++)
        for (int j = 0; j < sl[i]; j++, t++) {
            double w = t_maxrel(hid + (size_t)t * H, (const float *)rhid->data + ((size_t)i * Lmax + j) * H, (size_t)H, 1e-4, 1e-4, NULL);
            if (w > worst) worst = w;
        }
    CHECKF(worst <= 1, "hidden states differ: %.3g x tolerance", worst);
    printf("hidden: worst %.3g of tolerance (1e-4 abs + 1e-4 rel)\n", worst);

    /* pooled + normalized through the whole pipeline */
    float *mean = malloc(sizeof(float) * (size_t)B * H), *nrm = malloc(sizeof(float) * (size_t)B * H);
    int bad = -1;
    CHECK(mmp_text_embed(&tm, (const char *const *)texts, lens, B, 0, 0, MMP_UTF8_ERROR, mean, &bad, err, sizeof err) == 0);
    CHECK(mmp_text_embed(&tm, (const char *const *)texts, lens, B, 0, 1, MMP_UTF8_ERROR, nrm, &bad, err, sizeof err) == 0);
    size_t where;
    double wm = t_maxrel(mean, rmean->data, (size_t)B * H, 1e-4, 1e-4, &where);
    double wn = t_maxrel(nrm, rnorm->data, (size_t)B * H, 1e-4, 1e-4, NULL);
    CHECKF(wm <= 1, "mean pooling differs at %zu: %g vs %g", where, mean[where], ((float *)rmean->data)[where]);
    CHECKF(wn <= 1, "normalized differs (%.3g)", wn);
    for (int i = 0; i < B; i++) {
        double s = 0;
        for (int j = 0; j < H; j++) s += (double)nrm[i * H + j] * nrm[i * H + j];
        CHECK(fabs(s - 1) < 1e-5);
    }
    printf("mean %.3g, normalized %.3g of tolerance\n", wm, wn);

    /* one sentence at a time: the same bits (each GEMM row is independent of
     * the other rows, nn/gemm.h); the same batch again: the same bits */
    float one[64], *again = malloc(sizeof(float) * (size_t)B * H);
    double wb = 0;
    for (int i = 0; i < B; i++) {
        mmp_text_embed(&tm, (const char *const *)&texts[i], &lens[i], 1, 0, 1, MMP_UTF8_ERROR, one, &bad, err, sizeof err);
        double x = t_maxrel(one, nrm + (size_t)i * H, (size_t)H, 1e-5, 1e-6, NULL);
        if (x > wb) wb = x;
        CHECKF(!memcmp(one, nrm + (size_t)i * H, sizeof(float) * (size_t)H), "sentence %d alone: other bits than in the batch", i);
    }
    CHECKF(wb <= 1, "batch of 1 differs from the full batch (%.3g)", wb);
    mmp_text_embed(&tm, (const char *const *)texts, lens, B, 0, 1, MMP_UTF8_ERROR, again, &bad, err, sizeof err);
    CHECK(memcmp(again, nrm, sizeof(float) * (size_t)B * H) == 0);
    free(again);

    /* invalid UTF-8 names the text */
    char *bt[2] = {texts[0], "bad \xff text"};
    size_t bl[2] = {lens[0], 10};
    CHECK(mmp_text_embed(&tm, (const char *const *)bt, bl, 2, 0, 1, MMP_UTF8_ERROR, mean, &bad, err, sizeof err) == -1);
    CHECK(bad == 1 && strstr(err, "UTF-8"));
    CHECK(mmp_text_embed(&tm, (const char *const *)bt, bl, 2, 0, 1, MMP_UTF8_REPLACE, mean, &bad, err, sizeof err) == 0);

    /* "bert." prefixed names, f16 weights, no config.json: heads required */
    mmp_safetensors st;
    mmp_st_open_or_die(&st, t_root_path("tests/fixtures/text/tiny_bert/model.safetensors"));
    mmp_st_writer w;
    mmp_st_writer_init(&w);
    for (int i = 0; i < st.n; i++) {
        char nm[300];
        snprintf(nm, sizeof nm, "bert.%s", st.entries[i].name);
        mmp_st_writer_add(&w, nm, &st.entries[i].t);
    }
    mkdir("pref", 0755);
    remove("pref/config.json");
    mmp_st_writer_write_or_die(&w, "pref/model.safetensors");
    mmp_st_writer_free(&w);
    mmp_st_close(&st);
    copy_file(t_root_path("tests/fixtures/text/tiny_bert/vocab.txt"), "pref/vocab.txt");
    mmp_text_model t2;
    rc = mmp_text_model_load(&t2, "pref", 0, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "--heads"));
    rc = mmp_text_model_load(&t2, "pref/model.safetensors", 4, err, sizeof err);
    CHECKF(rc == 0, "prefixed: %s", err);
    if (rc == 0) {
        CHECK(t2.max_length == 64 && strcmp(t2.bert.sha256, tm.bert.sha256) != 0);
        float *m2 = malloc(sizeof(float) * (size_t)B * H);
        mmp_text_embed(&t2, (const char *const *)texts, lens, B, 16, 1, MMP_UTF8_ERROR, m2, &bad, err, sizeof err);
        CHECK(memcmp(m2, nrm, sizeof(float) * (size_t)B * H) == 0);
        free(m2);
        mmp_text_model_free(&t2);
    }
    /* f16 weights (computed in f32): close to the f32 model */
    mmp_st_open_or_die(&st, t_root_path("tests/fixtures/text/tiny_bert/model.safetensors"));
    mmp_st_writer_init(&w);
    for (int i = 0; i < st.n; i++) {
        const mmp_tensor *src = &st.entries[i].t;
        if (src->dtype != MMP_F32) {
            mmp_st_writer_add(&w, st.entries[i].name, src);
            continue;
        }
        mmp_tensor h16;
        mmp_tensor_alloc(&h16, MMP_F16, src->ndim, src->shape);
        mmp_f32_to_dtype(src->data, (size_t)mmp_numel(src->ndim, src->shape), MMP_F16, h16.data);
        mmp_st_writer_add(&w, st.entries[i].name, &h16);
        mmp_tensor_free(&h16);
    }
    mmp_st_writer_write_or_die(&w, "pref/f16.safetensors");
    mmp_st_writer_free(&w);
    mmp_st_close(&st);
    rc = mmp_text_model_load(&t2, "pref/f16.safetensors", 4, err, sizeof err);
    CHECKF(rc == 0, "f16: %s", err);
    if (rc == 0) {
        float *m2 = malloc(sizeof(float) * (size_t)B * H);
        mmp_text_embed(&t2, (const char *const *)texts, lens, B, 16, 1, MMP_UTF8_ERROR, m2, &bad, err, sizeof err);
        double w16 = t_maxrel(m2, nrm, (size_t)B * H, 0, 2e-2, NULL);
        CHECKF(w16 <= 1 && memcmp(m2, nrm, sizeof(float) * (size_t)B * H) != 0, "f16 weights: %.3g", w16);
        free(m2);
        mmp_text_model_free(&t2);
    }
    /* a truncated weights file is refused with its name */
    FILE *tf = fopen("pref/trunc.safetensors", "wb");
    size_t fl;
    char *whole = mmp_read_small_file(t_root_path("tests/fixtures/text/tiny_bert/model.safetensors"), &fl);
    fwrite(whole, 1, fl / 2, tf);
    fclose(tf);
    free(whole);
    CHECK(mmp_text_model_load(&t2, "pref/trunc.safetensors", 4, err, sizeof err) == -1 && strstr(err, "trunc.safetensors"));
    /* wrong head count in config is caught; missing tensor named */
    FILE *f = fopen("pref/config.json", "w");
    fprintf(f, "{\"num_attention_heads\": 5, \"hidden_act\": \"gelu\"}\n");
    fclose(f);
    CHECK(mmp_text_model_load(&t2, "pref", 0, err, sizeof err) == -1 && strstr(err, "divisible"));
    f = fopen("pref/config.json", "w");
    fprintf(f, "{\"num_attention_heads\": 4, \"hidden_act\": \"relu\"}\n");
    fclose(f);
    CHECK(mmp_text_model_load(&t2, "pref", 0, err, sizeof err) == -1 && strstr(err, "relu"));
    /* a key inside a nested object is not the top-level key: the nested 5 heads and
     * "relu" come first in the text but are not the model's */
    f = fopen("pref/config.json", "w");
    fprintf(f, "{\"task_specific_params\": {\"num_attention_heads\": 5, \"hidden_act\": \"relu\", \"hidden_size\": 7},\n"
               " \"num_attention_heads\": 4, \"hidden_act\": \"gelu\"}\n");
    fclose(f);
    rc = mmp_text_model_load(&t2, "pref", 0, err, sizeof err);
    CHECKF(rc == 0, "nested keys: %s", err);
    if (rc == 0) {
        CHECK(t2.bert.cfg.heads == 4);
        mmp_text_model_free(&t2);
    }
    /* only nested: the head count is unknown */
    f = fopen("pref/config.json", "w");
    fprintf(f, "{\"task_specific_params\": {\"num_attention_heads\": 4}}\n");
    fclose(f);
    CHECK(mmp_text_model_load(&t2, "pref", 0, err, sizeof err) == -1 && strstr(err, "heads unknown"));
    /* a malformed config, a value of the wrong type: one line naming the file, the position or the key */
    f = fopen("pref/config.json", "w");
    fprintf(f, "{\"num_attention_heads\": 4,\n \"hidden_act\": gelu}\n");
    fclose(f);
    CHECKF(mmp_text_model_load(&t2, "pref", 0, err, sizeof err) == -1 && strstr(err, "pref/config.json: line 2, column ") &&
           !strchr(err, '\n'), "%s", err);
    f = fopen("pref/config.json", "w");
    fprintf(f, "{\"num_attention_heads\": \"4\"}\n");
    fclose(f);
    CHECKF(mmp_text_model_load(&t2, "pref", 0, err, sizeof err) == -1 &&
           strstr(err, "pref/config.json: \"num_attention_heads\" is a string, expected an integer"), "%s", err);
    CHECK(mmp_text_model_load(&t2, "nonexistent_dir", 0, err, sizeof err) == -1 && strstr(err, "nonexistent_dir"));

    for (int i = 0; i < B; i++) free(texts[i]);
    free(ids);
    free(hid);
    free(mean);
    free(nrm);
    mmp_st_close(&ref);
    mmp_text_model_free(&tm);
    TEST_END();
}
