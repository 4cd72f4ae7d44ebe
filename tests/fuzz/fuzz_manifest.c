/* libFuzzer target: mmp-decode's manifest readers (CSV with quoting, JSONL
 * with escapes and nested values) on arbitrary bytes. The first byte picks
 * the format; the rest is written to a .csv or .jsonl file in a scratch
 * folder and opened as a source whose items are then all enumerated (the
 * paths they name do not exist: each is a bad item with a message).
 * Build: make fuzz. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_scratch.h"

#include "mmp.h"
#include "image/source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const char *path = fuzz_scratch_file("manifest", data, size);
    char err[512] = "", *in[] = {(char *)path};
    mmp_src *s = mmp_src_open(1, in, NULL, err, sizeof err);
    if (!s) {
        if (!err[0] || strchr(err, '\n')) abort(); /* a failure says why, on one line */
    } else {
        mmp_src_item it = {0};
        int n = 0;
        while (mmp_src_next(s, &it) == 1 && n++ < 1000) {
            if (!it.err[0]) abort(); /* no listed file exists */
            if (strchr(it.err, '\n')) abort();
        }
        mmp_src_item_clear(&it);
        mmp_src_close(s);
    }
    unlink(path);
    return 0;
}
