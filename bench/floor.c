/* bench/floor.c — the floor: the least a runner can do.
 *
 * floor N DRAIN_MS CMD ARGS…: fork+exec N copies of CMD (each in its own
 * process group, with PR_SET_PDEATHSIG so they die with the floor), then
 * wait for SIGTERM; on it, SIGTERM every child, SIGKILL whatever is left
 * after DRAIN_MS, reap them all and exit 0. No output relay, no restarts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: floor N DRAIN_MS CMD [ARGS…]\n");
        return 2;
    }
    int n = atoi(argv[1]);
    long drain_ms = atol(argv[2]);
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    pid_t self = getpid();
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            setpgid(0, 0);
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != self) _exit(1);
            sigprocmask(SIG_UNBLOCK, &set, NULL);
            execvp(argv[3], argv + 3);
            _exit(127);
        }
        pids[i] = pid;
    }
    int sig;
    sigwait(&set, &sig);
    for (int i = 0; i < n; i++) kill(pids[i], SIGTERM);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int left = n;
    while (left > 0) {
        pid_t pid = waitpid(-1, NULL, WNOHANG);
        if (pid > 0) { left--; continue; }
        if (pid < 0 && errno == ECHILD) break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (elapsed >= drain_ms) {
            for (int i = 0; i < n; i++) kill(-pids[i], SIGKILL);
            while (waitpid(-1, NULL, 0) > 0) {}
            break;
        }
        struct timespec nap = {0, 200000}; /* 0.2 ms */
        nanosleep(&nap, NULL);
    }
    return 0;
}
