/* libFuzzer target: the tar reader and the JPEG/PNG decoders on arbitrary
 * bytes: the whole input is decoded as an image, then read as a tar whose
 * members are read or skipped in turn, every member read decoded too, with a
 * small pixel limit. Input starting like gzip/zstd/xz/bzip2/zip (and not a
 * plain tar header) goes to the libarchive reader (image/archive.h) behind
 * the same API: seeds one.tar.gz, one.zip. Build: make fuzz. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmp.h"
#include "image/image.h"
#include "image/archive.h"
#include "image/tar.h"

static void decode(mmp_img_decoder *d, const void *buf, size_t n) {
    mmp_img_decode_opts o = {.max_pixels = 1 << 20};
    mmp_img im = {0};
    char err[512] = "";
    if (mmp_img_decode(d, buf, n, &o, &im, err, sizeof err) == 0) {
        if (im.w <= 0 || im.h <= 0 || (uint64_t)im.w * (uint64_t)im.h > o.max_pixels || !im.px) abort();
        mmp_img_free(&im);
    } else if (!err[0] || strchr(err, '\n')) {
        abort(); /* an error always says why, on one line */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static mmp_img_decoder *d;
    if (!d) d = mmp_img_decoder_new();
    decode(d, data, size);
    if (size == 0) return 0;
    FILE *fp = fmemopen((void *)data, size, "rb");
    if (!fp) return 0;
    /* the reader's own choice: a plain tar unless the first block is not a
     * tar header and the bytes start like a compressed stream or a zip */
    int packed = mmp_arc_sniff(data, size) && !(size >= 512 && mmp_tar_is_header(data));
    mmp_tar *t = mmp_tar_open_fp(fp, "fuzz.tar");
    mmp_tar_entry e;
    int rc = 0, n = 0;
    while (n++ < 64 && (rc = mmp_tar_next(t, &e)) == 1) {
        if (n % 2) {
            uint8_t *buf = NULL;
            if (mmp_tar_read(t, &buf) == 0) {
                if (!packed && e.size > size) abort(); /* a member read whole fits in the archive */
                decode(d, buf, (size_t)e.size);
                free(buf);
            }
        }
    }
    if (rc < 0) {
        const char *m = mmp_tar_error(t);
        if (!m[0] || strchr(m, '\n')) abort(); /* one line that says why */
    }
    mmp_tar_close(t);
    fclose(fp);
    return 0;
}
