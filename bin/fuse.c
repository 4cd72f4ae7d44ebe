/* mmp-fuse: one vector per record from an image embedding and a text embedding
 * (two streams joined by record id, or two fields of one stream). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fuse/check.h"
#include "fuse/fuse.h"
#include "fuse/run.h"
#include "mmp.h"

static const char usage[] =
    "usage: mmp-fuse [options] IMAGE.mmp TEXT.mmp > fused.mmp     (join by record id)\n"
    "       mmp-fuse [options] --fields embedding,text_embedding [IN.mmp|-] > fused.mmp\n"
    "Fuses two embeddings of each record into one tensor 'embedding' (f32 [D]); the\n"
    "record keeps its id, label and text, the input tensors are dropped.\n\n";

/* "A,B" into a and b (buffers of n) */
static int parse_pair(const char *v, char *a, char *b, size_t n) {
    const char *c = strchr(v, ',');
    if (!c || c == v || !c[1] || (size_t)(c - v) >= n || strlen(c + 1) >= n) return -1;
    memcpy(a, v, (size_t)(c - v));
    a[c - v] = 0;
    strcpy(b, c + 1);
    return 0;
}

typedef struct {
    char fa[64], fb[64], outf[64];
    float wa, wb;
    int single, have_weights;
    mmp_fuse_mode mode;
} fuseopts;

static int opt_fields(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    fuseopts *f = t;
    if (parse_pair(v, f->fa, f->fb, sizeof f->fa)) return mmp_errf(err, errlen, "bad value for --fields: %s (A,B)", v);
    f->single = 1;
    return 0;
}

static int opt_weights(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    fuseopts *f = t;
    char x[64], y[64];
    double a, b;
    if (parse_pair(v, x, y, sizeof x)) return mmp_errf(err, errlen, "bad value for --weights: %s (A,B)", v);
    if (mmp_cli_parse_double("--weights", x, &a, err, errlen) || mmp_cli_parse_double("--weights", y, &b, err, errlen)) return -1;
    f->wa = (float)a;
    f->wb = (float)b;
    f->have_weights = 1;
    return 0;
}

static int opt_mode(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    if (mmp_fuse_mode_parse(v, &((fuseopts *)t)->mode) < 0)
        return mmp_errf(err, errlen, "bad value for --mode: %s (concat, sum, weighted, gated, attention)", v);
    return 0;
}

static int opt_field(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    snprintf(t, 64, "%s", v);
    return 0;
}

int main(int argc, char **argv) {
    mmp_cli_init("mmp-fuse");
    const char *out = "-", *ckpt = NULL, *init = NULL, *dims = NULL;
    int l2 = 0, skip = 0, orth = 0, heads = 0, allow_mixed = 0, dtype = 0;
    long long window = 1024, project = 0, pseed = 0, seed = 0;
    fuseopts fo = {.fa = "embedding", .fb = "text_embedding", .outf = "embedding", .wa = 0.5f, .wb = 0.5f, .mode = MMP_FUSE_CONCAT};
    static const char *const missing_names[] = {"error", "skip", NULL}, *const init_names[] = {"gaussian", "orthogonal", NULL},
                             *const dtypes[] = {"f32", "f16", NULL};
    mmp_option opts[] = {
        MMP_O_CALL("mode", 0, opt_mode, &fo, "M", "concat (default) | sum | weighted | gated | attention"),
        MMP_O_CALL("weights", 0, opt_weights, &fo, "WA,WB", "weighted: h = WA a + WB b (default 0.5,0.5)"),
        MMP_O_FLAG("l2", 0, &l2, "L2-normalize each input first"),
        MMP_O_LLONG("project", 0, &project, 1, 1 << 16, "D", "fixed random projection of both inputs to D dims (after --l2)"),
        MMP_O_CHOICE("proj-init", 0, &orth, init_names, "gaussian N(0,1/D) (default) or orthonormal rows (D <= dims)"),
        MMP_O_LLONG("proj-seed", 0, &pseed, 0, 1LL << 62, "S", "seed of the projections (default 0; a uses S, b uses S+1)"),
        MMP_O_STRING("checkpoint", 0, &ckpt, "FILE",
                     "learned parameters (safetensors): gated / attention, or a learned\n"
                     "projection ('proj') for concat / sum / weighted; a checkpoint from\n"
                     "mmp-train-step must match the inputs' provenance"),
        MMP_O_FLAG("allow-mixed", 0, &allow_mixed, "fuse inputs of another provenance than the checkpoint's (warning)"),
        MMP_O_CALL("fields", 0, opt_fields, &fo, "A,B", "fuse fields A and B of one stream"),
        MMP_O_CALL("a-field", 0, opt_field, fo.fa, "NAME", "field of the first stream (default embedding)"),
        MMP_O_CALL("b-field", 0, opt_field, fo.fb, "NAME", "field of the second stream (default text_embedding)"),
        MMP_O_LLONG("window", 0, &window, 1, 1 << 24, "N", "join: unmatched records buffered per stream (default 1024)"),
        MMP_O_CHOICE("missing", 0, &skip, missing_names,
                     "a record without partner (or out of the window): error (default)\n"
                     "or skip it (counted in the trailer's skipped)"),
        MMP_O_STRBUF("out-field", 0, fo.outf, 1, "NAME", "output tensor name (default embedding)"),
        MMP_O_CHOICE("dtype", 0, &dtype, dtypes, "output dtype (default f32)"),
        MMP_O_STRING("init", 0, &init, "FILE",
                     "with --dims DA,DB,D [--heads H] [--seed S]: write a freshly initialized\n"
                     "checkpoint for --mode (gated, attention; concat/sum/weighted: a learned\n"
                     "projection) and exit"),
        MMP_O_STRING("dims", 0, &dims, "DA,DB,D", "--init: the input and output sizes"),
        MMP_O_INT("heads", 0, &heads, 1, 4096, "H", "--init --mode attention: attention heads"),
        MMP_O_LLONG("seed", 0, &seed, 0, 1LL << 62, "S", "--init: the seed of the weights (default 0)"),
        MMP_O_OUTPUT(&out, "output (default stdout)"),
        MMP_O_COMMON,
        MMP_O_END,
    };
    char **inputs;
    int ninputs = mmp_cli_parse(argc, argv, opts, usage, &inputs);
    if (ninputs > 2) mmp_die("at most two inputs (see --help)");
    mmp_fuse_mode mode = fo.mode;
    char err[1024];
    if (init) {
        int da, db, d;
        if (!dims || sscanf(dims, "%d,%d,%d", &da, &db, &d) != 3) mmp_die("--init needs --dims DA,DB,D");
        if (mode == MMP_FUSE_ATTENTION && !heads) mmp_die("--init --mode attention needs --heads");
        if (mmp_fuse_params_create(mode, da, db, d, heads, (uint64_t)seed, init, err, sizeof err)) mmp_die("%s", err);
        free(inputs);
        return 0;
    }
    int single = fo.single;
    if (ninputs == 2 && single) mmp_die("--fields fuses two fields of ONE stream; with two inputs use --a-field/--b-field");
    if (ninputs < 2) single = 1;
    if (!inputs[0]) inputs[0] = "-";
    mmp_fuse_opts o = {.mode = mode, .fa = fo.fa, .fb = fo.fb, .outf = fo.outf, .wa = fo.wa, .wb = fo.wb, .l2 = l2, .project = (int)project,
                       .orthogonal = orth, .proj_seed = (uint64_t)pseed, .checkpoint = ckpt, .odt = dtype ? MMP_F16 : MMP_F32,
                       .window = (int)window, .skip_missing = skip, .weights_given = fo.have_weights};
    if (mmp_fuse_opts_check(&o, err, sizeof err)) mmp_die("%s", err);

    mmp_reader *ra = mmp_reader_open_or_die(inputs[0]), *rb = single ? NULL : mmp_reader_open_or_die(inputs[1]);
    mmp_fuser f;
    if (mmp_fuser_open(&f, &o, mmp_reader_header(ra), mmp_reader_name(ra), rb ? mmp_reader_header(rb) : NULL, rb ? mmp_reader_name(rb) : NULL,
                       err, sizeof err))
        mmp_die("%s", err);
    for (int k = 0; ckpt && k < 2; k++) mmp_cli_check(mmp_fuser_check_provenance(&f, k, allow_mixed, err, sizeof err), err);
    if (!single) mmp_cli_check(mmp_check_same_classes(f.ha, f.hb, f.na, f.nb, err, sizeof err), err);
    mmp_header oh;
    mmp_fuser_header(&f, &oh);
    mmp_header_stamp(&oh, argc, argv);
    mmp_writer *w = mmp_writer_open(out, &oh, 0);
    uint64_t skipped;
    if (mmp_fuser_run(&f, ra, rb, w, &skipped, err, sizeof err)) mmp_die("%s", err);
    mmp_writer_close(w);
    if (skipped) mmp_warn("skipped %llu records without a partner", (unsigned long long)skipped);
    mmp_reader_close(ra);
    if (rb) mmp_reader_close(rb);
    mmp_fuser_free(&f);
    mmp_header_free(&oh);
    free(inputs);
    return 0;
}
