/* bench/child.c — the process every runner in the benchmark supervises.
 *
 * It reports to the harness through the FIFO named by $BENCH_FIFO, one
 * atomic write(2) per line: "S <pid> <monotonic ns>" when it starts,
 * "G <pid> <ns>" for a grandchild it forked, "X <pid> <ns>" just before a
 * deliberate failure exit. $BENCH_DIR is a scratch directory shared by all
 * children of one run (used to elect one "first" child with O_EXCL).
 *
 * Modes (argv[1]):
 *   sleep       report, then pause until a signal kills it (default action)
 *   stubborn    like sleep, but the first child ignores SIGTERM
 *   grandchild  report, fork a grandchild (same process group) that reports, pause
 *   setsid      like grandchild, but the grandchild calls setsid() first (it
 *               leaves its session and process group) before it reports
 *   lines N ID  write N lines of 60 bytes "L<ID>:<seq>:xxx…" to stdout, exit 0
 *   exit1       the first child reports, then writes "X" and exits 1; others sleep
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void report(char kind) {
    const char *fifo = getenv("BENCH_FIFO");
    if (!fifo) return;
    int fd = open(fifo, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%c %d %lld\n", kind, (int)getpid(), now_ns());
    if (write(fd, buf, (size_t)n) < 0) { /* the harness went away: nothing to do */ }
    close(fd);
}

static int first_child(const char *name) {
    const char *dir = getenv("BENCH_DIR");
    if (!dir) return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) return 0;
    close(fd);
    return 1;
}

static void forever(void) {
    for (;;) pause();
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "sleep";
    if (strcmp(mode, "stubborn") == 0) {
        if (first_child("stubborn")) signal(SIGTERM, SIG_IGN);
        report('S');
        forever();
    } else if (strcmp(mode, "grandchild") == 0) {
        report('S');
        pid_t pid = fork();
        if (pid == 0) {
            report('G');
            forever();
        }
        forever();
    } else if (strcmp(mode, "setsid") == 0) {
        report('S');
        pid_t pid = fork();
        if (pid == 0) {
            setsid();
            report('G');
            forever();
        }
        forever();
    } else if (strcmp(mode, "lines") == 0) {
        long n = argc > 2 ? atol(argv[2]) : 1000;
        const char *id = argc > 3 ? argv[3] : "0";
        /* 60 bytes including the newline, written through a large buffer. */
        static char out[1 << 16];
        setvbuf(stdout, out, _IOFBF, sizeof out);
        for (long i = 0; i < n; i++) {
            char line[80];
            int len = snprintf(line, sizeof line, "L%s:%09ld:", id, i);
            while (len < 59) line[len++] = 'x';
            line[len++] = '\n';
            fwrite(line, 1, (size_t)len, stdout);
        }
        fflush(stdout);
        return 0;
    } else if (strcmp(mode, "exit1") == 0) {
        int first = first_child("exit1");
        report('S');
        if (first) {
            report('X');
            return 1;
        }
        forever();
    }
    report('S');
    forever();
    return 0;
}
