/* lib/cpu.c: the instruction-set level agrees with the kernel's view of the
 * CPU (/proc/cpuinfo flags), and MMP_ISA can lower it but never raise it. */
#include "cpu.h"
#include "testlib.h"

/* 1 if /proc/cpuinfo's first "flags" line lists every name, 0 if not, -1 unreadable */
static int cpuinfo_has(const char *const *names) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return -1;
    static char line[1 << 14];
    int found = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "flags", 5)) {
            found = 1;
            for (int i = 0; names[i]; i++) {
                char pat[64];
                snprintf(pat, sizeof pat, " %s ", names[i]);
                size_t n = strlen(line);
                if (n && line[n - 1] == '\n') line[n - 1] = ' ';
                if (!strstr(line, pat)) found = 0;
            }
            break;
        }
    fclose(f);
    return found;
}

int main(int argc, char **argv) {
    if (argc == 2) { /* child: print the level chosen under the caller's MMP_ISA */
        printf("%s\n", mmp_isa_name(mmp_cpu_isa()));
        return 0;
    }
    static const char *const avx512[] = {"avx512f", "avx512bw", "avx512vl", "avx512dq", NULL};
    static const char *const avx2[] = {"avx2", "fma", NULL};
    int h512 = cpuinfo_has(avx512), h2 = cpuinfo_has(avx2);
    mmp_isa isa = mmp_cpu_isa();
    printf("features: %s\nlevel: %s\n", mmp_cpu_features(), mmp_isa_name(isa));
    if (h2 < 0) SKIP("no /proc/cpuinfo flags");
    CHECK(h2 == 1); /* the build's baseline is x86-64-v3 */
    if (!getenv("MMP_ISA")) CHECKF((isa == MMP_ISA_AVX512) == (h512 == 1), "level %s, cpuinfo avx512: %d", mmp_isa_name(isa), h512);
    CHECK(strstr(mmp_cpu_features(), "avx2") != NULL);
    CHECK(mmp_cpu_isa() == isa); /* decided once */
    /* MMP_ISA in a child process */
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "MMP_ISA=avx2 %s child 2>&1 | grep -qx avx2", argv[0]);
    CHECK(t_sh("%s", cmd) == 0);
    snprintf(cmd, sizeof cmd, "MMP_ISA=avx512 %s child 2>%s/isa.err | grep -qx %s", argv[0],
             getenv("MMP_TMP") ? getenv("MMP_TMP") : "/tmp", h512 == 1 ? "avx512" : "avx2");
    CHECK(t_sh("%s", cmd) == 0);
    snprintf(cmd, sizeof cmd, "MMP_ISA=sse9 %s child 2>&1 | grep -q 'not one of avx2, avx512'", argv[0]);
    CHECK(t_sh("%s", cmd) == 0);
    TEST_END();
}
