/* Stream-level tests of mmp-decode / mmp-augment / mmp-shuffle / mmp-split:
 * runs the programs (MMP_BUILD) on data built here and reads their output
 * with mmp_reader. */
#include "image/augment.h"
#include "image/image.h"
#include "mmp.h"
#include "shuffle.h"
#include "testlib.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char bindir[4096];

static void spit(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(d, 1, n, f);
    fclose(f);
}
static void copy_fixture(const char *name, const char *dst) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/image/%s", name);
    size_t n;
    uint8_t *b = t_slurp(t_root_path(rel), &n);
    if (!b) {
        fprintf(stderr, "missing fixture %s\n", name);
        exit(1);
    }
    spit(dst, b, n);
    free(b);
}

typedef struct {
    int n;
    mmp_record *r;
    mmp_header h;
    uint64_t skipped;
    int ok;
} stream;

static stream load(const char *path) {
    stream s = {0};
    char err[512];
    mmp_reader *r = mmp_reader_open(path, err, sizeof err);
    if (!r) {
        fprintf(stderr, "%s: %s\n", path, err);
        return s;
    }
    mmp_header_copy(&s.h, mmp_reader_header(r));
    int cap = 16, rc;
    s.r = malloc(sizeof(mmp_record) * cap);
    mmp_record_init(&s.r[0]);
    while ((rc = mmp_reader_next(r, &s.r[s.n])) == 1) {
        if (++s.n == cap) s.r = realloc(s.r, sizeof(mmp_record) * (cap *= 2));
        mmp_record_init(&s.r[s.n]);
    }
    if (rc < 0) fprintf(stderr, "%s: %s\n", path, mmp_reader_error(r));
    s.ok = rc == 0;
    s.skipped = mmp_reader_skipped(r);
    mmp_reader_close(r);
    return s;
}
static void unload(stream *s) {
    for (int i = 0; i <= s->n && s->r; i++) mmp_record_clear(&s->r[i]);
    free(s->r);
    if (s->ok || s->h.nfields) mmp_header_free(&s->h);
    memset(s, 0, sizeof *s);
}
static int same_records(const stream *a, const stream *b) {
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++) {
        const mmp_record *x = &a->r[i], *y = &b->r[i];
        if (strcmp(x->id ? x->id : "", y->id ? y->id : "") || x->label != y->label) return 0;
        if ((x->text == NULL) != (y->text == NULL) || (x->text && strcmp(x->text, y->text))) return 0;
        if (x->nfields != y->nfields) return 0;
        for (int f = 0; f < x->nfields; f++) {
            const mmp_tensor *s = &x->fields[f].t, *t = mmp_record_cget(y, x->fields[f].name);
            if (!t || s->dtype != t->dtype || s->nbytes != t->nbytes || memcmp(s->data, t->data, s->nbytes))
                return 0;
        }
    }
    return 1;
}
static int find(const stream *s, const char *id) {
    for (int i = 0; i < s->n; i++)
        if (s->r[i].id && !strcmp(s->r[i].id, id)) return i;
    return -1;
}

static void make_dataset(void) {
    mkdir("ds", 0755);
    mkdir("ds/cat", 0755);
    mkdir("ds/dog", 0755);
    copy_fixture("base420.jpg", "ds/cat/a.jpg");
    copy_fixture("rgb.png", "ds/cat/b.png");
    copy_fixture("prog.jpg", "ds/dog/c.jpg");
    copy_fixture("gray.jpg", "ds/dog/d.jpg");
    copy_fixture("cmyk.jpg", "ds/dog/e.jpeg");
    copy_fixture("palette.png", "ds/dog/f.png");
    spit("ds/dog/zero.jpg", "", 0);
    spit("ds/cat/text.jpg", "hello, not an image\n", 20);
    size_t n;
    uint8_t *j = t_slurp(t_root_path("tests/fixtures/image/base420.jpg"), &n);
    spit("ds/cat/trunc.jpg", j, n / 2);
    /* decompression bomb: SOF says 50000 x 50000 */
    for (size_t i = 2; i + 9 < n; i++)
        if (j[i] == 0xFF && j[i + 1] == 0xC0) {
            j[i + 5] = 0xC3, j[i + 6] = 0x50, j[i + 7] = 0xC3, j[i + 8] = 0x50;
            break;
        }
    spit("ds/dog/bomb.jpg", j, n);
    free(j);
    spit("ds/dog/readme.md", "ignored (not an image extension)", 31);
}

static void test_decode(void) {
    make_dataset();
    CHECK(t_sh("mmp-decode ds -j 1 -o a.mmp 2> a.err") == 0);
    stream a = load("a.mmp");
    CHECKF(a.ok && a.n == 6, "decode: %d records", a.n);
    CHECK(a.skipped == 4);
    CHECK(a.h.nclasses == 2 && !strcmp(a.h.classes[0], "cat") && !strcmp(a.h.classes[1], "dog"));
    size_t en;
    char *e = (char *)t_slurp("a.err", &en);
    CHECKF(e && strstr(e, "ds/dog/zero.jpg") && strstr(e, "ds/cat/text.jpg") && strstr(e, "ds/cat/trunc.jpg") &&
               strstr(e, "ds/dog/bomb.jpg") && strstr(e, "4 skipped"),
           "stderr: %s", e ? e : "");
    free(e);
    if (a.n == 6) {
        CHECK(!strcmp(a.r[0].id, "ds/cat/a.jpg") && a.r[0].label == 0);
        CHECK(!strcmp(a.r[2].id, "ds/dog/c.jpg") && a.r[2].label == 1);
        const mmp_tensor *t = mmp_record_cget(&a.r[0], "image");
        CHECK(t && t->dtype == MMP_U8 && t->ndim == 3 && t->shape[0] == 47 && t->shape[1] == 61 && t->shape[2] == 3);
        /* pixels equal PIL's decode (reference from the fixtures) */
        mmp_safetensors st;
        char err[256];
        if (t && mmp_st_open(&st, t_root_path("tests/fixtures/image/ref.safetensors"), err, sizeof err) == 0) {
            const char *refs[6] = {"dec/base420.jpg", "dec/rgb.png", "dec/prog.jpg", "dec/gray.jpg", "dec/cmyk.jpg", "dec/palette.png"};
            for (int i = 0; i < 6; i++) {
                const mmp_tensor *ref = mmp_st_get(&st, refs[i]), *got = mmp_record_cget(&a.r[i], "image");
                CHECKF(ref && got && ref->nbytes == got->nbytes && !memcmp(ref->data, got->data, ref->nbytes),
                       "%s differs from PIL", refs[i]);
            }
            mmp_st_close(&st);
        }
    }
    /* any -j: identical records */
    CHECK(t_sh("mmp-decode ds -j 3 -o b.mmp 2>/dev/null") == 0);
    stream b = load("b.mmp");
    CHECK(same_records(&a, &b));
    unload(&b);
    /* --strict: fatal, names the file */
    CHECK(t_sh("mmp-decode ds --strict -o s.mmp 2> s.err") != 0);
    e = (char *)t_slurp("s.err", &en);
    CHECK(e && strstr(e, "mmp-decode: ") && strstr(e, ".jpg"));
    free(e);
    /* tar (system tar, ustar/GNU) = directory; stdin streaming with --classes; stdin spooled */
    CHECK(t_sh("tar cf ds.tar --sort=name ds") == 0); /* archive order = output order */
    CHECK(t_sh("mmp-decode ds.tar -j 2 -o t.mmp 2>/dev/null") == 0);
    stream t = load("t.mmp");
    CHECK(t.skipped == 4 && same_records(&a, &t));
    unload(&t);
    CHECK(t_sh("cat ds.tar | mmp-decode - --classes cat,dog -o t2.mmp 2>/dev/null") == 0);
    t = load("t2.mmp");
    CHECK(same_records(&a, &t));
    unload(&t);
    CHECK(t_sh("cat ds.tar | mmp-decode - -o t3.mmp 2>/dev/null") == 0);
    t = load("t3.mmp");
    CHECK(same_records(&a, &t) && t.h.nclasses == 2);
    unload(&t);
    /* shards: disjoint and covering */
    CHECK(t_sh("mmp-decode ds --shard 0/2 -o s0.mmp 2>/dev/null && mmp-decode ds --shard 1/2 -o s1.mmp 2>/dev/null") == 0);
    stream s0 = load("s0.mmp"), s1 = load("s1.mmp");
    CHECK(s0.n + s1.n == a.n && s0.n > 0 && s1.n > 0);
    for (int i = 0; i < s0.n; i++) CHECK(find(&s1, s0.r[i].id) < 0 && find(&a, s0.r[i].id) >= 0);
    for (int i = 0; i < s1.n; i++) CHECK(find(&a, s1.r[i].id) >= 0);
    unload(&s0);
    unload(&s1);
    /* corrupt tar: fatal, names the file and the offset; no silent short stream */
    size_t n;
    uint8_t *tb = t_slurp("ds.tar", &n);
    tb[512 * 3 + 100] ^= 0x40; /* inside the 2nd or 3rd header (mode field) or data */
    int hdrs = 0;
    for (size_t off = 0; off + 512 <= n; off += 512) /* corrupt the last header's checksum field */
        if (!memcmp(tb + off + 257, "ustar", 5)) hdrs = (int)off;
    tb[hdrs + 148] = '9';
    spit("bad.tar", tb, n);
    spit("short.tar", tb, hdrs + 700);
    free(tb);
    CHECK(t_sh("mmp-decode bad.tar -o bad.mmp 2> bad.err") != 0);
    e = (char *)t_slurp("bad.err", &en);
    CHECKF(e && strstr(e, "bad.tar") && strstr(e, "offset"), "corrupt tar message: %s", e ? e : "");
    free(e);
    CHECK(t_sh("mmp-decode short.tar -o short.mmp 2> short.err") != 0);
    /* --size: torchvision Resize+CenterCrop, equals the library call */
    CHECK(t_sh("mmp-decode ds --size 24 -o z.mmp 2>/dev/null") == 0);
    stream z = load("z.mmp");
    CHECK(z.n == 6 && mmp_meta_get(&z.h.meta, "image.size") && !strcmp(mmp_meta_get(&z.h.meta, "image.size"), "24"));
    if (z.n == 6 && a.n == 6) {
        for (int i = 0; i < 6; i++) {
            const mmp_tensor *src = mmp_record_cget(&a.r[i], "image"), *got = mmp_record_cget(&z.r[i], "image");
            mmp_img im = {(int)src->shape[1], (int)src->shape[0], src->data}, o;
            mmp_img_resize_center_crop(&im, 24, &o);
            CHECK(got->shape[0] == 24 && got->shape[1] == 24 && !memcmp(o.px, got->data, 24 * 24 * 3));
            mmp_img_free(&o);
        }
    }
    unload(&z);
    CHECK(t_sh("mmp-decode ds --resize 20x10 -o r.mmp 2>/dev/null") == 0);
    stream rz = load("r.mmp");
    CHECK(rz.n == 6 && rz.r[0].fields[0].t.shape[0] == 10 && rz.r[0].fields[0].t.shape[1] == 20);
    unload(&rz);
    /* manifest with text */
    FILE *f = fopen("m.csv", "w");
    fprintf(f, "path,label,text\nds/cat/a.jpg,dog,\"a photo, maybe\"\nds/dog/c.jpg,cat,two\n");
    fclose(f);
    CHECK(t_sh("mmp-decode m.csv -o m.mmp") == 0);
    stream m = load("m.mmp");
    CHECK(m.n == 2 && m.r[0].label == 1 && m.r[0].text && !strcmp(m.r[0].text, "a photo, maybe"));
    unload(&m);
    /* usage errors */
    CHECK(t_sh("mmp-decode 2>/dev/null") != 0);
    CHECK(t_sh("mmp-decode ds --bogus 2>/dev/null") != 0);
    CHECK(t_sh("mmp-decode does-not-exist 2>/dev/null") != 0);
    CHECK(t_sh("mmp-decode --help >/dev/null") == 0);
    unload(&a);
}

static void test_augment(void) {
    CHECK(t_sh("mmp-decode ds --size 32 -o d32.mmp 2>/dev/null") == 0);
    const char *ops = "--rrc 24,scale=0.3:1 --hflip 0.5 --jitter 0.4,0.4,0.4,0.1 --gray 0.2 --normalize imagenet --erase 0.5";
    CHECK(t_sh("mmp-augment d32.mmp %s --seed 3 -j 1 -o g1.mmp", ops) == 0);
    CHECK(t_sh("mmp-augment %s --seed 3 -j 3 -o g2.mmp < d32.mmp", ops) == 0);
    CHECK(t_sh("mmp-augment d32.mmp %s --seed 3 --epoch 1 -o g3.mmp", ops) == 0);
    stream g1 = load("g1.mmp"), g2 = load("g2.mmp"), g3 = load("g3.mmp");
    CHECK(g1.n == 6 && same_records(&g1, &g2));
    CHECK(g3.n == 6 && !same_records(&g1, &g3));
    CHECK(g1.skipped == 4); /* upstream skips carried over */
    const mmp_schema_field *sf = mmp_header_field(&g1.h, "image");
    CHECK(sf && sf->dtype == MMP_F32 && sf->shape[0] == 3 && sf->shape[1] == 24 && sf->shape[2] == 24);
    const char *lay = mmp_meta_get(&g1.h.meta, "image.layout"), *mean = mmp_meta_get(&g1.h.meta, "image.mean");
    CHECK(lay && !strcmp(lay, "chw") && mean && strstr(mean, "0.485"));
    CHECK(g1.h.nclasses == 2);
    unload(&g1);
    unload(&g2);
    unload(&g3);
    /* views */
    CHECK(t_sh("mmp-augment d32.mmp --rrc 16 --hflip 0.5 --views 3 --seed 1 -o v.mmp") == 0);
    stream v = load("v.mmp");
    CHECK(v.n == 18 && v.r[0].id && strstr(v.r[0].id, "#v0") && strstr(v.r[2].id, "#v2"));
    if (v.n == 18) CHECK(v.r[0].label == v.r[1].label && v.r[0].fields[0].t.shape[0] == 16);
    unload(&v);
    /* normalize only = ToTensor+Normalize of the decoded pixels, f16 too */
    CHECK(t_sh("mmp-augment d32.mmp --normalize 0.5,0.5,0.5/0.25,0.25,0.25 -o n.mmp && "
             "mmp-augment d32.mmp --normalize imagenet --dtype f16 -o h.mmp") == 0);
    stream d = load("d32.mmp"), nn = load("n.mmp"), hh = load("h.mmp");
    CHECK(nn.n == 6 && hh.n == 6);
    if (nn.n == 6 && d.n == 6) {
        const mmp_tensor *s = mmp_record_cget(&d.r[1], "image"), *t = mmp_record_cget(&nn.r[1], "image");
        mmp_img im = {32, 32, s->data};
        float want[3 * 32 * 32], m[3] = {0.5f, 0.5f, 0.5f}, sd[3] = {0.25f, 0.25f, 0.25f};
        mmp_to_tensor_normalize(&im, m, sd, want);
        CHECK(t->dtype == MMP_F32 && !memcmp(want, t->data, sizeof want));
        CHECK(mmp_record_cget(&hh.r[1], "image")->dtype == MMP_F16);
    }
    unload(&nn);
    unload(&hh);
    /* a float image stream is refused, naming the problem */
    CHECK(t_sh("mmp-augment d32.mmp --normalize imagenet | mmp-augment --hflip 0.5 -o x.mmp 2> x.err") != 0);
    size_t en;
    char *e = (char *)t_slurp("x.err", &en);
    CHECK(e && strstr(e, "u8 [H,W,3]"));
    free(e);
    /* an op that cannot apply is a counted skip (or fatal with --strict) */
    CHECK(t_sh("mmp-augment d32.mmp --pad-crop 40 -o pc.mmp 2>/dev/null") == 0);
    stream pc = load("pc.mmp");
    CHECK(pc.n == 0 && pc.skipped == 4 + 6);
    unload(&pc);
    CHECK(t_sh("mmp-augment d32.mmp --pad-crop 40 --strict -o pc.mmp 2>/dev/null") != 0);
    CHECK(t_sh("mmp-augment d32.mmp --rrc 0 -o pc.mmp 2>/dev/null") != 0);

    /* shuffle: permutation, deterministic by seed */
    CHECK(t_sh("mmp-shuffle d32.mmp --buffer 3 --seed 5 -o sh1.mmp && mmp-shuffle d32.mmp --buffer 3 --seed 5 -o sh2.mmp && "
             "mmp-shuffle d32.mmp --full --seed 9 -o sh3.mmp") == 0);
    stream s1 = load("sh1.mmp"), s2 = load("sh2.mmp"), s3 = load("sh3.mmp");
    CHECK(s1.n == 6 && s3.n == 6 && same_records(&s1, &s2));
    for (int i = 0; i < d.n; i++) CHECK(find(&s1, d.r[i].id) >= 0 && find(&s3, d.r[i].id) >= 0);
    CHECK(s1.skipped == 4);
    unload(&s1);
    unload(&s2);
    unload(&s3);
    /* split: disjoint, covering, by hashed id */
    CHECK(t_sh("mmp-split d32.mmp --ratio 0.5 --seed 2 -o p1.mmp --rest p2.mmp 2>/dev/null") == 0);
    stream p1 = load("p1.mmp"), p2 = load("p2.mmp");
    CHECK(p1.n + p2.n == 6);
    for (int i = 0; i < p1.n; i++) CHECK(mmp_split_u(p1.r[i].id, 2) < 0.5 && find(&p2, p1.r[i].id) < 0);
    for (int i = 0; i < p2.n; i++) CHECK(mmp_split_u(p2.r[i].id, 2) >= 0.5);
    unload(&p1);
    unload(&p2);
    CHECK(t_sh("mmp-split d32.mmp -o p1.mmp 2>/dev/null") != 0); /* --ratio required */
    unload(&d);
}

int main(void) {
    mmp_set_progname("test_image_pipeline");
    const char *b = getenv("MMP_BUILD");
    snprintf(bindir, sizeof bindir, "%s", b ? b : "build");
    /* the programs under test come first on PATH */
    const char *path = getenv("PATH");
    char newpath[16384];
    snprintf(newpath, sizeof newpath, "%s:%s", bindir, path ? path : "");
    setenv("PATH", newpath, 1);
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/mmp-decode", bindir);
    struct stat st;
    if (stat(probe, &st) != 0) SKIP("no %s (set MMP_BUILD)", probe);
    test_decode();
    test_augment();
    TEST_END();
}
