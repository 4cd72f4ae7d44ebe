/* mmp-train-step: train a head (linear, MLP, contrastive/triplet pair
 * projections, gated/attention fusion + classifier) on a stream of feature
 * records. See docs/train.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "mmp.h"
#include "nn/provenance.h"
#include "train/caption_train.h"
#include "train/clip_ft.h"
#include "train/tensorboard.h"
#include "train/train.h"
#include "train/tx_head.h"
#include "train/vqa_cmd.h"

static const char usage[] =
    "usage: mmp-train-step --out HEAD.safetensors [options] [TRAIN.mmp]   (default: stdin)\n"
    "Trains a head on feature records (tensor \"embedding\" f32/f16 [D], label, id),\n"
    "or a whole network on image / text records (--head mnv2-tail|resnet-tail --from input,\n"
    "--head transformer --backbone MODEL); --head clip: both towers of a CLIP model on\n"
    "image + text records (docs/train.md); --head vqa|vqa-pooled: visual question\n"
    "answering on image-token records with a question and answers (docs/vqa.md).\n"
    "The whole stream is held in memory; --epochs N replays it N times (file or stdin)\n"
    "in a shuffled order seeded by (--seed, epoch). Whole-network heads (--from input) read\n"
    "image records, kept as u8 and augmented per epoch with --aug-* (docs/train.md).\n"
    "\n";

int main(int argc, char **argv) {
    mmp_cli_init("mmp-train-step");
    const char *out = NULL, *last = NULL, *init = NULL, *resume = NULL, *dev_path = NULL, *log_path = NULL,
               *tb_dir = NULL;
    int allow_mixed = 0, threads = 0, log_every = 1, stop_after = -1, lock = -1;
    mmp_meta given; /* the configuration options given: key -> value, in command-line order */
    mmp_meta_init(&given);
    mmp_train_cfg cfg;
    mmp_train_cfg_defaults(&cfg);
    mmp_option opts[] = {
        MMP_O_INCLUDE(mmp_train_options, .base = &cfg, .record = &given),
        MMP_O_CHOICE("lock", 0, &lock, mmp_clipft_lock_names,
                     "--head clip: a locked tower (LiT: image) runs in inference mode and\n"
                     "does not change (default none: both towers train)", .valname = "none|image|text"),
        MMP_O_TEXT("input, evaluation, checkpoints:"),
        MMP_O_STRING("dev", 0, &dev_path, "FILE", "evaluate every epoch; --out keeps the best epoch"),
        MMP_O_FLAG("allow-mixed", 0, &allow_mixed, "accept features of another provenance"),
        MMP_O_STRING("out", 'o', &out, "FILE", "the checkpoint (best epoch with --dev, else the latest)"),
        MMP_O_STRING("last", 0, &last, "FILE", "latest state with --dev (default OUT with .last before the extension)"),
        MMP_O_STRING("init", 0, &init, "FILE",
                     "start from a checkpoint (weights, optimizer state, step) and train\n"
                     "--epochs more epochs (default 1): the per-epoch shell loop"),
        MMP_O_STRING("resume", 0, &resume, "FILE", "continue an interrupted run up to --epochs in total"),
        MMP_O_INT("stop-after-epochs", 0, &stop_after, 0, 1 << 30, "K", "run at most K epochs in this invocation (resume later)"),
        MMP_O_STRING("log", 0, &log_path, "FILE", "JSON lines: steps and epochs (for mmp-report --log)"),
        MMP_O_INT("log-every", 0, &log_every, 0, 1 << 30, "N", "step entries every N steps (1)"),
        MMP_O_STRING("tensorboard", 0, &tb_dir, "DIR",
                     "TensorBoard scalars (train/loss, train/lr with the --log-every steps;\n"
                     "epoch/train_loss, dev/loss, dev/accuracy per epoch) in a new event file in DIR"),
        MMP_O_THREADS(&threads, "mnv2-tail, resnet-tail: threads for the convolutions (default: online\n"
                                "CPUs, at most 4); transformer, clip: threads of the encoder (default:\n"
                                "online CPUs); the results are bit-identical for any N"),
        MMP_O_COMMON,
        MMP_O_END,
    };
    const char *in = mmp_cli_parse_input(argc, argv, opts, usage);
    if (!out) mmp_die("--out FILE is required (see --help)");
    if (init && resume) mmp_die("--init and --resume exclude each other");
    mmp_train_init_blas();
    if (cfg.head == MMP_HEAD_CLIP || ((init || resume) && mmp_clipft_is_checkpoint(init ? init : resume))) {
        mmp_clipft_cmd_args ca = {.cfg = &cfg, .given = &given, .in = in, .out = out, .last = last, .init = init, .resume = resume,
                                  .dev = dev_path, .log = log_path, .tb_dir = tb_dir, .lock = lock, .allow_mixed = allow_mixed,
                                  .threads = threads, .log_every = log_every, .stop_after = stop_after};
        int rc = mmp_clipft_cmd(&ca);
        mmp_meta_free(&given);
        return rc;
    }
    if (lock >= 0) mmp_die("--lock is for --head clip");
    if (MMP_HEAD_IS_VQA(cfg.head) || ((init || resume) && mmp_vqa_is_checkpoint(init ? init : resume))) {
        if (tb_dir) mmp_die("--tensorboard is not available with --head %s (see --log)", mmp_head_kind_name(cfg.head));
        mmp_vqa_cmd_args va = {.cfg = &cfg, .given = &given, .in = in, .out = out, .last = last, .init = init, .resume = resume,
                               .dev = dev_path, .log = log_path, .allow_mixed = allow_mixed, .threads = threads,
                               .log_every = log_every, .stop_after = stop_after};
        int rc = mmp_vqa_cmd(&va);
        mmp_meta_free(&given);
        return rc;
    }
    char err[1024];
    mmp_tensorboard_writer tb; /* before the data: a bad DIR fails fast (SummaryWriter(DIR) makes the file at once too) */
    if (tb_dir && mmp_tensorboard_open(&tb, tb_dir, err, sizeof err)) mmp_die("%s", err);

    /* configuration: defaults <- checkpoint <- command line (cfg: defaults <- command line) */
    mmp_trainer tr;
    const char *ckpt = init ? init : resume;
    if (ckpt) {
        if (mmp_trainer_load(&tr, ckpt, &given, err, sizeof err)) mmp_die("%s", err);
        if (mmp_trainer_load_optim(&tr, ckpt, err, sizeof err)) mmp_die("%s", err);
        cfg = tr.cfg;
    }
    if (!ckpt && cfg.head == MMP_HEAD_CAPTION && mmp_caption_prepare(&cfg, in, out, err, sizeof err)) mmp_die("%s", err);
    double t0 = mmp_now();
    mmp_dataset ds;
    if (mmp_train_load_data(&ds, &cfg, in, allow_mixed, err, sizeof err)) mmp_die("%s", err);
    if (mmp_dataset_augment(&ds, &cfg, err, sizeof err)) mmp_die("%s", err); /* --aug-*: the training set only */
    double t_load = mmp_now() - t0;
    if (ckpt) {
        mmp_provenance_check(&ds.hdr, tr.provenance, allow_mixed, ds.name, ckpt);
        mmp_train_check_text_provenance(&ds.hdr, tr.text_provenance, allow_mixed, ds.name, ckpt);
        if (mmp_trainer_check_data(&tr, &ds, 1, err, sizeof err)) mmp_die("%s", err);
    } else {
        if (mmp_trainer_init(&tr, &cfg, &ds, err, sizeof err)) mmp_die("%s", err);
    }
    if (mmp_trainer_check_batches(&tr, &ds, err, sizeof err)) mmp_die("%s", err);
    if (tr.head.tail && threads > 0) tr.head.tail->threads = threads < MMP_TAIL_SLICES ? threads : MMP_TAIL_SLICES;
    if (tr.head.capt) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        mmp_caption_set_threads(tr.head.capt, threads > 0 ? threads : nc > 0 ? (int)nc : 1);
    }
    if (tr.head.tx) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        mmp_txhead_set_threads(tr.head.tx, threads > 0 ? threads : nc > 0 ? (int)nc : 1);
    }
    int start_epoch = tr.epoch;
    if (tb_dir && tr.step > 0) mmp_tensorboard_purge_from(&tb, tr.step + 1); /* --init, --resume: a restart at step + 1 */
    mmp_train_run run = {.log_every = log_every, .stop_after = stop_after, .tb = tb_dir ? &tb : NULL};
    run.target = resume ? tr.cfg.epochs : start_epoch + (init && !mmp_meta_get(&given, "epochs") ? 1 : tr.cfg.epochs);
    if (init) tr.cfg.epochs = run.target; /* recorded: epochs completed so far are the ones that count */
    mmp_trainer_standardize(&tr, &ds);
    mmp_dataset dev;
    if (dev_path) {
        if (mmp_train_load_data(&dev, &tr.cfg, dev_path, allow_mixed, err, sizeof err)) mmp_die("%s", err);
        mmp_provenance_check(&dev.hdr, tr.provenance, allow_mixed, dev.name, ckpt ? ckpt : ds.name);
        mmp_train_check_text_provenance(&dev.hdr, tr.text_provenance, allow_mixed, dev.name, ckpt ? ckpt : ds.name);
        if (mmp_trainer_check_data(&tr, &dev, 1, err, sizeof err)) mmp_die("%s", err);
        mmp_trainer_standardize(&tr, &dev);
        run.dev = &dev;
    }
    char *last_path = dev_path ? (last ? mmp_xstrdup(last) : mmp_train_last_path(out)) : mmp_xstrdup(out);
    run.out = out;
    run.last = last_path;
    if (log_path) {
        run.log = fopen(log_path, ckpt ? "a" : "w");
        if (!run.log) mmp_die("%s: cannot open for writing", log_path);
    }
    if (tr.head.batch_bytes) { /* whole-backbone heads: what one batch needs */
        mmp_train_memory mm;
        mmp_trainer_memory(&tr, tr.cfg.batch, &mm);
        const double MiB = 1048576.0;
        char inp[64] = "";
        if (ds.img_h > 0) snprintf(inp, sizeof inp, " of 3x%lldx%lld images", (long long)ds.img_h, (long long)ds.img_w);
        fprintf(stderr, "mmp-train-step: memory for a batch of %lld%s: %.1f MiB saved activations + %.1f MiB "
                "backward buffers; %.1f MiB parameters + %.1f MiB gradients + %.1f MiB optimizer state\n",
                (long long)tr.cfg.batch, inp, mm.saved / MiB, mm.work / MiB, mm.params / MiB, mm.grads / MiB, mm.optim / MiB);
    }
    double t_train = mmp_now(), c_train = (double)clock() / CLOCKS_PER_SEC;
    if (mmp_trainer_run(&tr, &ds, &run, err, sizeof err)) mmp_die("%s", err);
    double secs = mmp_now() - t_train, csecs = (double)clock() / CLOCKS_PER_SEC - c_train;
    const char *metric = tr.cfg.head == MMP_HEAD_PAIR ? "recall@1" : "accuracy";
    fprintf(stderr, "mmp-train-step: %lld records x %lld (%s head, %s loss); epochs %d..%d, %lld steps; %.2f s training (%.2f s CPU), %.2f s loading",
            (long long)ds.n, (long long)ds.dim, mmp_head_kind_name(tr.cfg.head), mmp_loss_name(tr.cfg.loss), start_epoch + 1,
            tr.epoch, (long long)tr.step, secs, csecs, t_load);
    if (run.ran) fprintf(stderr, "; train loss %.4f", run.train_loss);
    if (tr.cfg.skip_nonfinite) fprintf(stderr, "; %lld steps skipped (non-finite)", (long long)tr.skipped);
    if (dev_path && tr.head.capt) /* the metric is the negative dev loss */
        fprintf(stderr, "; dev loss %.4f (best %.4f at epoch %d)", run.dev_loss, -tr.best_metric, tr.best_epoch);
    else if (dev_path) fprintf(stderr, "; dev %s %.4f (best %.4f at epoch %d)", metric, run.dev_metric, tr.best_metric, tr.best_epoch);
    fputc('\n', stderr);
    if (run.log) fclose(run.log);
    if (run.tb && mmp_tensorboard_close(run.tb, err, sizeof err)) mmp_die("%s", err);
    free(last_path);
    if (dev_path) mmp_dataset_free(&dev);
    mmp_dataset_free(&ds);
    mmp_trainer_free(&tr);
    mmp_meta_free(&given);
    return 0;
}
