/* Bench helper for bench/bench_decode.sh (compiled by the script against
 * build/libmmp.a): in-memory decode throughput of the library, one thread,
 * the same measurement tjbench makes (files read into memory first).
 * usage: bench_decode_lib SIZE FILE...   (SIZE 0 = native, else --size SIZE)
 * prints: images per CPU-second (one thread: = images/s on an idle core) */
#include "image/image.h"
#include "mmp.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    mmp_set_progname("bench_decode_lib");
    if (argc < 3) mmp_die("usage: bench_decode_lib SIZE FILE...");
    int size = atoi(argv[1]), n = argc - 2;
    uint8_t **buf = mmp_xmalloc(sizeof(uint8_t *) * n);
    size_t *len = mmp_xmalloc(sizeof(size_t) * n);
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(argv[i + 2], "rb");
        if (!f) mmp_die("%s: cannot open", argv[i + 2]);
        fseek(f, 0, SEEK_END);
        len[i] = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        buf[i] = mmp_xmalloc(len[i]);
        if (fread(buf[i], 1, len[i], f) != len[i]) mmp_die("%s: read error", argv[i + 2]);
        fclose(f);
    }
    mmp_img_decoder *d = mmp_img_decoder_new();
    mmp_prep p = {.size = size};
    char err[256];
    double t0 = cpu_now(), t;
    long done = 0;
    do {
        for (int i = 0; i < n; i++) {
            mmp_img im;
            if (mmp_prep_image(d, &p, buf[i], len[i], &im, err, sizeof err)) mmp_die("%s: %s", argv[i + 2], err);
            mmp_img_free(&im);
            done++;
        }
        t = cpu_now() - t0;
    } while (t < 0.5);
    printf("%.1f\n", done / t);
    mmp_img_decoder_free(d);
    return 0;
}
