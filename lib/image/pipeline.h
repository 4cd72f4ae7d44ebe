/* image/pipeline.h: the stream pipelines of mmp-decode and mmp-augment
 * (internal), on the ordered parallel map (pmap.h): items are read by a
 * producer thread, processed by N workers and written in input order, so the
 * output is the same for any thread count. Bad images are skipped with one
 * warning line each and counted (the writer's trailer), or are fatal with
 * strict; fatal errors return -1 with the message, before anything more is
 * written (the caller exits without a trailer: downstream sees a truncated
 * stream). */
#ifndef MMP_IMAGE_PIPELINE_H
#define MMP_IMAGE_PIPELINE_H

#include "image/augment.h"
#include "image/image.h"
#include "image/manifest.h"
#include "image/source.h"
#include "mmp.h"

typedef struct {
    uint64_t written, skipped; /* records written, items skipped */
    uint64_t decoded;          /* images decoded (--manifest: once per run of rows) */
} mmp_img_counts;

/* mmp-decode's output header: the "image" u8 [H,W,3] field (-1 where the size
 * varies), the sources' classes, the command (mmp_header_stamp) and the
 * image.* meta; shard "I/N" when shard_n > 1. */
void mmp_img_decode_header(mmp_header *h, const mmp_prep *prep, const mmp_src *src, int shard_i, int shard_n,
                           int argc, char **argv);

/* Decodes every item of src with prep on `threads` threads and writes an
 * "image" record for each to w (id, label, text kept); bad items are
 * warned about ("ID: reason (skipped)") and counted in w's trailer, or with
 * strict fatal ("ID: reason (--strict)"). 0, or -1 with the message (also
 * a fatal source error: mmp_src_error). */
int mmp_img_decode_stream(mmp_src *src, const mmp_prep *prep, int threads, int strict, mmp_writer *w,
                          mmp_img_counts *n, char *err, size_t errlen);

/* mmp-decode --manifest: the header of mmp_img_decode_header, no classes,
 * image.source "manifest-csv" / "manifest-jsonl". */
void mmp_img_manifest_header(mmp_header *h, const mmp_prep *prep, const mmp_manifest *m, int shard_i, int shard_n,
                             int argc, char **argv);

/* Decodes the images of manifest m's rows and writes one record per row:
 * id, text = the question, the "image" tensor, string lists "image_id",
 * "qtype", "answers", "captions" (those the row has). Consecutive rows with
 * the same image path are one run: the image is read and decoded once and
 * its pixels go into each of the run's records (rows of an image that are
 * not consecutive decode it again; n->decoded counts decodes). shard_n > 1
 * keeps runs I, I+N ... An image that cannot be read or decoded skips its
 * run with one warning ("PATH: reason (line L; skipped, K records)";
 * counted per record in w's trailer), with strict it is fatal. max_bytes 0:
 * 1 GiB. 0, or -1 with the message. */
int mmp_img_decode_manifest(const mmp_manifest *m, const mmp_prep *prep, uint64_t max_bytes, int shard_i, int shard_n,
                            int threads, int strict, mmp_writer *w, mmp_img_counts *n, char *err, size_t errlen);

typedef struct {
    uint64_t seed, epoch;
    int views;   /* augmented views per record; > 1: ids suffixed #v0.. */
    int strict;  /* an image an op cannot handle is fatal */
    int threads;
} mmp_aug_run;

/* mmp-augment's output header: a copy of ih (whose "image" must be u8
 * [H,W,3]) with the output image field, the command (mmp_header_stamp) and
 * the image.augment.* and layout meta. 0, or -1 with the message
 * ("IN: the stream has no \"image\" field ..."). */
int mmp_aug_header(mmp_header *oh, const mmp_aug *aug, const mmp_aug_run *o, const mmp_header *ih,
                   const char *in_name, int argc, char **argv, char *err, size_t errlen);

/* Augments the "image" of every record of r (views per record, each with the
 * random stream mmp_aug_key(id, seed, epoch, view)) and writes them to w; a
 * record an op cannot handle is warned about and counted ("IN: record N
 * (ID): reason (skipped)"; the reader's skipped records are added to w's
 * trailer too), a missing or non-u8 image (or one with strict) is fatal.
 * 0, or -1 with the message ("IN: record N (ID): reason", a read error). */
int mmp_aug_stream(const mmp_aug *aug, const mmp_aug_run *o, mmp_reader *r, mmp_writer *w, mmp_img_counts *n,
                   char *err, size_t errlen);

#endif
