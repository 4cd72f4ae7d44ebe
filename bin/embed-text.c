/* mmp-embed-text: text embeddings (BERT-family sentence encoders, e.g.
 * all-MiniLM-L6-v2, or CLIP text towers) for the records of an mmp stream,
 * or for plain lines (class prompts, prompt ensembles). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mmp.h"
#include "text/embed.h"
#include "tx/peft.h"

static const char usage[] =
    "usage: mmp-embed-text --model DIR|FILE.safetensors [options] [IN.mmp|-] > out.mmp\n"
    "       mmp-embed-text --model DIR --lines [--template 'a photo of a {}' ...] [FILE|-] > prompts.mmp\n"
    "Embeds each record's text with\n"
    "  - a BERT-family sentence encoder (sentence-transformers layout: model.safetensors,\n"
    "    config.json, vocab.txt, sentence_bert_config.json, modules.json): WordPiece tokens\n"
    "    -> BertModel -> mean pooling over the tokens -> optional L2 normalization;\n"
    "  - or a CLIP model's text tower (HF CLIPModel / CLIPTextModel(WithProjection) with\n"
    "    vocab.json + merges.txt, or open_clip weights with open_clip_config.json and\n"
    "    bpe_simple_vocab_16e6.txt.gz beside them): CLIP's BPE tokens (open_clip's tokenize)\n"
    "    -> text tower -> end-of-text token -> projection (get_text_features / encode_text;\n"
    "    --pooled: before it) -> L2 normalization with --normalize.\n"
    "Adds the tensor 'text_embedding' [dim]; every other field, the id, label and text\n"
    "pass through unchanged. Several --template with --lines: a prompt ensemble, one\n"
    "record per line and template (id LINE#K, K = the template's 0-based index, label =\n"
    "the line's number); mmp-eval --prompts averages them per class.\n\n";

typedef struct {
    const char *names[MMP_MAX_FIELDS];
    int n;
} droplist;

/* --template T: repeatable (a prompt ensemble) */
typedef struct {
    const char **t;
    int n;
} tpllist;

static int opt_template(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    tpllist *l = t;
    l->t = mmp_xrealloc(l->t, (size_t)(l->n + 1) * sizeof *l->t);
    l->t[l->n++] = v;
    return 0;
}

/* --drop NAME, --drop-image: repeatable (at most MMP_MAX_FIELDS kept) */
static int opt_drop(const mmp_option *o, void *t, const char *v, char *err, size_t errlen) {
    droplist *d = t;
    if (d->n < MMP_MAX_FIELDS) d->names[d->n++] = v;
    return 0;
}

int main(int argc, char **argv) {
    mmp_cli_init("mmp-embed-text");
    const char *adapter = NULL;
    const char *model = NULL, *out = "-", *field = "text_embedding", *tokenizer = NULL;
    droplist dl = {.n = 0};
    tpllist tl_opt = {NULL, 0};
    int lines = 0, normalize = -1, heads = 0, pooled = 0, missing_skip = 0, utf8i = 0, dtype_i = 0, drop_image = 0, threads = 1;
    long long max_length = 0, batch = 32;
    static const char *const dtypes[] = {"f32", "f16", NULL}, *const missing_names[] = {"error", "skip", NULL},
                             *const utf8_names[] = {"error", "replace", NULL};
    mmp_option opts[] = {
        MMP_O_STRING("adapter", 0, &adapter, "DIR",
                     "a PEFT LoRA adapter folder (adapter_config.json +\n"
                     "adapter_model.safetensors) for --model, run unmerged;\n"
                     "its SHA-256 joins the provenance (docs/finetune.md)"),
        MMP_O_STRING("model", 0, &model, "PATH",
                     "folder or .safetensors file: a BERT-family sentence encoder\n"
                     "(model.safetensors + vocab.txt + configs) or a CLIP checkpoint"),
        MMP_O_FLAG("lines", 0, &lines,
                   "input is plain UTF-8 text, one item a line: id = the line,\n"
                   "label = line number (0-based), classes = the lines"),
        MMP_O_CALL("template", 0, opt_template, &tl_opt, "T",
                   "with --lines: text = T with '{}' replaced by the line;\n"
                   "repeated: a prompt ensemble (one record per line and template)"),
        MMP_O_LLONG("max-length", 0, &max_length, 2, 1 << 20, "N",
                    "tokens incl. [CLS]/[SEP] (default: the model's max_seq_length,\n"
                    "else 256); CLIP: incl. start/end of text, at most the model's\n"
                    "context (default: the context, 77 unless the model's is smaller)"),
        MMP_O_SET("normalize", 0, &normalize, 1,
                  "L2-normalize (default: on when modules.json has Normalize;\n"
                  "CLIP: off, as get_text_features)"),
        MMP_O_SET("no-normalize", 0, &normalize, 0, "do not"),
        MMP_O_INT("heads", 0, &heads, 1, 4096, "N", "BERT: attention heads when there is no config.json"),
        MMP_O_STRING("tokenizer", 0, &tokenizer, "PATH",
                     "CLIP: the vocabulary (bpe_simple_vocab_16e6.txt.gz, vocab.json\n"
                     "or merges.txt, or their folder; default: beside the weights)"),
        MMP_O_FLAG("pooled", 0, &pooled, "CLIP: the pooled output before the text projection"),
        MMP_O_LLONG("batch", 0, &batch, 1, 65536, "N", "texts per forward pass (default 32)"),
        MMP_O_THREADS(&threads, "worker threads (default 1); output is bit-identical for any N"),
        MMP_O_CHOICE("dtype", 0, &dtype_i, dtypes, "output dtype (default f32)"),
        MMP_O_STRING("field", 0, &field, "NAME", "output field name (default text_embedding)"),
        MMP_O_FLAG("drop-image", 0, &drop_image, "drop the 'image' field (same as --drop image)"),
        MMP_O_CALL("drop", 0, opt_drop, &dl, "NAME", "drop this field (repeatable)"),
        MMP_O_CHOICE("missing-text", 0, &missing_skip, missing_names, "records without text: error (default) or skip (counted)"),
        MMP_O_CHOICE("utf8", 0, &utf8i, utf8_names, "invalid UTF-8: error (default) or U+FFFD (BERT's cleaning drops it)"),
        MMP_O_OUTPUT(&out, "output (default stdout)"),
        MMP_O_COMMON,
        MMP_O_END,
    };
    const char *in = mmp_cli_parse_input(argc, argv, opts, usage);
    if (drop_image && dl.n < MMP_MAX_FIELDS) dl.names[dl.n++] = "image";
    if (!model) mmp_die("--model is required (see --help)");
    if (tl_opt.n && !lines) mmp_die("--template needs --lines");
    if (strlen(field) >= 64) mmp_die("--field name too long");
    mmp_text_encoder tm;
    char err[1024];
    mmp_text_encoder_opts eo = {.heads = heads, .tokenizer = tokenizer, .pooled = pooled};
    if (mmp_text_encoder_load(&tm, model, &eo, err, sizeof err) < 0) mmp_die("%s", err);
    mmp_lora *lora = adapter ? mmp_text_encoder_adapter(&tm, adapter, err, sizeof err) : NULL;
    if (adapter && !lora) mmp_die("%s", err);
    mmp_text_embed_opts o = {.model = &tm, .max_length = max_length > 0 ? (int)max_length : tm.max_length,
                             .normalize = normalize < 0 ? tm.normalize : normalize,
                             .utf8 = utf8i ? MMP_UTF8_REPLACE : MMP_UTF8_ERROR, .batch = (int)batch,
                             .threads = threads, .dtype = dtype_i ? MMP_F16 : MMP_F32, .field = field,
                             .drops = dl.names, .ndrops = dl.n, .missing_skip = missing_skip};
    if (o.max_length > tm.context) {
        if (tm.clip) mmp_die("--max-length %d > the CLIP model's context of %d tokens", o.max_length, tm.context);
        mmp_die("--max-length %d > the model's %d positions", o.max_length, tm.context);
    }

    mmp_reader *rd = NULL;
    mmp_text_lines tl = {0};
    if (lines && mmp_text_lines_read(&tl, in, tl_opt.t, tl_opt.n, o.utf8, err, sizeof err)) mmp_die("%s", err);
    if (!lines) rd = mmp_reader_open_or_die(in);
    mmp_header oh;
    mmp_text_embed_header(&o, rd ? mmp_reader_header(rd) : NULL, &tl, tl_opt.t, tl_opt.n, &oh);
    if (lora) mmp_lora_stamp(lora, &oh, "text_provenance");
    mmp_header_stamp(&oh, argc, argv);
    mmp_writer *w = mmp_writer_open(out, &oh, 0);
    const char *inname = strcmp(in, "-") ? in : "stdin";
    if (mmp_text_embed_stream(&o, rd, lines ? &tl : NULL, inname, w, err, sizeof err)) mmp_die("%s", err);
    mmp_writer_close(w);
    if (rd) mmp_reader_close(rd);
    mmp_text_lines_free(&tl);
    mmp_header_free(&oh);
    mmp_text_encoder_free(&tm);
    mmp_lora_free(lora);
    free(tl_opt.t);
    return 0;
}
