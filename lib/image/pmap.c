/* Ordered parallel map (see pmap.h). */
#include "image/pmap.h"

#include "mmp.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { S_EMPTY = 0, S_LOADED, S_BUSY, S_DONE };

typedef struct {
    const mmp_pmap_spec *sp;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *slots;
    int *state;
    int nslots;
    uint64_t produced;  /* items produced so far */
    uint64_t next_work; /* next item index to process */
    uint64_t consumed;  /* items consumed so far */
    int prod_done, prod_failed, stop;
} pm;

#define SLOT(p, i) ((p)->slots + (size_t)((i) % (uint64_t)(p)->nslots) * (p)->sp->slot_size)

static void *producer(void *arg) {
    pm *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->stop && p->produced - p->consumed >= (uint64_t)p->nslots) pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        uint64_t i = p->produced;
        pthread_mutex_unlock(&p->mu);
        /* the slot is ours: no one else touches an EMPTY slot */
        int r = p->sp->produce(p->sp->ctx, SLOT(p, i));
        pthread_mutex_lock(&p->mu);
        if (r == 1) {
            p->state[i % (uint64_t)p->nslots] = S_LOADED;
            p->produced++;
        } else {
            p->prod_done = 1;
            if (r < 0) p->prod_failed = 1;
        }
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        if (r != 1) break;
    }
    return NULL;
}

typedef struct {
    pm *p;
    int tid;
} warg;

static void *worker(void *arg) {
    warg *w = arg;
    pm *p = w->p;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->stop && p->next_work >= p->produced && !p->prod_done) pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop || p->next_work >= p->produced) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        uint64_t i = p->next_work++;
        p->state[i % (uint64_t)p->nslots] = S_BUSY;
        pthread_mutex_unlock(&p->mu);
        p->sp->work(p->sp->ctx, SLOT(p, i), w->tid);
        pthread_mutex_lock(&p->mu);
        p->state[i % (uint64_t)p->nslots] = S_DONE;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

/* One thread: produce, work, consume in turn, without thread hand-offs. */
static int run_inline(const mmp_pmap_spec *sp) {
    void *slot = mmp_xcalloc(1, sp->slot_size);
    int ret = 0;
    for (;;) {
        int r = sp->produce(sp->ctx, slot);
        if (r != 1) {
            ret = r < 0 ? -1 : 0;
            break;
        }
        sp->work(sp->ctx, slot, 0);
        r = sp->consume(sp->ctx, slot);
        if (r) {
            ret = r;
            break;
        }
    }
    free(slot);
    return ret;
}

int mmp_pmap(const mmp_pmap_spec *sp) {
    if (sp->nthreads <= 1) return run_inline(sp);
    pm p;
    memset(&p, 0, sizeof p);
    p.sp = sp;
    int nt = sp->nthreads < 1 ? 1 : sp->nthreads;
    p.nslots = sp->nslots > 0 ? sp->nslots : 4 * nt + 4;
    p.slots = mmp_xcalloc((size_t)p.nslots, sp->slot_size);
    p.state = mmp_xcalloc((size_t)p.nslots, sizeof(int));
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    pthread_t prod, *th = mmp_xmalloc(sizeof(pthread_t) * nt);
    warg *wa = mmp_xmalloc(sizeof(warg) * nt);
    if (pthread_create(&prod, NULL, producer, &p)) mmp_die("cannot create a thread");
    for (int t = 0; t < nt; t++) {
        wa[t] = (warg){&p, t};
        if (pthread_create(&th[t], NULL, worker, &wa[t])) mmp_die("cannot create a thread");
    }
    int ret = 0;
    for (;;) {
        pthread_mutex_lock(&p.mu);
        uint64_t i = p.consumed;
        while (!(i < p.produced && p.state[i % (uint64_t)p.nslots] == S_DONE) && !(p.prod_done && i >= p.produced))
            pthread_cond_wait(&p.cv, &p.mu);
        if (i >= p.produced) { /* producer finished and all consumed */
            if (p.prod_failed) ret = -1;
            pthread_mutex_unlock(&p.mu);
            break;
        }
        pthread_mutex_unlock(&p.mu);
        int r = sp->consume(sp->ctx, SLOT(&p, i));
        pthread_mutex_lock(&p.mu);
        p.state[i % (uint64_t)p.nslots] = S_EMPTY;
        p.consumed++;
        if (r) {
            ret = r;
            p.stop = 1;
        }
        pthread_cond_broadcast(&p.cv);
        pthread_mutex_unlock(&p.mu);
        if (r) break;
    }
    pthread_mutex_lock(&p.mu);
    p.stop = 1;
    pthread_cond_broadcast(&p.cv);
    pthread_mutex_unlock(&p.mu);
    pthread_join(prod, NULL);
    for (int t = 0; t < nt; t++) pthread_join(th[t], NULL);
    if (sp->discard)
        for (uint64_t i = p.consumed; i < p.produced; i++) sp->discard(sp->ctx, SLOT(&p, i));
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
    free(th);
    free(wa);
    free(p.slots);
    free(p.state);
    return ret;
}
