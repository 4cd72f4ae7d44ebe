/* lib/json.h: the one way mmpipe reads JSON (on jansson) and writes JSON
 * strings.
 *
 * Reading: safetensors headers, JSONL manifests and WebDataset .json
 * members, the Hugging Face config files of a text model, the training log
 * and a checkpoint's class list are all parsed by mmp_json_parse: jansson,
 * strict (invalid UTF-8, "\u0000" in strings, duplicate keys and more than
 * MMP_JSON_MAX_DEPTH levels of nesting are refused; nothing but whitespace
 * may follow the value), with a one-line message that gives the position.
 * The returned tree is jansson's json_t (free it with json_decref); the
 * getters below read object members with messages that name the key.
 *
 * Writing: mmp_json_put_str / mmp_json_quote escape strings for the JSON
 * that mmpipe writes itself (mmp-cat lines, safetensors headers, reports).
 * That JSON is not produced by jansson's json_dumps, which would change
 * bytes already written by earlier versions: it writes \u001F where we write
 * \u001f, reals as %.17g where mmp-cat writes %.9g, and it refuses strings
 * that are not valid UTF-8 where mmp-cat writes U+FFFD.
 */
#ifndef MMP_JSON_H
#define MMP_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Deepest nesting of arrays/objects accepted (the outermost value is level 1). */
#define MMP_JSON_MAX_DEPTH 32

/* ---------------- reading ---------------- */

/* Parses the JSON text buf[0, n): one object or array, optionally surrounded
 * by whitespace. Returns a new reference, or NULL with one line in err:
 * "line L, column C: what" (control characters in what are shown as \xNN).
 * line0 is the number of the text's first line in its file (a JSONL record:
 * its line; 0 or 1 for a whole file). */
json_t *mmp_json_parse(const void *buf, size_t n, int line0, char *err, size_t errlen);

/* Reads and parses the file path. 1 = parsed (*out is a new reference),
 * 0 = the file does not exist (*out = NULL), -1 = unreadable or malformed:
 * "PATH: line L, column C: what" in err. */
int mmp_json_load(const char *path, json_t **out, char *err, size_t errlen);

/* Reads a whole (small) file, NUL-terminated (n, when not NULL, excludes the
 * NUL); NULL when absent or unreadable (errno tells which). */
char *mmp_read_small_file(const char *path, size_t *n);

/* Rewrites the message in err so that it is one printable line: control
 * characters (a name quoted from a file may hold any) become \xNN. */
void mmp_err_oneline(char *err, size_t errlen);

/* Typed members of an object. Each returns 1 when obj has the key with a
 * value of the type asked for (in *out), 0 when the key is absent or its
 * value is null (*out untouched), and -1 when the value has another type
 * (or is out of range): err then says '"KEY" is a string, expected a
 * number'. obj need not be an object (then every key is absent). */
int mmp_json_get_num(const json_t *obj, const char *key, double *out, char *err, size_t errlen);
/* An integer (no fraction or exponent) within [lo, hi]. */
int mmp_json_get_int(const json_t *obj, const char *key, int64_t lo, int64_t hi, int64_t *out, char *err,
                     size_t errlen);
int mmp_json_get_bool(const json_t *obj, const char *key, int *out, char *err, size_t errlen);
/* *out points into obj (valid while obj lives). */
int mmp_json_get_str(const json_t *obj, const char *key, const char **out, char *err, size_t errlen);

/* "a string", "an integer", "a number", "an object", ... for messages. */
const char *mmp_json_type_name(const json_t *v);

/* The strings of a JSON array of strings, e.g. a checkpoint's "classes"
 * metadata '["cat","dog"]': *n and a heap array of heap strings (free each,
 * then the array). js == NULL: *n = 0, *out = NULL, returns 0. Anything but
 * an array of strings: -1 with the reason in err (*n = 0, *out = NULL). */
int mmp_json_strings(const char *js, int *n, char ***out, char *err, size_t errlen);

/* ---------------- writing ---------------- */

/* Escaping of a string literal: '"' and '\\' get a backslash; other bytes
 * below 0x20 become \u00xx (lower-case hex) unless a flag picks a short form;
 * all other bytes are copied. The flags keep the bytes each writer has
 * always produced (mmp-cat lines, checkpoint headers, reports). */
enum {
    MMP_JSON_ESC_NT = 1,   /* \n and \t as "\n" "\t" */
    MMP_JSON_ESC_R = 2,    /* \r as "\r" */
    MMP_JSON_ESC_UTF8 = 4, /* each byte that is not part of valid UTF-8 becomes \ufffd */
};
/* The literal of s ("null" when s is NULL), quotes included, onto f. */
void mmp_json_put_str(FILE *f, const char *s, unsigned flags);
/* The same as a new heap string. */
char *mmp_json_quote(const char *s, unsigned flags);

#ifdef __cplusplus
}
#endif
#endif
