/* mmp_cli_dump: the option table as tab-separated lines for the man page and
 * completion generators, and mmp_cli_parse_r printing it when MMP_CLI_DUMP=1. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "testlib.h"

static char *dump_of(const mmp_option *opts, const char *usage, int argc, char **argv, int *rc) {
    FILE *f = tmpfile();
    char *pos[8], err[256];
    *rc = mmp_cli_parse_r(argc, argv, opts, usage, pos, f, err, sizeof err);
    long n = ftell(f);
    char *s = calloc(1, (size_t)n + 1);
    rewind(f);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) s[0] = 0;
    fclose(f);
    return s;
}

int main(void) {
    mmp_cli_init("mmp-t");
    static const char *const modes[] = {"fast", "exact", NULL};
    int j = 1, mode = 0, full = 0, hidden = 0;
    const char *out = "-";
    mmp_option opts[] = {
        MMP_O_FLAG("full", 0, &full, "exact\tshuffle\nsecond line \\ backslash"),
        MMP_O_THREADS(&j, "threads"),
        MMP_O_CHOICE("mode", 'm', &mode, modes, "how"),
        MMP_O_OUTPUT(&out, "output"),
        MMP_O_FLAG("hidden", 0, &hidden, NULL),
        MMP_O_TEXT("\nA note."),
        MMP_O_COMMON,
        MMP_O_END,
    };
    const char *usage = "usage: mmp-t [options] IN\nDoes things.\n\n";
    char *argv[] = {"mmp-t", "--full", "x", NULL};
    int rc;

    /* without MMP_CLI_DUMP: parsed as usual */
    unsetenv("MMP_CLI_DUMP");
    char *s = dump_of(opts, usage, 3, argv, &rc);
    CHECK(rc == 1 && full == 1 && s[0] == 0);
    free(s);
    /* another value than 1: parsed as usual */
    setenv("MMP_CLI_DUMP", "0", 1);
    full = 0;
    s = dump_of(opts, usage, 3, argv, &rc);
    CHECK(rc == 1 && full == 1 && s[0] == 0);
    free(s);

    setenv("MMP_CLI_DUMP", "1", 1);
    full = 0;
    s = dump_of(opts, usage, 3, argv, &rc);
    CHECK(rc == MMP_CLI_EXIT);
    CHECK(full == 0); /* nothing parsed */
    char want[1024];
    snprintf(want, sizeof want,
             "program\tmmp-t\t%s\n"
             "usage\tusage: mmp-t [options] IN\\nDoes things.\\n\\n\n"
             "option\tfull\t\tflag\t\t\texact\\tshuffle\\nsecond line \\\\ backslash\n"
             "option\tthreads\tj\tint\tN\t\tthreads\n"
             "option\tmode\tm\tchoice\tfast|exact\tfast|exact\thow\n"
             "option\toutput\to\tstring\tFILE\t\toutput\n"
             "text\t\\nA note.\n"
             "option\tprogress\t\tflag\t\t\tprogress on stderr (default: when stderr is a terminal)\n"
             "option\tno-progress\t\tflag\t\t\tno progress line\n"
             "option\thelp\th\thelp\t\t\tthis help\n"
             "option\tversion\t\tversion\t\t\tthe version\n",
             MMP_VERSION);
    CHECKF(!strcmp(s, want), "dump:\n%s\nwant:\n%s", s, want);
    free(s);
    unsetenv("MMP_CLI_DUMP");
    TEST_END();
}
