/* Command-line conventions shared by every mmp-* program. */
#include "mmp.h"

#include <errno.h>
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

void mmp_cli_init(const char *progname) {
    mmp_set_progname(progname);
    /* A closed pipe downstream ends us quietly, like cat or head. */
    signal(SIGPIPE, SIG_DFL);
}

int mmp_cli_common(int argc, char **argv, int *i, const char *usage) {
    const char *a = argv[*i];
    (void)argc;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
        fputs(usage, stdout);
        exit(0);
    }
    if (strcmp(a, "--version") == 0) {
        printf("%s (mmpipe) %s\n", mmp_progname(), MMP_VERSION);
        exit(0);
    }
    if (strcmp(a, "--progress") == 0) {
        g_progress = 1;
        return 1;
    }
    if (strcmp(a, "--no-progress") == 0) {
        g_progress = 0;
        return 1;
    }
    return 0;
}

int mmp_cli_opt(int argc, char **argv, int *i, const char *flag, const char **val) {
    const char *a = argv[*i];
    size_t n = strlen(flag);
    if (strncmp(a, flag, n) != 0) return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != 0) return 0;
    if (*i + 1 >= argc) mmp_die("option %s needs a value (see --help)", flag);
    *val = argv[++*i];
    return 1;
}

int mmp_cli_level(int argc, char **argv, int *i, int *level) {
    const char *v;
    if (!mmp_cli_opt(argc, argv, i, "--level", &v)) return 0;
    *level = (int)mmp_cli_int("--level", v, -7, 19);
    return 1;
}

int mmp_cli_flag(char **argv, int i, const char *flag) { return strcmp(argv[i], flag) == 0; }

long long mmp_cli_int(const char *flag, const char *s, long long min, long long max) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) mmp_die("bad value for %s: '%s' (an integer is expected)", flag, s);
    if (v < min || v > max) mmp_die("value for %s out of range: %lld (allowed %lld..%lld)", flag, v, min, max);
    return v;
}

int mmp_cli_int_list(const char *flag, const char *s, int *out, int max) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *e;
        long k = strtol(p, &e, 10);
        if (e == p || k < 1 || k > INT_MAX || n >= max || (*e && *e != ','))
            mmp_die("bad value for %s: '%s' (up to %d positive integers, comma-separated)", flag, s, max);
        out[n++] = (int)k;
        p = *e ? e + 1 : e;
    }
    return n;
}

double mmp_cli_double(const char *flag, const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) mmp_die("bad value for %s: '%s' (a number is expected)", flag, s);
    return v;
}

void mmp_cli_unknown(const char *arg) {
    if (arg[0] == '-' && arg[1]) mmp_die("unknown option %s (see --help)", arg);
    mmp_die("unexpected argument '%s' (see --help)", arg);
}

int mmp_progress_enabled(void) {
    if (g_progress < 0) g_progress = isatty(2) ? 1 : 0;
    return g_progress;
}

void mmp_progress(const char *fmt, ...) {
    if (!mmp_progress_enabled()) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\r%s: %s\033[K", mmp_progname(), buf);
    g_progress_shown = 1;
}

void mmp_progress_done(void) {
    if (g_progress_shown) fputc('\n', stderr);
    g_progress_shown = 0;
}

double mmp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
