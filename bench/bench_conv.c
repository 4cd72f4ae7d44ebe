/* bench/bench_conv.c: the convolutions of a ResNet, one by one, through
 * mmpipe's CPU kernels (mmp_nn_ops_cpu.conv2d with the weights prepared as
 * nn/model.c prepares them: Winograd for 3x3 stride-1, pre-packed GEMM panels
 * otherwise) and through oneDNN's convolution primitive (NHWC activations as
 * the engine keeps them, weights in the layout oneDNN picks (format "any",
 * reordered once outside the timing), bias, ReLU as a post-op), in one run.
 * Built and run by bench/bench_conv.sh.
 *
 *   bench_conv [resnet50|resnet18] SIZE G [REPS]
 *
 * SIZE: input image size; G: images per call (the engine's micro-batch at
 * that size is mmp_nn_micro_batch: 2 at 224, 8 at 96). oneDNN runs on one
 * thread (OMP_NUM_THREADS=1, set by the script), like one engine worker.
 * Prints one line per distinct shape: count in the model, ms per call (best
 * of REPS) for each side, GFLOP/s (2 x multiply-adds of the direct
 * convolution), and the model-weighted totals. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>

#include "cpu.h"
#include "mmp.h"
#include "nn/cpu.h"
#include "nn/gemm.h"
#include "nn/nn.h"
#include "nn/ops.h"
#include "nn/winograd.h"

typedef struct {
    int cin, cout, k, stride, h, w; /* input map h x w */
    int count, relu, wino_map;      /* wino_map: the block's output map (picks the tile size as the model does) */
} shape;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); /* the thread's CPU time: time descheduled on a shared machine does not count */
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define CHK(x)                                                                                   \
    do {                                                                                         \
        dnnl_status_t s_ = (x);                                                                  \
        if (s_ != dnnl_success) mmp_die("oneDNN: %s failed (status %d)", #x, (int)s_);          \
    } while (0)

static int nsh;
static shape sh[64];

static void add(int cin, int cout, int k, int stride, int h, int w, int relu) {
    for (int i = 0; i < nsh; i++) {
        shape *s = &sh[i];
        if (s->cin == cin && s->cout == cout && s->k == k && s->stride == stride && s->h == h && s->w == w &&
            s->relu == relu) {
            s->count++;
            return;
        }
    }
    if (nsh == 64) mmp_die("too many shapes");
    sh[nsh++] = (shape){cin, cout, k, stride, h, w, 1, relu, 0};
}

/* torchvision ResNet-50 / ResNet-18 convolutions at image size S */
static void resnet(int bottleneck, int S) {
    int h = mmp_nn_conv_out(S, 7, 2, 3);
    add(3, 64, 7, 2, S, S, 1);
    h = mmp_nn_conv_out(h, 3, 2, 1); /* max pool */
    static const int blocks50[4] = {3, 4, 6, 3}, blocks18[4] = {2, 2, 2, 2};
    int cin = 64;
    for (int L = 0; L < 4; L++) {
        int width = 64 << L, cout = bottleneck ? width * 4 : width;
        for (int b = 0; b < (bottleneck ? blocks50 : blocks18)[L]; b++) {
            int s = (b == 0 && L > 0) ? 2 : 1, ho = mmp_nn_conv_out(h, 3, s, 1);
            if (bottleneck) {
                add(cin, width, 1, 1, h, h, 1);
                add(width, width, 3, s, h, h, 1);
                add(width, cout, 1, 1, ho, ho, 1); /* + residual, ReLU */
            } else {
                add(cin, width, 3, s, h, h, 1);
                add(width, width, 3, 1, ho, ho, 1);
            }
            if (b == 0 && (s != 1 || cin != cout)) add(cin, cout, 1, s, h, h, 0);
            cin = cout;
            h = ho;
        }
    }
}

static void fill(float *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = ((seed >> 9) * (1.0f / 8388608.0f) - 0.5f) * 0.2f;
    }
}

int main(int argc, char **argv) {
    mmp_set_progname("bench_conv");
    mmp_nn_cpu_init();
    if (argc < 4) mmp_die("usage: bench_conv resnet50|resnet18 SIZE G [REPS]");
    int S = atoi(argv[2]), G = atoi(argv[3]), reps = argc > 4 ? atoi(argv[4]) : 5;
    if (S < 32 || G < 1 || reps < 1) mmp_die("bad SIZE/G/REPS");
    resnet(!strcmp(argv[1], "resnet50"), S);

    dnnl_engine_t eng;
    dnnl_stream_t strm;
    CHK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CHK(dnnl_stream_create(&strm, eng, dnnl_stream_default_flags));
    printf("isa %s | oneDNN %d.%d.%d\n", mmp_isa_name(mmp_cpu_isa()), dnnl_version()->major, dnnl_version()->minor,
           dnnl_version()->patch);
    printf("%-24s %5s %10s %10s %8s %8s %6s %s\n", "conv (cin>cout kxk/s @h)", "count", "mmp ms", "dnnl ms", "mmp GF/s",
           "dnnl GF/s", "ratio", "dnnl impl");
    double tot_m = 0, tot_d = 0, tot_b = 0, flops_all = 0;
    for (int i = 0; i < nsh; i++) {
        shape *s = &sh[i];
        int pad = s->k / 2, ho = mmp_nn_conv_out(s->h, s->k, s->stride, pad), wo = mmp_nn_conv_out(s->w, s->k, s->stride, pad);
        size_t nin = (size_t)G * s->h * s->w * s->cin, nout = (size_t)G * ho * wo * s->cout,
               nw = (size_t)s->cout * s->k * s->k * s->cin;
        float *in = mmp_xmalloc(nin * 4), *out = mmp_xmalloc(nout * 4), *out2 = mmp_xmalloc(nout * 4);
        float *w = mmp_xmalloc(nw * 4), *b = mmp_xmalloc((size_t)s->cout * 4);
        fill(in, nin, 1 + i), fill(w, nw, 100 + i), fill(b, (size_t)s->cout, 200 + i);
        double flops = 2.0 * G * ho * wo * (double)s->cout * s->k * s->k * s->cin;
        /* mmpipe: weights [cout][k][k][cin], prepared as nn/model.c does */
        mmp_nn_conv c = {.cin = s->cin, .cout = s->cout, .k = s->k, .stride = s->stride, .pad = pad,
                         .act = s->relu ? MMP_NN_ACT_RELU : MMP_NN_ACT_NONE, .w = w, .b = b};
        int wm = mmp_nn_wino_eligible(&c) ? mmp_nn_wino_pick_m(ho, wo) : 0;
        if (wm) mmp_nn_wino_prepare(&c, wm);
        if (!c.wino) c.gemm = mmp_sgemm_pack_b(MMP_GEMM_T, c.cout, s->k * s->k * s->cin, w, s->k * s->k * s->cin);
        size_t ns = mmp_nn_ops_cpu.conv2d_scratch(&c, G, s->h, s->w);
        float *scr = ns ? mmp_xmalloc(ns * 4) : NULL;
        /* oneDNN: src/dst NHWC, weights OIHW given, "any" for the primitive */
        dnnl_memory_desc_t src_md, dst_md, w_md, w_any, b_md;
        dnnl_dims_t sd = {G, s->cin, s->h, s->w}, dd = {G, s->cout, ho, wo}, wd = {s->cout, s->cin, s->k, s->k},
                    bd = {s->cout}, st = {s->stride, s->stride}, pl = {pad, pad};
        dnnl_dims_t pr = {(ho - 1) * s->stride + s->k - s->h - pad, (wo - 1) * s->stride + s->k - s->w - pad};
        CHK(dnnl_memory_desc_init_by_tag(&src_md, 4, sd, dnnl_f32, dnnl_nhwc));
        CHK(dnnl_memory_desc_init_by_tag(&dst_md, 4, dd, dnnl_f32, dnnl_nhwc));
        CHK(dnnl_memory_desc_init_by_tag(&w_md, 4, wd, dnnl_f32, dnnl_oihw));
        CHK(dnnl_memory_desc_init_by_tag(&w_any, 4, wd, dnnl_f32, dnnl_format_tag_any));
        CHK(dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_x));
        dnnl_convolution_desc_t cd;
        CHK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &src_md, &w_any,
                                               &b_md, &dst_md, st, pl, pr));
        dnnl_primitive_attr_t attr;
        dnnl_post_ops_t po;
        CHK(dnnl_primitive_attr_create(&attr));
        CHK(dnnl_post_ops_create(&po));
        if (s->relu) CHK(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.f, 0.f));
        CHK(dnnl_primitive_attr_set_post_ops(attr, po));
        dnnl_primitive_desc_t pd;
        CHK(dnnl_primitive_desc_create(&pd, &cd, attr, eng, NULL));
        const char *impl = "?";
        CHK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
        const dnnl_memory_desc_t *wq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        /* weights OIHW from ours [O][k][k][I], reordered into the primitive's layout */
        float *woihw = mmp_xmalloc(nw * 4);
        for (int o = 0; o < s->cout; o++)
            for (int y = 0; y < s->k; y++)
                for (int x = 0; x < s->k; x++)
                    for (int ci = 0; ci < s->cin; ci++)
                        woihw[(((size_t)o * s->cin + ci) * s->k + y) * s->k + x] =
                            w[(((size_t)o * s->k + y) * s->k + x) * s->cin + ci];
        dnnl_memory_t m_src, m_dst, m_wu, m_w, m_b;
        CHK(dnnl_memory_create(&m_src, &src_md, eng, in));
        CHK(dnnl_memory_create(&m_dst, &dst_md, eng, out2));
        CHK(dnnl_memory_create(&m_wu, &w_md, eng, woihw));
        CHK(dnnl_memory_create(&m_w, wq, eng, DNNL_MEMORY_ALLOCATE));
        CHK(dnnl_memory_create(&m_b, &b_md, eng, b));
        dnnl_primitive_desc_t rpd;
        dnnl_primitive_t reo, conv;
        CHK(dnnl_reorder_primitive_desc_create(&rpd, &w_md, eng, wq, eng, NULL));
        CHK(dnnl_primitive_create(&reo, rpd));
        dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, m_wu}, {DNNL_ARG_TO, m_w}};
        CHK(dnnl_primitive_execute(reo, strm, 2, ra));
        CHK(dnnl_stream_wait(strm));
        CHK(dnnl_primitive_create(&conv, pd));
        dnnl_exec_arg_t ca[4] = {{DNNL_ARG_SRC, m_src}, {DNNL_ARG_WEIGHTS, m_w}, {DNNL_ARG_BIAS, m_b},
                                 {DNNL_ARG_DST, m_dst}};
        double bm = 1e30, bd_ = 1e30;
        for (int r = 0; r < reps + 1; r++) { /* interleaved: both sides see the same machine load */
            double t0 = now();
            mmp_nn_ops_cpu.conv2d(&c, in, G, s->h, s->w, NULL, out, scr);
            double t1 = now();
            CHK(dnnl_primitive_execute(conv, strm, 4, ca));
            CHK(dnnl_stream_wait(strm));
            double t2 = now();
            if (r > 0) { /* the first call of each warms up */
                if (t1 - t0 < bm) bm = t1 - t0;
                if (t2 - t1 < bd_) bd_ = t2 - t1;
            }
        }
        double maxd = 0, maxv = 0;
        for (size_t j = 0; j < nout; j++) {
            double d = fabs((double)out[j] - out2[j]);
            if (d > maxd) maxd = d;
            if (fabs(out2[j]) > maxv) maxv = fabs(out2[j]);
        }
        if (maxd > 1e-3 * (maxv > 1 ? maxv : 1)) mmp_die("outputs differ: max |diff| %g (max |y| %g)", maxd, maxv);
        char name[64];
        snprintf(name, sizeof name, "%d>%d %dx%d/%d @%d%s", s->cin, s->cout, s->k, s->k, s->stride, s->h,
                 c.wino ? (c.wino_m == 4 ? " F4" : " F2") : "");
        printf("%-24s %5d %10.3f %10.3f %8.1f %8.1f %6.2f %s\n", name, s->count, bm * 1e3, bd_ * 1e3, flops / bm / 1e9,
               flops / bd_ / 1e9, bd_ / bm, impl);
        tot_m += s->count * bm, tot_d += s->count * bd_, tot_b += s->count * (bm < bd_ ? bm : bd_), flops_all += s->count * flops;
        dnnl_primitive_destroy(conv), dnnl_primitive_destroy(reo), dnnl_primitive_desc_destroy(rpd);
        dnnl_primitive_desc_destroy(pd), dnnl_post_ops_destroy(po), dnnl_primitive_attr_destroy(attr);
        dnnl_memory_destroy(m_src), dnnl_memory_destroy(m_dst), dnnl_memory_destroy(m_wu), dnnl_memory_destroy(m_w),
            dnnl_memory_destroy(m_b);
        free(in), free(out), free(out2), free(w), free(b), free(scr), free(woihw);
        free(c.wino);
        if (c.gemm) mmp_sgemm_pack_free(c.gemm);
    }
    printf("all convs of %s @%d, G=%d: mmp %.2f ms (%.1f GFLOP/s), oneDNN %.2f ms (%.1f GFLOP/s), "
           "the faster of the two per shape %.2f ms; conv-only img/s: mmp %.1f, oneDNN %.1f, best-of-both %.1f "
           "(%+.1f%% over mmp)\n",
           argv[1], S, G, tot_m * 1e3, flops_all / tot_m / 1e9, tot_d * 1e3, flops_all / tot_d / 1e9, tot_b * 1e3,
           G / tot_m, G / tot_d, G / tot_b, (tot_m / tot_b - 1) * 100);
    dnnl_stream_destroy(strm);
    dnnl_engine_destroy(eng);
    return 0;
}
