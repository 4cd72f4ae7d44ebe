/* lib/json: strict parsing (nesting, duplicate keys, \u0000, integer
 * overflow, surrogate pairs, trailing bytes, invalid UTF-8) with one-line
 * messages giving the position; the typed getters and their messages; the
 * string list of a checkpoint's "classes"; the one string escaper and its
 * three dialects. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "mmp.h"
#include "testlib.h"

/* parse must fail with a message containing want, on one printable line */
static void bad(const char *text, int line0, const char *want, int line) {
    char err[512] = "";
    json_t *v = mmp_json_parse(text, strlen(text), line0, err, sizeof err);
    if (v) {
        fprintf(stderr, "line %d: accepted '%s'\n", line, text);
        t_failures++;
        json_decref(v);
        return;
    }
    int oneline = 1;
    for (const char *c = err; *c; c++) oneline &= (unsigned char)*c >= 0x20;
    if (!strstr(err, want) || !oneline) {
        fprintf(stderr, "line %d: '%s' -> error '%s', want '%s' on one line\n", line, text, err, want);
        t_failures++;
    }
}

static json_t *good(const char *text) {
    char err[512] = "";
    json_t *v = mmp_json_parse(text, strlen(text), 0, err, sizeof err);
    CHECKF(v != NULL, "'%s': %s", text, err);
    return v;
}

/* texts the parser must refuse, with (part of) the message */
static const struct {
    const char *text;
    int line0;
    const char *want;
    int line;
} bad_cases[] = {
    /* positions: line and column of the error; line0 shifts the line */
    {"{\"a\": 1,\n \"b\": x}", 0, "line 2, column 7: invalid token near 'x'", __LINE__},
    {"{\"a\": x}", 41, "line 41, column 7: invalid token", __LINE__},
    {"{\"a\": 1", 0, "line 1, column 7: '}' expected near end of file", __LINE__},
    {"", 0, "line 1, column 1: '[' or '{' expected", __LINE__},
    {"\"just a string\"", 0, "'[' or '{' expected", __LINE__},
    /* nothing but whitespace after the value */
    {"{} x", 0, "line 1, column 4: trailing bytes after the JSON value", __LINE__},
    {"{}\n\n  ]", 7, "line 9, column 3: trailing bytes", __LINE__},
    /* duplicate keys, at any depth */
    {"{\"a\": 1, \"a\": 2}", 0, "line 1, column 12: duplicate object key near '\"a\"'", __LINE__},
    {"{\"x\": {\"k\": 1, \"k\": 1}}", 0, "duplicate object key", __LINE__},
    /* NUL in strings, keys included */
    {"[\"a\\u0000b\"]", 0, "NUL character (\\u0000) in a string", __LINE__},
    {"{\"a\\u0000\": 1}", 0, "NUL byte in object key", __LINE__},
    /* integers beyond int64 are refused, not rounded */
    {"[9223372036854775808]", 0, "too big integer", __LINE__},
    {"[-9223372036854775809]", 0, "too big negative integer", __LINE__},
    {"[1e400]", 0, "real number overflow", __LINE__},
    /* lone surrogates, bad escapes, raw control characters and invalid UTF-8 */
    {"[\"\\ud83d\"]", 0, "invalid Unicode '\\uD83D'", __LINE__},
    {"[\"\\ude00\"]", 0, "invalid Unicode '\\uDE00'", __LINE__},
    {"[\"\\ud83d\\u0041\"]", 0, "invalid Unicode", __LINE__},
    {"[\"\\x\"]", 0, "invalid escape", __LINE__},
    {"[\"a\x01\"]", 0, "control character 0x1", __LINE__},
    {"[\"a\nb\"]", 0, "unexpected newline", __LINE__},
    {"[\"\xc3\x28\"]", 0, "unable to decode byte 0xc3", __LINE__},
    {"[\"\xed\xa0\x80\"]", 0, "unable to decode byte", __LINE__}, /* an encoded surrogate */
    {"[nan]", 0, "invalid token near 'nan'", __LINE__},
};

static void test_parse(void) {
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++)
        bad(bad_cases[i].text, bad_cases[i].line0, bad_cases[i].want, bad_cases[i].line);
    {
        char err[256] = "";
        CHECK(mmp_json_parse("[1]\0", 4, 0, err, sizeof err) == NULL && strstr(err, "line 1, column 4: trailing bytes"));
        json_t *v = mmp_json_parse("  [1] \r\n\t ", 10, 0, err, sizeof err);
        CHECKF(v && json_array_size(v) == 1, "%s", err);
        json_decref(v);
        /* a buffer that is not NUL-terminated is read to n only */
        v = mmp_json_parse("[2]]]]", 3, 0, err, sizeof err);
        CHECKF(v && json_integer_value(json_array_get(v, 0)) == 2, "%s", err);
        json_decref(v);
    }
    json_t *v = good("{\"x\": {\"k\": 1}, \"k\": 2}"); /* the same key in two objects is fine */
    json_decref(v);
    /* int64's ends are exact */
    v = good("[9223372036854775807, -9223372036854775808, 9007199254740993, 1.5, 2e3]");
    CHECK(json_integer_value(json_array_get(v, 0)) == INT64_MAX);
    CHECK(json_integer_value(json_array_get(v, 1)) == INT64_MIN);
    CHECK(json_integer_value(json_array_get(v, 2)) == 9007199254740993LL); /* 2^53 + 1: not a double */
    CHECK(json_is_real(json_array_get(v, 3)) && json_is_real(json_array_get(v, 4)));
    json_decref(v);
    /* strings: surrogate pairs and escapes decode to UTF-8 (the refused ones are in bad_cases) */
    v = good("[\"\\ud83d\\ude00\", \"caf\\u00e9\", \"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]");
    CHECK(!strcmp(json_string_value(json_array_get(v, 0)), "\xf0\x9f\x98\x80"));
    CHECK(!strcmp(json_string_value(json_array_get(v, 1)), "caf\xc3\xa9"));
    CHECK(!strcmp(json_string_value(json_array_get(v, 2)), "\"\\/\b\f\n\r\t"));
    json_decref(v);
    /* nesting: MMP_JSON_MAX_DEPTH levels are fine, one more is not */
    char deep[2 * MMP_JSON_MAX_DEPTH + 8] = "";
    for (int i = 0; i < MMP_JSON_MAX_DEPTH; i++) strcat(deep, "[");
    for (int i = 0; i < MMP_JSON_MAX_DEPTH; i++) strcat(deep, "]");
    v = good(deep);
    json_decref(v);
    snprintf(deep, sizeof deep, "{\"a\":");
    for (int i = 0; i < MMP_JSON_MAX_DEPTH; i++) strcat(deep, "[");
    for (int i = 0; i < MMP_JSON_MAX_DEPTH; i++) strcat(deep, "]");
    strcat(deep, "}");
    bad(deep, 5, "line 5: nested too deeply (more than 32 levels)", __LINE__);
    /* keys keep the text's order */
    v = good("{\"z\": 1, \"a\": 2, \"m\": 3}");
    const char *k, *order[3] = {"z", "a", "m"};
    json_t *m;
    int i = 0;
    json_object_foreach(v, k, m) CHECK(i < 3 && !strcmp(k, order[i++]));
    json_decref(v);
}

static void test_getters(void) {
    json_t *o = good("{\"n\": 2.5, \"i\": 7, \"big\": 1099511627776, \"s\": \"x\", \"b\": false, \"z\": null,"
                     " \"o\": {\"i\": 8}, \"a\": [1]}");
    char err[256];
    double d = -1;
    int64_t i = -1;
    int b = -1;
    const char *s = NULL;
    CHECK(mmp_json_get_num(o, "n", &d, err, sizeof err) == 1 && d == 2.5);
    CHECK(mmp_json_get_num(o, "i", &d, err, sizeof err) == 1 && d == 7); /* an integer is a number */
    CHECK(mmp_json_get_int(o, "i", 0, 10, &i, err, sizeof err) == 1 && i == 7);
    CHECK(mmp_json_get_int(o, "big", 0, INT64_MAX, &i, err, sizeof err) == 1 && i == 1099511627776LL);
    CHECK(mmp_json_get_str(o, "s", &s, err, sizeof err) == 1 && !strcmp(s, "x"));
    CHECK(mmp_json_get_bool(o, "b", &b, err, sizeof err) == 1 && b == 0);
    /* absent and null: 0, *out untouched */
    d = -1;
    CHECK(mmp_json_get_num(o, "missing", &d, err, sizeof err) == 0 && d == -1);
    CHECK(mmp_json_get_num(o, "z", &d, err, sizeof err) == 0 && d == -1);
    CHECK(mmp_json_get_int(o, "z", 0, 1, &i, err, sizeof err) == 0);
    /* a key of a nested object is not a key of the outer one */
    i = -1;
    CHECK(mmp_json_get_int(o, "i", 0, 10, &i, err, sizeof err) == 1 && i == 7);
    CHECK(mmp_json_get_int(json_object_get(o, "o"), "i", 0, 10, &i, err, sizeof err) == 1 && i == 8);
    CHECK(mmp_json_get_str(o, "x", &s, err, sizeof err) == 0);
    /* not an object: every key is absent */
    CHECK(mmp_json_get_num(json_object_get(o, "a"), "n", &d, err, sizeof err) == 0);
    CHECK(mmp_json_get_num(NULL, "n", &d, err, sizeof err) == 0);
    /* the wrong type or range: -1, the message names the key */
#define WRONG(call, want) CHECKF((call) == -1 && !strcmp(err, want), "%s: '%s'", #call, err)
    WRONG(mmp_json_get_num(o, "s", &d, err, sizeof err), "\"s\" is a string, expected a number");
    WRONG(mmp_json_get_int(o, "n", 0, 10, &i, err, sizeof err), "\"n\" is a number, expected an integer");
    WRONG(mmp_json_get_int(o, "i", 0, 5, &i, err, sizeof err), "\"i\" is 7, expected 0 to 5");
    WRONG(mmp_json_get_bool(o, "i", &b, err, sizeof err), "\"i\" is an integer, expected true or false");
    WRONG(mmp_json_get_str(o, "o", &s, err, sizeof err), "\"o\" is an object, expected a string");
    WRONG(mmp_json_get_str(o, "a", &s, err, sizeof err), "\"a\" is an array, expected a string");
    WRONG(mmp_json_get_num(o, "b", &d, err, sizeof err), "\"b\" is a boolean, expected a number");
#undef WRONG
    json_decref(o);
}

static void test_load(void) {
    char err[512] = "";
    json_t *v = (json_t *)1;
    CHECK(mmp_json_load("no-such-file.json", &v, err, sizeof err) == 0 && v == NULL);
    FILE *f = fopen("c.json", "w");
    fputs("{\"a\": 1,\n \"a\": 2}\n", f);
    fclose(f);
    CHECKF(mmp_json_load("c.json", &v, err, sizeof err) == -1 && v == NULL &&
           !strcmp(err, "c.json: line 2, column 4: duplicate object key near '\"a\"'"), "%s", err);
    f = fopen("c.json", "w");
    fputs("{\"a\": [1, 2]}\n", f);
    fclose(f);
    CHECKF(mmp_json_load("c.json", &v, err, sizeof err) == 1 && json_array_size(json_object_get(v, "a")) == 2, "%s", err);
    json_decref(v);
    if (getuid() != 0) { /* unreadable (root reads anyway) */
        chmod("c.json", 0);
        CHECKF(mmp_json_load("c.json", &v, err, sizeof err) == -1 && strstr(err, "c.json: ") && strstr(err, "denied"), "%s", err);
        chmod("c.json", 0644);
    }
}

/* a checkpoint's class list (lib/train/checkpoint.c reads it with mmp_json_strings) */
static void test_strings(void) {
    char err[256] = "", **names = NULL;
    int n = -1;
    CHECK(mmp_json_strings(NULL, &n, &names, err, sizeof err) == 0 && n == 0 && names == NULL);
    CHECK(mmp_json_strings("[]", &n, &names, err, sizeof err) == 0 && n == 0 && names == NULL);
    /* an escaped surrogate pair is one character: valid UTF-8 F0 9F 98 80 */
    CHECKF(mmp_json_strings("[\"cat\", \"a \\\"b\\\"\\n\", \"\\ud83d\\ude00\", \"caf\\u00e9\"]", &n, &names, err, sizeof err) == 0 && n == 4,
           "%d %s", n, err);
    if (n == 4) {
        CHECK(!strcmp(names[0], "cat") && !strcmp(names[1], "a \"b\"\n"));
        CHECK(!memcmp(names[2], "\xf0\x9f\x98\x80", 5));
        CHECK(!strcmp(names[3], "caf\xc3\xa9"));
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    /* what mmp_json_str wrote reads back the same */
    const char *odd[3] = {"tab\there", "back\\slash \"q\"", "\x01\x1f\xc3\xa9\r"};
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fputc('[', f);
    for (int i = 0; i < 3; i++) {
        if (i) fputc(',', f);
        mmp_json_put_str(f, odd[i], MMP_JSON_ESC_NT);
    }
    fputc(']', f);
    fclose(f);
    CHECKF(mmp_json_strings(buf, &n, &names, err, sizeof err) == 0 && n == 3, "%s: %s", buf, err);
    for (int i = 0; i < n; i++) {
        CHECK(!strcmp(names[i], odd[i]));
        free(names[i]);
    }
    free(names);
    free(buf);
    /* anything else: -1, a reason, nothing returned */
    const char *badl[][2] = {{"[\"a\", 1]", "item 1 is an integer, expected a string"},
                             {"{\"a\": \"b\"}", "expected a JSON array of strings"},
                             {"cat,dog", "line 1, column 3: '[' or '{' expected near 'cat'"},
                             {"[\"a\\u0000\"]", "NUL character"},
                             {"[\"a\"", "line 1, column 4"}};
    for (size_t i = 0; i < sizeof badl / sizeof badl[0]; i++) {
        n = -1;
        names = (char **)1;
        CHECKF(mmp_json_strings(badl[i][0], &n, &names, err, sizeof err) == -1 && n == 0 && names == NULL &&
               strstr(err, badl[i][1]), "'%s': %s", badl[i][0], err);
    }
}

static void test_escape(void) {
    /* one string through the three dialects */
    const char *s = "a\"b\\c/d\n\t\r\x01\x1f\x7f caf\xc3\xa9 \xff \xf0\x9f\x98\x80 \xed\xa0\x80 \xc0\xaf";
    struct { unsigned flags; const char *want; } d[] = {
        /* safetensors headers (plus U+FFFD for what is not UTF-8) */
        {MMP_JSON_ESC_UTF8, "\"a\\\"b\\\\c/d\\u000a\\u0009\\u000d\\u0001\\u001f\x7f caf\xc3\xa9 \\ufffd \xf0\x9f\x98\x80 "
                            "\\ufffd\\ufffd\\ufffd \\ufffd\\ufffd\""},
        /* reports and checkpoints' class lists (mmp_json_str) */
        {MMP_JSON_ESC_NT, "\"a\\\"b\\\\c/d\\n\\t\\u000d\\u0001\\u001f\x7f caf\xc3\xa9 \xff \xf0\x9f\x98\x80 \xed\xa0\x80 \xc0\xaf\""},
        /* mmp-cat */
        {MMP_JSON_ESC_NT | MMP_JSON_ESC_R | MMP_JSON_ESC_UTF8,
         "\"a\\\"b\\\\c/d\\n\\t\\r\\u0001\\u001f\x7f caf\xc3\xa9 \\ufffd \xf0\x9f\x98\x80 \\ufffd\\ufffd\\ufffd \\ufffd\\ufffd\""},
        /* the minimal form */
        {0, "\"a\\\"b\\\\c/d\\u000a\\u0009\\u000d\\u0001\\u001f\x7f caf\xc3\xa9 \xff \xf0\x9f\x98\x80 \xed\xa0\x80 \xc0\xaf\""},
    };
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        char *q = mmp_json_quote(s, d[i].flags);
        CHECKF(!strcmp(q, d[i].want), "flags %u: %s", d[i].flags, q);
        free(q);
    }
    char *q = mmp_json_quote("", 0);
    CHECK(!strcmp(q, "\"\""));
    free(q);
    q = mmp_json_quote(NULL, MMP_JSON_ESC_UTF8);
    CHECK(!strcmp(q, "null"));
    free(q);
    /* a truncated sequence at the end */
    q = mmp_json_quote("x\xe2\x82", MMP_JSON_ESC_UTF8);
    CHECK(!strcmp(q, "\"x\\ufffd\\ufffd\""));
    free(q);
    /* the UTF-8-fixing dialect always gives what the strict reader accepts, and the
     * string back when it was valid */
    char *lit = mmp_json_quote(s, MMP_JSON_ESC_UTF8);
    char *arr = mmp_xasprintf("[%s]", lit);
    char err[256] = "";
    json_t *v = mmp_json_parse(arr, strlen(arr), 0, err, sizeof err);
    CHECKF(v && json_is_string(json_array_get(v, 0)), "%s: %s", arr, err);
    json_decref(v);
    free(lit);
    free(arr);
    const char *valid = "a\"b\\ \n\t\r\x01 caf\xc3\xa9 \xf0\x9f\x98\x80";
    for (unsigned flags = 0; flags < 8; flags++) {
        lit = mmp_json_quote(valid, flags);
        arr = mmp_xasprintf("[%s]", lit);
        v = mmp_json_parse(arr, strlen(arr), 0, err, sizeof err);
        CHECKF(v && !strcmp(json_string_value(json_array_get(v, 0)), valid), "flags %u: %s: %s", flags, arr, err);
        json_decref(v);
        free(lit);
        free(arr);
    }
}

static void test_oneline(void) {
    char err[64];
    snprintf(err, sizeof err, "tensor 'a\nb\x7f' x");
    mmp_err_oneline(err, sizeof err);
    CHECK(!strcmp(err, "tensor 'a\\x0ab\\x7f' x"));
    snprintf(err, 8, "a\n\n\n\n\n");
    mmp_err_oneline(err, 8); /* stays within its buffer */
    CHECK(strlen(err) < 8 && !strchr(err, '\n'));
}

int main(void) {
    test_parse();
    test_getters();
    test_load();
    test_strings();
    test_escape();
    test_oneline();
    TEST_END();
}
