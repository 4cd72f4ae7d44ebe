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
    int mf, line; /* manifest rows: the file (input.mfiles index) and line; mf -1 otherwise */
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
    /* manifests / metadata files read, for messages */
    char **mfiles;
    int nmf;
    int num_at[2], name_at[2]; /* first number / class-name label: mfiles index, line (0 = none yet) */
    int hf;                    /* a Hugging Face imagefolder */
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

/* takes path, cls and text */
static void add_entry(input *in, char *path, char *cls, int64_t label, char *text, int mf, int line) {
    if (in->n == in->cap) in->ents = mmp_xrealloc(in->ents, sizeof(entry) * (in->cap = in->cap ? in->cap * 2 : 256));
    in->ents[in->n++] = (entry){path, cls, label, text, mf, line};
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

/* os.path.normpath of a relative path: "a/./b//c/../d" -> "a/b/d"; leading
 * ".." components stay ("../x"); "" or "." -> "." */
static char *normpath(const char *p) {
    size_t n = strlen(p);
    char *out = mmp_xmalloc(n + 3);
    size_t o = 0;
    while (*p) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 1 && p[0] == '.') {
        } else if (len == 2 && p[0] == '.' && p[1] == '.') {
            size_t b = o;
            while (b > 0 && out[b - 1] != '/') b--; /* start of the last component */
            if (o > b && !(o - b == 2 && out[b] == '.' && out[b + 1] == '.')) o = b ? b - 1 : 0;
            else {
                if (o) out[o++] = '/';
                out[o++] = '.';
                out[o++] = '.';
            }
        } else {
            if (o) out[o++] = '/';
            memcpy(out + o, p, len);
            o += len;
        }
        p += len;
    }
    if (!o) out[o++] = '.';
    out[o] = 0;
    return out;
}

/* CSV (RFC 4180): splits one record; may consume further lines for quoted
 * newlines (*nl = the line breaks consumed, the record's own included). */
static int csv_record(FILE *f, char ***fields, int *nf, char **buf, size_t *bcap, int *nl) {
    int c, n = 0, inq = 0, any = 0;
    size_t len = 0;
    char **v = *fields;
    *nl = 0;
    for (;;) {
        c = fgetc(f);
        if (c == EOF && !any) return 0;
        any = 1;
        if (c == '\n') ++*nl;
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
                if (c == '\n') ++*nl;
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

int mmp_csv_record(FILE *f, char ***fields, int *nf, char **buf, size_t *bcap, int *nl) {
    return csv_record(f, fields, nf, buf, bcap, nl);
}

/* name matches alias a: equal, or for "*suffix" ending with the suffix */
static int alias_is(const char *name, const char *a) {
    if (a[0] != '*') return !strcasecmp(name, a);
    size_t n = strlen(name), k = strlen(a + 1);
    return n > k && !strcmp(name + n - k, a + 1);
}

static int col_of(char **h, int n, const char *const *names) {
    for (int k = 0; names[k]; k++) /* the first alias present wins */
        for (int i = 0; i < n; i++)
            if (alias_is(h[i], names[k])) return i;
    return -1;
}

static const char *const PATH_COLS[] = {"path", "file", "filename", "file_name", "image", "image_path", NULL};
/* Hugging Face imagefolder metadata: file_name, else a *_file_name column */
static const char *const HF_PATH_COLS[] = {"file_name", "*_file_name", NULL};
static const char *const LABEL_COLS[] = {"label", "class", "target", "cls", NULL};
static const char *const TEXT_COLS[] = {"text", "caption", NULL};

static void free_fields(char **f, int n) {
    for (int i = 0; i < n; i++) free(f[i]);
    free(f);
}

/* The rows of a manifest, before they become entries. */
typedef struct {
    char *path, *label, *text;
    int line; /* of the row's first byte */
    int num;  /* the label is a number (an integer) */
} mrow;

typedef struct {
    mrow *v;
    size_t n, cap;
} mrows;

static void mrows_free(mrows *r) {
    for (size_t i = 0; i < r->n; i++) free(r->v[i].path), free(r->v[i].label), free(r->v[i].text);
    free(r->v);
    memset(r, 0, sizeof *r);
}

static void mrows_add(mrows *r, const char *path, const char *label, const char *text, int line, int num) {
    if (r->n == r->cap) r->v = mmp_xrealloc(r->v, sizeof(mrow) * (r->cap = r->cap ? r->cap * 2 : 64));
    r->v[r->n++] = (mrow){path ? mmp_xstrdup(path) : NULL, label && *label ? mmp_xstrdup(label) : NULL,
                          text && *text ? mmp_xstrdup(text) : NULL, line, num};
}

/* skips a UTF-8 byte order mark (pandas "utf-8-sig", Excel) */
static void skip_bom(FILE *f) {
    int a = fgetc(f);
    if (a == 0xEF) {
        int b = fgetc(f);
        if (b == 0xBB) {
            int c = fgetc(f);
            if (c == 0xBF) return;
        }
    }
    rewind(f);
}

void mmp_skip_bom(FILE *f) { skip_bom(f); }

/* hf: a Hugging Face metadata.csv: the path column is file_name (or
 * *_file_name) and, as pandas reads it, the label column holds numbers only
 * when every value is an integer (else all are strings). */
static int read_csv(const char *name, int hf, mrows *r, char *err, size_t errlen) {
    FILE *f = fopen(name, "r");
    if (!f) return mmp_errf(err, errlen, "%s: %s", name, strerror(errno));
    skip_bom(f);
    char *buf = NULL, **hdr = NULL;
    size_t bcap = 0;
    int nh = 0, nl;
    int hrc = csv_record(f, &hdr, &nh, &buf, &bcap, &nl);
    if (hrc != 1) {
        fclose(f);
        free(buf);
        if (hrc < 0) return mmp_errf(err, errlen, "%s: line 1: unterminated quoted field", name);
        return mmp_errf(err, errlen, "%s: empty CSV manifest (want a header row: %s)", name,
                        hf ? "file_name[,label][,text]..." : "path,label[,text]");
    }
    int pc = col_of(hdr, nh, hf ? HF_PATH_COLS : PATH_COLS), lc = col_of(hdr, nh, LABEL_COLS),
        tc = col_of(hdr, nh, TEXT_COLS);
    free_fields(hdr, nh);
    if (pc < 0) {
        fclose(f);
        free(buf);
        if (hf) return mmp_errf(err, errlen, "%s: line 1: CSV header has no file_name column (Hugging Face imagefolder metadata)", name);
        return mmp_errf(err, errlen, "%s: line 1: CSV header has no path column (path, file, filename, file_name or image)", name);
    }
    int line = 1 + nl, rc, allint = 1;
    for (;;) {
        char **fl = NULL;
        int nf = 0, at = line;
        rc = csv_record(f, &fl, &nf, &buf, &bcap, &nl);
        line += nl;
        if (rc == 0) break;
        if (rc < 0) {
            fclose(f);
            free(buf);
            return mmp_errf(err, errlen, "%s: line %d: unterminated quoted field", name, at);
        }
        if (nf == 1 && !fl[0][0]) { /* blank line */
            free_fields(fl, nf);
            continue;
        }
        if (pc >= nf || !fl[pc][0]) {
            free_fields(fl, nf);
            fclose(f);
            free(buf);
            return mmp_errf(err, errlen, "%s: line %d: missing %s", name, at, hf ? "file_name" : "path");
        }
        const char *lab = lc >= 0 && lc < nf ? fl[lc] : NULL;
        int64_t l;
        int num = lab && *lab && is_int(lab, &l);
        if (lab && *lab && !num) allint = 0;
        mrows_add(r, fl[pc], lab, tc >= 0 && tc < nf ? fl[tc] : NULL, at, num);
        free_fields(fl, nf);
    }
    if (hf && !allint)
        for (size_t i = 0; i < r->n; i++) r->v[i].num = 0;
    fclose(f);
    free(buf);
    return 0;
}

/* The values of the wanted keys (keys[i]: a NULL-terminated list of
 * aliases, "*suffix" matching names that end with suffix) of the JSON object
 * s[0, n), line `line` of its file: out[i] = a new string (a string value, or
 * an integer in decimal; num[i] = 1 for an integer when num is given), NULL
 * when absent or null; the last exact alias present wins, a suffix alias
 * counts only when no exact one is there. 0, or -1 with the reason in err. */
static int json_fields(const char *s, size_t n, int line, const char *const *const *keys, int nkeys, char **out,
                       int *num, char *err, size_t errlen) {
    int exact[8] = {0};
    for (int i = 0; i < nkeys; i++) {
        out[i] = NULL;
        if (num) num[i] = 0;
    }
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
        int which = -1, ex = 0;
        for (int i = 0; i < nkeys && which < 0; i++)
            for (int m = 0; keys[i][m]; m++)
                if (keys[i][m][0] == '*' ? alias_is(k, keys[i][m]) : !strcmp(k, keys[i][m])) {
                    which = i;
                    ex = keys[i][m][0] != '*';
                    break;
                }
        if (which < 0 || json_is_null(v)) continue;
        if (!ex && (exact[which] || out[which])) continue; /* the first suffix match, under any exact one */
        char *val;
        int isnum = 0;
        if (json_is_string(v)) val = mmp_xstrdup(json_string_value(v));
        else if (json_is_integer(v)) val = mmp_xasprintf("%lld", (long long)json_integer_value(v)), isnum = 1;
        else {
            mmp_errf(err, errlen, "line %d: \"%s\" is %s, expected a string or an integer", line, k, mmp_json_type_name(v));
            for (int i = 0; i < nkeys; i++) free(out[i]), out[i] = NULL;
            json_decref(o);
            return -1;
        }
        free(out[which]);
        out[which] = val;
        exact[which] |= ex;
        if (num) num[which] = isnum;
    }
    json_decref(o);
    return 0;
}

/* hf: a Hugging Face metadata.jsonl: file_name (or *_file_name), and the
 * label's JSON type decides (an integer is a label, a string a class name);
 * else an integer-looking label is a label either way. */
static int read_jsonl(const char *name, int hf, mrows *r, char *err, size_t errlen) {
    FILE *f = fopen(name, "r");
    if (!f) return mmp_errf(err, errlen, "%s: %s", name, strerror(errno));
    char *line = NULL, e2[400];
    size_t lc = 0;
    ssize_t len;
    int ln = 0, rc = 0;
    const char *const *keys[3] = {hf ? HF_PATH_COLS : PATH_COLS, LABEL_COLS, TEXT_COLS};
    while (rc == 0 && (len = getline(&line, &lc, f)) >= 0) {
        ln++;
        char *p = line;
        if (ln == 1 && len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3, len -= 3; /* a byte order mark */
        char *q = p;
        while (q < p + len && isspace((unsigned char)*q)) q++;
        if (q == p + len) continue;
        if (p[len - 1] == '\n') len--; /* a message at the end names this line, not the next */
        char *v[3];
        int num[3];
        if (json_fields(p, (size_t)len, ln, keys, 3, v, num, e2, sizeof e2)) rc = mmp_errf(err, errlen, "%s: %s", name, e2);
        else if (!v[0])
            rc = hf ? mmp_errf(err, errlen, "%s: line %d: no \"file_name\" (Hugging Face imagefolder metadata)", name, ln)
                    : mmp_errf(err, errlen, "%s: line %d: %s", name, ln,
                               "want a JSON object with \"path\" (and optional \"label\", \"text\")");
        else {
            int64_t l;
            mrows_add(r, v[0], v[1], v[2], ln, v[1] && (hf ? num[1] : is_int(v[1], &l)));
        }
        for (int i = 0; i < 3; i++) free(v[i]);
    }
    free(line);
    fclose(f);
    return rc;
}

/* s for a one-line message: at most 48 bytes, control characters as '?' */
static const char *shown(const char *s, char *buf, size_t n) {
    size_t o = 0, max = n < 52 ? n - 4 : 48;
    for (; *s && o < max; s++) buf[o++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
    if (*s) memcpy(buf + o, "...", 3), o += 3;
    buf[o] = 0;
    return buf;
}

/* Rows to entries: paths resolved (hf: relative to the metadata file's
 * folder and inside it, as Hugging Face requires), labels checked: a number
 * >= -1 (-1 = none), and no input mixes numbers with class names. */
static int add_rows(input *in, const char *name, int hf, mrows *r, strset *cls, char *err, size_t errlen) {
    if (in->nmf % 8 == 0) in->mfiles = mmp_xrealloc(in->mfiles, sizeof(char *) * (in->nmf + 8));
    int mf = in->nmf;
    in->mfiles[in->nmf++] = mmp_xstrdup(name);
    for (size_t i = 0; i < r->n; i++) {
        mrow *w = &r->v[i];
        char *path;
        if (hf) {
            char *np = normpath(w->path);
            if (strstr(w->path, "://") || w->path[0] == '/' || !strcmp(np, "..") || !strncmp(np, "../", 3)) {
                free(np);
                char sb[64];
                return mmp_errf(err, errlen, "%s: line %d: file_name '%s' must be a relative path inside the folder of the metadata file",
                                name, w->line, shown(w->path, sb, sizeof sb));
            }
            path = resolve(name, np);
            free(np);
        } else
            path = resolve(name, w->path);
        int64_t l = MMP_NO_LABEL;
        char *cn = NULL;
        if (w->label) {
            int *first = w->num ? in->num_at : in->name_at, *other = w->num ? in->name_at : in->num_at;
            if (other[1]) {
                const char *on = in->mfiles[other[0]];
                int same = other[0] == mf;
                char sb[64];
                mmp_errf(err, errlen, "%s: line %d: label %s%s%s is a %s here but a %s on %s%sline %d", name, w->line,
                         w->num ? "" : "'", shown(w->label, sb, sizeof sb), w->num ? "" : "'", w->num ? "number" : "string (a class name)",
                         w->num ? "string (a class name)" : "number", same ? "" : on, same ? "" : " ", other[1]);
                free(path);
                return -1;
            }
            if (!first[1]) first[0] = mf, first[1] = w->line;
            if (w->num) {
                is_int(w->label, &l);
                if (l < -1) {
                    free(path);
                    return mmp_errf(err, errlen, "%s: line %d: label %lld is negative (labels are >= 0; -1 = none)", name,
                                    w->line, (long long)l);
                }
            } else {
                cn = mmp_xstrdup(w->label);
                set_add(cls, w->label);
            }
        }
        add_entry(in, path, cn, l, w->text, mf, w->line);
        w->text = NULL;
    }
    return 0;
}

/* a manifest given as an input (.csv / .jsonl) */
static int open_manifest(input *in, int csv, strset *cls, char *err, size_t errlen) {
    mrows r = {0};
    int rc = csv ? read_csv(in->name, 0, &r, err, errlen) : read_jsonl(in->name, 0, &r, err, errlen);
    if (!rc) rc = add_rows(in, in->name, 0, &r, cls, err, errlen);
    mrows_free(&r);
    return rc;
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
                      MMP_NO_LABEL, NULL, -1, 0);
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
/* Hugging Face imagefolder (datasets' folder_based_builder)           */
/* ------------------------------------------------------------------ */

/* datasets' ImageFolder EXTENSIONS (lower-cased extension of the name) */
static const char *const HF_EXT[] = {
    ".blp", ".bmp",  ".dib", ".bufr", ".cur", ".pcx", ".dcx", ".dds", ".ps",  ".eps",  ".fit", ".fits", ".fli",
    ".flc", ".ftc",  ".ftu", ".gbr",  ".gif", ".grib", ".png", ".apng", ".jp2", ".j2k", ".jpc", ".jpf", ".jpx",
    ".j2c", ".icns", ".ico", ".im",   ".iim", ".tif", ".tiff", ".jfif", ".jpe", ".jpg", ".jpeg", ".mpg", ".mpeg",
    ".msp", ".pcd",  ".pxr", ".pbm",  ".pgm", ".ppm", ".pnm", ".psd", ".bw",  ".rgb", ".rgba", ".sgi", ".ras",
    ".tga", ".icb",  ".vda", ".vst",  ".webp", ".wmf", ".emf", ".xbm", ".xpm"};
static const char *const HF_META[] = {"metadata.csv", "metadata.jsonl", "metadata.parquet"};
/* data_files.FILES_TO_IGNORE */
static const char *const HF_IGNORE[] = {"README.md",          "config.json",    "dataset_info.json",
                                        "dataset_infos.json", "dummy_data.zip", "dataset_dict.json"};
/* data_files.SPLIT_KEYWORDS, in DEFAULT_SPLITS order */
static const char *const HF_SPLIT[3] = {"train", "validation", "test"};
static const char *const HF_KW[3][5] = {{"train", "training", NULL},
                                        {"validation", "valid", "dev", "val", NULL},
                                        {"test", "testing", "eval", "evaluation", NULL}};

static const char *base_of(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int in_list(const char *s, const char *const *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s, v[i])) return 1;
    return 0;
}

static int hf_is_img(const char *path) {
    const char *b = base_of(path), *dot = strrchr(b, '.');
    if (!dot || dot == b) return 0; /* os.path.splitext: a leading dot is no extension */
    for (size_t i = 0; i < sizeof HF_EXT / sizeof *HF_EXT; i++)
        if (!strcasecmp(dot, HF_EXT[i])) return 1;
    return 0;
}

/* data_files.NON_WORDS_CHARS "-._ 0-9" */
static int hf_sep(char c) { return c == '-' || c == '.' || c == '_' || c == ' ' || (c >= '0' && c <= '9'); }

/* The name c[0, n) against the glob parts of data_files' split patterns (fsspec
 * >= 2023.12) for keyword kw: j = 0 "{kw}", 1 "{kw}[sep]*", 2 "*[sep]{kw}",
 * 3 "*[sep]{kw}[sep]*". */
static int hf_name_match(const char *c, size_t n, const char *kw, int j) {
    size_t k = strlen(kw);
    switch (j) {
    case 0: return n == k && !memcmp(c, kw, k);
    case 1: return n > k && !memcmp(c, kw, k) && hf_sep(c[k]);
    case 2: return n > k && hf_sep(c[n - k - 1]) && !memcmp(c + n - k, kw, k);
    default:
        for (size_t i = 1; i + k < n; i++)
            if (hf_sep(c[i - 1]) && !memcmp(c + i, kw, k) && hf_sep(c[i + k])) return 1;
        return 0;
    }
}

/* Does the relative path match split pattern j of keyword kw? dir:
 * KEYWORDS_IN_DIR_NAME_BASE_PATTERNS, name j (hf_name_match) for any folder
 * of the path; else KEYWORDS_IN_FILENAME_BASE_PATTERNS, "{kw}[sep]*" (j 0) or
 * "*[sep]{kw}[sep]*" (j 1) for the file name. */
static int hf_path_match(const char *rel, const char *kw, int j, int dir) {
    if (!dir) {
        const char *b = base_of(rel);
        return hf_name_match(b, strlen(b), kw, j ? 3 : 1);
    }
    for (const char *p = rel;;) {
        const char *e = strchr(p, '/');
        if (!e) return 0; /* the file name is no folder */
        if (hf_name_match(p, (size_t)(e - p), kw, j)) return 1;
        p = e + 1;
    }
}

typedef struct {
    char **v;
    size_t n, cap;
} strvec;

static void sv_push(strvec *s, char *p) {
    if (s->n == s->cap) s->v = mmp_xrealloc(s->v, sizeof(char *) * (s->cap = s->cap ? s->cap * 2 : 256));
    s->v[s->n++] = p;
}

/* every file below root (relative paths), the way datasets' resolve_pattern
 * sees it: hidden files and folders (".x") and "__x" folders left out */
static void hf_walk(const char *root, const char *rel, int depth, strvec *out) {
    if (depth > 64) return;
    char *dir = *rel ? mmp_xasprintf("%s/%s", root, rel) : mmp_xstrdup(root);
    DIR *d = opendir(dir);
    if (!d) {
        mmp_warn("%s: %s", dir, strerror(errno));
        free(dir);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue; /* ".", "..", hidden */
        char *p = mmp_xasprintf("%s/%s", dir, de->d_name);
        char *r = *rel ? mmp_xasprintf("%s/%s", rel, de->d_name) : mmp_xstrdup(de->d_name);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            if (strncmp(de->d_name, "__", 2)) hf_walk(root, r, depth + 1, out);
            free(r);
        } else if (stat(p, &st) == 0 && S_ISREG(st.st_mode) &&
                   !in_list(de->d_name, HF_IGNORE, sizeof HF_IGNORE / sizeof *HF_IGNORE))
            sv_push(out, r);
        else
            free(r);
        free(p);
    }
    closedir(d);
    free(dir);
}

/* Is DIR a Hugging Face imagefolder rather than a torchvision ImageFolder?
 * Yes when it holds a metadata file (DIR/metadata.* or DIR/X/metadata.*), a
 * split folder (DIR/train, DIR/validation-2023, DIR/my_test ...), or no
 * sub-folder at all. */
static int hf_layout(const char *root) {
    DIR *d = opendir(root);
    if (!d) return 0;
    struct dirent *de;
    int hf = 0, subs = 0;
    while (!hf && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char *p = mmp_xasprintf("%s/%s", root, de->d_name);
        struct stat st;
        if (stat(p, &st) == 0) {
            if (S_ISREG(st.st_mode) && in_list(de->d_name, HF_META, 3)) hf = 1;
            else if (S_ISDIR(st.st_mode)) {
                subs++;
                size_t n = strlen(de->d_name);
                for (int s = 0; s < 3 && !hf; s++)
                    for (int k = 0; HF_KW[s][k] && !hf; k++)
                        for (int j = 0; j < 4 && !hf; j++) hf = hf_name_match(de->d_name, n, HF_KW[s][k], j);
                for (int m = 0; m < 3 && !hf; m++) {
                    char *q = mmp_xasprintf("%s/%s", p, HF_META[m]);
                    hf = stat(q, &st) == 0 && S_ISREG(st.st_mode);
                    free(q);
                }
            }
        }
        free(p);
    }
    closedir(d);
    return hf || !subs;
}

static int cmp_bytes(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The splits of a data dir as datasets' get_data_patterns finds them: split
 * folders first, else split words in file names, else everything is
 * "train". files[s]: the relative paths of split s in the order datasets
 * lists them (pattern by pattern, sorted within one; a path that several
 * patterns match comes again). Returns the number of splits found. */
static int hf_splits(strvec *all, strvec files[3], int *found) {
    for (int dir = 1; dir >= 0; dir--) {
        int any = 0;
        for (int s = 0; s < 3; s++) {
            found[s] = 0;
            for (int k = 0; HF_KW[s][k]; k++)
                for (int j = 0; j < (dir ? 4 : 2); j++)
                    for (size_t i = 0; i < all->n; i++)
                        if (hf_path_match(all->v[i], HF_KW[s][k], j, dir)) sv_push(&files[s], all->v[i]), found[s] = 1;
            any += found[s];
        }
        if (any) return any;
    }
    for (size_t i = 0; i < all->n; i++) sv_push(&files[0], all->v[i]);
    found[0] = 1;
    return 1;
}

static int open_hf(input *in, strset *cls, const char *split, char *err, size_t errlen) {
    strvec all = {0}, files[3] = {{0}};
    int found[3] = {0}, sel[3] = {0}, rc = -1;
    hf_walk(in->name, "", 0, &all);
    if (all.n) qsort(all.v, all.n, sizeof *all.v, cmp_bytes);
    int nsplit = hf_splits(&all, files, found);
    char names[64] = "";
    for (int s = 0; s < 3; s++)
        if (found[s]) snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", names[0] ? ", " : "", HF_SPLIT[s]);
    if (!split) {
        if (nsplit > 1) {
            mmp_errf(err, errlen, "%s: splits %s (Hugging Face imagefolder layout): choose with --split NAME (or A+B)",
                     in->name, names);
            goto out;
        }
        for (int s = 0; s < 3; s++) sel[s] = found[s];
    } else {
        for (const char *p = split; *p;) {
            const char *e = strchr(p, '+');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            int s = 0;
            while (s < 3 && !(strlen(HF_SPLIT[s]) == len && !memcmp(HF_SPLIT[s], p, len))) s++;
            if (s == 3 || !found[s]) {
                mmp_errf(err, errlen, "%s: no split '%.*s' (found: %s)", in->name, (int)len, p, names);
                goto out;
            }
            sel[s] = 1;
            p += len + (e ? 1 : 0);
        }
    }
    /* metadata files of every split: one extension, as datasets requires */
    const char *ext = NULL, *ext_file = NULL;
    int meta = 0;
    for (int s = 0; s < 3; s++)
        for (size_t i = 0; i < files[s].n; i++)
            if (in_list(base_of(files[s].v[i]), HF_META, 3)) {
                const char *x = strrchr(files[s].v[i], '.');
                if (ext && strcmp(ext, x)) {
                    mmp_errf(err, errlen, "%s: metadata files with different extensions (%s and %s)", in->name, ext_file,
                             files[s].v[i]);
                    goto out;
                }
                ext = x, ext_file = files[s].v[i], meta = 1;
            }
    if (meta && !strcmp(ext, ".parquet")) {
        mmp_errf(err, errlen, "%s/%s: metadata.parquet is not supported (write metadata.jsonl or metadata.csv)", in->name, ext_file);
        goto out;
    }
    /* without metadata: labels = the images' parent folder names when there
     * are several and every image is at the same depth. datasets decides it
     * split by split (train, validation, test) on the names and depths seen
     * so far, and the last split's answer makes the label feature: a split
     * decided before a second name came has no labels. */
    strset labels = {0};
    int depth = -1, samedepth = 1, lab[3] = {0}, last = -1;
    if (!meta)
        for (int s = 0; s < 3; s++) {
            if (!found[s]) continue;
            for (size_t i = 0; i < files[s].n; i++) {
                const char *p = files[s].v[i];
                if (!hf_is_img(p)) continue;
                char *full = mmp_xasprintf("%s/%s", in->name, p), *par = parent_name(full);
                set_add(&labels, par);
                free(par);
                free(full);
                int d = 0;
                for (const char *q = p; *q; q++) d += *q == '/';
                if (depth < 0) depth = d;
                else if (d != depth) samedepth = 0;
            }
            lab[s] = labels.n > 1 && samedepth;
            last = s;
        }
    int add_labels = last >= 0 && lab[last];
    if (add_labels)
        for (int i = 0; i < labels.n; i++) set_add(cls, labels.v[i]);
    for (int i = 0; i < labels.n; i++) free(labels.v[i]);
    free(labels.v);
    rc = 0;
    for (int s = 0; s < 3 && !rc; s++) {
        if (!sel[s]) continue;
        if (meta) {
            int nm = 0;
            for (size_t i = 0; i < files[s].n && !rc; i++) {
                const char *p = files[s].v[i];
                if (!in_list(base_of(p), HF_META, 3)) continue;
                int dup = 0; /* a metadata file once, whatever patterns list it again */
                for (size_t k = 0; k < i; k++) dup |= files[s].v[k] == p;
                if (dup) continue;
                nm++;
                char *mpath = mmp_xasprintf("%s/%s", in->name, p);
                mrows r = {0};
                rc = !strcmp(ext, ".csv") ? read_csv(mpath, 1, &r, err, errlen) : read_jsonl(mpath, 1, &r, err, errlen);
                if (!rc) rc = add_rows(in, mpath, 1, &r, cls, err, errlen);
                mrows_free(&r);
                free(mpath);
            }
            if (!nm && !rc) mmp_warn("%s: split %s has no metadata file: no rows (as in datasets)", in->name, HF_SPLIT[s]);
        } else
            for (size_t i = 0; i < files[s].n; i++) {
                const char *p = files[s].v[i];
                if (!hf_is_img(p)) continue;
                char *full = mmp_xasprintf("%s/%s", in->name, p);
                add_entry(in, full, add_labels && lab[s] ? parent_name(full) : NULL, MMP_NO_LABEL, NULL, -1, 0);
            }
    }
out:
    for (size_t i = 0; i < all.n; i++) free(all.v[i]);
    free(all.v);
    for (int s = 0; s < 3; s++) free(files[s].v);
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
            for (size_t l = strlen(in->name); l > 1 && in->name[l - 1] == '/'; l--) in->name[l - 1] = 0; /* ids: "d/x", not "d//x" */
            in->hf = hf_layout(in->name);
            kind = in->hf ? "imagefolder" : "dir";
            if (in->hf) rc = open_hf(in, &cls, s->o.split, err, errlen);
            else if (s->o.split && strcmp(s->o.split, "train")) /* datasets: no split folders = all "train" */
                rc = mmp_errf(err, errlen, "%s: no split '%s' (found: train; a folder without split folders is all train)",
                              in->name, s->o.split);
            else rc = open_dir(in, &cls, err, errlen);
        } else if (ends_with(inputs[i], ".csv")) {
            in->kind = IN_MANIFEST;
            kind = "csv";
            rc = open_manifest(in, 1, &cls, err, errlen);
        } else if (ends_with(inputs[i], ".jsonl") || ends_with(inputs[i], ".ndjson")) {
            in->kind = IN_MANIFEST;
            kind = "jsonl";
            rc = open_manifest(in, 0, &cls, err, errlen);
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
    int ndir = 0;
    for (int i = 0; i < ninputs; i++) ndir += s->in[i].kind == IN_DIR;
    if (s->o.split && !ndir) {
        mmp_errf(err, errlen, "--split %s: no folder among the inputs (it picks a split of a Hugging Face imagefolder)", s->o.split);
        goto fail;
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
    /* a manifest's number labels against the class list (names from other
     * inputs or --classes): out of range is the row's error, not the writer's */
    for (int i = 0; i < ninputs; i++)
        for (size_t k = 0; k < s->in[i].n; k++) {
            entry *e = &s->in[i].ents[k];
            if (e->mf >= 0 && !e->cls && e->label >= 0 && s->nclasses > 0 && e->label >= s->nclasses) {
                mmp_errf(err, errlen, "%s: line %d: label %lld out of range (%d classes%s)", s->in[i].mfiles[e->mf], e->line,
                         (long long)e->label, s->nclasses, s->fixed ? " in the class list" : " named by the inputs");
                mmp_src_close(s);
                return NULL;
            }
        }
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
        for (int k = 0; k < in->nmf; k++) free(in->mfiles[k]);
        free(in->mfiles);
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
            if (json_fields(json, strlen(json), 1, keys, 2, jv, NULL, e2, sizeof e2) && !ierr[0])
                snprintf(ierr, sizeof ierr, "%s.json: %s", key, e2);
        }
        if (txt) it->text = txt, txt = NULL;
        else if (jv[1]) it->text = jv[1], jv[1] = NULL;
        const char *lab = cls_txt ? cls_txt : jv[0];
        if (lab) {
            int64_t l;
            if (is_int(lab, &l)) {
                if ((l < -1 || (s->nclasses > 0 && l >= s->nclasses)) && !ierr[0])
                    snprintf(ierr, sizeof ierr, "label %lld out of range (%d classes)", (long long)l, s->nclasses);
                it->label = l;
            } else {
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
