/* Minimal test helpers for C tests: each test is a program; exit 0 = pass,
 * 77 = skip (print why as the last line), anything else = fail. */
#ifndef MMP_TESTLIB_H
#define MMP_TESTLIB_H
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* T_ASAN: defined when built with AddressSanitizer (gcc or clang) */
#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif

static int t_failures = 0;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); t_failures++; } } while (0)
#define CHECKF(cond, ...) do { if (!(cond)) { fprintf(stderr, "%s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); t_failures++; } } while (0)
#define SKIP(...) do { printf(__VA_ARGS__); printf("\n"); exit(77); } while (0)
#define TEST_END() do { if (t_failures) { fprintf(stderr, "%d check(s) failed\n", t_failures); return 1; } printf("ok\n"); return 0; } while (0)

/* max |a-b| / (atol + rtol*|b|) over n elements: <= 1 means within tolerance. */
static inline double t_maxrel(const float *a, const float *b, size_t n, double rtol, double atol, size_t *where) {
    double worst = 0; size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (atol + rtol * fabs((double)b[i]));
        if (d > worst || d != d) { worst = d != d ? INFINITY : d; w = i; }
    }
    if (where) *where = w;
    return worst;
}
/* Whole file into memory, NUL-terminated (n excludes the NUL); NULL when unreadable. */
static inline unsigned char *t_slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0, k;
    unsigned char *b = malloc(cap + 1);
    while (b && (k = fread(b + len, 1, cap - len, f)) > 0) {
        len += k;
        if (len == cap) { unsigned char *nb = realloc(b, 2 * cap + 1); if (!nb) { free(b); b = NULL; break; } b = nb; cap *= 2; }
    }
    fclose(f);
    if (!b) return NULL;
    b[len] = 0;
    *n = len;
    return b;
}
/* Path of the shared data folder, or NULL when absent. */
static inline const char *t_shared(void) {
    const char *s = getenv("MMP_SHARED");
    static char buf[4096];
    if (!s) s = "../shared";
    snprintf(buf, sizeof buf, "%s/README.md", s);
    FILE *f = fopen(buf, "r");
    if (!f) return NULL;
    fclose(f);
    return s;
}
/* Path under the repository root (MMP_ROOT, else "."). */
static inline const char *t_root_path(const char *rel) {
    static char buf[4][4096]; static int k = 0;
    const char *r = getenv("MMP_ROOT");
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", r ? r : ".", rel);
    return buf[k];
}
/* system() of a printf-formatted command line: its exit status, 128 when it
 * did not exit normally. */
static inline int t_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int t_sh(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}
#endif
