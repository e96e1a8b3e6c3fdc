/* bench/floorcg.c — the cgroup floor: floor.c plus one cgroup per child.
 *
 * floorcg N DRAIN_MS CMD ARGS…: what floor.c does, with the per-process
 * cgroup work a runner with cgroup containment cannot avoid:
 *   - the cgroup2 hierarchy is found in /proc/self/mountinfo; the run's
 *     cgroup is RUN = floorcg-PID under our own cgroup (from
 *     /proc/self/cgroup) if one can be made there, else under the
 *     hierarchy's root, with RUN/g/ in it and RUN/g/I/ for child I, made
 *     just before that child starts;
 *   - each child is born in its cgroup: clone3 with CLONE_INTO_CGROUP and
 *     an O_DIRECTORY descriptor of the leaf, closed after the clone; the
 *     child then does what floor.c's child does;
 *   - on SIGTERM (or SIGINT): SIGTERM every child, reap them (SIGKILL to
 *     what is left after DRAIN_MS, as floor.c), and for each reaped child
 *     read the first line of its leaf's cpu.stat (usage_usec) with one
 *     open+read+close and rmdir the leaf; then rmdir g and RUN; exit 0.
 * Leaves are opened and removed relative to a descriptor of g, the least
 * path walking there is. The CPU times read are summed and not printed:
 * the read is the cost being measured (a runner reports the figure).
 *
 * Every path out removes the cgroups it made. With no writable cgroup2
 * hierarchy it prints one line to stderr and exits 2. It also sets
 * PR_SET_PDEATHSIG(SIGTERM) on itself, so if whoever started it dies it
 * stops and cleans up as on SIGTERM. Only a SIGKILL of floorcg itself
 * leaves RUN behind (empty: the children die of their PR_SET_PDEATHSIG).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

static char run_path[PATH_MAX]; /* RUN; empty until made */
static int gfd = -1;            /* RUN/g */
static int n_made;              /* leaves 0..n_made-1 were made */
static char *removed;           /* removed[i]: leaf i is gone */
static pid_t *pids;             /* pids[i] > 0: child i runs or awaits reaping */
static unsigned long long cpu_usec; /* sum of the usage_usec read */

static long ms_since(const struct timespec *start) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s) {
    char *w = s;
    for (char *r = s; *r;) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' &&
            r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 4;
        } else {
            *w++ = *r++;
        }
    }
    *w = 0;
}

/* The cgroup2 mount point (a mount of the hierarchy's root), or 0. */
static int find_mount(char *out, size_t size) {
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f) return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL…] - FSTYPE SOURCE SUPER */
        char *sep = strstr(line, " - ");
        if (!sep) continue;
        *sep = 0;
        char fstype[64];
        if (sscanf(sep + 3, "%63s", fstype) != 1 || strcmp(fstype, "cgroup2") != 0) continue;
        char root[PATH_MAX], mount[PATH_MAX];
        if (sscanf(line, "%*s %*s %*s %4095s %4095s", root, mount) != 2) continue;
        if (strcmp(root, "/") != 0) continue; /* a bind mount of a sub-tree */
        unescape(mount);
        found = snprintf(out, size, "%s", mount) < (int)size;
    }
    fclose(f);
    return found;
}

/* Our own cgroup v2 path ("0::PATH" in /proc/self/cgroup, without the
 * leading slash), or an empty string. */
static void own_cgroup(char *out, size_t size) {
    out[0] = 0;
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f) return;
    char line[PATH_MAX + 8];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "0::", 3) != 0) continue;
        char *p = line + 3;
        while (*p == '/') p++;
        p[strcspn(p, "\n")] = 0;
        if (snprintf(out, size, "%s", p) >= (int)size) out[0] = 0; /* too long: use the root */
        break;
    }
    fclose(f);
}

/* snprintf into `why`; cutting a long message short is fine. */
static void say(char *why, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, size, fmt, ap);
    va_end(ap);
}

/* Make RUN and RUN/g and open g. On failure, says why and returns 0. */
static int make_run(char *why, size_t why_size) {
    char mount[PATH_MAX], own[PATH_MAX], parent[2][PATH_MAX];
    if (!find_mount(mount, sizeof mount)) {
        say(why, why_size, "no cgroup2 hierarchy is mounted");
        return 0;
    }
    own_cgroup(own, sizeof own);
    int np = 0;
    if (own[0] && snprintf(parent[np], PATH_MAX, "%s/%s", mount, own) < PATH_MAX) np++;
    snprintf(parent[np++], PATH_MAX, "%s", mount);
    for (int k = 0; k < np; k++) {
        char run[PATH_MAX], g[PATH_MAX + 2];
        if (snprintf(run, sizeof run, "%s/floorcg-%d", parent[k], (int)getpid()) >= (int)sizeof run) continue;
        if (mkdir(run, 0755) != 0) {
            say(why, why_size, "cannot create a cgroup in %s: %s", parent[k], strerror(errno));
            continue;
        }
        snprintf(g, sizeof g, "%s/g", run);
        if (mkdir(g, 0755) == 0) {
            gfd = open(g, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (gfd >= 0) {
                memcpy(run_path, run, sizeof run);
                return 1;
            }
            say(why, why_size, "cannot open %s: %s", g, strerror(errno));
            rmdir(g);
        } else {
            say(why, why_size, "cannot create a cgroup in %s: %s", run, strerror(errno));
        }
        rmdir(run);
    }
    return 0;
}

/* Read leaf i's usage_usec (one open+read+close) and remove the leaf. */
static void finish(int i) {
    char name[32], buf[64];
    snprintf(name, sizeof name, "%d/cpu.stat", i);
    int fd = openat(gfd, name, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t got = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (got > 0) {
            buf[got] = 0;
            if (strncmp(buf, "usage_usec ", 11) == 0) cpu_usec += strtoull(buf + 11, NULL, 10);
        }
    }
    snprintf(name, sizeof name, "%d", i);
    if (unlinkat(gfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT) removed[i] = 1;
}

/* The child whose pid this is, or -1. */
static int index_of(pid_t pid) {
    for (int i = 0; i < n_made; i++)
        if (pids[i] == pid) return i;
    return -1;
}

static void reaped(pid_t pid) {
    int i = index_of(pid);
    if (i < 0) return;
    pids[i] = 0;
    finish(i);
}

/* SIGTERM every child, reap them all (SIGKILL to what is left after
 * drain_ms, as floor.c), finishing each leaf as its child is reaped. */
static void stop_children(long drain_ms) {
    int left = 0;
    for (int i = 0; i < n_made; i++)
        if (pids[i] > 0) {
            kill(pids[i], SIGTERM);
            left++;
        }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (left > 0) {
        pid_t pid = waitpid(-1, NULL, WNOHANG);
        if (pid > 0) {
            reaped(pid);
            left--;
            continue;
        }
        if (pid < 0 && errno == ECHILD) break;
        if (ms_since(&start) >= drain_ms) {
            for (int i = 0; i < n_made; i++)
                if (pids[i] > 0) kill(-pids[i], SIGKILL);
            while ((pid = waitpid(-1, NULL, 0)) > 0) reaped(pid);
            break;
        }
        struct timespec nap = {0, 200000}; /* 0.2 ms */
        nanosleep(&nap, NULL);
    }
}

/* Remove every cgroup still there. A leaf that is not empty (something
 * its child started outlived it) is emptied with cgroup.kill first. */
static void remove_cgroups(void) {
    if (!run_path[0]) return;
    int busy = 0;
    for (int i = 0; i < n_made; i++)
        if (!removed[i]) {
            finish(i);
            busy |= !removed[i];
        }
    if (busy) {
        char kill_path[PATH_MAX + 16];
        snprintf(kill_path, sizeof kill_path, "%s/cgroup.kill", run_path);
        int fd = open(kill_path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (write(fd, "1", 1) < 0) { /* then the retries below fail and say so */ }
            close(fd);
        }
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        while (busy && ms_since(&start) < 5000) {
            struct timespec nap = {0, 1000000}; /* 1 ms */
            nanosleep(&nap, NULL);
            busy = 0;
            for (int i = 0; i < n_made; i++)
                if (!removed[i]) {
                    finish(i);
                    busy |= !removed[i];
                }
        }
    }
    close(gfd);
    char g[PATH_MAX + 2];
    snprintf(g, sizeof g, "%s/g", run_path);
    if (rmdir(g) != 0 || rmdir(run_path) != 0)
        fprintf(stderr, "floorcg: cannot remove %s: %s\n", run_path, strerror(errno));
    run_path[0] = 0;
}

/* Stop what was started, remove the cgroups, exit with `code`. */
static void fail(int code, long drain_ms) {
    stop_children(drain_ms);
    remove_cgroups();
    exit(code);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: floorcg N DRAIN_MS CMD [ARGS…]\n");
        return 2;
    }
    int n = atoi(argv[1]);
    long drain_ms = atol(argv[2]);
    if (n < 0) n = 0;
    pids = calloc((size_t)n + 1, sizeof *pids);
    removed = calloc((size_t)n + 1, 1);
    if (!pids || !removed) {
        fprintf(stderr, "floorcg: out of memory\n");
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    /* Stop (and clean up) if our parent dies; SIGTERM is blocked, so it
     * waits for the sigwait below. */
    pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) return 0; /* it died already; nothing made yet */
    char why[PATH_MAX + 128];
    if (!make_run(why, sizeof why)) {
        fprintf(stderr, "floorcg: no writable cgroup2 hierarchy (%s)\n", why);
        return 2;
    }
    pid_t self = getpid();
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "%d", i);
        if (mkdirat(gfd, name, 0755) != 0) {
            fprintf(stderr, "floorcg: cannot create cgroup %s/g/%s: %s\n", run_path, name, strerror(errno));
            fail(1, drain_ms);
        }
        n_made = i + 1;
        int leaf = openat(gfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (leaf < 0) {
            fprintf(stderr, "floorcg: cannot open cgroup %s/g/%s: %s\n", run_path, name, strerror(errno));
            fail(1, drain_ms);
        }
        struct clone_args args;
        memset(&args, 0, sizeof args);
        args.flags = CLONE_INTO_CGROUP;
        args.exit_signal = SIGCHLD;
        args.cgroup = (uint64_t)leaf;
        long pid = syscall(SYS_clone3, &args, sizeof args);
        if (pid == 0) {
            setpgid(0, 0);
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != self) _exit(1);
            sigprocmask(SIG_UNBLOCK, &set, NULL);
            execvp(argv[3], argv + 3);
            _exit(127);
        }
        int err = errno;
        close(leaf);
        if (pid < 0) {
            fprintf(stderr, "floorcg: clone3 into %s/g/%s: %s\n", run_path, name, strerror(err));
            fail(1, drain_ms);
        }
        pids[i] = (pid_t)pid;
    }
    int sig;
    sigwait(&set, &sig);
    stop_children(drain_ms);
    remove_cgroups();
    return 0;
}
