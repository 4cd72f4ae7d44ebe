/* lib/train/tensorboard.c: CRC-32C against its check value, TFRecord
 * framing, the Event protos byte for byte against an event file written by
 * torch.utils.tensorboard.SummaryWriter (tests/fixtures/gen_tensorboard.py;
 * add_scalar, purge_step),
 * and the writer: file name, records, flush, bad directories. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmp.h"
#include "testlib.h"
#include "train/tensorboard.h"

static uint64_t get_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; k--) v = v << 8 | p[k];
    return v;
}

/* the records of an event file: count, each framing checked; -1 on a bad frame */
static int count_records(const uint8_t *d, size_t n, size_t *last_off) {
    size_t off = 0;
    int k = 0;
    while (off < n) {
        if (n - off < 16) return -1;
        uint64_t len = get_le(d + off, 8);
        if (get_le(d + off + 8, 4) != mmp_tensorboard_masked_crc(d + off, 8) || len > n - off - 16) return -1;
        if (get_le(d + off + 12 + len, 4) != mmp_tensorboard_masked_crc(d + off + 12, len)) return -1;
        *last_off = off;
        off += 16 + len;
        k++;
    }
    return k;
}

int main(void) {
    /* CRC-32C check value (the Castagnoli polynomial's "123456789"), pieces, empty */
    CHECK(mmp_crc32c(0, "123456789", 9) == 0xE3069283u);
    CHECK(mmp_crc32c(mmp_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u);
    CHECK(mmp_crc32c(0, "", 0) == 0);
    /* RFC 3720 B.4: 32 bytes of zeros, of 0xff */
    uint8_t z[32];
    memset(z, 0, sizeof z);
    CHECK(mmp_crc32c(0, z, 32) == 0x8A9136AAu);
    memset(z, 0xff, sizeof z);
    CHECK(mmp_crc32c(0, z, 32) == 0x62A8AB43u);
    uint32_t c = 0xE3069283u;
    CHECK(mmp_tensorboard_masked_crc("123456789", 9) == ((c >> 15 | c << 17) + 0xa282ead8u));

    /* byte for byte: the records SummaryWriter wrote (fixture) */
    static const struct { const char *tag; double v; int64_t step; double t; } sc[] = {
        {"train/loss", 2.30258509, 1, 1765000001.25},
        {"train/lr", 0.001, 1, 1765000001.2500002},
        {"epoch/train_loss", 0.412345678, 196, 1765000002.0},
        {"dev/accuracy", 0.8125, 196, 1765000003.75},
        {"dev/loss", NAN, 0, 1765000004.0},
        {"train/loss", -1.5e-7, 123456789012LL, 1765000005.125},
    };
    size_t nref = 0;
    uint8_t *ref = t_slurp(t_root_path("tests/fixtures/tensorboard/events.bin"), &nref);
    CHECKF(ref, "tests/fixtures/tensorboard/events.bin missing");
    uint8_t got[2048], ev[256];
    size_t n = 0, m = mmp_tensorboard_event_version(ev, sizeof ev, 1765000000.5, "brain.Event:2");
    CHECK(m > 0);
    n += mmp_tensorboard_frame(got + n, ev, m);
    for (int k = 0; k < 2; k++) { /* SummaryWriter(purge_step=1234) */
        m = mmp_tensorboard_event_restart(ev, sizeof ev, 1765000000.5, 1234, k);
        CHECK(m > 0);
        n += mmp_tensorboard_frame(got + n, ev, m);
    }
    for (size_t i = 0; i < sizeof sc / sizeof sc[0]; i++) {
        m = mmp_tensorboard_event_scalar(ev, sizeof ev, sc[i].t, sc[i].step, sc[i].tag, (float)sc[i].v);
        CHECK(m > 0);
        n += mmp_tensorboard_frame(got + n, ev, m);
    }
    if (ref) {
        CHECKF(n == nref, "%zu bytes, the reference %zu", n, nref);
        for (size_t i = 0; i < n && i < nref; i++)
            if (got[i] != ref[i]) {
                CHECKF(0, "byte %zu: 0x%02x, the reference 0x%02x", i, got[i], ref[i]);
                break;
            }
    }
    free(ref);
    /* too small a buffer: 0, nothing past cap */
    memset(ev, 0xAB, sizeof ev);
    CHECK(mmp_tensorboard_event_scalar(ev, 10, 1.0, 5, "train/loss", 1.0f) == 0);
    CHECK(ev[10] == 0xAB);

    /* the writer: nested new directories, SummaryWriter's file name, records readable */
    mmp_tensorboard_writer w;
    char err[512] = "";
    t_sh("rm -rf tbdir");
    CHECKF(mmp_tensorboard_open(&w, "tbdir/a/b/", err, sizeof err) == 0, "%s", err);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char want[512];
    snprintf(want, sizeof want, ".%s.%ld.0", host, (long)getpid());
    const char *base = w.path ? strrchr(w.path, '/') + 1 : "";
    CHECKF(strncmp(base, "events.out.tfevents.", 20) == 0 && strlen(base) == 20 + 10 + strlen(want) &&
               strspn(base + 20, "0123456789") == 10 && strcmp(base + 30, want) == 0,
           "file name %s", base);
    char path[1024];
    snprintf(path, sizeof path, "%s", w.path ? w.path : "");
    size_t fn = 0, last = 0;
    uint8_t *fd = t_slurp(path, &fn); /* the version record is there before any scalar */
    CHECK(fd && count_records(fd, fn, &last) == 1 && fn > 16 && memmem(fd, fn, "brain.Event:2", 13));
    free(fd);
    mmp_tensorboard_scalar(&w, "train/loss", 1, 0.5);
    mmp_tensorboard_scalar(&w, "dev/accuracy", 7, 0.75);
    CHECKF(mmp_tensorboard_flush(&w, err, sizeof err) == 0, "%s", err);
    fd = t_slurp(path, &fn);
    CHECK(fd && count_records(fd, fn, &last) == 3);
    if (fd && fn > last + 16) { /* the last one: step 7, tag, 0.75f */
        float v = 0.75f;
        CHECK(memmem(fd + last, fn - last, "dev/accuracy", 12) && memmem(fd + last, fn - last, &v, 4));
        CHECK(fd[last + 12 + 9] == 0x10 && fd[last + 12 + 10] == 7);
    }
    free(fd);
    CHECKF(mmp_tensorboard_close(&w, err, sizeof err) == 0, "%s", err);

    /* bad directories: one message naming it */
    FILE *f = fopen("plainfile", "w");
    if (f) fclose(f);
    CHECK(mmp_tensorboard_open(&w, "plainfile", err, sizeof err) == -1 && strstr(err, "plainfile: not a directory"));
    CHECK(mmp_tensorboard_open(&w, "plainfile/sub", err, sizeof err) == -1 && strstr(err, "plainfile/sub: cannot create"));
    CHECK(mmp_tensorboard_open(&w, "", err, sizeof err) == -1);
    if (geteuid() != 0) { /* root writes anywhere */
        mkdir("ro", 0555);
        CHECK(mmp_tensorboard_open(&w, "ro", err, sizeof err) == -1 && strstr(err, "ro: cannot create"));
    }
    TEST_END();
}
