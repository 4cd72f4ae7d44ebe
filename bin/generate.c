/* mmp-generate: text from a decoder language model for the records of an
 * mmp stream: greedy, beam search or sampling (lib/gen/gen.h). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gen/gen.h"
#include "mmp.h"
#include "text/bpe.h"
#include "text/wordpiece.h"
#include "train/caption.h"
#include "tx/gpt2.h"

static const char usage[] =
    "usage: mmp-generate --model DIR|CAPTIONER.safetensors [options] [IN.mmp|-] > out.mmp\n"
    "Generates text for each record with a GPT-2 decoder:\n"
    "  - a Hugging Face GPT2LMHeadModel folder (model.safetensors, config.json, vocab.json,\n"
    "    merges.txt): the record's \"text\" is the prompt (an empty text: the BOS token\n"
    "    alone, as generate() without input);\n"
    "  - a captioner checkpoint (mmp-train-step --head caption): the record's image\n"
    "    feature (the field it was trained on) mapped to the prefix embeddings the\n"
    "    caption follows (generate(inputs_embeds=prefix)); the record's text is not used.\n"
    "Greedy search (default), beam search (--num-beams N) or sampling (--do-sample), as\n"
    "transformers' generate() does them; records are decoded --batch at a time, each\n"
    "one's result independent of the batch and of -j. Sampling draws from a stream\n"
    "keyed by (--seed, the record's id): the same text for the same record whatever\n"
    "the batch or thread count (not torch's random numbers).\n"
    "Writes each record with \"text\" = the generated text (without the EOS token;\n"
    "--full-text: the prompt followed by it) and the f32 scalar tensors \"logprob\"\n"
    "(the sum of the generated tokens' log-probabilities, EOS included) and \"score\"\n"
    "(beam search: logprob / length**length_penalty, generate()'s sequences_scores,\n"
    "the length counting the prompt; else logprob). id, label, strings and every\n"
    "other field pass through.\n\n";

typedef struct {
    mmp_gpt2 *dec;      /* the decoder (the captioner's when cap) */
    mmp_bpe *tok;       /* GPT-2 folder: its tokenizer */
    mmp_captioner *cap; /* a captioner checkpoint (train/caption.h) */
    const char *feature;
    int64_t fsize;      /* the feature's values */
    int K, C;           /* prefix length, width */
    int eos, bos;
} model;

/* The text of ids; a NUL byte (a record's text is a C string) becomes U+FFFD. */
static char *decode_text(const model *M, const int32_t *ids, int n, char *err, size_t errlen) {
    if (M->cap) return mmp_captioner_decode(M->cap, ids, n);
    size_t len = 0, nul = 0;
    char *s = mmp_bpe_decode(M->tok, ids, n, &len, err, errlen);
    if (!s) return NULL;
    for (size_t i = 0; i < len; i++) nul += s[i] == 0;
    if (!nul) return s;
    char *t = mmp_xmalloc(len + 2 * nul + 1), *q = t;
    for (size_t i = 0; i < len; i++) {
        if (s[i]) {
            *q++ = s[i];
        } else {
            memcpy(q, "\xEF\xBF\xBD", 3);
            q += 3;
        }
    }
    *q = 0;
    free(s);
    return t;
}

typedef struct {
    int32_t *ids;
    int n, cap;
} idbuf;

int main(int argc, char **argv) {
    mmp_cli_init("mmp-generate");
    const char *model_path = NULL, *tokenizer = NULL, *out = "-";
    int beams = 1, ngram = 0, max_new = 20, min_new = 0, early = 0, sample = 0, top_k = 50, threads = 1, batch = 16,
        full_text = 0, stats = 0, want_ids = 0;
    double lp = 1.0, top_p = 1.0, temperature = 1.0;
    long long seed = 0;
    mmp_option opts[] = {
        MMP_O_STRING("model", 0, &model_path, "PATH",
                     "a GPT-2 folder (GPT2LMHeadModel safetensors + config.json + the\n"
                     "tokenizer) or a captioner checkpoint (mmp-train-step --head caption)"),
        MMP_O_STRING("tokenizer", 0, &tokenizer, "PATH",
                     "GPT-2 BPE vocab.json + merges.txt (or their folder; default: the model's folder)"),
        MMP_O_INT("max-new-tokens", 0, &max_new, 1, 1 << 20, "N", "tokens generated at most (default 20)"),
        MMP_O_INT("min-new-tokens", 0, &min_new, 0, 1 << 20, "N", "EOS banned before N tokens (default 0)"),
        MMP_O_INT("num-beams", 0, &beams, 1, 256, "N", "beam search with N beams (default 1: greedy)"),
        MMP_O_DOUBLE("length-penalty", 0, &lp, -100, 100, "X",
                     "beam: hypotheses scored sum(log p) / length**X (default 1)"),
        MMP_O_FLAG("early-stopping", 0, &early, "beam: stop a record at its first N finished hypotheses"),
        MMP_O_INT("no-repeat-ngram-size", 0, &ngram, 0, 1 << 20, "N", "never repeat an N-gram (prompt included; 0: off)"),
        MMP_O_FLAG("do-sample", 0, &sample, "sample (temperature, top-k, top-p) instead of searching"),
        MMP_O_INT("top-k", 0, &top_k, 0, 1 << 30, "K", "sample among the K likeliest tokens (default 50; 0: off)"),
        MMP_O_DOUBLE("top-p", 0, &top_p, 0, 1, "P",
                     "sample among the likeliest tokens of total probability P (default 1: off)",
                     .flags = MMP_OPTION_OPEN_MIN),
        MMP_O_DOUBLE("temperature", 0, &temperature, 0, 1e6, "T", "divide the logits by T (default 1)",
                     .flags = MMP_OPTION_OPEN_MIN),
        MMP_O_LLONG("seed", 0, &seed, 0, INT64_MAX, "S", "sampling seed (default 0); streams per (S, record id)"),
        MMP_O_INT("batch", 0, &batch, 1, 4096, "N", "records decoded together (default 16)"),
        MMP_O_THREADS(&threads, "decoder threads (default 1); output identical for any N"),
        MMP_O_FLAG("full-text", 0, &full_text, "write the prompt and the generated text"),
        MMP_O_FLAG("ids", 0, &want_ids, "also write the generated token ids (EOS included) as the i32 tensor \"ids\""),
        MMP_O_FLAG("stats", 0, &stats,
                   "print to stderr: records, tokens generated, seconds since the\n"
                   "model was loaded and tokens/s"),
        MMP_O_OUTPUT(&out, "output (default stdout)"),
        MMP_O_COMMON,
        MMP_O_END,
    };
    const char *in = mmp_cli_parse_input(argc, argv, opts, usage);
    if (!model_path) mmp_die("--model is required (see --help)");
    if (sample && beams > 1) mmp_die("--do-sample with --num-beams > 1 (beam sampling) is not supported");
    char err[1024];
    model M = {0};
    if (mmp_captioner_probe(model_path)) { /* a captioner checkpoint */
        if (tokenizer) mmp_die("--tokenizer is for a GPT-2 folder (a captioner has its own)");
        M.cap = mmp_captioner_load(model_path, err, sizeof err);
        if (!M.cap) mmp_die("%s", err);
        M.dec = mmp_captioner_decoder(M.cap);
        M.feature = mmp_captioner_feature(M.cap);
        M.fsize = mmp_captioner_feature_size(M.cap);
        M.K = mmp_captioner_prefix_length(M.cap);
        M.C = mmp_captioner_width(M.cap);
        M.eos = mmp_captioner_eos(M.cap);
        if (mmp_captioner_vocab(M.cap) != M.dec->cfg.vocab)
            mmp_die("%s: the tokenizer has %d tokens but the decoder a vocabulary of %d", model_path,
                    mmp_captioner_vocab(M.cap), M.dec->cfg.vocab);
    } else {
        M.dec = mmp_gpt2_load(model_path, err, sizeof err);
        if (!M.dec) mmp_die("%s", err);
        M.tok = mmp_bpe_load_gpt2(tokenizer ? tokenizer : model_path, err, sizeof err);
        if (!M.tok) mmp_die("%s", err);
        if (mmp_bpe_vocab_size(M.tok) != M.dec->cfg.vocab)
            mmp_die("the tokenizer %s has %d tokens but the decoder %s a vocabulary of %d",
                    tokenizer ? tokenizer : model_path, mmp_bpe_vocab_size(M.tok), model_path, M.dec->cfg.vocab);
        M.eos = M.dec->cfg.eos_id >= 0 ? M.dec->cfg.eos_id : mmp_bpe_eot_id(M.tok);
    }
    const mmp_gpt2_config *cfg = &M.dec->cfg;
    M.bos = cfg->bos_id >= 0 ? cfg->bos_id : M.eos;
    mmp_gpt2_set_threads(M.dec, threads);

    mmp_gen_opts go;
    mmp_gen_opts_default(&go);
    go.mode = sample ? MMP_GEN_SAMPLE : beams > 1 ? MMP_GEN_BEAM : MMP_GEN_GREEDY;
    go.num_beams = beams;
    go.length_penalty = lp;
    go.early_stopping = early;
    go.no_repeat_ngram_size = ngram;
    go.max_new_tokens = max_new;
    go.min_new_tokens = min_new;
    go.eos_id = M.eos;
    go.top_k = top_k;
    go.top_p = top_p;
    go.temperature = temperature;
    if (mmp_gen_opts_check(&go, cfg->vocab, err, sizeof err)) mmp_die("%s", err);
    if (M.cap && M.K + max_new > cfg->ctx)
        mmp_die("the prefix of %d + --max-new-tokens %d exceeds the decoder's %d positions", M.K, max_new, cfg->ctx);
    if (max_new >= cfg->ctx) mmp_die("--max-new-tokens %d leaves no room for a prompt in the decoder's %d positions", max_new, cfg->ctx);

    mmp_reader *rd = mmp_reader_open_or_die(in);
    const char *inname = strcmp(in, "-") ? in : "stdin";
    mmp_header oh;
    mmp_header_copy(&oh, mmp_reader_header(rd));
    mmp_header_add_field(&oh, "logprob", MMP_F32, 0, NULL);
    mmp_header_add_field(&oh, "score", MMP_F32, 0, NULL);
    if (want_ids) mmp_header_add_field(&oh, "ids", MMP_I32, 1, (int64_t[]){-1});
    mmp_meta_set(&oh.meta, "generate.model", model_path);
    if (M.cap) mmp_meta_set(&oh.meta, "generate.feature", M.feature);
    mmp_meta_set(&oh.meta, "generate.mode", sample ? "sample" : beams > 1 ? "beam" : "greedy");
    mmp_header_stamp(&oh, argc, argv);
    mmp_writer *w = mmp_writer_open(out, &oh, 0);

    mmp_gen_gpt2 *G = mmp_gen_gpt2_new(M.dec);
    const mmp_gen_lm *lm = mmp_gen_gpt2_lm(G);
    mmp_record *recs = mmp_xcalloc((size_t)batch, sizeof *recs);
    idbuf *ib = mmp_xcalloc((size_t)batch, sizeof *ib);
    mmp_gen_input *gin = mmp_xcalloc((size_t)batch, sizeof *gin);
    mmp_gen_output *gout = mmp_xcalloc((size_t)batch, sizeof *gout);
    float *feats = M.cap ? mmp_xmalloc((size_t)batch * M.fsize * sizeof *feats) : NULL;
    float *prefix = M.cap ? mmp_xmalloc((size_t)batch * M.K * M.C * sizeof *prefix) : NULL;
    for (int i = 0; i < batch; i++) mmp_record_init(&recs[i]);
    int eof = 0;
    uint64_t done = 0, ntok = 0;
    double t0 = mmp_now();
    while (!eof) {
        int n = 0;
        while (n < batch) {
            mmp_record_clear(&recs[n]);
            if (!mmp_reader_next_or_die(rd, &recs[n])) {
                eof = 1;
                break;
            }
            mmp_record *r = &recs[n];
            const char *rid = r->id ? r->id : "(no id)";
            if (M.cap) { /* the image feature -> prefix (below, for the batch) */
                const mmp_tensor *ft = mmp_record_cget(r, M.feature);
                if (!ft)
                    mmp_die("%s: record %s (#%llu) has no tensor \"%s\" (the captioner's feature)", inname, rid,
                            (unsigned long long)(done + (uint64_t)n), M.feature);
                if ((ft->dtype != MMP_F32 && ft->dtype != MMP_F16 && ft->dtype != MMP_BF16) ||
                    mmp_numel(ft->ndim, ft->shape) != M.fsize)
                    mmp_die("%s: record %s: \"%s\" is %s with %lld values, the captioner takes %lld floats", inname, rid,
                            M.feature, mmp_dtype_name(ft->dtype), (long long)mmp_numel(ft->ndim, ft->shape),
                            (long long)M.fsize);
                mmp_tensor_to_f32(ft, feats + (size_t)n * M.fsize);
                gin[n] = (mmp_gen_input){.prefix = prefix + (size_t)n * M.K * M.C, .nprefix = M.K,
                                         .key = mmp_gen_key((uint64_t)seed, r->id)};
                n++;
                continue;
            }
            if (!r->text)
                mmp_die("%s: record %s (#%llu) has no text (the prompt)", inname, rid,
                        (unsigned long long)(done + (uint64_t)n));
            ib[n].n = 0;
            if (mmp_bpe_tokenize(M.tok, r->text, strlen(r->text), MMP_UTF8_ERROR, &ib[n].ids, &ib[n].n, &ib[n].cap, err,
                                 sizeof err))
                mmp_die("%s: record %s: %s", inname, rid, err);
            if (ib[n].n == 0) { /* generate() without input starts from BOS */
                if (ib[n].cap < 1) ib[n].ids = mmp_xrealloc(ib[n].ids, sizeof(int32_t)), ib[n].cap = 1;
                ib[n].ids[ib[n].n++] = M.bos;
            }
            if (ib[n].n + max_new > cfg->ctx)
                mmp_die("%s: record %s: a prompt of %d tokens + --max-new-tokens %d exceeds the decoder's %d positions",
                        inname, rid, ib[n].n, max_new, cfg->ctx);
            gin[n] = (mmp_gen_input){.prompt = ib[n].ids, .plen = ib[n].n, .key = mmp_gen_key((uint64_t)seed, r->id)};
            n++;
        }
        if (!n) break;
        if (M.cap && mmp_captioner_prefix(M.cap, feats, n, prefix)) mmp_die("%s: the captioner's mapping failed", inname);
        if (mmp_gen_run(lm, &go, gin, n, gout, err, sizeof err)) mmp_die("%s: %s", inname, err);
        for (int i = 0; i < n; i++) {
            mmp_record *r = &recs[i];
            int ng = gout[i].n - gout[i].eos;
            ntok += (uint64_t)gout[i].n;
            char *txt = decode_text(&M, gout[i].tokens, ng, err, sizeof err);
            if (!txt) mmp_die("%s: record %s: %s", inname, r->id ? r->id : "(no id)", err);
            if (full_text && r->text && !M.cap) {
                char *both = mmp_xasprintf("%s%s", r->text, txt);
                free(txt);
                txt = both;
            }
            mmp_record_set_text(r, txt);
            free(txt);
            mmp_tensor *t = mmp_record_add(r, "logprob", MMP_F32, 0, NULL);
            *(float *)t->data = gout[i].logprob;
            t = mmp_record_add(r, "score", MMP_F32, 0, NULL);
            *(float *)t->data = (float)gout[i].score;
            if (want_ids) {
                t = mmp_record_add(r, "ids", MMP_I32, 1, (int64_t[]){gout[i].n});
                if (gout[i].n) memcpy(t->data, gout[i].tokens, (size_t)gout[i].n * sizeof(int32_t));
            }
            mmp_writer_write(w, r);
            mmp_gen_output_free(&gout[i]);
        }
        done += (uint64_t)n;
        mmp_progress_count("generated", "records", done, 0, t0);
    }
    mmp_progress_done();
    if (stats) {
        double dt = mmp_now() - t0;
        fprintf(stderr, "mmp-generate: %llu records, %llu tokens in %.3f s: %.2f tokens/s\n", (unsigned long long)done,
                (unsigned long long)ntok, dt, dt > 0 ? (double)ntok / dt : 0.0);
    }
    mmp_writer_close(w);
    mmp_reader_close(rd);
    for (int i = 0; i < batch; i++) {
        mmp_record_clear(&recs[i]);
        free(ib[i].ids);
    }
    free(recs);
    free(ib);
    free(gin);
    free(gout);
    mmp_header_free(&oh);
    free(feats);
    free(prefix);
    mmp_gen_gpt2_free(G);
    if (M.cap) {
        mmp_captioner_free(M.cap);
    } else {
        mmp_bpe_free(M.tok);
        mmp_gpt2_free(M.dec);
    }
    return 0;
}
