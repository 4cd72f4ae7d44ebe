/* CLIP's BPE tokenizer (lib/text/bpe.c) against open_clip 2.24's SimpleTokenizer
 * (with ftfy 6.1.3): every line of tests/fixtures/clip_tok/corpus.txt, written
 * by tests/fixtures/gen_clip_tok.py, is cleaned, tokenized and encoded (context
 * 77) by both loaders (open_clip's .gz, and Hugging Face vocab.json +
 * merges.txt derived from it here), plus the loaders' error messages and the
 * invalid UTF-8 policy. The corpus marks the lines on which ftfy's mojibake
 * repair (fix_encoding) changes the result; the test counts them, so it fails
 * if the corpus stops exercising it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "testlib.h"
#include "text/bpe.h"
#include "text/wordpiece.h"

static char *unhex(const char *h, size_t *n) {
    size_t L = strlen(h);
    char *o = malloc(L / 2 + 1);
    for (size_t i = 0; i + 1 < L; i += 2) {
        unsigned v;
        sscanf(h + i, "%2x", &v);
        o[i / 2] = (char)v;
    }
    *n = L / 2;
    o[*n] = 0;
    return o;
}

static int parse_ids(const char *s, int32_t *out, int cap) {
    if (strcmp(s, "-") == 0) return 0;
    int n = 0;
    const char *p = s;
    while (*p && n < cap) {
        out[n++] = (int32_t)strtol(p, (char **)&p, 10);
        if (*p == ',') p++;
    }
    return n;
}

/* a temporary folder of the test's own */
static const char *tmpdir(void) {
    static char d[4096];
    if (!d[0]) {
        const char *t = getenv("MMP_TMP");
        snprintf(d, sizeof d, "%s/clip_tok", t && *t ? t : "/tmp");
        mkdir(d, 0755);
    }
    return d;
}

static void write_file(const char *path, const char *data) {
    FILE *f = fopen(path, "w");
    fputs(data, f);
    fclose(f);
}

/* Hugging Face vocab.json / merges.txt with open_clip's vocabulary, written
 * with the same derivation as gen_clip_tok.py's write_hf_files */
static void write_hf(const mmp_bpe *oc, const char *gz, const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/vocab.json", dir);
    FILE *f = fopen(p, "w");
    fputc('{', f);
    int n = mmp_bpe_vocab_size(oc);
    for (int id = 0; id < n; id++) {
        const char *t = mmp_bpe_token(oc, id);
        if (id == mmp_bpe_sot_id(oc)) t = "<|startoftext|>";
        if (id == mmp_bpe_eot_id(oc)) t = "<|endoftext|>";
        fputc('"', f);
        for (const char *c = t; *c; c++) {
            if (*c == '"' || *c == '\\') fputc('\\', f);
            fputc(*c, f);
        }
        fprintf(f, "\":%d%s", id, id + 1 < n ? "," : "}");
    }
    fclose(f);
    snprintf(p, sizeof p, "zcat '%s' | head -n %d | sed '1s/.*/#version: 0.2/' > '%s/merges.txt'", gz,
             MMP_CLIP_MERGES + 1, dir);
    CHECK(system(p) == 0);
}

static int contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Driver for tests/py/test_clip_tok.py and bench/bench_clip_tok.py:
 *   test_text_bpe --tokenize PATH   stdin: hex(utf8 text) a line; stdout a line each:
 *                                   hex(clean) TAB encode ids TAB the 77 tokenize ids
 *   test_text_bpe --bench PATH N    stdin: the same; encodes all lines N times (77 ids
 *                                   each), prints "texts T tokens K seconds S" */
static int driver(int argc, char **argv) {
    char err[512];
    if (argc < 3) return 2;
    mmp_bpe *b = mmp_bpe_load_clip(argv[2], err, sizeof err);
    if (!b) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    size_t cap = 1 << 22, nt = 0, tcap = 0;
    char *line = malloc(cap), **texts = NULL;
    size_t *lens = NULL;
    while (fgets(line, (int)cap, stdin)) {
        line[strcspn(line, "\r\n")] = 0;
        if (nt == tcap) {
            tcap = tcap ? 2 * tcap : 256;
            texts = realloc(texts, tcap * sizeof *texts);
            lens = realloc(lens, tcap * sizeof *lens);
        }
        texts[nt] = unhex(line, &lens[nt]);
        nt++;
    }
    int32_t ids77[77];
    if (strcmp(argv[1], "--bench") == 0) {
        int reps = argc > 3 ? atoi(argv[3]) : 1;
        long tokens = 0;
        double t0 = now_s();
        for (int r = 0; r < reps; r++)
            for (size_t i = 0; i < nt; i++) {
                int32_t *ids = NULL;
                int n = 0, icap = 0;
                mmp_bpe_tokenize(b, texts[i], lens[i], MMP_UTF8_REPLACE, &ids, &n, &icap, err, sizeof err);
                tokens += n;
                free(ids);
            }
        double t1 = now_s();
        printf("texts %zu tokens %ld seconds %.6f\n", nt * (size_t)reps, tokens, t1 - t0);
    } else {
        for (size_t i = 0; i < nt; i++) {
            size_t gn = 0;
            char *gc = mmp_clip_clean(texts[i], lens[i], MMP_UTF8_REPLACE, &gn, err, sizeof err);
            for (size_t q = 0; q < gn; q++) printf("%02x", (unsigned char)gc[q]);
            int32_t *ids = NULL;
            int n = 0, icap = 0;
            mmp_bpe_tokenize(b, texts[i], lens[i], MMP_UTF8_REPLACE, &ids, &n, &icap, err, sizeof err);
            putchar('\t');
            for (int q = 0; q < n; q++) printf(q ? ",%d" : "%d", ids[q]);
            if (!n) putchar('-');
            mmp_bpe_encode(b, texts[i], lens[i], 77, MMP_UTF8_REPLACE, ids77, err, sizeof err);
            putchar('\t');
            for (int q = 0; q < 77; q++) printf(q ? ",%d" : "%d", ids77[q]);
            putchar('\n');
            free(gc);
            free(ids);
        }
    }
    for (size_t i = 0; i < nt; i++) free(texts[i]);
    free(texts);
    free(lens);
    free(line);
    mmp_bpe_free(b);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1) return driver(argc, argv);
    char err[512];
    const char *gz = t_root_path("tests/fixtures/clip_tok/bpe_simple_vocab_16e6.txt.gz");
    mmp_bpe *oc = mmp_bpe_load_clip(gz, err, sizeof err);
    if (!oc) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    CHECK(mmp_bpe_vocab_size(oc) == 49408);
    CHECK(mmp_bpe_sot_id(oc) == 49406 && mmp_bpe_eot_id(oc) == 49407);
    CHECK(mmp_bpe_id(oc, "hello</w>", 9) == 3306);
    CHECK(strcmp(mmp_bpe_token(oc, 49407), "<end_of_text>") == 0);

    write_hf(oc, gz, tmpdir());
    mmp_bpe *hf = mmp_bpe_load_clip(tmpdir(), err, sizeof err);
    CHECKF(hf, "%s", err);
    if (!hf) return 1;
    CHECK(mmp_bpe_vocab_size(hf) == 49408);
    CHECK(mmp_bpe_sot_id(hf) == 49406 && mmp_bpe_eot_id(hf) == 49407);

    FILE *f = fopen(t_root_path("tests/fixtures/clip_tok/corpus.txt"), "r");
    CHECK(f);
    if (!f) return 1;
    size_t cap = 1 << 20;
    char *line = malloc(cap);
    int lineno = 0, same = 0, moji = 0, moji_same = 0, hf_lines = 0, hf_same = 0;
    int32_t want_enc[8192], want_tok[77], got_tok[77];
    while (fgets(line, (int)cap, f)) {
        lineno++;
        line[strcspn(line, "\n")] = 0;
        char *col[6];
        int nc = 0;
        for (char *p = line; nc < 6;) {
            col[nc++] = p;
            p = strchr(p, '\t');
            if (!p) break;
            *p++ = 0;
        }
        CHECKF(nc == 6, "corpus.txt line %d: %d columns", lineno, nc);
        if (nc != 6) continue;
        int mojibake = strcmp(col[5], "m") == 0, base = 0;
        size_t tn, cn;
        char *text = unhex(col[0], &tn), *clean = unhex(col[1 + base], &cn);
        int ne = parse_ids(col[2 + base], want_enc, 8192);
        CHECK(parse_ids(col[3 + base], want_tok, 77) == 77);

        size_t gn = 0;
        char *gc = mmp_clip_clean(text, tn, MMP_UTF8_ERROR, &gn, err, sizeof err);
        int32_t *ids = NULL;
        int n = 0, icap = 0;
        int rc = mmp_bpe_tokenize(oc, text, tn, MMP_UTF8_ERROR, &ids, &n, &icap, err, sizeof err);
        int m = mmp_bpe_encode(oc, text, tn, 77, MMP_UTF8_ERROR, got_tok, err, sizeof err);
        int ok = gc && gn == cn && memcmp(gc, clean, cn) == 0 && rc == 0 && n == ne &&
                 (n == 0 || memcmp(ids, want_enc, (size_t)n * sizeof *ids) == 0) && m >= 2 &&
                 memcmp(got_tok, want_tok, sizeof got_tok) == 0;
        int wm = ne + 2 < 77 ? ne + 2 : 77;
        if (ok) CHECK(m == wm);
        same += ok;
        moji += mojibake;
        moji_same += ok && mojibake;
        if (!ok) {
            fprintf(stderr, "corpus.txt line %d: text %s\n  want clean %s\n  got  clean ", lineno, col[0], col[1]);
            for (size_t q = 0; gc && q < gn; q++) fprintf(stderr, "%02x", (unsigned char)gc[q]);
            fprintf(stderr, "\n  want ids %s\n  got  ids ", col[2 + base]);
            for (int q = 0; q < n; q++) fprintf(stderr, "%d,", ids[q]);
            fputc('\n', stderr);
            t_failures++;
        }
        /* the Hugging Face files: the same ids where no start/end spelling is involved */
        if (!contains(clean, "start_of_text>") && !contains(clean, "end_of_text>") &&
            !contains(clean, "startoftext|>") && !contains(clean, "endoftext|>")) {
            int32_t hf_tok[77];
            int hm = mmp_bpe_encode(hf, text, tn, 77, MMP_UTF8_ERROR, hf_tok, err, sizeof err);
            hf_lines++;
            CHECKF(hm == m && memcmp(hf_tok, got_tok, sizeof hf_tok) == 0, "line %d: vocab.json ids differ",
                   lineno);
            hf_same += hm == m && memcmp(hf_tok, got_tok, sizeof hf_tok) == 0;
        }
        free(gc);
        free(ids);
        free(text);
        free(clean);
    }
    fclose(f);
    free(line);
    printf("corpus: %d lines, %d identical to open_clip (of the %d that ftfy's mojibake repair changes: "
           "%d); vocab.json loader identical on %d/%d\n",
           lineno, same, moji, moji_same, hf_same, hf_lines);
    CHECK(lineno >= 400);
    CHECK(same == lineno);
    CHECK(moji >= 100);

    /* the special spellings of each loader */
    int32_t t[77];
    int m = mmp_bpe_encode(oc, "a<start_of_text>", 16, 77, MMP_UTF8_ERROR, t, err, sizeof err);
    CHECK(m == 4 && t[2] == 49406);
    m = mmp_bpe_encode(hf, "a<|endoftext|>", 14, 77, MMP_UTF8_ERROR, t, err, sizeof err);
    CHECK(m == 4 && t[2] == 49407);
    /* truncation: context 5 -> sot, 3 ids, eot; context 1 -> eot alone (open_clip's tokens[-1] = eot) */
    m = mmp_bpe_encode(oc, "one two three four five", 23, 5, MMP_UTF8_ERROR, t, err, sizeof err);
    CHECK(m == 5 && t[0] == 49406 && t[4] == 49407 && t[3] != 49407);
    m = mmp_bpe_encode(oc, "x", 1, 1, MMP_UTF8_ERROR, t, err, sizeof err);
    CHECK(m == 1 && t[0] == 49407);
    CHECK(mmp_bpe_encode(oc, "x", 1, 0, MMP_UTF8_ERROR, t, err, sizeof err) == -1);

    /* invalid UTF-8: one error naming the byte, or U+FFFD per invalid byte */
    m = mmp_bpe_encode(oc, "ab\xff", 3, 77, MMP_UTF8_ERROR, t, err, sizeof err);
    CHECK(m == -1 && strstr(err, "byte 2"));
    int32_t r1[77], r2[77];
    int m1 = mmp_bpe_encode(oc, "ab\xff\xfe", 4, 77, MMP_UTF8_REPLACE, r1, err, sizeof err);
    int m2 = mmp_bpe_encode(oc, "ab\xef\xbf\xbd\xef\xbf\xbd", 8, 77, MMP_UTF8_ERROR, r2, err, sizeof err);
    CHECK(m1 > 2 && m1 == m2 && memcmp(r1, r2, sizeof r1) == 0);

    /* loader errors: one line naming the file */
    char p[4200];
    const char *d = tmpdir();
    snprintf(p, sizeof p, "%s/bad.gz", d);
    write_file(p, "not gzip at all\n");
    CHECK(!mmp_bpe_load_clip(p, err, sizeof err) && strstr(err, "bad.gz") && !strchr(err, '\n'));
    snprintf(p, sizeof p, "printf '#v\\na b\\nc d e\\n' | gzip > '%s/three.gz'", d);
    CHECK(system(p) == 0);
    snprintf(p, sizeof p, "%s/three.gz", d);
    CHECK(!mmp_bpe_load_clip(p, err, sizeof err) && strstr(err, "three.gz: line 3: expected two symbols"));
    snprintf(p, sizeof p, "printf '#v\\na \\377\\n' | gzip > '%s/utf.gz'", d);
    CHECK(system(p) == 0);
    snprintf(p, sizeof p, "%s/utf.gz", d);
    CHECK(!mmp_bpe_load_clip(p, err, sizeof err) && strstr(err, "utf.gz: line 2: invalid UTF-8"));
    snprintf(p, sizeof p, "%s/hfbad", d);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/hfbad/vocab.json", d);
    write_file(p, "{\"a\": 0, \"b\": }");
    snprintf(p, sizeof p, "%s/hfbad/merges.txt", d);
    write_file(p, "#version: 0.2\na b\n");
    CHECK(!mmp_bpe_load_clip(p, err, sizeof err) && strstr(err, "hfbad/vocab.json: line 1"));
    snprintf(p, sizeof p, "%s/hfbad/vocab.json", d);
    write_file(p, "{\"a\": 0, \"b\": 1}");
    snprintf(p, sizeof p, "%s/hfbad", d);
    CHECK(!mmp_bpe_load_clip(p, err, sizeof err) && strstr(err, "merges.txt: line 2: the merged token \"ab\""));
    snprintf(p, sizeof p, "%s/hfbad/vocab.json", d);
    write_file(p, "{\"a\": 0, \"b\": 1, \"ab\": 2}");
    snprintf(p, sizeof p, "%s/hfbad/model.safetensors", d);
    write_file(p, "x");
    CHECK(!mmp_bpe_load_clip(p, err, sizeof err) && strstr(err, "vocab.json: the byte symbol"));
    snprintf(p, sizeof p, "%s/empty", d);
    mkdir(p, 0755);
    CHECK(!mmp_bpe_load_clip(p, err, sizeof err) && strstr(err, "no CLIP tokenizer files"));
    CHECK(!mmp_bpe_load_clip("/nonexistent/x.gz", err, sizeof err) && strstr(err, "/nonexistent/x.gz"));

    mmp_bpe_free(oc);
    mmp_bpe_free(hf);
    TEST_END();
}
