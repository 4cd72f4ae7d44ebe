/* Compressed tars and zips through libarchive behind the mmp_tar API
 * (lib/image/archive.h): archives written here with libarchive's writer
 * (plain pax tar, tar + gzip / zstd / xz / bzip2, zip) must list the same
 * regular members with the same bytes as the plain tar, through a seekable
 * FILE (fmemopen) and a pipe, including a rewind for the second pass; a
 * truncated or corrupt archive is one error line naming it; a plain tar whose
 * first bytes look like gzip stays with the native reader. */
#include <archive.h>
#include <archive_entry.h>
#include <stdint.h>
#include <unistd.h>

#include "image/archive.h"
#include "image/tar.h"
#include "mmp.h"
#include "testlib.h"

enum { NMEM = 5 };
static const char *names[NMEM] = {"cat/a.jpg", "cat/b.jpg", "dog/deep/c.png", "k.cls", "empty.txt"};
static uint8_t *data[NMEM];
static size_t sizes[NMEM] = {1000, 70000, 513, 2, 0};

static void make_data(void) {
    uint64_t x = 12345;
    for (int i = 0; i < NMEM; i++) {
        data[i] = malloc(sizes[i] + 1);
        for (size_t k = 0; k < sizes[i]; k++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            data[i][k] = (uint8_t)(x >> 56);
        }
    }
}

typedef enum { F_NONE, F_GZIP, F_ZSTD, F_XZ, F_BZIP2, F_ZIP } fmt;
static const char *fmt_name[] = {"tar", "tar.gz", "tar.zst", "tar.xz", "tar.bz2", "zip"};

/* writes the members (plus a directory) into a malloc'd buffer */
static uint8_t *write_archive(fmt f, size_t *n) {
    size_t cap = 1 << 22;
    uint8_t *buf = malloc(cap);
    struct archive *a = archive_write_new();
    if (f == F_ZIP) archive_write_set_format_zip(a);
    else archive_write_set_format_pax_restricted(a);
    if (f == F_GZIP) archive_write_add_filter_gzip(a);
    if (f == F_ZSTD) archive_write_add_filter_zstd(a);
    if (f == F_XZ) archive_write_add_filter_xz(a);
    if (f == F_BZIP2) archive_write_add_filter_bzip2(a);
    CHECK(archive_write_open_memory(a, buf, cap, n) == ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, "cat/");
    archive_entry_set_filetype(e, AE_IFDIR);
    archive_entry_set_perm(e, 0755);
    CHECK(archive_write_header(a, e) == ARCHIVE_OK);
    for (int i = 0; i < NMEM; i++) {
        archive_entry_clear(e);
        archive_entry_set_pathname(e, names[i]);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, (la_int64_t)sizes[i]);
        CHECK(archive_write_header(a, e) == ARCHIVE_OK);
        if (sizes[i]) CHECK(archive_write_data(a, data[i], sizes[i]) == (la_ssize_t)sizes[i]);
    }
    archive_entry_free(e);
    CHECK(archive_write_close(a) == ARCHIVE_OK);
    archive_write_free(a);
    return buf;
}

/* a pipe fed by a child process */
static FILE *pipe_of(const uint8_t *b, size_t n) {
    int fd[2];
    if (pipe(fd)) return NULL;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        size_t off = 0;
        while (off < n) {
            ssize_t k = write(fd[1], b + off, n - off);
            if (k <= 0) _exit(1);
            off += (size_t)k;
        }
        _exit(0);
    }
    close(fd[1]);
    return fdopen(fd[0], "rb");
}

/* every member in order, all read (or every other one skipped) */
static void check_list(mmp_tar *t, const char *what, int skip_odd) {
    mmp_tar_entry e;
    for (int i = 0; i < NMEM; i++) {
        int r = mmp_tar_next(t, &e);
        CHECKF(r == 1, "%s: member %d: next = %d (%s)", what, i, r, mmp_tar_error(t));
        if (r != 1) return;
        CHECKF(!strcmp(e.path, names[i]), "%s: member %d is %s, expected %s", what, i, e.path, names[i]);
        CHECKF(e.size == sizes[i], "%s: %s: size %llu", what, names[i], (unsigned long long)e.size);
        if (skip_odd && i % 2) continue;
        uint8_t *b = NULL;
        CHECKF(mmp_tar_read(t, &b) == 0, "%s: read %s: %s", what, names[i], mmp_tar_error(t));
        if (b) CHECKF(!memcmp(b, data[i], sizes[i]), "%s: %s: data differ", what, names[i]);
        free(b);
    }
    CHECKF(mmp_tar_next(t, &e) == 0, "%s: expected the end (%s)", what, mmp_tar_error(t));
}

/* reads the whole archive; returns the error line (static) or NULL */
static const char *read_all(FILE *fp, const char *name) {
    static char err[600];
    mmp_tar *t = mmp_tar_open_fp(fp, name);
    mmp_tar_entry e;
    int r;
    while ((r = mmp_tar_next(t, &e)) == 1) {
        uint8_t *b = NULL;
        if (mmp_tar_read(t, &b)) {
            r = -1;
            break;
        }
        free(b);
    }
    const char *msg = NULL;
    if (r < 0) {
        snprintf(err, sizeof err, "%s", mmp_tar_error(t));
        msg = err;
    }
    mmp_tar_close(t);
    return msg;
}

static void check_bad(const uint8_t *b, size_t n, const char *name, const char *what) {
    for (int piped = 0; piped < 2; piped++) {
        FILE *fp = piped ? pipe_of(b, n) : fmemopen((void *)b, n, "rb");
        const char *msg = read_all(fp, name);
        fclose(fp);
        if (piped) while (wait(NULL) > 0) {}
        CHECKF(msg != NULL, "%s (piped=%d): accepted", what, piped);
        if (!msg) continue;
        char pre[128];
        snprintf(pre, sizeof pre, "%s: ", name);
        CHECKF(!strncmp(msg, pre, strlen(pre)), "%s: message does not name the archive: %s", what, msg);
        CHECKF(!strchr(msg, '\n'), "%s: message is not one line: %s", what, msg);
        CHECKF(strlen(msg) > strlen(pre) + 5, "%s: message says nothing: %s", what, msg);
    }
}

int main(void) {
    make_data();
    /* sniffing */
    CHECK(!strcmp(mmp_arc_sniff((const uint8_t *)"\x1f\x8b\x08", 3), "gzip"));
    CHECK(!strcmp(mmp_arc_sniff((const uint8_t *)"\x28\xb5\x2f\xfd", 4), "zstd"));
    CHECK(!strcmp(mmp_arc_sniff((const uint8_t *)"\xfd" "7zXZ\0", 6), "xz"));
    CHECK(!strcmp(mmp_arc_sniff((const uint8_t *)"BZh9", 4), "bzip2"));
    CHECK(!strcmp(mmp_arc_sniff((const uint8_t *)"PK\3\4", 4), "zip"));
    CHECK(mmp_arc_sniff((const uint8_t *)"BZhx", 4) == NULL);
    CHECK(mmp_arc_sniff((const uint8_t *)"\x1f", 1) == NULL);

    size_t n[6];
    uint8_t *arc[6];
    for (int f = F_NONE; f <= F_ZIP; f++) arc[f] = write_archive((fmt)f, &n[f]);
    CHECK(arc[F_GZIP][0] == 0x1f && arc[F_ZIP][0] == 'P'); /* really compressed */
    for (int f = F_NONE; f <= F_ZIP; f++) {
        char what[64];
        /* seekable: two passes, as mmp-decode's class scan does */
        FILE *fp = fmemopen(arc[f], n[f], "rb");
        mmp_tar *t = mmp_tar_open_fp(fp, fmt_name[f]);
        CHECK(mmp_tar_seekable(t));
        snprintf(what, sizeof what, "%s pass 1", fmt_name[f]);
        check_list(t, what, 1);
        CHECKF(mmp_tar_rewind(t) == 0, "%s: rewind", fmt_name[f]);
        snprintf(what, sizeof what, "%s pass 2", fmt_name[f]);
        check_list(t, what, 0);
        mmp_tar_close(t);
        fclose(fp);
        /* a pipe: one pass */
        fp = pipe_of(arc[f], n[f]);
        t = mmp_tar_open_fp(fp, fmt_name[f]);
        CHECK(!mmp_tar_seekable(t));
        snprintf(what, sizeof what, "%s piped", fmt_name[f]);
        check_list(t, what, f % 2);
        mmp_tar_close(t);
        fclose(fp);
        while (wait(NULL) > 0) {}
    }
    /* truncated anywhere: an error, never a short member or a clean end */
    for (int f = F_GZIP; f <= F_ZIP; f++) {
        size_t cuts[] = {1, 20, n[f] / 3, n[f] / 2, n[f] - 30};
        /* a zip cut inside its central directory still holds every member,
         * CRC-checked, and is read as a stream of local entries */
        size_t ncuts = sizeof cuts / sizeof *cuts - (f == F_ZIP);
        for (size_t c = 0; c < ncuts; c++) {
            char what[64];
            snprintf(what, sizeof what, "%s cut at %zu", fmt_name[f], cuts[c]);
            check_bad(arc[f], cuts[c], fmt_name[f], what);
        }
        /* a flipped byte in the middle of the compressed data (libarchive's
         * zstd writer adds no checksum: a flipped literal cannot be seen) */
        if (f == F_ZSTD) continue;
        uint8_t *d = malloc(n[f]);
        memcpy(d, arc[f], n[f]);
        d[n[f] / 2] ^= 0x5a;
        char what[64];
        snprintf(what, sizeof what, "%s corrupt", fmt_name[f]);
        check_bad(d, n[f], fmt_name[f], what);
        free(d);
    }
    /* gzip: a wrong CRC-32 or length in the trailer is refused */
    for (int k = 8; k >= 1; k -= 7) {
        uint8_t *d = malloc(n[F_GZIP]);
        memcpy(d, arc[F_GZIP], n[F_GZIP]);
        d[n[F_GZIP] - k] ^= 1;
        check_bad(d, n[F_GZIP], "x.tgz", k == 8 ? "gzip CRC" : "gzip length");
        free(d);
    }
    /* a plain tar whose first member's name starts with the gzip magic stays native */
    {
        uint8_t hdr[1536] = {0};
        memcpy(hdr, "\x1f\x8b" "name", 6);
        memcpy(hdr + 100, "0000644", 7);
        memcpy(hdr + 124, "00000000003", 11);
        hdr[156] = '0';
        memcpy(hdr + 257, "ustar", 6);
        memcpy(hdr + 263, "00", 2);
        unsigned sum = 0;
        memset(hdr + 148, ' ', 8);
        for (int i = 0; i < 512; i++) sum += hdr[i];
        snprintf((char *)hdr + 148, 8, "%06o", sum);
        memcpy(hdr + 512, "abc", 3);
        FILE *fp = fmemopen(hdr, sizeof hdr, "rb");
        mmp_tar *t = mmp_tar_open_fp(fp, "magic.tar");
        mmp_tar_entry e;
        CHECKF(mmp_tar_next(t, &e) == 1, "gzip-looking plain tar: %s", mmp_tar_error(t));
        CHECK(e.size == 3);
        CHECK(mmp_tar_next(t, &e) == 0);
        mmp_tar_close(t);
        fclose(fp);
    }
    for (int f = F_NONE; f <= F_ZIP; f++) free(arc[f]);
    for (int i = 0; i < NMEM; i++) free(data[i]);
    TEST_END();
}
