/* train/optim.c: parameters, optimizers, clipping, schedules (see optim.h). */
#include "train/optim.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"

/* ------------------------------------------------------------------ */
/* parameters, optimizers                                              */
/* ------------------------------------------------------------------ */

void mmp_param_init(mmp_param *p, const char *name, int ndim, const int64_t *shape, int decay) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->n = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->n *= (size_t)shape[i];
    }
    p->w = mmp_xcalloc(p->n ? p->n : 1, sizeof(float));
    p->g = mmp_xcalloc(p->n ? p->n : 1, sizeof(float));
    p->decay = decay;
}

void mmp_param_free(mmp_param *p) {
    free(p->w); free(p->g); free(p->s1); free(p->s2);
    memset(p, 0, sizeof *p);
}

void mmp_optim_defaults(mmp_optim *o, mmp_opt_kind kind) {
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->weight_decay = kind == MMP_OPT_ADAMW ? 1e-2 : 0;
}

const char *mmp_optim_state_name(const mmp_optim *o, int which) {
    if (o->kind == MMP_OPT_ADAMW) return which == 0 ? "exp_avg" : "exp_avg_sq";
    return which == 0 && o->momentum != 0 ? "momentum_buffer" : NULL;
}

void mmp_optim_step(const mmp_optim *o, mmp_param *ps, int np, int64_t step, double lr) {
    for (int k = 0; k < np; k++) {
        mmp_param *p = &ps[k];
        if (p->frozen) continue; /* torch.optim skips parameters without a gradient */
        size_t n = p->n;
        float *w = p->w, *g = p->g;
        double wd = p->decay ? o->weight_decay : 0.0;
        if (o->kind == MMP_OPT_SGD) {
            float fwd = (float)wd, mom = (float)o->momentum, damp = (float)(1.0 - o->dampening);
            float flr = (float)lr;
            int first = 0;
            if (o->momentum != 0 && !p->s1) {
                p->s1 = mmp_xcalloc(n ? n : 1, sizeof(float));
                first = 1;
            }
            for (size_t i = 0; i < n; i++) {
                float d = g[i];
                if (wd != 0) d = d + fwd * w[i];
                if (o->momentum != 0) {
                    float *buf = p->s1;
                    buf[i] = first ? d : buf[i] * mom + damp * d;
                    d = o->nesterov ? d + mom * buf[i] : buf[i];
                }
                w[i] = w[i] - flr * d;
            }
        } else {
            if (!p->s1) p->s1 = mmp_xcalloc(n ? n : 1, sizeof(float));
            if (!p->s2) p->s2 = mmp_xcalloc(n ? n : 1, sizeof(float));
            double t = (double)(step + 1);
            float decay = (float)(1.0 - lr * wd);
            float b1 = (float)o->beta1, b2 = (float)o->beta2;
            float c1 = (float)(1.0 - o->beta1), c2 = (float)(1.0 - o->beta2);
            double bc1 = 1.0 - pow(o->beta1, t), bc2 = 1.0 - pow(o->beta2, t);
            float step_size = (float)(lr / bc1), bc2s = (float)sqrt(bc2), eps = (float)o->eps;
            float *m = p->s1, *v = p->s2;
            for (size_t i = 0; i < n; i++) {
                if (wd != 0) w[i] *= decay;
                m[i] = m[i] * b1 + c1 * g[i];
                v[i] = v[i] * b2 + c2 * (g[i] * g[i]);
                float denom = sqrtf(v[i]) / bc2s + eps;
                w[i] = w[i] + -step_size * (m[i] / denom);
            }
        }
    }
}

double mmp_clip_grad_norm(mmp_param *ps, int np, double max_norm) {
    double tot = 0;
    for (int k = 0; k < np; k++) {
        if (ps[k].frozen) continue;
        double s = 0;
        for (size_t i = 0; i < ps[k].n; i++) s += (double)ps[k].g[i] * ps[k].g[i];
        tot += s;
    }
    tot = sqrt(tot);
    if (max_norm > 0) {
        double coef = max_norm / (tot + 1e-6);
        if (coef < 1) {
            float c = (float)coef;
            for (int k = 0; k < np; k++)
                if (!ps[k].frozen)
                    for (size_t i = 0; i < ps[k].n; i++) ps[k].g[i] *= c;
        }
    }
    return tot;
}

/* ------------------------------------------------------------------ */
/* schedules                                                           */
/* ------------------------------------------------------------------ */

double mmp_sched_lr(const mmp_sched *s, int64_t t) {
    if (t < 0) t = 0;
    if (s->warmup > 0 && t < s->warmup) return s->lr * (double)(t + 1) / (double)s->warmup;
    int64_t u = t - (s->warmup > 0 ? s->warmup : 0);
    switch (s->kind) {
    case MMP_SCHED_STEP:
        if (s->step_size <= 0) return s->lr;
        return s->lr * pow(s->gamma, (double)(u / s->step_size));
    case MMP_SCHED_COSINE: {
        int64_t T = s->total - (s->warmup > 0 ? s->warmup : 0);
        if (T <= 0) return s->lr;
        double prog = (double)(u < T ? u : T) / (double)T;
        return s->min_lr + (s->lr - s->min_lr) * (1.0 + cos(M_PI * prog)) / 2.0;
    }
    default:
        return s->lr;
    }
}

const char *mmp_sched_name(mmp_sched_kind k) {
    return k == MMP_SCHED_STEP ? "step" : k == MMP_SCHED_COSINE ? "cosine" : "constant";
}

int mmp_sched_parse(const char *s, mmp_sched_kind *k) {
    if (!strcmp(s, "constant")) *k = MMP_SCHED_CONSTANT;
    else if (!strcmp(s, "step")) *k = MMP_SCHED_STEP;
    else if (!strcmp(s, "cosine")) *k = MMP_SCHED_COSINE;
    else return -1;
    return 0;
}
