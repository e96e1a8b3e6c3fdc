/* bench/relayfloor.c — the relay floor: the least a log relay can do.
 *
 * relayfloor N CMD ARGS…: fork+exec N copies of CMD ("{index}" in an
 * argument becomes the child's index), each with its stdout and stderr on
 * one pipe of its own, and relay every child's output to stdout as whole
 * lines prefixed "w.<index> | " until every pipe is at EOF; a final partial
 * line gets a newline. Then reap the children and exit 0.
 *
 * It does what a relay must and nothing else: one epoll loop, 256 KiB
 * pipes and reads, a partial line kept per child, whole lines copied into
 * one 256 KiB output buffer that is written when full or when no pipe has
 * data. No lines longer than the buffer, no events, no timestamps, no
 * colour. `cat` of the bytes is a ceiling; this is the floor a supervisor's
 * relay is compared with.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#define BUF (256 * 1024)

struct child {
    int fd;
    char prefix[32];
    size_t plen;
    char *part; /* the partial line so far */
    size_t partlen;
};

static char out[BUF];
static size_t outlen;

static void flush_out(void) {
    size_t off = 0;
    while (off < outlen) {
        ssize_t w = write(1, out + off, outlen - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            exit(1);
        }
        off += (size_t)w;
    }
    outlen = 0;
}

/* Append one record: prefix, line, newline (whole, or the buffer is flushed first). */
static void record(struct child *c, const char *a, size_t alen, const char *b, size_t blen) {
    size_t need = c->plen + alen + blen + 1;
    if (outlen + need > BUF) flush_out();
    if (need > BUF) { /* not expected in the benchmark: write it straight */
        flush_out();
        memcpy(out, c->prefix, c->plen);
        outlen = c->plen;
        flush_out();
        if (alen && write(1, a, alen) < 0) exit(1);
        if (blen && write(1, b, blen) < 0) exit(1);
        if (write(1, "\n", 1) < 0) exit(1);
        return;
    }
    memcpy(out + outlen, c->prefix, c->plen);
    outlen += c->plen;
    memcpy(out + outlen, a, alen);
    outlen += alen;
    memcpy(out + outlen, b, blen);
    outlen += blen;
    out[outlen++] = '\n';
}

static void take(struct child *c, const char *data, size_t n) {
    const char *p = data, *end = data + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            c->part = realloc(c->part, c->partlen + (size_t)(end - p));
            memcpy(c->part + c->partlen, p, (size_t)(end - p));
            c->partlen += (size_t)(end - p);
            return;
        }
        record(c, c->part, c->partlen, p, (size_t)(nl - p));
        c->partlen = 0;
        p = nl + 1;
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: relayfloor N CMD [ARGS…]\n");
        return 2;
    }
    int n = atoi(argv[1]);
    struct child *kids = calloc((size_t)n, sizeof *kids);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < n; i++) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) return 1;
        fcntl(p[0], F_SETPIPE_SZ, BUF);
        pid_t pid = fork();
        if (pid == 0) {
            dup2(p[1], 1);
            dup2(p[1], 2);
            char **args = calloc((size_t)argc, sizeof *args);
            char idx[16];
            snprintf(idx, sizeof idx, "%d", i);
            for (int a = 2; a < argc; a++) args[a - 2] = strcmp(argv[a], "{index}") == 0 ? idx : argv[a];
            execvp(args[0], args);
            _exit(127);
        }
        close(p[1]);
        kids[i].fd = p[0];
        kids[i].plen = (size_t)snprintf(kids[i].prefix, sizeof kids[i].prefix, "w.%d | ", i);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    }
    static char in[BUF];
    int open_pipes = n;
    struct epoll_event evs[64];
    while (open_pipes > 0) {
        int k = epoll_wait(ep, evs, 64, 0);
        if (k == 0) {
            flush_out(); /* nothing ready: write what we have, then block */
            k = epoll_wait(ep, evs, 64, -1);
        }
        if (k < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        for (int e = 0; e < k; e++) {
            struct child *c = &kids[evs[e].data.u32];
            ssize_t r = read(c->fd, in, sizeof in);
            if (r > 0) {
                take(c, in, (size_t)r);
            } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
                if (c->partlen) record(c, c->part, c->partlen, "", 0);
                c->partlen = 0;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                open_pipes--;
            }
        }
    }
    flush_out();
    while (waitpid(-1, NULL, 0) > 0) {}
    return 0;
}
