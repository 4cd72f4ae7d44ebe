/* Command-line conventions shared by every mmp-* program: the option table
 * parser (getopt_long underneath, see cli.h), --help from the table,
 * progress lines. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_progress = -1; /* -1 = decide from isatty */
static int g_progress_shown = 0;

const mmp_option mmp_cli_common_options[] = {
    {.type = MMP_OPTION_FLAG, .name = "progress", .p.i = &g_progress, .val = 1,
     .help = "progress on stderr (default: when stderr is a terminal)"},
    {.type = MMP_OPTION_FLAG, .name = "no-progress", .p.i = &g_progress, .val = 0, .help = "no progress line"},
    {.type = MMP_OPTION_HELP, .name = "help", .shortname = 'h', .help = "this help"},
    {.type = MMP_OPTION_VERSION, .name = "version", .help = "the version"},
    MMP_O_END,
};

void mmp_cli_init(const char *progname) {
    mmp_set_progname(progname);
    /* A closed pipe downstream ends us quietly, like cat or head. */
    signal(SIGPIPE, SIG_DFL);
}

/* ------------------------------------------------------------------ */
/* values                                                              */
/* ------------------------------------------------------------------ */

int mmp_cli_parse_ll(const char *name, const char *s, long long min, long long max, long long *out, char *err,
                     size_t errlen) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return mmp_errf(err, errlen, "bad value for %s: '%s' (an integer is expected)", name, s);
    if (v < min || v > max)
        return mmp_errf(err, errlen, "value for %s out of range: %lld (allowed %lld..%lld)", name, v, min, max);
    *out = v;
    return 0;
}

int mmp_cli_parse_double(const char *name, const char *s, double *out, char *err, size_t errlen) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return mmp_errf(err, errlen, "bad value for %s: '%s' (a number is expected)", name, s);
    *out = v;
    return 0;
}

static int parse_int_list(const char *name, const char *s, int *out, int max, int *n_out, char *err, size_t errlen) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *e;
        errno = 0;
        long k = strtol(p, &e, 10);
        if (e == p || errno || k < 1 || k > INT_MAX || n >= max || (*e && *e != ','))
            return mmp_errf(err, errlen, "bad value for %s: '%s' (up to %d positive integers, comma-separated)", name, s, max);
        out[n++] = (int)k;
        p = *e ? e + 1 : e;
    }
    *n_out = n;
    return 0;
}

static void *target_of(const mmp_option *o, const void *base) {
    if (o->p.v) return o->p.v;
    return base ? (char *)base + o->off : NULL;
}

static int parse_bool(const char *v, int *out) {
    if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "on")) *out = 1;
    else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "off")) *out = 0;
    else return -1;
    return 0;
}

/* "(a or b)", "(a, b, c)" */
static void choice_list(const mmp_option *o, char *buf, size_t n, const char *sep2, const char *sep) {
    int k = 0;
    while (o->choices[k]) k++;
    buf[0] = 0;
    for (int i = 0; i < k; i++) {
        size_t L = strlen(buf);
        snprintf(buf + L, n - L, "%s%s", i == 0 ? "" : k == 2 ? sep2 : sep, o->choices[i]);
    }
}

int mmp_option_set(const mmp_option *o, void *base, const char *val, const char *shown, char *err, size_t errlen) {
    char nm[80];
    if (!shown) {
        if (o->name) snprintf(nm, sizeof nm, "--%s", o->name);
        else snprintf(nm, sizeof nm, "-%c", o->shortname);
        shown = nm;
    }
    if (err && errlen) err[0] = 0;
    void *t = target_of(o, base);
    long long ll = 0;
    double d = 0;
    switch (o->type) {
    case MMP_OPTION_FLAG:
        if (!val) {
            if (t) *(int *)t = o->val;
            return 0;
        }
        if (o->call) {
            if (o->call(o, t, val, err, errlen) == 0) return 0;
            break;
        }
        {
            int b;
            if (parse_bool(val, &b)) break;
            if (t) *(int *)t = b;
        }
        return 0;
    case MMP_OPTION_COUNT:
        if (t) ++*(int *)t;
        return 0;
    case MMP_OPTION_INT:
    case MMP_OPTION_LLONG:
    case MMP_OPTION_INT64: {
        long long lo = o->min, hi = o->max;
        if (o->type == MMP_OPTION_INT) {
            if (lo < INT_MIN) lo = INT_MIN;
            if (hi > INT_MAX) hi = INT_MAX;
        }
        if (lo == 0 && hi == 0) lo = LLONG_MIN, hi = LLONG_MAX;
        if (mmp_cli_parse_ll(shown, val, lo, hi, &ll, err, errlen)) return -1;
        if (!t) return 0;
        if (o->type == MMP_OPTION_INT) *(int *)t = (int)ll;
        else if (o->type == MMP_OPTION_LLONG) *(long long *)t = ll;
        else *(int64_t *)t = ll;
        return 0;
    }
    case MMP_OPTION_DOUBLE: {
        if ((o->flags & MMP_OPTION_AUTO) && !strcmp(val, "auto")) {
            if (t) *(double *)t = NAN;
            return 0;
        }
        if (mmp_cli_parse_double(shown, val, &d, err, errlen)) return -1;
        double lo = o->dmin, hi = o->dmax;
        if (lo == 0 && hi == 0 && !(o->flags & (MMP_OPTION_OPEN_MIN | MMP_OPTION_OPEN_MAX))) lo = -INFINITY, hi = INFINITY;
        int okl = (o->flags & MMP_OPTION_OPEN_MIN) ? d > lo : d >= lo;
        int okh = (o->flags & MMP_OPTION_OPEN_MAX) ? d < hi : d <= hi;
        if (!okl || !okh) {
            char lw[64] = "", hw[64] = "";
            if (isfinite(lo)) snprintf(lw, sizeof lw, "%s %g", (o->flags & MMP_OPTION_OPEN_MIN) ? ">" : ">=", lo);
            if (isfinite(hi)) snprintf(hw, sizeof hw, "%s %g", (o->flags & MMP_OPTION_OPEN_MAX) ? "<" : "<=", hi);
            return mmp_errf(err, errlen, "value for %s out of range: %s (must be %s%s%s)", shown, val, lw,
                            lw[0] && hw[0] ? " and " : "", hw);
        }
        if (t) *(double *)t = d;
        return 0;
    }
    case MMP_OPTION_STRING:
        if (t) *(const char **)t = val;
        return 0;
    case MMP_OPTION_STRBUF: {
        size_t L = strlen(val);
        if ((long long)L >= o->max)
            return mmp_errf(err, errlen, "bad value for %s: '%s' (at most %lld characters)", shown, val, o->max - 1);
        if ((long long)L < o->min)
            return mmp_errf(err, errlen, "bad value for %s: '%s' (%s)", shown, val, o->min == 1 ? "empty" : "too short");
        if (t) memcpy(t, val, L + 1);
        return 0;
    }
    case MMP_OPTION_CHOICE:
        for (int k = 0; o->choices[k]; k++)
            if (!strcmp(val, o->choices[k])) {
                if (t) *(int *)t = k;
                return 0;
            }
        {
            char list[256];
            choice_list(o, list, sizeof list, " or ", ", ");
            return mmp_errf(err, errlen, "bad value for %s: %s (%s)", shown, val, list);
        }
    case MMP_OPTION_INT_LIST: {
        int tmp[256], n = 0;
        int cap = o->max > 256 ? 256 : (int)o->max;
        if (parse_int_list(shown, val, tmp, cap, &n, err, errlen)) return -1;
        if (t) memcpy(t, tmp, sizeof(int) * (size_t)n);
        if (o->count) *o->count = n;
        return 0;
    }
    case MMP_OPTION_CALL:
        if (o->call(o, t, val, err, errlen) == 0) return 0;
        break;
    default:
        return mmp_errf(err, errlen, "%s: not an option with a value", shown);
    }
    if (err && errlen && !err[0]) mmp_errf(err, errlen, "bad value for %s: '%s'", shown, val);
    return -1;
}

int mmp_option_format(const mmp_option *o, const void *base, char *buf, size_t len) {
    const void *t = target_of(o, base);
    if (o->fmt) return o->fmt(o, t, buf, len);
    buf[0] = 0;
    switch (o->type) {
    case MMP_OPTION_FLAG:
    case MMP_OPTION_COUNT:
    case MMP_OPTION_INT: snprintf(buf, len, "%d", *(const int *)t); break;
    case MMP_OPTION_LLONG: snprintf(buf, len, "%lld", *(const long long *)t); break;
    case MMP_OPTION_INT64: snprintf(buf, len, "%lld", (long long)*(const int64_t *)t); break;
    case MMP_OPTION_DOUBLE: {
        double d = *(const double *)t;
        if (isnan(d) && (o->flags & MMP_OPTION_AUTO)) snprintf(buf, len, "auto");
        else snprintf(buf, len, "%.17g", d);
        break;
    }
    case MMP_OPTION_STRING: snprintf(buf, len, "%s", *(const char *const *)t ? *(const char *const *)t : ""); break;
    case MMP_OPTION_STRBUF: snprintf(buf, len, "%s", (const char *)t); break;
    case MMP_OPTION_CHOICE: {
        int k = *(const int *)t, n = 0;
        while (o->choices[n]) n++;
        snprintf(buf, len, "%s", k >= 0 && k < n ? o->choices[k] : "?");
        break;
    }
    case MMP_OPTION_INT_LIST: {
        const int *v = t;
        int n = o->count ? *o->count : 0;
        for (int k = 0; k < n; k++) {
            size_t L = strlen(buf);
            snprintf(buf + L, len - L, "%s%d", k ? "," : "", v[k]);
        }
        break;
    }
    default: return 0;
    }
    return 1;
}

const mmp_option *mmp_option_by_meta(const mmp_option *opts, const char *key) {
    for (const mmp_option *o = opts; o->type != MMP_OPTION_END; o++) {
        if (o->type == MMP_OPTION_INCLUDE) {
            const mmp_option *r = mmp_option_by_meta(o->p.table, key);
            if (r) return r;
        } else if (o->meta && !(o->flags & MMP_OPTION_ALIAS) && !strcmp(o->meta, key))
            return o;
    }
    return NULL;
}

const mmp_option *mmp_option_by_name(const mmp_option *opts, const char *name) {
    for (const mmp_option *o = opts; o->type != MMP_OPTION_END; o++) {
        if (o->type == MMP_OPTION_INCLUDE) {
            const mmp_option *r = mmp_option_by_name(o->p.table, name);
            if (r) return r;
        } else if (o->name && !strcmp(o->name, name))
            return o;
    }
    return NULL;
}

int mmp_options_defaults(const mmp_option *opts, void *base, char *err, size_t errlen) {
    for (const mmp_option *o = opts; o->type != MMP_OPTION_END; o++) {
        if (o->type == MMP_OPTION_INCLUDE) {
            if (mmp_options_defaults(o->p.table, o->base ? o->base : base, err, errlen)) return -1;
        } else if (o->def && !(o->flags & MMP_OPTION_ALIAS)) {
            if (mmp_option_set(o, base, o->def, o->meta ? o->meta : o->name, err, errlen)) return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* the parser                                                          */
/* ------------------------------------------------------------------ */

typedef struct {
    const mmp_option *o;
    void *base;
    mmp_meta *record;
} flat;

typedef struct {
    flat *v;
    int n, cap;
} flatv;

static void flatten(flatv *f, const mmp_option *opts, void *base, mmp_meta *record, int depth) {
    if (depth > 8) mmp_die("option tables nested too deeply");
    for (const mmp_option *o = opts; o->type != MMP_OPTION_END; o++) {
        if (o->type == MMP_OPTION_INCLUDE) {
            flatten(f, o->p.table, o->base ? o->base : base, o->record ? o->record : record, depth + 1);
            continue;
        }
        if (f->n == f->cap) f->v = mmp_xrealloc(f->v, sizeof(flat) * (size_t)(f->cap = f->cap ? 2 * f->cap : 64));
        f->v[f->n++] = (flat){o, base, record};
    }
}

static int takes_value(const mmp_option *o) {
    return !(o->type == MMP_OPTION_FLAG || o->type == MMP_OPTION_COUNT || o->type == MMP_OPTION_HELP ||
             o->type == MMP_OPTION_VERSION);
}

int mmp_cli_edit_distance(const char *a, const char *b) {
    enum { M = 64 };
    int n = (int)strlen(a), m = (int)strlen(b);
    if (n > M) n = M;
    if (m > M) m = M;
    int d[M + 1][M + 1];
    for (int i = 0; i <= n; i++) d[i][0] = i;
    for (int j = 0; j <= m; j++) d[0][j] = j;
    for (int i = 1; i <= n; i++)
        for (int j = 1; j <= m; j++) {
            int c = a[i - 1] != b[j - 1];
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + c < v) v = d[i - 1][j - 1] + c;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[n][m];
}

/* The closest long name to the misspelt one (without dashes), or NULL: a
 * name it is the beginning of (3+ letters), else one at most 2 edits away
 * (1 for names of 4 letters or fewer). */
static const char *suggest(const flatv *f, const char *typed) {
    size_t L = strlen(typed);
    const char *best = NULL;
    if (L >= 3)
        for (int i = 0; i < f->n; i++) {
            const char *nm = f->v[i].o->name;
            if (nm && f->v[i].o->help && !strncmp(nm, typed, L) && (!best || strlen(nm) < strlen(best))) best = nm;
        }
    if (best) return best;
    int bd = L <= 4 ? 2 : 3;
    for (int i = 0; i < f->n; i++) {
        const char *nm = f->v[i].o->name;
        if (!nm) continue;
        int d = mmp_cli_edit_distance(typed, nm);
        if (d < bd) bd = d, best = nm;
    }
    return best;
}

static int unknown_option(const flatv *f, const char *tok, char *err, size_t errlen) {
    char typed[128];
    const char *s = NULL;
    if (tok[0] == '-' && tok[1] == '-') {
        snprintf(typed, sizeof typed, "%.*s", (int)strcspn(tok + 2, "="), tok + 2);
        s = suggest(f, typed);
    } else if (tok[0] == '-' && tok[1] && tok[2]) { /* "-threads": a long name with one dash? */
        snprintf(typed, sizeof typed, "%.*s", (int)strcspn(tok + 1, "="), tok + 1);
        for (int i = 0; i < f->n && !s; i++)
            if (f->v[i].o->name && !strcmp(f->v[i].o->name, typed)) s = f->v[i].o->name;
    }
    char shown[160];
    snprintf(shown, sizeof shown, "%.*s", (int)strcspn(tok, "="), tok);
    if (s) return mmp_errf(err, errlen, "unknown option %s (did you mean --%s?)", shown, s);
    return mmp_errf(err, errlen, "unknown option %s (see --help)", shown);
}

/* "--name" or "--name=..." spelt in full */
static int exact(const char *tok, const char *name) {
    size_t L = strlen(name);
    return tok[0] == '-' && tok[1] == '-' && !strncmp(tok + 2, name, L) && (tok[2 + L] == 0 || tok[2 + L] == '=');
}

static int apply(const flat *fl, const char *val, FILE *out, const mmp_option *all, const char *usage, char *err,
                 size_t errlen) {
    const mmp_option *o = fl->o;
    if (o->type == MMP_OPTION_HELP) {
        mmp_cli_help(out, all, usage);
        return MMP_CLI_EXIT;
    }
    if (o->type == MMP_OPTION_VERSION) {
        fprintf(out, "%s (mmpipe) %s\n", mmp_progname(), MMP_VERSION);
        return MMP_CLI_EXIT;
    }
    if (mmp_option_set(o, fl->base, val, NULL, err, errlen)) return -1;
    if (o->given) ++*o->given;
    if (o->meta && fl->record) mmp_meta_set(fl->record, o->meta, val ? val : o->metaval ? o->metaval : "1");
    return 0;
}

int mmp_cli_parse_r(int argc, char **argv, const mmp_option *opts, const char *usage, char **pos, FILE *out,
                    char *err, size_t errlen) {
    const char *dump = getenv("MMP_CLI_DUMP"); /* hidden: the table for scripts/gen-man.sh, gen-completion.sh */
    if (dump && !strcmp(dump, "1")) {
        mmp_cli_dump(out, opts, usage);
        pos[0] = NULL;
        return MMP_CLI_EXIT;
    }
    flatv f = {0};
    flatten(&f, opts, NULL, NULL, 0);
    struct option *lo = mmp_xcalloc((size_t)f.n + 1, sizeof *lo);
    char *sopt = mmp_xmalloc(3 * (size_t)f.n + 4);
    int nl = 0, ns = 0, npos = 0, rc = 0;
    sopt[ns++] = '-'; /* non-options are returned in order (no permutation) */
    sopt[ns++] = ':'; /* a missing value is reported as ':' */
    for (int i = 0; i < f.n; i++) {
        const mmp_option *o = f.v[i].o;
        if (o->type == MMP_OPTION_TEXT) continue;
        for (int j = 0; j < i; j++) { /* a table bug, not a user error */
            const mmp_option *q = f.v[j].o;
            if ((o->name && q->name && !strcmp(o->name, q->name)) || (o->shortname && o->shortname == q->shortname))
                mmp_die("option table: %s%s declared twice", o->name ? "--" : "-", o->name ? o->name : (char[2]){(char)o->shortname, 0});
        }
        if (o->name) lo[nl++] = (struct option){o->name, takes_value(o) ? required_argument : no_argument, NULL, 256 + i};
        if (o->shortname) {
            sopt[ns++] = (char)o->shortname;
            if (takes_value(o)) sopt[ns++] = ':';
        }
    }
    sopt[ns] = 0;
    int saved_opterr = opterr;
    opterr = 0;
    optind = 0; /* full re-initialization of getopt's state */
    for (;;) {
        int before = optind ? optind : 1, li = -1;
        int c = getopt_long(argc, argv, sopt, lo, &li);
        if (c == -1) break;
        const char *tok = before < argc ? argv[before] : "";
        if (c == 1) {
            pos[npos++] = optarg;
            continue;
        }
        int idx = -1;
        if (c >= 256) idx = c - 256;
        else if ((c == '?' || c == ':') && optopt >= 256) idx = optopt - 256;
        if (idx >= 0 && !exact(tok, f.v[idx].o->name)) { /* a prefix getopt_long would accept */
            rc = unknown_option(&f, tok, err, errlen);
            break;
        }
        if (c == '?') {
            if (idx >= 0) rc = mmp_errf(err, errlen, "option --%s takes no value (see --help)", f.v[idx].o->name);
            else if (optopt && !(tok[0] == '-' && tok[1] != '-' && mmp_option_by_name(opts, tok + 1)))
                rc = mmp_errf(err, errlen, "unknown option -%c (see --help)", optopt);
            else rc = unknown_option(&f, tok, err, errlen);
            break;
        }
        if (c == ':') {
            if (idx >= 0) rc = mmp_errf(err, errlen, "option --%s needs a value (see --help)", f.v[idx].o->name);
            else rc = mmp_errf(err, errlen, "option -%c needs a value (see --help)", optopt);
            break;
        }
        if (idx < 0)
            for (int i = 0; i < f.n; i++)
                if (f.v[i].o->shortname == c && f.v[i].o->type != MMP_OPTION_TEXT) idx = i;
        if (idx < 0) {
            rc = mmp_errf(err, errlen, "unknown option -%c (see --help)", c);
            break;
        }
        if ((rc = apply(&f.v[idx], takes_value(f.v[idx].o) ? optarg : NULL, out, opts, usage, err, errlen))) break;
    }
    if (rc == 0)
        while (optind > 0 && optind < argc) pos[npos++] = argv[optind++]; /* after "--" */
    pos[npos] = NULL;
    opterr = saved_opterr;
    free(lo);
    free(sopt);
    free(f.v);
    return rc ? rc : npos;
}

int mmp_cli_parse(int argc, char **argv, const mmp_option *opts, const char *usage, char ***pos) {
    char err[1024];
    char **p = mmp_xcalloc((size_t)argc + 1, sizeof *p);
    int n = mmp_cli_parse_r(argc, argv, opts, usage, p, stdout, err, sizeof err);
    if (n == MMP_CLI_EXIT) {
        free(p);
        if (fflush(stdout)) exit(1);
        exit(0);
    }
    if (n < 0) {
        free(p);
        mmp_die("%s", err);
    }
    *pos = p;
    return n;
}

const char *mmp_cli_parse_input(int argc, char **argv, const mmp_option *opts, const char *usage) {
    char **pos;
    int n = mmp_cli_parse(argc, argv, opts, usage, &pos);
    const char *in = n ? pos[0] : "-"; /* points into argv */
    free(pos);
    if (n > 1) mmp_die("one input at most (see --help)");
    return in;
}

/* ------------------------------------------------------------------ */
/* --help                                                              */
/* ------------------------------------------------------------------ */

static void left_part(const mmp_option *o, char *buf, size_t n) {
    char vn[256] = "";
    if (takes_value(o)) {
        if (o->valname) snprintf(vn, sizeof vn, " %s", o->valname);
        else if (o->type == MMP_OPTION_CHOICE) {
            vn[0] = ' ';
            choice_list(o, vn + 1, sizeof vn - 1, "|", "|");
        } else snprintf(vn, sizeof vn, " VALUE");
    }
    if (o->shortname && o->name) snprintf(buf, n, "  -%c, --%s%s", o->shortname, o->name, vn);
    else if (o->shortname) snprintf(buf, n, "  -%c%s", o->shortname, vn);
    else snprintf(buf, n, "  --%s%s", o->name, vn);
}

void mmp_cli_help(FILE *f, const mmp_option *opts, const char *usage) {
    flatv fv = {0};
    flatten(&fv, opts, NULL, NULL, 0);
    enum { MAXCOL = 24 }; /* the help column: after the widest option that fits */
    int col = 0;
    char buf[512];
    for (int i = 0; i < fv.n; i++) {
        const mmp_option *o = fv.v[i].o;
        if (o->type == MMP_OPTION_TEXT || !o->help) continue;
        left_part(o, buf, sizeof buf);
        int L = (int)strlen(buf);
        if (L + 2 <= MAXCOL && L + 2 > col) col = L + 2;
    }
    if (col < 16) col = 16;
    if (usage) fputs(usage, f);
    for (int i = 0; i < fv.n; i++) {
        const mmp_option *o = fv.v[i].o;
        if (!o->help) continue;
        if (o->type == MMP_OPTION_TEXT) {
            fprintf(f, "%s\n", o->help);
            continue;
        }
        left_part(o, buf, sizeof buf);
        int L = (int)strlen(buf);
        fputs(buf, f);
        if (L + 2 > col) fprintf(f, "\n%*s", col, "");
        else fprintf(f, "%*s", col - L, "");
        for (const char *p = o->help;;) {
            size_t k = strcspn(p, "\n");
            fprintf(f, "%.*s\n", (int)k, p);
            if (!p[k]) break;
            p += k + 1;
            fprintf(f, "%*s", col, "");
        }
    }
    free(fv.v);
}

/* ------------------------------------------------------------------ */
/* the table for generators (MMP_CLI_DUMP=1)                           */
/* ------------------------------------------------------------------ */

/* a field: backslash, tab and newline escaped as \\, \t, \n */
static void dump_field(FILE *f, const char *s) {
    fputc('\t', f);
    for (; s && *s; s++) {
        if (*s == '\\') fputs("\\\\", f);
        else if (*s == '\t') fputs("\\t", f);
        else if (*s == '\n') fputs("\\n", f);
        else fputc(*s, f);
    }
}

static const char *type_name(mmp_option_type t) {
    switch (t) {
    case MMP_OPTION_FLAG: return "flag";
    case MMP_OPTION_COUNT: return "count";
    case MMP_OPTION_INT: return "int";
    case MMP_OPTION_LLONG: return "llong";
    case MMP_OPTION_INT64: return "int64";
    case MMP_OPTION_DOUBLE: return "double";
    case MMP_OPTION_STRING: return "string";
    case MMP_OPTION_STRBUF: return "strbuf";
    case MMP_OPTION_CHOICE: return "choice";
    case MMP_OPTION_INT_LIST: return "intlist";
    case MMP_OPTION_CALL: return "call";
    case MMP_OPTION_HELP: return "help";
    case MMP_OPTION_VERSION: return "version";
    default: return "other";
    }
}

void mmp_cli_dump(FILE *f, const mmp_option *opts, const char *usage) {
    flatv fv = {0};
    flatten(&fv, opts, NULL, NULL, 0);
    fputs("program", f);
    dump_field(f, mmp_progname());
    dump_field(f, MMP_VERSION);
    fputs("\nusage", f);
    dump_field(f, usage);
    fputc('\n', f);
    for (int i = 0; i < fv.n; i++) {
        const mmp_option *o = fv.v[i].o;
        if (!o->help) continue; /* not listed by --help: not documented either */
        if (o->type == MMP_OPTION_TEXT) {
            fputs("text", f);
            dump_field(f, o->help);
            fputc('\n', f);
            continue;
        }
        char sn[2] = {(char)o->shortname, 0}, vn[256] = "", ch[256] = "";
        if (o->type == MMP_OPTION_CHOICE) choice_list(o, ch, sizeof ch, "|", "|");
        if (takes_value(o)) snprintf(vn, sizeof vn, "%s", o->valname ? o->valname : ch[0] ? ch : "VALUE");
        fputs("option", f);
        dump_field(f, o->name);
        dump_field(f, sn);
        dump_field(f, type_name(o->type));
        dump_field(f, vn);
        dump_field(f, ch);
        dump_field(f, o->help);
        fputc('\n', f);
    }
    free(fv.v);
}

void mmp_cli_check(int rc, const char *msg) {
    if (rc < 0) mmp_die("%s", msg);
    if (rc > 0) mmp_warn("%s", msg);
}

/* ------------------------------------------------------------------ */
/* progress                                                            */
/* ------------------------------------------------------------------ */

/* g_progress: -1 = not given (live updates when stderr is a terminal), 0 =
 * --no-progress, 1 = --progress. On a terminal a live line is redrawn in
 * place (\r, erase to end of line) at most every 0.1 s; elsewhere (a file, a
 * pipe) nothing but whole plain lines is written: a live line at most every
 * 30 s and the last one when mmp_progress_done() ends it. */
#define PROGRESS_TTY_INTERVAL 0.1
#define PROGRESS_PLAIN_INTERVAL 30.0
static int g_tty = -1;
static char g_line[512];   /* the latest live line */
static int g_line_pending; /* g_line not written yet */
static double g_line_t = -1e30; /* when a live line was last written */

static int stderr_tty(void) {
    if (g_tty < 0) g_tty = isatty(2) ? 1 : 0;
    return g_tty;
}

int mmp_progress_enabled(void) {
    if (g_progress < 0) return stderr_tty();
    return g_progress;
}

int mmp_progress_is_tty(void) { return stderr_tty(); }

static void line_write(void) {
    if (stderr_tty()) fprintf(stderr, "\r%s: %s\033[K", mmp_progname(), g_line);
    else fprintf(stderr, "%s: %s\n", mmp_progname(), g_line);
    fflush(stderr);
    g_line_pending = 0;
    g_progress_shown = stderr_tty();
}

void mmp_progress(const char *fmt, ...) {
    if (!mmp_progress_enabled()) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_line, sizeof g_line, fmt, ap);
    va_end(ap);
    g_line_pending = 1;
    double now = mmp_now();
    if (!stderr_tty() && g_line_t < -1e29) g_line_t = now; /* the first plain line after an interval */
    if (now - g_line_t >= (stderr_tty() ? PROGRESS_TTY_INTERVAL : PROGRESS_PLAIN_INTERVAL)) {
        g_line_t = now;
        line_write();
    }
}

void mmp_progress_done(void) {
    if (g_line_pending && mmp_progress_enabled()) line_write();
    if (g_progress_shown) fputc('\n', stderr);
    g_progress_shown = 0;
    g_line_pending = 0;
    g_line_t = -1e30;
}

void mmp_progress_line(const char *fmt, ...) {
    if (g_progress == 0) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (g_progress_shown) fputs("\r\033[K", stderr); /* over the live line */
    fprintf(stderr, "%s: %s\n", mmp_progname(), buf);
    fflush(stderr);
    g_progress_shown = 0;
    g_line_pending = 0;
    if (!stderr_tty()) g_line_t = mmp_now();
}

/* h:mm:ss, or m:ss under an hour */
static void fmt_duration(char *b, size_t n, double s) {
    if (!(s >= 0) || s > 99 * 3600.0) {
        snprintf(b, n, "?");
        return;
    }
    long long t = (long long)(s + 0.5);
    if (t >= 3600) snprintf(b, n, "%lld:%02lld:%02lld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(b, n, "%lld:%02lld", t / 60, t % 60);
}

void mmp_progress_count(const char *what, const char *unit, uint64_t done, uint64_t total, double t0) {
    if (!mmp_progress_enabled()) return;
    double dt = mmp_now() - t0, rate = dt > 0 ? (double)done / dt : 0;
    char r[32], pre[256] = "";
    if (what && *what) snprintf(pre, sizeof pre, "%s: ", what);
    if (rate >= 100) snprintf(r, sizeof r, "%.0f", rate);
    else snprintf(r, sizeof r, "%.1f", rate);
    if (total > 0) {
        char eta[32];
        fmt_duration(eta, sizeof eta, done >= total ? 0 : rate > 0 ? (double)(total - done) / rate : -1);
        mmp_progress("%s%llu/%llu %s (%.0f%%), %s %s/s, ETA %s", pre, (unsigned long long)done, (unsigned long long)total, unit,
                     100.0 * (double)done / (double)total, r, unit, eta);
    } else {
        mmp_progress("%s%llu %s, %s %s/s", pre, (unsigned long long)done, unit, r, unit);
    }
}

double mmp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double mmp_wall_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
