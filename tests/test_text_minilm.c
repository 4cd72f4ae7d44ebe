/* The real all-MiniLM-L6-v2 (scripts/fetch-minilm.sh -> models/all-MiniLM-L6-v2, or
 * $MMP_MODELS/all-MiniLM-L6-v2): embeddings of tests/fixtures/text/minilm_sentences.txt
 * vs values recorded by tests/fixtures/gen_text.py --real (sentence-transformers 2.2.2;
 * the file's metadata "source" says which). Skips when the model is absent. */
#include <string.h>
#include <sys/stat.h>

#include "mmp.h"
#include "testlib.h"
#include "text/bert.h"

int main(void) {
    char dir[4096], err[512];
    const char *mm = getenv("MMP_MODELS");
    if (mm) snprintf(dir, sizeof dir, "%s/all-MiniLM-L6-v2", mm);
    else snprintf(dir, sizeof dir, "%s", t_root_path("models/all-MiniLM-L6-v2"));
    struct stat sb;
    if (stat(dir, &sb) < 0) SKIP("no %s (run scripts/fetch-minilm.sh)", dir);
    mmp_text_model tm;
    int rc = mmp_text_model_load(&tm, dir, 0, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    if (rc) TEST_END();
    CHECK(strcmp(tm.arch, "bert-L6-H384-A12") == 0 && tm.max_length == 256 && tm.normalize == 1 && tm.lower == 1);
    mmp_safetensors ref;
    mmp_st_open_or_die(&ref, t_root_path("tests/fixtures/text/minilm_ref.safetensors"));
    const mmp_tensor *e = mmp_st_get(&ref, "embedding");
    CHECK(e && e->ndim == 2 && e->shape[1] == 384);
    if (!e) TEST_END();
    printf("reference: %s\n", mmp_meta_get(&ref.meta, "source") ? mmp_meta_get(&ref.meta, "source") : "?");
    FILE *f = fopen(t_root_path("tests/fixtures/text/minilm_sentences.txt"), "r");
    char line[1024], *texts[16];
    size_t lens[16];
    int n = 0;
    while (f && n < 16 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        texts[n] = strdup(line);
        lens[n] = strlen(line);
        n++;
    }
    if (f) fclose(f);
    CHECK(n == e->shape[0]);
    float *out = malloc(sizeof(float) * 384 * (size_t)n);
    int bad;
    CHECK(mmp_text_embed(&tm, (const char *const *)texts, lens, n, 0, tm.normalize, MMP_UTF8_ERROR, out, &bad, err, sizeof err) == 0);
    double worst = 0, maxabs = 0;
    for (int i = 0; i < n * 384; i++) {
        double d = fabs(out[i] - ((float *)e->data)[i]);
        if (d > maxabs) maxabs = d;
    }
    worst = t_maxrel(out, e->data, (size_t)n * 384, 0, 1e-4, NULL);
    CHECKF(worst <= 1, "max abs diff %.3g > 1e-4", maxabs);
    /* cosine similarities make sense: the two "a photo of a" sentences are the closest pair */
    printf("%d sentences, max |diff| %.3g (tolerance 1e-4 abs)\n", n, maxabs);
    for (int i = 0; i < n; i++) free(texts[i]);
    free(out);
    mmp_st_close(&ref);
    mmp_text_model_free(&tm);
    TEST_END();
}
