/* For fuzz targets whose reader takes a path: the input (less its first
 * byte, which picks the format) written to NAME.csv or NAME.jsonl in a
 * scratch folder made once per process. Returns the path (static storage);
 * the caller unlinks it. */
#ifndef MMP_FUZZ_SCRATCH_H
#define MMP_FUZZ_SCRATCH_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static const char *fuzz_scratch_file(const char *name, const uint8_t *data, size_t size) {
    static char dir[64], path[128];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/fuzz_%s.XXXXXX", name);
        if (!mkdtemp(dir)) abort();
    }
    snprintf(path, sizeof path, "%s/m.%s", dir, data[0] & 1 ? "jsonl" : "csv");
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fwrite(data + 1, 1, size - 1, f);
    fclose(f);
    return path;
}
#endif
