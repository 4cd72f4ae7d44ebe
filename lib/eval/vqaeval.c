/* eval/vqaeval.c: the official VQA accuracy (see vqaeval.h). */
#include "eval/vqaeval.h"

#include <stdlib.h>
#include <string.h>

#include "mmp.h"

/* ASCII characters Python's str.split()/strip() take for whitespace */
static int pyspace(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }
static int digit(unsigned char c) { return c >= '0' && c <= '9'; }

static const char punct[] = {';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',', '?', '!'};

char *mmp_vqa_punct(const char *in) {
    size_t n = strlen(in);
    /* re.search("(\d)(\,)(\d)", inText) */
    int comma = 0;
    for (size_t i = 1; i + 1 < n && !comma; i++) comma = in[i] == ',' && digit((unsigned char)in[i - 1]) && digit((unsigned char)in[i + 1]);
    char *out = mmp_xmalloc(n + 1);
    memcpy(out, in, n + 1);
    for (size_t k = 0; k < sizeof punct; k++) {
        char p = punct[k];
        /* p + ' ' in inText or ' ' + p in inText (the original text) */
        int spaced = 0;
        for (size_t i = 0; i < n && !spaced; i++)
            spaced = in[i] == p && ((i + 1 < n && in[i + 1] == ' ') || (i > 0 && in[i - 1] == ' '));
        size_t w = 0;
        for (size_t i = 0; out[i]; i++) {
            if (out[i] != p) out[w++] = out[i];
            else if (!(spaced || comma)) out[w++] = ' ';
        }
        out[w] = 0;
    }
    /* periodStrip.sub("", outText, 32): "(?!<=\d)(\.)(?!\d)" is a period not
     * followed by a digit (the first group is a look-ahead, always true) */
    size_t w = 0;
    int subs = 0;
    for (size_t i = 0; out[i]; i++) {
        if (out[i] == '.' && subs < 32 && !digit((unsigned char)out[i + 1])) {
            subs++;
            continue;
        }
        out[w++] = out[i];
    }
    out[w] = 0;
    return out;
}

static const char *const number_words[][2] = {{"none", "0"}, {"zero", "0"}, {"one", "1"},   {"two", "2"},
                                              {"three", "3"}, {"four", "4"}, {"five", "5"},  {"six", "6"},
                                              {"seven", "7"}, {"eight", "8"}, {"nine", "9"}, {"ten", "10"}};

/* vqaEval.py's contractions dictionary (keys with capitals never match a
 * lower-cased word; kept as the table has them) */
static const char *const contractions[][2] = {
    {"aint", "ain't"}, {"arent", "aren't"}, {"cant", "can't"}, {"couldve", "could've"}, {"couldnt", "couldn't"},
    {"couldn'tve", "couldn't've"}, {"couldnt've", "couldn't've"}, {"didnt", "didn't"}, {"doesnt", "doesn't"},
    {"dont", "don't"}, {"hadnt", "hadn't"}, {"hadnt've", "hadn't've"}, {"hadn'tve", "hadn't've"}, {"hasnt", "hasn't"},
    {"havent", "haven't"}, {"hed", "he'd"}, {"hed've", "he'd've"}, {"he'dve", "he'd've"}, {"hes", "he's"},
    {"howd", "how'd"}, {"howll", "how'll"}, {"hows", "how's"}, {"Id've", "I'd've"}, {"I'dve", "I'd've"}, {"Im", "I'm"},
    {"Ive", "I've"}, {"isnt", "isn't"}, {"itd", "it'd"}, {"itd've", "it'd've"}, {"it'dve", "it'd've"}, {"itll", "it'll"},
    {"let's", "let's"}, {"maam", "ma'am"}, {"mightnt", "mightn't"}, {"mightnt've", "mightn't've"},
    {"mightn'tve", "mightn't've"}, {"mightve", "might've"}, {"mustnt", "mustn't"}, {"mustve", "must've"},
    {"neednt", "needn't"}, {"notve", "not've"}, {"oclock", "o'clock"}, {"oughtnt", "oughtn't"}, {"ow's'at", "'ow's'at"},
    {"'ows'at", "'ow's'at"}, {"'ow'sat", "'ow's'at"}, {"shant", "shan't"}, {"shed've", "she'd've"},
    {"she'dve", "she'd've"}, {"she's", "she's"}, {"shouldve", "should've"}, {"shouldnt", "shouldn't"},
    {"shouldnt've", "shouldn't've"}, {"shouldn'tve", "shouldn't've"}, {"somebody'd", "somebodyd"},
    {"somebodyd've", "somebody'd've"}, {"somebody'dve", "somebody'd've"}, {"somebodyll", "somebody'll"},
    {"somebodys", "somebody's"}, {"someoned", "someone'd"}, {"someoned've", "someone'd've"},
    {"someone'dve", "someone'd've"}, {"someonell", "someone'll"}, {"someones", "someone's"},
    {"somethingd", "something'd"}, {"somethingd've", "something'd've"}, {"something'dve", "something'd've"},
    {"somethingll", "something'll"}, {"thats", "that's"}, {"thered", "there'd"}, {"thered've", "there'd've"},
    {"there'dve", "there'd've"}, {"therere", "there're"}, {"theres", "there's"}, {"theyd", "they'd"},
    {"theyd've", "they'd've"}, {"they'dve", "they'd've"}, {"theyll", "they'll"}, {"theyre", "they're"},
    {"theyve", "they've"}, {"twas", "'twas"}, {"wasnt", "wasn't"}, {"wed've", "we'd've"}, {"we'dve", "we'd've"},
    {"weve", "we've"}, {"werent", "weren't"}, {"whatll", "what'll"}, {"whatre", "what're"}, {"whats", "what's"},
    {"whatve", "what've"}, {"whens", "when's"}, {"whered", "where'd"}, {"wheres", "where's"}, {"whereve", "where've"},
    {"whod", "who'd"}, {"whod've", "who'd've"}, {"who'dve", "who'd've"}, {"wholl", "who'll"}, {"whos", "who's"},
    {"whove", "who've"}, {"whyll", "why'll"}, {"whyre", "why're"}, {"whys", "why's"}, {"wont", "won't"},
    {"wouldve", "would've"}, {"wouldnt", "wouldn't"}, {"wouldnt've", "wouldn't've"}, {"wouldn'tve", "wouldn't've"},
    {"yall", "y'all"}, {"yall'll", "y'all'll"}, {"y'allll", "y'all'll"}, {"yall'd've", "y'all'd've"},
    {"y'alld've", "y'all'd've"}, {"y'all'dve", "y'all'd've"}, {"youd", "you'd"}, {"youd've", "you'd've"},
    {"you'dve", "you'd've"}, {"youll", "you'll"}, {"youre", "you're"}, {"youve", "you've"}};

static const char *lookup(const char *const (*tab)[2], size_t n, const char *w, size_t len) {
    for (size_t k = 0; k < n; k++)
        if (strlen(tab[k][0]) == len && !memcmp(tab[k][0], w, len)) return tab[k][1];
    return NULL;
}

char *mmp_vqa_digit_article(const char *in) {
    size_t n = strlen(in);
    char *low = mmp_xmalloc(n + 1), *out = mmp_xmalloc(2 * n + 16);
    for (size_t i = 0; i <= n; i++) low[i] = (char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] + 32 : in[i]);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && pyspace((unsigned char)low[i])) i++;
        if (i == n) break;
        size_t j = i;
        while (j < n && !pyspace((unsigned char)low[j])) j++;
        const char *w = low + i;
        size_t len = j - i;
        const char *m = lookup(number_words, sizeof number_words / sizeof *number_words, w, len);
        if (m) w = m, len = strlen(m);
        i = j;
        if ((len == 1 && w[0] == 'a') || (len == 2 && !memcmp(w, "an", 2)) || (len == 3 && !memcmp(w, "the", 3))) continue;
        const char *c = lookup(contractions, sizeof contractions / sizeof *contractions, w, len);
        if (c) w = c, len = strlen(c);
        if (o) out[o++] = ' ';
        memcpy(out + o, w, len); /* a replacement is at most 2x + 4 bytes longer than its key */
        o += len;
    }
    out[o] = 0;
    free(low);
    return out;
}

/* '\n' and '\t' -> ' ', then str.strip() */
static char *clean(const char *s) {
    while (*s && pyspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && pyspace((unsigned char)s[n - 1])) n--;
    char *o = mmp_xmalloc(n + 1);
    for (size_t i = 0; i < n; i++) o[i] = s[i] == '\n' || s[i] == '\t' ? ' ' : s[i];
    o[n] = 0;
    return o;
}

char *mmp_vqa_normalize(const char *s) {
    char *a = clean(s), *b = mmp_vqa_punct(a), *c = mmp_vqa_digit_article(b);
    free(a);
    free(b);
    return c;
}

double mmp_vqa_accuracy(const char *pred, const char *const *answers, int n) {
    if (n < 1) return 0.0;
    char *res = mmp_vqa_normalize(pred);
    int differ = 0;
    for (int i = 1; i < n && !differ; i++) differ = strcmp(answers[i], answers[0]) != 0;
    char **gt = mmp_xmalloc(sizeof(char *) * (size_t)n);
    for (int i = 0; i < n; i++) gt[i] = differ ? mmp_vqa_punct(answers[i]) : mmp_xstrdup(answers[i]);
    int match = 0;
    for (int i = 0; i < n; i++) match += !strcmp(gt[i], res);
    double sum = 0;
    for (int i = 0; i < n; i++) {
        int others = match - !strcmp(gt[i], res);
        double acc = others / 3.0;
        sum += acc < 1 ? acc : 1;
    }
    for (int i = 0; i < n; i++) free(gt[i]);
    free(gt);
    free(res);
    return sum / n;
}

int mmp_vqa_exact(const char *pred, const char *answer) {
    char *a = mmp_vqa_normalize(pred), *b = mmp_vqa_normalize(answer);
    int eq = !strcmp(a, b);
    free(a);
    free(b);
    return eq;
}
