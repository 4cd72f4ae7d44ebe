/* Image sources for mmp-decode: enumerates (id, bytes, label, text) items
 * from ImageFolder directory trees, Hugging Face imagefolder data dirs, tar
 * archives (ImageFolder layout or WebDataset-style key.jpg +
 * key.cls/.txt/.json), and CSV / JSONL manifests.
 *
 * Labels and class names:
 *  - directory: classes = sorted sub-folder names (torchvision
 *    find_classes); files of each class found recursively, in the order of
 *    torchvision make_dataset (sorted(os.walk), sorted file names), keeping
 *    the extensions torchvision's IMG_EXTENSIONS lists.
 *  - tar (regular file): a first pass over the headers (data is seeked
 *    over) collects the class names = sorted parent-directory names of the
 *    image members; a tar holding .cls/.txt/.json side files is read as
 *    WebDataset (label from key.cls or key.json "label", text from key.txt
 *    or key.json "text"/"caption").
 *  - tar on stdin ("-") or any other non-seekable file (a pipe): cannot be
 *    pre-scanned; with --classes / --classes-from it is streamed; without,
 *    it is spooled to an unlinked temporary file ($TMPDIR) and read in two
 *    passes like a regular file.
 *  - directory in the Hugging Face imagefolder layout (a metadata.csv /
 *    metadata.jsonl at its top or one folder down, a split folder at its
 *    top, or no sub-folder): read as datasets' folder_based_builder does.
 *    Splits as datasets.data_files finds them (folders named by a split
 *    word: train/training, validation/valid/dev/val, test/testing/eval/
 *    evaluation, alone or joined by one of "-._ 0-9"; else such words in
 *    file names; else all is "train"; hidden and __x folders left out);
 *    o->split picks "NAME" or "A+B"; NULL with several splits is an error.
 *    With metadata files: their rows, in order; file_name (or *_file_name)
 *    relative to the metadata file's folder and inside it; label column:
 *    JSON integer = label, string = class name (CSV: numbers when every
 *    value is an integer, as pandas); text/caption = text; other columns
 *    ignored. Without: the split's images in datasets' order, label = the
 *    parent folder name when there are several names and every image is at
 *    the same depth (decided split by split on what was seen so far, as
 *    datasets does; classes = all the names, sorted).
 *  - manifest (.csv with a header row, or .jsonl/.ndjson): columns / keys
 *    path (or file, filename, file_name, image), label (or class, target,
 *    cls), text (or caption). Integer labels are kept; non-integer labels
 *    are class names; one input mixing both is an error. Relative paths
 *    are relative to the manifest's folder. A UTF-8 byte order mark is
 *    skipped. Errors name the file and line ("F: line N: ..."), also an
 *    integer label beyond the class list (other inputs' names, --classes).
 *  - With several inputs the class list is the sorted union of the names;
 *    with --classes it is that list, in that order (an item whose class is
 *    not in it is skipped with a warning).
 */
#ifndef MMP_IMAGE_SOURCE_H
#define MMP_IMAGE_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    char *id;      /* the path (file path, tar member path, manifest path) */
    uint8_t *data; /* file bytes (NULL when err is set) */
    size_t n;
    int64_t label; /* MMP_NO_LABEL when none */
    char *text;    /* NULL when none */
    char err[256]; /* non-empty: this item is bad (unreadable, unknown class ...) */
    uint64_t index; /* position among all items of all inputs (before sharding) */
} mmp_src_item;

void mmp_src_item_clear(mmp_src_item *it);

typedef struct {
    int nclasses;        /* >0: fixed class list (--classes) */
    char **classes;
    int shard_i, shard_n; /* keep items with index % shard_n == shard_i (shard_n 0/1 = all) */
    uint64_t max_bytes;   /* larger files are bad items (0 = 1 GiB) */
    const char *split;    /* Hugging Face imagefolder split(s) of folder inputs: "train", "test", "train+test" (NULL: the only one) */
} mmp_src_opts;

typedef struct mmp_src mmp_src;

/* Opens all inputs, scans what needs scanning for class names.
 * NULL with a message in err on failure (missing file, corrupt tar
 * header in the first pass, bad manifest line ...). */
mmp_src *mmp_src_open(int ninputs, char **inputs, const mmp_src_opts *o, char *err, size_t errlen);
int mmp_src_nclasses(const mmp_src *s);
char **mmp_src_classes(const mmp_src *s);
/* 1 = an item (maybe a bad one: it->err set), 0 = end, -1 = fatal error
 * (corrupt tar: mmp_src_error names the file and the offset). */
int mmp_src_next(mmp_src *s, mmp_src_item *it);
const char *mmp_src_error(const mmp_src *s);
/* Description of the inputs for the header meta ("dir", "tar", "webdataset", "csv" ...) */
const char *mmp_src_kinds(const mmp_src *s);
void mmp_src_close(mmp_src *s);

/* CSV (RFC 4180) for the manifest readers: one record into *fields (*nf
 * strings; *buf, *bcap: a scratch buffer kept between calls), *nl = the line
 * breaks consumed (quoted newlines included). 1 = a record, 0 = end, -1 = an
 * unterminated quoted field. mmp_skip_bom: skips a UTF-8 byte order mark. */
int mmp_csv_record(FILE *f, char ***fields, int *nf, char **buf, size_t *bcap, int *nl);
void mmp_skip_bom(FILE *f);

/* Parses "a,b,c" into a list (for --classes); returns count. */
int mmp_split_list(const char *s, char ***out);
/* Reads one class name per line (blank lines and # comments skipped). -1 on error. */
int mmp_read_lines(const char *path, char ***out, char *err, size_t errlen);

#endif
