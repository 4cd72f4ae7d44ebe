/* cpu.c: instruction-set level from CPUID (see cpu.h). */
#include "cpu.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mmp_isa g_isa;
static char g_features[256];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void add(const char *name, int on) {
    if (!on) return;
    size_t n = strlen(g_features);
    snprintf(g_features + n, sizeof g_features - n, "%s%s", n ? " " : "", name);
}

static void detect(void) {
    __builtin_cpu_init();
    /* libgcc's __builtin_cpu_supports checks XGETBV: avx/avx512 features are
     * reported only when the OS saves the ymm/zmm state */
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    add("avx2", __builtin_cpu_supports("avx2"));
    add("fma", __builtin_cpu_supports("fma"));
    add("avx512f", __builtin_cpu_supports("avx512f"));
    add("avx512bw", __builtin_cpu_supports("avx512bw"));
    add("avx512vl", __builtin_cpu_supports("avx512vl"));
    add("avx512dq", __builtin_cpu_supports("avx512dq"));
    add("avx512_vnni", __builtin_cpu_supports("avx512vnni"));
    add("avx512_bf16", __builtin_cpu_supports("avx512bf16"));
    /* AMX straight from CPUID leaf 7 EDX (bits 24 tile, 22 bf16): not every
     * compiler's __builtin_cpu_supports knows these names (clang 14 does not).
     * Reported only: using AMX would also need the kernel's permission
     * (arch_prctl ARCH_REQ_XCOMP_PERM). */
    unsigned a, b, c, d;
    int l7 = __get_cpuid_count(7, 0, &a, &b, &c, &d);
    add("amx_tile", l7 && (d >> 24 & 1));
    add("amx_bf16", l7 && (d >> 22 & 1));
    g_isa = avx512 ? MMP_ISA_AVX512 : MMP_ISA_AVX2;
    const char *e = getenv("MMP_ISA");
    if (e && *e) {
        mmp_isa want = !strcmp(e, "avx2") ? MMP_ISA_AVX2 : !strcmp(e, "avx512") ? MMP_ISA_AVX512 : 0;
        if (!want)
            fprintf(stderr, "mmpipe: MMP_ISA=%s is not one of avx2, avx512; using %s\n", e, mmp_isa_name(g_isa));
        else if (want > g_isa)
            fprintf(stderr, "mmpipe: MMP_ISA=%s: this CPU has no %s; using %s\n", e, e, mmp_isa_name(g_isa));
        else
            g_isa = want;
    }
}

mmp_isa mmp_cpu_isa(void) {
    pthread_once(&g_once, detect);
    return g_isa;
}

const char *mmp_cpu_features(void) {
    pthread_once(&g_once, detect);
    return g_features;
}

const char *mmp_isa_name(mmp_isa isa) { return isa == MMP_ISA_AVX512 ? "avx512" : "avx2"; }
