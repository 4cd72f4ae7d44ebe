/* mmp-train-step: train a head (linear, MLP, contrastive/triplet pair
 * projections, gated/attention fusion + classifier) on a stream of feature
 * records. See docs/train.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mmp.h"
#include "nn/provenance.h"
#include "train/train.h"

static const char usage[] =
    "usage: mmp-train-step --out HEAD.safetensors [options] [TRAIN.mmp]   (default: stdin)\n"
    "Trains a head on feature records (tensor \"embedding\" f32/f16 [D], label, id).\n"
    "The whole stream is held in memory; --epochs N replays it N times (file or stdin)\n"
    "in a shuffled order seeded by (--seed, epoch).\n"
    "\n"
    "model:\n"
    "  --head linear|mlp|pair|gated|attention|mnv2-tail|resnet-tail\n"
    "                             default linear (pair for --loss contrastive|triplet)\n"
    "                             gated, attention: learned fusion (lib/fuse, as mmp-fuse --mode)\n"
    "                             of --feature and --pair-field, then nn.Linear(F, C) (ce/bce);\n"
    "                             raw inputs (no standardization); mmp-fuse --checkpoint OUT\n"
    "                             applies the fusion part of the checkpoint\n"
    "                             mnv2-tail: partly unfrozen MobileNetV2: trains blocks features.K+1..18\n"
    "                             (BN in eval mode) + classifier on features.K activations cached by\n"
    "                             mmp-embed --layer features.K:flat (see docs/train.md)\n"
    "                             resnet-tail: partly unfrozen torchvision ResNet: trains the blocks\n"
    "                             after layerL (or block layerL.i) .. layer4 (BN in eval mode) + fc on\n"
    "                             activations cached by mmp-embed --layer layerL:flat\n"
    "  --backbone FILE            mnv2-tail, resnet-tail: the pretrained network the tail starts from\n"
    "  --from features.K|layerL[.i]  the input block (default: the stream's embed.layer)\n"
    "  --in-hw HxW                mnv2-tail, resnet-tail: its spatial size (default: from the\n"
    "                             stream's embed.size)\n"
    "  --hidden N[,N...]          MLP hidden widths (implies --head mlp): Linear-ReLU-Dropout blocks\n"
    "  --dropout P                MLP dropout probability (0; mnv2-tail: before the classifier, 0.2)\n"
    "  --proj-dim E               pair head projection width (256)\n"
    "  --fuse-dim F               fusion heads: width of the fused vector (256)\n"
    "  --heads H                  attention fusion: attention heads, dividing F (4)\n"
    "loss:\n"
    "  --loss ce|bce|contrastive|triplet   (ce)\n"
    "  --label-smoothing E        ce label smoothing (0)\n"
    "  --class-weights W,W,...|balanced    ce class weights (PyTorch weighted mean)\n"
    "  --margin M                 triplet margin (1.0)\n"
    "  --mining hard|all          triplet in-batch negatives: hardest one, or all (hard)\n"
    "optimization:\n"
    "  --optimizer adamw|sgd      (adamw)\n"
    "  --lr LR                    (adamw 1e-3, sgd 1e-2)\n"
    "  --weight-decay WD          (adamw 1e-2 decoupled, sgd 0 as L2)\n"
    "  --momentum M, --nesterov   SGD momentum (0), Nesterov\n"
    "  --beta1 B, --beta2 B, --eps E    AdamW (0.9, 0.999, 1e-8)\n"
    "  --schedule constant|step|cosine  per-step LR schedule (constant)\n"
    "  --warmup STEPS             linear warm-up: lr*(t+1)/STEPS for the first STEPS steps\n"
    "  --step-size STEPS, --gamma G     step schedule: lr *= G every STEPS steps (gamma 0.1)\n"
    "  --min-lr LR                cosine floor (0)\n"
    "  --total-steps N            cosine length (default epochs * batches per epoch)\n"
    "  --clip-grad-norm MAX       clip the total gradient L2 norm (off)\n"
    "  --batch-size N             (256)\n"
    "  --epochs N                 (1)\n"
    "  --seed N                   weights init, shuffling, dropout (0)\n"
    "  --standardize, --no-standardize  feature standardization fitted on the training\n"
    "                             stream (default: on for linear ce/bce heads)\n"
    "data:\n"
    "  --feature NAME             input tensor (embedding)\n"
    "  --pair-field NAME          second input for pair losses and fusion heads (text_embedding)\n"
    "  --labels-field NAME        multi-label targets f32 [C] for bce (labels)\n"
    "  --dev FILE                 evaluate every epoch; --out keeps the best epoch\n"
    "  --patience N               early stopping after N epochs without dev improvement\n"
    "  --allow-mixed              accept features of another provenance\n"
    "checkpoints:\n"
    "  --out FILE                 the checkpoint (best epoch with --dev, else the latest)\n"
    "  --last FILE                latest state with --dev (default OUT with .last before the extension)\n"
    "  --init FILE                start from a checkpoint (weights, optimizer state, step) and\n"
    "                             train --epochs more epochs (default 1): the per-epoch shell loop\n"
    "  --resume FILE              continue an interrupted run up to --epochs in total\n"
    "  --stop-after-epochs K      run at most K epochs in this invocation (resume later)\n"
    "  --log FILE                 JSON lines: steps and epochs (for mmp-report --log)\n"
    "  --log-every N              step entries every N steps (1)\n"
    "  -j, --threads N            mnv2-tail, resnet-tail: threads for the convolutions (default: online CPUs, at\n"
    "                             most 4); the results are bit-identical for any N\n"
    "  --progress                 progress on stderr\n";

/* "--weight-decay" -> "weight_decay" when it is a configuration key */
static const char *cfg_opts[] = {"--head", "--hidden", "--dropout", "--proj-dim", "--fuse-dim", "--heads", "--loss", "--label-smoothing",
    "--class-weights", "--margin", "--mining", "--optimizer", "--lr", "--momentum", "--weight-decay",
    "--beta1", "--beta2", "--eps", "--schedule", "--warmup", "--step-size", "--gamma", "--min-lr",
    "--total-steps", "--clip-grad-norm", "--batch-size", "--epochs", "--seed", "--patience", "--feature",
    "--pair-field", "--labels-field", "--backbone", "--from", "--in-hw", NULL};

static char *default_last(const char *out) {
    const char *slash = strrchr(out, '/'), *dot = strrchr(out, '.');
    if (dot && (!slash || dot > slash))
        return mmp_xasprintf("%.*s.last%s", (int)(dot - out), out, dot);
    return mmp_xasprintf("%s.last", out);
}

int main(int argc, char **argv) {
    mmp_cli_init("mmp-train-step");
    const char *in = "-", *out = NULL, *last = NULL, *init = NULL, *resume = NULL, *dev_path = NULL,
               *log_path = NULL, *v;
    int allow_mixed = 0, threads = 0, log_every = 1, stop_after = -1, epochs_given = 0, npos = 0;
    mmp_meta given;
    mmp_meta_init(&given);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (mmp_cli_common(argc, argv, &i, usage)) continue;
        int done = 0;
        for (int k = 0; cfg_opts[k] && !done; k++)
            if (mmp_cli_opt(argc, argv, &i, cfg_opts[k], &v)) {
                char key[64];
                snprintf(key, sizeof key, "%s", cfg_opts[k] + 2);
                for (char *p = key; *p; p++) if (*p == '-') *p = '_';
                mmp_meta_set(&given, key, v);
                if (!strcmp(key, "epochs")) epochs_given = 1;
                done = 1;
            }
        if (done) continue;
        if (mmp_cli_flag(argv, i, "--nesterov")) mmp_meta_set(&given, "nesterov", "1");
        else if (mmp_cli_flag(argv, i, "--standardize")) mmp_meta_set(&given, "standardize", "1");
        else if (mmp_cli_flag(argv, i, "--no-standardize")) mmp_meta_set(&given, "standardize", "0");
        else if (mmp_cli_flag(argv, i, "--allow-mixed")) allow_mixed = 1;
        else if (mmp_cli_opt(argc, argv, &i, "--out", &v) || mmp_cli_opt(argc, argv, &i, "-o", &v)) out = v;
        else if (mmp_cli_opt(argc, argv, &i, "--last", &v)) last = v;
        else if (mmp_cli_opt(argc, argv, &i, "--init", &v)) init = v;
        else if (mmp_cli_opt(argc, argv, &i, "--resume", &v)) resume = v;
        else if (mmp_cli_opt(argc, argv, &i, "--dev", &v)) dev_path = v;
        else if (mmp_cli_opt(argc, argv, &i, "--log", &v)) log_path = v;
        else if (mmp_cli_opt(argc, argv, &i, "--threads", &v) || mmp_cli_opt(argc, argv, &i, "-j", &v))
            threads = (int)mmp_cli_int("--threads", v, 1, 1024);
        else if (mmp_cli_opt(argc, argv, &i, "--log-every", &v)) log_every = (int)mmp_cli_int("--log-every", v, 0, 1 << 30);
        else if (mmp_cli_opt(argc, argv, &i, "--stop-after-epochs", &v)) stop_after = (int)mmp_cli_int("--stop-after-epochs", v, 0, 1 << 30);
        else if (a[0] == '-' && a[1]) mmp_cli_unknown(a);
        else if (npos++ == 0) in = a;
        else mmp_die("one input stream at most (see --help)");
    }
    if (!out) mmp_die("--out FILE is required (see --help)");
    if (init && resume) mmp_die("--init and --resume exclude each other");
    mmp_train_init_blas();
    char err[1024];

    /* configuration: defaults <- checkpoint <- command line */
    mmp_trainer tr;
    mmp_train_cfg cfg;
    mmp_train_cfg_defaults(&cfg);
    const char *ckpt = init ? init : resume;
    if (ckpt) {
        if (mmp_trainer_load(&tr, ckpt, &given, err, sizeof err)) mmp_die("%s", err);
        cfg = tr.cfg;
    } else {
        for (int k = 0; k < given.n; k++)
            if (mmp_train_cfg_set(&cfg, given.keys[k], given.vals[k], err, sizeof err)) mmp_die("%s", err);
    }
    int pair = cfg.loss == MMP_LOSS_CONTRASTIVE || cfg.loss == MMP_LOSS_TRIPLET;
    int two = pair || MMP_HEAD_IS_FUSE(cfg.head); /* reads the pair field */
    double t0 = mmp_now();
    mmp_dataset ds;
    if (mmp_dataset_load(&ds, in, cfg.feature, two ? cfg.pair_field : NULL,
                         cfg.loss == MMP_LOSS_BCE ? cfg.labels_field : NULL, cfg.loss == MMP_LOSS_CE, err, sizeof err))
        mmp_die("%s", err);
    double t_load = mmp_now() - t0;
    if (ckpt) {
        mmp_provenance_check(&ds.hdr, tr.provenance, allow_mixed, ds.name, ckpt);
        mmp_train_check_text_provenance(&ds.hdr, tr.text_provenance, allow_mixed, ds.name, ckpt);
        if (mmp_trainer_check_data(&tr, &ds, 1, err, sizeof err)) mmp_die("%s", err);
    } else {
        if (mmp_trainer_init(&tr, &cfg, &ds, err, sizeof err)) mmp_die("%s", err);
    }
    if (tr.cfg.head == MMP_HEAD_PAIR && (ds.n < 2 || tr.cfg.batch < 2))
        mmp_die("%s: --loss %s needs in-batch negatives: at least 2 records and --batch-size >= 2", ds.name,
                mmp_loss_name(tr.cfg.loss));
    if (tr.head.tail && threads > 0) tr.head.tail->threads = threads < MMP_TAIL_SLICES ? threads : MMP_TAIL_SLICES;
    int start_epoch = tr.epoch;
    int target = resume ? tr.cfg.epochs : start_epoch + (init && !epochs_given ? 1 : tr.cfg.epochs);
    if (init) tr.cfg.epochs = target; /* recorded: epochs completed so far are the ones that count */
    mmp_trainer_standardize(&tr, &ds);
    mmp_dataset dev;
    int has_dev = dev_path != NULL;
    if (has_dev) {
        if (mmp_dataset_load(&dev, dev_path, tr.cfg.feature, two ? tr.cfg.pair_field : NULL,
                             tr.cfg.loss == MMP_LOSS_BCE ? tr.cfg.labels_field : NULL, tr.cfg.loss == MMP_LOSS_CE, err, sizeof err))
            mmp_die("%s", err);
        mmp_provenance_check(&dev.hdr, tr.provenance, allow_mixed, dev.name, ckpt ? ckpt : ds.name);
        mmp_train_check_text_provenance(&dev.hdr, tr.text_provenance, allow_mixed, dev.name, ckpt ? ckpt : ds.name);
        if (mmp_trainer_check_data(&tr, &dev, 1, err, sizeof err)) mmp_die("%s", err);
        mmp_trainer_standardize(&tr, &dev);
    }
    char *last_path = has_dev ? (last ? mmp_xstrdup(last) : default_last(out)) : mmp_xstrdup(out);
    FILE *log = NULL;
    if (log_path) {
        log = fopen(log_path, ckpt ? "a" : "w");
        if (!log) mmp_die("%s: cannot open for writing", log_path);
    }
    int ran = 0;
    double t_train = mmp_now(), c_train = (double)clock() / CLOCKS_PER_SEC, last_loss = NAN, last_dev = NAN, last_dev_loss = NAN;
    while (tr.epoch < target && (stop_after < 0 || ran < stop_after)) {
        if (has_dev && tr.cfg.patience > 0 && tr.bad_epochs >= tr.cfg.patience) break;
        double te = mmp_now();
        last_loss = mmp_trainer_epoch(&tr, &ds, log, log_every);
        ran++;
        if (!isfinite(last_loss)) mmp_die("epoch %d: the training loss is not finite (lower --lr?)", tr.epoch);
        int improved = 0;
        if (has_dev) {
            mmp_trainer_evaluate(&tr, &dev, &last_dev_loss, &last_dev);
            if (last_dev > tr.best_metric) {
                tr.best_metric = last_dev;
                tr.best_epoch = tr.epoch;
                tr.bad_epochs = 0;
                improved = 1;
            } else {
                tr.bad_epochs++;
            }
        }
        if (log) {
            fprintf(log, "{\"epoch\":%d,\"step\":%lld,\"train_loss\":%.9g,\"lr\":%.9g", tr.epoch, (long long)tr.step,
                    last_loss, mmp_sched_lr(&tr.cfg.sched, tr.step > 0 ? tr.step - 1 : 0));
            if (has_dev) fprintf(log, ",\"dev_loss\":%.9g,\"dev_metric\":%.9g", last_dev_loss, last_dev);
            fprintf(log, ",\"seconds\":%.3f}\n", mmp_now() - te);
            fflush(log);
        }
        if (improved && mmp_trainer_save(&tr, out, err, sizeof err)) mmp_die("%s", err);
        if (mmp_trainer_save(&tr, last_path, err, sizeof err)) mmp_die("%s", err);
        if (has_dev)
            mmp_progress("epoch %d/%d: train loss %.4f, dev loss %.4f, dev %s %.4f%s", tr.epoch, target, last_loss,
                         last_dev_loss, pair ? "recall@1" : "accuracy", last_dev, improved ? " (best)" : "");
        else
            mmp_progress("epoch %d/%d: train loss %.4f", tr.epoch, target, last_loss);
        if (has_dev && tr.cfg.patience > 0 && tr.bad_epochs >= tr.cfg.patience)
            fprintf(stderr, "mmp-train-step: early stop after epoch %d: no dev improvement for %d epochs (best %.4f at epoch %d)\n",
                    tr.epoch, tr.bad_epochs, tr.best_metric, tr.best_epoch);
    }
    mmp_progress_done();
    if (ran == 0 && !(has_dev && tr.best_epoch > 0)) {
        /* nothing trained (e.g. --epochs 0): still leave a checkpoint */
        if (mmp_trainer_save(&tr, out, err, sizeof err)) mmp_die("%s", err);
        if (strcmp(last_path, out) && mmp_trainer_save(&tr, last_path, err, sizeof err)) mmp_die("%s", err);
    }
    double secs = mmp_now() - t_train, csecs = (double)clock() / CLOCKS_PER_SEC - c_train;
    fprintf(stderr, "mmp-train-step: %lld records x %lld (%s head, %s loss); epochs %d..%d, %lld steps; %.2f s training (%.2f s CPU), %.2f s loading",
            (long long)ds.n, (long long)ds.dim, mmp_head_kind_name(tr.cfg.head), mmp_loss_name(tr.cfg.loss), start_epoch + 1,
            tr.epoch, (long long)tr.step, secs, csecs, t_load);
    if (ran) fprintf(stderr, "; train loss %.4f", last_loss);
    if (has_dev) fprintf(stderr, "; dev %s %.4f (best %.4f at epoch %d)", pair ? "recall@1" : "accuracy", last_dev, tr.best_metric, tr.best_epoch);
    fputc('\n', stderr);
    if (log) fclose(log);
    free(last_path);
    if (has_dev) mmp_dataset_free(&dev);
    mmp_dataset_free(&ds);
    mmp_trainer_free(&tr);
    mmp_meta_free(&given);
    return 0;
}
