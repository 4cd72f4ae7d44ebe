/* cli.h: the option table every mmp-* program parses its command line with.
 *
 * Each option is declared once, in a table of mmp_option entries: long name,
 * short name, type (flag, count, int with a range, double with a range,
 * string, choice list, int list, or a callback), the variable it sets, the
 * value's name and the help line. The same table parses argv and prints
 * --help; entries may also carry a metadata key (mmp-train-step records the
 * given configuration options under their checkpoint key) and a default.
 *
 *   int threads = 1, full = 0, level = 3;
 *   const char *out = "-";
 *   mmp_option opts[] = {
 *       MMP_O_FLAG("full", 0, &full, "exact shuffle"),
 *       MMP_O_THREADS(&threads, "threads (default 1)"),
 *       MMP_O_LEVEL(&level, "zstd level -7..19 (default 3)"),
 *       MMP_O_OUTPUT(&out, "output (default stdout)"),
 *       MMP_O_COMMON,
 *       MMP_O_END,
 *   };
 *   char **pos;
 *   int npos = mmp_cli_parse(argc, argv, opts, usage, &pos);
 *   ...
 *   free(pos);
 *
 * Command-line syntax (getopt_long's, parsed by glibc getopt_long):
 *  - "--name VALUE" and "--name=VALUE"; "-j 4" and "-j4"; bundled short
 *    flags ("-ab"); options and positional arguments in any order (the
 *    positional arguments keep their order; argv is not permuted, so the
 *    command recorded in a stream header is the one typed); "--" ends the
 *    options (what follows is positional, "-" is positional: stdin).
 *  - Long names must be spelt in full: getopt_long's unambiguous prefixes
 *    ("--thr" for "--threads") are refused, so that adding an option never
 *    changes what an existing command line means. A misspelt or shortened
 *    option gets one line with a suggestion:
 *      "unknown option --thread (did you mean --threads?)".
 *  - Bad values: "bad value for --buffer: 'x' (an integer is expected)",
 *    "value for --level out of range: 30 (allowed -7..19)", a missing value
 *    "option --head needs a value (see --help)", a value given to a flag
 *    "option --full takes no value (see --help)".
 */
#ifndef MMP_CLI_H
#define MMP_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mmp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    MMP_OPTION_END = 0, /* ends a table */
    MMP_OPTION_FLAG,    /* no value: *p.i = val */
    MMP_OPTION_COUNT,   /* no value: ++*p.i (-v -v) */
    MMP_OPTION_INT,     /* int in [min,max] */
    MMP_OPTION_LLONG,   /* long long in [min,max] */
    MMP_OPTION_INT64,   /* int64_t in [min,max] */
    MMP_OPTION_DOUBLE,  /* finite double in [dmin,dmax] (flags: open ends, "auto") */
    MMP_OPTION_STRING,  /* const char * (points into argv) */
    MMP_OPTION_STRBUF,  /* copied into char p.buf[max]; at least min characters */
    MMP_OPTION_CHOICE,  /* int = index of the value in choices */
    MMP_OPTION_INT_LIST,/* "5,1,10": up to max positive ints into p.i, the count into *count */
    MMP_OPTION_CALL,    /* call(o, target, value, err, errlen) */
    MMP_OPTION_INCLUDE, /* the entries of another table (p.table), in place */
    MMP_OPTION_TEXT,    /* no option: help prints the text (a heading, a note) */
    MMP_OPTION_HELP,    /* prints the usage and the option list, exits 0 */
    MMP_OPTION_VERSION, /* prints "PROG (mmpipe) VERSION", exits 0 */
} mmp_option_type;

/* flags */
#define MMP_OPTION_OPEN_MIN 0x1u /* DOUBLE: value > dmin (else >=) */
#define MMP_OPTION_OPEN_MAX 0x2u /* DOUBLE: value < dmax (else <=) */
#define MMP_OPTION_AUTO 0x4u     /* DOUBLE: "auto" = NaN, formatted "auto" */
#define MMP_OPTION_ALIAS 0x8u    /* another spelling of an earlier entry's meta key:
                                    skipped by mmp_option_by_meta and mmp_options_defaults */
#define MMP_OPTION_USER 0x10000u /* the first bit left to a table's owner */

typedef struct mmp_option mmp_option;
/* CALL: parses val into target; 0 ok, -1 bad value (a complete message in
 * err, or err left empty for "bad value for --NAME: 'VAL'"). */
typedef int (*mmp_option_fn)(const mmp_option *o, void *target, const char *val, char *err, size_t errlen);
/* mmp_option_format: writes the value of target into buf; returns 0 to omit it. */
typedef int (*mmp_option_fmt)(const mmp_option *o, const void *target, char *buf, size_t len);

struct mmp_option {
    mmp_option_type type;
    const char *name;     /* long name without "--"; NULL: short only */
    int shortname;        /* 'j'; 0: none */
    const char *valname;  /* the value in --help ("N"; CHOICE: the choices joined by '|') */
    const char *help;     /* NULL: not listed; '\n' starts a continuation line */
    union {
        void *v;
        int *i;
        long long *ll;
        int64_t *i64;
        double *d;
        const char **s;
        char *buf;
        const mmp_option *table;
    } p;                  /* the target; NULL: base + off (see INCLUDE) */
    size_t off;
    long long min, max;   /* INT*: range; STRBUF: min length, buffer size; INT_LIST: capacity */
    double dmin, dmax;    /* DOUBLE: range */
    int val;              /* FLAG: the value stored */
    unsigned flags;
    const char *const *choices; /* CHOICE: NULL-terminated */
    int *count;           /* INT_LIST: number of values read */
    int *given;           /* when set: incremented each time the option is given */
    mmp_option_fn call;   /* CALL; for a FLAG, the parser of a value string (mmp_option_set) */
    mmp_option_fmt fmt;   /* custom mmp_option_format */
    const char *meta;     /* a metadata key: the given value is recorded under it (INCLUDE's record) */
    const char *metaval;  /* FLAG with a meta key: the value recorded ("1") */
    const char *def;      /* default value, as a string (mmp_options_defaults) */
    void *base;           /* INCLUDE: targets of entries without p are base + off */
    mmp_meta *record;     /* INCLUDE: where entries with a meta key record their value */
};

/* Table entries. The trailing arguments are more designated initializers,
 * e.g. MMP_O_LEVEL(&level, "zstd level", .given = &level_given). */
#define MMP_O_FLAG(lname, sname, ptr, help_, ...) \
    {.type = MMP_OPTION_FLAG, .name = (lname), .shortname = (sname), .p.i = (ptr), .val = 1, .help = (help_), __VA_ARGS__}
#define MMP_O_SET(lname, sname, ptr, value, help_, ...) \
    {.type = MMP_OPTION_FLAG, .name = (lname), .shortname = (sname), .p.i = (ptr), .val = (value), .help = (help_), __VA_ARGS__}
#define MMP_O_COUNT(lname, sname, ptr, help_, ...) \
    {.type = MMP_OPTION_COUNT, .name = (lname), .shortname = (sname), .p.i = (ptr), .help = (help_), __VA_ARGS__}
/* INT, LLONG, INT64 (p.i, p.ll, p.i64) in [lo,hi] */
#define MMP_O_NUM_(kind, member, lname, sname, ptr, lo, hi, vname, help_, ...)                                      \
    {.type = (kind), .name = (lname), .shortname = (sname), .p.member = (ptr), .min = (lo), .max = (hi), \
     .valname = (vname), .help = (help_), __VA_ARGS__}
#define MMP_O_INT(lname, sname, ptr, lo, hi, vname, help_, ...) \
    MMP_O_NUM_(MMP_OPTION_INT, i, lname, sname, ptr, lo, hi, vname, help_, __VA_ARGS__)
#define MMP_O_LLONG(lname, sname, ptr, lo, hi, vname, help_, ...) \
    MMP_O_NUM_(MMP_OPTION_LLONG, ll, lname, sname, ptr, lo, hi, vname, help_, __VA_ARGS__)
#define MMP_O_INT64(lname, sname, ptr, lo, hi, vname, help_, ...) \
    MMP_O_NUM_(MMP_OPTION_INT64, i64, lname, sname, ptr, lo, hi, vname, help_, __VA_ARGS__)
#define MMP_O_DOUBLE(lname, sname, ptr, lo, hi, vname, help_, ...)                                                       \
    {.type = MMP_OPTION_DOUBLE, .name = (lname), .shortname = (sname), .p.d = (ptr), .dmin = (lo), .dmax = (hi), \
     .valname = (vname), .help = (help_), __VA_ARGS__}
#define MMP_O_STRING(lname, sname, ptr, vname, help_, ...) \
    {.type = MMP_OPTION_STRING, .name = (lname), .shortname = (sname), .p.s = (ptr), .valname = (vname), .help = (help_), __VA_ARGS__}
#define MMP_O_STRBUF(lname, sname, buf_, minlen, vname, help_, ...)                                                   \
    {.type = MMP_OPTION_STRBUF, .name = (lname), .shortname = (sname), .p.buf = (buf_), .min = (minlen),         \
     .max = (long long)sizeof(buf_), .valname = (vname), .help = (help_), __VA_ARGS__}
#define MMP_O_CHOICE(lname, sname, ptr, list, help_, ...) \
    {.type = MMP_OPTION_CHOICE, .name = (lname), .shortname = (sname), .p.i = (ptr), .choices = (list), .help = (help_), __VA_ARGS__}
#define MMP_O_INT_LIST(lname, sname, arr, cnt, maxn, vname, help_, ...)                                                  \
    {.type = MMP_OPTION_INT_LIST, .name = (lname), .shortname = (sname), .p.i = (arr), .count = (cnt), .max = (maxn), \
     .valname = (vname), .help = (help_), __VA_ARGS__}
#define MMP_O_CALL(lname, sname, fn, target, vname, help_, ...)                                                       \
    {.type = MMP_OPTION_CALL, .name = (lname), .shortname = (sname), .call = (fn), .p.v = (target), .valname = (vname), \
     .help = (help_), __VA_ARGS__}
#define MMP_O_INCLUDE(tbl, ...) {.type = MMP_OPTION_INCLUDE, .p.table = (tbl), __VA_ARGS__}
#define MMP_O_TEXT(text) {.type = MMP_OPTION_TEXT, .help = (text)}
#define MMP_O_END {.type = MMP_OPTION_END}

/* The common entries: -h/--help, --version, --progress/--no-progress. */
extern const mmp_option mmp_cli_common_options[];
#define MMP_O_COMMON MMP_O_INCLUDE(mmp_cli_common_options)
/* -j/--threads N (1..1024), -o/--output FILE, --level L (zstd, -7..19). */
#define MMP_O_THREADS(ptr, help_, ...) MMP_O_INT("threads", 'j', ptr, 1, 1024, "N", help_, __VA_ARGS__)
#define MMP_O_OUTPUT(ptr, help_, ...) MMP_O_STRING("output", 'o', ptr, "FILE", help_, __VA_ARGS__)
#define MMP_O_LEVEL(ptr, help_, ...) MMP_O_INT("level", 0, ptr, -7, 19, "L", help_, __VA_ARGS__)

/* mmp_cli_parse_r's return value after --help or --version. */
#define MMP_CLI_EXIT (-2)

/* Parses argv[1..argc) with opts (syntax above). The positional arguments go,
 * in order, into pos (room for argc entries; NULL-terminated). Returns their
 * count; -1 on a bad command line with one line in err (without the program
 * name); MMP_CLI_EXIT after printing --help or --version to out. Options
 * given set their targets in command-line order. */
int mmp_cli_parse_r(int argc, char **argv, const mmp_option *opts, const char *usage, char **pos, FILE *out,
                    char *err, size_t errlen);
/* The programs' form: dies with "prog: message" on a bad command line, exits 0
 * after --help/--version. *pos = the positional arguments (heap, NULL-terminated;
 * free it). Returns their count. */
int mmp_cli_parse(int argc, char **argv, const mmp_option *opts, const char *usage, char ***pos);
/* mmp_cli_parse for a program that reads one input: returns it (a path, "-"
 * = stdin when none is given); more than one: dies "one input at most". */
const char *mmp_cli_parse_input(int argc, char **argv, const mmp_option *opts, const char *usage);
/* --help: usage (as is), then the option list made from the table: one
 * "  -j, --threads N   help" line per listed option, help continuation
 * lines aligned, TEXT entries as they are. */
void mmp_cli_help(FILE *f, const mmp_option *opts, const char *usage);
/* The table for generators (scripts/gen-man.sh, scripts/gen-completion.sh):
 * what mmp_cli_parse_r prints instead of parsing, returning MMP_CLI_EXIT, when
 * the environment has MMP_CLI_DUMP=1. Tab-separated lines, fields with
 * backslash, tab and newline written as \\, \t, \n:
 *   program NAME VERSION
 *   usage   USAGE
 *   option  LONG SHORT TYPE VALNAME CHOICES HELP   (one per listed option;
 *           TYPE flag|count|int|llong|int64|double|string|strbuf|choice|
 *           intlist|call|help|version; VALNAME empty: no value; CHOICES
 *           joined by '|'; LONG or SHORT may be empty)
 *   text    TEXT                                   (a TEXT entry) */
void mmp_cli_dump(FILE *f, const mmp_option *opts, const char *usage);

/* Sets option o from a value string, as the parser does (val NULL: a flag or a
 * count given). base: for entries without p (target base + off). shown: the
 * name used in messages (NULL: "--NAME"). 0 ok, -1 with the message in err. */
int mmp_option_set(const mmp_option *o, void *base, const char *val, const char *shown, char *err, size_t errlen);
/* The current value of o's target as a string (o->fmt when set; else INT*
 * "%lld", DOUBLE "%.17g" (AUTO: NaN = "auto"), STRING/STRBUF as is, CHOICE
 * the name, FLAG/COUNT "%d"). Returns 0 when o->fmt omits it. */
int mmp_option_format(const mmp_option *o, const void *base, char *buf, size_t len);
/* The entry with this meta key (not ALIAS) or long name; includes searched; NULL when none. */
const mmp_option *mmp_option_by_meta(const mmp_option *opts, const char *key);
const mmp_option *mmp_option_by_name(const mmp_option *opts, const char *name);
/* Applies every entry's def (not ALIAS). 0 or -1 (err). */
int mmp_options_defaults(const mmp_option *opts, void *base, char *err, size_t errlen);

/* Value parsers with the messages above; 0 ok, -1 (err). name as shown ("--level"). */
int mmp_cli_parse_ll(const char *name, const char *s, long long min, long long max, long long *out, char *err,
                     size_t errlen);
int mmp_cli_parse_double(const char *name, const char *s, double *out, char *err, size_t errlen);

/* Damerau-Levenshtein (optimal string alignment) distance; capped at 64 characters. */
int mmp_cli_edit_distance(const char *a, const char *b);

/* Outcome of a policy check (0 pass, 1 pass with a warning in msg, -1
 * refused with the reason in msg): warns or dies with msg. */
void mmp_cli_check(int rc, const char *msg);

#ifdef __cplusplus
}
#endif
#endif
