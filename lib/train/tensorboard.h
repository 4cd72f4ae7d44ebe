/* train/tensorboard.h: TensorBoard event files (mmp-train-step --tensorboard
 * DIR), written the way torch.utils.tensorboard's SummaryWriter writes
 * them: a file events.out.tfevents.<unix time %010d>.<hostname>.<pid>.<uid>
 * (tensorboard's EventFileWriter), TFRecord framing, a first Event
 * {wall_time, file_version "brain.Event:2"}, then one Event per scalar
 * {wall_time, step, summary {value {tag, simple_value}}} as add_scalar()
 * writes it. Records are written whole and flushed by mmp_tensorboard_flush (after
 * every epoch): a crash can at most leave a truncated last record, which
 * TensorBoard's reader stops at without error. */
#ifndef MMP_TRAIN_TENSORBOARD_H
#define MMP_TRAIN_TENSORBOARD_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* TFRecord's masked CRC-32C: ((crc >> 15) | (crc << 17)) + 0xa282ead8. */
uint32_t mmp_tensorboard_masked_crc(const void *data, size_t n);
/* One TFRecord of n data bytes into out (n + 16 bytes): uint64 length LE,
 * masked CRC of the length, the data, masked CRC of the data. Returns n + 16. */
size_t mmp_tensorboard_frame(uint8_t *out, const void *data, size_t n);
/* Serialized Event protos into buf (cap >= 64 + strlen(tag) / strlen(version)
 * is enough); the length, or 0 when it does not fit. A step of 0 is left out,
 * as proto3 leaves out a default. */
size_t mmp_tensorboard_event_version(uint8_t *buf, size_t cap, double wall_time, const char *version);
/* SummaryWriter(purge_step=STEP)'s two events: which 0: {wall_time, step,
 * file_version "brain.Event:2"}, 1: {wall_time, step, session_log {status START}}. */
size_t mmp_tensorboard_event_restart(uint8_t *buf, size_t cap, double wall_time, int64_t step, int which);
size_t mmp_tensorboard_event_scalar(uint8_t *buf, size_t cap, double wall_time, int64_t step, const char *tag, float value);

typedef struct mmp_tensorboard_writer {
    FILE *f;
    char *path; /* the event file */
    int failed; /* a write failed (reported by mmp_tensorboard_flush) */
    int err_no; /* its errno */
} mmp_tensorboard_writer;

/* Creates DIR (and its parents) when missing and the event file in it, and
 * writes the file_version event (flushed). 0 or -1 ("DIR: what" in err). */
int mmp_tensorboard_open(mmp_tensorboard_writer *w, const char *dir, char *err, size_t errlen);
/* A run that continues from a checkpoint at step T: SummaryWriter(purge_step=T+1)'s
 * events, so that TensorBoard hides what an earlier run (e.g. one that
 * crashed mid-epoch, or went on past T) wrote at steps >= T+1 in older files. */
void mmp_tensorboard_purge_from(mmp_tensorboard_writer *w, int64_t step);
/* Appends a scalar event (wall time now). */
void mmp_tensorboard_scalar(mmp_tensorboard_writer *w, const char *tag, int64_t step, double value);
/* Writes the buffered events out. 0 or -1 ("FILE: what" in err). */
int mmp_tensorboard_flush(mmp_tensorboard_writer *w, char *err, size_t errlen);
/* Flushes and closes; 0 or -1 (err). */
int mmp_tensorboard_close(mmp_tensorboard_writer *w, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
