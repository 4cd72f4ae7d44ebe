/* train/train.h: configuration, in-memory data sets, the training loop
 * and checkpoints of mmp-train-step (and the predictor of mmp-eval).
 *
 * Checkpoint = safetensors with torch state_dict names (see head.h) plus
 *   "standardize.mean", "standardize.std"  [D]   feature standardization
 *   "optim.<param>.exp_avg", "optim.<param>.exp_avg_sq" (AdamW),
 *   "optim.<param>.momentum_buffer" (SGD with momentum)
 *   (whole-backbone heads, mmp_trainer_optim_apart: the optim.* tensors are in
 *   a file of their own beside it, mmp_train_optim_path; the checkpoint adds
 *   the BN num_batches_tracked buffers so that it is the published state dict)
 * and __metadata__ string key/values: every configuration key of
 * mmp_train_cfg (same names as the command-line options, e.g. "lr",
 * "weight_decay", "head", "hidden"), the training state ("step", "epoch",
 * "best_metric", "best_epoch", "bad_epochs"), "format" = "mmpipe-head",
 * "in_dim", "pair_dim", "num_classes", "classes" (JSON list),
 * "provenance" (of the training features), "text_provenance" (of the pair
 * embeddings, pair and fusion heads), "feature", "pair_field"; fusion heads
 * also "fuse.mode" (gated|attention) and "fuse.heads" (attention), the keys
 * lib/fuse's checkpoint reader uses, so mmp-fuse --checkpoint applies the
 * fusion part of the same file (it ignores classifier.* and optim.*).
 * mnv2-tail heads also "backbone", "from" (features.K: the input block;
 * resnet-tail: layerL or layerL.i),
 * "in_hw" (its spatial size) and the frozen BN buffers
 * features.*.running_mean/running_var (see train/cnn_tail.h).
 */
#ifndef MMP_TRAIN_TRAIN_H
#define MMP_TRAIN_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "mmp.h"
#include "train/head.h"
#include "train/layers.h"
#include "train/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { MMP_LOSS_CE = 0, MMP_LOSS_BCE, MMP_LOSS_CONTRASTIVE, MMP_LOSS_TRIPLET } mmp_loss_kind;
const char *mmp_loss_name(mmp_loss_kind k);
int mmp_loss_parse(const char *s, mmp_loss_kind *k);

typedef struct {
    /* head */
    mmp_head_kind head;
    int nhidden;
    int64_t hidden[MMP_HEAD_MAX_HIDDEN];
    double dropout;
    int64_t proj_dim;     /* pair heads: E */
    int64_t fuse_dim;     /* fusion heads (gated, attention): F (256) */
    int heads;            /* attention fusion heads (4) */
    /* loss */
    mmp_loss_kind loss;
    double label_smoothing;
    char class_weights[1024]; /* "" | "balanced" | "w0,w1,..." */
    double margin;        /* triplet */
    int mining_hard;      /* triplet: 1 = batch-hard, 0 = all in-batch negatives */
    /* optimization */
    mmp_optim opt;
    mmp_sched sched;      /* sched.total: 0 = epochs * batches per epoch */
    double clip;          /* max total gradient L2 norm; 0 = off */
    int64_t batch;
    int epochs;
    uint64_t seed;
    int standardize;      /* -1 = default (on for linear heads with ce/bce) */
    int patience;         /* early stopping (with a dev set); 0 = off */
    /* data */
    char feature[64];     /* "embedding" */
    char pair_field[64];  /* "text_embedding" */
    char labels_field[64];/* "labels" (bce) */
    /* mnv2-tail head */
    char backbone[1024];  /* the pretrained MobileNetV2 (safetensors) the tail starts from */
    int from;             /* input = output of features.FROM (-1: from the stream's embed.layer) */
    int64_t in_h, in_w;   /* input spatial size of the tail (0: from the stream's embed.size) */
    /* resnet-tail head (backbone, in_h/in_w as above): input = the output of
     * layer RN_LAYER (block RN_BLOCK, -1 = the whole stage); 0 = from the stream's embed.layer */
    int rn_layer, rn_block;
    /* whole network from the image (--from input): the tail starts at the stem
     * (features.0 / conv1) and the stream carries images (u8 [H,W,3], or
     * normalized f32/f16 [3,H,W]); in_h/in_w = the image size */
    int from_input;
    int freeze_bn;        /* BatchNorm in eval mode (1) or train mode (0); -1: train mode for --from input, else frozen */
    float in_mean[3], in_std[3]; /* --from input: the normalization (in_std[0] = 0: the backbone's) */
    /* loop (train/loop.c) */
    int grad_accum;       /* micro-batches of --batch-size per optimizer step (1) */
    int skip_nonfinite;   /* a non-finite loss or gradient: 1 skip the step, 0 stop */
    int recompute;        /* --recompute: activation recomputation per encoder block (transformer) */
    /* augmentation of u8 image records in the training loop (mmp_dataset_augment);
     * lib/image's ops in this order: rrc, pad-crop, hflip, jitter */
    char aug_rrc[64];     /* "SIZE[,SCALE_MIN,SCALE_MAX]" ("" off) */
    int64_t aug_crop;     /* RandomCrop size (0 off) */
    int aug_pad;          /* its padding */
    double aug_hflip;     /* RandomHorizontalFlip probability (0 off) */
    char aug_jitter[64];  /* "B,C,S,H" ColorJitter ("" off) */
    /* freezing (--unfreeze head|last:N|all|norm|lora; mmp_unfreeze_parse) and LoRA */
    char unfreeze[32];
    int unfreeze_kind, unfreeze_n; /* MMP_UNFREEZE_* (train/cnn_tail.h), N of last:N */
    int lora_rank;
    double lora_alpha, lora_dropout;
    char lora_targets[512]; /* comma-separated PEFT target_modules; "": the family's default */
    /* transformer head (train/tx_head.h): backbone = the model; in_h/in_w, in_mean/in_std: its images */
    int modality;         /* -1 auto (from the model and the records), 0 image records, 1 text records */
    int max_length;       /* text: tokens per record, start/end included (0: the model's);
                           * caption: the caption's tokens + EOS (0: from the decoder's context, at most 64) */
    /* VQA heads (train/vqa_cmd.h): backbone = the text tower of the questions; fuse_dim = D, heads */
    int64_t answers;      /* --answers K: the answer vocabulary's size (3000) */
    int fuse_layers;      /* --fuse-layers L: cross-attention layers (2) */
    int img_layers;       /* --img-layers N: image self-attention layers before them (0) */
    int vqa_pos;          /* --vqa-pos grid (1): learned position embeddings of the image grid; none (0) */
    /* caption head (train/caption_train.h) */
    char mapper[16];      /* mlp | transformer */
    int prefix_length;    /* K */
    int mapper_layers;    /* transformer mapper layers */
    char decoder[1024];   /* the GPT-2 folder ("" + the sizes below: from scratch) */
    int decoder_layers, decoder_width, decoder_heads, decoder_context;
    char tokenizer[1024]; /* a tokenizer.json (WordLevel) or a GPT-2 vocab.json/merges.txt folder ("": the decoder's / built) */
    int min_count;        /* the scratch vocabulary: words seen at least this often */
    char captions_field[64];
    int64_t feat_dim, feat_tokens; /* the records' feature: [feat_tokens, feat_dim] or [feat_dim] (feat_tokens 0) */
    int text_unfreeze;    /* --text-unfreeze: the text tower frozen (0, head), its LoRA adapters (1, lora)
                           * or all its weights (2, all) train with the fusion model */
} mmp_train_cfg;

/* The configuration options (train/config.c), one entry each: the option
 * (--weight-decay), its metadata key (weight_decay), type and range, default,
 * help. Targets are relative to an mmp_train_cfg (an include's base);
 * mmp-train-step includes the table in its command line with .record, which
 * collects the options given as key -> value. The entry order is the order
 * of the keys in a checkpoint. Entries flagged MMP_TRAIN_OPTION_ARCH
 * describe the architecture: a checkpoint's cannot be changed. */
extern const mmp_option mmp_train_options[];
#define MMP_TRAIN_OPTION_ARCH MMP_OPTION_USER

/* Every option at its default (auto where it depends on others). */
void mmp_train_cfg_defaults(mmp_train_cfg *c);
/* Sets one option by its key (the option without "--" and with '-' as '_',
 * e.g. "weight_decay"). 0 ok, -1 unknown key or bad value (why in err). */
int mmp_train_cfg_set(mmp_train_cfg *c, const char *key, const char *val, char *err, size_t errlen);
/* 1 when key is an architecture key (head, hidden, proj_dim, fields ...). */
int mmp_train_cfg_is_arch(const char *key);
/* Writes every key into meta (the checkpoint's __metadata__), in table order. */
void mmp_train_cfg_to_meta(const mmp_train_cfg *c, mmp_meta *m);
/* Reads back whatever keys meta has. */
int mmp_train_cfg_from_meta(mmp_train_cfg *c, const mmp_meta *m, char *err, size_t errlen);
/* Resolves the automatic choices: head (linear, mlp, pair), dropout, lr,
 * weight decay (the optimizer's), standardization. */
void mmp_train_cfg_resolve(mmp_train_cfg *c);
/* The options fit together (loss and head, --hidden and --head mlp,
 * --schedule step and --step-size ...). 0 or -1 with the reason. */
int mmp_train_cfg_check(const mmp_train_cfg *c, char *err, size_t errlen);
/* The --aug-* values parse (mmp_train_cfg_check). 0 or -1 with the reason. */
int mmp_train_aug_check(const mmp_train_cfg *c, char *err, size_t errlen);

/* ---------------------------------------------------------------- */
/* data sets in memory                                               */
/* ---------------------------------------------------------------- */

typedef struct {
    int64_t n, dim, dim2, ncls;
    float *x;        /* [n,dim] */
    float *x2;       /* [n,dim2] pair embeddings or NULL */
    int64_t *y;      /* [n] labels (MMP_NO_LABEL allowed when unused) */
    float *t;        /* [n,ncls] multi-label targets or NULL */
    char **ids;      /* [n] (may hold NULLs) */
    mmp_header hdr;  /* the stream header: classes, provenance ... */
    char name[256];
    int64_t img_h, img_w; /* mmp_dataset_load_images: the model's input size (dim = 3*H*W; after augmentation) */
    /* u8 [H,W,3] image records stay u8 in memory (x = NULL): u8 [n, raw_h, raw_w, 3],
     * normalized with mean/std (ToTensor + Normalize) per row by mmp_dataset_row */
    uint8_t *u8;
    int64_t raw_h, raw_w;
    float mean[3], std[3];
    void *aug;            /* mmp_aug of lib/image: mmp_dataset_augment: the training loop's augmentation (NULL: none) */
    uint64_t aug_seed;
} mmp_dataset;

/* Reads a whole stream. feature must be present in every record as a 1-D
 * float tensor (f32/f16/bf16) of one length; pair (may be NULL) likewise;
 * labels_field (may be NULL) an f32 [C] multi-label target. need_label:
 * every record needs label >= 0 (and < the header's class count when it
 * has one). 0 ok; -1 with "NAME: record N: what" in err. */
int mmp_dataset_load(mmp_dataset *d, const char *path, const char *feature, const char *pair,
                     const char *labels_field, int need_label, char *err, size_t errlen);
/* Reads a whole stream of images (field: u8 [H,W,3] normalized here with
 * mean/std as torchvision's ToTensor + Normalize, or f32/f16 [3,H,W] already
 * normalized: the header's image.mean/image.std must match, as mmp-embed
 * checks them (mmp_check_normalization; allow_mixed: a warning on stderr)).
 * x = [n, 3*H*W] in C,H,W order; every image of one size. need_label as
 * mmp_dataset_load. 0 or -1 with "NAME: record N: what" in err. */
int mmp_dataset_load_images(mmp_dataset *d, const char *path, const char *field, const float mean[3], const float std[3],
                            int allow_mixed, const char *model, int need_label, char *err, size_t errlen);
/* One image tensor t (u8 [H,W,3] or f32/f16 [3,H,W]) -> out[3*H*W] (C,H,W),
 * normalized with mean/std when u8. 0, or -1 with the reason (no prefix). */
int mmp_image_to_chw(const mmp_tensor *t, int chw, int64_t H, int64_t W, const float mean[3], const float std[3], float *out,
                     char *err, size_t errlen);
/* The backbone's input normalization: __metadata__ input_mean/input_std of
 * the safetensors file, else torchvision's ImageNet defaults. 0 or -1. */
int mmp_backbone_normalization(const char *path, float mean[3], float std[3], char *err, size_t errlen);
/* mmp-train-step's read of a training or dev stream for configuration c
 * (resolved here): images for a tail --from input (the normalization from
 * the backbone when c has none yet, recorded in c), else feature records
 * (mmp_dataset_load). 0 or -1 with err. */
int mmp_train_load_data(mmp_dataset *d, mmp_train_cfg *c, const char *path, int allow_mixed, char *err, size_t errlen);
void mmp_dataset_free(mmp_dataset *d);
/* The training loop's augmentation of the configuration (--aug-rrc, --aug-crop
 * + --aug-pad, --aug-hflip, --aug-jitter; none: 0 and d unchanged) on the u8
 * image records of d: lib/image's ops (mmp_aug_apply, the code of
 * mmp-augment) in the order rrc, pad-crop, hflip, jitter; the model's input
 * size (img_h, img_w, dim) becomes the ops' output size. -1 (err): no u8
 * images, a bad option value, images too small for --aug-crop. */
int mmp_dataset_augment(mmp_dataset *d, const mmp_train_cfg *c, char *err, size_t errlen);
/* The equivalent mmp-augment ops ("--rrc 56,scale=0.08:1 --hflip 0.5"; "" none) in buf. */
void mmp_train_aug_args(const mmp_train_cfg *c, char *buf, size_t n);
/* Row r of d as the model's input, out[dim]: the features (x), or the u8 image
 * normalized; augment (a training batch, d->aug set): the image augmented
 * first with the random stream mmp_aug_key(id, d->aug_seed, epoch, 0) --
 * mmp-augment --seed S --epoch E's for that record (records without an id:
 * the key of "#R", R the record number). 0 or -1 (err). */
int mmp_dataset_row(const mmp_dataset *d, int64_t r, int augment, uint64_t epoch, float *out, char *err, size_t errlen);
/* The header's "provenance" meta (NULL when absent). */
const char *mmp_dataset_provenance(const mmp_dataset *d);

/* Compares two provenance strings (feature extractor descriptions). 1 =
 * compatible (equal, or either unknown), 0 = mismatch. */
int mmp_train_provenance_compatible(const char *a, const char *b);

/* The pair embeddings' "text_provenance" (written by mmp-embed-text) of
 * stream header h against the model's: checked when both are known, with
 * mmp_provenance_check's wording and --allow-mixed behaviour (dies or warns). */
void mmp_train_check_text_provenance(const mmp_header *h, const char *model_tp, int allow_mixed,
                                     const char *what_a, const char *what_b);
/* The same check for a caller that reports it (mmp_cli_check): 0 same (or
 * either unknown), 1 different with allow_mixed (msg = the warning), -1
 * different (msg = the error). */
int mmp_check_text_provenance(const mmp_header *h, const char *model_tp, int allow_mixed, const char *what_a,
                              const char *what_b, char *msg, size_t msglen);
/* mmp-eval: the class names of a stream header against a model's n names,
 * when both have them: 0 the same, -1 different (msg names both: count and
 * first class). */
int mmp_check_classes(const mmp_header *h, int n, char *const *names, const char *what, const char *model, char *msg,
                      size_t msglen);

/* ---------------------------------------------------------------- */
/* trainer                                                           */
/* ---------------------------------------------------------------- */

typedef struct {
    mmp_train_cfg cfg;
    mmp_head head;
    int64_t in_dim, pair_dim, ncls;
    float *mean, *std;   /* standardization (NULL when off) */
    float *class_w;      /* resolved class weights [ncls] or NULL */
    int64_t step;        /* optimizer steps taken */
    int64_t skipped;     /* steps skipped for a non-finite loss or gradient (--skip-nonfinite) */
    float *gacc;         /* --grad-accum: the gradients summed over the micro-batches */
    char optim_id[40];   /* whole-backbone checkpoints: the token OUT and its .optim file share */
    int epoch;           /* epochs completed */
    double best_metric;  /* best dev metric so far (-inf) */
    int best_epoch, bad_epochs;
    char *provenance;    /* of the training features (may be NULL) */
    char *text_provenance; /* of the pair embeddings ("text_provenance" meta; may be NULL) */
    int clip;            /* loaded from a CLIP model: identity projections, its logit_scale */
    int nclasses_named;
    char **classes;
    char feature[64], pair_field[64];
    /* batch buffers */
    int64_t cap;
    float *bx, *bx2, *bt, *out, *dout, *za, *zb, *dza, *dzb;
    int64_t *by, *ti[3];
} mmp_trainer;

/* New model for a training set: resolves defaults (standardize, class
 * weights, schedule length), fits the standardization on ds, initializes
 * the weights from cfg->seed. 0 or -1 (err). */
int mmp_trainer_init(mmp_trainer *tr, const mmp_train_cfg *cfg, const mmp_dataset *ds, char *err,
                     size_t errlen);
/* Loads a checkpoint (weights, standardization, optimizer state, step,
 * epoch, early-stopping state, configuration). cfg_override: options set
 * on the command line (applied over the checkpoint's; architecture keys
 * must agree). 0 or -1. */
int mmp_trainer_load(mmp_trainer *tr, const char *path, const mmp_meta *cfg_override, char *err,
                     size_t errlen);
void mmp_trainer_free(mmp_trainer *tr);
/* Checks a data set against the model (dims, classes, provenance unless
 * allow_mixed). 0 or -1 (err). */
int mmp_trainer_check_data(const mmp_trainer *tr, const mmp_dataset *ds, int allow_mixed,
                           char *err, size_t errlen);
/* mmp-eval: a stream header against the model before reading records: the
 * sizes of the feature (and of a fusion head's pair field) when the schema
 * fixes them. 0 or -1 (err: "WHAT: \"embedding\" has 512 values, the model expects 1280"). */
int mmp_trainer_check_header(const mmp_trainer *tr, const mmp_header *h, const char *what, char *err, size_t errlen);
/* Applies the model's standardization to ds->x in place (no-op when off). */
void mmp_trainer_standardize(const mmp_trainer *tr, mmp_dataset *ds);
/* One epoch over ds (already standardized) in the shuffled order of
 * (seed, epoch); log (may be NULL) gets a JSON line every log_every steps.
 * Returns the mean training loss. */
double mmp_trainer_epoch(mmp_trainer *tr, const mmp_dataset *ds, FILE *log, int log_every);
/* Loss and metric on ds (standardized): metric = accuracy (ce/bce: argmax
 * vs label / exact-match of thresholded labels), pair heads: mean of
 * recall@1 both ways. */
void mmp_trainer_evaluate(mmp_trainer *tr, const mmp_dataset *ds, double *loss, double *metric);
/* A training run, as mmp-train-step does it: epochs until target (or
 * stop_after epochs in this call, -1 = no limit, or early stopping: dev set
 * and cfg.patience), each followed by the dev evaluation (best_metric,
 * best_epoch, bad_epochs), a JSON line in log (may be NULL; step lines every
 * log_every steps), the checkpoint: last after every epoch, out when the dev
 * metric improved (without a dev set last = out); a progress line. When no
 * epoch ran, out (and last) still get the state. 0, or -1 (err): a loss that
 * is not finite, a checkpoint that cannot be written. */
typedef struct {
    const char *out, *last;
    FILE *log;
    struct mmp_tensorboard_writer *tb; /* TensorBoard scalars (may be NULL): train/loss, train/lr with the
                                 log's step entries; epoch/train_loss, dev/loss, dev/accuracy
                                 (pair heads dev/recall@1) every epoch, flushed */
    int log_every;
    int target, stop_after;
    const mmp_dataset *dev;
    /* results */
    int ran;                /* epochs trained by this call */
    double train_loss;      /* of the last epoch (NaN: none) */
    double dev_loss, dev_metric;
} mmp_train_run;
int mmp_trainer_run(mmp_trainer *tr, const mmp_dataset *ds, mmp_train_run *run, char *err, size_t errlen);
/* Pair heads need in-batch negatives: at least 2 records and --batch-size >= 2. 0 or -1 (err). */
int mmp_trainer_check_batches(const mmp_trainer *tr, const mmp_dataset *ds, char *err, size_t errlen);
/* The default --last of a run with --dev: OUT with ".last" before the extension (heap). */
char *mmp_train_last_path(const char *out);
/* Writes the checkpoint atomically. 0 or -1 (err). Whole-backbone training
 * (mmp_trainer_optim_apart): path holds the weights under the published
 * names (+ __metadata__, "optim_apart" = "1") and
 * the optimizer state (optim.*) goes to mmp_train_optim_path(path), written
 * atomically first; both files carry the same "optim_id". */
int mmp_trainer_save(const mmp_trainer *tr, const char *path, char *err, size_t errlen);
/* 1 when tr's checkpoints keep the optimizer state apart (a CNN tail --from input). */
int mmp_trainer_optim_apart(const mmp_trainer *tr);
/* OUT with ".optim" before the extension (heap): a.safetensors -> a.optim.safetensors. */
char *mmp_train_optim_path(const char *out);
/* --init / --resume of a checkpoint with optim_apart in its metadata: reads
 * the optimizer state from mmp_train_optim_path(path) (0 when there is none to
 * read); -1 (err) when that file is missing or belongs to another save. */
int mmp_trainer_load_optim(mmp_trainer *tr, const char *path, char *err, size_t errlen);
/* The parts of that mechanism, shared with --head clip (train/clip_ft.h):
 * the optimizer state of parameters p[0..np) as "optim.<name>.<state>"
 * tensors (the parameter's shape) into w, and back from st (a state missing
 * from st stays unset: not used yet); the token OUT and its .optim file share
 * (a hash of the weights and state[0..nstate), state[0] the step); opening
 * mmp_train_optim_path(path): one line in err when it is missing, not of
 * this format, or (id not NULL) of another save. 0 or -1. */
void mmp_train_optim_add(const mmp_param *p, int np, const mmp_optim *o, mmp_st_writer *w);
int mmp_train_optim_read(mmp_param *p, int np, const mmp_optim *o, const mmp_safetensors *st, char *err, size_t errlen);
void mmp_train_optim_id(const mmp_param *p, int np, const int64_t *state, int nstate, char *buf, size_t n);
int mmp_train_optim_open(const char *path, const char *format, const char *id, mmp_safetensors *st, char *err, size_t errlen);
/* Memory of one training batch of N records: saved activations (kept from
 * the forward for the backward) and backward buffers as the head reports them
 * (mmp_head.batch_bytes; 0 when the head has no such hook), parameters,
 * gradients and optimizer state (AdamW 2, SGD with momentum 1 per parameter),
 * in bytes. */
typedef struct {
    int64_t saved, work, params, grads, optim;
} mmp_train_memory;
void mmp_trainer_memory(const mmp_trainer *tr, int64_t N, mmp_train_memory *m);
/* Batch inference: logits[N,C] (linear/mlp) for standardized x[N,D]. */
void mmp_trainer_predict(mmp_trainer *tr, const float *x, int64_t N, float *logits);

/* Inference as mmp-eval does it, for N records:
 * x[N,D] raw features (standardized here, in place);
 * linear/mlp: logits[N,C];
 * pair: za[N,E] = normalized image projections, zb[N,E] = normalized text
 * projections when x2 (raw pair embeddings) is given; with prompts[C,E]
 * (mmp_trainer_prompts) zero-shot logits[N,C] = exp(logit_scale) * za . prompt. */
void mmp_trainer_infer(mmp_trainer *tr, float *x, const float *x2, int64_t N, const float *prompts,
                       int64_t C, float *logits, float *za, float *zb);
/* Fusion heads (gated, attention): logits[N,C] from the raw inputs a = x[N,D]
 * and b = x2[N,D2] (no standardization); fused (may be NULL) gets the fused
 * vectors h[N,F]. Computed in blocks of MMP_TRAIN_FUSE_ROWS rows, mmp-fuse's
 * batch: for a stream fed in calls of a multiple of that many rows, the same
 * bits as mmp-fuse --checkpoint (sgemm's rounding may depend on the row count;
 * otherwise they agree to float rounding). */
#define MMP_TRAIN_FUSE_ROWS 64
void mmp_trainer_infer_fuse(mmp_trainer *tr, const float *x, const float *x2, int64_t N, float *fused,
                            float *logits);
/* Zero-shot class prompts for a pair head: the n text embeddings emb[n,D2]
 * are projected and L2-normalized; those of one class (labels[i], or i when
 * labels is NULL) are averaged and normalized again (CLIP prompt
 * ensembling) into out[C,E]. -1 (err) when a label is out of range or a
 * class has no prompt. */
int mmp_trainer_prompts(mmp_trainer *tr, const float *emb, const int64_t *labels, int64_t n, int64_t C,
                        float *out, char *err, size_t errlen);
/* L2-normalizes each of the N rows of x[N,E] in place (F.normalize, eps 1e-12). */
void mmp_l2_normalize_rows(float *x, int64_t N, int64_t E);

#ifdef __cplusplus
}
#endif
#endif
