/* nn/cpu_paths.c: which kernel runs each op of the CPU engine at the
 * instruction-set level of this process (nn/cpu.h, lib/cpu.h). */
#include "../cpu.h"
#include "nn/cpu.h"

const char *mmp_nn_cpu_paths(void) {
    if (mmp_cpu_isa() >= MMP_ISA_AVX512)
        return "level: avx512\n"
               "pointwise 1x1 (fused MobileNetV2 block, packed 1x1 convs): avx512 12x32 (24 zmm accumulators, 16-channel weight panels, masked column tails)\n"
               "depthwise 3x3: avx512 (16 channels a zmm, masked tail, up to 8 outputs a block)\n"
               "stem 3x3 s2 (packed, implicit im2col): avx512 12x32\n"
               "winograd F(4x4)/F(2x2) tile GEMMs: avx512 12x32; transforms: avx512 (16 channels a zmm)\n"
               "dense conv (im2col, weights packed at load, fused epilogue) and linear: mmp_sgemm avx512 12x32 (24x16 when N <= 16)\n"
               "pooling, epilogues: avx2\n";
    return "level: avx2\n"
           "pointwise 1x1 (fused MobileNetV2 block, packed 1x1 convs): avx2 6x16 (12 ymm accumulators, 16-channel weight panels)\n"
           "depthwise 3x3: avx2 (8 channels a ymm, scalar tail, up to 4 outputs a block)\n"
           "stem 3x3 s2 (packed, implicit im2col): avx2 6x16\n"
           "winograd F(4x4)/F(2x2) tile GEMMs: avx2 6x16; transforms: avx2 (8 channels)\n"
           "dense conv (im2col, weights packed at load, fused epilogue) and linear: mmp_sgemm avx2 6x16\n"
           "pooling, epilogues: avx2\n";
}
