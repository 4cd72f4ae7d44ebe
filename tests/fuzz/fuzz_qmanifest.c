/* libFuzzer target: the question / caption manifest reader of mmp-decode
 * --manifest (lib/image/manifest.h: CSV with quoting and "|"-joined lists,
 * JSONL with answer objects, ids and lists) on arbitrary bytes. The first
 * byte picks the format; the rest is written to a .csv or .jsonl file in a
 * scratch folder and read. A failure must say why on one line; a success
 * must give rows whose strings are all there. Build: make fuzz. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_scratch.h"

#include "image/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const char *path = fuzz_scratch_file("qmanifest", data, size);
    char err[512] = "";
    mmp_manifest m;
    memset(&m, 0, sizeof m);
    if (mmp_manifest_read(path, &m, err, sizeof err)) {
        if (!err[0] || strchr(err, '\n')) abort(); /* a failure says why, on one line */
    } else {
        for (size_t i = 0; i < m.n; i++) {
            const mmp_mrow *r = &m.rows[i];
            if (!r->image || !r->id) abort();
            for (int k = 0; k < r->nanswers; k++)
                if (!r->answers[k]) abort();
            for (int k = 0; k < r->ncaptions; k++)
                if (!r->captions[k]) abort();
        }
        mmp_manifest_free(&m);
    }
    unlink(path);
    return 0;
}
