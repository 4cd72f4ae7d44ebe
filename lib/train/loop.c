/* train/loop.c: the training loop: batches in the shuffled order of
 * (seed, epoch), forward + loss + backward, clipping, the optimizer step
 * with the schedule's learning rate; evaluation on a dev set. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/caption_train.h"
#include "train/cnn_tail.h"
#include "train/metrics.h"
#include "train/tensorboard.h"
#include "train/train.h"

#define LOGIT_SCALE_MAX 4.605170185988092 /* log(100), CLIP's clamp */

static void grow_batch(mmp_trainer *tr, int64_t B) {
    if (B <= tr->cap) return;
    size_t b = (size_t)B;
    int64_t C = tr->head.out_dim;
    tr->bx = mmp_xrealloc(tr->bx, sizeof(float) * b * (size_t)tr->in_dim);
    tr->bx2 = mmp_xrealloc(tr->bx2, sizeof(float) * b * (size_t)(tr->pair_dim + 1));
    tr->bt = mmp_xrealloc(tr->bt, sizeof(float) * b * (size_t)(tr->ncls + 1));
    tr->out = mmp_xrealloc(tr->out, sizeof(float) * b * (size_t)C);
    tr->dout = mmp_xrealloc(tr->dout, sizeof(float) * b * (size_t)C);
    tr->za = mmp_xrealloc(tr->za, sizeof(float) * b * (size_t)C);
    tr->zb = mmp_xrealloc(tr->zb, sizeof(float) * b * (size_t)C);
    tr->dza = mmp_xrealloc(tr->dza, sizeof(float) * b * (size_t)C);
    tr->dzb = mmp_xrealloc(tr->dzb, sizeof(float) * b * (size_t)C);
    tr->by = mmp_xrealloc(tr->by, sizeof(int64_t) * b);
    size_t nt = tr->cfg.loss == MMP_LOSS_TRIPLET ? b * (b > 1 ? b - 1 : 1) : 1;
    for (int k = 0; k < 3; k++) tr->ti[k] = mmp_xrealloc(tr->ti[k], sizeof(int64_t) * nt);
    tr->cap = B;
}


void mmp_trainer_standardize(const mmp_trainer *tr, mmp_dataset *ds) {
    if (tr->mean) mmp_standardize_apply(ds->x, ds->n, ds->dim, tr->mean, tr->std);
}

/* rows idx[0..m) of ds into the batch buffers; augment: a training batch
 * (ds's augmentation, if any, with the random streams of epoch tr->epoch) */
static int gather(mmp_trainer *tr, const mmp_dataset *ds, const int64_t *idx, int64_t m, int augment, char *err, size_t errlen) {
    for (int64_t b = 0; b < m; b++) {
        int64_t r = idx[b];
        if (mmp_dataset_row(ds, r, augment, (uint64_t)tr->epoch, tr->bx + b * tr->in_dim, err, errlen)) return -1;
        if (ds->x2 && tr->pair_dim) memcpy(tr->bx2 + b * tr->pair_dim, ds->x2 + r * ds->dim2, sizeof(float) * (size_t)ds->dim2);
        if (ds->t) memcpy(tr->bt + b * tr->ncls, ds->t + r * ds->ncls, sizeof(float) * (size_t)ds->ncls);
        tr->by[b] = ds->y[r];
    }
    return 0;
}

/* forward + loss (+ gradients when grad) on the gathered batch */
static double batch_loss(mmp_trainer *tr, int64_t m, int grad, uint64_t *drng) {
    mmp_train_cfg *c = &tr->cfg;
    mmp_head *h = &tr->head;
    double l;
    if (h->capt) /* the captions' NLL; LoRA dropout masks from the step's stream */
        return mmp_caption_loss(h->capt, tr->bx, (int)m, c->label_smoothing, grad, drng ? *drng : 0, NULL);
    if (MMP_HEAD_IS_FUSE(h->kind)) {
        mmp_head_fuse_forward(h, tr->bx, tr->bx2, m, NULL, tr->out);
        if (c->loss == MMP_LOSS_CE)
            l = mmp_ce_loss(tr->out, tr->by, m, tr->ncls, tr->class_w, c->label_smoothing, grad ? tr->dout : NULL);
        else
            l = mmp_bce_logits_loss(tr->out, tr->bt, m, tr->ncls, grad ? tr->dout : NULL);
        if (grad) mmp_head_fuse_backward(h, tr->bx, tr->bx2, m, tr->dout);
        return l;
    }
    if (h->kind != MMP_HEAD_PAIR) {
        mmp_head_forward(h, tr->bx, m, grad, drng, tr->out);
        if (c->loss == MMP_LOSS_CE)
            l = mmp_ce_loss(tr->out, tr->by, m, tr->ncls, tr->class_w, c->label_smoothing, grad ? tr->dout : NULL);
        else
            l = mmp_bce_logits_loss(tr->out, tr->bt, m, tr->ncls, grad ? tr->dout : NULL);
        if (grad) mmp_head_backward(h, tr->bx, m, tr->dout);
        return l;
    }
    int64_t E = h->out_dim;
    mmp_head_pair_forward(h, tr->bx, tr->bx2, m, tr->za, tr->zb);
    if (c->loss == MMP_LOSS_CONTRASTIVE) {
        mmp_param *ls = &h->params[2];
        l = mmp_clip_loss(tr->za, tr->zb, m, E, ls->w[0], grad ? tr->dza : NULL, grad ? tr->dzb : NULL,
                          grad ? ls->g : NULL);
    } else {
        int64_t T = mmp_triplet_mine(tr->za, tr->zb, m, E, c->mining_hard, tr->ti[0], tr->ti[1], tr->ti[2]);
        if (grad) {
            memset(tr->dza, 0, sizeof(float) * (size_t)(m * E));
            memset(tr->dzb, 0, sizeof(float) * (size_t)(m * E));
        }
        l = mmp_triplet_loss(tr->za, tr->zb, tr->zb, tr->ti[0], tr->ti[1], tr->ti[2], T, E, c->margin,
                             grad ? tr->dza : NULL, grad ? tr->dzb : NULL, grad ? tr->dzb : NULL);
    }
    if (grad) mmp_head_pair_backward(h, tr->bx, tr->bx2, m, tr->dza, tr->dzb);
    return l;
}

/* The weight of a micro-batch in its optimizer step's mean loss: the sum of
 * the class weights of its labels (ce: PyTorch's weighted mean divides by
 * it), else its record count. */
static double batch_weight(const mmp_trainer *tr, const int64_t *idx, const mmp_dataset *ds, int64_t m) {
    if (tr->cfg.loss != MMP_LOSS_CE || !tr->class_w) return (double)m;
    double w = 0;
    for (int64_t k = 0; k < m; k++) w += tr->class_w[ds->y[idx[k]]];
    return w;
}

static size_t nparam_floats(const mmp_head *h) {
    size_t n = 0;
    for (int i = 0; i < h->np; i++) n += h->params[i].n;
    return n;
}

/* acc (+)= f * g over all parameters (first: acc = f * g) */
static void accumulate(mmp_head *h, float *acc, float f, int first) {
    for (int i = 0; i < h->np; i++) {
        const float *g = h->params[i].g;
        size_t n = h->params[i].n;
        if (first)
            for (size_t k = 0; k < n; k++) acc[k] = f * g[k];
        else
            for (size_t k = 0; k < n; k++) acc[k] += f * g[k];
        acc += n;
    }
}

static void restore_grads(mmp_head *h, const float *acc) {
    for (int i = 0; i < h->np; i++) {
        memcpy(h->params[i].g, acc, sizeof(float) * h->params[i].n);
        acc += h->params[i].n;
    }
}

static int grads_finite(const mmp_head *h) {
    for (int i = 0; i < h->np; i++) {
        const float *g = h->params[i].g;
        float s = 0;
        for (size_t k = 0; k < h->params[i].n; k++) s += g[k] * 0.0f; /* NaN for any NaN or Inf */
        if (s != 0) return 0;
    }
    return 1;
}

/* train-mode BatchNorm moves the running statistics in the forward: a
 * skipped step puts them back (snapshot: [sum of the units' 2*cout]) */
static float *bn_snapshot(const mmp_head *h, float *buf) {
    const mmp_cnn_tail *t = h->tail;
    if (!t || !t->train_bn) return buf;
    size_t n = 0;
    for (int k = 0; k < t->nu; k++) n += t->u[k].mean ? 2 * (size_t)t->u[k].cout : 0;
    buf = mmp_xrealloc(buf, sizeof(float) * (n ? n : 1));
    float *p = buf;
    for (int k = 0; k < t->nu; k++) {
        const mmp_tail_unit *u = &t->u[k];
        if (!u->mean) continue;
        memcpy(p, u->mean, sizeof(float) * (size_t)u->cout);
        memcpy(p + u->cout, u->var, sizeof(float) * (size_t)u->cout);
        p += 2 * u->cout;
    }
    return buf;
}
static void bn_restore(mmp_head *h, const float *buf) {
    mmp_cnn_tail *t = h->tail;
    if (!t || !t->train_bn || !buf) return;
    for (int k = 0; k < t->nu; k++) {
        mmp_tail_unit *u = &t->u[k];
        if (!u->mean) continue;
        memcpy(u->mean, buf, sizeof(float) * (size_t)u->cout);
        memcpy(u->var, buf + u->cout, sizeof(float) * (size_t)u->cout);
        buf += 2 * u->cout;
    }
}

/* One epoch; step entries in log and tb (may be NULL) every log_every steps;
 * target > 0: a live progress line "epoch E/TARGET: S/N steps ...". An
 * optimizer step takes --grad-accum micro-batches of --batch-size records
 * (the last one of an epoch what is left): each micro-batch's gradients are
 * scaled by its weight w_i / sum w (batch_weight) and summed, so the step is
 * that of the mean loss over all of them. *mean_loss: the mean training loss
 * (NaN: no step counted). -1 (err): a non-finite loss or gradient without
 * --skip-nonfinite, an augmentation that failed. */
static int run_epoch(mmp_trainer *tr, const mmp_dataset *ds, FILE *log, int log_every, mmp_tensorboard_writer *tb, int target,
                     double *mean_loss, char *err, size_t errlen) {
    mmp_train_cfg *c = &tr->cfg;
    int64_t n = ds->n, B = c->batch, K = c->grad_accum > 1 ? c->grad_accum : 1;
    grow_batch(tr, B);
    int64_t *perm = mmp_xmalloc(sizeof(int64_t) * (size_t)n);
    uint64_t rng = mmp_rng_derive(c->seed, 0x5348554646ULL /* SHUFF */, (uint64_t)tr->epoch);
    mmp_rng_permutation(&rng, perm, n);
    int pairloss = tr->head.kind == MMP_HEAD_PAIR, ret = 0;
    if (K > 1 && !tr->gacc) tr->gacc = mmp_xmalloc(sizeof(float) * (nparam_floats(&tr->head) + 1));
    float *bnsave = NULL;
    double sum = 0;
    int64_t counted = 0;
    int live = target > 0 && mmp_progress_enabled();
    uint64_t nsteps = 0, done = 0;
    char what[64] = "";
    double t0 = 0;
    if (live) {
        for (int64_t s0 = 0; s0 < n; s0 += B * K) {
            int any = 0;
            for (int64_t s = s0; s < n && s < s0 + B * K; s += B) any |= !(pairloss && n - s < 2);
            nsteps += any;
        }
        snprintf(what, sizeof what, "epoch %d/%d", tr->epoch + 1, target);
        t0 = mmp_now();
    }
    for (int64_t s0 = 0; s0 < n; s0 += B * K) {
        int64_t s1 = s0 + B * K < n ? s0 + B * K : n;
        double wsum = 0;
        int64_t mtot = 0;
        for (int64_t s = s0; s < s1; s += B) {
            int64_t m = s1 - s < B ? s1 - s : B;
            if (pairloss && m < 2) continue; /* no in-batch negatives */
            wsum += batch_weight(tr, perm + s, ds, m);
            mtot += m;
        }
        if (mtot == 0) continue;
        if (c->skip_nonfinite) bnsave = bn_snapshot(&tr->head, bnsave);
        double l = 0;
        int first = 1;
        for (int64_t s = s0, k = 0; s < s1; s += B, k++) {
            int64_t m = s1 - s < B ? s1 - s : B;
            if (pairloss && m < 2) continue;
            if (gather(tr, ds, perm + s, m, 1, err, errlen)) { ret = -1; goto out; }
            /* dropout: the stream of the step (micro-batch 0: as without --grad-accum) */
            uint64_t drng = mmp_rng_derive(c->seed, 0x44524F50ULL /* DROP */ ^ ((uint64_t)k << 40), (uint64_t)tr->step);
            double li = batch_loss(tr, m, 1, &drng);
            if (K == 1) {
                l = li;
            } else {
                double f = batch_weight(tr, perm + s, ds, m) / wsum;
                l += li * f;
                accumulate(&tr->head, tr->gacc, (float)f, first);
            }
            first = 0;
        }
        if (K > 1) restore_grads(&tr->head, tr->gacc);
        if (!isfinite(l) || !grads_finite(&tr->head)) {
            char why[96];
            if (!isfinite(l)) snprintf(why, sizeof why, "loss is %s", isnan(l) ? "nan" : l > 0 ? "inf" : "-inf");
            else snprintf(why, sizeof why, "a gradient is not finite (loss %.6g)", l);
            if (!c->skip_nonfinite) {
                mmp_errf(err, errlen, "%s: step %lld (epoch %d): %s", ds->name, (long long)tr->step + 1, tr->epoch + 1, why);
                ret = -1;
                goto out;
            }
            bn_restore(&tr->head, bnsave); /* no update at all: weights, optimizer state, BN statistics */
            tr->skipped++;
            if (live) mmp_progress_count(what, "steps", ++done, nsteps, t0);
            continue;
        }
        if (c->clip > 0) mmp_clip_grad_norm(tr->head.params, tr->head.np, c->clip);
        double lr = mmp_sched_lr(&c->sched, tr->step);
        mmp_optim_step(&c->opt, tr->head.params, tr->head.np, tr->step, lr);
        tr->step++;
        if (tr->head.has_scale) {
            float *ls = tr->head.params[2].w;
            if (*ls < 0) *ls = 0;
            if (*ls > (float)LOGIT_SCALE_MAX) *ls = (float)LOGIT_SCALE_MAX;
        }
        sum += l * (double)mtot;
        counted += mtot;
        if (log_every > 0 && tr->step % log_every == 0) {
            if (log)
                fprintf(log, "{\"step\":%lld,\"epoch\":%d,\"loss\":%.9g,\"lr\":%.9g,\"time\":%.6f}\n", (long long)tr->step,
                        tr->epoch + 1, l, lr, mmp_wall_time());
            if (tb) {
                mmp_tensorboard_scalar(tb, "train/loss", tr->step, l);
                mmp_tensorboard_scalar(tb, "train/lr", tr->step, lr);
            }
        }
        if (live) mmp_progress_count(what, "steps", ++done, nsteps, t0);
    }
    tr->epoch++;
out:
    free(perm);
    free(bnsave);
    *mean_loss = counted ? sum / (double)counted : NAN;
    return ret;
}

double mmp_trainer_epoch(mmp_trainer *tr, const mmp_dataset *ds, FILE *log, int log_every) {
    double l;
    char err[1024];
    if (run_epoch(tr, ds, log, log_every, NULL, 0, &l, err, sizeof err)) mmp_die("%s", err);
    return l;
}

void mmp_trainer_evaluate(mmp_trainer *tr, const mmp_dataset *ds, double *loss, double *metric) {
    mmp_train_cfg *c = &tr->cfg;
    int64_t n = ds->n, B = c->batch;
    grow_batch(tr, B);
    int64_t *idx = mmp_xmalloc(sizeof(int64_t) * (size_t)B);
    double num = 0, den = 0;
    int64_t correct = 0;
    int pairloss = tr->head.kind == MMP_HEAD_PAIR;
    float *pa = NULL, *pb = NULL;
    int64_t E = tr->head.out_dim;
    if (pairloss) {
        pa = mmp_xmalloc(sizeof(float) * (size_t)(n * E));
        pb = mmp_xmalloc(sizeof(float) * (size_t)(n * E));
    }
    for (int64_t s = 0; s < n; s += B) {
        int64_t m = n - s < B ? n - s : B;
        for (int64_t k = 0; k < m; k++) idx[k] = s + k;
        char err[1024];
        if (gather(tr, ds, idx, m, 0, err, sizeof err)) mmp_die("%s", err);
        if (pairloss) {
            if (m >= 2) {
                double l = batch_loss(tr, m, 0, NULL);
                num += l * (double)m;
                den += (double)m;
            } else {
                mmp_head_pair_forward(&tr->head, tr->bx, tr->bx2, m, tr->za, tr->zb);
            }
            memcpy(pa + s * E, tr->za, sizeof(float) * (size_t)(m * E));
            memcpy(pb + s * E, tr->zb, sizeof(float) * (size_t)(m * E));
            continue;
        }
        double l = batch_loss(tr, m, 0, NULL);
        if (tr->head.capt) { /* the dev loss; the metric (higher is better) is its negative */
            num += l * (double)m;
            den += (double)m;
            continue;
        }
        double w = 0;
        if (c->loss == MMP_LOSS_CE)
            for (int64_t k = 0; k < m; k++) w += tr->class_w ? tr->class_w[tr->by[k]] : 1.0;
        else
            w = (double)m;
        num += l * w;
        den += w;
        for (int64_t k = 0; k < m; k++) {
            const float *o = tr->out + k * tr->ncls;
            if (c->loss == MMP_LOSS_CE) {
                int64_t best = 0;
                for (int64_t j = 1; j < tr->ncls; j++)
                    if (o[j] > o[best]) best = j;
                correct += best == tr->by[k];
            } else {
                int ok = 1;
                for (int64_t j = 0; j < tr->ncls; j++) ok &= (o[j] > 0) == (tr->bt[k * tr->ncls + j] > 0.5f);
                correct += ok;
            }
        }
    }
    *loss = den > 0 ? num / den : NAN;
    if (pairloss) {
        int ks[1] = {1};
        double a2b, b2a;
        mmp_retrieval_recall(pa, pb, n, E, ks, 1, &a2b, &b2a);
        *metric = (a2b + b2a) / 2;
        free(pa);
        free(pb);
    } else if (tr->head.capt) {
        *metric = -*loss;
    } else {
        *metric = (double)correct / (double)n;
    }
    free(idx);
}

int mmp_trainer_run(mmp_trainer *tr, const mmp_dataset *ds, mmp_train_run *run, char *err, size_t errlen) {
    int has_dev = run->dev != NULL, pair = tr->head.kind == MMP_HEAD_PAIR;
    run->ran = 0;
    run->train_loss = run->dev_metric = run->dev_loss = NAN;
    while (tr->epoch < run->target && (run->stop_after < 0 || run->ran < run->stop_after)) {
        if (has_dev && tr->cfg.patience > 0 && tr->bad_epochs >= tr->cfg.patience) break;
        double te = mmp_now();
        if (run_epoch(tr, ds, run->log, run->log_every, run->tb, run->target, &run->train_loss, err, errlen)) return -1;
        run->ran++;
        if (!isfinite(run->train_loss) && !tr->cfg.skip_nonfinite)
            return mmp_errf(err, errlen, "epoch %d: the training loss is not finite (lower --lr?)", tr->epoch);
        int improved = 0;
        if (has_dev) {
            mmp_trainer_evaluate(tr, run->dev, &run->dev_loss, &run->dev_metric);
            if (run->dev_metric > tr->best_metric) {
                tr->best_metric = run->dev_metric;
                tr->best_epoch = tr->epoch;
                tr->bad_epochs = 0;
                improved = 1;
            } else {
                tr->bad_epochs++;
            }
        }
        if (run->log) {
            fprintf(run->log, "{\"epoch\":%d,\"step\":%lld,\"train_loss\":%.9g,\"lr\":%.9g", tr->epoch, (long long)tr->step,
                    run->train_loss, mmp_sched_lr(&tr->cfg.sched, tr->step > 0 ? tr->step - 1 : 0));
            if (has_dev) fprintf(run->log, ",\"dev_loss\":%.9g,\"dev_metric\":%.9g", run->dev_loss, run->dev_metric);
            if (tr->cfg.skip_nonfinite) fprintf(run->log, ",\"skipped_steps\":%lld", (long long)tr->skipped);
            fprintf(run->log, ",\"seconds\":%.3f,\"time\":%.6f}\n", mmp_now() - te, mmp_wall_time());
            fflush(run->log);
        }
        if (run->tb) {
            mmp_tensorboard_scalar(run->tb, "epoch/train_loss", tr->step, run->train_loss);
            if (has_dev) {
                mmp_tensorboard_scalar(run->tb, "dev/loss", tr->step, run->dev_loss);
                if (!tr->head.capt) mmp_tensorboard_scalar(run->tb, pair ? "dev/recall@1" : "dev/accuracy", tr->step, run->dev_metric);
            }
            if (mmp_tensorboard_flush(run->tb, err, errlen)) return -1;
        }
        if (improved && mmp_trainer_save(tr, run->out, err, errlen)) return -1;
        if (mmp_trainer_save(tr, run->last, err, errlen)) return -1;
        if (has_dev && tr->head.capt)
            mmp_progress_line("epoch %d/%d: train loss %.4f, dev loss %.4f%s", tr->epoch, run->target, run->train_loss, run->dev_loss,
                              improved ? " (best)" : "");
        else if (has_dev)
            mmp_progress_line("epoch %d/%d: train loss %.4f, dev loss %.4f, dev %s %.4f%s", tr->epoch, run->target, run->train_loss,
                              run->dev_loss, pair ? "recall@1" : "accuracy", run->dev_metric, improved ? " (best)" : "");
        else
            mmp_progress_line("epoch %d/%d: train loss %.4f", tr->epoch, run->target, run->train_loss);
        if (has_dev && tr->cfg.patience > 0 && tr->bad_epochs >= tr->cfg.patience)
            fprintf(stderr, "%s: early stop after epoch %d: no dev improvement for %d epochs (best %.4f at epoch %d)\n",
                    mmp_progname(), tr->epoch, tr->bad_epochs, tr->best_metric, tr->best_epoch);
    }
    mmp_progress_done();
    if (run->ran == 0 && !(has_dev && tr->best_epoch > 0)) {
        /* nothing trained (e.g. --epochs 0): still leave a checkpoint */
        if (mmp_trainer_save(tr, run->out, err, errlen)) return -1;
        if (strcmp(run->last, run->out) && mmp_trainer_save(tr, run->last, err, errlen)) return -1;
    }
    return 0;
}

void mmp_trainer_memory(const mmp_trainer *tr, int64_t N, mmp_train_memory *m) {
    memset(m, 0, sizeof *m);
    const mmp_head *h = &tr->head;
    if (h->batch_bytes) h->batch_bytes(h->batch_model, N, &m->saved, &m->work);
    int64_t P = (int64_t)nparam_floats(h) * (int64_t)sizeof(float);
    int nstate = tr->cfg.opt.kind == MMP_OPT_ADAMW ? 2 : tr->cfg.opt.momentum > 0 ? 1 : 0;
    m->params = P;
    m->grads = P * (tr->cfg.grad_accum > 1 ? 2 : 1); /* + the --grad-accum sums */
    m->optim = P * nstate;
}
