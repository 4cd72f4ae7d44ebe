/* The option table parser (lib/cli.c): getopt_long syntax (--opt=v, --opt v,
 * -j4, -j 4, bundles, "--", positional arguments anywhere), whole long names
 * only, "did you mean", the value messages, meta recording, defaults and
 * formatting, and --help made from the table. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "testlib.h"

typedef struct {
    int full, threads, verbose, level, mode, ks[8], nk, given_level, calls;
    long long head;
    int64_t big;
    double ratio;
    const char *out;
    char name[8];
    char last_call[32];
} cfg;

static const char *const modes[] = {"concat", "sum", "gated", NULL};

static int pair_cb(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    cfg *c = t;
    if (!strchr(v, ',')) return strcmp(v, "silent") ? mmp_errf(err, errlen, "bad value for --%s: %s (want A,B)", o->name, v) : -1;
    c->calls++;
    snprintf(c->last_call, sizeof c->last_call, "%s", v);
    return 0;
}

#define TABLE(c)                                                                                         \
    mmp_option opts[] = {                                                                                \
        MMP_O_TEXT("options:"),                                                                          \
        MMP_O_FLAG("full", 'f', &(c).full, "exact shuffle"),                                             \
        MMP_O_COUNT("verbose", 'v', &(c).verbose, "more messages"),                                      \
        MMP_O_LLONG("head", 0, &(c).head, 0, 1000, "N", "stop after N records"),                         \
        MMP_O_INT64("big", 0, &(c).big, -5, 1LL << 40, "N", NULL),                                       \
        MMP_O_DOUBLE("ratio", 'r', &(c).ratio, 0, 1, "R", "fraction, 0..1\nsecond line of help"),        \
        MMP_O_CHOICE("mode", 0, &(c).mode, modes, "how"),                                                \
        MMP_O_INT_LIST("k", 0, (c).ks, &(c).nk, 3, "K[,K...]", "cut-offs"),                              \
        MMP_O_STRBUF("name", 0, (c).name, 1, "NAME", "a short name"),                                    \
        MMP_O_CALL("pair", 0, pair_cb, &(c), "A,B", "a pair"),                                           \
        MMP_O_THREADS(&(c).threads, "threads"),                                                          \
        MMP_O_LEVEL(&(c).level, "zstd level", .given = &(c).given_level),                                \
        MMP_O_OUTPUT(&(c).out, "output"),                                                                \
        MMP_O_COMMON,                                                                                    \
        MMP_O_TEXT("Exit status: 0 ok."),                                                                \
        MMP_O_END,                                                                                       \
    }

static const char usage[] = "usage: prog [options] [IN...]\nDoes things.\n\n";

/* parse a NULL-terminated argument list (argv[0] = "prog"); returns npos or
 * -1/-2, positional arguments joined by '|' into posbuf, message into err */
static int parse(cfg *c, char *err, char *posbuf, const char *first, ...) {
    char *argv[64];
    int argc = 0;
    argv[argc++] = "prog";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *)) argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    char *copy[64];
    memcpy(copy, argv, sizeof(char *) * (size_t)(argc + 1));
    memset(c, 0, sizeof *c);
    c->out = "-";
    c->threads = 1;
    TABLE(*c);
    char *pos[64];
    err[0] = 0;
    FILE *devnull = fopen("/dev/null", "w");
    int n = mmp_cli_parse_r(argc, argv, opts, usage, pos, devnull, err, 512);
    fclose(devnull);
    posbuf[0] = 0;
    for (int i = 0; i < n; i++) {
        strcat(posbuf, i ? "|" : "");
        strcat(posbuf, pos[i]);
    }
    if (n >= 0) CHECK(pos[n] == NULL);
    for (int i = 0; i < argc; i++) CHECKF(argv[i] == copy[i], "argv[%d] was permuted", i);
    return n;
}

#define P(...) parse(&c, err, pb, __VA_ARGS__, (const char *)NULL)

static void test_syntax(void) {
    cfg c;
    char err[512], pb[512];
    /* --opt=v, --opt v, -j4, -j 4, positional arguments anywhere, in order */
    CHECK(P("a", "--head=5", "b", "--ratio", "0.25", "-j4", "c") == 3);
    CHECK(!strcmp(pb, "a|b|c") && c.head == 5 && c.ratio == 0.25 && c.threads == 4);
    CHECK(P("-j", "7", "--threads=9", "x") == 1 && c.threads == 9 && !strcmp(pb, "x"));
    CHECK(P("--threads", "3") == 0 && c.threads == 3);
    /* bundles: -fv -vv, and a short option with its value at the end of a bundle */
    CHECK(P("-fvvj2", "-v") == 0 && c.full == 1 && c.verbose == 3 && c.threads == 2);
    CHECK(P("-fr", "0.5") == 0 && c.full && c.ratio == 0.5);
    CHECK(P("-fr0.75") == 0 && c.ratio == 0.75);
    /* "--" ends the options; "-" is positional (stdin) */
    CHECK(P("-", "--full", "--", "--head", "-x", "-") == 4 && c.full && c.head == 0);
    CHECK(!strcmp(pb, "-|--head|-x|-"));
    /* negative values and values that look like options */
    CHECK(P("--level", "-3", "--big=-5", "-o", "-") == 0 && c.level == -3 && c.big == -5 && !strcmp(c.out, "-"));
    CHECK(P("--output", "--full") == 0 && !strcmp(c.out, "--full") && !c.full);
    CHECK(P("-o-x") == 0 && !strcmp(c.out, "-x"));
    /* the last one wins; .given counts */
    CHECK(P("--level", "1", "--level=5") == 0 && c.level == 5 && c.given_level == 2);
    CHECK(P("x") == 1 && c.given_level == 0);
    /* choice, int list, string buffer, callback (called in order) */
    CHECK(P("--mode", "gated", "--k", "1,5,10", "--name", "abc") == 0 && c.mode == 2 && c.nk == 3 && c.ks[2] == 10);
    CHECK(!strcmp(c.name, "abc"));
    CHECK(P("--pair", "a,b", "--pair=c,d") == 0 && c.calls == 2 && !strcmp(c.last_call, "c,d"));
    /* empty command line; parsing again starts afresh */
    CHECK(P("--full") == 0 && c.full);
    CHECK(parse(&c, err, pb, NULL) == 0 && !c.full);
}

static void expect_err(int rc, const char *err, const char *want) {
    CHECKF(rc == -1 && !strcmp(err, want), "got %d '%s', want '%s'", rc, err, want);
}

static void test_errors(void) {
    cfg c;
    char err[512], pb[512];
    /* misspelt or shortened long names: one line, a suggestion when one is close */
    expect_err(P("--thread", "4"), err, "unknown option --thread (did you mean --threads?)");
    expect_err(P("--thraeds=4"), err, "unknown option --thraeds (did you mean --threads?)");
    expect_err(P("--thr", "4"), err, "unknown option --thr (did you mean --threads?)"); /* a prefix getopt_long takes */
    expect_err(P("--fu"), err, "unknown option --fu (see --help)");                    /* too short to guess */
    expect_err(P("--ful"), err, "unknown option --ful (did you mean --full?)");
    expect_err(P("--bogus", "x"), err, "unknown option --bogus (see --help)");
    expect_err(P("-threads", "4"), err, "unknown option -threads (did you mean --threads?)");
    expect_err(P("-x"), err, "unknown option -x (see --help)");
    expect_err(P("-fx"), err, "unknown option -x (see --help)");
    expect_err(P("--vrebose"), err, "unknown option --vrebose (did you mean --verbose?)");
    /* values */
    expect_err(P("--head", "x"), err, "bad value for --head: 'x' (an integer is expected)");
    expect_err(P("--head=12abc"), err, "bad value for --head: '12abc' (an integer is expected)");
    expect_err(P("--head", "1001"), err, "value for --head out of range: 1001 (allowed 0..1000)");
    expect_err(P("--level", "30"), err, "value for --level out of range: 30 (allowed -7..19)");
    expect_err(P("-j", "0"), err, "value for --threads out of range: 0 (allowed 1..1024)");
    expect_err(P("-jx"), err, "bad value for --threads: 'x' (an integer is expected)");
    expect_err(P("--ratio", "abc"), err, "bad value for --ratio: 'abc' (a number is expected)");
    expect_err(P("--ratio", "nan"), err, "bad value for --ratio: 'nan' (a number is expected)");
    expect_err(P("--ratio", "1.5"), err, "value for --ratio out of range: 1.5 (must be >= 0 and <= 1)");
    expect_err(P("--mode", "avg"), err, "bad value for --mode: avg (concat, sum, gated)");
    expect_err(P("--k", "1,x"), err, "bad value for --k: '1,x' (up to 3 positive integers, comma-separated)");
    expect_err(P("--k", "1,2,3,4"), err, "bad value for --k: '1,2,3,4' (up to 3 positive integers, comma-separated)");
    expect_err(P("--name", ""), err, "bad value for --name: '' (empty)");
    expect_err(P("--name", "abcdefgh"), err, "bad value for --name: 'abcdefgh' (at most 7 characters)");
    expect_err(P("--pair", "ab"), err, "bad value for --pair: ab (want A,B)");
    expect_err(P("--pair", "silent"), err, "bad value for --pair: 'silent'"); /* callback without a message */
    /* missing value, value given to a flag */
    expect_err(P("x", "--head"), err, "option --head needs a value (see --help)");
    expect_err(P("-o"), err, "option -o needs a value (see --help)");
    expect_err(P("--full=1"), err, "option --full takes no value (see --help)");
    /* the first error stops the parse */
    expect_err(P("--head", "x", "--bogus"), err, "bad value for --head: 'x' (an integer is expected)");
}

static void test_help(void) {
    cfg c;
    memset(&c, 0, sizeof c);
    TABLE(c);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    char *argv[] = {"prog", "x", "--help", "--bogus", NULL};
    char *pos[8], err[256] = "";
    mmp_set_progname("prog");
    CHECK(mmp_cli_parse_r(4, argv, opts, usage, pos, f, err, sizeof err) == MMP_CLI_EXIT);
    fclose(f);
    const char *want =
        "usage: prog [options] [IN...]\nDoes things.\n\n"
        "options:\n"
        "  -f, --full         exact shuffle\n"
        "  -v, --verbose      more messages\n"
        "  --head N           stop after N records\n"
        "  -r, --ratio R      fraction, 0..1\n"
        "                     second line of help\n"
        "  --mode concat|sum|gated\n"
        "                     how\n"
        "  --k K[,K...]       cut-offs\n"
        "  --name NAME        a short name\n"
        "  --pair A,B         a pair\n"
        "  -j, --threads N    threads\n"
        "  --level L          zstd level\n"
        "  -o, --output FILE  output\n"
        "  --progress         progress on stderr (default: when stderr is a terminal)\n"
        "  --no-progress      no progress line\n"
        "  -h, --help         this help\n"
        "  --version          the version\n"
        "Exit status: 0 ok.\n";
    CHECKF(buf && !strcmp(buf, want), "help:\n%s\nwant:\n%s", buf ? buf : "", want);
    free(buf);
    f = open_memstream(&buf, &len);
    char *argv2[] = {"prog", "--version", NULL};
    CHECK(mmp_cli_parse_r(2, argv2, opts, usage, pos, f, err, sizeof err) == MMP_CLI_EXIT);
    fclose(f);
    CHECK(buf && !strcmp(buf, "prog (mmpipe) " MMP_VERSION "\n"));
    free(buf);
    /* -h in a bundle */
    f = open_memstream(&buf, &len);
    char *argv3[] = {"prog", "-fh", NULL};
    CHECK(mmp_cli_parse_r(2, argv3, opts, usage, pos, f, err, sizeof err) == MMP_CLI_EXIT);
    fclose(f);
    CHECK(buf && !strncmp(buf, "usage: prog", 11));
    free(buf);
}

/* a configuration table with relative targets, meta keys and defaults */
typedef struct {
    int std_, nesterov, epochs;
    double lr;
    char feature[16];
} tcfg;

#define OFF(f) offsetof(tcfg, f)
static const mmp_option tab[] = {
    {.type = MMP_OPTION_DOUBLE, .name = "lr", .off = OFF(lr), .dmin = 0, .dmax = INFINITY, .flags = MMP_OPTION_OPEN_MIN | MMP_OPTION_AUTO,
     .meta = "lr", .def = "auto", .valname = "LR", .help = "learning rate"},
    {.type = MMP_OPTION_INT, .name = "epochs", .off = OFF(epochs), .min = 0, .max = 100, .meta = "epochs", .def = "1",
     .valname = "N", .help = "epochs"},
    {.type = MMP_OPTION_FLAG, .name = "nesterov", .off = OFF(nesterov), .val = 1, .meta = "nesterov", .metaval = "1",
     .def = "0", .help = "Nesterov"},
    {.type = MMP_OPTION_FLAG, .name = "standardize", .off = OFF(std_), .val = 1, .meta = "standardize", .metaval = "1",
     .def = "0", .help = "standardize"},
    {.type = MMP_OPTION_FLAG, .name = "no-standardize", .off = OFF(std_), .val = 0, .meta = "standardize", .metaval = "0",
     .flags = MMP_OPTION_ALIAS, .help = "do not"},
    {.type = MMP_OPTION_STRBUF, .name = "feature", .off = OFF(feature), .min = 1, .max = 16, .meta = "feature",
     .def = "embedding", .valname = "NAME", .help = "input tensor"},
    MMP_O_END,
};

static void test_meta_table(void) {
    tcfg t, scratch;
    char err[256];
    CHECK(mmp_options_defaults(tab, &t, err, sizeof err) == 0);
    CHECK(isnan(t.lr) && t.epochs == 1 && t.nesterov == 0 && t.std_ == 0 && !strcmp(t.feature, "embedding"));
    char buf[64];
    CHECK(mmp_option_format(&tab[0], &t, buf, sizeof buf) == 1 && !strcmp(buf, "auto"));
    CHECK(mmp_option_set(&tab[0], &t, "0.001", "lr", err, sizeof err) == 0 && t.lr == 0.001);
    CHECK(mmp_option_format(&tab[0], &t, buf, sizeof buf) == 1 && !strcmp(buf, "0.001"));
    CHECK(mmp_option_set(&tab[0], &t, "0", "lr", err, sizeof err) == -1 && !strcmp(err, "value for lr out of range: 0 (must be > 0)"));
    CHECK(mmp_option_by_meta(tab, "standardize") == &tab[3]); /* not the alias */
    CHECK(mmp_option_by_name(tab, "no-standardize") == &tab[4]);
    CHECK(mmp_option_by_meta(tab, "nope") == NULL);
    /* a flag set from a string (metadata): 1/true/on, 0/false/off */
    CHECK(mmp_option_set(&tab[2], &t, "true", "nesterov", err, sizeof err) == 0 && t.nesterov == 1);
    CHECK(mmp_option_set(&tab[2], &t, "maybe", "nesterov", err, sizeof err) == -1 && !strcmp(err, "bad value for nesterov: 'maybe'"));
    CHECK(mmp_option_format(&tab[5], &t, buf, sizeof buf) == 1 && !strcmp(buf, "embedding"));

    /* the command line through an include: targets in scratch, values recorded in given */
    mmp_meta given;
    mmp_meta_init(&given);
    CHECK(mmp_options_defaults(tab, &scratch, err, sizeof err) == 0);
    mmp_option opts[] = {MMP_O_INCLUDE(tab, .base = &scratch, .record = &given), MMP_O_COMMON, MMP_O_END};
    char *argv[] = {"prog", "--epochs", "7", "--no-standardize", "in.mmp", "--nesterov", "--lr=0.5", "--standardize", NULL};
    char *pos[8];
    CHECK(mmp_cli_parse_r(8, argv, opts, usage, pos, stdout, err, sizeof err) == 1);
    CHECK(scratch.epochs == 7 && scratch.nesterov == 1 && scratch.lr == 0.5 && scratch.std_ == 1);
    CHECK(given.n == 4 && !strcmp(given.keys[0], "epochs") && !strcmp(given.vals[0], "7"));
    CHECK(!strcmp(given.keys[1], "standardize") && !strcmp(given.vals[1], "1")); /* replaced in place */
    CHECK(!strcmp(given.keys[2], "nesterov") && !strcmp(given.vals[2], "1"));
    CHECK(!strcmp(given.keys[3], "lr") && !strcmp(given.vals[3], "0.5"));
    char *argv2[] = {"prog", "--epochs", "700", NULL};
    CHECK(mmp_cli_parse_r(3, argv2, opts, usage, pos, stdout, err, sizeof err) == -1);
    CHECK(!strcmp(err, "value for --epochs out of range: 700 (allowed 0..100)"));
    mmp_meta_free(&given);
}

static void test_distance_and_die(void) {
    CHECK(mmp_cli_edit_distance("threads", "threads") == 0);
    CHECK(mmp_cli_edit_distance("thraeds", "threads") == 1); /* a transposition */
    CHECK(mmp_cli_edit_distance("kitten", "sitting") == 3);
    CHECK(mmp_cli_edit_distance("", "abc") == 3);
    /* the dying form: one "prog: " line, exit 1; a table declaring a name twice is refused */
    fflush(NULL);
    int fd[2];
    CHECK(pipe(fd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 2);
        mmp_set_progname("prog");
        int a = 0, b = 0;
        mmp_option opts[] = {MMP_O_FLAG("full", 0, &a, "x"), MMP_O_FLAG("fast", 'f', &b, "y"), MMP_O_END};
        char *argv[] = {"prog", "--fulll", NULL}, **pos;
        mmp_cli_parse(2, argv, opts, usage, &pos);
        _exit(0);
    }
    close(fd[1]);
    char buf[256] = "";
    ssize_t k = read(fd[0], buf, sizeof buf - 1);
    buf[k > 0 ? k : 0] = 0;
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    CHECKF(!strcmp(buf, "prog: unknown option --fulll (did you mean --full?)\n"), "got '%s'", buf);
    pid = fork();
    if (pid == 0) {
        int a = 0, b = 0;
        mmp_option opts[] = {MMP_O_FLAG("full", 0, &a, "x"), MMP_O_FLAG("full", 'f', &b, "y"), MMP_O_END};
        char *argv[] = {"prog", NULL}, **pos;
        freopen("/dev/null", "w", stderr);
        mmp_cli_parse(1, argv, opts, usage, &pos);
        _exit(0);
    }
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
}

int main(void) {
    test_syntax();
    test_errors();
    test_help();
    test_meta_table();
    test_distance_and_die();
    TEST_END();
}
