/* Image sources (see source.h). */
#include "image/source.h"

#include "image/tar.h"
#include "json.h"
#include "mmp.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { IN_DIR = 1, IN_TAR, IN_MANIFEST };

typedef struct {
    char *path;  /* file path (dir/manifest) */
    char *cls;   /* class name, or NULL */
    int64_t label;
    char *text;
} entry;

typedef struct {
    int kind;
    char *name;
    /* dir / manifest */
    entry *ents;
    size_t n, cap, pos;
    /* tar */
    FILE *fp;
    int close_fp;
    mmp_tar *tar;
    int wds;        /* side files present (prescan), or streaming (decided per group) */
    int streaming;  /* stdin with a fixed class list: no prescan */
    int pending;    /* a member header was read but not yet consumed */
    mmp_tar_entry pend;
    char *pend_path;
} input;

struct mmp_src {
    int nin, cur;
    input *in;
    int nclasses;
    char **classes;
    char **sorted; /* classes sorted, for bsearch */
    int *sorted_idx;
    int fixed;
    mmp_src_opts o;
    uint64_t index;
    char kinds[256];
    char err[1024];
};

void mmp_src_item_clear(mmp_src_item *it) {
    free(it->id);
    free(it->data);
    free(it->text);
    memset(it, 0, sizeof *it);
    it->label = MMP_NO_LABEL;
}

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

static const char *const IMG_EXT[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp",
                                      ".pgm", ".tif",  ".tiff", ".webp"};

static int has_img_ext(const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof IMG_EXT / sizeof *IMG_EXT; i++) {
        size_t k = strlen(IMG_EXT[i]);
        if (n > k && !strcasecmp(name + n - k, IMG_EXT[i])) return 1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int mmp_split_list(const char *s, char ***out) {
    int n = 0, cap = 8;
    char **v = mmp_xmalloc(sizeof(char *) * cap);
    const char *p = s;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len) {
            if (n == cap) v = mmp_xrealloc(v, sizeof(char *) * (cap *= 2));
            v[n] = mmp_xmalloc(len + 1);
            memcpy(v[n], p, len);
            v[n][len] = 0;
            n++;
        }
        p += len + (e ? 1 : 0);
    }
    *out = v;
    return n;
}

int mmp_read_lines(const char *path, char ***out, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) return mmp_errf(err, errlen, "%s: %s", path, strerror(errno));
    int n = 0, cap = 16;
    char **v = mmp_xmalloc(sizeof(char *) * cap);
    char *line = NULL;
    size_t lc = 0;
    ssize_t len;
    while ((len = getline(&line, &lc, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = 0;
        char *p = line;
        while (*p == ' ') p++;
        if (!*p || *p == '#') continue;
        if (n == cap) v = mmp_xrealloc(v, sizeof(char *) * (cap *= 2));
        v[n++] = mmp_xstrdup(p);
    }
    free(line);
    fclose(f);
    *out = v;
    return n;
}

static void add_entry(input *in, char *path, char *cls, int64_t label, char *text) {
    if (in->n == in->cap) in->ents = mmp_xrealloc(in->ents, sizeof(entry) * (in->cap = in->cap ? in->cap * 2 : 256));
    in->ents[in->n++] = (entry){path, cls, label, text};
}

/* growing string set of class names */
typedef struct {
    int n, cap;
    char **v;
} strset;

static void set_add(strset *s, const char *name) {
    for (int i = s->n - 1; i >= 0 && i >= s->n - 4; i--) /* cheap: most adds repeat the last */
        if (!strcmp(s->v[i], name)) return;
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], name)) return;
    if (s->n == s->cap) s->v = mmp_xrealloc(s->v, sizeof(char *) * (s->cap = s->cap ? s->cap * 2 : 16));
    s->v[s->n++] = mmp_xstrdup(name);
}

/* ------------------------------------------------------------------ */
/* directory (ImageFolder)                                             */
/* ------------------------------------------------------------------ */

typedef struct {
    char *root, *fname;
} walkent;

static int cmp_walk(const void *a, const void *b) {
    const walkent *x = a, *y = b;
    int c = strcmp(x->root, y->root);
    return c ? c : strcmp(x->fname, y->fname);
}

static void walk(const char *dir, int depth, walkent **v, size_t *n, size_t *cap) {
    if (depth > 64) return;
    DIR *d = opendir(dir);
    if (!d) {
        mmp_warn("%s: %s", dir, strerror(errno));
        return;
    }
    struct dirent *de;
    char **subs = NULL;
    size_t ns = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char *p = mmp_xasprintf("%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(p, &st) != 0) {
            free(p);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            subs = mmp_xrealloc(subs, sizeof(char *) * (ns + 1));
            subs[ns++] = p;
        } else {
            if (has_img_ext(de->d_name)) {
                if (*n == *cap) *v = mmp_xrealloc(*v, sizeof(walkent) * (*cap = *cap ? *cap * 2 : 256));
                (*v)[(*n)++] = (walkent){mmp_xstrdup(dir), mmp_xstrdup(de->d_name)};
            }
            free(p);
        }
    }
    closedir(d);
    for (size_t i = 0; i < ns; i++) {
        walk(subs[i], depth + 1, v, n, cap);
        free(subs[i]);
    }
    free(subs);
}

static int open_dir(input *in, strset *cls, char *err, size_t errlen) {
    DIR *d = opendir(in->name);
    if (!d) return mmp_errf(err, errlen, "%s: %s", in->name, strerror(errno));
    struct dirent *de;
    char **names = NULL;
    int nn = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char *p = mmp_xasprintf("%s/%s", in->name, de->d_name);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            names = mmp_xrealloc(names, sizeof(char *) * (nn + 1));
            names[nn++] = mmp_xstrdup(de->d_name);
        }
        free(p);
    }
    closedir(d);
    if (nn == 0) return mmp_errf(err, errlen, "%s: no class sub-folders (ImageFolder layout: DIR/<class>/<image>)", in->name);
    qsort(names, nn, sizeof *names, cmp_str);
    for (int c = 0; c < nn; c++) {
        set_add(cls, names[c]);
        char *cdir = mmp_xasprintf("%s/%s", in->name, names[c]);
        walkent *v = NULL;
        size_t n = 0, cap = 0;
        walk(cdir, 0, &v, &n, &cap);
        if (n) qsort(v, n, sizeof *v, cmp_walk);
        for (size_t i = 0; i < n; i++) {
            add_entry(in, mmp_xasprintf("%s/%s", v[i].root, v[i].fname), mmp_xstrdup(names[c]),
                      MMP_NO_LABEL, NULL);
            free(v[i].root);
            free(v[i].fname);
        }
        free(v);
        free(cdir);
        free(names[c]);
    }
    free(names);
    return 0;
}

/* ------------------------------------------------------------------ */
/* manifests                                                           */
/* ------------------------------------------------------------------ */

static int is_int(const char *s, int64_t *v) {
    char *e;
    if (!*s) return 0;
    errno = 0;
    long long x = strtoll(s, &e, 10);
    if (*e || errno) return 0;
    *v = x;
    return 1;
}

static char *resolve(const char *manifest, const char *p) {
    if (p[0] == '/') return mmp_xstrdup(p);
    const char *slash = strrchr(manifest, '/');
    if (!slash) return mmp_xstrdup(p);
    return mmp_xasprintf("%.*s/%s", (int)(slash - manifest), manifest, p);
}

static void manifest_add(input *in, strset *cls, const char *path, const char *label, const char *text) {
    int64_t l = MMP_NO_LABEL;
    char *cn = NULL;
    if (label && *label) {
        if (!is_int(label, &l)) {
            cn = mmp_xstrdup(label);
            set_add(cls, label);
            l = MMP_NO_LABEL;
        }
    }
    add_entry(in, resolve(in->name, path), cn, l, text && *text ? mmp_xstrdup(text) : NULL);
}

/* CSV (RFC 4180): splits one record; may consume further lines for quoted newlines. */
static int csv_record(FILE *f, char ***fields, int *nf, char **buf, size_t *bcap) {
    int c, n = 0, inq = 0, any = 0;
    size_t len = 0;
    char **v = *fields;
    for (;;) {
        c = fgetc(f);
        if (c == EOF && !any) return 0;
        any = 1;
        if (inq) {
            if (c == EOF) { /* unterminated quoted field: nothing is returned */
                for (int i = 0; i < n; i++) free(v[i]);
                free(v);
                *fields = NULL;
                *nf = 0;
                return -1;
            }
            if (c == '"') {
                int d = fgetc(f);
                if (d == '"') goto put;
                inq = 0;
                if (d == EOF) c = EOF;
                else c = d;
            } else
                goto put;
        }
        if (c == '"' && len == 0) {
            inq = 1;
            continue;
        }
        if (c == ',' || c == '\n' || c == EOF) {
            if (*bcap < len + 1) *buf = mmp_xrealloc(*buf, *bcap = len + 64);
            (*buf)[len] = 0;
            size_t sl = len;
            while (sl > 0 && (*buf)[sl - 1] == '\r') (*buf)[--sl] = 0;
            v = mmp_xrealloc(v, sizeof(char *) * (n + 1));
            v[n++] = mmp_xstrdup(*buf);
            len = 0;
            if (c != ',') break;
            continue;
        }
    put:
        if (*bcap < len + 2) *buf = mmp_xrealloc(*buf, *bcap = (len + 2) * 2);
        (*buf)[len++] = (char)c;
    }
    *fields = v;
    *nf = n;
    return 1;
}

static int col_of(char **h, int n, const char *const *names) {
    for (int i = 0; i < n; i++)
        for (int k = 0; names[k]; k++)
            if (!strcasecmp(h[i], names[k])) return i;
    return -1;
}

static const char *const PATH_COLS[] = {"path", "file", "filename", "image", "image_path", NULL};
static const char *const LABEL_COLS[] = {"label", "class", "target", "cls", NULL};
static const char *const TEXT_COLS[] = {"text", "caption", NULL};

static void free_fields(char **f, int n) {
    for (int i = 0; i < n; i++) free(f[i]);
    free(f);
}

static int open_csv(input *in, strset *cls, char *err, size_t errlen) {
    FILE *f = fopen(in->name, "r");
    if (!f) return mmp_errf(err, errlen, "%s: %s", in->name, strerror(errno));
    char *buf = NULL, **hdr = NULL;
    size_t bcap = 0;
    int nh = 0;
    int hrc = csv_record(f, &hdr, &nh, &buf, &bcap);
    if (hrc != 1) {
        fclose(f);
        free(buf);
        if (hrc < 0) return mmp_errf(err, errlen, "%s: line 1: unterminated quoted field", in->name);
        return mmp_errf(err, errlen, "%s: empty CSV manifest (want a header row: path,label[,text])", in->name);
    }
    int pc = col_of(hdr, nh, PATH_COLS), lc = col_of(hdr, nh, LABEL_COLS), tc = col_of(hdr, nh, TEXT_COLS);
    free_fields(hdr, nh);
    if (pc < 0) {
        fclose(f);
        free(buf);
        return mmp_errf(err, errlen, "%s: CSV header has no path column (path, file, filename or image)", in->name);
    }
    int line = 1, rc;
    for (;;) {
        char **fl = NULL;
        int nf = 0;
        line++;
        rc = csv_record(f, &fl, &nf, &buf, &bcap);
        if (rc == 0) break;
        if (rc < 0) {
            fclose(f);
            free(buf);
            return mmp_errf(err, errlen, "%s: line %d: unterminated quoted field", in->name, line);
        }
        if (nf == 1 && !fl[0][0]) { /* blank line */
            free_fields(fl, nf);
            continue;
        }
        if (pc >= nf || !fl[pc][0]) {
            free_fields(fl, nf);
            fclose(f);
            free(buf);
            return mmp_errf(err, errlen, "%s: line %d: missing path", in->name, line);
        }
        manifest_add(in, cls, fl[pc], lc >= 0 && lc < nf ? fl[lc] : NULL, tc >= 0 && tc < nf ? fl[tc] : NULL);
        free_fields(fl, nf);
    }
    fclose(f);
    free(buf);
    return 0;
}

/* The values of the wanted keys (keys[i]: a NULL-terminated list of
 * aliases) of the JSON object s[0, n), line `line` of its file: out[i] = a
 * new string (a string value, or an integer in decimal), NULL when absent or
 * null; the last alias present wins. 0, or -1 with the reason in err. */
static int json_fields(const char *s, size_t n, int line, const char *const *const *keys, int nkeys, char **out,
                       char *err, size_t errlen) {
    for (int i = 0; i < nkeys; i++) out[i] = NULL;
    json_t *o = mmp_json_parse(s, n, line, err, errlen);
    if (!o) return -1;
    if (!json_is_object(o)) {
        mmp_errf(err, errlen, "line %d: want a JSON object, not %s", line, mmp_json_type_name(o));
        json_decref(o);
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        int which = -1;
        for (int i = 0; i < nkeys && which < 0; i++)
            for (int m = 0; keys[i][m]; m++)
                if (!strcmp(k, keys[i][m])) which = i;
        if (which < 0 || json_is_null(v)) continue;
        char *val;
        if (json_is_string(v)) val = mmp_xstrdup(json_string_value(v));
        else if (json_is_integer(v)) val = mmp_xasprintf("%lld", (long long)json_integer_value(v));
        else {
            mmp_errf(err, errlen, "line %d: \"%s\" is %s, expected a string or an integer", line, k, mmp_json_type_name(v));
            for (int i = 0; i < nkeys; i++) free(out[i]), out[i] = NULL;
            json_decref(o);
            return -1;
        }
        free(out[which]);
        out[which] = val;
    }
    json_decref(o);
    return 0;
}

static int open_jsonl(input *in, strset *cls, char *err, size_t errlen) {
    FILE *f = fopen(in->name, "r");
    if (!f) return mmp_errf(err, errlen, "%s: %s", in->name, strerror(errno));
    char *line = NULL, e2[400];
    size_t lc = 0;
    ssize_t len;
    int ln = 0, rc = 0;
    const char *const *keys[3] = {PATH_COLS, LABEL_COLS, TEXT_COLS};
    while (rc == 0 && (len = getline(&line, &lc, f)) >= 0) {
        ln++;
        char *p = line;
        while (p < line + len && isspace((unsigned char)*p)) p++;
        if (p == line + len) continue;
        if (line[len - 1] == '\n') len--; /* a message at the end names this line, not the next */
        char *v[3];
        if (json_fields(line, (size_t)len, ln, keys, 3, v, e2, sizeof e2)) rc = mmp_errf(err, errlen, "%s: %s", in->name, e2);
        else if (!v[0])
            rc = mmp_errf(err, errlen, "%s: line %d: %s", in->name, ln,
                          "want a JSON object with \"path\" (and optional \"label\", \"text\")");
        else manifest_add(in, cls, v[0], v[1], v[2]);
        for (int i = 0; i < 3; i++) free(v[i]);
    }
    free(line);
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------ */
/* tar                                                                 */
/* ------------------------------------------------------------------ */

static const char *ext_of(const char *path) {
    /* WebDataset: key = everything before the first '.' of the basename */
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strchr(base, '.');
    return dot ? dot : path + strlen(path);
}

/* length of the grouping key: WebDataset key, or the whole path when the
 * tar is plain ImageFolder (every image is its own item) */
static size_t key_len(const input *in, const char *path) {
    return in->wds ? (size_t)(ext_of(path) - path) : strlen(path);
}

static int is_side(const char *ext) {
    return !strcasecmp(ext, ".cls") || !strcasecmp(ext, ".txt") || !strcasecmp(ext, ".json");
}

/* parent directory name of a member ("train/cat/1.jpg" -> "cat") */
static char *parent_name(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return mmp_xstrdup("");
    const char *p = slash;
    while (p > path && p[-1] != '/') p--;
    char *s = mmp_xmalloc((size_t)(slash - p) + 1);
    memcpy(s, p, (size_t)(slash - p));
    s[slash - p] = 0;
    return s;
}

/* Copies a non-seekable stream into an unlinked temporary file. */
static FILE *spool(FILE *src, const char *name, char *err, size_t errlen) {
    FILE *t = tmpfile();
    if (!t) {
        mmp_errf(err, errlen, "%s: cannot create a temporary file to spool a pipe: %s (or give --classes)", name, strerror(errno));
        return NULL;
    }
    char buf[1 << 16];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, src)) > 0)
        if (fwrite(buf, 1, k, t) != k) {
            fclose(t);
            mmp_errf(err, errlen, "%s: spooling to a temporary file failed: %s", name, strerror(errno));
            return NULL;
        }
    if (ferror(src) || fflush(t)) {
        fclose(t);
        mmp_errf(err, errlen, "%s: read error", name);
        return NULL;
    }
    rewind(t);
    return t;
}

static int seekable(FILE *f) {
    off_t o = ftello(f);
    return o >= 0 && fseeko(f, o, SEEK_SET) == 0;
}

static int open_tar(input *in, strset *cls, int fixed, char *err, size_t errlen) {
    FILE *f = stdin;
    if (strcmp(in->name, "-")) {
        f = fopen(in->name, "rb");
        if (!f) return mmp_errf(err, errlen, "%s: %s", in->name, strerror(errno));
    }
    if (seekable(f)) {
        in->fp = f;
        in->close_fp = f != stdin;
    } else if (fixed) {
        /* a pipe with a given class list: streamed in one pass */
        in->fp = f;
        in->close_fp = f != stdin;
        in->streaming = 1;
        in->wds = 1; /* decided per group */
    } else {
        /* a pipe without a class list: spool it, then two passes */
        in->fp = spool(f, in->name, err, errlen);
        if (f != stdin) fclose(f);
        if (!in->fp) return -1;
        in->close_fp = 1;
    }
    in->tar = mmp_tar_open_fp(in->fp, in->name);
    if (in->streaming) return 0;
    /* first pass: headers only */
    mmp_tar_entry e;
    int r;
    strset parents = {0};
    while ((r = mmp_tar_next(in->tar, &e)) == 1) {
        const char *ext = ext_of(e.path);
        if (is_side(ext)) in->wds = 1;
        else if (has_img_ext(e.path)) {
            char *p = parent_name(e.path);
            set_add(&parents, p);
            free(p);
        }
    }
    if (r < 0) {
        mmp_errf(err, errlen, "%s", mmp_tar_error(in->tar));
        for (int i = 0; i < parents.n; i++) free(parents.v[i]);
        free(parents.v);
        return -1;
    }
    if (!in->wds)
        for (int i = 0; i < parents.n; i++) set_add(cls, parents.v[i]);
    for (int i = 0; i < parents.n; i++) free(parents.v[i]);
    free(parents.v);
    if (mmp_tar_rewind(in->tar)) return mmp_errf(err, errlen, "%s: cannot seek back for the second pass", in->name);
    return 0;
}

/* ------------------------------------------------------------------ */
/* open                                                                */
/* ------------------------------------------------------------------ */

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

mmp_src *mmp_src_open(int ninputs, char **inputs, const mmp_src_opts *o, char *err, size_t errlen) {
    mmp_src *s = mmp_xcalloc(1, sizeof *s);
    if (o) s->o = *o;
    if (!s->o.max_bytes) s->o.max_bytes = 1ULL << 30;
    if (s->o.shard_n <= 0) s->o.shard_n = 1;
    s->nin = ninputs;
    s->in = mmp_xcalloc(ninputs ? ninputs : 1, sizeof(input));
    s->fixed = o && o->nclasses > 0;
    strset cls = {0};
    int stdin_used = 0;
    for (int i = 0; i < ninputs; i++) {
        input *in = &s->in[i];
        in->name = mmp_xstrdup(inputs[i]);
        struct stat st;
        int rc;
        const char *kind;
        if (!strcmp(inputs[i], "-")) {
            if (stdin_used++) {
                mmp_errf(err, errlen, "-: stdin given twice");
                goto fail;
            }
            in->kind = IN_TAR;
            kind = "tar";
            rc = open_tar(in, &cls, s->fixed, err, errlen);
        } else if (stat(inputs[i], &st) != 0) {
            mmp_errf(err, errlen, "%s: %s", inputs[i], strerror(errno));
            goto fail;
        } else if (S_ISDIR(st.st_mode)) {
            in->kind = IN_DIR;
            kind = "dir";
            rc = open_dir(in, &cls, err, errlen);
        } else if (ends_with(inputs[i], ".csv")) {
            in->kind = IN_MANIFEST;
            kind = "csv";
            rc = open_csv(in, &cls, err, errlen);
        } else if (ends_with(inputs[i], ".jsonl") || ends_with(inputs[i], ".ndjson")) {
            in->kind = IN_MANIFEST;
            kind = "jsonl";
            rc = open_jsonl(in, &cls, err, errlen);
        } else {
            in->kind = IN_TAR;
            kind = "tar";
            rc = open_tar(in, &cls, s->fixed, err, errlen);
        }
        if (rc) goto fail;
        if (in->kind == IN_TAR && in->wds && !in->streaming) kind = "webdataset";
        size_t kl = strlen(s->kinds);
        snprintf(s->kinds + kl, sizeof s->kinds - kl, "%s%s", kl ? "," : "", kind);
    }
    if (s->fixed) {
        s->nclasses = o->nclasses;
        s->classes = mmp_xmalloc(sizeof(char *) * s->nclasses);
        for (int i = 0; i < s->nclasses; i++) s->classes[i] = mmp_xstrdup(o->classes[i]);
        for (int i = 0; i < cls.n; i++) free(cls.v[i]);
        free(cls.v);
    } else {
        if (cls.n) qsort(cls.v, cls.n, sizeof *cls.v, cmp_str);
        s->nclasses = cls.n;
        s->classes = cls.v;
    }
    /* sorted index for lookups */
    s->sorted = mmp_xmalloc(sizeof(char *) * (s->nclasses + 1));
    s->sorted_idx = mmp_xmalloc(sizeof(int) * (s->nclasses + 1));
    for (int i = 0; i < s->nclasses; i++) s->sorted[i] = s->classes[i];
    qsort(s->sorted, s->nclasses, sizeof(char *), cmp_str);
    for (int i = 0; i < s->nclasses; i++)
        for (int k = 0; k < s->nclasses; k++)
            if (s->classes[k] == s->sorted[i]) s->sorted_idx[i] = k;
    return s;
fail:
    for (int i = 0; i < cls.n; i++) free(cls.v[i]);
    free(cls.v);
    mmp_src_close(s);
    return NULL;
}

int mmp_src_nclasses(const mmp_src *s) { return s->nclasses; }
char **mmp_src_classes(const mmp_src *s) { return s->classes; }
const char *mmp_src_error(const mmp_src *s) { return s->err; }
const char *mmp_src_kinds(const mmp_src *s) { return s->kinds; }

static int64_t class_index(const mmp_src *s, const char *name) {
    if (s->nclasses == 0) return -1;
    char *const *hit = bsearch(&name, s->sorted, s->nclasses, sizeof(char *), cmp_str);
    return hit ? s->sorted_idx[hit - s->sorted] : -1;
}

void mmp_src_close(mmp_src *s) {
    if (!s) return;
    for (int i = 0; i < s->nin; i++) {
        input *in = &s->in[i];
        for (size_t k = 0; k < in->n; k++) {
            free(in->ents[k].path);
            free(in->ents[k].cls);
            free(in->ents[k].text);
        }
        free(in->ents);
        if (in->tar) mmp_tar_close(in->tar);
        if (in->close_fp && in->fp) fclose(in->fp);
        free(in->pend_path);
        free(in->name);
    }
    free(s->in);
    if (s->classes)
        for (int i = 0; i < s->nclasses; i++) free(s->classes[i]);
    free(s->classes);
    free(s->sorted);
    free(s->sorted_idx);
    free(s);
}

/* ------------------------------------------------------------------ */
/* next                                                                */
/* ------------------------------------------------------------------ */

static int keep(const mmp_src *s, uint64_t idx) {
    return s->o.shard_n <= 1 || idx % (uint64_t)s->o.shard_n == (uint64_t)s->o.shard_i;
}

static void read_file(mmp_src *s, const char *path, mmp_src_item *it) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(it->err, sizeof it->err, "cannot open: %s", strerror(errno));
        return;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(it->err, sizeof it->err, "not a regular file");
        fclose(f);
        return;
    }
    if ((uint64_t)st.st_size > s->o.max_bytes) {
        snprintf(it->err, sizeof it->err, "file too large (%lld bytes)", (long long)st.st_size);
        fclose(f);
        return;
    }
    size_t n = (size_t)st.st_size;
    it->data = mmp_xmalloc(n ? n : 1);
    it->n = fread(it->data, 1, n, f);
    if (it->n != n || ferror(f)) {
        snprintf(it->err, sizeof it->err, "read error: %s", strerror(errno));
        free(it->data);
        it->data = NULL;
    }
    fclose(f);
}

static int list_next(mmp_src *s, input *in, mmp_src_item *it) {
    while (in->pos < in->n) {
        entry *e = &in->ents[in->pos++];
        uint64_t idx = s->index++;
        if (!keep(s, idx)) continue;
        it->index = idx;
        it->id = mmp_xstrdup(e->path);
        it->label = e->label;
        if (e->text) it->text = mmp_xstrdup(e->text);
        if (e->cls) {
            int64_t l = class_index(s, e->cls);
            if (l < 0) snprintf(it->err, sizeof it->err, "class '%s' is not in --classes", e->cls);
            it->label = l < 0 ? MMP_NO_LABEL : l;
        }
        if (!it->err[0]) read_file(s, e->path, it);
        return 1;
    }
    return 0;
}

/* reads the next relevant member header of a tar (image or side file) */
static int tar_peek(mmp_src *s, input *in) {
    if (in->pending) return 1;
    mmp_tar_entry e;
    int r;
    while ((r = mmp_tar_next(in->tar, &e)) == 1) {
        const char *ext = ext_of(e.path);
        if (has_img_ext(e.path) || (in->wds && is_side(ext))) {
            in->pend = e;
            free(in->pend_path);
            in->pend_path = mmp_xstrdup(e.path);
            in->pend.path = in->pend_path;
            in->pending = 1;
            return 1;
        }
    }
    if (r < 0) {
        snprintf(s->err, sizeof s->err, "%s", mmp_tar_error(in->tar));
        return -1;
    }
    return 0;
}

static int read_member(mmp_src *s, input *in, uint8_t **buf, size_t *n, mmp_src_item *it) {
    if (in->pend.size > s->o.max_bytes) {
        snprintf(it->err, sizeof it->err, "member too large (%llu bytes)", (unsigned long long)in->pend.size);
        return 0; /* data skipped by the next mmp_tar_next */
    }
    if (mmp_tar_read(in->tar, buf)) {
        snprintf(s->err, sizeof s->err, "%s", mmp_tar_error(in->tar));
        return -1;
    }
    *n = (size_t)in->pend.size;
    return 0;
}

static char *trim_dup(const uint8_t *b, size_t n) {
    while (n && isspace(b[n - 1])) n--;
    while (n && isspace(*b)) b++, n--;
    char *s = mmp_xmalloc(n + 1);
    memcpy(s, b, n);
    s[n] = 0;
    return s;
}

static int tar_next(mmp_src *s, input *in, mmp_src_item *it) {
    for (;;) {
        int r = tar_peek(s, in);
        if (r <= 0) return r;
        /* a new group starts with the pending member */
        size_t klen = key_len(in, in->pend.path);
        char *key = mmp_xmalloc(klen + 1);
        memcpy(key, in->pend.path, klen);
        key[klen] = 0;
        uint64_t idx = s->index++;
        int kept = keep(s, idx);
        char *cls_txt = NULL, *txt = NULL, *json = NULL, *img_path = NULL;
        uint8_t *img = NULL;
        size_t img_n = 0;
        int nimg = 0;
        char ierr[256] = "";
        for (;;) {
            r = tar_peek(s, in);
            if (r < 0) goto fatal;
            if (r == 0) break;
            size_t kl = key_len(in, in->pend.path);
            if (kl != klen || memcmp(in->pend.path, key, klen)) break; /* next group */
            in->pending = 0;
            if (!kept) continue; /* data skipped by mmp_tar_next */
            const char *ext = ext_of(in->pend.path);
            int isimg = has_img_ext(in->pend.path) && !is_side(ext);
            if (isimg && nimg++) {
                snprintf(ierr, sizeof ierr, "several images share the key (%s ignored)", in->pend.path);
                continue;
            }
            uint8_t *b = NULL;
            size_t n = 0;
            mmp_src_item tmp = {0};
            if (read_member(s, in, &b, &n, &tmp)) goto fatal;
            if (tmp.err[0]) {
                if (isimg) {
                    snprintf(ierr, sizeof ierr, "%s", tmp.err);
                    img_path = mmp_xstrdup(in->pend.path);
                }
                continue;
            }
            if (isimg) {
                img = b;
                img_n = n;
                img_path = mmp_xstrdup(in->pend.path);
                continue;
            }
            char *v = trim_dup(b, n);
            free(b);
            if (!strcasecmp(ext, ".cls")) free(cls_txt), cls_txt = v;
            else if (!strcasecmp(ext, ".txt")) free(txt), txt = v;
            else free(json), json = v;
        }
        if (!kept) {
            free(key);
            continue;
        }
        it->index = idx;
        it->id = img_path ? img_path : mmp_xstrdup(key);
        img_path = NULL;
        if (!img && !ierr[0]) snprintf(ierr, sizeof ierr, "no image member for this key");
        it->data = img;
        it->n = img_n;
        img = NULL;
        /* text and label */
        char *jv[2] = {NULL, NULL};
        if (json) {
            const char *const *keys[2] = {LABEL_COLS, TEXT_COLS};
            char e2[200];
            if (json_fields(json, strlen(json), 1, keys, 2, jv, e2, sizeof e2) && !ierr[0])
                snprintf(ierr, sizeof ierr, "%s.json: %s", key, e2);
        }
        if (txt) it->text = txt, txt = NULL;
        else if (jv[1]) it->text = jv[1], jv[1] = NULL;
        const char *lab = cls_txt ? cls_txt : jv[0];
        if (lab) {
            int64_t l;
            if (is_int(lab, &l)) it->label = l;
            else {
                l = class_index(s, lab);
                if (l < 0 && !ierr[0]) snprintf(ierr, sizeof ierr, "class '%s' is not in the class list", lab);
                it->label = l < 0 ? MMP_NO_LABEL : l;
            }
        } else if (!in->wds || in->streaming) {
            char *p = parent_name(it->id);
            int64_t l = class_index(s, p);
            if (l < 0 && !ierr[0]) snprintf(ierr, sizeof ierr, "class '%s' (parent folder) is not in the class list", p);
            it->label = l < 0 ? MMP_NO_LABEL : l;
            free(p);
        }
        free(jv[0]);
        free(jv[1]);
        free(cls_txt);
        free(txt);
        free(json);
        free(key);
        if (ierr[0]) {
            snprintf(it->err, sizeof it->err, "%s", ierr);
            free(it->data);
            it->data = NULL;
            it->n = 0;
        }
        return 1;
    fatal:
        free(cls_txt);
        free(txt);
        free(json);
        free(img);
        free(img_path);
        free(key);
        return -1;
    }
}

int mmp_src_next(mmp_src *s, mmp_src_item *it) {
    mmp_src_item_clear(it);
    while (s->cur < s->nin) {
        input *in = &s->in[s->cur];
        int r = in->kind == IN_TAR ? tar_next(s, in, it) : list_next(s, in, it);
        if (r != 0) return r;
        s->cur++;
    }
    return 0;
}
