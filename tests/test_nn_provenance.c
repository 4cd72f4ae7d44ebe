/* mmp_provenance_check / mmp_provenance_format. */
#include <sys/wait.h>
#include <unistd.h>

#include "mmp.h"
#include "nn/provenance.h"
#include "testlib.h"

/* Runs the check in a child; returns its exit status and its stderr in buf. */
static int run_check(const mmp_header *h, const char *b, int allow, char *buf, size_t len) {
    int fd[2];
    if (pipe(fd)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        mmp_provenance_check(h, b, allow, "test.mmp", "head.safetensors");
        _exit(0);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t k;
    while (n + 1 < len && (k = read(fd[0], buf + n, len - 1 - n)) > 0) n += (size_t)k;
    buf[n] = 0;
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(void) {
    mmp_set_progname("mmp-test");
    float mean[3] = {0.5f, 0.5f, 0.5f}, std[3] = {0.25f, 0.2f, 0.125f};
    char *p = mmp_provenance_format("mobilenet_v2", "pool", "96x96", "ab12", mean, std);
    CHECK(!strcmp(p, "mobilenet_v2:pool:size=96x96:sha256=ab12:mean=0.5,0.5,0.5:std=0.25,0.2,0.125"));
    char *q = mmp_provenance_format("mobilenet_v2", "pool", "224x224", "ab12", mean, std);
    mmp_header h;
    mmp_header_init(&h);
    char buf[2048];
    CHECK(run_check(&h, NULL, 0, buf, sizeof buf) == 0); /* both absent */
    CHECK(run_check(&h, p, 0, buf, sizeof buf) == 1);    /* one absent */
    CHECK(strstr(buf, "(none)") && strstr(buf, "96x96"));
    mmp_meta_set(&h.meta, "provenance", p);
    CHECK(run_check(&h, p, 0, buf, sizeof buf) == 0 && buf[0] == 0);
    CHECK(run_check(&h, q, 0, buf, sizeof buf) == 1);
    CHECKF(strstr(buf, "mmp-test: provenance mismatch: test.mmp has \"mobilenet_v2:pool:size=96x96") == buf &&
               strstr(buf, "head.safetensors has \"mobilenet_v2:pool:size=224x224") && strstr(buf, "--allow-mixed") &&
               strchr(buf, '\n') == buf + strlen(buf) - 1, /* exactly one line */
           "message: %s", buf);
    CHECK(run_check(&h, q, 1, buf, sizeof buf) == 0 && strstr(buf, "warning"));
    mmp_header_free(&h);
    free(p);
    free(q);
    TEST_END();
}
