/* libmmp: the mmpipe library.
 *
 * Tensors, the mmpipe tensor stream (zstd-compressed msgpack, see
 * formats/stream.md), safetensors read/write (formats/safetensors.md),
 * errors and command-line conventions shared by every mmp-* program.
 *
 * Conventions:
 *  - Functions named *_or_die / mmp_x* print one line "prog: message" on
 *    stderr and exit(1) on failure. Functions that return int return 0 on
 *    success and -1 on failure with a message in the caller's err buffer
 *    (or the object's error string); those are the ones the fuzzers drive.
 *  - No hidden global state apart from the program name used in messages.
 */
#ifndef MMP_H
#define MMP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MMP_VERSION "0.1.0"
/* The shared library's soname is libmmp.so.MMP_SOVERSION; it changes when the ABI does. */
#define MMP_SOVERSION 1
#define MMP_STREAM_FORMAT "mmpipe"
#define MMP_STREAM_VERSION 1

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* errors and memory                                                   */
/* ------------------------------------------------------------------ */

void mmp_set_progname(const char *name);
const char *mmp_progname(void);
/* Prints "prog: <message>" on stderr and exits with status 1. */
void mmp_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* Prints "prog: warning: <message>" on stderr. */
void mmp_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *mmp_xmalloc(size_t n);
void *mmp_xcalloc(size_t n, size_t size);
void *mmp_xrealloc(void *p, size_t n);
char *mmp_xstrdup(const char *s);
/* Formats a message into err[errlen] (NULL or 0: nothing) and returns -1,
 * for functions that report failures to their caller: return mmp_errf(...). */
int mmp_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* snprintf into a growing heap string. */
char *mmp_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------------------------ */
/* dtypes and tensors                                                  */
/* ------------------------------------------------------------------ */

typedef enum {
    MMP_U8 = 0,
    MMP_I32,
    MMP_I64,
    MMP_F16,
    MMP_BF16,
    MMP_F32,
    MMP_DTYPE_COUNT
} mmp_dtype;

/* "u8","i32","i64","f16","bf16","f32" */
const char *mmp_dtype_name(mmp_dtype d);
/* Accepts the names above; also safetensors' "U8","I32","I64","F16","BF16","F32". 0 ok, -1 unknown. */
int mmp_dtype_parse(const char *s, size_t len, mmp_dtype *out);
/* safetensors spelling: "U8","I32",... */
const char *mmp_dtype_st_name(mmp_dtype d);
size_t mmp_dtype_size(mmp_dtype d);

#define MMP_MAX_DIMS 8

typedef struct {
    mmp_dtype dtype;
    int ndim;
    int64_t shape[MMP_MAX_DIMS];
    void *data;    /* little-endian element data, row-major */
    size_t nbytes; /* numel * dtype size */
    int owns;      /* data is freed by mmp_tensor_free */
} mmp_tensor;

int64_t mmp_numel(int ndim, const int64_t *shape);
/* Allocates zeroed data; dies on overflow/out of memory. */
void mmp_tensor_alloc(mmp_tensor *t, mmp_dtype dtype, int ndim, const int64_t *shape);
void mmp_tensor_free(mmp_tensor *t);
/* Deep copy. */
void mmp_tensor_copy(mmp_tensor *dst, const mmp_tensor *src);
/* Converts every element to float (any dtype). out has numel elements. */
void mmp_tensor_to_f32(const mmp_tensor *t, float *out);
/* Writes n floats into a tensor of dtype F32, F16 or BF16 (round to nearest even). */
void mmp_f32_to_dtype(const float *in, size_t n, mmp_dtype d, void *out);
/* "[2,3,4]" into buf */
void mmp_shape_str(int ndim, const int64_t *shape, char *buf, size_t len);

uint16_t mmp_f32_to_f16(float f);
float mmp_f16_to_f32(uint16_t h);
uint16_t mmp_f32_to_bf16(float f);
float mmp_bf16_to_f32(uint16_t h);

/* ------------------------------------------------------------------ */
/* string -> string metadata (safetensors __metadata__, stream meta)   */
/* ------------------------------------------------------------------ */

typedef struct {
    int n, cap;
    char **keys;
    char **vals;
} mmp_meta;

void mmp_meta_init(mmp_meta *m);
void mmp_meta_free(mmp_meta *m);
void mmp_meta_copy(mmp_meta *dst, const mmp_meta *src);
/* Replaces an existing key. */
void mmp_meta_set(mmp_meta *m, const char *key, const char *val);
/* NULL when absent. */
const char *mmp_meta_get(const mmp_meta *m, const char *key);

/* ------------------------------------------------------------------ */
/* records                                                             */
/* ------------------------------------------------------------------ */

#define MMP_MAX_FIELDS 16
#define MMP_NO_LABEL (-1)

typedef struct {
    char name[64];
    mmp_tensor t;
} mmp_field;

/* A named list of strings of a record (formats/stream.md "strings"): the
 * reference captions of an image ("captions"), a question's annotated
 * answers ("answers"), its type ("qtype"), the image it asks about
 * ("image_id"), a predicted answer ("prediction"). */
#define MMP_MAX_STRLISTS 8
typedef struct {
    char name[64];
    int n;
    char **v; /* n NUL-terminated strings */
} mmp_strlist;

/* One item of a stream: an id (e.g. the source path), an integer label
 * (MMP_NO_LABEL when unlabelled), optional text, named string lists and
 * named tensors. */
typedef struct {
    char *id;   /* NUL-terminated; may be NULL */
    int64_t label;
    char *text; /* NULL when absent */
    int nfields;
    mmp_field fields[MMP_MAX_FIELDS];
    int nstrlists;
    mmp_strlist strlists[MMP_MAX_STRLISTS];
} mmp_record;

void mmp_record_init(mmp_record *r);
/* Frees everything the record owns and re-initializes it. */
void mmp_record_clear(mmp_record *r);
void mmp_record_set_id(mmp_record *r, const char *id);
void mmp_record_set_text(mmp_record *r, const char *text);
/* Sets (copies; replaces a list of that name) the string list NAME (1 to 63
 * bytes) to v[0..n-1]; n may be 0 (an empty list). Dies past
 * MMP_MAX_STRLISTS lists. */
void mmp_record_set_strings(mmp_record *r, const char *name, const char *const *v, int n);
/* The string list NAME, NULL when absent. */
const mmp_strlist *mmp_record_strings(const mmp_record *r, const char *name);
/* The first string of list NAME, NULL when the list is absent or empty. */
const char *mmp_record_string(const mmp_record *r, const char *name);
/* Removes the list NAME (no-op when absent). */
void mmp_record_remove_strings(mmp_record *r, const char *name);
/* Copies every string list of src into dst (replacing lists of the same names). */
void mmp_record_copy_strings(mmp_record *dst, const mmp_record *src);
/* NULL when absent. */
mmp_tensor *mmp_record_get(mmp_record *r, const char *name);
const mmp_tensor *mmp_record_cget(const mmp_record *r, const char *name);
/* Adds (or replaces) a field and allocates its data (zeroed). */
mmp_tensor *mmp_record_add(mmp_record *r, const char *name, mmp_dtype dtype, int ndim,
                           const int64_t *shape);
/* Removes a field (frees its data). No-op when absent. */
void mmp_record_remove(mmp_record *r, const char *name);
/* Moves src into dst (dst cleared first); src is left empty. */
void mmp_record_move(mmp_record *dst, mmp_record *src);
void mmp_record_copy(mmp_record *dst, const mmp_record *src);

/* ------------------------------------------------------------------ */
/* stream header                                                       */
/* ------------------------------------------------------------------ */

/* A schema entry: every record carries this tensor field with this dtype;
 * a shape entry of -1 means "varies per record" (e.g. native-size images). */
typedef struct {
    char name[64];
    mmp_dtype dtype;
    int ndim;
    int64_t shape[MMP_MAX_DIMS];
} mmp_schema_field;

typedef struct {
    int nfields;
    mmp_schema_field fields[MMP_MAX_FIELDS];
    int nclasses;
    char **classes; /* class names, label i = classes[i] */
    mmp_meta meta;  /* free metadata: program, args, provenance ... */
} mmp_header;

void mmp_header_init(mmp_header *h);
void mmp_header_free(mmp_header *h);
void mmp_header_copy(mmp_header *dst, const mmp_header *src);
/* Adds or replaces a schema field. */
void mmp_header_add_field(mmp_header *h, const char *name, mmp_dtype dtype, int ndim,
                          const int64_t *shape);
void mmp_header_remove_field(mmp_header *h, const char *name);
const mmp_schema_field *mmp_header_field(const mmp_header *h, const char *name);
void mmp_header_set_classes(mmp_header *h, int n, char *const *names);
/* Two headers describe the same kind of stream: same fields (name, dtype,
 * shape) and same class list. 1 = compatible; 0 = not, reason in why. */
int mmp_header_compatible(const mmp_header *a, const mmp_header *b, char *why, size_t whylen);
/* Records "program" and "args" (argv joined) in meta, and appends the
 * command to "history" (one command per line) keeping earlier history. */
void mmp_header_stamp(mmp_header *h, int argc, char **argv);

/* ------------------------------------------------------------------ */
/* stream writer                                                       */
/* ------------------------------------------------------------------ */

typedef struct mmp_writer mmp_writer;

/* path "-" or NULL = stdout. level = zstd level (-7..19; negative = fast
 * levels; 0 = default 3).
 * Writes the header at once. Dies on error. */
mmp_writer *mmp_writer_open(const char *path, const mmp_header *h, int level);
mmp_writer *mmp_writer_open_fp(FILE *fp, const char *name, const mmp_header *h, int level);
/* Validates the record against the schema (dies with a clear message) and writes it. */
void mmp_writer_write(mmp_writer *w, const mmp_record *r);
/* Counts items the producer skipped (reported in the trailer). */
void mmp_writer_add_skipped(mmp_writer *w, uint64_t n);
/* Writes the trailer, flushes, closes (not stdout's fd), frees. Dies on error. */
void mmp_writer_close(mmp_writer *w);
/* For a producer that failed (a library loop that returned -1): stops the
 * writer without a trailer and frees it (closing the file mmp_writer_open
 * opened). What was written stays a truncated stream, which every reader
 * refuses ("no trailer"), as when a program dies. */
void mmp_writer_abandon(mmp_writer *w);
uint64_t mmp_writer_count(const mmp_writer *w);

/* ------------------------------------------------------------------ */
/* stream reader                                                       */
/* ------------------------------------------------------------------ */

typedef struct mmp_reader mmp_reader;

/* path "-" = stdin. Reads the header. NULL on error (message in err). */
mmp_reader *mmp_reader_open(const char *path, char *err, size_t errlen);
/* Reads from memory (fuzzing, tests); buf must outlive the reader. */
mmp_reader *mmp_reader_open_mem(const void *buf, size_t n, const char *name, char *err,
                                size_t errlen);
const mmp_header *mmp_reader_header(const mmp_reader *r);
const char *mmp_reader_name(const mmp_reader *r);
/* 1 = a record was read into rec (rec is cleared first);
 * 0 = end of stream, every trailer verified (count and checksum);
 * -1 = error: truncated, corrupt, schema mismatch ... see mmp_reader_error. */
int mmp_reader_next(mmp_reader *r, mmp_record *rec);
const char *mmp_reader_error(const mmp_reader *r);
/* Records returned so far. */
uint64_t mmp_reader_count(const mmp_reader *r);
/* Sum of the "skipped" counts of the trailers read so far. */
uint64_t mmp_reader_skipped(const mmp_reader *r);
void mmp_reader_close(mmp_reader *r);

/* Dying conveniences for programs. */
mmp_reader *mmp_reader_open_or_die(const char *path);
int mmp_reader_next_or_die(mmp_reader *r, mmp_record *rec); /* 1 record, 0 end */

/* ------------------------------------------------------------------ */
/* safetensors                                                         */
/* ------------------------------------------------------------------ */

typedef struct {
    char *name;
    mmp_tensor t; /* t.data points into the mapping (owns = 0) */
} mmp_st_entry;

typedef struct {
    int n;
    mmp_st_entry *entries; /* in file order of their offsets */
    mmp_meta meta;         /* __metadata__ */
    void *map;
    size_t mapsize;
    char *path;
} mmp_safetensors;

/* mmap and validate: header JSON well-formed, dtypes known, offsets in range,
 * sizes match shapes, no overlap, data region fully covered. */
int mmp_st_open(mmp_safetensors *st, const char *path, char *err, size_t errlen);
/* Same on a caller-owned buffer (kept referenced; not freed). */
int mmp_st_parse(mmp_safetensors *st, const void *buf, size_t n, char *err, size_t errlen);
void mmp_st_close(mmp_safetensors *st);
const mmp_tensor *mmp_st_get(const mmp_safetensors *st, const char *name);
void mmp_st_open_or_die(mmp_safetensors *st, const char *path);
/* Dies unless the tensor exists with this dtype and shape (ndim entries). */
const mmp_tensor *mmp_st_require(const mmp_safetensors *st, const char *name, mmp_dtype dtype,
                                 int ndim, const int64_t *shape);
/* The model loaders' getter: tensor NAME as floats, when it exists with a
 * float dtype (F32, F16 or BF16: converted) and exactly this shape (ndim
 * entries). mmp_st_read_f32 fills out (numel floats) and returns 0;
 * mmp_st_f32 returns a new heap copy. Else -1 / NULL with one line naming
 * the file and the tensor: "PATH: tensor 'NAME' is missing" (or "is I64,
 * expected a float dtype ...", "has shape [2,3], expected [3,2]"). */
int mmp_st_read_f32(const mmp_safetensors *st, const char *name, int ndim, const int64_t *shape, float *out,
                    char *err, size_t errlen);
float *mmp_st_f32(const mmp_safetensors *st, const char *name, int ndim, const int64_t *shape, char *err,
                  size_t errlen);

/* Writer: collect tensors (copied), then write atomically:
 * temp file in the same directory, fsync, rename, fsync directory. */
typedef struct {
    int n, cap;
    char **names;
    mmp_tensor *tensors;
    mmp_meta meta;
} mmp_st_writer;

void mmp_st_writer_init(mmp_st_writer *w);
void mmp_st_writer_add(mmp_st_writer *w, const char *name, const mmp_tensor *t);
void mmp_st_writer_add_f32(mmp_st_writer *w, const char *name, const float *data, int ndim,
                           const int64_t *shape);
int mmp_st_writer_write(mmp_st_writer *w, const char *path, char *err, size_t errlen);
void mmp_st_writer_write_or_die(mmp_st_writer *w, const char *path);
void mmp_st_writer_free(mmp_st_writer *w);

/* ------------------------------------------------------------------ */
/* hashing                                                             */
/* ------------------------------------------------------------------ */

/* SHA-256 of a file's bytes as 64 lowercase hex chars + NUL. -1 on I/O error. */
int mmp_sha256_file(const char *path, char out[65]);
void mmp_sha256(const void *data, size_t n, uint8_t out[32]);
/* 64-bit hash of a string (FNV-1a then a SplitMix64 finalizer); stable across machines. */
uint64_t mmp_hash64(const void *data, size_t n, uint64_t seed);
/* CRC-32C (Castagnoli; TFRecord's checksum): crc = 0 to start, the previous
 * value to continue. mmp_crc32c(0, "123456789", 9) = 0xE3069283. */
uint32_t mmp_crc32c(uint32_t crc, const void *data, size_t n);

/* ------------------------------------------------------------------ */
/* command-line conventions                                            */
/* ------------------------------------------------------------------ */

/* Sets the program name, default SIGPIPE behaviour (a closed pipe ends the
 * program quietly). Call first in main(). */
void mmp_cli_init(const char *progname);
/* Options: the option tables of cli.h (-h/--help, --version, --progress
 * and the programs' own options). */
/* Progress on stderr when it is a terminal or --progress was given, else
 * nothing (--no-progress: never). mmp_progress sets the live line: on a
 * terminal redrawn in place (\r and erase-to-end-of-line; at most every
 * 0.1 s), elsewhere written as plain lines "PROG: text\n" (at most every 30 s;
 * no \r, no escape codes). mmp_progress_done ends it (on a terminal a newline;
 * elsewhere the last line, if not yet written). */
int mmp_progress_enabled(void);
int mmp_progress_is_tty(void);
void mmp_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mmp_progress_done(void);
/* The live line "[WHAT: ]DONE/TOTAL UNIT (P%), RATE UNIT/s, ETA m:ss", or
 * "[WHAT: ]DONE UNIT, RATE UNIT/s" when total is 0 (unknown); t0: mmp_now()
 * at the start. */
void mmp_progress_count(const char *what, const char *unit, uint64_t done, uint64_t total, double t0);
/* A permanent line "PROG: text\n" (an epoch summary): written unless
 * --no-progress, terminal or not (over the live line on a terminal). */
void mmp_progress_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Monotonic seconds. */
double mmp_now(void);
/* Wall-clock time: unix seconds (CLOCK_REALTIME, Python's time.time()). */
double mmp_wall_time(void);

#ifdef __cplusplus
}
#endif
#endif
