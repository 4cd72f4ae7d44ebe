/* cpu.h: which x86-64 instruction sets the compute kernels may use, decided
 * once per process from CPUID (never from the CPU's model name).
 *
 * mmp_cpu_isa() is the widest level the CPU and the OS support:
 *   MMP_ISA_AVX2    AVX2 + FMA (x86-64-v3, the build's baseline)
 *   MMP_ISA_AVX512  AVX-512 F/BW/VL/DQ with the OS saving zmm state
 * The environment variable MMP_ISA=avx2|avx512 lowers it (a request above
 * what the CPU has is refused with one line on stderr and ignored), so both
 * paths can be tested, and compared, on one machine. Kernels built for one
 * level live in files named *_avx512.c (compiled with the flags of that level,
 * see the Makefile) and are called only when mmp_cpu_isa() says so.
 *
 * Results: every level is deterministic (same bits for any thread count and
 * batch composition); two levels may differ in the last bits (another
 * summation blocking), within the tolerances of the parity tests. */
#ifndef MMP_CPU_H
#define MMP_CPU_H

typedef enum { MMP_ISA_AVX2 = 1, MMP_ISA_AVX512 = 2 } mmp_isa;

mmp_isa mmp_cpu_isa(void);
const char *mmp_isa_name(mmp_isa isa);
/* The CPU's own features the kernels care about, as a space-separated list
 * ("avx2 fma avx512f avx512bw avx512vl avx512dq avx512_bf16 amx_tile ..."),
 * for benchmark headers and --version style reports. */
const char *mmp_cpu_features(void);
#endif
