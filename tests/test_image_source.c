/* Tar reader (ustar, GNU long names, pax), ImageFolder / WebDataset / CSV /
 * JSONL sources, sharding, class lists, corrupt archives, and the ordered
 * parallel map. Archives are built here, byte by byte. */
#include "image/pmap.h"
#include "image/source.h"
#include "image/tar.h"
#include "mmp.h"
#include "testlib.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- tiny tar writer ---- */
static void hdr(FILE *f, const char *name, const char *prefix, char type, size_t size) {
    uint8_t b[512];
    memset(b, 0, sizeof b);
    snprintf((char *)b, 100, "%s", name);
    snprintf((char *)b + 100, 8, "0000644");
    snprintf((char *)b + 108, 8, "0000000");
    snprintf((char *)b + 116, 8, "0000000");
    snprintf((char *)b + 124, 12, "%011zo", size);
    snprintf((char *)b + 136, 12, "%011o", 0);
    b[156] = (uint8_t)type;
    memcpy(b + 257, "ustar\0" "00", 8);
    if (prefix) snprintf((char *)b + 345, 155, "%s", prefix);
    memset(b + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += b[i];
    snprintf((char *)b + 148, 8, "%06o", sum);
    b[155] = ' ';
    fwrite(b, 1, 512, f);
}
static void data(FILE *f, const void *d, size_t n) {
    fwrite(d, 1, n, f);
    static const uint8_t z[512];
    fwrite(z, 1, (512 - n % 512) % 512, f);
}
static void member(FILE *f, const char *name, const void *d, size_t n) {
    hdr(f, name, NULL, '0', n);
    data(f, d, n);
}
static void end(FILE *f) {
    static const uint8_t z[1024];
    fwrite(z, 1, 1024, f);
}

static void spit(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(d, 1, n, f);
    fclose(f);
}

static uint8_t *jpg, *png;
static size_t njpg, npng;

typedef struct {
    char id[256];
    int64_t label;
    char text[64];
    int bad;
    char why[256]; /* the item's message when bad */
} got;

static int collect(int nin, char **in, mmp_src_opts *o, got *g, int max, char *err, size_t errlen,
                   mmp_src **keep) {
    mmp_src *s = mmp_src_open(nin, in, o, err, errlen);
    if (!s) return -1;
    mmp_src_item it = {0};
    int n = 0, r;
    while ((r = mmp_src_next(s, &it)) == 1) {
        if (n < max) {
            snprintf(g[n].id, sizeof g[n].id, "%s", it.id);
            g[n].label = it.label;
            snprintf(g[n].text, sizeof g[n].text, "%s", it.text ? it.text : "");
            g[n].bad = it.err[0] != 0;
            snprintf(g[n].why, sizeof g[n].why, "%s", it.err);
            if (!it.err[0]) CHECK(it.data != NULL);
        }
        n++;
    }
    if (r < 0) snprintf(err, errlen, "%s", mmp_src_error(s));
    mmp_src_item_clear(&it);
    if (keep) *keep = s;
    else mmp_src_close(s);
    return r < 0 ? -1 : n;
}

static void test_imagefolder_tar(void) {
    FILE *f = fopen("if.tar", "wb");
    hdr(f, "train/", NULL, '5', 0);
    hdr(f, "train/dog/", NULL, '5', 0);
    member(f, "train/dog/1.jpg", jpg, njpg);
    member(f, "train/cat/2.png", png, npng);
    member(f, "README", "hello", 5); /* not an image: ignored */
    /* GNU long name */
    char longname[300];
    snprintf(longname, sizeof longname, "train/bird/%0200d.jpg", 7);
    hdr(f, "././@LongLink", NULL, 'L', strlen(longname) + 1);
    data(f, longname, strlen(longname) + 1);
    hdr(f, "short-ignored", NULL, '0', njpg);
    data(f, jpg, njpg);
    /* pax path */
    const char *pax = "30 path=train/cat/paxname.jpg\n";
    hdr(f, "PaxHeaders/x", NULL, 'x', strlen(pax));
    data(f, pax, strlen(pax));
    hdr(f, "ignored", NULL, '0', 0); /* size from the header (0) */
    /* ustar prefix */
    hdr(f, "3.jpg", "train/dog", '0', 0);
    member(f, "train/cat/empty.jpg", "", 0);
    end(f);
    fclose(f);

    char *in[] = {"if.tar"};
    got g[16];
    char err[512];
    mmp_src *s = NULL;
    int n = collect(1, in, NULL, g, 16, err, sizeof err, &s);
    CHECKF(n == 6, "imagefolder tar: %d items (%s)", n, n < 0 ? err : "");
    if (n == 6) {
        CHECK(mmp_src_nclasses(s) == 3);
        char **c = mmp_src_classes(s);
        CHECK(!strcmp(c[0], "bird") && !strcmp(c[1], "cat") && !strcmp(c[2], "dog"));
        CHECK(!strcmp(g[0].id, "train/dog/1.jpg") && g[0].label == 2);
        CHECK(!strcmp(g[1].id, "train/cat/2.png") && g[1].label == 1);
        CHECK(!strcmp(g[2].id, longname) && g[2].label == 0);
        CHECK(!strcmp(g[3].id, "train/cat/paxname.jpg") && g[3].label == 1);
        CHECK(!strcmp(g[4].id, "train/dog/3.jpg") && g[4].label == 2);
        CHECK(!strcmp(g[5].id, "train/cat/empty.jpg"));
    }
    mmp_src_close(s);

    /* sharding: disjoint, covering */
    int seen[6] = {0};
    for (int i = 0; i < 3; i++) {
        mmp_src_opts o = {.shard_i = i, .shard_n = 3};
        got h[16];
        int m = collect(1, in, &o, h, 16, err, sizeof err, NULL);
        CHECK(m == 2);
        for (int k = 0; k < m && k < 16; k++)
            for (int j = 0; j < 6; j++)
                if (!strcmp(h[k].id, g[j].id)) seen[j]++;
    }
    for (int j = 0; j < 6; j++) CHECK(seen[j] == 1);

    /* fixed class list: order given, unknown class -> bad item */
    char *cl[] = {"dog", "cat"};
    mmp_src_opts o = {.nclasses = 2, .classes = cl};
    n = collect(1, in, &o, g, 16, err, sizeof err, NULL);
    CHECK(n == 6);
    if (n == 6) {
        CHECK(g[0].label == 0 && g[1].label == 1 && g[2].bad);
    }

    /* corrupt header checksum: error naming the file and the offset */
    uint8_t *t;
    size_t tn;
    t = t_slurp("if.tar", &tn);
    t[1024 + 512 + ((njpg + 511) / 512) * 512 + 3] ^= 1; /* name of the 2nd file member */
    spit("bad.tar", t, tn);
    char *bin[] = {"bad.tar"};
    n = collect(1, bin, NULL, g, 16, err, sizeof err, NULL);
    CHECKF(n == -1 && strstr(err, "bad.tar") && strstr(err, "offset") && strstr(err, "checksum"), "corrupt: %d %s", n, err);
    /* truncated inside a member's data */
    spit("trunc.tar", t, 1024 + 512 + 100);
    char *tin[] = {"trunc.tar"};
    n = collect(1, tin, NULL, g, 16, err, sizeof err, NULL);
    CHECKF(n == -1 && strstr(err, "trunc.tar") && strstr(err, "truncated"), "truncated: %d %s", n, err);
    free(t);
    /* not a tar at all */
    spit("junk.tar", "this is not a tar archive", 25);
    char *jin[] = {"junk.tar"};
    n = collect(1, jin, NULL, g, 16, err, sizeof err, NULL);
    CHECK(n == -1 && strstr(err, "junk.tar"));
}

static void test_wds(void) {
    FILE *f = fopen("wds.tar", "wb");
    member(f, "shard/000.cls", "3\n", 2);
    member(f, "shard/000.jpg", jpg, njpg);
    member(f, "shard/000.txt", "a red car", 9);
    member(f, "shard/001.jpg", jpg, njpg);
    member(f, "shard/001.json", "{\"label\": 5, \"caption\": \"caf\\u00e9 \\\"x\\\"\", \"extra\": [1,{\"a\":2}]}", 64);
    member(f, "shard/002.txt", "no image here", 13);
    member(f, "shard/003.png", png, npng);
    member(f, "shard/004.jpg", jpg, njpg);
    const char *bad_json = "{\"label\": 5,\n \"caption\": x}";
    member(f, "shard/004.json", bad_json, strlen(bad_json));
    end(f);
    fclose(f);
    char *in[] = {"wds.tar"};
    got g[8];
    char err[512];
    mmp_src *s;
    int n = collect(1, in, NULL, g, 8, err, sizeof err, &s);
    CHECKF(n == 5, "wds: %d (%s)", n, err);
    if (n == 5) {
        CHECK(mmp_src_nclasses(s) == 0);
        CHECK(!strcmp(g[0].id, "shard/000.jpg") && g[0].label == 3 && !strcmp(g[0].text, "a red car"));
        CHECKF(!strcmp(g[1].id, "shard/001.jpg") && g[1].label == 5 && !strcmp(g[1].text, "caf\xc3\xa9 \"x\""), "json: %s %lld '%s'", g[1].id, (long long)g[1].label, g[1].text);
        CHECK(g[2].bad);
        CHECK(!strcmp(g[3].id, "shard/003.png") && g[3].label == MMP_NO_LABEL && !g[3].bad);
        /* a malformed .json: the item is bad, its message names the member and the position */
        CHECKF(g[4].bad && !strcmp(g[4].why, "shard/004.json: line 2, column 13: invalid token near 'x'"), "%s", g[4].why);
    }
    mmp_src_close(s);
}

static void test_dir_manifests(void) {
    mkdir("ds", 0755);
    mkdir("ds/b_cls", 0755);
    mkdir("ds/a_cls", 0755);
    mkdir("ds/a_cls/sub", 0755);
    mkdir("ds/empty_cls", 0755);
    spit("ds/b_cls/x.jpg", jpg, njpg);
    spit("ds/a_cls/z.PNG", png, npng);
    spit("ds/a_cls/sub/y.jpg", jpg, njpg);
    spit("ds/a_cls/notes.txt", "x", 1);
    spit("ds/toplevel.jpg", jpg, njpg);
    char *in[] = {"ds"};
    got g[8];
    char err[512];
    mmp_src *s;
    int n = collect(1, in, NULL, g, 8, err, sizeof err, &s);
    CHECKF(n == 3, "dir: %d (%s)", n, err);
    if (n == 3) {
        CHECK(mmp_src_nclasses(s) == 3); /* empty class folders count, as in torchvision */
        CHECK(!strcmp(g[0].id, "ds/a_cls/z.PNG") && g[0].label == 0);
        CHECK(!strcmp(g[1].id, "ds/a_cls/sub/y.jpg") && g[1].label == 0);
        CHECK(!strcmp(g[2].id, "ds/b_cls/x.jpg") && g[2].label == 1);
    }
    mmp_src_close(s);

    FILE *f = fopen("m.csv", "w");
    fprintf(f, "path,label,caption\nds/b_cls/x.jpg,dog,\"a dog, sitting\"\n\"ds/a_cls/z.PNG\",cat,\"say \"\"hi\"\"\"\nmissing.jpg,dog,\n");
    fclose(f);
    char *cin[] = {"m.csv"};
    n = collect(1, cin, NULL, g, 8, err, sizeof err, &s);
    CHECKF(n == 3, "csv: %d (%s)", n, err);
    if (n == 3) {
        CHECK(mmp_src_nclasses(s) == 2);
        CHECK(g[0].label == 1 && !strcmp(g[0].text, "a dog, sitting") && !g[0].bad);
        CHECK(g[1].label == 0 && !strcmp(g[1].text, "say \"hi\""));
        CHECK(g[2].bad); /* missing file: a counted skip, not fatal */
    }
    mmp_src_close(s);
    /* an unterminated quote, in a row and in the header: one message naming
     * the manifest and line (and, under ASan, nothing leaked) */
    const char *badcsv[2] = {"path,label\nds/b_cls/x.jpg,\"dog\nmore\n", "path,\"label\n"};
    for (int k = 0; k < 2; k++) {
        f = fopen("q.csv", "w");
        fputs(badcsv[k], f);
        fclose(f);
        char *qin[] = {"q.csv"};
        n = collect(1, qin, NULL, g, 8, err, sizeof err, NULL);
        CHECKF(n < 0 && strstr(err, "q.csv: line") && strstr(err, "unterminated quoted field"), "csv %d: %d (%s)", k, n, err);
    }
    f = fopen("m.jsonl", "w");
    fprintf(f, "{\"path\": \"ds/b_cls/x.jpg\", \"label\": 7, \"text\": \"t1\"}\n\n{\"path\": \"ds/a_cls/z.PNG\"}\n");
    fclose(f);
    char *jin[] = {"m.jsonl"};
    n = collect(1, jin, NULL, g, 8, err, sizeof err, NULL);
    CHECK(n == 2);
    if (n == 2) CHECK(g[0].label == 7 && !strcmp(g[0].text, "t1") && g[1].label == MMP_NO_LABEL);
    f = fopen("bad.jsonl", "w");
    fprintf(f, "{\"path\": \"x.jpg\"\n");
    fclose(f);
    char *bin[] = {"bad.jsonl"};
    n = collect(1, bin, NULL, g, 8, err, sizeof err, NULL);
    CHECKF(n == -1 && strstr(err, "bad.jsonl: line 1, column ") && strstr(err, "expected"), "%s", err);
    /* a key of a nested object is not the record's; "\ud83d\ude00" is one character
     * (U+1F600, 4 bytes of UTF-8); null = absent */
    f = fopen("m2.jsonl", "w");
    fprintf(f, "{\"meta\": {\"path\": \"no.jpg\", \"label\": 3}, \"path\": \"ds/b_cls/x.jpg\", \"text\": \"a \\ud83d\\ude00\", \"label\": null}\n");
    fclose(f);
    char *j2[] = {"m2.jsonl"};
    n = collect(1, j2, NULL, g, 8, err, sizeof err, NULL);
    CHECKF(n == 1, "%d %s", n, err);
    if (n == 1)
        CHECKF(strstr(g[0].id, "ds/b_cls/x.jpg") && g[0].label == MMP_NO_LABEL && !strcmp(g[0].text, "a \xf0\x9f\x98\x80"),
               "%s %lld '%s'", g[0].id, (long long)g[0].label, g[0].text);
    /* malformed records: one line naming the manifest, the line and what */
    const char *badj[][2] = {
        {"{\"path\": \"a.jpg\"}\n{\"meta\": {\"path\": \"b.jpg\"}}\n", "line 2: want a JSON object with \"path\""},
        {"{\"path\": \"a.jpg\", \"label\": [1]}\n", "line 1: \"label\" is an array, expected a string or an integer"},
        {"{\"path\": \"a.jpg\", \"label\": 1.5}\n", "line 1: \"label\" is a number"},
        {"\n{\"path\": \"a.jpg\", \"path\": \"b.jpg\"}\n", "line 2, column 24: duplicate object key"},
        {"{\"path\": \"a\\u0000.jpg\"}\n", "line 1, column 22: NUL character"},
        {"{\"path\": \"a.jpg\"} x\n", "line 1, column 19: trailing bytes"},
        {"[\"a.jpg\"]\n", "line 1: want a JSON object, not an array"},
        {"{\"path\": \"a\x01.jpg\"}\n", "line 1, column 11: control character 0x1"},
    };
    for (size_t k = 0; k < sizeof badj / sizeof badj[0]; k++) {
        f = fopen("b.jsonl", "w");
        fputs(badj[k][0], f);
        fclose(f);
        char *bj[] = {"b.jsonl"};
        n = collect(1, bj, NULL, g, 8, err, sizeof err, NULL);
        CHECKF(n == -1 && !strncmp(err, "b.jsonl: ", 9) && strstr(err, badj[k][1]) && !strchr(err, '\n') && !strchr(err, 1),
               "jsonl %zu: %d '%s' (want '%s')", k, n, err, badj[k][1]);
    }
    /* several inputs: class union, sorted */
    char *two[] = {"ds", "m.csv"};
    n = collect(2, two, NULL, g, 8, err, sizeof err, &s);
    CHECK(n == 6);
    if (n == 6) {
        CHECK(mmp_src_nclasses(s) == 5); /* a_cls b_cls cat dog empty_cls */
        CHECK(g[0].label == 0 && g[3].label == 3);
    }
    mmp_src_close(s);
}

/* random mutations of a tar: an error with a message or items, never a crash */
static void test_tar_mutations(void) {
    size_t n;
    uint8_t *t = t_slurp("if.tar", &n);
    if (!t) return;
    uint8_t *m = malloc(n);
    uint64_t s = 99;
    int errors = 0;
    for (int it = 0; it < 200; it++) {
        memcpy(m, t, n);
        for (int j = 0; j < 1 + it % 4; j++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t pos = (size_t)(s >> 33) % 4096; /* the headers live in the first blocks */
            if (pos < n) m[pos] = (uint8_t)(s >> 20);
        }
        spit("mut.tar", m, it % 3 == 2 ? (size_t)(s >> 40) % n : n);
        char *in[] = {"mut.tar"};
        got g[16];
        char err[512] = "";
        int k = collect(1, in, NULL, g, 16, err, sizeof err, NULL);
        if (k < 0) {
            CHECK(strstr(err, "mut.tar") != NULL);
            errors++;
        }
    }
    CHECK(errors > 0);
    free(m);
    free(t);
}

/* A header claiming a 1 GiB member over a few real bytes: the reader says
 * the archive is truncated, from a file and from a pipe, without allocating
 * the claimed size first. Run in a child whose address space is capped at
 * 256 MiB above what it uses, so allocating the claim fails as "out of
 * memory" (not under ASan, whose shadow memory needs an uncapped space). */
static void test_tar_claimed_size(void) {
    FILE *f = fopen("huge.tar", "wb");
    hdr(f, "a/x.jpg", NULL, '0', (size_t)1 << 30);
    fwrite(jpg, 1, njpg < 300 ? njpg : 300, f);
    fclose(f);
    for (int piped = 0; piped < 2; piped++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
#ifndef T_ASAN
            long pages = 0;
            FILE *sm = fopen("/proc/self/statm", "r");
            if (sm && fscanf(sm, "%ld", &pages) == 1) {
                struct rlimit rl;
                rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (256u << 20);
                setrlimit(RLIMIT_AS, &rl);
            }
            if (sm) fclose(sm);
#endif
            FILE *fp = piped ? popen("cat huge.tar", "r") : fopen("huge.tar", "rb");
            if (!fp) _exit(2);
            mmp_tar *t = mmp_tar_open_fp(fp, "huge.tar");
            mmp_tar_entry e;
            if (mmp_tar_next(t, &e) != 1) _exit(3);
            uint8_t *buf = NULL;
            if (mmp_tar_read(t, &buf) == 0 || buf) _exit(4);
            const char *msg = mmp_tar_error(t);
            if (!msg || !strstr(msg, "truncated member") || !strstr(msg, "huge.tar")) {
                fprintf(stderr, "piped=%d: %s\n", piped, msg ? msg : "(none)");
                _exit(5);
            }
            _exit(0);
        }
        int st = 0;
        CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "claimed-size tar, piped=%d: child status %d", piped, st);
    }
}

/* ---- ordered parallel map ---- */
typedef struct {
    int next, n;
    int out[1000];
    int nout;
    int stop_at, ndiscard, discard_ok; /* early stop: consume returns 2 at item stop_at (> 0) */
} pctx;
typedef struct {
    int v, r;
} pslot;
static int p_produce(void *c, void *s) {
    pctx *p = c;
    if (p->next >= p->n) return 0;
    ((pslot *)s)->v = p->next++;
    return 1;
}
static void p_work(void *c, void *s, int tid) {
    pslot *x = s;
    volatile unsigned h = (unsigned)x->v;
    for (int i = 0; i < (x->v % 7) * 1000; i++) h = h * 31 + 7; /* uneven work */
    x->r = x->v * 3;
}
static int p_consume(void *c, void *s) {
    pctx *p = c;
    p->out[p->nout++] = ((pslot *)s)->r;
    return p->stop_at && p->nout == p->stop_at ? 2 : 0;
}
static void p_discard(void *c, void *s) {
    pctx *p = c;
    p->discard_ok &= ((pslot *)s)->v == p->nout + p->ndiscard; /* the items after the stop, in order */
    p->ndiscard++;
}

static void test_pmap(void) {
    for (int nt = 1; nt <= 5; nt += 2) {
        pctx c = {.n = 1000};
        mmp_pmap_spec sp = {p_produce, p_work, p_consume, &c, sizeof(pslot), nt, 0, p_discard};
        CHECK(mmp_pmap(&sp) == 0 && c.ndiscard == 0);
        int ok = c.nout == 1000;
        for (int i = 0; i < c.nout; i++) ok &= c.out[i] == i * 3;
        CHECKF(ok, "pmap with %d threads out of order", nt);
        /* consume stops the map: every item produced and not consumed is discarded */
        pctx d = {.n = 1000, .stop_at = 10, .discard_ok = 1};
        sp.ctx = &d;
        CHECK(mmp_pmap(&sp) == 2);
        CHECKF(d.nout == 10 && d.nout + d.ndiscard == d.next && d.discard_ok,
               "pmap stop with %d threads: %d consumed, %d discarded, %d produced", nt, d.nout, d.ndiscard, d.next);
    }
}

/* Hugging Face imagefolder: split folders and --split, class folders below
 * them, metadata.jsonl with a byte order mark, and manifest rows whose
 * labels are checked with the file and line */
static void test_hf_imagefolder(void) {
    const char *dirs[] = {"hfs", "hfs/train", "hfs/train/a", "hfs/train/b", "hfs/test", "hfs/test/a"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) mkdir(dirs[i], 0755);
    spit("hfs/train/b/2.jpg", jpg, njpg);
    spit("hfs/train/a/1.png", png, npng);
    spit("hfs/test/a/3.jpg", jpg, njpg);
    spit("hfs/test/a/notes.txt", "x", 1);
    spit("hfs/train/a/.4.jpg", jpg, njpg); /* hidden: not part of the data set */
    char *in[] = {"hfs"};
    got g[8];
    char err[512];
    mmp_src *s;
    int n = collect(1, in, NULL, g, 8, err, sizeof err, NULL);
    CHECKF(n == -1 && !strcmp(err, "hfs: splits train, test (Hugging Face imagefolder layout): choose with --split NAME (or A+B)"),
           "no split: %d %s", n, err);
    mmp_src_opts o = {.split = "test"};
    n = collect(1, in, &o, g, 8, err, sizeof err, &s);
    CHECKF(n == 1, "test: %d %s", n, err);
    if (n == 1) {
        CHECK(mmp_src_nclasses(s) == 2 && !strcmp(mmp_src_classes(s)[1], "b")); /* over all splits */
        CHECK(!strcmp(g[0].id, "hfs/test/a/3.jpg") && g[0].label == 0 && !g[0].bad);
        CHECK(!strcmp(mmp_src_kinds(s), "imagefolder"));
    }
    mmp_src_close(s);
    o.split = "train+test";
    n = collect(1, in, &o, g, 8, err, sizeof err, NULL);
    CHECKF(n == 3 && !strcmp(g[0].id, "hfs/train/a/1.png") && g[1].label == 1 && !strcmp(g[2].id, "hfs/test/a/3.jpg"),
           "train+test: %d %s", n, err);
    o.split = "validation";
    n = collect(1, in, &o, g, 8, err, sizeof err, NULL);
    CHECKF(n == -1 && !strcmp(err, "hfs: no split 'validation' (found: train, test)"), "%s", err);

    /* metadata.jsonl (BOM) one folder down: rows in order, file_name relative
     * to it, JSON strings are class names, integers labels */
    mkdir("hfm", 0755);
    mkdir("hfm/data", 0755);
    mkdir("hfm/data/img", 0755);
    spit("hfm/data/img/x.jpg", jpg, njpg);
    spit("hfm/data/y.png", png, npng);
    FILE *f = fopen("hfm/data/metadata.jsonl", "w");
    fprintf(f, "\xef\xbb\xbf{\"file_name\": \"y.png\", \"label\": \"7\", \"text\": \"why\"}\n"
               "{\"file_name\": \"img/../img/x.jpg\", \"label\": \"3\"}\n");
    fclose(f);
    char *hm[] = {"hfm"};
    n = collect(1, hm, NULL, g, 8, err, sizeof err, &s);
    CHECKF(n == 2, "metadata: %d %s", n, err);
    if (n == 2) {
        CHECK(mmp_src_nclasses(s) == 2 && !strcmp(mmp_src_classes(s)[0], "3")); /* strings: class names */
        CHECK(!strcmp(g[0].id, "hfm/data/y.png") && g[0].label == 1 && !strcmp(g[0].text, "why"));
        CHECK(!strcmp(g[1].id, "hfm/data/img/x.jpg") && g[1].label == 0 && !g[1].bad);
    }
    mmp_src_close(s);
    f = fopen("hfm/data/metadata.jsonl", "w");
    fprintf(f, "{\"file_name\": \"y.png\", \"label\": \"cat\"}\n\n{\"file_name\": \"y.png\", \"label\": 2}\n");
    fclose(f);
    n = collect(1, hm, NULL, g, 8, err, sizeof err, NULL);
    CHECKF(n == -1 && !strcmp(err, "hfm/data/metadata.jsonl: line 3: label 2 is a number here but a string (a class name) on line 1"),
           "mixed: %s", err);

    /* an integer label beyond the class names another input brings: the
     * manifest's line, not the writer's record number */
    f = fopen("m5.jsonl", "w");
    fprintf(f, "{\"path\": \"hfs/train/a/1.png\", \"label\": 1}\n{\"path\": \"hfs/train/a/1.png\", \"label\": 2}\n");
    fclose(f);
    char *two[] = {"hfs", "m5.jsonl"};
    o.split = "train";
    n = collect(2, two, &o, g, 8, err, sizeof err, NULL);
    CHECKF(n == -1 && !strcmp(err, "m5.jsonl: line 2: label 2 out of range (2 classes named by the inputs)"), "range: %s", err);
    /* the label in the message stays on one line */
    f = fopen("mx.jsonl", "w");
    fprintf(f, "{\"path\": \"a.jpg\", \"label\": 1}\n{\"path\": \"a.jpg\", \"label\": \"x\\ny\"}\n");
    fclose(f);
    char *mx[] = {"mx.jsonl"};
    n = collect(1, mx, NULL, g, 8, err, sizeof err, NULL);
    CHECKF(n == -1 && !strcmp(err, "mx.jsonl: line 2: label 'x?y' is a string (a class name) here but a number on line 1"), "%s", err);
}

int main(void) {
    mmp_set_progname("test_image_source");
    jpg = t_slurp(t_root_path("tests/fixtures/image/base420.jpg"), &njpg);
    png = t_slurp(t_root_path("tests/fixtures/image/rgb.png"), &npng);
    if (!jpg || !png) SKIP("fixtures missing");
    test_imagefolder_tar();
    test_tar_mutations();
    test_tar_claimed_size();
    test_wds();
    test_dir_manifests();
    test_hf_imagefolder();
    test_pmap();
    free(jpg);
    free(png);
    TEST_END();
}
