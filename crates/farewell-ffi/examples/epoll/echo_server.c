/*
 * echo_server.c: the libuv example's server on plain epoll, where the program
 * owns its descriptors: no dup() is needed. To end a connection it takes the
 * descriptor out of its epoll set, hands it and the goodbye to libfarewell,
 * and forgets the number.
 *
 * Same protocol, arguments and output as ../libuv/echo_server.c:
 *   echo_server PORT [HANDSHAKE_MS [IDLE_MS [GRACE_MS]]]
 * Listens on 127.0.0.1:PORT; SIGTERM or SIGINT says "BYE shutdown" to everyone.
 * Lines are short and echoed with one non-blocking send(): enough for an example.
 */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "farewell.h"

#define MAX_FDS 1024
#define MAX_LINE 4096

typedef struct client {
    int open;
    int greeted;
    long long deadline_ms; /* handshake, then idle */
    size_t len;
    char line[MAX_LINE];
} client;

static client clients[MAX_FDS];
static int epfd;
static fw_closer *closer;
static long long handshake_ms = 5000, idle_ms = 30000;
static volatile sig_atomic_t stop;

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_signal(int signum) { (void)signum; stop = 1; }

/* Runs on libfarewell's thread, once per teardown. */
static void on_outcome(const fw_outcome *o, void *user) {
    (void)user;
    printf("outcome fd=%d policy=%s ending=%s time_wait=%s goodbye=%s written=%llu "
           "drained=%llu unacked=%lld state=%s elapsed_ms=%.1f local=%s peer=%s\n",
           o->fd, o->policy, o->ending_name, o->time_wait_name, o->goodbye_name,
           (unsigned long long)o->goodbye_written, (unsigned long long)o->bytes_drained,
           (long long)o->unacked_at_close, o->state_at_close_name,
           (double)o->elapsed_us / 1000.0, o->local, o->peer);
    fflush(stdout);
}

/* The hand-over: out of our epoll set first (a registration belongs to the
 * socket, not the number, and the number may be reused as soon as the library
 * closes it), then to the library, then forget the number. */
static void say_goodbye(int fd, const char *bye) {
    int rc;
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    clients[fd].open = 0;
    rc = fw_close(closer, fd, (const uint8_t *)bye, strlen(bye));
    if (rc != FW_OK) {
        fprintf(stderr, "echo_server: fw_close: %s\n", fw_strerror(rc));
        if (rc != FW_ERR_REGISTER && rc != FW_ERR_PANIC) close(fd); /* still ours */
    }
}

/* The client closed (or reset) first: closing now is a passive close. */
static void drop_client(int fd) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    clients[fd].open = 0;
    close(fd);
}

static void handle_line(int fd, char *line, size_t len) {
    client *c = &clients[fd];
    if (len > 0 && line[len - 1] == '\r') len--;
    if (!c->greeted) {
        if (len > 6 && memcmp(line, "HELLO ", 6) == 0) {
            char reply[MAX_LINE + 16];
            int n = snprintf(reply, sizeof reply, "WELCOME %.*s\n", (int)(len - 6), line + 6);
            c->greeted = 1;
            c->deadline_ms = now_ms() + idle_ms;
            send(fd, reply, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
        } else {
            say_goodbye(fd, "BYE bad-handshake\n");
        }
        return;
    }
    if (len == 4 && memcmp(line, "QUIT", 4) == 0) {
        say_goodbye(fd, "BYE quit\n");
        return;
    }
    line[len] = '\n';
    send(fd, line, len + 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    c->deadline_ms = now_ms() + idle_ms;
}

static void on_readable(int fd) {
    client *c = &clients[fd];
    size_t start = 0, i;
    ssize_t n = recv(fd, c->line + c->len, MAX_LINE - c->len, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        drop_client(fd);
        return;
    }
    c->len += (size_t)n;
    for (i = 0; i < c->len && c->open; i++) {
        if (c->line[i] == '\n') {
            handle_line(fd, c->line + start, i - start);
            start = i + 1;
        }
    }
    if (!c->open) return;
    memmove(c->line, c->line + start, c->len - start);
    c->len -= start;
    if (c->len == MAX_LINE) say_goodbye(fd, "BYE line-too-long\n");
}

int main(int argc, char **argv) {
    struct sockaddr_in addr;
    struct epoll_event ev, events[64];
    struct sigaction sa;
    fw_options *options;
    fw_stats stats;
    int lfd, rc, one = 1, fd, i, n;

    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [HANDSHAKE_MS [IDLE_MS [GRACE_MS]]]\n", argv[0]);
        return 2;
    }
    if (argc > 2) handshake_ms = atoll(argv[2]);
    if (argc > 3) idle_ms = atoll(argv[3]);

    options = fw_options_new();
    if (!options) return 1;
    fw_options_set_outcome_callback(options, on_outcome, NULL);
    if (argc > 4) fw_options_set_grace_ms(options, strtoull(argv[4], NULL, 10));
    rc = fw_closer_new(options, &closer);
    fw_options_free(options);
    if (rc != FW_OK) {
        fprintf(stderr, "echo_server: fw_closer_new: %s\n", fw_strerror(rc));
        return 1;
    }

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: epoll_wait returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, 128) != 0) {
        perror("echo_server: listen");
        return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    ev.events = EPOLLIN;
    ev.data.fd = lfd;
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    printf("listening on 127.0.0.1:%s (libfarewell %s)\n", argv[1], fw_version());
    fflush(stdout);

    while (!stop) {
        long long now;
        n = epoll_wait(epfd, events, 64, 20);
        for (i = 0; i < n; i++) {
            fd = events[i].data.fd;
            if (fd == lfd) {
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (fd >= MAX_FDS) { close(fd); continue; }
                    memset(&clients[fd], 0, offsetof(client, line));
                    clients[fd].open = 1;
                    clients[fd].deadline_ms = now_ms() + handshake_ms;
                    ev.events = EPOLLIN;
                    ev.data.fd = fd;
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
                }
            } else if (clients[fd].open) {
                on_readable(fd);
            }
        }
        now = now_ms();
        for (fd = 0; fd < MAX_FDS; fd++) {
            if (clients[fd].open && now >= clients[fd].deadline_ms)
                say_goodbye(fd, clients[fd].greeted ? "BYE idle\n" : "BYE handshake-timeout\n");
        }
    }

    fprintf(stderr, "echo_server: signal: saying goodbye to everyone\n");
    close(lfd);
    for (fd = 0; fd < MAX_FDS; fd++)
        if (clients[fd].open) say_goodbye(fd, "BYE shutdown\n");
    close(epfd);

    stats.size = sizeof stats;
    fw_closer_stats(closer, &stats);
    rc = fw_closer_free(closer, 2000);
    printf("closer freed: %s; handed over %llu, in flight at exit %llu\n", fw_strerror(rc),
           (unsigned long long)stats.started, (unsigned long long)stats.in_flight);
    return rc == FW_OK ? 0 : 1;
}
