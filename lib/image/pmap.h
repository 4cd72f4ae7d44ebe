/* Ordered parallel map: a producer thread reads items into slots, N worker
 * threads transform them, and the calling thread consumes them strictly in
 * input order. Memory is bounded by the number of slots. Output does not
 * depend on the number of threads (each item is processed independently). */
#ifndef MMP_IMAGE_PMAP_H
#define MMP_IMAGE_PMAP_H

#include <stddef.h>

typedef struct {
    /* Fills slot with the next item: 1 = produced, 0 = end, -1 = fatal
     * (stops the map; mmp_pmap returns -1). Runs in the producer thread. */
    int (*produce)(void *ctx, void *slot);
    /* Processes one slot; tid in [0, nthreads). Runs in a worker. */
    void (*work)(void *ctx, void *slot, int tid);
    /* Consumes one slot, in order, in the calling thread. Returns 0, or
     * non-zero to stop early (mmp_pmap returns that value). */
    int (*consume)(void *ctx, void *slot);
    void *ctx;
    size_t slot_size;
    int nthreads; /* workers; 1 = everything inline in the calling thread */
    int nslots;   /* 0 = 4 * nthreads + 4 */
    /* Optional: after consume stopped the map early, frees what an item
     * produced but not consumed holds (processed or not); NULL = nothing. */
    void (*discard)(void *ctx, void *slot);
} mmp_pmap_spec;

/* Runs the map; slots are zeroed before their first use, and left as
 * consume leaves them (consume should reset what it frees). 0 = all
 * consumed; -1 = produce failed; else consume's stop value. */
int mmp_pmap(const mmp_pmap_spec *spec);

#endif
