/* End to end: mmp-train-step | mmp-eval | mmp-report on synthetic feature
 * streams written here. Learning, prediction records, sklearn report from
 * the stream, bit-identical resume (file and the stdin epoch loop), best
 * checkpoint with --dev, provenance refusal, bad input messages, contrastive
 * retrieval and zero-shot, the HTML page in headless Chromium (when present). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmp.h"
#include "testlib.h"
#include "train/metrics.h"

static double gauss(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    double u1 = ((*s >> 11) + 0.5) * 0x1.0p-53;
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    double u2 = (*s >> 11) * 0x1.0p-53;
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

/* C clusters in D dims; optional pair embedding (D2) tied to the class and
 * to the record; f16 or f32. */
static void write_features(const char *path, int n, int D, int C, int D2, uint64_t seed, mmp_dtype dt,
                           const char *prov) {
    uint64_t s = 12345;
    double *mu = malloc(sizeof(double) * C * D), *nu = malloc(sizeof(double) * C * 16);
    for (int k = 0; k < C * D; k++) mu[k] = 1.2 * gauss(&s);
    for (int k = 0; k < C * 16; k++) nu[k] = gauss(&s);
    s = seed;
    mmp_header h;
    mmp_header_init(&h);
    int64_t shD[1] = {D}, shD2[1] = {D2};
    mmp_header_add_field(&h, "embedding", dt, 1, shD);
    if (D2) mmp_header_add_field(&h, "text_embedding", MMP_F32, 1, shD2);
    char *names[10] = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
    mmp_header_set_classes(&h, C, names);
    if (prov) mmp_meta_set(&h.meta, "provenance", prov);
    if (D2) mmp_meta_set(&h.meta, "text_provenance", "minilm-a");
    mmp_writer *w = mmp_writer_open(path, &h, 1);
    float *x = malloc(sizeof(float) * D), *x2 = malloc(sizeof(float) * (D2 + 1));
    for (int i = 0; i < n; i++) {
        mmp_record r;
        mmp_record_init(&r);
        int c = (int)((uint64_t)(gauss(&s) * 1e6 + 1e9) % (uint64_t)C);
        char id[64];
        snprintf(id, sizeof id, "%s/%05d.jpg", names[c], i);
        mmp_record_set_id(&r, id);
        r.label = c;
        for (int k = 0; k < D; k++) x[k] = (float)(3 + 2 * (mu[c * D + k] + gauss(&s)));
        mmp_tensor *t = mmp_record_add(&r, "embedding", dt, 1, shD);
        mmp_f32_to_dtype(x, (size_t)D, dt, t->data);
        if (D2) {
            for (int k = 0; k < D2; k++) x2[k] = (float)(nu[c * 16 + (k % 16)] + 0.5 * (x[k % D] - 3) / 2 + 0.3 * gauss(&s));
            memcpy(mmp_record_add(&r, "text_embedding", MMP_F32, 1, shD2)->data, x2, sizeof(float) * D2);
        }
        mmp_writer_write(w, &r);
        mmp_record_clear(&r);
    }
    mmp_writer_close(w);
    mmp_header_free(&h);
    free(x); free(x2); free(mu); free(nu);
}

/* class prompt embeddings in the text space: the class vector nu_c */
static void write_prompts(const char *path, int C, int D2, const char *tprov) {
    uint64_t s = 12345;
    double *mu = malloc(sizeof(double) * C * 24), *nu = malloc(sizeof(double) * C * 16);
    for (int k = 0; k < C * 24; k++) mu[k] = 1.2 * gauss(&s); /* same draws as write_features(D=24) */
    for (int k = 0; k < C * 16; k++) nu[k] = gauss(&s);
    mmp_header h;
    mmp_header_init(&h);
    int64_t sh[1] = {D2};
    mmp_header_add_field(&h, "text_embedding", MMP_F32, 1, sh);
    mmp_meta_set(&h.meta, "text_provenance", tprov);
    mmp_writer *w = mmp_writer_open(path, &h, 1);
    for (int c = 0; c < C; c++) {
        mmp_record r;
        mmp_record_init(&r);
        float *e = mmp_record_add(&r, "text_embedding", MMP_F32, 1, sh)->data;
        for (int k = 0; k < D2; k++) e[k] = (float)(nu[c * 16 + (k % 16)] + 0.5 * mu[c * 24 + (k % 24)]); /* class mean */
        mmp_writer_write(w, &r);
        mmp_record_clear(&r);
    }
    mmp_writer_close(w);
    mmp_header_free(&h);
    free(mu); free(nu);
}

/* multi-label: targets t_c = 1 when feature block c is switched on */
static void write_multilabel(const char *path, int n, uint64_t seed) {
    const int D = 16, C = 4;
    uint64_t s = seed;
    mmp_header h;
    mmp_header_init(&h);
    int64_t shD[1] = {D}, shC[1] = {C};
    mmp_header_add_field(&h, "embedding", MMP_F32, 1, shD);
    mmp_header_add_field(&h, "labels", MMP_F32, 1, shC);
    mmp_writer *w = mmp_writer_open(path, &h, 1);
    for (int i = 0; i < n; i++) {
        mmp_record r;
        mmp_record_init(&r);
        float *x = mmp_record_add(&r, "embedding", MMP_F32, 1, shD)->data, *t = mmp_record_add(&r, "labels", MMP_F32, 1, shC)->data;
        for (int c = 0; c < C; c++) t[c] = gauss(&s) > 0 ? 1.0f : 0.0f;
        for (int k = 0; k < D; k++) x[k] = (float)(2 * t[k % C] + 0.5 * gauss(&s));
        mmp_writer_write(w, &r);
        mmp_record_clear(&r);
    }
    mmp_writer_close(w);
    mmp_header_free(&h);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    s[fread(s, 1, (size_t)n, f)] = 0;
    fclose(f);
    return s;
}

/* every tensor of a equals b's, byte for byte (metadata may differ) */
static int same_tensors(const char *a, const char *b) {
    mmp_safetensors x, y;
    char err[256];
    if (mmp_st_open(&x, a, err, sizeof err) || mmp_st_open(&y, b, err, sizeof err)) return 0;
    int ok = x.n == y.n;
    for (int i = 0; ok && i < x.n; i++) {
        const mmp_tensor *t = mmp_st_get(&y, x.entries[i].name);
        ok = t && t->nbytes == x.entries[i].t.nbytes && !memcmp(t->data, x.entries[i].t.data, t->nbytes);
    }
    mmp_st_close(&x);
    mmp_st_close(&y);
    return ok;
}

static void check_predictions(const char *path, int C, double min_acc, mmp_clsreport *cr) {
    char err[512];
    mmp_reader *r = mmp_reader_open(path, err, sizeof err);
    CHECKF(r != NULL, "%s", err);
    if (!r) return;
    const mmp_header *h = mmp_reader_header(r);
    CHECK(h->nclasses == C && !strcmp(h->classes[1], "automobile"));
    CHECK(mmp_header_field(h, "logits") && mmp_header_field(h, "probs") && mmp_header_field(h, "pred"));
    CHECK(mmp_meta_get(&h->meta, "provenance") && mmp_meta_get(&h->meta, "model_sha256"));
    mmp_record rec;
    mmp_record_init(&rec);
    int64_t yt[4096], yp[4096], n = 0;
    int ok_ids = 1, ok_probs = 1;
    while (mmp_reader_next(r, &rec) == 1 && n < 4096) {
        const float *p = mmp_record_cget(&rec, "probs")->data;
        const int64_t *pr = mmp_record_cget(&rec, "pred")->data;
        double s = 0;
        for (int c = 0; c < C; c++) s += p[c];
        ok_probs &= fabs(s - 1) < 1e-5;
        ok_ids &= rec.id != NULL && strstr(rec.id, ".jpg") != NULL;
        yt[n] = rec.label;
        yp[n] = *pr;
        n++;
    }
    CHECK(mmp_reader_error(r) == NULL || mmp_reader_error(r)[0] == 0);
    CHECK(ok_ids && ok_probs && n > 0);
    mmp_reader_close(r);
    mmp_record_clear(&rec);
    CHECK(mmp_clsreport_compute(cr, yt, yp, n, C, NULL) == 0);
    printf("%s: %lld predictions, accuracy %.4f\n", path, (long long)n, cr->accuracy);
    CHECKF(cr->accuracy >= min_acc, "%s: accuracy %.4f < %.2f", path, cr->accuracy, min_acc);
}

int main(void) {
    if (t_sh("command -v mmp-train-step >/dev/null && command -v mmp-eval >/dev/null && command -v mmp-report >/dev/null"))
        SKIP("mmp-train-step/mmp-eval/mmp-report not on PATH (run via tests/run.sh)");
    const int D = 24, C = 5;
    write_features("train.mmp", 1500, D, C, 0, 1, MMP_F16, "mnv2-test");
    write_features("dev.mmp", 300, D, C, 0, 2, MMP_F32, "mnv2-test");
    write_features("test.mmp", 500, D, C, 0, 3, MMP_F32, "mnv2-test");
    write_features("other.mmp", 50, D, C, 0, 4, MMP_F32, "resnet-other");

    /* ---- train with dev + log, eval, report ---- */
    CHECK(t_sh("mmp-train-step --epochs 6 --batch-size 64 --lr 0.01 --dev dev.mmp --log log.jsonl --out head.safetensors train.mmp 2>train.err") == 0);
    CHECK(access("head.safetensors", F_OK) == 0 && access("head.last.safetensors", F_OK) == 0);
    char *e = slurp("train.err");
    CHECK(e && strstr(e, "dev accuracy"));
    free(e);
    CHECK(t_sh("mmp-eval --model head.safetensors test.mmp -o pred.mmp --json eval.json 2>eval.err") == 0);
    mmp_clsreport cr;
    check_predictions("pred.mmp", C, 0.9, &cr);
    CHECK(t_sh("mmp-report pred.mmp --log log.jsonl --json rep.json --html rep.html > rep.txt") == 0);
    char *txt = slurp("rep.txt");
    char *want = mmp_clsreport_text(&cr, (char *[]){"airplane", "automobile", "bird", "cat", "deer"}, 2);
    CHECKF(txt && strstr(txt, want), "report text differs from the expected sklearn layout:\n%s\nwant:\n%s", txt ? txt : "", want);
    CHECK(txt && strstr(txt, "confusion matrix") && strstr(txt, "training: 6 epochs"));
    free(want);
    free(txt);
    char *js = slurp("rep.json");
    char acc[64];
    snprintf(acc, sizeof acc, "\"accuracy\": %.17g", cr.accuracy);
    CHECK(js && strstr(js, acc) && strstr(js, "\"training\""));
    free(js);
    CHECK(t_sh("mmp-report --digits 4 pred.mmp | grep -q '    accuracy                         0\\.[0-9][0-9][0-9][0-9] '") == 0);
    mmp_clsreport_free(&cr);
    /* --dev keeps the best epoch: head == the best, last == epoch 6 */
    mmp_safetensors st;
    mmp_st_open_or_die(&st, "head.safetensors");
    const char *be = mmp_meta_get(&st.meta, "best_epoch"), *ep = mmp_meta_get(&st.meta, "epoch");
    CHECK(be && ep && !strcmp(be, ep));
    CHECK(mmp_st_get(&st, "weight") && mmp_st_get(&st, "standardize.mean") && !strcmp(mmp_meta_get(&st.meta, "provenance"), "mnv2-test"));
    mmp_st_close(&st);

    /* ---- early stopping ---- */
    CHECK(t_sh("mmp-train-step --epochs 40 --patience 2 --batch-size 64 --lr 0.01 --dev dev.mmp --out es.safetensors train.mmp 2>es.err") == 0);
    e = slurp("es.err");
    CHECK(e && strstr(e, "early stop after epoch"));
    free(e);
    mmp_st_open_or_die(&st, "es.last.safetensors");
    int last_epoch = atoi(mmp_meta_get(&st.meta, "epoch")), best_epoch = atoi(mmp_meta_get(&st.meta, "best_epoch"));
    CHECK(last_epoch < 40 && last_epoch == best_epoch + 2);
    mmp_st_close(&st);
    mmp_st_open_or_die(&st, "es.safetensors");
    CHECK(atoi(mmp_meta_get(&st.meta, "epoch")) == best_epoch);
    mmp_st_close(&st);

    /* ---- resume: interrupted == uninterrupted, bit for bit ---- */
    const char *rec1 = "--hidden 32 --dropout 0.2 --optimizer sgd --lr 0.05 --momentum 0.9 --nesterov --schedule cosine "
                       "--warmup 5 --clip-grad-norm 2 --label-smoothing 0.1 --batch-size 50 --seed 7";
    CHECK(t_sh("mmp-train-step %s --epochs 4 --out full.safetensors train.mmp 2>/dev/null", rec1) == 0);
    CHECK(t_sh("mmp-train-step %s --epochs 4 --stop-after-epochs 2 --out part.safetensors train.mmp 2>/dev/null", rec1) == 0);
    CHECK(!same_tensors("full.safetensors", "part.safetensors"));
    CHECK(t_sh("mmp-train-step %s --epochs 4 --resume part.safetensors --out part.safetensors train.mmp 2>/dev/null", rec1) == 0);
    CHECKF(same_tensors("full.safetensors", "part.safetensors"), "resumed run differs from the uninterrupted one");
    CHECK(t_sh("mmp-train-step %s --epochs 4 --seed 8 --out seed8.safetensors train.mmp 2>/dev/null", rec1) == 0);
    CHECK(!same_tensors("full.safetensors", "seed8.safetensors"));
    /* ---- the per-epoch shell loop over stdin == --epochs 3 ---- */
    CHECK(t_sh("mmp-train-step --batch-size 100 --seed 3 --epochs 3 --out e3.safetensors train.mmp 2>/dev/null") == 0);
    CHECK(t_sh("mmp-train-step --batch-size 100 --seed 3 --out loop.safetensors < train.mmp 2>/dev/null") == 0);
    CHECK(t_sh("for i in 2 3; do mmp-train-step --init loop.safetensors --out loop.safetensors < train.mmp 2>/dev/null || exit 1; done") == 0);
    CHECKF(same_tensors("e3.safetensors", "loop.safetensors"), "stdin epoch loop differs from --epochs 3");
    mmp_st_open_or_die(&st, "loop.safetensors");
    CHECK(!strcmp(mmp_meta_get(&st.meta, "epoch"), "3"));
    mmp_st_close(&st);

    /* ---- provenance ---- */
    CHECK(t_sh("mmp-eval --model head.safetensors other.mmp -o /dev/null 2>prov.err") != 0);
    e = slurp("prov.err");
    CHECK(e && strstr(e, "mnv2-test") && strstr(e, "resnet-other") && strstr(e, "--allow-mixed"));
    free(e);
    CHECK(t_sh("mmp-eval --allow-mixed --model head.safetensors other.mmp -o /dev/null 2>/dev/null") == 0);
    CHECK(t_sh("mmp-train-step --dev other.mmp --out x.safetensors train.mmp 2>/dev/null") != 0);
    CHECK(access("x.safetensors", F_OK) != 0);

    /* ---- bad input: clear one-line messages, no checkpoint ---- */
    CHECK(t_sh("head -c 3000 train.mmp > trunc.mmp; mmp-train-step --out t.safetensors trunc.mmp 2>trunc.err") != 0);
    e = slurp("trunc.err");
    CHECK(e && strncmp(e, "mmp-train-step: ", 16) == 0 && strchr(e, '\n') == e + strlen(e) - 1);
    free(e);
    CHECK(access("t.safetensors", F_OK) != 0);
    CHECK(t_sh("mmp-train-step --feature nope --out t.safetensors train.mmp 2>feat.err") != 0);
    e = slurp("feat.err");
    CHECK(e && strstr(e, "record 0: no tensor \"nope\""));
    free(e);
    CHECK(t_sh("mmp-train-step --lr -1 --out t.safetensors train.mmp 2>/dev/null") != 0);
    CHECK(t_sh("mmp-eval --model train.mmp test.mmp >/dev/null 2>/dev/null") != 0);
    write_features("c3.mmp", 20, D, 3, 0, 9, MMP_F32, "mnv2-test");
    CHECK(t_sh("mmp-eval --model head.safetensors c3.mmp -o /dev/null 2>c3.err") != 0);
    e = slurp("c3.err");
    CHECK(e && strstr(e, "class list differs"));
    free(e);
    CHECK(t_sh("mmp-train-step --epochs 2 --hidden 8 --resume head.safetensors --out t.safetensors train.mmp 2>arch.err") != 0);

    /* ---- contrastive pairs: retrieval and zero-shot ---- */
    write_features("pairs.mmp", 1200, D, C, 20, 5, MMP_F32, "mnv2-test");
    write_features("pairs_test.mmp", 300, D, C, 20, 6, MMP_F32, "mnv2-test");
    write_prompts("prompts.mmp", C, 20, "minilm-a");
    write_prompts("prompts_b.mmp", C, 20, "minilm-b");
    CHECK(t_sh("mmp-train-step --loss contrastive --proj-dim 16 --epochs 8 --batch-size 100 --lr 0.01 --out clip.safetensors pairs.mmp 2>/dev/null") == 0);
    CHECK(t_sh("mmp-eval --model clip.safetensors --prompts prompts.mmp --json clip.json -o clip_pred.mmp pairs_test.mmp 2>clip.err") == 0);
    js = slurp("clip.json");
    CHECK(js && strstr(js, "\"image_to_text\"") && strstr(js, "\"recall@10\""));
    double r10 = js && strstr(js, "\"recall@10\": ") ? atof(strstr(js, "\"recall@10\": ") + 13) : 0;
    double zacc = js && strstr(js, "\"accuracy\": ") ? atof(strstr(js, "\"accuracy\": ") + 12) : 0;
    printf("contrastive: image->text recall@10 %.3f (chance %.3f), zero-shot accuracy %.3f\n", r10, 10.0 / 300, zacc);
    CHECK(r10 > 0.2 && zacc > 0.5);
    free(js);
    CHECK(t_sh("mmp-eval --model clip.safetensors --prompts prompts_b.mmp -o /dev/null pairs_test.mmp 2>tprov.err") != 0);
    e = slurp("tprov.err");
    CHECK(e && strstr(e, "minilm-a") && strstr(e, "minilm-b") && strstr(e, "text embeddings"));
    free(e);
    CHECK(t_sh("mmp-eval --allow-mixed --model clip.safetensors --prompts prompts_b.mmp -o /dev/null pairs_test.mmp 2>/dev/null") == 0);
    CHECK(t_sh("mmp-report clip_pred.mmp > clip_rep.txt") == 0);
    txt = slurp("clip_rep.txt");
    CHECK(txt && strstr(txt, "retrieval (300 pairs)") && strstr(txt, "accuracy"));
    free(txt);
    CHECK(t_sh("mmp-train-step --loss triplet --mining hard --proj-dim 16 --epochs 2 --out trip.safetensors pairs.mmp 2>/dev/null") == 0);
    CHECK(t_sh("mmp-eval --model trip.safetensors pairs_test.mmp -o /dev/null 2>/dev/null") == 0);

    /* ---- multi-label bce ---- */
    write_multilabel("ml_train.mmp", 800, 21);
    write_multilabel("ml_dev.mmp", 200, 22);
    CHECK(t_sh("mmp-train-step --loss bce --epochs 5 --batch-size 32 --lr 0.01 --dev ml_dev.mmp --out bce.safetensors ml_train.mmp 2>bce.err") == 0);
    e = slurp("bce.err");
    const char *sacc = e ? strstr(e, "; dev accuracy ") : NULL; /* the summary line, after the epoch lines */
    double mlacc = sacc ? atof(sacc + 15) : 0;
    printf("bce: dev exact-match accuracy %.3f\n", mlacc);
    CHECK(mlacc > 0.9);
    free(e);
    CHECK(t_sh("mmp-eval --model bce.safetensors ml_dev.mmp -o bce_pred.mmp 2>/dev/null") == 0);
    {
        char err[256];
        mmp_reader *r = mmp_reader_open("bce_pred.mmp", err, sizeof err);
        mmp_record rec;
        mmp_record_init(&rec);
        CHECK(r && mmp_reader_next(r, &rec) == 1);
        const mmp_tensor *pt = r ? mmp_record_cget(&rec, "probs") : NULL, *lt = r ? mmp_record_cget(&rec, "labels") : NULL;
        CHECK(pt && lt && pt->shape[0] == 4 && lt->shape[0] == 4);
        if (pt) {
            const float *p = pt->data;
            double sum = p[0] + p[1] + p[2] + p[3];
            CHECK(p[0] > 0 && p[0] < 1 && fabs(sum - 1) > 1e-3); /* sigmoid, not softmax */
        }
        mmp_record_clear(&rec);
        if (r) mmp_reader_close(r);
    }
    CHECK(t_sh("mmp-report bce_pred.mmp > bce_rep.txt") == 0);
    txt = slurp("bce_rep.txt");
    CHECK(txt && strstr(txt, "samples avg") && strstr(txt, "micro avg"));
    free(txt);

    /* ---- HTML in headless Chromium ---- */
    struct stat sb;
    if (stat("/usr/bin/chromium", &sb) == 0) {
        CHECK(t_sh("/usr/bin/chromium --headless --disable-gpu --no-sandbox --user-data-dir=./chrome --dump-dom file://$PWD/rep.html > dom.html 2>/dev/null") == 0);
        char *dom = slurp("dom.html");
        int svgs = 0;
        for (char *p = dom; p && (p = strstr(p, "<svg")); p++) svgs++;
        CHECK(svgs == 5 && strstr(dom, "Accuracy: 0.") && strstr(dom, "automobile"));
        printf("chromium: %d svg elements in the rendered report\n", svgs);
        free(dom);
    } else {
        printf("chromium not installed: HTML rendering not checked here\n");
    }
    TEST_END();
}
